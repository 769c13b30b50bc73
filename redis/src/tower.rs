//! The Tower layers of `fueltank-tower` on these tanks (feature `tower`).

use std::fmt;
use std::hash::Hash;
use std::time::Duration;

use fueltank::Rate;
use fueltank_tower::key::KeyError;
use fueltank_tower::{Budget, BudgetWait, KeyedBudget, ThrottleLayer, Unavailable};

use crate::entry::BACKOFF_MAX;
use crate::store::StoreShared;
use crate::{FailurePolicy, GlobalKeyedTank, GlobalTank, MAX_KEY_LEN};

/// While `store` does not answer and its policy is
/// [`Closed`](FailurePolicy::Closed), a refusal is an outage: the store
/// described by `what`, to retry after the longest backoff between a
/// tank's asks (by then this instance has asked again). Under `Open` and
/// `Local` the policy grants, and a refusal (a `Local` tank run dry) is a
/// throttle.
fn outage(store: &StoreShared, what: impl FnOnce() -> String) -> Option<Unavailable> {
    (store.is_down() && matches!(store.policy, FailurePolicy::Closed))
        .then(|| Unavailable::new(what(), BACKOFF_MAX))
}

/// A [`GlobalTank`] is a [`Budget`] of `fueltank-tower`'s layers: every
/// request of every instance spends from the one budget in Redis. The
/// `RateLimit` headers say what this instance knows: `Remaining` the fuel
/// reserved here and spendable now (Redis may hold more for whoever asks),
/// `Reset` the time until the tank in Redis is full as of its latest
/// answer, and `Limit` the most granted at once (the bank: `max_n` less the
/// intervals of the hold under `Limit`).
///
/// While Redis does not answer under [`FailurePolicy::Closed`], a request
/// refused is [`unavailable`](Budget::unavailable) (``redis tank `api` ``):
/// it fails with [`Unavailable`], a `503` over HTTP, not a `429`.
///
/// # Examples
///
/// ```no_run
/// use fueltank_tower::ThrottleLayer;
///
/// # async fn run(store: fueltank_redis::RedisStore) -> Result<(), Box<dyn std::error::Error>> {
/// let api = store.tank("api", "1000/s".parse()?).build().await?;
/// let layer = ThrottleLayer::from_budget(api).reject(); // or ThrottleLayer::from(api)
/// # let _ = layer;
/// # Ok(()) }
/// ```
impl Budget for GlobalTank {
    #[inline]
    fn try_take(&self) -> bool {
        self.has_fuel()
    }

    fn wait(&self, max_wait: Option<Duration>) -> BudgetWait {
        match max_wait {
            None => {
                let wait = self.await_fuel();
                Box::pin(async move {
                    wait.await;
                    true
                })
            }
            Some(max_wait) => Box::pin(self.await_fuel_timeout(max_wait)),
        }
    }

    /// With nothing reserved here and no refusal from Redis to go by (a
    /// tank not used for a while), waits for one round trip, at most the
    /// store's timeout. Not while the store is known down under `Closed`:
    /// that is the answer (the tank keeps probing Redis by itself).
    fn ask(&self) -> Option<BudgetWait> {
        if Budget::unavailable(self).is_some() {
            return None;
        }
        let unknown = GlobalTank::wait_time(self, 1) == Some(Duration::ZERO);
        unknown.then(|| Box::pin(self.await_answer()) as BudgetWait)
    }

    fn wait_time(&self, n: u64) -> Option<Duration> {
        GlobalTank::wait_time(self, n)
    }

    fn rate(&self) -> Rate {
        GlobalTank::rate(self)
    }

    fn available(&self) -> u64 {
        GlobalTank::available(self).min(self.capacity())
    }

    fn capacity(&self) -> u64 {
        GlobalTank::capacity(self)
    }

    /// While Redis does not answer and the store's policy is
    /// [`Closed`](FailurePolicy::Closed): ``redis tank `name` ``, retry
    /// after a second.
    fn unavailable(&self) -> Option<Unavailable> {
        outage(self.store(), || format!("redis tank `{}`", self.name()))
    }
}

impl From<GlobalTank> for ThrottleLayer {
    /// [`ThrottleLayer::from_budget`].
    fn from(tank: GlobalTank) -> ThrottleLayer {
        ThrottleLayer::from_budget(tank)
    }
}

/// A [`GlobalKeyedTank`] is a [`KeyedBudget`] of `fueltank-tower`'s keyed
/// layer: every key's budget is shared by every instance. A key whose text
/// is longer than [`MAX_KEY_LEN`] bytes fails its request with a
/// [`KeyError`] (a `400` over HTTP) instead of taking a budget. While Redis
/// does not answer under [`FailurePolicy::Closed`], a request refused is
/// [`Unavailable`] (a `503` over HTTP), as for a [`GlobalTank`].
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
/// let layer = KeyedThrottleLayer::from_budget(per_user, by_user).reject();
/// # let _ = layer;
/// # Ok(()) }
/// ```
impl<K> KeyedBudget<K> for GlobalKeyedTank<K>
where
    K: Hash + Eq + Clone + fmt::Display + Send + Sync + 'static,
{
    #[inline]
    fn try_take(&self, key: &K) -> bool {
        self.has_fuel(key)
    }

    fn wait(&self, key: K, max_wait: Option<Duration>) -> BudgetWait {
        match max_wait {
            // Only a key that is too long fails, and `check` refused it.
            None => {
                let wait = self.await_fuel(key);
                Box::pin(async move { wait.await.is_ok() })
            }
            Some(max_wait) => Box::pin(self.await_fuel_timeout(key, max_wait)),
        }
    }

    /// With nothing reserved here for `key` and no refusal from Redis to go
    /// by (a key new here, or not used for a while), waits for one round
    /// trip, at most the store's timeout. Not while the store is known down
    /// under `Closed`, as for a [`GlobalTank`].
    fn ask(&self, key: K) -> Option<BudgetWait> {
        if KeyedBudget::unavailable(self, &key).is_some() {
            return None;
        }
        let unknown = GlobalKeyedTank::wait_time(self, &key, 1) == Some(Duration::ZERO);
        unknown.then(|| Box::pin(self.await_answer(&key)) as BudgetWait)
    }

    fn wait_time(&self, key: &K, n: u64) -> Option<Duration> {
        GlobalKeyedTank::wait_time(self, key, n)
    }

    fn rate(&self) -> Rate {
        GlobalKeyedTank::rate(self)
    }

    /// Each key's bank, as for a [`GlobalTank`].
    fn capacity(&self) -> u64 {
        GlobalKeyedTank::capacity(self)
    }

    fn available(&self, key: &K) -> u64 {
        GlobalKeyedTank::available(self, key)
    }

    /// While Redis does not answer and the store's policy is
    /// [`Closed`](FailurePolicy::Closed): ``redis keyed tank `name` ``,
    /// retry after a second.
    fn unavailable(&self, _key: &K) -> Option<Unavailable> {
        outage(self.store(), || {
            format!("redis keyed tank `{}`", self.name())
        })
    }

    fn check(&self, key: &K) -> Result<(), KeyError> {
        // Counted as written, without allocating, on every request.
        let mut len = TextLen(0);
        let _ = fmt::write(&mut len, format_args!("{key}"));
        match len.0 <= MAX_KEY_LEN {
            true => Ok(()),
            false => Err(KeyError::Other(format!(
                "the key is {} bytes long; a key in Redis must be at most {MAX_KEY_LEN}",
                len.0
            ))),
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
