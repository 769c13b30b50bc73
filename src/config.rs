//! [`TankConfig`]: a tank's options as a service's configuration holds
//! them.

use serde::{Deserialize, Serialize};

use crate::{Error, Hardcap, Rate, Tank, TankBuilder};

/// A tank's options, as read from a service's configuration (TOML, JSON,
/// environment): the rate as its string, the hardcap by name, and the
/// optional rest. Unknown fields are errors, so a misspelt option is not
/// silently ignored.
///
/// ```toml
/// [limits.api]
/// rate = "100/s"
/// hardcap = "limit"    # default; or "one", "unbounded", "window"
/// burst = 200          # Limit's capacity, if not max_n
/// initial = 1          # fuel at start
/// shared_memory = "api"  # share with every process of the host
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
}
