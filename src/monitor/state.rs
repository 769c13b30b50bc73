//! The monitor's state: one `#[repr(C)]` struct of atomics with no pointer
//! in it, so that the same bytes work on the heap (a monitor of one process)
//! and in a file mapped at a different address in each process (a shared
//! monitor). [`Place`] says where it lives and keeps that memory alive.

use std::sync::atomic::{AtomicU64, Ordering};

use super::gaps::Gaps;
use super::window::Samples;

/// Set in `base` while the monitor is stopped.
pub(crate) const STOPPED: u64 = 1 << 63;

/// Everything a monitor counts, inline: a cache line of what changes
/// rarely (the clock base, read by every emission), a line that starts with
/// what every emission changes or reads (the latest stamp, the extremes, the
/// counters of the shortest gaps), the rest of the gap histogram, then the
/// ring of window samples.
///
/// All zeroes is a valid value of every field; [`init`](State::init) makes
/// zeroed memory a new, running monitor.
#[repr(C, align(64))]
pub(crate) struct State {
    /// While running: the clock reading at running time zero. While
    /// stopped: `STOPPED` and the running time at the stop.
    pub(crate) base: AtomicU64,
    /// The trailing window, in ns: a parameter, written once by `init` (in
    /// a shared file, attaching processes check it).
    pub(crate) window_ns: AtomicU64,
    /// Emissions counted without a gap.
    pub(crate) ungapped: AtomicU64,
    /// Emissions made while stopped: in the total, in no statistic.
    pub(crate) stopped: AtomicU64,
    /// Keeps `base` alone with what changes as rarely.
    _rarely: [AtomicU64; 4],
    /// The stamp (running ns + 1) of the latest emission; 0 before the first.
    pub(crate) last: AtomicU64,
    /// Emissions after the first of a batch: zero gaps, saturating.
    pub(crate) batched: AtomicU64,
    pub(crate) gaps: Gaps,
    pub(crate) samples: Samples,
}

// The two first cache lines as the struct's docs say.
const _: () = assert!(std::mem::offset_of!(State, last) == 64);
const _: () = assert!(std::mem::offset_of!(State, gaps) == 80);

// SAFETY: `#[repr(C)]`, made only of atomics and of arrays and `#[repr(C)]`
// structs of atomics, each valid for any bit pattern.
#[cfg(feature = "shared-memory")]
unsafe impl crate::shm::Mapped for State {}

impl State {
    /// Makes zeroed memory a monitor running from clock reading `base`.
    pub(crate) fn init(&self, window_ns: u64, base: u64) {
        self.base.store(base & !STOPPED, Ordering::Relaxed);
        self.window_ns.store(window_ns, Ordering::Relaxed);
        self.gaps.init();
    }
}

/// Where a monitor's [`State`] lives, owning that memory.
pub(crate) struct Place {
    /// Into `owner`'s memory, for as long as `self` lives.
    state: std::ptr::NonNull<State>,
    owner: Owner,
}

enum Owner {
    /// `state` came from `Box::leak`; freed when the place drops.
    Heap,
    /// `state` points into this mapping.
    #[cfg(feature = "shared-memory")]
    Mapped(crate::shm::Region),
}

// SAFETY: a place owns its memory (a box, or a mapping) and hands out only
// `&State`, which is `Send + Sync` (atomics only).
unsafe impl Send for Place {}
// SAFETY: as for `Send`: all access is through `&State`, atomics only.
unsafe impl Sync for Place {}

impl Place {
    /// A new state on the heap, running from clock reading `base`.
    pub(crate) fn heap(window_ns: u64, base: u64) -> Place {
        // Zeroed in place: the state is 32 KiB, too large to build on the
        // stack and move.
        let layout = std::alloc::Layout::new::<State>();
        // SAFETY: `State` is not zero-sized.
        let raw = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<State>();
        if raw.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        // SAFETY: `raw` is a fresh allocation of `State`'s layout from the
        // global allocator, zeroed; `State` is made only of atomics, for
        // which all zeroes is a valid value; the box takes ownership.
        let state = unsafe { Box::from_raw(raw) };
        state.init(window_ns, base);
        Place {
            state: std::ptr::NonNull::from(Box::leak(state)),
            owner: Owner::Heap,
        }
    }

    /// The state at `offset` in `region`, which the place keeps mapped.
    #[cfg(feature = "shared-memory")]
    pub(crate) fn mapped(region: crate::shm::Region, offset: usize) -> Place {
        Place {
            state: std::ptr::NonNull::from(region.get::<State>(offset)),
            owner: Owner::Mapped(region),
        }
    }

    #[inline(always)]
    pub(crate) fn state(&self) -> &State {
        // SAFETY: `state` points to a `State` that lives as long as `self`:
        // the leaked box is freed only in `drop`, and the mapping (which
        // moving the `Region` does not move) is unmapped only when `owner`
        // drops. It is only ever used through shared references.
        unsafe { self.state.as_ref() }
    }

    /// The file, for a shared monitor.
    pub(crate) fn path(&self) -> Option<&std::path::Path> {
        match &self.owner {
            Owner::Heap => None,
            #[cfg(feature = "shared-memory")]
            Owner::Mapped(region) => Some(region.path()),
        }
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        match self.owner {
            // SAFETY: `state` came from `Box::leak` in `heap` and is freed
            // once, here; no `&State` outlives the place (they borrow it).
            Owner::Heap => drop(unsafe { Box::from_raw(self.state.as_ptr()) }),
            // The region unmaps itself.
            #[cfg(feature = "shared-memory")]
            Owner::Mapped(_) => {}
        }
    }
}
