//! [`Permit`] and [`Fuel`]: fuel taken and not yet spent, which can be
//! given back.

use std::sync::Arc;

use super::core::Shared;

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

/// One fuel taken from a [`Tank`](crate::Tank) and not yet spent.
///
/// [`spend`](Permit::spend) it when the work it paid for happens; dropped
/// unspent, it gives the fuel back to the tank (to the head of the line, if
/// anyone waits). This is what a Tower service holds between `poll_ready`
/// and `call`.
///
/// Giving back is exact: the tank is left as if the fuel had never been
/// taken, whatever other permits, tokens and waiters did meanwhile — except
/// for the part of it that would have run into the tank's cap since (the
/// bucket filled up in the meantime), which is spent, never minted. A rate
/// change spends every fuel taken before it. (A tank in shared memory gives
/// fuel back only if no take since changed its bucket.)
///
/// # Examples
///
/// ```
/// use fueltank::{Rate, Tank};
///
/// let tank = Tank::builder(Rate::per_second(1)?).initial(1).build()?;
/// let permit = tank.try_acquire().expect("one fuel to start with");
/// assert_eq!(tank.level(), 0);
/// drop(permit); // not spent: the fuel goes back
/// assert_eq!(tank.level(), 1);
/// tank.try_acquire().unwrap().spend();
/// assert_eq!(tank.level(), 0);
/// # Ok::<(), fueltank::Error>(())
/// ```
#[must_use = "dropping a permit gives its fuel back; call `spend` to use it"]
#[derive(Debug)]
pub struct Permit {
    shared: Option<Arc<Shared>>,
    stamp: Stamp,
}

/// Fuel taken by [`Tank::try_take`](crate::Tank::try_take) (one) or
/// [`Budget::try_take`](crate::Budget::try_take) (any amount) and not yet
/// spent, held without a handle on its tank: no reference count, 32 bytes.
/// Give it back with [`Tank::refund`](crate::Tank::refund) or
/// [`Budget::give_back`](crate::Budget::give_back); dropped, it is spent.
///
/// It is the light form of a [`Permit`], for holders that keep the tank at
/// hand anyway (a Tower service between `poll_ready` and `call`).
///
/// # Examples
///
/// ```
/// use fueltank::{Rate, Tank};
///
/// let tank = Tank::builder(Rate::per_second(1)?).initial(1).build()?;
/// let fuel = tank.try_take().unwrap();
/// assert_eq!(tank.level(), 0);
/// tank.refund(fuel);
/// assert_eq!(tank.level(), 1);
/// # Ok::<(), fueltank::Error>(())
/// ```
#[must_use = "dropping fuel spends it; give it back with `Tank::refund`"]
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
    pub(crate) fn new(shared: &Shared, stamp: Stamp, n: u64) -> Fuel {
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
    /// use fueltank::{Rate, Tank};
    ///
    /// let tank = Tank::new(Rate::per_second(10)?);
    /// assert_eq!(tank.try_take().unwrap().amount(), 1);
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub const fn amount(&self) -> u64 {
        self.n
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
    /// use fueltank::{Rate, Tank};
    ///
    /// let tank = Tank::new(Rate::per_second(10)?);
    /// tank.try_take().unwrap().spend();
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn spend(self) {}
}

impl Permit {
    pub(crate) fn new(shared: Arc<Shared>, stamp: Stamp) -> Permit {
        Permit {
            shared: Some(shared),
            stamp,
        }
    }

    /// Spends the fuel: it is gone for good.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Tank};
    ///
    /// let tank = Tank::new(Rate::per_second(10)?);
    /// if let Some(permit) = tank.try_acquire() {
    ///     permit.spend();
    /// }
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn spend(mut self) {
        self.shared = None;
    }

    /// Turns the permit into [`Fuel`], which does not hold the tank: the
    /// fuel stays taken, to be spent or given back with
    /// [`Tank::refund`](crate::Tank::refund).
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank::{Rate, Tank};
    ///
    /// let tank = Tank::builder(Rate::per_second(1)?).initial(1).build()?;
    /// let fuel = tank.try_acquire().unwrap().into_fuel();
    /// tank.refund(fuel);
    /// assert_eq!(tank.level(), 1);
    /// # Ok::<(), fueltank::Error>(())
    /// ```
    pub fn into_fuel(mut self) -> Fuel {
        let shared = self.shared.take().expect("a live permit holds its tank");
        Fuel::new(&shared, self.stamp, 1)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.take() {
            shared.refund(1, self.stamp);
        }
    }
}
