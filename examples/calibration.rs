//! `Hardcap::One` at 10k/s with and without timer calibration: the rate
//! reached and the CPU it costs.
//!
//! `cargo run --release --example calibration [SECONDS]`
//!
//! Eight tokio tasks (two workers) wait for fuel from one throttle for SECONDS (default 1)
//! per setting. The CPU time is the process's (user + system, from
//! `/proc/self/stat` on Linux), so it includes the tasks themselves.

use std::time::{Duration, Instant};

use fueltank::{Hardcap, Rate, Throttle};

const RATE: u64 = 10_000;

fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10)) // USER_HZ = 100 on Linux
}

fn run(label: &str, throttle: Throttle, seconds: f64, rt: &tokio::runtime::Runtime) {
    let run_for = Duration::from_secs_f64(seconds);
    let cpu0 = cpu_time();
    let started = Instant::now();
    let total = rt.block_on(async {
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let throttle = throttle.clone();
                tokio::spawn(async move {
                    while started.elapsed() < run_for {
                        throttle.await_fuel().await;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        throttle.total()
    });
    let elapsed = started.elapsed().as_secs_f64();
    let rate = total as f64 / elapsed;
    let cpu = match (cpu0, cpu_time()) {
        (Some(a), Some(b)) => format!(
            "{:>5.1} % of a core",
            (b - a).as_secs_f64() / elapsed * 100.0
        ),
        _ => "n/a".to_string(),
    };
    let snap = throttle.monitor().unwrap().snapshot();
    println!(
        "{label:<30} {rate:>6.0}/s {:>5.1} %  gaps p50 {:>7.1?} p90 {:>7.1?} p99 {:>7.1?}  CPU {cpu}",
        rate / RATE as f64 * 100.0,
        snap.percentile(50.0).unwrap_or_default(),
        snap.percentile(90.0).unwrap_or_default(),
        snap.percentile(99.0).unwrap_or_default(),
    );
}

fn main() -> Result<(), fueltank::Error> {
    let seconds: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let rate = Rate::per_second(RATE)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let late = fueltank::clock::timer_lateness(rate.interval());
    println!(
        "timer lateness here (p90 at {:?}): {late:?}",
        rate.interval()
    );
    let builder = || Throttle::builder(rate).hardcap(Hardcap::One);
    run(
        "One, no calibration",
        builder().auto_calibrate(false).build()?,
        seconds,
        &rt,
    );
    let auto = builder().build()?;
    let label = format!(
        "One, auto ({:?} early)",
        auto.timer_correction().unwrap_or_default()
    );
    run(&label, auto, seconds, &rt);
    let full = builder()
        .timer_correction(late.min(rate.interval()))
        .build()?;
    let label = format!(
        "One, full p90 ({:?} early)",
        full.timer_correction().unwrap_or_default()
    );
    run(&label, full, seconds, &rt);
    let half = builder().timer_correction(rate.interval() / 2).build()?;
    run("One, half the interval early", half, seconds, &rt);
    Ok(())
}
