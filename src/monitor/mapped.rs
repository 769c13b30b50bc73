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
use crate::shm::{Access, Header, Kind, Region, host_now_ns};

const STATE_OFFSET: usize = size_of::<Header>();
/// The length of a monitor's file.
pub(crate) const FILE_LEN: usize = STATE_OFFSET + size_of::<State>();
const _: () = assert!(STATE_OFFSET.is_multiple_of(align_of::<State>()));

/// How far a file's clock base may be ahead of the host's clock before it
/// is taken for a file from before the host restarted (its monotonic clock
/// then restarted too). Readings of one host clock never disagree by more
/// than a context switch; a second is far beyond that.
const CLOCK_SLACK_NS: u64 = 1_000_000_000;

/// Creates the monitor's file at `path`, or attaches to it.
pub(crate) fn open(path: &Path, access: Access, window_ns: u64) -> Result<Place, Error> {
    let region = Region::open(
        path,
        access,
        FILE_LEN,
        |region| {
            region
                .get::<State>(STATE_OFFSET)
                .init(window_ns, host_now_ns());
            region.get::<Header>(0).init(Kind::Monitor, FILE_LEN);
        },
        |region| check(region, path, window_ns),
    )?;
    Ok(Place::mapped(region, STATE_OFFSET))
}

/// Checks an existing file: its header, then the monitor's parameters.
fn check(region: &Region, path: &Path, window_ns: u64) -> Result<(), Error> {
    region
        .get::<Header>(0)
        .check(path, Kind::Monitor, FILE_LEN)?;
    let state = region.get::<State>(STATE_OFFSET);
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
