//! Per-namespace counters, so a tenant's `stats` shows only its own items,
//! and each namespace's flush floor.
//!
//! Owns the table from namespace id to `NsStats`, to the cas values
//! below which the namespace's items count as flushed (see
//! `Store::flush_ns`), and to the project its items are charged to (see
//! `fair`).
//! It never sees items: the store tells it what changed. Interned ids are small and dense, so
//! ids below `DENSE_MAX` index a vector (no hashing on the set path);
//! larger ids fall back to a map.

use std::collections::HashMap;

use super::fair::ProjectId;
use super::{NsId, NsStats};

/// Ids below this use the vector: 64 Ki namespaces cost at most 2 MiB.
const DENSE_MAX: NsId = 1 << 16;

#[derive(Clone, Copy)]
struct Entry {
    stats: NsStats,
    floor: Floor,
    /// The project its items are charged to (`UNBOUND`: not told yet;
    /// charged to project 0).
    project: ProjectId,
}

impl Default for Entry {
    fn default() -> Entry {
        Entry {
            stats: NsStats::default(),
            floor: Floor::default(),
            project: UNBOUND,
        }
    }
}

/// "Not bound to a project yet".
pub(crate) const UNBOUND: ProjectId = ProjectId::MAX;

/// Where a namespace was last flushed, as cas values: segment items and
/// large items draw cas from different places, each increasing with time.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub(crate) struct Floor {
    /// Segment items (and items eviction moved) with a cas below this.
    pub segment: u64,
    /// Large items with a cas below this.
    pub large: u64,
}

#[derive(Default)]
pub(crate) struct NsTable {
    dense: Vec<Entry>,
    sparse: HashMap<NsId, Entry, ahash::RandomState>,
}

impl NsTable {
    #[inline]
    fn entry_mut(&mut self, ns: NsId) -> &mut Entry {
        if ns < DENSE_MAX {
            let i = ns as usize;
            if i >= self.dense.len() {
                self.dense.resize(i + 1, Entry::default());
            }
            &mut self.dense[i]
        } else {
            self.sparse.entry(ns).or_default()
        }
    }

    #[inline]
    fn entry(&self, ns: NsId) -> Entry {
        if ns < DENSE_MAX {
            self.dense.get(ns as usize).copied().unwrap_or_default()
        } else {
            self.sparse.get(&ns).copied().unwrap_or_default()
        }
    }

    #[inline]
    pub fn get_mut(&mut self, ns: NsId) -> &mut NsStats {
        &mut self.entry_mut(ns).stats
    }

    pub fn get(&self, ns: NsId) -> NsStats {
        self.entry(ns).stats
    }

    /// The project `ns`'s items are charged to (0 until bound).
    #[inline]
    pub fn project(&self, ns: NsId) -> ProjectId {
        match self.bound(ns) {
            UNBOUND => 0,
            p => p,
        }
    }

    /// The project `ns` was bound to, or `UNBOUND`.
    #[inline]
    pub fn bound(&self, ns: NsId) -> ProjectId {
        if ns < DENSE_MAX {
            self.dense.get(ns as usize).map_or(UNBOUND, |e| e.project)
        } else {
            self.sparse.get(&ns).map_or(UNBOUND, |e| e.project)
        }
    }

    /// Charges `ns`'s items to `project` from now on (`UNBOUND` unbinds).
    pub fn set_project(&mut self, ns: NsId, project: ProjectId) {
        self.entry_mut(ns).project = project;
    }

    /// Where `ns` was last flushed (zeros: never).
    #[inline]
    pub fn floor(&self, ns: NsId) -> Floor {
        self.entry(ns).floor
    }

    pub fn set_floor(&mut self, ns: NsId, floor: Floor) {
        self.entry_mut(ns).floor = floor;
    }

    /// Zeroes `ns`'s counters, keeping its flush floor (items below it
    /// may still be in memory): the id is about to name another namespace.
    pub fn reset_stats(&mut self, ns: NsId) {
        self.entry_mut(ns).stats = NsStats::default();
    }

    /// Every namespace's counters (for flush_all).
    pub fn for_each(&mut self, mut f: impl FnMut(&mut NsStats)) {
        self.dense.iter_mut().for_each(|e| f(&mut e.stats));
        self.sparse.values_mut().for_each(|e| f(&mut e.stats));
    }

    /// Namespace ids with an entry (the tables beside this one, indexed
    /// alike, hold as many).
    pub fn slots(&self) -> usize {
        self.dense.len() + self.sparse.len()
    }

    /// Bytes held; grows only with the namespaces seen.
    pub fn memory_bytes(&self) -> usize {
        let entry = std::mem::size_of::<Entry>();
        self.dense.capacity() * entry + self.sparse.capacity() * (entry + 8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dense_and_sparse_ids() {
        let mut t = NsTable::default();
        t.get_mut(3).curr_items = 5;
        t.get_mut(1 << 20).curr_items = 7;
        assert_eq!(t.get(3).curr_items, 5);
        assert_eq!(t.get(1 << 20).curr_items, 7);
        assert_eq!(t.get(2), NsStats::default());
        assert_eq!(t.get(99_999_999), NsStats::default());
        let mut n = 0;
        t.for_each(|s| n += s.curr_items);
        assert_eq!(n, 12);
        assert_eq!(t.floor(3), Floor::default());
        let f = Floor {
            segment: 99,
            large: 100,
        };
        t.set_floor(3, f);
        t.set_floor(1 << 20, f);
        assert_eq!((t.floor(3), t.floor(1 << 20)), (f, f));
        assert_eq!(t.floor(4), Floor::default());
        assert_eq!(t.get(3).curr_items, 5);
        t.reset_stats(3);
        assert_eq!((t.get(3), t.floor(3)), (NsStats::default(), f));
    }
}
