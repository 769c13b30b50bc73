//! A `Window` tank keeps its promise across rate changes: after a change
//! to `max_n'` per `per'`, every window of `per'` that ends after it holds
//! at most `max_n'` grants, counting those of the last `per` before the
//! change (older ones had left the window and are forgotten); and a change
//! makes no burst (the fuel there is kept, capped). Random takes,
//! waits, rate changes and time on a manual clock (proptest), each grant's
//! time checked against the rate in force. Time moves in steps of 250 µs
//! while a waiter waits, a step every grant of these rates falls on, so a
//! waiter is seen granted when it is.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use common::poll;
use fueltank::clock::ManualClock;
use fueltank::{Hardcap, Rate, Tank};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Take(u64),
    Wait(u64),
    SetRate(u64, u64),
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (1..4u64).prop_map(Op::Take),
        (1..3u64).prop_map(Op::Wait),
        (prop::sample::select(vec![1u64, 2, 4, 5, 8]), 1..4u64)
            .prop_map(|(n, s)| Op::SetRate(n, s)),
        (0..1_200u64).prop_map(Op::Advance),
    ]
}

/// Every grant, and the rate in force since when.
struct Model {
    /// (µs since the start, how many).
    grants: Vec<(u64, u64)>,
    max_n: u64,
    per_us: u64,
    changed_at: u64,
}

impl Model {
    /// Records `n` granted at `at`: the window of `per'` that ends there
    /// holds at most `max_n'` (once it ends after the change).
    fn granted(&mut self, at: u64, n: u64) -> Result<(), TestCaseError> {
        self.grants.push((at, n));
        if at >= self.changed_at {
            let held: u64 = (self.grants.iter())
                .filter(|&&(t, _)| t + self.per_us > at)
                .map(|&(_, n)| n)
                .sum();
            prop_assert!(
                held <= self.max_n,
                "{held} in the {} µs to {at} µs, at most {}: {:?}",
                self.per_us,
                self.max_n,
                self.grants
            );
        }
        Ok(())
    }
}

type Waiter = Pin<Box<dyn Future<Output = Result<(), fueltank::Error>>>>;

/// Polls every waiter: those granted are recorded at `now`, those
/// refused (beyond a new `max_n`) dropped.
fn serve(
    waiters: &mut Vec<(u64, Waiter)>,
    model: &mut Model,
    now: u64,
) -> Result<(), TestCaseError> {
    let mut i = 0;
    while i < waiters.len() {
        match poll(waiters[i].1.as_mut()) {
            Poll::Ready(Ok(())) => {
                let (n, _) = waiters.remove(i);
                model.granted(now, n)?;
            }
            Poll::Ready(Err(_)) => _ = waiters.remove(i),
            Poll::Pending => i += 1,
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn every_window_after_a_change_holds_at_most_its_max_n(
        ops in proptest::collection::vec(op(), 1..80),
    ) {
        let clock = ManualClock::new();
        let tank = Tank::builder(Rate::per_second(5).unwrap())
            .hardcap(Hardcap::Window)
            .clock(clock.clone())
            .build()
            .unwrap();
        let mut model = Model { grants: Vec::new(), max_n: 5, per_us: 1_000_000, changed_at: 0 };
        let mut now = 0u64;
        let mut waiters: Vec<(u64, Waiter)> = Vec::new();
        for op in ops {
            match op {
                Op::Take(n) => {
                    if tank.has_fuel_n(n) {
                        model.granted(now, n)?;
                    }
                }
                Op::Wait(n) => waiters.push((n, Box::pin(tank.await_fuel_n(n)))),
                Op::SetRate(n, s) => {
                    let level = tank.level();
                    tank.set_rate(Rate::new(n, Duration::from_secs(s)).unwrap());
                    // No burst: the fuel there is kept, capped.
                    prop_assert!(tank.level() <= level.min(n), "{} after {level}", tank.level());
                    // Grants that had left the old window are forgotten.
                    let per_us = model.per_us;
                    model.grants.retain(|&(t, _)| t + per_us > now);
                    (model.max_n, model.per_us, model.changed_at) = (n, s * 1_000_000, now);
                }
                Op::Advance(ms) => {
                    let end = now + ms * 1_000;
                    while now < end {
                        let step = if waiters.is_empty() { end - now } else { 250 };
                        clock.advance(Duration::from_micros(step));
                        now += step;
                        serve(&mut waiters, &mut model, now)?;
                    }
                }
            }
            serve(&mut waiters, &mut model, now)?;
        }
    }
}
