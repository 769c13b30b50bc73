//! First checks of the tank under a manual and the real clock.
use fueltank::{Hardcap, Rate, Tank, clock::ManualClock};
use futures::task::noop_waker_ref;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll};
use std::time::Duration;

#[test]
fn smoke() {
    let clock = ManualClock::new();
    let tank = Tank::builder(Rate::per_second(10).unwrap())
        .clock(clock.clone())
        .build()
        .unwrap();
    assert!(tank.has_fuel());
    assert!(!tank.has_fuel());
    let mut cx = Context::from_waker(noop_waker_ref());
    let mut f = pin!(tank.await_fuel());
    assert!(f.as_mut().poll(&mut cx).is_pending());
    assert_eq!(tank.waiting(), 1);
    assert!(!tank.has_fuel());
    clock.advance(Duration::from_millis(99));
    assert!(f.as_mut().poll(&mut cx).is_pending());
    clock.advance(Duration::from_millis(1));
    assert_eq!(f.as_mut().poll(&mut cx), Poll::Ready(()));
    assert_eq!(tank.waiting(), 0);
    clock.advance(Duration::from_secs(10));
    assert_eq!(tank.level(), 10);
    let w = Tank::builder(Rate::per_second(10).unwrap())
        .hardcap(Hardcap::Window)
        .clock(clock.clone())
        .build()
        .unwrap();
    assert!(w.has_fuel_n(10));
    assert!(!w.has_fuel());
}

#[test]
fn real_time() {
    let tank = Tank::new(Rate::per_second(1000).unwrap());
    let t = std::time::Instant::now();
    for _ in 0..100 {
        tank.blocking_await_fuel();
    }
    let e = t.elapsed();
    println!("{e:?}");
    assert!(
        e >= Duration::from_millis(98) && e < Duration::from_millis(200),
        "{e:?}"
    );
}
