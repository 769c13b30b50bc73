//! `Stats` on a `ManualClock`: what each layer counts as admitted,
//! rejected, waited and refused for want of a key, and the waits.

use std::future::Future;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use fueltank::clock::ManualClock;
use fueltank::{KeyedTank, Rate, Tank};
use fueltank_tower::key::{KeyError, key_fn};
use fueltank_tower::{KeyedThrottleLayer, Stats, ThrottleLayer};
use futures::FutureExt;
use tower::{BoxError, Layer, Service, service_fn};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn cx() -> Context<'static> {
    Context::from_waker(Waker::noop())
}

#[test]
fn the_global_layer_counts_each_request_once_and_times_the_waits() {
    let clock = ManualClock::new();
    let tank = Tank::builder(Rate::per_second(10).unwrap())
        .initial(1)
        .clock(clock.clone())
        .build()
        .unwrap();
    let stats = Stats::with_clock(clock.clone());
    let layer = ThrottleLayer::new(tank)
        .max_wait(ms(250))
        .stats(stats.clone());
    let svc = || layer.layer(service_fn(|x: u32| async move { Ok::<_, BoxError>(x) }));
    let mut services = [svc(), svc(), svc(), svc()];

    // a takes the fuel there; b and c wait 100 and 200 ms; d would wait
    // 300 ms, beyond 250: shed.
    let [a, b, c, d] = &mut services;
    assert!(a.poll_ready(&mut cx()).is_ready());
    assert!(b.poll_ready(&mut cx()).is_pending());
    assert!(c.poll_ready(&mut cx()).is_pending());
    assert!(d.poll_ready(&mut cx()).is_ready());
    assert!(a.call(1).now_or_never().unwrap().is_ok());
    assert!(d.call(4).now_or_never().unwrap().is_err());
    assert_eq!(stats.admitted().total(), 1);
    assert_eq!(stats.rejected().total(), 1);
    assert_eq!(stats.waited().total(), 0, "nobody got in after waiting yet");

    clock.advance(ms(100));
    assert!(b.poll_ready(&mut cx()).is_ready());
    assert!(b.call(2).now_or_never().unwrap().is_ok());
    clock.advance(ms(100));
    assert!(c.poll_ready(&mut cx()).is_ready());
    assert!(c.call(3).now_or_never().unwrap().is_ok());

    assert_eq!(stats.admitted().total(), 3);
    assert_eq!(stats.waited().total(), 2);
    assert_eq!(stats.rejected().total(), 1);
    assert_eq!(stats.key_errors().total(), 0);
    let waits = stats.wait_times();
    assert_eq!(waits.count(), 2);
    assert_eq!(waits.sum(), ms(300));
    assert_eq!(waits.percentile(0.0), Some(ms(100)));
    assert_eq!(waits.percentile(100.0), Some(ms(200)));
    // The monitors run on the stats' clock: 3 admitted in 200 ms.
    let mean = stats.admitted().mean().unwrap().per_second;
    assert!((mean - 15.0).abs() < 1e-9, "{mean}");
}

#[test]
fn a_shed_poll_ready_without_a_call_is_not_counted() {
    let clock = ManualClock::new();
    let tank = Tank::builder(Rate::per_second(10).unwrap())
        .initial(0)
        .clock(clock.clone())
        .build()
        .unwrap();
    let stats = Stats::with_clock(clock);
    let mut svc = ThrottleLayer::new(tank)
        .max_wait(Duration::ZERO)
        .stats(stats.clone())
        .layer(service_fn(|x: u32| async move { Ok::<_, BoxError>(x) }));
    assert!(svc.poll_ready(&mut cx()).is_ready());
    assert_eq!(stats.rejected().total(), 0, "no request yet");
    assert!(svc.call(1).now_or_never().unwrap().is_err());
    assert_eq!(stats.rejected().total(), 1);
}

/// A service made ready after a wait and dropped before `call` admitted
/// nothing: its fuel goes back, and neither `waited` nor `admitted` counts
/// it (`waited` is a part of `admitted`). The keyed layer waits inside
/// `call`'s future: dropped while waiting, it counts nothing either.
#[test]
fn a_wait_without_a_call_is_not_counted() {
    let clock = ManualClock::new();
    let tank = Tank::builder(Rate::per_second(20).unwrap())
        .initial(0)
        .clock(clock.clone())
        .build()
        .unwrap();
    let stats = Stats::with_clock(clock.clone());
    let layer = ThrottleLayer::new(tank.clone()).stats(stats.clone());
    let svc = || layer.layer(service_fn(|x: u32| async move { Ok::<_, BoxError>(x) }));
    let counted = || {
        let waits = stats.wait_times();
        let totals = (stats.admitted().total(), stats.waited().total());
        (totals.0, totals.1, waits.count(), waits.sum())
    };
    let mut dropped = svc();
    assert!(dropped.poll_ready(&mut cx()).is_pending());
    clock.advance(ms(50));
    assert!(dropped.poll_ready(&mut cx()).is_ready());
    drop(dropped);
    assert_eq!(tank.level(), 1, "the fuel went back");
    assert_eq!(counted(), (0, 0, 0, Duration::ZERO));

    // Served at once (the fuel given back), then after a wait of 50 ms.
    for _ in 0..2 {
        let mut called = svc();
        if called.poll_ready(&mut cx()).is_pending() {
            clock.advance(ms(50));
            assert!(called.poll_ready(&mut cx()).is_ready());
        }
        assert!(called.call(1).now_or_never().unwrap().is_ok());
    }
    assert_eq!(counted(), (2, 1, 1, ms(50)));

    let per_key = KeyedTank::builder(Rate::per_second(20).unwrap())
        .initial(0)
        .clock(clock.clone())
        .build()
        .unwrap();
    let keyed_stats = Stats::with_clock(clock.clone());
    let mut keyed = KeyedThrottleLayer::new(per_key, key_fn(|key: &u32| Ok(*key)))
        .stats(keyed_stats.clone())
        .layer(service_fn(|x: u32| async move { Ok::<_, BoxError>(x) }));
    assert!(keyed.poll_ready(&mut cx()).is_ready());
    let mut waiting = Box::pin(keyed.call(7));
    assert!(waiting.as_mut().poll(&mut cx()).is_pending());
    drop(waiting);
    clock.advance(ms(50));
    assert_eq!(keyed_stats.admitted().total(), 0);
    assert_eq!(keyed_stats.waited().total(), 0);
    assert_eq!(keyed_stats.wait_times().count(), 0);
}

#[test]
fn the_keyed_layer_counts_per_request_whatever_the_key() {
    let clock = ManualClock::new();
    let per_key = KeyedTank::builder(Rate::per_second(10).unwrap())
        .initial(1)
        .clock(clock.clone())
        .build()
        .unwrap();
    let stats = Stats::with_clock(clock.clone());
    let by_key = key_fn(|key: &u32| match key {
        0 => Err(KeyError::Other("no key".into())),
        key => Ok(*key),
    });
    let mut svc = KeyedThrottleLayer::new(per_key, by_key)
        .max_wait(ms(150))
        .stats(stats.clone())
        .layer(service_fn(|x: u32| async move { Ok::<_, BoxError>(x) }));
    let mut call = |key: u32| {
        assert!(svc.poll_ready(&mut cx()).is_ready());
        Box::pin(svc.call(key))
    };
    assert!(call(1).now_or_never().unwrap().is_ok());
    assert!(call(2).now_or_never().unwrap().is_ok());
    assert!(call(0).now_or_never().unwrap().is_err(), "no key");
    let mut waiting = call(1);
    assert!(waiting.as_mut().poll(&mut cx()).is_pending());
    assert!(call(1).now_or_never().unwrap().is_err(), "200 ms: shed");
    assert_eq!(stats.admitted().total(), 2);
    assert_eq!(stats.rejected().total(), 1);
    assert_eq!(stats.key_errors().total(), 1);

    clock.advance(ms(100));
    assert!(matches!(
        waiting.as_mut().poll(&mut cx()),
        Poll::Ready(Ok(1))
    ));
    assert_eq!(stats.admitted().total(), 3);
    assert_eq!(stats.waited().total(), 1);
    assert_eq!(stats.wait_times().percentile(50.0), Some(ms(100)));
}

#[test]
fn layers_may_share_one_stats() {
    let stats = Stats::new();
    let a = ThrottleLayer::new(Tank::new(Rate::per_second(100).unwrap()))
        .stats(stats.clone())
        .layer(service_fn(|x: u32| async move { Ok::<_, BoxError>(x) }));
    let b = KeyedThrottleLayer::new(
        KeyedTank::new(Rate::per_second(100).unwrap()),
        key_fn(|x: &u32| Ok(*x)),
    )
    .stats(stats.clone())
    .layer(service_fn(|x: u32| async move { Ok::<_, BoxError>(x) }));
    futures::executor::block_on(async {
        use tower::ServiceExt;
        a.oneshot(1).await.unwrap();
        b.oneshot(2).await.unwrap();
    });
    assert_eq!(stats.admitted().total(), 2);
}
