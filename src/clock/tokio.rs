//! [`TokioClock`]: time as `tokio::time` tells it, paused time included.

use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use super::{Clock, instant_of};

/// A clock that follows `tokio::time`: under
/// `#[tokio::test(start_paused = true)]` (or `tokio::time::pause`), a tank
/// built on it sees tokio's virtual time, and waits on tokio's timer, so
/// tokio advances the time to the tank's next grant as it does to any
/// sleep. With real time it behaves as the default clock, with tokio's
/// coarser timer (about 1 ms).
///
/// A tank on this clock has no timer correction (spinning cannot wait for
/// paused time), and must be waited on inside a tokio runtime: outside one,
/// its timers fall back to `async-io`'s, on real time.
///
/// # Examples
///
/// ```
/// use fueltank::{Rate, Tank, clock::TokioClock};
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), fueltank::Error> {
/// let tank = Tank::builder(Rate::per_second(1)?).initial(0).clock(TokioClock).build()?;
/// let start = tokio::time::Instant::now();
/// tank.await_fuel().await; // no real second passes
/// assert_eq!(start.elapsed(), Duration::from_secs(1));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub struct TokioClock;

impl Clock for TokioClock {
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }
}

/// A one-shot timer on tokio's timer, or on `async-io`'s outside a runtime.
#[derive(Debug)]
pub(crate) struct TokioTimer {
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    outside: async_io::Timer,
    armed: Option<u64>,
}

impl TokioTimer {
    pub(crate) fn new() -> TokioTimer {
        TokioTimer {
            sleep: None,
            outside: async_io::Timer::never(),
            armed: None,
        }
    }

    /// Arms the timer for internal time `deadline_ns` (later than now).
    pub(crate) fn arm(&mut self, deadline_ns: u64, waker: &Waker) -> Poll<()> {
        let at = instant_of(deadline_ns);
        let mut cx = Context::from_waker(waker);
        if tokio::runtime::Handle::try_current().is_err() {
            if self.armed != Some(deadline_ns) {
                self.outside.set_at(at);
                self.armed = Some(deadline_ns);
            }
            return Pin::new(&mut self.outside).poll(&mut cx).map(drop);
        }
        let at = tokio::time::Instant::from_std(at);
        match &mut self.sleep {
            Some(sleep) => {
                if self.armed != Some(deadline_ns) {
                    sleep.as_mut().reset(at);
                }
            }
            None => self.sleep = Some(Box::pin(tokio::time::sleep_until(at))),
        }
        self.armed = Some(deadline_ns);
        let sleep = self.sleep.as_mut().expect("just set");
        let poll = sleep.as_mut().poll(&mut cx);
        if poll.is_ready() {
            self.armed = None;
        }
        poll
    }

    pub(crate) fn disarm(&mut self) {
        if self.armed.take().is_some() {
            self.sleep = None;
            self.outside.clear();
        }
    }
}

use std::future::Future as _;
