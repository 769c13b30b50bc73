//! The metrics example: its Prometheus page, from a server on
//! `127.0.0.1:0`, and `render` over stats timed on a `ManualClock`.

#[path = "../examples/metrics.rs"]
#[allow(dead_code)]
mod example;

use std::net::SocketAddr;
use std::task::{Context, Waker};
use std::time::Duration;

use fueltank::clock::ManualClock;
use fueltank::{KeyedTank, Rate, Tank};
use fueltank_tower::{Stats, ThrottleLayer};
use http::StatusCode;
use tokio::net::TcpListener;
use tower::{BoxError, Layer, Service, service_fn};

/// The value of the sample `name` on `page`.
fn sample(page: &str, name: &str) -> String {
    page.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in\n{page}"))
        .to_string()
}

#[tokio::test]
async fn the_page_counts_what_each_limit_did() {
    // The global limit: one request now, the next a minute away, beyond
    // the example's 250 ms: shed.
    let global = Tank::new(Rate::per_minute(1).unwrap());
    let per_ip = KeyedTank::new(Rate::per_second(100).unwrap());
    let (per_ip_stats, global_stats) = (Stats::new(), Stats::new());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = example::app(per_ip, global, per_ip_stats, global_stats);
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });

    let (status, _) = example::get_once(addr, "/").await.unwrap();
    assert_eq!(status, StatusCode::OK);
    let (status, body) = example::get_once(addr, "/").await.unwrap();
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body, "Too Many Requests (global limit): retry after 60 s\n");

    let (status, page) = example::get_once(addr, "/metrics").await.unwrap();
    assert_eq!(status, StatusCode::OK);
    let count = |limit: &str, outcome: &str| {
        sample(
            &page,
            &format!("fueltank_requests_total{{limit=\"{limit}\",outcome=\"{outcome}\"}}"),
        )
    };
    assert_eq!(count("per-ip", "admitted"), "2");
    assert_eq!(count("per-ip", "rejected"), "0");
    assert_eq!(count("global", "admitted"), "1");
    assert_eq!(count("global", "rejected"), "1");
    assert_eq!(count("global", "waited"), "0");
    assert_eq!(
        sample(
            &page,
            "fueltank_wait_seconds{limit=\"global\",quantile=\"0.5\"}"
        ),
        "NaN",
        "no wait yet"
    );
    assert_eq!(
        page.matches("# TYPE fueltank_requests_total counter")
            .count(),
        1
    );
    server.abort();
}

#[test]
fn waits_render_as_a_summary_in_seconds() {
    let clock = ManualClock::new();
    let tank = Tank::builder(Rate::per_second(10).unwrap())
        .initial(0)
        .clock(clock.clone())
        .build()
        .unwrap();
    let stats = Stats::with_clock(clock.clone());
    let layer = ThrottleLayer::new(tank).stats(stats.clone());
    let mut cx = Context::from_waker(Waker::noop());
    let mut services: Vec<_> = (0..3)
        .map(|_| layer.layer(service_fn(|()| async { Ok::<_, BoxError>(()) })))
        .collect();
    for svc in &mut services {
        assert!(svc.poll_ready(&mut cx).is_pending());
    }
    // They wait 100, 200 and 300 ms.
    for svc in &mut services {
        clock.advance(Duration::from_millis(100));
        assert!(svc.poll_ready(&mut cx).is_ready());
        drop(svc.call(()));
    }
    let mut page = String::new();
    example::render(&mut page, "api", &stats, true);
    assert_eq!(
        sample(&page, "fueltank_wait_seconds_count{limit=\"api\"}"),
        "3"
    );
    let sum: f64 = sample(&page, "fueltank_wait_seconds_sum{limit=\"api\"}")
        .parse()
        .unwrap();
    assert!((sum - 0.6).abs() < 1e-9, "{sum}");
    let max: f64 = sample(&page, "fueltank_wait_seconds{limit=\"api\",quantile=\"1\"}")
        .parse()
        .unwrap();
    assert!((max - 0.3).abs() < 1e-9, "{max}");
    let median: f64 = sample(
        &page,
        "fueltank_wait_seconds{limit=\"api\",quantile=\"0.5\"}",
    )
    .parse()
    .unwrap();
    assert!((median - 0.2).abs() < 0.2 * 0.01, "{median}");
    assert_eq!(
        sample(
            &page,
            "fueltank_requests_total{limit=\"api\",outcome=\"waited\"}"
        ),
        "3"
    );
}
