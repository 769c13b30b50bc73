//! What each hardcap does, in about 6 seconds.
//!
//! `cargo run --release -p fueltank-examples --example tour`
//!
//! Six workers share one throttle of 100 per 500 ms (200/s). For each
//! hardcap they first work slowly (a quiet spell: fuel banks up), then as
//! fast as the throttle lets them (a rush). A live line shows the monitor's
//! statistics; a table compares the four modes at the end.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fueltank::{Hardcap, Rate, Throttle};
use futures::StreamExt;

#[path = "runtime.rs"]
mod runtime;

const WORKERS: usize = 6;
const QUIET: Duration = Duration::from_millis(600);
const RUN: Duration = Duration::from_millis(1200);
const SLOW_JOB: Duration = Duration::from_millis(150);

struct Row {
    hardcap: Hardcap,
    grants: u64,
    first_burst: usize,
    most_per_window: usize,
    shortest: Duration,
    p50: Duration,
    p99: Duration,
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// The most grants in any window of `per`, from sorted grant times.
fn most_in_window(times: &[Instant], per: Duration) -> usize {
    let mut most = 0;
    let mut first = 0;
    for (last, &t) in times.iter().enumerate() {
        while t.duration_since(times[first]) >= per {
            first += 1;
        }
        most = most.max(last + 1 - first);
    }
    most
}

async fn run(rate: Rate, hardcap: Hardcap, tty: bool) -> Result<Row, fueltank::Error> {
    let throttle = Throttle::builder(rate)
        .hardcap(hardcap)
        .refresh(Duration::from_millis(100))
        .window(Duration::from_millis(250))
        .build()?;
    let times = Arc::new(Mutex::new(Vec::new()));
    let start = Instant::now();
    let workers: Vec<_> = (0..WORKERS)
        .map(|i| {
            let (throttle, times) = (throttle.clone(), times.clone());
            tokio::spawn(async move {
                // Staggered starts: the quiet spell is a steady trickle.
                tokio::time::sleep(SLOW_JOB * i as u32 / WORKERS as u32).await;
                while start.elapsed() < RUN {
                    throttle.await_fuel().await;
                    times.lock().unwrap().push(Instant::now());
                    if start.elapsed() < QUIET {
                        tokio::time::sleep(SLOW_JOB).await; // quiet: slow jobs
                    }
                }
            })
        })
        .collect();
    let reporter = tokio::spawn({
        let throttle = throttle.clone();
        async move {
            let mut snapshots = throttle.snapshots();
            let mut tick = 0u32;
            while let Some(snap) = snapshots.next().await {
                tick += 1;
                let phase = if start.elapsed() < QUIET {
                    "quiet"
                } else {
                    "rush "
                };
                let line = format!(
                    "  {:<9} {phase}  total {:>4}   now {:>6.0}/s   mean {:>6.0}/s   p99 gap {:>9}",
                    format!("{hardcap:?}"),
                    snap.total,
                    snap.latest.map_or(0.0, |s| s.per_second),
                    snap.mean.map_or(0.0, |s| s.per_second),
                    snap.percentile(99.0).map_or("-".into(), ms),
                );
                if tty {
                    print!("\r\x1b[2K{line}");
                    let _ = std::io::stdout().flush();
                } else if tick.is_multiple_of(4) {
                    println!("{line}");
                }
            }
        }
    });
    for worker in workers {
        worker.await.expect("a worker panicked");
    }
    reporter.abort();
    let snap = throttle.monitor().expect("built with a monitor").snapshot();
    let summary = throttle.stop();
    if tty {
        println!();
    }
    let mut times = Arc::try_unwrap(times).unwrap().into_inner().unwrap();
    times.sort();
    let rush_start = start + QUIET;
    let first_burst = times
        .iter()
        .filter(|&&t| t >= rush_start && t < rush_start + Duration::from_millis(20))
        .count();
    Ok(Row {
        hardcap,
        grants: summary.total,
        first_burst,
        most_per_window: most_in_window(&times, rate.per()),
        shortest: snap.lo_hi.map_or(Duration::ZERO, |s| s.interval),
        p50: snap.percentile(50.0).unwrap_or_default(),
        p99: snap.percentile(99.0).unwrap_or_default(),
    })
}

fn main() -> Result<(), fueltank::Error> {
    runtime::runtime().block_on(demo())
}

async fn demo() -> Result<(), fueltank::Error> {
    let rate: Rate = "100/500ms".parse()?;
    let tty = std::io::stdout().is_terminal();
    println!(
        "{WORKERS} workers, one throttle of {rate} (one every {:?}): a quiet spell of {:?}, then a rush.\n",
        rate.interval(),
        QUIET
    );
    let mut rows = Vec::new();
    for hardcap in [
        Hardcap::Limit,
        Hardcap::One,
        Hardcap::Unbounded,
        Hardcap::Window,
    ] {
        rows.push(run(rate, hardcap, tty).await?);
    }
    println!(
        "\n  {:<9} {:>6} {:>15} {:>19} {:>13} {:>10} {:>10}",
        "hardcap",
        "grants",
        "burst at rush*",
        "most in any 500ms†",
        "shortest gap",
        "p50 gap",
        "p99 gap"
    );
    for row in &rows {
        println!(
            "  {:<9} {:>6} {:>15} {:>19} {:>13} {:>10} {:>10}",
            format!("{:?}", row.hardcap),
            row.grants,
            row.first_burst,
            row.most_per_window,
            ms(row.shortest),
            ms(row.p50),
            ms(row.p99),
        );
    }
    println!(
        "\n  * grants in the first 20 ms of the rush, from fuel banked in the quiet spell.\n\
         \x20 † timed when each worker saw its fuel, a little after the grant: under load that\n\
         \x20   jitter can add a few to the tank's own count.\n\
         \n  Limit      banks up to max_n = 100: a burst after the quiet spell, then the rate;\n\
         \x20            any 500 ms may see up to 2·max_n − 1.\n\
         \x20 One        banks one: grants at least 5 ms apart, never more than 100 per 500 ms.\n\
         \x20 Unbounded  banks everything unused: the biggest burst; the long-run mean is exact.\n\
         \x20 Window     at most 100 in any 500 ms, exactly; bursts within that."
    );
    Ok(())
}
