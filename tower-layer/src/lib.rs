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
//! - **Back-pressure, bounded, or shedding.** By default `poll_ready` waits
//!   for fuel, in the tank's fair line; [`max_wait`](ThrottleLayer::max_wait)
//!   bounds that wait (a request whose fuel cannot come in time is shed at
//!   once) and [`max_waiting`](ThrottleLayer::max_waiting) the line;
//!   [`reject`](ThrottleLayer::reject) sheds whatever finds no fuel. A shed
//!   request fails with [`Throttled`], whose
//!   [`retry_after`](Throttled::retry_after) is exact, from the tank's
//!   schedule, and which names the limit that shed it.
//! - **Per-client limits in bounded memory.** [`KeyedThrottleLayer`] gives
//!   each key (client address, user id) its own tank in a
//!   [`KeyedTank`], which holds at most `max_keys` keys and forgets idle
//!   ones: a flood of new keys cannot grow memory without bound.
//! - **One budget for every instance.** The layers draw on any [`Budget`]
//!   or [`KeyedBudget`] (fueltank's one interface of fuel, re-exported
//!   here): `fueltank-redis`'s tanks keep one in Redis for all the
//!   instances of a service, with nearly every grant decided locally.
//! - **An outage is not overload.** A budget whose store is down (and
//!   whose failure policy refuses) says so
//!   ([`Budget::unavailable`]): the request fails with [`Unavailable`],
//!   naming the store, not [`Throttled`]; the HTTP layers answer it `503
//!   Service Unavailable`, not `429`, and [`Stats`] and the tracing events
//!   count it apart. A fueltank tank is never unavailable.
//! - **Statistics.** Built from a [`Throttle`], the layer counts every
//!   request in the throttle's monitor: live rate, gaps, percentiles. With
//!   [`Stats`], it also counts what it admitted, rejected and made wait, and
//!   how long the waits were, for export (see the `metrics` example for a
//!   Prometheus text page).
//! - **HTTP 429 done right** (feature `http`): [`ThrottleLayer::http`] and
//!   [`KeyedThrottleLayer::http`] answer `429` themselves with
//!   `Retry-After` rounded *up* to whole seconds (never `0` for a sub-second
//!   wait), a plain-text body saying when to retry (or the response your
//!   closure builds), and the IETF `RateLimit` headers on every response —
//!   per key for the keyed layer. A request whose key cannot be read gets a
//!   `400` or `500` whose body says why, never an empty `500`.
//!
//! # Semantics
//!
//! | | [`ThrottleLayer`], wait (default) | [`ThrottleLayer`], [`reject`](ThrottleLayer::reject) | [`KeyedThrottleLayer`] |
//! |---|---|---|---|
//! | `poll_ready` | waits for one fuel (fast path: one compare-and-swap), then for the inner service; with [`max_wait`](ThrottleLayer::max_wait), resolves at once when the fuel cannot come in time | waits for the inner service only (and for the budget's answer when only its store can tell whether there is fuel, [`Budget::ask`]) | waits for the inner service only |
//! | `call` | spends the fuel held; or fails with [`Throttled`] if it could not come in time | spends one fuel if there is one (or the fuel the budget's answer gave), else fails with [`Throttled`] | reads the key, spends one of its fuel; without, waits in the response future (up to [`max_wait`](KeyedThrottleLayer::max_wait)), or (reject, or beyond `max_wait`) fails with [`Throttled`] |
//! | error type | [`tower::BoxError`] | [`tower::BoxError`] | [`tower::BoxError`] |
//!
//! Wherever the table says [`Throttled`], a request refused while its
//! budget's store is down ([`Budget::unavailable`]) fails with
//! [`Unavailable`] instead.
//!
//! Fuel taken by `poll_ready` is held by the service until `call` spends
//! it; a service dropped while holding it gives it back
//! ([`Budget::give_back`]: a tank takes it back exactly, a Redis tank
//! spends it). A clone starts without fuel.
//!
//! Emission (a request counted by the statistics monitor of a
//! [`Throttle`]) happens once per request let through, when the fuel is
//! spent, or, with [`EmitOn::Success`], when the response succeeds. A
//! throttle without a tank means unlimited fuel; without a monitor, no
//! emission.
//!
//! # Tracing events
//!
//! With the `tracing` feature, the layers report, with the target
//! `fueltank_tower` (so `RUST_LOG=fueltank_tower=debug` shows them all):
//!
//! | event | level | fields |
//! |---|---|---|
//! | a request shed ([`Throttled`]) | `DEBUG` | `scope`, `limit` (the label), `key` (with [`report_key`](KeyedThrottleLayer::report_key)), `retry_after_ms` |
//! | a request a [`shadow`](Limit::shadow) layer would have refused, let through | `DEBUG` | `scope`, `limit`, `key` (as above), `shadow = true`, `retry_after_ms` or `store` |
//! | a request refused while its budget's store is down ([`Unavailable`]) | `WARN` | `scope`, `limit`, `key` (as above), `store`, `retry_after_ms` |
//! | a request whose key could not be read, the server's setup at fault ([`KeyError::is_setup_error`](key::KeyError::is_setup_error): no peer address, no trusted proxy) | `ERROR` | `limit`; the message says what to change |
//! | a request whose key could not be read, the request at fault (a missing or malformed header) | `DEBUG` | `limit` |
//! | a wait of at least one second ([`long_wait`] changes the threshold) | `INFO` | `limit`, `wait_ms` |
//!
//! Shed requests and bad requests are at `DEBUG` because a client can send
//! any number of them; a setup error is at `ERROR` because every request
//! fails alike until the server is fixed; an outage is at `WARN` because a
//! dependency, not the client, is at fault.
//!
//! # Features
//!
//! | feature | what |
//! |---|---|
//! | `http` | [`Limit::http`] on either layer ([`http::Responses`]): 429 + `Retry-After` + `RateLimit` headers (503 while a budget's store is down), plain-text or custom rejections; the [`key::PeerIp`] and [`key::ForwardedIp`] extractors |
//! | `axum` | `http`, and [`key::PeerIp`] also reads axum's `ConnectInfo<SocketAddr>`; [`key::ConnectInfoIp`], which exists only with this feature |
//! | `tracing` | the [events](#tracing-events) above |
//!
//! # Modules
//!
//! | item | role |
//! |---|---|
//! | [`Limit`] | the one layer and its options; [`ThrottleLayer`] and [`KeyedThrottleLayer`] name its two kinds, by what it draws on ([`Single`], [`Keyed`]); it answers with errors ([`Errors`]) or, with `http()` (feature `http`), responses |
//! | [`ThrottleLayer`] | one shared budget; [`ThrottleService`] the service (a [`LimitService`], the one service of either kind); [`ResponseFuture`] its future |
//! | [`KeyedThrottleLayer`] | one budget per key; [`KeyedThrottleService`], [`KeyedResponseFuture`] |
//! | [`Throttled`], [`Unavailable`], [`Scope`] | the error of a shed request, that of a request refused while its budget's store is down, and which kind of limit refused it |
//! | [`Stats`], [`WaitTimes`] | what the layers admitted, rejected, refused for an outage and made wait |
//! | [`http`] | the HTTP layers, their headers and rejections, and how to compose a router-level and a route-level limit (feature `http`) |
//! | [`key`] | who a request is from: [`key::KeyExtractor`] and the extractors |
//! | [`Budget`], [`KeyedBudget`], [`BudgetWait`] | what the layers draw on: fueltank's tanks, `fueltank-redis`'s, your own (re-exported from `fueltank`) |
//!
//! [`fueltank`]: https://docs.rs/fueltank
//! [`long_wait`]: ThrottleLayer::long_wait
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]
// Items that exist only with a feature (`http`, `axum`, `tracing`) are
// linked where they exist: on docs.rs, which documents every feature. A
// build without one of them shows their names unlinked.
#![cfg_attr(
    not(all(feature = "axum", feature = "tracing")),
    allow(rustdoc::broken_intra_doc_links)
)]

mod answer;
mod budget;
mod emit;
mod error;
mod events;
mod future;
mod gate;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http;
pub mod key;
mod keyed;
mod layer;
mod policy;
mod request;
mod service;
mod stats;

pub use answer::Errors;
pub use emit::EmitOn;
pub use fueltank::{Budget, BudgetWait, KeyedBudget, Scope, Throttled, Unavailable};
pub use fueltank::{KeyedTank, Monitor, Rate, Tank, Throttle};
pub use future::ResponseFuture;
pub use keyed::{Keyed, KeyedResponseFuture, KeyedThrottleLayer, KeyedThrottleService};
pub use layer::{Limit, ThrottleLayer};
pub use request::{Uniform, Whole};
pub use service::{LimitService, Single, ThrottleService};
pub use stats::{Stats, WaitTimes};
