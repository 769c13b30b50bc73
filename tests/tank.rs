//! The tank's contract, checked deterministically with a `ManualClock`:
//! the hardcap table, FIFO order, cancellation at every point, timeouts,
//! requests beyond the cap, `set_rate`, `pause`/`resume`, and no drift.

mod common;

use std::pin::pin;
use std::sync::Arc;
use std::task::{Poll, Wake, Waker};
use std::time::{Duration, Instant};

use common::{WakeCounter, poll, poll_with, shortest_gap, worst_window};
use fueltank::clock::{Clock, ManualClock};
use fueltank::{Budget, Error, Hardcap, Rate, Tank};

const MS: Duration = Duration::from_millis(1);

/// A `Limit` tank of `per_second` with `initial` fuel on `clock`.
fn limit(per_second: u64, initial: u64, clock: &ManualClock) -> Tank {
    Tank::builder(Rate::per_second(per_second).unwrap())
        .initial(initial)
        .clock(clock.clone())
        .build()
        .unwrap()
}

fn tank(rate: &str, hardcap: Hardcap, clock: &ManualClock) -> Tank {
    Tank::builder(rate.parse().unwrap())
        .hardcap(hardcap)
        .clock(clock.clone())
        .build()
        .unwrap()
}

/// A greedy taker: every `step`, takes all the fuel there is, except while
/// `idle(elapsed)` says it is away. Returns the grant times.
fn greedy(
    tank: &Tank,
    clock: &ManualClock,
    step: Duration,
    total: Duration,
    idle: impl Fn(Duration) -> bool,
) -> Vec<Instant> {
    let start = clock.now();
    let mut grants = Vec::new();
    while clock.now() - start <= total {
        if !idle(clock.now() - start) {
            while tank.has_fuel() {
                grants.push(clock.now());
            }
        }
        clock.advance(step);
    }
    grants
}

/// `tasks` tasks that each wait for fuel, again and again, polled by hand
/// every `step`. Returns the grant times: when the tank woke the task with
/// its fuel (timers fire at their own deadlines), or when a poll took it.
fn waiting_tasks(
    tank: &Tank,
    clock: &ManualClock,
    tasks: usize,
    step: Duration,
    total: Duration,
) -> Vec<Instant> {
    let start = clock.now();
    let wakes: Vec<_> = (0..tasks).map(|_| WakeTime::new(clock)).collect();
    let mut futures: Vec<_> = (0..tasks).map(|_| Box::pin(tank.await_fuel())).collect();
    let mut grants = Vec::new();
    while clock.now() - start <= total {
        for (future, wake) in futures.iter_mut().zip(&wakes) {
            let waker = Waker::from(wake.clone());
            while poll_with(future.as_mut(), &waker).is_ready() {
                grants.push(wake.take().unwrap_or(clock.now()));
                *future = Box::pin(tank.await_fuel());
            }
        }
        clock.advance(step);
    }
    grants
}

/// A waker that remembers when it was last woken.
struct WakeTime {
    clock: ManualClock,
    at: std::sync::Mutex<Option<Instant>>,
}

impl WakeTime {
    fn new(clock: &ManualClock) -> Arc<WakeTime> {
        Arc::new(WakeTime {
            clock: clock.clone(),
            at: std::sync::Mutex::new(None),
        })
    }

    fn take(&self) -> Option<Instant> {
        self.at.lock().unwrap().take()
    }
}

impl Wake for WakeTime {
    fn wake(self: Arc<Self>) {
        *self.at.lock().unwrap() = Some(self.clock.now());
    }
}

#[test]
fn limit_bursts_to_max_n_and_never_exceeds_2_max_n_minus_1_per_window() {
    let clock = ManualClock::new();
    let tank = tank("5/s", Hardcap::Limit, &clock);
    // Busy 3 s, away 2 s (the tank fills up), busy 3 s again.
    let grants = greedy(&tank, &clock, 50 * MS, Duration::from_secs(8), |t| {
        t > Duration::from_secs(3) && t < Duration::from_secs(5)
    });
    assert_eq!(worst_window(&grants, Duration::from_secs(1)), 2 * 5 - 1);
    // A burst of max_n right after the idle spell.
    let at_return = grants
        .iter()
        .filter(|&&g| g == grants[0] + Duration::from_secs(5))
        .count();
    assert_eq!(at_return, 5);
}

#[test]
fn one_spaces_grants_by_the_interval_and_never_exceeds_max_n_per_window() {
    let clock = ManualClock::new();
    let tank = tank("5/s", Hardcap::One, &clock);
    let grants = greedy(&tank, &clock, 30 * MS, Duration::from_secs(8), |t| {
        t > Duration::from_secs(3) && t < Duration::from_secs(5)
    });
    assert!(worst_window(&grants, Duration::from_secs(1)) <= 5);
    assert!(shortest_gap(&grants).unwrap() >= Duration::from_millis(200));
    // No catch-up burst after the idle spell.
    assert_eq!(
        grants
            .iter()
            .filter(|&&g| g == grants[0] + Duration::from_millis(5010))
            .count(),
        1
    );
}

#[test]
fn unbounded_banks_everything_and_keeps_the_long_run_mean() {
    let clock = ManualClock::new();
    let tank = tank("5/s", Hardcap::Unbounded, &clock);
    let grants = greedy(&tank, &clock, 50 * MS, Duration::from_secs(8), |t| {
        t > Duration::from_secs(3) && t < Duration::from_secs(5)
    });
    // 2 s away banks 10 more: the return burst holds them all.
    let back = grants[0] + Duration::from_secs(5);
    assert_eq!(grants.iter().filter(|&&g| g == back).count(), 10);
    // initial 1 + one per 200 ms over 8 s.
    assert_eq!(grants.len(), 1 + 40);
}

#[test]
fn window_never_exceeds_max_n_in_any_window_and_allows_bursts() {
    let clock = ManualClock::new();
    let tank = tank("5/s", Hardcap::Window, &clock);
    let grants = greedy(&tank, &clock, 10 * MS, Duration::from_secs(8), |t| {
        t > Duration::from_millis(3_300) && t < Duration::from_secs(5)
    });
    assert_eq!(worst_window(&grants, Duration::from_secs(1)), 5);
    // It starts with its window empty: 5 at once.
    assert_eq!(grants.iter().filter(|&&g| g == grants[0]).count(), 5);
}

#[test]
fn waiters_get_initial_plus_elapsed_over_interval_in_every_mode() {
    for hardcap in [
        Hardcap::Limit,
        Hardcap::One,
        Hardcap::Unbounded,
        Hardcap::Window,
    ] {
        // Polled on the interval's beat (10 ms) and off it (37 ms): the
        // manual clock fires the tank's timer at its own deadline either
        // way, so every hardcap gets its count. (A late wake-up is caught
        // up from the bank under `Limit` and `Unbounded`: `greedy` polls
        // off the beat below.)
        for step in [Duration::from_millis(10), Duration::from_millis(37)] {
            let clock = ManualClock::new();
            let tank = tank("10/s", hardcap, &clock);
            let start = clock.now();
            // More tasks than a window's `max_n`, so that one always waits.
            let grants = waiting_tasks(&tank, &clock, 12, step, Duration::from_secs(20));
            let elapsed = (clock.now() - step - start).as_millis() as usize;
            // Waiting tasks get `max_n` at the start of each window under
            // `Window`, one per interval otherwise.
            let expected = match hardcap {
                Hardcap::Window => 10 + 10 * (elapsed / 1000),
                _ => 1 + elapsed / 100,
            };
            assert!(
                grants.len().abs_diff(expected) <= 1,
                "{hardcap:?} {step:?}: {} vs {expected}",
                grants.len()
            );
            let bound = match hardcap {
                Hardcap::Limit => 2 * 10 - 1,
                Hardcap::Unbounded => usize::MAX,
                _ => 10,
            };
            assert!(
                worst_window(&grants, Duration::from_secs(1)) <= bound,
                "{hardcap:?}"
            );
        }
    }
}

#[test]
fn no_drift_over_a_day() {
    let clock = ManualClock::new();
    let tank = Tank::builder(Rate::new(10, Duration::from_secs(13)).unwrap())
        .clock(clock.clone())
        .build()
        .unwrap();
    let day = Duration::from_secs(86_400);
    let grants = greedy(&tank, &clock, Duration::from_secs(1), day, |_| false);
    // initial 1, then one every 1.3 s, the last one exactly at 86_398.7 s.
    assert_eq!(grants.len(), 1 + 86_400_000 / 1_300);

    let clock = ManualClock::new();
    let tank = limit(3, 0, &clock);
    let grants = greedy(&tank, &clock, Duration::from_millis(1_000), day, |_| false);
    assert_eq!(grants.len(), 3 * 86_400);
}

#[test]
fn waiters_are_served_in_arrival_order_and_woken_once() {
    let clock = ManualClock::new();
    let tank = limit(10, 0, &clock);
    let counters: Vec<_> = (0..5).map(|_| WakeCounter::new()).collect();
    let wakers: Vec<Waker> = counters.iter().map(|c| Waker::from(c.clone())).collect();
    let mut futures: Vec<_> = (0..5).map(|_| Box::pin(tank.await_fuel())).collect();
    for (future, waker) in futures.iter_mut().zip(&wakers) {
        assert!(poll_with(future.as_mut(), waker).is_pending());
    }
    assert_eq!(tank.waiting(), 5);
    let mut order = Vec::new();
    for _ in 0..5 {
        clock.advance(100 * MS);
        // The line holds its fuel: has_fuel never overtakes.
        assert!(!tank.has_fuel());
        for (i, (future, waker)) in futures.iter_mut().zip(&wakers).enumerate() {
            if !order.contains(&i) && poll_with(future.as_mut(), waker).is_ready() {
                order.push(i);
            }
        }
    }
    assert_eq!(order, [0, 1, 2, 3, 4]);
    assert!(
        counters.iter().all(|c| c.count() == 1),
        "each woken exactly once"
    );
}

#[test]
fn dropping_a_waiter_anywhere_loses_nothing_and_stalls_no_one() {
    let clock = ManualClock::new();
    let tank = limit(10, 0, &clock);
    // Dropped before its first poll: never queued.
    drop(tank.await_fuel());
    assert_eq!(tank.waiting(), 0);

    let mut head = Box::pin(tank.await_fuel());
    let mut middle = Box::pin(tank.await_fuel());
    let mut tail = Box::pin(tank.await_fuel());
    for f in [&mut head, &mut middle, &mut tail] {
        assert!(poll(f.as_mut()).is_pending());
    }
    // Dropped from the middle, then the head: the tail moves up.
    drop(middle);
    drop(head);
    assert_eq!(tank.waiting(), 1);
    clock.advance(100 * MS);
    assert!(poll(tail.as_mut()).is_ready());

    // Granted but dropped before it saw its fuel: the fuel goes to the next
    // in line at once.
    let mut first = Box::pin(tank.await_fuel());
    let mut second = Box::pin(tank.await_fuel());
    assert!(poll(first.as_mut()).is_pending());
    assert!(poll(second.as_mut()).is_pending());
    clock.advance(100 * MS);
    drop(first);
    assert!(poll(second.as_mut()).is_ready());

    // ... or back to the tank when nobody waits.
    let mut lone = Box::pin(tank.await_fuel());
    assert!(poll(lone.as_mut()).is_pending());
    clock.advance(100 * MS);
    assert_eq!(tank.waiting(), 0);
    drop(lone);
    assert_eq!(tank.level(), 1);
    assert!(tank.has_fuel());
}

#[test]
fn unspent_fuel_given_back_returns() {
    let clock = ManualClock::new();
    let tank = limit(1, 1, &clock);
    let fuel = tank.try_take(1).unwrap();
    assert!(tank.try_take(1).is_none());
    tank.give_back(fuel);
    let fuel = tank.try_take(1).unwrap();
    fuel.spend();
    assert!(!tank.has_fuel());

    // Awaited fuel, given back unspent, goes to the next in line.
    let mut wait = fueltank::Budget::wait(&tank, 1, None);
    let mut next = Box::pin(tank.await_fuel());
    assert!(poll(wait.as_mut()).is_pending());
    assert!(poll(next.as_mut()).is_pending());
    clock.advance(Duration::from_secs(1));
    let Poll::Ready(Ok(Some(fuel))) = poll(wait.as_mut()) else {
        panic!("granted")
    };
    assert!(poll(next.as_mut()).is_pending());
    tank.give_back(fuel);
    assert!(poll(next.as_mut()).is_ready());
}

#[test]
fn window_refunds_return_capacity_to_the_window() {
    let clock = ManualClock::new();
    let tank = tank("2/s", Hardcap::Window, &clock);
    let a = tank.try_take(1).unwrap();
    let b = tank.try_take(1).unwrap();
    assert!(!tank.has_fuel());
    tank.give_back(a);
    assert!(tank.has_fuel());
    b.spend();
    assert!(!tank.has_fuel());
    clock.advance(Duration::from_secs(1));
    assert_eq!(tank.level(), 2);
}

#[test]
fn timeouts_answer_at_once_when_the_line_is_too_long() {
    let clock = ManualClock::new();
    let tank = limit(10, 0, &clock);
    let mut queued: Vec<_> = (0..3).map(|_| Box::pin(tank.await_fuel())).collect();
    for f in &mut queued {
        assert!(poll(f.as_mut()).is_pending());
    }
    // Three ahead: the fourth fuel is 400 ms away.
    let mut short = pin!(tank.await_fuel_timeout(399 * MS));
    assert_eq!(poll(short.as_mut()), Poll::Ready(false));
    let mut enough = pin!(tank.await_fuel_timeout(400 * MS));
    assert_eq!(poll(enough.as_mut()), Poll::Pending);
    clock.advance(400 * MS);
    assert_eq!(poll(enough.as_mut()), Poll::Ready(true));
}

#[test]
fn a_timeout_fires_while_paused_and_leaves_the_line() {
    let clock = ManualClock::new();
    let tank = limit(10, 0, &clock);
    let mut timed = pin!(tank.await_fuel_timeout(150 * MS));
    assert_eq!(poll(timed.as_mut()), Poll::Pending);
    tank.pause();
    clock.advance(150 * MS);
    assert_eq!(poll(timed.as_mut()), Poll::Ready(false));
    assert_eq!(tank.waiting(), 0);
    tank.resume();
    clock.advance(100 * MS);
    assert!(tank.has_fuel(), "the fuel it did not take is still there");
}

#[test]
fn requests_beyond_the_cap_are_errors() {
    let clock = ManualClock::new();
    let one = tank("10/s", Hardcap::One, &clock);
    let mut two = pin!(one.await_fuel_n(2));
    assert_eq!(
        poll(two.as_mut()),
        Poll::Ready(Err(Error::ExceedsCapacity {
            requested: 2,
            capacity: 1
        }))
    );
    assert!(!one.has_fuel_n(2));
    let limit = tank("10/s", Hardcap::Limit, &clock);
    let mut eleven = pin!(limit.await_fuel_n(11));
    assert!(matches!(
        poll(eleven.as_mut()),
        Poll::Ready(Err(Error::ExceedsCapacity { .. }))
    ));
    let mut zero = pin!(limit.await_fuel_n(0));
    assert_eq!(poll(zero.as_mut()), Poll::Ready(Ok(())));
    assert!(limit.has_fuel_n(0));
}

#[test]
fn set_rate_below_a_waiting_request_rejects_it() {
    let clock = ManualClock::new();
    let tank = limit(10, 0, &clock);
    let mut eight = pin!(tank.await_fuel_n(8));
    let mut one = pin!(tank.await_fuel());
    assert!(poll(eight.as_mut()).is_pending());
    assert!(poll(one.as_mut()).is_pending());
    tank.set_rate(Rate::per_second(5).unwrap());
    assert_eq!(
        poll(eight.as_mut()),
        Poll::Ready(Err(Error::ExceedsCapacity {
            requested: 8,
            capacity: 5
        }))
    );
    clock.advance(200 * MS);
    assert!(
        poll(one.as_mut()).is_ready(),
        "the next in line is not stalled"
    );
}

#[test]
fn set_rate_takes_effect_at_once_without_a_burst() {
    let clock = ManualClock::new();
    let tank = limit(1, 0, &clock);
    let mut waiter = pin!(tank.await_fuel());
    assert!(poll(waiter.as_mut()).is_pending());
    clock.advance(500 * MS); // half a fuel accrued
    tank.set_rate(Rate::per_second(1000).unwrap());
    // The half fuel is kept: due in half an interval of the new rate.
    assert!(poll(waiter.as_mut()).is_pending());
    clock.advance(Duration::from_micros(500));
    assert!(poll(waiter.as_mut()).is_ready());
    assert_eq!(tank.level(), 0, "no burst up to the new capacity");
    clock.advance(10 * MS);
    assert_eq!(tank.level(), 10);
}

#[test]
fn pause_stops_the_refill_but_not_the_spending() {
    let clock = ManualClock::new();
    let tank = limit(10, 3, &clock);
    tank.pause();
    clock.advance(Duration::from_secs(10));
    assert_eq!(tank.level(), 3);
    assert!(tank.has_fuel_n(3));
    let mut waiter = pin!(tank.await_fuel());
    assert!(poll(waiter.as_mut()).is_pending());
    clock.advance(Duration::from_secs(10));
    assert!(poll(waiter.as_mut()).is_pending());
    tank.pause(); // idempotent
    tank.resume();
    assert!(
        poll(waiter.as_mut()).is_pending(),
        "paused time counts for nothing"
    );
    clock.advance(100 * MS);
    assert!(poll(waiter.as_mut()).is_ready());
}

#[test]
fn has_fuel_does_not_overtake_the_line() {
    let clock = ManualClock::new();
    let tank = limit(10, 0, &clock);
    let mut two = pin!(tank.await_fuel_n(2));
    assert!(poll(two.as_mut()).is_pending());
    clock.advance(100 * MS);
    assert_eq!(tank.level(), 1);
    assert!(
        !tank.has_fuel(),
        "one fuel is there, but the head needs two"
    );
    assert!(tank.try_take(1).is_none());
    clock.advance(100 * MS);
    assert_eq!(poll(two.as_mut()), Poll::Ready(Ok(())));
    clock.advance(100 * MS);
    assert!(tank.has_fuel());
}

#[test]
fn wait_time_counts_the_line_ahead() {
    let clock = ManualClock::new();
    let tank = limit(10, 0, &clock);
    assert_eq!(tank.wait_time(1), Some(100 * MS));
    let mut waiters: Vec<_> = (0..4).map(|_| Box::pin(tank.await_fuel())).collect();
    for w in &mut waiters {
        assert!(poll(w.as_mut()).is_pending());
    }
    assert_eq!(tank.wait_time(1), Some(500 * MS));
    assert_eq!(tank.wait_time(11), None);
    clock.advance(30 * MS);
    assert_eq!(tank.wait_time(1), Some(470 * MS));
}

/// A clock that runs backwards by a few microseconds every other reading,
/// as readings from different cores may.
#[derive(Debug)]
struct Jittery {
    base: ManualClock,
    flip: std::sync::atomic::AtomicBool,
}

impl Clock for Jittery {
    fn now(&self) -> Instant {
        let back = self
            .flip
            .fetch_xor(true, std::sync::atomic::Ordering::Relaxed);
        let now = self.base.now();
        if back {
            now - Duration::from_micros(3)
        } else {
            now
        }
    }
}

#[test]
fn a_clock_that_steps_back_is_tolerated() {
    let base = ManualClock::new();
    let clock = Jittery {
        base: base.clone(),
        flip: false.into(),
    };
    for hardcap in [
        Hardcap::Limit,
        Hardcap::One,
        Hardcap::Unbounded,
        Hardcap::Window,
    ] {
        let tank = Tank::builder(Rate::per_second(1000).unwrap())
            .hardcap(hardcap)
            .clock(Jittery {
                base: base.clone(),
                flip: false.into(),
            })
            .build()
            .unwrap();
        let mut grants = Vec::new();
        for _ in 0..2_000 {
            while tank.has_fuel() {
                grants.push(clock.now());
            }
            base.advance(Duration::from_micros(333));
        }
        let bound = match hardcap {
            Hardcap::Limit => 2 * 1000 - 1,
            Hardcap::Unbounded => usize::MAX,
            _ => 1000,
        };
        // A window a few microseconds wider absorbs the steps back.
        assert!(
            worst_window(
                &grants,
                Duration::from_millis(1000) - Duration::from_micros(10)
            ) <= bound
        );
        assert!(grants.len() <= 1000 + 667, "{hardcap:?}: {}", grants.len());
    }
}

#[test]
fn blocking_calls_work_on_plain_threads_with_a_manual_clock() {
    let clock = ManualClock::new();
    let tank = limit(10, 0, &clock);
    let workers: Vec<_> = (0..3)
        .map(|_| {
            let tank = tank.clone();
            std::thread::spawn(move || tank.blocking_await_fuel())
        })
        .collect();
    while tank.waiting() < 3 {
        std::thread::yield_now();
    }
    clock.advance(300 * MS);
    for worker in workers {
        worker.join().unwrap();
    }
    // Paused, the wait cannot be predicted: it waits for its timeout.
    tank.pause();
    let timed = {
        let tank = tank.clone();
        std::thread::spawn(move || tank.blocking_await_fuel_timeout(50 * MS))
    };
    while tank.waiting() < 1 {
        std::thread::yield_now();
    }
    clock.advance(50 * MS);
    assert!(!timed.join().unwrap());
    assert_eq!(tank.waiting(), 0);
}

/// `burst(n)`: "5/s with bursts of 20". After idle the tank holds 20, then
/// refills one per 200 ms; no window of a second sees more than 20 + 5 − 1.
#[test]
fn a_burst_apart_from_the_rate() {
    let clock = ManualClock::new();
    let tank = Tank::builder("5/s".parse().unwrap())
        .burst(20)
        .clock(clock.clone())
        .build()
        .unwrap();
    assert_eq!(tank.level(), 1, "initial is still 1");
    clock.advance(Duration::from_secs(10));
    assert_eq!(tank.level(), 20);
    assert_eq!(tank.wait_time(21), None, "more than the burst never fits");
    let grants = greedy(&tank, &clock, 7 * MS, Duration::from_secs(30), |t| {
        (Duration::from_secs(10)..Duration::from_secs(20)).contains(&t)
    });
    assert!(worst_window(&grants, Duration::from_secs(1)) <= 24);
    assert!(
        worst_window(&grants, Duration::from_secs(1)) >= 20,
        "the burst is there"
    );
    // Only `Limit` has a burst.
    for hardcap in [Hardcap::One, Hardcap::Window, Hardcap::Unbounded] {
        let err = Tank::builder("5/s".parse().unwrap())
            .hardcap(hardcap)
            .burst(20)
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("burst"), "{err}");
    }
    assert!(
        Tank::builder("5/s".parse().unwrap())
            .burst(0)
            .build()
            .is_err()
    );
}

/// A task taking fuel in a loop sees one grant per `advance` (it is polled
/// only after), but every grant with `advance_in_steps`, which lets the
/// executor run it between steps.
#[test]
fn advance_in_steps_lets_tasks_run_between() {
    let run = |stepped: bool| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            let clock = ManualClock::new();
            let tank = Tank::builder(Rate::per_second(10).unwrap())
                .hardcap(Hardcap::One)
                .initial(0)
                .clock(clock.clone())
                .build()
                .unwrap();
            let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let worker = tokio::spawn({
                let (tank, done) = (tank.clone(), done.clone());
                async move {
                    loop {
                        tank.await_fuel().await;
                        done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                }
            });
            tokio::task::yield_now().await;
            if stepped {
                clock
                    .advance_in_steps(Duration::from_secs(1), 100 * MS)
                    .await;
            } else {
                clock.advance(Duration::from_secs(1));
            }
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
            worker.abort();
            done.load(std::sync::atomic::Ordering::SeqCst)
        })
    };
    assert_eq!(run(true), 10);
    assert!(
        run(false) <= 2,
        "one advance: the queued grant, and one fuel banked"
    );
}
