//! The plain layer, on a `ManualClock`: shared budget, fuel held and given
//! back, reject mode's `retry_after`, the Service contract.

use std::convert::Infallible;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use fueltank::clock::ManualClock;
use fueltank::{Rate, Tank};
use fueltank_tower::{ThrottleLayer, ThrottleService, Throttled};
use futures::FutureExt;
use futures::executor::block_on;
use tower::{BoxError, Layer, Service, ServiceExt, service_fn};

type Echo = tower::util::ServiceFn<fn(u32) -> std::future::Ready<Result<u32, Infallible>>>;

fn echo() -> Echo {
    service_fn(|x| std::future::ready(Ok(x)))
}

fn tank(clock: &ManualClock, rate: &str, initial: u64) -> Tank {
    Tank::builder(rate.parse::<Rate>().unwrap())
        .initial(initial)
        .clock(clock.clone())
        .build()
        .unwrap()
}

/// One `poll_ready`, with a waker that does nothing.
fn poll_ready<S: Service<u32>>(svc: &mut S) -> Poll<Result<(), S::Error>> {
    svc.poll_ready(&mut Context::from_waker(Waker::noop()))
}

fn is_ready<S: Service<u32>>(svc: &mut S) -> bool
where
    S::Error: std::fmt::Debug,
{
    match poll_ready(svc) {
        Poll::Ready(result) => {
            result.unwrap();
            true
        }
        Poll::Pending => false,
    }
}

fn call_now(svc: &mut ThrottleService<Echo>, x: u32) -> Result<u32, BoxError> {
    svc.call(x)
        .now_or_never()
        .expect("the echo service answers at once")
}

#[test]
fn clones_share_one_budget() {
    let clock = ManualClock::new();
    let tank = tank(&clock, "10/s", 3);
    let mut a = ThrottleLayer::new(tank.clone()).layer(echo());
    let mut b = a.clone();
    let mut c = b.clone();
    let mut d = ThrottleLayer::new(tank.clone()).layer(echo());

    // Three fuel, whoever takes it: the fourth service must wait.
    assert!(is_ready(&mut a));
    assert!(is_ready(&mut b));
    assert!(is_ready(&mut c));
    assert!(!is_ready(&mut d));
    assert_eq!(tank.level(), 0);
    assert_eq!(tank.waiting(), 1);
    assert_eq!(call_now(&mut a, 1).unwrap(), 1);
    assert_eq!(call_now(&mut b, 2).unwrap(), 2);
    assert_eq!(call_now(&mut c, 3).unwrap(), 3);

    // One interval later, the one waiting in line gets the next fuel.
    clock.advance(Duration::from_millis(100));
    assert!(!is_ready(&mut a), "d is first in line");
    assert!(is_ready(&mut d));
    assert_eq!(call_now(&mut d, 4).unwrap(), 4);
    clock.advance(Duration::from_millis(100));
    assert!(is_ready(&mut a));
}

#[test]
fn a_clone_starts_without_fuel() {
    let clock = ManualClock::new();
    let tank = tank(&clock, "10/s", 1);
    let mut ready = ThrottleLayer::new(tank.clone()).layer(echo());
    assert!(is_ready(&mut ready));
    let mut clone = ready.clone();
    assert_eq!(tank.level(), 0, "the clone took no fuel and got none");
    assert!(!is_ready(&mut clone), "the clone must wait for its own");
    assert_eq!(call_now(&mut ready, 7).unwrap(), 7);
}

#[test]
fn a_dropped_ready_service_gives_its_fuel_back() {
    let clock = ManualClock::new();
    let tank = tank(&clock, "1/min", 1);
    let mut svc = ThrottleLayer::new(tank.clone()).layer(echo());
    assert!(is_ready(&mut svc));
    assert_eq!(tank.level(), 0);
    drop(svc);
    assert_eq!(tank.level(), 1, "the unspent fuel went back");

    // And to the head of the line, if someone waits.
    let mut first = ThrottleLayer::new(tank.clone()).layer(echo());
    let mut second = first.clone();
    assert!(is_ready(&mut first));
    assert!(!is_ready(&mut second));
    drop(first);
    assert!(is_ready(&mut second));
    assert_eq!(call_now(&mut second, 1).unwrap(), 1);
    assert_eq!(tank.level(), 0);
}

#[test]
fn a_service_dropped_while_waiting_leaves_the_line() {
    let clock = ManualClock::new();
    let tank = tank(&clock, "10/s", 0);
    let mut waiting = ThrottleLayer::new(tank.clone()).layer(echo());
    assert!(!is_ready(&mut waiting));
    assert_eq!(tank.waiting(), 1);
    drop(waiting);
    assert_eq!(tank.waiting(), 0);
    clock.advance(Duration::from_millis(100));
    assert_eq!(tank.level(), 1, "no fuel lost to the dropped waiter");
}

/// The fuel a wait bounded by `max_wait` brought is given back as well
/// (as the service's `# Cancel safety` says), and `poll_ready` twice
/// holds one fuel, not two.
#[test]
fn a_service_dropped_after_a_timed_wait_gives_its_fuel_back() {
    let clock = ManualClock::new();
    let tank = tank(&clock, "10/s", 0);
    let mut svc = ThrottleLayer::new(tank.clone())
        .max_wait(Duration::from_secs(1))
        .layer(echo());
    assert!(!is_ready(&mut svc));
    clock.advance(Duration::from_millis(100));
    assert!(is_ready(&mut svc));
    assert!(is_ready(&mut svc));
    assert_eq!(tank.level(), 0);
    drop(svc);
    assert_eq!(tank.level(), 1, "the fuel of the timed wait went back");
}

#[test]
fn into_inner_gives_the_fuel_back_too() {
    let clock = ManualClock::new();
    let tank = tank(&clock, "1/min", 1);
    let mut svc = ThrottleLayer::new(tank.clone()).layer(echo());
    assert!(is_ready(&mut svc));
    let _inner = svc.into_inner();
    assert_eq!(tank.level(), 1);
}

#[test]
fn waiting_services_are_served_in_arrival_order_and_reuse_their_wait() {
    let clock = ManualClock::new();
    let tank = tank(&clock, "10/s", 0);
    let mut svcs: Vec<_> = (0..3)
        .map(|_| ThrottleLayer::new(tank.clone()).layer(echo()))
        .collect();
    for svc in &mut svcs {
        assert!(!is_ready(svc));
    }
    for (i, svc) in svcs.iter_mut().enumerate() {
        clock.advance(Duration::from_millis(100));
        assert!(is_ready(svc), "service {i} is next");
        assert_eq!(call_now(svc, i as u32).unwrap(), i as u32);
    }
    // Each service waits again with the same box; it still works.
    let svc = &mut svcs[0];
    assert!(!is_ready(svc));
    clock.advance(Duration::from_millis(100));
    assert!(is_ready(svc));
    assert_eq!(call_now(svc, 9).unwrap(), 9);
}

#[test]
fn reject_mode_sheds_with_the_exact_retry_after() {
    let clock = ManualClock::new();
    let tank = tank(&clock, "4/s", 1);
    let mut svc = ThrottleLayer::new(tank.clone()).reject().layer(echo());

    assert!(is_ready(&mut svc), "reject mode is always ready");
    assert_eq!(call_now(&mut svc, 1).unwrap(), 1);
    assert!(is_ready(&mut svc));
    let err = call_now(&mut svc, 2).unwrap_err();
    let throttled = err.downcast_ref::<Throttled>().expect("a Throttled error");
    assert_eq!(throttled.retry_after(), Duration::from_millis(250));
    assert!(err.to_string().contains("250ms"), "{err}");

    clock.advance(Duration::from_millis(100));
    let err = call_now(&mut svc, 3).unwrap_err();
    assert_eq!(
        err.downcast_ref::<Throttled>().unwrap().retry_after(),
        Duration::from_millis(150)
    );
    clock.advance(Duration::from_millis(150));
    assert_eq!(call_now(&mut svc, 4).unwrap(), 4);
    assert_eq!(tank.level(), 0);
}

#[test]
fn reject_mode_while_paused_says_one_interval() {
    let clock = ManualClock::new();
    let tank = tank(&clock, "4/s", 0);
    tank.pause();
    let mut svc = ThrottleLayer::new(tank).reject().layer(echo());
    let err = call_now(&mut svc, 1).unwrap_err();
    assert_eq!(
        err.downcast_ref::<Throttled>().unwrap().retry_after(),
        Duration::from_millis(250)
    );
}

#[test]
fn call_without_poll_ready_does_not_panic() {
    let clock = ManualClock::new();
    let tank = tank(&clock, "1/s", 1);
    let mut svc = ThrottleLayer::new(tank.clone()).layer(echo());
    // A broken caller: no poll_ready. There is fuel: it is taken.
    assert_eq!(call_now(&mut svc, 1).unwrap(), 1);
    // None left: shed, not a panic and not a free pass.
    let err = call_now(&mut svc, 2).unwrap_err();
    assert!(err.is::<Throttled>());
    assert_eq!(tank.level(), 0);
}

#[test]
fn inner_errors_pass_through_boxed() {
    let clock = ManualClock::new();
    let mut svc = ThrottleLayer::new(tank(&clock, "10/s", 1))
        .layer(service_fn(|_: u32| async { Err::<u32, _>("inner failed") }));
    let err = block_on(async { svc.ready().await?.call(0).await }).unwrap_err();
    assert_eq!(err.to_string(), "inner failed");
    assert!(!err.is::<Throttled>());
}

#[test]
fn the_service_is_send_sync_and_clone() {
    fn assert_traits<T: Send + Sync + Clone + 'static>(_: &T) {}
    let clock = ManualClock::new();
    let svc = ThrottleLayer::new(tank(&clock, "10/s", 1)).layer(echo());
    assert_traits(&svc);
    let future = ThrottleLayer::new(tank(&clock, "10/s", 1))
        .layer(echo())
        .oneshot(1);
    fn assert_send<T: Send>(_: &T) {}
    assert_send(&future);
}

#[test]
fn new_and_from_are_the_same_layer() {
    let clock = ManualClock::new();
    let tank = tank(&clock, "10/s", 2);
    let layer: ThrottleLayer = tank.clone().into();
    let mut a = layer.layer(echo());
    let mut b = ThrottleLayer::new(tank.clone()).layer(echo());
    assert!(is_ready(&mut a));
    assert!(is_ready(&mut b));
    assert_eq!(tank.level(), 0);
}

/// Ready services dropped in another order than they were made ready give
/// every fuel back: each refund is exact, whatever the others did.
#[test]
fn ready_services_dropped_in_any_order_give_all_their_fuel_back() {
    let clock = ManualClock::new();
    let tank = tank(&clock, "10/s", 10);
    let layer = ThrottleLayer::new(tank.clone());
    for round in 0..5 {
        let mut services: Vec<_> = (0..10).map(|_| Some(layer.layer(echo()))).collect();
        for svc in services.iter_mut().flatten() {
            assert!(is_ready(svc));
        }
        assert_eq!(tank.level(), 0);
        for i in (0..10).map(|i| (i * 3 + round) % 10) {
            services[i] = None;
        }
        assert_eq!(tank.level(), 10, "round {round}");
    }
}

/// A storm on real threads over an `AllOf` of a throttle and two tanks,
/// on a manual clock: clones made ready (some twice) and called, made
/// ready and dropped, dropped while waiting. Every component keeps the
/// books exactly: what it accrued less what it holds is the same count of
/// grants for each of them (all or nothing), the throttle counts exactly
/// that, every call served had its grant, and a grant is a call served or
/// a ready service dropped (which spends its fuel: an `AllOf` cannot take
/// fuel back, as the service's docs say). A ready service dropped may
/// also have held no fuel but a refusal (its wait would have outlasted
/// `max_wait`): so those are an upper bound, not a count.
#[test]
fn a_storm_over_an_all_of_keeps_every_component_s_books() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    let clock = ManualClock::new();
    // 1 and 0.7 fuel a millisecond, never capped in the test's 2 s.
    let big = |per_ms_x10: u64| {
        Tank::builder(Rate::new(per_ms_x10 * 100_000, Duration::from_secs(1000)).unwrap())
            .initial(0)
            .clock(clock.clone())
            .build()
            .unwrap()
    };
    let (a, b) = (big(10), big(7));
    let throttle = fueltank::Throttle::builder(Rate::new(10_000, Duration::from_secs(10)).unwrap())
        .initial(0)
        .clock(clock.clone())
        .build()
        .unwrap();
    let all = fueltank::AllOf::new(throttle.clone())
        .and(a.clone())
        .and(b.clone())
        .clock(clock.clone());
    let svc = ThrottleLayer::new(all)
        .max_wait(Duration::from_millis(20))
        .layer(echo());
    let (called, dropped) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..4_u64)
        .map(|seed| {
            let (svc, called, dropped, stop) =
                (svc.clone(), called.clone(), dropped.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut x = seed;
                while !stop.load(Ordering::Relaxed) {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let mut svc = svc.clone();
                    let ready = (0..(x >> 33) % 4).any(|_| {
                        let ready = is_ready(&mut svc);
                        std::thread::yield_now();
                        ready
                    });
                    if !ready {
                        continue; // dropped while waiting, or never polled
                    }
                    if (x >> 40) % 3 == 0 {
                        dropped.fetch_add(1, Ordering::Relaxed);
                        continue; // dropped ready: its fuel is spent
                    }
                    if (x >> 45) % 2 == 0 {
                        assert!(is_ready(&mut svc), "ready twice");
                    }
                    if call_now(&mut svc, 1).is_ok() {
                        called.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    let steps = 2000;
    for _ in 0..steps {
        clock.advance(Duration::from_millis(1));
        std::thread::sleep(Duration::from_micros(50));
    }
    stop.store(true, Ordering::Relaxed);
    for thread in threads {
        thread.join().unwrap();
    }
    let granted = steps - a.level();
    assert_eq!(granted, steps * 7 / 10 - b.level(), "b granted as a");
    assert_eq!(
        granted,
        steps - throttle.tank().unwrap().level(),
        "the throttle's tank granted as a"
    );
    assert_eq!(throttle.total(), granted, "the throttle's count");
    let (called, dropped) = (
        called.load(Ordering::Relaxed),
        dropped.load(Ordering::Relaxed),
    );
    assert!(
        (called..=called + dropped).contains(&granted),
        "{granted} granted for {called} called and {dropped} dropped ready"
    );
    assert!(
        called > 10 && dropped > 10,
        "{called} called, {dropped} dropped"
    );
}
