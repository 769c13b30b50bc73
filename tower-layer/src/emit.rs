//! Emission: a request counted by a statistics [`Monitor`].
//!
//! The layer emits through the monitor directly (no closure, no extra
//! reference count on the fuel-time path). It never goes through a
//! `Throttle`'s fuel methods, so a throttle's `auto_emit` cannot count a
//! request a second time: each request let through is emitted once, by the
//! layer.

use fueltank::Monitor;

/// When the layer emits: see [`ThrottleLayer::emit_on`](crate::ThrottleLayer::emit_on).
///
/// # Examples
///
/// ```
/// use fueltank::{Rate, Throttle};
/// use fueltank_tower::{EmitOn, ThrottleLayer};
///
/// let throttle = Throttle::builder(Rate::per_second(10)?).build()?;
/// let layer = ThrottleLayer::new(throttle).emit_on(EmitOn::Success);
/// # let _ = layer;
/// # Ok::<(), fueltank::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum EmitOn {
    /// When the request takes its fuel, in `call` (the default).
    #[default]
    Fuel,
    /// When the inner service's response future resolves to `Ok`: an
    /// emission counts work finished. Failed or dropped requests are not
    /// counted.
    Success,
}

/// Where and when a layer's services emit.
#[derive(Debug, Clone, Default)]
pub(crate) struct Emission {
    pub(crate) monitor: Option<Monitor>,
    pub(crate) on: EmitOn,
}

impl Emission {
    /// A request has its fuel: emits now ([`EmitOn::Fuel`]), or returns
    /// the monitor to emit on when the response succeeds
    /// ([`EmitOn::Success`]). Without a monitor, nothing.
    #[inline]
    pub(crate) fn fueled(&self) -> Option<Monitor> {
        let monitor = self.monitor.as_ref()?;
        match self.on {
            EmitOn::Fuel => {
                monitor.emit();
                None
            }
            EmitOn::Success => Some(monitor.clone()),
        }
    }
}

/// The response succeeded: emit if asked to. Taken, so that a future
/// polled again emits only once.
#[inline]
pub(crate) fn succeeded(on_success: &mut Option<Monitor>) {
    if let Some(monitor) = on_success.take() {
        monitor.emit();
    }
}
