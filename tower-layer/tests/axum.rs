//! The axum example's app on `127.0.0.1:0`, real HTTP/1.1 over loopback:
//! the first requests pass, the rest get 429 with the right headers, and
//! after waiting `Retry-After` requests pass again; a client over its
//! per-IP limit is shed while another client (from `127.0.0.2`) passes.
//!
//! Real time: the rates leave seconds of slack, so a loaded machine does
//! not change the outcome.

#[path = "../examples/axum.rs"]
#[allow(dead_code)]
mod example;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use fueltank::{KeyedTank, Rate, Tank};
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
    let queued = Tank::new(Rate::per_second(10).unwrap());
    let addr = start(idle(), idle_per_ip(), queued).await;
    let started = Instant::now();
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
