//! [`KeyedThrottleLayer`]: one budget per key (client address, user id, …)
//! over a [`fueltank::KeyedTank`].

use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use fueltank::{BudgetWait, KeyedBudget, KeyedTank, Monitor};
use pin_project_lite::pin_project;
use tower::{BoxError, Layer, Service};

#[cfg(doc)]
use crate::Throttled;
use crate::budget::{self, KeyedShared};
use crate::emit::{self, EmitOn};
use crate::error::{Refusal, Scope};
use crate::key::{KeyError, KeyExtractor};
use crate::policy::{Mode, Policy, Queue, QueueSlot};
use crate::{Stats, events};

/// A Tower [`Layer`] that gives every key its own budget: each request
/// spends one fuel from its key's tank in a shared [`KeyedTank`].
///
/// A [`KeyExtractor`] reads the key from the request: the client's address
/// ([`PeerIp`], [`ForwardedIp`], feature `http`), a header, a user id
/// ([`key_fn`](crate::key::key_fn)).
/// The keyed tank holds at most `max_keys` keys and forgets idle ones, so
/// memory stays bounded under a flood of new keys (see [`KeyedTank`]).
///
/// The key is known only in `call`, so the fuel is taken there:
///
/// | | wait (default) | [`reject`](KeyedThrottleLayer::reject) |
/// |---|---|---|
/// | `poll_ready` | the inner service's | the inner service's |
/// | `call`, the key has fuel | spends one, calls the inner service | spends one, calls the inner service |
/// | `call`, no fuel | the response future waits in the key's line, then calls the inner service; fails at once with [`Throttled`] if the wait would pass [`max_wait`](KeyedThrottleLayer::max_wait) or the line is [full](KeyedThrottleLayer::max_waiting) | fails at once with [`Throttled`] |
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
/// layer ([`http`][http-method], feature `http`) answers `400` instead (or
/// `500` if the server's setup is at fault), with a body saying why.
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
#[cfg_attr(
    feature = "http",
    doc = "[`PeerIp`]: crate::key::PeerIp",
    doc = "[`ForwardedIp`]: crate::key::ForwardedIp",
    doc = "[http-method]: KeyedThrottleLayer::http"
)]
#[cfg_attr(
    not(feature = "http"),
    doc = "[`PeerIp`]: https://docs.rs/fueltank-tower/latest/fueltank_tower/key/struct.PeerIp.html",
    doc = "[`ForwardedIp`]: https://docs.rs/fueltank-tower/latest/fueltank_tower/key/struct.ForwardedIp.html",
    doc = "[http-method]: https://docs.rs/fueltank-tower/latest/fueltank_tower/struct.KeyedThrottleLayer.html#method.http"
)]
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
    ///
    /// Any other [`KeyedBudget`] is drawn on alike, such as one shared by
    /// every instance of a service through Redis (`fueltank-redis`'s
    /// `GlobalKeyedTank`). A key the budget refuses
    /// ([`KeyedBudget::check`]) fails the request with a [`KeyError`]
    /// saying why. In reject mode, a key that finds no fuel here waits for
    /// the budget's answer when only its store can tell
    /// ([`KeyedBudget::ask`]): a key's first request is not shed on a
    /// guess. With [`max_wait`](KeyedThrottleLayer::max_wait), the
    /// budget's own timed wait bounds the wait.
    ///
    /// One of your own:
    ///
    /// ```
    /// use fueltank::{BudgetWait, KeyedBudget, Rate};
    /// use fueltank_tower::{KeyedThrottleLayer, Throttled};
    /// use fueltank_tower::key::key_fn;
    /// use std::collections::HashSet;
    /// use std::sync::Mutex;
    /// use std::time::Duration;
    /// use tower::{Layer, ServiceExt, service_fn};
    ///
    /// /// One request per key, ever.
    /// #[derive(Debug, Default)]
    /// struct Once(Mutex<HashSet<u32>>);
    ///
    /// impl KeyedBudget<u32> for Once {
    ///     fn take(&self, key: &u32, n: u64) -> bool {
    ///         n == 0 || (n == 1 && self.0.lock().unwrap().insert(*key))
    ///     }
    ///     fn wait(&self, key: &u32, n: u64, _max_wait: Option<Duration>) -> BudgetWait {
    ///         let fuel = self.take(key, n).then(|| fueltank::Fuel::taken(n));
    ///         Box::pin(std::future::ready(Ok(fuel)))
    ///     }
    ///     fn wait_time(&self, _key: &u32, _n: u64) -> Option<Duration> {
    ///         None
    ///     }
    ///     fn rate(&self) -> Rate {
    ///         Rate::new(1, Duration::from_secs(100 * 365 * 86_400)).unwrap()
    ///     }
    ///     fn available(&self, key: &u32) -> u64 {
    ///         u64::from(!self.0.lock().unwrap().contains(key))
    ///     }
    /// }
    ///
    /// # futures::executor::block_on(async {
    /// let svc = KeyedThrottleLayer::new(Once::default(), key_fn(|x: &u32| Ok(*x)))
    ///     .reject()
    ///     .layer(service_fn(|x: u32| async move { Ok::<_, tower::BoxError>(x) }));
    /// assert_eq!(svc.clone().oneshot(1).await?, 1);
    /// assert!(svc.oneshot(1).await.unwrap_err().is::<Throttled>());
    /// # Ok::<(), tower::BoxError>(())
    /// # }).unwrap();
    /// ```
    pub fn new(keyed: impl KeyedBudget<K>, extractor: X) -> KeyedThrottleLayer<K, X> {
        KeyedThrottleLayer {
            gate: KeyedGate {
                keyed: Arc::new(keyed),
                extractor,
                policy: Arc::new(Policy::new(Scope::Keyed)),
                key_text: None,
                #[cfg(feature = "http")]
                headers: crate::http::Headers::default(),
                respond: (),
            },
        }
    }

    /// The policy, to change while the layer is being built (no service
    /// shares it yet, so this does not copy it).
    fn policy(&mut self) -> &mut Policy {
        Arc::make_mut(&mut self.gate.policy)
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
        self.policy().mode = Mode::Reject;
        self
    }

    /// Bounds the wait (wait mode): a request whose key's fuel cannot come
    /// within `max_wait` is shed at once with [`Throttled`], whose
    /// [`retry_after`](Throttled::retry_after) is the key's wait then.
    ///
    /// The check is made in `call`, against the key's line as it stands
    /// ([`KeyedBudget::wait_time`]); a request let into the line waits at
    /// most `max_wait` (the budget's timed wait): requests on the same key
    /// arriving on several threads at the same instant may each pass the
    /// check before any of them joins the line, and one whose fuel then
    /// cannot come in time is shed when `max_wait` passes.
    ///
    /// `max_wait(Duration::ZERO)` sheds every request whose key has no
    /// fuel, like [`reject`](KeyedThrottleLayer::reject). In reject mode it
    /// changes nothing.
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
    /// let keyed = KeyedTank::builder(Rate::per_second(10)?).initial(1).clock(ManualClock::new()).build()?;
    /// let mut svc = KeyedThrottleLayer::new(keyed, key_fn(|key: &u8| Ok(*key)))
    ///     .max_wait(Duration::from_millis(50))
    ///     .layer(service_fn(|_: u8| async { Ok::<_, tower::BoxError>(()) }));
    /// svc.ready().await?.call(1).await?; // key 1's one fuel
    /// // Its next fuel is 100 ms away, beyond 50 ms: shed at once.
    /// let err = svc.ready().await?.call(1).await.unwrap_err();
    /// assert_eq!(err.downcast_ref::<Throttled>().unwrap().retry_after(), Duration::from_millis(100));
    /// # Ok::<(), tower::BoxError>(())
    /// # }).unwrap();
    /// ```
    pub fn max_wait(mut self, max_wait: Duration) -> KeyedThrottleLayer<K, X> {
        self.policy().max_wait = Some(max_wait);
        self
    }

    /// Bounds the line (wait mode): at most `max` requests of this layer,
    /// whatever their keys, wait for fuel at once; a request that finds
    /// no fuel for its key while `max` wait is shed at once with
    /// [`Throttled`].
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{KeyedTank, Rate};
    /// use fueltank_tower::{KeyedThrottleLayer, Throttled};
    /// use fueltank_tower::key::key_fn;
    /// use std::task::{Context, Waker};
    /// use tower::{Layer, Service, ServiceExt, service_fn};
    ///
    /// # futures::executor::block_on(async {
    /// let keyed = KeyedTank::builder(Rate::per_minute(1)?).initial(0).build()?;
    /// let mut svc = KeyedThrottleLayer::new(keyed, key_fn(|key: &u8| Ok(*key)))
    ///     .max_waiting(1)
    ///     .layer(service_fn(|_: u8| async { Ok::<_, tower::BoxError>(()) }));
    /// let mut waiting = Box::pin(svc.ready().await?.call(1));
    /// assert!(waiting.as_mut().poll(&mut Context::from_waker(Waker::noop())).is_pending());
    /// let err = svc.ready().await?.call(2).await.unwrap_err(); // the line is full
    /// assert!(err.is::<Throttled>());
    /// # Ok::<(), tower::BoxError>(())
    /// # }).unwrap();
    /// ```
    pub fn max_waiting(mut self, max: usize) -> KeyedThrottleLayer<K, X> {
        self.policy().queue = Some(Arc::new(Queue::new(max)));
        self
    }

    /// Names this limit: the name is in every [`Throttled`] it sheds
    /// ([`label`](Throttled::label)), in its `tracing` events, and in the
    /// default body of its HTTP 429s.
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
    /// let mut svc = KeyedThrottleLayer::new(KeyedTank::new(Rate::per_minute(1)?), key_fn(|k: &u8| Ok(*k)))
    ///     .reject()
    ///     .label("per-user")
    ///     .layer(service_fn(|_: u8| async { Ok::<_, tower::BoxError>(()) }));
    /// svc.ready().await?.call(1).await?;
    /// let err = svc.ready().await?.call(1).await.unwrap_err();
    /// assert_eq!(err.downcast_ref::<Throttled>().unwrap().label(), Some("per-user"));
    /// # Ok::<(), tower::BoxError>(())
    /// # }).unwrap();
    /// ```
    pub fn label(mut self, label: impl Into<Arc<str>>) -> KeyedThrottleLayer<K, X> {
        self.policy().label = Some(label.into());
        self
    }

    /// Counts this layer's requests in `stats`: admitted, rejected, waited
    /// and refused for want of a key, and the waits (see [`Stats`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{KeyedTank, Rate};
    /// use fueltank_tower::{KeyedThrottleLayer, Stats};
    /// use fueltank_tower::key::{KeyError, key_fn};
    /// use tower::{Layer, ServiceExt, service_fn};
    ///
    /// # futures::executor::block_on(async {
    /// let stats = Stats::new();
    /// let by_id = key_fn(|id: &u8| if *id > 0 { Ok(*id) } else { Err(KeyError::Other("no id".into())) });
    /// let svc = KeyedThrottleLayer::new(KeyedTank::new(Rate::per_second(10)?), by_id)
    ///     .stats(stats.clone())
    ///     .layer(service_fn(|_: u8| async { Ok::<_, tower::BoxError>(()) }));
    /// svc.clone().oneshot(1).await?;
    /// assert!(svc.oneshot(0).await.is_err());
    /// assert_eq!(stats.admitted().total(), 1);
    /// assert_eq!(stats.key_errors().total(), 1);
    /// # Ok::<(), tower::BoxError>(())
    /// # }).unwrap();
    /// ```
    pub fn stats(mut self, stats: Stats) -> KeyedThrottleLayer<K, X> {
        self.policy().stats = Some(stats);
        self
    }

    /// Reports every wait of at least `threshold` as a `tracing` event at
    /// level `INFO` (default: one second). See [the crate's
    /// events](crate#tracing-events).
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{KeyedTank, Rate};
    /// use fueltank_tower::KeyedThrottleLayer;
    /// use fueltank_tower::key::key_fn;
    /// use std::time::Duration;
    ///
    /// let layer = KeyedThrottleLayer::new(KeyedTank::<u8>::new(Rate::per_second(10)?), key_fn(|k: &u8| Ok(*k)))
    ///     .long_wait(Duration::from_millis(250));
    /// # let _ = layer;
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    #[cfg(feature = "tracing")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tracing")))]
    pub fn long_wait(mut self, threshold: Duration) -> KeyedThrottleLayer<K, X> {
        self.policy().long_wait = threshold;
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
        self.policy().emission.monitor = Some(monitor);
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
        self.policy().emission.on = when;
        self
    }

    /// The keyed tank this layer draws on; `None` for another
    /// [`KeyedBudget`].
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{KeyedTank, Rate};
    /// use fueltank_tower::KeyedThrottleLayer;
    /// use fueltank_tower::key::key_fn;
    ///
    /// let layer = KeyedThrottleLayer::new(KeyedTank::<u8>::new(Rate::per_second(5)?), key_fn(|k: &u8| Ok(*k)));
    /// assert_eq!(layer.keyed().map(|keyed| keyed.rate().max_n()), Some(5));
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn keyed(&self) -> Option<&KeyedTank<K>>
    where
        K: 'static,
    {
        budget::keyed_tank(&self.gate.keyed)
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

impl<K: fmt::Display, X> KeyedThrottleLayer<K, X> {
    /// Writes the key (its `Display`) into every [`Throttled`] this layer
    /// sheds ([`key`](Throttled::key)) and into its `tracing` events. Off
    /// by default: keys such as client addresses are personal data, which
    /// errors and logs should not carry unless asked to.
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
    /// let mut svc = KeyedThrottleLayer::new(KeyedTank::new(Rate::per_minute(1)?), key_fn(|user: &&str| Ok(user.to_string())))
    ///     .reject()
    ///     .label("per-user")
    ///     .report_key()
    ///     .layer(service_fn(|_: &str| async { Ok::<_, tower::BoxError>(()) }));
    /// svc.ready().await?.call("ada").await?;
    /// let err = svc.ready().await?.call("ada").await.unwrap_err();
    /// let throttled = err.downcast_ref::<Throttled>().unwrap();
    /// assert_eq!((throttled.label(), throttled.key()), (Some("per-user"), Some("ada")));
    /// # Ok::<(), tower::BoxError>(())
    /// # }).unwrap();
    /// ```
    pub fn report_key(mut self) -> KeyedThrottleLayer<K, X> {
        self.gate.key_text = Some(|key: &K| key.to_string());
        self
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
/// per clone of a service): the keyed tank, the extractor, the policy, the
/// HTTP layer's headers and what it answers with (`R`, nothing for the
/// plain layer).
pub(crate) struct KeyedGate<K, X, R = ()> {
    pub(crate) keyed: KeyedShared<K>,
    pub(crate) extractor: X,
    /// In its own `Arc`, for the futures that wait to hold.
    pub(crate) policy: Arc<Policy>,
    /// Writes a key into errors and events, if asked to
    /// ([`KeyedThrottleLayer::report_key`]).
    pub(crate) key_text: Option<fn(&K) -> String>,
    #[cfg(feature = "http")]
    pub(crate) headers: crate::http::Headers,
    pub(crate) respond: R,
}

/// What `call` decided for a request with a key.
pub(crate) enum Admit<K> {
    /// The key had fuel: taken (and emitted, at fuel time); the monitor to
    /// emit on success, if that is when.
    Now(Option<Monitor>),
    /// No fuel here now: wait in the key's line (wait mode), or for the
    /// answer of a budget's store (reject mode).
    Wait(KeyWaiting<K>, BudgetWait),
    /// No fuel, and none may be waited for (reject mode, beyond
    /// `max_wait`, or the line is full), or the budget's store is down.
    Shed(Refusal),
}

/// A request waiting for its key's fuel: the policy to apply when it
/// comes, when the wait started (if waits are timed), its place among
/// the waiting (if they are bounded), and what to say if the wait ends
/// without the fuel (the key's `Retry-After` then, or that the budget's
/// store is down).
pub(crate) struct KeyWaiting<K> {
    policy: Arc<Policy>,
    started: Option<Instant>,
    _slot: Option<QueueSlot>,
    keyed: KeyedShared<K>,
    key: K,
    key_text: Option<fn(&K) -> String>,
}

impl<K> KeyWaiting<K>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    /// The wait ended without the fuel: the request is refused.
    #[cold]
    pub(crate) fn shed(self) -> Refusal {
        let cause = budget::keyed_cause(&*self.keyed, &self.key, None);
        let key = self.key_text.map(|text| Arc::from(text(&self.key)));
        self.policy.refuse(cause, key)
    }
}

impl<K> KeyWaiting<K> {
    /// The fuel came: count the wait and the request; the monitor to emit
    /// on success, if that is when (else emitted now).
    pub(crate) fn fueled(self) -> Option<Monitor> {
        let policy = &self.policy;
        policy.admitted(policy.wait_ended(self.started));
        policy.emission.fueled()
    }
}

impl<K, X, R> KeyedGate<K, X, R>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    /// The key of `request`; an error is counted and reported.
    #[inline]
    pub(crate) fn key<Q>(&self, request: &Q) -> Result<K, KeyError>
    where
        X: KeyExtractor<Q, Key = K>,
    {
        self.extractor
            .extract(request)
            .and_then(|key| match self.keyed.check(&key) {
                Ok(()) => Ok(key),
                Err(refused) => Err(budget::key_refused(refused)),
            })
            .inspect_err(|error| self.key_failed(error))
    }

    #[cold]
    fn key_failed(&self, error: &KeyError) {
        if let Some(stats) = &self.policy.stats {
            stats.key_error();
        }
        events::key_error(error, self.policy.label.as_deref());
    }

    /// Takes one fuel for `key` if there is one now; else decides whether
    /// the request waits or is shed.
    #[inline]
    pub(crate) fn admit(&self, key: &K) -> Admit<K> {
        if self.keyed.take(key, 1) {
            self.policy.admitted(None);
            return Admit::Now(self.policy.emission.fueled());
        }
        self.no_fuel(key)
    }

    #[cold]
    fn no_fuel(&self, key: &K) -> Admit<K> {
        let policy = &self.policy;
        let keyed = &self.keyed;
        if policy.mode == Mode::Reject {
            // A budget that cannot tell here asks its store (one answer,
            // no waiting for fuel to come) rather than shed on a guess.
            return match keyed.ask(key, 1) {
                Some(ask) => Admit::Wait(self.waiting(key, None, None), ask),
                None => Admit::Shed(self.refuse(key, None)),
            };
        }
        if let Some(max_wait) = policy.max_wait {
            let wait = keyed
                .wait_time(key, 1)
                .unwrap_or_else(|| keyed.rate().interval());
            if wait > max_wait {
                return Admit::Shed(self.refuse(key, Some(wait)));
            }
        }
        let slot = match &policy.queue {
            Some(queue) => match Queue::enter(queue) {
                Some(slot) => Some(slot),
                None => return Admit::Shed(self.refuse(key, None)),
            },
            None => None,
        };
        let wait = keyed.wait(key, 1, policy.max_wait);
        Admit::Wait(self.waiting(key, policy.wait_started(), slot), wait)
    }

    fn waiting(&self, key: &K, started: Option<Instant>, slot: Option<QueueSlot>) -> KeyWaiting<K> {
        KeyWaiting {
            policy: self.policy.clone(),
            started,
            _slot: slot,
            keyed: self.keyed.clone(),
            key: key.clone(),
            key_text: self.key_text,
        }
    }

    /// A request for `key` refused: its budget's store is down, or there
    /// is no fuel in time (to retry after `retry_after` if known).
    #[cold]
    fn refuse(&self, key: &K, retry_after: Option<Duration>) -> Refusal {
        let cause = budget::keyed_cause(&*self.keyed, key, retry_after);
        let key = self.key_text.map(|text| Arc::from(text(key)));
        self.policy.refuse(cause, key)
    }
}

#[cfg(feature = "http")]
impl<K, X, R> KeyedGate<K, X, R> {
    /// The same gate, answering with what `change` makes of its answers.
    pub(crate) fn map_respond<T>(self, change: impl FnOnce(R) -> T) -> KeyedGate<K, X, T> {
        KeyedGate {
            keyed: self.keyed,
            extractor: self.extractor,
            policy: self.policy,
            key_text: self.key_text,
            headers: self.headers,
            respond: change(self.respond),
        }
    }
}

impl<K, X: Clone, R: Clone> Clone for KeyedGate<K, X, R> {
    fn clone(&self) -> KeyedGate<K, X, R> {
        KeyedGate {
            keyed: self.keyed.clone(),
            extractor: self.extractor.clone(),
            policy: self.policy.clone(),
            key_text: self.key_text,
            #[cfg(feature = "http")]
            headers: self.headers.clone(),
            respond: self.respond.clone(),
        }
    }
}

impl<K, X: fmt::Debug, R> fmt::Debug for KeyedGate<K, X, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedGate")
            .field("keyed", &self.keyed)
            .field("extractor", &self.extractor)
            .field("policy", &self.policy)
            .field("reports_keys", &self.key_text.is_some())
            .finish()
    }
}

/// The service made by [`KeyedThrottleLayer`]: each request spends one fuel
/// from its key's tank.
///
/// `poll_ready` is the inner service's; `call` reads the key and takes the
/// fuel (see [the layer](KeyedThrottleLayer) for what happens without).
/// `Clone` shares the keyed tank. Its error type is [`tower::BoxError`]:
/// the inner service's errors, [`Throttled`], [`Unavailable`](crate::Unavailable)
/// (a budget's store is down, see
/// [`KeyedBudget::unavailable`]) or [`KeyError`], found by downcasting.
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
    /// The keyed tank this service draws on; `None` for another
    /// [`KeyedBudget`].
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
    /// assert!(svc.keyed().is_some_and(|keyed| keyed.is_empty()));
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn keyed(&self) -> Option<&KeyedTank<K>>
    where
        K: 'static,
    {
        budget::keyed_tank(&self.gate.keyed)
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
            Admit::Wait(waiting, wait) => State::Waiting {
                wait,
                call: Some((take_ready(&mut self.inner), request, waiting)),
            },
            Admit::Shed(refusal) => State::Failed {
                error: Some(Failure::Refused(refusal)),
            },
        };
        KeyedResponseFuture { state }
    }
}

/// Why a request failed before reaching the inner service; boxed only when
/// the future is polled.
enum Failure {
    Refused(Refusal),
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
    /// (and its place among the [`max_waiting`](KeyedThrottleLayer::max_waiting))
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
            wait: BudgetWait,
            call: Option<(S, Request, KeyWaiting<K>)>,
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
                StateProj::Waiting { wait, call } => {
                    // The fuel is spent: a keyed budget takes none back.
                    let fueled = matches!(ready!(wait.as_mut().poll(cx)), Ok(Some(_)));
                    let Some((mut inner, request, waiting)) = call.take() else {
                        return Poll::Ready(Err(polled_after_completion()));
                    };
                    if !fueled {
                        return Poll::Ready(Err(waiting.shed().boxed()));
                    }
                    let on_success = waiting.fueled();
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
                        Some(Failure::Refused(refusal)) => refusal.boxed(),
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
