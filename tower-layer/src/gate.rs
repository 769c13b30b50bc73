//! The fuel gate both unkeyed services share: acquire in `poll_ready`
//! (for at most `max_wait`, among at most `max_waiting` others), spend in
//! `call`, emit and count.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use fueltank::{Acquire, AwaitFuelTimeout, Fuel, Monitor, Tank};
use pin_project_lite::pin_project;
use sync_wrapper::SyncFuture;

use crate::budget::{BudgetWait, Source};
use crate::error::{Refusal, Scope};
use crate::policy::{Cause, Mode, Policy, Queue, QueueSlot};

/// What a layer hands to each service it makes, behind one `Arc`: a
/// service's clone (axum clones the route's service for every request)
/// costs one reference count, whatever the layer holds.
///
/// `R` is what the HTTP layer answers a shed request with (nothing for
/// the plain layer).
#[derive(Debug, Clone)]
pub(crate) struct Config<R = ()> {
    /// `None`: a `Throttle` without a tank, fuel is unlimited.
    pub(crate) tank: Option<Source>,
    pub(crate) policy: Policy,
    /// The HTTP layer's headers (unused by the plain layer).
    #[cfg(feature = "http")]
    pub(crate) headers: crate::http::Headers,
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    pub(crate) respond: R,
}

impl Config {
    pub(crate) fn new(tank: Option<Source>, monitor: Option<Monitor>) -> Config {
        let mut policy = Policy::new(Scope::Global);
        policy.emission.monitor = monitor;
        Config {
            tank,
            policy,
            #[cfg(feature = "http")]
            headers: crate::http::Headers::default(),
            respond: (),
        }
    }
}

#[cfg(feature = "http")]
impl<R> Config<R> {
    /// The same configuration, answering refused requests with what
    /// `change` makes of its answers.
    pub(crate) fn map_respond<T>(self, change: impl FnOnce(R) -> T) -> Config<T> {
        Config {
            tank: self.tank,
            policy: self.policy,
            headers: self.headers,
            respond: change(self.respond),
        }
    }
}

/// What a service holds for its next `call`.
#[derive(Debug)]
enum Held {
    Nothing,
    /// Fuel taken by `poll_ready` (a 16-byte token without a reference
    /// count): dropped, it is spent; the gate's `Drop` gives it back.
    Fuel(Fuel),
    /// Fuel taken by a timed wait, which hands out no token, or from a
    /// [`Budget`](crate::Budget): it cannot be given back.
    Taken,
    /// The fuel could not come in time (or the line was full), or the
    /// budget's store is down: the next call is refused, for this cause.
    Shed(Cause),
}

pin_project! {
    /// A wait in the tank's line: for as long as it takes, or bounded by
    /// `max_wait`.
    #[project = WaitProj]
    enum Wait {
        Untimed { #[pin] acquire: Acquire },
        Timed { #[pin] timed: AwaitFuelTimeout },
        Budget { wait: SyncFuture<BudgetWait> },
    }
}

/// How a wait ended.
enum Outcome {
    Fuel(Fuel),
    Taken,
    TimedOut,
}

impl Future for Wait {
    type Output = Outcome;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome> {
        Poll::Ready(match self.project() {
            WaitProj::Untimed { acquire } => Outcome::Fuel(ready!(acquire.poll(cx)).into_fuel()),
            WaitProj::Timed { timed } => match ready!(timed.poll(cx)) {
                true => Outcome::Taken,
                false => Outcome::TimedOut,
            },
            WaitProj::Budget { wait } => match ready!(Pin::new(wait).poll(cx)) {
                true => Outcome::Taken,
                false => Outcome::TimedOut,
            },
        })
    }
}

/// A wait not yet resolved: when it started (if waits are timed) and its
/// place among the waiting (if they are bounded).
#[derive(Debug)]
struct Waiting {
    started: Option<Instant>,
    _slot: Option<QueueSlot>,
}

/// One service's hold on the tank.
pub(crate) struct Gate<R = ()> {
    config: Arc<Config<R>>,
    held: Held,
    /// The slow path's wait, boxed once per service and reused.
    wait: Option<Pin<Box<Wait>>>,
    /// `Some` while `wait` holds a wait not yet resolved (a resolved one
    /// must not be polled again).
    waiting: Option<Waiting>,
    /// How long the wait for the fuel held lasted (if waits are timed):
    /// counted when `call` spends it, with the request.
    waited: Option<Duration>,
}

impl<R> Gate<R> {
    pub(crate) fn new(config: Arc<Config<R>>) -> Gate<R> {
        Gate {
            config,
            held: Held::Nothing,
            wait: None,
            waiting: None,
            waited: None,
        }
    }

    #[cfg(feature = "http")]
    #[inline]
    pub(crate) fn config(&self) -> &Config<R> {
        &self.config
    }

    /// The fueltank tank drawn on, if it is one.
    #[inline]
    pub(crate) fn tank(&self) -> Option<&Tank> {
        self.config.tank.as_ref()?.tank()
    }

    #[cfg(feature = "http")]
    #[inline]
    pub(crate) fn source(&self) -> Option<&Source> {
        self.config.tank.as_ref()
    }

    /// In wait mode, resolves once this service holds one fuel, or knows
    /// its next call is shed; in reject mode, or without a tank, at once.
    #[inline]
    pub(crate) fn poll_fuel(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if !matches!(self.held, Held::Nothing) {
            return Poll::Ready(());
        }
        if self.config.policy.mode == Mode::Reject {
            return self.poll_ask(cx);
        }
        let Some(source) = &self.config.tank else {
            return Poll::Ready(());
        };
        if self.waiting.is_none() {
            // Fast path: one compare-and-swap, no allocation, no refcount.
            match source {
                Source::Tank(tank) => {
                    if let Some(fuel) = tank.try_take() {
                        self.held = Held::Fuel(fuel);
                        return Poll::Ready(());
                    }
                }
                Source::Budget(budget) => {
                    if budget.try_take() {
                        self.held = Held::Taken;
                        return Poll::Ready(());
                    }
                }
            }
            if !self.start_wait() {
                return Poll::Ready(());
            }
        }
        self.poll_wait(cx)
    }

    /// Reject mode: nothing to wait for, except a budget's answer when it
    /// cannot tell here whether there is fuel (see [`Budget::ask`]).
    ///
    /// [`Budget::ask`]: crate::Budget::ask
    fn poll_ask(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(Source::Budget(budget)) = &self.config.tank else {
            return Poll::Ready(());
        };
        if self.waiting.is_none() {
            if budget.try_take() {
                self.held = Held::Taken;
                return Poll::Ready(());
            }
            let Some(ask) = budget.ask() else {
                return Poll::Ready(());
            };
            let wait = Wait::Budget {
                wait: SyncFuture::new(ask),
            };
            match &mut self.wait {
                Some(boxed) => boxed.set(wait),
                None => self.wait = Some(Box::pin(wait)),
            }
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
        let Some(source) = &self.config.tank else {
            return false;
        };
        let policy = &self.config.policy;
        let slot = match &policy.queue {
            Some(queue) => match Queue::enter(queue) {
                Some(slot) => Some(slot),
                None => {
                    self.held = Held::Shed(source.cause());
                    return false;
                }
            },
            None => None,
        };
        let wait = match (source, policy.max_wait) {
            (Source::Tank(tank), None) => Wait::Untimed {
                acquire: tank.acquire(),
            },
            // The timeout counts from here; a line that cannot be served
            // in time resolves at its first poll, without waiting.
            (Source::Tank(tank), Some(max_wait)) => Wait::Timed {
                timed: tank.await_fuel_timeout(max_wait),
            },
            (Source::Budget(budget), max_wait) => Wait::Budget {
                wait: SyncFuture::new(budget.wait(max_wait)),
            },
        };
        match &mut self.wait {
            Some(boxed) => boxed.set(wait),
            None => self.wait = Some(Box::pin(wait)),
        }
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
        let outcome = ready!(wait.as_mut().poll(cx));
        let waiting = self.waiting.take();
        match outcome {
            Outcome::Fuel(fuel) => self.held = Held::Fuel(fuel),
            Outcome::Taken => self.held = Held::Taken,
            Outcome::TimedOut => {
                let source = self.config.tank.as_ref();
                self.held = Held::Shed(source.map_or(Cause::NoFuel(Duration::ZERO), Source::cause));
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
        match std::mem::replace(&mut self.held, Held::Nothing) {
            Held::Fuel(fuel) => fuel.spend(),
            Held::Taken => {}
            Held::Shed(cause) => return Err(self.shed(cause)),
            Held::Nothing => {
                let fueled = match &self.config.tank {
                    None => true,
                    Some(Source::Tank(tank)) => tank.has_fuel(),
                    Some(Source::Budget(budget)) => budget.try_take(),
                };
                if !fueled {
                    let source = self.config.tank.as_ref();
                    return Err(
                        self.shed(source.map_or(Cause::NoFuel(Duration::ZERO), Source::cause))
                    );
                }
            }
        }
        let policy = &self.config.policy;
        policy.admitted(waited);
        Ok(policy.emission.fueled())
    }

    #[cold]
    fn shed(&self, cause: Cause) -> Refusal {
        self.config.policy.refuse(cause, None)
    }
}

impl<R> Drop for Gate<R> {
    /// Fuel held for a `call` that never came goes back to the tank (to the
    /// head of its line, if anyone waits).
    fn drop(&mut self) {
        if let (Held::Fuel(fuel), Some(Source::Tank(tank))) = (
            std::mem::replace(&mut self.held, Held::Nothing),
            &self.config.tank,
        ) {
            tank.refund(fuel);
        }
    }
}

impl<R> Clone for Gate<R> {
    /// Shares the tank; the clone starts without fuel and without a wait.
    fn clone(&self) -> Gate<R> {
        Gate::new(self.config.clone())
    }
}

impl<R> fmt::Debug for Gate<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gate")
            .field("tank", &self.config.tank)
            .field("policy", &self.config.policy)
            .field("held", &self.held)
            .field("waiting", &self.waiting.is_some())
            .finish()
    }
}
