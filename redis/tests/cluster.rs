//! Tanks on a real Redis Cluster: three masters started here (see
//! `common`), several stores (instances) seeded by different nodes.
//!
//! - Greedy tasks on three stores share a global `Limit` tank and a keyed
//!   `Limit` tank: no window of the period sees more than the bound
//!   (`2·max_n − 1`) over all stores together, and the tanks are not
//!   starved either.
//! - A global tank's keys share one slot (one master); a keyed tank's keys
//!   are spread over the three masters.
//! - `set_rate` and mismatches across instances, as on one server.
//! - A master that stops answering puts its own keys under the failure
//!   policy, and no other.
//! - The same under smol.
//!
//! Grants are stamped on this process's clock when the waiter sees them,
//! up to a scheduling delay after Redis's slot for them: windows are
//! shrunk by that allowance, so that a count over the bound is one.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{RedisCluster, RedisServer, command, densest};
use fueltank::{Hardcap, KeyedBudget, Rate};
use fueltank_redis::{Error, FailurePolicy, RedisStore};

const RUN: Duration = Duration::from_secs(2);
const SCHEDULING_ALLOWANCE: Duration = Duration::from_millis(50);

fn rate(s: &str) -> Rate {
    s.parse().unwrap()
}

/// A store on the Cluster seeded by `seeds`, with room for a loaded
/// machine: a round trip may take 1 s before it counts as a failure.
async fn store(seeds: &[String]) -> RedisStore {
    RedisStore::builder_cluster(seeds)
        .timeout(Duration::from_secs(1))
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .unwrap()
}

/// The keys of `pattern` held by the master at `port`.
fn keys_on(port: u16, pattern: &str) -> Vec<String> {
    command(port, &format!("KEYS {pattern}"))
        .lines()
        .filter(|line| !line.starts_with('*') && !line.starts_with('$'))
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_share_tanks_within_their_bound_and_keys_spread() {
    let cluster = RedisCluster::start();
    let urls = cluster.urls();
    // Three instances, each seeded by one node only.
    let mut stores = Vec::new();
    for url in &urls {
        stores.push(store(std::slice::from_ref(url)).await);
    }
    let global_rate = rate("500/s");
    let key_rate = rate("100/s");
    let stamps = Arc::new(Mutex::new(Vec::new()));
    let key_stamps = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let mut tasks = Vec::new();
    let mut keyed = Vec::new();
    for store in &stores {
        let api = store.tank("api:v1", global_rate).build().await.unwrap();
        let per_user = store
            .keyed::<String>("per-user", key_rate)
            .hardcap(Hardcap::Limit)
            .build()
            .await
            .unwrap();
        for _ in 0..4 {
            let (api, stamps) = (api.clone(), stamps.clone());
            tasks.push(tokio::spawn(async move {
                while started.elapsed() < RUN {
                    api.await_fuel().await;
                    stamps.lock().unwrap().push(Instant::now());
                }
            }));
            let (per_user, key_stamps) = (per_user.clone(), key_stamps.clone());
            tasks.push(tokio::spawn(async move {
                while started.elapsed() < RUN {
                    per_user.await_fuel("alice".to_string()).await.unwrap();
                    key_stamps.lock().unwrap().push(Instant::now());
                }
            }));
        }
        keyed.push(per_user);
    }
    for task in tasks {
        task.await.unwrap();
    }
    // Keys that spread over the masters (each lives a second or so).
    for i in 0..30 {
        keyed[i % 3].await_fuel(format!("user-{i}")).await.unwrap();
    }
    let window = Duration::from_secs(1) - SCHEDULING_ALLOWANCE;
    for (what, stamps, limit) in [
        ("global 500/s", stamps, global_rate),
        ("key of 100/s", key_stamps, key_rate),
    ] {
        let mut stamps = stamps.lock().unwrap().clone();
        let most = densest(&mut stamps, window);
        let bound = 2 * limit.max_n() as usize - 1;
        // Over 2 s: the bank and two seconds' rate, less what the batches
        // in flight hold; at least a second's rate.
        println!(
            "{what}: {} grants in {RUN:?} over 3 instances, densest window {most} (bound {bound})",
            stamps.len()
        );
        assert!(
            most <= bound,
            "{what}: {most} grants in a window, bound {bound}"
        );
        assert!(
            stamps.len() as u64 >= limit.max_n(),
            "{what}: only {} grants in {RUN:?}",
            stamps.len()
        );
    }
    let mut trips = 0;
    for store in &stores {
        let stats = store.stats();
        assert_eq!(stats.mismatches, 0, "{stats:?}");
        trips += stats.round_trips;
    }
    println!("{trips} round trips in all");

    // The global tank's keys share one slot, on one master.
    let slot = |key: &str| command(cluster.ports[0], &format!("CLUSTER KEYSLOT {key}"));
    assert_eq!(slot("fueltank:{api%3Av1}:s"), slot("fueltank:{api%3Av1}:w"));
    let holders: Vec<_> = cluster
        .ports
        .iter()
        .filter(|&&port| !keys_on(port, "fueltank:{api*").is_empty())
        .collect();
    assert_eq!(holders.len(), 1, "the global tank's keys on {holders:?}");
    // A keyed tank's keys are on every master.
    for &port in &cluster.ports {
        let keys = keys_on(port, "fueltank:{per-user:*");
        assert!(
            !keys.is_empty(),
            "no key of the keyed tank on the master at {port}"
        );
        println!("master {port}: {} keys of the keyed tank", keys.len());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_rate_and_mismatches_reach_every_instance() {
    let cluster = RedisCluster::start();
    let urls = cluster.urls();
    let (a, b) = (store(&urls[..1]).await, store(&urls[1..]).await);
    a.tank("api", rate("100/s")).build().await.unwrap();
    let err = b.tank("api", rate("200/s")).build().await.unwrap_err();
    assert!(matches!(err, Error::Mismatch { .. }), "{err:?}");
    let keyed_a = a.keyed::<u32>("per", rate("100/s")).build().await.unwrap();
    let keyed_b = b.keyed::<u32>("per", rate("100/s")).build().await.unwrap();
    let err = b
        .keyed::<u32>("per", rate("1/s"))
        .build()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Mismatch { .. }), "{err:?}");
    for key in 0..10 {
        keyed_b.await_fuel(key).await.unwrap();
    }
    keyed_a.set_rate(rate("5/s")).await.unwrap();
    // B learns it within a check (a second), and converts its keys.
    common::until_keyed_rate(&keyed_b, rate("5/s"), 10..).await;
    // Key 0 was used at 100/s: now its bank is that of 5/s (4).
    let mut got = 0;
    while keyed_b
        .await_fuel_timeout(0, Duration::from_millis(20))
        .await
    {
        got += 1;
        assert!(got <= 5, "key 0 still at 100/s");
    }
    assert!(b.stats().store_errors == 0, "{:?}", b.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_master_leaves_the_keys_of_the_others_alone() {
    // A node timeout longer than the test: the Cluster never marks the
    // stopped master failed (then every node would refuse, CLUSTERDOWN).
    let mut cluster = RedisCluster::start_with(0, 60_000);
    let store = RedisStore::builder_cluster(cluster.urls())
        .timeout(Duration::from_millis(300))
        .connect_timeout(Duration::from_secs(5))
        .on_failure(FailurePolicy::Closed)
        .connect()
        .await
        .unwrap();
    let keyed = store
        .keyed::<u32>("shards", rate("50/s"))
        .build()
        .await
        .unwrap();
    let seed = cluster.ports[0];
    let master = |key: u32| cluster.master_of(seed, &format!("{{shards:{key}}}")).0;
    let stopped = master(0);
    let healthy = (1..).find(|&key| master(key) != stopped).unwrap();
    keyed.await_fuel(0).await.unwrap();
    keyed.await_fuel(healthy).await.unwrap();
    cluster.signal(stopped, libc::SIGSTOP);
    let started = Instant::now();
    let (mut granted, mut stopped_seen, mut healthy_refused) = (0, false, 0);
    while started.elapsed() < RUN {
        // Key 0 keeps asking its stopped master, and timing out.
        keyed.has_fuel(&0);
        stopped_seen |= keyed.unavailable(&0).is_some();
        if keyed.has_fuel(&healthy) {
            granted += 1;
        }
        if keyed.unavailable(&healthy).is_some() {
            healthy_refused += 1;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    cluster.signal(stopped, libc::SIGCONT);
    assert!(stopped_seen, "key 0's master was never seen down");
    assert_eq!(
        healthy_refused, 0,
        "key {healthy} was said unavailable while its master answered"
    );
    // 50/s for 2 s (at most 149 with the bank); a loaded machine's share.
    assert!(
        granted >= 60,
        "key {healthy} got {granted} grants in {RUN:?} at 50/s while another master was stopped"
    );
    println!(
        "key {healthy}: {granted} grants in {RUN:?}; {:?}",
        store.stats()
    );
}

#[test]
fn runs_under_smol() {
    let cluster = RedisCluster::start();
    smol::block_on(async {
        let store = store(&cluster.urls()).await;
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
        let keyed = store
            .keyed::<u32>("smol-keys", rate("10/s"))
            .build()
            .await
            .unwrap();
        for key in 0..20 {
            keyed.await_fuel(key).await.unwrap();
        }
    });
}

/// Grants per second and round trips of one greedy instance on a hot
/// global tank and on 100 cold keys, on one server and on the Cluster
/// (figures printed; the bound is checked above).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn figures_on_one_server_and_a_cluster() {
    let cluster = RedisCluster::start();
    let server = RedisServer::start();
    for (what, store) in [
        (
            "one server",
            RedisStore::connect(&server.url()).await.unwrap(),
        ),
        ("Cluster", store(&cluster.urls()).await),
    ] {
        let hot = store.tank("hot", rate("100000/s")).build().await.unwrap();
        let started = Instant::now();
        let mut grants = 0u64;
        while started.elapsed() < Duration::from_millis(500) {
            hot.await_fuel().await;
            grants += 1;
        }
        let hot_trips = store.stats().round_trips;
        let keyed = store
            .keyed::<u32>("cold", rate("10/s"))
            .build()
            .await
            .unwrap();
        let before = store.stats().round_trips;
        let cold_started = Instant::now();
        for key in 0..100 {
            keyed.await_fuel(key).await.unwrap();
        }
        let cold = cold_started.elapsed();
        println!(
            "{what}: hot tank {:.0} grants/s, {hot_trips} round trips; 100 cold keys in {cold:?} \
             ({} round trips)",
            grants as f64 / started.elapsed().as_secs_f64(),
            store.stats().round_trips - before
        );
    }
}
