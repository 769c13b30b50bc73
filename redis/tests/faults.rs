//! Redis stopped in the middle of a run and started again on the same port,
//! empty: each failure policy does what it says, nothing panics, no waiter
//! is stuck, and `Closed` invents no fuel.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::RedisServer;
use fueltank::Rate;
use fueltank_redis::{FailurePolicy, GlobalTank, RedisStore};

fn rate(s: &str) -> Rate {
    s.parse().unwrap()
}

async fn store(redis: &RedisServer, policy: FailurePolicy) -> RedisStore {
    RedisStore::builder(&redis.url())
        .timeout(Duration::from_millis(250))
        .on_failure(policy)
        .connect()
        .await
        .unwrap()
}

/// Greedy waiters on `tank`, counting their grants, until the returned
/// flag is set.
fn greedy(tank: &GlobalTank, tasks: usize) -> (Arc<AtomicU64>, Arc<std::sync::atomic::AtomicBool>) {
    let count = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    for _ in 0..tasks {
        let (tank, count, stop) = (tank.clone(), count.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if tank.await_fuel_timeout(Duration::from_millis(100)).await {
                    count.fetch_add(1, Ordering::Relaxed);
                }
                // Under `Open` every wait is ready at once: let the test run.
                tokio::task::yield_now().await;
            }
        });
    }
    (count, stop)
}

/// Waits until Redis is known to be down and `tank` holds no reserved
/// fuel (at most a batch and a half of `reserve_ahead`, 500 ms, of the
/// rate, each held at most `hold`, 100 ms), and grants seen meanwhile have
/// been counted.
async fn drain(tank: &GlobalTank, store: &RedisStore) {
    let started = Instant::now();
    while tank.reserved() > 0 || store.is_reachable() {
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "reserved fuel outlived its hold: {} held, reachable: {}",
            tank.reserved(),
            store.is_reachable()
        );
        sleep(10).await;
    }
    sleep(150).await;
}

async fn sleep(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_grants_nothing_unreserved_and_serves_waiters_once_back() {
    let mut redis = RedisServer::start();
    let store = store(&redis, FailurePolicy::Closed).await;
    let tank = store.tank("closed", rate("200/s")).build().await.unwrap();
    let (count, stop) = greedy(&tank, 4);
    sleep(300).await;
    assert!(count.load(Ordering::Relaxed) > 0);

    redis.stop();
    let at_stop = store.stats();
    // Reserved fuel is spent (it was granted by Redis); then nothing.
    drain(&tank, &store).await;
    let settled = count.load(Ordering::Relaxed);
    sleep(500).await;
    let down = store.stats();
    assert_eq!(
        count.load(Ordering::Relaxed),
        settled,
        "grants while Redis was down"
    );
    assert!(!tank.has_fuel());
    assert!(!store.is_reachable());
    assert!(down.store_errors > 0, "{down:?}");
    assert_eq!(down.policy_grants, 0);
    assert!(down.policy_refusals > 0 || tank.waiting() > 0, "{down:?}");
    assert_eq!(
        down.reserved, at_stop.reserved,
        "nothing reserved while down"
    );
    assert!(down.granted <= down.reserved, "{down:?}");
    assert!(tank.waiting() > 0, "the waiters keep waiting");

    // Back, empty: the waiters are served, the tank carries on.
    redis.restart();
    let started = Instant::now();
    while count.load(Ordering::Relaxed) < settled + 100 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "waiters not served after Redis came back: {:?}",
            store.stats()
        );
        sleep(10).await;
    }
    assert!(store.is_reachable());
    stop.store(true, Ordering::Relaxed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_grants_everything_while_down() {
    let mut redis = RedisServer::start();
    let store = store(&redis, FailurePolicy::Open).await;
    let tank = store.tank("open", rate("100/s")).build().await.unwrap();
    let (count, stop) = greedy(&tank, 2);
    sleep(200).await;
    redis.stop();
    drain(&tank, &store).await;
    let before = count.load(Ordering::Relaxed);
    let policy_before = store.stats().policy_grants;
    sleep(300).await;
    let during = count.load(Ordering::Relaxed) - before;
    // Far beyond 100/s: 30 in 300 ms would be the rate.
    assert!(during > 300, "{during} grants in 300 ms under Open");
    assert!(tank.has_fuel());
    let stats = store.stats();
    assert!(stats.policy_grants - policy_before >= during, "{stats:?}");

    redis.restart();
    let started = Instant::now();
    while !store.is_reachable() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            store.stats()
        );
        sleep(10).await;
    }
    // Limited again: the policy grants no more.
    sleep(300).await;
    let policy = store.stats().policy_grants;
    sleep(300).await;
    assert_eq!(store.stats().policy_grants, policy);
    stop.store(true, Ordering::Relaxed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_falls_back_to_a_share_of_the_rate() {
    let mut redis = RedisServer::start();
    let store = store(&redis, FailurePolicy::Local(0.5)).await;
    let tank = store.tank("local", rate("100/s")).build().await.unwrap();
    let (count, stop) = greedy(&tank, 2);
    sleep(200).await;
    redis.stop();
    drain(&tank, &store).await;
    let before = count.load(Ordering::Relaxed);
    sleep(1000).await;
    let during = count.load(Ordering::Relaxed) - before;
    // A local tank at 50/s: about 50 in a second.
    assert!(
        (30..=70).contains(&during),
        "{during} grants in 1 s at half of 100/s"
    );
    assert!(store.stats().policy_grants > 0);
    redis.restart();
    let started = Instant::now();
    while !store.is_reachable() {
        assert!(started.elapsed() < Duration::from_secs(5));
        sleep(10).await;
    }
    stop.store(true, Ordering::Relaxed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_scales_a_rate_below_one_per_period() {
    // The docs' four instances, a quarter each, of one per 100 ms: one per
    // 400 ms each while Redis is gone, not one per 100 ms.
    let mut redis = RedisServer::start();
    let store = store(&redis, FailurePolicy::Local(0.25)).await;
    let tank = store
        .tank("quarter", rate("1/100ms"))
        .build()
        .await
        .unwrap();
    let count = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let greedy = {
        let (tank, count, stop) = (tank.clone(), count.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if tank.has_fuel() {
                    count.fetch_add(1, Ordering::Relaxed);
                }
                sleep(1).await;
            }
        })
    };
    sleep(300).await;
    redis.stop();
    drain(&tank, &store).await;
    let before = count.load(Ordering::Relaxed);
    let started = Instant::now();
    sleep(3000).await;
    let during = count.load(Ordering::Relaxed) - before;
    let elapsed = started.elapsed();
    // 7.5 in 3 s (and one more if a grant's time falls at both ends); a
    // stalled loop loses some, but not half.
    let most = 2 + (elapsed.as_millis() / 400) as u64;
    assert!(
        (4..=most).contains(&during),
        "{during} grants in {elapsed:?} at a quarter of 1/100ms (at most {most})"
    );
    stop.store(true, Ordering::Relaxed);
    greedy.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_tanks_and_has_fuel_carry_on_after_a_restart() {
    let mut redis = RedisServer::start();
    let store = store(&redis, FailurePolicy::Closed).await;
    let keyed = store
        .keyed::<u32>("restart", rate("1000/s"))
        .build()
        .await
        .unwrap();
    for key in 0..10 {
        keyed.await_fuel(key).await.unwrap();
    }
    redis.stop();
    // Nothing is stuck: a timed wait gives up in time, has_fuel answers.
    let started = Instant::now();
    assert!(
        !keyed
            .await_fuel_timeout(99, Duration::from_millis(200))
            .await
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(!keyed.has_fuel(&98));
    redis.restart();
    // Redis forgot the script and every key: both come back.
    for key in 0..10 {
        tokio::time::timeout(Duration::from_secs(5), keyed.await_fuel(key))
            .await
            .expect("a key stuck after the restart")
            .unwrap();
    }
    assert!(store.is_reachable());
}
