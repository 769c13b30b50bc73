//! The one error type of the crate.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// What went wrong, and what would have been accepted.
///
/// Every fallible call of the crate returns this type. Bad input is always an
/// `Err`, never a panic, and the message names the accepted range.
///
/// # Examples
///
/// ```
/// use fueltank::{Error, Rate};
/// use std::time::Duration;
///
/// let err = Rate::new(0, Duration::from_secs(1)).unwrap_err();
/// assert_eq!(err, Error::ZeroCount);
/// assert!(err.to_string().contains("at least 1"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A rate was given `max_n = 0`.
    ZeroCount,
    /// A rate was given `per = 0`.
    ZeroPeriod,
    /// `per / max_n` is below one nanosecond, the resolution of the clock.
    IntervalTooShort {
        /// The requested count.
        max_n: u64,
        /// The requested period.
        per: Duration,
    },
    /// `per` does not fit in 2^64 nanoseconds (about 584 years).
    PeriodTooLong {
        /// The requested period.
        per: Duration,
    },
    /// A rate string could not be parsed.
    ParseRate {
        /// The string as given.
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `initial` is larger than the tank can ever hold.
    InitialOverCapacity {
        /// The requested initial fuel.
        initial: u64,
        /// The capacity of the tank under its hardcap.
        capacity: u64,
    },
    /// More fuel was asked for at once than the tank can ever hold, so the
    /// request could never be granted.
    ExceedsCapacity {
        /// The requested amount.
        requested: u64,
        /// The capacity of the tank under its hardcap.
        capacity: u64,
    },
    /// A duration option was zero or out of range.
    InvalidDuration {
        /// Which option.
        option: &'static str,
        /// The value given.
        value: Duration,
        /// What is accepted.
        accepted: &'static str,
    },
    /// A count option was out of range.
    InvalidCount {
        /// Which option.
        option: &'static str,
        /// The value given.
        value: u64,
        /// What is accepted.
        accepted: &'static str,
    },
    /// An emission was reported by hand while `auto_emit` is on, so it would
    /// have been counted twice.
    AutoEmitOn,
    /// A shared-memory file could not be created, opened or mapped, or is
    /// not a fueltank file of this version.
    SharedMemory {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A tank or monitor in shared memory exists with other parameters than
    /// those asked for: it is not shared silently.
    SharedMismatch {
        /// The file.
        path: PathBuf,
        /// Which parameter differs.
        what: &'static str,
        /// Its value in the file.
        found: String,
        /// The value asked for.
        asked: String,
    },
    /// A key a [`KeyedBudget`](crate::KeyedBudget) cannot hold (see
    /// [`KeyedBudget::check`](crate::KeyedBudget::check)).
    InvalidKey {
        /// Why not, and what is accepted (the whole message).
        reason: String,
    },
    /// An option this kind of tank does not support.
    Unsupported {
        /// What was asked.
        what: &'static str,
        /// What is supported instead.
        accepted: &'static str,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::ZeroCount => f.write_str("rate count max_n is 0; it must be at least 1"),
            Error::ZeroPeriod => f.write_str("rate period is 0; it must be at least 1 ns"),
            Error::IntervalTooShort { max_n, per } => write!(
                f,
                "rate {max_n} per {per:?} asks for more than one grant per nanosecond; \
                 per / max_n must be at least 1 ns (at most {} per {per:?})",
                per.as_nanos()
            ),
            Error::PeriodTooLong { per } => write!(
                f,
                "rate period {per:?} is too long; it must be at most 2^64 ns (about 584 years)"
            ),
            Error::ParseRate { input, reason } => write!(
                f,
                "cannot parse rate {input:?}: {reason}; expected COUNT/[AMOUNT]UNIT \
                 (e.g. \"100/s\", \"5/250ms\", \"10/1.5s\"), UNIT one of \
                 ns us µs ms s sec m min h hr d, or spelled out (second, minutes, ...)"
            ),
            Error::InitialOverCapacity { initial, capacity } => write!(
                f,
                "initial fuel {initial} exceeds the tank's capacity {capacity}; \
                 it must be between 0 and {capacity}"
            ),
            Error::ExceedsCapacity {
                requested,
                capacity,
            } => write!(
                f,
                "{requested} fuel requested at once, but the tank holds at most {capacity}; \
                 ask for at most {capacity} at a time, or use a larger hardcap"
            ),
            Error::InvalidDuration {
                option,
                value,
                accepted,
            } => write!(
                f,
                "{option} of {value:?} is not accepted; it must be {accepted}"
            ),
            Error::InvalidCount {
                option,
                value,
                accepted,
            } => write!(
                f,
                "{option} of {value} is not accepted; it must be {accepted}"
            ),
            Error::AutoEmitOn => f.write_str(
                "emit called while auto_emit is on, so every fuel taken is already counted; \
                 to report emissions yourself, the throttle must be built with auto_emit(false)",
            ),
            Error::SharedMemory { path, reason } => {
                write!(f, "shared memory {}: {reason}", path.display())
            }
            Error::SharedMismatch {
                path,
                what,
                found,
                asked,
            } => write!(
                f,
                "shared memory {} holds {what} {found}, not {asked}: every process sharing \
                 it must ask for the same, or remove the file (remove_shared_memory) once \
                 no process uses it, to start anew",
                path.display()
            ),
            Error::InvalidKey { reason } => f.write_str(reason),
            Error::Unsupported { what, accepted } => {
                write!(f, "{what} is not supported; {accepted}")
            }
        }
    }
}

impl std::error::Error for Error {}
