//! The fuel gate both services share: acquire in `poll_ready`, spend in
//! `call`, emit.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use fueltank::{Acquire, Permit, Tank};

use crate::Throttled;
use crate::emit::{EmitOn, Emitter};

/// Wait for fuel, or shed the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Wait,
    Reject,
}

/// What a layer hands to each service it makes.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) tank: Tank,
    pub(crate) mode: Mode,
    pub(crate) emit_on: EmitOn,
    pub(crate) emitter: Emitter,
}

impl Config {
    pub(crate) fn new(tank: Tank) -> Config {
        Config {
            tank,
            mode: Mode::Wait,
            emit_on: EmitOn::Fuel,
            emitter: Emitter::default(),
        }
    }
}

/// One service's hold on the tank.
pub(crate) struct Gate {
    config: Config,
    /// The fuel taken by `poll_ready` for the next `call`.
    permit: Option<Permit>,
    /// The slow path's wait, boxed once per service and reused.
    acquire: Option<Pin<Box<Acquire>>>,
    /// Whether `acquire` holds a wait not yet resolved (a resolved
    /// `Acquire` must not be polled again).
    waiting: bool,
}

impl Gate {
    pub(crate) fn new(config: Config) -> Gate {
        Gate {
            config,
            permit: None,
            acquire: None,
            waiting: false,
        }
    }

    #[inline]
    pub(crate) fn tank(&self) -> &Tank {
        &self.config.tank
    }

    /// In wait mode, resolves once this service holds one fuel; in reject
    /// mode, at once.
    #[inline]
    pub(crate) fn poll_fuel(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.config.mode == Mode::Reject || self.permit.is_some() {
            return Poll::Ready(());
        }
        if !self.waiting {
            // Fast path: one compare-and-swap, no allocation.
            if let Some(permit) = self.config.tank.try_acquire() {
                self.permit = Some(permit);
                return Poll::Ready(());
            }
            self.start_wait();
        }
        self.poll_wait(cx)
    }

    /// Slow path: joins the tank's line, reusing this service's box.
    #[cold]
    fn start_wait(&mut self) {
        let acquire = self.config.tank.acquire();
        match &mut self.acquire {
            Some(slot) => slot.set(acquire),
            None => self.acquire = Some(Box::pin(acquire)),
        }
        self.waiting = true;
    }

    fn poll_wait(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let tank = &self.config.tank;
        let acquire = self.acquire.get_or_insert_with(|| Box::pin(tank.acquire()));
        let permit = ready!(acquire.as_mut().poll(cx));
        self.waiting = false;
        self.permit = Some(permit);
        Poll::Ready(())
    }

    /// Spends the fuel for one request: the permit taken by `poll_ready`,
    /// else (reject mode, or `call` without `poll_ready`) one fuel if there
    /// is one now. Emits if emission is at fuel time; returns the emitter
    /// to fire on success otherwise.
    #[inline]
    pub(crate) fn spend(&mut self) -> Result<Emitter, Throttled> {
        match self.permit.take() {
            Some(permit) => permit.spend(),
            None if self.config.tank.has_fuel() => {}
            None => return Err(self.throttled()),
        }
        Ok(match self.config.emit_on {
            EmitOn::Fuel => {
                self.config.emitter.emit();
                Emitter::default()
            }
            EmitOn::Success => self.config.emitter.clone(),
        })
    }

    #[cold]
    fn throttled(&self) -> Throttled {
        let tank = &self.config.tank;
        Throttled::new(tank.wait_time(1).unwrap_or_else(|| tank.rate().interval()))
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
            .field("emit_on", &self.config.emit_on)
            .field("holds_fuel", &self.permit.is_some())
            .field("waiting", &self.waiting)
            .finish()
    }
}
