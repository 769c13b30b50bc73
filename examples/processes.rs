//! One throttle — tank and monitor — shared by worker processes: the parent
//! starts N workers (this binary again), each takes fuel before every job,
//! and the parent prints the combined statistics their emissions make, live.
//! The picture of the Python `mp_throttle`, with processes.
//!
//! `cargo run --release --example processes [-- WORKERS [SECONDS [RATE]]]`
//! (default: 4 workers, 3 s, "200/s").

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use fueltank::{Monitor, Rate, Tank, Throttle};

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
                .spawn()
        })
        .collect::<Result<_, _>>()?;

    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(Duration::from_millis(500));
        let snap = throttle.snapshot().expect("the throttle has a monitor");
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
    // Stop the count, then end the workers: on a paused tank they would wait
    // for ever.
    let summary = throttle.stop();
    for mut child in children {
        child.kill().ok();
        child.wait()?;
    }
    println!(
        "done: {} jobs in {:?}, {:.1}/s (the rate is {})",
        summary.total,
        summary.runtime,
        summary.mean_per_second,
        throttle.rate()
    );
    drop(throttle);
    Tank::remove_shared_memory(&name)?;
    Monitor::remove_shared_memory(&name)?;
    Ok(())
}

/// A worker: attach to the throttle, and take one fuel per job until the
/// parent stops it (or kills it).
fn work(name: &str, rate: Rate) -> Result<(), Box<dyn std::error::Error>> {
    let throttle = Throttle::builder(rate).shared_memory(name).build()?;
    loop {
        throttle.blocking_await_fuel(); // counted in the shared monitor
        std::thread::sleep(Duration::from_millis(1)); // the job
    }
}
