//! `KeyedThrottleLayer::and` in reject mode over a keyed budget whose
//! store alone can tell (`KeyedBudget::ask`, as `fueltank-redis`'s
//! `GlobalKeyedTank` for a key new here).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use fueltank::{BudgetWait, Fuel, KeyedBudget, Rate, Tank};
use fueltank_tower::KeyedThrottleLayer;
use fueltank_tower::key::key_fn;
use tower::{BoxError, Layer, ServiceExt, service_fn};

/// A keyed budget kept in a store: it knows nothing of a key here, so
/// `take` says no (a guess) and `ask` asks the store, which has `store`
/// fuel.
#[derive(Debug)]
struct Remote {
    store: Arc<AtomicU64>,
}

impl KeyedBudget<u8> for Remote {
    fn take(&self, _key: &u8, _n: u64) -> bool {
        false
    }

    fn wait(&self, _key: &u8, n: u64, _max_wait: Option<Duration>) -> BudgetWait {
        Box::pin(std::future::ready(Ok(Some(Fuel::taken(n)))))
    }

    fn ask(&self, _key: &u8, n: u64) -> Option<BudgetWait> {
        let granted = self
            .store
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| s.checked_sub(n))
            .is_ok();
        Some(Box::pin(std::future::ready(Ok(
            granted.then(|| Fuel::taken(n))
        ))))
    }

    fn wait_time(&self, _key: &u8, _n: u64) -> Option<Duration> {
        Some(Duration::ZERO)
    }

    fn rate(&self) -> Rate {
        Rate::per_second(10).unwrap()
    }

    fn available(&self, _key: &u8) -> u64 {
        0
    }

    fn capacity(&self, _key: &u8) -> u64 {
        10
    }
}

/// What was wrong before the fix: alone, the keyed budget is asked and the request
/// passes; given `.and(global)`, the layer draws on a `KeyedAllOf`, whose
/// `ask` (src/all_of.rs, `Shared::ask`) asks only the shared budgets,
/// never the key's store, so every request of a key new here is shed on
/// the key's guess (429 over HTTP) although the store and the global tank
/// have the fuel. Right: the request passes, spending one from the
/// key's store and one from the global tank.
#[test]
fn reject_mode_with_and_asks_the_key_s_store() {
    let echo = service_fn(|k: u8| async move { Ok::<_, BoxError>(k) });
    futures::executor::block_on(async {
        // Alone: asked, passes.
        let alone = Arc::new(AtomicU64::new(5));
        let keyed = Remote {
            store: alone.clone(),
        };
        let svc = KeyedThrottleLayer::new(keyed, key_fn(|k: &u8| Ok(*k)))
            .reject()
            .layer(echo);
        assert_eq!(svc.oneshot(1).await.unwrap(), 1);
        assert_eq!(alone.load(Ordering::Relaxed), 4);

        // With a global budget that has fuel: shed.
        let store = Arc::new(AtomicU64::new(5));
        let keyed = Remote {
            store: store.clone(),
        };
        let global = Tank::builder(Rate::per_second(100).unwrap())
            .initial(100)
            .build()
            .unwrap();
        let svc = KeyedThrottleLayer::new(keyed, key_fn(|k: &u8| Ok(*k)))
            .and(global.clone())
            .reject()
            .layer(echo);
        let outcome = svc.oneshot(1).await;
        assert!(
            outcome.is_ok(),
            "shed though the key's store and the global tank have fuel: {:?}",
            outcome.err()
        );
        assert_eq!(store.load(Ordering::Relaxed), 4);
        assert_eq!(global.level(), 99);
    });
}
