//! A thousand instances on paper: 10, 100 and 1000 instances sharing one
//! global `Limit` tank, simulated in virtual time with the crate's own
//! decisions (how much each instance asks for, when, how long a
//! reservation holds) against a model of the script (checked against it by
//! `tests/differential.rs`), with the round trip and script cost measured
//! on a `redis-server` this example starts.
//!
//! ```text
//! cargo run --release -p fueltank-redis --example fleet_sim --features sim
//! cargo run --release -p fueltank-redis --example fleet_sim --features sim -- --rtt-us 60 --script-us 20 --per-asker-ns 150
//! cargo run --release -p fueltank-redis --example fleet_sim --features sim -- --unfair   # the script's fair-share cap off
//! cargo run --release -p fueltank-redis --example fleet_sim --features sim -- --shares   # each instance's share, 10-instance rows
//! ```
//!
//! With the three figures given, no Redis is needed. The results are in
//! BENCHMARKS.md ("A thousand instances on paper").

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/common/fleet.rs"]
mod fleet;

use std::time::{Duration, Instant};

use fleet::{Cost, Fleet};
use fueltank::Rate;
use fueltank_redis::sim::Store;

/// The script fueltank-redis runs.
const SOURCE: &str = include_str!("../src/script.lua");

fn flag(args: &[String], name: &str) -> Option<f64> {
    let at = args.iter().position(|a| a == name)?;
    let value = args.get(at + 1).and_then(|v| v.parse().ok());
    Some(value.unwrap_or_else(|| panic!("{name} takes a number")))
}

/// The round trip (median of sequential `PING`s) and the script's cost
/// per call (pipelined `EVALSHA` of the real script, its askers' hash
/// holding `k` instances) for each `k`.
fn measure(askers: &[u64]) -> (Duration, Vec<(Duration, String)>) {
    let server = common::RedisServer::start();
    let client = redis::Client::open(server.url()).unwrap();
    let mut con = client.get_connection().unwrap();
    let mut trips: Vec<Duration> = (0..3000)
        .map(|_| {
            let start = Instant::now();
            let _: String = redis::cmd("PING").query(&mut con).unwrap();
            start.elapsed()
        })
        .collect();
    trips.sort();
    let rtt = trips[trips.len() / 2];

    let sha: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(SOURCE)
        .query(&mut con)
        .unwrap();
    // A rate no call is ever refused at: every call a take of one.
    let store = Store::new("100000000/s".parse().unwrap(), true).unwrap();
    let costs = askers
        .iter()
        .map(|&k| {
            let name = format!("fueltank:{{sim{k}}}");
            let call = |pipe: &mut redis::Pipeline, asker: u64| {
                pipe.cmd("EVALSHA")
                    .arg(&sha)
                    .arg(3)
                    .arg(format!("{name}:s"))
                    .arg(format!("{name}:w"))
                    .arg(format!("{name}:a"))
                    .arg(store.args(asker, 1, 500_000_000))
                    .ignore();
            };
            let mut fill = redis::pipe();
            for asker in 1..=k {
                call(&mut fill, asker);
            }
            let () = fill.query(&mut con).unwrap();
            let calls = 20_000.min(40 * k + 5_000);
            let _: () = redis::cmd("CONFIG")
                .arg("RESETSTAT")
                .query(&mut con)
                .unwrap();
            let mut best = Duration::MAX;
            for _ in 0..3 {
                let mut pipe = redis::pipe();
                for j in 0..calls {
                    call(&mut pipe, j % k + 1);
                }
                let start = Instant::now();
                let () = pipe.query(&mut con).unwrap();
                best = best.min(start.elapsed() / u32::try_from(calls).unwrap());
            }
            // Redis's own time in the script, for comparison.
            let info: String = redis::cmd("INFO")
                .arg("commandstats")
                .query(&mut con)
                .unwrap();
            let inside = info
                .lines()
                .find(|l| l.starts_with("cmdstat_evalsha:"))
                .and_then(|l| l.split(',').find_map(|f| f.strip_prefix("usec_per_call=")))
                .unwrap_or("?")
                .to_string();
            (best, inside)
        })
        .collect();
    (rtt, costs)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let fair = !args.iter().any(|a| a == "--unfair");
    let shares = args.iter().any(|a| a == "--shares");
    let given = (
        flag(&args, "--rtt-us"),
        flag(&args, "--script-us"),
        flag(&args, "--per-asker-ns"),
    );
    let (rtt, cost) = if let (Some(rtt), Some(base), Some(per)) = given {
        let cost = Cost {
            base: Duration::from_nanos((base * 1000.0) as u64),
            per_asker: Duration::from_nanos(per as u64),
        };
        (Duration::from_nanos((rtt * 1000.0) as u64), cost)
    } else {
        let askers = [1, 10, 100, 1000];
        let (rtt, costs) = measure(&askers);
        println!("Measured on a local redis-server: round trip (PING, median) {rtt:?}");
        for (k, (c, inside)) in askers.iter().zip(&costs) {
            println!(
                "  script call, {k:>4} askers: {c:?} pipelined ({:.0} calls/s); Redis's usec_per_call {inside}",
                1.0 / c.as_secs_f64()
            );
        }
        let costs: Vec<Duration> = costs.into_iter().map(|(c, _)| c).collect();
        // A line through the cheapest and the dearest.
        let per = (costs[3].saturating_sub(costs[0])) / 999;
        let cost = Cost {
            base: costs[0].saturating_sub(per),
            per_asker: per,
        };
        (rtt, cost)
    };
    println!(
        "Inputs: round trip {rtt:?}; script cost {:?} + {:?} per asker{}\n",
        cost.base,
        cost.per_asker,
        if fair { "" } else { "; fair-share cap OFF" }
    );
    println!(
        "| rate | instances | demand | accuracy | worst 1 s (bound) | round trips/s | Redis busy | answer mean / max | timed out | unspent | share of fair: min–max |"
    );
    println!("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut per_instance: f64 = 0.0;
    let rates: [Rate; 2] = ["10000/s".parse().unwrap(), "100000/s".parse().unwrap()];
    for rate in rates {
        for instances in [10, 100, 1000] {
            for zipf in [None, Some(1.0)] {
                let fleet = Fleet {
                    rate,
                    instances,
                    demand: 2.0 * rate.max_n() as f64,
                    zipf,
                    seconds: 7.0,
                    warm_up: 2.0,
                    round_trip: rtt,
                    cost,
                    timeout: Duration::from_millis(100),
                    fair,
                    seed: 1,
                };
                let r = fleet.run().unwrap();
                let (lo, hi) = r.share_range();
                if r.busy < 0.5 {
                    per_instance = per_instance.max(r.round_trips / instances as f64);
                }
                println!(
                    "| {rate} | {instances} | 2× {} | {:.4} | {} ({}) | {:.0} | {:.1} % | {:.0?} / {:.0?} | {:.0}/s | {:.2} % | {lo:.3}–{hi:.3} |",
                    if zipf.is_some() { "Zipf" } else { "uniform" },
                    r.accuracy,
                    r.worst_window,
                    r.bound,
                    r.round_trips,
                    r.busy * 100.0,
                    r.answer_mean,
                    r.answer_max,
                    r.timeouts as f64 / r.span,
                    r.expired as f64 * 100.0 / r.reserved.max(1) as f64,
                );
                if shares && instances <= 10 {
                    let each: Vec<String> = (0..instances)
                        .map(|i| format!("{:.3}", r.grants[i] as f64 / r.span / r.fair[i]))
                        .collect();
                    println!("|   | each instance's share of fair: {} |", each.join(", "));
                }
            }
        }
    }
    // One tank's instances each make about `per_instance` round trips a
    // second while Redis keeps up; each costs `base + per_asker · n`.
    let busy = |n: f64| n * per_instance * (cost.base + cost.per_asker * n as u32).as_secs_f64();
    let most = |target: f64| {
        (1..100_000)
            .take_while(|&n| busy(n as f64) <= target)
            .last()
            .unwrap_or(0)
    };
    println!(
        "\nOne tank's instances made up to {per_instance:.1} round trips/s each while Redis kept up: \
         one Redis is half busy with {} instances on one tank, saturated with {}.",
        most(0.5),
        most(1.0)
    );
}
