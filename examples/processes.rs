//! One throttle — tank and monitor — shared by worker processes: the parent
//! starts N workers (this binary again), each takes fuel before every job,
//! and the parent prints the combined statistics their emissions make, live.
//! When the time is up the parent stops the throttle; each worker sees it
//! (`is_stopped`), prints its jobs and leaves, and the parent waits for
//! them. The workers wait in one line across the processes, so each does
//! about the same number of jobs. The picture of the Python `mp_throttle`,
//! with processes.
//!
//! `cargo run --release --example processes [-- WORKERS [SECONDS [RATE]]]`
//! (default: 4 workers, 3 s, "200/s").

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fueltank::{Rate, Throttle};

const WORKER: &str = "FUELTANK_EXAMPLE_WORKER";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if let Ok(worker) = std::env::var(WORKER) {
        let (name, rate) = worker.split_once(' ').ok_or("NAME RATE")?;
        return work(name, rate.parse()?);
    }
    let mut args = std::env::args().skip(1);
    let workers: usize = args.next().map_or(Ok(4), |a| a.parse())?;
    let seconds: u64 = args.next().map_or(Ok(3), |a| a.parse())?;
    let rate: Rate = args.next().map_or(Ok("200/s".parse()?), |a| a.parse())?;
    // One name per run: a fresh tank, a fresh monitor.
    let name = format!("example-processes-{}", std::process::id());
    let throttle = Throttle::builder(rate)
        .refresh(Duration::from_millis(500))
        .shared_memory(&name)
        .build()?;
    println!("{workers} worker processes share one {rate} throttle for {seconds} s");

    let children: Vec<Child> = (0..workers)
        .map(|_| {
            Command::new(std::env::current_exe()?)
                .env(WORKER, format!("{name} {rate}"))
                .stdout(Stdio::piped())
                .spawn()
        })
        .collect::<Result<_, _>>()?;

    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(Duration::from_millis(500));
        let snap = throttle
            .monitor()
            .expect("the throttle has a monitor")
            .snapshot();
        let rate = |s: Option<fueltank::Stat>| s.map_or(0.0, |s| s.per_second);
        println!(
            "{:>5.1} s  total {:>6}  mean {:>7.1}/s  latest {:>7.1}/s  p99 gap {:?}",
            start.elapsed().as_secs_f64(),
            snap.total,
            rate(snap.mean),
            rate(snap.latest),
            snap.percentile(99.0).unwrap_or_default(),
        );
    }
    // Stop: the workers see it and leave by themselves.
    let summary = throttle.stop();
    let mut jobs = Vec::new();
    for child in children {
        let output = child.wait_with_output()?;
        if !output.status.success() {
            return Err(format!("a worker failed: {}", output.status).into());
        }
        jobs.push(String::from_utf8_lossy(&output.stdout).trim().to_owned());
    }
    println!("jobs per worker: {}", jobs.join(", "));
    println!(
        "done: {} jobs in {:?}, {:.1}/s (the rate is {})",
        summary.total,
        summary.runtime,
        summary.mean_per_second,
        throttle.rate()
    );
    drop(throttle);
    Throttle::remove_shared_memory(&name)?; // the tank's and the monitor's files
    Ok(())
}

/// A worker: attach to the throttle, and take one fuel per job until the
/// parent stops it; then print how many jobs it did.
fn work(name: &str, rate: Rate) -> Result<(), Box<dyn std::error::Error>> {
    let throttle = Throttle::builder(rate).shared_memory(name).build()?;
    let mut jobs = 0u64;
    while !throttle.is_stopped() {
        // Counted in the shared monitor. A short timeout: a stopped
        // throttle grants nothing more, and the loop looks again.
        if throttle.blocking_await_fuel_timeout(Duration::from_millis(100)) {
            jobs += 1;
            std::thread::sleep(Duration::from_millis(1)); // the job
        }
    }
    println!("{jobs}");
    Ok(())
}
