//! The few synchronization primitives the crate uses, swapped for loom's when
//! built with `RUSTFLAGS="--cfg fueltank_loom"` so the model checker can
//! explore every interleaving of the lock-free parts.

#[cfg(fueltank_loom)]
pub(crate) use loom::sync::atomic::{AtomicU8, AtomicU64, Ordering, fence};
#[cfg(fueltank_loom)]
pub(crate) use loom::sync::{Mutex, MutexGuard};
#[cfg(not(fueltank_loom))]
pub(crate) use std::sync::atomic::{AtomicU8, AtomicU64, Ordering, fence};
#[cfg(not(fueltank_loom))]
pub(crate) use std::sync::{Mutex, MutexGuard};

/// Locks `mutex`, ignoring poison: no code of this crate panics while holding
/// a lock, and a user's panicking waker is only ever called after unlocking.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// An `UnsafeCell` with loom's closure-based access, so that loom can check
/// that no two threads touch the same cell without synchronization.
#[cfg(fueltank_loom)]
pub(crate) use loom::cell::UnsafeCell;

#[cfg(not(fueltank_loom))]
#[derive(Debug, Default)]
pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(fueltank_loom))]
impl<T> UnsafeCell<T> {
    pub(crate) const fn new(value: T) -> UnsafeCell<T> {
        UnsafeCell(std::cell::UnsafeCell::new(value))
    }

    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }

    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}
