//! [`Hardcap`]: how much fuel may bank up.

/// How much fuel a tank may bank up, and so how bursty its grants may be.
///
/// With `max_n` grants per `per` (interval `T = per / max_n`), every
/// half-open window of length `per` sees at most:
///
/// | hardcap | capacity | grants per window | bursts after idle |
/// |---|---|---|---|
/// | [`Limit`](Hardcap::Limit) (default) | `max_n`, or `burst` | `2·max_n − 1`, or `burst + max_n − 1` | up to the capacity |
/// | [`One`](Hardcap::One) | 1 | `max_n`; grants ≥ `T` apart | none |
/// | [`Unbounded`](Hardcap::Unbounded) | none | no bound; long-run mean exact | unbounded |
/// | [`Window`](Hardcap::Window) | `max_n` | `max_n`, exactly | up to `max_n` |
///
/// Under `Limit` and `Unbounded`, tasks that wait all the time get
/// `initial + ⌊elapsed / T⌋` grants, however late the timer wakes (a late
/// wake-up is caught up from the bank). `One` and `Window` cannot catch up
/// without breaking their promise: each late wake-up delays the grants after
/// it, so they fall behind by the timer's lateness (see
/// [`TankBuilder::timer_correction`](crate::TankBuilder::timer_correction)).
/// `Limit` with `max_n = 1` has a bank of one, so it behaves as `One`;
/// `Rate::new(2, 2 * per)` has the same interval and catches up. Under
/// `Window` waiting tasks get `max_n` at once, then `max_n` at the start of
/// each following window.
///
/// With feature `serde`, a hardcap is written by its name in lower case
/// (`"limit"`, `"one"`, `"unbounded"`, `"window"`).
///
/// # Examples
///
/// ```
/// use fueltank::{Hardcap, Rate, Tank};
///
/// // Never more than 10 in any second, even right after a quiet spell.
/// let tank = Tank::builder(Rate::per_second(10)?)
///     .hardcap(Hardcap::One)
///     .build()?;
/// assert!(tank.has_fuel());
/// assert!(!tank.has_fuel());
/// # Ok::<(), fueltank::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum Hardcap {
    /// Bank up to `max_n` (or the
    /// [`burst`](crate::TankBuilder::burst) given): bursts of that much after
    /// idle, then one per `T` (`mp_throttle`'s `'limit'`).
    #[default]
    Limit,
    /// Bank at most one: grants at least `T` apart, never more than `max_n`
    /// in any window (`mp_throttle`'s `'one'`).
    One,
    /// Bank without bound: the long-run average is exact, bursts after idle
    /// are not limited (`mp_throttle`'s `None`).
    Unbounded,
    /// Never more than `max_n` grants in any window of length `per`, with
    /// bursts allowed: a sliding log of the last `max_n` grants.
    Window,
}

/// The most fuel an `Unbounded` tank grants to one request.
pub(crate) const UNBOUNDED_REQUEST: u64 = 1 << 48;

impl Hardcap {
    /// The cap of the bank of a tank of `max_n` per `per` and the given
    /// `burst` (`Limit` only: see `TankBuilder::burst`); `None` for
    /// `Unbounded`.
    pub(crate) fn capacity(self, max_n: u64, burst: Option<u64>) -> Option<u64> {
        match (self, burst) {
            (Hardcap::Limit, Some(burst)) => Some(burst),
            _ => self.cap(max_n),
        }
    }

    /// Checks a `burst` for this hardcap (see `TankBuilder::burst`): `Limit`
    /// only, from 1 to 2^48 (a bank beyond that is no limit).
    pub(crate) fn check_burst(self, burst: Option<u64>) -> Result<(), crate::Error> {
        let Some(burst) = burst else {
            return Ok(());
        };
        if self != Hardcap::Limit {
            return Err(crate::Error::Unsupported {
                what: "a burst with this hardcap",
                accepted: "the hardcap must be Limit, whose capacity burst(n) sets (One holds \
                           1, Window max_n, and Unbounded has no cap)",
            });
        }
        if burst == 0 || burst > UNBOUNDED_REQUEST {
            return Err(crate::Error::InvalidCount {
                option: "burst",
                value: burst,
                accepted: "between 1 and 2^48",
            });
        }
        Ok(())
    }

    /// The most fuel one request may ask for, with `burst`.
    pub(crate) fn request_capacity(self, max_n: u64, burst: Option<u64>) -> u64 {
        self.capacity(max_n, burst).unwrap_or(UNBOUNDED_REQUEST)
    }

    /// The cap of the tank's bank; `None` for `Unbounded`.
    pub(crate) fn cap(self, max_n: u64) -> Option<u64> {
        match self {
            Hardcap::Limit | Hardcap::Window => Some(max_n),
            Hardcap::One => Some(1),
            Hardcap::Unbounded => None,
        }
    }
}
