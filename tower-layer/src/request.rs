//! What a layer reads from each request besides its key: its cost
//! ([`Limit::cost`]) and whether it is exempt ([`Limit::exempt`]). Both
//! need the request, which a service sees only in `call`: a layer with
//! them takes its fuel there, as the keyed layer does, so a
//! [`ThrottleLayer`](crate::ThrottleLayer) given either becomes a keyed
//! layer with one key, `()`, over its budget.

use std::time::Duration;

use fueltank::{BudgetWait, Fuel, KeyedBudget, Rate, Unavailable};

use crate::budget::Shared;
use crate::key::{KeyError, KeyExtractor};
use crate::keyed::Keyed;
use crate::layer::Limit;
use crate::service::Single;

/// Every request alike: each costs one fuel, and none is exempt (the
/// default of [`Limit::cost`] and [`Limit::exempt`]).
///
/// # Examples
///
/// ```
/// use fueltank::{KeyedTank, Rate};
/// use fueltank_tower::key::key_fn;
/// use fueltank_tower::{Keyed, KeyedThrottleLayer, Limit, Uniform};
///
/// let layer: Limit<Keyed<u8, _, Uniform, Uniform>> =
///     KeyedThrottleLayer::new(KeyedTank::new(Rate::per_second(5)?), key_fn(|k: &u8| Ok(*k)));
/// # let _ = layer;
/// # Ok::<(), fueltank::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Uniform;

/// What a layer reads from each request (sealed): `T` is its cost (`u64`)
/// or whether it is exempt (`bool`). [`Uniform`] reads one fuel and never
/// exempt; a closure `Fn(&Request) -> T`, what it returns.
pub trait PerRequest<Request, T> {
    /// What `request` costs, or whether it passes untouched.
    #[doc(hidden)]
    fn read(&self, request: &Request) -> T;
}

impl<Request> PerRequest<Request, u64> for Uniform {
    #[inline(always)]
    fn read(&self, _request: &Request) -> u64 {
        1
    }
}

impl<Request> PerRequest<Request, bool> for Uniform {
    #[inline(always)]
    fn read(&self, _request: &Request) -> bool {
        false
    }
}

impl<Request, T, F: Fn(&Request) -> T> PerRequest<Request, T> for F {
    #[inline]
    fn read(&self, request: &Request) -> T {
        self(request)
    }
}

/// What a layer draws on, given a cost or an exemption (sealed): a
/// [`Keyed`] side keeps its key, a [`Single`] one becomes one key, `()`.
pub trait AsKeyed {
    /// This side, spending what `F` says.
    type WithCost<F>;
    /// This side, letting through what `F` exempts.
    type WithExempt<F>;

    /// This side with `cost`.
    #[doc(hidden)]
    fn with_cost<F>(self, cost: F) -> Self::WithCost<F>;

    /// This side with `exempt`.
    #[doc(hidden)]
    fn with_exempt<F>(self, exempt: F) -> Self::WithExempt<F>;
}

impl<K, X, C, E> AsKeyed for Keyed<K, X, C, E> {
    type WithCost<F> = Keyed<K, X, F, E>;
    type WithExempt<F> = Keyed<K, X, C, F>;

    fn with_cost<F>(self, cost: F) -> Keyed<K, X, F, E> {
        Keyed {
            keyed: self.keyed,
            extractor: self.extractor,
            key_text: self.key_text,
            cost,
            exempt: self.exempt,
        }
    }

    fn with_exempt<F>(self, exempt: F) -> Keyed<K, X, C, F> {
        Keyed {
            keyed: self.keyed,
            extractor: self.extractor,
            key_text: self.key_text,
            cost: self.cost,
            exempt,
        }
    }
}

impl AsKeyed for Single {
    type WithCost<F> = Keyed<(), Whole, F, Uniform>;
    type WithExempt<F> = Keyed<(), Whole, Uniform, F>;

    fn with_cost<F>(self, cost: F) -> Self::WithCost<F> {
        self.one_key().with_cost(cost)
    }

    fn with_exempt<F>(self, exempt: F) -> Self::WithExempt<F> {
        self.one_key().with_exempt(exempt)
    }
}

impl Single {
    /// This budget as a keyed one with one key, `()`.
    fn one_key(self) -> Keyed<(), Whole> {
        Keyed {
            keyed: std::sync::Arc::new(OneKey(self.budget)),
            extractor: Whole,
            key_text: None,
            cost: Uniform,
            exempt: Uniform,
        }
    }
}

impl<G: AsKeyed, A> Limit<G, A> {
    /// Makes each request spend `cost(&request)` fuel instead of one: a
    /// request waits for (or, in reject mode, finds) that much fuel at
    /// once, in the budget's fair line ([`Budget::wait`](crate::Budget::wait)
    /// and [`Budget::try_take`](crate::Budget::try_take) with that amount,
    /// or their [`KeyedBudget`] equivalents), and the `RateLimit` headers
    /// of the HTTP layer count those units.
    ///
    /// - A cost of 0 passes at once and spends nothing (it is counted as
    ///   admitted).
    /// - A cost beyond the budget's capacity could never be served: it is
    ///   refused at once, never waited for, with
    ///   [`fueltank::Error::ExceedsCapacity`] (boxed into
    ///   [`tower::BoxError`]), or over HTTP as a request at fault, with the
    ///   answer to a bad key (`400 Bad Request` by default, saying what it
    ///   costs and what the limit holds, the error in its extensions) — not
    ///   `429`, because no wait makes such a request fit, so a client must
    ///   not retry it as it is.
    ///
    /// The cost is read from the request, which a service sees only in
    /// `call`: the fuel is taken there, and a request that must wait waits
    /// in its response future, as with a [`KeyedThrottleLayer`]: a
    /// [`ThrottleLayer`] given a cost becomes a keyed layer with one key
    /// over its budget, whose inner service must be `Clone`.
    ///
    /// # Cancel safety
    ///
    /// A response future dropped while it waits for its fuel leaves the
    /// line and loses none (as for [`KeyedThrottleLayer`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Tank, clock::ManualClock};
    /// use fueltank_tower::ThrottleLayer;
    /// use tower::{Layer, ServiceExt, service_fn};
    ///
    /// # futures::executor::block_on(async {
    /// let tank = Tank::builder(Rate::per_second(10)?).initial(10).clock(ManualClock::new()).build()?;
    /// // A request (a batch of n items) costs n.
    /// let svc = ThrottleLayer::new(tank.clone())
    ///     .reject()
    ///     .cost(|batch: &Vec<u32>| batch.len() as u64)
    ///     .layer(service_fn(|batch: Vec<u32>| async move { Ok::<_, tower::BoxError>(batch.len()) }));
    /// assert_eq!(svc.clone().oneshot(vec![1, 2, 3]).await?, 3);
    /// assert_eq!(tank.level(), 7);
    /// let too_big = svc.oneshot(vec![0; 11]).await.unwrap_err(); // beyond 10: never
    /// assert!(matches!(
    ///     too_big.downcast_ref::<fueltank::Error>(),
    ///     Some(fueltank::Error::ExceedsCapacity { requested: 11, capacity: 10 })
    /// ));
    /// # Ok::<(), tower::BoxError>(())
    /// # }).unwrap();
    /// ```
    ///
    /// [`ThrottleLayer`]: crate::ThrottleLayer
    /// [`KeyedThrottleLayer`]: crate::KeyedThrottleLayer
    pub fn cost<F>(self, cost: F) -> Limit<G::WithCost<F>, A> {
        Limit {
            side: self.side.with_cost(cost),
            policy: self.policy,
            answer: self.answer,
        }
    }

    /// Lets every request for which `exempt(&request)` is true pass
    /// untouched: it spends no fuel, waits for nothing, is never shed, and
    /// the layer does not count it ([`Stats`](crate::Stats), emission) or
    /// give it `RateLimit` headers. For a keyed layer, its key is not even
    /// read.
    ///
    /// As for [`cost`](Limit::cost), the request is known only in `call`:
    /// a [`ThrottleLayer`](crate::ThrottleLayer) given an exemption takes
    /// its fuel there, as a keyed layer with one key over its budget,
    /// whose inner service must be `Clone`.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Tank};
    /// use fueltank_tower::ThrottleLayer;
    /// use tower::{Layer, ServiceExt, service_fn};
    ///
    /// # futures::executor::block_on(async {
    /// let tank = Tank::builder(Rate::per_minute(1)?).initial(0).build()?;
    /// let svc = ThrottleLayer::new(tank)
    ///     .reject()
    ///     .exempt(|path: &String| path == "/health")
    ///     .layer(service_fn(|path: String| async move { Ok::<_, tower::BoxError>(path.len()) }));
    /// assert_eq!(svc.clone().oneshot("/health".to_string()).await?, 7); // no fuel, yet served
    /// assert!(svc.oneshot("/api".to_string()).await.is_err()); // shed
    /// # Ok::<(), tower::BoxError>(())
    /// # }).unwrap();
    /// ```
    pub fn exempt<F>(self, exempt: F) -> Limit<G::WithExempt<F>, A> {
        Limit {
            side: self.side.with_exempt(exempt),
            policy: self.policy,
            answer: self.answer,
        }
    }
}

/// The key of every request to a [`ThrottleLayer`](crate::ThrottleLayer)
/// given a cost or an exemption: `()`, one budget for all.
#[derive(Debug, Clone, Copy, Default)]
pub struct Whole;

impl<Request> KeyExtractor<Request> for Whole {
    type Key = ();

    #[inline(always)]
    fn extract(&self, _request: &Request) -> Result<(), KeyError> {
        Ok(())
    }
}

/// A [`ThrottleLayer`](crate::ThrottleLayer)'s budget as a keyed budget
/// with one key (`None`: a `Throttle` without a tank, unlimited).
#[derive(Debug)]
struct OneKey(Option<Shared>);

impl KeyedBudget<()> for OneKey {
    fn take(&self, _key: &(), n: u64) -> bool {
        self.0.as_ref().is_none_or(|budget| budget.take(n))
    }

    fn wait(&self, _key: &(), n: u64, max_wait: Option<Duration>) -> BudgetWait {
        match &self.0 {
            Some(budget) => budget.wait(n, max_wait),
            None => Box::pin(std::future::ready(Ok(Some(Fuel::taken(n))))),
        }
    }

    fn ask(&self, _key: &(), n: u64) -> Option<BudgetWait> {
        self.0.as_ref()?.ask(n)
    }

    fn wait_time(&self, _key: &(), n: u64) -> Option<Duration> {
        match &self.0 {
            Some(budget) => budget.wait_time(n),
            None => Some(Duration::ZERO),
        }
    }

    fn rate(&self) -> Rate {
        match &self.0 {
            Some(budget) => budget.rate(),
            // Unlimited: the fastest rate there is.
            None => Rate::new(1, Duration::from_nanos(1)).unwrap_or_else(|_| unreachable!()),
        }
    }

    fn available(&self, _key: &()) -> u64 {
        self.0
            .as_ref()
            .map_or(u64::MAX, |budget| budget.available())
    }

    fn capacity(&self, _key: &()) -> u64 {
        self.0.as_ref().map_or(u64::MAX, |budget| budget.capacity())
    }

    fn unavailable(&self, _key: &()) -> Option<Unavailable> {
        self.0.as_ref()?.unavailable()
    }
}
