//! A tank in shared memory, with real processes: this test binary re-runs
//! itself as workers (see `common::processes`). Workers take fuel greedily
//! (spinning on `has_fuel`, or waiting in their own line) and print each
//! grant's time on the host's monotonic clock; the test checks the grants
//! of all processes together against the hardcap's promise.
#![cfg(unix)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use common::processes::{spawn_worker, worker};
use fueltank::{Budget, Error, Hardcap, Tank};

/// The multi-process tests run one at a time: each keeps the cores busy.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The host's monotonic clock, as the tank reads it.
fn host_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid pointer to a timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

/// A fresh path for a shared file of this test run.
fn path(name: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "fueltank-test-{}-{name}-{}.tank",
        std::process::id(),
        host_ns()
    ));
    let _ = std::fs::remove_file(&path);
    path
}

fn hardcap(name: &str) -> Hardcap {
    match name {
        "Limit" => Hardcap::Limit,
        "One" => Hardcap::One,
        _ => Hardcap::Unbounded,
    }
}

fn shared(path: &str, rate: &str, cap: Hardcap) -> Result<Tank, Error> {
    Tank::builder(rate.parse().unwrap())
        .hardcap(cap)
        .shared_memory(path)
        .build()
}

/// A worker's part: take from the tank at `path` until `end` (host ns),
/// spinning or waiting, and print `grant BEFORE AFTER` for each grant (the
/// clock read just before the attempt and just after the grant).
fn take_until(args: &[String]) {
    let [path, rate, cap, end, mode] = args else {
        panic!("worker arguments: {args:?}")
    };
    let tank = shared(path, rate, hardcap(cap)).unwrap();
    let end: u64 = end.parse().unwrap();
    let mut out = std::io::stdout().lock();
    use std::io::Write;
    // On a line of its own (the test harness has printed the test's name).
    writeln!(out, "\nready").unwrap();
    out.flush().unwrap();
    loop {
        let before = host_ns();
        if before >= end {
            break;
        }
        let granted = match mode.as_str() {
            "spin" => tank.has_fuel(),
            _ => tank.blocking_await_fuel_timeout(Duration::from_nanos(end - before)),
        };
        if granted {
            writeln!(out, "grant {before} {}", host_ns()).unwrap();
            // Line by line: a worker killed mid-run has told what it took.
            out.flush().unwrap();
        } else if mode == "spin" {
            std::thread::yield_now();
        }
    }
}

/// Grants as (before, after) pairs from a worker's output.
fn grants(output: impl BufRead) -> Vec<(u64, u64)> {
    output
        .lines()
        .map_while(Result::ok)
        .filter_map(|line| {
            let mut parts = line.strip_prefix("grant ")?.split(' ');
            Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
        })
        .collect()
}

/// The most grants *certainly* inside one window of length `per`: those
/// whose whole (before, after) span falls in it, windows starting at each
/// grant's `before`. A grant's true time lies in its span, so more than the
/// bound here is a real breach.
fn worst_window(grants: &[(u64, u64)], per: u64) -> usize {
    let mut by_before = grants.to_vec();
    by_before.sort();
    by_before
        .iter()
        .map(|&(start, _)| {
            by_before
                .iter()
                .filter(|&&(b, a)| b >= start && a < start + per)
                .count()
        })
        .max()
        .unwrap_or(0)
}

/// The grants of each worker, their outputs read all at once (a pipe left
/// unread would stall its writer).
fn read_all(children: &mut [std::process::Child]) -> Vec<Vec<(u64, u64)>> {
    let readers: Vec<_> = children
        .iter_mut()
        .map(|child| {
            let out = child.stdout.take().unwrap();
            std::thread::spawn(move || grants(BufReader::new(out)))
        })
        .collect();
    readers.into_iter().map(|r| r.join().unwrap()).collect()
}

/// Starts `modes.len()` workers on the tank at `path` until `end`.
fn workers(
    test: &str,
    path: &str,
    rate: &str,
    cap: &str,
    end: u64,
    modes: &[&str],
) -> Vec<std::process::Child> {
    modes
        .iter()
        .map(|mode| {
            let args = [path, rate, cap, &end.to_string(), mode].map(str::to_owned);
            spawn_worker(test, &args)
        })
        .collect()
}

/// Four processes — two spinning on `has_fuel`, two waiting in their own
/// lines — take from one shared 1000/s tank for 3 s under each hardcap:
/// together they get `initial + ⌊elapsed / T⌋`, with what is left in the
/// bucket (`One` cannot catch up a late take, so it may fall short on a
/// loaded machine, never over), and no window of `per` sees more than the
/// bound.
#[test]
fn four_processes_share_one_budget() {
    if let Some(args) = worker() {
        return take_until(&args);
    }
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    for cap in ["Limit", "One", "Unbounded"] {
        let file = Removed::new(cap);
        let path = file.path();
        let tank = shared(path, "1000/s", hardcap(cap)).unwrap();
        // Just after the tank was made (building it may first calibrate the
        // timer, for 5 ms): what accrued since is at most one more.
        let created = host_ns();
        let end = created + 3_000_000_000;
        let mut children = workers(
            "four_processes_share_one_budget",
            path,
            "1000/s",
            cap,
            end,
            &["spin", "wait", "spin", "wait"],
        );
        let mut all = Vec::new();
        let mut counts = Vec::new();
        for got in read_all(&mut children) {
            counts.push(got.len());
            all.extend(got);
        }
        for child in &mut children {
            assert!(child.wait().unwrap().success());
        }
        // Conservation, where nothing is lost to the cap (the bucket is
        // 1000 deep): granted + left = accrued, within one for the clock
        // read after the tank was made. `One` loses each late take for
        // good (it cannot bank): fewer on a loaded machine, never more.
        // The level read between two clock readings: what accrued by the
        // first is at least what it counts, by the second at most (a
        // loaded machine may stop this thread between any two of them).
        let before = host_ns();
        let left = tank.level();
        let after = host_ns();
        let accrued = |now: u64| 1 + (now - created) / 1_000_000;
        let total = all.len() as u64;
        println!(
            "{cap}: {total} grants (per process {counts:?}) + {left} left; {} accrued",
            accrued(before)
        );
        assert!(
            total + left <= accrued(after) + 1,
            "{cap}: {total} + {left} > {} + 1",
            accrued(after)
        );
        // (`accrued` counts from just after the tank was made: one short
        // at most, hence the `+ 1` above.)
        match cap {
            // (Over 90 % on a quiet machine; under 90 % seen with the 2
            // cores loaded 6: half is what a stall of the line would miss.)
            "One" => assert!(
                total * 2 >= accrued(before),
                "{cap}: {total} of {}",
                accrued(before)
            ),
            _ => assert!(
                total + left + 1 >= accrued(before),
                "{cap}: {total} + {left} < {} − 1",
                accrued(before)
            ),
        }
        let bound = match cap {
            "Limit" => 2 * 1000 - 1,
            "One" => 1000,
            _ => usize::MAX,
        };
        let worst = worst_window(&all, 1_000_000_000);
        assert!(worst <= bound, "{cap}: {worst} grants in one second");
        // (How the processes share: `greedy_processes_get_fair_shares`; a
        // process spinning on `has_fuel` gets fuel only when no turn is
        // scheduled, which the waiting processes keep doing.)
        drop(tank);
    }
}

/// One of four processes is killed with SIGKILL in the middle of the run:
/// the state stays whole, the others carry on, and all grants together
/// (the killed one's until it died) still follow the rate exactly.
#[test]
fn a_killed_process_leaves_the_others_exact() {
    if let Some(args) = worker() {
        return take_until(&args);
    }
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let file = Removed::new("kill");
    let path = file.path();
    let tank = shared(path, "1000/s", Hardcap::Limit).unwrap();
    let created = host_ns();
    let end = created + 3_000_000_000;
    let mut children = workers(
        "a_killed_process_leaves_the_others_exact",
        path,
        "1000/s",
        "Limit",
        end,
        &["spin", "wait", "spin", "wait"],
    );
    let mut victim = children.remove(0);
    let mut victim_out = BufReader::new(victim.stdout.take().unwrap());
    // Past the test harness's own lines, to the worker's.
    let mut line = String::new();
    while line.trim_end() != "ready" {
        line.clear();
        assert!(
            victim_out.read_line(&mut line).unwrap() > 0,
            "the worker ended early"
        );
    }
    let others = std::thread::spawn(move || {
        let got = read_all(&mut children);
        for child in &mut children {
            assert!(child.wait().unwrap().success());
        }
        got
    });
    let victim_grants = std::thread::spawn(move || grants(victim_out));
    std::thread::sleep(Duration::from_millis(1_500));
    victim.kill().unwrap();
    victim.wait().unwrap();
    let mut all = victim_grants.join().unwrap();
    let killed = all.len();
    all.extend(others.join().unwrap().into_iter().flatten());
    // Conservation: granted + left = accrued (the bucket, 1000 deep, never
    // filled while four took from it).
    let (now, left) = (host_ns(), tank.level());
    let accrued = 1 + (now - created) / 1_000_000;
    let total = all.len() as u64;
    println!("{total} grants ({killed} by the killed process) + {left} left; {accrued} accrued");
    // The killed process may have taken one it could not tell; the clock
    // read after the tank was made may count one fewer than accrued.
    assert!(
        total + left <= accrued + 1,
        "{total} + {left} > {accrued} + 1"
    );
    assert!(
        total + left + 1 >= accrued,
        "{total} + {left} < {accrued} − 1"
    );
    assert!(worst_window(&all, 1_000_000_000) < 2 * 1000);
    // And the tank is still usable.
    std::thread::sleep(Duration::from_millis(5));
    assert!(tank.has_fuel());
}

/// `pause`, `resume` and `set_rate` in one process reach the others (the
/// rate with its capacity).
#[test]
fn pause_resume_and_set_rate_reach_every_process() {
    if let Some(args) = worker() {
        // The other process: report the level and rate it sees, on demand.
        let tank = shared(&args[0], "10/s", Hardcap::Limit);
        let tank = match tank {
            Ok(tank) => tank,
            // After the parent's set_rate, attach with the new rate.
            Err(_) => shared(&args[0], "100/s", Hardcap::Limit).unwrap(),
        };
        let stdin = std::io::stdin();
        for line in stdin.lock().lines().map_while(Result::ok) {
            match line.as_str() {
                "take" => println!("took {}", tank.has_fuel()),
                "rate" => println!("rate {}", tank.rate()),
                "wait 50" => println!("wait {}", tank.wait_time(50).is_some()),
                _ => break,
            }
        }
        return;
    }
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let file = Removed::new("control");
    let path = file.path();
    let tank = Tank::builder("10/s".parse().unwrap())
        .initial(0)
        .shared_memory(path)
        .build()
        .unwrap();
    tank.pause();
    let mut other = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "pause_resume_and_set_rate_reach_every_process",
            "--nocapture",
        ])
        .env("FUELTANK_TEST_WORKER", path)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut to = other.stdin.take().unwrap();
    let mut from = BufReader::new(other.stdout.take().unwrap());
    let mut ask = |question: &str| {
        use std::io::Write;
        writeln!(to, "{question}").unwrap();
        to.flush().unwrap();
        loop {
            let mut line = String::new();
            assert!(
                from.read_line(&mut line).unwrap() > 0,
                "the other process ended"
            );
            let line = line.trim().to_owned();
            if ["took ", "rate ", "wait "]
                .iter()
                .any(|p| line.starts_with(p))
            {
                return line;
            }
        }
    };
    // Paused here: no refill there either.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(ask("take"), "took false");
    tank.resume();
    std::thread::sleep(Duration::from_millis(150));
    assert_eq!(ask("take"), "took true");
    tank.set_rate("100/s".parse().unwrap());
    assert_eq!(ask("rate"), "rate 100/s");
    // Its capacity too: 50 fit now (it attached at 10/s).
    assert_eq!(ask("wait 50"), "wait true");
    drop(to);
    other.wait().unwrap();
}

/// Attaching with other parameters, or to a file that is not a tank of
/// this version, is an error that says what is wrong; so are the options a
/// shared tank does not support. Never a panic.
#[test]
fn attach_errors_say_what_differs() {
    if worker().is_some() {
        return;
    }
    let file = Removed::new("attach");
    let path = file.path();
    let _tank = shared(path, "10/s", Hardcap::Limit).unwrap();
    let message = |r: Result<Tank, Error>| r.unwrap_err().to_string();
    let other_rate = message(shared(path, "20/s", Hardcap::Limit));
    assert!(other_rate.contains("rate 10/s, not 20/s"), "{other_rate}");
    let other_cap = message(shared(path, "10/s", Hardcap::One));
    assert!(other_cap.contains("hardcap Limit, not One"), "{other_cap}");
    // Corrupt: the first bytes are not the magic.
    let mut bytes = std::fs::read(&file.0).unwrap();
    let corrupt = Removed(file.0.with_extension("corrupt"));
    bytes[0] ^= 0xff;
    std::fs::write(&corrupt.0, &bytes).unwrap();
    let err = message(shared(corrupt.path(), "10/s", Hardcap::Limit));
    assert!(err.contains("not a fueltank file"), "{err}");
    // Another layout version.
    bytes[0] ^= 0xff;
    let version = bytes[12];
    bytes[12] = 99;
    std::fs::write(&corrupt.0, &bytes).unwrap();
    let err = message(shared(corrupt.path(), "10/s", Hardcap::Limit));
    assert!(err.contains("version"), "{err}");
    // From an earlier boot of the host (on Linux, which records the boot):
    // bytes 24..32 of the header say which boot wrote the file.
    bytes[12] = version;
    if std::path::Path::new("/proc/sys/kernel/random/boot_id").exists() {
        bytes[24] ^= 0xff;
        std::fs::write(&corrupt.0, &bytes).unwrap();
        let err = message(shared(corrupt.path(), "10/s", Hardcap::Limit));
        assert!(err.contains("earlier boot"), "{err}");
        bytes[24] ^= 0xff;
    }
    // A file that does not say its boot (0) is attached to.
    let boot = bytes[24..32].to_vec();
    bytes[24..32].fill(0);
    std::fs::write(&corrupt.0, &bytes).unwrap();
    assert!(shared(corrupt.path(), "10/s", Hardcap::Limit).is_ok());
    bytes[24..32].copy_from_slice(&boot);
    // Truncated.
    std::fs::write(&corrupt.0, &bytes[..40]).unwrap();
    let err = message(shared(corrupt.path(), "10/s", Hardcap::Limit));
    assert!(err.contains("40 bytes"), "{err}");
    std::fs::write(&corrupt.0, b"").unwrap();
    let err = message(shared(corrupt.path(), "10/s", Hardcap::Limit));
    assert!(err.contains("0 bytes"), "{err}");
    // What a shared tank does not support.
    let window = message(shared(path, "10/s", Hardcap::Window));
    assert!(window.contains("Window"), "{window}");
    let clocked = Tank::builder("10/s".parse().unwrap())
        .clock(fueltank::clock::ManualClock::new())
        .shared_memory(path)
        .build();
    assert!(message(clocked).contains("clock"));
    let fine = message(shared(path, "999999937/s", Hardcap::Limit));
    assert!(fine.contains("not supported"), "{fine}");
    let bad_name = message(shared("no spaces", "10/s", Hardcap::Limit));
    assert!(bad_name.contains("name"), "{bad_name}");
    let no_dir = message(shared("/nonexistent-dir/x", "10/s", Hardcap::Limit));
    assert!(no_dir.contains("cannot create"), "{no_dir}");
}

/// A burst is part of what the processes sharing a tank must agree on:
/// `burst(10)` on a 10/s tank built without one has the same capacity at
/// 10/s, and another at any other rate, so once either process changed the
/// rate the other would find the capacity not its own and refuse every
/// take for good. So attaching with another burst (or none) is an error.
#[test]
fn a_burst_that_differs_is_an_attach_error() {
    if worker().is_some() {
        return;
    }
    let file = Removed::new("burst");
    let ten: fueltank::Rate = "10/s".parse().unwrap();
    let with_burst = |burst| {
        Tank::builder(ten)
            .burst(burst)
            .initial(10)
            .shared_memory(file.path())
            .build()
    };
    let plain = shared(file.path(), "10/s", Hardcap::Limit).unwrap();
    let burst = match with_burst(10) {
        Err(err) => {
            let err = err.to_string();
            assert!(err.contains("burst"), "{err}");
            // The other way round too.
            drop(plain);
            assert!(Tank::remove_shared_memory(file.path()).unwrap());
            let _burst = with_burst(10).unwrap();
            let err = shared(file.path(), "10/s", Hardcap::Limit).unwrap_err();
            assert!(err.to_string().contains("burst"), "{err}");
            return;
        }
        Ok(burst) => burst,
    };
    plain.set_rate("20/s".parse().unwrap());
    std::thread::sleep(Duration::from_millis(300));
    let granted = (0..100).filter(|_| burst.has_fuel()).count();
    panic!(
        "burst(10) attached to a tank without a burst; after a rate change to 20/s by the \
         other, it grants {granted} of 100 has_fuel 300 ms on, and says level {}, wait_time {:?}",
        burst.level(),
        burst.wait_time(1)
    );
}

/// Two handles in one process share the budget as two processes would,
/// and the in-process guarantees (levels, waits, refunds that nothing
/// changed) hold on the shared bucket. (1/min: nothing refills meanwhile,
/// however slowly this runs, e.g. under valgrind.)
#[test]
fn one_process_two_handles() {
    if worker().is_some() {
        return;
    }
    let file = Removed::new("handles");
    let path = file.path();
    let a = Tank::builder("1/min".parse().unwrap())
        .initial(1)
        .shared_memory(path)
        .build()
        .unwrap();
    let b = shared(path, "1/min", Hardcap::Limit).unwrap();
    assert_eq!(b.level(), 1);
    let fuel = a.try_take(1).unwrap();
    assert_eq!(b.level(), 0);
    a.give_back(fuel); // nothing changed since: back
    assert_eq!(b.level(), 1);
    assert!(b.has_fuel());
    assert!(!a.has_fuel());
    let wait = a.wait_time(1).unwrap();
    assert!(
        wait > Duration::from_secs(50) && wait <= Duration::from_secs(60),
        "{wait:?}"
    );
    // The next fuel is a minute away: a short wait fails at once.
    assert!(!a.blocking_await_fuel_timeout(Duration::from_millis(100)));
}

/// A part of a token given back to a shared tank: exact while no take
/// changed the bucket since (1/min: nothing refills meanwhile). The first
/// part given back changes the bucket, so a second part of the same token
/// is spent, never minted: fuel kept + fuel left = fuel accrued.
#[test]
fn a_part_given_back_to_a_shared_tank() {
    if worker().is_some() {
        return;
    }
    let file = Removed::new("part");
    let tank = Tank::builder("4/min".parse().unwrap())
        .initial(4)
        .shared_memory(file.path())
        .build()
        .unwrap();
    let mut fuel = tank.try_take(3).unwrap();
    assert_eq!(tank.level(), 1);
    tank.give_back(fuel.split(2));
    assert_eq!(tank.level(), 3, "nothing changed since: the 2 are back");
    tank.give_back(fuel.split(1));
    assert_eq!(tank.level(), 3, "the bucket changed since: spent");
    assert_eq!(fuel.amount(), 0);
    // Kept 1, left 3: the 4 there were.
    assert!(tank.has_fuel_n(3));
    assert!(!tank.has_fuel());
    drop(tank);
}

/// The whole `Throttle` in shared memory: four processes take fuel with
/// `auto_emit`, and the one monitor counts every fuel any of them took —
/// read by a fifth process (this one), exactly.
#[test]
fn a_shared_throttle_counts_every_process() {
    if let Some(args) = worker() {
        let [name, end] = &args[..] else {
            panic!("{args:?}")
        };
        let throttle = fueltank::Throttle::builder("1000/s".parse().unwrap())
            .shared_memory(name.as_str())
            .build()
            .unwrap();
        let end: u64 = end.parse().unwrap();
        let mut taken = 0u64;
        while host_ns() < end {
            if throttle.blocking_await_fuel_timeout(Duration::from_millis(50)) {
                taken += 1;
            }
        }
        println!("\ntaken {taken}");
        return;
    }
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let name = format!("test-throttle-{}-{}", std::process::id(), host_ns());
    let _files = ["tank", "monitor"]
        .map(|kind| Removed(PathBuf::from(format!("/dev/shm/fueltank-{name}.{kind}"))));
    let throttle = fueltank::Throttle::builder("1000/s".parse().unwrap())
        .shared_memory(name.as_str())
        .build()
        .unwrap();
    let end = host_ns() + 1_000_000_000;
    let children: Vec<_> = (0..4)
        .map(|_| {
            spawn_worker(
                "a_shared_throttle_counts_every_process",
                &[name.clone(), end.to_string()],
            )
        })
        .collect();
    let mut sum = 0u64;
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success());
        let taken = common::processes::lines(&output.stdout, "taken ");
        sum += taken[0].trim().parse::<u64>().unwrap();
    }
    assert_eq!(throttle.total(), sum, "every fuel taken, counted once");
    assert!(sum > 500, "{sum}");
    // `stop` here pauses both, for everyone: no refill, no running time.
    let summary = throttle.stop();
    assert_eq!(summary.total, sum);
    let level = throttle.level();
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(throttle.level(), level, "paused: no refill");
    assert_eq!(throttle.stop().runtime, summary.runtime);
}

// Where the fields of a tank's state sit in its file, for the tests that
// corrupt them: the 64-byte header, the state's first line (the word at
// 64), then the parameter slots, one line each; a new tank's word names
// the first slot (at 128).
const WORD_AT: u64 = 64;
const SLOT_AT: u64 = 128;
const EPOCH: u64 = SLOT_AT;
const SCALE: u64 = SLOT_AT + 24;
const INTERVAL: u64 = SLOT_AT + 32;
/// In each of the four 64-byte slots: its owner's `pid << 32 | n`, while
/// it changes the parameters; the word names its slot in bits 48..50.
const OWNER: u64 = 48;

fn read_u64(file: &std::path::Path, at: u64) -> u64 {
    use std::os::unix::fs::FileExt;
    let mut bytes = [0; 8];
    std::fs::File::open(file)
        .unwrap()
        .read_exact_at(&mut bytes, at)
        .unwrap();
    u64::from_le_bytes(bytes)
}

/// Writes `value` at `at` through the file: the same page every mapping of
/// it shows, so processes attached already see it too.
fn write_u64(file: &std::path::Path, at: u64, value: u64) {
    use std::os::unix::fs::FileExt;
    std::fs::OpenOptions::new()
        .write(true)
        .open(file)
        .unwrap()
        .write_all_at(&value.to_le_bytes(), at)
        .unwrap();
}

/// Runs `f` on a thread and waits at most `limit` for it: `None` if it had
/// not returned by then (it is left running; the test then fails).
fn within<R: Send + 'static>(limit: Duration, f: impl FnOnce() -> R + Send + 'static) -> Option<R> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit).ok()
}

/// A shared file, removed when dropped (whatever the test's outcome).
struct Removed(PathBuf);

impl Removed {
    fn new(name: &str) -> Removed {
        Removed(path(name))
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for Removed {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A 10/s tank built full (`initial(10)`), then dropped.
fn ten_per_second(name: &str) -> Removed {
    let file = Removed::new(name);
    let tank = Tank::builder("10/s".parse().unwrap())
        .initial(10)
        .shared_memory(file.path())
        .build()
        .unwrap();
    drop(tank);
    file
}

/// How many of `tries` successive `has_fuel` grant, on a thread given
/// `limit`; `None` if they had not returned by then.
fn grants_within(tank: Tank, tries: u64, limit: Duration) -> Option<u64> {
    within(limit, move || {
        (0..tries).filter(|_| tank.has_fuel()).count() as u64
    })
}

/// Every field of the state a reader relies on is checked when a process
/// attaches: a file whose interval, tick scale or epoch was corrupted is an
/// error naming the field (not a tank that grants without limit, never
/// answers, or says it holds fuel it will not give).
#[test]
fn a_corrupt_state_is_refused_at_attach() {
    if worker().is_some() {
        return;
    }
    let limit = Duration::from_secs(10);
    /// The case, the field's offset, how it is corrupted, and the name the
    /// error must give it.
    type Case = (&'static str, u64, fn(u64) -> u64, &'static str);
    let cases: [Case; 4] = [
        ("interval", INTERVAL, |_| 1, "interval"),
        ("scale", SCALE, |_| 1 << 50, "tick scale"),
        // 11.6 days ahead of the host's clock.
        (
            "epoch",
            EPOCH,
            |epoch| epoch + 1_000_000_000_000_000,
            "epoch",
        ),
        // A `tat` far beyond what the capacity allows (the bucket would
        // stay empty for hours).
        ("tat", WORD_AT, |word| word + (1 << 46), "fuel"),
    ];
    let mut wrong = Vec::new();
    for (name, at, patch, field) in cases {
        let file = ten_per_second(name);
        write_u64(&file.0, at, patch(read_u64(&file.0, at)));
        let path = file.path().to_owned();
        let outcome = within(limit, move || match shared(&path, "10/s", Hardcap::Limit) {
            Err(e) => Err(e.to_string()),
            Ok(tank) => Ok((
                grants_within(tank.clone(), 100_000, Duration::from_secs(5)),
                tank.level(),
                tank.wait_time(1),
            )),
        });
        match outcome {
            None => wrong.push(format!("{name}: build() had not returned after {limit:?}")),
            Some(Ok((grants, level, wait))) => wrong.push(format!(
                "{name}: attached to a corrupt file; has_fuel granted {grants:?} of 100000 \
                 (None: had not returned after 5 s), level {level}, wait_time(1) {wait:?}"
            )),
            Some(Err(message)) => {
                if !(message.contains(field) && message.contains("corrupt")) {
                    wrong.push(format!("{name}: {message}"));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// A field that goes bad after a process attached (another writer with
/// access to the file) makes takes refuse: never grant beyond the
/// capacity, never hang.
#[test]
fn a_state_corrupted_after_attach_never_over_grants_nor_hangs() {
    if worker().is_some() {
        return;
    }
    let cases: [(&str, u64, u64); 3] = [
        ("interval", INTERVAL, 1),
        ("scale", SCALE, 1 << 50),
        ("zero interval", INTERVAL, 0),
    ];
    let mut wrong = Vec::new();
    for (name, at, value) in cases {
        let file = ten_per_second(name);
        let tank = shared(file.path(), "10/s", Hardcap::Limit).unwrap();
        write_u64(&file.0, at, value);
        // Built full: 10, and one more if this ran for over 100 ms.
        match grants_within(tank, 100_000, Duration::from_secs(10)) {
            None => wrong.push(format!("{name}: has_fuel had not returned after 10 s")),
            Some(grants) if grants > 11 => {
                wrong.push(format!("{name}: {grants} grants from a 10/s tank"))
            }
            Some(_) => {}
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// A rate set by one process is every process's: the capacity a request
/// is checked against, `wait_time`, waiters already in line.
#[test]
fn every_handle_follows_the_shared_rate() {
    if worker().is_some() {
        return;
    }
    use common::poll;
    use std::task::Poll;
    let file = Removed::new("follow");
    let a = shared(file.path(), "10/s", Hardcap::Limit).unwrap();
    let b = shared(file.path(), "10/s", Hardcap::Limit).unwrap();
    while b.has_fuel() {} // empty: the waiter below must wait
    let mut waiter = Box::pin(b.await_fuel_n(5));
    assert!(poll(waiter.as_mut()).is_pending());
    a.try_set_rate("2/s".parse().unwrap()).unwrap();
    let mut wrong = Vec::new();
    let too_large = Err(Error::ExceedsCapacity {
        requested: 5,
        capacity: 2,
    });
    if b.wait_time(5).is_some() {
        wrong.push(format!("wait_time(5) at 2/s: {:?}", b.wait_time(5)));
    }
    let mut new = Box::pin(b.await_fuel_n(5));
    match poll(new.as_mut()) {
        Poll::Ready(got) if got == too_large => {}
        got => wrong.push(format!("await_fuel_n(5) at 2/s: {got:?}")),
    }
    // The waiter in line learns it at its next look at the shared bucket.
    let queued = within(Duration::from_secs(5), move || {
        futures::executor::block_on(waiter.as_mut())
    });
    if queued != Some(too_large) {
        wrong.push(format!(
            "the waiter in line (None: waiting after 5 s): {queued:?}"
        ));
    }
    a.try_set_rate("1000/s".parse().unwrap()).unwrap();
    let mut fifty = Box::pin(b.await_fuel_n(50));
    if let Poll::Ready(Err(e)) = poll(fifty.as_mut()) {
        wrong.push(format!("await_fuel_n(50) at 1000/s: {e:?}"));
    }
    // Behind `fifty`'s turn (50 ms at 1000/s) and the rejected waiter's,
    // which passed unused (5 fuel, 5 ms now): about 105 ms, not 10 s.
    match b.wait_time(50) {
        Some(wait) if wait <= Duration::from_millis(110) => {}
        wait => wrong.push(format!("wait_time(50) at 1000/s: {wait:?}")),
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// A child process, killed and reaped when dropped (whatever the test's
/// outcome: no process is left behind).
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn signal(child: &std::process::Child, signal: libc::c_int) {
    // SAFETY: a plain system call on our own child, which is not reaped
    // yet (`Reaped` reaps it only when dropped), so its pid is its own.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, signal) }, 0);
}

/// Whether every thread of process `pid` is stopped (state `T` in
/// `/proc/PID/task/TID/stat`, after the name in parentheses).
fn stopped(pid: u32) -> bool {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
    tasks.flatten().all(|task| {
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('T'))
    })
}

/// Whether some slot of the tank's state names process `pid` as the one
/// changing its parameters.
fn names_pid(file: &std::path::Path, pid: u32) -> bool {
    let bytes = std::fs::read(file).unwrap();
    (0..4).any(|slot| {
        let at = (SLOT_AT + slot * 64 + OWNER) as usize;
        u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()) >> 32 == u64::from(pid)
    })
}

/// A process stopped, then killed (and not reaped), in the middle of a
/// change of the parameters blocks nobody: at 100003/s the epoch must move
/// on about every second, and another process's `has_fuel` still answers,
/// and grants.
///
/// The worker leaves itself mid-change as a change does: it owns a spare
/// slot (marks it with its pid, as `own_spare`), then stops. (Stopping it
/// from outside while it loops on `try_set_rate` catches it there only
/// rarely: the stop lands mostly as it returns from `getpid`, just before
/// it owns a slot.)
#[test]
fn a_process_stopped_or_killed_mid_change_blocks_nobody() {
    if let Some(args) = worker() {
        let tank = shared(&args[0], "100003/s", Hardcap::One).unwrap();
        let path = std::path::Path::new(&args[0]);
        let named = read_u64(path, WORD_AT) >> 48 & 3;
        let spare = (named + 1) % 4;
        let mine = u64::from(std::process::id()) << 32 | 1;
        write_u64(path, SLOT_AT + spare * 64 + OWNER, mine);
        // SAFETY: a plain system call, stopping this process.
        unsafe { libc::raise(libc::SIGSTOP) };
        drop(tank);
        unreachable!("stopped, then killed");
    }
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let file = Removed::new("stopped");
    let path = file.path();
    let tank = shared(path, "100003/s", Hardcap::One).unwrap();
    let child = Reaped(spawn_worker(
        "a_process_stopped_or_killed_mid_change_blocks_nobody",
        &[path.to_owned()],
    ));
    let pid = child.0.id();
    let start = std::time::Instant::now();
    while !stopped(pid) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "it never stopped"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(names_pid(&file.0, pid), "it owns no slot");
    let answers = |what: &str| {
        // Past the next move of the epoch (about every 1.05 s).
        std::thread::sleep(Duration::from_millis(1_600));
        let tank = tank.clone();
        let granted = within(Duration::from_secs(10), move || {
            let start = std::time::Instant::now();
            while start.elapsed() < Duration::from_millis(200) {
                if tank.has_fuel() {
                    return true;
                }
            }
            false
        });
        assert_eq!(granted, Some(true), "{what}: None is no answer after 10 s");
    };
    answers("stopped");
    signal(&child.0, libc::SIGKILL);
    answers("killed, not reaped");
    drop(child);
    answers("killed and reaped");
}

/// A greedy worker of a pool on the tank at `path` (made paused by the
/// test): attaches, says `ready`, waits for the tank to be resumed, then
/// waits for fuel in a loop until the tank is paused again (`is_paused`,
/// seen across processes), printing `grant WAITED_NS` for each grant.
fn greedy(args: &[String]) {
    let [path, rate] = args else {
        panic!("worker arguments: {args:?}")
    };
    let tank = shared(path, rate, Hardcap::Limit).unwrap();
    let mut out = std::io::stdout().lock();
    use std::io::Write;
    writeln!(out, "\nready").unwrap();
    out.flush().unwrap();
    while tank.is_paused() {
        std::thread::sleep(Duration::from_millis(1));
    }
    while !tank.is_paused() {
        let before = host_ns();
        if tank.blocking_await_fuel_timeout(Duration::from_millis(200)) {
            writeln!(out, "grant {}", host_ns() - before).unwrap();
            // Line by line: a worker killed mid-run has told what it took.
            out.flush().unwrap();
        }
    }
    writeln!(out, "left").unwrap();
}

/// Starts `n` greedy workers on the paused tank at `path` and returns them
/// (reaped when dropped) once each has attached, with their output.
fn greedy_pool(
    test: &str,
    path: &str,
    rate: &str,
    n: usize,
) -> Vec<(Reaped, BufReader<std::process::ChildStdout>)> {
    (0..n)
        .map(|_| {
            let mut child = Reaped(spawn_worker(test, &[path.to_owned(), rate.to_owned()]));
            let mut out = BufReader::new(child.0.stdout.take().unwrap());
            let mut line = String::new();
            while line.trim_end() != "ready" {
                line.clear();
                assert!(
                    out.read_line(&mut line).unwrap() > 0,
                    "a worker ended early"
                );
            }
            (child, out)
        })
        .collect()
}

/// The waits a worker printed, and whether it left by itself.
fn waits(output: impl BufRead) -> (Vec<u64>, bool) {
    let mut left = false;
    let mut waits = Vec::new();
    for line in output.lines().map_while(Result::ok) {
        if let Some(wait) = line.strip_prefix("grant ") {
            waits.push(wait.parse().unwrap());
        }
        left |= line == "left";
    }
    (waits, left)
}

const POOL_RATE: &str = "50/s";
const POOL_INTERVAL: u64 = 20_000_000;
const POOL_RUN: Duration = Duration::from_secs(6);

/// Whether each of `counts` is within ±10 % of an equal share.
fn fair(counts: &[usize]) -> bool {
    let total: usize = counts.iter().sum();
    counts.iter().all(|&c| {
        let share = c as f64 * counts.len() as f64 / total as f64;
        (0.9..=1.1).contains(&share)
    })
}

/// The 99th percentile and the longest of the waits, in intervals.
fn p99_and_longest(mut waits: Vec<u64>) -> (f64, f64) {
    waits.sort_unstable();
    let at = |i: usize| waits.get(i).copied().unwrap_or(0) as f64 / POOL_INTERVAL as f64;
    (
        at(waits.len() * 99 / 100),
        at(waits.len().saturating_sub(1)),
    )
}

/// The waits are within a few intervals of the turn, 4 intervals (the
/// three other processes' waiters are served once in between): at the 99th
/// percentile 5 more (up to 2 more seen with the machine's 2 cores loaded
/// by four busy loops; at 200/s, 5 ms intervals, a loaded scheduler's
/// delays once reached 31 more, hence 20 ms). The longest is what the
/// scheduler of a loaded machine adds to one process: only a waiter passed
/// over for a second (50 intervals) fails. Before the shared line (at
/// 200/s): p99 22–33 intervals, shares from 35 to 508 grants.
fn assert_waits_near_the_turn(p99: f64, longest: f64) {
    assert!(p99 <= 4.0 + 5.0, "waits p99 {p99:.1} intervals");
    assert!(longest <= 50.0, "a waiter waited {longest:.1} intervals");
}

/// Four greedy worker processes, one waiter each, on one shared 50/s tank
/// for 6 s: each gets its share within ±10 % of a quarter, and no waiter
/// waits more than a few intervals beyond its turn (4 intervals: the three
/// other processes' waiters are served once before it); when the tank is
/// paused, every worker sees it and leaves.
#[test]
fn greedy_processes_get_fair_shares() {
    if let Some(args) = worker() {
        return greedy(&args);
    }
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let file = Removed::new("fair");
    let tank = Tank::builder(POOL_RATE.parse().unwrap())
        .shared_memory(file.path())
        .build()
        .unwrap();
    tank.pause();
    let pool = greedy_pool(
        "greedy_processes_get_fair_shares",
        file.path(),
        POOL_RATE,
        4,
    );
    tank.resume();
    std::thread::sleep(POOL_RUN);
    tank.pause();
    let mut counts = Vec::new();
    let mut all = Vec::new();
    for (mut child, out) in pool {
        let (waits, left) = waits(out);
        assert!(left, "a worker did not see the pause");
        assert!(child.0.wait().unwrap().success());
        counts.push(waits.len());
        // (The first waited for the start.)
        all.extend(waits.into_iter().skip(1));
    }
    let (p99, longest) = p99_and_longest(all);
    println!("grants per process {counts:?}; waits p99 {p99:.1}, longest {longest:.1} intervals");
    assert!(fair(&counts), "unfair shares: {counts:?}");
    assert_waits_near_the_turn(p99, longest);
}

/// One of four greedy workers is killed (SIGKILL) while its waiter holds
/// its turn in the shared line: the turn passes unused, and the three
/// others go on being served in turn, in equal shares, none waiting more
/// than a few intervals longer; no fuel is minted.
#[test]
fn a_killed_worker_s_turn_passes() {
    if let Some(args) = worker() {
        return greedy(&args);
    }
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let file = Removed::new("fair-kill");
    let tank = Tank::builder(POOL_RATE.parse().unwrap())
        .shared_memory(file.path())
        .build()
        .unwrap();
    tank.pause();
    let mut pool = greedy_pool("a_killed_worker_s_turn_passes", file.path(), POOL_RATE, 4);
    let (victim, victim_out) = pool.remove(0);
    let victim_waits = std::thread::spawn(move || waits(victim_out).0);
    let started = host_ns();
    let level = tank.level();
    tank.resume();
    std::thread::sleep(POOL_RUN / 2);
    // (It spends all but microseconds of each 80 ms waiting for its turn.)
    signal(&victim.0, libc::SIGKILL);
    drop(victim);
    std::thread::sleep(POOL_RUN / 2);
    tank.pause();
    let stopped = host_ns();
    let killed = victim_waits.join().unwrap().len();
    let mut counts = Vec::new();
    let mut all = Vec::new();
    for (mut child, out) in pool {
        let (waits, left) = waits(out);
        assert!(left, "a worker did not see the pause");
        assert!(child.0.wait().unwrap().success());
        counts.push(waits.len());
        // (The first waited for the start.)
        all.extend(waits.into_iter().skip(1));
    }
    let (p99, longest) = p99_and_longest(all);
    let total = killed + counts.iter().sum::<usize>();
    // What the run accrued, from the level at the start (the tank was
    // paused before and after): a grant after the pause comes from a turn
    // scheduled before it; the killed worker's turn was spent unused.
    let accrued = level + (stopped - started) / POOL_INTERVAL + 1;
    println!(
        "killed after {killed} grants; the others {counts:?}; waits p99 {p99:.1}, \
         longest {longest:.1} intervals; {total} of {accrued} accrued"
    );
    assert!(total as u64 <= accrued + 4, "{total} grants of {accrued}");
    assert!(total as u64 + 8 >= accrued, "{total} grants of {accrued}");
    assert!(fair(&counts), "unfair shares: {counts:?}");
    // (Three processes from the kill on: turns come sooner.)
    assert_waits_near_the_turn(p99, longest);
}

/// A worker process of a shared throttle sees the parent's `stop` with
/// `is_stopped` and leaves by itself, and `start` again reads as running;
/// `Throttle::remove_shared_memory` then removes both files.
#[test]
fn a_worker_sees_the_throttle_stopped() {
    if let Some(args) = worker() {
        let throttle = fueltank::Throttle::builder("100/s".parse().unwrap())
            .shared_memory(args[0].as_str())
            .build()
            .unwrap();
        println!("\nready");
        let mut jobs = 0u64;
        while !throttle.is_stopped() {
            if throttle.blocking_await_fuel_timeout(Duration::from_millis(50)) {
                jobs += 1;
            }
        }
        println!("left after {jobs} jobs");
        return;
    }
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let name = format!("test-stop-{}-{}", std::process::id(), host_ns());
    let throttle = fueltank::Throttle::builder("100/s".parse().unwrap())
        .shared_memory(name.as_str())
        .build()
        .unwrap();
    let mut child = Reaped(spawn_worker(
        "a_worker_sees_the_throttle_stopped",
        std::slice::from_ref(&name),
    ));
    let mut out = BufReader::new(child.0.stdout.take().unwrap());
    let mut line = String::new();
    while line.trim_end() != "ready" {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "the worker ended");
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(!throttle.is_stopped());
    throttle.stop();
    assert!(throttle.is_stopped());
    let left = within(Duration::from_secs(5), move || {
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
        rest
    });
    let left = left.expect("the worker had not left 5 s after stop");
    assert!(left.contains("left after"), "{left}");
    assert!(child.0.wait().unwrap().success());
    throttle.start();
    assert!(!throttle.is_stopped());
    drop(throttle);
    assert!(fueltank::Throttle::remove_shared_memory(name.as_str()).unwrap());
    assert!(!fueltank::Throttle::remove_shared_memory(name.as_str()).unwrap());
}

/// A state that another writer made unreadable (here the interval of the
/// slot in force) grants nothing, and says so: no level, and a wait beyond
/// the end of the clock (as for fuel that would come after it).
#[test]
fn a_slot_made_unreadable_says_never() {
    let file = Removed::new("unreadable");
    let tank = shared(file.path(), "10/s", Hardcap::Limit).unwrap();
    assert_eq!(tank.wait_time(1), Some(Duration::ZERO));
    write_u64(&file.0, INTERVAL, u64::MAX);
    assert!(!tank.has_fuel());
    assert_eq!(tank.level(), 0);
    let century = Duration::from_secs(100 * 365 * 86_400);
    assert!(tank.wait_time(1).is_none_or(|wait| wait > century));
}
