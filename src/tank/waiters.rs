//! The FIFO of waiting futures: an intrusive doubly linked list whose nodes
//! live inside the pinned futures themselves, so waiting allocates nothing
//! and a cancelled waiter leaves in O(1) from any place in the line.
//!
//! Every field of a node except `state` is read and written only by the
//! holder of the tank's core lock. `state` is also read without the lock by
//! the node's own future, to learn that it was granted.

use std::marker::PhantomPinned;
use std::ptr::NonNull;
use std::task::Waker;

use super::permit::Stamp;
use crate::sync::{AtomicU8, Ordering, UnsafeCell};

/// Not in the list, never granted.
pub(crate) const IDLE: u8 = 0;
/// In the list, waiting.
pub(crate) const QUEUED: u8 = 1;
/// Taken out of the list with its fuel.
pub(crate) const GRANTED: u8 = 2;
/// Taken out of the list because its request can no longer ever fit.
pub(crate) const REJECTED: u8 = 3;

#[derive(Debug)]
pub(crate) struct Node {
    links: UnsafeCell<Links>,
    waker: UnsafeCell<Option<Waker>>,
    /// Fuel asked for.
    n: UnsafeCell<u64>,
    /// The grant's stamp, to give it back exactly (for `REJECTED`, the
    /// capacity in `at`). Queued in a shared tank's line, its turn once
    /// scheduled in the shared word: the word as the reservation left it
    /// in `at`, its due time in `rate` (0: none yet).
    stamp: UnsafeCell<Stamp>,
    state: AtomicU8,
    /// Linked nodes are pointed to; they must not move.
    _pinned: PhantomPinned,
}

#[derive(Debug, Default)]
struct Links {
    prev: Option<NonNull<Node>>,
    next: Option<NonNull<Node>>,
}

impl Node {
    pub(crate) fn new() -> Node {
        Node {
            links: UnsafeCell::new(Links::default()),
            waker: UnsafeCell::new(None),
            n: UnsafeCell::new(0),
            stamp: UnsafeCell::new(Stamp::default()),
            state: AtomicU8::new(IDLE),
            _pinned: PhantomPinned,
        }
    }

    /// The state, as seen by the node's future without the lock.
    pub(crate) fn state(&self) -> u8 {
        self.state.load(Ordering::Acquire)
    }

    /// The grant's stamp, once [`Node::state`] has returned `GRANTED`: the
    /// driver wrote it before publishing that state, and never touches the
    /// node again.
    pub(crate) fn granted_stamp(&self) -> Stamp {
        debug_assert_eq!(self.state.load(Ordering::Relaxed), GRANTED);
        // SAFETY: written before the Release store of GRANTED, which the
        // caller's Acquire load observed; no one writes it afterwards.
        self.stamp.with(|s| unsafe { *s })
    }
}

// SAFETY: the raw links and the waker are only touched while holding the
// tank's core lock (see the methods of `List`, all of which require it), and
// `state` is atomic. Wakers are `Send + Sync`.
unsafe impl Send for Node {}
// SAFETY: as for `Send`.
unsafe impl Sync for Node {}

/// The line of waiters, oldest first. Lives inside the core lock.
#[derive(Debug, Default)]
pub(crate) struct List {
    head: Option<NonNull<Node>>,
    tail: Option<NonNull<Node>>,
}

// SAFETY: the list only holds pointers to nodes, which are themselves
// `Send + Sync`, and is only used under the core lock.
unsafe impl Send for List {}

/// A node of the list, as the list hands it out. Its accessors are
/// `unsafe`: they touch the node's fields, which is only sound under the
/// core lock, while the node is in the list (or was just taken out of it by
/// the caller), since its future unlinks it under that lock before it is
/// dropped.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Linked(NonNull<Node>);

impl Linked {
    /// A node of a list, as the list would hand it out.
    pub(crate) fn of(node: NonNull<Node>) -> Linked {
        Linked(node)
    }

    pub(crate) fn as_ptr(&self) -> NonNull<Node> {
        self.0
    }

    /// # Safety
    ///
    /// See the type's docs.
    unsafe fn node(&self) -> &Node {
        // SAFETY: the caller's contract: alive and pinned.
        unsafe { self.0.as_ref() }
    }

    /// The fuel the node asked for.
    ///
    /// # Safety
    ///
    /// See the type's docs.
    pub(crate) unsafe fn n(&self) -> u64 {
        // SAFETY: alive, under the core lock (the caller's contract).
        unsafe { self.node().n.with(|n| *n) }
    }

    /// Its scheduled turn in a shared tank: `(due, word)`.
    ///
    /// # Safety
    ///
    /// See the type's docs.
    pub(crate) unsafe fn turn(&self) -> Option<(u64, u64)> {
        // SAFETY: alive, under the core lock (the caller's contract).
        match unsafe { self.node().stamp.with(|s| *s) } {
            Stamp::Turn { due, word } => Some((due, word)),
            _ => None,
        }
    }

    /// Records its scheduled turn (see [`Linked::turn`]).
    ///
    /// # Safety
    ///
    /// See the type's docs.
    pub(crate) unsafe fn set_turn(&self, turn: Option<(u64, u64)>) {
        let stamp = match turn {
            Some((due, word)) => Stamp::Turn { due, word },
            None => Stamp::None,
        };
        // SAFETY: alive, under the core lock (the caller's contract).
        unsafe { self.node().stamp.with_mut(|s| *s = stamp) }
    }

    /// Marks the node finished (`GRANTED` or `REJECTED`) with `stamp`, and
    /// takes its waker.
    ///
    /// # Safety
    ///
    /// See the type's docs; the node is no longer in the list.
    pub(crate) unsafe fn finish(&self, state: u8, stamp: Stamp) -> Option<Waker> {
        // SAFETY: the caller's contract.
        let node = unsafe { self.node() };
        // SAFETY: under the core lock, as above.
        node.stamp.with_mut(|s| unsafe { *s = stamp });
        // SAFETY: under the core lock, as above.
        let waker = node.waker.with_mut(|w| unsafe { (*w).take() });
        // Release: the future that sees the new state also sees the stamp.
        node.state.store(state, Ordering::Release);
        waker
    }
}

impl List {
    pub(crate) fn front(&self) -> Option<Linked> {
        self.head.map(Linked)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.head.is_none()
    }

    /// Takes the head out of the line.
    pub(crate) fn pop_front(&mut self) -> Option<Linked> {
        let head = self.head?;
        // SAFETY: the head is linked, hence alive, and the list is only
        // reachable under the core lock.
        unsafe { self.unlink(head) };
        Some(Linked(head))
    }

    /// Puts `node` at the back of the line, asking for `n` fuel.
    ///
    /// # Safety
    ///
    /// The caller holds the core lock, `node` is pinned, is not in any list,
    /// and its future will call [`List::unlink`] under the lock before the
    /// node is dropped, unless the driver unlinks it first.
    pub(crate) unsafe fn link(&mut self, node: NonNull<Node>, n: u64, waker: &Waker) -> Linked {
        let linked = Linked(node);
        // SAFETY: the caller's contract: alive and pinned, under the lock.
        let node_ref = unsafe { linked.node() };
        // SAFETY: under the core lock, and the node is not linked, so no one
        // else looks at these fields.
        unsafe {
            node_ref.n.with_mut(|p| *p = n);
            node_ref.stamp.with_mut(|p| *p = Stamp::default());
            node_ref.waker.with_mut(|p| *p = Some(waker.clone()));
            node_ref.links.with_mut(|p| {
                *p = Links {
                    prev: self.tail,
                    next: None,
                }
            });
        }
        match self.tail {
            // SAFETY: the tail is a linked node, alive; under the core lock.
            Some(tail) => unsafe { tail.as_ref().links.with_mut(|p| (*p).next = Some(node)) },
            None => self.head = Some(node),
        }
        self.tail = Some(node);
        node_ref.state.store(QUEUED, Ordering::Relaxed);
        linked
    }

    /// Takes `node` out of the line. Returns whether it was in it.
    ///
    /// # Safety
    ///
    /// The caller holds the core lock and `node` is alive (it is either in
    /// this list or in no list).
    pub(crate) unsafe fn unlink(&mut self, node: NonNull<Node>) -> bool {
        // SAFETY: the node is alive (caller's contract).
        let node_ref = unsafe { node.as_ref() };
        if node_ref.state.load(Ordering::Relaxed) != QUEUED {
            return false;
        }
        // SAFETY: under the core lock; linked neighbours are alive.
        unsafe {
            let Links { prev, next } = node_ref.links.with_mut(|p| std::mem::take(&mut *p));
            match prev {
                Some(prev) => prev.as_ref().links.with_mut(|p| (*p).next = next),
                None => self.head = next,
            }
            match next {
                Some(next) => next.as_ref().links.with_mut(|p| (*p).prev = prev),
                None => self.tail = prev,
            }
        }
        node_ref.state.store(IDLE, Ordering::Relaxed);
        true
    }

    /// Replaces the waker of a queued `node` if it would not wake the same
    /// task.
    ///
    /// # Safety
    ///
    /// As for [`List::unlink`].
    pub(crate) unsafe fn set_waker(&mut self, node: NonNull<Node>, waker: &Waker) {
        // SAFETY: alive (caller's contract), under the core lock.
        let node_ref = unsafe { node.as_ref() };
        // SAFETY: under the core lock.
        node_ref.waker.with_mut(|p| unsafe {
            match &mut *p {
                Some(old) if old.will_wake(waker) => {}
                slot => *slot = Some(waker.clone()),
            }
        });
    }

    /// The fuel `node` asked for.
    ///
    /// # Safety
    ///
    /// As for [`List::unlink`].
    pub(crate) unsafe fn n(node: NonNull<Node>) -> u64 {
        // SAFETY: alive (caller's contract), under the core lock.
        unsafe { node.as_ref().n.with(|n| *n) }
    }

    /// The stamp of a granted `node`.
    ///
    /// # Safety
    ///
    /// As for [`List::unlink`].
    pub(crate) unsafe fn stamp(node: NonNull<Node>) -> Stamp {
        // SAFETY: alive (caller's contract), under the core lock.
        unsafe { node.as_ref().stamp.with(|s| *s) }
    }

    /// Visits every queued node, front to back.
    pub(crate) fn iter(&self) -> impl Iterator<Item = Linked> + Clone + '_ {
        std::iter::successors(self.front(), |linked| {
            // SAFETY: under the core lock (the list is borrowed from the
            // core); linked nodes are alive.
            unsafe { linked.node().links.with(|p| (*p).next).map(Linked) }
        })
    }
}
