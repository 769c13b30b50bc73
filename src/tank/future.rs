//! [`AwaitFuel`]: the one future that waits for fuel, and [`WaitOutput`],
//! what it resolves to.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::ptr::NonNull;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;

use super::line::{Enqueued, Line, Outcome};
use super::permit::Fuel;
use super::waiters::{GRANTED, Node};
use crate::keyed::KeyStart;
use crate::timer::Timer;
use crate::{Error, Monitor};

/// What an [`AwaitFuel`] resolves to; each waiting method says which:
///
/// | output | from | granted | `n` never fits | deadline passed |
/// |---|---|---|---|---|
/// | `()` | `await_fuel` | `()` | — (one always fits) | — (no deadline) |
/// | `Result<(), Error>` | `await_fuel_n` | `Ok(())` | `Err(`[`Error::ExceedsCapacity`]`)` | — (no deadline) |
/// | `bool` | `await_fuel_timeout` | `true` | `false` | `false` |
/// | `Result<Option<Fuel>, Error>` | [`Budget::wait`](crate::Budget::wait) | `Ok(Some(fuel))`, which can be given back | `Err(`[`Error::ExceedsCapacity`]`)` | `Ok(None)` |
///
/// Implemented for these four only (it is sealed).
pub trait WaitOutput: sealed::Sealed + Sized {
    /// The fuel was taken: this is it.
    #[doc(hidden)]
    fn granted(fuel: Fuel) -> Self;
    /// The amount asked for can never be granted at once.
    #[doc(hidden)]
    fn too_large(error: Error) -> Self;
    /// The deadline passed first.
    #[doc(hidden)]
    fn timed_out() -> Self;
    /// Whether the output says the fuel was taken.
    #[doc(hidden)]
    fn taken(&self) -> bool;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for () {}
    impl Sealed for bool {}
    impl Sealed for Result<(), crate::Error> {}
    impl Sealed for Result<Option<crate::Fuel>, crate::Error> {}
}

impl WaitOutput for () {
    fn granted(_: Fuel) {}
    fn too_large(_: Error) {}
    fn timed_out() {}
    fn taken(&self) -> bool {
        true
    }
}

impl WaitOutput for bool {
    fn granted(_: Fuel) -> bool {
        true
    }
    fn too_large(_: Error) -> bool {
        false
    }
    fn timed_out() -> bool {
        false
    }
    fn taken(&self) -> bool {
        *self
    }
}

impl WaitOutput for Result<(), Error> {
    fn granted(_: Fuel) -> Self {
        Ok(())
    }
    fn too_large(error: Error) -> Self {
        Err(error)
    }
    fn timed_out() -> Self {
        Ok(())
    }
    fn taken(&self) -> bool {
        self.is_ok()
    }
}

impl WaitOutput for Result<Option<Fuel>, Error> {
    fn granted(fuel: Fuel) -> Self {
        Ok(Some(fuel))
    }
    fn too_large(error: Error) -> Self {
        Err(error)
    }
    fn timed_out() -> Self {
        Ok(None)
    }
    fn taken(&self) -> bool {
        matches!(self, Ok(Some(_)))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Start,
    Queued,
    /// The outcome was returned: polling again is a bug (it would hand
    /// out fuel twice).
    Done,
}

/// Where the fuel comes from.
#[derive(Debug)]
enum Source {
    /// A tank's line.
    Tank(Arc<Line>),
    /// A key of a [`KeyedTank`](crate::KeyedTank): taken at the first poll
    /// if the key has it, else its tank's line.
    Key(KeyStart),
    /// No tank (a [`Throttle`](crate::Throttle) without one): granted at
    /// once, for good.
    Unlimited,
}

/// The deadline of a timed wait, and its timer (made on first need).
#[derive(Debug)]
struct Deadline {
    at: u64,
    timer: Option<Timer>,
}

pin_project! {
    /// The future of every wait for fuel: [`Tank`](crate::Tank)'s,
    /// [`Throttle`](crate::Throttle)'s and [`KeyedTank`](crate::KeyedTank)'s
    /// `await_fuel*`, and their [`Budget::wait`](crate::Budget::wait). It
    /// asks for an amount, with a deadline if timed; tries at once, else
    /// queues in the tank's line (FIFO) and is woken once, when its fuel is
    /// granted or its deadline passes. `T` is what it resolves to (see
    /// [`WaitOutput`]): `()` for `await_fuel`, `Result<(), Error>` for
    /// `await_fuel_n`, `bool` for `await_fuel_timeout`.
    ///
    /// # Cancel safety
    ///
    /// Dropping it at any point loses no fuel and stalls no one: if it was
    /// queued it leaves the line, and fuel already granted to it but not yet
    /// seen goes back to the tank (or to the next in line). A throttle's
    /// emits nothing for a wait dropped before it resolved.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{AwaitFuel, Error, Rate, Tank};
    /// use std::time::Duration;
    ///
    /// # futures::executor::block_on(async {
    /// let tank = Tank::builder(Rate::per_second(1000)?).initial(3).build()?;
    /// let one: AwaitFuel = tank.await_fuel();
    /// one.await;
    /// let two: AwaitFuel<Result<(), Error>> = tank.await_fuel_n(2);
    /// two.await?;
    /// let timed: AwaitFuel<bool> = tank.await_fuel_timeout(Duration::from_millis(100));
    /// assert!(timed.await);
    /// # Ok::<(), fueltank::Error>(())
    /// # }).unwrap();
    /// ```
    #[must_use = "futures do nothing unless polled"]
    #[derive(Debug)]
    #[project = AwaitFuelProj]
    pub struct AwaitFuel<T = ()> {
        source: Source,
        n: u64,
        phase: Phase,
        deadline: Option<Deadline>,
        // With `auto_emit`, the throttle's monitor: the fuel taken is
        // emitted there.
        emit: Option<Monitor>,
        #[pin]
        node: Node,
        _output: PhantomData<fn() -> T>,
    }

    impl<T> PinnedDrop for AwaitFuel<T> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if *this.phase == Phase::Queued
                && let Source::Tank(shared) = this.source
            {
                // SAFETY: the node was queued by `enqueue` and is still
                // pinned and alive: we are in its drop.
                unsafe { shared.cancel(NonNull::from(&*this.node)) };
            }
        }
    }
}

impl<T> AwaitFuel<T> {
    #[inline]
    fn with(source: Source, n: u64, deadline: Option<u64>, emit: Option<Monitor>) -> AwaitFuel<T> {
        AwaitFuel {
            source,
            n,
            phase: Phase::Start,
            deadline: deadline.map(|at| Deadline { at, timer: None }),
            emit,
            node: Node::new(),
            _output: PhantomData,
        }
    }

    /// A wait for `n` in `shared`'s line, until `deadline` if given,
    /// emitting the fuel it takes in `emit` if given.
    #[inline]
    pub(crate) fn tank(
        shared: Arc<Line>,
        n: u64,
        deadline: Option<u64>,
        emit: Option<Monitor>,
    ) -> AwaitFuel<T> {
        AwaitFuel::with(Source::Tank(shared), n, deadline, emit)
    }

    /// A wait for `n` on a key, until `deadline` if given.
    pub(crate) fn key(key: KeyStart, n: u64, deadline: Option<u64>) -> AwaitFuel<T> {
        AwaitFuel::with(Source::Key(key), n, deadline, None)
    }

    /// `n` granted at the first poll (there is no tank), emitted in `emit`
    /// if given.
    pub(crate) fn unlimited(n: u64, emit: Option<Monitor>) -> AwaitFuel<T> {
        AwaitFuel::with(Source::Unlimited, n, None, emit)
    }
}

/// How a wait ended.
enum Ended {
    Granted(Fuel),
    TooLarge(u64),
    TimedOut,
}

impl<T: WaitOutput> Future for AwaitFuel<T> {
    type Output = T;

    // Inlined into the futures that hold it, even across crates.
    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let mut this = self.project();
        let ended = match *this.phase {
            Phase::Start => ready!(start(&mut this, cx)),
            Phase::Queued => ready!(queued(&mut this, cx)),
            Phase::Done => panic!("a fuel future was polled after it completed"),
        };
        *this.phase = Phase::Done;
        let n = *this.n;
        let output = match ended {
            Ended::Granted(fuel) => T::granted(fuel),
            Ended::TooLarge(capacity) => T::too_large(Error::ExceedsCapacity {
                requested: n,
                capacity,
            }),
            Ended::TimedOut => T::timed_out(),
        };
        if output.taken()
            && let Some(monitor) = this.emit.take()
        {
            monitor.emit_n(n);
        }
        Poll::Ready(output)
    }
}

/// The first poll: takes the fuel at once if it is there, else queues the
/// node.
fn start<T>(this: &mut AwaitFuelProj<'_, T>, cx: &mut Context<'_>) -> Poll<Ended> {
    let n = *this.n;
    if let Source::Key(key) = this.source {
        match key.begin(n) {
            Err(capacity) => return Poll::Ready(Ended::TooLarge(capacity)),
            Ok(None) => return Poll::Ready(Ended::Granted(Fuel::taken(n))),
            Ok(Some(tank)) => *this.source = Source::Tank(tank.shared),
        }
    }
    let Source::Tank(shared) = this.source else {
        return Poll::Ready(Ended::Granted(Fuel::taken(n)));
    };
    let enqueued = if let Some(stamp) = shared.take_stamped(n) {
        Enqueued::Granted(stamp)
    } else {
        let at = this.deadline.as_ref().map(|d| d.at);
        // From here our drop cancels the node, whatever happens inside
        // `enqueue` (cancelling a node never linked is a no-op): a linked
        // node never outlives this future.
        *this.phase = Phase::Queued;
        // SAFETY: the node is pinned inside this future and in no list;
        // our drop cancels it while queued.
        unsafe { shared.enqueue(NonNull::from(&*this.node), n, at, cx.waker()) }
    };
    match enqueued {
        Enqueued::Granted(stamp) => Poll::Ready(Ended::Granted(Fuel::new(shared, stamp, n))),
        Enqueued::TooLarge(capacity) => Poll::Ready(Ended::TooLarge(capacity)),
        Enqueued::TooLate => Poll::Ready(Ended::TimedOut),
        Enqueued::Queued => {
            *this.phase = Phase::Queued;
            queued(this, cx)
        }
    }
}

/// A later poll of a queued node: granted, rejected, or its deadline.
fn queued<T>(this: &mut AwaitFuelProj<'_, T>, cx: &mut Context<'_>) -> Poll<Ended> {
    let Source::Tank(shared) = this.source else {
        unreachable!("only a wait on a tank queues");
    };
    let node = NonNull::from(&*this.node);
    // The common case, without the lock: granted since last poll.
    let outcome = if this.node.state() == GRANTED {
        Poll::Ready(Outcome::Granted(this.node.granted_stamp()))
    } else {
        // SAFETY: queued by `enqueue`, alive (pinned in the future).
        unsafe { shared.poll_queued(node, cx.waker()) }
    };
    let outcome = match (outcome, this.deadline.as_mut()) {
        (Poll::Pending, Some(deadline)) => {
            let clock = &shared.clock;
            let timer = deadline.timer.get_or_insert_with(|| Timer::new(clock));
            match timer.arm(deadline.at, clock.now_ns(), cx.waker()) {
                // SAFETY: as above.
                Poll::Ready(()) => Poll::Ready(unsafe { shared.expire(node) }),
                Poll::Pending => Poll::Pending,
            }
        }
        (outcome, _) => outcome,
    };
    outcome.map(|outcome| match outcome {
        Outcome::Granted(stamp) => Ended::Granted(Fuel::new(shared, stamp, *this.n)),
        Outcome::TooLarge(capacity) => Ended::TooLarge(capacity),
        Outcome::TimedOut => Ended::TimedOut,
    })
}
