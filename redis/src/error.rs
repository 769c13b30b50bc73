//! The one error type of the crate.

use std::fmt;
use std::time::Duration;

/// What went wrong, and what would have been accepted.
///
/// Every fallible call of the crate returns this type. Bad input is an `Err`,
/// never a panic; connection URLs are printed without their password.
///
/// # Examples
///
/// ```
/// use fueltank_redis::{Error, RedisStore};
///
/// # futures::executor::block_on(async {
/// let err = RedisStore::connect("http://localhost").await.unwrap_err();
/// assert!(matches!(err, Error::InvalidUrl { .. }));
/// assert!(err.to_string().contains("redis://"));
/// # });
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The connection URL could not be used.
    InvalidUrl {
        /// The URL as given, without its password.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No connection to the server could be made in time.
    Unreachable {
        /// The URL, without its password.
        url: String,
        /// Why the last attempt failed.
        reason: String,
    },
    /// A round trip to Redis took longer than the store's timeout.
    Timeout {
        /// The timeout that passed.
        after: Duration,
    },
    /// Redis answered with an error, or the connection failed mid-call.
    Redis {
        /// What Redis or the connection said.
        reason: String,
    },
    /// A tank of this name is stored in Redis with another rate, hardcap
    /// or hold: two different limits never share one name. Returned when
    /// building, and by the waits that can fail when the state a built
    /// tank used was lost and made again by another limit (see the crate
    /// docs, *One name, one limit*).
    Mismatch {
        /// The tank's name.
        name: String,
        /// The parameters stored in Redis.
        stored: String,
        /// The parameters this builder or tank has.
        given: String,
    },
    /// A tank name that cannot be used as part of a Redis key.
    InvalidName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A key of a keyed tank whose text is too long to be stored.
    InvalidKey {
        /// The length of the key's text, in bytes.
        len: usize,
        /// The most accepted.
        max: usize,
    },
    /// A rate this crate cannot keep in Redis exactly.
    UnsupportedRate {
        /// The rate, as text.
        rate: String,
        /// What is accepted.
        accepted: &'static str,
    },
    /// An option was out of range.
    InvalidOption {
        /// Which option.
        option: &'static str,
        /// The value given.
        value: String,
        /// What is accepted.
        accepted: &'static str,
    },
    /// An error of `fueltank` itself, such as a rate that does not parse.
    Fueltank(fueltank::Error),
    /// More fuel was asked for at once than the tank can ever grant at once.
    ExceedsCapacity {
        /// The requested amount.
        requested: u64,
        /// The most the tank grants at once.
        capacity: u64,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidUrl { url, reason } => write!(
                f,
                "cannot use Redis URL {url:?}: {reason}; expected redis://[[USER]:PASSWORD@]HOST[:PORT][/DB] \
                 or redis+unix:///PATH"
            ),
            Error::Unreachable { url, reason } => write!(
                f,
                "cannot connect to Redis at {url:?}: {reason}; check that the server runs and \
                 the URL's host and port are right, or raise the store's connect_timeout"
            ),
            Error::Timeout { after } => write!(
                f,
                "Redis did not answer within the store's timeout of {after:?}; \
                 a slower server needs a larger RedisStoreBuilder::timeout"
            ),
            Error::Redis { reason } => write!(f, "Redis call failed: {reason}"),
            Error::Mismatch {
                name,
                stored,
                given,
            } => write!(
                f,
                "tank {name:?} is stored in Redis as {stored}, but this instance has {given}; \
                 build it with the stored parameters, use another name, or change them for every \
                 instance with set_rate"
            ),
            Error::InvalidName { name, reason } => write!(
                f,
                "tank name {name:?} is not accepted: {reason}; a name must be 1 to {MAX_NAME} \
                 bytes with no control characters"
            ),
            Error::InvalidKey { len, max } => write!(
                f,
                "a key whose text is {len} bytes long is not accepted; keys of a keyed tank \
                 must be at most {max} bytes as text"
            ),
            Error::UnsupportedRate { rate, accepted } => {
                write!(f, "rate {rate} cannot be kept in Redis: {accepted}")
            }
            Error::InvalidOption {
                option,
                value,
                accepted,
            } => write!(
                f,
                "{option} of {value} is not accepted; it must be {accepted}"
            ),
            Error::Fueltank(err) => err.fmt(f),
            Error::ExceedsCapacity {
                requested,
                capacity,
            } => write!(
                f,
                "{requested} fuel requested at once, but this global tank grants at most \
                 {capacity} at once; ask for at most {capacity} at a time"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Fueltank(err) => Some(err),
            _ => None,
        }
    }
}

/// So that `"100/s".parse()?` works where this crate's errors are returned.
///
/// # Examples
///
/// ```
/// fn rate() -> Result<fueltank::Rate, fueltank_redis::Error> {
///     Ok("10/fortnight".parse()?)
/// }
/// let err = rate().unwrap_err();
/// assert!(matches!(err, fueltank_redis::Error::Fueltank(_)));
/// assert!(err.to_string().contains("unknown"));
/// ```
impl From<fueltank::Error> for Error {
    fn from(err: fueltank::Error) -> Error {
        Error::Fueltank(err)
    }
}

/// The longest tank name, in bytes.
pub(crate) const MAX_NAME: usize = 200;

/// `url` with the password of its user part replaced by `***`.
pub(crate) fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_string();
    };
    let user = &rest[..at];
    let user = match user.find(':') {
        Some(colon) => format!("{}:***", &user[..colon]),
        None => "***".to_string(),
    };
    format!("{}{}{}", &url[..scheme_end + 3], user, &rest[at..])
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(redact("redis://:secret@host/0"), "redis://:***@host/0");
        assert_eq!(redact("redis://me:secret@host"), "redis://me:***@host");
        assert_eq!(redact("redis://secret@host"), "redis://***@host");
        assert_eq!(redact("nonsense"), "nonsense");
    }
}
