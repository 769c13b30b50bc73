//! The default clock: the time-stamp counter where it is invariant, else
//! `Instant::now()`.
//!
//! Reading the counter costs a fraction of a system clock call (measured in
//! `benches/take.rs`). Its frequency is not announced, so it is calibrated
//! against `Instant` without ever blocking: until 20 ms have passed since the
//! first reading, readings come from `Instant` (and each checks whether the
//! calibration window has elapsed); from then on from the counter, through a
//! linear map that is refined at 1 s and 100 s. Each new map is anchored where
//! the previous one stood, so readings stay continuous.

use std::time::Instant;

use super::{Clock, instant_of, ns_of};

/// The default clock: fast and monotonic.
///
/// On x86-64 processors with an invariant time-stamp counter it reads the
/// counter, calibrated against [`Instant`]; elsewhere it is `Instant::now()`.
/// Readings taken on different cores may differ by a few nanoseconds in
/// either direction, which the crate tolerates everywhere.
///
/// # Examples
///
/// ```
/// use fueltank::clock::{Clock, MonotonicClock};
///
/// let clock = MonotonicClock;
/// let a = clock.now();
/// let b = clock.now();
/// assert!(b + std::time::Duration::from_micros(1) >= a);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MonotonicClock;

impl Clock for MonotonicClock {
    fn now(&self) -> Instant {
        instant_of(now_ns())
    }
}

/// The current reading in the crate's internal nanoseconds.
#[inline(always)]
pub(crate) fn now_ns() -> u64 {
    #[cfg(all(target_arch = "x86_64", not(fueltank_loom)))]
    return tsc::now_ns();
    #[cfg(not(all(target_arch = "x86_64", not(fueltank_loom))))]
    ns_of(Instant::now())
}

#[cfg(all(target_arch = "x86_64", not(fueltank_loom)))]
mod tsc {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicPtr, Ordering};
    use std::time::Instant;

    use super::ns_of;

    /// A linear map from counter ticks to nanoseconds.
    struct Calibration {
        /// Origin of the map, placed `SKEW_TICKS` before the reading it was
        /// anchored at, so that readings from cores whose counters lag a
        /// little are still past it and the map needs no signed arithmetic.
        tsc0: u64,
        ns0: u64,
        /// Nanoseconds per tick, as a 32.32 fixed-point number.
        mult: u64,
        /// Counter value at which to refine the map (`u64::MAX`: never).
        refine_at: u64,
    }

    /// Far more than invariant counters ever differ between cores.
    const SKEW_TICKS: u64 = 1 << 24;

    impl Calibration {
        #[inline(always)]
        fn ns(&self, tsc: u64) -> u64 {
            let ticks = tsc.saturating_sub(self.tsc0);
            self.ns0 + ((u128::from(ticks) * u128::from(self.mult)) >> 32) as u64
        }
    }

    /// Published maps are leaked boxes (at most three per process), so a
    /// loaded pointer stays valid forever.
    static CALIBRATION: AtomicPtr<Calibration> = AtomicPtr::new(std::ptr::null_mut());

    /// The first (counter, nanoseconds) pair, the origin of every map;
    /// `None` if the counter is not invariant.
    static ORIGIN: OnceLock<Option<(u64, u64)>> = OnceLock::new();

    const FIRST_WINDOW_NS: u64 = 20_000_000;
    const REFINE_AFTER_NS: [u64; 2] = [1_000_000_000, 100_000_000_000];

    #[inline(always)]
    pub(super) fn now_ns() -> u64 {
        let map = CALIBRATION.load(Ordering::Acquire);
        if map.is_null() {
            return uncalibrated();
        }
        // SAFETY: non-null pointers in CALIBRATION come from Box::leak in
        // `publish` and are never freed.
        let map = unsafe { &*map };
        let tsc = rdtsc();
        if tsc >= map.refine_at {
            return refine(map, tsc);
        }
        map.ns(tsc)
    }

    #[inline(always)]
    fn rdtsc() -> u64 {
        // SAFETY: RDTSC exists on every x86-64 processor and has no
        // preconditions; it only reads a counter.
        unsafe { core::arch::x86_64::_rdtsc() }
    }

    /// A counter reading paired with an `Instant` reading: of a few tries,
    /// the one taken closest together (least disturbed by interrupts), as
    /// (counter at the middle, nanoseconds, counter ticks it took).
    fn sample() -> (u64, u64, u64) {
        let mut best = (0, 0, u64::MAX);
        for _ in 0..5 {
            let before = rdtsc();
            let ns = ns_of(Instant::now());
            let after = rdtsc();
            let took = after.wrapping_sub(before);
            if took < best.2 {
                best = (before + took / 2, ns, took);
            }
        }
        best
    }

    /// A reading before the counter is calibrated (or if it cannot be):
    /// from `Instant`.
    #[cold]
    fn uncalibrated() -> u64 {
        let origin = *ORIGIN.get_or_init(|| {
            let invariant = core::arch::x86_64::__cpuid(0x8000_0007).edx & (1 << 8) != 0;
            invariant.then(|| {
                let (tsc, ns, _) = sample();
                (tsc, ns)
            })
        });
        let now = ns_of(Instant::now());
        let Some((tsc0, ns0)) = origin else {
            return now;
        };
        if now.saturating_sub(ns0) >= FIRST_WINDOW_NS {
            // Calibrate if the sampling error is small against the window:
            // a part in 10^4 of it at most (an `Instant` read is ~100 ticks
            // natively, far more under valgrind).
            let (tsc, ns, took) = sample();
            if tsc > tsc0 && took.saturating_mul(10_000) < tsc - tsc0 {
                let elapsed = ns.saturating_sub(ns0);
                publish(
                    None,
                    (tsc, ns),
                    mult(tsc - tsc0, elapsed),
                    REFINE_AFTER_NS[0],
                );
            }
        }
        now
    }

    #[cold]
    fn refine(map: &Calibration, tsc: u64) -> u64 {
        let now = map.ns(tsc);
        let Some(Some((tsc0, ns0))) = ORIGIN.get().copied() else {
            return now;
        };
        let (tsc1, ns1, _) = sample();
        let elapsed = ns1.saturating_sub(ns0);
        let next = REFINE_AFTER_NS
            .iter()
            .copied()
            .find(|&after| after > elapsed);
        if tsc1 > tsc0 {
            // Anchor the new map at the old map's reading, for continuity.
            let anchor = (tsc1, map.ns(tsc1));
            publish(
                Some(map),
                anchor,
                mult(tsc1 - tsc0, elapsed),
                next.unwrap_or(0),
            );
        }
        now
    }

    fn mult(ticks: u64, ns: u64) -> u64 {
        ((u128::from(ns) << 32) / u128::from(ticks.max(1))) as u64
    }

    /// Publishes a new map through `(tsc, ns)`; `refine_after` is the time
    /// since the origin at which to refine it again (0: never).
    fn publish(old: Option<&Calibration>, (tsc, ns): (u64, u64), mult: u64, refine_after: u64) {
        let refine_at = match (refine_after, ORIGIN.get().copied().flatten()) {
            (0, _) | (_, None) => u64::MAX,
            (after, Some((_, ns0))) => {
                let wait_ns = (ns0 + after).saturating_sub(ns);
                tsc.saturating_add(((u128::from(wait_ns) << 32) / u128::from(mult.max(1))) as u64)
            }
        };
        let back = ((u128::from(SKEW_TICKS) * u128::from(mult)) >> 32) as u64;
        let new = Box::into_raw(Box::new(Calibration {
            tsc0: tsc.saturating_sub(SKEW_TICKS),
            ns0: ns.saturating_sub(back),
            mult,
            refine_at,
        }));
        let expected = old.map_or(std::ptr::null_mut(), |m| m as *const _ as *mut _);
        if CALIBRATION
            .compare_exchange(expected, new, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            // Another thread published first; ours was never shared.
            // SAFETY: `new` came from Box::into_raw above and lost the race,
            // so no other thread has seen it.
            drop(unsafe { Box::from_raw(new) });
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn map_is_linear_and_tolerates_earlier_readings() {
            let map = Calibration {
                tsc0: 1_000,
                ns0: 5_000,
                mult: 1 << 31, // half a nanosecond per tick
                refine_at: u64::MAX,
            };
            assert_eq!(map.ns(1_000), 5_000);
            assert_eq!(map.ns(3_000), 6_000);
            assert_eq!(map.ns(998), 5_000);
        }
    }
}
