//! The trailing window of `latest`: how many emissions happened before the
//! start of a recent slot of running time.
//!
//! Running time is cut into slots of `2^shift` ns, the smallest power of two
//! that is at least 1/64 of the window ([`Slots`], fixed by the window, so
//! each process derives it for itself). The emission whose gap crosses into
//! a new slot (there is exactly one: gaps come from a compare-and-swap of
//! the latest stamp) writes a sample `(slot, count before it)`.
//! Since no emission happened between the previous emission and this one,
//! that count is the number of emissions before the start of every slot
//! in between. `latest` finds the first sample at or after the slot where
//! its window starts; if there is none, nothing happened since.
//!
//! Samples live in an inline ring of [`RING`] entries ([`Samples`], part of
//! the monitor's state, in shared memory for a shared monitor), each guarded
//! by a sequence tag (a seqlock of atomics, no `unsafe`): a reader that races
//! a writer skips the entry. A writer that dies between its stores leaves
//! the entry empty, which readers skip too: that one sample is lost, never
//! misread.

use std::sync::atomic::{AtomicU64, Ordering, fence};

/// Slots per window, at most.
const SLOTS: u64 = 64;
/// Ring entries: twice the slots a window can span.
pub(crate) const RING: usize = 2 * SLOTS as usize + 2;

/// The slots of running time for a window.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Slots {
    shift: u32,
}

impl Slots {
    pub(crate) fn of(window_ns: u64) -> Slots {
        let slot = (window_ns / SLOTS).max(1);
        Slots {
            shift: 64 - (slot - 1).leading_zeros(),
        }
    }

    #[inline]
    pub(crate) fn slot(self, running_ns: u64) -> u64 {
        running_ns >> self.shift
    }

    pub(crate) fn slot_start(self, slot: u64) -> u64 {
        slot << self.shift
    }

    /// Whether an emission at `t` after one at `prev` (running ns) starts a
    /// new slot.
    #[inline]
    pub(crate) fn crosses(self, prev: u64, t: u64) -> bool {
        self.slot(prev) != self.slot(t)
    }
}

#[repr(C)]
struct Sample {
    /// `slot + 1`; 0 while empty or being written.
    tag: AtomicU64,
    count: AtomicU64,
}

/// The ring of samples, inline. All zeroes is an empty ring.
#[repr(C)]
pub(crate) struct Samples {
    ring: [Sample; RING],
}

impl Samples {
    /// Records that `count` emissions happened before the first one of
    /// `slot`.
    #[cold]
    pub(crate) fn record(&self, slot: u64, count: u64) {
        let entry = &self.ring[(slot % RING as u64) as usize];
        entry.tag.store(0, Ordering::Relaxed);
        fence(Ordering::Release);
        entry.count.store(count, Ordering::Relaxed);
        entry.tag.store(slot + 1, Ordering::Release);
    }

    /// The number of emissions before the start of slot `first`, judged
    /// from the samples of slots `first..=last`; `None` if no emission
    /// happened since the start of `first`.
    pub(crate) fn count_before(&self, first: u64, last: u64) -> Option<u64> {
        let mut best: Option<(u64, u64)> = None;
        for entry in self.ring.iter() {
            let tag = entry.tag.load(Ordering::Acquire);
            if tag == 0 {
                continue;
            }
            let slot = tag - 1;
            if slot < first || slot > last || best.is_some_and(|(s, _)| s <= slot) {
                continue;
            }
            let count = entry.count.load(Ordering::Relaxed);
            fence(Ordering::Acquire);
            if entry.tag.load(Ordering::Relaxed) == tag {
                best = Some((slot, count));
            }
        }
        best.map(|(_, count)| count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_a_power_of_two_at_least_a_64th() {
        assert_eq!(Slots::of(1_000_000_000).slot_start(1), 1 << 24);
        assert_eq!(Slots::of(64).slot_start(1), 1);
        assert_eq!(Slots::of(1).slot_start(1), 1);
    }

    #[test]
    fn finds_the_first_crossing_in_range() {
        let slots = Slots::of(64 << 10); // slots of 1024 ns
        // SAFETY: atomics only, and all zeroes is a valid (empty) ring.
        let s = unsafe { Box::<Samples>::new_zeroed().assume_init() };
        for (t, count) in [(100, 0), (5_000, 7), (9_000, 20)] {
            s.record(slots.slot(t), count);
        }
        assert_eq!(s.count_before(0, 100), Some(0));
        assert_eq!(s.count_before(1, 100), Some(7));
        assert_eq!(s.count_before(5, 100), Some(20));
        assert_eq!(s.count_before(9, 100), None);
    }
}
