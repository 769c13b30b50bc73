//! What the HTTP tests share: an inner service that answers at once, and a
//! call that must be answered at once. (Each test uses what it needs.)
#![allow(dead_code)]

use std::convert::Infallible;
use std::task::{Context, Waker};

use futures::FutureExt;
use http::{Request, Response};
use tower::{Service, service_fn};

pub type Inner = tower::util::ServiceFn<
    fn(Request<()>) -> std::future::Ready<Result<Response<String>, Infallible>>,
>;

/// Answers "hello" at once.
pub fn ok() -> Inner {
    service_fn(|_| std::future::ready(Ok(Response::new("hello".to_string()))))
}

/// `poll_ready` (it must be ready), then `call`, answered at once.
pub fn send<S>(svc: &mut S, request: Request<()>) -> Response<String>
where
    S: Service<Request<()>, Response = Response<String>, Error = Infallible>,
{
    assert!(
        svc.poll_ready(&mut Context::from_waker(Waker::noop()))
            .is_ready()
    );
    match svc.call(request).now_or_never() {
        Some(Ok(response)) => response,
        Some(Err(never)) => match never {},
        None => panic!("not answered at once"),
    }
}

/// A budget kept in a store of the test's own, which it can stop: it
/// grants the fuel it holds ([`fill`](Flaky::fill)), even while stopped
/// (fuel granted before the store went down, as Redis tanks spend their
/// reserve), and while stopped says it is unavailable. Its waits resolve
/// at once, with or without the fuel. Clones share it.
#[derive(Debug, Clone, Default)]
pub struct Flaky(std::sync::Arc<FlakyState>);

#[derive(Debug, Default)]
pub struct FlakyState {
    down: std::sync::atomic::AtomicBool,
    fuel: std::sync::atomic::AtomicU64,
}

impl Flaky {
    /// Adds `n` fuel.
    pub fn fill(&self, n: u64) {
        self.0
            .fuel
            .fetch_add(n, std::sync::atomic::Ordering::SeqCst);
    }

    /// Stops or restarts the store.
    pub fn set_down(&self, down: bool) {
        self.0.down.store(down, std::sync::atomic::Ordering::SeqCst);
    }

    fn take(&self, n: u64) -> bool {
        use std::sync::atomic::Ordering::SeqCst;
        self.0
            .fuel
            .fetch_update(SeqCst, SeqCst, |fuel| fuel.checked_sub(n))
            .is_ok()
    }

    fn ready(&self, n: u64) -> fueltank_tower::BudgetWait {
        let fuel = self.take(n).then(|| fueltank::Fuel::taken(n));
        Box::pin(std::future::ready(Ok(fuel)))
    }

    fn down(&self) -> Option<fueltank_tower::Unavailable> {
        self.0
            .down
            .load(std::sync::atomic::Ordering::SeqCst)
            .then(|| fueltank_tower::Unavailable::new("test store", Flaky::RETRY))
    }

    /// The `Retry-After` it says while down.
    pub const RETRY: std::time::Duration = std::time::Duration::from_secs(2);
    /// The wait it says for one fuel: under any `max_wait` of the tests.
    pub const WAIT: std::time::Duration = std::time::Duration::from_millis(250);
}

impl fueltank_tower::Budget for Flaky {
    fn try_take(&self, n: u64) -> Option<fueltank::Fuel> {
        self.take(n).then(|| fueltank::Fuel::taken(n))
    }
    fn wait(&self, n: u64, _max_wait: Option<std::time::Duration>) -> fueltank_tower::BudgetWait {
        self.ready(n)
    }
    fn wait_time(&self, _n: u64) -> Option<std::time::Duration> {
        Some(Flaky::WAIT)
    }
    fn rate(&self) -> fueltank::Rate {
        fueltank::Rate::per_second(4).unwrap()
    }
    fn available(&self) -> u64 {
        self.0.fuel.load(std::sync::atomic::Ordering::SeqCst)
    }
    fn capacity(&self) -> u64 {
        4
    }
    fn unavailable(&self) -> Option<fueltank_tower::Unavailable> {
        self.down()
    }
}

impl<K: Send + Sync + 'static> fueltank_tower::KeyedBudget<K> for Flaky {
    fn take(&self, _key: &K, n: u64) -> bool {
        self.take(n)
    }
    fn wait(
        &self,
        _key: &K,
        n: u64,
        _max_wait: Option<std::time::Duration>,
    ) -> fueltank_tower::BudgetWait {
        self.ready(n)
    }
    fn wait_time(&self, _key: &K, _n: u64) -> Option<std::time::Duration> {
        Some(Flaky::WAIT)
    }
    fn rate(&self) -> fueltank::Rate {
        fueltank::Rate::per_second(4).unwrap()
    }
    fn available(&self, _key: &K) -> u64 {
        self.0.fuel.load(std::sync::atomic::Ordering::SeqCst)
    }
    fn unavailable(&self, _key: &K) -> Option<fueltank_tower::Unavailable> {
        self.down()
    }
}
