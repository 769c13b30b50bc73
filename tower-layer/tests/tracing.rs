//! The `tracing` events, caught by a subscriber of the test's own: one
//! for a shed request, one for a request refused while its budget's store
//! is down (a warning), one for a request without a key (an error when the
//! server's setup is at fault), one for a long wait.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::task::{Context, Waker};
use std::time::Duration;

use fueltank::clock::ManualClock;
use fueltank::{KeyedTank, Rate, Tank};
use fueltank_tower::key::{ForwardedIp, PeerIp};
use fueltank_tower::{KeyedThrottleLayer, Stats, ThrottleLayer};
use http::{Request, StatusCode};
use tower::{Layer, Service};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

mod common;
use common::{Flaky, ok, send};

/// One event as caught: its level, target, and fields written `name=value`
/// (the message as `message=...`).
#[derive(Debug, Clone)]
struct Caught {
    level: Level,
    target: String,
    fields: String,
}

/// Keeps every event.
#[derive(Clone, Default)]
struct Catcher {
    events: Arc<Mutex<Vec<Caught>>>,
}

impl Catcher {
    fn events(&self) -> Vec<Caught> {
        self.events.lock().unwrap().clone()
    }
}

struct Fields<'a>(&'a mut String);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, "{}={:?} ", field.name(), value);
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        let _ = write!(self.0, "{}={} ", field.name(), value);
    }
}

impl Subscriber for Catcher {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut fields = String::new();
        event.record(&mut Fields(&mut fields));
        self.events.lock().unwrap().push(Caught {
            level: *event.metadata().level(),
            target: event.metadata().target().to_string(),
            fields,
        });
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

/// Runs `f` with a catcher as the subscriber; the events it caught.
fn catch(f: impl FnOnce()) -> Vec<Caught> {
    let catcher = Catcher::default();
    tracing::subscriber::with_default(catcher.clone(), f);
    catcher.events()
}

fn per_ip(clock: &ManualClock) -> KeyedTank<IpAddr> {
    KeyedTank::builder(Rate::per_minute(1).unwrap())
        .clock(clock.clone())
        .build()
        .unwrap()
}

#[test]
fn a_missing_peer_address_is_logged_as_an_error_saying_what_to_change() {
    let clock = ManualClock::new();
    let mut svc = KeyedThrottleLayer::new(per_ip(&clock), PeerIp)
        .label("per-ip")
        .http()
        .layer(ok());
    let events = catch(|| {
        let response = send(&mut svc, Request::new(()));
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    });
    assert_eq!(events.len(), 1, "{events:?}");
    let event = &events[0];
    assert_eq!(event.level, Level::ERROR);
    assert_eq!(event.target, "fueltank_tower");
    assert!(event.fields.contains("limit=per-ip"), "{event:?}");
    assert!(
        event
            .fields
            .contains("into_make_service_with_connect_info::<SocketAddr>()"),
        "{event:?}"
    );
}

#[test]
fn a_request_at_fault_is_logged_at_debug_level_only() {
    let clock = ManualClock::new();
    let mut svc = KeyedThrottleLayer::new(per_ip(&clock), ForwardedIp::x_real_ip())
        .http()
        .layer(ok());
    let events = catch(|| {
        let response = send(&mut svc, Request::new(()));
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    });
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].level, Level::DEBUG);
    assert!(
        events[0].fields.contains("no `x-real-ip` header"),
        "{events:?}"
    );
}

#[test]
fn a_shed_request_is_an_event_naming_its_limit() {
    let clock = ManualClock::new();
    let tank = Tank::builder(Rate::per_minute(1).unwrap())
        .clock(clock.clone())
        .build()
        .unwrap();
    let mut svc = ThrottleLayer::new(tank)
        .reject()
        .label("api")
        .http()
        .layer(ok());
    let events = catch(|| {
        assert_eq!(send(&mut svc, Request::new(())).status(), StatusCode::OK);
        let shed = send(&mut svc, Request::new(()));
        assert_eq!(shed.status(), StatusCode::TOO_MANY_REQUESTS);
    });
    assert_eq!(events.len(), 1, "only the shed one: {events:?}");
    let event = &events[0];
    assert_eq!(event.level, Level::DEBUG);
    for field in ["scope=global", "limit=api", "retry_after_ms=60000"] {
        assert!(event.fields.contains(field), "{field} in {event:?}");
    }
}

#[test]
fn an_outage_is_a_warning_naming_the_store_apart_from_shed_requests() {
    let budget = Flaky::default();
    let mut svc = ThrottleLayer::new(budget.clone())
        .reject()
        .label("api")
        .http()
        .layer(ok());
    let events = catch(|| {
        let shed = send(&mut svc, Request::new(()));
        assert_eq!(shed.status(), StatusCode::TOO_MANY_REQUESTS);
        budget.set_down(true);
        let down = send(&mut svc, Request::new(()));
        assert_eq!(down.status(), StatusCode::SERVICE_UNAVAILABLE);
    });
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0].level, Level::DEBUG, "the shed one: {events:?}");
    let event = &events[1];
    assert_eq!(event.level, Level::WARN);
    assert_eq!(event.target, "fueltank_tower");
    for field in [
        "scope=global",
        "limit=api",
        "store=test store",
        "retry_after_ms=2000",
        "store unavailable",
    ] {
        assert!(event.fields.contains(field), "{field} in {event:?}");
    }
}

#[test]
fn a_keyed_shed_request_names_its_key_only_when_asked() {
    let clock = ManualClock::new();
    let mut svc = KeyedThrottleLayer::new(per_ip(&clock), ForwardedIp::x_real_ip())
        .reject()
        .report_key()
        .http()
        .layer(ok());
    let from = || {
        Request::builder()
            .header("x-real-ip", "192.0.2.4")
            .body(())
            .unwrap()
    };
    let events = catch(|| {
        send(&mut svc, from());
        send(&mut svc, from());
    });
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(events[0].fields.contains("key=192.0.2.4"), "{events:?}");
    assert!(events[0].fields.contains("scope=keyed"), "{events:?}");
}

#[test]
fn a_long_wait_is_reported_at_its_threshold() {
    let clock = ManualClock::new();
    let tank = Tank::builder(Rate::per_second(4).unwrap())
        .initial(0)
        .clock(clock.clone())
        .build()
        .unwrap();
    // Waits are timed on the stats' clock: here the test's.
    let layer = ThrottleLayer::new(tank)
        .stats(Stats::with_clock(clock.clone()))
        .long_wait(Duration::from_millis(400))
        .label("slow")
        .http();
    let mut cx = Context::from_waker(Waker::noop());
    let events = catch(|| {
        // 250 ms, then 500 ms: only the second is long.
        let mut first = layer.layer(ok());
        let mut second = layer.layer(ok());
        assert!(first.poll_ready(&mut cx).is_pending());
        assert!(second.poll_ready(&mut cx).is_pending());
        clock.advance(Duration::from_millis(250));
        assert!(first.poll_ready(&mut cx).is_ready());
        clock.advance(Duration::from_millis(250));
        assert!(second.poll_ready(&mut cx).is_ready());
    });
    assert_eq!(events.len(), 1, "{events:?}");
    let event = &events[0];
    assert_eq!(event.level, Level::INFO);
    assert!(event.fields.contains("wait_ms=500"), "{event:?}");
    assert!(event.fields.contains("limit=slow"), "{event:?}");
}

/// A budget of one's own may say it will not have fuel for longer than
/// `u64::MAX` milliseconds: the event says the most there are (was: the
/// figure cut to its low 64 bits).
#[test]
fn the_longest_wait_a_budget_can_say_is_logged_as_the_most_milliseconds() {
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
            Some(Duration::from_secs(u64::MAX))
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
    let events = catch(|| {
        let response = send(&mut svc, Request::new(()));
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    });
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(
        events[0]
            .fields
            .contains(&format!("retry_after_ms={} ", u64::MAX)),
        "{events:?}"
    );
}
