//! Non-blocking take, allowed and denied, side by side with governor `check`
//! and leaky-bucket `try_acquire`, plus the clocks they read and a
//! two-thread contended variant.
//!
//! `cargo bench -p fueltank-benches --bench take` (about a minute); one case:
//! `cargo bench -p fueltank-benches --bench take -- 'has_fuel denied'`.
//! Compare ratios within one run: the machine is shared and noisy.

use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use fueltank::clock::{Clock, MonotonicClock};
use fueltank::{Budget, Hardcap, Rate, Tank};

/// Fast enough that no loop here can run it dry.
const HUGE_RATE: u64 = 1_000_000_000;

fn unbounded_full() -> Tank {
    Tank::builder(Rate::per_second(HUGE_RATE).unwrap())
        .hardcap(Hardcap::Unbounded)
        .build()
        .unwrap()
}

fn limit_full() -> Tank {
    Tank::builder(Rate::per_second(HUGE_RATE).unwrap())
        .hardcap(Hardcap::Limit)
        .initial(HUGE_RATE)
        .build()
        .unwrap()
}

/// Empty, nobody waiting, next fuel a minute away.
fn empty_tank() -> Tank {
    Tank::builder(Rate::per_minute(1).unwrap())
        .initial(0)
        .build()
        .unwrap()
}

fn governor_allowed() -> governor::DefaultDirectRateLimiter {
    governor::RateLimiter::direct(governor::Quota::per_second(NonZeroU32::MAX))
}

fn governor_denied() -> governor::DefaultDirectRateLimiter {
    let limiter = governor::RateLimiter::direct(governor::Quota::per_hour(NonZeroU32::MIN));
    let _ = limiter.check(); // spend the one cell of the burst
    limiter
}

fn leaky_allowed() -> leaky_bucket::RateLimiter {
    let plenty = 1 << 40;
    leaky_bucket::RateLimiter::builder()
        .max(plenty)
        .initial(plenty)
        .build()
}

fn leaky_denied() -> leaky_bucket::RateLimiter {
    leaky_bucket::RateLimiter::builder()
        .initial(0)
        .refill(1)
        .interval(Duration::from_secs(3600))
        .build()
}

fn take(c: &mut Criterion) {
    let mut group = c.benchmark_group("take");
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(2));

    // The floor of any exact take: a counter read and a compare-and-swap.
    #[cfg(target_arch = "x86_64")]
    group.bench_function("floor: TSC read alone", |b| {
        // SAFETY: RDTSC exists on every x86-64 processor.
        b.iter(|| black_box(unsafe { core::arch::x86_64::_rdtsc() }))
    });
    let word = std::sync::atomic::AtomicU64::new(0);
    group.bench_function("floor: load + compare_exchange alone", |b| {
        b.iter(|| {
            let v = word.load(std::sync::atomic::Ordering::Acquire);
            black_box(word.compare_exchange(
                v,
                v + 1,
                std::sync::atomic::Ordering::AcqRel,
                std::sync::atomic::Ordering::Acquire,
            ))
        })
    });
    group.bench_function("Instant::now", |b| b.iter(|| black_box(Instant::now())));
    group.bench_function("fueltank MonotonicClock::now", |b| {
        b.iter(|| black_box(MonotonicClock.now()))
    });

    let tank = unbounded_full();
    // The clock a well-kept crate offers, in the form the tank needs
    // (nanoseconds as a u64): quanta's counter read and scaling.
    let quanta = quanta::Clock::new();
    let start = quanta.raw();
    group.bench_function("quanta raw + delta_as_nanos", |b| {
        b.iter(|| black_box(quanta.delta_as_nanos(start, quanta.raw())))
    });
    group.bench_function("quanta Instant::now", |b| {
        b.iter(|| black_box(quanta::Instant::now()))
    });
    let shared = Tank::builder(Rate::per_second(1_000_000_000).unwrap())
        .hardcap(Hardcap::Unbounded)
        .shared_memory(format!("bench-take-{}", std::process::id()))
        .build()
        .unwrap();
    group.bench_function(
        "fueltank has_fuel allowed (Unbounded, shared memory)",
        |b| b.iter(|| black_box(shared.has_fuel())),
    );
    group.bench_function("fueltank has_fuel allowed (Unbounded)", |b| {
        b.iter(|| black_box(tank.has_fuel()))
    });
    let tank = limit_full();
    group.bench_function("fueltank has_fuel allowed (Limit, full)", |b| {
        b.iter(|| black_box(tank.has_fuel()))
    });
    // The same tank with a second rate: under its lock (issue 18: a tank
    // of two rates beside one).
    let tank = Tank::builder(Rate::per_second(HUGE_RATE).unwrap())
        .also(Rate::per_second(HUGE_RATE / 2).unwrap())
        .initial(HUGE_RATE / 2)
        .build()
        .unwrap();
    group.bench_function("fueltank has_fuel allowed (Limit, full, two rates)", |b| {
        b.iter(|| black_box(tank.has_fuel()))
    });
    let tank = empty_tank();
    group.bench_function("fueltank has_fuel denied", |b| {
        b.iter(|| black_box(tank.has_fuel()))
    });
    let tank = unbounded_full();
    group.bench_function("fueltank try_take allowed (Fuel token)", |b| {
        b.iter(|| black_box(tank.try_take(1)))
    });

    let limiter = governor_allowed();
    group.bench_function("governor check allowed", |b| {
        b.iter(|| black_box(limiter.check().is_ok()))
    });
    let limiter = governor_denied();
    group.bench_function("governor check denied", |b| {
        b.iter(|| black_box(limiter.check().is_ok()))
    });

    let limiter = leaky_allowed();
    group.bench_function("leaky-bucket try_acquire allowed", |b| {
        b.iter(|| black_box(limiter.try_acquire(1)))
    });
    let limiter = leaky_denied();
    group.bench_function("leaky-bucket try_acquire denied", |b| {
        b.iter(|| black_box(limiter.try_acquire(1)))
    });
    group.finish();
    let _ = std::fs::remove_file(format!(
        "/dev/shm/fueltank-bench-take-{}.tank",
        std::process::id()
    ));
}

/// Times `op` on this thread while a second thread runs it in a loop on the
/// same limiter, so both cores fight over its cache line.
fn contended(iters: u64, op: &(dyn Fn() -> bool + Sync)) -> Duration {
    let started = AtomicBool::new(false);
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            started.store(true, Ordering::Relaxed);
            while !stop.load(Ordering::Relaxed) {
                black_box(op());
            }
        });
        while !started.load(Ordering::Relaxed) {
            std::hint::spin_loop();
        }
        let start = Instant::now();
        for _ in 0..iters {
            black_box(op());
        }
        let elapsed = start.elapsed();
        stop.store(true, Ordering::Relaxed);
        elapsed
    })
}

fn take_contended(c: &mut Criterion) {
    let mut group = c.benchmark_group("take, 2 threads");
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(2));

    let tank = unbounded_full();
    group.bench_function("fueltank has_fuel allowed (Unbounded)", |b| {
        b.iter_custom(|iters| contended(iters, &|| tank.has_fuel()))
    });
    let tank = empty_tank();
    group.bench_function("fueltank has_fuel denied", |b| {
        b.iter_custom(|iters| contended(iters, &|| tank.has_fuel()))
    });
    let limiter = governor_allowed();
    group.bench_function("governor check allowed", |b| {
        b.iter_custom(|iters| contended(iters, &|| limiter.check().is_ok()))
    });
    let limiter = governor_denied();
    group.bench_function("governor check denied", |b| {
        b.iter_custom(|iters| contended(iters, &|| limiter.check().is_ok()))
    });
    group.finish();
}

criterion_group!(benches, take, take_contended);
criterion_main!(benches);
