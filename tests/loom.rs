//! Loom models of the lock-free parts of a tank: the atomic word that
//! `has_fuel` takes from without a lock, racing the core that seizes it
//! (waiters, `set_rate`, `pause`), and a waiter's drop racing its grant.
//!
//! Run with
//! `RUSTFLAGS="--cfg fueltank_loom" cargo test --release --test loom`.
#![cfg(fueltank_loom)]

mod common;

use std::time::Duration;

use common::{poll, tank};
use fueltank::clock::ManualClock;
use fueltank::{Budget, Hardcap, Rate};
use loom::thread;

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(f);
}

#[test]
fn two_takers_share_one_fuel() {
    model(|| {
        let clock = ManualClock::new();
        let tank = tank("1/s", Hardcap::Limit, 1, &clock);
        let other = tank.clone();
        let t = thread::spawn(move || other.has_fuel());
        let mine = tank.has_fuel();
        let theirs = t.join().unwrap();
        assert!(mine ^ theirs, "exactly one of two takers gets the one fuel");
    });
}

#[test]
fn a_take_racing_set_rate_never_over_grants() {
    model(|| {
        let clock = ManualClock::new();
        // Two fuel; the new rate's capacity is one.
        let tank = tank("2/s", Hardcap::Limit, 2, &clock);
        let other = tank.clone();
        let t = thread::spawn(move || other.has_fuel());
        tank.set_rate(Rate::per_second(1).unwrap());
        let mine = tank.has_fuel();
        let theirs = t.join().unwrap();
        // Before the change both may go; after it, only one fuel is left.
        assert!(mine || theirs, "the first take always finds fuel");
        assert_eq!(tank.level(), 0);
        let granted = u64::from(mine) + u64::from(theirs);
        assert!(granted <= 2);
    });
}

#[test]
fn a_take_racing_pause_and_resume_sees_one_state() {
    model(|| {
        let clock = ManualClock::new();
        let tank = tank("1/s", Hardcap::Limit, 1, &clock);
        let other = tank.clone();
        let t = thread::spawn(move || {
            other.pause();
            other.resume();
        });
        let mine = tank.has_fuel();
        t.join().unwrap();
        assert!(mine, "pausing keeps the fuel in the tank");
        assert!(!tank.has_fuel());
    });
}

#[test]
fn a_take_racing_a_waiter_grants_the_one_fuel_once() {
    model(|| {
        let clock = ManualClock::new();
        let tank = tank("1/s", Hardcap::Limit, 1, &clock);
        let other = tank.clone();
        let t = thread::spawn(move || other.has_fuel());
        let mut waiter = Box::pin(tank.await_fuel());
        let waited = poll(waiter.as_mut()).is_ready();
        let took = t.join().unwrap();
        assert!(waited ^ took, "one fuel, one grant");
        if !waited {
            assert_eq!(tank.waiting(), 1);
        }
    });
}

#[test]
fn dropping_a_waiter_while_it_is_granted_loses_no_fuel() {
    model(|| {
        let clock = ManualClock::new();
        let tank = tank("1/s", Hardcap::Limit, 0, &clock);
        let mut waiter = Box::pin(tank.await_fuel());
        assert!(poll(waiter.as_mut()).is_pending());
        let ticker = clock.clone();
        // The driver grants the waiter on this thread...
        let t = thread::spawn(move || ticker.advance(Duration::from_secs(1)));
        // ...while the waiter is dropped on this one.
        drop(waiter);
        t.join().unwrap();
        assert_eq!(tank.waiting(), 0);
        assert_eq!(
            tank.level(),
            1,
            "granted or not, the fuel is back in the tank"
        );
    });
}

#[test]
fn fuel_given_back_while_another_takes() {
    model(|| {
        let clock = ManualClock::new();
        let tank = tank("1/s", Hardcap::Window, 1, &clock);
        let fuel = tank.try_take(1).unwrap();
        let other = tank.clone();
        let t = thread::spawn(move || other.has_fuel());
        tank.give_back(fuel);
        let theirs = t.join().unwrap();
        let mine = tank.has_fuel();
        assert!(mine ^ theirs, "the fuel given back is taken once");
    });
}
