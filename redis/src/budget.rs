//! These tanks as [`fueltank::Budget`]s: what `fueltank-tower`'s layers,
//! and any code written against the trait, draw on.

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use fueltank::{Budget, BudgetWait, Fuel, KeyedBudget, Rate, Unavailable};

use crate::entry::{BACKOFF_MAX, Entry};
use crate::future::Taken;
use crate::store::StoreShared;
use crate::{AwaitGlobal, FailurePolicy, GlobalKeyedTank, GlobalTank, MAX_KEY_LEN};

/// While Redis does not answer the tank (`down`) and the store's policy is
/// [`Closed`](FailurePolicy::Closed), a refusal is an outage: the store
/// described by `what`, to retry after the longest backoff between a
/// tank's asks (by then this instance has asked again). Under `Open` and
/// `Local` the policy grants, and a refusal (a `Local` tank run dry) is a
/// throttle.
fn outage(down: bool, store: &StoreShared, what: impl FnOnce() -> String) -> Option<Unavailable> {
    (down && matches!(store.policy, FailurePolicy::Closed))
        .then(|| Unavailable::new(what(), BACKOFF_MAX))
}

/// A wait on `entry` for `n`, for at most `max_wait` if given.
fn wait(entry: &Arc<Entry>, n: u64, max_wait: Option<Duration>) -> BudgetWait {
    Box::pin(AwaitGlobal::<Taken>::new(
        Ok(entry.clone()),
        n,
        max_wait,
        false,
    ))
}

/// `ask` on `entry`: with not enough reserved and no refusal from Redis to
/// go by, a wait for Redis's next answer (at most the store's timeout), not
/// for fuel to come; none while the store is known down under `Closed`.
fn ask(entry: Arc<Entry>, n: u64) -> Option<BudgetWait> {
    if entry.available() >= n
        || entry.wait_time(n) != Some(Duration::ZERO)
        || outage(entry.is_down(), &entry.store, String::new).is_some()
    {
        return None;
    }
    Some(Box::pin(AwaitGlobal::<Taken>::answer(entry, n)))
}

/// A [`GlobalTank`] is a [`Budget`]: every request of every instance
/// spends from the one budget in Redis. Fuel taken is taken for good
/// ([`Fuel::taken`]: Redis takes none back). What it describes is what
/// this instance knows: [`available`](Budget::available) the fuel reserved
/// here and spendable now (Redis may hold more for whoever asks),
/// [`wait_time`](Budget::wait_time) as of Redis's latest answer, and
/// [`capacity`](Budget::capacity) the most granted at once (the bank:
/// `max_n` less the intervals of the hold under `Limit`).
///
/// While Redis does not answer under [`FailurePolicy::Closed`], a refusal
/// is [`unavailable`](Budget::unavailable) (``redis tank `api` ``): behind
/// `fueltank-tower`'s layers, a request fails with [`Unavailable`], a
/// `503` over HTTP, not a `429`.
///
/// # Examples
///
/// ```no_run
/// use fueltank_tower::ThrottleLayer;
///
/// # async fn run(store: fueltank_redis::RedisStore) -> Result<(), Box<dyn std::error::Error>> {
/// let api = store.tank("api", "1000/s".parse()?).build().await?;
/// let layer = ThrottleLayer::new(api).reject();
/// # let _ = layer;
/// # Ok(()) }
/// ```
impl Budget for GlobalTank {
    #[inline]
    fn try_take(&self, n: u64) -> Option<Fuel> {
        self.has_fuel_n(n).then(|| Fuel::taken(n))
    }

    #[inline]
    fn take(&self, n: u64) -> bool {
        self.has_fuel_n(n)
    }

    fn wait(&self, n: u64, max_wait: Option<Duration>) -> BudgetWait {
        wait(&self.entry, n, max_wait)
    }

    /// With not enough reserved here and no refusal from Redis to go by
    /// (a tank not used for a while), waits for one round trip, at most
    /// the store's timeout. Not while the store is known down under
    /// `Closed`: that is the answer (the tank keeps probing Redis by
    /// itself).
    fn ask(&self, n: u64) -> Option<BudgetWait> {
        ask(self.entry.clone(), n)
    }

    fn wait_time(&self, n: u64) -> Option<Duration> {
        GlobalTank::wait_time(self, n)
    }

    fn rate(&self) -> Rate {
        GlobalTank::rate(self)
    }

    /// Every rate (the first, then those of `also`), each with the fuel
    /// reserved here: what this instance may take from all of them now.
    fn rates(&self) -> Vec<(Rate, u64)> {
        let available = Budget::available(self);
        let also = self.entry.options.also.iter();
        let also = also.map(|params| (params.rate(), available));
        std::iter::once((self.rate(), available))
            .chain(also)
            .collect()
    }

    fn available(&self) -> u64 {
        self.entry.available().min(self.capacity())
    }

    fn capacity(&self) -> u64 {
        GlobalTank::capacity(self)
    }

    /// While Redis does not answer and the store's policy is
    /// [`Closed`](FailurePolicy::Closed): ``redis tank `name` ``, retry
    /// after a second.
    fn unavailable(&self) -> Option<Unavailable> {
        outage(self.entry.is_down(), &self.entry.store, || {
            format!("redis tank `{}`", self.name())
        })
    }
}

/// A [`GlobalKeyedTank`] is a [`KeyedBudget`]: every key's budget is
/// shared by every instance. A key whose text is longer than
/// [`MAX_KEY_LEN`] bytes is refused by [`check`](KeyedBudget::check) (behind
/// `fueltank-tower`'s keyed layer, a `400` over HTTP) instead of taking a
/// budget. While Redis does not answer under [`FailurePolicy::Closed`], a
/// refusal is [`Unavailable`], as for a [`GlobalTank`].
///
/// # Examples
///
/// ```no_run
/// use fueltank_tower::KeyedThrottleLayer;
/// use fueltank_tower::key::key_fn;
///
/// # async fn run(store: fueltank_redis::RedisStore) -> Result<(), Box<dyn std::error::Error>> {
/// let per_user = store.keyed::<String>("per-user", "10/s".parse()?).build().await?;
/// let by_user = key_fn(|request: &(String, u32)| Ok(request.0.clone()));
/// let layer = KeyedThrottleLayer::new(per_user, by_user).reject();
/// # let _ = layer;
/// # Ok(()) }
/// ```
impl<K> KeyedBudget<K> for GlobalKeyedTank<K>
where
    K: Hash + Eq + Clone + fmt::Display + Send + Sync + 'static,
{
    #[inline]
    fn take(&self, key: &K, n: u64) -> bool {
        self.has_fuel_n(key, n)
    }

    fn wait(&self, key: &K, n: u64, max_wait: Option<Duration>) -> BudgetWait {
        match self.entry(key) {
            Ok(entry) => wait(&entry, n, max_wait),
            Err(_) => Box::pin(std::future::ready(self.check(key).map(|()| None))),
        }
    }

    /// With nothing reserved here for `key` and no refusal from Redis to go
    /// by (a key new here, or not used for a while), waits for one round
    /// trip, at most the store's timeout. Not while the store is known down
    /// under `Closed`, as for a [`GlobalTank`].
    fn ask(&self, key: &K, n: u64) -> Option<BudgetWait> {
        // (Asking for nothing makes no entry for a key not held here.)
        if n == 0 {
            return None;
        }
        ask(self.entry(key).ok()?, n)
    }

    fn wait_time(&self, key: &K, n: u64) -> Option<Duration> {
        GlobalKeyedTank::wait_time(self, key, n)
    }

    fn rate(&self) -> Rate {
        GlobalKeyedTank::rate(self)
    }

    /// `key`'s bank at its own rate (`rate_by`'s, or the tank's), as for
    /// a [`GlobalTank`].
    fn capacity(&self, key: &K) -> u64 {
        GlobalKeyedTank::capacity(self, key)
    }

    fn available(&self, key: &K) -> u64 {
        GlobalKeyedTank::available(self, key)
    }

    /// Every rate of `key` (its own or the tank's, then those of `also`),
    /// each with the fuel reserved here for it, as for a [`GlobalTank`].
    fn rates(&self, key: &K) -> Vec<(Rate, u64)> {
        GlobalKeyedTank::rates(self, key)
    }

    /// While Redis does not answer and the store's policy is
    /// [`Closed`](FailurePolicy::Closed): ``redis keyed tank `name` ``,
    /// retry after a second.
    fn unavailable(&self, key: &K) -> Option<Unavailable> {
        outage(self.is_down(key), self.store(), || {
            format!("redis keyed tank `{}`", self.name())
        })
    }

    fn check(&self, key: &K) -> Result<(), fueltank::Error> {
        // Counted as written, without allocating, on every request.
        let mut len = TextLen(0);
        let _ = fmt::write(&mut len, format_args!("{key}"));
        match len.0 <= MAX_KEY_LEN {
            true => Ok(()),
            false => Err(fueltank::Error::InvalidKey {
                reason: format!(
                    "the key is {} bytes long; a key in Redis must be at most {MAX_KEY_LEN}",
                    len.0
                ),
            }),
        }
    }
}

/// Counts the bytes of a `Display`.
struct TextLen(usize);

impl fmt::Write for TextLen {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0 = self.0.saturating_add(s.len());
        Ok(())
    }
}
