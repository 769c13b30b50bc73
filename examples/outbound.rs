//! An outbound client that respects a third party's "100 per minute and
//! at most 5 per second", where a call costs 1 unit or 3: one
//! [`AllOf`](fueltank::AllOf) over two `Window` tanks, so that a call
//! takes its units from both limits at once, or waits holding none.
//!
//! Two clients run side by side, each with its own pair of tanks: one at
//! the remote's exact limits, one with a margin added to each window (see
//! the README's "Outbound clients"). Each records when its tasks resumed
//! with their units, which is when a real client would send, and counts
//! them the way a strict remote would: in every sliding second and minute.
//!
//! `cargo run --release --example outbound [SECONDS] [MARGIN_MS]`
//! (default: 25 s, a margin of 5 ms)

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fueltank::{AllOf, Budget, Error, Hardcap, Rate, Tank};

#[path = "runtime.rs"]
mod runtime;

const TASKS: u64 = 8;

/// Calls cost 1 unit, every third 3 (no RNG needed).
fn cost(task: u64, call: u64) -> u64 {
    if (task + call).is_multiple_of(3) {
        3
    } else {
        1
    }
}

/// The remote's two limits, each window widened by `margin`, as one
/// budget. (The one-tank alternative is a tank carrying both rates,
/// `TankBuilder::also` of issue 18; `AllOf` combines any budgets, local,
/// in shared memory or in Redis.)
fn limit(margin: Duration) -> Result<AllOf, Error> {
    let window = |max_n, per: Duration| {
        Tank::builder(Rate::new(max_n, per + margin)?)
            .hardcap(Hardcap::Window)
            .build()
    };
    let per_minute = window(100, Duration::from_secs(60))?;
    let per_second = window(5, Duration::from_secs(1))?;
    Ok(AllOf::new(per_minute).and(per_second))
}

/// Runs `TASKS` tasks calling through `limit` for `run`; every unit sent,
/// at the time its task resumed.
async fn client(limit: AllOf, run: Duration) -> Vec<Instant> {
    let sent = Arc::new(Mutex::new(Vec::new()));
    let end = Instant::now() + run;
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let (limit, sent) = (limit.clone(), sent.clone());
            tokio::spawn(async move {
                for call in 0.. {
                    let n = cost(task, call);
                    let left = end.saturating_duration_since(Instant::now());
                    match limit.wait(n, Some(left)).await {
                        Ok(Some(fuel)) => {
                            let at = Instant::now(); // here the request goes out
                            fuel.spend();
                            sent.lock().unwrap().extend((0..n).map(|_| at));
                            tokio::time::sleep(Duration::from_millis(20)).await; // the call
                        }
                        _ => break, // the run is over
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let mut sent = std::mem::take(&mut *sent.lock().unwrap());
    sent.sort();
    sent
}

/// The most units in any half-open window `[a, a + per)`.
fn worst(sent: &[Instant], per: Duration) -> usize {
    let mut start = 0;
    (0..sent.len())
        .map(|end| {
            while sent[end] - sent[start] >= per {
                start += 1;
            }
            end - start + 1
        })
        .max()
        .unwrap_or(0)
}

/// The shortest span from a unit to the `max_n`-th after it: under `per`,
/// a remote counting `max_n` per sliding `per` refuses that unit.
fn tightest(sent: &[Instant], max_n: usize) -> Option<Duration> {
    sent.windows(max_n + 1).map(|w| w[max_n] - w[0]).min()
}

fn report(label: &str, sent: &[Instant]) {
    let ms = |d: Duration| format!("{:.3} ms", d.as_secs_f64() * 1e3);
    let second = tightest(sent, 5).map_or("-".into(), ms);
    let minute = tightest(sent, 100).map_or("-".into(), ms);
    println!(
        "{label:<22} {:>5} units; worst second {:>2}, worst minute {:>3}; \
         \n{:<22} from a unit to the 5th after it at least {second}, to the 100th {minute}",
        sent.len(),
        worst(sent, Duration::from_secs(1)),
        worst(sent, Duration::from_secs(60)),
        "",
    );
}

fn main() -> Result<(), Error> {
    runtime::runtime().block_on(demo())
}

async fn demo() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let seconds: u64 = args.next().map_or(25, |s| s.parse().expect("SECONDS"));
    let margin_ms: u64 = args.next().map_or(5, |s| s.parse().expect("MARGIN_MS"));
    let run = Duration::from_secs(seconds);
    let margin = Duration::from_millis(margin_ms);
    println!(
        "{TASKS} tasks, calls of 1 or 3 units, for {run:?}: 100/min and 5/s, \
         exact and with {margin:?} added to each window"
    );
    let exact = tokio::spawn(client(limit(Duration::ZERO)?, run));
    let margined = tokio::spawn(client(limit(margin)?, run));
    report("exact limits", &exact.await.unwrap());
    report(&format!("windows + {margin:?}"), &margined.await.unwrap());
    Ok(())
}
