//! What a key of a `KeyedTank` costs in memory, counted by a global
//! allocator: one test, so that nothing else in this binary allocates
//! meanwhile. `--nocapture` prints the figures.

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicIsize, Ordering};

use fueltank::clock::ManualClock;
use fueltank::{Hardcap, KeyedTank, Rate};

/// Counts the bytes this test binary holds on the heap.
struct Counting;

static HELD: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator and only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        HELD.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        HELD.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[test]
fn what_a_key_costs() {
    an_idle_key_costs_at_most_64_bytes();
    memory_per_key_stays_bounded_under_churn();
    window_keys_cost_what_the_docs_say();
}

fn an_idle_key_costs_at_most_64_bytes() {
    let keyed = KeyedTank::builder(Rate::per_second(100).unwrap())
        .max_keys(1 << 20)
        .clock(ManualClock::new())
        .build()
        .unwrap();
    let keys = 100_000u32;
    // Warm up allocations that are not per key (shards, clock).
    keyed.has_fuel(&IpAddr::V4(Ipv4Addr::from(0)));
    let before = HELD.load(Ordering::SeqCst);
    for i in 1..=keys {
        // Each key takes one: it owes fuel, so it is kept.
        assert!(keyed.has_fuel(&IpAddr::V4(Ipv4Addr::from(i))));
    }
    let per_key = (HELD.load(Ordering::SeqCst) - before) as f64 / f64::from(keys);
    println!("bytes per idle IPv4 key: {per_key:.1}");
    assert!(per_key <= 64.0, "{per_key:.1} bytes per key");

    let v6 = KeyedTank::builder(Rate::per_second(100).unwrap())
        .clock(ManualClock::new())
        .build()
        .unwrap();
    v6.has_fuel(&IpAddr::V6(Ipv6Addr::from(0)));
    let before = HELD.load(Ordering::SeqCst);
    for i in 1..=keys {
        assert!(v6.has_fuel(&IpAddr::V6(Ipv6Addr::from(u128::from(i)))));
    }
    let per_key = (HELD.load(Ordering::SeqCst) - before) as f64 / f64::from(keys);
    println!("bytes per idle IPv6 key: {per_key:.1}");
    assert!(per_key <= 64.0, "{per_key:.1} bytes per key");
}

/// Memory under churn (keys inserted and evicted over and over, every one
/// owing fuel), all of the keyed tank counted — map, side tables and debt
/// table — stays within 64 bytes per key of `max_keys`, for small and
/// large key types.
fn memory_per_key_stays_bounded_under_churn() {
    fn churn<K: std::hash::Hash + Eq + Clone + Send + Sync + 'static>(
        key: impl Fn(u64) -> K,
    ) -> f64 {
        let keys = 50_000;
        let before = HELD.load(Ordering::SeqCst);
        let keyed = KeyedTank::builder(Rate::per_second(100).unwrap())
            .max_keys(keys)
            .clock(ManualClock::new())
            .build()
            .unwrap();
        for i in 0..(4 * keys as u64) {
            assert!(keyed.has_fuel(&key(i)) || i >= keys as u64);
        }
        assert!(keyed.len() > keys * 3 / 4, "{} keys held", keyed.len());
        // Per key of the bound: what `max_keys` keys cost at most.
        let per_key = (HELD.load(Ordering::SeqCst) - before) as f64 / keys as f64;
        drop(keyed);
        per_key
    }
    let u64_key = churn(|i| i);
    let v6_key = churn(|i| IpAddr::V6(Ipv6Addr::from(u128::from(i) << 64 | 7)));
    let text_key = churn(|i| format!("user-{i}@example.com"));
    println!("bytes per key under churn: u64 {u64_key:.1}, IPv6 {v6_key:.1}, String {text_key:.1}");
    for (name, per_key) in [("u64", u64_key), ("IPv6", v6_key), ("String", text_key)] {
        assert!(per_key <= 64.0, "{name}: {per_key:.1} bytes per key");
    }
}

/// A `Window` key is compact while idle: its log, not a whole tank.
fn window_keys_cost_what_the_docs_say() {
    let keyed = KeyedTank::builder("5/min".parse().unwrap())
        .hardcap(Hardcap::Window)
        .max_keys(20_000)
        .clock(ManualClock::new())
        .build()
        .unwrap();
    keyed.has_fuel(&0u64);
    let before = HELD.load(Ordering::SeqCst);
    for key in 1..=10_000u64 {
        assert!(keyed.has_fuel(&key));
    }
    let per_key = (HELD.load(Ordering::SeqCst) - before) as f64 / 10_000.0;
    println!("bytes per idle Window key, one grant: {per_key:.1}");
    assert!(per_key <= 150.0, "{per_key:.1} bytes per key");
}
