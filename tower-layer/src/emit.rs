//! The one seam through which the layer reports emissions.
//!
//! An emission is "one request did its work", counted by a statistics
//! monitor. Today the layer is built over a bare `Tank`, which has no
//! monitor, so the emitter is empty. When `fueltank::Throttle` lands on
//! main, `ThrottleLayer::new(throttle)` is `from_tank` plus:
//!
//! ```text
//! if let Some(monitor) = throttle.monitor().cloned() {
//!     config.emitter = Emitter::from_fn(move || monitor.emit());
//! }
//! ```
//!
//! (On the branch where it is being written, `Throttle::tank()` returns
//! `Option<&Tank>`: a throttle without a tank means unlimited fuel, which
//! `Gate` will then need as a case of its own.)

use std::fmt;
use std::sync::Arc;

/// When the layer emits: see [`ThrottleLayer::emit_on`](crate::ThrottleLayer::emit_on).
///
/// # Examples
///
/// ```
/// use fueltank::{Rate, Tank};
/// use fueltank_tower::{EmitOn, ThrottleLayer};
///
/// let layer = ThrottleLayer::from_tank(Tank::new(Rate::per_second(10)?))
///     .emit_on(EmitOn::Success);
/// # let _ = layer;
/// # Ok::<(), fueltank::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum EmitOn {
    /// When the request takes its fuel, in `call` (the default).
    #[default]
    Fuel,
    /// When the inner service's response future resolves to `Ok`: the
    /// seed's "emit after the work finished". Failed or dropped requests
    /// are not counted.
    Success,
}

/// Reports one emission; empty (a no-op) when there is no monitor.
#[derive(Clone, Default)]
pub(crate) struct Emitter(Option<Arc<dyn Fn() + Send + Sync>>);

impl Emitter {
    /// An emitter that calls `f` once per emission.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn from_fn(f: impl Fn() + Send + Sync + 'static) -> Emitter {
        Emitter(Some(Arc::new(f)))
    }

    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    #[inline]
    pub(crate) fn emit(&self) {
        if let Some(f) = &self.0 {
            f();
        }
    }
}

impl fmt::Debug for Emitter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.is_empty() {
            "Emitter(none)"
        } else {
            "Emitter(..)"
        })
    }
}
