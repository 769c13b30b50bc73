//! `KeyedThrottleLayer::and`: a request passes only if its key and every
//! other budget have its fuel; a request shed by one spends nothing from
//! the others. On a `ManualClock`, in reject mode (no time passes).

use fueltank::clock::ManualClock;
use fueltank::{Budget, KeyedBudget, KeyedTank, Rate, Tank};
use fueltank_tower::key::key_fn;
use fueltank_tower::{KeyedThrottleLayer, Throttled};
use tower::{BoxError, Layer, ServiceExt, service_fn};

#[test]
fn a_request_shed_by_one_budget_spends_nothing_from_the_others() {
    let clock = ManualClock::new();
    let per_key = KeyedTank::<u8>::builder(Rate::per_minute(2).unwrap())
        .initial(2)
        .clock(clock.clone())
        .build()
        .unwrap();
    let global = Tank::builder(Rate::per_minute(3).unwrap())
        .initial(3)
        .clock(clock.clone())
        .build()
        .unwrap();
    let route = Tank::builder(Rate::per_minute(10).unwrap())
        .initial(10)
        .clock(clock.clone())
        .build()
        .unwrap();
    let svc = KeyedThrottleLayer::new(per_key.clone(), key_fn(|k: &(u8, u64)| Ok(k.0)))
        .and(global.clone())
        .and(route.clone())
        .cost(|k: &(u8, u64)| k.1)
        .reject()
        .layer(service_fn(
            |k: (u8, u64)| async move { Ok::<_, BoxError>(k.0) },
        ));
    let call = |key: u8, cost: u64| {
        let svc = svc.clone();
        futures::executor::block_on(svc.oneshot((key, cost)))
    };
    let shed = |result: Result<u8, BoxError>| result.unwrap_err().is::<Throttled>();
    assert_eq!(call(1, 1).unwrap(), 1);
    assert_eq!(call(1, 1).unwrap(), 1);
    // Key 1 is empty: the global and route tanks keep their fuel.
    assert!(shed(call(1, 1)));
    assert_eq!((global.level(), route.level()), (1, 8));
    // Key 2 has 2, the global tank 1: shed, and key 2 keeps both.
    assert!(shed(call(2, 2)));
    assert_eq!(per_key.available(&2), 2);
    assert_eq!((global.level(), route.level()), (1, 8));
    assert_eq!(call(2, 1).unwrap(), 2);
    assert_eq!(
        (per_key.available(&2), global.level(), route.level()),
        (1, 0, 7)
    );
    // The global tank is empty: every key is shed, spending nothing.
    assert!(shed(call(3, 1)));
    assert_eq!(per_key.available(&3), 2);
    assert_eq!(route.level(), 7);
    // Budget views of the combination: the least available.
    assert_eq!(Budget::available(&global), 0);
    assert_eq!(KeyedBudget::available(&per_key, &3), 2);
}

/// Wait mode: a request whose key has fuel waits in line for the other
/// budget, then spends from both; one that cannot be served within
/// `max_wait` is shed and spends from neither. Real time, 20/s tanks.
#[test]
fn in_wait_mode_a_request_waits_for_every_budget_and_a_shed_one_spends_nothing() {
    use std::time::{Duration, Instant};

    let per_key = KeyedTank::<u8>::builder(Rate::per_second(20).unwrap())
        .initial(1)
        .build()
        .unwrap();
    let global = Tank::new(Rate::per_second(20).unwrap());
    let svc = KeyedThrottleLayer::new(per_key.clone(), key_fn(|k: &u8| Ok(*k)))
        .and(global.clone())
        .max_wait(Duration::from_secs(5))
        .layer(service_fn(|k: u8| async move { Ok::<_, BoxError>(k) }));
    futures::executor::block_on(async {
        assert_eq!(svc.clone().oneshot(1).await.unwrap(), 1);
        assert_eq!(global.level(), 0);
        // Key 2 has its fuel; the global tank's next comes in 50 ms.
        let started = Instant::now();
        assert_eq!(svc.clone().oneshot(2).await.unwrap(), 2);
        assert!(started.elapsed() >= Duration::from_millis(40));
        assert_eq!(KeyedBudget::available(&per_key, &2), 0);

        // A global tank that refills once a minute: key 3 cannot be
        // served within 50 ms, and keeps its fuel.
        let slow = Tank::new(Rate::per_minute(1).unwrap());
        assert!(slow.has_fuel());
        let svc = KeyedThrottleLayer::new(per_key.clone(), key_fn(|k: &u8| Ok(*k)))
            .and(slow.clone())
            .max_wait(Duration::from_millis(50))
            .layer(service_fn(|k: u8| async move { Ok::<_, BoxError>(k) }));
        let err = svc.oneshot(3).await.unwrap_err();
        assert!(err.is::<Throttled>(), "{err}");
        assert_eq!(KeyedBudget::available(&per_key, &3), 1);
        assert_eq!(slow.level(), 0);
    });
}
