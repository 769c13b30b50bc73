//! [`Budget`] and [`KeyedBudget`]: the one abstraction of fuel, which
//! every store implements ([`Tank`], [`Throttle`], [`KeyedTank`] here;
//! `fueltank-redis`'s tanks) and every consumer draws on (`fueltank-tower`'s
//! layers); and what a refused request says: [`Throttled`] (no fuel in
//! time) and [`Unavailable`] (its budget's store is down).

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::{Error, Fuel, KeyedTank, Rate, Tank, Throttle};

/// A wait for fuel from a [`Budget`] or a [`KeyedBudget`]: resolves to the
/// fuel taken, `None` if the wait's deadline passed first, or an error if
/// the amount asked for can never be granted at once
/// ([`Error::ExceedsCapacity`], which says what is accepted).
pub type BudgetWait = Pin<Box<dyn Future<Output = Result<Option<Fuel>, Error>> + Send>>;

/// Fuel shared by every request: taken now, waited for in a line, given
/// back, and described. [`Tank`] (in-process or in shared memory),
/// [`Throttle`] and `fueltank-redis`'s `GlobalTank` are budgets;
/// `fueltank-tower`'s `ThrottleLayer` draws on any of them.
///
/// | method | what |
/// |---|---|
/// | [`try_take`](Budget::try_take) | takes `n` now as [`Fuel`] that can be given back; never waits, never overtakes the line |
/// | [`take`](Budget::take) | the same, for good: `true` if taken |
/// | [`wait`](Budget::wait) | waits in the line for `n`, for at most `max_wait` if given |
/// | [`ask`](Budget::ask) | asks the budget's store, when only it can tell whether there is fuel |
/// | [`give_back`](Budget::give_back) | gives back fuel taken and never spent |
/// | [`wait_time`](Budget::wait_time), [`rate`](Budget::rate), [`available`](Budget::available), [`capacity`](Budget::capacity) | the `Retry-After` and `RateLimit` figures |
/// | [`unavailable`](Budget::unavailable) | whether a refusal is an outage of the budget's store rather than a want of fuel |
///
/// `n` beyond the [`capacity`](Budget::capacity) is never granted:
/// `try_take` returns `None`, `take` `false`, `wait_time` `None`, and `wait` resolves at
/// once to [`Error::ExceedsCapacity`], which says the capacity. `n = 0` is
/// always granted.
///
/// A fuel token from one budget given back to another is spent, never
/// counted twice.
///
/// # Cancel safety
///
/// The wait of [`wait`](Budget::wait) (and of [`ask`](Budget::ask)) must
/// be cancel safe: dropped before it resolves, it takes nothing and stalls
/// no other waiter. Fuel it resolved to is the holder's: dropped, it is
/// spent; [`give_back`](Budget::give_back) returns it.
///
/// # Examples
///
/// A tank and a throttle through the one interface:
///
/// ```
/// use fueltank::{Budget, Rate, Tank, Throttle};
///
/// fn serve(budget: &dyn Budget) -> bool {
///     match budget.try_take(2) {
///         Some(fuel) => {
///             budget.give_back(fuel); // changed our mind: the fuel goes back
///             true
///         }
///         None => false,
///     }
/// }
///
/// let tank = Tank::builder(Rate::per_second(10)?).initial(2).build()?;
/// assert!(serve(&tank));
/// assert_eq!(tank.level(), 2);
/// let throttle = Throttle::builder(Rate::per_second(10)?).initial(1).build()?;
/// assert!(!serve(&throttle));
/// assert_eq!(throttle.capacity(), 10);
/// # Ok::<(), fueltank::Error>(())
/// ```
///
/// A budget of your own, that always has fuel, counting what it gives:
///
/// ```
/// use fueltank::{Budget, BudgetWait, Fuel, Rate};
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use std::time::Duration;
///
/// #[derive(Debug, Default)]
/// struct Counted(AtomicU64);
///
/// impl Budget for Counted {
///     fn try_take(&self, n: u64) -> Option<Fuel> {
///         self.0.fetch_add(n, Ordering::Relaxed);
///         Some(Fuel::taken(n))
///     }
///     fn wait(&self, n: u64, _max_wait: Option<Duration>) -> BudgetWait {
///         Box::pin(std::future::ready(Ok(self.try_take(n))))
///     }
///     fn wait_time(&self, _n: u64) -> Option<Duration> {
///         Some(Duration::ZERO)
///     }
///     fn rate(&self) -> Rate {
///         Rate::per_second(1_000_000).unwrap()
///     }
///     fn available(&self) -> u64 {
///         u64::MAX
///     }
///     fn capacity(&self) -> u64 {
///         u64::MAX
///     }
/// }
///
/// let counted = Counted::default();
/// assert!(counted.try_take(3).is_some());
/// assert_eq!(counted.0.load(Ordering::Relaxed), 3);
/// ```
pub trait Budget: Any + fmt::Debug + Send + Sync {
    /// Takes `n` fuel together now if there is that much and nobody waits
    /// in line, without waiting on anything; the fuel, to spend (drop it)
    /// or [give back](Budget::give_back). `None` if there is not, or if
    /// `n` is beyond the [`capacity`](Budget::capacity).
    fn try_take(&self, n: u64) -> Option<Fuel>;

    /// Takes `n` fuel together now, for good, as
    /// [`try_take`](Budget::try_take): `true` if taken. A tank's is its
    /// `has_fuel_n`, which keeps no record to give the fuel back by.
    #[inline]
    fn take(&self, n: u64) -> bool {
        self.try_take(n).is_some()
    }

    /// Waits in line for `n` fuel and takes them together, for at most
    /// `max_wait` (counted from this call) if given. Resolves to the fuel;
    /// to `None` if `max_wait` passes first (at once if the budget knows
    /// the line ahead cannot be served in time); to
    /// [`Error::ExceedsCapacity`] at once if `n` is beyond the
    /// [`capacity`](Budget::capacity).
    ///
    /// # Cancel safety
    ///
    /// Dropped before it resolves, the wait leaves the line, takes nothing
    /// and stalls no other waiter.
    fn wait(&self, n: u64, max_wait: Option<Duration>) -> BudgetWait;

    /// Whether only the budget's store can tell if there is fuel for `n`
    /// now (nothing held here, nothing known): then a wait for its answer,
    /// which resolves to the fuel if some was taken (or to `None`),
    /// waiting for the answer but not for fuel to come. A consumer that
    /// sheds requests asks before taking, instead of shedding on a guess.
    /// `None` (the default): [`take`](Budget::take) decides now.
    ///
    /// # Cancel safety
    ///
    /// As for [`wait`](Budget::wait).
    fn ask(&self, n: u64) -> Option<BudgetWait> {
        let _ = n;
        None
    }

    /// Gives back fuel taken from this budget and never spent: as if it
    /// had never been taken, as far as it would not have run into the cap
    /// since. By default it is spent (a budget that cannot take fuel back).
    fn give_back(&self, fuel: Fuel) {
        drop(fuel);
    }

    /// How long a newcomer asking for `n` fuel would wait, counting the
    /// line ahead; `None` if unknown (a paused tank) or if `n` is beyond
    /// the [`capacity`](Budget::capacity).
    fn wait_time(&self, n: u64) -> Option<Duration>;

    /// The rate.
    fn rate(&self) -> Rate;

    /// Every rate the budget keeps, [`rate`](Budget::rate) first, each
    /// with the fuel a newcomer could take under it now: the tightest is
    /// the one with the least (a tank with
    /// [`also`](crate::TankBuilder::also) keeps several). By default the
    /// one rate, with [`available`](Budget::available).
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Budget, Rate, Tank};
    ///
    /// let tank = Tank::builder("5/s".parse()?).also("100/min".parse()?).build()?;
    /// let rates: Vec<Rate> = Budget::rates(&tank).into_iter().map(|(rate, _)| rate).collect();
    /// assert_eq!(rates, ["5/s".parse()?, "100/min".parse()?]);
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    fn rates(&self) -> Vec<(Rate, u64)> {
        vec![(self.rate(), self.available())]
    }

    /// The fuel a newcomer could take now; a lower figure than the truth
    /// is fine, a higher one is not.
    fn available(&self) -> u64;

    /// The most fuel granted together: what a full budget holds.
    fn capacity(&self) -> u64;

    /// Whether a refusal now is an outage rather than a want of fuel:
    /// `Some` while the budget's store is down and its failure policy
    /// refuses, describing the store and when to retry. A consumer asks
    /// only after the budget found no fuel (never on a grant). `None` (the
    /// default): a refusal is for want of fuel.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Budget, Rate, Tank, Unavailable};
    /// use std::time::Duration;
    ///
    /// let tank = Tank::builder(Rate::per_second(1)?).initial(0).build()?;
    /// assert!(!tank.take(1));
    /// assert_eq!(tank.unavailable(), None); // a local tank is never down
    /// let down = Unavailable::new("my store", Duration::from_secs(1));
    /// assert_eq!(down.store(), "my store");
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    fn unavailable(&self) -> Option<Unavailable> {
        None
    }
}

/// A budget per key (client address, user id): [`KeyedTank`] and
/// `fueltank-redis`'s `GlobalKeyedTank` are ones; `fueltank-tower`'s
/// `KeyedThrottleLayer` draws on any of them.
///
/// As [`Budget`], by key, except that fuel is not given back; and a
/// budget may refuse a key it cannot hold ([`check`](KeyedBudget::check)).
///
/// # Cancel safety
///
/// As for [`Budget`]: the wait of [`wait`](KeyedBudget::wait), dropped
/// before it resolves, takes nothing and stalls no other waiter.
///
/// # Examples
///
/// ```
/// use fueltank::{KeyedBudget, KeyedTank, Rate, clock::ManualClock};
/// use std::time::Duration;
///
/// let keyed = KeyedTank::builder(Rate::per_second(2)?).clock(ManualClock::new()).build()?;
/// let budget: &dyn KeyedBudget<&str> = &keyed;
/// assert!(budget.take(&"ada", 2));
/// assert!(!budget.take(&"ada", 1));
/// assert_eq!(budget.wait_time(&"ada", 1), Some(Duration::from_millis(500)));
/// assert!(budget.take(&"bob", 1)); // bob has his own
/// assert!(!budget.take(&"bob", 3)); // beyond the capacity
/// assert_eq!(budget.capacity(&"bob"), 2);
/// # Ok::<(), fueltank::Error>(())
/// ```
pub trait KeyedBudget<K>: Any + fmt::Debug + Send + Sync {
    /// Takes `n` fuel together for `key` now, for good, if there is that
    /// much and nobody waits on the key, without waiting on anything;
    /// `false` if not, or if `n` is beyond the key's
    /// [`capacity`](KeyedBudget::capacity).
    fn take(&self, key: &K, n: u64) -> bool;

    /// Waits in `key`'s line for `n` fuel and takes them together, for at
    /// most `max_wait` if given, as [`Budget::wait`]: resolves at once to
    /// [`Error::ExceedsCapacity`] if `n` is beyond the key's
    /// [`capacity`](KeyedBudget::capacity).
    ///
    /// # Cancel safety
    ///
    /// Dropped before it resolves, the wait leaves the line, takes nothing
    /// and stalls no other waiter.
    fn wait(&self, key: &K, n: u64, max_wait: Option<Duration>) -> BudgetWait;

    /// Whether only the budget's store can tell if there is fuel for `key`
    /// now (a key new here), as [`Budget::ask`]. `None` (the default):
    /// [`take`](KeyedBudget::take) decides now.
    ///
    /// # Cancel safety
    ///
    /// As for [`wait`](KeyedBudget::wait).
    fn ask(&self, key: &K, n: u64) -> Option<BudgetWait> {
        let _ = (key, n);
        None
    }

    /// How long a newcomer asking `key` for `n` fuel would wait; `None`
    /// if unknown or if `n` is beyond the key's
    /// [`capacity`](KeyedBudget::capacity).
    fn wait_time(&self, key: &K, n: u64) -> Option<Duration>;

    /// The rate of every key.
    fn rate(&self) -> Rate;

    /// The fuel a newcomer could take for `key` now; a lower figure than
    /// the truth is fine, a higher one is not.
    fn available(&self, key: &K) -> u64;

    /// Every rate `key` keeps, its first rate first, each with the fuel a
    /// newcomer could take for `key` under it now, as [`Budget::rates`]
    /// (a keyed tank with [`also`](crate::KeyedTankBuilder::also) keeps
    /// several). By default the one rate, with
    /// [`available`](KeyedBudget::available).
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{KeyedBudget, KeyedTank, Rate};
    ///
    /// let keyed = KeyedTank::builder("5/s".parse()?).also("100/min".parse()?).build()?;
    /// let rates: Vec<Rate> = KeyedBudget::rates(&keyed, &"a").into_iter().map(|(r, _)| r).collect();
    /// assert_eq!(rates, ["5/s".parse()?, "100/min".parse()?]);
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    fn rates(&self, key: &K) -> Vec<(Rate, u64)> {
        vec![(self.rate(), self.available(key))]
    }

    /// The most fuel granted together to `key`: what decides whether a
    /// request of `key` could ever be served (a key with a rate of its own,
    /// as [`rate_by`](crate::KeyedTankBuilder::rate_by) gives, has the
    /// capacity of that rate). By default the [`rate`](KeyedBudget::rate)'s
    /// `max_n`, every key's: a budget whose keys have rates of their own
    /// says each key's.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{KeyedBudget, KeyedTank, Rate};
    ///
    /// let keyed = KeyedTank::<&str>::builder("5/s".parse()?)
    ///     .rate_by(|user| match *user {
    ///         "acme" => Rate::per_second(50).unwrap(),
    ///         _ => Rate::per_second(5).unwrap(),
    ///     })
    ///     .build()?;
    /// assert_eq!(KeyedBudget::capacity(&keyed, &"acme"), 50);
    /// assert_eq!(KeyedBudget::capacity(&keyed, &"bob"), 5);
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    fn capacity(&self, key: &K) -> u64 {
        let _ = key;
        self.rate().max_n()
    }

    /// Whether a refusal for `key` now is an outage rather than a want of
    /// fuel, as [`Budget::unavailable`]; `None` (the default): a refusal is
    /// for want of fuel.
    fn unavailable(&self, key: &K) -> Option<Unavailable> {
        let _ = key;
        None
    }

    /// Whether `key` can have a budget at all: an
    /// [`Error::InvalidKey`] that says why not and what is accepted. By
    /// default every key can.
    fn check(&self, key: &K) -> Result<(), Error> {
        let _ = key;
        Ok(())
    }
}

/// A throttle's tank, with the throttle's emit-on-take rule: with
/// `auto_emit`, fuel granted is counted in the monitor when it is taken
/// (fuel given back stays counted). Without a tank, every amount is
/// granted at once, for good.
impl Budget for Throttle {
    fn try_take(&self, n: u64) -> Option<Fuel> {
        let fuel = match self.tank() {
            Some(tank) => tank.try_take(n)?,
            None => Fuel::taken(n),
        };
        self.emitted(true, n);
        Some(fuel)
    }

    fn take(&self, n: u64) -> bool {
        self.has_fuel_n(n)
    }

    fn wait(&self, n: u64, max_wait: Option<Duration>) -> BudgetWait {
        Box::pin(Throttle::wait(self, n, max_wait))
    }

    fn give_back(&self, fuel: Fuel) {
        if let Some(tank) = self.tank() {
            tank.give_back(fuel);
        }
    }

    fn wait_time(&self, n: u64) -> Option<Duration> {
        self.tank()
            .map_or(Some(Duration::ZERO), |tank| tank.wait_time(n))
    }

    fn rate(&self) -> Rate {
        Throttle::rate(self)
    }

    fn rates(&self) -> Vec<(Rate, u64)> {
        self.tank()
            .map_or_else(|| vec![(self.rate(), u64::MAX)], Tank::rates)
    }

    fn available(&self) -> u64 {
        self.tank().map_or(u64::MAX, Tank::available)
    }

    fn capacity(&self) -> u64 {
        self.tank().map_or(u64::MAX, Tank::capacity)
    }
}

/// A keyed tank's own calls, through the trait. A wait with `max_wait`
/// is bounded by the key's timer.
impl<K: Hash + Eq + Clone + Send + Sync + 'static> KeyedBudget<K> for KeyedTank<K> {
    #[inline]
    fn take(&self, key: &K, n: u64) -> bool {
        self.has_fuel_n(key, n)
    }

    fn wait(&self, key: &K, n: u64, max_wait: Option<Duration>) -> BudgetWait {
        Box::pin(KeyedTank::wait(self, key, n, max_wait))
    }

    fn wait_time(&self, key: &K, n: u64) -> Option<Duration> {
        KeyedTank::wait_time(self, key, n)
    }

    fn rate(&self) -> Rate {
        KeyedTank::rate(self)
    }

    fn available(&self, key: &K) -> u64 {
        KeyedTank::available(self, key)
    }

    fn rates(&self, key: &K) -> Vec<(Rate, u64)> {
        KeyedTank::rates(self, key)
    }

    fn capacity(&self, key: &K) -> u64 {
        self.key_capacity(key)
    }
}

/// Which kind of limit refused a request: one budget for every request,
/// or one per key. The errors of a refused request ([`Throttled`],
/// [`Unavailable`]) say it.
///
/// # Examples
///
/// ```
/// use fueltank::{Scope, Throttled};
/// use std::time::Duration;
///
/// let shed = Throttled::new(Duration::from_secs(1)).with_key("192.0.2.7");
/// assert_eq!(shed.scope(), Scope::Keyed);
/// assert_eq!(Scope::Keyed.to_string(), "keyed");
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Scope {
    /// One budget shared by every request ([`Budget`]): `fueltank-tower`'s
    /// `ThrottleLayer`.
    #[default]
    Global,
    /// One budget per key ([`KeyedBudget`]): `fueltank-tower`'s
    /// `KeyedThrottleLayer`.
    Keyed,
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scope::Global => "global",
            Scope::Keyed => "keyed",
        })
    }
}

/// A request was shed because its budget had no fuel for it in time.
///
/// `fueltank-tower`'s services fail with it (boxed into
/// `tower::BoxError`; find it by downcasting) in reject mode, or in wait
/// mode when the fuel cannot come within `max_wait`; its HTTP layers answer
/// it with `429 Too Many Requests`. It says:
///
/// - [`retry_after`](Throttled::retry_after): how long a newcomer would
///   have waited for fuel at that moment, from the budget's own schedule;
/// - [`scope`](Throttled::scope): whether a limit shared by every request
///   or a per-key limit shed it;
/// - [`label`](Throttled::label): the name given to that limit with
///   `label(..)` on the layer, if any;
/// - [`key`](Throttled::key): the key, as text, if the keyed layer was
///   asked to `report_key`.
///
/// A request refused while its budget's store is down fails with
/// [`Unavailable`] instead, which carries the same description of the
/// limit.
///
/// # Examples
///
/// ```
/// use fueltank::{Scope, Throttled};
/// use std::time::Duration;
///
/// let shed = Throttled::new(Duration::from_millis(250)).with_label("api");
/// assert_eq!(shed.retry_after(), Duration::from_millis(250));
/// assert_eq!(shed.scope(), Scope::Global);
/// assert_eq!(
///     shed.to_string(),
///     "rate limited by the global limit `api`: no fuel for this request in time; \
///      retry after 250ms"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Throttled {
    retry_after: Duration,
    scope: Scope,
    label: Option<Arc<str>>,
    key: Option<Arc<str>>,
}

impl Throttled {
    /// A `Throttled` error saying the request may be retried after
    /// `retry_after`, from the global limit, without a label. The layers
    /// make these; this is for tests and for services that shed load
    /// themselves.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Scope, Throttled};
    /// use std::time::Duration;
    ///
    /// let err = Throttled::new(Duration::from_millis(40));
    /// assert_eq!(err.retry_after(), Duration::from_millis(40));
    /// assert_eq!(err.scope(), Scope::Global);
    /// assert_eq!(err.label(), None);
    /// ```
    pub const fn new(retry_after: Duration) -> Throttled {
        Throttled {
            retry_after,
            scope: Scope::Global,
            label: None,
            key: None,
        }
    }

    /// This error, naming the limit that refused the request.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::Throttled;
    /// use std::time::Duration;
    ///
    /// let err = Throttled::new(Duration::from_secs(1)).with_label("uploads");
    /// assert_eq!(err.label(), Some("uploads"));
    /// ```
    pub fn with_label(mut self, label: impl Into<Arc<str>>) -> Throttled {
        self.label = Some(label.into());
        self
    }

    /// This error, from a per-key limit, for the key written `key`
    /// (the scope becomes [`Scope::Keyed`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Scope, Throttled};
    /// use std::time::Duration;
    ///
    /// let err = Throttled::new(Duration::from_secs(1)).with_key("ada");
    /// assert_eq!(err.key(), Some("ada"));
    /// assert_eq!(err.scope(), Scope::Keyed);
    /// ```
    pub fn with_key(mut self, key: impl Into<Arc<str>>) -> Throttled {
        self.scope = Scope::Keyed;
        self.key = Some(key.into());
        self
    }

    /// This error, from a limit of `scope`, without changing its label
    /// and key (a per-key limit that does not report its keys).
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Scope, Throttled};
    /// use std::time::Duration;
    ///
    /// let err = Throttled::new(Duration::from_secs(1)).with_scope(Scope::Keyed);
    /// assert_eq!((err.scope(), err.key()), (Scope::Keyed, None));
    /// ```
    pub fn with_scope(mut self, scope: Scope) -> Throttled {
        self.scope = scope;
        self
    }

    /// The same refusal, made because `store` is down: an [`Unavailable`]
    /// that describes this limit.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Scope, Throttled};
    /// use std::time::Duration;
    ///
    /// let down = Throttled::new(Duration::from_secs(1)).with_key("ada").unavailable("redis");
    /// assert_eq!((down.store(), down.limit().scope(), down.limit().key()), ("redis", Scope::Keyed, Some("ada")));
    /// ```
    pub fn unavailable(self, store: impl Into<Arc<str>>) -> Unavailable {
        Unavailable {
            store: store.into(),
            limit: self,
        }
    }

    /// When to try again. Shed for want of fuel: how long a request
    /// arriving at that moment would have waited, from the budget's own
    /// schedule, exact to the nanosecond (while a tank is paused the wait
    /// is unknown; then it is one interval of its rate); retrying after it
    /// finds fuel, unless others take it first. Refused while the store is
    /// down ([`Unavailable`]): how soon the budget asks its store again,
    /// not a promise that the store is back by then.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::Throttled;
    /// use std::time::Duration;
    ///
    /// assert_eq!(Throttled::new(Duration::from_secs(2)).retry_after(), Duration::from_secs(2));
    /// ```
    pub const fn retry_after(&self) -> Duration {
        self.retry_after
    }

    /// Which kind of limit refused the request: one shared by every
    /// request (`fueltank-tower`'s `ThrottleLayer`), or the request's
    /// key's (`KeyedThrottleLayer`).
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Scope, Throttled};
    /// use std::time::Duration;
    ///
    /// assert_eq!(Throttled::new(Duration::ZERO).scope(), Scope::Global);
    /// ```
    pub const fn scope(&self) -> Scope {
        self.scope
    }

    /// The name of the limit that refused the request, as given to the
    /// layer's `label(..)`; `None` if it has none.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::Throttled;
    /// use std::time::Duration;
    ///
    /// assert_eq!(Throttled::new(Duration::ZERO).with_label("per-ip").label(), Some("per-ip"));
    /// ```
    pub fn label(&self) -> Option<&str> {
        self.label.as_deref()
    }

    /// The key whose limit refused the request, written with its
    /// `Display`, if the keyed layer was asked to `report_key`; `None`
    /// otherwise (keys such as client addresses are personal data: they
    /// are not copied into errors and logs unless asked for).
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::Throttled;
    /// use std::time::Duration;
    ///
    /// assert_eq!(Throttled::new(Duration::ZERO).key(), None);
    /// assert_eq!(Throttled::new(Duration::ZERO).with_key("42").key(), Some("42"));
    /// ```
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// The limit, as the errors' messages name it: "the keyed limit
    /// `per-ip` for key 192.0.2.7".
    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the {} limit", self.scope)?;
        if let Some(label) = &self.label {
            write!(f, " `{label}`")?;
        }
        if let Some(key) = &self.key {
            write!(f, " for key {key}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Throttled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("rate limited by ")?;
        self.describe(f)?;
        write!(
            f,
            ": no fuel for this request in time; retry after {:?}",
            self.retry_after
        )
    }
}

impl std::error::Error for Throttled {}

/// A request was refused because its budget's store is down and the
/// budget's failure policy refuses while it is (see
/// [`Budget::unavailable`]): an outage, not overload.
///
/// `fueltank-tower`'s plain services fail with it (boxed into
/// `tower::BoxError`) where a request would otherwise have been shed with
/// [`Throttled`]: the two are distinct types, so code that downcasts to
/// `Throttled` to answer "too many requests" does not mistake an outage
/// for one. Its HTTP layers answer it with `503 Service Unavailable`,
/// counted in `Stats::unavailable`, not in `rejected`. A fueltank tank is
/// never unavailable; `fueltank-redis`'s tanks are while Redis does not
/// answer under `FailurePolicy::Closed`.
///
/// It says which store is down ([`store`](Unavailable::store), as the
/// budget describes it, e.g. ``redis tank `api` ``), and, through the
/// [`Throttled`] of its [`limit`](Unavailable::limit), when to try again
/// ([`retry_after`](Throttled::retry_after): how soon the budget asks its
/// store again) and which limit refused ([`scope`](Throttled::scope),
/// [`label`](Throttled::label), [`key`](Throttled::key)).
///
/// # Examples
///
/// ```
/// use fueltank::{Scope, Throttled, Unavailable};
/// use std::time::Duration;
///
/// let down = Throttled::new(Duration::from_secs(1)).with_label("api").unavailable("redis tank `api`");
/// assert_eq!(down.store(), "redis tank `api`");
/// assert_eq!(down.limit().retry_after(), Duration::from_secs(1));
/// assert_eq!(down.limit().scope(), Scope::Global);
/// assert_eq!(
///     down.to_string(),
///     "rate-limit store unavailable (redis tank `api`): the global limit `api` \
///      cannot grant while it is down; retry after 1s"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Unavailable {
    store: Arc<str>,
    limit: Throttled,
}

impl Unavailable {
    /// The store described by `store` is down; retry after `retry_after`.
    /// From the global limit, without a label, until the layer that
    /// refuses the request says which limit it is. What a
    /// [`Budget::unavailable`] returns.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::Unavailable;
    /// use std::time::Duration;
    ///
    /// let down = Unavailable::new("redis at cache-1", Duration::from_millis(500));
    /// assert_eq!(down.store(), "redis at cache-1");
    /// assert_eq!(down.limit().label(), None);
    /// ```
    pub fn new(store: impl Into<Arc<str>>, retry_after: Duration) -> Unavailable {
        Throttled::new(retry_after).unavailable(store)
    }

    /// The store that is down, as its budget describes it.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::Unavailable;
    /// use std::time::Duration;
    ///
    /// assert_eq!(Unavailable::new("redis", Duration::ZERO).store(), "redis");
    /// ```
    pub fn store(&self) -> &str {
        &self.store
    }

    /// The limit that cannot grant while the store is down, and when to
    /// try again: a [`Throttled`], whose accessors say which limit.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::Unavailable;
    /// use std::time::Duration;
    ///
    /// let down = Unavailable::new("redis", Duration::from_secs(1));
    /// assert_eq!(down.limit().retry_after(), Duration::from_secs(1));
    /// ```
    pub fn limit(&self) -> &Throttled {
        &self.limit
    }
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rate-limit store unavailable ({}): ", self.store)?;
        self.limit.describe(f)?;
        write!(
            f,
            " cannot grant while it is down; retry after {:?}",
            self.limit.retry_after
        )
    }
}

impl std::error::Error for Unavailable {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttled_names_the_limit_and_the_key() {
        let plain = Throttled::new(Duration::from_millis(250));
        assert_eq!(
            plain.to_string(),
            "rate limited by the global limit: no fuel for this request in time; \
             retry after 250ms"
        );
        let keyed = plain.with_label("per-ip").with_key("192.0.2.7");
        assert_eq!(
            keyed.to_string(),
            "rate limited by the keyed limit `per-ip` for key 192.0.2.7: no fuel for \
             this request in time; retry after 250ms"
        );
    }

    #[test]
    fn unavailable_names_the_store_the_limit_and_the_key() {
        let down = Throttled::new(Duration::from_secs(1))
            .with_label("per-ip")
            .with_key("192.0.2.7")
            .unavailable("redis tank `per-ip`");
        assert_eq!(
            down.to_string(),
            "rate-limit store unavailable (redis tank `per-ip`): the keyed limit `per-ip` \
             for key 192.0.2.7 cannot grant while it is down; retry after 1s"
        );
    }
}
