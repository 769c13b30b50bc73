//! Why a layer refused a request: fueltank's [`Throttled`] (no fuel in
//! time) or [`Unavailable`] (its budget's store is down), each naming the
//! limit ([`Scope`], label, key).

pub(crate) use fueltank::Scope;
use fueltank::{Throttled, Unavailable};

/// Why a layer refused a request: no fuel in time, or the store down.
#[derive(Debug)]
pub enum Refusal {
    Throttled(Throttled),
    Unavailable(Unavailable),
}

impl Refusal {
    /// The error the plain services fail with.
    pub(crate) fn boxed(self) -> tower::BoxError {
        match self {
            Refusal::Throttled(throttled) => Box::new(throttled),
            Refusal::Unavailable(unavailable) => Box::new(unavailable),
        }
    }
}
