//! Tower middleware for [`fueltank`]: every request awaits fuel from one
//! tank shared by all clones of the service.
//!
//! The layer itself is being built; today this crate re-exports the tank.

pub use fueltank::{Rate, Tank};
