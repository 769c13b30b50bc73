//! [`GlobalKeyedTank`]: one global tank per key (API key, user, client
//! address), every key at the tank's rate or one of its own.
//!
//! Each key is its own state in Redis (`PREFIX:{NAME:KEY}:ks`, and
//! `PREFIX:{NAME:KEY}:kw` under `Window`: see `script.rs`), in a hash slot
//! of its own, written with an expiry like a global tank's, so idle keys
//! leave Redis by themselves and, on a Cluster, the keys spread over the
//! shards. A key's call reads only that key: it carries the parameters
//! this instance holds and the generation of the tank's parameters they
//! come from, and a key stored under an older generation is converted to
//! them (as `set_rate` converts a global tank).
//!
//! The tank's parameters (`PREFIX:{NAME}:p`) are what a build must match
//! and what `set_rate` changes. Each instance *checks* them (its
//! [`Family`]) alongside a key's round trip when it last did over a second
//! ago, and at once when a key was stored by a tank born later than the
//! one it knows: that is how another instance's `set_rate` reaches it, how
//! it learns that the name was lost and taken by another limit, and what
//! keeps the parameters from expiring while the tank is used.
//!
//! Locally, each key in use is an entry (`entry.rs`) in a sharded map of at
//! most `max_keys` entries, exactly: each shard holds at most its share, and
//! the shares add up to `max_keys`. A full shard forgets an entry to make
//! room: one nobody holds (no waiter, no driver), those without reserved
//! fuel first; else one with no waiter (its driver finishes its round trip
//! and ends); else any. The fuel a forgotten entry held is lost, never
//! re-granted (under `FailurePolicy::Local`, what the key spent of its
//! local tank is kept apart, in one local keyed tank: see [`LocalKeys`]).
//! Waiters of a forgotten entry keep it, and its driver, until they are
//! served (Redis decides their grants as any other instance's; a
//! newcomer on the same key gets a new entry, which does not queue behind
//! them).

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use fueltank::{Hardcap, KeyedTank, Rate};

use crate::entry::{Entry, LocalShare, Options, control, fallback_rate};
use crate::global::{Shape, shape_setters};
use crate::params::Params;
use crate::script::{self, Ask, Op, Reply, Scope};
use crate::store::{FailurePolicy, StoreShared};
use crate::{AwaitGlobal, Error, RedisStore, lock};

/// The longest key text accepted, in bytes: a bound on the Redis memory one
/// key takes, whatever the keys callers make up.
///
/// # Examples
///
/// ```
/// let key = "x".repeat(fueltank_redis::MAX_KEY_LEN);
/// assert_eq!(key.len(), 1024); // the longest a GlobalKeyedTank takes
/// ```
pub const MAX_KEY_LEN: usize = 1024;

const SHARDS: usize = 16;

/// One shard of the keys held here, and the most it holds.
struct Shard<K> {
    map: HashMap<K, Arc<Entry>>,
    cap: usize,
}

/// One global tank per key, each shared by every instance that builds the
/// same name, all at one rate.
///
/// The methods of [`fueltank::KeyedTank`], on global tanks. A key is turned
/// into its Redis key through its [`Display`](fmt::Display) text, which
/// must be at most [`MAX_KEY_LEN`] bytes: a longer key gets no fuel
/// (`has_fuel` is `false`, the waits resolve to [`Error::InvalidKey`]).
/// Redis keys are binary-safe, so any other text is accepted.
///
/// # Examples
///
/// ```no_run
/// use fueltank_redis::RedisStore;
///
/// # async fn run() -> Result<(), fueltank_redis::Error> {
/// let store = RedisStore::connect("redis://127.0.0.1:6379").await?;
/// let per_user = store.keyed::<String>("per-user", "10/s".parse()?).build().await?;
/// let alice = "alice".to_string();
/// per_user.await_fuel(alice.clone()).await?;
/// if !per_user.has_fuel(&alice) {
///     let retry = per_user.wait_time(&alice, 1);
/// }
/// # Ok(()) }
/// ```
pub struct GlobalKeyedTank<K> {
    shared: Arc<KeyedShared<K>>,
}

struct KeyedShared<K> {
    store: RedisStore,
    options: Arc<Options>,
    family: Arc<Family>,
    /// `PREFIX:{NAME` of every key's Redis keys.
    tag_start: String,
    /// The builder's rate, and `rate_by`: see the builder.
    base: Rate,
    rate_by: Option<Arc<RateBy<K>>>,
    hasher: RandomState,
    shards: Box<[Mutex<Shard<K>>]>,
    /// `FailurePolicy::Local`'s tanks of the keys.
    local: Option<Arc<LocalKeys<K>>>,
}

/// `FailurePolicy::Local(share)`'s tanks of a keyed tank's keys: one local
/// keyed tank at `share` of every key's rates (the tank's rate in force, a
/// key's own, those of `also`), with the tank's hardcap, made on first
/// need. Apart from the keys' entries, which the shards forget to stay
/// within `max_keys`: a key's local tank made again with its entry came
/// back full, a new bank each time a caller touched other keys between
/// its requests. fueltank's keyed tank keeps what an evicted key owes.
struct LocalKeys<K> {
    tank: OnceLock<Option<KeyedTank<K>>>,
    share: f64,
    family: Arc<Family>,
    base: Rate,
    rate_by: Option<Arc<RateBy<K>>>,
    max_keys: usize,
}

impl<K: Hash + Eq + Clone + Send + Sync + 'static> LocalKeys<K> {
    /// The local keyed tank, at `share` of the rate in force.
    fn tank(&self) -> Option<&KeyedTank<K>> {
        let share = self.share;
        let tank = self.tank.get_or_init(|| {
            let scaled = fallback_rate(self.base, share)?;
            let mut builder = KeyedTank::builder(scaled)
                .hardcap(self.family.params().hardcap)
                .max_keys(self.max_keys);
            for also in &self.family.also {
                builder = builder.also(fallback_rate(also.rate(), share)?);
            }
            if let Some(rate_by) = self.rate_by.clone() {
                builder = builder
                    .rate_by(move |key| fallback_rate(rate_by(key), share).unwrap_or(scaled));
            }
            builder.build().ok()
        });
        let tank = tank.as_ref()?;
        // A `set_rate` here or by another instance, adopted since.
        let rate = fallback_rate(self.family.params().rate(), share)?;
        if tank.rate() != rate {
            tank.set_rate(rate);
        }
        Some(tank)
    }
}

/// One key's part of [`LocalKeys`].
struct LocalKey<K> {
    keys: Arc<LocalKeys<K>>,
    key: K,
}

impl<K: Hash + Eq + Clone + Send + Sync + 'static> LocalShare for LocalKey<K> {
    fn has_fuel_n(&self, n: u64) -> bool {
        self.keys
            .tank()
            .is_some_and(|tank| tank.has_fuel_n(&self.key, n))
    }

    fn wait_time(&self, n: u64) -> Option<Option<Duration>> {
        let tank = self.keys.tank.get()?.as_ref()?;
        Some(tank.wait_time(&self.key, n))
    }
}

/// Chooses the hardcap, the reservation sizes and the bound on keys held
/// of a [`GlobalKeyedTank`].
///
/// # Examples
///
/// ```no_run
/// use fueltank::Hardcap;
/// use fueltank_redis::RedisStore;
///
/// # async fn run() -> Result<(), fueltank_redis::Error> {
/// let store = RedisStore::connect("redis://127.0.0.1:6379").await?;
/// let per_ip = store
///     .keyed::<std::net::IpAddr>("per-ip", "5/s".parse()?)
///     .hardcap(Hardcap::Window)
///     .max_keys(10_000)
///     .build()
///     .await?;
/// # Ok(()) }
/// ```
#[must_use = "a builder does nothing until built"]
pub struct GlobalKeyedTankBuilder<K> {
    store: RedisStore,
    name: String,
    rate: Rate,
    also: Vec<Rate>,
    shape: Shape,
    max_keys: usize,
    rate_by: Option<Arc<RateBy<K>>>,
    _keys: PhantomData<fn(K)>,
}

/// A key's rate, as `GlobalKeyedTankBuilder::rate_by` gives it.
type RateBy<K> = dyn Fn(&K) -> Rate + Send + Sync;

impl<K> fmt::Debug for GlobalKeyedTankBuilder<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GlobalKeyedTankBuilder")
            .field("name", &self.name)
            .field("rate", &self.rate)
            .field("also", &self.also)
            .field("shape", &self.shape)
            .field("max_keys", &self.max_keys)
            .finish()
    }
}

impl<K> GlobalKeyedTankBuilder<K>
where
    K: Hash + Eq + Clone + fmt::Display + Send + Sync + 'static,
{
    pub(crate) fn new(store: RedisStore, name: &str, rate: Rate) -> GlobalKeyedTankBuilder<K> {
        GlobalKeyedTankBuilder {
            store,
            name: name.to_string(),
            rate,
            also: Vec::new(),
            shape: Shape::new(),
            max_keys: 100_000,
            rate_by: None,
            _keys: PhantomData,
        }
    }

    shape_setters!(GlobalKeyedTankBuilder<K>, "GlobalKeyedTankBuilder<String>");

    /// Each key's rate, as
    /// [`KeyedTankBuilder::rate_by`](fueltank::KeyedTankBuilder::rate_by):
    /// asked when the key's entry is made here (on its first use here, and
    /// again once it has been forgotten); a key given the builder's rate is
    /// at the tank's rate, which [`set_rate`](GlobalKeyedTank::set_rate)
    /// changes, a key given another keeps it. The rate travels with every
    /// call on the key, with the tank's hardcap, burst and hold, so every
    /// instance that gives the key the same rate shares one budget at it. A
    /// key's state in Redis keeps the parameters it was made with while it
    /// lives (until it is full and idle): an instance whose answer differs
    /// spends from it at the stored ones, as after another instance's
    /// `set_rate`. A rate the store cannot keep (a period beyond 2^52 ns)
    /// is that key's error, [`Error::UnsupportedRate`]: `has_fuel` is
    /// `false` and the waits resolve to it.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn doc(builder: fueltank_redis::GlobalKeyedTankBuilder<String>) {
    /// let builder = builder.rate_by(|user| match user.starts_with("partner-") {
    ///     true => "50/s".parse().unwrap(),
    ///     false => "5/s".parse().unwrap(),
    /// });
    /// # }
    /// ```
    pub fn rate_by(
        mut self,
        rate: impl Fn(&K) -> Rate + Send + Sync + 'static,
    ) -> GlobalKeyedTankBuilder<K> {
        self.rate_by = Some(Arc::new(rate));
        self
    }

    /// Another rate every key keeps beside its own, as
    /// [`KeyedTankBuilder::also`](fueltank::KeyedTankBuilder::also) and
    /// [`GlobalTankBuilder::also`](crate::GlobalTankBuilder::also): "100/min,
    /// also 5/s" per key. For each key, a grant takes from every rate or
    /// from none: Redis decides all of a key's rates in one call. Each rate
    /// keeps the hardcap's bound with its own `max_n` and `per` (under
    /// `Limit`, its bank is its `max_n` less the intervals of the hold);
    /// the capacity is the least of them. The rates are every key's,
    /// whatever its first rate: a key
    /// [`rate_by`](GlobalKeyedTankBuilder::rate_by) gives a rate of its own
    /// keeps it and these; [`set_rate`](GlobalKeyedTank::set_rate) changes
    /// the first rate of the keys at the tank's rate, and these stay.
    /// Without [`hold`](GlobalKeyedTankBuilder::hold), the hold is the
    /// default for the shortest period. The rates are part of the tank: a
    /// build with other ones is an [`Error::Mismatch`].
    ///
    /// Under [`Hardcap::One`] and [`Hardcap::Window`] a Redis tank keeps
    /// one rate: `build` returns [`Error::UnsupportedRate`] for those, and
    /// for a `Limit` rate too slow to bank anything beside the hold (one
    /// that would be paced, as `One`); a key whose own rate is such a rate
    /// gets that error instead of fuel.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn doc(builder: fueltank_redis::GlobalKeyedTankBuilder<String>) {
    /// let builder = builder.also("5/s".parse().unwrap());
    /// # }
    /// ```
    pub fn also(mut self, rate: Rate) -> GlobalKeyedTankBuilder<K> {
        self.also.push(rate);
        self
    }

    /// The most keys held here at once (100 000 by default, at least 1).
    /// Redis holds each key until it is idle, whatever this bound.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn doc(builder: fueltank_redis::GlobalKeyedTankBuilder<String>) {
    /// let builder = builder.max_keys(1_000);
    /// # }
    /// ```
    pub fn max_keys(mut self, max_keys: usize) -> GlobalKeyedTankBuilder<K> {
        self.max_keys = max_keys;
        self
    }

    /// Checks the options and the parameters Redis holds under the name:
    /// other ones are an [`Error::Mismatch`]. Under `One` at 49/s and above
    /// it first measures this system's timer lateness, blocking the calling
    /// thread for about 5 ms.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use fueltank_redis::RedisStore;
    ///
    /// # async fn run() -> Result<(), fueltank_redis::Error> {
    /// let store = RedisStore::connect("redis://127.0.0.1:6379").await?;
    /// let keyed = store.keyed::<u64>("per-account", "100/min".parse()?).build().await?;
    /// # Ok(()) }
    /// ```
    pub async fn build(self) -> Result<GlobalKeyedTank<K>, Error> {
        if self.max_keys == 0 {
            return Err(Error::InvalidOption {
                option: "max_keys",
                value: "0".to_string(),
                accepted: "at least 1",
            });
        }
        let (params, mut options) = self.shape.resolve(&self.name, self.rate)?;
        let (params, also) = params.with_also(&self.also, options.hold_is_default)?;
        if !also.is_empty() {
            // The hold stays as built: the other rates' banks count it.
            options.hold_is_default = false;
        }
        options.also = also.clone();
        let tag_start = script::tag_start(&self.store.shared.prefix, &self.name);
        let family = Family {
            key: Arc::new([script::family_key(&tag_start)]),
            also,
            params: Mutex::new(params),
            check: Mutex::new(Check {
                sent: Some(crate::entry::now()),
                conflict: None,
            }),
        };
        let stored = family
            .control(&self.store.shared, Op::Build, params, &self.name)
            .await?;
        *lock(&family.params) = stored;
        let family = Arc::new(family);
        let local = match self.store.shared.policy {
            FailurePolicy::Local(share) => Some(Arc::new(LocalKeys {
                tank: OnceLock::new(),
                share,
                family: family.clone(),
                base: self.rate,
                rate_by: self.rate_by.clone(),
                max_keys: self.max_keys,
            })),
            _ => None,
        };
        let shared = KeyedShared {
            store: self.store,
            options: Arc::new(options),
            family,
            tag_start,
            base: self.rate,
            rate_by: self.rate_by,
            hasher: RandomState::new(),
            shards: shards(self.max_keys),
            local,
        };
        Ok(GlobalKeyedTank {
            shared: Arc::new(shared),
        })
    }
}

/// Shards whose caps add up to `max_keys` exactly.
fn shards<K>(max_keys: usize) -> Box<[Mutex<Shard<K>>]> {
    let count = SHARDS.min(max_keys);
    let (share, extra) = (max_keys / count, max_keys % count);
    (0..count)
        .map(|i| {
            Mutex::new(Shard {
                map: HashMap::new(),
                cap: share + usize::from(i < extra),
            })
        })
        .collect()
}

/// Which entries a full shard forgets first (lower first): nobody else
/// holds it and nothing is reserved; nobody else holds it; nobody waits on
/// it (its driver may be running); any.
fn eviction_rank(entry: &Arc<Entry>) -> u8 {
    match (Arc::strong_count(entry) > 1, entry.reserved() > 0) {
        (false, false) => 0,
        (false, true) => 1,
        _ if entry.waiting() == 0 => 2,
        _ => 3,
    }
}

/// How often an instance checks a keyed tank's parameters while it makes
/// round trips.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// A keyed tank's parameters as this instance knows them, shared by its
/// entries, and their checks.
pub(crate) struct Family {
    /// `PREFIX:{NAME}:p`.
    key: Arc<[Vec<u8>]>,
    /// The rates of `also`, part of what the tank is (stored with its
    /// parameters, so that a build with other ones is a mismatch).
    also: Vec<Params>,
    params: Mutex<Params>,
    check: Mutex<Check>,
}

struct Check {
    /// When the latest check was sent.
    sent: Option<Instant>,
    /// What the latest check found when it was another limit.
    conflict: Option<Params>,
}

impl Family {
    pub(crate) fn params(&self) -> Params {
        *lock(&self.params)
    }

    /// Parameters a key answered with: taken if of a later generation.
    pub(crate) fn learn(&self, params: Params) {
        let mut known = lock(&self.params);
        if params.generation > known.generation {
            *known = params;
        }
    }

    /// Another limit's parameters, if the latest check found them.
    pub(crate) fn conflict(&self) -> Option<Params> {
        lock(&self.check).conflict
    }

    /// Whether a check is due at `now` (the latest is a second old); if
    /// so, it is this caller's to make.
    pub(crate) fn claim(&self, now: Instant) -> bool {
        let mut check = lock(&self.check);
        let due = check
            .sent
            .is_none_or(|sent| now.saturating_duration_since(sent) >= CHECK_EVERY);
        if due {
            check.sent = Some(now);
        }
        due
    }

    /// Whether a check was sent at `at` or later.
    pub(crate) fn checked_since(&self, at: Instant) -> bool {
        lock(&self.check).sent.is_some_and(|sent| sent >= at)
    }

    /// Marks a check as sent now.
    pub(crate) fn claim_now(&self) {
        lock(&self.check).sent = Some(crate::entry::now());
    }

    /// Checks the parameters Redis holds: adopts them if they are this
    /// instance's or set from them, records a conflict if they are another
    /// limit's; a failed check changes nothing (the keys' own round trips
    /// decide whether the store is down).
    pub(crate) async fn check(&self, store: &StoreShared) {
        let params = self.params();
        let args = script::args(
            Op::Check,
            Scope::Family,
            &params,
            &self.also,
            &Ask::default(),
        );
        match store.send(&self.key, args).await {
            Ok(Reply::Done(seen)) => {
                *lock(&self.params) = seen.params;
                lock(&self.check).conflict = None;
            }
            Ok(Reply::Mismatch(stored)) => lock(&self.check).conflict = Some(stored),
            _ => {}
        }
    }

    /// A `Build` or `Set` of the tank's parameters.
    async fn control(
        &self,
        store: &StoreShared,
        op: Op,
        params: Params,
        name: &str,
    ) -> Result<Params, Error> {
        let also = &self.also;
        let stored = control(store, &self.key, Scope::Family, op, params, also, name).await?;
        let mut check = lock(&self.check);
        check.sent = Some(crate::entry::now());
        check.conflict = None;
        Ok(stored)
    }
}

impl<K> Clone for GlobalKeyedTank<K> {
    fn clone(&self) -> Self {
        GlobalKeyedTank {
            shared: self.shared.clone(),
        }
    }
}

impl<K> GlobalKeyedTank<K>
where
    K: Hash + Eq + Clone + fmt::Display + Send + Sync + 'static,
{
    /// The entry of `key`, made if new.
    pub(crate) fn entry(&self, key: &K) -> Result<Arc<Entry>, Error> {
        let shared = &self.shared;
        let index = shared.hasher.hash_one(key) as usize % shared.shards.len();
        let mut shard = lock(&shared.shards[index]);
        if let Some(entry) = shard.map.get(key) {
            return Ok(entry.clone());
        }
        let text = key.to_string();
        if text.len() > MAX_KEY_LEN {
            return Err(Error::InvalidKey {
                len: text.len(),
                max: MAX_KEY_LEN,
            });
        }
        if shard.map.len() >= shard.cap {
            // All entries nobody holds with nothing reserved at once (the
            // usual case, and the cost of a scan is shared); then the one
            // that is least in use.
            shard.map.retain(|_, entry| eviction_rank(entry) > 0);
            while shard.map.len() >= shard.cap {
                let victim = shard
                    .map
                    .iter()
                    .min_by_key(|(_, entry)| eviction_rank(entry))
                    .map(|(key, _)| key.clone());
                match victim {
                    Some(victim) => shard.map.remove(&victim),
                    None => break,
                };
            }
        }
        let mut entry = Entry::new(
            shared.store.shared.clone(),
            shared.options.clone(),
            Arc::new(script::key_keys(&shared.tag_start, &text)),
            shared.family.params(),
            Some(shared.family.clone()),
        )
        .with_own_rate(self.own_rate(key))?;
        if let Some(keys) = &shared.local {
            entry = entry.with_local(Box::new(LocalKey {
                keys: keys.clone(),
                key: key.clone(),
            }));
        }
        let entry = Arc::new(entry);
        // A rate of its own must be one Redis keeps beside the others.
        entry.params().check_also(&shared.options.also)?;
        shard.map.insert(key.clone(), entry.clone());
        Ok(entry)
    }

    /// Takes one fuel for `key` now from what is reserved here, or returns
    /// `false`; never waits on Redis, never overtakes a waiter on the same
    /// key. `false` for a key whose text is too long.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn run(keyed: fueltank_redis::GlobalKeyedTank<String>) {
    /// if keyed.has_fuel(&"alice".to_string()) {
    ///     // serve alice
    /// }
    /// # }
    /// ```
    pub fn has_fuel(&self, key: &K) -> bool {
        self.has_fuel_n(key, 1)
    }

    /// Takes `n` fuel together for `key` now, or none and returns `false`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn run(keyed: fueltank_redis::GlobalKeyedTank<u64>) {
    /// assert!(!keyed.has_fuel_n(&7, u64::MAX));
    /// # }
    /// ```
    pub fn has_fuel_n(&self, key: &K, n: u64) -> bool {
        self.entry(key).is_ok_and(|entry| entry.has_fuel_n(n))
    }

    /// Waits in line on `key` for one fuel and takes it; an
    /// [`Error::InvalidKey`] if the key's text is too long, an
    /// [`Error::Mismatch`] if Redis holds another limit under the tank's
    /// name (see the crate docs).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`GlobalTank::await_fuel`](crate::GlobalTank::await_fuel).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(keyed: fueltank_redis::GlobalKeyedTank<String>) -> Result<(), fueltank_redis::Error> {
    /// keyed.await_fuel("alice".to_string()).await?;
    /// # Ok(()) }
    /// ```
    pub fn await_fuel(&self, key: K) -> AwaitGlobal<Result<(), Error>> {
        self.await_fuel_n(key, 1)
    }

    /// Waits in line on `key` for `n` fuel and takes them together; an
    /// error if `n` never fits at once or the key's text is too long.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`GlobalTank::await_fuel`](crate::GlobalTank::await_fuel).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(keyed: fueltank_redis::GlobalKeyedTank<String>) -> Result<(), fueltank_redis::Error> {
    /// keyed.await_fuel_n("alice".to_string(), 2).await?;
    /// # Ok(()) }
    /// ```
    pub fn await_fuel_n(&self, key: K, n: u64) -> AwaitGlobal<Result<(), Error>> {
        AwaitGlobal::new(self.entry(&key), n, None, true)
    }

    /// Waits in line on `key` for one fuel for at most `timeout`; resolves
    /// to whether it was taken (`false` at once for a key whose text is too
    /// long).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`GlobalTank::await_fuel`](crate::GlobalTank::await_fuel).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(keyed: fueltank_redis::GlobalKeyedTank<String>) {
    /// use std::time::Duration;
    ///
    /// let served = keyed.await_fuel_timeout("alice".to_string(), Duration::from_millis(10)).await;
    /// # }
    /// ```
    pub fn await_fuel_timeout(&self, key: K, timeout: Duration) -> AwaitGlobal<bool> {
        AwaitGlobal::new(self.entry(&key), 1, Some(timeout), false)
    }

    /// How long a newcomer asking `key` for `n` fuel would wait, as far as
    /// this instance knows (see
    /// [`GlobalTank::wait_time`](crate::GlobalTank::wait_time)); `None` if
    /// `n` never fits at once or the key's text is too long.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn run(keyed: fueltank_redis::GlobalKeyedTank<String>) {
    /// let retry = keyed.wait_time(&"alice".to_string(), 1);
    /// # }
    /// ```
    pub fn wait_time(&self, key: &K, n: u64) -> Option<Duration> {
        self.entry(key).ok()?.wait_time(n)
    }

    /// The tank's rate, as Redis last told this instance: every key's, but
    /// those [`rate_by`](GlobalKeyedTankBuilder::rate_by) gives a rate of
    /// their own.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn run(keyed: fueltank_redis::GlobalKeyedTank<String>) {
    /// println!("{} per key", keyed.rate());
    /// # }
    /// ```
    pub fn rate(&self) -> Rate {
        self.shared.family.params().rate()
    }

    /// The hardcap of every key.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn run(keyed: fueltank_redis::GlobalKeyedTank<String>) {
    /// println!("{:?}", keyed.hardcap());
    /// # }
    /// ```
    pub fn hardcap(&self) -> Hardcap {
        self.shared.family.params().hardcap
    }

    /// The tank's name.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn run(keyed: fueltank_redis::GlobalKeyedTank<String>) {
    /// println!("{}", keyed.name());
    /// # }
    /// ```
    pub fn name(&self) -> &str {
        &self.shared.options.name
    }

    /// The store every key's fuel comes from.
    pub(crate) fn store(&self) -> &crate::store::StoreShared {
        &self.shared.store.shared
    }

    /// Whether Redis did not answer `key` (on one server: any key) at the
    /// latest round trip; a key not held here has not been asked on a
    /// Cluster.
    pub(crate) fn is_down(&self, key: &K) -> bool {
        match self.held(key) {
            Some(entry) => entry.is_down(),
            None => !self.store().is_cluster() && self.store().is_down(),
        }
    }

    /// The entry of `key` if it is held here.
    fn held(&self, key: &K) -> Option<Arc<Entry>> {
        let shared = &self.shared;
        let index = shared.hasher.hash_one(key) as usize % shared.shards.len();
        lock(&shared.shards[index]).map.get(key).cloned()
    }

    /// Fuel a newcomer could take for `key` here now; 0 for a key not held
    /// here.
    pub(crate) fn available(&self, key: &K) -> u64 {
        self.held(key).map_or(0, |entry| entry.available())
    }

    /// `rate_by`'s rate for `key` if it is one of its own (not the
    /// builder's, which is the tank's rate).
    fn own_rate(&self, key: &K) -> Option<Rate> {
        let shared = &self.shared;
        let own = shared.rate_by.as_ref().map(|rate_by| rate_by(key));
        own.filter(|&rate| rate != shared.base)
    }

    /// The most fuel `key` is granted together, as
    /// [`GlobalTank::capacity`](crate::GlobalTank::capacity), at the key's
    /// own rate (held here or not): with
    /// [`also`](GlobalKeyedTankBuilder::also), the least over the rates.
    /// A key whose own rate Redis cannot keep gets no fuel at all; it is
    /// said the tank's capacity.
    pub(crate) fn capacity(&self, key: &K) -> u64 {
        let shared = &self.shared;
        let params = match self.held(key) {
            Some(entry) => entry.params(),
            None => {
                let params = shared.family.params();
                self.own_rate(key)
                    .and_then(|own| {
                        let hold_is_default = shared.options.hold_is_default;
                        params.with_rate(own, hold_is_default).ok()
                    })
                    .unwrap_or(params)
            }
        };
        shared.options.capacity(&params)
    }

    /// Every rate of `key` (its own or the tank's, then those of
    /// [`also`](GlobalKeyedTankBuilder::also)), each with the fuel
    /// reserved here for it (none for a key not held here).
    pub(crate) fn rates(&self, key: &K) -> Vec<(Rate, u64)> {
        let (rate, available) = match self.held(key) {
            Some(entry) => (entry.params().rate(), entry.available()),
            // As `rate_by` says, as the entry would be made now.
            None => (self.own_rate(key).unwrap_or_else(|| self.rate()), 0),
        };
        let also = self.shared.options.also.iter();
        std::iter::once((rate, available))
            .chain(also.map(|params| (params.rate(), available)))
            .collect()
    }

    /// Fuel reserved here for `key` and not yet spent (spendable now or
    /// later); 0 for a key not held here.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn run(keyed: fueltank_redis::GlobalKeyedTank<String>) {
    /// println!("{} reserved for alice", keyed.reserved(&"alice".to_string()));
    /// # }
    /// ```
    pub fn reserved(&self, key: &K) -> u64 {
        self.held(key).map_or(0, |entry| entry.reserved())
    }

    /// The number of keys held here now.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn run(keyed: fueltank_redis::GlobalKeyedTank<String>) {
    /// assert!(keyed.len() <= 100_000);
    /// # }
    /// ```
    pub fn len(&self) -> usize {
        self.shared
            .shards
            .iter()
            .map(|shard| lock(shard).map.len())
            .sum()
    }

    /// Whether no key is held here.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn run(keyed: fueltank_redis::GlobalKeyedTank<String>) {
    /// if keyed.is_empty() {
    ///     println!("no key in use");
    /// }
    /// # }
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Changes the rate of every key at the tank's rate (those
    /// [`rate_by`](GlobalKeyedTankBuilder::rate_by) gives a rate of their
    /// own keep it), for every instance: each key's state
    /// is converted at its next call, keeping its fuel with no burst (as
    /// [`GlobalTank::set_rate`](crate::GlobalTank::set_rate)). This
    /// instance's keys take it at once; another instance takes it at its
    /// next check of the tank's parameters (each checks them at most once a
    /// second, alongside a key's round trip), or sooner from a key this one
    /// called since. The keys are in slots of their own (so that a keyed
    /// tank spreads over a Cluster's shards), so no key's round trip reads
    /// the tank's parameters; see the crate docs, *One name, one limit*.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(keyed: fueltank_redis::GlobalKeyedTank<String>) -> Result<(), fueltank_redis::Error> {
    /// keyed.set_rate("20/s".parse()?).await?;
    /// # Ok(()) }
    /// ```
    pub async fn set_rate(&self, rate: Rate) -> Result<(), Error> {
        let shared = &self.shared;
        let params = shared
            .family
            .params()
            .with_rate(rate, shared.options.hold_is_default)?;
        params.check_also(&shared.options.also)?;
        let stored = shared
            .family
            .control(&shared.store.shared, Op::Set, params, &shared.options.name)
            .await?;
        *lock(&shared.family.params) = stored;
        for shard in shared.shards.iter() {
            for entry in lock(shard).map.values() {
                entry.set_params(stored);
            }
        }
        Ok(())
    }
}

impl<K> fmt::Debug for GlobalKeyedTank<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GlobalKeyedTank")
            .field("name", &self.shared.options.name)
            .field("params", &self.shared.family.params())
            .finish()
    }
}
