//! Edges of the tank found in review: shrinking a `Window`, giving back old
//! fuel, fuel from another tank, huge banks, the end of the clock, wakers
//! that call back, futures polled after they completed, `Window` keys under
//! a flood.

mod common;

use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Poll, Wake, Waker};
use std::time::{Duration, Instant};

use common::{poll, poll_with, tank, worst_window};
use fueltank::clock::{Clock, ManualClock};
use fueltank::{Budget, Hardcap, KeyedTank, Rate, Tank};

fn rate(s: &str) -> Rate {
    s.parse().unwrap()
}

#[test]
fn shrinking_a_full_window_neither_underflows_nor_spins() {
    let clock = ManualClock::new();
    let window = tank("10/s", Hardcap::Window, 10, &clock);
    assert!(window.has_fuel_n(10));
    let mut waiter = Box::pin(window.await_fuel());
    assert!(poll(waiter.as_mut()).is_pending());
    window.set_rate(rate("5/s"));
    // The 10 grants at 0 s still count against any window of 1 s: nothing
    // until they leave at 1 s; then the waiter has the first, a newcomer
    // the second.
    assert_eq!(window.level(), 0);
    assert_eq!(window.wait_time(1), Some(Duration::from_secs(1)));
    clock.advance(Duration::from_millis(999));
    assert!(poll(waiter.as_mut()).is_pending());
    clock.advance(Duration::from_millis(1));
    assert!(poll(waiter.as_mut()).is_ready());
    assert_eq!(window.level(), 4);
}

#[test]
fn old_fuel_given_back_under_one_is_spent() {
    let clock = ManualClock::new();
    let one = tank("1/s", Hardcap::One, 1, &clock);
    let fuel = one.try_take(1).unwrap(); // at 0 s
    clock.advance(Duration::from_secs(10));
    assert!(one.has_fuel()); // at 10 s
    one.give_back(fuel); // the fuel would have overflowed the cap long ago
    assert!(!one.has_fuel(), "two grants at 10 s under One");

    // The same through a waiter granted and never polled.
    let mut waiter = Box::pin(one.await_fuel());
    assert!(poll(waiter.as_mut()).is_pending());
    clock.advance(Duration::from_secs(1)); // granted at 11 s, not seen
    clock.advance(Duration::from_secs(10));
    assert!(one.has_fuel()); // at 21 s
    drop(waiter);
    assert!(!one.has_fuel(), "two grants at 21 s under One");
}

#[test]
fn fresh_fuel_given_back_returns_even_under_one() {
    let clock = ManualClock::new();
    let one = tank("1/s", Hardcap::One, 1, &clock);
    let fuel = one.try_take(1).unwrap();
    clock.advance(Duration::from_millis(500));
    one.give_back(fuel); // before the next fuel: exact
    assert!(one.has_fuel());
    assert!(!one.has_fuel());
}

#[test]
fn old_permits_given_back_keep_the_limit_bound() {
    let clock = ManualClock::new();
    let limit = tank("4/s", Hardcap::Limit, 4, &clock);
    let start = clock.now();
    let mut grants = Vec::new();
    let fuel: Vec<_> = (0..4).map(|_| limit.try_take(1).unwrap()).collect();
    clock.advance(Duration::from_secs(10));
    while limit.has_fuel() {
        grants.push(clock.now());
    }
    fuel.into_iter().for_each(|fuel| limit.give_back(fuel)); // the bucket has been full since: nothing comes back
    while limit.has_fuel() {
        grants.push(clock.now());
    }
    clock.advance(Duration::from_millis(999));
    while limit.has_fuel() {
        grants.push(clock.now());
    }
    assert!(start + Duration::from_secs(10) <= grants[0]);
    let bound = 2 * 4 - 1;
    assert!(worst_window(&grants, Duration::from_secs(1)) <= bound);
}

#[test]
fn fuel_is_only_given_back_to_its_own_tank() {
    let clock = ManualClock::new();
    for _ in 0..100 {
        let a = tank("1/s", Hardcap::Limit, 1, &clock);
        let fuel = a.try_take(1).unwrap();
        drop(a);
        let b = tank("1/s", Hardcap::Limit, 1, &clock);
        assert!(b.has_fuel());
        b.give_back(fuel);
        assert_eq!(b.level(), 0, "fuel of a dropped tank credited to a new one");
    }
}

#[test]
fn set_rate_on_a_huge_unbounded_bank() {
    let clock = ManualClock::new();
    let unbounded = tank("1/s", Hardcap::Unbounded, 1 << 48, &clock);
    let before = unbounded.level();
    unbounded.set_rate(Rate::new(1, Duration::from_secs(30 * 86_400)).unwrap());
    assert_eq!(unbounded.level(), before, "the bank is kept, in fuel");
}

/// A waker that calls back into the tank when woken.
struct CallsBack {
    tank: Tank,
    woken: AtomicUsize,
}

impl Wake for CallsBack {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let _ = self.tank.waiting(); // takes the tank's lock
        self.woken.fetch_add(1, Ordering::SeqCst);
    }
}

/// A clock that jumps when told, with real timers.
#[derive(Debug, Clone)]
struct Jumps(Arc<std::sync::Mutex<Instant>>);

impl Clock for Jumps {
    fn now(&self) -> Instant {
        *self.0.lock().unwrap()
    }
}

#[test]
fn wakers_are_called_outside_the_lock_when_a_timeout_serves_the_line() {
    let at = Arc::new(std::sync::Mutex::new(Instant::now()));
    let tank = Tank::builder(rate("1/s"))
        .initial(0)
        .clock(Jumps(at.clone()))
        .build()
        .unwrap();
    let calls_back = Arc::new(CallsBack {
        tank: tank.clone(),
        woken: AtomicUsize::new(0),
    });
    let worker = std::thread::spawn(move || {
        let waker = Waker::from(calls_back.clone());
        let mut first = pin!(tank.await_fuel());
        assert!(poll_with(first.as_mut(), &waker).is_pending());
        let mut timed = pin!(tank.await_fuel_timeout(Duration::from_secs(2)));
        assert!(poll(timed.as_mut()).is_pending());
        *at.lock().unwrap() += Duration::from_secs(2);
        // The deadline passed: serving the line first grants `first`, whose
        // waker takes the tank's lock.
        let _ = poll(timed.as_mut());
        calls_back.woken.load(Ordering::SeqCst)
    });
    let start = Instant::now();
    while !worker.is_finished() {
        assert!(start.elapsed() < Duration::from_secs(10), "deadlock");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(worker.join().unwrap(), 1);
}

#[test]
#[should_panic(expected = "polled after it completed")]
fn a_wait_polled_again_after_completing_panics_rather_than_mint_fuel() {
    let clock = ManualClock::new();
    let limit = tank("10/s", Hardcap::Limit, 1, &clock);
    let mut wait = Box::pin(limit.await_fuel());
    let Poll::Ready(()) = poll(wait.as_mut()) else {
        panic!("one fuel to start with")
    };
    let _ = poll(wait.as_mut());
}

#[test]
fn window_keys_are_bounded_under_a_flood() {
    let keyed = KeyedTank::<u64>::builder(rate("1/h"))
        .hardcap(Hardcap::Window)
        .max_keys(64)
        .clock(ManualClock::new())
        .build()
        .unwrap();
    for key in 0..10_000u64 {
        // Once evicted keys' debts fill the debt table, new keys may be
        // refused: no key ever beyond its bound, whatever the flood.
        keyed.has_fuel(&key);
        assert!(keyed.len() <= 64, "{} keys at {key}", keyed.len());
    }
}

#[test]
fn a_newcomer_asking_for_nothing_waits_for_nothing() {
    let clock = ManualClock::new();
    for hardcap in [
        Hardcap::Limit,
        Hardcap::One,
        Hardcap::Unbounded,
        Hardcap::Window,
    ] {
        let empty = tank("1/s", hardcap, 0, &clock);
        assert!(empty.has_fuel_n(0));
        assert_eq!(empty.wait_time(0), Some(Duration::ZERO), "{hardcap:?}");
        // A line ahead, or a pause, holds back no request of nothing.
        let mut waiter = Box::pin(empty.await_fuel());
        assert!(poll(waiter.as_mut()).is_pending());
        assert!(empty.has_fuel_n(0));
        assert_eq!(empty.wait_time(0), Some(Duration::ZERO), "{hardcap:?}");
        empty.pause();
        assert_eq!(empty.wait_time(0), Some(Duration::ZERO), "{hardcap:?}");
    }
    let keyed = KeyedTank::<u32>::builder(rate("1/s"))
        .clock(clock.clone())
        .build()
        .unwrap();
    assert!(keyed.has_fuel(&1));
    assert!(keyed.has_fuel_n(&1, 0));
    assert_eq!(keyed.wait_time(&1, 0), Some(Duration::ZERO));
}

#[test]
fn setting_a_window_to_its_own_rate_keeps_its_promise() {
    let clock = ManualClock::new();
    let window = tank("10/s", Hardcap::Window, 10, &clock);
    assert!(window.has_fuel_n(10)); // at 0 s
    clock.advance(Duration::from_millis(100));
    window.set_rate(rate("10/s")); // a config reloaded, unchanged
    let mut more = 0;
    for _ in 0..8 {
        clock.advance(Duration::from_millis(100));
        while window.has_fuel() {
            more += 1;
        }
    }
    assert_eq!(more, 0, "{more} more in the window [0 s, 1 s) that held 10");
    clock.advance(Duration::from_millis(100)); // at 1 s the 10 leave
    assert!(window.has_fuel_n(10));
}

/// A timer correction longer than the interval is refused at build (the
/// timer's thread would wait out most of every interval, stalling every
/// other timer on it), as a throttle's always was; a rate change to a
/// shorter interval shortens it.
#[test]
fn a_timer_correction_never_outgrows_the_interval() {
    let err = Tank::builder(rate("1000/s"))
        .timer_correction(Duration::from_millis(5))
        .build()
        .unwrap_err();
    assert!(
        matches!(
            err,
            fueltank::Error::InvalidDuration {
                option: "correction",
                ..
            }
        ),
        "{err:?}"
    );
    let tank = Tank::builder(rate("10/s"))
        .timer_correction(Duration::from_millis(50))
        .build()
        .unwrap();
    tank.set_rate(rate("1000/s"));
    assert_eq!(tank.timer_correction(), Duration::from_millis(1));
}
