//! One global tank as this instance sees it: the fuel Redis reserved for
//! it, its line of waiters, and when to ask Redis again.
//!
//! A global tank has one entry; a keyed tank one per key in use.
//!
//! # Who does what
//!
//! - `has_fuel` takes from the lane (`lane.rs`) without the lock when it
//!   can; else it spends reserved fuel under the entry's lock. It never
//!   waits on Redis. Finding the reserve low or empty, it *kicks* the
//!   driver.
//! - A waiting future takes fuel at once if the line is empty and fuel is
//!   there; else it joins the line and kicks the driver.
//! - The driver (`driver.rs`, one task per entry while there is work)
//!   hands fuel to the head of the line as it becomes spendable (FIFO: a
//!   waiter is granted only after every waiter before it), wakes each
//!   waiter it grants, and makes the round trips.
//!
//! Every local time is read from fueltank's `MonotonicClock`, under the
//! lock, when the grant is made.
//!
//! # How much to ask for
//!
//! The driver asks when the line (or a `has_fuel` that found nothing)
//! wants more than is held, or when fuel is being used and less than half
//! a batch is left. A batch starts at 1. At each ask:
//!
//! - if the instance is starved (a waiter joined others already waiting,
//!   or `has_fuel` found nothing held), it grows fourfold, or to what the
//!   demand's rate takes in `reserve_ahead`, whichever is more (`Window`:
//!   to the most it may be);
//! - else it is what the demand's rate takes in half a hold, so that it
//!   and the half batch still held are spent before they expire (`Paced`:
//!   one unit unless the demand keeps up with the tank's rate);
//! - after reserved fuel expired with nobody wanting it, it halves;
//! - Redis may grant less, a fair share while other instances ask too
//!   (`script.lua`): the batch is then what it granted, so that every
//!   instance sharing the tank asks again at half of the same batch.
//!
//! It never exceeds `max_batch`, nor `reserve_ahead` of the tank's rate,
//! nor `max_n` under `Window`. The demand's rate is counted over periods of
//! two holds. A cold key thus costs one round trip per grant, a key asked
//! `r` times a second about `2 / (r · hold)` per grant, a saturated one a
//! round trip per batch. A refused ask is not repeated before the retry
//! time Redis gave; a failed one backs off from 50 ms to 1 s.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use fueltank::clock::{Clock, MonotonicClock};
use fueltank::{Budget, Rate, Tank};

use crate::Error;
use crate::keyed::Family;
use crate::lane::Lane;
use crate::offset::Offset;
use crate::params::{Mode, Params};
use crate::reserve::{Origin, Reserve};
use crate::script::{self, Ask, Op, Reply, Scope, Seen};
use crate::store::{Counters, FailurePolicy, StoreShared};

/// Options of a tank, shared by all its entries.
#[derive(Debug)]
pub(crate) struct Options {
    pub(crate) name: String,
    pub(crate) max_batch: u64,
    pub(crate) reserve_ahead: Duration,
    /// Whether the hold follows the rate (on `set_rate`).
    pub(crate) hold_is_default: bool,
    /// How early the driver's timer is armed for `Paced` fuel (`One`), in
    /// ns: this system's timer lateness, measured at build, then following
    /// the lateness the driver's timer shows (as a local `One` tank's
    /// does), at most a quarter of the interval and 250 µs; zero below
    /// 49/s and for other hardcaps, and then it stays zero.
    pub(crate) correction: AtomicU64,
    /// Whether the correction follows the timer (it was measured).
    pub(crate) follows: bool,
    /// The rates beside the first (`GlobalTankBuilder::also`), each with
    /// the tank's hardcap and hold, a GCRA each: Redis decides them with
    /// the first in one call; they never change (`set_rate` changes the
    /// first).
    pub(crate) also: Vec<Params>,
}

impl Options {
    /// The most fuel granted together: the least over the rates.
    pub(crate) fn capacity(&self, params: &Params) -> u64 {
        let also = self.also.iter().map(Params::capacity);
        also.fold(params.capacity(), u64::min)
    }

    /// The interval of a batch's slots: the longest over the rates.
    pub(crate) fn interval_ns(&self, params: &Params) -> u64 {
        let also = self.also.iter().map(Params::interval_ns);
        also.fold(params.interval_ns(), u64::max)
    }

    pub(crate) fn correction(&self) -> Duration {
        Duration::from_nanos(self.correction.load(Ordering::Relaxed))
    }

    /// The driver's timer fired `late` past its deadline, for a tank whose
    /// interval is now `interval`.
    fn follow(&self, late: Duration, interval: Duration) {
        if self.follows {
            let cap = (interval / 4).min(MAX_CORRECTION);
            let next = fueltank::clock::next_timer_correction(self.correction(), late, cap);
            let ns = u64::try_from(next.as_nanos()).unwrap_or(u64::MAX);
            self.correction.store(ns, Ordering::Relaxed);
        }
    }
}

/// The most the driver's timer is armed early.
pub(crate) const MAX_CORRECTION: Duration = Duration::from_micros(250);

/// The Redis keys of one entry: state and log (one slot).
pub(crate) type Keys = Arc<[Vec<u8>]>;

pub(crate) struct Entry {
    pub(crate) store: Arc<StoreShared>,
    pub(crate) options: Arc<Options>,
    pub(crate) keys: Keys,
    /// A keyed tank's parameters, shared by its entries: what Redis says
    /// for one key holds for all.
    family: Option<Arc<Family>>,
    /// A keyed tank's key with a rate of its own (`rate_by`): the tank's
    /// parameters at this rate.
    own: Option<Rate>,
    /// A keyed tank's key under `FailurePolicy::Local`: its part of the
    /// tank's local keyed tank, which outlives this entry (`keyed.rs`);
    /// `None`: the entry's own (`State::fallback`).
    local: Option<Box<dyn LocalShare>>,
    /// On a Cluster, where Redis's clock is for this entry's node: nodes'
    /// clocks differ, and an entry's keys are on one node (the store's
    /// bounds serve one server).
    offset: Option<Offset>,
    /// Who this entry is to Redis, for fair shares (random, not 0).
    asker: u64,
    /// Reserved fuel `has_fuel` takes without the lock (`lane.rs`).
    lane: Lane,
    /// Whether this entry's latest round trip failed. On a Cluster, what
    /// the failure policy follows: a shard that does not answer leaves
    /// the keys of the others alone. On one server the store's flag
    /// stands for every entry (one failure says it for all).
    down: AtomicBool,
    state: Mutex<State>,
}

struct State {
    params: Params,
    reserve: Reserve,
    /// Waiters not yet granted, in arrival order (ids increase).
    line: VecDeque<Queued>,
    /// Waiters granted, whose futures have not seen it yet.
    granted: Vec<(u64, Grant)>,
    next_id: u64,
    /// When and how much to ask Redis for.
    ask: Asking,
    /// Requests (grants, misses, waiters): the demand's rate.
    demand: Meter,
    /// Units put in the lane since it was last drained.
    laned: u64,
    /// Whether a waiter joined a line already waiting since the last ask:
    /// demand beyond what was reserved.
    crowded: bool,
    driver: DriverSlot,
    /// How uncertain Redis's time of the latest grant was here, for the
    /// guard of `Paced` batches.
    uncertainty: Duration,
    /// `FailurePolicy::Local`'s tank, made on first need from `params`
    /// (dropped when they change).
    fallback: Option<Tank>,
    /// Redis's latest answer to a take: when it ran, on this clock (late
    /// by up to the round trip, never early by more than the clocks'
    /// drift), and what it told of the state (when each rate is full).
    seen: Option<(Instant, Seen)>,
    /// What Redis holds under this name when it is another limit's (the
    /// state was lost and made again with other parameters): until Redis
    /// holds this instance's limit again, nothing more is granted here.
    conflict: Option<Params>,
}

impl State {
    /// Takes `params` (a `set_rate` here or by another instance, a learned
    /// or set limit): `FailurePolicy::Local`'s tank was made from the old
    /// ones, and is made again, from these, on next need.
    fn change_params(&mut self, params: Params) {
        if self.params != params {
            self.params = params;
            self.fallback = None;
        }
    }
}

#[derive(Default)]
struct DriverSlot {
    running: bool,
    /// Which driver runs (a new one after each spawn).
    generation: u64,
    waker: Option<Waker>,
    wake_at: Option<Instant>,
}

struct Queued {
    id: u64,
    n: u64,
    waker: Waker,
    /// Whether it fails with a [`Grant::Mismatch`] (it can return an error).
    fallible: bool,
    /// Whether it waits for Redis's next answer only, not for fuel to come
    /// (a layer's ask): unserved by the answer, it leaves with
    /// [`Grant::Unanswered`].
    answer_only: bool,
}

/// Fuel granted to a waiter.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Grant {
    Reserved(u64, Origin),
    /// By the failure policy: nothing to give back.
    Policy,
    /// The request can never be granted: more than the capacity.
    TooLarge(u64),
    /// Not granted: Redis holds another limit under this name (these
    /// parameters); only for waiters that can fail.
    Mismatch(Params),
    /// Not granted: Redis answered, and nothing it granted is spendable
    /// now; only for waiters that wait for an answer only.
    Unanswered,
}

/// The first poll of a waiting future.
pub(crate) enum Enqueued {
    Taken,
    Queued(u64),
    TooLarge(u64),
    TooLate,
    Mismatch(Params),
}

/// What the driver does next.
pub(crate) struct Plan {
    pub(crate) ask: Option<Ask>,
    pub(crate) wake_at: Option<Instant>,
    /// Whether `wake_at` is when the head of the line's fuel starts (the
    /// timer may then be armed early by the correction).
    pub(crate) for_fuel: bool,
    pub(crate) exit: bool,
}

/// Work to do after the entry's lock is released.
#[must_use]
pub(crate) enum Kick {
    None,
    Spawn(u64),
    Wake(Waker),
}

/// The clock of every local time here: fueltank's, a calibrated
/// time-stamp counter where there is one (a few nanoseconds a reading).
pub(crate) fn now() -> Instant {
    MonotonicClock.now()
}

const BACKOFF_MIN: Duration = Duration::from_millis(50);
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(1);

impl Entry {
    pub(crate) fn new(
        store: Arc<StoreShared>,
        options: Arc<Options>,
        keys: Keys,
        params: Params,
        family: Option<Arc<Family>>,
    ) -> Entry {
        Entry {
            offset: store.is_cluster().then(Offset::new),
            store,
            options,
            keys,
            family,
            own: None,
            local: None,
            asker: asker_id(),
            lane: Lane::new(now()),
            down: AtomicBool::new(false),
            state: Mutex::new(State {
                params,
                reserve: Reserve::default(),
                line: VecDeque::new(),
                granted: Vec::new(),
                next_id: 0,
                ask: Asking::default(),
                demand: Meter::default(),
                laned: 0,
                crowded: false,
                driver: DriverSlot::default(),
                uncertainty: Duration::from_millis(1),
                fallback: None,
                seen: None,
                conflict: None,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        crate::lock(&self.state)
    }

    pub(crate) fn params(&self) -> Params {
        self.lock().params
    }

    /// A keyed tank's key at `own`, a rate of its own, checked: the
    /// tank's parameters at that rate.
    /// A keyed tank's key: `FailurePolicy::Local` takes from `local`.
    pub(crate) fn with_local(mut self, local: Box<dyn LocalShare>) -> Entry {
        self.local = Some(local);
        self
    }

    pub(crate) fn with_own_rate(mut self, own: Option<Rate>) -> Result<Entry, Error> {
        self.own = own;
        let params = self.of_family(self.params())?;
        self.lock().params = params;
        Ok(self)
    }

    /// This entry's parameters, given the tank's.
    fn of_family(&self, params: Params) -> Result<Params, Error> {
        match self.own {
            Some(rate) => params.with_rate(rate, self.options.hold_is_default),
            None => Ok(params),
        }
    }

    /// The parameters Redis answered a `Build` or `Set` with: Redis holds
    /// this instance's limit, whatever it held before.
    pub(crate) fn set_params(&self, params: Params) {
        let params = self.of_family(params).unwrap_or(params);
        let mut st = self.lock();
        st.change_params(params);
        if st.conflict.take().is_some() {
            st.ask.backoff_until = None;
        }
    }

    /// Takes the parameters Redis answered with (another instance may have
    /// changed them).
    fn adopt(&self, st: &mut State, params: Params) {
        if st.params != params {
            st.change_params(params);
            if let Some(family) = self.family.as_ref().filter(|_| self.own.is_none()) {
                family.learn(params);
            }
        }
    }

    /// A keyed tank's entry takes the tank's parameters, as this instance
    /// knows them, before each round trip: another key's answer, a check
    /// or a `set_rate` may have changed them.
    fn follow_family(&self) -> Params {
        let mut st = self.lock();
        if let Some(family) = &self.family {
            // (A rate of its own was checked when the entry was made.)
            let params = self.of_family(family.params()).unwrap_or(st.params);
            st.change_params(params);
        }
        st.params
    }

    /// Fuel held here, spendable now or later.
    pub(crate) fn reserved(&self) -> u64 {
        let st = self.lock();
        st.reserve.left() + self.lane.count()
    }

    /// Puts what the lane holds back in the reserve (what was taken from it
    /// counts as demand), so that the locked paths see all the fuel.
    fn unlane(&self, st: &mut State, now: Instant) {
        let laned = std::mem::take(&mut st.laned);
        let (left, until) = self.lane.drain().unwrap_or((0, now));
        let taken = laned.saturating_sub(left);
        if taken > 0 {
            st.ask.used = true;
            let period = st.params.hold() * 2;
            st.demand.add(now, taken, period);
        }
        if left > 0 {
            let counters = &self.store.counters;
            counters.granted.fetch_sub(left, Ordering::Relaxed);
            if until > now {
                st.reserve.give_back(left, Origin::Until(until), now);
            } else {
                Counters::add(&counters.expired, left);
            }
        }
    }

    /// Fills the lane from the reserve, if nobody waits and Redis answers:
    /// the units spendable now that end together.
    fn relane(&self, st: &mut State, now: Instant) {
        if !st.line.is_empty() || self.is_down() || self.lane.count() > 0 {
            return;
        }
        // The reserve may have gained fuel since `has_fuel` marked the lane
        // refused: the mark holds only until the locked path looks again.
        self.lane.unmark();
        st.reserve.expire(now);
        let Some((count, until)) = st.reserve.take_lane(now, crate::lane::LANE_MAX) else {
            return;
        };
        // Leave the last units to the locked path, which asks for more
        // when less than half a batch is held.
        let low = if st.ask.in_flight || st.ask.batch <= 1 {
            0
        } else {
            st.ask.batch.div_ceil(2).saturating_sub(st.reserve.left())
        };
        let laned = self.lane.fill(count, until, low);
        if laned < count {
            st.reserve
                .give_back(count - laned, Origin::Until(until), now);
        }
        st.laned = laned;
        Counters::add(&self.store.counters.granted, laned);
    }

    pub(crate) fn waiting(&self) -> usize {
        self.lock().line.len()
    }

    /// Fuel a newcomer could take here now: what is reserved and spendable
    /// now, none while waiters are in line. Never more than the truth
    /// (Redis may hold more for whoever asks).
    pub(crate) fn available(&self) -> u64 {
        let mut st = self.lock();
        let now = now();
        if !st.line.is_empty() {
            return 0;
        }
        self.expire(&mut st, now);
        st.reserve.spendable(now) + self.lane.spendable(now)
    }

    /// The Redis-side conflict, as the error its waiters get.
    pub(crate) fn mismatch(&self, stored: Params) -> Error {
        mismatch(
            &self.options.name,
            stored,
            self.params(),
            &self.options.also,
        )
    }

    /// Drops reserved fuel whose hold has ended.
    fn expire(&self, st: &mut State, now: Instant) {
        let expired = st.reserve.expire(now);
        if expired > 0 {
            // Expired while nobody wanted it: the batches were too large.
            // (Fuel lost to lateness while tasks wait says nothing of that.)
            st.ask.expired |= st.line.is_empty() && st.ask.missed == 0;
            Counters::add(&self.store.counters.expired, expired);
        }
    }

    /// Takes `n` now from the reserve or, while Redis does not answer, by
    /// the failure policy.
    fn take(&self, st: &mut State, n: u64, now: Instant) -> Option<Grant> {
        self.expire(st, now);
        if let Some(origin) = st.reserve.take(n, now) {
            st.ask.used = true;
            Counters::add(&self.store.counters.granted, n);
            return Some(Grant::Reserved(n, origin));
        }
        if !self.is_down() {
            return None;
        }
        let counters = &self.store.counters;
        let granted = match self.store.policy {
            FailurePolicy::Closed => false,
            FailurePolicy::Open => true,
            FailurePolicy::Local(share) => match &self.local {
                Some(local) => local.has_fuel_n(n),
                None => fallback(st, &self.options.also, share).is_some_and(|t| t.has_fuel_n(n)),
            },
        };
        if granted {
            st.ask.used = true;
            Counters::add(&counters.policy_grants, n);
            Some(Grant::Policy)
        } else {
            None
        }
    }

    /// `has_fuel_n`: never waits, never overtakes a waiter.
    pub(crate) fn has_fuel_n(self: &Arc<Self>, n: u64) -> bool {
        if n == 0 {
            return true;
        }
        if let Some(taken) = self.lane.take(n) {
            return taken;
        }
        let mut st = self.lock();
        // Read under the lock: the grant is made at this time.
        let now = now();
        if n > self.options.capacity(&st.params) {
            return false;
        }
        self.unlane(&mut st, now);
        let period = st.params.hold() * 2;
        st.demand.tick(now, period);
        let taken = st.line.is_empty() && self.take(&mut st, n, now).is_some();
        if !taken {
            st.ask.missed = st.ask.missed.saturating_add(1);
            if self.is_down() {
                Counters::add(&self.store.counters.policy_refusals, 1);
            }
        }
        let kick = self.kick(&mut st, now, false);
        self.relane(&mut st, now);
        // Nothing now: until the next reserved fuel starts (or Redis's
        // retry time, if more must be asked for), `has_fuel` may say no
        // without the lock.
        if !taken
            && st.line.is_empty()
            && !st.ask.in_flight
            && !self.is_down()
            && self.lane.count() == 0
        {
            let mut until = st.reserve.next_start();
            if self.wants_more(&st) {
                let retry = st.ask.retry();
                until = match (until, retry.filter(|&at| at > now)) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (None, Some(b)) => Some(b),
                    // An ask is due now.
                    (_, None) => None,
                };
            }
            if let Some(until) = until.filter(|&at| at > now) {
                self.lane.refuse_until(until);
            }
        }
        drop(st);
        self.run(kick);
        taken
    }

    /// The first poll of a waiting future.
    pub(crate) fn enqueue(
        self: &Arc<Self>,
        n: u64,
        deadline: Option<Instant>,
        (fallible, answer_only): (bool, bool),
        waker: &Waker,
    ) -> Enqueued {
        if n == 0 {
            return Enqueued::Taken;
        }
        let mut st = self.lock();
        let now = now();
        let capacity = self.options.capacity(&st.params);
        if n > capacity {
            return Enqueued::TooLarge(capacity);
        }
        self.unlane(&mut st, now);
        let period = st.params.hold() * 2;
        st.demand.tick(now, period);
        if st.line.is_empty() && self.take(&mut st, n, now).is_some() {
            let kick = self.kick(&mut st, now, false);
            drop(st);
            self.run(kick);
            return Enqueued::Taken;
        }
        if let Some(stored) = st.conflict.filter(|_| fallible) {
            // Refused without joining the line, as a `has_fuel` that found
            // nothing: it counts as demand, and kicks the driver, which asks
            // Redis again once the backoff has passed (only an answer ends
            // the conflict).
            st.ask.missed = st.ask.missed.saturating_add(1);
            let kick = self.kick(&mut st, now, false);
            drop(st);
            self.run(kick);
            return Enqueued::Mismatch(stored);
        }
        if let Some(deadline) = deadline {
            let known_late =
                st.reserve.left() < n && st.ask.retry_at.is_some_and(|at| at > deadline);
            if deadline <= now || known_late {
                return Enqueued::TooLate;
            }
        }
        let id = st.next_id;
        st.next_id += 1;
        st.crowded |= !st.line.is_empty();
        st.line.push_back(Queued {
            id,
            n,
            waker: waker.clone(),
            fallible,
            answer_only,
        });
        let kick = self.kick(&mut st, now, true);
        drop(st);
        self.run(kick);
        Enqueued::Queued(id)
    }

    /// A later poll: the grant, once the driver has made it.
    pub(crate) fn poll_queued(&self, id: u64, waker: &Waker) -> Poll<Grant> {
        let mut st = self.lock();
        if let Some(at) = st.granted.iter().position(|&(granted, _)| granted == id) {
            return Poll::Ready(st.granted.swap_remove(at).1);
        }
        if let Ok(at) = st.line.binary_search_by_key(&id, |q| q.id)
            && !st.line[at].waker.will_wake(waker)
        {
            st.line[at].waker = waker.clone();
        }
        Poll::Pending
    }

    /// A waiter leaves: its future was dropped (`keep_grant` false: a
    /// grant it had not seen goes back to the reserve) or its deadline
    /// passed (`keep_grant` true: a grant made in the meantime is its own).
    /// Either way the next in line may now be served.
    pub(crate) fn leave(self: &Arc<Self>, id: u64, keep_grant: bool) -> Option<Grant> {
        let mut st = self.lock();
        let now = now();
        if let Some(at) = st.granted.iter().position(|&(granted, _)| granted == id) {
            let (_, granted) = st.granted.swap_remove(at);
            if keep_grant {
                return Some(granted);
            }
            if let Grant::Reserved(n, origin) = granted {
                st.reserve.give_back(n, origin, now);
                self.lane.unmark();
                self.store.counters.granted.fetch_sub(n, Ordering::Relaxed);
            }
        } else if let Ok(at) = st.line.binary_search_by_key(&id, |q| q.id) {
            st.line.remove(at);
        }
        let mut wake = Vec::new();
        self.assign(&mut st, now, &mut wake);
        let kick = self.kick(&mut st, now, false);
        drop(st);
        wake.into_iter().for_each(Waker::wake);
        self.run(kick);
        None
    }

    /// Hands spendable fuel to the head of the line, in order.
    fn assign(&self, st: &mut State, now: Instant, wake: &mut Vec<Waker>) {
        while let Some(head) = st.line.front() {
            let n = head.n;
            let capacity = self.options.capacity(&st.params);
            let grant = if n > capacity {
                Grant::TooLarge(capacity)
            } else {
                match self.take(st, n, now) {
                    Some(grant) => grant,
                    None => break,
                }
            };
            let queued = st.line.pop_front().expect("the head was just read");
            st.granted.push((queued.id, grant));
            wake.push(queued.waker);
        }
    }

    /// Whether Redis should be asked for more: the line (or a `has_fuel`
    /// that found nothing) wants more than is held, or fuel is being used
    /// and less than half a batch is left. While Redis does not answer,
    /// any demand asks (after the backoff), to find out when it is back.
    fn wants_more(&self, st: &State) -> bool {
        let held = st.reserve.left() + self.lane.count();
        let waited: u64 = st.line.iter().map(|q| q.n).sum();
        st.ask.wants_more(held, waited, self.is_down())
    }

    /// Starts or wakes the driver if there is work for it now.
    fn kick(&self, st: &mut State, now: Instant, joined: bool) -> Kick {
        let ask_now = self.wants_more(st) && st.ask.may_ask(now);
        if !st.driver.running {
            if !ask_now && st.line.is_empty() {
                return Kick::None;
            }
            st.driver.running = true;
            st.driver.generation += 1;
            return Kick::Spawn(st.driver.generation);
        }
        let sleeping = st.driver.wake_at.is_none_or(|at| at > now);
        if (joined || ask_now)
            && sleeping
            && let Some(waker) = st.driver.waker.take()
        {
            return Kick::Wake(waker);
        }
        Kick::None
    }

    fn run(self: &Arc<Self>, kick: Kick) {
        match kick {
            Kick::None => {}
            Kick::Wake(waker) => waker.wake(),
            Kick::Spawn(generation) => {
                let driver = crate::driver::Driver::new(self.clone(), generation);
                self.store.spawner.spawn(driver);
            }
        }
    }

    /// Grants the line what is spendable now (the driver's timer fired,
    /// `late` past its deadline if it was armed for fuel, which the
    /// correction then follows). A timer armed early by the correction
    /// finds the fuel not quite due: it waits out the rest here, spinning,
    /// outside the lock.
    pub(crate) fn grant_due(&self, late: Option<Duration>) {
        if let Some(late) = late {
            let interval = Duration::from_nanos(self.options.interval_ns(&self.lock().params));
            self.options.follow(late, interval);
        }
        let correction = self.options.correction();
        if !correction.is_zero() {
            let start = {
                let st = self.lock();
                st.line.front().and(st.reserve.next_start())
            };
            if let Some(start) = start
                && start.saturating_duration_since(now()) <= correction
            {
                while now() < start {
                    std::hint::spin_loop();
                }
            }
        }
        let mut st = self.lock();
        let now = now();
        let mut wake = Vec::new();
        self.assign(&mut st, now, &mut wake);
        drop(st);
        wake.into_iter().for_each(Waker::wake);
    }

    /// The driver's step: grant, decide whether to ask, and when to wake.
    pub(crate) fn plan(&self, waker: &Waker, calling: bool) -> Plan {
        let mut st = self.lock();
        let now = now();
        let mut wake = Vec::new();
        self.assign(&mut st, now, &mut wake);
        let wants = self.wants_more(&st);
        let mut ask = None;
        if !calling && wants && st.ask.may_ask(now) {
            ask = Some(self.make_ask(&mut st, now));
            st.ask.in_flight = true;
            self.lane.open_low();
        }
        let mut wake_at = None;
        let mut earliest = |at: Option<Instant>| {
            if let Some(at) = at {
                wake_at = Some(wake_at.map_or(at, |w: Instant| w.min(at)));
            }
        };
        let fuel_at = st.line.front().and(st.reserve.next_start());
        if let Some(head) = st.line.front() {
            earliest(fuel_at);
            if self.is_down() && matches!(self.store.policy, FailurePolicy::Local(_)) {
                // Once a local tank is made.
                let wait = match &self.local {
                    Some(local) => local.wait_time(head.n),
                    None => st.fallback.as_ref().map(|tank| tank.wait_time(head.n)),
                };
                if let Some(wait) = wait {
                    let wait = wait.unwrap_or(Duration::from_millis(100));
                    earliest(Some(now + wait.max(Duration::from_micros(50))));
                }
            }
            if ask.is_none() && !calling && wants {
                let retry = st.ask.retry();
                earliest(retry);
            }
        }
        let exit = ask.is_none() && !calling && st.line.is_empty();
        if exit {
            st.driver.running = false;
            st.driver.waker = None;
            st.driver.wake_at = None;
        } else {
            st.driver.waker = Some(waker.clone());
            st.driver.wake_at = wake_at;
        }
        drop(st);
        wake.into_iter().for_each(Waker::wake);
        Plan {
            ask,
            for_fuel: wake_at.is_some() && wake_at == fuel_at,
            wake_at,
            exit,
        }
    }

    /// The next ask, sized to the demand seen since the last one.
    fn make_ask(&self, st: &mut State, now: Instant) -> Ask {
        let params = st.params;
        let rate = st.demand.rate(now, params.hold() * 2);
        let starved =
            st.crowded || st.line.len() > 1 || (st.ask.missed > 0 && st.reserve.left() == 0);
        let batch = st.ask.start(&self.options, &params, rate, starved);
        let head = st.line.front().map_or(1, |q| q.n);
        let together = if head > 1 && !st.reserve.can_take(head, now) {
            head
        } else {
            0
        };
        st.crowded = false;
        let hold = params.hold_ns;
        // Twice the latest round trip, and at least a thousandth of the
        // interval: a batch's guard delays the next batch (so costs at most
        // 0.1 % of the rate), and a slow tank's first slot then outlasts a
        // round trip a loaded machine stretches past the latest one.
        let guard = u64::try_from((st.uncertainty * 2 + Duration::from_micros(500)).as_nanos())
            .unwrap_or(u64::MAX)
            .max(self.options.interval_ns(&params) / 1000)
            .clamp(500_000, hold.max(500_000));
        let want = if together > 0 { together } else { batch };
        st.ask.asked = if together > 0 { 0 } else { want };
        Ask {
            want,
            // A full window reopens at most a period later: reserving that
            // far spares a refusal per period.
            ahead_ns: u64::try_from(self.options.reserve_ahead.as_nanos())
                .unwrap_or(u64::MAX)
                .max(if params.mode() == Mode::Window {
                    params.per_ns
                } else {
                    0
                }),
            together,
            life_ns: hold,
            guard_ns: guard,
            finished: st.reserve.take_finished(),
            asker: self.asker,
        }
    }

    /// Whether Redis did not answer this entry's keys (on one server: the
    /// store) at the latest round trip: while so, the failure policy decides.
    pub(crate) fn is_down(&self) -> bool {
        match self.store.is_cluster() {
            true => self.down.load(Ordering::Relaxed),
            false => self.store.is_down(),
        }
    }

    /// The driver's round trip.
    pub(crate) fn call(
        self: &Arc<Self>,
        ask: Ask,
    ) -> impl Future<Output = Outcome> + Send + 'static {
        let entry = self.clone();
        async move {
            let params = entry.follow_family();
            let sent = now();
            let Some(family) = &entry.family else {
                let args =
                    script::args(Op::Take, Scope::Global, &params, &entry.options.also, &ask);
                let result = entry.store.call(&entry.keys, args).await;
                return Outcome {
                    result,
                    sent,
                    answered: now(),
                };
            };
            entry.keyed_call(family, params, &ask, sent).await
        }
    }

    /// A keyed tank's round trip on this key, with a check of the tank's
    /// parameters (in a slot of their own) at most once a second, alongside;
    /// a key stored by a tank born later is judged by a check, and asked
    /// again if the check taught this instance newer parameters.
    async fn keyed_call(
        &self,
        family: &Family,
        params: Params,
        ask: &Ask,
        sent: Instant,
    ) -> Outcome {
        let take = |params: Params| {
            let args = script::args(Op::Take, Scope::Key, &params, &self.options.also, ask);
            self.store.call(&self.keys, args)
        };
        let checked = family.claim(sent);
        let mut result = match (checked, family.conflict()) {
            // Another limit holds the name: no key is asked until a check
            // says otherwise.
            (true, Some(_)) => {
                family.check(&self.store).await;
                match family.conflict() {
                    Some(stored) => Ok(Reply::Mismatch(stored)),
                    None => take(self.follow_family()).await,
                }
            }
            (false, Some(stored)) => Ok(Reply::Mismatch(stored)),
            (true, None) => {
                futures_util::future::join(take(params), family.check(&self.store))
                    .await
                    .0
            }
            (false, None) => take(params).await,
        };
        let mut sent = sent;
        if let Ok(Reply::Mismatch(_)) = &result {
            if !family.checked_since(sent) {
                family.claim_now();
                family.check(&self.store).await;
            }
            if let Some(stored) = family.conflict() {
                result = Ok(Reply::Mismatch(stored));
            } else {
                let fresh = self.follow_family();
                if fresh != params {
                    sent = now();
                    result = take(fresh).await;
                }
            }
        }
        Outcome {
            result,
            sent,
            answered: now(),
        }
    }

    /// Takes in a round trip's outcome.
    pub(crate) fn apply(&self, outcome: Outcome) {
        let Outcome {
            result,
            sent,
            answered,
        } = outcome;
        self.down.store(result.is_err(), Ordering::Relaxed);
        // Redis's now of this call, as local times (see `offset.rs`).
        let (sent, answered) = match &result {
            Ok(Reply::Granted(_, seen) | Reply::Refused(_, seen)) => {
                let offset = self.offset.as_ref().unwrap_or(&self.store.offset);
                offset.observe(seen.now.ns(), sent, answered)
            }
            _ => (sent, answered),
        };
        let mut st = self.lock();
        st.ask.in_flight = false;
        st.uncertainty = answered.saturating_duration_since(sent);
        let counters = &self.store.counters;
        if let Ok(Reply::Granted(_, seen) | Reply::Refused(_, seen)) = &result {
            // Redis holds this limit (or one set on it) again.
            st.conflict = None;
            st.seen = Some((answered, seen.clone()));
        }
        let mut wake = Vec::new();
        match result {
            Ok(Reply::Granted(granted, seen)) => {
                self.adopt(&mut st, seen.params);
                st.ask.granted(granted.count);
                let kept = st.reserve.add(&granted, sent, answered);
                Counters::add(&counters.reserved, granted.count);
                if kept < granted.count {
                    st.ask.expired = true;
                    Counters::add(&counters.expired, granted.count - kept);
                }
            }
            Ok(Reply::Refused(retry, seen)) => {
                self.adopt(&mut st, seen.params);
                st.ask.refused(answered + Duration::from_nanos(retry));
                Counters::add(&counters.refusals, 1);
            }
            Ok(Reply::Done(seen)) => self.adopt(&mut st, seen.params),
            Ok(Reply::Mismatch(stored)) => {
                // Another limit under this name: never adopted. Nothing more
                // is granted here (reserved fuel was granted by this limit
                // and is spent); waiters that can fail do, the others wait;
                // Redis is asked again after the longest backoff.
                if st.conflict.is_none() {
                    Counters::add(&counters.mismatches, 1);
                }
                st.conflict = Some(stored);
                st.ask.failures = 0;
                st.ask.retry_at = None;
                st.ask.backoff_until = Some(answered + BACKOFF_MAX);
                let mut kept = VecDeque::new();
                for queued in std::mem::take(&mut st.line) {
                    if queued.fallible {
                        st.granted.push((queued.id, Grant::Mismatch(stored)));
                        wake.push(queued.waker);
                    } else {
                        kept.push_back(queued);
                    }
                }
                st.line = kept;
            }
            Err(_) => st.ask.failed(answered),
        }
        // Waiters for this answer only: what it made spendable now is
        // theirs, in line; the others leave now rather than wait for fuel
        // that starts later (it stays reserved for whoever comes then).
        let now = now();
        self.assign(&mut st, now, &mut wake);
        let State { line, granted, .. } = &mut *st;
        line.retain(|queued| {
            if queued.answer_only {
                granted.push((queued.id, Grant::Unanswered));
                wake.push(queued.waker.clone());
            }
            !queued.answer_only
        });
        self.relane(&mut st, now);
        drop(st);
        wake.into_iter().for_each(Waker::wake);
    }

    /// The driver ended without finishing (its runtime dropped it).
    pub(crate) fn driver_gone(&self, generation: u64, calling: bool) {
        let mut st = self.lock();
        if calling {
            st.ask.in_flight = false;
        }
        if st.driver.generation == generation && st.driver.running {
            st.driver.running = false;
            st.driver.waker = None;
        }
    }

    /// How long a newcomer asking for `n` would wait, as far as this
    /// instance knows.
    pub(crate) fn wait_time(&self, n: u64) -> Option<Duration> {
        let mut st = self.lock();
        let now = now();
        if n > self.options.capacity(&st.params) {
            return None;
        }
        if n == 0 {
            return Some(Duration::ZERO);
        }
        self.unlane(&mut st, now);
        self.expire(&mut st, now);
        if st.line.is_empty() && st.reserve.can_take(n, now) {
            return Some(Duration::ZERO);
        }
        // A newcomer comes after the waiters: reserved fuel serves them
        // first, Redis the rest.
        let wanted = st.line.iter().map(|q| q.n).sum::<u64>().saturating_add(n);
        let left = st.reserve.left();
        let until = if left >= wanted {
            st.reserve.next_start()
        } else {
            // From Redis: not before it may be asked again, nor before its
            // schedule (as of its latest answer) has room for what the
            // reserve does not serve; others only take more.
            st.ask
                .retry()
                .max(redis_due(&self.options, &st, wanted - left))
        };
        Some(until.map_or(Duration::ZERO, |at| at.saturating_duration_since(now)))
    }

    /// A `Build` or `Set` call for this global tank's keys.
    pub(crate) async fn control(&self, op: Op, params: Params) -> Result<Params, Error> {
        let also = &self.options.also;
        let name = &self.options.name;
        control(
            &self.store,
            &self.keys,
            Scope::Global,
            op,
            params,
            also,
            name,
        )
        .await
    }
}

/// Redis holds another limit under `name` than `given` with the rates
/// `also`: the stored one is told by its first rate (the script answers
/// that), or as having other `also` rates if its first is the same.
fn mismatch(name: &str, stored: Params, given: Params, also: &[Params]) -> Error {
    let also: String = also.iter().map(|p| format!(" also {}", p.rate())).collect();
    let mut stored = stored.describe();
    let given = given.describe();
    if stored == given {
        stored.push_str(" with other `also` rates");
    }
    Error::Mismatch {
        name: name.to_string(),
        stored,
        given: given + &also,
    }
}

/// A `Build` or `Set` call on `keys`: the parameters Redis holds after it,
/// or a mismatch.
pub(crate) async fn control(
    store: &StoreShared,
    keys: &[Vec<u8>],
    scope: Scope,
    op: Op,
    params: Params,
    also: &[Params],
    name: &str,
) -> Result<Params, Error> {
    let reply = store
        .call(
            keys,
            script::args(op, scope, &params, also, &Ask::default()),
        )
        .await?;
    match reply {
        Reply::Done(seen) => Ok(seen.params),
        Reply::Mismatch(stored) => Err(mismatch(name, stored, params, also)),
        other => Err(Error::Redis {
            reason: format!("unexpected answer to a {op:?}: {other:?}"),
        }),
    }
}

/// The rate of a stream of events, counted over periods: the last whole
/// period's rate, or the current one's if it is higher; once a period has
/// passed without a new period starting, the current one's alone (so a
/// demand that stopped is not taken for one that goes on).
#[derive(Debug, Default)]
pub(crate) struct Meter {
    since: Option<Instant>,
    count: u64,
    last: f64,
}

impl Meter {
    pub(crate) fn tick(&mut self, now: Instant, period: Duration) {
        self.add(now, 1, period);
    }

    fn add(&mut self, now: Instant, events: u64, period: Duration) {
        let since = *self.since.get_or_insert(now);
        self.count = self.count.saturating_add(events);
        let elapsed = now.saturating_duration_since(since);
        if elapsed >= period {
            self.last = self.count as f64 / elapsed.as_secs_f64();
            self.since = Some(now);
            self.count = 0;
        }
    }

    /// Events per second.
    pub(crate) fn rate(&self, now: Instant, period: Duration) -> f64 {
        let Some(since) = self.since else {
            return 0.0;
        };
        let elapsed = now.saturating_duration_since(since);
        let current = self.count as f64 / elapsed.max(period).as_secs_f64();
        if elapsed >= period {
            current
        } else {
            self.last.max(current)
        }
    }
}

/// The outcome of a round trip, with when it was sent and answered.
pub(crate) struct Outcome {
    result: Result<Reply, Error>,
    sent: Instant,
    answered: Instant,
}

impl Outcome {
    /// A round trip the driver gave up on.
    pub(crate) fn abandoned(sent: Instant, after: Duration) -> Outcome {
        Outcome {
            result: Err(Error::Timeout { after }),
            sent,
            answered: now(),
        }
    }
}

/// A random id, never 0, for an entry: Redis counts the instances asking
/// for a tank's fuel by these.
fn asker_id() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    static MADE: AtomicU64 = AtomicU64::new(0);
    let made = MADE.fetch_add(1, Ordering::Relaxed);
    RandomState::new()
        .hash_one((std::process::id(), made, now()))
        .max(1)
}

/// When Redis's schedule, as of its latest answer, has room for `n`
/// under every rate (see [`Seen::due`]):
/// exact as of that answer; takes of other instances since can only make
/// it later. `None` if not known, or too far back for an `Instant` (long
/// due).
fn redis_due(options: &Options, st: &State, n: u64) -> Option<Instant> {
    let (answered, seen) = st.seen.as_ref()?;
    let due = seen.due(&options.also, n)?;
    let ns = Duration::from_nanos(u64::try_from(due.unsigned_abs()).unwrap_or(u64::MAX));
    if due >= 0 {
        answered.checked_add(ns)
    } else {
        answered.checked_sub(ns)
    }
}

/// When and how much an entry asks Redis for: what it saw since its last
/// ask and what Redis's latest answers said. The fleet simulation's
/// instances (`sim.rs`) decide with it too.
#[derive(Debug)]
pub(crate) struct Asking {
    pub(crate) batch: u64,
    /// The batch asked for in the round trip in flight (0: `together`).
    pub(crate) asked: u64,
    /// `has_fuel` calls that found nothing since the last ask.
    pub(crate) missed: u64,
    /// Whether fuel was taken since the last ask.
    pub(crate) used: bool,
    /// Whether reserved fuel expired unspent since the last ask.
    pub(crate) expired: bool,
    pub(crate) in_flight: bool,
    pub(crate) retry_at: Option<Instant>,
    pub(crate) backoff_until: Option<Instant>,
    pub(crate) failures: u32,
}

impl Default for Asking {
    fn default() -> Asking {
        Asking {
            batch: 1,
            asked: 0,
            missed: 0,
            used: false,
            expired: false,
            in_flight: false,
            retry_at: None,
            backoff_until: None,
            failures: 0,
        }
    }
}

impl Asking {
    /// Whether an ask may be sent at `now`: none is in flight, and Redis's
    /// retry time and the backoff have passed.
    pub(crate) fn may_ask(&self, now: Instant) -> bool {
        !self.in_flight
            && self.retry_at.is_none_or(|at| at <= now)
            && self.backoff_until.is_none_or(|at| at <= now)
    }

    /// Whether an entry holding `held` units, its line waiting for `waited`,
    /// asks Redis for more: the line (or a `has_fuel` that found nothing)
    /// wants more than is held, or fuel is being used and less than half a
    /// batch is left. While Redis does not answer (`down`), any demand
    /// asks (after the backoff), to find out when it is back.
    pub(crate) fn wants_more(&self, held: u64, waited: u64, down: bool) -> bool {
        let wanted = waited.saturating_add(u64::from(self.missed > 0));
        let probing = down && (self.used || wanted > 0);
        let low = self.used && self.batch > 1 && held < self.batch.div_ceil(2);
        probing || wanted > held || low
    }

    /// When Redis may be asked again, if not now.
    pub(crate) fn retry(&self) -> Option<Instant> {
        self.retry_at.max(self.backoff_until)
    }

    /// Starts an ask: the next batch, for a demand of `rate` a second,
    /// `starved` or not (see the module docs); what was seen since the last
    /// ask starts again.
    pub(crate) fn start(
        &mut self,
        options: &Options,
        params: &Params,
        rate: f64,
        starved: bool,
    ) -> u64 {
        self.batch = self.next_batch(options, params, rate, starved);
        self.missed = 0;
        self.used = false;
        self.expired = false;
        self.batch
    }

    /// Redis granted `count`. Less than the batch asked for is this
    /// instance's share while others ask too, then its batch: half of it
    /// left is when to ask again, as for every instance sharing the tank.
    pub(crate) fn granted(&mut self, count: u64) {
        self.failures = 0;
        self.backoff_until = None;
        self.retry_at = None;
        if count < self.asked {
            self.batch = count.max(1);
        }
    }

    /// Redis refused: nothing before `retry_at`.
    pub(crate) fn refused(&mut self, retry_at: Instant) {
        self.failures = 0;
        self.backoff_until = None;
        self.retry_at = Some(retry_at);
    }

    /// The round trip answered at `answered` failed: backs off, from 50 ms,
    /// doubling with each failure in a row, to 1 s.
    pub(crate) fn failed(&mut self, answered: Instant) {
        self.failures = self.failures.saturating_add(1);
        let backoff = BACKOFF_MIN.saturating_mul(1 << self.failures.min(5).saturating_sub(1));
        self.backoff_until = Some(answered + backoff.min(BACKOFF_MAX));
    }

    /// The next batch (see the module docs), for a demand of `rate` a
    /// second (over periods of two holds), `starved` (waiters queued behind
    /// others, or `has_fuel` finding nothing held) or not.
    fn next_batch(&self, options: &Options, params: &Params, rate: f64, starved: bool) -> u64 {
        let interval = options.interval_ns(params);
        let mut most = options
            .max_batch
            .min(u64::try_from(options.reserve_ahead.as_nanos()).unwrap_or(u64::MAX) / interval)
            .max(1);
        if params.mode() == Mode::Window {
            most = most.min(params.max_n);
        }
        // Starved: four times more, or what the demand's rate takes in
        // `reserve_ahead`, whichever is more. Else what the rate takes up
        // within half a unit's hold (a `Paced` batch is spent at the tank's
        // rate: only worth more than one unit if the demand keeps up). Halve
        // after fuel expired unwanted.
        let hold = Duration::from_nanos(params.hold_ns);
        let within = |span: Duration| (rate * span.as_secs_f64()).ceil() as u64;
        let paced_slow = params.mode() == Mode::Paced && rate * (interval as f64) < 1e9;
        // Non-starved: what the rate takes in half a hold, so that a batch
        // and the half batch left when it is asked for are spent before
        // their units expire.
        let steady = within(hold.min(options.reserve_ahead) / 2).max(1);
        if self.expired {
            (self.batch / 2).min(steady).max(1)
        } else if starved && params.mode() == Mode::Window {
            // A window's fuel is granted from what is free (now, or as old
            // grants leave): nothing comes before its time, so a starved
            // instance may ask for all it may hold at once.
            most
        } else if starved {
            self.batch
                .saturating_mul(4)
                .max(within(options.reserve_ahead))
        } else if paced_slow {
            1
        } else {
            steady
        }
        .min(most)
    }
}

/// `FailurePolicy::Local`'s tank for `st`, made on first need (and again
/// after the parameters change): `share` of every rate, the first and
/// those of `also`, with the tank's hardcap.
fn fallback<'a>(st: &'a mut State, also: &[Params], share: f64) -> Option<&'a Tank> {
    if st.fallback.is_none() {
        let mut builder = Tank::builder(fallback_rate(st.params.rate(), share)?);
        for params in also {
            builder = builder.also(fallback_rate(params.rate(), share)?);
        }
        let tank = builder.hardcap(st.params.hardcap).build().ok()?;
        st.fallback = Some(tank);
    }
    st.fallback.as_ref()
}

/// A keyed tank's key's part of `FailurePolicy::Local`'s local keyed
/// tank (`keyed.rs`).
pub(crate) trait LocalShare: Send + Sync {
    /// Takes `n` from the key's local tank.
    fn has_fuel_n(&self, n: u64) -> bool;
    /// The key's local wait for `n`; `None` if no local tank is made yet.
    fn wait_time(&self, n: u64) -> Option<Option<Duration>>;
}

/// `share` of `rate`: the rate scaled, not the count floored (a share of
/// one per period is not one per period). It holds `⌊max_n × share⌋` at
/// once (at least 1), over the period that makes the rate `max_n × share`
/// per `per`, rounded up to whole nanoseconds (never faster).
pub(crate) fn fallback_rate(rate: Rate, share: f64) -> Option<Rate> {
    let scaled = rate.max_n() as f64 * share;
    let count = scaled.floor().max(1.0);
    // Saturates at u64::MAX ns: a share too small to be granted in centuries.
    let per_ns = (rate.per().as_nanos() as f64 * count / scaled).ceil() as u64;
    Rate::new(count as u64, Duration::from_nanos(per_ns)).ok()
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.lock();
        f.debug_struct("Entry")
            .field("name", &self.options.name)
            .field("params", &st.params)
            .field("reserved", &st.reserve.left())
            .field("waiting", &st.line.len())
            .field("batch", &st.ask.batch)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fallback_scales_the_rate() {
        let rate = |s: &str| s.parse::<Rate>().unwrap();
        let of = |r: &str, share| fallback_rate(rate(r), share).unwrap();
        // A quarter of one per 100 ms: one per 400 ms, not one per 100 ms.
        assert_eq!(
            of("1/100ms", 0.25),
            Rate::new(1, Duration::from_millis(400)).unwrap()
        );
        assert_eq!(of("100/s", 0.25), rate("25/s"));
        // 2.5 a second: 2 at once, every 800 ms.
        assert_eq!(
            of("10/s", 0.25),
            Rate::new(2, Duration::from_millis(800)).unwrap()
        );
        assert_eq!(of("7/s", 1.0), rate("7/s"));
        // A third of 1/s: rounded towards slower.
        assert_eq!(
            of("1/s", 1.0 / 3.0),
            Rate::new(1, Duration::from_nanos(3_000_000_000)).unwrap()
        );
        // Tiny shares of long periods saturate instead of overflowing.
        let long = Rate::new(1, Duration::from_nanos(crate::params::MAX_PER_NS)).unwrap();
        assert!(fallback_rate(long, 1e-300).is_some());
    }
}
