//! [`ResponseFuture`]: the future of a [`ThrottleService`](crate::ThrottleService) call.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;

use fueltank::Monitor;

use crate::answer::{Answer, Errors, Outcome, Respond};
use crate::emit;

pin_project! {
    /// The response future of [`ThrottleService`](crate::ThrottleService):
    /// the inner service's future (with the HTTP layer's headers added to
    /// its response), or the answer to a request refused in `call`: an
    /// immediate [`Throttled`](crate::Throttled) or
    /// [`Unavailable`](crate::Unavailable) error, or the HTTP layer's 429 or
    /// 503.
    ///
    /// # Cancel safety
    ///
    /// The fuel was spent in `call`; dropping this future gives nothing back
    /// (the request was let through). With
    /// [`EmitOn::Success`](crate::EmitOn::Success), a dropped future emits
    /// nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Tank};
    /// use fueltank_tower::{ResponseFuture, ThrottleLayer};
    /// use tower::{Layer, Service, ServiceExt, service_fn};
    ///
    /// # futures::executor::block_on(async {
    /// let mut svc = ThrottleLayer::new(Tank::new(Rate::per_second(10)?))
    ///     .layer(service_fn(|()| async { Ok::<_, tower::BoxError>(1) }));
    /// let future: ResponseFuture<_> = svc.ready().await?.call(());
    /// assert_eq!(future.await?, 1);
    /// # Ok::<(), tower::BoxError>(())
    /// # }).unwrap();
    /// ```
    #[must_use = "futures do nothing unless polled"]
    pub struct ResponseFuture<F, A = Errors>
    where
        F: Future,
        F::Output: Outcome,
        A: Respond<F::Output>,
    {
        #[pin]
        kind: Kind<F, A>,
        stamp: <A as Answer>::Stamp,
    }
}

pin_project! {
    /// What a response future does: poll the inner service's future (and
    /// emit when it succeeds, if asked), or return the answer made in
    /// `call`.
    #[project = KindProj]
    enum Kind<F, A>
    where
        F: Future,
        F::Output: Outcome,
        A: Respond<F::Output>,
    {
        Called {
            #[pin]
            future: F,
            on_success: Option<Monitor>,
        },
        Answered {
            // Taken by the one poll that returns it.
            output: Option<Result<A::Response, A::Error>>,
        },
    }
}

impl<F, A> ResponseFuture<F, A>
where
    F: Future,
    F::Output: Outcome,
    A: Respond<F::Output>,
{
    #[inline]
    pub(crate) fn called(
        future: F,
        on_success: Option<Monitor>,
        stamp: <A as Answer>::Stamp,
    ) -> ResponseFuture<F, A> {
        ResponseFuture {
            kind: Kind::Called { future, on_success },
            stamp,
        }
    }

    #[cold]
    pub(crate) fn answered(
        output: Result<A::Response, A::Error>,
        stamp: <A as Answer>::Stamp,
    ) -> ResponseFuture<F, A> {
        ResponseFuture {
            kind: Kind::Answered {
                output: Some(output),
            },
            stamp,
        }
    }
}

impl<F, A, T, E> Future for ResponseFuture<F, A>
where
    F: Future<Output = Result<T, E>>,
    A: Respond<Result<T, E>>,
{
    type Output = Result<A::Response, A::Error>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match this.kind.project() {
            KindProj::Called { future, on_success } => {
                let output = ready!(future.poll(cx));
                if output.is_ok() {
                    emit::succeeded(on_success);
                }
                Poll::Ready(A::done(this.stamp, output))
            }
            KindProj::Answered { output } => {
                Poll::Ready(output.take().unwrap_or_else(A::polled_again))
            }
        }
    }
}

impl<F, A> fmt::Debug for ResponseFuture<F, A>
where
    F: Future,
    F::Output: Outcome,
    A: Respond<F::Output>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match &self.kind {
            Kind::Called { .. } => "ResponseFuture::Called",
            Kind::Answered { .. } => "ResponseFuture::Answered",
        })
    }
}
