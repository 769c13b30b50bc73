//! State shared by the processes of one host: a tank or a monitor in a
//! file mapped into each process's memory. What users read about the file
//! (names, permissions, removal, what can go wrong) is on [`SharedMemory`];
//! this is how it works.
//!
//! # The file
//!
//! Each shared tank or monitor is one file (see [`path_of`]). It starts
//! with a [`Header`] (magic, layout version, kind, length), then the kind's
//! parameters and its state, all atomics: a process reads and writes it
//! only through atomic operations, so a file another process is changing,
//! a corrupt file, or a file of another version never makes this process
//! read an invalid value — it reads numbers, checks them, and answers with
//! an [`Error`] if they are wrong.
//!
//! # Creation, and processes that die
//!
//! The first process writes the whole file under a short temporary name in
//! the same directory, then links it to its final name, which fails if
//! another process got there first (that one's file is then used): a file
//! under the final name is always complete, and a process killed while
//! creating it leaves at most a stray temporary file. After that, every
//! change is one compare-and-swap or one atomic add on the mapped memory,
//! with no lock anywhere: a process killed at any instruction leaves the
//! state as it was before that instruction or after it, and never holds
//! anything the others wait for.
//!
//! # Removal
//!
//! Every process keeps the file open, with a shared `flock`, for as long as
//! it maps it; [`remove`] takes the exclusive lock before it unlinks (never
//! waiting on it, but trying again for a moment: a process lets go of the
//! file an instant after its last handle is dropped, as its timer may be
//! serving the line on another thread just then), so it removes only a
//! file no process uses, and a process that opens a file being removed
//! (its shared lock refused, or the file unlinked by the time it holds it)
//! opens the name again. The kernel drops a dead process's lock, so a
//! killed process blocks no removal.
//!
//! The file does not outlive a reboot: its times are on the host's
//! monotonic clock, which starts again at each boot, so on Linux the header
//! records the boot and a file from an earlier one is an error (one under
//! `/dev/shm` is gone anyway).

#[cfg(all(unix, not(fueltank_loom)))]
mod region;

use std::path::{Path, PathBuf};

#[cfg(all(unix, not(fueltank_loom)))]
pub(crate) use region::{Mapped, Region};

/// Without mappings (not unix, or in a loom model) no region is ever made:
/// [`open`] refuses, and what holds a region is never built.
#[cfg(not(all(unix, not(fueltank_loom))))]
#[derive(Debug)]
pub(crate) enum Region {}

#[cfg(not(all(unix, not(fueltank_loom))))]
impl Region {
    pub(crate) fn get<T>(&self, _offset: usize) -> &T {
        match *self {}
    }

    pub(crate) fn path(&self) -> &Path {
        match *self {}
    }
}

/// As `region::Mapped`, for the types that would be mapped.
///
/// # Safety
///
/// Nothing is mapped without regions: no requirement.
#[cfg(not(all(unix, not(fueltank_loom))))]
pub(crate) unsafe trait Mapped {}

// std atomics: a header lives only in mapped memory, never in a loom model.
use std::sync::atomic::{AtomicU64, Ordering};

use crate::Error;

/// `b"fueltank"`, little-endian.
pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"fueltank");
/// The layout version: a file of another version is an error.
pub(crate) const VERSION: u64 = 4;

/// What a shared file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Tank = 1,
    Monitor = 2,
}

impl Kind {
    pub(crate) fn suffix(self) -> &'static str {
        match self {
            Kind::Tank => "tank",
            Kind::Monitor => "monitor",
        }
    }
}

/// The file of a tank or monitor in shared memory, and who may share it:
/// what [`TankBuilder::shared_memory`](crate::TankBuilder::shared_memory),
/// [`MonitorBuilder::shared_memory`](crate::MonitorBuilder::shared_memory)
/// and [`ThrottleBuilder::shared_memory`](crate::ThrottleBuilder::shared_memory)
/// take. A name or a path (`&str`, `String`) converts into one with the
/// defaults, which share with this user's processes only;
/// [`mode`](SharedMemory::mode) and [`any_owner`](SharedMemory::any_owner)
/// share with other users on purpose.
///
/// # The file
///
/// A name of 1 to 200 letters, digits, `-`, `_` and `.` is the file
/// `fueltank-NAME.tank` (or `.monitor`) in `/dev/shm` on Linux, in the
/// temporary directory elsewhere; a name with a `/` is the file's path.
/// The first process to build it creates it complete (under a short
/// temporary name, `.fueltank-PID-….tmp`, beside it, linked to its name
/// once written), so the name may be as long as the system allows; the
/// others attach. It outlives the processes: the next run attaches and
/// carries on. It is no good after a reboot (its times are on the host's
/// monotonic clock): on Linux, a file from an earlier boot is an error.
///
/// # Removing it
///
/// [`Tank::remove_shared_memory`](crate::Tank::remove_shared_memory) and
/// [`Monitor::remove_shared_memory`](crate::Monitor::remove_shared_memory)
/// remove a name's file to start anew, and only when no process uses it:
/// every process holds a lock on the file for as long as one of its tanks,
/// monitors or throttles on it lives (the kernel drops a killed process's
/// lock), and the removal fails while any does. Removing the file any
/// other way (`rm`) while processes use it splits the budget in two: they
/// keep the file they mapped, unlinked, and a process that builds the name
/// after creates a new one, so each side grants the whole rate. Stop every
/// process that uses a file before removing it, or let the removal methods
/// tell you they still run.
///
/// # Who can attach: the trust model
///
/// Whoever can write the file decides the budget of every process that
/// maps it. So, by default:
///
/// - A new file gets mode `0600`: its owner reads and writes it, no one
///   else (root aside), whatever the process's umask.
/// - A build attaches only to a regular file (never through a symbolic
///   link, never to a FIFO or device), owned by this process's effective
///   user, that no one else may write (no group or other write bit). Any
///   other file is an [`Error::SharedMemory`] that says which check failed
///   and is not opened for use. A symbolic link planted at a name in a
///   shared directory such as `/dev/shm` cannot point a tank at another
///   tank's budget, and a file another user created first cannot become
///   this user's budget.
///
/// To share between users (services under different uids), put the file
/// in a directory only they can write (e.g. `/run/myapp`, owned by their
/// group, mode `2770`), never in `/dev/shm` or `/tmp`, where any user can
/// create the name first; give its path as the name, with
/// [`mode(0o660)`](SharedMemory::mode) so that the group may write it and
/// [`any_owner()`](SharedMemory::any_owner) so that a file another member
/// created is accepted. Every process sharing it must then be trusted
/// with the budget.
///
/// What a process that can write the file can and cannot do to the
/// others:
///
/// - It controls the budget: it can write any state, e.g. fuel for the
///   whole rate again and again, or none, or a paused tank; the others
///   grant what the state says. That is why only the owner may write by
///   default.
/// - It cannot make the others read or write outside the file, nor wait
///   past a deadline they gave: they use the file only through atomics and
///   check what they read, so garbage in it makes them grant what it says,
///   refuse fuel, or answer with an error; a build checks the header, the
///   length and the parameters and refuses a file that is wrong. (Anyone
///   who can open the file, even only to read it, can also hold a lock on
///   it: new builds then fail with an error after a few tries rather than
///   wait, and removals refuse.)
/// - It can crash them in one way: by making the file shorter
///   (`truncate`, `: > FILE`, or any open with `O_TRUNC`) while they map
///   it. Their next access to the lost part raises `SIGBUS`, which kills
///   the process; no library can prevent that without taking over the
///   signal. With the default mode, only the owner's processes and root
///   can. A build refuses a file that is already short, and a new file's
///   space is allocated when it is created (where the file system can), so
///   a full `/dev/shm` fails the build rather than a later access.
///
/// # Examples
///
/// ```
/// use fueltank::{Rate, SharedMemory, Tank};
///
/// let path = std::env::temp_dir().join(format!("doc-shared-{}.tank", std::process::id()));
/// let path = path.to_str().unwrap();
/// // A file the owner's group may write too, which another member may own.
/// let shared = SharedMemory::new(path).mode(0o660).any_owner();
/// let tank = Tank::builder(Rate::per_second(10)?).shared_memory(shared.clone()).build()?;
/// assert!(tank.has_fuel());
/// // In use: not removed.
/// assert!(Tank::remove_shared_memory(shared.clone()).is_err());
/// drop(tank);
/// assert!(Tank::remove_shared_memory(shared)?);
/// # Ok::<(), fueltank::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(docsrs, doc(cfg(feature = "shared-memory")))]
pub struct SharedMemory {
    name: String,
    access: Access,
}

/// Who may share a file: what [`SharedMemory`] says beyond the name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Access {
    /// The permission bits of a file this process creates; an attached
    /// file may let no one write it whom these do not.
    pub(crate) mode: u32,
    /// A file owned by another user is accepted.
    pub(crate) any_owner: bool,
}

impl Access {
    pub(crate) const DEFAULT: Access = Access {
        mode: 0o600,
        any_owner: false,
    };

    /// Why the mode is not accepted, if it is not.
    pub(crate) fn bad_mode(self) -> Option<String> {
        (self.mode & !0o066 != 0o600).then(|| {
            format!(
                "mode {:#o} is not accepted; a mode must be 0o600 (read and write for the \
                 owner) plus any of read and write for the group (0o060) and others (0o006), \
                 e.g. 0o600 or 0o660",
                self.mode
            )
        })
    }
}

impl SharedMemory {
    /// The file named `name` (see [The file](SharedMemory#the-file)), with
    /// the defaults: created with mode `0600`; only a file of this user
    /// that no one else may write is attached to.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::SharedMemory;
    ///
    /// assert_eq!(SharedMemory::new("api"), SharedMemory::from("api"));
    /// ```
    pub fn new(name: impl Into<String>) -> SharedMemory {
        SharedMemory {
            name: name.into(),
            access: Access::DEFAULT,
        }
    }

    /// The permission bits of the file when this process creates it
    /// (applied whatever the umask), and how far an existing file may let
    /// others write it: a file whose group or others may write it is
    /// attached to only if `mode` lets them too. `0o600` by default.
    /// Accepted: `0o600` plus any of `0o060` (group) and `0o006` (others);
    /// another mode makes the build an [`Error::SharedMemory`]. Whoever may
    /// write the file controls the budget (see
    /// [the trust model](SharedMemory#who-can-attach-the-trust-model)).
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::SharedMemory;
    ///
    /// // The group may read and write it; others nothing.
    /// let shared = SharedMemory::new("/run/myapp/api.tank").mode(0o660);
    /// ```
    pub fn mode(mut self, mode: u32) -> SharedMemory {
        self.access.mode = mode;
        self
    }

    /// Accepts a file owned by another user (by default, a file whose owner
    /// is not this process's effective user is an
    /// [`Error::SharedMemory`]). For users that share one budget on purpose,
    /// in a directory only they can write (see
    /// [the trust model](SharedMemory#who-can-attach-the-trust-model)).
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::SharedMemory;
    ///
    /// let shared = SharedMemory::new("/run/myapp/api.tank").mode(0o660).any_owner();
    /// ```
    pub fn any_owner(mut self) -> SharedMemory {
        self.access.any_owner = true;
        self
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn access(&self) -> Access {
        self.access
    }
}

impl From<&str> for SharedMemory {
    fn from(name: &str) -> SharedMemory {
        SharedMemory::new(name)
    }
}

impl From<String> for SharedMemory {
    fn from(name: String) -> SharedMemory {
        SharedMemory::new(name)
    }
}

impl From<&String> for SharedMemory {
    fn from(name: &String) -> SharedMemory {
        SharedMemory::new(name.as_str())
    }
}

/// Removes the file of the shared `kind` that `shared` names, if no process
/// uses it: `Ok(false)` if there is none.
pub(crate) fn remove(shared: &SharedMemory, kind: Kind) -> Result<bool, Error> {
    let path = path_of(shared.name(), kind)?;
    #[cfg(all(unix, not(fueltank_loom)))]
    {
        region::remove(&path, shared.access(), kind)
    }
    #[cfg(not(all(unix, not(fueltank_loom))))]
    {
        let _ = kind;
        Err(Error::SharedMemory {
            path,
            reason: "shared memory needs a unix system".into(),
        })
    }
}

/// Where a shared file's state starts: after its [`Header`].
pub(crate) const STATE_AT: usize = size_of::<Header>();

/// How far ahead of the host's clock a time in an attached file may be
/// before the file is taken for one from before the host restarted (its
/// monotonic clock then restarted too). Readings of one host clock never
/// disagree by more than a context switch; a second is far beyond that.
pub(crate) const CLOCK_SLACK_NS: u64 = 1_000_000_000;

/// The file of the shared `kind` that `shared` names: a [`Header`], then
/// an `S` (at [`STATE_AT`]), on the host's clock. Created, with
/// `init(state)` filling it before any process sees it, or attached to,
/// once its header and `check(state, path)` accept it. `clock` is
/// what the build asked for: only the host's monotonic clock, the same in
/// every process, can be shared.
pub(crate) fn open<S: Mapped>(
    shared: &SharedMemory,
    kind: Kind,
    clock: &crate::clock::ClockSource,
    init: impl Fn(&S),
    check: impl Fn(&S, &Path) -> Result<(), Error>,
) -> Result<Region, Error> {
    use crate::clock::ClockSource;
    if !matches!(clock, ClockSource::Monotonic | ClockSource::Host) {
        return Err(Error::Unsupported {
            what: match kind {
                Kind::Tank => "a clock for a shared tank",
                Kind::Monitor => "a clock for a shared monitor",
            },
            accepted: "shared memory runs on the host's monotonic clock, the same in every \
                       process; build it without `.clock(..)`",
        });
    }
    let (path, access) = (path_of(shared.name(), kind)?, shared.access());
    #[cfg(not(all(unix, not(fueltank_loom))))]
    {
        let _ = (init, check, access);
        Err(Error::SharedMemory {
            path,
            reason: "shared memory needs a unix system".into(),
        })
    }
    #[cfg(all(unix, not(fueltank_loom)))]
    {
        let len = STATE_AT + size_of::<S>();
        Region::open(
            &path,
            access,
            len,
            |region| {
                init(region.get::<S>(STATE_AT));
                region.get::<Header>(0).init(kind, len);
            },
            |region| {
                region.get::<Header>(0).check(&path, kind, len)?;
                check(region.get::<S>(STATE_AT), &path)
            },
        )
    }
}

/// The first 64 bytes of every shared file.
#[repr(C, align(64))]
#[derive(Debug)]
pub(crate) struct Header {
    magic: AtomicU64,
    /// `VERSION << 32 | kind`.
    layout: AtomicU64,
    /// The file's length in bytes.
    len: AtomicU64,
    /// The boot of the host that wrote the file ([`boot_id`]): its times are
    /// on that boot's monotonic clock. 0 where the platform does not say.
    boot: AtomicU64,
    _reserved: [AtomicU64; 4],
}

// SAFETY: `#[repr(C)]`, atomics only.
unsafe impl Mapped for Header {}

impl Header {
    /// Writes a new file's header; the caller publishes the file after.
    pub(crate) fn init(&self, kind: Kind, len: usize) {
        self.layout
            .store((VERSION << 32) | kind as u64, Ordering::Relaxed);
        self.len.store(len as u64, Ordering::Relaxed);
        self.boot.store(boot_id(), Ordering::Relaxed);
        self.magic.store(MAGIC, Ordering::Release);
    }

    /// Checks an existing file's header.
    pub(crate) fn check(&self, path: &Path, kind: Kind, len: usize) -> Result<(), Error> {
        let fail = |reason: String| Error::SharedMemory {
            path: path.to_owned(),
            reason,
        };
        if self.magic.load(Ordering::Acquire) != MAGIC {
            return Err(fail(
                "not a fueltank file (its first bytes are not \"fueltank\"); it must be \
                 one to be shared: remove it, or give another name"
                    .into(),
            ));
        }
        let layout = self.layout.load(Ordering::Relaxed);
        if layout >> 32 != VERSION {
            return Err(fail(format!(
                "a file of layout version {}, and this is version {VERSION}; processes \
                 sharing it must use the same fueltank version",
                layout >> 32
            )));
        }
        if layout & 0xffff_ffff != kind as u64 {
            return Err(fail(format!(
                "not a {} (kind {}); it must be a {} file: give another name",
                kind.suffix(),
                layout & 0xffff_ffff,
                kind.suffix()
            )));
        }
        let found = self.len.load(Ordering::Relaxed);
        if found != len as u64 {
            return Err(fail(format!(
                "its header says {found} bytes, and a {} of this version must have {len}",
                kind.suffix()
            )));
        }
        // The monotonic clock starts again at each boot: a file kept on disk
        // across a reboot holds times the new clock reaches only after as
        // long an uptime (a tank would grant nothing until then).
        let (written, now) = (self.boot.load(Ordering::Relaxed), boot_id());
        if written != 0 && now != 0 && written != now {
            return Err(fail(
                "written during an earlier boot of this host, and its times are on that \
                 boot's monotonic clock: remove it (a file under /dev/shm, the default, \
                 goes with each reboot)"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// This boot of the host as a number, never 0; 0 where the platform does
/// not say (Linux does: `/proc/sys/kernel/random/boot_id`).
fn boot_id() -> u64 {
    static BOOT: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *BOOT.get_or_init(|| {
        let Ok(uuid) = std::fs::read_to_string("/proc/sys/kernel/random/boot_id") else {
            return 0;
        };
        // 32 hex digits, folded to 64 bits.
        let bits = uuid
            .chars()
            .filter_map(|c| c.to_digit(16))
            .fold(0u128, |bits, digit| (bits << 4) | u128::from(digit));
        ((bits as u64) ^ ((bits >> 64) as u64)).max(1)
    })
}

/// The file of the shared `kind` named `name`: a path if `name` has a `/`,
/// else `fueltank-NAME.KIND` in the shared-memory directory.
pub(crate) fn path_of(name: &str, kind: Kind) -> Result<PathBuf, Error> {
    let bad = |reason: &str| Error::SharedMemory {
        path: PathBuf::from(name),
        reason: format!(
            "{reason}; a name must be 1 to 200 characters of letters, digits, '-', '_' \
             and '.', or a path with a '/'"
        ),
    };
    if name.contains('/') {
        if name.contains('\0') {
            return Err(bad("the path has a NUL character"));
        }
        return Ok(PathBuf::from(name));
    }
    if name.is_empty() || name.len() > 200 {
        return Err(bad("the name is empty or too long"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(bad("the name has a character that is not accepted"));
    }
    let dir = Path::new("/dev/shm");
    let dir = if dir.is_dir() {
        dir.to_owned()
    } else {
        std::env::temp_dir()
    };
    Ok(dir.join(format!("fueltank-{name}.{}", kind.suffix())))
}

/// The host's monotonic clock, in nanoseconds: the same in every process.
#[cfg(unix)]
pub(crate) fn host_now_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid pointer to a `timespec` of ours; CLOCK_MONOTONIC
    // always exists, so this cannot fail.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    (now.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(now.tv_nsec as u64)
}

/// Without a host clock, the process's own (shared memory is unix-only).
#[cfg(not(unix))]
pub(crate) fn host_now_ns() -> u64 {
    crate::clock::ns_of(std::time::Instant::now())
}

/// `at` on the host's monotonic clock: its distance from now, taken from
/// now on that clock (to within the nanoseconds between the two readings).
pub(crate) fn host_ns_of(at: std::time::Instant) -> u64 {
    let (host, now) = (host_now_ns(), std::time::Instant::now());
    match now.checked_duration_since(at) {
        Some(ago) => host.saturating_sub(crate::clock::saturating_ns(ago)),
        None => host.saturating_add(crate::clock::saturating_ns(at - now)),
    }
}

/// A reading of the host's monotonic clock as an `Instant`, the inverse of
/// [`host_ns_of`].
pub(crate) fn instant_of_host_ns(ns: u64) -> std::time::Instant {
    let (host, now) = (host_now_ns(), std::time::Instant::now());
    let moved = if ns <= host {
        now.checked_sub(std::time::Duration::from_nanos(host - ns))
    } else {
        now.checked_add(std::time::Duration::from_nanos(ns - host))
    };
    moved.unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_paths() {
        let path = path_of("api", Kind::Tank).unwrap();
        assert!(path.ends_with("fueltank-api.tank"), "{path:?}");
        assert_eq!(
            path_of("/tmp/x", Kind::Monitor).unwrap(),
            PathBuf::from("/tmp/x")
        );
        for bad in ["", "a b", "é", &"x".repeat(201)] {
            assert!(path_of(bad, Kind::Tank).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn instants_on_the_host_clock() {
        use std::time::{Duration, Instant};
        let now = Instant::now();
        for at in [
            now,
            now - Duration::from_secs(3),
            now + Duration::from_secs(3),
        ] {
            let back = instant_of_host_ns(host_ns_of(at));
            // Two pairs of readings apart: microseconds at most, even when
            // the test is descheduled between them (then milliseconds).
            assert!(back.max(at) - back.min(at) < Duration::from_millis(50));
        }
    }

    #[test]
    fn the_host_clock_moves_forward() {
        let a = host_now_ns();
        let b = host_now_ns();
        assert!(b >= a && a > 0);
    }
}
