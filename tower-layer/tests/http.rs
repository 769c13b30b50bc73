//! The HTTP layer on a `ManualClock`: 429 and `Retry-After`, the
//! `RateLimit` header values in both forms, wait mode, nesting.

use std::convert::Infallible;
use std::future::Future;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use fueltank::clock::ManualClock;
use fueltank::{Hardcap, Rate, Tank};
use fueltank_tower::http::{HeaderStyle, Responses};
use fueltank_tower::{Stats, ThrottleLayer, ThrottleService, Throttled};
use futures::FutureExt;
use http::{HeaderMap, Request, Response, StatusCode};
use tower::{Layer, Service, ServiceBuilder};

mod common;
use common::{Inner, ok, send};

fn tank(clock: &ManualClock, rate: &str, initial: u64) -> Tank {
    Tank::builder(rate.parse::<Rate>().unwrap())
        .initial(initial)
        .clock(clock.clone())
        .build()
        .unwrap()
}

fn shed(tank: Tank) -> ThrottleLayer<Responses> {
    ThrottleLayer::new(tank).reject().http()
}

/// Makes the service ready (it must be) and calls it; the response must be
/// there at once.
fn get<S>(svc: &mut S) -> Response<String>
where
    S: Service<Request<()>, Response = Response<String>, Error = Infallible>,
{
    match svc.poll_ready(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(Ok(())) => {}
        Poll::Ready(Err(never)) => match never {},
        Poll::Pending => panic!("the service is not ready"),
    }
    match svc.call(Request::new(())).now_or_never() {
        Some(Ok(response)) => response,
        Some(Err(never)) => match never {},
        None => panic!("the response is not there at once"),
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(|v| v.to_str().unwrap())
}

/// (Limit, Remaining, Reset) of the split form.
fn split(response: &Response<String>) -> (u64, u64, u64) {
    let get = |name| header(response.headers(), name).unwrap().parse().unwrap();
    (
        get("ratelimit-limit"),
        get("ratelimit-remaining"),
        get("ratelimit-reset"),
    )
}

#[test]
fn the_first_pass_the_rest_get_429_with_retry_after_rounded_up() {
    let clock = ManualClock::new();
    let tank = tank(&clock, "10/s", 2);
    let mut svc = shed(tank.clone()).layer(ok());

    let first = get(&mut svc);
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(first.body(), "hello");
    assert_eq!(split(&first), (10, 1, 1));
    assert_eq!(header(first.headers(), "retry-after"), None);
    assert_eq!(split(&get(&mut svc)), (10, 0, 1));

    for _ in 0..3 {
        let shed = get(&mut svc);
        assert_eq!(shed.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(shed.body(), "Too Many Requests: retry after 1 s\n");
        assert_eq!(
            header(shed.headers(), "content-type"),
            Some("text/plain; charset=utf-8")
        );
        // The next fuel is 100 ms away: Retry-After says 1, never 0.
        assert_eq!(header(shed.headers(), "retry-after"), Some("1"));
        assert_eq!(split(&shed), (10, 0, 1));
        let throttled = shed.extensions().get::<Throttled>().unwrap();
        assert_eq!(throttled.retry_after(), Duration::from_millis(100));
    }

    clock.advance(Duration::from_millis(100));
    assert_eq!(get(&mut svc).status(), StatusCode::OK);
}

#[test]
fn retry_after_and_reset_for_long_waits() {
    let clock = ManualClock::new();
    let tank = tank(&clock, "10/min", 10);
    let mut svc = shed(tank.clone()).layer(ok());
    // After one request: one fuel missing, refilled in 6 s.
    assert_eq!(split(&get(&mut svc)), (10, 9, 6));
    for _ in 0..9 {
        assert_eq!(get(&mut svc).status(), StatusCode::OK);
    }
    let shed = get(&mut svc);
    assert_eq!(shed.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(shed.headers(), "retry-after"), Some("6"));
    assert_eq!(split(&shed), (10, 0, 60), "full again in a minute");

    clock.advance(Duration::from_millis(5_500));
    let shed = get(&mut svc);
    // 0.5 s to the next fuel, rounded up; full 54 s after that.
    assert_eq!(header(shed.headers(), "retry-after"), Some("1"));
    assert_eq!(split(&shed), (10, 0, 55));
    clock.advance(Duration::from_millis(500));
    assert_eq!(split(&get(&mut svc)), (10, 0, 60));
}

#[test]
fn structured_headers() {
    let clock = ManualClock::new();
    let mut svc = shed(tank(&clock, "100/s", 100))
        .headers(HeaderStyle::Structured)
        .policy_name("api")
        .layer(ok());
    let response = get(&mut svc);
    let headers = response.headers();
    assert_eq!(
        header(headers, "ratelimit-policy"),
        Some("\"api\";q=100;w=1")
    );
    assert_eq!(header(headers, "ratelimit"), Some("\"api\";r=99;t=1"));
    assert_eq!(header(headers, "ratelimit-limit"), None, "one form only");

    // A sub-second period is stated per whole second; 1.5 s as 2 s.
    let mut svc = shed(tank(&clock, "5/250ms", 5))
        .headers(HeaderStyle::Structured)
        .layer(ok());
    let response = get(&mut svc);
    assert_eq!(
        header(response.headers(), "ratelimit-policy"),
        Some("\"default\";q=20;w=1")
    );
    let mut svc = shed(tank(&clock, "10/1.5s", 1))
        .headers(HeaderStyle::Structured)
        .layer(ok());
    let response = get(&mut svc);
    assert_eq!(
        header(response.headers(), "ratelimit-policy"),
        Some("\"default\";q=13;w=2")
    );
    assert_eq!(
        header(response.headers(), "ratelimit"),
        Some("\"default\";r=0;t=2")
    );
    let shed = get(&mut svc);
    assert_eq!(shed.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(shed.headers(), "retry-after"), Some("1"));
    assert_eq!(
        header(shed.headers(), "ratelimit"),
        Some("\"default\";r=0;t=2")
    );
}

#[test]
fn headers_off_keeps_retry_after() {
    let clock = ManualClock::new();
    let mut svc = shed(tank(&clock, "1/s", 1))
        .headers(HeaderStyle::Off)
        .layer(ok());
    let response = get(&mut svc);
    assert!(response.headers().is_empty());
    let shed = get(&mut svc);
    assert_eq!(shed.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(shed.headers(), "retry-after"), Some("1"));
    assert_eq!(shed.headers().len(), 2, "Retry-After and Content-Type only");
}

#[test]
fn hardcaps_one_and_window_have_their_own_reset() {
    let clock = ManualClock::new();
    // One: full is one fuel, 100 ms away.
    let one = Tank::builder(Rate::per_second(10).unwrap())
        .hardcap(Hardcap::One)
        .clock(clock.clone())
        .build()
        .unwrap();
    let mut svc = shed(one).layer(ok());
    assert_eq!(split(&get(&mut svc)), (10, 0, 1));

    // Window: 3 per 10 s, all taken at once: full when they leave the window.
    let window = Tank::builder("3/10s".parse().unwrap())
        .hardcap(Hardcap::Window)
        .clock(clock.clone())
        .build()
        .unwrap();
    let mut svc = shed(window).layer(ok());
    assert_eq!(split(&get(&mut svc)), (3, 2, 10));
    clock.advance(Duration::from_secs(4));
    assert_eq!(split(&get(&mut svc)), (3, 1, 10));
    assert_eq!(split(&get(&mut svc)), (3, 0, 10));
    let shed = get(&mut svc);
    assert_eq!(shed.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(shed.headers(), "retry-after"), Some("6"));
}

#[test]
fn wait_mode_waits_and_sends_the_headers() {
    let clock = ManualClock::new();
    let tank = tank(&clock, "10/s", 1);
    let mut svc: ThrottleService<Inner, Responses> =
        ThrottleLayer::new(tank.clone()).http().layer(ok());
    assert_eq!(split(&get(&mut svc)), (10, 0, 1));
    let mut cx = Context::from_waker(Waker::noop());
    assert!(svc.poll_ready(&mut cx).is_pending(), "waits, no 429");
    clock.advance(Duration::from_millis(100));
    let response = get(&mut svc);
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(split(&response), (10, 0, 1));
}

/// As the plain layer's: a service made ready after a wait and dropped
/// before `call` gives its fuel back and is counted nowhere.
#[test]
fn a_wait_without_a_call_is_not_counted() {
    let clock = ManualClock::new();
    let tank = tank(&clock, "20/s", 0);
    let stats = Stats::with_clock(clock.clone());
    let layer = ThrottleLayer::new(tank.clone()).stats(stats.clone()).http();
    let mut dropped: ThrottleService<Inner, Responses> = layer.layer(ok());
    let mut cx = Context::from_waker(Waker::noop());
    assert!(dropped.poll_ready(&mut cx).is_pending());
    clock.advance(Duration::from_millis(50));
    assert!(dropped.poll_ready(&mut cx).is_ready());
    drop(dropped);
    assert_eq!(tank.level(), 1, "the fuel went back");
    assert_eq!(stats.admitted().total(), 0);
    assert_eq!(stats.waited().total(), 0);
    assert_eq!(stats.wait_times().count(), 0);
    let mut called = layer.layer(ok());
    assert_eq!(get(&mut called).status(), StatusCode::OK);
    assert!(called.poll_ready(&mut cx).is_pending());
    clock.advance(Duration::from_millis(50));
    assert_eq!(get(&mut called).status(), StatusCode::OK);
    assert_eq!(stats.admitted().total(), 2);
    assert_eq!(stats.waited().total(), 1);
    assert_eq!(stats.wait_times().sum(), Duration::from_millis(50));
}

#[test]
fn clones_of_the_http_service_share_the_budget() {
    let clock = ManualClock::new();
    let tank = tank(&clock, "10/s", 2);
    let mut a = shed(tank.clone()).layer(ok());
    let mut b = a.clone();
    assert_eq!(get(&mut a).status(), StatusCode::OK);
    assert_eq!(get(&mut b).status(), StatusCode::OK);
    assert_eq!(get(&mut a).status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(get(&mut b).status(), StatusCode::TOO_MANY_REQUESTS);
}

#[test]
fn nested_limits_report_the_tightest_split_and_list_every_policy() {
    let clock = ManualClock::new();
    let outer = tank(&clock, "100/s", 100);
    let inner = tank(&clock, "10/s", 3);
    let mut svc = ServiceBuilder::new()
        .layer(shed(outer.clone()))
        .layer(shed(inner.clone()))
        .service(ok());
    // The inner limit has less left: its trio stays.
    assert_eq!(split(&get(&mut svc)), (10, 2, 1));

    let mut svc = ServiceBuilder::new()
        .layer(
            shed(outer)
                .headers(HeaderStyle::Structured)
                .policy_name("global"),
        )
        .layer(
            shed(inner)
                .headers(HeaderStyle::Structured)
                .policy_name("route"),
        )
        .service(ok());
    let response = get(&mut svc);
    let policies: Vec<_> = response
        .headers()
        .get_all("ratelimit-policy")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(policies, ["\"route\";q=10;w=1", "\"global\";q=100;w=1"]);
}

#[test]
fn set_rate_shows_in_the_next_headers() {
    let clock = ManualClock::new();
    let tank = tank(&clock, "10/s", 10);
    let mut svc = shed(tank.clone()).layer(ok());
    assert_eq!(split(&get(&mut svc)).0, 10);
    tank.set_rate(Rate::per_second(20).unwrap());
    assert_eq!(split(&get(&mut svc)).0, 20);
}

// The keyed HTTP layer: per-key values.

mod keyed {
    use std::net::{IpAddr, SocketAddr};

    use fueltank::KeyedTank;
    use fueltank_tower::KeyedThrottleLayer;
    use fueltank_tower::key::{ForwardedIp, KeyError, PeerIp};

    use super::*;

    fn per_ip(clock: &ManualClock, rate: &str) -> KeyedTank<IpAddr> {
        KeyedTank::builder(rate.parse::<Rate>().unwrap())
            .clock(clock.clone())
            .build()
            .unwrap()
    }

    /// Like `get`, from the TCP peer `peer`.
    fn get_from<S>(svc: &mut S, peer: &str) -> Response<String>
    where
        S: Service<Request<()>, Response = Response<String>, Error = Infallible>,
    {
        let mut request = Request::new(());
        request
            .extensions_mut()
            .insert(peer.parse::<SocketAddr>().unwrap());
        match svc.poll_ready(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(never)) => match never {},
            Poll::Pending => panic!("the service is not ready"),
        }
        match svc.call(request).now_or_never() {
            Some(Ok(response)) => response,
            Some(Err(never)) => match never {},
            None => panic!("the response is not there at once"),
        }
    }

    const A: &str = "192.0.2.1:4000";
    const B: &str = "192.0.2.2:4000";

    #[test]
    fn headers_and_429_are_per_key() {
        let clock = ManualClock::new();
        let keyed = per_ip(&clock, "10/min");
        let mut svc = KeyedThrottleLayer::new(keyed.clone(), PeerIp)
            .reject()
            .http()
            .layer(ok());

        // A new key starts full: after one request, one fuel is missing,
        // back in 6 s.
        assert_eq!(split(&get_from(&mut svc, A)), (10, 9, 6));
        assert_eq!(split(&get_from(&mut svc, A)), (10, 8, 12));
        assert_eq!(split(&get_from(&mut svc, B)), (10, 9, 6), "B has its own");
        for _ in 0..8 {
            assert_eq!(get_from(&mut svc, A).status(), StatusCode::OK);
        }
        let shed = get_from(&mut svc, A);
        assert_eq!(shed.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(shed.body(), "Too Many Requests: retry after 6 s\n");
        assert_eq!(header(shed.headers(), "retry-after"), Some("6"));
        assert_eq!(split(&shed), (10, 0, 60), "A is full again in a minute");
        let throttled = shed.extensions().get::<Throttled>().unwrap();
        assert_eq!(throttled.retry_after(), Duration::from_secs(6));
        assert_eq!(split(&get_from(&mut svc, B)), (10, 8, 12), "B unaffected");

        clock.advance(Duration::from_millis(5_500));
        let shed = get_from(&mut svc, A);
        assert_eq!(header(shed.headers(), "retry-after"), Some("1"));
        assert_eq!(split(&shed), (10, 0, 55));
        clock.advance(Duration::from_millis(500));
        let passed = get_from(&mut svc, A);
        assert_eq!(passed.status(), StatusCode::OK);
        assert_eq!(split(&passed), (10, 0, 60));
    }

    /// The headers of a key are its own rate's: a partner at 50/min
    /// (`rate_by`) in a tank at 10/min is told a limit of 50, a quota of 50
    /// a minute, and what it has left of them; another key, 10 — with one
    /// rate (they said the tank's 10, and 10 of the partner's fuel left) as
    /// with `also`.
    #[test]
    fn a_keys_own_rate_is_in_its_headers() {
        let partner: IpAddr = "192.0.2.1".parse().unwrap();
        for also in [None, Some("1000/h")] {
            let clock = ManualClock::new();
            let mut builder = KeyedTank::builder("10/min".parse::<Rate>().unwrap())
                .rate_by(move |ip: &IpAddr| match *ip == partner {
                    true => "50/min".parse().unwrap(),
                    false => "10/min".parse().unwrap(),
                })
                .clock(clock.clone());
            if let Some(rate) = also {
                builder = builder.also(rate.parse().unwrap());
            }
            let keyed = builder.build().unwrap();
            let mut svc = KeyedThrottleLayer::new(keyed.clone(), PeerIp)
                .reject()
                .http()
                .layer(ok());
            // One of 50 missing: back in 1.2 s.
            assert_eq!(split(&get_from(&mut svc, A)), (50, 49, 2), "{also:?}");
            assert_eq!(split(&get_from(&mut svc, B)), (10, 9, 6), "{also:?}");
            let mut svc = KeyedThrottleLayer::new(keyed, PeerIp)
                .reject()
                .http()
                .headers(HeaderStyle::Structured)
                .layer(ok());
            let response = get_from(&mut svc, A);
            let policy = header(response.headers(), "ratelimit-policy").unwrap();
            assert!(
                policy.starts_with("\"default\";q=50;w=60"),
                "{also:?}: {policy}"
            );
            assert_eq!(
                header(response.headers(), "ratelimit"),
                Some("\"default\";r=48;t=3"),
                "{also:?}"
            );
        }
    }

    #[test]
    fn hardcap_one_is_full_with_one_fuel() {
        let clock = ManualClock::new();
        let keyed = KeyedTank::builder(Rate::new(3, Duration::from_secs(9)).unwrap())
            .hardcap(Hardcap::One)
            .clock(clock.clone())
            .build()
            .unwrap();
        let mut svc = KeyedThrottleLayer::new(keyed, PeerIp)
            .reject()
            .http()
            .layer(ok());
        assert_eq!(split(&get_from(&mut svc, A)), (3, 0, 3));
        let shed = get_from(&mut svc, A);
        assert_eq!(shed.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(header(shed.headers(), "retry-after"), Some("3"));
        assert_eq!(split(&shed), (3, 0, 3));
    }

    #[test]
    fn structured_headers_per_key() {
        let clock = ManualClock::new();
        let mut svc = KeyedThrottleLayer::new(per_ip(&clock, "100/s"), PeerIp)
            .reject()
            .http()
            .headers(HeaderStyle::Structured)
            .policy_name("per-ip")
            .layer(ok());
        let response = get_from(&mut svc, A);
        let headers = response.headers();
        assert_eq!(
            header(headers, "ratelimit-policy"),
            Some("\"per-ip\";q=100;w=1")
        );
        assert_eq!(header(headers, "ratelimit"), Some("\"per-ip\";r=99;t=1"));
        let other = get_from(&mut svc, B);
        assert_eq!(
            header(other.headers(), "ratelimit"),
            Some("\"per-ip\";r=99;t=1")
        );

        let mut off = KeyedThrottleLayer::new(per_ip(&clock, "1/s"), PeerIp)
            .reject()
            .http()
            .headers(HeaderStyle::Off)
            .layer(ok());
        assert!(get_from(&mut off, A).headers().is_empty());
        let shed = get_from(&mut off, A);
        assert_eq!(shed.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(shed.headers().len(), 2, "Retry-After and Content-Type only");
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64() {
        let clock = ManualClock::new();
        let keyed = per_ip(&clock, "2/min");
        let mut svc = KeyedThrottleLayer::new(keyed.clone(), PeerIp.ipv6_net64())
            .reject()
            .http()
            .layer(ok());
        // Two addresses of one /64: one budget.
        assert_eq!(
            get_from(&mut svc, "[2001:db8::1]:1").status(),
            StatusCode::OK
        );
        assert_eq!(
            get_from(&mut svc, "[2001:db8::2]:1").status(),
            StatusCode::OK
        );
        let shed = get_from(&mut svc, "[2001:db8::ffff:1]:1");
        assert_eq!(shed.status(), StatusCode::TOO_MANY_REQUESTS);
        // The next /64 is another client.
        assert_eq!(
            get_from(&mut svc, "[2001:db8:0:1::1]:1").status(),
            StatusCode::OK
        );
        // IPv4, and IPv4-mapped IPv6, are kept whole.
        assert_eq!(get_from(&mut svc, "192.0.2.1:1").status(), StatusCode::OK);
        assert_eq!(
            get_from(&mut svc, "[::ffff:192.0.2.1]:2").status(),
            StatusCode::OK
        );
        assert_eq!(get_from(&mut svc, "192.0.2.2:1").status(), StatusCode::OK);
        assert_eq!(keyed.len(), 4);
    }

    #[test]
    fn requests_without_a_key_get_400_or_500_and_take_no_fuel() {
        let clock = ManualClock::new();
        let keyed = per_ip(&clock, "10/s");
        // No peer address: the server is set up wrong, not the client.
        let mut peer = KeyedThrottleLayer::new(keyed.clone(), PeerIp)
            .reject()
            .http()
            .layer(ok());
        let response = get(&mut peer);
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            response.extensions().get::<KeyError>(),
            Some(&KeyError::NoPeerAddress)
        );
        assert_eq!(
            header(response.headers(), "ratelimit-limit"),
            None,
            "no budget to tell"
        );
        // The body says what is wrong, and the inner service was not
        // called (it says hello).
        assert!(
            response
                .body()
                .starts_with("Internal Server Error: no peer address"),
            "{}",
            response.body()
        );

        // A missing or malformed forwarded header: the request's fault.
        let mut forwarded = KeyedThrottleLayer::new(keyed.clone(), ForwardedIp::x_forwarded_for())
            .http()
            .layer(ok());
        let response = get(&mut forwarded);
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            response.body(),
            "Bad Request: no `x-forwarded-for` header in the request\n"
        );
        assert_eq!(
            response.extensions().get::<KeyError>(),
            Some(&KeyError::MissingHeader {
                header: "x-forwarded-for"
            })
        );
        let mut cx = Context::from_waker(Waker::noop());
        assert!(forwarded.poll_ready(&mut cx).is_ready());
        let request = Request::builder()
            .header("x-forwarded-for", "not-an-ip")
            .body(())
            .unwrap();
        let response = forwarded.call(request).now_or_never().unwrap().unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let error = response.extensions().get::<KeyError>().unwrap();
        assert!(error.to_string().contains("not-an-ip"), "{error}");
        assert_eq!(response.body(), &format!("Bad Request: {error}\n"));
        assert!(keyed.is_empty(), "no key was charged");

        // With a fallback, the peer is the key.
        let mut fallback =
            KeyedThrottleLayer::new(keyed.clone(), ForwardedIp::x_forwarded_for().or(PeerIp))
                .http()
                .layer(ok());
        assert_eq!(get_from(&mut fallback, A).status(), StatusCode::OK);
        assert_eq!(keyed.level(&"192.0.2.1".parse().unwrap()), 9);
    }

    #[test]
    fn wait_mode_waits_for_the_key_then_sends_its_headers() {
        let clock = ManualClock::new();
        let keyed = KeyedTank::builder(Rate::per_second(10).unwrap())
            .initial(1)
            .clock(clock.clone())
            .build()
            .unwrap();
        let monitor = fueltank::Monitor::builder()
            .clock(clock.clone())
            .build()
            .unwrap();
        let mut svc = KeyedThrottleLayer::new(keyed, PeerIp)
            .monitor(monitor.clone())
            .http()
            .layer(ok());
        assert_eq!(split(&get_from(&mut svc, A)), (10, 0, 1));
        let mut request = Request::new(());
        request
            .extensions_mut()
            .insert(A.parse::<SocketAddr>().unwrap());
        let mut cx = Context::from_waker(Waker::noop());
        assert!(
            svc.poll_ready(&mut cx).is_ready(),
            "the key is not known yet"
        );
        let mut waiting = Box::pin(svc.call(request));
        assert!(waiting.as_mut().poll(&mut cx).is_pending(), "waits, no 429");
        assert_eq!(get_from(&mut svc, B).status(), StatusCode::OK, "B passes");
        assert_eq!(monitor.total(), 2, "the waiting one is not counted yet");
        clock.advance(Duration::from_millis(100));
        let Poll::Ready(Ok(response)) = waiting.as_mut().poll(&mut cx) else {
            panic!("the fuel came");
        };
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.body(), "hello");
        assert_eq!(split(&response), (10, 0, 1));
        assert_eq!(monitor.total(), 3);
    }

    #[test]
    fn a_per_ip_limit_inside_a_global_one_reports_the_tighter() {
        let clock = ManualClock::new();
        let global = tank(&clock, "100/s", 100);
        let mut svc = ServiceBuilder::new()
            .layer(
                KeyedThrottleLayer::new(per_ip(&clock, "5/s"), PeerIp)
                    .reject()
                    .http(),
            )
            .layer(shed(global.clone()))
            .service(ok());
        assert_eq!(split(&get_from(&mut svc, A)), (5, 4, 1));
        for _ in 0..4 {
            get_from(&mut svc, A);
        }
        let shed = get_from(&mut svc, A);
        assert_eq!(shed.status(), StatusCode::TOO_MANY_REQUESTS);
        // Shed by the per-IP limit, outside: the global fuel is untouched.
        assert_eq!(global.level(), 95);
        assert_eq!(split(&get_from(&mut svc, B)), (5, 4, 1));
    }
}

/// A waiter for several fuel holds the line on the layer's tank: the fuel
/// in the tank is not for newcomers, so a 429 says none remains.
#[test]
fn a_429_says_nothing_remains_while_a_waiter_holds_the_line() {
    let clock = ManualClock::new();
    let tank = tank(&clock, "10/s", 3);
    let mut big = Box::pin(tank.await_fuel_n(5));
    assert!(
        big.as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
            .is_pending()
    );
    assert_eq!(tank.level(), 3);
    let mut svc = shed(tank.clone()).layer(ok());
    let response = get(&mut svc);
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let (limit, remaining, _) = split(&response);
    assert_eq!((limit, remaining), (10, 0));
}

/// Cost over HTTP: the `RateLimit` headers count units, a request costing
/// more than there is gets a 429, one costing more than the tank can ever
/// hold a 400 saying so (never a wait, no `Retry-After`), and an exempt
/// one passes without headers.
#[test]
fn costs_are_counted_in_units_and_too_costly_is_a_400() {
    let clock = ManualClock::new();
    let tank = tank(&clock, "10/s", 10);
    let cost = |request: &Request<()>| -> u64 {
        header(request.headers(), "x-cost").map_or(1, |n| n.parse().unwrap())
    };
    let mut svc = ThrottleLayer::new(tank.clone())
        .reject()
        .cost(cost)
        .exempt(|request: &Request<()>| request.uri().path() == "/health")
        .http()
        .layer(ok());
    let costing = |n: u64| Request::builder().header("x-cost", n).body(()).unwrap();

    let response = send(&mut svc, costing(4));
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(split(&response).1, 6, "remaining counts units");
    let response = send(&mut svc, costing(7));
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(split(&response).1, 6);
    let response = send(&mut svc, costing(11));
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.headers().get("retry-after").is_none());
    assert_eq!(
        response.extensions().get::<fueltank::Error>(),
        Some(&fueltank::Error::ExceedsCapacity {
            requested: 11,
            capacity: 10
        })
    );
    let health = Request::get("/health")
        .header("x-cost", 100)
        .body(())
        .unwrap();
    let response = send(&mut svc, health);
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().get("ratelimit-remaining").is_none());
    assert_eq!(tank.level(), 6, "only the 4 admitted were spent");
}

/// A budget of one's own may say it will not have fuel for as long as a
/// `Duration` goes: the headers say the most seconds there are, never
/// overflow (a panic in debug builds, a `Retry-After` of 1 in release).
#[test]
fn the_longest_wait_a_budget_can_say_is_answered_in_whole_seconds() {
    use fueltank::{Budget, BudgetWait, Fuel};

    #[derive(Debug)]
    struct Never;

    impl Budget for Never {
        fn try_take(&self, _: u64) -> Option<Fuel> {
            None
        }
        fn wait(&self, _: u64, _: Option<Duration>) -> BudgetWait {
            Box::pin(std::future::ready(Ok(None)))
        }
        fn wait_time(&self, _: u64) -> Option<Duration> {
            Some(Duration::MAX)
        }
        fn rate(&self) -> Rate {
            Rate::per_second(10).unwrap()
        }
        fn available(&self) -> u64 {
            0
        }
        fn capacity(&self) -> u64 {
            10
        }
    }

    let mut svc = ThrottleLayer::new(Never).reject().http().layer(ok());
    let response = get(&mut svc);
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let most = u64::MAX.to_string();
    assert_eq!(header(response.headers(), "retry-after"), Some(&*most));
    assert_eq!(header(response.headers(), "ratelimit-reset"), Some(&*most));
}

/// A tank of several rates (`also`): the headers speak of the tightest
/// one, the rate with the least fuel now.
#[test]
fn the_headers_of_a_tank_of_several_rates_name_the_tightest() {
    let clock = ManualClock::new();
    let tank = Tank::builder("100/min".parse().unwrap())
        .also("5/s".parse().unwrap())
        .initial(5)
        .clock(clock.clone())
        .build()
        .unwrap();
    let mut svc = shed(tank.clone()).layer(ok());
    // Both rates hold 4 after the first request: the first rate is named
    // on a tie (100/min: full in 96 × 0.6 s).
    assert_eq!(split(&get(&mut svc)), (100, 4, 58));
    // 10 s later 100/min holds 20 (and two thirds), 5/s is full at 5;
    // take 5: 5/s is empty and named, full again in 1 s.
    clock.advance(Duration::from_secs(10));
    assert!(tank.has_fuel_n(5));
    let shed = get(&mut svc);
    assert_eq!(shed.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(split(&shed), (5, 0, 1));
}

/// A budget that is not a tank (as a Redis tank): a tank behind calls.
#[derive(Debug)]
struct Other(Tank);

impl fueltank::Budget for Other {
    fn try_take(&self, n: u64) -> Option<fueltank::Fuel> {
        self.0.try_take(n)
    }
    fn wait(&self, n: u64, max_wait: Option<Duration>) -> fueltank::BudgetWait {
        self.0.wait(n, max_wait)
    }
    fn wait_time(&self, n: u64) -> Option<Duration> {
        self.0.wait_time(n)
    }
    fn rate(&self) -> fueltank::Rate {
        self.0.rate()
    }
    fn rates(&self) -> Vec<(fueltank::Rate, u64)> {
        self.0.rates()
    }
    fn available(&self) -> u64 {
        self.0.available()
    }
    fn capacity(&self) -> u64 {
        fueltank::Budget::capacity(&self.0)
    }
}

/// A budget that is not a tank names its tightest rate and lists every
/// one too.
#[test]
fn the_policy_of_another_budget_of_several_rates_lists_every_rate() {
    let clock = ManualClock::new();
    let tank = Tank::builder("100/min".parse().unwrap())
        .also("5/s".parse().unwrap())
        .initial(5)
        .clock(clock.clone())
        .build()
        .unwrap();
    let mut svc = ThrottleLayer::new(Other(tank.clone()))
        .reject()
        .http()
        .headers(HeaderStyle::Structured)
        .layer(ok());
    let policy = "\"default\";q=100;w=60, \"default-2\";q=5;w=1";
    let response = get(&mut svc);
    assert_eq!(header(response.headers(), "ratelimit-policy"), Some(policy));
    // 10 s on (100/min has 4 + 16), take 5: 5/s is empty, the tightest.
    clock.advance(Duration::from_secs(10));
    assert!(tank.has_fuel_n(5));
    let shed = get(&mut svc);
    assert_eq!(shed.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(shed.headers(), "ratelimit-policy"), Some(policy));
    assert_eq!(
        header(shed.headers(), "ratelimit"),
        Some("\"default-2\";r=0;t=1")
    );
}

/// A tank of several rates (`also`) in the structured form: the policy
/// lists every rate (the first under the policy name, the others under it
/// with `-2`, `-3`, … in the order of `also`), and `RateLimit` names the
/// tightest's policy with its state. A tank of one rate keeps the one
/// name.
#[test]
fn the_policy_of_a_tank_of_several_rates_lists_every_rate() {
    let clock = ManualClock::new();
    let tank = Tank::builder("100/min".parse().unwrap())
        .also("5/s".parse().unwrap())
        .also("10000/h".parse().unwrap())
        .initial(5)
        .clock(clock.clone())
        .build()
        .unwrap();
    let mut svc = shed(tank.clone())
        .headers(HeaderStyle::Structured)
        .policy_name("partner")
        .layer(ok());
    let policy = "\"partner\";q=100;w=60, \"partner-2\";q=5;w=1, \"partner-3\";q=10000;w=3600";
    // Every rate holds 4 after the first request: the first is named on
    // a tie (100/min: full in 96 × 0.6 s).
    let response = get(&mut svc);
    assert_eq!(header(response.headers(), "ratelimit-policy"), Some(policy));
    assert_eq!(
        header(response.headers(), "ratelimit"),
        Some("\"partner\";r=4;t=58")
    );
    // 10 s on, take 5: 5/s is empty, the tightest, full again in 1 s.
    clock.advance(Duration::from_secs(10));
    assert!(tank.has_fuel_n(5));
    let shed = get(&mut svc);
    assert_eq!(shed.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(shed.headers(), "ratelimit-policy"), Some(policy));
    assert_eq!(
        header(shed.headers(), "ratelimit"),
        Some("\"partner-2\";r=0;t=1")
    );
    // The same per key.
    let keyed = fueltank::KeyedTank::builder("100/min".parse().unwrap())
        .also("5/s".parse().unwrap())
        .clock(clock.clone())
        .build()
        .unwrap();
    let mut svc = fueltank_tower::KeyedThrottleLayer::new(
        keyed,
        fueltank_tower::key::key_fn(|_: &Request<()>| Ok(7u8)),
    )
    .reject()
    .http()
    .headers(HeaderStyle::Structured)
    .layer(ok());
    let response = get(&mut svc);
    assert_eq!(
        header(response.headers(), "ratelimit-policy"),
        Some("\"default\";q=100;w=60, \"default-2\";q=5;w=1")
    );
    assert_eq!(
        header(response.headers(), "ratelimit"),
        Some("\"default-2\";r=4;t=1")
    );
}

/// A burst above `max_n` reads the same whatever budget holds it: `Limit`
/// is `max_n`, `Remaining` at most that, and the policy's quota the rate's
/// (a budget not a tank said its capacity, 20, and a quota of 20 a second).
#[test]
fn a_burst_reads_the_same_in_a_tank_and_in_another_budget() {
    let clock = ManualClock::new();
    let rate: Rate = "5/s".parse().unwrap();
    let tank = Tank::builder(rate)
        .burst(20)
        .initial(20)
        .clock(clock.clone())
        .build()
        .unwrap();
    let other = Tank::builder(rate)
        .burst(20)
        .initial(20)
        .clock(clock.clone())
        .build()
        .unwrap();
    let mut by_tank = shed(tank).layer(ok());
    let mut by_other = ThrottleLayer::new(Other(other)).reject().http().layer(ok());
    for _ in 0..20 {
        let (a, b) = (get(&mut by_tank), get(&mut by_other));
        assert_eq!(a.status(), StatusCode::OK);
        assert_eq!(split(&a), split(&b));
        assert_eq!(split(&a).0, 5);
    }
    let policy = |response: Response<String>| {
        header(response.headers(), "ratelimit-policy").map(str::to_owned)
    };
    let tank = Tank::builder(rate)
        .burst(20)
        .clock(clock.clone())
        .build()
        .unwrap();
    let other = Tank::builder(rate)
        .burst(20)
        .clock(clock.clone())
        .build()
        .unwrap();
    let a = policy(get(&mut shed(tank)
        .headers(HeaderStyle::Structured)
        .layer(ok())));
    let b = policy(get(&mut ThrottleLayer::new(Other(other))
        .reject()
        .http()
        .headers(HeaderStyle::Structured)
        .layer(ok())));
    assert_eq!(a, b);
    assert_eq!(a.as_deref(), Some("\"default\";q=5;w=1"));
}
