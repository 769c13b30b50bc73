//! The fleet simulation (`common/fleet.rs` over `fueltank_redis::sim`,
//! printed by `examples/fleet_sim.rs`) on a small fleet: ten instances on one global
//! `Limit` tank, in virtual time, deciding with the crate's own code
//! against the model of the script that `tests/differential.rs` checks.
//! Deterministic (a seed), no Redis, a few seconds simulated.

#[path = "common/fleet.rs"]
mod fleet;

use std::time::Duration;

use fleet::{Cost, Fleet};

/// Ten instances asking five times the rate in all, at different speeds
/// (instance `i` asks ∝ `1/√i`: the slowest still three times its share),
/// so every one stays greedy. A round trip and a script cost of this
/// machine's order (BENCHMARKS.md).
fn greedy_fleet(fair: bool) -> Fleet {
    Fleet {
        rate: "1000/s".parse().unwrap(),
        instances: 10,
        demand: 5000.0,
        zipf: Some(0.5),
        seconds: 6.0,
        warm_up: 2.0,
        round_trip: Duration::from_micros(100),
        cost: Cost {
            base: Duration::from_micros(25),
            per_asker: Duration::from_nanos(100),
        },
        timeout: Duration::from_millis(100),
        fair,
        seed: 7,
    }
}

/// The bound holds, the rate is met, and greedy instances of different
/// speeds get equal shares within ±5 % (the crate docs' *Fair shares*).
/// Without the script's fair-share cap, the same fleet is unfair: the
/// faster instances ask for larger batches and take more.
#[test]
fn greedy_instances_share_the_rate_within_the_bound() {
    let report = greedy_fleet(true).run().unwrap();
    let (lo, hi) = report.share_range();
    let summary = format!(
        "accuracy {:.4}, worst window {} (bound {}), shares {lo:.3}–{hi:.3}, grants {:?}",
        report.accuracy, report.worst_window, report.bound, report.grants
    );
    assert!(report.worst_window <= report.bound, "{summary}");
    assert!(
        (0.97..=1.01).contains(&report.accuracy),
        "{summary}: the rate is met, never passed"
    );
    assert!(lo >= 0.95 && hi <= 1.05, "{summary}: shares within ±5 %");
    assert_eq!(report.timeouts, 0, "{summary}");

    let unfair = greedy_fleet(false).run().unwrap();
    let (lo, hi) = unfair.share_range();
    assert!(
        lo < 0.95 || hi > 1.05,
        "without the cap the shares should spread: {lo:.3}–{hi:.3}, grants {:?}",
        unfair.grants
    );
}
