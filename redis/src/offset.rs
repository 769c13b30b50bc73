//! Where Redis's clock is, seen from this one: the tightest bounds that
//! every round trip so far allows.
//!
//! A script that answered with Redis time `S` ran between the call's
//! sending (local `q`) and its answer (local `r`): the offset
//! `θ = Redis − local` is in `[S − r, S − q]`. Each round trip narrows the
//! bounds to their intersection, so they are as tight as the fastest round
//! trip, not as loose as the latest. Bounds widen by 100 ppm of the time
//! since they were set, so that clocks whose rates differ by that much
//! stay inside them; an empty intersection (a clock stepped) starts again
//! from the latest round trip alone.
//!
//! A grant's times, relative to its `S`, are then local times between
//! `S − θ_hi` and `S − θ_lo` (see `reserve.rs`).

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Widening per nanosecond since the bounds were set (100 ppm).
const DRIFT: i128 = 10_000;

#[derive(Debug)]
pub(crate) struct Offset {
    base: Instant,
    bounds: Mutex<Option<Bounds>>,
}

#[derive(Debug, Clone, Copy)]
struct Bounds {
    lo: i128,
    hi: i128,
    /// When they were set, in ns since `base`.
    at: i128,
}

impl Offset {
    pub(crate) fn new() -> Offset {
        Offset {
            base: Instant::now(),
            bounds: Mutex::new(None),
        }
    }

    fn local(&self, at: Instant) -> i128 {
        match at.checked_duration_since(self.base) {
            Some(after) => after.as_nanos() as i128,
            None => -((self.base - at).as_nanos() as i128),
        }
    }

    /// Narrows the bounds with a script run at Redis time `redis_ns`,
    /// called at `sent` and answered at `answered`. Returns the local times
    /// between which that run happened: `(earliest, latest)`.
    pub(crate) fn observe(
        &self,
        redis_ns: i128,
        sent: Instant,
        answered: Instant,
    ) -> (Instant, Instant) {
        let (q, r) = (self.local(sent), self.local(answered));
        let mut guard = crate::lock(&self.bounds);
        let (mut lo, mut hi) = (redis_ns - r, redis_ns - q);
        if let Some(old) = *guard {
            let widen = (r - old.at).max(0) / DRIFT + 1;
            let (old_lo, old_hi) = (old.lo - widen, old.hi + widen);
            if old_lo.max(lo) <= old_hi.min(hi) {
                lo = lo.max(old_lo);
                hi = hi.min(old_hi);
            }
        }
        *guard = Some(Bounds { lo, hi, at: r });
        // Redis's now as a local time: redis_ns − θ, for θ in [lo, hi].
        let earliest = redis_ns - hi;
        let latest = redis_ns - lo;
        (
            self.instant(earliest).max(sent),
            self.instant(latest).min(answered),
        )
    }

    fn instant(&self, local: i128) -> Instant {
        let ns = Duration::from_nanos(local.unsigned_abs().min(u64::MAX as u128) as u64);
        if local >= 0 {
            self.base + ns
        } else {
            self.base.checked_sub(ns).unwrap_or(self.base)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn bounds_are_as_tight_as_the_fastest_round_trip() {
        let offset = Offset::new();
        let t = offset.base + 10 * MS;
        // Redis is 5 s ahead. A slow round trip (4 ms), then a fast one.
        let redis = |at: Instant| 5_000_000_000 + offset.local(at);
        let (e, l) = offset.observe(redis(t + 3 * MS), t, t + 4 * MS);
        assert_eq!((e, l), (t, t + 4 * MS));
        let u = t + 20 * MS;
        let (e, l) = offset.observe(redis(u + MS / 10), u, u + MS / 5);
        assert!(l - e <= MS / 5);
        // Later slow round trips keep the tight bounds (widened by drift).
        let v = u + 20 * MS;
        let (e, l) = offset.observe(redis(v + MS), v, v + 3 * MS);
        assert!(l - e < MS / 4, "{:?}", l - e);
        assert!(e <= v + MS && v + MS <= l);
    }

    #[test]
    fn a_stepped_clock_starts_again() {
        let offset = Offset::new();
        let t = offset.base + 10 * MS;
        offset.observe(1_000_000_000, t, t + MS / 10);
        // Redis's clock jumped a second: no intersection.
        let u = t + 5 * MS;
        let redis = 2_000_000_000 + offset.local(u);
        let (e, l) = offset.observe(redis, u, u + 2 * MS);
        assert_eq!((e, l), (u, u + 2 * MS));
    }
}
