//! Unit tests of emission, through the internal emitter seam.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use fueltank::clock::ManualClock;
use fueltank::{Rate, Tank};
use futures::executor::block_on;
use tower::{Layer, Service, ServiceExt, service_fn};

use crate::emit::Emitter;
use crate::{EmitOn, ThrottleLayer};

fn counter() -> (Arc<AtomicU64>, Emitter) {
    let count = Arc::new(AtomicU64::new(0));
    let emitter = Emitter::from_fn({
        let count = count.clone();
        move || {
            count.fetch_add(1, Ordering::Relaxed);
        }
    });
    (count, emitter)
}

fn tank(clock: &ManualClock, initial: u64) -> Tank {
    Tank::builder(Rate::per_second(10).unwrap())
        .initial(initial)
        .clock(clock.clone())
        .build()
        .unwrap()
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
    let (count, emitter) = counter();
    let mut svc = ThrottleLayer::from_tank(tank(&clock, 3))
        .with_emitter(emitter)
        .layer(even());
    block_on(async {
        // Called, then failed or dropped: emitted all the same, at fuel time.
        assert!(svc.ready().await.unwrap().call(2).await.is_ok());
        assert!(svc.ready().await.unwrap().call(3).await.is_err());
        let future = svc.ready().await.unwrap().call(4);
        assert_eq!(count.load(Ordering::Relaxed), 3);
        drop(future);
    });
    assert_eq!(count.load(Ordering::Relaxed), 3);
}

#[test]
fn emits_on_success_only_when_the_response_is_ok() {
    let clock = ManualClock::new();
    let (count, emitter) = counter();
    let mut svc = ThrottleLayer::from_tank(tank(&clock, 4))
        .emit_on(EmitOn::Success)
        .with_emitter(emitter)
        .layer(even());
    block_on(async {
        let future = svc.ready().await.unwrap().call(2);
        assert_eq!(count.load(Ordering::Relaxed), 0, "not before the response");
        assert_eq!(future.await.unwrap(), 2);
        assert_eq!(count.load(Ordering::Relaxed), 1);
        assert!(svc.ready().await.unwrap().call(3).await.is_err());
        drop(svc.ready().await.unwrap().call(4)); // dropped: never finished
        assert_eq!(svc.ready().await.unwrap().call(6).await.unwrap(), 6);
    });
    assert_eq!(count.load(Ordering::Relaxed), 2);
}

#[test]
fn shed_requests_are_not_emitted() {
    let clock = ManualClock::new();
    let (count, emitter) = counter();
    let mut svc = ThrottleLayer::from_tank(tank(&clock, 1))
        .reject()
        .with_emitter(emitter)
        .layer(service_fn(|()| async { Ok::<_, Infallible>(()) }));
    block_on(async {
        for _ in 0..5 {
            let _ = svc.ready().await.unwrap().call(()).await;
        }
        assert_eq!(count.load(Ordering::Relaxed), 1);
        clock.advance(Duration::from_millis(100));
        svc.ready().await.unwrap().call(()).await.unwrap();
    });
    assert_eq!(count.load(Ordering::Relaxed), 2);
}

#[cfg(feature = "http")]
#[test]
fn http_layer_emits_like_the_plain_one() {
    use http::{Request, Response, StatusCode};

    let clock = ManualClock::new();
    let (count, emitter) = counter();
    let mut svc = ThrottleLayer::from_tank(tank(&clock, 2))
        .reject()
        .emit_on(EmitOn::Success)
        .with_emitter(emitter)
        .http()
        .layer(service_fn(|_: Request<()>| async {
            Ok::<_, Infallible>(Response::new(()))
        }));
    block_on(async {
        for _ in 0..2 {
            let response = svc.ready().await.unwrap().call(Request::new(())).await;
            assert_eq!(response.unwrap().status(), StatusCode::OK);
        }
        let response = svc.ready().await.unwrap().call(Request::new(())).await;
        assert_eq!(response.unwrap().status(), StatusCode::TOO_MANY_REQUESTS);
    });
    assert_eq!(count.load(Ordering::Relaxed), 2);
}
