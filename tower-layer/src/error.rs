//! [`Throttled`]: the error of a request shed for want of fuel;
//! [`Unavailable`]: the error of a request refused because its budget's
//! store is down; and [`Scope`], which kind of limit refused it.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

pub use fueltank::{Scope, Unavailable};

/// A request was shed because the tank had no fuel for it in time.
///
/// Returned (boxed into [`tower::BoxError`]) by a
/// [`ThrottleService`](crate::ThrottleService) in
/// [reject mode](crate::ThrottleLayer::reject), or in wait mode when the
/// fuel cannot come within [`max_wait`](crate::ThrottleLayer::max_wait);
/// find it by downcasting. It says:
///
/// - [`retry_after`](Throttled::retry_after): how long a newcomer would
///   have waited for fuel at that moment, from the tank's own schedule;
/// - [`scope`](Throttled::scope): whether the global limit of a
///   [`ThrottleLayer`](crate::ThrottleLayer) or a per-key limit of a
///   [`KeyedThrottleLayer`](crate::KeyedThrottleLayer) shed it;
/// - [`label`](Throttled::label): the name given to that limit with
///   `label(..)` on the layer, if any;
/// - [`key`](Throttled::key): the key, as text, if the keyed layer was
///   asked to [`report_key`](crate::KeyedThrottleLayer::report_key).
///
/// # Examples
///
/// ```
/// use fueltank::{Rate, Tank, clock::ManualClock};
/// use fueltank_tower::{Scope, Throttled, ThrottleLayer};
/// use std::time::Duration;
/// use tower::{Layer, Service, ServiceExt, service_fn};
///
/// # futures::executor::block_on(async {
/// let clock = ManualClock::new();
/// let tank = Tank::builder(Rate::per_second(4)?).clock(clock).build()?;
/// let mut svc = ThrottleLayer::new(tank)
///     .reject()
///     .label("api")
///     .layer(service_fn(|()| async { Ok::<_, tower::BoxError>("done") }));
///
/// assert_eq!(svc.ready().await?.call(()).await?, "done");
/// let err = svc.ready().await?.call(()).await.unwrap_err();
/// let throttled = err.downcast_ref::<Throttled>().expect("shed for want of fuel");
/// assert_eq!(throttled.retry_after(), Duration::from_millis(250));
/// assert_eq!(throttled.scope(), Scope::Global);
/// assert_eq!(throttled.label(), Some("api"));
/// # Ok::<(), tower::BoxError>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Throttled {
    retry_after: Duration,
    scope: Scope,
    label: Option<Arc<str>>,
    key: Option<Arc<str>>,
}

impl Throttled {
    /// A `Throttled` error saying the request may be retried after
    /// `retry_after`, from the global limit, without a label. The layers
    /// make these; this is for tests and for services that shed load
    /// themselves.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank_tower::{Scope, Throttled};
    /// use std::time::Duration;
    ///
    /// let err = Throttled::new(Duration::from_millis(40));
    /// assert_eq!(err.retry_after(), Duration::from_millis(40));
    /// assert_eq!(err.scope(), Scope::Global);
    /// assert_eq!(err.label(), None);
    /// ```
    pub const fn new(retry_after: Duration) -> Throttled {
        Throttled {
            retry_after,
            scope: Scope::Global,
            label: None,
            key: None,
        }
    }

    /// This error, naming the limit that shed the request.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank_tower::Throttled;
    /// use std::time::Duration;
    ///
    /// let err = Throttled::new(Duration::from_secs(1)).with_label("uploads");
    /// assert_eq!(err.label(), Some("uploads"));
    /// ```
    pub fn with_label(mut self, label: impl Into<Arc<str>>) -> Throttled {
        self.label = Some(label.into());
        self
    }

    /// This error, from a per-key limit, for the key written `key`
    /// (the scope becomes [`Scope::Keyed`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank_tower::{Scope, Throttled};
    /// use std::time::Duration;
    ///
    /// let err = Throttled::new(Duration::from_secs(1)).with_key("ada");
    /// assert_eq!(err.key(), Some("ada"));
    /// assert_eq!(err.scope(), Scope::Keyed);
    /// ```
    pub fn with_key(mut self, key: impl Into<Arc<str>>) -> Throttled {
        self.scope = Scope::Keyed;
        self.key = Some(key.into());
        self
    }

    /// The error of a limit of `scope` named `label`, for `key`.
    pub(crate) fn from_parts(
        retry_after: Duration,
        scope: Scope,
        label: Option<Arc<str>>,
        key: Option<Arc<str>>,
    ) -> Throttled {
        Throttled {
            retry_after,
            scope,
            label,
            key,
        }
    }

    /// How long a request arriving when this one was shed would have waited
    /// for fuel: retrying after this much time finds fuel, unless others
    /// take it first.
    ///
    /// It is the tank's own schedule ([`Tank::wait_time`](fueltank::Tank::wait_time)),
    /// exact to the nanosecond. While the tank is paused the wait is
    /// unknown; then it is one interval of the tank's rate.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank_tower::Throttled;
    /// use std::time::Duration;
    ///
    /// assert_eq!(Throttled::new(Duration::from_secs(2)).retry_after(), Duration::from_secs(2));
    /// ```
    pub const fn retry_after(&self) -> Duration {
        self.retry_after
    }

    /// Which kind of limit shed the request: the global limit of a
    /// [`ThrottleLayer`](crate::ThrottleLayer), or the request's key's
    /// limit in a [`KeyedThrottleLayer`](crate::KeyedThrottleLayer).
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{KeyedTank, Rate};
    /// use fueltank_tower::{KeyedThrottleLayer, Scope, Throttled};
    /// use fueltank_tower::key::key_fn;
    /// use tower::{Layer, Service, ServiceExt, service_fn};
    ///
    /// # futures::executor::block_on(async {
    /// let mut svc = KeyedThrottleLayer::new(KeyedTank::new(Rate::per_minute(1)?), key_fn(|k: &u8| Ok(*k)))
    ///     .reject()
    ///     .layer(service_fn(|_: u8| async { Ok::<_, tower::BoxError>(()) }));
    /// svc.ready().await?.call(1).await?;
    /// let err = svc.ready().await?.call(1).await.unwrap_err();
    /// assert_eq!(err.downcast_ref::<Throttled>().unwrap().scope(), Scope::Keyed);
    /// # Ok::<(), tower::BoxError>(())
    /// # }).unwrap();
    /// ```
    pub const fn scope(&self) -> Scope {
        self.scope
    }

    /// The name of the limit that shed the request, as given to the
    /// layer's `label(..)` ([`ThrottleLayer::label`](crate::ThrottleLayer::label),
    /// [`KeyedThrottleLayer::label`](crate::KeyedThrottleLayer::label));
    /// `None` if it has none.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank_tower::Throttled;
    /// use std::time::Duration;
    ///
    /// assert_eq!(Throttled::new(Duration::ZERO).with_label("per-ip").label(), Some("per-ip"));
    /// ```
    pub fn label(&self) -> Option<&str> {
        self.label.as_deref()
    }

    /// The key whose limit shed the request, written with its `Display`,
    /// if the keyed layer was asked to
    /// [`report_key`](crate::KeyedThrottleLayer::report_key); `None`
    /// otherwise (keys such as client addresses are personal data: they
    /// are not copied into errors and logs unless asked for).
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{KeyedTank, Rate};
    /// use fueltank_tower::{KeyedThrottleLayer, Throttled};
    /// use fueltank_tower::key::key_fn;
    /// use tower::{Layer, Service, ServiceExt, service_fn};
    ///
    /// # futures::executor::block_on(async {
    /// let mut svc = KeyedThrottleLayer::new(KeyedTank::new(Rate::per_minute(1)?), key_fn(|k: &u32| Ok(*k)))
    ///     .reject()
    ///     .report_key()
    ///     .layer(service_fn(|_: u32| async { Ok::<_, tower::BoxError>(()) }));
    /// svc.ready().await?.call(42).await?;
    /// let err = svc.ready().await?.call(42).await.unwrap_err();
    /// assert_eq!(err.downcast_ref::<Throttled>().unwrap().key(), Some("42"));
    /// # Ok::<(), tower::BoxError>(())
    /// # }).unwrap();
    /// ```
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }
}

impl fmt::Display for Throttled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rate limited by the {} limit", self.scope)?;
        if let Some(label) = &self.label {
            write!(f, " `{label}`")?;
        }
        if let Some(key) = &self.key {
            write!(f, " for key {key}")?;
        }
        write!(
            f,
            ": no fuel for this request in time; retry after {:?}",
            self.retry_after
        )
    }
}

impl std::error::Error for Throttled {}

/// Why a layer refused a request: no fuel in time, or the store down.
#[derive(Debug)]
pub enum Refusal {
    Throttled(Throttled),
    Unavailable(Unavailable),
}

impl Refusal {
    /// The error the plain services fail with.
    pub(crate) fn boxed(self) -> tower::BoxError {
        match self {
            Refusal::Throttled(throttled) => Box::new(throttled),
            Refusal::Unavailable(unavailable) => Box::new(unavailable),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_the_limit_and_the_key() {
        let plain = Throttled::new(Duration::from_millis(250));
        assert_eq!(
            plain.to_string(),
            "rate limited by the global limit: no fuel for this request in time; \
             retry after 250ms"
        );
        let keyed = plain.with_label("per-ip").with_key("192.0.2.7");
        assert_eq!(
            keyed.to_string(),
            "rate limited by the keyed limit `per-ip` for key 192.0.2.7: no fuel for \
             this request in time; retry after 250ms"
        );
    }
}
