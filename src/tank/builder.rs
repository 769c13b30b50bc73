//! [`TankBuilder`].

use std::time::Duration;

#[cfg(feature = "shared-memory")]
use crate::SharedMemory;
use crate::calibrate::{calibrated, calibrates_by_default};
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
    // Read by `ThrottleBuilder::build`, which checks the correction and
    // reports whether it was measured or given.
    pub(crate) rate: Rate,
    also: Vec<Rate>,
    hardcap: Hardcap,
    burst: Option<u64>,
    initial: Option<u64>,
    pub(crate) correction: Option<Duration>,
    pub(crate) auto_calibrate: Option<bool>,
    pub(crate) clock: ClockSource,
    #[cfg(feature = "shared-memory")]
    shared_memory: Option<SharedMemory>,
}

impl TankBuilder {
    pub(crate) fn new(rate: Rate) -> TankBuilder {
        TankBuilder {
            rate,
            also: Vec::new(),
            hardcap: Hardcap::default(),
            burst: None,
            initial: None,
            correction: None,
            auto_calibrate: None,
            clock: ClockSource::default(),
            #[cfg(feature = "shared-memory")]
            shared_memory: None,
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

    /// Another rate the tank keeps beside its own: "100/s, also
    /// 10000/d". A grant takes from every rate or from none, at once, in
    /// the tank's one line; [`Budget::wait_time`](crate::Budget::wait_time)
    /// is the longest of the rates' waits, [`Tank::level`](crate::Tank::level)
    /// and [`Budget::available`](crate::Budget::available) the least of their
    /// fuel, [`Budget::capacity`](crate::Budget::capacity) the least of their
    /// capacities. Call it once per rate.
    ///
    /// Every rate keeps the tank's [`Hardcap`] bound, each with its own
    /// `max_n` and `per`: under `Limit` a rate of `also` holds at most its
    /// `max_n` ([`burst`](TankBuilder::burst) sets the first rate's
    /// capacity only); under `Window` no window of a rate's `per` sees more
    /// than its `max_n`; under `One` grants are at least the longest
    /// interval apart; under `Unbounded` each rate banks without bound, so
    /// only each one's long-run average holds. `initial` fuel is held under
    /// every rate (by default one, or under `Window` each rate full).
    /// [`Tank::set_rate`](crate::Tank::set_rate) changes the first rate
    /// only; the others stay. A tank of several rates takes its fuel under
    /// its lock (a single-rate tank's `has_fuel` is one compare-and-swap),
    /// and is not supported in shared memory.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Budget, Rate, Tank, clock::ManualClock};
    /// use std::time::Duration;
    ///
    /// let clock = ManualClock::new();
    /// let tank = Tank::builder("100/min".parse()?)
    ///     .also("5/s".parse()?)
    ///     .initial(5)
    ///     .clock(clock.clone())
    ///     .build()?;
    /// assert!(tank.has_fuel_n(5));
    /// assert!(!tank.has_fuel()); // both rates are empty
    /// // The longer wait: the next of 100/min, not of 5/s (200 ms).
    /// assert_eq!(tank.wait_time(1), Some(Duration::from_millis(600)));
    /// clock.advance(Duration::from_secs(60));
    /// assert_eq!(tank.level(), 5); // 5/s holds at most 5
    /// assert!(tank.has_fuel_n(5));
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn also(mut self, rate: Rate) -> TankBuilder {
        self.also.push(rate);
        self
    }

    /// The capacity of a [`Hardcap::Limit`] tank, apart from `max_n`: "5/s
    /// with bursts of 20". After idle the tank holds `n`, then refills one
    /// per interval; any window of length `per` sees at most
    /// `n + max_n − 1` grants. `initial` still defaults to 1 (`initial(n)`
    /// starts full).
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Budget, Rate, Tank, clock::ManualClock};
    /// use std::time::Duration;
    ///
    /// let clock = ManualClock::new();
    /// let tank = Tank::builder("5/s".parse()?).burst(20).clock(clock.clone()).build()?;
    /// clock.advance(Duration::from_secs(60)); // idle: it fills to 20, not 5
    /// assert_eq!(tank.level(), 20);
    /// assert!(tank.has_fuel_n(20));
    /// assert_eq!(tank.wait_time(1), Some(Duration::from_millis(200)));
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn burst(mut self, n: u64) -> TankBuilder {
        self.burst = Some(n);
        self
    }

    /// The fuel in the tank when it is built.
    ///
    /// By default 1: the first fuel is there at once, then one per interval,
    /// with no start-up burst. `initial(max_n)` starts full, `initial(0)`
    /// empty. A [`Hardcap::Window`] starts with its window empty (`max_n`);
    /// a smaller `initial` counts the difference as granted at build time.
    /// Every type's: [Initial fuel](crate#initial-fuel).
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
    /// waits out the rest precisely on the thread the timer fires on,
    /// instead of measuring it (see [`auto_calibrate`](TankBuilder::auto_calibrate)).
    ///
    /// System timers fire late (by how much on the project's machine:
    /// `BENCHMARKS.md`), and under [`Hardcap::One`] every late grant pushes
    /// all later ones back, so the tank falls short of its rate. With the
    /// timer's usual lateness as the correction, grants land on time, at a
    /// CPU cost of up to `early` per timer wake-up (only while tasks wait).
    /// At most the rate's interval: longer is an error at `build`, and a
    /// [`set_rate`](crate::Tank::set_rate) to a shorter interval shortens
    /// it to that. A [`ManualClock`](crate::clock::ManualClock)'s timers
    /// are exact, and ignore this.
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
    /// assert_eq!(tank.timer_correction(), Duration::from_micros(80));
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn timer_correction(mut self, early: Duration) -> TankBuilder {
        self.correction = Some(early);
        self
    }

    /// Whether to measure this system's timer lateness and arm the timer
    /// that much early (see [`timer_lateness`](crate::clock::timer_lateness)); on
    /// by default at 49/s and above. A tank asked for 10k/s under
    /// [`Hardcap::One`] then delivers it, where uncorrected timers would
    /// deliver well under it. The first tank of each class of intervals
    /// measures (about 5 ms, blocking `build`); later ones reuse the
    /// figure. The correction is the 90th percentile of the lateness (at
    /// most twice its median), at most half the interval and at most 250
    /// µs, and costs up to that much CPU per timer wake-up while tasks
    /// wait. Under [`Hardcap::One`], where a late wake-up loses fuel for
    /// good, it then follows the lateness the tank's timer shows (up at
    /// once, down slowly, within the same bounds), so that a machine
    /// busier than at build still gets the rate; not in shared memory,
    /// where every process wakes for the same fuel and one of them is
    /// usually on time. Skipped with an explicit
    /// [`timer_correction`](TankBuilder::timer_correction), and on a
    /// [`ManualClock`](crate::clock::ManualClock).
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Tank};
    /// use std::time::Duration;
    ///
    /// let plain = Tank::builder(Rate::per_second(10_000)?).auto_calibrate(false).build()?;
    /// assert_eq!(plain.timer_correction(), Duration::ZERO);
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn auto_calibrate(mut self, on: bool) -> TankBuilder {
        self.auto_calibrate = Some(on);
        self
    }

    /// Shares the tank with every process of this host that builds one of
    /// the same `name`: the first creates it, the others attach. A name is
    /// letters, digits, `-`, `_` and `.` (the file is then
    /// `/dev/shm/fueltank-NAME.tank` on Linux, in the temporary directory
    /// elsewhere), or a path if it has a `/`; or a [`SharedMemory`] that
    /// also says who may share the file. By default, only this user's
    /// processes: the file is created with mode `0600`, and a symbolic
    /// link, a file of another user or one that others may write is an
    /// error (see [the trust model](SharedMemory#who-can-attach-the-trust-model),
    /// which also says what a process that can write the file can do).
    ///
    /// The result is an ordinary [`Tank`]: every method, the Tower layers,
    /// [`Throttle`](crate::Throttle) and [`Pace`](crate::Pace) work as with
    /// a tank of one process, and the hardcap's bound holds across all the
    /// processes together. Taking fuel is one compare-and-swap on the
    /// shared file, on the host's monotonic clock.
    ///
    /// The shared bucket is also the line of every process: a waiter whose
    /// fuel is not there takes its *turn* in the shared state (the same
    /// compare-and-swap, which moves the bucket's next-fuel time on past
    /// the turn), and its process's one timer wakes it when the turn comes.
    /// So waiters are served in the order they asked, across processes
    /// (FIFO: greedy processes get shares in proportion to their waiters,
    /// and a waiter waits for the fuel of the turns ahead of it, nothing
    /// more but its timer's lateness); [`has_fuel`](Tank::has_fuel) finds
    /// fuel only after every turn taken in any process (it overtakes no
    /// one). A turn's fuel is spent when the turn is taken: the hardcap's
    /// bound holds on the turns, and a waiter goes at or just after its
    /// turn. Within a process, waiters whose turn is taken keep it, paused
    /// or not; a waiter that arrives while the tank is paused takes its
    /// turn when it resumes (its process looks at least every 10 ms). A
    /// turn whose waiter is dropped comes back only if no turn or take came
    /// after it (in any process); otherwise it passes unused, as the turns
    /// of a process that is killed: fuel lost, never minted, and nobody
    /// waits for it. Under [`Hardcap::One`], which cannot bank fuel, there
    /// are no turns (a waiter let go late would come less than an interval
    /// before the next): each grant is a take at its time, FIFO within a
    /// process, and the processes' timers race for each fuel, so their
    /// shares are not promised.
    ///
    /// [`set_rate`](Tank::set_rate), [`pause`](Tank::pause) and
    /// [`resume`](Tank::resume) reach every process: after another
    /// process's `set_rate`, this one's [`wait_time`](crate::Budget::wait_time),
    /// capacity checks and waiters follow the new rate (a turn taken stays
    /// as many intervals ahead, of the new rate). Fuel given back
    /// returns only if no take since changed the bucket (in any process);
    /// otherwise it is spent. A process killed or stopped at any point
    /// leaves the shared state whole and blocks no one: nothing in the
    /// shared state waits for a process.
    ///
    /// The file outlives the processes: the next run attaches and carries
    /// on. [`Tank::remove_shared_memory`] removes it to start anew, once no
    /// process uses it; removed otherwise (`rm`) while processes run, it
    /// splits the budget in two (see
    /// [`SharedMemory`](SharedMemory#removing-it)). `build` fails if the
    /// file holds another rate, hardcap or burst ([`Error::SharedMismatch`], naming
    /// what differs), is not a fueltank file of this version, is corrupt (a
    /// field no tank writes: its tick scale or interval not those of its
    /// rate, its epoch ahead of the host's clock, fuel beyond its capacity),
    /// was written before the host's last reboot (on Linux), or is not one
    /// [`SharedMemory`] accepts ([`Error::SharedMemory`]), or if
    /// the options do not fit shared memory ([`Error::Unsupported`]:
    /// `Window`, a clock other than the default, or a rate whose bucket
    /// spans more than 2^45 ticks).
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Tank};
    ///
    /// let name = format!("doc-example-{}", std::process::id());
    /// let here = Tank::builder(Rate::per_second(10)?).initial(2).shared_memory(&name).build()?;
    /// // Another process (or here, another build) attaches to the same tank.
    /// let there = Tank::builder(Rate::per_second(10)?).shared_memory(&name).build()?;
    /// assert!(here.has_fuel());
    /// assert!(there.has_fuel());
    /// assert!(!here.has_fuel()); // the two fuel were shared
    /// drop((here, there));
    /// Tank::remove_shared_memory(&name)?; // once no process uses it
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    #[cfg(feature = "shared-memory")]
    #[cfg_attr(docsrs, doc(cfg(feature = "shared-memory")))]
    pub fn shared_memory(mut self, name: impl Into<SharedMemory>) -> TankBuilder {
        self.shared_memory = Some(name.into());
        self
    }

    /// Builds the tank.
    ///
    /// # Errors
    ///
    /// [`Error::InitialOverCapacity`] if `initial` is more than the hardcap
    /// lets the tank hold (`max_n` or the burst, or 1 under
    /// [`Hardcap::One`]); [`Error::Unsupported`] for a burst with another
    /// hardcap than `Limit`, [`Error::InvalidCount`] for a burst of 0 or
    /// beyond 2^48; [`Error::InvalidDuration`] for a
    /// [`timer_correction`](TankBuilder::timer_correction) longer than the
    /// rate's interval; the errors of
    /// [`shared_memory`](TankBuilder::shared_memory).
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
        if let Some(early) = self.correction
            && early > self.rate.interval()
        {
            return Err(Error::InvalidDuration {
                option: "correction",
                value: early,
                accepted: "at most the rate's interval (per / max_n)",
            });
        }
        self.clock.warm_up();
        let calibrate = self
            .auto_calibrate
            .unwrap_or_else(|| calibrates_by_default(self.rate));
        let (correction, adapts) = match self.correction {
            Some(early) => (early, false),
            None if calibrate => (calibrated(self.rate, &self.clock), true),
            None => (Duration::ZERO, false),
        };
        super::build(super::Options {
            rate: self.rate,
            also: self.also,
            hardcap: self.hardcap,
            burst: self.burst,
            initial: self.initial,
            correction,
            adapts,
            clock: self.clock,
            #[cfg(feature = "shared-memory")]
            shared_memory: self.shared_memory,
        })
    }
}
