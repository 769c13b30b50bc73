//! The pool with plain threads: blocking calls, no async runtime.
//!
//! `cargo run --release --example threads`

use std::time::Duration;

use fueltank::{Rate, Throttle};

const THREADS: u64 = 8;
const JOBS_PER_THREAD: u64 = 25;

fn main() -> Result<(), fueltank::Error> {
    // Report by hand once a job is done, rather than when fuel is taken.
    let throttle = Throttle::builder("100/s".parse::<Rate>()?)
        .auto_emit(false)
        .build()?;
    println!(
        "{THREADS} threads x {JOBS_PER_THREAD} jobs through {}",
        throttle.rate()
    );

    std::thread::scope(|s| {
        for thread in 0..THREADS {
            let throttle = &throttle;
            s.spawn(move || {
                for job in 0..JOBS_PER_THREAD {
                    throttle.blocking_await_fuel();
                    std::thread::sleep(Duration::from_millis(5 + (thread * 13 + job * 7) % 40));
                    throttle.emit().expect("auto_emit is off");
                }
            });
        }
        // The monitor, read from another thread while the pool works.
        s.spawn(|| {
            loop {
                std::thread::sleep(Duration::from_millis(500));
                if throttle.total() >= THREADS * JOBS_PER_THREAD {
                    break;
                }
                if let (Some(mean), Some(latest)) = (throttle.mean(), throttle.latest()) {
                    println!(
                        "  {:>4} done   mean {:>6.1}/s   latest {:>6.1}/s",
                        throttle.total(),
                        mean.per_second,
                        latest.per_second
                    );
                }
            }
        });
    });

    let summary = throttle.stop();
    println!(
        "done: {} jobs in {:.2?}, {:.1}/s on average",
        summary.total, summary.runtime, summary.mean_per_second
    );
    assert_eq!(summary.total, THREADS * JOBS_PER_THREAD);
    Ok(())
}
