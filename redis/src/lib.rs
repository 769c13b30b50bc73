//! One [`fueltank`] budget for every instance of a service, kept in Redis.
//!
//! A [`GlobalTank`] is a tank shared by every process that builds the same
//! name on the same Redis; a [`GlobalKeyedTank`] is one such tank per key.
//! Redis decides every grant, on its own clock, in one Lua script per round
//! trip; instances reserve fuel in batches and spend it locally, so a busy
//! tank costs a round trip per batch and `has_fuel` never waits on Redis.
//!
//! ```no_run
//! use fueltank::Hardcap;
//! use fueltank_redis::{FailurePolicy, RedisStore};
//! use std::time::Duration;
//!
//! # async fn run() -> Result<(), fueltank_redis::Error> {
//! let store = RedisStore::builder("redis://127.0.0.1:6379")
//!     .timeout(Duration::from_millis(50))      // per round trip
//!     .on_failure(FailurePolicy::Closed)       // the default
//!     .connect()
//!     .await?;
//! let api = store.tank("api", "1000/s".parse()?).hardcap(Hardcap::Limit).build().await?;
//! api.await_fuel().await;                      // every instance together: 1000/s
//! let per_user = store.keyed::<String>("per-user", "10/s".parse()?).build().await?;
//! per_user.await_fuel("alice".to_string()).await?;
//! # Ok(()) }
//! ```
//!
//! # Where things are
//!
//! | item | what |
//! |---|---|
//! | [`RedisStore`], [`RedisStoreBuilder`], [`FailurePolicy`], [`StoreStats`] | the connection, the timeouts, what to do while Redis is gone, replication across a failover, the counters |
//! | [`GlobalTank`], [`GlobalTankBuilder`] | one budget for all instances |
//! | [`GlobalKeyedTank`], [`GlobalKeyedTankBuilder`], [`MAX_KEY_LEN`] | one budget per key for all instances |
//! | [`AwaitGlobal`] | the one future of every wait, of both tanks |
//! | [`Error`] | the one error type |
//! | `impl Budget for GlobalTank`, `impl KeyedBudget for GlobalKeyedTank` | these tanks as `fueltank`'s one interface of fuel, which `fueltank-tower`'s layers draw on |
//!
//! The Redis side (keys, script, expiry) is explained in `script.rs` and
//! `script.lua`; the conversion between Redis's clock and this one in
//! `offset.rs` and `reserve.rs`; the line of waiters, batch sizes and the
//! driver in `entry.rs` and `driver.rs`; `has_fuel`'s lock-free path in
//! `lane.rs`.
//!
//! # What holds across instances
//!
//! The hardcaps keep their promise across all instances together, judged on
//! Redis's clock, with `T = per / max_n` rounded up to whole nanoseconds
//! (under-admitting by at most 1 ns per interval):
//!
//! | hardcap | every half-open window of length `per` sees | granted at once |
//! |---|---|---|
//! | `Limit` | at most `2·max_n − 1` grants (`burst + max_n − 1` with a burst) | the bank: `max_n` (or the burst) `− ⌈hold / T⌉` |
//! | `One` | at most `max_n` grants, any two at least `T` apart | 1 |
//! | `Window` | at most `max_n` grants, exactly | `max_n` |
//! | `Unbounded` | no bound; long-run mean at most the rate | its bank |
//!
//! Reservations only ever *under*-admit. Redis records every unit it
//! reserves as granted, with the Redis-time interval in which it may be
//! spent, and an instance spends a unit only inside that interval as
//! converted, conservatively, to its own clock (the uncertainty of where
//! Redis's clock is, never more than the fastest round trip so far, is
//! taken off, and 100 ppm of clock-rate difference):
//!
//! - `Limit`, `Unbounded`: unit `j` of a batch has a slot (when GCRA makes
//!   it due: at once for banked fuel, one interval apart after) and may be
//!   spent from its slot until `hold` after it. A unit spent up to `hold`
//!   late could let a window see `⌈hold / T⌉` more grants, so Redis banks
//!   that much less: `Limit`'s bank is `max_n − ⌈hold / T⌉` (the burst, if
//!   given, in place of `max_n`), and the window bound `2·max_n − 1` (or
//!   `burst + max_n − 1`) holds. With no bank left (`max_n = 1`), `Limit` is
//!   granted like `One`. `n` fuel together are granted at once from the
//!   bank, when the last of them is due.
//! - `One`: a batch is a run of slots one interval apart, spent here in
//!   order at least `T` apart, the first no sooner than its slot and the
//!   last before the batch's end; Redis starts the next batch (anyone's)
//!   one interval after that end. The end is the last slot plus a *guard*
//!   for this instance's lateness (twice the clock uncertainty and 0.5 ms,
//!   at most the hold): a batch of `k` costs `k·T + guard` of the rate.
//!   A late wake-up delays the grants after it, as it does a local `One`;
//!   at 49/s and above the driver's timer is armed early by this system's
//!   timer lateness (measured when the tank is built, about 5 ms of
//!   blocking, then following the lateness the timer shows; at most a
//!   quarter of the interval and 250 µs) and the rest is spun, as a
//!   calibrated local `One` tank does.
//! - `Window`: Redis logs each grant with the end of its hold and counts it
//!   until a period after that end, so a unit spent anywhere in its hold
//!   is counted by every window that could see it; an instance that has
//!   spent a whole grant says so at its next call, and Redis ends that
//!   grant's hold then. A full window is granted ahead, in segments that
//!   start as the oldest grants leave, at most a period (or
//!   `reserve_ahead`, if longer) ahead.
//! - Several rates ([`GlobalTankBuilder::also`], and per key
//!   [`GlobalKeyedTankBuilder::also`]; `Limit` and `Unbounded`):
//!   Redis keeps a GCRA schedule per rate, each with its own bank (`max_n`
//!   less the intervals of the hold in *its* interval), and decides all of
//!   them in the one call: `n` together are granted when they are due
//!   under every rate; a batch starts when every rate has a slot and is
//!   spaced by the longest interval, and each rate's schedule moves as
//!   those spends would move it, so each keeps its own bound
//!   `2·max_n − 1`. A grant takes from every rate or from none (for a
//!   keyed tank, every rate of the one key). `One` and `Window` keep one
//!   rate in Redis (`build` says so).
//!
//! Fuel reserved and not spent is lost, never re-granted. An instance asks
//! again when it holds under half a batch (or less than its waiters want);
//! a batch is at most `max_batch` units (1000 by default) and spans at most
//! `reserve_ahead` (500 ms) of the rate; each unit lives at most `hold`
//! (a tenth of the period, at most 100 ms) past its slot. So an instance
//! whose demand stops leaves at most about one and a half batches unspent,
//! and `n` busy instances hold at most `n × 1.5 × min(max_batch,
//! reserve_ahead / T)` between them. Batches grow with demand and halve when
//! fuel expires unwanted, so a cold key is asked for one unit at a time;
//! while several instances ask, Redis grants each at most its fair share
//! (see *Fair shares*).
//! Smaller `max_batch` and `reserve_ahead` waste less and share the rate
//! more finely between instances, for more round trips.
//!
//! # Fair shares
//!
//! Redis keeps, next to each tank's state (each key's, for a keyed tank;
//! in the same hash slot), the *askers*: the tank handles (keyed tanks'
//! key entries) that asked it for fuel within the last second, each by a
//! random id. While there are several, a batch of `Limit`, `Unbounded` or
//! `Window` is at most its share of a *turn*: what the rate gives in
//! 100 ms (or `reserve_ahead`, if shorter) divided by the askers, at least
//! one unit. An instance asks again when it has spent half of its batch,
//! and a batch is granted after those already granted, so greedy
//! instances take turns with equal batches, however fast each one spends:
//!
//! - instances that stay greedy get equal shares of the rate, each within
//!   about one batch (a turn's share) of the others over any stretch of
//!   time: over 3 s, within ±5 % of 1/n (`tests/fair.rs`: 2 and 4
//!   instances; `tests/instances.rs`: 4 processes);
//! - an instance asks for its next batch when half of its last one is
//!   left, and that batch comes after what the others hold, at most a
//!   batch and a half each: once all have asked, a greedy instance goes
//!   at most 1.5 turns (150 ms) without fuel, and a waiter at the head of
//!   its line waits no longer, plus a round trip. One that comes later
//!   first waits for what the others reserved before it asked (an
//!   instance alone reserves up to a batch and a half of `max_batch` or
//!   `reserve_ahead` of the rate);
//! - an instance alone gets its whole batch, and one that asks for less
//!   than its share gets what it asks: the others take the rest (the cap
//!   is per round trip and costs only round trips, never rate);
//! - not shared so: `n` fuel asked together; `One`, whose batches each
//!   cost a guard; and the bank (a full tank's fuel, spendable at once),
//!   dealt first come in batches of at most a turn's share: instances
//!   that spend it equally fast get equal parts, a faster one more.
//!   Splitting it by count would hold fuel back from an instance that
//!   can spend it now, for others that may never ask, or pace a burst
//!   that the bank exists to admit at once. From a full tank, each greedy
//!   instance gets at least 95 % of an equal share of what is granted
//!   beyond the bank and beyond what the first to ask may hold when the
//!   others come (a batch and a half, above).
//!
//! The cost: while `k` instances ask, about `k / (rate × 100 ms)` round
//! trips per grant (0.02 at 2000/s for 4 instances), and the askers
//! counted in each round trip's script (a sorted set: its cost does not
//! grow with them).
//!
//! So a tank's round trips grow with its busy instances (each makes about
//! 10 to 20 a second, whatever the rate, while a turn's share is at least
//! one unit). How many instances one Redis (or one
//! Cluster shard: a tank's keys are in one slot) serves at a given rate
//! is simulated, with this crate's own decisions, in the repository's
//! `redis/BENCHMARKS.md` (*A thousand instances on paper*).
//!
//! Redis's clock is `TIME` inside the script: a step back is ignored (the
//! state never moves back), a step forward counts as time that passed. A
//! state Redis loses (a restart without persistence, a flush) is a tank
//! idle for ever: full again, so the bound does not span a loss of state.
//!
//! # One name, one limit
//!
//! Every round trip carries the parameters this instance holds and the
//! *generation* of the state it read them from (when Redis created the
//! state, and how many `set_rate`s since). Redis answers a take whose
//! parameters differ from the stored ones with the stored ones only when a
//! `set_rate` made them from the caller's: a later one on the state it
//! knows, or one on a state made again, after a loss, with the caller's
//! parameters. A state lost (idle past its expiry, a flush, a restart) and
//! made again by an instance with *other* parameters is another limit:
//! the instances that hold the old ones are answered [`Error::Mismatch`],
//! never moved to it. They spend what they had reserved, then grant
//! nothing more (as under `FailurePolicy::Closed`): `await_fuel_n` and a
//! keyed tank's `await_fuel` fail with the error, `has_fuel` says no, the
//! other waits wait; [`StoreStats::mismatches`] counts it; while any of
//! these calls go on (failed ones too), Redis is asked again once a
//! second, and once it holds their limit again (the other one's
//! state expired, or a `set_rate` made it so) they are served again. The
//! instance that made the state again built on a free name and goes on.
//!
//! A keyed tank's keys are each in a slot of their own, so no key's round
//! trip reads the tank's parameters (`PREFIX:{NAME}:p`): each key stores
//! the parameters and the generation of the tank's parameters it was last
//! called with, and of two generations the later one rules (a key behind
//! is converted, an instance behind adopts a `set_rate` made from its
//! parameters). Each instance *checks* the tank's parameters alongside a
//! key's round trip when it last did a second ago or more, and at once when
//! a key was stored by a tank born after the one it knows. So another
//! instance's [`GlobalKeyedTank::set_rate`] reaches it at its first check
//! after the change, or sooner through a key that instance used since; a
//! name lost and made again by another limit is a mismatch at its next
//! check, or at once on a key the other limit used.
//!
//! # Speed
//!
//! `has_fuel` takes banked reserved fuel with one compare-and-swap and one
//! read of fueltank's clock, without a lock, and says no the same way until
//! the next reserved fuel starts or Redis's retry time; other cases take the
//! entry's lock. A waiter woken for fuel is granted where the driver's
//! timer fires. Round trips go through one multiplexed connection; at most
//! one is in flight per tank (per key of a keyed tank).
//!
//! # Failures
//!
//! Each round trip is bounded by the store's timeout. A failed one marks the
//! store down until one succeeds, and the [`FailurePolicy`] decides what
//! reserved fuel cannot: `Closed` (the default) grants nothing more,
//! `Open` everything, `Local(share)` a local tank at that share of the
//! rate. Tanks that are used keep asking, backing off from 50 ms to 1 s;
//! the connection reconnects by itself, the script is sent again if Redis
//! forgot it, and a state Redis lost is made again (with the parameters of
//! the first instance to ask; see above). Waiters are never
//! dropped: under `Closed` they are served once Redis answers.
//!
//! A request refused while the store is down under `Closed` is an outage,
//! not overload: the tanks' `Budget::unavailable` says so, and behind
//! `fueltank-tower`'s layers the request fails with `fueltank::Unavailable`
//! (a `503` over HTTP, naming the tank), not `Throttled` (a `429`).
//!
//! # Failover
//!
//! Redis replicates asynchronously: a master answers a script before its
//! replicas have its writes. A replica promoted when its master fails
//! (Cluster failover, Sentinel) holds the tank's state as it was some
//! moment before: the writes of the *replication lag* `L` are lost. The
//! instances spend what those writes reserved (Redis granted it), and the
//! new master, which never saw them, grants that fuel again. So a
//! failover can add to a window of the hardcap's bound at most the fuel
//! the lost writes reserved:
//!
//! - at most the tank's bank when the lag began, plus the rate over `L`,
//!   plus what the instances held reserved ahead (each at most one and a
//!   half batches; see above). A busy tank has no bank left: about the
//!   rate over `L`. A state made within the lag, or lost whole, is a full
//!   tank again (its whole bank granted twice).
//! - only in windows that see grants of both masters: a new master that
//!   first answers more than a period after the old one's last
//!   reservation ended adds nothing, the tank being full again anyway.
//! - `L` is well under a millisecond on a healthy link; it is as long as
//!   the replica got nothing from its master: a slow or broken link (a
//!   Cluster still promotes a replica whose link has been down for up to
//!   `cluster-node-timeout × cluster-replica-validity-factor`), or the
//!   time an old master cut off by a network partition keeps answering
//!   (a Cluster master stops after `cluster-node-timeout`).
//!
//! The same holds per key of a keyed tank, and for `Window`'s log. Grants
//! of the `Open` and `Local` policies during the gap are beyond the bound
//! anyway; `Closed` grants nothing but reserved fuel.
//!
//! [`RedisStoreBuilder::wait_for_replicas`] bounds it: every round trip is
//! followed by `WAIT` on its connection, and its reservation is spent
//! only once that many replicas hold it. Ask for every replica of a
//! master and a promoted replica holds every reservation spent: the
//! failover adds nothing (a partition that leaves the old master a
//! replica no longer counts as enough). The cost is a replica round trip
//! per round trip to Redis (none per grant from reserved fuel), during
//! which the connection to that node waits; a round trip whose replicas do
//! not all answer within `WAIT`'s timeout is a failure (its reservation
//! is never spent: fuel lost, as on a timeout) and the policy decides. A
//! master with fewer replicas than asked (a replica down, or a promoted
//! one until another rejoins it) grants only what the policy grants.
//! Asking for fewer than all keeps a master granting with one replica
//! down, and relies on the most up-to-date replica being promoted, which
//! Cluster and Sentinel prefer but do not promise.
//!
//! # Runtime
//!
//! redis-rs needs tokio (feature `tokio`, the default: what most services
//! that talk to Redis run) or smol (feature `smol`). Each tank with work
//! has a small driver task, spawned where the store was connected and gone
//! when the tank is idle; the waits and `has_fuel` work from any executor
//! or plain thread. Timers are `async-io`'s, as in `fueltank`.
//!
//! Feature `serde`: `RedisStore::tank_config` and `keyed_config` build
//! tanks from the `fueltank::TankConfig` a service's configuration gives
//! a local tank (one file of named limits for every kind).
//!
//! # Not covered
//!
//! Redis before 6.2 (the script uses `ZADD … LT`; tested on 7.0), and one
//! tank across several Redis servers that are not one Cluster.
//!
//! # Redis Cluster, names and keys
//!
//! [`RedisStore::builder_cluster`] connects to a Redis Cluster, seeded by
//! any of its nodes. Every call's keys share one hash slot: a global tank's
//! keys are in one slot (one shard), and each key of a keyed tank is in a
//! slot of its own, so a keyed tank spreads over the shards. Nothing else
//! changes: the bounds, the failure policies and the mismatches hold as on
//! one server (one key layout serves both). A `MOVED` or `ASK` while the
//! Cluster reshards is followed by redis-rs within the round trip's
//! timeout; a round trip that does not end in time is a failure as on one
//! server. What is down is what did not answer: the failure policy decides
//! for a global tank or a key whose latest round trip failed, until one of
//! its own succeeds, while the keys on the other shards go on asking Redis
//! (on one server, one failure puts every tank under the policy at once).
//! Nodes have
//! clocks of their own: each global tank and each key keeps its own
//! bounds on where its node's clock is (a key moved to a node whose clock
//! differs is judged by the earlier bounds until they no longer fit, so
//! keep the nodes' clocks in step, as NTP does).
//!
//! Keys are `PREFIX:{NAME}:…` and, for key `KEY` of a keyed tank,
//! `PREFIX:{NAME:KEY}:…`, with `%`, `{`, `}` and `:` of the name and the
//! key escaped (`%25`, `%7B`, `%7D`, `%3A`): any name (1 to 200 bytes,
//! no control characters; `api:v1` is fine) and any key map to keys of
//! their own. The prefix is `fueltank` unless
//! [`RedisStoreBuilder::prefix`] says otherwise. This layout is new in
//! 0.1: states written by earlier builds (`fueltank:NAME:s`) are not read.

#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(not(any(feature = "tokio", feature = "smol")))]
compile_error!("fueltank-redis needs the feature `tokio` or `smol` (redis-rs's runtime)");

mod budget;
#[cfg(feature = "serde")]
mod config;
mod driver;
mod entry;
mod error;
mod future;
mod global;
mod keyed;
mod lane;
mod offset;
mod params;
mod reserve;
mod script;
// The fleet simulation's seam (`examples/fleet_sim.rs`, `tests/fleet_sim.rs`,
// `tests/differential.rs`), behind the feature `sim`: not part of the API.
#[cfg(feature = "sim")]
#[doc(hidden)]
#[allow(missing_docs)]
pub mod sim;
mod spawn;
mod store;

pub use error::Error;
pub use future::AwaitGlobal;
pub use global::{GlobalTank, GlobalTankBuilder};
pub use keyed::{GlobalKeyedTank, GlobalKeyedTankBuilder, MAX_KEY_LEN};
pub use store::{FailurePolicy, RedisStore, RedisStoreBuilder, StoreStats};

// The snippets of the READMEs compile as doctests: this crate's own, and
// the workspace's, which shows all three crates (only this one sees them
// all, through its dev-dependencies).
/// Locks `mutex`, ignoring poisoning, as every lock of this crate does.
fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct WorkspaceReadmeDoctests;
