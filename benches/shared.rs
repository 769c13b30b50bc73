//! Tanks and monitors in shared memory, across real processes: this bench
//! binary re-runs itself as worker processes (`FUELTANK_BENCH_SHARED_WORKER`
//! holds a worker's role and arguments) and measures
//!
//! 1. **calls**: `has_fuel` on one shared tank with 1 and 2 processes
//!    calling it, beside an in-process tank and governor `check` with 1 and
//!    2 threads, the clocks they read, and `Monitor::emit` on a shared
//!    monitor (1 and 2 processes) beside an in-process one (1 and 2
//!    threads). Every contender calls in a tight loop from a common start on
//!    the host's monotonic clock (after a 0.5 s warm-up) for 2 s; ns / call
//!    is its time over its calls, the mean of the contenders;
//! 2. **grants**: rate and fairness across 4 processes at 100/s … 100k/s
//!    under `Limit`, `One` and `Unbounded`: each process runs 4 tokio tasks
//!    (a multi-thread runtime with 2 workers) looping `await_fuel` on one
//!    shared tank for 3 s, and records each grant on the host's monotonic
//!    clock (`clock_gettime(CLOCK_MONOTONIC)`, the same in every process).
//!    The reference: the same 16 tasks in one process on one in-process
//!    tank, in groups of 4 standing for the processes.
//!
//! Grants columns: *achieved / limit* is the least-squares slope of grant
//! number against time after the first second, over the rate; *share* is
//! each process's (group's) part of those grants, fewest and most (0.25
//! each is perfectly fair); *worst window* is the most grants of all
//! processes together, start-up included, in any window of `per` less
//! 0.2 ms (recording jitter), against the hardcap's bound (`Limit`
//! `2·max_n − 1`, `One` `max_n`, `Unbounded` none); *CPU* is the workers'
//! own user + system time over the same span (`getrusage`), per grant and
//! as a share of one core.
//!
//! `cargo bench -p fueltank-benches --bench shared` (about 2.5 minutes);
//! rows whose label holds every word:
//! `cargo bench -p fueltank-benches --bench shared -- One 10000/s`,
//! `cargo bench -p fueltank-benches --bench shared -- has_fuel`. Prints
//! Markdown tables and writes them to `target/shared.md` (under
//! `$CARGO_TARGET_DIR` if set).
//! Linux: the shared files go to `/dev/shm`.

use std::hint::black_box;
use std::io::Write;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fueltank::clock::{Clock, MonotonicClock};
use fueltank::{Hardcap, Monitor, Rate, Tank};

mod common;
use common::{cpu_ns, filters, machine, selected};

/// Set in a worker: its role and arguments, separated by `WORKER_SEP`.
const WORKER: &str = "FUELTANK_BENCH_SHARED_WORKER";
const WORKER_SEP: char = '\u{1f}';

const PER_NS: u64 = 1_000_000_000;
/// Calls before the common start: caches, clocks and branch predictors warm.
const CALL_WARM_UP_NS: u64 = 500_000_000;
const CALL_RUN_NS: u64 = 2_000_000_000;
/// Calls between two readings of the clock that ends a run.
const CALL_BATCH: u64 = 1000;

const GRANT_RATES: [u64; 4] = [100, 1000, 10_000, 100_000];
const GRANT_HARDCAPS: [Hardcap; 3] = [Hardcap::Limit, Hardcap::One, Hardcap::Unbounded];
const PROCESSES: usize = 4;
const TASKS_PER_PROCESS: usize = 4;
/// From the parent's start to the tasks' start: time for the workers to
/// start, build their runtime and tank.
const GRANT_LEAD_NS: u64 = 300_000_000;
/// Grants in the first second count for the worst window only.
const GRANT_WARM_UP_NS: u64 = 1_000_000_000;
const GRANT_RUN_NS: u64 = 3_000_000_000;
/// Recording jitter the worst window forgives, as in `benches/accuracy.rs`.
const WINDOW_SLACK_NS: u64 = 200_000;

/// The host's monotonic clock, as a shared tank reads it.
fn host_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid pointer to a timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * PER_NS + now.tv_nsec as u64
}

fn sleep_until(host_ns_at: u64) {
    let now = host_ns();
    if host_ns_at > now {
        std::thread::sleep(Duration::from_nanos(host_ns_at - now));
    }
}

/// A shared tank's or monitor's file, removed when dropped.
struct SharedFile(PathBuf);

impl SharedFile {
    /// A fresh file for this run, in `/dev/shm` where there is one (a file
    /// on a disk's file system is written back, and each writeback makes
    /// the next write to the mapping fault).
    fn new(row: &str) -> SharedFile {
        let dir = Path::new("/dev/shm");
        let dir = if dir.is_dir() {
            dir.to_owned()
        } else {
            std::env::temp_dir()
        };
        let name = format!("fueltank-bench-shared-{}-{row}", std::process::id());
        SharedFile(dir.join(name))
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("a UTF-8 temporary directory")
    }
}

impl Drop for SharedFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Starts this binary as a worker with `args`; its standard output piped.
fn spawn_worker(args: &[String]) -> Child {
    Command::new(std::env::current_exe().expect("the bench binary"))
        .env(WORKER, args.join(&WORKER_SEP.to_string()))
        .stdout(Stdio::piped())
        .spawn()
        .expect("a worker process starts")
}

/// What follows `prefix` on each line of a finished worker's output.
fn worker_lines(child: Child, prefix: &str) -> Vec<String> {
    let output = child.wait_with_output().expect("the worker's output");
    assert!(output.status.success(), "a worker failed");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.strip_prefix(prefix).map(str::to_owned))
        .collect()
}

// ---- Calls ----

/// A call timed in a tight loop. `shared` says a tank or monitor in shared
/// memory, else in process; `allowed`, a tank or limiter that never runs
/// dry, else one that is empty.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Call {
    /// `clock_gettime(CLOCK_MONOTONIC)`: the clock of a shared tank.
    HostClock,
    /// fueltank's default clock (the TSC, through quanta).
    MonotonicClock,
    HasFuel {
        shared: bool,
        allowed: bool,
    },
    GovernorCheck {
        allowed: bool,
    },
    Emit {
        shared: bool,
    },
}

#[derive(Debug, Clone, Copy)]
enum Contenders {
    /// Threads of one worker process.
    Threads(usize),
    /// Worker processes of one thread each.
    Processes(usize),
}

impl Contenders {
    fn count(self) -> usize {
        match self {
            Contenders::Threads(n) | Contenders::Processes(n) => n,
        }
    }
}

use Call::{Emit, GovernorCheck, HasFuel};
use Contenders::{Processes, Threads};

const CALL_ROWS: [(Call, Contenders); 21] = [
    (Call::HostClock, Threads(1)),
    (Call::MonotonicClock, Threads(1)),
    (
        HasFuel {
            shared: false,
            allowed: true,
        },
        Threads(1),
    ),
    (
        HasFuel {
            shared: true,
            allowed: true,
        },
        Processes(1),
    ),
    (
        HasFuel {
            shared: false,
            allowed: false,
        },
        Threads(1),
    ),
    (
        HasFuel {
            shared: true,
            allowed: false,
        },
        Processes(1),
    ),
    (GovernorCheck { allowed: true }, Threads(1)),
    (GovernorCheck { allowed: false }, Threads(1)),
    (
        HasFuel {
            shared: false,
            allowed: true,
        },
        Threads(2),
    ),
    (
        HasFuel {
            shared: true,
            allowed: true,
        },
        Processes(2),
    ),
    (
        HasFuel {
            shared: true,
            allowed: true,
        },
        Threads(2),
    ),
    (
        HasFuel {
            shared: false,
            allowed: false,
        },
        Threads(2),
    ),
    (
        HasFuel {
            shared: true,
            allowed: false,
        },
        Processes(2),
    ),
    (
        HasFuel {
            shared: true,
            allowed: false,
        },
        Threads(2),
    ),
    (GovernorCheck { allowed: true }, Threads(2)),
    (GovernorCheck { allowed: false }, Threads(2)),
    (Emit { shared: false }, Threads(1)),
    (Emit { shared: true }, Processes(1)),
    (Emit { shared: false }, Threads(2)),
    (Emit { shared: true }, Processes(2)),
    (Emit { shared: true }, Threads(2)),
];

fn call_label(call: Call, contenders: Contenders) -> String {
    let outcome = |allowed| if allowed { "allowed" } else { "denied" };
    let place = |shared| if shared { "shared" } else { "in process" };
    let call = match call {
        Call::HostClock => "clock_gettime(CLOCK_MONOTONIC)".to_owned(),
        Call::MonotonicClock => "MonotonicClock::now".to_owned(),
        HasFuel { shared, allowed } => {
            format!("has_fuel {}, tank {}", outcome(allowed), place(shared))
        }
        GovernorCheck { allowed } => format!("governor check {}", outcome(allowed)),
        Emit { shared } => format!("Monitor::emit, monitor {}", place(shared)),
    };
    let contenders = match contenders {
        Threads(1) => "1 thread".to_owned(),
        Threads(n) => format!("{n} threads"),
        Processes(1) => "1 process".to_owned(),
        Processes(n) => format!("{n} processes"),
    };
    format!("{call}, {contenders}")
}

/// Fast enough that no loop here can run it dry.
fn full_tank(shared: Option<&str>) -> Tank {
    let builder =
        Tank::builder(Rate::per_second(1_000_000_000).unwrap()).hardcap(Hardcap::Unbounded);
    match shared {
        Some(path) => builder.shared_memory(path),
        None => builder,
    }
    .build()
    .unwrap()
}

/// Empty, nobody waiting, next fuel a minute away.
fn empty_tank(shared: Option<&str>) -> Tank {
    let builder = Tank::builder(Rate::per_minute(1).unwrap()).initial(0);
    match shared {
        Some(path) => builder.shared_memory(path),
        None => builder,
    }
    .build()
    .unwrap()
}

fn shared_monitor(path: &str) -> Monitor {
    Monitor::builder().shared_memory(path).build().unwrap()
}

/// Calls `call` until `end` (host ns), counting from `start` on: the calls
/// and the ns they took.
fn spin(call: &impl Fn() -> bool, start: u64, end: u64) -> (u64, u64) {
    while host_ns() < start {
        for _ in 0..CALL_BATCH {
            black_box(call());
        }
    }
    let (from, mut now, mut calls) = (host_ns(), host_ns(), 0);
    while now < end {
        for _ in 0..CALL_BATCH {
            black_box(call());
        }
        calls += CALL_BATCH;
        now = host_ns();
    }
    (calls, now - from)
}

/// `spin` on `threads` threads at once.
fn spin_on_threads(
    threads: usize,
    start: u64,
    end: u64,
    call: impl Fn() -> bool + Sync,
) -> Vec<(u64, u64)> {
    std::thread::scope(|scope| {
        let spinners: Vec<_> = (0..threads)
            .map(|_| scope.spawn(|| spin(&call, start, end)))
            .collect();
        spinners.into_iter().map(|s| s.join().unwrap()).collect()
    })
}

/// A worker's part of a call row: build (or attach to) what `call` calls,
/// spin on it on `threads` threads, print `spun CALLS NS` for each.
fn call_worker(args: &[String]) {
    let [row, path, threads, start, end] = args else {
        panic!("call worker arguments: {args:?}")
    };
    let (call, _) = CALL_ROWS[row.parse::<usize>().unwrap()];
    let threads: usize = threads.parse().unwrap();
    let (start, end) = (start.parse().unwrap(), end.parse().unwrap());
    let spun = match call {
        Call::HostClock => spin_on_threads(threads, start, end, || host_ns() != 0),
        Call::MonotonicClock => spin_on_threads(threads, start, end, || {
            black_box(MonotonicClock.now());
            true
        }),
        HasFuel { shared, allowed } => {
            let shared = shared.then_some(path.as_str());
            let tank = if allowed {
                full_tank(shared)
            } else {
                empty_tank(shared)
            };
            spin_on_threads(threads, start, end, || tank.has_fuel())
        }
        GovernorCheck { allowed } => {
            let limiter = if allowed {
                governor::RateLimiter::direct(governor::Quota::per_second(NonZeroU32::MAX))
            } else {
                let limiter =
                    governor::RateLimiter::direct(governor::Quota::per_hour(NonZeroU32::MIN));
                let _ = limiter.check(); // spend the one cell of the burst
                limiter
            };
            spin_on_threads(threads, start, end, || limiter.check().is_ok())
        }
        Emit { shared } => {
            let monitor = if shared {
                shared_monitor(path)
            } else {
                Monitor::new()
            };
            spin_on_threads(threads, start, end, || {
                monitor.emit();
                true
            })
        }
    };
    let mut out = std::io::stdout().lock();
    for (calls, ns) in spun {
        writeln!(out, "spun {calls} {ns}").unwrap();
    }
}

/// Runs one call row: ns per call of each contender.
fn call_row(row: usize) -> Vec<f64> {
    let (call, contenders) = CALL_ROWS[row];
    let file = SharedFile::new(&row.to_string());
    // The shared tank or monitor is made here, before any worker attaches
    // (an empty tank must start empty); its file outlives this handle.
    match call {
        HasFuel {
            shared: true,
            allowed,
        } => {
            let _ = if allowed {
                full_tank(Some(file.path()))
            } else {
                empty_tank(Some(file.path()))
            };
        }
        Emit { shared: true } => {
            let _ = shared_monitor(file.path());
        }
        _ => {}
    }
    let start = host_ns() + CALL_WARM_UP_NS;
    let end = start + CALL_RUN_NS;
    let (processes, threads) = match contenders {
        Threads(n) => (1, n),
        Processes(n) => (n, 1),
    };
    let args = [
        "call".to_owned(),
        row.to_string(),
        file.path().to_owned(),
        threads.to_string(),
        start.to_string(),
        end.to_string(),
    ];
    let workers: Vec<Child> = (0..processes).map(|_| spawn_worker(&args)).collect();
    let mut per_call = Vec::new();
    for worker in workers {
        for line in worker_lines(worker, "spun ") {
            let (calls, ns) = line.split_once(' ').unwrap();
            let (calls, ns): (f64, f64) = (calls.parse().unwrap(), ns.parse().unwrap());
            if ns < 0.9 * CALL_RUN_NS as f64 {
                eprintln!("  a contender started late: measured {:.2} s", ns / 1e9);
            }
            per_call.push(ns / calls);
        }
    }
    per_call
}

/// The row of the same call in process, with as many contenders.
fn in_process_twin(call: Call, contenders: Contenders) -> Option<(Call, usize)> {
    let twin = match call {
        HasFuel {
            shared: true,
            allowed,
        } => HasFuel {
            shared: false,
            allowed,
        },
        Emit { shared: true } => Emit { shared: false },
        _ => return None,
    };
    Some((twin, contenders.count()))
}

fn calls_table(filters: &[String]) -> String {
    let mut table = String::from(
        "| call | ns / call | each contender | shared / in process |\n|---|---:|---|---:|\n",
    );
    print!("{table}");
    let mut measured: Vec<(Call, usize, f64)> = Vec::new();
    for (row, &(call, contenders)) in CALL_ROWS.iter().enumerate() {
        let label = call_label(call, contenders);
        if !selected(&label, filters) {
            continue;
        }
        eprintln!("running {label}");
        let per_call = call_row(row);
        let mean = per_call.iter().sum::<f64>() / per_call.len() as f64;
        let each: Vec<String> = per_call.iter().map(|ns| format!("{ns:.1}")).collect();
        let ratio = in_process_twin(call, contenders)
            .and_then(|(twin, n)| measured.iter().find(|m| (m.0, m.1) == (twin, n)))
            .map_or(String::new(), |m| format!("{:.2}×", mean / m.2));
        measured.push((call, contenders.count(), mean));
        let line = format!("| {label} | {mean:.1} | {} | {ratio} |\n", each.join(" / "));
        print!("{line}");
        table += &line;
    }
    table
}

// ---- Grants ----

#[derive(Debug, Clone, Copy)]
enum Setup {
    /// `PROCESSES` workers on one shared tank.
    SharedTank,
    /// One worker, all the tasks, one in-process tank.
    InProcessTank,
}

fn grant_label(rate: u64, hardcap: Hardcap, setup: Setup) -> String {
    let setup = match setup {
        Setup::SharedTank => format!("{PROCESSES} processes, shared tank"),
        Setup::InProcessTank => "1 process, in-process tank (reference)".to_owned(),
    };
    format!("{rate}/s {hardcap:?}, {setup}")
}

fn hardcap_named(name: &str) -> Hardcap {
    match name {
        "Limit" => Hardcap::Limit,
        "One" => Hardcap::One,
        "Unbounded" => Hardcap::Unbounded,
        _ => panic!("no such hardcap here: {name}"),
    }
}

fn grants_tank(rate: u64, hardcap: Hardcap, shared: Option<&str>) -> Tank {
    let builder = Tank::builder(Rate::per_second(rate).unwrap()).hardcap(hardcap);
    match shared {
        Some(path) => builder.shared_memory(path),
        None => builder,
    }
    .build()
    .unwrap()
}

/// A task's grant times; handed to the sink when the task is dropped (the
/// runtime drops every task at the end of the run, mid-wait).
struct TaskLog {
    task: usize,
    grants: Vec<u64>,
    sink: Arc<Mutex<Vec<(usize, u64)>>>,
}

impl Drop for TaskLog {
    fn drop(&mut self) {
        let mut sink = self.sink.lock().unwrap();
        sink.extend(self.grants.iter().map(|&at| (self.task, at)));
    }
}

/// A worker's part of a grants row: `tasks` tasks take from the tank
/// (`path`, or `-` for an in-process tank) from `start` to `end`; prints
/// `cpu NS` (over `[from, end)`) and `grant TASK HOST_NS` for each grant.
fn grants_worker(args: &[String]) {
    let [rate, hardcap, path, tasks, start, from, end] = args else {
        panic!("grants worker arguments: {args:?}")
    };
    let rate: u64 = rate.parse().unwrap();
    let shared = (path != "-").then_some(path.as_str());
    let tasks: usize = tasks.parse().unwrap();
    let [start, from, end]: [u64; 3] = [start, from, end].map(|s| s.parse().unwrap());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let tank = Arc::new(grants_tank(rate, hardcap_named(hardcap), shared));
    let sink = Arc::new(Mutex::new(Vec::new()));
    sleep_until(start);
    for task in 0..tasks {
        let (tank, sink) = (tank.clone(), sink.clone());
        runtime.spawn(async move {
            let mut log = TaskLog {
                task,
                grants: Vec::new(),
                sink,
            };
            loop {
                tank.await_fuel().await;
                log.grants.push(host_ns());
            }
        });
    }
    sleep_until(from);
    let cpu_from = cpu_ns();
    sleep_until(end);
    let cpu = cpu_ns() - cpu_from;
    runtime.shutdown_timeout(Duration::from_secs(10));
    let grants = std::mem::take(&mut *sink.lock().unwrap());
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    writeln!(out, "cpu {cpu}").unwrap();
    for (task, at) in grants.into_iter().filter(|&(_, at)| at < end) {
        writeln!(out, "grant {task} {at}").unwrap();
    }
}

/// What one grants row measured.
struct Spread {
    rate_ratio: f64,
    share_min: f64,
    share_max: f64,
    worst_window: usize,
    cpu_us_per_grant: f64,
    cpu_share: f64,
}

/// Runs one grants row.
fn grants_row(rate: u64, hardcap: Hardcap, setup: Setup) -> Spread {
    let file = SharedFile::new(&format!("{rate}-{hardcap:?}"));
    let (processes, tasks, path) = match setup {
        Setup::SharedTank => {
            // Made here, so that no two workers race to create it.
            let _ = grants_tank(rate, hardcap, Some(file.path()));
            (PROCESSES, TASKS_PER_PROCESS, file.path())
        }
        Setup::InProcessTank => (1, PROCESSES * TASKS_PER_PROCESS, "-"),
    };
    let start = host_ns() + GRANT_LEAD_NS;
    let (from, end) = (start + GRANT_WARM_UP_NS, start + GRANT_RUN_NS);
    let args = [
        "grants".to_owned(),
        rate.to_string(),
        format!("{hardcap:?}"),
        path.to_owned(),
        tasks.to_string(),
        start.to_string(),
        from.to_string(),
        end.to_string(),
    ];
    let workers: Vec<Child> = (0..processes).map(|_| spawn_worker(&args)).collect();
    // Grant times, each with its process (or, in one process, its task's
    // group of `TASKS_PER_PROCESS`).
    let mut grants: Vec<(u64, usize)> = Vec::new();
    let mut cpu = 0;
    for (process, worker) in workers.into_iter().enumerate() {
        for line in worker_lines(worker, "") {
            if let Some(ns) = line.strip_prefix("cpu ") {
                cpu += ns.parse::<u64>().unwrap();
            } else if let Some(grant) = line.strip_prefix("grant ") {
                let (task, at) = grant.split_once(' ').unwrap();
                let group = match setup {
                    Setup::SharedTank => process,
                    Setup::InProcessTank => task.parse::<usize>().unwrap() % PROCESSES,
                };
                grants.push((at.parse().unwrap(), group));
            }
        }
    }
    grants.sort_unstable();
    let steady: Vec<&(u64, usize)> = grants.iter().filter(|g| g.0 >= from).collect();
    let mut per_process = [0usize; PROCESSES];
    for &&(_, process) in &steady {
        per_process[process] += 1;
    }
    let share = |n: usize| n as f64 / steady.len().max(1) as f64;
    let times: Vec<u64> = steady.iter().map(|g| g.0).collect();
    Spread {
        rate_ratio: slope_per_second(&times) / rate as f64,
        share_min: share(*per_process.iter().min().unwrap()),
        share_max: share(*per_process.iter().max().unwrap()),
        worst_window: worst_window(&grants, PER_NS - WINDOW_SLACK_NS),
        cpu_us_per_grant: cpu as f64 / 1e3 / steady.len().max(1) as f64,
        cpu_share: cpu as f64 / (end - from) as f64,
    }
}

/// Grants per second: the least-squares slope of grant number against time
/// (sorted times), so that a few stalled grants at either end barely move it.
fn slope_per_second(times: &[u64]) -> f64 {
    if times.len() < 2 {
        return 0.0;
    }
    let n = times.len() as f64;
    let t0 = times[0];
    let mean_t = times.iter().map(|&t| (t - t0) as f64).sum::<f64>() / n;
    let mean_k = (n - 1.0) / 2.0;
    let (mut cov, mut var) = (0.0, 0.0);
    for (k, &t) in times.iter().enumerate() {
        let dt = (t - t0) as f64 - mean_t;
        cov += dt * (k as f64 - mean_k);
        var += dt * dt;
    }
    cov / var * 1e9
}

/// Most grants (sorted by time) in any half-open window `[t, t + span)`.
fn worst_window(grants: &[(u64, usize)], span: u64) -> usize {
    let mut first = 0;
    let mut worst = 0;
    for (last, grant) in grants.iter().enumerate() {
        while grant.0 - grants[first].0 >= span {
            first += 1;
        }
        worst = worst.max(last + 1 - first);
    }
    worst
}

/// The most grants the hardcap allows in a window of `per`.
fn bound(rate: u64, hardcap: Hardcap) -> Option<u64> {
    match hardcap {
        Hardcap::Limit => Some(2 * rate - 1),
        Hardcap::One => Some(rate),
        _ => None,
    }
}

fn grants_table(filters: &[String]) -> String {
    let mut table = String::from(
        "| rate | hardcap | setup | achieved / limit | share per process min – max | worst window (bound) | CPU µs / grant | CPU % |\n\
         |---:|---|---|---:|---|---:|---:|---:|\n",
    );
    print!("{table}");
    for rate in GRANT_RATES {
        for hardcap in GRANT_HARDCAPS {
            for setup in [Setup::SharedTank, Setup::InProcessTank] {
                let label = grant_label(rate, hardcap, setup);
                if !selected(&label, filters) {
                    continue;
                }
                eprintln!("running {label}");
                let s = grants_row(rate, hardcap, setup);
                let bound = bound(rate, hardcap).map_or("none".to_owned(), |b| b.to_string());
                let setup = match setup {
                    Setup::SharedTank => format!("{PROCESSES} processes, shared"),
                    Setup::InProcessTank => "1 process (reference)".to_owned(),
                };
                let line = format!(
                    "| {rate}/s | {hardcap:?} | {setup} | {:.4} | {:.3} – {:.3} | {} ({bound}) | {:.2} | {:.0} |\n",
                    s.rate_ratio,
                    s.share_min,
                    s.share_max,
                    s.worst_window,
                    s.cpu_us_per_grant,
                    s.cpu_share * 100.0,
                );
                print!("{line}");
                table += &line;
            }
        }
    }
    table
}

// ---- Main ----

fn main() {
    if let Ok(worker) = std::env::var(WORKER) {
        let args: Vec<String> = worker.split(WORKER_SEP).map(str::to_owned).collect();
        return match args[0].as_str() {
            "call" => call_worker(&args[1..]),
            "grants" => grants_worker(&args[1..]),
            role => panic!("no such worker role: {role}"),
        };
    }
    let filters = filters();
    let mut report = format!("Machine: {}.\n\n", machine());
    print!("{report}");
    report += &calls_table(&filters);
    let gap = format!(
        "\nGrants: {PROCESSES} processes × {TASKS_PER_PROCESS} tasks on a shared tank, or {} tasks \
         on an in-process tank in one process; {} s each, the first second warm-up.\n\n",
        PROCESSES * TASKS_PER_PROCESS,
        GRANT_RUN_NS / PER_NS,
    );
    print!("{gap}");
    report += &gap;
    report += &grants_table(&filters);

    // The workspace's target directory: cargo runs a bench in its package's.
    let dir = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || concat!(env!("CARGO_MANIFEST_DIR"), "/../target").into(),
        PathBuf::from,
    );
    let path = dir.join("shared.md");
    match std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, &report)) {
        Ok(()) => eprintln!("wrote {}", path.display()),
        Err(e) => eprintln!("could not write {}: {e}", path.display()),
    }
}
