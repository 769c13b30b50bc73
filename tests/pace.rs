//! Streams paced through a tank or a throttle, on a ManualClock.
use std::pin::pin;
use std::task::{Context, Poll};
use std::time::Duration;

use fueltank::clock::ManualClock;
use fueltank::{Rate, Tank, Throttle};
use futures::task::noop_waker_ref;
use futures::{Stream, StreamExt};

fn poll_next<S: Stream>(s: std::pin::Pin<&mut S>) -> Poll<Option<S::Item>> {
    s.poll_next(&mut Context::from_waker(noop_waker_ref()))
}

#[test]
fn each_item_waits_for_fuel() {
    let clock = ManualClock::new();
    let tank = Tank::builder(Rate::per_second(10).unwrap())
        .clock(clock.clone())
        .build()
        .unwrap();
    let mut paced = pin!(tank.pace(futures::stream::iter(0..4)));
    assert_eq!(paced.size_hint(), (4, Some(4)));
    assert_eq!(poll_next(paced.as_mut()), Poll::Ready(Some(0)));
    for item in 1..4 {
        assert!(poll_next(paced.as_mut()).is_pending());
        assert_eq!(paced.size_hint(), (4 - item, Some(4 - item)));
        assert_eq!(tank.waiting(), 1);
        clock.advance(Duration::from_millis(99));
        assert!(poll_next(paced.as_mut()).is_pending());
        clock.advance(Duration::from_millis(1));
        assert_eq!(poll_next(paced.as_mut()), Poll::Ready(Some(item)));
    }
    // The stream ends without taking fuel.
    clock.advance(Duration::from_millis(100));
    assert_eq!(poll_next(paced.as_mut()), Poll::Ready(None));
    assert_eq!(tank.level(), 1);
}

#[test]
fn dropping_a_paced_stream_loses_no_fuel() {
    let clock = ManualClock::new();
    let tank = Tank::builder(Rate::per_second(10).unwrap())
        .initial(0)
        .clock(clock.clone())
        .build()
        .unwrap();
    {
        let mut paced = pin!(tank.pace(futures::stream::iter(["a"])));
        assert!(poll_next(paced.as_mut()).is_pending());
        assert_eq!(tank.waiting(), 1);
    }
    assert_eq!(tank.waiting(), 0);
    clock.advance(Duration::from_millis(100));
    assert!(tank.has_fuel());
}

#[test]
fn throttle_pace_emits_each_item() {
    let clock = ManualClock::new();
    let throttle = Throttle::builder(Rate::per_second(100).unwrap())
        .clock(clock.clone())
        .build()
        .unwrap();
    let runner = std::thread::spawn({
        let throttle = throttle.clone();
        move || futures::executor::block_on(throttle.pace(futures::stream::iter(0..20)).count())
    });
    let tank = throttle.tank().unwrap();
    while !runner.is_finished() {
        // Move time only while the runner waits, so each emission is
        // stamped at its grant.
        if tank.waiting() == 1 {
            clock.advance(Duration::from_millis(10));
        } else {
            std::thread::yield_now();
        }
    }
    assert_eq!(runner.join().unwrap(), 20);
    assert_eq!(throttle.total(), 20);
    assert_eq!(
        throttle.lo_hi().unwrap().interval,
        Duration::from_millis(10)
    );
}

#[test]
fn a_pool_consumes_a_paced_stream() {
    let tank = Tank::new(Rate::per_second(2000).unwrap());
    let started = std::time::Instant::now();
    let done = std::sync::atomic::AtomicU32::new(0);
    futures::executor::block_on(
        tank.pace(futures::stream::iter(0..100))
            .for_each_concurrent(8, |_| async {
                done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }),
    );
    assert_eq!(done.into_inner(), 100);
    // 1 at once, then one per 0.5 ms.
    assert!(
        started.elapsed() >= Duration::from_micros(49_000),
        "{:?}",
        started.elapsed()
    );
}
