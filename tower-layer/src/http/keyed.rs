//! [`HttpKeyedThrottleLayer`]: per-key limits that answer 429 themselves,
//! with the `RateLimit` headers of the request's own key.

use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use fueltank::{AwaitKey, KeyedTank, Monitor};
use http::{Request, Response};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use super::{HeaderStyle, Snapshot, Stamp, no_key, sf_string, too_many_requests};
use crate::emit::{self, Emission};
use crate::key::{KeyError, KeyExtractor};
use crate::keyed::{Admit, KeyedGate, take_ready};
use crate::{KeyedThrottleLayer, Throttled};

/// A Tower layer for HTTP services with one budget per key: a request
/// whose key has no fuel gets `429 Too Many Requests` with `Retry-After`
/// (in reject mode), and every response gets the `RateLimit` headers of
/// its key. Made by [`KeyedThrottleLayer::http`].
///
/// The header values are those of [the module](crate::http), read from the
/// request's key: `RateLimit-Remaining` is the key's fuel left
/// ([`KeyedTank::level`]), `Retry-After` the key's wait for one fuel and
/// `RateLimit-Reset` its wait until full ([`KeyedTank::wait_time`]).
///
/// A request whose key cannot be read is not let through, and takes no
/// fuel: it gets `400 Bad Request` (the header the key comes from is
/// missing or malformed), or `500 Internal Server Error` for
/// [`KeyError::NoPeerAddress`] (the server does not pass the peer address:
/// a setup error, not the client's). Either has an empty body, no
/// `RateLimit` headers, and the [`KeyError`] in its extensions for an outer
/// layer to log or rewrite. To fall back to another key instead, combine
/// extractors with `or`.
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
pub struct HttpKeyedThrottleLayer<K, X> {
    gate: KeyedGate<K, X>,
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
    pub fn http(self) -> HttpKeyedThrottleLayer<K, X> {
        HttpKeyedThrottleLayer::from(self)
    }
}

impl<K, X> From<KeyedThrottleLayer<K, X>> for HttpKeyedThrottleLayer<K, X> {
    /// [`KeyedThrottleLayer::http`].
    fn from(layer: KeyedThrottleLayer<K, X>) -> HttpKeyedThrottleLayer<K, X> {
        HttpKeyedThrottleLayer { gate: layer.gate }
    }
}

impl<K, X> HttpKeyedThrottleLayer<K, X> {
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
    pub fn headers(mut self, style: HeaderStyle) -> HttpKeyedThrottleLayer<K, X> {
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
    pub fn policy_name(mut self, name: &str) -> HttpKeyedThrottleLayer<K, X> {
        self.gate.headers.policy = sf_string(name);
        self
    }

    /// The keyed tank this layer draws on.
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
    /// assert_eq!(layer.keyed().rate().max_n(), 10);
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn keyed(&self) -> &KeyedTank<K> {
        &self.gate.keyed
    }
}

impl<K, X: Clone> Clone for HttpKeyedThrottleLayer<K, X> {
    fn clone(&self) -> HttpKeyedThrottleLayer<K, X> {
        HttpKeyedThrottleLayer {
            gate: self.gate.clone(),
        }
    }
}

impl<K, X: fmt::Debug> fmt::Debug for HttpKeyedThrottleLayer<K, X> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpKeyedThrottleLayer")
            .field("gate", &self.gate)
            .finish()
    }
}

impl<S, K, X: Clone> Layer<S> for HttpKeyedThrottleLayer<K, X> {
    type Service = HttpKeyedThrottleService<S, K, X>;

    fn layer(&self, inner: S) -> HttpKeyedThrottleService<S, K, X> {
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
///     .layer(service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(())) }));
/// let request = Request::builder().header("x-real-ip", "192.0.2.9").body(())?;
/// let response = svc.clone().oneshot(request).await?;
/// assert_eq!(response.headers()["ratelimit-remaining"], "9");
/// // No header, no key: 400, and the inner service is not called.
/// let response = svc.oneshot(Request::new(())).await?;
/// assert_eq!(response.status(), StatusCode::BAD_REQUEST);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub struct HttpKeyedThrottleService<S, K, X> {
    inner: S,
    gate: Arc<KeyedGate<K, X>>,
}

impl<S, K, X> HttpKeyedThrottleService<S, K, X> {
    /// The keyed tank this service draws on.
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
    /// assert!(svc.keyed().is_empty());
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn keyed(&self) -> &KeyedTank<K> {
        &self.gate.keyed
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

impl<S: Clone, K, X> Clone for HttpKeyedThrottleService<S, K, X> {
    fn clone(&self) -> HttpKeyedThrottleService<S, K, X> {
        HttpKeyedThrottleService {
            inner: self.inner.clone(),
            gate: self.gate.clone(),
        }
    }
}

impl<S: fmt::Debug, K, X: fmt::Debug> fmt::Debug for HttpKeyedThrottleService<S, K, X> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpKeyedThrottleService")
            .field("inner", &self.inner)
            .field("gate", &self.gate)
            .finish()
    }
}

impl<S, K, X, ReqBody, ResBody> Service<Request<ReqBody>> for HttpKeyedThrottleService<S, K, X>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    ResBody: Default,
    K: Hash + Eq + Clone + Send + Sync + 'static,
    X: KeyExtractor<Request<ReqBody>, Key = K>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = HttpKeyedResponseFuture<S, Request<ReqBody>, K>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let gate = &*self.gate;
        let keyed = &gate.keyed;
        let mut stamp = None;
        let state = match gate.key(&request) {
            Err(error) => State::NoKey { error: Some(error) },
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
                Admit::Wait => State::Waiting {
                    read_after: gate
                        .headers
                        .plan()
                        .map(|policy| (keyed.clone(), key.clone(), policy)),
                    wait: keyed.await_fuel(key),
                    call: Some((take_ready(&mut self.inner), request)),
                    emission: gate.emission.clone(),
                },
                Admit::Shed(throttled) => {
                    stamp = gate
                        .headers
                        .stamp(|| Some(Snapshot::read_keyed(keyed, &key)));
                    State::Shed { throttled }
                }
            },
        };
        HttpKeyedResponseFuture { state, stamp }
    }
}

pin_project! {
    /// The response future of [`HttpKeyedThrottleService`]: waits for the
    /// key's fuel if needed (wait mode), then runs the inner service and
    /// adds the key's `RateLimit` headers; or answers 429 or 400 at once.
    ///
    /// # Cancel safety
    ///
    /// Dropped while waiting for its key's fuel, it leaves the key's line
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
    ///     .layer(service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(())) }));
    /// let request = Request::builder().header("x-real-ip", "192.0.2.9").body(())?;
    /// let future: HttpKeyedResponseFuture<_, _, _> = svc.ready().await?.call(request);
    /// assert!(future.await?.status().is_success());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    #[must_use = "futures do nothing unless polled"]
    pub struct HttpKeyedResponseFuture<S, Request, K>
    where
        S: Service<Request>,
    {
        #[pin]
        state: State<S, Request, K>,
        stamp: Option<Stamp>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, Request, K>
    where
        S: Service<Request>,
    {
        Waiting {
            #[pin]
            wait: AwaitKey<K>,
            call: Option<(S, Request)>,
            // The key, to read its headers once its fuel is taken, and
            // the policy name of the structured headers.
            read_after: Option<(KeyedTank<K>, K, Option<Arc<str>>)>,
            emission: Emission,
        },
        Called {
            #[pin]
            future: S::Future,
            on_success: Option<Monitor>,
        },
        Shed {
            throttled: Throttled,
        },
        NoKey {
            error: Option<KeyError>,
        },
    }
}

impl<S, Request, K, ResBody> Future for HttpKeyedResponseFuture<S, Request, K>
where
    S: Service<Request, Response = Response<ResBody>>,
    ResBody: Default,
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    type Output = Result<Response<ResBody>, S::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let this = self.as_mut().project();
            let mut state = this.state;
            let mut response = match state.as_mut().project() {
                StateProj::Waiting {
                    wait,
                    call,
                    read_after,
                    emission,
                } => {
                    ready!(wait.poll(cx));
                    let on_success = emission.fueled();
                    if let Some((keyed, key, policy)) = read_after.take() {
                        let snapshot = Snapshot::read_keyed(&keyed, &key);
                        *this.stamp = Some(Stamp { snapshot, policy });
                    }
                    let Some((mut inner, request)) = call.take() else {
                        panic!("HttpKeyedResponseFuture polled after completion");
                    };
                    state.set(State::Called {
                        future: inner.call(request),
                        on_success,
                    });
                    continue;
                }
                StateProj::Called { future, on_success } => {
                    let response = ready!(future.poll(cx))?;
                    emit::succeeded(on_success);
                    response
                }
                StateProj::Shed { throttled } => too_many_requests::<ResBody>(*throttled),
                StateProj::NoKey { error } => {
                    let error = error.take().unwrap_or(KeyError::Other(
                        "HttpKeyedResponseFuture polled after completion".to_string(),
                    ));
                    return Poll::Ready(Ok(no_key(error)));
                }
            };
            if let Some(stamp) = this.stamp {
                stamp.write(response.headers_mut());
            }
            return Poll::Ready(Ok(response));
        }
    }
}

impl<S: Service<Request>, Request, K> fmt::Debug for HttpKeyedResponseFuture<S, Request, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.state {
            State::Waiting { .. } => f.write_str("HttpKeyedResponseFuture::Waiting"),
            State::Called { .. } => f.write_str("HttpKeyedResponseFuture::Called"),
            State::Shed { throttled } => f
                .debug_tuple("HttpKeyedResponseFuture::Shed")
                .field(throttled)
                .finish(),
            State::NoKey { error } => f
                .debug_tuple("HttpKeyedResponseFuture::NoKey")
                .field(error)
                .finish(),
        }
    }
}
