//! The futures of a [`Throttle`](crate::Throttle)'s fuel methods: the
//! tank's futures, plus the emission when `auto_emit` is on.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;

use crate::{AwaitFuel, AwaitFuelN, AwaitFuelTimeout, Error, Monitor};

pin_project! {
    /// The future of [`Throttle::await_fuel`](crate::Throttle::await_fuel):
    /// resolves once one fuel has been taken (at once without a tank), and
    /// emits it when `auto_emit` is on.
    ///
    /// # Cancel safety
    ///
    /// As for [`AwaitFuel`]: dropping it loses no fuel and stalls no one;
    /// nothing is emitted for a future dropped before it resolved.
    #[must_use = "futures do nothing unless polled"]
    #[derive(Debug)]
    pub struct ThrottleFuel {
        #[pin]
        wait: Option<AwaitFuel>,
        emit: Option<Monitor>,
    }
}

impl ThrottleFuel {
    pub(crate) fn new(wait: Option<AwaitFuel>, emit: Option<Monitor>) -> ThrottleFuel {
        ThrottleFuel { wait, emit }
    }
}

impl Future for ThrottleFuel {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        if let Some(wait) = this.wait.as_pin_mut() {
            ready!(wait.poll(cx));
        }
        if let Some(monitor) = this.emit.take() {
            monitor.emit();
        }
        Poll::Ready(())
    }
}

pin_project! {
    /// The future of
    /// [`Throttle::await_fuel_n`](crate::Throttle::await_fuel_n): resolves
    /// once `n` fuel have been taken together, or with
    /// [`Error::ExceedsCapacity`], and emits `n` times when `auto_emit` is
    /// on.
    ///
    /// # Cancel safety
    ///
    /// As for [`AwaitFuelN`]: nothing is lost, nothing is stalled, nothing
    /// is emitted before it resolves.
    #[must_use = "futures do nothing unless polled"]
    #[derive(Debug)]
    pub struct ThrottleFuelN {
        #[pin]
        wait: Option<AwaitFuelN>,
        n: u64,
        emit: Option<Monitor>,
    }
}

impl ThrottleFuelN {
    pub(crate) fn new(wait: Option<AwaitFuelN>, n: u64, emit: Option<Monitor>) -> ThrottleFuelN {
        ThrottleFuelN { wait, n, emit }
    }
}

impl Future for ThrottleFuelN {
    type Output = Result<(), Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let this = self.project();
        if let Some(wait) = this.wait.as_pin_mut() {
            ready!(wait.poll(cx))?;
        }
        if let Some(monitor) = this.emit.take() {
            monitor.emit_n(*this.n);
        }
        Poll::Ready(Ok(()))
    }
}

pin_project! {
    /// The future of
    /// [`Throttle::await_fuel_timeout`](crate::Throttle::await_fuel_timeout):
    /// resolves to whether one fuel was taken before the timeout, and emits
    /// it when `auto_emit` is on.
    ///
    /// # Cancel safety
    ///
    /// As for [`AwaitFuelTimeout`]: nothing is lost, nothing is stalled,
    /// nothing is emitted before it resolves.
    #[must_use = "futures do nothing unless polled"]
    #[derive(Debug)]
    pub struct ThrottleFuelTimeout {
        #[pin]
        wait: Option<AwaitFuelTimeout>,
        emit: Option<Monitor>,
    }
}

impl ThrottleFuelTimeout {
    pub(crate) fn new(
        wait: Option<AwaitFuelTimeout>,
        emit: Option<Monitor>,
    ) -> ThrottleFuelTimeout {
        ThrottleFuelTimeout { wait, emit }
    }
}

impl Future for ThrottleFuelTimeout {
    type Output = bool;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool> {
        let this = self.project();
        let taken = match this.wait.as_pin_mut() {
            Some(wait) => ready!(wait.poll(cx)),
            None => true,
        };
        if let Some(monitor) = this.emit.take()
            && taken
        {
            monitor.emit();
        }
        Poll::Ready(taken)
    }
}
