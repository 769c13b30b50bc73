//! The idle keys' `tat`s are ticks since their shard's epoch, which a
//! sweep moves on once they reach 2^60 and `set_rate` moves to a span of
//! the new rate before now, and which a map entry holds in [0, 2^62). On
//! a fine rate (ticks much shorter than a nanosecond: a byte rate such as
//! 1 MiB/s counts 2^11 ticks a nanosecond) over days of clock, neither may
//! hand a key fuel it never accrued: a key taken at one instant gets at
//! most what a `Tank` of the same rate gives; and a rate change may not
//! take a key's fuel away where a `Tank` keeps it.

mod common;

use std::task::Poll;
use std::time::Duration;

use common::poll;
use fueltank::clock::ManualClock;
use fueltank::{Hardcap, KeyedBudget, KeyedTank, Rate, Tank};

const DAY: Duration = Duration::from_secs(86_400);

/// How many of `takes` full bursts of `max_n`, all at one instant, the key
/// "client" of `keyed` gets; through `KeyedBudget::wait` if `wait` (a wait
/// not served at once is dropped).
fn bursts_at_one_instant(
    keyed: &KeyedTank<&'static str>,
    max_n: u64,
    takes: usize,
    wait: bool,
) -> usize {
    (0..takes)
        .filter(|_| match wait {
            false => keyed.has_fuel_n(&"client", max_n),
            true => {
                let budget: &dyn KeyedBudget<&str> = keyed;
                let mut wait = budget.wait(&"client", max_n, None);
                matches!(poll(wait.as_mut()), Poll::Ready(Ok(Some(_))))
            }
        })
        .count()
}

/// 1 MiB/s per client, 7 days after the keyed tank was built: the idle
/// keys' ticks have passed 2^60, so the 64th operation on a shard sweeps
/// it and moves its epoch on, shifting every idle `tat`. The key still gets
/// one full burst at one instant, as a `Tank` does, through `has_fuel_n`,
/// with `also`, and through `KeyedBudget::wait`. Before the fix, a take
/// read the shard's epoch before the sweep and the shifted `tat` against
/// it: a full bucket, and a second burst (2·max_n at one instant, beyond
/// `Limit`'s 2·max_n − 1 in any second).
#[test]
fn a_sweep_moving_the_epoch_grants_no_second_burst() {
    let max_n = 1 << 20;
    let rate = Rate::new(max_n, Duration::from_secs(1)).unwrap();
    for (also, wait) in [(true, false), (false, true), (false, false)] {
        let clock = ManualClock::new();
        let mut builder = KeyedTank::builder(rate).clock(clock.clone());
        if also {
            builder = builder.also("2000000000/min".parse().unwrap());
        }
        let keyed = builder.build().unwrap();
        let model = Tank::builder(rate)
            .initial(max_n)
            .clock(clock.clone())
            .build()
            .unwrap();
        clock.advance(7 * DAY);
        let expected = (0..100).filter(|_| model.has_fuel_n(max_n)).count();
        assert_eq!(expected, 1);
        let bursts = bursts_at_one_instant(&keyed, max_n, 100, wait);
        assert_eq!(
            bursts, expected,
            "also {also}, wait {wait}: {bursts} bursts of {max_n} at one instant"
        );
    }
}

/// A map entry holds a `tat` in [0, 2^62) ticks since the shard's epoch.
/// When the clock passes that between two sweeps (73 minutes at 512 MiB/s,
/// 26 days at 1 MiB/s, with few operations on the shard), the key still
/// gets one burst at one instant, as a `Tank` does. Before the fix, the
/// epoch moved only at a sweep and the `tat` after each take was clamped
/// below the present: the key was full again at once, 50 bursts of 512 MiB
/// at one instant.
#[test]
fn ticks_beyond_a_map_entry_are_not_fuel() {
    for (max_n, idle) in [
        (1u64 << 29, Duration::from_secs(2 * 3600)),
        (1 << 20, 30 * DAY),
    ] {
        let rate = Rate::new(max_n, Duration::from_secs(1)).unwrap();
        let clock = ManualClock::new();
        let keyed = KeyedTank::builder(rate)
            .clock(clock.clone())
            .build()
            .unwrap();
        let model = Tank::builder(rate)
            .initial(max_n)
            .clock(clock.clone())
            .build()
            .unwrap();
        assert!(keyed.has_fuel_n(&"client", max_n));
        assert!(model.has_fuel_n(max_n));
        clock.advance(idle);
        // Fewer takes than a sweep needs: the clamp alone.
        let expected = (0..50).filter(|_| model.has_fuel_n(max_n)).count();
        assert_eq!(expected, 1);
        let bursts = bursts_at_one_instant(&keyed, max_n, 50, false);
        assert_eq!(
            bursts, expected,
            "{rate} after {idle:?}: {bursts} bursts of {max_n} at one instant"
        );
        assert_eq!(keyed.level(&"client"), model.level());
    }
}

/// `set_rate` on an `Unbounded` keyed tank: a key keeps its bank, as
/// under `Tank::set_rate` (there is no cap to cap it to): a key idle 100 s
/// at 5/s holds 504 before and after a change to 4/2s. Before the fix,
/// the shard's new epoch lay only a full bucket of the new rate before
/// now, the key's older `tat` fell below it and was clamped: 5 of 504.
#[test]
fn set_rate_keeps_an_unbounded_keys_bank() {
    let clock = ManualClock::new();
    let keyed = KeyedTank::builder("5/s".parse().unwrap())
        .hardcap(Hardcap::Unbounded)
        .clock(clock.clone())
        .build()
        .unwrap();
    let model = Tank::builder("5/s".parse().unwrap())
        .hardcap(Hardcap::Unbounded)
        .initial(5)
        .clock(clock.clone())
        .build()
        .unwrap();
    assert!(keyed.has_fuel(&"saver"));
    assert!(model.has_fuel());
    clock.advance(Duration::from_secs(100));
    assert_eq!((keyed.level(&"saver"), model.level()), (504, 504));
    keyed.set_rate("4/2s".parse().unwrap());
    model.set_rate("4/2s".parse().unwrap());
    assert_eq!(model.level(), 504);
    assert_eq!(keyed.level(&"saver"), model.level(), "the bank is kept");
}

/// The same for a key that is live at the change (its wait for more than
/// its bank dropped, or still waiting): idle 100 s at 5/s it holds 500,
/// and after a change to 1/s and the sweeps of 3 000 other keys that make
/// it idle again, still 500, as its `Tank`. Before the fix `set_rate`
/// moved the shard's epoch to a span of the new rate before now, the live
/// key's bank was not among the idle `tat`s it kept above tick 0, and
/// made idle its `tat` was clamped there: 2 of 500.
#[test]
fn set_rate_keeps_a_live_unbounded_keys_bank() {
    for waiting in [false, true] {
        let clock = ManualClock::new();
        let keyed = KeyedTank::builder("5/s".parse().unwrap())
            .hardcap(Hardcap::Unbounded)
            .initial(0)
            .clock(clock.clone())
            .build()
            .unwrap();
        let model = Tank::builder("5/s".parse().unwrap())
            .hardcap(Hardcap::Unbounded)
            .initial(0)
            .clock(clock.clone())
            .build()
            .unwrap();
        assert_eq!(keyed.level(&0), 0);
        assert!(!keyed.has_fuel(&0));
        clock.advance(Duration::from_secs(100));
        let mut wait = Some(KeyedBudget::wait(&keyed, &0, 1_000, None));
        assert!(poll(wait.as_mut().unwrap().as_mut()).is_pending());
        if !waiting {
            wait = None;
        }
        keyed.set_rate("1/s".parse().unwrap());
        model.set_rate("1/s".parse().unwrap());
        if let Some(mut wait) = wait {
            assert!(poll(wait.as_mut()).is_pending());
        }
        for other in 1..3_000 {
            keyed.has_fuel(&other);
        }
        assert_eq!(model.level(), 500);
        assert_eq!(
            keyed.level(&0),
            model.level(),
            "waiting {waiting}: the bank is kept"
        );
    }
}
