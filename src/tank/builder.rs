//! [`TankBuilder`].

use std::time::Duration;

use crate::clock::{Clock, ClockSource};
use crate::{Error, Hardcap, Rate, Tank};

/// Chooses the hardcap, the initial fuel and the clock of a [`Tank`].
///
/// # Examples
///
/// ```
/// use fueltank::{Hardcap, Rate, Tank, clock::ManualClock};
///
/// let tank = Tank::builder(Rate::per_second(100)?)
///     .hardcap(Hardcap::Window)
///     .clock(ManualClock::new())
///     .build()?;
/// assert_eq!(tank.level(), 100); // a Window starts empty: max_n at once
/// # Ok::<(), fueltank::Error>(())
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until built"]
pub struct TankBuilder {
    rate: Rate,
    hardcap: Hardcap,
    initial: Option<u64>,
    correction: Duration,
    clock: ClockSource,
}

impl TankBuilder {
    pub(crate) fn new(rate: Rate) -> TankBuilder {
        TankBuilder {
            rate,
            hardcap: Hardcap::default(),
            initial: None,
            correction: Duration::ZERO,
            clock: ClockSource::default(),
        }
    }

    /// How much fuel may bank up; [`Hardcap::Limit`] by default.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Hardcap, Rate, Tank};
    ///
    /// let tank = Tank::builder(Rate::per_second(10)?).hardcap(Hardcap::One).build()?;
    /// assert_eq!(tank.hardcap(), Hardcap::One);
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn hardcap(mut self, hardcap: Hardcap) -> TankBuilder {
        self.hardcap = hardcap;
        self
    }

    /// The fuel in the tank when it is built.
    ///
    /// By default 1: the first fuel is there at once, then one per interval,
    /// with no start-up burst. `initial(max_n)` starts full, `initial(0)`
    /// empty. A [`Hardcap::Window`] starts with its window empty (`max_n`);
    /// a smaller `initial` counts the difference as granted at build time.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Tank};
    ///
    /// let tank = Tank::builder(Rate::per_second(10)?).initial(0).build()?;
    /// assert!(!tank.has_fuel());
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn initial(mut self, fuel: u64) -> TankBuilder {
        self.initial = Some(fuel);
        self
    }

    /// The clock; [`MonotonicClock`](crate::clock::MonotonicClock) by
    /// default. A [`ManualClock`](crate::clock::ManualClock) also drives the
    /// tank's timer, for deterministic tests.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Tank, clock::ManualClock};
    /// use std::time::Duration;
    ///
    /// let clock = ManualClock::new();
    /// let tank = Tank::builder(Rate::per_second(1)?).initial(0).clock(clock.clone()).build()?;
    /// assert!(!tank.has_fuel());
    /// clock.advance(Duration::from_secs(1));
    /// assert!(tank.has_fuel());
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn clock(mut self, clock: impl Clock) -> TankBuilder {
        self.clock = ClockSource::from_clock(clock);
        self
    }

    pub(crate) fn clock_source(mut self, clock: ClockSource) -> TankBuilder {
        self.clock = clock;
        self
    }

    /// Arms the tank's timer `early` before a waiter's fuel is due, and
    /// waits out the rest precisely on the thread the timer fires on; zero
    /// (off) by default.
    ///
    /// System timers fire late (tens of microseconds here, see
    /// `BENCHMARKS.md`), and under [`Hardcap::One`] every late grant pushes
    /// all later ones back, so the tank falls short of its rate. With the
    /// timer's usual lateness as the correction, grants land on time, at a
    /// CPU cost of up to `early` per timer wake-up (only while tasks wait).
    /// [`Throttle`](crate) measures the lateness for you with
    /// `auto_calibrate`. A [`ManualClock`](crate::clock::ManualClock)'s
    /// timers are exact, and ignore this.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Hardcap, Rate, Tank};
    /// use std::time::Duration;
    ///
    /// let tank = Tank::builder(Rate::per_second(10_000)?)
    ///     .hardcap(Hardcap::One)
    ///     .timer_correction(Duration::from_micros(80))
    ///     .build()?;
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn timer_correction(mut self, early: Duration) -> TankBuilder {
        self.correction = early;
        self
    }

    /// Builds the tank.
    ///
    /// # Errors
    ///
    /// [`Error::InitialOverCapacity`] if `initial` is more than the hardcap
    /// lets the tank hold (`max_n`, or 1 under [`Hardcap::One`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Error, Hardcap, Rate, Tank};
    ///
    /// let err = Tank::builder(Rate::per_second(10)?)
    ///     .hardcap(Hardcap::One)
    ///     .initial(2)
    ///     .build()
    ///     .unwrap_err();
    /// assert_eq!(err, Error::InitialOverCapacity { initial: 2, capacity: 1 });
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn build(self) -> Result<Tank, Error> {
        super::build(
            self.rate,
            self.hardcap,
            self.initial,
            self.correction,
            self.clock,
        )
    }
}
