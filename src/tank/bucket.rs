//! The refill algorithm, in one place.
//!
//! # `Limit`, `One`, `Unbounded`: virtual scheduling (GCRA)
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
//! `tat ← max(tat, now − (C − 1)·T)`, then succeeds if
//! `tat + (n − 1)·T ≤ now`, and moves `tat` on by `n·T`. That is all: refill
//! is computed from absolute time, so a late reader catches up exactly and
//! nothing drifts; a tank nobody touches costs nothing.
//!
//! - `Limit`: `C = max_n`. At most `max_n` at once after idle, then one per
//!   `T`: any window of length `per` sees at most `2·max_n − 1` grants.
//! - `One`: `C = 1`, so `tat ← max(tat, now)` and grants are at least `T`
//!   apart: at most `max_n` in any window of length `per`.
//! - `Unbounded`: no cap; unused fuel banks up for ever.
//!
//! Time is counted in *ticks* of `1/s` ns, with `s` the reduced denominator
//! of `per / max_n` (see `Rate::ticks`), so that `T` is a whole number of
//! ticks and a million grants cost exactly `10⁶·T`: no rounding, no drift.
//!
//! # `Window`: a sliding log
//!
//! `Window` remembers when its last `max_n` grants happened (as runs of equal
//! times) and grants `n` at `now` only if the log holds at most `max_n − n`
//! grants later than `now − per`. So no half-open window of length `per` ever
//! holds more than `max_n` grants, and bursts of up to `max_n` are allowed.
//! Memory is `O(max_n)`.
//!
//! # The lock-free form
//!
//! The tank also keeps `tat` packed in one atomic word, so that
//! [`has_fuel`](crate::Tank::has_fuel) is one compare-and-swap (see
//! `tank/word.rs`). [`gcra_take`] is the same step in the 48-bit integers of
//! that word.

use std::collections::VecDeque;

use crate::Rate;

/// The state of one tank's fuel, under any hardcap.
#[derive(Debug)]
pub(crate) enum Bucket {
    Gcra(Gcra),
    Window(Window),
}

/// Virtual scheduling for `Limit`, `One` and `Unbounded`.
#[derive(Debug)]
pub(crate) struct Gcra {
    /// When the next fuel is due, in ticks since `epoch`.
    tat: i128,
    /// Internal nanoseconds at tick 0.
    epoch: u64,
    /// Ticks per nanosecond.
    s: u64,
    /// The interval, in ticks.
    t: u64,
    /// Capacity; `None` for `Unbounded`.
    cap: Option<u64>,
}

/// The grant log of `Window`.
///
/// Times in the log are *window time*: the clock minus the time spent
/// paused, so a pause shifts nothing and a grant's stamp stays valid.
#[derive(Debug)]
pub(crate) struct Window {
    /// Runs of grants: (window time, how many at that time), oldest first.
    log: VecDeque<(u64, u64)>,
    /// Grants in the log.
    len: u64,
    max_n: u64,
    per_ns: u64,
    /// Time spent paused, subtracted from the clock.
    paused_ns: u64,
    /// Window time at creation: stamps fall on a grid from here.
    origin: u64,
}

/// Largest bank, in fuel, that `set_rate` carries over.
const MAX_FUEL: i128 = 1 << 62;

impl Gcra {
    /// A bucket holding `initial` fuel at `now`, with no partial fuel.
    pub(crate) fn new(rate: Rate, cap: Option<u64>, initial: u64, now: u64) -> Gcra {
        let (s, t) = rate.ticks();
        let mut gcra = Gcra {
            tat: 0,
            epoch: now,
            s,
            t,
            cap,
        };
        gcra.tat = -(i128::from(initial) - 1) * i128::from(t);
        gcra
    }

    /// A bucket whose next fuel is due at `tat` ticks after `epoch`, with
    /// `(s, t)` from `Rate::ticks`.
    pub(crate) fn from_parts((s, t): (u64, u64), cap: Option<u64>, epoch: u64, tat: i128) -> Gcra {
        Gcra {
            tat,
            epoch,
            s,
            t,
            cap,
        }
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.epoch
    }

    pub(crate) fn scale(&self) -> (u64, u64) {
        (self.s, self.t)
    }

    pub(crate) fn cap(&self) -> Option<u64> {
        self.cap
    }

    pub(crate) fn tat(&self) -> i128 {
        self.tat
    }

    pub(crate) fn set_tat(&mut self, tat: i128) {
        self.tat = tat;
    }

    /// Moves the epoch to `epoch`, keeping every time the same.
    pub(crate) fn rebase(&mut self, epoch: u64) {
        let shift = (i128::from(epoch) - i128::from(self.epoch)) * i128::from(self.s);
        self.tat -= shift;
        self.epoch = epoch;
    }

    fn ticks(&self, now: u64) -> i128 {
        (i128::from(now) - i128::from(self.epoch)) * i128::from(self.s)
    }

    /// `tat` with fuel beyond the cap forgotten.
    fn capped_tat(&self, now_t: i128) -> i128 {
        match self.cap {
            Some(cap) => self
                .tat
                .max(now_t - (i128::from(cap) - 1) * i128::from(self.t)),
            None => self.tat,
        }
    }

    /// Forgets fuel beyond the cap at `now`; changes no level.
    pub(crate) fn settle(&mut self, now: u64) {
        self.tat = self.capped_tat(self.ticks(now));
    }

    pub(crate) fn try_take(&mut self, now: u64, n: u64) -> bool {
        let now_t = self.ticks(now);
        let tat = self.capped_tat(now_t);
        let n = i128::from(n);
        let t = i128::from(self.t);
        if tat + (n - 1) * t <= now_t {
            self.tat = tat + n * t;
            true
        } else {
            false
        }
    }

    /// When `n` fuel will have accrued, if nobody takes any before.
    pub(crate) fn due(&self, now: u64, n: u64) -> u64 {
        let now_t = self.ticks(now);
        let due_t = self.capped_tat(now_t) + (i128::from(n) - 1) * i128::from(self.t);
        if due_t <= now_t {
            return now;
        }
        let ns = (due_t + i128::from(self.s) - 1).div_euclid(i128::from(self.s));
        u64::try_from(i128::from(self.epoch) + ns).unwrap_or(u64::MAX)
    }

    pub(crate) fn level(&self, now: u64) -> u64 {
        let now_t = self.ticks(now);
        if self.tat > now_t {
            return 0;
        }
        let accrued = (now_t - self.tat) / i128::from(self.t) + 1;
        let accrued = u64::try_from(accrued).unwrap_or(u64::MAX);
        self.cap.map_or(accrued, |cap| accrued.min(cap))
    }

    /// Until when (internal ns) the bucket, as it stands after a take,
    /// cannot become full even if nobody takes again: `tat + (C − 1)·T`.
    /// Giving fuel back before then is exact (see `Core::refund`).
    pub(crate) fn refundable_until(&self) -> u64 {
        let Some(cap) = self.cap else {
            return u64::MAX;
        };
        let full_t = self.tat + (i128::from(cap) - 1) * i128::from(self.t);
        let ns = i128::from(self.epoch) + full_t.div_euclid(i128::from(self.s));
        ns.clamp(0, i128::from(u64::MAX)) as u64
    }

    /// Gives back `n` fuel taken earlier.
    pub(crate) fn refund(&mut self, n: u64) {
        self.tat -= i128::from(n) * i128::from(self.t);
    }

    /// Lets `by_ns` pass without refill.
    pub(crate) fn skip(&mut self, by_ns: u64) {
        self.tat += i128::from(by_ns) * i128::from(self.s);
    }

    /// Changes the rate at `now`, keeping the fuel level (with its fraction
    /// of the next fuel) and capping it to the new capacity: no burst.
    pub(crate) fn set_rate(&mut self, now: u64, rate: Rate, cap: Option<u64>) {
        let now_t = self.ticks(now);
        let offset = self.capped_tat(now_t) - now_t;
        let (s, t) = rate.ticks();
        // Same distance in fuel: offset / T_old = offset' / T_new, rounded
        // towards later (never more fuel than before). In whole fuel and a
        // remainder, so that no product overflows; a bank beyond 2^62 fuel
        // (only `Unbounded` has one) is kept at 2^62.
        let whole = offset
            .div_euclid(i128::from(self.t))
            .clamp(-MAX_FUEL, MAX_FUEL);
        let rest = offset.rem_euclid(i128::from(self.t)) as u128;
        let rest = (rest * u128::from(t)).div_ceil(u128::from(self.t));
        let offset = whole * i128::from(t) + rest as i128;
        self.s = s;
        self.t = t;
        self.cap = cap;
        self.tat = self.ticks(now) + offset;
        self.settle(now);
    }
}

/// The lock-free step of [`Gcra::try_take`], on a `tat` and a clock reading
/// both in ticks since the epoch of the atomic word (`tol = (C − 1)·T`).
/// Returns the new `tat`, or `None` if `n` fuel are not there.
#[inline]
pub(crate) fn gcra_take(tat: u64, now_t: u64, tol: u64, t: u64, n: u64) -> Option<u64> {
    // Wrapping: on the lock-free path the parameters may have been read
    // while changing; any answer is then discarded by the compare-and-swap.
    let tat = tat.max(now_t.saturating_sub(tol));
    let last = tat.wrapping_add((n - 1).wrapping_mul(t));
    (last <= now_t).then(|| last.wrapping_add(t))
}

impl Window {
    /// A window that has already granted `max_n − initial` at `now`.
    pub(crate) fn new(rate: Rate, initial: u64, now: u64) -> Window {
        let mut window = Window {
            log: VecDeque::new(),
            len: 0,
            max_n: rate.max_n(),
            per_ns: rate.per_ns(),
            paused_ns: 0,
            origin: now,
        };
        window.push(now, rate.max_n() - initial.min(rate.max_n()));
        window
    }

    /// Records `n` grants at `now`, stamped at the next multiple of the
    /// grid: a later stamp leaves the window later, which only ever
    /// tightens the promise, and grants that leave together are served by
    /// one timer wake-up (at a million a second, thousands of wake-ups
    /// rather than a million). The grid is at most 1/4096 of `per` and 50
    /// µs, so a saturated window loses at most that much of its rate. The
    /// grid starts at the window's creation.
    fn push(&mut self, now: u64, n: u64) -> u64 {
        let grid = (self.per_ns / 4096).clamp(1, 50_000);
        let since = now.saturating_sub(self.origin);
        let stamp = self
            .origin
            .saturating_add(since.div_ceil(grid).saturating_mul(grid));
        if n == 0 {
            return stamp;
        }
        self.len += n;
        match self.log.back_mut() {
            // Time may step back between cores; keep the log sorted.
            Some((at, count)) if *at >= stamp => {
                *count += n;
                *at
            }
            _ => {
                self.log.push_back((stamp, n));
                stamp
            }
        }
    }

    /// Drops grants that no window ending at `now` or later can see.
    fn evict(&mut self, now: u64) {
        while let Some(&(at, count)) = self.log.front() {
            if at.saturating_add(self.per_ns) > now {
                break;
            }
            self.len -= count;
            self.log.pop_front();
        }
    }

    fn window_time(&self, now: u64) -> u64 {
        now.saturating_sub(self.paused_ns)
    }

    /// Takes `n` at `now`; returns the time stamped on the grant.
    pub(crate) fn try_take(&mut self, now: u64, n: u64) -> Option<u64> {
        let now = self.window_time(now);
        self.evict(now);
        if self.len + n <= self.max_n {
            Some(self.push(now, n))
        } else {
            None
        }
    }

    /// When `k` more grants could have been made one after another, if
    /// nobody else takes any before.
    pub(crate) fn due(&mut self, now: u64, k: u64) -> u64 {
        let now = self.window_time(now);
        self.evict(now);
        if k == 0 {
            return now + self.paused_ns;
        }
        // The i-th future grant must wait for the grant max_n places before
        // it to leave the window: g(i) = max(now, g(i − max_n) + per).
        let rounds = (k - 1) / self.max_n;
        let k0 = (k - 1) % self.max_n + 1;
        // After a `set_rate` that shrank `max_n` the log may hold more than
        // it: then more must leave first.
        let mut need = (self.len + k0).saturating_sub(self.max_n);
        let first = if need == 0 {
            now
        } else {
            let mut at = now;
            for &(time, count) in &self.log {
                at = time;
                if count >= need {
                    break;
                }
                need -= count;
            }
            at.saturating_add(self.per_ns).max(now)
        };
        first
            .saturating_add(rounds.saturating_mul(self.per_ns))
            .saturating_add(self.paused_ns)
    }

    pub(crate) fn level(&mut self, now: u64) -> u64 {
        let now = self.window_time(now);
        self.evict(now);
        self.max_n.saturating_sub(self.len)
    }

    /// Gives back `n` fuel granted at `stamp`.
    pub(crate) fn refund(&mut self, stamp: u64, n: u64) {
        let Some(index) = self.log.iter().rposition(|&(at, _)| at == stamp) else {
            return; // Already out of every window.
        };
        let run = &mut self.log[index].1;
        let n = n.min(*run);
        *run -= n;
        self.len -= n;
        if *run == 0 {
            self.log.remove(index);
        }
    }

    /// Lets `by_ns` pass without anything leaving the window.
    pub(crate) fn skip(&mut self, by_ns: u64) {
        self.paused_ns = self.paused_ns.saturating_add(by_ns);
    }

    pub(crate) fn set_rate(&mut self, rate: Rate) {
        self.max_n = rate.max_n();
        self.per_ns = rate.per_ns();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    fn rate(s: &str) -> Rate {
        s.parse().unwrap()
    }

    #[test]
    fn gcra_limit_bursts_to_cap_then_paces() {
        let mut g = Gcra::new(rate("4/s"), Some(4), 1, 0);
        assert!(g.try_take(0, 1));
        assert!(!g.try_take(0, 1));
        assert_eq!(g.due(0, 1), SEC / 4);
        // Idle for 10 s: only 4 bank up.
        assert_eq!(g.level(10 * SEC), 4);
        assert!(g.try_take(10 * SEC, 4));
        assert!(!g.try_take(10 * SEC, 1));
        assert!(g.try_take(10 * SEC + SEC / 4, 1));
    }

    #[test]
    fn gcra_one_spaces_grants_by_the_interval() {
        let mut g = Gcra::new(rate("10/s"), Some(1), 1, 0);
        assert!(g.try_take(5 * SEC, 1));
        assert!(!g.try_take(5 * SEC + SEC / 10 - 1, 1));
        assert!(g.try_take(5 * SEC + SEC / 10, 1));
    }

    #[test]
    fn gcra_is_exact_for_thirds() {
        let mut g = Gcra::new(rate("3/s"), Some(3), 0, 0);
        let mut grants = 0u64;
        let day = 86_400 * SEC;
        // Greedy taker polling every 7 ms for a day: fuel k is due at k/3 s,
        // so the last poll (at or after the day) has taken 3·86_400.
        let mut now = 0;
        while now < day + 7_000_000 {
            while g.try_take(now, 1) {
                grants += 1;
            }
            now += 7_000_000;
        }
        assert_eq!(grants, 3 * 86_400);
    }

    #[test]
    fn gcra_set_rate_keeps_the_level() {
        let mut g = Gcra::new(rate("10/s"), Some(10), 10, 0);
        g.set_rate(0, rate("1000/s"), Some(1000));
        assert_eq!(g.level(0), 10);
        g.set_rate(0, rate("2/s"), Some(2));
        assert_eq!(g.level(0), 2);
    }

    #[test]
    fn fast_step_matches_the_core() {
        for (tat, now, n) in [(0, 0, 1), (5, 100, 3), (100, 50, 1), (0, 1_000_000, 4)] {
            let mut g = Gcra::new(rate("4/40ns"), Some(4), 0, 0);
            g.set_tat(tat as i128);
            let core = g.try_take(now, n).then(|| g.tat() as u64);
            assert_eq!(
                core,
                gcra_take(tat, now, 30, 10, n),
                "tat {tat} now {now} n {n}"
            );
        }
    }

    #[test]
    fn window_never_exceeds_max_n_in_any_window() {
        let mut w = Window::new(rate("3/s"), 3, 0);
        assert_eq!(w.try_take(0, 3), Some(0));
        assert_eq!(w.try_take(SEC - 1, 1), None);
        assert_eq!(w.due(SEC - 1, 1), SEC);
        assert_eq!(w.try_take(SEC, 1), Some(SEC));
        // Three more after the first window: the fourth waits a second round.
        assert_eq!(w.due(SEC, 3), 2 * SEC);
        assert_eq!(w.due(SEC, 5), 2 * SEC);
        assert_eq!(w.due(SEC, 6), 3 * SEC);
    }

    #[test]
    fn window_refund_removes_the_grant() {
        let mut w = Window::new(rate("2/s"), 2, 0);
        let stamp = w.try_take(10, 2).unwrap();
        assert_eq!(w.level(10), 0);
        w.refund(stamp, 1);
        assert_eq!(w.level(10), 1);
    }
}
