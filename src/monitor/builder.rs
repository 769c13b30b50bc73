//! [`MonitorBuilder`].

use std::time::Duration;

use super::Monitor;
use crate::Error;
use crate::clock::{Clock, ClockSource, saturating_ns};

/// The shortest refresh or window accepted.
pub(crate) const MIN_PERIOD: Duration = Duration::from_micros(1);
/// The longest refresh or window accepted: a year.
pub(crate) const MAX_PERIOD: Duration = Duration::from_secs(365 * 24 * 3600);
pub(crate) const PERIOD_ACCEPTED: &str = "between 1 µs and 365 days";

pub(crate) const DEFAULT_REFRESH: Duration = Duration::from_millis(10);
pub(crate) const DEFAULT_WINDOW: Duration = Duration::from_secs(1);

/// Checks a refresh or window option.
pub(crate) fn check_period(option: &'static str, value: Duration) -> Result<u64, Error> {
    if (MIN_PERIOD..=MAX_PERIOD).contains(&value) {
        Ok(saturating_ns(value))
    } else {
        Err(Error::InvalidDuration {
            option,
            value,
            accepted: PERIOD_ACCEPTED,
        })
    }
}

/// Chooses the refresh, the trailing window and the clock of a [`Monitor`].
///
/// # Examples
///
/// ```
/// use fueltank::{Error, Monitor};
/// use std::time::Duration;
///
/// let monitor = Monitor::builder().window(Duration::from_secs(10)).build()?;
/// let err = Monitor::builder().refresh(Duration::ZERO).build().unwrap_err();
/// assert!(matches!(err, Error::InvalidDuration { option: "refresh", .. }));
/// # Ok::<(), fueltank::Error>(())
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until built"]
pub struct MonitorBuilder {
    refresh: Duration,
    window: Duration,
    clock: ClockSource,
}

impl MonitorBuilder {
    pub(crate) fn new() -> MonitorBuilder {
        MonitorBuilder {
            refresh: DEFAULT_REFRESH,
            window: DEFAULT_WINDOW,
            clock: ClockSource::default(),
        }
    }

    /// How often [`snapshots`](Monitor::snapshots) yields; 10 ms by
    /// default (the seed's `rf_rate`). Accepted: 1 µs to 365 days.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::Monitor;
    /// use std::time::Duration;
    ///
    /// let monitor = Monitor::builder().refresh(Duration::from_millis(250)).build()?;
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn refresh(mut self, refresh: Duration) -> MonitorBuilder {
        self.refresh = refresh;
        self
    }

    /// The trailing window of [`latest`](Monitor::latest); 1 s by default.
    /// Accepted: 1 µs to 365 days.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::Monitor;
    /// use std::time::Duration;
    ///
    /// let monitor = Monitor::builder().window(Duration::from_secs(60)).build()?;
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn window(mut self, window: Duration) -> MonitorBuilder {
        self.window = window;
        self
    }

    /// The clock; [`MonotonicClock`](crate::clock::MonotonicClock) by
    /// default. A [`ManualClock`](crate::clock::ManualClock) also drives the
    /// timer of [`snapshots`](Monitor::snapshots).
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Monitor, clock::ManualClock};
    /// use std::time::Duration;
    ///
    /// let clock = ManualClock::new();
    /// let monitor = Monitor::builder().clock(clock.clone()).build()?;
    /// clock.advance(Duration::from_secs(3));
    /// assert_eq!(monitor.runtime(), Duration::from_secs(3));
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn clock(mut self, clock: impl Clock) -> MonitorBuilder {
        self.clock = ClockSource::from_clock(clock);
        self
    }

    pub(crate) fn clock_source(mut self, clock: ClockSource) -> MonitorBuilder {
        self.clock = clock;
        self
    }

    /// Builds the monitor; it is running from now.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidDuration`] if the refresh or the window is not
    /// between 1 µs and 365 days.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::Monitor;
    /// use std::time::Duration;
    ///
    /// let err = Monitor::builder().window(Duration::ZERO).build().unwrap_err();
    /// assert_eq!(
    ///     err.to_string(),
    ///     "window of 0ns is not accepted; it must be between 1 µs and 365 days"
    /// );
    /// ```
    pub fn build(self) -> Result<Monitor, Error> {
        let refresh = check_period("refresh", self.refresh)?;
        let window = check_period("window", self.window)?;
        Ok(Monitor::from_parts(self.clock, window, refresh))
    }

    /// Builds with the defaults, which are valid.
    pub(crate) fn build_unchecked(self) -> Monitor {
        Monitor::from_parts(
            self.clock,
            saturating_ns(self.window),
            saturating_ns(self.refresh),
        )
    }
}
