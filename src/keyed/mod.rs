//! [`KeyedTank`]: one tank per key (client address, user id, …), in bounded
//! memory, with no key ever beyond its hardcap's bound.
//!
//! # Keys
//!
//! A key is held by its 64-bit hash, SipHash under a secret of this keyed
//! tank's own, so that nobody can pick keys that collide: an entry costs 16
//! bytes whatever the key's type. Two keys whose hashes collide would share
//! one tank — each limited at least as tightly as alone, never less — with
//! odds of 2^-64 per pair.
//!
//! A key nobody waits on is *idle*: under `Limit`, `One` and `Unbounded` all
//! it holds is its `tat`, the one number of the refill algorithm (see
//! `tank/bucket.rs`), in its map entry, and taking fuel for it is the tank's
//! own exact step on that number; a key with a rate of its own (`rate_by`),
//! and every key of a tank with several rates (`also`), holds its rate and
//! `tat`s beside the map; under `Window` a key holds its
//! log of grants, boxed beside the map. A key that must wait becomes *live*: a full [`Tank`]
//! with its line and timer, kept in a side table; it turns idle again once
//! its line is empty and nothing holds it (checked once a few more keys of
//! its shard are made live, and at every sweep: a flood of waits dropped
//! unserved costs what idle keys do).
//!
//! # Bounded memory
//!
//! Keys are spread over shards, each a hash map under its own lock holding
//! at most its share of `max_keys` (the shares add up to `max_keys`
//! exactly). A shard forgets keys that are exactly like a key never seen
//! and stay so as time passes (a full bucket, when a new key starts full:
//! the default `initial` under `Limit` and `One`; under `Window`, a log
//! holding nothing) as it goes: one sweep every `len` operations, so the
//! cost per operation stays constant. Under `Unbounded`, or with `initial`
//! below the capacity, a key accrues fuel beyond a new key's, so it is
//! kept until evicted. When a shard
//! is full of keys that differ from a fresh one, it evicts the eighth that
//! differ least. Only keys held by a waiting future or a permit are never
//! evicted; they are paid for by their holders.
//!
//! # Debts survive eviction
//!
//! A key evicted while it still owes fuel would come back fresh, with more
//! fuel than its bound allows: the bypass a flood of new keys would buy for
//! a client that drains its own key between floods. So an evicted key's
//! debt goes into a fixed table of debts, one cell per key the shard holds
//! (8 bytes a key; 16 under `Window`): the two cells its hash picks are
//! raised to its debt (when it is next due fuel, or under `Window` when its
//! grants leave the window and how many). A key created later starts from
//! the lesser of its two cells whenever that owes more than a fresh key. A
//! cell keeps the largest debt raised on it, so a key never comes back
//! owing less than it left with: no key ever gets beyond its hardcap's
//! bound, however keys are evicted.
//!
//! The price is paid by innocent keys whose two cells both hold a debt: a
//! new key then starts as indebted as the less indebted of the evicted keys
//! that raised them. A debt is a time, so it fades by itself: the penalty
//! lasts at most the time to refill a key's `initial` fuel (`initial · T`,
//! at most `per`), and at most a fresh key's whole budget is withheld.
//! Under a flood that evicts a fraction `f` of the cells' worth of owing
//! keys per `per`, about `f²` of new keys are so limited. What eviction
//! cannot keep is a *bank* (fuel beyond a fresh key's, under `Unbounded`
//! or with `initial` below the capacity): it is lost, which only ever
//! under-grants.

mod builder;

use std::collections::HashMap;
use std::collections::hash_map::{Entry, RandomState};
use std::fmt;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

pub use builder::KeyedTankBuilder;

use crate::clock::{ClockSource, saturating_ns};
use crate::tank::bucket::{Gcra, Window};
use crate::{AwaitFuel, Budget, Hardcap, Rate, Tank};

/// One tank per key, each refilled at the tank's rate (or one of its own:
/// [`rate_by`](KeyedTankBuilder::rate_by)), in bounded memory.
///
/// A cheap handle: clones share the keys. An idle key costs one map entry of
/// 16 bytes and its cell of the debt table (see the module docs for how
/// keys are kept, forgotten and evicted).
///
/// # Examples
///
/// ```
/// use fueltank::{KeyedTank, Rate};
/// use std::net::IpAddr;
///
/// let per_client = KeyedTank::<IpAddr>::new(Rate::per_second(2)?);
/// let alice: IpAddr = "192.0.2.1".parse().unwrap();
/// let bob: IpAddr = "192.0.2.2".parse().unwrap();
/// assert!(per_client.has_fuel(&alice));
/// assert!(per_client.has_fuel(&alice));
/// assert!(!per_client.has_fuel(&alice)); // alice used her two
/// assert!(per_client.has_fuel(&bob));    // bob has his own
/// # Ok::<(), fueltank::Error>(())
/// ```
pub struct KeyedTank<K> {
    shared: Arc<KeyTable>,
    rate_by: Option<Arc<RateBy<K>>>,
    _keys: PhantomData<fn(&K)>,
}

/// A key's rate, as `KeyedTankBuilder::rate_by` gives it.
type RateBy<K> = dyn Fn(&K) -> Rate + Send + Sync;

/// Asked when a key's state is created: its own rate, if `rate_by` gives one.
type Own<'a> = &'a dyn Fn() -> Option<Rate>;

/// What every handle of a keyed tank shares: the keys, in shards, and what
/// a key's state is made from.
struct KeyTable {
    /// The builder's rate: a key `rate_by` gives it is at the tank's rate
    /// (each shard's `rate`, which `set_rate` changes).
    base: Rate,
    hardcap: Hardcap,
    burst: Option<u64>,
    /// `initial` as given (a key's is at most its capacity).
    initial: Option<u64>,
    /// The rates of `KeyedTankBuilder::also`, every key's beside its own
    /// (never changed: `set_rate` changes the first), and the least of
    /// their request capacities (`u64::MAX` without any).
    also: Box<[KeyRate]>,
    also_request: u64,
    clock: ClockSource,
    hasher: RandomState,
    shards: Box<[Mutex<Shard>]>,
}

/// How many keys made live a shard gathers before it looks whether their
/// tanks are still held (`Shard::idle_unheld`).
const MADE_LIVE_CHECK: usize = 16;

/// Map values: a key's `tat` (ticks since the shard's epoch), or with
/// `LIVE` the index of its tank in `Shard::live`, with `WINDOW` the index
/// of its log in `Shard::windows`, with `RATED` (both) the index of its
/// buckets in `Shard::rated`, and with `RATED | AT_TANK_RATE` the same for
/// a key at the tank's rate (in a tank with `also`, whose every key is
/// there).
const LIVE: u64 = 1 << 63;
const WINDOW: u64 = 1 << 62;
const RATED: u64 = LIVE | WINDOW;
const INDEX: u64 = WINDOW - 1;
const AT_TANK_RATE: u64 = 1 << 61;

/// What a map value is; a `Rated` key says whether it is at the tank's rate.
enum Kind {
    Idle,
    Live(usize),
    Window(usize),
    Rated(usize, bool),
}

fn kind(stored: u64) -> Kind {
    let index = (stored & INDEX) as usize;
    match stored & RATED {
        0 => Kind::Idle,
        LIVE => Kind::Live(index),
        WINDOW => Kind::Window(index),
        _ => Kind::Rated(
            (stored & (AT_TANK_RATE - 1)) as usize,
            stored & AT_TANK_RATE != 0,
        ),
    }
}

/// The map value of a key's buckets in `Shard::rated`.
fn rated_value(index: usize, at_tank_rate: bool) -> u64 {
    RATED | index as u64 | if at_tank_rate { AT_TANK_RATE } else { 0 }
}

/// Idle `tat`s stay below this many ticks: the shard's epoch moves on
/// once the clock reaches half of it (checked by every operation, at
/// `Shard::shift_at`), and a bucket's span is below an eighth of it.
const TICKS_LIMIT: i128 = 1 << 61;

/// The first internal ns at which the clock is [`TICKS_LIMIT`]` / 2` ticks
/// of `rate` since `epoch`: the epoch must move on before a take then.
fn shift_at(epoch: u64, rate: &KeyRate) -> u64 {
    let ns = (TICKS_LIMIT as u128 / 2).div_ceil(u128::from(rate.scale.0));
    epoch.saturating_add(u64::try_from(ns).unwrap_or(u64::MAX))
}

struct Shard {
    map: HashMap<u64, u64, BuildHasherDefault<KeyHash>>,
    live: Slots<Live>,
    rated: Slots<Rated>,
    windows: Slots<Box<Window>>,
    /// The tank's rate (the same in every shard).
    rate: KeyRate,
    /// Internal ns at tick 0 of the idle keys' `tat`s.
    epoch: u64,
    /// `shift_at(epoch, rate)`: from then on an operation sweeps first,
    /// moving the epoch on, so that no `tat` outgrows a map entry.
    shift_at: u64,
    /// The latest clock reading an operation on this shard worked at.
    last: u64,
    /// Operations since the last sweep.
    ops: usize,
    /// Keys made live since last looked at (see `Shard::idle_unheld`).
    made_live: Vec<u64>,
    /// `made_live`'s length at which they are next looked at.
    made_live_check: usize,
    /// Keys held at most.
    cap: usize,
    debts: Debts,
}

/// A live key's tank; `own` if its rate is its own, not the tank's.
struct Live {
    tank: Tank,
    own: bool,
}

/// An idle key with a rate of its own, or of a tank with `also`: its `tat`
/// in ticks of its rate since the shard's epoch (`i128`: a rate finer than
/// the tank's would outgrow a map entry's range), and those of the rates of
/// `also` in ticks of each (empty without: no memory, and the box's niche
/// keeps `Option<Rated>` at 48 bytes).
struct Rated {
    rate: Rate,
    tat: i128,
    also: Box<[i128]>,
}

/// What a key holds, read out of its shard.
enum Value {
    Idle(u64),
    Rated(usize, bool),
    Window(usize),
    Live(Tank),
}

impl<K> KeyedTank<K> {
    /// The keyed tank's clock (a combination of budgets waits on it).
    pub(crate) fn clock(&self) -> ClockSource {
        self.shared.clock.clone()
    }
}

impl<K: Hash + Eq + Clone + Send + Sync + 'static> KeyedTank<K> {
    /// One [`Hardcap::Limit`] tank per key, each starting full, at most
    /// 2^20 keys held.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{KeyedTank, Rate};
    ///
    /// let per_user = KeyedTank::new(Rate::per_minute(60)?);
    /// assert!(per_user.has_fuel(&"alice"));
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn new(rate: Rate) -> KeyedTank<K> {
        KeyedTankBuilder::new(rate)
            .build()
            .expect("the default options are valid")
    }

    /// A builder to choose the hardcap, the initial fuel of a new key, the
    /// bound on keys held and the clock.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Hardcap, KeyedTank, Rate};
    ///
    /// let per_user = KeyedTank::<u64>::builder(Rate::per_second(5)?)
    ///     .hardcap(Hardcap::Window)
    ///     .max_keys(10_000)
    ///     .build()?;
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn builder(rate: Rate) -> KeyedTankBuilder<K> {
        KeyedTankBuilder::new(rate)
    }

    fn hash(&self, key: &K) -> u64 {
        self.shared.hasher.hash_one(key)
    }

    /// `rate_by`'s answer for `key`, if it has one.
    fn own(&self, key: &K) -> Option<Rate> {
        self.rate_by.as_ref().map(|rate_by| rate_by(key))
    }

    /// Takes one fuel for `key` now, or returns `false`; never overtakes a
    /// task waiting on the same key.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{KeyedTank, Rate};
    ///
    /// let keyed = KeyedTank::new(Rate::per_second(1)?);
    /// assert!(keyed.has_fuel(&7));
    /// assert!(!keyed.has_fuel(&7));
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn has_fuel(&self, key: &K) -> bool {
        self.has_fuel_n(key, 1)
    }

    /// Takes `n` fuel together for `key` now, or none and returns `false`.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{KeyedTank, Rate};
    ///
    /// let keyed = KeyedTank::new(Rate::per_second(3)?);
    /// assert!(keyed.has_fuel_n(&"a", 3));
    /// assert!(!keyed.has_fuel_n(&"a", 1));
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn has_fuel_n(&self, key: &K, n: u64) -> bool {
        if n == 0 {
            return true;
        }
        self.shared.take(self.hash(key), n, &|| self.own(key))
    }

    /// Waits in line on `key`'s tank for one fuel and takes it.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`Tank::await_fuel`]: the future does nothing until
    /// polled, and dropping it after that loses no fuel.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{KeyedTank, Rate};
    ///
    /// # futures::executor::block_on(async {
    /// let keyed = KeyedTank::new(Rate::per_second(1000)?);
    /// keyed.await_fuel("alice").await;
    /// # Ok::<(), fueltank::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn await_fuel(&self, key: K) -> AwaitFuel {
        self.wait(&key, 1, None)
    }

    /// How long a newcomer asking `key` for `n` fuel would wait now,
    /// counting the line on that key; `None` if `n` can never fit.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{KeyedTank, Rate, clock::ManualClock};
    /// use std::time::Duration;
    ///
    /// let keyed = KeyedTank::builder(Rate::per_second(2)?).clock(ManualClock::new()).build()?;
    /// assert!(keyed.has_fuel_n(&1, 2));
    /// assert_eq!(keyed.wait_time(&1, 1), Some(Duration::from_millis(500)));
    /// assert_eq!(keyed.wait_time(&2, 1), Some(Duration::ZERO));
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn wait_time(&self, key: &K, n: u64) -> Option<Duration> {
        let shared = &self.shared;
        let wait = |due: u64, now| Some(Duration::from_nanos(due.saturating_sub(now)));
        let own = || self.own(key);
        shared.inspect(self.hash(key), &own, |state, now| match state {
            State::Live(tank) => tank.wait_time(n),
            State::Gcra(buckets) if n > buckets.request => None,
            State::Window(_, _, request) if n > request => None,
            State::Gcra(buckets) => wait(buckets.due(now, n), now),
            State::Window(_, window, _) => wait(window.due(now, [n]), now),
        })
    }

    /// The most fuel granted together to `key`, at its own rate
    /// (`rate_by`) if it has one.
    pub(crate) fn key_capacity(&self, key: &K) -> u64 {
        self.shared.request(self.hash(key), self.own(key))
    }

    /// A wait in `key`'s line for `n` fuel, for at most `max_wait` (from
    /// now) if given (see [`KeyedBudget::wait`](crate::KeyedBudget::wait)).
    pub(crate) fn wait<T>(&self, key: &K, n: u64, max_wait: Option<Duration>) -> AwaitFuel<T> {
        let shared = self.shared.clone();
        let deadline =
            max_wait.map(|wait| shared.clock.now_ns().saturating_add(saturating_ns(wait)));
        let (hash, own) = (self.hash(key), self.own(key));
        AwaitFuel::key(KeyStart { shared, hash, own }, n, deadline)
    }

    /// The fuel in `key`'s tank now, whoever it will go to (a key never
    /// seen holds `initial`, or less while a debt of an evicted key is on
    /// its cells); [`available`](KeyedTank::available) is what
    /// [`has_fuel`](KeyedTank::has_fuel) could take.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{KeyedTank, Rate};
    ///
    /// let keyed = KeyedTank::new(Rate::per_second(5)?);
    /// assert_eq!(keyed.level(&"new"), 5);
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn level(&self, key: &K) -> u64 {
        let own = || self.own(key);
        self.shared
            .inspect(self.hash(key), &own, |state, now| match state {
                State::Live(tank) => tank.level(),
                State::Gcra(buckets) => buckets.level(now),
                State::Window(_, window, _) => window.level(now),
            })
    }

    /// The fuel [`has_fuel`](KeyedTank::has_fuel) could take on `key` now:
    /// its [`level`](KeyedTank::level) while nobody waits on that key, and 0
    /// while tasks wait.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{KeyedTank, Rate};
    ///
    /// let keyed = KeyedTank::new(Rate::per_second(5)?);
    /// assert!(keyed.has_fuel(&"a"));
    /// assert_eq!(keyed.available(&"a"), 4);
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn available(&self, key: &K) -> u64 {
        let own = || self.own(key);
        self.shared
            .inspect(self.hash(key), &own, |state, now| match state {
                State::Live(tank) => tank.available(),
                State::Gcra(buckets) => buckets.level(now),
                State::Window(_, window, _) => window.level(now),
            })
    }

    /// Every rate of `key`'s tank, its own first (the tank's, or
    /// [`rate_by`](KeyedTankBuilder::rate_by)'s), then those of
    /// [`also`](KeyedTankBuilder::also), each with the fuel
    /// [`has_fuel`](KeyedTank::has_fuel) could take on `key` under it now
    /// (0 while tasks wait on it): the tightest is the one with the least,
    /// as [`Tank::rates`].
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{KeyedTank, Rate, clock::ManualClock};
    ///
    /// let (second, minute): (Rate, Rate) = ("5/s".parse()?, "100/min".parse()?);
    /// let keyed = KeyedTank::builder(second).also(minute).clock(ManualClock::new()).build()?;
    /// assert!(keyed.has_fuel_n(&"a", 3));
    /// assert_eq!(keyed.rates(&"a"), vec![(second, 2), (minute, 97)]);
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn rates(&self, key: &K) -> Vec<(Rate, u64)> {
        let own = || self.own(key);
        let also = self.shared.also.iter().map(|rate| rate.rate);
        self.shared
            .inspect(self.hash(key), &own, |state, now| match state {
                State::Live(tank) => tank.rates(),
                // One rate, the common case: no iterators to fold.
                State::Gcra(buckets) if buckets.rates.is_empty() => {
                    vec![(buckets.rate, buckets.first.level(now))]
                }
                State::Gcra(buckets) => std::iter::once(buckets.first.level(now))
                    .chain(buckets.also().map(|gcra| gcra.level(now)))
                    .zip(std::iter::once(buckets.rate).chain(also))
                    .map(|(level, rate)| (rate, level))
                    .collect(),
                State::Window(rate, window, _) => vec![(rate, window.level(now))],
            })
    }

    /// The number of keys held now.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{KeyedTank, Rate};
    ///
    /// let keyed = KeyedTank::new(Rate::per_second(5)?);
    /// keyed.has_fuel(&1);
    /// keyed.has_fuel(&2);
    /// assert_eq!(keyed.len(), 2);
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn len(&self) -> usize {
        self.shared
            .shards
            .iter()
            .map(|shard| lock(shard).map.len())
            .sum()
    }

    /// Whether no key is held.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{KeyedTank, Rate};
    ///
    /// assert!(KeyedTank::<u8>::new(Rate::per_second(5)?).is_empty());
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The tank's rate: every key's, but those
    /// [`rate_by`](KeyedTankBuilder::rate_by) gives a rate of their own.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{KeyedTank, Rate};
    ///
    /// let keyed = KeyedTank::<u8>::new(Rate::per_second(5)?);
    /// assert_eq!(keyed.rate().to_string(), "5/s");
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn rate(&self) -> Rate {
        lock(&self.shared.shards[0]).rate.rate
    }

    /// Changes the tank's rate, at once and without a burst, as
    /// [`Tank::set_rate`]: every key at the tank's rate, held or new, moves
    /// to `rate`, keeping its fuel (with its fraction of the next one)
    /// capped to its new capacity ([`burst`](KeyedTankBuilder::burst) if
    /// given), and waiters asking for more than that get
    /// [`Error::ExceedsCapacity`](crate::Error::ExceedsCapacity). A key
    /// [`rate_by`](KeyedTankBuilder::rate_by) gives the builder's rate is
    /// at the tank's rate; a key it gives another rate keeps that rate.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{KeyedTank, Rate};
    ///
    /// let keyed = KeyedTank::new(Rate::per_second(10)?);
    /// assert!(keyed.has_fuel_n(&"a", 9));
    /// keyed.set_rate(Rate::per_second(1000)?);
    /// assert_eq!(keyed.level(&"a"), 1); // no burst up to 1000
    /// assert_eq!(keyed.level(&"new"), 1000); // a new key starts full
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn set_rate(&self, rate: Rate) {
        let shared = &self.shared;
        let now = shared.clock.now_ns();
        let rate = shared.key_rate(rate);
        for shard in shared.shards.iter() {
            lock(shard).set_rate(now, rate, shared);
        }
    }

    /// The most keys held at once.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{KeyedTank, Rate};
    ///
    /// let keyed = KeyedTank::<u8>::builder(Rate::per_second(5)?).max_keys(17).build()?;
    /// assert_eq!(keyed.max_keys(), 17);
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn max_keys(&self) -> usize {
        self.shared.shards.iter().map(|shard| lock(shard).cap).sum()
    }
}

fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A key's state as read by [`KeyTable::inspect`]: an idle log comes with
/// its rate and the most fuel its key is granted together.
enum State<'a> {
    Live(Tank),
    Gcra(Buckets<'a>),
    Window(Rate, &'a mut Window, u64),
}

/// An idle key's buckets: its rate's, then one per rate of `also` (their
/// `tat`s since `epoch`, read in place); with the most fuel the key is
/// granted together.
struct Buckets<'a> {
    rate: Rate,
    first: Gcra,
    epoch: u64,
    rates: &'a [KeyRate],
    tats: &'a [i128],
    request: u64,
}

impl Buckets<'_> {
    /// The buckets of the rates of `also`.
    fn also(&self) -> impl Iterator<Item = Gcra> + '_ {
        let rates = self.rates.iter().zip(self.tats);
        rates.map(|(rate, &tat)| rate.gcra(self.epoch, tat))
    }

    /// When `n` fuel will be there under every rate.
    fn due(&self, now: u64, n: u64) -> u64 {
        let due = |gcra: &Gcra| gcra.due(now, u128::from(n));
        (self.also()).fold(due(&self.first), |at, gcra| at.max(due(&gcra)))
    }

    /// The fuel under every rate: the least.
    fn level(&self, now: u64) -> u64 {
        let level = |gcra: &Gcra| gcra.level(now);
        (self.also()).fold(level(&self.first), |least, gcra| least.min(level(&gcra)))
    }
}

/// Takes `n` at `now` from `first` and from every rate of `rates` (whose
/// `tat`s, since `epoch`, are `also`), or from none: `false` then.
fn take_all(
    first: &mut Gcra,
    also: &mut [i128],
    rates: &[KeyRate],
    epoch: u64,
    now: u64,
    n: u64,
) -> bool {
    // A bucket takes `n` exactly when it holds them: after this check, no
    // take below fails.
    let short = |(rate, &tat): (&KeyRate, &i128)| rate.gcra(epoch, tat).level(now) < n;
    if rates.iter().zip(also.iter()).any(short) || first.try_take(now, n).is_none() {
        return false;
    }
    for (rate, tat) in rates.iter().zip(also) {
        let mut gcra = rate.gcra(epoch, *tat);
        if gcra.try_take(now, n).is_some() {
            *tat = gcra.tat();
        }
    }
    true
}

/// A key's rate and what follows from it for its bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct KeyRate {
    rate: Rate,
    /// `Rate::ticks` of the rate.
    scale: (u64, u64),
    /// The bank's cap; `None` for `Unbounded`.
    cap: Option<u64>,
    /// The most fuel granted together.
    request: u64,
    /// The fuel of a key never seen.
    initial: u64,
    /// Idle `Limit`, `One` and `Unbounded` keys fit a map entry: the ticks
    /// of a bucket's whole span are far below [`TICKS_LIMIT`]. (Otherwise,
    /// for periods of centuries at sub-nanosecond ticks, keys are live.)
    compact: bool,
}

impl KeyRate {
    fn gcra(&self, epoch: u64, tat: i128) -> Gcra {
        Gcra::from_parts(self.scale, self.cap, epoch, tat)
    }

    /// The `tat` of a key never seen, at `now`, in ticks since `epoch`:
    /// `initial` fuel there, the next due one interval after the last.
    fn fresh_tat(&self, epoch: u64, now: u64) -> i128 {
        let gcra = self.gcra(epoch, 0);
        let ahead = gcra
            .span(1)
            .saturating_sub(gcra.span(u128::from(self.initial)));
        gcra.ticks(now).saturating_add(ahead)
    }

    /// Whether a key like a fresh one stays like one as time passes, so
    /// that forgetting it changes nothing: a fresh key is full (`initial`
    /// is the capacity), and a full key stays full. Otherwise (`initial`
    /// below the capacity, or `Unbounded`) a key accrues fuel beyond what a
    /// fresh key holds then, which forgetting it would lose.
    fn fresh_stays(&self) -> bool {
        self.cap.is_some_and(|cap| self.initial >= cap)
    }

    /// How far back a full bucket's `tat`, and a fresh key's, lies, in
    /// ns, rounded up.
    fn span_ns(&self) -> u64 {
        let (s, t) = self.scale;
        let intervals = (self.cap.unwrap_or(0).max(self.rate.max_n())).max(self.initial);
        let ns = (u128::from(intervals) * u128::from(t)).div_ceil(u128::from(s));
        u64::try_from(ns).unwrap_or(u64::MAX)
    }
}

impl KeyTable {
    fn shard(&self, hash: u64) -> MutexGuard<'_, Shard> {
        // The high bits: the map itself indexes by the low ones.
        let index = ((hash >> 32) as usize) % self.shards.len();
        lock(&self.shards[index])
    }

    /// A key's bucket at `rate`, with this tank's hardcap, burst and
    /// initial fuel (at most what the key's tank holds).
    fn key_rate(&self, rate: Rate) -> KeyRate {
        self.bucket_rate(rate, self.burst)
    }

    /// A key's bucket at `rate` with `burst`: the first rate's, or one of
    /// `also` (no burst).
    fn bucket_rate(&self, rate: Rate, burst: Option<u64>) -> KeyRate {
        let max_n = rate.max_n();
        let cap = self.hardcap.capacity(max_n, burst);
        let request = self.hardcap.request_capacity(max_n, burst);
        let initial = self.initial.unwrap_or(cap.unwrap_or(max_n)).min(request);
        let (s, t) = rate.ticks();
        // Back as far as a full bucket's `tat` and a fresh key's (an
        // `Unbounded` key's `initial` may be beyond `max_n`).
        let span = u128::from(cap.unwrap_or(0).max(max_n).max(initial)) * u128::from(t);
        KeyRate {
            rate,
            scale: (s, t),
            cap,
            request,
            initial,
            // A bucket's whole span, in ticks, well within the map entry's range.
            compact: span < (TICKS_LIMIT as u128) / 8,
        }
    }

    /// How far back a full bucket of `rate`, and of every rate of `also`,
    /// lies, in ns, rounded up.
    fn span_ns(&self, rate: &KeyRate) -> u64 {
        let also = self.also.iter().map(KeyRate::span_ns);
        also.fold(rate.span_ns(), u64::max)
    }

    /// The `tat`s a new key starts from under the rates of `also`.
    fn start_also(&self, shard: &Shard, key: u64, now: u64) -> Box<[i128]> {
        let start = |rate| shard.start_tat(key, now, rate);
        self.also.iter().map(start).collect()
    }

    /// The key rate of a key whose own rate is `own` (`rate_by`'s answer,
    /// if any); `None` for one at the tank's rate.
    fn own_rate(&self, own: Option<Rate>) -> Option<KeyRate> {
        own.filter(|&rate| rate != self.base)
            .map(|rate| self.key_rate(rate))
    }

    /// The most fuel granted together to the key of `hash`, whose own rate
    /// is `own`.
    fn request(&self, hash: u64, own: Option<Rate>) -> u64 {
        match self.own_rate(own) {
            Some(rate) => rate.request,
            // The key's own shard (every shard holds the tank's rate): no
            // key contends with the others for shard 0.
            None => self.shard(hash).rate.request,
        }
        .min(self.also_request)
    }

    fn take(&self, hash: u64, n: u64, own: Own<'_>) -> bool {
        let now = self.clock.now_ns();
        let mut shard = self.shard(hash);
        let shard = &mut *shard;
        let now = shard.now(now);
        let value = shard.value(hash, now, self, own);
        // After `value`, whose sweep may move the epoch and every `tat`.
        let (epoch, rate) = (shard.epoch, shard.rate);
        match value {
            Value::Idle(tat) => {
                let mut gcra = rate.gcra(epoch, tat.into());
                let taken = n <= rate.request && gcra.try_take(now, n).is_some();
                if taken {
                    shard.set_idle(hash, gcra.tat());
                }
                taken
            }
            Value::Rated(index, _) => {
                let rated = shard.rated.get(index);
                let rate = self.key_rate(rated.rate);
                let mut gcra = rate.gcra(epoch, rated.tat);
                let taken = n <= rate.request.min(self.also_request)
                    && take_all(&mut gcra, &mut rated.also, &self.also, epoch, now, n);
                if taken {
                    rated.tat = gcra.tat();
                }
                taken
            }
            Value::Window(index) => {
                n <= rate.request && shard.windows.get(index).try_take(now, n).is_some()
            }
            Value::Live(tank) => tank.has_fuel_n(n),
        }
    }

    /// Runs `read` on the state of the key `hash`, or of the key it would be
    /// if it were created now, and on now (see [`Shard::now`]); changes no
    /// key.
    fn inspect<R>(&self, hash: u64, own: Own<'_>, read: impl FnOnce(State<'_>, u64) -> R) -> R {
        let now = self.clock.now_ns();
        let mut shard = self.shard(hash);
        let shard = &mut *shard;
        let now = shard.now(now);
        let read = |state| read(state, now);
        let (epoch, rate) = (shard.epoch, shard.rate);
        let buckets = |rate: KeyRate, tat, tats| {
            State::Gcra(Buckets {
                rate: rate.rate,
                first: rate.gcra(epoch, tat),
                epoch,
                rates: &self.also,
                tats,
                request: rate.request.min(self.also_request),
            })
        };
        match shard.peek(hash) {
            Some(Value::Live(tank)) => read(State::Live(tank)),
            Some(Value::Idle(tat)) => read(buckets(rate, tat.into(), &[])),
            Some(Value::Rated(index, _)) => {
                let rated = shard.rated.get_ref(index);
                read(buckets(self.key_rate(rated.rate), rated.tat, &rated.also))
            }
            Some(Value::Window(index)) => read(State::Window(
                rate.rate,
                shard.windows.get(index),
                rate.request,
            )),
            None => match (self.hardcap, self.own_rate(own())) {
                (Hardcap::Window, _) => {
                    let mut window = shard.new_window(hash, now, &rate);
                    read(State::Window(rate.rate, &mut window, rate.request))
                }
                (_, own) if own.is_some() || rate.compact || !self.also.is_empty() => {
                    let rate = own.unwrap_or(rate);
                    let tat = shard.start_tat(hash, now, &rate);
                    read(buckets(rate, tat, &self.start_also(shard, hash, now)))
                }
                _ => read(State::Live(shard.new_live(hash, now, &rate, self))),
            },
        }
    }

    /// The tank of `hash`, made live for waiting, or `None` if it has the
    /// fuel now (then taken).
    fn take_or_live(&self, hash: u64, n: u64, own: Own<'_>) -> Option<Tank> {
        let now = self.clock.now_ns();
        let mut shard = self.shard(hash);
        let shard = &mut *shard;
        let now = shard.now(now);
        let value = shard.value(hash, now, self, own);
        // After `value`, whose sweep may move the epoch and every `tat`.
        let (epoch, rate) = (shard.epoch, shard.rate);
        let (rate, tat, rated) = match value {
            Value::Live(tank) => return Some(tank),
            Value::Idle(tat) => (rate, i128::from(tat), None),
            Value::Rated(index, at_tank_rate) => {
                let rated = shard.rated.get_ref(index);
                (
                    self.key_rate(rated.rate),
                    rated.tat,
                    Some((index, at_tank_rate)),
                )
            }
            Value::Window(index) => {
                if shard.windows.get(index).try_take(now, n).is_some() {
                    return None;
                }
                let window = shard.windows.take(index);
                let tank = Tank::from_window(rate.rate, *window, self.clock.clone());
                shard.set_live(hash, tank.clone(), false);
                return Some(tank);
            }
        };
        let mut gcra = rate.gcra(epoch, tat);
        match rated {
            Some((index, _)) => {
                let rated = shard.rated.get(index);
                if take_all(&mut gcra, &mut rated.also, &self.also, epoch, now, n) {
                    rated.tat = gcra.tat();
                    return None;
                }
            }
            None => {
                if gcra.try_take(now, n).is_some() {
                    shard.set_idle(hash, gcra.tat());
                    return None;
                }
            }
        }
        let (also, own) = match rated {
            Some((index, at_tank_rate)) => {
                let rated = shard.rated.take(index);
                let also = self.also.iter().zip(rated.also.iter());
                let also: Vec<_> = also.map(|(rate, &tat)| (rate.rate, tat)).collect();
                (also, !at_tank_rate)
            }
            None => (Vec::new(), false),
        };
        let tank = Tank::from_gcra(
            rate.rate,
            self.hardcap,
            self.burst,
            epoch,
            tat,
            &also,
            self.clock.clone(),
        );
        shard.set_live(hash, tank.clone(), own);
        Some(tank)
    }
}

impl Shard {
    fn new(cap: usize, epoch: u64, rate: KeyRate, hardcap: Hardcap) -> Shard {
        Shard {
            map: HashMap::default(),
            live: Slots::default(),
            rated: Slots::default(),
            windows: Slots::default(),
            rate,
            epoch,
            shift_at: shift_at(epoch, &rate),
            last: 0,
            ops: 0,
            made_live: Vec::new(),
            made_live_check: MADE_LIVE_CHECK,
            cap,
            debts: Debts::new(cap, hardcap == Hardcap::Window),
        }
    }

    /// The time an operation that read the clock at `now` works at, under
    /// this shard's lock: `now`, or the latest reading an earlier operation
    /// worked at if later. The clock is read before the lock, and a thread
    /// delayed between the two would otherwise work at a time older than a
    /// sweep or an eviction already did: it would make a key forgotten
    /// there again, fresh and backdated, with fuel it never accrued.
    #[inline]
    fn now(&mut self, now: u64) -> u64 {
        let now = now.max(self.last);
        self.last = now;
        now
    }

    /// The value of `key`, inserting a new key (and making room) if needed.
    fn value(&mut self, key: u64, now: u64, shared: &KeyTable, own: Own<'_>) -> Value {
        self.ops += 1;
        if self.ops >= self.map.len().max(64) || now >= self.shift_at {
            self.sweep(now, shared);
        }
        if self.made_live.len() >= self.made_live_check {
            self.idle_unheld(shared);
        }
        if let Some(value) = self.peek(key) {
            return value;
        }
        if self.map.len() >= self.cap {
            self.make_room(now, shared);
        }
        if self.map.capacity() <= self.map.len() {
            self.rebuild();
        }
        let rate = self.rate;
        match (shared.hardcap, shared.own_rate(own())) {
            (Hardcap::Window, _) => {
                let window = self.new_window(key, now, &rate);
                let index = self.windows.put(Box::new(window));
                self.map.insert(key, WINDOW | index as u64);
                Value::Window(index)
            }
            (_, own) if own.is_some() || !shared.also.is_empty() => {
                let at_tank_rate = own.is_none();
                let own = own.unwrap_or(rate);
                let tat = self.start_tat(key, now, &own);
                let also = shared.start_also(self, key, now);
                let index = self.rated.put(Rated {
                    rate: own.rate,
                    tat,
                    also,
                });
                self.map.insert(key, rated_value(index, at_tank_rate));
                Value::Rated(index, at_tank_rate)
            }
            _ if rate.compact => {
                let tat = to_stored(self.start_tat(key, now, &rate));
                self.map.insert(key, tat);
                Value::Idle(tat)
            }
            _ => {
                let tank = self.new_live(key, now, &rate, shared);
                self.set_live(key, tank.clone(), false);
                Value::Live(tank)
            }
        }
    }

    /// Moves the keys into a new map, before an insert would make the map
    /// grow. Keys removed leave marks that use up the map's spare room,
    /// and a full map more than half occupied doubles: under churn at the
    /// bound a shard kept twice the table it needs. Rebuilt, the marks are
    /// gone, and the table is twice the keys, as the map's own growth, but
    /// no more than the bound needs while below it (beyond it, only keys
    /// held by waiters are there, and doubling keeps inserts cheap).
    #[cold]
    fn rebuild(&mut self) {
        let len = self.map.len();
        let doubled = len.saturating_mul(2).max(len + 1);
        let room = if len < self.cap {
            doubled.min(self.cap)
        } else {
            doubled
        };
        let mut map = HashMap::with_capacity_and_hasher(room, Default::default());
        map.extend(self.map.drain());
        self.map = map;
    }

    /// The `tat` a new key at `rate` starts from: a fresh key's, or the
    /// debt its cells hold if that is later.
    fn start_tat(&self, key: u64, now: u64, rate: &KeyRate) -> i128 {
        let debt = rate.gcra(self.epoch, 0).ticks(self.debts.debt(key).0);
        rate.fresh_tat(self.epoch, now).max(debt)
    }

    /// The log a new `Window` key starts from: a fresh key's, holding also
    /// the grants of a debt on its cells that have not left yet.
    fn new_window(&self, key: u64, now: u64, rate: &KeyRate) -> Window {
        let mut window = Window::new(rate.rate, rate.initial, now);
        let (leave, held) = self.debts.debt(key);
        if leave > now {
            let fresh_held = rate.rate.max_n() - rate.initial;
            window.hold_until(leave, held.saturating_sub(fresh_held));
        }
        window
    }

    /// A live tank for a new key of a rate too fine for a map entry.
    fn new_live(&self, key: u64, now: u64, rate: &KeyRate, shared: &KeyTable) -> Tank {
        let tat = self.start_tat(key, now, rate);
        Tank::from_gcra(
            rate.rate,
            shared.hardcap,
            shared.burst,
            self.epoch,
            tat,
            &[],
            shared.clock.clone(),
        )
    }

    fn peek(&self, key: u64) -> Option<Value> {
        let &stored = self.map.get(&key)?;
        Some(match kind(stored) {
            Kind::Live(index) => Value::Live(self.live.get_ref(index).tank.clone()),
            Kind::Rated(index, at_tank_rate) => Value::Rated(index, at_tank_rate),
            Kind::Window(index) => Value::Window(index),
            Kind::Idle => Value::Idle(stored),
        })
    }

    fn set_idle(&mut self, key: u64, tat: i128) {
        if let Some(stored) = self.map.get_mut(&key) {
            *stored = to_stored(tat);
        }
    }

    /// Makes `key` live on `tank`; `own` if its rate is its own (not the
    /// tank's, which `set_rate` changes).
    fn set_live(&mut self, key: u64, tank: Tank, own: bool) {
        self.made_live.push(key);
        let index = self.live.put(Live { tank, own });
        match self.map.entry(key) {
            Entry::Occupied(mut entry) => *entry.get_mut() = LIVE | index as u64,
            Entry::Vacant(entry) => {
                entry.insert(LIVE | index as u64);
            }
        }
    }

    /// Makes idle the keys made live since last looked at whose tanks
    /// nobody holds any more (a wait dropped, a permit released): a flood
    /// of waits abandoned at once would otherwise leave a whole tank per
    /// key until the next sweep, many times an idle key's memory. Those
    /// still held are looked at again once as many more are made live:
    /// constant work per key made live.
    #[cold]
    fn idle_unheld(&mut self, shared: &KeyTable) {
        let mut keys = std::mem::take(&mut self.made_live);
        keys.sort_unstable();
        keys.dedup();
        let (live, rated, windows) = (&mut self.live, &mut self.rated, &mut self.windows);
        let (rate, epoch) = (&self.rate, self.epoch);
        keys.retain(|key| match self.map.get_mut(key) {
            Some(stored) if matches!(kind(*stored), Kind::Live(_)) => {
                !make_idle(stored, live, rated, windows, rate, epoch, shared)
            }
            _ => false,
        });
        self.made_live_check = keys.len().saturating_mul(2).max(MADE_LIVE_CHECK);
        if keys.capacity() > 4 * self.made_live_check {
            keys.shrink_to(self.made_live_check);
        }
        self.made_live = keys;
    }

    /// Every key at the tank's rate moves to `rate` at `now`, keeping its
    /// fuel (capped to the new capacity) with no burst, as
    /// [`Tank::set_rate`]; keys with a rate of their own keep it.
    fn set_rate(&mut self, now: u64, rate: KeyRate, shared: &KeyTable) {
        let now = self.now(now);
        let (old, old_epoch) = (self.rate, self.epoch);
        let keys: Vec<(u64, u64)> = self.map.iter().map(|(&k, &v)| (k, v)).collect();
        // The idle keys at the new rate, against the old epoch.
        let at_new_rate = |stored: u64| {
            let mut gcra = old.gcra(old_epoch, stored.into());
            gcra.set_rate(now, rate.rate, rate.cap);
            gcra
        };
        let oldest = (keys.iter())
            .filter(|&&(_, stored)| matches!(kind(stored), Kind::Idle))
            .map(|&(_, stored)| at_new_rate(stored).tat())
            .min();
        // Back as far as a full bucket of the new rate reaches, and as the
        // oldest idle `tat` (an `Unbounded` bank), so that none falls below
        // tick 0; but no farther than the sweep keeps banks (a quarter of
        // the ticks' range), so that the clock stays within it.
        let (s, _) = rate.scale;
        let keep_ns = u64::try_from(TICKS_LIMIT / 4 / i128::from(s)).unwrap_or(u64::MAX);
        let oldest_ns = oldest.map_or(i128::MAX, |tat| {
            i128::from(old_epoch).saturating_add(tat.div_euclid(i128::from(s)))
        });
        let epoch = (now.saturating_sub(shared.span_ns(&rate).saturating_add(1)))
            .min(u64::try_from(oldest_ns.max(0)).unwrap_or(u64::MAX))
            .max(now.saturating_sub(keep_ns));
        for (key, stored) in keys {
            match kind(stored) {
                Kind::Idle => {
                    let mut gcra = at_new_rate(stored);
                    gcra.rebase(epoch);
                    if rate.compact {
                        self.set_idle(key, gcra.tat());
                    } else {
                        let tank = Tank::from_gcra(
                            rate.rate,
                            shared.hardcap,
                            shared.burst,
                            epoch,
                            gcra.tat(),
                            &[],
                            shared.clock.clone(),
                        );
                        self.set_live(key, tank, false);
                    }
                }
                Kind::Rated(index, at_tank_rate) => {
                    let rated = self.rated.get(index);
                    let mut gcra = shared.key_rate(rated.rate).gcra(self.epoch, rated.tat);
                    if at_tank_rate {
                        gcra.set_rate(now, rate.rate, rate.cap);
                        rated.rate = rate.rate;
                    }
                    gcra.rebase(epoch);
                    rated.tat = gcra.tat();
                    // The rates of `also` stay.
                    for (rate, tat) in shared.also.iter().zip(rated.also.iter_mut()) {
                        let mut gcra = rate.gcra(self.epoch, *tat);
                        gcra.rebase(epoch);
                        *tat = gcra.tat();
                    }
                }
                Kind::Window(index) => self.windows.get(index).set_rate(now, rate.rate),
                Kind::Live(index) => {
                    let live = self.live.get_ref(index);
                    if !live.own {
                        live.tank.set_rate(rate.rate);
                    }
                }
            }
        }
        self.debts.set_rate(now, old.rate, rate.rate);
        self.rate = rate;
        self.epoch = epoch;
        self.shift_at = shift_at(epoch, &rate);
    }

    /// Forgets keys that are exactly like fresh ones and stay so as time
    /// passes (see [`KeyRate::fresh_stays`]), turns live tanks
    /// nobody holds back into idle keys, and moves the epoch on when idle
    /// ticks grow large.
    fn sweep(&mut self, now: u64, shared: &KeyTable) {
        self.ops = 0;
        let rate = self.rate;
        let (s, _) = rate.scale;
        let now_t = (i128::from(now) - i128::from(self.epoch)).saturating_mul(i128::from(s));
        let shift_ns = if now_t >= TICKS_LIMIT / 2 {
            // Back to a quarter of the range: banks as old are kept.
            let keep_ns = u64::try_from(TICKS_LIMIT / 4 / i128::from(s)).unwrap_or(u64::MAX);
            now.saturating_sub(keep_ns).saturating_sub(self.epoch)
        } else {
            0
        };
        let shift = i128::from(shift_ns).saturating_mul(i128::from(s));
        let epoch = self.epoch + shift_ns;
        let (live, rated, windows) = (&mut self.live, &mut self.rated, &mut self.windows);
        self.map.retain(|_, stored| {
            // A live tank made idle has its `tat` against the new epoch.
            let made_idle = matches!(kind(*stored), Kind::Live(_));
            if made_idle && !make_idle(stored, live, rated, windows, &rate, epoch, shared) {
                return true; // someone waits on it or holds it
            }
            match kind(*stored) {
                Kind::Window(index) => {
                    let window = windows.get(index);
                    // Like a fresh key only if nothing is held and a fresh
                    // key holds nothing either.
                    let fresh = window.held(now).0 == 0 && rate.initial == rate.rate.max_n();
                    if fresh {
                        windows.take(index);
                    }
                    !fresh
                }
                Kind::Rated(index, _) => {
                    let key = rated.get(index);
                    let own = shared.key_rate(key.rate);
                    let shift = |rate: &KeyRate, tat: &mut i128| {
                        let shift = i128::from(shift_ns).saturating_mul(i128::from(rate.scale.0));
                        *tat = tat.saturating_sub(shift);
                    };
                    if !made_idle {
                        shift(&own, &mut key.tat);
                        for (rate, tat) in shared.also.iter().zip(key.also.iter_mut()) {
                            shift(rate, tat);
                        }
                    }
                    let keep = !own.fresh_stays()
                        || !shared.also.iter().all(KeyRate::fresh_stays)
                        || rated_distance(&own, key, epoch, now, shared) != 0;
                    if !keep {
                        rated.take(index);
                    }
                    keep
                }
                _ => {
                    if !made_idle {
                        *stored = to_stored(i128::from(*stored).saturating_sub(shift));
                    }
                    !rate.fresh_stays()
                        || gcra_distance(&rate, epoch, i128::from(*stored), now) != 0
                }
            }
        });
        self.epoch = epoch;
        self.shift_at = shift_at(epoch, &rate);
        if self.map.capacity() > 4 * self.map.len().max(16) {
            self.map.shrink_to_fit();
        }
        self.live.shrink();
        self.rated.shrink();
        self.windows.shrink();
    }

    /// Makes room for a new key in a full shard: a sweep, then if needed
    /// evicting the eighth of keys that differ least from a fresh one (or
    /// more, to come back within the cap), their debts kept in the debt
    /// table.
    fn make_room(&mut self, now: u64, shared: &KeyTable) {
        self.sweep(now, shared);
        if self.map.len() < self.cap {
            return;
        }
        // The eighth, and at least what brings the shard back within its
        // cap with the new key: keys held beyond it while waited on are
        // evicted once nobody holds them (evicting one a time, a shard
        // with a small cap stayed that far beyond it for good).
        let evict = (self.map.len() / 8).max(self.map.len() + 1 - self.cap);
        let mut candidates: Vec<(u128, u64)> = self
            .map
            .iter()
            .filter_map(|(&key, &stored)| Some((self.distance(stored, now, shared)?, key)))
            .collect();
        if candidates.is_empty() {
            return;
        }
        let evict = evict.min(candidates.len());
        candidates.select_nth_unstable_by_key(evict - 1, |&(distance, _)| distance);
        for (_, key) in candidates.drain(..evict) {
            self.evict(key, now, shared);
        }
    }

    /// A key's state as it would be idle: a `tat` in this shard's ticks of
    /// its rate, or a log; `None` for a tank held by a waiter or a permit
    /// (paid for by its holders, never evicted).
    fn idle_state(&self, stored: u64, shared: &KeyTable) -> Option<IdleState> {
        match kind(stored) {
            Kind::Live(index) => {
                let tank = &self.live.get_ref(index).tank;
                if tank.handles() > 1 {
                    return None;
                }
                if let Some((epoch, tat, also)) = tank.idle_gcra() {
                    let rate = shared.key_rate(tank.rate());
                    let shift = |rate: &KeyRate, tat: i128| {
                        let ticks = i128::from(epoch) - i128::from(self.epoch);
                        tat.saturating_add(ticks.saturating_mul(i128::from(rate.scale.0)))
                    };
                    let also = (shared.also.iter().zip(also))
                        .map(|(rate, tat)| shift(rate, tat))
                        .collect();
                    return Some(IdleState::Gcra(rate, shift(&rate, tat), also));
                }
                tank.idle_window().map(|w| IdleState::Window(Box::new(w)))
            }
            Kind::Rated(index, _) => {
                let rated = self.rated.get_ref(index);
                let rate = shared.key_rate(rated.rate);
                Some(IdleState::Gcra(rate, rated.tat, rated.also.clone()))
            }
            Kind::Window(index) => {
                let window = self.windows.get_ref(index);
                Some(IdleState::Window(window.clone()))
            }
            Kind::Idle => Some(IdleState::Gcra(
                self.rate,
                i128::from(stored),
                Box::default(),
            )),
        }
    }

    /// How far a key is from a fresh one (what evicting it would change);
    /// `None` if it cannot be evicted.
    fn distance(&self, stored: u64, now: u64, shared: &KeyTable) -> Option<u128> {
        let initial = self.rate.initial;
        // Without a clone: the common `Window` and `Rated` cases.
        match kind(stored) {
            Kind::Window(index) => {
                let window = self.windows.get_ref(index);
                return Some(u128::from(initial.abs_diff(window.room_at(now))));
            }
            Kind::Rated(index, _) => {
                let rated = self.rated.get_ref(index);
                let rate = shared.key_rate(rated.rate);
                return Some(rated_distance(&rate, rated, self.epoch, now, shared));
            }
            _ => {}
        }
        Some(match self.idle_state(stored, shared)? {
            IdleState::Gcra(rate, tat, also) => {
                let also = shared.also.iter().zip(also.iter());
                also.map(|(rate, &tat)| gcra_distance(rate, self.epoch, tat, now))
                    .fold(gcra_distance(&rate, self.epoch, tat, now), u128::max)
            }
            IdleState::Window(window) => u128::from(initial.abs_diff(window.room_at(now))),
        })
    }

    /// Evicts `key`, keeping its debt if it owes fuel.
    fn evict(&mut self, key: u64, now: u64, shared: &KeyTable) {
        let Some(&stored) = self.map.get(&key) else {
            return;
        };
        let Some(state) = self.idle_state(stored, shared) else {
            return;
        };
        self.map.remove(&key);
        match kind(stored) {
            Kind::Live(index) => drop(self.live.take(index)),
            Kind::Rated(index, _) => drop(self.rated.take(index)),
            Kind::Window(index) => drop(self.windows.take(index)),
            Kind::Idle => {}
        }
        match state {
            IdleState::Gcra(rate, tat, also) => {
                // When its `tat` falls, in ns rounded up: under several
                // rates, the latest (a key made from the debt owes at least
                // as much under each).
                let mut until = None;
                let rates = std::iter::once((&rate, tat)).chain(shared.also.iter().zip(also));
                for (rate, tat) in rates {
                    if tat > rate.fresh_tat(self.epoch, now) {
                        let due = rate.gcra(self.epoch, tat).due(self.epoch, 1);
                        until = until.max(Some(due));
                    }
                }
                if let Some(until) = until {
                    self.debts.raise(key, until.max(now), 0);
                }
            }
            IdleState::Window(mut window) => {
                let (held, leave) = window.held(now);
                if held > self.rate.rate.max_n() - self.rate.initial {
                    self.debts.raise(key, leave, held);
                }
            }
        }
    }
}

/// Turns `stored`, a live key's map value, into an idle key's if nobody
/// holds its tank (its `tat`s against `epoch`, the shard's rate `rate`);
/// `false` if it stays live.
fn make_idle(
    stored: &mut u64,
    live: &mut Slots<Live>,
    rated: &mut Slots<Rated>,
    windows: &mut Slots<Box<Window>>,
    rate: &KeyRate,
    epoch: u64,
    shared: &KeyTable,
) -> bool {
    let Kind::Live(index) = kind(*stored) else {
        return false;
    };
    let Live { tank, own } = live.get_ref(index);
    if tank.handles() > 1 {
        return false; // someone waits on it or holds it
    }
    if let Some((tank_epoch, tat, also)) = tank.idle_gcra() {
        let shift = |s: u64, tat: i128| {
            let ticks = i128::from(tank_epoch) - i128::from(epoch);
            tat.saturating_add(ticks.saturating_mul(i128::from(s)))
        };
        let tat = shift(tank.rate().ticks().0, tat);
        // A bank older than the shard's tick 0 (its epoch moved on by a
        // `set_rate` while the key was live) does not fit a map entry: it
        // is kept beside the map, as a key of several rates is.
        if *own || !shared.also.is_empty() || tat < 0 {
            let also = (shared.also.iter().zip(also))
                .map(|(rate, tat)| shift(rate.scale.0, tat))
                .collect();
            let rate = tank.rate();
            let index = rated.put(Rated { rate, tat, also });
            *stored = rated_value(index, !*own);
        } else if rate.compact {
            *stored = to_stored(tat);
        } else {
            return false;
        }
    } else if let Some(window) = tank.idle_window() {
        *stored = WINDOW | windows.put(Box::new(window)) as u64;
    } else {
        return false;
    }
    live.take(index);
    true
}

/// A key's state, read out for eviction (with the `tat`s of the rates of
/// `also`).
enum IdleState {
    Gcra(KeyRate, i128, Box<[i128]>),
    Window(Box<Window>),
}

/// How far an idle key's bucket (`tat` in ticks since `epoch`) is from a
/// fresh key's at `now`, in ns rounded up (comparable across rates): 0 if
/// forgetting it changes nothing.
fn gcra_distance(rate: &KeyRate, epoch: u64, tat: i128, now: u64) -> u128 {
    let mut settled = rate.gcra(epoch, tat);
    settled.settle(now);
    let ticks = settled.tat().abs_diff(rate.fresh_tat(epoch, now));
    ticks.div_ceil(u128::from(rate.scale.0))
}

/// [`gcra_distance`] of a key's buckets: the farthest of its rates.
fn rated_distance(rate: &KeyRate, rated: &Rated, epoch: u64, now: u64, shared: &KeyTable) -> u128 {
    let also = shared.also.iter().zip(rated.also.iter());
    also.map(|(rate, &tat)| gcra_distance(rate, epoch, tat, now))
        .fold(gcra_distance(rate, epoch, rated.tat, now), u128::max)
}

/// An idle `tat` as a map entry holds it: one below tick 0 (a bank older
/// than the epoch) is raised to it, which only takes fuel away. None is
/// beyond the entry's range: the clock stays below `TICKS_LIMIT / 2` ticks
/// since the epoch at every operation (`Shard::shift_at`), and a `tat` at
/// most a span (below `TICKS_LIMIT / 8`) past it; were one beyond, it would
/// be lowered towards the past, into fuel never accrued.
fn to_stored(tat: i128) -> u64 {
    debug_assert!(tat <= i128::from(INDEX), "an idle tat beyond a map entry");
    tat.clamp(0, i128::from(INDEX)) as u64
}

/// A vector of slots that reuses the free ones.
struct Slots<T> {
    items: Vec<Option<T>>,
    free: Vec<usize>,
}

impl<T> Default for Slots<T> {
    fn default() -> Slots<T> {
        Slots {
            items: Vec::new(),
            free: Vec::new(),
        }
    }
}

impl<T> Slots<T> {
    fn put(&mut self, item: T) -> usize {
        match self.free.pop() {
            Some(index) => {
                self.items[index] = Some(item);
                index
            }
            None => {
                self.items.push(Some(item));
                self.items.len() - 1
            }
        }
    }

    fn get(&mut self, index: usize) -> &mut T {
        self.items[index]
            .as_mut()
            .expect("indices in the map point at items")
    }

    fn get_ref(&self, index: usize) -> &T {
        self.items[index]
            .as_ref()
            .expect("indices in the map point at items")
    }

    fn take(&mut self, index: usize) -> T {
        self.free.push(index);
        self.items[index]
            .take()
            .expect("indices in the map point at items")
    }

    /// Gives memory back once most slots are free.
    fn shrink(&mut self) {
        let before = self.items.len();
        while self.items.last().is_some_and(Option::is_none) {
            self.items.pop();
        }
        if self.items.len() < before {
            let len = self.items.len();
            self.free.retain(|&index| index < len);
        }
        if self.items.capacity() > 4 * self.items.len().max(16) {
            self.items.shrink_to_fit();
            self.free.shrink_to_fit();
        }
    }
}

/// The debts of evicted keys: two cells per key, each keeping the largest
/// debt raised on it (see the module docs). A debt is a time in internal
/// ns (rounded later: never less debt): when the key is next due fuel
/// (`Limit`, `One`, `Unbounded`), or when its grants leave the window and
/// how many (`Window`).
struct Debts {
    until: Box<[u64]>,
    /// `Window`: how many grants.
    held: Box<[u64]>,
}

impl Debts {
    /// Two cells per key held: few keys share both cells with another.
    fn new(keys: usize, window: bool) -> Debts {
        let cells = keys.saturating_mul(2).clamp(64, 1 << 26);
        Debts {
            until: vec![0; cells].into_boxed_slice(),
            held: vec![0; if window { cells } else { 0 }].into_boxed_slice(),
        }
    }

    /// The two cells of `key`.
    fn cells(&self, key: u64) -> [usize; 2] {
        // A second mix of the key's hash, independent of the map's bits,
        // reduced to the table's size by multiplying.
        let mixed = key.rotate_left(23).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let len = self.until.len() as u64;
        let cell = |x: u64| ((u128::from(x) * u128::from(len)) >> 64) as usize;
        [cell(mixed), cell(mixed.rotate_left(32))]
    }

    fn raise(&mut self, key: u64, until: u64, held: u64) {
        for cell in self.cells(key) {
            self.until[cell] = self.until[cell].max(until);
            if let Some(h) = self.held.get_mut(cell) {
                *h = (*h).max(held);
            }
        }
    }

    /// Keeps the debts as the rate changes from `old` to `new` at `now`,
    /// as a key held through the change keeps its fuel ([`Tank::set_rate`]):
    /// a key evicted before a change must not come back owing less than
    /// one held through it. A debt still running is when the key is next
    /// due fuel: the time left stretches as the interval does (the
    /// fraction of the next fuel kept); under `Window`, the grants held
    /// (more, if `max_n` grows: the room kept is capped) come back one
    /// interval of the new rate apart, all within its `per`.
    /// A debt is never shortened (a faster rate keeps it: stricter than
    /// the key's own tank, never looser). The table cannot tell the debt
    /// of a key with a rate of its own, which the change leaves: it
    /// stretches too, only stricter for a while.
    fn set_rate(&mut self, now: u64, old: Rate, new: Rate) {
        let window = !self.held.is_empty();
        // Interval ratio new / old = (new.per · old.max_n) / (old.per · new.max_n).
        let mut num = u128::from(new.per_ns()) * u128::from(old.max_n());
        let mut den = u128::from(old.per_ns()) * u128::from(new.max_n());
        if !window && num <= den {
            return;
        }
        // Below 2^64, so that a time left times it fits: rounded to a
        // ratio no less.
        while num >> 64 != 0 {
            num = num.div_ceil(2);
            den /= 2;
        }
        let until_new_per = now.saturating_add(new.per_ns());
        // A log with `held` grants keeps `old.max_n − held` room, capped
        // to `new.max_n`: `held + new.max_n − old.max_n` held under more.
        let more = new.max_n().saturating_sub(old.max_n());
        for (cell, until) in self.until.iter_mut().enumerate() {
            if *until <= now {
                continue;
            }
            if let Some(held) = self.held.get_mut(cell) {
                *until = (*until).max(until_new_per);
                *held = held.saturating_add(more);
            } else {
                let left = u128::from(*until - now) * num;
                let left = match den {
                    0 => u64::MAX,
                    _ => u64::try_from(left.div_ceil(den)).unwrap_or(u64::MAX),
                };
                *until = now.saturating_add(left);
            }
        }
    }

    /// The debt a new `key` must start from: the lesser of its cells.
    fn debt(&self, key: u64) -> (u64, u64) {
        let [a, b] = self.cells(key);
        let held = match (self.held.get(a), self.held.get(b)) {
            (Some(&a), Some(&b)) => a.min(b),
            _ => 0,
        };
        (self.until[a].min(self.until[b]), held)
    }
}

/// Hashes a key that is already a hash: passes it through.
#[derive(Default)]
struct KeyHash(u64);

impl Hasher for KeyHash {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is called for `u64` keys; fold anything else.
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// The start of a wait on a key (see [`AwaitFuel`]): the fuel is taken at
/// the first poll if the key has it, else the wait joins its tank's line.
pub(crate) struct KeyStart {
    shared: Arc<KeyTable>,
    hash: u64,
    /// `rate_by`'s answer for the key, if the tank has one.
    own: Option<Rate>,
}

impl KeyStart {
    /// Takes `n` for the key now if it has them (`Ok(None)`), else its
    /// tank to wait on; `Err(capacity)` if `n` can never fit.
    pub(crate) fn begin(&self, n: u64) -> Result<Option<Tank>, u64> {
        let own = self.own;
        let capacity = self.shared.request(self.hash, own);
        if n > capacity {
            return Err(capacity);
        }
        Ok(self.shared.take_or_live(self.hash, n, &|| own))
    }
}

impl fmt::Debug for KeyStart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyStart").finish_non_exhaustive()
    }
}

impl<K> KeyedTank<K> {
    /// The rates of [`also`](KeyedTankBuilder::also), every key's beside
    /// its first; none without.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{KeyedTank, Rate};
    ///
    /// let keyed = KeyedTank::<u8>::builder("5/s".parse()?).also("100/min".parse()?).build()?;
    /// assert_eq!(keyed.also_rates().collect::<Vec<_>>(), ["100/min".parse::<Rate>()?]);
    /// assert_eq!(KeyedTank::<u8>::new("5/s".parse()?).also_rates().len(), 0);
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn also_rates(&self) -> impl ExactSizeIterator<Item = Rate> + '_ {
        self.shared.also.iter().map(|rate| rate.rate)
    }
}

impl<K> Clone for KeyedTank<K> {
    fn clone(&self) -> KeyedTank<K> {
        KeyedTank {
            shared: self.shared.clone(),
            rate_by: self.rate_by.clone(),
            _keys: PhantomData,
        }
    }
}

impl<K> fmt::Debug for KeyedTank<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedTank")
            .field("rate", &lock(&self.shared.shards[0]).rate.rate)
            .field("hardcap", &self.shared.hardcap)
            .field("shards", &self.shared.shards.len())
            .finish_non_exhaustive()
    }
}
