//! Fuel Redis has granted to this instance and that it has not spent yet.
//!
//! # From Redis's clock to this one
//!
//! The script answers with times relative to its own `now`, `s`, which
//! happened here somewhere in `[q, r]`: the call's sending and answer, or
//! the tighter interval that the store's clock bounds give (`offset.rs`).
//! A Redis time `s + d` is then a local time in `[q + d, r + d]`, and a unit
//! Redis allows from `s + v` to `s + e` is spent here only from `r + v`
//! (the latest that `s + v` can be) to before `q + e` (the earliest that
//! `s + e` can be): a window shorter by `r − q`, inside Redis's one
//! whatever `s` was. Durations are also stretched (starts) or shrunk (ends)
//! by 1/10 000, so that clocks whose rates differ by up to 100 ppm keep the
//! promise.
//!
//! # Runs
//!
//! A grant is a *run* of units:
//!
//! - `Each`: unit `j` is spendable from `v_j = max(0, first + j·spacing)`
//!   for `life` (GCRA's banked and coming slots; each segment of a `Window`
//!   grant, with `spacing = 0`). Starts and ends grow with `j`, so units
//!   are spent and expire from the front. A `Window` segment that is spent
//!   or expired is *finished*: the next call tells Redis, which ends its
//!   hold then.
//! - `Paced`: units spent in order, at least one interval apart on this
//!   clock, the first no sooner than its slot and all before the batch's
//!   end (`One`).
//! - `Loose`: units given back by a future dropped after they were granted
//!   to it, spendable until the earliest end of those units.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::script::{Granted, Kind};

/// Clock rates may differ by this fraction (100 ppm).
const DRIFT: u64 = 10_000;

#[derive(Debug)]
enum Run {
    Each(Each),
    Paced {
        earliest: Instant,
        spacing: Duration,
        end: Instant,
        left: u64,
    },
    Loose {
        left: u64,
        until: Instant,
    },
}

/// Units `next..count` of a grant, unit `j` spendable from Redis's
/// `first + j·spacing` for `life`.
#[derive(Debug)]
struct Each {
    /// When the call was sent (`q`) and answered (`r`).
    sent: Instant,
    answered: Instant,
    first: i64,
    spacing: u64,
    life: u64,
    next: u64,
    count: u64,
    /// `Window`: the batch's sequence number in Redis's log.
    batch: Option<u64>,
}

impl Each {
    /// Unit `j`'s offset from Redis's now, ns.
    fn offset(&self, j: u64) -> u64 {
        let v = i128::from(self.first) + i128::from(self.spacing) * i128::from(j);
        u64::try_from(v.max(0)).unwrap_or(u64::MAX)
    }

    /// When unit `j` becomes spendable here (the latest its start can be).
    fn start(&self, j: u64) -> Instant {
        after(self.answered, stretch(self.offset(j)))
    }

    /// When unit `j` stops being spendable here (the earliest its end can
    /// be).
    fn end(&self, j: u64) -> Instant {
        after(self.sent, shrink(self.offset(j).saturating_add(self.life)))
    }
}

/// Where a taken unit came from, so that a dropped future can give it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// From a `Window` batch, which may already be reported finished: not
    /// given back.
    Window,
    /// From `Each` or `Loose` runs: spendable by someone else until then.
    Until(Instant),
    /// From a `Paced` run, taken at this instant: back only if nothing was
    /// spent since.
    Paced(Instant),
}

fn after(at: Instant, ns: u64) -> Instant {
    at.checked_add(Duration::from_nanos(ns))
        .unwrap_or(at + Duration::from_secs(86_400 * 365))
}

fn stretch(ns: u64) -> u64 {
    ns.saturating_add(ns / DRIFT)
}

fn shrink(ns: u64) -> u64 {
    ns - ns / DRIFT
}

impl Run {
    /// How many units are left.
    fn left(&self) -> u64 {
        match *self {
            Run::Each(Each { next, count, .. }) => count - next,
            Run::Paced { left, .. } | Run::Loose { left, .. } => left,
        }
    }

    /// Drops the units that can no longer be spent; returns how many.
    fn expire(&mut self, now: Instant) -> u64 {
        match self {
            Run::Each(each) => {
                let start = each.next;
                while each.next < each.count && each.end(each.next) <= now {
                    if each.spacing == 0 {
                        each.next = each.count;
                    } else {
                        each.next += 1;
                    }
                }
                each.next - start
            }
            Run::Paced {
                earliest,
                end,
                left,
                ..
            } => {
                if now >= *end || *earliest >= *end {
                    std::mem::take(left)
                } else {
                    0
                }
            }
            Run::Loose { left, until } => {
                if now >= *until {
                    std::mem::take(left)
                } else {
                    0
                }
            }
        }
    }

    /// How many units are spendable at `now` (counting at most `n`), once
    /// expired ones are dropped.
    fn available(&self, now: Instant, n: u64) -> u64 {
        match *self {
            Run::Each(ref each) => {
                let (next, count) = (each.next, each.count);
                let mut j = next;
                while j < count && j - next < n && each.start(j) <= now {
                    if each.spacing == 0 {
                        return (count - next).min(n);
                    }
                    j += 1;
                }
                j - next
            }
            Run::Paced { earliest, left, .. } => u64::from(left > 0 && earliest <= now),
            Run::Loose { left, .. } => left.min(n),
        }
    }

    /// Takes `n` units, all available. Returns where they came from.
    fn take(&mut self, n: u64, now: Instant) -> Origin {
        match self {
            Run::Each(each) => {
                let end = each.end(each.next);
                each.next += n;
                match each.batch {
                    Some(_) => Origin::Window,
                    None => Origin::Until(end),
                }
            }
            Run::Paced {
                earliest,
                spacing,
                left,
                ..
            } => {
                *left -= n;
                *earliest = now + *spacing;
                Origin::Paced(now)
            }
            Run::Loose { left, until } => {
                *left -= n;
                Origin::Until(*until)
            }
        }
    }

    /// When the next unit becomes spendable.
    fn next_start(&self) -> Option<Instant> {
        match *self {
            Run::Each(ref each) => (each.next < each.count).then(|| each.start(each.next)),
            Run::Paced { earliest, left, .. } => (left > 0).then_some(earliest),
            // Spendable now: served before anyone sleeps.
            Run::Loose { .. } => None,
        }
    }
}

/// The runs of units this instance holds, in the order they came.
#[derive(Debug, Default)]
pub(crate) struct Reserve {
    runs: VecDeque<Run>,
    /// `Window` batches gone from the reserve (spent or expired), not yet
    /// reported to Redis: (sequence number, count).
    finished: Vec<(u64, u64)>,
}

/// The most finished batches reported in one call.
const MAX_FINISHED: usize = 16;

impl Reserve {
    /// Adds a grant answered at `answered` to a call sent at `sent`.
    /// Returns how many of its units can ever be spent here (a round trip
    /// longer than a unit's hold leaves it none).
    pub(crate) fn add(&mut self, granted: &Granted, sent: Instant, answered: Instant) -> u64 {
        let runs: Vec<Run> = match granted.kind {
            Kind::Paced => {
                let (Ok(first), Ok(last_end)) = (
                    u64::try_from(granted.first.max(0)),
                    u64::try_from(granted.last_end),
                ) else {
                    return 0;
                };
                vec![Run::Paced {
                    earliest: after(answered, stretch(first)),
                    spacing: Duration::from_nanos(stretch(granted.spacing).saturating_add(1)),
                    end: after(sent, shrink(last_end)),
                    left: granted.count,
                }]
            }
            Kind::Each => vec![Run::Each(Each {
                sent,
                answered,
                first: granted.first,
                spacing: granted.spacing,
                life: granted.life,
                next: 0,
                count: granted.count,
                batch: None,
            })],
            Kind::Window => granted
                .segments
                .iter()
                .map(|&(from, count, seq)| {
                    Run::Each(Each {
                        sent,
                        answered,
                        first: from,
                        spacing: 0,
                        life: granted.life,
                        next: 0,
                        count,
                        batch: Some(seq),
                    })
                })
                .collect(),
        };
        let mut kept = 0;
        for mut run in runs {
            run.expire(answered);
            kept += run.left();
            self.runs.push_back(run);
        }
        self.drop_empty();
        kept
    }

    /// Drops units that can no longer be spent; returns how many.
    pub(crate) fn expire(&mut self, now: Instant) -> u64 {
        let mut expired = 0;
        for run in &mut self.runs {
            expired += run.expire(now);
        }
        self.drop_empty();
        expired
    }

    /// Removes runs with nothing left, noting finished `Window` batches.
    fn drop_empty(&mut self) {
        let finished = &mut self.finished;
        self.runs.retain(|run| {
            if run.left() > 0 {
                return true;
            }
            if let Run::Each(Each {
                batch: Some(seq),
                count,
                ..
            }) = *run
                && finished.len() < MAX_FINISHED
            {
                finished.push((seq, count));
            }
            false
        });
    }

    /// The finished `Window` batches to report, forgotten here.
    pub(crate) fn take_finished(&mut self) -> Vec<(u64, u64)> {
        std::mem::take(&mut self.finished)
    }

    /// Units held, spendable now or later.
    pub(crate) fn left(&self) -> u64 {
        self.runs.iter().map(Run::left).sum()
    }

    /// Units spendable at `now`, one after another (after `expire`).
    pub(crate) fn spendable(&self, now: Instant) -> u64 {
        self.runs
            .iter()
            .map(|run| run.available(now, u64::MAX))
            .sum()
    }

    /// Whether `n` units are spendable together at `now` (after `expire`).
    pub(crate) fn can_take(&self, n: u64, now: Instant) -> bool {
        let mut found = 0;
        for run in &self.runs {
            found += run.available(now, n - found);
            if found >= n {
                return true;
            }
        }
        false
    }

    /// Takes `n` units spendable together at `now`, if there are; returns
    /// where the first came from. Call `expire` first.
    pub(crate) fn take(&mut self, n: u64, now: Instant) -> Option<Origin> {
        if n == 0 || !self.can_take(n, now) {
            return None;
        }
        let mut origin: Option<Origin> = None;
        let mut needed = n;
        for run in &mut self.runs {
            let here = run.available(now, needed);
            if here == 0 {
                continue;
            }
            let from = run.take(here, now);
            origin = Some(match (origin, from) {
                (Some(Origin::Until(a)), Origin::Until(b)) => Origin::Until(a.min(b)),
                (_, Origin::Window) => Origin::Window,
                (Some(kept), _) => kept,
                (None, from) => from,
            });
            needed -= here;
            if needed == 0 {
                break;
            }
        }
        self.drop_empty();
        origin
    }

    /// Takes, for the lane, up to `most` units of the front run that are
    /// spendable now and end together (banked units of a GCRA batch, or a
    /// loose run); returns how many and their end. Call `expire` first.
    pub(crate) fn take_lane(&mut self, now: Instant, most: u64) -> Option<(u64, Instant)> {
        let run = self.runs.front_mut()?;
        let (count, until) = match &*run {
            Run::Each(each) if each.batch.is_none() => {
                let (first, spacing, next) = (each.first, each.spacing, each.next);
                let start = each.offset(next);
                if run.available(now, 1) == 0 {
                    return None;
                }
                // Units with the same start as the next one (all of them
                // if spacing is 0, else the banked ones, whose start is 0).
                let same = if spacing == 0 {
                    each.count - next
                } else if start == 0 {
                    let banked =
                        u64::try_from((-i128::from(first)) / i128::from(spacing) + 1).unwrap_or(0);
                    banked.saturating_sub(next).max(1)
                } else {
                    1
                };
                (same.min(each.count - next).min(most), each.end(next))
            }
            Run::Loose { left, until } => ((*left).min(most), *until),
            _ => return None,
        };
        if count == 0 || until <= now {
            return None;
        }
        run.take(count, now);
        self.drop_empty();
        Some((count, until))
    }

    /// Gives back `n` units taken from `origin` and never spent.
    pub(crate) fn give_back(&mut self, n: u64, origin: Origin, now: Instant) {
        match origin {
            Origin::Until(until) if until > now => {
                self.runs.push_front(Run::Loose { left: n, until });
            }
            Origin::Until(_) | Origin::Window => {}
            Origin::Paced(taken) => {
                // Back only if the run it came from spent nothing since:
                // then its next slot is exactly one spacing after `taken`.
                for run in &mut self.runs {
                    if let Run::Paced {
                        earliest,
                        spacing,
                        left,
                        ..
                    } = run
                        && *earliest == taken + *spacing
                    {
                        *earliest = taken;
                        *left += n;
                        return;
                    }
                }
            }
        }
    }

    /// When the next unit becomes spendable, if any is held.
    pub(crate) fn next_start(&self) -> Option<Instant> {
        self.runs.iter().filter_map(Run::next_start).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn banked_units_are_spendable_at_once_and_expire_after_their_hold() {
        let q = Instant::now();
        let r = q + Duration::from_micros(100);
        let mut reserve = Reserve::default();
        // Three banked (first = -2 intervals), then one each ms.
        assert_eq!(
            reserve.add(&Granted::each(5, -2 * MS as i64, MS, 10 * MS), q, r),
            5
        );
        assert!(reserve.can_take(3, r));
        assert!(!reserve.can_take(4, r));
        assert!(reserve.take(3, r).is_some());
        assert!(reserve.take(1, r).is_none());
        // The 4th is due 1 ms after Redis's now: here, 1 ms (and a bit)
        // after the answer.
        let due = r + Duration::from_nanos(MS + MS / DRIFT);
        assert!(!reserve.can_take(1, due - Duration::from_nanos(1)));
        assert!(reserve.can_take(1, due));
        assert_eq!(reserve.next_start(), Some(due));
        // Each unit lives 10 ms from its start, counted from when the call
        // was sent.
        assert_eq!(reserve.expire(q + Duration::from_millis(11)), 1);
        assert_eq!(reserve.left(), 1);
        assert_eq!(reserve.expire(q + Duration::from_millis(12)), 1);
        assert_eq!(reserve.left(), 0);
    }

    #[test]
    fn a_round_trip_longer_than_the_hold_keeps_nothing() {
        let q = Instant::now();
        let r = q + Duration::from_millis(5);
        let mut reserve = Reserve::default();
        assert_eq!(reserve.add(&Granted::each(4, 0, 0, 2 * MS), q, r), 0);
        assert_eq!(reserve.left(), 0);
    }

    #[test]
    fn paced_units_keep_their_spacing_and_the_batch_end() {
        let q = Instant::now();
        let r = q + Duration::from_micros(50);
        let mut reserve = Reserve::default();
        let batch = Granted {
            kind: Kind::Paced,
            count: 3,
            first: 0,
            spacing: MS,
            life: 0,
            last_end: (2 * MS + MS / 2) as i64,
            segments: Vec::new(),
        };
        assert_eq!(reserve.add(&batch, q, r), 3);
        assert!(reserve.take(1, r).is_some());
        assert!(!reserve.can_take(1, r + Duration::from_micros(999)));
        // Late by 1 ms: the second unit, then the third is a spacing later,
        // past the batch's end: lost.
        let late = r + Duration::from_millis(2);
        assert!(reserve.take(1, late).is_some());
        let third = late + Duration::from_nanos(MS + MS / DRIFT + 1);
        assert_eq!(reserve.expire(third), 1);
        assert_eq!(reserve.left(), 0);
    }

    #[test]
    fn given_back_units_are_spendable_again() {
        let q = Instant::now();
        let mut reserve = Reserve::default();
        reserve.add(&Granted::each(1, 0, 0, 10 * MS), q, q);
        let origin = reserve.take(1, q).unwrap();
        assert!(!reserve.can_take(1, q));
        reserve.give_back(1, origin, q);
        assert!(reserve.can_take(1, q));

        let batch = Granted {
            kind: Kind::Paced,
            count: 2,
            first: 0,
            spacing: MS,
            life: 0,
            last_end: 5 * MS as i64,
            segments: Vec::new(),
        };
        let mut paced = Reserve::default();
        paced.add(&batch, q, q);
        let origin = paced.take(1, q).unwrap();
        paced.give_back(1, origin, q);
        assert!(paced.can_take(1, q), "nothing spent since: exact");
        let first = paced.take(1, q).unwrap();
        let later = q + Duration::from_millis(2);
        assert!(paced.take(1, later).is_some());
        paced.give_back(1, first, later);
        assert_eq!(paced.left(), 0, "spent since: lost, never respaced");
    }
}
