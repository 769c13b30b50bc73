//! [`HttpKeyedThrottleLayer`]: per-key limits that answer 429 themselves,
//! with the `RateLimit` headers of the request's own key.

use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use fueltank::{KeyedTank, Monitor};
use http::{Request, Response};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use super::reject::{self, OnKeyError, OnThrottled, OnUnavailable, PlainText};
use super::{HeaderStyle, Snapshot, Stamp, sf_string};
use crate::budget::KeyedShared;
use crate::emit;
use crate::key::{KeyError, KeyExtractor};
use crate::keyed::{Admit, KeyWaiting, KeyedGate, take_ready};
use crate::{KeyedThrottleLayer, Throttled};
use fueltank::BudgetWait;

/// A Tower layer for HTTP services with one budget per key: a request
/// whose key has no fuel gets `429 Too Many Requests` with `Retry-After`
/// (in reject mode, or beyond [`max_wait`](KeyedThrottleLayer::max_wait)),
/// and every response gets the `RateLimit` headers of its key. Made by
/// [`KeyedThrottleLayer::http`].
///
/// The header values are those of [the module](crate::http), read from the
/// request's key: `RateLimit-Remaining` is the key's fuel left
/// ([`KeyedTank::level`]), `Retry-After` the key's wait for one fuel and
/// `RateLimit-Reset` its wait until full ([`KeyedTank::wait_time`]).
///
/// A request whose key cannot be read is not let through, and takes no
/// fuel: it gets `400 Bad Request` (the header the key comes from is
/// missing or malformed), or `500 Internal Server Error` when the server's
/// setup is at fault ([`KeyError::is_setup_error`]: no peer address passed,
/// no trusted proxy configured). The body says why, in plain text
/// ([`PlainText`]), or is built by your closure
/// ([`on_key_error`](HttpKeyedThrottleLayer::on_key_error)); the response
/// has no `RateLimit` headers, and the [`KeyError`] in its extensions for
/// an outer layer to log or rewrite. To fall back to another key instead,
/// combine extractors with `or`.
///
/// A shed request's 429 is built the same way: [`PlainText`] by default,
/// or your closure ([`on_throttled`](HttpKeyedThrottleLayer::on_throttled)).
/// A request refused because the budget's store is down
/// ([`KeyedBudget::unavailable`](crate::KeyedBudget::unavailable)) gets a
/// `503` instead, naming the store, without `RateLimit` headers
/// ([`on_unavailable`](HttpKeyedThrottleLayer::on_unavailable)).
///
/// Its services have the inner service's error type, so axum needs no
/// `HandleErrorLayer`; the inner service must be `Clone` (see
/// [`KeyedThrottleLayer`]).
///
/// # Examples
///
/// ```
/// use fueltank::{KeyedTank, Rate};
/// use fueltank_tower::KeyedThrottleLayer;
/// use fueltank_tower::key::PeerIp;
/// use http::{Request, Response, StatusCode};
/// use std::convert::Infallible;
/// use std::net::{IpAddr, SocketAddr};
/// use tower::{Layer, Service, ServiceExt, service_fn};
///
/// # futures::executor::block_on(async {
/// let per_ip = KeyedTank::<IpAddr>::new(Rate::per_minute(2)?);
/// let mut svc = KeyedThrottleLayer::new(per_ip, PeerIp.ipv6_net64())
///     .reject()
///     .http()
///     .layer(service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(String::new())) }));
/// let from = |peer: &str| {
///     let mut request = Request::new(());
///     request.extensions_mut().insert(peer.parse::<SocketAddr>().unwrap());
///     request
/// };
///
/// let ok = svc.ready().await?.call(from("192.0.2.1:5000")).await?;
/// assert_eq!(ok.headers()["ratelimit-remaining"], "1");
/// svc.ready().await?.call(from("192.0.2.1:5001")).await?;
/// let shed = svc.ready().await?.call(from("192.0.2.1:5002")).await?;
/// assert_eq!(shed.status(), StatusCode::TOO_MANY_REQUESTS);
/// assert_eq!(shed.headers()["retry-after"], "30");
/// let other = svc.ready().await?.call(from("192.0.2.2:5000")).await?;
/// assert_eq!(other.headers()["ratelimit-remaining"], "1"); // its own budget
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub struct HttpKeyedThrottleLayer<K, X, T = PlainText, E = PlainText, U = PlainText> {
    gate: KeyedGate<K, X, (T, E, U)>,
}

impl<K, X> KeyedThrottleLayer<K, X> {
    /// This layer for HTTP services: a shed request gets a `429 Too Many
    /// Requests` response with `Retry-After` instead of an error, a request
    /// without a key a `400` (see [`HttpKeyedThrottleLayer`]), and every
    /// response the `RateLimit` headers of its key.
    ///
    /// # Examples
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
    pub fn http(self) -> HttpKeyedThrottleLayer<K, X> {
        HttpKeyedThrottleLayer::from(self)
    }
}

impl<K, X> From<KeyedThrottleLayer<K, X>> for HttpKeyedThrottleLayer<K, X> {
    /// [`KeyedThrottleLayer::http`].
    fn from(layer: KeyedThrottleLayer<K, X>) -> HttpKeyedThrottleLayer<K, X> {
        HttpKeyedThrottleLayer {
            gate: layer
                .gate
                .map_respond(|()| (PlainText, PlainText, PlainText)),
        }
    }
}

impl<K, X, T, E, U> HttpKeyedThrottleLayer<K, X, T, E, U> {
    /// Which `RateLimit` headers to send: [`HeaderStyle::Split`] (the
    /// default), [`HeaderStyle::Structured`] or [`HeaderStyle::Off`].
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{KeyedTank, Rate};
    /// use fueltank_tower::KeyedThrottleLayer;
    /// use fueltank_tower::http::HeaderStyle;
    /// use fueltank_tower::key::PeerIp;
    /// use std::net::IpAddr;
    ///
    /// let layer = KeyedThrottleLayer::new(KeyedTank::<IpAddr>::new(Rate::per_second(10)?), PeerIp)
    ///     .http()
    ///     .headers(HeaderStyle::Structured);
    /// # let _ = layer;
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn headers(mut self, style: HeaderStyle) -> HttpKeyedThrottleLayer<K, X, T, E, U> {
        self.gate.headers.style = style;
        self
    }

    /// The policy name in the structured headers (default `"default"`);
    /// escaped as for [`HttpThrottleLayer::policy_name`](super::HttpThrottleLayer::policy_name).
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{KeyedTank, Rate};
    /// use fueltank_tower::KeyedThrottleLayer;
    /// use fueltank_tower::http::HeaderStyle;
    /// use fueltank_tower::key::PeerIp;
    /// use std::net::IpAddr;
    ///
    /// let layer = KeyedThrottleLayer::new(KeyedTank::<IpAddr>::new(Rate::per_second(10)?), PeerIp)
    ///     .http()
    ///     .headers(HeaderStyle::Structured)
    ///     .policy_name("per-ip");
    /// # let _ = layer;
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn policy_name(mut self, name: &str) -> HttpKeyedThrottleLayer<K, X, T, E, U> {
        self.gate.headers.policy = sf_string(name);
        self
    }

    /// Builds the response to a shed request with `respond`, instead of
    /// the [`PlainText`] default; the layer then adds `Retry-After`
    /// (unless `respond` set one), the key's `RateLimit` headers, and the
    /// [`Throttled`] error to the response's extensions. See
    /// [`HttpThrottleLayer::on_throttled`](super::HttpThrottleLayer::on_throttled).
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{KeyedTank, Rate};
    /// use fueltank_tower::{KeyedThrottleLayer, Throttled};
    /// use fueltank_tower::key::ForwardedIp;
    /// use http::{Request, Response, StatusCode};
    /// use std::convert::Infallible;
    /// use std::net::IpAddr;
    /// use tower::{Layer, Service, ServiceExt, service_fn};
    ///
    /// # futures::executor::block_on(async {
    /// let mut svc = KeyedThrottleLayer::new(KeyedTank::<IpAddr>::new(Rate::per_minute(1)?), ForwardedIp::x_real_ip())
    ///     .reject()
    ///     .report_key()
    ///     .http()
    ///     .on_throttled(|shed: &Throttled| {
    ///         let mut response = Response::new(format!("slow down, {}\n", shed.key().unwrap_or("you")));
    ///         *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    ///         response
    ///     })
    ///     .layer(service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(String::new())) }));
    /// let from = |ip: &str| Request::builder().header("x-real-ip", ip).body(()).unwrap();
    /// svc.ready().await?.call(from("192.0.2.1")).await?;
    /// let shed = svc.ready().await?.call(from("192.0.2.1")).await?;
    /// assert_eq!(shed.status(), StatusCode::SERVICE_UNAVAILABLE);
    /// assert_eq!(shed.body(), "slow down, 192.0.2.1\n");
    /// assert_eq!(shed.headers()["retry-after"], "60");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn on_throttled<F, B>(self, respond: F) -> HttpKeyedThrottleLayer<K, X, F, E, U>
    where
        F: Fn(&Throttled) -> Response<B>,
    {
        HttpKeyedThrottleLayer {
            gate: self.gate.map_respond(|(_, on_key_error, on_unavailable)| {
                (respond, on_key_error, on_unavailable)
            }),
        }
    }

    /// Builds the response to a request refused because the budget's store
    /// is down ([`Unavailable`](crate::Unavailable), see
    /// [`KeyedBudget::unavailable`](crate::KeyedBudget::unavailable)) with
    /// `respond`, instead of the [`PlainText`] default (`503 Service
    /// Unavailable` naming the store); the layer then adds `Retry-After`
    /// (unless `respond` set one) and the error to the response's
    /// extensions, and no `RateLimit` headers. See
    /// [`HttpThrottleLayer::on_unavailable`](super::HttpThrottleLayer::on_unavailable).
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{KeyedTank, Rate};
    /// use fueltank_tower::{KeyedThrottleLayer, Unavailable};
    /// use fueltank_tower::key::PeerIp;
    /// use http::{Response, StatusCode};
    /// use std::net::IpAddr;
    ///
    /// // A local keyed tank is never unavailable; a Redis one can be.
    /// let layer = KeyedThrottleLayer::new(KeyedTank::<IpAddr>::new(Rate::per_second(10)?), PeerIp)
    ///     .http()
    ///     .on_unavailable(|down: &Unavailable| {
    ///         let mut response = Response::new(format!("try again soon ({} is down)\n", down.store()));
    ///         *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    ///         response
    ///     });
    /// # let _ = layer;
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn on_unavailable<F, B>(self, respond: F) -> HttpKeyedThrottleLayer<K, X, T, E, F>
    where
        F: Fn(&crate::Unavailable) -> Response<B>,
    {
        HttpKeyedThrottleLayer {
            gate: self.gate.map_respond(|(on_throttled, on_key_error, _)| {
                (on_throttled, on_key_error, respond)
            }),
        }
    }

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
    pub fn on_key_error<F, B>(self, respond: F) -> HttpKeyedThrottleLayer<K, X, T, F, U>
    where
        F: Fn(&KeyError) -> Response<B>,
    {
        HttpKeyedThrottleLayer {
            gate: self.gate.map_respond(|(on_throttled, _, on_unavailable)| {
                (on_throttled, respond, on_unavailable)
            }),
        }
    }

    /// The keyed tank this layer draws on; `None` for another
    /// [`KeyedBudget`](crate::KeyedBudget).
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{KeyedTank, Rate};
    /// use fueltank_tower::KeyedThrottleLayer;
    /// use fueltank_tower::key::PeerIp;
    /// use std::net::IpAddr;
    ///
    /// let layer = KeyedThrottleLayer::new(KeyedTank::<IpAddr>::new(Rate::per_second(10)?), PeerIp).http();
    /// assert_eq!(layer.keyed().map(|keyed| keyed.rate().max_n()), Some(10));
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn keyed(&self) -> Option<&KeyedTank<K>>
    where
        K: 'static,
    {
        crate::budget::keyed_tank(&self.gate.keyed)
    }
}

impl<K, X: Clone, T: Clone, E: Clone, U: Clone> Clone for HttpKeyedThrottleLayer<K, X, T, E, U> {
    fn clone(&self) -> HttpKeyedThrottleLayer<K, X, T, E, U> {
        HttpKeyedThrottleLayer {
            gate: self.gate.clone(),
        }
    }
}

impl<K, X: fmt::Debug, T, E, U> fmt::Debug for HttpKeyedThrottleLayer<K, X, T, E, U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpKeyedThrottleLayer")
            .field("gate", &self.gate)
            .finish()
    }
}

impl<S, K, X: Clone, T: Clone, E: Clone, U: Clone> Layer<S>
    for HttpKeyedThrottleLayer<K, X, T, E, U>
{
    type Service = HttpKeyedThrottleService<S, K, X, T, E, U>;

    fn layer(&self, inner: S) -> HttpKeyedThrottleService<S, K, X, T, E, U> {
        HttpKeyedThrottleService {
            inner,
            gate: Arc::new(self.gate.clone()),
        }
    }
}

/// The service made by [`HttpKeyedThrottleLayer`]: per-key limits with
/// 429s, 400s for requests without a key, and per-key `RateLimit` headers.
///
/// `Clone` shares the keyed tank. Its error type is the inner service's.
///
/// # Examples
///
/// ```
/// use fueltank::{KeyedTank, Rate};
/// use fueltank_tower::KeyedThrottleLayer;
/// use fueltank_tower::key::ForwardedIp;
/// use http::{Request, Response, StatusCode};
/// use std::convert::Infallible;
/// use std::net::IpAddr;
/// use tower::{Layer, ServiceExt, service_fn};
///
/// # futures::executor::block_on(async {
/// let svc = KeyedThrottleLayer::new(KeyedTank::<IpAddr>::new(Rate::per_second(10)?), ForwardedIp::x_real_ip())
///     .http()
///     .layer(service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(String::new())) }));
/// let request = Request::builder().header("x-real-ip", "192.0.2.9").body(())?;
/// let response = svc.clone().oneshot(request).await?;
/// assert_eq!(response.headers()["ratelimit-remaining"], "9");
/// // No header, no key: 400, and the inner service is not called.
/// let response = svc.oneshot(Request::new(())).await?;
/// assert_eq!(response.status(), StatusCode::BAD_REQUEST);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub struct HttpKeyedThrottleService<S, K, X, T = PlainText, E = PlainText, U = PlainText> {
    inner: S,
    gate: Arc<KeyedGate<K, X, (T, E, U)>>,
}

impl<S, K, X, T, E, U> HttpKeyedThrottleService<S, K, X, T, E, U> {
    /// The keyed tank this service draws on; `None` for another
    /// [`KeyedBudget`](crate::KeyedBudget).
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{KeyedTank, Rate};
    /// use fueltank_tower::KeyedThrottleLayer;
    /// use fueltank_tower::key::PeerIp;
    /// use std::net::IpAddr;
    /// use tower::Layer;
    ///
    /// let svc = KeyedThrottleLayer::new(KeyedTank::<IpAddr>::new(Rate::per_second(10)?), PeerIp)
    ///     .http()
    ///     .layer(());
    /// assert!(svc.keyed().is_some_and(|keyed| keyed.is_empty()));
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn keyed(&self) -> Option<&KeyedTank<K>>
    where
        K: 'static,
    {
        crate::budget::keyed_tank(&self.gate.keyed)
    }

    /// The inner service.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{KeyedTank, Rate};
    /// use fueltank_tower::KeyedThrottleLayer;
    /// use fueltank_tower::key::PeerIp;
    /// use std::net::IpAddr;
    /// use tower::Layer;
    ///
    /// let svc = KeyedThrottleLayer::new(KeyedTank::<IpAddr>::new(Rate::per_second(10)?), PeerIp)
    ///     .http()
    ///     .layer(3_u8);
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
    /// use fueltank::{KeyedTank, Rate};
    /// use fueltank_tower::KeyedThrottleLayer;
    /// use fueltank_tower::key::PeerIp;
    /// use std::net::IpAddr;
    /// use tower::Layer;
    ///
    /// let mut svc = KeyedThrottleLayer::new(KeyedTank::<IpAddr>::new(Rate::per_second(10)?), PeerIp)
    ///     .http()
    ///     .layer(3_u8);
    /// *svc.get_mut() += 1;
    /// assert_eq!(svc.into_inner(), 4);
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, consuming this one.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{KeyedTank, Rate};
    /// use fueltank_tower::KeyedThrottleLayer;
    /// use fueltank_tower::key::PeerIp;
    /// use std::net::IpAddr;
    /// use tower::Layer;
    ///
    /// let svc = KeyedThrottleLayer::new(KeyedTank::<IpAddr>::new(Rate::per_second(10)?), PeerIp)
    ///     .http()
    ///     .layer("inner");
    /// assert_eq!(svc.into_inner(), "inner");
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, K, X, T, E, U> Clone for HttpKeyedThrottleService<S, K, X, T, E, U> {
    fn clone(&self) -> HttpKeyedThrottleService<S, K, X, T, E, U> {
        HttpKeyedThrottleService {
            inner: self.inner.clone(),
            gate: self.gate.clone(),
        }
    }
}

impl<S: fmt::Debug, K, X: fmt::Debug, T, E, U> fmt::Debug
    for HttpKeyedThrottleService<S, K, X, T, E, U>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpKeyedThrottleService")
            .field("inner", &self.inner)
            .field("gate", &self.gate)
            .finish()
    }
}

impl<S, K, X, T, E, U, ReqBody, ResBody> Service<Request<ReqBody>>
    for HttpKeyedThrottleService<S, K, X, T, E, U>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    K: Hash + Eq + Clone + Send + Sync + 'static,
    X: KeyExtractor<Request<ReqBody>, Key = K>,
    T: OnThrottled<ResBody> + Clone,
    E: OnKeyError<ResBody>,
    U: OnUnavailable<ResBody> + Clone,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = HttpKeyedResponseFuture<S, Request<ReqBody>, K, T, U>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let gate = &*self.gate;
        let keyed = &gate.keyed;
        let (on_throttled, on_key_error, on_unavailable) = &gate.respond;
        let mut stamp = None;
        let state = match gate.key(&request) {
            Err(error) => State::Answered {
                response: Some(reject::key_error(on_key_error, error)),
            },
            Ok(key) => match gate.admit(&key) {
                Admit::Now(on_success) => {
                    stamp = gate
                        .headers
                        .stamp(|| Some(Snapshot::read_keyed(keyed, &key)));
                    State::Called {
                        future: self.inner.call(request),
                        on_success,
                    }
                }
                Admit::Wait(waiting, wait) => State::Waiting {
                    read_after: gate
                        .headers
                        .plan()
                        .map(|policy| (keyed.clone(), key, policy)),
                    // A wait may end without the fuel (`max_wait`, a
                    // budget's store): then 429, or 503 if the store is down.
                    respond: Some((on_throttled.clone(), on_unavailable.clone())),
                    wait,
                    call: Some((take_ready(&mut self.inner), request, waiting)),
                },
                Admit::Shed(refusal) => {
                    let stamp = gate
                        .headers
                        .stamp(|| Some(Snapshot::read_keyed(keyed, &key)));
                    State::Answered {
                        response: Some(reject::refused(
                            (on_throttled, on_unavailable),
                            refusal,
                            stamp.as_ref(),
                        )),
                    }
                }
            },
        };
        HttpKeyedResponseFuture { state, stamp }
    }
}

pin_project! {
    /// The response future of [`HttpKeyedThrottleService`]: waits for the
    /// key's fuel if needed (wait mode), then runs the inner service and
    /// adds the key's `RateLimit` headers; or answers 429, 400 or 500 at
    /// once.
    ///
    /// # Cancel safety
    ///
    /// Dropped while waiting for its key's fuel, it leaves the key's line
    /// (and its place among the [`max_waiting`](KeyedThrottleLayer::max_waiting))
    /// and loses no fuel; the inner service is not called. Dropped after,
    /// the fuel was spent.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{KeyedTank, Rate};
    /// use fueltank_tower::KeyedThrottleLayer;
    /// use fueltank_tower::http::HttpKeyedResponseFuture;
    /// use fueltank_tower::key::ForwardedIp;
    /// use http::{Request, Response};
    /// use std::convert::Infallible;
    /// use std::net::IpAddr;
    /// use tower::{Layer, Service, ServiceExt, service_fn};
    ///
    /// # futures::executor::block_on(async {
    /// let mut svc = KeyedThrottleLayer::new(KeyedTank::<IpAddr>::new(Rate::per_second(10)?), ForwardedIp::x_real_ip())
    ///     .http()
    ///     .layer(service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(String::new())) }));
    /// let request = Request::builder().header("x-real-ip", "192.0.2.9").body(())?;
    /// let future: HttpKeyedResponseFuture<_, _, _> = svc.ready().await?.call(request);
    /// assert!(future.await?.status().is_success());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    #[must_use = "futures do nothing unless polled"]
    pub struct HttpKeyedResponseFuture<S, Request, K, T = PlainText, U = PlainText>
    where
        S: Service<Request>,
    {
        #[pin]
        state: State<S, Request, K, T, U>,
        stamp: Option<Stamp>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, Request, K, T, U>
    where
        S: Service<Request>,
    {
        Waiting {
            wait: BudgetWait,
            call: Option<(S, Request, KeyWaiting<K>)>,
            // The key, to read its headers once its fuel is taken, and
            // the policy name of the structured headers.
            read_after: Option<(KeyedShared<K>, K, Option<Arc<str>>)>,
            // What answers if the wait ends without the fuel.
            respond: Option<(T, U)>,
        },
        Called {
            #[pin]
            future: S::Future,
            on_success: Option<Monitor>,
        },
        // Answered in `call` (429, 400 or 500): taken by the one poll that
        // returns it.
        Answered {
            response: Option<S::Response>,
        },
    }
}

impl<S, Request, K, T, U, ResBody> Future for HttpKeyedResponseFuture<S, Request, K, T, U>
where
    S: Service<Request, Response = Response<ResBody>>,
    K: Hash + Eq + Clone + Send + Sync + 'static,
    T: OnThrottled<ResBody>,
    U: OnUnavailable<ResBody>,
{
    type Output = Result<Response<ResBody>, S::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let this = self.as_mut().project();
            let mut state = this.state;
            match state.as_mut().project() {
                StateProj::Waiting {
                    wait,
                    call,
                    read_after,
                    respond,
                } => {
                    let fueled = matches!(ready!(wait.as_mut().poll(cx)), Ok(Some(_)));
                    let Some((mut inner, request, waiting)) = call.take() else {
                        panic!("HttpKeyedResponseFuture polled after completion");
                    };
                    if let Some((keyed, key, policy)) = read_after.take() {
                        let snapshot = Snapshot::read_keyed(&keyed, &key);
                        *this.stamp = Some(Stamp { snapshot, policy });
                    }
                    if !fueled && let Some((on_throttled, on_unavailable)) = respond.take() {
                        let response = reject::refused(
                            (&on_throttled, &on_unavailable),
                            waiting.shed(),
                            this.stamp.as_ref(),
                        );
                        return Poll::Ready(Ok(response));
                    }
                    let on_success = waiting.fueled();
                    state.set(State::Called {
                        future: inner.call(request),
                        on_success,
                    });
                }
                StateProj::Called { future, on_success } => {
                    let mut response = ready!(future.poll(cx))?;
                    emit::succeeded(on_success);
                    if let Some(stamp) = this.stamp {
                        stamp.write(response.headers_mut());
                    }
                    return Poll::Ready(Ok(response));
                }
                StateProj::Answered { response } => match response.take() {
                    Some(response) => return Poll::Ready(Ok(response)),
                    None => panic!("HttpKeyedResponseFuture polled after completion"),
                },
            }
        }
    }
}

impl<S: Service<Request>, Request, K, T, U> fmt::Debug
    for HttpKeyedResponseFuture<S, Request, K, T, U>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match &self.state {
            State::Waiting { .. } => "HttpKeyedResponseFuture::Waiting",
            State::Called { .. } => "HttpKeyedResponseFuture::Called",
            State::Answered { .. } => "HttpKeyedResponseFuture::Answered",
        })
    }
}
