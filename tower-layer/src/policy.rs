//! What both kinds of layer decide alike: wait or shed, how long and how
//! many may wait, what a shed request says about its limit, and what is
//! counted.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::emit::Emission;
use crate::error::{Refusal, Scope};
use crate::{Stats, Throttled, Unavailable, events};

/// Why a request found no fuel, before the layer says which limit refused
/// it: none in time (to retry after this), or the budget's store is down.
#[derive(Debug)]
pub(crate) enum Cause {
    NoFuel(Duration),
    Down(Unavailable),
}

/// Wait for fuel, or shed the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Wait,
    Reject,
}

/// A layer's rules, shared by every service it makes.
#[derive(Debug, Clone)]
pub(crate) struct Policy {
    pub(crate) mode: Mode,
    pub(crate) emission: Emission,
    /// Wait mode: the longest a request may wait for its fuel.
    pub(crate) max_wait: Option<Duration>,
    /// Wait mode: the most requests that may wait at once.
    pub(crate) queue: Option<Arc<Queue>>,
    pub(crate) scope: Scope,
    pub(crate) label: Option<Arc<str>>,
    /// Let through what would be refused, counting and reporting it.
    pub(crate) shadow: bool,
    pub(crate) stats: Option<Stats>,
    /// Waits at least this long are reported (feature `tracing`).
    pub(crate) long_wait: Duration,
}

impl Policy {
    pub(crate) fn new(scope: Scope) -> Policy {
        Policy {
            mode: Mode::Wait,
            emission: Emission::default(),
            max_wait: None,
            queue: None,
            scope,
            label: None,
            shadow: false,
            stats: None,
            long_wait: events::LONG_WAIT,
        }
    }

    /// A request that finds no fuel, in shadow mode: let through, taking
    /// none; counted and reported as the refusal it would have had.
    #[cold]
    pub(crate) fn shadowed(&self, cause: Cause, key: Option<Arc<str>>) {
        let refusal = self.refusal(cause, key);
        if let Some(stats) = &self.stats {
            stats.shadowed().emit();
        }
        events::shadowed(&refusal);
    }

    /// A refused request's error, counted and reported: [`Throttled`], or
    /// [`Unavailable`] if its budget's store is down.
    #[cold]
    pub(crate) fn refuse(&self, cause: Cause, key: Option<Arc<str>>) -> Refusal {
        let refusal = self.refusal(cause, key);
        match &refusal {
            Refusal::Throttled(throttled) => {
                if let Some(stats) = &self.stats {
                    stats.rejected().emit();
                }
                events::throttled(throttled);
            }
            Refusal::Unavailable(unavailable) => {
                if let Some(stats) = &self.stats {
                    stats.unavailable().emit();
                }
                events::unavailable(unavailable);
            }
        }
        refusal
    }

    /// The error of a request refused for `cause`, naming this limit.
    fn refusal(&self, cause: Cause, key: Option<Arc<str>>) -> Refusal {
        let mut limit = match &cause {
            Cause::NoFuel(retry_after) => Throttled::new(*retry_after),
            // The budget's own description, in this layer's terms.
            Cause::Down(down) => down.limit().clone(),
        }
        .with_scope(self.scope);
        if let Some(label) = &self.label {
            limit = limit.with_label(label.clone());
        }
        if let Some(key) = key {
            limit = limit.with_key(key);
        }
        match cause {
            Cause::NoFuel(_) => Refusal::Throttled(limit),
            Cause::Down(down) => Refusal::Unavailable(limit.unavailable(down.store())),
        }
    }

    /// A request has its fuel and goes to the inner service, after waiting
    /// `waited` for it (`wait_ended`'s figure), if it waited. Counted here,
    /// not when the wait ends: a request whose service is dropped before
    /// `call` was never admitted, and `waited` is a part of `admitted`.
    #[inline]
    pub(crate) fn admitted(&self, waited: Option<Duration>) {
        if let Some(stats) = &self.stats {
            if let Some(wait) = waited {
                stats.waited_for(wait);
            }
            stats.admitted().emit();
        }
    }

    /// Whether waits are timed: for the statistics, or for the events.
    #[inline]
    pub(crate) fn times_waits(&self) -> bool {
        cfg!(feature = "tracing") || self.stats.is_some()
    }

    /// The time a wait starts, if waits are timed: on the stats' clock, so
    /// that a test's `ManualClock` times them too.
    #[cold]
    pub(crate) fn wait_started(&self) -> Option<Instant> {
        if !self.times_waits() {
            return None;
        }
        Some(match &self.stats {
            Some(stats) => stats.now(),
            None => Instant::now(),
        })
    }

    /// A request that waited since `started` got its fuel: reports the wait
    /// and returns it, for [`admitted`](Policy::admitted) to count.
    #[cold]
    pub(crate) fn wait_ended(&self, started: Option<Instant>) -> Option<Duration> {
        let started = started?;
        let now = match &self.stats {
            Some(stats) => stats.now(),
            None => Instant::now(),
        };
        let wait = now.saturating_duration_since(started);
        events::waited(wait, self.long_wait, self.label.as_deref());
        Some(wait)
    }
}

/// A bound on the requests waiting at once, shared by every service of a
/// layer.
#[derive(Debug)]
pub(crate) struct Queue {
    limit: usize,
    waiting: AtomicUsize,
}

impl Queue {
    pub(crate) fn new(limit: usize) -> Queue {
        Queue {
            limit,
            waiting: AtomicUsize::new(0),
        }
    }

    /// A place in the queue, or `None` if it is full.
    pub(crate) fn enter(queue: &Arc<Queue>) -> Option<QueueSlot> {
        queue
            .waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |waiting| {
                (waiting < queue.limit).then_some(waiting + 1)
            })
            .ok()?;
        Some(QueueSlot(queue.clone()))
    }
}

/// One request's place among the waiting; dropped, it is free again.
#[derive(Debug)]
pub(crate) struct QueueSlot(Arc<Queue>);

impl Drop for QueueSlot {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::AcqRel);
    }
}
