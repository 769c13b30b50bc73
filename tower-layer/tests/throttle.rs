//! `ThrottleLayer::new(throttle)`, on a `ManualClock`: emission through the
//! throttle's monitor (at fuel time, or on success), each request counted
//! exactly once whatever `auto_emit` says, a throttle without a tank
//! (unlimited) or without a monitor (no emission).

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use fueltank::clock::ManualClock;
use fueltank::{Rate, Throttle};
use fueltank_tower::{EmitOn, ThrottleLayer, Throttled};
use futures::executor::block_on;
use tower::{Layer, Service, ServiceExt, service_fn};

fn throttle(clock: &ManualClock, initial: u64) -> fueltank::ThrottleBuilder {
    Throttle::builder(Rate::per_second(10).unwrap())
        .initial(initial)
        .clock(clock.clone())
}

/// Succeeds on even numbers, fails on odd ones.
fn even() -> impl Service<u64, Response = u64, Error = &'static str, Future: Send> + Clone {
    service_fn(|x: u64| async move {
        if x.is_multiple_of(2) {
            Ok(x)
        } else {
            Err("odd")
        }
    })
}

#[test]
fn emits_at_fuel_time_for_every_request_let_through() {
    let clock = ManualClock::new();
    let throttle = throttle(&clock, 3).build().unwrap();
    let mut svc = ThrottleLayer::new(throttle.clone()).layer(even());
    block_on(async {
        // Called, then failed or dropped: emitted all the same, at fuel time.
        assert!(svc.ready().await.unwrap().call(2).await.is_ok());
        assert!(svc.ready().await.unwrap().call(3).await.is_err());
        let future = svc.ready().await.unwrap().call(4);
        assert_eq!(throttle.total(), 3);
        drop(future);
    });
    assert_eq!(throttle.total(), 3);
}

#[test]
fn auto_emit_on_or_off_each_request_is_counted_exactly_once() {
    for auto_emit in [true, false] {
        let clock = ManualClock::new();
        let throttle = throttle(&clock, 5).auto_emit(auto_emit).build().unwrap();
        assert_eq!(throttle.auto_emits(), auto_emit);
        let mut svc = ThrottleLayer::new(throttle.clone()).layer(even());
        block_on(async {
            for x in [0, 2, 4, 6, 8] {
                svc.ready().await.unwrap().call(x).await.unwrap();
            }
        });
        assert_eq!(throttle.total(), 5, "auto_emit {auto_emit}");
        assert_eq!(throttle.level(), 0, "one fuel per request");
    }
}

#[test]
fn emits_on_success_only_when_the_response_is_ok() {
    let clock = ManualClock::new();
    let throttle = throttle(&clock, 4).build().unwrap();
    let mut svc = ThrottleLayer::new(throttle.clone())
        .emit_on(EmitOn::Success)
        .layer(even());
    block_on(async {
        let future = svc.ready().await.unwrap().call(2);
        assert_eq!(throttle.total(), 0, "not before the response");
        assert_eq!(future.await.unwrap(), 2);
        assert_eq!(throttle.total(), 1);
        assert!(svc.ready().await.unwrap().call(3).await.is_err());
        drop(svc.ready().await.unwrap().call(4)); // dropped: never finished
        assert_eq!(svc.ready().await.unwrap().call(6).await.unwrap(), 6);
    });
    assert_eq!(throttle.total(), 2);
}

#[test]
fn shed_requests_are_not_emitted() {
    let clock = ManualClock::new();
    let throttle = throttle(&clock, 1).build().unwrap();
    let mut svc = ThrottleLayer::new(throttle.clone())
        .reject()
        .layer(service_fn(|()| async { Ok::<_, Infallible>(()) }));
    block_on(async {
        for _ in 0..5 {
            let _ = svc.ready().await.unwrap().call(()).await;
        }
        assert_eq!(throttle.total(), 1);
        clock.advance(Duration::from_millis(100));
        svc.ready().await.unwrap().call(()).await.unwrap();
    });
    assert_eq!(throttle.total(), 2);
}

#[test]
fn a_throttle_without_a_tank_is_unlimited_and_still_counts() {
    let clock = ManualClock::new();
    let throttle = throttle(&clock, 1).as_throttle(false).build().unwrap();
    assert!(throttle.tank().is_none());
    for layer in [
        ThrottleLayer::new(throttle.clone()),
        ThrottleLayer::new(throttle.clone()).reject(),
    ] {
        assert!(layer.tank().is_none());
        let mut svc = layer.layer(even());
        block_on(async {
            for _ in 0..100 {
                assert_eq!(svc.ready().await.unwrap().call(2).await.unwrap(), 2);
            }
        });
    }
    assert_eq!(throttle.total(), 200);
}

#[test]
fn a_throttle_without_a_monitor_limits_and_does_not_emit() {
    let clock = ManualClock::new();
    let throttle = throttle(&clock, 1).as_monitor(false).build().unwrap();
    let layer = ThrottleLayer::new(throttle.clone()).reject();
    assert!(layer.monitor().is_none());
    let mut svc = layer.layer(even());
    block_on(async {
        svc.ready().await.unwrap().call(2).await.unwrap();
        let err = svc.ready().await.unwrap().call(2).await.unwrap_err();
        assert!(err.is::<Throttled>());
    });
    assert_eq!(throttle.total(), 0);
}

#[test]
fn stop_pauses_the_layer_and_start_resumes_it() {
    let clock = ManualClock::new();
    let throttle = throttle(&clock, 1).build().unwrap();
    let mut svc = ThrottleLayer::new(throttle.clone()).layer(even());
    block_on(async { svc.ready().await.unwrap().call(2).await.unwrap() });
    let summary = throttle.stop();
    assert_eq!(summary.total, 1);
    let mut waiting = std::pin::pin!(svc.ready());
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    clock.advance(Duration::from_secs(1));
    assert!(
        waiting.as_mut().poll(&mut cx).is_pending(),
        "paused: no refill"
    );
    throttle.start();
    clock.advance(Duration::from_millis(100));
    assert!(waiting.as_mut().poll(&mut cx).is_ready());
}

#[test]
fn from_throttle_is_new() {
    let clock = ManualClock::new();
    let throttle = throttle(&clock, 2).build().unwrap();
    let layer: ThrottleLayer = throttle.clone().into();
    let mut svc = layer.layer(even());
    block_on(async { svc.ready().await.unwrap().call(2).await.unwrap() });
    assert_eq!(throttle.total(), 1);
    assert_eq!(throttle.level(), 1);
}

#[cfg(feature = "http")]
#[test]
fn http_layer_emits_like_the_plain_one() {
    use http::{Request, Response, StatusCode};

    let clock = ManualClock::new();
    let throttle = throttle(&clock, 2).build().unwrap();
    let mut svc = ThrottleLayer::new(throttle.clone())
        .reject()
        .emit_on(EmitOn::Success)
        .http()
        .layer(service_fn(|_: Request<()>| async {
            Ok::<_, Infallible>(Response::new(String::new()))
        }));
    block_on(async {
        for _ in 0..2 {
            let response = svc.ready().await.unwrap().call(Request::new(())).await;
            assert_eq!(response.unwrap().status(), StatusCode::OK);
        }
        let response = svc.ready().await.unwrap().call(Request::new(())).await;
        assert_eq!(response.unwrap().status(), StatusCode::TOO_MANY_REQUESTS);
    });
    assert_eq!(throttle.total(), 2);
}

#[cfg(feature = "http")]
#[test]
fn http_layer_over_an_unlimited_throttle_sends_no_ratelimit_headers() {
    use http::{Request, Response, StatusCode};

    let clock = ManualClock::new();
    let throttle = throttle(&clock, 1).as_throttle(false).build().unwrap();
    let mut svc = ThrottleLayer::new(throttle.clone())
        .reject()
        .http()
        .layer(service_fn(|_: Request<()>| async {
            Ok::<_, Infallible>(Response::new(String::new()))
        }));
    block_on(async {
        for _ in 0..10 {
            let response = svc.ready().await.unwrap().call(Request::new(())).await;
            let response = response.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            assert!(response.headers().is_empty(), "{:?}", response.headers());
        }
    });
    assert_eq!(throttle.total(), 10);
}
