//! Several rates on one tank (`TankBuilder::also`): every grant takes from
//! all of them or from none, in the one line; each rate keeps its
//! hardcap's bound; refunds go back to every rate.

mod common;

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use common::{poll, worst_window};
use fueltank::clock::ManualClock;
use fueltank::{AwaitFuel, Budget, Error, Fuel, Hardcap, Rate, Tank, TankBuilder};
use proptest::prelude::*;

const SEC: Duration = Duration::from_secs(1);

fn rate(s: &str) -> Rate {
    s.parse().unwrap()
}

type Wait = Pin<Box<dyn Future<Output = ()>>>;

/// A line of `n` waiters asking 1 and 3 in turn, each made by `wait`,
/// for `minutes` of virtual time in steps of 10 ms: the grant times of
/// every unit, in the order granted, and the order the waiters were
/// granted in.
fn run_line<F>(clock: &ManualClock, n: usize, minutes: u64, wait: F) -> (Vec<Instant>, Vec<usize>)
where
    F: Fn(u64) -> Wait,
{
    let start = Instant::now();
    let mut line: VecDeque<(usize, u64, Wait)> = VecDeque::new();
    let (mut units, mut order) = (Vec::new(), Vec::new());
    let mut next = 0;
    for step in 0..=minutes * 60 * 100 {
        while line.len() < n {
            let cost = if next % 2 == 0 { 1 } else { 3 };
            line.push_back((next, cost, wait(cost)));
            next += 1;
        }
        let at = start + Duration::from_millis(step * 10);
        let mut i = 0;
        while i < line.len() {
            if poll(line[i].2.as_mut()).is_ready() {
                let (id, cost, _) = line.remove(i).unwrap();
                order.push(id);
                units.extend(std::iter::repeat_n(at, cost as usize));
            } else {
                i += 1;
            }
        }
        clock.advance(Duration::from_millis(10));
    }
    (units, order)
}

/// [`run_line`] on one tank of `100/min` also `5/s` under `hardcap`.
fn run_tank(hardcap: Hardcap, n: usize, minutes: u64) -> (Vec<Instant>, Vec<usize>) {
    let clock = ManualClock::new();
    let tank = Tank::builder(rate("100/min"))
        .also(rate("5/s"))
        .hardcap(hardcap)
        .clock(clock.clone())
        .build()
        .unwrap();
    run_line(&clock, n, minutes, |cost| {
        let wait = tank.await_fuel_n(cost);
        Box::pin(async move { wait.await.unwrap() })
    })
}

/// The case: a third party allows 100 per minute and 5 per second,
/// and calls cost 1 or 3. One tank with both rates never lets more than
/// 100 into any 60 s window, nor more than 5 into any second, serves the
/// line in order, and keeps the pace of the tighter rate.
#[test]
fn two_rates_with_costs_keep_both_windows() {
    let (units, order) = run_tank(Hardcap::Window, 8, 5);
    assert!(
        worst_window(&units, 60 * SEC) <= 100,
        "{}",
        worst_window(&units, 60 * SEC)
    );
    assert!(
        worst_window(&units, SEC) <= 5,
        "{}",
        worst_window(&units, SEC)
    );
    assert!(order.is_sorted(), "FIFO: {order:?}");
    // 100 per minute for 5 minutes, as a batch of 3 can fit (all but a
    // few units at each minute's end).
    assert!(units.len() >= 480, "{} units in 5 minutes", units.len());
}

/// Under `Limit` each rate bounds any window of its `per` by its
/// capacity plus what accrues: `2·max_n − 1`.
#[test]
fn two_rates_under_limit_keep_each_bound() {
    let (units, order) = run_tank(Hardcap::Limit, 8, 5);
    assert!(worst_window(&units, 60 * SEC) <= 199);
    assert!(worst_window(&units, SEC) <= 9);
    assert!(order.is_sorted(), "FIFO: {order:?}");
    // The line keeps the tank busy at 100 per minute.
    assert!(units.len() >= 495, "{} units in 5 minutes", units.len());
    assert!(units.len() <= 501, "{} units in 5 minutes", units.len());
}

/// A take of several rates is all or nothing: refused by one rate, it takes
/// nothing from the others; given back, it returns to every rate, exactly
/// (granted + left = accrued, for every rate).
#[test]
fn a_take_is_all_or_nothing_and_refunds_are_exact() {
    let levels = |tank: &Tank| tank.rates().into_iter().map(|(_, n)| n).collect::<Vec<_>>();
    for hardcap in [Hardcap::Limit, Hardcap::Window, Hardcap::Unbounded] {
        let clock = ManualClock::new();
        let tank = Tank::builder(rate("10/s"))
            .also(rate("3/s"))
            .hardcap(hardcap)
            .initial(3)
            .clock(clock.clone())
            .build()
            .unwrap();
        assert_eq!(levels(&tank), [3, 3], "{hardcap:?}");
        let two = Budget::try_take(&tank, 2).unwrap();
        assert!(Budget::try_take(&tank, 2).is_none());
        assert_eq!(
            levels(&tank),
            [1, 1],
            "{hardcap:?}: a refusal takes nothing"
        );
        let one = tank.try_take(1).unwrap();
        clock.advance(Duration::from_millis(100));
        tank.give_back(two);
        let (after_two, accrued) = match hardcap {
            // The 10/s window has not moved yet.
            Hardcap::Window => ([2, 2], [3, 3]),
            // 10/s accrued one; 3/s a third (of a bucket full at 3).
            _ => ([3, 2], [4, 3]),
        };
        assert_eq!(levels(&tank), after_two, "{hardcap:?}");
        tank.give_back(one);
        assert_eq!(levels(&tank), accrued, "{hardcap:?}");
    }
    // A rate's bucket that would have filled meanwhile cuts what comes
    // back, to every rate: never more than any rate's exact refund.
    let clock = ManualClock::new();
    let tank = Tank::builder(rate("10/s"))
        .also(rate("3/s"))
        .initial(3)
        .clock(clock.clone())
        .build()
        .unwrap();
    let two = Budget::try_take(&tank, 2).unwrap();
    clock.advance(Duration::from_millis(100));
    assert!(tank.has_fuel());
    tank.give_back(two);
    // Exact: 10/s 3, 3/s 2 (a third of a fuel ran into 3/s's cap, so 1⅔ of
    // the 2 come back there, and as much to 10/s).
    assert_eq!(levels(&tank), [2, 2]);
}

#[test]
fn wait_time_is_the_longest_and_capacity_the_least() {
    let clock = ManualClock::new();
    let tank = Tank::builder(rate("10/s"))
        .also(rate("2/s"))
        .also(rate("30/min"))
        .initial(2)
        .clock(clock.clone())
        .build()
        .unwrap();
    assert_eq!(tank.capacity(), 2);
    assert!(tank.has_fuel_n(2));
    // 10/s: 100 ms; 2/s: 500 ms; 30/min: 2 s.
    assert_eq!(tank.wait_time(1), Some(2 * SEC));
    assert_eq!(tank.wait_time(3), None, "beyond 2/s's capacity");
    clock.advance(2 * SEC);
    assert!(tank.has_fuel());
    assert!(!tank.has_fuel());
    // set_rate changes the first rate only.
    tank.set_rate(rate("1/s"));
    let rates: Vec<Rate> = tank.rates().into_iter().map(|(r, _)| r).collect();
    assert_eq!(rates, [rate("1/s"), rate("2/s"), rate("30/min")]);
    assert_eq!(tank.capacity(), 1);
}

#[test]
fn pausing_stops_every_rate() {
    let clock = ManualClock::new();
    let tank = Tank::builder(rate("10/s"))
        .also(rate("1/s"))
        .initial(0)
        .clock(clock.clone())
        .build()
        .unwrap();
    tank.pause();
    clock.advance(10 * SEC);
    tank.resume();
    assert_eq!(tank.level(), 0, "no fuel accrued while paused");
    clock.advance(SEC);
    assert_eq!(tank.level(), 1);
}

#[test]
fn bad_also_is_refused() {
    let err = Tank::builder(rate("10/s"))
        .also(rate("2/s"))
        .initial(5)
        .build()
        .unwrap_err();
    assert_eq!(
        err,
        Error::InitialOverCapacity {
            initial: 5,
            capacity: 2
        }
    );
    // Window starts full under every rate by default.
    let tank = Tank::builder(rate("10/s"))
        .also(rate("2/s"))
        .hardcap(Hardcap::Window)
        .build()
        .unwrap();
    assert_eq!(tank.rates(), [(rate("10/s"), 10), (rate("2/s"), 2)]);
}

#[cfg(feature = "shared-memory")]
#[test]
fn shared_memory_refuses_also() {
    let name = format!("fueltank-also-{}", std::process::id());
    let err = Tank::builder(rate("10/s"))
        .also(rate("2/s"))
        .shared_memory(name.as_str())
        .build()
        .unwrap_err();
    assert!(matches!(err, Error::Unsupported { .. }), "{err:?}");
    assert!(err.to_string().contains("must have one rate"), "{err}");
    assert!(
        !Tank::remove_shared_memory(name.as_str()).unwrap(),
        "nothing created"
    );
}

// The model: each rate's fuel as an exact fraction (1 fuel = `per` units,
// one nanosecond adds `max_n` units), and a FIFO line served whenever its
// head's fuel is there under every rate.

#[derive(Debug, Clone)]
enum Op {
    Take(u64),
    Wait(u64),
    Poll,
    Advance(u64),
    Refund(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1..4u64).prop_map(Op::Take),
        2 => (1..4u64).prop_map(Op::Wait),
        2 => Just(Op::Poll),
        3 => (1..400u64).prop_map(Op::Advance),
        2 => any::<usize>().prop_map(Op::Refund),
    ]
}

struct Bucket {
    max_n: u128,
    per: u128,
    cap: Option<u128>,
    level: u128,
}

struct Model {
    rates: Vec<Bucket>,
    now: u128,
    line: VecDeque<(usize, u64)>,
    granted: Vec<usize>,
    /// The last refund was exact under every rate: the model follows.
    exact: bool,
    /// Fuel held by tokens: n, and its shadow under each rate.
    held: Vec<(u64, Vec<u128>)>,
}

impl Model {
    fn fits(&self, n: u64) -> bool {
        let n = u128::from(n);
        self.rates.iter().all(|r| r.level >= n * r.per)
    }

    fn take(&mut self, n: u64) -> Option<Vec<u128>> {
        if !self.fits(n) {
            return None;
        }
        let n = u128::from(n);
        let shadows = self.rates.iter_mut().map(|r| {
            r.level -= n * r.per;
            n * r.per
        });
        Some(shadows.collect())
    }

    fn pass(&mut self, ns: u128) {
        self.now += ns;
        for (i, r) in self.rates.iter_mut().enumerate() {
            r.level += ns * r.max_n;
            if let Some(cap) = r.cap {
                r.level = r.level.min(cap * r.per);
                let room = cap * r.per - r.level;
                for (_, shadows) in &mut self.held {
                    shadows[i] = shadows[i].min(room);
                }
            }
        }
    }

    fn head_due(&self) -> Option<u128> {
        let &(_, n) = self.line.front()?;
        let due = self.rates.iter().map(|r| {
            let missing = (u128::from(n) * r.per).saturating_sub(r.level);
            missing.div_ceil(r.max_n)
        });
        Some(self.now + due.max().unwrap())
    }

    fn serve(&mut self) {
        while let Some(&(id, n)) = self.line.front() {
            if self.take(n).is_none() {
                break;
            }
            self.line.pop_front();
            self.granted.push(id);
        }
    }

    fn advance(&mut self, ns: u128) {
        let end = self.now + ns;
        while let Some(due) = self.head_due()
            && due <= end
        {
            self.pass(due - self.now);
            self.serve();
        }
        self.pass(end - self.now);
    }

    fn levels(&self) -> Vec<u64> {
        self.rates
            .iter()
            .map(|r| (r.level / r.per) as u64)
            .collect()
    }
}

fn run(hardcap: Hardcap, rates: Vec<(u64, u64)>, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let clock = ManualClock::new();
    let rate_of = |&(max_n, t): &(u64, u64)| Rate::new(max_n, Duration::from_millis(max_n * t));
    let mut builder: TankBuilder = Tank::builder(rate_of(&rates[0]).unwrap());
    for r in &rates[1..] {
        builder = builder.also(rate_of(r).unwrap());
    }
    let tank = builder
        .hardcap(hardcap)
        .initial(1)
        .clock(clock.clone())
        .build()
        .unwrap();
    let mut model = Model {
        rates: rates
            .iter()
            .map(|&(max_n, t)| {
                let per = u128::from(max_n * t) * 1_000_000;
                Bucket {
                    max_n: max_n.into(),
                    per,
                    cap: match hardcap {
                        Hardcap::One => Some(1),
                        Hardcap::Unbounded => None,
                        _ => Some(max_n.into()),
                    },
                    level: per,
                }
            })
            .collect(),
        now: 0,
        line: VecDeque::new(),
        granted: Vec::new(),
        exact: true,
        held: Vec::new(),
    };
    let cap = match hardcap {
        Hardcap::One => 1,
        Hardcap::Unbounded => 1 << 48,
        _ => rates.iter().map(|r| r.0).min().unwrap(),
    };
    type Wait = Pin<Box<AwaitFuel<Result<(), Error>>>>;
    let mut waiters: Vec<(usize, Wait)> = Vec::new();
    let mut tokens: Vec<Fuel> = Vec::new();
    let mut next = 0;
    for op in ops {
        match op {
            Op::Take(n) => {
                let fuel = Budget::try_take(&tank, n);
                if fuel.is_some() {
                    prop_assert!(model.line.is_empty() && model.fits(n), "over-granted {}", n);
                }
                if let Some(fuel) = fuel {
                    tokens.push(fuel);
                    let shadows = model.take(n).unwrap();
                    model.held.push((n, shadows));
                } else if model.line.is_empty() && n <= cap {
                    prop_assert!(!model.fits(n), "refused {} with fuel", n);
                }
            }
            Op::Wait(n) => {
                let mut future = Box::pin(tank.await_fuel_n(n));
                let got = poll(future.as_mut()).map(|r| r.is_ok());
                if n > cap {
                    prop_assert_eq!(got, Poll::Ready(false));
                    continue;
                }
                next += 1;
                match got {
                    Poll::Ready(_) => {
                        prop_assert!(
                            model.line.is_empty() && model.fits(n),
                            "waiter over-granted"
                        );
                        model.take(n);
                    }
                    Poll::Pending => {
                        prop_assert!(
                            !(model.line.is_empty() && model.fits(n)),
                            "queued with fuel"
                        );
                        model.line.push_back((next, n));
                        waiters.push((next, future));
                    }
                }
            }
            Op::Poll => {
                let mut ready = Vec::new();
                waiters.retain_mut(|(id, future)| match poll(future.as_mut()) {
                    Poll::Ready(result) => {
                        assert!(result.is_ok());
                        ready.push(*id);
                        false
                    }
                    Poll::Pending => true,
                });
                ready.sort();
                let mut expected = std::mem::take(&mut model.granted);
                expected.sort();
                prop_assert_eq!(ready, expected, "granted waiters");
            }
            Op::Advance(ms) => {
                clock.advance(Duration::from_millis(ms));
                model.advance(u128::from(ms) * 1_000_000);
            }
            Op::Refund(i) => {
                if tokens.is_empty() {
                    continue;
                }
                let i = i % tokens.len();
                tank.give_back(tokens.remove(i));
                let (n, shadows) = model.held.remove(i);
                let full = model
                    .rates
                    .iter()
                    .zip(&shadows)
                    .all(|(r, &s)| s == u128::from(n) * r.per);
                model.exact = full;
                for (r, s) in model.rates.iter_mut().zip(shadows) {
                    r.level += s;
                }
                model.pass(0);
                model.serve();
            }
        }
        let levels: Vec<u64> = tank.rates().into_iter().map(|(_, n)| n).collect();
        let expected = if model.line.is_empty() {
            model.levels()
        } else {
            vec![0; rates.len()]
        };
        if model.exact {
            prop_assert_eq!(&levels, &expected, "levels at {}", model.now);
        } else {
            // A bucket filled up since the grant: the tank gives back what
            // the tightest rate kept, never more than any rate's own
            // exact refund. From here the two differ; stop.
            prop_assert!(
                levels.iter().zip(&expected).all(|(a, b)| a <= b),
                "{:?} > {:?}",
                levels,
                expected
            );
            return Ok(());
        }
    }
    Ok(())
}

fn rates() -> impl Strategy<Value = Vec<(u64, u64)>> {
    // (max_n, interval in ms): whole milliseconds, so the model is exact.
    proptest::collection::vec((1..5u64, 1..200u64), 2..=3)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Random takes, waits, refunds and time against a model of every
    /// rate's bucket: no grant that any rate does not allow, none refused
    /// that all allow, the line in order, refunds exact while no rate's
    /// bucket filled up meanwhile (and never more than exact after).
    #[test]
    fn every_rate_keeps_its_bucket(
        hardcap in prop_oneof![Just(Hardcap::Limit), Just(Hardcap::One), Just(Hardcap::Unbounded)],
        rates in rates(),
        ops in proptest::collection::vec(op(), 1..80),
    ) {
        run(hardcap, rates, ops)?;
    }
}
