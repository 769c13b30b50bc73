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
//! | `RateLimit-Reset` | whole seconds, rounded up, until the tank is full again (`max_n`, or its capacity if less: 1 under `One`, a Redis tank's bank) |
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
//! name is [`Limit::policy_name`].
//!
//! A tank of several rates ([`TankBuilder::also`](fueltank::TankBuilder::also),
//! [`KeyedTankBuilder::also`](fueltank::KeyedTankBuilder::also)) speaks of
//! its tightest rate, the one with the least fuel now (the first on a
//! tie): the split trio's values and `RateLimit` are that rate's. The
//! structured `RateLimit-Policy` lists every rate, the first under the
//! policy name and the others under the name with `-2`, `-3`, … (in the
//! order of `also`), and `RateLimit` names the tightest's:
//!
//! ```text
//! RateLimit-Policy: "default";q=100;w=60, "default-2";q=5;w=1
//! RateLimit: "default-2";r=0;t=1
//! ```
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
//! [`KeyedThrottleLayer`]`.http()` ([`Limit::http`])
//! sends the same headers with the values of the request's own key:
//! `RateLimit-Remaining` is the key's fuel left
//! ([`KeyedTank::level`](fueltank::KeyedTank::level)), `Retry-After` its wait
//! for one fuel and `RateLimit-Reset` its wait until full
//! ([`KeyedTank::wait_time`](fueltank::KeyedTank::wait_time)). A request
//! whose key cannot be read is answered `400 Bad Request`, or `500 Internal
//! Server Error` if the server's setup is at fault (it passes no peer
//! address, or no proxy is trusted), with a body saying why (see
//! [Rejections](#rejections)) and the [`KeyError`]
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
//! | shed: no fuel (reject mode), none within `max_wait`, or the line full | `429`, `text/plain`: `Too Many Requests: retry after 3 s` (with the limit's label: `Too Many Requests (per-ip limit): retry after 3 s`) | [`Limit::on_throttled`]: a closure `Fn(&Throttled) -> Response<B>` |
//! | refused while the budget's store is down ([`Budget::unavailable`](crate::Budget::unavailable): e.g. Redis gone under `FailurePolicy::Closed`) | `503`, `text/plain`: ``Service Unavailable: rate-limit store unavailable (redis tank `api`), retry after 1 s`` (with the label as above) | [`Limit::on_unavailable`]: a closure `Fn(&Unavailable) -> Response<B>` |
//! | no key, the request at fault | `400`, `text/plain`: `Bad Request: ` and the [`KeyError`] | [`Limit::on_key_error`]: a closure `Fn(&KeyError) -> Response<B>` |
//! | no key, the server's setup at fault | `500`, `text/plain`: `Internal Server Error: ` and the error, which says what to change (e.g. to enable the `axum` feature) | the same closure |
//!
//! Whoever builds it, a shed request's response gets `Retry-After` (unless
//! the closure set one), the `RateLimit` headers, and the
//! [`Throttled`](crate::Throttled) in its extensions; a request refused
//! while the store is down gets `Retry-After` and the
//! [`Unavailable`](crate::Unavailable) in its extensions, and no
//! `RateLimit` headers (no quota ran out: clients should not read it as
//! having been too fast); a keyless one gets its
//! [`KeyError`] in its extensions. The default
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
//!   [`policy_name`](Limit::policy_name)). `Retry-After` comes
//!   from the layer that shed the request.
//! - **`layer` or `route_layer`.** axum's `Router::layer` also wraps its
//!   fallback, so requests to unknown paths spend the client's fuel too
//!   (scanners run out of budget); `Router::route_layer` limits matched
//!   routes only.

use std::sync::Arc;
use std::time::Duration;

use http::Response;

#[cfg(doc)]
use crate::ThrottleLayer;
use crate::answer::{Answer, Respond, RespondKey};
use crate::budget::{KeyedShared, Shared};
use crate::error::Refusal;
use crate::key::KeyError;
use crate::keyed::KeyedThrottleLayer;
use crate::layer::Limit;
use number::number;
use stamp::{Headers, Snapshot, Stamp, ceil_secs};

mod number;
mod reject;
mod stamp;

pub use reject::{OnKeyError, OnThrottled, OnUnavailable, PlainText};

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

/// How the HTTP layers answer: a layer made by [`http`](Limit::http)
/// answers `429 Too Many Requests` itself, with `Retry-After`, and adds the
/// IETF `RateLimit` headers to every response; for either kind of layer
/// ([`ThrottleLayer`], [`KeyedThrottleLayer`]).
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
/// [`on_throttled`](Limit::on_throttled). Either way it has
/// `Retry-After`, the `RateLimit` headers, and the [`Throttled`](crate::Throttled)
/// error in its extensions, for outer layers to inspect.
///
/// A request refused because the budget's store is down
/// ([`Budget::unavailable`](crate::Budget::unavailable)) gets a `503
/// Service Unavailable` instead, built by `U`: [`PlainText`], naming the
/// store, or your closure, given to
/// [`on_unavailable`](Limit::on_unavailable); it has
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
/// use fueltank_tower::http::Responses;
///
/// let layer: ThrottleLayer<Responses> = ThrottleLayer::new(Tank::new(Rate::per_second(100)?))
///     .reject()
///     .http();
/// // axum: Router::new().route(...).layer(layer)
/// # let _ = layer;
/// # Ok::<(), fueltank::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Responses<T = PlainText, U = PlainText, E = PlainText> {
    headers: Headers,
    on_throttled: T,
    on_unavailable: U,
    on_key_error: E,
}

impl<G> Limit<G> {
    /// This layer for HTTP services: a shed request gets a
    /// `429 Too Many Requests` response with `Retry-After` instead of an
    /// error, a request without a key (keyed layer) a `400` (see
    /// [`Responses`]), and every response the `RateLimit` headers (of its
    /// key, for the keyed layer).
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
    ///
    /// Per key:
    ///
    /// ```
    /// use fueltank::{KeyedTank, Rate};
    /// use fueltank_tower::KeyedThrottleLayer;
    /// use fueltank_tower::key::PeerIp;
    /// use std::net::IpAddr;
    ///
    /// let layer = KeyedThrottleLayer::new(KeyedTank::<IpAddr>::new(Rate::per_second(10)?), PeerIp)
    ///     .reject()
    ///     .http();
    /// // axum: Router::new().route(...).layer(layer)
    /// # let _ = layer;
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    pub fn http(self) -> Limit<G, Responses> {
        Limit {
            side: self.side,
            policy: self.policy,
            answer: Responses {
                headers: Headers::default(),
                on_throttled: PlainText,
                on_unavailable: PlainText,
                on_key_error: PlainText,
            },
        }
    }
}

impl<G, T, U, E> Limit<G, Responses<T, U, E>> {
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
    pub fn headers(mut self, style: HeaderStyle) -> Limit<G, Responses<T, U, E>> {
        self.answer.headers.style = style;
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
    pub fn policy_name(mut self, name: &str) -> Limit<G, Responses<T, U, E>> {
        self.answer.headers.policy = sf_string(name);
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
    pub fn on_throttled<F, B>(self, respond: F) -> Limit<G, Responses<F, U, E>>
    where
        F: Fn(&crate::Throttled) -> Response<B>,
    {
        self.respond(|answer| Responses {
            headers: answer.headers,
            on_throttled: respond,
            on_unavailable: answer.on_unavailable,
            on_key_error: answer.on_key_error,
        })
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
    pub fn on_unavailable<F, B>(self, respond: F) -> Limit<G, Responses<T, F, E>>
    where
        F: Fn(&crate::Unavailable) -> Response<B>,
    {
        self.respond(|answer| Responses {
            headers: answer.headers,
            on_throttled: answer.on_throttled,
            on_unavailable: respond,
            on_key_error: answer.on_key_error,
        })
    }

    /// The same layer, answering as `change` makes of its answers.
    fn respond<A>(self, change: impl FnOnce(Responses<T, U, E>) -> A) -> Limit<G, A> {
        Limit {
            side: self.side,
            policy: self.policy,
            answer: change(self.answer),
        }
    }
}

impl<K, X, T, U, E> KeyedThrottleLayer<K, X, Responses<T, U, E>> {
    /// Builds the response to a request whose key could not be read with
    /// `respond`, instead of the [`PlainText`] default; the layer then adds
    /// the [`KeyError`] to the response's extensions.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{KeyedTank, Rate};
    /// use fueltank_tower::KeyedThrottleLayer;
    /// use fueltank_tower::key::{ForwardedIp, KeyError};
    /// use http::{Request, Response, StatusCode};
    /// use std::convert::Infallible;
    /// use std::net::IpAddr;
    /// use tower::{Layer, ServiceExt, service_fn};
    ///
    /// # futures::executor::block_on(async {
    /// let svc = KeyedThrottleLayer::new(KeyedTank::<IpAddr>::new(Rate::per_second(10)?), ForwardedIp::x_real_ip())
    ///     .http()
    ///     .on_key_error(|error: &KeyError| {
    ///         let mut response = Response::new(String::from("who are you?\n"));
    ///         *response.status_mut() = StatusCode::FORBIDDEN;
    ///         response
    ///     })
    ///     .layer(service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(String::new())) }));
    /// let response = svc.oneshot(Request::new(())).await?;
    /// assert_eq!(response.status(), StatusCode::FORBIDDEN);
    /// assert!(response.extensions().get::<KeyError>().is_some());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn on_key_error<F, B>(self, respond: F) -> KeyedThrottleLayer<K, X, Responses<T, U, F>>
    where
        F: Fn(&KeyError) -> Response<B>,
    {
        self.respond(|answer| Responses {
            headers: answer.headers,
            on_throttled: answer.on_throttled,
            on_unavailable: answer.on_unavailable,
            on_key_error: respond,
        })
    }
}

impl<T: Clone, U: Clone, E: Clone> Answer for Responses<T, U, E> {
    type Stamp = Option<Stamp>;

    #[inline]
    fn stamp(&self, budget: Option<&Shared>) -> Option<Stamp> {
        self.headers.stamp(|| Some(Snapshot::read(budget?)))
    }

    #[inline]
    fn stamp_key<K: 'static>(&self, keyed: &KeyedShared<K>, key: &K) -> Option<Stamp> {
        self.headers
            .stamp(|| Some(Snapshot::read_keyed(keyed, key)))
    }
}

impl<B, Er, T, U, E> Respond<Result<Response<B>, Er>> for Responses<T, U, E>
where
    T: OnThrottled<B> + Clone,
    U: OnUnavailable<B> + Clone,
    E: Clone,
{
    type Response = Response<B>;
    type Error = Er;

    #[cold]
    fn refused(&self, refusal: Refusal, stamp: &Option<Stamp>) -> Result<Response<B>, Er> {
        Ok(match refusal {
            Refusal::Throttled(shed) => reject::throttled(&self.on_throttled, shed, stamp.as_ref()),
            Refusal::Unavailable(down) => reject::unavailable(&self.on_unavailable, down),
        })
    }

    #[inline]
    fn done(stamp: &Option<Stamp>, output: Result<Response<B>, Er>) -> Result<Response<B>, Er> {
        let mut response = output?;
        if let Some(stamp) = stamp {
            stamp.write(response.headers_mut());
        }
        Ok(response)
    }

    #[inline(always)]
    fn fail(error: Er) -> Er {
        error
    }

    #[cold]
    fn polled_again() -> Result<Response<B>, Er> {
        panic!("response future polled after completion")
    }
}

impl<B, Er, T, U, E> RespondKey<Result<Response<B>, Er>> for Responses<T, U, E>
where
    T: OnThrottled<B> + Clone,
    U: OnUnavailable<B> + Clone,
    E: OnKeyError<B> + Clone,
{
    #[cold]
    fn no_key(&self, error: KeyError) -> Result<Response<B>, Er> {
        Ok(reject::key_error(&self.on_key_error, error))
    }

    /// A request at fault, as one without a key: `400 Bad Request` by
    /// default, saying what it costs and what the limit holds.
    #[cold]
    fn too_costly(&self, error: fueltank::Error) -> Result<Response<B>, Er> {
        let mut response =
            reject::key_error(&self.on_key_error, KeyError::Other(error.to_string()));
        response.extensions_mut().insert(error);
        Ok(response)
    }
}

/// `Retry-After` in whole seconds: rounded up, and at least 1, so that a
/// client never retries at once into the same empty tank.
pub(crate) fn retry_after_secs(wait: Duration) -> u64 {
    ceil_secs(wait).max(1)
}

/// `name` as a structured-field string (RFC 8941 §3.3.3), quotes included.
pub(crate) fn sf_string(name: &str) -> Arc<str> {
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
