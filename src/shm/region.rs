//! [`Region`]: a file mapped into memory, created complete or attached to,
//! after checks of who owns it and who may write it (the trust model on
//! [`SharedMemory`](super::SharedMemory)).

use std::ffi::c_void;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rustix::fs::{FileType, FlockOperation, Mode, OFlags, Stat};
use rustix::io::Errno;
use rustix::mm::{MapFlags, ProtFlags, mmap, munmap};

use super::{Access, Kind, MAGIC};
use crate::Error;

/// A file mapped shared into this process: every process that maps it sees
/// the same memory. Only ever read and written through atomics.
#[derive(Debug)]
pub(crate) struct Region {
    ptr: NonNull<u8>,
    len: usize,
    path: PathBuf,
    /// The file, open with a shared lock for as long as it is mapped: what
    /// tells [`remove`] that a process uses it.
    _file: OwnedFd,
}

// SAFETY: the mapping is plain memory owned by the region until it is
// dropped; all access goes through `&T` of types made of atomics.
unsafe impl Send for Region {}
// SAFETY: as for `Send`: shared access is through atomics only.
unsafe impl Sync for Region {}

/// Types that may be read out of a mapping: `#[repr(C)]` structs made only
/// of atomics (any bit pattern is a valid value, and all mutation goes
/// through `&self`).
///
/// # Safety
///
/// The type must be `#[repr(C)]`, contain only atomics (or arrays or structs
/// of them), and be valid for any bit pattern, zeroes included.
pub(crate) unsafe trait Mapped: Sized {}

/// How many times a build opens the name again when the file vanishes or
/// is being removed meanwhile.
const TRIES: u32 = 8;

/// What opening an existing file found.
enum Found {
    File(OwnedFd, Stat),
    /// No file, or one removed since it was opened: create it.
    Missing,
    /// Locked exclusively (being removed): open it again shortly.
    Busy,
}

impl Region {
    /// The region of `len` bytes at `path`: attached to if the file exists
    /// and `access` accepts it (then `check` validates its contents), else
    /// created, zeroed, filled by `init` and only then published under
    /// `path`, so that no process ever sees a file half made.
    pub(crate) fn open(
        path: &Path,
        access: Access,
        len: usize,
        init: impl Fn(&Region),
        check: impl Fn(&Region) -> Result<(), Error>,
    ) -> Result<Region, Error> {
        let fail = |reason: String| Error::SharedMemory {
            path: path.to_owned(),
            reason,
        };
        if let Some(reason) = access.bad_mode() {
            return Err(fail(reason));
        }
        let mut busy = false;
        for attempt in 0..TRIES {
            match find(
                path,
                access,
                OFlags::RDWR,
                FlockOperation::NonBlockingLockShared,
            )? {
                Found::File(file, stat) => return Region::attach(path, file, &stat, len, &check),
                Found::Busy => {
                    // A removal holds the lock from its check to its unlink.
                    busy = true;
                    std::thread::sleep(Duration::from_millis(1 << attempt));
                    continue;
                }
                Found::Missing => {}
            }
            if let Some(region) = Region::create(path, access, len, &init)? {
                return Ok(region);
            }
        }
        Err(fail(if busy {
            "another process holds an exclusive lock on it (fueltank takes one only to \
             remove the file, for an instant): is something else locking it?"
                .into()
        } else {
            "it keeps appearing and vanishing; is another process removing it?".into()
        }))
    }

    /// Creates the file under a temporary name and links it to `path`;
    /// `None` if another process created `path` first.
    fn create(
        path: &Path,
        access: Access,
        len: usize,
        init: &impl Fn(&Region),
    ) -> Result<Option<Region>, Error> {
        let fail = |reason: String| Error::SharedMemory {
            path: path.to_owned(),
            reason,
        };
        let mode = Mode::from_raw_mode(access.mode as rustix::fs::RawMode);
        let (tmp, file) = temporary(path, mode).map_err(|(tmp, e)| {
            fail(format!(
                "cannot create {}: {e}; its directory must exist and be writable",
                tmp.display()
            ))
        })?;
        let made = (|| {
            // The mode asked for, not the umask's share of it.
            rustix::fs::fchmod(&file, mode)
                .map_err(|e| fail(format!("cannot set its mode to {:#o}: {e}", access.mode)))?;
            // Nobody else has it yet: the lock is ours (where file locks work).
            let _ = rustix::fs::flock(&file, FlockOperation::NonBlockingLockShared);
            allocate(&file, len)
                .map_err(|e| fail(format!("cannot size it to {len} bytes: {e}")))?;
            let region = Region::map(path, file, len)?;
            init(&region);
            Ok(region)
        })();
        let linked = made.and_then(|region| match rustix::fs::link(&tmp, path) {
            Ok(()) => Ok(Some(region)),
            Err(Errno::EXIST) => Ok(None),
            Err(e) => Err(fail(format!("cannot publish it: {e}"))),
        });
        let _ = rustix::fs::unlink(&tmp);
        linked
    }

    fn attach(
        path: &Path,
        file: OwnedFd,
        stat: &Stat,
        len: usize,
        check: &impl Fn(&Region) -> Result<(), Error>,
    ) -> Result<Region, Error> {
        let found = stat.st_size;
        if u64::try_from(found) != Ok(len as u64) {
            return Err(Error::SharedMemory {
                path: path.to_owned(),
                reason: format!(
                    "it has {found} bytes, and it must have {len} (truncated, or not a \
                     fueltank file of this version): remove it, or give another name"
                ),
            });
        }
        let region = Region::map(path, file, len)?;
        check(&region)?;
        Ok(region)
    }

    fn map(path: &Path, file: OwnedFd, len: usize) -> Result<Region, Error> {
        // SAFETY: a fresh shared mapping of `len` bytes of an open file, at
        // an address of the kernel's choice; it aliases nothing of ours.
        let ptr = unsafe {
            mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                &file,
                0,
            )
        }
        .map_err(|e| Error::SharedMemory {
            path: path.to_owned(),
            reason: format!("cannot map it: {e}"),
        })?;
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or_else(|| Error::SharedMemory {
            path: path.to_owned(),
            reason: "it was mapped at address 0".into(),
        })?;
        Ok(Region {
            ptr,
            len,
            path: path.to_owned(),
            _file: file,
        })
    }

    /// The `T` at byte `offset`.
    ///
    /// # Panics
    ///
    /// If `T` does not fit there or is misaligned: a bug of this crate (the
    /// layouts are fixed at compile time), never a property of the file.
    pub(crate) fn get<T: Mapped>(&self, offset: usize) -> &T {
        let end = offset
            .checked_add(std::mem::size_of::<T>())
            .expect("offsets are small");
        assert!(end <= self.len, "layout beyond the region");
        assert!(
            offset.is_multiple_of(std::mem::align_of::<T>()),
            "misaligned layout"
        );
        // SAFETY: in bounds and aligned (checked above; the mapping is page
        // aligned); `T: Mapped` is made of atomics, valid for any bytes,
        // and only used through `&T`; the mapping lives as long as `self`.
        unsafe { &*self.ptr.as_ptr().add(offset).cast::<T>() }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: our mapping, of our length; no `&T` into it outlives the
        // region (they borrow it).
        let _ = unsafe { munmap(self.ptr.as_ptr().cast::<c_void>(), self.len) };
        // Then the file closes, and its lock goes with it.
    }
}

/// Opens the existing file at `path` (`how`: read-write or read-only), never
/// through a symbolic link, takes the lock `lock` without waiting, and
/// checks that `access` accepts it.
fn find(path: &Path, access: Access, how: OFlags, lock: FlockOperation) -> Result<Found, Error> {
    let fail = |reason: String| Error::SharedMemory {
        path: path.to_owned(),
        reason,
    };
    // NONBLOCK: a FIFO planted under the name does not hang the open.
    let flags = how | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
    let file = match rustix::fs::open(path, flags, Mode::empty()) {
        Ok(file) => file,
        Err(Errno::NOENT) => return Ok(Found::Missing),
        Err(_) if rustix::fs::lstat(path).is_ok_and(|s| is(&s, FileType::Symlink)) => {
            return Err(fail(
                "it is a symbolic link, and a shared file is opened only under its own \
                 name (a link planted in a shared directory could point at another \
                 budget): give the path of the file itself"
                    .into(),
            ));
        }
        Err(e @ Errno::ACCESS) => {
            let owner = match rustix::fs::stat(path) {
                Ok(s) => format!(
                    " (owned by uid {}, mode {:#o})",
                    s.st_uid,
                    s.st_mode & 0o7777
                ),
                Err(_) => String::new(),
            };
            return Err(fail(format!(
                "cannot open it to read and write: {e}{owner}; only a user the file lets \
                 write it can share it"
            )));
        }
        Err(e) => return Err(fail(format!("cannot open it: {e}"))),
    };
    // Another failure is a file system without locks: the file is shared
    // all the same, only a removal cannot tell whether it is in use.
    if let Err(Errno::WOULDBLOCK) = rustix::fs::flock(&file, lock) {
        return Ok(Found::Busy);
    }
    let stat =
        rustix::fs::fstat(&file).map_err(|e| fail(format!("cannot read its status: {e}")))?;
    if stat.st_nlink == 0 {
        // Removed between our open and our lock.
        return Ok(Found::Missing);
    }
    vet(&stat, access).map_err(fail)?;
    Ok(Found::File(file, stat))
}

/// Why `access` does not accept the file of `stat`, if it does not.
fn vet(stat: &Stat, access: Access) -> Result<(), String> {
    if !is(stat, FileType::RegularFile) {
        return Err(format!(
            "it is not a regular file (a {:?}); a shared file must be one: remove it, or \
             give another name",
            FileType::from_raw_mode(stat.st_mode)
        ));
    }
    let me = rustix::process::geteuid().as_raw();
    if stat.st_uid != me && !access.any_owner {
        return Err(format!(
            "it is owned by uid {}, not by this process's user (uid {me}), and whoever can \
             write it controls the budget: remove it or give another name, or, to share \
             with that user on purpose, accept it with SharedMemory::any_owner()",
            stat.st_uid
        ));
    }
    // `st_mode`'s type differs between systems.
    #[allow(clippy::unnecessary_cast)]
    let mode = stat.st_mode as u32;
    let others = mode & 0o022 & !access.mode;
    if others != 0 {
        let who = match (others & 0o020 != 0, others & 0o002 != 0) {
            (true, true) => "its group and others",
            (true, false) => "its group",
            _ => "others",
        };
        return Err(format!(
            "its mode {:#o} lets {who} write it, beyond this build's mode {:#o}, and whoever \
             can write it controls the budget: chmod it to {:#o}, or, to share with them on \
             purpose, accept it with SharedMemory::mode({:#o})",
            mode & 0o7777,
            access.mode,
            access.mode,
            // Read with write, as modes usually go.
            access.mode | others | (others << 1)
        ));
    }
    Ok(())
}

fn is(stat: &Stat, kind: FileType) -> bool {
    FileType::from_raw_mode(stat.st_mode) == kind
}

/// A new file of `mode` under a short name beside `path` (the final name
/// may be as long as the system allows: the temporary one must fit too).
fn temporary(path: &Path, mode: Mode) -> Result<(PathBuf, OwnedFd), (PathBuf, Errno)> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let flags = OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut tries = 0;
    loop {
        // The host clock tells this process's names from those of a
        // process of the same id in another PID namespace, or before a
        // reboot (a stray file of one killed while creating).
        let tmp = dir.join(format!(
            ".fueltank-{}-{}-{}.tmp",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            super::host_now_ns() % 1_000_000_000_000
        ));
        match rustix::fs::open(&tmp, flags, mode) {
            Ok(file) => return Ok((tmp, file)),
            Err(Errno::EXIST) if tries < TRIES => tries += 1,
            Err(e) => return Err((tmp, e)),
        }
    }
}

/// Gives the new file its `len` bytes, allocated where the file system can
/// (then a full file system fails here, not at a later write through the
/// mapping, which would raise SIGBUS).
fn allocate(file: &OwnedFd, len: usize) -> Result<(), Errno> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    match rustix::fs::fallocate(file, rustix::fs::FallocateFlags::empty(), 0, len as u64) {
        Ok(()) => return Ok(()),
        Err(e @ (Errno::NOSPC | Errno::FBIG | Errno::IO)) => return Err(e),
        // Not supported by this file system: sized without allocating.
        Err(_) => {}
    }
    rustix::fs::ftruncate(file, len as u64)
}

/// Removes the file of `kind` at `path` if `access` accepts it and no
/// process has it open: `Ok(false)` if there is none.
pub(crate) fn remove(path: &Path, access: Access, kind: Kind) -> Result<bool, Error> {
    let fail = |reason: String| Error::SharedMemory {
        path: path.to_owned(),
        reason: format!("{reason}; it was not removed"),
    };
    if let Some(reason) = access.bad_mode() {
        return Err(fail(reason));
    }
    let mut attempt = 0;
    let (file, stat) = loop {
        match find(
            path,
            access,
            OFlags::RDONLY,
            FlockOperation::NonBlockingLockExclusive,
        ) {
            Ok(Found::File(file, stat)) => break (file, stat),
            Ok(Found::Missing) => return Ok(false),
            // A process lets go of the file an instant after its last
            // handle is dropped (its timer may be serving the line on
            // another thread just then): look again for a moment.
            Ok(Found::Busy) if attempt + 1 < TRIES => {
                std::thread::sleep(Duration::from_millis(1 << attempt));
                attempt += 1;
            }
            Ok(Found::Busy) => {
                return Err(fail(
                    "a process uses it (each holds it from its build until its last tank, \
                     monitor or throttle on it is dropped): stop every process that uses \
                     it first; one that keeps running keeps its own budget in the removed \
                     file"
                        .into(),
                ));
            }
            Err(Error::SharedMemory { reason, .. }) => return Err(fail(reason)),
            Err(e) => return Err(e),
        }
    };
    // Without a lock the file system cannot say whether it is in use.
    if let Err(e) = rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
        return Err(fail(format!(
            "cannot lock it to tell whether a process uses it: {e}"
        )));
    }
    // Only a file of this kind: a header of another version will do.
    let mut head = [0u8; 16];
    let read = rustix::io::pread(&file, &mut head, 0).unwrap_or(0);
    let magic = u64::from_le_bytes(head[..8].try_into().expect("8 bytes"));
    let layout = u64::from_le_bytes(head[8..].try_into().expect("8 bytes"));
    if read < head.len() || magic != MAGIC || layout & 0xffff_ffff != kind as u64 {
        return Err(fail(format!(
            "not a fueltank {} file (its header does not say so): remove it yourself if \
             it should go",
            kind.suffix()
        )));
    }
    // Still the file under the name (not one put there since we opened).
    match rustix::fs::lstat(path) {
        Ok(now) if now.st_dev == stat.st_dev && now.st_ino == stat.st_ino => {}
        Ok(_) => return Err(fail("it was replaced while being removed".into())),
        Err(Errno::NOENT) => return Ok(false),
        Err(e) => return Err(fail(format!("cannot read its status: {e}"))),
    }
    match rustix::fs::unlink(path) {
        Ok(()) => Ok(true),
        Err(Errno::NOENT) => Ok(false),
        Err(e) => Err(fail(format!("cannot remove it: {e}"))),
    }
}
