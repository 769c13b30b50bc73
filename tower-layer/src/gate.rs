//! The fuel gate both unkeyed services share: acquire in `poll_ready`
//! (for at most `max_wait`, among at most `max_waiting` others), spend in
//! `call`, emit and count.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use fueltank::{BudgetWait, Fuel, Monitor};
use sync_wrapper::SyncFuture;

use crate::budget::{self, Shared};
use crate::error::Refusal;
use crate::layer::Limit;
use crate::policy::{Cause, Mode, Queue, QueueSlot};
use crate::service::Single;

/// What a layer hands to each service it makes, behind one `Arc`: a
/// service's clone (axum clones the route's service for every request)
/// costs one reference count, whatever the layer holds.
pub(crate) type Config<A> = Limit<Single, A>;

/// A wait in the budget's line (`Sync`, for the service to be).
type Wait = SyncFuture<BudgetWait>;

/// A wait not yet resolved: when it started (if waits are timed) and its
/// place among the waiting (if they are bounded).
#[derive(Debug)]
struct Waiting {
    started: Option<Instant>,
    _slot: Option<QueueSlot>,
}

/// One service's hold on the tank: what a [`ThrottleService`](crate::ThrottleService)
/// keeps (public only to be named there; nothing of it is).
pub struct Gate<A> {
    config: Arc<Config<A>>,
    /// Fuel taken by `poll_ready` for the next `call` (a token without a
    /// reference count): dropped, it is spent; the gate's `Drop` gives it
    /// back to the budget. A field of its own, apart from `shed`: an
    /// `Option<Fuel>` has no drop glue, so the take of the fast path is
    /// stored as it comes (in one enum with `Cause`, storing it cost 16
    /// instructions of copies, see `tower-layer/benches/callgrind.sh`).
    fuel: Option<Fuel>,
    /// The fuel could not come in time (or the line was full), or the
    /// budget's store is down: the next call is refused, for this cause
    /// (never while `fuel` is held).
    shed: Option<Cause>,
    /// The slow path's wait, while it is not resolved.
    wait: Option<Wait>,
    /// `Some` while `wait` holds a wait not yet resolved.
    waiting: Option<Waiting>,
    /// How long the wait for the fuel held lasted (if waits are timed):
    /// counted when `call` spends it, with the request.
    waited: Option<Duration>,
}

impl<A> Gate<A> {
    pub(crate) fn new(config: Arc<Config<A>>) -> Gate<A> {
        Gate {
            config,
            fuel: None,
            shed: None,
            wait: None,
            waiting: None,
            waited: None,
        }
    }

    #[inline]
    pub(crate) fn config(&self) -> &Config<A> {
        &self.config
    }

    #[inline]
    pub(crate) fn budget(&self) -> Option<&Shared> {
        self.config.side.budget.as_ref()
    }

    /// In wait mode, resolves once this service holds one fuel, or knows
    /// its next call is shed; in reject mode, or without a tank, at once.
    #[inline]
    pub(crate) fn poll_fuel(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.fuel.is_some() || self.shed.is_some() {
            return Poll::Ready(());
        }
        if self.config.policy.mode == Mode::Reject {
            return self.poll_ask(cx);
        }
        let Some(budget) = &self.config.side.budget else {
            return Poll::Ready(());
        };
        if self.waiting.is_none() {
            // Fast path: for a tank, one compare-and-swap, no allocation.
            self.fuel = budget.try_take(1);
            if self.fuel.is_some() {
                return Poll::Ready(());
            }
            if self.config.policy.shadow {
                // Never waits: `call` lets the request through, counted.
                self.shed = Some(self.cause());
                return Poll::Ready(());
            }
            if !self.start_wait() {
                return Poll::Ready(());
            }
        }
        self.poll_wait(cx)
    }

    /// Reject mode: nothing to wait for (`call` takes the fuel), except
    /// the budget's answer when only its store can tell whether there is
    /// fuel (see [`Budget::ask`]).
    ///
    /// [`Budget::ask`]: fueltank::Budget::ask
    #[inline]
    fn poll_ask(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(budget) = &self.config.side.budget else {
            return Poll::Ready(());
        };
        if self.waiting.is_none() {
            if self.config.policy.shadow {
                return Poll::Ready(());
            }
            let Some(ask) = budget.ask(1) else {
                return Poll::Ready(());
            };
            self.wait = Some(SyncFuture::new(ask));
            self.waiting = Some(Waiting {
                started: None,
                _slot: None,
            });
        }
        self.poll_wait(cx)
    }

    /// Slow path: joins the tank's line, reusing this service's box; or,
    /// if the line is full, holds the shed. Whether it joined.
    #[cold]
    fn start_wait(&mut self) -> bool {
        let Some(budget) = &self.config.side.budget else {
            return false;
        };
        let policy = &self.config.policy;
        let slot = match &policy.queue {
            Some(queue) => match Queue::enter(queue) {
                Some(slot) => Some(slot),
                None => {
                    self.shed = Some(budget::cause(&**budget));
                    return false;
                }
            },
            None => None,
        };
        // The timeout counts from here; a line that cannot be served in
        // time resolves at its first poll, without waiting.
        self.wait = Some(SyncFuture::new(budget.wait(1, policy.max_wait)));
        self.waiting = Some(Waiting {
            started: policy.wait_started(),
            _slot: slot,
        });
        true
    }

    fn poll_wait(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(wait) = &mut self.wait else {
            // Not reached: `start_wait` boxed a wait (there is a tank).
            return Poll::Ready(());
        };
        let outcome = ready!(Pin::new(wait).poll(cx));
        self.wait = None;
        let waiting = self.waiting.take();
        match outcome {
            Ok(Some(fuel)) => self.fuel = Some(fuel),
            // Not in time, or (one fuel beyond a budget's capacity) never.
            Ok(None) | Err(_) => {
                self.shed = Some(self.cause());
                return Poll::Ready(());
            }
        }
        self.waited = self
            .config
            .policy
            .wait_ended(waiting.and_then(|waiting| waiting.started));
        Poll::Ready(())
    }

    /// Spends the fuel for one request: the fuel taken by `poll_ready`,
    /// else (reject mode, or `call` without `poll_ready`) one fuel if there
    /// is one now. Emits if emission is at fuel time; returns the monitor
    /// to emit on success otherwise.
    #[inline]
    pub(crate) fn spend(&mut self) -> Result<Option<Monitor>, Refusal> {
        let waited = self.waited.take();
        if let Some(fuel) = self.fuel.take() {
            fuel.spend();
        } else if let Some(cause) = self.shed.take() {
            self.shed(cause)?;
        } else {
            let fueled = match &self.config.side.budget {
                None => true,
                Some(budget) => budget.take(1),
            };
            if !fueled {
                self.shed(self.cause())?;
            }
        }
        let policy = &self.config.policy;
        policy.admitted(waited);
        Ok(policy.emission.fueled())
    }

    /// Why there is no fuel now (a `Throttle` without a tank always has).
    #[cold]
    fn cause(&self) -> Cause {
        match &self.config.side.budget {
            Some(budget) => budget::cause(&**budget),
            None => Cause::NoFuel(Duration::ZERO),
        }
    }

    /// The request finds no fuel: refused, or in shadow mode let through
    /// without any.
    #[cold]
    fn shed(&self, cause: Cause) -> Result<(), Refusal> {
        let policy = &self.config.policy;
        if policy.shadow {
            policy.shadowed(cause, None);
            return Ok(());
        }
        Err(policy.refuse(cause, None))
    }
}

impl<A> Drop for Gate<A> {
    /// Fuel held for a `call` that never came goes back to the budget (for
    /// a tank, to the head of its line, if anyone waits).
    fn drop(&mut self) {
        if let (Some(fuel), Some(budget)) = (self.fuel.take(), &self.config.side.budget) {
            budget.give_back(fuel);
        }
    }
}

impl<A> Clone for Gate<A> {
    /// Shares the tank; the clone starts without fuel and without a wait.
    fn clone(&self) -> Gate<A> {
        Gate::new(self.config.clone())
    }
}

impl<A> fmt::Debug for Gate<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gate")
            .field("budget", &self.config.side.budget)
            .field("policy", &self.config.policy)
            .field("fuel", &self.fuel)
            .field("shed", &self.shed)
            .field("waiting", &self.waiting.is_some())
            .finish()
    }
}
