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
//! A shared tank ([`HostBucket`](super::host::HostBucket)) keeps this line in each process, with
//! its one timer, but the order is the shared word's: each waiter
//! schedules its turn there when it joins (or, joining while the tank is
//! paused, when it resumes), and the driver lets the head go once its turn
//! has come. So the processes' lines interleave in the order their waiters
//! asked, and no process's timer can take another's fuel (but under
//! `Hardcap::One`: see [`Core::takes_turns`]).
//!
//! Every operation under the lock ends the same way (see [`Line::locked`]):
//! drive the line, then either keep the state in the core (waiters queued,
//! paused, `Window`, or a rate beyond the word) or hand it back to the word.

use std::ptr::NonNull;
use std::sync::{Arc, Weak};
use std::task::{Poll, Wake, Waker};

use super::bucket::{Bucket, Gcra, Replay, Window};
use super::host::{Host, Took, Turn};
use super::permit::Stamp;
use super::refunds::Refunds;
use super::waiters::{GRANTED, List, Node, QUEUED, REJECTED};
use super::word::{Fast, MAX_EXTRAS, Published, SPAN_LIMIT, TICKS_LIMIT, Word};
use std::time::Duration;

use crate::calibrate::{correction_for, follow_lateness};
use crate::clock::{ClockSource, saturating_ns};
use crate::sync::{Mutex, MutexGuard, lock};
use crate::timer::Timer;
use crate::{Hardcap, Rate};

pub(crate) struct Line {
    pub(crate) word: Word,
    pub(crate) clock: ClockSource,
    /// The bucket in shared memory, for takes without the lock.
    host: Option<Host>,
    /// A number no other tank of the process has (a `Fuel` names its tank).
    pub(crate) id: u64,
    /// Rates beside the first (`TankBuilder::also`).
    multi: bool,
    core: Mutex<Core>,
    /// Runs the driver when the tank's timer fires.
    driver: Waker,
}

struct Core {
    rate: Rate,
    hardcap: Hardcap,
    /// `Limit`'s capacity, when not `max_n` (`TankBuilder::burst`).
    burst: Option<u64>,
    bucket: Bucket,
    /// The rates of `TankBuilder::also`, each with its bucket under the
    /// same hardcap (never `Host`): a grant takes from every bucket or
    /// from none.
    also: Vec<(Rate, Bucket)>,
    /// The word holds `tat`: the bucket's copy is stale.
    in_word: bool,
    /// Parameters last published to the word.
    published: Option<Published>,
    /// The next publish must change the word's generation (the guard was
    /// lowered since the word last held the state).
    renew: bool,
    paused_at: Option<u64>,
    queue: List,
    /// Fuel asked for by the waiters in the line (a `u128`: a line of
    /// `u64` requests can hold more than `u64::MAX`).
    queued_fuel: u128,
    /// A shared tank: the waiters at the back of the line whose turn is not
    /// scheduled in the shared word yet (while paused), and their fuel.
    unscheduled: usize,
    unscheduled_fuel: u128,
    /// A shared tank: when this process last saw the shared rate unchanged.
    rate_seen_at: u64,
    /// Changes whenever a waiter leaves the line (appends keep it).
    line_version: u64,
    /// `Window`: the replay of the whole line, for the line it was made
    /// for (see `Replay`).
    tail: Option<(u64, Replay)>,
    waiting: usize,
    timer: Timer,
    /// Arm the timer this long before a due time, and wait out the rest on
    /// the timer's thread (see `TankBuilder::timer_correction`).
    correction: u64,
    /// A measured correction follows the lateness the timer shows
    /// ([`follow_lateness`]); one the user gave stays.
    adapts: bool,
    /// The deadline the timer is armed for, to see how late it fires.
    armed_at: Option<u64>,
    /// [`Core::find_request_cap`], kept: every take checks it.
    request_cap: u64,
    /// The last [`Core::release`] kept the state here with nobody in line:
    /// the word cannot hold this tank as it is (`Window`, paused, rates
    /// beyond it), so a take needs the lock alone (`Line::take_locked`).
    kept: bool,
    /// What fuel given back may return (see `refunds.rs`); mirrored in the
    /// word for lock-free takers.
    refunds: Refunds,
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

impl Line {
    /// A tank of `rate` and the rates `also`, each holding `initial` fuel
    /// (`None`: full under `Window`, else one).
    pub(crate) fn new(
        rate: Rate,
        also: &[Rate],
        hardcap: Hardcap,
        burst: Option<u64>,
        initial: Option<u64>,
        correction: u64,
        clock: ClockSource,
    ) -> Arc<Line> {
        let now = clock.now_ns();
        let bucket = |rate: Rate, burst| {
            let full = if hardcap == Hardcap::Window {
                rate.max_n()
            } else {
                1
            };
            Bucket::new(rate, hardcap, burst, initial.unwrap_or(full), now)
        };
        let also = also.iter().map(|&r| (r, bucket(r, None))).collect();
        let bucket = bucket(rate, burst);
        Line::with_buckets(rate, hardcap, burst, bucket, also, correction, clock)
    }

    /// A tank whose bucket is already in a given state.
    pub(crate) fn with_bucket(
        rate: Rate,
        hardcap: Hardcap,
        burst: Option<u64>,
        bucket: Bucket,
        correction: u64,
        clock: ClockSource,
    ) -> Arc<Line> {
        Line::with_buckets(rate, hardcap, burst, bucket, Vec::new(), correction, clock)
    }

    pub(crate) fn with_buckets(
        rate: Rate,
        hardcap: Hardcap,
        burst: Option<u64>,
        bucket: Bucket,
        also: Vec<(Rate, Bucket)>,
        correction: u64,
        clock: ClockSource,
    ) -> Arc<Line> {
        // A manual clock's timers are exact, and spinning on it (or on
        // tokio's paused time) would never end.
        let correction = if clock.may_stand_still() {
            0
        } else {
            correction
        };
        let host = match &bucket {
            Bucket::Host(host) => Some(host),
            _ => None,
        }
        .cloned();
        let shared = Arc::new_cyclic(|weak: &Weak<Line>| Line {
            word: Word::new(also.len()),
            host,
            multi: !also.is_empty(),
            core: Mutex::new(Core {
                request_cap: 0,
                kept: false,
                rate,
                hardcap,
                burst,
                bucket,
                also,
                in_word: false,
                published: None,
                renew: false,
                paused_at: None,
                queue: List::default(),
                queued_fuel: 0,
                unscheduled: 0,
                unscheduled_fuel: 0,
                rate_seen_at: 0,
                line_version: 0,
                tail: None,
                waiting: 0,
                timer: Timer::new(&clock),
                correction,
                adapts: false,
                armed_at: None,
                refunds: Refunds::default(),
            }),
            clock,
            id: {
                static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
                NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            },
            driver: Waker::from(Arc::new(Driver(weak.clone()))),
        });
        shared.locked(|core, _| core.request_cap = core.find_request_cap());
        shared
    }

    /// Runs `op` under the core lock with the state in the core, then serves
    /// the line, hands the state back to the word if it can, unlocks, and
    /// wakes whoever was granted.
    fn locked<R>(&self, op: impl FnOnce(&mut Core, u64) -> R) -> R {
        self.locked_with(false, |core, now, _| op(core, now)).0
    }

    /// As [`Line::locked`], with `op` given the list of wakers to wake
    /// once unlocked; with `spin`, the line's head may be due within the
    /// timer correction, and then its due time is returned for the caller
    /// to wait out before driving again.
    fn locked_with<R>(
        &self,
        spin: bool,
        op: impl FnOnce(&mut Core, u64, &mut Vec<Waker>) -> R,
    ) -> (R, Option<u64>) {
        self.locked_in(lock(&self.core), spin, op)
    }

    /// As [`Line::locked_with`], under the lock already taken: `core`.
    fn locked_in<R>(
        &self,
        mut core: MutexGuard<'_, Core>,
        spin: bool,
        op: impl FnOnce(&mut Core, u64, &mut Vec<Waker>) -> R,
    ) -> (R, Option<u64>) {
        let mut wakers = Wakers(Vec::new());
        let result = {
            core.own(&self.word);
            let now = self.clock.now_ns();
            core.follow_host(now, &mut wakers.0);
            let result = op(&mut core, now, &mut wakers.0);
            let (now, spin_until) = core.drive(&self.clock, &self.driver, &mut wakers.0, spin);
            core.release(&self.word, now);
            drop(core);
            (result, spin_until)
        };
        // Outside the lock: a waker may call back into the tank.
        wakers.wake_all();
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
        if self.host.is_some() {
            return self.take_host(n).is_some();
        }
        match self.word.take(self.clock.now_ns(), n, false) {
            Fast::Taken(_) => true,
            Fast::Empty | Fast::Queued => false,
            Fast::Locked => self.take_locked(n, false).is_some(),
        }
    }

    /// As [`Line::take`], with the grant's stamp, so that the fuel can be
    /// given back.
    #[inline(always)]
    pub(crate) fn take_stamped(&self, n: u64) -> Option<Stamp> {
        if n == 0 {
            return Some(Stamp::None);
        }
        if self.host.is_some() {
            return self.take_host(n);
        }
        match self.word.take(self.clock.now_ns(), n, true) {
            Fast::Taken(stamp) => Some(stamp),
            Fast::Empty | Fast::Queued => None,
            Fast::Locked => self.take_locked(n, true),
        }
    }

    /// A take from a shared-memory bucket: one compare-and-swap there,
    /// unless this process's own line waits (not overtaken).
    #[inline]
    fn take_host(&self, n: u64) -> Option<Stamp> {
        let host = self.host.as_ref()?;
        if self.word.queued() {
            return None;
        }
        match host.take(self.clock.now_ns(), n) {
            Took::Taken(word) => Some(Stamp::Host { word }),
            Took::Empty => None,
        }
    }

    #[cold]
    fn take_locked(&self, n: u64, stamped: bool) -> Option<Stamp> {
        let take = |core: &mut Core, now| match core.queue.is_empty() && n <= core.request_cap() {
            true => core.try_take(now, n, stamped),
            false => None,
        };
        let mut core = lock(&self.core);
        if core.kept {
            // Nobody in line and nothing the word could show: a take
            // changes no timer and no word, so it needs the lock alone. The
            // clock is read under it, as by every locked take: no take runs
            // at an earlier time than one made before it.
            let now = self.clock.now_ns();
            return take(&mut core, now);
        }
        self.locked_in(core, false, |core, now, _| take(core, now))
            .0
    }

    /// Gives back `n` fuel granted with `stamp` and never spent (see
    /// `Core::refund`).
    pub(crate) fn refund(&self, n: u64, stamp: Stamp) {
        self.locked(|core, _| core.refund(n, stamp));
    }

    pub(crate) fn level(&self) -> u64 {
        if let Some(host) = &self.host {
            return host.level(self.clock.now_ns());
        }
        if let Some(level) = self.word.level(self.clock.now_ns()) {
            return level;
        }
        self.locked(|core, now| core.level(now))
    }

    /// The fuel a newcomer could take now: the level, or 0 while anyone
    /// waits (`has_fuel` does not overtake the line).
    pub(crate) fn available(&self) -> u64 {
        if let Some(host) = &self.host {
            return match self.word.queued() {
                true => 0,
                false => host.level(self.clock.now_ns()),
            };
        }
        if let Some(level) = self.word.level(self.clock.now_ns()) {
            return level;
        }
        self.locked(|core, now| {
            if core.queue.is_empty() {
                core.level(now)
            } else {
                0
            }
        })
    }

    /// How long until `n` fuel could be granted to a newcomer, counting the
    /// line ahead; `None` while paused or if `n` can never fit.
    pub(crate) fn wait_for(&self, n: u64) -> Option<u64> {
        // Lock-free while nobody waits: a `Retry-After` on every rejected
        // request must not take the lock from the requests let through.
        if self.host.is_none()
            && let Some(wait) = self.word.wait(self.clock.now_ns(), n)
        {
            return Some(wait);
        }
        self.locked(|core, now| {
            if n > core.request_cap() || core.paused(now) {
                return None;
            }
            Some(core.due_after_line(now, n).saturating_sub(now))
        })
    }

    /// Every rate, the first one first, each with the fuel a newcomer
    /// could take under it now (0 while anyone waits).
    pub(crate) fn rates(&self) -> Vec<(Rate, u64)> {
        if !self.multi {
            return vec![(self.rate(), self.available())];
        }
        self.locked(|core, now| {
            let (open, now) = (core.queue.is_empty(), core.now_eff(now));
            let first = (core.rate, &mut core.bucket);
            let also = core.also.iter_mut().map(|(rate, bucket)| (*rate, bucket));
            std::iter::once(first)
                .chain(also)
                .map(|(rate, bucket)| (rate, if open { bucket.level(now) } else { 0 }))
                .collect()
        })
    }

    pub(crate) fn rate(&self) -> Rate {
        if let Some(rate) = self.host.as_ref().and_then(|host| host.state().rate()) {
            return rate;
        }
        lock(&self.core).rate
    }

    /// The `(epoch, tat)` of a `Limit`, `One` or `Unbounded` tank that
    /// nobody waits on, with the `tat`s of the rates of `also` from the
    /// same epoch; `None` otherwise.
    pub(crate) fn idle_gcra(&self) -> Option<(u64, i128, Vec<i128>)> {
        self.locked(|core, _| match &core.bucket {
            Bucket::Gcra(gcra) if core.queue.is_empty() && core.paused_at.is_none() => {
                let epoch = gcra.epoch();
                let also = core.also.iter().map(|(_, bucket)| match bucket {
                    Bucket::Gcra(g) => {
                        let shift = (i128::from(epoch) - i128::from(g.epoch()))
                            .saturating_mul(i128::from(g.scale().0));
                        Some(g.tat().saturating_sub(shift))
                    }
                    _ => None,
                });
                Some((epoch, gcra.tat(), also.collect::<Option<_>>()?))
            }
            _ => None,
        })
    }

    /// The log of a `Window` tank that nobody waits on; `None` otherwise.
    pub(crate) fn idle_window(&self) -> Option<Window> {
        self.locked(|core, _| match &core.bucket {
            Bucket::Window(window) if core.queue.is_empty() && core.paused_at.is_none() => {
                Some(window.clone())
            }
            _ => None,
        })
    }

    pub(crate) fn hardcap(&self) -> Hardcap {
        lock(&self.core).hardcap
    }

    /// The most fuel granted together (for `Budget::capacity`).
    pub(crate) fn request_cap(&self) -> u64 {
        lock(&self.core).request_cap()
    }

    pub(crate) fn correction(&self) -> u64 {
        lock(&self.core).correction
    }

    /// Lets a measured correction follow the timer's lateness, under
    /// [`Hardcap::One`]: there a wake-up later than the correction loses
    /// fuel for good, where the other hardcaps only grant it later (and
    /// keep the CPU the spin would cost). Not in shared memory, where every
    /// process with waiters wakes for the same fuel and one of them is
    /// usually on time (following there cost every process a longer spin
    /// for little). Not on a clock that may stand still, whose timers are
    /// exact and on which a wait would never end.
    pub(crate) fn follow_timer(&self) {
        let mut core = lock(&self.core);
        if core.hardcap == Hardcap::One && self.host.is_none() && !self.clock.may_stand_still() {
            core.adapts = true;
        }
    }

    pub(crate) fn waiting(&self) -> usize {
        lock(&self.core).waiting
    }

    pub(crate) fn set_rate(&self, rate: Rate) -> Result<(), crate::Error> {
        self.locked_with(false, |core, now, wakers| core.set_rate(rate, now, wakers))
            .0
    }

    /// Whether the refill is paused (a shared tank: by any process).
    pub(crate) fn is_paused(&self) -> bool {
        match &self.host {
            Some(host) => host.state().is_paused(),
            None => lock(&self.core).paused_at.is_some(),
        }
    }

    pub(crate) fn pause(&self) {
        self.locked(|core, now| {
            if let Bucket::Host(host) = &core.bucket {
                return host.pause(now);
            }
            core.paused_at.get_or_insert(now);
        });
    }

    pub(crate) fn resume(&self) {
        self.locked(|core, now| {
            if let Bucket::Host(host) = &core.bucket {
                return host.resume(now);
            }
            if let Some(paused_at) = core.paused_at.take() {
                let paused_for = now.saturating_sub(paused_at);
                core.bucket.skip(paused_for);
                for (_, bucket) in &mut core.also {
                    bucket.skip(paused_for);
                }
            }
        });
    }

    /// First visit of a waiter: take the fuel at once if the line is empty
    /// and the fuel is there, or else join the line.
    ///
    /// # Safety
    ///
    /// `node` is pinned and in no list, and its owner calls [`Line::cancel`]
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
            let mut turn = None;
            if let Bucket::Host(host) = &core.bucket
                && core.takes_turns()
                && core.unscheduled == 0
            {
                // Every waiter ahead has its turn: this one's is scheduled
                // behind theirs, and behind every other process's so far.
                match host.reserve(now, n, deadline) {
                    Turn::Now(word) if core.queue.is_empty() => {
                        return Enqueued::Granted(Stamp::Host { word });
                    }
                    Turn::Now(word) => turn = Some((now, word)),
                    Turn::At { word, due } => turn = Some((due, word)),
                    Turn::Late => return Enqueued::TooLate,
                    Turn::Refused => {}
                }
            } else if core.queue.is_empty()
                && let Some(stamp) = core.try_take(now, n, true)
            {
                return Enqueued::Granted(stamp);
            }
            if turn.is_none()
                && let Some(deadline) = deadline
                && !core.paused(now)
                && core.due_after_line(now, n) > deadline
            {
                return Enqueued::TooLate;
            }
            // Nothing below can fail: once linked, the node is counted.
            // SAFETY: the caller's contract, and we hold the core lock.
            let linked = unsafe { core.queue.link(node, n, waker) };
            core.queued_fuel += u128::from(n);
            core.waiting += 1;
            match turn {
                // SAFETY: just linked, under the core lock.
                Some(turn) => unsafe { linked.set_turn(Some(turn)) },
                None if core.takes_turns() => {
                    core.unscheduled += 1;
                    core.unscheduled_fuel += u128::from(n);
                }
                None => {}
            }
            core.extend_tail(now, n);
            Enqueued::Queued
        })
    }

    /// A queued waiter was polled again: refresh its waker, or report how it
    /// ended.
    ///
    /// # Safety
    ///
    /// `node` was queued by [`Line::enqueue`] and is still alive.
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
    /// As for [`Line::poll_queued`].
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
    /// As for [`Line::poll_queued`].
    pub(crate) unsafe fn cancel(&self, node: NonNull<Node>) {
        self.locked(|core, _| {
            // SAFETY: alive (caller's contract).
            let node_ref = unsafe { node.as_ref() };
            match node_ref.state() {
                // SAFETY: alive, in this list, under the core lock.
                QUEUED => unsafe { core.leave(node) },
                GRANTED => {
                    // SAFETY: alive, under the core lock.
                    let (n, stamp) = unsafe { (List::n(node), List::stamp(node)) };
                    core.refund(n, stamp);
                }
                _ => {}
            }
        });
    }
}

impl std::fmt::Debug for Line {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Line")
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

/// Wakers to wake once the lock is released. If one of them panics, the
/// others are still woken as the panic unwinds (each was granted its fuel).
struct Wakers(Vec<Waker>);

impl Wakers {
    fn wake_all(mut self) {
        while let Some(waker) = self.0.pop() {
            waker.wake();
        }
    }
}

impl Drop for Wakers {
    fn drop(&mut self) {
        for waker in self.0.drain(..) {
            waker.wake();
        }
    }
}

/// The outcome recorded in a finished node.
fn finished(state: u8, stamp: Stamp) -> Outcome {
    match state {
        GRANTED => Outcome::Granted(stamp),
        REJECTED => match stamp {
            Stamp::Rejected { capacity } => Outcome::TooLarge(capacity),
            _ => unreachable!("a rejected node is stamped with the capacity"),
        },
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
                // The word held every rate (see `release`).
                for (i, (_, bucket)) in self.also.iter_mut().enumerate() {
                    if let Bucket::Gcra(g) = bucket {
                        g.set_tat(i128::from(word.extra_tat(i)));
                    }
                }
            }
            self.in_word = false;
            // After the seize: every grant made without the lock before it
            // raised the guard before its compare-and-swap.
            self.refunds.raise_guard(i128::from(word.guard()));
            self.refunds.cuts_without_lock(word.stamp_at());
        }
    }

    /// Internal time as the bucket sees it: frozen while paused.
    fn now_eff(&self, now: u64) -> u64 {
        self.paused_at.map_or(now, |paused_at| paused_at.min(now))
    }

    /// The most one request may ask for: the least capacity of any rate.
    fn request_cap(&self) -> u64 {
        self.request_cap
    }

    fn find_request_cap(&self) -> u64 {
        let also = self.also.iter().map(|(rate, _)| rate.max_n());
        let also = also.map(|max_n| self.hardcap.request_capacity(max_n, None));
        also.fold(
            self.hardcap.request_capacity(self.rate.max_n(), self.burst),
            u64::min,
        )
    }

    /// The fuel under every rate: the least.
    fn level(&mut self, now: u64) -> u64 {
        let now = self.now_eff(now);
        let also = self.also.iter_mut().map(|(_, bucket)| bucket.level(now));
        also.fold(self.bucket.level(now), u64::min)
    }

    /// Whether the refill stands still: paused here, or (shared) by any
    /// process.
    fn paused(&self, _now: u64) -> bool {
        match &self.bucket {
            Bucket::Host(host) => host.state().is_paused(),
            _ => self.paused_at.is_some(),
        }
    }

    /// Whether waiters take turns in the shared word: a shared tank, but
    /// not under [`Hardcap::One`]. `One` cannot bank fuel, so a waiter let
    /// go late would come less than an interval before the next turn (of
    /// another process, on time): there each grant is a take at the time
    /// of the grant, and the processes' timers race for it.
    fn takes_turns(&self) -> bool {
        matches!(self.bucket, Bucket::Host(_)) && self.hardcap != Hardcap::One
    }

    /// The head of the line, asking for `n`, if its fuel is there: a
    /// shared tank's head whose turn has come (a head whose turn is not
    /// scheduled waits for `schedule_line`), else a take from the bucket.
    fn grant_head(&mut self, now: u64, head: super::waiters::Linked, n: u64) -> Option<Stamp> {
        if !self.takes_turns() {
            return self.try_take(now, n, true);
        }
        // SAFETY: the head of this list, under the core lock.
        match unsafe { head.turn() } {
            Some((due, word)) if due <= now => Some(Stamp::Host { word }),
            _ => None,
        }
    }

    /// Takes `n` from the bucket; returns the grant's stamp, which names it
    /// for a refund if `stamped` (else the take is final).
    fn try_take(&mut self, now: u64, n: u64, stamped: bool) -> Option<Stamp> {
        let now = self.now_eff(now);
        // Every rate or none: each bucket takes `n` exactly when it holds
        // them, so after this check no take below fails.
        match &mut self.bucket {
            Bucket::Gcra(gcra) => {
                let mut headroom = gcra.try_take(now, n)?;
                // The least headroom of any rate, in the first's ticks: a
                // refund gives back to every rate what the tightest keeps.
                // Only a headroom below the guard is recorded: with none
                // (no grant may come back), no rate's needs converting.
                let guard = self.refunds.guard();
                for i in 0..self.also.len() {
                    let Bucket::Gcra(g) = &mut self.also[i].1 else {
                        unreachable!("every rate of a tank has its hardcap");
                    };
                    match g.try_take(now, n) {
                        Some(room) if guard > 0 => headroom = headroom.min(gcra.ticks_of(room, g)),
                        Some(_) => {}
                        None => {
                            // Every rate or none: undo the takes before
                            // this one (a settled `tat` less the span holds
                            // what it held before the take).
                            gcra.give_back(gcra.span(u128::from(n)));
                            for (_, bucket) in &mut self.also[..i] {
                                if let Bucket::Gcra(g) = bucket {
                                    g.give_back(g.span(u128::from(n)));
                                }
                            }
                            return None;
                        }
                    }
                }
                self.refunds.on_take(headroom);
                Some(if stamped && gcra.cap().is_some() {
                    self.refunds.stamp(gcra.span(u128::from(n)))
                } else {
                    let (cut, rate) = self.refunds.stamp_parts();
                    Stamp::Gcra { cut, rate }
                })
            }
            Bucket::Window(window) => {
                if self
                    .also
                    .iter_mut()
                    .any(|(_, bucket)| bucket.level(now) < n)
                {
                    return None;
                }
                let leave = window.try_take(now, n)?;
                // Every rate's grant carries this one's stamp, so that a
                // refund finds it from the first rate's stamp alone.
                let at = window.stamped(leave);
                for (_, bucket) in &mut self.also {
                    if let Bucket::Window(w) = bucket {
                        w.push(at, n);
                    }
                }
                Some(self.refunds.stamp_window(leave))
            }
            Bucket::Host(host) => match host.take(now, n) {
                Took::Taken(word) => Some(Stamp::Host { word }),
                Took::Empty => None,
            },
        }
    }

    /// When a newcomer asking for `n` would be granted, after the line.
    fn due_after_line(&mut self, now: u64, n: u64) -> u64 {
        let now = self.now_eff(now);
        let also = self.due_also(now, true, n);
        let first = match &mut self.bucket {
            Bucket::Gcra(gcra) => gcra.due(now, self.queued_fuel + u128::from(n)),
            // The turns scheduled are in the shared word already.
            Bucket::Host(host) if self.hardcap != Hardcap::One => {
                host.due(now, self.unscheduled_fuel + u128::from(n))
            }
            Bucket::Host(host) => host.due(now, self.queued_fuel + u128::from(n)),
            Bucket::Window(window) => {
                let valid = match &self.tail {
                    Some((line, replay)) => {
                        *line == self.line_version && window.replays(replay, now)
                    }
                    None => false,
                };
                if !valid {
                    let mut replay = window.replay(now);
                    for waiter in self.queue.iter() {
                        // SAFETY: a node of this list, under the core lock.
                        window.replay_push(&mut replay, now, unsafe { waiter.n() });
                    }
                    self.tail = Some((self.line_version, replay));
                }
                match &self.tail {
                    Some((_, replay)) => window.replay_peek(replay, now, n),
                    None => u64::MAX,
                }
            }
        };
        first.max(also)
    }

    /// A waiter asking for `n` joined the line: the line's replay, if
    /// current, takes it in.
    fn extend_tail(&mut self, now: u64, n: u64) {
        let now = self.now_eff(now);
        if let (Bucket::Window(window), Some((line, replay))) = (&mut self.bucket, &mut self.tail) {
            if *line == self.line_version && window.replays(replay, now) {
                window.replay_push(replay, now, n);
            } else {
                self.tail = None;
            }
        }
    }

    /// When the head of the line, asking for `n`, would be granted.
    fn due_head(&mut self, now: u64, n: u64) -> u64 {
        let also = self.due_also(now, false, n);
        let first = match &mut self.bucket {
            Bucket::Gcra(gcra) => gcra.due(now, u128::from(n)),
            Bucket::Window(window) => window.due(now, [n]),
            // Another process may give fuel back, or resume, at any time:
            // look again at least this often while anyone waits.
            Bucket::Host(host) => host
                .due(now, u128::from(n))
                .min(now.saturating_add(HOST_POLL)),
        };
        first.max(also)
    }

    /// When `n` fuel could be granted under the rates of `also`, after the
    /// line with `line` (else now): the latest of them (`now` if none).
    /// A lower bound with a line: a waiter granted late under one rate may
    /// find another's bucket full.
    fn due_also(&mut self, now: u64, line: bool, n: u64) -> u64 {
        let ahead = if line { self.queued_fuel } else { 0 };
        let queue = &self.queue;
        let due = |bucket: &mut Bucket| match bucket {
            Bucket::Gcra(gcra) => gcra.due(now, ahead + u128::from(n)),
            Bucket::Window(window) => {
                // SAFETY: nodes of this list, under the core lock.
                let ahead = queue.iter().filter(|_| line).map(|w| unsafe { w.n() });
                window.due(now, ahead.chain([n]))
            }
            Bucket::Host(_) => now,
        };
        self.also
            .iter_mut()
            .map(|(_, b)| due(b))
            .fold(now, u64::max)
    }

    /// Gives back `n` fuel granted with `stamp`, at `now`, as if it had
    /// never been taken, as far as that fuel would not have run into the
    /// cap since (see `refunds.rs`).
    fn refund(&mut self, n: u64, stamp: Stamp) {
        match &mut self.bucket {
            Bucket::Window(window) => {
                if let Some(leave) = self.refunds.window_leave(stamp) {
                    window.refund(leave, n);
                    let at = window.stamped(leave);
                    for (_, bucket) in &mut self.also {
                        if let Bucket::Window(w) = bucket {
                            w.refund(w.leave_time(at), n);
                        }
                    }
                }
            }
            Bucket::Gcra(gcra) => {
                let ticks = self.refunds.give_back(gcra.span(u128::from(n)), stamp);
                gcra.give_back(ticks);
                // Headroom was counted in the first rate's ticks (see
                // `try_take`): as much fuel goes back to every rate.
                for (_, bucket) in &mut self.also {
                    if let Bucket::Gcra(g) = bucket {
                        g.give_back(g.ticks_of(ticks, gcra));
                    }
                }
            }
            Bucket::Host(host) => {
                if let Stamp::Host { word } = stamp {
                    host.give_back(n, word);
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
        let turn = unsafe { super::waiters::Linked::of(node).turn() };
        // SAFETY: the caller's contract.
        if unsafe { self.queue.unlink(node) } {
            self.queued_fuel -= u128::from(n);
            self.waiting -= 1;
            self.line_version += 1;
            if let Bucket::Host(host) = &self.bucket
                && self.hardcap != Hardcap::One
            {
                match turn {
                    // Its turn comes back if nothing was taken or scheduled
                    // since (in any process); else it passes unused.
                    Some((_, word)) => host.give_back(n, word),
                    None => {
                        self.unscheduled -= 1;
                        self.unscheduled_fuel -= u128::from(n);
                    }
                }
            }
        }
    }

    /// A shared tank: schedules the turns of the waiters at the back of the
    /// line that have none yet, in order, while the shared word takes them.
    fn schedule_line(&mut self, now: u64) {
        let Bucket::Host(host) = &self.bucket else {
            return;
        };
        if self.unscheduled == 0 || self.hardcap == Hardcap::One {
            return;
        }
        for waiter in self.queue.iter() {
            // SAFETY: a node of this list, under the core lock.
            let (n, turn) = unsafe { (waiter.n(), waiter.turn()) };
            if turn.is_some() {
                continue;
            }
            let turn = match host.reserve(now, n, None) {
                Turn::Now(word) => (now, word),
                Turn::At { word, due } => (due, word),
                Turn::Late | Turn::Refused => return,
            };
            // SAFETY: as above.
            unsafe { waiter.set_turn(Some(turn)) };
            self.unscheduled -= 1;
            self.unscheduled_fuel -= u128::from(n);
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
        // Called from the timer: how late it fired teaches the correction.
        if spin
            && self.adapts
            && let Some(armed) = self.armed_at.take()
            && now >= armed
        {
            let cap = saturating_ns(correction_for(self.rate.interval(), Duration::MAX));
            self.correction = follow_lateness(self.correction, now - armed, cap);
        }
        self.schedule_line(now);
        loop {
            let Some(head) = self.queue.front() else {
                self.timer.disarm();
                self.armed_at = None;
                return (now, None);
            };
            // SAFETY: the head of this list, under the core lock.
            let n = unsafe { head.n() };
            if let Some(stamp) = self.grant_head(now, head, n) {
                self.queue.pop_front();
                self.queued_fuel -= u128::from(n);
                self.waiting -= 1;
                self.line_version += 1;
                // SAFETY: just taken out of this list, under the core lock.
                wakers.extend(unsafe { head.finish(GRANTED, stamp) });
                continue;
            }
            if self.paused_at.is_some() {
                self.timer.disarm();
                self.armed_at = None;
                return (now, None);
            }
            // SAFETY: the head of this list, under the core lock.
            let due = match unsafe { head.turn() } {
                // Another process may change the rate (the turn is moved):
                // look again at least this often.
                Some((due, _)) if self.takes_turns() => due.min(now.saturating_add(HOST_POLL)),
                _ => self.due_head(self.now_eff(now), n),
            };
            // A shared bucket may have been taken from by another process
            // meanwhile: then this is a wake-up too early, and the loop
            // looks again at the next.
            // `try_take` just failed at `now`, so the fuel is due later; were
            // that ever not so, arming for `now` would spin this loop. (A
            // shared bucket can change between the two: another process
            // took; `due.max(now + 1)` below keeps the loop from spinning.)
            debug_assert!(
                due > now || now == u64::MAX || matches!(self.bucket, Bucket::Host(_)),
                "due {due} <= now {now}"
            );
            if now == u64::MAX || due == u64::MAX {
                // Beyond the end of the clock: nothing will fall due.
                self.timer.disarm();
                self.armed_at = None;
                return (now, None);
            }
            let due = due.max(now + 1);
            let early = due.saturating_sub(self.correction);
            let wake_at = if early > now {
                early
            } else if spin {
                self.timer.disarm();
                self.armed_at = None;
                return (now, Some(due));
            } else {
                // Only the timer's thread waits out the rest: elsewhere
                // (a task calling in) take the timer's precision as it is.
                due
            };
            match self.timer.arm(wake_at, now, driver) {
                Poll::Pending => {
                    self.armed_at = Some(wake_at);
                    return (now, None);
                }
                // The deadline passed while we computed it: go round.
                Poll::Ready(()) => now = clock.now_ns(),
            }
        }
    }

    /// Ends an operation under the lock: hands the state back to the word if
    /// nothing needs the core, else marks the word so `has_fuel` knows.
    fn release(&mut self, word: &Word, now: u64) {
        let (next, rate) = self.refunds.stamp_parts();
        let guard = u64::try_from(self.refunds.guard().max(0)).unwrap_or(u64::MAX);
        let lowered = self.refunds.take_lowered();
        self.renew |= lowered;
        word.set_refunds(guard, lowered, next, rate);
        self.kept = self.queue.is_empty();
        if !self.kept {
            return word.hold(true);
        }
        // Several rates: the word holds them all, or none.
        if !self.also.is_empty() && self.also.len() != word.extras() {
            return word.hold(false);
        }
        // (A shared bucket stays out of the word: its own word is in the
        // shared file.)
        let Bucket::Gcra(gcra) = &mut self.bucket else {
            return word.hold(false);
        };
        if self.paused_at.is_some() {
            return word.hold(false);
        }
        let Some((mut params, tat)) = in_word(gcra, now) else {
            return word.hold(false);
        };
        let mut extras = [(Published::default(), 0); MAX_EXTRAS];
        for ((_, bucket), extra) in self.also.iter_mut().zip(&mut extras) {
            let Bucket::Gcra(g) = bucket else {
                return word.hold(false);
            };
            let Some(fits) = in_word(g, now) else {
                return word.hold(false);
            };
            params.n_max = params.n_max.min(fits.0.n_max);
            *extra = fits;
        }
        let extras = &extras[..self.also.len()];
        word.publish(&mut self.published, params, tat, self.renew, extras);
        self.renew = false;
        self.in_word = true;
        self.kept = false;
    }

    /// Changes the rate at once; waiters whose request no longer fits the
    /// new capacity are rejected, their wakers added to `wakers`.
    fn set_rate(
        &mut self,
        rate: Rate,
        now: u64,
        wakers: &mut Vec<Waker>,
    ) -> Result<(), crate::Error> {
        let now = self.now_eff(now);
        match &mut self.bucket {
            Bucket::Gcra(gcra) => {
                gcra.set_rate(now, rate, self.hardcap.capacity(rate.max_n(), self.burst))
            }
            Bucket::Window(window) => window.set_rate(now, rate),
            Bucket::Host(host) => host.set_rate(now, rate)?,
        }
        let old = self.rate;
        self.rate_changed(rate, wakers);
        self.move_turns(old, now, now);
        self.rate_seen_at = now;
        Ok(())
    }

    /// A shared tank's rate may have been changed by another process: from
    /// then on, this one's capacity checks and waiters follow it too.
    fn follow_host(&mut self, now: u64, wakers: &mut Vec<Waker>) {
        let Bucket::Host(host) = &self.bucket else {
            return;
        };
        if let Some(rate) = host.state().rate()
            && rate != self.rate
        {
            let (old, since) = (self.rate, self.rate_seen_at);
            self.rate_changed(rate, wakers);
            self.move_turns(old, since, now);
        }
        self.rate_seen_at = now;
    }

    /// The shared rate changed from `old` to `self.rate` between `since`
    /// and `now`: the change kept the turns scheduled in the shared word,
    /// each as many intervals of the new rate ahead as it was of the old,
    /// and this process's waiters follow. Counted from `since` if the new
    /// interval is longer, from `now` if shorter: never earlier than the
    /// shared word has them.
    fn move_turns(&mut self, old: Rate, since: u64, now: u64) {
        if !matches!(self.bucket, Bucket::Host(_)) {
            return;
        }
        let new = self.rate;
        // new interval / old interval = num / den
        let num = u128::from(new.per_ns()) * u128::from(old.max_n());
        let den = u128::from(new.max_n()) * u128::from(old.per_ns());
        let from = if num > den { since.min(now) } else { now };
        for waiter in self.queue.iter() {
            // SAFETY: a node of this list, under the core lock.
            if let Some((due, word)) = unsafe { waiter.turn() }
                && due > now
            {
                let ahead = (u128::from(due - from) * num).div_ceil(den);
                let due = u64::try_from(u128::from(from) + ahead).unwrap_or(u64::MAX);
                // SAFETY: as above.
                unsafe { waiter.set_turn(Some((due.max(now), word))) };
            }
        }
    }

    /// The rate is now `rate`: waiters whose request no longer fits the
    /// capacity are rejected, their wakers added to `wakers`.
    fn rate_changed(&mut self, rate: Rate, wakers: &mut Vec<Waker>) {
        // Fuel granted under the old rate can no longer be given back.
        self.refunds.rate_changed();
        self.rate = rate;
        self.request_cap = self.find_request_cap();
        let cap = self.request_cap;
        // SAFETY: nodes of this list, under the core lock.
        let too_large: Vec<_> = self
            .queue
            .iter()
            .filter(|w| unsafe { w.n() } > cap)
            .collect();
        for waiter in too_large {
            let rejected = Stamp::Rejected { capacity: cap };
            // SAFETY: a node of this list, under the core lock; then taken
            // out of it.
            unsafe {
                self.leave(waiter.as_ptr());
                wakers.extend(waiter.finish(REJECTED, rejected));
            }
        }
    }
}

/// The parameters and `tat` under which the word can hold `gcra` at `now`,
/// after settling it and, when the present nears the end of what the word
/// counts, moving its epoch; `None` if its rate or state is beyond the word.
fn in_word(gcra: &mut Gcra, now: u64) -> Option<(Published, u64)> {
    let (s, t) = gcra.scale();
    let (tol, n_max) = match gcra.cap() {
        Some(cap) if u128::from(cap) * u128::from(t) <= u128::from(SPAN_LIMIT) => {
            ((cap - 1) * t, cap)
        }
        None if t <= SPAN_LIMIT => (u64::MAX, SPAN_LIMIT / t),
        _ => return None,
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
            return None;
        }
    }
    let params = Published {
        epoch: gcra.epoch(),
        s,
        t,
        tol,
        n_max,
    };
    Some((params, gcra.tat() as u64))
}

/// How long a waiter of a shared tank sleeps at most before it looks at the
/// shared bucket again: other processes' refunds and resumes wake nobody
/// here.
const HOST_POLL: u64 = 10_000_000;

/// The tank's timer wakes this, which runs the driver.
struct Driver(Weak<Line>);

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
