//! The same job in real time under every kind of executor: tokio (both
//! flavours), smol, `futures::executor`, and plain threads. Tolerances hold
//! on a loaded two-core machine: they check that waiting works and paces,
//! not how precisely (that is measured in `benches/`).

use std::time::{Duration, Instant};

use fueltank::{Rate, Tank};

const TASKS: usize = 4;
const EACH: usize = 10;

/// 40 grants at 200/s, starting with one fuel: 39 intervals of 5 ms.
fn tank() -> Tank {
    Tank::new(Rate::per_second(200).unwrap())
}

fn check(elapsed: Duration) {
    assert!(
        elapsed >= Duration::from_millis(190),
        "too fast: {elapsed:?}"
    );
    assert!(elapsed < Duration::from_secs(5), "stalled: {elapsed:?}");
}

async fn job(tank: Tank) -> usize {
    for _ in 0..EACH {
        tank.await_fuel().await;
    }
    EACH
}

/// The job as spawned tokio tasks on `runtime`.
fn on_tokio(runtime: tokio::runtime::Runtime) {
    let tank = tank();
    let start = Instant::now();
    let done: usize = runtime.block_on(async {
        let tasks: Vec<_> = (0..TASKS)
            .map(|_| tokio::spawn(job(tank.clone())))
            .collect();
        let mut done = 0;
        for task in tasks {
            done += task.await.unwrap();
        }
        done
    });
    check(start.elapsed());
    assert_eq!(done, TASKS * EACH);
}

#[test]
fn tokio_multi_thread() {
    on_tokio(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap(),
    );
}

#[test]
fn tokio_current_thread() {
    on_tokio(
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap(),
    );
}

#[test]
fn smol() {
    let tank = tank();
    let start = Instant::now();
    let done: usize = smol::block_on(async {
        let tasks: Vec<_> = (0..TASKS).map(|_| smol::spawn(job(tank.clone()))).collect();
        let mut done = 0;
        for task in tasks {
            done += task.await;
        }
        done
    });
    check(start.elapsed());
    assert_eq!(done, TASKS * EACH);
}

#[test]
fn futures_executor() {
    let tank = tank();
    let start = Instant::now();
    let jobs = (0..TASKS).map(|_| job(tank.clone()));
    let done: usize = futures::executor::block_on(futures::future::join_all(jobs))
        .into_iter()
        .sum();
    check(start.elapsed());
    assert_eq!(done, TASKS * EACH);
}

#[test]
fn plain_threads() {
    let tank = tank();
    let start = Instant::now();
    let threads: Vec<_> = (0..TASKS)
        .map(|_| {
            let tank = tank.clone();
            std::thread::spawn(move || {
                for _ in 0..EACH {
                    tank.blocking_await_fuel();
                }
                EACH
            })
        })
        .collect();
    let done: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    check(start.elapsed());
    assert_eq!(done, TASKS * EACH);
}

#[test]
fn has_fuel_from_many_threads_never_over_grants() {
    // 8 threads hammer has_fuel for 300 ms on a 1000/s tank starting full:
    // at most 1000 + 1000 · elapsed grants.
    let tank = Tank::builder(Rate::per_second(1000).unwrap())
        .initial(1000)
        .build()
        .unwrap();
    let start = Instant::now();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let tank = tank.clone();
            std::thread::spawn(move || {
                let mut granted = 0u64;
                while start.elapsed() < Duration::from_millis(300) {
                    granted += u64::from(tank.has_fuel());
                }
                granted
            })
        })
        .collect();
    let granted: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    let elapsed = start.elapsed().as_secs_f64();
    assert!(
        granted as f64 <= 1000.0 + 1000.0 * elapsed + 1.0,
        "{granted} in {elapsed} s"
    );
    // Tolerant: on a loaded machine the threads may get little time.
    assert!(granted > 1000, "{granted}: some of the refill is taken");
}
