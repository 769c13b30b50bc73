//! `GlobalKeyedTankBuilder::also`: several rates on every key of a Redis
//! keyed tank, each key's rates decided together by the script.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{RedisServer, densest};
use fueltank::{Hardcap, KeyedBudget, Rate};
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
        for limit in [long, short] {
            let most = densest(stamps, limit.per() - limit.per() / 15);
            let bound = 2 * limit.max_n() as usize - 1;
            println!("{key} {limit}: densest window {most} (bound {bound}), {total} grants");
            assert!(
                most <= bound,
                "{key} {limit}: {most} grants in a window, bound {bound}"
            );
        }
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
    assert_eq!(KeyedBudget::capacity(&second), 4);
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
