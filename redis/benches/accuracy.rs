//! Accuracy harness: 4 OS processes share one global limit on a real Redis
//! (started by the harness on a free port), at 1k/s, 10k/s and 100k/s,
//! through fueltank-redis and through a one-script-call-per-request GCRA
//! limiter (the redis-cell / redis_rate design, its Lua script below), side
//! by side on the same Redis.
//!
//! Two loads per row:
//!
//! - `greedy`: 8 tasks per process, each looping "take one grant". Gives
//!   the achieved rate (after 0.5 s; `Window` over the whole 3 s, as it
//!   grants a period's worth at once) against the limit, the most
//!   grants seen in any 1 s window on Redis's clock (each process converts
//!   its times with its offset to `TIME`, measured over its fastest round
//!   trip; a time is when the task saw its grant, so windows are shrunk by
//!   twice the widest uncertainty and by 50 ms for that delay) against the
//!   bound, round trips per grant, and CPU per grant (the processes' and
//!   Redis's own). The peer's tasks retry a refused call after the wait its
//!   script returns, as redis_rate's users do.
//! - `half`: each process asks at an eighth of the rate (half the limit in
//!   all), each request a task of its own: latency of a grant, p50 / p99.
//!
//! For reference at 10k/s, a local `fueltank::Tank` with `One` in a single
//! process: `One` falls behind by each late timer wake-up, global or not;
//! and the same `Limit` tank on a Redis Cluster of three masters (started
//! by the harness too; the tank's keys share one slot, so one master
//! serves it), its CPU the three masters'.
//!
//! `cargo bench -p fueltank-redis-benches --bench accuracy`           every row (~1 min)
//! `cargo bench -p fueltank-redis-benches --bench accuracy -- 10000`  rows whose label
//!                                                                    holds every word
//!
//! Prints a Markdown table and writes it to `redis-accuracy.md` under the
//! target directory. Needs `redis-server` on the PATH.

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::Write;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fueltank::{Hardcap, Rate};
use fueltank_redis::RedisStore;

const PROCESSES: usize = 4;
const TASKS: usize = 8;
const RUN: Duration = Duration::from_secs(3);
const WARMUP: Duration = Duration::from_millis(500);
const RATES: [u64; 3] = [1_000, 10_000, 100_000];

/// GCRA, one call per request: allowed at once if the theoretical arrival
/// time is within the burst tolerance, else the wait. Microseconds on
/// Redis's clock. ARGV: interval (µs), burst.
const PEER: &str = include_str!("peer.lua");

#[derive(Debug, Clone, Copy, PartialEq)]
enum Limiter {
    Fueltank(Hardcap),
    /// A `Limit` tank on a Redis Cluster of three masters.
    Cluster,
    Peer,
    /// A local `fueltank::Tank` with `One`, in one process: what a single
    /// tank does with the same timer (no Redis).
    LocalOne,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Load {
    Greedy,
    Half,
}

impl Limiter {
    fn label(self) -> &'static str {
        match self {
            Limiter::Fueltank(Hardcap::One) => "fueltank-redis One",
            Limiter::Fueltank(Hardcap::Window) => "fueltank-redis Window",
            Limiter::Fueltank(_) => "fueltank-redis Limit",
            Limiter::Cluster => "fueltank-redis Limit, Cluster of 3",
            Limiter::Peer => "one call per request (GCRA)",
            Limiter::LocalOne => "local fueltank::Tank One, 1 process",
        }
    }

    fn code(self) -> &'static str {
        match self {
            Limiter::Fueltank(Hardcap::One) => "one",
            Limiter::Fueltank(Hardcap::Window) => "window",
            Limiter::Fueltank(_) => "limit",
            Limiter::Cluster => "cluster",
            Limiter::Peer => "peer",
            Limiter::LocalOne => "local-one",
        }
    }

    fn of(code: &str) -> Limiter {
        match code {
            "local-one" => Limiter::LocalOne,
            "one" => Limiter::Fueltank(Hardcap::One),
            "window" => Limiter::Fueltank(Hardcap::Window),
            "peer" => Limiter::Peer,
            "cluster" => Limiter::Cluster,
            _ => Limiter::Fueltank(Hardcap::Limit),
        }
    }
}

fn main() {
    if let Ok(spec) = std::env::var("FT_ACCURACY_CHILD") {
        child(&spec);
        return;
    }
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let redis = common::RedisServer::start();
    // Started for the first Cluster row, if any.
    let mut cluster = None;
    let mut rows = Vec::new();
    for rate in RATES {
        let mut limiters = vec![Limiter::Fueltank(Hardcap::Limit), Limiter::Peer];
        if rate == 10_000 {
            limiters.push(Limiter::Fueltank(Hardcap::One));
            limiters.push(Limiter::LocalOne);
            limiters.push(Limiter::Fueltank(Hardcap::Window));
            limiters.push(Limiter::Cluster);
        }
        for limiter in limiters {
            for load in [Load::Greedy, Load::Half] {
                if load == Load::Half
                    && matches!(
                        limiter,
                        Limiter::Fueltank(Hardcap::One | Hardcap::Window) | Limiter::LocalOne
                    )
                {
                    continue;
                }
                let label = format!("{} {rate}/s {load:?}", limiter.label());
                if !filters.iter().all(|f| label.contains(f.as_str())) {
                    continue;
                }
                let servers = match limiter {
                    Limiter::Cluster => {
                        Servers::Cluster(cluster.get_or_insert_with(common::RedisCluster::start))
                    }
                    _ => Servers::One(&redis),
                };
                let row = run(servers, limiter, rate, load);
                println!("{label}: {row}");
                rows.push(format!(
                    "| {} | {rate}/s | {} | {row} |",
                    limiter.label(),
                    match load {
                        Load::Greedy => "greedy",
                        Load::Half => "half",
                    }
                ));
            }
        }
    }
    let mut table = String::from(
        "| limiter | limit | load | achieved / limit | most in 1 s (bound) | round trips / grant | \
         CPU µs / grant (processes + Redis) | grant p50 / p99 |\n|---|---|---|---|---|---|---|---|\n",
    );
    for row in &rows {
        table.push_str(row);
        table.push('\n');
    }
    println!("\n{table}");
    // The workspace's target directory: cargo runs a bench in its package's.
    let dir = std::env::var("CARGO_TARGET_DIR")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../../target").to_string());
    let path = std::path::Path::new(&dir).join("redis-accuracy.md");
    if std::fs::write(&path, &table).is_ok() {
        println!("written to {}", path.display());
    }
}

/// What a child reports.
#[derive(Default)]
struct Report {
    grants: u64,
    steady: u64,
    round_trips: u64,
    cpu_ns: u64,
    times: Vec<i128>,
    latencies: Vec<u64>,
    /// The widest offset uncertainty of the processes' clocks to Redis's.
    uncertainty: i128,
}

/// Where a row's Redis runs.
#[derive(Clone, Copy)]
enum Servers<'a> {
    One(&'a common::RedisServer),
    Cluster(&'a common::RedisCluster),
}

impl Servers<'_> {
    /// What a child connects to: a URL, or the Cluster's seeds joined by `,`.
    fn url(self) -> String {
        match self {
            Servers::One(redis) => redis.url(),
            Servers::Cluster(cluster) => cluster.urls().join(","),
        }
    }

    /// The servers' CPU time so far (user + system), from `INFO cpu`.
    fn cpu(self) -> u64 {
        match self {
            Servers::One(redis) => redis_cpu(redis.port),
            Servers::Cluster(cluster) => cluster.ports.iter().map(|&p| redis_cpu(p)).sum(),
        }
    }
}

fn run(servers: Servers, limiter: Limiter, rate: u64, load: Load) -> String {
    let dir = std::env::temp_dir().join(format!("fueltank-redis-accuracy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let name = format!(
        "bench-{}-{}-{rate}-{load:?}",
        std::process::id(),
        limiter.code()
    );
    let start_at = unix_ns() + 1_000_000_000;
    let redis_cpu_before = servers.cpu();
    let processes = if limiter == Limiter::LocalOne {
        1
    } else {
        PROCESSES
    };
    let children: Vec<_> = (0..processes)
        .map(|i| {
            let out = dir.join(format!("{i}.txt"));
            let spec = format!(
                "{}|{}|{rate}|{}|{start_at}|{name}|{}",
                servers.url(),
                limiter.code(),
                if load == Load::Greedy {
                    "greedy"
                } else {
                    "half"
                },
                out.display()
            );
            let child = Command::new(std::env::current_exe().unwrap())
                .env("FT_ACCURACY_CHILD", spec)
                .spawn()
                .expect("cannot start a child");
            (child, out)
        })
        .collect();
    let mut all = Report::default();
    for (mut child, out) in children {
        assert!(child.wait().unwrap().success(), "a child failed");
        let text = std::fs::read_to_string(&out).unwrap();
        let mut lines = text.lines();
        let head: Vec<u64> = lines
            .next()
            .unwrap()
            .split(' ')
            .map(|v| v.parse().unwrap())
            .collect();
        all.grants += head[0];
        all.steady += head[1];
        all.round_trips += head[2];
        all.cpu_ns += head[3];
        all.uncertainty = all.uncertainty.max(head[4] as i128);
        for line in lines {
            match line.split_once(' ') {
                Some(("t", v)) => all.times.push(v.parse().unwrap()),
                Some(("l", v)) => all.latencies.push(v.parse().unwrap()),
                _ => {}
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    let redis_cpu_ns = servers.cpu().saturating_sub(redis_cpu_before);
    let grants = all.grants.max(1);
    let cpu = format!(
        "{:.1} + {:.1}",
        all.cpu_ns as f64 / grants as f64 / 1000.0,
        redis_cpu_ns as f64 / grants as f64 / 1000.0
    );
    let trips = all.round_trips as f64 / grants as f64;
    match load {
        Load::Greedy => {
            // Window grants a period's worth at the start of each period:
            // its rate is over whole periods (the 3 s run), the others'
            // after the warm-up.
            let achieved = match limiter {
                Limiter::Fueltank(Hardcap::Window) => {
                    all.grants as f64 / RUN.as_secs_f64() / rate as f64
                }
                _ => all.steady as f64 / (RUN - WARMUP).as_secs_f64() / rate as f64,
            };
            all.times.sort_unstable();
            let mut most = 0;
            let mut lo = 0;
            for hi in 0..all.times.len() {
                // Shrunk by the offsets' uncertainty and by 50 ms for the
                // delay between a grant and its being seen (see BENCHMARKS.md).
                while all.times[hi] - all.times[lo] >= 950_000_000 - 2 * all.uncertainty {
                    lo += 1;
                }
                most = most.max(hi - lo + 1);
            }
            let bound = match limiter {
                Limiter::Fueltank(Hardcap::One | Hardcap::Window) | Limiter::LocalOne => rate,
                _ => 2 * rate - 1,
            };
            format!("{achieved:.4} | {most} ({bound}) | {trips:.4} | {cpu} | – ")
        }
        Load::Half => {
            all.latencies.sort_unstable();
            let at = |q: f64| {
                let i = ((all.latencies.len() as f64 - 1.0) * q) as usize;
                Duration::from_nanos(all.latencies.get(i).copied().unwrap_or(0))
            };
            let achieved = all.steady as f64 / (RUN - WARMUP).as_secs_f64() / rate as f64;
            format!(
                "{achieved:.4} (asked 0.5) | – | {trips:.4} | {cpu} | {:?} / {:?}",
                at(0.5),
                at(0.99)
            )
        }
    }
}

fn unix_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i128
}

/// The CPU time so far (user + system) of the Redis on `port`, from
/// `INFO cpu`.
fn redis_cpu(port: u16) -> u64 {
    let info = common::command(port, "INFO cpu");
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    ((field("used_cpu_user:") + field("used_cpu_sys:")) * 1e9) as u64
}

/// This process's CPU time so far: the sum of its threads' time on a CPU
/// (`/proc/self/task/*/schedstat`, nanoseconds).
fn cpu_ns() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|stat| stat.split(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// The offset from this process's `Instant`s to Redis's `TIME`, from the
/// round trip of least delay: Redis's time at `t` is `offset + (t − base)`.
async fn redis_offset(url: &str) -> (Instant, i128, i128) {
    let client = redis::Client::open(url).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let base = Instant::now();
    let mut best: Option<(i128, i128)> = None;
    for _ in 0..50 {
        let sent = Instant::now();
        let (sec, usec): (i64, i64) = redis::cmd("TIME")
            .query_async(&mut connection)
            .await
            .unwrap();
        let answered = Instant::now();
        let half = (answered - sent).as_nanos() as i128 / 2;
        let mid = (sent - base).as_nanos() as i128 + half;
        let redis_ns = sec as i128 * 1_000_000_000 + usec as i128 * 1000;
        if best.is_none_or(|(_, h)| half < h) {
            best = Some((redis_ns - mid, half));
        }
    }
    let (offset, half) = best.unwrap();
    (base, offset, half + 1000)
}

/// One way to take a grant, for either limiter.
#[derive(Clone)]
enum Taker {
    Fueltank(fueltank_redis::GlobalTank),
    Local(fueltank::Tank),
    Peer {
        connection: redis::aio::MultiplexedConnection,
        script: Arc<redis::Script>,
        key: String,
        interval_us: u64,
        burst: u64,
        trips: Arc<AtomicU64>,
    },
}

impl Taker {
    /// Takes one grant; `false` if `end` passed first (the peer stops
    /// retrying then, so that an overloaded Redis does not keep the run
    /// going).
    async fn take(&mut self, end: Instant) -> bool {
        match self {
            Taker::Fueltank(tank) => {
                let left = end.saturating_duration_since(Instant::now());
                tank.await_fuel_timeout(left + Duration::from_secs(1)).await
            }
            Taker::Local(tank) => {
                let left = end.saturating_duration_since(Instant::now());
                tank.await_fuel_timeout(left + Duration::from_secs(1)).await
            }
            Taker::Peer {
                connection,
                script,
                key,
                interval_us,
                burst,
                trips,
            } => loop {
                trips.fetch_add(1, Ordering::Relaxed);
                let answer: Result<Vec<i64>, _> = script
                    .key(key.as_str())
                    .arg(*interval_us)
                    .arg(*burst)
                    .invoke_async(connection)
                    .await;
                // A timed-out call (Redis overloaded) is retried after 1 ms.
                let wait = match answer {
                    Ok(answer) if answer[0] == 1 => return true,
                    Ok(answer) => answer[1].max(1) as u64,
                    Err(_) => 1000,
                };
                if Instant::now() >= end {
                    return false;
                }
                async_io::Timer::after(Duration::from_micros(wait)).await;
            },
        }
    }
}

fn child(spec: &str) {
    let parts: Vec<&str> = spec.split('|').collect();
    let [url, limiter, rate, load, start_at, name, out] = parts[..] else {
        panic!("bad spec {spec:?}");
    };
    let limiter = Limiter::of(limiter);
    let rate: u64 = rate.parse().unwrap();
    let start_at: i128 = start_at.parse().unwrap();
    let greedy = load == "greedy";
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let text = runtime.block_on(async move {
        let limit = Rate::per_second(rate).unwrap();
        let (taker, store) = match limiter {
            Limiter::Cluster => {
                let store = RedisStore::builder_cluster(url.split(','))
                    .connect()
                    .await
                    .unwrap();
                let tank = store.tank(name, limit).build().await.unwrap();
                (Taker::Fueltank(tank), Some(store))
            }
            Limiter::Fueltank(hardcap) => {
                let store = RedisStore::connect(url).await.unwrap();
                let tank = store
                    .tank(name, limit)
                    .hardcap(hardcap)
                    .build()
                    .await
                    .unwrap();
                (Taker::Fueltank(tank), Some(store))
            }
            Limiter::LocalOne => {
                let tank = fueltank::Tank::builder(limit)
                    .hardcap(Hardcap::One)
                    .build()
                    .unwrap();
                (Taker::Local(tank), None)
            }
            Limiter::Peer => {
                let client = redis::Client::open(url).unwrap();
                let connection = client.get_multiplexed_async_connection().await.unwrap();
                (
                    Taker::Peer {
                        connection,
                        script: Arc::new(redis::Script::new(PEER)),
                        key: name.to_string(),
                        interval_us: 1_000_000 / rate,
                        burst: rate,
                        trips: Arc::new(AtomicU64::new(0)),
                    },
                    None,
                )
            }
        };
        // The servers share this host's clock: any one of them tells it.
        let first = url.split(',').next().unwrap();
        let (base, offset, uncertainty) = redis_offset(first).await;
        let wait = start_at - unix_ns();
        if wait > 0 {
            tokio::time::sleep(Duration::from_nanos(wait as u64)).await;
        }
        let started = Instant::now();
        let end = started + RUN;
        let steady_from = started + WARMUP;
        let cpu_before = cpu_ns();
        let grants = Arc::new(AtomicU64::new(0));
        let steady = Arc::new(AtomicU64::new(0));
        let times = Arc::new(Mutex::new(Vec::<Instant>::new()));
        let latencies = Arc::new(Mutex::new(Vec::<u64>::new()));
        let mut tasks = Vec::new();
        if greedy {
            for _ in 0..TASKS {
                let (mut taker, grants, steady, times) =
                    (taker.clone(), grants.clone(), steady.clone(), times.clone());
                tasks.push(tokio::spawn(async move {
                    let mut mine = Vec::with_capacity(1 << 16);
                    while Instant::now() < end {
                        let taken = taker.take(end).await;
                        let at = Instant::now();
                        if !taken || at >= end {
                            break;
                        }
                        mine.push(at);
                        grants.fetch_add(1, Ordering::Relaxed);
                        if at >= steady_from {
                            steady.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    times.lock().unwrap().extend(mine);
                }));
            }
        } else {
            // Open loop: a request every 8·PROCESSES/rate/… s, each its own task.
            let every = Duration::from_nanos(1_000_000_000 * 2 * PROCESSES as u64 / rate);
            let mut next = started;
            while next < end {
                async_io::Timer::at(next).await;
                let (mut taker, grants, steady, latencies) = (
                    taker.clone(),
                    grants.clone(),
                    steady.clone(),
                    latencies.clone(),
                );
                let asked = Instant::now();
                tasks.push(tokio::spawn(async move {
                    let taken = taker.take(end).await;
                    let at = Instant::now();
                    if taken && at < end {
                        grants.fetch_add(1, Ordering::Relaxed);
                        if at >= steady_from {
                            steady.fetch_add(1, Ordering::Relaxed);
                        }
                        latencies
                            .lock()
                            .unwrap()
                            .push((at - asked).as_nanos() as u64);
                    }
                }));
                next += every;
            }
        }
        for task in tasks {
            let _ = task.await;
        }
        let cpu = cpu_ns() - cpu_before;
        let trips = match (&taker, &store) {
            (Taker::Peer { trips, .. }, _) => trips.load(Ordering::Relaxed),
            (_, Some(store)) => store.stats().round_trips,
            _ => 0,
        };
        let mut text = format!(
            "{} {} {trips} {cpu} {uncertainty}\n",
            grants.load(Ordering::Relaxed),
            steady.load(Ordering::Relaxed)
        );
        for at in times.lock().unwrap().iter() {
            let redis_ns = offset + (*at - base).as_nanos() as i128;
            text.push_str(&format!("t {redis_ns}\n"));
        }
        for latency in latencies.lock().unwrap().iter() {
            text.push_str(&format!("l {latency}\n"));
        }
        text
    });
    std::fs::File::create(out)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
}
