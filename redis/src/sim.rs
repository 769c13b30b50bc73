//! Many instances on paper: a discrete-event simulation of a fleet sharing
//! one global `Limit` tank, in virtual time (no sleeping, no Redis), with
//! the crate's own decisions. Hidden from the API: `examples/fleet_sim.rs`
//! prints its table (BENCHMARKS.md), `tests/fleet_sim.rs` checks a small
//! fleet's bound and shares, and `tests/differential.rs` checks `Store`
//! against the script on a real `redis-server`.
//!
//! What is the crate's code and what is modelled:
//!
//! - Each instance decides with the functions an entry (`entry.rs`) calls:
//!   when to ask (`asks_for_more`), how much (`next_batch`, over the
//!   demand's `Meter`), its batch after a fair share
//!   (`batch_granted`); its reserve is a `Reserve`, which converts each
//!   grant to local time through an `Offset`, holds it and expires it.
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
//! - The network and Redis: a fixed round trip, half each way, and one
//!   script at a time, in arrival order, each taking the measured cost for
//!   the askers the call counted (the script reads the askers' hash).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use fueltank::{Hardcap, Rate};

use crate::Error;
use crate::entry::{Meter, Options, Since, asks_for_more, backoff, batch_granted, next_batch};
use crate::offset::Offset;
use crate::params::{Mode, Params, default_hold};
use crate::reserve::Reserve;
use crate::script::{self, Ask, Granted, Kind, Op, Reply, Scope};

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
    /// A tank of `rate` with `Limit` and the default hold.
    pub fn new(rate: Rate, fair: bool) -> Result<Store, Error> {
        let params = Params::new(rate, Hardcap::Limit, default_hold(rate.per()))?;
        if !matches!(params.mode(), Mode::Gcra { .. }) {
            return Err(Error::Redis {
                reason: format!("the model is GCRA's: {rate} under Limit is paced"),
            });
        }
        Ok(Store {
            params,
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
        script::args(Op::Take, Scope::Global, &self.params, &ask)
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

/// What one script call costs Redis: `base` plus `per_asker` for each
/// asker it counts (it reads and rewrites the askers' hash).
#[derive(Debug, Clone, Copy)]
pub struct Cost {
    pub base: Duration,
    pub per_asker: Duration,
}

impl Cost {
    fn of(&self, askers: usize) -> u64 {
        let ns = self.base + self.per_asker * u32::try_from(askers).unwrap_or(u32::MAX);
        u64::try_from(ns.as_nanos()).unwrap_or(u64::MAX)
    }
}

/// A fleet and its demand.
#[derive(Debug, Clone)]
pub struct Fleet {
    /// The tank's rate (`Limit`, default hold, `max_batch` and
    /// `reserve_ahead`).
    pub rate: Rate,
    pub instances: usize,
    /// Requests per second, all instances together.
    pub demand: f64,
    /// Instance `i` (from 1) gets a share of the demand ∝ `1 / i^s`;
    /// `None`: equal shares.
    pub zipf: Option<f64>,
    /// Simulated time, and the first part of it left out of the figures
    /// (but for the worst window).
    pub seconds: f64,
    pub warm_up: f64,
    pub round_trip: Duration,
    pub cost: Cost,
    /// The store's timeout per round trip (its default: 100 ms): an answer
    /// later than this is a failed round trip (Redis did the work, the
    /// instance never sees it), marks the instance's store down and backs
    /// off, as `FailurePolicy::Closed`.
    pub timeout: Duration,
    /// The script's fair-share cap.
    pub fair: bool,
    pub seed: u64,
}

/// What a run gave. Counts after the warm-up, but `worst_window`.
#[derive(Debug, Clone)]
pub struct Report {
    /// Grants per second over the rate.
    pub accuracy: f64,
    /// The most grants in any window of the period (whole run), and the
    /// hardcap's bound for it (`2·max_n − 1`).
    pub worst_window: u64,
    pub bound: u64,
    /// Script calls per second at the store, and the fraction of the time
    /// it was busy with them.
    pub round_trips: f64,
    pub busy: f64,
    /// Units reserved, and of those, expired unspent.
    pub reserved: u64,
    pub expired: u64,
    /// Each instance's requests and grants.
    pub requests: Vec<u64>,
    pub grants: Vec<u64>,
    /// Each instance's max-min fair share of the rate, per second: what it
    /// should get if the rate were split perfectly.
    pub fair: Vec<f64>,
    /// Seconds measured.
    pub span: f64,
    /// Round trips that timed out.
    pub timeouts: u64,
    /// Mean and longest time from a call's sending to its answer.
    pub answer_mean: Duration,
    pub answer_max: Duration,
    /// The most askers a call counted.
    pub askers_max: usize,
}

impl Report {
    /// Each instance's grants per second over its fair share: the lowest
    /// and the highest.
    pub fn share_range(&self) -> (f64, f64) {
        self.grants
            .iter()
            .zip(&self.fair)
            .map(|(&g, &f)| g as f64 / self.span / f)
            .fold((f64::INFINITY, 0.0), |(lo, hi), r| (lo.min(r), hi.max(r)))
    }
}

/// One instance: an entry's decision state.
struct Instance {
    reserve: Reserve,
    demand: Meter,
    offset: Offset,
    batch: u64,
    asked: u64,
    missed: u64,
    used: bool,
    expired: bool,
    in_flight: bool,
    retry_at: Option<Instant>,
    failures: u32,
    backoff_until: Option<Instant>,
    /// Its store is down: a round trip failed, none succeeded since.
    down: bool,
    /// Nanoseconds between its requests.
    every: f64,
    /// The call in flight: sent, Redis's now, the answer (`None`: timed
    /// out).
    call: Option<(u64, u64, Option<Answer>)>,
}

/// A small deterministic generator (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Redis's clock: the simulation's, from a date (the conversion only uses
/// differences).
const EPOCH_NS: i128 = 1_700_000_000_000_000_000;

/// Max-min fair shares of `rate` between demands.
fn max_min(demands: &[f64], rate: f64) -> Vec<f64> {
    let mut order: Vec<usize> = (0..demands.len()).collect();
    order.sort_by(|&a, &b| demands[a].total_cmp(&demands[b]));
    let mut left = rate;
    let mut shares = vec![0.0; demands.len()];
    for (k, &i) in order.iter().enumerate() {
        let even = left / (demands.len() - k) as f64;
        shares[i] = demands[i].min(even);
        left -= shares[i];
    }
    shares
}

impl Fleet {
    /// Runs the simulation.
    pub fn run(&self) -> Result<Report, Error> {
        let mut store = Store::new(self.rate, self.fair)?;
        let params = store.params;
        let options = Options {
            name: "sim".into(),
            max_batch: 1000,
            reserve_ahead: Duration::from_millis(500),
            hold_is_default: true,
            correction: AtomicU64::new(0),
            follows: false,
        };
        let ahead = u64::try_from(options.reserve_ahead.as_nanos()).unwrap_or(u64::MAX);
        let period = params.hold() * 2;
        let mut rng = Rng(self.seed);
        let weights: Vec<f64> = (1..=self.instances)
            .map(|i| self.zipf.map_or(1.0, |s| 1.0 / (i as f64).powf(s)))
            .collect();
        let total: f64 = weights.iter().sum();
        let demands: Vec<f64> = weights.iter().map(|w| self.demand * w / total).collect();
        let rate = params.max_n as f64 * 1e9 / params.per_ns as f64;
        let fair = max_min(&demands, rate);

        let base = Instant::now();
        let at = |ns: u64| base + Duration::from_nanos(ns);
        let mut fleet: Vec<Instance> = demands
            .iter()
            .map(|&d| Instance {
                reserve: Reserve::default(),
                demand: Meter::default(),
                offset: Offset::new(),
                batch: 1,
                asked: 0,
                missed: 0,
                used: false,
                expired: false,
                in_flight: false,
                retry_at: None,
                failures: 0,
                backoff_until: None,
                down: false,
                every: 1e9 / d,
                call: None,
            })
            .collect();
        let mut queue = BinaryHeap::new();
        let mut seq = 0u64;
        let mut push = |queue: &mut BinaryHeap<_>, t: u64, event: usize, is_answer: bool| {
            seq += 1;
            queue.push(Reverse((t, seq, event, is_answer)));
        };
        for (i, instance) in fleet.iter().enumerate() {
            // Each from a random phase.
            let first = (rng.unit() * instance.every) as u64;
            push(&mut queue, first, i, false);
        }

        let end = (self.seconds * 1e9) as u64;
        let warm = (self.warm_up * 1e9) as u64;
        let half_trip = u64::try_from(self.round_trip.as_nanos() / 2).unwrap_or(u64::MAX);
        let mut store_free = 0u64;
        let timeout = u64::try_from(self.timeout.as_nanos()).unwrap_or(u64::MAX);
        let mut timeouts = 0;
        let mut busy = 0u64;
        let mut calls = 0u64;
        let mut answer_sum = 0u128;
        let mut answer_max = 0u64;
        let mut askers_max = 0;
        let mut reserved = 0u64;
        let mut expired = 0u64;
        let mut requests = vec![0u64; self.instances];
        let mut grants = vec![0u64; self.instances];
        let mut granted_at: Vec<u64> = Vec::new();

        while let Some(Reverse((t, _, i, is_answer))) = queue.pop() {
            if t >= end {
                break;
            }
            let now = at(t);
            let measured = t >= warm;
            let inst = &mut fleet[i];
            if !is_answer {
                // `Entry::has_fuel`'s locked path.
                inst.demand.tick(now, period);
                let gone = inst.reserve.expire(now);
                if gone > 0 {
                    inst.expired |= inst.missed == 0;
                    if measured {
                        expired += gone;
                    }
                }
                let taken = inst.reserve.take(1, now).is_some();
                if taken {
                    inst.used = true;
                    granted_at.push(t);
                } else {
                    inst.missed = inst.missed.saturating_add(1);
                }
                if measured {
                    requests[i] += 1;
                    grants[i] += u64::from(taken);
                }
                let next = t + inst.every as u64;
                push(&mut queue, next.max(t + 1), i, false);
            } else {
                let (sent, redis_ns, answer) = inst.call.take().expect("a call in flight");
                let (sent, answered) =
                    inst.offset
                        .observe(EPOCH_NS + i128::from(redis_ns), at(sent), now);
                inst.in_flight = false;
                if answer.is_some() {
                    inst.failures = 0;
                    inst.backoff_until = None;
                    inst.down = false;
                }
                match answer {
                    None => {
                        inst.failures = inst.failures.saturating_add(1);
                        inst.backoff_until = Some(now + backoff(inst.failures));
                        inst.down = true;
                    }
                    Some(Answer::Granted {
                        count,
                        first,
                        spacing,
                        life,
                    }) => {
                        inst.retry_at = None;
                        inst.batch = batch_granted(inst.batch, inst.asked, count);
                        let granted = Granted {
                            kind: Kind::Each,
                            count,
                            first,
                            spacing,
                            life,
                            last_end: 0,
                            segments: Vec::new(),
                        };
                        let kept = inst.reserve.add(&granted, sent, answered);
                        if kept < count {
                            inst.expired = true;
                        }
                        if measured {
                            reserved += count;
                            expired += count - kept;
                        }
                    }
                    Some(Answer::Refused { retry }) => {
                        inst.retry_at = Some(answered + Duration::from_nanos(retry));
                    }
                }
            }
            // The driver's check: ask now if it should and may.
            let held = inst.reserve.left();
            let may = !inst.in_flight
                && inst.retry_at.is_none_or(|r| r <= now)
                && inst.backoff_until.is_none_or(|r| r <= now);
            let wanted = u64::from(inst.missed > 0);
            let probing = inst.down && (inst.used || wanted > 0);
            if may && (probing || asks_for_more(held, wanted, inst.used, inst.batch)) {
                let since = Since {
                    batch: inst.batch,
                    rate: inst.demand.rate(now, period),
                    starved: inst.missed > 0 && held == 0,
                    expired: inst.expired,
                };
                inst.batch = next_batch(&options, &params, &since);
                inst.asked = inst.batch;
                inst.missed = 0;
                inst.used = false;
                inst.expired = false;
                inst.in_flight = true;
                // Redis runs calls one at a time, in arrival order.
                let start = (t + half_trip).max(store_free);
                let answer = store.take(start, i as u64 + 1, inst.batch, ahead);
                let askers = store.askers();
                askers_max = askers_max.max(askers);
                let cost = self.cost.of(askers);
                store_free = start + cost;
                let mut answered = store_free + half_trip;
                let mut answer = Some(answer);
                if answered - t > timeout {
                    // Redis reserved it; nobody will spend it.
                    if let Some(Answer::Granted { count, .. }) = answer.take()
                        && measured
                    {
                        reserved += count;
                        expired += count;
                    }
                    answered = t + timeout;
                    timeouts += u64::from(measured);
                }
                if measured {
                    calls += 1;
                    busy += cost;
                    answer_sum += u128::from(answered - t);
                    answer_max = answer_max.max(answered - t);
                }
                inst.call = Some((t, start / 1000 * 1000, answer));
                push(&mut queue, answered, i, true);
            }
        }

        let span = (end - warm) as f64 / 1e9;
        let per = params.per_ns;
        let mut worst = 0;
        let mut from = 0;
        for (to, &t) in granted_at.iter().enumerate() {
            while granted_at[from] + per <= t {
                from += 1;
            }
            worst = worst.max(to + 1 - from);
        }
        let total_grants: u64 = grants.iter().sum();
        Ok(Report {
            accuracy: total_grants as f64 / span / rate,
            worst_window: worst as u64,
            bound: 2 * params.max_n - 1,
            round_trips: calls as f64 / span,
            busy: busy as f64 / (end - warm) as f64,
            reserved,
            expired,
            requests,
            grants,
            fair,
            span,
            timeouts,
            answer_mean: Duration::from_nanos(
                u64::try_from(answer_sum / u128::from(calls.max(1))).unwrap_or(u64::MAX),
            ),
            answer_max: Duration::from_nanos(answer_max),
            askers_max,
        })
    }
}
