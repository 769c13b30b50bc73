//! Accuracy harness: fueltank in every hardcap, governor (default burst and
//! burst 1) and leaky-bucket on the same job — N tokio tasks (multi-thread
//! runtime, 2 workers), each looping "await one grant, record the time" —
//! at 100, 10k, 100k and 1M grants per second with 10, 1000 and 100k tasks.
//! `One` runs twice: as `Tank::builder` leaves it, and calibrated as
//! `Throttle` builds it (timer armed early by the measured lateness).
//! For each: steady achieved rate / target, worst window of length `per` /
//! `max_n`, CPU per grant, wake-up lateness p50/p99 and grants per task.
//!
//! `cargo bench -p fueltank-benches --bench accuracy`                  full matrix (~5 min)
//! `ACCURACY_QUICK=1 cargo bench -p fueltank-benches --bench accuracy` smoke run (< 30 s)
//! `cargo bench -p fueltank-benches --bench accuracy -- One 10000/s`   only rows whose
//!                                                                     label holds every word
//! `ACCURACY_DUMP=DIR` also writes each row's grants to `DIR/*.csv`.
//! `ACCURACY_SECS=5` lengthens each run (default 2.5 s, quick 1.5 s;
//! `Window` at least 2.2 s).
//!
//! Prints a Markdown table and writes it to `target/accuracy.md` (under
//! `$CARGO_TARGET_DIR` if set). How each column is defined is printed under
//! the table and explained in BENCHMARKS.md.

use std::future::Future;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fueltank::clock::{Clock, MonotonicClock};
use fueltank::{Hardcap, Rate, Tank};

mod common;
use common::{cpu_ns, filters, machine, selected};

const RATES: [u64; 4] = [100, 10_000, 100_000, 1_000_000];
const WAITERS: [usize; 3] = [10, 1000, 100_000];
const QUICK_RATES: [u64; 2] = [100, 10_000];
const QUICK_WAITERS: [usize; 1] = [1000];
/// Every rate is `max_n` per second.
const PER_NS: u64 = 1_000_000_000;

#[derive(Debug, Clone, Copy)]
enum Limiter {
    Fueltank(Hardcap),
    /// `Hardcap::One` as `Throttle` builds it at these rates (all ≥ 49/s):
    /// `timer_correction(timer_lateness(interval).min(interval / 2))`.
    FueltankOneCalibrated,
    /// governor's default: burst = `max_n`.
    Governor,
    /// governor with `Quota::allow_burst(1)`.
    GovernorBurst1,
    LeakyBucket,
}

const LIMITERS: [Limiter; 8] = [
    Limiter::Fueltank(Hardcap::Limit),
    Limiter::Fueltank(Hardcap::One),
    Limiter::FueltankOneCalibrated,
    Limiter::Fueltank(Hardcap::Unbounded),
    Limiter::Fueltank(Hardcap::Window),
    Limiter::Governor,
    Limiter::GovernorBurst1,
    Limiter::LeakyBucket,
];

impl Limiter {
    fn label(self) -> String {
        match self {
            Limiter::Fueltank(hardcap) => format!("fueltank {hardcap:?}"),
            Limiter::FueltankOneCalibrated => "fueltank One calibrated".into(),
            Limiter::Governor => "governor (burst max_n)".into(),
            Limiter::GovernorBurst1 => "governor burst 1".into(),
            Limiter::LeakyBucket => "leaky-bucket".into(),
        }
    }

    /// When the fuel of each grant fell due, under this limiter's own rules.
    fn due_rule(self, rate: u64) -> DueRule {
        let t = PER_NS / rate;
        match self {
            Limiter::Fueltank(Hardcap::Limit) => DueRule::Gcra {
                t,
                cap: Some(rate),
                initial: 1,
            },
            Limiter::Fueltank(Hardcap::One)
            | Limiter::FueltankOneCalibrated
            | Limiter::GovernorBurst1 => DueRule::Gcra {
                t,
                cap: Some(1),
                initial: 1,
            },
            Limiter::Fueltank(Hardcap::Unbounded) => DueRule::Gcra {
                t,
                cap: None,
                initial: 1,
            },
            Limiter::Fueltank(Hardcap::Window) => DueRule::Sliding {
                count: rate,
                span: PER_NS,
                initial: rate,
            },
            // governor starts full.
            Limiter::Governor => DueRule::Gcra {
                t,
                cap: Some(rate),
                initial: rate,
            },
            Limiter::LeakyBucket => {
                let (refill, interval) = leaky_refill(rate);
                DueRule::Sliding {
                    count: refill as u64,
                    span: interval.as_nanos() as u64,
                    initial: 0,
                }
            }
        }
    }
}

/// leaky-bucket refills in whole milliseconds: `refill` tokens per
/// `interval`, the finest grain that gives `rate` per second.
fn leaky_refill(rate: u64) -> (usize, Duration) {
    if rate >= 1000 {
        ((rate / 1000) as usize, Duration::from_millis(1))
    } else {
        (1, Duration::from_nanos(PER_NS / rate))
    }
}

/// How to tell when a grant's fuel fell due. Either way, a grant is never
/// due before its task asked for it.
#[derive(Debug, Clone, Copy)]
enum DueRule {
    /// Virtual scheduling: grant k is due at `tat_k`, with
    /// `tat_0 = start − (initial − 1)·t` and
    /// `tat_{k+1} = max(tat_k, g_k − (cap − 1)·t) + t`
    /// (`g_k` the k-th grant's time). Catches up late grants within the cap;
    /// with `cap = 1` it is "one `t` after the previous grant".
    Gcra {
        t: u64,
        cap: Option<u64>,
        initial: u64,
    },
    /// At most `count` grants in any `span`: grant k is due at
    /// `g_{k−count} + span`; the first `initial` at the start, the rest of
    /// the first `count` one `span` after it.
    Sliding { count: u64, span: u64, initial: u64 },
}

/// A limiter as the job sees it: something to await one grant from.
trait Acquirer: Send + Sync + 'static {
    fn acquire(&self) -> impl Future<Output = ()> + Send + '_;
}

impl Acquirer for Tank {
    fn acquire(&self) -> impl Future<Output = ()> + Send + '_ {
        self.await_fuel()
    }
}

impl Acquirer for governor::DefaultDirectRateLimiter {
    async fn acquire(&self) {
        self.until_ready().await;
    }
}

impl Acquirer for leaky_bucket::RateLimiter {
    fn acquire(&self) -> impl Future<Output = ()> + Send + '_ {
        self.acquire_one()
    }
}

/// One grant as a task recorded it, in nanoseconds since the run's base.
#[derive(Debug, Clone, Copy)]
struct Grant {
    asked: u64,
    granted: u64,
    task: u32,
}

/// A task's grants; handed to the run's sink when the task is dropped (the
/// runtime drops every task at the end of the run, mid-wait).
struct TaskLog {
    task: u32,
    grants: Vec<(u64, u64)>,
    sink: Arc<Mutex<Vec<Grant>>>,
}

impl Drop for TaskLog {
    fn drop(&mut self) {
        let mut sink = self.sink.lock().unwrap();
        sink.extend(self.grants.iter().map(|&(asked, granted)| Grant {
            asked,
            granted,
            task: self.task,
        }));
    }
}

fn ns_since(base: Instant) -> u64 {
    base.elapsed().as_nanos() as u64
}

struct Config {
    run: Duration,
    /// Grants before this much time after the start are warm-up.
    warmup: Duration,
}

/// What one run measured.
struct Outcome {
    rate_ratio: f64,
    worst_window: u64,
    cpu_per_grant_us: f64,
    cpu_share: f64,
    lateness_p50_us: f64,
    lateness_p99_us: f64,
    per_task_min: u64,
    per_task_max: u64,
    steady_grants: u64,
    /// The timer correction of a calibrated tank.
    correction: Option<Duration>,
}

fn run(limiter: Limiter, rate: u64, waiters: usize, config: &Config) -> Outcome {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // Measured before the run's clock starts (it blocks for about 5 ms),
    // as `ThrottleBuilder::build` does.
    let interval = Rate::per_second(rate).unwrap().interval();
    let correction = matches!(limiter, Limiter::FueltankOneCalibrated)
        .then(|| fueltank::clock::timer_lateness(interval).min(interval / 2));
    // A tank is built before the run's clock starts: a build may block for
    // the tank's calibration (about 5 ms, once per interval class), which
    // would otherwise read as lateness of every grant of the row.
    let tank = match limiter {
        Limiter::Fueltank(hardcap) => Some(
            Tank::builder(Rate::per_second(rate).unwrap())
                .hardcap(hardcap)
                .build()
                .unwrap(),
        ),
        Limiter::FueltankOneCalibrated => Some(
            Tank::builder(Rate::per_second(rate).unwrap())
                .hardcap(Hardcap::One)
                .timer_correction(correction.unwrap())
                .build()
                .unwrap(),
        ),
        _ => None,
    }
    .map(Arc::new);
    let sink = Arc::new(Mutex::new(Vec::new()));
    let base = Instant::now();
    let start = ns_since(base);
    let spawn = |runtime: &tokio::runtime::Runtime| match limiter {
        Limiter::Fueltank(_) | Limiter::FueltankOneCalibrated => {
            let tank = tank.clone().expect("built above");
            spawn_waiters(runtime, tank, waiters, base, &sink)
        }
        Limiter::Governor | Limiter::GovernorBurst1 => {
            let mut quota = governor::Quota::per_second(NonZeroU32::new(rate as u32).unwrap());
            if let Limiter::GovernorBurst1 = limiter {
                quota = quota.allow_burst(NonZeroU32::MIN);
            }
            let limiter = governor::RateLimiter::direct(quota);
            spawn_waiters(runtime, Arc::new(limiter), waiters, base, &sink)
        }
        Limiter::LeakyBucket => {
            let (refill, interval) = leaky_refill(rate);
            let limiter = leaky_bucket::RateLimiter::builder()
                .max(rate as usize)
                .refill(refill)
                .interval(interval)
                .build();
            spawn_waiters(runtime, Arc::new(limiter), waiters, base, &sink)
        }
    };
    spawn(&runtime);
    let spawned = ns_since(base);

    // The steady span [from, until): after the warm-up and after every task
    // has been spawned, until the end of the run.
    let from = (start + config.warmup.as_nanos() as u64).max(spawned + 200_000_000);
    // `Window` grants in rounds one `per` apart: its rate is measured from
    // the round at `per` to the round at `2·per`, so it runs past both.
    let run = match limiter {
        Limiter::Fueltank(Hardcap::Window) => config.run.max(Duration::from_secs_f64(2.2)),
        _ => config.run,
    };
    let until = start + run.as_nanos() as u64;
    let until = until.max(from + 500_000_000);
    sleep_until(base, from);
    let cpu_from = cpu_ns();
    sleep_until(base, until);
    let cpu_until = cpu_ns();
    // Drops every task (each mid-wait: a cancellation) and so their logs.
    runtime.shutdown_timeout(Duration::from_secs(30));

    let mut grants = std::mem::take(&mut *sink.lock().unwrap());
    grants.retain(|g| g.granted < until);
    grants.sort_unstable_by_key(|g| g.granted);
    if let Some(dir) = std::env::var_os("ACCURACY_DUMP") {
        dump(
            &grants,
            std::path::Path::new(&dir),
            limiter,
            rate,
            waiters,
            start,
        );
    }
    let mut outcome = analyse(
        &grants,
        limiter.due_rule(rate),
        rate,
        waiters,
        (start, from, until),
        cpu_until - cpu_from,
    );
    outcome.correction = correction;
    outcome
}

/// Writes one row's grants as CSV (`task,asked_ns,granted_ns`, times since
/// the limiter was built), for looking closer at a surprising row.
fn dump(
    grants: &[Grant],
    dir: &std::path::Path,
    limiter: Limiter,
    rate: u64,
    waiters: usize,
    start: u64,
) {
    let name = format!("{}-{rate}-{waiters}.csv", limiter.label().replace(' ', "_"));
    let mut csv = String::from("task,asked_ns,granted_ns\n");
    for g in grants {
        csv += &format!(
            "{},{},{}\n",
            g.task,
            g.asked - start.min(g.asked),
            g.granted - start
        );
    }
    let _ = std::fs::create_dir_all(dir);
    if let Err(e) = std::fs::write(dir.join(&name), csv) {
        eprintln!("could not write {name}: {e}");
    }
}

fn spawn_waiters<L: Acquirer>(
    runtime: &tokio::runtime::Runtime,
    limiter: Arc<L>,
    waiters: usize,
    base: Instant,
    sink: &Arc<Mutex<Vec<Grant>>>,
) {
    for task in 0..waiters {
        let limiter = limiter.clone();
        let mut log = TaskLog {
            task: task as u32,
            grants: Vec::new(),
            sink: sink.clone(),
        };
        runtime.spawn(async move {
            loop {
                let asked = ns_since(base);
                limiter.acquire().await;
                log.grants.push((asked, ns_since(base)));
            }
        });
    }
}

fn sleep_until(base: Instant, at_ns: u64) {
    let now = ns_since(base);
    if at_ns > now {
        std::thread::sleep(Duration::from_nanos(at_ns - now));
    }
}

/// The due time of each grant (sorted by grant time), per `rule`.
fn due_times(grants: &[Grant], rule: DueRule, start: u64) -> Vec<i64> {
    let start = start as i64;
    let mut due = Vec::with_capacity(grants.len());
    match rule {
        DueRule::Gcra { t, cap, initial } => {
            let t = t as i64;
            let mut tat = start - (initial as i64 - 1) * t;
            for grant in grants {
                let granted = grant.granted as i64;
                due.push(tat.max(grant.asked as i64));
                let floor = cap.map_or(i64::MIN, |cap| granted - (cap as i64 - 1) * t);
                tat = tat.max(floor) + t;
            }
        }
        DueRule::Sliding {
            count,
            span,
            initial,
        } => {
            let (count, span) = (count as usize, span as i64);
            for (k, grant) in grants.iter().enumerate() {
                let rule = if k < initial as usize {
                    start
                } else if k < count {
                    start + span
                } else {
                    grants[k - count].granted as i64 + span
                };
                due.push(rule.max(grant.asked as i64));
            }
        }
    }
    due
}

/// Recording jitter the worst-window count forgives: a grant recorded late
/// can make a window look fuller than the limiter made it (above all under
/// `Window`, whose rounds are exactly `per` apart in the limiter's time).
const WINDOW_SLACK_NS: u64 = 200_000;

/// Most grants in any half-open window `[t, t + span)`.
fn worst_window(grants: &[Grant], span: u64) -> u64 {
    let mut first = 0;
    let mut worst = 0;
    for (last, grant) in grants.iter().enumerate() {
        while grant.granted - grants[first].granted >= span {
            first += 1;
        }
        worst = worst.max(last + 1 - first);
    }
    worst as u64
}

/// Achieved rate over the steady span `[from, until)`.
///
/// Most limiters grant smoothly (or in batches far shorter than the span:
/// leaky-bucket every 1 ms): the rate is the least-squares slope of grant
/// number against grant time, so a few late grants (a stalled thread) at
/// either end of the span barely move it. `Window` grants in rounds one
/// `per` apart, so its rate is the grants from the first round start in the
/// span up to the last, over the time between them (a round start is a
/// grant at least `per/2` after the one before).
fn steady_rate(grants: &[Grant], rule: DueRule, from: u64, until: u64) -> f64 {
    let in_span: Vec<u64> = grants
        .iter()
        .map(|g| g.granted)
        .filter(|at| (from..until).contains(at))
        .collect();
    if let DueRule::Sliding { span, .. } = rule
        && span >= PER_NS / 10
    {
        let round_starts: Vec<usize> = (0..grants.len())
            .filter(|&k| {
                (from..until).contains(&grants[k].granted)
                    && (k == 0 || grants[k].granted - grants[k - 1].granted >= span / 2)
            })
            .collect();
        if let (Some(&first), Some(&last)) = (round_starts.first(), round_starts.last())
            && last > first
        {
            let secs = (grants[last].granted - grants[first].granted) as f64 / 1e9;
            return (last - first) as f64 / secs;
        }
        return in_span.len() as f64 / ((until - from) as f64 / 1e9);
    }
    if in_span.len() < 2 {
        return in_span.len() as f64 / ((until - from) as f64 / 1e9);
    }
    // Slope of k against t_k; times relative to the span's start keep the
    // sums well inside f64's precision.
    let n = in_span.len() as f64;
    let t0 = in_span[0];
    let mean_t = in_span.iter().map(|&t| (t - t0) as f64).sum::<f64>() / n;
    let mean_k = (n - 1.0) / 2.0;
    let (mut cov, mut var) = (0.0, 0.0);
    for (k, &t) in in_span.iter().enumerate() {
        let dt = (t - t0) as f64 - mean_t;
        cov += dt * (k as f64 - mean_k);
        var += dt * dt;
    }
    cov / var * 1e9
}

fn percentile(sorted: &[i64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[index] as f64
}

fn analyse(
    grants: &[Grant],
    rule: DueRule,
    rate: u64,
    waiters: usize,
    (start, from, until): (u64, u64, u64),
    cpu: u64,
) -> Outcome {
    let due = due_times(grants, rule, start);
    let steady: Vec<usize> = (0..grants.len())
        .filter(|&k| (from..until).contains(&grants[k].granted))
        .collect();
    let mut lateness: Vec<i64> = steady
        .iter()
        .map(|&k| grants[k].granted as i64 - due[k])
        .collect();
    lateness.sort_unstable();
    let mut per_task = vec![0u64; waiters];
    for &k in &steady {
        per_task[grants[k].task as usize] += 1;
    }
    let steady_grants = steady.len() as u64;
    Outcome {
        rate_ratio: steady_rate(grants, rule, from, until) / rate as f64,
        worst_window: worst_window(grants, PER_NS - WINDOW_SLACK_NS),
        cpu_per_grant_us: cpu as f64 / 1e3 / steady_grants.max(1) as f64,
        cpu_share: cpu as f64 / (until - from) as f64,
        lateness_p50_us: percentile(&lateness, 0.50) / 1e3,
        lateness_p99_us: percentile(&lateness, 0.99) / 1e3,
        per_task_min: per_task.iter().copied().min().unwrap_or(0),
        per_task_max: per_task.iter().copied().max().unwrap_or(0),
        steady_grants,
        correction: None,
    }
}

/// Reads the fueltank clock as a busy process would, past both early
/// calibrations (20 ms, then 1 s), so every row sees the same clock.
/// Returns how far the first map (20 ms window) ran from `Instant`, in ppm,
/// and a pair of readings to measure the later drift from.
fn warm_up_clock() -> (f64, (Instant, Instant)) {
    let origin = Instant::now();
    let spin_until = |at: Duration| {
        while origin.elapsed() < at {
            std::hint::black_box(MonotonicClock.now());
        }
    };
    spin_until(Duration::from_millis(25));
    let early = (MonotonicClock.now(), Instant::now());
    std::thread::sleep(Duration::from_millis(880));
    let late = (MonotonicClock.now(), Instant::now());
    let first_map_ppm =
        ((late.0 - early.0).as_secs_f64() / (late.1 - early.1).as_secs_f64() - 1.0) * 1e6;
    std::thread::sleep(Duration::from_millis(150));
    std::hint::black_box(MonotonicClock.now()); // the 1 s refinement
    (first_map_ppm, (MonotonicClock.now(), Instant::now()))
}

fn main() {
    let quick = std::env::var_os("ACCURACY_QUICK").is_some_and(|v| v != "0");
    let filters = filters();
    let secs: f64 = std::env::var("ACCURACY_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if quick { 1.5 } else { 2.5 });
    let config = Config {
        run: Duration::from_secs_f64(secs),
        warmup: Duration::from_secs_f64(secs * 0.35),
    };
    let (rates, waiter_counts): (&[u64], &[usize]) = if quick {
        (&QUICK_RATES, &QUICK_WAITERS)
    } else {
        (&RATES, &WAITERS)
    };

    let mut table = String::new();
    table += &format!(
        "Machine: {}. Runs of {secs} s, tokio multi-thread runtime with 2 workers.\n\n",
        machine()
    );
    table += "| rate | tasks | limiter | rate / target | worst window (per − 0.2 ms) / max_n | CPU µs / grant | CPU % | lateness p50 µs | p99 µs | grants / task min–max |\n";
    table += "|---:|---:|---|---:|---:|---:|---:|---:|---:|---|\n";
    print!("{table}");
    let (first_map_ppm, clock_start) = warm_up_clock();
    let mut corrections = Vec::new();
    for &rate in rates {
        for &waiters in waiter_counts {
            for limiter in LIMITERS {
                let label = format!("{rate}/s {waiters} {}", limiter.label());
                if !selected(&label, &filters) {
                    continue;
                }
                eprintln!("running {label}");
                let o = run(limiter, rate, waiters, &config);
                let row = if o.steady_grants == 0 {
                    // A limiter that stopped granting: say so rather than
                    // print ratios of nothing.
                    format!(
                        "| {rate}/s | {waiters} | {} | stalled: 0 grants in the steady span | {:.4} | — | {:.0} | — | — | — |\n",
                        limiter.label(),
                        o.worst_window as f64 / rate as f64,
                        o.cpu_share * 100.0,
                    )
                } else {
                    format!(
                        "| {rate}/s | {waiters} | {} | {:.4} | {:.4} | {:.2} | {:.0} | {:.0} | {:.0} | {}–{} |\n",
                        limiter.label(),
                        o.rate_ratio,
                        o.worst_window as f64 / rate as f64,
                        o.cpu_per_grant_us,
                        o.cpu_share * 100.0,
                        o.lateness_p50_us,
                        o.lateness_p99_us,
                        o.per_task_min,
                        o.per_task_max,
                    )
                };
                print!("{row}");
                table += &row;
                if let Some(early) = o.correction {
                    corrections.push(format!("{rate}/s × {waiters}: {early:?}"));
                }
            }
        }
    }
    let (mono, real) = (
        MonotonicClock.now() - clock_start.0,
        clock_start.1.elapsed(),
    );
    let drift_ppm = (mono.as_secs_f64() / real.as_secs_f64() - 1.0) * 1e6;
    let notes = format!(
        "\nfueltank's MonotonicClock vs Instant: {first_map_ppm:+.1} ppm from 25 ms to 0.9 s \
         (its first, 20 ms calibration), {drift_ppm:+.2} ppm over the rows (calibrated at 1 s; \
         the harness warms it up before the first row).\n\
         Times are taken with Instant by the tasks themselves, so lateness includes the \
         runtime's wake-up and scheduling delay. CPU counts every thread of the process \
         (harness included) over the steady span; see BENCHMARKS.md for the definitions.\n"
    );
    let notes = if corrections.is_empty() {
        notes
    } else {
        format!(
            "{notes}`One calibrated`: timer armed early by (measured before each row) {}.\n",
            corrections.join(", ")
        )
    };
    print!("{notes}");
    table += &notes;

    // The workspace's target directory: cargo runs a bench in its package's.
    let dir = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || concat!(env!("CARGO_MANIFEST_DIR"), "/../target").into(),
        std::path::PathBuf::from,
    );
    let path = dir.join("accuracy.md");
    match std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, &table)) {
        Ok(()) => eprintln!("wrote {}", path.display()),
        Err(e) => eprintln!("could not write {}: {e}", path.display()),
    }
}
