//! What a layer's services answer: the one place where the plain layers
//! and the HTTP layers differ. A request that is not let through fails with
//! an error ([`Errors`]), or gets an HTTP response with `RateLimit` headers
//! (`http::Responses`, feature `http`); the same two services serve both.

use tower::BoxError;

use crate::budget::{KeyedShared, Shared};
use crate::error::Refusal;
use crate::key::KeyError;

/// How a layer's services answer (sealed): [`Errors`], or
/// `http::Responses`. `Stamp` is what a response let through carries from
/// `call` to its future (the HTTP headers; nothing for [`Errors`]).
pub trait Answer: Clone {
    /// What the response to a request carries: the budget's state behind
    /// the HTTP headers, or nothing.
    #[doc(hidden)]
    type Stamp;

    /// The stamp of a response drawn on `budget` (`None`: unlimited).
    #[doc(hidden)]
    fn stamp(&self, budget: Option<&Shared>) -> Self::Stamp;

    /// The stamp of a response drawn on `key`'s budget.
    #[doc(hidden)]
    fn stamp_key<K: 'static>(&self, keyed: &KeyedShared<K>, key: &K) -> Self::Stamp;
}

/// A service's output: `Result<T, E>` (for [`Respond`] to name `E`).
pub trait Outcome {
    /// The error.
    type Err;
}

impl<T, E> Outcome for Result<T, E> {
    type Err = E;
}

/// How a layer's services turn `O`, the inner service's output, and the
/// requests they refuse, into their own output (sealed).
pub trait Respond<O: Outcome>: Answer {
    /// The service's response.
    type Response;
    /// The service's error.
    type Error;

    /// The answer to a request refused.
    #[doc(hidden)]
    fn refused(&self, refusal: Refusal, stamp: &Self::Stamp)
    -> Result<Self::Response, Self::Error>;

    /// The inner service's output, with what the response carries.
    #[doc(hidden)]
    fn done(stamp: &Self::Stamp, output: O) -> Result<Self::Response, Self::Error>;

    /// The inner service's error, as the service's (from `poll_ready`).
    #[doc(hidden)]
    fn fail(error: O::Err) -> Self::Error;

    /// A response future polled after it returned its output.
    #[doc(hidden)]
    fn polled_again() -> Result<Self::Response, Self::Error>;
}

/// How a keyed layer's services answer a request whose key could not be
/// read (sealed).
pub trait RespondKey<O: Outcome>: Respond<O> {
    /// The answer to a request without a key.
    #[doc(hidden)]
    fn no_key(&self, error: KeyError) -> Result<Self::Response, Self::Error>;

    /// The answer to a request that costs more than its budget can ever
    /// hold ([`fueltank::Error::ExceedsCapacity`]).
    #[doc(hidden)]
    fn too_costly(&self, error: fueltank::Error) -> Result<Self::Response, Self::Error>;
}

/// The plain layers' answer ([`ThrottleLayer`](crate::ThrottleLayer) and
/// [`KeyedThrottleLayer`](crate::KeyedThrottleLayer) before `http()`): a
/// request not let through fails with [`Throttled`](crate::Throttled),
/// [`Unavailable`](crate::Unavailable) or
/// [`KeyError`](crate::key::KeyError), boxed into [`tower::BoxError`], as
/// the inner service's errors are.
///
/// # Examples
///
/// ```
/// use fueltank::{Rate, Tank};
/// use fueltank_tower::{Errors, ThrottleLayer};
///
/// let layer: ThrottleLayer<Errors> = ThrottleLayer::new(Tank::new(Rate::per_second(10)?));
/// # let _ = layer;
/// # Ok::<(), fueltank::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Errors;

impl Answer for Errors {
    type Stamp = ();

    #[inline(always)]
    fn stamp(&self, _budget: Option<&Shared>) {}

    #[inline(always)]
    fn stamp_key<K: 'static>(&self, _keyed: &KeyedShared<K>, _key: &K) {}
}

impl<T, E: Into<BoxError>> Respond<Result<T, E>> for Errors {
    type Response = T;
    type Error = BoxError;

    #[cold]
    fn refused(&self, refusal: Refusal, _stamp: &()) -> Result<T, BoxError> {
        Err(refusal.boxed())
    }

    #[inline(always)]
    fn done(_stamp: &(), output: Result<T, E>) -> Result<T, BoxError> {
        output.map_err(Into::into)
    }

    #[inline(always)]
    fn fail(error: E) -> BoxError {
        error.into()
    }

    #[cold]
    fn polled_again() -> Result<T, BoxError> {
        Err("response future polled after completion".into())
    }
}

impl<T, E: Into<BoxError>> RespondKey<Result<T, E>> for Errors {
    #[cold]
    fn no_key(&self, error: KeyError) -> Result<T, BoxError> {
        Err(Box::new(error))
    }

    #[cold]
    fn too_costly(&self, error: fueltank::Error) -> Result<T, BoxError> {
        Err(Box::new(error))
    }
}
