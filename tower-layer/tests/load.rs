//! Loopback load: 64 concurrent HTTP/1.1 connections against the axum
//! example's app for a few seconds, bounded in time and in count.
//!
//! - 56 connections hammer `/` (shed with 429); 8 hammer `/queued` (wait)
//!   with a 50 ms client timeout, so many requests are cancelled while they
//!   wait in the tank's line.
//! - No more requests pass (counted by the server) than each tank allows.
//! - No fuel leaks: once the clients stop, both tanks refill to their cap
//!   and nobody is left in line.
//! - Latency percentiles are printed (`--nocapture` to see them).
//!
//! Real time on a shared machine: the bounds are the tanks' hard limits,
//! which load does not loosen; only the lower bound on what passes has
//! slack.

#[path = "../examples/axum.rs"]
#[allow(dead_code)]
mod example;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::middleware::{self, Next};
use fueltank::{KeyedTank, Rate, Tank};
use http::StatusCode;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

const CONNECTIONS: usize = 64;
const QUEUED_CONNECTIONS: usize = 8;
const RUN_FOR: Duration = Duration::from_secs(3);
/// Per connection: the count bound of the run.
const MAX_REQUESTS: usize = 4_000;
const QUEUED_TIMEOUT: Duration = Duration::from_millis(50);

const GLOBAL_PER_SECOND: u64 = 200;
const QUEUED_PER_SECOND: u64 = 100;

#[derive(Default)]
struct Worker {
    ok: u64,
    shed: u64,
    timed_out: u64,
    errors: u64,
    latencies: Vec<Duration>,
}

async fn connect(
    addr: SocketAddr,
) -> Option<hyper::client::conn::http1::SendRequest<Empty<Bytes>>> {
    let stream = TcpStream::connect(addr).await.ok()?;
    stream.set_nodelay(true).ok()?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .ok()?;
    tokio::spawn(connection);
    Some(sender)
}

/// Sends `GET path` back to back on one connection until `deadline` or
/// `MAX_REQUESTS`; reconnects after a timeout or an error.
async fn worker(
    addr: SocketAddr,
    path: &'static str,
    deadline: Instant,
    timeout: Option<Duration>,
) -> Worker {
    let mut stats = Worker::default();
    let mut sent = 0;
    'connection: while Instant::now() < deadline && sent < MAX_REQUESTS {
        let Some(mut sender) = connect(addr).await else {
            stats.errors += 1;
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        while Instant::now() < deadline && sent < MAX_REQUESTS {
            if sender.ready().await.is_err() {
                stats.errors += 1;
                continue 'connection;
            }
            let request = http::Request::get(path)
                .header(http::header::HOST, "loopback")
                .body(Empty::<Bytes>::new())
                .unwrap();
            sent += 1;
            let started = Instant::now();
            let exchange = async {
                let response = sender.send_request(request).await?;
                let status = response.status();
                response.into_body().collect().await?;
                Ok::<_, hyper::Error>(status)
            };
            let outcome = match timeout {
                Some(limit) => tokio::time::timeout(limit, exchange).await,
                None => Ok(exchange.await),
            };
            match outcome {
                Ok(Ok(status)) => {
                    stats.latencies.push(started.elapsed());
                    match status {
                        StatusCode::OK => stats.ok += 1,
                        StatusCode::TOO_MANY_REQUESTS => stats.shed += 1,
                        _ => stats.errors += 1,
                    }
                }
                // The request is cancelled: drop the connection with it.
                Err(_elapsed) => {
                    stats.timed_out += 1;
                    continue 'connection;
                }
                Ok(Err(_)) => {
                    stats.errors += 1;
                    continue 'connection;
                }
            }
        }
        break;
    }
    stats
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_connections_never_pass_more_than_allowed_and_leak_no_fuel() {
    let global = Tank::builder(Rate::per_second(GLOBAL_PER_SECOND).unwrap())
        .initial(GLOBAL_PER_SECOND)
        .build()
        .unwrap();
    let queued = Tank::new(Rate::per_second(QUEUED_PER_SECOND).unwrap());
    let born = Instant::now();

    // Count, on the server, the requests let through on each route.
    let passed_global = Arc::new(AtomicU64::new(0));
    let passed_queued = Arc::new(AtomicU64::new(0));
    let counting = {
        let (global, queued) = (passed_global.clone(), passed_queued.clone());
        middleware::from_fn(move |request: Request, next: Next| {
            let counter = match request.uri().path() {
                "/queued" => queued.clone(),
                _ => global.clone(),
            };
            async move {
                let response = next.run(request).await;
                if response.status() == StatusCode::OK {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                response
            }
        })
    };
    // Every connection comes from 127.0.0.1: one key, with budget to spare,
    // so the per-IP layer is on every request's path but never the limit.
    let per_ip = KeyedTank::new(Rate::per_second(1_000_000).unwrap());
    let app = example::app(global.clone(), per_ip, queued.clone()).layer(counting);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(example::serve(listener, app));

    let deadline = Instant::now() + RUN_FOR;
    let workers: Vec<_> = (0..CONNECTIONS)
        .map(|i| {
            if i < QUEUED_CONNECTIONS {
                tokio::spawn(worker(addr, "/queued", deadline, Some(QUEUED_TIMEOUT)))
            } else {
                tokio::spawn(worker(addr, "/", deadline, None))
            }
        })
        .collect();
    let mut shed_route = Worker::default();
    let mut queued_route = Worker::default();
    for (i, handle) in workers.into_iter().enumerate() {
        let stats = tokio::time::timeout(Duration::from_secs(30), handle)
            .await
            .expect("a worker outlived its deadline by 30 s")
            .unwrap();
        let total = if i < QUEUED_CONNECTIONS {
            &mut queued_route
        } else {
            &mut shed_route
        };
        total.ok += stats.ok;
        total.shed += stats.shed;
        total.timed_out += stats.timed_out;
        total.errors += stats.errors;
        total.latencies.extend(stats.latencies);
    }
    let lived = born.elapsed();
    let passed_global = passed_global.load(Ordering::Relaxed);
    let passed_queued = passed_queued.load(Ordering::Relaxed);

    // The tanks' hard limits: what they started with, plus one per interval.
    let allowed = |initial: u64, per_second: u64| {
        initial + (lived.as_secs_f64() * per_second as f64).floor() as u64 + 1
    };
    let allowed_global = allowed(GLOBAL_PER_SECOND, GLOBAL_PER_SECOND);
    let allowed_queued = allowed(1, QUEUED_PER_SECOND);

    shed_route.latencies.sort();
    queued_route.latencies.sort();
    let sent = shed_route.ok + shed_route.shed + shed_route.errors;
    println!(
        "loopback load: {CONNECTIONS} connections for {:?} (tanks alive {:.2} s)",
        RUN_FOR,
        lived.as_secs_f64()
    );
    println!(
        "  /       : {sent} requests ({:.0}/s), passed {passed_global} (client saw {}) of \
         {allowed_global} allowed, 429: {}, errors: {}",
        sent as f64 / RUN_FOR.as_secs_f64(),
        shed_route.ok,
        shed_route.shed,
        shed_route.errors,
    );
    println!(
        "            latency p50 {:?}, p90 {:?}, p99 {:?}, max {:?}",
        percentile(&shed_route.latencies, 0.50),
        percentile(&shed_route.latencies, 0.90),
        percentile(&shed_route.latencies, 0.99),
        percentile(&shed_route.latencies, 1.0),
    );
    println!(
        "  /queued : passed {passed_queued} (client saw {}) of {allowed_queued} allowed, \
         cancelled by the client's {QUEUED_TIMEOUT:?} timeout: {}, errors: {}",
        queued_route.ok, queued_route.timed_out, queued_route.errors,
    );
    println!(
        "            latency of the served: p50 {:?}, p99 {:?}",
        percentile(&queued_route.latencies, 0.50),
        percentile(&queued_route.latencies, 0.99),
    );

    assert!(
        passed_global <= allowed_global,
        "{passed_global} passed, {allowed_global} allowed"
    );
    assert!(
        passed_queued <= allowed_queued,
        "{passed_queued} passed, {allowed_queued} allowed"
    );
    assert_eq!(shed_route.errors, 0, "no request on / failed");
    assert_eq!(
        shed_route.ok, passed_global,
        "every pass on / reached its client"
    );
    assert!(shed_route.shed > 0, "the limit was reached");
    // Loose lower bounds: the limiter must not starve the clients.
    assert!(
        passed_global * 2 >= allowed_global,
        "only {passed_global} of {allowed_global} passed"
    );
    assert!(passed_queued > 0 && queued_route.timed_out > 0);

    // No leak: with the clients gone, both tanks refill to their cap and
    // nobody is left in line (a cancelled request's wait left it).
    let stopped = Instant::now();
    loop {
        let full = global.level() == GLOBAL_PER_SECOND
            && queued.level() == QUEUED_PER_SECOND
            && global.waiting() == 0
            && queued.waiting() == 0;
        if full {
            break;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(5),
            "not refilled 5 s after the load: global {} waiting {}, queued {} waiting {}",
            global.level(),
            global.waiting(),
            queued.level(),
            queued.waiting()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "  refilled to cap (global {}, queued {}) {:?} after the load stopped",
        global.level(),
        queued.level(),
        stopped.elapsed()
    );
    server.abort();
}
