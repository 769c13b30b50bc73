//! Fuel given back (`Tank::give_back`, a waiter dropped
//! after its grant): exact whenever the fuel could not have overflowed the
//! cap since it was taken, whatever other permits, tokens and waiters did
//! meanwhile; spent (never minted) when it could have.
//!
//! Each test checks conservation: fuel granted and kept + fuel left in the
//! tank = fuel accrued.

mod common;

use std::task::Poll;
use std::time::Duration;

use common::{poll, poll_with, tank};
use fueltank::clock::ManualClock;
use fueltank::{Budget, Hardcap, Rate};

#[test]
fn refunds_by_other_tokens_do_not_shrink_this_one() {
    let clock = ManualClock::new();
    let tank = tank("2/s", Hardcap::Limit, 2, &clock);
    let held = tank.try_take(1).unwrap();
    tank.give_back(tank.try_take(1).unwrap());
    tank.give_back(tank.try_take(1).unwrap());
    tank.give_back(held);
    assert_eq!(tank.level(), 2, "no time passed: every fuel is back");
}

#[test]
fn take_and_refund_cycles_keep_every_fuel() {
    let clock = ManualClock::new();
    let tank = tank("10/s", Hardcap::Limit, 10, &clock);
    for cycle in 0..20 {
        let fuel: Vec<_> = (0..10).map(|_| tank.try_take(1).unwrap()).collect();
        assert!(tank.try_take(1).is_none());
        // Give back in an order that differs from the taking order.
        let mut fuel: Vec<_> = fuel.into_iter().map(Some).collect();
        for i in (0..10).map(|i| (i * 7 + cycle) % 10) {
            tank.give_back(fuel[i].take().unwrap());
        }
        assert_eq!(tank.level(), 10, "cycle {cycle}");
    }
}

#[test]
fn fuel_given_back_in_any_order_all_comes_back() {
    let clock = ManualClock::new();
    let tank = tank("10/s", Hardcap::Limit, 10, &clock);
    let mut fuel: Vec<_> = (0..10).map(|_| Some(tank.try_take(1).unwrap())).collect();
    clock.advance(Duration::from_millis(30)); // part of the next fuel accrues
    for i in [3, 9, 0, 5, 1, 8, 2, 7, 4, 6] {
        tank.give_back(fuel[i].take().unwrap());
    }
    assert_eq!(tank.level(), 10);
    // And the fraction accrued meanwhile was kept: the tank is full, so the
    // next take leaves 9 and the refill of the tenth is not early.
    assert!(tank.has_fuel());
    assert_eq!(tank.wait_time(10), Some(Duration::from_millis(100)));
}

#[test]
fn fuel_that_could_have_overflowed_is_spent() {
    let clock = ManualClock::new();
    let tank = tank("10/s", Hardcap::Limit, 10, &clock);
    let held = tank.try_take(1).unwrap();
    // The bucket refills to its cap: the held fuel would have overflowed.
    clock.advance(Duration::from_millis(100));
    assert_eq!(tank.level(), 10);
    // Someone drains it; giving the old fuel back must not add an 11th.
    assert!(tank.has_fuel_n(10));
    tank.give_back(held);
    assert_eq!(tank.level(), 0);
}

#[test]
fn a_partial_overflow_gives_back_only_what_fit() {
    let clock = ManualClock::new();
    let tank = tank("10/s", Hardcap::Limit, 10, &clock);
    let held = tank.try_take(1).unwrap(); // 9 left, tat one interval out
    clock.advance(Duration::from_millis(60)); // 9.6 in the bucket
    assert!(tank.has_fuel()); // 8.6 left; the counterfactual had 10 (capped)
    tank.give_back(held);
    // Exact: had `held` never been taken, the bucket would hold 9.6 + 0.4
    // capped = 10 at 60 ms, then 9 after the take: the refund gives back
    // 0.4 of a fuel only.
    assert_eq!(tank.level(), 9);
    assert_eq!(tank.wait_time(10), Some(Duration::from_millis(100)));
}

/// Two grants cut by the same take: the first given back fills the room
/// that take found, so the second finds less. Each alone could come back
/// up to that room; both together not beyond it.
#[test]
fn two_grants_before_one_cut_share_its_room() {
    let clock = ManualClock::new();
    let tank = tank("2/s", Hardcap::Limit, 2, &clock);
    let a = tank.try_take(1).unwrap();
    let b = tank.try_take(1).unwrap();
    clock.advance(Duration::from_millis(750)); // 1.5 in the bucket
    assert!(tank.has_fuel()); // 0.5 left; the counterfactual had 2 (capped)
    tank.give_back(a);
    tank.give_back(b);
    // Had neither been taken: 2 (capped) at 750 ms, 1 after the take. The
    // take found room for 0.5: the two refunds together give back 0.5.
    assert_eq!(tank.level(), 1);
    assert_eq!(tank.wait_time(2), Some(Duration::from_millis(500)));
}

/// Two grants before a take that found room for either of them alone but
/// not for both: given back together, they should return only that room.
/// They return both (the tank then holds 10, one more than it may): the
/// take was not recorded as a cut, its headroom being above the largest
/// grant (`src/tank/refunds.rs`, *What is not exact*).
#[test]
#[ignore = "the open refund defect of src/tank/refunds.rs (What is not exact): 10, not 9"]
fn two_grants_before_a_take_with_room_for_one_share_it() {
    let clock = ManualClock::new();
    let tank = tank("10/s", Hardcap::Limit, 10, &clock);
    let a = tank.try_take(5).unwrap();
    let b = tank.try_take(5).unwrap();
    clock.advance(Duration::from_millis(300)); // 3 in the bucket
    assert!(tank.has_fuel()); // 2 left; the take found room for 7, not 10
    tank.give_back(a);
    tank.give_back(b);
    // Had neither been taken: 10 (capped) at 300 ms, 9 after the take.
    assert_eq!(tank.level(), 9);
    assert_eq!(tank.wait_time(10), Some(Duration::from_millis(100)));
}

/// Reserve an estimate, give back what was not used, in parts: each part
/// comes back as far as it could not have run into the cap since, and no
/// further: fuel kept + fuel left = fuel accrued.
#[test]
fn parts_given_back_are_exact() {
    let clock = ManualClock::new();
    let tank = tank("4/s", Hardcap::Limit, 4, &clock); // T = 250 ms
    let mut fuel = tank.try_take(4).unwrap();
    clock.advance(Duration::from_millis(750)); // 3 in the bucket
    assert!(tank.has_fuel_n(3)); // it had room for 1 more
    tank.give_back(fuel.split(2));
    // Had those 2 never been taken: 4 (capped) at 750 ms, 1 after the
    // take. One comes back.
    assert_eq!(tank.level(), 1);
    tank.give_back(fuel.split(1)); // the room is used up: spent
    assert_eq!(tank.wait_time(2), Some(Duration::from_millis(250)));
    assert_eq!(fuel.amount(), 1);
    // Accrued 4 + 3 = 7: kept 3 of the token and the 3 taken, 1 left.
    assert!(tank.has_fuel());
    assert!(!tank.has_fuel());
}

/// The same under `Window`: each part leaves the window, the rest stays.
#[test]
fn window_parts_given_back_are_exact() {
    let clock = ManualClock::new();
    let tank = tank("4/s", Hardcap::Window, 4, &clock);
    let mut fuel = tank.try_take(3).unwrap();
    assert_eq!(tank.level(), 1);
    tank.give_back(fuel.split(1));
    assert_eq!(tank.level(), 2);
    tank.give_back(fuel.split(5)); // more than it holds: the 2 it has
    assert_eq!(tank.level(), 4);
    assert_eq!(fuel.amount(), 0);
    assert!(tank.has_fuel_n(4));
    assert!(!tank.has_fuel());
}

/// A granted waiter dropped long after its grant, with others waiting
/// behind it: its fuel goes to the line.
#[test]
fn a_granted_waiter_dropped_late_gives_its_fuel_to_the_line() {
    let clock = ManualClock::new();
    let tank = tank("10/s", Hardcap::Limit, 0, &clock);
    let mut first = Box::pin(tank.await_fuel());
    assert!(poll(first.as_mut()).is_pending());
    let mut line: Vec<_> = (0..40).map(|_| Box::pin(tank.await_fuel())).collect();
    for waiter in &mut line {
        assert!(poll(waiter.as_mut()).is_pending());
    }
    clock.advance(Duration::from_millis(100)); // `first` is granted, not seen
    for _ in 0..20 {
        clock.advance(Duration::from_millis(100));
    }
    drop(first);
    let served = line
        .iter_mut()
        .map(|w| poll(w.as_mut()).is_ready())
        .filter(|&ready| ready)
        .count();
    // 21 fuel accrued over 2.1 s; `first` gave its one back.
    assert_eq!(served, 21);
}

#[test]
fn a_permit_from_before_set_rate_is_spent_not_minted() {
    let clock = ManualClock::new();
    let tank = tank("1/s", Hardcap::Limit, 1, &clock);
    let old = tank.try_take(1).unwrap();
    tank.set_rate(Rate::per_second(1).unwrap());
    clock.advance(Duration::from_secs(1));
    assert!(tank.has_fuel());
    tank.give_back(old);
    assert!(!tank.has_fuel(), "Limit 1/s: one grant per second");
}

#[test]
fn many_set_rates_never_revive_an_old_permit() {
    let clock = ManualClock::new();
    let tank = tank("2/s", Hardcap::Limit, 2, &clock);
    let old = tank.try_take(1).unwrap();
    tank.set_rate("100/100ms".parse().unwrap());
    clock.advance(Duration::from_millis(200));
    assert_eq!(tank.level(), 100, "full: `old` would have overflowed");
    assert!(tank.has_fuel_n(100));
    // The guard of the earlier refund rule wrapped after exactly 2^24 rate
    // changes (2^40 added per change to a u64): this makes 2^24 in all.
    let rate = Rate::per_second(2).unwrap();
    for _ in 1..(1 << 24) {
        tank.set_rate(rate);
    }
    tank.give_back(old);
    assert!(!tank.has_fuel(), "a fuel that overflowed came back");
}

#[test]
fn one_gives_back_only_if_nothing_was_taken_since() {
    let clock = ManualClock::new();
    let tank = tank("10/s", Hardcap::One, 1, &clock);
    let held = tank.try_take(1).unwrap();
    tank.give_back(held);
    assert_eq!(tank.level(), 1, "nothing happened since: back");
    let held = tank.try_take(1).unwrap();
    clock.advance(Duration::from_millis(100));
    assert!(tank.has_fuel());
    tank.give_back(held);
    assert!(!tank.has_fuel(), "grants stay at least T apart");
}

#[test]
fn unbounded_refunds_are_always_exact() {
    let clock = ManualClock::new();
    let tank = tank("10/s", Hardcap::Unbounded, 5, &clock);
    let held = tank.try_take(1).unwrap();
    clock.advance(Duration::from_secs(10));
    assert!(tank.has_fuel_n(100));
    tank.give_back(held);
    assert_eq!(tank.level(), 5);
}

#[test]
fn window_refunds_are_exact_in_any_order() {
    let clock = ManualClock::new();
    let tank = tank("4/s", Hardcap::Window, 4, &clock);
    let a = tank.try_take(1).unwrap();
    clock.advance(Duration::from_millis(300));
    let b = tank.try_take(1).unwrap();
    let c = tank.try_take(1).unwrap();
    tank.give_back(b);
    tank.give_back(a);
    assert_eq!(tank.level(), 3);
    tank.give_back(c);
    assert_eq!(tank.level(), 4);
}

/// A cancelled `await_fuel_n` that was granted gives back all its fuel when
/// nothing could have overflowed, to the waiter behind it.
#[test]
fn a_granted_batch_waiter_dropped_gives_its_batch_to_the_next() {
    let clock = ManualClock::new();
    let tank = tank("10/s", Hardcap::Limit, 0, &clock);
    let mut batch = Box::pin(tank.await_fuel_n(5));
    assert!(poll(batch.as_mut()).is_pending());
    let mut next = Box::pin(tank.await_fuel_n(5));
    assert!(poll(next.as_mut()).is_pending());
    for _ in 0..5 {
        clock.advance(Duration::from_millis(100));
    }
    // `batch` is granted (unseen); dropping it hands its 5 to `next`.
    drop(batch);
    assert!(matches!(poll(next.as_mut()), Poll::Ready(Ok(()))));
    assert_eq!(tank.level(), 0);
}

/// Real threads: tasks wait all the time, each keeping a few waits open and
/// polling them rarely, so that a wait may sit granted and unseen for long
/// (longer than the bucket takes to fill, `(C − 1)·T`) before it is dropped
/// at a random point. At the end, fuel granted and seen plus fuel left
/// equals fuel accrued, exactly: no refund was lost, none minted.
#[test]
fn a_cancel_storm_on_real_threads_conserves_fuel() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    let clock = ManualClock::new();
    // C = 100, so (C − 1)·T = 990 ms: waits are held up to 2 s.
    let tank = tank("100/s", Hardcap::Limit, 0, &clock);
    let seen = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..4u64)
        .map(|worker| {
            let (tank, seen, stop) = (tank.clone(), seen.clone(), stop.clone());
            let clock = clock.clone();
            std::thread::spawn(move || {
                let waker = std::task::Waker::noop();
                // A small xorshift: each worker its own sequence.
                let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ worker;
                let mut next = move || {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    rng
                };
                let mut open: Vec<(std::time::Instant, _)> = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    while open.len() < 16 {
                        // Half are dropped soon, half held long: most
                        // waits are in the line, some sit granted for up
                        // to 2 s.
                        let hold = match next() % 2 {
                            0 => Duration::from_millis(next() % 50),
                            _ => Duration::from_millis(1_000 + next() % 1_000),
                        };
                        let mut wait = Box::pin(tank.await_fuel());
                        // Polled once: in the line (or served at once).
                        if poll_with(wait.as_mut(), waker).is_ready() {
                            seen.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        open.push((clock.now() + hold, wait));
                    }
                    let i = (next() % open.len() as u64) as usize;
                    if open[i].0 <= clock.now() {
                        // Its time is up: polled once more, or dropped
                        // unseen, whatever its state.
                        let (_, mut wait) = open.swap_remove(i);
                        if next() % 2 == 0 && poll_with(wait.as_mut(), waker).is_ready() {
                            seen.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    std::thread::yield_now();
                }
            })
        })
        .collect();
    let steps = 3_000; // 30 s of the tank's time, 10 ms at a time
    let mut filled = 0;
    for _ in 0..steps {
        // Someone waits at each step (give the workers a moment), so the
        // bucket never fills and no fuel is lost to the cap.
        let start = std::time::Instant::now();
        while tank.waiting() == 0 && start.elapsed() < Duration::from_millis(10) {
            std::thread::yield_now();
        }
        clock.advance(Duration::from_millis(10));
        filled = filled.max(tank.level());
    }
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.join().unwrap();
    }
    // Every wait is dropped now; nobody waits, so the level is the tank's
    // own.
    let accrued = steps;
    let left = tank.level();
    let seen = seen.load(Ordering::Relaxed);
    assert!(filled < 100, "the bucket filled: the test proves nothing");
    assert_eq!(seen + left, accrued, "seen {seen} + left {left}");
    assert!(seen > accrued / 4, "the storm was served: {seen}");
}
