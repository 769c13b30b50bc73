//! The futures that wait for global fuel.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use async_io::Timer;

use crate::Error;
use crate::entry::{Enqueued, Entry, Grant};
use crate::params::Params;

/// One request for fuel: takes it at once if it can, else joins the line
/// and waits for the driver to grant it (or, if timed, for its deadline).
#[derive(Debug)]
struct Waiter {
    entry: Arc<Entry>,
    n: u64,
    /// Whether it resolves to an error when Redis holds another limit under
    /// the tank's name (else it waits, as under `FailurePolicy::Closed`).
    fallible: bool,
    /// Whether it waits for Redis's next answer only (see `Entry::apply`).
    answer_only: bool,
    phase: Phase,
    deadline: Option<Instant>,
    timer: Option<Timer>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Start,
    Queued(u64),
    Done,
}

enum Outcome {
    Granted,
    TooLarge(u64),
    TimedOut,
    Mismatch(Params),
}

impl Waiter {
    fn new(entry: Arc<Entry>, n: u64, deadline: Option<Instant>, fallible: bool) -> Waiter {
        Waiter {
            entry,
            n,
            fallible,
            answer_only: false,
            phase: Phase::Start,
            deadline,
            timer: None,
        }
    }

    fn poll_outcome(&mut self, cx: &mut Context<'_>) -> Poll<Outcome> {
        let outcome = match self.phase {
            Phase::Start => {
                match self.entry.enqueue(
                    self.n,
                    self.deadline,
                    (self.fallible, self.answer_only),
                    cx.waker(),
                ) {
                    Enqueued::Taken => Poll::Ready(Outcome::Granted),
                    Enqueued::Mismatch(stored) => Poll::Ready(Outcome::Mismatch(stored)),
                    Enqueued::TooLarge(capacity) => Poll::Ready(Outcome::TooLarge(capacity)),
                    Enqueued::TooLate => Poll::Ready(Outcome::TimedOut),
                    Enqueued::Queued(id) => {
                        self.phase = Phase::Queued(id);
                        self.poll_queued(id, cx)
                    }
                }
            }
            Phase::Queued(id) => self.poll_queued(id, cx),
            Phase::Done => panic!("a fuel future was polled after it completed"),
        };
        if outcome.is_ready() {
            self.phase = Phase::Done;
        }
        outcome
    }

    fn poll_queued(&mut self, id: u64, cx: &mut Context<'_>) -> Poll<Outcome> {
        if let Poll::Ready(grant) = self.entry.poll_queued(id, cx.waker()) {
            return Poll::Ready(outcome_of(grant));
        }
        let Some(deadline) = self.deadline else {
            return Poll::Pending;
        };
        // The deadline is in the entry's clock; the timer counts in
        // `Instant::now()`'s: convert through the time left.
        let timer = self.timer.get_or_insert_with(|| {
            Timer::at(Instant::now() + deadline.saturating_duration_since(crate::entry::now()))
        });
        if Pin::new(timer).poll(cx).is_pending() {
            return Poll::Pending;
        }
        // The deadline passed; a grant made meanwhile is still ours.
        match self.entry.leave(id, true) {
            Some(grant) => Poll::Ready(outcome_of(grant)),
            None => Poll::Ready(Outcome::TimedOut),
        }
    }
}

fn outcome_of(grant: Grant) -> Outcome {
    match grant {
        Grant::Reserved(..) | Grant::Policy => Outcome::Granted,
        Grant::TooLarge(capacity) => Outcome::TooLarge(capacity),
        Grant::Mismatch(stored) => Outcome::Mismatch(stored),
        Grant::Unanswered => Outcome::TimedOut,
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        if let Phase::Queued(id) = self.phase {
            self.entry.leave(id, false);
        }
    }
}

/// The future of [`GlobalTank::await_fuel`](crate::GlobalTank::await_fuel):
/// resolves once one fuel has been taken.
///
/// # Cancel safety
///
/// Dropping it at any point loses no fuel Redis granted and stalls no one:
/// if it was in line it leaves the line, and fuel granted to it but not yet
/// seen goes back to the reserve for the next in line (under `One`, only if
/// nothing was spent since, as its spacing would not allow it otherwise).
///
/// # Examples
///
/// ```no_run
/// # async fn run(tank: fueltank_redis::GlobalTank) {
/// let wait: fueltank_redis::AwaitFuel = tank.await_fuel();
/// wait.await;
/// # }
/// ```
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct AwaitFuel {
    waiter: Waiter,
}

/// The future of
/// [`GlobalTank::await_fuel_n`](crate::GlobalTank::await_fuel_n): resolves
/// once `n` fuel have been taken together, or to an error if `n` can never
/// be granted at once.
///
/// # Cancel safety
///
/// As for [`AwaitFuel`]: nothing Redis granted is lost, nothing is stalled.
///
/// # Examples
///
/// ```no_run
/// # async fn run(tank: fueltank_redis::GlobalTank) -> Result<(), fueltank_redis::Error> {
/// tank.await_fuel_n(5).await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct AwaitFuelN {
    waiter: Waiter,
}

/// The future of
/// [`GlobalTank::await_fuel_timeout`](crate::GlobalTank::await_fuel_timeout):
/// resolves to `true` once one fuel has been taken, or to `false` when the
/// timeout passes first.
///
/// # Cancel safety
///
/// As for [`AwaitFuel`]: nothing Redis granted is lost, nothing is stalled.
///
/// # Examples
///
/// ```no_run
/// # async fn run(tank: fueltank_redis::GlobalTank) {
/// use std::time::Duration;
///
/// if !tank.await_fuel_timeout(Duration::from_millis(20)).await {
///     // shed the request
/// }
/// # }
/// ```
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct AwaitFuelTimeout {
    waiter: Waiter,
}

impl AwaitFuel {
    pub(crate) fn new(entry: Arc<Entry>) -> AwaitFuel {
        AwaitFuel {
            waiter: Waiter::new(entry, 1, None, false),
        }
    }
}

impl AwaitFuelN {
    pub(crate) fn new(entry: Arc<Entry>, n: u64) -> AwaitFuelN {
        AwaitFuelN {
            waiter: Waiter::new(entry, n, None, true),
        }
    }
}

impl AwaitFuelTimeout {
    pub(crate) fn new(entry: Arc<Entry>, deadline: Option<Instant>) -> AwaitFuelTimeout {
        AwaitFuelTimeout {
            waiter: Waiter::new(entry, 1, deadline, false),
        }
    }
}

impl Future for AwaitFuel {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // One fuel always fits and there is no deadline: only Granted.
        self.waiter.poll_outcome(cx).map(drop)
    }
}

impl Future for AwaitFuelN {
    type Output = Result<(), Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let requested = self.waiter.n;
        self.waiter.poll_outcome(cx).map(|outcome| match outcome {
            Outcome::TooLarge(capacity) => Err(Error::ExceedsCapacity {
                requested,
                capacity,
            }),
            Outcome::Mismatch(stored) => Err(self.waiter.entry.mismatch(stored)),
            Outcome::Granted | Outcome::TimedOut => Ok(()),
        })
    }
}

impl Future for AwaitFuelTimeout {
    type Output = bool;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool> {
        self.waiter
            .poll_outcome(cx)
            .map(|outcome| matches!(outcome, Outcome::Granted))
    }
}

/// The wait of `Budget::wait` on a Redis tank: for `n` fuel, until a
/// deadline if given; resolves to the fuel (taken for good: Redis takes
/// none back), `None` when the deadline passes first, or an error if `n`
/// is more than the tank grants at once. Under a name Redis holds with
/// other parameters it waits, as under `FailurePolicy::Closed`.
#[derive(Debug)]
pub(crate) struct AwaitGrant {
    waiter: Waiter,
}

impl AwaitGrant {
    pub(crate) fn new(entry: Arc<Entry>, n: u64, deadline: Option<Instant>) -> AwaitGrant {
        AwaitGrant {
            waiter: Waiter::new(entry, n, deadline, false),
        }
    }

    /// Waits for Redis's next answer (at most the store's timeout), not for
    /// fuel to come: the fuel if the answer made `n` spendable now, else
    /// `None`.
    pub(crate) fn answer(entry: Arc<Entry>, n: u64) -> AwaitGrant {
        let deadline = crate::entry::now().checked_add(entry.store.timeout);
        let mut waiter = Waiter::new(entry, n, deadline, false);
        waiter.answer_only = true;
        AwaitGrant { waiter }
    }
}

impl Future for AwaitGrant {
    type Output = Result<Option<fueltank::Fuel>, fueltank::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let requested = self.waiter.n;
        self.waiter.poll_outcome(cx).map(|outcome| match outcome {
            Outcome::Granted => Ok(Some(fueltank::Fuel::taken(requested))),
            Outcome::TooLarge(capacity) => Err(fueltank::Error::ExceedsCapacity {
                requested,
                capacity,
            }),
            Outcome::TimedOut | Outcome::Mismatch(_) => Ok(None),
        })
    }
}
