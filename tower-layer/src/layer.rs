//! [`ThrottleLayer`]: wraps services so that every request spends fuel.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use fueltank::{Budget, Monitor, Tank, Throttle};
use tower::Layer;

use crate::budget;
use crate::emit::EmitOn;
use crate::gate::Config;
use crate::policy::{Mode, Queue};
use crate::{Stats, ThrottleService};

/// A Tower [`Layer`] that makes every request spend one fuel from a shared
/// [`Tank`], and counts it in a statistics [`Monitor`].
///
/// Built by [`new`](ThrottleLayer::new) from a [`Throttle`] (its tank and
/// its monitor), a bare [`Tank`] (no statistics), or any other [`Budget`].
///
/// By default a service waits for fuel in `poll_ready` (back-pressure),
/// holds it, and spends it in `call`. With [`reject`](ThrottleLayer::reject)
/// it sheds instead: `call` fails at once with [`Throttled`](crate::Throttled)
/// when there is no fuel. Every service the layer makes, and every clone of
/// them, draws on the one tank.
///
/// With the `http` feature, [`http`][http-method] turns it into a layer
/// that answers `429 Too Many Requests` itself and adds the IETF
/// `RateLimit` headers.
///
/// # Examples
///
/// ```
/// use fueltank::{Rate, Throttle};
/// use fueltank_tower::ThrottleLayer;
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
///
/// # futures::executor::block_on(async {
/// let throttle = Throttle::builder(Rate::per_second(100)?).build()?;
/// let svc = ServiceBuilder::new()
///     .layer(ThrottleLayer::new(throttle.clone()))
///     .service(service_fn(|name: String| async move {
///         Ok::<_, tower::BoxError>(format!("hello, {name}"))
///     }));
/// assert_eq!(svc.oneshot("tank".to_string()).await?, "hello, tank");
/// assert_eq!(throttle.total(), 1); // counted by the throttle's monitor
/// # Ok::<(), tower::BoxError>(())
/// # }).unwrap();
/// ```
#[cfg_attr(feature = "http", doc = "[http-method]: ThrottleLayer::http")]
#[cfg_attr(
    not(feature = "http"),
    doc = "[http-method]: https://docs.rs/fueltank-tower/latest/fueltank_tower/struct.ThrottleLayer.html#method.http"
)]
#[derive(Debug, Clone)]
pub struct ThrottleLayer {
    pub(crate) config: Config,
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
    /// ([`Budget::give_back`]; a Redis tank spends it). In reject mode,
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
        let config = match (&budget as &dyn Any).downcast_ref::<Throttle>() {
            // The layer emits itself, so it takes from the tank directly.
            Some(throttle) => Config::new(
                throttle.tank().cloned().map(budget::Shared::new),
                throttle.monitor().cloned(),
            ),
            None => Config::new(Some(budget::Shared::new(budget)), None),
        };
        ThrottleLayer { config }
    }

    /// Sheds requests instead of waiting: `poll_ready` no longer waits for
    /// fuel, and `call` fails at once with [`Throttled`](crate::Throttled)
    /// (boxed into [`tower::BoxError`]) when there is none. Its
    /// [`retry_after`](crate::Throttled::retry_after) is exact, from the
    /// tank's schedule.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Tank};
    /// use fueltank_tower::{Throttled, ThrottleLayer};
    /// use tower::{Layer, Service, ServiceExt, service_fn};
    ///
    /// # futures::executor::block_on(async {
    /// let tank = Tank::new(Rate::per_minute(1)?);
    /// let mut svc = ThrottleLayer::new(tank)
    ///     .reject()
    ///     .layer(service_fn(|()| async { Ok::<_, tower::BoxError>(()) }));
    /// svc.ready().await?.call(()).await?; // the one fuel
    /// let err = svc.ready().await?.call(()).await.unwrap_err();
    /// assert!(err.is::<Throttled>());
    /// # Ok::<(), tower::BoxError>(())
    /// # }).unwrap();
    /// ```
    pub fn reject(mut self) -> ThrottleLayer {
        self.config.policy.mode = Mode::Reject;
        self
    }

    /// Bounds the wait (wait mode): a request whose fuel cannot come within
    /// `max_wait` is shed at once with [`Throttled`](crate::Throttled), and
    /// one that does get in has waited at most `max_wait`.
    ///
    /// When a request finds no fuel, the layer joins the tank's line with
    /// [`Tank::await_fuel_timeout`]: if the line ahead cannot be served
    /// within `max_wait` at the tank's rate, that fails at once, without
    /// waiting; otherwise the request waits for its fuel, and is shed if
    /// `max_wait` passes first (the tank was paused, or its rate lowered).
    /// The shed request's [`retry_after`](crate::Throttled::retry_after) is
    /// a newcomer's wait then, from the tank's schedule (with the `http`
    /// feature, the `Retry-After` of a 429).
    ///
    /// `poll_ready` still resolves: the request is shed by the `call` that
    /// follows. `max_wait(Duration::ZERO)` sheds every request that finds
    /// no fuel, like [`reject`](ThrottleLayer::reject). In reject mode it
    /// changes nothing.
    ///
    /// # Cancel safety
    ///
    /// A service dropped while it waits leaves the line and loses
    /// nothing; one dropped after its fuel came, before its `call`, gives
    /// the fuel back, as fuel taken at once ([`Budget::give_back`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Tank, clock::ManualClock};
    /// use fueltank_tower::{ThrottleLayer, Throttled};
    /// use std::task::{Context, Poll, Waker};
    /// use std::time::Duration;
    /// use tower::{Layer, Service, ServiceExt, service_fn};
    ///
    /// # futures::executor::block_on(async {
    /// let clock = ManualClock::new();
    /// let tank = Tank::builder(Rate::per_second(10)?).initial(0).clock(clock.clone()).build()?;
    /// let layer = ThrottleLayer::new(tank).max_wait(Duration::from_millis(150));
    /// let svc = || layer.layer(service_fn(|()| async { Ok::<_, tower::BoxError>(()) }));
    /// let mut cx = Context::from_waker(Waker::noop());
    ///
    /// // The next fuel is 100 ms away: the first request waits for it.
    /// let mut first = svc();
    /// assert!(first.poll_ready(&mut cx).is_pending());
    /// // The one after would wait 200 ms: it is shed at once.
    /// let err = svc().oneshot(()).await.unwrap_err();
    /// let throttled = err.downcast_ref::<Throttled>().unwrap();
    /// assert_eq!(throttled.retry_after(), Duration::from_millis(200));
    ///
    /// clock.advance(Duration::from_millis(100));
    /// assert!(matches!(first.poll_ready(&mut cx), Poll::Ready(Ok(()))));
    /// first.call(()).await?;
    /// # Ok::<(), tower::BoxError>(())
    /// # }).unwrap();
    /// ```
    pub fn max_wait(mut self, max_wait: Duration) -> ThrottleLayer {
        self.config.policy.max_wait = Some(max_wait);
        self
    }

    /// Bounds the line (wait mode): at most `max` requests of this layer
    /// wait for fuel at once (all its services and their clones together);
    /// a request that finds no fuel while `max` wait is shed at once with
    /// [`Throttled`](crate::Throttled). `max_waiting(0)` sheds every
    /// request that finds no fuel.
    ///
    /// With [`max_wait`](ThrottleLayer::max_wait), a request is shed if
    /// either bound would be passed.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Tank};
    /// use fueltank_tower::{ThrottleLayer, Throttled};
    /// use std::task::{Context, Waker};
    /// use tower::{Layer, Service, ServiceExt, service_fn};
    ///
    /// # futures::executor::block_on(async {
    /// let tank = Tank::builder(Rate::per_minute(1)?).initial(0).build()?;
    /// let layer = ThrottleLayer::new(tank).max_waiting(1);
    /// let svc = || layer.layer(service_fn(|()| async { Ok::<_, tower::BoxError>(()) }));
    ///
    /// let mut waiting = svc();
    /// assert!(waiting.poll_ready(&mut Context::from_waker(Waker::noop())).is_pending());
    /// let err = svc().oneshot(()).await.unwrap_err(); // the line is full
    /// assert!(err.is::<Throttled>());
    /// # Ok::<(), tower::BoxError>(())
    /// # }).unwrap();
    /// ```
    pub fn max_waiting(mut self, max: usize) -> ThrottleLayer {
        self.config.policy.queue = Some(Arc::new(Queue::new(max)));
        self
    }

    /// Names this limit: the name is in every [`Throttled`](crate::Throttled)
    /// it sheds ([`label`](crate::Throttled::label)), in its `tracing`
    /// events, and in the default body of its HTTP 429s.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Tank};
    /// use fueltank_tower::{ThrottleLayer, Throttled};
    /// use tower::{Layer, Service, ServiceExt, service_fn};
    ///
    /// # futures::executor::block_on(async {
    /// let mut svc = ThrottleLayer::new(Tank::new(Rate::per_minute(1)?))
    ///     .reject()
    ///     .label("uploads")
    ///     .layer(service_fn(|()| async { Ok::<_, tower::BoxError>(()) }));
    /// svc.ready().await?.call(()).await?;
    /// let err = svc.ready().await?.call(()).await.unwrap_err();
    /// assert_eq!(err.downcast_ref::<Throttled>().unwrap().label(), Some("uploads"));
    /// # Ok::<(), tower::BoxError>(())
    /// # }).unwrap();
    /// ```
    pub fn label(mut self, label: impl Into<Arc<str>>) -> ThrottleLayer {
        self.config.policy.label = Some(label.into());
        self
    }

    /// Counts this layer's requests in `stats`: admitted, rejected, waited,
    /// and the waits (see [`Stats`]). Keep a clone of `stats` to read
    /// them; several layers may share one.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Tank};
    /// use fueltank_tower::{Stats, ThrottleLayer};
    /// use tower::{Layer, ServiceExt, service_fn};
    ///
    /// # futures::executor::block_on(async {
    /// let stats = Stats::new();
    /// let svc = ThrottleLayer::new(Tank::new(Rate::per_second(100)?))
    ///     .stats(stats.clone())
    ///     .layer(service_fn(|()| async { Ok::<_, tower::BoxError>(()) }));
    /// svc.oneshot(()).await?;
    /// assert_eq!(stats.admitted().total(), 1);
    /// # Ok::<(), tower::BoxError>(())
    /// # }).unwrap();
    /// ```
    pub fn stats(mut self, stats: Stats) -> ThrottleLayer {
        self.config.policy.stats = Some(stats);
        self
    }

    /// Reports every wait of at least `threshold` as a `tracing` event at
    /// level `INFO` (default: one second). See [the crate's
    /// events](crate#tracing-events).
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Tank};
    /// use fueltank_tower::ThrottleLayer;
    /// use std::time::Duration;
    ///
    /// let layer = ThrottleLayer::new(Tank::new(Rate::per_second(10)?))
    ///     .long_wait(Duration::from_millis(250));
    /// # let _ = layer;
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    #[cfg(feature = "tracing")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tracing")))]
    pub fn long_wait(mut self, threshold: Duration) -> ThrottleLayer {
        self.config.policy.long_wait = threshold;
        self
    }

    /// When to report an emission: at fuel time ([`EmitOn::Fuel`], the
    /// default) or when the response succeeds ([`EmitOn::Success`]).
    ///
    /// Emissions feed the monitor of the [`Throttle`] the layer was built
    /// from; a layer over a bare tank has none, so for it this changes
    /// nothing. Shed requests are never emitted.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Throttle};
    /// use fueltank_tower::{EmitOn, ThrottleLayer};
    /// use tower::{Layer, Service, ServiceExt, service_fn};
    ///
    /// # futures::executor::block_on(async {
    /// let throttle = Throttle::builder(Rate::per_second(1000)?).build()?;
    /// let mut svc = ThrottleLayer::new(throttle.clone())
    ///     .emit_on(EmitOn::Success)
    ///     .layer(service_fn(|x: u32| async move {
    ///         if x > 0 { Ok(x) } else { Err(tower::BoxError::from("zero")) }
    ///     }));
    /// svc.ready().await?.call(1).await?;
    /// assert!(svc.ready().await?.call(0).await.is_err());
    /// assert_eq!(throttle.total(), 1); // the failed one is not counted
    /// # Ok::<(), tower::BoxError>(())
    /// # }).unwrap();
    /// ```
    pub fn emit_on(mut self, when: EmitOn) -> ThrottleLayer {
        self.config.policy.emission.on = when;
        self
    }

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
        budget::tank(self.config.tank.as_ref()?)
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
        self.config.policy.emission.monitor.as_ref()
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

impl<S> Layer<S> for ThrottleLayer {
    type Service = ThrottleService<S>;

    fn layer(&self, inner: S) -> ThrottleService<S> {
        ThrottleService::from_config(inner, Arc::new(self.config.clone()))
    }
}
