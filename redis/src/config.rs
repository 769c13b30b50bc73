//! Tanks in Redis from a service's configuration: the same
//! [`TankConfig`] that builds a local tank (feature `serde`).

use std::fmt;
use std::hash::Hash;

use fueltank::TankConfig;

use crate::{Error, GlobalKeyedTankBuilder, GlobalTankBuilder, RedisStore};

/// An option of `config` that a tank in Redis does not take.
fn refused(what: &'static str, accepted: &'static str) -> Error {
    Error::Fueltank(fueltank::Error::Unsupported { what, accepted })
}

impl RedisStore {
    /// A builder of the global tank `name` with `config`'s rate, `also`
    /// rates, hardcap and burst; for what a configuration does not hold
    /// (the hold, the batches).
    ///
    /// # Errors
    ///
    /// [`Error::Fueltank`] with [`fueltank::Error::Unsupported`] for the
    /// options a tank in Redis does not take: `initial` (it starts full),
    /// `shared_memory`, and a keyed tank's `max_keys` and `keys`; `also`
    /// with `One` or `Window` is refused by `build` (see
    /// [`GlobalTankBuilder::also`]).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use fueltank::TankConfig;
    /// use fueltank_redis::RedisStore;
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let config: TankConfig = serde_json::from_str(r#"{"rate": "100/s", "burst": 200}"#)?;
    /// let store = RedisStore::connect("redis://127.0.0.1:6379").await?;
    /// let api = store.tank_config("api", &config)?.build().await?;
    /// # let _ = api;
    /// # Ok(()) }
    /// ```
    pub fn tank_config(&self, name: &str, config: &TankConfig) -> Result<GlobalTankBuilder, Error> {
        if config.max_keys.is_some() || !config.keys.is_empty() {
            return Err(refused(
                "`max_keys` or `keys` for a global tank (they are a keyed tank's)",
                "leave them out, or build a keyed tank (`keyed_config`)",
            ));
        }
        refuse_local(config)?;
        let mut builder = self.tank(name, config.rate).hardcap(config.hardcap);
        for &rate in &config.also {
            builder = builder.also(rate);
        }
        if let Some(burst) = config.burst {
            builder = builder.burst(burst);
        }
        Ok(builder)
    }

    /// A builder of the keyed tank `name` with `config`'s rate, `also`
    /// rates (every key's), hardcap, burst, `max_keys` and per-key rates
    /// (`keys`, by the key as its `Display` writes it).
    ///
    /// # Errors
    ///
    /// As [`tank_config`](RedisStore::tank_config), for `initial` and
    /// `shared_memory`; `also` with `One` or `Window` is refused by `build`
    /// (see [`GlobalKeyedTankBuilder::also`]).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use fueltank::TankConfig;
    /// use fueltank_redis::RedisStore;
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let config: TankConfig =
    ///     serde_json::from_str(r#"{"rate": "5/s", "burst": 10, "keys": {"partner": "50/s"}}"#)?;
    /// let store = RedisStore::connect("redis://127.0.0.1:6379").await?;
    /// let per_user = store.keyed_config::<String>("per-user", &config)?.build().await?;
    /// # let _ = per_user;
    /// # Ok(()) }
    /// ```
    pub fn keyed_config<K>(
        &self,
        name: &str,
        config: &TankConfig,
    ) -> Result<GlobalKeyedTankBuilder<K>, Error>
    where
        K: Hash + Eq + Clone + fmt::Display + Send + Sync + 'static,
    {
        refuse_local(config)?;
        let mut builder = self.keyed::<K>(name, config.rate).hardcap(config.hardcap);
        for &rate in &config.also {
            builder = builder.also(rate);
        }
        if let Some(burst) = config.burst {
            builder = builder.burst(burst);
        }
        if let Some(max_keys) = config.max_keys {
            builder = builder.max_keys(max_keys);
        }
        if !config.keys.is_empty() {
            let (keys, rate) = (config.keys.clone(), config.rate);
            builder =
                builder.rate_by(move |key: &K| keys.get(&key.to_string()).copied().unwrap_or(rate));
        }
        Ok(builder)
    }
}

/// Refuses what only a tank of this host has.
fn refuse_local(config: &TankConfig) -> Result<(), Error> {
    if config.initial.is_some() || config.shared_memory.is_some() {
        return Err(refused(
            "`initial` or `shared_memory` for a tank in Redis",
            "leave them out: a tank in Redis starts full, and is shared by every \
             instance that builds its name",
        ));
    }
    Ok(())
}
