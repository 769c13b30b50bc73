//! Reserved fuel that `has_fuel` takes without the entry's lock: one atomic
//! word holding a count and the instant they all stop being spendable.
//!
//! The entry fills the lane, under its lock, with units that are spendable
//! now and share one end (banked GCRA units, or units a dropped future gave
//! back), and drains it back into the reserve whenever it needs the whole
//! picture: a waiter joins (so `has_fuel` never overtakes one), a slow
//! `has_fuel`, `wait_time`. `has_fuel` takes from the lane with one
//! compare-and-swap if the word holds enough and its end has not passed;
//! a fill or a drain changes the word, so a taker that read it before fails
//! its swap and retries. An empty lane may instead be marked *refused
//! until* Redis's retry time, when nothing is held or on its way: then
//! `has_fuel` says no without the lock. The lane also holds a *low* mark: `has_fuel` leaves
//! the last units to the locked path, which asks Redis for more before the
//! reserve runs out.
//!
//! The end is kept in units of 1024 ns, rounded down: a unit may be refused
//! up to a microsecond before its end, never spent after it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use fueltank::clock::MonotonicClock;

/// Bits of the count; the end takes the other 44 (2^44 units of 1024 ns:
/// about 200 days after the lane's base).
const COUNT_BITS: u32 = 20;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;
const UNIT_SHIFT: u32 = 10;

/// The most units a lane holds.
pub(crate) const LANE_MAX: u64 = COUNT_MASK;

#[derive(Debug)]
pub(crate) struct Lane {
    word: AtomicU64,
    low: AtomicU64,
    base: Instant,
    /// `base` on the scale of [`MonotonicClock::nanos`].
    base_ns: u64,
}

impl Lane {
    pub(crate) fn new(base: Instant) -> Lane {
        Lane {
            word: AtomicU64::new(0),
            low: AtomicU64::new(0),
            base,
            base_ns: MonotonicClock.nanos_at(base),
        }
    }

    fn units(&self, at: Instant) -> u64 {
        self.units_of_ns(MonotonicClock.nanos_at(at))
    }

    fn units_of_ns(&self, ns: u64) -> u64 {
        ns.saturating_sub(self.base_ns) >> UNIT_SHIFT
    }

    /// [`take`](Lane::take) at `now`.
    #[cfg(test)]
    fn take_at(&self, n: u64, now: Instant) -> Option<bool> {
        self.take_units(n, self.units(now))
    }

    /// `Some(true)`: took `n` (the lane held `n` above its low mark, and
    /// its end is after now). `Some(false)`: the lane is marked refused
    /// until after now. `None`: ask the locked path. The clock is read as
    /// numbers, without making an `Instant`: this is the hot path.
    #[inline]
    pub(crate) fn take(&self, n: u64) -> Option<bool> {
        self.take_units(n, self.units_of_ns(MonotonicClock.nanos()))
    }

    #[inline]
    fn take_units(&self, n: u64, now: u64) -> Option<bool> {
        let low = self.low.load(Ordering::Relaxed);
        let mut word = self.word.load(Ordering::Acquire);
        loop {
            let count = word & COUNT_MASK;
            let until = word >> COUNT_BITS;
            if now >= until {
                return None;
            }
            if count == 0 {
                return Some(false);
            }
            if count < n.saturating_add(low) {
                return None;
            }
            // The last unit taken leaves the word 0, not a count of 0
            // with an end, which would read as *refused until* that end
            // while the reserve may still hold fuel.
            let left = if count == n { 0 } else { word - n };
            match self
                .word
                .compare_exchange_weak(word, left, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Some(true),
                Err(current) => word = current,
            }
        }
    }

    /// Empties the lane: what it held and when those units stop.
    pub(crate) fn drain(&self) -> Option<(u64, Instant)> {
        let word = self.word.swap(0, Ordering::AcqRel);
        let count = word & COUNT_MASK;
        (count > 0).then(|| {
            let until = (word >> COUNT_BITS) << UNIT_SHIFT;
            (count, self.base + Duration::from_nanos(until))
        })
    }

    /// Fills an empty lane with `count` units spendable until `until`;
    /// `has_fuel` leaves the last `low` to the locked path. Returns how many
    /// it took (none if `until` is too close or too far).
    pub(crate) fn fill(&self, count: u64, until: Instant, low: u64) -> u64 {
        let count = count.min(LANE_MAX);
        let until = self.units(until);
        if count == 0 || until == 0 || until >= 1 << (64 - COUNT_BITS) {
            return 0;
        }
        self.low.store(low, Ordering::Relaxed);
        self.word
            .store((until << COUNT_BITS) | count, Ordering::Release);
        count
    }

    /// Marks an empty lane refused until `until` (Redis said when to ask
    /// again, and nothing is held or coming before): `has_fuel` says no
    /// without the lock until then.
    pub(crate) fn refuse_until(&self, until: Instant) {
        let until = self.units(until);
        if until < 1 << (64 - COUNT_BITS) {
            self.word.store(until << COUNT_BITS, Ordering::Release);
        }
    }

    /// Lifts a *refused until* mark (more fuel may be spendable now than
    /// when it was set): `has_fuel` asks the locked path again.
    pub(crate) fn unmark(&self) {
        let word = self.word.load(Ordering::Acquire);
        if word & COUNT_MASK == 0 && word != 0 {
            // A fill or drain in between changed the word: nothing to lift.
            let _ = self
                .word
                .compare_exchange(word, 0, Ordering::AcqRel, Ordering::Acquire);
        }
    }

    /// Units in the lane spendable at `now` (its end has not passed).
    pub(crate) fn spendable(&self, now: Instant) -> u64 {
        let word = self.word.load(Ordering::Acquire);
        let spendable = self.units(now) < word >> COUNT_BITS;
        if spendable { word & COUNT_MASK } else { 0 }
    }

    /// Units in the lane now.
    pub(crate) fn count(&self) -> u64 {
        self.word.load(Ordering::Acquire) & COUNT_MASK
    }

    /// Lets `has_fuel` take down to zero (a round trip is on its way).
    pub(crate) fn open_low(&self) {
        self.low.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_until_the_end_and_above_the_low_mark() {
        let base = Instant::now();
        let lane = Lane::new(base);
        let until = base + Duration::from_millis(10);
        assert_eq!(lane.fill(5, until, 2), 5);
        assert_eq!(lane.take_at(2, base), Some(true));
        assert_eq!(lane.take_at(1, base), Some(true));
        assert_eq!(
            lane.take_at(1, base),
            None,
            "the last two are the locked path's"
        );
        lane.open_low();
        assert_eq!(lane.take_at(2, base + Duration::from_millis(9)), Some(true));
        assert_eq!(
            lane.take_at(1, base),
            None,
            "emptied, the lane asks the locked path (the reserve may hold more)"
        );
        assert_eq!(lane.drain(), None);
        lane.fill(3, until, 0);
        assert_eq!(lane.take_at(1, until), None, "never at or after the end");
        let (count, end) = lane.drain().unwrap();
        assert_eq!(count, 3);
        assert!(end <= until && until - end < Duration::from_micros(2));
        assert_eq!(lane.count(), 0);
        lane.refuse_until(until);
        assert_eq!(lane.take_at(1, base), Some(false));
        assert_eq!(lane.take_at(1, until), None);
        assert_eq!(lane.drain(), None);
        assert_eq!(lane.take_at(1, base), None);
        lane.refuse_until(until);
        lane.unmark();
        assert_eq!(lane.take_at(1, base), None, "the mark is lifted");
        lane.fill(2, until, 0);
        lane.unmark();
        assert_eq!(lane.count(), 2, "units are no mark");
    }
}
