//! [`Throttle`]: a tank and a monitor configured together.

mod builder;

use std::time::{Duration, Instant};

pub use builder::ThrottleBuilder;

use crate::{AwaitFuel, Error, Monitor, Rate, Snapshots, Stat, Summary, Tank};

/// A [`Tank`] and a [`Monitor`] configured together: the fuel methods of
/// the one, the statistics of the other, and each fuel taken counted as an
/// emission (`auto_emit`).
///
/// A cheap handle: clones share the tank and the monitor. Built with
/// [`Throttle::builder`]. Without a tank
/// ([`as_throttle(false)`](ThrottleBuilder::as_throttle)) fuel is
/// unlimited; without a monitor
/// ([`as_monitor(false)`](ThrottleBuilder::as_monitor)) every statistic is
/// `None`.
///
/// # Examples
///
/// ```
/// use fueltank::{Rate, Throttle};
///
/// # futures::executor::block_on(async {
/// let throttle = Throttle::builder("1000/s".parse::<Rate>()?).build()?;
/// for _ in 0..5 {
///     throttle.await_fuel().await; // counted by the monitor too
/// }
/// assert_eq!(throttle.total(), 5);
/// let summary = throttle.stop();
/// assert_eq!(summary.total, 5);
/// # Ok::<(), fueltank::Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct Throttle {
    tank: Option<Tank>,
    monitor: Option<Monitor>,
    rate: Rate,
    auto_emit: bool,
    correction: Option<Duration>,
}

impl Throttle {
    /// A builder for the throttle's options; see [`ThrottleBuilder`].
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Hardcap, Rate, Throttle};
    /// use std::time::Duration;
    ///
    /// let throttle = Throttle::builder(Rate::per_second(100)?)
    ///     .hardcap(Hardcap::Limit)
    ///     .auto_emit(true)
    ///     .refresh(Duration::from_millis(10))
    ///     .as_throttle(true)
    ///     .as_monitor(true)
    ///     .auto_calibrate(true)
    ///     .build()?;
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn builder(rate: Rate) -> ThrottleBuilder {
        ThrottleBuilder::new(rate)
    }

    /// A throttle over `tank`, with no monitor.
    pub(crate) fn of_tank(tank: Tank) -> Throttle {
        Throttle {
            rate: tank.rate(),
            tank: Some(tank),
            monitor: None,
            auto_emit: false,
            correction: None,
        }
    }

    /// The emit-on-take rule for a wait: for `n` on the tank (granted at
    /// once without one), for at most `max_wait` if given, and with
    /// `auto_emit` the emission of the fuel it takes.
    #[inline]
    pub(crate) fn wait<T>(&self, n: u64, max_wait: Option<Duration>) -> AwaitFuel<T> {
        let emit = self.monitor.clone().filter(|_| self.auto_emit);
        match &self.tank {
            Some(tank) => tank.wait(n, max_wait, emit),
            None => AwaitFuel::unlimited(n, emit),
        }
    }

    /// This throttle without the emit-on-take rule: for a combination
    /// that may give the fuel back, and emits once it keeps it.
    pub(crate) fn quiet(&self) -> Throttle {
        Throttle {
            auto_emit: false,
            ..self.clone()
        }
    }

    /// The emit-on-take rule for a take now.
    pub(crate) fn emitted(&self, taken: bool, n: u64) -> bool {
        if taken
            && self.auto_emit
            && let Some(monitor) = &self.monitor
        {
            monitor.emit_n(n);
        }
        taken
    }

    /// Takes one fuel now and returns `true`, or returns `false`; see
    /// [`Tank::has_fuel`]. Always `true` without a tank.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Throttle};
    ///
    /// let throttle = Throttle::builder(Rate::per_second(2)?).initial(2).build()?;
    /// assert!(throttle.has_fuel());
    /// assert!(throttle.has_fuel());
    /// assert!(!throttle.has_fuel());
    /// assert_eq!(throttle.total(), 2);
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn has_fuel(&self) -> bool {
        let taken = self.tank.as_ref().is_none_or(Tank::has_fuel);
        self.emitted(taken, 1)
    }

    /// Takes `n` fuel together now, or none; see [`Tank::has_fuel_n`].
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Throttle};
    ///
    /// let throttle = Throttle::builder(Rate::per_second(5)?).initial(5).build()?;
    /// assert!(throttle.has_fuel_n(3));
    /// assert!(!throttle.has_fuel_n(3));
    /// assert_eq!(throttle.total(), 3);
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn has_fuel_n(&self, n: u64) -> bool {
        let taken = self.tank.as_ref().is_none_or(|tank| tank.has_fuel_n(n));
        self.emitted(taken, n)
    }

    /// Waits in line for one fuel and takes it; see [`Tank::await_fuel`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future loses no fuel and stalls no one,
    /// and nothing is emitted for it.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Throttle};
    ///
    /// # futures::executor::block_on(async {
    /// let throttle = Throttle::builder(Rate::per_second(1000)?).build()?;
    /// throttle.await_fuel().await;
    /// assert_eq!(throttle.total(), 1);
    /// # Ok::<(), fueltank::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn await_fuel(&self) -> AwaitFuel {
        self.wait(1, None)
    }

    /// Waits in line for `n` fuel and takes them together; see
    /// [`Tank::await_fuel_n`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`await_fuel`](Throttle::await_fuel).
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Throttle};
    ///
    /// # futures::executor::block_on(async {
    /// let throttle = Throttle::builder(Rate::per_second(1000)?).initial(4).build()?;
    /// throttle.await_fuel_n(4).await?;
    /// assert_eq!(throttle.total(), 4);
    /// # Ok::<(), fueltank::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn await_fuel_n(&self, n: u64) -> AwaitFuel<Result<(), Error>> {
        self.wait(n, None)
    }

    /// Waits in line for one fuel for at most `timeout`; see
    /// [`Tank::await_fuel_timeout`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`await_fuel`](Throttle::await_fuel).
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Throttle};
    /// use std::time::Duration;
    ///
    /// # futures::executor::block_on(async {
    /// let throttle = Throttle::builder(Rate::per_second(1)?).initial(0).build()?;
    /// assert!(!throttle.await_fuel_timeout(Duration::from_millis(1)).await);
    /// assert_eq!(throttle.total(), 0);
    /// # Ok::<(), fueltank::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn await_fuel_timeout(&self, timeout: Duration) -> AwaitFuel<bool> {
        self.wait(1, Some(timeout))
    }

    /// Blocks this thread until one fuel is taken; for plain threads.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Throttle};
    ///
    /// let throttle = Throttle::builder(Rate::per_second(1000)?).build()?;
    /// std::thread::scope(|s| {
    ///     for _ in 0..4 {
    ///         s.spawn(|| throttle.blocking_await_fuel());
    ///     }
    /// });
    /// assert_eq!(throttle.total(), 4);
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
    /// use fueltank::{Rate, Throttle};
    /// use std::time::Duration;
    ///
    /// let throttle = Throttle::builder(Rate::per_second(1000)?).build()?;
    /// assert!(throttle.blocking_await_fuel_timeout(Duration::from_millis(100)));
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn blocking_await_fuel_timeout(&self, timeout: Duration) -> bool {
        async_io::block_on(self.await_fuel_timeout(timeout))
    }

    /// The fuel in the tank now; `u64::MAX` without a tank.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Throttle};
    ///
    /// let throttle = Throttle::builder(Rate::per_second(10)?).initial(3).build()?;
    /// assert_eq!(throttle.level(), 3);
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn level(&self) -> u64 {
        self.tank.as_ref().map_or(u64::MAX, Tank::level)
    }

    /// The tank's rate (the rate built with, without a tank).
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Throttle};
    ///
    /// let throttle = Throttle::builder("5/s".parse()?).build()?;
    /// assert_eq!(throttle.rate().to_string(), "5/s");
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn rate(&self) -> Rate {
        self.tank.as_ref().map_or(self.rate, Tank::rate)
    }

    /// Changes the tank's rate at once, without a burst; see
    /// [`Tank::set_rate`]. Does nothing without a tank. The timer
    /// correction stays as built.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Throttle};
    ///
    /// let throttle = Throttle::builder(Rate::per_second(5)?).build()?;
    /// throttle.set_rate(Rate::per_second(50)?);
    /// assert_eq!(throttle.rate(), Rate::per_second(50)?);
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn set_rate(&self, rate: Rate) {
        if let Some(tank) = &self.tank {
            tank.set_rate(rate);
        }
    }

    /// Reports one emission now, when built with `auto_emit(false)`.
    ///
    /// # Errors
    ///
    /// [`Error::AutoEmitOn`] while `auto_emit` is on: every fuel taken is
    /// already counted. Without a monitor it does nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Error, Rate, Throttle};
    ///
    /// let auto = Throttle::builder(Rate::per_second(5)?).build()?;
    /// assert_eq!(auto.emit(), Err(Error::AutoEmitOn));
    /// let by_hand = Throttle::builder(Rate::per_second(5)?).auto_emit(false).build()?;
    /// by_hand.emit()?;
    /// assert_eq!(by_hand.total(), 1);
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn emit(&self) -> Result<(), Error> {
        self.check_emit()?;
        if let Some(monitor) = &self.monitor {
            monitor.emit();
        }
        Ok(())
    }

    /// Reports one emission that happened at `at`, when built with
    /// `auto_emit(false)`; see [`Monitor::emit_at`].
    ///
    /// # Errors
    ///
    /// [`Error::AutoEmitOn`] while `auto_emit` is on.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Throttle};
    /// use std::time::Instant;
    ///
    /// let throttle = Throttle::builder(Rate::per_second(5)?).auto_emit(false).build()?;
    /// throttle.emit_at(Instant::now())?;
    /// assert_eq!(throttle.total(), 1);
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn emit_at(&self, at: Instant) -> Result<(), Error> {
        self.check_emit()?;
        if let Some(monitor) = &self.monitor {
            monitor.emit_at(at);
        }
        Ok(())
    }

    fn check_emit(&self) -> Result<(), Error> {
        if self.auto_emit {
            Err(Error::AutoEmitOn)
        } else {
            Ok(())
        }
    }

    /// Every emission counted so far; 0 without a monitor.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Throttle};
    ///
    /// let throttle = Throttle::builder(Rate::per_second(5)?).build()?;
    /// throttle.has_fuel();
    /// assert_eq!(throttle.total(), 1);
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn total(&self) -> u64 {
        self.monitor.as_ref().map_or(0, Monitor::total)
    }

    /// See [`Monitor::mean`]; `None` without a monitor.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Throttle, clock::ManualClock};
    /// use std::time::Duration;
    ///
    /// let clock = ManualClock::new();
    /// let throttle = Throttle::builder(Rate::per_second(5)?).clock(clock.clone()).build()?;
    /// throttle.has_fuel();
    /// clock.advance(Duration::from_secs(2));
    /// assert_eq!(throttle.mean().unwrap().per_second, 0.5);
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn mean(&self) -> Option<Stat> {
        self.monitor.as_ref()?.mean()
    }

    /// See [`Monitor::latest`]; `None` without a monitor.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Throttle};
    ///
    /// let throttle = Throttle::builder(Rate::per_second(5)?).as_monitor(false).build()?;
    /// throttle.has_fuel();
    /// assert!(throttle.latest().is_none());
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn latest(&self) -> Option<Stat> {
        self.monitor.as_ref()?.latest()
    }

    /// See [`Monitor::lo_hi`]; `None` without a monitor.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Throttle, clock::ManualClock};
    /// use std::time::Duration;
    ///
    /// let clock = ManualClock::new();
    /// let throttle = Throttle::builder(Rate::per_second(10)?).clock(clock.clone()).build()?;
    /// throttle.has_fuel();
    /// clock.advance(Duration::from_millis(100));
    /// throttle.has_fuel();
    /// assert_eq!(throttle.lo_hi().unwrap().per_second, 10.0);
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn lo_hi(&self) -> Option<Stat> {
        self.monitor.as_ref()?.lo_hi()
    }

    /// See [`Monitor::hi_lo`]; `None` without a monitor.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Throttle};
    ///
    /// let throttle = Throttle::builder(Rate::per_second(5)?).build()?;
    /// assert!(throttle.hi_lo().is_none()); // no gap yet
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn hi_lo(&self) -> Option<Stat> {
        self.monitor.as_ref()?.hi_lo()
    }

    /// A stream of [`Snapshot`](crate::Snapshot)s, one per refresh; see
    /// [`Monitor::snapshots`]. Without a monitor, it ends at once.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`Monitor::snapshots`].
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Throttle};
    /// use futures::StreamExt;
    ///
    /// let throttle = Throttle::builder(Rate::per_second(5)?).as_monitor(false).build()?;
    /// assert!(futures::executor::block_on(throttle.snapshots().next()).is_none());
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn snapshots(&self) -> Snapshots {
        self.monitor
            .as_ref()
            .map_or_else(Snapshots::empty, Monitor::snapshots)
    }

    /// Pauses both the tank (no refill) and the monitor (no running time),
    /// and returns the monitor's [`Summary`] (all zero without a monitor);
    /// how it differs from [`Tank::pause`]: see
    /// [Pausing and stopping](crate#pausing-and-stopping).
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Throttle, clock::ManualClock};
    /// use std::time::Duration;
    ///
    /// let clock = ManualClock::new();
    /// let throttle = Throttle::builder(Rate::per_second(10)?).clock(clock.clone()).build()?;
    /// throttle.has_fuel();
    /// clock.advance(Duration::from_secs(1));
    /// let summary = throttle.stop();
    /// assert_eq!((summary.runtime, summary.total), (Duration::from_secs(1), 1));
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn stop(&self) -> Summary {
        if let Some(tank) = &self.tank {
            tank.pause();
        }
        let summary = self
            .monitor
            .as_ref()
            .map_or_else(Summary::default, Monitor::stop);
        self.monitor_follows_tank();
        summary
    }

    /// Resumes both after [`stop`](Throttle::stop): refill and statistics
    /// carry on, the stopped time counting for nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Throttle, clock::ManualClock};
    /// use std::time::Duration;
    ///
    /// let clock = ManualClock::new();
    /// let throttle = Throttle::builder(Rate::per_second(1)?).initial(0).clock(clock.clone()).build()?;
    /// throttle.stop();
    /// clock.advance(Duration::from_secs(10));
    /// assert_eq!(throttle.level(), 0);
    /// throttle.start();
    /// clock.advance(Duration::from_secs(1));
    /// assert_eq!(throttle.level(), 1);
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn start(&self) {
        if let Some(tank) = &self.tank {
            tank.resume();
        }
        if let Some(monitor) = &self.monitor {
            monitor.start();
        }
        self.monitor_follows_tank();
    }

    /// Stops or starts the monitor as the tank stands, until both agree.
    ///
    /// A `stop` and a `start` from two threads (or processes, in shared
    /// memory) at once each switch the tank, then the monitor: one could
    /// land between the other's two switches and leave a running tank
    /// with a stopped monitor, or the reverse. The tank's state is the
    /// one the last switch left; each call ends by making the monitor
    /// agree with it, re-reading both after its own switch, so whichever
    /// call reads last leaves them agreeing.
    fn monitor_follows_tank(&self) {
        let (Some(tank), Some(monitor)) = (&self.tank, &self.monitor) else {
            return;
        };
        loop {
            let paused = tank.is_paused();
            if paused == monitor.is_stopped() {
                return;
            }
            if paused {
                monitor.stop();
            } else {
                monitor.start();
            }
        }
    }

    /// Whether the throttle is stopped ([`stop`](Throttle::stop)): its tank
    /// paused, or without a tank, its monitor stopped; `false` with
    /// neither. A throttle in shared memory
    /// ([`ThrottleBuilder::shared_memory`]) reads the shared state, so a
    /// worker process sees another process's `stop` (and `start`): the
    /// way out of a worker's loop, e.g. after
    /// [`blocking_await_fuel_timeout`](Throttle::blocking_await_fuel_timeout)
    /// returns `false`.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Throttle};
    /// use std::time::Duration;
    ///
    /// let throttle = Throttle::builder(Rate::per_second(1000)?).build()?;
    /// let worker = throttle.clone(); // or another process's throttle
    /// throttle.stop();
    /// while !worker.is_stopped() {
    ///     worker.blocking_await_fuel_timeout(Duration::from_millis(100));
    /// }
    /// throttle.start();
    /// assert!(!worker.is_stopped());
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn is_stopped(&self) -> bool {
        match (&self.tank, &self.monitor) {
            (Some(tank), _) => tank.is_paused(),
            (None, Some(monitor)) => monitor.is_stopped(),
            (None, None) => false,
        }
    }

    /// Removes the files of the shared throttle `name` names (see
    /// [`ThrottleBuilder::shared_memory`]): its tank's
    /// ([`Tank::remove_shared_memory`]) and its monitor's
    /// ([`Monitor::remove_shared_memory`]), so that the next build starts
    /// anew. `Ok(true)` if either was there and is removed.
    ///
    /// # Errors
    ///
    /// As for [`Tank::remove_shared_memory`], for either file: one that a
    /// process still uses stays (the other is still removed if it can be).
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Throttle};
    ///
    /// let name = format!("doc-throttle-{}", std::process::id());
    /// let throttle = Throttle::builder(Rate::per_second(10)?).shared_memory(&name).build()?;
    /// drop(throttle);
    /// assert!(Throttle::remove_shared_memory(&name)?);
    /// assert!(!Throttle::remove_shared_memory(&name)?); // already gone
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    #[cfg(feature = "shared-memory")]
    #[cfg_attr(docsrs, doc(cfg(feature = "shared-memory")))]
    pub fn remove_shared_memory(name: impl Into<crate::SharedMemory>) -> Result<bool, Error> {
        let name = name.into();
        let tank = Tank::remove_shared_memory(name.clone());
        let monitor = Monitor::remove_shared_memory(name);
        Ok(tank? | monitor?)
    }

    /// The tank, unless built with `as_throttle(false)`.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Throttle};
    ///
    /// let throttle = Throttle::builder(Rate::per_second(5)?).build()?;
    /// assert_eq!(throttle.tank().unwrap().level(), 1);
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn tank(&self) -> Option<&Tank> {
        self.tank.as_ref()
    }

    /// The monitor, unless built with `as_monitor(false)`.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Throttle};
    ///
    /// let throttle = Throttle::builder(Rate::per_second(5)?).build()?;
    /// throttle.has_fuel();
    /// assert_eq!(throttle.monitor().unwrap().total(), 1);
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn monitor(&self) -> Option<&Monitor> {
        self.monitor.as_ref()
    }

    /// Whether each fuel taken is emitted.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Throttle};
    ///
    /// let throttle = Throttle::builder(Rate::per_second(5)?).build()?;
    /// assert!(throttle.auto_emits());
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn auto_emits(&self) -> bool {
        self.auto_emit
    }

    /// The timer correction the tank was built with: measured by
    /// [`auto_calibrate`](ThrottleBuilder::auto_calibrate) or given with
    /// [`timer_correction`](ThrottleBuilder::timer_correction); `None` if neither.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Throttle};
    ///
    /// let slow = Throttle::builder(Rate::per_second(10)?).build()?;
    /// assert_eq!(slow.timer_correction(), None); // below 49/s: not calibrated
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn timer_correction(&self) -> Option<Duration> {
        self.correction
    }
}
