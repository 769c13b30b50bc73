//! HTTP: answer `429 Too Many Requests` in the layer, and tell clients their
//! budget with the IETF `RateLimit` headers (feature `http`).
//!
//! ```
//! use fueltank::{Rate, Tank};
//! use fueltank_tower::ThrottleLayer;
//! use http::{Request, Response, StatusCode};
//! use std::convert::Infallible;
//! use tower::{Layer, Service, ServiceExt, service_fn};
//!
//! # futures::executor::block_on(async {
//! let tank = Tank::new(Rate::per_second(2)?);
//! let mut svc = ThrottleLayer::from_tank(tank)
//!     .reject()
//!     .http()
//!     .layer(service_fn(|_: Request<()>| async {
//!         Ok::<_, Infallible>(Response::new(String::from("hello")))
//!     }));
//!
//! let ok = svc.ready().await?.call(Request::new(())).await?;
//! assert_eq!(ok.status(), StatusCode::OK);
//! assert_eq!(ok.headers()["ratelimit-limit"], "2");
//! assert_eq!(ok.headers()["ratelimit-remaining"], "0");
//!
//! let shed = svc.ready().await?.call(Request::new(())).await?;
//! assert_eq!(shed.status(), StatusCode::TOO_MANY_REQUESTS);
//! assert_eq!(shed.headers()["retry-after"], "1"); // 0.5 s, rounded up
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! # The headers
//!
//! With `max_n` per `per`, on every response (the 429s included):
//!
//! | [`HeaderStyle::Split`] (default) | value |
//! |---|---|
//! | `RateLimit-Limit` | `max_n` |
//! | `RateLimit-Remaining` | the fuel left after this request, at most `max_n` |
//! | `RateLimit-Reset` | whole seconds, rounded up, until the tank is full again |
//!
//! This is the form of drafts 00–06 of `draft-ietf-httpapi-ratelimit-headers`,
//! the one most clients and gateways read today. [`HeaderStyle::Structured`]
//! sends the later drafts' two structured fields instead:
//!
//! ```text
//! RateLimit-Policy: "default";q=100;w=1
//! RateLimit: "default";r=37;t=1
//! ```
//!
//! where `w` is `per` in whole seconds (rounded up), `q` the quota in that
//! window, `r` the fuel left and `t` the seconds until the tank is full. The
//! name is [`HttpThrottleLayer::policy_name`].
//!
//! A shed request gets `Retry-After` in whole seconds, rounded up from the
//! tank's exact schedule and never 0: a 10 ms wait says `1`, not `0`.
//!
//! Layers nest: with the split form, the response keeps the trio of the
//! limit with the least remaining; structured fields are appended, one list
//! member per policy.
//!
//! Over a `Throttle` without a tank (unlimited fuel) there is no limit to
//! tell: no `RateLimit` headers, no 429.
//!
//! # Per key
//!
//! [`HttpKeyedThrottleLayer`] ([`KeyedThrottleLayer::http`](crate::KeyedThrottleLayer::http))
//! sends the same headers with the values of the request's own key:
//! `RateLimit-Remaining` is the key's fuel left
//! ([`KeyedTank::level`](fueltank::KeyedTank::level)), `Retry-After` its wait
//! for one fuel and `RateLimit-Reset` its wait until full
//! ([`KeyedTank::wait_time`](fueltank::KeyedTank::wait_time)). A request
//! whose key cannot be read is answered `400 Bad Request`, or `500 Internal
//! Server Error` if the server passes no peer address, with the
//! [`KeyError`] in the response's extensions.
//!
//! ```
//! use fueltank::{KeyedTank, Rate};
//! use fueltank_tower::KeyedThrottleLayer;
//! use fueltank_tower::key::ForwardedIp;
//! use http::{Request, Response, StatusCode};
//! use std::convert::Infallible;
//! use std::net::IpAddr;
//! use tower::{Layer, Service, ServiceExt, service_fn};
//!
//! # futures::executor::block_on(async {
//! let per_client = KeyedTank::<IpAddr>::new(Rate::per_minute(1)?);
//! let mut svc = KeyedThrottleLayer::new(per_client, ForwardedIp::x_real_ip())
//!     .reject()
//!     .http()
//!     .layer(service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(())) }));
//! let from = |ip: &str| Request::builder().header("x-real-ip", ip).body(()).unwrap();
//!
//! assert_eq!(svc.ready().await?.call(from("192.0.2.1")).await?.status(), StatusCode::OK);
//! let shed = svc.ready().await?.call(from("192.0.2.1")).await?;
//! assert_eq!(shed.status(), StatusCode::TOO_MANY_REQUESTS);
//! assert_eq!(shed.headers()["retry-after"], "60");
//! assert_eq!(svc.ready().await?.call(from("192.0.2.2")).await?.status(), StatusCode::OK);
//! let no_key = svc.ready().await?.call(Request::new(())).await?;
//! assert_eq!(no_key.status(), StatusCode::BAD_REQUEST);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use fueltank::{Hardcap, KeyedTank, Monitor, Rate, Tank};
use http::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use http::{Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::emit;
use crate::future::{Kind, KindProj};
use crate::gate::{Config, Gate};
use crate::key::KeyError;
use crate::{ThrottleLayer, Throttled};

mod keyed;

pub use keyed::{HttpKeyedResponseFuture, HttpKeyedThrottleLayer, HttpKeyedThrottleService};

const LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
const REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
const RESET: HeaderName = HeaderName::from_static("ratelimit-reset");
const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
const POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

/// Which `RateLimit` headers go on every response.
///
/// # Examples
///
/// ```
/// use fueltank::{Rate, Tank};
/// use fueltank_tower::ThrottleLayer;
/// use fueltank_tower::http::HeaderStyle;
///
/// let layer = ThrottleLayer::from_tank(Tank::new(Rate::per_second(10)?))
///     .reject()
///     .http()
///     .headers(HeaderStyle::Structured);
/// # let _ = layer;
/// # Ok::<(), fueltank::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HeaderStyle {
    /// `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset`: the
    /// widely deployed form (drafts 00–06). The default.
    #[default]
    Split,
    /// `RateLimit` and `RateLimit-Policy`, structured fields of the later
    /// drafts (07 and on).
    Structured,
    /// No `RateLimit` headers; a shed request still gets `Retry-After`.
    Off,
}

/// What every service of one layer shares about its headers.
#[derive(Debug, Clone)]
pub(crate) struct Headers {
    style: HeaderStyle,
    /// The policy name as a structured-field string, quotes included.
    policy: Arc<str>,
    /// The tank's hardcap, fixed at build time (it decides what "full" is);
    /// unused by the keyed layer.
    hardcap: Hardcap,
}

impl Default for Headers {
    fn default() -> Headers {
        Headers {
            style: HeaderStyle::Split,
            policy: sf_string("default"),
            hardcap: Hardcap::default(),
        }
    }
}

impl Headers {
    /// What one response gets, from the state `read` returns (called only
    /// if the style sends `RateLimit` headers).
    #[inline]
    fn stamp(&self, read: impl FnOnce() -> Option<Snapshot>) -> Option<Stamp> {
        let policy = self.plan()?;
        Some(Stamp {
            snapshot: read()?,
            policy,
        })
    }

    /// `None` without `RateLimit` headers; else the policy name to send,
    /// if the style is the structured one.
    #[inline]
    fn plan(&self) -> Option<Option<Arc<str>>> {
        match self.style {
            HeaderStyle::Off => None,
            HeaderStyle::Split => Some(None),
            HeaderStyle::Structured => Some(Some(self.policy.clone())),
        }
    }
}

/// The `RateLimit` headers of one response: the split trio, or with a
/// policy name, the structured pair. Carried by the response future
/// without a reference to the layer.
#[derive(Debug, Clone)]
struct Stamp {
    snapshot: Snapshot,
    policy: Option<Arc<str>>,
}

/// A Tower layer for HTTP services: it answers `429 Too Many Requests`
/// itself, with `Retry-After`, and adds the IETF `RateLimit` headers to
/// every response. Made by [`ThrottleLayer::http`].
///
/// Its services have the inner service's error type, so in axum they need
/// no `HandleErrorLayer`. The mode is the [`ThrottleLayer`]'s: after
/// [`reject`](ThrottleLayer::reject), a request without fuel gets a 429; in
/// the default wait mode, requests wait for fuel (and get the headers).
///
/// The 429 has an empty body (`ResBody::default()`) and carries the
/// [`Throttled`] error in its extensions, for outer layers to inspect.
///
/// See [the module](crate::http) for the header values.
///
/// # Examples
///
/// ```
/// use fueltank::{Rate, Tank};
/// use fueltank_tower::ThrottleLayer;
/// use fueltank_tower::http::HttpThrottleLayer;
///
/// let layer: HttpThrottleLayer = ThrottleLayer::from_tank(Tank::new(Rate::per_second(100)?))
///     .reject()
///     .http();
/// // axum: Router::new().route(...).layer(layer)
/// # let _ = layer;
/// # Ok::<(), fueltank::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct HttpThrottleLayer {
    config: Config,
}

impl ThrottleLayer {
    /// This layer for HTTP services: a shed request gets a
    /// `429 Too Many Requests` response with `Retry-After` instead of an
    /// error, and every response gets the `RateLimit` headers.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Tank};
    /// use fueltank_tower::ThrottleLayer;
    ///
    /// let layer = ThrottleLayer::from_tank(Tank::new(Rate::per_second(100)?))
    ///     .reject()
    ///     .http();
    /// # let _ = layer;
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn http(self) -> HttpThrottleLayer {
        HttpThrottleLayer::from(self)
    }
}

impl From<ThrottleLayer> for HttpThrottleLayer {
    /// [`ThrottleLayer::http`].
    fn from(layer: ThrottleLayer) -> HttpThrottleLayer {
        let mut config = layer.config;
        config.headers.hardcap = config
            .tank
            .as_ref()
            .map_or_else(Hardcap::default, Tank::hardcap);
        HttpThrottleLayer { config }
    }
}

impl HttpThrottleLayer {
    /// Which `RateLimit` headers to send: [`HeaderStyle::Split`] (the
    /// default), [`HeaderStyle::Structured`] or [`HeaderStyle::Off`].
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Tank};
    /// use fueltank_tower::ThrottleLayer;
    /// use fueltank_tower::http::HeaderStyle;
    ///
    /// let layer = ThrottleLayer::from_tank(Tank::new(Rate::per_second(10)?))
    ///     .http()
    ///     .headers(HeaderStyle::Off);
    /// # let _ = layer;
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn headers(mut self, style: HeaderStyle) -> HttpThrottleLayer {
        self.config.headers.style = style;
        self
    }

    /// The policy name in the structured headers (default `"default"`).
    ///
    /// Characters outside printable ASCII become `_`; quotes and
    /// backslashes are escaped, so any string makes a valid header.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Tank};
    /// use fueltank_tower::ThrottleLayer;
    /// use fueltank_tower::http::HeaderStyle;
    ///
    /// let layer = ThrottleLayer::from_tank(Tank::new(Rate::per_second(10)?))
    ///     .reject()
    ///     .http()
    ///     .headers(HeaderStyle::Structured)
    ///     .policy_name("api");
    /// # let _ = layer;
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn policy_name(mut self, name: &str) -> HttpThrottleLayer {
        self.config.headers.policy = sf_string(name);
        self
    }

    /// The tank this layer draws on; `None` for a `Throttle` without a
    /// tank.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Tank};
    /// use fueltank_tower::ThrottleLayer;
    ///
    /// let layer = ThrottleLayer::from_tank(Tank::new(Rate::per_second(10)?)).http();
    /// assert_eq!(layer.tank().map(|tank| tank.rate().max_n()), Some(10));
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn tank(&self) -> Option<&Tank> {
        self.config.tank.as_ref()
    }

    /// The monitor this layer emits to, if any.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Throttle};
    /// use fueltank_tower::ThrottleLayer;
    ///
    /// let throttle = Throttle::builder(Rate::per_second(10)?).build()?;
    /// assert!(ThrottleLayer::new(throttle).http().monitor().is_some());
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn monitor(&self) -> Option<&Monitor> {
        self.config.emission.monitor.as_ref()
    }
}

impl<S> Layer<S> for HttpThrottleLayer {
    type Service = HttpThrottleService<S>;

    fn layer(&self, inner: S) -> HttpThrottleService<S> {
        HttpThrottleService {
            inner,
            gate: Gate::new(Arc::new(self.config.clone())),
        }
    }
}

/// The service made by [`HttpThrottleLayer`]: sheds with a 429 (in reject
/// mode) and adds the `RateLimit` headers.
///
/// `Clone` shares the tank; a clone starts without fuel. Its error type is
/// the inner service's.
///
/// # Cancel safety
///
/// As for [`ThrottleService`](crate::ThrottleService): fuel held for a
/// `call` that never came goes back to the tank.
///
/// # Examples
///
/// ```
/// use fueltank::{Rate, Tank};
/// use fueltank_tower::ThrottleLayer;
/// use http::{Request, Response};
/// use std::convert::Infallible;
/// use tower::{Layer, ServiceExt, service_fn};
///
/// # futures::executor::block_on(async {
/// let svc = ThrottleLayer::from_tank(Tank::new(Rate::per_second(10)?))
///     .http()
///     .layer(service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(())) }));
/// let response = svc.oneshot(Request::new(())).await?;
/// assert_eq!(response.headers()["ratelimit-remaining"], "0");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Debug)]
pub struct HttpThrottleService<S> {
    inner: S,
    gate: Gate,
}

impl<S> HttpThrottleService<S> {
    /// The tank this service draws on; `None` for a `Throttle` without a
    /// tank.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Tank};
    /// use fueltank_tower::ThrottleLayer;
    /// use tower::Layer;
    ///
    /// let svc = ThrottleLayer::from_tank(Tank::new(Rate::per_second(10)?)).http().layer(());
    /// assert_eq!(svc.tank().map(Tank::level), Some(1));
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn tank(&self) -> Option<&Tank> {
        self.gate.tank()
    }

    /// The inner service.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Tank};
    /// use fueltank_tower::ThrottleLayer;
    /// use tower::Layer;
    ///
    /// let svc = ThrottleLayer::from_tank(Tank::new(Rate::per_second(10)?)).http().layer(3_u8);
    /// assert_eq!(*svc.get_ref(), 3);
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Tank};
    /// use fueltank_tower::ThrottleLayer;
    /// use tower::Layer;
    ///
    /// let mut svc = ThrottleLayer::from_tank(Tank::new(Rate::per_second(10)?)).http().layer(3_u8);
    /// *svc.get_mut() += 1;
    /// assert_eq!(svc.into_inner(), 4);
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, consuming this one (fuel it held goes back).
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Tank};
    /// use fueltank_tower::ThrottleLayer;
    /// use tower::Layer;
    ///
    /// let svc = ThrottleLayer::from_tank(Tank::new(Rate::per_second(10)?)).http().layer("inner");
    /// assert_eq!(svc.into_inner(), "inner");
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The headers for this response, from the tank's state read once in
    /// `call`.
    #[inline]
    fn stamp(&self) -> Option<Stamp> {
        let headers = &self.gate.config().headers;
        headers.stamp(|| Some(Snapshot::read(self.gate.tank()?, headers.hardcap)))
    }
}

impl<S: Clone> Clone for HttpThrottleService<S> {
    /// A service on the same tank, without fuel.
    fn clone(&self) -> HttpThrottleService<S> {
        HttpThrottleService {
            inner: self.inner.clone(),
            gate: self.gate.clone(),
        }
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for HttpThrottleService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = HttpResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        ready!(self.gate.poll_fuel(cx));
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> HttpResponseFuture<S::Future> {
        let spent = self.gate.spend();
        let stamp = self.stamp();
        let kind = match spent {
            Ok(on_success) => Kind::Called {
                future: self.inner.call(request),
                on_success,
            },
            Err(throttled) => Kind::Throttled { throttled },
        };
        HttpResponseFuture { kind, stamp }
    }
}

pin_project! {
    /// The response future of [`HttpThrottleService`]: the inner response
    /// with the `RateLimit` headers added, or a 429.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Tank};
    /// use fueltank_tower::ThrottleLayer;
    /// use fueltank_tower::http::HttpResponseFuture;
    /// use http::{Request, Response};
    /// use std::convert::Infallible;
    /// use tower::{Layer, Service, ServiceExt, service_fn};
    ///
    /// # futures::executor::block_on(async {
    /// let mut svc = ThrottleLayer::from_tank(Tank::new(Rate::per_second(10)?))
    ///     .http()
    ///     .layer(service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(())) }));
    /// let future: HttpResponseFuture<_> = svc.ready().await?.call(Request::new(()));
    /// assert!(future.await?.status().is_success());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    #[must_use = "futures do nothing unless polled"]
    pub struct HttpResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
        stamp: Option<Stamp>,
    }
}

impl<F, ResBody, E> Future for HttpResponseFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
    ResBody: Default,
{
    type Output = Result<Response<ResBody>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = match this.kind.project() {
            KindProj::Called { future, on_success } => {
                let mut response = ready!(future.poll(cx))?;
                emit::succeeded(on_success);
                if let Some(stamp) = this.stamp {
                    stamp.write(response.headers_mut());
                }
                return Poll::Ready(Ok(response));
            }
            KindProj::Throttled { throttled } => too_many_requests::<ResBody>(*throttled),
        };
        if let Some(stamp) = this.stamp {
            stamp.write(response.headers_mut());
        }
        Poll::Ready(Ok(response))
    }
}

impl<F> fmt::Debug for HttpResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Called { .. } => f.write_str("HttpResponseFuture::Called"),
            Kind::Throttled { throttled } => f
                .debug_tuple("HttpResponseFuture::Throttled")
                .field(throttled)
                .finish(),
        }
    }
}

/// A `429 Too Many Requests` for `throttled`, with `Retry-After`.
fn too_many_requests<B: Default>(throttled: Throttled) -> Response<B> {
    let mut response = Response::new(B::default());
    *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    response.headers_mut().insert(
        RETRY_AFTER,
        number(retry_after_secs(throttled.retry_after())),
    );
    response.extensions_mut().insert(throttled);
    response
}

/// The answer to a request whose key could not be read, with the
/// [`KeyError`] in its extensions: `500 Internal Server Error` when the
/// server gave no peer address (a setup error: see
/// [`KeyError::NoPeerAddress`]), `400 Bad Request` otherwise (the request
/// lacks the header the key comes from, or it is malformed).
fn no_key<B: Default>(error: KeyError) -> Response<B> {
    let mut response = Response::new(B::default());
    *response.status_mut() = match error {
        KeyError::NoPeerAddress => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    };
    response.extensions_mut().insert(error);
    response
}

/// `Retry-After` in whole seconds: rounded up, and at least 1, so that a
/// client never retries at once into the same empty tank.
pub(crate) fn retry_after_secs(wait: Duration) -> u64 {
    ceil_secs(wait).max(1)
}

/// `wait` in whole seconds, rounded up.
fn ceil_secs(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

/// The numbers below this have a static header value.
const STATIC_NUMBERS: usize = 1024;

/// The decimal digits of `0..STATIC_NUMBERS`, left-aligned.
static DIGITS: [[u8; 4]; STATIC_NUMBERS] = {
    let mut table = [[0u8; 4]; STATIC_NUMBERS];
    let mut n = 0;
    while n < STATIC_NUMBERS {
        let (mut rest, mut len) = (n, 1);
        while rest >= 10 {
            rest /= 10;
            len += 1;
        }
        let (mut rest, mut i) = (n, len);
        while i > 0 {
            i -= 1;
            table[n][i] = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        n += 1;
    }
    table
};

/// `n` as a header value; small numbers (the usual `Remaining`, `Reset`
/// and `Retry-After`) without allocating.
fn number(n: u64) -> HeaderValue {
    if let Some(digits) = usize::try_from(n).ok().and_then(|i| DIGITS.get(i)) {
        let len = digits.iter().take_while(|&&d| d != 0).count();
        if let Ok(digits) = std::str::from_utf8(&digits[..len]) {
            return HeaderValue::from_static(digits);
        }
    }
    HeaderValue::from(n)
}

/// `name` as a structured-field string (RFC 8941 §3.3.3), quotes included.
fn sf_string(name: &str) -> Arc<str> {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for c in name.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => out.push('_'),
        }
    }
    out.push('"');
    out.into()
}

/// The tank's state behind one response's headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Snapshot {
    /// `max_n`.
    limit: u64,
    /// Fuel left, at most `limit`.
    remaining: u64,
    /// Whole seconds until the tank is full.
    reset: u64,
    /// The window `per`, in whole seconds rounded up (at least 1).
    window: u64,
    /// The quota in `window`.
    quota: u64,
}

impl Snapshot {
    fn read(tank: &Tank, hardcap: Hardcap) -> Snapshot {
        let rate = tank.rate();
        let limit = rate.max_n();
        let level = tank.level();
        // What a newcomer could take: 0 while a waiter holds the line.
        let remaining = tank.available();
        let full = match hardcap {
            Hardcap::One => 1,
            _ => limit,
        };
        // Exact, from the tank's schedule; while paused, as if refilling.
        let to_full = tank.wait_time(full).unwrap_or_else(|| {
            let missing = u128::from(full.saturating_sub(level));
            let ns = missing
                .saturating_mul(rate.per().as_nanos())
                .div_ceil(u128::from(limit));
            Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
        });
        Snapshot::new(rate, remaining, to_full)
    }

    /// The state of `key`'s tank. "Full" is `max_n`, or 1 when that can
    /// never fit (`Hardcap::One`): the keyed tank does not tell its hardcap,
    /// but its `wait_time` does.
    fn read_keyed<K>(keyed: &KeyedTank<K>, key: &K) -> Snapshot
    where
        K: std::hash::Hash + Eq + Clone + Send + Sync + 'static,
    {
        let rate = keyed.rate();
        let level = keyed.available(key);
        let to_full = keyed
            .wait_time(key, rate.max_n())
            .or_else(|| keyed.wait_time(key, 1))
            .unwrap_or_else(|| rate.per());
        Snapshot::new(rate, level, to_full)
    }

    fn new(rate: Rate, remaining: u64, to_full: Duration) -> Snapshot {
        let limit = rate.max_n();
        let per_ns = rate.per().as_nanos();
        let window = ceil_secs(rate.per()).max(1);
        let quota =
            u128::from(limit).saturating_mul(u128::from(window) * 1_000_000_000) / per_ns.max(1);
        Snapshot {
            limit,
            remaining: remaining.min(limit),
            reset: ceil_secs(to_full),
            window,
            quota: u64::try_from(quota).unwrap_or(u64::MAX),
        }
    }
}

impl Stamp {
    fn write(&self, map: &mut HeaderMap) {
        let snapshot = &self.snapshot;
        match &self.policy {
            None => {
                let tighter = map
                    .get(&REMAINING)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .is_some_and(|theirs| theirs < snapshot.remaining);
                if !tighter {
                    map.insert(LIMIT, number(snapshot.limit));
                    map.insert(REMAINING, number(snapshot.remaining));
                    map.insert(RESET, number(snapshot.reset));
                }
            }
            Some(policy) => {
                let quota = format!("{policy};q={};w={}", snapshot.quota, snapshot.window);
                let state = format!("{policy};r={};t={}", snapshot.remaining, snapshot.reset);
                // `policy` is an escaped sf-string and the rest digits: valid.
                if let (Ok(quota), Ok(state)) =
                    (HeaderValue::try_from(quota), HeaderValue::try_from(state))
                {
                    map.append(POLICY, quota);
                    map.append(RATELIMIT, state);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_and_is_never_zero() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_nanos(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(999)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(60)), 60);
    }

    #[test]
    fn numbers_are_decimal_with_or_without_the_table() {
        for n in [0, 1, 9, 10, 99, 100, 999, 1000, 1023, 1024, 12345, u64::MAX] {
            assert_eq!(number(n).to_str().unwrap(), n.to_string());
        }
    }

    #[test]
    fn policy_names_are_escaped() {
        assert_eq!(&*sf_string("api"), "\"api\"");
        assert_eq!(&*sf_string("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(&*sf_string("é\n"), "\"__\"");
    }
}
