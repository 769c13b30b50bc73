//! [`MonitorBuilder`].

use std::time::Duration;

use super::Monitor;
use crate::Error;
#[cfg(feature = "shared-memory")]
use crate::SharedMemory;
use crate::clock::{Clock, ClockSource, saturating_ns};

/// The shortest refresh or window accepted.
const MIN_PERIOD: Duration = Duration::from_micros(1);
/// The longest refresh or window accepted: a year.
const MAX_PERIOD: Duration = Duration::from_secs(365 * 24 * 3600);
const PERIOD_ACCEPTED: &str = "between 1 µs and 365 days";

const DEFAULT_REFRESH: Duration = Duration::from_millis(10);
const DEFAULT_WINDOW: Duration = Duration::from_secs(1);

/// Checks a refresh or window option.
fn check_period(option: &'static str, value: Duration) -> Result<u64, Error> {
    if (MIN_PERIOD..=MAX_PERIOD).contains(&value) {
        Ok(saturating_ns(value))
    } else {
        Err(Error::InvalidDuration {
            option,
            value,
            accepted: PERIOD_ACCEPTED,
        })
    }
}

/// Chooses the refresh, the trailing window and the clock of a [`Monitor`],
/// and whether it lives in [shared memory](MonitorBuilder::shared_memory).
///
/// # Examples
///
/// ```
/// use fueltank::{Error, Monitor};
/// use std::time::Duration;
///
/// let monitor = Monitor::builder().window(Duration::from_secs(10)).build()?;
/// let err = Monitor::builder().refresh(Duration::ZERO).build().unwrap_err();
/// assert!(matches!(err, Error::InvalidDuration { option: "refresh", .. }));
/// # Ok::<(), fueltank::Error>(())
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until built"]
pub struct MonitorBuilder {
    refresh: Duration,
    window: Duration,
    clock: ClockSource,
    #[cfg(feature = "shared-memory")]
    shared_memory: Option<SharedMemory>,
}

impl MonitorBuilder {
    pub(crate) fn new() -> MonitorBuilder {
        MonitorBuilder {
            refresh: DEFAULT_REFRESH,
            window: DEFAULT_WINDOW,
            clock: ClockSource::default(),
            #[cfg(feature = "shared-memory")]
            shared_memory: None,
        }
    }

    /// How often [`snapshots`](Monitor::snapshots) yields; 10 ms by
    /// default. Accepted: 1 µs to 365 days.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::Monitor;
    /// use std::time::Duration;
    ///
    /// let monitor = Monitor::builder().refresh(Duration::from_millis(250)).build()?;
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn refresh(mut self, refresh: Duration) -> MonitorBuilder {
        self.refresh = refresh;
        self
    }

    /// The trailing window of [`latest`](Monitor::latest); 1 s by default.
    /// Accepted: 1 µs to 365 days.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::Monitor;
    /// use std::time::Duration;
    ///
    /// let monitor = Monitor::builder().window(Duration::from_secs(60)).build()?;
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn window(mut self, window: Duration) -> MonitorBuilder {
        self.window = window;
        self
    }

    /// The clock; [`MonotonicClock`](crate::clock::MonotonicClock) by
    /// default. A [`ManualClock`](crate::clock::ManualClock) also drives the
    /// timer of [`snapshots`](Monitor::snapshots).
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Monitor, clock::ManualClock};
    /// use std::time::Duration;
    ///
    /// let clock = ManualClock::new();
    /// let monitor = Monitor::builder().clock(clock.clone()).build()?;
    /// clock.advance(Duration::from_secs(3));
    /// assert_eq!(monitor.runtime(), Duration::from_secs(3));
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn clock(mut self, clock: impl Clock) -> MonitorBuilder {
        self.clock = ClockSource::from_clock(clock);
        self
    }

    pub(crate) fn clock_source(mut self, clock: ClockSource) -> MonitorBuilder {
        self.clock = clock;
        self
    }

    /// Puts the monitor in shared memory under `name`, so that every
    /// process of the host that builds the same name counts into one set
    /// of statistics: each process's [`emit`](Monitor::emit) is counted
    /// exactly, and any process reads the combined
    /// [`total`](Monitor::total), [`mean`](Monitor::mean),
    /// [`latest`](Monitor::latest), extremes and
    /// [snapshots](Monitor::snapshot). [`stop`](Monitor::stop) and
    /// [`start`](Monitor::start) pause and resume it for every process.
    ///
    /// `name` is 1 to 200 letters, digits, `-`, `_` or `.`, and the file is
    /// `fueltank-NAME.monitor` in the shared-memory directory (`/dev/shm`
    /// on Linux, else the temporary directory); a name with a `/` is the
    /// file's path; a [`SharedMemory`] also says who may share the file.
    /// By default, only this user's processes: the file is created with
    /// mode `0600`, and a symbolic link, a file of another user or one that
    /// others may write is an error (see
    /// [the trust model](SharedMemory#who-can-attach-the-trust-model)).
    /// The first [`build`](MonitorBuilder::build) creates the
    /// file (running from then on), the others attach to it; the file
    /// outlives the processes, and the next run carries on with its
    /// statistics and running time (time while no process was attached
    /// counts, unless the monitor was stopped):
    /// [`Monitor::remove_shared_memory`] removes it to start anew, once no
    /// process uses it (a process still running when the file is removed
    /// otherwise counts into the removed file, apart from the processes
    /// built after). A file from an earlier boot of the host is an error (on Linux,
    /// which records the boot): its times are on that boot's clock.
    ///
    /// Every process must build it with the same
    /// [`window`](MonitorBuilder::window), which is stored in the file; the
    /// [`refresh`](MonitorBuilder::refresh) is each process's own (it only
    /// paces that process's [`snapshots`](Monitor::snapshots)). A shared
    /// monitor runs on the host's monotonic clock, the same in every
    /// process, so no other [`clock`](MonitorBuilder::clock) can be given.
    /// Shared memory is available on unix.
    ///
    /// A process killed at any point, even inside `emit` or `stop`, leaves
    /// the statistics consistent and blocks no other: every change to the
    /// shared state is one atomic operation, and there is no lock.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::Monitor;
    ///
    /// let path = std::env::temp_dir().join(format!("fueltank-doc-{}.monitor", std::process::id()));
    /// let name = path.to_str().unwrap();
    /// let here = Monitor::builder().shared_memory(name).build()?;
    /// // Another process (here, another build) attaches to the same monitor.
    /// let there = Monitor::builder().shared_memory(name).build()?;
    /// here.emit();
    /// there.emit();
    /// assert_eq!(here.total(), 2);
    /// assert_eq!(there.total(), 2);
    /// drop((here, there));
    /// Monitor::remove_shared_memory(name)?; // once no process uses it
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    #[cfg(feature = "shared-memory")]
    #[cfg_attr(docsrs, doc(cfg(feature = "shared-memory")))]
    pub fn shared_memory(mut self, name: impl Into<SharedMemory>) -> MonitorBuilder {
        self.shared_memory = Some(name.into());
        self
    }

    /// Builds the monitor; it is running from now (in shared memory: from
    /// when the first process created it).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidDuration`] if the refresh or the window is not
    /// between 1 µs and 365 days. With
    /// [`shared_memory`](MonitorBuilder::shared_memory):
    /// [`Error::Unsupported`] if a clock was given,
    /// [`Error::SharedMemory`] off unix, if the name is not accepted or the file
    /// cannot be created or mapped, is not a monitor of this version
    /// (another kind, a corrupt header, a wrong length) or is not one
    /// [`SharedMemory`] accepts, and
    /// [`Error::SharedMismatch`] if it holds another window.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::Monitor;
    /// use std::time::Duration;
    ///
    /// let err = Monitor::builder().window(Duration::ZERO).build().unwrap_err();
    /// assert_eq!(
    ///     err.to_string(),
    ///     "window of 0ns is not accepted; it must be between 1 µs and 365 days"
    /// );
    /// ```
    pub fn build(self) -> Result<Monitor, Error> {
        self.clock.warm_up();
        let (refresh, window) = self.periods()?;
        #[cfg(feature = "shared-memory")]
        if let Some(name) = &self.shared_memory {
            return Monitor::shared_memory(name, self.clock, window, refresh);
        }
        Ok(Monitor::from_parts(self.clock, window, refresh))
    }

    /// The refresh and the window in nanoseconds, if both are accepted.
    pub(crate) fn periods(&self) -> Result<(u64, u64), Error> {
        Ok((
            check_period("refresh", self.refresh)?,
            check_period("window", self.window)?,
        ))
    }

    /// Builds with the defaults, which are valid.
    pub(crate) fn build_unchecked(self) -> Monitor {
        Monitor::from_parts(
            self.clock,
            saturating_ns(self.window),
            saturating_ns(self.refresh),
        )
    }
}
