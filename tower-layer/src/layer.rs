//! [`ThrottleLayer`]: wraps services so that every request spends fuel.

use std::sync::Arc;

use fueltank::{Monitor, Tank, Throttle};
use tower::Layer;

use crate::ThrottleService;
use crate::emit::EmitOn;
use crate::gate::{Config, Mode};

/// A Tower [`Layer`] that makes every request spend one fuel from a shared
/// [`Tank`], and counts it in a statistics [`Monitor`].
///
/// Built from a [`Throttle`] ([`new`](ThrottleLayer::new): its tank and its
/// monitor) or from a bare [`Tank`] ([`from_tank`](ThrottleLayer::from_tank):
/// no statistics).
///
/// By default a service waits for fuel in `poll_ready` (back-pressure),
/// holds it, and spends it in `call`. With [`reject`](ThrottleLayer::reject)
/// it sheds instead: `call` fails at once with [`Throttled`](crate::Throttled)
/// when there is no fuel. Every service the layer makes, and every clone of
/// them, draws on the one tank.
///
/// With the `http` feature, [`http`](ThrottleLayer::http) turns it into a
/// layer that answers `429 Too Many Requests` itself and adds the IETF
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
#[derive(Debug, Clone)]
pub struct ThrottleLayer {
    pub(crate) config: Config,
}

impl ThrottleLayer {
    /// A layer drawing on `throttle`'s tank, waiting for fuel, and counting
    /// every request let through in `throttle`'s monitor, at fuel time
    /// (see [`emit_on`](ThrottleLayer::emit_on)).
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
    pub fn new(throttle: Throttle) -> ThrottleLayer {
        ThrottleLayer {
            config: Config::new(throttle.tank().cloned(), throttle.monitor().cloned()),
        }
    }

    /// A layer drawing on `tank`, waiting for fuel, without statistics (a
    /// bare tank has no monitor; use [`new`](ThrottleLayer::new) with a
    /// [`Throttle`] for them).
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Tank};
    /// use fueltank_tower::ThrottleLayer;
    ///
    /// let tank = Tank::new("50/s".parse()?);
    /// let layer = ThrottleLayer::from_tank(tank.clone());
    /// assert_eq!(layer.tank().map(Tank::rate), Some(tank.rate()));
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn from_tank(tank: Tank) -> ThrottleLayer {
        ThrottleLayer {
            config: Config::new(Some(tank), None),
        }
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
    /// let mut svc = ThrottleLayer::from_tank(tank)
    ///     .reject()
    ///     .layer(service_fn(|()| async { Ok::<_, tower::BoxError>(()) }));
    /// svc.ready().await?.call(()).await?; // the one fuel
    /// let err = svc.ready().await?.call(()).await.unwrap_err();
    /// assert!(err.is::<Throttled>());
    /// # Ok::<(), tower::BoxError>(())
    /// # }).unwrap();
    /// ```
    pub fn reject(mut self) -> ThrottleLayer {
        self.config.mode = Mode::Reject;
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
        self.config.emission.on = when;
        self
    }

    /// The tank this layer draws on; `None` for a [`Throttle`] without a
    /// tank (unlimited fuel).
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Tank, Throttle};
    /// use fueltank_tower::ThrottleLayer;
    ///
    /// let layer = ThrottleLayer::from_tank(Tank::new(Rate::per_second(10)?));
    /// assert_eq!(layer.tank().map(Tank::level), Some(1));
    ///
    /// let unlimited = Throttle::builder(Rate::per_second(10)?).as_throttle(false).build()?;
    /// assert!(ThrottleLayer::new(unlimited).tank().is_none());
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn tank(&self) -> Option<&Tank> {
        self.config.tank.as_ref()
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
    /// let bare = ThrottleLayer::from_tank(Tank::new(Rate::per_second(10)?));
    /// assert!(bare.monitor().is_none());
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn monitor(&self) -> Option<&Monitor> {
        self.config.emission.monitor.as_ref()
    }
}

impl From<Throttle> for ThrottleLayer {
    /// [`ThrottleLayer::new`].
    fn from(throttle: Throttle) -> ThrottleLayer {
        ThrottleLayer::new(throttle)
    }
}

impl From<Tank> for ThrottleLayer {
    /// [`ThrottleLayer::from_tank`].
    fn from(tank: Tank) -> ThrottleLayer {
        ThrottleLayer::from_tank(tank)
    }
}

impl<S> Layer<S> for ThrottleLayer {
    type Service = ThrottleService<S>;

    fn layer(&self, inner: S) -> ThrottleService<S> {
        ThrottleService::from_config(inner, Arc::new(self.config.clone()))
    }
}
