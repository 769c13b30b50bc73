//! Helpers shared by the integration tests: polling by hand, counting wakes,
//! and measuring grant patterns.
#![allow(dead_code)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

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
