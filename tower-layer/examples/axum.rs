//! An axum server behind fueltank: a per-IP limit and a global limit that
//! answer 429 with `Retry-After` and the `RateLimit` headers, a route that
//! queues instead, and the client key a per-IP limit uses.
//!
//! ```sh
//! cargo run -p fueltank-tower --example axum --features axum            # serve on 127.0.0.1:3000
//! cargo run -p fueltank-tower --example axum --features axum -- --demo  # serve, send requests, exit
//! for i in 1 2 3 4 5 6; do curl -si http://127.0.0.1:3000/ | head -n 6; done
//! ```
//!
//! Routes:
//!
//! - `GET /`: two limits, shedding. First the client's own (keyed by its
//!   peer address, IPv6 clients by their /64), then the global one shared
//!   by all. Without fuel in either, `429 Too Many Requests` with
//!   `Retry-After` (whole seconds, rounded up); the `RateLimit` headers
//!   tell the tighter of the two.
//! - `GET /whoami`: the same limits; says which key the per-IP limit gave
//!   this request, and which one `X-Forwarded-For` would give behind one
//!   proxy you run (opt-in, see `ForwardedIp`).
//! - `GET /queued`: its own limit, waiting instead of shedding: a request
//!   waits in the tank's fair line for its fuel, at most 2 s; one whose
//!   fuel cannot come within 2 s gets a 429 at once.
//!
//! A 429 says in its body which limit shed it (`global`, `per-ip` or
//! `queued`) and when to retry.
//!
//! The tests in `tower-layer/tests/axum.rs` and `tests/load.rs` start this
//! very app on `127.0.0.1:0`.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::routing::get;
use fueltank::{KeyedTank, Rate, Tank};
use fueltank_tower::key::{ConnectInfoIp, ForwardedIp, KeyExtractor};
use fueltank_tower::{KeyedThrottleLayer, ThrottleLayer};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// The app: `/` and `/whoami` spend from the client's own tank in
/// `per_ip`, then from the `global` tank, and shed with 429; `/queued`
/// waits on the `queued` tank, at most 2 s.
pub fn app(global: Tank, per_ip: KeyedTank<IpAddr>, queued: Tank) -> Router {
    let shed = Router::new()
        .route("/", get(|| async { "hello\n" }))
        .route("/whoami", get(whoami))
        // The last layer added runs first: the per-IP limit, so a client
        // over its own budget is shed before it spends the global one.
        .layer(ThrottleLayer::new(global).reject().label("global").http())
        .layer(
            KeyedThrottleLayer::new(per_ip, client())
                .reject()
                .label("per-ip")
                .http(),
        );
    let wait = Router::new()
        .route("/queued", get(|| async { "served in turn\n" }))
        .layer(
            ThrottleLayer::new(queued)
                .max_wait(Duration::from_secs(2))
                .label("queued")
                .http(),
        );
    shed.merge(wait)
}

/// The per-IP key: the TCP peer, as axum passes it (`ConnectInfoIp` exists
/// only with fueltank-tower's `axum` feature, so this does not build
/// without it), IPv6 clients by their /64 (one client, one key, whichever
/// of its addresses it uses).
fn client() -> fueltank_tower::key::Ipv6Net64<ConnectInfoIp> {
    ConnectInfoIp.ipv6_net64()
}

/// The key the per-IP limit used for this request, and the one a proxy's
/// `X-Forwarded-For` would give.
async fn whoami(request: Request) -> String {
    let key = match client().extract(&request) {
        Ok(ip) => ip.to_string(),
        Err(err) => format!("no key: {err}"),
    };
    // Trusting X-Forwarded-For is opt-in: only behind a proxy you run, which
    // appends the client's address (see `ForwardedIp`'s spoofing notes).
    // Here: one proxy, or else the TCP peer.
    let forwarded = ForwardedIp::x_forwarded_for().or(ConnectInfoIp);
    match forwarded.extract(&request) {
        Ok(ip) if ip.to_string() != key => format!("{key}\nbehind a proxy: {ip}\n"),
        _ => format!("{key}\n"),
    }
}

/// Serves `app` on `listener` with the peer address available to
/// [`ConnectInfoIp`], until the task is dropped.
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
    request(stream, addr, path, headers).await
}

/// One `GET` on a new connection from the local address `from` (on Linux,
/// every `127.x.y.z` is the loopback: a second client on one machine).
pub async fn get_once_from(
    from: IpAddr,
    addr: SocketAddr,
    path: &str,
) -> Result<Answer, Box<dyn std::error::Error + Send + Sync>> {
    let socket = match from {
        IpAddr::V4(_) => TcpSocket::new_v4()?,
        IpAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.bind(SocketAddr::new(from, 0))?;
    let stream = socket.connect(addr).await?;
    request(stream, addr, path, &[]).await
}

async fn request(
    stream: TcpStream,
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Answer, Box<dyn std::error::Error + Send + Sync>> {
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
    // All clients together: ten requests a second, in bursts of up to ten.
    let global = Tank::builder(Rate::per_second(10)?).initial(10).build()?;
    // Each client: three per 3 s; a new client starts with its three.
    let per_ip = KeyedTank::builder("3/3s".parse()?)
        .max_keys(100_000)
        .build()?;
    let queued = Tank::new(Rate::per_second(5)?);
    let addr = if demo {
        "127.0.0.1:0"
    } else {
        "127.0.0.1:3000"
    };
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(serve(listener, app(global, per_ip, queued)));
    println!("listening on http://{addr}/ (also /whoami and /queued)");
    if !demo {
        server.await??;
        return Ok(());
    }
    let print = |what: &str, (status, headers, _): &Answer| {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_string()
        };
        println!(
            "{what}: {status}  RateLimit-Limit: {}  RateLimit-Remaining: {}  \
             RateLimit-Reset: {}  Retry-After: {}",
            header("ratelimit-limit"),
            header("ratelimit-remaining"),
            header("ratelimit-reset"),
            header("retry-after"),
        );
    };
    let (_, _, body) = get_once(addr, "/whoami", &[("x-forwarded-for", "203.0.113.5")]).await?;
    print!("GET /whoami -> {body}");
    // One client over its own limit (whoami took one of its three)...
    for i in 1..=3 {
        print(
            &format!("GET / #{i} from 127.0.0.1"),
            &get_once(addr, "/", &[]).await?,
        );
    }
    // ...does not hold up another (Linux: any 127.x.y.z is the loopback).
    match get_once_from("127.0.0.2".parse()?, addr, "/").await {
        Ok(answer) => print("GET / from 127.0.0.2", &answer),
        Err(err) => println!("GET / from 127.0.0.2: no second loopback address here ({err})"),
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    print(
        "after Retry-After (1 s), from 127.0.0.1",
        &get_once(addr, "/", &[]).await?,
    );
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
