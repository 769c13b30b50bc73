//! Several rates on one tank, taken from by threads at once: every grant
//! takes from all the rates or from none, also without the lock.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use fueltank::clock::ManualClock;
use fueltank::{Hardcap, Rate, Tank};

/// Four threads call `has_fuel` as fast as they can on a tank of
/// `1000/s` also `3000/5s` (one fuel every 1 ms and every 5/3 ms), empty
/// at the start, while the main thread moves the clock on by 1 ms, 500
/// times. Neither cap (1000, 3000) is ever reached, so in the end the
/// fuel granted plus the fuel left is exactly what the tighter rate
/// accrued: 300. Not one more (a grant from one rate but not the other,
/// or a take lost), not one less. Under `Limit` and `Unbounded`.
#[test]
fn threads_taking_from_two_rates_get_exactly_the_tighter_accrual() {
    hammer(Hardcap::Limit);
    hammer(Hardcap::Unbounded);
}

fn hammer(hardcap: Hardcap) {
    let clock = ManualClock::new();
    let tank = Tank::builder("1000/s".parse::<Rate>().unwrap())
        .also("3000/5s".parse().unwrap())
        .hardcap(hardcap)
        .initial(0)
        .clock(clock.clone())
        .build()
        .unwrap();
    let granted = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (tank, granted, done) = (tank.clone(), granted.clone(), done.clone());
            std::thread::spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    if tank.has_fuel() {
                        granted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for step in 1..=500u64 {
        clock.advance(Duration::from_millis(1));
        // Never more than either rate accrued so far.
        let got = granted.load(Ordering::Relaxed);
        assert!(got <= step * 3 / 5, "{hardcap:?}: {got} after {step} ms");
        std::thread::yield_now();
    }
    // The threads go on until every fuel accrued is taken: a loaded
    // machine may not have run them while the clock moved.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while tank.level() > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    done.store(true, Ordering::Relaxed);
    for thread in threads {
        thread.join().unwrap();
    }
    let granted = granted.load(Ordering::Relaxed);
    assert!(granted > 0, "{hardcap:?}: the threads took nothing in 10 s");
    assert_eq!(granted + tank.level(), 300, "{hardcap:?}: {granted}");
}
