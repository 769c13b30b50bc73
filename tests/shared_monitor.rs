//! A monitor in shared memory, used by several OS processes at once: this
//! test binary re-run as worker processes (`common::processes`).
//!
//! Every worker attaches to the file its test made, does its part, and
//! reports on stdout in lines that start with `worker:`. The tests that
//! only attach (their names contain `attach`) spawn nothing, so that they
//! can run alone under valgrind:
//! `valgrind --error-exitcode=1 target/debug/deps/shared_monitor-HASH attach`.
#![cfg(unix)]

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout};
use std::time::{Duration, Instant};

use fueltank::clock::{ManualClock, MonotonicClock};
use fueltank::{Error, Monitor};

mod common;
use common::processes::{spawn_worker, worker};

const PREFIX: &str = "worker: ";

/// A monitor's file for one test, removed when the test ends (even if it
/// fails).
struct TestFile(PathBuf);

impl TestFile {
    fn new(test: &str) -> TestFile {
        // Where a name's file would go (tmpfs on Linux): a file on a disk's
        // file system works too, but is slower to write through a mapping.
        let dir = Path::new("/dev/shm");
        let dir = if dir.is_dir() {
            dir.to_owned()
        } else {
            std::env::temp_dir()
        };
        let path = dir.join(format!(
            "fueltank-test-{test}-{}.monitor",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&path);
        TestFile(path)
    }

    fn name(&self) -> &str {
        self.0.to_str().expect("a UTF-8 path")
    }

    fn monitor(&self) -> Result<Monitor, Error> {
        Monitor::builder().shared_memory(self.name()).build()
    }
}

impl Drop for TestFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Worker processes, killed if the test fails before it waited for them.
struct Workers(Vec<Child>);

impl Workers {
    fn spawn(test: &str, args: &[&Vec<String>]) -> Workers {
        Workers(args.iter().map(|a| spawn_worker(test, a)).collect())
    }

    fn stdout(&mut self, i: usize) -> Lines {
        Lines(BufReader::new(self.0[i].stdout.take().expect("piped")))
    }

    /// Waits for every worker; panics unless each succeeded.
    fn wait_all(mut self) {
        for (i, mut child) in self.0.drain(..).enumerate() {
            let status = child.wait().expect("a worker to wait for");
            assert!(status.success(), "worker {i}: {status}");
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A worker's reports, read as they come.
struct Lines(BufReader<ChildStdout>);

impl Lines {
    /// The next report; panics at the end of the output.
    fn next(&mut self) -> String {
        let mut line = String::new();
        loop {
            line.clear();
            let n = self.0.read_line(&mut line).expect("a worker's output");
            assert!(n > 0, "the worker ended without reporting");
            if let Some(report) = report_in(&line) {
                return report.to_owned();
            }
        }
    }

    /// The next report, which must start with `word`: the rest.
    fn expect(&mut self, word: &str) -> String {
        let report = self.next();
        match report.strip_prefix(word) {
            Some(rest) => rest.trim().to_owned(),
            None => panic!("expected {word:?}, got {report:?}"),
        }
    }

    /// Every report left, to the end of the output.
    fn rest(mut self) -> Vec<String> {
        let mut output = String::new();
        let _ = self.0.read_to_string(&mut output);
        output
            .lines()
            .filter_map(report_in)
            .map(str::to_owned)
            .collect()
    }
}

/// The report in a line of a worker's output. The first may follow the test
/// harness's `test NAME ... ` on the same line.
fn report_in(line: &str) -> Option<&str> {
    let at = line.find(PREFIX)?;
    Some(line[at + PREFIX.len()..].trim_end())
}

fn report(line: impl std::fmt::Display) {
    println!("{PREFIX}{line}");
}

fn args(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Polls until `done`, for at most 10 s: a worker never outlives a test
/// that died. It yields, so that waiting workers leave the cores to the
/// parent.
fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::yield_now();
    }
}

/// Slack for comparing spans on the host's clock (the monitor's) with
/// spans of `Instant`: the same clock on Linux, maybe not elsewhere.
const CLOCKS: Duration = Duration::from_millis(1);

const EMITS: u64 = 100_000;
const WINDOW: Duration = Duration::from_millis(100);
/// How long the paced half of each worker's emissions lasts.
const PACED: Duration = Duration::from_millis(600);

/// Four processes emit 10^5 times each into one monitor, half as fast as
/// they can (all at once, contending), half paced; the parent, a fifth
/// process, reads the combined statistics.
#[test]
fn four_processes_count_into_one_monitor() {
    const TEST: &str = "four_processes_count_into_one_monitor";
    if let Some(args) = worker() {
        let monitor = Monitor::builder()
            .window(WINDOW)
            .shared_memory(&args[0])
            .build()
            .unwrap();
        report("ready");
        until("the start", || !monitor.is_stopped());
        for _ in 0..EMITS / 2 {
            monitor.emit();
        }
        report("paced");
        let start = Instant::now();
        let mut emitted = 0;
        while emitted < EMITS / 2 {
            let due = (start.elapsed().as_nanos() * u128::from(EMITS / 2) / PACED.as_nanos())
                .min(u128::from(EMITS / 2)) as u64;
            while emitted < due {
                monitor.emit();
                emitted += 1;
            }
            std::thread::sleep(Duration::from_micros(500));
        }
        return report("done");
    }

    let file = TestFile::new(TEST);
    let monitor = Monitor::builder()
        .window(WINDOW)
        .shared_memory(file.name())
        .build()
        .unwrap();
    // Stopped until every worker is ready, so that they start together
    // (and the start crosses processes).
    monitor.stop();
    let worker_args = args(&[file.name()]);
    let mut workers = Workers::spawn(TEST, &[&worker_args; 4]);
    let mut lines: Vec<Lines> = (0..4).map(|i| workers.stdout(i)).collect();
    for worker in &mut lines {
        worker.expect("ready");
    }
    assert_eq!(monitor.total(), 0);
    let before_start = Instant::now();
    monitor.start();
    let after_start = Instant::now();
    for worker in &mut lines {
        worker.expect("paced");
    }

    // `latest` against the count over the same stretch, while every worker
    // is paced: the window then holds paced emissions only.
    std::thread::sleep(WINDOW + WINDOW / 5);
    let (t1, total1) = (Instant::now(), monitor.total());
    std::thread::sleep(WINDOW);
    let latest = monitor.latest().expect("emissions in the window");
    let (t2, total2) = (Instant::now(), monitor.total());
    let rate = (total2 - total1) as f64 / (t2 - t1).as_secs_f64();
    assert!(
        (0.75..=1.33).contains(&(latest.per_second / rate)),
        "latest {latest:?}, counted {rate:.0}/s"
    );

    for worker in &mut lines {
        worker.expect("done");
    }
    workers.wait_all();
    let total = monitor.total();
    assert_eq!(total, 4 * EMITS);

    // Every emission but the very first has its gap to the one before it,
    // whichever process made it: the stamps form one order.
    let before_mean = Instant::now();
    let snap = monitor.snapshot();
    let after_mean = Instant::now();
    assert_eq!(snap.total, 4 * EMITS);
    assert_eq!(snap.gaps(), 4 * EMITS - 1);
    // The mean is over the running time since the start, which the
    // parent's own clock brackets (both are the host's monotonic clock;
    // 1 % for the conversions of instants).
    let mean = snap.mean.unwrap().per_second;
    let fastest = total as f64 / (before_mean - after_start).as_secs_f64();
    let slowest = total as f64 / (after_mean - before_start).as_secs_f64();
    assert!(
        slowest * 0.99 <= mean && mean <= fastest * 1.01,
        "mean {mean:.0}/s, not within {slowest:.0}..={fastest:.0}"
    );
    let (lo, hi) = (snap.lo_hi.unwrap().interval, snap.hi_lo.unwrap().interval);
    assert!(lo <= hi && hi <= monitor.runtime(), "{lo:?} {hi:?}");
    assert!(snap.percentile(50.0).unwrap() <= hi);
}

/// One of four processes is killed (SIGKILL) in the middle of its
/// emissions: what it reported as emitted is counted, the others' counts
/// are whole, and the file works on.
#[test]
fn a_killed_process_loses_nothing() {
    const TEST: &str = "a_killed_process_loses_nothing";
    if let Some(args) = worker() {
        let monitor = Monitor::builder().shared_memory(&args[0]).build().unwrap();
        report("ready");
        until("the start", || !monitor.is_stopped());
        if args[1] == "victim" {
            // Emits until killed (at most 10 s), reporting every 1000.
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut emitted = 0u64;
            while Instant::now() < deadline {
                for _ in 0..1000 {
                    monitor.emit();
                }
                emitted += 1000;
                report(format!("emitted {emitted}"));
            }
            panic!("the victim was not killed");
        }
        let n: u64 = args[1].parse().unwrap();
        for _ in 0..n {
            monitor.emit();
        }
        return report("done");
    }

    let file = TestFile::new(TEST);
    let monitor = file.monitor().unwrap();
    monitor.stop();
    let victim = args(&[file.name(), "victim"]);
    let full = args(&[file.name(), &EMITS.to_string()]);
    let mut workers = Workers::spawn(TEST, &[&victim, &full, &full, &full]);
    let mut lines: Vec<Lines> = (0..4).map(|i| workers.stdout(i)).collect();
    for worker in &mut lines {
        worker.expect("ready");
    }
    monitor.start();

    let mut victim = lines.remove(0);
    loop {
        let emitted: u64 = victim.expect("emitted").parse().unwrap();
        if emitted >= 20_000 {
            break;
        }
    }
    let mut killed = workers.0.remove(0);
    killed.kill().unwrap();
    let status = killed.wait().unwrap();
    assert!(!status.success(), "{status}");
    // What it wrote before it died, to the last line.
    let reported: u64 = victim
        .rest()
        .iter()
        .filter_map(|line| line.strip_prefix("emitted ")?.parse().ok())
        .max()
        .unwrap_or(20_000)
        .max(20_000);

    for worker in &mut lines {
        worker.expect("done");
    }
    workers.wait_all();
    let total = monitor.total();
    assert!(
        total >= 3 * EMITS + reported,
        "total {total}: lost some of the victim's {reported}"
    );
    // An emission cut short by the kill (its stamp placed, its count not)
    // is not counted, and takes no gap from the others.
    assert_eq!(monitor.snapshot().gaps(), total - 1);

    // The file works on: a new process counts exactly, stop and start
    // are not blocked.
    let mut after = Workers::spawn(TEST, &[&full]);
    let mut lines = after.stdout(0);
    lines.expect("ready");
    lines.expect("done");
    after.wait_all();
    assert_eq!(monitor.total(), total + EMITS);
    let summary = monitor.stop();
    assert_eq!(summary.total, total + EMITS);
    monitor.start();
    assert!(!monitor.is_stopped());
}

/// Process A (the parent) stops the monitor, process B emits meanwhile and
/// then after A starts it again: both see a running time without the stop,
/// and B's emissions while stopped count in the total only.
#[test]
fn stopped_time_counts_in_no_statistic_across_processes() {
    const TEST: &str = "stopped_time_counts_in_no_statistic_across_processes";
    if let Some(args) = worker() {
        let monitor = Monitor::builder().shared_memory(&args[0]).build().unwrap();
        assert!(monitor.is_stopped());
        let runtime = monitor.runtime();
        for _ in 0..1000 {
            monitor.emit();
        }
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(monitor.runtime(), runtime, "stopped time went by");
        let mean = monitor.mean().unwrap();
        report(format!(
            "stopped {} {}",
            runtime.as_nanos(),
            mean.per_second
        ));
        until("the start", || !monitor.is_stopped());
        std::thread::sleep(Duration::from_millis(20));
        monitor.emit();
        return report(format!("running {}", monitor.runtime().as_nanos()));
    }

    let file = TestFile::new(TEST);
    let monitor = file.monitor().unwrap();
    monitor.emit();
    std::thread::sleep(Duration::from_millis(20));
    monitor.emit();
    let summary = monitor.stop();
    let stopped_at = Instant::now();
    let mut workers = Workers::spawn(TEST, &[&args(&[file.name()])]);
    let mut lines = workers.stdout(0);

    // While stopped, B sees exactly A's frozen running time and mean.
    let stopped = lines.expect("stopped");
    let (runtime, mean) = stopped.split_once(' ').unwrap();
    assert_eq!(runtime, summary.runtime.as_nanos().to_string());
    assert_eq!(mean.parse::<f64>().unwrap(), summary.mean_per_second);
    assert_eq!(monitor.total(), 1002);
    assert_eq!(monitor.runtime(), summary.runtime);
    assert_eq!(monitor.mean().unwrap().per_second, summary.mean_per_second);
    assert_eq!(monitor.snapshot().gaps(), 1);

    // A long stop, then A starts it again and B emits once more.
    let stop = Duration::from_millis(300);
    std::thread::sleep(stop.saturating_sub(stopped_at.elapsed()));
    let before_start = Instant::now();
    monitor.start();
    let running: u64 = lines.expect("running").parse().unwrap();
    let reported = Instant::now();
    workers.wait_all();

    // B's running time then is A's at the stop plus at most the time since
    // the start, with none of the stop in it.
    let since_start = reported - before_start;
    let running = Duration::from_nanos(running);
    assert!(
        summary.runtime < running && running <= summary.runtime + since_start + CLOCKS,
        "B's runtime {running:?}: stopped at {:?}, started {since_start:?} ago",
        summary.runtime
    );
    assert!(monitor.runtime() <= summary.runtime + before_start.elapsed() + CLOCKS);
    let snap = monitor.snapshot();
    assert_eq!(snap.total, 1003);
    assert_eq!(snap.gaps(), 2);
    // The gap across the stop is the running time around it, not the stop.
    let across = snap.hi_lo.unwrap().interval;
    assert!(
        across <= summary.runtime + since_start + CLOCKS,
        "{across:?}"
    );
    // The mean is over the three emissions while running.
    let mean = snap.mean.unwrap();
    assert!(mean.per_second <= 3.0 / summary.runtime.as_secs_f64());
}

/// Writes `value` at `offset` in the file at `path`. A monitor's file
/// starts with its magic, layout (`version << 32 | kind`) and length, at 0,
/// 8 and 16; its state (clock base first) starts at 64.
fn overwrite(path: &Path, offset: u64, value: u64) {
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.write_all_at(&value.to_ne_bytes(), offset).unwrap();
}

fn shared_memory_error(result: Result<Monitor, Error>, path: &Path, says: &str) {
    match result {
        Err(Error::SharedMemory {
            path: ref got,
            ref reason,
        }) => {
            assert_eq!(got, path);
            assert!(reason.contains(says), "{reason:?} does not say {says:?}");
            let message = result.unwrap_err().to_string();
            assert!(message.contains(&path.display().to_string()), "{message}");
        }
        other => panic!("expected a SharedMemory error saying {says:?}, got {other:?}"),
    }
}

#[test]
fn attach_with_another_window_is_a_mismatch() {
    let file = TestFile::new("attach_with_another_window");
    let built = Monitor::builder()
        .window(Duration::from_secs(1))
        .shared_memory(file.name())
        .build()
        .unwrap();
    built.emit();
    let err = Monitor::builder()
        .window(Duration::from_secs(2))
        .shared_memory(file.name())
        .build()
        .unwrap_err();
    assert_eq!(
        err,
        Error::SharedMismatch {
            path: file.0.clone(),
            what: "window",
            found: "1s".into(),
            asked: "2s".into(),
        }
    );
    assert!(err.to_string().contains("holds window 1s, not 2s"), "{err}");
    // The refresh is each process's own.
    let other_refresh = Monitor::builder()
        .refresh(Duration::from_millis(250))
        .shared_memory(file.name())
        .build()
        .unwrap();
    assert_eq!(other_refresh.total(), 1);
}

#[test]
fn attach_to_a_bad_file_is_an_error() {
    let file = TestFile::new("attach_to_a_bad_file");
    let len = {
        let monitor = file.monitor().unwrap();
        monitor.emit();
        std::fs::metadata(&file.0).unwrap().len()
    };
    let original = std::fs::read(&file.0).unwrap();
    let restore = || std::fs::write(&file.0, &original).unwrap();
    // This version's, as the file says.
    let version = u64::from_le_bytes(original[8..16].try_into().unwrap()) >> 32;
    let monitor_kind = 2u64;

    overwrite(&file.0, 0, u64::from_le_bytes(*b"notatank"));
    shared_memory_error(file.monitor(), &file.0, "not a fueltank file");
    // A failed attach leaves the file as it was.
    assert_eq!(std::fs::read(&file.0).unwrap()[..8], *b"notatank");
    restore();

    overwrite(&file.0, 8, (version << 32) | 1);
    shared_memory_error(file.monitor(), &file.0, "not a monitor (kind 1)");
    restore();

    overwrite(&file.0, 8, (7 << 32) | monitor_kind);
    shared_memory_error(file.monitor(), &file.0, "layout version 7");
    restore();

    overwrite(&file.0, 16, len + 64);
    shared_memory_error(file.monitor(), &file.0, "its header says");
    restore();

    // Running time from a clock reading far ahead of the host's: a file
    // kept across a restart of the host.
    overwrite(&file.0, 64, 1 << 62);
    shared_memory_error(file.monitor(), &file.0, "before the host restarted");
    restore();

    for short in [len / 2, 0] {
        std::fs::OpenOptions::new()
            .write(true)
            .open(&file.0)
            .unwrap()
            .set_len(short)
            .unwrap();
        shared_memory_error(file.monitor(), &file.0, &format!("it has {short} bytes"));
        restore();
    }

    std::fs::write(&file.0, vec![0u8; len as usize]).unwrap();
    shared_memory_error(file.monitor(), &file.0, "not a fueltank file");

    // Restored, it attaches, with its count.
    restore();
    assert_eq!(file.monitor().unwrap().total(), 1);
}

/// An emission reported ahead of the host's clock, through another handle
/// on the file, is counted without a gap, as in a monitor of one process.
#[test]
fn attach_and_report_an_emission_from_the_future() {
    let file = TestFile::new("attach_and_report_from_the_future");
    let monitor = file.monitor().unwrap();
    let reporter = file.monitor().unwrap();
    monitor.emit();
    std::thread::sleep(Duration::from_millis(5));
    monitor.emit();
    reporter.emit_at(Instant::now() + Duration::from_secs(3600));
    std::thread::sleep(Duration::from_millis(5));
    monitor.emit();
    let snap = reporter.snapshot();
    assert_eq!((snap.total, snap.gaps()), (4, 2));
    let lo_hi = snap.lo_hi.unwrap().interval;
    assert!(lo_hi >= Duration::from_millis(5), "{lo_hi:?}");
}

/// Every reader, and every writer, of a monitor whose file holds `state`
/// from offset 64 on (the window, at 72, kept): none may panic, whatever
/// another process wrote there.
fn use_whatever_the_file_holds(file: &TestFile, monitor: &Monitor, state: &[u8]) {
    let file_len = std::fs::metadata(&file.0).unwrap().len() as usize;
    let mut bytes = std::fs::read(&file.0).unwrap();
    let window = bytes[72..80].to_vec();
    let end = file_len.min(64 + state.len());
    bytes[64..end].copy_from_slice(&state[..end - 64]);
    bytes[72..80].copy_from_slice(&window);
    // Through the file, into the page every process maps.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&file.0)
        .unwrap()
        .write_all_at(&bytes, 0)
        .unwrap();
    let snap = monitor.snapshot();
    for q in [0.0, 0.1, 50.0, 90.0, 99.0, 99.9, 100.0] {
        let _ = snap.percentile(q);
    }
    let _ = (snap.gaps(), format!("{snap:?}"), monitor.total());
    let _ = (monitor.mean(), monitor.latest(), monitor.lo_hi());
    let _ = (monitor.hi_lo(), monitor.runtime(), format!("{monitor:?}"));
    monitor.emit();
    monitor.emit_at(Instant::now());
    let _ = monitor.stop();
    monitor.start();
    monitor.emit();
    let _ = monitor.snapshot().percentile(50.0);
}

/// A reader takes the counts in a shared monitor's file as they are: two
/// gap counters at 2^63 (a sum past `u64::MAX`), every byte set, and
/// random bytes, answer without a panic.
#[test]
fn attach_to_a_file_of_any_counts_never_panics() {
    let file = TestFile::new("attach_to_a_file_of_any_counts");
    let monitor = file.monitor().unwrap();
    // State from 64: base, window, ungapped, stopped, 4 spare, last,
    // batched, the shortest and longest gap, then the gap counters (the
    // one of a 5 ns gap, and of a gap of about 10 ms, at 160 + 8 * index).
    let len = std::fs::metadata(&file.0).unwrap().len() as usize - 64;
    let mut counted = std::fs::read(&file.0).unwrap()[64..].to_vec();
    counted[80..96].copy_from_slice(&[5u64.to_ne_bytes(), 10_000_000u64.to_ne_bytes()].concat());
    for index in [5, 1164] {
        let at = 96 + 8 * index;
        counted[at..at + 8].copy_from_slice(&(1u64 << 63).to_ne_bytes());
    }
    use_whatever_the_file_holds(&file, &monitor, &counted);
    let snap = monitor.snapshot();
    assert_eq!(snap.gaps(), u64::MAX, "2^64 and more, saturated");
    let p50 = snap.percentile(50.0).unwrap();
    assert_eq!(p50, Duration::from_nanos(5), "half the gaps are of 5 ns");
    let p90 = snap.percentile(90.0).unwrap();
    assert!(p90 > Duration::from_millis(9), "{p90:?}");

    use_whatever_the_file_holds(&file, &monitor, &vec![0xff; len]);
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..20 {
        let random: Vec<u8> = (0..len)
            .map(|_| {
                // xorshift64: the same bytes on every run.
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        use_whatever_the_file_holds(&file, &monitor, &random);
    }
}

#[test]
fn attach_with_bad_options_is_an_error() {
    let file = TestFile::new("attach_with_bad_options");
    for clocked in [
        Monitor::builder()
            .clock(ManualClock::new())
            .shared_memory(file.name()),
        Monitor::builder()
            .shared_memory(file.name())
            .clock(ManualClock::new()),
    ] {
        match clocked.build() {
            Err(Error::Unsupported { what, accepted }) => {
                assert_eq!(what, "a clock for a shared monitor");
                assert!(accepted.contains("host's monotonic clock"), "{accepted}");
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(!file.0.exists(), "an unsupported build made the file");
    // The default clock, given by name, is the default.
    let monotonic = Monitor::builder()
        .clock(MonotonicClock)
        .shared_memory(file.name())
        .build();
    assert!(monotonic.is_ok(), "{monotonic:?}");

    match Monitor::builder()
        .window(Duration::ZERO)
        .shared_memory(file.name())
        .build()
    {
        Err(Error::InvalidDuration { option, .. }) => assert_eq!(option, "window"),
        other => panic!("{other:?}"),
    }

    for (name, says) in [
        ("", "the name is empty"),
        ("a b", "not accepted"),
        ("/nonexistent-dir-of-fueltank/m", "cannot create"),
        ("/", "cannot open it"),
    ] {
        shared_memory_error(
            Monitor::builder().shared_memory(name).build(),
            Path::new(name),
            says,
        );
    }
}
