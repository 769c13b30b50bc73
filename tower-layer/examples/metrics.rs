//! The layers' `Stats` as a Prometheus text page: an axum server whose `/`
//! sits behind a per-IP limit (shedding) and a global limit (waiting at
//! most 250 ms), and whose `/metrics` shows what each admitted, rejected
//! and made wait, with the wait-time quantiles.
//!
//! ```sh
//! cargo run -p fueltank-tower --example metrics --features axum            # serve on 127.0.0.1:3001
//! cargo run -p fueltank-tower --example metrics --features axum -- --demo  # serve, send requests, print /metrics, exit
//! curl -s http://127.0.0.1:3001/metrics
//! ```
//!
//! The page is the Prometheus text exposition format (version 0.0.4),
//! which Prometheus, VictoriaMetrics, the OpenTelemetry collector and
//! Grafana Agent scrape as it is:
//!
//! ```text
//! # TYPE fueltank_requests_total counter
//! fueltank_requests_total{limit="global",outcome="admitted"} 20
//! fueltank_requests_total{limit="global",outcome="rejected"} 10
//! # TYPE fueltank_wait_seconds summary
//! fueltank_wait_seconds{limit="global",quantile="0.5"} 0.1
//! fueltank_wait_seconds_sum{limit="global"} 1.4
//! fueltank_wait_seconds_count{limit="global"} 15
//! ```
//!
//! No metrics crate is needed: a [`Stats`] is read with plain calls, and
//! `render` below writes the page. (With the `metrics` crate, the same
//! numbers go to `counter!(..).absolute(total)` and
//! `gauge!(..).set(seconds)` in a periodic task.)

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::Router;
use axum::http::header::CONTENT_TYPE;
use axum::routing::get;
use fueltank::{KeyedTank, Rate, Tank};
use fueltank_tower::key::ConnectInfoIp;
use fueltank_tower::{KeyedThrottleLayer, Stats, ThrottleLayer};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

/// The quantiles of the wait-time summary.
const QUANTILES: [f64; 4] = [0.5, 0.9, 0.99, 1.0];

/// Writes `stats` as the metrics of the limit named `limit`: one counter
/// per outcome, the latest admitted rate as a gauge, and the waits as a
/// summary. `header` writes the `# HELP` and `# TYPE` lines, once per page.
pub fn render(out: &mut String, limit: &str, stats: &Stats, header: bool) {
    // Writing to a String cannot fail.
    let mut line = |text: std::fmt::Arguments<'_>| {
        let _ = out.write_fmt(text);
        out.push('\n');
    };
    if header {
        line(format_args!(
            "# HELP fueltank_requests_total Requests by what the limit did with them."
        ));
        line(format_args!("# TYPE fueltank_requests_total counter"));
    }
    for (outcome, monitor) in [
        ("admitted", stats.admitted()),
        ("rejected", stats.rejected()),
        ("waited", stats.waited()),
        ("key_error", stats.key_errors()),
        ("unavailable", stats.unavailable()),
    ] {
        line(format_args!(
            "fueltank_requests_total{{limit=\"{limit}\",outcome=\"{outcome}\"}} {}",
            monitor.total()
        ));
    }
    if header {
        line(format_args!(
            "# HELP fueltank_admitted_per_second Requests admitted per second over the last second."
        ));
        line(format_args!("# TYPE fueltank_admitted_per_second gauge"));
    }
    let rate = stats
        .admitted()
        .latest()
        .map_or(0.0, |stat| stat.per_second);
    line(format_args!(
        "fueltank_admitted_per_second{{limit=\"{limit}\"}} {rate}"
    ));
    if header {
        line(format_args!(
            "# HELP fueltank_wait_seconds Time the requests that waited for fuel waited."
        ));
        line(format_args!("# TYPE fueltank_wait_seconds summary"));
    }
    let waits = stats.wait_times();
    for quantile in QUANTILES {
        // No wait yet: Prometheus spells an unknown quantile NaN.
        let seconds = waits
            .percentile(quantile * 100.0)
            .map_or(f64::NAN, |wait| wait.as_secs_f64());
        line(format_args!(
            "fueltank_wait_seconds{{limit=\"{limit}\",quantile=\"{quantile}\"}} {seconds}"
        ));
    }
    line(format_args!(
        "fueltank_wait_seconds_sum{{limit=\"{limit}\"}} {}",
        waits.sum().as_secs_f64()
    ));
    line(format_args!(
        "fueltank_wait_seconds_count{{limit=\"{limit}\"}} {}",
        waits.count()
    ));
}

/// The app: `/` behind the per-IP limit (shedding, outside) and the global
/// limit (waiting at most 250 ms, inside); `/metrics` renders both limits'
/// stats.
pub fn app(
    per_ip: KeyedTank<IpAddr>,
    global: Tank,
    per_ip_stats: Stats,
    global_stats: Stats,
) -> Router {
    let metrics = {
        let (per_ip_stats, global_stats) = (per_ip_stats.clone(), global_stats.clone());
        move || async move {
            let mut page = String::new();
            render(&mut page, "per-ip", &per_ip_stats, true);
            render(&mut page, "global", &global_stats, false);
            ([(CONTENT_TYPE, "text/plain; version=0.0.4")], page)
        }
    };
    let limited = Router::new()
        .route("/", get(|| async { "hello\n" }))
        .layer(
            ThrottleLayer::new(global)
                .max_wait(Duration::from_millis(250))
                .label("global")
                .stats(global_stats)
                .http(),
        )
        .layer(
            KeyedThrottleLayer::new(per_ip, ConnectInfoIp)
                .reject()
                .label("per-ip")
                .stats(per_ip_stats)
                .http(),
        );
    limited.route("/metrics", get(metrics))
}

/// One `GET` on a new connection: its status and body.
pub async fn get_once(
    addr: SocketAddr,
    path: &str,
) -> Result<(http::StatusCode, String), Box<dyn std::error::Error + Send + Sync>> {
    let stream = TcpStream::connect(addr).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let request = http::Request::get(path)
        .header(http::header::HOST, addr.to_string())
        .body(Empty::<Bytes>::new())?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let demo = std::env::args().any(|arg| arg == "--demo");
    // Each client: 20 at once, then 10 a second; all together: 20 a
    // second, one at a time.
    let per_ip = KeyedTank::builder("20/2s".parse()?)
        .max_keys(100_000)
        .build()?;
    let global = Tank::new(Rate::per_second(20)?);
    let (per_ip_stats, global_stats) = (Stats::new(), Stats::new());
    let listener = TcpListener::bind(if demo {
        "127.0.0.1:0"
    } else {
        "127.0.0.1:3001"
    })
    .await?;
    let addr = listener.local_addr()?;
    let app = app(per_ip, global, per_ip_stats, global_stats);
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    println!("listening on http://{addr}/ (metrics on /metrics)");
    if !demo {
        server.await??;
        return Ok(());
    }
    // Ten clients at once, six requests each as fast as they are
    // answered: the per-IP limit sheds some, the global one makes the rest
    // wait, and sheds those that would wait more than 250 ms.
    let clients: Vec<_> = (0..10)
        .map(|_| {
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                for _ in 0..6 {
                    statuses.push(get_once(addr, "/").await.map(|(status, _)| status));
                }
                statuses
            })
        })
        .collect();
    let mut answered = 0;
    for client in clients {
        answered += client.await?.into_iter().filter(Result::is_ok).count();
    }
    println!("{answered} requests answered; GET /metrics:\n");
    let (_, page) = get_once(addr, "/metrics").await?;
    print!("{page}");
    server.abort();
    Ok(())
}
