//! Where the tanks' drivers run: the runtime the store was connected on.

use std::future::Future;

/// Spawns the drivers of a store's tanks.
///
/// Captured when the store connects: a tokio runtime's handle when
/// connecting from inside one (feature `tokio`), else smol's global
/// executor (feature `smol`). A handle spawns from any thread, so
/// `has_fuel` may be called from threads outside the runtime.
#[derive(Debug, Clone)]
pub(crate) enum Spawner {
    #[cfg(feature = "tokio")]
    Tokio(tokio::runtime::Handle),
    #[cfg(feature = "smol")]
    Smol,
}

impl Spawner {
    /// The spawner for the current context, if there is one.
    pub(crate) fn current() -> Option<Spawner> {
        #[cfg(feature = "tokio")]
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            return Some(Spawner::Tokio(handle));
        }
        #[cfg(feature = "smol")]
        return Some(Spawner::Smol);
        #[allow(unreachable_code)]
        None
    }

    pub(crate) fn spawn(&self, future: impl Future<Output = ()> + Send + 'static) {
        match self {
            #[cfg(feature = "tokio")]
            Spawner::Tokio(handle) => drop(handle.spawn(future)),
            #[cfg(feature = "smol")]
            Spawner::Smol => smol::spawn(future).detach(),
        }
    }
}
