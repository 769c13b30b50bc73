//! A keyed tank read by threads: an operation reads the clock, then locks
//! its key's shard. A thread delayed between the two (preempted, or
//! waiting for the lock behind others) works on the shard at a reading
//! older than what other threads already did there.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use fueltank::clock::{Clock, ManualClock};
use fueltank::{KeyedTank, Rate};

/// A manual clock that, once armed for a thread, stops that thread right
/// after its next reading (as a preemption would) until released.
#[derive(Debug, Clone)]
struct StallingClock {
    inner: ManualClock,
    armed: Arc<Mutex<Option<Stall>>>,
}

#[derive(Debug)]
struct Stall {
    thread: ThreadId,
    read: mpsc::Sender<Instant>,
    release: mpsc::Receiver<()>,
}

impl Clock for StallingClock {
    fn now(&self) -> Instant {
        let now = self.inner.now();
        let stall = {
            let mut armed = self.armed.lock().unwrap();
            match &*armed {
                Some(stall) if stall.thread == thread::current().id() => armed.take(),
                _ => None,
            }
        };
        if let Some(stall) = stall {
            stall.read.send(now).unwrap();
            stall.release.recv().unwrap();
        }
        now
    }
}

/// `initial(0)`: a key starts empty and accrues from its first use. "hot"
/// is first used at `T` (level 0, a take refused), while another thread's
/// `has_fuel(&hot)` read the clock 100 ms earlier and stalled before
/// locking the shard; meanwhile a flood of other keys evicts "hot" (as
/// fresh as a new key, so it leaves no debt). The stalled take is refused
/// and "hot" still holds 0 at `T`. Before the fix, the stalled take made
/// "hot" again at its old reading: 100 fuel at `T` that it never accrued (with real threads
/// hammering one key while others flooded, 409 grants where 300 accrued).
/// An operation now works at the later of its reading and its shard's
/// last.
#[test]
fn a_stalled_take_never_mints_fuel_for_a_key_made_since() {
    let manual = ManualClock::new();
    let clock = StallingClock {
        inner: manual.clone(),
        armed: Arc::default(),
    };
    let keyed = KeyedTank::builder(Rate::per_second(1000).unwrap())
        .initial(0)
        .max_keys(64)
        .clock(clock.clone())
        .build()
        .unwrap();
    let (read_tx, read_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel();
    let stalled = {
        let (keyed, armed) = (keyed.clone(), clock.armed.clone());
        thread::spawn(move || {
            *armed.lock().unwrap() = Some(Stall {
                thread: thread::current().id(),
                read: read_tx,
                release: release_rx,
            });
            keyed.has_fuel(&"hot".to_string())
        })
    };
    // The stalled thread read the clock at `T − 100 ms`.
    read_rx.recv().unwrap();
    manual.advance(Duration::from_millis(100));
    let hot = "hot".to_string();
    assert!(!keyed.has_fuel(&hot), "a new key holds `initial`, 0");
    assert_eq!(keyed.level(&hot), 0);
    // Other keys' traffic, at `T`: every shard evicts (a key as fresh as
    // "hot" leaves no debt).
    for key in 0..20_000u32 {
        keyed.has_fuel(&key.to_string());
    }
    assert_eq!(keyed.level(&hot), 0, "nothing accrued: the clock stood");
    release_tx.send(()).unwrap();
    assert!(!stalled.join().unwrap(), "the stalled take is refused");
    let level = keyed.level(&hot);
    let granted = (0..1_000).filter(|_| keyed.has_fuel(&hot)).count();
    assert_eq!(
        (level, granted),
        (0, 0),
        "a refused take left \"hot\" {level} fuel at the same instant"
    );
}
