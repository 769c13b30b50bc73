//! [`ThrottleBuilder`].

use std::time::Duration;

use super::Throttle;
use crate::calibrate::calibrates_by_default;
use crate::clock::{Clock, ClockSource};
use crate::{Error, Hardcap, MonitorBuilder, Rate, Tank, TankBuilder};

/// Configures a [`Throttle`]: its tank (a [`TankBuilder`]'s options), its
/// monitor (a [`MonitorBuilder`]'s), and how they work together.
///
/// | option | default |
/// |---|---|
/// | [`hardcap`](ThrottleBuilder::hardcap) | [`Hardcap::Limit`] |
/// | [`auto_emit`](ThrottleBuilder::auto_emit) | on |
/// | [`refresh`](ThrottleBuilder::refresh) | 10 ms |
/// | [`window`](ThrottleBuilder::window) | 1 s |
/// | [`as_throttle`](ThrottleBuilder::as_throttle), [`as_monitor`](ThrottleBuilder::as_monitor) | on |
/// | [`auto_calibrate`](ThrottleBuilder::auto_calibrate) | on at 49/s and above |
/// | [`timer_correction`](ThrottleBuilder::timer_correction) | measured, or none |
/// | [`clock`](ThrottleBuilder::clock) | [`MonotonicClock`](crate::clock::MonotonicClock) |
///
/// # Examples
///
/// ```
/// use fueltank::{Hardcap, Rate, Throttle};
/// use std::time::Duration;
///
/// let throttle = Throttle::builder(Rate::per_second(100)?)
///     .hardcap(Hardcap::One)
///     .refresh(Duration::from_millis(100))
///     .build()?;
/// assert!(throttle.has_fuel());
/// assert_eq!(throttle.total(), 1); // auto_emit
/// # Ok::<(), fueltank::Error>(())
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until built"]
pub struct ThrottleBuilder {
    tank: TankBuilder,
    monitor: MonitorBuilder,
    auto_emit: bool,
    as_throttle: bool,
    as_monitor: bool,
}

impl ThrottleBuilder {
    pub(crate) fn new(rate: Rate) -> ThrottleBuilder {
        ThrottleBuilder {
            tank: Tank::builder(rate),
            monitor: MonitorBuilder::new(),
            auto_emit: true,
            as_throttle: true,
            as_monitor: true,
        }
    }

    /// How much fuel may bank up; [`Hardcap::Limit`] by default.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Hardcap, Rate, Throttle};
    ///
    /// let throttle = Throttle::builder(Rate::per_second(5)?).hardcap(Hardcap::Window).build()?;
    /// assert_eq!(throttle.tank().unwrap().hardcap(), Hardcap::Window);
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn hardcap(mut self, hardcap: Hardcap) -> ThrottleBuilder {
        self.tank = self.tank.hardcap(hardcap);
        self
    }

    /// Another rate the tank keeps beside its own, every grant taking
    /// from all of them or from none; see
    /// [`TankBuilder::also`](crate::TankBuilder::also).
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Throttle};
    ///
    /// let throttle = Throttle::builder("5/s".parse()?).also("2/s".parse()?).initial(2).build()?;
    /// assert!(throttle.has_fuel_n(2));
    /// assert!(!throttle.has_fuel()); // 2/s holds no more
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn also(mut self, rate: Rate) -> ThrottleBuilder {
        self.tank = self.tank.also(rate);
        self
    }

    /// The capacity of a [`Hardcap::Limit`] tank, apart from `max_n`; see
    /// [`TankBuilder::burst`](crate::TankBuilder::burst).
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Throttle};
    ///
    /// let throttle = Throttle::builder("5/s".parse()?).burst(20).initial(20).build()?;
    /// assert!(throttle.has_fuel_n(20));
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn burst(mut self, n: u64) -> ThrottleBuilder {
        self.tank = self.tank.burst(n);
        self
    }

    /// The fuel in the tank when built, as
    /// [`TankBuilder::initial`](crate::TankBuilder::initial); 1 by default.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Throttle};
    ///
    /// let throttle = Throttle::builder(Rate::per_second(5)?).initial(0).build()?;
    /// assert!(!throttle.has_fuel());
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn initial(mut self, fuel: u64) -> ThrottleBuilder {
        self.tank = self.tank.initial(fuel);
        self
    }

    /// Whether each fuel taken is counted by the monitor as it is taken; on
    /// by default (also without a tank, where fuel is unlimited and each
    /// take still counts, as in `mp_throttle`). The emission is stamped when the task
    /// sees its fuel (when its `await_fuel` resolves), so under load its
    /// gaps include the task's wake-up jitter. Turn it off to report work yourself with
    /// [`Throttle::emit`] (for instance once it succeeded); while it is on,
    /// `emit` is an error (each fuel taken is counted already).
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Throttle};
    ///
    /// let throttle = Throttle::builder(Rate::per_second(5)?).auto_emit(false).build()?;
    /// assert!(throttle.has_fuel());
    /// assert_eq!(throttle.total(), 0);
    /// throttle.emit()?;
    /// assert_eq!(throttle.total(), 1);
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn auto_emit(mut self, on: bool) -> ThrottleBuilder {
        self.auto_emit = on;
        self
    }

    /// How often [`snapshots`](Throttle::snapshots) yields; 10 ms by
    /// default. Accepted: 1 µs to 365 days.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Throttle};
    /// use std::time::Duration;
    ///
    /// let err = Throttle::builder(Rate::per_second(5)?)
    ///     .refresh(Duration::ZERO)
    ///     .build()
    ///     .unwrap_err();
    /// assert!(err.to_string().starts_with("refresh of 0ns is not accepted"));
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn refresh(mut self, refresh: Duration) -> ThrottleBuilder {
        self.monitor = self.monitor.refresh(refresh);
        self
    }

    /// The trailing window of [`latest`](Throttle::latest); 1 s by default.
    /// Accepted: 1 µs to 365 days.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Throttle};
    /// use std::time::Duration;
    ///
    /// let throttle = Throttle::builder(Rate::per_second(5)?)
    ///     .window(Duration::from_secs(10))
    ///     .build()?;
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn window(mut self, window: Duration) -> ThrottleBuilder {
        self.monitor = self.monitor.window(window);
        self
    }

    /// Whether to throttle at all; on by default. Without a tank, fuel is
    /// unlimited: every fuel method succeeds at once.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Throttle};
    ///
    /// let monitor_only = Throttle::builder(Rate::per_second(1)?).as_throttle(false).build()?;
    /// assert!((0..100).all(|_| monitor_only.has_fuel()));
    /// assert!(monitor_only.tank().is_none());
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn as_throttle(mut self, on: bool) -> ThrottleBuilder {
        self.as_throttle = on;
        self
    }

    /// Whether to monitor at all; on by default. Without a monitor, every
    /// statistic is `None` (the total 0) and emissions go nowhere.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Throttle};
    ///
    /// let throttle_only = Throttle::builder(Rate::per_second(5)?).as_monitor(false).build()?;
    /// assert!(throttle_only.has_fuel());
    /// assert_eq!(throttle_only.total(), 0);
    /// assert!(throttle_only.mean().is_none());
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn as_monitor(mut self, on: bool) -> ThrottleBuilder {
        self.as_monitor = on;
        self
    }

    /// Whether to measure this system's timer lateness at build time and
    /// arm the tank's timer that much early (see
    /// [`timer_lateness`](crate::clock::timer_lateness)); on by default at 49/s
    /// and above. Measuring blocks `build` for about 5 ms (the first tank of
    /// each class of intervals in the process; later ones reuse the figure).
    ///
    /// The correction is the 90th percentile of the lateness (at most twice
    /// its median), at most half the tank's interval and at most 250 µs; it
    /// is what keeps [`Hardcap::One`] at its rate.
    /// Skipped with an explicit
    /// [`timer_correction`](ThrottleBuilder::timer_correction),
    /// without a tank, and on a
    /// [`ManualClock`](crate::clock::ManualClock), whose timers are exact.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Throttle};
    ///
    /// let throttle = Throttle::builder(Rate::per_second(1000)?).auto_calibrate(false).build()?;
    /// assert_eq!(throttle.timer_correction(), None);
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn auto_calibrate(mut self, on: bool) -> ThrottleBuilder {
        self.tank = self.tank.auto_calibrate(on);
        self
    }

    /// Arms the tank's timer `early` before each grant is due, and waits out
    /// the rest on the timer's thread, instead of measuring it; see
    /// [`TankBuilder::timer_correction`](crate::TankBuilder::timer_correction).
    /// Accepted: up to the rate's interval (`per / max_n`).
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Hardcap, Rate, Throttle};
    /// use std::time::Duration;
    ///
    /// let throttle = Throttle::builder(Rate::per_second(10_000)?)
    ///     .hardcap(Hardcap::One)
    ///     .timer_correction(Duration::from_micros(60))
    ///     .build()?;
    /// assert_eq!(throttle.timer_correction(), Some(Duration::from_micros(60)));
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn timer_correction(mut self, early: Duration) -> ThrottleBuilder {
        self.tank = self.tank.timer_correction(early);
        self
    }

    /// The clock of both the tank and the monitor; see
    /// [`TankBuilder::clock`](crate::TankBuilder::clock).
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Throttle, clock::ManualClock};
    /// use std::time::Duration;
    ///
    /// let clock = ManualClock::new();
    /// let throttle = Throttle::builder(Rate::per_second(10)?).clock(clock.clone()).build()?;
    /// assert!(throttle.has_fuel());
    /// assert!(!throttle.has_fuel());
    /// clock.advance(Duration::from_millis(100));
    /// assert!(throttle.has_fuel());
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn clock(mut self, clock: impl Clock) -> ThrottleBuilder {
        let clock = ClockSource::from_clock(clock);
        self.monitor = self.monitor.clock_source(clock.clone());
        self.tank = self.tank.clock_source(clock);
        self
    }

    /// Shares the throttle — its tank and its monitor both — with every
    /// process of this host that builds one of the same `name` (see
    /// [`TankBuilder::shared_memory`](crate::TankBuilder::shared_memory) and
    /// [`MonitorBuilder::shared_memory`](crate::MonitorBuilder::shared_memory):
    /// two files, `fueltank-NAME.tank` and `fueltank-NAME.monitor`, which
    /// [`SharedMemory`](crate::SharedMemory) says who may share; remove
    /// them with [`Throttle::remove_shared_memory`](crate::Throttle::remove_shared_memory),
    /// or one by one with [`Tank::remove_shared_memory`](crate::Tank::remove_shared_memory)
    /// and [`Monitor::remove_shared_memory`](crate::Monitor::remove_shared_memory)). With
    /// `auto_emit`, every fuel taken in any process is counted once, in the
    /// one monitor; any process reads the combined statistics;
    /// [`stop`](crate::Throttle::stop) and [`start`](crate::Throttle::start)
    /// pause and resume both for every process, and every process's
    /// [`is_stopped`](crate::Throttle::is_stopped) sees it: a worker's way
    /// out of its loop.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Throttle};
    ///
    /// let name = format!("doc-throttle-{}", std::process::id());
    /// let here = Throttle::builder(Rate::per_second(100)?).initial(2).shared_memory(&name).build()?;
    /// let there = Throttle::builder(Rate::per_second(100)?).shared_memory(&name).build()?;
    /// assert!(here.has_fuel());
    /// assert!(there.has_fuel());
    /// assert_eq!(here.total(), 2); // each process's take, in one monitor
    /// # drop((here, there));
    /// # fueltank::Tank::remove_shared_memory(&name)?;
    /// # fueltank::Monitor::remove_shared_memory(&name)?;
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    #[cfg(feature = "shared-memory")]
    #[cfg_attr(docsrs, doc(cfg(feature = "shared-memory")))]
    pub fn shared_memory(mut self, name: impl Into<crate::SharedMemory>) -> ThrottleBuilder {
        let name = name.into();
        self.monitor = self.monitor.shared_memory(name.clone());
        self.tank = self.tank.shared_memory(name);
        self
    }

    /// Builds the throttle: its tank and its monitor start now.
    ///
    /// # Errors
    ///
    /// - [`Error::InvalidDuration`] for a refresh or window outside
    ///   1 µs..=365 days, or a correction longer than the rate's interval;
    /// - [`Error::InitialOverCapacity`] for an `initial` the hardcap cannot
    ///   hold.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Error, Rate, Throttle};
    /// use std::time::Duration;
    ///
    /// let err = Throttle::builder(Rate::per_second(1000)?)
    ///     .timer_correction(Duration::from_millis(5))
    ///     .build()
    ///     .unwrap_err();
    /// assert!(matches!(err, Error::InvalidDuration { option: "correction", .. }));
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn build(self) -> Result<Throttle, Error> {
        // The checks that are the throttle's own, before either part is built.
        self.monitor.periods()?;
        let rate = self.tank.rate;
        let given = self.tank.correction;
        // Whether the tank's correction was measured or given: never on a
        // manual clock, whose timers are exact.
        let corrected = (given.is_some()
            || self
                .tank
                .auto_calibrate
                .unwrap_or_else(|| calibrates_by_default(rate)))
            && self.tank.clock.manual().is_none();
        let tank = self.as_throttle.then(|| self.tank.build()).transpose()?;
        let monitor = self.as_monitor.then(|| self.monitor.build()).transpose()?;
        Ok(Throttle {
            correction: tank
                .as_ref()
                .filter(|_| corrected)
                .map(Tank::timer_correction),
            auto_emit: self.auto_emit && monitor.is_some(),
            tank,
            monitor,
            rate,
        })
    }
}
