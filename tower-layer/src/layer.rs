//! [`Limit`]: the one layer, with the options every layer shares;
//! [`ThrottleLayer`] and [`KeyedThrottleLayer`] are its two kinds.

use std::sync::Arc;
use std::time::Duration;

#[cfg(doc)]
use fueltank::{Budget, KeyedBudget, Monitor, Tank, Throttle};
#[cfg(doc)]
use tower::Layer;

#[cfg(doc)]
use crate::KeyedThrottleLayer;
use crate::Stats;
use crate::answer::Errors;
use crate::emit::EmitOn;
#[cfg(doc)]
use crate::keyed::Keyed;
use crate::policy::{Mode, Policy, Queue};
use crate::service::Single;

/// A Tower layer drawing on a budget: `G` is what it draws on ([`Single`]:
/// one budget; [`Keyed`]: one per key) and `A` how its services answer
/// ([`Errors`], or `http::Responses`). Named by its two kinds,
/// [`ThrottleLayer`] and [`KeyedThrottleLayer`]; the options below are
/// those of both.
///
/// # Examples
///
/// ```
/// use fueltank::{KeyedTank, Rate, Tank};
/// use fueltank_tower::key::key_fn;
/// use fueltank_tower::{KeyedThrottleLayer, ThrottleLayer};
/// use std::time::Duration;
///
/// // The same options on both kinds.
/// let global = ThrottleLayer::new(Tank::new(Rate::per_second(100)?))
///     .max_wait(Duration::from_millis(50))
///     .label("global");
/// let per_user = KeyedThrottleLayer::new(KeyedTank::<u64>::new(Rate::per_second(5)?), key_fn(|user: &u64| Ok(*user)))
///     .max_wait(Duration::from_millis(50))
///     .label("per-user");
/// # let _ = (global, per_user);
/// # Ok::<(), fueltank::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Limit<G, A = Errors> {
    pub(crate) side: G,
    pub(crate) policy: Policy,
    pub(crate) answer: A,
}

/// A Tower [`Layer`] that makes every request spend one fuel from a shared
/// [`Tank`], and counts it in a statistics [`Monitor`].
///
/// Built by [`new`](ThrottleLayer::new) from a [`Throttle`] (its tank and
/// its monitor), a bare [`Tank`] (no statistics), or any other [`Budget`].
///
/// By default a service waits for fuel in `poll_ready` (back-pressure),
/// holds it, and spends it in `call`. With [`reject`](ThrottleLayer::reject)
/// it sheds instead: `call` fails at once with [`Throttled`](crate::Throttled)
/// when there is no fuel. Every service the layer makes, and every clone of
/// them, draws on the one tank.
///
/// With the `http` feature, [`http`][http-method] turns it into a layer
/// that answers `429 Too Many Requests` itself and adds the IETF
/// `RateLimit` headers.
///
/// # Examples
///
/// ```
/// use fueltank::{Rate, Throttle};
/// use fueltank_tower::ThrottleLayer;
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
///
/// # futures::executor::block_on(async {
/// let throttle = Throttle::builder(Rate::per_second(100)?).build()?;
/// let svc = ServiceBuilder::new()
///     .layer(ThrottleLayer::new(throttle.clone()))
///     .service(service_fn(|name: String| async move {
///         Ok::<_, tower::BoxError>(format!("hello, {name}"))
///     }));
/// assert_eq!(svc.oneshot("tank".to_string()).await?, "hello, tank");
/// assert_eq!(throttle.total(), 1); // counted by the throttle's monitor
/// # Ok::<(), tower::BoxError>(())
/// # }).unwrap();
/// ```
///
/// [http-method]: ThrottleLayer::http
pub type ThrottleLayer<A = Errors> = Limit<Single, A>;

impl<G, A> Limit<G, A> {
    /// Sheds requests instead of waiting: `poll_ready` no longer waits for
    /// fuel, and `call` fails at once with [`Throttled`](crate::Throttled)
    /// (boxed into [`tower::BoxError`]; a 429 with `http()`)
    /// when there is none — for a [`KeyedThrottleLayer`], when the
    /// request's key has none. Its
    /// [`retry_after`](crate::Throttled::retry_after) is exact, from the
    /// tank's schedule (the key's own wait).
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Tank};
    /// use fueltank_tower::{Throttled, ThrottleLayer};
    /// use tower::{Layer, Service, ServiceExt, service_fn};
    ///
    /// # futures::executor::block_on(async {
    /// let tank = Tank::new(Rate::per_minute(1)?);
    /// let mut svc = ThrottleLayer::new(tank)
    ///     .reject()
    ///     .layer(service_fn(|()| async { Ok::<_, tower::BoxError>(()) }));
    /// svc.ready().await?.call(()).await?; // the one fuel
    /// let err = svc.ready().await?.call(()).await.unwrap_err();
    /// assert!(err.is::<Throttled>());
    /// # Ok::<(), tower::BoxError>(())
    /// # }).unwrap();
    /// ```
    pub fn reject(mut self) -> Limit<G, A> {
        self.policy.mode = Mode::Reject;
        self
    }

    /// Bounds the wait (wait mode): a request whose fuel cannot come within
    /// `max_wait` is shed at once with [`Throttled`](crate::Throttled), and
    /// one that does get in has waited at most `max_wait`.
    ///
    /// When a request finds no fuel, the layer joins the tank's line with
    /// [`Tank::await_fuel_timeout`]: if the line ahead cannot be served
    /// within `max_wait` at the tank's rate, that fails at once, without
    /// waiting; otherwise the request waits for its fuel, and is shed if
    /// `max_wait` passes first (the tank was paused, or its rate lowered).
    /// The shed request's [`retry_after`](crate::Throttled::retry_after) is
    /// a newcomer's wait then, from the tank's schedule (with the `http`
    /// feature, the `Retry-After` of a 429).
    ///
    /// `poll_ready` still resolves: the request is shed by the `call` that
    /// follows. `max_wait(Duration::ZERO)` sheds every request that finds
    /// no fuel, like [`reject`](Limit::reject). In reject mode it
    /// changes nothing.
    ///
    /// A [`KeyedThrottleLayer`] knows the key only in `call`: the check is
    /// made there, against the key's line as it stands
    /// ([`KeyedBudget::wait_time`]), and a request let into the line waits
    /// at most `max_wait` (the budget's timed wait) in its response future:
    /// requests on the same key arriving on several threads at the same
    /// instant may each pass the check before any of them joins the line,
    /// and one whose fuel then cannot come in time is shed when `max_wait`
    /// passes.
    ///
    /// # Cancel safety
    ///
    /// A service dropped while it waits leaves the line and loses
    /// nothing; one dropped after its fuel came, before its `call`, gives
    /// the fuel back, as fuel taken at once ([`Budget::give_back`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Tank, clock::ManualClock};
    /// use fueltank_tower::{ThrottleLayer, Throttled};
    /// use std::task::{Context, Poll, Waker};
    /// use std::time::Duration;
    /// use tower::{Layer, Service, ServiceExt, service_fn};
    ///
    /// # futures::executor::block_on(async {
    /// let clock = ManualClock::new();
    /// let tank = Tank::builder(Rate::per_second(10)?).initial(0).clock(clock.clone()).build()?;
    /// let layer = ThrottleLayer::new(tank).max_wait(Duration::from_millis(150));
    /// let svc = || layer.layer(service_fn(|()| async { Ok::<_, tower::BoxError>(()) }));
    /// let mut cx = Context::from_waker(Waker::noop());
    ///
    /// // The next fuel is 100 ms away: the first request waits for it.
    /// let mut first = svc();
    /// assert!(first.poll_ready(&mut cx).is_pending());
    /// // The one after would wait 200 ms: it is shed at once.
    /// let err = svc().oneshot(()).await.unwrap_err();
    /// let throttled = err.downcast_ref::<Throttled>().unwrap();
    /// assert_eq!(throttled.retry_after(), Duration::from_millis(200));
    ///
    /// clock.advance(Duration::from_millis(100));
    /// assert!(matches!(first.poll_ready(&mut cx), Poll::Ready(Ok(()))));
    /// first.call(()).await?;
    /// # Ok::<(), tower::BoxError>(())
    /// # }).unwrap();
    /// ```
    pub fn max_wait(mut self, max_wait: Duration) -> Limit<G, A> {
        self.policy.max_wait = Some(max_wait);
        self
    }

    /// Bounds the line (wait mode): at most `max` requests of this layer
    /// wait for fuel at once (all its services and their clones together,
    /// whatever their keys);
    /// a request that finds no fuel while `max` wait is shed at once with
    /// [`Throttled`](crate::Throttled). `max_waiting(0)` sheds every
    /// request that finds no fuel.
    ///
    /// With [`max_wait`](Limit::max_wait), a request is shed if
    /// either bound would be passed.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Tank};
    /// use fueltank_tower::{ThrottleLayer, Throttled};
    /// use std::task::{Context, Waker};
    /// use tower::{Layer, Service, ServiceExt, service_fn};
    ///
    /// # futures::executor::block_on(async {
    /// let tank = Tank::builder(Rate::per_minute(1)?).initial(0).build()?;
    /// let layer = ThrottleLayer::new(tank).max_waiting(1);
    /// let svc = || layer.layer(service_fn(|()| async { Ok::<_, tower::BoxError>(()) }));
    ///
    /// let mut waiting = svc();
    /// assert!(waiting.poll_ready(&mut Context::from_waker(Waker::noop())).is_pending());
    /// let err = svc().oneshot(()).await.unwrap_err(); // the line is full
    /// assert!(err.is::<Throttled>());
    /// # Ok::<(), tower::BoxError>(())
    /// # }).unwrap();
    /// ```
    pub fn max_waiting(mut self, max: usize) -> Limit<G, A> {
        self.policy.queue = Some(Arc::new(Queue::new(max)));
        self
    }

    /// Names this limit: the name is in every [`Throttled`](crate::Throttled)
    /// it sheds ([`label`](crate::Throttled::label)), in its `tracing`
    /// events, and in the default body of its HTTP 429s.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Tank};
    /// use fueltank_tower::{ThrottleLayer, Throttled};
    /// use tower::{Layer, Service, ServiceExt, service_fn};
    ///
    /// # futures::executor::block_on(async {
    /// let mut svc = ThrottleLayer::new(Tank::new(Rate::per_minute(1)?))
    ///     .reject()
    ///     .label("uploads")
    ///     .layer(service_fn(|()| async { Ok::<_, tower::BoxError>(()) }));
    /// svc.ready().await?.call(()).await?;
    /// let err = svc.ready().await?.call(()).await.unwrap_err();
    /// assert_eq!(err.downcast_ref::<Throttled>().unwrap().label(), Some("uploads"));
    /// # Ok::<(), tower::BoxError>(())
    /// # }).unwrap();
    /// ```
    pub fn label(mut self, label: impl Into<Arc<str>>) -> Limit<G, A> {
        self.policy.label = Some(label.into());
        self
    }

    /// Shadow mode: tries the limit on real traffic without enforcing it.
    /// A request that would be refused (shed, or refused while the
    /// budget's store is down) is let through at once instead, without
    /// fuel and without waiting; it is counted in
    /// [`Stats::shadowed`] (with [`stats`](Limit::stats)) and reported as
    /// a `tracing` event at `DEBUG` with the field `shadow = true` and what
    /// it would have been told (see [the crate's
    /// events](crate#tracing-events)). A request that finds fuel takes it,
    /// as without shadow mode, so the budget shows the load the limit would
    /// see: what is counted as shadowed is what the limit would refuse
    /// with the requests it admits spending their fuel.
    ///
    /// A request at fault is answered as without shadow mode: one whose
    /// key cannot be read, and one costing more than the budget can ever
    /// hold ([`cost`](Limit::cost)), which no limit would let through.
    ///
    /// Nothing waits, in either mode: [`reject`](Limit::reject),
    /// [`max_wait`](Limit::max_wait) and
    /// [`max_waiting`](Limit::max_waiting) change nothing. A budget that
    /// only its store can answer for ([`Budget::ask`]) is not asked.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{KeyedTank, Rate};
    /// use fueltank_tower::key::key_fn;
    /// use fueltank_tower::{KeyedThrottleLayer, Stats};
    /// use tower::{Layer, Service, ServiceExt, service_fn};
    ///
    /// # futures::executor::block_on(async {
    /// let stats = Stats::new();
    /// let mut svc = KeyedThrottleLayer::new(KeyedTank::new(Rate::per_minute(2)?), key_fn(|k: &u8| Ok(*k)))
    ///     .shadow()
    ///     .stats(stats.clone())
    ///     .layer(service_fn(|k: u8| async move { Ok::<_, tower::BoxError>(k) }));
    /// for _ in 0..5 {
    ///     assert_eq!(svc.ready().await?.call(7).await?, 7); // never shed, never waits
    /// }
    /// assert_eq!(stats.shadowed().total(), 3); // two fuel for five
    /// assert_eq!(stats.admitted().total(), 5);
    /// # Ok::<(), tower::BoxError>(())
    /// # }).unwrap();
    /// ```
    pub fn shadow(mut self) -> Limit<G, A> {
        self.policy.shadow = true;
        self
    }

    /// Counts this layer's requests in `stats`: admitted, rejected, waited,
    /// refused for want of a key (keyed layer), and the waits (see
    /// [`Stats`]). Keep a clone of `stats` to read
    /// them; several layers may share one.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Tank};
    /// use fueltank_tower::{Stats, ThrottleLayer};
    /// use tower::{Layer, ServiceExt, service_fn};
    ///
    /// # futures::executor::block_on(async {
    /// let stats = Stats::new();
    /// let svc = ThrottleLayer::new(Tank::new(Rate::per_second(100)?))
    ///     .stats(stats.clone())
    ///     .layer(service_fn(|()| async { Ok::<_, tower::BoxError>(()) }));
    /// svc.oneshot(()).await?;
    /// assert_eq!(stats.admitted().total(), 1);
    /// # Ok::<(), tower::BoxError>(())
    /// # }).unwrap();
    /// ```
    pub fn stats(mut self, stats: Stats) -> Limit<G, A> {
        self.policy.stats = Some(stats);
        self
    }

    /// Reports every wait of at least `threshold` as a `tracing` event at
    /// level `INFO` (default: one second). See [the crate's
    /// events](crate#tracing-events).
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Tank};
    /// use fueltank_tower::ThrottleLayer;
    /// use std::time::Duration;
    ///
    /// let layer = ThrottleLayer::new(Tank::new(Rate::per_second(10)?))
    ///     .long_wait(Duration::from_millis(250));
    /// # let _ = layer;
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    #[cfg(feature = "tracing")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tracing")))]
    pub fn long_wait(mut self, threshold: Duration) -> Limit<G, A> {
        self.policy.long_wait = threshold;
        self
    }

    /// When to report an emission: at fuel time ([`EmitOn::Fuel`], the
    /// default) or when the response succeeds ([`EmitOn::Success`]).
    ///
    /// Emissions feed the monitor of the [`Throttle`] the layer was built
    /// from, or the one given to a keyed layer
    /// ([`KeyedThrottleLayer::monitor`]); a layer over a bare tank has
    /// none, so for it this changes nothing. Shed requests are never
    /// emitted.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Throttle};
    /// use fueltank_tower::{EmitOn, ThrottleLayer};
    /// use tower::{Layer, Service, ServiceExt, service_fn};
    ///
    /// # futures::executor::block_on(async {
    /// let throttle = Throttle::builder(Rate::per_second(1000)?).build()?;
    /// let mut svc = ThrottleLayer::new(throttle.clone())
    ///     .emit_on(EmitOn::Success)
    ///     .layer(service_fn(|x: u32| async move {
    ///         if x > 0 { Ok(x) } else { Err(tower::BoxError::from("zero")) }
    ///     }));
    /// svc.ready().await?.call(1).await?;
    /// assert!(svc.ready().await?.call(0).await.is_err());
    /// assert_eq!(throttle.total(), 1); // the failed one is not counted
    /// # Ok::<(), tower::BoxError>(())
    /// # }).unwrap();
    /// ```
    pub fn emit_on(mut self, when: EmitOn) -> Limit<G, A> {
        self.policy.emission.on = when;
        self
    }
}
