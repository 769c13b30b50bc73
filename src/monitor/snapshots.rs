//! [`Snapshots`]: a stream of [`Snapshot`]s, one per refresh.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;

use super::{Monitor, Snapshot};
use crate::timer::Timer;

/// The stream of [`Monitor::snapshots`]: one [`Snapshot`] per refresh, on
/// the monitor's clock, from one timer. Ticks are at fixed times from its
/// creation (no drift); ticks missed while nobody polled are skipped.
///
/// A stream from a [`Throttle`](crate::Throttle) built without a monitor
/// ends at once.
///
/// # Cancel safety
///
/// Cancel safe: dropping a pending `next()` loses nothing.
///
/// # Examples
///
/// ```
/// use fueltank::{Monitor, clock::ManualClock};
/// use futures::StreamExt;
/// use std::time::Duration;
///
/// let clock = ManualClock::new();
/// let monitor = Monitor::builder().clock(clock.clone()).build()?;
/// let mut snapshots = monitor.snapshots();
/// for tick in 1..=3 {
///     monitor.emit();
///     clock.advance(Duration::from_millis(10)); // the default refresh
///     let snap = futures::executor::block_on(snapshots.next()).unwrap();
///     assert_eq!(snap.total, tick);
/// }
/// # Ok::<(), fueltank::Error>(())
/// ```
#[must_use = "streams do nothing unless polled"]
pub struct Snapshots {
    monitor: Option<Monitor>,
    timer: Option<Timer>,
    /// The next tick, in clock nanoseconds.
    next_ns: u64,
}

impl Snapshots {
    pub(crate) fn new(monitor: Monitor) -> Snapshots {
        let shared = &monitor.shared;
        let next_ns = shared.clock.now_ns().saturating_add(shared.refresh_ns);
        Snapshots {
            timer: Some(Timer::new(&shared.clock)),
            monitor: Some(monitor),
            next_ns,
        }
    }

    /// A stream that ends at once.
    pub(crate) fn empty() -> Snapshots {
        Snapshots {
            monitor: None,
            timer: None,
            next_ns: 0,
        }
    }
}

impl Stream for Snapshots {
    type Item = Snapshot;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Snapshot>> {
        let this = self.get_mut();
        let (Some(monitor), Some(timer)) = (&this.monitor, &mut this.timer) else {
            return Poll::Ready(None);
        };
        let shared = &monitor.shared;
        let now = shared.clock.now_ns();
        if timer.arm(this.next_ns, now, cx.waker()).is_pending() {
            return Poll::Pending;
        }
        let now = shared.clock.now_ns().max(this.next_ns);
        let period = shared.refresh_ns.max(1);
        let missed = (now - this.next_ns) / period;
        this.next_ns = this
            .next_ns
            .saturating_add(period.saturating_mul(missed.saturating_add(1)));
        Poll::Ready(Some(monitor.snapshot()))
    }
}

impl fmt::Debug for Snapshots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshots")
            .field("monitor", &self.monitor)
            .finish_non_exhaustive()
    }
}
