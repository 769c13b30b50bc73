//! The default clock: the processor's time-stamp counter where it is
//! invariant (through `quanta`, which calibrates it against the system's
//! monotonic clock), else the system's monotonic clock.
//!
//! What a reading costs beside `Instant::now()`, `quanta`'s own reading and
//! the counter read alone is in `BENCHMARKS.md` (`benches/take.rs`).
//! `quanta` calibrates once, on first use (typically under a
//! millisecond, at most 200 ms, spinning): the builders warm it up, so that
//! no take on a hot path pays for it.

use std::sync::OnceLock;
use std::time::Instant;

use super::{Clock, instant_of, ns_of};

/// The default clock: fast and monotonic.
///
/// On x86-64 processors with an invariant time-stamp counter it reads the
/// counter, calibrated against [`Instant`]; elsewhere it is `Instant::now()`.
/// Readings taken on different cores may differ by a few nanoseconds in
/// either direction, which the crate tolerates everywhere.
///
/// # Examples
///
/// ```
/// use fueltank::clock::{Clock, MonotonicClock};
///
/// let clock = MonotonicClock;
/// let a = clock.now();
/// let b = clock.now();
/// assert!(b + std::time::Duration::from_micros(1) >= a);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MonotonicClock;

impl Clock for MonotonicClock {
    fn now(&self) -> Instant {
        instant_of(now_ns())
    }
}

impl MonotonicClock {
    /// The current time as nanoseconds from an origin fixed for the
    /// process, read as the tanks read it: no [`Instant`] is made, as
    /// [`now`](Clock::now) makes. For code that reads
    /// the time on a hot path and compares it with times it keeps as
    /// numbers ([`nanos_at`](MonotonicClock::nanos_at) puts an `Instant` on
    /// the same scale, exactly: `nanos_at(now())` is what `nanos()` read at
    /// that moment).
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::clock::{Clock, MonotonicClock};
    /// use std::time::Duration;
    ///
    /// let clock = MonotonicClock;
    /// let start = clock.nanos();
    /// let later = clock.now() + Duration::from_millis(5);
    /// assert!(clock.nanos_at(later) - start >= 5_000_000);
    /// ```
    #[inline]
    pub fn nanos(&self) -> u64 {
        now_ns()
    }

    /// `instant` on the scale of [`nanos`](MonotonicClock::nanos);
    /// saturating at 0 for an instant hours before the process's first
    /// reading.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::clock::{Clock, MonotonicClock};
    ///
    /// let clock = MonotonicClock;
    /// let (a, b) = (clock.now(), clock.nanos());
    /// assert!(clock.nanos_at(a) <= b);
    /// ```
    pub fn nanos_at(&self, instant: Instant) -> u64 {
        ns_of(instant)
    }
}

/// The counter, and the internal reading it was calibrated at.
struct Origin {
    clock: quanta::Clock,
    raw: u64,
    ns: u64,
}

static ORIGIN: OnceLock<Origin> = OnceLock::new();

#[cold]
fn origin() -> &'static Origin {
    ORIGIN.get_or_init(|| {
        let clock = quanta::Clock::new();
        // Read together, the closer pair of a few tries.
        let mut best = (u64::MAX, 0, 0);
        for _ in 0..5 {
            let before = clock.raw();
            let ns = ns_of(Instant::now());
            let after = clock.raw();
            let took = clock.delta_as_nanos(before, after);
            if took < best.0 {
                best = (took, before, ns);
            }
        }
        Origin {
            clock,
            raw: best.1,
            ns: best.2,
        }
    })
}

/// Calibrates the counter now, if not done yet (the builders call this).
pub(crate) fn warm_up() {
    let _ = origin();
}

/// The current reading in the crate's internal nanoseconds.
#[inline(always)]
pub(crate) fn now_ns() -> u64 {
    #[cfg(not(fueltank_loom))]
    {
        let origin = match ORIGIN.get() {
            Some(origin) => origin,
            None => origin(),
        };
        // `delta_as_nanos` is 0 for a reading before the origin (another
        // core's counter a little behind): never backwards past it.
        origin.ns + origin.clock.delta_as_nanos(origin.raw, origin.clock.raw())
    }
    #[cfg(fueltank_loom)]
    ns_of(Instant::now())
}
