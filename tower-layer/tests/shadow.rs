//! Shadow mode on a `ManualClock`: nothing is shed and nothing waits; what
//! would have been shed is counted apart, and spends no fuel.

use std::task::{Context, Waker};
use std::time::Duration;

use fueltank::clock::ManualClock;
use fueltank::{KeyedTank, Rate, Tank};
use fueltank_tower::key::key_fn;
use fueltank_tower::{KeyedThrottleLayer, Stats, ThrottleLayer};
use futures::FutureExt;
use tower::{BoxError, Layer, Service, service_fn};

fn cx() -> Context<'static> {
    Context::from_waker(Waker::noop())
}

fn tank(clock: &ManualClock, initial: u64) -> Tank {
    Tank::builder(Rate::per_second(10).unwrap())
        .initial(initial)
        .clock(clock.clone())
        .build()
        .unwrap()
}

/// Ten requests on a tank of three fuel, without time passing: in every
/// mode, all ten reach the inner service at once, three spend the fuel and
/// seven are counted as shadowed.
#[test]
fn the_global_layer_lets_everything_through_and_counts_what_it_would_shed() {
    for reject in [false, true] {
        let clock = ManualClock::new();
        let tank = tank(&clock, 3);
        let stats = Stats::with_clock(clock.clone());
        let mut layer = ThrottleLayer::new(tank.clone())
            .max_wait(Duration::from_secs(60))
            .shadow()
            .stats(stats.clone());
        if reject {
            layer = layer.reject();
        }
        let mut served = 0;
        for x in 0..10 {
            let mut svc = layer.layer(service_fn(|x: u32| async move { Ok::<_, BoxError>(x) }));
            assert!(svc.poll_ready(&mut cx()).is_ready(), "never waits");
            assert_eq!(svc.call(x).now_or_never().unwrap().unwrap(), x);
            served += 1;
        }
        assert_eq!(served, 10, "reject = {reject}");
        assert_eq!(stats.admitted().total(), 10);
        assert_eq!(stats.shadowed().total(), 7, "reject = {reject}");
        assert_eq!(stats.rejected().total(), 0);
        assert_eq!(stats.waited().total(), 0);
        // Conservation: the fuel spent is that of the requests it would
        // have admitted; none for the shadowed ones.
        assert_eq!(tank.level(), 0);
        clock.advance(Duration::from_millis(100));
        assert_eq!(tank.level(), 1, "nothing owed: the shadowed took no fuel");
    }
}

#[test]
fn the_keyed_layer_lets_everything_through_and_counts_per_key() {
    for reject in [false, true] {
        let clock = ManualClock::new();
        let keyed = KeyedTank::builder(Rate::per_minute(2).unwrap())
            .clock(clock.clone())
            .build()
            .unwrap();
        let stats = Stats::with_clock(clock.clone());
        let mut layer = KeyedThrottleLayer::new(keyed.clone(), key_fn(|k: &u8| Ok(*k)))
            .shadow()
            .stats(stats.clone());
        if reject {
            layer = layer.reject();
        }
        let mut svc = layer.layer(service_fn(|k: u8| async move { Ok::<_, BoxError>(k) }));
        for key in [1, 1, 1, 1, 2, 2, 2] {
            assert!(svc.poll_ready(&mut cx()).is_ready());
            let answer = svc.call(key).now_or_never().expect("never waits");
            assert_eq!(answer.unwrap(), key);
        }
        // Key 1: two of four had fuel; key 2: two of three.
        assert_eq!(stats.admitted().total(), 7);
        assert_eq!(stats.shadowed().total(), 3, "reject = {reject}");
        assert_eq!(stats.rejected().total(), 0);
        assert_eq!(keyed.level(&1), 0);
        assert_eq!(keyed.level(&2), 0);
        clock.advance(Duration::from_secs(30));
        assert_eq!(
            keyed.level(&1),
            1,
            "nothing owed: the shadowed took no fuel"
        );
    }
}

/// Without shadow mode the same traffic is shed: the test above measures
/// shadow mode, not a tank that was never empty.
#[test]
fn without_shadow_the_same_traffic_is_shed() {
    let clock = ManualClock::new();
    let stats = Stats::with_clock(clock.clone());
    let layer = ThrottleLayer::new(tank(&clock, 3))
        .reject()
        .stats(stats.clone());
    for x in 0..10 {
        let mut svc = layer.layer(service_fn(|x: u32| async move { Ok::<_, BoxError>(x) }));
        assert!(svc.poll_ready(&mut cx()).is_ready());
        let _ = svc.call(x).now_or_never().unwrap();
    }
    assert_eq!(stats.rejected().total(), 7);
    assert_eq!(stats.shadowed().total(), 0);
}

/// Shadow mode with a cost, in both modes: a request costing more than
/// the budget can ever hold is still refused at once with
/// `ExceedsCapacity` (a request at fault, as one without a key, not one
/// the limit sheds), not let through as shadowed; one costing more than
/// there is now passes, counted as shadowed, spending nothing.
#[test]
fn a_cost_beyond_the_capacity_is_refused_in_shadow_mode_too() {
    for reject in [false, true] {
        let clock = ManualClock::new();
        let tank = tank(&clock, 3);
        let stats = Stats::with_clock(clock.clone());
        let mut layer = ThrottleLayer::new(tank.clone())
            .shadow()
            .stats(stats.clone());
        if reject {
            layer = layer.reject();
        }
        let mut svc = layer
            .cost(|n: &u64| *n)
            .layer(service_fn(|n: u64| async move { Ok::<_, BoxError>(n) }));
        let mut call = |n: u64| {
            assert!(svc.poll_ready(&mut cx()).is_ready());
            svc.call(n).now_or_never().expect("never waits")
        };
        for n in [11, u64::MAX] {
            let error = call(n).unwrap_err();
            assert_eq!(
                error.downcast_ref::<fueltank::Error>(),
                Some(&fueltank::Error::ExceedsCapacity {
                    requested: n,
                    capacity: 10
                }),
                "reject = {reject}"
            );
        }
        assert_eq!(stats.shadowed().total(), 0, "reject = {reject}");
        assert_eq!(call(5).unwrap(), 5);
        assert_eq!(stats.shadowed().total(), 1, "reject = {reject}");
        assert_eq!(tank.level(), 3);
    }
}
