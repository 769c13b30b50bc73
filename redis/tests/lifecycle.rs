//! A global tank through the life of its state and its store: a state
//! that expires and is made again, outages under a `Local` policy, a rate
//! changed between them, a name held with another limit, and the waits it
//! tells. Each test failed on the code before its fix.

mod common;

use std::time::{Duration, Instant};

use common::RedisServer;
use fueltank::{Hardcap, Rate};
use fueltank_redis::{FailurePolicy, GlobalTank, RedisStore};

fn rate(s: &str) -> Rate {
    s.parse().unwrap()
}

async fn store(redis: &RedisServer) -> RedisStore {
    RedisStore::builder(&redis.url())
        .timeout(Duration::from_millis(500))
        .connect()
        .await
        .unwrap()
}

async fn sleep(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

/// `Window` logs each grant as `seq:count` and an instance reports the
/// batches it has finished by that member at its next call, which ends
/// their hold (`ZADD XX LT now`). Before the fix `seq` was counted from 1
/// in every state: a state that expired (or was lost) and was made again
/// started at 1 again, and an instance that finished a batch of the old
/// state and called only after another instance was granted a batch of
/// the new one with the same `seq:count` ended *that* instance's hold:
/// Redis then counted the other's grant only until a period after the
/// report, while the other could still spend it to the end of its hold,
/// and granted that much again a period after the report (8 grants within
/// 650 ms of a 4/s Window). Now a log's `seq` counts on from its birth (µs),
/// so a report of a batch of another state ends nothing: checked here as
/// B's window and A's next one a second apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_batch_of_an_expired_state_ends_another_instances_hold() {
    let redis = RedisServer::start();
    let (a, b) = (store(&redis).await, store(&redis).await);
    let build = |store: &RedisStore| {
        store
            .tank("win", rate("4/s"))
            .hardcap(Hardcap::Window)
            .hold(Duration::from_millis(500))
            .reserve_ahead(Duration::from_secs(1))
            .build()
    };
    let (on_a, on_b) = (build(&a).await.unwrap(), build(&b).await.unwrap());

    // A spends a whole window at once (batch `1:4`), then is idle: its
    // report of that batch waits for its next call.
    on_a.await_fuel_n(4).await.unwrap();
    // The state expires (its newest grant left the window, plus a second).
    let started = Instant::now();
    while redis.command("EXISTS fueltank:{win}:s") != ":0\r\n" {
        assert!(started.elapsed() < Duration::from_secs(5), "never expired");
        sleep(50).await;
    }

    // B reserves a whole window of the new state (batch `1:4` again) and
    // holds it, to spend it late in its hold.
    assert!(!on_b.has_fuel_n(4));
    let started = Instant::now();
    while on_b.reserved() < 4 {
        assert!(started.elapsed() < Duration::from_secs(2), "B got nothing");
        sleep(1).await;
    }
    let granted_b = Instant::now();

    // A asks again: its call reports `1:4` finished.
    let asked = tokio::spawn({
        let on_a = on_a.clone();
        async move {
            on_a.await_fuel_n(4).await.unwrap();
            Instant::now()
        }
    });
    // B spends its window late in its hold.
    tokio::time::sleep_until((granted_b + Duration::from_millis(350)).into()).await;
    assert!(on_b.has_fuel_n(4), "B's reserved window was lost");
    let spent_b = Instant::now();
    let spent_a = tokio::time::timeout(Duration::from_secs(5), asked)
        .await
        .expect("A never served")
        .unwrap();
    let gap = spent_a.saturating_duration_since(spent_b);
    println!(
        "B spent 4 at +{:?}, A 4 more {gap:?} later",
        spent_b - granted_b
    );
    // 4/s under Window: no window of a second sees more than 4. B's 4
    // and A's 4 must be a second apart (less a margin for the stamps).
    assert!(
        gap >= Duration::from_millis(900),
        "8 grants within {gap:?} of a Window tank of 4/s"
    );
}

/// A store under `FailurePolicy::Local(share)` connected to `redis`.
async fn local_store(redis: &RedisServer, share: f64) -> RedisStore {
    RedisStore::builder(&redis.url())
        .timeout(Duration::from_millis(100))
        .on_failure(FailurePolicy::Local(share))
        .connect()
        .await
        .unwrap()
}

/// Asks until the store knows Redis is down and `tank` holds nothing
/// reserved (its hold is at most 100 ms).
async fn until_down_and_drained(tank: &GlobalTank, store: &RedisStore) {
    let started = Instant::now();
    while store.is_reachable() || tank.reserved() > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            store.stats()
        );
        let _ = tank.has_fuel();
        sleep(5).await;
    }
    sleep(150).await;
}

/// Grants `tank` makes to a greedy caller (one `has_fuel` a millisecond)
/// over `ms` milliseconds.
async fn greedy_for(tank: &GlobalTank, ms: u64) -> u64 {
    let started = Instant::now();
    let mut granted = 0;
    while started.elapsed() < Duration::from_millis(ms) {
        granted += u64::from(tank.has_fuel());
        sleep(1).await;
    }
    granted
}

/// `Local(share)` falls back to "a local tank at that share of its
/// rate". A tank with rates of `also` keeps every one of them; before the
/// fix its fallback was built from the first rate alone (`fallback` in
/// `entry.rs` read `st.params.rate()`), so while Redis was down it granted
/// `share` of the first rate, far beyond `share` of a tighter `also` rate.
/// Checked: the fallback keeps `share` of every rate (a local tank with
/// the scaled `also` rates): at most 9 grants in a second under half of
/// `100/s` also `10/s`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_fallback_keeps_a_share_of_every_rate() {
    let mut redis = RedisServer::start();
    let store = local_store(&redis, 0.5).await;
    let tank = store
        .tank("also-local", rate("100/s"))
        .also(rate("10/s"))
        .build()
        .await
        .unwrap();
    tank.await_fuel().await;
    redis.stop();
    until_down_and_drained(&tank, &store).await;
    let granted = greedy_for(&tank, 1000).await;
    println!("{granted} grants in 1 s under Local(0.5) of 100/s also 10/s");
    // Half of 10/s: 5/s, at most 2·5 − 1 in any second.
    assert!(
        granted <= 9,
        "{granted} grants in 1 s: beyond half of the also rate 10/s"
    );
}

/// The fallback tank of `Local(share)` is made at the first outage, from
/// the rate of that moment. Before the fix it was kept: a later
/// `set_rate` (this instance's or another's, adopted at a round trip) left
/// it at the old rate, so the next outage granted `share` of the *old*
/// rate. Checked: after `set_rate` 1000/s -> 10/s, the next outage grants
/// at most 9 in a second, `share` of the rate in force (the fallback is
/// made again whenever the parameters change).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_fallback_follows_set_rate() {
    let mut redis = RedisServer::start();
    let store = local_store(&redis, 0.5).await;
    let tank = store
        .tank("rate-local", rate("1000/s"))
        .build()
        .await
        .unwrap();
    tank.await_fuel().await;
    // A first outage makes the fallback (at 500/s).
    redis.stop();
    until_down_and_drained(&tank, &store).await;
    assert!(tank.has_fuel(), "the fallback grants");
    redis.restart();
    let started = Instant::now();
    while !store.is_reachable() {
        assert!(started.elapsed() < Duration::from_secs(5));
        let _ = tank.has_fuel();
        sleep(10).await;
    }
    tank.set_rate(rate("10/s")).await.unwrap();
    assert_eq!(tank.rate(), rate("10/s"));
    // The second outage: half of 10/s now.
    redis.stop();
    until_down_and_drained(&tank, &store).await;
    let granted = greedy_for(&tank, 1000).await;
    println!("{granted} grants in 1 s under Local(0.5) after set_rate 1000/s -> 10/s");
    assert!(
        granted <= 9,
        "{granted} grants in 1 s: beyond half of the rate set (10/s)"
    );
}

/// Before the fix a GCRA state expired "until its schedule has caught up
/// with now, plus one period and a second (by then it is full, as a
/// missing state is taken to be)" (`script.lua`: `expire_ms` counted
/// `tat − now + per`). A state is full at `tat + tolerance`, and the
/// tolerance can be far longer than a period: `Unbounded`'s is 2^50 ns
/// (13 days of refill). A bank spent whole was then full again two
/// seconds later, when the key expired: two banks in two seconds, where
/// "the long-run mean is at most the rate" allows one bank plus the rate.
/// (The same with a `burst` longer than a period of refill.) Now a state
/// lives until it is full (`tat + tolerance − now`, for every rate), plus
/// a second: checked here as the key still there, with days to live, past
/// the time it expired before, and no second bank then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_bank_longer_than_a_period_is_not_full_when_its_key_expires() {
    let redis = RedisServer::start();
    let store = store(&redis).await;
    let tank = store
        .tank("unbounded", rate("1000/s"))
        .hardcap(Hardcap::Unbounded)
        .build()
        .await
        .unwrap();
    let bank = tank.capacity();
    let started = Instant::now();
    tank.await_fuel_n(bank).await.unwrap();
    // Before the fix the key expired a period and a second after the
    // schedule's end (about 2 s from now).
    sleep(2500).await;
    assert_eq!(
        redis.command("EXISTS fueltank:{unbounded}:s"),
        ":1\r\n",
        "the spent state expired"
    );
    let ttl = redis.command("PTTL fueltank:{unbounded}:s");
    let ttl_ms: u64 = ttl.trim().trim_start_matches(':').parse().unwrap();
    // Full again only when the bank (2^50 ns, about 13 days) refilled.
    assert!(
        ttl_ms > 86_400_000,
        "the spent state expires in {ttl_ms} ms"
    );
    let again = tokio::time::timeout(Duration::from_millis(500), tank.await_fuel_n(bank)).await;
    let elapsed = started.elapsed();
    // What the rate refilled meanwhile: about 3 000 of a bank of 10^9.
    let refilled = elapsed.as_millis() as u64 + 1;
    assert!(
        again.is_err(),
        "a second bank of {bank} within {elapsed:?} at 1000/s (refilled: about {refilled})"
    );
}

/// `wait_time` (the `Retry-After` of a rejected request) is "the time
/// Redis's schedule, as of its latest answer, has `n` due". With rates of
/// `also`, before the fix `redis_due` (`entry.rs`) took the latest time
/// any rate is full and counted back `capacity − n` intervals of the
/// *longest* interval, as if one rate had both the least capacity and the
/// longest interval. With `10/s` (bank 9, 100 ms) beside `1000/10min`
/// (bank 999, 600 ms), after 9 at once the long rate is full only in
/// 5.4 s, and `wait_time(9)` said 5.4 s, though 9 are due again in 0.9 s
/// (the short rate refilled; the long one still holds 990). Redis now
/// answers when each rate is full, and `wait_time` takes the latest of
/// the rates' own due times (`also.rs`,
/// `wait_time_with_also_is_when_every_rate_has_room`, checks it is
/// exact). Checked: 9 come within 1.5 s, and `wait_time(9)` said no later
/// than they came.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_time_with_also_is_each_rates_due_time() {
    let redis = RedisServer::start();
    let store = store(&redis).await;
    let tank = store
        .tank("due", rate("10/s"))
        .also(rate("1000/10min"))
        .build()
        .await
        .unwrap();
    assert_eq!(tank.capacity(), 9);
    tank.await_fuel_n(9).await.unwrap();
    let said = tank.wait_time(9).unwrap();
    let started = Instant::now();
    tank.await_fuel_n(9).await.unwrap();
    let waited = started.elapsed();
    println!("wait_time(9) said {said:?}; 9 came in {waited:?}");
    assert!(waited < Duration::from_millis(1500), "{waited:?}");
    assert!(
        said <= waited + Duration::from_millis(200),
        "wait_time(9) said {said:?}, 9 came in {waited:?}"
    );
}

/// After a mismatch (the name lost and made again by another limit),
/// "Redis is asked again once a second, and once it holds their limit
/// again (the other one's state expired, or a `set_rate` made it so) they
/// are served again". Before the fix `Entry::enqueue` answered a fallible
/// wait (`await_fuel_n`, a keyed tank's `await_fuel`) from the entry's
/// `conflict` before it joined the line or kicked the driver, and only a
/// round trip clears `conflict`: an instance that waited only that way
/// never asked Redis again, and stayed refused for ever (no round trip in
/// 6 s after the other instance set the name back to this limit; a keyed
/// tank's keys likewise, even after the other limit's parameters
/// expired). Checked: the mismatch answer counts as demand and kicks the
/// driver, so Redis is asked again after the backoff, and A's
/// `await_fuel_n` succeeds within 6 s of B's `set_rate` back to A's limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mismatched_instance_asks_redis_again_and_is_served() {
    let redis = RedisServer::start();
    let (a, b) = (store(&redis).await, store(&redis).await);
    let on_a = a.tank("m", rate("10/s")).build().await.unwrap();
    on_a.await_fuel_n(1).await.unwrap();
    redis.command("FLUSHALL");
    let on_b = b.tank("m", rate("20/s")).build().await.unwrap();
    on_b.await_fuel_n(1).await.unwrap();
    // A learns of the other limit.
    let started = Instant::now();
    while on_a.await_fuel_n(1).await.is_ok() {
        assert!(started.elapsed() < Duration::from_secs(3), "no mismatch");
        sleep(20).await;
    }
    // B gives the name A's limit back.
    on_b.set_rate(rate("10/s")).await.unwrap();
    let round_trips = a.stats().round_trips;
    let started = Instant::now();
    while on_a.await_fuel_n(1).await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(6),
            "A still refused 6 s after Redis holds its limit again; its round trips since: {}",
            a.stats().round_trips - round_trips
        );
        sleep(100).await;
    }
}

/// `Local(share)` gives "each key of a keyed tank a local tank at this
/// share of its rate". That tank lived in the key's entry, and a keyed
/// tank forgets entries to stay within `max_keys`: a key forgotten while
/// its fallback was spent came back with a fresh, full one. So a caller
/// that touches other keys between its requests (here one other key, with
/// `max_keys(1)`) got a new bank on its own key each time, during an
/// outage: far beyond `share` of the key's rate. Checked: greedy on key
/// `a` for a second, touching key `b` after each refusal, under
/// `Local(0.5)` of 10/s: at most 2·5 − 1 grants on `a`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_fallback_of_a_key_survives_its_entry_being_forgotten() {
    let mut redis = RedisServer::start();
    let store = local_store(&redis, 0.5).await;
    let keyed = store
        .keyed::<String>("forgotten-local", rate("10/s"))
        .max_keys(1)
        .build()
        .await
        .unwrap();
    let (a, b) = ("a".to_string(), "b".to_string());
    keyed.await_fuel(a.clone()).await.unwrap();
    redis.stop();
    // Until the store knows Redis is down, then until `a`'s local tank is
    // spent.
    let started = Instant::now();
    while store.is_reachable() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            store.stats()
        );
        let wait = keyed.await_fuel(a.clone());
        let _ = tokio::time::timeout(Duration::from_millis(20), wait).await;
    }
    while keyed.has_fuel(&a) {}
    sleep(150).await;
    let started = Instant::now();
    let mut granted = 0;
    while started.elapsed() < Duration::from_secs(1) {
        if keyed.has_fuel(&a) {
            granted += 1;
        } else {
            let _ = keyed.has_fuel(&b);
        }
        sleep(1).await;
    }
    println!("{granted} grants on one key in 1 s under Local(0.5) of 10/s");
    assert!(
        granted <= 9,
        "{granted} grants on one key in 1 s: beyond half of 10/s"
    );
}

/// A state is kept "until full under every rate, plus a second", and,
/// before that rule, "a period and a second after its schedule caught up
/// with now": the name stays this limit's while it is used, or idle less
/// than that. Taking only the first rule, a state that is full (built, or
/// idle a moment) expired a second after its last call: another limit
/// could take the name after a pause of a second
/// (`global.rs`'s `a_name_made_again_by_another_limit_is_an_error_never_adopted`
/// failed so: the other instance's state expired in its 1.1 s pause and
/// this one made the name its own). Checked: a tank of 4/2s, built and
/// idle, still holds its state 2.5 s later (its period, 2 s, and a second).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_full_state_is_kept_a_period_and_a_second() {
    let redis = RedisServer::start();
    let store = store(&redis).await;
    let _tank = store.tank("held", rate("4/2s")).build().await.unwrap();
    sleep(2500).await;
    assert_eq!(
        redis.command("EXISTS fueltank:{held}:s"),
        ":1\r\n",
        "the state of a tank built 2.5 s ago at 4/2s expired"
    );
}

/// `wait_time(n)` is how long "a newcomer asking for `n`" would wait, and
/// a newcomer never overtakes a waiter: it waits for Redis to have room
/// for the waiters' fuel and its own, less what is reserved here. Before
/// the fix it took Redis's room for `n` alone: on an emptied 10/s tank
/// (bank 9) with two waiters for 9 at once (refused for now: due beyond
/// `reserve_ahead`), `wait_time(1)` said 0.4 s (the retry time), where
/// the newcomer's one comes after 18 more, 1.9 s on. Checked: within
/// 150 ms of that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_time_counts_the_waiters_ahead() {
    let redis = RedisServer::start();
    let store = store(&redis).await;
    let tank = store.tank("queued", rate("10/s")).build().await.unwrap();
    assert_eq!(tank.capacity(), 9);
    tank.await_fuel_n(9).await.unwrap();
    let spent = Instant::now();
    let mut waiters = Vec::new();
    for _ in 0..2 {
        let tank = tank.clone();
        waiters.push(tokio::spawn(async move { tank.await_fuel_n(9).await }));
    }
    // Until Redis has answered their ask (refused: 9 are 0.9 s away).
    let started = Instant::now();
    while store.stats().refusals == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            store.stats()
        );
        sleep(2).await;
    }
    let said = tank.wait_time(1).unwrap();
    let truth = Duration::from_millis(1900).saturating_sub(spent.elapsed());
    println!("wait_time(1) behind two waiters for 9: said {said:?}, truth {truth:?}");
    assert!(
        said + Duration::from_millis(150) >= truth && said <= truth + Duration::from_millis(150),
        "wait_time(1) behind two waiters for 9 said {said:?}, the truth is {truth:?}"
    );
    for waiter in waiters {
        waiter.await.unwrap().unwrap();
    }
}
