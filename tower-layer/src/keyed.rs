//! [`KeyedThrottleLayer`]: one budget per key (client address, user id, …)
//! over a [`fueltank::KeyedTank`].

use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use fueltank::{AwaitKey, KeyedTank, Monitor};
use pin_project_lite::pin_project;
use tower::{BoxError, Layer, Service};

use crate::Throttled;
use crate::emit::{self, Emission, EmitOn};
use crate::gate::Mode;
use crate::key::{KeyError, KeyExtractor};

/// A Tower [`Layer`] that gives every key its own budget: each request
/// spends one fuel from its key's tank in a shared [`KeyedTank`].
///
/// A [`KeyExtractor`] reads the key from the request: the client's address
/// ([`PeerIp`](crate::key::PeerIp), [`ForwardedIp`](crate::key::ForwardedIp),
/// feature `http`), a header, a user id ([`key_fn`](crate::key::key_fn)).
/// The keyed tank holds at most `max_keys` keys and forgets idle ones, so
/// memory stays bounded under a flood of new keys (see [`KeyedTank`]).
///
/// The key is known only in `call`, so the fuel is taken there:
///
/// | | wait (default) | [`reject`](KeyedThrottleLayer::reject) |
/// |---|---|---|
/// | `poll_ready` | the inner service's | the inner service's |
/// | `call`, the key has fuel | spends one, calls the inner service | spends one, calls the inner service |
/// | `call`, no fuel | the response future waits in the key's line, then calls the inner service | fails at once with [`Throttled`] |
/// | `call`, no key | fails at once with the [`KeyError`] | fails at once with the [`KeyError`] |
/// | error type | [`tower::BoxError`] | [`tower::BoxError`] |
///
/// Waiting happens in the response future, after `call` returned, so the
/// service must hand the inner service it made ready to that future: it
/// keeps a clone in its place, as tower's own middleware does. Hence the
/// inner service must be `Clone` (axum's routes are). A key waiting does
/// not hold up other keys. What the inner service's readiness reserves (a
/// `ConcurrencyLimit` permit, a `Buffer` slot) stays reserved while the
/// request waits for its key's fuel; in reject mode nothing waits.
///
/// A request without a key is not let through: an extractor error is the
/// request's error, boxed (find it by downcasting to [`KeyError`]), and
/// takes no fuel. To fall back to another key instead, combine extractors
/// with `or` (e.g. `ForwardedIp::x_forwarded_for().or(PeerIp)`). The HTTP
/// layer ([`http`](KeyedThrottleLayer::http), feature `http`) answers `400`
/// instead.
///
/// # Examples
///
/// ```
/// use fueltank::{KeyedTank, Rate};
/// use fueltank_tower::{KeyedThrottleLayer, Throttled};
/// use fueltank_tower::key::key_fn;
/// use tower::{Layer, Service, ServiceExt, service_fn};
///
/// # futures::executor::block_on(async {
/// // Requests are (user, payload); two requests per minute per user.
/// let per_user = KeyedTank::new(Rate::per_minute(2)?);
/// let by_user = key_fn(|request: &(&'static str, u32)| Ok(request.0));
/// let mut svc = KeyedThrottleLayer::new(per_user, by_user)
///     .reject()
///     .layer(service_fn(|(_, x): (&str, u32)| async move { Ok::<_, tower::BoxError>(x) }));
///
/// assert_eq!(svc.ready().await?.call(("ada", 1)).await?, 1);
/// assert_eq!(svc.ready().await?.call(("ada", 2)).await?, 2);
/// let shed = svc.ready().await?.call(("ada", 3)).await.unwrap_err();
/// assert!(shed.is::<Throttled>());
/// assert_eq!(svc.ready().await?.call(("bob", 4)).await?, 4); // bob has his own
/// # Ok::<(), tower::BoxError>(())
/// # }).unwrap();
/// ```
pub struct KeyedThrottleLayer<K, X> {
    pub(crate) gate: KeyedGate<K, X>,
}

impl<K, X> KeyedThrottleLayer<K, X> {
    /// A layer giving each key, as `extractor` reads it, its own tank in
    /// `keyed`; waiting for fuel, without statistics.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{KeyedTank, Rate};
    /// use fueltank_tower::KeyedThrottleLayer;
    /// use fueltank_tower::key::key_fn;
    ///
    /// let per_user = KeyedTank::<u64>::builder(Rate::per_second(5)?)
    ///     .max_keys(100_000)
    ///     .build()?;
    /// let layer = KeyedThrottleLayer::new(per_user, key_fn(|user: &u64| Ok(*user)));
    /// # let _ = layer;
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn new(keyed: KeyedTank<K>, extractor: X) -> KeyedThrottleLayer<K, X> {
        KeyedThrottleLayer {
            gate: KeyedGate {
                keyed,
                extractor,
                mode: Mode::Wait,
                emission: Emission::default(),
                #[cfg(feature = "http")]
                headers: crate::http::Headers::default(),
            },
        }
    }

    /// Sheds instead of waiting: `call` fails at once with [`Throttled`]
    /// (boxed into [`tower::BoxError`]) when the key has no fuel. Its
    /// [`retry_after`](Throttled::retry_after) is the key's own wait.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{KeyedTank, Rate, clock::ManualClock};
    /// use fueltank_tower::{KeyedThrottleLayer, Throttled};
    /// use fueltank_tower::key::key_fn;
    /// use std::time::Duration;
    /// use tower::{Layer, Service, ServiceExt, service_fn};
    ///
    /// # futures::executor::block_on(async {
    /// let keyed = KeyedTank::builder(Rate::per_second(4)?).clock(ManualClock::new()).build()?;
    /// let mut svc = KeyedThrottleLayer::new(keyed, key_fn(|key: &u8| Ok(*key)))
    ///     .reject()
    ///     .layer(service_fn(|_: u8| async { Ok::<_, tower::BoxError>(()) }));
    /// for _ in 0..4 {
    ///     svc.ready().await?.call(1).await?; // key 1 starts full: 4 fuel
    /// }
    /// let err = svc.ready().await?.call(1).await.unwrap_err();
    /// let throttled = err.downcast_ref::<Throttled>().unwrap();
    /// assert_eq!(throttled.retry_after(), Duration::from_millis(250));
    /// # Ok::<(), tower::BoxError>(())
    /// # }).unwrap();
    /// ```
    pub fn reject(mut self) -> KeyedThrottleLayer<K, X> {
        self.gate.mode = Mode::Reject;
        self
    }

    /// Counts every request let through (whatever its key) in `monitor`,
    /// once, at the time chosen by [`emit_on`](KeyedThrottleLayer::emit_on).
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{KeyedTank, Monitor, Rate};
    /// use fueltank_tower::KeyedThrottleLayer;
    /// use fueltank_tower::key::key_fn;
    /// use tower::{Layer, Service, ServiceExt, service_fn};
    ///
    /// # futures::executor::block_on(async {
    /// let monitor = Monitor::new();
    /// let mut svc = KeyedThrottleLayer::new(KeyedTank::new(Rate::per_second(100)?), key_fn(|k: &u8| Ok(*k)))
    ///     .monitor(monitor.clone())
    ///     .layer(service_fn(|_: u8| async { Ok::<_, tower::BoxError>(()) }));
    /// for key in [1, 2, 1] {
    ///     svc.ready().await?.call(key).await?;
    /// }
    /// assert_eq!(monitor.total(), 3);
    /// # Ok::<(), tower::BoxError>(())
    /// # }).unwrap();
    /// ```
    pub fn monitor(mut self, monitor: Monitor) -> KeyedThrottleLayer<K, X> {
        self.gate.emission.monitor = Some(monitor);
        self
    }

    /// When to count a request in the [`monitor`](KeyedThrottleLayer::monitor):
    /// when it takes its fuel ([`EmitOn::Fuel`], the default) or when its
    /// response succeeds ([`EmitOn::Success`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{KeyedTank, Monitor, Rate};
    /// use fueltank_tower::{EmitOn, KeyedThrottleLayer};
    /// use fueltank_tower::key::key_fn;
    ///
    /// let layer = KeyedThrottleLayer::new(KeyedTank::<u8>::new(Rate::per_second(100)?), key_fn(|k: &u8| Ok(*k)))
    ///     .monitor(Monitor::new())
    ///     .emit_on(EmitOn::Success);
    /// # let _ = layer;
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn emit_on(mut self, when: EmitOn) -> KeyedThrottleLayer<K, X> {
        self.gate.emission.on = when;
        self
    }

    /// The keyed tank this layer draws on.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{KeyedTank, Rate};
    /// use fueltank_tower::KeyedThrottleLayer;
    /// use fueltank_tower::key::key_fn;
    ///
    /// let layer = KeyedThrottleLayer::new(KeyedTank::<u8>::new(Rate::per_second(5)?), key_fn(|k: &u8| Ok(*k)));
    /// assert_eq!(layer.keyed().rate().max_n(), 5);
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn keyed(&self) -> &KeyedTank<K> {
        &self.gate.keyed
    }

    /// The key extractor.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{KeyedTank, Rate};
    /// use fueltank_tower::KeyedThrottleLayer;
    /// use fueltank_tower::key::{KeyExtractor, key_fn};
    ///
    /// let layer = KeyedThrottleLayer::new(KeyedTank::<u8>::new(Rate::per_second(5)?), key_fn(|k: &u8| Ok(*k)));
    /// assert_eq!(layer.extractor().extract(&7), Ok(7));
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn extractor(&self) -> &X {
        &self.gate.extractor
    }
}

impl<K, X: Clone> Clone for KeyedThrottleLayer<K, X> {
    fn clone(&self) -> KeyedThrottleLayer<K, X> {
        KeyedThrottleLayer {
            gate: self.gate.clone(),
        }
    }
}

impl<K, X: fmt::Debug> fmt::Debug for KeyedThrottleLayer<K, X> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedThrottleLayer")
            .field("gate", &self.gate)
            .finish()
    }
}

impl<S, K, X: Clone> Layer<S> for KeyedThrottleLayer<K, X> {
    type Service = KeyedThrottleService<S, K, X>;

    fn layer(&self, inner: S) -> KeyedThrottleService<S, K, X> {
        KeyedThrottleService {
            inner,
            gate: Arc::new(self.gate.clone()),
        }
    }
}

/// What the keyed services share, behind one `Arc` (one reference count
/// per clone of a service): the keyed tank, the extractor, the mode, the
/// emission and the HTTP layer's headers.
pub(crate) struct KeyedGate<K, X> {
    pub(crate) keyed: KeyedTank<K>,
    pub(crate) extractor: X,
    pub(crate) mode: Mode,
    pub(crate) emission: Emission,
    #[cfg(feature = "http")]
    pub(crate) headers: crate::http::Headers,
}

/// What `call` decided for a request with a key.
pub(crate) enum Admit {
    /// The key had fuel: taken (and emitted, at fuel time); the monitor to
    /// emit on success, if that is when.
    Now(Option<Monitor>),
    /// Wait mode, no fuel now: wait in the key's line.
    Wait,
    /// Reject mode, no fuel.
    Shed(Throttled),
}

impl<K, X> KeyedGate<K, X>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    /// The key of `request`.
    #[inline]
    pub(crate) fn key<R>(&self, request: &R) -> Result<K, KeyError>
    where
        X: KeyExtractor<R, Key = K>,
    {
        self.extractor.extract(request)
    }

    /// Takes one fuel for `key` if there is one now.
    #[inline]
    pub(crate) fn admit(&self, key: &K) -> Admit {
        if self.keyed.has_fuel(key) {
            return Admit::Now(self.emission.fueled());
        }
        match self.mode {
            Mode::Wait => Admit::Wait,
            Mode::Reject => Admit::Shed(self.throttled(key)),
        }
    }

    #[cold]
    fn throttled(&self, key: &K) -> Throttled {
        let keyed = &self.keyed;
        Throttled::new(
            keyed
                .wait_time(key, 1)
                .unwrap_or_else(|| keyed.rate().interval()),
        )
    }
}

impl<K, X: Clone> Clone for KeyedGate<K, X> {
    fn clone(&self) -> KeyedGate<K, X> {
        KeyedGate {
            keyed: self.keyed.clone(),
            extractor: self.extractor.clone(),
            mode: self.mode,
            emission: self.emission.clone(),
            #[cfg(feature = "http")]
            headers: self.headers.clone(),
        }
    }
}

impl<K, X: fmt::Debug> fmt::Debug for KeyedGate<K, X> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedGate")
            .field("keyed", &self.keyed)
            .field("extractor", &self.extractor)
            .field("mode", &self.mode)
            .field("emission", &self.emission)
            .finish()
    }
}

/// The service made by [`KeyedThrottleLayer`]: each request spends one fuel
/// from its key's tank.
///
/// `poll_ready` is the inner service's; `call` reads the key and takes the
/// fuel (see [the layer](KeyedThrottleLayer) for what happens without).
/// `Clone` shares the keyed tank. Its error type is [`tower::BoxError`]:
/// the inner service's errors, [`Throttled`] or [`KeyError`], found by
/// downcasting.
///
/// # Examples
///
/// ```
/// use fueltank::{KeyedTank, Rate};
/// use fueltank_tower::{KeyedThrottleLayer, KeyedThrottleService};
/// use fueltank_tower::key::{KeyError, key_fn};
/// use tower::{Layer, ServiceExt, service_fn};
///
/// # futures::executor::block_on(async {
/// let by_name = key_fn(|name: &String| match name.is_empty() {
///     true => Err(KeyError::Other("an empty name has no budget".into())),
///     false => Ok(name.clone()),
/// });
/// let svc: KeyedThrottleService<_, String, _> =
///     KeyedThrottleLayer::new(KeyedTank::new(Rate::per_second(10)?), by_name)
///         .layer(service_fn(|name: String| async move { Ok::<_, tower::BoxError>(name.len()) }));
/// assert_eq!(svc.clone().oneshot("ada".to_string()).await?, 3);
/// let err = svc.oneshot(String::new()).await.unwrap_err();
/// assert!(err.is::<KeyError>());
/// # Ok::<(), tower::BoxError>(())
/// # }).unwrap();
/// ```
pub struct KeyedThrottleService<S, K, X> {
    inner: S,
    gate: Arc<KeyedGate<K, X>>,
}

impl<S, K, X> KeyedThrottleService<S, K, X> {
    /// The keyed tank this service draws on.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{KeyedTank, Rate};
    /// use fueltank_tower::KeyedThrottleLayer;
    /// use fueltank_tower::key::key_fn;
    /// use tower::Layer;
    ///
    /// let svc = KeyedThrottleLayer::new(KeyedTank::<u8>::new(Rate::per_second(5)?), key_fn(|k: &u8| Ok(*k)))
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
    /// use fueltank_tower::key::key_fn;
    /// use tower::Layer;
    ///
    /// let svc = KeyedThrottleLayer::new(KeyedTank::<u8>::new(Rate::per_second(5)?), key_fn(|k: &u8| Ok(*k)))
    ///     .layer(7_u8);
    /// assert_eq!(*svc.get_ref(), 7);
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
    /// use fueltank_tower::key::key_fn;
    /// use tower::Layer;
    ///
    /// let mut svc = KeyedThrottleLayer::new(KeyedTank::<u8>::new(Rate::per_second(5)?), key_fn(|k: &u8| Ok(*k)))
    ///     .layer(7_u8);
    /// *svc.get_mut() += 1;
    /// assert_eq!(svc.into_inner(), 8);
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
    /// use fueltank_tower::key::key_fn;
    /// use tower::Layer;
    ///
    /// let svc = KeyedThrottleLayer::new(KeyedTank::<u8>::new(Rate::per_second(5)?), key_fn(|k: &u8| Ok(*k)))
    ///     .layer("inner");
    /// assert_eq!(svc.into_inner(), "inner");
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, K, X> Clone for KeyedThrottleService<S, K, X> {
    fn clone(&self) -> KeyedThrottleService<S, K, X> {
        KeyedThrottleService {
            inner: self.inner.clone(),
            gate: self.gate.clone(),
        }
    }
}

impl<S: fmt::Debug, K, X: fmt::Debug> fmt::Debug for KeyedThrottleService<S, K, X> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedThrottleService")
            .field("inner", &self.inner)
            .field("gate", &self.gate)
            .finish()
    }
}

/// Swaps a clone of the ready `inner` into its place and returns the ready
/// one, for a future to call later (tower's contract: the service called
/// must be the one made ready).
#[inline]
pub(crate) fn take_ready<S: Clone>(inner: &mut S) -> S {
    let clone = inner.clone();
    std::mem::replace(inner, clone)
}

impl<S, K, X, Request> Service<Request> for KeyedThrottleService<S, K, X>
where
    S: Service<Request> + Clone,
    S::Error: Into<BoxError>,
    K: Hash + Eq + Clone + Send + Sync + 'static,
    X: KeyExtractor<Request, Key = K>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = KeyedResponseFuture<S, Request, K>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, request: Request) -> KeyedResponseFuture<S, Request, K> {
        let key = match self.gate.key(&request) {
            Ok(key) => key,
            Err(error) => {
                return KeyedResponseFuture {
                    state: State::Failed {
                        error: Some(Failure::NoKey(error)),
                    },
                };
            }
        };
        let state = match self.gate.admit(&key) {
            Admit::Now(on_success) => State::Called {
                future: self.inner.call(request),
                on_success,
            },
            Admit::Wait => State::Waiting {
                wait: self.gate.keyed.await_fuel(key),
                call: Some((take_ready(&mut self.inner), request)),
                emission: self.gate.emission.clone(),
            },
            Admit::Shed(throttled) => State::Failed {
                error: Some(Failure::Throttled(throttled)),
            },
        };
        KeyedResponseFuture { state }
    }
}

/// Why a request failed before reaching the inner service; boxed only when
/// the future is polled.
enum Failure {
    Throttled(Throttled),
    NoKey(KeyError),
}

pin_project! {
    /// The response future of [`KeyedThrottleService`]: waits for the key's
    /// fuel if needed (wait mode), then runs the inner service's future;
    /// or fails at once with [`Throttled`] or [`KeyError`].
    ///
    /// # Cancel safety
    ///
    /// Dropped while waiting for its key's fuel, it leaves the key's line
    /// and loses no fuel (as [`KeyedTank::await_fuel`]); the inner service
    /// is not called. Dropped after, the fuel was spent: nothing comes
    /// back. With [`EmitOn::Success`], a dropped future emits nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{KeyedTank, Rate};
    /// use fueltank_tower::{KeyedResponseFuture, KeyedThrottleLayer};
    /// use fueltank_tower::key::key_fn;
    /// use tower::{Layer, Service, ServiceExt, service_fn};
    ///
    /// # futures::executor::block_on(async {
    /// let mut svc = KeyedThrottleLayer::new(KeyedTank::new(Rate::per_second(10)?), key_fn(|k: &u8| Ok(*k)))
    ///     .layer(service_fn(|k: u8| async move { Ok::<_, tower::BoxError>(k) }));
    /// let future: KeyedResponseFuture<_, u8, u8> = svc.ready().await?.call(3);
    /// assert_eq!(future.await?, 3);
    /// # Ok::<(), tower::BoxError>(())
    /// # }).unwrap();
    /// ```
    #[must_use = "futures do nothing unless polled"]
    pub struct KeyedResponseFuture<S, Request, K>
    where
        S: Service<Request>,
    {
        #[pin]
        state: State<S, Request, K>,
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
            emission: Emission,
        },
        Called {
            #[pin]
            future: S::Future,
            on_success: Option<Monitor>,
        },
        Failed {
            error: Option<Failure>,
        },
    }
}

impl<S, Request, K> Future for KeyedResponseFuture<S, Request, K>
where
    S: Service<Request>,
    S::Error: Into<BoxError>,
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let mut state = self.as_mut().project().state;
            match state.as_mut().project() {
                StateProj::Waiting {
                    wait,
                    call,
                    emission,
                } => {
                    ready!(wait.poll(cx));
                    let on_success = emission.fueled();
                    let Some((mut inner, request)) = call.take() else {
                        return Poll::Ready(Err(polled_after_completion()));
                    };
                    state.set(State::Called {
                        future: inner.call(request),
                        on_success,
                    });
                }
                StateProj::Called { future, on_success } => {
                    let output = ready!(future.poll(cx));
                    if output.is_ok() {
                        emit::succeeded(on_success);
                    }
                    return Poll::Ready(output.map_err(Into::into));
                }
                StateProj::Failed { error } => {
                    return Poll::Ready(Err(match error.take() {
                        Some(Failure::Throttled(throttled)) => Box::new(throttled),
                        Some(Failure::NoKey(error)) => Box::new(error),
                        None => polled_after_completion(),
                    }));
                }
            }
        }
    }
}

#[cold]
fn polled_after_completion() -> BoxError {
    "KeyedResponseFuture polled after completion".into()
}

impl<S: Service<Request>, Request, K> fmt::Debug for KeyedResponseFuture<S, Request, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match &self.state {
            State::Waiting { .. } => "KeyedResponseFuture::Waiting",
            State::Called { .. } => "KeyedResponseFuture::Called",
            State::Failed { .. } => "KeyedResponseFuture::Failed",
        })
    }
}
