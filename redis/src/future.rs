//! The futures that wait for global fuel.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_io::Timer;

use crate::Error;
use crate::entry::{Enqueued, Entry, Grant};

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

impl Waiter {
    fn new(entry: Arc<Entry>, n: u64, max_wait: Option<Duration>, fallible: bool) -> Waiter {
        let deadline = max_wait.and_then(|max_wait| crate::entry::now().checked_add(max_wait));
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

    fn poll_ended(&mut self, cx: &mut Context<'_>) -> Poll<Ended> {
        let outcome = match self.phase {
            Phase::Start => {
                match self.entry.enqueue(
                    self.n,
                    self.deadline,
                    (self.fallible, self.answer_only),
                    cx.waker(),
                ) {
                    Enqueued::Taken => Poll::Ready(Ended::Granted),
                    Enqueued::Mismatch(stored) => {
                        Poll::Ready(Ended::Failed(self.entry.mismatch(stored)))
                    }
                    Enqueued::TooLarge(capacity) => Poll::Ready(Ended::TooLarge(capacity)),
                    Enqueued::TooLate => Poll::Ready(Ended::TimedOut),
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

    fn poll_queued(&mut self, id: u64, cx: &mut Context<'_>) -> Poll<Ended> {
        if let Poll::Ready(grant) = self.entry.poll_queued(id, cx.waker()) {
            return Poll::Ready(self.ended(grant));
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
            Some(grant) => Poll::Ready(self.ended(grant)),
            None => Poll::Ready(Ended::TimedOut),
        }
    }

    fn ended(&self, grant: Grant) -> Ended {
        match grant {
            Grant::Reserved(..) | Grant::Policy => Ended::Granted,
            Grant::TooLarge(capacity) => Ended::TooLarge(capacity),
            Grant::Mismatch(stored) => Ended::Failed(self.entry.mismatch(stored)),
            Grant::Unanswered => Ended::TimedOut,
        }
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        if let Phase::Queued(id) = self.phase {
            self.entry.leave(id, false);
        }
    }
}

/// The future of every wait of [`GlobalTank`](crate::GlobalTank) and
/// [`GlobalKeyedTank`](crate::GlobalKeyedTank) (`await_fuel`,
/// `await_fuel_n`, `await_fuel_timeout`, and their `Budget::wait`): asks for
/// an amount, with a deadline if timed; takes reserved fuel at once, else
/// joins the line the tank's driver serves from Redis. `T` is what it
/// resolves to:
///
/// | `T` | from | granted | never fits at once, key too long, other limit under the name | deadline passed |
/// |---|---|---|---|---|
/// | `()` | `GlobalTank::await_fuel` | `()` | — (waits, as under `FailurePolicy::Closed`) | — |
/// | `Result<(), Error>` | `await_fuel_n`, `GlobalKeyedTank::await_fuel` | `Ok(())` | `Err` | — |
/// | `bool` | `await_fuel_timeout` | `true` | `false` | `false` |
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
/// # async fn run(tank: fueltank_redis::GlobalTank) -> Result<(), fueltank_redis::Error> {
/// use fueltank_redis::{AwaitGlobal, Error};
/// use std::time::Duration;
///
/// let one: AwaitGlobal = tank.await_fuel();
/// one.await;
/// let three: AwaitGlobal<Result<(), Error>> = tank.await_fuel_n(3);
/// three.await?;
/// let timed: AwaitGlobal<bool> = tank.await_fuel_timeout(Duration::from_millis(20));
/// if !timed.await {
///     // shed the request
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct AwaitGlobal<T = ()> {
    /// The waiter, or why there is none (a key whose text is too long).
    waiter: Result<Waiter, Error>,
    _output: PhantomData<fn() -> T>,
}

/// What a `Budget::wait` resolves to.
pub(crate) type Taken = Result<Option<fueltank::Fuel>, fueltank::Error>;

/// How a wait ended, for the outputs to map.
enum Ended {
    Granted,
    TooLarge(u64),
    TimedOut,
    /// Another limit under the name, or a key that cannot be held.
    Failed(Error),
}

impl<T> AwaitGlobal<T> {
    /// A wait on `entry` for `n`, for at most `max_wait` if given (counted
    /// from now). `fallible`: it
    /// resolves to an error when Redis holds another limit under the
    /// tank's name (else it waits, as under `FailurePolicy::Closed`).
    pub(crate) fn new(
        entry: Result<Arc<Entry>, Error>,
        n: u64,
        max_wait: Option<Duration>,
        fallible: bool,
    ) -> AwaitGlobal<T> {
        AwaitGlobal {
            waiter: entry.map(|entry| Waiter::new(entry, n, max_wait, fallible)),
            _output: PhantomData,
        }
    }

    /// Waits for Redis's next answer (at most the store's timeout), not for
    /// fuel to come: the fuel if the answer made `n` spendable now, else
    /// `None`.
    pub(crate) fn answer(entry: Arc<Entry>, n: u64) -> AwaitGlobal<T> {
        let timeout = entry.store.timeout;
        let mut waiter = Waiter::new(entry, n, Some(timeout), false);
        waiter.answer_only = true;
        AwaitGlobal {
            waiter: Ok(waiter),
            _output: PhantomData,
        }
    }

    fn poll_ended(&mut self, cx: &mut Context<'_>) -> Poll<Ended> {
        match &mut self.waiter {
            Ok(waiter) => waiter.poll_ended(cx),
            Err(error) => Poll::Ready(Ended::Failed(error.clone())),
        }
    }

    /// The amount asked for.
    fn n(&self) -> u64 {
        self.waiter.as_ref().map_or(0, |waiter| waiter.n)
    }
}

impl Future for AwaitGlobal {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // One fuel always fits and there is no deadline: only Granted.
        self.poll_ended(cx).map(drop)
    }
}

impl Future for AwaitGlobal<Result<(), Error>> {
    type Output = Result<(), Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let requested = self.n();
        self.poll_ended(cx).map(|ended| match ended {
            Ended::TooLarge(capacity) => Err(Error::ExceedsCapacity {
                requested,
                capacity,
            }),
            Ended::Failed(error) => Err(error),
            Ended::Granted | Ended::TimedOut => Ok(()),
        })
    }
}

impl Future for AwaitGlobal<bool> {
    type Output = bool;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool> {
        self.poll_ended(cx)
            .map(|ended| matches!(ended, Ended::Granted))
    }
}

/// The wait of `Budget::wait` on a Redis tank: the fuel (taken for good:
/// Redis takes none back), `None` when the deadline passes first or Redis
/// holds another limit under the name (it waits then, as under
/// `FailurePolicy::Closed`), or an error if `n` is more than the tank
/// grants at once.
impl Future for AwaitGlobal<Taken> {
    type Output = Taken;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let requested = self.n();
        self.poll_ended(cx).map(|ended| match ended {
            Ended::Granted => Ok(Some(fueltank::Fuel::taken(requested))),
            Ended::TooLarge(capacity) => Err(fueltank::Error::ExceedsCapacity {
                requested,
                capacity,
            }),
            Ended::TimedOut | Ended::Failed(_) => Ok(None),
        })
    }
}
