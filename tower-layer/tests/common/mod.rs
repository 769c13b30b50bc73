//! What the HTTP tests share: an inner service that answers at once, and a
//! call that must be answered at once. (Each test uses what it needs.)
#![allow(dead_code)]

use std::convert::Infallible;
use std::task::{Context, Waker};

use futures::FutureExt;
use http::{Request, Response};
use tower::{Service, service_fn};

pub type Inner = tower::util::ServiceFn<
    fn(Request<()>) -> std::future::Ready<Result<Response<String>, Infallible>>,
>;

/// Answers "hello" at once.
pub fn ok() -> Inner {
    service_fn(|_| std::future::ready(Ok(Response::new("hello".to_string()))))
}

/// `poll_ready` (it must be ready), then `call`, answered at once.
pub fn send<S>(svc: &mut S, request: Request<()>) -> Response<String>
where
    S: Service<Request<()>, Response = Response<String>, Error = Infallible>,
{
    assert!(
        svc.poll_ready(&mut Context::from_waker(Waker::noop()))
            .is_ready()
    );
    match svc.call(request).now_or_never() {
        Some(Ok(response)) => response,
        Some(Err(never)) => match never {},
        None => panic!("not answered at once"),
    }
}
