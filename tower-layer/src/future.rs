//! [`ResponseFuture`]: the future of a [`ThrottleService`](crate::ThrottleService) call.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tower::BoxError;

use fueltank::Monitor;

use crate::emit;
use crate::error::Refusal;

pin_project! {
    /// The response future of [`ThrottleService`](crate::ThrottleService):
    /// the inner service's future, or an immediate
    /// [`Throttled`](crate::Throttled) or [`Unavailable`](crate::Unavailable)
    /// error.
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
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    /// What a response future does: poll the inner service's future (and
    /// emit when it succeeds, if asked), or fail at once, refused.
    #[project = KindProj]
    pub(crate) enum Kind<F> {
        Called {
            #[pin]
            future: F,
            on_success: Option<Monitor>,
        },
        Refused {
            // Taken by the one poll that returns it.
            refusal: Option<Refusal>,
        },
    }
}

impl<F> ResponseFuture<F> {
    #[inline]
    pub(crate) fn called(future: F, on_success: Option<Monitor>) -> ResponseFuture<F> {
        ResponseFuture {
            kind: Kind::Called { future, on_success },
        }
    }

    pub(crate) fn refused(refusal: Refusal) -> ResponseFuture<F> {
        ResponseFuture {
            kind: Kind::Refused {
                refusal: Some(refusal),
            },
        }
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Called { future, on_success } => {
                let output = ready!(future.poll(cx));
                if output.is_ok() {
                    emit::succeeded(on_success);
                }
                Poll::Ready(output.map_err(Into::into))
            }
            KindProj::Refused { refusal } => Poll::Ready(Err(match refusal.take() {
                Some(refusal) => refusal.boxed(),
                None => "ResponseFuture polled after completion".into(),
            })),
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Called { .. } => f.write_str("ResponseFuture::Called"),
            Kind::Refused { refusal } => f
                .debug_tuple("ResponseFuture::Refused")
                .field(refusal)
                .finish(),
        }
    }
}
