//! [`KeyedTankBuilder`].

use std::collections::hash_map::RandomState;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};

use super::{KeyTable, KeyedTank, RateBy, Shard};
use crate::clock::{Clock, ClockSource};
use crate::{Error, Hardcap, Rate};

/// Chooses the hardcap, the burst and the initial fuel of a key, the
/// rates of keys, the bound on keys held and the clock of a [`KeyedTank`].
///
/// # Examples
///
/// ```
/// use fueltank::{Hardcap, KeyedTank, Rate};
///
/// let keyed = KeyedTank::<String>::builder(Rate::per_second(10)?)
///     .hardcap(Hardcap::One)
///     .max_keys(1_000)
///     .build()?;
/// assert!(keyed.has_fuel(&"alice".to_string()));
/// # Ok::<(), fueltank::Error>(())
/// ```
#[must_use = "a builder does nothing until built"]
pub struct KeyedTankBuilder<K> {
    rate: Rate,
    also: Vec<Rate>,
    hardcap: Hardcap,
    burst: Option<u64>,
    rate_by: Option<Arc<RateBy<K>>>,
    initial: Option<u64>,
    max_keys: Option<usize>,
    clock: ClockSource,
    _keys: PhantomData<fn(K)>,
}

/// Shards of the key map: enough that threads rarely meet on one lock.
const SHARDS: usize = 16;

impl<K> KeyedTankBuilder<K> {
    pub(super) fn new(rate: Rate) -> KeyedTankBuilder<K> {
        KeyedTankBuilder {
            rate,
            also: Vec::new(),
            hardcap: Hardcap::default(),
            burst: None,
            rate_by: None,
            initial: None,
            max_keys: None,
            clock: ClockSource::default(),
            _keys: PhantomData,
        }
    }

    /// How much fuel each key's tank may bank up; [`Hardcap::Limit`] by
    /// default.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Hardcap, KeyedTank, Rate};
    ///
    /// let keyed = KeyedTank::<u32>::builder(Rate::per_second(10)?).hardcap(Hardcap::One).build()?;
    /// assert!(keyed.has_fuel(&1));
    /// assert!(!keyed.has_fuel(&1));
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn hardcap(mut self, hardcap: Hardcap) -> KeyedTankBuilder<K> {
        self.hardcap = hardcap;
        self
    }

    /// Another rate every key keeps beside its own, as
    /// [`TankBuilder::also`](crate::TankBuilder::also): "100/min, also 5/s"
    /// per client. For each key, a grant takes from every rate or from
    /// none, at once, in the key's one line; each rate keeps the hardcap's
    /// bound with its own `max_n` and `per`;
    /// [`wait_time`](KeyedTank::wait_time) is the longest of the rates'
    /// waits, [`level`](KeyedTank::level) and
    /// [`available`](KeyedTank::available) the least of their fuel, the
    /// capacity the least of theirs, and [`rates`](KeyedTank::rates) tells
    /// each. Call it once per rate.
    ///
    /// The rates of `also` are every key's, whatever its first rate: a key
    /// [`rate_by`](KeyedTankBuilder::rate_by) gives a rate of its own keeps
    /// that rate *and* these. [`burst`](KeyedTankBuilder::burst) is the
    /// first rate's capacity only (each rate of `also` holds its `max_n`);
    /// a new key starts with every rate full, or `initial` under each;
    /// [`KeyedTank::set_rate`] changes the first rate of the keys at the
    /// tank's rate, and these stay. An idle key of a tank with `also` holds
    /// its buckets beside the map, as a key with a rate of its own: at most
    /// 144 bytes with one rate of `also` (about 131), and 16 more per
    /// further rate (measured: `tests/keyed_memory.rs`); a key of a tank
    /// without `also` costs what it did. Not under [`Hardcap::Window`].
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{KeyedTank, clock::ManualClock};
    /// use std::time::Duration;
    ///
    /// let clock = ManualClock::new();
    /// let per_user = KeyedTank::builder("100/min".parse()?)
    ///     .also("5/s".parse()?)
    ///     .clock(clock.clone())
    ///     .build()?;
    /// assert!(per_user.has_fuel_n(&"alice", 5));
    /// assert!(!per_user.has_fuel(&"alice")); // 5/s is empty
    /// assert_eq!(per_user.wait_time(&"alice", 1), Some(Duration::from_millis(200)));
    /// assert!(per_user.has_fuel_n(&"bob", 5)); // bob has his own
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn also(mut self, rate: Rate) -> KeyedTankBuilder<K> {
        self.also.push(rate);
        self
    }

    /// Each key's capacity under [`Hardcap::Limit`], apart from `max_n`, as
    /// [`TankBuilder::burst`](crate::TankBuilder::burst): "5/s with bursts
    /// of 10" per client. A new key starts full (`n`, unless
    /// [`initial`](KeyedTankBuilder::initial) says less); after idle a key
    /// holds `n`, then refills one per interval, so any window of length
    /// `per` sees at most `n + max_n − 1` grants for one key. Every key has
    /// this capacity, whatever its rate.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{KeyedTank, clock::ManualClock};
    /// use std::time::Duration;
    ///
    /// let clock = ManualClock::new();
    /// let per_ip = KeyedTank::builder("5/s".parse()?).burst(10).clock(clock.clone()).build()?;
    /// assert!(per_ip.has_fuel_n(&"192.0.2.1", 10));
    /// assert!(!per_ip.has_fuel(&"192.0.2.1"));
    /// assert_eq!(per_ip.wait_time(&"192.0.2.1", 1), Some(Duration::from_millis(200)));
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn burst(mut self, n: u64) -> KeyedTankBuilder<K> {
        self.burst = Some(n);
        self
    }

    /// Each key's rate, taken when the key's state is created (on its
    /// first use, and again once it has been forgotten: idle and full, or
    /// evicted): tiers and overrides. A key given the builder's rate is at
    /// the tank's rate, which [`KeyedTank::set_rate`] changes; a key given
    /// another rate keeps it (`set_rate` leaves it alone). So an answer
    /// that changes for a key is picked up when its state is next created;
    /// an evicted key comes back no less indebted than it left, whatever
    /// its new rate. The [`burst`](KeyedTankBuilder::burst) and
    /// [`initial`](KeyedTankBuilder::initial) fuel are every key's, each at
    /// most what the key's tank holds.
    ///
    /// An idle key with a rate of its own holds its rate and bucket beside
    /// the map: at most 128 bytes in all, where a key at the tank's rate
    /// costs at most 64 (measured: `tests/keyed_memory.rs`). Not under
    /// [`Hardcap::Window`].
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{KeyedTank, Rate};
    ///
    /// let partners = ["acme"];
    /// let per_user = KeyedTank::<&str>::builder("5/s".parse()?)
    ///     .rate_by(move |user| match partners.contains(user) {
    ///         true => Rate::per_second(50).unwrap(),
    ///         false => Rate::per_second(5).unwrap(),
    ///     })
    ///     .build()?;
    /// assert!(per_user.has_fuel_n(&"acme", 50));
    /// assert!(!per_user.has_fuel_n(&"bob", 6));
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn rate_by(
        mut self,
        rate: impl Fn(&K) -> Rate + Send + Sync + 'static,
    ) -> KeyedTankBuilder<K> {
        self.rate_by = Some(Arc::new(rate));
        self
    }

    /// The fuel of a key seen for the first time; by default its tank's
    /// capacity (`max_n`, the burst, or 1 under [`Hardcap::One`]): a new
    /// client is like one idle for ever. Every type's: [Initial fuel](crate#initial-fuel).
    /// Below the capacity, a key holding as much as a new one is not
    /// forgotten (it goes on accruing beyond it): keys are then held until
    /// evicted.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{KeyedTank, Rate};
    ///
    /// let keyed = KeyedTank::<u32>::builder(Rate::per_second(10)?).initial(1).build()?;
    /// assert!(keyed.has_fuel(&1));
    /// assert!(!keyed.has_fuel(&1));
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn initial(mut self, fuel: u64) -> KeyedTankBuilder<K> {
        self.initial = Some(fuel);
        self
    }

    /// The most keys held at once. Beyond it, keys that differ least from
    /// a fresh key are evicted (their debts kept: see [`KeyedTank`]).
    ///
    /// What a key costs, measured (`tests/keyed_memory.rs`): under `Limit`, `One`
    /// and `Unbounded` at most 64 bytes (a 16-byte map entry and the map's
    /// spare room, and 16 bytes of the debt table), whatever the key's
    /// type: about 43 per key held at `max_keys` 100k under a flood of new
    /// keys; a key with a rate of its own ([`rate_by`](KeyedTankBuilder::rate_by))
    /// at most 128 (about 113); under `Window` about 145 bytes with one run
    /// of grants in its window, 16 per further run, and 32 of the debt
    /// table; a key of a tank with [`also`](KeyedTankBuilder::also) at most
    /// 144 with one rate of `also` (about 131). So the default bounds
    /// memory, not keys: 2^20 keys (64 MiB at most), 2^19 with `rate_by` or
    /// `also` (72 MiB at most with one rate of `also`), and under `Window`
    /// as many as 64 MiB hold.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{KeyedTank, Rate};
    ///
    /// let keyed = KeyedTank::<u32>::builder(Rate::per_second(10)?).max_keys(64).build()?;
    /// for client in 0..1_000 {
    ///     keyed.has_fuel(&client);
    /// }
    /// assert!(keyed.len() <= 64);
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn max_keys(mut self, max_keys: usize) -> KeyedTankBuilder<K> {
        self.max_keys = Some(max_keys);
        self
    }

    /// The clock; see [`TankBuilder::clock`](crate::TankBuilder::clock).
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{KeyedTank, Rate, clock::ManualClock};
    /// use std::time::Duration;
    ///
    /// let clock = ManualClock::new();
    /// let keyed = KeyedTank::builder(Rate::per_second(1)?).clock(clock.clone()).build()?;
    /// assert!(keyed.has_fuel(&"a"));
    /// assert!(!keyed.has_fuel(&"a"));
    /// clock.advance(Duration::from_secs(1));
    /// assert!(keyed.has_fuel(&"a"));
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn clock(mut self, clock: impl Clock) -> KeyedTankBuilder<K> {
        self.clock = ClockSource::from_clock(clock);
        self
    }

    /// Builds the keyed tank.
    ///
    /// # Errors
    ///
    /// [`Error::InitialOverCapacity`] if `initial` is more than a key's tank
    /// at the builder's rate can hold; [`Error::InvalidCount`] if `max_keys`
    /// is 0; the errors of a burst as [`TankBuilder::build`](crate::TankBuilder::build)'s
    /// (`Limit` only, from 1 to 2^48); [`Error::Unsupported`] for `rate_by`
    /// or `also` under [`Hardcap::Window`]. With `also`, `initial` must fit
    /// every rate.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{KeyedTank, Rate};
    ///
    /// assert!(KeyedTank::<u8>::builder(Rate::per_second(1)?).max_keys(0).build().is_err());
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn build(self) -> Result<KeyedTank<K>, Error> {
        self.clock.warm_up();
        self.hardcap.check_burst(self.burst)?;
        if self.rate_by.is_some() && self.hardcap == Hardcap::Window {
            return Err(Error::Unsupported {
                what: "rate_by under Hardcap::Window",
                accepted: "the hardcap must be Limit, One or Unbounded for keys with rates \
                           of their own",
            });
        }
        if !self.also.is_empty() && self.hardcap == Hardcap::Window {
            return Err(Error::Unsupported {
                what: "also(rate) on a KeyedTank under Hardcap::Window",
                accepted: "the hardcap must be Limit, One or Unbounded for keys with several \
                           rates (a Tank keeps several under Window)",
            });
        }
        // Keys of their own rate, or of several, may cost twice as much.
        let own_buckets = self.rate_by.is_some() || !self.also.is_empty();
        let max_keys = self
            .max_keys
            .unwrap_or_else(|| default_max_keys(self.hardcap, self.rate) >> u8::from(own_buckets));
        if max_keys == 0 {
            return Err(Error::InvalidCount {
                option: "max_keys",
                value: 0,
                accepted: "at least 1",
            });
        }
        let mut shared = KeyTable {
            base: self.rate,
            hardcap: self.hardcap,
            burst: self.burst,
            initial: self.initial,
            also: Box::default(),
            also_request: u64::MAX,
            clock: self.clock,
            hasher: RandomState::new(),
            shards: Box::default(),
        };
        let also = self.also.iter().map(|&rate| shared.bucket_rate(rate, None));
        shared.also = also.collect();
        let also_request = shared.also.iter().map(|rate| rate.request).min();
        shared.also_request = also_request.unwrap_or(u64::MAX);
        let rate = shared.key_rate(self.rate);
        let capacity = rate.request.min(shared.also_request);
        if let Some(initial) = self.initial.filter(|&initial| initial > capacity) {
            return Err(Error::InitialOverCapacity { initial, capacity });
        }
        // The shards' caps add up to `max_keys` exactly.
        let shards = SHARDS.min(max_keys);
        let (share, extra) = (max_keys / shards, max_keys % shards);
        // A fresh key's `tat` is up to its bucket's span before now: start
        // the epoch that far back, so it is not below tick 0.
        let epoch = shared
            .clock
            .now_ns()
            .saturating_sub(shared.span_ns(&rate).saturating_add(1));
        shared.shards = (0..shards)
            .map(|i| {
                Mutex::new(Shard::new(
                    share + usize::from(i < extra),
                    epoch,
                    rate,
                    self.hardcap,
                ))
            })
            .collect();
        Ok(KeyedTank {
            shared: Arc::new(shared),
            rate_by: self.rate_by,
            _keys: PhantomData,
        })
    }
}

/// Memory the default `max_keys` allows, about.
const DEFAULT_MEMORY: usize = 64 << 20;

/// The default `max_keys`: 2^20, or under `Window` what [`DEFAULT_MEMORY`]
/// holds at about 172 bytes a key and 16 per further run of grants (half
/// as many with `rate_by`, whose keys may cost twice as much).
fn default_max_keys(hardcap: Hardcap, rate: Rate) -> usize {
    match hardcap {
        Hardcap::Window => {
            let runs = usize::try_from(rate.max_n())
                .unwrap_or(usize::MAX)
                .min(4096);
            (DEFAULT_MEMORY / (156 + 16 * runs)).clamp(1024, 1 << 20)
        }
        _ => 1 << 20,
    }
}
