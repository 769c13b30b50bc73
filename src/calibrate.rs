//! Timer calibration: how late this system's timers fire, so that a tank
//! can arm its timer that much early (`TankBuilder::timer_correction`).
//! Tanks (and so throttles) at 49/s and above calibrate by default.
//!
//! A throttle that sleeps `per/max_n` in a loop drifts by every late
//! wake-up. A tank does not sleep in a loop (its refill is computed
//! from absolute time, so lateness never accumulates as drift), but under
//! [`Hardcap::One`](crate::Hardcap::One) a late wake-up is lost for good:
//! the tank holds one fuel, so every grant lands late by the timer's
//! lateness and the rate falls to `T / (T + lateness)` (`BENCHMARKS.md`,
//! section Calibration example, has what that gave without calibration). Arming early by the usual lateness and
//! waiting out the rest on the timer's thread puts grants back on time.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::Rate;
use crate::clock::{ClockSource, saturating_ns};

/// At this rate and above, calibration is on by default (as in `mp_throttle`).
const CALIBRATE_FROM_PER_SECOND: u128 = 49;

/// Whether a tank at `rate` calibrates unless told otherwise.
pub(crate) fn calibrates_by_default(rate: Rate) -> bool {
    let (n, per) = (u128::from(rate.max_n()), rate.per().as_nanos());
    n * 1_000_000_000 >= CALIBRATE_FROM_PER_SECOND * per
}

/// The correction a tank at `rate` on `clock` gets from calibration: none
/// on a manual clock (its timers are exact); otherwise the timer's
/// lateness at the tank's interval, measured once per process for each
/// class of intervals (powers of two from 16 µs to 1 ms), so that only the
/// first tank of a class waits the 5 ms a measurement takes.
pub(crate) fn calibrated(rate: Rate, clock: &ClockSource) -> Duration {
    if clock.may_stand_still() {
        return Duration::ZERO;
    }
    static MEASURED: [OnceLock<Duration>; 7] = [const { OnceLock::new() }; 7];
    let interval = rate.interval();
    let sleep = interval.clamp(MIN_SLEEP, MAX_SLEEP);
    // 16 µs · 2^class ≤ sleep
    let class = (sleep.as_micros() / 16).max(1).ilog2().min(6) as usize;
    let class_sleep = Duration::from_micros(16 << class).clamp(MIN_SLEEP, MAX_SLEEP);
    let lateness = *MEASURED[class].get_or_init(|| timer_lateness(class_sleep));
    correction_for(interval, lateness)
}

/// Wall time the measurement may take, about.
const BUDGET: Duration = Duration::from_millis(5);
const MIN_SAMPLES: usize = 8;
const MAX_SAMPLES: usize = 64;
/// The sleep measured: the tank's interval, within these bounds.
const MIN_SLEEP: Duration = Duration::from_micros(20);
const MAX_SLEEP: Duration = Duration::from_millis(1);

/// Measures how late this system's timers fire when set for `interval`
/// ahead, the way a tank sets them: the 90th percentile of the lateness of
/// a short series of `async-io` timers, at most twice their median (so that
/// one stray wake-up among few samples does not count).
///
/// Blocks the calling thread for about 5 ms (at least 8 timers of
/// `interval` clamped to 20 µs..=1 ms). The result depends on the system
/// and its load; [`ThrottleBuilder::auto_calibrate`](crate::ThrottleBuilder::auto_calibrate)
/// calls it once, at build time.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let late = fueltank::clock::timer_lateness(Duration::from_micros(100));
/// assert!(late < Duration::from_secs(1));
/// ```
pub fn timer_lateness(interval: Duration) -> Duration {
    let sleep = interval.clamp(MIN_SLEEP, MAX_SLEEP);
    let started = Instant::now();
    let mut late = Vec::with_capacity(MAX_SAMPLES);
    async_io::block_on(async {
        while late.len() < MIN_SAMPLES || (late.len() < MAX_SAMPLES && started.elapsed() < BUDGET) {
            let at = Instant::now() + sleep;
            async_io::Timer::at(at).await;
            late.push(Instant::now().saturating_duration_since(at));
        }
    });
    late.sort_unstable();
    // The 90th percentile, but from few samples one stray wake-up (a
    // preemption) could be it: at most twice the median.
    let p90 = late[(late.len() * 9).div_ceil(10) - 1];
    p90.min(late[late.len() / 2] * 2)
}

/// The longest correction applied: the timer's thread spins up to this
/// long per wake-up, and a worker must not busy-spin for long.
const MAX_CORRECTION: Duration = Duration::from_micros(250);

/// The correction a tank at `interval` gets from a measured `lateness`:
/// the lateness, but at most half the interval (so that the timer's thread
/// never waits out more than half of the time between grants) and at most
/// 250 µs.
pub(crate) fn correction_for(interval: Duration, lateness: Duration) -> Duration {
    lateness.min(interval / 2).min(MAX_CORRECTION)
}

/// The timer correction after a wake-up `late` past the timer's deadline:
/// the rule a [`Hardcap::One`](crate::Hardcap::One) tank's measured
/// correction follows. Up at once by half the shortfall, down by a 64th of
/// the excess, never above `cap`, so that it settles near the top of the
/// lateness the timer shows. For code that arms its own timers early by a
/// correction (as `fueltank-redis` does) and wants it to follow the
/// machine as the tanks do.
///
/// # Examples
///
/// ```
/// use fueltank::clock::next_timer_correction;
/// use std::time::Duration;
///
/// let us = Duration::from_micros;
/// assert_eq!(next_timer_correction(us(30), us(50), us(250)), us(40));
/// assert_eq!(next_timer_correction(us(40), us(0), us(250)), us(40) - us(40) / 64);
/// assert_eq!(next_timer_correction(us(40), us(900), us(100)), us(100));
/// ```
pub fn next_timer_correction(correction: Duration, late: Duration, cap: Duration) -> Duration {
    Duration::from_nanos(follow_lateness(
        saturating_ns(correction),
        saturating_ns(late),
        saturating_ns(cap),
    ))
}

/// The correction after the timer fired `late` past its deadline: up by
/// half the shortfall at once, down by a 64th of the excess, never above
/// `cap`. It settles near the top of the lateness the timer shows, and so
/// follows a machine whose timers are later (or less late) than they were
/// when the tank measured them at build.
pub(crate) fn follow_lateness(correction: u64, late: u64, cap: u64) -> u64 {
    let next = if late > correction {
        correction + (late - correction) / 2
    } else {
        correction - (correction - late) / 64
    };
    next.min(cap)
}

#[cfg(test)]
mod follow_tests {
    use super::follow_lateness;

    /// A timer always late by the same 40 µs: the correction rises to it
    /// within a few wake-ups, from nothing or from too much, and stays.
    #[test]
    fn the_correction_settles_on_a_steady_lateness() {
        for start in [0, 200_000] {
            let mut correction = start;
            for _ in 0..1000 {
                correction = follow_lateness(correction, 40_000, 250_000);
            }
            assert!(
                (39_000..=41_000).contains(&correction),
                "{start}: {correction}"
            );
        }
    }

    /// One stray wake-up moves the correction half way, and it comes back
    /// down slowly; a lateness above the cap leaves it at the cap.
    #[test]
    fn the_correction_follows_outliers_up_fast_and_down_slowly() {
        let after_stray = follow_lateness(20_000, 1_000_000, 250_000);
        assert_eq!(after_stray, 250_000);
        let next = follow_lateness(after_stray, 20_000, 250_000);
        assert!(next < after_stray && next > 240_000, "{next}");
        assert_eq!(follow_lateness(30_000, 50_000, 1_000_000), 40_000);
        assert_eq!(follow_lateness(40_000, 0, 1_000_000), 40_000 - 40_000 / 64);
    }

    /// Timers whose lateness wanders: the correction stays above most of
    /// it (so few wake-ups are later than it), and never above the cap.
    #[test]
    fn the_correction_covers_most_of_a_wandering_lateness() {
        // 10..=59 µs, evenly: a deterministic stand-in for a noisy timer.
        let lateness = |i: u64| 10_000 + (i * 7919) % 50_000;
        let mut correction = 0;
        for i in 0..10_000 {
            correction = follow_lateness(correction, lateness(i), 55_000);
        }
        let covered = (0..1000)
            .filter(|&i| {
                let late = lateness(10_000 + i);
                correction = follow_lateness(correction, late, 55_000);
                late <= correction
            })
            .count();
        assert!(covered >= 800, "{covered} of 1000 within the correction");
        assert!(correction <= 55_000);
    }
}
