//! Global and keyed tanks on a real Redis, one instance (or two stores as
//! two instances): bad input, names shared with other parameters,
//! `set_rate`, expiry, extreme arguments, cancel safety, round trips.

mod common;

use std::future::Future;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use common::{RedisServer, free_port};
use fueltank::{Hardcap, Rate};
use fueltank_redis::{Error, GlobalTank, MAX_KEY_LEN, RedisStore};

fn rate(s: &str) -> Rate {
    s.parse().unwrap()
}

/// Polls `future` once; whether it finished.
fn poll_once<F: Future>(future: std::pin::Pin<&mut F>) -> bool {
    let mut cx = Context::from_waker(Waker::noop());
    matches!(future.poll(&mut cx), Poll::Ready(_))
}

/// Waits until `done()` or `limit` passes; whether it became true.
async fn eventually(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while !done() {
        if started.elapsed() > limit {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    true
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

#[tokio::test]
async fn malformed_urls_are_errors_that_say_what_is_accepted() {
    for url in ["http://localhost", "redis://", "not a url", ""] {
        let err = RedisStore::connect(url).await.unwrap_err();
        assert!(matches!(err, Error::InvalidUrl { .. }), "{url:?}: {err:?}");
        assert!(err.to_string().contains("redis://"), "{err}");
    }
    // The password never shows.
    let err = RedisStore::connect("redis://me:hunter2@127.0.0.1:1/x")
        .await
        .unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

#[tokio::test]
async fn an_unreachable_server_fails_within_the_connect_timeout() {
    let url = format!("redis://127.0.0.1:{}", free_port());
    let started = Instant::now();
    let err = RedisStore::builder(&url)
        .connect_timeout(Duration::from_millis(300))
        .connect()
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert!(matches!(err, Error::Unreachable { .. }), "{err:?}");
    assert!(err.to_string().contains("cannot connect"), "{err}");
    // Bounded: the timeout, with room for a loaded machine.
    assert!(took < Duration::from_secs(3), "{took:?}");
}

#[tokio::test]
async fn bad_options_are_errors() {
    let redis = RedisServer::start();
    let url = redis.url();
    for (builder, option) in [
        (RedisStore::builder(&url).timeout(Duration::ZERO), "timeout"),
        (RedisStore::builder(&url).timeout(Duration::MAX), "timeout"),
        (
            RedisStore::builder(&url).connect_timeout(Duration::ZERO),
            "connect_timeout",
        ),
    ] {
        match builder.connect().await {
            Err(Error::InvalidOption { option: o, .. }) => assert_eq!(o, option),
            other => panic!("{option}: {other:?}"),
        }
    }
    for share in [0.0, -1.0, 1.5, f64::NAN] {
        let err = RedisStore::builder(&url)
            .on_failure(fueltank_redis::FailurePolicy::Local(share))
            .connect()
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::InvalidOption { .. }),
            "{share}: {err:?}"
        );
    }
    let store = store(&redis).await;
    let r = rate("10/s");
    for result in [
        store.tank("t", r).max_batch(0).build().await,
        store.tank("t", r).max_batch(u64::MAX).build().await,
        store
            .tank("t", r)
            .reserve_ahead(Duration::ZERO)
            .build()
            .await,
        store
            .tank("t", r)
            .reserve_ahead(Duration::MAX)
            .build()
            .await,
        store.tank("t", r).hold(Duration::ZERO).build().await,
        store
            .tank("t", r)
            .hold(Duration::from_secs(2))
            .build()
            .await,
    ] {
        assert!(
            matches!(result, Err(Error::InvalidOption { .. })),
            "{result:?}"
        );
    }
    let long = Rate::new(1, Duration::from_secs(100 * 86_400)).unwrap();
    let err = store.tank("t", long).build().await.unwrap_err();
    assert!(matches!(err, Error::UnsupportedRate { .. }), "{err:?}");
    let err = store
        .keyed::<u8>("k", r)
        .max_keys(0)
        .build()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidOption {
                option: "max_keys",
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn names_must_fit_in_a_redis_key() {
    let redis = RedisServer::start();
    let store = store(&redis).await;
    let r = rate("10/s");
    for name in ["", "tab\there", &"x".repeat(201)] {
        let err = store.tank(name, r).build().await.unwrap_err();
        assert!(
            matches!(err, Error::InvalidName { .. }),
            "{name:?}: {err:?}"
        );
        assert!(err.to_string().contains("no control characters"), "{err}");
        let err = store.keyed::<String>(name, r).build().await.unwrap_err();
        assert!(
            matches!(err, Error::InvalidName { .. }),
            "{name:?}: {err:?}"
        );
    }
    // Anything else goes: ':', braces, '%', spaces, unicode, 200 bytes.
    for name in [
        "api:v1",
        "{x}",
        "%3A",
        "with space",
        "ünïcödé",
        &"x".repeat(200),
    ] {
        store.tank(name, r).build().await.unwrap();
        store.keyed::<String>(name, r).build().await.unwrap();
    }
}

/// Whether `tank` grants one more to `key` within 1 s (a cold key's round
/// trip on a loaded machine; at 1/min a second grant takes a minute).
async fn grants(tank: &fueltank_redis::GlobalKeyedTank<String>, key: &str) -> bool {
    tank.await_fuel_timeout(key.to_string(), Duration::from_secs(1))
        .await
}

#[tokio::test]
async fn every_name_and_key_has_redis_keys_of_its_own() {
    let redis = RedisServer::start();
    let store = store(&redis).await;
    let once = rate("1/min");
    // Pairs whose names and keys run together the same way: each pair is
    // two tanks (each grants its one), never one.
    let pairs = [
        (("a:b", "c"), ("a", "b:c")),
        (("a", "b}c"), ("a}", "bc")),
        (("%3A", "x"), (":", "x")),
        (("a{", "b"), ("a", "{b")),
    ];
    for ((name_1, key_1), (name_2, key_2)) in pairs {
        let one = store.keyed::<String>(name_1, once).build().await.unwrap();
        let two = store.keyed::<String>(name_2, once).build().await.unwrap();
        assert!(grants(&one, key_1).await, "{name_1:?} {key_1:?}");
        assert!(grants(&two, key_2).await, "{name_2:?} {key_2:?}");
        assert!(!grants(&one, key_1).await, "{name_1:?} {key_1:?} twice");
    }
    // A global tank and a keyed tank of one name are two tanks too.
    let global = store.tank("same", once).build().await.unwrap();
    let keyed = store.keyed::<String>("same", once).build().await.unwrap();
    assert!(global.await_fuel_timeout(Duration::from_secs(1)).await);
    assert!(grants(&keyed, "s").await);

    // Another prefix: other keys, other tanks, under that prefix alone.
    let other = RedisStore::builder(&redis.url())
        .prefix("billing:v2")
        .connect()
        .await
        .unwrap();
    let theirs = other.tank("same", once).build().await.unwrap();
    assert!(theirs.await_fuel_timeout(Duration::from_secs(1)).await);
    let keys = redis.command("KEYS billing:v2:*");
    assert!(keys.contains("billing:v2:{same}:s"), "{keys}");
    let keys = redis.command("KEYS *");
    assert!(
        keys.lines()
            .filter(|line| !line.starts_with('*') && !line.starts_with('$'))
            .all(|key| key.starts_with("fueltank:") || key.starts_with("billing:v2:")),
        "{keys}"
    );
    for prefix in ["", "a{b", "}", "tab\t", &"p".repeat(101)] {
        let err = RedisStore::builder(&redis.url())
            .prefix(prefix)
            .connect()
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::InvalidOption {
                    option: "prefix",
                    ..
                }
            ),
            "{prefix:?}: {err:?}"
        );
        assert!(err.to_string().contains("without '{', '}'"), "{err}");
    }
}

#[tokio::test]
async fn a_name_stored_with_other_parameters_is_an_error() {
    let redis = RedisServer::start();
    // Two stores: two instances.
    let (a, b) = (store(&redis).await, store(&redis).await);
    a.tank("api", rate("100/s")).build().await.unwrap();
    let err = b.tank("api", rate("200/s")).build().await.unwrap_err();
    match &err {
        Error::Mismatch {
            name,
            stored,
            given,
        } => {
            assert_eq!(name, "api");
            assert!(stored.contains("100/s"), "{stored}");
            assert!(given.contains("200/s"), "{given}");
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("set_rate"), "{err}");
    let err = b
        .tank("api", rate("100/s"))
        .hardcap(Hardcap::Window)
        .build()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Mismatch { .. }), "{err:?}");
    let err = b
        .tank("api", rate("100/s"))
        .hold(Duration::from_millis(5))
        .build()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Mismatch { .. }), "{err:?}");
    // The same parameters share the tank.
    b.tank("api", rate("100/s")).build().await.unwrap();

    a.keyed::<String>("per-user", rate("10/s"))
        .build()
        .await
        .unwrap();
    let err = b
        .keyed::<String>("per-user", rate("10/min"))
        .build()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Mismatch { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_rate_reaches_every_instance_and_keeps_the_level() {
    let redis = RedisServer::start();
    let (a, b) = (store(&redis).await, store(&redis).await);
    let on_a = a.tank("shared", rate("1000/s")).build().await.unwrap();
    let on_b = b.tank("shared", rate("1000/s")).build().await.unwrap();
    on_a.set_rate(rate("10/s")).await.unwrap();
    assert_eq!(on_a.rate(), rate("10/s"));
    // B learns it at its next round trip.
    on_b.await_fuel().await;
    assert_eq!(on_b.rate(), rate("10/s"));
    // A new instance must ask for the new rate.
    let err = b.tank("shared", rate("1000/s")).build().await.unwrap_err();
    assert!(matches!(err, Error::Mismatch { .. }), "{err:?}");
    b.tank("shared", rate("10/s")).build().await.unwrap();
    // No burst: the full bank of 1000/s (900) became a full bank of 10/s
    // (9, hold 100 ms); B took one. Within a second nobody gets more than
    // the bank and a second's refill.
    let started = Instant::now();
    let mut got = 0;
    while started.elapsed() < Duration::from_millis(500) {
        if on_a.await_fuel_timeout(Duration::from_millis(50)).await {
            got += 1;
        }
    }
    assert!(got <= 9 + 5 + 1, "{got} grants in 0.5 s at 10/s");
    assert!(got >= 5, "{got}");

    let keyed_a = a
        .keyed::<String>("keys", rate("1000/s"))
        .build()
        .await
        .unwrap();
    let keyed_b = b
        .keyed::<String>("keys", rate("1000/s"))
        .build()
        .await
        .unwrap();
    keyed_b.await_fuel("k".to_string()).await.unwrap();
    keyed_a.set_rate(rate("5/s")).await.unwrap();
    // B learns it at its next check of the tank's parameters (a second
    // after its last), made alongside a key's round trip.
    common::until_keyed_rate(&keyed_b, rate("5/s"), (0..).map(|i| format!("new-{i}"))).await;
    // A key B used at the old rate is converted: no burst of 1000/s.
    let started = Instant::now();
    let mut got = 0;
    while started.elapsed() < Duration::from_millis(500) {
        if keyed_b
            .await_fuel_timeout("k".to_string(), Duration::from_millis(50))
            .await
        {
            got += 1;
        }
    }
    assert!(got <= 4 + 3 + 1, "{got} grants in 0.5 s at 5/s");
}

/// Takes one fuel from `tank` with `await_fuel_n` (which may fail) until it
/// fails, within 5 s; its error.
async fn first_error(tank: &GlobalTank) -> Error {
    let started = Instant::now();
    loop {
        let taken = tokio::time::timeout(Duration::from_secs(1), tank.await_fuel_n(1)).await;
        if let Ok(Err(err)) = taken {
            return err;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "no error in 5 s; rate {}",
            tank.rate()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_made_again_by_another_limit_is_an_error_never_adopted() {
    let redis = RedisServer::start();
    let (a, b) = (store(&redis).await, store(&redis).await);
    let on_a = a.tank("api", rate("10/s")).build().await.unwrap();
    on_a.await_fuel().await;
    let keyed_a = a.keyed::<u32>("per", rate("10/s")).build().await.unwrap();
    keyed_a.await_fuel(1).await.unwrap();
    // The state is lost (as after 2.6 s idle, or a restart): the name is
    // free, and another limit takes it.
    redis.command("FLUSHALL");
    let on_b = b.tank("api", rate("20/s")).build().await.unwrap();
    let keyed_b = b.keyed::<u32>("per", rate("20/s")).build().await.unwrap();
    keyed_b.await_fuel(1).await.unwrap();

    // A's next round trips: an error naming both, never B's rate.
    match first_error(&on_a).await {
        Error::Mismatch {
            name,
            stored,
            given,
        } => {
            assert_eq!(name, "api");
            assert!(stored.contains("20/s"), "{stored}");
            assert!(given.contains("10/s"), "{given}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(on_a.rate(), rate("10/s"));
    assert!(!on_a.await_fuel_timeout(Duration::from_millis(200)).await);
    let started = Instant::now();
    let err = loop {
        match tokio::time::timeout(Duration::from_secs(1), keyed_a.await_fuel(1)).await {
            Ok(Err(err)) => break err,
            _ => assert!(started.elapsed() < Duration::from_secs(5), "no error"),
        }
    };
    assert!(matches!(err, Error::Mismatch { .. }), "{err:?}");
    assert_eq!(keyed_a.rate(), rate("10/s"));
    // Asked again (after the backoff): still not adopted.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(matches!(first_error(&on_a).await, Error::Mismatch { .. }));
    assert_eq!(on_a.rate(), rate("10/s"));
    assert!(a.stats().mismatches >= 2, "{:?}", a.stats());
    // B's limit is the one stored; B goes on at it.
    on_b.await_fuel().await;
    assert_eq!(on_b.rate(), rate("20/s"));
    assert_eq!(b.stats().mismatches, 0);

    // A's set_rate takes the name over: A is served again at once, and B
    // follows (a set made on the state B knows).
    on_a.set_rate(rate("10/s")).await.unwrap();
    assert!(on_a.await_fuel_timeout(Duration::from_millis(500)).await);
    on_b.await_fuel_n(1).await.unwrap();
    assert_eq!(on_b.rate(), rate("10/s"));
    // Once the name holds A's limit again, A is served again.
    redis.command("FLUSHALL");
    let _ = b.tank("api", rate("20/s")).build().await.unwrap();
    assert!(matches!(first_error(&on_a).await, Error::Mismatch { .. }));
    redis.command("FLUSHALL");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let started = Instant::now();
    while !on_a.await_fuel_timeout(Duration::from_millis(500)).await {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "A not served again"
        );
    }
    assert_eq!(on_a.rate(), rate("10/s"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_rate_reaches_instances_of_a_state_made_again_by_their_limit() {
    let redis = RedisServer::start();
    let (a, b) = (store(&redis).await, store(&redis).await);
    let on_a = a.tank("api", rate("10/s")).build().await.unwrap();
    on_a.await_fuel().await;
    let keyed_a = a.keyed::<u32>("per", rate("10/s")).build().await.unwrap();
    keyed_a.await_fuel(1).await.unwrap();
    // Lost, made again by the same limit, then changed on purpose before
    // A's next round trip.
    redis.command("FLUSHALL");
    let on_b = b.tank("api", rate("10/s")).build().await.unwrap();
    on_b.set_rate(rate("20/s")).await.unwrap();
    let keyed_b = b.keyed::<u32>("per", rate("10/s")).build().await.unwrap();
    keyed_b.set_rate(rate("20/s")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    on_a.await_fuel_n(1).await.unwrap();
    assert_eq!(on_a.rate(), rate("20/s"));
    // A keyed tank learns it at its next check of the tank's parameters
    // (a second after the last), never as a mismatch.
    common::until_keyed_rate(&keyed_a, rate("20/s"), 2..).await;
    // And then A's own set_rate reaches B.
    on_a.set_rate(rate("5/s")).await.unwrap();
    on_b.await_fuel_n(1).await.unwrap();
    assert_eq!(on_b.rate(), rate("5/s"));
    assert_eq!(a.stats().mismatches + b.stats().mismatches, 0);
}

#[tokio::test]
async fn every_redis_key_expires() {
    let redis = RedisServer::start();
    let store = store(&redis).await;
    let tank = store.tank("ttl", rate("10/s")).build().await.unwrap();
    tank.await_fuel().await;
    let window = store
        .tank("ttlw", rate("10/s"))
        .hardcap(Hardcap::Window)
        .build()
        .await
        .unwrap();
    window.await_fuel().await;
    let keyed = store
        .keyed::<String>("ttlk", rate("10/s"))
        .build()
        .await
        .unwrap();
    keyed.await_fuel("who".to_string()).await.unwrap();
    for key in [
        "fueltank:{ttl}:s",
        "fueltank:{ttlw}:s",
        "fueltank:{ttlw}:w",
        "fueltank:{ttlk}:p",
        "fueltank:{ttlk:who}:ks",
        // The askers: a second after the last ask.
        "fueltank:{ttl}:a",
        "fueltank:{ttlw}:a",
        "fueltank:{ttlk:who}:ka",
    ] {
        let answer = redis.command(&format!("PTTL {key}"));
        let ttl: i64 = answer.trim().trim_start_matches(':').parse().unwrap();
        // Full within a period here, plus a second (and a margin for the
        // keyed parameters).
        assert!(ttl > 0 && ttl <= 62_000, "{key}: PTTL {ttl}");
    }
    // Nothing without an expiry.
    let keys = redis.command("KEYS *");
    let count = keys.matches("fueltank:").count();
    assert_eq!(count, 8, "{keys}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extreme_arguments_never_panic() {
    let redis = RedisServer::start();
    let store = store(&redis).await;
    let tank = store.tank("extreme", rate("1000/s")).build().await.unwrap();
    assert!(tank.has_fuel_n(0));
    assert!(!tank.has_fuel_n(u64::MAX));
    assert_eq!(tank.wait_time(u64::MAX), None);
    assert_eq!(tank.wait_time(0), Some(Duration::ZERO));
    match tank.await_fuel_n(u64::MAX).await {
        Err(Error::ExceedsCapacity {
            requested,
            capacity,
        }) => {
            assert_eq!(requested, u64::MAX);
            assert_eq!(capacity, tank.capacity());
        }
        other => panic!("{other:?}"),
    }
    tank.await_fuel_n(0).await.unwrap();
    assert!(tank.await_fuel_timeout(Duration::MAX).await);
    // A zero timeout with nothing reserved: false at once.
    let empty = store
        .tank("extreme-one", rate("1/h"))
        .hardcap(Hardcap::One)
        .build()
        .await
        .unwrap();
    assert!(empty.await_fuel_timeout(Duration::MAX).await);
    let started = Instant::now();
    assert!(!empty.await_fuel_timeout(Duration::ZERO).await);
    assert!(!empty.await_fuel_timeout(Duration::from_millis(20)).await);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(empty.wait_time(1).is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_too_long_for_redis_get_no_fuel() {
    let redis = RedisServer::start();
    let store = store(&redis).await;
    let keyed = store
        .keyed::<String>("long", rate("100/s"))
        .build()
        .await
        .unwrap();
    let longest = "k".repeat(MAX_KEY_LEN);
    let too_long = "k".repeat(MAX_KEY_LEN + 1);
    keyed.await_fuel(longest.clone()).await.unwrap();
    assert!(!keyed.has_fuel(&too_long));
    assert_eq!(keyed.wait_time(&too_long, 1), None);
    let err = keyed.await_fuel(too_long.clone()).await.unwrap_err();
    assert_eq!(
        err,
        Error::InvalidKey {
            len: MAX_KEY_LEN + 1,
            max: MAX_KEY_LEN
        }
    );
    assert!(err.to_string().contains("at most 1024"), "{err}");
    assert!(
        !keyed
            .await_fuel_timeout(too_long, Duration::from_secs(1))
            .await
    );
    // Binary-safe otherwise: any text is a key.
    for key in ["", " ", "a:b:c", "ünï\ncode", "{tag}"] {
        keyed.await_fuel(key.to_string()).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_independent_and_bounded_in_memory() {
    let redis = RedisServer::start();
    let store = store(&redis).await;
    let keyed = store
        .keyed::<u32>("many", rate("2/s"))
        .hardcap(Hardcap::Window)
        .max_keys(64)
        .build()
        .await
        .unwrap();
    for key in 0..500u32 {
        keyed.await_fuel_n(key, 2).await.unwrap();
    }
    assert!(keyed.len() <= 64, "{} keys held", keyed.len());
    // Key 7 used both of its window: Redis says no, whoever asks.
    assert!(!keyed.await_fuel_timeout(7, Duration::from_millis(50)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_keys_is_an_exact_bound() {
    let redis = RedisServer::start();
    let store = store(&redis).await;
    for max_keys in [1, 17] {
        let keyed = store
            .keyed::<u32>(&format!("bound{max_keys}"), rate("100/s"))
            .max_keys(max_keys)
            .build()
            .await
            .unwrap();
        // One key at a time, each while the previous ones' drivers may
        // still be at work (their round trips, their reserved fuel).
        let mut most = 0;
        for key in 0..100u32 {
            keyed.await_fuel(key).await.unwrap();
            most = most.max(keyed.len());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            most <= max_keys,
            "max_keys({max_keys}) held {most} keys at once"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_key_costs_a_round_trip_per_grant_and_a_refused_one_waits() {
    let redis = RedisServer::start();
    let store = store(&redis).await;
    let keyed = store
        .keyed::<String>("cold", rate("100/s"))
        .build()
        .await
        .unwrap();
    let before = store.stats().round_trips;
    for i in 0..20 {
        keyed.await_fuel(format!("client-{i}")).await.unwrap();
    }
    let trips = store.stats().round_trips - before;
    assert_eq!(trips, 20, "one round trip per cold key");
    assert_eq!(
        store.stats().expired,
        0,
        "nothing reserved beyond the demand"
    );

    // A Window full for the next second: Redis answers when to ask again,
    // and `has_fuel` does not ask before then.
    let window = store
        .tank("refused", rate("5/s"))
        .hardcap(Hardcap::Window)
        .reserve_ahead(Duration::from_millis(100))
        .build()
        .await
        .unwrap();
    window.await_fuel_n(5).await.unwrap();
    assert!(!window.await_fuel_timeout(Duration::from_millis(20)).await);
    let before = store.stats().round_trips;
    let started = Instant::now();
    let mut calls = 0;
    while started.elapsed() < Duration::from_millis(200) {
        assert!(!window.has_fuel());
        calls += 1;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let trips = store.stats().round_trips - before;
    assert!(trips <= 1, "{trips} round trips for {calls} refused calls");
    let retry = window.wait_time(1).unwrap();
    assert!(retry > Duration::from_millis(300), "{retry:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_are_served_in_order_and_dropped_ones_stall_nobody() {
    let redis = RedisServer::start();
    let store = store(&redis).await;
    let tank = store
        .tank("line", rate("50/s"))
        .hardcap(Hardcap::One)
        .build()
        .await
        .unwrap();
    let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..6 {
        let (waiting, done) = (tank.clone(), order.clone());
        tasks.push(tokio::spawn(async move {
            waiting.await_fuel().await;
            done.lock().unwrap().push(i);
        }));
        // Each joins the line after the one before.
        assert!(
            eventually(Duration::from_secs(2), || tank.waiting()
                + order.lock().unwrap().len()
                > i)
            .await
        );
    }
    // Drop a waiter in the middle of the line: the others are still served.
    let dropped = {
        let mut wait = Box::pin(tank.await_fuel());
        let _ = poll_once(wait.as_mut());
        tank.waiting()
    };
    assert!(dropped >= 1);
    for task in tasks {
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("a waiter was stalled")
            .unwrap();
    }
    assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3, 4, 5]);
    assert!(eventually(Duration::from_secs(1), || tank.waiting() == 0).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuel_granted_to_a_dropped_future_goes_back() {
    let redis = RedisServer::start();
    let store = store(&redis).await;
    // One fuel every 100 ms once the bank is spent.
    let tank = store
        .tank("refund", rate("10/s"))
        .hardcap(Hardcap::Limit)
        .build()
        .await
        .unwrap();
    // Spend the bank. A first `has_fuel` finds nothing reserved yet and
    // says no while it asks Redis: spin until the next fuel is known to be
    // later.
    while tank.has_fuel() || tank.wait_time(1) == Some(Duration::ZERO) {}
    // Queue one, let the driver grant it, drop it unseen: its fuel goes
    // back to the reserve (the grant is taken back) and is spendable.
    let mut wait = Box::pin(tank.await_fuel());
    assert!(!poll_once(wait.as_mut()));
    assert!(eventually(Duration::from_secs(2), || tank.waiting() == 0).await);
    let granted = store.stats().granted;
    drop(wait);
    assert_eq!(store.stats().granted, granted - 1);
    assert!(tank.has_fuel(), "the dropped future's fuel came back");
    // Every future, dropped at any point, leaves the line.
    for _ in 0..20 {
        let mut wait = Box::pin(tank.await_fuel());
        let _ = poll_once(wait.as_mut());
        let mut timed = Box::pin(tank.await_fuel_timeout(Duration::from_secs(10)));
        let _ = poll_once(timed.as_mut());
        let mut n = Box::pin(tank.await_fuel_n(2));
        let _ = poll_once(n.as_mut());
    }
    assert_eq!(tank.waiting(), 0);
    assert!(
        tokio::time::timeout(Duration::from_secs(2), tank.await_fuel())
            .await
            .is_ok()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_tank_costs_under_a_round_trip_per_100_grants() {
    let redis = RedisServer::start();
    let store = store(&redis).await;
    let tank = store.tank("hot", rate("2000/s")).build().await.unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let tank = tank.clone();
            tokio::spawn(async move {
                for _ in 0..500 {
                    tank.await_fuel().await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let stats = store.stats();
    assert_eq!(stats.granted, 4000);
    assert!(stats.round_trips * 100 < stats.granted, "{stats:?}");
}

#[test]
fn waits_work_from_a_plain_thread_and_another_executor() {
    let redis = RedisServer::start();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let tank: GlobalTank = runtime.block_on(async {
        let store = store(&redis).await;
        store.tank("threads", rate("1000/s")).build().await.unwrap()
    });
    // The driver runs on the runtime; the waiting happens elsewhere.
    let waits: Vec<_> = (0..3)
        .map(|_| {
            let tank = tank.clone();
            std::thread::spawn(move || {
                futures::executor::block_on(async {
                    for _ in 0..50 {
                        tank.await_fuel().await;
                    }
                });
                let mut taken = 0;
                let started = Instant::now();
                while taken < 20 && started.elapsed() < Duration::from_secs(5) {
                    if tank.has_fuel() {
                        taken += 1;
                    }
                    std::thread::sleep(Duration::from_micros(200));
                }
                taken
            })
        })
        .collect();
    for wait in waits {
        assert_eq!(wait.join().unwrap(), 20);
    }
}

#[cfg(feature = "smol")]
#[test]
fn runs_under_smol() {
    let redis = RedisServer::start();
    smol::block_on(async {
        let store = store(&redis).await;
        let tank = store
            .tank("smol", rate("500/s"))
            .hardcap(Hardcap::Window)
            .build()
            .await
            .unwrap();
        for _ in 0..600 {
            tank.await_fuel().await;
        }
        assert!(store.stats().round_trips < 60, "{:?}", store.stats());
    });
}

#[test]
fn handles_are_send_and_sync() {
    fn send_sync<T: Send + Sync + Clone>() {}
    fn send<T: Send + 'static>() {}
    send_sync::<RedisStore>();
    send_sync::<GlobalTank>();
    send_sync::<fueltank_redis::GlobalKeyedTank<String>>();
    send::<fueltank_redis::AwaitGlobal>();
    send::<fueltank_redis::AwaitGlobal<Result<(), fueltank_redis::Error>>>();
    send::<fueltank_redis::AwaitGlobal<bool>>();
    send::<Error>();
}

/// Redis's schedule of a tank as `(tat, last)` in ns on Redis's clock: the
/// next slot's start and the time of the latest call.
fn schedule(redis: &RedisServer, key: &str) -> (i128, i128) {
    let answer = redis.command(&format!("HMGET {key} tat last"));
    let numbers: Vec<i128> = answer
        .lines()
        .filter_map(|line| line.trim().parse().ok())
        .collect();
    match numbers[..] {
        [tat, last] => (tat, last),
        _ => panic!("no schedule in {answer:?}"),
    }
}

/// A waiter on a slow tank waits for its slot: it never asks Redis again
/// and again for slots it cannot spend (a slot a minute off is farther
/// than the clocks may be trusted to agree), pushing the schedule on by a
/// minute per round trip — and every other instance's fuel with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_on_a_slow_tank_never_pushes_its_schedule_on() {
    let redis = RedisServer::start();
    let store = store(&redis).await;
    let slow = rate("1/min");
    for hardcap in [Hardcap::One, Hardcap::Limit] {
        let name = format!("slow-{hardcap:?}");
        let tank = store
            .tank(&name, slow)
            .hardcap(hardcap)
            .build()
            .await
            .unwrap();
        let keyed = store
            .keyed::<String>(&format!("{name}-keyed"), slow)
            .hardcap(hardcap)
            .build()
            .await
            .unwrap();
        assert!(tank.await_fuel_timeout(Duration::from_secs(1)).await);
        assert!(grants(&keyed, "k").await);
        let before = store.stats().round_trips;
        let (global_wait, keyed_wait) = futures::join!(
            tank.await_fuel_timeout(Duration::from_secs(2)),
            keyed.await_fuel_timeout("k".to_string(), Duration::from_secs(2)),
        );
        assert!(
            !global_wait && !keyed_wait,
            "{hardcap:?}: the next slot is a minute off"
        );
        let trips = store.stats().round_trips - before;
        assert!(
            trips <= 6,
            "{hardcap:?}: {trips} round trips while waiting 2 s for the next slot"
        );
        // Redis's next free slot: after the one the waiter reserved.
        for key in [
            format!("fueltank:{{{name}}}:s"),
            format!("fueltank:{{{name}-keyed:k}}:ks"),
        ] {
            let (tat, last) = schedule(&redis, &key);
            assert!(
                tat - last <= 121_000_000_000,
                "{hardcap:?}: {key}'s next slot is {} s off",
                (tat - last) / 1_000_000_000
            );
        }
    }
}

/// Two instances share a keyed tank with a burst and tiers by `rate_by`:
/// greedy waiters on both, on a partner key (50/s) and a user key (5/s),
/// never take more than either key's bound (its bank, the burst less the
/// hold, and its rate over the run; in any second, `burst + max_n − 1`
/// and one more for this machine's timing), and the partner gets its own
/// rate, beyond what 5/s could give. Another burst is another limit; a
/// rate the store cannot keep is that key's error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_with_burst_and_rate_by_keep_each_keys_bound() {
    let redis = RedisServer::start();
    let (a, b) = (store(&redis).await, store(&redis).await);
    let tier = |user: &String| match user.as_str() {
        "partner" => rate("50/s"),
        "absurd" => Rate::new(1, Duration::from_secs(100 * 86_400)).unwrap(),
        _ => rate("5/s"),
    };
    let build = |store: &RedisStore| {
        store
            .keyed::<String>("tiers", rate("5/s"))
            .burst(10)
            .rate_by(tier)
            .build()
    };
    let (one, two) = (build(&a).await.unwrap(), build(&b).await.unwrap());
    let err = b
        .keyed::<String>("tiers", rate("5/s"))
        .burst(20)
        .build()
        .await
        .unwrap_err();
    match &err {
        Error::Mismatch { stored, given, .. } => {
            assert!(stored.contains("burst 10"), "{stored}");
            assert!(given.contains("burst 20"), "{given}");
        }
        other => panic!("{other:?}"),
    }
    let run = Duration::from_secs(3);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for tank in [&one, &two] {
        for key in ["partner", "user"] {
            for _ in 0..2 {
                let (tank, key) = (tank.clone(), key.to_string());
                tasks.push(tokio::spawn(async move {
                    let mut grants = Vec::new();
                    while started.elapsed() < run {
                        tank.await_fuel(key.clone()).await.unwrap();
                        grants.push(started.elapsed());
                    }
                    (key, grants)
                }));
            }
        }
    }
    let (mut partner, mut user) = (Vec::new(), Vec::new());
    for task in tasks {
        let (key, grants) = task.await.unwrap();
        match key.as_str() {
            "partner" => partner.extend(grants),
            _ => user.extend(grants),
        }
    }
    // (max_n, bank: the burst less the 100 ms hold's intervals)
    for (name, grants, max_n, bank) in [("partner", &mut partner, 50, 5), ("user", &mut user, 5, 9)]
    {
        grants.sort();
        let last = grants.last().copied().unwrap_or_default().as_secs_f64();
        let bound = bank + (max_n as f64 * last) as usize + 1;
        assert!(
            grants.len() <= bound,
            "{name}: {} grants, bound {bound}",
            grants.len()
        );
        for (i, &from) in grants.iter().enumerate() {
            let within = grants[i..]
                .iter()
                .take_while(|&&t| t < from + Duration::from_secs(1))
                .count();
            assert!(
                within <= 10 + max_n,
                "{name}: {within} grants in a second from {from:?}"
            );
        }
        println!(
            "{name}: {} grants in {last:.2} s (bound {bound})",
            grants.len()
        );
    }
    assert!(
        partner.len() > 9 + 5 * 4,
        "the partner's own rate: {} grants",
        partner.len()
    );
    assert!(
        user.len() >= 9 + 5,
        "the user was served: {} grants",
        user.len()
    );
    let absurd = "absurd".to_string();
    assert!(!one.has_fuel(&absurd));
    match one.await_fuel(absurd).await {
        Err(err @ Error::UnsupportedRate { .. }) => {
            assert!(err.to_string().contains("at most 2^52 ns"), "{err}")
        }
        other => panic!("{other:?}"),
    }
}

/// The `TankConfig` a local tank is built from builds tanks in Redis too:
/// rate, hardcap, burst, per-key rates, `also` (per key too); what Redis
/// does not take is an
/// `Err` saying which option.
#[cfg(feature = "serde")]
#[tokio::test]
async fn tanks_from_a_services_configuration() {
    let redis = RedisServer::start();
    let store = store(&redis).await;
    let api: fueltank::TankConfig =
        serde_json::from_str(r#"{"rate": "10/s", "burst": 20}"#).unwrap();
    let tank = store
        .tank_config("api", &api)
        .unwrap()
        .build()
        .await
        .unwrap();
    // The burst, less what a reservation holds: not the rate's 10.
    assert!((15..=20).contains(&tank.capacity()), "{}", tank.capacity());
    let per_ip: fueltank::TankConfig =
        serde_json::from_str(r#"{"rate": "5/s", "keys": {"partner": "50/s"}}"#).unwrap();
    let keyed = store
        .keyed_config::<String>("per-ip", &per_ip)
        .unwrap()
        .build()
        .await
        .unwrap();
    // What each key grants at once: the partner's own rate banks 50, the
    // user's (the tank's) 5.
    let mut at_once = Vec::new();
    for key in ["ada", "partner"] {
        let mut granted = 0;
        while granted < 30
            && keyed
                .await_fuel_timeout(key.to_string(), Duration::from_millis(50))
                .await
        {
            granted += 1;
        }
        at_once.push(granted);
    }
    assert!(at_once[0] <= 6 && at_once[1] > 10, "at once: {at_once:?}");
    let two: fueltank::TankConfig =
        serde_json::from_str(r#"{"rate": "10/s", "also": ["100/min"]}"#).unwrap();
    let tank = store
        .tank_config("two", &two)
        .unwrap()
        .build()
        .await
        .unwrap();
    assert_eq!(fueltank::Budget::rates(&tank).len(), 2);
    for (text, option) in [
        (r#"{"rate": "10/s", "initial": 1}"#, "`initial`"),
        (r#"{"rate": "10/s", "max_keys": 10}"#, "`max_keys`"),
    ] {
        let config: fueltank::TankConfig = serde_json::from_str(text).unwrap();
        let err = store.tank_config("other", &config).unwrap_err();
        assert!(err.to_string().contains(option), "{text}: {err}");
    }
    // The same per key: every key keeps both rates.
    let per_user = store
        .keyed_config::<u32>("two-per-user", &two)
        .unwrap()
        .build()
        .await
        .unwrap();
    assert!(per_user.await_fuel(7).await.is_ok());
    assert_eq!(fueltank::KeyedBudget::rates(&per_user, &7).len(), 2);
    let config: fueltank::TankConfig =
        serde_json::from_str(r#"{"rate": "10/s", "initial": 1}"#).unwrap();
    let err = store.keyed_config::<u32>("other", &config).unwrap_err();
    assert!(err.to_string().contains("`initial`"), "{err}");
}
