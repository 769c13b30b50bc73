//! State shared by the processes of one host: a tank or a monitor in a
//! file mapped into each process's memory.
//!
//! # The file
//!
//! Each shared tank or monitor is one file, under the platform's
//! shared-memory directory (`/dev/shm` on Linux, else the temporary
//! directory) as `fueltank-NAME.tank` or `fueltank-NAME.monitor`, or at a
//! path the user gives. It starts with a [`Header`] (magic, layout version,
//! kind, length), then the kind's parameters and its state, all atomics: a
//! process reads and writes it only through atomic operations, so a file
//! another process is changing, a corrupt file, or a file of another version
//! never makes this process read an invalid value — it reads numbers, checks
//! them, and answers with an [`Error`](crate::Error) if they are wrong.
//!
//! # Creation, and processes that die
//!
//! The first process writes the whole file under a temporary name, then
//! links it to its final name, which fails if another process got there
//! first (that one's file is then used): a file under the final name is
//! always complete, and a process killed while creating it leaves at most a
//! stray temporary file. After that, every change is one compare-and-swap or
//! one atomic add on the mapped memory, with no lock anywhere: a process
//! killed at any instruction leaves the state as it was before that
//! instruction or after it, and never holds anything the others wait for.
//!
//! The file outlives the processes (the next run attaches to it and carries
//! on, as a tank would that nobody used meanwhile). Remove it to start anew.
//! It does not outlive a reboot: its times are on the host's monotonic
//! clock, which starts again at each boot, so on Linux the header records
//! the boot and a file from an earlier one is an error (one under
//! `/dev/shm` is gone anyway).

#[cfg(all(unix, not(fueltank_loom)))]
mod region;

use std::path::{Path, PathBuf};

#[cfg(all(unix, not(fueltank_loom)))]
pub(crate) use region::{Mapped, Region};

// std atomics: a header lives only in mapped memory, never in a loom model.
use std::sync::atomic::{AtomicU64, Ordering};

use crate::Error;

/// `b"fueltank"`, little-endian.
pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"fueltank");
/// The layout version: a file of another version is an error.
pub(crate) const VERSION: u64 = 2;

/// What a shared file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Tank = 1,
    Monitor = 2,
}

impl Kind {
    fn suffix(self) -> &'static str {
        match self {
            Kind::Tank => "tank",
            Kind::Monitor => "monitor",
        }
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
#[cfg(all(unix, not(fueltank_loom)))]
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
