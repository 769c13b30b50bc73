//! The driver of one entry: a task that makes its round trips and grants
//! its waiters as their fuel becomes spendable.
//!
//! It is spawned when there is work (see `entry.rs`) and ends when there is
//! none: no waiter, no round trip in flight, nothing to ask. While it runs,
//! it waits on one timer (the next fuel's start, a retry time, or a
//! backoff), on its round trip, and on kicks; each wake-up is one `plan`
//! under the entry's lock. So an idle tank costs no task and no wake-ups.
//!
//! The timer does not wake the task itself: its waker grants the fuel that
//! has become spendable right where the timer fires (on `async-io`'s
//! thread), then wakes the task to set the next time. A grant is thus as
//! late as the timer, not as the timer plus the executor's scheduling of
//! the task: under `One`, every late grant delays the ones after it. For the
//! same reason, under `One` the timer is armed early by this system's
//! usual timer lateness (measured when the tank is built, then following
//! what the timer shows: `fueltank::clock::next_timer_correction`) and the waker
//! spins the rest, as a calibrated local `One` tank does.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use async_io::Timer;

use crate::entry::{Entry, Outcome, now};
use crate::lock;

type Call = Pin<Box<dyn Future<Output = Outcome> + Send>>;

pub(crate) struct Driver {
    entry: Arc<Entry>,
    generation: u64,
    call: Option<Call>,
    /// When the call was started: a call the store's timeout did not end
    /// in three times its time is given up (it never should be needed).
    call_started: Instant,
    timer: Timer,
    /// The timer's waker: grants, then wakes the task.
    on_time: Arc<OnTime>,
    on_time_waker: Waker,
    /// Whether it has yielded once: waiters that arrive together (tasks
    /// started at once) join the line before its first ask, which is then
    /// sized for all of them.
    yielded: bool,
    done: bool,
}

struct OnTime {
    entry: Arc<Entry>,
    task: Mutex<Option<Waker>>,
    /// The deadline the timer is armed for, when armed early for fuel: how
    /// late it fires teaches the correction.
    armed: Mutex<Option<Instant>>,
}

impl Wake for OnTime {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let armed = lock(&self.armed).take();
        self.entry
            .grant_due(armed.map(|at| now().saturating_duration_since(at)));
        let task = lock(&self.task).take();
        if let Some(task) = task {
            task.wake();
        }
    }
}

impl Driver {
    pub(crate) fn new(entry: Arc<Entry>, generation: u64) -> Driver {
        let on_time = Arc::new(OnTime {
            entry: entry.clone(),
            task: Mutex::new(None),
            armed: Mutex::new(None),
        });
        Driver {
            entry,
            generation,
            call: None,
            call_started: now(),
            timer: Timer::never(),
            on_time_waker: Waker::from(on_time.clone()),
            on_time,
            yielded: false,
            done: false,
        }
    }
}

impl Future for Driver {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        if !this.yielded {
            this.yielded = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        loop {
            // A keyed tank's call may be three round trips in a row (the
            // key, the tank's parameters, the key again).
            let limit = this.entry.store.timeout * 3;
            if let Some(call) = &mut this.call {
                if let Poll::Ready(outcome) = call.as_mut().poll(cx) {
                    this.call = None;
                    this.entry.apply(outcome);
                } else if this.call_started.elapsed() >= limit {
                    this.call = None;
                    this.entry
                        .apply(Outcome::abandoned(this.call_started, limit));
                }
            }
            let plan = this.entry.plan(cx.waker(), this.call.is_some());
            if let Some(ask) = plan.ask {
                this.call = Some(Box::pin(this.entry.call(ask)));
                this.call_started = now();
                continue;
            }
            if plan.exit {
                this.done = true;
                return Poll::Ready(());
            }
            let give_up = this.call.as_ref().map(|_| this.call_started + limit);
            let wake_at = match (plan.wake_at, give_up) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            match wake_at {
                Some(at) => {
                    *lock(&this.on_time.task) = Some(cx.waker().clone());
                    // The timer counts in `Instant::now()`'s time; `at` is
                    // in the entry's clock: convert through the time left.
                    let early = if plan.for_fuel {
                        this.entry.options.correction()
                    } else {
                        Duration::ZERO
                    };
                    let here = now();
                    let left = at.saturating_duration_since(here).saturating_sub(early);
                    *lock(&this.on_time.armed) =
                        (plan.for_fuel && !early.is_zero()).then(|| here + left);
                    this.timer.set_at(Instant::now() + left);
                    let mut on_time = Context::from_waker(&this.on_time_waker);
                    if Pin::new(&mut this.timer).poll(&mut on_time).is_ready() {
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
            self.entry.driver_gone(self.generation, self.call.is_some());
        }
    }
}
