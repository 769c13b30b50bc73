//! One tank per key: each key behaves exactly like its own tank, waits work
//! per key, and memory stays bounded under a flood of new keys while the
//! keys that owe most are kept.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use common::poll;
use fueltank::clock::ManualClock;
use fueltank::{Hardcap, KeyedTank, Rate, Tank};

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

const MS: Duration = Duration::from_millis(1);

#[test]
fn each_key_behaves_like_its_own_tank() {
    for hardcap in [
        Hardcap::Limit,
        Hardcap::One,
        Hardcap::Unbounded,
        Hardcap::Window,
    ] {
        let clock = ManualClock::new();
        let rate: Rate = "5/s".parse().unwrap();
        let keyed = KeyedTank::builder(rate)
            .hardcap(hardcap)
            .clock(clock.clone())
            .build()
            .unwrap();
        let cap = match hardcap {
            Hardcap::One => 1,
            _ => 5,
        };
        let tank = Tank::builder(rate)
            .hardcap(hardcap)
            .initial(cap)
            .clock(clock.clone())
            .build()
            .unwrap();
        // An irregular greedy pattern over 6 s, with a quiet spell.
        for step in 0..600u64 {
            if !(200..350).contains(&step) {
                let wanted = 1 + step % 3;
                for _ in 0..wanted {
                    assert_eq!(
                        keyed.has_fuel(&"k"),
                        tank.has_fuel(),
                        "{hardcap:?} step {step}"
                    );
                }
                assert_eq!(keyed.level(&"k"), tank.level(), "{hardcap:?} step {step}");
            }
            clock.advance(10 * MS + Duration::from_micros(step % 7));
        }
    }
}

#[test]
fn keys_do_not_share_fuel() {
    let keyed = KeyedTank::new(Rate::per_second(1).unwrap());
    assert!(keyed.has_fuel(&1));
    assert!(!keyed.has_fuel(&1));
    assert!(keyed.has_fuel(&2));
    assert!(!keyed.has_fuel_n(&3, 2), "more than a key's capacity");
    assert!(keyed.has_fuel_n(&3, 0));
}

#[test]
fn waiting_on_a_key_is_fifo_and_goes_idle_again() {
    let clock = ManualClock::new();
    let keyed = KeyedTank::builder(Rate::per_second(10).unwrap())
        .initial(0)
        .clock(clock.clone())
        .build()
        .unwrap();
    let mut first = Box::pin(keyed.await_fuel("k"));
    let mut second = Box::pin(keyed.await_fuel("k"));
    let mut other = Box::pin(keyed.await_fuel("other"));
    assert!(poll(first.as_mut()).is_pending());
    assert!(poll(second.as_mut()).is_pending());
    assert!(poll(other.as_mut()).is_pending());
    assert!(!keyed.has_fuel(&"k"), "never overtakes a waiter");
    assert_eq!(keyed.wait_time(&"k", 1), Some(300 * MS));
    clock.advance(100 * MS);
    assert!(poll(first.as_mut()).is_ready());
    assert!(poll(second.as_mut()).is_pending());
    assert!(poll(other.as_mut()).is_ready());
    clock.advance(100 * MS);
    assert!(poll(second.as_mut()).is_ready());
    drop((first, second, other));
    // The keys' tanks are idle now; once full, a sweep forgets them. Keys
    // of every shard see operations, so every shard sweeps.
    clock.advance(Duration::from_secs(2));
    assert_eq!(keyed.level(&"k"), 10, "held, and full");
    for i in 0..2_000 {
        let filler: &'static str = format!("filler {i}").leak();
        keyed.has_fuel(&filler);
    }
    // A forgotten key reads as a new one: `initial`, here 0.
    assert_eq!(keyed.level(&"k"), 0, "forgotten");
    assert_eq!(keyed.level(&"other"), 0, "forgotten");
    assert!(keyed.len() < 2_000);
}

#[test]
fn a_flood_of_new_keys_keeps_memory_bounded() {
    let clock = ManualClock::new();
    let keyed = KeyedTank::builder(Rate::per_second(10).unwrap())
        .max_keys(1_000)
        .clock(clock.clone())
        .build()
        .unwrap();
    // A victim drains its tank, then a flood of new keys each takes one.
    let victim = u32::MAX;
    while keyed.has_fuel(&victim) {}
    for key in 0..100_000u32 {
        assert!(keyed.has_fuel(&key));
        assert!(keyed.len() <= 1_000 + 16, "{} keys at {key}", keyed.len());
    }
    // The victim owed the most: it was never forgotten, so it has no fuel.
    assert!(!keyed.has_fuel(&victim));
}

#[test]
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
