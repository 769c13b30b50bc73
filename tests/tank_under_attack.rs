//! Attacks on the in-process tank: extreme requests and
//! rates, timed waiters cancelled at every point with pauses and rate
//! changes (FIFO, exact conservation), cancel storms on a multi-thread
//! runtime, plain threads blocking on the real clock, and weeks of manual
//! time across the word's epoch moves against a plain token bucket.

mod common;

use std::pin::pin;
use std::time::Duration;

use common::{poll, tank};
use fueltank::clock::ManualClock;
use fueltank::{Budget, Hardcap, Rate, Tank};

fn rate(s: &str) -> Rate {
    s.parse().unwrap()
}

#[test]
fn zero_and_max_requests() {
    let clock = ManualClock::new();
    for hc in [
        Hardcap::Limit,
        Hardcap::One,
        Hardcap::Unbounded,
        Hardcap::Window,
    ] {
        let t = tank("10/s", hc, 1, &clock);
        assert!(t.has_fuel_n(0));
        assert!(!t.has_fuel_n(u64::MAX) || hc == Hardcap::Unbounded);
        let mut w = pin!(t.await_fuel_n(0));
        assert!(poll(w.as_mut()).is_ready());
        let mut w = pin!(t.await_fuel_timeout(Duration::MAX));
        assert!(matches!(poll(w.as_mut()), std::task::Poll::Ready(true)));
        let mut w = pin!(t.await_fuel_timeout(Duration::ZERO));
        let _ = poll(w.as_mut());
        let _ = t.wait_time(u64::MAX);
        let _ = t.wait_time(0);
        let _ = t.try_take(0);
    }
}

#[test]
fn extreme_rates() {
    let clock = ManualClock::new();
    let rates = [
        Rate::new(u64::MAX, Duration::from_nanos(u64::MAX)).unwrap(),
        Rate::new(1, Duration::from_nanos(u64::MAX)).unwrap(),
        Rate::new(1, Duration::from_nanos(1)).unwrap(),
        Rate::new(u64::MAX / 2, Duration::from_nanos(u64::MAX)).unwrap(),
        Rate::new(3, Duration::from_nanos(u64::MAX)).unwrap(),
        Rate::new(u64::MAX / 3, Duration::from_nanos(u64::MAX - 7)).unwrap(),
        Rate::new(1_000_000_000, Duration::from_secs(1)).unwrap(),
    ];
    for r in rates {
        for hc in [
            Hardcap::Limit,
            Hardcap::One,
            Hardcap::Unbounded,
            Hardcap::Window,
        ] {
            let t = match Tank::builder(r).hardcap(hc).clock(clock.clone()).build() {
                Ok(t) => t,
                Err(_) => continue,
            };
            let _ = t.has_fuel();
            let _ = t.level();
            let _ = t.wait_time(1);
            let mut w = pin!(t.await_fuel_timeout(Duration::from_secs(1)));
            let _ = poll(w.as_mut());
            let mut w2 = Box::pin(t.await_fuel());
            let done = poll(w2.as_mut()).is_ready();
            t.pause();
            clock.advance(Duration::from_secs(86400 * 365));
            t.resume();
            t.set_rate(rate("1/s"));
            t.set_rate(r);
            clock.advance(Duration::from_secs(86400 * 365));
            if !done {
                let _ = poll(w2.as_mut());
            }
            let _ = t.level();
        }
    }
}

/// Many tasks on a multi-thread runtime, on a manual clock moved by a
/// plain thread, waiting with random deadlines (manual) and random real
/// timeouts (dropping the future at any point): at the end the fuel
/// granted plus the fuel left equals what accrued, exactly (`Unbounded`).
fn cancel_storm(hc: Hardcap, also: Option<&str>, seed: u64) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let clock = ManualClock::new();
    let mut b = Tank::builder(rate("1000/s"))
        .hardcap(hc)
        .initial(0)
        .clock(clock.clone());
    if let Some(a) = also {
        b = b.also(rate(a));
    }
    let t = b.build().unwrap();
    let granted = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut handles = Vec::new();
    for i in 0..64u64 {
        let t = t.clone();
        let granted = granted.clone();
        let stop = stop.clone();
        handles.push(rt.spawn(async move {
            let mut x = seed ^ (i.wrapping_mul(0x9E3779B97F4A7C15)) | 1;
            let mut next = move || {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x
            };
            while !stop.load(Ordering::Relaxed) {
                let n = 1 + next() % 3;
                match next() % 6 {
                    0 => {
                        if t.has_fuel_n(n) {
                            granted.fetch_add(n, Ordering::Relaxed);
                        }
                    }
                    1 => {
                        let d = Duration::from_micros(next() % 20_000);
                        if t.await_fuel_timeout(d).await {
                            granted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    2 | 3 => {
                        let real = Duration::from_micros(next() % 300);
                        if let Ok(Ok(())) = tokio::time::timeout(real, t.await_fuel_n(n)).await {
                            granted.fetch_add(n, Ordering::Relaxed);
                        }
                    }
                    4 => {
                        if let Some(f) = t.try_take(n) {
                            if next() % 2 == 0 {
                                t.give_back(f);
                            } else {
                                granted.fetch_add(n, Ordering::Relaxed);
                            }
                        }
                    }
                    _ => {
                        let d = Duration::from_micros(next() % 5_000);
                        let w = Budget::wait(&t, n, Some(d));
                        let real = Duration::from_micros(next() % 300);
                        if let Ok(Ok(Some(f))) = tokio::time::timeout(real, w).await {
                            if next() % 3 == 0 {
                                t.give_back(f);
                            } else {
                                granted.fetch_add(n, Ordering::Relaxed);
                            }
                        }
                    }
                }
                tokio::task::yield_now().await;
            }
        }));
    }
    let steps = 4000u64;
    let mut total = Duration::ZERO;
    for k in 0..steps {
        let d = Duration::from_micros(100 + (k * 7919 + seed) % 900);
        clock.advance(d);
        total += d;
        if k % 16 == 0 {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    stop.store(true, Ordering::Relaxed);
    // Let every timed wait end.
    for _ in 0..50 {
        clock.advance(Duration::from_millis(1));
        total += Duration::from_millis(1);
        std::thread::sleep(Duration::from_millis(2));
    }
    rt.block_on(async {
        for h in handles {
            // Waiters with a real timeout end by themselves.
            h.await.unwrap();
        }
    });
    drop(rt);
    let g = granted.load(Ordering::Relaxed);
    let level = t.level();
    let accrued = (total.as_micros() / 1000) as u64; // 1000/s: one per ms
    assert_eq!(t.waiting(), 0);
    match hc {
        Hardcap::Unbounded if also.is_none() => assert_eq!(g + level, accrued),
        Hardcap::Window => {
            let windows = (total.as_millis() / 1000) as u64;
            assert!(g <= 1000 * windows, "over-grant: {g} > {}", 1000 * windows)
        }
        _ => assert!(
            g + level <= accrued,
            "over-grant: {g} + {level} > {accrued}"
        ),
    }
}

#[test]
fn cancel_storm_unbounded() {
    cancel_storm(Hardcap::Unbounded, None, 1);
}

#[test]
fn cancel_storm_limit() {
    cancel_storm(Hardcap::Limit, None, 2);
    cancel_storm(Hardcap::One, None, 3);
    cancel_storm(Hardcap::Window, None, 4);
}

#[test]
fn cancel_storm_also() {
    cancel_storm(Hardcap::Unbounded, Some("100000/min"), 5);
    cancel_storm(Hardcap::Limit, Some("100000/min"), 6);
}

/// Random single-thread runs with timed waiters, cancels at every point,
/// pause/resume: FIFO among live waiters, and exact conservation under
/// `Unbounded`.
#[test]
fn timed_waiters_random_fifo_and_conservation() {
    use std::task::Poll;
    for seed in 1..1000u64 {
        let mut x = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let hc = [
            Hardcap::Unbounded,
            Hardcap::Limit,
            Hardcap::One,
            Hardcap::Window,
        ][(seed % 4) as usize];
        let clock = ManualClock::new();
        let t = tank("4/s", hc, 1, &clock); // T = 250 ms
        struct W {
            id: usize,
            fut: fueltank::BudgetWait,
        }
        let mut live: Vec<W> = Vec::new();
        let mut granted: u64 = 0;
        let mut unpaused_ns: u128 = 0;
        let mut paused = false;
        let mut id = 0;
        let mut log = Vec::new();
        let with_rates = seed >= 200;
        let mut rate_changed = false;
        for _step in 0..200 {
            let op = next() % 10;
            log.push(op);
            match op {
                0 | 1 => {
                    let n = 1 + next() % 3;
                    let d = match next() % 3 {
                        0 => None,
                        1 => Some(Duration::from_millis(next() % 1500)),
                        _ => Some(Duration::ZERO),
                    };
                    let mut fut = match d {
                        None => Budget::wait(&t, n, None),
                        Some(d) => Budget::wait(&t, n, Some(d)),
                    };
                    // Maybe never polled before being dropped.
                    if next() % 8 == 0 {
                        drop(fut);
                        continue;
                    }
                    match poll(fut.as_mut()) {
                        Poll::Ready(Ok(Some(f))) => {
                            granted += f.amount();
                            drop(f); // spent
                        }
                        Poll::Ready(_) => {}
                        Poll::Pending => {
                            id += 1;
                            live.push(W { id, fut });
                        }
                    }
                }
                2 => {
                    if !live.is_empty() {
                        let i = (next() as usize) % live.len();
                        drop(live.remove(i));
                    }
                }
                3 => {
                    if t.has_fuel() {
                        granted += 1;
                    }
                }
                4 if next() % 2 == 0 => {
                    if paused {
                        t.resume()
                    } else {
                        t.pause()
                    }
                    paused = !paused;
                }
                4 if with_rates => {
                    let r = ["4/s", "2/s", "1/s", "8/s", "3/2s"][(next() % 5) as usize];
                    t.set_rate(rate(r));
                    rate_changed = true;
                }
                4 => {}
                _ => {
                    let d =
                        Duration::from_millis([1, 50, 125, 250, 333, 999][(next() % 6) as usize]);
                    clock.advance(d);
                    if !paused {
                        unpaused_ns += d.as_nanos();
                    }
                }
            }
            // Poll every live waiter, front to back; a grant behind a live
            // waiter still queued breaks FIFO.
            let mut blocked: Option<usize> = None;
            let mut keep = Vec::new();
            for mut w in live.drain(..) {
                match poll(w.fut.as_mut()) {
                    Poll::Ready(Ok(Some(f))) => {
                        assert!(
                            blocked.is_none(),
                            "seed {seed} {hc:?}: waiter {} granted behind waiter {:?} ({log:?})",
                            w.id,
                            blocked
                        );
                        granted += f.amount();
                        drop(f); // spent
                    }
                    Poll::Ready(_) => {}
                    Poll::Pending => {
                        blocked.get_or_insert(w.id);
                        keep.push(w);
                    }
                }
            }
            live = keep;
            assert_eq!(t.waiting(), live.len(), "seed {seed}");
        }
        drop(live);
        if paused {
            t.resume();
        }
        assert_eq!(t.waiting(), 0);
        if hc == Hardcap::Unbounded && !rate_changed {
            let accrued = 1 + (unpaused_ns / 250_000_000) as u64;
            assert_eq!(granted + t.level(), accrued, "seed {seed}: {log:?}");
        }
    }
}

#[test]
fn blocking_threads_real_clock_no_stall_no_overgrant() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    for hc in [
        Hardcap::Limit,
        Hardcap::One,
        Hardcap::Window,
        Hardcap::Unbounded,
    ] {
        // Before the build: no fuel accrues outside the time measured.
        let start = std::time::Instant::now();
        let mut b = Tank::builder(rate("200/100ms")).hardcap(hc);
        if hc != Hardcap::Window {
            b = b.initial(0);
        }
        let t = b.build().unwrap();
        let granted = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..8u64)
            .map(|i| {
                let t = t.clone();
                let granted = granted.clone();
                std::thread::spawn(move || {
                    let mut k = 0u64;
                    while start.elapsed() < Duration::from_millis(400) {
                        k += 1;
                        let ok = match (i + k) % 3 {
                            0 => {
                                t.blocking_await_fuel();
                                true
                            }
                            1 => t.blocking_await_fuel_timeout(Duration::from_micros(
                                (k * 37) % 2000,
                            )),
                            _ => t.has_fuel(),
                        };
                        if ok {
                            granted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for th in threads {
            th.join().unwrap();
        }
        let el = start.elapsed();
        let g = granted.load(Ordering::Relaxed);
        let max =
            (el.as_secs_f64() * 2000.0) as u64 + 2 + if hc == Hardcap::Window { 200 } else { 0 };
        assert!(g <= max, "{hc:?}: {g} > {max}");
        // No stall: a quarter of the rate, on a loaded machine.
        assert!(g as f64 >= 0.25 * 0.4 * 2000.0, "{hc:?}: only {g}");
        assert_eq!(t.waiting(), 0);
    }
}

#[test]
fn unbounded_is_exact_over_weeks_across_rebases() {
    for (max_n, per_ns) in [
        (7u64, 3_000_000_000u64),
        (999_999_937, 1_000_000_000),
        (3, 1_000_000_007),
        (1, 1),
        (1_000_000_000, 1_000_000_000),
        (13, 10_000_000_000_000),
    ] {
        let r = Rate::new(max_n, Duration::from_nanos(per_ns)).unwrap();
        let clock = ManualClock::new();
        let t = Tank::builder(r)
            .hardcap(Hardcap::Unbounded)
            .initial(1)
            .clock(clock.clone())
            .build()
            .unwrap();
        let mut x = max_n ^ 0x5555 | 1;
        let mut elapsed: u128 = 0;
        let mut taken: u128 = 0;
        for _ in 0..3000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let step = match x % 4 {
                0 => x % 1000,
                1 => x % 1_000_000,
                2 => x % 10_000_000_000,
                _ => x % 200_000_000_000_000,
            };
            clock.advance(Duration::from_nanos(step));
            elapsed += u128::from(step);
            let due = 1 + elapsed * u128::from(max_n) / u128::from(per_ns);
            // Cap takes at 2^48 per request (Unbounded's request cap).
            let mut level = t.level();
            assert_eq!(
                taken + u128::from(level),
                due,
                "{max_n}/{per_ns}ns at {elapsed} ns"
            );
            while level > 0 {
                let k = level.min(1 << 48);
                let k = if x % 2 == 0 { 1.min(k) } else { k };
                assert!(t.has_fuel_n(k), "{max_n}/{per_ns}ns: take {k} of {level}");
                taken += u128::from(k);
                level -= k;
                if x % 2 == 0 && level > 10 {
                    break;
                }
            }
        }
        let due = 1 + elapsed * u128::from(max_n) / u128::from(per_ns);
        assert_eq!(taken + u128::from(t.level()), due, "{max_n}/{per_ns}ns");
    }
}

#[test]
fn limit_and_one_match_a_token_bucket_over_weeks() {
    for hc in [Hardcap::Limit, Hardcap::One] {
        for (max_n, per_ns) in [
            (7u64, 3_000_000_000u64),
            (999_999_937, 1_000_000_000),
            (3, 1_000_000_007),
            (5, 5),
            (1_000_000, 1_000_000_000),
            (13, 10_000_000_000_000),
            (4096, 4_096_000_000_001),
        ] {
            let r = Rate::new(max_n, Duration::from_nanos(per_ns)).unwrap();
            let clock = ManualClock::new();
            let t = Tank::builder(r)
                .hardcap(hc)
                .initial(1)
                .clock(clock.clone())
                .build()
                .unwrap();
            let cap = if hc == Hardcap::One {
                1u128
            } else {
                u128::from(max_n)
            };
            let unit = u128::from(per_ns); // one fuel
            let mut stored: u128 = unit;
            let mut x = max_n ^ 0x5555 | 1;
            for i in 0..4000 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let step = match x % 5 {
                    0 => x % 3,
                    1 => x % 1000,
                    2 => x % 1_000_000,
                    3 => x % 10_000_000_000,
                    _ => x % 200_000_000_000_000,
                };
                clock.advance(Duration::from_nanos(step));
                stored = (stored + u128::from(step) * u128::from(max_n)).min(cap * unit);
                let want = (stored / unit) as u64;
                assert_eq!(t.level(), want, "{hc:?} {max_n}/{per_ns}ns step {i}");
                let k = match x % 3 {
                    0 => 1,
                    1 => want,
                    _ => want + 1,
                }
                .max(1);
                let got = t.has_fuel_n(k);
                assert_eq!(
                    got,
                    u128::from(k) * unit <= stored,
                    "{hc:?} {max_n}/{per_ns}ns step {i}: take {k} of {want}"
                );
                if got {
                    stored -= u128::from(k) * unit;
                }
            }
        }
    }
}
