//! [`AllOf`] and [`KeyedAllOf`]: several budgets as one, all or nothing.
//!
//! A grant takes from every budget at once, synchronously, or from none:
//! fuel taken from the first budgets goes back the moment a later one
//! refuses, before anything waits. A waiter therefore never holds one
//! budget's fuel while it waits on another, and a wait dropped at any
//! point holds none to lose.
//!
//! The waiters of one combination stand in its own FIFO line (one per key
//! for [`KeyedAllOf`]). Only the head waits on the budgets: in the line of
//! the budget furthest from having the fuel (the longest
//! [`wait_time`](Budget::wait_time)), through that budget's own
//! [`wait`](Budget::wait). When that budget grants, the head takes from the
//! others at once; if one of them cannot follow, everything goes back (the
//! granted fuel to the head of that budget's line) and the head waits in
//! the line of the budget now furthest. Why this way and not by sleeping
//! for the longest `wait_time` and then trying:
//!
//! - it never over-grants: every grant is each budget's own;
//! - it never spins: each round waits in a budget's line, for fuel that
//!   budget has not got (a budget that granted in the round before has
//!   the fuel back, so the furthest is another one);
//! - it does not starve behind direct users of a budget: a `try_take` never
//!   overtakes a budget's line, so a head that only tried after sleeping
//!   would never be served by a budget whose own line is never empty; in
//!   that budget's line it is served in its turn.
//!
//! A per-key budget's fuel cannot be given back ([`KeyedBudget`]), so the
//! key is taken last, after the others granted, and waited for by its
//! `wait_time` on the combination's clock rather than in its line.

use std::any::Any;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use crate::clock::{Clock, ClockSource, saturating_ns};
use crate::sync::{AtomicU64, Mutex, Ordering, lock};
use crate::timer::Timer;
use crate::{
    Budget, BudgetWait, Error, Fuel, KeyedBudget, KeyedTank, Monitor, Rate, Tank, Throttle,
    Unavailable,
};

/// Several [`Budget`]s as one: a grant takes `n` from every one of them or
/// from none. Per user, per route and global; in-process, in shared memory
/// and in Redis, mixed.
///
/// It is itself a [`Budget`], so it nests and `fueltank-tower`'s
/// `ThrottleLayer` draws on it as on a tank. What it says of itself:
///
/// | method | what |
/// |---|---|
/// | [`wait_time`](Budget::wait_time) | the longest of the budgets' (`None` if any is `None`), for the fuel asked and that of the combination's line behind its head |
/// | [`available`](Budget::available), [`capacity`](Budget::capacity) | the least of the budgets' (`available` is 0 while the combination's line is not empty) |
/// | [`rate`](Budget::rate) | the tightest: the fewest fuel per second in the long run (`100/min` before `5/s`); of equal ones, the first |
/// | [`unavailable`](Budget::unavailable) | the first budget's that is down: it names that budget's store |
///
/// Fuel is taken from the budgets in the order they were given, and goes
/// back to them exactly if a later one refuses. A budget that cannot take
/// fuel back (a `fueltank-redis` tank) spends what it granted for a
/// request another budget then refused: give such budgets last (the last
/// budget's grant is never given back, as nothing comes after it).
///
/// The fuel of a grant is taken for good from the budgets: it is spent,
/// not given back, by [`give_back`](Budget::give_back) (the trait's
/// default, as for a Redis tank). So a consumer that holds the
/// combination's fuel and then gives it back spends it from every budget:
/// `fueltank-tower`'s `ThrottleService` dropped between `poll_ready` and
/// `call` does.
///
/// A [`Throttle`] that counts its fuel (`auto_emit`) counts the
/// combination's grants only: fuel it granted and got back because
/// another budget refused is not counted.
///
/// # Fairness
///
/// Among the callers of one combination (and its clones): first come,
/// first served. A wait comes at its first poll; it is served before any
/// that came later, and [`try_take`](Budget::try_take) never overtakes a
/// waiter.
///
/// Against direct users of a budget: the head of the line waits in that
/// budget's own line, served in its turn like a direct user, holding
/// nothing; when it is served, the other budgets must have the fuel at
/// that moment. So a combination is never starved by the direct users of
/// one budget, but two budgets each kept busy by their own direct users
/// can delay it for as long as they stay busy: without holding one
/// budget's fuel while waiting on another, nothing can promise more.
///
/// # Time
///
/// A `max_wait` counts on the combination's [clock](AllOf::clock), and
/// each budget's wait counts the part of it that remains on its own: give
/// the combination the clock of its budgets if they have a
/// [`ManualClock`](crate::clock::ManualClock). On a clock that is not real
/// time, the combination also ends the wait at its deadline while its head
/// waits on a budget whose clock has not reached it.
///
/// # Cancel safety
///
/// The wait of [`wait`](Budget::wait) holds no budget's fuel between two
/// polls: dropped at any point, it gives nothing to anyone, leaves the
/// line, and the next waiter becomes the head.
///
/// # Examples
///
/// A per-minute and a per-second limit on one call, costs 1 and 3:
///
/// ```
/// use fueltank::{AllOf, Budget, Hardcap, Rate, Tank};
///
/// let minute = Tank::builder("100/min".parse()?).hardcap(Hardcap::Window).build()?;
/// let second = Tank::builder("5/s".parse()?).hardcap(Hardcap::Window).build()?;
/// let both = AllOf::new(minute.clone()).and(second.clone());
/// assert!(both.take(3));
/// assert!(!both.take(3)); // 2 left this second: nothing is taken from either
/// assert_eq!((minute.level(), second.level()), (97, 2));
/// assert_eq!(both.capacity(), 5);
/// assert_eq!(both.rate(), "100/min".parse::<Rate>()?);
/// # Ok::<(), fueltank::Error>(())
/// ```
///
/// Waiting, on a manual clock:
///
/// ```
/// use fueltank::clock::ManualClock;
/// use fueltank::{AllOf, Budget, Tank};
/// use std::time::Duration;
///
/// let clock = ManualClock::new();
/// let tank = |rate: &str| {
///     Tank::builder(rate.parse().unwrap()).initial(0).clock(clock.clone()).build().unwrap()
/// };
/// let (slow, fast) = (tank("1/s"), tank("10/s"));
/// let both = AllOf::new(slow.clone()).and(fast.clone()).clock(clock.clone());
/// let mut wait = both.wait(1, Some(Duration::from_secs(2)));
/// let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
/// assert!(wait.as_mut().poll(&mut cx).is_pending());
/// clock.advance(Duration::from_millis(100));
/// assert!(fast.take(1)); // the combination holds none of `fast` while it waits
/// clock.advance(Duration::from_millis(900));
/// assert!(matches!(wait.as_mut().poll(&mut cx), std::task::Poll::Ready(Ok(Some(_)))));
/// ```
#[derive(Clone)]
pub struct AllOf {
    shared: Arc<Shared<()>>,
}

/// A [`KeyedBudget`] and one or more [`Budget`]s as one [`KeyedBudget`]:
/// a request passes only if its key and every budget have the fuel, and
/// one refused by either spends nothing from the other (per IP, and
/// global). `fueltank-tower`'s `KeyedThrottleLayer::and` is one.
///
/// As [`AllOf`], with these differences: the key's fuel is taken last,
/// once every budget granted (a per-key budget takes nothing back); the
/// line is one per key, so a key waiting does not hold up another; and the
/// key, when it is the furthest from having fuel, is waited for by its
/// [`wait_time`](KeyedBudget::wait_time) on the combination's clock, not in
/// the key's own line (whose fuel could not be given back if a budget then
/// refused), so a direct user of the same key can keep it waiting.
///
/// [`check`](KeyedBudget::check) is the keyed budget's;
/// [`unavailable`](KeyedBudget::unavailable) the key's, else the first
/// budget's that is down.
///
/// # Cancel safety
///
/// As for [`AllOf`]: the wait of [`wait`](KeyedBudget::wait) holds no fuel
/// between two polls; dropped at any point, it leaves the key's line.
///
/// # Examples
///
/// ```
/// use fueltank::{KeyedAllOf, KeyedBudget, KeyedTank, Tank};
///
/// let per_ip = KeyedTank::<&str>::new("2/s".parse()?);
/// let global = Tank::builder("100/s".parse()?).initial(3).build()?;
/// let limit = KeyedAllOf::new(per_ip.clone()).and(global.clone());
/// assert!(limit.take(&"ada", 2));
/// assert!(!limit.take(&"ada", 1)); // ada's key is dry: the global fuel stays
/// assert_eq!(global.level(), 1);
/// assert!(limit.take(&"bob", 1));
/// assert!(!limit.take(&"eve", 1)); // the global budget is dry: eve's key stays full
/// assert_eq!(per_ip.level(&"eve"), 2);
/// # Ok::<(), fueltank::Error>(())
/// ```
pub struct KeyedAllOf<K> {
    shared: Arc<Shared<K>>,
}

impl<K> Clone for KeyedAllOf<K> {
    fn clone(&self) -> KeyedAllOf<K> {
        KeyedAllOf {
            shared: self.shared.clone(),
        }
    }
}

/// What a combination holds: its budgets, its clock, its lines.
struct Shared<K> {
    budgets: Vec<Arc<dyn Budget>>,
    /// The monitors of the `auto_emit` throttles among `budgets` (held
    /// without that rule, see [`held`]): each grant of the combination is
    /// counted there, once kept.
    emit: Vec<Monitor>,
    keyed: Option<Arc<dyn KeyedBudget<K>>>,
    clock: ClockSource,
    /// Waiters in every line: none, and nobody needs the lock to take.
    waiting: AtomicU64,
    lines: Mutex<Lines<K>>,
}

struct Lines<K> {
    next: u64,
    /// Each waiter's ticket, the fuel it waits for, its waker.
    by_key: HashMap<K, VecDeque<(u64, u64, Option<Waker>)>>,
}

/// `parts` and `budget` after them, as a combination holds it: a
/// [`Throttle`] that counts the fuel taken from it (`auto_emit`) would
/// count fuel the combination then gives back, so it is held without that
/// rule, and its monitor counts each grant of the combination instead.
fn with(
    (mut budgets, mut emit): (Vec<Arc<dyn Budget>>, Vec<Monitor>),
    budget: Arc<dyn Budget>,
) -> (Vec<Arc<dyn Budget>>, Vec<Monitor>) {
    let budget = match (&*budget as &dyn Any).downcast_ref::<Throttle>() {
        Some(throttle) if throttle.auto_emits() => {
            emit.extend(throttle.monitor().cloned());
            Arc::new(throttle.quiet())
        }
        _ => budget,
    };
    budgets.push(budget);
    (budgets, emit)
}

/// `clock`, or while it is the default, the clock of `part` if that is a
/// tank, throttle, keyed tank or combination of this crate whose clock is
/// not real time (a `ManualClock`, tokio's, a clock of the user's): a
/// combination waits on its parts' time.
fn adopt<K: 'static>(clock: ClockSource, part: &dyn Any) -> ClockSource {
    if !matches!(clock, ClockSource::Monotonic) {
        return clock;
    }
    let theirs = if let Some(tank) = part.downcast_ref::<Tank>() {
        tank.clock()
    } else if let Some(tank) = part.downcast_ref::<Throttle>().and_then(Throttle::tank) {
        tank.clock()
    } else if let Some(keyed) = part.downcast_ref::<KeyedTank<K>>() {
        keyed.clock()
    } else if let Some(all) = part.downcast_ref::<AllOf>() {
        all.shared.clock.clone()
    } else if let Some(all) = part.downcast_ref::<KeyedAllOf<K>>() {
        all.shared.clock.clone()
    } else {
        return clock;
    };
    match theirs.stands_still_or_custom() {
        true => theirs,
        false => clock,
    }
}

/// A part's wait for `m` fuel, which may be more than it holds at once
/// (a line's): its wait to be full, then one interval of its `rate` for
/// each fuel beyond.
fn beyond(
    wait_time: impl Fn(u64) -> Option<Duration>,
    capacity: u64,
    rate: Rate,
    m: u64,
) -> Option<Duration> {
    if m <= capacity {
        return wait_time(m);
    }
    let extra = u32::try_from(m - capacity)
        .ok()
        .and_then(|extra| rate.interval().checked_mul(extra))
        .unwrap_or(Duration::MAX);
    Some(wait_time(capacity)?.saturating_add(extra))
}

/// Which budget a refusal came from, or which to wait on: an index into
/// `budgets`, or the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Part {
    Budget(usize),
    Key,
}

impl<K: Hash + Eq + Clone + Send + Sync + 'static> Shared<K> {
    fn new(
        (budgets, emit): (Vec<Arc<dyn Budget>>, Vec<Monitor>),
        keyed: Option<Arc<dyn KeyedBudget<K>>>,
        clock: ClockSource,
    ) -> Arc<Shared<K>> {
        clock.warm_up();
        Arc::new(Shared {
            budgets,
            emit,
            keyed,
            clock,
            waiting: AtomicU64::new(0),
            lines: Mutex::new(Lines {
                next: 0,
                by_key: HashMap::new(),
            }),
        })
    }

    /// The budgets and the monitors, for a new combination.
    fn parts(&self) -> (Vec<Arc<dyn Budget>>, Vec<Monitor>) {
        (self.budgets.clone(), self.emit.clone())
    }

    /// The most granted together to `key`: the least of the key's
    /// capacity and the budgets'.
    fn capacity(&self, key: &K) -> u64 {
        let keyed = self.keyed.as_ref().map_or(u64::MAX, |k| k.capacity(key));
        self.budgets
            .iter()
            .map(|b| b.capacity())
            .fold(keyed, u64::min)
    }

    /// Whether a newcomer for `key` would stand behind someone.
    fn line_ahead(&self, key: &K) -> bool {
        self.waiting.load(Ordering::Acquire) != 0 && lock(&self.lines).by_key.contains_key(key)
    }

    /// Takes `n` from every part, the fuel `held` from one part already
    /// taken (a budget's index, or the budgets' count for the key); or
    /// gives everything back and says which part refused.
    fn take_all(&self, key: &K, n: u64, held: Option<(usize, Fuel)>) -> Result<(), Part> {
        let skip = held.as_ref().map(|(j, _)| *j);
        match self.take_from(0, key, n, skip) {
            Ok(()) => {
                // The fuel taken is spent: now it counts.
                for monitor in &self.emit {
                    monitor.emit_n(n);
                }
                Ok(())
            }
            Err(part) => {
                // The key's fuel cannot come back: it is spent.
                if let Some((j, fuel)) = held
                    && let Some(budget) = self.budgets.get(j)
                {
                    budget.give_back(fuel);
                }
                Err(part)
            }
        }
    }

    /// Takes `n` from the budgets from `i` on (but `skip`), then from the
    /// key; each one's fuel is held on this stack until the rest have
    /// theirs, and given back (the later first) if one refuses. The last of
    /// all is taken for good: nothing comes after it that could refuse.
    fn take_from(&self, i: usize, key: &K, n: u64, skip: Option<usize>) -> Result<(), Part> {
        let Some(budget) = self.budgets.get(i) else {
            return match &self.keyed {
                Some(keyed) if skip != Some(i) && !keyed.take(key, n) => Err(Part::Key),
                _ => Ok(()),
            };
        };
        if Some(i) == skip {
            return self.take_from(i + 1, key, n, skip);
        }
        let last = self.keyed.is_none() && i + 1 == self.budgets.len();
        if last {
            return budget.take(n).then_some(()).ok_or(Part::Budget(i));
        }
        let fuel = budget.try_take(n).ok_or(Part::Budget(i))?;
        self.take_from(i + 1, key, n, skip)
            .inspect_err(|_| budget.give_back(fuel))
    }

    /// The part to wait on after `refused` refused: the one furthest from
    /// having `n` (an unknown wait is the furthest); of equal ones, the
    /// one that refused. With how long to sleep if it is the key.
    fn furthest(&self, key: &K, n: u64, refused: Part) -> (Part, Duration) {
        let wait_of = |part: Part| {
            match part {
                Part::Budget(i) => self.budgets[i].wait_time(n),
                Part::Key => self.keyed.as_ref().and_then(|k| k.wait_time(key, n)),
            }
            .unwrap_or(Duration::MAX)
        };
        let mut best = (refused, wait_of(refused));
        let parts = (0..self.budgets.len())
            .map(Part::Budget)
            .chain(self.keyed.as_ref().map(|_| Part::Key));
        for part in parts {
            let wait = wait_of(part);
            if wait > best.1 {
                best = (part, wait);
            }
        }
        if best.0 == Part::Key {
            // A key that refused says when it will have fuel; if it says
            // "now" or does not know, one interval of its rate (never a
            // sleep of nothing, which would spin).
            let interval = self
                .keyed
                .as_ref()
                .map_or(Duration::ZERO, |k| k.rate().interval());
            if best.1 == Duration::ZERO || best.1 == Duration::MAX {
                best.1 = interval;
            }
        }
        best
    }

    /// Joins `key`'s line for `n` fuel; the ticket.
    fn join(&self, key: &K, n: u64) -> u64 {
        let mut lines = lock(&self.lines);
        let ticket = lines.next;
        lines.next += 1;
        lines
            .by_key
            .entry(key.clone())
            .or_default()
            .push_back((ticket, n, None));
        self.waiting.fetch_add(1, Ordering::AcqRel);
        ticket
    }

    /// Whether `ticket` heads `key`'s line; if not, it will be woken by
    /// `waker` when it does.
    fn is_head(&self, key: &K, ticket: u64, waker: &Waker) -> bool {
        let mut lines = lock(&self.lines);
        let Some(line) = lines.by_key.get_mut(key) else {
            return false;
        };
        if line.front().map(|f| f.0) == Some(ticket) {
            return true;
        }
        if let Some((_, _, slot)) = line.iter_mut().find(|(t, _, _)| *t == ticket)
            && !slot.as_ref().is_some_and(|w| w.will_wake(waker))
        {
            *slot = Some(waker.clone());
        }
        false
    }

    /// Leaves `key`'s line; wakes the new head if this was the head.
    fn leave(&self, key: &K, ticket: u64) {
        let wake = {
            let mut lines = lock(&self.lines);
            let Some(line) = lines.by_key.get_mut(key) else {
                return;
            };
            let Some(at) = line.iter().position(|(t, _, _)| *t == ticket) else {
                return;
            };
            line.remove(at);
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            let wake = if at == 0 {
                line.front_mut().and_then(|(_, _, waker)| waker.take())
            } else {
                None
            };
            if line.is_empty() {
                lines.by_key.remove(key);
            }
            wake
        };
        // Woken after unlocking: a waker may run user code.
        if let Some(waker) = wake {
            waker.wake();
        }
    }

    fn wait(self: &Arc<Self>, key: K, n: u64, max_wait: Option<Duration>) -> BudgetWait {
        let now = self.clock.now_ns();
        Box::pin(Wait {
            deadline: max_wait.map(|d| now.saturating_add(saturating_ns(d))),
            timer: Timer::new(&self.clock),
            shared: self.clone(),
            key,
            n,
            ticket: None,
            part: None,
            sleep_until: None,
            done: false,
        })
    }

    /// A consumer that sheds asks the first budget whose store alone can
    /// tell (see [`Budget::ask`]), holding nothing meanwhile, then takes
    /// the rest at once.
    fn ask(self: &Arc<Self>, key: K, n: u64) -> Option<BudgetWait> {
        if n == 0 || n > self.capacity(&key) || self.line_ahead(&key) {
            return None;
        }
        // A budget that asks its store, else the key (the part after the
        // budgets); the others are taken at once when it answers.
        let (j, ask) = (self.budgets.iter().enumerate())
            .find_map(|(j, b)| b.ask(n).map(|ask| (j, ask)))
            .or_else(|| Some((self.budgets.len(), self.keyed.as_ref()?.ask(&key, n)?)))?;
        let shared = self.clone();
        Some(Box::pin(async move {
            let Some(fuel) = ask.await? else {
                return Ok(None);
            };
            Ok(shared
                .take_all(&key, n, Some((j, fuel)))
                .ok()
                .map(|()| Fuel::taken(n)))
        }))
    }

    fn rate(&self) -> Rate {
        let rates = self
            .keyed
            .as_ref()
            .map(|k| k.rate())
            .into_iter()
            .chain(self.budgets.iter().map(|b| b.rate()));
        // Fewest fuel per second: a.max_n / a.per < b.max_n / b.per.
        rates
            .reduce(|tightest, rate| {
                let a = u128::from(rate.max_n()) * tightest.per().as_nanos();
                let b = u128::from(tightest.max_n()) * rate.per().as_nanos();
                if a < b { rate } else { tightest }
            })
            .expect("a combination has a budget")
    }

    /// The longest of the parts' waits for `n` and the fuel the line
    /// behind its head waits for (the head waits in a budget's line, so
    /// that budget counts it; the others are nowhere but here).
    fn wait_time(&self, key: &K, n: u64) -> Option<Duration> {
        let behind_head = if self.waiting.load(Ordering::Acquire) == 0 {
            0
        } else {
            lock(&self.lines).by_key.get(key).map_or(0, |line| {
                line.iter()
                    .skip(1)
                    .fold(0, |sum: u64, w| sum.saturating_add(w.1))
            })
        };
        let m = n.saturating_add(behind_head);
        let keyed = match &self.keyed {
            Some(k) => beyond(|m| k.wait_time(key, m), k.capacity(key), k.rate(), m)?,
            None => Duration::ZERO,
        };
        self.budgets.iter().try_fold(keyed, |most, b| {
            let wait = beyond(|m| b.wait_time(m), b.capacity(), b.rate(), m)?;
            Some(most.max(wait))
        })
    }

    fn available(&self, key: &K) -> u64 {
        if self.line_ahead(key) {
            return 0;
        }
        let keyed = self.keyed.as_ref().map_or(u64::MAX, |k| k.available(key));
        self.budgets
            .iter()
            .map(|b| b.available())
            .fold(keyed, u64::min)
    }

    fn unavailable(&self) -> Option<Unavailable> {
        self.budgets.iter().find_map(|b| b.unavailable())
    }
}

/// The wait of [`AllOf`] and [`KeyedAllOf`].
struct Wait<K: Hash + Eq + Clone + Send + Sync + 'static> {
    shared: Arc<Shared<K>>,
    key: K,
    n: u64,
    deadline: Option<u64>,
    /// In the line.
    ticket: Option<u64>,
    /// The head waits in this budget's line.
    part: Option<(usize, BudgetWait)>,
    /// The head sleeps for the key until then.
    sleep_until: Option<u64>,
    timer: Timer,
    done: bool,
}

impl<K: Hash + Eq + Clone + Send + Sync + 'static> Wait<K> {
    fn finish(
        &mut self,
        outcome: Result<Option<Fuel>, Error>,
    ) -> Poll<Result<Option<Fuel>, Error>> {
        self.done = true;
        self.part = None;
        self.timer.disarm();
        if let Some(ticket) = self.ticket.take() {
            self.shared.leave(&self.key, ticket);
        }
        Poll::Ready(outcome)
    }

    fn granted(&mut self) -> Poll<Result<Option<Fuel>, Error>> {
        let n = self.n;
        self.finish(Ok(Some(Fuel::taken(n))))
    }

    /// The remaining wait, `Err` if it is over.
    fn remaining(&self, now: u64) -> Result<Option<Duration>, ()> {
        match self.deadline {
            None => Ok(None),
            Some(at) if at <= now => Err(()),
            Some(at) => Ok(Some(Duration::from_nanos(at - now))),
        }
    }
}

// Nothing of a wait is pinned in place: the budget's wait is boxed.
impl<K: Hash + Eq + Clone + Send + Sync + 'static> Unpin for Wait<K> {}

impl<K: Hash + Eq + Clone + Send + Sync + 'static> Future for Wait<K> {
    type Output = Result<Option<Fuel>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if this.done {
            return Poll::Pending;
        }
        let shared = this.shared.clone();
        let (key, n) = (this.key.clone(), this.n);
        let ticket = match this.ticket {
            Some(ticket) => ticket,
            None => {
                let capacity = shared.capacity(&key);
                if n > capacity {
                    return this.finish(Err(Error::ExceedsCapacity {
                        requested: n,
                        capacity,
                    }));
                }
                if n == 0 || (!shared.line_ahead(&key) && shared.take_all(&key, n, None).is_ok()) {
                    return this.granted();
                }
                let ticket = shared.join(&key, n);
                this.ticket = Some(ticket);
                ticket
            }
        };
        if !shared.is_head(&key, ticket, cx.waker()) {
            let now = shared.clock.now_ns();
            return match this.deadline {
                None => Poll::Pending,
                Some(at) => match this.timer.arm(at, now, cx.waker()) {
                    Poll::Ready(()) => this.finish(Ok(None)),
                    Poll::Pending => Poll::Pending,
                },
            };
        }
        loop {
            let mut refused = None;
            if let Some((j, wait)) = &mut this.part {
                let j = *j;
                let Poll::Ready(outcome) = wait.as_mut().poll(cx) else {
                    // The budget counts the deadline on its own clock; on a
                    // combination's clock that is not real time (a manual
                    // one), which the budget's may not be, it counts here
                    // too.
                    if let Some(at) = this.deadline
                        && shared.clock.stands_still_or_custom()
                        && this
                            .timer
                            .arm(at, shared.clock.now_ns(), cx.waker())
                            .is_ready()
                    {
                        return this.finish(Ok(None));
                    }
                    return Poll::Pending;
                };
                this.part = None;
                match outcome {
                    Ok(Some(fuel)) => match shared.take_all(&key, n, Some((j, fuel))) {
                        Ok(()) => return this.granted(),
                        Err(part) => refused = Some(part),
                    },
                    other => return this.finish(other),
                }
            } else if let Some(until) = this.sleep_until {
                let now = shared.clock.now_ns();
                let at = this.deadline.map_or(until, |d| d.min(until));
                if this.timer.arm(at, now, cx.waker()).is_pending() {
                    return Poll::Pending;
                }
                this.sleep_until = None;
            }
            let refused = match refused {
                Some(part) => part,
                None => match shared.take_all(&key, n, None) {
                    Ok(()) => return this.granted(),
                    Err(part) => part,
                },
            };
            let now = shared.clock.now_ns();
            let Ok(remaining) = this.remaining(now) else {
                return this.finish(Ok(None));
            };
            match shared.furthest(&key, n, refused) {
                (Part::Budget(j), _) => {
                    this.part = Some((j, shared.budgets[j].wait(n, remaining)));
                }
                (Part::Key, sleep) => {
                    this.sleep_until = Some(now.saturating_add(saturating_ns(sleep)));
                }
            }
        }
    }
}

impl<K: Hash + Eq + Clone + Send + Sync + 'static> Drop for Wait<K> {
    fn drop(&mut self) {
        // The budget's wait first: its own cancel safety gives back
        // nothing it has not granted; then the line.
        self.part = None;
        if let Some(ticket) = self.ticket.take() {
            self.shared.leave(&self.key, ticket);
        }
    }
}

impl AllOf {
    /// A combination of `budget` alone, to which [`and`](AllOf::and) adds
    /// the others.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{AllOf, Budget, Tank};
    ///
    /// let only = AllOf::new(Tank::new("10/s".parse()?));
    /// assert!(only.take(1));
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn new(budget: impl Budget) -> AllOf {
        let clock = adopt::<()>(ClockSource::default(), &budget);
        let parts = (Vec::new(), Vec::new());
        AllOf::of(with(parts, Arc::new(budget)), clock)
    }

    /// Also `budget`: a grant takes from it too, after the budgets before
    /// it. A new combination, with a line of its own.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{AllOf, Budget, Tank};
    ///
    /// let user = Tank::new("5/s".parse()?);
    /// let route = Tank::new("50/s".parse()?);
    /// let global = Tank::new("500/s".parse()?);
    /// let limit = AllOf::new(user).and(route).and(global);
    /// assert!(limit.take(1));
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn and(self, budget: impl Budget) -> AllOf {
        self.and_shared(Arc::new(budget))
    }

    /// Also a budget already shared as `Arc<dyn Budget>`.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{AllOf, Budget, Tank};
    /// use std::sync::Arc;
    ///
    /// let global: Arc<dyn Budget> = Arc::new(Tank::new("500/s".parse()?));
    /// let limit = AllOf::new(Tank::new("5/s".parse()?)).and_shared(global.clone());
    /// assert!(limit.take(1));
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn and_shared(self, budget: Arc<dyn Budget>) -> AllOf {
        let clock = adopt::<()>(self.shared.clock.clone(), &*budget as &dyn Any);
        AllOf::of(with(self.shared.parts(), budget), clock)
    }

    /// The clock a `max_wait` counts on and the line sleeps on: by default
    /// that of the first part that is a tank, throttle, keyed tank or
    /// combination of this crate on a clock that is not real time (a
    /// [`ManualClock`](crate::clock::ManualClock), tokio's, one of yours),
    /// else the fast monotonic clock. A new combination, with a line of its own.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::clock::ManualClock;
    /// use fueltank::{AllOf, Budget, Tank};
    ///
    /// let clock = ManualClock::new();
    /// let tank = Tank::builder("5/s".parse()?).clock(clock.clone()).build()?;
    /// let limit = AllOf::new(tank).clock(clock);
    /// assert!(limit.take(1));
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn clock(self, clock: impl Clock) -> AllOf {
        AllOf::of(self.shared.parts(), ClockSource::from_clock(clock))
    }

    fn of(parts: (Vec<Arc<dyn Budget>>, Vec<Monitor>), clock: ClockSource) -> AllOf {
        AllOf {
            shared: Shared::new(parts, None, clock),
        }
    }

    /// How many wait in the combination's line.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{AllOf, Tank};
    ///
    /// assert_eq!(AllOf::new(Tank::new("5/s".parse()?)).waiting(), 0);
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn waiting(&self) -> usize {
        usize::try_from(self.shared.waiting.load(Ordering::Acquire)).unwrap_or(usize::MAX)
    }
}

impl fmt::Debug for AllOf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AllOf")
            .field("budgets", &self.shared.budgets)
            .field("waiting", &self.waiting())
            .finish()
    }
}

/// All or nothing, in the combination's line; see [`AllOf`].
impl Budget for AllOf {
    fn try_take(&self, n: u64) -> Option<Fuel> {
        self.take(n).then(|| Fuel::taken(n))
    }

    fn take(&self, n: u64) -> bool {
        if n == 0 {
            return true;
        }
        // Beyond a part's capacity, that part refuses.
        !self.shared.line_ahead(&()) && self.shared.take_all(&(), n, None).is_ok()
    }

    fn wait(&self, n: u64, max_wait: Option<Duration>) -> BudgetWait {
        self.shared.wait((), n, max_wait)
    }

    fn ask(&self, n: u64) -> Option<BudgetWait> {
        self.shared.ask((), n)
    }

    fn wait_time(&self, n: u64) -> Option<Duration> {
        if n > self.shared.capacity(&()) {
            return None;
        }
        self.shared.wait_time(&(), n)
    }

    fn rate(&self) -> Rate {
        self.shared.rate()
    }

    fn available(&self) -> u64 {
        self.shared.available(&())
    }

    fn capacity(&self) -> u64 {
        self.shared.capacity(&())
    }

    fn unavailable(&self) -> Option<Unavailable> {
        self.shared.unavailable()
    }
}

impl<K: Hash + Eq + Clone + Send + Sync + 'static> KeyedAllOf<K> {
    /// A combination of `keyed` alone, to which [`and`](KeyedAllOf::and)
    /// adds the budgets shared by every key.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{KeyedAllOf, KeyedBudget, KeyedTank, Tank};
    ///
    /// let per_user = KeyedAllOf::new(KeyedTank::<u32>::new("5/s".parse()?));
    /// assert!(per_user.take(&7, 1));
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn new(keyed: impl KeyedBudget<K>) -> KeyedAllOf<K> {
        KeyedAllOf::shared(Arc::new(keyed))
    }

    /// A combination of a keyed budget already shared as
    /// `Arc<dyn KeyedBudget<K>>` (as `fueltank-tower`'s keyed layer holds
    /// one).
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{KeyedAllOf, KeyedBudget, KeyedTank, Tank};
    /// use std::sync::Arc;
    ///
    /// let per_user: Arc<dyn KeyedBudget<u32>> = Arc::new(KeyedTank::new("5/s".parse()?));
    /// let limit = KeyedAllOf::shared(per_user).and(Tank::new("100/s".parse()?));
    /// assert!(limit.take(&7, 1));
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn shared(keyed: Arc<dyn KeyedBudget<K>>) -> KeyedAllOf<K> {
        let clock = adopt::<K>(ClockSource::default(), &*keyed as &dyn Any);
        KeyedAllOf {
            shared: Shared::new((Vec::new(), Vec::new()), Some(keyed), clock),
        }
    }

    /// Also `budget`, shared by every key: a grant takes from it too.
    /// A new combination, with lines of its own.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{KeyedAllOf, KeyedBudget, KeyedTank, Tank};
    ///
    /// let limit = KeyedAllOf::new(KeyedTank::<u32>::new("5/s".parse()?))
    ///     .and(Tank::new("100/s".parse()?));
    /// assert!(limit.take(&7, 1));
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn and(self, budget: impl Budget) -> KeyedAllOf<K> {
        self.and_shared(Arc::new(budget))
    }

    /// Also a budget already shared as `Arc<dyn Budget>`.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Budget, KeyedAllOf, KeyedBudget, KeyedTank, Tank};
    /// use std::sync::Arc;
    ///
    /// let global: Arc<dyn Budget> = Arc::new(Tank::new("100/s".parse()?));
    /// let limit = KeyedAllOf::new(KeyedTank::<u32>::new("5/s".parse()?)).and_shared(global);
    /// assert!(limit.take(&7, 1));
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn and_shared(self, budget: Arc<dyn Budget>) -> KeyedAllOf<K> {
        let clock = adopt::<K>(self.shared.clock.clone(), &*budget as &dyn Any);
        KeyedAllOf {
            shared: Shared::new(
                with(self.shared.parts(), budget),
                self.shared.keyed.clone(),
                clock,
            ),
        }
    }

    /// The clock a `max_wait` and the wait for a key count on, as
    /// [`AllOf::clock`].
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::clock::ManualClock;
    /// use fueltank::{KeyedAllOf, KeyedBudget, KeyedTank};
    ///
    /// let clock = ManualClock::new();
    /// let keyed = KeyedTank::<u32>::builder("5/s".parse()?).clock(clock.clone()).build()?;
    /// let limit = KeyedAllOf::new(keyed).clock(clock);
    /// assert!(limit.take(&7, 1));
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn clock(self, clock: impl Clock) -> KeyedAllOf<K> {
        KeyedAllOf {
            shared: Shared::new(
                self.shared.parts(),
                self.shared.keyed.clone(),
                ClockSource::from_clock(clock),
            ),
        }
    }
}

impl<K> fmt::Debug for KeyedAllOf<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedAllOf")
            .field("keyed", &self.shared.keyed)
            .field("budgets", &self.shared.budgets)
            .finish()
    }
}

/// All or nothing, in the key's line; see [`KeyedAllOf`].
impl<K: Hash + Eq + Clone + Send + Sync + 'static> KeyedBudget<K> for KeyedAllOf<K> {
    fn take(&self, key: &K, n: u64) -> bool {
        if n == 0 {
            return true;
        }
        // Beyond a part's capacity, that part refuses.
        !self.shared.line_ahead(key) && self.shared.take_all(key, n, None).is_ok()
    }

    fn wait(&self, key: &K, n: u64, max_wait: Option<Duration>) -> BudgetWait {
        self.shared.wait(key.clone(), n, max_wait)
    }

    fn ask(&self, key: &K, n: u64) -> Option<BudgetWait> {
        self.shared.ask(key.clone(), n)
    }

    fn wait_time(&self, key: &K, n: u64) -> Option<Duration> {
        if n > self.shared.capacity(key) {
            return None;
        }
        self.shared.wait_time(key, n)
    }

    fn rate(&self) -> Rate {
        self.shared.rate()
    }

    fn available(&self, key: &K) -> u64 {
        self.shared.available(key)
    }

    /// The least of the key's capacity and the budgets'.
    fn capacity(&self, key: &K) -> u64 {
        self.shared.capacity(key)
    }

    fn unavailable(&self, key: &K) -> Option<Unavailable> {
        let keyed = self.shared.keyed.as_ref()?;
        keyed.unavailable(key).or_else(|| self.shared.unavailable())
    }

    fn check(&self, key: &K) -> Result<(), Error> {
        self.shared.keyed.as_ref().map_or(Ok(()), |k| k.check(key))
    }
}
