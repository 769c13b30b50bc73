//! The Lua script's GCRA (`src/script.lua`, run by a real `redis-server`)
//! against fueltank's (`Tank` on a `ManualClock`, which computes with
//! `src/tank/gcra.rs`): the same calls at the same times, the same
//! decisions.
//!
//! The script reads Redis's `TIME`. For times chosen by the test, it runs
//! here with that one line replaced by two arguments (a second and
//! microseconds): every other line is the script fueltank-redis runs.
//! [`real_time`] runs the script unchanged and moves the `ManualClock` to
//! the `now` each answer reports.
//!
//! Compared (GCRA mode: `Limit` with a bank, `Unbounded`):
//! - a take of `k` at once (`together = k`, nothing ahead), which is
//!   `has_fuel_n(k)`: granted or refused alike, and a refusal's retry time
//!   is `wait_time(k)` (at least 1 ns, as the script rounds);
//! - after every call, the time until full the script reports, which is
//!   `wait_time(capacity)` for `Limit`, and the level it implies;
//! - a rate change (`set`), which is `set_rate`.
//!
//! Intervals are whole nanoseconds (`per` a multiple of `max_n`), as the
//! script keeps them; ticks are then nanoseconds on both sides.
//!
//! The fleet simulation's store (`fueltank_redis::sim::Store`) is compared
//! with the script the same way: batches granted ahead and their fair
//! share between askers ([`the_simulated_store_answers_as_the_script`]).

mod common;

use std::time::Duration;

use common::RedisServer;
use fueltank::clock::ManualClock;
use fueltank::{Budget, Hardcap, Rate, Tank};

/// The script as fueltank-redis runs it.
const SOURCE: &str = include_str!("../src/script.lua");
/// Its one read of Redis's clock.
const TIME: &str = "local clock = redis.call('TIME')";

/// The script reading the time from its last two arguments (a second and
/// microseconds), which it removes: it then sees the arguments it takes.
fn script_at_given_times() -> redis::Script {
    assert_eq!(
        SOURCE.matches(TIME).count(),
        1,
        "the script reads TIME once"
    );
    redis::Script::new(&SOURCE.replace(
        TIME,
        "local us = table.remove(ARGV); local clock = {table.remove(ARGV), us}",
    ))
}

/// One tank's limit, as both sides are given it.
#[derive(Debug, Clone, Copy)]
struct Limit {
    max_n: u64,
    per_ns: u64,
    /// The bank (`burst`); `None`: `Unbounded`.
    cap: Option<u64>,
}

/// The script's bank of `Unbounded`, in ns (as `params.rs` passes it).
const UNBOUNDED_TOLERANCE_NS: u64 = 1 << 50;

impl Limit {
    fn t(&self) -> u64 {
        assert_eq!(self.per_ns % self.max_n, 0, "whole ns intervals");
        self.per_ns / self.max_n
    }

    fn tol(&self) -> u64 {
        match self.cap {
            Some(cap) => (cap - 1) * self.t(),
            None => UNBOUNDED_TOLERANCE_NS,
        }
    }

    fn rate(&self) -> Rate {
        Rate::new(self.max_n, Duration::from_nanos(self.per_ns)).unwrap()
    }

    /// A full tank, as a state missing from Redis is.
    fn tank(&self, clock: &ManualClock) -> Tank {
        let builder = Tank::builder(self.rate()).clock(clock.clone());
        match self.cap {
            Some(cap) => builder.burst(cap).initial(cap),
            None => builder
                .hardcap(Hardcap::Unbounded)
                .initial(self.tol() / self.t() + 1),
        }
        .build()
        .unwrap()
    }
}

/// What the script answered, in the terms compared.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Answer {
    /// `Some(granted)` for a take.
    granted: Option<bool>,
    /// A grant's time, ns after `now` (0 but for a take ahead).
    first: i64,
    /// A refusal's retry time, ns.
    retry: Option<u64>,
    /// Redis's now (ns since the Unix epoch) and the time until full.
    now: i128,
    full: u64,
    /// The whole answer.
    #[cfg_attr(not(feature = "sim"), allow(dead_code))]
    values: Vec<i64>,
}

/// Runs the script: `op` ("take" with `together`, or "set") on key
/// `name`, at `at` (second, microseconds) or on Redis's clock.
fn run(
    script: &redis::Script,
    con: &mut redis::Connection,
    name: &str,
    op: &str,
    limit: Limit,
    together: u64,
    at: Option<(u64, u64)>,
) -> Answer {
    run_also(script, con, name, op, limit, &[], together, 0, at)
}

/// [`run`] on a tank with the other rates `also` (each with its bank).
#[allow(clippy::too_many_arguments)]
fn run_also(
    script: &redis::Script,
    con: &mut redis::Connection,
    name: &str,
    op: &str,
    limit: Limit,
    also: &[Limit],
    together: u64,
    ahead_ns: u64,
    at: Option<(u64, u64)>,
) -> Answer {
    let hardcap = if limit.cap.is_some() { 0 } else { 2 };
    let mut invocation = script.key(format!("{name}:s"));
    invocation.key(format!("{name}:w"));
    invocation.key(format!("{name}:a"));
    for arg in [
        op.to_string(),
        "g".into(),
        limit.max_n.to_string(),
        limit.per_ns.to_string(),
        hardcap.to_string(),
        "1".into(), // hold: 1 ns
        limit.t().to_string(),
        "0".into(), // mode: GCRA
        limit.tol().to_string(),
        "0".into(), // birth, sets: the generation is not compared
        "0".into(),
        together.to_string(), // want
        together.to_string(),
        "0".into(), // life
        "0".into(), // guard
        ahead_ns.to_string(),
        "0".into(), // asker: none, no fair-share cap
        "0".into(), // finished
    ] {
        invocation.arg(arg);
    }
    if !also.is_empty() {
        invocation.arg(also.len());
        for rate in also {
            invocation
                .arg(rate.max_n)
                .arg(rate.per_ns)
                .arg(rate.t())
                .arg(rate.tol());
        }
    }
    if let Some((sec, us)) = at {
        invocation.arg(sec).arg(us);
    }
    let v: Vec<i64> = invocation.invoke(con).expect("the script runs");
    // [code, own numbers.., sec, now, n, per, cap, hold, gb, gs, full]
    let (granted, retry, seen) = match v[0] {
        0 => (Some(true), None, 7),
        1 => (Some(false), Some(v[1] as u64), 2),
        3 => (None, None, 1),
        _ => panic!("unexpected answer {v:?}"),
    };
    Answer {
        granted,
        first: if v[0] == 0 { v[3] } else { 0 },
        retry,
        now: i128::from(v[seen]) * 1_000_000_000 + i128::from(v[seen + 1]),
        full: v[seen + 8] as u64,
        values: v,
    }
}

/// A small deterministic generator (no dependency for it).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// `wait_time(k)` as an instance tells it from the script's `answer`
/// (`sim::due`: every rate's room for `k`, from each one's time until
/// full), `since` ns after the answer's now, is the tank's, exactly, for
/// `k` from 1 to `most`. (Before each rate's time was answered, only the
/// latest over the rates, an instance's `wait_time` was a lower bound:
/// 0 where the tank waited 0.9 s.)
#[cfg(feature = "sim")]
fn compare_due(answer: &Answer, rates: &[Limit], tank: &Tank, since: u64, most: u64, case: &str) {
    let shapes: Vec<(u64, u64)> = rates.iter().map(|r| (r.tol(), r.t())).collect();
    for k in 1..=most {
        let due = fueltank_redis::sim::due(&answer.values, &shapes, k).expect("an answer");
        let said = u64::try_from(due - i128::from(since)).unwrap_or(0);
        let wait = tank.wait_time(k).map(|d| d.as_nanos() as u64);
        assert_eq!(Some(said), wait, "{case}: wait_time({k}) from the answer");
    }
}

#[cfg(not(feature = "sim"))]
fn compare_due(_: &Answer, _: &[Limit], _: &Tank, _: u64, _: u64, _: &str) {}

/// Compares the script's answer with the tank's, after the same call.
fn compare(
    limit: Limit,
    tank: &Tank,
    answer: Answer,
    rust: Option<bool>,
    wait: Option<u64>,
    case: &str,
) {
    assert_eq!(answer.granted, rust, "{case}: granted");
    if answer.granted == Some(false) {
        let wait = wait.expect("a take within the capacity has a wait time");
        assert_eq!(answer.retry, Some(wait.max(1)), "{case}: retry time");
    }
    // The level the time until full implies: ⌊(now − tat)/T⌋ + 1 with
    // now − tat = tol − full.
    let level = match i128::from(limit.tol()) - i128::from(answer.full) {
        behind if behind < 0 => 0,
        ahead => (ahead / i128::from(limit.t()) + 1) as u64,
    };
    assert_eq!(
        tank.level(),
        level,
        "{case}: level (script's full {})",
        answer.full
    );
    if let Some(cap) = limit.cap {
        let full = tank.wait_time(cap).map(|d| d.as_nanos() as u64);
        assert_eq!(full, Some(answer.full), "{case}: time until full");
    }
    compare_due(&answer, &[limit], tank, 0, limit.cap.unwrap_or(8), case);
}

/// The limits a sequence switches between (each with its own bank), and
/// the largest step between calls, in µs.
fn sequences() -> Vec<(Vec<Limit>, u64)> {
    let l = |max_n, per_ns, cap| Limit { max_n, per_ns, cap };
    vec![
        // 10/s with a bank of 10, to 20/s and 3/s with the same bank.
        (
            vec![
                l(10, 1_000_000_000, Some(10)),
                l(20, 1_000_000_000, Some(10)),
                l(3, 999_999_999, Some(10)),
            ],
            300_000,
        ),
        // Intervals that are no whole number of µs.
        (
            vec![l(7, 7_000_021, Some(4)), l(13, 13_000_013, Some(4))],
            3_000,
        ),
        // A bank of 1 (one fuel at a time).
        (
            vec![l(1, 1_000_000, Some(1)), l(2, 1_000_000, Some(1))],
            1_500,
        ),
        // Unbounded: the bank only grows, up to the script's 2^50 ns (a
        // whole number of these intervals, as the tank starts with). The
        // script keeps a bank in ns, the tank in fuel: a slower rate would
        // cap the script's at fewer fuel, so these only speed up.
        (
            vec![
                l(1, 1 << 21, None),
                l(4, 4 << 20, None),
                l(8, 8 << 18, None),
            ],
            5_000,
        ),
    ]
}

/// The same calls at the same times on both sides: takes of 1 up to the
/// bank at random steps (some at the same time, some at due times exactly)
/// and rate changes; every decision, retry time and level alike.
#[test]
fn the_script_decides_as_the_tank() {
    let redis = RedisServer::start();
    let mut con = redis::Client::open(redis.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let script = script_at_given_times();
    let mut rng = Lcg(17);
    for (index, (limits, step_us)) in sequences().into_iter().enumerate() {
        let name = format!("diff{index}");
        let clock = ManualClock::new();
        let mut limit = limits[0];
        let tank = limit.tank(&clock);
        // Redis's clock starts at second 1000.
        let mut at_us: u64 = 1_000_000_000;
        // Refused, granted.
        let mut counts = [0; 2];
        for call in 0..2_000 {
            let case = format!("{name} call {call} at {at_us} µs, {limit:?}");
            let at = Some((at_us / 1_000_000, at_us % 1_000_000));
            if call > 0 && rng.below(20) == 0 {
                let mut next = limits[rng.below(limits.len() as u64) as usize];
                if next.cap.is_none() && next.t() > limit.t() {
                    next = limit;
                }
                let answer = run(&script, &mut con, &name, "set", next, 0, at);
                tank.set_rate(next.rate());
                limit = next;
                compare(
                    limit,
                    &tank,
                    answer,
                    None,
                    None,
                    &format!("{case}: set to {next:?}"),
                );
            } else {
                let bank = limit.cap.unwrap_or(8);
                let k = 1 + rng.below(bank.min(8));
                let wait = tank.wait_time(k).map(|d| d.as_nanos() as u64);
                let answer = run(&script, &mut con, &name, "take", limit, k, at);
                let granted = tank.has_fuel_n(k);
                compare(
                    limit,
                    &tank,
                    answer,
                    Some(granted),
                    wait,
                    &format!("{case}: take {k}"),
                );
                counts[usize::from(granted)] += 1;
            }
            // The next call: at the same time, at the tank's next due time
            // exactly (when it is a whole µs), or a random step on.
            let step = match rng.below(4) {
                0 => 0,
                1 => tank
                    .wait_time(1)
                    .map(|d| d.as_nanos() as u64)
                    .filter(|ns| ns % 1000 == 0)
                    .map_or(1, |ns| ns / 1000),
                _ => rng.below(step_us + 1),
            };
            at_us += step;
            clock.advance(Duration::from_micros(step));
        }
        // (An Unbounded bank of 2^50 ns never runs dry here.)
        let refusals = if limits[0].cap.is_some() { 100 } else { 0 };
        assert!(
            counts[0] >= refusals && counts[1] > 100,
            "{name}: {counts:?}"
        );
    }
}

/// Each rate's level at `at_us` as the script's state in Redis holds it
/// (`tat`, then `x1`, `x2`, ...; ns after the second `ep`).
fn levels(con: &mut redis::Connection, name: &str, rates: &[Limit], at_us: u64) -> Vec<u64> {
    let mut cmd = redis::cmd("HMGET");
    cmd.arg(format!("{name}:s")).arg("ep").arg("tat");
    for i in 1..rates.len() {
        cmd.arg(format!("x{i}"));
    }
    let v: Vec<i64> = cmd.query(con).unwrap();
    let now = (at_us as i64 - v[0] * 1_000_000) * 1000;
    rates
        .iter()
        .zip(&v[1..])
        .map(|(rate, &tat)| match now - tat {
            behind if behind < 0 => 0,
            ahead => (ahead as u64 / rate.t() + 1).min(rate.cap.unwrap()),
        })
        .collect()
}

/// Several rates (`also`): takes of `k` at once decided by the script
/// with every rate's schedule in one call, against a `Tank` built with
/// `.also(..)` (each rate's bank its `max_n`, the first's its burst), at
/// the same times; every decision and retry time alike, and changes of
/// the first rate (`set`), which leave the others as they are.
#[test]
fn several_rates_decide_as_the_tank_with_also() {
    let redis = RedisServer::start();
    let mut con = redis::Client::open(redis.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let script = script_at_given_times();
    let l = |max_n, per_ns, cap| Limit {
        max_n,
        per_ns,
        cap: Some(cap),
    };
    let s = 1_000_000_000;
    // The first rate's limits, the other rates, the largest step in µs.
    let cases = [
        // "100/min also 5/s", and the first changed to 120/min.
        (
            vec![l(100, 60 * s, 100), l(120, 60 * s, 100)],
            vec![l(5, s, 5)],
            400_000,
        ),
        // Three rates: intervals of 100 ms, 30 ms and 200 ms.
        (
            vec![l(10, s, 4), l(20, s, 4)],
            vec![l(3, 90_000_000, 3), l(50, 10 * s, 50)],
            100_000,
        ),
        // The other rate is the looser one: the first rules.
        (vec![l(2, s, 2)], vec![l(10, s, 10)], 600_000),
        // The other rate, emptied by takes of 3, makes a take due later
        // than the first rate, full, would: the first's schedule moves
        // from then.
        (
            vec![l(5, s, 5), l(8, s, 5)],
            vec![l(3, 90_000_000, 3)],
            400_000,
        ),
    ];
    let mut rng = Lcg(23);
    for (index, (firsts, also, step_us)) in cases.into_iter().enumerate() {
        let name = format!("also{index}");
        let clock = ManualClock::new();
        let mut limit = firsts[0];
        let mut builder = Tank::builder(limit.rate())
            .clock(clock.clone())
            .burst(limit.cap.unwrap());
        for rate in &also {
            builder = builder.also(rate.rate());
        }
        let tank = builder.build().unwrap();
        // Full under every rate, as a state missing from Redis is.
        clock.advance(Duration::from_nanos(60 * s));
        let capacity = also.iter().filter_map(|r| r.cap).fold(4, u64::min);
        let mut at_us: u64 = 1_000_000_000;
        let mut counts = [0; 2];
        let mut later = 0;
        for call in 0..1_500 {
            let case = format!("{name} call {call} at {at_us} µs, {limit:?}");
            let at = Some((at_us / 1_000_000, at_us % 1_000_000));
            // The answer, and how long after its now the tank is now.
            let (answer, since) = if call > 0 && firsts.len() > 1 && rng.below(25) == 0 {
                let next = firsts[rng.below(firsts.len() as u64) as usize];
                let answer = run_also(&script, &mut con, &name, "set", next, &also, 0, 0, at);
                assert_eq!(answer.granted, None, "{case}: set");
                tank.set_rate(next.rate());
                limit = next;
                (answer, 0)
            } else {
                let k = 1 + rng.below(capacity.min(limit.cap.unwrap()));
                // Some takes granted ahead (as instances ask), up to 300 ms,
                // when they are due at a whole µs (Redis's clock is read
                // in µs; a rate change can leave fractions).
                let wait = tank.wait_time(k).expect("within the capacity").as_nanos() as u64;
                let ahead = match rng.below(3) {
                    0 if wait.is_multiple_of(1000) => 300_000_000,
                    _ => 0,
                };
                let answer = run_also(&script, &mut con, &name, "take", limit, &also, k, ahead, at);
                let granted = wait <= ahead;
                assert_eq!(
                    answer.granted,
                    Some(granted),
                    "{case}: take {k}, ahead {ahead}"
                );
                if granted {
                    // Granted for when all `k` are due: the tank takes them
                    // then, and the next call is no sooner.
                    assert_eq!(answer.first.max(0), wait as i64, "{case}: when {k} are due");
                    at_us += wait / 1000;
                    clock.advance(Duration::from_nanos(wait));
                    assert!(tank.has_fuel_n(k), "{case}: {k} due after {wait} ns");
                    later += u64::from(wait > 0);
                } else {
                    let retry = (wait - ahead).max(1);
                    assert_eq!(answer.retry, Some(retry), "{case}: retry of {k}");
                }
                counts[usize::from(granted)] += 1;
                (answer, if granted { wait } else { 0 })
            };
            // Every rate's level alike (the tank's, as its `rates` says).
            let rates: Vec<Limit> = std::iter::once(limit).chain(also.clone()).collect();
            // Every wait an instance tells from the answer, the tank's.
            let most = capacity.min(limit.cap.unwrap());
            compare_due(&answer, &rates, &tank, since, most, &case);
            let tank_levels: Vec<u64> = tank.rates().into_iter().map(|(_, l)| l).collect();
            assert_eq!(
                levels(&mut con, &name, &rates, at_us),
                tank_levels,
                "{case}: levels"
            );
            let step = match rng.below(4) {
                0 => 0,
                1 => tank
                    .wait_time(1)
                    .map(|d| d.as_nanos() as u64)
                    .filter(|ns| ns % 1000 == 0)
                    .map_or(1, |ns| ns / 1000),
                _ => rng.below(step_us + 1),
            };
            at_us += step;
            clock.advance(Duration::from_micros(step));
        }
        println!("{name}: {counts:?} refused, granted; {later} granted ahead");
        assert!(
            counts[0] > 100 && counts[1] > 100 && later > 20,
            "{name}: {counts:?}, {later}"
        );
    }
}

/// The script as it runs, on Redis's own clock: the tank's clock follows
/// the `now` each answer reports.
#[test]
fn real_time() {
    let redis = RedisServer::start();
    let mut con = redis::Client::open(redis.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let script = redis::Script::new(SOURCE);
    // 1 ms intervals (and no whole µs after a rate change's conversion).
    let limit = Limit {
        max_n: 4,
        per_ns: 4_000_004,
        cap: Some(4),
    };
    let clock = ManualClock::new();
    let tank = limit.tank(&clock);
    let (mut granted, mut refused) = (0, 0);
    let (mut start, mut advanced) = (None, 0);
    let mut rng = Lcg(5);
    for call in 0..400 {
        let k = 1 + rng.below(4);
        // The script decides first; the tank then decides at its now.
        let answer = run(&script, &mut con, "real", "take", limit, k, None);
        let start = *start.get_or_insert(answer.now);
        let elapsed = u64::try_from(answer.now - start).unwrap();
        clock.advance(Duration::from_nanos(elapsed - advanced));
        advanced = elapsed;
        let wait = tank.wait_time(k).map(|d| d.as_nanos() as u64);
        let took = tank.has_fuel_n(k);
        compare(
            limit,
            &tank,
            answer,
            Some(took),
            wait,
            &format!("real call {call}, take {k}"),
        );
        if took {
            granted += 1;
        } else {
            refused += 1;
        }
        std::thread::sleep(Duration::from_micros(rng.below(1500)));
    }
    assert!(
        granted > 20 && refused > 20,
        "{granted} granted, {refused} refused"
    );
}

/// A rate change keeps the fuel and its fraction to the nanosecond, as
/// the tank's `set_rate` does: right after it, the whole level can be
/// taken at once on both sides. (The script used to round the converted
/// distance one ns later even when exact: a take of the whole level at the
/// instant of the change was refused, retry in 1 ns, where the tank
/// granted it.) Also between intervals of days, whose products exceed a
/// double's exact integers (with a bank below 2^53 ns, as fueltank-redis's
/// parameters always have).
#[test]
fn a_rate_change_keeps_the_fuel_to_the_nanosecond() {
    let redis = RedisServer::start();
    let mut con = redis::Client::open(redis.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let script = script_at_given_times();
    let l = |max_n, per_ns| Limit {
        max_n,
        per_ns,
        cap: Some(10),
    };
    let clock = ManualClock::new();
    let mut limit = l(10, 1_000_000_000);
    let tank = limit.tank(&clock);
    let at = Some((1000, 0));
    let took = run(&script, &mut con, "exact", "take", limit, 1, at);
    assert_eq!(took.granted, Some(tank.has_fuel_n(1)));
    limit = l(3, 999_999_999);
    let set = run(&script, &mut con, "exact", "set", limit, 0, at);
    tank.set_rate(limit.rate());
    compare(limit, &tank, set, None, None, "10/s to 3/999999999ns");
    let wait = tank.wait_time(9).map(|d| d.as_nanos() as u64);
    let all = run(&script, &mut con, "exact", "take", limit, 9, at);
    compare(
        limit,
        &tank,
        all.clone(),
        Some(tank.has_fuel_n(9)),
        wait,
        "the whole level",
    );
    assert_eq!(all.granted, Some(true), "the whole level at once");
    // Long and odd intervals, a fraction of a fuel taken in between.
    let mut at_us = 1_000_000_000u64;
    for (i, (max_n, per_ns)) in [
        (1, 500_000_000_000_003),
        (7, 7 * 1_000_000_007),
        (1, (1 << 48) + 1),
        (3, 3 * 333_333_333_331),
        (10, 1_000_000_000),
    ]
    .into_iter()
    .enumerate()
    {
        let step = 123_457 * (i as u64 + 1);
        at_us += step;
        clock.advance(Duration::from_micros(step));
        let at = Some((at_us / 1_000_000, at_us % 1_000_000));
        let next = l(max_n, per_ns);
        let set = run(&script, &mut con, "exact", "set", next, 0, at);
        tank.set_rate(next.rate());
        compare(next, &tank, set, None, None, &format!("to {next:?}"));
        let wait = tank.wait_time(1).map(|d| d.as_nanos() as u64);
        let one = run(&script, &mut con, "exact", "take", next, 1, at);
        compare(
            next,
            &tank,
            one,
            Some(tank.has_fuel_n(1)),
            wait,
            &format!("take at {next:?}"),
        );
    }
}

/// The fleet simulation's store (`fueltank_redis::sim::Store`: GCRA
/// granted ahead, in batches, capped at a fair share of a turn while
/// several instances ask) against the script, on the same calls at the same
/// times with the arguments fueltank-redis builds: every answer alike
/// (count, first slot, spacing, life; a refusal's retry time). Askers come
/// and go (a gap over a second forgets them), `ahead` below and above the
/// 100 ms turn, batches from 1 to beyond the share, a schedule pushed to
/// the script's refusal.
#[cfg(feature = "sim")]
#[test]
fn the_simulated_store_answers_as_the_script() {
    use fueltank_redis::sim::{self, Answer as Sim, Store};

    let redis = RedisServer::start();
    let mut con = redis::Client::open(redis.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let script = script_at_given_times();
    let mut rng = Lcg(29);
    // (rate, rates of `also`, largest step in µs, askers)
    let cases: [(&str, &[&str], u64, u64); 6] = [
        ("10000/s", &[], 3_000, 6),
        ("1000/s", &[], 40_000, 3),
        ("100000/s", &[], 500, 40),
        // 100 ms of hold, 2500 lives ahead: refused once 250 s are booked.
        ("50/s", &[], 2_000, 2),
        // The other rate binds in bursts (its interval, 2 ms, twice the
        // first's), then the first one's bank, 10 s long, runs dry.
        ("1000/s", &["15000/30s"], 20_000, 3),
        // Three rates; the first the slowest.
        ("100/s", &["300/s", "2000/10s"], 30_000, 4),
    ];
    let mut kinds = [0; 3]; // granted in full, capped, refused
    for (index, (rate, also_text, step_us, askers)) in cases.into_iter().enumerate() {
        let rate: Rate = rate.parse().unwrap();
        let also: Vec<Rate> = also_text.iter().map(|r| r.parse().unwrap()).collect();
        let mut model = Store::with_also(rate, &also, true).unwrap();
        let mut case_kinds = [0; 3];
        let name = format!("{{simdiff{index}}}");
        let mut at_us: u64 = 1_000_000_000;
        for call in 0..1_500 {
            let asker = 1 + rng.below(askers);
            let want = match rng.below(3) {
                0 => 1 + rng.below(4),
                1 => 1 + rng.below(1000),
                _ => 1 + rng.below(100_000),
            };
            let ahead = [20_000_000, 100_000_000, 500_000_000][rng.below(3) as usize];
            let mut invocation = script.key(format!("{name}:s"));
            invocation.key(format!("{name}:w"));
            invocation.key(format!("{name}:a"));
            for arg in model.args(asker, want, ahead) {
                invocation.arg(arg);
            }
            invocation.arg(at_us / 1_000_000).arg(at_us % 1_000_000);
            let v: Vec<i64> = invocation.invoke(&mut con).expect("the script runs");
            let real = sim::parse(&v).unwrap_or_else(|| panic!("unexpected answer {v:?}"));
            let modelled = model.take(at_us * 1000, asker, want, ahead);
            let case = format!(
                "{rate} also {also_text:?} call {call} at {at_us} µs: asker {asker} wants {want}, ahead {ahead}"
            );
            assert_eq!(modelled, real, "{case}");
            // The time until full, and each rate's, alike: what an
            // instance's `wait_time` counts from.
            assert_eq!(Some(model.told()), sim::told(&v), "{case}: until full");
            let kind = match real {
                Sim::Granted { count, .. } if count == want => 0,
                Sim::Granted { .. } => 1,
                Sim::Refused { .. } => 2,
            };
            kinds[kind] += 1;
            case_kinds[kind] += 1;
            at_us += match rng.below(50) {
                0 => 1_100_000, // every asker forgotten
                1 => 0,
                _ => rng.below(step_us + 1),
            };
        }
        println!("{rate} also {also_text:?}: granted in full, capped, refused: {case_kinds:?}");
    }
    assert!(
        kinds.iter().all(|&k| k > 50),
        "granted, capped, refused: {kinds:?}"
    );
}
