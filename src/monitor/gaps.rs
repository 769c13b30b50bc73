//! The gaps between consecutive emissions: a lock-free log-linear histogram
//! of atomic counters, with the exact shortest and longest gap beside it.
//!
//! A gap `v` (nanoseconds) lands in one of [`BUCKETS`] counters: values
//! below 64 each have their own; above, every power of two is split into
//! 64 equal sub-buckets, so a bucket is at most 1/64 (1.6 %) of its values
//! wide. Recording is one `fetch_add`; the extremes are updated only when
//! a gap beats them, which after a warm-up is rare. Readers copy the
//! non-empty counters into a [`Snapshot`](super::Snapshot), which answers
//! percentiles from them (see `stats.rs`).

// std atomics, not `crate::sync`: the monitor is not modelled under loom,
// and its unit tests run in the loom build too.
use std::sync::atomic::{AtomicU64, Ordering};

const SUB_BITS: u32 = 6;
const SUB: usize = 1 << SUB_BITS;
/// Counters: 64 exact ones, then 64 per power of two from 2^6 to 2^63.
pub(crate) const BUCKETS: usize = (64 - SUB_BITS as usize + 1) * SUB;

/// The counter of a gap of `v` nanoseconds.
#[inline]
pub(crate) fn index(v: u64) -> usize {
    if v < SUB as u64 {
        return v as usize;
    }
    let exponent = 63 - v.leading_zeros();
    let shift = exponent - SUB_BITS;
    let sub = (v >> shift) as usize & (SUB - 1);
    (shift as usize + 1) * SUB + sub
}

/// The lowest value of counter `i`, and its width.
pub(crate) fn bounds(i: usize) -> (u64, u64) {
    if i < 2 * SUB {
        return (i as u64, 1);
    }
    let shift = (i / SUB - 1) as u32;
    let sub = (i % SUB) as u64;
    ((SUB as u64 + sub) << shift, 1 << shift)
}

/// The value reported for counter `i`: the middle of its range.
pub(crate) fn representative(i: usize) -> u64 {
    let (low, width) = bounds(i);
    low + (width - 1) / 2
}

/// The histogram and the extremes, inline (no pointer), so that it can live
/// in a file mapped by several processes. All zeroes is a valid value; a new
/// one is made ready by [`init`](Gaps::init).
#[repr(C)]
pub(crate) struct Gaps {
    /// The shortest gap; `u64::MAX` before the first.
    min: AtomicU64,
    /// The longest gap; 0 before the first (`min > max`: none yet).
    max: AtomicU64,
    counts: [AtomicU64; BUCKETS],
}

impl Gaps {
    /// Makes zeroed memory an empty histogram.
    pub(crate) fn init(&self) {
        self.min.store(u64::MAX, Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn record(&self, gap: u64) {
        self.counts[index(gap)].fetch_add(1, Ordering::Relaxed);
        if gap < self.min.load(Ordering::Relaxed) {
            self.min.fetch_min(gap, Ordering::Relaxed);
        }
        if gap > self.max.load(Ordering::Relaxed) {
            self.max.fetch_max(gap, Ordering::Relaxed);
        }
    }

    /// How many gaps were recorded.
    pub(crate) fn count(&self) -> u128 {
        self.counts
            .iter()
            .map(|c| u128::from(c.load(Ordering::Relaxed)))
            .sum()
    }

    /// The shortest and longest gap, if any was recorded.
    pub(crate) fn extremes(&self) -> Option<(u64, u64)> {
        let min = self.min.load(Ordering::Relaxed);
        let max = self.max.load(Ordering::Relaxed);
        (min <= max).then_some((min, max))
    }

    /// Calls `f(counter, count)` for every non-empty counter.
    pub(crate) fn for_each(&self, mut f: impl FnMut(usize, u64)) {
        for (i, c) in self.counts.iter().enumerate() {
            let n = c.load(Ordering::Relaxed);
            if n != 0 {
                f(i, n);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_tile_the_range() {
        let mut expected_low = 0u64;
        for i in 0..BUCKETS {
            let (low, width) = bounds(i);
            assert_eq!(low, expected_low, "bucket {i}");
            assert_eq!(index(low), i);
            assert_eq!(index(low + (width - 1)), i);
            assert!(width == 1 || width * 64 <= low, "bucket {i} too wide");
            expected_low = low.wrapping_add(width);
        }
        assert_eq!(expected_low, 0, "the last bucket ends at u64::MAX");
        assert_eq!(index(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn extremes_are_exact() {
        // SAFETY: atomics only, and all zeroes is a valid value of each.
        let gaps = unsafe { Box::<Gaps>::new_zeroed().assume_init() };
        gaps.init();
        assert_eq!(gaps.extremes(), None);
        for g in [500, 3, 1_000_000_007, 42] {
            gaps.record(g);
        }
        assert_eq!(gaps.extremes(), Some((3, 1_000_000_007)));
        assert_eq!(gaps.count(), 4);
    }
}
