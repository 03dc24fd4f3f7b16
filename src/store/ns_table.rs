//! Per-namespace counters, so a tenant's `stats` shows only its own items.
//!
//! Owns the table from namespace id to `NsStats`. It never sees items:
//! the store tells it what changed. Interned ids are small and dense, so
//! ids below `DENSE_MAX` index a vector (no hashing on the set path);
//! larger ids fall back to a map.

use std::collections::HashMap;

use super::{NsId, NsStats};

/// Ids below this use the vector: 64 Ki namespaces cost at most 2 MiB.
const DENSE_MAX: NsId = 1 << 16;

#[derive(Default)]
pub(crate) struct NsTable {
    dense: Vec<NsStats>,
    sparse: HashMap<NsId, NsStats, ahash::RandomState>,
}

impl NsTable {
    #[inline]
    pub fn get_mut(&mut self, ns: NsId) -> &mut NsStats {
        if ns < DENSE_MAX {
            let i = ns as usize;
            if i >= self.dense.len() {
                self.dense.resize(i + 1, NsStats::default());
            }
            &mut self.dense[i]
        } else {
            self.sparse.entry(ns).or_default()
        }
    }

    pub fn get(&self, ns: NsId) -> NsStats {
        if ns < DENSE_MAX {
            self.dense.get(ns as usize).copied().unwrap_or_default()
        } else {
            self.sparse.get(&ns).copied().unwrap_or_default()
        }
    }

    /// Every namespace's counters (for flush_all).
    pub fn for_each(&mut self, mut f: impl FnMut(&mut NsStats)) {
        self.dense.iter_mut().for_each(&mut f);
        self.sparse.values_mut().for_each(f);
    }

    /// Bytes held; grows only with the namespaces seen.
    pub fn memory_bytes(&self) -> usize {
        let entry = std::mem::size_of::<NsStats>();
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
    }
}
