//! A global tank's parameters: what is stored in Redis with its state, and
//! the numbers the script derives from them.

use std::time::Duration;

use fueltank::{Hardcap, Rate};

use crate::Error;

/// The longest period kept: 2^52 ns (about 52 days), so that every time the
/// script handles is an exact integer in Lua's doubles.
pub(crate) const MAX_PER_NS: u64 = 1 << 52;

/// The longest default hold.
const DEFAULT_HOLD_MAX: Duration = Duration::from_millis(100);

/// The bank of `Unbounded`, in nanoseconds of refill (about 13 days).
const UNBOUNDED_TOLERANCE_NS: u64 = 1 << 50;

/// What a tank is: compared with what Redis holds under its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Params {
    pub(crate) max_n: u64,
    pub(crate) per_ns: u64,
    pub(crate) hardcap: Hardcap,
    /// `Limit`'s capacity apart from `max_n` (`burst(n)`).
    pub(crate) burst: Option<u64>,
    /// How long after it becomes spendable reserved fuel may still be spent.
    pub(crate) hold_ns: u64,
    /// Which state in Redis these parameters were read from (not part of
    /// what the limit is).
    pub(crate) generation: Generation,
}

/// A state in Redis and the `set_rate`s made on it: a take whose
/// parameters differ from the stored ones adopts them only if they were
/// set on the state it knows (see `script.lua`). Zero: not known yet.
/// Ordered as the script orders them: by birth, then by sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub(crate) struct Generation {
    /// Redis's time, in µs, when the state was created.
    pub(crate) birth: u64,
    /// `set_rate`s since.
    pub(crate) sets: u64,
}

/// How the script grants, derived from [`Params`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Virtual scheduling with this tolerance (the bank, in ns, less one
    /// interval): `Limit` and `Unbounded`.
    Gcra { tolerance_ns: u64 },
    /// Batches of slots one interval apart, each batch spent in order and
    /// followed by a guard: `One`, and `Limit` when the hold leaves it no bank.
    Paced,
    /// A sliding log of grants: `Window`.
    Window,
}

/// The hardcap and burst as the one number stored (`cap`): the hardcap's
/// code plus 4 times the burst (0: none), below 2^51. In the stored
/// parameters that a build must match and a take compares, so that a
/// burst is part of what the limit is, with no change to the script.
pub(crate) fn hardcap_code(hardcap: Hardcap, burst: Option<u64>) -> i64 {
    let code = match hardcap {
        Hardcap::One => 1,
        Hardcap::Unbounded => 2,
        Hardcap::Window => 3,
        _ => 0,
    };
    code + 4 * burst.map_or(0, |burst| burst as i64)
}

/// The hardcap and burst of a stored `cap`.
pub(crate) fn hardcap_of(code: i64) -> (Hardcap, Option<u64>) {
    let hardcap = match code % 4 {
        1 => Hardcap::One,
        2 => Hardcap::Unbounded,
        3 => Hardcap::Window,
        _ => Hardcap::Limit,
    };
    (
        hardcap,
        u64::try_from(code / 4).ok().filter(|&burst| burst > 0),
    )
}

/// The largest burst: its code stays an exact integer in Lua's doubles.
const MAX_BURST: u64 = 1 << 48;

/// The default hold for `per`: a tenth of the period, at most 100 ms.
pub(crate) fn default_hold(per: Duration) -> Duration {
    (per / 10).clamp(Duration::from_nanos(1), DEFAULT_HOLD_MAX)
}

impl Params {
    /// Checks that `rate`, `burst` and `hold` can be kept exactly.
    pub(crate) fn new(
        rate: Rate,
        hardcap: Hardcap,
        burst: Option<u64>,
        hold: Duration,
    ) -> Result<Params, Error> {
        let per_ns = u64::try_from(rate.per().as_nanos()).unwrap_or(u64::MAX);
        if per_ns > MAX_PER_NS {
            return Err(Error::UnsupportedRate {
                rate: rate.to_string(),
                accepted: "the period must be at most 2^52 ns (about 52 days)",
            });
        }
        if rate.max_n() > MAX_PER_NS {
            return Err(Error::UnsupportedRate {
                rate: rate.to_string(),
                accepted: "the count must be at most 2^52",
            });
        }
        let hold_ns = u64::try_from(hold.as_nanos()).unwrap_or(u64::MAX);
        if hold_ns == 0 || hold_ns > per_ns {
            return Err(Error::InvalidOption {
                option: "hold",
                value: format!("{hold:?}"),
                accepted: "between 1 ns and the rate's period",
            });
        }
        if let Some(burst) = burst {
            // As a local tank's burst (`TankBuilder::burst`), and a bank
            // whose refill the script keeps exactly.
            let refill = u128::from(burst) * u128::from(per_ns.div_ceil(rate.max_n()));
            let accepted = match hardcap {
                Hardcap::Limit => "between 1 and 2^48, and at most 2^52 ns of refill at the rate",
                _ => "a burst only with Hardcap::Limit, whose capacity burst(n) sets",
            };
            if hardcap != Hardcap::Limit || burst == 0 || burst > MAX_BURST || refill > 1 << 52 {
                return Err(Error::InvalidOption {
                    option: "burst",
                    value: burst.to_string(),
                    accepted,
                });
            }
        }
        Ok(Params {
            max_n: rate.max_n(),
            per_ns,
            hardcap,
            burst,
            hold_ns,
            generation: Generation::default(),
        })
    }

    pub(crate) fn rate(&self) -> Rate {
        Rate::new(self.max_n, Duration::from_nanos(self.per_ns))
            .expect("stored rates were checked when they were made")
    }

    pub(crate) fn hold(&self) -> Duration {
        Duration::from_nanos(self.hold_ns)
    }

    /// The interval, rounded up to whole nanoseconds: at most 1 ns per
    /// interval slower than the rate, never faster.
    pub(crate) fn interval_ns(&self) -> u64 {
        self.per_ns.div_ceil(self.max_n)
    }

    /// The bank of a `Limit` tank: `max_n` (or the burst) less the
    /// intervals a reserved fuel may be held, so that holding never lets a
    /// window see more than `2·max_n − 1` (or `burst + max_n − 1`) spends.
    pub(crate) fn limit_bank(&self) -> u64 {
        self.burst
            .unwrap_or(self.max_n)
            .saturating_sub(self.hold_ns.div_ceil(self.interval_ns()))
    }

    pub(crate) fn mode(&self) -> Mode {
        let t = self.interval_ns();
        match self.hardcap {
            Hardcap::One => Mode::Paced,
            Hardcap::Window => Mode::Window,
            Hardcap::Unbounded => Mode::Gcra {
                tolerance_ns: UNBOUNDED_TOLERANCE_NS,
            },
            _ => match self.limit_bank() {
                0 => Mode::Paced,
                bank => Mode::Gcra {
                    tolerance_ns: (bank - 1) * t,
                },
            },
        }
    }

    /// The most fuel granted together.
    pub(crate) fn capacity(&self) -> u64 {
        match self.mode() {
            Mode::Paced => 1,
            Mode::Window => self.max_n,
            Mode::Gcra { tolerance_ns } => tolerance_ns / self.interval_ns() + 1,
        }
    }

    /// The description of these parameters in [`Error::Mismatch`] (a stored
    /// rate may not be one this version makes).
    pub(crate) fn describe(&self) -> String {
        let (max_n, per) = (self.max_n, Duration::from_nanos(self.per_ns));
        let (hardcap, hold) = (self.hardcap, self.hold());
        let burst = self
            .burst
            .map_or(String::new(), |burst| format!(" burst {burst}"));
        match Rate::new(max_n, per) {
            Ok(rate) => format!("{rate} {hardcap:?}{burst} (hold {hold:?})"),
            Err(_) => format!("{max_n}/{per:?} {hardcap:?}{burst} (hold {hold:?})"),
        }
    }

    /// The first rate and the rates `also` of a tank built with them (a
    /// hold not given is the default for the shortest period): each a
    /// GCRA (`Limit` with a bank beside the hold, or `Unbounded`), which
    /// the script decides together.
    pub(crate) fn with_also(
        &self,
        also: &[Rate],
        hold_is_default: bool,
    ) -> Result<(Params, Vec<Params>), Error> {
        let Some(shortest) = also.iter().map(|r| r.per()).min() else {
            return Ok((*self, Vec::new()));
        };
        if !matches!(self.hardcap, Hardcap::Limit | Hardcap::Unbounded) {
            return Err(Error::UnsupportedRate {
                rate: also[0].to_string(),
                accepted: "`also` only with Hardcap::Limit or Hardcap::Unbounded in Redis \
                           (One and Window keep one rate)",
            });
        }
        let hold = if hold_is_default {
            default_hold(shortest.min(self.rate().per()))
        } else {
            self.hold()
        };
        let first = Params::new(self.rate(), self.hardcap, self.burst, hold)?;
        let also = also
            .iter()
            .map(|&rate| Params::new(rate, self.hardcap, None, hold))
            .collect::<Result<Vec<_>, _>>()?;
        first.check_also(&also)?;
        Ok((first, also))
    }

    /// With other rates, every rate must be a GCRA: under `Limit`, `max_n`
    /// more than the intervals in the hold (else it would be paced).
    pub(crate) fn check_also(&self, also: &[Params]) -> Result<(), Error> {
        if also.is_empty() {
            return Ok(());
        }
        match std::iter::once(self)
            .chain(also)
            .find(|p| !matches!(p.mode(), Mode::Gcra { .. }))
        {
            Some(paced) => Err(Error::UnsupportedRate {
                rate: paced.rate().to_string(),
                accepted: "with `also`, under Limit each rate's max_n must exceed the intervals \
                           of the hold (else the rate is paced, as One: one rate only)",
            }),
            None => Ok(()),
        }
    }

    /// The same parameters at another rate; the hold follows the default
    /// rule if `hold_is_default`.
    pub(crate) fn with_rate(&self, rate: Rate, hold_is_default: bool) -> Result<Params, Error> {
        let hold = if hold_is_default {
            default_hold(rate.per())
        } else {
            self.hold().min(rate.per())
        };
        Ok(Params {
            generation: self.generation,
            ..Params::new(rate, self.hardcap, self.burst, hold)?
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(rate: &str, hardcap: Hardcap) -> Params {
        let rate: Rate = rate.parse().unwrap();
        Params::new(rate, hardcap, None, default_hold(rate.per())).unwrap()
    }

    #[test]
    fn the_limit_bank_pays_for_the_hold() {
        // 1000/s, hold 100 ms: 100 intervals of hold, a bank of 900.
        let p = params("1000/s", Hardcap::Limit);
        assert_eq!(p.hold(), Duration::from_millis(100));
        assert_eq!(p.limit_bank(), 900);
        assert_eq!(p.capacity(), 900);
        // 10/s, hold 100 ms: one interval.
        assert_eq!(params("10/s", Hardcap::Limit).capacity(), 9);
        // 1/s: no bank left; paced like One.
        assert_eq!(params("1/s", Hardcap::Limit).mode(), Mode::Paced);
        assert_eq!(params("5/s", Hardcap::One).capacity(), 1);
        assert_eq!(params("5/s", Hardcap::Window).capacity(), 5);
    }

    #[test]
    fn a_burst_is_the_limit_bank_and_part_of_the_stored_cap() {
        let rate: Rate = "5/s".parse().unwrap();
        let hold = default_hold(rate.per());
        let p = Params::new(rate, Hardcap::Limit, Some(10), hold).unwrap();
        // 10 less the one 200 ms interval of the 100 ms hold.
        assert_eq!(p.capacity(), 9);
        let code = hardcap_code(p.hardcap, p.burst);
        assert_ne!(code, hardcap_code(Hardcap::Limit, Some(20)));
        assert_eq!(hardcap_of(code), (Hardcap::Limit, Some(10)));
        assert_eq!(
            hardcap_of(hardcap_code(Hardcap::Window, None)),
            (Hardcap::Window, None)
        );
        for (hardcap, burst) in [
            (Hardcap::One, 10),
            (Hardcap::Limit, 0),
            (Hardcap::Limit, u64::MAX),
            (Hardcap::Limit, 1 << 40), // 2^40 intervals of 200 ms
        ] {
            let err = Params::new(rate, hardcap, Some(burst), hold).unwrap_err();
            assert!(
                matches!(
                    err,
                    Error::InvalidOption {
                        option: "burst",
                        ..
                    }
                ),
                "{err}"
            );
        }
    }

    #[test]
    fn intervals_round_up() {
        assert_eq!(params("3/s", Hardcap::Limit).interval_ns(), 333_333_334);
        assert_eq!(params("1000/s", Hardcap::Limit).interval_ns(), 1_000_000);
    }

    #[test]
    fn long_periods_and_bad_holds_are_errors() {
        let long = Rate::new(1, Duration::from_secs(100 * 86_400)).unwrap();
        assert!(matches!(
            Params::new(long, Hardcap::Limit, None, Duration::from_secs(1)),
            Err(Error::UnsupportedRate { .. })
        ));
        let rate = Rate::per_second(10).unwrap();
        assert!(matches!(
            Params::new(rate, Hardcap::Limit, None, Duration::ZERO),
            Err(Error::InvalidOption { .. })
        ));
        assert!(matches!(
            Params::new(rate, Hardcap::Limit, None, Duration::from_secs(2)),
            Err(Error::InvalidOption { .. })
        ));
    }
}
