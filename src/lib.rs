//! An async, runtime-agnostic rate limiter: a fair, drift-free fuel tank.
//!
//! A [`Tank`] holds fuel refilled at `max_n` per `per`; tasks take fuel
//! before they work:
//!
//! ```
//! use fueltank::{Rate, Tank};
//!
//! # futures::executor::block_on(async {
//! let tank = Tank::new("100/s".parse()?);
//! tank.await_fuel().await;      // wait in line for one fuel
//! if tank.has_fuel() {          // or take one only if it is there
//!     // ...
//! }
//! # Ok::<(), fueltank::Error>(())
//! # }).unwrap();
//! ```
//!
//! # Where things are
//!
//! | module | what |
//! |---|---|
//! | [`Rate`] | `max_n` per `per`, exact; parses `"100/s"`, `"5/250ms"` |
//! | [`Budget`], [`KeyedBudget`] | the one interface of fuel that every tank implements (and `fueltank-redis`'s), and that `fueltank-tower` draws on; [`Throttled`], [`Unavailable`] and [`Scope`]: what a refused request says |
//! | [`AllOf`], [`KeyedAllOf`] | several budgets as one, all or nothing, in a fair line: per user, per route and global |
//! | [`Tank`], [`Hardcap`] | the fuel, its line of waiters and its timer |
//! | [`Fuel`], [`AwaitFuel`] | fuel taken and not yet spent, which can be given back; the one future that waits for fuel (see [Taking fuel](#taking-fuel)) |
//! | [`KeyedTank`] | one tank per key (client, user), in bounded memory; per key a burst, a rate of its own, several rates ([`also`](KeyedTankBuilder::also)) |
//! | [`Monitor`], [`Stat`], [`Summary`], [`Snapshot`] | counts emissions: mean, trailing window, extremes, gap percentiles |
//! | [`Throttle`] | a tank and a monitor together, with the options of the Python [`mp_throttle`](http://docs.elpunkt.eu/mp_throttle/guide.html), timer calibration |
//! | [`Pace`] | a `Stream` whose items each wait for fuel |
//! | [`clock`] | [`MonotonicClock`](clock::MonotonicClock) (fast), [`ManualClock`](clock::ManualClock) (tests), [`TokioClock`] (feature `tokio`: `tokio::time`, paused time included); how late timers fire ([`timer_lateness`](clock::timer_lateness)) |
//! | [`TankConfig`] | a tank's options from a service's configuration (feature `serde`) |
//! | [`Error`] | the one error type |
//!
//! The refill algorithm is explained once, in the source of `tank/bucket.rs`;
//! the lock-free path in `tank/word.rs`; the waiters' line in `tank/line.rs`;
//! keys in `keyed/mod.rs`; the monitor's emit path in `monitor/mod.rs`. Tower
//! middleware is in the companion crate `fueltank-tower`.
//!
//! # Taking fuel
//!
//! The whole pattern, on a [`Tank`] (a [`Throttle`] has the same; a
//! [`KeyedTank`] takes a key first); `try_take` and `give_back` are
//! [`Budget`]'s, whose import they need. Every wait is one [`AwaitFuel`]: in the
//! tank's line (FIFO: nothing taken now overtakes it), cancel safe, woken
//! once; [`WaitOutput`] says what each resolves to.
//!
//! | | one | `n` together | to give back ([`Fuel`]) |
//! |---|---|---|---|
//! | now | [`has_fuel()`](Tank::has_fuel) `-> bool` | [`has_fuel_n(n)`](Tank::has_fuel_n) `-> bool` | [`try_take(n)`](Budget::try_take) `-> Option<Fuel>` |
//! | wait | [`await_fuel()`](Tank::await_fuel) `-> ()` | [`await_fuel_n(n)`](Tank::await_fuel_n) `-> Result<(), Error>` (`Err` if `n` never fits) | [`Budget::wait(n, None)`](Budget::wait) `-> Result<Option<Fuel>, Error>` |
//! | wait, with a deadline | [`await_fuel_timeout(d)`](Tank::await_fuel_timeout) `-> bool` | — | [`Budget::wait(n, Some(d))`](Budget::wait): `Ok(None)` if `d` passed |
//! | blocking (plain threads) | [`blocking_await_fuel()`](Tank::blocking_await_fuel) | — | — |
//! | blocking, with a deadline | [`blocking_await_fuel_timeout(d)`](Tank::blocking_await_fuel_timeout) `-> bool` | — | — |
//! | give back | — | — | [`give_back(fuel)`](Budget::give_back), in part with [`fuel.split(k)`](Fuel::split) |
//!
//! Fuel given back is exact: the tank is left as if it had never been
//! taken, except for what would have run into the cap since (spent, never
//! minted). `has_fuel` keeps no record to give back by: it is the cheapest
//! take. Reserve an estimate, then give back what was not used:
//!
//! ```
//! use fueltank::{Budget, Rate, Tank};
//!
//! let tank = Tank::builder(Rate::per_second(100)?).initial(100).build()?;
//! if let Some(mut fuel) = tank.try_take(10) {
//!     let used = 4; // ... the work used 4 of the 10 reserved
//!     tank.give_back(fuel.split(10 - used));
//! }
//! assert_eq!(tank.level(), 96);
//! # Ok::<(), fueltank::Error>(())
//! ```
//!
//! # Initial fuel
//!
//! What a tank holds when it is built, or a key when it is first seen,
//! unless an `initial(n)` option says otherwise:
//!
//! | what | initial fuel |
//! |---|---|
//! | [`Tank`], [`Throttle`] (`Limit`, `One`, `Unbounded`, with or without a burst) | 1: the first fuel at once, then one per interval, no start-up burst |
//! | [`Tank`], [`Throttle`] under [`Hardcap::Window`] | `max_n`: an empty window, which its promise already bounds |
//! | a [`Tank`] in [shared memory](TankBuilder::shared_memory) | as above in the process that creates it; the others attach to the state as it is |
//! | a new key of a [`KeyedTank`] | full: its capacity (`max_n` or the burst, 1 under `One`; with [`also`](KeyedTankBuilder::also), every rate full), as a client idle for ever |
//! | a tank of `fueltank-redis`, or a new key of its keyed tank | full, as a state idle for ever (under `Window`, an empty window); no `initial` option |
//!
//! ```
//! use fueltank::{Hardcap, KeyedTank, Rate, Tank, Throttle};
//!
//! let rate = Rate::per_minute(10)?;
//! assert_eq!(Tank::new(rate).level(), 1);
//! assert_eq!(Throttle::builder(rate).build()?.level(), 1);
//! assert_eq!(Tank::builder(rate).hardcap(Hardcap::Window).build()?.level(), 10);
//! assert_eq!(KeyedTank::new(rate).level(&"new"), 10);
//! # Ok::<(), fueltank::Error>(())
//! ```
//!
//! # Pausing and stopping
//!
//! [`Tank::pause`] and [`Throttle::stop`] both stop the refill; `stop` is
//! the throttle's, so it stops its monitor too:
//!
//! | | [`Tank::pause`] / [`resume`](Tank::resume) | [`Throttle::stop`] / [`start`](Throttle::start) |
//! |---|---|---|
//! | the refill | stops; the paused time never refills | the same, on the throttle's tank |
//! | fuel already in the tank | can still be taken | the same |
//! | waiters | wait until the refill resumes | the same |
//! | statistics | — | the monitor stops too ([`Monitor::stop`]): no running time, and emissions count in the total only |
//! | returns | nothing | the monitor's [`Summary`] |
//! | asked by | [`Tank::is_paused`] | [`Throttle::is_stopped`] |
//! | in shared memory | every process sharing the tank | every process sharing the throttle |
//!
//! # Runtimes
//!
//! The tank needs no thread or task of its own. Its one timer is an
//! [`async-io`](https://docs.rs/async-io) timer, so waiting works under tokio
//! (both flavours), smol, async-std, `futures::executor`, or plain threads
//! through [`Tank::blocking_await_fuel`].
//!
//! # Beyond one process
//!
//! [`TankBuilder::shared_memory`] shares a tank with every process of the
//! host that builds the same name (and [`MonitorBuilder::shared_memory`] a
//! monitor, [`ThrottleBuilder::shared_memory`] both): the hardcap's bound
//! holds across the processes together. [`SharedMemory`] says who may
//! share the file (by default, this user's processes only: the trust model
//! is there). The companion crate
//! `fueltank-redis` shares one budget among every instance of a service
//! through Redis.
//!
//! # Features
//!
//! | feature | what |
//! |---|---|
//! | `shared-memory` (default) | tanks, monitors and throttles in shared memory ([`TankBuilder::shared_memory`], [`SharedMemory`]); without it, none of that code is built |
//! | `serde` | [`Rate`] as `"100/s"`, [`Hardcap`] by name, [`TankConfig`] from a service's configuration |
//! | `tokio` | [`TokioClock`]: a clock and timer that follow `tokio::time`, paused time included |
//!
//! [`TankBuilder::shared_memory`]: TankBuilder::shared_memory

#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]
// Without shared memory, the docs' links to its items (which do not exist
// then) stay plain text.
#![cfg_attr(not(feature = "shared-memory"), allow(rustdoc::broken_intra_doc_links))]
// Items of a feature that is off are linked on docs.rs, which documents
// every feature.
#![cfg_attr(feature = "serde", doc = "[`TankConfig`]: TankConfig")]
#![cfg_attr(
    not(feature = "serde"),
    doc = "[`TankConfig`]: https://docs.rs/fueltank/latest/fueltank/struct.TankConfig.html"
)]
#![cfg_attr(feature = "tokio", doc = "[`TokioClock`]: clock::TokioClock")]
#![cfg_attr(
    not(feature = "tokio"),
    doc = "[`TokioClock`]: https://docs.rs/fueltank/latest/fueltank/clock/struct.TokioClock.html"
)]

mod all_of;
mod budget;
mod calibrate;
pub mod clock;
#[cfg(feature = "serde")]
mod config;
mod error;
mod keyed;
mod monitor;
mod pace;
mod rate;
#[cfg(feature = "shared-memory")]
mod shm;
mod sync;
mod tank;
mod throttle;
mod timer;

pub use all_of::{AllOf, KeyedAllOf};
pub use budget::{Budget, BudgetWait, KeyedBudget, Scope, Throttled, Unavailable};
#[cfg(feature = "serde")]
pub use config::TankConfig;
pub use error::Error;
pub use keyed::{KeyedTank, KeyedTankBuilder};
pub use monitor::{Monitor, MonitorBuilder, Snapshot, Snapshots, Stat, Summary};
pub use pace::Pace;
pub use rate::Rate;
#[cfg(feature = "shared-memory")]
pub use shm::SharedMemory;
pub use tank::{AwaitFuel, Fuel, Hardcap, Tank, TankBuilder, WaitOutput};
pub use throttle::{Throttle, ThrottleBuilder};
