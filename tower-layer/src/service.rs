//! [`ThrottleLayer`] and its [`ThrottleService`]: every request spends fuel
//! from one budget that every clone of the service shares.

use std::any::Any;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use fueltank::{Budget, Monitor, Tank, Throttle};
use tower::{Layer, Service};

#[cfg(doc)]
use crate::KeyedThrottleService;
use crate::ResponseFuture;
#[cfg(doc)]
use crate::Stats;
use crate::answer::{Errors, Respond};
use crate::budget::{self, Shared};
use crate::error::Scope;
use crate::gate::Gate;
use crate::layer::{Limit, ThrottleLayer};
use crate::policy::Policy;

/// What a [`ThrottleLayer`] draws on: one budget, shared by every service
/// it makes and their clones (`None`: a [`Throttle`] without a tank, whose
/// fuel is unlimited).
///
/// # Examples
///
/// ```
/// use fueltank::{Rate, Tank};
/// use fueltank_tower::{Limit, Single, ThrottleLayer};
///
/// let layer: Limit<Single> = ThrottleLayer::new(Tank::new(Rate::per_second(10)?));
/// # let _ = layer;
/// # Ok::<(), fueltank::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Single {
    pub(crate) budget: Option<Shared>,
}

impl ThrottleLayer {
    /// A layer drawing on `budget`, waiting for fuel: any [`Budget`], such
    /// as a [`Tank`] or `fueltank-redis`'s `GlobalTank`, without statistics
    /// (add a [`Stats`] for them); or a [`Throttle`]: its tank, counting
    /// every request let through in its monitor, at fuel time (see
    /// [`emit_on`](ThrottleLayer::emit_on)).
    ///
    /// With a [`Throttle`]:
    ///
    /// - A throttle without a tank (`as_throttle(false)`) means unlimited
    ///   fuel: requests never wait and are never shed; they are still
    ///   counted.
    /// - A throttle without a monitor (`as_monitor(false)`) means no
    ///   emission.
    /// - The layer emits itself, once per request, whatever the throttle's
    ///   `auto_emit`: it takes fuel from the tank directly, never through
    ///   the throttle's fuel methods, so nothing is counted twice. Don't
    ///   also call `throttle.emit()` for the requests the layer lets
    ///   through.
    ///
    /// The layer shares the throttle's tank and monitor: `throttle.stop()`
    /// pauses both (waiting requests wait until `start()`), and
    /// `throttle.set_rate(..)` takes effect at once.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Throttle};
    /// use fueltank_tower::ThrottleLayer;
    /// use tower::{Layer, Service, ServiceExt, service_fn};
    ///
    /// # futures::executor::block_on(async {
    /// let throttle = Throttle::builder(Rate::per_second(1000)?).build()?;
    /// let mut svc = ThrottleLayer::new(throttle.clone())
    ///     .layer(service_fn(|x: u32| async move { Ok::<_, tower::BoxError>(x) }));
    /// for x in 0..3 {
    ///     assert_eq!(svc.ready().await?.call(x).await?, x);
    /// }
    /// assert_eq!(throttle.total(), 3); // each request once
    ///
    /// // Monitor only: no limit, every request counted.
    /// let counter = Throttle::builder(Rate::per_second(1)?).as_throttle(false).build()?;
    /// let mut svc = ThrottleLayer::new(counter.clone())
    ///     .layer(service_fn(|x: u32| async move { Ok::<_, tower::BoxError>(x) }));
    /// for x in 0..5 {
    ///     svc.ready().await?.call(x).await?;
    /// }
    /// assert_eq!(counter.total(), 5);
    /// # Ok::<(), tower::BoxError>(())
    /// # }).unwrap();
    /// ```
    ///
    /// Any other [`Budget`] is drawn on as it is: a [`Tank`] (without
    /// statistics: a bare tank has no monitor), or a budget such as one shared by every instance of a service through Redis
    /// (`fueltank-redis`'s `GlobalTank`), waiting for fuel, without
    /// statistics (add a [`Stats`] for them). Fuel held by a service
    /// dropped between `poll_ready` and `call` is given back
    /// ([`Budget::give_back`]; a Redis tank and an `AllOf` spend it). In reject mode,
    /// `poll_ready` waits for the budget's answer when only its store can
    /// tell ([`Budget::ask`]), so a budget not used for a while does not
    /// shed its first requests.
    ///
    /// A budget of your own:
    ///
    /// ```
    /// use fueltank::{Budget, BudgetWait, Fuel, Rate};
    /// use fueltank_tower::ThrottleLayer;
    /// use std::time::Duration;
    /// use tower::{Layer, ServiceExt, service_fn};
    ///
    /// /// A budget that always has fuel.
    /// #[derive(Debug)]
    /// struct Plenty;
    ///
    /// impl Budget for Plenty {
    ///     fn try_take(&self, n: u64) -> Option<Fuel> {
    ///         Some(Fuel::taken(n))
    ///     }
    ///     fn wait(&self, n: u64, _max_wait: Option<Duration>) -> BudgetWait {
    ///         Box::pin(std::future::ready(Ok(self.try_take(n))))
    ///     }
    ///     fn wait_time(&self, _n: u64) -> Option<Duration> {
    ///         Some(Duration::ZERO)
    ///     }
    ///     fn rate(&self) -> Rate {
    ///         Rate::per_second(1_000_000).unwrap()
    ///     }
    ///     fn available(&self) -> u64 {
    ///         u64::MAX
    ///     }
    ///     fn capacity(&self) -> u64 {
    ///         u64::MAX
    ///     }
    /// }
    ///
    /// # futures::executor::block_on(async {
    /// let svc = ThrottleLayer::new(Plenty)
    ///     .layer(service_fn(|x: u8| async move { Ok::<_, tower::BoxError>(x) }));
    /// assert_eq!(svc.oneshot(7).await?, 7);
    /// # Ok::<(), tower::BoxError>(())
    /// # }).unwrap();
    /// ```
    pub fn new(budget: impl Budget) -> ThrottleLayer {
        let mut policy = Policy::new(Scope::Global);
        let budget = match (&budget as &dyn Any).downcast_ref::<Throttle>() {
            // The layer emits itself, so it takes from the tank directly.
            Some(throttle) => {
                policy.emission.monitor = throttle.monitor().cloned();
                throttle.tank().cloned().map(Shared::new)
            }
            None => Some(Shared::new(budget)),
        };
        Limit {
            side: Single { budget },
            policy,
            answer: Errors,
        }
    }
}

impl<A> ThrottleLayer<A> {
    /// The tank this layer draws on; `None` for a [`Throttle`] without a
    /// tank (unlimited fuel), and for a layer on another
    /// [`Budget`](ThrottleLayer::new).
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Tank, Throttle};
    /// use fueltank_tower::ThrottleLayer;
    ///
    /// let layer = ThrottleLayer::new(Tank::new(Rate::per_second(10)?));
    /// assert_eq!(layer.tank().map(Tank::level), Some(1));
    ///
    /// let unlimited = Throttle::builder(Rate::per_second(10)?).as_throttle(false).build()?;
    /// assert!(ThrottleLayer::new(unlimited).tank().is_none());
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn tank(&self) -> Option<&Tank> {
        budget::tank(self.side.budget.as_ref()?)
    }

    /// The monitor this layer emits to; `None` without one (a layer from a
    /// bare tank, or a [`Throttle`] built with `as_monitor(false)`).
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Tank, Throttle};
    /// use fueltank_tower::ThrottleLayer;
    ///
    /// let throttle = Throttle::builder(Rate::per_second(10)?).build()?;
    /// assert!(ThrottleLayer::new(throttle).monitor().is_some());
    /// let bare = ThrottleLayer::new(Tank::new(Rate::per_second(10)?));
    /// assert!(bare.monitor().is_none());
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn monitor(&self) -> Option<&Monitor> {
        self.policy.emission.monitor.as_ref()
    }
}

impl From<Throttle> for ThrottleLayer {
    /// [`ThrottleLayer::new`].
    fn from(throttle: Throttle) -> ThrottleLayer {
        ThrottleLayer::new(throttle)
    }
}

impl From<Tank> for ThrottleLayer {
    /// [`ThrottleLayer::new`].
    fn from(tank: Tank) -> ThrottleLayer {
        ThrottleLayer::new(tank)
    }
}

impl<S, A: Clone> Layer<S> for ThrottleLayer<A> {
    type Service = ThrottleService<S, A>;

    fn layer(&self, inner: S) -> ThrottleService<S, A> {
        LimitService {
            inner,
            state: Gate::new(Arc::new(self.clone())),
        }
    }
}

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
/// `max_waiting`), whether the wait was bounded by `max_wait` or not. A
/// budget that cannot take fuel back (a `fueltank-redis` tank, an
/// `AllOf`: see [`Budget::give_back`](crate::Budget::give_back)) spends it
/// instead.
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
pub type ThrottleService<S, A = Errors> = LimitService<S, Gate<A>>;

/// The service of a [`Limit`]: the inner service, and what the layer's
/// kind keeps per service (a [`ThrottleService`] its gate, holding the
/// fuel taken in `poll_ready`; a [`KeyedThrottleService`] the layer).
///
/// # Examples
///
/// ```
/// use fueltank::{Rate, Tank};
/// use fueltank_tower::{LimitService, ThrottleLayer};
/// use tower::Layer;
///
/// let svc = ThrottleLayer::new(Tank::new(Rate::per_second(10)?)).layer("inner");
/// let _: &LimitService<&str, _> = &svc;
/// assert_eq!(*svc.get_ref(), "inner");
/// # Ok::<(), fueltank::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct LimitService<S, St> {
    pub(crate) inner: S,
    pub(crate) state: St,
}

impl<S, St> LimitService<S, St> {
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

    /// The inner service, consuming this one (fuel a [`ThrottleService`]
    /// held goes back).
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

impl<S, A, Request> Service<Request> for ThrottleService<S, A>
where
    S: Service<Request>,
    A: Respond<Result<S::Response, S::Error>>,
{
    type Response = A::Response;
    type Error = A::Error;
    type Future = ResponseFuture<S::Future, A>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), A::Error>> {
        ready!(self.state.poll_fuel(cx));
        self.inner.poll_ready(cx).map_err(A::fail)
    }

    #[inline]
    fn call(&mut self, request: Request) -> ResponseFuture<S::Future, A> {
        let spent = self.state.spend();
        let config = self.state.config();
        let stamp = config.answer.stamp(self.state.budget());
        match spent {
            Ok(on_success) => ResponseFuture::called(self.inner.call(request), on_success, stamp),
            Err(refusal) => {
                let output = config.answer.refused(refusal, &stamp);
                ResponseFuture::answered(output, stamp)
            }
        }
    }
}
