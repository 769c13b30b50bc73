//! Cost per request and exemptions, on a `ManualClock`: a request spends
//! what its cost says (0 spends nothing, beyond capacity is refused at
//! once), an exempt one spends nothing and is never shed; the fuel spent is
//! the sum of the costs of the requests admitted.

use std::future::Future;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use fueltank::clock::ManualClock;
use fueltank::{KeyedTank, Rate, Tank};
use fueltank_tower::key::key_fn;
use fueltank_tower::{KeyedThrottleLayer, Stats, ThrottleLayer, Throttled};
use futures::FutureExt;
use tower::{BoxError, Layer, Service, ServiceExt, service_fn};

/// A request: (key, cost, exempt).
type Req = (u8, u64, bool);

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

fn echo() -> impl Service<Req, Response = u64, Error = BoxError, Future: Send> + Clone {
    service_fn(|(_, cost, _): Req| async move { Ok::<_, BoxError>(cost) })
}

/// Reject mode, both layers: each admitted request spends exactly its
/// cost, exempt and zero-cost requests spend nothing, and the fuel spent
/// equals the sum of the costs admitted.
#[test]
fn fuel_spent_is_the_sum_of_the_costs_admitted() {
    let requests: [Req; 8] = [
        (1, 3, false),
        (1, 0, false),
        (1, 4, true), // exempt: free
        (1, 5, false),
        (1, 2, false), // 3 + 5 = 8 spent: 2 left, fits
        (1, 1, false), // none left: shed
        (1, 9, true),  // exempt even when empty
        (1, 0, false), // nothing to spend: passes
    ];
    let admitted_costs: u64 = 3 + 5 + 2;
    for keyed in [false, true] {
        let clock = ManualClock::new();
        let stats = Stats::with_clock(clock.clone());
        let global = tank(&clock, 10);
        let per_key = KeyedTank::builder(Rate::per_second(10).unwrap())
            .clock(clock.clone())
            .build()
            .unwrap();
        let results: Vec<Result<u64, BoxError>> = if keyed {
            let svc = KeyedThrottleLayer::new(per_key.clone(), key_fn(|r: &Req| Ok(r.0)))
                .reject()
                .cost(|r: &Req| r.1)
                .exempt(|r: &Req| r.2)
                .stats(stats.clone())
                .layer(echo());
            requests
                .iter()
                .map(|r| svc.clone().oneshot(*r).now_or_never().unwrap())
                .collect()
        } else {
            let svc = ThrottleLayer::new(global.clone())
                .reject()
                .cost(|r: &Req| r.1)
                .exempt(|r: &Req| r.2)
                .stats(stats.clone())
                .layer(echo());
            requests
                .iter()
                .map(|r| svc.clone().oneshot(*r).now_or_never().unwrap())
                .collect()
        };
        let served: Vec<bool> = results.iter().map(Result::is_ok).collect();
        assert_eq!(
            served,
            [true, true, true, true, true, false, true, true],
            "keyed = {keyed}"
        );
        assert!(results[5].as_ref().unwrap_err().is::<Throttled>());
        let left = if keyed {
            per_key.level(&1)
        } else {
            global.level()
        };
        assert_eq!(
            10 - left,
            admitted_costs,
            "keyed = {keyed}: fuel spent = costs admitted"
        );
        // Exempt requests are not counted: 5 admitted, 1 shed.
        assert_eq!(stats.admitted().total(), 5, "keyed = {keyed}");
        assert_eq!(stats.rejected().total(), 1, "keyed = {keyed}");
    }
}

/// A cost beyond the capacity is refused at once with `ExceedsCapacity`,
/// even in wait mode (it could never be served), and takes nothing.
#[test]
fn a_cost_beyond_capacity_is_refused_at_once_not_waited_for() {
    let clock = ManualClock::new();
    let global = tank(&clock, 10);
    let svc = ThrottleLayer::new(global.clone())
        .cost(|r: &Req| r.1)
        .layer(echo());
    let err = svc
        .oneshot((0, 11, false))
        .now_or_never()
        .expect("refused at once, not a wait")
        .unwrap_err();
    assert_eq!(
        err.downcast_ref::<fueltank::Error>(),
        Some(&fueltank::Error::ExceedsCapacity {
            requested: 11,
            capacity: 10
        })
    );
    assert_eq!(global.level(), 10, "nothing taken");
}

/// Wait mode: a request that costs more than there is waits for all of it
/// in its response future, in the fair line, then is served.
#[test]
fn wait_mode_waits_for_the_whole_cost() {
    let clock = ManualClock::new();
    let global = tank(&clock, 2);
    let mut svc = ThrottleLayer::new(global.clone())
        .cost(|r: &Req| r.1)
        .layer(echo());
    assert!(svc.poll_ready(&mut cx()).is_ready());
    let mut waiting = Box::pin(svc.call((0, 5, false)));
    assert!(
        waiting.as_mut().poll(&mut cx()).is_pending(),
        "2 of 5: waits"
    );
    clock.advance(Duration::from_millis(200));
    assert!(
        waiting.as_mut().poll(&mut cx()).is_pending(),
        "4 of 5: waits"
    );
    clock.advance(Duration::from_millis(100));
    assert!(matches!(
        waiting.as_mut().poll(&mut cx()),
        Poll::Ready(Ok(5))
    ));
    assert_eq!(global.level(), 0, "all five spent");
}

/// Wait mode, keyed, with `rate_by`: a partner key at 50/s in a keyed tank
/// at 5/s may take up to 50 at once, and after spending 45 of its 50, a
/// request costing 10 waits 100 ms and is served, as a `KeyedBudget::wait`
/// on the key is. Before the fix, the layer compared the cost with the
/// capacity of a key at the tank's rate (5) and refused it at once.
#[test]
fn a_keys_own_rate_sets_what_it_may_cost() {
    let clock = ManualClock::new();
    let per_key = KeyedTank::builder(Rate::per_second(5).unwrap())
        .rate_by(|key: &u8| match key {
            0 => Rate::per_second(50).unwrap(),
            _ => Rate::per_second(5).unwrap(),
        })
        .clock(clock.clone())
        .build()
        .unwrap();
    assert!(per_key.has_fuel_n(&0, 45));
    assert_eq!(per_key.wait_time(&0, 10), Some(Duration::from_millis(100)));
    let mut svc = KeyedThrottleLayer::new(per_key.clone(), key_fn(|r: &Req| Ok(r.0)))
        .cost(|r: &Req| r.1)
        .layer(echo());
    assert!(svc.poll_ready(&mut cx()).is_ready());
    let mut waiting = Box::pin(svc.call((0, 10, false)));
    let first = waiting.as_mut().poll(&mut cx());
    assert!(
        first.is_pending(),
        "5 of 10 for a key of 50/s: waits, got {:?}",
        first.map(|r| r.map_err(|e| e.to_string()))
    );
    clock.advance(Duration::from_millis(100));
    assert!(matches!(
        waiting.as_mut().poll(&mut cx()),
        Poll::Ready(Ok(10))
    ));
}
