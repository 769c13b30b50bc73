//! [`KeyedTankBuilder`].

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};

use super::{KeyedTank, Shard, Shared};
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
    max_keys: usize,
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
            max_keys: 1 << 20,
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
    /// one idle for ever.
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

    /// The most keys held at once (2^20 by default). Beyond it, keys that
    /// owe nothing are forgotten first, then those that owe least.
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
        self.max_keys = max_keys;
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
        let capacity = self.hardcap.request_cap(self.rate.max_n());
        let full = self
            .hardcap
            .cap(self.rate.max_n())
            .unwrap_or(self.rate.max_n());
        let initial = self.initial.unwrap_or(full);
        if initial > capacity {
            return Err(Error::InitialOverCapacity { initial, capacity });
        }
        if self.max_keys == 0 {
            return Err(Error::InvalidCount {
                option: "max_keys",
                value: 0,
                accepted: "at least 1",
            });
        }
        let shards = SHARDS.min(self.max_keys);
        // A fresh key's `tat` is up to `per` before now: start the epoch
        // that far back, so it is not below tick 0.
        let per_ns = u64::try_from(self.rate.per().as_nanos()).unwrap_or(u64::MAX);
        let epoch = self.clock.now_ns().saturating_sub(per_ns.saturating_add(1));
        let shards = (0..shards)
            .map(|_| {
                Mutex::new(Shard {
                    map: HashMap::new(),
                    live: Vec::new(),
                    free: Vec::new(),
                    epoch,
                    ops: 0,
                })
            })
            .collect();
        Ok(KeyedTank {
            shared: Arc::new(Shared {
                rate: self.rate,
                hardcap: self.hardcap,
                initial,
                scale: self.rate.ticks(),
                clock: self.clock,
                hasher: RandomState::new(),
                per_shard: self.max_keys.div_ceil(SHARDS.min(self.max_keys)),
                shards,
            }),
        })
    }
}
