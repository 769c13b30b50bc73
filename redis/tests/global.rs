//! A global tank against a real Redis: grants, batches, the hardcaps'
//! bounds within one instance, set_rate, expiry, cancel safety.

mod common;

use std::time::{Duration, Instant};

use common::RedisServer;
use fueltank::{Hardcap, Rate};
use fueltank_redis::{Error, RedisStore};

fn rate(s: &str) -> Rate {
    s.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_and_batches() {
    let redis = RedisServer::start();
    let store = RedisStore::connect(&redis.url()).await.unwrap();
    let tank = store.tank("smoke", rate("1000/s")).build().await.unwrap();
    let started = Instant::now();
    for _ in 0..500 {
        tank.await_fuel().await;
    }
    let elapsed = started.elapsed();
    let stats = store.stats();
    println!("{elapsed:?} {stats:?}");
    assert!(stats.round_trips < 50, "{stats:?}");
}
