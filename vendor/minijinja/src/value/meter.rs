//! Hearth patch: bounds on the recursive work values do on their own.
//!
//! Formatting, comparing, hashing and dropping a container recurse into its
//! items, outside of any instruction's fuel check.  A template can build values
//! that make them unbounded: lists nested thousands deep (the native stack
//! overflows, wasm's first), or a list that holds itself twice, thirty times
//! over (2^30 items to visit, built in 60 instructions).  This module bounds
//! each of them:
//!
//! * nesting: past [`MAX_NESTING`] levels a container is printed as a
//!   placeholder, and compared and hashed as if empty;
//! * comparing and hashing: one top-level call visits at most [`MAX_VISITS`]
//!   containers and items, in a fixed order, and treats the rest as absent.  The result
//!   depends only on the values, so `Eq`, `Hash` and `Ord` stay consistent
//!   (sorting never sees a changing order);
//! * formatting: while a template renders with fuel, the bytes formatted out of
//!   containers are paid from the fuel that is left; past it the rest is
//!   replaced by a placeholder and the instruction fails with `OutOfFuel`;
//! * dropping: containers are released from a queue rather than recursively
//!   (see `release` in `type_erase.rs`).
use std::cell::{Cell, RefCell};

use crate::error::{Error, ErrorKind};
use crate::value::{ObjectRepr, Value};

/// Deepest nesting of containers that is printed, compared or hashed.
pub(crate) const MAX_NESTING: usize = 256;

/// Containers visited by one top-level comparison or hash.
pub(crate) const MAX_VISITS: u32 = 65536;

/// Units charged per container visited by a comparison or hash.
const VISIT_UNITS: u64 = 32;

/// Units per byte formatted out of a container (`SERIALIZED_BYTE_COST`).
const FORMAT_UNITS: u64 = 16;

/// Bytes a non-string item is assumed to format to.
const SCALAR_BYTES: u64 = 24;

thread_local! {
    /// Fuel units that formatting may still spend; `u64::MAX`: not metered.
    static BUDGET: Cell<u64> = const { Cell::new(u64::MAX) };
    /// Units spent by comparisons and hashes, charged at the next instruction.
    static CHARGED: Cell<u64> = const { Cell::new(0) };
    /// Formatting ran out of budget or nesting during this instruction.
    static TRIPPED: Cell<Option<Trip>> = const { Cell::new(None) };
    /// Containers entered by formatting, comparing or hashing.
    static DEPTH: Cell<usize> = const { Cell::new(0) };
    /// Containers visited by the current top-level comparison or hash.
    static VISITS: Cell<u32> = const { Cell::new(0) };
}

#[derive(Clone, Copy, Debug)]
enum Trip {
    OutOfFuel,
    TooDeep,
}

/// Meters the evaluation of one template frame; restores the outer frame's
/// budget when dropped.
pub(crate) struct Armed {
    outer: u64,
}

impl Armed {
    /// Starts metering with `remaining` fuel units (`None`: not metered).
    pub(crate) fn new(remaining: Option<u64>) -> Armed {
        let outer = BUDGET.with(|b| b.replace(remaining.unwrap_or(u64::MAX)));
        Armed { outer }
    }
}

impl Drop for Armed {
    fn drop(&mut self) {
        BUDGET.with(|b| b.set(self.outer));
        if self.outer == u64::MAX {
            // The outermost frame is done: nothing carries over to the next
            // rendering on this thread.
            CHARGED.with(|c| c.set(0));
            TRIPPED.with(|t| t.set(None));
        }
    }
}

/// Settles the work done since the last call: returns the units to charge,
/// or the error of a trip.  Call [`set_budget`] after charging them.
pub(crate) fn settle() -> Result<u64, Error> {
    match TRIPPED.with(|t| t.take()) {
        Some(Trip::OutOfFuel) => Err(Error::from(ErrorKind::OutOfFuel)),
        Some(Trip::TooDeep) => Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("value nested more than {MAX_NESTING} levels deep"),
        )),
        None => Ok(CHARGED.with(|c| c.take())),
    }
}

/// The fuel units formatting may spend from now on.
pub(crate) fn set_budget(remaining: u64) {
    BUDGET.with(|b| b.set(remaining));
}

fn trip(why: Trip) {
    BUDGET.with(|b| {
        if b.get() != u64::MAX {
            b.set(0);
            TRIPPED.with(|t| {
                if t.get().is_none() {
                    t.set(Some(why))
                }
            });
        }
    });
}

/// One level of container nesting, left when dropped.
pub(crate) struct Nested(());

impl Drop for Nested {
    fn drop(&mut self) {
        DEPTH.with(|d| d.set(d.get() - 1));
    }
}

fn enter() -> Option<Nested> {
    DEPTH.with(|d| {
        if d.get() >= MAX_NESTING {
            None
        } else {
            d.set(d.get() + 1);
            Some(Nested(()))
        }
    })
}

/// Enters a container to format it; `None`: write a placeholder instead.
pub(crate) fn enter_format() -> Option<Nested> {
    let rv = enter();
    if rv.is_none() {
        trip(Trip::TooDeep);
    }
    rv
}

/// Pays for formatting an item of `len` bytes (`None`: not a string); false:
/// the budget is spent, write a placeholder and stop.
pub(crate) fn pay_format(len: Option<usize>) -> bool {
    let units = (len.map_or(SCALAR_BYTES, |l| l as u64 + 2)).saturating_mul(FORMAT_UNITS);
    BUDGET.with(|b| {
        let left = b.get();
        if left == u64::MAX {
            true
        } else if units > left {
            trip(Trip::OutOfFuel);
            false
        } else {
            b.set(left - units);
            true
        }
    })
}

/// A container visited by a comparison or hash, left when dropped.
pub(crate) struct Visit {
    _nested: Nested,
    top: bool,
}

impl Drop for Visit {
    fn drop(&mut self) {
        if self.top {
            VISITS.with(|v| v.set(0));
        }
    }
}

/// Visits a container to compare or hash it; `None`: treat it as empty.
pub(crate) fn visit() -> Option<Visit> {
    let top = DEPTH.with(|d| d.get()) == 0;
    let n = VISITS.with(|v| {
        let n = if top { 1 } else { v.get().saturating_add(1) };
        v.set(n);
        n
    });
    if n > MAX_VISITS {
        return None;
    }
    let nested = enter()?;
    if BUDGET.with(|b| b.get()) != u64::MAX {
        CHARGED.with(|c| c.set(c.get().saturating_add(VISIT_UNITS)));
    }
    Some(Visit {
        _nested: nested,
        top,
    })
}

/// Counts an item a comparison or hash visits inside a container; false: the
/// walk has visited its [`MAX_VISITS`], treat the rest as absent.
pub(crate) fn item() -> bool {
    let n = VISITS.with(|v| {
        let n = v.get().saturating_add(1);
        v.set(n);
        n
    });
    if n > MAX_VISITS {
        return false;
    }
    if BUDGET.with(|b| b.get()) != u64::MAX {
        CHARGED.with(|c| c.set(c.get().saturating_add(VISIT_UNITS)));
    }
    true
}

/// Whether the walk is still within its [`MAX_VISITS`], without counting:
/// the second side of a pairwise comparison ends where the first does.
pub(crate) fn within() -> bool {
    VISITS.with(|v| v.get()) <= MAX_VISITS
}

/// Whether comparisons of each of `values` can visit at most `limit` items
/// (sorting checks that it can pay before it starts: a sort that ran out of
/// fuel halfway would see an order that changes).
pub(crate) fn walks_within<'v>(mut values: impl Iterator<Item = &'v Value>, limit: u64) -> bool {
    values.all(|v| walk_size(v, limit) <= limit)
}

/// The visits a comparison or hash of `value` can make, counted up to
/// `limit + 1` (and at most [`MAX_VISITS`]).
fn walk_size(value: &Value, limit: u64) -> u64 {
    let limit = limit.min(MAX_VISITS as u64);
    fn walk(value: &Value, depth: usize, n: &mut u64, limit: u64) {
        let Some(obj) = value.as_object() else { return };
        if depth >= MAX_NESTING {
            return;
        }
        let items: Box<dyn Iterator<Item = Value>> = match obj.repr() {
            ObjectRepr::Map => match obj.try_iter_pairs() {
                Some(pairs) => Box::new(pairs.flat_map(|(k, v)| [k, v])),
                None => return,
            },
            _ => match obj.try_iter() {
                Some(iter) => Box::new(iter),
                None => return,
            },
        };
        for item in items {
            *n += 1;
            if *n > limit {
                return;
            }
            walk(&item, depth + 1, n, limit);
        }
    }
    let mut n = 1;
    walk(value, 0, &mut n, limit);
    n
}

/// Units one visit charges.
pub(crate) const VISIT_COST: u64 = VISIT_UNITS;

thread_local! {
    /// A `release` is running on this thread.
    static RELEASING: Cell<bool> = const { Cell::new(false) };
    /// Objects whose last reference a running `release` dropped, to release next.
    static RELEASE_QUEUE: RefCell<Vec<(*const (), fn(*const ()))>> = const { RefCell::new(Vec::new()) };
}

/// Drops a reference to a type-erased object (`decref(ptr)`). The objects it
/// frees in turn are queued and freed here one after another, so that a list
/// nested a million deep is freed in a loop, not with a million stack frames.
pub(crate) fn release(ptr: *const (), decref: fn(*const ())) {
    let nested = RELEASING.try_with(|r| r.replace(true));
    match nested {
        Ok(true) => {
            let queued = RELEASE_QUEUE.try_with(|q| q.borrow_mut().push((ptr, decref)));
            if queued.is_err() {
                decref(ptr);
            }
            return;
        }
        // Thread-local storage is being torn down: no queue.
        Err(_) => return decref(ptr),
        Ok(false) => {}
    }
    struct Done;
    impl Drop for Done {
        fn drop(&mut self) {
            let _ = RELEASING.try_with(|r| r.set(false));
        }
    }
    let _done = Done;
    decref(ptr);
    while let Ok(Some((ptr, decref))) = RELEASE_QUEUE.try_with(|q| q.borrow_mut().pop()) {
        decref(ptr);
    }
}
