//! An outage is not overload: a budget whose store is down (and whose
//! failure policy refuses) makes the layers refuse with [`Unavailable`],
//! which the HTTP layers answer `503` naming the store, counted apart from
//! the `429`s; a budget merely out of fuel still gets `429`.

use std::convert::Infallible;

use fueltank_tower::key::{ForwardedIp, key_fn};
use fueltank_tower::{KeyedThrottleLayer, Scope, Stats, ThrottleLayer, Throttled, Unavailable};
use http::{Request, Response, StatusCode};
use tower::{Layer, Service, ServiceExt, service_fn};

mod common;
use common::{Flaky, ok, send};

const RATELIMIT_HEADERS: [&str; 5] = [
    "ratelimit-limit",
    "ratelimit-remaining",
    "ratelimit-reset",
    "ratelimit",
    "ratelimit-policy",
];

fn from(ip: &str) -> Request<()> {
    Request::builder().header("x-real-ip", ip).body(()).unwrap()
}

/// A 503 for the store being down: `Retry-After` as the budget says, no
/// `RateLimit` headers (no quota ran out), the error in the extensions.
fn assert_unavailable(response: &Response<String>, body: &str) -> Unavailable {
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.body(), body);
    assert_eq!(response.headers()["retry-after"], "2");
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; charset=utf-8"
    );
    for name in RATELIMIT_HEADERS {
        assert!(
            response.headers().get(name).is_none(),
            "a 503 claims a quota with {name}: {:?}",
            response.headers()
        );
    }
    assert!(response.extensions().get::<Throttled>().is_none());
    let unavailable = response.extensions().get::<Unavailable>().unwrap();
    assert_eq!(unavailable.store(), "test store");
    assert_eq!(unavailable.limit().retry_after(), Flaky::RETRY);
    unavailable.clone()
}

#[test]
fn the_http_layer_answers_an_outage_503_and_overload_429() {
    let budget = Flaky::default();
    let stats = Stats::new();
    let mut svc = ThrottleLayer::new(budget.clone())
        .reject()
        .label("api")
        .stats(stats.clone())
        .http()
        .layer(ok());

    budget.fill(1);
    assert_eq!(send(&mut svc, Request::new(())).status(), StatusCode::OK);
    // Up, but out of fuel: throttled, as before.
    let shed = send(&mut svc, Request::new(()));
    assert_eq!(shed.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(shed.headers().get("ratelimit-remaining").is_some());

    budget.set_down(true);
    let down = send(&mut svc, Request::new(()));
    let unavailable = assert_unavailable(
        &down,
        "Service Unavailable (api limit): rate-limit store unavailable (test store), \
         retry after 2 s\n",
    );
    assert_eq!(unavailable.limit().label(), Some("api"));
    assert_eq!(unavailable.limit().scope(), Scope::Global);
    assert_eq!(stats.admitted().total(), 1);
    assert_eq!(stats.rejected().total(), 1, "the outage is not a rejection");
    assert_eq!(stats.unavailable().total(), 1);

    // Fuel granted before the store went down is still spent.
    budget.fill(1);
    assert_eq!(send(&mut svc, Request::new(())).status(), StatusCode::OK);

    budget.set_down(false);
    budget.fill(1);
    assert_eq!(send(&mut svc, Request::new(())).status(), StatusCode::OK);
    assert_eq!(stats.admitted().total(), 3);
    assert_eq!(stats.unavailable().total(), 1);
}

/// Wait mode: a wait bounded by `max_wait` that ends without the fuel
/// while the store is down is an outage too.
#[test]
fn a_wait_that_ends_while_the_store_is_down_is_a_503() {
    let budget = Flaky::default();
    let stats = Stats::new();
    let mut svc = ThrottleLayer::new(budget.clone())
        .max_wait(Flaky::WAIT * 4)
        .stats(stats.clone())
        .http()
        .layer(ok());
    let shed = send(&mut svc, Request::new(()));
    assert_eq!(shed.status(), StatusCode::TOO_MANY_REQUESTS);

    budget.set_down(true);
    let down = send(&mut svc, Request::new(()));
    assert_unavailable(
        &down,
        "Service Unavailable: rate-limit store unavailable (test store), retry after 2 s\n",
    );
    assert_eq!(stats.rejected().total(), 1);
    assert_eq!(stats.unavailable().total(), 1);
}

#[test]
fn the_keyed_http_layer_answers_an_outage_503_in_both_modes() {
    for reject in [true, false] {
        let budget = Flaky::default();
        let stats = Stats::new();
        let layer = KeyedThrottleLayer::new(budget.clone(), ForwardedIp::x_real_ip())
            .label("per-ip")
            .report_key()
            .stats(stats.clone());
        // Wait mode: the key's wait (the budget's) ends without the fuel.
        let layer = match reject {
            true => layer.reject(),
            false => layer.max_wait(Flaky::WAIT * 4),
        };
        let mut svc = layer.http().layer(ok());

        budget.fill(1);
        assert_eq!(send(&mut svc, from("192.0.2.1")).status(), StatusCode::OK);
        let shed = send(&mut svc, from("192.0.2.1"));
        assert_eq!(
            shed.status(),
            StatusCode::TOO_MANY_REQUESTS,
            "reject: {reject}"
        );

        budget.set_down(true);
        let down = send(&mut svc, from("192.0.2.1"));
        let unavailable = assert_unavailable(
            &down,
            "Service Unavailable (per-ip limit): rate-limit store unavailable (test store), \
             retry after 2 s\n",
        );
        assert_eq!(unavailable.limit().scope(), Scope::Keyed);
        assert_eq!(unavailable.limit().key(), Some("192.0.2.1"));
        assert_eq!(stats.rejected().total(), 1, "reject: {reject}");
        assert_eq!(stats.unavailable().total(), 1, "reject: {reject}");

        budget.set_down(false);
        budget.fill(1);
        assert_eq!(send(&mut svc, from("192.0.2.1")).status(), StatusCode::OK);
    }
}

#[test]
fn closures_build_the_503s() {
    let budget = Flaky::default();
    budget.set_down(true);
    let respond = |down: &Unavailable| {
        let mut response = Response::new(format!(
            "{} down for {}\n",
            down.store(),
            down.limit().key().unwrap_or("everyone")
        ));
        *response.status_mut() = StatusCode::BAD_GATEWAY;
        response
    };
    let mut plain = ThrottleLayer::new(budget.clone())
        .reject()
        .http()
        .on_unavailable(respond)
        .layer(ok());
    let response = send(&mut plain, Request::new(()));
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(response.body(), "test store down for everyone\n");
    assert_eq!(response.headers()["retry-after"], "2");
    assert!(response.extensions().get::<Unavailable>().is_some());

    let mut keyed = KeyedThrottleLayer::new(budget, ForwardedIp::x_real_ip())
        .reject()
        .report_key()
        .http()
        .on_unavailable(respond)
        .layer(ok());
    let response = send(&mut keyed, from("192.0.2.9"));
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(response.body(), "test store down for 192.0.2.9\n");
}

/// Without HTTP, the services fail with `Unavailable`, not `Throttled`:
/// code that downcasts to `Throttled` to say "too many requests" does not
/// mistake an outage for one.
#[test]
fn the_plain_services_fail_with_unavailable() {
    let budget = Flaky::default();
    budget.set_down(true);
    let inner = service_fn(|x: u32| async move { Ok::<_, Infallible>(x) });
    futures::executor::block_on(async {
        let err = ThrottleLayer::new(budget.clone())
            .reject()
            .layer(inner)
            .oneshot(1)
            .await
            .unwrap_err();
        assert!(!err.is::<Throttled>());
        let unavailable = err.downcast_ref::<Unavailable>().unwrap();
        assert_eq!(unavailable.store(), "test store");
        assert_eq!(unavailable.limit().scope(), Scope::Global);

        let mut keyed = KeyedThrottleLayer::new(budget, key_fn(|x: &u32| Ok(*x)))
            .max_wait(Flaky::WAIT * 4)
            .layer(inner);
        let err = keyed.ready().await.unwrap().call(7).await.unwrap_err();
        assert!(!err.is::<Throttled>());
        assert_eq!(
            err.downcast_ref::<Unavailable>().unwrap().limit().scope(),
            Scope::Keyed
        );
    });
}
