//! What one grant costs: `GlobalTank::has_fuel` with fuel reserved here
//! against a local `fueltank::Tank::has_fuel` (both allowed and denied),
//! the ready path of `await_fuel`, and one call of a one-call-per-request
//! GCRA script (the peer's every grant) on the same Redis.
//!
//! `cargo bench -p fueltank-redis-benches --bench grant`
//!
//! Starts its own `redis-server` on a free port (it must be on the PATH).

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use fueltank::{Hardcap, Rate, Tank};
use fueltank_redis::RedisStore;

/// The peer: GCRA, one script call per request (the one `accuracy.rs` runs).
const PEER: &str = include_str!("peer.lua");

fn grants(c: &mut Criterion) {
    let redis = common::RedisServer::start();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    // A rate far above what one thread can take: reserved fuel is always
    // there, refilled a million at a time in the background.
    let fast: Rate = "100000000/s".parse().unwrap();
    let (store, global, denied, mut peer) = runtime.block_on(async {
        let store = RedisStore::connect(&redis.url()).await.unwrap();
        let global = store
            .tank("bench-allowed", fast)
            .max_batch(1 << 20)
            .reserve_ahead(Duration::from_secs(1))
            .build()
            .await
            .unwrap();
        // Full for an hour: Redis refuses, and says when to ask again.
        let denied = store
            .tank("bench-denied", "1/h".parse().unwrap())
            .hardcap(Hardcap::Window)
            .build()
            .await
            .unwrap();
        denied.await_fuel().await;
        assert!(!denied.await_fuel_timeout(Duration::from_millis(50)).await);
        let client = redis::Client::open(redis.url()).unwrap();
        // No response timeout: a loaded machine must not fail the bench.
        let config = redis::AsyncConnectionConfig::new().set_response_timeout(None);
        let peer = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .unwrap();
        (store, global, denied, peer)
    });
    // Let the reserve fill.
    let started = Instant::now();
    while global.reserved() < 100_000 && started.elapsed() < Duration::from_secs(5) {
        global.has_fuel();
        std::thread::sleep(Duration::from_micros(10));
    }
    let local = Tank::builder(Rate::new(1_000_000_000, Duration::from_secs(1)).unwrap())
        .initial(1_000_000_000)
        .build()
        .unwrap();
    let local_denied = Tank::builder("1/h".parse().unwrap())
        .hardcap(Hardcap::One)
        .build()
        .unwrap();
    assert!(local_denied.has_fuel());

    let mut group = c.benchmark_group("has_fuel");
    group.bench_function("allowed/local Tank", |b| {
        b.iter(|| black_box(local.has_fuel()))
    });
    group.bench_function("allowed/GlobalTank, reserved", |b| {
        b.iter(|| black_box(global.has_fuel()))
    });
    group.bench_function("denied/local Tank", |b| {
        b.iter(|| black_box(local_denied.has_fuel()))
    });
    group.bench_function("denied/GlobalTank, refused by Redis", |b| {
        b.iter(|| black_box(denied.has_fuel()))
    });
    group.finish();

    let mut group = c.benchmark_group("one grant");
    group.bench_function("GlobalTank await_fuel, reserved", |b| {
        b.iter(|| futures::executor::block_on(global.await_fuel()))
    });
    let script = redis::Script::new(PEER);
    group.bench_function("one call per request (GCRA script)", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let answer: Vec<i64> = script
                    .key("bench-peer")
                    .arg(1u64)
                    .arg(1_000_000_000u64)
                    .invoke_async(&mut peer)
                    .await
                    .unwrap();
                black_box(answer)
            })
        })
    });
    group.finish();
    let stats = store.stats();
    println!(
        "GlobalTank: {} round trips for {} grants ({:.2e} per grant), {} misses refused locally",
        stats.round_trips,
        stats.granted,
        stats.round_trips as f64 / stats.granted.max(1) as f64,
        stats.policy_refusals
    );
}

criterion_group!(benches, grants);
criterion_main!(benches);
