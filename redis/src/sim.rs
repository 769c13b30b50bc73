//! Many instances on paper: the parts of a discrete-event simulation of a
//! fleet sharing one global `Limit` tank that must be this crate's own
//! code. Hidden from the API. The event loop (virtual time, the network,
//! Redis's queue, the figures) is `tests/common/fleet.rs`, run by
//! `examples/fleet_sim.rs` (the table in BENCHMARKS.md) and
//! `tests/fleet_sim.rs`; `tests/differential.rs` checks `Store` against
//! the script on a real `redis-server`.
//!
//! What is the crate's code and what is modelled:
//!
//! - Each instance decides with an entry's own `Asking` (`entry.rs`):
//!   when to ask (`wants_more`, `may_ask`), how much (`start`, over the
//!   demand's `Meter`), its batch after a fair share (`granted`), its
//!   backoff after a failed round trip (`failed`); its reserve is a
//!   `Reserve`, which converts each grant to local time through an
//!   `Offset`, holds it and expires it.
//!   A request is `has_fuel`'s locked path: the demand ticks, expired fuel
//!   goes, one unit is taken or the request is a miss, then the driver's
//!   check asks if it should. Left out: the lock-free lane (units of the
//!   same reserve taken without the lock; it leaves the last half batch
//!   to the locked path, which asks then, as here, and counts its takes
//!   as demand when drained rather than one by one), waiters (every
//!   request is `has_fuel`, as behind a reject-mode layer), and `Paced`
//!   and `Window` tanks.
//! - The store is a model of `script.lua`'s `take` for `Limit`: GCRA with
//!   fuel granted ahead, and the fair share over the askers of the last
//!   second, in Rust, fed the arguments `script::args` builds.
//!   `tests/differential.rs` runs it and the script on the same calls.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fueltank::Rate;

use crate::Error;
use crate::entry::{Asking, Meter, Options};
use crate::global::Shape;
use crate::offset::Offset;
use crate::params::{Mode, Params};
use crate::reserve::Reserve;
use crate::script::{self, Ask, Granted, Op, Reply, Scope};

/// The script's answer to a take, in the terms compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// `count` units, unit `j` spendable from `first + j·spacing` ns after
    /// Redis's now, for `life` ns.
    Granted {
        count: u64,
        first: i64,
        spacing: u64,
        life: u64,
    },
    /// Nothing; ask again in `retry` ns.
    Refused { retry: u64 },
}

/// Reads the script's answer to a take (`None`: another answer).
pub fn parse(values: &[i64]) -> Option<Answer> {
    match Reply::parse(values)? {
        Reply::Granted(g, _) => Some(Answer::Granted {
            count: g.count,
            first: g.first,
            spacing: g.spacing,
            life: g.life,
        }),
        Reply::Refused(retry, _) => Some(Answer::Refused { retry }),
        _ => None,
    }
}

/// A model of the script's `take` on one global `Limit` tank (GCRA mode),
/// its state kept here.
#[derive(Debug)]
pub struct Store {
    params: Params,
    /// The options of a tank built with the defaults, its instances'.
    options: Arc<Options>,
    /// GCRA's theoretical arrival time, ns on the caller's scale.
    tat: Option<i128>,
    /// Asker id → its latest ask, µs (the script's `KEYS[3]`).
    askers: HashMap<u64, u64>,
    /// The fair-share cap (`false`: the script as before it, for contrast).
    fair: bool,
}

/// How far ahead a slot may start, in lives (the script's `FAR`).
const FAR: i128 = 2500;

impl Store {
    /// A tank of `rate` with the builder's defaults: `Limit`, the default
    /// hold, `max_batch` and `reserve_ahead`.
    pub fn new(rate: Rate, fair: bool) -> Result<Store, Error> {
        let (params, options) = Shape::new().resolve("sim", rate)?;
        if !matches!(params.mode(), Mode::Gcra { .. }) {
            return Err(Error::Redis {
                reason: format!("the model is GCRA's: {rate} under Limit is paced"),
            });
        }
        Ok(Store {
            params,
            options: Arc::new(options),
            tat: None,
            askers: HashMap::new(),
            fair,
        })
    }

    fn ask(&self, asker: u64, want: u64, ahead_ns: u64) -> Ask {
        Ask {
            want,
            ahead_ns,
            life_ns: self.params.hold_ns,
            asker,
            ..Ask::default()
        }
    }

    /// The script's arguments for this take (after which the differential
    /// test puts the time).
    pub fn args(&self, asker: u64, want: u64, ahead_ns: u64) -> Vec<String> {
        let ask = self.ask(asker, want, ahead_ns);
        script::args(Op::Take, Scope::Global, &self.params, &[], &ask)
    }

    /// How far ahead instances let Redis grant (`reserve_ahead`'s default).
    pub fn ahead_ns(&self) -> u64 {
        u64::try_from(self.options.reserve_ahead.as_nanos()).unwrap_or(u64::MAX)
    }

    /// The askers counted by the latest take.
    pub fn askers(&self) -> usize {
        self.askers.len()
    }

    /// Takes as the script does, at `now_ns` (read, as Redis's `TIME`, in
    /// whole microseconds), for `asker` wanting `want` (not `together`),
    /// granting up to `ahead_ns` ahead.
    pub fn take(&mut self, now_ns: u64, asker: u64, want: u64, ahead_ns: u64) -> Answer {
        let now_us = now_ns / 1000;
        let now = i128::from(now_us) * 1000;
        let p = &self.params;
        let Mode::Gcra { tolerance_ns } = p.mode() else {
            unreachable!("checked at new")
        };
        let t = p.interval_ns();
        let life = p.hold_ns;
        let mut want = want;
        if want > 0 && asker != 0 {
            self.askers.insert(asker, now_us);
            self.askers.retain(|_, &mut at| at + 1_000_000 > now_us);
            let count = self.askers.len() as f64;
            if self.fair && count > 1.0 {
                // As the script, in doubles.
                let turn = ahead_ns.min(100_000_000) as f64;
                let share = turn / t as f64;
                want = want.min(((share / count).floor() as u64).max(1));
            }
        }
        let floor = now - i128::from(tolerance_ns);
        let tat = self.tat.filter(|&tat| tat >= floor).unwrap_or(floor);
        self.tat = Some(tat);
        let far = FAR * i128::from(life);
        if tat - now > far {
            let retry = (tat - now - far).max(1);
            return Answer::Refused {
                retry: u64::try_from(retry).unwrap_or(u64::MAX),
            };
        }
        self.tat = Some(tat + i128::from(want) * i128::from(t));
        Answer::Granted {
            count: want,
            first: i64::try_from(tat - now).unwrap_or(i64::MAX),
            spacing: t,
            life,
        }
    }
}

/// One instance of a tank: an entry's decision state (see the module
/// docs), on times its caller gives.
#[derive(Debug)]
pub struct Instance {
    params: Params,
    options: Arc<Options>,
    reserve: Reserve,
    demand: Meter,
    offset: Offset,
    ask: Asking,
    /// Its store is down: a round trip failed, none succeeded since.
    down: bool,
}

/// Redis's clock for [`Instance::answer`]: the caller's nanoseconds from
/// a date (the conversion only uses differences).
const EPOCH_NS: i128 = 1_700_000_000_000_000_000;

impl Instance {
    /// An instance of `store`'s tank with the default options.
    pub fn new(store: &Store) -> Instance {
        Instance {
            params: store.params,
            options: store.options.clone(),
            reserve: Reserve::default(),
            demand: Meter::default(),
            offset: Offset::new(),
            ask: Asking::default(),
            down: false,
        }
    }

    /// `has_fuel` at `now` (`Entry::has_fuel`'s locked path): whether it
    /// took one unit, and how many reserved units expired first.
    pub fn has_fuel(&mut self, now: Instant) -> (bool, u64) {
        self.demand.tick(now, self.params.hold() * 2);
        let gone = self.reserve.expire(now);
        if gone > 0 {
            self.ask.expired |= self.ask.missed == 0;
        }
        let taken = self.reserve.take(1, now).is_some();
        if taken {
            self.ask.used = true;
        } else {
            self.ask.missed = self.ask.missed.saturating_add(1);
        }
        (taken, gone)
    }

    /// The driver's check at `now`: the batch to ask Redis for now, if
    /// it asks (then a call is in flight until [`Instance::answer`]).
    pub fn ask(&mut self, now: Instant) -> Option<u64> {
        let held = self.reserve.left();
        if !self.ask.may_ask(now) || !self.ask.wants_more(held, 0, self.down) {
            return None;
        }
        let rate = self.demand.rate(now, self.params.hold() * 2);
        let starved = self.ask.missed > 0 && held == 0;
        let batch = self.ask.start(&self.options, &self.params, rate, starved);
        self.ask.asked = batch;
        self.ask.in_flight = true;
        Some(batch)
    }

    /// The call sent at `sent` ran on Redis at `redis_ns` (the caller's
    /// nanoseconds) and was answered at `answered` (`None`: it failed, as
    /// on a timeout). Returns how many of the granted units can never be
    /// spent here (as `Entry::apply` counts them expired).
    pub fn answer(
        &mut self,
        answer: Option<Answer>,
        sent: Instant,
        redis_ns: u64,
        answered: Instant,
    ) -> u64 {
        self.ask.in_flight = false;
        let Some(answer) = answer else {
            self.ask.failed(answered);
            self.down = true;
            return 0;
        };
        // Redis's now of this call, as local times (only an answer has
        // one).
        let (sent, answered) = self
            .offset
            .observe(EPOCH_NS + i128::from(redis_ns), sent, answered);
        self.down = false;
        match answer {
            Answer::Granted {
                count,
                first,
                spacing,
                life,
            } => {
                self.ask.granted(count);
                let granted = Granted::each(count, first, spacing, life);
                let kept = self.reserve.add(&granted, sent, answered);
                if kept < count {
                    self.ask.expired = true;
                }
                count - kept
            }
            Answer::Refused { retry } => {
                self.ask.refused(answered + Duration::from_nanos(retry));
                0
            }
        }
    }
}
