//! What the layers draw on: any [`Budget`] or [`KeyedBudget`] of
//! `fueltank` (its tanks, `fueltank-redis`'s, your own), behind one
//! pointer, and what the layers read of them when a request finds no fuel.

use std::any::Any;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use fueltank::{Budget, Error, Fuel, KeyedBudget, KeyedTank, Tank};

use crate::key::KeyError;
use crate::policy::Cause;

/// The budget of an unkeyed layer, shared by its services: any
/// [`Budget`], used only through the trait. A fueltank [`Tank`] is held as
/// itself, so that the take of every request is a direct, inlined call
/// rather than one through the vtable (in `benches/layer.rs`, wait mode
/// over `Arc<dyn Budget>` alone cost about 14 ns more per request).
#[derive(Debug, Clone)]
pub enum Shared {
    Tank(Tank),
    Other(Arc<dyn Budget>),
}

impl Shared {
    pub(crate) fn new(budget: impl Budget) -> Shared {
        match (&budget as &dyn Any).downcast_ref::<Tank>() {
            Some(tank) => Shared::Tank(tank.clone()),
            None => Shared::Other(Arc::new(budget)),
        }
    }

    /// [`Budget::try_take`], the take of wait mode. Always inlined: as
    /// a call, its `Option<Fuel>` comes back through memory and the tank's
    /// take is not inlined into the request, as the compiler chose in
    /// `benches/layer.rs` (16 more instructions per request there).
    #[inline(always)]
    pub(crate) fn try_take(&self, n: u64) -> Option<Fuel> {
        match self {
            Shared::Tank(tank) => Budget::try_take(tank, n),
            Shared::Other(budget) => budget.try_take(n),
        }
    }

    /// [`Budget::take`], the take of reject mode (always inlined, as
    /// `try_take`).
    #[inline(always)]
    pub(crate) fn take(&self, n: u64) -> bool {
        match self {
            Shared::Tank(tank) => Budget::take(tank, n),
            Shared::Other(budget) => budget.take(n),
        }
    }

    /// [`Budget::ask`], before the take of reject mode (a tank has no
    /// store to ask).
    #[inline]
    pub(crate) fn ask(&self, n: u64) -> Option<fueltank::BudgetWait> {
        match self {
            Shared::Tank(_) => None,
            Shared::Other(budget) => budget.ask(n),
        }
    }
}

impl Deref for Shared {
    type Target = dyn Budget;

    fn deref(&self) -> &dyn Budget {
        match self {
            Shared::Tank(tank) => tank,
            Shared::Other(budget) => &**budget,
        }
    }
}

/// The budget of a keyed layer, shared by its services.
pub(crate) type KeyedShared<K> = Arc<dyn KeyedBudget<K>>;

/// The fueltank tank under `budget`, if it is one (for the accessors and
/// the HTTP headers, never to take fuel).
pub(crate) fn tank(budget: &Shared) -> Option<&Tank> {
    match budget {
        Shared::Tank(tank) => Some(tank),
        Shared::Other(_) => None,
    }
}

/// The fueltank keyed tank under `keyed`, if it is one.
pub(crate) fn keyed_tank<K: 'static>(keyed: &KeyedShared<K>) -> Option<&KeyedTank<K>> {
    (&**keyed as &dyn Any).downcast_ref()
}

/// A newcomer's wait for one fuel: the `Retry-After` of a shed request.
/// While it is unknown (a paused tank), one interval.
#[cold]
pub(crate) fn retry_after(budget: &dyn Budget) -> Duration {
    budget
        .wait_time(1)
        .unwrap_or_else(|| budget.rate().interval())
}

/// Why a request finds no fuel now: the budget's store is down, or there
/// is none in time.
#[cold]
pub(crate) fn cause(budget: &dyn Budget) -> Cause {
    match budget.unavailable() {
        Some(unavailable) => Cause::Down(unavailable),
        None => Cause::NoFuel(retry_after(budget)),
    }
}

/// Why a request for `n` fuel of `key` finds none now: the budget's store
/// is down, or there is none in time (to retry after `retry_after`, by
/// default `key`'s wait for the `n` fuel, or one interval if unknown).
#[cold]
pub(crate) fn keyed_cause<K: 'static>(
    keyed: &dyn KeyedBudget<K>,
    key: &K,
    n: u64,
    retry_after: Option<Duration>,
) -> Cause {
    if let Some(unavailable) = keyed.unavailable(key) {
        return Cause::Down(unavailable);
    }
    Cause::NoFuel(retry_after.unwrap_or_else(|| {
        keyed
            .wait_time(key, n)
            .unwrap_or_else(|| keyed.rate().interval())
    }))
}

/// A key the budget cannot hold, as the request's [`KeyError`] (a `400`
/// over HTTP), saying why.
#[cold]
pub(crate) fn key_refused(error: Error) -> KeyError {
    match error {
        Error::InvalidKey { reason } => KeyError::Other(reason),
        error => KeyError::Other(error.to_string()),
    }
}
