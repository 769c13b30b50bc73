//! What `layer.rs` and `examples/layer_callgrind.rs` both drive: one
//! request through a service that answers at once, and a tank that never
//! runs dry.

use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use fueltank::{Rate, Tank};
use http::{Request, Response};
use tower::{Service, service_fn};

/// One request through `svc`, which must be ready and answer at once.
#[inline]
pub fn drive<S: Service<Request<()>>>(svc: &mut S) -> S::Response {
    let mut cx = Context::from_waker(Waker::noop());
    match svc.poll_ready(&mut cx) {
        Poll::Ready(Ok(())) => {}
        _ => panic!("not ready: the limiter limited"),
    }
    let future = pin!(svc.call(Request::new(())));
    match future.poll(&mut cx) {
        Poll::Ready(Ok(response)) => response,
        _ => panic!("no response at once"),
    }
}

pub type Unit = tower::util::ServiceFn<fn(Request<()>) -> Ready<Result<Response<()>, Infallible>>>;

pub fn unit() -> Unit {
    service_fn(|_| ready(Ok(Response::new(()))))
}

/// A tank that never runs dry here: one fuel per nanosecond, a second's
/// worth banked. (Its header values, about 10^9, are beyond the HTTP
/// layer's static table of small numbers: each one allocates, the worst
/// case. An `Unbounded` tank with small numbers would leave the tank's
/// lock-free path, a worse distortion.)
pub fn full_tank() -> Tank {
    Tank::builder(full_rate())
        .initial(1_000_000_000)
        .build()
        .unwrap()
}

pub fn full_rate() -> Rate {
    Rate::new(1_000_000_000, Duration::from_secs(1)).unwrap()
}
