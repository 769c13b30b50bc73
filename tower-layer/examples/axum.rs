//! An axum server behind fueltank: one global limit that answers 429 with
//! `Retry-After` and the `RateLimit` headers, a route that queues instead,
//! and the client key a per-IP limit would use.
//!
//! ```sh
//! cargo run -p fueltank-tower --example axum --features axum            # serve on 127.0.0.1:3000
//! cargo run -p fueltank-tower --example axum --features axum -- --demo  # serve, send requests, exit
//! for i in 1 2 3 4 5 6; do curl -si http://127.0.0.1:3000/ | head -n 6; done
//! ```
//!
//! Routes:
//!
//! - `GET /`: the global limit, shedding: without fuel, `429 Too Many
//!   Requests` with `Retry-After` (whole seconds, rounded up).
//! - `GET /whoami`: the same limit; says which key a per-client limit would
//!   give this request: the peer address, or, opted into explicitly, the
//!   `X-Forwarded-For` address your one proxy appended.
//! - `GET /queued`: its own limit, waiting instead of shedding: a request
//!   waits in the tank's fair line for its fuel.
//!
//! The tests in `tower-layer/tests/axum.rs` and `tests/load.rs` start this
//! very app on `127.0.0.1:0`.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::routing::get;
use fueltank::{Rate, Tank};
use fueltank_tower::ThrottleLayer;
use fueltank_tower::key::{ForwardedIp, KeyExtractor, PeerIp};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

/// The app: `/` and `/whoami` share the `global` tank and shed with 429;
/// `/queued` waits on the `queued` tank.
pub fn app(global: Tank, queued: Tank) -> Router {
    let shed = Router::new()
        .route("/", get(|| async { "hello\n" }))
        .route("/whoami", get(whoami))
        .layer(ThrottleLayer::from_tank(global).reject().http());
    let wait = Router::new()
        .route("/queued", get(|| async { "served in turn\n" }))
        .layer(ThrottleLayer::from_tank(queued).http());
    shed.merge(wait)
}

/// The key a per-client limit would use for this request.
async fn whoami(request: Request) -> String {
    // Trusting X-Forwarded-For is opt-in: only behind a proxy you run, which
    // appends the client's address (see `ForwardedIp`'s spoofing notes).
    // Here: one proxy, or else the TCP peer.
    let key = ForwardedIp::x_forwarded_for().or(PeerIp);
    match key.extract(&request) {
        Ok(ip) => format!("{ip}\n"),
        Err(err) => format!("no key: {err}\n"),
    }
}

/// Serves `app` on `listener` with the peer address available to
/// [`PeerIp`], until the task is dropped.
pub async fn serve(listener: TcpListener, app: Router) -> std::io::Result<()> {
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await
}

/// A client's answer: status, headers and body.
pub type Answer = (http::StatusCode, http::HeaderMap, String);

/// One `GET` with `headers` on a new connection.
pub async fn get_once(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Answer, Box<dyn std::error::Error + Send + Sync>> {
    let stream = TcpStream::connect(addr).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let mut request = http::Request::get(path).header(http::header::HOST, addr.to_string());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Empty::<Bytes>::new())?;
    let response = sender.send_request(request).await?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok((
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&body).into_owned(),
    ))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let demo = std::env::args().any(|arg| arg == "--demo");
    // Five requests a second, in bursts of up to five after a quiet spell.
    let global = Tank::builder(Rate::per_second(5)?).initial(5).build()?;
    let queued = Tank::new(Rate::per_second(5)?);
    let addr = if demo {
        "127.0.0.1:0"
    } else {
        "127.0.0.1:3000"
    };
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(serve(listener, app(global, queued)));
    println!("listening on http://{addr}/ (also /whoami and /queued)");
    if !demo {
        server.await??;
        return Ok(());
    }
    for i in 1..=7 {
        let (status, headers, _) = get_once(addr, "/", &[]).await?;
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_string()
        };
        println!(
            "GET / #{i}: {status}  RateLimit-Limit: {}  RateLimit-Remaining: {}  \
             RateLimit-Reset: {}  Retry-After: {}",
            header("ratelimit-limit"),
            header("ratelimit-remaining"),
            header("ratelimit-reset"),
            header("retry-after"),
        );
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (status, _, _) = get_once(addr, "/", &[]).await?;
    println!("after Retry-After (1 s): GET / -> {status}");
    let (_, _, body) = get_once(addr, "/whoami", &[]).await?;
    print!("GET /whoami -> {body}");
    // The queued tank has filled up meanwhile: five at once, then one per 200 ms.
    let started = std::time::Instant::now();
    for _ in 0..8 {
        get_once(addr, "/queued", &[]).await?;
    }
    println!(
        "8 x GET /queued (5/s, waiting, no 429) took {:?}",
        started.elapsed()
    );
    server.abort();
    Ok(())
}
