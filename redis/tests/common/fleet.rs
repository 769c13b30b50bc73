#![allow(dead_code)]

//! The fleet simulation's event loop: `Fleet::run` drives instances that
//! decide with fueltank-redis's own code (`fueltank_redis::sim::Instance`)
//! against the model of the script (`sim::Store`), in virtual time
//! (deterministic, from a seed; nothing sleeps). The network is a fixed
//! round trip, half each way; Redis runs one script at a time in arrival
//! order, each taking the measured cost for the askers it counted (the
//! script reads the askers' hash); an answer later than the timeout is a
//! failed round trip (Redis booked the fuel, nobody spends it). Used by
//! `examples/fleet_sim.rs` and `tests/fleet_sim.rs`.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use fueltank::Rate;
use fueltank_redis::Error;
use fueltank_redis::sim::{Answer, Instance, Store};

/// What one script call costs Redis: `base` plus `per_asker` for each
/// asker it counts (it reads and rewrites the askers' hash).
#[derive(Debug, Clone, Copy)]
pub struct Cost {
    pub base: Duration,
    pub per_asker: Duration,
}

impl Cost {
    fn of(&self, askers: usize) -> u64 {
        (self.base + self.per_asker * askers as u32).as_nanos() as u64
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
        let ahead = store.ahead_ns();
        let per = self.rate.per().as_nanos() as u64;
        let rate = self.rate.max_n() as f64 / self.rate.per().as_secs_f64();
        let mut rng = Rng(self.seed);
        let weights: Vec<f64> = (1..=self.instances)
            .map(|i| self.zipf.map_or(1.0, |s| 1.0 / (i as f64).powf(s)))
            .collect();
        let total: f64 = weights.iter().sum();
        let demands: Vec<f64> = weights.iter().map(|w| self.demand * w / total).collect();
        let fair = max_min(&demands, rate);

        let base = Instant::now();
        let at = |ns: u64| base + Duration::from_nanos(ns);
        let mut fleet: Vec<Instance> = demands.iter().map(|_| Instance::new(&store)).collect();
        // Nanoseconds between each one's requests; the call in flight
        // (sent, Redis's now, the answer: `None` if timed out).
        let every: Vec<f64> = demands.iter().map(|d| 1e9 / d).collect();
        let mut calls_in_flight: Vec<Option<(u64, u64, Option<Answer>)>> =
            vec![None; self.instances];
        let mut queue = BinaryHeap::new();
        let mut seq = 0u64;
        let mut push = |queue: &mut BinaryHeap<_>, t: u64, event: usize, is_answer: bool| {
            seq += 1;
            queue.push(Reverse((t, seq, event, is_answer)));
        };
        for (i, every) in every.iter().enumerate() {
            // Each from a random phase.
            let first = (rng.unit() * every) as u64;
            push(&mut queue, first, i, false);
        }

        let end = (self.seconds * 1e9) as u64;
        let warm = (self.warm_up * 1e9) as u64;
        let half_trip = self.round_trip.as_nanos() as u64 / 2;
        let timeout = self.timeout.as_nanos() as u64;
        let mut store_free = 0u64;
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
            if is_answer {
                let (sent, redis_ns, answer) = calls_in_flight[i].take().expect("a call");
                let lost = inst.answer(answer, at(sent), redis_ns, now);
                if measured {
                    if let Some(Answer::Granted { count, .. }) = answer {
                        reserved += count;
                    }
                    expired += lost;
                }
            } else {
                let (taken, gone) = inst.has_fuel(now);
                if taken {
                    granted_at.push(t);
                }
                if measured {
                    expired += gone;
                    requests[i] += 1;
                    grants[i] += u64::from(taken);
                }
                let next = t + every[i] as u64;
                push(&mut queue, next.max(t + 1), i, false);
            }
            let Some(want) = inst.ask(now) else {
                continue;
            };
            // Redis runs calls one at a time, in arrival order.
            let start = (t + half_trip).max(store_free);
            let answer = store.take(start, i as u64 + 1, want, ahead);
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
            // The script reads Redis's TIME in whole microseconds.
            calls_in_flight[i] = Some((t, start / 1000 * 1000, answer));
            push(&mut queue, answered, i, true);
        }

        let span = (end - warm) as f64 / 1e9;
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
            bound: 2 * self.rate.max_n() - 1,
            round_trips: calls as f64 / span,
            busy: busy as f64 / (end - warm) as f64,
            reserved,
            expired,
            requests,
            grants,
            fair,
            span,
            timeouts,
            answer_mean: Duration::from_nanos((answer_sum / u128::from(calls.max(1))) as u64),
            answer_max: Duration::from_nanos(answer_max),
            askers_max,
        })
    }
}
