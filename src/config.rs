//! [`TankConfig`]: a tank's options as a service's configuration holds
//! them.

use std::collections::BTreeMap;
use std::fmt;
use std::hash::Hash;

use serde::{Deserialize, Serialize};

use crate::{Error, Hardcap, KeyedTank, KeyedTankBuilder, Rate, Tank, TankBuilder};

/// A tank's options, as read from a service's configuration (TOML, JSON,
/// environment): the rate as its string, the hardcap by name, and the
/// optional rest. Unknown fields are errors, so a misspelt option is not
/// silently ignored. One struct describes every kind: a [`Tank`]
/// ([`build`](TankConfig::build)), a [`KeyedTank`]
/// ([`build_keyed`](TankConfig::build_keyed)), a tank shared by the
/// host's processes (`shared_memory`), and (through fueltank-redis's
/// builders, which take the same options) a tank in Redis; a file of
/// several named limits is a map of them.
///
/// ```toml
/// [limits.api]
/// rate = "100/s"
/// also = ["10000/d"]   # more rates, every one kept (per key for a keyed tank)
/// hardcap = "limit"    # default; or "one", "unbounded", "window"
/// burst = 200          # Limit's capacity, if not max_n
/// initial = 1          # fuel at start
/// shared_memory = "api"  # share with every process of the host
///
/// [limits.per_ip]
/// rate = "5/s"
/// burst = 10
/// max_keys = 100000    # a keyed tank's bound on keys held
/// keys = { "10.0.0.1" = "50/s" }  # per-key rates (the key as written)
/// ```
///
/// # Examples
///
/// ```
/// use fueltank::{Hardcap, TankConfig};
///
/// let config: TankConfig = serde_json::from_str(r#"{"rate": "5/s", "burst": 20}"#)?;
/// assert_eq!(config.hardcap, Hardcap::Limit);
/// let tank = config.build()?;
/// assert!(tank.has_fuel());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
pub struct TankConfig {
    /// `max_n` per `per`, as `"100/s"`.
    pub rate: Rate,
    /// How much fuel may bank up; `"limit"` if absent.
    #[serde(default)]
    pub hardcap: Hardcap,
    /// `Limit`'s capacity apart from `max_n` (see [`TankBuilder::burst`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u64>,
    /// The fuel at start (see [`TankBuilder::initial`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial: Option<u64>,
    /// A name to share the tank with every process of the host (see
    /// [`TankBuilder::shared_memory`]).
    /// Without the `shared-memory` feature, [`build`](TankConfig::build)
    /// refuses it (the field stays, so that the feature only adds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_memory: Option<String>,
    /// Rates kept beside `rate` (see [`TankBuilder::also`]); a keyed
    /// tank's every key keeps them beside its own (see
    /// [`KeyedTankBuilder::also`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also: Vec<Rate>,
    /// A keyed tank's bound on keys held (see
    /// [`KeyedTankBuilder::max_keys`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_keys: Option<usize>,
    /// A keyed tank's rates of their own, by the key as its `Display`
    /// writes it; every other key has `rate` (see
    /// [`KeyedTankBuilder::rate_by`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub keys: BTreeMap<String, Rate>,
}

impl TankConfig {
    /// A builder with these options, for what a configuration does not
    /// hold (a clock, a timer correction). Without the `shared-memory`
    /// feature it leaves `shared_memory` out; [`build`](TankConfig::build)
    /// refuses it.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{TankConfig, clock::ManualClock};
    ///
    /// let config: TankConfig = serde_json::from_str(r#"{"rate": "10/s"}"#)?;
    /// let tank = config.builder().clock(ManualClock::new()).build()?;
    /// assert_eq!(tank.rate().to_string(), "10/s");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn builder(&self) -> TankBuilder {
        let mut builder = Tank::builder(self.rate).hardcap(self.hardcap);
        for &rate in &self.also {
            builder = builder.also(rate);
        }
        if let Some(burst) = self.burst {
            builder = builder.burst(burst);
        }
        if let Some(initial) = self.initial {
            builder = builder.initial(initial);
        }
        #[cfg(feature = "shared-memory")]
        if let Some(name) = &self.shared_memory {
            builder = builder.shared_memory(name.clone());
        }
        builder
    }

    /// Builds the tank.
    ///
    /// # Errors
    ///
    /// As [`TankBuilder::build`]: the options are checked together there.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::TankConfig;
    ///
    /// let config: TankConfig = serde_json::from_str(r#"{"rate": "5/s", "hardcap": "one", "burst": 3}"#)?;
    /// assert!(config.build().is_err()); // a burst is Limit's only
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn build(&self) -> Result<Tank, Error> {
        if self.max_keys.is_some() || !self.keys.is_empty() {
            return Err(Error::Unsupported {
                what: "`max_keys` or `keys` for a tank (they are a keyed tank's)",
                accepted: "leave them out, or build a keyed tank (`build_keyed`)",
            });
        }
        #[cfg(not(feature = "shared-memory"))]
        if self.shared_memory.is_some() {
            return Err(Error::Unsupported {
                what: "`shared_memory` without fueltank's `shared-memory` feature",
                accepted: "leave it out for a tank of this process, or build fueltank \
                           with the feature (on by default)",
            });
        }
        self.builder().build()
    }

    /// A keyed tank's builder with these options: `rate` for every key
    /// but those of `keys`, `also` for every key, `hardcap`, `burst`,
    /// `initial` and `max_keys`; for what a configuration does not hold (a
    /// clock).
    ///
    /// # Errors
    ///
    /// [`Error::Unsupported`] for `shared_memory`, which a keyed tank does
    /// not have.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::TankConfig;
    ///
    /// let config: TankConfig = serde_json::from_str(
    ///     r#"{"rate": "5/s", "burst": 10, "keys": {"partner": "50/s"}}"#,
    /// )?;
    /// let per_user = config.keyed_builder::<String>()?.build()?;
    /// assert!(per_user.has_fuel_n(&"ada".to_string(), 10));
    /// assert!(per_user.has_fuel_n(&"partner".to_string(), 10));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn keyed_builder<K>(&self) -> Result<KeyedTankBuilder<K>, Error>
    where
        K: Hash + Eq + Clone + fmt::Display + Send + Sync + 'static,
    {
        if self.shared_memory.is_some() {
            return Err(Error::Unsupported {
                what: "`shared_memory` for a keyed tank",
                accepted: "a keyed tank's keys are in this process: leave it out, or \
                           build a tank (`build`)",
            });
        }
        let mut builder = KeyedTank::builder(self.rate).hardcap(self.hardcap);
        for &rate in &self.also {
            builder = builder.also(rate);
        }
        if let Some(burst) = self.burst {
            builder = builder.burst(burst);
        }
        if let Some(initial) = self.initial {
            builder = builder.initial(initial);
        }
        if let Some(max_keys) = self.max_keys {
            builder = builder.max_keys(max_keys);
        }
        if !self.keys.is_empty() {
            let (keys, rate) = (self.keys.clone(), self.rate);
            builder =
                builder.rate_by(move |key: &K| keys.get(&key.to_string()).copied().unwrap_or(rate));
        }
        Ok(builder)
    }

    /// Builds the keyed tank.
    ///
    /// # Errors
    ///
    /// As [`keyed_builder`](TankConfig::keyed_builder) and
    /// [`KeyedTankBuilder::build`].
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::TankConfig;
    ///
    /// let config: TankConfig = serde_json::from_str(r#"{"rate": "5/s", "also": ["100/min"]}"#)?;
    /// let per_user = config.build_keyed::<u32>()?;
    /// assert!(per_user.has_fuel_n(&7, 5));
    /// assert!(!per_user.has_fuel(&7)); // 5/s is empty; 95 left of 100/min
    /// assert_eq!(per_user.rates(&7)[1].1, 95);
    /// let shared: TankConfig = serde_json::from_str(r#"{"rate": "5/s", "shared_memory": "x"}"#)?;
    /// assert!(shared.build_keyed::<u32>().is_err()); // a tank's only
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn build_keyed<K>(&self) -> Result<KeyedTank<K>, Error>
    where
        K: Hash + Eq + Clone + fmt::Display + Send + Sync + 'static,
    {
        self.keyed_builder()?.build()
    }
}
