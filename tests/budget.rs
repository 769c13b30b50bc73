//! `Budget` and `KeyedBudget` on the core's tanks: through the trait (as
//! `&dyn`), a tank, a throttle and a keyed tank give exactly what their own
//! calls give, on twins driven by one manual clock; an amount that can
//! never fit is refused at once with what is accepted, never waited for.

use std::task::Poll;
use std::time::Duration;

use fueltank::clock::ManualClock;
use fueltank::{Budget, Error, Fuel, Hardcap, KeyedBudget, KeyedTank, Rate, Throttle};

mod common;
use common::{poll, tank};

const MS: Duration = Duration::from_millis(1);

/// Amounts asked for, in turn: within, at and beyond the capacity of 4.
const AMOUNTS: [u64; 8] = [1, 3, 4, 0, 2, 5, u64::MAX, 1];

/// The same takes, at the same times, on a tank used directly and on its
/// twin through `&dyn Budget`: the same grants, refusals and wait times.
#[test]
fn a_tank_through_the_trait_grants_as_its_own_calls() {
    for hardcap in [Hardcap::Limit, Hardcap::Window, Hardcap::Unbounded] {
        let clock = ManualClock::new();
        let direct = tank("4/s", hardcap, 4, &clock);
        let twin = tank("4/s", hardcap, 4, &clock);
        let budget: &dyn Budget = &twin;
        let mut grants = 0;
        for step in 0..40 {
            let n = AMOUNTS[step % AMOUNTS.len()];
            let context = format!("{hardcap:?}, step {step}, n = {n}");
            assert_eq!(budget.wait_time(n), direct.wait_time(n), "{context}");
            assert_eq!(budget.available(), direct.available(), "{context}");
            let granted = direct.has_fuel_n(n);
            let fuel = budget.try_take(n);
            assert_eq!(fuel.is_some(), granted, "{context}");
            if let Some(fuel) = fuel {
                assert_eq!(fuel.amount(), n, "{context}");
                grants += 1;
            }
            assert_eq!(twin.level(), direct.level(), "{context}");
            clock.advance(90 * MS);
        }
        assert!(grants > 10, "{hardcap:?}: {grants} grants");
        assert_eq!(budget.rate(), direct.rate());
    }
}

/// Fuel given back through the trait comes back exactly; fuel from
/// another tank, or taken for good, does not.
#[test]
fn fuel_given_back_through_the_trait_is_exact() {
    let clock = ManualClock::new();
    let tank = tank("4/s", Hardcap::Limit, 4, &clock);
    let other = self::tank("4/s", Hardcap::Limit, 4, &clock);
    let budget: &dyn Budget = &tank;
    let three = budget.try_take(3).unwrap();
    assert_eq!(tank.level(), 1);
    budget.give_back(three);
    assert_eq!(tank.level(), 4);
    budget.give_back(other.try_take(1).unwrap());
    budget.give_back(Fuel::taken(2));
    assert_eq!(tank.level(), 4);
    assert_eq!(other.level(), 3);
    // Taken from a full tank, the fuel would have run into the cap since:
    // given back later, none of it is minted.
    let two = budget.try_take(2).unwrap();
    clock.advance(Duration::from_secs(1));
    budget.give_back(two);
    assert_eq!(tank.level(), 4);
}

/// A wait through the trait is the tank's line: granted when the direct
/// wait is, as a token of the amount asked for; bounded by its deadline.
#[test]
fn a_wait_through_the_trait_is_served_as_the_tanks_own() {
    let clock = ManualClock::new();
    let direct = tank("10/s", Hardcap::Limit, 0, &clock);
    let twin = tank("10/s", Hardcap::Limit, 0, &clock);
    let budget: &dyn Budget = &twin;
    let mut own = Box::pin(direct.await_fuel_n(3));
    let mut wait = budget.wait(3, None);
    // 150 ms is not enough for the next fuel after those 3 (400 ms).
    let mut late = budget.wait(1, Some(150 * MS));
    assert!(poll(own.as_mut()).is_pending());
    assert!(poll(wait.as_mut()).is_pending());
    assert!(matches!(poll(late.as_mut()), Poll::Ready(Ok(None))));
    for _ in 0..2 {
        clock.advance(100 * MS);
        assert!(poll(own.as_mut()).is_pending());
        assert!(poll(wait.as_mut()).is_pending());
    }
    clock.advance(100 * MS);
    assert!(matches!(poll(own.as_mut()), Poll::Ready(Ok(()))));
    match poll(wait.as_mut()) {
        Poll::Ready(Ok(Some(fuel))) => assert_eq!(fuel.amount(), 3),
        other => panic!("after 300 ms: {other:?}"),
    }
    // A wait with time enough is granted, within it.
    let mut timed = budget.wait(1, Some(150 * MS));
    assert!(poll(timed.as_mut()).is_pending());
    clock.advance(100 * MS);
    assert!(matches!(poll(timed.as_mut()), Poll::Ready(Ok(Some(_)))));
    // Dropped while waiting, a wait takes nothing.
    let mut dropped = budget.wait(1, None);
    assert!(poll(dropped.as_mut()).is_pending());
    drop(dropped);
    clock.advance(100 * MS);
    assert_eq!(twin.level(), 1);
}

/// More than a budget can ever grant at once: refused now, its wait an
/// error that says the capacity at once, its wait time unknown; `u64::MAX`
/// included, and under `Unbounded` too.
#[test]
fn an_amount_beyond_the_capacity_is_refused_at_once_saying_what_is_accepted() {
    let clock = ManualClock::new();
    let cases: [(Box<dyn Budget>, u64); 4] = [
        (Box::new(tank("4/s", Hardcap::Limit, 4, &clock)), 4),
        (Box::new(tank("4/s", Hardcap::One, 1, &clock)), 1),
        (
            Box::new(tank("4/s", Hardcap::Unbounded, 4, &clock)),
            1 << 48,
        ),
        (
            Box::new(
                Throttle::builder(Rate::per_second(4).unwrap())
                    .burst(6)
                    .clock(clock.clone())
                    .build()
                    .unwrap(),
            ),
            6,
        ),
    ];
    for (budget, capacity) in cases {
        assert_eq!(budget.capacity(), capacity, "{budget:?}");
        for n in [capacity + 1, u64::MAX] {
            assert!(budget.try_take(n).is_none(), "{budget:?}, n = {n}");
            assert_eq!(budget.wait_time(n), None, "{budget:?}, n = {n}");
            for max_wait in [None, Some(Duration::from_secs(3600))] {
                let mut wait = budget.wait(n, max_wait);
                let Poll::Ready(Err(err)) = poll(wait.as_mut()) else {
                    panic!("{budget:?}: a wait for {n} did not fail at once");
                };
                assert_eq!(
                    err,
                    Error::ExceedsCapacity {
                        requested: n,
                        capacity
                    }
                );
                assert!(err.to_string().contains(&format!("at most {capacity}")));
            }
        }
    }
}

/// A throttle through the trait keeps its emit-on-take rule: every grant
/// is counted once in its monitor, taken now or waited for; a refusal is
/// not. Its tank grants as the twin's `has_fuel_n`.
#[test]
fn a_throttle_through_the_trait_counts_its_grants() {
    let clock = ManualClock::new();
    let throttle = |auto_emit| {
        Throttle::builder(Rate::per_second(4).unwrap())
            .initial(4)
            .auto_emit(auto_emit)
            .clock(clock.clone())
            .build()
            .unwrap()
    };
    let (direct, twin) = (throttle(true), throttle(true));
    let budget: &dyn Budget = &twin;
    for step in 0..20 {
        let n = AMOUNTS[step % AMOUNTS.len()];
        assert_eq!(
            budget.try_take(n).is_some(),
            direct.has_fuel_n(n),
            "step {step}"
        );
        assert_eq!(twin.total(), direct.total(), "step {step}");
        clock.advance(90 * MS);
    }
    assert!(direct.total() >= 5, "{} emitted", direct.total());
    let before = twin.total();
    let mut wait = budget.wait(2, None);
    while poll(wait.as_mut()).is_pending() {
        clock.advance(50 * MS);
    }
    assert_eq!(twin.total(), before + 2);
    let mut late = budget.wait(4, Some(MS));
    assert!(matches!(poll(late.as_mut()), Poll::Ready(Ok(None))));
    assert_eq!(twin.total(), before + 2);

    // Without auto_emit, nothing is counted; without a tank, all is granted.
    let quiet = throttle(false);
    assert!(Budget::try_take(&quiet, 1).is_some());
    assert_eq!(quiet.total(), 0);
    let unlimited = Throttle::builder(Rate::per_second(1).unwrap())
        .as_throttle(false)
        .clock(clock.clone())
        .build()
        .unwrap();
    let budget: &dyn Budget = &unlimited;
    assert_eq!(
        budget.try_take(1_000).map(|fuel| fuel.amount()),
        Some(1_000)
    );
    assert!(matches!(
        poll(budget.wait(7, None).as_mut()),
        Poll::Ready(Ok(Some(_)))
    ));
    assert_eq!(unlimited.total(), 1_007);
}

/// A keyed tank through `&dyn KeyedBudget`: the same grants, refusals and
/// wait times as its twin's own calls, per key; its waits are its keys'
/// lines, bounded by their deadlines; beyond the capacity, an error.
#[test]
fn a_keyed_tank_through_the_trait_grants_as_its_own_calls() {
    let clock = ManualClock::new();
    let keyed = || {
        KeyedTank::<u32>::builder(Rate::per_second(4).unwrap())
            .clock(clock.clone())
            .build()
            .unwrap()
    };
    let (direct, twin) = (keyed(), keyed());
    let budget: &dyn KeyedBudget<u32> = &twin;
    assert_eq!(budget.capacity(&0), 4);
    let mut grants = 0;
    for step in 0..60 {
        let (key, n) = ((step % 3) as u32, AMOUNTS[step % AMOUNTS.len()]);
        let context = format!("step {step}, key {key}, n = {n}");
        assert_eq!(
            budget.wait_time(&key, n),
            direct.wait_time(&key, n),
            "{context}"
        );
        assert_eq!(budget.available(&key), direct.available(&key), "{context}");
        let granted = direct.has_fuel_n(&key, n);
        assert_eq!(budget.take(&key, n), granted, "{context}");
        grants += u32::from(granted);
        clock.advance(40 * MS);
    }
    assert!(grants > 20, "{grants} grants");
    assert_eq!(budget.check(&7), Ok(()));

    // Key 9 spends its 4; 3 more come in 750 ms: not within 500 (known
    // at once), within a second.
    assert!(budget.take(&9, 4));
    let mut late = budget.wait(&9, 3, Some(500 * MS));
    assert!(matches!(poll(late.as_mut()), Poll::Ready(Ok(None))));
    let mut wait = budget.wait(&9, 3, Some(Duration::from_secs(1)));
    assert!(poll(wait.as_mut()).is_pending());
    clock.advance(700 * MS);
    assert!(poll(wait.as_mut()).is_pending());
    clock.advance(50 * MS);
    assert!(matches!(poll(wait.as_mut()), Poll::Ready(Ok(Some(_)))));
    assert_eq!(twin.level(&9), 0);

    for n in [5, u64::MAX] {
        assert!(!budget.take(&1, n));
        assert_eq!(budget.wait_time(&1, n), None);
        let Poll::Ready(Err(err)) = poll(budget.wait(&1, n, None).as_mut()) else {
            panic!("a wait for {n} did not fail at once");
        };
        assert_eq!(
            err,
            Error::ExceedsCapacity {
                requested: n,
                capacity: 4
            }
        );
    }
}

/// `KeyedBudget::capacity` is the key's own: a key `rate_by` gives a rate of
/// its own may be granted what that rate holds (with the tank's burst or
/// hardcap, bounded by `also`), and its wait for that much is served, not
/// refused; asking takes nothing, makes no line and no key live.
#[test]
fn a_keyed_tanks_capacity_is_each_keys_own() {
    let clock = ManualClock::new();
    let by_key = |key: &u32| match key {
        0 => Rate::per_second(50).unwrap(),
        _ => Rate::per_second(5).unwrap(),
    };
    let keyed = |hardcap: Hardcap| {
        KeyedTank::<u32>::builder(Rate::per_second(5).unwrap())
            .hardcap(hardcap)
            .rate_by(by_key)
            .clock(clock.clone())
    };
    let cases = [
        (keyed(Hardcap::Limit).build().unwrap(), 50, 5),
        (keyed(Hardcap::Limit).burst(20).build().unwrap(), 20, 20),
        (keyed(Hardcap::One).build().unwrap(), 1, 1),
        (keyed(Hardcap::Unbounded).build().unwrap(), 1 << 48, 1 << 48),
        (
            keyed(Hardcap::Limit)
                .also(Rate::per_minute(30).unwrap())
                .build()
                .unwrap(),
            30,
            5,
        ),
    ];
    for (keyed, own, other) in cases {
        let budget: &dyn KeyedBudget<u32> = &keyed;
        assert_eq!(budget.capacity(&0), own, "{keyed:?}");
        assert_eq!(budget.capacity(&1), other, "{keyed:?}");
        assert_eq!(keyed.len(), 0, "asking made no key: {keyed:?}");
        let full = keyed.level(&0);
        assert_eq!(budget.capacity(&0), own);
        assert_eq!(keyed.level(&0), full, "asking took nothing: {keyed:?}");
    }
    // The partner's wait for all of its 50, after spending 45: served in
    // 100 ms, as its capacity says it may be.
    let keyed = keyed(Hardcap::Limit).build().unwrap();
    assert!(keyed.has_fuel_n(&0, 45));
    let budget: &dyn KeyedBudget<u32> = &keyed;
    let mut wait = budget.wait(&0, 10, None);
    assert!(poll(wait.as_mut()).is_pending());
    clock.advance(100 * MS);
    assert!(matches!(poll(wait.as_mut()), Poll::Ready(Ok(Some(_)))));
    assert!(matches!(
        poll(budget.wait(&0, 51, None).as_mut()),
        Poll::Ready(Err(Error::ExceedsCapacity {
            requested: 51,
            capacity: 50
        }))
    ));
}
