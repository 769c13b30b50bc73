//! [`HostBucket`]: the bucket of a tank shared by the processes of a host,
//! in one atomic word of a shared file (see `shm/mod.rs` for the file).
//!
//! # The word
//!
//! ```text
//!   63       62 … 48      47 … 0
//! PAUSED   generation   tat, or (paused) the frozen room
//! ```
//!
//! Running, the word holds the `tat` of `bucket.rs`, in ticks since the
//! epoch of its parameter *slot*: one of two, picked by the generation's
//! parity, each holding an epoch and the rate's tick scale. A take is one
//! compare-and-swap of the word computed with the slot it names, as in
//! `word.rs`. Paused, the word holds how much the bucket held when it was
//! paused (`now − tat + T`, in ticks), frozen: takes spend it, nothing
//! refills it, and resuming turns it back into a `tat` against the
//! present. Both are one compare-and-swap, so every process sees the pause
//! at once, and a process killed at any point leaves the word whole.
//!
//! The two slots let the parameters change without a lock: a change (a
//! rate change, or moving the epoch on before ticks outgrow the word's 48
//! bits, every 2^46 ticks) writes the *other* slot, then moves the word to
//! the next generation in the compare-and-swap that converts its value. A
//! reader that read a slot being written was reading an old generation, so
//! its own compare-and-swap fails and it reads again. Only such changes take
//! a claim (one writer of the spare slot at a time); a claim whose holder
//! died, or held for over 10 s, is taken over, so a killed process never
//! blocks the others for long, and takes never wait for a claim at all.
//!
//! # Limits
//!
//! A bucket's whole span, `C·T` in ticks, must be below 2^45 (at one tick a
//! nanosecond, periods up to nine hours; finer tick scales, for counts with
//! large prime factors, shorten that). An `Unbounded` bank is kept up to
//! 2^45 ticks. Fuel given back returns only if no take changed the bucket
//! since it was granted (in any process): otherwise it is spent — never
//! minted, but sometimes lost, where an in-process tank would be exact.

use crate::sync::{AtomicU64, Ordering};

use super::bucket::gcra_take;
use crate::{Error, Hardcap, Rate};

const PAUSED: u64 = 1 << 63;
const GEN_SHIFT: u32 = 48;
const GEN_MASK: u64 = (1 << 15) - 1;
const VALUE: u64 = (1 << 48) - 1;
/// Ticks of the present at which the epoch moves on.
const RANGE: u64 = 1 << 47;
/// Largest `C·T` in ticks.
pub(crate) const SPAN_LIMIT: u64 = 1 << 45;
/// A claim held this long is taken over.
const CLAIM_TIMEOUT_S: u64 = 10;

/// The shared state: the word, the claim, and the two parameter slots.
#[repr(C, align(64))]
#[derive(Debug)]
pub(crate) struct HostState {
    word: AtomicU64,
    /// 0, or `pid << 32 | seconds` of the process changing the spare slot.
    claim: AtomicU64,
    /// The hardcap, as `Hardcap` discriminant + 1 (0: not a tank).
    hardcap: AtomicU64,
    _reserved: [AtomicU64; 5],
    slots: [Slot; 2],
}

#[repr(C, align(64))]
#[derive(Debug)]
struct Slot {
    /// Host ns at tick 0.
    epoch: AtomicU64,
    max_n: AtomicU64,
    per_ns: AtomicU64,
    /// Ticks per ns, and the interval in ticks.
    s: AtomicU64,
    t: AtomicU64,
    /// `(C − 1)·T`, or `u64::MAX` without a cap.
    tol: AtomicU64,
    _reserved: [AtomicU64; 2],
}

/// A tank's [`HostState`], in a shared file.
#[derive(Debug)]
pub(crate) struct HostBucket {
    memory: Memory,
}

#[derive(Debug)]
enum Memory {
    #[cfg(all(unix, not(fueltank_loom)))]
    Region(crate::shm::Region),
}

/// Where the state sits in the file: after the header.
#[cfg(all(unix, not(fueltank_loom)))]
const STATE_AT: usize = std::mem::size_of::<crate::shm::Header>();

// SAFETY: `#[repr(C)]`, atomics only (and arrays and structs of them).
#[cfg(all(unix, not(fueltank_loom)))]
unsafe impl crate::shm::Mapped for HostState {}

impl HostBucket {
    /// Creates or attaches to the shared tank at `path`.
    #[cfg(all(unix, not(fueltank_loom)))]
    pub(crate) fn open(
        path: &std::path::Path,
        rate: Rate,
        hardcap: Hardcap,
        burst: Option<u64>,
        initial: u64,
    ) -> Result<HostBucket, Error> {
        use crate::shm::{Header, Kind, Region};
        let len = STATE_AT + std::mem::size_of::<HostState>();
        let region = Region::open(
            path,
            len,
            |region| {
                let now = crate::shm::host_now_ns();
                region
                    .get::<HostState>(STATE_AT)
                    .init(rate, hardcap, burst, initial, now);
                region.get::<Header>(0).init(Kind::Tank, len);
            },
            |region| {
                region.get::<Header>(0).check(path, Kind::Tank, len)?;
                region
                    .get::<HostState>(STATE_AT)
                    .check(rate, hardcap, burst)
                    .map_err(|(what, found, asked)| Error::SharedMismatch {
                        path: path.to_owned(),
                        what,
                        found,
                        asked,
                    })
            },
        )?;
        Ok(HostBucket {
            memory: Memory::Region(region),
        })
    }

    pub(crate) fn state(&self) -> &HostState {
        match self.memory {
            #[cfg(all(unix, not(fueltank_loom)))]
            Memory::Region(ref region) => region.get::<HostState>(STATE_AT),
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
    max_n: u64,
    per_ns: u64,
    s: u64,
    t: u64,
    tol: u64,
}

/// What `take` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Took {
    /// Taken; the word as the take left it (its stamp).
    Taken(u64),
    Empty,
}

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
        self.word.store(tat.min(VALUE), Ordering::Release);
    }

    /// Checks an attached state against what this process asks for.
    pub(crate) fn check(
        &self,
        rate: Rate,
        hardcap: Hardcap,
        burst: Option<u64>,
    ) -> Result<(), (&'static str, String, String)> {
        let found = self.hardcap.load(Ordering::Relaxed);
        if found != hardcap_code(hardcap) {
            let name = match found {
                1 => "Limit",
                2 => "One",
                3 => "Unbounded",
                4 => "Window",
                _ => "none",
            };
            return Err(("hardcap", name.into(), format!("{hardcap:?}")));
        }
        let v = self.view();
        if v.max_n != rate.max_n() || v.per_ns != rate.per_ns() {
            let found = Rate::new(v.max_n, std::time::Duration::from_nanos(v.per_ns)).map_or_else(
                |_| format!("{} per {} ns", v.max_n, v.per_ns),
                |r| r.to_string(),
            );
            return Err(("rate", found, rate.to_string()));
        }
        if v.s == 0 || v.t == 0 {
            return Err(("tick scale", format!("{}/{}", v.s, v.t), "non-zero".into()));
        }
        let asked = Params::of(rate, hardcap, burst);
        if v.tol != asked.tol {
            let capacity = |tol: u64| match tol {
                u64::MAX => "no cap".to_owned(),
                tol => format!("{}", tol / v.t + 1),
            };
            return Err(("capacity", capacity(v.tol), capacity(asked.tol)));
        }
        Ok(())
    }

    fn view(&self) -> View {
        let word = self.word.load(Ordering::Acquire);
        let generation = (word >> GEN_SHIFT) & GEN_MASK;
        let slot = &self.slots[(generation & 1) as usize];
        View {
            word,
            paused: word & PAUSED != 0,
            generation,
            value: word & VALUE,
            epoch: slot.epoch.load(Ordering::Relaxed),
            max_n: slot.max_n.load(Ordering::Relaxed),
            per_ns: slot.per_ns.load(Ordering::Relaxed),
            s: slot.s.load(Ordering::Relaxed),
            t: slot.t.load(Ordering::Relaxed),
            tol: slot.tol.load(Ordering::Relaxed),
        }
    }

    /// Whether the word is still the one `view` read.
    fn unchanged(&self, view: &View) -> bool {
        self.word.load(Ordering::Acquire) == view.word
    }

    /// Takes `n ≥ 1` fuel at host time `now`.
    pub(crate) fn take(&self, now: u64, n: u64) -> Took {
        loop {
            let v = self.view();
            let new = if v.paused {
                let need = u128::from(n) * u128::from(v.t);
                if v.t == 0 || u128::from(v.value) < need {
                    None
                } else {
                    Some(v.value - need as u64)
                }
            } else {
                let Some(now_t) = now_ticks(&v, now) else {
                    if now < v.epoch {
                        return Took::Empty; // a clock behind the file's: not yet
                    }
                    self.rebase(now);
                    continue;
                };
                let fits = v.t != 0 && (u128::from(n) - 1) * u128::from(v.t) < u128::from(RANGE);
                fits.then(|| gcra_take(v.value, now_t, v.tol, v.t, n))
                    .flatten()
                    .map(|(tat, _)| tat)
                    .filter(|&tat| tat <= VALUE)
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

    /// Gives back `n` fuel granted with `stamp` (the word as that take left
    /// it), if nothing changed the bucket since; else it is spent.
    pub(crate) fn give_back(&self, n: u64, stamp: u64) {
        let v = self.view();
        if v.word != stamp || v.t == 0 {
            return;
        }
        let span = n.saturating_mul(v.t);
        let value = if v.paused {
            let full = v.tol.saturating_add(v.t).min(VALUE);
            v.value.saturating_add(span).min(full)
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

    /// The fuel in the bucket at `now`.
    pub(crate) fn level(&self, now: u64) -> u64 {
        let v = self.view();
        if v.t == 0 {
            return 0;
        }
        let cap = v.tol.checked_add(v.t).map_or(u64::MAX, |span| span / v.t);
        if v.paused {
            return (v.value / v.t).min(cap);
        }
        let Some(now_t) = now_ticks(&v, now) else {
            return cap;
        };
        match now_t.checked_sub(v.value) {
            Some(accrued) => (accrued / v.t).saturating_add(1).min(cap),
            None => 0,
        }
    }

    /// When `n` fuel will be there at this rate, in host ns; `u64::MAX`
    /// while paused or if never within the clock.
    pub(crate) fn due(&self, now: u64, n: u128) -> u64 {
        let v = self.view();
        if v.paused || v.t == 0 || v.s == 0 {
            return u64::MAX;
        }
        let Some(now_t) = now_ticks(&v, now) else {
            return now;
        };
        let tat = v.value.max(now_t.saturating_sub(v.tol));
        let due_t = u128::from(tat) + n.saturating_sub(1).saturating_mul(u128::from(v.t));
        if due_t <= u128::from(now_t) {
            return now;
        }
        let ns = due_t.div_ceil(u128::from(v.s));
        u64::try_from(u128::from(v.epoch) + ns).unwrap_or(u64::MAX)
    }

    /// The rate now (another process may have changed it).
    pub(crate) fn rate(&self) -> Option<Rate> {
        let v = self.view();
        Rate::new(v.max_n, std::time::Duration::from_nanos(v.per_ns)).ok()
    }

    pub(crate) fn is_paused(&self) -> bool {
        self.word.load(Ordering::Acquire) & PAUSED != 0
    }

    /// Stops the refill for every process.
    pub(crate) fn pause(&self, now: u64) {
        loop {
            let v = self.view();
            if v.paused {
                return;
            }
            let Some(now_t) = now_ticks(&v, now) else {
                if now < v.epoch {
                    return;
                }
                self.rebase(now);
                continue;
            };
            let tat = v.value.max(now_t.saturating_sub(v.tol));
            let held = (u128::from(now_t) + u128::from(v.t)).saturating_sub(u128::from(tat));
            let held = held.min(u128::from(VALUE)) as u64;
            let word = PAUSED | (v.word & !VALUE & !PAUSED) | held;
            if self
                .word
                .compare_exchange(v.word, word, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return;
            }
        }
    }

    /// Restarts the refill for every process, from what the bucket held.
    pub(crate) fn resume(&self, now: u64) {
        loop {
            let v = self.view();
            if !v.paused {
                return;
            }
            let now_t = match now_ticks(&v, now) {
                Some(now_t) => now_t,
                None if now < v.epoch => return,
                None => {
                    self.rebase(now);
                    continue;
                }
            };
            let tat = (now_t + v.t).saturating_sub(v.value);
            let word = (v.word & !VALUE & !PAUSED) | tat.min(VALUE);
            if self
                .word
                .compare_exchange(v.word, word, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return;
            }
        }
    }

    /// Changes the rate for every process, keeping the fuel (and its
    /// fraction) and capping it to the new capacity, as `Gcra::set_rate`.
    /// `Err` if the new rate does not fit a shared word.
    pub(crate) fn set_rate(
        &self,
        now: u64,
        rate: Rate,
        hardcap: Hardcap,
        burst: Option<u64>,
    ) -> Result<(), Error> {
        let params = Params::of(rate, hardcap, burst);
        if !params.fits() {
            return Err(params.too_fine());
        }
        let _claim = loop {
            if let Some(claim) = self.claim(now) {
                break claim;
            }
            std::thread::yield_now();
        };
        loop {
            let v = self.view();
            let epoch = now.saturating_sub(params.span_ns().saturating_add(1));
            let slot = &self.slots[((v.generation + 1) & 1) as usize];
            params.write(slot, epoch);
            let now_t_new = (now - epoch).saturating_mul(params.s);
            let value = if v.paused {
                // The room, in fuel: the same fraction of the new interval.
                let fuel = u128::from(v.value) * u128::from(params.t) / u128::from(v.t.max(1));
                (fuel.min(u128::from(params.tol.saturating_add(params.t))) as u64).min(VALUE)
            } else {
                let Some(now_t) = now_ticks(&v, now) else {
                    drop(_claim);
                    if now >= v.epoch {
                        self.rebase(now);
                    }
                    return self.set_rate(now, rate, hardcap, burst);
                };
                let tat = v.value.max(now_t.saturating_sub(v.tol));
                // Distance from now in fuel, rounded towards later.
                let offset = i128::from(tat) - i128::from(now_t);
                let t_old = i128::from(v.t.max(1));
                let whole = offset.div_euclid(t_old);
                let rest = offset.rem_euclid(t_old) as u128;
                let rest = (rest * u128::from(params.t)).div_ceil(t_old as u128);
                let offset = whole * i128::from(params.t) + rest as i128;
                let floor = i128::from(now_t_new) - i128::from(params.tol.min(now_t_new));
                (i128::from(now_t_new) + offset)
                    .max(floor)
                    .clamp(0, i128::from(VALUE)) as u64
            };
            let generation = (v.generation + 1) & GEN_MASK;
            let word = (v.word & PAUSED) | (generation << GEN_SHIFT) | value;
            if self
                .word
                .compare_exchange(v.word, word, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return Ok(());
            }
        }
    }

    /// Moves the epoch on before the present outgrows the word, if no other
    /// process is changing the spare slot (then it will, or it did).
    fn rebase(&self, now: u64) {
        let Some(_claim) = self.claim(now) else {
            std::thread::yield_now();
            return;
        };
        let v = self.view();
        if v.paused || v.s == 0 || now < v.epoch || now_ticks(&v, now).is_some() {
            return; // done meanwhile, or not needed
        }
        let now_t = now.wrapping_sub(v.epoch).saturating_mul(v.s);
        // Back to a quarter of the range, in whole nanoseconds.
        let shift_ns = (now_t - RANGE / 4) / v.s;
        let shift = shift_ns * v.s;
        let tat = v.value.max(now_t.saturating_sub(v.tol));
        let slot = &self.slots[((v.generation + 1) & 1) as usize];
        let current = &self.slots[(v.generation & 1) as usize];
        for (to, from) in [
            (&slot.max_n, &current.max_n),
            (&slot.per_ns, &current.per_ns),
            (&slot.s, &current.s),
            (&slot.t, &current.t),
            (&slot.tol, &current.tol),
        ] {
            to.store(from.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        slot.epoch
            .store(v.epoch.saturating_add(shift_ns), Ordering::Relaxed);
        let generation = (v.generation + 1) & GEN_MASK;
        let word = (generation << GEN_SHIFT) | tat.saturating_sub(shift).min(VALUE);
        let _ = self
            .word
            .compare_exchange(v.word, word, Ordering::AcqRel, Ordering::Acquire);
    }

    /// Claims the spare slot, taking over a claim whose holder is gone or
    /// has held it too long; `None` if a live process holds it.
    fn claim(&self, now: u64) -> Option<Claim<'_>> {
        let seconds = (now / 1_000_000_000) & 0xffff_ffff;
        let me = (u64::from(process_id()) << 32) | seconds;
        let mut holder = 0;
        loop {
            match self
                .claim
                .compare_exchange(holder, me, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Some(Claim(&self.claim)),
                Err(0) => holder = 0,
                Err(current) => {
                    let since = seconds.wrapping_sub(current & 0xffff_ffff) & 0xffff_ffff;
                    let gone = !process_alive((current >> 32) as u32) || since > CLAIM_TIMEOUT_S;
                    if !gone {
                        return None;
                    }
                    holder = current;
                }
            }
        }
    }
}

/// A claim on the spare slot, released when dropped.
struct Claim<'a>(&'a AtomicU64);

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.0.store(0, Ordering::Release);
    }
}

/// `now` in ticks of `v`'s slot, if within the word's range.
fn now_ticks(v: &View, now: u64) -> Option<u64> {
    let rel = now.checked_sub(v.epoch)?;
    let now_t = u128::from(rel) * u128::from(v.s);
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
#[derive(Debug, Clone, Copy)]
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
        let tol = match hardcap.capacity(rate.max_n(), burst) {
            Some(cap) => (cap - 1).saturating_mul(t),
            None => u64::MAX,
        };
        Params {
            max_n: rate.max_n(),
            per_ns: rate.per_ns(),
            s,
            t,
            tol,
        }
    }

    /// Whether a bucket of these parameters fits the word.
    pub(crate) fn fits(&self) -> bool {
        let span = match self.tol {
            u64::MAX => u128::from(self.t),
            tol => u128::from(tol) + u128::from(self.t),
        };
        span < u128::from(SPAN_LIMIT) && u128::from(self.s) < u128::from(RANGE / 1_000_000)
    }

    pub(crate) fn too_fine(&self) -> Error {
        Error::Unsupported {
            what: "this rate in shared memory (its bucket spans more than 2^45 ticks of \
                   1/(max_n / gcd(max_n, per)) ns)",
            accepted: "the period, times max_n / gcd(max_n, per_ns), must be below 2^45 ns \
                       (with a whole number of ns per grant, periods up to 9 hours)",
        }
    }

    /// The bucket's span, in ns (rounded up).
    fn span_ns(&self) -> u64 {
        let span = match self.tol {
            u64::MAX => self.t,
            tol => tol.saturating_add(self.t),
        };
        span.div_ceil(self.s.max(1))
    }

    fn write(&self, slot: &Slot, epoch: u64) {
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
/// reaped; the claim's timeout covers that).
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
        _reserved: [A::new(0), A::new(0)],
    };
    Box::new(HostState {
        word: A::new(0),
        claim: A::new(0),
        hardcap: A::new(0),
        _reserved: [A::new(0), A::new(0), A::new(0), A::new(0), A::new(0)],
        slots: [slot(), slot()],
    })
}

#[cfg(all(test, not(fueltank_loom)))]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    fn state(rate: &str, hardcap: Hardcap, initial: u64, now: u64) -> Box<HostState> {
        let state = new_state();
        state.init(rate.parse().unwrap(), hardcap, None, initial, now);
        state
    }

    #[test]
    fn takes_refill_and_cap_like_the_in_process_bucket() {
        let s = state("4/s", Hardcap::Limit, 1, 10 * SEC);
        assert!(matches!(s.take(10 * SEC, 1), Took::Taken(_)));
        assert_eq!(s.take(10 * SEC, 1), Took::Empty);
        assert_eq!(s.due(10 * SEC, 1), 10 * SEC + SEC / 4);
        assert_eq!(s.level(20 * SEC), 4);
        assert!(matches!(s.take(20 * SEC, 4), Took::Taken(_)));
        assert_eq!(s.take(20 * SEC, 1), Took::Empty);
    }

    #[test]
    fn pause_freezes_what_the_bucket_held() {
        let s = state("10/s", Hardcap::Limit, 0, SEC);
        s.pause(SEC + SEC / 4); // 2.5 fuel accrued
        assert_eq!(s.level(100 * SEC), 2);
        assert!(matches!(s.take(100 * SEC, 2), Took::Taken(_)));
        assert_eq!(s.take(100 * SEC, 1), Took::Empty);
        s.resume(100 * SEC);
        // The half fuel left carries on: the next is due in 50 ms.
        assert_eq!(s.due(100 * SEC, 1), 100 * SEC + SEC / 20);
    }

    #[test]
    fn refunds_only_while_nothing_changed() {
        let s = state("10/s", Hardcap::Limit, 2, SEC);
        let Took::Taken(stamp) = s.take(SEC, 1) else {
            panic!()
        };
        s.give_back(1, stamp);
        assert_eq!(s.level(SEC), 2);
        let Took::Taken(stamp) = s.take(SEC, 1) else {
            panic!()
        };
        assert!(matches!(s.take(SEC, 1), Took::Taken(_)));
        s.give_back(1, stamp); // someone took since: spent
        assert_eq!(s.level(SEC), 0);
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
            if let Took::Taken(_) = s.take(now, 1) {
                grants += 1;
            }
        }
        assert_eq!(grants, 4 * 86_400);
    }

    #[test]
    fn set_rate_keeps_the_level_for_everyone() {
        let s = state("10/s", Hardcap::Limit, 10, SEC);
        s.set_rate(SEC, "1000/s".parse().unwrap(), Hardcap::Limit, None)
            .unwrap();
        assert_eq!(s.level(SEC), 10);
        assert_eq!(s.rate(), Some("1000/s".parse().unwrap()));
        s.set_rate(SEC, "2/s".parse().unwrap(), Hardcap::Limit, None)
            .unwrap();
        assert_eq!(s.level(SEC), 2);
        assert!(
            s.check("2/s".parse().unwrap(), Hardcap::Limit, None)
                .is_ok()
        );
        assert!(
            s.check("3/s".parse().unwrap(), Hardcap::Limit, None)
                .is_err()
        );
        assert!(s.check("2/s".parse().unwrap(), Hardcap::One, None).is_err());
        assert!(
            s.check("2/s".parse().unwrap(), Hardcap::Limit, Some(5))
                .is_err()
        );
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
            let take = loom::thread::spawn(move || taker.take(10 * SEC, 1));
            // Capacity 1 from now on: the two fuel become one.
            state
                .set_rate(10 * SEC, "1/s".parse().unwrap(), Hardcap::Limit, None)
                .unwrap();
            let took = matches!(take.join().unwrap(), Took::Taken(_));
            let left = state.level(10 * SEC);
            assert!(left <= 1, "over the new capacity: {left}");
            // Taken before the change: 1 left of 2, capped to 1. After: 0
            // of 1. Either way never more than the bucket held.
            assert!(u64::from(took) + left <= 2);
            if took {
                assert!(state.rate() == Some("1/s".parse().unwrap()));
            }
        });
    }

    #[test]
    fn a_take_racing_pause_and_resume_sees_one_state() {
        loom::model(|| {
            let state = full_bucket();
            let taker = state.clone();
            let take = loom::thread::spawn(move || {
                u64::from(matches!(taker.take(10 * SEC, 1), Took::Taken(_)))
                    + u64::from(matches!(taker.take(10 * SEC, 1), Took::Taken(_)))
            });
            state.pause(10 * SEC);
            state.resume(10 * SEC);
            let took = take.join().unwrap();
            assert_eq!(took + state.level(10 * SEC), 2, "fuel minted or lost");
        });
    }
}
