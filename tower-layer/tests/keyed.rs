//! The keyed layer on a `ManualClock`: per-key budgets in reject and wait
//! mode, the inner service called only when ready, cancellation, extractor
//! errors, emission.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use fueltank::clock::ManualClock;
use fueltank::{KeyedTank, Monitor, Rate};
use fueltank_tower::key::{KeyError, key_fn};
use fueltank_tower::{EmitOn, KeyedThrottleLayer, Throttled};
use futures::executor::block_on;
use tower::{BoxError, Layer, Service, ServiceExt};

/// A request: `(key, payload)`; a key of 0 has no key.
type Req = (u32, u32);

/// Answers the payload, and fails the test if it is called without a
/// `poll_ready` first (tower's contract). A clone is not ready.
struct Strict {
    ready: bool,
    calls: Arc<AtomicUsize>,
}

impl Strict {
    fn new() -> (Strict, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let strict = Strict {
            ready: false,
            calls: calls.clone(),
        };
        (strict, calls)
    }
}

impl Clone for Strict {
    fn clone(&self) -> Strict {
        Strict {
            ready: false,
            calls: self.calls.clone(),
        }
    }
}

impl Service<Req> for Strict {
    type Response = u32;
    type Error = BoxError;
    type Future = std::future::Ready<Result<u32, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.ready = true;
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, (_, payload): Req) -> Self::Future {
        assert!(
            self.ready,
            "the inner service was called before it was ready"
        );
        self.ready = false;
        self.calls.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Ok(payload))
    }
}

fn by_key(request: &Req) -> Result<u32, KeyError> {
    match request.0 {
        0 => Err(KeyError::Other(
            "no user in the request; expected a user id above 0".into(),
        )),
        key => Ok(key),
    }
}

fn keyed(clock: &ManualClock, rate: &str) -> KeyedTank<u32> {
    KeyedTank::builder(rate.parse::<Rate>().unwrap())
        .clock(clock.clone())
        .build()
        .unwrap()
}

/// `poll_ready` (it must be ready), then `call`.
fn call<S: Service<Req>>(svc: &mut S, request: Req) -> Pin<Box<S::Future>> {
    match svc.poll_ready(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(Ok(())) => {}
        _ => panic!("the service is not ready"),
    }
    Box::pin(svc.call(request))
}

fn poll<F: Future>(future: &mut Pin<Box<F>>) -> Poll<F::Output> {
    future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
}

fn now<F: Future>(mut future: Pin<Box<F>>) -> F::Output {
    match poll(&mut future) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("not resolved at once"),
    }
}

fn retry_after(err: &BoxError) -> Duration {
    err.downcast_ref::<Throttled>()
        .unwrap_or_else(|| panic!("not Throttled: {err}"))
        .retry_after()
}

#[test]
fn reject_mode_gives_each_key_its_own_budget() {
    let clock = ManualClock::new();
    let keyed = keyed(&clock, "3/s");
    let (inner, calls) = Strict::new();
    let mut svc = KeyedThrottleLayer::new(keyed.clone(), key_fn(by_key))
        .reject()
        .layer(inner);

    // A new key starts full: three at once, then shed.
    for i in 0..3 {
        assert_eq!(now(call(&mut svc, (1, i))).unwrap(), i);
    }
    let err = now(call(&mut svc, (1, 9))).unwrap_err();
    assert_eq!(retry_after(&err), Duration::from_nanos(333_333_334));
    // Another key is not touched by the first's.
    for i in 0..3 {
        assert_eq!(now(call(&mut svc, (2, i))).unwrap(), i);
    }
    assert!(now(call(&mut svc, (2, 9))).is_err());
    assert_eq!(keyed.level(&3), 3, "a key never seen is full");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        6,
        "shed requests never reach it"
    );

    // One interval later each key has one more, and only one.
    clock.advance(Duration::from_nanos(333_333_334));
    for key in [1, 2] {
        assert_eq!(now(call(&mut svc, (key, 7))).unwrap(), 7);
        let err = now(call(&mut svc, (key, 8))).unwrap_err();
        assert_eq!(retry_after(&err), Duration::from_nanos(333_333_333));
    }
}

#[test]
fn wait_mode_waits_per_key_and_calls_the_ready_inner_service() {
    let clock = ManualClock::new();
    let keyed = KeyedTank::builder(Rate::per_second(10).unwrap())
        .initial(1)
        .clock(clock.clone())
        .build()
        .unwrap();
    let (inner, calls) = Strict::new();
    let mut svc = KeyedThrottleLayer::new(keyed.clone(), key_fn(by_key)).layer(inner);

    assert_eq!(now(call(&mut svc, (1, 1))).unwrap(), 1);
    // Key 1 is empty: its requests wait, in order, in the response future.
    let mut first = call(&mut svc, (1, 2));
    let mut second = call(&mut svc, (1, 3));
    assert!(poll(&mut first).is_pending());
    assert!(poll(&mut second).is_pending());
    // Another key is not held up.
    assert_eq!(now(call(&mut svc, (2, 4))).unwrap(), 4);
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    clock.advance(Duration::from_millis(100));
    assert!(poll(&mut second).is_pending(), "first come, first served");
    match poll(&mut first) {
        Poll::Ready(result) => assert_eq!(result.unwrap(), 2),
        Poll::Pending => panic!("the first waiter has its fuel"),
    }
    clock.advance(Duration::from_millis(100));
    match poll(&mut second) {
        Poll::Ready(result) => assert_eq!(result.unwrap(), 3),
        Poll::Pending => panic!("the second waiter has its fuel"),
    }
    // `Strict` asserted that each waiter called a ready service.
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    assert_eq!(keyed.level(&1), 0);
}

#[test]
fn a_waiting_request_dropped_leaves_the_line_and_loses_no_fuel() {
    let clock = ManualClock::new();
    let keyed = KeyedTank::builder(Rate::per_second(10).unwrap())
        .initial(1)
        .clock(clock.clone())
        .build()
        .unwrap();
    let (inner, calls) = Strict::new();
    let mut svc = KeyedThrottleLayer::new(keyed.clone(), key_fn(by_key)).layer(inner);
    assert!(now(call(&mut svc, (1, 1))).is_ok());
    let mut waiting = call(&mut svc, (1, 2));
    assert!(poll(&mut waiting).is_pending());
    drop(waiting);
    // Dropped before it was ever polled: no line joined either.
    drop(call(&mut svc, (1, 3)));
    clock.advance(Duration::from_millis(100));
    assert_eq!(keyed.level(&1), 1, "the fuel is there for the next one");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the dropped were never called"
    );
    assert_eq!(now(call(&mut svc, (1, 4))).unwrap(), 4);
}

#[test]
fn extractor_errors_fail_the_request_and_take_no_fuel() {
    let clock = ManualClock::new();
    let keyed = keyed(&clock, "1/s");
    for layer in [
        KeyedThrottleLayer::new(keyed.clone(), key_fn(by_key)),
        KeyedThrottleLayer::new(keyed.clone(), key_fn(by_key)).reject(),
    ] {
        let (inner, calls) = Strict::new();
        let mut svc = layer.layer(inner);
        let err = now(call(&mut svc, (0, 1))).unwrap_err();
        let key_error = err.downcast_ref::<KeyError>().expect("a KeyError");
        assert!(matches!(key_error, KeyError::Other(_)));
        assert!(err.to_string().contains("expected a user id"), "{err}");
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }
    assert!(keyed.is_empty(), "no key, no entry");
}

#[test]
fn the_service_is_send_sync_clone_and_its_future_send() {
    fn assert_traits<T: Send + Sync + Clone + 'static>(_: &T) {}
    fn assert_send<T: Send>(_: &T) {}
    let clock = ManualClock::new();
    let (inner, _) = Strict::new();
    let svc = KeyedThrottleLayer::new(keyed(&clock, "1/s"), key_fn(by_key)).layer(inner);
    assert_traits(&svc);
    let future = svc.oneshot((1, 1));
    assert_send(&future);
}

#[test]
fn emission_counts_each_request_let_through_once() {
    let clock = ManualClock::new();
    let monitor = Monitor::builder().clock(clock.clone()).build().unwrap();
    let keyed = KeyedTank::builder(Rate::per_second(10).unwrap())
        .initial(2)
        .clock(clock.clone())
        .build()
        .unwrap();
    let (inner, _) = Strict::new();
    let mut svc = KeyedThrottleLayer::new(keyed.clone(), key_fn(by_key))
        .monitor(monitor.clone())
        .layer(inner);
    block_on(async {
        for key in [1, 1, 2, 2] {
            svc.ready().await.unwrap().call((key, 0)).await.unwrap();
        }
    });
    assert_eq!(monitor.total(), 4);
    // A waiting request is counted when its fuel comes, not before.
    let mut waiting = call(&mut svc, (1, 0));
    assert!(poll(&mut waiting).is_pending());
    assert_eq!(monitor.total(), 4);
    clock.advance(Duration::from_millis(100));
    assert!(poll(&mut waiting).is_ready());
    assert_eq!(monitor.total(), 5);
    // Nor are requests without a key.
    assert!(now(call(&mut svc, (0, 0))).is_err());
    assert_eq!(monitor.total(), 5);

    // On success: a failing inner service is not counted.
    let monitor = Monitor::builder().clock(clock.clone()).build().unwrap();
    let mut failing = KeyedThrottleLayer::new(keyed, key_fn(by_key))
        .monitor(monitor.clone())
        .emit_on(EmitOn::Success)
        .layer(tower::service_fn(|(_, x): Req| async move {
            if x > 0 {
                Ok(x)
            } else {
                Err(BoxError::from("zero"))
            }
        }));
    block_on(async {
        failing.ready().await.unwrap().call((5, 1)).await.unwrap();
        failing
            .ready()
            .await
            .unwrap()
            .call((5, 0))
            .await
            .unwrap_err();
    });
    assert_eq!(monitor.total(), 1);
}
