//! Runs one non-blocking take (or clock read) in a loop, for counting its
//! instructions under callgrind: `benches/callgrind.sh` runs every case and
//! prints instructions per call. Alone: `cargo run --release -p
//! fueltank-benches --example take_callgrind -- CASE [CALLS]` (it then just
//! runs the loop).
//!
//! Cases: `noop` (the loop alone), `instant`, `monotonic`, `has_fuel_allowed_unbounded`,
//! `has_fuel_allowed_limit`, `has_fuel_allowed_two_rates`, `has_fuel_denied`,
//! `has_fuel_denied_two_rates`, `try_take_spend`,
//! `throttle_has_fuel_allowed`, `throttle_has_fuel_denied`,
//! `throttle_await_fuel_ready`,
//! `governor_allowed`, `governor_denied`, `leaky_allowed`, `leaky_denied`,
//! and on clocks that stand still (the limiter's logic alone):
//! `has_fuel_allowed_manual`, `has_fuel_denied_manual`,
//! `governor_allowed_fake`, `governor_denied_fake`.

use std::hint::black_box;
use std::num::NonZeroU32;
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

use fueltank::clock::{Clock, ManualClock, MonotonicClock};
use fueltank::{Budget, Fuel, Hardcap, Rate, Tank, Throttle};
use governor::clock::FakeRelativeClock;

const HUGE_RATE: u64 = 1_000_000_000;

/// The only function callgrind collects in (`--toggle-collect`): its
/// instructions divided by `calls` are the cost of one call, loop included.
#[inline(never)]
fn measured_loop(calls: u64, op: &dyn Fn() -> bool) -> u64 {
    let mut taken = 0;
    for _ in 0..calls {
        taken += u64::from(black_box(op()));
    }
    taken
}

fn main() {
    let mut args = std::env::args().skip(1);
    let case = args.next().unwrap_or_else(|| usage());
    let calls: u64 = args
        .next()
        .map_or(100_000, |s| s.parse().unwrap_or_else(|_| usage()));

    let op: Box<dyn Fn() -> bool> = match case.as_str() {
        "noop" => Box::new(|| true),
        "instant" => Box::new(|| {
            black_box(Instant::now());
            true
        }),
        "monotonic" => Box::new(|| {
            black_box(MonotonicClock.now());
            true
        }),
        "has_fuel_allowed_unbounded" => {
            let tank = Tank::builder(Rate::per_second(HUGE_RATE).unwrap())
                .hardcap(Hardcap::Unbounded)
                .build()
                .unwrap();
            Box::new(move || tank.has_fuel())
        }
        "has_fuel_allowed_limit" => {
            let tank = Tank::builder(Rate::per_second(HUGE_RATE).unwrap())
                .initial(HUGE_RATE)
                .build()
                .unwrap();
            Box::new(move || tank.has_fuel())
        }
        "has_fuel_allowed_two_rates" => {
            let tank = Tank::builder(Rate::per_second(HUGE_RATE).unwrap())
                .also(Rate::per_second(HUGE_RATE / 2).unwrap())
                .initial(HUGE_RATE / 2)
                .build()
                .unwrap();
            Box::new(move || tank.has_fuel())
        }
        "has_fuel_denied_two_rates" => {
            let tank = Tank::builder(Rate::per_minute(1).unwrap())
                .also(Rate::per_minute(2).unwrap())
                .initial(0)
                .build()
                .unwrap();
            Box::new(move || tank.has_fuel())
        }
        "has_fuel_denied" => {
            let tank = Tank::builder(Rate::per_minute(1).unwrap())
                .initial(0)
                .build()
                .unwrap();
            Box::new(move || tank.has_fuel())
        }
        "try_take_spend" => {
            let tank = Tank::builder(Rate::per_second(HUGE_RATE).unwrap())
                .hardcap(Hardcap::Unbounded)
                .build()
                .unwrap();
            Box::new(move || tank.try_take(1).map(Fuel::spend).is_some())
        }
        // A throttle: its tank's take and the emission of what it took.
        "throttle_has_fuel_allowed" => {
            let throttle = Throttle::builder(Rate::per_second(HUGE_RATE).unwrap())
                .hardcap(Hardcap::Unbounded)
                .build()
                .unwrap();
            Box::new(move || throttle.has_fuel())
        }
        "throttle_has_fuel_denied" => {
            let throttle = Throttle::builder(Rate::per_minute(1).unwrap())
                .initial(0)
                .build()
                .unwrap();
            Box::new(move || throttle.has_fuel())
        }
        "throttle_await_fuel_ready" => {
            let throttle = Throttle::builder(Rate::per_second(HUGE_RATE).unwrap())
                .hardcap(Hardcap::Unbounded)
                .build()
                .unwrap();
            Box::new(move || {
                let fuel = std::pin::pin!(throttle.await_fuel());
                fuel.poll(&mut Context::from_waker(Waker::noop()))
                    .is_ready()
            })
        }
        // The same takes on clocks that do not move, so only the limiter's
        // own logic is counted (see benches/callgrind.sh for why).
        "has_fuel_allowed_manual" => {
            let tank = Tank::builder(Rate::per_second(HUGE_RATE).unwrap())
                .initial(HUGE_RATE)
                .clock(ManualClock::new())
                .build()
                .unwrap();
            Box::new(move || tank.has_fuel())
        }
        "has_fuel_denied_manual" => {
            let tank = Tank::builder(Rate::per_minute(1).unwrap())
                .initial(0)
                .clock(ManualClock::new())
                .build()
                .unwrap();
            Box::new(move || tank.has_fuel())
        }
        "governor_allowed_fake" => {
            let limiter = governor::RateLimiter::direct_with_clock(
                governor::Quota::per_second(NonZeroU32::MAX),
                FakeRelativeClock::default(),
            );
            Box::new(move || limiter.check().is_ok())
        }
        "governor_denied_fake" => {
            let limiter = governor::RateLimiter::direct_with_clock(
                governor::Quota::per_hour(NonZeroU32::MIN),
                FakeRelativeClock::default(),
            );
            let _ = limiter.check();
            Box::new(move || limiter.check().is_ok())
        }
        "governor_allowed" => {
            let limiter =
                governor::RateLimiter::direct(governor::Quota::per_second(NonZeroU32::MAX));
            Box::new(move || limiter.check().is_ok())
        }
        "governor_denied" => {
            let limiter = governor::RateLimiter::direct(governor::Quota::per_hour(NonZeroU32::MIN));
            let _ = limiter.check();
            Box::new(move || limiter.check().is_ok())
        }
        "leaky_allowed" => {
            let plenty = 1 << 40;
            let limiter = leaky_bucket::RateLimiter::builder()
                .max(plenty)
                .initial(plenty)
                .build();
            Box::new(move || limiter.try_acquire(1))
        }
        "leaky_denied" => {
            let limiter = leaky_bucket::RateLimiter::builder()
                .initial(0)
                .refill(1)
                .interval(Duration::from_secs(3600))
                .build();
            Box::new(move || limiter.try_acquire(1))
        }
        _ => usage(),
    };

    // Warm up past the clock's calibration (10 ms, refined at 1 s), so the
    // measured loop sees the steady clock path and warm caches.
    let warm_until = Instant::now() + Duration::from_millis(1100);
    while Instant::now() < warm_until {
        black_box(MonotonicClock.now());
        black_box(op());
    }
    let taken = measured_loop(calls, &*op);
    println!("{case}: {calls} calls, {taken} true");
}

fn usage() -> ! {
    eprintln!("usage: take_callgrind CASE [CALLS]; cases are listed in the source's header");
    std::process::exit(2)
}
