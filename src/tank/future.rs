//! The futures that wait for fuel.

use std::future::Future;
use std::pin::Pin;
use std::ptr::NonNull;
use std::sync::Arc;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

use super::core::{Enqueued, Outcome, Shared};
use super::permit::Permit;
use super::waiters::{GRANTED, Node};
use crate::Error;
use crate::timer::Timer;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Start,
    Queued,
    /// The outcome was returned: polling again is a bug (it would, for
    /// `Acquire`, hand out a second permit for one fuel).
    Done,
}

/// The deadline of a timed wait, and its timer (made on first need).
#[derive(Debug)]
struct Deadline {
    at: u64,
    timer: Option<Timer>,
}

pin_project! {
    /// One request for fuel: tries at once, else queues its pinned node and
    /// waits to be granted (or, for a timed wait, for its deadline).
    #[project = WaiterProj]
    #[derive(Debug)]
    struct Waiter {
        shared: Arc<Shared>,
        n: u64,
        phase: Phase,
        #[pin]
        node: Node,
    }

    impl PinnedDrop for Waiter {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if *this.phase == Phase::Queued {
                // SAFETY: the node was queued by `enqueue` and is still
                // pinned and alive: we are in its drop.
                unsafe { this.shared.cancel(NonNull::from(&*this.node)) };
            }
        }
    }
}

impl Waiter {
    fn new(shared: Arc<Shared>, n: u64) -> Waiter {
        Waiter {
            shared,
            n,
            phase: Phase::Start,
            node: Node::new(),
        }
    }

    fn poll_outcome(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        deadline: Option<&mut Deadline>,
    ) -> Poll<Outcome> {
        let this = self.project();
        if *this.phase == Phase::Start {
            let node = NonNull::from(&*this.node);
            let shared = &**this.shared;
            let enqueued = if let Some(stamp) = shared.take_stamped(*this.n) {
                Enqueued::Granted(stamp)
            } else {
                let at = deadline.as_ref().map(|d| d.at);
                // From here our drop cancels the node, whatever happens
                // inside `enqueue` (cancelling a node never linked is a
                // no-op): a linked node never outlives this future.
                *this.phase = Phase::Queued;
                // SAFETY: the node is pinned inside this future and in no
                // list; our drop cancels it while queued.
                unsafe { shared.enqueue(node, *this.n, at, cx.waker()) }
            };
            let outcome = match enqueued {
                Enqueued::Granted(stamp) => Outcome::Granted(stamp),
                Enqueued::TooLarge(cap) => Outcome::TooLarge(cap),
                Enqueued::TooLate => Outcome::TimedOut,
                Enqueued::Queued => {
                    *this.phase = Phase::Queued;
                    return Self::poll_queued(this, cx, deadline);
                }
            };
            *this.phase = Phase::Done;
            return Poll::Ready(outcome);
        }
        if *this.phase == Phase::Queued {
            return Self::poll_queued(this, cx, deadline);
        }
        panic!("a fuel future was polled after it completed");
    }

    fn poll_queued(
        this: WaiterProj<'_>,
        cx: &mut Context<'_>,
        deadline: Option<&mut Deadline>,
    ) -> Poll<Outcome> {
        let node = NonNull::from(&*this.node);
        // The common case, without the lock: granted since last poll.
        let outcome = if this.node.state() == GRANTED {
            Poll::Ready(Outcome::Granted(this.node.granted_stamp()))
        } else {
            // SAFETY: queued by `enqueue`, alive (pinned in the future).
            unsafe { this.shared.poll_queued(node, cx.waker()) }
        };
        let outcome = match (outcome, deadline) {
            (Poll::Pending, Some(deadline)) => {
                let clock = &this.shared.clock;
                let timer = deadline.timer.get_or_insert_with(|| Timer::new(clock));
                match timer.arm(deadline.at, clock.now_ns(), cx.waker()) {
                    // SAFETY: as above.
                    Poll::Ready(()) => Poll::Ready(unsafe { this.shared.expire(node) }),
                    Poll::Pending => Poll::Pending,
                }
            }
            (outcome, _) => outcome,
        };
        if outcome.is_ready() {
            *this.phase = Phase::Done;
        }
        outcome
    }
}

pin_project! {
    /// The future of [`Tank::await_fuel`](crate::Tank::await_fuel): resolves
    /// once one fuel has been taken.
    ///
    /// # Cancel safety
    ///
    /// Dropping it at any point loses no fuel and stalls no one: if it was
    /// queued it leaves the line, and fuel already granted to it but not yet
    /// seen goes back to the tank (or to the next in line).
    #[must_use = "futures do nothing unless polled"]
    #[derive(Debug)]
    pub struct AwaitFuel {
        #[pin]
        waiter: Waiter,
    }
}

pin_project! {
    /// The future of [`Tank::await_fuel_n`](crate::Tank::await_fuel_n):
    /// resolves once `n` fuel have been taken together, or with an error if
    /// `n` can never fit in the tank.
    ///
    /// # Cancel safety
    ///
    /// As for [`AwaitFuel`]: nothing is lost, nothing is stalled.
    #[must_use = "futures do nothing unless polled"]
    #[derive(Debug)]
    pub struct AwaitFuelN {
        #[pin]
        waiter: Waiter,
    }
}

pin_project! {
    /// The future of
    /// [`Tank::await_fuel_timeout`](crate::Tank::await_fuel_timeout):
    /// resolves to `true` once one fuel has been taken, or to `false` when
    /// the timeout passes first (at once if the line ahead cannot be served
    /// in time).
    ///
    /// # Cancel safety
    ///
    /// As for [`AwaitFuel`]: nothing is lost, nothing is stalled.
    #[must_use = "futures do nothing unless polled"]
    #[derive(Debug)]
    pub struct AwaitFuelTimeout {
        #[pin]
        waiter: Waiter,
        deadline: Deadline,
    }
}

impl AwaitFuel {
    pub(crate) fn new(shared: Arc<Shared>) -> AwaitFuel {
        AwaitFuel {
            waiter: Waiter::new(shared, 1),
        }
    }
}

impl AwaitFuelN {
    pub(crate) fn new(shared: Arc<Shared>, n: u64) -> AwaitFuelN {
        AwaitFuelN {
            waiter: Waiter::new(shared, n),
        }
    }
}

impl AwaitFuelTimeout {
    pub(crate) fn new(shared: Arc<Shared>, deadline: u64) -> AwaitFuelTimeout {
        AwaitFuelTimeout {
            waiter: Waiter::new(shared, 1),
            deadline: Deadline {
                at: deadline,
                timer: None,
            },
        }
    }
}

impl Future for AwaitFuel {
    type Output = ();

    // Inlined into the futures that wrap it (a throttle's), even across crates.
    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // One fuel always fits, and there is no deadline: only Granted.
        self.project().waiter.poll_outcome(cx, None).map(drop)
    }
}

impl Future for AwaitFuelN {
    type Output = Result<(), Error>;

    // Inlined into the futures that wrap it (a throttle's), even across crates.
    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let requested = self.waiter.n;
        self.project()
            .waiter
            .poll_outcome(cx, None)
            .map(|outcome| match outcome {
                Outcome::TooLarge(capacity) => Err(Error::ExceedsCapacity {
                    requested,
                    capacity,
                }),
                Outcome::Granted(_) | Outcome::TimedOut => Ok(()),
            })
    }
}

impl Future for AwaitFuelTimeout {
    type Output = bool;

    // Inlined into the futures that wrap it (a throttle's), even across crates.
    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool> {
        let this = self.project();
        this.waiter
            .poll_outcome(cx, Some(this.deadline))
            .map(|outcome| matches!(outcome, Outcome::Granted(_)))
    }
}

pin_project! {
    /// The future of [`Tank::acquire`](crate::Tank::acquire): resolves to a
    /// [`Permit`] for one fuel.
    ///
    /// # Cancel safety
    ///
    /// As for [`AwaitFuel`]: nothing is lost, nothing is stalled.
    #[must_use = "futures do nothing unless polled"]
    #[derive(Debug)]
    pub struct Acquire {
        #[pin]
        waiter: Waiter,
    }
}

impl Acquire {
    pub(crate) fn new(shared: Arc<Shared>) -> Acquire {
        Acquire {
            waiter: Waiter::new(shared, 1),
        }
    }
}

impl Future for Acquire {
    type Output = Permit;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Permit> {
        let shared = self.waiter.shared.clone();
        self.project()
            .waiter
            .poll_outcome(cx, None)
            .map(|outcome| match outcome {
                Outcome::Granted(stamp) => Permit::new(shared, stamp),
                // One fuel always fits and there is no deadline.
                Outcome::TooLarge(_) | Outcome::TimedOut => {
                    unreachable!("one fuel always fits, and there is no deadline")
                }
            })
    }
}
