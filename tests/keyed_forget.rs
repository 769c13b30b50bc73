//! The sweep forgets keys "exactly like a key never seen": with `initial`
//! below the capacity, a key like a fresh one *now* is not like one later.

use std::time::Duration;

use fueltank::clock::ManualClock;
use fueltank::{KeyedTank, Tank};

/// 10/s with `initial(4)`: "k" takes 1 and, 100 ms on, holds 4 again, the
/// state of a key never seen at that instant, while other keys' traffic
/// sweeps the shards. 500 ms on it holds 9, as a `Tank` of the same rate
/// and initial fuel does. Before the fix, the sweep forgot "k" (like a
/// fresh key at the sweep's reading) and made it again as a key never
/// seen: 4, the fuel accrued since lost. A sweep now forgets only keys
/// that stay like a fresh key as time passes (full, when a new key starts
/// full).
#[test]
fn a_key_like_a_fresh_one_now_keeps_accruing() {
    let clock = ManualClock::new();
    let keyed = KeyedTank::builder("10/s".parse().unwrap())
        .initial(4)
        .clock(clock.clone())
        .build()
        .unwrap();
    let model = Tank::builder("10/s".parse().unwrap())
        .initial(4)
        .clock(clock.clone())
        .build()
        .unwrap();
    let k = "k".to_string();
    assert!(keyed.has_fuel(&k));
    assert!(model.has_fuel());
    clock.advance(Duration::from_millis(100));
    assert_eq!((keyed.level(&k), model.level()), (4, 4));
    for i in 0..3_000 {
        keyed.has_fuel(&format!("other {i}"));
    }
    clock.advance(Duration::from_millis(500));
    assert_eq!(model.level(), 9);
    assert_eq!(keyed.level(&k), model.level(), "the fuel accrued since");
}
