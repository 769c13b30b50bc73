//! The shared state of a tank: the lock-free word, and behind a lock the
//! bucket, the line of waiters and the timer, with the driver that serves
//! the line.
//!
//! # Serving the line
//!
//! Waiters queue in arrival order. The driver grants the head as soon as the
//! bucket holds its fuel, then the next, and so on; when the head must wait,
//! it arms the tank's one timer for the moment the head's fuel is due. The
//! timer wakes the driver itself (not a waiting task), wherever the timer
//! fires: the `async-io` reactor, a thread in `block_on`, or
//! [`ManualClock::advance`](crate::clock::ManualClock::advance). So a waiter
//! is woken exactly once, with its fuel; a late timer is caught up because
//! the bucket counts from absolute time; and with nobody waiting, nothing
//! is armed and nothing runs.
//!
//! Every operation under the lock ends the same way (see [`Shared::locked`]):
//! drive the line, then either keep the state in the core (waiters queued,
//! paused, `Window`, or a rate beyond the word) or hand it back to the word.

use std::ptr::NonNull;
use std::sync::{Arc, Weak};
use std::task::{Poll, Wake, Waker};

use super::bucket::{Bucket, Gcra, Window};
use super::permit::Stamp;
use super::waiters::{GRANTED, List, Node, QUEUED, REJECTED};
use super::word::{Fast, Published, SPAN_LIMIT, TICKS_LIMIT, Word};
use crate::clock::ClockSource;
use crate::sync::{Mutex, lock};
use crate::timer::Timer;
use crate::{Hardcap, Rate};

pub(crate) struct Shared {
    pub(crate) word: Word,
    pub(crate) clock: ClockSource,
    /// A number no other tank of the process has (a `Fuel` names its tank).
    pub(crate) id: u64,
    core: Mutex<Core>,
    /// Runs the driver when the tank's timer fires.
    driver: Waker,
}

struct Core {
    rate: Rate,
    hardcap: Hardcap,
    bucket: Bucket,
    /// The word holds `tat`: the bucket's copy is stale.
    in_word: bool,
    /// Parameters last published to the word.
    published: Option<Published>,
    paused_at: Option<u64>,
    /// Time spent paused, in all (mirrored in the word): the bucket's own
    /// time is the clock less this.
    paused_total: u64,
    queue: List,
    /// Fuel asked for by the waiters in the line.
    queued_fuel: u64,
    waiting: usize,
    timer: Timer,
    /// Arm the timer this long before a due time, and wait out the rest on
    /// the timer's thread (see `TankBuilder::timer_correction`).
    correction: u64,
    /// Fuel given back so far, plus 2^40 per `set_rate` (see `refund`);
    /// mirrored in the word for lock-free takers.
    refunds: u64,
}

/// How a waiter's first visit to the core went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Enqueued {
    /// Fuel taken at once (with its stamp); nothing queued.
    Granted(Stamp),
    /// In the line.
    Queued,
    /// Larger than the tank's capacity, which is given.
    TooLarge(u64),
    /// The line ahead cannot be served before the deadline.
    TooLate,
}

/// How a queued waiter ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Granted, with the grant's stamp.
    Granted(Stamp),
    /// Rejected by a `set_rate` that shrank the capacity below the request.
    TooLarge(u64),
    TimedOut,
}

impl Shared {
    pub(crate) fn new(
        rate: Rate,
        hardcap: Hardcap,
        initial: u64,
        correction: u64,
        clock: ClockSource,
    ) -> Arc<Shared> {
        let now = clock.now_ns();
        let bucket = match hardcap {
            Hardcap::Window => Bucket::Window(Window::new(rate, initial, now)),
            _ => Bucket::Gcra(Gcra::new(rate, hardcap.cap(rate.max_n()), initial, now)),
        };
        Shared::with_bucket(rate, hardcap, bucket, correction, clock)
    }

    /// A tank whose bucket is already in a given state.
    pub(crate) fn with_bucket(
        rate: Rate,
        hardcap: Hardcap,
        bucket: Bucket,
        correction: u64,
        clock: ClockSource,
    ) -> Arc<Shared> {
        // A manual clock's timers are exact, and spinning on it would never end.
        let correction = if clock.manual().is_some() {
            0
        } else {
            correction
        };
        let shared = Arc::new_cyclic(|weak: &Weak<Shared>| Shared {
            word: Word::new(),
            core: Mutex::new(Core {
                rate,
                hardcap,
                bucket,
                in_word: false,
                published: None,
                paused_at: None,
                paused_total: 0,
                queue: List::default(),
                queued_fuel: 0,
                waiting: 0,
                timer: Timer::new(&clock),
                correction,
                refunds: 0,
            }),
            clock,
            id: {
                static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
                NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            },
            driver: Waker::from(Arc::new(Driver(weak.clone()))),
        });
        shared.locked(|_, _| ());
        shared
    }

    /// Runs `op` under the core lock with the state in the core, then serves
    /// the line, hands the state back to the word if it can, unlocks, and
    /// wakes whoever was granted.
    fn locked<R>(&self, op: impl FnOnce(&mut Core, u64) -> R) -> R {
        self.locked_with(false, |core, now, _| op(core, now)).0
    }

    /// As [`Shared::locked`], with `op` given the list of wakers to wake
    /// once unlocked; with `spin`, the line's head may be due within the
    /// timer correction, and then its due time is returned for the caller
    /// to wait out before driving again.
    fn locked_with<R>(
        &self,
        spin: bool,
        op: impl FnOnce(&mut Core, u64, &mut Vec<Waker>) -> R,
    ) -> (R, Option<u64>) {
        let mut wakers = Vec::new();
        let result = {
            let mut core = lock(&self.core);
            core.own(&self.word);
            let result = op(&mut core, self.clock.now_ns(), &mut wakers);
            let (now, spin_until) = core.drive(&self.clock, &self.driver, &mut wakers, spin);
            core.release(&self.word, now);
            (result, spin_until)
        };
        // Outside the lock: a waker may call back into the tank.
        for waker in wakers {
            waker.wake();
        }
        result
    }

    /// The timer fired: serve the line, waiting out the last stretch before
    /// a due time here if the timer was set early by the correction.
    fn on_timer(&self) {
        let mut spin_until = self.locked_with(true, |_, _, _| ()).1;
        while let Some(due) = spin_until {
            while self.clock.now_ns() < due {
                std::hint::spin_loop();
            }
            spin_until = self.locked_with(true, |_, _, _| ()).1;
        }
    }

    /// Takes `n` fuel now, or returns `false`; never overtakes a waiter.
    #[inline(always)]
    pub(crate) fn take(&self, n: u64) -> bool {
        if n == 0 {
            return true;
        }
        match self.word.take(self.clock.now_ns(), n) {
            Fast::Taken { .. } => true,
            Fast::Empty | Fast::Queued => false,
            Fast::Locked => self.take_locked(n).is_some(),
        }
    }

    /// As [`Shared::take`], with the grant's stamp, so that the fuel can be
    /// given back.
    #[inline]
    pub(crate) fn take_stamped(&self, n: u64) -> Option<Stamp> {
        if n == 0 {
            return Some(Stamp::default());
        }
        // Read before taking: a refund made between the two could only
        // make this grant's refund more cautious, never less.
        let refunds = self.word.refunds();
        match self.word.take(self.clock.now_ns(), n) {
            Fast::Taken { tat, epoch, s, tol } => {
                let at = match tol {
                    u64::MAX => u64::MAX,
                    // Read after the take: a resume since can only make
                    // this earlier, the cautious way.
                    tol => (epoch + (tat + tol) / s).saturating_sub(self.word.paused_total()),
                };
                Some(Stamp { at, refunds })
            }
            Fast::Empty | Fast::Queued => None,
            Fast::Locked => self.take_locked(n),
        }
    }

    #[cold]
    fn take_locked(&self, n: u64) -> Option<Stamp> {
        self.locked(|core, now| {
            if core.queue.is_empty() && n <= core.request_cap() {
                core.try_take(now, n)
            } else {
                None
            }
        })
    }

    /// Gives back `n` fuel granted with `stamp` and never spent (see
    /// `Core::refund`).
    pub(crate) fn refund(&self, n: u64, stamp: Stamp) {
        self.locked(|core, now| core.refund(n, stamp, now, &self.word));
    }

    pub(crate) fn level(&self) -> u64 {
        if let Some(level) = self.word.level(self.clock.now_ns()) {
            return level;
        }
        self.locked(|core, now| {
            let now = core.now_eff(now);
            match &mut core.bucket {
                Bucket::Gcra(gcra) => gcra.level(now),
                Bucket::Window(window) => window.level(now),
            }
        })
    }

    /// How long until `n` fuel could be granted to a newcomer, counting the
    /// line ahead; `None` while paused or if `n` can never fit.
    pub(crate) fn wait_for(&self, n: u64) -> Option<u64> {
        // Lock-free while nobody waits: a `Retry-After` on every rejected
        // request must not take the lock from the requests let through.
        if let Some(wait) = self.word.wait(self.clock.now_ns(), n) {
            return Some(wait);
        }
        self.locked(|core, now| {
            if n > core.request_cap() || core.paused_at.is_some() {
                return None;
            }
            let ahead = core.queued_fuel.saturating_add(n);
            Some(core.due(now, ahead).saturating_sub(now))
        })
    }

    pub(crate) fn rate(&self) -> Rate {
        lock(&self.core).rate
    }

    /// The `(epoch, tat)` of a `Limit`, `One` or `Unbounded` tank that
    /// nobody waits on; `None` otherwise.
    pub(crate) fn idle_gcra(&self) -> Option<(u64, i128)> {
        self.locked(|core, _| match &core.bucket {
            Bucket::Gcra(gcra) if core.queue.is_empty() && core.paused_at.is_none() => {
                Some((gcra.epoch(), gcra.tat()))
            }
            _ => None,
        })
    }

    pub(crate) fn hardcap(&self) -> Hardcap {
        lock(&self.core).hardcap
    }

    pub(crate) fn waiting(&self) -> usize {
        lock(&self.core).waiting
    }

    pub(crate) fn set_rate(&self, rate: Rate) {
        self.locked_with(false, |core, now, wakers| core.set_rate(rate, now, wakers));
    }

    pub(crate) fn pause(&self) {
        self.locked(|core, now| {
            core.paused_at.get_or_insert(now);
        });
    }

    pub(crate) fn resume(&self) {
        self.locked(|core, now| {
            if let Some(paused_at) = core.paused_at.take() {
                let paused_for = now.saturating_sub(paused_at);
                core.paused_total = core.paused_total.saturating_add(paused_for);
                self.word.set_paused_total(core.paused_total);
                match &mut core.bucket {
                    Bucket::Gcra(gcra) => gcra.skip(paused_for),
                    Bucket::Window(window) => window.skip(paused_for),
                }
            }
        });
    }

    /// First visit of a waiter: take the fuel at once if the line is empty
    /// and the fuel is there, or else join the line.
    ///
    /// # Safety
    ///
    /// `node` is pinned and in no list, and its owner calls [`Shared::cancel`]
    /// (or observes a final state) before dropping it.
    pub(crate) unsafe fn enqueue(
        &self,
        node: NonNull<Node>,
        n: u64,
        deadline: Option<u64>,
        waker: &Waker,
    ) -> Enqueued {
        self.locked(|core, now| {
            let cap = core.request_cap();
            if n > cap {
                return Enqueued::TooLarge(cap);
            }
            if core.queue.is_empty()
                && let Some(stamp) = core.try_take(now, n)
            {
                return Enqueued::Granted(stamp);
            }
            if let (Some(deadline), None) = (deadline, core.paused_at) {
                let ahead = core.queued_fuel.saturating_add(n);
                if core.due(now, ahead) > deadline {
                    return Enqueued::TooLate;
                }
            }
            // SAFETY: the caller's contract, and we hold the core lock.
            unsafe { core.queue.link(node, n, waker) };
            core.queued_fuel += n;
            core.waiting += 1;
            Enqueued::Queued
        })
    }

    /// A queued waiter was polled again: refresh its waker, or report how it
    /// ended.
    ///
    /// # Safety
    ///
    /// `node` was queued by [`Shared::enqueue`] and is still alive.
    pub(crate) unsafe fn poll_queued(&self, node: NonNull<Node>, waker: &Waker) -> Poll<Outcome> {
        let mut core = lock(&self.core);
        // SAFETY: alive (caller's contract).
        match unsafe { node.as_ref() }.state() {
            QUEUED => {
                // SAFETY: alive, in this list, under the core lock.
                unsafe { core.queue.set_waker(node, waker) };
                Poll::Pending
            }
            // SAFETY: alive, under the core lock.
            state => Poll::Ready(finished(state, unsafe { List::stamp(node) })),
        }
    }

    /// A queued waiter's deadline passed: serve the line first (a grant that
    /// is due beats the timeout), then leave it if still waiting.
    ///
    /// # Safety
    ///
    /// As for [`Shared::poll_queued`].
    pub(crate) unsafe fn expire(&self, node: NonNull<Node>) -> Outcome {
        self.locked_with(false, |core, _, wakers| {
            core.drive(&self.clock, &self.driver, wakers, false);
            // SAFETY: alive (caller's contract).
            match unsafe { node.as_ref() }.state() {
                QUEUED => {
                    // SAFETY: alive, in this list, under the core lock.
                    unsafe { core.leave(node) };
                    Outcome::TimedOut
                }
                // SAFETY: alive, under the core lock.
                state => finished(state, unsafe { List::stamp(node) }),
            }
        })
        .0
    }

    /// A waiter is dropped: leave the line, or give back fuel granted to it
    /// but never seen.
    ///
    /// # Safety
    ///
    /// As for [`Shared::poll_queued`].
    pub(crate) unsafe fn cancel(&self, node: NonNull<Node>) {
        self.locked(|core, now| {
            // SAFETY: alive (caller's contract).
            let node_ref = unsafe { node.as_ref() };
            match node_ref.state() {
                // SAFETY: alive, in this list, under the core lock.
                QUEUED => unsafe { core.leave(node) },
                GRANTED => {
                    // SAFETY: alive, under the core lock.
                    let (n, stamp) = unsafe { (List::n(node), List::stamp(node)) };
                    core.refund(n, stamp, now, &self.word);
                }
                _ => {}
            }
        });
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

/// The outcome recorded in a finished node.
fn finished(state: u8, stamp: Stamp) -> Outcome {
    match state {
        GRANTED => Outcome::Granted(stamp),
        REJECTED => Outcome::TooLarge(stamp.at),
        _ => Outcome::TimedOut,
    }
}

impl Core {
    /// Moves the state out of the word, so the core may change it.
    fn own(&mut self, word: &Word) {
        if self.in_word {
            let tat = word.seize();
            debug_assert!(tat.is_some(), "only the core lock holder sets CORE");
            if let (Bucket::Gcra(gcra), Some(tat)) = (&mut self.bucket, tat) {
                gcra.set_tat(i128::from(tat));
            }
            self.in_word = false;
        }
    }

    /// Internal time as the bucket sees it: frozen while paused.
    fn now_eff(&self, now: u64) -> u64 {
        self.paused_at.map_or(now, |paused_at| paused_at.min(now))
    }

    fn request_cap(&self) -> u64 {
        self.hardcap.request_cap(self.rate.max_n())
    }

    /// Takes `n` from the bucket; returns the grant's stamp.
    fn try_take(&mut self, now: u64, n: u64) -> Option<Stamp> {
        let now = self.now_eff(now);
        let at = match &mut self.bucket {
            Bucket::Gcra(gcra) => {
                if !gcra.try_take(now, n) {
                    return None;
                }
                gcra.refundable_until().saturating_sub(self.paused_total)
            }
            Bucket::Window(window) => window.try_take(now, n)?,
        };
        Some(Stamp {
            at,
            refunds: self.refunds,
        })
    }

    fn due(&mut self, now: u64, n: u64) -> u64 {
        let now = self.now_eff(now);
        match &mut self.bucket {
            Bucket::Gcra(gcra) => gcra.due(now, n),
            Bucket::Window(window) => window.due(now, n),
        }
    }

    /// Gives back `n` fuel granted with `stamp`, at `now`, as if it had
    /// never been taken, as far as that is exact:
    ///
    /// - `Window`: its grants leave the log (those already out of every
    ///   window need nothing).
    /// - The others: the fuel goes back only if the bucket cannot have been
    ///   full since the grant — had it been, the fuel would have overflowed
    ///   and been lost anyway, and giving it back would break the cap. The
    ///   grant's stamp says until when that holds (`at`, in the bucket's own
    ///   time, which stands still while paused), if no fuel was given back
    ///   since; each fuel given back since brings that time one interval
    ///   closer. A `set_rate` ends it. Otherwise the fuel is spent. (Takes
    ///   since the grant may have kept the bucket from filling: the rule is
    ///   cautious there, never generous.)
    fn refund(&mut self, n: u64, stamp: Stamp, now: u64, word: &Word) {
        let bucket_now = self.now_eff(now).saturating_sub(self.paused_total);
        match &mut self.bucket {
            Bucket::Window(window) => window.refund(stamp.at, n),
            Bucket::Gcra(gcra) => {
                let (s, t) = gcra.scale();
                let since = u128::from(self.refunds.wrapping_sub(stamp.refunds));
                let earlier = (since * u128::from(t)).div_ceil(u128::from(s));
                let until = u128::from(stamp.at).saturating_sub(earlier);
                if u128::from(bucket_now) < until {
                    gcra.refund(n);
                    self.refunds = self.refunds.wrapping_add(n);
                    word.set_refunds(self.refunds);
                }
            }
        }
    }

    /// Takes a queued node out of the line.
    ///
    /// # Safety
    ///
    /// `node` is alive and in this core's list; the core lock is held.
    unsafe fn leave(&mut self, node: NonNull<Node>) {
        // SAFETY: the caller's contract.
        let n = unsafe { List::n(node) };
        // SAFETY: the caller's contract.
        if unsafe { self.queue.unlink(node) } {
            self.queued_fuel -= n;
            self.waiting -= 1;
        }
    }

    /// Grants the line in order while the bucket has fuel for the head, then
    /// arms the timer for the head's fuel, `correction` early. Returns the
    /// last clock reading, and with `spin`, the head's due time if it is
    /// within the correction (for the caller to wait out).
    fn drive(
        &mut self,
        clock: &ClockSource,
        driver: &Waker,
        wakers: &mut Vec<Waker>,
        spin: bool,
    ) -> (u64, Option<u64>) {
        let mut now = clock.now_ns();
        loop {
            let Some(head) = self.queue.front() else {
                self.timer.disarm();
                return (now, None);
            };
            // SAFETY: the head of this list, under the core lock.
            let n = unsafe { head.n() };
            if let Some(stamp) = self.try_take(now, n) {
                self.queue.pop_front();
                self.queued_fuel -= n;
                self.waiting -= 1;
                // SAFETY: just taken out of this list, under the core lock.
                wakers.extend(unsafe { head.finish(GRANTED, stamp) });
                continue;
            }
            if self.paused_at.is_some() {
                self.timer.disarm();
                return (now, None);
            }
            let due = self.due(now, n);
            // `try_take` just failed at `now`, so the fuel is due later; were
            // that ever not so, arming for `now` would spin this loop.
            debug_assert!(due > now || now == u64::MAX, "due {due} <= now {now}");
            if now == u64::MAX || due == u64::MAX {
                // Beyond the end of the clock: nothing will fall due.
                self.timer.disarm();
                return (now, None);
            }
            let due = due.max(now + 1);
            let early = due.saturating_sub(self.correction);
            let wake_at = if early > now {
                early
            } else if spin {
                self.timer.disarm();
                return (now, Some(due));
            } else {
                // Only the timer's thread waits out the rest: elsewhere
                // (a task calling in) take the timer's precision as it is.
                due
            };
            match self.timer.arm(wake_at, now, driver) {
                Poll::Pending => return (now, None),
                // The deadline passed while we computed it: go round.
                Poll::Ready(()) => now = clock.now_ns(),
            }
        }
    }

    /// Ends an operation under the lock: hands the state back to the word if
    /// nothing needs the core, else marks the word so `has_fuel` knows.
    fn release(&mut self, word: &Word, now: u64) {
        if !self.queue.is_empty() {
            return word.hold(true);
        }
        let Bucket::Gcra(gcra) = &mut self.bucket else {
            return word.hold(false);
        };
        if self.paused_at.is_some() {
            return word.hold(false);
        }
        let (s, t) = gcra.scale();
        let (tol, n_max) = match gcra.cap() {
            Some(cap) if u128::from(cap) * u128::from(t) <= u128::from(SPAN_LIMIT) => {
                ((cap - 1) * t, cap)
            }
            None if t <= SPAN_LIMIT => (u64::MAX, SPAN_LIMIT / t),
            _ => return word.hold(false),
        };
        gcra.settle(now);
        // The word counts ticks from its epoch up to TICKS_LIMIT: move the
        // epoch to `tat` (or now, if later) when the present nears the end.
        let half = i128::from(TICKS_LIMIT / 2);
        let fits = |gcra: &Gcra| {
            let rel = (i128::from(now) - i128::from(gcra.epoch())) * i128::from(s);
            (0..half).contains(&rel) && (0..half).contains(&gcra.tat())
        };
        if !fits(gcra) {
            let tat_ns = i128::from(gcra.epoch()) + gcra.tat().div_euclid(i128::from(s));
            let epoch = tat_ns.clamp(0, i128::from(now)) as u64;
            gcra.rebase(epoch);
            if !fits(gcra) {
                // An `Unbounded` bank older than the word can count.
                return word.hold(false);
            }
        }
        let params = Published {
            epoch: gcra.epoch(),
            s,
            t,
            tol,
            n_max,
        };
        word.publish(&mut self.published, params, gcra.tat() as u64);
        self.in_word = true;
    }

    /// Changes the rate at once; waiters whose request no longer fits the
    /// new capacity are rejected, their wakers added to `wakers`.
    fn set_rate(&mut self, rate: Rate, now: u64, wakers: &mut Vec<Waker>) {
        let now = self.now_eff(now);
        match &mut self.bucket {
            Bucket::Gcra(gcra) => gcra.set_rate(now, rate, self.hardcap.cap(rate.max_n())),
            Bucket::Window(window) => window.set_rate(rate),
        }
        self.rate = rate;
        let cap = self.request_cap();
        // SAFETY: nodes of this list, under the core lock.
        let too_large: Vec<_> = self
            .queue
            .iter()
            .filter(|w| unsafe { w.n() } > cap)
            .collect();
        for waiter in too_large {
            let rejected = Stamp {
                at: cap,
                refunds: 0,
            };
            // SAFETY: a node of this list, under the core lock; then taken
            // out of it.
            unsafe {
                self.leave(waiter.as_ptr());
                wakers.extend(waiter.finish(REJECTED, rejected));
            }
        }
        // Fuel granted under the old rate can no longer be given back
        // exactly (see `refund`).
        self.refunds = self.refunds.wrapping_add(1 << 40);
    }
}

/// The tank's timer wakes this, which runs the driver.
struct Driver(Weak<Shared>);

impl Wake for Driver {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if let Some(shared) = self.0.upgrade() {
            shared.on_timer();
        }
    }
}
