//! [`Stats`]: what a layer let through, shed and made wait, in
//! [`Monitor`]s, with the distribution of the waits ([`WaitTimes`]).

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use fueltank::clock::{Clock, ManualClock, MonotonicClock};
use fueltank::{Monitor, Snapshot};

/// Counters of one or more layers, for export: requests admitted, rejected,
/// waited, refused for want of a key and refused while the store was down,
/// each a [`Monitor`] (its [`total`](Monitor::total), and its rates
/// [`mean`](Monitor::mean) and [`latest`](Monitor::latest)), and the time the waiting requests waited
/// ([`wait_times`](Stats::wait_times): count, sum, percentiles).
///
/// A cheap handle: clones share the counters. Give one to a layer with
/// `stats(..)` ([`ThrottleLayer::stats`](crate::ThrottleLayer::stats),
/// [`KeyedThrottleLayer::stats`](crate::KeyedThrottleLayer::stats)) and
/// keep a clone to read. A layer without stats counts nothing, and its
/// requests pay for no counting.
///
/// | counter | counts a request |
/// |---|---|
/// | [`admitted`](Stats::admitted) | let through to the inner service, when it takes its fuel |
/// | [`rejected`](Stats::rejected) | shed with [`Throttled`](crate::Throttled): no fuel in reject mode, none within [`max_wait`](crate::ThrottleLayer::max_wait), or the line [full](crate::ThrottleLayer::max_waiting) |
/// | [`waited`](Stats::waited) | admitted after waiting in line for its fuel (also in `admitted`) |
/// | [`key_errors`](Stats::key_errors) | refused because its key could not be read (keyed layers) |
/// | [`unavailable`](Stats::unavailable) | refused with [`Unavailable`](crate::Unavailable): its budget's store is down and the budget's failure policy refuses (not in `rejected`) |
///
/// [`wait_times`](Stats::wait_times) holds one wait per `waited` request,
/// timed on the stats' clock: requests served at once are not in it.
///
/// # Examples
///
/// ```
/// use fueltank::{Rate, Tank};
/// use fueltank_tower::{Stats, ThrottleLayer};
/// use tower::{Layer, Service, ServiceExt, service_fn};
///
/// # futures::executor::block_on(async {
/// let stats = Stats::new();
/// let mut svc = ThrottleLayer::new(Tank::new(Rate::per_minute(1)?))
///     .reject()
///     .stats(stats.clone())
///     .layer(service_fn(|()| async { Ok::<_, tower::BoxError>(()) }));
/// svc.ready().await?.call(()).await?;
/// assert!(svc.ready().await?.call(()).await.is_err());
/// assert_eq!(stats.admitted().total(), 1);
/// assert_eq!(stats.rejected().total(), 1);
/// assert_eq!(stats.wait_times().count(), 0);
/// # Ok::<(), tower::BoxError>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct Stats {
    shared: Arc<Shared>,
}

struct Shared {
    admitted: Monitor,
    rejected: Monitor,
    waited: Monitor,
    key_errors: Monitor,
    unavailable: Monitor,
    shadowed: Monitor,
    waits: WaitLog,
    /// Times the waits: the clock the stats were built with.
    clock: Arc<dyn Clock>,
}

/// The waits, kept by a [`Monitor`] on a timeline of its own: recording a
/// wait moves the timeline forward by it and emits, so each gap between
/// consecutive emissions is one wait. The monitor's histogram of gaps is
/// then the distribution of the waits, its runtime their sum.
struct WaitLog {
    timeline: ManualClock,
    monitor: Monitor,
    /// Moving the timeline and emitting must happen together: two waits
    /// recorded at once would otherwise make one gap of their sum and one
    /// of zero.
    record: Mutex<()>,
}

impl WaitLog {
    fn new() -> WaitLog {
        let timeline = ManualClock::new();
        // The defaults are valid, so this builds; were it ever to fail, a
        // monitor on the real clock would only blur the distribution.
        let monitor = Monitor::builder()
            .clock(timeline.clone())
            .build()
            .unwrap_or_default();
        // The emission every later gap is measured from.
        monitor.emit();
        WaitLog {
            timeline,
            monitor,
            record: Mutex::new(()),
        }
    }

    fn record(&self, wait: Duration) {
        let _serialized = self.record.lock().unwrap_or_else(PoisonError::into_inner);
        self.timeline.advance(wait);
        self.monitor.emit();
    }
}

impl Stats {
    /// Counters on the default clock ([`MonotonicClock`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank_tower::Stats;
    ///
    /// let stats = Stats::new();
    /// assert_eq!(stats.admitted().total(), 0);
    /// ```
    pub fn new() -> Stats {
        Stats::with_clock(MonotonicClock)
    }

    /// Counters whose monitors run on `clock`, and which time the waits on
    /// it: pass the tank's [`ManualClock`] in tests to get exact rates and
    /// wait times.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Tank, clock::ManualClock};
    /// use fueltank_tower::{Stats, ThrottleLayer};
    /// use std::pin::pin;
    /// use std::task::{Context, Poll, Waker};
    /// use std::time::Duration;
    /// use tower::{Layer, Service, service_fn};
    ///
    /// let clock = ManualClock::new();
    /// let tank = Tank::builder(Rate::per_second(10)?).initial(0).clock(clock.clone()).build()?;
    /// let stats = Stats::with_clock(clock.clone());
    /// let mut svc = ThrottleLayer::new(tank)
    ///     .stats(stats.clone())
    ///     .layer(service_fn(|()| async { Ok::<_, tower::BoxError>(()) }));
    /// let mut cx = Context::from_waker(Waker::noop());
    /// assert!(svc.poll_ready(&mut cx).is_pending()); // waits in line
    /// clock.advance(Duration::from_millis(100));
    /// assert!(matches!(svc.poll_ready(&mut cx), Poll::Ready(Ok(()))));
    /// drop(svc.call(())); // admitted: the wait is counted with it
    /// assert_eq!(stats.wait_times().percentile(50.0), Some(Duration::from_millis(100)));
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn with_clock<C: Clock + Clone>(clock: C) -> Stats {
        let monitor = || {
            Monitor::builder()
                .clock(clock.clone())
                .build()
                .unwrap_or_default()
        };
        Stats {
            shared: Arc::new(Shared {
                admitted: monitor(),
                rejected: monitor(),
                waited: monitor(),
                key_errors: monitor(),
                unavailable: monitor(),
                shadowed: monitor(),
                waits: WaitLog::new(),
                clock: Arc::new(clock.clone()),
            }),
        }
    }

    /// Requests let through to the inner service, one emission each when
    /// it takes its fuel.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank_tower::Stats;
    ///
    /// let stats = Stats::new();
    /// assert!(stats.admitted().mean().is_none()); // nothing yet
    /// ```
    pub fn admitted(&self) -> &Monitor {
        &self.shared.admitted
    }

    /// Requests shed with [`Throttled`](crate::Throttled), one emission
    /// each.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank_tower::Stats;
    ///
    /// assert_eq!(Stats::new().rejected().total(), 0);
    /// ```
    pub fn rejected(&self) -> &Monitor {
        &self.shared.rejected
    }

    /// Requests admitted after waiting in line for their fuel, one
    /// emission each when it is admitted (they are in
    /// [`admitted`](Stats::admitted) too): a request whose service is
    /// dropped after its wait, before `call`, is in neither.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank_tower::Stats;
    ///
    /// assert_eq!(Stats::new().waited().total(), 0);
    /// ```
    pub fn waited(&self) -> &Monitor {
        &self.shared.waited
    }

    /// Requests refused because their key could not be read (a keyed
    /// layer's [`KeyError`](crate::key::KeyError)), one emission each.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank_tower::Stats;
    ///
    /// assert_eq!(Stats::new().key_errors().total(), 0);
    /// ```
    pub fn key_errors(&self) -> &Monitor {
        &self.shared.key_errors
    }

    /// Requests refused with [`Unavailable`](crate::Unavailable) (their
    /// budget's store is down, a `503` over HTTP), one emission each; not
    /// in [`rejected`](Stats::rejected): an outage is not overload.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank_tower::Stats;
    ///
    /// assert_eq!(Stats::new().unavailable().total(), 0);
    /// ```
    pub fn unavailable(&self) -> &Monitor {
        &self.shared.unavailable
    }

    /// Requests a [`shadow`](crate::Limit::shadow) layer would have
    /// refused (shed, or refused while the budget's store is down) and let
    /// through instead, one emission each; they are also in
    /// [`admitted`](Stats::admitted), and never in
    /// [`rejected`](Stats::rejected).
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Tank};
    /// use fueltank_tower::{Stats, ThrottleLayer};
    /// use tower::{Layer, Service, ServiceExt, service_fn};
    ///
    /// # futures::executor::block_on(async {
    /// let stats = Stats::new();
    /// let mut svc = ThrottleLayer::new(Tank::new(Rate::per_minute(1)?))
    ///     .shadow()
    ///     .stats(stats.clone())
    ///     .layer(service_fn(|()| async { Ok::<_, tower::BoxError>(()) }));
    /// for _ in 0..3 {
    ///     svc.ready().await?.call(()).await?; // never shed
    /// }
    /// assert_eq!(stats.admitted().total(), 3);
    /// assert_eq!(stats.shadowed().total(), 2); // one fuel for three
    /// assert_eq!(stats.rejected().total(), 0);
    /// # Ok::<(), tower::BoxError>(())
    /// # }).unwrap();
    /// ```
    pub fn shadowed(&self) -> &Monitor {
        &self.shared.shadowed
    }

    /// The waits of the [`waited`](Stats::waited) requests so far: how
    /// many, their sum, and their percentiles.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank_tower::Stats;
    ///
    /// let waits = Stats::new().wait_times();
    /// assert_eq!(waits.count(), 0);
    /// assert_eq!(waits.percentile(99.0), None);
    /// ```
    pub fn wait_times(&self) -> WaitTimes {
        let waits = &self.shared.waits;
        let _consistent = waits.record.lock().unwrap_or_else(PoisonError::into_inner);
        WaitTimes {
            sum: waits.monitor.runtime(),
            gaps: waits.monitor.snapshot(),
        }
    }

    /// The time now on the stats' clock.
    pub(crate) fn now(&self) -> Instant {
        self.shared.clock.now()
    }

    /// A request that waited `wait` for its fuel got it.
    pub(crate) fn waited_for(&self, wait: Duration) {
        self.shared.waited.emit();
        self.shared.waits.record(wait);
    }
}

impl Default for Stats {
    fn default() -> Stats {
        Stats::new()
    }
}

impl fmt::Debug for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stats")
            .field("admitted", &self.admitted().total())
            .field("rejected", &self.rejected().total())
            .field("waited", &self.waited().total())
            .field("key_errors", &self.key_errors().total())
            .field("unavailable", &self.unavailable().total())
            .finish()
    }
}

/// The waits of the requests that waited for their fuel, as read by
/// [`Stats::wait_times`]: for a Prometheus summary, its
/// [`count`](WaitTimes::count), [`sum`](WaitTimes::sum) and quantiles
/// ([`percentile`](WaitTimes::percentile)).
///
/// # Examples
///
/// ```
/// use fueltank::{Rate, Tank, clock::ManualClock};
/// use fueltank_tower::{Stats, ThrottleLayer};
/// use std::task::{Context, Waker};
/// use std::time::Duration;
/// use tower::{Layer, Service, service_fn};
///
/// let clock = ManualClock::new();
/// let tank = Tank::builder(Rate::per_second(10)?).initial(0).clock(clock.clone()).build()?;
/// let stats = Stats::with_clock(clock.clone());
/// let layer = ThrottleLayer::new(tank).stats(stats.clone());
/// let mut cx = Context::from_waker(Waker::noop());
/// for _ in 0..2 {
///     let mut svc = layer.layer(service_fn(|()| async { Ok::<_, tower::BoxError>(()) }));
///     assert!(svc.poll_ready(&mut cx).is_pending());
///     clock.advance(Duration::from_millis(100));
///     assert!(svc.poll_ready(&mut cx).is_ready());
///     drop(svc.call(())); // spends the fuel (dropped uncalled, it would go back)
/// }
/// let waits = stats.wait_times();
/// assert_eq!(waits.count(), 2);
/// assert_eq!(waits.sum(), Duration::from_millis(200));
/// assert_eq!(waits.percentile(100.0), Some(Duration::from_millis(100)));
/// # Ok::<(), fueltank::Error>(())
/// ```
#[derive(Clone)]
pub struct WaitTimes {
    sum: Duration,
    /// The wait log's snapshot: its gaps are the waits.
    gaps: Snapshot,
}

impl WaitTimes {
    /// How many waits were recorded.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank_tower::Stats;
    ///
    /// assert_eq!(Stats::new().wait_times().count(), 0);
    /// ```
    pub fn count(&self) -> u64 {
        self.gaps.gaps()
    }

    /// The waits added up.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank_tower::Stats;
    /// use std::time::Duration;
    ///
    /// assert_eq!(Stats::new().wait_times().sum(), Duration::ZERO);
    /// ```
    pub fn sum(&self) -> Duration {
        self.sum
    }

    /// The wait below which `q` percent of the waits fall:
    /// `percentile(50.0)` is the median, `percentile(100.0)` the longest.
    /// Within 1 % of the true value, exact at 0 and 100 (the
    /// [`Snapshot::percentile`] of a monitor). `None` before the first
    /// wait, or if `q` is not within `0.0..=100.0`.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank_tower::Stats;
    ///
    /// assert_eq!(Stats::new().wait_times().percentile(50.0), None);
    /// ```
    pub fn percentile(&self, q: f64) -> Option<Duration> {
        self.gaps.percentile(q)
    }
}

impl fmt::Debug for WaitTimes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaitTimes")
            .field("count", &self.count())
            .field("sum", &self.sum)
            .field("p50", &self.percentile(50.0))
            .field("p99", &self.percentile(99.0))
            .field("max", &self.percentile(100.0))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_log_keeps_each_wait_as_one_gap() {
        let stats = Stats::new();
        for ms in [5, 10, 10, 40] {
            stats.waited_for(Duration::from_millis(ms));
        }
        let waits = stats.wait_times();
        assert_eq!(waits.count(), 4);
        assert_eq!(waits.sum(), Duration::from_millis(65));
        assert_eq!(waits.percentile(0.0), Some(Duration::from_millis(5)));
        assert_eq!(waits.percentile(100.0), Some(Duration::from_millis(40)));
        let p50 = waits.percentile(50.0).unwrap();
        assert!(p50.abs_diff(Duration::from_millis(10)) < Duration::from_micros(100));
        assert_eq!(stats.waited().total(), 4);
    }

    #[test]
    fn waits_recorded_from_many_threads_are_each_kept() {
        let stats = Stats::new();
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..250 {
                        stats.waited_for(Duration::from_millis(3));
                    }
                });
            }
        });
        let waits = stats.wait_times();
        assert_eq!(waits.count(), 1000);
        assert_eq!(waits.sum(), Duration::from_secs(3));
        assert_eq!(waits.percentile(0.0), Some(Duration::from_millis(3)));
        assert_eq!(waits.percentile(100.0), Some(Duration::from_millis(3)));
    }
}
