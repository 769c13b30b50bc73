//! The sweep forgets keys "exactly like a key never seen": with `initial`
//! below the capacity, a key like a fresh one *now* is not like one later.

use std::time::Duration;

use fueltank::clock::ManualClock;
use fueltank::{KeyedTank, Tank};

/// 10/s with `initial(4)`: "k" takes 1 and, 100 ms on, holds 4 again with
/// no fraction of the next: the very state of a key never seen at that
/// instant. Other keys' traffic at that instant sweeps the shards, which
/// forget "k" (`Shard::sweep` keeps a key only if `gcra_distance` from a
/// fresh key *at the sweep's reading* is not 0). 500 ms on, a `Tank` of the
/// same rate and initial fuel holds 9 (4 + 5 accrued, below its cap of
/// 10), but "k" is made again as a key never seen, holding `initial`: 4.
/// The fuel it accrued since the sweep is lost (with `initial(0)`, a key
/// refused at its first request and swept at that instant starts from 0
/// again at its next). Right: 9; forget a key only if it stays like a
/// fresh key as time passes (under `Limit`, full: `initial` = capacity),
/// as `tests/keyed.rs` (`waiting_on_a_key_is_fifo_and_goes_idle_again`)
/// says of a full key ("forgetting it would lose its fuel, so it is
/// kept").
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
