//! `GlobalTankBuilder::also`: several rates on one Redis tank, decided
//! together by the script (its decisions against `fueltank::Tank` are in
//! `differential.rs`); `GlobalKeyedTankBuilder::also`: the same on every
//! key of a keyed tank.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{RedisServer, densest};
use fueltank::{Budget, Hardcap, KeyedBudget, Rate};
use fueltank_redis::{Error, RedisStore};

fn rate(s: &str) -> Rate {
    s.parse().unwrap()
}

/// A store with room for a loaded machine: a round trip may take 1 s
/// before it counts as a failure.
async fn store(redis: &RedisServer) -> RedisStore {
    RedisStore::builder(&redis.url())
        .timeout(Duration::from_secs(1))
        .connect()
        .await
        .unwrap()
}

const RUN: Duration = Duration::from_secs(3);

/// No window of any of `rates`' periods in `stamps` (of `what`) sees more
/// than that rate's `Limit` bound, `2·max_n − 1`. The windows are a 15th
/// shorter than the periods: a loaded machine may let tasks see grants
/// closer together than Redis made them.
fn assert_every_bound(stamps: &mut [Instant], rates: [Rate; 2], what: &str) {
    for limit in rates {
        let most = densest(stamps, limit.per() - limit.per() / 15);
        let bound = 2 * limit.max_n() as usize - 1;
        let total = stamps.len();
        println!("{what}, {limit}: densest window {most} (bound {bound}), {total} grants");
        assert!(
            most <= bound,
            "{what}, {limit}: {most} grants in a window, bound {bound}"
        );
    }
}

/// Three instances, greedy (four waiters and a `has_fuel` spinner each),
/// on "60/2s also 20/200ms": no window of either period sees more than
/// that rate's `Limit` bound (`2·max_n − 1`), and each instance gets a
/// fair part. Both rates bind: the long one's bank (59) would be spent at
/// once but for the short one, whose rate (100/s) is thrice the long one's.
/// The windows are a 15th shorter than the periods: a loaded machine may
/// let tasks see grants closer together than Redis made them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_keep_every_rate_and_share_it() {
    let redis = RedisServer::start();
    let (long, short) = (rate("60/2s"), rate("20/200ms"));
    let stamps = Arc::new(Mutex::new(Vec::new()));
    let counts: Vec<_> = (0..3).map(|_| Arc::new(Mutex::new(0u64))).collect();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for count in &counts {
        let store = store(&redis).await;
        let tank = store
            .tank("partner", long)
            .also(short)
            .build()
            .await
            .unwrap();
        for spinner in 0..5 {
            let (tank, stamps, count) = (tank.clone(), stamps.clone(), count.clone());
            tasks.push(tokio::spawn(async move {
                while started.elapsed() < RUN {
                    if spinner == 0 {
                        if !tank.has_fuel() {
                            tokio::time::sleep(Duration::from_micros(200)).await;
                            continue;
                        }
                    } else {
                        tank.await_fuel().await;
                    }
                    stamps.lock().unwrap().push(Instant::now());
                    *count.lock().unwrap() += 1;
                }
            }));
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
    let mut stamps = stamps.lock().unwrap().clone();
    let total = stamps.len() as u64;
    assert_every_bound(&mut stamps, [long, short], "the tank");
    // The long rate's bank and 3 s of it (149), less a batch or so.
    assert!(total >= 120, "only {total} grants in {RUN:?}");
    let counts: Vec<u64> = counts.iter().map(|c| *c.lock().unwrap()).collect();
    println!("per instance: {counts:?}");
    for &count in &counts {
        assert!(count * 3 >= total / 2, "starved: {counts:?} of {total}");
    }
}

/// A take of several at once waits for every rate: after a burst that
/// empties the short rate, 5 at once come no sooner than the short rate
/// refills them, though the long rate has plenty.
#[tokio::test]
async fn capacity_and_waits_follow_the_tightest_rate() {
    let redis = RedisServer::start();
    let store = store(&redis).await;
    let tank = store
        .tank("burst", rate("1000/10s"))
        .also(rate("10/s"))
        .build()
        .await
        .unwrap();
    // The hold is the default for the shortest period: 100 ms, an
    // interval of 10/s: a bank of 9 there.
    assert_eq!(tank.capacity(), 9);
    assert!(!tank.has_fuel_n(10));
    tank.await_fuel_n(9).await.unwrap();
    let start = Instant::now();
    tank.await_fuel_n(5).await.unwrap();
    let waited = start.elapsed();
    println!("5 more after 9 at once: {waited:?}");
    // 10/s refills 5 in 500 ms (the first of them may be 100 ms early:
    // the batch was granted before the 9 were spent).
    assert!(waited >= Duration::from_millis(380), "{waited:?}");
}

#[tokio::test]
async fn other_also_rates_are_a_mismatch() {
    let redis = RedisServer::start();
    let (a, b) = (store(&redis).await, store(&redis).await);
    a.tank("api", rate("100/min"))
        .also(rate("5/s"))
        .build()
        .await
        .unwrap();
    for also in [
        &[][..],
        &[rate("6/s")][..],
        &[rate("5/s"), rate("1000/h")][..],
    ] {
        let mut builder = b.tank("api", rate("100/min"));
        for &r in also {
            builder = builder.also(r);
        }
        match builder.build().await {
            Err(Error::Mismatch { stored, given, .. }) => {
                assert!(stored.contains("other `also` rates"), "{stored}");
                assert!(given.starts_with("100/min"), "{given}");
                for r in also {
                    assert!(given.contains(&format!("also {r}")), "{given}");
                }
            }
            other => panic!("{also:?}: {other:?}"),
        }
    }
    // A tank of one rate is not one with `also`, either way.
    a.tank("single", rate("100/min")).build().await.unwrap();
    let err = b
        .tank("single", rate("100/min"))
        .also(rate("5/s"))
        .build()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Mismatch { .. }), "{err:?}");
    // The same rates share the tank.
    let tank = b
        .tank("api", rate("100/min"))
        .also(rate("5/s"))
        .build()
        .await
        .unwrap();
    assert_eq!(
        Budget::rates(&tank)
            .into_iter()
            .map(|(r, _)| r)
            .collect::<Vec<_>>(),
        [rate("100/min"), rate("5/s")]
    );
    // `set_rate` changes the first rate only.
    tank.set_rate(rate("120/min")).await.unwrap();
    let rates: Vec<Rate> = Budget::rates(&tank).into_iter().map(|(r, _)| r).collect();
    assert_eq!(rates, [rate("120/min"), rate("5/s")]);
}

#[tokio::test]
async fn rates_hold_and_hardcaps_redis_cannot_keep_are_errors() {
    let redis = RedisServer::start();
    let store = store(&redis).await;
    for hardcap in [Hardcap::One, Hardcap::Window] {
        let err = store
            .tank("x", rate("100/min"))
            .also(rate("5/s"))
            .hardcap(hardcap)
            .build()
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::UnsupportedRate { .. }) && err.to_string().contains("Limit"),
            "{hardcap:?}: {err}"
        );
    }
    // A rate with no bank beside the hold would be paced.
    let err = store
        .tank("x", rate("100/min"))
        .also(rate("1/s"))
        .hold(Duration::from_millis(500))
        .build()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::UnsupportedRate { rate, .. } if rate == "1/s"),
        "{err}"
    );
    // A hold longer than a rate's period.
    let err = store
        .tank("x", rate("100/min"))
        .also(rate("5/s"))
        .hold(Duration::from_secs(2))
        .build()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidOption { .. }), "{err}");
    // Unbounded keeps several rates (each banks without bound).
    let tank = store
        .tank("u", rate("100/min"))
        .also(rate("5/s"))
        .hardcap(Hardcap::Unbounded)
        .build()
        .await
        .unwrap();
    tank.await_fuel().await;
    // `set_rate` to a first rate that would be paced is refused, the
    // tank kept.
    let tank = store
        .tank("s", rate("100/min"))
        .also(rate("5/s"))
        .build()
        .await
        .unwrap();
    let err = tank.set_rate(rate("1/s")).await.unwrap_err();
    assert!(matches!(err, Error::UnsupportedRate { .. }), "{err}");
    assert_eq!(tank.rate(), rate("100/min"));
}

/// Two instances, greedy on two keys (per key and instance, two waiters
/// and a `has_fuel` spinner), on "60/2s also 20/200ms" per key: for each
/// key, no window of either period sees more than that rate's `Limit`
/// bound (`2·max_n − 1`), and the key is served near its long-run rate.
/// The windows are a 15th shorter than the periods: a loaded machine may
/// let tasks see grants closer together than Redis made them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_keep_every_rate_of_every_key() {
    let redis = RedisServer::start();
    let (long, short) = (rate("60/2s"), rate("20/200ms"));
    let stamps: Arc<Mutex<HashMap<&str, Vec<Instant>>>> = Arc::default();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let store = store(&redis).await;
        let keyed = store
            .keyed::<String>("per-partner", long)
            .also(short)
            .build()
            .await
            .unwrap();
        for key in ["acme", "globex"] {
            for spinner in 0..3 {
                let (keyed, stamps) = (keyed.clone(), stamps.clone());
                tasks.push(tokio::spawn(async move {
                    while started.elapsed() < RUN {
                        if spinner == 0 {
                            if !keyed.has_fuel(&key.to_string()) {
                                tokio::time::sleep(Duration::from_micros(200)).await;
                                continue;
                            }
                        } else {
                            keyed.await_fuel(key.to_string()).await.unwrap();
                        }
                        let now = Instant::now();
                        stamps.lock().unwrap().entry(key).or_default().push(now);
                    }
                }));
            }
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
    let mut stamps = stamps.lock().unwrap().clone();
    for (key, stamps) in &mut stamps {
        let total = stamps.len();
        assert_every_bound(stamps, [long, short], key);
        // The long rate's bank and 3 s of it (149), less a batch or so.
        assert!(total >= 120, "{key}: only {total} grants in {RUN:?}");
    }
}

/// Other rates of `also` than the tank's are a mismatch at build; the
/// same rates share it; `capacity` is the least of the rates', `rates`
/// tells each; `set_rate` changes the first rate only, and refuses one
/// Redis cannot keep beside the others; `One` and `Window` refuse `also`;
/// a key whose own rate would be paced gets the error instead of fuel.
#[tokio::test]
async fn also_per_key_is_part_of_the_tank() {
    let redis = RedisServer::start();
    let (a, b) = (store(&redis).await, store(&redis).await);
    let first = a
        .keyed::<String>("per-user", rate("100/min"))
        .also(rate("5/s"))
        .rate_by(|user| match user.as_str() {
            "slow" => rate("1/s"),
            _ => rate("100/min"),
        })
        .hold(Duration::from_millis(100))
        .build()
        .await
        .unwrap();
    for also in [&[][..], &[rate("6/s")][..]] {
        let mut builder = b.keyed::<String>("per-user", rate("100/min"));
        for &r in also {
            builder = builder.also(r);
        }
        let err = builder.build().await.unwrap_err();
        assert!(matches!(err, Error::Mismatch { .. }), "{also:?}: {err:?}");
    }
    let second = b
        .keyed::<String>("per-user", rate("100/min"))
        .also(rate("5/s"))
        .hold(Duration::from_millis(100))
        .build()
        .await
        .unwrap();
    // 5/s less the hold's interval: a bank of 4.
    assert_eq!(KeyedBudget::capacity(&second, &"ada".to_string()), 4);
    let ada = "ada".to_string();
    second.await_fuel(ada.clone()).await.unwrap();
    let rates: Vec<Rate> = KeyedBudget::rates(&second, &ada)
        .into_iter()
        .map(|(r, _)| r)
        .collect();
    assert_eq!(rates, [rate("100/min"), rate("5/s")]);
    // A key whose own rate 1/s has no bank beside the hold.
    let err = first.await_fuel("slow".to_string()).await.unwrap_err();
    assert!(matches!(err, Error::UnsupportedRate { .. }), "{err}");
    first.set_rate(rate("120/min")).await.unwrap();
    let rates: Vec<Rate> = KeyedBudget::rates(&first, &ada)
        .into_iter()
        .map(|(r, _)| r)
        .collect();
    assert_eq!(rates, [rate("120/min"), rate("5/s")]);
    let err = first.set_rate(rate("1/s")).await.unwrap_err();
    assert!(matches!(err, Error::UnsupportedRate { .. }), "{err}");
    for hardcap in [Hardcap::One, Hardcap::Window] {
        let err = a
            .keyed::<String>("other", rate("100/min"))
            .also(rate("5/s"))
            .hardcap(hardcap)
            .build()
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::UnsupportedRate { .. }),
            "{hardcap:?}: {err}"
        );
    }
}

/// `GlobalKeyedTank::rates` names a key's own rate (`rate_by`) even for a
/// key this instance does not hold yet: a partner at 120/2s in a tank at
/// 60/2s, also 20/200ms. Before the fix it named the tank's rate, 60/2s,
/// until the key was held here.
#[tokio::test]
async fn rates_of_a_key_not_held_name_its_own_rate() {
    let redis = RedisServer::start();
    let store = store(&redis).await;
    let (tank, own, short) = (rate("60/2s"), rate("120/2s"), rate("20/200ms"));
    let keyed = store
        .keyed::<String>("tiers", tank)
        .also(short)
        .rate_by(move |key| match key.as_str() {
            "acme" => own,
            _ => tank,
        })
        .build()
        .await
        .unwrap();
    let acme = "acme".to_string();
    let rates: Vec<Rate> = KeyedBudget::rates(&keyed, &acme)
        .into_iter()
        .map(|(r, _)| r)
        .collect();
    assert_eq!(rates, [own, short], "a key not held yet");
    keyed.await_fuel(acme.clone()).await.unwrap();
    let rates: Vec<Rate> = KeyedBudget::rates(&keyed, &acme)
        .into_iter()
        .map(|(r, _)| r)
        .collect();
    assert_eq!(rates, [own, short], "once held");
}

/// `wait_time(n)` with rates of `also` is the time every rate has room
/// for `n`, as of Redis's latest answer: the latest of the rates' own due
/// times. Before the fix the script answered only when its *last* rate is
/// full, and `wait_time` counted back the longest of the rates' refills
/// from there: a lower bound, 0 where the truth was 0.9 s. On
/// "10/s also 100/min" (banks 9 and 99), after 9 at once the short rate
/// is due for 9 again in 0.9 s, for 1 in 0.1 s, while the long one, full
/// last (in 5.4 s), has room for 90 now. Then on "10/s also 20/4s" (banks
/// 9 and 19), after three takes of 9 at once, each when due, the long
/// rate binds for 9 (due 1.6 s on), the short one for 1 (0.1 s on). Each
/// said time is checked against the truth
/// from the spends (within 150 ms) and against how long the next take of
/// that many then waited; the same on a key of a keyed tank.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_time_with_also_is_when_every_rate_has_room() {
    let redis = RedisServer::start();
    let store = store(&redis).await;
    let mut wrong = Vec::new();
    let mut near = |said: Duration, truth: Duration, slack_ms: u64, what: &str| {
        let slack = Duration::from_millis(slack_ms);
        println!("{what}: wait_time said {said:?}, truth {truth:?}");
        if said + slack < truth || said > truth + slack {
            wrong.push(format!("{what}: said {said:?}, truth {truth:?}"));
        }
    };
    // The short rate binds.
    let tank = store
        .tank("due-short", rate("10/s"))
        .also(rate("100/min"))
        .build()
        .await
        .unwrap();
    assert_eq!(tank.capacity(), 9);
    tank.await_fuel_n(9).await.unwrap();
    let spent = Instant::now();
    let said_one = tank.wait_time(1).unwrap();
    let said = tank.wait_time(9).unwrap();
    let truth = Duration::from_millis(900).saturating_sub(spent.elapsed());
    near(
        said_one,
        Duration::from_millis(100),
        50,
        "global, 1 after 9",
    );
    near(said, truth, 150, "global, 9 after 9");
    let started = Instant::now();
    tank.await_fuel_n(9).await.unwrap();
    // Waited: not much shorter than said; longer by as much as a loaded
    // machine wakes the waiter late, which says nothing of `wait_time`.
    near(
        said,
        started.elapsed().min(said),
        150,
        "global, 9 after 9 (waited)",
    );

    // The same on a key.
    let keyed = store
        .keyed::<String>("due-keyed", rate("10/s"))
        .also(rate("100/min"))
        .build()
        .await
        .unwrap();
    let ada = "ada".to_string();
    keyed.await_fuel_n(ada.clone(), 9).await.unwrap();
    let spent = Instant::now();
    let said = keyed.wait_time(&ada, 9).unwrap();
    let truth = Duration::from_millis(900).saturating_sub(spent.elapsed());
    near(said, truth, 150, "keyed, 9 after 9");

    // The long rate binds. Three takes of 9 at once, each when due: at 0,
    // 0.9 s and 1.8 s, after which the short rate has room for 9 at 2.7 s
    // and for 1 at 1.9 s, the long one (200 ms intervals) for 9 only at
    // 3.4 s and for 1 at 1.8 s.
    let tank = store
        .tank("due-long", rate("10/s"))
        .also(rate("20/4s"))
        .build()
        .await
        .unwrap();
    assert_eq!(tank.capacity(), 9);
    for _ in 0..3 {
        tank.await_fuel_n(9).await.unwrap();
    }
    let spent = Instant::now();
    let said_one = tank.wait_time(1).unwrap();
    let said = tank.wait_time(9).unwrap();
    let truth = Duration::from_millis(1600).saturating_sub(spent.elapsed());
    near(
        said_one,
        Duration::from_millis(100),
        50,
        "global, 1 after 27",
    );
    near(said, truth, 150, "global, 9 after 27");
    let started = Instant::now();
    tank.await_fuel_n(9).await.unwrap();
    // Waited: not much shorter than said; longer by as much as a loaded
    // machine wakes the waiter late, which says nothing of `wait_time`.
    near(
        said,
        started.elapsed().min(said),
        150,
        "global, 9 after 27 (waited)",
    );
    assert!(wrong.is_empty(), "wait_time off the truth: {wrong:#?}");
}
