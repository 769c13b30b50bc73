//! A clock that moves only when told to, and the timers it drives.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::task::Waker;
use std::time::{Duration, Instant};

use super::{Clock, instant_of, ns_of, saturating_ns};
use crate::sync::{AtomicU64, Mutex, Ordering, lock};

/// A clock for tests: it starts at the real present and moves only by
/// [`advance`](ManualClock::advance).
///
/// Clones share one time. Tanks and monitors built with a `ManualClock` also
/// take their timers from it: `advance` fires every timer that falls due, in
/// order, before it returns, so waiting futures are granted deterministically.
///
/// # Examples
///
/// ```
/// use fueltank::{Rate, Tank, clock::ManualClock};
/// use std::time::Duration;
///
/// let clock = ManualClock::new();
/// let tank = Tank::builder(Rate::per_second(10)?).clock(clock.clone()).build()?;
/// assert!(tank.has_fuel());
/// assert!(!tank.has_fuel());
/// clock.advance(Duration::from_millis(100));
/// assert!(tank.has_fuel());
/// # Ok::<(), fueltank::Error>(())
/// ```
#[derive(Clone)]
pub struct ManualClock {
    inner: Arc<Inner>,
}

struct Inner {
    now_ns: AtomicU64,
    /// Where the advances asked for so far lead: `now_ns` moves there in
    /// steps, one timer deadline at a time.
    target_ns: AtomicU64,
    timers: Mutex<Timers>,
}

#[derive(Default)]
struct Timers {
    next_id: u64,
    /// Armed timers by (deadline, id); ids keep equal deadlines in arming order.
    armed: BTreeMap<(u64, u64), Waker>,
}

impl ManualClock {
    /// A clock standing at the real present.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::clock::{Clock, ManualClock};
    ///
    /// let clock = ManualClock::new();
    /// assert!(clock.now() <= std::time::Instant::now());
    /// ```
    pub fn new() -> ManualClock {
        ManualClock {
            inner: Arc::new({
                let now = ns_of(Instant::now());
                Inner {
                    now_ns: AtomicU64::new(now),
                    target_ns: AtomicU64::new(now),
                    timers: Mutex::new(Timers::default()),
                }
            }),
        }
    }

    /// Moves time forward by `by`, firing each timer that falls due on the
    /// way at its own deadline, in order: the clock stands at a timer's
    /// deadline while it fires, then moves on.
    ///
    /// Tank timers run their driver inside this call, so when it returns,
    /// every waiter whose fuel fell due has been granted and woken, as if
    /// time had passed in small steps. What it cannot do is run *tasks* in
    /// between: a task that takes fuel in a loop is polled by its executor,
    /// after this returns, and sees one grant for this whole advance (the
    /// one its queued waiter got); to let it run between steps, use
    /// [`advance_in_steps`](ManualClock::advance_in_steps).
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Tank, clock::ManualClock};
    /// use std::time::Duration;
    ///
    /// let clock = ManualClock::new();
    /// let tank = Tank::builder(Rate::per_second(1)?).initial(0).clock(clock.clone()).build()?;
    /// let waiter = std::thread::spawn({
    ///     let tank = tank.clone();
    ///     move || tank.blocking_await_fuel()
    /// });
    /// while tank.waiting() == 0 {
    ///     std::thread::yield_now();
    /// }
    /// clock.advance(Duration::from_secs(1));
    /// waiter.join().unwrap();
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn advance(&self, by: Duration) {
        let by = saturating_ns(by);
        let inner = &self.inner;
        // Advances add up, even from several threads at once.
        let target = inner
            .target_ns
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                Some(t.saturating_add(by))
            })
            .map_or(u64::MAX, |t| t.saturating_add(by));
        loop {
            let waker = {
                let mut timers = lock(&inner.timers);
                match timers.armed.first_entry() {
                    Some(entry) if entry.key().0 <= target => {
                        inner.now_ns.fetch_max(entry.key().0, Ordering::AcqRel);
                        entry.remove()
                    }
                    _ => {
                        inner.now_ns.fetch_max(target, Ordering::AcqRel);
                        return;
                    }
                }
            };
            // Outside the lock: a tank's driver re-arms its timer from here.
            waker.wake();
        }
    }

    /// Moves time forward by `by` in steps of `step`, letting the executor
    /// run its other tasks between steps: a task that takes fuel in a loop,
    /// polled only by its executor, sees each step's grants as they come
    /// (where one [`advance`](ManualClock::advance) grants only the waiters
    /// already queued). A `step` of zero is one step of `by`.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Hardcap, Rate, Tank, clock::ManualClock};
    /// use std::time::Duration;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), fueltank::Error> {
    /// let clock = ManualClock::new();
    /// let tank = Tank::builder(Rate::per_second(10)?)
    ///     .hardcap(Hardcap::One) // banks nothing: each grant must be taken in its time
    ///     .initial(0)
    ///     .clock(clock.clone())
    ///     .build()?;
    /// let worker = tokio::spawn({
    ///     let tank = tank.clone();
    ///     async move {
    ///         let mut done = 0;
    ///         while done < 10 {
    ///             tank.await_fuel().await; // one job per fuel
    ///             done += 1;
    ///         }
    ///         done
    ///     }
    /// });
    /// tokio::task::yield_now().await; // the worker queues
    /// clock.advance_in_steps(Duration::from_secs(1), Duration::from_millis(100)).await;
    /// assert_eq!(worker.await.unwrap(), 10);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn advance_in_steps(&self, by: Duration, step: Duration) {
        let step = if step.is_zero() { by } else { step };
        let mut left = by;
        while !left.is_zero() {
            let this = left.min(step);
            self.advance(this);
            left -= this;
            YieldNow(false).await;
        }
    }

    /// The current time (also through [`Clock::now`], without importing
    /// the trait).
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::clock::ManualClock;
    /// use std::time::Duration;
    ///
    /// let clock = ManualClock::new();
    /// let start = clock.now();
    /// clock.advance(Duration::from_secs(2));
    /// assert_eq!(clock.now() - start, Duration::from_secs(2));
    /// ```
    pub fn now(&self) -> Instant {
        instant_of(self.now_ns())
    }

    #[inline]
    pub(crate) fn now_ns(&self) -> u64 {
        self.inner.now_ns.load(Ordering::Acquire)
    }
}

impl Default for ManualClock {
    fn default() -> ManualClock {
        ManualClock::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        ManualClock::now(self)
    }
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManualClock")
            .field("now", &self.now())
            .finish()
    }
}

/// Returns `Pending` once, waking itself: the executor runs what else is
/// ready first.
struct YieldNow(bool);

impl std::future::Future for YieldNow {
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.0 {
            return std::task::Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}

/// A one-shot timer on a [`ManualClock`].
#[derive(Debug)]
pub(crate) struct ManualTimer {
    clock: ManualClock,
    key: Option<(u64, u64)>,
}

impl ManualTimer {
    pub(crate) fn new(clock: ManualClock) -> ManualTimer {
        ManualTimer { clock, key: None }
    }

    /// Arms the timer to wake `waker` at `deadline_ns`; returns `true`,
    /// without arming, if the deadline has already passed.
    pub(crate) fn arm(&mut self, deadline_ns: u64, waker: &Waker) -> bool {
        let mut timers = lock(&self.clock.inner.timers);
        if let Some(key) = self.key.take() {
            timers.armed.remove(&key);
        }
        if deadline_ns <= self.clock.now_ns() {
            return true;
        }
        let key = (deadline_ns, timers.next_id);
        timers.next_id += 1;
        timers.armed.insert(key, waker.clone());
        self.key = Some(key);
        false
    }

    pub(crate) fn disarm(&mut self) {
        if let Some(key) = self.key.take() {
            lock(&self.clock.inner.timers).armed.remove(&key);
        }
    }
}

impl Drop for ManualTimer {
    fn drop(&mut self) {
        self.disarm();
    }
}
