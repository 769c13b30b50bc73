//! Runs one request through a layer's service in a loop, for counting its
//! instructions under callgrind: `tower-layer/benches/callgrind.sh` runs
//! every case and prints instructions per request. Alone: `cargo run
//! --release -p fueltank-tower-benches --example layer_callgrind -- CASE
//! [CALLS]` (it then just runs the loop).
//!
//! A request is what `benches/layer.rs` times: `poll_ready` (ready at once,
//! the tank has fuel), `call`, one poll of the response future, on a tank
//! that never runs dry here.
//!
//! Cases: `noop` (the loop alone), `bare` (the service without the layer),
//! `wait`, `reject`, `wait_max_wait` (`ThrottleLayer::new(tank)`, in wait
//! mode, reject mode, and wait mode with `max_wait`), `keyed_wait`,
//! `keyed_reject` (`KeyedThrottleLayer` on one key), `keyed_and_wait`,
//! `keyed_and_reject` (the same `.and(tank)`: all or nothing with a global
//! tank), `stacked_wait`, `stacked_reject` (a global `ThrottleLayer` above
//! a keyed one: the same two limits, stacked), `http_no_headers`,
//! `http_headers`, `keyed_http_headers` (the same with `http()`, in reject
//! mode, over a service with a `String` body; `bare_http` is that service
//! alone), `http_structured` (`http_headers` with the structured
//! `RateLimit-Policy` and `RateLimit` fields), `http_structured_also` (the
//! same on a tank of two rates, `also`).

use std::hint::black_box;
use std::time::{Duration, Instant};

use std::convert::Infallible;
use std::future::{Ready, ready};

use fueltank::KeyedTank;
use fueltank::clock::{Clock, MonotonicClock};
use fueltank_tower::http::HeaderStyle;
use fueltank_tower::key::{KeyError, key_fn};
use fueltank_tower::{KeyedThrottleLayer, ThrottleLayer};
use http::{Request, Response};
use tower::{Layer, Service, service_fn};

#[path = "../request.rs"]
mod request;
use request::{drive, full_rate, full_tank, unit};

type Text = tower::util::ServiceFn<fn(Request<()>) -> Ready<Result<Response<String>, Infallible>>>;

/// A service whose body the HTTP layer's default rejections can make.
fn text() -> Text {
    service_fn(|_| ready(Ok(Response::new(String::new()))))
}

fn one_key(_: &Request<()>) -> Result<(), KeyError> {
    Ok(())
}

/// `full_tank`'s rate, also ten times as much per ten seconds: two rates
/// that never run dry here.
fn full_tank_also() -> fueltank::Tank {
    fueltank::Tank::builder(full_rate())
        .also(fueltank::Rate::new(10_000_000_000, Duration::from_secs(10)).unwrap())
        .initial(1_000_000_000)
        .build()
        .unwrap()
}

fn full_keyed() -> KeyedTank<()> {
    KeyedTank::new(full_rate())
}

/// `drive` in a loop step.
fn step<S: Service<Request<()>> + 'static>(mut svc: S) -> Box<dyn FnMut() -> bool> {
    Box::new(move || {
        black_box(drive(&mut svc));
        true
    })
}

/// The only function callgrind collects in (`--toggle-collect`): its
/// instructions divided by `calls` are the cost of one request, loop
/// included.
#[inline(never)]
fn measured_loop(calls: u64, op: &mut dyn FnMut() -> bool) -> u64 {
    let mut served = 0;
    for _ in 0..calls {
        served += u64::from(black_box(op()));
    }
    served
}

fn main() {
    let mut args = std::env::args().skip(1);
    let case = args.next().unwrap_or_else(|| usage());
    let calls: u64 = args
        .next()
        .map_or(100_000, |s| s.parse().unwrap_or_else(|_| usage()));

    let mut op: Box<dyn FnMut() -> bool> = match case.as_str() {
        "noop" => Box::new(|| true),
        "bare" => {
            let mut svc = unit();
            Box::new(move || {
                black_box(drive(&mut svc));
                true
            })
        }
        "wait" => {
            let mut svc = ThrottleLayer::new(full_tank()).layer(unit());
            Box::new(move || {
                black_box(drive(&mut svc));
                true
            })
        }
        "reject" => {
            let mut svc = ThrottleLayer::new(full_tank()).reject().layer(unit());
            Box::new(move || {
                black_box(drive(&mut svc));
                true
            })
        }
        "wait_max_wait" => {
            let mut svc = ThrottleLayer::new(full_tank())
                .max_wait(Duration::from_secs(1))
                .layer(unit());
            Box::new(move || {
                black_box(drive(&mut svc));
                true
            })
        }
        "keyed_wait" => step(KeyedThrottleLayer::new(full_keyed(), key_fn(one_key)).layer(unit())),
        "keyed_reject" => step(
            KeyedThrottleLayer::new(full_keyed(), key_fn(one_key))
                .reject()
                .layer(unit()),
        ),
        // Two limits: the keyed layer `and` a global tank, beside a global
        // layer stacked above a keyed one.
        "keyed_and_wait" => step(
            KeyedThrottleLayer::new(full_keyed(), key_fn(one_key))
                .and(full_tank())
                .layer(unit()),
        ),
        "keyed_and_reject" => step(
            KeyedThrottleLayer::new(full_keyed(), key_fn(one_key))
                .and(full_tank())
                .reject()
                .layer(unit()),
        ),
        "stacked_wait" => step(
            ThrottleLayer::new(full_tank())
                .layer(KeyedThrottleLayer::new(full_keyed(), key_fn(one_key)).layer(unit())),
        ),
        "stacked_reject" => step(
            ThrottleLayer::new(full_tank()).reject().layer(
                KeyedThrottleLayer::new(full_keyed(), key_fn(one_key))
                    .reject()
                    .layer(unit()),
            ),
        ),
        "bare_http" => step(text()),
        "http_no_headers" => step(
            ThrottleLayer::new(full_tank())
                .reject()
                .http()
                .headers(HeaderStyle::Off)
                .layer(text()),
        ),
        "http_headers" => step(
            ThrottleLayer::new(full_tank())
                .reject()
                .http()
                .layer(text()),
        ),
        "http_structured" => step(
            ThrottleLayer::new(full_tank())
                .reject()
                .http()
                .headers(HeaderStyle::Structured)
                .layer(text()),
        ),
        "http_structured_also" => step(
            ThrottleLayer::new(full_tank_also())
                .reject()
                .http()
                .headers(HeaderStyle::Structured)
                .layer(text()),
        ),
        "keyed_http_headers" => step(
            KeyedThrottleLayer::new(full_keyed(), key_fn(one_key))
                .reject()
                .http()
                .layer(text()),
        ),
        _ => usage(),
    };

    // Warm up past the clock's calibration (10 ms, refined at 1 s), so the
    // measured loop sees the steady clock path and warm caches.
    let warm_until = Instant::now() + Duration::from_millis(1100);
    while Instant::now() < warm_until {
        black_box(MonotonicClock.now());
        black_box(op());
    }
    let served = measured_loop(calls, &mut *op);
    println!("{case}: {calls} requests, {served} served");
}

fn usage() -> ! {
    eprintln!("usage: layer_callgrind CASE [CALLS]; cases are listed in the source's header");
    std::process::exit(2)
}
