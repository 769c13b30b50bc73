//! [`ThrottleService`]: the service made by [`ThrottleLayer`](crate::ThrottleLayer).

use std::sync::Arc;
use std::task::{Context, Poll, ready};

use fueltank::Tank;
use tower::{BoxError, Service};

use crate::ResponseFuture;
use crate::gate::{Config, Gate};

/// A service whose every request spends one fuel from a shared [`Tank`].
///
/// Made by [`ThrottleLayer`](crate::ThrottleLayer). In wait mode (the
/// default) `poll_ready` waits for fuel, then for the inner service, and
/// holds the fuel until `call` spends it; with
/// [`max_wait`](crate::ThrottleLayer::max_wait) or
/// [`max_waiting`](crate::ThrottleLayer::max_waiting), a request whose fuel
/// cannot come in time (or that finds the line full) makes `poll_ready`
/// resolve at once, and `call` sheds it with [`Throttled`](crate::Throttled).
/// In reject mode `poll_ready` waits only for the inner service and `call`
/// sheds the request with `Throttled` when there is no fuel.
///
/// Its error type is [`tower::BoxError`]: the inner service's errors,
/// `Throttled`, or [`Unavailable`](crate::Unavailable) (a budget's store is
/// down, see [`Budget::unavailable`](crate::Budget::unavailable)), found by
/// downcasting.
///
/// `Clone` shares the tank: every clone draws on the one budget (unlike
/// `tower::limit::RateLimit`, whose clones each get their own). A clone
/// starts without fuel, so it must be made ready before it is called.
///
/// # Cancel safety
///
/// Dropping the service, or the future of `ready()`, at any point loses no
/// fuel: fuel held for a `call` that never came goes back to the tank, and
/// a wait in the tank's line leaves it (and frees its place among the
/// `max_waiting`). One exception: fuel that a wait bounded by `max_wait`
/// took cannot be given back (the tank's timed wait hands out no token),
/// so a service dropped between such a wait and its `call` spends it.
///
/// # Contract
///
/// Tower requires `poll_ready` to return `Ready(Ok)` before each `call`.
/// Called without it, this service does not panic: it takes one fuel if
/// there is one now, and otherwise fails the request with `Throttled`.
///
/// # Examples
///
/// ```
/// use fueltank::{Rate, Tank};
/// use fueltank_tower::{ThrottleLayer, ThrottleService};
/// use tower::{Layer, ServiceExt, service_fn};
///
/// # futures::executor::block_on(async {
/// let tank = Tank::builder(Rate::per_second(10)?).initial(2).build()?;
/// let svc: ThrottleService<_> = ThrottleLayer::new(tank.clone())
///     .layer(service_fn(|x: u32| async move { Ok::<_, tower::BoxError>(x * 2) }));
/// let clone = svc.clone();
/// assert_eq!(svc.oneshot(1).await?, 2);
/// assert_eq!(clone.oneshot(2).await?, 4); // the same tank: now empty
/// assert_eq!(tank.level(), 0);
/// # Ok::<(), tower::BoxError>(())
/// # }).unwrap();
/// ```
#[derive(Debug)]
pub struct ThrottleService<S> {
    inner: S,
    gate: Gate,
}

impl<S> ThrottleService<S> {
    pub(crate) fn from_config(inner: S, config: Arc<Config>) -> ThrottleService<S> {
        ThrottleService {
            inner,
            gate: Gate::new(config),
        }
    }

    /// The tank this service draws on; `None` for a `Throttle` without a
    /// tank (unlimited fuel).
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Tank};
    /// use fueltank_tower::ThrottleLayer;
    /// use tower::{Layer, service_fn};
    ///
    /// let svc = ThrottleLayer::new(Tank::new(Rate::per_second(10)?))
    ///     .layer(service_fn(|()| async { Ok::<_, tower::BoxError>(()) }));
    /// assert_eq!(svc.tank().map(Tank::level), Some(1));
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn tank(&self) -> Option<&Tank> {
        self.gate.tank()
    }

    /// The inner service.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Tank};
    /// use fueltank_tower::ThrottleLayer;
    /// use tower::Layer;
    ///
    /// let svc = ThrottleLayer::new(Tank::new(Rate::per_second(10)?)).layer(7_u8);
    /// assert_eq!(*svc.get_ref(), 7);
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Tank};
    /// use fueltank_tower::ThrottleLayer;
    /// use tower::Layer;
    ///
    /// let mut svc = ThrottleLayer::new(Tank::new(Rate::per_second(10)?)).layer(7_u8);
    /// *svc.get_mut() = 8;
    /// assert_eq!(svc.into_inner(), 8);
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, consuming this one (fuel it held goes back).
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Tank};
    /// use fueltank_tower::ThrottleLayer;
    /// use tower::Layer;
    ///
    /// let svc = ThrottleLayer::new(Tank::new(Rate::per_second(10)?)).layer("inner");
    /// assert_eq!(svc.into_inner(), "inner");
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone> Clone for ThrottleService<S> {
    /// A service on the same tank, without fuel: make it ready before
    /// calling it.
    fn clone(&self) -> ThrottleService<S> {
        ThrottleService {
            inner: self.inner.clone(),
            gate: self.gate.clone(),
        }
    }
}

impl<S, Request> Service<Request> for ThrottleService<S>
where
    S: Service<Request>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        ready!(self.gate.poll_fuel(cx));
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, request: Request) -> ResponseFuture<S::Future> {
        match self.gate.spend() {
            Ok(on_success) => ResponseFuture::called(self.inner.call(request), on_success),
            Err(refusal) => ResponseFuture::refused(refusal),
        }
    }
}
