//! Extreme inputs: the largest counts and periods, requests of `u64::MAX`,
//! lines whose total fuel overflows, the end of the clock. Nothing panics,
//! nothing is over-granted, nothing dangles. (The test profile keeps
//! overflow checks on, so any overflow on these paths fails here.)

mod common;

use std::time::Duration;

use common::poll;
use fueltank::clock::ManualClock;
use fueltank::{Budget, Hardcap, Rate, Tank};

fn tank(rate: Rate, hardcap: Hardcap, initial: Option<u64>, clock: &ManualClock) -> Tank {
    let mut builder = Tank::builder(rate).hardcap(hardcap).clock(clock.clone());
    if let Some(initial) = initial {
        builder = builder.initial(initial);
    }
    builder.build().unwrap()
}

const HUGE: Duration = Duration::from_nanos(u64::MAX);
const CENTURY: Duration = Duration::from_secs(100 * 365 * 86_400);

#[test]
fn a_line_whose_fuel_overflows_u64_queues_and_unwinds_cleanly() {
    let clock = ManualClock::new();
    let unbounded = tank(
        Rate::per_second(1).unwrap(),
        Hardcap::Unbounded,
        Some(0),
        &clock,
    );
    // 2^16 waiters of 2^48 fuel each: 2^64 in the line.
    let mut line: Vec<_> = (0..(1 << 16) + 1)
        .map(|_| Box::pin(unbounded.await_fuel_n(1 << 48)))
        .collect();
    for waiter in &mut line {
        assert!(poll(waiter.as_mut()).is_pending());
    }
    assert_eq!(unbounded.waiting(), (1 << 16) + 1);
    let wait = unbounded.wait_time(1).unwrap();
    assert!(wait > CENTURY, "beyond the end of the clock: {wait:?}");
    assert!(!unbounded.has_fuel());
    line.truncate(10);
    assert_eq!(unbounded.waiting(), 10);
    drop(line);
    assert_eq!(unbounded.waiting(), 0);
    assert!(!unbounded.has_fuel());
}

#[test]
fn two_requests_of_two_to_the_63_on_a_rate_of_that_size() {
    let clock = ManualClock::new();
    let rate = Rate::new(1 << 63, Duration::from_nanos(1 << 63)).unwrap();
    let limit = tank(rate, Hardcap::Limit, Some(0), &clock);
    let mut a = Box::pin(limit.await_fuel_n(1 << 63));
    let mut b = Box::pin(limit.await_fuel_n(1 << 63));
    assert!(poll(a.as_mut()).is_pending());
    assert!(poll(b.as_mut()).is_pending());
    assert_eq!(limit.waiting(), 2);
    clock.advance(Duration::from_nanos(1 << 63));
    assert!(poll(a.as_mut()).is_ready());
    assert!(poll(b.as_mut()).is_pending());
    drop(b);
    assert_eq!(limit.waiting(), 0);
}

#[test]
fn window_at_the_largest_rate_never_over_grants() {
    let clock = ManualClock::new();
    let rate = Rate::new(u64::MAX, HUGE).unwrap();
    let window = tank(rate, Hardcap::Window, None, &clock);
    assert_eq!(window.wait_time(u64::MAX), Some(Duration::ZERO));
    assert!(window.has_fuel_n(u64::MAX));
    assert!(!window.has_fuel());
    assert_eq!(window.level(), 0);
    assert!(window.wait_time(u64::MAX).unwrap() > CENTURY);

    let empty = tank(rate, Hardcap::Window, Some(0), &clock);
    assert!(
        !empty.has_fuel(),
        "initial(0): nothing until the window moves"
    );
    assert_eq!(empty.level(), 0);
}

#[test]
fn every_hardcap_takes_u64_max_requests_without_panicking() {
    for hardcap in [
        Hardcap::Limit,
        Hardcap::One,
        Hardcap::Unbounded,
        Hardcap::Window,
    ] {
        for rate in [
            Rate::new(u64::MAX, HUGE).unwrap(),
            Rate::new(1, HUGE).unwrap(),
            Rate::new(u64::MAX - 1, HUGE).unwrap(),
            Rate::new(1 << 63, Duration::from_nanos((1 << 63) + 1)).unwrap(),
            Rate::per_second(1_000_000_000).unwrap(),
        ] {
            let clock = ManualClock::new();
            let t = tank(rate, hardcap, Some(1), &clock);
            let _ = t.has_fuel_n(u64::MAX);
            let _ = t.wait_time(u64::MAX);
            let _ = t.wait_time(1);
            assert!(t.has_fuel(), "{hardcap:?} {rate}");
            let _ = t.level();
            let mut w = Box::pin(t.await_fuel_n(u64::MAX));
            let mut timed = Box::pin(t.await_fuel_timeout(Duration::MAX));
            let mut w_done = poll(w.as_mut()).is_ready();
            let mut timed_done = poll(timed.as_mut()).is_ready();
            clock.advance(Duration::from_secs(86_400));
            w_done = w_done || poll(w.as_mut()).is_ready();
            timed_done = timed_done || poll(timed.as_mut()).is_ready();
            let _ = (w_done, timed_done);
            t.set_rate(Rate::per_second(3).unwrap());
            t.pause();
            clock.advance(HUGE);
            t.resume();
            let _ = t.has_fuel_n(u64::MAX);
            let _ = t.wait_time(u64::MAX);
            let _ = t.level();
        }
    }
}

/// Over a day of waiting tasks, every rate gives `initial + ⌊elapsed / T⌋`
/// grants, exactly: no rounding of the interval, whatever its factors.
#[test]
fn no_rate_drifts_over_a_day() {
    for (count, per) in [
        (7_919, Duration::from_secs(1)),
        (123_457, Duration::from_secs(1)),
        (1_234_567, Duration::from_secs(1)),
        (999_999_937, Duration::from_secs(1)),
        (10, Duration::from_secs(13)),
        (3, Duration::from_secs(1)),
    ] {
        let rate = Rate::new(count, per).unwrap();
        let clock = ManualClock::new();
        let unbounded = tank(rate, Hardcap::Unbounded, Some(0), &clock);
        let day = Duration::from_secs(86_400);
        clock.advance(day);
        // ⌊day · count / per⌋
        let expected = (day.as_nanos() * u128::from(count) / per.as_nanos()) as u64;
        assert_eq!(unbounded.level(), expected, "{rate}");
        // And a `Limit` bucket emptied at every period: `max_n` each time.
        let limit = tank(rate, Hardcap::Limit, Some(0), &clock);
        let periods = (day.as_nanos() / per.as_nanos()) as u64;
        let mut granted = 0u64;
        for _ in 0..periods {
            clock.advance(per);
            let level = limit.level();
            assert!(limit.has_fuel_n(level));
            granted += level;
        }
        assert_eq!(granted, periods * count, "{rate}");
    }
}

/// A saturated `Window` over 100 s grants exactly `max_n` per window.
#[test]
fn window_does_not_drift_on_its_grid() {
    let clock = ManualClock::new();
    let window = tank("3/1ms".parse().unwrap(), Hardcap::Window, None, &clock);
    let mut granted = 0u64;
    // Greedy, polling each 1 ms window edge exactly.
    for _ in 0..100_000 {
        while window.has_fuel() {
            granted += 1;
        }
        clock.advance(Duration::from_millis(1));
    }
    assert_eq!(granted, 300_000);
}

#[test]
fn set_rate_on_a_drained_window_does_not_burst() {
    let clock = ManualClock::new();
    let window = tank(Rate::per_second(10).unwrap(), Hardcap::Window, None, &clock);
    assert!(window.has_fuel_n(10));
    window.set_rate(Rate::per_second(1000).unwrap());
    assert_eq!(window.level(), 0, "no burst on a rate change");
    assert!(!window.has_fuel());
    // It refills at the new rate from now on.
    clock.advance(Duration::from_millis(10));
    assert_eq!(window.level(), 10);
    // And a full window shrunk keeps no more than the new capacity.
    let full = tank(Rate::per_second(10).unwrap(), Hardcap::Window, None, &clock);
    full.set_rate(Rate::per_second(2).unwrap());
    assert_eq!(full.level(), 2);
}

/// `wait_time` and the fail-fast of `await_fuel_timeout` count batch
/// waiters as batches: a batch needs its whole size free at once.
#[test]
fn window_wait_time_counts_batch_waiters() {
    let clock = ManualClock::new();
    let window = tank("2/s".parse().unwrap(), Hardcap::Window, None, &clock);
    assert!(window.has_fuel());
    clock.advance(Duration::from_millis(300));
    assert!(window.has_fuel());
    let mut batch = Box::pin(window.await_fuel_n(2));
    assert!(poll(batch.as_mut()).is_pending());
    // The batch waits for both grants to leave: at 1.3 s. A newcomer after
    // it waits for the batch's two to leave: 2.3 s from the start.
    let wait = window.wait_time(1).unwrap();
    assert_eq!(wait, Duration::from_millis(2_000), "from 0.3 s");
    let mut timed = Box::pin(window.await_fuel_timeout(wait - Duration::from_millis(1)));
    assert!(
        poll(timed.as_mut()).is_ready(),
        "cannot be met: false at once"
    );
    let mut timed = Box::pin(window.await_fuel_timeout(wait));
    assert!(poll(timed.as_mut()).is_pending());
    for _ in 0..20 {
        clock.advance(Duration::from_millis(100));
    }
    assert!(poll(batch.as_mut()).is_ready());
    assert!(matches!(poll(timed.as_mut()), std::task::Poll::Ready(true)));
}

/// One `advance` fires each timer at its own deadline, in order, so every
/// waiter whose fuel fell due during it has been granted.
#[test]
fn one_big_advance_grants_what_many_small_ones_would() {
    for (hardcap, by, expected) in [
        (Hardcap::One, Duration::from_secs(1), 10),
        (Hardcap::Limit, Duration::from_secs(2), 20),
        (Hardcap::Window, Duration::from_secs(3), 30),
    ] {
        let clock = ManualClock::new();
        let t = tank(Rate::per_second(10).unwrap(), hardcap, Some(0), &clock);
        let mut line: Vec<_> = (0..100).map(|_| Box::pin(t.await_fuel())).collect();
        for w in &mut line {
            assert!(poll(w.as_mut()).is_pending());
        }
        clock.advance(by);
        let granted = line
            .iter_mut()
            .map(|w| poll(w.as_mut()).is_ready())
            .filter(|&ready| ready)
            .count();
        assert_eq!(granted, expected, "{hardcap:?}");
    }
}

#[test]
fn the_end_of_the_clock_serves_the_line_in_steps_and_stops() {
    let clock = ManualClock::new();
    let limit = tank(
        Rate::per_second(1).unwrap(),
        Hardcap::Limit,
        Some(0),
        &clock,
    );
    let mut a = Box::pin(limit.await_fuel());
    let mut b = Box::pin(limit.await_fuel());
    assert!(poll(a.as_mut()).is_pending());
    assert!(poll(b.as_mut()).is_pending());
    clock.advance(Duration::MAX);
    assert!(poll(a.as_mut()).is_ready());
    assert!(poll(b.as_mut()).is_ready());
    // The bucket filled to its cap on the way to the end of the clock.
    assert!(limit.has_fuel());
    // Now nothing more falls due, and nothing spins.
    let mut c = Box::pin(limit.await_fuel());
    assert!(poll(c.as_mut()).is_pending());
    clock.advance(Duration::MAX);
    assert!(poll(c.as_mut()).is_pending());
    assert_eq!(limit.waiting(), 1);
}

/// A long line of timed waiters on a `Window` tank: each newcomer's
/// fail-fast check costs the same however long the line (it was a replay
/// of the whole line, so building a line was quadratic).
#[test]
fn a_long_line_of_timed_window_waiters_builds_in_linear_time() {
    let done = std::thread::spawn(|| {
        let clock = ManualClock::new();
        let window = tank("10/s".parse().unwrap(), Hardcap::Window, Some(0), &clock);
        let mut line = Vec::new();
        for _ in 0..100_000 {
            let mut waiter = Box::pin(window.await_fuel_timeout(Duration::from_secs(1 << 20)));
            assert!(poll(waiter.as_mut()).is_pending());
            line.push(waiter);
        }
        // 10 a second: the last of the line is 10^4 s away.
        let wait = window.wait_time(1).unwrap();
        assert_eq!(wait, Duration::from_secs(10_001));
        clock.advance(Duration::from_secs(1));
        assert_eq!(
            line.iter_mut()
                .take(20)
                .filter_map(|w| poll(w.as_mut()).is_ready().then_some(()))
                .count(),
            10
        );
    });
    // Not a timing: a guard against a cost in the line's length per waiter.
    let start = std::time::Instant::now();
    while !done.is_finished() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "quadratic in the line"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    done.join().unwrap();
}
