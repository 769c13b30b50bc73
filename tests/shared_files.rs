//! The files of shared tanks and monitors: who may attach to them (the
//! trust model on `SharedMemory`), what happens when they are removed or
//! truncated, and names as long as the system allows. Some tests re-run
//! this binary as a worker process (`common::processes`); the tests that
//! act as another user (uid 65534) need root, and say so when they skip.
//! Those that spawn nothing also run under valgrind (`.ci/run`).
#![cfg(unix)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::processes::worker;
use fueltank::{Error, Monitor, SharedMemory, Tank};

/// The user the tests act as when they need another one.
const NOBODY: u32 = 65534;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A directory of its own for one test, that every user may enter (so that
/// a denial to another user comes from a file's mode, not from the
/// directory), removed with what it holds when the test ends.
struct TestDir(PathBuf);

impl TestDir {
    fn new(test: &str) -> TestDir {
        let dir =
            std::env::temp_dir().join(format!("fueltank-files-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        TestDir(dir)
    }

    fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }

    /// The names in the directory, sorted.
    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.0)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Files under names in the shared-memory directory, removed when the test
/// ends (even if it fails).
struct Named(Vec<PathBuf>);

impl Named {
    /// The file of `name` as `kind` ("tank", "monitor").
    fn file(&mut self, name: &str, kind: &str) -> PathBuf {
        let dir = Path::new("/dev/shm");
        let dir = if dir.is_dir() {
            dir.to_owned()
        } else {
            std::env::temp_dir()
        };
        let path = dir.join(format!("fueltank-{name}.{kind}"));
        let _ = std::fs::remove_file(&path);
        self.0.push(path.clone());
        path
    }
}

impl Drop for Named {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A tank at 10/min (one fuel every 6 s: none refills while a test runs)
/// holding `initial`.
fn tank(shared: impl Into<SharedMemory>, initial: u64) -> Result<Tank, Error> {
    Tank::builder("10/min".parse().unwrap())
        .initial(initial)
        .shared_memory(shared)
        .build()
}

/// The reason of an `Error::SharedMemory`; panics on anything else.
fn reason<T: std::fmt::Debug>(result: Result<T, Error>) -> String {
    match result {
        Err(Error::SharedMemory { reason, .. }) => reason,
        other => panic!("expected Error::SharedMemory, got {other:?}"),
    }
}

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// `sh -c script path` as user `uid`: whether it succeeded.
fn as_user(uid: u32, script: &str, path: &Path) -> bool {
    Command::new("sh")
        .args(["-c", script])
        .arg(path)
        .uid(uid)
        .gid(uid)
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

/// A worker of `test` with `args`, its standard input and output piped.
fn spawn(test: &str, args: &[&str]) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env("FUELTANK_TEST_WORKER", args.join("\u{1f}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for the worker's line `word` (the first may follow the test
/// harness's own text on its line).
fn wait_for(child: &mut Child, word: &str) -> BufReader<std::process::ChildStdout> {
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "the worker ended");
        if line.contains(word) {
            return out;
        }
    }
}

/// A symbolic link under a name is never followed: not to another tank's
/// file (it would share that budget), not to a file that does not exist
/// (it would create it wherever the link points).
#[test]
fn a_symlink_is_never_followed() {
    if worker().is_some() {
        return;
    }
    let mut named = Named(Vec::new());
    let id = std::process::id();
    let (billing, api) = (format!("files-billing-{id}"), format!("files-api-{id}"));
    let billing_file = named.file(&billing, "tank");
    let api_file = named.file(&api, "tank");
    let billing_tank = tank(&billing, 10).unwrap();
    symlink(&billing_file, &api_file).unwrap();
    let why = reason(tank(&api, 10));
    assert!(why.contains("symbolic link"), "{why}");
    assert_eq!(
        billing_tank.level(),
        10,
        "the api build took billing's fuel"
    );
    let why = reason(
        Monitor::builder()
            .shared_memory(api_file.to_str().unwrap())
            .build(),
    );
    assert!(why.contains("symbolic link"), "{why}");
    // Nor is it removed through the link.
    let why = reason(Tank::remove_shared_memory(&api));
    assert!(
        why.contains("symbolic link") && why.contains("not removed"),
        "{why}"
    );
    assert!(billing_file.exists());

    // A dangling link: nothing is created where it points.
    let dir = TestDir::new("dangling");
    let (link, target) = (dir.path("link.tank"), dir.path("target.tank"));
    symlink(&target, &link).unwrap();
    let why = reason(tank(link.to_str().unwrap(), 1));
    assert!(why.contains("symbolic link"), "{why}");
    assert!(!target.exists());
}

/// A file owned by another user is refused (whoever can write it controls
/// the budget) unless accepted with `any_owner`; so is a file others may
/// write, unless the mode lets them.
#[test]
fn another_users_file_is_refused_unless_accepted() {
    if worker().is_some() {
        return;
    }
    if !is_root() {
        println!("skipped: changing a file's owner needs root");
        return;
    }
    let dir = TestDir::new("owner");
    let file = dir.path("theirs.tank");
    let path = file.to_str().unwrap();
    drop(tank(path, 10).unwrap());
    let path_c = std::ffi::CString::new(path).unwrap();
    // SAFETY: a valid C string; chown has no other precondition.
    assert_eq!(unsafe { libc::chown(path_c.as_ptr(), NOBODY, NOBODY) }, 0);
    let why = reason(tank(path, 10));
    assert!(
        why.contains("owned by uid 65534") && why.contains("any_owner"),
        "{why}"
    );
    let theirs = SharedMemory::new(path).any_owner();
    assert_eq!(tank(theirs.clone(), 10).unwrap().level(), 10);
    // Theirs and writable by everyone (the file): both must be
    // accepted on purpose.
    chmod(&file, 0o666);
    let why = reason(tank(theirs.clone(), 10));
    assert!(
        why.contains("lets its group and others write it") && why.contains("mode(0o666)"),
        "{why}"
    );
    let why = reason(tank(SharedMemory::new(path).mode(0o666), 10));
    assert!(why.contains("owned by uid 65534"), "{why}");
    assert!(tank(theirs.clone().mode(0o666), 10).is_ok());
    // Removal refuses it as the build does.
    let why = reason(Tank::remove_shared_memory(path));
    assert!(why.contains("owned by uid 65534"), "{why}");
    assert_eq!(Tank::remove_shared_memory(theirs.mode(0o666)), Ok(true));
}

/// A file its group or others may write is refused unless the build's mode
/// lets them; a mode that is not accepted, and a file that is not a
/// regular one, are errors that say so.
#[test]
fn a_file_others_may_write_is_refused_unless_the_mode_lets_them() {
    if worker().is_some() {
        return;
    }
    let dir = TestDir::new("writable");
    let file = dir.path("open.monitor");
    let path = file.to_str().unwrap();
    let monitor = |shared: SharedMemory| Monitor::builder().shared_memory(shared).build();
    monitor(SharedMemory::new(path)).unwrap().emit();
    for (mode, who, accept) in [
        (0o620, "lets its group write it", 0o660),
        (0o602, "lets others write it", 0o606),
        (0o622, "lets its group and others write it", 0o666),
    ] {
        chmod(&file, mode);
        let why = reason(monitor(SharedMemory::new(path)));
        assert!(
            why.contains(who) && why.contains(&format!("mode({accept:#o})")),
            "{why}"
        );
        let accepted = monitor(SharedMemory::new(path).mode(accept)).unwrap();
        assert_eq!(accepted.total(), 1);
    }
    // Readable by others is not control: attached to.
    chmod(&file, 0o644);
    assert_eq!(monitor(SharedMemory::new(path)).unwrap().total(), 1);

    for bad in [0o700, 0o400, 0o4600, 0o777, 0o1600] {
        let why = reason(monitor(SharedMemory::new(path).mode(bad)));
        assert!(
            why.contains(&format!("mode {bad:#o} is not accepted")),
            "{why}"
        );
    }
    // Not a regular file: a FIFO (whose open would otherwise wait for a
    // writer) and a directory.
    let fifo = dir.path("fifo.monitor");
    let fifo_c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid C string; mkfifo has no other precondition.
    assert_eq!(unsafe { libc::mkfifo(fifo_c.as_ptr(), 0o600) }, 0);
    let why = reason(monitor(SharedMemory::new(fifo.to_str().unwrap())));
    assert!(why.contains("not a regular file"), "{why}");
    let why = reason(Monitor::remove_shared_memory(dir.0.to_str().unwrap()));
    assert!(why.contains("not a regular file"), "{why}");
}

/// A new file gets the mode asked for (0600 by default) whatever the
/// umask, so another user can neither write nor truncate it: truncation is
/// the one way to crash the processes that map it (SIGBUS), and the
/// default keeps it to the owner and root.
#[test]
fn new_files_get_their_mode_whatever_the_umask() {
    if let Some(args) = worker() {
        // Builds under `umask` with `mode` (or the default), then ends.
        let [path, umask, mode] = &args[..] else {
            panic!("{args:?}")
        };
        // SAFETY: umask has no preconditions; this process is ours.
        unsafe { libc::umask(libc::mode_t::from_str_radix(umask, 8).unwrap()) };
        let mut shared = SharedMemory::new(path.as_str());
        if mode != "default" {
            shared = shared.mode(u32::from_str_radix(mode, 8).unwrap());
        }
        tank(shared, 1).unwrap();
        return;
    }
    let dir = TestDir::new("umask");
    let test = "new_files_get_their_mode_whatever_the_umask";
    for (file, umask, mode, expect) in [
        ("default.tank", "000", "default", 0o600),
        ("group.tank", "077", "660", 0o660),
    ] {
        let file = dir.path(file);
        let status = spawn(test, &[file.to_str().unwrap(), umask, mode])
            .wait()
            .unwrap();
        assert!(status.success(), "{status}");
        assert_eq!(
            mode_of(&file),
            expect,
            "umask {umask}, mode {mode}: {:#o}",
            mode_of(&file)
        );
    }
    if !is_root() {
        println!("skipped: acting as another user needs root");
        return;
    }
    let file = dir.path("default.tank");
    let len = std::fs::metadata(&file).unwrap().len();
    assert!(
        !as_user(NOBODY, ": > \"$0\"", &file),
        "another user truncated it"
    );
    assert!(
        !as_user(NOBODY, "exec 3<>\"$0\"", &file),
        "another user opened it to write"
    );
    assert_eq!(std::fs::metadata(&file).unwrap().len(), len);
    // The denial came from the file's mode: with others allowed, it works.
    chmod(&file, 0o666);
    assert!(as_user(NOBODY, "exec 3<>\"$0\"", &file));
}

/// What the trust model says of truncation is exact: a process that maps
/// the file dies of SIGBUS at its next access once the file is cut short.
/// (The owner did it here; the default mode lets no other user.)
#[test]
fn truncating_a_mapped_file_raises_sigbus() {
    if let Some(args) = worker() {
        let monitor = Monitor::builder().shared_memory(args[0].as_str()).build();
        let monitor = monitor.unwrap();
        println!("\nready");
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).unwrap();
        monitor.emit();
        println!("alive");
        return;
    }
    let dir = TestDir::new("sigbus");
    let file = dir.path("cut.monitor");
    let mut child = spawn(
        "truncating_a_mapped_file_raises_sigbus",
        &[file.to_str().unwrap()],
    );
    let mut out = wait_for(&mut child, "ready");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .unwrap()
        .set_len(0)
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "go").unwrap();
    let status = child.wait().unwrap();
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut out, &mut rest);
    assert_eq!(status.signal(), Some(libc::SIGBUS), "{status}: {rest}");
}

/// `remove_shared_memory` removes a file only when no process uses it
/// (another process's handle counts, as does one of this process), only a
/// fueltank file of its kind, and says when there was none. Removing the
/// file behind the processes' backs splits the budget, as the docs say.
#[test]
fn remove_only_what_no_process_uses() {
    if let Some(args) = worker() {
        // Holds the tank until its input ends.
        let _tank = tank(args[0].as_str(), 1).unwrap();
        println!("\nready");
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
        return;
    }
    let mut named = Named(Vec::new());
    let name = format!("files-remove-{}", std::process::id());
    let file = named.file(&name, "tank");
    let here = tank(&name, 1).unwrap();
    let mut other = spawn("remove_only_what_no_process_uses", &[&name]);
    let _out = wait_for(&mut other, "ready");
    let why = reason(Tank::remove_shared_memory(&name));
    assert!(
        why.contains("a process uses it") && why.contains("not removed"),
        "{why}"
    );
    drop(here);
    // The other process still uses it.
    let why = reason(Tank::remove_shared_memory(&name));
    assert!(why.contains("a process uses it"), "{why}");
    assert!(file.exists());
    drop(other.stdin.take());
    assert!(other.wait().unwrap().success());
    assert_eq!(Tank::remove_shared_memory(&name), Ok(true));
    assert!(!file.exists());
    assert_eq!(Tank::remove_shared_memory(&name), Ok(false));

    // Monitors likewise; and a file of the other kind, or not of fueltank,
    // is not removed.
    let monitor_file = named.file(&name, "monitor");
    let monitor = Monitor::builder().shared_memory(&name).build().unwrap();
    let why = reason(Monitor::remove_shared_memory(&name));
    assert!(why.contains("a process uses it"), "{why}");
    drop(monitor);
    let as_tank = reason(Tank::remove_shared_memory(monitor_file.to_str().unwrap()));
    assert!(as_tank.contains("not a fueltank tank file"), "{as_tank}");
    assert_eq!(Monitor::remove_shared_memory(&name), Ok(true));
    std::fs::write(&file, b"not a tank, but a file of the user's").unwrap();
    let why = reason(Tank::remove_shared_memory(&name));
    assert!(why.contains("not a fueltank tank file"), "{why}");
    assert!(file.exists());
    std::fs::remove_file(&file).unwrap();

    // Removed behind a running process's back (`rm`): the next build
    // makes a new file, and the two hold separate budgets.
    let before = tank(&name, 1).unwrap();
    std::fs::remove_file(&file).unwrap();
    let after = tank(&name, 1).unwrap();
    assert!(before.has_fuel() && after.has_fuel(), "one budget");
    assert!(!before.has_fuel() && !after.has_fuel());
}

/// Every handle dropped, the file is removed: a process's lock outlives
/// its last handle by an instant at most (its timer may be serving the line
/// on another thread just then), and the removal waits that instant out
/// rather than say that a process uses the file.
#[test]
fn removed_right_after_the_last_handle_is_dropped() {
    if worker().is_some() {
        return;
    }
    let mut named = Named(Vec::new());
    let name = format!("files-dropped-{}", std::process::id());
    let file = named.file(&name, "tank");
    let mut refused = Vec::new();
    for round in 0..100 {
        let hardcap = match round % 2 {
            0 => fueltank::Hardcap::One,
            _ => fueltank::Hardcap::Limit,
        };
        let tank = Tank::builder("2000/s".parse().unwrap())
            .hardcap(hardcap)
            .shared_memory(&name)
            .build()
            .unwrap();
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let tank = tank.clone();
                std::thread::spawn(move || {
                    let start = Instant::now();
                    while start.elapsed() < Duration::from_millis(10) {
                        tank.blocking_await_fuel_timeout(Duration::from_millis(1));
                    }
                })
            })
            .collect();
        for waiter in waiters {
            waiter.join().unwrap();
        }
        drop(tank);
        match Tank::remove_shared_memory(&name) {
            Ok(true) => {}
            other => {
                refused.push(format!("round {round}: {other:?}"));
                // Removed once the timer let go, for the next round.
                std::thread::sleep(Duration::from_millis(200));
                let _ = Tank::remove_shared_memory(&name);
            }
        }
    }
    assert!(!file.exists());
    assert!(
        refused.is_empty(),
        "{} of 100 removals refused after every handle was dropped, e.g. {:#?}",
        refused.len(),
        &refused[..refused.len().min(2)]
    );
}

/// A build that finds the file locked for removal opens it again a few
/// times, then says what holds it: it never waits for long.
#[test]
fn a_build_never_waits_long_on_a_locked_file() {
    if worker().is_some() {
        return;
    }
    let dir = TestDir::new("locked");
    let file = dir.path("locked.tank");
    let path = file.to_str().unwrap();
    drop(tank(path, 1).unwrap());
    let held = std::fs::File::open(&file).unwrap();
    // SAFETY: an open file of ours.
    let locked = unsafe {
        libc::flock(
            std::os::fd::AsRawFd::as_raw_fd(&held),
            libc::LOCK_EX | libc::LOCK_NB,
        )
    };
    assert_eq!(locked, 0);
    let start = Instant::now();
    let why = reason(tank(path, 1));
    assert!(why.contains("exclusive lock"), "{why}");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    drop(held);
    assert_eq!(tank(path, 1).unwrap().level(), 1);
}

/// Names and paths as long as the system accepts: the temporary file a
/// build writes first has a short name of its own, and none is left.
#[test]
fn the_longest_names_work() {
    if worker().is_some() {
        return;
    }
    let dir = TestDir::new("long");
    // A file name of 255 bytes, the most Linux (and most systems) accept.
    for (stem, kind) in [("t".repeat(250), "tank"), ("m".repeat(247), "monitor")] {
        let file = dir.path(&format!("{stem}.{kind}"));
        assert_eq!(file.file_name().unwrap().len(), 255);
        let path = file.to_str().unwrap();
        match kind {
            "tank" => assert_eq!(tank(path, 1).unwrap().level(), 1),
            _ => Monitor::builder()
                .shared_memory(path)
                .build()
                .unwrap()
                .emit(),
        }
        assert!(file.exists());
    }
    assert_eq!(dir.names().len(), 2, "{:?}", dir.names());
    // One byte more is the system's refusal, said as such.
    let too_long = dir.path(&format!("{}.tank", "t".repeat(251)));
    let why = reason(tank(too_long.to_str().unwrap(), 1));
    assert!(why.contains("too long"), "{why}");

    // The longest name (200 characters) in the shared-memory directory.
    let mut named = Named(Vec::new());
    let name = format!("{}-{}", std::process::id(), "n".repeat(200));
    let name = &name[..200];
    named.file(name, "tank");
    named.file(name, "monitor");
    assert_eq!(tank(name, 1).unwrap().level(), 1);
    Monitor::builder()
        .shared_memory(name)
        .build()
        .unwrap()
        .emit();
    assert_eq!(Tank::remove_shared_memory(name), Ok(true));
    assert_eq!(Monitor::remove_shared_memory(name), Ok(true));
}
