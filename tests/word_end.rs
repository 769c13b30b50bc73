//! The end of what the lock-free word counts. Bit 47 of the word's `tat`
//! field is `BUSY` (`word.rs`), so a `tat` must stay below 2^47; a take
//! leaves `tat` up to one interval past the clock reading, so the word
//! serves readings only up to `2^47 − SPAN_LIMIT` ticks after its epoch.
//! When it served them up to 2^47, a take there set `BUSY` and lost 2^47
//! ticks: a one-rate tank looked full (unbounded grants at one instant)
//! and the next locked take waited in `Word::seize` for ever, under the
//! core lock; a tank of several rates was left `BUSY` and its next
//! `has_fuel` spun for ever. Each test below failed so ("Was:").

use std::sync::mpsc;
use std::time::Duration;

use fueltank::clock::ManualClock;
use fueltank::{Hardcap, Rate, Tank};

/// 2^47 ns less one: the last clock reading the word serves for a rate of
/// one tick per nanosecond (`1000/s`: `T` = 1 ms = 10^6 ticks).
const END: Duration = Duration::from_nanos((1 << 47) - 1);

fn tank(clock: &ManualClock, also: Option<&str>) -> Tank {
    let mut builder = Tank::builder("1000/s".parse::<Rate>().unwrap())
        .hardcap(Hardcap::Limit)
        .initial(0)
        .clock(clock.clone());
    if let Some(also) = also {
        builder = builder.also(also.parse().unwrap());
    }
    builder.build().unwrap()
}

/// `f`'s answer, or `None` if it does not come within 10 s (the thread is
/// left behind, stuck).
fn within<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> Option<R> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(10)).ok()
}

/// Full (1000) at the end of the word; the take that empties it leaves
/// `tat` = 2^47 − 1 + 10^6 ticks, beyond 2^47. Was: every further
/// `has_fuel` at the same instant is granted (5000 of 5000 here, and
/// `level` still 1000); right: none (the bucket is empty, nothing accrued).
#[test]
fn the_take_that_empties_a_tank_at_the_end_of_the_word_leaves_it_empty() {
    let clock = ManualClock::new();
    let tank = tank(&clock, None);
    clock.advance(END);
    assert!(tank.has_fuel_n(1000), "full after 39 hours");
    let more = (0..5000).filter(|_| tank.has_fuel()).count();
    assert_eq!(more, 0, "granted beyond the cap of 1000 at one instant");
    assert_eq!(tank.level(), 0);
}

/// As above, then 1 ms on, past the end of the word: the take goes to the
/// core, whose `Word::seize` reads the `tat`'s bit 47 as `BUSY` and waits
/// for ever, holding the core lock (every later call on the tank blocks
/// too). Was: no answer; right: one fuel (it accrued in that 1 ms).
#[test]
fn a_locked_take_after_the_end_of_the_word_answers() {
    let clock = ManualClock::new();
    let tank = tank(&clock, None);
    clock.advance(END);
    assert!(tank.has_fuel_n(1000));
    clock.advance(Duration::from_millis(1));
    let taker = tank.clone();
    assert_eq!(within(move || taker.has_fuel()), Some(true), "hangs");
}

/// A tank of two rates, its first rate emptied at the end of the word:
/// `take_busy` stores the first rate's `tat`, beyond 2^47, with bit 47 set,
/// so the word stays `BUSY` for ever. Was: the next `has_fuel` spins
/// in `take_rates` and never answers; right: `false` at once.
#[test]
fn a_take_of_two_rates_at_the_end_of_the_word_leaves_it_not_busy() {
    let clock = ManualClock::new();
    let tank = tank(&clock, Some("5000/10s"));
    clock.advance(END);
    assert!(tank.has_fuel_n(1000));
    let taker = tank.clone();
    assert_eq!(within(move || taker.has_fuel()), Some(false), "hangs");
}

/// The same through ordinary use: a tank of `10/h` asked once a minute
/// for 41 hours, nothing else. It stays in the word from its build on;
/// the grant made in the last 6 minutes before 2^47 ns (39.1 hours) leaves
/// its `tat` beyond 2^47. Was: the loop never ends (the first take
/// past the end of the word waits in `seize`); right: it ends, with at
/// the 410 fuel accrued granted, each once.
#[test]
fn a_tank_asked_once_a_minute_for_41_hours_keeps_answering() {
    let clock = ManualClock::new();
    let tank = Tank::builder("10/h".parse::<Rate>().unwrap())
        .initial(0)
        .clock(clock.clone())
        .build()
        .unwrap();
    let granted = within(move || {
        let mut granted = 0;
        for _ in 0..41 * 60 {
            clock.advance(Duration::from_secs(60));
            granted += u64::from(tank.has_fuel());
        }
        granted
    });
    // One fuel accrues every 6 minutes, and each is asked for within a
    // minute: every one of the 410 is granted, and no more.
    assert_eq!(granted.expect("hangs"), 410);
}
