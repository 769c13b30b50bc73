//! A keyed tank against a map of plain `Tank`s on the same `ManualClock`:
//! under random takes, waits (polled, dropped), time and `set_rate`, every
//! key is exactly its own tank (every hardcap, burst, initial fuel, rates
//! of `also`, `rate_by`); under floods of new keys (eviction, sweeps,
//! debts) with takes and time, a key is never granted what its own tank,
//! fed the same grants, would refuse, and no more keys are held than the
//! bound and those held by waits.
//!
//! Not modelled under floods: `set_rate`, as a key forgotten or evicted
//! owing nothing is a key never seen, which starts full at the new rate
//! where its tank keeps its fuel (a design limit); and waits, which a
//! `Tank` serves at other times than a key whose debt outlived it.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::poll;
use fueltank::clock::ManualClock;
use fueltank::{Budget, BudgetWait, Fuel, Hardcap, KeyedBudget, KeyedTank, Rate, Tank};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Take { key: u64, n: u64 },
    Wait { key: u64, n: u64 },
    Poll,
    Drop { i: usize },
    Advance { us: u64 },
    SetRate { i: usize },
    Flood { count: u64 },
}

const RATES: [&str; 4] = ["5/s", "10/s", "1/s", "100/s"];

fn op(flood: bool) -> impl Strategy<Value = Op> {
    let flood_weight = if flood { 2 } else { 0 };
    // Under floods, neither waits nor `set_rate` (see `run`).
    let wait_weight = if flood { 0 } else { 2 };
    let set_rate_weight = if flood { 0 } else { 1 };
    prop_oneof![
        6 => (0u64..4, 1u64..5).prop_map(|(key, n)| Op::Take { key, n }),
        wait_weight => (0u64..4, 1u64..4).prop_map(|(key, n)| Op::Wait { key, n }),
        3 => Just(Op::Poll),
        1 => (0usize..8).prop_map(|i| Op::Drop { i }),
        4 => (0u64..600_000).prop_map(|us| Op::Advance { us }),
        set_rate_weight => (0usize..RATES.len()).prop_map(|i| Op::SetRate { i }),
        flood_weight => (1u64..200).prop_map(|count| Op::Flood { count }),
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

/// Key 0 is a partner at 50/s (with `rate_by`); key 1 is given the
/// builder's rate (so it follows `set_rate`); the others have none.
fn tier(key: &u64) -> Rate {
    match key {
        0 => "50/s",
        _ => "5/s",
    }
    .parse()
    .unwrap()
}

#[derive(Debug, Clone)]
struct Setup {
    hardcap: Hardcap,
    burst: Option<u64>,
    initial: Option<u64>,
    also: Vec<Rate>,
    rate_by: bool,
}

impl Setup {
    fn capacity(&self, rate: Rate) -> u64 {
        match (self.hardcap, self.burst) {
            (Hardcap::Limit, Some(burst)) => burst,
            (Hardcap::One, _) => 1,
            _ => rate.max_n(),
        }
    }

    /// The key's own tank, as the keyed tank makes it now at `rate`.
    fn tank(&self, rate: Rate, clock: &ManualClock) -> Tank {
        let request = self.also.iter().map(|r| r.max_n()).fold(
            if self.hardcap == Hardcap::Unbounded {
                u64::MAX
            } else {
                self.capacity(rate)
            },
            u64::min,
        );
        let initial = self.initial.unwrap_or(self.capacity(rate)).min(request);
        let mut builder = Tank::builder(rate)
            .hardcap(self.hardcap)
            .initial(initial)
            .clock(clock.clone());
        if let Some(burst) = self.burst {
            builder = builder.burst(burst);
        }
        for &rate in &self.also {
            builder = builder.also(rate);
        }
        builder.build().unwrap()
    }
}

/// A wait on the keyed tank (`ours`, till served) and the same on the
/// key's own tank (`theirs`): under floods, theirs may be served first,
/// and the fuel is kept until ours is served (then spent) or dropped (then
/// given back).
struct Waiting {
    key: u64,
    n: u64,
    ours: Option<BudgetWait>,
    theirs: Option<BudgetWait>,
    kept: Option<Fuel>,
}

impl Waiting {
    fn poll_theirs(&mut self) {
        if let Some(theirs) = &mut self.theirs
            && let std::task::Poll::Ready(out) = poll(theirs.as_mut())
        {
            self.theirs = None;
            self.kept = out.ok().flatten();
        }
    }
}

fn run(setup: Setup, max_keys: usize, exact: bool, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let clock = ManualClock::new();
    let base: Rate = "5/s".parse().unwrap();
    let mut builder = KeyedTank::<u64>::builder(base)
        .hardcap(setup.hardcap)
        .max_keys(max_keys)
        .clock(clock.clone());
    if let Some(burst) = setup.burst {
        builder = builder.burst(burst);
    }
    if let Some(initial) = setup.initial {
        builder = builder.initial(initial);
    }
    for &rate in &setup.also {
        builder = builder.also(rate);
    }
    if setup.rate_by {
        builder = builder.rate_by(tier);
    }
    let keyed = builder.build().unwrap();
    let mut current = base;
    let mut tanks: HashMap<u64, (Tank, bool)> = HashMap::new();
    let mut waits: Vec<Waiting> = Vec::new();
    let flooded = !exact;
    // Keys held by waits: beyond the bound while held, and after until a
    // new key comes to their shard.
    let mut held = 0;
    let mut next_flood = 1_000u64;
    for (step, op) in ops.into_iter().enumerate() {
        // Every tracked key's tank, made when the key is first used.
        let mut model = |key: u64| -> Tank {
            let own = setup.rate_by && key == 0;
            let rate = if own { tier(&key) } else { current };
            tanks
                .entry(key)
                .or_insert_with(|| (setup.tank(rate, &clock), own))
                .0
                .clone()
        };
        match op {
            Op::Take { key, n } => {
                let tank = model(key);
                let got = keyed.has_fuel_n(&key, n);
                if flooded {
                    if got {
                        prop_assert!(
                            tank.has_fuel_n(n),
                            "step {step}: key {key} granted {n} beyond its own tank (level {})",
                            tank.level()
                        );
                    }
                } else {
                    prop_assert_eq!(
                        got,
                        tank.has_fuel_n(n),
                        "step {}: key {} takes {}",
                        step,
                        key,
                        n
                    );
                }
            }
            Op::Wait { key, n } => {
                if n > KeyedBudget::capacity(&keyed, &key) {
                    // Refused before the key is made.
                    let mut wait = KeyedBudget::wait(&keyed, &key, n, None);
                    let out = poll(wait.as_mut());
                    prop_assert!(matches!(out, std::task::Poll::Ready(Err(_))), "{out:?}");
                    continue;
                }
                let tank = model(key);
                let mut ours = KeyedBudget::wait(&keyed, &key, n, None);
                let theirs = Budget::wait(&tank, n, None);
                let ready = poll(ours.as_mut()).is_ready();
                let mut w = Waiting {
                    key,
                    n,
                    ours: Some(ours),
                    theirs: Some(theirs),
                    kept: None,
                };
                w.poll_theirs();
                if flooded {
                    prop_assert!(
                        !ready || w.theirs.is_none(),
                        "step {step}: key {key} wait for {n} granted beyond its own tank"
                    );
                } else {
                    prop_assert_eq!(
                        ready,
                        w.theirs.is_none(),
                        "step {}: key {} waits for {}",
                        step,
                        key,
                        n
                    );
                }
                if !ready {
                    held += 1;
                    waits.push(w);
                }
            }
            Op::Poll => {
                for w in &mut waits {
                    let ready = match w.ours.as_mut().map(|ours| poll(ours.as_mut())) {
                        Some(std::task::Poll::Ready(out)) => {
                            prop_assert!(matches!(out, Ok(Some(_))), "step {step}: {out:?}");
                            w.ours = None;
                            true
                        }
                        _ => false,
                    };
                    let theirs_before = w.theirs.is_none();
                    w.poll_theirs();
                    let (key, n) = (w.key, w.n);
                    if flooded {
                        prop_assert!(
                            !ready || w.theirs.is_none(),
                            "step {step}: key {key}'s wait for {n} granted beyond its own tank (level {})",
                            tanks[&key].0.level()
                        );
                    } else {
                        prop_assert!(!theirs_before, "step {step}: key {key}'s wait for {n} late");
                        prop_assert_eq!(
                            ready,
                            w.theirs.is_none(),
                            "step {}: key {}'s wait for {}",
                            step,
                            key,
                            n
                        );
                    }
                }
                // Served: the fuel their tank kept for them is spent.
                waits.retain(|w| w.ours.is_some());
            }
            Op::Drop { i } => {
                if i < waits.len() {
                    let w = waits.remove(i);
                    if let Some(fuel) = w.kept {
                        // Granted by their tank only: not spent.
                        tanks[&w.key].0.give_back(fuel);
                    }
                }
            }
            Op::Advance { us } => clock.advance(Duration::from_micros(us)),
            Op::SetRate { i } => {
                let rate: Rate = RATES[i].parse().unwrap();
                // Only when no wait would exceed the new capacity.
                if waits.iter().any(|w| w.n > setup.capacity(rate)) {
                    continue;
                }
                // Nor while fuel their tank granted is kept (a `Tank` takes
                // back no grant from before a change of rate).
                if waits.iter().any(|w| w.kept.is_some()) {
                    continue;
                }
                // A key made at a rate whose capacity is below `initial`
                // starts with its capacity under that rate and `initial`
                // under each rate of `also`; a `Tank`'s `initial` is one
                // number for every rate.
                if !setup.also.is_empty() && setup.initial.is_some_and(|i| i > setup.capacity(rate))
                {
                    continue;
                }
                // A key full like a fresh one may have been forgotten by
                // a sweep: it would come back as a new key, full at the
                // new rate, where its tank keeps its fuel (a design limit:
                // a forgotten key is a key never seen). A take beyond any
                // capacity makes it again first, refused, as it was.
                // (Rounds till one changes nothing: a probe's sweep may
                // forget a key probed before it.)
                // Under floods keys may evict each other for good: a few
                // rounds only.
                let mut len = usize::MAX;
                for _ in 0..4 {
                    if keyed.len() == len {
                        break;
                    }
                    len = keyed.len();
                    for &key in tanks.keys() {
                        prop_assert!(!keyed.has_fuel_n(&key, u64::MAX));
                    }
                }
                keyed.set_rate(rate);
                current = rate;
                for (tank, own) in tanks.values() {
                    if !own {
                        tank.set_rate(rate);
                    }
                }
            }
            Op::Flood { count } => {
                for _ in 0..count {
                    keyed.has_fuel_n(&next_flood, 1);
                    next_flood += 1;
                }
                prop_assert!(
                    keyed.len() <= max_keys + held,
                    "{} keys, {} held by waits",
                    keyed.len(),
                    held
                );
            }
        }
        if !flooded {
            for (key, (tank, _)) in &tanks {
                prop_assert_eq!(
                    keyed.level(key),
                    tank.level(),
                    "step {}: key {}'s level",
                    step,
                    key
                );
                prop_assert_eq!(
                    keyed.available(key),
                    tank.available(),
                    "step {}: key {} available",
                    step,
                    key
                );
            }
        }
    }
    Ok(())
}

fn setup() -> impl Strategy<Value = Setup> {
    (
        hardcap(),
        proptest::option::of(1u64..12),
        proptest::option::of(0u64..6),
        proptest::sample::subsequence(vec!["12/3s", "40/20s"], 0..=2),
        any::<bool>(),
    )
        .prop_map(|(hardcap, burst, initial, also, rate_by)| {
            let window = hardcap == Hardcap::Window;
            let burst = burst.filter(|_| hardcap == Hardcap::Limit);
            let also: Vec<Rate> = if window {
                Vec::new()
            } else {
                also.iter().map(|r| r.parse().unwrap()).collect()
            };
            // A key starts full under every rate unless told: a `Tank`'s
            // `initial` is one number for every rate.
            let initial = initial.or_else(|| {
                (!also.is_empty()).then(|| {
                    let cap = match (hardcap, burst) {
                        (Hardcap::Limit, Some(burst)) => burst,
                        (Hardcap::One, _) => 1,
                        _ => 5,
                    };
                    also.iter().map(|r| r.max_n()).fold(cap, u64::min)
                })
            });
            Setup {
                hardcap,
                burst,
                initial,
                also,
                rate_by: rate_by && !window,
            }
        })
        .prop_filter("initial within capacity", |s| {
            // The builder's rate's capacity, within `also`'s.
            let least = std::iter::once(s.capacity("5/s".parse().unwrap()))
                .chain(s.also.iter().map(|r| r.max_n()))
                .min()
                .unwrap();
            s.initial.is_none_or(|i| i <= least)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]
    #[test]
    fn every_key_is_its_own_tank(
        setup in setup(),
        ops in proptest::collection::vec(op(false), 1..200),
    ) {
        run(setup, 1 << 16, true, ops)?;
    }

    #[test]
    fn no_key_beyond_its_own_tank_under_floods(
        setup in setup(),
        max_keys in 1usize..80,
        ops in proptest::collection::vec(op(true), 1..200),
    ) {
        run(setup, max_keys, false, ops)?;
    }
}
