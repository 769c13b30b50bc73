//! [`KeyedTankBuilder`].

use std::collections::hash_map::RandomState;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};

use super::{KeyedTank, Shard, Shared, TICKS_LIMIT};
use crate::clock::{Clock, ClockSource};
use crate::{Error, Hardcap, Rate};

/// Chooses the hardcap, the initial fuel of a new key, the bound on keys
/// held and the clock of a [`KeyedTank`].
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
    hardcap: Hardcap,
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
            hardcap: Hardcap::default(),
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

    /// The fuel of a key seen for the first time; by default its tank's
    /// capacity (`max_n`, or 1 under [`Hardcap::One`]): a new client is like
    /// one idle for ever. Every type's: [Initial fuel](crate#initial-fuel).
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
    /// keys; under `Window` about 145 bytes with one run of grants in its
    /// window, 16 per further run, and 32 of the debt table. So the default
    /// bounds memory, not keys: 2^20 keys (64 MiB at most), and under `Window` as many as
    /// 64 MiB hold.
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
    /// can hold; [`Error::InvalidCount`] if `max_keys` is 0.
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
        let capacity = self.hardcap.request_cap(self.rate.max_n());
        let full = self
            .hardcap
            .cap(self.rate.max_n())
            .unwrap_or(self.rate.max_n());
        let initial = self.initial.unwrap_or(full);
        if initial > capacity {
            return Err(Error::InitialOverCapacity { initial, capacity });
        }
        let max_keys = self
            .max_keys
            .unwrap_or_else(|| default_max_keys(self.hardcap, self.rate));
        if max_keys == 0 {
            return Err(Error::InvalidCount {
                option: "max_keys",
                value: 0,
                accepted: "at least 1",
            });
        }
        // The shards' caps add up to `max_keys` exactly.
        let shards = SHARDS.min(max_keys);
        let (share, extra) = (max_keys / shards, max_keys % shards);
        // A fresh key's `tat` is up to `per` before now: start the epoch
        // that far back, so it is not below tick 0.
        let per_ns = u64::try_from(self.rate.per().as_nanos()).unwrap_or(u64::MAX);
        let epoch = self.clock.now_ns().saturating_sub(per_ns.saturating_add(1));
        let shards = (0..shards)
            .map(|i| {
                Mutex::new(Shard::new(
                    share + usize::from(i < extra),
                    epoch,
                    self.hardcap,
                ))
            })
            .collect();
        let (s, _) = self.rate.ticks();
        // A bucket's whole span, in ticks, well within the map entry's range.
        let compact = u128::from(per_ns) * u128::from(s) < (TICKS_LIMIT as u128) / 8;
        Ok(KeyedTank {
            shared: Arc::new(Shared {
                rate: self.rate,
                hardcap: self.hardcap,
                initial,
                scale: self.rate.ticks(),
                compact,
                clock: self.clock,
                hasher: RandomState::new(),
                shards,
            }),
            _keys: PhantomData,
        })
    }
}

/// Memory the default `max_keys` allows, about.
const DEFAULT_MEMORY: usize = 64 << 20;

/// The default `max_keys`: 2^20, or under `Window` what [`DEFAULT_MEMORY`]
/// holds at about 172 bytes a key and 16 per further run of grants.
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
