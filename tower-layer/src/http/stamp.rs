//! The `RateLimit` headers of one response, read from its budget.

use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;

use fueltank::{Budget, Hardcap, Rate};
use http::header::{HeaderMap, HeaderName, HeaderValue};

use super::number::number;
use super::{HeaderStyle, sf_string};
use crate::budget::{self, KeyedShared, Shared};

const LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
const REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
const RESET: HeaderName = HeaderName::from_static("ratelimit-reset");
const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
const POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

/// What every service of one layer shares about its headers.
#[derive(Debug, Clone)]
pub(crate) struct Headers {
    pub(crate) style: HeaderStyle,
    /// The policy name as a structured-field string, quotes included.
    pub(crate) policy: Arc<str>,
}

impl Default for Headers {
    fn default() -> Headers {
        Headers {
            style: HeaderStyle::Split,
            policy: sf_string("default"),
        }
    }
}

impl Headers {
    /// What one response gets, from the state `read` returns (called only
    /// if the style sends `RateLimit` headers).
    #[inline]
    pub(crate) fn stamp(&self, read: impl FnOnce() -> Option<Snapshot>) -> Option<Stamp> {
        let policy = self.plan()?;
        Some(Stamp {
            snapshot: read()?,
            policy,
        })
    }

    /// `None` without `RateLimit` headers; else the policy name to send,
    /// if the style is the structured one.
    #[inline]
    fn plan(&self) -> Option<Option<Arc<str>>> {
        match self.style {
            HeaderStyle::Off => None,
            HeaderStyle::Split => Some(None),
            HeaderStyle::Structured => Some(Some(self.policy.clone())),
        }
    }
}

/// The `RateLimit` headers of one response: the split trio, or with a
/// policy name, the structured pair. Carried by the response future
/// without a reference to the layer.
#[derive(Debug, Clone)]
pub struct Stamp {
    snapshot: Snapshot,
    policy: Option<Arc<str>>,
}

/// `wait` in whole seconds, rounded up (at most `u64::MAX`: a budget of
/// one's own may say `Duration::MAX`).
pub(crate) fn ceil_secs(wait: Duration) -> u64 {
    wait.as_secs()
        .saturating_add(u64::from(wait.subsec_nanos() > 0))
}

/// The tank's state behind one response's headers: that of its tightest
/// rate, and under several rates (`also`) every rate, for the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Snapshot {
    /// The fuel once full.
    limit: u64,
    /// Fuel left, at most `limit`.
    remaining: u64,
    /// Whole seconds until the tank is full.
    reset: u64,
    /// The window `per`, in whole seconds rounded up (at least 1).
    window: u64,
    /// The quota in `window`.
    quota: u64,
    /// Under several rates, every one; `None` under one (a pointer: the
    /// one-rate snapshot stays as small as it was).
    several: Option<Box<Several>>,
}

/// Every rate of a budget of several (as `rates()` tells them), and the
/// index of the tightest, the one the rest of the snapshot speaks of.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Several {
    rates: Vec<(Rate, u64)>,
    tightest: usize,
}

impl Several {
    #[cold]
    fn boxed(rates: Vec<(Rate, u64)>, tightest: usize) -> Option<Box<Several>> {
        Some(Box::new(Several { rates, tightest }))
    }
}

impl Snapshot {
    pub(crate) fn read(budget: &Shared) -> Snapshot {
        let tank = match budget::tank(budget) {
            Some(tank) => tank,
            None => {
                // Another budget (a throttle, a Redis tank) tells its rates
                // as a list: its tightest is named, all of them listed.
                let rates = budget.rates();
                let (tightest, (rate, remaining)) = (rates.iter().copied().enumerate())
                    .min_by_key(|&(_, (_, now))| now)
                    .unwrap_or_else(|| (0, (budget.rate(), budget.available())));
                // Full: `max_n`, or less where the budget never holds as
                // much (a Redis tank's bank).
                let limit = rate.max_n();
                let to_full = (budget.wait_time(limit))
                    .or_else(|| budget.wait_time(limit.min(budget.capacity())))
                    .unwrap_or_else(|| rate.per());
                return Snapshot::new(rate, limit, remaining, to_full).of_rates(rates, tightest);
            }
        };
        // The tightest of its rates (`TankBuilder::also`): the least fuel
        // now, the first on a tie; what a newcomer could take under it (0
        // while a waiter holds the line).
        let rates = tank.rates();
        let (tightest, (rate, remaining)) = (rates.iter().copied().enumerate())
            .min_by_key(|&(_, (_, now))| now)
            .unwrap_or_else(|| (0, (tank.rate(), tank.available())));
        // Under several rates, the tightest one's fuel; under one, the
        // tank's (more than `remaining` while a waiter holds the line).
        let level = match rates.len() {
            0 | 1 => tank.level(),
            _ => remaining,
        };
        let limit = rate.max_n();
        let full = match tank.hardcap() {
            Hardcap::One => 1,
            _ => limit,
        };
        // Exact, from the tank's schedule; while paused, as if refilling.
        let to_full = tank.wait_time(full).unwrap_or_else(|| {
            let missing = u128::from(full.saturating_sub(level));
            let ns = missing
                .saturating_mul(rate.per().as_nanos())
                .div_ceil(u128::from(limit));
            Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
        });
        Snapshot::new(rate, limit, remaining, to_full).of_rates(rates, tightest)
    }

    /// The state of `key`'s tank: of its rates (its own, then those of
    /// `also`), the tightest, as for a tank. "Full" is `max_n`, or less
    /// where the key never holds as much (`Hardcap::One`, a Redis tank's
    /// bank). Read from `rates(key)` even for a local keyed tank of one
    /// rate: only they name the key's own rate (`rate_by`), which the
    /// tank's `rate()` is not.
    #[inline]
    pub(crate) fn read_keyed<K: 'static>(keyed: &KeyedShared<K>, key: &K) -> Snapshot {
        let rates = keyed.rates(key);
        let (tightest, (rate, level)) = (rates.iter().copied().enumerate())
            .min_by_key(|&(_, (_, now))| now)
            .unwrap_or_else(|| (0, (keyed.rate(), keyed.available(key))));
        let limit = rate.max_n();
        let to_full = (keyed.wait_time(key, limit))
            .or_else(|| keyed.wait_time(key, limit.min(keyed.capacity(key))))
            .unwrap_or_else(|| rate.per());
        Snapshot::new(rate, limit, level, to_full).of_rates(rates, tightest)
    }

    /// `limit`: the rate's `max_n`.
    fn new(rate: Rate, limit: u64, remaining: u64, to_full: Duration) -> Snapshot {
        let (quota, window) = quota(rate, limit);
        Snapshot {
            limit,
            remaining: remaining.min(limit),
            reset: ceil_secs(to_full),
            window,
            quota,
            several: None,
        }
    }

    /// `self`, of the rate `tightest` of `rates`, knowing every rate if
    /// there are several. (Inlined: a call moving the snapshot in and out
    /// cost a one-rate tank's headers 35 instructions.)
    #[inline(always)]
    fn of_rates(mut self, rates: Vec<(Rate, u64)>, tightest: usize) -> Snapshot {
        if rates.len() > 1 {
            self.several = Several::boxed(rates, tightest);
        }
        self
    }
}

/// The quota of `limit` fuel per `rate`'s `per`, in a window of `per` in
/// whole seconds rounded up (at least 1): `(q, w)`.
fn quota(rate: Rate, limit: u64) -> (u64, u64) {
    let per_ns = rate.per().as_nanos();
    let window = ceil_secs(rate.per()).max(1);
    let quota =
        u128::from(limit).saturating_mul(u128::from(window) * 1_000_000_000) / per_ns.max(1);
    (u64::try_from(quota).unwrap_or(u64::MAX), window)
}

/// The policy name of a tank's rate `index` (0: its first): `policy` (an
/// sf-string, quotes included) itself for the first, with `-2`, `-3`, …
/// for the others.
fn push_name(out: &mut String, policy: &str, index: usize) {
    match index {
        0 => out.push_str(policy),
        _ => {
            out.push_str(&policy[..policy.len() - 1]);
            let _ = write!(out, "-{}\"", index + 1);
        }
    }
}

impl Stamp {
    pub(crate) fn write(&self, map: &mut HeaderMap) {
        let snapshot = &self.snapshot;
        match &self.policy {
            None => {
                let tighter = map
                    .get(&REMAINING)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .is_some_and(|theirs| theirs < snapshot.remaining);
                if !tighter {
                    map.insert(LIMIT, number(snapshot.limit));
                    map.insert(REMAINING, number(snapshot.remaining));
                    map.insert(RESET, number(snapshot.reset));
                }
            }
            Some(policy) if let Some(several) = &snapshot.several => {
                // Every rate's policy; the state of the tightest, by name.
                let mut quotas = String::new();
                for (index, &(rate, _)) in several.rates.iter().enumerate() {
                    if index > 0 {
                        quotas.push_str(", ");
                    }
                    push_name(&mut quotas, policy, index);
                    let (q, w) = quota(rate, rate.max_n());
                    let _ = write!(quotas, ";q={q};w={w}");
                }
                let mut state = String::new();
                push_name(&mut state, policy, several.tightest);
                let _ = write!(state, ";r={};t={}", snapshot.remaining, snapshot.reset);
                // The names are escaped sf-strings and the rest digits: valid.
                if let (Ok(quotas), Ok(state)) =
                    (HeaderValue::try_from(quotas), HeaderValue::try_from(state))
                {
                    map.append(POLICY, quotas);
                    map.append(RATELIMIT, state);
                }
            }
            Some(policy) => {
                let quota = format!("{policy};q={};w={}", snapshot.quota, snapshot.window);
                let state = format!("{policy};r={};t={}", snapshot.remaining, snapshot.reset);
                // `policy` is an escaped sf-string and the rest digits: valid.
                if let (Ok(quota), Ok(state)) =
                    (HeaderValue::try_from(quota), HeaderValue::try_from(state))
                {
                    map.append(POLICY, quota);
                    map.append(RATELIMIT, state);
                }
            }
        }
    }
}
