//! `mp_throttle`'s scenario, async: a pool of spawned tasks sharing one
//! throttle, each awaiting fuel before a job, the monitor reporting.
//!
//! `cargo run --release --example pool`

use std::time::Duration;

use fueltank::{Hardcap, Rate, Throttle};
use futures::StreamExt;

#[path = "runtime.rs"]
mod runtime;

const TASKS: u64 = 16;
const JOBS_PER_TASK: u64 = 15;

/// A job of 10 to 200 ms, varied per task and job (no RNG needed).
fn job_time(task: u64, job: u64) -> Duration {
    let x = (task * 7919 + job * 104_729) % 191;
    Duration::from_millis(10 + x)
}

fn line(label: &str, stat: Option<fueltank::Stat>) -> String {
    stat.map_or(format!("{label} -"), |s| {
        format!("{label} {:>6.1}/s", s.per_second)
    })
}

fn main() -> Result<(), fueltank::Error> {
    runtime::runtime().block_on(demo())
}

async fn demo() -> Result<(), fueltank::Error> {
    let throttle = Throttle::builder("80/s".parse::<Rate>()?)
        .hardcap(Hardcap::Limit)
        .refresh(Duration::from_millis(500))
        .window(Duration::from_millis(500))
        .build()?;
    println!(
        "{TASKS} tasks x {JOBS_PER_TASK} jobs through {} (timer correction {:?})",
        throttle.rate(),
        throttle.timer_correction()
    );

    let reporter = tokio::spawn({
        let throttle = throttle.clone();
        async move {
            let mut snapshots = throttle.snapshots();
            while let Some(snap) = snapshots.next().await {
                println!(
                    "  total {:>4}  {}  {}  {}  {}",
                    snap.total,
                    line("mean", snap.mean),
                    line("latest", snap.latest),
                    line("lo_hi", snap.lo_hi),
                    line("hi_lo", snap.hi_lo),
                );
            }
        }
    });

    let pool: Vec<_> = (0..TASKS)
        .map(|task| {
            let throttle = throttle.clone();
            tokio::spawn(async move {
                for job in 0..JOBS_PER_TASK {
                    throttle.await_fuel().await; // counted by auto_emit
                    tokio::time::sleep(job_time(task, job)).await;
                }
            })
        })
        .collect();
    for task in pool {
        task.await.expect("a task panicked");
    }
    reporter.abort();

    let summary = throttle.stop();
    println!(
        "done: {} jobs in {:.2?}, {:.1}/s on average (one every {:.2?})",
        summary.total, summary.runtime, summary.mean_per_second, summary.mean_interval
    );
    assert_eq!(summary.total, TASKS * JOBS_PER_TASK);
    Ok(())
}
