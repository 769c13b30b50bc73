//! [`HostBucket`]: the bucket of a tank shared by the processes of a host,
//! in one atomic word of a shared file (see `shm/mod.rs` for the file).
//!
//! # The word
//!
//! ```text
//!   63       62 … 50      49 48    47 … 0
//! PAUSED   generation    slot    tat, or (paused) the frozen room
//! ```
//!
//! Running, the word holds the `tat` of `bucket.rs`, in ticks since the
//! epoch of the parameter *slot* it names: one of four, each holding an
//! epoch, the rate and its tick scale. A take is one compare-and-swap of
//! the word computed with the slot it names, as in `word.rs`. Paused, the
//! word holds how much the bucket held when it was paused (`now − tat + T`,
//! in ticks, biased: see *Turns*), frozen: takes spend it, nothing refills it, and resuming
//! turns it back into a `tat` against the present. Both are one
//! compare-and-swap, so every process sees the pause at once, and a process
//! killed at any point leaves the word whole. A resume also moves the word
//! to the next generation, so that no grant's stamp names it again (see
//! `next_generation`).
//!
//! # Turns: one line for every process
//!
//! A waiter whose fuel is not there yet *schedules its turn*
//! ([`HostState::reserve`]): the compare-and-swap of a take, with the `tat`
//! moved on past the present — the fuel is spent now, and the waiter's
//! from its due time on. So the word is the line of every process: turns
//! come in the order of their compare-and-swaps, each at the time the
//! bucket accrues its fuel after the turns before it, and a take
//! (`has_fuel`) finds fuel only after every turn scheduled. Nothing is
//! held for a turn: a process killed with turns scheduled leaves them to
//! pass unused (their fuel lost, never minted), and nobody waits on them
//! beyond their time. The hardcap's bound holds on the turns, as on takes;
//! a process lets its waiter go when its timer fires, at or after the
//! turn. Turns are scheduled at most `AHEAD` ticks on, so that the word
//! holds them through every move of the epoch. A change converts the
//! word's distance ahead in fuel, so turns keep their place in intervals
//! of the new rate (each process moves its waiters' due times alike).
//! Under `Hardcap::One` processes take no turns (see [`HostBucket::takes_turns`]).
//!
//! Paused, the room may be negative: turns scheduled before the pause still
//! come (their fuel was spent), and resuming carries that debt on. The
//! word holds `BIAS + room`.
//!
//! # Changing the parameters without a lock
//!
//! A change (a rate change, or moving the epoch on before ticks outgrow the
//! word's 48 bits, every `2^47 − span` ticks) writes a slot the word does
//! not name, then moves the word to it, and to the next generation, in the
//! compare-and-swap that converts its value. A reader that read a slot
//! being written was reading an old word, so its own compare-and-swap
//! fails and it reads again.
//!
//! A process writes only a slot it *owns*: one it marked with its pid when
//! no live process did, and that the word did not name then. Only an owner
//! moves the word to its slot, so the slot stays unnamed while it writes,
//! and nobody else writes it until it lets go. A process stopped or killed
//! mid-change holds nothing the others wait for: they change the
//! parameters in another slot (three are spare), and take a dead owner's
//! slot over. Nothing waits on a clock, so this holds at every rate. Only
//! if live processes own all three spare slots (each stopped mid-change) do
//! changes wait: a take that needs the epoch moved then refuses, and
//! `set_rate` fails after a while.
//!
//! # Limits
//!
//! A bucket's whole span, `C·T` in ticks, must be below 2^45 (at one tick a
//! nanosecond, periods up to nine hours; finer tick scales, for counts with
//! large prime factors, shorten that). An `Unbounded` bank is kept up to
//! 2^45 ticks. Fuel given back returns only if no take changed the bucket
//! since it was granted (in any process): otherwise it is spent — never
//! minted, but sometimes lost, where an in-process tank would be exact.
//!
//! # A file that goes bad
//!
//! Attaching checks every field (see [`HostState::check`]). After that,
//! every reader checks that the slot's scale, interval and tolerance agree
//! with its rate and this process's hardcap, and refuses (no fuel, no
//! level) if not; every loop either makes progress in the word (another
//! process changed it) or ends. Another writer that changes the word
//! itself is not defended against.

use crate::sync::{AtomicU64, Ordering, fence};

use super::gcra::{self, Tick};
use crate::shm::CLOCK_SLACK_NS;
use crate::{Error, Hardcap, Rate};

const PAUSED: u64 = 1 << 63;
const GEN_SHIFT: u32 = 50;
const GEN_MASK: u64 = (1 << 13) - 1;
const SLOT_SHIFT: u32 = 48;
const SLOT_MASK: u64 = 3;
const SLOTS: usize = 4;
const VALUE: u64 = (1 << 48) - 1;
/// Ticks of the present at which the epoch moves on.
const RANGE: u64 = 1 << 47;
/// Largest `C·T` in ticks.
pub(crate) const SPAN_LIMIT: u64 = 1 << 45;
/// How far ahead of the present a waiter's turn may be scheduled, in ticks
/// (the word's `tat` stays below `now + T + AHEAD`, so that it fits the
/// word through every move of the epoch).
const AHEAD: u64 = 1 << 45;
/// Paused, the word holds `BIAS + room`: the room is negative while turns
/// scheduled before the pause are still to come (down to `−(AHEAD + T)`).
const BIAS: u64 = 1 << 47;
/// The file counts host time from this many ns before the host's boot
/// (its monotonic clock's 0): an epoch a whole span (up to 2^45 ns) before
/// the present is then never before 0, however recently the host booted.
const BOOT_BIAS: u64 = 1 << 46;
/// Tick scales from this on are refused (`Params::fits`).
const SCALE_LIMIT: u64 = RANGE / 1_000_000;
/// The most epoch moves one take makes before it refuses.
const MOVES: u32 = 3;
/// How long `set_rate` waits for a spare slot, in tries a millisecond apart.
const SET_RATE_TRIES: u32 = 1000;

/// The shared state: the word, the hardcap, and the parameter slots.
#[repr(C, align(64))]
#[derive(Debug)]
pub(crate) struct HostState {
    word: AtomicU64,
    /// The hardcap, as `Hardcap` discriminant + 1 (0: not a tank).
    hardcap: AtomicU64,
    /// `Limit`'s capacity if not `max_n` (`TankBuilder::burst`), or 0:
    /// checked at attach, for the capacity of every rate to come to agree
    /// (a burst equal to `max_n` and none agree at this rate only).
    burst: AtomicU64,
    _reserved: [AtomicU64; 5],
    slots: [Slot; SLOTS],
}

#[repr(C, align(64))]
#[derive(Debug)]
struct Slot {
    /// Host ns at tick 0, counted from `BOOT_BIAS` ns before the boot.
    epoch: AtomicU64,
    max_n: AtomicU64,
    per_ns: AtomicU64,
    /// Ticks per ns, and the interval in ticks.
    s: AtomicU64,
    t: AtomicU64,
    /// `(C − 1)·T`, or `u64::MAX` without a cap.
    tol: AtomicU64,
    /// 0, or `pid << 32 | n` of the process that owns the slot to write it
    /// (see [`HostState::own_spare`]).
    owner: AtomicU64,
    _reserved: AtomicU64,
}

/// A shared bucket as a tank holds it: one for all of its handles.
pub(crate) type Host = std::sync::Arc<HostBucket>;

/// A tank's [`HostState`], in a shared file, with what this process asked
/// of it.
#[derive(Debug)]
pub(crate) struct HostBucket {
    region: crate::shm::Region,
    shape: Shape,
}

// SAFETY: `#[repr(C)]`, atomics only (and arrays and structs of them).
unsafe impl crate::shm::Mapped for HostState {}

/// The hardcap and burst this process asked for: what a slot's tolerance
/// must be for its rate. Process memory, so another writer cannot change it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Shape {
    hardcap: Hardcap,
    burst: Option<u64>,
}

impl Shape {
    pub(crate) fn new(hardcap: Hardcap, burst: Option<u64>) -> Shape {
        Shape { hardcap, burst }
    }

    /// `(C − 1)·T` for `max_n` fuel per period, `T` ticks each.
    #[inline]
    fn tol(self, max_n: u64, t: u64) -> u64 {
        match self.hardcap.capacity(max_n, self.burst) {
            Some(cap) => cap.saturating_sub(1).saturating_mul(t),
            None => u64::MAX,
        }
    }
}

/// Why an attached state was refused.
#[derive(Debug)]
pub(crate) enum Bad {
    /// Another tank's parameters: `(what, found, asked)`.
    Mismatch(&'static str, String, String),
    /// A value no tank writes: what is wrong, and what it must be.
    Corrupt(String),
}

impl HostBucket {
    /// Creates or attaches to the shared tank `shared` names, after
    /// checking that it can hold this tank.
    pub(crate) fn open(
        shared: &crate::SharedMemory,
        rate: Rate,
        hardcap: Hardcap,
        burst: Option<u64>,
        initial: u64,
        clock: &crate::clock::ClockSource,
    ) -> Result<HostBucket, Error> {
        if hardcap == Hardcap::Window {
            return Err(Error::Unsupported {
                what: "Hardcap::Window in shared memory (its log of grants would need a lock \
                       that a killed process could leave held)",
                accepted: "the hardcap must be Limit, One or Unbounded in shared memory \
                           (Window works in one process)",
            });
        }
        let params = Params::of(rate, hardcap, burst);
        if !params.fits() {
            return Err(params.too_fine());
        }
        if hardcap == Hardcap::Unbounded
            && u128::from(initial) * u128::from(rate.ticks().1) >= u128::from(SPAN_LIMIT)
        {
            return Err(Error::InvalidCount {
                option: "initial",
                value: initial,
                accepted: "for a shared Unbounded tank, at most 2^45 ticks' worth of fuel",
            });
        }
        let shape = Shape::new(hardcap, burst);
        let region = crate::shm::open(
            shared,
            crate::shm::Kind::Tank,
            clock,
            |state: &HostState| {
                let now = crate::shm::host_now_ns();
                state.init(rate, hardcap, burst, initial, now);
            },
            |state, path| {
                let now = crate::shm::host_now_ns();
                state.check(rate, shape, now).map_err(|bad| match bad {
                    Bad::Mismatch(what, found, asked) => Error::SharedMismatch {
                        path: path.to_owned(),
                        what,
                        found,
                        asked,
                    },
                    Bad::Corrupt(reason) => Error::SharedMemory {
                        path: path.to_owned(),
                        reason: format!("corrupt: {reason}; remove the file to start anew"),
                    },
                })
            },
        )?;
        Ok(HostBucket { region, shape })
    }

    pub(crate) fn state(&self) -> &HostState {
        self.region.get::<HostState>(crate::shm::STATE_AT)
    }

    #[inline]
    pub(crate) fn take(&self, now: u64, n: u64) -> Took {
        self.state().take(now, n, self.shape)
    }

    /// Whether waiters take turns in the shared word: not under
    /// [`Hardcap::One`]. `One` cannot bank fuel, so a waiter let go late
    /// would come less than an interval before the next turn (of another
    /// process, on time): there each grant is a take at the time of the
    /// grant, and the processes' timers race for it.
    pub(crate) fn takes_turns(&self) -> bool {
        self.shape.hardcap != Hardcap::One
    }

    /// As [`HostState::reserve`], with this process's hardcap and burst.
    #[inline]
    pub(crate) fn reserve(&self, now: u64, n: u64, until: Option<u64>) -> Turn {
        self.state().reserve(now, n, until, self.shape)
    }

    pub(crate) fn give_back(&self, n: u64, stamp: u64) {
        self.state().give_back(n, stamp, self.shape);
    }

    pub(crate) fn level(&self, now: u64) -> u64 {
        self.state().level(now, self.shape)
    }

    pub(crate) fn due(&self, now: u64, n: u128) -> u64 {
        self.state().due(now, n, self.shape)
    }

    /// As [`HostState::pause`], on a fresh reading of the host clock if
    /// `now` is older than the epoch another process set since.
    pub(crate) fn pause(&self, now: u64) {
        let pause = |now| self.state().pause(now, self.shape);
        let _ = on_time(now, pause, |Stale| true);
    }

    /// As [`HostState::resume`], as `pause`.
    pub(crate) fn resume(&self, now: u64) {
        let resume = |now| self.state().resume(now, self.shape);
        let _ = on_time(now, resume, |Stale| true);
    }

    /// As [`HostState::set_rate`], with this process's hardcap and burst,
    /// as `pause`: the host time the rate changed at (`now`, or the fresh
    /// reading it took).
    pub(crate) fn set_rate(&self, now: u64, rate: Rate) -> Result<u64, Error> {
        let set = |now| self.state().set_rate(now, rate, self.shape).map(|()| now);
        on_time(now, set, |busy| matches!(busy, Busy::Stale)).map_err(|busy| {
            let reason = match busy {
                Busy::Refused(err) => return err,
                Busy::Owned => {
                    "every spare parameter slot is owned by a live process stopped in the \
                     middle of a change; the rate is unchanged: retry once one of them runs \
                     again or ends"
                }
                // Still behind on fresh readings: an epoch no tank wrote.
                Busy::Stale => {
                    "its epoch is ahead of the host's monotonic clock; the rate is \
                     unchanged: remove the file to start anew"
                }
            };
            Error::SharedMemory {
                path: self.region.path().to_owned(),
                reason: reason.into(),
            }
        })
    }
}

/// Runs `op` at host time `now`, then again at fresh readings of the host
/// clock (a few times at most) while it answers that `now` is `stale`:
/// older than the epoch another process set meanwhile (this one was
/// descheduled between its reading and its compare-and-swap). A fresh
/// reading is never older than the one that process set its epoch from.
fn on_time<R, E>(
    mut now: u64,
    op: impl Fn(u64) -> Result<R, E>,
    stale: impl Fn(&E) -> bool,
) -> Result<R, E> {
    let mut tries = 0;
    loop {
        match op(now) {
            Err(e) if stale(&e) && tries < MOVES => {
                tries += 1;
                now = now.max(crate::shm::host_now_ns());
            }
            answer => return answer,
        }
    }
}

/// One reading of the word with the slot it names.
#[derive(Debug, Clone, Copy)]
struct View {
    word: u64,
    paused: bool,
    generation: u64,
    value: u64,
    epoch: u64,
    params: Params,
}

impl View {
    /// Whether the slot's scale, interval and tolerance are those of its
    /// rate, for a tank of `shape` (a reader checks before it grants).
    #[inline]
    fn sane(&self, shape: Shape) -> bool {
        let p = &self.params;
        p.s != 0
            && p.t != 0
            && p.s < SCALE_LIMIT
            && u128::from(p.s) * u128::from(p.per_ns) == u128::from(p.t) * u128::from(p.max_n)
            && p.tol == shape.tol(p.max_n, p.t)
    }

    /// The tolerance and interval, as the arithmetic of `gcra.rs` takes
    /// them in `i128`.
    fn gcra(&self) -> (i128, i128) {
        let tol = match self.params.tol {
            u64::MAX => i128::NO_CAP,
            tol => i128::from(tol),
        };
        (tol, i128::from(self.params.t))
    }

    /// The bucket's most fuel, in ticks.
    fn full(&self) -> u64 {
        self.params.tol.saturating_add(self.params.t)
    }

    /// Paused: the room frozen in the word, in ticks (negative while turns
    /// scheduled before the pause are still to come).
    fn room(&self) -> i128 {
        i128::from(self.value) - i128::from(BIAS)
    }
}

/// The paused rooms a word holds, in ticks: from the most debt a pause can
/// freeze (turns scheduled `AHEAD` on) up to a full bucket (an `Unbounded`
/// bank up to `SPAN_LIMIT`).
fn rooms(full: u64) -> std::ops::RangeInclusive<i128> {
    -i128::from(AHEAD + SPAN_LIMIT)..=i128::from(full.min(SPAN_LIMIT))
}

/// The word's value for a paused room of `room` ticks, within [`rooms`].
fn paused_value(room: i128, full: u64) -> u64 {
    let rooms = rooms(full);
    (room.clamp(*rooms.start(), *rooms.end()) + i128::from(BIAS)) as u64
}

/// What `take` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Took {
    /// Taken; the word as the take left it (its stamp).
    Taken(u64),
    Empty,
}

/// What `reserve` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Turn {
    /// Taken now; the word as the take left it (its stamp).
    Now(u64),
    /// Scheduled: the fuel is this waiter's at host time `due`; the word as
    /// the reservation left it.
    At { word: u64, due: u64 },
    /// It would be due after the deadline: nothing reserved.
    Late,
    /// Paused, beyond `AHEAD`, or a state that refuses: nothing reserved.
    Refused,
}

/// Why `set_rate` did not change the rate.
#[derive(Debug)]
pub(crate) enum Busy {
    /// The rate does not fit the word.
    Refused(Error),
    /// Live processes own every spare slot.
    Owned,
    /// `now` is [`Stale`].
    Stale,
}

/// A reading of the clock older than the epoch of the slot the word names:
/// another process set that epoch from a later reading since this one was
/// taken. Nothing was done; a fresh reading is not stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stale;

impl HostState {
    /// A new tank's state at host time `now`.
    pub(crate) fn init(
        &self,
        rate: Rate,
        hardcap: Hardcap,
        burst: Option<u64>,
        initial: u64,
        now: u64,
    ) {
        let now = file_time(now);
        let params = Params::of(rate, hardcap, burst);
        // The epoch a whole span (and `initial` fuel) back, so that the
        // first `tat` is not below tick 0.
        let back = initial.saturating_mul(params.t).div_ceil(params.s.max(1));
        let back = params.span_ns().max(back).saturating_add(1);
        let epoch = now.saturating_sub(back);
        params.write(&self.slots[0], epoch);
        let now_t = (now - epoch) * params.s;
        let tat = (now_t + params.t).saturating_sub(initial.saturating_mul(params.t));
        self.hardcap.store(hardcap_code(hardcap), Ordering::Relaxed);
        self.burst.store(burst.unwrap_or(0), Ordering::Relaxed);
        self.word.store(tat.min(VALUE), Ordering::Release);
    }

    /// Checks an attached state at host time `now` against what this
    /// process asks for (`Mismatch`), and every field a reader relies on
    /// against what a tank ever writes (`Corrupt`).
    pub(crate) fn check(&self, rate: Rate, shape: Shape, now: u64) -> Result<(), Bad> {
        let now = file_time(now);
        let found = self.hardcap.load(Ordering::Relaxed);
        if found != hardcap_code(shape.hardcap) {
            let name = match found {
                1 => "Limit",
                2 => "One",
                3 => "Unbounded",
                4 => "Window",
                _ => "none",
            };
            return Err(Bad::Mismatch(
                "hardcap",
                name.into(),
                format!("{:?}", shape.hardcap),
            ));
        }
        let found = self.burst.load(Ordering::Relaxed);
        if found != shape.burst.unwrap_or(0) {
            let burst = |burst| match burst {
                0 => "none".to_owned(),
                burst => burst.to_string(),
            };
            return Err(Bad::Mismatch(
                "burst",
                burst(found),
                burst(shape.burst.unwrap_or(0)),
            ));
        }
        let v = self.settled();
        let p = &v.params;
        if p.max_n != rate.max_n() || p.per_ns != rate.per_ns() {
            let found = Rate::new(p.max_n, std::time::Duration::from_nanos(p.per_ns)).map_or_else(
                |_| format!("{} per {} ns", p.max_n, p.per_ns),
                |r| r.to_string(),
            );
            return Err(Bad::Mismatch("rate", found, rate.to_string()));
        }
        let asked = Params::of(rate, shape.hardcap, shape.burst);
        if p.s != asked.s {
            return Err(Bad::Corrupt(format!(
                "its tick scale is {} ticks a ns, and {rate} counts {} a ns",
                p.s, asked.s
            )));
        }
        if p.t != asked.t {
            return Err(Bad::Corrupt(format!(
                "its interval is {} ticks, and {rate} at {} ticks a ns has {}",
                p.t, asked.s, asked.t
            )));
        }
        if p.tol != asked.tol {
            let capacity = |tol: u64| match tol {
                u64::MAX => "no cap".to_owned(),
                tol => format!("{}", tol / p.t + 1),
            };
            return Err(Bad::Mismatch(
                "capacity",
                capacity(p.tol),
                capacity(asked.tol),
            ));
        }
        if v.epoch > now.saturating_add(CLOCK_SLACK_NS) {
            return Err(Bad::Corrupt(format!(
                "its epoch is {} ns ahead of the host's monotonic clock, and it may be at \
                 most {CLOCK_SLACK_NS} ns ahead",
                v.epoch - now
            )));
        }
        // What a take, refund, pause or rate change leaves: paused, at most
        // a full bucket; running, the next fuel due within one interval of
        // the present (of the latest clock reading of any process: within
        // the slack of this one's).
        let rooms = rooms(v.full());
        if v.paused && !rooms.contains(&v.room()) {
            return Err(Bad::Corrupt(format!(
                "it holds {} ticks of fuel, paused, and holds from {} (turns scheduled) up to \
                 its capacity, {} ticks",
                v.room(),
                rooms.start(),
                rooms.end()
            )));
        }
        let now_t = u128::from(now.saturating_sub(v.epoch)) * u128::from(p.s);
        let ahead =
            u128::from(p.t) + u128::from(AHEAD) + u128::from(CLOCK_SLACK_NS) * u128::from(p.s);
        if !v.paused && u128::from(v.value) > now_t + ahead {
            return Err(Bad::Corrupt(format!(
                "its next fuel is due {} ticks from now, and at most {} ticks (one interval, \
                 and the turns scheduled) ahead",
                u128::from(v.value) - now_t,
                u128::from(p.t) + u128::from(AHEAD)
            )));
        }
        Ok(())
    }

    #[inline]
    fn view(&self) -> View {
        let word = self.word.load(Ordering::Acquire);
        let slot = &self.slots[((word >> SLOT_SHIFT) & SLOT_MASK) as usize];
        let view = View {
            word,
            paused: word & PAUSED != 0,
            generation: (word >> GEN_SHIFT) & GEN_MASK,
            value: word & VALUE,
            epoch: slot.epoch.load(Ordering::Relaxed),
            params: Params {
                max_n: slot.max_n.load(Ordering::Relaxed),
                per_ns: slot.per_ns.load(Ordering::Relaxed),
                s: slot.s.load(Ordering::Relaxed),
                t: slot.t.load(Ordering::Relaxed),
                tol: slot.tol.load(Ordering::Relaxed),
            },
        };
        // Pairs with the fence of `Params::write`: if the loads above saw a
        // writer's stores, every later load (or compare-and-swap) of the
        // word sees that it moved on from `word`.
        fence(Ordering::Acquire);
        view
    }

    /// Whether the word is still the one `view` read: then the slot read
    /// belonged to it.
    fn unchanged(&self, view: &View) -> bool {
        self.word.load(Ordering::Relaxed) == view.word
    }

    /// Whether the slot `view` read still belongs to the word: no change
    /// (nor resume) moved the word to another generation since (takes may
    /// have changed it).
    fn same_slot(&self, view: &View) -> bool {
        let generation = !VALUE & !PAUSED;
        (self.word.load(Ordering::Relaxed) ^ view.word) & generation == 0
    }

    /// A view whose slot belonged to its word, if one comes within a few
    /// tries (else the last: a reader then refuses if its slot is torn).
    fn settled(&self) -> View {
        let mut v = self.view();
        for _ in 0..3 {
            if self.same_slot(&v) {
                break;
            }
            v = self.view();
        }
        v
    }

    /// Takes `n ≥ 1` fuel at host time `now`.
    #[inline]
    pub(crate) fn take(&self, now: u64, n: u64, shape: Shape) -> Took {
        let now = file_time(now);
        let mut moves = 0;
        loop {
            let v = self.view();
            let t = v.params.t;
            let new = if !v.sane(shape) {
                None
            } else if v.paused {
                let need = i128::from(n) * i128::from(t);
                (v.room() >= need).then(|| v.value - need as u64)
            } else {
                match now_ticks(&v, now) {
                    Some(now_t) => ((u128::from(n) - 1) * u128::from(t) < u128::from(RANGE))
                        .then(|| gcra::take(v.value, now_t, v.params.tol, t, n))
                        .flatten()
                        .map(|(tat, _)| tat)
                        .filter(|&tat| tat <= VALUE),
                    // Beyond the word: move the epoch on (or another
                    // process does), a few times at most.
                    None if now >= v.epoch && moves < MOVES => {
                        moves += 1;
                        if self.rebase(now, shape) {
                            continue;
                        }
                        return Took::Empty;
                    }
                    // A clock behind the file's (not yet), or moved too often.
                    None => None,
                }
            };
            match new {
                Some(value) => {
                    let word = (v.word & !VALUE) | value;
                    if self
                        .word
                        .compare_exchange_weak(v.word, word, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                    {
                        return Took::Taken(word);
                    }
                }
                // Only a no from a word that did not change is an answer.
                None if self.unchanged(&v) => return Took::Empty,
                None => {}
            }
        }
    }

    /// Takes `n ≥ 1` fuel at host time `now`, or else schedules it: the
    /// fuel is then reserved in the word (its `tat` moves on, beyond the
    /// present) and the caller's from host time `due` on. The word is thus
    /// the line of every process: turns are scheduled in the order of
    /// their compare-and-swaps, and a take (`has_fuel`) finds fuel only
    /// after every turn scheduled. `Late` (nothing reserved) if the turn
    /// would come after `until`.
    pub(crate) fn reserve(&self, now: u64, n: u64, until: Option<u64>, shape: Shape) -> Turn {
        let (now, until) = (file_time(now), until.map(file_time));
        let mut moves = 0;
        loop {
            let v = self.view();
            let answer = if !v.sane(shape) || v.paused {
                Err(Turn::Refused)
            } else {
                match now_ticks(&v, now) {
                    Some(now_t) => schedule(&v, now_t, n, until),
                    None if now >= v.epoch && moves < MOVES => {
                        moves += 1;
                        if self.rebase(now, shape) {
                            continue;
                        }
                        return Turn::Refused;
                    }
                    None => Err(Turn::Refused),
                }
            };
            match answer {
                Ok((value, due)) => {
                    let word = (v.word & !VALUE) | value;
                    if self
                        .word
                        .compare_exchange_weak(v.word, word, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                    {
                        return match due {
                            Some(due) => Turn::At {
                                word,
                                due: host_time(due),
                            },
                            None => Turn::Now(word),
                        };
                    }
                }
                // Only a no from a word that did not change is an answer.
                Err(no) if self.unchanged(&v) => return no,
                Err(_) => {}
            }
        }
    }

    /// Gives back `n` fuel granted with `stamp` (the word as that take left
    /// it), if nothing changed the bucket since; else it is spent.
    pub(crate) fn give_back(&self, n: u64, stamp: u64, shape: Shape) {
        let v = self.view();
        if v.word != stamp || !v.sane(shape) {
            return;
        }
        let span = n.saturating_mul(v.params.t);
        let value = if v.paused {
            paused_value(v.room() + i128::from(span), v.full())
        } else {
            v.value.saturating_sub(span)
        };
        let _ = self.word.compare_exchange(
            v.word,
            (v.word & !VALUE) | value,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    /// The fuel in the bucket at `now` (none if the state is corrupt).
    pub(crate) fn level(&self, now: u64, shape: Shape) -> u64 {
        let now = file_time(now);
        let v = self.settled();
        if !v.sane(shape) || !self.same_slot(&v) {
            return 0;
        }
        let t = v.params.t;
        let cap = v.full() / t;
        if v.paused {
            return (v.room().max(0) as u64 / t).min(cap);
        }
        if now < v.epoch {
            return 0; // a take refuses too
        }
        let now_t = i128::from(now - v.epoch) * i128::from(v.params.s);
        let (tol, t) = v.gcra();
        gcra::level(i128::from(v.value), now_t, tol, t).min(cap)
    }

    /// When `n` fuel will be there at this rate, in host ns; `u64::MAX`
    /// while paused, if the state is corrupt, or if never within the clock.
    pub(crate) fn due(&self, now: u64, n: u128, shape: Shape) -> u64 {
        let now = file_time(now);
        let v = self.settled();
        if v.paused || !v.sane(shape) || !self.same_slot(&v) {
            return u64::MAX;
        }
        // (Before the epoch, a take refuses: due from the epoch on.)
        let now_t = i128::from(now.saturating_sub(v.epoch)) * i128::from(v.params.s);
        let (tol, t) = v.gcra();
        let (due_t, _) = gcra::due(i128::from(v.value), now_t, tol, t, n);
        if due_t <= now_t && now >= v.epoch {
            return host_time(now);
        }
        let ns = gcra::ns_ceil(due_t, v.params.s);
        host_time(u64::try_from(i128::from(v.epoch).saturating_add(ns)).unwrap_or(u64::MAX))
    }

    /// The rate now (another process may have changed it).
    pub(crate) fn rate(&self) -> Option<Rate> {
        let v = self.settled();
        let p = &v.params;
        let rate = Rate::new(p.max_n, std::time::Duration::from_nanos(p.per_ns)).ok()?;
        self.same_slot(&v).then_some(rate)
    }

    pub(crate) fn is_paused(&self) -> bool {
        self.word.load(Ordering::Acquire) & PAUSED != 0
    }

    /// Stops the refill for every process.
    pub(crate) fn pause(&self, now: u64, shape: Shape) -> Result<(), Stale> {
        let now = file_time(now);
        loop {
            let v = self.view();
            if v.paused || !v.sane(shape) {
                return Ok(());
            }
            if now < v.epoch {
                return Err(Stale);
            }
            let now_t = i128::from(now - v.epoch) * i128::from(v.params.s);
            let (tol, t) = v.gcra();
            // Negative while turns are scheduled: they keep their fuel, and
            // resuming carries the debt on.
            let room = gcra::room(i128::from(v.value), now_t, tol, t);
            let word = PAUSED | (v.word & !VALUE & !PAUSED) | paused_value(room, v.full());
            if self
                .word
                .compare_exchange(v.word, word, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return Ok(());
            }
        }
    }

    /// Restarts the refill for every process, from what the bucket held.
    pub(crate) fn resume(&self, now: u64, shape: Shape) -> Result<(), Stale> {
        let now = file_time(now);
        let mut moves = 0;
        loop {
            let v = self.view();
            if !v.paused || !v.sane(shape) {
                return Ok(());
            }
            let now_t = match now_ticks(&v, now) {
                Some(now_t) => now_t,
                None if now < v.epoch => return Err(Stale),
                None if moves < MOVES => {
                    moves += 1;
                    if self.rebase(now, shape) {
                        continue;
                    }
                    return Ok(());
                }
                None => return Ok(()),
            };
            let tat = gcra::resume(v.room(), i128::from(now_t), i128::from(v.params.t)).max(0);
            let word = next_generation(&v) | (tat as u64).min(VALUE);
            if self
                .word
                .compare_exchange(v.word, word, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return Ok(());
            }
        }
    }

    /// Changes the rate for every process, keeping the fuel (and its
    /// fraction) and capping it to the new capacity, as `Gcra::set_rate`.
    /// `Err` if the new rate does not fit a shared word, or if live
    /// processes owned every spare slot for a while.
    pub(crate) fn set_rate(&self, now: u64, rate: Rate, shape: Shape) -> Result<(), Busy> {
        let now = file_time(now);
        let params = Params::of(rate, shape.hardcap, shape.burst);
        if !params.fits() {
            return Err(Busy::Refused(params.too_fine()));
        }
        for _ in 0..SET_RATE_TRIES {
            match self.change(now, &params, false) {
                Changed::Done => return Ok(()),
                Changed::Stale => return Err(Busy::Stale),
                Changed::Owned => {}
            }
            // Each owner is mid-change, or stopped there: look again soon.
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        Err(Busy::Owned)
    }

    /// Moves the epoch on once the present outgrows the word (if no other
    /// process did meanwhile): `false` if it could not (live processes own
    /// every spare slot, or the state is corrupt).
    fn rebase(&self, now: u64, shape: Shape) -> bool {
        let v = self.view();
        v.sane(shape) && self.same_slot(&v) && self.change(now, &v.params, true) == Changed::Done
    }

    /// Writes `params` to a spare slot, with the epoch a span before `now`,
    /// and moves the word to it, converting its value (the fuel, and its
    /// fraction, kept; capped to the new capacity). With `moving`, only
    /// while the present is beyond the word under the same parameters
    /// (the epoch's move; done, or made needless by another change,
    /// otherwise). `Owned` if live processes own every spare slot; `Stale`
    /// if `now` is (and not `moving`): converting the word at a time before
    /// its epoch would lose the turns scheduled and the fuel.
    fn change(&self, now: u64, params: &Params, moving: bool) -> Changed {
        let Some(owned) = self.own_spare() else {
            return Changed::Owned;
        };
        let epoch = now.saturating_sub(params.span_ns().saturating_add(1));
        params.write(owned.slot, epoch);
        let now_t_new = u128::from(now - epoch) * u128::from(params.s);
        loop {
            let v = self.view();
            if moving && (v.params != *params || now < v.epoch || now_ticks(&v, now).is_some()) {
                return Changed::Done;
            }
            if now < v.epoch {
                return Changed::Stale;
            }
            let value = convert(&v, now, params, now_t_new);
            let generation = (v.generation + 1) & GEN_MASK;
            let word = (v.word & PAUSED)
                | (generation << GEN_SHIFT)
                | ((owned.index as u64) << SLOT_SHIFT)
                | value;
            if self
                .word
                .compare_exchange(v.word, word, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return Changed::Done;
            }
        }
    }

    /// Owns a slot the word does not name, to write a change in: one no
    /// process owns, or whose owner is gone. `None` if live processes own
    /// every spare one (each mid-change, or stopped there).
    fn own_spare(&self) -> Option<Owned<'_>> {
        let me = owner_token();
        let named = || ((self.word.load(Ordering::Acquire) >> SLOT_SHIFT) & SLOT_MASK) as usize;
        for (index, slot) in self.slots.iter().enumerate() {
            if index == named() {
                continue;
            }
            let owner = slot.owner.load(Ordering::Acquire);
            if owner != 0 && process_alive((owner >> 32) as u32) {
                continue;
            }
            // Acquire: after the last owner's release, which came after
            // its move of the word (if it moved it to this slot).
            if slot
                .owner
                .compare_exchange(owner, me, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                continue;
            }
            let owned = Owned { slot, index, me };
            // Only an owner moves the word to its slot: one the word does
            // not name now stays so until this process moves it there.
            if named() != index {
                return Some(owned);
            }
        }
        None
    }
}

/// What [`HostState::change`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Changed {
    Done,
    Owned,
    Stale,
}

/// The word's bits but its value and pause, in the next generation, same
/// slot: a resume moves the generation on, so that a grant's stamp (the
/// word as its take left it) never names a word that came back to the same
/// value through a resume (the bucket may have run into its cap since, and
/// a pause freezes a full bucket at the same room each time: giving the
/// grant back then would mint it).
fn next_generation(v: &View) -> u64 {
    let generation = (v.generation + 1) & GEN_MASK;
    (v.word & !VALUE & !PAUSED & !(GEN_MASK << GEN_SHIFT)) | (generation << GEN_SHIFT)
}

/// A slot owned to write a change in, let go when dropped.
struct Owned<'a> {
    slot: &'a Slot,
    index: usize,
    me: u64,
}

impl Drop for Owned<'_> {
    fn drop(&mut self) {
        // Release: the next owner sees this one's move of the word.
        let _ = self
            .slot
            .owner
            .compare_exchange(self.me, 0, Ordering::Release, Ordering::Relaxed);
    }
}

/// This process's mark for a slot it owns: its pid (whether it is alive
/// says whether the slot may be taken over), and a count, never 0.
fn owner_token() -> u64 {
    static COUNT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 0xffff_ffff + 1;
    (u64::from(process_id()) << 32) | n
}

/// The word's value after a change to `params` (epoch `now_t_new` ticks
/// before `now`) from `v`: the fuel and its fraction kept, capped to the
/// new capacity. From a corrupt state, an empty bucket.
fn convert(v: &View, now: u64, params: &Params, now_t_new: u128) -> u64 {
    let t_old = u128::from(v.params.t);
    let sane = v.params.s != 0 && t_old != 0 && now >= v.epoch;
    if v.paused {
        // The room, in fuel: the same fraction of the new interval (rounded
        // down: a debt of scheduled turns rounded up).
        let room = match sane {
            true => -gcra::convert(-v.room(), v.params.t, params.t),
            false => 0,
        };
        return paused_value(room, params.tol.saturating_add(params.t));
    }
    let now_t_new = now_t_new as i128;
    if !sane {
        return (now_t_new + i128::from(params.t)).min(i128::from(VALUE)) as u64;
    }
    let now_t = i128::from(now - v.epoch).saturating_mul(i128::from(v.params.s));
    let (tol, _) = v.gcra();
    // Distance from now in fuel, rounded towards later. (Beyond the word's
    // range in fuel, it is floored below anyway.)
    let offset = gcra::settle(i128::from(v.value), now_t, tol).saturating_sub(now_t);
    let offset = gcra::convert(offset, v.params.t, params.t);
    let floor = now_t_new - i128::from(params.tol).min(now_t_new);
    (now_t_new + offset).max(floor).clamp(0, i128::from(VALUE)) as u64
}

/// The word's value after `n` fuel taken or scheduled at `now_t` (ticks of
/// `v`'s slot), and the host time it is due at if later than now; `Err`
/// (`Late` or `Refused`) if it cannot be.
fn schedule(v: &View, now_t: u64, n: u64, until: Option<u64>) -> Result<(u64, Option<u64>), Turn> {
    let (tol, t) = v.gcra();
    let now_t = i128::from(now_t);
    let (last, value) = gcra::due(i128::from(v.value), now_t, tol, t, u128::from(n));
    if last <= now_t {
        return u64::try_from(value)
            .ok()
            .filter(|&value| value <= VALUE)
            .map(|value| (value, None))
            .ok_or(Turn::Refused);
    }
    if last - now_t > i128::from(AHEAD) || value > i128::from(VALUE) {
        return Err(Turn::Refused);
    }
    let due = i128::from(v.epoch) + gcra::ns_ceil(last, v.params.s);
    let due = u64::try_from(due).map_err(|_| Turn::Refused)?;
    if until.is_some_and(|until| due > until) {
        return Err(Turn::Late);
    }
    Ok((value as u64, Some(due)))
}

/// Host time `now` as the file counts it (see [`BOOT_BIAS`]).
#[inline(always)]
fn file_time(now: u64) -> u64 {
    now.saturating_add(BOOT_BIAS)
}

/// A time in the file's count as host time (`u64::MAX`, never, stays).
fn host_time(at: u64) -> u64 {
    match at {
        u64::MAX => u64::MAX,
        at => at.saturating_sub(BOOT_BIAS),
    }
}

/// `now` in ticks of `v`'s slot, if within the word's range.
#[inline]
fn now_ticks(v: &View, now: u64) -> Option<u64> {
    let rel = now.checked_sub(v.epoch)?;
    let now_t = u128::from(rel) * u128::from(v.params.s);
    (now_t < u128::from(RANGE)).then_some(now_t as u64)
}

fn hardcap_code(hardcap: Hardcap) -> u64 {
    match hardcap {
        Hardcap::Limit => 1,
        Hardcap::One => 2,
        Hardcap::Unbounded => 3,
        Hardcap::Window => 4,
    }
}

/// A slot's parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Params {
    max_n: u64,
    per_ns: u64,
    s: u64,
    t: u64,
    tol: u64,
}

impl Params {
    pub(crate) fn of(rate: Rate, hardcap: Hardcap, burst: Option<u64>) -> Params {
        let (s, t) = rate.ticks();
        Params {
            max_n: rate.max_n(),
            per_ns: rate.per_ns(),
            s,
            t,
            tol: Shape::new(hardcap, burst).tol(rate.max_n(), t),
        }
    }

    /// Whether a bucket of these parameters fits the word.
    pub(crate) fn fits(&self) -> bool {
        let span = match self.tol {
            u64::MAX => u128::from(self.t),
            tol => u128::from(tol) + u128::from(self.t),
        };
        span < u128::from(SPAN_LIMIT) && self.s < SCALE_LIMIT
    }

    pub(crate) fn too_fine(&self) -> Error {
        Error::Unsupported {
            what: "this rate in shared memory (its bucket spans more than 2^45 ticks of \
                   1/(max_n / gcd(max_n, per)) ns)",
            accepted: "the period, times max_n / gcd(max_n, per_ns), must be below 2^45 ns \
                       (with a whole number of ns per grant, periods up to 9 hours)",
        }
    }

    /// The bucket's span, in ns (rounded up): how far before the present
    /// an epoch must be for the word to hold every state of the bucket
    /// (an `Unbounded` bank up to `SPAN_LIMIT` ticks).
    fn span_ns(&self) -> u64 {
        let span = match self.tol {
            u64::MAX => SPAN_LIMIT,
            tol => tol.saturating_add(self.t),
        };
        span.div_ceil(self.s.max(1))
    }

    /// Writes a slot the word does not name (owned by this process).
    fn write(&self, slot: &Slot, epoch: u64) {
        // Pairs with the fence of `HostState::view`: a reader that sees any
        // of these stores sees the word moved on from the one it read.
        fence(Ordering::Release);
        slot.epoch.store(epoch, Ordering::Relaxed);
        slot.max_n.store(self.max_n, Ordering::Relaxed);
        slot.per_ns.store(self.per_ns, Ordering::Relaxed);
        slot.s.store(self.s, Ordering::Relaxed);
        slot.t.store(self.t, Ordering::Relaxed);
        slot.tol.store(self.tol, Ordering::Relaxed);
    }
}

#[cfg(unix)]
fn process_id() -> u32 {
    std::process::id()
}

#[cfg(not(unix))]
fn process_id() -> u32 {
    0
}

/// Whether process `pid` exists (a zombie counts as gone only once
/// reaped: until then its slot stays owned, and the others use another).
#[cfg(all(unix, not(fueltank_loom)))]
fn process_alive(pid: u32) -> bool {
    match rustix::process::Pid::from_raw(pid as i32) {
        Some(pid) => !matches!(
            rustix::process::test_kill_process(pid),
            Err(rustix::io::Errno::SRCH)
        ),
        None => false,
    }
}

#[cfg(not(all(unix, not(fueltank_loom))))]
fn process_alive(_pid: u32) -> bool {
    true
}

#[cfg(test)]
pub(crate) fn new_state() -> Box<HostState> {
    use crate::sync::AtomicU64 as A;
    let slot = || Slot {
        epoch: A::new(0),
        max_n: A::new(0),
        per_ns: A::new(0),
        s: A::new(0),
        t: A::new(0),
        tol: A::new(0),
        owner: A::new(0),
        _reserved: A::new(0),
    };
    Box::new(HostState {
        word: A::new(0),
        hardcap: A::new(0),
        burst: A::new(0),
        _reserved: [(); 5].map(|()| A::new(0)),
        slots: [(); SLOTS].map(|()| slot()),
    })
}

#[cfg(all(test, not(fueltank_loom)))]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;
    const LIMIT: Shape = Shape {
        hardcap: Hardcap::Limit,
        burst: None,
    };

    fn state(rate: &str, hardcap: Hardcap, initial: u64, now: u64) -> Box<HostState> {
        let state = new_state();
        state.init(rate.parse().unwrap(), hardcap, None, initial, now);
        state
    }

    #[test]
    fn takes_refill_and_cap_like_the_in_process_bucket() {
        let s = state("4/s", Hardcap::Limit, 1, 10 * SEC);
        assert!(matches!(s.take(10 * SEC, 1, LIMIT), Took::Taken(_)));
        assert_eq!(s.take(10 * SEC, 1, LIMIT), Took::Empty);
        assert_eq!(s.due(10 * SEC, 1, LIMIT), 10 * SEC + SEC / 4);
        assert_eq!(s.level(20 * SEC, LIMIT), 4);
        assert!(matches!(s.take(20 * SEC, 4, LIMIT), Took::Taken(_)));
        assert_eq!(s.take(20 * SEC, 1, LIMIT), Took::Empty);
    }

    #[test]
    fn pause_freezes_what_the_bucket_held() {
        let s = state("10/s", Hardcap::Limit, 0, SEC);
        s.pause(SEC + SEC / 4, LIMIT).unwrap(); // 2.5 fuel accrued
        assert_eq!(s.level(100 * SEC, LIMIT), 2);
        assert!(matches!(s.take(100 * SEC, 2, LIMIT), Took::Taken(_)));
        assert_eq!(s.take(100 * SEC, 1, LIMIT), Took::Empty);
        s.resume(100 * SEC, LIMIT).unwrap();
        // The half fuel left carries on: the next is due in 50 ms.
        assert_eq!(s.due(100 * SEC, 1, LIMIT), 100 * SEC + SEC / 20);
    }

    #[test]
    fn refunds_only_while_nothing_changed() {
        let s = state("10/s", Hardcap::Limit, 2, SEC);
        let Took::Taken(stamp) = s.take(SEC, 1, LIMIT) else {
            panic!()
        };
        s.give_back(1, stamp, LIMIT);
        assert_eq!(s.level(SEC, LIMIT), 2);
        let Took::Taken(stamp) = s.take(SEC, 1, LIMIT) else {
            panic!()
        };
        assert!(matches!(s.take(SEC, 1, LIMIT), Took::Taken(_)));
        s.give_back(1, stamp, LIMIT); // someone took since: spent
        assert_eq!(s.level(SEC, LIMIT), 0);
    }

    #[test]
    fn the_epoch_moves_on_and_nothing_drifts() {
        // One tick a ns: the word's range is 2^47 ns (39 hours).
        let s = state("1/s", Hardcap::Limit, 0, SEC);
        let mut now = SEC;
        let mut grants = 0u64;
        // Four days, one take a second.
        for _ in 0..4 * 86_400 {
            now += SEC;
            if let Took::Taken(_) = s.take(now, 1, LIMIT) {
                grants += 1;
            }
        }
        assert_eq!(grants, 4 * 86_400);
    }

    #[test]
    fn set_rate_keeps_the_level_for_everyone() {
        let s = state("10/s", Hardcap::Limit, 10, SEC);
        s.set_rate(SEC, "1000/s".parse().unwrap(), LIMIT).unwrap();
        assert_eq!(s.level(SEC, LIMIT), 10);
        assert_eq!(s.rate(), Some("1000/s".parse().unwrap()));
        s.set_rate(SEC, "2/s".parse().unwrap(), LIMIT).unwrap();
        assert_eq!(s.level(SEC, LIMIT), 2);
        let check = |rate: &str, hardcap, burst| {
            s.check(rate.parse().unwrap(), Shape::new(hardcap, burst), SEC)
        };
        assert!(check("2/s", Hardcap::Limit, None).is_ok());
        assert!(check("3/s", Hardcap::Limit, None).is_err());
        assert!(check("2/s", Hardcap::One, None).is_err());
        assert!(check("2/s", Hardcap::Limit, Some(5)).is_err());
        // A burst of max_n: the same capacity at this rate, not at others.
        assert!(check("2/s", Hardcap::Limit, Some(2)).is_err());
    }

    /// An `Unbounded` bank outlives the epoch's moves and rate changes (up
    /// to 2^45 ticks), as in one process.
    #[test]
    fn an_unbounded_bank_is_kept() {
        let unbounded = Shape::new(Hardcap::Unbounded, None);
        let s = state("1000/s", Hardcap::Unbounded, 0, SEC);
        let now = 101 * SEC;
        assert_eq!(s.level(now, unbounded), 100_000);
        s.set_rate(now, "2000/s".parse().unwrap(), unbounded)
            .unwrap();
        assert_eq!(s.level(now, unbounded), 100_000);
        // 40 hours on: the epoch moved (2^47 ticks of 1 ns are 39 hours);
        // the bank is full: 2^45 ticks, 70_368_744 fuel of 500_000 ticks.
        let later = now + 40 * 3600 * SEC;
        assert!(matches!(s.take(later, 1, unbounded), Took::Taken(_)));
        let level = s.level(later, unbounded);
        let bank = SPAN_LIMIT / 500_000;
        assert!((bank - 1..=bank + 1).contains(&level), "{level}");
    }

    /// Turns are scheduled in the order asked, an interval apart, whoever
    /// asks (the word is the line of every process); a take (`has_fuel`)
    /// finds fuel only after every turn scheduled; a deadline too early
    /// reserves nothing.
    #[test]
    fn turns_are_scheduled_in_order_and_not_overtaken() {
        let s = state("10/s", Hardcap::Limit, 1, SEC);
        let iv = SEC / 10;
        assert!(matches!(s.reserve(SEC, 1, None, LIMIT), Turn::Now(_)));
        let dues: Vec<u64> = (0..3)
            .map(|_| match s.reserve(SEC, 1, None, LIMIT) {
                Turn::At { due, .. } => due,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(dues, [SEC + iv, SEC + 2 * iv, SEC + 3 * iv]);
        // Not before the last turn scheduled.
        assert_eq!(s.take(SEC + 3 * iv, 1, LIMIT), Took::Empty);
        assert_eq!(s.level(SEC + 3 * iv, LIMIT), 0);
        assert!(matches!(s.take(SEC + 4 * iv, 1, LIMIT), Took::Taken(_)));
        assert_eq!(
            s.reserve(SEC + 4 * iv, 2, Some(SEC + 5 * iv), LIMIT),
            Turn::Late
        );
        assert_eq!(
            s.due(SEC + 4 * iv, 1, LIMIT),
            SEC + 5 * iv,
            "nothing reserved"
        );
    }

    /// A pause with turns still to come freezes the debt: nothing refills
    /// it, and resuming carries it on (never minted); a turn given back
    /// returns if it was the last.
    #[test]
    fn a_pause_keeps_the_turns_scheduled() {
        let s = state("10/s", Hardcap::Limit, 0, SEC);
        let iv = SEC / 10;
        let Turn::At { word, due } = s.reserve(SEC, 2, None, LIMIT) else {
            panic!()
        };
        assert_eq!(due, SEC + 2 * iv);
        s.pause(SEC, LIMIT).unwrap();
        assert_eq!(s.level(100 * SEC, LIMIT), 0);
        assert_eq!(s.take(100 * SEC, 1, LIMIT), Took::Empty);
        assert_eq!(s.reserve(100 * SEC, 1, None, LIMIT), Turn::Refused);
        s.resume(100 * SEC, LIMIT).unwrap();
        // Two intervals of debt, then the fuel that accrues.
        assert_eq!(s.due(100 * SEC, 1, LIMIT), 100 * SEC + 3 * iv);
        // Given back while nothing changed since: the debt goes.
        let Turn::At { word, .. } = s.reserve(100 * SEC, 1, None, LIMIT) else {
            panic!("{word}")
        };
        s.give_back(1, word, LIMIT);
        assert_eq!(s.due(100 * SEC, 1, LIMIT), 100 * SEC + 3 * iv);
    }

    /// Another process owns the slots it would change the parameters in,
    /// stopped there: `pid` alive, never letting go.
    fn owned_by_a_stopped_process(s: &HostState, slots: usize) {
        let named = ((s.word.load(Ordering::Relaxed) >> SLOT_SHIFT) & SLOT_MASK) as usize;
        let stopped = (u64::from(process_id()) << 32) | 0xffff_ffff;
        for slot in (0..SLOTS).filter(|&i| i != named).take(slots) {
            s.slots[slot].owner.store(stopped, Ordering::Relaxed);
        }
    }

    /// A process stopped (or killed, unreaped) while it owned a slot for a
    /// change blocks no one, at any rate: the epoch's moves (every ~105 s at
    /// 997/s, ~1 s at 100003/s, 39 h at 1/s) go on in the other slots, and
    /// takes grant exactly the rate. Only with all three spare slots owned
    /// do takes refuse, and they still return.
    #[test]
    fn a_stopped_owner_blocks_no_move_of_the_epoch() {
        for (rate, per_s, step) in [
            ("997/s", 997, SEC),
            ("100003/s", 100_003, SEC / 1000),
            ("1/s", 1, SEC),
        ] {
            let s = state(rate, Hardcap::Limit, 0, SEC);
            owned_by_a_stopped_process(&s, 2);
            let start = SEC;
            let mut now = start;
            let mut grants = 0u64;
            // Past several moves of the epoch.
            let end = start + 4 * (RANGE / rate.parse::<Rate>().unwrap().ticks().0);
            while now < end {
                now += step;
                while let Took::Taken(_) = s.take(now, 1, LIMIT) {
                    grants += 1;
                }
            }
            let accrued = u128::from(now - start) * per_s / u128::from(SEC);
            assert_eq!(u128::from(grants), accrued, "{rate}");
            // All three owned: takes refuse (they need the epoch moved) and
            // return; `set_rate` says why.
            owned_by_a_stopped_process(&s, 3);
            let later = now + RANGE; // beyond the word, at any tick scale
            assert_eq!(s.take(later, 1, LIMIT), Took::Empty, "{rate}");
        }
    }

    /// `set_rate` with every spare slot owned by a live process fails, after
    /// a while, and changes nothing.
    #[test]
    fn set_rate_with_every_spare_slot_owned_fails() {
        let s = state("10/s", Hardcap::Limit, 10, SEC);
        owned_by_a_stopped_process(&s, 3);
        assert!(matches!(
            s.set_rate(SEC, "20/s".parse().unwrap(), LIMIT),
            Err(Busy::Owned)
        ));
        assert_eq!(s.rate(), Some("10/s".parse().unwrap()));
        assert_eq!(s.level(SEC, LIMIT), 10);
    }

    /// A slot owned by a process that is gone is taken over.
    #[test]
    fn a_dead_owner_s_slot_is_taken_over() {
        let s = state("997/s", Hardcap::Limit, 0, SEC);
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        for slot in &s.slots[1..] {
            slot.owner
                .store(u64::from(dead) << 32 | 1, Ordering::Relaxed);
        }
        s.set_rate(SEC, "998/s".parse().unwrap(), LIMIT).unwrap();
        assert_eq!(s.rate(), Some("998/s".parse().unwrap()));
    }

    /// A grant taken while paused is given back only while nothing changed
    /// since: not after a resume and a pause that happen to freeze the same
    /// room again (the bucket refilled to its cap meanwhile, so the fuel
    /// given back would be minted).
    #[test]
    fn a_paused_grant_is_not_given_back_after_another_pause() {
        let s = state("10/s", Hardcap::Limit, 10, SEC);
        s.pause(SEC, LIMIT).unwrap();
        let Took::Taken(stamp) = s.take(SEC, 1, LIMIT) else {
            panic!()
        };
        s.resume(SEC, LIMIT).unwrap();
        // Full again a second on; paused there, another takes one.
        s.pause(2 * SEC, LIMIT).unwrap();
        assert_eq!(s.level(2 * SEC, LIMIT), 10);
        assert!(matches!(s.take(2 * SEC, 1, LIMIT), Took::Taken(_)));
        s.give_back(1, stamp, LIMIT);
        assert_eq!(s.level(2 * SEC, LIMIT), 9, "fuel minted by a refund");
    }

    /// A process whose reading of the clock is older than the epoch another
    /// process just set (it was descheduled between its reading and its
    /// compare-and-swap) neither forgets the turns scheduled (their fuel
    /// granted twice) nor loses the fuel.
    #[test]
    fn a_rate_change_on_a_stale_clock_keeps_the_turns() {
        let ms = SEC / 1000;
        let s = state("1/ms", Hardcap::Limit, 0, 10 * SEC);
        for i in 1..=100 {
            let Turn::At { due, .. } = s.reserve(10 * SEC, 1, None, LIMIT) else {
                panic!()
            };
            assert_eq!(due, 10 * SEC + i * ms);
        }
        // Another process changes the rate at 10.005 s...
        s.set_rate(10 * SEC + 5 * ms, "2/2ms".parse().unwrap(), LIMIT)
            .unwrap();
        // ...and this one, on its reading of 10.001 s.
        let _ = s.set_rate(10 * SEC + ms, "1/ms".parse().unwrap(), LIMIT);
        assert_eq!(
            s.take(10 * SEC + 50 * ms, 1, LIMIT),
            Took::Empty,
            "the fuel of a turn scheduled granted again"
        );
        assert!(matches!(
            s.take(10 * SEC + 101 * ms, 1, LIMIT),
            Took::Taken(_)
        ));
    }

    /// A pause or resume on a reading of the clock older than the epoch
    /// another process just set is not dropped silently.
    #[test]
    fn pause_and_resume_on_a_stale_clock_say_so() {
        let ms = SEC / 1000;
        let s = state("1/ms", Hardcap::Limit, 0, 10 * SEC);
        s.set_rate(10 * SEC + 5 * ms, "2/2ms".parse().unwrap(), LIMIT)
            .unwrap();
        assert_eq!(s.pause(10 * SEC + ms, LIMIT), Err(Stale));
        assert!(!s.is_paused());
        s.pause(10 * SEC + 5 * ms, LIMIT).unwrap();
        s.set_rate(10 * SEC + 9 * ms, "1/ms".parse().unwrap(), LIMIT)
            .unwrap();
        assert_eq!(s.resume(10 * SEC + 6 * ms, LIMIT), Err(Stale));
        assert!(s.is_paused());
        s.resume(10 * SEC + 9 * ms, LIMIT).unwrap();
        assert!(!s.is_paused());
    }

    /// A pause, a resume or a rate change whose reading of the host clock
    /// was taken before another process changed the rate at a later one
    /// (this one descheduled between its reading and its compare-and-swap)
    /// is done all the same, not dropped.
    #[test]
    fn a_stale_reading_of_the_clock_still_pauses_and_resumes() {
        use std::time::Duration;
        let path = std::env::temp_dir().join(format!("fueltank-stale-{}.tank", process_id()));
        let shared = crate::SharedMemory::new(path.to_str().unwrap());
        let clock = crate::clock::ClockSource::Host;
        let ms = "1/ms".parse().unwrap();
        let bucket = HostBucket::open(&shared, ms, Hardcap::Limit, None, 1, &clock).unwrap();
        let host_now = crate::shm::host_now_ns;
        let stale = host_now();
        std::thread::sleep(Duration::from_millis(5));
        bucket
            .set_rate(host_now(), "2/2ms".parse().unwrap())
            .unwrap();
        bucket.pause(stale);
        let paused = bucket.state().is_paused();
        let stale = host_now();
        std::thread::sleep(Duration::from_millis(5));
        bucket.set_rate(host_now(), ms).unwrap();
        bucket.resume(stale);
        let resumed = !bucket.state().is_paused();
        drop(bucket);
        assert!(crate::shm::remove(&shared, crate::shm::Kind::Tank).unwrap());
        assert!(paused, "the pause was dropped");
        assert!(resumed, "the resume was dropped");
    }

    /// A bucket whose span is longer than the host has been up (its
    /// monotonic clock counts from the boot: a fresh VM, a CI runner)
    /// starts with the fuel asked for, and keeps it through a rate change.
    #[test]
    fn a_young_host_holds_a_whole_bucket() {
        // Up for a second.
        let s = state("10/h", Hardcap::Limit, 10, SEC);
        assert_eq!(s.level(SEC, LIMIT), 10, "initial(10)");
        s.set_rate(2 * SEC, "20/h".parse().unwrap(), LIMIT).unwrap();
        assert_eq!(s.level(2 * SEC, LIMIT), 10, "after set_rate");
        let unbounded = Shape::new(Hardcap::Unbounded, None);
        let s = state("1/s", Hardcap::Unbounded, 1000, SEC);
        assert_eq!(s.level(SEC, unbounded), 1000, "an Unbounded initial(1000)");
    }

    /// Any sequence of takes, turns, pauses, resumes, rate changes and
    /// refunds, over hours (epoch moves) and at several tick scales, under
    /// each hardcap: the fuel granted plus the fuel left, once every turn
    /// is due, never exceeds the initial fuel plus what accrued while
    /// running.
    mod model {
        use super::*;
        use proptest::prelude::*;

        const RATES: [&str; 6] = ["10/s", "1/ms", "3/s", "7/13ms", "999983/s", "2/2ms"];

        #[derive(Debug, Clone)]
        enum Op {
            Take { dt: u64, n: u64 },
            Reserve { dt: u64, n: u64 },
            Pause { dt: u64 },
            Resume { dt: u64 },
            SetRate { dt: u64, i: usize },
            GiveBack { dt: u64, i: usize },
            Leap,
        }

        fn op() -> impl Strategy<Value = Op> {
            let dt = prop_oneof![4 => 0..3_000_000u64, 1 => 0..300_000_000u64];
            prop_oneof![
                4 => (dt.clone(), 1..4u64).prop_map(|(dt, n)| Op::Take { dt, n }),
                3 => (dt.clone(), 1..4u64).prop_map(|(dt, n)| Op::Reserve { dt, n }),
                1 => dt.clone().prop_map(|dt| Op::Pause { dt }),
                1 => dt.clone().prop_map(|dt| Op::Resume { dt }),
                1 => (dt.clone(), 0..RATES.len()).prop_map(|(dt, i)| Op::SetRate { dt, i }),
                2 => (dt, 0..8usize).prop_map(|(dt, i)| Op::GiveBack { dt, i }),
                1 => Just(Op::Leap),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(1000))]
            #[test]
            fn granted_and_left_never_exceed_accrued(
                first in 0..RATES.len(),
                cap in 0..3usize,
                initial in 0..3u64,
                ops in proptest::collection::vec(op(), 1..80),
            ) {
                let hardcap = [Hardcap::Limit, Hardcap::One, Hardcap::Unbounded][cap];
                let shape = Shape::new(hardcap, None);
                let mut rate: Rate = RATES[first].parse().unwrap();
                let initial = match hardcap {
                    Hardcap::One => initial.min(1),
                    _ => initial.min(rate.max_n()),
                };
                if !Params::of(rate, hardcap, None).fits() {
                    return Ok(());
                }
                let mut now = 10 * SEC;
                let s = state(RATES[first], hardcap, initial, now);
                let mut accrued = 0f64;
                let mut granted: i128 = 0;
                let mut stamps: Vec<(u64, u64)> = Vec::new();
                let mut paused = false;
                let mut last_due = now;
                for op in ops {
                    let dt = match op {
                        Op::Take { dt, .. } | Op::Reserve { dt, .. } | Op::Pause { dt }
                        | Op::Resume { dt } | Op::SetRate { dt, .. } | Op::GiveBack { dt, .. } => dt,
                        Op::Leap => 50 * 3600 * SEC,
                    };
                    if !paused {
                        accrued += dt as f64 * rate.max_n() as f64 / rate.per_ns() as f64;
                    }
                    now += dt;
                    match op {
                        Op::Take { n, .. } => {
                            if let Took::Taken(w) = s.take(now, n, shape) {
                                granted += i128::from(n);
                                stamps.push((n, w));
                            }
                        }
                        Op::Reserve { n, .. } => match s.reserve(now, n, None, shape) {
                            Turn::Now(w) => { granted += i128::from(n); stamps.push((n, w)); }
                            Turn::At { word, due } => {
                                prop_assert!(due > now);
                                granted += i128::from(n);
                                stamps.push((n, word));
                                last_due = last_due.max(due);
                            }
                            _ => {}
                        },
                        Op::Pause { .. } => { s.pause(now, shape).unwrap(); paused = s.is_paused(); }
                        Op::Resume { .. } => { s.resume(now, shape).unwrap(); paused = s.is_paused(); }
                        Op::SetRate { i, .. } => {
                            let new: Rate = RATES[i].parse().unwrap();
                            if s.set_rate(now, new, shape).is_ok() { rate = new; }
                        }
                        Op::GiveBack { i, .. } => {
                            if i < stamps.len() {
                                let (n, w) = stamps.remove(i);
                                let before = s.word.load(Ordering::Relaxed);
                                s.give_back(n, w, shape);
                                if s.word.load(Ordering::Relaxed) != before {
                                    granted -= i128::from(n);
                                }
                            }
                        }
                        Op::Leap => {}
                    }
                    prop_assert_eq!(paused, s.is_paused());
                }
                // Run on until every turn is due, and a bucket more.
                if paused {
                    s.resume(now, shape).unwrap();
                }
                // (Past the debt of turns a pause carried on, too.)
                let end = last_due.max(now).max(s.due(now, 1, shape)) + rate.per_ns() + 1;
                accrued += (end - now) as f64 * rate.max_n() as f64 / rate.per_ns() as f64;
                let left = s.level(end, shape);
                let total = granted + i128::from(left);
                prop_assert!(
                    total as f64 <= initial as f64 + accrued + 1e-6,
                    "granted {} + left {} > initial {} + accrued {}", granted, left, initial, accrued
                );
            }
        }
    }

    /// A rebase whose arithmetic cannot move the epoch (a corrupt scale)
    /// refuses, and returns.
    #[test]
    fn a_corrupt_slot_refuses_and_returns() {
        let s = state("10/s", Hardcap::Limit, 10, SEC);
        s.slots[0].s.store(1 << 50, Ordering::Relaxed);
        assert_eq!(s.take(2 * SEC, 1, LIMIT), Took::Empty);
        assert_eq!(s.level(2 * SEC, LIMIT), 0);
        s.slots[0].s.store(1, Ordering::Relaxed);
        s.slots[0].t.store(1, Ordering::Relaxed);
        assert_eq!(s.take(2 * SEC, 1, LIMIT), Took::Empty);
        // A rate change repairs it.
        s.set_rate(2 * SEC, "10/s".parse().unwrap(), LIMIT).unwrap();
        s.slots[0].t.store(0, Ordering::Relaxed); // (no longer the word's)
        assert_eq!(s.level(3 * SEC, LIMIT), 10);
    }
}
/// The shared word under every interleaving: a take racing a rate change
/// (which writes the spare slot and moves the generation) or a pause never
/// computes from a half-written slot, and never grants beyond the bucket.
#[cfg(all(test, fueltank_loom))]
mod loom_tests {
    use super::*;
    use std::sync::Arc;

    const SEC: u64 = 1_000_000_000;
    const LIMIT: Shape = Shape {
        hardcap: Hardcap::Limit,
        burst: None,
    };

    fn full_bucket() -> Arc<HostState> {
        let state = new_state();
        state.init("2/s".parse().unwrap(), Hardcap::Limit, None, 2, 10 * SEC);
        Arc::from(state)
    }

    #[test]
    fn a_take_racing_set_rate_never_over_grants() {
        loom::model(|| {
            let state = full_bucket();
            let taker = state.clone();
            let take = loom::thread::spawn(move || taker.take(10 * SEC, 1, LIMIT));
            // Capacity 1 from now on: the two fuel become one.
            state
                .set_rate(10 * SEC, "1/s".parse().unwrap(), LIMIT)
                .unwrap();
            let took = matches!(take.join().unwrap(), Took::Taken(_));
            let left = state.level(10 * SEC, LIMIT);
            assert!(left <= 1, "over the new capacity: {left}");
            // Taken before the change: 1 left of 2, capped to 1. After: 0
            // of 1. Either way never more than the bucket held.
            assert!(u64::from(took) + left <= 2);
            if took {
                assert!(state.rate() == Some("1/s".parse().unwrap()));
            }
        });
    }

    /// Two rate changes at once (two processes): each owns its own spare
    /// slot, so neither writes the other's, and the slot the word ends on
    /// is whole — one of the two rates, with its own scale and capacity —
    /// whichever order the compare-and-swaps took. A take racing both
    /// never computes from a slot being written.
    #[test]
    fn two_rate_changes_never_mix_their_slots() {
        loom::model(|| {
            let state = full_bucket();
            let other = state.clone();
            let change = loom::thread::spawn(move || {
                other
                    .set_rate(10 * SEC, "1/s".parse().unwrap(), LIMIT)
                    .unwrap();
                u64::from(matches!(other.take(10 * SEC, 1, LIMIT), Took::Taken(_)))
            });
            state
                .set_rate(10 * SEC, "3/s".parse().unwrap(), LIMIT)
                .unwrap();
            let took = change.join().unwrap();
            let v = state.view();
            assert!(v.sane(LIMIT), "a mixed slot: {v:?}");
            let rate = state.rate().unwrap();
            let cap = rate.max_n();
            assert!(cap == 1 || cap == 3, "{rate}");
            assert!(took + state.level(10 * SEC, LIMIT) <= 2, "fuel minted");
        });
    }

    #[test]
    fn a_take_racing_pause_and_resume_sees_one_state() {
        loom::model(|| {
            let state = full_bucket();
            let taker = state.clone();
            let take = loom::thread::spawn(move || {
                u64::from(matches!(taker.take(10 * SEC, 1, LIMIT), Took::Taken(_)))
                    + u64::from(matches!(taker.take(10 * SEC, 1, LIMIT), Took::Taken(_)))
            });
            state.pause(10 * SEC, LIMIT).unwrap();
            state.resume(10 * SEC, LIMIT).unwrap();
            let took = take.join().unwrap();
            assert_eq!(
                took + state.level(10 * SEC, LIMIT),
                2,
                "fuel minted or lost"
            );
        });
    }

    /// A waiter scheduling its turn races a take and a pause: a turn and
    /// fuel taken at once never share one fuel, the turn is due no sooner
    /// than the fuel for it accrues, and a pause keeps its debt (never
    /// minted).
    #[test]
    fn a_turn_racing_a_take_and_a_pause_is_never_granted_twice() {
        loom::model(|| {
            // One fuel now, the next at 10.5 s.
            let state: Arc<HostState> = Arc::from({
                let state = new_state();
                state.init("2/s".parse().unwrap(), Hardcap::Limit, None, 1, 10 * SEC);
                state
            });
            let other = state.clone();
            let waiter = loom::thread::spawn(move || other.reserve(10 * SEC, 1, None, LIMIT));
            let took = matches!(state.take(10 * SEC, 1, LIMIT), Took::Taken(_));
            state.pause(10 * SEC, LIMIT).unwrap();
            state.resume(10 * SEC, LIMIT).unwrap();
            let turn = waiter.join().unwrap();
            let later = state.level(10 * SEC + SEC / 2, LIMIT);
            match turn {
                Turn::Now(_) => assert!(!took, "one fuel granted twice"),
                // The fuel of 10.5 s is the turn's.
                Turn::At { due, .. } => {
                    assert!(took);
                    assert_eq!(due, 10 * SEC + SEC / 2);
                    assert_eq!(later, 0, "the turn's fuel granted again");
                    return;
                }
                // Asked while paused: nothing scheduled.
                Turn::Refused => assert!(took),
                Turn::Late => panic!("no deadline"),
            }
            assert_eq!(later, 1, "minted or lost");
        });
    }
}
