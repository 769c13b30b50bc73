//! Without the `shared-memory` feature: no tank is in shared memory, so
//! [`HostBucket`] has no value. `bucket.rs` keeps its branches on a shared
//! bucket, each unreachable here and compiled away; this is the part of
//! `host.rs`'s interface that they name.

use crate::{Error, Rate};

/// A shared-memory bucket: none can exist in this build.
#[derive(Debug, Clone)]
pub(crate) enum HostBucket {}

/// A shared bucket as a tank holds it: held by value, so that an
/// `Option<Host>` is known to be `None` and a `Bucket::Host` never to match.
pub(crate) type Host = HostBucket;

/// As `host::Took`; never made here.
#[allow(dead_code)]
pub(crate) enum Took {
    Taken(u64),
    Empty,
}

/// As `host::Turn`; never made here.
#[allow(dead_code)]
pub(crate) enum Turn {
    Now(u64),
    At { word: u64, due: u64 },
    Late,
    Refused,
}

impl HostBucket {
    pub(crate) fn state(&self) -> &HostBucket {
        match *self {}
    }

    pub(crate) fn take(&self, _: u64, _: u64) -> Took {
        match *self {}
    }

    pub(crate) fn takes_turns(&self) -> bool {
        match *self {}
    }

    pub(crate) fn reserve(&self, _: u64, _: u64, _: Option<u64>) -> Turn {
        match *self {}
    }

    pub(crate) fn give_back(&self, _: u64, _: u64) {
        match *self {}
    }

    pub(crate) fn level(&self, _: u64) -> u64 {
        match *self {}
    }

    pub(crate) fn due(&self, _: u64, _: u128) -> u64 {
        match *self {}
    }

    pub(crate) fn pause(&self, _: u64) {
        match *self {}
    }

    pub(crate) fn resume(&self, _: u64) {
        match *self {}
    }

    pub(crate) fn set_rate(&self, _: u64, _: Rate) -> Result<u64, Error> {
        match *self {}
    }

    pub(crate) fn rate(&self) -> Option<Rate> {
        match *self {}
    }

    pub(crate) fn is_paused(&self) -> bool {
        match *self {}
    }
}

// What makes the branches compile away: no tank can hold a shared bucket.
const _: () = assert!(std::mem::size_of::<Option<Host>>() == 0);
