//! `KeyedAllOf::ask` and a keyed budget whose store alone can tell
//! (`KeyedBudget::ask`, as `fueltank-redis`'s `GlobalKeyedTank` for a key
//! new here): the combination must ask the key, not shed on the key's
//! guess.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;
use std::time::Duration;

use fueltank::{BudgetWait, Fuel, KeyedAllOf, KeyedBudget, Rate, Tank};

mod common;
use common::poll;

/// A keyed budget kept in a store: here it knows nothing of a key, so
/// `take` says no (a guess) and `ask` asks the store, which has `store`
/// fuel for every key.
#[derive(Debug)]
struct Remote {
    store: AtomicU64,
    asked: AtomicU64,
}

impl KeyedBudget<u32> for Remote {
    fn take(&self, _key: &u32, _n: u64) -> bool {
        false
    }

    fn wait(&self, _key: &u32, n: u64, _max_wait: Option<Duration>) -> BudgetWait {
        Box::pin(std::future::ready(Ok(Some(Fuel::taken(n)))))
    }

    fn ask(&self, _key: &u32, n: u64) -> Option<BudgetWait> {
        self.asked.fetch_add(1, Ordering::Relaxed);
        let granted = self
            .store
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| s.checked_sub(n))
            .is_ok();
        Some(Box::pin(std::future::ready(Ok(
            granted.then(|| Fuel::taken(n))
        ))))
    }

    fn wait_time(&self, _key: &u32, _n: u64) -> Option<Duration> {
        Some(Duration::ZERO)
    }

    fn rate(&self) -> Rate {
        Rate::per_second(10).unwrap()
    }

    fn available(&self, _key: &u32) -> u64 {
        0
    }

    fn capacity(&self, _key: &u32) -> u64 {
        10
    }
}

/// What was wrong before the fix: `KeyedAllOf::ask` (src/all_of.rs, `Shared::ask`) looks
/// for a budget to ask among the shared budgets only, never the keyed
/// budget's own `ask`; a combination of a store-backed keyed budget and
/// local budgets therefore answers `None` ("take decides now"), and a
/// consumer that sheds (`fueltank-tower`'s keyed layer in reject mode,
/// `KeyedThrottleLayer::and`) sheds every request of a key new here on
/// the key's guess, though the store has its fuel. The keyed budget alone
/// is asked. Right: the combination asks the key's store too (for
/// instance: the key asked when no shared budget asks, then the shared
/// budgets taken at once, as `ask` does with a budget's answer), so the
/// request passes and spends from every part.
#[test]
fn a_keyed_budget_that_must_be_asked_is_asked() {
    let remote = Arc::new(Remote {
        store: AtomicU64::new(5),
        asked: AtomicU64::new(0),
    });
    let keyed: Arc<dyn KeyedBudget<u32>> = remote.clone();
    // Alone, the keyed budget asks its store.
    assert!(keyed.ask(&7, 1).is_some());
    assert_eq!(remote.asked.load(Ordering::Relaxed), 1);
    let global = Tank::builder(Rate::per_second(100).unwrap())
        .initial(100)
        .build()
        .unwrap();
    let both = KeyedAllOf::shared(keyed.clone()).and(global.clone());
    assert!(!both.take(&7, 1)); // the key's guess: not known here
    let ask = both.ask(&7, 1);
    assert!(
        ask.is_some(),
        "the combination does not ask the key's store: a consumer that sheds refuses on a guess"
    );
    let mut ask = ask.unwrap();
    assert!(matches!(poll(ask.as_mut()), Poll::Ready(Ok(Some(_)))));
    assert_eq!(remote.asked.load(Ordering::Relaxed), 2);
    assert_eq!(remote.store.load(Ordering::Relaxed), 3);
    assert_eq!(global.level(), 99);
}
