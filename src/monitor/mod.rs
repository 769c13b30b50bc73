//! [`Monitor`]: counts what tasks did ("emissions") and computes live
//! statistics.
//!
//! # The emit path
//!
//! `emit` is on every request's path, so it takes no lock and allocates
//! nothing. Time is *running time*: clock nanoseconds since the monitor was
//! built, less every stopped stretch, kept as one atomic `base` (the clock
//! reading at running time zero, or a flag and the frozen running time while
//! stopped). An emission then:
//!
//! 1. reads `base`, the clock, and `base` again (a stop and a start between
//!    the first read and the clock would otherwise put the stopped time into
//!    its stamp: it then starts over), and moves `last`, the stamp of the
//!    latest emission, forward to its own stamp with a compare-and-swap,
//!    re-reading the clock if another emission got in first. The swaps put
//!    emissions in one order, the order of their stamps, so every
//!    emission's gap is exactly the time since the one before it: no gap is
//!    lost, counted twice or negative, however many threads emit;
//! 2. adds one to the counter of its gap's bucket in a lock-free
//!    log-linear histogram (`gaps.rs`); the bucket counts are also the
//!    total, so there is no separate counter to contend on;
//! 3. updates the exact shortest and longest gap, only when it beats them
//!    (a plain load otherwise);
//! 4. once per slot of the trailing window (1/64 of it), notes the count so
//!    far for [`latest`](Monitor::latest) (`window.rs`).
//!
//! That is two atomic read-modify-writes in the common case; readers do the
//! rest. A [`Snapshot`] copies the non-empty buckets, off the emit path, and
//! answers percentiles from them, adding the counts up in `u128`: neither
//! a saturated batch count nor a count another process wrote into a shared
//! monitor's file can overflow the sum.
//!
//! Emissions that have no place in that order are still counted in
//! [`total`](Monitor::total) (no emission is ever lost) but add no gap: the
//! first one, and those reported by [`emit_at`](Monitor::emit_at) with an
//! instant earlier than the latest emission or later than now. Emissions
//! made while the monitor is stopped count in the total only, in no
//! statistic. A batch of `n` (a throttle's `has_fuel_n`) is one emission
//! with its gap and `n − 1` zero gaps, counted at once: the cost never
//! depends on `n`.
//!
//! [`stop`](Monitor::stop) and [`start`](Monitor::start) are each one
//! compare-and-swap of `base` (freeze the running time; move the base so it
//! carries on), retried if `base` changed meanwhile: of concurrent calls,
//! each takes effect whole, in one order, and none waits for another.
//!
//! # The state, in one process or in shared memory
//!
//! Everything a monitor counts is one `#[repr(C)]` struct of atomics with no
//! pointer in it (`state.rs`, about 32 KiB): a cache line of what changes
//! rarely (`base`, the window, the counts of emissions without a gap or
//! made while stopped), a line that starts with what every emission changes
//! (`last`, the batched count, the extremes, the counters of the shortest
//! gaps), the rest of the histogram's 3776 counters inline, then the
//! window's ring of 130 samples inline. A monitor of one process keeps it on
//! the heap. A [shared](MonitorBuilder::shared_memory) monitor keeps it in a
//! file mapped by every process that uses it (`mapped.rs`): a 64-byte header
//! (magic, layout version, kind, length), then the same struct, at whatever
//! address each process maps it; the trailing window is stored in it and
//! checked by every process that attaches. The clock is then the host's
//! monotonic clock, which reads the same in every process, so `base` and
//! the stamps mean the same to all of them, and the emit path is the code
//! above, unchanged.
//!
//! # Processes that die
//!
//! Every change to the state is one atomic operation, and no operation
//! waits for another process: there is no lock, so a process killed at any
//! instruction leaves the state as it was just before or just after one
//! operation, and blocks no other. Each such state is consistent:
//!
//! - killed before its swap of `last`, an emission did not happen;
//! - between that swap and its bucket's add, it is not counted (its `emit`
//!   never returned), and the next emission's gap is measured from its
//!   stamp: one gap is split, none is counted twice;
//! - between the add and the extremes, it is counted, and the extremes may
//!   miss its gap;
//! - in the middle of writing a window sample, the sample's tag stays 0:
//!   readers skip it (as they skip one being written), and `latest` uses
//!   the next slot's sample, an error of at most one slot's emissions until
//!   the window moves past it;
//! - a stop or start took effect whole, or not at all.

mod builder;
mod gaps;
#[cfg(feature = "shared-memory")]
mod mapped;
mod snapshots;
mod state;
mod stats;
mod window;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub use builder::MonitorBuilder;
pub use snapshots::Snapshots;
pub use stats::{Snapshot, Stat, Summary};

#[cfg(feature = "shared-memory")]
use crate::Error;
use crate::clock::{ClockSource, instant_of, ns_of, saturating_ns};
use state::{Place, STOPPED, State};
use window::Slots;

/// Counts emissions and computes live statistics: mean, trailing-window,
/// shortest and longest gap, and percentiles of the gaps.
///
/// A `Monitor` is a cheap handle: clones share one monitor. It is
/// `Send + Sync`; [`emit`](Monitor::emit) is lock-free and exact under any
/// concurrency. Time spent [stopped](Monitor::stop) counts in no statistic.
/// Built with [`shared_memory`](MonitorBuilder::shared_memory), one monitor
/// is shared by the processes of a host in the same way.
///
/// # Examples
///
/// ```
/// use fueltank::Monitor;
///
/// let monitor = Monitor::new();
/// for _ in 0..3 {
///     // ... do some work ...
///     monitor.emit();
/// }
/// assert_eq!(monitor.total(), 3);
/// let summary = monitor.stop();
/// assert_eq!(summary.total, 3);
/// ```
#[derive(Clone)]
pub struct Monitor {
    shared: Arc<View>,
}

/// One process's handle on a monitor's [`State`]: where it lives, and the
/// process's own view of it (its clock, its refresh).
struct View {
    place: Place,
    clock: ClockSource,
    /// The window's slots, derived from `window_ns`.
    slots: Slots,
    window_ns: u64,
    refresh_ns: u64,
}

impl Monitor {
    /// A running monitor on the default clock, with a 1 s trailing window
    /// and snapshots every 10 ms.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::Monitor;
    ///
    /// let monitor = Monitor::new();
    /// assert_eq!(monitor.total(), 0);
    /// assert!(monitor.mean().is_none());
    /// ```
    pub fn new() -> Monitor {
        MonitorBuilder::new().build_unchecked()
    }

    /// A builder to choose the refresh, the trailing window and the clock.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Monitor, clock::ManualClock};
    /// use std::time::Duration;
    ///
    /// let monitor = Monitor::builder()
    ///     .refresh(Duration::from_millis(100))
    ///     .window(Duration::from_secs(5))
    ///     .clock(ManualClock::new())
    ///     .build()?;
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn builder() -> MonitorBuilder {
        MonitorBuilder::new()
    }

    /// Removes the file of the shared monitor `name` names (see
    /// [`MonitorBuilder::shared_memory`]), so that the next build starts
    /// anew, but only if no process uses it: `Ok(true)` if it removed it,
    /// `Ok(false)` if there was none. A process uses the file from its
    /// build until its last [`Monitor`] (or [`Throttle`](crate::Throttle))
    /// on it is dropped, or it ends.
    ///
    /// # Errors
    ///
    /// [`Error::SharedMemory`], and the file stays, if a process uses it
    /// (stop them first: a process that kept a removed file would count
    /// into it, apart from the new one), if it is not a fueltank monitor
    /// file, or if it is one the build of `name` would refuse (a symbolic
    /// link, another user's file, one others may write: see
    /// [`SharedMemory`](crate::SharedMemory#who-can-attach-the-trust-model)).
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::Monitor;
    ///
    /// let name = format!("doc-remove-{}", std::process::id());
    /// let monitor = Monitor::builder().shared_memory(&name).build()?;
    /// monitor.emit();
    /// drop(monitor);
    /// assert!(Monitor::remove_shared_memory(&name)?);
    /// assert_eq!(Monitor::builder().shared_memory(&name).build()?.total(), 0); // anew
    /// # Monitor::remove_shared_memory(&name)?;
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    #[cfg(feature = "shared-memory")]
    #[cfg_attr(docsrs, doc(cfg(feature = "shared-memory")))]
    pub fn remove_shared_memory(name: impl Into<crate::SharedMemory>) -> Result<bool, Error> {
        crate::shm::remove(&name.into(), crate::shm::Kind::Monitor)
    }

    fn from_parts(clock: ClockSource, window_ns: u64, refresh_ns: u64) -> Monitor {
        let place = Place::heap(window_ns, clock.now_ns());
        Monitor::in_place(place, clock, window_ns, refresh_ns)
    }

    /// The monitor in the shared-memory file named `name`, created or
    /// attached to; on the host's clock.
    #[cfg(feature = "shared-memory")]
    fn shared_memory(
        shared: &crate::SharedMemory,
        clock: ClockSource,
        window_ns: u64,
        refresh_ns: u64,
    ) -> Result<Monitor, Error> {
        let place = mapped::open(shared, &clock, window_ns)?;
        Ok(Monitor::in_place(
            place,
            ClockSource::Host,
            window_ns,
            refresh_ns,
        ))
    }

    fn in_place(place: Place, clock: ClockSource, window_ns: u64, refresh_ns: u64) -> Monitor {
        Monitor {
            shared: Arc::new(View {
                place,
                clock,
                slots: Slots::of(window_ns),
                window_ns,
                refresh_ns,
            }),
        }
    }

    /// Counts one emission, now.
    ///
    /// Lock-free, and exact under any concurrency: every call is counted,
    /// and its gap to the emission before it is recorded. While the monitor
    /// is stopped the emission counts in [`total`](Monitor::total) only, in
    /// no statistic.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::Monitor;
    ///
    /// let monitor = Monitor::new();
    /// std::thread::scope(|s| {
    ///     for _ in 0..4 {
    ///         s.spawn(|| (0..1000).for_each(|_| monitor.emit()));
    ///     }
    /// });
    /// assert_eq!(monitor.total(), 4000);
    /// ```
    #[inline]
    pub fn emit(&self) {
        self.shared.emit_now();
    }

    /// Counts `n` emissions now (a batch: the gaps between them are zero),
    /// in constant time.
    pub(crate) fn emit_n(&self, n: u64) {
        let Some(rest) = n.checked_sub(1) else {
            return;
        };
        let emitted = self.shared.emit_now();
        // A lone emission (every `has_fuel`) skips the batch's atomic.
        if rest > 0 {
            let state = self.shared.state();
            saturating_add(
                if emitted {
                    &state.batched
                } else {
                    &state.stopped
                },
                rest,
            );
        }
    }

    /// Counts one emission that happened at `at`.
    ///
    /// An emission later than every emission so far is recorded as
    /// [`emit`](Monitor::emit) records one, with its gap to the latest. One
    /// *earlier* than the latest emission (reported late, or out of order by
    /// another thread) counts in [`total`](Monitor::total) and the mean
    /// at once, and in the trailing window of [`latest`](Monitor::latest)
    /// with the next emission in order (the window keeps its counts at
    /// those, not at the time a late one names), but adds no gap: the gaps already recorded are left
    /// exactly as they were, so [`lo_hi`](Monitor::lo_hi),
    /// [`hi_lo`](Monitor::hi_lo) and the percentiles are never corrupted.
    ///
    /// One *later* than now on the monitor's clock (a reporter whose clock
    /// runs ahead) is counted in the same way, without a gap: when it
    /// really happened is unknown, so it neither makes a gap that never
    /// happened nor pushes every later emission into its past. The next
    /// emission's gap is measured from the latest one before it.
    ///
    /// Instants are placed on the running time as it stands: one before
    /// the monitor was built counts as at its start, and one from before the
    /// latest [`start`](Monitor::start) as if there had been no stop since.
    /// On the default clock, an `Instant::now()` taken before the call is
    /// never later than now: the clock's counter is placed against
    /// `Instant` as each call reads them both.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Monitor, clock::ManualClock};
    /// use std::time::Duration;
    ///
    /// let clock = ManualClock::new();
    /// let monitor = Monitor::builder().clock(clock.clone()).build()?;
    /// let t0 = clock.now();
    /// clock.advance(Duration::from_millis(40));
    /// monitor.emit_at(t0);
    /// monitor.emit_at(t0 + Duration::from_millis(30));
    /// monitor.emit_at(t0 + Duration::from_millis(10)); // late: counted, no gap
    /// monitor.emit_at(t0 + Duration::from_secs(60)); // ahead: counted, no gap
    /// assert_eq!(monitor.total(), 4);
    /// assert_eq!(monitor.lo_hi().unwrap().interval, Duration::from_millis(30));
    /// assert_eq!(monitor.snapshot().gaps(), 1);
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn emit_at(&self, at: Instant) {
        self.shared.emit_at(self.shared.ns_of(at));
    }

    /// Every emission counted so far, exactly.
    ///
    /// It sums the counters of the gap histogram (there is no separate
    /// counter on the emit path), which takes about a microsecond: cheap
    /// for a reader, not for a hot loop.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::Monitor;
    ///
    /// let monitor = Monitor::new();
    /// monitor.emit();
    /// assert_eq!(monitor.total(), 1);
    /// ```
    pub fn total(&self) -> u64 {
        self.shared.total()
    }

    /// The mean over the whole running time: emissions while running /
    /// runtime (emissions while stopped count in the total only). `None`
    /// before the first emission.
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
    /// monitor.emit();
    /// clock.advance(Duration::from_secs(1));
    /// assert_eq!(monitor.mean().unwrap().per_second, 2.0);
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn mean(&self) -> Option<Stat> {
        let running = self.shared.running();
        Stat::of_count(running, self.shared.running_ns(self.shared.clock.now_ns()))
    }

    /// The rate over the trailing window (1 s unless built with
    /// [`window`](MonitorBuilder::window)), or over the running time while
    /// that is shorter. `None` before the first emission; a window with no
    /// emission in it (the work stopped) is a rate of 0/s, with an
    /// `interval` of [`Duration::MAX`].
    ///
    /// The window's start is rounded down to a slot of at most 1/64 of the
    /// window (a power of two of nanoseconds), and the rate is taken over
    /// the span actually covered, so the figure is unbiased. Emissions made
    /// concurrently with a slot's first one may be counted in either slot.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Monitor, clock::ManualClock};
    /// use std::time::Duration;
    ///
    /// let clock = ManualClock::new();
    /// let monitor = Monitor::builder().clock(clock.clone()).build()?;
    /// for _ in 0..300 {
    ///     clock.advance(Duration::from_millis(10)); // 100 a second...
    ///     monitor.emit();
    /// }
    /// for _ in 0..300 {
    ///     clock.advance(Duration::from_millis(5)); // ...then 200
    ///     monitor.emit();
    /// }
    /// let latest = monitor.latest().unwrap().per_second;
    /// assert!((195.0..=205.0).contains(&latest), "{latest}");
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn latest(&self) -> Option<Stat> {
        self.shared.latest()
    }

    /// The shortest gap between two consecutive emissions over the whole
    /// running time, and `1 / gap`. `None` before the second emission.
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
    /// clock.advance(Duration::from_millis(100));
    /// monitor.emit();
    /// clock.advance(Duration::from_millis(20));
    /// monitor.emit();
    /// assert_eq!(monitor.lo_hi().unwrap().interval, Duration::from_millis(20));
    /// assert_eq!(monitor.lo_hi().unwrap().per_second, 50.0);
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn lo_hi(&self) -> Option<Stat> {
        self.shared.extremes().map(|(min, _)| Stat::of_gap(min))
    }

    /// The longest gap between two consecutive emissions over the whole
    /// running time, and `1 / gap`. Stopped time is not part of any gap.
    /// `None` before the second emission.
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
    /// clock.advance(Duration::from_millis(100));
    /// monitor.emit();
    /// monitor.stop();
    /// clock.advance(Duration::from_secs(60)); // stopped: not a gap
    /// monitor.start();
    /// clock.advance(Duration::from_millis(200));
    /// monitor.emit();
    /// assert_eq!(monitor.hi_lo().unwrap().interval, Duration::from_millis(200));
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn hi_lo(&self) -> Option<Stat> {
        self.shared.extremes().map(|(_, max)| Stat::of_gap(max))
    }

    /// Stops (pauses) the monitor and returns its [`Summary`] (as part of
    /// [`Throttle::stop`](crate::Throttle::stop): see
    /// [Pausing and stopping](crate#pausing-and-stopping)). Running time
    /// stands still until [`start`](Monitor::start); emissions meanwhile
    /// count in the total only, in no statistic (the summary's mean is over
    /// the emissions while running). Calling it again while stopped returns the
    /// same summary.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Monitor, clock::ManualClock};
    /// use std::time::Duration;
    ///
    /// let clock = ManualClock::new();
    /// let monitor = Monitor::builder().clock(clock.clone()).build()?;
    /// clock.advance(Duration::from_secs(1));
    /// monitor.emit();
    /// let summary = monitor.stop();
    /// clock.advance(Duration::from_secs(9));
    /// assert_eq!(monitor.stop(), summary);
    /// assert_eq!(summary.runtime, Duration::from_secs(1));
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn stop(&self) -> Summary {
        self.shared.stop()
    }

    /// Starts the monitor again after [`stop`](Monitor::stop): running time
    /// and every statistic carry on where they stopped. Does nothing while
    /// running.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Monitor, clock::ManualClock};
    /// use std::time::Duration;
    ///
    /// let clock = ManualClock::new();
    /// let monitor = Monitor::builder().clock(clock.clone()).build()?;
    /// clock.advance(Duration::from_secs(1));
    /// monitor.stop();
    /// clock.advance(Duration::from_secs(5));
    /// monitor.start();
    /// clock.advance(Duration::from_secs(1));
    /// assert_eq!(monitor.stop().runtime, Duration::from_secs(2));
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn start(&self) {
        self.shared.start();
    }

    /// Whether the monitor is stopped.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::Monitor;
    ///
    /// let monitor = Monitor::new();
    /// monitor.stop();
    /// assert!(monitor.is_stopped());
    /// ```
    pub fn is_stopped(&self) -> bool {
        self.shared.state().base.load(Ordering::Acquire) & STOPPED != 0
    }

    /// The running time so far: since the monitor was built, less the time
    /// it spent stopped.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Monitor, clock::ManualClock};
    /// use std::time::Duration;
    ///
    /// let clock = ManualClock::new();
    /// let monitor = Monitor::builder().clock(clock.clone()).build()?;
    /// clock.advance(Duration::from_millis(1500));
    /// assert_eq!(monitor.runtime(), Duration::from_millis(1500));
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn runtime(&self) -> Duration {
        Duration::from_nanos(self.shared.running_ns(self.shared.clock.now_ns()))
    }

    /// Every statistic at once, with the distribution of the gaps
    /// ([`Snapshot::percentile`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::Monitor;
    ///
    /// let monitor = Monitor::new();
    /// monitor.emit();
    /// let snap = monitor.snapshot();
    /// assert_eq!(snap.total, 1);
    /// assert!(snap.lo_hi.is_none());
    /// ```
    pub fn snapshot(&self) -> Snapshot {
        self.shared.snapshot()
    }

    /// A [`Stream`](futures_core::Stream) of [`Snapshot`]s, one per refresh
    /// (10 ms unless built with [`refresh`](MonitorBuilder::refresh)).
    ///
    /// Driven by the monitor's clock and one timer: with a
    /// [`ManualClock`](crate::clock::ManualClock) it yields exactly when
    /// time is advanced past each tick. Nothing runs while nobody polls it;
    /// ticks missed meanwhile are skipped, not bunched up. It never ends.
    ///
    /// # Cancel safety
    ///
    /// `next()` on it is cancel safe: a dropped `next()` loses nothing, the
    /// next one yields at the next tick.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Monitor, clock::ManualClock};
    /// use futures::StreamExt;
    /// use std::time::Duration;
    ///
    /// let clock = ManualClock::new();
    /// let monitor = Monitor::builder()
    ///     .refresh(Duration::from_millis(100))
    ///     .clock(clock.clone())
    ///     .build()?;
    /// let mut snapshots = monitor.snapshots();
    /// monitor.emit();
    /// clock.advance(Duration::from_millis(100));
    /// let snap = futures::executor::block_on(snapshots.next()).unwrap();
    /// assert_eq!(snap.total, 1);
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn snapshots(&self) -> Snapshots {
        Snapshots::new(self.clone())
    }
}

impl Default for Monitor {
    fn default() -> Monitor {
        Monitor::new()
    }
}

impl fmt::Debug for Monitor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Monitor")
            .field("total", &self.total())
            .field("runtime", &self.runtime())
            .field("stopped", &self.is_stopped())
            .field("shared_memory", &self.shared.place.path())
            .finish()
    }
}

/// Adds `n` to `counter`, stopping at `u64::MAX`.
fn saturating_add(counter: &AtomicU64, n: u64) {
    let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
        Some(c.saturating_add(n))
    });
}

impl View {
    #[inline(always)]
    fn state(&self) -> &State {
        self.place.state()
    }

    /// `at` in the clock's nanoseconds.
    fn ns_of(&self, at: Instant) -> u64 {
        match self.clock {
            #[cfg(feature = "shared-memory")]
            ClockSource::Host => crate::shm::host_ns_of(at),
            // The counter drifts from `Instant` by its calibration (tens of
            // ppm): placed by its distance from a reading of both, an
            // `Instant::now()` is never ahead of the counter's now.
            ClockSource::Monotonic => {
                let (now, now_ns) = (Instant::now(), self.clock.now_ns());
                match now.checked_duration_since(at) {
                    Some(ago) => now_ns.saturating_sub(saturating_ns(ago)),
                    None => now_ns.saturating_add(saturating_ns(at - now)),
                }
            }
            _ => ns_of(at),
        }
    }

    /// A reading of the clock as an `Instant`.
    fn instant_of(&self, ns: u64) -> Instant {
        match self.clock {
            #[cfg(feature = "shared-memory")]
            ClockSource::Host => crate::shm::instant_of_host_ns(ns),
            _ => instant_of(ns),
        }
    }

    /// Counts one emission now; `false` if the monitor was stopped.
    #[inline]
    fn emit_now(&self) -> bool {
        let state = self.state();
        'base: loop {
            let base = state.base.load(Ordering::Acquire);
            if base & STOPPED != 0 {
                self.count_stopped();
                return false;
            }
            let mut prev = state.last.load(Ordering::Relaxed);
            loop {
                // The latest emission was seen before the clock was read,
                // so this one is later even if the reading (from another
                // core) is a few nanoseconds behind: a zero gap.
                let stamp = self.stamp(base).max(prev);
                // A stop (and start) since `base` was read would put the
                // stopped time into this stamp: read again, after the clock.
                if state.base.load(Ordering::Relaxed) != base {
                    continue 'base;
                }
                match state.last.compare_exchange_weak(
                    prev,
                    stamp,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        self.gapped(prev, stamp);
                        return true;
                    }
                    Err(latest) => prev = latest,
                }
            }
        }
    }

    fn emit_at(&self, at_ns: u64) {
        let state = self.state();
        'base: loop {
            let base = state.base.load(Ordering::Acquire);
            if base & STOPPED != 0 {
                return self.count_stopped();
            }
            // After now (a reporter's clock ahead of ours): when it really
            // happened is unknown, so it makes no gap, and `last` stays
            // (moved into the future, it would put every later emission
            // in its past; clamped to now, it would add a gap that never
            // happened).
            if at_ns > self.clock.now_ns() {
                return self.count_ungapped();
            }
            let stamp = at_ns.saturating_sub(base).saturating_add(1);
            let mut prev = state.last.load(Ordering::Relaxed);
            loop {
                if stamp < prev {
                    return self.count_ungapped();
                }
                if state.base.load(Ordering::Relaxed) != base {
                    continue 'base;
                }
                match state.last.compare_exchange_weak(
                    prev,
                    stamp,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return self.gapped(prev, stamp),
                    Err(latest) => prev = latest,
                }
            }
        }
    }

    /// The stamp of now: running ns + 1.
    #[inline]
    fn stamp(&self, base: u64) -> u64 {
        self.clock.now_ns().saturating_sub(base).saturating_add(1)
    }

    #[cold]
    fn count_ungapped(&self) {
        self.state().ungapped.fetch_add(1, Ordering::Relaxed);
    }

    #[cold]
    fn count_stopped(&self) {
        self.state().stopped.fetch_add(1, Ordering::Relaxed);
    }

    /// Records the emission stamped `stamp` that followed the one stamped
    /// `prev` (0: none).
    #[inline]
    fn gapped(&self, prev: u64, stamp: u64) {
        if prev == 0 {
            self.count_ungapped();
            return self.sample(stamp);
        }
        self.state().gaps.record(stamp - prev);
        if self.slots.crosses(prev - 1, stamp - 1) {
            self.sample(stamp);
        }
    }

    /// Notes the count before the emission stamped `stamp`, the first of
    /// its slot.
    #[cold]
    fn sample(&self, stamp: u64) {
        let count = self.running().saturating_sub(1);
        self.state()
            .samples
            .record(self.slots.slot(stamp - 1), count);
    }

    /// Emissions while running: the count behind every statistic.
    fn running(&self) -> u64 {
        let state = self.state();
        let sum = u128::from(state.ungapped.load(Ordering::Relaxed))
            + u128::from(state.batched.load(Ordering::Relaxed))
            + state.gaps.count();
        u64::try_from(sum).unwrap_or(u64::MAX)
    }

    /// Every emission, stopped or not.
    fn total(&self) -> u64 {
        self.running()
            .saturating_add(self.state().stopped.load(Ordering::Relaxed))
    }

    fn running_ns(&self, now: u64) -> u64 {
        let base = self.state().base.load(Ordering::Acquire);
        if base & STOPPED != 0 {
            base & !STOPPED
        } else {
            now.saturating_sub(base)
        }
    }

    fn latest(&self) -> Option<Stat> {
        let running = self.running_ns(self.clock.now_ns());
        let total = self.running();
        if total == 0 {
            return None;
        }
        if running <= self.window_ns {
            return Stat::of_count(total, running).or(Some(Stat::IDLE));
        }
        let first = self.slots.slot(running - self.window_ns);
        let start = self.slots.slot_start(first);
        let last = self.slots.slot(running);
        let before = self
            .state()
            .samples
            .count_before(first, last)
            .unwrap_or(total);
        Stat::of_count(total.saturating_sub(before), running - start).or(Some(Stat::IDLE))
    }

    /// Freezes the running time with one compare-and-swap of `base`: there
    /// is no lock for a process to die holding, and of concurrent stops
    /// exactly one freezes it (the others find it frozen).
    fn stop(&self) -> Summary {
        let state = self.state();
        let mut base = state.base.load(Ordering::Acquire);
        let running = loop {
            if base & STOPPED != 0 {
                break base & !STOPPED;
            }
            let running = self.clock.now_ns().saturating_sub(base).min(!STOPPED);
            match state.base.compare_exchange(
                base,
                STOPPED | running,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break running,
                Err(actual) => base = actual,
            }
        };
        Summary::new(running, self.total(), self.running())
    }

    /// Moves `base` so that the running time carries on from the frozen
    /// one, with one compare-and-swap (as `stop`).
    fn start(&self) {
        let state = self.state();
        let mut base = state.base.load(Ordering::Acquire);
        while base & STOPPED != 0 {
            let running = base & !STOPPED;
            let resumed = self.clock.now_ns().saturating_sub(running) & !STOPPED;
            match state
                .base
                .compare_exchange(base, resumed, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return,
                Err(actual) => base = actual,
            }
        }
    }

    /// The exact shortest and longest gap, batches' zero gaps included.
    fn extremes(&self) -> Option<(u64, u64)> {
        let state = self.state();
        let batched = state.batched.load(Ordering::Relaxed) > 0;
        match (state.gaps.extremes(), batched) {
            (Some((_, max)), true) => Some((0, max)),
            (None, true) => Some((0, 0)),
            (extremes, false) => extremes,
        }
    }

    fn snapshot(&self) -> Snapshot {
        let state = self.state();
        let now = self.clock.now_ns();
        let total = self.total();
        let counted = self.running();
        let running = self.running_ns(now);
        // Batches' zero gaps first: the lowest value.
        let batched = state.batched.load(Ordering::Relaxed);
        let mut gaps: Vec<(u64, u64)> = (batched > 0).then_some((0, batched)).into_iter().collect();
        state
            .gaps
            .for_each(|i, n| gaps.push((gaps::representative(i), n)));
        let extremes = self.extremes();
        Snapshot {
            at: self.instant_of(now),
            total,
            mean: Stat::of_count(counted, running),
            latest: self.latest(),
            lo_hi: extremes.map(|(min, _)| Stat::of_gap(min)),
            hi_lo: extremes.map(|(_, max)| Stat::of_gap(max)),
            gaps,
            extremes,
        }
    }
}
