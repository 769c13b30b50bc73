//! `Monitor::emit` against a bare atomic add, uncontended and with a second
//! thread emitting into the same monitor.
//!
//! `cargo bench --bench emit -- --warm-up-time 1 --measurement-time 2`

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use fueltank::Monitor;

fn emit(c: &mut Criterion) {
    let mut group = c.benchmark_group("emit");
    group.measurement_time(Duration::from_secs(2));
    group.warm_up_time(Duration::from_secs(1));

    let counter = AtomicU64::new(0);
    group.bench_function("atomic fetch_add", |b| {
        b.iter(|| black_box(&counter).fetch_add(1, Ordering::Relaxed))
    });
    let monitor = Monitor::new();
    group.bench_function("Monitor::emit", |b| b.iter(|| black_box(&monitor).emit()));

    // The same with another thread hammering the same counter / monitor.
    let stop = Arc::new(AtomicBool::new(false));
    let counter = Arc::new(AtomicU64::new(0));
    let monitor = Monitor::new();
    let rival = std::thread::spawn({
        let (stop, counter, monitor) = (stop.clone(), counter.clone(), monitor.clone());
        move || {
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..64 {
                    counter.fetch_add(1, Ordering::Relaxed);
                    monitor.emit();
                }
            }
        }
    });
    group.bench_function("atomic fetch_add, 2 threads", |b| {
        b.iter(|| black_box(&*counter).fetch_add(1, Ordering::Relaxed))
    });
    group.bench_function("Monitor::emit, 2 threads", |b| {
        b.iter(|| black_box(&monitor).emit())
    });
    stop.store(true, Ordering::Relaxed);
    rival.join().unwrap();
    group.finish();
}

criterion_group!(benches, emit);
criterion_main!(benches);
