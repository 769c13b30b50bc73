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
//! let mut svc = ThrottleLayer::new(tank)
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
//! With `max_n` per `per`, on every response (the 429s included; not the
//! 503s of an outage, which tell of no quota):
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
//! Server Error` if the server's setup is at fault (it passes no peer
//! address, or no proxy is trusted), with a body saying why (see
//! [Rejections](#rejections)) and the [`KeyError`](crate::key::KeyError)
//! in the response's extensions.
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
//!     .layer(service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(String::new())) }));
//! let from = |ip: &str| Request::builder().header("x-real-ip", ip).body(()).unwrap();
//!
//! assert_eq!(svc.ready().await?.call(from("192.0.2.1")).await?.status(), StatusCode::OK);
//! let shed = svc.ready().await?.call(from("192.0.2.1")).await?;
//! assert_eq!(shed.status(), StatusCode::TOO_MANY_REQUESTS);
//! assert_eq!(shed.headers()["retry-after"], "60");
//! assert_eq!(svc.ready().await?.call(from("192.0.2.2")).await?.status(), StatusCode::OK);
//! let no_key = svc.ready().await?.call(Request::new(())).await?;
//! assert_eq!(no_key.status(), StatusCode::BAD_REQUEST);
//! assert_eq!(no_key.body(), "Bad Request: no `x-real-ip` header in the request\n");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! # Rejections
//!
//! A request the layer does not let through gets a response the layer
//! makes itself; the inner service is not called.
//!
//! | request | default ([`PlainText`]) | your own |
//! |---|---|---|
//! | shed: no fuel (reject mode), none within `max_wait`, or the line full | `429`, `text/plain`: `Too Many Requests: retry after 3 s` (with the limit's label: `Too Many Requests (per-ip limit): retry after 3 s`) | [`HttpThrottleLayer::on_throttled`], [`HttpKeyedThrottleLayer::on_throttled`]: a closure `Fn(&Throttled) -> Response<B>` |
//! | refused while the budget's store is down ([`Budget::unavailable`](crate::Budget::unavailable): e.g. Redis gone under `FailurePolicy::Closed`) | `503`, `text/plain`: ``Service Unavailable: rate-limit store unavailable (redis tank `api`), retry after 1 s`` (with the label as above) | [`HttpThrottleLayer::on_unavailable`], [`HttpKeyedThrottleLayer::on_unavailable`]: a closure `Fn(&Unavailable) -> Response<B>` |
//! | no key, the request at fault | `400`, `text/plain`: `Bad Request: ` and the [`KeyError`](crate::key::KeyError) | [`HttpKeyedThrottleLayer::on_key_error`]: a closure `Fn(&KeyError) -> Response<B>` |
//! | no key, the server's setup at fault | `500`, `text/plain`: `Internal Server Error: ` and the error, which says what to change (e.g. to enable the `axum` feature) | the same closure |
//!
//! Whoever builds it, a shed request's response gets `Retry-After` (unless
//! the closure set one), the `RateLimit` headers, and the
//! [`Throttled`](crate::Throttled) in its extensions; a request refused
//! while the store is down gets `Retry-After` and the
//! [`Unavailable`](crate::Unavailable) in its extensions, and no
//! `RateLimit` headers (no quota ran out: clients should not read it as
//! having been too fast); a keyless one gets its
//! [`KeyError`](crate::key::KeyError) in its extensions. The default
//! needs a body made from a `String` (`axum::body::Body`,
//! `http_body_util::Full<Bytes>`, `String`); for others, give closures.
//!
//! # Composing a router-level limit and a route-level wait
//!
//! A common setup sheds at the door and queues at an expensive route: a
//! per-client limit in reject mode on the whole router, and a wait mode
//! limit, bounded by [`max_wait`](crate::ThrottleLayer::max_wait), on one
//! route.
//!
//! ```
//! use axum::Router;
//! use axum::body::Body;
//! use axum::routing::get;
//! use fueltank::{KeyedTank, Rate, Tank};
//! use fueltank_tower::key::PeerIp;
//! use fueltank_tower::{KeyedThrottleLayer, ThrottleLayer};
//! use http::{Request, StatusCode};
//! use std::net::{IpAddr, SocketAddr};
//! use std::time::Duration;
//! use tower::ServiceExt;
//!
//! # futures::executor::block_on(async {
//! let per_ip = KeyedTank::<IpAddr>::new(Rate::per_minute(3)?);
//! let reports = Tank::new(Rate::per_second(1)?);
//! let app = Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     // Route level: `/report` waits its turn for at most 500 ms.
//!     .route(
//!         "/report",
//!         get(|| async { "report" }).layer(
//!             ThrottleLayer::new(reports)
//!                 .max_wait(Duration::from_millis(500))
//!                 .label("reports")
//!                 .http(),
//!         ),
//!     )
//!     // Router level: every route, before the route's own layers.
//!     .layer(KeyedThrottleLayer::new(per_ip, PeerIp).reject().label("per-ip").http());
//!
//! // (Served with `into_make_service_with_connect_info::<SocketAddr>()`,
//! // axum passes the peer; here the test passes it.)
//! let get = |path: &str| {
//!     let peer: SocketAddr = "192.0.2.1:5000".parse().unwrap();
//!     Request::get(path).extension(peer).body(Body::empty()).unwrap()
//! };
//! let body = |response: http::Response<Body>| async move {
//!     let bytes = axum::body::to_bytes(response.into_body(), 1024).await.unwrap();
//!     String::from_utf8(bytes.to_vec()).unwrap()
//! };
//!
//! // The one report fuel there is: served.
//! assert_eq!(app.clone().oneshot(get("/report")).await?.status(), StatusCode::OK);
//! // The next is a second away, beyond 500 ms: shed by the route's limit.
//! let shed = app.clone().oneshot(get("/report")).await?;
//! assert_eq!(shed.status(), StatusCode::TOO_MANY_REQUESTS);
//! assert_eq!(body(shed).await, "Too Many Requests (reports limit): retry after 1 s\n");
//! // Each of those spent one of the client's three: the third is shed at
//! // the door, and never joins the report line.
//! assert_eq!(app.clone().oneshot(get("/")).await?.status(), StatusCode::OK);
//! let shed = app.clone().oneshot(get("/report")).await?;
//! assert_eq!(body(shed).await, "Too Many Requests (per-ip limit): retry after 20 s\n");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! How they compose:
//!
//! - **Order.** A router-level layer wraps every route and runs first; the
//!   route's layer runs inside it. A request shed at the door never
//!   reaches the route: it takes no fuel from the route's tank and holds
//!   no place in its line. The other way round (wait outside, shed
//!   inside) would make requests wait only to be shed.
//! - **What is spent.** A request that passes the door has spent its
//!   client's fuel, whatever the route then decides: waiting, and being
//!   shed after `max_wait`, count against the client. That is what makes a
//!   client that hammers a slow route run out of its own budget rather
//!   than the route's line.
//! - **Bounded waits.** Waiting holds a task and a connection; without
//!   `max_wait` the line grows as long as clients keep coming, and every
//!   wait with it. With it, a request whose fuel cannot come in time is
//!   answered `429` at once, with the `Retry-After` it would have waited.
//!   [`max_waiting`](crate::ThrottleLayer::max_waiting) bounds the line
//!   itself.
//! - **Headers.** Both layers stamp their `RateLimit` headers; with the
//!   split form the response keeps the tighter limit's, with the
//!   structured form it lists both (give each a
//!   [`policy_name`](HttpThrottleLayer::policy_name)). `Retry-After` comes
//!   from the layer that shed the request.
//! - **`layer` or `route_layer`.** axum's `Router::layer` also wraps its
//!   fallback, so requests to unknown paths spend the client's fuel too
//!   (scanners run out of budget); `Router::route_layer` limits matched
//!   routes only.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use fueltank::{Hardcap, Monitor, Rate, Tank};

use crate::budget::{self, KeyedShared, Shared};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::ThrottleLayer;
use crate::emit;
use crate::gate::{Config, Gate};
use number::number;

mod keyed;
mod number;
mod reject;

pub use keyed::{HttpKeyedResponseFuture, HttpKeyedThrottleLayer, HttpKeyedThrottleService};
pub use reject::{OnKeyError, OnThrottled, OnUnavailable, PlainText};

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
/// let layer = ThrottleLayer::new(Tank::new(Rate::per_second(10)?))
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
/// the default wait mode, requests wait for fuel (and get the headers), and
/// with [`max_wait`](ThrottleLayer::max_wait) a request whose fuel cannot
/// come in time gets a 429.
///
/// The 429 is built by `R`: by default [`PlainText`], a plain-text body
/// saying when to retry; or your closure, given to
/// [`on_throttled`](HttpThrottleLayer::on_throttled). Either way it has
/// `Retry-After`, the `RateLimit` headers, and the [`Throttled`](crate::Throttled)
/// error in its extensions, for outer layers to inspect.
///
/// A request refused because the budget's store is down
/// ([`Budget::unavailable`](crate::Budget::unavailable)) gets a `503
/// Service Unavailable` instead, built by `U`: [`PlainText`], naming the
/// store, or your closure, given to
/// [`on_unavailable`](HttpThrottleLayer::on_unavailable); it has
/// `Retry-After` and the [`Unavailable`](crate::Unavailable) error in its
/// extensions, and no `RateLimit` headers.
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
/// let layer: HttpThrottleLayer = ThrottleLayer::new(Tank::new(Rate::per_second(100)?))
///     .reject()
///     .http();
/// // axum: Router::new().route(...).layer(layer)
/// # let _ = layer;
/// # Ok::<(), fueltank::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct HttpThrottleLayer<R = PlainText, U = PlainText> {
    config: Config<(R, U)>,
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
    /// let layer = ThrottleLayer::new(Tank::new(Rate::per_second(100)?))
    ///     .reject()
    ///     .http();
    /// # let _ = layer;
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
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
            .and_then(budget::tank)
            .map_or_else(Hardcap::default, Tank::hardcap);
        HttpThrottleLayer {
            config: config.map_respond(|()| (PlainText, PlainText)),
        }
    }
}

impl<R, U> HttpThrottleLayer<R, U> {
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
    /// let layer = ThrottleLayer::new(Tank::new(Rate::per_second(10)?))
    ///     .http()
    ///     .headers(HeaderStyle::Off);
    /// # let _ = layer;
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn headers(mut self, style: HeaderStyle) -> HttpThrottleLayer<R, U> {
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
    /// let layer = ThrottleLayer::new(Tank::new(Rate::per_second(10)?))
    ///     .reject()
    ///     .http()
    ///     .headers(HeaderStyle::Structured)
    ///     .policy_name("api");
    /// # let _ = layer;
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn policy_name(mut self, name: &str) -> HttpThrottleLayer<R, U> {
        self.config.headers.policy = sf_string(name);
        self
    }

    /// Builds the response to a shed request with `respond`, instead of
    /// the [`PlainText`] default: any status, headers and body, from the
    /// [`Throttled`](crate::Throttled) error (its wait, the limit's scope
    /// and label). The layer then adds `Retry-After` (unless `respond`
    /// set one), the `RateLimit` headers, and the error to the response's
    /// extensions.
    ///
    /// The response body must be the inner service's; this is also the way
    /// to serve bodies that cannot be made from a `String`.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Tank};
    /// use fueltank_tower::{ThrottleLayer, Throttled};
    /// use http::{Request, Response, StatusCode};
    /// use std::convert::Infallible;
    /// use tower::{Layer, Service, ServiceExt, service_fn};
    ///
    /// # futures::executor::block_on(async {
    /// let mut svc = ThrottleLayer::new(Tank::new(Rate::per_minute(1)?))
    ///     .reject()
    ///     .label("api")
    ///     .http()
    ///     .on_throttled(|shed: &Throttled| {
    ///         let json = format!(
    ///             r#"{{"error":"rate_limited","limit":"{}","retry_after_ms":{}}}"#,
    ///             shed.label().unwrap_or("default"),
    ///             shed.retry_after().as_millis(),
    ///         );
    ///         Response::builder()
    ///             .status(StatusCode::TOO_MANY_REQUESTS)
    ///             .header("content-type", "application/json")
    ///             .body(json)
    ///             .unwrap_or_default()
    ///     })
    ///     .layer(service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(String::new())) }));
    ///
    /// svc.ready().await?.call(Request::new(())).await?;
    /// let shed = svc.ready().await?.call(Request::new(())).await?;
    /// assert_eq!(shed.status(), StatusCode::TOO_MANY_REQUESTS);
    /// assert_eq!(shed.headers()["content-type"], "application/json");
    /// assert_eq!(shed.headers()["retry-after"], "60"); // added by the layer
    /// assert!(shed.body().starts_with(r#"{"error":"rate_limited","limit":"api""#));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn on_throttled<F, B>(self, respond: F) -> HttpThrottleLayer<F, U>
    where
        F: Fn(&crate::Throttled) -> Response<B>,
    {
        HttpThrottleLayer {
            config: self
                .config
                .map_respond(|(_, on_unavailable)| (respond, on_unavailable)),
        }
    }

    /// Builds the response to a request refused because the budget's
    /// store is down ([`Unavailable`](crate::Unavailable), see
    /// [`Budget::unavailable`](crate::Budget::unavailable)) with `respond`,
    /// instead of the [`PlainText`] default (`503 Service Unavailable`
    /// naming the store). The layer then adds `Retry-After` (unless
    /// `respond` set one) and the error to the response's extensions; no
    /// `RateLimit` headers, since no quota ran out.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Fuel, Rate};
    /// use fueltank_tower::{Budget, BudgetWait, ThrottleLayer, Unavailable};
    /// use http::{Request, Response, StatusCode};
    /// use std::convert::Infallible;
    /// use std::time::Duration;
    /// use tower::{Layer, ServiceExt, service_fn};
    ///
    /// /// A budget whose store is down.
    /// #[derive(Debug)]
    /// struct Down;
    ///
    /// impl Budget for Down {
    ///     fn try_take(&self, _: u64) -> Option<Fuel> { None }
    ///     fn wait(&self, _: u64, _: Option<Duration>) -> BudgetWait { Box::pin(std::future::ready(Ok(None))) }
    ///     fn wait_time(&self, _: u64) -> Option<Duration> { None }
    ///     fn rate(&self) -> Rate { Rate::per_second(10).unwrap() }
    ///     fn available(&self) -> u64 { 0 }
    ///     fn capacity(&self) -> u64 { 10 }
    ///     fn unavailable(&self) -> Option<Unavailable> {
    ///         Some(Unavailable::new("the quota store", Duration::from_secs(5)))
    ///     }
    /// }
    ///
    /// # futures::executor::block_on(async {
    /// let svc = ThrottleLayer::new(Down)
    ///     .reject()
    ///     .http()
    ///     .on_unavailable(|down: &Unavailable| {
    ///         Response::builder()
    ///             .status(StatusCode::SERVICE_UNAVAILABLE)
    ///             .header("content-type", "application/json")
    ///             .body(format!(r#"{{"error":"unavailable","store":"{}"}}"#, down.store()))
    ///             .unwrap_or_default()
    ///     })
    ///     .layer(service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(String::new())) }));
    /// let down = svc.oneshot(Request::new(())).await?;
    /// assert_eq!(down.status(), StatusCode::SERVICE_UNAVAILABLE);
    /// assert_eq!(down.headers()["retry-after"], "5"); // added by the layer
    /// assert!(down.headers().get("ratelimit-remaining").is_none());
    /// assert_eq!(down.body(), r#"{"error":"unavailable","store":"the quota store"}"#);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn on_unavailable<F, B>(self, respond: F) -> HttpThrottleLayer<R, F>
    where
        F: Fn(&crate::Unavailable) -> Response<B>,
    {
        HttpThrottleLayer {
            config: self
                .config
                .map_respond(|(on_throttled, _)| (on_throttled, respond)),
        }
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
    /// let layer = ThrottleLayer::new(Tank::new(Rate::per_second(10)?)).http();
    /// assert_eq!(layer.tank().map(|tank| tank.rate().max_n()), Some(10));
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn tank(&self) -> Option<&Tank> {
        budget::tank(self.config.tank.as_ref()?)
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
        self.config.policy.emission.monitor.as_ref()
    }
}

impl<S, R: Clone, U: Clone> Layer<S> for HttpThrottleLayer<R, U> {
    type Service = HttpThrottleService<S, R, U>;

    fn layer(&self, inner: S) -> HttpThrottleService<S, R, U> {
        HttpThrottleService {
            inner,
            gate: Gate::new(Arc::new(self.config.clone())),
        }
    }
}

/// The service made by [`HttpThrottleLayer`]: answers shed requests with a
/// 429 built by `R` (requests refused while the budget's store is down
/// with a 503 built by `U`), and adds the `RateLimit` headers.
///
/// `Clone` shares the tank; a clone starts without fuel. Its error type is
/// the inner service's.
///
/// # Cancel safety
///
/// As for [`ThrottleService`](crate::ThrottleService): fuel held for a
/// `call` that never came goes back to the tank (except fuel a wait bounded
/// by [`max_wait`](ThrottleLayer::max_wait) took).
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
/// let svc = ThrottleLayer::new(Tank::new(Rate::per_second(10)?))
///     .http()
///     .layer(service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(String::new())) }));
/// let response = svc.oneshot(Request::new(())).await?;
/// assert_eq!(response.headers()["ratelimit-remaining"], "0");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Debug)]
pub struct HttpThrottleService<S, R = PlainText, U = PlainText> {
    inner: S,
    gate: Gate<(R, U)>,
}

impl<S, R, U> HttpThrottleService<S, R, U> {
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
    /// let svc = ThrottleLayer::new(Tank::new(Rate::per_second(10)?)).http().layer(());
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
    /// let svc = ThrottleLayer::new(Tank::new(Rate::per_second(10)?)).http().layer(3_u8);
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
    /// let mut svc = ThrottleLayer::new(Tank::new(Rate::per_second(10)?)).http().layer(3_u8);
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
    /// let svc = ThrottleLayer::new(Tank::new(Rate::per_second(10)?)).http().layer("inner");
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
        headers.stamp(|| Some(Snapshot::read(self.gate.budget()?, headers.hardcap)))
    }
}

impl<S: Clone, R, U> Clone for HttpThrottleService<S, R, U> {
    /// A service on the same tank, without fuel.
    fn clone(&self) -> HttpThrottleService<S, R, U> {
        HttpThrottleService {
            inner: self.inner.clone(),
            gate: self.gate.clone(),
        }
    }
}

impl<S, R, U, ReqBody, ResBody> Service<Request<ReqBody>> for HttpThrottleService<S, R, U>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    R: OnThrottled<ResBody>,
    U: OnUnavailable<ResBody>,
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
        let state = match spent {
            Ok(on_success) => HttpState::Called {
                future: self.inner.call(request),
                on_success,
            },
            Err(refusal) => {
                let (on_throttled, on_unavailable) = &self.gate.config().respond;
                HttpState::Answered {
                    output: Some(Ok(reject::refused(
                        (on_throttled, on_unavailable),
                        refusal,
                        stamp.as_ref(),
                    ))),
                }
            }
        };
        HttpResponseFuture { state, stamp }
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
    /// let mut svc = ThrottleLayer::new(Tank::new(Rate::per_second(10)?))
    ///     .http()
    ///     .layer(service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(String::new())) }));
    /// let future: HttpResponseFuture<_> = svc.ready().await?.call(Request::new(()));
    /// assert!(future.await?.status().is_success());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    #[must_use = "futures do nothing unless polled"]
    pub struct HttpResponseFuture<F>
    where
        F: Future,
    {
        #[pin]
        state: HttpState<F>,
        stamp: Option<Stamp>,
    }
}

pin_project! {
    #[project = HttpStateProj]
    enum HttpState<F>
    where
        F: Future,
    {
        Called {
            #[pin]
            future: F,
            on_success: Option<Monitor>,
        },
        // The response was made in `call` (a 429): taken by the one poll
        // that returns it.
        Answered {
            output: Option<F::Output>,
        },
    }
}

impl<F, ResBody, E> Future for HttpResponseFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = Result<Response<ResBody>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match this.state.project() {
            HttpStateProj::Called { future, on_success } => {
                let mut response = ready!(future.poll(cx))?;
                emit::succeeded(on_success);
                if let Some(stamp) = this.stamp {
                    stamp.write(response.headers_mut());
                }
                Poll::Ready(Ok(response))
            }
            HttpStateProj::Answered { output } => match output.take() {
                Some(output) => Poll::Ready(output),
                None => panic!("HttpResponseFuture polled after completion"),
            },
        }
    }
}

impl<F: Future> fmt::Debug for HttpResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match &self.state {
            HttpState::Called { .. } => "HttpResponseFuture::Called",
            HttpState::Answered { .. } => "HttpResponseFuture::Answered",
        })
    }
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
    /// The fuel once full.
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
    fn read(budget: &Shared, hardcap: Hardcap) -> Snapshot {
        let tank = match budget::tank(budget) {
            Some(tank) => tank,
            None => {
                let rate = budget.rate();
                let to_full = budget
                    .wait_time(budget.capacity())
                    .unwrap_or_else(|| rate.per());
                return Snapshot::new(rate, budget.capacity(), budget.available(), to_full);
            }
        };
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
        Snapshot::new(rate, limit, remaining, to_full)
    }

    /// The state of `key`'s tank. "Full" is `max_n`, or 1 when that can
    /// never fit (`Hardcap::One`): the keyed tank does not tell its hardcap,
    /// but its `wait_time` does.
    fn read_keyed<K: 'static>(keyed: &KeyedShared<K>, key: &K) -> Snapshot {
        let rate = keyed.rate();
        // A keyed tank's limit is `max_n` whatever its hardcap, as an
        // unkeyed tank's.
        let limit = budget::keyed_tank(keyed).map_or_else(|| keyed.capacity(), |_| rate.max_n());
        let level = keyed.available(key);
        let to_full = keyed
            .wait_time(key, limit)
            .or_else(|| keyed.wait_time(key, 1))
            .unwrap_or_else(|| rate.per());
        Snapshot::new(rate, limit, level, to_full)
    }

    /// `limit`: the fuel once full (`max_n` for a local tank, a budget's
    /// capacity).
    fn new(rate: Rate, limit: u64, remaining: u64, to_full: Duration) -> Snapshot {
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
    fn policy_names_are_escaped() {
        assert_eq!(&*sf_string("api"), "\"api\"");
        assert_eq!(&*sf_string("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(&*sf_string("é\n"), "\"__\"");
    }
}
