//! A Redis Cluster failover mid-run: three masters with a replica each
//! (see `common`), greedy instances on one global `Limit` tank, and the
//! master of the tank's slot killed (`SIGKILL`) while its replica lags;
//! the Cluster promotes the replica and the instances carry on.
//!
//! The replica is made to lag on purpose, as a slow or broken link would:
//! it is stopped (`SIGSTOP`) and its link dropped by the master (`CLIENT
//! KILL TYPE replica`), `LAG` before the master is killed, so the writes of
//! that time never reach it. (On a healthy link the lag is a fraction of a
//! millisecond and a `SIGKILL` loses next to nothing: the test would not
//! see the loss it is about.)
//!
//! What is measured: the tank is `2000/20s` (100/s, a bank of 1990), so its
//! period outlasts the failover and one window of the period sees the
//! grants before the kill and those after the promotion (a failover longer
//! than a period loses nothing: the tank is full again either way). From
//! the tank's creation at `t0`, `Limit` grants by `t` at most its bank and
//! the rate since: `max_n − 1 + rate·(t − t0)` (at `t − t0 = per`, the
//! window bound `2·max_n − 1`; the bank is `⌈hold / T⌉ = 10` lower still).
//! The *excess* is the most any grant's count goes over that, with the
//! grants stamped when a task sees them (late, so never counted early).
//!
//! - Without [`RedisStoreBuilder::wait_for_replicas`]: the promoted
//!   replica lacks the reservations of the lag and grants them again; the
//!   excess is within the documented bound (the crate docs, *Failover*):
//!   the fuel the lost writes reserved, at most the rate over the lag and
//!   what the instances held reserved ahead (the bank was empty: the tasks
//!   are greedy).
//! - With it: a reservation is spent only once the replica holds it, so
//!   no excess at all; the round trips of the lag are `unreplicated`
//!   failures, under `FailurePolicy::Closed`. The cost of `WAIT` on a round
//!   trip is measured against a store without it on the same Cluster.
//!
//! Both: the gap is covered by the failure policy (`Closed`: no policy
//! grant), and every waiter is served again after the promotion.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{RedisCluster, command};
use fueltank::{Hardcap, Rate};
use fueltank_redis::{RedisStore, StoreStats};

/// How long the replica receives nothing before its master is killed.
const LAG: Duration = Duration::from_secs(1);
/// What a replica waits before it takes over a failed master.
const NODE_TIMEOUT_MS: u32 = 1000;
const INSTANCES: usize = 3;
const TASKS_PER_INSTANCE: usize = 2;
/// `WAIT`'s timeout, under the round trip's (1 s).
const WAIT: Duration = Duration::from_millis(100);

struct Figures {
    excess: f64,
    bound: f64,
    stats: Vec<StoreStats>,
}

/// Runs greedy instances across a failover; `wait` sets
/// `wait_for_replicas(1, WAIT)` on every store.
async fn across_a_failover(wait: bool) -> Figures {
    let mut cluster = RedisCluster::start_with(1, NODE_TIMEOUT_MS);
    let urls = cluster.urls();
    let rate: Rate = "2000/20s".parse().unwrap();
    let per_s = rate.max_n() as f64 / rate.per().as_secs_f64();
    let mut stores = Vec::new();
    for url in &urls {
        let builder = RedisStore::builder_cluster([url])
            .timeout(Duration::from_secs(1))
            .connect_timeout(Duration::from_secs(5));
        let builder = if wait {
            builder.wait_for_replicas(1, WAIT)
        } else {
            builder
        };
        stores.push(builder.connect().await.unwrap());
    }
    assert_eq!(stores.len(), INSTANCES);

    if wait {
        wait_costs(&urls).await;
    }

    let stamps = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    let mut last_grants = Vec::new();
    for store in &stores {
        let tank = store
            .tank("api", rate)
            .hardcap(Hardcap::Limit)
            .build()
            .await
            .unwrap();
        for _ in 0..TASKS_PER_INSTANCE {
            let (tank, stamps, stop) = (tank.clone(), stamps.clone(), stop.clone());
            let last = Arc::new(AtomicU64::new(0));
            last_grants.push(last.clone());
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    if tank.await_fuel_timeout(Duration::from_millis(100)).await {
                        let now = Instant::now();
                        stamps.lock().unwrap().push(now);
                        last.store((now - t0).as_micros() as u64, Ordering::Relaxed);
                    }
                }
            }));
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The replica of the tank's master stops receiving: stopped, and its
    // link dropped (it cannot reconnect while stopped).
    let (master, replica) = cluster.master_of(urls_port(&urls, 0), "fueltank:{api}:s");
    let replica = replica.expect("the tank's master has a replica");
    cluster.signal(replica, libc::SIGSTOP);
    let dropped = command(master, "CLIENT KILL TYPE replica");
    assert!(
        dropped.starts_with(":1"),
        "CLIENT KILL answered {dropped:?}"
    );
    let lag_started = Instant::now();
    tokio::time::sleep(LAG).await;
    cluster.signal(master, libc::SIGKILL);
    let killed = Instant::now();
    let lag = killed - lag_started;
    cluster.signal(replica, libc::SIGCONT);

    // The Cluster promotes the replica.
    loop {
        if command(replica, "ROLE").contains("master")
            && command(replica, "CLUSTER INFO").contains("cluster_state:ok")
        {
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(20),
            "the replica on {replica} is not a serving master 20 s after the kill"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let promoted = killed.elapsed();
    // The old master comes back, as the new one's replica (a master
    // without replicas grants nothing under `wait_for_replicas`).
    cluster.restart(master);
    loop {
        let info = command(master, "INFO replication");
        if info.contains("role:slave") && info.contains("master_link_status:up") {
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "the old master on {master} is not a replica in sync 30 s after the kill: {info}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let restored = killed.elapsed();
    // Liveness: every waiter is served again (with `wait_for_replicas`,
    // once the new master has a replica again), then the rate for 1 s.
    let served = |since: Duration| {
        last_grants
            .iter()
            .all(|last| Duration::from_micros(last.load(Ordering::Relaxed)) > since)
    };
    let since = killed - t0 + restored;
    while !served(since) {
        assert!(
            killed.elapsed() < restored + Duration::from_secs(15),
            "a task has had no grant 15 s after the old master came back"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let all_served = killed.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let stopped = Instant::now();
    for task in tasks {
        task.await.unwrap();
    }
    assert!(
        stopped.elapsed() < Duration::from_secs(2),
        "the tasks took {:?} to see the stop",
        stopped.elapsed()
    );

    let mut stamps = stamps.lock().unwrap().clone();
    stamps.sort();
    // The most the count of grants goes over `max_n − 1 + rate·(t − t0)`.
    let allowance = |at: Instant| rate.max_n() as f64 - 1.0 + per_s * (at - t0).as_secs_f64();
    let excess = stamps
        .iter()
        .enumerate()
        .map(|(i, &at)| (i + 1) as f64 - allowance(at))
        .fold(f64::MIN, f64::max);
    let last_second = stamps
        .iter()
        .filter(|&&at| at > killed + all_served)
        .count();
    let resumed = stamps
        .iter()
        .find(|&&at| at > killed + promoted)
        .map_or(Duration::MAX, |&at| at - killed);

    // The bound without the option: the rate over the lag, and the fuel
    // reserved ahead by the instances, at most 1.5 batches each (a batch
    // spans at most `reserve_ahead`, 500 ms, of the rate).
    let batch = (0.5 * per_s).min(1000.0);
    let bound = per_s * lag.as_secs_f64() + INSTANCES as f64 * 1.5 * batch;
    let stats: Vec<StoreStats> = stores.iter().map(RedisStore::stats).collect();
    println!(
        "wait_for_replicas: {wait}: lag {lag:?}; after the kill: promoted {promoted:?}, grants \
         again {resumed:?}, old master a replica in sync {restored:?}, every task served \
         {all_served:?}; {} grants, {last_second} in the last second; excess over max_n − 1 + \
         rate·t: {excess:.0} (bound without the option {bound:.0})",
        stamps.len()
    );
    for s in &stats {
        println!("  {s:?}");
    }

    // The failure policy (`Closed`) covered the gap, and was needed.
    assert!(stats.iter().all(|s| s.policy_grants == 0), "{stats:?}");
    assert!(stats.iter().any(|s| s.store_errors > 0), "{stats:?}");
    // At the rate again (100 in the second), but for a loaded machine.
    assert!(
        last_second as f64 >= 0.5 * per_s,
        "{last_second} grants in the last second"
    );
    Figures {
        excess,
        bound,
        stats,
    }
}

fn urls_port(urls: &[String], i: usize) -> u16 {
    urls[i].rsplit(':').next().unwrap().parse().unwrap()
}

/// Round trips with and without `WAIT` on the same Cluster, alternated:
/// the first grant of a cold key of a keyed tank is one round trip.
async fn wait_costs(urls: &[String]) {
    let plain = RedisStore::builder_cluster(urls)
        .timeout(Duration::from_secs(1))
        .connect()
        .await
        .unwrap();
    let waiting = RedisStore::builder_cluster(urls)
        .timeout(Duration::from_secs(1))
        .wait_for_replicas(1, WAIT)
        .connect()
        .await
        .unwrap();
    let rate: Rate = "10/s".parse().unwrap();
    let tanks = [
        plain.keyed::<u32>("cold", rate).build().await.unwrap(),
        waiting.keyed::<u32>("cold", rate).build().await.unwrap(),
    ];
    const KEYS: u32 = 300;
    let mut times = [Vec::new(), Vec::new()];
    for key in 0..KEYS {
        for (i, tank) in tanks.iter().enumerate() {
            let started = Instant::now();
            tank.await_fuel(key * 2 + i as u32).await.unwrap();
            times[i].push(started.elapsed());
        }
    }
    assert_eq!(waiting.stats().unreplicated, 0, "{:?}", waiting.stats());
    let [mut without, mut with] = times;
    without.sort();
    with.sort();
    let at = |times: &[Duration], q: f64| times[((times.len() - 1) as f64 * q) as usize];
    println!(
        "a cold key's round trip, p50 / p90 of {KEYS}: {:?} / {:?} without WAIT, {:?} / {:?} \
         with WAIT 1",
        at(&without, 0.5),
        at(&without, 0.9),
        at(&with, 0.5),
        at(&with, 0.9)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_without_waiting_exceeds_at_most_the_lost_reservations() {
    let figures = across_a_failover(false).await;
    // The loss is seen: the promoted replica granted again most of what
    // the lag reserved (the rate over it, less the bank's 10 held back).
    assert!(
        figures.excess > 0.0,
        "excess {:.0}: the failover lost nothing?",
        figures.excess
    );
    assert!(
        figures.excess <= figures.bound,
        "excess {:.0}, documented bound {:.0}",
        figures.excess,
        figures.bound
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_with_wait_for_replicas_does_not_exceed_the_bound() {
    let figures = across_a_failover(true).await;
    assert!(
        figures.excess <= 0.0,
        "excess {:.0} with wait_for_replicas",
        figures.excess
    );
    // The lag's round trips were failures: their reservations unspent.
    let stats = &figures.stats;
    assert!(stats.iter().any(|s| s.unreplicated > 0), "{stats:?}");
}

#[tokio::test]
async fn wait_for_replicas_options_are_checked() {
    let builder = || RedisStore::builder("redis://127.0.0.1:1").timeout(Duration::from_millis(50));
    for (replicas, timeout, option) in [
        (0, Duration::from_millis(10), "wait_for_replicas replicas"),
        (1, Duration::ZERO, "wait_for_replicas timeout"),
        (1, Duration::from_micros(999), "wait_for_replicas timeout"),
        (1, Duration::from_millis(50), "wait_for_replicas timeout"),
    ] {
        let err = builder()
            .wait_for_replicas(replicas, timeout)
            .connect()
            .await
            .unwrap_err();
        match &err {
            fueltank_redis::Error::InvalidOption { option: o, .. } => assert_eq!(*o, option),
            other => panic!("{replicas}, {timeout:?}: {other:?}"),
        }
        println!("{err}");
    }
}

/// One server and its replica: `WAIT` goes on the server's connection,
/// the script is sent again in the pipeline when Redis forgot it, and a
/// replica gone makes round trips `unreplicated` failures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_replicas_on_one_server() {
    let server = common::RedisServer::start();
    let mut replica = common::RedisServer::start_replica(Some(server.port));
    let started = Instant::now();
    while !replica
        .command("INFO replication")
        .contains("master_link_status:up")
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the replica is not in sync"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let store = RedisStore::builder(&server.url())
        .timeout(Duration::from_secs(1))
        .wait_for_replicas(1, Duration::from_millis(100))
        .connect()
        .await
        .unwrap();
    let tank = store
        .tank("api", "1000/s".parse().unwrap())
        .max_batch(10)
        .build()
        .await
        .unwrap();
    for i in 0..200 {
        if i == 100 {
            assert_eq!(server.command("SCRIPT FLUSH"), "+OK\r\n");
        }
        assert!(
            tank.await_fuel_timeout(Duration::from_secs(2)).await,
            "grant {i}: {:?}",
            store.stats()
        );
    }
    let stats = store.stats();
    assert!(stats.round_trips >= 20, "{stats:?}");
    assert_eq!(
        (stats.store_errors, stats.unreplicated),
        (0, 0),
        "{stats:?}"
    );
    // The replica holds what was reserved.
    assert!(replica.command("EXISTS fueltank:{api}:s").starts_with(":1"));

    replica.stop();
    let mut granted = 0;
    while tank.await_fuel_timeout(Duration::from_millis(300)).await {
        granted += 1;
        assert!(granted <= 20, "granting without a replica");
    }
    let stats = store.stats();
    assert!(stats.unreplicated > 0 && !store.is_reachable(), "{stats:?}");
    assert_eq!(stats.policy_grants, 0, "{stats:?}");
    println!("without the replica: {granted} more grants (reserved before); {stats:?}");
}
