//! Bounded waiting on a `ManualClock`: `max_wait` sheds at once what cannot
//! come in time and bounds what waits; `max_waiting` bounds the line. Both
//! layers, plain and HTTP.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use fueltank::clock::ManualClock;
use fueltank::{KeyedTank, Rate, Tank};
use fueltank_tower::key::{KeyError, key_fn};
use fueltank_tower::{KeyedThrottleLayer, Scope, ThrottleLayer, ThrottleService, Throttled};
use futures::FutureExt;
use tower::{BoxError, Layer, Service, service_fn};

type Echo = tower::util::ServiceFn<fn(u32) -> std::future::Ready<Result<u32, Infallible>>>;

fn echo() -> Echo {
    service_fn(|x| std::future::ready(Ok(x)))
}

/// A tank of `rate` starting empty, on `clock`.
fn empty(clock: &ManualClock, rate: &str) -> Tank {
    Tank::builder(rate.parse::<Rate>().unwrap())
        .initial(0)
        .clock(clock.clone())
        .build()
        .unwrap()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn cx() -> Context<'static> {
    Context::from_waker(Waker::noop())
}

/// Whether `svc` is ready now (it never fails).
fn ready<S: Service<u32>>(svc: &mut S) -> bool
where
    S::Error: std::fmt::Debug,
{
    match svc.poll_ready(&mut cx()) {
        Poll::Ready(result) => {
            result.unwrap();
            true
        }
        Poll::Pending => false,
    }
}

fn call_now(svc: &mut ThrottleService<Echo>, x: u32) -> Result<u32, BoxError> {
    svc.call(x).now_or_never().expect("answered at once")
}

fn throttled(err: &BoxError) -> &Throttled {
    err.downcast_ref::<Throttled>()
        .unwrap_or_else(|| panic!("not Throttled: {err}"))
}

#[test]
fn max_wait_sheds_at_once_the_request_whose_fuel_cannot_come_in_time() {
    let clock = ManualClock::new();
    let tank = empty(&clock, "10/s");
    let layer = ThrottleLayer::new(tank.clone()).max_wait(ms(150));

    // The next fuel is 100 ms away: within 150 ms, so the first waits.
    let mut first = layer.layer(echo());
    assert!(!ready(&mut first));
    assert_eq!(tank.waiting(), 1);

    // The one after would wait 200 ms: shed at once, not queued.
    let mut second = layer.layer(echo());
    assert!(ready(&mut second), "poll_ready resolves: the call sheds");
    assert_eq!(tank.waiting(), 1, "the second never joined the line");
    let err = call_now(&mut second, 2).unwrap_err();
    assert_eq!(throttled(&err).retry_after(), ms(200));
    assert_eq!(throttled(&err).scope(), Scope::Global);

    // The first gets its fuel in time.
    clock.advance(ms(100));
    assert!(ready(&mut first));
    assert_eq!(call_now(&mut first, 1).unwrap(), 1);

    // The shed service is usable again: it waits, in time, like anyone.
    assert!(!ready(&mut second));
    clock.advance(ms(100));
    assert!(ready(&mut second));
    assert_eq!(call_now(&mut second, 3).unwrap(), 3);
}

#[test]
fn without_max_wait_the_same_request_queues() {
    let clock = ManualClock::new();
    let tank = empty(&clock, "10/s");
    let layer = ThrottleLayer::new(tank.clone());
    let mut first = layer.layer(echo());
    let mut second = layer.layer(echo());
    assert!(!ready(&mut first));
    assert!(!ready(&mut second), "waits for its 200 ms");
    assert_eq!(tank.waiting(), 2);
}

#[test]
fn a_request_that_gets_in_waits_at_most_max_wait_even_if_the_tank_pauses() {
    let clock = ManualClock::new();
    let tank = empty(&clock, "10/s");
    let mut svc = ThrottleLayer::new(tank.clone())
        .max_wait(ms(150))
        .layer(echo());
    assert!(!ready(&mut svc));
    // Paused, the fuel it waits for never comes: the deadline ends the wait.
    tank.pause();
    clock.advance(ms(149));
    assert!(!ready(&mut svc));
    clock.advance(ms(1));
    assert!(ready(&mut svc));
    let err = call_now(&mut svc, 1).unwrap_err();
    // Paused: a newcomer's wait is unknown, so one interval.
    assert_eq!(throttled(&err).retry_after(), ms(100));
    assert_eq!(tank.waiting(), 0, "it left the line");
}

#[test]
fn max_wait_zero_sheds_whatever_finds_no_fuel() {
    let clock = ManualClock::new();
    let tank = Tank::builder(Rate::per_second(10).unwrap())
        .initial(1)
        .clock(clock.clone())
        .build()
        .unwrap();
    let layer = ThrottleLayer::new(tank).max_wait(Duration::ZERO);
    let mut svc = layer.layer(echo());
    assert!(ready(&mut svc));
    assert_eq!(call_now(&mut svc, 1).unwrap(), 1, "the fuel there is taken");
    assert!(ready(&mut svc));
    let err = call_now(&mut svc, 2).unwrap_err();
    assert_eq!(throttled(&err).retry_after(), ms(100));
}

#[test]
fn max_waiting_bounds_the_line_and_frees_a_place_when_a_waiter_leaves() {
    let clock = ManualClock::new();
    let tank = empty(&clock, "10/s");
    let layer = ThrottleLayer::new(tank.clone()).max_waiting(2);
    let mut a = layer.layer(echo());
    let mut b = a.clone();
    let mut c = layer.layer(echo());
    assert!(!ready(&mut a));
    assert!(!ready(&mut b));
    assert!(ready(&mut c), "the line is full: shed");
    let err = call_now(&mut c, 3).unwrap_err();
    // Two ahead: a newcomer's fuel is 300 ms away.
    assert_eq!(throttled(&err).retry_after(), ms(300));

    drop(a);
    assert!(!ready(&mut c), "a left: c takes its place in line");
    assert_eq!(tank.waiting(), 2);

    // Served, a waiter frees its place too.
    clock.advance(ms(100));
    assert!(ready(&mut b));
    let mut d = layer.layer(echo());
    assert!(!ready(&mut d));
    assert_eq!(tank.waiting(), 2);
}

// The keyed layer.

type Req = (u32, u32);

fn keyed(clock: &ManualClock, rate: &str) -> KeyedTank<u32> {
    KeyedTank::builder(rate.parse::<Rate>().unwrap())
        .initial(1)
        .clock(clock.clone())
        .build()
        .unwrap()
}

fn by_key(request: &Req) -> Result<u32, KeyError> {
    Ok(request.0)
}

type KeyedFuture = Pin<Box<dyn Future<Output = Result<u32, BoxError>>>>;

fn keyed_call<S>(svc: &mut S, request: Req) -> KeyedFuture
where
    S: Service<Req, Response = u32, Error = BoxError>,
    S::Future: 'static,
{
    assert!(matches!(svc.poll_ready(&mut cx()), Poll::Ready(Ok(()))));
    Box::pin(svc.call(request))
}

fn poll(future: &mut KeyedFuture) -> Poll<Result<u32, BoxError>> {
    future.as_mut().poll(&mut cx())
}

#[test]
fn keyed_max_wait_sheds_per_key_at_once() {
    let clock = ManualClock::new();
    let per_key = keyed(&clock, "10/s");
    let mut svc = KeyedThrottleLayer::new(per_key, key_fn(by_key))
        .max_wait(ms(150))
        .layer(service_fn(
            |(_, x): Req| async move { Ok::<_, BoxError>(x) },
        ));

    let mut first = keyed_call(&mut svc, (1, 1));
    assert!(matches!(poll(&mut first), Poll::Ready(Ok(1))));
    // Key 1's next fuel is 100 ms away: waits.
    let mut second = keyed_call(&mut svc, (1, 2));
    assert!(poll(&mut second).is_pending());
    // The one after would wait 200 ms: shed at once.
    let mut third = keyed_call(&mut svc, (1, 3));
    let Poll::Ready(Err(err)) = poll(&mut third) else {
        panic!("shed at once");
    };
    assert_eq!(throttled(&err).retry_after(), ms(200));
    assert_eq!(throttled(&err).scope(), Scope::Keyed);
    // Key 2 is not held up.
    let mut other = keyed_call(&mut svc, (2, 4));
    assert!(matches!(poll(&mut other), Poll::Ready(Ok(4))));

    clock.advance(ms(100));
    assert!(matches!(poll(&mut second), Poll::Ready(Ok(2))));
}

#[test]
fn keyed_max_waiting_bounds_the_line_across_keys() {
    let clock = ManualClock::new();
    let per_key = keyed(&clock, "10/s");
    let mut svc = KeyedThrottleLayer::new(per_key, key_fn(by_key))
        .max_waiting(1)
        .layer(service_fn(
            |(_, x): Req| async move { Ok::<_, BoxError>(x) },
        ));
    for key in [1, 2] {
        let mut spent = keyed_call(&mut svc, (key, 0));
        assert!(poll(&mut spent).is_ready());
    }
    let mut waiting = keyed_call(&mut svc, (1, 1));
    assert!(poll(&mut waiting).is_pending());
    let mut full = keyed_call(&mut svc, (2, 2));
    let Poll::Ready(Err(err)) = poll(&mut full) else {
        panic!("the line is full: shed at once");
    };
    assert_eq!(throttled(&err).retry_after(), ms(100));

    // Dropped, the waiter frees its place.
    drop(waiting);
    let mut now_waits = keyed_call(&mut svc, (2, 3));
    assert!(poll(&mut now_waits).is_pending());
    clock.advance(ms(100));
    assert!(matches!(poll(&mut now_waits), Poll::Ready(Ok(3))));
}

#[cfg(feature = "http")]
mod over_http {
    use std::net::SocketAddr;

    use ::http::{Request, Response, StatusCode};
    use fueltank_tower::key::PeerIp;

    use super::*;

    type Inner = tower::util::ServiceFn<
        fn(Request<()>) -> std::future::Ready<Result<Response<String>, Infallible>>,
    >;

    fn ok() -> Inner {
        service_fn(|_| std::future::ready(Ok(Response::new("hello".to_string()))))
    }

    fn from(peer: &str) -> Request<()> {
        let mut request = Request::new(());
        request
            .extensions_mut()
            .insert(peer.parse::<SocketAddr>().unwrap());
        request
    }

    #[test]
    fn beyond_max_wait_a_429_with_the_wait_it_would_have_had() {
        let clock = ManualClock::new();
        let tank = empty(&clock, "1/s");
        let layer = ThrottleLayer::new(tank)
            .max_wait(Duration::from_secs(2))
            .label("reports")
            .http();
        let mut waits = [layer.layer(ok()), layer.layer(ok())];
        for svc in &mut waits {
            assert!(svc.poll_ready(&mut cx()).is_pending(), "1 s, then 2 s");
        }
        let mut shed = layer.layer(ok());
        assert!(shed.poll_ready(&mut cx()).is_ready());
        let response = shed.call(Request::new(())).now_or_never().unwrap().unwrap();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()["retry-after"], "3");
        assert_eq!(
            response.body(),
            "Too Many Requests (reports limit): retry after 3 s\n"
        );
        let throttled = response.extensions().get::<Throttled>().unwrap();
        assert_eq!(throttled.retry_after(), Duration::from_secs(3));
    }

    #[test]
    fn keyed_beyond_max_wait_a_429_with_the_keys_wait() {
        let clock = ManualClock::new();
        let per_ip = KeyedTank::builder("2/s".parse::<Rate>().unwrap())
            .clock(clock.clone())
            .build()
            .unwrap();
        let mut svc = KeyedThrottleLayer::new(per_ip, PeerIp)
            .max_wait(ms(400))
            .http()
            .layer(ok());
        for _ in 0..2 {
            assert!(svc.poll_ready(&mut cx()).is_ready());
            let response = svc.call(from("192.0.2.1:1")).now_or_never().unwrap();
            assert_eq!(response.unwrap().status(), StatusCode::OK);
        }
        assert!(svc.poll_ready(&mut cx()).is_ready());
        let response = svc
            .call(from("192.0.2.1:1"))
            .now_or_never()
            .unwrap()
            .unwrap();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()["retry-after"], "1");
        assert_eq!(response.headers()["ratelimit-remaining"], "0");
    }
}
