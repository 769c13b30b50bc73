//! The one timer of a tank (or monitor): `async-io` in real time, or the
//! timers of a [`ManualClock`](crate::clock::ManualClock) in tests.

use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::clock::{ClockSource, ManualTimer};

/// A one-shot timer that wakes a given waker at a deadline in the internal
/// nanoseconds of its clock.
#[derive(Debug)]
pub(crate) enum Timer {
    Real {
        timer: async_io::Timer,
        /// The deadline armed, to skip re-arming for the same one.
        armed: Option<u64>,
    },
    Manual(ManualTimer),
    #[cfg(feature = "tokio")]
    Tokio(crate::clock::TokioTimer),
}

impl Timer {
    pub(crate) fn new(clock: &ClockSource) -> Timer {
        #[cfg(feature = "tokio")]
        if matches!(clock, ClockSource::Tokio) {
            return Timer::Tokio(crate::clock::TokioTimer::new());
        }
        match clock.manual() {
            Some(manual) => Timer::Manual(ManualTimer::new(manual.clone())),
            None => Timer::Real {
                timer: async_io::Timer::never(),
                armed: None,
            },
        }
    }

    /// Arms the timer to wake `waker` at `deadline_ns`, given the clock reads
    /// `now_ns`. Returns `Ready` instead if the deadline has passed.
    pub(crate) fn arm(&mut self, deadline_ns: u64, now_ns: u64, waker: &Waker) -> Poll<()> {
        if deadline_ns <= now_ns {
            self.disarm();
            return Poll::Ready(());
        }
        match self {
            Timer::Manual(timer) => match timer.arm(deadline_ns, waker) {
                true => Poll::Ready(()),
                false => Poll::Pending,
            },
            #[cfg(feature = "tokio")]
            Timer::Tokio(timer) => timer.arm(deadline_ns, waker),
            Timer::Real { timer, armed } => {
                if *armed != Some(deadline_ns) {
                    // Timers speak `Instant`; only the remaining duration
                    // crosses from our clock to the system's.
                    let after = Duration::from_nanos(deadline_ns - now_ns);
                    match Instant::now().checked_add(after) {
                        Some(at) => timer.set_at(at),
                        None => timer.clear(),
                    }
                    *armed = Some(deadline_ns);
                }
                let poll = Pin::new(timer).poll(&mut Context::from_waker(waker));
                if poll.is_ready() {
                    *armed = None;
                }
                poll.map(drop)
            }
        }
    }

    pub(crate) fn disarm(&mut self) {
        match self {
            Timer::Manual(timer) => timer.disarm(),
            #[cfg(feature = "tokio")]
            Timer::Tokio(timer) => timer.disarm(),
            Timer::Real { timer, armed } => {
                if armed.take().is_some() {
                    timer.clear();
                }
            }
        }
    }
}

use std::future::Future as _;
