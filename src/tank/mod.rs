//! [`Tank`]: fuel refilled at a [`Rate`], spent before work.
//!
//! The stores of fuel, and the one interface the line drives them
//! through, are in `bucket.rs`; the lock-free `has_fuel` in `word.rs`, the
//! line of waiters and its driver in `line.rs` and `waiters.rs`.

pub(crate) mod bucket;
mod builder;
mod future;
mod gcra;
mod hardcap;
#[cfg(feature = "shared-memory")]
mod host;
mod line;
// Without shared memory, a type with no value stands for the shared state:
// `bucket.rs`'s branches on it are unreachable, and compiled away.
#[cfg(not(feature = "shared-memory"))]
#[path = "no_host.rs"]
mod host;
mod permit;
mod refunds;
mod waiters;
mod word;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

pub use builder::TankBuilder;
pub use future::{AwaitFuel, WaitOutput};
pub use hardcap::Hardcap;
pub use permit::Fuel;

use self::line::Line;
use crate::clock::{ClockSource, saturating_ns};
use crate::{Budget, BudgetWait, Error, Rate};

/// Fuel refilled at `max_n` per `per`; tasks take fuel before they work.
///
/// A `Tank` is a cheap handle: clones share one tank. It is `Send + Sync`
/// and works under any executor, or none (the `blocking_*` calls).
///
/// - [`has_fuel`](Tank::has_fuel) takes one fuel if there is one, without
///   waiting: one compare-and-swap in the common case.
///   [`try_take`](Budget::try_take) takes the same way, but keeps the right
///   to give the fuel back (see [`Fuel`]).
/// - [`await_fuel`](Tank::await_fuel) waits in line. Waiters are served in
///   arrival order by the tank's one timer, each woken once, when its fuel
///   is granted; `has_fuel` never overtakes them.
/// - How much fuel may bank up is the [`Hardcap`]; refill is computed from
///   absolute time, so nothing drifts and a late wake-up is caught up.
///
/// Every way to take fuel is in the table of the [crate docs](crate#taking-fuel).
///
/// # Examples
///
/// ```
/// use fueltank::{Rate, Tank};
///
/// # futures::executor::block_on(async {
/// let tank = Tank::new(Rate::per_second(100)?);
/// for job in 0..3 {
///     tank.await_fuel().await; // at most 100 jobs a second start
///     println!("job {job}");
/// }
/// # Ok::<(), fueltank::Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct Tank {
    shared: Arc<Line>,
}

impl Tank {
    /// The tank's clock (a combination of budgets waits on it).
    pub(crate) fn clock(&self) -> ClockSource {
        self.shared.clock.clone()
    }

    /// A tank with the default [`Hardcap::Limit`], one fuel to start with,
    /// on the default clock, its timer calibrated at 49/s and above (see
    /// [`TankBuilder::auto_calibrate`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Tank};
    ///
    /// let tank = Tank::new(Rate::per_second(10)?);
    /// assert!(tank.has_fuel());
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn new(rate: Rate) -> Tank {
        TankBuilder::new(rate)
            .build()
            .expect("the default options are valid")
    }

    /// A builder to choose the hardcap, the initial fuel and the clock.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Hardcap, Rate, Tank};
    ///
    /// let tank = Tank::builder(Rate::per_second(10)?)
    ///     .hardcap(Hardcap::Limit)
    ///     .initial(10)
    ///     .build()?;
    /// assert_eq!(tank.level(), 10);
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn builder(rate: Rate) -> TankBuilder {
        TankBuilder::new(rate)
    }

    /// Removes the file of the shared tank `name` names (see
    /// [`TankBuilder::shared_memory`]), so that the next build starts
    /// anew, but only if no process uses it: `Ok(true)` if it removed it,
    /// `Ok(false)` if there was none. A process uses the file from its
    /// build until its last [`Tank`] (or [`Throttle`](crate::Throttle)) on
    /// it is dropped, or it ends.
    ///
    /// # Errors
    ///
    /// [`Error::SharedMemory`], and the file stays, if a process uses it
    /// still after a quarter of a second (stop them first: a process that
    /// kept a removed file would keep its own budget beside the new one),
    /// if it is not a fueltank tank file,
    /// or if it is one the build of `name` would refuse (a symbolic link,
    /// another user's file, one others may write: see
    /// [`SharedMemory`](crate::SharedMemory#who-can-attach-the-trust-model)).
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Tank};
    ///
    /// let name = format!("doc-remove-{}", std::process::id());
    /// let tank = Tank::builder(Rate::per_second(10)?).shared_memory(&name).build()?;
    /// assert!(Tank::remove_shared_memory(&name).is_err()); // in use
    /// drop(tank);
    /// assert!(Tank::remove_shared_memory(&name)?);
    /// assert!(!Tank::remove_shared_memory(&name)?); // already gone
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    #[cfg(feature = "shared-memory")]
    #[cfg_attr(docsrs, doc(cfg(feature = "shared-memory")))]
    pub fn remove_shared_memory(name: impl Into<crate::SharedMemory>) -> Result<bool, Error> {
        crate::shm::remove(&name.into(), crate::shm::Kind::Tank)
    }

    pub(crate) fn from_shared(shared: Arc<Line>) -> Tank {
        Tank { shared }
    }

    /// A `Limit` (with `burst`, if any), `One` or `Unbounded` tank whose
    /// next fuel is due `tat` ticks (of `rate`'s scale) after internal time
    /// `epoch`.
    pub(crate) fn from_gcra(
        rate: Rate,
        hardcap: Hardcap,
        burst: Option<u64>,
        epoch: u64,
        tat: i128,
        also: &[(Rate, i128)],
        clock: ClockSource,
    ) -> Tank {
        let gcra = |rate: Rate, burst, tat| {
            let cap = hardcap.capacity(rate.max_n(), burst);
            bucket::Gcra::from_parts(rate.ticks(), cap, epoch, tat)
        };
        let gcras = also.iter().map(|&(r, tat)| gcra(r, None, tat)).collect();
        let bucket = bucket::Bucket::Gcra(gcra(rate, burst, tat), gcras);
        let also = also.iter().map(|&(r, _)| r).collect();
        Tank::from_shared(Line::with_bucket(
            rate, also, hardcap, burst, bucket, 0, clock,
        ))
    }

    /// A `Window` tank whose log is `window`.
    pub(crate) fn from_window(rate: Rate, window: bucket::Window, clock: ClockSource) -> Tank {
        let bucket = bucket::Bucket::Window(window, Vec::new(), None);
        Tank::from_shared(Line::with_bucket(
            rate,
            Vec::new(),
            Hardcap::Window,
            None,
            bucket,
            0,
            clock,
        ))
    }

    /// The log of an idle `Window` tank.
    pub(crate) fn idle_window(&self) -> Option<bucket::Window> {
        self.shared.idle_window()
    }

    /// `(epoch, tat)` if this is an idle `Limit`, `One` or `Unbounded` tank,
    /// with the `tat`s of its rates of `also` (ticks of each since `epoch`).
    pub(crate) fn idle_gcra(&self) -> Option<(u64, i128, Vec<i128>)> {
        self.shared.idle_gcra()
    }

    /// How many handles, futures and permits share this tank.
    pub(crate) fn handles(&self) -> usize {
        Arc::strong_count(&self.shared)
    }

    /// Takes one fuel now and returns `true`, or returns `false` if there is
    /// none — or if tasks are waiting in line, which it never overtakes.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Tank};
    ///
    /// let tank = Tank::builder(Rate::per_second(2)?).initial(2).build()?;
    /// assert!(tank.has_fuel());
    /// assert!(tank.has_fuel());
    /// assert!(!tank.has_fuel());
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    #[inline]
    pub fn has_fuel(&self) -> bool {
        self.shared.take(1)
    }

    /// Takes `n` fuel together now, or none and returns `false`. `n = 0`
    /// always succeeds; `n` beyond the capacity never does.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Tank};
    ///
    /// let tank = Tank::builder(Rate::per_second(5)?).initial(5).build()?;
    /// assert!(tank.has_fuel_n(3));
    /// assert!(!tank.has_fuel_n(3));
    /// assert!(tank.has_fuel_n(2));
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    #[inline]
    pub fn has_fuel_n(&self, n: u64) -> bool {
        self.shared.take(n)
    }

    /// A wait in line for `n` fuel, for at most `max_wait` (from now) if
    /// given, emitting the fuel it takes in `emit` if given (a throttle's).
    #[inline]
    pub(crate) fn wait<T>(
        &self,
        n: u64,
        max_wait: Option<Duration>,
        emit: Option<crate::Monitor>,
    ) -> AwaitFuel<T> {
        let deadline = max_wait.map(|max_wait| {
            self.shared
                .clock
                .now_ns()
                .saturating_add(saturating_ns(max_wait))
        });
        AwaitFuel::tank(self.shared.clone(), n, deadline, emit)
    }

    /// Waits in line for one fuel and takes it.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future at any point loses no fuel,
    /// duplicates none and stalls no other waiter. Fuel granted to it but not
    /// yet seen goes back to the tank.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Tank};
    ///
    /// # futures::executor::block_on(async {
    /// let tank = Tank::new(Rate::per_second(1000)?);
    /// tank.await_fuel().await;
    /// tank.await_fuel().await; // about 1 ms later
    /// # Ok::<(), fueltank::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn await_fuel(&self) -> AwaitFuel {
        self.wait(1, None, None)
    }

    /// Waits in line for `n` fuel and takes them together.
    ///
    /// Resolves to [`Error::ExceedsCapacity`] if `n` can never fit under the
    /// tank's hardcap (for instance `n > 1` under [`Hardcap::One`]), at once
    /// or when a [`set_rate`](Tank::set_rate) shrinks the capacity below it.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`await_fuel`](Tank::await_fuel).
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Tank};
    ///
    /// # futures::executor::block_on(async {
    /// let tank = Tank::builder(Rate::per_second(1000)?).initial(10).build()?;
    /// tank.await_fuel_n(10).await?;
    /// assert!(tank.await_fuel_n(1001).await.is_err());
    /// # Ok::<(), fueltank::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn await_fuel_n(&self, n: u64) -> AwaitFuel<Result<(), Error>> {
        self.wait(n, None, None)
    }

    /// Waits in line for one fuel for at most `timeout`; resolves to whether
    /// it was taken. Resolves to `false` at once if the line ahead cannot be
    /// served within `timeout` at the tank's rate.
    ///
    /// The timeout counts from this call, not from the first poll.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`await_fuel`](Tank::await_fuel).
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Tank};
    /// use std::time::Duration;
    ///
    /// # futures::executor::block_on(async {
    /// let tank = Tank::builder(Rate::per_second(1)?).initial(0).build()?;
    /// // The next fuel is a second away: a millisecond is not enough.
    /// assert!(!tank.await_fuel_timeout(Duration::from_millis(1)).await);
    /// # Ok::<(), fueltank::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn await_fuel_timeout(&self, timeout: Duration) -> AwaitFuel<bool> {
        self.wait(1, Some(timeout), None)
    }

    /// Blocks this thread until one fuel is taken. For plain threads: inside
    /// an async task, use [`await_fuel`](Tank::await_fuel) instead.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Tank};
    ///
    /// let tank = Tank::new(Rate::per_second(1000)?);
    /// let workers: Vec<_> = (0..4)
    ///     .map(|_| {
    ///         let tank = tank.clone();
    ///         std::thread::spawn(move || tank.blocking_await_fuel())
    ///     })
    ///     .collect();
    /// for worker in workers {
    ///     worker.join().unwrap();
    /// }
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn blocking_await_fuel(&self) {
        async_io::block_on(self.await_fuel());
    }

    /// Blocks this thread until one fuel is taken, for at most `timeout`;
    /// returns whether it was taken.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Tank};
    /// use std::time::Duration;
    ///
    /// let tank = Tank::new(Rate::per_second(1000)?);
    /// assert!(tank.blocking_await_fuel_timeout(Duration::from_millis(100)));
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn blocking_await_fuel_timeout(&self, timeout: Duration) -> bool {
        async_io::block_on(self.await_fuel_timeout(timeout))
    }

    /// The fuel in the tank now, whoever it will go to: it counts fuel the
    /// task at the head of the line is about to get, so it may be positive
    /// while [`has_fuel`](Tank::has_fuel) says no ([`available`](Budget::available)
    /// is what `has_fuel` could take).
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Tank};
    ///
    /// let tank = Tank::builder(Rate::per_minute(60)?).initial(3).build()?;
    /// assert_eq!(tank.level(), 3);
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn level(&self) -> u64 {
        self.shared.level()
    }

    /// How early the tank arms its timer before a waiter's fuel is due, now:
    /// measured by calibration (and, under [`Hardcap::One`], following the
    /// timer since; see [`TankBuilder::auto_calibrate`]) or given with
    /// [`TankBuilder::timer_correction`]; zero if neither.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Tank};
    /// use std::time::Duration;
    ///
    /// let slow = Tank::new(Rate::per_second(10)?); // below 49/s: none
    /// assert_eq!(slow.timer_correction(), Duration::ZERO);
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn timer_correction(&self) -> Duration {
        Duration::from_nanos(self.shared.correction())
    }

    /// The number of tasks waiting in line.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Tank};
    ///
    /// let tank = Tank::new(Rate::per_second(10)?);
    /// assert_eq!(tank.waiting(), 0);
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn waiting(&self) -> usize {
        self.shared.waiting()
    }

    /// The current rate (the first, of a tank with
    /// [`also`](TankBuilder::also)).
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Tank};
    ///
    /// let tank = Tank::new("5/s".parse()?);
    /// assert_eq!(tank.rate().to_string(), "5/s");
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn rate(&self) -> Rate {
        self.shared.rate()
    }

    /// The hardcap the tank was built with.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Hardcap, Rate, Tank};
    ///
    /// assert_eq!(Tank::new(Rate::per_second(1)?).hardcap(), Hardcap::Limit);
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn hardcap(&self) -> Hardcap {
        self.shared.hardcap()
    }

    /// Changes the rate, at once and without a burst: the fuel in the tank
    /// (with its fraction of the next one) is kept, capped to the new
    /// capacity, and refills at the new rate from now on. Under
    /// [`Hardcap::Window`] the grants of the last `per` still count: every
    /// window of the new `per` that ends after the change holds at most
    /// the new `max_n`. Waiters asking for more than the new capacity get
    /// [`Error::ExceedsCapacity`]. On a
    /// tank with [`also`](TankBuilder::also) it changes the first rate;
    /// the others stay.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Tank};
    ///
    /// let tank = Tank::builder(Rate::per_second(10)?).initial(10).build()?;
    /// tank.set_rate(Rate::per_second(1000)?);
    /// assert_eq!(tank.level(), 10); // no burst up to 1000
    /// tank.set_rate(Rate::per_second(2)?);
    /// assert_eq!(tank.level(), 2); // capped to the new capacity
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn set_rate(&self, rate: Rate) {
        let _ = self.shared.set_rate(rate);
    }

    /// As [`set_rate`](Tank::set_rate), saying whether the rate was
    /// taken: a shared tank ([`TankBuilder::shared_memory`]) changes the
    /// rate for every process, and refuses a rate whose bucket does not fit
    /// shared memory (see there); an in-process tank takes any rate.
    ///
    /// # Errors
    ///
    /// [`Error::Unsupported`] for such a rate on a shared tank; the rate is
    /// then unchanged.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Tank};
    ///
    /// let tank = Tank::new(Rate::per_second(10)?);
    /// tank.try_set_rate(Rate::per_second(20)?)?;
    /// assert_eq!(tank.rate(), Rate::per_second(20)?);
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn try_set_rate(&self, rate: Rate) -> Result<(), Error> {
        self.shared.set_rate(rate)
    }

    /// Stops the refill. Fuel already in the tank can still be taken;
    /// waiters wait until [`resume`](Tank::resume). Calling it again while
    /// paused does nothing. How it differs from [`Throttle::stop`](crate::Throttle::stop): see
    /// [Pausing and stopping](crate#pausing-and-stopping).
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Tank, clock::ManualClock};
    /// use std::time::Duration;
    ///
    /// let clock = ManualClock::new();
    /// let tank = Tank::builder(Rate::per_second(1)?).initial(0).clock(clock.clone()).build()?;
    /// tank.pause();
    /// clock.advance(Duration::from_secs(5));
    /// assert_eq!(tank.level(), 0);
    /// tank.resume();
    /// clock.advance(Duration::from_secs(1));
    /// assert_eq!(tank.level(), 1);
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn pause(&self) {
        self.shared.pause();
    }

    /// Whether the refill is paused: by [`pause`](Tank::pause) (or
    /// [`Throttle::stop`](crate::Throttle::stop)), and for a shared tank
    /// ([`TankBuilder::shared_memory`]) by any process sharing it.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Tank};
    ///
    /// let tank = Tank::new(Rate::per_second(10)?);
    /// assert!(!tank.is_paused());
    /// tank.pause();
    /// assert!(tank.is_paused());
    /// tank.resume();
    /// assert!(!tank.is_paused());
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn is_paused(&self) -> bool {
        self.shared.is_paused()
    }

    /// Restarts the refill where [`pause`](Tank::pause) stopped it: the
    /// paused time counts for nothing (see
    /// [Pausing and stopping](crate#pausing-and-stopping)).
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Tank};
    ///
    /// let tank = Tank::new(Rate::per_second(10)?);
    /// tank.pause();
    /// tank.resume();
    /// assert!(tank.has_fuel());
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn resume(&self) {
        self.shared.resume();
    }
}

/// A tank's fuel through the one interface: taken now as [`Fuel`] to give
/// back, waited for in the tank's line (on its timer), and described.
impl Budget for Tank {
    /// Takes `n` fuel together now as [`Fuel`], which can be given back
    /// (whole or in part) with [`give_back`](Budget::give_back); dropped, it
    /// is spent. `None` if there is not that much, if tasks are waiting
    /// (never overtaken), or if `n` is beyond the capacity.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Budget, Rate, Tank};
    ///
    /// let tank = Tank::builder(Rate::per_second(10)?).initial(2).build()?;
    /// let fuel = tank.try_take(2).unwrap();
    /// assert!(tank.try_take(1).is_none());
    /// tank.give_back(fuel);
    /// assert!(tank.try_take(1).is_some());
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    #[inline]
    fn try_take(&self, n: u64) -> Option<Fuel> {
        let stamp = self.shared.take_stamped(n)?;
        Some(Fuel::new(&self.shared, stamp, n))
    }

    /// [`has_fuel_n`](Tank::has_fuel_n): it keeps no record to give the
    /// fuel back by.
    #[inline]
    fn take(&self, n: u64) -> bool {
        self.has_fuel_n(n)
    }

    fn wait(&self, n: u64, max_wait: Option<Duration>) -> BudgetWait {
        Box::pin(Tank::wait(self, n, max_wait, None))
    }

    /// Gives back [`Fuel`] taken from this tank and never spent: to the head
    /// of the line if anyone waits, else to the tank (up to its capacity),
    /// exactly as far as it could not have run into the cap since (see
    /// [`Fuel`]). Fuel from another tank is spent instead, never counted
    /// twice.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Budget, Rate, Tank};
    ///
    /// let tank = Tank::builder(Rate::per_second(1)?).initial(1).build()?;
    /// let fuel = tank.try_take(1).unwrap();
    /// tank.give_back(fuel);
    /// assert_eq!(tank.level(), 1);
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    fn give_back(&self, fuel: Fuel) {
        if fuel.tank_id() == Some(self.shared.id) && fuel.amount() > 0 {
            self.shared.refund(fuel.amount(), fuel.stamp);
        }
    }

    /// How long a newcomer asking for `n` fuel would wait now, counting the
    /// line ahead: zero if it would be served at once (always for `n = 0`,
    /// as [`has_fuel_n`](Tank::has_fuel_n)). `None` if `n` can never fit,
    /// or while the tank is paused.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Budget, Rate, Tank, clock::ManualClock};
    /// use std::time::Duration;
    ///
    /// let clock = ManualClock::new();
    /// let tank = Tank::builder(Rate::per_second(4)?).clock(clock).build()?;
    /// assert_eq!(tank.wait_time(1), Some(Duration::ZERO));
    /// assert!(tank.has_fuel());
    /// assert_eq!(tank.wait_time(1), Some(Duration::from_millis(250)));
    /// assert_eq!(tank.wait_time(5), None);
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    fn wait_time(&self, n: u64) -> Option<Duration> {
        self.shared.wait_for(n).map(Duration::from_nanos)
    }

    fn rate(&self) -> Rate {
        Tank::rate(self)
    }

    /// Every rate of the tank, the first ([`rate`](Tank::rate)) first,
    /// then those of [`also`](TankBuilder::also), each with the fuel
    /// [`has_fuel`](Tank::has_fuel) could take under it now (0 while tasks
    /// wait): the tightest is the one with the least.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Budget, Rate, Tank};
    ///
    /// let (second, minute): (Rate, Rate) = ("5/s".parse()?, "100/min".parse()?);
    /// let tank = Tank::builder(second).also(minute).initial(3).build()?;
    /// assert!(tank.has_fuel());
    /// assert_eq!(tank.rates(), vec![(second, 2), (minute, 2)]);
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    fn rates(&self) -> Vec<(Rate, u64)> {
        self.shared.rates()
    }

    /// The fuel [`has_fuel`](Tank::has_fuel) could take now: the
    /// [`level`](Tank::level) while nobody waits in line, and 0 while tasks
    /// wait (`has_fuel` never overtakes them).
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Budget, Rate, Tank};
    /// use std::pin::pin;
    /// use std::task::{Context, Waker};
    ///
    /// let tank = Tank::builder(Rate::per_second(10)?).initial(3).build()?;
    /// assert_eq!(tank.available(), 3);
    /// // A waiter for 5 holds the line: the 3 are not for newcomers.
    /// let mut big = pin!(tank.await_fuel_n(5));
    /// let _ = big.as_mut().poll(&mut Context::from_waker(Waker::noop()));
    /// assert_eq!(tank.level(), 3);
    /// assert_eq!(tank.available(), 0);
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    fn available(&self) -> u64 {
        self.shared.available()
    }

    fn capacity(&self) -> u64 {
        self.shared.request_cap()
    }
}

impl fmt::Debug for Tank {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tank")
            .field("rate", &self.rate())
            .field("hardcap", &self.hardcap())
            .field("level", &self.level())
            .field("waiting", &self.waiting())
            .finish()
    }
}

/// What a [`TankBuilder`] asks for.
struct Options {
    rate: Rate,
    also: Vec<Rate>,
    hardcap: Hardcap,
    burst: Option<u64>,
    initial: Option<u64>,
    correction: Duration,
    /// The correction was measured: it follows the timer from then on.
    adapts: bool,
    clock: ClockSource,
    #[cfg(feature = "shared-memory")]
    shared_memory: Option<crate::SharedMemory>,
}

/// Builds the shared state; used by [`TankBuilder`].
fn build(options: Options) -> Result<Tank, Error> {
    let Options {
        rate,
        also,
        hardcap,
        burst,
        initial,
        correction,
        adapts,
        clock,
        #[cfg(feature = "shared-memory")]
        shared_memory,
    } = options;
    hardcap.check_burst(burst)?;
    // Every rate's capacity bounds the initial fuel (each rate of `also`
    // starts full under `Window` by default, with its own `max_n`).
    let also_cap = also
        .iter()
        .map(|r| hardcap.request_capacity(r.max_n(), None));
    let capacity = also_cap.fold(hardcap.request_capacity(rate.max_n(), burst), u64::min);
    let full = match hardcap {
        Hardcap::Window => rate.max_n(),
        _ => 1,
    };
    if let Some(initial) = initial.or(Some(full).filter(|_| also.is_empty()))
        && initial > capacity
    {
        return Err(Error::InitialOverCapacity { initial, capacity });
    }
    let correction = saturating_ns(correction);
    #[cfg(feature = "shared-memory")]
    if let Some(name) = shared_memory {
        if !also.is_empty() {
            return Err(Error::Unsupported {
                what: "also(rate) in shared memory (its one shared word holds one rate's \
                       state, and a grant from several could not be one compare-and-swap)",
                accepted: "a shared-memory tank must have one rate (build it without \
                           also); several rates work in a tank of one process",
            });
        }
        let initial = initial.unwrap_or(full);
        let host = host::HostBucket::open(&name, rate, hardcap, burst, initial, &clock)?;
        let bucket = bucket::Bucket::Host(Arc::new(host));
        // (Its correction never follows the timer: see `Line::follow_timer`.)
        return Ok(Tank::from_shared(Line::with_bucket(
            rate,
            Vec::new(),
            hardcap,
            burst,
            bucket,
            correction,
            ClockSource::Host,
        )));
    }
    let shared = Line::new(rate, &also, hardcap, burst, initial, correction, clock);
    if adapts {
        shared.follow_timer();
    }
    Ok(Tank::from_shared(shared))
}
