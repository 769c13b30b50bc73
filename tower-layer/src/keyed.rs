//! [`KeyedThrottleLayer`] and its [`KeyedThrottleService`]: one budget
//! per key (client address, user id, …) from a [`KeyedBudget`] such as a
//! [`fueltank::KeyedTank`].

use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use fueltank::{Budget, BudgetWait, KeyedAllOf, KeyedBudget, KeyedTank, Monitor};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::ResponseFuture;
use crate::answer::{Errors, Respond, RespondKey};
use crate::budget::{self, KeyedShared};
use crate::error::{Refusal, Scope};
use crate::events;
use crate::key::{KeyError, KeyExtractor};
use crate::layer::Limit;
use crate::policy::{Mode, Policy, Queue, QueueSlot};
use crate::request::{PerRequest, Uniform};
use crate::service::LimitService;
#[cfg(doc)]
use crate::{EmitOn, Throttled};

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
///
/// [`PeerIp`]: crate::key::PeerIp
/// [`ForwardedIp`]: crate::key::ForwardedIp
/// [http-method]: KeyedThrottleLayer::http
pub type KeyedThrottleLayer<K, X, A = Errors> = Limit<Keyed<K, X>, A>;

/// What a [`KeyedThrottleLayer`] draws on: a budget per key, in one
/// [`KeyedBudget`] shared by every service it makes and their clones, and
/// the [`KeyExtractor`] that reads a request's key.
///
/// # Examples
///
/// ```
/// use fueltank::{KeyedTank, Rate};
/// use fueltank_tower::key::key_fn;
/// use fueltank_tower::{Keyed, KeyedThrottleLayer, Limit};
///
/// let layer: Limit<Keyed<u8, _>> =
///     KeyedThrottleLayer::new(KeyedTank::new(Rate::per_second(5)?), key_fn(|k: &u8| Ok(*k)));
/// # let _ = layer;
/// # Ok::<(), fueltank::Error>(())
/// ```
pub struct Keyed<K, X, C = Uniform, E = Uniform> {
    pub(crate) keyed: KeyedShared<K>,
    pub(crate) extractor: X,
    /// The fuel a request spends ([`cost`](Limit::cost)).
    pub(crate) cost: C,
    /// Which requests pass untouched ([`exempt`](Limit::exempt)).
    pub(crate) exempt: E,
    /// Writes a key into errors and events, if asked to
    /// ([`KeyedThrottleLayer::report_key`]).
    pub(crate) key_text: Option<fn(&K) -> String>,
}

impl<K, X: Clone, C: Clone, E: Clone> Clone for Keyed<K, X, C, E> {
    fn clone(&self) -> Keyed<K, X, C, E> {
        Keyed {
            keyed: self.keyed.clone(),
            extractor: self.extractor.clone(),
            cost: self.cost.clone(),
            exempt: self.exempt.clone(),
            key_text: self.key_text,
        }
    }
}

impl<K, X: fmt::Debug, C, E> fmt::Debug for Keyed<K, X, C, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyed")
            .field("keyed", &self.keyed)
            .field("extractor", &self.extractor)
            .field("reports_keys", &self.key_text.is_some())
            .finish()
    }
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
        Limit {
            side: Keyed {
                keyed: Arc::new(keyed),
                extractor,
                key_text: None,
                cost: Uniform,
                exempt: Uniform,
            },
            policy: Policy::new(Scope::Keyed),
            answer: Errors,
        }
    }
}

impl<K, X, A, C, E> Limit<Keyed<K, X, C, E>, A> {
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
    pub fn monitor(mut self, monitor: Monitor) -> Limit<Keyed<K, X, C, E>, A> {
        self.policy.emission.monitor = Some(monitor);
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
        budget::keyed_tank(&self.side.keyed)
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
        &self.side.extractor
    }
}

impl<K: Hash + Eq + Clone + Send + Sync + 'static, X, A, C, E> Limit<Keyed<K, X, C, E>, A> {
    /// Draws every request on `budget` too, all or nothing with its key's
    /// ([`KeyedAllOf`]): a request passes only if its key and `budget`
    /// both have its fuel, and a request shed by either spends nothing
    /// from the other (but from a budget that cannot take fuel back, such
    /// as a tank in Redis, which is taken for good). Waits queue in one
    /// line per key, first come first served, and hold no fuel of one
    /// while waiting on another. Call it once per budget: per user, and
    /// per route, and global. After it, [`keyed`](Limit::keyed) is `None`
    /// (the layer draws on the combination).
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{KeyedTank, Rate, Tank};
    /// use fueltank_tower::KeyedThrottleLayer;
    /// use fueltank_tower::key::key_fn;
    /// use tower::{Layer, ServiceExt, service_fn};
    ///
    /// # futures::executor::block_on(async {
    /// let global = Tank::builder(Rate::per_minute(2)?).initial(2).build()?;
    /// let svc = KeyedThrottleLayer::new(KeyedTank::new(Rate::per_minute(5)?), key_fn(|k: &u8| Ok(*k)))
    ///     .and(global.clone())
    ///     .reject()
    ///     .layer(service_fn(|k: u8| async move { Ok::<_, tower::BoxError>(k) }));
    /// assert_eq!(svc.clone().oneshot(1).await?, 1);
    /// assert_eq!(svc.clone().oneshot(2).await?, 2);
    /// assert!(svc.oneshot(3).await.is_err()); // key 3 has fuel, the global tank not
    /// assert_eq!(global.level(), 0);
    /// # Ok::<(), tower::BoxError>(())
    /// # }).unwrap();
    /// ```
    pub fn and(mut self, budget: impl Budget) -> Limit<Keyed<K, X, C, E>, A> {
        self.side.keyed = Arc::new(KeyedAllOf::shared(self.side.keyed).and(budget));
        self
    }
}

impl<K: fmt::Display, X, A, C, E> Limit<Keyed<K, X, C, E>, A> {
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
    pub fn report_key(mut self) -> Limit<Keyed<K, X, C, E>, A> {
        self.side.key_text = Some(|key: &K| key.to_string());
        self
    }
}

impl<S, K, X: Clone, A: Clone, C: Clone, E: Clone> Layer<S> for Limit<Keyed<K, X, C, E>, A> {
    type Service = KeyedThrottleService<S, K, X, A, C, E>;

    fn layer(&self, inner: S) -> KeyedThrottleService<S, K, X, A, C, E> {
        LimitService {
            inner,
            state: Arc::new(self.clone()),
        }
    }
}

/// What `call` decided for a request with a key.
enum Admit<K, X, A, C, E> {
    /// The key had fuel: taken (and emitted, at fuel time); the monitor to
    /// emit on success, if that is when.
    Now(Option<Monitor>),
    /// No fuel here now: wait in the key's line (wait mode), or for the
    /// answer of a budget's store (reject mode).
    Wait(KeyWaiting<K, X, A, C, E>, BudgetWait),
    /// No fuel, and none may be waited for (reject mode, beyond
    /// `max_wait`, or the line is full), or the budget's store is down.
    Shed(Refusal),
    /// The request costs more than the budget can ever hold.
    TooCostly(fueltank::Error),
}

/// A request waiting for its key's fuel: the layer (its policy, to apply
/// when the fuel comes, its budget and answer, for what to say if the wait
/// ends without the fuel), when the wait started (if waits are timed), its
/// place among the waiting (if they are bounded), and the key.
struct KeyWaiting<K, X, A, C, E> {
    config: Arc<Limit<Keyed<K, X, C, E>, A>>,
    started: Option<Instant>,
    _slot: Option<QueueSlot>,
    key: K,
    /// The fuel the request waits for.
    n: u64,
}

impl<K, X, A, C, E> KeyWaiting<K, X, A, C, E>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    /// The wait ended without the fuel: the request is refused.
    #[cold]
    fn shed(&self) -> Refusal {
        self.config.refuse(&self.key, self.n, None)
    }

    /// The fuel came: count the wait and the request; the monitor to emit
    /// on success, if that is when (else emitted now).
    fn fueled(self) -> Option<Monitor> {
        let policy = &self.config.policy;
        policy.admitted(policy.wait_ended(self.started));
        policy.emission.fueled()
    }
}

impl<K, X, A, C, E> Limit<Keyed<K, X, C, E>, A>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    /// The key of `request`; an error is counted and reported.
    #[inline]
    fn key<Q>(&self, request: &Q) -> Result<K, KeyError>
    where
        X: KeyExtractor<Q, Key = K>,
    {
        let side = &self.side;
        side.extractor
            .extract(request)
            .and_then(|key| match side.keyed.check(&key) {
                Ok(()) => Ok(key),
                Err(refused) => Err(budget::key_refused(refused)),
            })
            .inspect_err(|error| self.key_failed(error))
    }

    #[cold]
    fn key_failed(&self, error: &KeyError) {
        if let Some(stats) = &self.policy.stats {
            stats.key_errors().emit();
        }
        events::key_error(error, self.policy.label.as_deref());
    }

    /// Takes `n` fuel for `key` if there is that much now (none if `n`
    /// is 0); else decides whether the request waits or is shed.
    #[inline]
    fn admit(self: &Arc<Self>, key: &K, n: u64) -> Admit<K, X, A, C, E> {
        if n == 0 || self.side.keyed.take(key, n) {
            self.policy.admitted(None);
            return Admit::Now(self.policy.emission.fueled());
        }
        self.no_fuel(key, n)
    }

    #[cold]
    fn no_fuel(self: &Arc<Self>, key: &K, n: u64) -> Admit<K, X, A, C, E> {
        let policy = &self.policy;
        let keyed = &self.side.keyed;
        // The key's own: a key with a rate of its own may cost up to it.
        let capacity = keyed.capacity(key);
        if n > capacity {
            // No wait makes it fit: refused at once, not shed (in shadow
            // mode too: a request at fault, as one without a key).
            return Admit::TooCostly(fueltank::Error::ExceedsCapacity {
                requested: n,
                capacity,
            });
        }
        if policy.shadow {
            // Let through, without fuel and without waiting: counted.
            let cause = budget::keyed_cause(&**keyed, key, n, None);
            policy.shadowed(cause, self.side.key_text.map(|text| Arc::from(text(key))));
            policy.admitted(None);
            return Admit::Now(policy.emission.fueled());
        }
        if policy.mode == Mode::Reject {
            // A budget that cannot tell here asks its store (one answer,
            // no waiting for fuel to come) rather than shed on a guess.
            return match keyed.ask(key, n) {
                Some(ask) => Admit::Wait(self.waiting(key, n, None, None), ask),
                None => Admit::Shed(self.refuse(key, n, None)),
            };
        }
        if let Some(max_wait) = policy.max_wait {
            let wait = keyed
                .wait_time(key, n)
                .unwrap_or_else(|| keyed.rate().interval());
            if wait > max_wait {
                return Admit::Shed(self.refuse(key, n, Some(wait)));
            }
        }
        let slot = match &policy.queue {
            Some(queue) => match Queue::enter(queue) {
                Some(slot) => Some(slot),
                None => return Admit::Shed(self.refuse(key, n, None)),
            },
            None => None,
        };
        let wait = keyed.wait(key, n, policy.max_wait);
        Admit::Wait(self.waiting(key, n, policy.wait_started(), slot), wait)
    }

    fn waiting(
        self: &Arc<Self>,
        key: &K,
        n: u64,
        started: Option<Instant>,
        slot: Option<QueueSlot>,
    ) -> KeyWaiting<K, X, A, C, E> {
        KeyWaiting {
            config: self.clone(),
            started,
            _slot: slot,
            key: key.clone(),
            n,
        }
    }

    /// A request for `key` refused: its budget's store is down, or there
    /// is no fuel in time (to retry after `retry_after` if known).
    #[cold]
    fn refuse(&self, key: &K, n: u64, retry_after: Option<Duration>) -> Refusal {
        let cause = budget::keyed_cause(&*self.side.keyed, key, n, retry_after);
        let key = self.side.key_text.map(|text| Arc::from(text(key)));
        self.policy.refuse(cause, key)
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
pub type KeyedThrottleService<S, K, X, A = Errors, C = Uniform, E = Uniform> =
    LimitService<S, Arc<Limit<Keyed<K, X, C, E>, A>>>;

/// Swaps a clone of the ready `inner` into its place and returns the ready
/// one, for a future to call later (tower's contract: the service called
/// must be the one made ready).
#[inline]
fn take_ready<S: Clone>(inner: &mut S) -> S {
    let clone = inner.clone();
    std::mem::replace(inner, clone)
}

impl<S, K, X, A, C, E, Request> Service<Request> for KeyedThrottleService<S, K, X, A, C, E>
where
    S: Service<Request> + Clone,
    K: Hash + Eq + Clone + Send + Sync + 'static,
    X: KeyExtractor<Request, Key = K>,
    C: PerRequest<Request, u64>,
    E: PerRequest<Request, bool>,
    A: RespondKey<Result<S::Response, S::Error>>,
{
    type Response = A::Response;
    type Error = A::Error;
    type Future = KeyedResponseFuture<S, Request, K, X, A, C, E>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), A::Error>> {
        self.inner.poll_ready(cx).map_err(A::fail)
    }

    #[inline]
    fn call(&mut self, request: Request) -> KeyedResponseFuture<S, Request, K, X, A, C, E> {
        let config = &self.state;
        let answer = &config.answer;
        if config.side.exempt.read(&request) {
            // Untouched: no key, no fuel, no count, no headers.
            let future = self.inner.call(request);
            return KeyedResponseFuture::ready(ResponseFuture::called(
                future,
                None,
                answer.stamp(None),
            ));
        }
        let key = match config.key(&request) {
            Ok(key) => key,
            Err(error) => {
                // No key, no budget: no headers.
                let output = answer.no_key(error);
                return KeyedResponseFuture::ready(ResponseFuture::answered(
                    output,
                    answer.stamp(None),
                ));
            }
        };
        let n = config.side.cost.read(&request);
        KeyedResponseFuture::ready(match config.admit(&key, n) {
            Admit::Now(on_success) => {
                let stamp = answer.stamp_key(&config.side.keyed, &key);
                ResponseFuture::called(self.inner.call(request), on_success, stamp)
            }
            // The headers are read once the wait is over.
            Admit::Wait(waiting, wait) => {
                let call = Some((take_ready(&mut self.inner), request, waiting));
                let state = State::Waiting { wait, call };
                return KeyedResponseFuture { state };
            }
            Admit::Shed(refusal) => {
                let stamp = answer.stamp_key(&config.side.keyed, &key);
                let output = answer.refused(refusal, &stamp);
                ResponseFuture::answered(output, stamp)
            }
            Admit::TooCostly(error) => {
                ResponseFuture::answered(answer.too_costly(error), answer.stamp(None))
            }
        })
    }
}

pin_project! {
    /// The response future of [`KeyedThrottleService`]: waits for the key's
    /// fuel if needed (wait mode), then runs the inner service's future
    /// (and adds the HTTP layer's headers, those of the key, to its
    /// response); or answers at once: fails with [`Throttled`] or
    /// [`KeyError`], or, over HTTP, responds 429, 400 or 500.
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
    /// let future: KeyedResponseFuture<_, u8, u8, _> = svc.ready().await?.call(3);
    /// assert_eq!(future.await?, 3);
    /// # Ok::<(), tower::BoxError>(())
    /// # }).unwrap();
    /// ```
    #[must_use = "futures do nothing unless polled"]
    pub struct KeyedResponseFuture<S, Request, K, X, A = Errors, C = Uniform, E = Uniform>
    where
        S: Service<Request>,
        A: Respond<Result<S::Response, S::Error>>,
    {
        #[pin]
        state: State<S, Request, K, X, A, C, E>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, Request, K, X, A, C, E>
    where
        S: Service<Request>,
        A: Respond<Result<S::Response, S::Error>>,
    {
        Waiting {
            wait: BudgetWait,
            call: Option<(S, Request, KeyWaiting<K, X, A, C, E>)>,
        },
        // Called, or answered at once: what the unkeyed service's future does.
        Ready {
            #[pin]
            future: ResponseFuture<S::Future, A>,
        },
    }
}

impl<S, Request, K, X, A, C, E> KeyedResponseFuture<S, Request, K, X, A, C, E>
where
    S: Service<Request>,
    A: Respond<Result<S::Response, S::Error>>,
{
    #[inline]
    fn ready(
        future: ResponseFuture<S::Future, A>,
    ) -> KeyedResponseFuture<S, Request, K, X, A, C, E> {
        KeyedResponseFuture {
            state: State::Ready { future },
        }
    }
}

impl<S, Request, K, X, A, C, E> Future for KeyedResponseFuture<S, Request, K, X, A, C, E>
where
    S: Service<Request>,
    K: Hash + Eq + Clone + Send + Sync + 'static,
    A: Respond<Result<S::Response, S::Error>>,
{
    type Output = Result<A::Response, A::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let mut state = self.as_mut().project().state;
            match state.as_mut().project() {
                StateProj::Waiting { wait, call } => {
                    // The fuel is spent: a keyed budget takes none back.
                    let fueled = matches!(ready!(wait.as_mut().poll(cx)), Ok(Some(_)));
                    let Some((mut inner, request, waiting)) = call.take() else {
                        return Poll::Ready(A::polled_again());
                    };
                    let config = &waiting.config;
                    let stamp = config.answer.stamp_key(&config.side.keyed, &waiting.key);
                    let future = if fueled {
                        let on_success = waiting.fueled();
                        ResponseFuture::called(inner.call(request), on_success, stamp)
                    } else {
                        let output = config.answer.refused(waiting.shed(), &stamp);
                        ResponseFuture::answered(output, stamp)
                    };
                    state.set(State::Ready { future });
                }
                StateProj::Ready { future } => return future.poll(cx),
            }
        }
    }
}

impl<S, Request, K, X, A, C, E> fmt::Debug for KeyedResponseFuture<S, Request, K, X, A, C, E>
where
    S: Service<Request>,
    A: Respond<Result<S::Response, S::Error>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.state {
            State::Waiting { .. } => f.write_str("KeyedResponseFuture::Waiting"),
            State::Ready { future } => future.fmt(f),
        }
    }
}
