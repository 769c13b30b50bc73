//! Throttle options (auto_emit, as_throttle, as_monitor, stop/start,
//! calibration) on a ManualClock, and One-mode spacing in real time.
use std::pin::pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use fueltank::clock::ManualClock;
use fueltank::{Error, Hardcap, Rate, Throttle};
use futures::task::noop_waker_ref;
use futures::{Future, Stream, StreamExt};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn rate(s: &str) -> Rate {
    s.parse().unwrap()
}

fn manual(rate_str: &str) -> (ManualClock, Throttle) {
    let clock = ManualClock::new();
    let throttle = Throttle::builder(rate(rate_str))
        .clock(clock.clone())
        .build()
        .unwrap();
    (clock, throttle)
}

fn poll<F: Future>(f: std::pin::Pin<&mut F>) -> Poll<F::Output> {
    f.poll(&mut Context::from_waker(noop_waker_ref()))
}

#[test]
fn auto_emit_counts_every_fuel_taken() {
    let (clock, throttle) = manual("10/s");
    assert!(throttle.auto_emits());
    assert!(throttle.has_fuel());
    assert!(!throttle.has_fuel()); // not taken: not counted
    assert_eq!(throttle.total(), 1);
    let mut wait = pin!(throttle.await_fuel());
    assert!(poll(wait.as_mut()).is_pending());
    assert_eq!(throttle.total(), 1);
    clock.advance(ms(100));
    assert!(poll(wait.as_mut()).is_ready());
    assert_eq!(throttle.total(), 2);
    assert_eq!(throttle.lo_hi().unwrap().interval, ms(100));
    // A cancelled wait emits nothing, and its fuel stays in the tank.
    {
        let mut cancelled = pin!(throttle.await_fuel());
        assert!(poll(cancelled.as_mut()).is_pending());
        assert_eq!(throttle.tank().unwrap().waiting(), 1);
    }
    assert_eq!(throttle.tank().unwrap().waiting(), 0);
    clock.advance(ms(300));
    assert!(throttle.has_fuel_n(3));
    assert_eq!(throttle.total(), 5);
    let mut timeout = pin!(throttle.await_fuel_timeout(ms(50)));
    assert_eq!(poll(timeout.as_mut()), Poll::Ready(false));
    assert_eq!(throttle.total(), 5);
    // emit by hand is refused while auto_emit is on.
    assert_eq!(throttle.emit(), Err(Error::AutoEmitOn));
    assert_eq!(throttle.emit_at(clock.now()), Err(Error::AutoEmitOn));
    assert!(Error::AutoEmitOn.to_string().contains("auto_emit(false)"));
    assert_eq!(throttle.total(), 5);
}

/// A batch of `n` costs the same whatever `n`: a monitor-only throttle
/// takes `u64::MAX` at once (unlimited fuel) and counts every one of them.
#[test]
fn batches_of_any_size_are_counted_at_once() {
    let done = std::thread::spawn(|| {
        let monitor_only = Throttle::builder(rate("10/s"))
            .as_throttle(false)
            .auto_emit(true)
            .clock(ManualClock::new())
            .build()
            .unwrap();
        assert!(monitor_only.has_fuel_n(u64::MAX));
        assert_eq!(monitor_only.total(), u64::MAX);
        assert!(monitor_only.has_fuel()); // saturates, never wraps
        assert_eq!(monitor_only.total(), u64::MAX);
        let fast = Throttle::builder(Rate::per_second(1_000_000_000).unwrap())
            .initial(1_000_000_000)
            .clock(ManualClock::new())
            .build()
            .unwrap();
        assert!(fast.has_fuel_n(1_000_000_000));
        assert_eq!(fast.total(), 1_000_000_000);
        assert_eq!(fast.lo_hi().unwrap().interval, Duration::ZERO);
    });
    // Not a timing: a guard against a loop over `n`, which would not end.
    let start = std::time::Instant::now();
    while !done.is_finished() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "a batch cost time in n"
        );
        std::thread::sleep(ms(5));
    }
    done.join().unwrap();
}

/// A saturated batch (`u64::MAX − 1` zero gaps) beside a few real gaps:
/// every percentile is answered, from exact counts, without overflow.
#[test]
fn percentiles_of_a_saturated_batch() {
    let clock = ManualClock::new();
    let throttle = Throttle::builder(rate("10/s"))
        .as_throttle(false)
        .clock(clock.clone())
        .build()
        .unwrap();
    assert!(throttle.has_fuel_n(u64::MAX));
    for _ in 0..2 {
        clock.advance(Duration::from_nanos(1));
        assert!(throttle.has_fuel());
    }
    let snap = throttle.monitor().unwrap().snapshot();
    assert_eq!(snap.total, u64::MAX);
    assert_eq!(snap.gaps(), u64::MAX, "u64::MAX + 1 gaps, saturated");
    // All but two of the gaps are zero: every percentile below 100 is 0.
    for q in [0.0, 50.0, 99.0, 99.9, 99.999_999] {
        assert_eq!(snap.percentile(q), Some(Duration::ZERO), "p{q}");
    }
    assert_eq!(snap.percentile(100.0), Some(Duration::from_nanos(1)));
    assert!(format!("{snap:?}").contains("p50: Some(0ns)"), "{snap:?}");
}

#[test]
fn manual_emission() {
    let clock = ManualClock::new();
    let throttle = Throttle::builder(rate("10/s"))
        .auto_emit(false)
        .clock(clock.clone())
        .build()
        .unwrap();
    assert!(!throttle.auto_emits());
    assert!(throttle.has_fuel());
    assert_eq!(throttle.total(), 0);
    throttle.emit().unwrap();
    clock.advance(ms(40));
    throttle.emit_at(clock.now()).unwrap();
    assert_eq!(throttle.total(), 2);
    assert_eq!(throttle.hi_lo().unwrap().interval, ms(40));
}

#[test]
fn as_throttle_off_means_unlimited_fuel() {
    let clock = ManualClock::new();
    let throttle = Throttle::builder(rate("1/h"))
        .as_throttle(false)
        .clock(clock.clone())
        .build()
        .unwrap();
    assert!(throttle.tank().is_none());
    // As in mp_throttle: auto_emit is on, and the unlimited fuel counted.
    assert!(throttle.auto_emits());
    assert!((0..1000).all(|_| throttle.has_fuel()));
    assert_eq!(throttle.total(), 1000);
    assert!(throttle.has_fuel_n(u64::MAX));
    assert_eq!(throttle.total(), u64::MAX, "saturated");
    assert_eq!(throttle.level(), u64::MAX);
    assert!(poll(pin!(throttle.await_fuel())).is_ready());
    assert_eq!(poll(pin!(throttle.await_fuel_n(7))), Poll::Ready(Ok(())));
    assert_eq!(throttle.emit(), Err(Error::AutoEmitOn));
    assert_eq!(throttle.rate(), rate("1/h"));
    // With auto_emit off, the work is reported by hand.
    let by_hand = Throttle::builder(rate("1/h"))
        .as_throttle(false)
        .auto_emit(false)
        .clock(clock)
        .build()
        .unwrap();
    assert!(by_hand.has_fuel() && by_hand.has_fuel());
    assert_eq!(by_hand.total(), 0);
    by_hand.emit().unwrap();
    assert_eq!(by_hand.total(), 1);
}

#[test]
fn as_monitor_off_means_no_stats() {
    let (clock, _) = manual("1/s");
    let throttle = Throttle::builder(rate("10/s"))
        .as_monitor(false)
        .clock(clock.clone())
        .build()
        .unwrap();
    assert!(throttle.monitor().is_none());
    assert!(!throttle.auto_emits());
    assert!(throttle.has_fuel());
    assert!(!throttle.has_fuel()); // still throttled
    throttle.emit().unwrap(); // goes nowhere
    assert_eq!(throttle.total(), 0);
    assert!(throttle.mean().is_none());
    assert!(throttle.latest().is_none());
    assert!(throttle.lo_hi().is_none());
    assert!(throttle.hi_lo().is_none());
    assert!(throttle.monitor().is_none());
    let mut snapshots = pin!(throttle.snapshots());
    assert_eq!(
        futures::executor::block_on(snapshots.next()).map(|s| s.total),
        None
    );
    assert_eq!(throttle.stop(), fueltank::Summary::default());
}

#[test]
fn stop_pauses_both_and_start_resumes() {
    let (clock, throttle) = manual("10/s");
    assert!(throttle.has_fuel());
    clock.advance(ms(100));
    assert!(throttle.has_fuel());
    let summary = throttle.stop();
    assert_eq!(summary.runtime, ms(100));
    assert_eq!(summary.total, 2);
    assert_eq!(summary.mean_per_second, 20.0);
    clock.advance(Duration::from_secs(60));
    assert_eq!(throttle.level(), 0, "no refill while stopped");
    assert_eq!(throttle.stop().runtime, ms(100));
    throttle.start();
    clock.advance(ms(100));
    assert!(throttle.has_fuel());
    assert_eq!(throttle.hi_lo().unwrap().interval, ms(100));
    let summary = throttle.stop();
    assert_eq!(summary.runtime, ms(200));
    assert_eq!(summary.total, 3);
}

#[test]
fn snapshots_per_refresh() {
    let clock = ManualClock::new();
    let throttle = Throttle::builder(rate("100/s"))
        .refresh(ms(50))
        .clock(clock.clone())
        .build()
        .unwrap();
    assert_eq!(
        throttle.timer_correction(),
        None,
        "a manual clock is not calibrated"
    );
    let mut snapshots = pin!(throttle.snapshots());
    let mut cx = Context::from_waker(noop_waker_ref());
    let mut totals = Vec::new();
    for _ in 0..4 {
        for _ in 0..5 {
            clock.advance(ms(10));
            assert!(throttle.has_fuel());
        }
        match snapshots.as_mut().poll_next(&mut cx) {
            Poll::Ready(Some(snap)) => totals.push(snap.total),
            other => panic!("{other:?}"),
        }
    }
    // One fuel to start with, one per 10 ms: 5 taken per refresh, 1 banked.
    assert_eq!(totals, [5, 10, 15, 20]);
}

#[test]
fn bad_options_are_errors() {
    let err = Throttle::builder(rate("10/s"))
        .refresh(Duration::ZERO)
        .build()
        .unwrap_err();
    assert!(matches!(
        err,
        Error::InvalidDuration {
            option: "refresh",
            ..
        }
    ));
    let err = Throttle::builder(rate("10/s"))
        .window(Duration::ZERO)
        .build()
        .unwrap_err();
    assert!(matches!(
        err,
        Error::InvalidDuration {
            option: "window",
            ..
        }
    ));
    let err = Throttle::builder(rate("1000/s"))
        .timer_correction(ms(2))
        .build()
        .unwrap_err();
    assert!(matches!(
        err,
        Error::InvalidDuration {
            option: "correction",
            ..
        }
    ));
    assert!(err.to_string().contains("interval"), "{err}");
    let err = Throttle::builder(rate("10/s"))
        .hardcap(Hardcap::One)
        .initial(2)
        .build()
        .unwrap_err();
    assert_eq!(
        err,
        Error::InitialOverCapacity {
            initial: 2,
            capacity: 1
        }
    );
}

#[test]
fn calibration_defaults() {
    // Below 49/s: off.
    let slow = Throttle::builder(rate("48/s")).build().unwrap();
    assert_eq!(slow.timer_correction(), None);
    // At 49/s and above: measured, at most half the interval.
    let t = Instant::now();
    let fast = Throttle::builder(rate("49/s")).build().unwrap();
    let built_in = t.elapsed();
    let correction = fast.timer_correction().expect("calibrated at 49/s");
    assert!(correction <= rate("49/s").interval() / 2);
    assert!(built_in < Duration::from_secs(1), "{built_in:?}");
    let fast = Throttle::builder(rate("10000/s")).build().unwrap();
    assert!(fast.timer_correction().unwrap() <= Duration::from_micros(50));
    // Explicit: as given, and no measurement.
    let given = Throttle::builder(rate("10000/s"))
        .timer_correction(Duration::from_micros(30))
        .build()
        .unwrap();
    assert_eq!(given.timer_correction(), Some(Duration::from_micros(30)));
    let off = Throttle::builder(rate("10000/s"))
        .auto_calibrate(false)
        .build()
        .unwrap();
    assert_eq!(off.timer_correction(), None);
    let on = Throttle::builder(rate("10/s"))
        .auto_calibrate(true)
        .build()
        .unwrap();
    assert!(on.timer_correction().is_some());
    let no_tank = Throttle::builder(rate("10000/s"))
        .as_throttle(false)
        .build()
        .unwrap();
    assert_eq!(no_tank.timer_correction(), None);
}

#[test]
fn timer_lateness_is_bounded_and_quick() {
    let t = Instant::now();
    let late = fueltank::clock::timer_lateness(Duration::from_micros(100));
    let took = t.elapsed();
    // At least 8 timers of 100 µs, about 5 ms in all; generous for a
    // loaded machine.
    assert!(took >= Duration::from_micros(800), "{took:?}");
    assert!(took < Duration::from_millis(500), "{took:?}");
    assert!(late < Duration::from_millis(100), "{late:?}");
}

/// One at 1000/s in real time: never faster than the rate, and near it.
/// Tolerant: the machine may be loaded.
#[test]
fn one_keeps_its_spacing_in_real_time() {
    let throttle = Throttle::builder(rate("1000/s"))
        .hardcap(Hardcap::One)
        .build()
        .unwrap();
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                for _ in 0..100 {
                    throttle.blocking_await_fuel();
                }
            });
        }
    });
    let elapsed = started.elapsed();
    let snap = throttle.monitor().unwrap().snapshot();
    assert_eq!(snap.total, 300);
    // The tank spaces grants by 1 ms. Emissions are stamped when each
    // thread sees its fuel, so single gaps jitter with wake-ups, but the
    // typical one is the interval.
    let median = snap.percentile(50.0).unwrap();
    assert!(
        median >= Duration::from_micros(900) && median <= Duration::from_millis(3),
        "{median:?}"
    );
    assert!(elapsed >= Duration::from_millis(299), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
}

#[test]
fn handles_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Throttle>();
    send_sync::<fueltank::Monitor>();
    send_sync::<fueltank::Snapshot>();
    send::<fueltank::Snapshots>();
    send::<fueltank::AwaitFuel>();
    send::<fueltank::AwaitFuel<Result<(), fueltank::Error>>>();
    send::<fueltank::AwaitFuel<bool>>();
    send::<fueltank::Pace<futures::stream::Iter<std::ops::Range<u32>>>>();
}

/// A bare tank asked for a high rate calibrates its timer as a throttle
/// does (under `One` a late timer is lost for good): by default at 49/s and
/// above, never on a manual clock, not when told not to.
#[test]
fn a_bare_tank_calibrates_as_a_throttle_does() {
    let one = fueltank::Tank::builder(rate("10000/s"))
        .hardcap(Hardcap::One)
        .build()
        .unwrap();
    let correction = one.timer_correction();
    assert!(correction > Duration::ZERO, "calibrated at 10k/s");
    assert!(correction <= rate("10000/s").interval() / 2);
    assert!(fueltank::Tank::new(rate("10000/s")).timer_correction() > Duration::ZERO);
    let off = fueltank::Tank::builder(rate("10000/s"))
        .auto_calibrate(false)
        .build()
        .unwrap();
    assert_eq!(off.timer_correction(), Duration::ZERO);
    assert_eq!(
        fueltank::Tank::new(rate("48/s")).timer_correction(),
        Duration::ZERO
    );
    let manual = fueltank::Tank::builder(rate("10000/s"))
        .clock(ManualClock::new())
        .build()
        .unwrap();
    assert_eq!(manual.timer_correction(), Duration::ZERO);
    let given = fueltank::Tank::builder(rate("10000/s"))
        .timer_correction(Duration::from_micros(20))
        .build()
        .unwrap();
    assert_eq!(given.timer_correction(), Duration::from_micros(20));
    // The same figure as a throttle's at the same rate: one measurement.
    let throttle = Throttle::builder(rate("10000/s")).build().unwrap();
    assert_eq!(throttle.timer_correction(), Some(correction));
}

/// A `stop` and a `start` from two threads at once end as if one came
/// after the other: the tank and the monitor both stopped, or both
/// running, never one of each (a running tank whose grants count as made
/// while stopped, or a paused tank whose monitor runs on).
///
/// The stopping thread reads a slow clock, so a `start` from the other
/// thread lands between its tank's pause and its monitor's stop.
#[test]
fn concurrent_stop_and_start_leave_tank_and_monitor_agreeing() {
    use std::cell::Cell;
    use std::sync::Barrier;
    thread_local! {
        static SLOW: Cell<bool> = const { Cell::new(false) };
    }
    /// Real time, read slowly on the thread marked `SLOW`.
    #[derive(Debug)]
    struct Slow;
    impl fueltank::clock::Clock for Slow {
        fn now(&self) -> Instant {
            if SLOW.get() {
                std::thread::sleep(Duration::from_micros(300));
            }
            Instant::now()
        }
    }
    let throttle = Throttle::builder(rate("10/s")).clock(Slow).build().unwrap();
    let rounds = 50;
    let barrier = Barrier::new(2);
    let mut disagreements = 0;
    std::thread::scope(|s| {
        let stopper = s.spawn(|| {
            SLOW.set(true);
            for _ in 0..rounds {
                barrier.wait();
                throttle.stop();
                barrier.wait();
                barrier.wait();
            }
        });
        for _ in 0..rounds {
            barrier.wait();
            std::thread::sleep(Duration::from_micros(100));
            throttle.start();
            barrier.wait();
            let paused = throttle.tank().unwrap().is_paused();
            let stopped = throttle.monitor().unwrap().is_stopped();
            disagreements += usize::from(paused != stopped);
            // Both running again for the next round.
            throttle.start();
            assert!(!throttle.is_stopped() && !throttle.monitor().unwrap().is_stopped());
            barrier.wait();
        }
        stopper.join().unwrap();
    });
    assert_eq!(disagreements, 0, "of {rounds} rounds");
}
