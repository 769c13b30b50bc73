//! The layer's cost per request when fuel is available, against the bare
//! service and side by side with `tower::limit::RateLimit` and
//! `tower_governor`.
//!
//! Each iteration is one `poll_ready` + `call` + one poll of the response
//! future, driven by hand with a no-op waker (no executor in the loop), on
//! one thread. Every limiter is set so that it never limits: the cost
//! measured is the bookkeeping of a request that passes.
//!
//! Time is the benchmark thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), not
//! wall time: on a shared 2-core machine, wall time also counts the time
//! other processes hold the core, which inflates every figure by the load
//! average. Set `FUELTANK_BENCH_WALL=1` for wall time.
//!
//! ```sh
//! CARGO_TARGET_DIR=... cargo bench -p fueltank-tower-benches --bench layer
//! ```
//!
//! Two groups, because tower_governor only takes HTTP services answering
//! `Response<axum::body::Body>`:
//!
//! - `service`: `Request<()>` → `Response<()>`: bare, fueltank wait, fueltank
//!   reject (both over a bare tank), fueltank wait with `max_wait`, with
//!   `Stats`, and over a `Throttle` (one emission to its monitor per
//!   request), the keyed layer in wait and reject mode (one key, `key_fn`),
//!   the keyed layer `.and(tank)` (all or nothing with a global tank)
//!   beside a global layer stacked above a keyed one, in wait and reject
//!   mode, `tower::limit::RateLimit`.
//! - `tank`: the tank calls the layer makes, alone.
//! - `http`: `Request<()>` → `Response<Body>`: bare, fueltank's HTTP layer
//!   with and without `RateLimit` headers, the keyed HTTP layer with
//!   headers (one key), tower_governor (global key) with and without its
//!   `x-ratelimit-*` headers.
//! - `header_number`: a header value from a number, `HeaderValue::from(u64)`
//!   against the static table of small numbers the HTTP layer uses, for the
//!   small numbers of a usual response (0 to 99) and for large ones.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::hint::black_box;
use std::time::Duration;

use axum::body::Body;
use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{Criterion, Throughput, criterion_main};
use fueltank::{Budget, KeyedTank, Throttle};
use fueltank_tower::http::HeaderStyle;
use fueltank_tower::key::{KeyError, key_fn};
use fueltank_tower::{KeyedThrottleLayer, Stats, ThrottleLayer};
use http::{HeaderValue, Request, Response};
use tower::{Layer, service_fn};
use tower_governor::GovernorLayer;
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::key_extractor::GlobalKeyExtractor;

mod request;
use request::{drive, full_rate, full_tank, unit};

type WithBody =
    tower::util::ServiceFn<fn(Request<()>) -> Ready<Result<Response<Body>, Infallible>>>;

fn with_body() -> WithBody {
    service_fn(|_| ready(Ok(Response::new(Body::empty()))))
}

/// The same, with a monitor: every request is one emission.
fn full_throttle() -> Throttle {
    Throttle::builder(full_rate())
        .initial(1_000_000_000)
        .auto_calibrate(false)
        .build()
        .unwrap()
}

/// One tank per key, each starting full, as above.
fn full_keyed() -> KeyedTank<()> {
    KeyedTank::new(full_rate())
}

/// Every request has the one key `()`: the keyed layer's cost over one
/// key's tank, like tower_governor's global key.
fn one_key(_: &Request<()>) -> Result<(), KeyError> {
    Ok(())
}

fn service<M: Measurement>(c: &mut Criterion<M>) {
    // tower's RateLimit arms a tokio timer when it is built.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = runtime.enter();

    let mut group = c.benchmark_group("service");
    let mut bare = unit();
    group.bench_function("bare", |b| b.iter(|| black_box(drive(&mut bare))));

    let mut wait = ThrottleLayer::new(full_tank()).layer(unit());
    group.bench_function("fueltank_wait", |b| b.iter(|| black_box(drive(&mut wait))));

    let mut reject = ThrottleLayer::new(full_tank()).reject().layer(unit());
    group.bench_function("fueltank_reject", |b| {
        b.iter(|| black_box(drive(&mut reject)))
    });

    let mut max_wait = ThrottleLayer::new(full_tank())
        .max_wait(Duration::from_secs(1))
        .layer(unit());
    group.bench_function("fueltank_wait_max_wait", |b| {
        b.iter(|| black_box(drive(&mut max_wait)))
    });

    let mut counted = ThrottleLayer::new(full_tank())
        .stats(Stats::new())
        .layer(unit());
    group.bench_function("fueltank_wait_stats", |b| {
        b.iter(|| black_box(drive(&mut counted)))
    });

    let mut monitored = ThrottleLayer::new(full_throttle()).layer(unit());
    group.bench_function("fueltank_wait_monitor", |b| {
        b.iter(|| black_box(drive(&mut monitored)))
    });

    // As axum does: a clone of the route's service per request.
    group.bench_function("bare_cloned", |b| {
        b.iter(|| black_box(drive(&mut bare.clone())))
    });
    group.bench_function("fueltank_wait_monitor_cloned", |b| {
        b.iter(|| black_box(drive(&mut monitored.clone())))
    });

    let mut keyed_wait = KeyedThrottleLayer::new(full_keyed(), key_fn(one_key)).layer(unit());
    group.bench_function("fueltank_keyed_wait", |b| {
        b.iter(|| black_box(drive(&mut keyed_wait)))
    });

    let mut keyed_reject = KeyedThrottleLayer::new(full_keyed(), key_fn(one_key))
        .reject()
        .layer(unit());
    group.bench_function("fueltank_keyed_reject", |b| {
        b.iter(|| black_box(drive(&mut keyed_reject)))
    });

    // Two limits on every request: the keyed layer `and` a global tank (all
    // or nothing), beside a global layer stacked above a keyed one.
    for (name, reject) in [("wait", false), ("reject", true)] {
        let mut anded = KeyedThrottleLayer::new(full_keyed(), key_fn(one_key)).and(full_tank());
        if reject {
            anded = anded.reject();
        }
        let mut anded = anded.layer(unit());
        group.bench_function(format!("fueltank_keyed_and_{name}"), |b| {
            b.iter(|| black_box(drive(&mut anded)))
        });

        let (mut global, mut keyed) = (
            ThrottleLayer::new(full_tank()),
            KeyedThrottleLayer::new(full_keyed(), key_fn(one_key)),
        );
        if reject {
            (global, keyed) = (global.reject(), keyed.reject());
        }
        let mut stacked = global.layer(keyed.layer(unit()));
        group.bench_function(format!("fueltank_stacked_{name}"), |b| {
            b.iter(|| black_box(drive(&mut stacked)))
        });
    }

    let mut rate_limit =
        tower::limit::RateLimitLayer::new(u64::MAX, Duration::from_secs(1)).layer(unit());
    group.bench_function("tower_rate_limit", |b| {
        b.iter(|| black_box(drive(&mut rate_limit)))
    });
    group.finish();

    // The tank calls the layer makes per request, alone.
    let mut group = c.benchmark_group("tank");
    let tank = full_tank();
    group.bench_function("has_fuel", |b| b.iter(|| black_box(tank.has_fuel())));
    group.bench_function("try_take_spend", |b| {
        b.iter(|| tank.try_take(1).map(|fuel| fuel.spend()))
    });
    let monitor = fueltank::Monitor::new();
    group.bench_function("monitor_emit", |b| b.iter(|| monitor.emit()));
    let keyed = full_keyed();
    group.bench_function("keyed_has_fuel", |b| {
        b.iter(|| black_box(keyed.has_fuel(&())))
    });
    group.finish();
}

fn http<M: Measurement>(c: &mut Criterion<M>) {
    let mut group = c.benchmark_group("http");
    let mut bare = with_body();
    group.bench_function("bare", |b| b.iter(|| black_box(drive(&mut bare))));

    let mut plain = ThrottleLayer::new(full_tank())
        .reject()
        .http()
        .headers(HeaderStyle::Off)
        .layer(with_body());
    group.bench_function("fueltank_http_no_headers", |b| {
        b.iter(|| black_box(drive(&mut plain)))
    });

    let mut headers = ThrottleLayer::new(full_tank())
        .reject()
        .http()
        .layer(with_body());
    group.bench_function("fueltank_http_headers", |b| {
        b.iter(|| black_box(drive(&mut headers)))
    });

    let mut keyed_headers = KeyedThrottleLayer::new(full_keyed(), key_fn(one_key))
        .reject()
        .http()
        .layer(with_body());
    group.bench_function("fueltank_keyed_http_headers", |b| {
        b.iter(|| black_box(drive(&mut keyed_headers)))
    });

    let config = GovernorConfigBuilder::default()
        .per_nanosecond(1)
        .burst_size(u32::MAX)
        .key_extractor(GlobalKeyExtractor)
        .finish()
        .unwrap();
    let mut governor = GovernorLayer::new(config).layer(with_body());
    group.bench_function("tower_governor", |b| {
        b.iter(|| black_box(drive(&mut governor)))
    });

    let config = GovernorConfigBuilder::default()
        .per_nanosecond(1)
        .burst_size(u32::MAX)
        .key_extractor(GlobalKeyExtractor)
        .use_headers()
        .finish()
        .unwrap();
    let mut governor_headers = GovernorLayer::new(config).layer(with_body());
    group.bench_function("tower_governor_headers", |b| {
        b.iter(|| black_box(drive(&mut governor_headers)))
    });
    group.finish();
}

/// The HTTP layer's own header numbers (its module is private; its unit
/// test does not run here, which leaves its import unused).
#[path = "../src/http/number.rs"]
#[allow(unused_imports)]
mod number;

fn header_number<M: Measurement>(c: &mut Criterion<M>) {
    let mut group = c.benchmark_group("header_number");
    // A response's three numbers are small: Remaining, Reset, Retry-After.
    let mut small = (0..100_u64).cycle();
    group.bench_function("table_small", |b| {
        b.iter(|| black_box(number::number(black_box(small.next().unwrap_or(0)))))
    });
    group.bench_function("header_value_from_small", |b| {
        b.iter(|| black_box(HeaderValue::from(black_box(small.next().unwrap_or(0)))))
    });
    let large = 1_000_000_000_u64;
    group.bench_function("table_large", |b| {
        b.iter(|| black_box(number::number(black_box(large))))
    });
    group.bench_function("header_value_from_large", |b| {
        b.iter(|| black_box(HeaderValue::from(black_box(large))))
    });
    group.finish();
}

/// The calling thread's CPU time.
fn thread_cpu_time() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec for the call's duration.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// Criterion measurement in thread CPU time, shown in nanoseconds.
struct ThreadCpu;

impl Measurement for ThreadCpu {
    type Intermediate = Duration;
    type Value = Duration;

    fn start(&self) -> Duration {
        thread_cpu_time()
    }
    fn end(&self, start: Duration) -> Duration {
        thread_cpu_time().saturating_sub(start)
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, value: &Duration) -> f64 {
        value.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &Nanoseconds
    }
}

struct Nanoseconds;

impl ValueFormatter for Nanoseconds {
    fn scale_values(&self, _typical: f64, _values: &mut [f64]) -> &'static str {
        "ns (cpu)"
    }
    fn scale_throughputs(
        &self,
        _typical: f64,
        _throughput: &Throughput,
        _values: &mut [f64],
    ) -> &'static str {
        "ns (cpu)"
    }
    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

fn run<M: Measurement + 'static>(measurement: M) {
    // Short runs: the machine is shared. Compare ratios within one run.
    let mut criterion = Criterion::default()
        .with_measurement(measurement)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(40)
        .configure_from_args();
    service(&mut criterion);
    http(&mut criterion);
    header_number(&mut criterion);
}

fn benches() {
    if std::env::var_os("FUELTANK_BENCH_WALL").is_some() {
        run(WallTime);
    } else {
        run(ThreadCpu);
    }
}

criterion_main!(benches);
