//! [`Fuel`]: fuel taken and not yet spent, which can be given back.

use super::line::Line;

/// What a waiter's node or a grant remembers: how to give the grant back
/// exactly (see `refunds.rs`), or how a queued node stands. `rate` is the
/// count of rate changes the grant was made under: a rate change spends
/// every grant before it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Stamp {
    /// Nothing to give back by: a take of nothing, a take for good, a node
    /// not yet granted.
    #[default]
    None,
    /// A grant from a bucket of this process (`Limit`, `One`,
    /// `Unbounded`): the sequence number of the first cut that may cut its
    /// refund short.
    Gcra { cut: u64, rate: u64 },
    /// A `Window` grant: when it leaves the window (window time).
    Window { leave: u64, rate: u64 },
    /// A grant from a shared-memory bucket: the shared word as the take
    /// left it (given back only if it is still that).
    Host { word: u64 },
    /// A queued node's scheduled turn in a shared tank: when it is due, and
    /// the word its grant will leave.
    Turn { due: u64, word: u64 },
    /// A node rejected: it asks for more than the tank's `capacity`.
    Rejected { capacity: u64 },
}

/// Fuel taken and not yet spent: `n` units from one tank, which can be
/// given back whole or in part. Taken by
/// [`Budget::try_take`](crate::Budget::try_take) now, or by
/// [`Budget::wait`](crate::Budget::wait) in the line. Dropped, it is
/// spent; [`Budget::give_back`](crate::Budget::give_back) returns it, and
/// [`split`](Fuel::split) cuts off the part to return: reserve an
/// estimate, then give back what was not used. It holds no handle on its
/// tank (no reference count): the holder keeps the tank at hand.
///
/// Giving back is exact: the tank is left as if that fuel had never been
/// taken, whatever other tokens and waiters took meanwhile — except for the
/// part that would have run into the tank's cap since (the bucket filled
/// up in the meantime), which is spent. (Several grants given back against
/// the same later takes share the room those takes found, as far as the
/// tank recorded it: `refunds.rs` in the source says the one case it does
/// not.) A rate change spends
/// every fuel taken before it. A tank in shared memory takes fuel back only
/// if no take since changed its bucket (so of a token split in parts, the
/// first part given back only). Fuel given back to another tank than its
/// own is spent, never counted twice.
///
/// # Examples
///
/// ```
/// use fueltank::{Budget, Rate, Tank};
///
/// let tank = Tank::builder(Rate::per_second(10)?).initial(10).build()?;
/// let mut fuel = tank.try_take(8).expect("8 of the 10"); // the estimate
/// assert_eq!(tank.level(), 2);
/// let used = 5;
/// tank.give_back(fuel.split(8 - used)); // the 3 not used go back
/// assert_eq!(tank.level(), 5);
/// assert_eq!(fuel.amount(), 5);
/// fuel.spend(); // the same as dropping it
/// # Ok::<(), fueltank::Error>(())
/// ```
#[must_use = "dropping fuel spends it; give it back with `Budget::give_back`"]
#[derive(Debug, PartialEq, Eq)]
pub struct Fuel {
    /// Which tank it came from: a number no other tank of the process has.
    pub(crate) tank: u64,
    pub(crate) stamp: Stamp,
    n: u64,
}

/// The `tank` of fuel from no tank: tanks are numbered from 0 up.
const NO_TANK: u64 = u64::MAX;

impl Fuel {
    pub(crate) fn new(shared: &Line, stamp: Stamp, n: u64) -> Fuel {
        Fuel {
            tank: shared.id,
            stamp,
            n,
        }
    }

    /// `n` fuel taken for good, from a [`Budget`](crate::Budget) that
    /// cannot take fuel back (a budget kept in another store, a
    /// [`Throttle`](crate::Throttle) without a tank): giving it back spends
    /// it.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Budget, Fuel, Rate, Tank};
    ///
    /// let tank = Tank::builder(Rate::per_second(1)?).initial(0).build()?;
    /// tank.give_back(Fuel::taken(1)); // not this tank's: nothing comes back
    /// assert_eq!(tank.level(), 0);
    /// assert_eq!(Fuel::taken(3).amount(), 3);
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub const fn taken(n: u64) -> Fuel {
        Fuel {
            tank: NO_TANK,
            stamp: Stamp::None,
            n,
        }
    }

    /// How much fuel this is.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Budget, Rate, Tank};
    ///
    /// let tank = Tank::builder(Rate::per_second(10)?).initial(3).build()?;
    /// assert_eq!(tank.try_take(3).unwrap().amount(), 3);
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub const fn amount(&self) -> u64 {
        self.n
    }

    /// Splits `n` of this fuel off (all of it if it holds less), as fuel of
    /// its own that can be given back as this can; this keeps the rest.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Budget, Rate, Tank};
    ///
    /// let tank = Tank::builder(Rate::per_second(10)?).initial(4).build()?;
    /// let mut fuel = tank.try_take(4).unwrap();
    /// let part = fuel.split(1);
    /// assert_eq!((fuel.amount(), part.amount()), (3, 1));
    /// tank.give_back(part);
    /// assert_eq!(tank.level(), 1);
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn split(&mut self, n: u64) -> Fuel {
        let n = n.min(self.n);
        self.n -= n;
        Fuel {
            tank: self.tank,
            stamp: self.stamp,
            n,
        }
    }

    /// The tank this fuel came from, and what it needs to be given back
    /// there; `None` for fuel [taken for good](Fuel::taken).
    pub(crate) fn tank_id(&self) -> Option<u64> {
        (self.tank != NO_TANK).then_some(self.tank)
    }

    /// Spends the fuel; the same as dropping it, said out loud.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Budget, Rate, Tank};
    ///
    /// let tank = Tank::new(Rate::per_second(10)?);
    /// tank.try_take(1).unwrap().spend();
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn spend(self) {}
}
