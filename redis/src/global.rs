//! [`GlobalTank`]: one tank shared by every instance that builds its name.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use fueltank::{Hardcap, Rate};

use crate::entry::{Entry, MAX_CORRECTION, Options};
use crate::params::{Mode, Params, default_hold};
use crate::script::{self, Op};
use crate::{AwaitGlobal, Error, RedisStore};

/// A tank whose budget is kept in Redis and shared by every instance (of
/// every process, on every host) that builds the same name on the same
/// Redis.
///
/// It has the fuel methods of [`fueltank::Tank`]. A cheap handle: clones
/// share the local reserve and the line of waiters. `Send + Sync`; waiters
/// are served in arrival order among this instance's waiters, and
/// `has_fuel` never overtakes them. See the crate docs for what is kept in
/// Redis, how fuel is reserved and the bound reservations keep.
///
/// # Examples
///
/// ```no_run
/// use fueltank_redis::RedisStore;
///
/// # async fn run() -> Result<(), fueltank_redis::Error> {
/// let store = RedisStore::connect("redis://127.0.0.1:6379").await?;
/// let api = store.tank("api", "100/s".parse()?).build().await?;
/// api.await_fuel().await;   // all instances together: at most 100 a second (and bursts)
/// if api.has_fuel() {       // never waits on Redis
///     // ...
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct GlobalTank {
    pub(crate) entry: Arc<Entry>,
}

/// Chooses the hardcap and the reservation sizes of a [`GlobalTank`].
///
/// # Examples
///
/// ```no_run
/// use fueltank::Hardcap;
/// use fueltank_redis::RedisStore;
/// use std::time::Duration;
///
/// # async fn run() -> Result<(), fueltank_redis::Error> {
/// let store = RedisStore::connect("redis://127.0.0.1:6379").await?;
/// let tank = store
///     .tank("api", "1000/s".parse()?)
///     .hardcap(Hardcap::Limit)
///     .max_batch(200)
///     .reserve_ahead(Duration::from_millis(200))
///     .hold(Duration::from_millis(50))
///     .build()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until built"]
pub struct GlobalTankBuilder {
    store: RedisStore,
    name: String,
    rate: Rate,
    also: Vec<Rate>,
    pub(crate) shape: Shape,
}

/// What a global and a keyed builder share.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shape {
    pub(crate) hardcap: Hardcap,
    pub(crate) burst: Option<u64>,
    pub(crate) hold: Option<Duration>,
    pub(crate) max_batch: u64,
    pub(crate) reserve_ahead: Duration,
}

impl Shape {
    pub(crate) fn new() -> Shape {
        Shape {
            hardcap: Hardcap::Limit,
            burst: None,
            hold: None,
            max_batch: 1000,
            reserve_ahead: Duration::from_millis(500),
        }
    }

    /// The parameters and options, checked.
    pub(crate) fn resolve(&self, name: &str, rate: Rate) -> Result<(Params, Options), Error> {
        check_name(name)?;
        if self.max_batch == 0 || self.max_batch > 1 << 20 {
            return Err(Error::InvalidOption {
                option: "max_batch",
                value: self.max_batch.to_string(),
                accepted: "between 1 and 2^20",
            });
        }
        if self.reserve_ahead.is_zero() || self.reserve_ahead > Duration::from_secs(3600) {
            return Err(Error::InvalidOption {
                option: "reserve_ahead",
                value: format!("{:?}", self.reserve_ahead),
                accepted: "between 1 ns and 1 hour",
            });
        }
        let hold = self.hold.unwrap_or_else(|| default_hold(rate.per()));
        let params = Params::new(rate, self.hardcap, self.burst, hold)?;
        let correction = correction(&params);
        Ok((
            params,
            Options {
                name: name.to_string(),
                max_batch: self.max_batch,
                reserve_ahead: self.reserve_ahead,
                hold_is_default: self.hold.is_none(),
                correction: AtomicU64::new(
                    u64::try_from(correction.as_nanos()).unwrap_or(u64::MAX),
                ),
                follows: !correction.is_zero(),
                also: Vec::new(),
            },
        ))
    }
}

/// How early to arm the timer for `Paced` fuel (see `Options::correction`):
/// a late wake-up under `One` delays every grant after it, so, as a local
/// calibrated `One` tank does, the driver wakes early by the timer's usual
/// lateness and spins the rest. Measuring it blocks about 5 ms.
fn correction(params: &Params) -> Duration {
    let interval = Duration::from_nanos(params.interval_ns());
    let fast = interval <= Duration::from_nanos(1_000_000_000 / 49);
    if params.mode() != Mode::Paced || !fast {
        return Duration::ZERO;
    }
    fueltank::clock::timer_lateness(interval)
        .min(interval / 4)
        .min(MAX_CORRECTION)
}

/// Checks a tank name: 1 to 200 bytes, no control characters (anything
/// else is escaped in its Redis keys: see `script.rs`).
pub(crate) fn check_name(name: &str) -> Result<(), Error> {
    let invalid = |reason| Error::InvalidName {
        name: name.to_string(),
        reason,
    };
    if name.is_empty() {
        return Err(invalid("it is empty"));
    }
    if name.len() > crate::error::MAX_NAME {
        return Err(invalid("it is too long"));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid("it contains a control character"));
    }
    Ok(())
}

macro_rules! shape_setters {
    ($builder:ty, $doc_builder:literal) => {
        /// How much fuel may bank up, as for [`fueltank::Tank`];
        /// [`Hardcap::Limit`](fueltank::Hardcap::Limit) by default. The
        /// bound of the crate docs' table holds across all instances.
        ///
        /// # Examples
        ///
        /// ```
        #[doc = concat!("# fn doc(builder: fueltank_redis::", $doc_builder, ") {")]
        /// let builder = builder.hardcap(fueltank::Hardcap::Window);
        /// # }
        /// ```
        pub fn hardcap(mut self, hardcap: fueltank::Hardcap) -> $builder {
            self.shape.hardcap = hardcap;
            self
        }

        /// `Limit`'s capacity apart from `max_n`, as
        /// [`TankBuilder::burst`](fueltank::TankBuilder::burst): "5/s with
        /// bursts of 10" (of every key, for a keyed tank). Stored with the
        /// tank, it must match across instances; the hold is paid from it
        /// as from `max_n` (see [`hold`](Self::hold)).
        ///
        /// # Examples
        ///
        /// ```
        #[doc = concat!("# fn doc(builder: fueltank_redis::", $doc_builder, ") {")]
        /// let builder = builder.burst(10);
        /// # }
        /// ```
        pub fn burst(mut self, n: u64) -> $builder {
            self.shape.burst = Some(n);
            self
        }

        /// How long reserved fuel may be held after it becomes spendable
        /// before it expires: a tenth of the period by default, at most
        /// 100 ms. Under `Limit` the bank is `max_n` less the intervals in
        /// the hold (see the crate docs); it is stored with the tank and
        /// must match across instances.
        ///
        /// # Examples
        ///
        /// ```
        #[doc = concat!("# fn doc(builder: fueltank_redis::", $doc_builder, ") {")]
        /// let builder = builder.hold(std::time::Duration::from_millis(20));
        /// # }
        /// ```
        pub fn hold(mut self, hold: std::time::Duration) -> $builder {
            self.shape.hold = Some(hold);
            self
        }

        /// The most fuel one round trip reserves (1000 by default, 1 to
        /// 2^20). Batches grow to it under demand and shrink when reserved
        /// fuel expires.
        ///
        /// # Examples
        ///
        /// ```
        #[doc = concat!("# fn doc(builder: fueltank_redis::", $doc_builder, ") {")]
        /// let builder = builder.max_batch(100);
        /// # }
        /// ```
        pub fn max_batch(mut self, max_batch: u64) -> $builder {
            self.shape.max_batch = max_batch;
            self
        }

        /// The most of the tank's rate one round trip reserves: a batch is
        /// at most this long at the tank's interval (500 ms by default).
        ///
        /// # Examples
        ///
        /// ```
        #[doc = concat!("# fn doc(builder: fueltank_redis::", $doc_builder, ") {")]
        /// let builder = builder.reserve_ahead(std::time::Duration::from_millis(100));
        /// # }
        /// ```
        pub fn reserve_ahead(mut self, reserve_ahead: std::time::Duration) -> $builder {
            self.shape.reserve_ahead = reserve_ahead;
            self
        }
    };
}
pub(crate) use shape_setters;

impl GlobalTankBuilder {
    pub(crate) fn new(store: RedisStore, name: &str, rate: Rate) -> GlobalTankBuilder {
        GlobalTankBuilder {
            store,
            name: name.to_string(),
            rate,
            also: Vec::new(),
            shape: Shape::new(),
        }
    }

    shape_setters!(GlobalTankBuilder, "GlobalTankBuilder");

    /// Another rate the tank keeps beside its own, as
    /// [`fueltank::TankBuilder::also`]: "100/min, also 5/s". A grant takes
    /// from every rate or from none: Redis decides all of them in one call.
    /// Each rate keeps the hardcap's bound with its own `max_n` and `per`
    /// (under `Limit`, its bank is its `max_n` less the intervals of the
    /// hold); [`capacity`](GlobalTank::capacity) is the least of them and
    /// a batch's fuel is spaced by the longest interval;
    /// [`set_rate`](GlobalTank::set_rate) changes the first rate only.
    /// Without [`hold`](GlobalTankBuilder::hold), the hold is the default
    /// for the shortest period. The rates are part of the tank: a build
    /// with other ones is an [`Error::Mismatch`].
    ///
    /// Under [`Hardcap::One`] and [`Hardcap::Window`] a Redis tank keeps
    /// one rate: `build` returns [`Error::UnsupportedRate`] for those, and
    /// for a `Limit` rate too slow to bank anything beside the hold (one
    /// that would be paced, as `One`).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use fueltank_redis::RedisStore;
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = RedisStore::connect("redis://127.0.0.1:6379").await?;
    /// let partner = store
    ///     .tank("partner-api", "100/min".parse()?)
    ///     .also("5/s".parse()?)
    ///     .build()
    ///     .await?;
    /// partner.await_fuel_n(3).await?; // within both rates, for every instance
    /// # Ok(()) }
    /// ```
    pub fn also(mut self, rate: Rate) -> GlobalTankBuilder {
        self.also.push(rate);
        self
    }

    /// Checks the options, then the tank Redis holds under the name: a tank
    /// stored with another rate, other [`also`](GlobalTankBuilder::also)
    /// rates, another hardcap or hold is an
    /// [`Error::Mismatch`]; a missing one is created full. Under `One` at
    /// 49/s and above it first measures this system's timer lateness,
    /// blocking the calling thread for about 5 ms (see the crate docs).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use fueltank_redis::{Error, RedisStore};
    ///
    /// # async fn run() -> Result<(), fueltank_redis::Error> {
    /// let store = RedisStore::connect("redis://127.0.0.1:6379").await?;
    /// store.tank("api", "100/s".parse()?).build().await?;
    /// let other = store.tank("api", "200/s".parse()?).build().await;
    /// assert!(matches!(other, Err(Error::Mismatch { .. })));
    /// # Ok(()) }
    /// ```
    pub async fn build(self) -> Result<GlobalTank, Error> {
        let (params, mut options) = self.shape.resolve(&self.name, self.rate)?;
        let (params, also) = params.with_also(&self.also, options.hold_is_default)?;
        if !also.is_empty() {
            // The hold stays as built: the other rates' banks count it.
            options.hold_is_default = false;
        }
        options.also = also;
        let start = script::tag_start(&self.store.shared.prefix, &self.name);
        let entry = Entry::new(
            self.store.shared.clone(),
            Arc::new(options),
            Arc::new(script::global_keys(&start)),
            params,
            None,
        );
        let stored = entry.control(Op::Build, params).await?;
        entry.set_params(stored);
        Ok(GlobalTank {
            entry: Arc::new(entry),
        })
    }
}

impl GlobalTank {
    /// Takes one fuel now and returns `true`, or returns `false` if none is
    /// reserved here, or if tasks are waiting in line, which it never
    /// overtakes. It never waits on Redis: finding the reserve low or empty,
    /// it starts a round trip in the background, so a later call finds fuel.
    /// On a key with little traffic, prefer
    /// [`await_fuel_timeout`](GlobalTank::await_fuel_timeout), which waits
    /// for that round trip.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn run(tank: fueltank_redis::GlobalTank) {
    /// if tank.has_fuel() {
    ///     // do the work
    /// }
    /// # }
    /// ```
    pub fn has_fuel(&self) -> bool {
        self.entry.has_fuel_n(1)
    }

    /// Takes `n` fuel together now, or none and returns `false`. `n = 0`
    /// always succeeds; more than the tank grants at once never does.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn run(tank: fueltank_redis::GlobalTank) {
    /// assert!(tank.has_fuel_n(0));
    /// assert!(!tank.has_fuel_n(u64::MAX));
    /// # }
    /// ```
    pub fn has_fuel_n(&self, n: u64) -> bool {
        self.entry.has_fuel_n(n)
    }

    /// Waits in line for one fuel and takes it.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future at any point loses no fuel Redis
    /// granted, duplicates none and stalls no other waiter; fuel granted to
    /// it but not yet seen goes back to the reserve.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(tank: fueltank_redis::GlobalTank) {
    /// tank.await_fuel().await;
    /// # }
    /// ```
    pub fn await_fuel(&self) -> AwaitGlobal {
        AwaitGlobal::new(Ok(self.entry.clone()), 1, None, false)
    }

    /// Waits in line for `n` fuel and takes them together; an
    /// [`Error::ExceedsCapacity`] if `n` is more than the tank grants at
    /// once (its bank under `Limit`, 1 under `One`, `max_n` under `Window`),
    /// an [`Error::Mismatch`] if Redis holds another limit under the name
    /// (its state was lost and made again with other parameters: see the
    /// crate docs).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`await_fuel`](GlobalTank::await_fuel).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(tank: fueltank_redis::GlobalTank) -> Result<(), fueltank_redis::Error> {
    /// tank.await_fuel_n(3).await?;
    /// assert!(tank.await_fuel_n(u64::MAX).await.is_err());
    /// # Ok(()) }
    /// ```
    pub fn await_fuel_n(&self, n: u64) -> AwaitGlobal<Result<(), Error>> {
        AwaitGlobal::new(Ok(self.entry.clone()), n, None, true)
    }

    /// Waits in line for one fuel for at most `timeout` (counted from this
    /// call); resolves to whether it was taken. Resolves to `false` at once
    /// if `timeout` is zero and no fuel is reserved, or if Redis has said
    /// that none comes before the deadline. `Duration::MAX` waits for ever.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`await_fuel`](GlobalTank::await_fuel).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(tank: fueltank_redis::GlobalTank) {
    /// use std::time::Duration;
    ///
    /// if tank.await_fuel_timeout(Duration::from_millis(10)).await {
    ///     // do the work
    /// }
    /// # }
    /// ```
    pub fn await_fuel_timeout(&self, timeout: Duration) -> AwaitGlobal<bool> {
        AwaitGlobal::new(Ok(self.entry.clone()), 1, Some(timeout), false)
    }

    /// How long a newcomer asking for `n` fuel would wait, as far as this
    /// instance knows; it comes after this instance's waiters. Zero if
    /// nobody waits and reserved fuel serves it now; the time to the next
    /// reserved fuel if the reserve serves the waiters and it; else the
    /// later of the retry time Redis gave and the time Redis's schedule,
    /// as of its latest answer to this instance, has room under every rate
    /// for `n` and the waiters' fuel beyond the reserve (with rates of
    /// `also`, the latest of the rates' own due times: Redis answers each
    /// rate's). That time is exact as of that answer (but for a paced
    /// tank's guards between batches, and under `Window`, whose answer
    /// tells only when the whole window is free); other instances' takes
    /// since can only make the real wait longer, never shorter. Zero when
    /// only a round trip can tell. `None` if `n` is more than the tank
    /// grants at once. This is the `Retry-After` of a rejected request.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn run(tank: fueltank_redis::GlobalTank) {
    /// if !tank.has_fuel() {
    ///     let retry = tank.wait_time(1);
    /// }
    /// # }
    /// ```
    pub fn wait_time(&self, n: u64) -> Option<Duration> {
        self.entry.wait_time(n)
    }

    /// The rate, as Redis last told this instance (another instance's
    /// [`set_rate`](GlobalTank::set_rate) reaches it at its next round trip).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn run(tank: fueltank_redis::GlobalTank) {
    /// println!("{}", tank.rate());
    /// # }
    /// ```
    pub fn rate(&self) -> Rate {
        self.entry.params().rate()
    }

    /// The hardcap.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn run(tank: fueltank_redis::GlobalTank) {
    /// assert_eq!(tank.hardcap(), fueltank::Hardcap::Limit);
    /// # }
    /// ```
    pub fn hardcap(&self) -> Hardcap {
        self.entry.params().hardcap
    }

    /// The most fuel granted together: the bank under `Limit` (`max_n` less
    /// the intervals of the hold; with [`also`](GlobalTankBuilder::also),
    /// the least over the rates), 1 under `One`, `max_n` under `Window`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn run(tank: fueltank_redis::GlobalTank) {
    /// assert!(tank.capacity() >= 1);
    /// # }
    /// ```
    pub fn capacity(&self) -> u64 {
        self.entry.options.capacity(&self.entry.params())
    }

    /// The tank's name.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn run(tank: fueltank_redis::GlobalTank) {
    /// assert_eq!(tank.name(), "api");
    /// # }
    /// ```
    pub fn name(&self) -> &str {
        &self.entry.options.name
    }

    /// Fuel reserved here and not yet spent (spendable now or later).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn run(tank: fueltank_redis::GlobalTank) {
    /// println!("{} reserved", tank.reserved());
    /// # }
    /// ```
    pub fn reserved(&self) -> u64 {
        self.entry.reserved()
    }

    /// The number of tasks waiting in line here.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn run(tank: fueltank_redis::GlobalTank) {
    /// assert_eq!(tank.waiting(), 0);
    /// # }
    /// ```
    pub fn waiting(&self) -> usize {
        self.entry.waiting()
    }

    /// Changes the rate for every instance: the state in Redis keeps its
    /// fuel (banked or owed, counted in intervals and rounded towards less)
    /// capped to the new bank, and refills at the new rate from now on: no
    /// burst. Other instances take the new rate at their next round trip;
    /// fuel they hold already was granted at the old one and stays
    /// spendable. The hold follows the new rate unless it was set. An
    /// instance built later must ask for the new rate. It is a takeover:
    /// whatever Redis holds under the name (another limit's state too),
    /// every instance of this name then has this rate.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(tank: fueltank_redis::GlobalTank) -> Result<(), fueltank_redis::Error> {
    /// tank.set_rate("50/s".parse()?).await?;
    /// assert_eq!(tank.rate().to_string(), "50/s");
    /// # Ok(()) }
    /// ```
    pub async fn set_rate(&self, rate: Rate) -> Result<(), Error> {
        let params = self
            .entry
            .params()
            .with_rate(rate, self.entry.options.hold_is_default)?;
        params.check_also(&self.entry.options.also)?;
        let stored = self.entry.control(Op::Set, params).await?;
        self.entry.set_params(stored);
        Ok(())
    }
}

impl fmt::Debug for GlobalTank {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GlobalTank")
            .field("name", &self.name())
            .field("rate", &self.rate())
            .field("hardcap", &self.hardcap())
            .field("reserved", &self.reserved())
            .field("waiting", &self.waiting())
            .finish()
    }
}
