//! What a monitor reports: [`Stat`], [`Summary`] and [`Snapshot`].

use std::fmt;
use std::time::{Duration, Instant};

/// A rate, both ways round: the time between emissions and emissions per
/// second.
///
/// A zero interval (two emissions at the same instant) gives an infinite
/// `per_second`.
///
/// # Examples
///
/// ```
/// use fueltank::{Monitor, clock::ManualClock};
/// use std::time::Duration;
///
/// let clock = ManualClock::new();
/// let monitor = Monitor::builder().clock(clock.clone()).build()?;
/// monitor.emit();
/// clock.advance(Duration::from_millis(250));
/// monitor.emit();
/// let shortest = monitor.lo_hi().unwrap();
/// assert_eq!(shortest.interval, Duration::from_millis(250));
/// assert_eq!(shortest.per_second, 4.0);
/// assert_eq!(shortest.to_string(), "4.00/s (every 250ms)");
/// # Ok::<(), fueltank::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stat {
    /// The time between emissions.
    pub interval: Duration,
    /// Emissions per second.
    pub per_second: f64,
}

impl Stat {
    /// No emission over a span: 0/s, and no interval that short.
    pub(crate) const IDLE: Stat = Stat {
        interval: Duration::MAX,
        per_second: 0.0,
    };

    /// One gap of `ns` nanoseconds.
    pub(crate) fn of_gap(ns: u64) -> Stat {
        Stat {
            interval: Duration::from_nanos(ns),
            per_second: 1e9 / ns as f64,
        }
    }

    /// `count` emissions over `span_ns`; `None` if either is zero.
    pub(crate) fn of_count(count: u64, span_ns: u64) -> Option<Stat> {
        if count == 0 || span_ns == 0 {
            return None;
        }
        Some(Stat {
            interval: Duration::from_nanos(span_ns / count),
            per_second: count as f64 * 1e9 / span_ns as f64,
        })
    }
}

impl fmt::Display for Stat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.2}/s (every {:?})", self.per_second, self.interval)
    }
}

/// What a stopped monitor reports: `(runtime, total, mean time between
/// emissions, mean emissions per second)`, as `mp_throttle`'s `stop()` does.
///
/// Runtime excludes the time spent stopped, and the means the emissions
/// made while stopped (which count in `total` only). With no emission,
/// both means are zero.
///
/// # Examples
///
/// ```
/// use fueltank::{Monitor, clock::ManualClock};
/// use std::time::Duration;
///
/// let clock = ManualClock::new();
/// let monitor = Monitor::builder().clock(clock.clone()).build()?;
/// for _ in 0..4 {
///     clock.advance(Duration::from_millis(500));
///     monitor.emit();
/// }
/// let summary = monitor.stop();
/// assert_eq!(summary.runtime, Duration::from_secs(2));
/// assert_eq!(summary.total, 4);
/// assert_eq!(summary.mean_interval, Duration::from_millis(500));
/// assert_eq!(summary.mean_per_second, 2.0);
/// # Ok::<(), fueltank::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Summary {
    /// Running time: from the monitor's creation to now (or to its stop),
    /// less every stopped stretch.
    pub runtime: Duration,
    /// Every emission counted.
    pub total: u64,
    /// `runtime / emissions while running`, or zero.
    pub mean_interval: Duration,
    /// `emissions while running / runtime`, or zero.
    pub mean_per_second: f64,
}

/// `"4 in 2s: 2.00/s (every 500ms)"`.
///
/// # Examples
///
/// ```
/// use fueltank::{Monitor, clock::ManualClock};
/// use std::time::Duration;
///
/// let clock = ManualClock::new();
/// let monitor = Monitor::builder().clock(clock.clone()).build()?;
/// for _ in 0..4 {
///     clock.advance(Duration::from_millis(500));
///     monitor.emit();
/// }
/// assert_eq!(monitor.stop().to_string(), "4 in 2s: 2.00/s (every 500ms)");
/// # Ok::<(), fueltank::Error>(())
/// ```
impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} in {:?}: {:.2}/s (every {:?})",
            self.total, self.runtime, self.mean_per_second, self.mean_interval
        )
    }
}

impl Summary {
    pub(crate) fn new(runtime_ns: u64, total: u64, running: u64) -> Summary {
        let mean = Stat::of_count(running, runtime_ns);
        Summary {
            runtime: Duration::from_nanos(runtime_ns),
            total,
            mean_interval: mean.map_or(Duration::ZERO, |m| m.interval),
            mean_per_second: mean.map_or(0.0, |m| m.per_second),
        }
    }
}

/// The monitor's statistics at one instant, with the distribution of the
/// gaps between emissions.
///
/// Made by [`Monitor::snapshot`](crate::Monitor::snapshot) and, once per
/// refresh, by [`Monitor::snapshots`](crate::Monitor::snapshots).
///
/// # Examples
///
/// ```
/// use fueltank::{Monitor, clock::ManualClock};
/// use std::time::Duration;
///
/// let clock = ManualClock::new();
/// let monitor = Monitor::builder().clock(clock.clone()).build()?;
/// monitor.emit();
/// for gap_ms in [10, 10, 10, 40] {
///     clock.advance(Duration::from_millis(gap_ms));
///     monitor.emit();
/// }
/// let snap = monitor.snapshot();
/// assert_eq!(snap.total, 5);
/// assert_eq!(snap.hi_lo.unwrap().interval, Duration::from_millis(40));
/// let p50 = snap.percentile(50.0).unwrap();
/// assert!(p50.abs_diff(Duration::from_millis(10)) < Duration::from_micros(100));
/// assert_eq!(snap.percentile(100.0), Some(Duration::from_millis(40)));
/// # Ok::<(), fueltank::Error>(())
/// ```
#[derive(Clone)]
pub struct Snapshot {
    /// When it was taken, on the monitor's clock.
    pub at: Instant,
    /// Every emission counted so far.
    pub total: u64,
    /// As [`Monitor::mean`](crate::Monitor::mean).
    pub mean: Option<Stat>,
    /// As [`Monitor::latest`](crate::Monitor::latest).
    pub latest: Option<Stat>,
    /// As [`Monitor::lo_hi`](crate::Monitor::lo_hi).
    pub lo_hi: Option<Stat>,
    /// As [`Monitor::hi_lo`](crate::Monitor::hi_lo).
    pub hi_lo: Option<Stat>,
    /// The gaps' distribution: `(value, count)` of every non-empty bucket,
    /// in increasing value. Counts are as read (a shared monitor's may be
    /// anything another process wrote): they are added up in `u128`.
    pub(crate) gaps: Vec<(u64, u64)>,
    /// The exact shortest and longest gap.
    pub(crate) extremes: Option<(u64, u64)>,
}

impl Snapshot {
    /// The gap between consecutive emissions below which `q` percent of the
    /// gaps fall: `percentile(50.0)` is the median, `percentile(99.9)` the
    /// p99.9, `percentile(100.0)` the longest gap.
    ///
    /// Within 1 % of the true value (gaps are counted in buckets that wide),
    /// and exact at 0 and 100. `None` before the second emission, or if `q`
    /// is not within `0.0..=100.0`.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::Monitor;
    ///
    /// let monitor = Monitor::new();
    /// let snap = monitor.snapshot();
    /// assert_eq!(snap.percentile(99.0), None); // no gap yet
    /// assert_eq!(snap.percentile(101.0), None);
    /// ```
    pub fn percentile(&self, q: f64) -> Option<Duration> {
        if !(0.0..=100.0).contains(&q) {
            return None;
        }
        let (min, max) = self.extremes?;
        let ns = if q == 0.0 {
            min
        } else if q == 100.0 {
            max
        } else {
            // Nearest rank. `99.9 / 100.0` is a hair above 0.999 in binary,
            // which would move p99.9 of 1000 gaps from the 999th to the
            // 1000th: step back by far less than one rank in 2^40.
            let quantile = (q / 100.0 - 1e-12).max(0.0);
            // `as` saturates: a rank past the last is the last.
            let rank = ((quantile * self.count() as f64).ceil() as u128).max(1);
            let mut below = 0u128;
            let value = self.gaps.iter().find_map(|&(value, n)| {
                below += u128::from(n);
                (below >= rank).then_some(value)
            });
            value.unwrap_or(max).clamp(min, max)
        };
        Some(Duration::from_nanos(ns))
    }

    /// How many gaps the percentiles are taken over: one fewer than the
    /// emissions, less those reported out of order or while stopped;
    /// `u64::MAX` at most.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::Monitor;
    ///
    /// let monitor = Monitor::new();
    /// monitor.emit();
    /// monitor.emit();
    /// assert_eq!(monitor.snapshot().gaps(), 1);
    /// ```
    pub fn gaps(&self) -> u64 {
        u64::try_from(self.count()).unwrap_or(u64::MAX)
    }

    /// The gaps counted, exactly: the sum of up to 3777 counts of 64 bits
    /// cannot overflow.
    fn count(&self) -> u128 {
        self.gaps.iter().map(|&(_, n)| u128::from(n)).sum()
    }
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot")
            .field("at", &self.at)
            .field("total", &self.total)
            .field("mean", &self.mean)
            .field("latest", &self.latest)
            .field("lo_hi", &self.lo_hi)
            .field("hi_lo", &self.hi_lo)
            .field("gaps", &self.gaps())
            .field("p50", &self.percentile(50.0))
            .field("p99", &self.percentile(99.0))
            .finish()
    }
}
