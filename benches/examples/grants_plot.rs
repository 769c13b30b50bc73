//! Plots grants per 10 ms over 2 s for each hardcap against governor, under
//! a bursty load, to `docs/grants.svg` (hand-written SVG, no plotting crate).
//!
//! `cargo run --release -p fueltank-benches --example grants_plot`
//!
//! Every limiter runs at 200 per 500 ms (400/s, `T` = 2.5 ms) on the same
//! load, at the same time: 20 tasks ask in a loop from 0 to 0.25 s, nobody
//! from 0.25 s to 1 s, then 1000 tasks from 1 s to 2 s.

use std::fmt::Write as _;
use std::future::Future;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fueltank::{Hardcap, Rate, Tank};
use tokio::time::Instant;

const MAX_N: u64 = 200;
const PER: Duration = Duration::from_millis(500);
const SPAN: Duration = Duration::from_secs(2);
const BIN: Duration = Duration::from_millis(10);
const BINS: usize = (SPAN.as_millis() / BIN.as_millis()) as usize;
/// (first task starts, tasks stop, how many tasks).
const PHASES: [(f64, f64, usize); 2] = [(0.0, 0.25, 20), (1.0, 2.0, 1000)];

/// A limiter as the load sees it.
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

/// One panel of the plot.
struct Series {
    title: &'static str,
    what: &'static str,
    grants: Arc<Mutex<Vec<Duration>>>,
}

/// Runs the load on `limiter`, recording each grant's time since `start`.
fn load<L: Acquirer>(limiter: L, start: Instant, grants: Arc<Mutex<Vec<Duration>>>) {
    let limiter = Arc::new(limiter);
    for (from, until, tasks) in PHASES {
        let (from, until) = (
            start + Duration::from_secs_f64(from),
            start + Duration::from_secs_f64(until),
        );
        for _ in 0..tasks {
            let (limiter, grants) = (limiter.clone(), grants.clone());
            tokio::spawn(async move {
                tokio::time::sleep_until(from).await;
                // Dropping the wait at `until` is a cancellation: every
                // limiter here is cancel safe.
                let _ = tokio::time::timeout_at(until, async {
                    loop {
                        limiter.acquire().await;
                        grants.lock().unwrap().push(start.elapsed());
                    }
                })
                .await;
            });
        }
    }
}

fn tank(hardcap: Hardcap) -> Tank {
    Tank::builder(Rate::new(MAX_N, PER).unwrap())
        .hardcap(hardcap)
        .build()
        .unwrap()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::io::Result<()> {
    let series = [
        (
            "fueltank Limit",
            "bank ≤ max_n: one burst after idle, then one per T",
        ),
        ("fueltank One", "bank 1: one per T, never a burst"),
        (
            "fueltank Unbounded",
            "bank without bound: all the idle time's fuel at once",
        ),
        (
            "fueltank Window",
            "≤ max_n in any window of per: bursts of max_n, per apart",
        ),
        ("governor", "GCRA, burst max_n, starts full"),
    ]
    .map(|(title, what)| Series {
        title,
        what,
        grants: Arc::default(),
    });
    // Build every limiter at the same instant, so "idle" is idle for all.
    let start = Instant::now();
    load(tank(Hardcap::Limit), start, series[0].grants.clone());
    load(tank(Hardcap::One), start, series[1].grants.clone());
    load(tank(Hardcap::Unbounded), start, series[2].grants.clone());
    load(tank(Hardcap::Window), start, series[3].grants.clone());
    let quota = governor::Quota::with_period(PER / MAX_N as u32)
        .unwrap()
        .allow_burst(NonZeroU32::new(MAX_N as u32).unwrap());
    load(
        governor::RateLimiter::direct(quota),
        start,
        series[4].grants.clone(),
    );
    tokio::time::sleep_until(start + SPAN + Duration::from_millis(50)).await;

    let binned: Vec<Vec<u64>> = series
        .iter()
        .map(|s| {
            let mut bins = vec![0; BINS];
            for at in s.grants.lock().unwrap().iter() {
                if let Some(bin) = bins.get_mut((at.as_nanos() / BIN.as_nanos()) as usize) {
                    *bin += 1;
                }
            }
            bins
        })
        .collect();
    println!("| limiter | grants in 2 s | largest 10 ms bin | grants 1.0–1.5 s |");
    println!("|---|---:|---:|---:|");
    for (s, bins) in series.iter().zip(&binned) {
        println!(
            "| {} | {} | {} | {} |",
            s.title,
            bins.iter().sum::<u64>(),
            bins.iter().max().unwrap_or(&0),
            bins[100..150].iter().sum::<u64>()
        );
    }
    // The workspace's docs/, where the README finds it.
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/grants.svg");
    std::fs::create_dir_all(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs"))?;
    std::fs::write(path, svg(&series, &binned))?;
    println!("wrote {path}");
    Ok(())
}

// Layout of the SVG, in pixels.
const WIDTH: f64 = 860.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 50.0;
const PANEL: f64 = 100.0;
const GAP: f64 = 34.0;
/// Log scale: `log10(1 + count)` up to this count.
const Y_MAX: f64 = 1000.0;

fn svg(series: &[Series], binned: &[Vec<u64>]) -> String {
    let plot_width = WIDTH - LEFT - RIGHT;
    let height = TOP + series.len() as f64 * (PANEL + GAP) + 20.0;
    let x = |secs: f64| LEFT + secs / SPAN.as_secs_f64() * plot_width;
    let y =
        |count: f64, top: f64| top + PANEL * (1.0 - (1.0 + count).log10() / (1.0 + Y_MAX).log10());
    let mut out = String::new();
    let _ = writeln!(
        out,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"##
    );
    let _ = writeln!(out, r##"<rect width="100%" height="100%" fill="white"/>"##);
    let _ = writeln!(
        out,
        r##"<text x="{LEFT}" y="20" font-size="15" font-weight="bold">Grants per 10 ms at 200 per 500 ms (4 per bin when steady), log scale</text>"##
    );
    let _ = writeln!(
        out,
        r##"<text x="{LEFT}" y="38" fill="#555">Shaded: tasks asking (20 tasks until 0.25 s, idle until 1 s, then 1000 tasks)</text>"##
    );
    for (i, (s, bins)) in series.iter().zip(binned).enumerate() {
        let top = TOP + i as f64 * (PANEL + GAP) + 16.0;
        let bottom = top + PANEL;
        let _ = writeln!(
            out,
            r##"<text x="{LEFT}" y="{}"><tspan font-weight="bold">{}</tspan> — {}</text>"##,
            top - 5.0,
            s.title,
            s.what
        );
        for (from, until, _) in PHASES {
            let _ = writeln!(
                out,
                r##"<rect x="{:.1}" y="{top}" width="{:.1}" height="{PANEL}" fill="#eef3fb"/>"##,
                x(from),
                x(until) - x(from)
            );
        }
        // No label at 0: on a log scale it would sit on the label of 1.
        for tick in [1.0, 10.0, 100.0, 1000.0] {
            let ty = y(tick, top);
            let _ = writeln!(
                out,
                r##"<line x1="{LEFT}" x2="{:.1}" y1="{ty:.1}" y2="{ty:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end" font-size="10">{tick}</text>"##,
                WIDTH - RIGHT,
                LEFT - 4.0,
                ty + 3.0
            );
        }
        let mut path = format!("M{LEFT:.1},{bottom:.1}");
        for (bin, &count) in bins.iter().enumerate() {
            let (x0, x1) = (x(bin as f64 * 0.01), x((bin + 1) as f64 * 0.01));
            let yc = y(count as f64, top);
            let _ = write!(path, " L{x0:.1},{yc:.1} L{x1:.1},{yc:.1}");
        }
        let _ = write!(path, " L{:.1},{bottom:.1} Z", x(SPAN.as_secs_f64()));
        let colour = if s.title.starts_with("governor") {
            "#c0392b"
        } else {
            "#1f5fa8"
        };
        let _ = writeln!(
            out,
            r##"<path d="{path}" fill="{colour}" fill-opacity="0.35" stroke="{colour}" stroke-width="1"/>"##
        );
        let peak = bins.iter().copied().max().unwrap_or(0);
        let total: u64 = bins.iter().sum();
        let _ = writeln!(
            out,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="end" fill="#333">{total} grants, largest bin {peak}</text>"##,
            WIDTH - RIGHT,
            top - 5.0
        );
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" x2="{:.1}" y1="{bottom:.1}" y2="{bottom:.1}" stroke="#333"/>"##,
            WIDTH - RIGHT
        );
        for second in [0.0, 0.25, 0.5, 1.0, 1.5, 2.0] {
            let _ = writeln!(
                out,
                r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="10">{second} s</text>"##,
                x(second),
                bottom + 12.0
            );
        }
    }
    out.push_str("</svg>\n");
    out
}
