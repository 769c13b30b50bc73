//! Several processes, one budget: this example starts worker processes
//! (itself, run again) that share one global tank in Redis, each with
//! greedy tasks, and prints their combined rate live.
//!
//! ```sh
//! cargo run -p fueltank-redis --example fleet                  # Redis at $REDIS_URL or 127.0.0.1:6379
//! cargo run -p fueltank-redis --example fleet -- --demo        # 3 s, on a redis-server of its own
//! cargo run -p fueltank-redis --example fleet -- --workers 6 --rate 500/s --hardcap window --seconds 5
//! ```
//!
//! Without `--demo` it uses the Redis at `--url` (or `$REDIS_URL`); if none
//! answers there and `redis-server` is on the PATH, it starts one of its own
//! on a free port, and says so. Without either it says what is missing and
//! exits with status 2.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fueltank::{Hardcap, Rate};
use fueltank_redis::RedisStore;

const TASKS_PER_WORKER: usize = 4;

struct Options {
    url: Option<String>,
    workers: usize,
    rate: Rate,
    hardcap: Hardcap,
    seconds: u64,
    demo: bool,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--worker") {
        worker(&args[1..]);
        return;
    }
    let options = match parse(&args) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            eprintln!(
                "usage: fleet [--demo] [--url URL] [--workers N] [--rate RATE] \
                 [--hardcap limit|one|window|unbounded] [--seconds S]"
            );
            std::process::exit(2);
        }
    };
    let (url, own) = match redis_for(&options) {
        Ok(found) => found,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    run(&options, &url);
    drop(own);
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut options = Options {
        url: std::env::var("REDIS_URL").ok(),
        workers: 4,
        rate: "200/s".parse().expect("a valid rate"),
        hardcap: Hardcap::Limit,
        seconds: 10,
        demo: false,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .cloned()
                .ok_or_else(|| format!("{arg} needs a value"))
        };
        match arg.as_str() {
            "--demo" => {
                options.demo = true;
                options.seconds = 3;
            }
            "--url" => options.url = Some(value()?),
            "--workers" => {
                options.workers = value()?
                    .parse()
                    .ok()
                    .filter(|&n| (1..=64).contains(&n))
                    .ok_or("--workers takes a number from 1 to 64")?;
            }
            "--rate" => options.rate = value()?.parse().map_err(|err| format!("{err}"))?,
            "--hardcap" => {
                options.hardcap = match value()?.as_str() {
                    "limit" => Hardcap::Limit,
                    "one" => Hardcap::One,
                    "window" => Hardcap::Window,
                    "unbounded" => Hardcap::Unbounded,
                    other => return Err(format!("unknown hardcap {other:?}")),
                }
            }
            "--seconds" => {
                options.seconds = value()?
                    .parse()
                    .ok()
                    .filter(|&s| (1..=3600).contains(&s))
                    .ok_or("--seconds takes a number from 1 to 3600")?;
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(options)
}

/// A `redis-server` this example started: stopped when dropped.
struct OwnRedis(Child);

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The URL to use, and the server started for it if one was.
fn redis_for(options: &Options) -> Result<(String, Option<OwnRedis>), String> {
    if !options.demo {
        let url = options
            .url
            .clone()
            .unwrap_or_else(|| "redis://127.0.0.1:6379".to_string());
        if answers(&url) {
            return Ok((url, None));
        }
        println!("No Redis answers at {url}.");
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|err| format!("cannot find a free port: {err}"))?;
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|err| {
            format!(
                "No Redis is reachable, and redis-server cannot be started ({err}). \
                 Start one (apt-get install redis-server), or give its address \
                 with --url redis://HOST:PORT or REDIS_URL."
            )
        })?;
    let own = OwnRedis(child);
    let url = format!("redis://127.0.0.1:{port}");
    let started = Instant::now();
    while !answers(&url) {
        if started.elapsed() > Duration::from_secs(5) {
            return Err(format!(
                "the redis-server started on port {port} does not answer"
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    println!("Started redis-server on port {port} for this run.");
    Ok((url, Some(own)))
}

/// Whether a Redis answers PING at `url` (host and port only).
fn answers(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("redis://") else {
        return false;
    };
    let host_port = rest.rsplit('@').next().unwrap_or(rest);
    let host_port = host_port.split('/').next().unwrap_or(host_port);
    let address = if host_port.contains(':') {
        host_port.to_string()
    } else {
        format!("{host_port}:6379")
    };
    let Ok(addresses) = std::net::ToSocketAddrs::to_socket_addrs(&address) else {
        return false;
    };
    addresses.into_iter().any(|addr| {
        let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
        let mut answer = [0u8; 5];
        stream.write_all(b"PING\r\n").is_ok()
            && stream.read_exact(&mut answer).is_ok()
            && (&answer == b"+PONG" || answer.starts_with(b"-"))
    })
}

/// Starts the workers and prints their combined rate every half second.
fn run(options: &Options, url: &str) {
    let name = format!("fleet-{}", std::process::id());
    let hardcap = format!("{:?}", options.hardcap).to_lowercase();
    println!(
        "{} workers x {TASKS_PER_WORKER} greedy tasks share one {} {} tank for {} s:",
        options.workers, options.rate, hardcap, options.seconds
    );
    let counts = Arc::new(Mutex::new(vec![0u64; options.workers]));
    // When the latest count came in: a worker's last one follows its last
    // grant, so the last of them all ends the run.
    let last_count_at = Arc::new(Mutex::new(None));
    let mut children = Vec::new();
    let mut readers = Vec::new();
    for index in 0..options.workers {
        let mut child = Command::new(std::env::current_exe().expect("this program's path"))
            .args(["--worker", url, &options.rate.to_string(), &hardcap])
            .args([&options.seconds.to_string(), &name])
            .stdout(Stdio::piped())
            .spawn()
            .expect("cannot start a worker process");
        let stdout = child.stdout.take().expect("a piped stdout");
        let (counts, last_count_at) = (counts.clone(), last_count_at.clone());
        readers.push(std::thread::spawn(move || {
            let mut summary = None;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(count) = line.strip_prefix("count ") {
                    counts.lock().unwrap()[index] = count.parse().unwrap_or(0);
                    *last_count_at.lock().unwrap() = Some(Instant::now());
                } else {
                    summary = Some(line);
                }
            }
            summary
        }));
        children.push(child);
    }
    let started = Instant::now();
    let mut last = (0u64, Instant::now());
    // The count after the first half second: from then on, the steady rate.
    let mut first = None;
    while children
        .iter_mut()
        .any(|c| matches!(c.try_wait(), Ok(None)))
    {
        std::thread::sleep(Duration::from_millis(500));
        let now = counts.lock().unwrap().clone();
        let total: u64 = now.iter().sum();
        first.get_or_insert((total, Instant::now()));
        let rate = (total - last.0) as f64 / last.1.elapsed().as_secs_f64();
        last = (total, Instant::now());
        println!(
            "  {:>5.1} s  {total:>6} grants  {rate:>7.1}/s combined  per worker {now:?}",
            started.elapsed().as_secs_f64()
        );
    }
    let mut failed = false;
    for (child, reader) in children.iter_mut().zip(readers) {
        let status = child.wait().expect("a worker to finish");
        match reader.join().ok().flatten() {
            Some(summary) if status.success() => println!("  {summary}"),
            summary => {
                failed = true;
                eprintln!(
                    "  a worker failed ({status}): {}",
                    summary.unwrap_or_default()
                );
            }
        }
    }
    let total: u64 = counts.lock().unwrap().iter().sum();
    let elapsed = started.elapsed().as_secs_f64();
    let (at_first, first_at) = first.unwrap_or((0, started));
    // Each worker stops `seconds` after it has connected, later than we
    // started: the run ends with the last count a worker sent.
    let ended = last_count_at.lock().unwrap().unwrap_or(first_at);
    let span = ended.saturating_duration_since(first_at).as_secs_f64();
    let steady = (total - at_first) as f64 / span.max(1e-3);
    println!(
        "{total} grants in {elapsed:.1} s across all workers: {steady:.1}/s after the first \
         half second, for a limit of {} (a tank Redis had never seen starts with its bank)",
        options.rate
    );
    if failed {
        std::process::exit(1);
    }
}

/// One worker: greedy tasks on the shared tank; its count on stdout.
fn worker(args: &[String]) {
    let [url, rate, hardcap, seconds, name] = args else {
        eprintln!("worker arguments: URL RATE HARDCAP SECONDS NAME");
        std::process::exit(2);
    };
    let rate: Rate = rate.parse().expect("the parent checked the rate");
    let hardcap = match hardcap.as_str() {
        "one" => Hardcap::One,
        "window" => Hardcap::Window,
        "unbounded" => Hardcap::Unbounded,
        _ => Hardcap::Limit,
    };
    let seconds: u64 = seconds.parse().expect("the parent checked the seconds");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let result = runtime.block_on(async {
        let store = RedisStore::connect(url).await?;
        let tank = store.tank(name, rate).hardcap(hardcap).build().await?;
        let count = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let end = Instant::now() + Duration::from_secs(seconds);
        let tasks: Vec<_> = (0..TASKS_PER_WORKER)
            .map(|_| {
                let (tank, count) = (tank.clone(), count.clone());
                tokio::spawn(async move {
                    while Instant::now() < end {
                        if tank.await_fuel_timeout(Duration::from_millis(100)).await {
                            count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        while Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(100)).await;
            println!("count {}", count.load(std::sync::atomic::Ordering::Relaxed));
        }
        for task in tasks {
            let _ = task.await;
        }
        let granted = count.load(std::sync::atomic::Ordering::Relaxed);
        println!("count {granted}");
        let stats = store.stats();
        Ok::<_, fueltank_redis::Error>(format!(
            "worker {}: {granted} grants, {} round trips ({:.4} per grant), {} reserved fuel expired",
            std::process::id(),
            stats.round_trips,
            stats.round_trips as f64 / granted.max(1) as f64,
            stats.expired
        ))
    });
    match result {
        Ok(summary) => println!("{summary}"),
        Err(err) => {
            println!("error: {err}");
            std::process::exit(1);
        }
    }
}
