//! `Monitor::emit` against a bare atomic add, uncontended and with a second
//! thread emitting into the same monitor; a `Throttle`'s take with its
//! emission; then a monitor in shared memory
//! beside the in-process one, alone and with a second *process* emitting
//! into it (this bench binary re-run as the rival).
//!
//! `cargo bench -p fueltank-benches --bench emit -- --warm-up-time 1
//! --measurement-time 2`; the shared-memory group alone:
//! `cargo bench -p fueltank-benches --bench emit -- 'emit shared'`.

use std::hint::black_box;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use fueltank::clock::{Clock, MonotonicClock};
use fueltank::{Hardcap, Monitor, Rate, Throttle};

/// Set in the rival process: the shared monitor's file.
const RIVAL: &str = "FUELTANK_BENCH_EMIT_RIVAL";

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

    // A throttle: the take of its tank and the emission of what it took.
    let plenty = Throttle::builder(Rate::per_second(1_000_000_000).unwrap())
        .hardcap(Hardcap::Unbounded)
        .build()
        .unwrap();
    group.bench_function("Throttle has_fuel allowed (auto_emit)", |b| {
        b.iter(|| black_box(&plenty).has_fuel())
    });
    let mut cx = Context::from_waker(Waker::noop());
    group.bench_function("Throttle await_fuel ready (one poll, auto_emit)", |b| {
        b.iter(|| {
            let fuel = std::pin::pin!(black_box(&plenty).await_fuel());
            black_box(fuel.poll(&mut cx))
        })
    });
    let empty = Throttle::builder(Rate::per_minute(1).unwrap())
        .initial(0)
        .build()
        .unwrap();
    group.bench_function("Throttle has_fuel denied", |b| {
        b.iter(|| black_box(&empty).has_fuel())
    });

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

/// A file for a shared monitor, removed when dropped.
struct File(PathBuf);

impl Drop for File {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn shared(path: &File) -> Monitor {
    Monitor::builder()
        .shared_memory(path.0.to_str().expect("a UTF-8 temporary directory"))
        .build()
        .expect("a shared monitor")
}

/// Starts this binary again as a process emitting into the shared monitor
/// at `path` until the monitor is stopped; returns once it emits.
fn spawn_rival(path: &File, monitor: &Monitor) -> Child {
    let before = monitor.total();
    let child = Command::new(std::env::current_exe().expect("the bench binary"))
        .env(RIVAL, &path.0)
        .spawn()
        .expect("the rival process starts");
    let deadline = Instant::now() + Duration::from_secs(10);
    while monitor.total() == before {
        assert!(Instant::now() < deadline, "the rival never emitted");
        std::thread::yield_now();
    }
    child
}

/// The rival process: emits until the monitor is stopped (the bench's
/// signal that it is done), or for at most a minute if the bench died.
fn rival(path: &str) {
    let monitor = Monitor::builder()
        .shared_memory(path)
        .build()
        .expect("the rival attaches");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !monitor.is_stopped() && Instant::now() < deadline {
        for _ in 0..1024 {
            monitor.emit();
        }
    }
}

fn emit_shared(c: &mut Criterion) {
    let mut group = c.benchmark_group("emit shared");
    group.measurement_time(Duration::from_secs(2));
    group.warm_up_time(Duration::from_secs(1));
    // Where a name's file goes: tmpfs on Linux. (A file on a disk's file
    // system is written back, and each writeback makes the next write to
    // the mapping fault.)
    let dir = std::path::Path::new("/dev/shm");
    let dir = if dir.is_dir() {
        dir.to_owned()
    } else {
        std::env::temp_dir()
    };
    let file = File(dir.join(format!(
        "fueltank-bench-emit-{}.monitor",
        std::process::id()
    )));

    // The clocks the two read: the difference between them is most of the
    // difference between the two emits.
    group.bench_function("clock: MonotonicClock::now (in process)", |b| {
        b.iter(|| black_box(MonotonicClock.now()))
    });
    #[cfg(unix)]
    group.bench_function("clock: host monotonic, clock_gettime (shared)", |b| {
        b.iter(|| {
            black_box(rustix::time::clock_gettime(
                rustix::time::ClockId::Monotonic,
            ))
        })
    });

    let local = Monitor::new();
    group.bench_function("Monitor::emit, in process", |b| {
        b.iter(|| black_box(&local).emit())
    });
    let monitor = shared(&file);
    group.bench_function("Monitor::emit, shared memory", |b| {
        b.iter(|| black_box(&monitor).emit())
    });

    // Two emitters on one monitor: two threads in process, two processes
    // in shared memory.
    let stop = Arc::new(AtomicBool::new(false));
    let rival_thread = std::thread::spawn({
        let (stop, local) = (stop.clone(), local.clone());
        move || {
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..64 {
                    local.emit();
                }
            }
        }
    });
    group.bench_function("Monitor::emit, in process, 2 threads", |b| {
        b.iter(|| black_box(&local).emit())
    });
    stop.store(true, Ordering::Relaxed);
    rival_thread.join().unwrap();

    let mut rival_process = spawn_rival(&file, &monitor);
    group.bench_function("Monitor::emit, shared memory, 2 processes", |b| {
        b.iter(|| black_box(&monitor).emit())
    });
    monitor.stop();
    let _ = rival_process.wait();
    group.finish();
}

criterion_group!(benches, emit, emit_shared);

fn main() {
    if let Ok(path) = std::env::var(RIVAL) {
        return rival(&path);
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
