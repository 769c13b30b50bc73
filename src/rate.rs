//! [`Rate`]: `max_n` grants per `per`, with exact integer arithmetic.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::Error;

/// `max_n` grants per `per`: the speed of a [`Tank`](crate::Tank) and the
/// size of its window.
///
/// The period is kept in whole nanoseconds and the interval `per / max_n` is
/// never rounded where the tank uses it, so `Rate::new(10, 13 s)`,
/// `Rate::per_second(3)` or `Rate::per_second(999_999_937)` do not drift,
/// however long they run.
///
/// A rate parses from and prints to a short string: `"100/s"`, `"5/250ms"`,
/// `"1000/min"`, `"2/h"`, `"10/1.5s"`.
///
/// # Examples
///
/// ```
/// use fueltank::Rate;
/// use std::time::Duration;
///
/// let rate = Rate::new(5, Duration::from_millis(250))?;
/// assert_eq!(rate.interval(), Duration::from_millis(50));
/// assert_eq!(rate, "5/250ms".parse()?);
/// assert_eq!(rate.to_string(), "5/250ms");
/// # Ok::<(), fueltank::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    max_n: u64,
    per_ns: u64,
}

impl Rate {
    /// `max_n` grants per `per`.
    ///
    /// # Errors
    ///
    /// [`Error::ZeroCount`] if `max_n` is 0, [`Error::ZeroPeriod`] if `per` is
    /// zero, [`Error::IntervalTooShort`] if `per / max_n` is below 1 ns, and
    /// [`Error::PeriodTooLong`] beyond 2^64 ns.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::Rate;
    /// use std::time::Duration;
    ///
    /// let rate = Rate::new(10, Duration::from_secs(13))?;
    /// assert_eq!(rate.interval(), Duration::from_millis(1300));
    /// assert!(Rate::new(2, Duration::from_nanos(1)).is_err());
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn new(max_n: u64, per: Duration) -> Result<Rate, Error> {
        if max_n == 0 {
            return Err(Error::ZeroCount);
        }
        if per.is_zero() {
            return Err(Error::ZeroPeriod);
        }
        let per_ns = u64::try_from(per.as_nanos()).map_err(|_| Error::PeriodTooLong { per })?;
        if per_ns < max_n {
            return Err(Error::IntervalTooShort { max_n, per });
        }
        Ok(Rate { max_n, per_ns })
    }

    /// `n` grants per second.
    ///
    /// # Errors
    ///
    /// As [`Rate::new`]: `n` must be between 1 and 10^9.
    ///
    /// # Examples
    ///
    /// ```
    /// let rate = fueltank::Rate::per_second(100)?;
    /// assert_eq!(rate.to_string(), "100/s");
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn per_second(n: u64) -> Result<Rate, Error> {
        Rate::new(n, Duration::from_secs(1))
    }

    /// `n` grants per minute.
    ///
    /// # Errors
    ///
    /// As [`Rate::new`]: `n` must be between 1 and 6·10^10.
    ///
    /// # Examples
    ///
    /// ```
    /// let rate = fueltank::Rate::per_minute(30)?;
    /// assert_eq!(rate.interval(), std::time::Duration::from_secs(2));
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn per_minute(n: u64) -> Result<Rate, Error> {
        Rate::new(n, Duration::from_secs(60))
    }

    /// The number of grants per period.
    ///
    /// # Examples
    ///
    /// ```
    /// let rate: fueltank::Rate = "1000/min".parse()?;
    /// assert_eq!(rate.max_n(), 1000);
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn max_n(&self) -> u64 {
        self.max_n
    }

    /// The period.
    ///
    /// # Examples
    ///
    /// ```
    /// let rate: fueltank::Rate = "2/h".parse()?;
    /// assert_eq!(rate.per(), std::time::Duration::from_secs(3600));
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn per(&self) -> Duration {
        Duration::from_nanos(self.per_ns)
    }

    /// The time between two grants, `per / max_n`, rounded down to whole
    /// nanoseconds. (The tank itself uses the exact value.)
    ///
    /// # Examples
    ///
    /// ```
    /// let rate = fueltank::Rate::per_second(3)?;
    /// assert_eq!(rate.interval().as_nanos(), 333_333_333);
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn interval(&self) -> Duration {
        Duration::from_nanos(self.per_ns / self.max_n)
    }

    pub(crate) fn per_ns(&self) -> u64 {
        self.per_ns
    }

    /// The tick scale for this rate: `(ticks_per_ns, interval_ticks)`, the
    /// reduced fraction `per / max_n = interval_ticks / ticks_per_ns` ns.
    /// A tank counts time in ticks of `1 / ticks_per_ns` ns, so that one
    /// interval is a whole number of ticks, exactly, whatever the rate.
    pub(crate) fn ticks(&self) -> (u64, u64) {
        let g = gcd(self.per_ns, self.max_n);
        (self.max_n / g, self.per_ns / g)
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Units of a rate string, as written: exactly these spellings.
const UNITS: &[(&str, u64)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("ms", 1_000_000),
    ("sec", 1_000_000_000),
    ("s", 1_000_000_000),
    ("min", 60_000_000_000),
    ("m", 60_000_000_000),
    ("hr", 3_600_000_000_000),
    ("h", 3_600_000_000_000),
    ("d", 86_400_000_000_000),
];

/// Units spelled out, in any case and singular or plural: "100/second",
/// "5/Minute", "2/HOURS".
const WORDS: &[(&str, u64)] = &[
    ("nanosecond", 1),
    ("microsecond", 1_000),
    ("millisecond", 1_000_000),
    ("second", 1_000_000_000),
    ("minute", 60_000_000_000),
    ("hour", 3_600_000_000_000),
    ("day", 86_400_000_000_000),
];

/// The size in ns of `unit`, or why it is not accepted.
fn unit_size(unit: &str) -> Result<u64, &'static str> {
    if let Some(&(_, size)) = UNITS.iter().find(|&&(name, _)| name == unit) {
        return Ok(size);
    }
    let lower = unit.to_lowercase();
    let singular = lower.strip_suffix('s').unwrap_or(&lower);
    if let Some(&(_, size)) = WORDS.iter().find(|&&(name, _)| name == singular) {
        return Ok(size);
    }
    if UNITS.iter().any(|&(name, _)| name == lower) {
        // "S", "MS", "M": upper-case abbreviations are ambiguous (mega?).
        return Err("the period's unit is in upper case; abbreviated units are lower case");
    }
    Err("the period's unit is unknown")
}

/// Units used when printing, largest first.
const DISPLAY_UNITS: &[(&str, u64)] = &[
    ("d", 86_400_000_000_000),
    ("h", 3_600_000_000_000),
    ("min", 60_000_000_000),
    ("s", 1_000_000_000),
    ("ms", 1_000_000),
    ("us", 1_000),
    ("ns", 1),
];

impl fmt::Display for Rate {
    /// Prints the largest unit that divides the period exactly, so the string
    /// parses back to the same rate.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (unit, size) = DISPLAY_UNITS
            .iter()
            .copied()
            .find(|&(_, size)| self.per_ns.is_multiple_of(size))
            .unwrap_or(("ns", 1));
        match self.per_ns / size {
            1 => write!(f, "{}/{unit}", self.max_n),
            amount => write!(f, "{}/{amount}{unit}", self.max_n),
        }
    }
}

impl FromStr for Rate {
    type Err = Error;

    /// Parses `COUNT/[AMOUNT]UNIT`, such as `"100/s"`, `"5/250ms"` or
    /// `"10/1.5s"`. The amount may have a decimal fraction as long as the
    /// period is a whole number of nanoseconds. Units: `ns`, `us` or `µs`,
    /// `ms`, `s` or `sec`, `m` or `min`, `h` or `hr`, `d`; or spelled out in
    /// any case, singular or plural (`"100/second"`, `"5/Minutes"`).
    /// Abbreviations are lower case only: `"100/S"` is refused, as `"M"`
    /// could be read as mega.
    fn from_str(input: &str) -> Result<Rate, Error> {
        let fail = |reason| Error::ParseRate {
            input: input.to_owned(),
            reason,
        };
        let (count, period) = input
            .split_once('/')
            .ok_or_else(|| fail("there is no '/' between the count and the period"))?;
        let count = count.trim();
        if count.is_empty() || !count.bytes().all(|b| b.is_ascii_digit()) {
            return Err(fail("the count before '/' must be a whole number"));
        }
        let max_n: u64 = count
            .parse()
            .map_err(|_| fail("the count is larger than 2^64 - 1"))?;

        let period = period.trim();
        let split = period
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| fail("the period has no unit"))?;
        let (amount, unit) = period.split_at(split);
        let unit = unit.trim_start();
        let size = unit_size(unit).map_err(fail)?;
        let per_ns = if amount.is_empty() {
            u128::from(size)
        } else {
            parse_scaled(amount, size).map_err(fail)?
        };
        let per_ns =
            u64::try_from(per_ns).map_err(|_| fail("the period is longer than 2^64 ns"))?;
        Rate::new(max_n, Duration::from_nanos(per_ns))
    }
}

/// A rate is written as its string, `"100/s"`, and read from one (any
/// spelling [`FromStr`] takes): what a configuration file holds.
#[cfg(feature = "serde")]
#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
impl serde::Serialize for Rate {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(feature = "serde")]
#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
impl<'de> serde::Deserialize<'de> for Rate {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Rate, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Rate;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a rate such as \"100/s\", \"5/250ms\" or \"1000/min\"")
            }

            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<Rate, E> {
                value.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

/// `amount * size` for a decimal `amount`, exactly, in nanoseconds.
fn parse_scaled(amount: &str, size: u64) -> Result<u128, &'static str> {
    const NOT_A_NUMBER: &str = "the period's amount must be a number such as 250 or 1.5";
    let (whole, frac) = amount.split_once('.').unwrap_or((amount, ""));
    if whole.is_empty() && frac.is_empty() || frac.contains('.') {
        return Err(NOT_A_NUMBER);
    }
    if frac.len() > 18 {
        return Err("the period has more than 18 decimal places");
    }
    let digits = |s: &str| -> Result<u128, &'static str> {
        if s.is_empty() {
            Ok(0)
        } else {
            s.parse().map_err(|_| "the period's amount is too large")
        }
    };
    let scale = 10u128.pow(frac.len() as u32);
    let numerator = digits(whole)?
        .checked_mul(scale)
        .and_then(|w| w.checked_add(digits(frac).ok()?))
        .and_then(|n| n.checked_mul(u128::from(size)))
        .ok_or("the period is longer than 2^64 ns")?;
    if numerator % scale != 0 {
        return Err("the period is not a whole number of nanoseconds");
    }
    Ok(numerator / scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_exact_for_every_rate() {
        let ticks = |s: &str| s.parse::<Rate>().unwrap().ticks();
        assert_eq!(ticks("100/s"), (1, 10_000_000));
        assert_eq!(ticks("3/s"), (3, 1_000_000_000));
        assert_eq!(ticks("10/13s"), (1, 1_300_000_000));
        assert_eq!(ticks("7/min"), (7, 60_000_000_000));
        // 999_983 is prime: a tick is a 999_983th of a nanosecond.
        assert_eq!(ticks("999983/s"), (999_983, 1_000_000_000));
    }

    #[test]
    fn decimal_periods_are_exact() {
        assert_eq!(parse_scaled("1.5", 1_000_000_000), Ok(1_500_000_000));
        assert_eq!(parse_scaled(".25", 60_000_000_000), Ok(15_000_000_000));
        assert!(parse_scaled("1.0000000001", 1_000_000_000).is_err());
        assert!(parse_scaled("1.2.3", 1).is_err());
        assert!(parse_scaled(".", 1).is_err());
    }
}
