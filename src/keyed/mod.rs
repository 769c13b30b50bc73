//! [`KeyedTank`]: one tank per key (client address, user id, …), in bounded
//! memory.
//!
//! # One number per key
//!
//! A key nobody waits on is *idle*: all it holds is its `tat`, the one
//! number of the refill algorithm (see `tank/bucket.rs`), as a `u64` in its
//! map entry, and taking fuel for it is the tank's own exact step on that
//! number. A key that must wait becomes *live*: a full [`Tank`] with its
//! line and timer, kept in a side table; it turns idle again once its line
//! is empty and nothing holds it. `Window` keys are always live (their log
//! of grants is their state), so each costs a tank and its log: bound them
//! with `max_keys`.
//!
//! # Bounded memory
//!
//! Keys are spread over shards, each a hash map under its own lock holding
//! at most its share of `max_keys`. A shard forgets keys that owe nothing —
//! whose bucket holds at least `initial`, so a fresh entry would hold no
//! more — as it goes: one sweep every `len` operations, so the cost per
//! operation stays constant. When a shard is full of keys that still owe
//! fuel, it forgets the eighth that owe least (the earliest `tat`, or for
//! live tanks nobody holds, the fullest): memory stays bounded under a
//! flood of new keys, and a forgotten key gets back at most what it owed.
//! Only keys held by a waiting future or a permit are never forgotten; they
//! are paid for by their holders.
//!
//! A key seen for the first time starts full by default: a client never
//! seen before is like one idle for ever.

mod builder;

use std::collections::HashMap;
use std::collections::hash_map::{Entry, RandomState};
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, Hash};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;

pub use builder::KeyedTankBuilder;

use crate::clock::ClockSource;
use crate::tank::bucket::Gcra;
use crate::{AwaitFuel, Hardcap, Rate, Tank};

/// One tank per key, each refilled at the same rate, in bounded memory.
///
/// A cheap handle: clones share the keys. An idle key costs one map entry
/// (the key and 8 bytes); see the module docs for how keys are kept and
/// forgotten.
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
    shared: Arc<Shared<K>>,
}

struct Shared<K> {
    rate: Rate,
    hardcap: Hardcap,
    initial: u64,
    /// `Rate::ticks` of the rate.
    scale: (u64, u64),
    clock: ClockSource,
    hasher: RandomState,
    shards: Box<[Mutex<Shard<K>>]>,
    /// Keys a shard holds before it forgets some.
    per_shard: usize,
}

/// Map values: a key's `tat` (ticks since the shard's epoch), or with
/// `LIVE` set, the index of its tank in `Shard::live`.
const LIVE: u64 = 1 << 63;

struct Shard<K> {
    map: HashMap<K, u64>,
    live: Vec<Option<Tank>>,
    free: Vec<usize>,
    /// Internal ns at tick 0 of the idle keys' `tat`s.
    epoch: u64,
    /// Operations since the last sweep.
    ops: usize,
}

/// Idle `tat`s stay below this many ticks; the shard's epoch moves on
/// before that.
const TICKS_LIMIT: i128 = 1 << 62;

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

    fn shard(&self, key: &K) -> MutexGuard<'_, Shard<K>> {
        let shards = &self.shared.shards;
        let index = self.shared.hasher.hash_one(key) as usize % shards.len();
        shards[index].lock().unwrap_or_else(PoisonError::into_inner)
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
        let shared = &self.shared;
        if n > shared.hardcap.request_cap(shared.rate.max_n()) {
            return false;
        }
        let now = shared.clock.now_ns();
        let mut shard = self.shard(key);
        match shard.value(key, now, shared) {
            Value::Idle(tat) => {
                let mut gcra = shared.gcra(shard.epoch, tat);
                let taken = gcra.try_take(now, n).is_some();
                if taken {
                    shard.set_idle(key, gcra.tat());
                }
                taken
            }
            Value::Live(tank) => tank.has_fuel_n(n),
        }
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
    pub fn await_fuel(&self, key: K) -> AwaitKey<K> {
        AwaitKey {
            keyed: self.clone(),
            key: Some(key),
            wait: None,
        }
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
        if n > shared.hardcap.request_cap(shared.rate.max_n()) {
            return None;
        }
        let now = shared.clock.now_ns();
        let shard = self.shard(key);
        match shard.peek(key, shared) {
            Some(Value::Live(tank)) => tank.wait_time(n),
            Some(Value::Idle(tat)) => {
                let due = shared.gcra(shard.epoch, tat).due(now, u128::from(n));
                Some(Duration::from_nanos(due.saturating_sub(now)))
            }
            None => {
                let due = shared.fresh(shard.epoch, now).due(now, u128::from(n));
                Some(Duration::from_nanos(due.saturating_sub(now)))
            }
        }
    }

    /// The fuel in `key`'s tank now (a key never seen holds `initial`).
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
        let shared = &self.shared;
        let now = shared.clock.now_ns();
        let shard = self.shard(key);
        match shard.peek(key, shared) {
            Some(Value::Live(tank)) => tank.level(),
            Some(Value::Idle(tat)) => shared.gcra(shard.epoch, tat).level(now),
            None => shared.initial,
        }
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
            .map(|shard| {
                shard
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .map
                    .len()
            })
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

    /// The rate of every key.
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
        self.shared.rate
    }

    /// The tank of `key`, made live for waiting, or `None` if it has the
    /// fuel now (then taken).
    fn take_or_live(&self, key: &K) -> Option<Tank> {
        let shared = &self.shared;
        let now = shared.clock.now_ns();
        let mut shard = self.shard(key);
        match shard.value(key, now, shared) {
            Value::Live(tank) => Some(tank),
            Value::Idle(tat) => {
                let mut gcra = shared.gcra(shard.epoch, tat);
                if gcra.try_take(now, 1).is_some() {
                    shard.set_idle(key, gcra.tat());
                    return None;
                }
                let tank = Tank::from_gcra(
                    shared.rate,
                    shared.hardcap,
                    shard.epoch,
                    i128::from(tat),
                    shared.clock.clone(),
                );
                shard.set_live(key, tank.clone());
                Some(tank)
            }
        }
    }
}

/// What a key holds, read out of its shard.
enum Value {
    Idle(u64),
    Live(Tank),
}

impl<K> Shared<K> {
    fn gcra(&self, epoch: u64, tat: u64) -> Gcra {
        Gcra::from_parts(
            self.scale,
            self.hardcap.cap(self.rate.max_n()),
            epoch,
            i128::from(tat),
        )
    }

    /// The bucket of a key never seen, at `now`.
    fn fresh(&self, epoch: u64, now: u64) -> Gcra {
        let (s, t) = self.scale;
        let now_t = (i128::from(now) - i128::from(epoch)) * i128::from(s);
        let tat = now_t - (i128::from(self.initial) - 1) * i128::from(t);
        Gcra::from_parts(self.scale, self.hardcap.cap(self.rate.max_n()), epoch, tat)
    }

    /// Whether an idle key at `tat` holds at least `initial`: forgetting it
    /// gives nobody more fuel.
    fn owes_nothing(&self, epoch: u64, tat: u64, now: u64) -> bool {
        self.gcra(epoch, tat).level(now) >= self.initial
    }
}

impl<K: Hash + Eq + Clone> Shard<K> {
    /// The value of `key`, inserting a fresh key (and making room) if
    /// needed.
    fn value(&mut self, key: &K, now: u64, shared: &Shared<K>) -> Value {
        self.ops += 1;
        if self.ops >= self.map.len().max(64) {
            self.sweep(now, shared);
        }
        if let Some(value) = self.peek(key, shared) {
            return value;
        }
        if self.map.len() >= shared.per_shard {
            self.make_room(now, shared);
        }
        if shared.hardcap == Hardcap::Window {
            let tank = Tank::builder(shared.rate)
                .hardcap(Hardcap::Window)
                .initial(shared.initial)
                .clock_source(shared.clock.clone())
                .build()
                .expect("initial was checked when the keyed tank was built");
            self.set_live(key, tank.clone());
            return Value::Live(tank);
        }
        let tat = to_stored(shared.fresh(self.epoch, now).tat());
        self.map.insert(key.clone(), tat);
        Value::Idle(tat)
    }

    fn peek(&self, key: &K, _shared: &Shared<K>) -> Option<Value> {
        let &stored = self.map.get(key)?;
        Some(if stored & LIVE != 0 {
            let tank = self.live[(stored & !LIVE) as usize].as_ref();
            Value::Live(tank.expect("live indices point at tanks").clone())
        } else {
            Value::Idle(stored)
        })
    }

    fn set_idle(&mut self, key: &K, tat: i128) {
        if let Some(stored) = self.map.get_mut(key) {
            *stored = to_stored(tat);
        }
    }

    fn set_live(&mut self, key: &K, tank: Tank) {
        let index = match self.free.pop() {
            Some(index) => {
                self.live[index] = Some(tank);
                index
            }
            None => {
                self.live.push(Some(tank));
                self.live.len() - 1
            }
        };
        match self.map.entry(key.clone()) {
            Entry::Occupied(mut entry) => *entry.get_mut() = LIVE | index as u64,
            Entry::Vacant(entry) => {
                entry.insert(LIVE | index as u64);
            }
        }
    }

    /// Forgets keys that owe nothing, turns live tanks nobody holds back
    /// into idle keys, and moves the epoch on when idle ticks grow large.
    fn sweep(&mut self, now: u64, shared: &Shared<K>) {
        self.ops = 0;
        let (s, _) = shared.scale;
        let now_t = (i128::from(now) - i128::from(self.epoch)) * i128::from(s);
        let shift = if now_t >= TICKS_LIMIT / 2 {
            // Keep the last `per` before now representable.
            let keep = shared.rate.per().as_nanos() as u64 + 1;
            now.saturating_sub(keep).saturating_sub(self.epoch)
        } else {
            0
        };
        let epoch = self.epoch + shift;
        let (live, free) = (&mut self.live, &mut self.free);
        self.map.retain(|_, stored| {
            if *stored & LIVE != 0 {
                let index = (*stored & !LIVE) as usize;
                let tank = live[index].as_ref().expect("live indices point at tanks");
                if tank.handles() > 1 {
                    return true; // someone waits on it or holds it
                }
                let idle = match tank.idle_gcra() {
                    Some((tank_epoch, tat)) => {
                        let rebased =
                            tat + (i128::from(tank_epoch) - i128::from(epoch)) * i128::from(s);
                        to_stored(rebased)
                    }
                    // `Window`: forget it once its window is empty.
                    None if tank.hardcap() == Hardcap::Window => {
                        if tank.waiting() == 0 && tank.level() >= shared.initial {
                            live[index] = None;
                            free.push(index);
                            return false;
                        }
                        return true;
                    }
                    None => return true,
                };
                live[index] = None;
                free.push(index);
                *stored = idle;
            } else if shift > 0 {
                *stored = stored.saturating_sub(shift.saturating_mul(s));
            }
            !shared.owes_nothing(epoch, *stored, now)
        });
        self.epoch = epoch;
        if self.map.capacity() > 4 * self.map.len().max(16) {
            self.map.shrink_to_fit();
        }
    }

    /// Makes room for a new key in a full shard: a sweep, then if needed
    /// forgetting the eighth of keys that owe least — idle keys by their
    /// `tat`, live tanks nobody holds (`Window` keys) by their level.
    fn make_room(&mut self, now: u64, shared: &Shared<K>) {
        self.sweep(now, shared);
        if self.map.len() < shared.per_shard {
            return;
        }
        let forget = (self.map.len() / 8).max(1);
        // Owed fuel as a sort key: idle keys by `tat` (the earlier, the
        // less owed), live ones after them, by fuel missing.
        let mut owed: Vec<(u128, K)> = self
            .map
            .iter()
            .filter_map(|(key, &stored)| {
                if stored & LIVE == 0 {
                    return Some((u128::from(stored), key.clone()));
                }
                let tank = self.live[(stored & !LIVE) as usize].as_ref()?;
                // Held tanks (waiters, permits) are paid for by their holders.
                (tank.handles() == 1).then(|| {
                    let missing = shared.initial.saturating_sub(tank.level());
                    ((1 << 64) + u128::from(missing), key.clone())
                })
            })
            .collect();
        if owed.is_empty() {
            return;
        }
        let forget = forget.min(owed.len());
        owed.select_nth_unstable_by_key(forget - 1, |&(owed, _)| owed);
        for (_, key) in owed.drain(..forget) {
            if let Some(stored) = self.map.remove(&key)
                && stored & LIVE != 0
            {
                let index = (stored & !LIVE) as usize;
                self.live[index] = None;
                self.free.push(index);
            }
        }
    }
}

fn to_stored(tat: i128) -> u64 {
    tat.clamp(0, i128::from(!LIVE)) as u64
}

pin_project! {
    /// The future of [`KeyedTank::await_fuel`]: resolves once one fuel has
    /// been taken for its key.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it does nothing until polled, takes fuel at once if the
    /// key has it, and otherwise waits as [`Tank::await_fuel`] does.
    #[must_use = "futures do nothing unless polled"]
    pub struct AwaitKey<K> {
        keyed: KeyedTank<K>,
        key: Option<K>,
        #[pin]
        wait: Option<AwaitFuel>,
    }
}

impl<K: Hash + Eq + Clone + Send + Sync + 'static> Future for AwaitKey<K> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        if let Some(key) = this.key.take() {
            match this.keyed.take_or_live(&key) {
                None => return Poll::Ready(()),
                Some(tank) => this.wait.set(Some(tank.await_fuel())),
            }
        }
        match this.wait.as_pin_mut() {
            Some(wait) => wait.poll(cx),
            None => Poll::Ready(()),
        }
    }
}

impl<K> Clone for KeyedTank<K> {
    fn clone(&self) -> KeyedTank<K> {
        KeyedTank {
            shared: self.shared.clone(),
        }
    }
}

impl<K> fmt::Debug for KeyedTank<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedTank")
            .field("rate", &self.shared.rate)
            .field("hardcap", &self.shared.hardcap)
            .field("per_shard", &self.shared.per_shard)
            .finish_non_exhaustive()
    }
}

impl<K> fmt::Debug for AwaitKey<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwaitKey")
            .field("started", &self.key.is_none())
            .finish_non_exhaustive()
    }
}
