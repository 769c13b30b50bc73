//! The atomic word that lets `has_fuel` take fuel without a lock.
//!
//! ```text
//!  63     62     61      60 … 48      47     46 … 0
//! CORE  QUEUE  RATES  generation  (BUSY)  tat (ticks since epoch)
//! ```
//!
//! While `CORE` is clear, the word holds the tank's `tat` and anyone may take
//! fuel with one compare-and-swap, computing with the parameters in
//! [`Params`] (epoch, scale, interval, tolerance). While `CORE` is set, the
//! state lives in the core, behind its lock; `QUEUE` additionally says
//! that waiters are queued, so `has_fuel` answers `false` at once without
//! locking (it must not overtake them).
//!
//! A tank of several rates (`TankBuilder::also`) sets `RATES` while the
//! word holds its state: the first rate's `tat` in the word, the others'
//! beside it ([`Extra`]). A take computes the first rate as for one rate;
//! a no is answered from the word alone, and a yes goes to
//! [`Word::take_rates`] (the guard `take` tests is `u64::MAX` there), which
//! sets `BUSY` with a compare-and-swap, takes from every rate or from none,
//! and stores the word again without it.
//!
//! Only the holder of the core lock sets `CORE` ([`Word::seize`], which
//! waits out a `BUSY`), and only it changes the parameters, always while
//! `CORE` is set, and then bumps the generation when it publishes
//! ([`Word::publish`]). A fast path that read the parameters while they
//! were being changed cannot succeed: its compare-and-swap expects the word
//! it loaded before, and the word has changed since (to `CORE`, and then to
//! a new generation). It would need the generation to wrap, 8192 parameter
//! changes or lowered guards between two instructions of one thread, *and*
//! the same `tat` to the tick to be fooled.
//!
//! Beside the parameters sit the refund ledger's guard and stamp (see
//! `refunds.rs`): a take with less headroom than the guard goes to the core,
//! which records it; a grant that may come back raises the guard first.
//!
//! A parameter change is a `set_rate`, a `pause`/`resume`, or a rebase of
//! the epoch, which the core does when the clock nears the 2^47 ticks the
//! word can count (every 39 hours at one tick per nanosecond).

use crate::sync::{AtomicU64, Ordering, fence};

use super::gcra;
use super::permit::Stamp;

pub(crate) const CORE: u64 = 1 << 63;
pub(crate) const QUEUE: u64 = 1 << 62;
/// The word holds the first of several rates (the others' `tat`s are in
/// [`Extra`]).
const RATES: u64 = 1 << 61;
/// With `RATES`: a taker is reading and writing every rate's `tat` (a `tat`
/// is below `TICKS_LIMIT`, so this bit of its field is free: see
/// `REL_LIMIT`).
const BUSY: u64 = 1 << 47;
const GEN_SHIFT: u32 = 48;
const GEN_MASK: u64 = (1 << 13) - 1;
/// The `tat`, without `BUSY`: a taker of one rate whose no is computed
/// while another holds `BUSY` reads the first rate's `tat` as it stands.
const TAT_MASK: u64 = BUSY - 1;

/// Largest `tat` and clock reading the word holds, in ticks.
pub(crate) const TICKS_LIMIT: u64 = 1 << 47;
/// Largest `C·T` (the longest burst, in ticks) the word serves.
pub(crate) const SPAN_LIMIT: u64 = 1 << 44;
/// Clock readings the word serves, in ticks from its epoch: a take leaves
/// `tat` at most one interval (below `SPAN_LIMIT`) past the reading, so
/// every `tat` stays below `TICKS_LIMIT`, clear of `BUSY`.
const REL_LIMIT: u64 = TICKS_LIMIT - SPAN_LIMIT;
/// The first rate's tolerance without a cap (`Unbounded`) in a word of
/// several rates: as good as none (a clock reading is below 2^47 ticks),
/// and it never lets a grant's headroom be `u64::MAX`, so that the guard
/// `u64::MAX` sends every grant to [`Word::take_rates`].
const NO_CAP_RATES: u64 = u64::MAX - 1;
/// Most rates beside the first the word serves (a tank of more stays in
/// the core): a take keeps their new `tat`s on the stack until all grant.
pub(crate) const MAX_EXTRAS: usize = 3;

/// Waits a moment for a taker holding `BUSY`: it never blocks, but the
/// scheduler may have stopped it, so after a few spins this yields the
/// processor instead (`spins` counts them).
#[inline]
fn spin(spins: &mut u32) {
    #[cfg(fueltank_loom)]
    {
        let _ = spins;
        loom::thread::yield_now();
    }
    #[cfg(not(fueltank_loom))]
    if *spins < 64 {
        *spins += 1;
        std::hint::spin_loop();
    } else {
        std::thread::yield_now();
    }
}

/// What the lock-free path found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fast {
    /// Taken, with the grant's stamp (meaningful if asked for).
    Taken(Stamp),
    Empty,
    /// Waiters are queued: the answer is no, and it is final.
    Queued,
    /// The core holds the state, or the request is beyond the word, or the
    /// take would cut a refund short (`refunds.rs`): lock.
    Locked,
}

/// Parameters of the lock-free path, valid for the generation in the word.
/// Relaxed atomics, so that reads racing a change are defined (and then
/// discarded by the failing compare-and-swap). A cache line of their own:
/// they are read on every take but rarely written, so they stay shared
/// between cores while the word's line moves from one taker to the next.
#[derive(Debug, Default)]
#[repr(align(64))]
struct Params {
    epoch: AtomicU64,
    /// Ticks per nanosecond.
    s: AtomicU64,
    /// Interval, in ticks.
    t: AtomicU64,
    /// `(C − 1)·T`, or `u64::MAX` with no cap.
    tol: AtomicU64,
    /// Clock readings from `epoch + rel_limit` on are beyond the word.
    rel_limit: AtomicU64,
    /// Largest request served without the lock.
    n_max: AtomicU64,
    /// Takes with less headroom than this go to the core, which records
    /// them (see `refunds.rs`); grants that may come back raise it.
    /// `u64::MAX` for several rates, whose guard is `rates_guard`.
    guard: AtomicU64,
    rates_guard: AtomicU64,
    /// The stamp of a grant made now: the next cut's sequence number...
    stamp_at: AtomicU64,
    /// ...and the rate's generation.
    stamp_rate: AtomicU64,
}

/// The word and its parameters as a lock-free reader saw them.
struct View {
    word: u64,
    tat: u64,
    now_t: u64,
    s: u64,
    t: u64,
    tol: u64,
    n_max: u64,
}

/// Plain values of [`Params`], as the core publishes them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Published {
    pub(crate) epoch: u64,
    pub(crate) s: u64,
    pub(crate) t: u64,
    pub(crate) tol: u64,
    pub(crate) n_max: u64,
}

/// A rate beside the first (`TankBuilder::also`), while the word holds
/// the state: its `tat` and parameters, read and written only by the
/// holder of `BUSY` or by the core (with `CORE` set), so never torn.
#[derive(Debug, Default)]
struct Extra {
    tat: AtomicU64,
    epoch: AtomicU64,
    s: AtomicU64,
    t: AtomicU64,
    tol: AtomicU64,
    rel_limit: AtomicU64,
}

impl Extra {
    /// Under `BUSY`: the `tat` after a take of `n` at `now`, if the fuel is
    /// there; `cut` (a cut, from a full bucket) takes in the take's
    /// headroom against `guard` (in ticks of `t0`, the first rate's
    /// interval). Writes nothing.
    #[inline(always)]
    fn take(
        &self,
        now: u64,
        n: u64,
        t0: u64,
        guard: u64,
        cut: &mut (bool, bool),
    ) -> Result<u64, Fast> {
        let rel = now.wrapping_sub(self.epoch.load(Ordering::Relaxed));
        if rel >= self.rel_limit.load(Ordering::Relaxed) {
            return Err(Fast::Locked);
        }
        let now_t = rel.wrapping_mul(self.s.load(Ordering::Relaxed));
        let (tol, t) = (
            self.tol.load(Ordering::Relaxed),
            self.t.load(Ordering::Relaxed),
        );
        let tat = self.tat.load(Ordering::Relaxed);
        let (tat, room) = gcra::take(tat, now_t, tol, t, n).ok_or(Fast::Empty)?;
        // The headroom in the first rate's ticks, rounded down as the
        // core's (`Gcra::ticks_of`), compared without dividing: below the
        // guard, or below one tick of the first rate.
        if guard != 0 && tol != u64::MAX {
            let room = u128::from(room) * u128::from(t0);
            cut.0 |= room < u128::from(guard) * u128::from(t);
            cut.1 |= room < u128::from(t);
        }
        Ok(tat)
    }
}

/// The word, on a cache line of its own, then its parameters on another.
#[derive(Debug)]
#[repr(C, align(64))]
pub(crate) struct Word {
    word: AtomicU64,
    /// One for each rate beside the first.
    extras: Box<[Extra]>,
    params: Params,
}

impl Word {
    /// A word whose state starts in the core, for a tank of `1 + extras`
    /// rates.
    pub(crate) fn new(extras: usize) -> Word {
        let extras = if extras <= MAX_EXTRAS { extras } else { 0 };
        let params = Params::default();
        if extras > 0 {
            params.guard.store(u64::MAX, Ordering::Relaxed);
        }
        Word {
            word: AtomicU64::new(CORE),
            extras: (0..extras).map(|_| Extra::default()).collect(),
            params,
        }
    }

    /// Takes `n ≥ 1` fuel at internal time `now` without locking, if the
    /// word holds the state; `stamped` if the fuel may be given back.
    #[inline(always)]
    pub(crate) fn take(&self, now: u64, n: u64, stamped: bool) -> Fast {
        // Acquire: pairs with `publish`, so the parameters read below are at
        // least as new as the word.
        let mut word = self.word.load(Ordering::Acquire);
        loop {
            if word & CORE != 0 {
                return if word & QUEUE != 0 {
                    Fast::Queued
                } else {
                    Fast::Locked
                };
            }
            let p = &self.params;
            let epoch = p.epoch.load(Ordering::Relaxed);
            let rel = now.wrapping_sub(epoch);
            // (`n_max` is at least 1: one fuel needs no check.)
            if rel >= p.rel_limit.load(Ordering::Relaxed)
                || (n != 1 && n > p.n_max.load(Ordering::Relaxed))
            {
                return Fast::Locked;
            }
            let s = p.s.load(Ordering::Relaxed);
            let now_t = rel.wrapping_mul(s);
            let tol = p.tol.load(Ordering::Relaxed);
            let t = p.t.load(Ordering::Relaxed);
            match gcra::take(word & TAT_MASK, now_t, tol, t, n) {
                Some((tat, headroom)) => {
                    // A take near full while a grant may still come back:
                    // the core records it (see `refunds.rs`). Without a cap
                    // the guard stays 0, and this is never so.
                    //
                    // Except a take that finds the bucket full and may
                    // itself come back: it cuts every earlier grant to
                    // nothing, which needs no ledger entry, only a place in
                    // the cuts' sequence (`stamp_grant`). An idle service's
                    // tank is full at each request: this keeps its
                    // refundable takes off the lock.
                    //
                    // Several rates: the guard here is `u64::MAX`, so that
                    // this one test sends every grant to `take_rates`.
                    let cut = headroom < p.guard.load(Ordering::Relaxed);
                    if cut {
                        if word & RATES != 0 {
                            return self.take_rates(word, (tat, headroom), now, n, stamped);
                        }
                        if !(stamped && headroom == 0) {
                            return Fast::Locked;
                        }
                    }
                    let stamp = if stamped {
                        self.stamp_grant(&p.guard, n, t, tol, cut)
                    } else {
                        Stamp::default()
                    };
                    debug_assert!(tat < BUSY);
                    let new = (word & !TAT_MASK) | tat;
                    match self.word.compare_exchange_weak(
                        word,
                        new,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    ) {
                        Ok(_) => return Fast::Taken(stamp),
                        Err(current) => word = current,
                    }
                }
                None => {
                    // Only a no computed from parameters of this very word is
                    // an answer: check the word did not change meanwhile.
                    fence(Ordering::Acquire);
                    let current = self.word.load(Ordering::Relaxed);
                    if current == word {
                        return Fast::Empty;
                    }
                    word = current;
                }
            }
        }
    }

    /// [`Word::take`] of several rates, once the first rate (in `word`)
    /// grants `n` (its new `tat` and the headroom found): every rate
    /// grants, or none. The taker sets `BUSY`, a critical section of a few
    /// instructions in which nobody else takes and the core waits to
    /// seize, takes from every other rate (or from none), and stores the
    /// new word without `BUSY` (or the old word, if another rate refuses:
    /// nothing changed).
    #[cold]
    #[inline(never)]
    fn take_rates(
        &self,
        mut word: u64,
        mut first: (u64, u64),
        now: u64,
        n: u64,
        stamped: bool,
    ) -> Fast {
        let mut spins = 0;
        loop {
            if word & BUSY == 0 {
                // Acquire: the other rates' `tat`s as the last holder left
                // them. Success also says the first rate's parameters, read
                // before, were this word's (as in `take`).
                match self.word.compare_exchange_weak(
                    word,
                    word | BUSY,
                    Ordering::Acquire,
                    Ordering::Acquire,
                ) {
                    Ok(_) => return self.take_busy(word, first, now, n, stamped),
                    Err(current) => word = current,
                }
            } else {
                spin(&mut spins);
                word = self.word.load(Ordering::Acquire);
            }
            first = match self.first_rate(&mut word, now, n) {
                Ok(first) => first,
                Err(answer) => return answer,
            };
        }
    }

    /// The first of several rates, as `take` computes it, from `word` or,
    /// if that changes, from the word found then: its grant, or the answer.
    #[cold]
    fn first_rate(&self, word: &mut u64, now: u64, n: u64) -> Result<(u64, u64), Fast> {
        let p = &self.params;
        loop {
            if *word & (CORE | RATES) != RATES {
                return Err(match *word & QUEUE != 0 {
                    true => Fast::Queued,
                    false => Fast::Locked,
                });
            }
            let rel = now.wrapping_sub(p.epoch.load(Ordering::Relaxed));
            if rel >= p.rel_limit.load(Ordering::Relaxed)
                || (n != 1 && n > p.n_max.load(Ordering::Relaxed))
            {
                return Err(Fast::Locked);
            }
            let now_t = rel.wrapping_mul(p.s.load(Ordering::Relaxed));
            let (tol, t) = (p.tol.load(Ordering::Relaxed), p.t.load(Ordering::Relaxed));
            if let Some(first) = gcra::take(*word & TAT_MASK, now_t, tol, t, n) {
                return Ok(first);
            }
            fence(Ordering::Acquire);
            let current = self.word.load(Ordering::Relaxed);
            if current == *word {
                return Err(Fast::Empty);
            }
            *word = current;
        }
    }

    /// Under `BUSY`, set on `word`, with the first rate granting `n` (its
    /// new `tat` and headroom): takes from every other rate too, and stores
    /// the new word, or the old one if nothing was taken.
    #[inline(always)]
    fn take_busy(
        &self,
        word: u64,
        (tat, headroom): (u64, u64),
        now: u64,
        n: u64,
        stamped: bool,
    ) -> Fast {
        // Under `BUSY` nobody changes the parameters.
        let p = &self.params;
        let (tol, t) = (p.tol.load(Ordering::Relaxed), p.t.load(Ordering::Relaxed));
        let tol = if tol == NO_CAP_RATES { u64::MAX } else { tol };
        match self.take_extras(now, n, t, headroom, stamped) {
            Ok(cut) => {
                let stamp = if stamped {
                    self.stamp_grant(&p.rates_guard, n, t, tol, cut)
                } else {
                    Stamp::default()
                };
                // Release: the other rates' new `tat`s (and the guard) go
                // with the word.
                debug_assert!(tat < BUSY);
                self.word.store((word & !TAT_MASK) | tat, Ordering::Release);
                Fast::Taken(stamp)
            }
            Err(refused) => {
                self.word.store(word, Ordering::Release);
                refused
            }
        }
    }

    /// Under `BUSY`, with the first rate granting `n` (interval `t0`,
    /// `headroom0`): takes `n` from every other rate, or from none. `Ok`
    /// with whether the take is a cut that may be made without the lock
    /// (see `take`); `Err` with the answer if nothing was taken.
    #[inline]
    fn take_extras(
        &self,
        now: u64,
        n: u64,
        t0: u64,
        headroom0: u64,
        stamped: bool,
    ) -> Result<bool, Fast> {
        let guard = self.params.rates_guard.load(Ordering::Relaxed);
        let mut cut = (headroom0 < guard, headroom0 == 0);
        let allowed = |(cut, full)| match cut && !(stamped && full) {
            true => Err(Fast::Locked),
            false => Ok(cut),
        };
        // One other rate, the common case: nothing to keep aside.
        if let [x] = &*self.extras {
            let tat = x.take(now, n, t0, guard, &mut cut)?;
            let cut = allowed(cut)?;
            x.tat.store(tat, Ordering::Relaxed);
            return Ok(cut);
        }
        let mut tats = [0; MAX_EXTRAS];
        for (x, new) in self.extras.iter().zip(&mut tats) {
            *new = x.take(now, n, t0, guard, &mut cut)?;
        }
        let cut = allowed(cut)?;
        for (x, &tat) in self.extras.iter().zip(&tats) {
            x.tat.store(tat, Ordering::Relaxed);
        }
        Ok(cut)
    }

    /// The stamp of a grant of `n` about to be made without the lock, and
    /// its guard, raised before the compare-and-swap, whose release
    /// publishes it to every later taker. With `cut`, the grant empties a
    /// full bucket: it first takes the next cut's sequence number, as a cut
    /// with no headroom, and comes after it.
    ///
    /// Both happen before the compare-and-swap, so the core, which seizes
    /// the word with a read-modify-write, sees them for every grant that
    /// succeeded. A compare-and-swap that fails leaves them behind: a
    /// higher guard sends more takes to the core, and a sequence number
    /// taken for nothing counts as a cut, so a refund stamped before it
    /// gives back nothing. Both err on the side of less fuel.
    #[inline]
    fn stamp_grant(&self, guard: &AtomicU64, n: u64, t: u64, tol: u64, cut: bool) -> Stamp {
        let p = &self.params;
        let span = n.wrapping_mul(t);
        if tol != u64::MAX && guard.load(Ordering::Relaxed) < span {
            guard.fetch_max(span, Ordering::Relaxed);
        }
        // Acquire: a cut whose sequence number this sees came before this
        // grant (see `set_refunds`).
        let at = match cut {
            true => p.stamp_at.fetch_add(1, Ordering::AcqRel).wrapping_add(1),
            false => p.stamp_at.load(Ordering::Acquire),
        };
        Stamp::Gcra {
            cut: at,
            rate: p.stamp_rate.load(Ordering::Acquire),
        }
    }

    /// A reader's view at `now`, if the word holds the state and `now` is
    /// within its range: the word, with the parameters read after it. Any
    /// answer computed from it holds only if [`Word::unchanged`] says so.
    fn view(&self, now: u64) -> Option<View> {
        let word = self.word.load(Ordering::Acquire);
        // (Several rates: the core answers, from all of them.)
        if word & (CORE | RATES) != 0 {
            return None;
        }
        let p = &self.params;
        let rel = now.wrapping_sub(p.epoch.load(Ordering::Relaxed));
        let (s, t) = (p.s.load(Ordering::Relaxed), p.t.load(Ordering::Relaxed));
        if rel >= p.rel_limit.load(Ordering::Relaxed) || t == 0 {
            return None;
        }
        Some(View {
            word,
            tat: word & TAT_MASK,
            // Wrapping: parameters read during a change may be anything;
            // the answer is then thrown away.
            now_t: rel.wrapping_mul(s),
            s,
            t,
            tol: p.tol.load(Ordering::Relaxed),
            n_max: p.n_max.load(Ordering::Relaxed),
        })
    }

    /// Whether the word is still the one `view` read: then the parameters
    /// read after it belonged to it (the fence pairs with `publish`'s).
    fn unchanged(&self, view: &View) -> bool {
        fence(Ordering::Acquire);
        self.word.load(Ordering::Relaxed) == view.word
    }

    /// The fuel level at `now`, if the word holds the state.
    pub(crate) fn level(&self, now: u64) -> Option<u64> {
        let v = self.view(now)?;
        let level = gcra::level(v.tat, v.now_t, v.tol, v.t);
        self.unchanged(&v).then_some(level)
    }

    /// Whether waiters are queued (the core holds the state, with `QUEUE`).
    #[inline]
    pub(crate) fn queued(&self) -> bool {
        self.word.load(Ordering::Acquire) & QUEUE != 0
    }

    /// The guard, as raised by grants made without the lock; read by the
    /// core after [`Word::seize`].
    pub(crate) fn guard(&self) -> u64 {
        self.guard_cell().load(Ordering::Relaxed)
    }

    /// Where the guard is: for several rates, beside the one `take` tests,
    /// which stays `u64::MAX`.
    fn guard_cell(&self) -> &AtomicU64 {
        match self.extras.is_empty() {
            true => &self.params.guard,
            false => &self.params.rates_guard,
        }
    }

    /// The next cut's sequence number, as moved on by grants made without
    /// the lock from a full bucket; read by the core after [`Word::seize`].
    pub(crate) fn stamp_at(&self) -> u64 {
        self.params.stamp_at.load(Ordering::Acquire)
    }

    /// Publishes the refund ledger's guard and the stamp of a grant made
    /// now. Under the core lock, before the word is released: a taker that
    /// reads these values as new also sees the state seized, and one that
    /// loads the released word sees them. The guard is only raised, never
    /// overwritten, unless `lowered`: then the next [`Word::publish`] must
    /// change the generation. The sequence number is only raised: a grant
    /// from a full bucket may have moved it on meanwhile (its
    /// compare-and-swap then fails, unless the word comes back unchanged,
    /// and then its cut stands).
    pub(crate) fn set_refunds(&self, guard: u64, lowered: bool, stamp_at: u64, stamp_rate: u64) {
        let p = &self.params;
        if lowered {
            self.guard_cell().store(guard, Ordering::Relaxed);
        } else {
            self.guard_cell().fetch_max(guard, Ordering::Relaxed);
        }
        p.stamp_at.fetch_max(stamp_at, Ordering::Release);
        p.stamp_rate.store(stamp_rate, Ordering::Release);
    }

    /// How long until `n` fuel are there at `now`, in nanoseconds, if the
    /// word holds the state (then nobody waits) and `n` fits the word.
    pub(crate) fn wait(&self, now: u64, n: u64) -> Option<u64> {
        let v = self.view(now)?;
        if n == 0 || n > v.n_max {
            return None;
        }
        let (due_t, _) = gcra::due(v.tat, v.now_t, v.tol, v.t, u128::from(n));
        // Whole nanoseconds, rounded up: the fuel is there at the end.
        let wait = due_t.saturating_sub(v.now_t).div_ceil(v.s.max(1));
        self.unchanged(&v).then_some(wait)
    }

    /// Moves the state from the word into the core; returns the `tat` it
    /// held, or `None` if the core already held it.
    ///
    /// Call only with the core lock held.
    pub(crate) fn seize(&self) -> Option<u64> {
        let mut word = self.word.load(Ordering::Acquire);
        let mut spins = 0;
        loop {
            if word & CORE != 0 {
                return None;
            }
            if word & BUSY != 0 {
                // A taker of several rates is between its two stores; it
                // never blocks.
                spin(&mut spins);
                word = self.word.load(Ordering::Acquire);
                continue;
            }
            match self.word.compare_exchange_weak(
                word,
                word | CORE,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some(word & TAT_MASK),
                Err(current) => word = current,
            }
        }
    }

    /// How many rates beside the first the word can hold.
    pub(crate) fn extras(&self) -> usize {
        self.extras.len()
    }

    /// The `tat` of the `i`-th rate beside the first, as the word held it.
    ///
    /// Call only with the core lock held, after [`Word::seize`] returned
    /// the first's.
    pub(crate) fn extra_tat(&self, i: usize) -> u64 {
        self.extras[i].tat.load(Ordering::Relaxed)
    }

    /// Keeps the state in the core, with `QUEUE` set if `queued`.
    ///
    /// Call only with the core lock held, after [`Word::seize`].
    pub(crate) fn hold(&self, queued: bool) {
        let generation = self.word.load(Ordering::Relaxed) & (GEN_MASK << GEN_SHIFT);
        let flags = if queued { CORE | QUEUE } else { CORE };
        self.word.store(flags | generation, Ordering::Release);
    }

    /// Hands the state back to the lock-free path with `tat`, under the
    /// parameters `new`; `old` are those published last. With `renew`, the
    /// generation changes even if the parameters do not. `extras`: the
    /// parameters and `tat` of each rate beside the first (none, or as
    /// many as [`Word::extras`]), read only under `BUSY` or `CORE`, so
    /// published by the store of the word alone.
    ///
    /// Call only with the core lock held, after [`Word::seize`];
    /// `tat < TICKS_LIMIT`.
    pub(crate) fn publish(
        &self,
        old: &mut Option<Published>,
        new: Published,
        tat: u64,
        renew: bool,
        extras: &[(Published, u64)],
    ) {
        debug_assert!(tat < TICKS_LIMIT);
        debug_assert!(extras.is_empty() || extras.len() == self.extras.len());
        for (x, (params, tat)) in self.extras.iter().zip(extras) {
            debug_assert!(*tat < TICKS_LIMIT);
            x.tat.store(*tat, Ordering::Relaxed);
            x.epoch.store(params.epoch, Ordering::Relaxed);
            x.s.store(params.s, Ordering::Relaxed);
            x.t.store(params.t, Ordering::Relaxed);
            x.tol.store(params.tol, Ordering::Relaxed);
            x.rel_limit.store(REL_LIMIT / params.s, Ordering::Relaxed);
        }
        let rates = if extras.is_empty() { 0 } else { RATES };
        let mut generation = (self.word.load(Ordering::Relaxed) >> GEN_SHIFT) & GEN_MASK;
        if renew && *old == Some(new) {
            generation = (generation + 1) & GEN_MASK;
        }
        if *old != Some(new) {
            // Still under CORE: no compare-and-swap can succeed while these
            // change, and the new generation fails any that read them. The
            // fence orders the seize before these stores, so that a reader
            // that sees a new parameter also sees the word changed when it
            // checks again (after its own acquire fence).
            fence(Ordering::Release);
            let p = &self.params;
            p.epoch.store(new.epoch, Ordering::Relaxed);
            p.s.store(new.s, Ordering::Relaxed);
            p.t.store(new.t, Ordering::Relaxed);
            let tol = match new.tol == u64::MAX && !extras.is_empty() {
                true => NO_CAP_RATES,
                false => new.tol,
            };
            p.tol.store(tol, Ordering::Relaxed);
            p.rel_limit.store(REL_LIMIT / new.s, Ordering::Relaxed);
            p.n_max.store(new.n_max, Ordering::Relaxed);
            generation = (generation + 1) & GEN_MASK;
            *old = Some(new);
        }
        // Release: the parameters are visible to whoever loads this word.
        self.word
            .store(rates | (generation << GEN_SHIFT) | tat, Ordering::Release);
    }
}

/// The parameter check of the lock-free readers, under every interleaving
/// with the core moving the epoch (same state, new parameters): a reader
/// must never answer from a mix of old and new parameters.
#[cfg(all(test, fueltank_loom))]
mod loom_tests {
    use super::*;
    use std::sync::Arc;

    /// Fuel is there in both the old and the new parameters at `now = 100`.
    fn race<R: Send + 'static>(read: fn(&Word) -> R, check: fn(R)) {
        loom::model(move || {
            let word = Arc::new(Word::new(0));
            let old = Published {
                epoch: 0,
                s: 1,
                t: 10,
                tol: 0,
                n_max: 1,
            };
            let mut published = None;
            word.seize();
            word.publish(&mut published, old, 100, false, &[]);
            let core = word.clone();
            let rebase = loom::thread::spawn(move || {
                let mut published = Some(old);
                let tat = core.seize().unwrap();
                let new = Published { epoch: 50, ..old };
                core.publish(&mut published, new, tat - 50, false, &[]);
            });
            let answer = read(&word);
            rebase.join().unwrap();
            check(answer);
        });
    }

    /// Two fuel of room at `now = 100` (C = 2, T = 10), with a taker that
    /// stamps its grant racing the core, which seizes the word and runs
    /// `core` on the guard it read; then `check` on the grant and the guard.
    fn guard_race(core: fn(u64) -> (u64, bool, u64), check: fn(Fast, u64)) {
        loom::model(move || {
            let word = Arc::new(Word::new(0));
            let params = Published {
                epoch: 0,
                s: 1,
                t: 10,
                tol: 10,
                n_max: 2,
            };
            let mut published = None;
            word.seize();
            word.publish(&mut published, params, 0, false, &[]);
            let taker = word.clone();
            let grant = loom::thread::spawn(move || taker.take(100, 1, true));
            if let Some(tat) = word.seize() {
                let (guard, lowered, stamp_at) = core(word.guard());
                word.set_refunds(guard, lowered, stamp_at, 0);
                let mut published = Some(params);
                word.publish(&mut published, params, tat, lowered, &[]);
            }
            check(grant.join().unwrap(), word.guard());
        });
    }

    /// A grant made without the lock raises the guard before its
    /// compare-and-swap; the core, seizing the word at any moment, takes
    /// in the guard after its seize and only raises it when it publishes.
    /// So a grant that succeeded always leaves its guard for every later
    /// take (else a take that cuts its refund short would go unrecorded,
    /// and the refund would mint fuel).
    #[test]
    fn a_grant_without_the_lock_always_leaves_its_guard() {
        guard_race(
            |guard| (guard, false, 0),
            |grant, guard| {
                if let Fast::Taken(_) = grant {
                    assert!(guard >= 10, "the grant's guard was lost");
                }
            },
        );
    }

    /// The core records a cut (sequence 0) and lowers the guard to its
    /// headroom: a racing grant either came before the cut (its stamp
    /// names it, so the cut caps its refund) or after (its guard stands).
    #[test]
    fn a_cut_racing_a_grant_without_the_lock_covers_it() {
        guard_race(
            |_| (0, true, 1),
            |grant, guard| {
                if let Fast::Taken(Stamp::Gcra { cut, .. }) = grant {
                    assert!(cut == 0 || guard >= 10, "at {cut} guard {guard}");
                }
            },
        );
    }

    /// A bucket full at `now = 100` (C = 2, T = 10) and a grant stamped
    /// before (sequence 0, 10 ticks) that may come back; a taker that
    /// stamps its grant from the full bucket races the core giving the
    /// earlier grant back. If the take came first, it cut the earlier grant
    /// to nothing, and the core must see that: a refund of the full 10
    /// ticks would leave the bucket full after the take, one fuel minted.
    #[test]
    fn a_grant_from_a_full_bucket_cuts_the_refunds_before_it() {
        use crate::tank::permit::Stamp;
        use crate::tank::refunds::Refunds;

        loom::model(|| {
            let word = Arc::new(Word::new(0));
            let params = Published {
                epoch: 0,
                s: 1,
                t: 10,
                tol: 10,
                n_max: 2,
            };
            let mut published = None;
            word.seize();
            word.set_refunds(10, false, 0, 0);
            word.publish(&mut published, params, 90, false, &[]);
            let taker = word.clone();
            let grant = loom::thread::spawn(move || taker.take(100, 1, true));
            if let Some(tat) = word.seize() {
                let mut refunds = Refunds::default();
                refunds.raise_guard(i128::from(word.guard()));
                refunds.cuts_without_lock(word.stamp_at());
                let back = refunds.give_back(10, Stamp::Gcra { cut: 0, rate: 0 });
                if tat != 90 {
                    assert_eq!(back, 0, "the take from the full bucket came first");
                }
                let (next, rate) = refunds.stamp_parts();
                word.set_refunds(10, false, next, rate);
                let tat = u64::try_from(i128::from(tat) - back).unwrap();
                word.publish(&mut published, params, tat, false, &[]);
            }
            if let Fast::Taken(Stamp::Gcra { cut, .. }) = grant.join().unwrap() {
                assert!(cut >= 1, "the grant comes after its own cut");
            }
        });
    }

    /// A word of two rates: the first with `T = 10`, `C = 3` and `tat0`,
    /// the other with `T = 20`, `C = 2` and `tat1`.
    fn two_rates(tat0: u64, tat1: u64) -> Arc<Word> {
        let first = Published {
            epoch: 0,
            s: 1,
            t: 10,
            tol: 20,
            n_max: 2,
        };
        let other = Published { t: 20, ..first };
        let word = Arc::new(Word::new(1));
        word.seize();
        word.publish(&mut None, first, tat0, false, &[(other, tat1)]);
        word
    }

    /// The core seizes the word of two rates: the `tat` of each.
    fn seize_both(word: &Word) -> (u64, u64) {
        let tat0 = word.seize().expect("only the core seizes");
        (tat0, word.extra_tat(0))
    }

    /// A take of one at `now = 100` from [`two_rates`] racing the core's
    /// seize: the take's answer, and the `tat`s the core found.
    fn take_racing_seize(tat0: u64, tat1: u64) -> (Fast, (u64, u64)) {
        let word = two_rates(tat0, tat1);
        let taker = word.clone();
        let grant = loom::thread::spawn(move || taker.take(100, 1, false));
        let seized = seize_both(&word);
        (grant.join().unwrap(), seized)
    }

    /// A take of two rates racing the core's seize: either the take came
    /// first and the core finds it in both rates, or the core came first
    /// and the take goes to the lock. Never one rate without the other,
    /// never a grant the core does not see.
    #[test]
    fn a_take_of_two_rates_is_never_lost_to_a_seize() {
        loom::model(|| {
            // At 100: 3 fuel under the first rate, 2 under the other.
            let (got, seized) = take_racing_seize(80, 80);
            match got {
                Fast::Taken(_) => assert_eq!(seized, (90, 100), "the take is lost"),
                got => {
                    assert_eq!(got, Fast::Locked);
                    assert_eq!(seized, (80, 80), "a take to the lock changed a rate");
                }
            }
        });
    }

    /// Two takes of two rates, with fuel for two under the first and for
    /// one under the other: exactly one is granted, from both rates; the
    /// refused one changes nothing (its word goes back as it was).
    #[test]
    fn takes_of_two_rates_are_all_or_nothing() {
        loom::model(|| {
            // At 100: 3 fuel under the first rate, 1 under the other.
            let word = two_rates(80, 100);
            let spawn = |word: &Arc<Word>| {
                let taker = word.clone();
                loom::thread::spawn(move || taker.take(100, 1, false))
            };
            let (a, b) = (spawn(&word), spawn(&word));
            let mut got = [a.join().unwrap(), b.join().unwrap()];
            got.sort_by_key(|fast| matches!(fast, Fast::Taken(_)));
            assert_eq!(got, [Fast::Empty, Fast::Taken(Stamp::default())]);
            assert_eq!(seize_both(&word), (90, 120), "one take, in both rates");
        });
    }

    /// A take refused by the second rate, racing the core: it answers no
    /// (or goes to the lock), and the core finds both rates as they were.
    #[test]
    fn a_refused_take_of_two_rates_changes_nothing() {
        loom::model(|| {
            // At 100: 3 fuel under the first rate, none under the other.
            let (got, seized) = take_racing_seize(80, 120);
            assert!(matches!(got, Fast::Empty | Fast::Locked), "{got:?}");
            assert_eq!(seized, (80, 120));
        });
    }

    #[test]
    fn take_never_says_no_from_torn_parameters() {
        race(
            |w| w.take(100, 1, false),
            |got| assert_ne!(got, Fast::Empty),
        );
    }

    #[test]
    fn level_never_reads_torn_parameters() {
        race(|w| w.level(100), |got| assert_ne!(got, Some(0)));
    }

    #[test]
    fn wait_never_reads_torn_parameters() {
        race(
            |w| w.wait(100, 1),
            |got| assert!(matches!(got, None | Some(0)), "{got:?}"),
        );
    }
}
