//! Tower middleware for [`fueltank`]: every request spends one fuel from a
//! tank that all clones of the service share, or from its own key's tank.
//!
//! ```
//! use fueltank::{Rate, Throttle};
//! use fueltank_tower::ThrottleLayer;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # futures::executor::block_on(async {
//! let throttle = Throttle::builder(Rate::per_second(100)?).build()?;
//! let svc = ServiceBuilder::new()
//!     .layer(ThrottleLayer::new(throttle.clone())) // waits for fuel in poll_ready
//!     .service(service_fn(|x: u64| async move { Ok::<_, tower::BoxError>(x + 1) }));
//! assert_eq!(svc.oneshot(1).await?, 2);
//! assert_eq!(throttle.total(), 1); // and the throttle's monitor counted it
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
//! - **Per-client limits in bounded memory.** [`KeyedThrottleLayer`] gives
//!   each key (client address, user id) its own tank in a
//!   [`KeyedTank`], which holds at most `max_keys` keys and forgets idle
//!   ones: a flood of new keys cannot grow memory without bound.
//! - **Statistics.** Built from a [`Throttle`], the layer counts every
//!   request in the throttle's monitor: live rate, gaps, percentiles.
//! - **HTTP 429 done right** (feature `http`): [`ThrottleLayer::http`] and
//!   [`KeyedThrottleLayer::http`] answer `429` themselves with
//!   `Retry-After` rounded *up* to whole seconds (never `0` for a sub-second
//!   wait) and the IETF `RateLimit` headers on every response — per key for
//!   the keyed layer.
//!
//! # Semantics
//!
//! | | [`ThrottleLayer`], wait (default) | [`ThrottleLayer`], [`reject`](ThrottleLayer::reject) | [`KeyedThrottleLayer`] |
//! |---|---|---|---|
//! | `poll_ready` | waits for one fuel (fast path: one compare-and-swap), then for the inner service | waits for the inner service only | waits for the inner service only |
//! | `call` | spends the fuel held | spends one fuel if there is one, else fails with [`Throttled`] | reads the key, spends one of its fuel; without, waits in the response future, or (reject) fails with [`Throttled`] |
//! | error type | [`tower::BoxError`] | [`tower::BoxError`] | [`tower::BoxError`] |
//!
//! Fuel taken by `poll_ready` is held by the service until `call` spends
//! it; a service dropped while holding it gives it back. A clone starts
//! without fuel.
//!
//! Emission (a request counted by the statistics monitor of a
//! [`Throttle`]) happens once per request let through, when the fuel is
//! spent, or, with [`EmitOn::Success`], when the response succeeds. A
//! throttle without a tank means unlimited fuel; without a monitor, no
//! emission.
//!
//! # Features
//!
//! | feature | what |
//! |---|---|
//! | `http` | [`http::HttpThrottleLayer`] and [`http::HttpKeyedThrottleLayer`]: 429 + `Retry-After` + `RateLimit` headers; the [`key::PeerIp`] and [`key::ForwardedIp`] extractors |
//! | `axum` | `http`, and [`key::PeerIp`] also reads axum's `ConnectInfo<SocketAddr>` |
//!
//! # Modules
//!
//! | item | role |
//! |---|---|
//! | [`ThrottleLayer`] | one shared budget; [`ThrottleService`] the service; [`ResponseFuture`] its future |
//! | [`KeyedThrottleLayer`] | one budget per key; [`KeyedThrottleService`], [`KeyedResponseFuture`] |
//! | [`Throttled`] | the error of a shed request |
//! | [`http`] | the HTTP layers and their headers (feature `http`) |
//! | [`key`] | who a request is from: [`key::KeyExtractor`] and the extractors |

#![warn(missing_docs)]
// The docs link the `http` items, which exist only with that feature.
#![cfg_attr(not(feature = "http"), allow(rustdoc::broken_intra_doc_links))]

mod emit;
mod error;
mod events;
mod future;
mod gate;
#[cfg(feature = "http")]
pub mod http;
pub mod key;
mod keyed;
mod layer;
mod policy;
mod service;
mod stats;

pub use emit::EmitOn;
pub use error::{Scope, Throttled};
pub use fueltank::{KeyedTank, Monitor, Rate, Tank, Throttle};
pub use future::ResponseFuture;
pub use keyed::{KeyedResponseFuture, KeyedThrottleLayer, KeyedThrottleService};
pub use layer::ThrottleLayer;
pub use service::ThrottleService;
pub use stats::{Stats, WaitTimes};
