//! Memory of pending waiters: 100k waiters on one tank (ManualClock) are each
//! granted once, in FIFO order, with no extra wake-up and no heap allocation
//! per waiter; and bytes per pending waiter side by side with governor and
//! leaky-bucket (printed).
//!
//! `cargo test --release -p fueltank-benches --test waiters_memory -- --nocapture`

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use fueltank::clock::ManualClock;
use fueltank::{Rate, Tank};

/// Counts the heap bytes live on each thread, so that tests running in
/// parallel do not see each other's allocations.
struct CountingAllocator;

thread_local! {
    static LIVE_BYTES: Cell<isize> = const { Cell::new(0) };
}

fn count(delta: isize) {
    // `try_with`: the slot may already be gone while a thread exits.
    let _ = LIVE_BYTES.try_with(|live| live.set(live.get() + delta));
}

fn live_bytes() -> isize {
    LIVE_BYTES.with(Cell::get)
}

// SAFETY: every call is forwarded unchanged to the system allocator.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as isize);
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(-(layout.size() as isize));
        // SAFETY: forwarded with the caller's pointer and layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size as isize - layout.size() as isize);
        // SAFETY: forwarded with the caller's arguments.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// A waker that counts its wake-ups and records the order of first wakes.
struct CountingWaker {
    id: u32,
    wakes: AtomicU32,
    order: Arc<Mutex<Vec<u32>>>,
}

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.wakes.fetch_add(1, Ordering::Relaxed);
        self.order.lock().unwrap().push(self.id);
    }
}

const WAITERS: usize = 100_000;
const INTERVAL_NS: u64 = 10_000; // 100k per second

#[test]
fn hundred_thousand_pending_waiters_are_each_granted_once_in_fifo_order() {
    let clock = ManualClock::new();
    let tank = Tank::builder(Rate::per_second(1_000_000_000 / INTERVAL_NS).unwrap())
        .initial(0)
        .clock(clock.clone())
        .build()
        .unwrap();
    let order = Arc::new(Mutex::new(Vec::with_capacity(WAITERS)));
    let wakers: Vec<Arc<CountingWaker>> = (0..WAITERS)
        .map(|id| {
            Arc::new(CountingWaker {
                id: id as u32,
                wakes: AtomicU32::new(0),
                order: order.clone(),
            })
        })
        .collect();
    let as_wakers: Vec<Waker> = wakers.iter().map(|w| Waker::from(w.clone())).collect();
    let mut futures: Vec<_> = (0..WAITERS).map(|_| Box::pin(tank.await_fuel())).collect();

    // Only the first polls are counted: the futures' own storage is the
    // caller's (here boxes, in a real program a task), not the tank's.
    let before = live_bytes();
    for (future, waker) in futures.iter_mut().zip(&as_wakers) {
        let poll = future.as_mut().poll(&mut Context::from_waker(waker));
        assert!(poll.is_pending());
    }
    let heap_per_waiter = (live_bytes() - before) as f64 / WAITERS as f64;
    let future_size = std::mem::size_of_val(&*futures[0]);
    println!(
        "fueltank: {WAITERS} pending waiters, {future_size} B per await_fuel future, \
         {heap_per_waiter:.3} heap B per waiter"
    );
    assert_eq!(tank.waiting(), WAITERS);
    // The one timer may allocate once; the waiters themselves not at all.
    assert!(
        heap_per_waiter < 0.01,
        "{heap_per_waiter} heap bytes per waiter"
    );

    // Advance in uneven steps, some shorter than the interval, some worth
    // many grants: after each, exactly the due ones are granted, in order,
    // each woken once.
    let steps_us = [3, 10, 25, 1_000, 7, 10_000, 13];
    let mut elapsed_ns = 0u64;
    for step in steps_us.iter().cycle() {
        clock.advance(Duration::from_micros(*step));
        elapsed_ns += step * 1000;
        let due = ((elapsed_ns / INTERVAL_NS) as usize).min(WAITERS);
        let granted = order.lock().unwrap().len();
        assert_eq!(granted, due, "after {elapsed_ns} ns");
        assert_eq!(tank.waiting(), WAITERS - due);
        if due == WAITERS {
            break;
        }
    }
    let order = order.lock().unwrap().clone();
    assert!(
        order.iter().enumerate().all(|(i, &id)| i as u32 == id),
        "not FIFO"
    );
    for (future, waker) in futures.iter_mut().zip(&as_wakers) {
        let poll = future.as_mut().poll(&mut Context::from_waker(waker));
        assert_eq!(poll, Poll::Ready(()));
    }
    assert!(wakers.iter().all(|w| w.wakes.load(Ordering::Relaxed) == 1));
    assert_eq!(tank.waiting(), 0);
}

/// Polls each future once with a do-nothing waker and returns (future size,
/// heap bytes allocated per pending future by those polls). The first poll
/// is not counted: it pays one-time set-up (a timer thread, a reactor).
fn pending_cost<F: Future>(futures: &mut [Pin<Box<F>>]) -> (usize, f64) {
    let waker = Waker::noop();
    let (first, rest) = futures.split_first_mut().unwrap();
    assert!(
        first
            .as_mut()
            .poll(&mut Context::from_waker(waker))
            .is_pending()
    );
    let before = live_bytes();
    for future in rest.iter_mut() {
        assert!(
            future
                .as_mut()
                .poll(&mut Context::from_waker(waker))
                .is_pending()
        );
    }
    let heap = (live_bytes() - before) as f64 / rest.len() as f64;
    (std::mem::size_of_val(&*futures[0]), heap)
}

#[test]
fn bytes_per_pending_waiter_beside_the_peers() {
    const N: usize = 1000;
    let tank = Tank::builder(Rate::new(1, Duration::from_secs(3600)).unwrap())
        .initial(0)
        .build()
        .unwrap();
    let mut tank_futures: Vec<_> = (0..N).map(|_| Box::pin(tank.await_fuel())).collect();
    let fueltank = pending_cost(&mut tank_futures);

    let governor = governor::RateLimiter::direct(governor::Quota::per_hour(NonZeroU32::MIN));
    let _ = governor.check();
    let mut governor_futures: Vec<_> = (0..N).map(|_| Box::pin(governor.until_ready())).collect();
    let governor_cost = pending_cost(&mut governor_futures);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _in_runtime = runtime.enter();
    let leaky = leaky_bucket::RateLimiter::builder()
        .initial(0)
        .interval(Duration::from_secs(3600))
        .build();
    let mut leaky_futures: Vec<_> = (0..N).map(|_| Box::pin(leaky.acquire_one())).collect();
    let leaky_cost = pending_cost(&mut leaky_futures);

    println!("| limiter | pending future B | heap B per pending waiter | total B |");
    println!("|---|---:|---:|---:|");
    for (name, (size, heap)) in [
        ("fueltank await_fuel", fueltank),
        ("governor until_ready", governor_cost),
        ("leaky-bucket acquire_one", leaky_cost),
    ] {
        println!(
            "| {name} | {size} | {heap:.1} | {:.0} |",
            size as f64 + heap
        );
    }
    assert!(fueltank.1 < 1.0, "fueltank allocates per waiter");
    drop(leaky_futures);
}
