//! [`Budget`] and [`KeyedBudget`]: budgets the layers draw on besides
//! fueltank's own tanks, such as one kept in Redis for every instance of a
//! service (`fueltank-redis`, feature `tower`).

use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use fueltank::{AwaitKey, KeyedTank, Rate, Tank};
use pin_project_lite::pin_project;

use crate::Unavailable;
use crate::key::KeyError;
use crate::policy::Cause;

/// A wait for one fuel from a [`Budget`] or a [`KeyedBudget`]: resolves to
/// whether the fuel was taken.
pub type BudgetWait = Pin<Box<dyn Future<Output = bool> + Send>>;

/// One budget shared by every request, kept elsewhere than in a fueltank
/// [`Tank`]: what [`ThrottleLayer::from_budget`](crate::ThrottleLayer::from_budget)
/// draws on. `fueltank-redis`'s `GlobalTank` is one (its feature `tower`).
///
/// The layer takes fuel with [`try_take`](Budget::try_take), on every
/// request, so it should decide locally; it waits with
/// [`wait`](Budget::wait), only when there is none; it reads the rest
/// for `Retry-After` and the `RateLimit` headers; and before refusing a
/// request it asks [`unavailable`](Budget::unavailable) whether that is an
/// outage of the budget's store (a `503`) rather than a throttle (a
/// `429`). Fuel taken is not given back: a service dropped between
/// `poll_ready` and `call` spends it.
///
/// # Examples
///
/// A budget that always has fuel, counting what it gives:
///
/// ```
/// use fueltank::Rate;
/// use fueltank_tower::{Budget, BudgetWait, ThrottleLayer};
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use std::time::Duration;
/// use tower::{Layer, ServiceExt, service_fn};
///
/// #[derive(Debug, Default)]
/// struct Counted(AtomicU64);
///
/// impl Budget for Counted {
///     fn try_take(&self) -> bool {
///         self.0.fetch_add(1, Ordering::Relaxed);
///         true
///     }
///     fn wait(&self, _max_wait: Option<Duration>) -> BudgetWait {
///         Box::pin(std::future::ready(self.try_take()))
///     }
///     fn wait_time(&self, _n: u64) -> Option<Duration> {
///         Some(Duration::ZERO)
///     }
///     fn rate(&self) -> Rate {
///         Rate::per_second(1_000_000).unwrap()
///     }
///     fn available(&self) -> u64 {
///         u64::MAX
///     }
///     fn capacity(&self) -> u64 {
///         u64::MAX
///     }
/// }
///
/// # futures::executor::block_on(async {
/// let svc = ThrottleLayer::from_budget(Counted::default())
///     .layer(service_fn(|x: u8| async move { Ok::<_, tower::BoxError>(x) }));
/// assert_eq!(svc.oneshot(7).await?, 7);
/// # Ok::<(), tower::BoxError>(())
/// # }).unwrap();
/// ```
pub trait Budget: fmt::Debug + Send + Sync + 'static {
    /// Takes one fuel now if there is one, without waiting on anything.
    fn try_take(&self) -> bool;

    /// Waits in line for one fuel and takes it, for at most `max_wait` if
    /// given; resolves to whether it was taken. A wait that cannot be met
    /// in time should resolve to `false` at once. Dropped before it
    /// resolves, the wait takes nothing.
    fn wait(&self, max_wait: Option<Duration>) -> BudgetWait;

    /// When [`try_take`](Budget::try_take) found no fuel and only the
    /// budget's store can tell whether there is some, asks it: resolves to
    /// whether one fuel was taken, waiting for the answer but not for fuel
    /// to come. The layer in reject mode asks instead of shedding on a
    /// guess. `None` (the default): there is none, shed now.
    fn ask(&self) -> Option<BudgetWait> {
        None
    }

    /// How long a newcomer asking for `n` fuel would wait; `None` if
    /// unknown (the layer then says one interval).
    fn wait_time(&self, n: u64) -> Option<Duration>;

    /// The rate, for the `RateLimit` headers.
    fn rate(&self) -> Rate;

    /// The fuel a newcomer could take now (`RateLimit-Remaining`); a lower
    /// figure than the truth is fine, a higher one is not.
    fn available(&self) -> u64;

    /// The fuel once full (`RateLimit-Reset` is the time until then).
    fn capacity(&self) -> u64;

    /// Whether a refusal now is an outage rather than a throttle: `Some`
    /// while the budget's store is down and its failure policy refuses,
    /// describing the store and when to retry. The layer asks only after
    /// the budget found no fuel (never on a grant); a request it then
    /// refuses fails with that [`Unavailable`] instead of
    /// [`Throttled`](crate::Throttled) (a `503` over HTTP, not a `429`).
    /// `None` (the default): a refusal is for want of fuel.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::Rate;
    /// use fueltank_tower::{Budget, BudgetWait, ThrottleLayer, Unavailable};
    /// use std::time::Duration;
    /// use tower::{Layer, ServiceExt, service_fn};
    ///
    /// /// A budget whose store never answers.
    /// #[derive(Debug)]
    /// struct Down;
    ///
    /// impl Budget for Down {
    ///     fn try_take(&self) -> bool {
    ///         false
    ///     }
    ///     fn wait(&self, _max_wait: Option<Duration>) -> BudgetWait {
    ///         Box::pin(std::future::ready(false))
    ///     }
    ///     fn wait_time(&self, _n: u64) -> Option<Duration> {
    ///         None
    ///     }
    ///     fn rate(&self) -> Rate {
    ///         Rate::per_second(10).unwrap()
    ///     }
    ///     fn available(&self) -> u64 {
    ///         0
    ///     }
    ///     fn capacity(&self) -> u64 {
    ///         10
    ///     }
    ///     fn unavailable(&self) -> Option<Unavailable> {
    ///         Some(Unavailable::new("my store", Duration::from_secs(1)))
    ///     }
    /// }
    ///
    /// # futures::executor::block_on(async {
    /// let svc = ThrottleLayer::from_budget(Down)
    ///     .reject()
    ///     .layer(service_fn(|()| async { Ok::<_, tower::BoxError>(()) }));
    /// let err = svc.oneshot(()).await.unwrap_err();
    /// assert_eq!(err.downcast_ref::<Unavailable>().unwrap().store(), "my store");
    /// # });
    /// ```
    fn unavailable(&self) -> Option<Unavailable> {
        None
    }
}

/// A budget per key kept elsewhere than in a fueltank [`KeyedTank`]: what
/// [`KeyedThrottleLayer::from_budget`](crate::KeyedThrottleLayer::from_budget)
/// draws on. `fueltank-redis`'s `GlobalKeyedTank` is one (its feature
/// `tower`).
///
/// As [`Budget`], by key; and a budget may refuse a key it cannot hold
/// ([`check`](KeyedBudget::check)), which answers the request with that
/// [`KeyError`] (a `400` over HTTP) instead of a `429`.
///
/// # Examples
///
/// A budget of one request per key, ever:
///
/// ```
/// use fueltank::Rate;
/// use fueltank_tower::{BudgetWait, KeyedBudget, KeyedThrottleLayer, Throttled};
/// use fueltank_tower::key::key_fn;
/// use std::collections::HashSet;
/// use std::sync::Mutex;
/// use std::time::Duration;
/// use tower::{Layer, ServiceExt, service_fn};
///
/// #[derive(Debug, Default)]
/// struct Once(Mutex<HashSet<u32>>);
///
/// impl KeyedBudget<u32> for Once {
///     fn try_take(&self, key: &u32) -> bool {
///         self.0.lock().unwrap().insert(*key)
///     }
///     fn wait(&self, key: u32, _max_wait: Option<Duration>) -> BudgetWait {
///         Box::pin(std::future::ready(self.try_take(&key)))
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
/// let svc = KeyedThrottleLayer::from_budget(Once::default(), key_fn(|x: &u32| Ok(*x)))
///     .reject()
///     .layer(service_fn(|x: u32| async move { Ok::<_, tower::BoxError>(x) }));
/// assert_eq!(svc.clone().oneshot(1).await?, 1);
/// assert!(svc.oneshot(1).await.unwrap_err().is::<Throttled>());
/// # Ok::<(), tower::BoxError>(())
/// # }).unwrap();
/// ```
pub trait KeyedBudget<K>: fmt::Debug + Send + Sync + 'static {
    /// Takes one fuel for `key` now if there is one, without waiting on
    /// anything.
    fn try_take(&self, key: &K) -> bool;

    /// Waits in `key`'s line for one fuel and takes it, for at most
    /// `max_wait` if given; resolves to whether it was taken (a key the
    /// budget cannot hold was refused by [`check`](KeyedBudget::check)
    /// before). Dropped before it resolves, the wait takes nothing.
    fn wait(&self, key: K, max_wait: Option<Duration>) -> BudgetWait;

    /// When [`try_take`](KeyedBudget::try_take) found no fuel for `key`
    /// and only the budget's store can tell whether there is some, asks
    /// it: resolves to whether one fuel was taken, waiting for the answer
    /// but not for fuel to come. The keyed layer in reject mode asks
    /// instead of shedding a key it knows nothing of yet (its first
    /// request). `None` (the default): there is none, shed now.
    fn ask(&self, key: K) -> Option<BudgetWait> {
        let _ = key;
        None
    }

    /// How long a newcomer asking `key` for `n` fuel would wait; `None` if
    /// unknown (the layer then says one interval).
    fn wait_time(&self, key: &K, n: u64) -> Option<Duration>;

    /// The rate of every key.
    fn rate(&self) -> Rate;

    /// The fuel a newcomer could take for `key` now; a lower figure than
    /// the truth is fine, a higher one is not.
    fn available(&self, key: &K) -> u64;

    /// A key's fuel once full (`RateLimit-Limit`); by default the rate's
    /// `max_n`.
    fn capacity(&self) -> u64 {
        self.rate().max_n()
    }

    /// Whether a refusal for `key` now is an outage rather than a
    /// throttle: `Some` while the store that holds `key`'s budget is down
    /// and the failure policy refuses. As [`Budget::unavailable`]; `None`
    /// (the default): a refusal is for want of fuel.
    fn unavailable(&self, key: &K) -> Option<Unavailable> {
        let _ = key;
        None
    }

    /// Whether `key` can have a budget at all; by default every key can.
    fn check(&self, key: &K) -> Result<(), KeyError> {
        let _ = key;
        Ok(())
    }
}

/// What an unkeyed layer draws on: a fueltank tank (whose fuel can be
/// given back) or another budget.
#[derive(Debug, Clone)]
pub(crate) enum Source {
    Tank(Tank),
    Budget(Arc<dyn Budget>),
}

impl Source {
    pub(crate) fn tank(&self) -> Option<&Tank> {
        match self {
            Source::Tank(tank) => Some(tank),
            Source::Budget(_) => None,
        }
    }

    pub(crate) fn wait_time(&self, n: u64) -> Option<Duration> {
        match self {
            Source::Tank(tank) => tank.wait_time(n),
            Source::Budget(budget) => budget.wait_time(n),
        }
    }

    pub(crate) fn rate(&self) -> Rate {
        match self {
            Source::Tank(tank) => tank.rate(),
            Source::Budget(budget) => budget.rate(),
        }
    }

    /// A newcomer's wait for one fuel: the `Retry-After` of a shed
    /// request. While a tank is paused it is unknown; then one interval.
    #[cold]
    pub(crate) fn retry_after(&self) -> Duration {
        self.wait_time(1).unwrap_or_else(|| self.rate().interval())
    }

    /// Why a request finds no fuel now: a budget's store is down, or there
    /// is none in time.
    #[cold]
    pub(crate) fn cause(&self) -> Cause {
        if let Source::Budget(budget) = self
            && let Some(unavailable) = budget.unavailable()
        {
            return Cause::Down(unavailable);
        }
        Cause::NoFuel(self.retry_after())
    }
}

/// What a keyed layer draws on: a fueltank keyed tank or another budget.
pub(crate) enum KeyedSource<K> {
    Tank(KeyedTank<K>),
    Budget(Arc<dyn KeyedBudget<K>>),
}

impl<K> Clone for KeyedSource<K> {
    fn clone(&self) -> KeyedSource<K> {
        match self {
            KeyedSource::Tank(keyed) => KeyedSource::Tank(keyed.clone()),
            KeyedSource::Budget(budget) => KeyedSource::Budget(budget.clone()),
        }
    }
}

impl<K> fmt::Debug for KeyedSource<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyedSource::Tank(keyed) => keyed.fmt(f),
            KeyedSource::Budget(budget) => budget.fmt(f),
        }
    }
}

impl<K> KeyedSource<K> {
    pub(crate) fn tank(&self) -> Option<&KeyedTank<K>> {
        match self {
            KeyedSource::Tank(keyed) => Some(keyed),
            KeyedSource::Budget(_) => None,
        }
    }
}

impl<K> KeyedSource<K>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    pub(crate) fn rate(&self) -> Rate {
        match self {
            KeyedSource::Tank(keyed) => keyed.rate(),
            KeyedSource::Budget(budget) => budget.rate(),
        }
    }

    #[inline]
    pub(crate) fn has_fuel(&self, key: &K) -> bool {
        match self {
            KeyedSource::Tank(keyed) => keyed.has_fuel(key),
            KeyedSource::Budget(budget) => budget.try_take(key),
        }
    }

    pub(crate) fn wait_time(&self, key: &K, n: u64) -> Option<Duration> {
        match self {
            KeyedSource::Tank(keyed) => keyed.wait_time(key, n),
            KeyedSource::Budget(budget) => budget.wait_time(key, n),
        }
    }

    #[cfg(feature = "http")]
    pub(crate) fn available(&self, key: &K) -> u64 {
        match self {
            KeyedSource::Tank(keyed) => keyed.available(key),
            KeyedSource::Budget(budget) => budget.available(key),
        }
    }

    /// A key's fuel once full.
    #[cfg(feature = "http")]
    pub(crate) fn capacity(&self) -> u64 {
        match self {
            KeyedSource::Tank(keyed) => keyed.rate().max_n(),
            KeyedSource::Budget(budget) => budget.capacity(),
        }
    }

    pub(crate) fn check(&self, key: &K) -> Result<(), KeyError> {
        match self {
            KeyedSource::Tank(_) => Ok(()),
            KeyedSource::Budget(budget) => budget.check(key),
        }
    }

    /// Why a request for `key` finds no fuel now: a budget's store is
    /// down, or there is none in time (to retry after `retry_after`, by
    /// default `key`'s wait for one fuel, or one interval if unknown).
    #[cold]
    pub(crate) fn cause(&self, key: &K, retry_after: Option<Duration>) -> Cause {
        if let KeyedSource::Budget(budget) = self
            && let Some(unavailable) = budget.unavailable(key)
        {
            return Cause::Down(unavailable);
        }
        Cause::NoFuel(retry_after.unwrap_or_else(|| {
            self.wait_time(key, 1)
                .unwrap_or_else(|| self.rate().interval())
        }))
    }

    /// A wait in `key`'s line; a keyed tank's is never timed (its
    /// `max_wait` is checked before, from its exact `wait_time`).
    pub(crate) fn await_fuel(&self, key: K, max_wait: Option<Duration>) -> KeyWait<K> {
        match self {
            KeyedSource::Tank(keyed) => KeyWait::Tank {
                wait: keyed.await_fuel(key),
            },
            KeyedSource::Budget(budget) => KeyWait::Budget {
                wait: budget.wait(key, max_wait),
            },
        }
    }

    /// A budget's question to its store, if it has one to ask.
    pub(crate) fn ask(&self, key: K) -> Option<KeyWait<K>> {
        match self {
            KeyedSource::Tank(_) => None,
            KeyedSource::Budget(budget) => Some(KeyWait::Budget {
                wait: budget.ask(key)?,
            }),
        }
    }
}

pin_project! {
    /// A wait in a key's line: resolves to whether the fuel was taken
    /// (always, from a keyed tank).
    #[project = KeyWaitProj]
    pub(crate) enum KeyWait<K> {
        Tank { #[pin] wait: AwaitKey<K> },
        Budget { wait: BudgetWait },
    }
}

impl<K> Future for KeyWait<K>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    type Output = bool;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool> {
        match self.project() {
            KeyWaitProj::Tank { wait } => wait.poll(cx).map(|()| true),
            KeyWaitProj::Budget { wait } => wait.as_mut().poll(cx),
        }
    }
}
