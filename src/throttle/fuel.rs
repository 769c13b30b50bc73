//! [`ThrottleFuel`]: a tank's waiting future with the throttle's
//! emit-on-take rule.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;

use crate::{Error, Fuel, Monitor};

pin_project! {
    /// The future of a [`Throttle`](crate::Throttle)'s waiting methods: the
    /// tank's future `F` ([`AwaitFuel`](crate::AwaitFuel),
    /// [`AwaitFuelN`](crate::AwaitFuelN) or
    /// [`AwaitFuelTimeout`](crate::AwaitFuelTimeout)), whose output it
    /// resolves to, and with `auto_emit` the emission of the fuel it took.
    /// Without a tank it resolves at once, as if the fuel was taken.
    ///
    /// # Cancel safety
    ///
    /// As for the tank's future: dropping it loses no fuel and stalls no
    /// one; nothing is emitted for a future dropped before it resolved.
    #[must_use = "futures do nothing unless polled"]
    #[derive(Debug)]
    pub struct ThrottleFuel<F> {
        #[pin]
        wait: Option<F>,
        n: u64,
        emit: Option<Monitor>,
    }
}

impl<F> ThrottleFuel<F> {
    pub(crate) fn new(wait: Option<F>, n: u64, emit: Option<Monitor>) -> ThrottleFuel<F> {
        ThrottleFuel { wait, n, emit }
    }
}

/// What a tank's waiting future resolves to: whether the fuel was taken,
/// and the value of a take without a tank. Implemented for the outputs of
/// the tank's futures only.
pub trait Taken {
    /// Whether the fuel was taken.
    fn taken(&self) -> bool;
    /// The output when there is no tank: the `n` fuel are unlimited.
    fn unlimited(n: u64) -> Self;
}

impl Taken for () {
    fn taken(&self) -> bool {
        true
    }
    fn unlimited(_: u64) {}
}

impl Taken for bool {
    fn taken(&self) -> bool {
        *self
    }
    fn unlimited(_: u64) -> bool {
        true
    }
}

impl Taken for Result<(), Error> {
    fn taken(&self) -> bool {
        self.is_ok()
    }
    fn unlimited(_: u64) -> Result<(), Error> {
        Ok(())
    }
}

/// A wait through [`Budget`](crate::Budget).
impl Taken for Result<Option<Fuel>, Error> {
    fn taken(&self) -> bool {
        matches!(self, Ok(Some(_)))
    }
    fn unlimited(n: u64) -> Result<Option<Fuel>, Error> {
        Ok(Some(Fuel::taken(n)))
    }
}

impl<F: Future<Output: Taken>> Future for ThrottleFuel<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let output = match this.wait.as_pin_mut() {
            Some(wait) => ready!(wait.poll(cx)),
            None => F::Output::unlimited(*this.n),
        };
        if output.taken()
            && let Some(monitor) = this.emit.take()
        {
            monitor.emit_n(*this.n);
        }
        Poll::Ready(output)
    }
}
