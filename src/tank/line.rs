//! The shared state of a tank: the lock-free word and the store's front,
//! and behind a lock the store (`bucket.rs`), the line of waiters and the
//! timer, with the driver that serves the line.
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
//! A shared tank keeps this line in each process, with its one timer, but
//! the order is its store's, which takes turns ([`Bucket::takes_turns`]):
//! each waiter schedules its turn there when it joins (or, joining while
//! the tank is paused, when it resumes), and the driver lets the head go
//! once its turn has come. So the processes' lines interleave in the order
//! their waiters asked, and no process's timer can take another's fuel.
//!
//! Every operation under the lock ends the same way (see [`Line::locked`]):
//! drive the line, then either keep the state in the core (waiters queued,
//! paused, or a store the word cannot hold) or hand it back to the word
//! ([`Bucket::publish`]).

use std::ptr::NonNull;
use std::sync::{Arc, Weak};
use std::task::{Poll, Wake, Waker};

use super::bucket::{Bucket, Front, Window};
use super::host::Turn;
use super::permit::Stamp;
use super::refunds::Refunds;
use super::waiters::{GRANTED, List, Node, QUEUED, REJECTED};
use super::word::{Fast, Published, Word};
use std::time::Duration;

use crate::calibrate::{correction_for, follow_lateness};
use crate::clock::{ClockSource, saturating_ns};
use crate::sync::{Mutex, MutexGuard, lock};
use crate::timer::Timer;
use crate::{Hardcap, Rate};

pub(crate) struct Line {
    pub(crate) word: Word,
    /// The store as read without the lock, beside the word.
    front: Front,
    pub(crate) clock: ClockSource,
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
    /// Every rate's fuel (see `bucket.rs`).
    bucket: Bucket,
    /// The rates of `TankBuilder::also` (the bucket holds each).
    also: Vec<Rate>,
    /// The word holds `tat`: the bucket's copy is stale.
    in_word: bool,
    /// Parameters last published to the word.
    published: Option<Published>,
    /// The next publish must change the word's generation (the guard was
    /// lowered since the word last held the state).
    renew: bool,
    paused_at: Option<u64>,
    queue: List,
    /// The waiters whose turn the store has not scheduled, and the fuel
    /// they ask for (a `u128`: a line of `u64` requests can hold more than
    /// `u64::MAX`): every waiter, unless the store takes turns; then those
    /// at the back of the line that joined while it took none (paused).
    unscheduled: usize,
    unscheduled_fuel: u128,
    /// When this process last saw the store's own rate unchanged.
    rate_seen_at: u64,
    /// Changes whenever a waiter leaves the line (appends keep it).
    line_version: u64,
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
    /// the word cannot hold this tank as it is (paused, or a store beyond
    /// it), so a take needs the lock alone (`Line::take_locked`).
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
        let bucket = Bucket::new(rate, also, hardcap, burst, initial, clock.now_ns());
        let also = also.to_vec();
        Line::with_bucket(rate, also, hardcap, burst, bucket, correction, clock)
    }

    /// A tank whose bucket (of `rate` and the rates `also`) is already in a
    /// given state.
    pub(crate) fn with_bucket(
        rate: Rate,
        also: Vec<Rate>,
        hardcap: Hardcap,
        burst: Option<u64>,
        bucket: Bucket,
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
        let shared = Arc::new_cyclic(|weak: &Weak<Line>| Line {
            word: Word::new(also.len()),
            front: Front::new(&bucket),
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
                unscheduled: 0,
                unscheduled_fuel: 0,
                rate_seen_at: 0,
                line_version: 0,
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
            core.follow_store(self.front.rate(), now, &mut wakers.0);
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
        match self.front.take(&self.word, &self.clock, n, false) {
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
        match self.front.take(&self.word, &self.clock, n, true) {
            Fast::Taken(stamp) => Some(stamp),
            Fast::Empty | Fast::Queued => None,
            Fast::Locked => self.take_locked(n, true),
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
    /// `Bucket::refund`).
    pub(crate) fn refund(&self, n: u64, stamp: Stamp) {
        self.locked(|core, _| core.bucket.refund(n, stamp, &mut core.refunds));
    }

    pub(crate) fn level(&self) -> u64 {
        if let Some(level) = self.front.level(&self.word, &self.clock) {
            return level;
        }
        self.locked(|core, now| core.bucket.level(core.now_eff(now)))
    }

    /// The fuel a newcomer could take now: the level, or 0 while anyone
    /// waits (`has_fuel` does not overtake the line).
    pub(crate) fn available(&self) -> u64 {
        if let Some(level) = self.front.available(&self.word, &self.clock) {
            return level;
        }
        self.locked(|core, now| {
            if core.queue.is_empty() {
                core.bucket.level(core.now_eff(now))
            } else {
                0
            }
        })
    }

    /// How long until `n` fuel could be granted to a newcomer, counting the
    /// line ahead; `None` while paused or if `n` can never fit.
    pub(crate) fn wait_for(&self, n: u64) -> Option<u64> {
        // Nothing asked for is granted at once, line or pause (as `take`).
        if n == 0 {
            return Some(0);
        }
        // Lock-free while nobody waits: a `Retry-After` on every rejected
        // request must not take the lock from the requests let through.
        if let Some(wait) = self.word.wait(self.clock.now_ns(), n) {
            return Some(wait);
        }
        self.locked(|core, now| {
            if n > core.request_cap() || self.paused(core) {
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
            let rates = std::iter::once(core.rate).chain(core.also.iter().copied());
            let mut level = |i| match open {
                true => core.bucket.level_of(i, now),
                false => 0,
            };
            rates.enumerate().map(|(i, r)| (r, level(i))).collect()
        })
    }

    pub(crate) fn rate(&self) -> Rate {
        if let Some(rate) = self.front.rate() {
            return rate;
        }
        lock(&self.core).rate
    }

    /// The `(epoch, tat)` of a `Limit`, `One` or `Unbounded` tank that
    /// nobody waits on, with the `tat`s of the rates of `also` from the
    /// same epoch; `None` otherwise.
    pub(crate) fn idle_gcra(&self) -> Option<(u64, i128, Vec<i128>)> {
        self.locked(|core, _| core.idle().then(|| core.bucket.gcra_state())?)
    }

    /// The log of a `Window` tank that nobody waits on; `None` otherwise.
    pub(crate) fn idle_window(&self) -> Option<Window> {
        self.locked(|core, _| core.idle().then(|| core.bucket.window().cloned())?)
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
    /// keep the CPU the spin would cost). Only for a tank of this process
    /// ([`Line::new`]): not in shared memory, where every process with
    /// waiters wakes for the same fuel and one of them is usually on time
    /// (following there cost every process a longer spin for little). Not
    /// on a clock that may stand still, whose timers are exact and on which
    /// a wait would never end.
    pub(crate) fn follow_timer(&self) {
        let mut core = lock(&self.core);
        if core.hardcap == Hardcap::One && !self.clock.may_stand_still() {
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
        let here = || lock(&self.core).paused_at.is_some();
        self.front.is_paused().unwrap_or_else(here)
    }

    /// Whether the refill stands still: paused here, or in the store (a
    /// shared one: by any process).
    fn paused(&self, core: &Core) -> bool {
        core.paused_at.is_some() || self.front.is_paused() == Some(true)
    }

    pub(crate) fn pause(&self) {
        self.locked(|core, now| core.bucket.pause(now, &mut core.paused_at));
    }

    pub(crate) fn resume(&self) {
        self.locked(|core, now| core.bucket.resume(now, &mut core.paused_at));
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
            if core.bucket.takes_turns() && core.unscheduled == 0 {
                // Every waiter ahead has its turn: this one's is scheduled
                // behind theirs, and behind every other process's so far.
                match core.bucket.reserve(now, n, deadline) {
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
                && !self.paused(core)
                && core.due_after_line(now, n) > deadline
            {
                return Enqueued::TooLate;
            }
            // Nothing below can fail: once linked, the node is counted.
            // SAFETY: the caller's contract, and we hold the core lock.
            let linked = unsafe { core.queue.link(node, n, waker) };
            core.waiting += 1;
            match turn {
                // SAFETY: just linked, under the core lock.
                Some(turn) => unsafe { linked.set_turn(Some(turn)) },
                None => {
                    core.unscheduled += 1;
                    core.unscheduled_fuel += u128::from(n);
                }
            }
            let now_eff = core.now_eff(now);
            core.bucket.joined(now_eff, n, core.line_version);
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
                    core.bucket.refund(n, stamp, &mut core.refunds);
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
            self.bucket.own(word);
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
        let also = self.also.iter().map(|rate| rate.max_n());
        let also = also.map(|max_n| self.hardcap.request_capacity(max_n, None));
        also.fold(
            self.hardcap.request_capacity(self.rate.max_n(), self.burst),
            u64::min,
        )
    }

    /// Nobody waits and nothing is paused here: the state may be kept
    /// without the tank (`idle_gcra`, `idle_window`).
    fn idle(&self) -> bool {
        self.queue.is_empty() && self.paused_at.is_none()
    }

    /// The head of the line, asking for `n`, if its fuel is there: in a
    /// store that takes turns, a head whose turn has come (a head whose
    /// turn is not scheduled waits for `schedule_line`), else a take.
    fn grant_head(&mut self, now: u64, n: u64, turn: Option<(u64, u64)>) -> Option<Stamp> {
        if !self.bucket.takes_turns() {
            return self.try_take(now, n, true);
        }
        match turn {
            Some((due, word)) if due <= now => Some(Stamp::Host { word }),
            _ => None,
        }
    }

    /// Takes `n` from the bucket; returns the grant's stamp, which names it
    /// for a refund if `stamped` (else the take is final).
    fn try_take(&mut self, now: u64, n: u64, stamped: bool) -> Option<Stamp> {
        let now = self.now_eff(now);
        self.bucket.take(now, n, stamped, &mut self.refunds)
    }

    /// When a newcomer asking for `n` would be granted, after the line.
    fn due_after_line(&mut self, now: u64, n: u64) -> u64 {
        let now = self.now_eff(now);
        // SAFETY: nodes of this list, under the core lock.
        let line = self.queue.iter().map(|waiter| unsafe { waiter.n() });
        // (The turns scheduled are in the store already.)
        let (ahead, version) = (self.unscheduled_fuel, self.line_version);
        self.bucket.due_after(now, n, ahead, line, version)
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
            self.left(n, turn.is_some());
            // Its turn comes back if nothing was taken or scheduled since
            // (in any process); else it passes unused.
            if let Some((_, word)) = turn {
                self.bucket
                    .refund(n, Stamp::Host { word }, &mut self.refunds);
            }
        }
    }

    /// A waiter asking for `n` left the line (granted or not), its turn
    /// `scheduled` in the store or not.
    fn left(&mut self, n: u64, scheduled: bool) {
        self.waiting -= 1;
        self.line_version += 1;
        if !scheduled {
            self.unscheduled -= 1;
            self.unscheduled_fuel -= u128::from(n);
        }
    }

    /// A store that takes turns: schedules the turns of the waiters at the
    /// back of the line that have none yet, in order, while it takes them.
    fn schedule_line(&mut self, now: u64) {
        if self.unscheduled == 0 || !self.bucket.takes_turns() {
            return;
        }
        for waiter in self.queue.iter() {
            // SAFETY: a node of this list, under the core lock.
            let (n, turn) = unsafe { (waiter.n(), waiter.turn()) };
            if turn.is_some() {
                continue;
            }
            let turn = match self.bucket.reserve(now, n, None) {
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
            let (n, turn) = unsafe { (head.n(), head.turn()) };
            if let Some(stamp) = self.grant_head(now, n, turn) {
                self.queue.pop_front();
                self.left(n, turn.is_some());
                // SAFETY: just taken out of this list, under the core lock.
                wakers.extend(unsafe { head.finish(GRANTED, stamp) });
                continue;
            }
            if self.paused_at.is_some() {
                self.timer.disarm();
                self.armed_at = None;
                return (now, None);
            }
            let turn = turn.map(|(due, _)| due);
            let due = self.bucket.due_head(self.now_eff(now), n, turn);
            // The grant just failed at `now`, so the fuel is due later; were
            // that ever not so, arming for `now` would spin this loop. (A
            // shared bucket can change between the two: another process
            // took; it answers a moment on, and the loop looks again.)
            debug_assert!(due > now || now == u64::MAX, "due {due} <= now {now}");
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
        if self.paused_at.is_some()
            || !self
                .bucket
                .publish(word, now, &mut self.published, self.renew)
        {
            return word.hold(false);
        }
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
        let cap = self.hardcap.capacity(rate.max_n(), self.burst);
        let now = self.bucket.set_rate(now, rate, cap)?;
        let old = self.rate;
        self.rate_changed(rate, wakers);
        self.move_turns(old, now, now);
        self.rate_seen_at = now;
        Ok(())
    }

    /// A store's own `rate` may have been changed elsewhere (shared: by
    /// another process): from then on, this one's capacity checks and
    /// waiters follow it too.
    fn follow_store(&mut self, rate: Option<Rate>, now: u64, wakers: &mut Vec<Waker>) {
        if let Some(rate) = rate
            && rate != self.rate
        {
            let (old, since) = (self.rate, self.rate_seen_at);
            self.rate_changed(rate, wakers);
            self.move_turns(old, since, now);
        }
        self.rate_seen_at = now;
    }

    /// The rate changed from `old` to `self.rate` between `since` and
    /// `now`: a store that takes turns kept them, each as many intervals of
    /// the new rate ahead as it was of the old, and this process's waiters
    /// follow. Counted from `since` if the new interval is longer, from
    /// `now` if shorter: never earlier than the store has them.
    fn move_turns(&mut self, old: Rate, since: u64, now: u64) {
        if !self.bucket.takes_turns() {
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
        // A correction never outgrows the interval: past it, the timer's
        // thread would wait out most of every interval.
        self.correction = self.correction.min(saturating_ns(rate.interval()));
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
