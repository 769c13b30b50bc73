//! Where tanks and monitors get the time.
//!
//! A [`Clock`] tells the time as a [`std::time::Instant`]. Two are provided:
//!
//! - [`MonotonicClock`], the default: the processor's invariant time-stamp
//!   counter, calibrated against `Instant`, where there is one (x86-64), and
//!   `Instant::now()` elsewhere. Readings may step back by a few nanoseconds
//!   between cores; every computation in the crate tolerates that.
//! - [`ManualClock`]: time that only moves when you call
//!   [`advance`](ManualClock::advance). It also drives the timers of every
//!   tank and monitor built on it, so tests of throttled code are exact and
//!   instant.
//!
//! Any other `Clock` may be given to a builder; its tanks then sleep on real
//! timers for the durations the clock computes, so it must run at the speed of
//! real time.
//!
//! Timers fire late: [`timer_lateness`] measures by how much on this system
//! (what a tank's calibration uses, see
//! [`TankBuilder::auto_calibrate`](crate::TankBuilder::auto_calibrate)), and
//! [`next_timer_correction`] is the rule by which a tank's correction
//! follows the lateness its timer shows.

mod manual;
mod monotonic;
#[cfg(feature = "tokio")]
mod tokio;

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

pub use crate::calibrate::{next_timer_correction, timer_lateness};
pub use manual::ManualClock;
pub(crate) use manual::ManualTimer;
pub use monotonic::MonotonicClock;
#[cfg(feature = "tokio")]
pub use tokio::TokioClock;
#[cfg(feature = "tokio")]
pub(crate) use tokio::TokioTimer;

/// A source of time for tanks, timers and monitors.
///
/// # Examples
///
/// ```
/// use fueltank::clock::{Clock, ManualClock};
/// use std::time::Duration;
///
/// let clock = ManualClock::new();
/// let start = clock.now();
/// clock.advance(Duration::from_millis(5));
/// assert_eq!(clock.now() - start, Duration::from_millis(5));
/// ```
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current time.
    fn now(&self) -> Instant;
}

/// Internal clock readings are nanoseconds since the first reading of the
/// process, plus this offset, so that a tank may place its epoch up to 2^44 ns
/// (4.9 hours) before the first reading without going below zero.
pub(crate) const NS_OFFSET: u64 = 1 << 44;

fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

/// `instant` as an internal reading.
pub(crate) fn ns_of(instant: Instant) -> u64 {
    let base = base();
    match instant.checked_duration_since(base) {
        Some(after) => NS_OFFSET.saturating_add(saturating_ns(after)),
        None => NS_OFFSET.saturating_sub(saturating_ns(base - instant)),
    }
}

/// An internal reading as an `Instant`.
pub(crate) fn instant_of(ns: u64) -> Instant {
    let base = base();
    if ns >= NS_OFFSET {
        base.checked_add(Duration::from_nanos(ns - NS_OFFSET))
            .unwrap_or(base)
    } else {
        base.checked_sub(Duration::from_nanos(NS_OFFSET - ns))
            .unwrap_or(base)
    }
}

pub(crate) fn saturating_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The clock of a tank or monitor, resolved once at build time so the hot
/// path is a predictable branch rather than a virtual call.
#[derive(Clone, Debug, Default)]
pub(crate) enum ClockSource {
    #[default]
    Monotonic,
    Manual(ManualClock),
    Custom(Arc<dyn Clock>),
    /// The host's monotonic clock, in its own nanoseconds: the same in
    /// every process, for state in shared memory.
    #[cfg(feature = "shared-memory")]
    Host,
    /// `tokio::time`, paused time included.
    #[cfg(feature = "tokio")]
    Tokio,
}

#[cfg(feature = "tokio")]
fn is_tokio(any: &dyn std::any::Any) -> bool {
    any.is::<TokioClock>()
}

#[cfg(not(feature = "tokio"))]
fn is_tokio(_: &dyn std::any::Any) -> bool {
    false
}

impl ClockSource {
    pub(crate) fn from_clock<C: Clock>(clock: C) -> ClockSource {
        let any: &dyn std::any::Any = &clock;
        if let Some(manual) = any.downcast_ref::<ManualClock>() {
            ClockSource::Manual(manual.clone())
        } else if any.is::<MonotonicClock>() {
            ClockSource::Monotonic
        } else if cfg!(feature = "tokio") && is_tokio(any) {
            #[cfg(feature = "tokio")]
            return ClockSource::Tokio;
            #[cfg(not(feature = "tokio"))]
            unreachable!()
        } else {
            ClockSource::Custom(Arc::new(clock))
        }
    }

    /// The current internal reading, in nanoseconds.
    #[inline(always)]
    pub(crate) fn now_ns(&self) -> u64 {
        match self {
            ClockSource::Monotonic => monotonic::now_ns(),
            ClockSource::Manual(clock) => clock.now_ns(),
            ClockSource::Custom(clock) => ns_of(clock.now()),
            #[cfg(feature = "shared-memory")]
            ClockSource::Host => crate::shm::host_now_ns(),
            #[cfg(feature = "tokio")]
            ClockSource::Tokio => ns_of(::tokio::time::Instant::now().into_std()),
        }
    }

    /// Makes the clock ready to read at full speed (calibrates the
    /// counter of the default clock, once per process).
    pub(crate) fn warm_up(&self) {
        if matches!(self, ClockSource::Monotonic) {
            monotonic::warm_up();
        }
    }

    /// Whether the clock may stand still while its timers wait (a manual
    /// clock, or tokio's paused time): then a timer correction, which
    /// spins until a due time, must not be used.
    pub(crate) fn may_stand_still(&self) -> bool {
        match self {
            ClockSource::Manual(_) => true,
            #[cfg(feature = "tokio")]
            ClockSource::Tokio => true,
            _ => false,
        }
    }

    /// Whether the clock is not real time: one that may stand still, or
    /// the user's.
    pub(crate) fn stands_still_or_custom(&self) -> bool {
        self.may_stand_still() || matches!(self, ClockSource::Custom(_))
    }

    pub(crate) fn manual(&self) -> Option<&ManualClock> {
        match self {
            ClockSource::Manual(clock) => Some(clock),
            _ => None,
        }
    }
}
