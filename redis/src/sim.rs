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
//!   fuel granted ahead, with the rates of `also` if any, the fair share
//!   over the askers of the last second, and the time until each rate is
//!   full that the answer tells, in Rust, fed the arguments `script::args`
//!   builds. `tests/differential.rs` runs it and the script on the same
//!   calls.

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

/// When the script's answer `values` (to any call but a mismatch) has
/// room for `n` together under every rate, in ns after its now, as an
/// instance's `wait_time` counts it (`Seen::due`): the rates given as
/// (tolerance, interval), the first, then each of `also`, as the call
/// gave them. `None`: not such an answer.
pub fn due(values: &[i64], rates: &[(u64, u64)], n: u64) -> Option<i128> {
    let seen = match Reply::parse(values)? {
        Reply::Granted(_, seen) | Reply::Refused(_, seen) | Reply::Done(seen) => seen,
        Reply::Mismatch(_) => return None,
    };
    Some(script::due_of(
        seen.full,
        &seen.each,
        rates.iter().copied(),
        n,
    ))
}

/// The time until full the script's answer `values` tells (to any call but
/// a mismatch), and, with rates of `also`, each rate's (the first, then
/// each of `also`): what an instance's `wait_time` counts from.
pub fn told(values: &[i64]) -> Option<(u64, Vec<u64>)> {
    match Reply::parse(values)? {
        Reply::Granted(_, seen) | Reply::Refused(_, seen) | Reply::Done(seen) => {
            Some((seen.full, seen.each))
        }
        Reply::Mismatch(_) => None,
    }
}

/// A model of the script's `take` on one global `Limit` tank (GCRA mode),
/// with the rates of `also` if it has any, its state kept here.
#[derive(Debug)]
pub struct Store {
    params: Params,
    /// The other rates (`also`), GCRA each, and their schedules (the
    /// script's `x1`, `x2`, ...), ns on the caller's scale.
    also: Vec<Params>,
    x: Vec<Option<i128>>,
    /// What the latest take told of the state: the time until full, and
    /// with rates of `also` each rate's (see [`told`]).
    told: (u64, Vec<u64>),
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
        Store::with_also(rate, &[], fair)
    }

    /// A tank of `rate` also limited by the rates `also`, as
    /// `GlobalTankBuilder::also` makes it (the default hold for the
    /// shortest period).
    pub fn with_also(rate: Rate, also: &[Rate], fair: bool) -> Result<Store, Error> {
        let (params, mut options) = Shape::new().resolve("sim", rate)?;
        let (params, also) = params.with_also(also, options.hold_is_default)?;
        if !matches!(params.mode(), Mode::Gcra { .. }) {
            return Err(Error::Redis {
                reason: format!("the model is GCRA's: {rate} under Limit is paced"),
            });
        }
        options.also.clone_from(&also);
        Ok(Store {
            params,
            x: vec![None; also.len()],
            also,
            told: (0, Vec::new()),
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
        script::args(Op::Take, Scope::Global, &self.params, &self.also, &ask)
    }

    /// How far ahead instances let Redis grant (`reserve_ahead`'s default).
    pub fn ahead_ns(&self) -> u64 {
        u64::try_from(self.options.reserve_ahead.as_nanos()).unwrap_or(u64::MAX)
    }

    /// What the latest take told of the state (as [`told`] reads the
    /// script's answer).
    pub fn told(&self) -> (u64, Vec<u64>) {
        self.told.clone()
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
        let shape = |p: &Params| {
            let Mode::Gcra { tolerance_ns } = p.mode() else {
                unreachable!("checked at new")
            };
            (i128::from(tolerance_ns), i128::from(p.interval_ns()))
        };
        let (tol, t) = shape(&self.params);
        let also: Vec<(i128, i128)> = self.also.iter().map(shape).collect();
        let life = self.params.hold_ns;
        let mut want = want;
        if want > 0 && asker != 0 {
            self.askers.insert(asker, now_us);
            self.askers.retain(|_, &mut at| at + 1_000_000 > now_us);
            let count = self.askers.len() as f64;
            if self.fair && count > 1.0 {
                // As the script, in doubles: the share of the slowest rate.
                let turn = ahead_ns.min(100_000_000) as f64;
                let share = also.iter().fold(turn / t as f64, |share, &(_, xt)| {
                    share.min(turn / xt as f64)
                });
                want = want.min(((share / count).floor() as u64).max(1));
            }
        }
        // Fuel beyond each rate's bank forgotten.
        let mut tat = self
            .tat
            .filter(|&tat| tat >= now - tol)
            .unwrap_or(now - tol);
        let mut x: Vec<i128> = self
            .x
            .iter()
            .zip(&also)
            .map(|(&xtat, &(xtol, _))| xtat.filter(|&v| v >= now - xtol).unwrap_or(now - xtol))
            .collect();
        // A batch starts when every rate has a slot, spaced by the longest
        // interval.
        let first = x.iter().fold(tat, |first, &v| first.max(v));
        let spacing = also.iter().fold(t, |spacing, &(_, xt)| spacing.max(xt));
        let far = FAR * i128::from(life);
        let answer = if first - now > far {
            let retry = (first - now - far).max(1);
            Answer::Refused {
                retry: u64::try_from(retry).unwrap_or(u64::MAX),
            }
        } else {
            let want_i = i128::from(want);
            let last = first + (want_i - 1) * spacing;
            tat = (tat + want_i * t).max(last - tol + t);
            for (v, &(xtol, xt)) in x.iter_mut().zip(&also) {
                *v = (*v + want_i * xt).max(last - xtol + xt);
            }
            Answer::Granted {
                count: want,
                first: i64::try_from(first - now).unwrap_or(i64::MAX),
                spacing: u64::try_from(spacing).unwrap_or(u64::MAX),
                life,
            }
        };
        // The time until each rate is full, and the latest.
        let until = |v: i128, tol: i128| u64::try_from((v + tol - now).max(0)).unwrap_or(u64::MAX);
        let mut each = vec![until(tat, tol)];
        each.extend(x.iter().zip(&also).map(|(&v, &(xtol, _))| until(v, xtol)));
        let full = each.iter().copied().max().unwrap_or(0);
        if also.is_empty() {
            each.clear();
        }
        self.told = (full, each);
        self.tat = Some(tat);
        self.x = x.into_iter().map(Some).collect();
        answer
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
