//! [`Region`]: a file mapped into memory, created complete or attached to.

use std::ffi::c_void;
use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;

use rustix::mm::{MapFlags, ProtFlags, mmap, munmap};

use crate::Error;

/// A file mapped shared into this process: every process that maps it sees
/// the same memory. Only ever read and written through atomics.
#[derive(Debug)]
pub(crate) struct Region {
    ptr: NonNull<u8>,
    len: usize,
    path: PathBuf,
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

impl Region {
    /// The region of `len` bytes at `path`: attached to if the file exists
    /// (then `check` validates it), else created, zeroed, filled by `init`
    /// and only then published under `path`, so that no process ever sees a
    /// file half made.
    pub(crate) fn open(
        path: &Path,
        len: usize,
        init: impl Fn(&Region),
        check: impl Fn(&Region) -> Result<(), Error>,
    ) -> Result<Region, Error> {
        let fail = |reason: String| Error::SharedMemory {
            path: path.to_owned(),
            reason,
        };
        // A few tries: a file removed between our failed create and our
        // open is created again.
        for _ in 0..8 {
            match OpenOptions::new().read(true).write(true).open(path) {
                Ok(file) => return Region::attach(path, file, len, &check),
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(fail(format!("cannot open it: {e}"))),
            }
            if let Some(region) = Region::create(path, len, &init)? {
                return Ok(region);
            }
        }
        Err(fail(
            "it keeps appearing and vanishing; is another process removing it?".into(),
        ))
    }

    /// Creates the file under a temporary name and links it to `path`;
    /// `None` if another process created `path` first.
    fn create(path: &Path, len: usize, init: &impl Fn(&Region)) -> Result<Option<Region>, Error> {
        let fail = |reason: String| Error::SharedMemory {
            path: path.to_owned(),
            reason,
        };
        let nanos = super::host_now_ns();
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(format!(".{}.{nanos}.tmp", std::process::id()));
        let tmp = PathBuf::from(tmp);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| {
                fail(format!(
                    "cannot create {}: {e}; its directory must exist and be writable",
                    tmp.display()
                ))
            })?;
        let made = (|| {
            file.set_len(len as u64)
                .map_err(|e| fail(format!("cannot size it to {len} bytes: {e}")))?;
            let region = Region::map(path, &file, len)?;
            init(&region);
            Ok(region)
        })();
        let linked = made.and_then(|region| match std::fs::hard_link(&tmp, path) {
            Ok(()) => Ok(Some(region)),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(None),
            Err(e) => Err(fail(format!("cannot publish it: {e}"))),
        });
        let _ = std::fs::remove_file(&tmp);
        linked
    }

    fn attach(
        path: &Path,
        file: File,
        len: usize,
        check: &impl Fn(&Region) -> Result<(), Error>,
    ) -> Result<Region, Error> {
        let found = file
            .metadata()
            .map_err(|e| Error::SharedMemory {
                path: path.to_owned(),
                reason: format!("cannot read its size: {e}"),
            })?
            .len();
        if found != len as u64 {
            return Err(Error::SharedMemory {
                path: path.to_owned(),
                reason: format!(
                    "it has {found} bytes, and it must have {len} (truncated, or not a \
                     fueltank file of this version): remove it, or give another name"
                ),
            });
        }
        let region = Region::map(path, &file, len)?;
        check(&region)?;
        Ok(region)
    }

    fn map(path: &Path, file: &File, len: usize) -> Result<Region, Error> {
        // SAFETY: a fresh shared mapping of `len` bytes of an open file, at
        // an address of the kernel's choice; it aliases nothing of ours.
        let ptr = unsafe {
            mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                file,
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
    }
}
