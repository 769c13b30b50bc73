//! Tower middleware for [`fueltank`]: every request spends one fuel from a
//! tank that all clones of the service share.
//!
//! ```
//! use fueltank::{Rate, Tank};
//! use fueltank_tower::ThrottleLayer;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # futures::executor::block_on(async {
//! let tank = Tank::new(Rate::per_second(100)?);
//! let svc = ServiceBuilder::new()
//!     .layer(ThrottleLayer::from_tank(tank)) // waits for fuel in poll_ready
//!     .service(service_fn(|x: u64| async move { Ok::<_, tower::BoxError>(x + 1) }));
//! assert_eq!(svc.oneshot(1).await?, 2);
//! # Ok::<(), tower::BoxError>(())
//! # }).unwrap();
//! ```
//!
//! # Why this layer
//!
//! - **Clones share the budget.** `tower::limit::RateLimit` is not `Clone`,
//!   so it does not go on an axum route, and behind a `Buffer` or in a
//!   `MakeService` each copy counts alone. Here every clone draws on the
//!   one [`Tank`].
//! - **Back-pressure or shedding.** By default `poll_ready` waits for fuel,
//!   in the tank's fair line; [`reject`](ThrottleLayer::reject) sheds at
//!   once with [`Throttled`], whose [`retry_after`](Throttled::retry_after)
//!   is exact, from the tank's schedule.
//! - **HTTP 429 done right** (feature `http`): [`ThrottleLayer::http`]
//!   answers `429` itself with `Retry-After` rounded *up* to whole seconds
//!   (never `0` for a sub-second wait) and the IETF `RateLimit` headers on
//!   every response.
//!
//! # Semantics
//!
//! | | wait (default) | [`reject`](ThrottleLayer::reject) |
//! |---|---|---|
//! | `poll_ready` | waits for one fuel (fast path: one compare-and-swap), then for the inner service | waits for the inner service only |
//! | `call` | spends the fuel held | spends one fuel if there is one, else fails with [`Throttled`] |
//! | error type | [`tower::BoxError`] | [`tower::BoxError`] |
//!
//! Fuel taken by `poll_ready` is held by the service until `call` spends
//! it; a service dropped while holding it gives it back. A clone starts
//! without fuel.
//!
//! Emission (a request counted by the statistics monitor of a
//! `fueltank::Throttle`) happens when the fuel is spent, or, with
//! [`EmitOn::Success`], when the response succeeds.
//!
//! # Features
//!
//! | feature | what |
//! |---|---|
//! | `http` | [`http::HttpThrottleLayer`]: 429 + `Retry-After` + `RateLimit` headers; the [`key::PeerIp`] and [`key::ForwardedIp`] extractors |
//! | `axum` | `http`, and [`key::PeerIp`] also reads axum's `ConnectInfo<SocketAddr>` |
//!
//! # Modules
//!
//! | item | role |
//! |---|---|
//! | [`ThrottleLayer`] | the layer; [`ThrottleService`] the service; [`ResponseFuture`] its future |
//! | [`Throttled`] | the error of a shed request |
//! | [`http`] | the HTTP layer and its headers (feature `http`) |
//! | [`key`] | who a request is from, for per-client limits |

#![warn(missing_docs)]
// The docs link the `http` items, which exist only with that feature.
#![cfg_attr(not(feature = "http"), allow(rustdoc::broken_intra_doc_links))]

mod emit;
mod error;
mod future;
mod gate;
#[cfg(feature = "http")]
pub mod http;
pub mod key;
mod layer;
mod service;

pub use emit::EmitOn;
pub use error::Throttled;
pub use fueltank::{Rate, Tank};
pub use future::ResponseFuture;
pub use layer::ThrottleLayer;
pub use service::ThrottleService;

#[cfg(test)]
mod tests;
