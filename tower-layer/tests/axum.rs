//! The axum example's app on `127.0.0.1:0`, real HTTP/1.1 over loopback:
//! the first requests pass, the rest get 429 with the right headers, and
//! after waiting `Retry-After` requests pass again; a client over its
//! per-IP limit is shed while another client (from `127.0.0.2`) passes.
//! And a per-IP limit with costs from a header, an exempt `/health` and
//! shadow mode, served the same way.
//!
//! Real time: the rates leave seconds of slack, so a loaded machine does
//! not change the outcome.

#[path = "../examples/axum.rs"]
#[allow(dead_code)]
mod example;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use fueltank::{KeyedTank, Rate, Tank};
use fueltank_tower::key::ConnectInfoIp;
use fueltank_tower::{KeyedThrottleLayer, Stats};
use http::{HeaderMap, StatusCode};
use tokio::net::TcpListener;

async fn start(global: Tank, per_ip: KeyedTank<IpAddr>, queued: Tank) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(example::serve(
        listener,
        example::app(global, per_ip, queued),
    ));
    addr
}

fn number(headers: &HeaderMap, name: &str) -> u64 {
    headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header in {headers:?}"))
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

fn idle() -> Tank {
    Tank::new(Rate::per_second(1000).unwrap())
}

/// A per-IP limit that never limits these tests.
fn idle_per_ip() -> KeyedTank<IpAddr> {
    KeyedTank::new(Rate::per_second(1000).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_then_429_then_pass_after_retry_after() {
    // Three at once, then one every 3 s: nothing refills during the test's
    // first part unless the machine stalls for 3 s.
    let global = Tank::builder(Rate::new(3, Duration::from_secs(9)).unwrap())
        .initial(3)
        .build()
        .unwrap();
    let addr = start(global.clone(), idle_per_ip(), idle()).await;

    for remaining in [2, 1, 0] {
        let (status, headers, body) = example::get_once(addr, "/", &[]).await.unwrap();
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, "hello\n");
        assert_eq!(number(&headers, "ratelimit-limit"), 3);
        assert_eq!(number(&headers, "ratelimit-remaining"), remaining);
        let reset = number(&headers, "ratelimit-reset");
        assert!((1..=9).contains(&reset), "reset {reset}");
        assert!(headers.get("retry-after").is_none());
    }

    let mut retry_after = 0;
    for _ in 0..5 {
        let (status, headers, body) = example::get_once(addr, "/", &[]).await.unwrap();
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        retry_after = number(&headers, "retry-after");
        // The next fuel is at most 3 s away: whole seconds, rounded up, not 0.
        assert!((1..=3).contains(&retry_after), "retry-after {retry_after}");
        // The body says which limit, and when to retry.
        assert_eq!(
            body,
            format!("Too Many Requests (global limit): retry after {retry_after} s\n")
        );
        assert_eq!(headers["content-type"], "text/plain; charset=utf-8");
        assert_eq!(number(&headers, "ratelimit-limit"), 3);
        assert_eq!(number(&headers, "ratelimit-remaining"), 0);
        let reset = number(&headers, "ratelimit-reset");
        assert!((retry_after..=9).contains(&reset), "reset {reset}");
    }

    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    let (status, headers, _) = example::get_once(addr, "/", &[]).await.unwrap();
    assert_eq!(status, StatusCode::OK, "after Retry-After: {headers:?}");
    let (status, _, _) = example::get_once(addr, "/", &[]).await.unwrap();
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "and only one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whoami_shows_the_peer_and_the_opted_in_forwarded_address() {
    let addr = start(idle(), idle_per_ip(), idle()).await;
    let (status, _, body) = example::get_once(addr, "/whoami", &[]).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "127.0.0.1\n", "the peer, from ConnectInfo");

    // One proxy: the address it appended, not the client-written one. The
    // per-IP limit still keys by the peer: the header is opt-in.
    let forwarded = [("x-forwarded-for", "10.6.6.6, 203.0.113.5")];
    let (_, _, body) = example::get_once(addr, "/whoami", &forwarded)
        .await
        .unwrap();
    assert_eq!(body, "127.0.0.1\nbehind a proxy: 203.0.113.5\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queued_route_waits_instead_of_shedding() {
    // Before the tank: its fuel comes on its clock from when it is built,
    // so a slow start must not count against the bound below.
    let started = Instant::now();
    let queued = Tank::new(Rate::per_second(10).unwrap());
    let addr = start(idle(), idle_per_ip(), queued).await;
    let mut tasks = Vec::new();
    for _ in 0..4 {
        tasks.push(tokio::spawn(async move {
            example::get_once(addr, "/queued", &[]).await.unwrap()
        }));
    }
    for task in tasks {
        let (status, headers, _) = task.await.unwrap();
        assert_eq!(status, StatusCode::OK);
        assert_eq!(number(&headers, "ratelimit-limit"), 10);
    }
    // One at once, then one per 100 ms.
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(290), "{elapsed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_ip_limit_sheds_one_client_and_not_another() {
    // Two per client, then one every 10 s: nothing refills during the test
    // unless the machine stalls for 10 s. The global limit never limits.
    let per_ip = KeyedTank::builder(Rate::new(2, Duration::from_secs(20)).unwrap())
        .build()
        .unwrap();
    // Full, so that it is never the tighter limit in the headers.
    let global = Tank::builder(Rate::per_second(1000).unwrap())
        .initial(1000)
        .build()
        .unwrap();
    let addr = start(global, per_ip.clone(), idle()).await;
    let first: IpAddr = "127.0.0.1".parse().unwrap();

    for remaining in [1, 0] {
        let (status, headers, body) = example::get_once(addr, "/", &[]).await.unwrap();
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, "hello\n");
        // The tighter of the two limits: the client's own.
        assert_eq!(number(&headers, "ratelimit-limit"), 2);
        assert_eq!(number(&headers, "ratelimit-remaining"), remaining);
    }
    for _ in 0..3 {
        let (status, headers, body) = example::get_once(addr, "/", &[]).await.unwrap();
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        let retry_after = number(&headers, "retry-after");
        assert!((1..=10).contains(&retry_after), "retry-after {retry_after}");
        assert_eq!(
            body,
            format!("Too Many Requests (per-ip limit): retry after {retry_after} s\n")
        );
        assert_eq!(number(&headers, "ratelimit-limit"), 2);
        assert_eq!(number(&headers, "ratelimit-remaining"), 0);
        let reset = number(&headers, "ratelimit-reset");
        assert!((retry_after..=20).contains(&reset), "reset {reset}");
    }
    assert_eq!(per_ip.level(&first), 0);

    // Another client, from another loopback address, has its own budget.
    let second: IpAddr = "127.0.0.2".parse().unwrap();
    match example::get_once_from(second, addr, "/").await {
        Ok((status, headers, _)) => {
            assert_eq!(status, StatusCode::OK);
            assert_eq!(number(&headers, "ratelimit-remaining"), 1);
            let (_, _, body) = example::get_once_from(second, addr, "/whoami")
                .await
                .unwrap();
            assert_eq!(body, "127.0.0.2\n");
            assert_eq!(per_ip.level(&second), 0);
            assert_eq!(per_ip.len(), 2);
        }
        // Not Linux: 127.0.0.2 may not be a local address.
        Err(err) => println!("skipped the second client: {err}"),
    }
    // And the first is still shed.
    let (status, _, _) = example::get_once(addr, "/", &[]).await.unwrap();
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
}

/// The cost of a request to `/` and `/health` in these tests: its `x-cost`
/// header, 1 without one.
fn x_cost(request: &axum::extract::Request) -> u64 {
    request
        .headers()
        .get("x-cost")
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .unwrap_or(1)
}

/// `/` and `/health` behind a per-IP limit with costs from `x-cost`, where
/// `/health` is exempt; `shadow` only counts what it would shed.
async fn start_costing(per_ip: KeyedTank<IpAddr>, stats: Stats, shadow: bool) -> SocketAddr {
    let mut limit = KeyedThrottleLayer::new(per_ip, ConnectInfoIp)
        .reject()
        .cost(x_cost)
        .exempt(|request: &axum::extract::Request| request.uri().path() == "/health")
        .stats(stats);
    if shadow {
        limit = limit.shadow();
    }
    let app = axum::Router::new()
        .route("/", axum::routing::get(|| async { "hello\n" }))
        .route("/health", axum::routing::get(|| async { "ok\n" }))
        .layer(limit.http());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(example::serve(listener, app));
    addr
}

/// Ten units per client, then one a minute: nothing refills during the test
/// unless the machine stalls for a minute, so the counts are exact.
fn ten_a_client() -> KeyedTank<IpAddr> {
    KeyedTank::builder(Rate::new(10, Duration::from_secs(600)).unwrap())
        .build()
        .unwrap()
}

async fn get_costing(addr: SocketAddr, path: &str, cost: u64) -> example::Answer {
    let cost = cost.to_string();
    example::get_once(addr, path, &[("x-cost", &cost)])
        .await
        .unwrap()
}

/// Over real HTTP: a request spends its cost in units (`RateLimit-Remaining`
/// counts units), one costing more than is left gets 429 with
/// `Retry-After`, one costing more than the tank can ever hold the layer's
/// 400, and the exempt `/health` always passes and spends nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn costs_are_spent_in_units_and_health_is_exempt() {
    let per_ip = ten_a_client();
    let stats = Stats::new();
    let addr = start_costing(per_ip.clone(), stats.clone(), false).await;
    let me: IpAddr = "127.0.0.1".parse().unwrap();

    let (status, headers, body) = get_costing(addr, "/", 4).await;
    assert_eq!((status, &*body), (StatusCode::OK, "hello\n"));
    assert_eq!(number(&headers, "ratelimit-limit"), 10);
    assert_eq!(number(&headers, "ratelimit-remaining"), 6, "4 units spent");

    let (status, headers, _) = get_costing(addr, "/", 7).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "7 of 6");
    assert_eq!(number(&headers, "ratelimit-remaining"), 6, "nothing spent");
    // One unit short, at one a minute.
    let retry_after = number(&headers, "retry-after");
    assert!((1..=60).contains(&retry_after), "retry-after {retry_after}");

    let (status, headers, body) = get_costing(addr, "/", 11).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "11 > capacity 10: {body}");
    assert!(
        headers.get("retry-after").is_none(),
        "never served: {headers:?}"
    );
    assert!(
        body.contains("11") && body.contains("10"),
        "says why: {body}"
    );

    for cost in [1, 100] {
        let (status, headers, body) = get_costing(addr, "/health", cost).await;
        assert_eq!((status, &*body), (StatusCode::OK, "ok\n"), "cost {cost}");
        assert!(headers.get("ratelimit-remaining").is_none(), "{headers:?}");
    }
    assert_eq!(per_ip.level(&me), 6, "/health spent nothing");

    let (status, headers, _) = get_costing(addr, "/", 6).await;
    assert_eq!(status, StatusCode::OK, "exactly what is left");
    assert_eq!(number(&headers, "ratelimit-remaining"), 0);
    let (status, _, _) = get_costing(addr, "/", 1).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    // Empty, and still exempt.
    let (status, _, _) = get_costing(addr, "/health", 1).await;
    assert_eq!(status, StatusCode::OK);

    assert_eq!(per_ip.level(&me), 0);
    assert_eq!(stats.admitted().total(), 2, "the exempt are not counted");
    assert_eq!(stats.rejected().total(), 2);
}

/// Over real HTTP, shadow mode: every request within capacity is served,
/// the ones admitted spend their cost, and those the limit would have shed
/// are counted in `Stats::shadowed` and spend nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_mode_serves_everything_and_counts_what_it_would_shed() {
    let per_ip = ten_a_client();
    let stats = Stats::new();
    let addr = start_costing(per_ip.clone(), stats.clone(), true).await;
    let me: IpAddr = "127.0.0.1".parse().unwrap();

    // 4 + 4 spend 8; the next two 4s would be shed; 2 fits again.
    for cost in [4, 4, 4, 4, 2] {
        let (status, _, body) = get_costing(addr, "/", cost).await;
        assert_eq!((status, &*body), (StatusCode::OK, "hello\n"), "cost {cost}");
    }
    let (status, _, _) = get_costing(addr, "/health", 100).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(stats.shadowed().total(), 2, "the two 4s beyond the fuel");
    assert_eq!(stats.rejected().total(), 0);
    assert_eq!(
        per_ip.level(&me),
        0,
        "4 + 4 + 2: the shadowed spent nothing"
    );
    // Empty: still served, and counted.
    let (status, _, _) = get_costing(addr, "/", 1).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(stats.shadowed().total(), 3);
    // A request no limit could ever let through is still a 400.
    let (status, _, _) = get_costing(addr, "/", 11).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(stats.shadowed().total(), 3);
}
