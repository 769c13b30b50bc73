//! Helpers shared by the integration tests: a tank on a manual clock,
//! polling by hand, counting wakes, and measuring grant patterns.
#![allow(dead_code)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use fueltank::clock::ManualClock;
use fueltank::{Hardcap, Tank};

/// A tank of `rate` ("2/s") under `hardcap`, holding `initial`, on `clock`.
pub fn tank(rate: &str, hardcap: Hardcap, initial: u64, clock: &ManualClock) -> Tank {
    Tank::builder(rate.parse().unwrap())
        .hardcap(hardcap)
        .initial(initial)
        .clock(clock.clone())
        .build()
        .unwrap()
}

/// A waker that counts how often it was woken.
#[derive(Default)]
pub struct WakeCounter(AtomicUsize);

impl WakeCounter {
    pub fn new() -> Arc<WakeCounter> {
        Arc::new(WakeCounter::default())
    }

    pub fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

impl Wake for WakeCounter {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Polls `future` once with `waker`.
pub fn poll_with<F: Future + ?Sized>(future: Pin<&mut F>, waker: &Waker) -> Poll<F::Output> {
    future.poll(&mut Context::from_waker(waker))
}

/// Polls `future` once with a waker that does nothing.
pub fn poll<F: Future + ?Sized>(future: Pin<&mut F>) -> Poll<F::Output> {
    poll_with(future, Waker::noop())
}

/// The most grants in any half-open window `[a, a + per)`.
pub fn worst_window(grants: &[Instant], per: Duration) -> usize {
    let mut sorted = grants.to_vec();
    sorted.sort();
    let mut worst = 0;
    let mut start = 0;
    for end in 0..sorted.len() {
        while sorted[end] - sorted[start] >= per {
            start += 1;
        }
        worst = worst.max(end - start + 1);
    }
    worst
}

/// The shortest gap between consecutive grants.
pub fn shortest_gap(grants: &[Instant]) -> Option<Duration> {
    let mut sorted = grants.to_vec();
    sorted.sort();
    sorted.windows(2).map(|w| w[1] - w[0]).min()
}

/// Multi-process tests: a test re-runs its own binary as worker processes.
///
/// The test calls [`worker`] first: in a worker it returns the worker's
/// arguments (the test then does the worker's part and returns); in the
/// test itself, `None`. [`spawn_worker`] starts a worker running only this
/// test, its arguments passed in an environment variable.
pub mod processes {
    use std::process::{Child, Command, Stdio};

    const VAR: &str = "FUELTANK_TEST_WORKER";

    /// This process's worker arguments, if it is a worker.
    pub fn worker() -> Option<Vec<String>> {
        let args = std::env::var(VAR).ok()?;
        Some(args.split('\u{1f}').map(str::to_owned).collect())
    }

    /// Starts a worker process running only `test` of this binary, with
    /// `args`; its standard output is piped.
    pub fn spawn_worker(test: &str, args: &[String]) -> Child {
        Command::new(std::env::current_exe().expect("the test binary"))
            .args(["--exact", test, "--nocapture", "--test-threads=1"])
            .env(VAR, args.join("\u{1f}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("a worker process starts")
    }

    /// What follows `prefix` on each of a worker's lines that has it (the
    /// first may share its line with the test harness's `test NAME ... `).
    pub fn lines(output: &[u8], prefix: &str) -> Vec<String> {
        String::from_utf8_lossy(output)
            .lines()
            .filter_map(|line| {
                let at = line.find(prefix)?;
                Some(line[at + prefix.len()..].to_owned())
            })
            .collect()
    }
}
