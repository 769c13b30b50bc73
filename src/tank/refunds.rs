//! [`Refunds`]: giving fuel back exactly.
//!
//! Fuel taken and never spent comes back: [`Tank::give_back`](crate::Tank::give_back)
//! (of a whole token or a part of one), a waiter dropped after its grant.
//! Under `Window` that is exact by construction (the grant leaves the log).
//! Under `Unbounded` too: there is no cap, so `tat −= n·T` undoes the take
//! whatever happened since. Under `Limit` and `One` the cap makes it subtle.
//!
//! # The rule
//!
//! Giving back `n` fuel should leave the bucket as if that take had never
//! happened, everything else as it was. Without it the bucket would have
//! held `n` more fuel ever since — until that extra fuel would have run into
//! the cap, and been forgotten there. The bucket forgets fuel only at a take
//! (the `max` in `bucket.rs`), and each take finds some *headroom*: how far
//! the bucket was from full, in ticks. So of `n·T` ticks given back, the
//! fuel that would have survived is
//!
//! ```text
//! min(n·T, headroom of every take since the grant)
//! ```
//!
//! and that is exactly what goes back (a fraction of a fuel included); the
//! cuts since keep that much less headroom, so two grants given back
//! against one cut share its room instead of each getting all of it. Fuel
//! that accrues beyond the cap *between* takes needs nothing: the next take
//! forgets it anyway, given back or not. So a refund is exact whatever other
//! permits, tokens and waiters did, and can never mint fuel.
//!
//! # What is remembered
//!
//! Not every take: only those with less headroom than some grant that may
//! still come back could use — less than the *guard*, which is the largest
//! `n·T` of a grant since the last recorded take (a take with headroom `h`
//! cuts every earlier grant down to `h`, so `h` becomes the guard). A busy
//! tank never fills, its takes find plenty of room, and nothing is
//! recorded; a take from a nearly full bucket after a grant that may come
//! back is recorded as a *cut* `(sequence, headroom)`. A grant remembers
//! the sequence number of the next cut; its refund is capped by the least
//! headroom among the cuts from there on. Cuts are kept with headroom
//! increasing from oldest to newest (a newer cut with less headroom makes
//! the older ones irrelevant), at most [`MAX_CUTS`] of them: past that the
//! two oldest merge into the older's headroom and the newer's sequence, which
//! can only make a refund smaller, never larger.
//!
//! Takes without the lock (`has_fuel`, one compare-and-swap) read the guard
//! from the word's parameters and leave the cutting takes to the core; a
//! grant made without the lock raises the guard before its
//! compare-and-swap, so a take that sees its grant also sees its guard. The
//! core only ever raises the word's guard, except when a cut lowers it: then
//! it also changes the word's generation, so that a compare-and-swap begun
//! before, whose raise the new value may have overwritten, fails and
//! retries (loom checks both, in `word.rs`).
//!
//! One kind of cut needs no lock: a grant that may come back, made from a
//! full bucket (no headroom), as every request to an idle service is. It
//! leaves nothing of the grants before it, so the ledger needs only its
//! place: the grant takes the next sequence number itself, before its
//! compare-and-swap, and the core, when it next seizes the word, records
//! one cut with no headroom at the latest number taken.
//!
//! A rate change ends it all: fuel granted under another rate is spent.
//!
//! # What is not exact
//!
//! The guard is the largest grant, not the sum of the grants that may come
//! back: a take with room for the largest but not for all of them is not a
//! cut, and if several of them then come back, together they may return
//! more than the room it found (each alone is exact):
//! `tests/refunds.rs::two_grants_before_a_take_with_room_for_one_share_it`
//! (ignored while this stands) takes 5 and 5 from a full tank of 10, takes
//! 1 when 3 have accrued, gives both back and finds 10 where 9 is right.
//!
//! Closing it needs the headroom of every take that happens while the
//! grants that may come back add up to more than it, and the tank cannot
//! know how many of them have been spent (a dropped [`Fuel`] tells nobody):
//! a guard that sums them grows with every grant of a busy tank and sends
//! each of its takes to the lock; a guard that shrinks as fuel is spent
//! needs a handle in every token and two more atomic operations a grant.
//!
//! [`Fuel`]: crate::Fuel

use super::permit::Stamp;

/// Cuts remembered at most.
const MAX_CUTS: usize = 32;

#[derive(Debug, Default, Clone)]
pub(crate) struct Refunds {
    /// Rate changes so far.
    rate: u64,
    /// Cuts recorded so far: the sequence number of the next.
    next: u64,
    /// `(sequence, headroom)`, headroom strictly increasing.
    cuts: Vec<(u64, i128)>,
    /// Takes with less headroom than this are cuts, in ticks.
    guard: i128,
    /// The guard was lowered since the word last saw it.
    lowered: bool,
}

impl Refunds {
    /// A take found `headroom`; call before [`Refunds::stamp`] for the
    /// same take.
    pub(crate) fn on_take(&mut self, headroom: i128) {
        if headroom >= self.guard {
            return;
        }
        while self.cuts.last().is_some_and(|&(_, h)| h >= headroom) {
            self.cuts.pop();
        }
        if self.cuts.len() == MAX_CUTS {
            let (_, oldest) = self.cuts.remove(0);
            self.cuts[0].1 = oldest;
        }
        self.cuts.push((self.next, headroom));
        self.next += 1;
        self.guard = headroom;
        self.lowered = true;
    }

    /// A grant of `span` ticks (`n·T`) that may come back: its stamp.
    pub(crate) fn stamp(&mut self, span: i128) -> Stamp {
        self.guard = self.guard.max(span);
        Stamp::Gcra {
            cut: self.next,
            rate: self.rate,
        }
    }

    /// The stamp of a `Window` grant that leaves the window at `leave`.
    pub(crate) fn stamp_window(&self, leave: u64) -> Stamp {
        Stamp::Window {
            leave,
            rate: self.rate,
        }
    }

    /// When a `Window` grant stamped `stamp` leaves the window, if it was
    /// made under the current rate.
    pub(crate) fn window_leave(&self, stamp: Stamp) -> Option<u64> {
        match stamp {
            Stamp::Window { leave, rate } if rate == self.rate => Some(leave),
            _ => None,
        }
    }

    /// How many of the `span` ticks granted with `stamp` can go back; the
    /// cuts since the grant keep that much less room for the grants that
    /// come back after it (two given back against one cut share its room).
    pub(crate) fn give_back(&mut self, span: i128, stamp: Stamp) -> i128 {
        let Stamp::Gcra { cut, rate } = stamp else {
            return 0;
        };
        if rate != self.rate {
            return 0;
        }
        let first = self.cuts.partition_point(|&(seq, _)| seq < cut);
        let Some(&(_, headroom)) = self.cuts.get(first) else {
            return span;
        };
        let back = span.min(headroom).max(0);
        for cut in &mut self.cuts[first..] {
            cut.1 -= back;
        }
        // Older cuts with as much room as the least since are irrelevant
        // again (headroom strictly increasing).
        let least = self.cuts[first].1;
        let older = self.cuts[..first].partition_point(|&(_, h)| h < least);
        self.cuts.drain(older..first);
        back
    }

    /// The rate changed: every grant before is spent.
    pub(crate) fn rate_changed(&mut self) {
        self.rate = self.rate.wrapping_add(1);
        self.cuts.clear();
        self.guard = 0;
        self.lowered = true;
    }

    /// Whether the guard was lowered since the last call: then the word
    /// must take the new guard as it is, and change its generation so that
    /// no compare-and-swap begun before succeeds (it would have raised the
    /// old guard, not this one).
    pub(crate) fn take_lowered(&mut self) -> bool {
        std::mem::take(&mut self.lowered)
    }

    pub(crate) fn guard(&self) -> i128 {
        self.guard
    }

    /// Takes in the guard raised by grants made without the lock.
    pub(crate) fn raise_guard(&mut self, guard: i128) {
        self.guard = self.guard.max(guard);
    }

    /// Takes in the cuts made without the lock: each grant from a full
    /// bucket took the next sequence number, up to `next` (exclusive). A
    /// cut with no headroom leaves nothing of any grant before it, so the
    /// latest stands for all of them, and for every older cut.
    pub(crate) fn cuts_without_lock(&mut self, next: u64) {
        if next > self.next {
            self.cuts.clear();
            self.cuts.push((next - 1, 0));
            self.next = next;
        }
    }

    /// The sequence number and rate a grant made now would be stamped with
    /// (mirrored in the word for grants made without the lock).
    pub(crate) fn stamp_parts(&self) -> (u64, u64) {
        (self.next, self.rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_with_room_are_not_remembered() {
        let mut refunds = Refunds::default();
        let a = refunds.stamp(10);
        refunds.on_take(10);
        refunds.on_take(25);
        assert!(refunds.cuts.is_empty());
        assert_eq!(refunds.give_back(10, a), 10);
    }

    #[test]
    fn a_cut_caps_earlier_grants_only() {
        let mut refunds = Refunds::default();
        let a = refunds.stamp(10);
        refunds.on_take(4);
        let b = refunds.stamp(10);
        refunds.on_take(7);
        assert_eq!(
            refunds.clone().give_back(10, a),
            4,
            "the least headroom since"
        );
        assert_eq!(refunds.clone().give_back(10, b), 7);
        refunds.on_take(1);
        assert_eq!(refunds.cuts.len(), 1, "older cuts with more room go");
        assert_eq!(refunds.clone().give_back(10, a), 1);
        assert_eq!(refunds.clone().give_back(10, b), 1);
    }

    #[test]
    fn grants_given_back_against_one_cut_share_its_room() {
        let mut refunds = Refunds::default();
        let a = refunds.stamp(10);
        let b = refunds.stamp(10);
        refunds.on_take(4);
        let c = refunds.stamp(10);
        refunds.on_take(9);
        assert_eq!(refunds.give_back(10, a), 4);
        assert_eq!(refunds.give_back(10, b), 0, "a used the room");
        assert_eq!(refunds.give_back(10, c), 5, "9 less the 4 a took back");
        assert_eq!(refunds.give_back(10, c), 0);
    }

    #[test]
    fn merging_cuts_only_ever_gives_back_less() {
        let mut refunds = Refunds::default();
        let mut stamps = Vec::new();
        for h in 0..(MAX_CUTS as i128 + 10) {
            stamps.push((refunds.stamp(1000), h));
            refunds.on_take(h);
        }
        assert_eq!(refunds.cuts.len(), MAX_CUTS);
        for (stamp, h) in stamps {
            let back = refunds.clone().give_back(1000, stamp);
            assert!(back <= h, "{back} > {h}");
        }
    }

    #[test]
    fn a_rate_change_spends_everything_before() {
        let mut refunds = Refunds::default();
        let a = refunds.stamp(10);
        refunds.rate_changed();
        assert_eq!(refunds.give_back(10, a), 0);
        let b = refunds.stamp(10);
        assert_eq!(refunds.give_back(10, b), 10);
    }
}
