//! Non-blocking take, allowed and denied, side by side with the peers.
//!
//! `cargo bench --bench take`

use std::hint::black_box;
use std::num::NonZeroU32;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use fueltank::{Hardcap, Rate, Tank};

fn take(c: &mut Criterion) {
    let mut group = c.benchmark_group("take");
    group.measurement_time(Duration::from_secs(3));

    let allowed = Tank::builder(Rate::per_second(1_000_000_000).unwrap())
        .hardcap(Hardcap::Unbounded)
        .build()
        .unwrap();
    group.bench_function("fueltank has_fuel allowed", |b| {
        b.iter(|| black_box(allowed.has_fuel()))
    });
    let denied = Tank::builder(Rate::per_minute(1).unwrap())
        .initial(0)
        .build()
        .unwrap();
    group.bench_function("fueltank has_fuel denied", |b| {
        b.iter(|| black_box(denied.has_fuel()))
    });

    let quota = governor::Quota::per_second(NonZeroU32::MAX);
    let governor_allowed = governor::RateLimiter::direct(quota);
    group.bench_function("governor check allowed", |b| {
        b.iter(|| black_box(governor_allowed.check().is_ok()))
    });
    let governor_denied = governor::RateLimiter::direct(governor::Quota::per_hour(NonZeroU32::MIN));
    let _ = governor_denied.check();
    group.bench_function("governor check denied", |b| {
        b.iter(|| black_box(governor_denied.check().is_ok()))
    });
    group.finish();
}

criterion_group!(benches, take);
criterion_main!(benches);
