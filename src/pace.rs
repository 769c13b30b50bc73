//! [`Pace`]: a stream whose every item waits for fuel.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures_core::Stream;
use pin_project_lite::pin_project;

use crate::{AwaitFuel, Tank, Throttle};

pin_project! {
    /// A stream paced through a tank: each item of the inner stream is
    /// yielded only once one fuel has been taken for it. Made by
    /// [`Tank::pace`] and [`Throttle::pace`].
    ///
    /// An item is pulled from the inner stream first, then waits for its
    /// fuel, so a stream that ends takes no fuel for nothing.
    ///
    /// It holds its place in the tank's line in place, without allocating,
    /// so it is not `Unpin`: combinators (`collect`, `for_each_concurrent`,
    /// `buffer_unordered`) take it as it is; for `next()`, pin it first
    /// (`std::pin::pin!` or `Box::pin`).
    ///
    /// # Cancel safety
    ///
    /// Dropping a pending `next()` keeps everything: the item already pulled
    /// and its place in the tank's line stay in the `Pace` for the next
    /// call. Dropping the `Pace` itself drops that item and gives its
    /// place up, losing no fuel.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Tank};
    /// use futures::StreamExt;
    ///
    /// # futures::executor::block_on(async {
    /// let tank = Tank::new(Rate::per_second(1000)?);
    /// let jobs = futures::stream::iter(0..5);
    /// let done: Vec<u32> = tank.pace(jobs).collect().await; // about 1 ms apart
    /// assert_eq!(done, [0, 1, 2, 3, 4]);
    /// # Ok::<(), fueltank::Error>(())
    /// # }).unwrap();
    /// ```
    #[must_use = "streams do nothing unless polled"]
    pub struct Pace<S: Stream> {
        #[pin]
        stream: S,
        throttle: Throttle,
        item: Option<S::Item>,
        #[pin]
        fuel: Option<AwaitFuel>,
    }
}

impl<S: Stream> Pace<S> {
    pub(crate) fn new(stream: S, throttle: Throttle) -> Pace<S> {
        Pace {
            stream,
            throttle,
            item: None,
            fuel: None,
        }
    }

    /// The inner stream.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Tank};
    ///
    /// let tank = Tank::new(Rate::per_second(10)?);
    /// let paced = tank.pace(futures::stream::iter([1, 2, 3]));
    /// let _inner = paced.into_inner();
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn into_inner(self) -> S {
        self.stream
    }
}

impl<S: Stream> Stream for Pace<S> {
    type Item = S::Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let mut this = self.project();
        if this.item.is_none() {
            match ready!(this.stream.as_mut().poll_next(cx)) {
                Some(item) => *this.item = Some(item),
                None => return Poll::Ready(None),
            }
            this.fuel.set(Some(this.throttle.await_fuel()));
        }
        if let Some(fuel) = this.fuel.as_mut().as_pin_mut() {
            ready!(fuel.poll(cx));
        }
        this.fuel.set(None);
        Poll::Ready(this.item.take())
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let pending = usize::from(self.item.is_some());
        let (low, high) = self.stream.size_hint();
        (
            low.saturating_add(pending),
            high.and_then(|h| h.checked_add(pending)),
        )
    }
}

impl<S: Stream + fmt::Debug> fmt::Debug for Pace<S>
where
    S::Item: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pace")
            .field("stream", &self.stream)
            .field("throttle", &self.throttle)
            .field("item", &self.item)
            .finish_non_exhaustive()
    }
}

impl Tank {
    /// Paces `stream` through this tank: each item waits in line for one
    /// fuel before it is yielded. For pools that consume a stream of jobs
    /// (`for_each_concurrent`, `buffer_unordered`, ...).
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Tank, clock::ManualClock};
    /// use futures::StreamExt;
    /// use std::time::Duration;
    ///
    /// let clock = ManualClock::new();
    /// let tank = Tank::builder(Rate::per_second(10)?).clock(clock.clone()).build()?;
    /// let mut paced = std::pin::pin!(tank.pace(futures::stream::iter(["a", "b"])));
    /// let mut next = || futures::executor::block_on(futures::future::poll_immediate(paced.next()));
    /// assert_eq!(next(), Some(Some("a"))); // the first fuel is there
    /// assert_eq!(next(), None); // "b" waits for fuel
    /// clock.advance(Duration::from_millis(100));
    /// assert_eq!(next(), Some(Some("b")));
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn pace<S: Stream>(&self, stream: S) -> Pace<S> {
        Pace::new(stream, Throttle::of_tank(self.clone()))
    }
}

impl Throttle {
    /// Paces `stream` through this throttle: each item waits for one fuel
    /// (none without a tank) and, with `auto_emit`, is counted.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Throttle};
    /// use futures::StreamExt;
    ///
    /// # futures::executor::block_on(async {
    /// let throttle = Throttle::builder(Rate::per_second(1000)?).build()?;
    /// let n = throttle.pace(futures::stream::iter(0..3)).count().await;
    /// assert_eq!((n, throttle.total()), (3, 3));
    /// # Ok::<(), fueltank::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn pace<S: Stream>(&self, stream: S) -> Pace<S> {
        Pace::new(stream, self.clone())
    }
}
