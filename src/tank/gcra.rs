//! The rate algorithm, once: virtual scheduling (GCRA) in pure integer
//! arithmetic. No clock, no atomics, no lock: the locked bucket
//! (`bucket.rs`), the lock-free word (`word.rs`) and the shared-memory word
//! (`host.rs`) each keep a `tat` where they keep it, and compute with these
//! functions.
//!
//! # Virtual scheduling
//!
//! The whole state is one number, `tat`: the time at which the next fuel is
//! due. With interval `T = per / max_n` and capacity `C`, the tank holds
//!
//! ```text
//! level(now) = 0                                   if tat > now
//!            = min(C, ⌊(now − tat) / T⌋ + 1)       otherwise
//! ```
//!
//! Taking `n` fuel at `now` first forgets fuel beyond the cap,
//! `tat ← max(tat, now − tol)` with the *tolerance* `tol = (C − 1)·T`
//! ([`settle`]), then succeeds if `tat + (n − 1)·T ≤ now`, and moves `tat`
//! on by `n·T` ([`take`]). That is all: refill is computed from absolute
//! time, so a late reader catches up exactly and nothing drifts; a tank
//! nobody touches costs nothing.
//!
//! - `Limit`: `C = max_n`. At most `max_n` at once after idle, then one per
//!   `T`: any window of length `per` sees at most `2·max_n − 1` grants.
//! - `One`: `C = 1`, so `tat ← max(tat, now)` and grants are at least `T`
//!   apart: at most `max_n` in any window of length `per`.
//! - `Unbounded`: no cap ([`Tick::NO_CAP`] as the tolerance); unused fuel
//!   banks up for ever.
//!
//! The *headroom* of a take, `tat − (now − tol)` after forgetting, is how
//! far the bucket is from full: fuel given back later is exact only while
//! every take since found at least that much room (`refunds.rs`). Giving
//! back `n` fuel moves `tat` back by `n·T`.
//!
//! A waiter that schedules its turn ([`due`]) moves `tat` on as a take
//! does, without the check: its fuel is the one due at `tat + (n − 1)·T`.
//! A pause freezes the fuel held, `now + T − tat` in ticks ([`room`]);
//! resuming turns it back into a `tat` against the present ([`resume`]).
//! A rate change keeps the distance `tat − now` in fuel, rounded towards
//! later ([`convert`]): never more fuel than before, and no burst.
//!
//! # Ticks
//!
//! Time is counted in *ticks* of `1/s` ns, with `s` the reduced denominator
//! of `per / max_n` (see `Rate::ticks`), so that `T` is a whole number of
//! ticks and a million grants cost exactly `10⁶·T`: no rounding, no drift,
//! whatever the rate. The locked bucket counts in `i128` and saturates: only
//! rates whose period is centuries long, at the end of the clock, come near
//! the bound, and there a saturated answer is "not yet", never extra fuel.
//! The words count in `u64` below 2^48 and wrap: a reader may have read
//! parameters while they changed, and then its answer is discarded by its
//! compare-and-swap, whatever it was.

/// Tick arithmetic: saturating in `i128`, wrapping in `u64` (but for
/// [`Tick::floor`]).
pub(crate) trait Tick: Copy + Ord + std::ops::Div<Output = Self> + TryInto<u64> {
    /// The tolerance of a bucket without a cap.
    const NO_CAP: Self;
    fn plus(self, x: Self) -> Self;
    fn minus(self, x: Self) -> Self;
    /// `self − x`, not below the type's least value.
    fn floor(self, x: Self) -> Self;
    /// `n` intervals of `t`.
    fn times(t: Self, n: u128) -> Self;
}

impl Tick for u64 {
    const NO_CAP: u64 = u64::MAX;
    #[inline(always)]
    fn plus(self, x: u64) -> u64 {
        self.wrapping_add(x)
    }
    #[inline(always)]
    fn minus(self, x: u64) -> u64 {
        self.wrapping_sub(x)
    }
    #[inline(always)]
    fn floor(self, x: u64) -> u64 {
        self.saturating_sub(x)
    }
    #[inline(always)]
    fn times(t: u64, n: u128) -> u64 {
        t.wrapping_mul(n as u64)
    }
}

impl Tick for i128 {
    const NO_CAP: i128 = i128::MAX;
    #[inline(always)]
    fn plus(self, x: i128) -> i128 {
        self.saturating_add(x)
    }
    #[inline(always)]
    fn minus(self, x: i128) -> i128 {
        self.saturating_sub(x)
    }
    #[inline(always)]
    fn floor(self, x: i128) -> i128 {
        self.saturating_sub(x)
    }
    #[inline(always)]
    fn times(t: i128, n: u128) -> i128 {
        i128::try_from(n).unwrap_or(i128::MAX).saturating_mul(t)
    }
}

/// `tat` with the fuel beyond the cap forgotten at `now`; changes no level.
#[inline(always)]
pub(crate) fn settle<T: Tick>(tat: T, now: T, tol: T) -> T {
    tat.max(now.floor(tol))
}

/// When the last of `n` fuel asked at `now` is due, if nobody takes any
/// before, and the `tat` once they are taken (or scheduled).
#[inline(always)]
pub(crate) fn due<T: Tick>(tat: T, now: T, tol: T, t: T, n: u128) -> (T, T) {
    let last = settle(tat, now, tol).plus(T::times(t, n.saturating_sub(1)));
    (last, last.plus(t))
}

/// Takes `n` fuel at `now`, if they are there: the new `tat`, and the
/// headroom the take found (huge without a cap).
#[inline(always)]
pub(crate) fn take<T: Tick>(tat: T, now: T, tol: T, t: T, n: u64) -> Option<(T, T)> {
    let tat = settle(tat, now, tol);
    // (One fuel, the common take, needs no multiplication.)
    let last = match n {
        0 | 1 => tat,
        n => tat.plus(T::times(t, u128::from(n - 1))),
    };
    // The headroom, `tat − (now − tol)`, also when `now < tol`.
    (last <= now).then(|| (last.plus(t), tat.plus(tol).minus(now)))
}

/// The fuel in the bucket at `now`.
#[inline]
pub(crate) fn level<T: Tick>(tat: T, now: T, tol: T, t: T) -> u64 {
    if tat > now {
        return 0;
    }
    // Whole intervals in `x ≥ 0`, plus the one due at `tat`.
    let fuel = |x: T| (x / t).try_into().unwrap_or(u64::MAX).saturating_add(1);
    let cap = match tol == T::NO_CAP {
        true => u64::MAX,
        false => fuel(tol),
    };
    fuel(now.minus(tat)).min(cap)
}

/// The fuel held at `now`, in ticks, as a pause freezes it: negative while
/// turns scheduled are still to come.
#[cfg(any(feature = "shared-memory", test))]
pub(crate) fn room(tat: i128, now: i128, tol: i128, t: i128) -> i128 {
    now.plus(t).minus(settle(tat, now, tol))
}

/// The `tat` that holds `room` ticks of fuel at `now` (resuming a pause).
#[cfg(any(feature = "shared-memory", test))]
pub(crate) fn resume(room: i128, now: i128, t: i128) -> i128 {
    now.plus(t).minus(room)
}

/// Largest distance, in fuel, that [`convert`] carries over.
const MAX_FUEL: i128 = 1 << 62;

/// A distance `tat − now` in ticks of interval `t_old`, as the same
/// distance in fuel in ticks of interval `t_new`, rounded towards later
/// (never more fuel than before): `⌈offset·t_new / t_old⌉`. In whole fuel
/// and a remainder, so that no product overflows; a distance beyond 2^62
/// fuel (only an `Unbounded` bank has one) is kept at 2^62.
pub(crate) fn convert(offset: i128, t_old: u64, t_new: u64) -> i128 {
    let t_old = i128::from(t_old);
    let whole = offset.div_euclid(t_old).clamp(-MAX_FUEL, MAX_FUEL);
    let rest = offset.rem_euclid(t_old) as u128;
    let rest = (rest * u128::from(t_new)).div_ceil(t_old as u128);
    whole
        .saturating_mul(i128::from(t_new))
        .saturating_add(rest as i128)
}

/// Ticks of `1/s` ns as whole nanoseconds, rounded up: the fuel due at a
/// tick is there at the end of its nanosecond.
pub(crate) fn ns_ceil(ticks: i128, s: u64) -> i128 {
    let s = i128::from(s);
    ticks.div_euclid(s) + i128::from(ticks.rem_euclid(s) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What a caller does to a bucket, at `dt` ticks after the last call.
    #[derive(Debug, Clone)]
    enum Op {
        Take {
            dt: u64,
            n: u64,
        },
        /// Gives back the `i`-th grant still held (if any).
        GiveBack {
            dt: u64,
            i: usize,
        },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (0..400u64, 1..6u64).prop_map(|(dt, n)| Op::Take { dt, n }),
            1 => (0..400u64, 0..8usize).prop_map(|(dt, i)| Op::GiveBack { dt, i }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Never over-grants: at any point, fuel granted and kept is at
        /// most what the bucket held at the start (its capacity) plus
        /// what accrued since; a take that fits is granted (the bound is
        /// met exactly under greedy takes); the `u64` and `i128` forms
        /// agree; refunds right after their take are exact.
        #[test]
        fn gcra_never_over_grants(
            t in 1..50u64,
            cap in 1..6u64,
            ops in proptest::collection::vec(op(), 1..60),
        ) {
            let tol = (cap - 1) * t;
            // Full at 0.
            let start = tol as i128;
            let mut tat: i128 = 0;
            let mut now: u64 = start as u64;
            let mut kept = 0u64;
            let mut held: Vec<(u64, i128)> = Vec::new();
            for op in ops {
                match op {
                    Op::Take { dt, n } => {
                        now += dt;
                        let before = level(tat, now as i128, tol as i128, t as i128);
                        let wide = take(tat, now as i128, tol as i128, t as i128, n);
                        let narrow = take(tat.max(0) as u64, now, tol, t, n);
                        prop_assert_eq!(
                            wide.map(|(tat, room)| (tat as u64, room as u64)),
                            narrow,
                        );
                        prop_assert_eq!(wide.is_some(), n <= before, "level {}", before);
                        if let Some((new, _)) = wide {
                            tat = new;
                            kept += n;
                            held.push((n, new));
                            let after = level(tat, now as i128, tol as i128, t as i128);
                            prop_assert_eq!(after, before - n);
                        }
                    }
                    Op::GiveBack { dt, i } => {
                        now += dt;
                        if i < held.len() {
                            let (n, at) = held.remove(i);
                            // Exact only if nothing moved `tat` since and
                            // no fuel ran into the cap (as `refunds.rs` asks).
                            let before = level(tat, now as i128, tol as i128, t as i128);
                            if at == tat && before + n <= cap {
                                tat -= i128::from(n) * i128::from(t);
                                kept -= n;
                                let after = level(tat, now as i128, tol as i128, t as i128);
                                prop_assert_eq!(after, before + n, "refund not exact");
                            }
                        }
                    }
                }
                let elapsed = now - start as u64;
                prop_assert!(kept <= cap + elapsed / t, "{} kept, cap {} + {} accrued", kept, cap, elapsed / t);
            }
        }

        /// A rate change keeps the distance to `tat` in fuel, rounded
        /// towards later by less than one new tick: never more fuel.
        #[test]
        fn convert_keeps_the_distance_in_fuel(
            offset in -1_000_000i128..1_000_000,
            t_old in 1..10_000u64,
            t_new in 1..10_000u64,
        ) {
            let new = convert(offset, t_old, t_new);
            // new / t_new ≥ offset / t_old, by less than 1 / t_new.
            let lhs = new * i128::from(t_old);
            let rhs = offset * i128::from(t_new);
            prop_assert!(lhs >= rhs && lhs - rhs < i128::from(t_old), "{} {}", lhs, rhs);
            // A pause's room converts the same way, rounded towards less.
            let room = -convert(-offset, t_old, t_new);
            prop_assert_eq!(room, (offset * i128::from(t_new)).div_euclid(i128::from(t_old)));
        }

        /// A pause and a resume at the same time change nothing but the
        /// fuel beyond the cap.
        #[test]
        fn pause_and_resume_keep_the_level(
            tat in -500i128..500, now in 0i128..1000, t in 1i128..50, cap in 1i128..6,
        ) {
            let tol = (cap - 1) * t;
            let resumed = resume(room(tat, now, tol, t), now, t);
            prop_assert_eq!(resumed, settle(tat, now, tol));
            prop_assert_eq!(level(resumed, now, tol, t), level(tat, now, tol, t));
        }
    }

    #[test]
    fn ns_ceil_rounds_up() {
        assert_eq!(ns_ceil(10, 5), 2);
        assert_eq!(ns_ceil(11, 5), 3);
        assert_eq!(ns_ceil(-11, 5), -2);
        assert_eq!(ns_ceil(0, 7), 0);
    }

    #[test]
    fn an_uncapped_level_is_never_capped() {
        assert_eq!(level(0i128, 1000, i128::NO_CAP, 1), 1001);
        assert_eq!(level(0u64, 1000, u64::NO_CAP, 1), 1001);
    }
}
