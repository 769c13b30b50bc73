//! The one Lua script: every decision Redis makes, on Redis's clock.
//!
//! The script (`script.lua`, next to this file) reads the tank's state,
//! reads `TIME`, decides, writes the state back with an expiry, and answers
//! in one array of integers. Times in the answer are nanoseconds relative to
//! Redis's `now` of that call, which the answer also gives, as a second and
//! nanoseconds after it, so that the instance can bound where Redis's clock
//! is (`offset.rs`) and convert the times (`reserve.rs`).
//!
//! # Keys
//!
//! Every key starts with the store's prefix (`fueltank` by default, see
//! `RedisStoreBuilder::prefix`) and `:`, so that several applications share
//! a Redis and ACLs can grant a prefix. The tank's name `N` and a key's
//! text `K` follow *escaped*: `%`, `{`, `}` and `:` are written `%25`,
//! `%7B`, `%7D`, `%3A`. An escaped text has no `:`, `{` or `}`, so every
//! name (and key) maps to its own Redis keys: `N:K` splits at its only
//! `:`, and a name `a:b` with key `c` (`a%3Ab:c`) is not the name `a` with
//! key `b:c` (`a:b%3Ac`). The part in braces is the Redis Cluster *hash
//! tag*: the keys of one call share it, so they share a slot; a keyed
//! tank's keys each have their own, so they spread over the shards. The
//! prefix may not hold `{` or `}`, so the tag is always the braces shown.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `PREFIX:{N}:s` | hash | a global tank: the parameters and their generation (`gb`, `gs`, `o1`..`o4`: see `script.lua`), `ep` (a second), `last` and `tat` (ns after `ep`); with `also` rates, `al` (which they are: `max_n/per_ns,...`) and their schedules `x1`, `x2`, ... (as `tat`); `Window`: `len` (fuel in the log) and `seq` |
//! | `PREFIX:{N}:w` | sorted set | `Window`: one member `seq:count` per grant, scored by the end of its hold (µs since the epoch); `seq` counts on from the log's birth (µs since the epoch), so that a batch of an earlier state is no member |
//! | `PREFIX:{N}:a` | sorted set | the *askers*: each instance that asked for fuel within the last second (its id, a random number per tank handle or key entry), scored by the time it last did (µs since the epoch): what a grant's fair share is counted from |
//! | `PREFIX:{N}:p` | hash | a keyed tank's parameters and their generation, and `al` (its rates of `also`, as a global tank's): what a build must match and `set_rate` changes |
//! | `PREFIX:{N:K}:ks`, `PREFIX:{N:K}:kw`, `PREFIX:{N:K}:ka` | hash, sorted set, sorted set | key `K` of a keyed tank, as `s`, `w` and `a`, with the tank's generation its parameters came from |
//!
//! (Before 0.1's cluster support the layout was `fueltank:N:s`, ...,
//! `fueltank:N:ks:K`, with names refused if they held `:`; states in the
//! old layout are not read.)
//!
//! Every key is written with a `PEXPIRE`: a GCRA or `Paced` state lives
//! until it is full under every rate (`tat + tolerance`, the latest over
//! the rates of `also`: an `Unbounded` bank spent whole, days), as a
//! missing state is taken to be full, and at least until each rate's
//! schedule has caught up with now plus one period (`tat + per`: the name
//! stays this limit's while it is used), plus a second; a log until its newest
//! grant has left the window, plus a second; the askers a second after the
//! latest ask; a keyed tank's parameters for
//! two periods and a minute after the last build, `set_rate` or check of
//! any instance (each checks them at most once a second while it makes
//! round trips: see `keyed.rs`).

use redis::Script;

use crate::params::{Generation, Mode, Params, hardcap_code, hardcap_of};

/// The script's source.
pub(crate) const SOURCE: &str = include_str!("script.lua");

pub(crate) fn script() -> Script {
    Script::new(SOURCE)
}

/// What the script is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// Grant fuel.
    Take,
    /// Create the state if missing; fail if stored with other parameters.
    Build,
    /// Replace the parameters, keeping the fuel level.
    Set,
    /// A keyed tank's parameters: made again if missing, answered if the
    /// caller's or set from them, else a mismatch.
    Check,
}

/// What the keys of a call are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// A global tank's state and log.
    Global,
    /// One key's state and log, of a keyed tank.
    Key,
    /// A keyed tank's parameters.
    Family,
}

/// Writes `text` with `%`, `{`, `}` and `:` escaped (see the module docs).
fn escape(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '%' => out.push_str("%25"),
            '{' => out.push_str("%7B"),
            '}' => out.push_str("%7D"),
            ':' => out.push_str("%3A"),
            c => out.push(c),
        }
    }
}

/// `PREFIX:{N` of a tank's keys: a global tank's ends it with `}`, a keyed
/// tank's key with `:K}`.
pub(crate) fn tag_start(prefix: &str, name: &str) -> String {
    let mut out = format!("{prefix}:{{");
    escape(name, &mut out);
    out
}

/// A global tank's state, log and askers.
pub(crate) fn global_keys(start: &str) -> [Vec<u8>; 3] {
    [
        format!("{start}}}:s").into_bytes(),
        format!("{start}}}:w").into_bytes(),
        format!("{start}}}:a").into_bytes(),
    ]
}

/// A keyed tank's parameters.
pub(crate) fn family_key(start: &str) -> Vec<u8> {
    format!("{start}}}:p").into_bytes()
}

/// The state, log and askers of `key` of a keyed tank.
pub(crate) fn key_keys(start: &str, key: &str) -> [Vec<u8>; 3] {
    let mut tag = format!("{start}:");
    escape(key, &mut tag);
    [
        format!("{tag}}}:ks").into_bytes(),
        format!("{tag}}}:kw").into_bytes(),
        format!("{tag}}}:ka").into_bytes(),
    ]
}

/// A request for fuel.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Ask {
    /// Units in a batch (at least 1 for a take).
    pub(crate) want: u64,
    /// How far ahead fuel may be granted (for `together` and `Window`):
    /// beyond, Redis refuses with a retry time.
    pub(crate) ahead_ns: u64,
    /// If not 0: exactly this many, all spendable at once.
    pub(crate) together: u64,
    /// How long each granted unit may be held after it becomes spendable
    /// (at most the tank's hold).
    pub(crate) life_ns: u64,
    /// `Paced`: the gap left after a batch for this instance's lateness.
    pub(crate) guard_ns: u64,
    /// `Window`: batches (sequence number, count) of which nothing will be
    /// spent any more: Redis may end their hold now.
    pub(crate) finished: Vec<(u64, u64)>,
    /// Who asks (random, one per entry), for the fair share of a batch;
    /// 0 for calls that take no fuel.
    pub(crate) asker: u64,
}

/// The script's arguments for `op` on a tank with `params` and the other
/// rates `also` (GCRA each: see `Options::also`).
pub(crate) fn args(
    op: Op,
    scope: Scope,
    params: &Params,
    also: &[Params],
    ask: &Ask,
) -> Vec<String> {
    let (mode, tolerance) = match params.mode() {
        Mode::Gcra { tolerance_ns } => (0, tolerance_ns),
        Mode::Paced => (1, 0),
        Mode::Window => (2, 0),
    };
    let op = match op {
        Op::Take => "take",
        Op::Build => "build",
        Op::Set => "set",
        Op::Check => "check",
    };
    let scope = match scope {
        Scope::Global => "g",
        Scope::Key => "k",
        Scope::Family => "p",
    };
    let mut args = vec![
        op.to_string(),
        scope.to_string(),
        params.max_n.to_string(),
        params.per_ns.to_string(),
        hardcap_code(params.hardcap, params.burst).to_string(),
        params.hold_ns.to_string(),
        params.interval_ns().to_string(),
        mode.to_string(),
        tolerance.to_string(),
        params.generation.birth.to_string(),
        params.generation.sets.to_string(),
        ask.want.to_string(),
        ask.together.to_string(),
        ask.life_ns.to_string(),
        ask.guard_ns.to_string(),
        ask.ahead_ns.to_string(),
        ask.asker.to_string(),
        ask.finished.len().to_string(),
    ];
    args.extend(
        ask.finished
            .iter()
            .map(|(seq, count)| format!("{seq}:{count}")),
    );
    if !also.is_empty() {
        args.push(also.len().to_string());
        for rate in also {
            let tolerance = match rate.mode() {
                Mode::Gcra { tolerance_ns } => tolerance_ns,
                // Refused when built (`Params::also`).
                Mode::Paced | Mode::Window => 0,
            };
            args.extend([
                rate.max_n.to_string(),
                rate.per_ns.to_string(),
                rate.interval_ns().to_string(),
                tolerance.to_string(),
            ]);
        }
    }
    args
}

/// How the units of a grant are spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Unit `j` spendable from `max(0, first + j·spacing)` for `life`.
    Each,
    /// Spent in order, `spacing` apart, all before `last_end`.
    Paced,
    /// In `segments`, each spendable at once from its start for `life`.
    Window,
}

/// Units granted, as the script describes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Granted {
    pub(crate) kind: Kind,
    pub(crate) count: u64,
    pub(crate) first: i64,
    pub(crate) spacing: u64,
    pub(crate) life: u64,
    pub(crate) last_end: i64,
    /// `Window`: (from, count, sequence number) of each logged grant.
    pub(crate) segments: Vec<(i64, u64, u64)>,
}

impl Granted {
    /// `count` units of kind `Each` (the fleet simulation's grants).
    #[cfg(any(test, feature = "sim"))]
    pub(crate) fn each(count: u64, first: i64, spacing: u64, life: u64) -> Granted {
        Granted {
            kind: Kind::Each,
            count,
            first,
            spacing,
            life,
            last_end: 0,
            segments: Vec::new(),
        }
    }
}

/// The script's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reply {
    Granted(Granted, Seen),
    /// Nothing now; ask again no sooner than `retry` ns from now.
    Refused(u64, Seen),
    /// Stored with other parameters: another limit's (`Build`, `Take`).
    Mismatch(Params),
    /// Done (`Build`, `Set`).
    Done(Seen),
}

/// What every answer but `Mismatch` tells of the state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Seen {
    /// The parameters that rule, and their generation.
    pub(crate) params: Params,
    pub(crate) now: RedisNow,
    /// Nanoseconds after `now` until the state is full: its whole capacity
    /// grantable at once (0 for a keyed tank's parameters alone).
    pub(crate) full: u64,
    /// A GCRA with rates of `also`: the nanoseconds after `now` until each
    /// rate is full, the first rate's then each of `also` (`full` is the
    /// latest of them); empty otherwise.
    pub(crate) each: Vec<u64>,
}

impl Seen {
    /// Nanoseconds after `now` (negative: before) at which the schedule
    /// Redis answered with has room for `n` (at least 1; up to the
    /// capacity at once, beyond it one after another) under every rate:
    /// the latest of the rates' own due times, each [`due_under`] its time
    /// until full. The first rate is `params`, the
    /// others `also` (the instance's: Redis holds the same or answers
    /// `Mismatch`). `None` for a `Window` below its capacity (only the
    /// whole window is known).
    pub(crate) fn due(&self, also: &[Params], n: u64) -> Option<i128> {
        let params = &self.params;
        if params.mode() == Mode::Window && n < params.capacity() {
            return None;
        }
        let shape = |rate: &Params| match rate.mode() {
            Mode::Gcra { tolerance_ns } => (tolerance_ns, rate.interval_ns()),
            // One at a time, the first due when full, then one an interval
            // (guards between batches aside: no later than that).
            Mode::Paced => (0, rate.interval_ns()),
            // Whole when full (more than the window: no sooner).
            Mode::Window => (0, 0),
        };
        let shapes = std::iter::once(params).chain(also).map(shape);
        Some(due_of(self.full, &self.each, shapes, n))
    }
}

/// [`Seen::due`] for rates of these shapes (tolerance, interval), the
/// first, then each of `also`, from the answer's `full` and `each`.
pub(crate) fn due_of(
    full: u64,
    each: &[u64],
    shapes: impl Iterator<Item = (u64, u64)> + Clone,
    n: u64,
) -> i128 {
    let count = shapes.clone().count();
    if count == 1 {
        return shapes.map(|shape| due_under(shape, full, n)).sum();
    }
    if each.len() != count {
        // Not told each rate's time (no script of this version makes such
        // an answer): no sooner than any one rate's, were it the one full
        // last.
        return shapes
            .map(|shape| due_under(shape, full, n))
            .min()
            .unwrap_or(0);
    }
    shapes
        .zip(each)
        .map(|(shape, &full)| due_under(shape, full, n))
        .max()
        .unwrap_or(0)
}

/// When one rate, a GCRA of this (tolerance, interval) full `full` ns
/// after now, has room for `n`, in ns after now: its next unit is due
/// `tolerance` before it is full (the script's `tat`), `n` of them
/// `n − 1` intervals after that (together up to its capacity).
pub(crate) fn due_under((tolerance, interval): (u64, u64), full: u64, n: u64) -> i128 {
    i128::from(full) - i128::from(tolerance)
        + i128::from(n.saturating_sub(1)) * i128::from(interval)
}

/// Redis's time when the script ran: a second and nanoseconds after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RedisNow {
    pub(crate) sec: i64,
    pub(crate) ns: i64,
}

impl RedisNow {
    /// Nanoseconds since the Unix epoch.
    pub(crate) fn ns(&self) -> i128 {
        i128::from(self.sec) * 1_000_000_000 + i128::from(self.ns)
    }
}

/// Parameters and generation: six numbers.
fn params_at(values: &[i64]) -> Option<Params> {
    let &[max_n, per_ns, hardcap, hold_ns, birth, sets] = values.get(..6)? else {
        return None;
    };
    let (hardcap, burst) = hardcap_of(hardcap);
    Some(Params {
        max_n: u64::try_from(max_n).ok().filter(|&n| n > 0)?,
        per_ns: u64::try_from(per_ns).ok().filter(|&n| n > 0)?,
        hardcap,
        burst,
        hold_ns: u64::try_from(hold_ns).ok().filter(|&n| n > 0)?,
        generation: Generation {
            birth: u64::try_from(birth).ok()?,
            sets: u64::try_from(sets).ok()?,
        },
    })
}

/// Redis's now, the parameters, the time until full: nine numbers.
const SEEN: usize = 9;

/// [`Seen`] from its nine numbers and the times until each rate is full
/// after them (none: one rate).
fn seen_at(values: &[i64]) -> Option<Seen> {
    let each = values.get(SEEN..).unwrap_or_default();
    Some(Seen {
        each: each
            .iter()
            .map(|&v| u64::try_from(v).ok())
            .collect::<Option<_>>()?,
        now: RedisNow {
            sec: *values.first()?,
            ns: *values.get(1)?,
        },
        params: params_at(values.get(2..)?)?,
        full: u64::try_from(*values.get(8)?).ok()?,
    })
}

impl Reply {
    /// Reads the script's array; `None` if it is not one the script makes
    /// (another program wrote the keys).
    pub(crate) fn parse(values: &[i64]) -> Option<Reply> {
        match values.first()? {
            0 => {
                let &[kind, count, first, spacing, life, last_end] = values.get(1..7)? else {
                    return None;
                };
                let kind = match kind {
                    0 => Kind::Each,
                    1 => Kind::Paced,
                    2 => Kind::Window,
                    _ => return None,
                };
                let mut segments = Vec::new();
                let seen_end = match kind {
                    // A Window grant's segments follow: no other rates.
                    Kind::Window => 7 + SEEN,
                    _ => values.len(),
                };
                let seen = seen_at(values.get(7..seen_end)?)?;
                if kind == Kind::Window {
                    let n = usize::try_from(*values.get(7 + SEEN)?).ok()?;
                    for segment in values.get(8 + SEEN..)?.chunks_exact(3).take(n) {
                        segments.push((
                            segment[0],
                            u64::try_from(segment[1]).ok()?,
                            u64::try_from(segment[2]).ok()?,
                        ));
                    }
                    if segments.len() != n {
                        return None;
                    }
                }
                let granted = Granted {
                    kind,
                    count: u64::try_from(count).ok()?,
                    first,
                    spacing: u64::try_from(spacing).ok()?,
                    life: u64::try_from(life).ok()?,
                    last_end,
                    segments,
                };
                Some(Reply::Granted(granted, seen))
            }
            1 => Some(Reply::Refused(
                u64::try_from(*values.get(1)?).ok()?,
                seen_at(values.get(2..)?)?,
            )),
            2 => Some(Reply::Mismatch(params_at(values.get(1..)?)?)),
            3 => Some(Reply::Done(seen_at(values.get(1..)?)?)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fueltank::Hardcap;

    fn text(key: &[u8]) -> &str {
        std::str::from_utf8(key).unwrap()
    }

    #[test]
    fn names_and_keys_map_to_redis_keys_one_to_one() {
        let start = tag_start("fueltank", "api");
        assert_eq!(text(&global_keys(&start)[0]), "fueltank:{api}:s");
        assert_eq!(text(&family_key(&start)), "fueltank:{api}:p");
        assert_eq!(text(&global_keys(&start)[2]), "fueltank:{api}:a");
        assert_eq!(
            text(&key_keys(&start, "alice")[2]),
            "fueltank:{api:alice}:ka"
        );
        assert_eq!(
            text(&key_keys(&start, "alice")[1]),
            "fueltank:{api:alice}:kw"
        );
        // `:` in a name or key never moves the boundary between them.
        let a = key_keys(&tag_start("p", "a:b"), "c");
        let b = key_keys(&tag_start("p", "a"), "b:c");
        assert_ne!(a, b);
        assert_eq!(text(&a[0]), "p:{a%3Ab:c}:ks");
        assert_eq!(text(&b[0]), "p:{a:b%3Ac}:ks");
        // Braces stay out of the hash tag; `%` itself is escaped.
        let odd = key_keys(&tag_start("p", "{x}"), "}%7D");
        assert_eq!(text(&odd[0]), "p:{%7Bx%7D:%7D%257D}:ks");
        assert_ne!(
            global_keys(&tag_start("p", "%3A")),
            global_keys(&tag_start("p", ":"))
        );
    }

    #[test]
    fn replies_parse() {
        // Redis's now, the parameters, their generation, the time to full.
        let seen = [
            17,
            42,
            10,
            1_000_000_000,
            0,
            100_000_000,
            1_700_000_000_000_000,
            2,
            90,
        ];
        let mut granted = vec![0, 0, 5, -3, 100, 7, 0];
        granted.extend(seen);
        match Reply::parse(&granted) {
            Some(Reply::Granted(g, seen)) => {
                assert_eq!(g.count, 5);
                assert_eq!(g.first, -3);
                assert_eq!(g.kind, Kind::Each);
                assert_eq!(seen.params.max_n, 10);
                assert_eq!(seen.params.hardcap, Hardcap::Limit);
                assert_eq!(
                    seen.params.generation,
                    Generation {
                        birth: 1_700_000_000_000_000,
                        sets: 2
                    }
                );
                assert_eq!(seen.now, RedisNow { sec: 17, ns: 42 });
                assert_eq!(seen.full, 90);
            }
            other => panic!("{other:?}"),
        }
        let mut refused = vec![1, 250];
        refused.extend(seen);
        assert!(matches!(
            Reply::parse(&refused),
            Some(Reply::Refused(250, _))
        ));
        assert!(matches!(
            Reply::parse(&[2, 10, 1_000_000_000, 3, 100_000_000, 5, 0]),
            Some(Reply::Mismatch(Params {
                hardcap: Hardcap::Window,
                ..
            }))
        ));
        assert_eq!(Reply::parse(&[]), None);
        assert_eq!(Reply::parse(&[0, 1]), None);
        assert_eq!(Reply::parse(&[9]), None);
        let mut window = vec![0, 2, 5, 0, 0, 7, 0];
        window.extend(seen);
        window.extend([2, 0, 3, 11, 500, 2, 12]);
        match Reply::parse(&window) {
            Some(Reply::Granted(g, _)) => {
                assert_eq!(g.segments, vec![(0, 3, 11), (500, 2, 12)]);
            }
            other => panic!("{other:?}"),
        }
        window.truncate(window.len() - 3);
        assert_eq!(Reply::parse(&window), None);
        // With rates of `also`: each rate's time until full follows.
        let mut refused = vec![1, 250];
        refused.extend(seen);
        refused.extend([40, 90]);
        match Reply::parse(&refused) {
            Some(Reply::Refused(250, seen)) => {
                assert_eq!((seen.full, seen.each), (90, vec![40, 90]));
            }
            other => panic!("{other:?}"),
        }
        let mut granted = vec![0, 0, 5, -3, 100, 7, 0];
        granted.extend(seen);
        granted.extend([90, 12, 7]);
        match Reply::parse(&granted) {
            Some(Reply::Granted(_, seen)) => assert_eq!(seen.each, vec![90, 12, 7]),
            other => panic!("{other:?}"),
        }
        granted.push(-1);
        assert_eq!(Reply::parse(&granted), None);
    }
}
