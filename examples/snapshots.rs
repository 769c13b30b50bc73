//! The monitor's stream of snapshots: statistics and gap percentiles, once
//! per refresh, while a producer's pace changes.
//!
//! `cargo run --release --example snapshots`

use std::time::{Duration, Instant};

use fueltank::Monitor;
use futures::StreamExt;

fn main() -> Result<(), fueltank::Error> {
    let monitor = Monitor::builder()
        .refresh(Duration::from_millis(250))
        .window(Duration::from_millis(500))
        .build()?;

    // A producer: 200/s for a second, then 50/s for a second.
    let producer = std::thread::spawn({
        let monitor = monitor.clone();
        move || {
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(2) {
                monitor.emit();
                let pause = if start.elapsed() < Duration::from_secs(1) {
                    5
                } else {
                    20
                };
                std::thread::sleep(Duration::from_millis(pause));
            }
        }
    });

    println!(
        "{:>6} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "at", "total", "latest/s", "mean/s", "p50", "p90", "p99", "p99.9", "max"
    );
    let start = Instant::now();
    let stream = monitor.snapshots().take(9); // 2.25 s
    futures::executor::block_on(stream.for_each(|snap| {
        let pct = |q| {
            snap.percentile(q)
                .map_or("-".to_string(), |d| format!("{d:.1?}"))
        };
        println!(
            "{:>5.2}s {:>6} {:>9.1} {:>9.1} {:>9} {:>9} {:>9} {:>9} {:>9}",
            (snap.at - start).as_secs_f64().max(0.0),
            snap.total,
            snap.latest.map_or(0.0, |s| s.per_second),
            snap.mean.map_or(0.0, |s| s.per_second),
            pct(50.0),
            pct(90.0),
            pct(99.0),
            pct(99.9),
            pct(100.0),
        );
        async {}
    }));
    producer.join().expect("the producer panicked");
    Ok(())
}
