//! Feature `tokio`: a tank on `TokioClock` follows tokio's paused time, as a
//! tokio user tests with `#[tokio::test(start_paused = true)]`.

use std::time::Duration;

use fueltank::clock::TokioClock;
use fueltank::{Hardcap, Monitor, Rate, Tank};

#[tokio::test(start_paused = true)]
async fn waiting_follows_paused_time() {
    let tank = Tank::builder(Rate::per_second(2).unwrap())
        .initial(0)
        .clock(TokioClock)
        .build()
        .unwrap();
    let start = tokio::time::Instant::now();
    let real = std::time::Instant::now();
    for _ in 0..6 {
        tank.await_fuel().await;
    }
    // Tokio jumps its paused clock to each grant: exactly 3 s, at once.
    assert_eq!(start.elapsed(), Duration::from_secs(3));
    assert!(
        real.elapsed() < Duration::from_secs(1),
        "{:?}",
        real.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn timeouts_and_tasks_on_paused_time() {
    let tank = Tank::builder(Rate::per_second(1).unwrap())
        .hardcap(Hardcap::One)
        .initial(0)
        .clock(TokioClock)
        .build()
        .unwrap();
    assert_eq!(tank.timer_correction(), Duration::ZERO);
    let built = tokio::time::Instant::now();
    // The fuel is a second away: false at once, no time spent.
    assert!(!tank.await_fuel_timeout(Duration::from_millis(500)).await);
    assert_eq!(built.elapsed(), Duration::ZERO);
    let tasks: Vec<_> = (0..3)
        .map(|_| {
            let tank = tank.clone();
            tokio::spawn(async move {
                tank.await_fuel().await;
                tokio::time::Instant::now()
            })
        })
        .collect();
    let start = tokio::time::Instant::now();
    let mut times = Vec::new();
    for task in tasks {
        times.push(task.await.unwrap() - start);
    }
    times.sort();
    assert_eq!(
        times,
        [1, 2, 3].map(Duration::from_secs).to_vec(),
        "one a second, the first a second after build"
    );
}

#[tokio::test(start_paused = true)]
async fn advancing_by_hand_works_too() {
    let tank = Tank::builder(Rate::per_second(10).unwrap())
        .initial(0)
        .clock(TokioClock)
        .build()
        .unwrap();
    assert!(!tank.has_fuel());
    tokio::time::advance(Duration::from_millis(100)).await;
    assert!(tank.has_fuel());
    let monitor = Monitor::builder().clock(TokioClock).build().unwrap();
    monitor.emit();
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(monitor.runtime(), Duration::from_millis(1_000));
}
