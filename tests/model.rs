//! Random sequences of take / wait / cancel / advance / pause / tokens
//! (given back whole or in part), run against the tank and against a plain model written
//! differently (a token bucket with exact fractional fuel, and a list of
//! grant times for `Window`): every answer, every level, every wait and
//! every grant must agree. So no grant beyond what the hardcap allows, no
//! fuel lost on cancel, FIFO kept.
//!
//! Fuel given back is modelled per token, per part of one and per granted
//! waiter: its *shadow* is the fuel the bucket would hold more had it never
//! been taken: the fuel taken, but no more than the room the bucket had at
//! any moment since (the extra fuel would have run into the cap). Giving
//! back adds the shadow, exactly, and the bucket had that much less room at
//! every moment since: what other fuel taken before may still return
//! shrinks with it.

mod common;

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use common::poll;
use fueltank::clock::ManualClock;
use fueltank::{AwaitFuel, Budget, Error, Fuel, Hardcap, Rate, Tank};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    HasFuel(u64),
    Wait(u64),
    Poll,
    Cancel(usize),
    Advance(u64),
    Pause,
    Resume,
    TryTake(u64),
    GiveBackPart(usize, u64),
    RefundToken(usize),
    SpendToken(usize),
    Level,
    Available,
    WaitTime(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..4u64).prop_map(Op::HasFuel),
        3 => (1..4u64).prop_map(Op::Wait),
        3 => Just(Op::Poll),
        2 => any::<usize>().prop_map(Op::Cancel),
        // Round steps land exactly on due times and window edges.
        2 => (1..700u64).prop_map(Op::Advance),
        3 => prop_oneof![Just(50u64), Just(100), Just(150), Just(300), Just(500), Just(1000)]
            .prop_map(Op::Advance),
        1 => Just(Op::Pause),
        1 => Just(Op::Resume),
        4 => (1..4u64).prop_map(Op::TryTake),
        3 => (any::<usize>(), 0..4u64).prop_map(|(i, k)| Op::GiveBackPart(i, k)),
        2 => any::<usize>().prop_map(Op::RefundToken),
        1 => any::<usize>().prop_map(Op::SpendToken),
        1 => Just(Op::Level),
        1 => Just(Op::Available),
        1 => (1..4u64).prop_map(Op::WaitTime),
    ]
}

fn hardcap() -> impl Strategy<Value = Hardcap> {
    prop_oneof![
        Just(Hardcap::Limit),
        Just(Hardcap::One),
        Just(Hardcap::Unbounded),
        Just(Hardcap::Window),
    ]
}

/// What the model remembers of fuel taken that may come back.
#[derive(Debug, Clone, Copy)]
enum Held {
    /// `Limit`, `One`, `Unbounded`: the fuel taken, in units, and the
    /// index in `rooms` of the first moment after it.
    Shadow(u128, usize),
    /// `Window`: the time stamped on the grant, and how many.
    Stamped(u128, u64),
}

/// The model: fuel as an exact fraction (in units of `1 / per_ns` fuel, so
/// one nanosecond adds `max_n` units), served to a FIFO line after every
/// operation; `Window` as a plain list of grant times.
struct Model {
    hardcap: Hardcap,
    max_n: u128,
    /// `Limit`'s capacity, if not `max_n`.
    burst: Option<u128>,
    per: u128,
    /// Time that counts (paused time does not), in ns.
    now: u128,
    paused: bool,
    /// Fuel, in units (1 fuel = `per` units).
    level: u128,
    /// `Window`: grant times, one entry per fuel.
    log: Vec<u128>,
    line: VecDeque<(usize, u64)>,
    /// Granted in the model, not yet seen by its future: (id, n).
    granted: Vec<(usize, u64)>,
    /// Fuel held by tokens and granted waiters, by id.
    held: Vec<(usize, Held)>,
    /// The room in the bucket (in units) at every moment its level moved.
    rooms: Vec<u128>,
    next_id: usize,
}

impl Model {
    fn new(hardcap: Hardcap, max_n: u64, burst: Option<u64>, per_ms: u64, initial: u64) -> Model {
        let per = u128::from(per_ms) * 1_000_000;
        Model {
            hardcap,
            max_n: max_n.into(),
            burst: burst.map(u128::from),
            per,
            now: 0,
            paused: false,
            level: u128::from(initial) * per,
            log: vec![0; (max_n - initial.min(max_n)) as usize],
            line: VecDeque::new(),
            granted: Vec::new(),
            held: Vec::new(),
            rooms: Vec::new(),
            next_id: 0,
        }
    }

    fn id(&mut self) -> usize {
        self.next_id += 1;
        self.next_id
    }

    fn cap(&self) -> Option<u128> {
        match self.hardcap {
            Hardcap::Limit => Some(self.burst.unwrap_or(self.max_n)),
            Hardcap::Window => Some(self.max_n),
            Hardcap::One => Some(1),
            _ => None,
        }
    }

    fn request_cap(&self) -> u64 {
        self.cap().map_or(1 << 48, |c| c as u64)
    }

    /// Notes the room left in the bucket now: no shadow from before can
    /// be larger (fuel beyond it would have been lost to the cap).
    fn note_room(&mut self) {
        if let Some(cap) = self.cap() {
            self.rooms.push(cap * self.per - self.level);
        }
    }

    /// The shadow of fuel taken: `units`, at most the least room since.
    fn shadow(&self, units: u128, since: usize) -> u128 {
        self.rooms[since..]
            .iter()
            .fold(units, |s, &room| s.min(room))
    }

    /// Moves time on by `ns`, serving the line at each moment its head
    /// falls due, as the tank's timer does.
    fn advance(&mut self, ns: u128) {
        if self.paused {
            return;
        }
        let end = self.now + ns;
        while let Some(due) = self.head_due()
            && due <= end
        {
            self.pass(due - self.now);
            self.serve();
        }
        self.pass(end - self.now);
    }

    /// When the head of the line could be granted, if nobody takes before.
    fn head_due(&self) -> Option<u128> {
        let &(_, n) = self.line.front()?;
        let n = u128::from(n);
        if self.hardcap == Hardcap::Window {
            let mut leave: Vec<u128> = self.log.iter().map(|&g| g + self.per).collect();
            leave.sort();
            return leave
                .into_iter()
                .chain([self.now])
                .filter(|&t| t >= self.now)
                .filter(|&t| {
                    self.log.iter().filter(|&&g| g + self.per > t).count() as u128 + n <= self.max_n
                })
                .min();
        }
        let missing = (n * self.per).saturating_sub(self.level);
        Some(self.now + missing.div_ceil(self.max_n))
    }

    fn pass(&mut self, ns: u128) {
        self.now += ns;
        self.level += ns * self.max_n;
        if let Some(cap) = self.cap() {
            self.level = self.level.min(cap * self.per);
        }
        self.note_room();
    }

    fn in_window(&self) -> u128 {
        self.log
            .iter()
            .filter(|&&t| t + self.per > self.now)
            .count() as u128
    }

    /// The stamp grid of `Window`: the largest divisor of `per` made of
    /// twos and fives, at most `per / 4096` and 50 µs (`bucket.rs`).
    fn grid(&self) -> u128 {
        let bound = (self.per / 4096).clamp(1, 50_000);
        (1..=bound)
            .rev()
            .find(|&d| {
                let mut rest = d;
                while rest.is_multiple_of(2) {
                    rest /= 2;
                }
                while rest.is_multiple_of(5) {
                    rest /= 5;
                }
                rest == 1 && self.per.is_multiple_of(d)
            })
            .unwrap()
    }

    /// Takes `n` now, or `None`.
    fn take(&mut self, n: u64) -> Option<Held> {
        let n128 = u128::from(n);
        if self.hardcap == Hardcap::Window {
            if self.in_window() + n128 > self.max_n {
                return None;
            }
            let grid = self.grid();
            let stamp = self.now.div_ceil(grid) * grid;
            self.log.extend(std::iter::repeat_n(stamp, n as usize));
            return Some(Held::Stamped(stamp, n));
        }
        if self.level < n128 * self.per {
            return None;
        }
        self.level -= n128 * self.per;
        Some(Held::Shadow(n128 * self.per, self.rooms.len()))
    }

    /// Gives back what `held` may still return.
    fn give_back(&mut self, held: Held) {
        match held {
            Held::Stamped(stamp, n) => {
                for _ in 0..n {
                    if let Some(i) = self.log.iter().rposition(|&t| t == stamp) {
                        self.log.remove(i);
                    }
                }
            }
            Held::Shadow(units, since) => {
                let back = self.shadow(units, since);
                for room in &mut self.rooms[since..] {
                    *room -= back;
                }
                self.level += back;
                self.note_room();
            }
        }
    }

    /// Splits `k` fuel off what `id` holds, as the token does: both parts
    /// were taken at the same moment.
    fn split(&mut self, id: usize, k: u64) -> Held {
        let pos = self.held.iter().position(|&(h, _)| h == id).unwrap();
        let held = &mut self.held[pos].1;
        match held {
            Held::Shadow(units, since) => {
                let part = (*units).min(u128::from(k) * self.per);
                *units -= part;
                Held::Shadow(part, *since)
            }
            Held::Stamped(stamp, n) => {
                let part = k.min(*n);
                *n -= part;
                Held::Stamped(*stamp, part)
            }
        }
    }

    /// Whether `id` holds the only fuel taken that may come back. Fuel is
    /// given back only then here: the ledger is exact for one grant (whole
    /// or in parts), not jointly for several given back against the same
    /// take when that take found room for the largest of them but not for
    /// all (it is not recorded: see `refunds.rs`).
    fn alone(&self, id: usize) -> bool {
        self.held.iter().all(|&(h, _)| h == id)
    }

    fn release(&mut self, id: usize) -> Option<Held> {
        let pos = self.held.iter().position(|&(h, _)| h == id)?;
        Some(self.held.remove(pos).1)
    }

    fn level(&self) -> u64 {
        match self.hardcap {
            Hardcap::Window => (self.max_n - self.in_window()) as u64,
            _ => (self.level / self.per) as u64,
        }
    }

    /// How long a newcomer asking for `n` would wait after the line.
    fn wait_time(&self, n: u64) -> Option<u64> {
        if n > self.request_cap() || self.paused {
            return None;
        }
        if self.hardcap == Hardcap::Window {
            return Some(self.window_wait(n));
        }
        let ahead: u64 = self.line.iter().map(|&(_, n)| n).sum();
        let need = u128::from(ahead + n) * self.per;
        Some(need.saturating_sub(self.level).div_ceil(self.max_n) as u64)
    }

    /// `Window`: grant the line and then `n` in turn, each at the earliest
    /// time its whole batch fits the window, by brute force.
    fn window_wait(&self, n: u64) -> u64 {
        let grid = self.grid();
        let mut log = self.log.clone();
        let mut at = self.now;
        for size in self.line.iter().map(|&(_, n)| n).chain([n]) {
            let fits = |t: u128, log: &[u128]| {
                log.iter().filter(|&&g| g + self.per > t).count() as u128 + u128::from(size)
                    <= self.max_n
            };
            let mut candidates: Vec<u128> = log
                .iter()
                .map(|&g| g + self.per)
                .chain([at])
                .filter(|&t| t >= at)
                .collect();
            candidates.sort();
            at = candidates.into_iter().find(|&t| fits(t, &log)).unwrap();
            let stamp = at.div_ceil(grid) * grid;
            log.extend(std::iter::repeat_n(stamp, size as usize));
        }
        (at - self.now) as u64
    }

    /// The driver: serve the line in order.
    fn serve(&mut self) {
        while let Some(&(id, n)) = self.line.front() {
            match self.take(n) {
                Some(held) => {
                    self.line.pop_front();
                    self.granted.push((id, n));
                    self.held.push((id, held));
                }
                None => break,
            }
        }
    }
}

type Waiter = (usize, Pin<Box<AwaitFuel<Result<(), Error>>>>);

fn run(
    hardcap: Hardcap,
    max_n: u64,
    burst: Option<u64>,
    per_ms: u64,
    initial: u64,
    ops: Vec<Op>,
) -> Result<(), TestCaseError> {
    let clock = ManualClock::new();
    let mut builder = Tank::builder(Rate::new(max_n, Duration::from_millis(per_ms)).unwrap())
        .hardcap(hardcap)
        .initial(initial)
        .clock(clock.clone());
    if let Some(burst) = burst {
        builder = builder.burst(burst);
    }
    let tank = builder.build().unwrap();
    let mut model = Model::new(hardcap, max_n, burst, per_ms, initial);
    let mut waiters: Vec<Waiter> = Vec::new();
    let mut tokens: Vec<(Fuel, usize)> = Vec::new();

    for op in ops {
        match op {
            Op::HasFuel(n) => {
                let model_says = n == 0
                    || (model.line.is_empty()
                        && n <= model.request_cap()
                        && model.take(n).is_some());
                prop_assert_eq!(tank.has_fuel_n(n), model_says, "has_fuel_n({})", n);
            }
            Op::Wait(n) => {
                let mut future = Box::pin(tank.await_fuel_n(n));
                let got = poll(future.as_mut()).map(|r| r.is_ok());
                let id = model.id();
                let expected = if n > model.request_cap() {
                    Poll::Ready(false)
                } else if model.line.is_empty() && model.take(n).is_some() {
                    Poll::Ready(true)
                } else {
                    model.line.push_back((id, n));
                    Poll::Pending
                };
                prop_assert_eq!(got, expected, "wait {}", n);
                if got.is_pending() {
                    waiters.push((id, future));
                }
            }
            Op::Poll => {
                let mut ready = Vec::new();
                waiters.retain_mut(|(id, future)| match poll(future.as_mut()) {
                    Poll::Ready(result) => {
                        ready.push((*id, result.is_ok()));
                        false
                    }
                    Poll::Pending => true,
                });
                let mut expected: Vec<_> =
                    model.granted.drain(..).map(|(id, _)| (id, true)).collect();
                for &(id, _) in &expected {
                    model.release(id); // seen: spent
                }
                ready.sort();
                expected.sort();
                prop_assert_eq!(ready, expected, "granted waiters");
            }
            // A granted waiter dropped gives its fuel back: only while it is
            // the only fuel held (see `alone`).
            Op::Cancel(i)
                if !waiters.is_empty() && {
                    let id = waiters[i % waiters.len()].0;
                    model.line.iter().any(|&(w, _)| w == id) || model.alone(id)
                } =>
            {
                let (id, future) = waiters.remove(i % waiters.len());
                drop(future);
                if let Some(pos) = model.line.iter().position(|&(w, _)| w == id) {
                    model.line.remove(pos);
                } else if let Some(pos) = model.granted.iter().position(|&(w, _)| w == id) {
                    model.granted.remove(pos);
                    let held = model.release(id).unwrap();
                    model.give_back(held);
                }
            }
            Op::Cancel(_) => {}
            Op::Advance(ms) => {
                clock.advance(Duration::from_millis(ms));
                model.advance(u128::from(ms) * 1_000_000);
            }
            Op::Pause => {
                tank.pause();
                model.paused = true;
            }
            Op::Resume => {
                tank.resume();
                model.paused = false;
            }
            Op::TryTake(n) => {
                let held = if model.line.is_empty() && n <= model.request_cap() {
                    model.take(n)
                } else {
                    None
                };
                let id = model.id();
                if let Some(held) = held {
                    model.held.push((id, held));
                }
                let fuel = tank.try_take(n);
                prop_assert_eq!(fuel.is_some(), held.is_some(), "try_take({})", n);
                tokens.extend(fuel.map(|f| (f, id)));
            }
            Op::GiveBackPart(i, k)
                if !tokens.is_empty() && model.alone(tokens[i % tokens.len()].1) =>
            {
                let len = tokens.len();
                let (fuel, id) = &mut tokens[i % len];
                tank.give_back(fuel.split(k));
                let part = model.split(*id, k);
                model.give_back(part);
            }
            Op::RefundToken(i) if !tokens.is_empty() && model.alone(tokens[i % tokens.len()].1) => {
                let (fuel, id) = tokens.remove(i % tokens.len());
                tank.give_back(fuel);
                let held = model.release(id).unwrap();
                model.give_back(held);
            }
            Op::SpendToken(i) if !tokens.is_empty() => {
                let (fuel, id) = tokens.remove(i % tokens.len());
                fuel.spend();
                model.release(id);
            }
            Op::GiveBackPart(..) | Op::RefundToken(_) | Op::SpendToken(_) => {}
            Op::Level => {
                prop_assert_eq!(tank.level(), model.level(), "level");
            }
            Op::Available => {
                let expected = if model.line.is_empty() {
                    model.level()
                } else {
                    0
                };
                prop_assert_eq!(tank.available(), expected, "available");
            }
            Op::WaitTime(n) => {
                let wait = tank.wait_time(n).map(|d| d.as_nanos() as u64);
                prop_assert_eq!(wait, model.wait_time(n), "wait_time({})", n);
            }
        }
        // The tank serves its line whenever anything happens: so does the
        // model.
        model.serve();
        prop_assert_eq!(tank.waiting(), model.line.len(), "waiting");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn the_tank_behaves_like_the_model(
        hardcap in hardcap(),
        max_n in 1..6u64,
        burst in prop_oneof![Just(None), (1..9u64).prop_map(Some)],
        per_ms in prop_oneof![Just(300u64), Just(1000), Just(2000)],
        initial in 0..9u64,
        ops in proptest::collection::vec(op(), 1..100),
    ) {
        // A burst only with `Limit`.
        let burst = burst.filter(|_| hardcap == Hardcap::Limit);
        let cap = match hardcap {
            Hardcap::One => 1,
            Hardcap::Unbounded => u64::MAX,
            Hardcap::Limit => burst.unwrap_or(max_n),
            Hardcap::Window => max_n,
        };
        run(hardcap, max_n, burst, per_ms, initial.min(cap), ops)?;
    }
}
