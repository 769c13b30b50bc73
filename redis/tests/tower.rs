//! `fueltank-tower`'s HTTP layers on Redis tanks, on a real Redis: two
//! stores stand for two instances of a service, each with its own layer;
//! together they admit what one budget allows, 429s carry `Retry-After`,
//! a key too long for Redis is a 400, and with Redis stopped the layers
//! answer 503 naming the store (`Closed`), not 429, without a panic or a
//! 500.

mod common;

use std::convert::Infallible;
use std::time::{Duration, Instant};

use common::RedisServer;
use fueltank::Rate;
use fueltank_redis::{FailurePolicy, RedisStore};
use fueltank_tower::key::key_fn;
use fueltank_tower::{Budget, KeyedBudget, KeyedThrottleLayer, ThrottleLayer, Throttled};
use http::{Request, Response, StatusCode};
use tower::{Layer, Service, ServiceExt, service_fn};

fn rate(s: &str) -> Rate {
    s.parse().unwrap()
}

async fn store(redis: &RedisServer, policy: FailurePolicy) -> RedisStore {
    RedisStore::builder(&redis.url())
        .timeout(Duration::from_millis(500))
        .on_failure(policy)
        .connect()
        .await
        .unwrap()
}

fn hello() -> impl Service<Request<()>, Response = Response<String>, Error = Infallible> + Clone {
    service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new("hello".to_string())) })
}

/// Sends requests through `services`, round robin, for `run`; the status
/// of each.
async fn send<S>(services: &mut [S], run: Duration, user: Option<&str>) -> Vec<StatusCode>
where
    S: Service<Request<()>, Response = Response<String>, Error = Infallible>,
{
    let started = Instant::now();
    let mut statuses = Vec::new();
    while started.elapsed() < run {
        for svc in services.iter_mut() {
            let mut request = Request::builder();
            if let Some(user) = user {
                request = request.header("x-user", user);
            }
            let response = svc
                .ready()
                .await
                .unwrap()
                .call(request.body(()).unwrap())
                .await
                .unwrap();
            if let StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE =
                response.status()
            {
                let retry: u64 = response.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!(retry >= 1, "Retry-After is whole seconds, never 0");
            }
            statuses.push(response.status());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    statuses
}

fn count(statuses: &[StatusCode], status: StatusCode) -> u64 {
    statuses.iter().filter(|&&s| s == status).count() as u64
}

/// The most `Limit` at `rate` may grant over `elapsed` from full: its bank,
/// and one per interval since.
fn most(bank: u64, rate: Rate, elapsed: Duration) -> u64 {
    let intervals = elapsed.as_nanos() / rate.interval().as_nanos();
    bank + u64::try_from(intervals).unwrap() + 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_behind_the_http_layer_share_one_budget() {
    let redis = RedisServer::start();
    let (a, b) = (
        store(&redis, FailurePolicy::Closed).await,
        store(&redis, FailurePolicy::Closed).await,
    );
    let api = rate("20/s");
    let tank_a = a.tank("api", api).build().await.unwrap();
    let tank_b = b.tank("api", api).build().await.unwrap();
    let bank = tank_a.capacity();
    let mut services = [
        ThrottleLayer::new(tank_a.clone())
            .reject()
            .http()
            .layer(hello()),
        ThrottleLayer::new(tank_b)
            .reject()
            .label("api")
            .http()
            .layer(hello()),
    ];
    let started = Instant::now();
    let statuses = send(&mut services, Duration::from_millis(1500), None).await;
    let elapsed = started.elapsed();
    assert_eq!(
        statuses[..2],
        [StatusCode::OK; 2],
        "nothing is reserved yet: each instance's first request asks Redis, not shed on a guess"
    );
    let admitted = count(&statuses, StatusCode::OK);
    let shed = count(&statuses, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(admitted + shed, statuses.len() as u64, "only 200s and 429s");
    // One budget: two per-instance limits would admit twice this.
    let bound = most(bank, api, elapsed);
    assert!(
        admitted <= bound,
        "{admitted} admitted by two instances in {elapsed:?}, at most {bound} for one budget"
    );
    // And it is used: the bank and most of the refill (reservations may
    // leave a batch unspent, and the machine may be loaded).
    assert!(
        admitted >= bank + 10,
        "only {admitted} admitted in {elapsed:?} (bank {bank})"
    );
    assert!(shed > 0, "greedy clients were never shed");
}

/// In reject mode a request that finds nothing reserved here asks Redis
/// and waits for its answer, not for the fuel that answer reserves: with
/// another instance's reservations ahead in Redis's schedule, that fuel
/// starts later, so the ask says no at once (a 429, not a wait).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ask_waits_for_the_answer_not_for_fuel_to_come() {
    let redis = RedisServer::start();
    let (a, b) = (
        store(&redis, FailurePolicy::Closed).await,
        store(&redis, FailurePolicy::Closed).await,
    );
    // At 1/s the fuel an answer reserves behind B starts a second or more
    // later: far from a round trip, even on a loaded machine.
    let api = rate("1/s");
    let tank_a = a.tank("ask", api).build().await.unwrap();
    let tank_b = b.tank("ask", api).build().await.unwrap();
    // B spends the bank, then waits for fuel: it reserves ahead.
    for _ in 0..=tank_b.capacity() {
        tank_b.await_fuel().await;
    }
    // (No `take` first: a miss asks Redis in the background, and once its
    // refusal is in, there is nothing left to ask.)
    let asked = Instant::now();
    let ask = Budget::ask(&tank_a, 1).expect("nothing known here: Redis is asked");
    let took = ask.await.unwrap().is_some();
    let elapsed = asked.elapsed();
    assert!(
        !took && elapsed < Duration::from_millis(700),
        "the ask took {took} after {elapsed:?}: Redis's answer reserved fuel \
         starting an interval (1 s) or more later, which a request in reject \
         mode does not wait for"
    );

    // A key of a keyed tank alike.
    let keyed_a = a.keyed::<String>("ask-keyed", api).build().await.unwrap();
    let keyed_b = b.keyed::<String>("ask-keyed", api).build().await.unwrap();
    let key = || "k".to_string();
    for _ in 0..=KeyedBudget::capacity(&keyed_b, &key()) {
        keyed_b.await_fuel(key()).await.unwrap();
    }
    let asked = Instant::now();
    let ask = KeyedBudget::ask(&keyed_a, &key(), 1).expect("nothing known here: Redis is asked");
    let took = ask.await.unwrap().is_some();
    let elapsed = asked.elapsed();
    assert!(
        !took && elapsed < Duration::from_millis(700),
        "the keyed ask took {took} after {elapsed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_keyed_layer_shares_each_key_across_instances() {
    let redis = RedisServer::start();
    let (a, b) = (
        store(&redis, FailurePolicy::Closed).await,
        store(&redis, FailurePolicy::Closed).await,
    );
    let per_user = rate("10/s");
    let keyed_a = a
        .keyed::<String>("per-user", per_user)
        .build()
        .await
        .unwrap();
    let keyed_b = b
        .keyed::<String>("per-user", per_user)
        .build()
        .await
        .unwrap();
    let by_user = key_fn(|request: &Request<()>| {
        request
            .headers()
            .get("x-user")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or(fueltank_tower::key::KeyError::MissingHeader { header: "x-user" })
    });
    let mut services = [
        KeyedThrottleLayer::new(keyed_a, by_user)
            .reject()
            .http()
            .layer(hello()),
        KeyedThrottleLayer::new(keyed_b, by_user)
            .reject()
            .http()
            .layer(hello()),
    ];
    let started = Instant::now();
    let alice = send(&mut services, Duration::from_millis(1200), Some("alice")).await;
    let elapsed = started.elapsed();
    let admitted = count(&alice, StatusCode::OK);
    let bound = most(per_user.max_n(), per_user, elapsed);
    assert!(
        admitted <= bound,
        "alice got {admitted} through two instances in {elapsed:?}, at most {bound}"
    );
    assert!(count(&alice, StatusCode::TOO_MANY_REQUESTS) > 0);

    // Bob has his own budget, untouched by alice's.
    let bob = send(&mut services, Duration::from_millis(50), Some("bob")).await;
    assert_eq!(bob[0], StatusCode::OK, "bob's first request: {bob:?}");

    // A key Redis cannot hold is the request's fault: 400, saying why.
    let long = "x".repeat(fueltank_redis::MAX_KEY_LEN + 1);
    let response = services[0]
        .ready()
        .await
        .unwrap()
        .call(Request::builder().header("x-user", &long).body(()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(
        response.body().contains("at most 1024"),
        "{:?}",
        response.body()
    );
}

/// A key's own rate (`rate_by`) sets what its requests may cost: a
/// partner at 100/s in a keyed tank at 10/s has the bank of a tank at
/// 100/s, held here or not, and a request costing more than the tank's
/// bank but within the partner's waits for its fuel and is served; beyond
/// the partner's bank, it is refused at once with `ExceedsCapacity` naming
/// it. Another key's requests are bounded by the tank's bank.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keys_own_rate_sets_what_it_may_cost() {
    let redis = RedisServer::start();
    let store = store(&redis, FailurePolicy::Closed).await;
    let (tank, own) = (rate("10/s"), rate("100/s"));
    let keyed = store
        .keyed::<String>("tiers", tank)
        .rate_by(move |user| match user.as_str() {
            "acme" => own,
            _ => tank,
        })
        .build()
        .await
        .unwrap();
    let plain = store.keyed::<String>("plain", own).build().await.unwrap();
    let (acme, bob) = ("acme".to_string(), "bob".to_string());
    let (bank, own_bank) = (
        KeyedBudget::capacity(&keyed, &bob),
        KeyedBudget::capacity(&plain, &bob),
    );
    assert!(own_bank > bank, "{own_bank} > {bank}");
    assert_eq!(KeyedBudget::capacity(&keyed, &acme), own_bank, "not held");
    let svc = KeyedThrottleLayer::new(keyed.clone(), key_fn(|r: &(String, u64)| Ok(r.0.clone())))
        .cost(|r: &(String, u64)| r.1)
        .max_wait(Duration::from_secs(2))
        .layer(service_fn(|r: (String, u64)| async move {
            Ok::<_, tower::BoxError>(r.1)
        }));
    let cost = bank + 1;
    assert_eq!(
        svc.clone().oneshot((acme.clone(), cost)).await.unwrap(),
        cost
    );
    assert_eq!(KeyedBudget::capacity(&keyed, &acme), own_bank, "held");
    for (key, n, capacity) in [(acme, own_bank + 1, own_bank), (bob, cost, bank)] {
        let err = svc.clone().oneshot((key.clone(), n)).await.unwrap_err();
        assert_eq!(
            err.downcast_ref::<fueltank::Error>(),
            Some(&fueltank::Error::ExceedsCapacity {
                requested: n,
                capacity
            }),
            "{key}: {err}"
        );
    }
}

/// The plain layer in wait mode: requests wait for Redis's fuel, bounded
/// by `max_wait`; one whose fuel is further off is shed at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_are_bounded_by_max_wait() {
    let redis = RedisServer::start();
    let store = store(&redis, FailurePolicy::Closed).await;
    let tank = store.tank("slow", rate("5/s")).build().await.unwrap();
    let bank = tank.capacity();
    let svc = ThrottleLayer::new(tank)
        .max_wait(Duration::from_millis(400))
        .layer(service_fn(|()| async { Ok::<_, tower::BoxError>(()) }));
    let mut served = 0;
    let mut shed = 0;
    let started = Instant::now();
    for _ in 0..(bank + 6) {
        let asked = Instant::now();
        match svc.clone().oneshot(()).await {
            Ok(()) => served += 1,
            Err(err) => {
                let throttled = err.downcast_ref::<Throttled>().expect("a Throttled");
                assert!(throttled.retry_after() > Duration::ZERO);
                shed += 1;
            }
        }
        assert!(
            asked.elapsed() < Duration::from_millis(400 + 300),
            "a request waited {:?}, past max_wait",
            asked.elapsed()
        );
    }
    let bound = most(bank, rate("5/s"), started.elapsed());
    assert!(served <= bound, "{served} served, at most {bound}");
    assert!(served > bank, "waiting requests were served: {served}");
    let _ = shed;
}

/// What a refusal while Redis is down must be: a 503 naming the store,
/// with `Retry-After` and none of the `RateLimit` headers, which would
/// claim a quota ran out.
fn assert_outage(response: &Response<String>, store: &str) {
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = response.body();
    assert!(
        body.starts_with("Service Unavailable")
            && body.contains(&format!("rate-limit store unavailable ({store})")),
        "{body:?}"
    );
    assert!(header(response, "retry-after") >= 1);
    for name in ["ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"] {
        assert!(response.headers().get(name).is_none(), "{name} on a 503");
    }
}

/// One request through `svc`.
async fn one<S>(svc: &mut S, user: &str) -> Response<String>
where
    S: Service<Request<()>, Response = Response<String>, Error = Infallible>,
{
    let request = Request::builder().header("x-user", user).body(()).unwrap();
    svc.ready().await.unwrap().call(request).await.unwrap()
}

/// Redis stopped mid-run under `Closed`: an outage, not overload. Once the
/// fuel reserved before is spent, the plain and the keyed layer answer
/// `503` naming the store (never a 429 that tells clients they were too
/// fast, nor a 500 or a panic), and serve again once Redis is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_gone_the_layer_answers_503_and_recovers() {
    let mut redis = RedisServer::start();
    let store = store(&redis, FailurePolicy::Closed).await;
    let tank = store.tank("gone", rate("50/s")).build().await.unwrap();
    let keyed = store
        .keyed::<String>("gone-per-user", rate("50/s"))
        .build()
        .await
        .unwrap();
    let by_user = key_fn(|request: &Request<()>| {
        request
            .headers()
            .get("x-user")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or(fueltank_tower::key::KeyError::MissingHeader { header: "x-user" })
    });
    let mut plain = [ThrottleLayer::new(tank.clone())
        .reject()
        .http()
        .layer(hello())];
    let mut per_user = [KeyedThrottleLayer::new(keyed, by_user)
        .reject()
        .http()
        .layer(hello())];
    let before = send(&mut plain, Duration::from_millis(300), None).await;
    assert!(count(&before, StatusCode::OK) > 0);
    let before = send(&mut per_user, Duration::from_millis(300), Some("ada")).await;
    assert!(count(&before, StatusCode::OK) > 0);

    redis.stop();
    // Reserved fuel lives at most its hold (100 ms); then nothing is granted.
    tokio::time::sleep(Duration::from_millis(400)).await;
    // The first request may wait for a round trip that fails (at most the
    // store's timeout): until then the store is not known down.
    for (statuses, layer) in [
        (
            send(&mut plain, Duration::from_millis(1000), None).await,
            "plain",
        ),
        (
            send(&mut per_user, Duration::from_millis(1000), Some("ada")).await,
            "keyed",
        ),
    ] {
        assert_eq!(
            count(&statuses, StatusCode::OK)
                + count(&statuses, StatusCode::TOO_MANY_REQUESTS)
                + count(&statuses, StatusCode::SERVICE_UNAVAILABLE),
            statuses.len() as u64,
            "{layer}: only 200s, 429s and 503s: {statuses:?}"
        );
        // The first refusals may come before a round trip has failed.
        let after_reserve = &statuses[statuses.len() / 2..];
        assert!(
            after_reserve
                .iter()
                .all(|&s| s == StatusCode::SERVICE_UNAVAILABLE),
            "{layer}: with Redis gone, Closed grants nothing, and says the store is down: \
             {statuses:?}"
        );
    }
    // Known down, the store is not asked again for each request (its tanks
    // probe it by themselves): a refusal is at once, not after the store's
    // timeout (500 ms).
    let asked = Instant::now();
    assert_outage(&one(&mut plain[0], "ada").await, "redis tank `gone`");
    assert_outage(
        &one(&mut per_user[0], "ada").await,
        "redis keyed tank `gone-per-user`",
    );
    // A key new here is refused alike: the store is down for every key.
    assert_outage(
        &one(&mut per_user[0], "bob").await,
        "redis keyed tank `gone-per-user`",
    );
    assert!(
        asked.elapsed() < Duration::from_millis(400),
        "three refusals while the store is known down took {:?}",
        asked.elapsed()
    );
    assert!(
        store.stats().store_errors > 0,
        "the store counted its failures"
    );

    redis.restart();
    let started = Instant::now();
    loop {
        let plain_back = send(&mut plain, Duration::from_millis(100), None).await;
        let keyed_back = send(&mut per_user, Duration::from_millis(100), Some("ada")).await;
        if count(&plain_back, StatusCode::OK) > 0 && count(&keyed_back, StatusCode::OK) > 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "Redis is back but nothing is served: {plain_back:?} {keyed_back:?}"
        );
    }
}

fn header(response: &Response<String>, name: &str) -> u64 {
    response.headers()[name].to_str().unwrap().parse().unwrap()
}

/// The `RateLimit` headers of a Redis budget are as true as a local tank's:
/// `Limit` is `max_n`, as for a local tank (the policy's quota is the
/// rate's, not the bank's), `Remaining` what a newcomer here could take now
/// (none on a 429; on a 200, that many are taken at once right after),
/// `Reset` the time until the bank in Redis is full (never 0 while it is
/// drained).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ratelimit_headers_of_a_redis_budget_are_true() {
    let redis = RedisServer::start();
    let (a, b) = (
        store(&redis, FailurePolicy::Closed).await,
        store(&redis, FailurePolicy::Closed).await,
    );
    let api = rate("100/s");
    let tanks = [
        a.tank("headers", api).build().await.unwrap(),
        b.tank("headers", api).build().await.unwrap(),
    ];
    let bank = tanks[0].capacity();
    assert_eq!(bank, 90, "100/s with a hold of 100 ms banks 90");
    let mut services: Vec<_> = tanks
        .iter()
        .map(|tank| {
            ThrottleLayer::new(tank.clone())
                .reject()
                .http()
                .layer(hello())
        })
        .collect();
    let started = Instant::now();
    let (mut shed, mut told) = (0, 0);
    let mut resets = Vec::new();
    while started.elapsed() < Duration::from_millis(1500) {
        for (svc, tank) in services.iter_mut().zip(&tanks) {
            let response = svc
                .ready()
                .await
                .unwrap()
                .call(Request::new(()))
                .await
                .unwrap();
            assert_eq!(header(&response, "ratelimit-limit"), api.max_n());
            let remaining = header(&response, "ratelimit-remaining");
            let reset = header(&response, "ratelimit-reset");
            if response.status() == StatusCode::TOO_MANY_REQUESTS {
                shed += 1;
                // A unit may start between the refusal and the headers.
                assert!(remaining <= 1, "a 429 said {remaining} remaining");
                resets.push(reset);
            } else if remaining > 0 {
                told += 1;
                let taken = (0..remaining).filter(|_| tank.has_fuel()).count() as u64;
                assert_eq!(taken, remaining, "a 200 said {remaining} remaining");
            }
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert!(shed > 0, "greedy clients were never shed");
    assert!(told > 0, "no response ever said fuel remained");
    // Shed: the bank is drained, and Redis's schedule runs ahead by what
    // the two instances reserved (each at most a batch and a half of
    // `reserve_ahead`, 500 ms of the rate): full in 0.9 s after that, at
    // most 2.4 s, 3 rounded up.
    assert!(
        resets.iter().all(|&reset| (1..=3).contains(&reset)),
        "RateLimit-Reset of 429s: {resets:?}"
    );
}
