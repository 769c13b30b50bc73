//! The stores of a tank's fuel, behind one interface: [`Bucket`], under the
//! core's lock, and its [`Front`], read without it. The line of waiters and
//! its timer (`line.rs`) drive every store through them alike.
//!
//! # The stores
//!
//! - `Limit`, `One`, `Unbounded`: [`Gcra`] keeps the `tat` of the algorithm
//!   stated in `gcra.rs`, in `i128` ticks since an epoch of its own, and
//!   computes with it there. While nobody waits, the tank keeps this `tat`
//!   packed in one atomic word instead, so that
//!   [`has_fuel`](crate::Tank::has_fuel) is one compare-and-swap (see
//!   `tank/word.rs`), with the same functions of `gcra.rs` in `u64`: the
//!   core takes it back from the word before it changes anything
//!   ([`Bucket::own`]), and hands it back when done ([`Bucket::publish`]).
//! - `Window`: a sliding log. [`Window`] remembers when its last `max_n`
//!   grants leave the window (as runs of equal times) and grants `n` at
//!   `now` only if the log holds at most `max_n − n` grants that have not
//!   left. So no half-open window of length `per` ever holds more than
//!   `max_n` grants, and bursts of up to `max_n` are allowed. Memory is
//!   `O(max_n)`.
//! - In shared memory (`host.rs`): one atomic word in a file, for every
//!   process of the host, taken from without any lock.
//!
//! # The interface
//!
//! A bucket holds every rate of its tank (`TankBuilder::also`): it grants
//! from all of them or from none, and answers for the tightest. It takes
//! and gives back ([`Bucket::take`], [`Bucket::refund`]), says when fuel is
//! due for the line's head or for a newcomer after the line
//! ([`Bucket::due_head`], [`Bucket::due_after`]), and pauses, resumes and
//! changes its rate. A store may order the line itself
//! ([`Bucket::takes_turns`]: the shared one, where each waiter reserves its
//! turn in the shared word with [`Bucket::reserve`]); the line then lets
//! its head go when its turn has come, and asks the store nothing else
//! for it. A store may be changed by others: its rate ([`Front::rate`])
//! and pause ([`Front::is_paused`]) are then its own, read without the
//! lock, and the line follows them.

use std::collections::VecDeque;

use super::gcra::{self, Tick};
use super::host::{Host, Took, Turn};
use super::permit::Stamp;
use super::refunds::Refunds;
use super::word::{Fast, MAX_EXTRAS, Published, SPAN_LIMIT, TICKS_LIMIT, Word};
use crate::clock::ClockSource;
use crate::{Error, Hardcap, Rate};

/// The state of one tank's fuel, under any hardcap, for each of its rates.
#[derive(Debug)]
pub(crate) enum Bucket {
    /// The first rate, then those of `also`.
    Gcra(Gcra, Vec<Gcra>),
    /// The first rate, those of `also`, and the replay of the line (for
    /// the first) with the line's version it was made for (see [`Replay`]).
    Window(Window, Vec<Window>, Option<(u64, Replay)>),
    /// In shared memory, for every process of the host (`host.rs`): one
    /// rate; without the feature, never made (`no_host.rs`).
    #[cfg_attr(not(feature = "shared-memory"), allow(dead_code))]
    Host(Host),
}

/// How long a waiter of a shared tank sleeps at most before it looks at the
/// shared bucket again: other processes' refunds, resumes and rate changes
/// wake nobody here.
const HOST_POLL: u64 = 10_000_000;

impl Bucket {
    /// A bucket of `rate` and the rates `also` under `hardcap`, each
    /// holding `initial` fuel at `now` (`None`: full under `Window`, else
    /// one); `burst`: the first rate's capacity under `Limit`, if not
    /// `max_n`.
    pub(crate) fn new(
        rate: Rate,
        also: &[Rate],
        hardcap: Hardcap,
        burst: Option<u64>,
        initial: Option<u64>,
        now: u64,
    ) -> Bucket {
        if hardcap == Hardcap::Window {
            let window = |rate: Rate| Window::new(rate, initial.unwrap_or(rate.max_n()), now);
            let also = also.iter().map(|&r| window(r)).collect();
            return Bucket::Window(window(rate), also, None);
        }
        let gcra = |rate: Rate, burst| {
            let cap = hardcap.capacity(rate.max_n(), burst);
            Gcra::new(rate, cap, initial.unwrap_or(1), now)
        };
        let also = also.iter().map(|&r| gcra(r, None)).collect();
        Bucket::Gcra(gcra(rate, burst), also)
    }

    /// Takes `n` at `now` from every rate or from none; returns the grant's
    /// stamp, which names it for a refund if `stamped` (else the take is
    /// final).
    pub(crate) fn take(
        &mut self,
        now: u64,
        n: u64,
        stamped: bool,
        refunds: &mut Refunds,
    ) -> Option<Stamp> {
        match self {
            Bucket::Gcra(gcra, also) => {
                let mut headroom = gcra.try_take(now, n)?;
                // The least headroom of any rate, in the first's ticks: a
                // refund gives back to every rate what the tightest keeps.
                // Only a headroom below the guard is recorded: with none
                // (no grant may come back), no rate's needs converting.
                let guard = refunds.guard();
                for i in 0..also.len() {
                    match also[i].try_take(now, n) {
                        Some(room) if guard > 0 => {
                            headroom = headroom.min(gcra.ticks_of(room, &also[i]));
                        }
                        Some(_) => {}
                        None => {
                            // Every rate or none: undo the takes before
                            // this one (a settled `tat` less the span holds
                            // what it held before the take).
                            for g in each(gcra, &mut also[..i]) {
                                g.give_back(g.span(u128::from(n)));
                            }
                            return None;
                        }
                    }
                }
                refunds.on_take(headroom);
                Some(if stamped && gcra.cap().is_some() {
                    refunds.stamp(gcra.span(u128::from(n)))
                } else {
                    let (cut, rate) = refunds.stamp_parts();
                    Stamp::Gcra { cut, rate }
                })
            }
            Bucket::Window(window, also, _) => {
                // Every rate or none: each bucket takes `n` exactly when it
                // holds them, so after this check no take below fails.
                if also.iter_mut().any(|w| w.level(now) < n) {
                    return None;
                }
                let leave = window.try_take(now, n)?;
                // Every rate's grant carries this one's stamp, so that a
                // refund finds it from the first rate's stamp alone.
                let at = window.stamped(leave);
                for w in also {
                    w.push(at, n);
                }
                Some(refunds.stamp_window(leave))
            }
            Bucket::Host(host) => match host.take(now, n) {
                Took::Taken(word) => Some(Stamp::Host { word }),
                Took::Empty => None,
            },
        }
    }

    /// Gives back `n` fuel granted with `stamp`, as if it had never been
    /// taken, as far as that fuel would not have run into the cap since
    /// (see `refunds.rs`; in shared memory, only if nothing took since).
    pub(crate) fn refund(&mut self, n: u64, stamp: Stamp, refunds: &mut Refunds) {
        match self {
            Bucket::Window(window, also, _) => {
                if let Some(leave) = refunds.window_leave(stamp) {
                    window.refund(leave, n);
                    let at = window.stamped(leave);
                    for w in also {
                        w.refund(w.leave_time(at), n);
                    }
                }
            }
            Bucket::Gcra(gcra, also) => {
                let ticks = refunds.give_back(gcra.span(u128::from(n)), stamp);
                gcra.give_back(ticks);
                // Headroom was counted in the first rate's ticks (see
                // `take`): as much fuel goes back to every rate.
                for g in also {
                    g.give_back(g.ticks_of(ticks, gcra));
                }
            }
            Bucket::Host(host) => {
                if let Stamp::Host { word } = stamp {
                    host.give_back(n, word);
                }
            }
        }
    }

    /// When the line's head, asking for `n`, could be granted, at `now` or
    /// later; `turn`: when its turn comes, if the store scheduled one. A
    /// shared store never answers now (the fuel another process took
    /// meanwhile: look again a moment on), nor later than [`HOST_POLL`] on
    /// (another process may give back, resume or change the rate).
    pub(crate) fn due_head(&mut self, now: u64, n: u64, turn: Option<u64>) -> u64 {
        let n128 = u128::from(n);
        match self {
            Bucket::Gcra(g, also) => fold(g, also, now, |at, g| at.max(g.due(now, n128))),
            Bucket::Window(w, also, _) => fold(w, also, now, |at, w| at.max(w.due(now, [n]))),
            Bucket::Host(host) => turn
                .unwrap_or_else(|| host.due(now, n128).max(now.saturating_add(1)))
                .min(now.saturating_add(HOST_POLL)),
        }
    }

    /// When a newcomer asking for `n` could be granted after the line, whose
    /// requests are `line`, front to back, and hold `ahead` fuel not
    /// scheduled in the store; `version` changes whenever a waiter leaves
    /// the line. A lower bound with several rates: a waiter granted late
    /// under one rate may find another's bucket full.
    pub(crate) fn due_after(
        &mut self,
        now: u64,
        n: u64,
        ahead: u128,
        line: impl Iterator<Item = u64> + Clone,
        version: u64,
    ) -> u64 {
        let fuel = ahead + u128::from(n);
        match self {
            Bucket::Gcra(g, also) => fold(g, also, now, |at, g| at.max(g.due(now, fuel))),
            Bucket::Window(window, also, tail) => {
                if !matches!(tail, Some((v, r)) if *v == version && window.replays(r, now)) {
                    *tail = None;
                }
                let (_, replay) = tail.get_or_insert_with(|| {
                    let mut replay = window.replay(now);
                    for m in line.clone() {
                        window.replay_push(&mut replay, now, m);
                    }
                    (version, replay)
                });
                let first = window.replay_peek(replay, now, n);
                also.iter_mut()
                    .map(|w| w.due(now, line.clone().chain([n])))
                    .fold(first.max(now), u64::max)
            }
            Bucket::Host(host) => host.due(now, fuel).max(now),
        }
    }

    /// A waiter asking for `n` joined the line (`version` as before): the
    /// replay of the line, if current, takes it in.
    pub(crate) fn joined(&mut self, now: u64, n: u64, version: u64) {
        if let Bucket::Window(w, _, tail) = self {
            match tail {
                Some((v, r)) if *v == version && w.replays(r, now) => _ = w.replay_push(r, now, n),
                _ => *tail = None,
            }
        }
    }

    /// The fuel under every rate: the least.
    pub(crate) fn level(&mut self, now: u64) -> u64 {
        match self {
            Bucket::Gcra(g, also) => fold(g, also, u64::MAX, |l, g| l.min(g.level(now))),
            Bucket::Window(w, also, _) => fold(w, also, u64::MAX, |l, w| l.min(w.level(now))),
            Bucket::Host(host) => host.level(now),
        }
    }

    /// The fuel under rate `i`: 0 the first, then those of `also`.
    pub(crate) fn level_of(&mut self, i: usize, now: u64) -> u64 {
        match self {
            Bucket::Gcra(g, also) => i.checked_sub(1).map_or(&*g, |i| &also[i]).level(now),
            Bucket::Window(w, also, _) => i.checked_sub(1).map_or(w, |i| &mut also[i]).level(now),
            Bucket::Host(host) => host.level(now),
        }
    }

    /// Changes the first rate to `rate` (capacity `cap`) at `now`, keeping
    /// the fuel (see each store's `set_rate`); the time it changed at:
    /// `now`, or in shared memory a later reading if `now` was older than
    /// another process's change meanwhile.
    pub(crate) fn set_rate(
        &mut self,
        now: u64,
        rate: Rate,
        cap: Option<u64>,
    ) -> Result<u64, Error> {
        match self {
            Bucket::Gcra(gcra, _) => gcra.set_rate(now, rate, cap),
            Bucket::Window(window, _, _) => window.set_rate(now, rate),
            Bucket::Host(host) => return host.set_rate(now, rate),
        }
        Ok(now)
    }

    /// Stops the refill at `now`: in shared memory for every process; in
    /// process by freezing the line's time at `paused_at` (`Core::now_eff`).
    pub(crate) fn pause(&self, now: u64, paused_at: &mut Option<u64>) {
        match self {
            Bucket::Host(host) => host.pause(now),
            _ => _ = paused_at.get_or_insert(now),
        }
    }

    /// Restarts the refill at `now`: in process, the time since
    /// `paused_at` passes without refill.
    pub(crate) fn resume(&mut self, now: u64, paused_at: &mut Option<u64>) {
        let by = paused_at.take().map(|at| now.saturating_sub(at));
        match (self, by) {
            (Bucket::Host(host), _) => host.resume(now),
            (Bucket::Gcra(gcra, also), Some(by)) => each(gcra, also).for_each(|g| g.skip(by)),
            (Bucket::Window(w, also, _), Some(by)) => each(w, also).for_each(|w| w.skip(by)),
            _ => {}
        }
    }

    /// Whether the store orders the line itself: each waiter reserves its
    /// turn in the store ([`Bucket::reserve`]) when it joins, or when the
    /// store next takes turns, and the line lets it go when its turn has
    /// come. Only the shared store (see `HostBucket::takes_turns`), where
    /// the turns interleave every process's waiters in the order they
    /// asked, and no process's timer takes another's fuel.
    pub(crate) fn takes_turns(&self) -> bool {
        matches!(self, Bucket::Host(host) if host.takes_turns())
    }

    /// Takes `n` at `now` or else schedules the turn of a waiter asking
    /// for it, not later than `until` (see [`Bucket::takes_turns`]);
    /// `Turn::Refused` in a store that takes no turns.
    pub(crate) fn reserve(&self, now: u64, n: u64, until: Option<u64>) -> Turn {
        match self {
            Bucket::Host(host) => host.reserve(now, n, until),
            _ => Turn::Refused,
        }
    }

    /// Takes the state back from the lock-free word, which held it since
    /// [`Bucket::publish`]. Under the core lock.
    pub(crate) fn own(&mut self, word: &Word) {
        let tat = word.seize();
        debug_assert!(tat.is_some(), "only the core lock holder sets CORE");
        if let (Bucket::Gcra(gcra, also), Some(tat)) = (self, tat) {
            gcra.set_tat(i128::from(tat));
            // The word held every rate (see `publish`).
            for (i, g) in also.iter_mut().enumerate() {
                g.set_tat(i128::from(word.extra_tat(i)));
            }
        }
    }

    /// Hands the state to the lock-free word at `now`, if it can hold it:
    /// `Gcra`, every rate within the word's range, at most [`MAX_EXTRAS`]
    /// beside the first; `published` and `renew` as [`Word::publish`]
    /// takes them. Under the core lock, nobody waiting, not paused.
    pub(crate) fn publish(
        &mut self,
        word: &Word,
        now: u64,
        published: &mut Option<Published>,
        renew: bool,
    ) -> bool {
        // (A shared bucket stays out of the word: its own word is in the
        // shared file.)
        let Bucket::Gcra(gcra, also) = self else {
            return false;
        };
        // Several rates: the word holds them all, or none.
        if !also.is_empty() && also.len() != word.extras() {
            return false;
        }
        let Some((mut params, tat)) = in_word(gcra, now) else {
            return false;
        };
        let mut extras = [(Published::default(), 0); MAX_EXTRAS];
        for (g, extra) in also.iter_mut().zip(&mut extras) {
            let Some(fits) = in_word(g, now) else {
                return false;
            };
            params.n_max = params.n_max.min(fits.0.n_max);
            *extra = fits;
        }
        word.publish(published, params, tat, renew, &extras[..also.len()]);
        true
    }

    /// A `Gcra` bucket's `(epoch, tat)`, with the `tat`s of the rates of
    /// `also` from the same epoch; `None` for another store.
    pub(crate) fn gcra_state(&self) -> Option<(u64, i128, Vec<i128>)> {
        let Bucket::Gcra(gcra, also) = self else {
            return None;
        };
        let epoch = gcra.epoch();
        let also = also.iter().map(|g| {
            let shift =
                (i128::from(epoch) - i128::from(g.epoch())).saturating_mul(i128::from(g.scale().0));
            g.tat().saturating_sub(shift)
        });
        Some((epoch, gcra.tat(), also.collect()))
    }

    /// A `Window` bucket's log (of its first rate); `None` for another
    /// store.
    pub(crate) fn window(&self) -> Option<&Window> {
        match self {
            Bucket::Window(window, _, _) => Some(window),
            _ => None,
        }
    }
}

/// A bucket's first rate, then those of `also`.
fn each<'a, T>(first: &'a mut T, also: &'a mut [T]) -> impl Iterator<Item = &'a mut T> {
    std::iter::once(first).chain(also)
}

/// `f` folded over a bucket's rates from `init`, the first first.
#[inline]
fn fold<T>(first: &mut T, also: &mut [T], init: u64, mut f: impl FnMut(u64, &mut T) -> u64) -> u64 {
    let first = f(init, first);
    also.iter_mut().fold(first, f)
}

/// The store as read without the core lock, beside the tank's lock-free
/// word (`word.rs`, which holds a `Gcra` bucket's state while nobody waits,
/// and else says whether anyone does): a shared store's handle, taken from
/// and read directly (its word is in the shared file).
#[derive(Debug)]
pub(crate) struct Front(Option<Host>);

impl Front {
    pub(crate) fn new(bucket: &Bucket) -> Front {
        let Bucket::Host(host) = bucket else {
            return Front(None);
        };
        Front(Some(host).cloned())
    }

    /// Takes `n ≥ 1` fuel without the lock, if the state is here; never
    /// overtakes the tank's line (a shared store's take: one
    /// compare-and-swap there, unless this process's line waits).
    #[inline(always)]
    pub(crate) fn take(&self, word: &Word, clock: &ClockSource, n: u64, stamped: bool) -> Fast {
        let Some(shared) = &self.0 else {
            return word.take(clock.now_ns(), n, stamped);
        };
        if word.queued() {
            return Fast::Queued;
        }
        match shared.take(clock.now_ns(), n) {
            Took::Taken(after) => Fast::Taken(Stamp::Host { word: after }),
            Took::Empty => Fast::Empty,
        }
    }

    /// The fuel level, if known without the lock.
    #[inline(always)]
    pub(crate) fn level(&self, word: &Word, clock: &ClockSource) -> Option<u64> {
        match &self.0 {
            Some(shared) => Some(shared.level(clock.now_ns())),
            None => word.level(clock.now_ns()),
        }
    }

    /// The fuel a newcomer could take now (0 while anyone waits), if known
    /// without the lock.
    #[inline(always)]
    pub(crate) fn available(&self, word: &Word, clock: &ClockSource) -> Option<u64> {
        match &self.0 {
            Some(_) if word.queued() => Some(0),
            _ => self.level(word, clock),
        }
    }

    /// The rate, if the store keeps its own: in shared memory, where
    /// another process may change it.
    #[inline]
    pub(crate) fn rate(&self) -> Option<Rate> {
        self.0.as_ref()?.state().rate()
    }

    /// Whether the refill is paused, if the store keeps its own pause (in
    /// shared memory: by any process); a pause in process is the line's.
    #[inline]
    pub(crate) fn is_paused(&self) -> Option<bool> {
        Some(self.0.as_ref()?.state().is_paused())
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

/// Virtual scheduling for `Limit`, `One` and `Unbounded`.
#[derive(Debug)]
pub(crate) struct Gcra {
    /// When the next fuel is due, in ticks since `epoch`.
    tat: i128,
    /// Internal nanoseconds at tick 0.
    epoch: u64,
    /// Ticks per nanosecond.
    s: u64,
    /// The interval, in ticks.
    t: u64,
    /// Capacity; `None` for `Unbounded`.
    cap: Option<u64>,
    /// `(C − 1)·T`, or no cap: kept, as every take needs it.
    tol: i128,
}

impl Gcra {
    /// A bucket holding `initial` fuel at `now`, with no partial fuel.
    pub(crate) fn new(rate: Rate, cap: Option<u64>, initial: u64, now: u64) -> Gcra {
        let (s, t) = rate.ticks();
        let mut gcra = Gcra::from_parts((s, t), cap, now, 0);
        gcra.tat = gcra.span(1).saturating_sub(gcra.span(u128::from(initial)));
        gcra
    }

    /// A bucket whose next fuel is due at `tat` ticks after `epoch`, with
    /// `(s, t)` from `Rate::ticks`.
    pub(crate) fn from_parts((s, t): (u64, u64), cap: Option<u64>, epoch: u64, tat: i128) -> Gcra {
        Gcra {
            tat,
            epoch,
            s,
            t,
            cap,
            tol: tol(t, cap),
        }
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.epoch
    }

    pub(crate) fn scale(&self) -> (u64, u64) {
        (self.s, self.t)
    }

    pub(crate) fn cap(&self) -> Option<u64> {
        self.cap
    }

    pub(crate) fn tat(&self) -> i128 {
        self.tat
    }

    pub(crate) fn set_tat(&mut self, tat: i128) {
        self.tat = tat;
    }

    /// `n` intervals, in ticks.
    pub(crate) fn span(&self, n: u128) -> i128 {
        i128::times(i128::from(self.t), n)
    }

    fn tol(&self) -> i128 {
        self.tol
    }

    /// Moves the epoch to `epoch`, keeping every time the same.
    pub(crate) fn rebase(&mut self, epoch: u64) {
        let shift = (i128::from(epoch) - i128::from(self.epoch)).saturating_mul(i128::from(self.s));
        self.tat = self.tat.saturating_sub(shift);
        self.epoch = epoch;
    }

    /// `now`, in ticks since the epoch.
    pub(crate) fn ticks(&self, now: u64) -> i128 {
        (i128::from(now) - i128::from(self.epoch)).saturating_mul(i128::from(self.s))
    }

    /// Forgets fuel beyond the cap at `now`; changes no level.
    pub(crate) fn settle(&mut self, now: u64) {
        self.tat = gcra::settle(self.tat, self.ticks(now), self.tol());
    }

    /// Takes `n` fuel at `now`, if they are there; returns the headroom the
    /// take found (`i128::MAX` without a cap).
    pub(crate) fn try_take(&mut self, now: u64, n: u64) -> Option<i128> {
        let (tat, headroom) = gcra::take(self.tat, self.ticks(now), self.tol(), self.span(1), n)?;
        self.tat = tat;
        Some(if self.cap.is_some() {
            headroom
        } else {
            i128::MAX
        })
    }

    /// When `n` fuel will have accrued, if nobody takes any before;
    /// `u64::MAX` if never within the clock.
    pub(crate) fn due(&self, now: u64, n: u128) -> u64 {
        // No fuel is there at once (`gcra::due` of 0 is the next fuel's).
        if n == 0 {
            return now;
        }
        let now_t = self.ticks(now);
        let (due_t, _) = gcra::due(self.tat, now_t, self.tol(), self.span(1), n);
        if due_t <= now_t {
            return now;
        }
        let ns = gcra::ns_ceil(due_t, self.s);
        u64::try_from(i128::from(self.epoch).saturating_add(ns)).unwrap_or(u64::MAX)
    }

    pub(crate) fn level(&self, now: u64) -> u64 {
        gcra::level(self.tat, self.ticks(now), self.tol(), self.span(1))
    }

    /// `ticks` of `other`'s interval as the same fuel in this bucket's
    /// ticks, rounded down (never more fuel).
    pub(crate) fn ticks_of(&self, ticks: i128, other: &Gcra) -> i128 {
        -gcra::convert(-ticks, other.t, self.t)
    }

    /// Gives back `ticks` of fuel taken earlier.
    pub(crate) fn give_back(&mut self, ticks: i128) {
        self.tat = self.tat.saturating_sub(ticks);
    }

    /// Lets `by_ns` pass without refill.
    pub(crate) fn skip(&mut self, by_ns: u64) {
        self.tat = self
            .tat
            .saturating_add(i128::from(by_ns).saturating_mul(i128::from(self.s)));
    }

    /// Changes the rate at `now`, keeping the fuel level (with its fraction
    /// of the next fuel) and capping it to the new capacity: no burst.
    pub(crate) fn set_rate(&mut self, now: u64, rate: Rate, cap: Option<u64>) {
        let now_t = self.ticks(now);
        let offset = gcra::settle(self.tat, now_t, self.tol()).saturating_sub(now_t);
        let (s, t) = rate.ticks();
        let offset = gcra::convert(offset, self.t, t);
        self.s = s;
        self.t = t;
        self.cap = cap;
        self.tol = tol(t, cap);
        self.tat = self.ticks(now).saturating_add(offset);
        self.settle(now);
    }
}

/// `(C − 1)·T` for an interval of `t` ticks and a capacity `cap`, or no
/// cap.
fn tol(t: u64, cap: Option<u64>) -> i128 {
    cap.map_or(i128::NO_CAP, |cap| {
        i128::times(i128::from(t), u128::from(cap.saturating_sub(1)))
    })
}

/// The grant log of `Window`.
///
/// Times in the log are *window time*: the clock minus the time spent
/// paused, so a pause shifts nothing and a grant's stamp stays valid.
#[derive(Debug, Clone)]
pub(crate) struct Window {
    /// Runs of grants: (when they leave the window, how many), earliest
    /// first.
    log: VecDeque<(u64, u64)>,
    /// Grants in the log.
    len: u64,
    max_n: u64,
    per_ns: u64,
    /// Time spent paused, subtracted from the clock.
    paused_ns: u64,
    /// Window time at creation (or the latest rate change): stamps fall on
    /// a grid from here.
    origin: u64,
    /// Grants are stamped at the next multiple of this after `origin`.
    grid: u64,
    /// Changes with every change to the log (a [`Replay`] is valid for one).
    version: u64,
}

/// A replay of a line of batches on a [`Window`]: when each could be
/// granted, in order, each whole (a batch needs room for all its grants at
/// once), if nobody else takes. Grants leave in order: the log's, then those
/// granted in the replay, which leave later than all of the log. Kept at the
/// end of a tank's line, it makes a newcomer's wait `O(1)` amortized however
/// long the line, as long as the log and the line only grow at their ends.
#[derive(Debug)]
pub(crate) struct Replay {
    /// The log's runs from this index have not left in the replay.
    next: usize,
    /// Runs granted in the replay, earliest to leave first.
    granted: VecDeque<(u64, u64)>,
    /// Grants held at `at`.
    held: u128,
    /// When the last batch was granted (window time).
    at: u64,
    /// The log's version it replays.
    version: u64,
}

impl Window {
    /// A window that has already granted `max_n − initial` at `now`.
    pub(crate) fn new(rate: Rate, initial: u64, now: u64) -> Window {
        let mut window = Window {
            log: VecDeque::new(),
            len: 0,
            max_n: rate.max_n(),
            per_ns: rate.per_ns(),
            paused_ns: 0,
            origin: now,
            grid: grid(rate.per_ns()),
            version: 0,
        };
        window.push(now, rate.max_n() - initial.min(rate.max_n()));
        window
    }

    /// When a grant at window time `now` leaves the window: its stamp, the
    /// next multiple of the grid, plus `per`. A later stamp only ever
    /// tightens the promise, and grants that leave together are served by
    /// one timer wake-up (at a million a second, thousands of wake-ups
    /// rather than a million). The grid divides `per`, so a grant made the
    /// moment another leaves is stamped exactly then: a saturated window
    /// keeps its full rate, with no drift.
    pub(crate) fn leave_time(&self, now: u64) -> u64 {
        let since = now.saturating_sub(self.origin);
        let stamp = self
            .origin
            .saturating_add(since.div_ceil(self.grid).saturating_mul(self.grid));
        stamp.saturating_add(self.per_ns)
    }

    /// Records `n` grants at window time `now`; returns when they leave.
    pub(crate) fn push(&mut self, now: u64, n: u64) -> u64 {
        let leave = self.leave_time(now);
        if n == 0 {
            return leave;
        }
        self.version += 1;
        self.len = self.len.saturating_add(n);
        match self.log.back_mut() {
            // Time may step back between cores; keep the log sorted.
            Some((at, count)) if *at >= leave => {
                *count = count.saturating_add(n);
                *at
            }
            _ => {
                // A keyed tank holds many small logs: grow from one run.
                if self.log.capacity() == 0 {
                    self.log.reserve_exact(1);
                }
                self.log.push_back((leave, n));
                leave
            }
        }
    }

    /// The window time a grant leaving at `leave` was stamped with.
    pub(crate) fn stamped(&self, leave: u64) -> u64 {
        leave.saturating_sub(self.per_ns)
    }

    /// Drops grants that have left every window ending at `now` or later.
    fn evict(&mut self, now: u64) {
        while let Some(&(leave, count)) = self.log.front() {
            if leave > now {
                break;
            }
            self.len -= count;
            self.log.pop_front();
            self.version += 1;
        }
    }

    fn window_time(&self, now: u64) -> u64 {
        now.saturating_sub(self.paused_ns)
    }

    /// Room for this many more grants now.
    fn room(&self) -> u64 {
        self.max_n.saturating_sub(self.len)
    }

    /// Room at `now`, without forgetting anything.
    pub(crate) fn room_at(&self, now: u64) -> u64 {
        let now = self.window_time(now);
        let held: u64 = self
            .log
            .iter()
            .filter(|&&(leave, _)| leave > now)
            .map(|&(_, count)| count)
            .fold(0, u64::saturating_add);
        self.max_n.saturating_sub(held)
    }

    /// The grants in the log at `now`, and when the last of them leaves
    /// (`now` if none).
    pub(crate) fn held(&mut self, now: u64) -> (u64, u64) {
        let now = self.window_time(now);
        self.evict(now);
        let last = self.log.back().map_or(now, |&(leave, _)| leave);
        (self.len, last.saturating_add(self.paused_ns))
    }

    /// Counts `n` grants as made already, leaving the window at `leave`
    /// (window time): a key recreated from a debt (`keyed/mod.rs`).
    pub(crate) fn hold_until(&mut self, leave: u64, n: u64) {
        let leave = leave.saturating_sub(self.paused_ns);
        let n = n.min(self.max_n);
        self.version += 1;
        // In leave order: runs leaving later than `leave` stay after it.
        let at = self.log.partition_point(|&(l, _)| l <= leave);
        match at.checked_sub(1).map(|i| &mut self.log[i]) {
            Some((l, count)) if *l == leave => *count = count.saturating_add(n),
            _ => self.log.insert(at, (leave, n)),
        }
        self.len = self.len.saturating_add(n);
    }

    /// Takes `n` at `now`; returns when the grant leaves the window, which
    /// names it for a refund.
    pub(crate) fn try_take(&mut self, now: u64, n: u64) -> Option<u64> {
        let now = self.window_time(now);
        self.evict(now);
        (n <= self.room()).then(|| self.push(now, n))
    }

    /// When the last of `batches` could be granted, each in order and each
    /// whole, if nobody else takes; `u64::MAX` if never within the clock.
    pub(crate) fn due(&mut self, now: u64, batches: impl IntoIterator<Item = u64>) -> u64 {
        let mut replay = self.replay(now);
        let mut at = now;
        for n in batches {
            at = self.replay_push(&mut replay, now, n);
        }
        at
    }

    /// A replay of nothing yet, at `now`.
    pub(crate) fn replay(&mut self, now: u64) -> Replay {
        self.evict(self.window_time(now));
        Replay {
            next: 0,
            granted: VecDeque::new(),
            held: u128::from(self.len),
            at: self.window_time(now),
            version: self.version,
        }
    }

    /// Whether `replay` replays this log as it is now, at `now`.
    pub(crate) fn replays(&mut self, replay: &Replay, now: u64) -> bool {
        self.evict(self.window_time(now));
        replay.version == self.version
    }

    /// When a batch of `n` after `replay` could be granted, and at which
    /// grant of the replay's it waits for: `(at, runs of the log, runs of
    /// the replay)` to leave; `None` if never.
    fn replay_wait(&self, replay: &Replay, now: u64, n: u64) -> Option<(u64, usize, usize)> {
        if n > self.max_n {
            return None;
        }
        let mut at = replay.at.max(self.window_time(now));
        let mut held = replay.held;
        let (mut log_runs, mut granted_runs) = (0, 0);
        let mut leaving = self.log.range(replay.next.min(self.log.len())..);
        while held + u128::from(n) > u128::from(self.max_n) {
            let (leave, count) = match leaving.next() {
                Some(&run) => {
                    log_runs += 1;
                    run
                }
                None => {
                    let &run = replay.granted.get(granted_runs)?;
                    granted_runs += 1;
                    run
                }
            };
            at = at.max(leave);
            held -= u128::from(count);
        }
        (at != u64::MAX).then_some((at, log_runs, granted_runs))
    }

    /// When a batch of `n` after `replay` could be granted, in clock time;
    /// `u64::MAX` if never.
    pub(crate) fn replay_peek(&self, replay: &Replay, now: u64, n: u64) -> u64 {
        self.replay_wait(replay, now, n)
            .map_or(u64::MAX, |(at, _, _)| at.saturating_add(self.paused_ns))
    }

    /// Adds a batch of `n` to `replay`; returns when it is granted, in
    /// clock time (`u64::MAX` if never, and then the replay stays as it
    /// was).
    pub(crate) fn replay_push(&self, replay: &mut Replay, now: u64, n: u64) -> u64 {
        let Some((at, log_runs, granted_runs)) = self.replay_wait(replay, now, n) else {
            return u64::MAX;
        };
        for _ in 0..log_runs {
            replay.held -= u128::from(self.log[replay.next].1);
            replay.next += 1;
        }
        for _ in 0..granted_runs {
            let (_, count) = replay.granted.pop_front().expect("counted in replay_wait");
            replay.held -= u128::from(count);
        }
        let leave = self.leave_time(at);
        match replay.granted.back_mut() {
            Some((last, count)) if *last == leave => *count += n,
            _ => replay.granted.push_back((leave, n)),
        }
        replay.held += u128::from(n);
        replay.at = at;
        at.saturating_add(self.paused_ns)
    }

    pub(crate) fn level(&mut self, now: u64) -> u64 {
        let now = self.window_time(now);
        self.evict(now);
        self.room()
    }

    /// Gives back `n` fuel granted with the leave time `leave`.
    pub(crate) fn refund(&mut self, leave: u64, n: u64) {
        let Some(index) = self.log.iter().rposition(|&(at, _)| at == leave) else {
            return; // Already out of every window.
        };
        let run = &mut self.log[index].1;
        let n = n.min(*run);
        *run -= n;
        self.len -= n;
        self.version += 1;
        if *run == 0 {
            self.log.remove(index);
        }
    }

    /// Lets `by_ns` pass without anything leaving the window.
    pub(crate) fn skip(&mut self, by_ns: u64) {
        self.paused_ns = self.paused_ns.saturating_add(by_ns);
        self.version += 1;
    }

    /// Changes the rate at `now`, with no burst: the fuel available now is
    /// kept (capped to the new `max_n`) and refills at the new rate. The
    /// grants of the last `per` stay where they are, each leaving the
    /// window `per'` after its stamp, so every window of `per'` that ends
    /// after the change holds at most `max_n'` grants, those counted (older
    /// ones had left the window, and are forgotten). The log may hold more
    /// than `max_n'` until they leave: a later change back up counts them
    /// all. Where the new rate would leave more room than there is now, the
    /// difference is held as grants that leave one per new interval, on a
    /// grid of at most 4096 steps of `per'` (rounded later: never early).
    /// The same rate changes nothing.
    pub(crate) fn set_rate(&mut self, now: u64, rate: Rate) {
        if (rate.max_n(), rate.per_ns()) == (self.max_n, self.per_ns) {
            return;
        }
        let now = self.window_time(now);
        self.evict(now);
        let room = self.room();
        let (old, per) = (self.per_ns, rate.per_ns());
        for (leave, _) in &mut self.log {
            *leave = leave.saturating_sub(old).saturating_add(per);
        }
        self.max_n = rate.max_n();
        self.per_ns = per;
        self.grid = grid(per);
        self.origin = now;
        self.version += 1;
        self.evict(now);
        let pending = self.room().saturating_sub(room);
        if pending > 0 {
            let ramp = self.ramp(now, pending);
            self.len += pending;
            self.log.extend(ramp);
            // In leave order: the ramp's runs fall among the log's.
            self.log.make_contiguous().sort_by_key(|&(leave, _)| leave);
        }
    }

    /// `pending` grants as a ramp from `now`: grant k (1-based) leaves at
    /// `now + k·T`, gathered in steps of `per`. The step is the least
    /// divisor of `per` that cuts it in at most 4096, so round rates ramp
    /// exactly.
    fn ramp(&self, now: u64, pending: u64) -> Vec<(u64, u64)> {
        let (max_n, per) = (u128::from(self.max_n), u128::from(self.per_ns));
        let cuts = (1..=4096u64)
            .rev()
            .find(|&d| self.per_ns.is_multiple_of(d))
            .unwrap_or(1);
        let step = per / u128::from(cuts);
        let upto = |x: u128| (x.min(per) * max_n / per).min(u128::from(pending));
        let (mut runs, mut before) = (Vec::new(), 0);
        for j in 1.. {
            let x = (step * j).min(per);
            let granted = upto(x);
            if granted > before {
                runs.push((now.saturating_add(x as u64), (granted - before) as u64));
                before = granted;
            }
            if granted == u128::from(pending) || x == per {
                break;
            }
        }
        runs
    }
}

/// The stamp grid of a window of `per_ns`: the largest divisor of `per_ns`
/// of the form 2^a·5^b (periods people write are decimal) that is at most
/// `per / 4096` and 50 µs, so a saturated window loses nothing to it and
/// thousands of grants share a timer wake-up; 1 ns at worst.
fn grid(per_ns: u64) -> u64 {
    let bound = (per_ns / 4096).clamp(1, 50_000);
    let mut best = 1;
    let mut fives = 1u64;
    while fives <= bound && per_ns.is_multiple_of(fives) {
        let mut g = fives;
        while g * 2 <= bound && per_ns.is_multiple_of(g * 2) {
            g *= 2;
        }
        best = best.max(g);
        fives *= 5;
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    fn rate(s: &str) -> Rate {
        s.parse().unwrap()
    }

    #[test]
    fn gcra_limit_bursts_to_cap_then_paces() {
        let mut g = Gcra::new(rate("4/s"), Some(4), 1, 0);
        assert!(g.try_take(0, 1).is_some());
        assert!(g.try_take(0, 1).is_none());
        assert_eq!(g.due(0, 1), SEC / 4);
        // Idle for 10 s: only 4 bank up.
        assert_eq!(g.level(10 * SEC), 4);
        assert!(g.try_take(10 * SEC, 4).is_some());
        assert!(g.try_take(10 * SEC, 1).is_none());
        assert!(g.try_take(10 * SEC + SEC / 4, 1).is_some());
    }

    #[test]
    fn gcra_headroom_is_the_distance_from_full() {
        let mut g = Gcra::new(rate("4/s"), Some(4), 4, 0);
        let t = g.span(1);
        assert_eq!(g.try_take(0, 1), Some(0), "full: no room");
        assert_eq!(g.try_take(0, 2), Some(t), "one taken: one of room");
        assert_eq!(g.try_take(SEC / 8, 1), Some(3 * t - t / 2));
        let mut unbounded = Gcra::new(rate("4/s"), None, 4, 0);
        assert_eq!(unbounded.try_take(0, 1), Some(i128::MAX));
    }

    #[test]
    fn gcra_one_spaces_grants_by_the_interval() {
        let mut g = Gcra::new(rate("10/s"), Some(1), 1, 0);
        assert!(g.try_take(5 * SEC, 1).is_some());
        assert!(g.try_take(5 * SEC + SEC / 10 - 1, 1).is_none());
        assert!(g.try_take(5 * SEC + SEC / 10, 1).is_some());
    }

    #[test]
    fn gcra_is_exact_for_thirds() {
        let mut g = Gcra::new(rate("3/s"), Some(3), 0, 0);
        let mut grants = 0u64;
        let day = 86_400 * SEC;
        // Greedy taker polling every 7 ms for a day: fuel k is due at k/3 s,
        // so the last poll (at or after the day) has taken 3·86_400.
        let mut now = 0;
        while now < day + 7_000_000 {
            while g.try_take(now, 1).is_some() {
                grants += 1;
            }
            now += 7_000_000;
        }
        assert_eq!(grants, 3 * 86_400);
    }

    #[test]
    fn gcra_set_rate_keeps_the_level() {
        let mut g = Gcra::new(rate("10/s"), Some(10), 10, 0);
        g.set_rate(0, rate("1000/s"), Some(1000));
        assert_eq!(g.level(0), 10);
        g.set_rate(0, rate("2/s"), Some(2));
        assert_eq!(g.level(0), 2);
    }

    #[test]
    fn fast_step_matches_the_core() {
        for (tat, now, n) in [(0, 0, 1), (5, 100, 3), (100, 50, 1), (0, 1_000_000, 4)] {
            let mut g = Gcra::new(rate("4/40ns"), Some(4), 0, 0);
            g.set_tat(tat as i128);
            let core = g.try_take(now, n).map(|room| (g.tat() as u64, room as u64));
            assert_eq!(
                core,
                gcra::take(tat, now, 30, 10, n),
                "tat {tat} now {now} n {n}"
            );
        }
    }

    #[test]
    fn window_never_exceeds_max_n_in_any_window() {
        let mut w = Window::new(rate("3/s"), 3, 0);
        assert_eq!(w.try_take(0, 3), Some(SEC));
        assert_eq!(w.try_take(SEC - 1, 1), None);
        assert_eq!(w.due(SEC - 1, [1]), SEC);
        assert_eq!(w.try_take(SEC, 1), Some(2 * SEC));
        // Three more after the first window: the fourth waits a second round.
        assert_eq!(w.due(SEC, [3]), 2 * SEC);
        assert_eq!(w.due(SEC, [1, 1, 1, 1, 1]), 2 * SEC);
        assert_eq!(w.due(SEC, [1, 1, 1, 1, 1, 1]), 3 * SEC);
        // A batch needs all its grants free at once.
        let mut w = Window::new(rate("2/s"), 2, 0);
        assert!(w.try_take(0, 1).is_some());
        assert!(w.try_take(3 * SEC / 10, 1).is_some());
        assert_eq!(w.due(3 * SEC / 10, [1, 1]), 13 * SEC / 10);
        assert_eq!(w.due(3 * SEC / 10, [1]), SEC);
        assert_eq!(w.due(3 * SEC / 10, [2]), 13 * SEC / 10);
        assert_eq!(w.due(3 * SEC / 10, [2, 1]), 23 * SEC / 10);
    }

    #[test]
    fn window_refund_removes_the_grant() {
        let mut w = Window::new(rate("2/s"), 2, 0);
        let stamp = w.try_take(10, 2).unwrap();
        assert_eq!(w.level(10), 0);
        w.refund(stamp, 1);
        assert_eq!(w.level(10), 1);
    }

    #[test]
    fn the_grid_divides_the_period() {
        assert_eq!(grid(SEC), 50_000);
        assert_eq!(grid(1_000_000), 200);
        assert_eq!(grid(7_000_000), 1_600);
        assert_eq!(grid(1_000_000_007), 1);
        assert_eq!(grid(1), 1);
        assert_eq!(grid(u64::MAX), 5);
        for per in [1, 3, 999, 4096, 12_345_678, SEC, 60 * SEC, u64::MAX] {
            assert!(per.is_multiple_of(grid(per)), "{per}");
        }
    }

    #[test]
    fn window_set_rate_ramps_up_at_the_new_rate() {
        let mut w = Window::new(rate("10/s"), 10, 0);
        assert!(w.try_take(0, 10).is_some());
        w.set_rate(0, rate("1000/s"));
        assert_eq!(w.level(0), 0);
        assert_eq!(w.level(SEC / 100), 10);
        assert_eq!(w.level(SEC), 1000);
        let mut huge = Window::new(
            Rate::new(u64::MAX, std::time::Duration::from_nanos(u64::MAX)).unwrap(),
            5,
            0,
        );
        huge.set_rate(
            0,
            Rate::new(u64::MAX - 1, std::time::Duration::from_nanos(u64::MAX)).unwrap(),
        );
        // Of the `u64::MAX − 5` granted at build, all still in the window:
        // 4 of room under the new `max_n`, not the 5 there were.
        assert_eq!(huge.level(0), 4);
        assert!(huge.log.len() <= 4097);
    }

    /// The grants before a change still count: 10 at 0 s, then 10/min at
    /// 100 ms, nothing until they leave at 60 s (a ramp from the change
    /// let 9 more into the minute from 0 s).
    #[test]
    fn window_set_rate_keeps_the_grants_made_before() {
        let mut w = Window::new(rate("10/s"), 10, 0);
        assert!(w.try_take(0, 10).is_some());
        w.set_rate(SEC / 10, rate("10/min"));
        assert_eq!(w.level(SEC / 10), 0);
        assert_eq!(w.level(60 * SEC - 1), 0);
        assert_eq!(w.level(60 * SEC), 10);
        // Up from 5/s with 5 taken: no burst, one more a tenth of a second.
        let mut w = Window::new(rate("5/s"), 5, 0);
        assert!(w.try_take(0, 5).is_some());
        w.set_rate(SEC / 2, rate("10/s"));
        assert_eq!(w.level(SEC / 2), 0);
        assert_eq!(w.level(SEC / 2 + SEC / 10), 1);
        assert_eq!(w.level(SEC), 10);
    }
}
