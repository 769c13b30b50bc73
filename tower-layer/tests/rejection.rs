//! What the HTTP layers answer a request they do not let through: plain
//! text by default, saying why and what to change; custom responses from
//! closures, which the layer completes; and `Throttled` naming its limit.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use fueltank::clock::ManualClock;
use fueltank::{KeyedTank, Rate, Tank};
use fueltank_tower::key::{ForwardedIp, KeyError, PeerIp};
use fueltank_tower::{KeyedThrottleLayer, Scope, ThrottleLayer, Throttled};
use http::{Request, Response, StatusCode};
use tower::Layer;

mod common;
use common::{ok, send};

fn from(peer: &str) -> Request<()> {
    let mut request = Request::new(());
    request
        .extensions_mut()
        .insert(peer.parse::<SocketAddr>().unwrap());
    request
}

fn one_a_minute(clock: &ManualClock) -> Tank {
    Tank::builder(Rate::per_minute(1).unwrap())
        .clock(clock.clone())
        .build()
        .unwrap()
}

fn per_ip(clock: &ManualClock) -> KeyedTank<IpAddr> {
    KeyedTank::builder(Rate::per_minute(1).unwrap())
        .clock(clock.clone())
        .build()
        .unwrap()
}

#[test]
fn a_missing_peer_address_is_a_500_that_says_what_to_enable() {
    let clock = ManualClock::new();
    let mut svc = KeyedThrottleLayer::new(per_ip(&clock), PeerIp)
        .http()
        .layer(ok());
    let response = send(&mut svc, Request::new(()));
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; charset=utf-8"
    );
    let body = response.body();
    assert!(body.starts_with("Internal Server Error: "), "{body}");
    assert!(
        body.contains("into_make_service_with_connect_info::<SocketAddr>()"),
        "{body}"
    );
    // Without the `axum` feature, axum's `ConnectInfo` is invisible: the
    // body says to enable the feature.
    assert_eq!(
        body.contains(
            "enable it (`fueltank-tower = { version = \"0.1\", features = [\"axum\"] }`)"
        ),
        cfg!(not(feature = "axum")),
        "{body}"
    );
}

#[cfg(feature = "axum")]
#[test]
fn connect_info_ip_reads_what_axum_passes() {
    let clock = ManualClock::new();
    let keyed = per_ip(&clock);
    let mut svc = KeyedThrottleLayer::new(keyed.clone(), fueltank_tower::key::ConnectInfoIp)
        .http()
        .layer(ok());
    let mut request = Request::new(());
    request.extensions_mut().insert(axum::extract::ConnectInfo(
        "192.0.2.8:1234".parse::<SocketAddr>().unwrap(),
    ));
    assert_eq!(send(&mut svc, request).status(), StatusCode::OK);
    assert_eq!(keyed.level(&"192.0.2.8".parse().unwrap()), 0);
    // A plain `SocketAddr` is not what axum passes: not read.
    let response = send(&mut svc, from("192.0.2.9:1"));
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
}

#[test]
fn a_forwarded_header_with_no_trusted_proxy_is_the_servers_fault() {
    let clock = ManualClock::new();
    let mut svc = KeyedThrottleLayer::new(per_ip(&clock), ForwardedIp::x_real_ip().proxies(0))
        .http()
        .layer(ok());
    let request = Request::builder()
        .header("x-real-ip", "192.0.2.1")
        .body(())
        .unwrap();
    let response = send(&mut svc, request);
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        response.body().contains("configure the number of proxies"),
        "{}",
        response.body()
    );
}

#[test]
fn an_unparsable_forwarded_address_is_a_400_that_quotes_it() {
    let clock = ManualClock::new();
    let mut svc = KeyedThrottleLayer::new(per_ip(&clock), ForwardedIp::x_forwarded_for())
        .http()
        .layer(ok());
    let request = Request::builder()
        .header("x-forwarded-for", "10.0.0.1, 300.1.2.3")
        .body(())
        .unwrap();
    let response = send(&mut svc, request);
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        response.body(),
        "Bad Request: `x-forwarded-for` entry \"300.1.2.3\" is not an IP address; expected \
         e.g. `192.0.2.7`, `192.0.2.7:443`, `2001:db8::1` or `[2001:db8::1]:443`\n"
    );
}

#[test]
fn a_closure_builds_the_429_and_the_layer_completes_it() {
    let clock = ManualClock::new();
    let mut svc = ThrottleLayer::new(one_a_minute(&clock))
        .reject()
        .label("api")
        .http()
        .on_throttled(|shed: &Throttled| {
            Response::builder()
                .status(StatusCode::TOO_MANY_REQUESTS)
                .header("content-type", "application/json")
                .body(format!(
                    "{{\"limit\":\"{}\",\"retry_after_ms\":{}}}",
                    shed.label().unwrap_or(""),
                    shed.retry_after().as_millis()
                ))
                .unwrap()
        })
        .layer(ok());
    assert_eq!(send(&mut svc, Request::new(())).body(), "hello");
    let shed = send(&mut svc, Request::new(()));
    assert_eq!(shed.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(shed.body(), r#"{"limit":"api","retry_after_ms":60000}"#);
    assert_eq!(shed.headers()["content-type"], "application/json");
    // Added by the layer: Retry-After, the RateLimit headers, the error.
    assert_eq!(shed.headers()["retry-after"], "60");
    assert_eq!(shed.headers()["ratelimit-remaining"], "0");
    let throttled = shed.extensions().get::<Throttled>().unwrap();
    assert_eq!(throttled.label(), Some("api"));
}

#[test]
fn a_closure_may_set_its_own_retry_after() {
    let clock = ManualClock::new();
    let mut svc = ThrottleLayer::new(one_a_minute(&clock))
        .reject()
        .http()
        .on_throttled(|_: &Throttled| {
            Response::builder()
                .status(StatusCode::SERVICE_UNAVAILABLE)
                .header("retry-after", "120")
                .body(String::new())
                .unwrap()
        })
        .layer(ok());
    send(&mut svc, Request::new(()));
    let shed = send(&mut svc, Request::new(()));
    assert_eq!(shed.status(), StatusCode::SERVICE_UNAVAILABLE);
    let retry_after: Vec<_> = shed.headers().get_all("retry-after").iter().collect();
    assert_eq!(retry_after, ["120"], "kept, not doubled");
}

#[test]
fn closures_build_the_keyed_429_and_the_keyless_answer() {
    let clock = ManualClock::new();
    let mut svc = KeyedThrottleLayer::new(per_ip(&clock), PeerIp)
        .reject()
        .label("per-ip")
        .report_key()
        .http()
        .on_throttled(|shed: &Throttled| {
            let mut response = Response::new(format!(
                "{} {} {:?}",
                shed.scope(),
                shed.label().unwrap_or("-"),
                shed.key()
            ));
            *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
            response
        })
        .on_key_error(|error: &KeyError| {
            let mut response = Response::new(format!("no key: {}", error.is_setup_error()));
            *response.status_mut() = StatusCode::FORBIDDEN;
            response
        })
        .layer(ok());
    assert_eq!(send(&mut svc, from("192.0.2.1:1")).status(), StatusCode::OK);
    let shed = send(&mut svc, from("192.0.2.1:2"));
    assert_eq!(shed.body(), "keyed per-ip Some(\"192.0.2.1\")");
    assert_eq!(shed.headers()["retry-after"], "60");
    assert_eq!(shed.headers()["ratelimit-limit"], "1");
    let keyless = send(&mut svc, Request::new(()));
    assert_eq!(keyless.status(), StatusCode::FORBIDDEN);
    assert_eq!(keyless.body(), "no key: true");
    assert_eq!(
        keyless.extensions().get::<KeyError>(),
        Some(&KeyError::NoPeerAddress)
    );
}

#[test]
fn throttled_names_the_keyed_limit_and_the_key_only_when_asked() {
    let clock = ManualClock::new();
    let mut quiet = KeyedThrottleLayer::new(per_ip(&clock), PeerIp)
        .reject()
        .label("per-ip")
        .http()
        .layer(ok());
    send(&mut quiet, from("192.0.2.1:1"));
    let shed = send(&mut quiet, from("192.0.2.1:1"));
    assert_eq!(
        shed.body(),
        "Too Many Requests (per-ip limit): retry after 60 s\n"
    );
    let throttled = shed.extensions().get::<Throttled>().unwrap();
    assert_eq!(throttled.scope(), Scope::Keyed);
    assert_eq!(throttled.label(), Some("per-ip"));
    assert_eq!(throttled.key(), None, "keys are not reported unless asked");
    assert_eq!(throttled.retry_after(), Duration::from_secs(60));
    assert_eq!(
        throttled.to_string(),
        "rate limited by the keyed limit `per-ip`: no fuel for this request in time; \
         retry after 60s"
    );
}
