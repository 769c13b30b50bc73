//! [`Throttled`]: the error of a request shed for want of fuel.

use std::fmt;
use std::time::Duration;

/// A request was shed because the tank had no fuel for it.
///
/// Returned (boxed into [`tower::BoxError`]) by a
/// [`ThrottleService`](crate::ThrottleService) in
/// [reject mode](crate::ThrottleLayer::reject); find it by downcasting.
/// [`retry_after`](Throttled::retry_after) is how long a newcomer would
/// have waited for fuel at that moment, from the tank's own schedule.
///
/// # Examples
///
/// ```
/// use fueltank::{Rate, Tank, clock::ManualClock};
/// use fueltank_tower::{Throttled, ThrottleLayer};
/// use std::time::Duration;
/// use tower::{Layer, Service, ServiceExt, service_fn};
///
/// # futures::executor::block_on(async {
/// let clock = ManualClock::new();
/// let tank = Tank::builder(Rate::per_second(4)?).clock(clock).build()?;
/// let mut svc = ThrottleLayer::from_tank(tank)
///     .reject()
///     .layer(service_fn(|()| async { Ok::<_, tower::BoxError>("done") }));
///
/// assert_eq!(svc.ready().await?.call(()).await?, "done");
/// let err = svc.ready().await?.call(()).await.unwrap_err();
/// let throttled = err.downcast_ref::<Throttled>().expect("shed for want of fuel");
/// assert_eq!(throttled.retry_after(), Duration::from_millis(250));
/// # Ok::<(), tower::BoxError>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Throttled {
    retry_after: Duration,
}

impl Throttled {
    /// A `Throttled` error saying the request may be retried after
    /// `retry_after`. The layer makes these; this is for tests and for
    /// services that shed load themselves.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank_tower::Throttled;
    /// use std::time::Duration;
    ///
    /// let err = Throttled::new(Duration::from_millis(40));
    /// assert_eq!(err.retry_after(), Duration::from_millis(40));
    /// ```
    pub const fn new(retry_after: Duration) -> Throttled {
        Throttled { retry_after }
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
}

impl fmt::Display for Throttled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rate limited: no fuel for this request now; retry after {:?}",
            self.retry_after
        )
    }
}

impl std::error::Error for Throttled {}
