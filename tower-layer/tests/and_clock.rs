//! `KeyedThrottleLayer::and` over budgets on a `ManualClock`: the
//! combination's waits must count on the budgets' clock.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use fueltank::clock::ManualClock;
use fueltank::{KeyedTank, Rate, Tank};
use fueltank_tower::KeyedThrottleLayer;
use fueltank_tower::key::key_fn;
use tower::{BoxError, Layer, Service, service_fn};

/// What was wrong before the fix: `and` (tower-layer/src/keyed.rs) builds its
/// `KeyedAllOf` with `KeyedAllOf::shared(..).and(..)`, on the default
/// monotonic clock, and the layer has no way to give it another; a
/// combination whose key is the furthest from fuel sleeps for the key's
/// `wait_time` on that clock (src/all_of.rs, `Part::Key`), and its
/// `max_wait` counts there too. With budgets on a `ManualClock`, a
/// request whose key is dry stays pending after the manual clock has
/// passed far beyond the key's refill (here a minute: the key refills
/// 1/min, the request waits a real minute); it is served only when that
/// much real time has passed. Right: the combination counts on
/// its budgets' clock (for instance `and` taking the clock of a `Tank` or
/// `KeyedTank` part, as `AllOf::clock` would be given), so the request is
/// served as soon as the manual clock brings the key's fuel.
#[test]
fn a_dry_key_is_waited_for_on_the_budgets_clock() {
    served_on_the_budgets_clock(None);
}

/// A second `and` wraps the first combination in another `KeyedAllOf`
/// (the first is its keyed part). Before the fix `adopt` (src/all_of.rs)
/// knew only tanks, throttles and keyed tanks, not a combination, so the
/// outer one ran on the monotonic clock when its other budget was on real
/// time (a throttle without a manual clock here, a Redis tank in use): a
/// dry key was again waited for in real time, and the request stayed
/// pending after the manual clock had brought the key's fuel.
#[test]
fn a_second_and_keeps_the_budgets_clock() {
    served_on_the_budgets_clock(Some(Tank::new(Rate::per_second(1000).unwrap())));
}

/// A keyed layer over a dry 1/min key, `and` a 10/s tank on one manual
/// clock (and then `real_time`, if given): a request for the key is
/// pending until the manual clock brings the key's fuel, then served.
fn served_on_the_budgets_clock(real_time: Option<Tank>) {
    let clock = ManualClock::new();
    let global = Tank::builder(Rate::per_second(10).unwrap())
        .clock(clock.clone())
        .build()
        .unwrap();
    let per_key = KeyedTank::<u8>::builder(Rate::per_minute(1).unwrap())
        .initial(0)
        .clock(clock.clone())
        .build()
        .unwrap();
    let mut layer =
        KeyedThrottleLayer::new(per_key.clone(), key_fn(|k: &u8| Ok(*k))).and(global.clone());
    if let Some(real_time) = real_time {
        layer = layer.and(real_time);
    }
    let mut svc = layer.layer(service_fn(|k: u8| async move { Ok::<_, BoxError>(k) }));
    let mut cx = Context::from_waker(Waker::noop());
    assert!(svc.poll_ready(&mut cx).is_ready());
    let mut call = pin!(svc.call(1));
    assert!(call.as_mut().poll(&mut cx).is_pending());
    clock.advance(Duration::from_secs(61));
    let outcome = call.as_mut().poll(&mut cx);
    assert!(
        matches!(outcome, Poll::Ready(Ok(1))),
        "the key had its fuel a second ago on the budgets' clock: {outcome:?}"
    );
    assert_eq!(global.level(), 9);
}
