//! The driver of one entry: a task that makes its round trips and grants
//! its waiters as their fuel becomes spendable.
//!
//! It is spawned when there is work (see `entry.rs`) and ends when there is
//! none: no waiter, no round trip in flight, nothing to ask. While it runs,
//! it waits on one timer (the next fuel's start, a retry time, or a
//! backoff), on its round trip, and on kicks; each wake-up is one `plan`
//! under the entry's lock. So an idle tank costs no task and no wake-ups.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use async_io::Timer;

use crate::entry::{Entry, Outcome};

type Call = Pin<Box<dyn Future<Output = Outcome> + Send>>;

pub(crate) struct Driver {
    entry: Arc<Entry>,
    generation: u64,
    call: Option<Call>,
    timer: Timer,
    done: bool,
}

impl Driver {
    pub(crate) fn new(entry: Arc<Entry>, generation: u64) -> Driver {
        Driver {
            entry,
            generation,
            call: None,
            timer: Timer::never(),
            done: false,
        }
    }
}

impl Future for Driver {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        loop {
            if let Some(call) = &mut this.call
                && let Poll::Ready(outcome) = call.as_mut().poll(cx)
            {
                this.call = None;
                this.entry.apply(outcome);
            }
            let plan = this
                .entry
                .plan(Instant::now(), cx.waker(), this.call.is_some());
            if let Some(ask) = plan.ask {
                this.call = Some(Box::pin(this.entry.call(ask)));
                continue;
            }
            if plan.exit {
                this.done = true;
                return Poll::Ready(());
            }
            match plan.wake_at {
                Some(at) => {
                    this.timer.set_at(at);
                    if Pin::new(&mut this.timer).poll(cx).is_ready() {
                        continue;
                    }
                }
                None => this.timer = Timer::never(),
            }
            return Poll::Pending;
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if !self.done {
            self.entry
                .driver_gone(self.generation, self.call.is_some());
        }
    }
}
