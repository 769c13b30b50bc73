//! One tank per key: each key behaves exactly like its own tank, waits work
//! per key, and memory stays bounded under a flood of new keys while the
//! keys that owe most are kept.

mod common;

use std::time::Duration;

use common::poll;
use fueltank::clock::ManualClock;
use fueltank::{Hardcap, KeyedTank, Rate, Tank};

const MS: Duration = Duration::from_millis(1);

#[test]
fn each_key_behaves_like_its_own_tank() {
    for hardcap in [
        Hardcap::Limit,
        Hardcap::One,
        Hardcap::Unbounded,
        Hardcap::Window,
    ] {
        let clock = ManualClock::new();
        let rate: Rate = "5/s".parse().unwrap();
        let keyed = KeyedTank::builder(rate)
            .hardcap(hardcap)
            .clock(clock.clone())
            .build()
            .unwrap();
        let cap = match hardcap {
            Hardcap::One => 1,
            _ => 5,
        };
        let tank = Tank::builder(rate)
            .hardcap(hardcap)
            .initial(cap)
            .clock(clock.clone())
            .build()
            .unwrap();
        // An irregular greedy pattern over 6 s, with a quiet spell.
        for step in 0..600u64 {
            if !(200..350).contains(&step) {
                let wanted = 1 + step % 3;
                for _ in 0..wanted {
                    assert_eq!(
                        keyed.has_fuel(&"k"),
                        tank.has_fuel(),
                        "{hardcap:?} step {step}"
                    );
                }
                assert_eq!(keyed.level(&"k"), tank.level(), "{hardcap:?} step {step}");
            }
            clock.advance(10 * MS + Duration::from_micros(step % 7));
        }
    }
}

#[test]
fn keys_do_not_share_fuel() {
    let keyed = KeyedTank::new(Rate::per_second(1).unwrap());
    assert!(keyed.has_fuel(&1));
    assert!(!keyed.has_fuel(&1));
    assert!(keyed.has_fuel(&2));
    assert!(!keyed.has_fuel_n(&3, 2), "more than a key's capacity");
    assert!(keyed.has_fuel_n(&3, 0));
}

#[test]
fn waiting_on_a_key_is_fifo_and_goes_idle_again() {
    let clock = ManualClock::new();
    let keyed = KeyedTank::builder(Rate::per_second(10).unwrap())
        .initial(0)
        .clock(clock.clone())
        .build()
        .unwrap();
    let mut first = Box::pin(keyed.await_fuel("k"));
    let mut second = Box::pin(keyed.await_fuel("k"));
    let mut other = Box::pin(keyed.await_fuel("other"));
    assert!(poll(first.as_mut()).is_pending());
    assert!(poll(second.as_mut()).is_pending());
    assert!(poll(other.as_mut()).is_pending());
    assert!(!keyed.has_fuel(&"k"), "never overtakes a waiter");
    assert_eq!(keyed.wait_time(&"k", 1), Some(300 * MS));
    clock.advance(100 * MS);
    assert!(poll(first.as_mut()).is_ready());
    assert!(poll(second.as_mut()).is_pending());
    assert!(poll(other.as_mut()).is_ready());
    clock.advance(100 * MS);
    assert!(poll(second.as_mut()).is_ready());
    drop((first, second, other));
    // The keys' tanks are idle now; once full, a sweep forgets them. Keys
    // of every shard see operations, so every shard sweeps.
    clock.advance(Duration::from_secs(2));
    assert_eq!(keyed.level(&"k"), 10, "held, and full");
    for i in 0..2_000 {
        let filler: &'static str = format!("filler {i}").leak();
        keyed.has_fuel(&filler);
    }
    // A full key is not like a new one (which holds `initial`, here 0):
    // forgetting it would lose its fuel, so it is kept, idle.
    assert_eq!(keyed.level(&"k"), 10, "kept");
    assert_eq!(keyed.level(&"other"), 10, "kept");
    assert!(keyed.len() <= 2_002);
}

#[test]
fn a_flood_of_new_keys_keeps_memory_bounded() {
    let clock = ManualClock::new();
    let keyed = KeyedTank::builder(Rate::per_second(10).unwrap())
        .max_keys(1_000)
        .clock(clock.clone())
        .build()
        .unwrap();
    // A victim drains its tank, then a flood of new keys each takes one.
    let victim = u32::MAX;
    while keyed.has_fuel(&victim) {}
    for key in 0..100_000u32 {
        keyed.has_fuel(&key);
        assert!(keyed.len() <= 1_000, "{} keys at {key}", keyed.len());
    }
    // The victim owed the most: it was never forgotten, so it has no fuel.
    assert!(!keyed.has_fuel(&victim));
}

/// The flood of the attack on eviction: a client drains its own 10/s key,
/// then sends a flood of new keys (each drained with 10 requests) so that
/// its key is evicted, and comes back hoping for a full bucket. Whatever
/// `max_keys`, its key never sees more than `Limit`'s bound, 2·10 − 1, in
/// any second.
#[test]
fn a_flood_never_resets_a_keys_budget() {
    for max_keys in [64, 1_000, 10_000] {
        let clock = ManualClock::new();
        let keyed = KeyedTank::builder(Rate::per_second(10).unwrap())
            .max_keys(max_keys)
            .clock(clock.clone())
            .build()
            .unwrap();
        let hot = u64::MAX;
        let start = clock.now();
        let mut grants = Vec::new();
        let mut next = 0u64;
        let flood_per_ms = (max_keys as u64 / 20).max(4);
        for _ in 0..2_000 {
            while keyed.has_fuel(&hot) {
                grants.push(clock.now());
            }
            for _ in 0..flood_per_ms {
                for _ in 0..10 {
                    keyed.has_fuel(&next);
                }
                next += 1;
            }
            assert!(keyed.len() <= max_keys);
            clock.advance(MS);
        }
        let worst = common::worst_window(&grants, Duration::from_secs(1));
        assert!(
            worst <= 19,
            "max_keys {max_keys}: {worst} grants in a second"
        );
        // And it was served near its rate, not starved: 10 to start with,
        // then 10 a second over 2 s.
        // (Its own cells may hold a flood key's larger debt: a little less.)
        assert!(grants.len() >= 20, "max_keys {max_keys}: {}", grants.len());
        assert!(clock.now() - start >= Duration::from_secs(2));
    }
}

/// The same attack on a `Window` key (per-account login throttling).
#[test]
fn a_flood_never_resets_a_window_key() {
    let clock = ManualClock::new();
    let keyed = KeyedTank::builder("5/min".parse().unwrap())
        .hardcap(Hardcap::Window)
        .max_keys(100)
        .clock(clock.clone())
        .build()
        .unwrap();
    let account = u64::MAX;
    let mut grants = Vec::new();
    let mut next = 0u64;
    for _ in 0..200 {
        while keyed.has_fuel(&account) {
            grants.push(clock.now());
        }
        for _ in 0..50 {
            while keyed.has_fuel(&next) {}
            next += 1;
        }
        clock.advance(Duration::from_secs(1));
    }
    let worst = common::worst_window(&grants, Duration::from_secs(60));
    assert!(worst <= 5, "{worst} logins in a minute");
    assert!(grants.len() >= 10, "{}", grants.len());
}

#[test]
fn max_keys_is_exact() {
    for max_keys in [1, 2, 15, 16, 17, 100, 1_000] {
        let keyed = KeyedTank::builder(Rate::per_second(1).unwrap())
            .max_keys(max_keys)
            .clock(ManualClock::new())
            .build()
            .unwrap();
        assert_eq!(keyed.max_keys(), max_keys);
        for key in 0..10 * max_keys as u64 + 100 {
            keyed.has_fuel(&key);
            assert!(keyed.len() <= max_keys, "{} > {max_keys}", keyed.len());
        }
    }
}

/// An `Unbounded` key keeps its bank through other keys' traffic: the
/// sweep forgets only keys exactly like fresh ones.
#[test]
fn an_unbounded_keys_bank_survives_the_sweep() {
    let clock = ManualClock::new();
    let keyed = KeyedTank::builder(Rate::per_second(4).unwrap())
        .hardcap(Hardcap::Unbounded)
        .clock(clock.clone())
        .build()
        .unwrap();
    assert!(keyed.has_fuel(&0u64));
    clock.advance(Duration::from_secs(10));
    assert_eq!(keyed.level(&0), 43);
    for key in 1..5_000u64 {
        keyed.has_fuel(&key);
        clock.advance(MS);
    }
    assert_eq!(keyed.level(&0), 43 + 19, "4 more a second for 4.999 s");
}
