//! Random sequences of take / wait / cancel / advance / pause / permits,
//! run against the tank and against a plain model written differently (a
//! token bucket with exact fractional fuel, and a list of grant times for
//! `Window`): every answer, every level and every grant must agree. So no
//! grant beyond what the hardcap allows, no fuel lost on cancel, FIFO kept.
//! Fuel given back follows the rule of `Core::refund`: exact while the
//! bucket cannot have filled since the grant, spent after.

mod common;

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use common::poll;
use fueltank::clock::ManualClock;
use fueltank::{AwaitFuelN, Hardcap, Permit, Rate, Tank};
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
    Acquire,
    DropPermit(usize),
    SpendPermit(usize),
    Level,
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
        2 => Just(Op::Acquire),
        1 => any::<usize>().prop_map(Op::DropPermit),
        1 => any::<usize>().prop_map(Op::SpendPermit),
        1 => Just(Op::Level),
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

/// The model: fuel as an exact fraction (in units of `1 / per_ns` fuel, so
/// one nanosecond adds `max_n` units), served to a FIFO line after every
/// operation; `Window` as a plain list of grant times.
struct Model {
    hardcap: Hardcap,
    max_n: u128,
    per: u128,
    /// Time that counts (paused time does not), in ns.
    now: u128,
    paused: bool,
    /// Fuel, in units (1 fuel = `per` units).
    level: u128,
    /// `Window`: grant times, one entry per fuel.
    log: Vec<u128>,
    line: VecDeque<(usize, u64)>,
    /// Granted in the model, not yet seen by its future: (id, n, stamp).
    granted: Vec<(usize, u64, Stamp)>,
    /// Fuel given back so far (`Limit`, `One`, `Unbounded`).
    refunds: u128,
}

/// What the model remembers of a grant to give it back: the `Window` log
/// time, or until when giving it back is exact (and the refunds then).
#[derive(Debug, Clone, Copy)]
struct Stamp {
    at: u128,
    refunds: u128,
}

impl Model {
    fn new(hardcap: Hardcap, max_n: u64, per_ms: u64, initial: u64) -> Model {
        let per = u128::from(per_ms) * 1_000_000;
        Model {
            hardcap,
            max_n: max_n.into(),
            per,
            now: 0,
            paused: false,
            level: u128::from(initial) * per,
            log: vec![0; (max_n - initial.min(max_n)) as usize],
            line: VecDeque::new(),
            granted: Vec::new(),
            refunds: 0,
        }
    }

    fn cap(&self) -> Option<u128> {
        match self.hardcap {
            Hardcap::Limit | Hardcap::Window => Some(self.max_n),
            Hardcap::One => Some(1),
            _ => None,
        }
    }

    fn request_cap(&self) -> u64 {
        self.cap().map_or(1 << 48, |c| c as u64)
    }

    fn advance(&mut self, ns: u128) {
        if self.paused {
            return;
        }
        self.now += ns;
        self.level += ns * self.max_n;
        if let Some(cap) = self.cap() {
            self.level = self.level.min(cap * self.per);
        }
    }

    fn in_window(&self) -> u128 {
        self.log
            .iter()
            .filter(|&&t| t + self.per > self.now)
            .count() as u128
    }

    fn take(&mut self, n: u64) -> Option<Stamp> {
        let n = u128::from(n);
        if self.hardcap == Hardcap::Window {
            if self.in_window() + n > self.max_n {
                return None;
            }
            // Grants are stamped on a grid from the start (see `Window::push`
            // in src/tank/bucket.rs): at most per/4096 and 50 µs.
            let grid = (self.per / 4096).clamp(1, 50_000);
            let stamp = self.now.div_ceil(grid) * grid;
            self.log.extend(std::iter::repeat_n(stamp, n as usize));
            return Some(Stamp {
                at: stamp,
                refunds: 0,
            });
        }
        if self.level < n * self.per {
            return None;
        }
        self.level -= n * self.per;
        // Giving it back is exact until the bucket could be full again: when
        // the fuel left plus what accrues reaches the cap.
        let at = match self.cap() {
            Some(cap) => self.now + (cap * self.per - self.level) / self.max_n,
            None => u128::MAX,
        };
        Some(Stamp {
            at,
            refunds: self.refunds,
        })
    }

    fn refund(&mut self, n: u64, stamp: Stamp) {
        if self.hardcap == Hardcap::Window {
            for _ in 0..n {
                if let Some(i) = self.log.iter().rposition(|&t| t == stamp.at) {
                    self.log.remove(i);
                }
            }
            return;
        }
        // Each fuel given back since the grant makes the bucket full one
        // interval sooner.
        let since = self.refunds - stamp.refunds;
        let until = stamp
            .at
            .saturating_sub((since * self.per).div_ceil(self.max_n));
        if self.now < until {
            self.level += u128::from(n) * self.per;
            if let Some(cap) = self.cap() {
                self.level = self.level.min(cap * self.per);
            }
            self.refunds += u128::from(n);
        }
    }

    fn level(&self) -> u64 {
        match self.hardcap {
            Hardcap::Window => (self.max_n - self.in_window()) as u64,
            _ => (self.level / self.per) as u64,
        }
    }

    /// How long a newcomer asking for `n` would wait (`Limit`, `One`,
    /// `Unbounded`): until the fuel for the line ahead and for it has
    /// accrued, one nanosecond adding `max_n` units.
    fn wait_time(&self, n: u64) -> Option<u64> {
        if n > self.request_cap() || self.paused {
            return None;
        }
        let ahead: u64 = self.line.iter().map(|&(_, n)| n).sum();
        let need = u128::from(ahead + n) * self.per;
        Some(need.saturating_sub(self.level).div_ceil(self.max_n) as u64)
    }

    /// The driver: serve the line in order.
    fn serve(&mut self) {
        while let Some(&(id, n)) = self.line.front() {
            match self.take(n) {
                Some(stamp) => {
                    self.line.pop_front();
                    self.granted.push((id, n, stamp));
                }
                None => break,
            }
        }
    }
}

type Waiter = (usize, Pin<Box<AwaitFuelN>>);

fn run(
    hardcap: Hardcap,
    max_n: u64,
    per_ms: u64,
    initial: u64,
    ops: Vec<Op>,
) -> Result<(), TestCaseError> {
    let clock = ManualClock::new();
    let tank = Tank::builder(Rate::new(max_n, Duration::from_millis(per_ms)).unwrap())
        .hardcap(hardcap)
        .initial(initial)
        .clock(clock.clone())
        .build()
        .unwrap();
    let mut model = Model::new(hardcap, max_n, per_ms, initial);
    let mut waiters: Vec<Waiter> = Vec::new();
    let mut permits: Vec<(Permit, Stamp)> = Vec::new();
    let mut next_id = 0;

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
                let expected = if n > model.request_cap() {
                    Poll::Ready(false)
                } else if model.line.is_empty() && model.take(n).is_some() {
                    Poll::Ready(true)
                } else {
                    model.line.push_back((next_id, n));
                    Poll::Pending
                };
                prop_assert_eq!(got, expected, "wait {}", n);
                if got.is_pending() {
                    waiters.push((next_id, future));
                }
                next_id += 1;
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
                let mut expected: Vec<_> = model
                    .granted
                    .drain(..)
                    .map(|(id, _, _)| (id, true))
                    .collect();
                ready.sort();
                expected.sort();
                prop_assert_eq!(ready, expected, "granted waiters");
            }
            Op::Cancel(i) if !waiters.is_empty() => {
                let (id, future) = waiters.remove(i % waiters.len());
                drop(future);
                if let Some(pos) = model.line.iter().position(|&(w, _)| w == id) {
                    model.line.remove(pos);
                } else if let Some(pos) = model.granted.iter().position(|&(w, _, _)| w == id) {
                    let (_, n, stamp) = model.granted.remove(pos);
                    model.refund(n, stamp);
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
            Op::Acquire => {
                let permit = tank.try_acquire();
                let stamp = if model.line.is_empty() {
                    model.take(1)
                } else {
                    None
                };
                prop_assert_eq!(permit.is_some(), stamp.is_some(), "try_acquire");
                if let (Some(permit), Some(stamp)) = (permit, stamp) {
                    permits.push((permit, stamp));
                }
            }
            Op::DropPermit(i) if !permits.is_empty() => {
                let (permit, stamp) = permits.remove(i % permits.len());
                drop(permit);
                model.refund(1, stamp);
            }
            Op::SpendPermit(i) if !permits.is_empty() => {
                permits.remove(i % permits.len()).0.spend();
            }
            Op::DropPermit(_) | Op::SpendPermit(_) => {}
            Op::Level => {
                prop_assert_eq!(tank.level(), model.level(), "level");
            }
            Op::WaitTime(n) if hardcap != Hardcap::Window => {
                let wait = tank.wait_time(n).map(|d| d.as_nanos() as u64);
                prop_assert_eq!(wait, model.wait_time(n), "wait_time({})", n);
            }
            Op::WaitTime(_) => {}
        }
        // The tank serves its line whenever anything happens: so does the
        // model.
        model.serve();
        prop_assert_eq!(tank.waiting(), model.line.len(), "waiting");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn the_tank_behaves_like_the_model(
        hardcap in hardcap(),
        max_n in 1..6u64,
        per_ms in prop_oneof![Just(300u64), Just(1000), Just(2000)],
        initial in 0..6u64,
        ops in proptest::collection::vec(op(), 1..80),
    ) {
        let cap = match hardcap {
            Hardcap::One => 1,
            Hardcap::Unbounded => u64::MAX,
            _ => max_n,
        };
        run(hardcap, max_n, per_ms, initial.min(cap), ops)?;
    }
}
