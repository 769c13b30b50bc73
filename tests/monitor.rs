//! Monitor statistics under a ManualClock, exact totals under contention.
use std::pin::pin;
use std::task::{Context, Poll};
use std::time::Duration;

use fueltank::clock::ManualClock;
use fueltank::{Error, Monitor, Snapshot};
use futures::Stream;
use futures::task::noop_waker_ref;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn manual() -> (ManualClock, Monitor) {
    let clock = ManualClock::new();
    let monitor = Monitor::builder().clock(clock.clone()).build().unwrap();
    (clock, monitor)
}

#[test]
fn empty_monitor_has_no_stats() {
    let (clock, monitor) = manual();
    clock.advance(ms(500));
    assert_eq!(monitor.total(), 0);
    assert!(monitor.mean().is_none());
    assert!(monitor.latest().is_none());
    assert!(monitor.lo_hi().is_none());
    assert!(monitor.hi_lo().is_none());
    let summary = monitor.stop();
    assert_eq!(summary.runtime, ms(500));
    assert_eq!(summary.total, 0);
    assert_eq!(summary.mean_interval, Duration::ZERO);
    assert_eq!(summary.mean_per_second, 0.0);
}

#[test]
fn steady_stream() {
    let (clock, monitor) = manual();
    for _ in 0..500 {
        clock.advance(ms(4));
        monitor.emit();
    }
    assert_eq!(monitor.total(), 500);
    let mean = monitor.mean().unwrap();
    assert_eq!(mean.interval, ms(4));
    assert_eq!(mean.per_second, 250.0);
    assert_eq!(monitor.lo_hi().unwrap().interval, ms(4));
    assert_eq!(monitor.hi_lo().unwrap().interval, ms(4));
    let latest = monitor.latest().unwrap();
    assert!((248.0..=252.0).contains(&latest.per_second), "{latest:?}");
    let snap = monitor.snapshot();
    assert_eq!(snap.gaps(), 499);
    for q in [0.0, 50.0, 90.0, 99.0, 99.9, 100.0] {
        let p = snap.percentile(q).unwrap();
        assert!(
            p.abs_diff(ms(4)) <= Duration::from_micros(40),
            "p{q} = {p:?}"
        );
    }
}

#[test]
fn extremes_over_the_whole_runtime() {
    let (clock, monitor) = manual();
    monitor.emit();
    clock.advance(ms(1));
    monitor.emit(); // shortest gap, early on
    clock.advance(ms(700));
    monitor.emit(); // longest gap
    for _ in 0..300 {
        clock.advance(ms(10));
        monitor.emit();
    }
    // Both extremes left the trailing window long ago.
    assert_eq!(monitor.lo_hi().unwrap().interval, ms(1));
    assert_eq!(monitor.lo_hi().unwrap().per_second, 1000.0);
    assert_eq!(monitor.hi_lo().unwrap().interval, ms(700));
    let latest = monitor.latest().unwrap().per_second;
    assert!((99.0..=101.0).contains(&latest), "{latest}");
}

#[test]
fn latest_follows_the_trailing_window() {
    let clock = ManualClock::new();
    let monitor = Monitor::builder()
        .window(Duration::from_secs(2))
        .clock(clock.clone())
        .build()
        .unwrap();
    // While the runtime is shorter than the window: over the runtime.
    for _ in 0..10 {
        clock.advance(ms(100));
        monitor.emit();
    }
    assert_eq!(monitor.latest().unwrap().per_second, 10.0);
    for _ in 0..400 {
        clock.advance(ms(10));
        monitor.emit();
    }
    let fast = monitor.latest().unwrap().per_second;
    assert!((98.0..=101.0).contains(&fast), "{fast}");
    // Silence: the window empties, and the rate is 0/s.
    clock.advance(Duration::from_millis(2100));
    let idle = monitor.latest().expect("a rate, now 0/s");
    assert_eq!((idle.per_second, idle.interval), (0.0, Duration::MAX));
    monitor.emit();
    let one = monitor.latest().unwrap().per_second;
    assert!((0.45..=0.55).contains(&one), "{one}");
}

#[test]
fn stopped_time_counts_in_no_stat() {
    let (clock, monitor) = manual();
    monitor.emit();
    clock.advance(ms(100));
    monitor.emit();
    clock.advance(ms(50));
    let summary = monitor.stop();
    assert_eq!(summary.runtime, ms(150));
    assert!(monitor.is_stopped());
    clock.advance(Duration::from_secs(3600));
    monitor.emit(); // counted, nothing else
    assert_eq!(monitor.total(), 3);
    assert_eq!(monitor.runtime(), ms(150));
    assert_eq!(monitor.stop().runtime, ms(150));
    monitor.start();
    clock.advance(ms(80));
    monitor.emit();
    // The gap across the stop is 50 + 80 ms, not an hour.
    assert_eq!(monitor.hi_lo().unwrap().interval, ms(130));
    assert_eq!(monitor.snapshot().gaps(), 2);
    let summary = monitor.stop();
    assert_eq!(summary.runtime, ms(230));
    assert_eq!(summary.total, 4);
    // The mean is over the three emissions while running.
    assert_eq!(summary.mean_interval, Duration::from_nanos(76_666_666));
    // start twice is harmless
    monitor.start();
    monitor.start();
    clock.advance(ms(10));
    assert_eq!(monitor.runtime(), ms(240));
}

#[test]
fn emit_at_in_order_and_out_of_order() {
    let (clock, monitor) = manual();
    let t0 = clock.now();
    clock.advance(ms(40));
    monitor.emit_at(t0 + ms(10));
    monitor.emit_at(t0 + ms(30));
    monitor.emit_at(t0 + ms(35));
    // Earlier than the latest: counted, no gap, extremes untouched.
    monitor.emit_at(t0 + ms(31));
    monitor.emit_at(t0);
    assert_eq!(monitor.total(), 5);
    assert_eq!(monitor.lo_hi().unwrap().interval, ms(5));
    assert_eq!(monitor.hi_lo().unwrap().interval, ms(20));
    assert_eq!(monitor.snapshot().gaps(), 2);
    // Equal to the latest: a zero gap, infinitely fast.
    monitor.emit_at(t0 + ms(35));
    assert_eq!(monitor.lo_hi().unwrap().interval, Duration::ZERO);
    assert!(monitor.lo_hi().unwrap().per_second.is_infinite());
    // Before the monitor was built: at its start, and so out of order.
    monitor.emit_at(t0 - Duration::from_secs(5));
    assert_eq!(monitor.total(), 7);
    assert_eq!(monitor.snapshot().gaps(), 3);
    // In the future: counted, no gap; the next gap is from the latest.
    monitor.emit_at(clock.now() + Duration::from_secs(3600));
    assert_eq!(monitor.total(), 8);
    assert_eq!(monitor.snapshot().gaps(), 3);
    clock.advance(ms(25));
    monitor.emit();
    assert_eq!(monitor.snapshot().gaps(), 4);
    assert_eq!(monitor.hi_lo().unwrap().interval, ms(30));
}

/// One reporter whose clock runs an hour ahead must not blind the
/// statistics of a steady 100/s stream.
#[test]
fn an_emission_from_the_future_does_not_corrupt_the_stats() {
    let (clock, monitor) = manual();
    for _ in 0..100 {
        clock.advance(ms(10));
        monitor.emit();
    }
    monitor.emit_at(clock.now() + Duration::from_secs(3600));
    for _ in 0..200 {
        clock.advance(ms(10));
        monitor.emit();
    }
    let snap = monitor.snapshot();
    assert_eq!(snap.total, 301);
    // The skewed emission adds no gap: the stream's own gaps are intact,
    // and its trailing rate is its rate.
    assert_eq!(snap.gaps(), 299);
    assert_eq!(snap.lo_hi.unwrap().interval, ms(10));
    assert_eq!(snap.hi_lo.unwrap().interval, ms(10));
    let p50 = snap.percentile(50.0).unwrap();
    assert!(p50.abs_diff(ms(10)) < Duration::from_micros(200), "{p50:?}");
    let latest = monitor.latest().expect("a steady stream has a latest rate");
    assert!((95.0..=105.0).contains(&latest.per_second), "{latest:?}");
}

/// An emission reported ahead of the clock makes no gap, wherever it falls
/// between two real emissions: every gap recorded is one that happened.
#[test]
fn an_emission_from_the_future_makes_no_gap() {
    let (clock, monitor) = manual();
    monitor.emit();
    clock.advance(ms(10));
    monitor.emit();
    monitor.emit_at(clock.now() + Duration::from_secs(3600));
    for _ in 0..100 {
        clock.advance(ms(10));
        monitor.emit();
    }
    let lo_hi = monitor.lo_hi().unwrap();
    assert_eq!(lo_hi.interval, ms(10), "{lo_hi}");
    // Between two emissions 10 ms apart: one gap of 10 ms, not two of 5.
    clock.advance(ms(5));
    monitor.emit_at(clock.now() + ms(1));
    clock.advance(ms(5));
    monitor.emit();
    let snap = monitor.snapshot();
    assert_eq!(snap.total, 105);
    assert_eq!(snap.gaps(), 102);
    assert_eq!(snap.lo_hi.unwrap().interval, ms(10));
    assert_eq!(snap.percentile(0.1), Some(ms(10)));
    // The same with the default clock: `Instant::now()` is never ahead of
    // it, so reported at once, every emission has its gap.
    let monitor = Monitor::new();
    for _ in 0..3 {
        monitor.emit_at(std::time::Instant::now());
        std::thread::sleep(ms(2));
    }
    monitor.emit_at(std::time::Instant::now() + Duration::from_secs(3600));
    let snap = monitor.snapshot();
    assert_eq!((snap.total, snap.gaps()), (4, 2));
    assert!(snap.lo_hi.unwrap().interval >= ms(2), "{:?}", snap.lo_hi);
}

/// Emissions while stopped count in the total only: not in the mean, the
/// trailing window or the summary's mean.
#[test]
fn emissions_while_stopped_move_no_statistic() {
    let (clock, monitor) = manual();
    for _ in 0..20 {
        clock.advance(ms(100));
        monitor.emit();
    }
    let before = monitor.stop();
    assert_eq!(before.mean_per_second, 10.0);
    for _ in 0..180 {
        monitor.emit();
    }
    assert_eq!(monitor.total(), 200);
    assert_eq!(monitor.mean().unwrap().per_second, 10.0);
    assert_eq!(monitor.stop().mean_per_second, 10.0);
    assert_eq!(monitor.stop().total, 200);
    monitor.start();
    let latest = monitor.latest().unwrap().per_second;
    assert!((9.0..=11.0).contains(&latest), "{latest}");
    assert_eq!(monitor.snapshot().mean.unwrap().per_second, 10.0);
}

#[test]
fn percentiles_of_a_mixed_stream() {
    let (clock, monitor) = manual();
    monitor.emit();
    // 900 gaps of 1 ms, 90 of 10 ms, 9 of 100 ms, 1 of 1 s.
    for (n, gap) in [(900, 1), (90, 10), (9, 100), (1, 1000)] {
        for _ in 0..n {
            clock.advance(ms(gap));
            monitor.emit();
        }
    }
    let snap = monitor.snapshot();
    assert_eq!(snap.total, 1001);
    assert_eq!(snap.gaps(), 1000);
    let near = |q: f64, want: Duration| {
        let got = snap.percentile(q).unwrap();
        let tolerance = want / 100;
        assert!(
            got.abs_diff(want) <= tolerance,
            "p{q}: {got:?}, want {want:?}"
        );
    };
    near(50.0, ms(1));
    near(90.0, ms(1));
    near(95.0, ms(10));
    near(99.0, ms(10));
    near(99.5, ms(100));
    near(99.9, ms(100));
    assert_eq!(snap.percentile(100.0), Some(ms(1000)));
    assert_eq!(snap.percentile(0.0), Some(ms(1)));
    assert_eq!(snap.percentile(-1.0), None);
    assert_eq!(snap.percentile(f64::NAN), None);
}

fn poll_next(stream: std::pin::Pin<&mut fueltank::Snapshots>) -> Poll<Option<Snapshot>> {
    stream.poll_next(&mut Context::from_waker(noop_waker_ref()))
}

#[test]
fn snapshots_once_per_refresh_on_the_manual_clock() {
    let clock = ManualClock::new();
    let monitor = Monitor::builder()
        .refresh(ms(100))
        .clock(clock.clone())
        .build()
        .unwrap();
    let start = clock.now();
    let mut snapshots = pin!(monitor.snapshots());
    assert!(poll_next(snapshots.as_mut()).is_pending());
    for tick in 1..=5u32 {
        monitor.emit();
        clock.advance(ms(99));
        assert!(
            poll_next(snapshots.as_mut()).is_pending(),
            "tick {tick} early"
        );
        clock.advance(ms(1));
        let Poll::Ready(Some(snap)) = poll_next(snapshots.as_mut()) else {
            panic!("no snapshot at tick {tick}");
        };
        assert_eq!(snap.at, start + ms(100) * tick);
        assert_eq!(snap.total, u64::from(tick));
        assert!(poll_next(snapshots.as_mut()).is_pending());
    }
    // Missed ticks are skipped: one snapshot, then the next tick on schedule.
    clock.advance(ms(350));
    assert!(poll_next(snapshots.as_mut()).is_ready());
    assert!(poll_next(snapshots.as_mut()).is_pending());
    clock.advance(ms(50));
    assert!(poll_next(snapshots.as_mut()).is_ready());
}

#[test]
fn snapshots_wake_the_task() {
    let clock = ManualClock::new();
    let monitor = Monitor::builder()
        .refresh(ms(10))
        .clock(clock.clone())
        .build()
        .unwrap();
    let reader = std::thread::spawn({
        let monitor = monitor.clone();
        move || {
            use futures::StreamExt;
            let snapshots = monitor.snapshots();
            futures::executor::block_on(snapshots.take(3).collect::<Vec<_>>())
        }
    });
    let mut seen = 0;
    while !reader.is_finished() && seen < 10_000 {
        clock.advance(ms(10));
        std::thread::sleep(Duration::from_millis(1));
        seen += 1;
    }
    assert_eq!(reader.join().unwrap().len(), 3);
}

#[test]
fn bad_options_are_errors() {
    for (what, builder) in [
        ("refresh", Monitor::builder().refresh(Duration::ZERO)),
        ("window", Monitor::builder().window(Duration::ZERO)),
        (
            "window",
            Monitor::builder().window(Duration::from_secs(400 * 86_400)),
        ),
    ] {
        match builder.build() {
            Err(Error::InvalidDuration { option, .. }) => assert_eq!(option, what),
            other => panic!("{what}: {other:?}"),
        }
    }
}

#[test]
fn four_threads_exact_total() {
    let monitor = Monitor::new();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..100_000 {
                    monitor.emit();
                }
            });
        }
    });
    assert_eq!(monitor.total(), 400_000);
    let snap = monitor.snapshot();
    // Every emission but the first has its gap, and the gaps add up.
    assert_eq!(snap.gaps(), 399_999);
    let (lo, hi) = (snap.lo_hi.unwrap().interval, snap.hi_lo.unwrap().interval);
    assert!(lo <= hi);
    assert!(hi <= monitor.runtime());
}

#[test]
fn four_threads_on_a_manual_clock() {
    let (clock, monitor) = manual();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..100_000 {
                    monitor.emit();
                }
            });
        }
        s.spawn(|| {
            for _ in 0..1000 {
                clock.advance(Duration::from_micros(7));
            }
        });
    });
    assert_eq!(monitor.total(), 400_000);
    let snap = monitor.snapshot();
    assert_eq!(snap.gaps(), 399_999);
    // Gaps are differences of consecutive readings of a clock that moved
    // 7 µs at a time: each a multiple of 7 µs, never more than it moved.
    assert!(snap.hi_lo.unwrap().interval <= Duration::from_millis(7));
    assert_eq!(snap.hi_lo.unwrap().interval.as_nanos() % 7_000, 0);
}
