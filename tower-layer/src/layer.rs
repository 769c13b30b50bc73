//! [`ThrottleLayer`]: wraps services so that every request spends fuel.

use fueltank::Tank;
use tower::Layer;

use crate::ThrottleService;
use crate::emit::EmitOn;
use crate::gate::{Config, Mode};

/// A Tower [`Layer`] that makes every request spend one fuel from a shared
/// [`Tank`].
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
/// use fueltank::{Rate, Tank};
/// use fueltank_tower::ThrottleLayer;
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
///
/// # futures::executor::block_on(async {
/// let tank = Tank::new(Rate::per_second(100)?);
/// let svc = ServiceBuilder::new()
///     .layer(ThrottleLayer::from_tank(tank))
///     .service(service_fn(|name: String| async move {
///         Ok::<_, tower::BoxError>(format!("hello, {name}"))
///     }));
/// assert_eq!(svc.oneshot("tank".to_string()).await?, "hello, tank");
/// # Ok::<(), tower::BoxError>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct ThrottleLayer {
    pub(crate) config: Config,
}

impl ThrottleLayer {
    /// A layer drawing on `tank`, waiting for fuel, emitting at fuel time.
    ///
    /// A bare tank has no statistics monitor, so emissions go nowhere; the
    /// constructor from a `fueltank::Throttle` (a tank with its monitor) is
    /// `ThrottleLayer::new`, added once `Throttle` is released.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Tank};
    /// use fueltank_tower::ThrottleLayer;
    ///
    /// let tank = Tank::new("50/s".parse()?);
    /// let layer = ThrottleLayer::from_tank(tank.clone());
    /// assert_eq!(layer.tank().rate(), tank.rate());
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn from_tank(tank: Tank) -> ThrottleLayer {
        ThrottleLayer {
            config: Config::new(tank),
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
    /// Emissions feed the statistics monitor of a `fueltank::Throttle`; a
    /// layer over a bare tank has none, so for it this changes nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Tank};
    /// use fueltank_tower::{EmitOn, ThrottleLayer};
    ///
    /// let layer = ThrottleLayer::from_tank(Tank::new(Rate::per_second(10)?))
    ///     .emit_on(EmitOn::Success);
    /// # let _ = layer;
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn emit_on(mut self, when: EmitOn) -> ThrottleLayer {
        self.config.emit_on = when;
        self
    }

    /// The tank this layer draws on.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Tank};
    /// use fueltank_tower::ThrottleLayer;
    ///
    /// let layer = ThrottleLayer::from_tank(Tank::new(Rate::per_second(10)?));
    /// assert_eq!(layer.tank().level(), 1);
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn tank(&self) -> &Tank {
        &self.config.tank
    }

    #[cfg(test)]
    pub(crate) fn with_emitter(mut self, emitter: crate::emit::Emitter) -> ThrottleLayer {
        self.config.emitter = emitter;
        self
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
        ThrottleService::from_config(inner, self.config.clone())
    }
}
