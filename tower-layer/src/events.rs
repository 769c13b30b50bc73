//! `tracing` events (feature `tracing`): one per shed request, per request
//! refused while its budget's store is down, per request whose key could
//! not be read, and per long wait. Without the feature
//! these are empty and vanish.
//!
//! Every event has the target `fueltank_tower`, so that
//! `RUST_LOG=fueltank_tower=debug` shows them all.

use std::time::Duration;

use crate::error::Refusal;
use crate::key::KeyError;
use crate::{Throttled, Unavailable};

/// How long a wait must be to be reported as long, unless the layer says
/// otherwise (`long_wait`).
#[cfg_attr(not(feature = "tracing"), allow(dead_code))]
pub(crate) const LONG_WAIT: Duration = Duration::from_secs(1);

/// `wait` in whole milliseconds, at most `u64::MAX` (a budget of one's
/// own may say a longer wait).
#[cfg(feature = "tracing")]
fn ms(wait: Duration) -> u64 {
    u64::try_from(wait.as_millis()).unwrap_or(u64::MAX)
}

/// A request was shed.
#[cold]
pub(crate) fn throttled(throttled: &Throttled) {
    #[cfg(feature = "tracing")]
    tracing::debug!(
        target: "fueltank_tower",
        scope = %throttled.scope(),
        limit = throttled.label(),
        key = throttled.key(),
        retry_after_ms = ms(throttled.retry_after()),
        "request shed: {throttled}"
    );
    #[cfg(not(feature = "tracing"))]
    let _ = throttled;
}

/// A shadow layer let through a request it would have refused.
#[cold]
pub(crate) fn shadowed(refusal: &Refusal) {
    #[cfg(feature = "tracing")]
    match refusal {
        Refusal::Throttled(throttled) => tracing::debug!(
            target: "fueltank_tower",
            scope = %throttled.scope(),
            limit = throttled.label(),
            key = throttled.key(),
            retry_after_ms = ms(throttled.retry_after()),
            shadow = true,
            "request would have been shed (shadow mode): {throttled}"
        ),
        Refusal::Unavailable(unavailable) => tracing::debug!(
            target: "fueltank_tower",
            scope = %unavailable.limit().scope(),
            limit = unavailable.limit().label(),
            key = unavailable.limit().key(),
            store = unavailable.store(),
            shadow = true,
            "request would have been refused (shadow mode): {unavailable}"
        ),
    }
    #[cfg(not(feature = "tracing"))]
    let _ = refusal;
}

/// A request was refused because its budget's store is down: a warning,
/// apart from the shed requests, since it is the service's dependency at
/// fault and not the client.
#[cold]
pub(crate) fn unavailable(unavailable: &Unavailable) {
    #[cfg(feature = "tracing")]
    tracing::warn!(
        target: "fueltank_tower",
        scope = %unavailable.limit().scope(),
        limit = unavailable.limit().label(),
        key = unavailable.limit().key(),
        store = unavailable.store(),
        retry_after_ms = ms(unavailable.limit().retry_after()),
        "request refused, store unavailable: {unavailable}"
    );
    #[cfg(not(feature = "tracing"))]
    let _ = unavailable;
}

/// A request's key could not be read: an error if the server is set up
/// wrong (every request fails alike), at debug level if the request is at
/// fault (a client can send any number of those).
#[cold]
pub(crate) fn key_error(error: &KeyError, label: Option<&str>) {
    #[cfg(feature = "tracing")]
    if error.is_setup_error() {
        tracing::error!(
            target: "fueltank_tower",
            limit = label,
            "request refused, its key could not be read: {error}"
        );
    } else {
        tracing::debug!(
            target: "fueltank_tower",
            limit = label,
            "request refused, its key could not be read: {error}"
        );
    }
    #[cfg(not(feature = "tracing"))]
    let _ = (error, label);
}

/// A request waited `wait` for its fuel; reported if that is at least
/// `threshold`.
#[inline]
pub(crate) fn waited(wait: Duration, threshold: Duration, label: Option<&str>) {
    #[cfg(feature = "tracing")]
    if wait >= threshold {
        tracing::info!(
            target: "fueltank_tower",
            limit = label,
            wait_ms = ms(wait),
            "request waited {wait:?} for fuel"
        );
    }
    #[cfg(not(feature = "tracing"))]
    let _ = (wait, threshold, label);
}
