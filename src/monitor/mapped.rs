//! A monitor in a file mapped shared by the processes of one host.
//!
//! The file is a [`Header`] (64 bytes) followed by the monitor's [`State`],
//! nothing else: the same struct a monitor of one process keeps on the heap.
//! The trailing window is stored in it (it fixes the slots of the samples
//! ring, so every process must use the same) and checked on attach; the
//! refresh of [`snapshots`](super::Monitor::snapshots) is each process's
//! own, as it only paces that process's reader.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::state::{Place, STOPPED, State};
use crate::Error;
use crate::clock::ClockSource;
use crate::shm::{CLOCK_SLACK_NS, Kind, STATE_AT, SharedMemory, host_now_ns};

/// Creates the monitor's file `shared` names, or attaches to it.
pub(crate) fn open(
    shared: &SharedMemory,
    clock: &ClockSource,
    window_ns: u64,
) -> Result<Place, Error> {
    let region = crate::shm::open(
        shared,
        Kind::Monitor,
        clock,
        |state: &State| state.init(window_ns, host_now_ns()),
        |state, path| check(state, path, window_ns),
    )?;
    Ok(Place::mapped(region, STATE_AT))
}

/// Checks an existing file's monitor against this process's.
fn check(state: &State, path: &Path, window_ns: u64) -> Result<(), Error> {
    let found = state.window_ns.load(Ordering::Relaxed);
    if found != window_ns {
        return Err(Error::SharedMismatch {
            path: path.to_owned(),
            what: "window",
            found: format!("{:?}", Duration::from_nanos(found)),
            asked: format!("{:?}", Duration::from_nanos(window_ns)),
        });
    }
    // The base before the clock: a base another process writes after our
    // reading could be a little ahead of it, never one written before.
    let base = state.base.load(Ordering::Acquire);
    if base & STOPPED == 0 && base > host_now_ns().saturating_add(CLOCK_SLACK_NS) {
        return Err(Error::SharedMemory {
            path: path.to_owned(),
            reason: "its running time starts after the host's monotonic clock reads now, \
                     so it was made before the host restarted; remove it to start anew"
                .into(),
        });
    }
    Ok(())
}
