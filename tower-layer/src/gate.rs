//! The fuel gate both unkeyed services share: acquire in `poll_ready`,
//! spend in `call`, emit.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use fueltank::{Acquire, Fuel, Monitor, Tank};

use crate::Throttled;
use crate::emit::Emission;

/// Wait for fuel, or shed the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Wait,
    Reject,
}

/// What a layer hands to each service it makes, behind one `Arc`: a
/// service's clone (axum clones the route's service for every request)
/// costs one reference count, whatever the layer holds.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    /// `None`: a `Throttle` without a tank, fuel is unlimited.
    pub(crate) tank: Option<Tank>,
    pub(crate) mode: Mode,
    pub(crate) emission: Emission,
    /// The HTTP layer's headers (unused by the plain layer).
    #[cfg(feature = "http")]
    pub(crate) headers: crate::http::Headers,
}

impl Config {
    pub(crate) fn new(tank: Option<Tank>, monitor: Option<Monitor>) -> Config {
        Config {
            tank,
            mode: Mode::Wait,
            emission: Emission {
                monitor,
                on: Default::default(),
            },
            #[cfg(feature = "http")]
            headers: crate::http::Headers::default(),
        }
    }
}

/// One service's hold on the tank.
pub(crate) struct Gate {
    config: Arc<Config>,
    /// The fuel taken by `poll_ready` for the next `call`: a 16-byte token
    /// without a reference count; dropped, it is spent; the gate's `Drop`
    /// gives it back.
    fuel: Option<Fuel>,
    /// The slow path's wait, boxed once per service and reused.
    acquire: Option<Pin<Box<Acquire>>>,
    /// Whether `acquire` holds a wait not yet resolved (a resolved
    /// `Acquire` must not be polled again).
    waiting: bool,
}

impl Gate {
    pub(crate) fn new(config: Arc<Config>) -> Gate {
        Gate {
            config,
            fuel: None,
            acquire: None,
            waiting: false,
        }
    }

    #[cfg(feature = "http")]
    #[inline]
    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    #[inline]
    pub(crate) fn tank(&self) -> Option<&Tank> {
        self.config.tank.as_ref()
    }

    /// In wait mode, resolves once this service holds one fuel; in reject
    /// mode, or without a tank, at once.
    #[inline]
    pub(crate) fn poll_fuel(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.config.mode == Mode::Reject || self.fuel.is_some() {
            return Poll::Ready(());
        }
        let Some(tank) = &self.config.tank else {
            return Poll::Ready(());
        };
        if !self.waiting {
            // Fast path: one compare-and-swap, no allocation, no refcount.
            if let Some(fuel) = tank.try_take() {
                self.fuel = Some(fuel);
                return Poll::Ready(());
            }
            self.start_wait();
        }
        self.poll_wait(cx)
    }

    /// Slow path: joins the tank's line, reusing this service's box.
    #[cold]
    fn start_wait(&mut self) {
        let Some(tank) = &self.config.tank else {
            return;
        };
        let acquire = tank.acquire();
        match &mut self.acquire {
            Some(slot) => slot.set(acquire),
            None => self.acquire = Some(Box::pin(acquire)),
        }
        self.waiting = true;
    }

    fn poll_wait(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(acquire) = &mut self.acquire else {
            // Not reached: `start_wait` boxed a wait (there is a tank).
            return Poll::Ready(());
        };
        let permit = ready!(acquire.as_mut().poll(cx));
        self.waiting = false;
        self.fuel = Some(permit.into_fuel());
        Poll::Ready(())
    }

    /// Spends the fuel for one request: the fuel taken by `poll_ready`,
    /// else (reject mode, or `call` without `poll_ready`) one fuel if there
    /// is one now. Emits if emission is at fuel time; returns the monitor
    /// to emit on success otherwise.
    #[inline]
    pub(crate) fn spend(&mut self) -> Result<Option<Monitor>, Throttled> {
        match self.fuel.take() {
            Some(fuel) => fuel.spend(),
            None => match &self.config.tank {
                Some(tank) if !tank.has_fuel() => return Err(throttled(tank)),
                _ => {}
            },
        }
        Ok(self.config.emission.fueled())
    }
}

#[cold]
fn throttled(tank: &Tank) -> Throttled {
    Throttled::new(tank.wait_time(1).unwrap_or_else(|| tank.rate().interval()))
}

impl Drop for Gate {
    /// Fuel held for a `call` that never came goes back to the tank (to the
    /// head of its line, if anyone waits).
    fn drop(&mut self) {
        if let (Some(fuel), Some(tank)) = (self.fuel.take(), &self.config.tank) {
            tank.refund(fuel);
        }
    }
}

impl Clone for Gate {
    /// Shares the tank; the clone starts without fuel and without a wait.
    fn clone(&self) -> Gate {
        Gate::new(self.config.clone())
    }
}

impl fmt::Debug for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gate")
            .field("tank", &self.config.tank)
            .field("mode", &self.config.mode)
            .field("emission", &self.config.emission)
            .field("holds_fuel", &self.fuel.is_some())
            .field("waiting", &self.waiting)
            .finish()
    }
}
