//! What the HTTP layers answer a request they do not let through: a shed
//! request ([`OnThrottled`]), a request refused while the budget's store is
//! down ([`OnUnavailable`]) and a request without a key ([`OnKeyError`]),
//! by default in plain text ([`PlainText`]), or as a closure of yours
//! builds it.

use http::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use http::{Response, StatusCode};

use super::{Stamp, number, retry_after_secs};
use crate::key::KeyError;
use crate::{Throttled, Unavailable};

/// Builds the response to a request shed for want of fuel: [`PlainText`]
/// by default, or the closure given to
/// [`Limit::on_throttled`](crate::Limit::on_throttled).
///
/// Whatever it builds, the layer then adds `Retry-After` (unless the
/// response has one), the `RateLimit` headers of its style, and the
/// [`Throttled`] to the response's extensions (unless it has one).
///
/// Sealed: it is implemented for [`PlainText`] and for every
/// `Fn(&Throttled) -> Response<B>`.
///
/// # Examples
///
/// ```
/// use fueltank_tower::Throttled;
/// use fueltank_tower::http::{OnThrottled, PlainText};
/// use http::StatusCode;
/// use std::time::Duration;
///
/// let response: http::Response<String> = PlainText.response(&Throttled::new(Duration::from_millis(1500)));
/// assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
/// assert_eq!(response.body(), "Too Many Requests: retry after 2 s\n");
/// ```
pub trait OnThrottled<B>: sealed::Throttled<B> {
    /// The response to the request `throttled` shed.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank_tower::Throttled;
    /// use fueltank_tower::http::OnThrottled;
    /// use http::{Response, StatusCode};
    /// use std::time::Duration;
    ///
    /// let respond = |shed: &Throttled| {
    ///     let mut response = Response::new(format!("wait {:?}", shed.retry_after()));
    ///     *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    ///     response
    /// };
    /// let response = respond.response(&Throttled::new(Duration::from_millis(5)));
    /// assert_eq!(response.body(), "wait 5ms");
    /// ```
    fn response(&self, throttled: &Throttled) -> Response<B>;
}

/// Builds the response to a request refused because its budget's store is
/// down ([`Unavailable`]): [`PlainText`] by default (`503 Service
/// Unavailable`), or the closure given to
/// [`Limit::on_unavailable`](crate::Limit::on_unavailable).
///
/// Whatever it builds, the layer then adds `Retry-After` (unless the
/// response has one) and the [`Unavailable`] to the response's extensions
/// (unless it has one); no `RateLimit` headers: no quota ran out.
///
/// Sealed: it is implemented for [`PlainText`] and for every
/// `Fn(&Unavailable) -> Response<B>`.
///
/// # Examples
///
/// ```
/// use fueltank_tower::Unavailable;
/// use fueltank_tower::http::{OnUnavailable, PlainText};
/// use http::StatusCode;
/// use std::time::Duration;
///
/// let down = Unavailable::new("redis tank `api`", Duration::from_millis(300));
/// let response: http::Response<String> = PlainText.response(&down);
/// assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
/// assert_eq!(
///     response.body(),
///     "Service Unavailable: rate-limit store unavailable (redis tank `api`), retry after 1 s\n"
/// );
/// ```
pub trait OnUnavailable<B>: sealed::Unavailable<B> {
    /// The response to a request refused while its budget's store is down.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank_tower::Unavailable;
    /// use fueltank_tower::http::OnUnavailable;
    /// use http::{Response, StatusCode};
    /// use std::time::Duration;
    ///
    /// let respond = |down: &Unavailable| {
    ///     let mut response = Response::new(format!("{} is down", down.store()));
    ///     *response.status_mut() = StatusCode::BAD_GATEWAY;
    ///     response
    /// };
    /// let response = respond.response(&Unavailable::new("redis", Duration::from_secs(1)));
    /// assert_eq!(response.body(), "redis is down");
    /// ```
    fn response(&self, unavailable: &Unavailable) -> Response<B>;
}

/// Builds the response to a request whose key could not be read:
/// [`PlainText`] by default, or the closure given to
/// [`Limit::on_key_error`](crate::Limit::on_key_error).
///
/// Whatever it builds, the layer then adds the [`KeyError`] to the
/// response's extensions (unless it has one).
///
/// Sealed: it is implemented for [`PlainText`] and for every
/// `Fn(&KeyError) -> Response<B>`.
///
/// # Examples
///
/// ```
/// use fueltank_tower::http::{OnKeyError, PlainText};
/// use fueltank_tower::key::KeyError;
/// use http::StatusCode;
///
/// let error = KeyError::MissingHeader { header: "x-real-ip" };
/// let response: http::Response<String> = PlainText.response(&error);
/// assert_eq!(response.status(), StatusCode::BAD_REQUEST);
/// assert_eq!(response.body(), "Bad Request: no `x-real-ip` header in the request\n");
/// ```
pub trait OnKeyError<B>: sealed::KeyError<B> {
    /// The response to a request without a key, for `error`.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank_tower::http::{OnKeyError, PlainText};
    /// use fueltank_tower::key::KeyError;
    /// use http::StatusCode;
    ///
    /// let response: http::Response<String> = PlainText.response(&KeyError::NoPeerAddress);
    /// assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    /// assert!(response.body().contains("into_make_service_with_connect_info"));
    /// ```
    fn response(&self, error: &KeyError) -> Response<B>;
}

mod sealed {
    pub trait Throttled<B> {}
    pub trait Unavailable<B> {}
    pub trait KeyError<B> {}
}

/// The default answers, in plain text (`text/plain; charset=utf-8`), for
/// any body made from a `String` (`axum::body::Body`,
/// `http_body_util::Full<Bytes>`, `String`, …):
///
/// | request | status | body |
/// |---|---|---|
/// | shed | `429 Too Many Requests` | `Too Many Requests: retry after 3 s`, with the limit's [label](crate::ThrottleLayer::label) if it has one: `Too Many Requests (per-ip limit): retry after 3 s` |
/// | refused, the budget's store down ([`Unavailable`]) | `503 Service Unavailable` | ``Service Unavailable: rate-limit store unavailable (redis tank `api`), retry after 1 s``, with the label as above |
/// | without a key, the server's setup at fault ([`KeyError::is_setup_error`]) | `500 Internal Server Error` | `Internal Server Error: ` and the [`KeyError`], which says what to change |
/// | without a key, the request at fault | `400 Bad Request` | `Bad Request: ` and the [`KeyError`] |
///
/// For a body that cannot be made from a `String` (`()`, `Empty`), give
/// the layer closures instead (`on_throttled`, `on_unavailable`,
/// `on_key_error`).
///
/// # Examples
///
/// ```
/// use fueltank_tower::Throttled;
/// use fueltank_tower::http::{OnThrottled, PlainText};
/// use std::time::Duration;
///
/// let shed = Throttled::new(Duration::from_secs(3)).with_label("per-ip");
/// let response: http::Response<String> = PlainText.response(&shed);
/// assert_eq!(response.headers()["content-type"], "text/plain; charset=utf-8");
/// assert_eq!(response.body(), "Too Many Requests (per-ip limit): retry after 3 s\n");
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct PlainText;

impl<B: From<String>> sealed::Throttled<B> for PlainText {}

impl<B: From<String>> OnThrottled<B> for PlainText {
    fn response(&self, throttled: &Throttled) -> Response<B> {
        let retry_after = retry_after_secs(throttled.retry_after());
        let text = match throttled.label() {
            Some(label) => {
                format!("Too Many Requests ({label} limit): retry after {retry_after} s\n")
            }
            None => format!("Too Many Requests: retry after {retry_after} s\n"),
        };
        plain_text(StatusCode::TOO_MANY_REQUESTS, text)
    }
}

impl<B: From<String>> sealed::Unavailable<B> for PlainText {}

impl<B: From<String>> OnUnavailable<B> for PlainText {
    fn response(&self, unavailable: &Unavailable) -> Response<B> {
        let retry_after = retry_after_secs(unavailable.limit().retry_after());
        let store = unavailable.store();
        let text = match unavailable.limit().label() {
            Some(label) => format!(
                "Service Unavailable ({label} limit): rate-limit store unavailable ({store}), \
                 retry after {retry_after} s\n"
            ),
            None => format!(
                "Service Unavailable: rate-limit store unavailable ({store}), \
                 retry after {retry_after} s\n"
            ),
        };
        plain_text(StatusCode::SERVICE_UNAVAILABLE, text)
    }
}

impl<B: From<String>> sealed::KeyError<B> for PlainText {}

impl<B: From<String>> OnKeyError<B> for PlainText {
    fn response(&self, error: &KeyError) -> Response<B> {
        let status = key_error_status(error);
        let reason = status.canonical_reason().unwrap_or("Error");
        plain_text(status, format!("{reason}: {error}\n"))
    }
}

impl<F, B> sealed::Throttled<B> for F where F: Fn(&Throttled) -> Response<B> {}

impl<F, B> OnThrottled<B> for F
where
    F: Fn(&Throttled) -> Response<B>,
{
    fn response(&self, throttled: &Throttled) -> Response<B> {
        self(throttled)
    }
}

impl<F, B> sealed::Unavailable<B> for F where F: Fn(&Unavailable) -> Response<B> {}

impl<F, B> OnUnavailable<B> for F
where
    F: Fn(&Unavailable) -> Response<B>,
{
    fn response(&self, unavailable: &Unavailable) -> Response<B> {
        self(unavailable)
    }
}

impl<F, B> sealed::KeyError<B> for F where F: Fn(&KeyError) -> Response<B> {}

impl<F, B> OnKeyError<B> for F
where
    F: Fn(&KeyError) -> Response<B>,
{
    fn response(&self, error: &KeyError) -> Response<B> {
        self(error)
    }
}

/// The status for a request without a key: 500 when the server's setup is
/// at fault (every request would fail alike), 400 when the request is.
pub(crate) fn key_error_status(error: &KeyError) -> StatusCode {
    if error.is_setup_error() {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::BAD_REQUEST
    }
}

fn plain_text<B: From<String>>(status: StatusCode, text: String) -> Response<B> {
    let mut response = Response::new(B::from(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// The answer to a request refused while the store is down: `respond`'s
/// response, with `Retry-After` (unless it has one) and the
/// [`Unavailable`] in its extensions (unless it has one).
#[cold]
pub(crate) fn unavailable<B, U: OnUnavailable<B>>(
    respond: &U,
    unavailable: Unavailable,
) -> Response<B> {
    let mut response = respond.response(&unavailable);
    let headers = response.headers_mut();
    if !headers.contains_key(RETRY_AFTER) {
        headers.insert(
            RETRY_AFTER,
            number(retry_after_secs(unavailable.limit().retry_after())),
        );
    }
    let extensions = response.extensions_mut();
    if extensions.get::<Unavailable>().is_none() {
        extensions.insert(unavailable);
    }
    response
}

/// The answer to a shed request: `respond`'s response, with `Retry-After`
/// (unless it has one), the `RateLimit` headers of `stamp`, and the
/// [`Throttled`] in its extensions (unless it has one).
#[cold]
pub(crate) fn throttled<B, R: OnThrottled<B>>(
    respond: &R,
    throttled: Throttled,
    stamp: Option<&Stamp>,
) -> Response<B> {
    let mut response = respond.response(&throttled);
    let headers = response.headers_mut();
    if !headers.contains_key(RETRY_AFTER) {
        headers.insert(
            RETRY_AFTER,
            number(retry_after_secs(throttled.retry_after())),
        );
    }
    if let Some(stamp) = stamp {
        stamp.write(headers);
    }
    let extensions = response.extensions_mut();
    if extensions.get::<Throttled>().is_none() {
        extensions.insert(throttled);
    }
    response
}

/// The answer to a request without a key: `respond`'s response, with the
/// [`KeyError`] in its extensions (unless it has one).
#[cold]
pub(crate) fn key_error<B, E: OnKeyError<B>>(respond: &E, error: KeyError) -> Response<B> {
    let mut response = respond.response(&error);
    let extensions = response.extensions_mut();
    if extensions.get::<KeyError>().is_none() {
        extensions.insert(error);
    }
    response
}
