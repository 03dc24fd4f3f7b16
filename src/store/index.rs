//! The hash index: key hash to item location, 8 bytes per entry.
//!
//! Owns the bucket array and the entries' bit layout (tag, frequency,
//! fetched bit, location). It never reads item bytes: the caller confirms a
//! tag match by comparing the key where the entry points.
//!
//! The layout follows Segcache (Yang et al., NSDI '21, "Segcache: a
//! memory-efficient and scalable in-memory key-value cache for small
//! objects"): bulk-chained buckets of eight 8-byte slots, one cache line
//! each. Slot 7 of a bucket links to an overflow bucket (0 = none); a key's
//! bucket comes from the low 32 bits of its hash and a 16-bit tag from bits
//! 32..48, so most misses never touch item memory.
//!
//! The table is allocated once, sized from the memory limit, and never
//! grows: primary buckets plus a fixed pool of overflow buckets. When a
//! chain is full and the pool is empty, `insert` refuses and the store
//! evicts an item of that chain; memory never grows with the key count.
//!
//! ```text
//! entry u64: valid:1 | tag:16 | freq:2 | fetched:1 | large:1 | seg:23 | offset:20
//!            63        62..47   46..45   44          43        42..20   19..0
//! ```
//! For a large item the low 43 bits are its slot in the large-item table.

pub(crate) const VALID: u64 = 1 << 63;
const TAG_SHIFT: u32 = 47;
const FREQ_SHIFT: u32 = 45;
pub(crate) const FREQ_MAX: u64 = 3;
pub(crate) const FREQ_MASK: u64 = FREQ_MAX << FREQ_SHIFT;
pub(crate) const FETCHED: u64 = 1 << 44;
pub(crate) const LARGE: u64 = 1 << 43;
/// The location part: the large bit, segment and offset (or large slot).
pub(crate) const LOC_MASK: u64 = (1 << 44) - 1;
const SEG_SHIFT: u32 = 20;
pub(crate) const OFFSET_BITS: u32 = 20;
pub(crate) const MAX_SEGMENTS: usize = 1 << 23;
/// Buckets are numbered in 24 bits in item headers.
pub(crate) const MAX_BUCKETS: usize = 1 << 24;

const SLOTS: usize = 8;
/// Slot 7 holds the chain link, so a bucket carries 7 entries.
const ITEM_SLOTS: usize = SLOTS - 1;

/// Location of a segment item.
#[inline]
pub(crate) fn seg_loc(seg: u32, offset: u32) -> u64 {
    (u64::from(seg) << SEG_SHIFT) | u64::from(offset)
}

/// Location of a large item.
#[inline]
pub(crate) fn large_loc(slot: u32) -> u64 {
    LARGE | u64::from(slot)
}

/// Split a segment location into (segment, offset).
#[inline]
pub(crate) fn split_seg_loc(loc: u64) -> (u32, u32) {
    (
        ((loc & (LARGE - 1)) >> SEG_SHIFT) as u32,
        (loc & ((1 << OFFSET_BITS) - 1)) as u32,
    )
}

#[inline]
pub(crate) fn tag_of(hash: u64) -> u64 {
    (hash >> 32) & 0xffff
}

#[inline]
pub(crate) fn make_entry(tag: u64, loc: u64) -> u64 {
    VALID | (tag << TAG_SHIFT) | loc
}

#[inline]
pub(crate) fn entry_tag(e: u64) -> u64 {
    (e >> TAG_SHIFT) & 0xffff
}

#[inline]
pub(crate) fn freq(e: u64) -> u64 {
    (e & FREQ_MASK) >> FREQ_SHIFT
}

#[inline]
pub(crate) fn with_freq(e: u64, f: u64) -> u64 {
    (e & !FREQ_MASK) | (f.min(FREQ_MAX) << FREQ_SHIFT)
}

/// The entry after a hit: fetched, frequency one higher (saturating).
#[inline]
pub(crate) fn hit(e: u64) -> u64 {
    with_freq(e, freq(e) + 1) | FETCHED
}

/// A slot in the table: bucket * 8 + slot.
pub(crate) type Pos = usize;

pub(crate) struct Index {
    /// Primary buckets first, then the overflow pool.
    table: Vec<[u64; SLOTS]>,
    primary: usize,
    pub(crate) free_overflow: Vec<u32>,
}

impl Index {
    /// A table for a store of `limit` bytes: one primary slot per 112
    /// bytes of limit (items of ~100 bytes fill it), and an overflow pool
    /// of a third as many buckets again for uneven chains. Stores of smaller
    /// items are bounded by the index rather than by memory: a full chain
    /// evicts within itself.
    pub fn for_limit(limit: usize) -> Index {
        let primary = (limit / (112 * ITEM_SLOTS)).clamp(16, MAX_BUCKETS);
        let overflow = primary / 3;
        let mut index = Index {
            table: vec![[0u64; SLOTS]; primary + overflow],
            primary,
            free_overflow: Vec::with_capacity(overflow),
        };
        index.reset_pool();
        index
    }

    fn reset_pool(&mut self) {
        self.free_overflow.clear();
        // Pop order low to high keeps touched memory compact.
        self.free_overflow
            .extend((self.primary..self.table.len()).rev().map(|b| b as u32));
    }

    /// Bytes this index holds, fixed at construction.
    pub fn memory_bytes(&self) -> usize {
        self.table.capacity() * std::mem::size_of::<[u64; SLOTS]>()
            + self.free_overflow.capacity() * 4
    }

    /// The bucket for a hash: its low 32 bits scaled onto the bucket count
    /// (Lemire's multiply-shift), so the table need not be a power of two.
    /// The scaling reads the top of those 32 bits, so they are first
    /// multiplied by an odd constant to carry the lowest bits up: a hash
    /// whose low bits vary only at the bottom (FNV on similar keys) still
    /// spreads. A bijection on the 32 bits, not a rehash of the key.
    #[inline]
    pub fn bucket_of(&self, hash: u64) -> u32 {
        let low = u64::from((hash as u32).wrapping_mul(0x9e37_79b1));
        ((low * self.primary as u64) >> 32) as u32
    }

    #[inline]
    pub fn get(&self, pos: Pos) -> u64 {
        self.table[pos / SLOTS][pos % SLOTS]
    }

    #[inline]
    pub fn put(&mut self, pos: Pos, e: u64) {
        self.table[pos / SLOTS][pos % SLOTS] = e;
    }

    /// The first entry in `bucket`'s chain with `tag` for which `is_it`
    /// says yes.
    #[inline]
    pub fn find(&self, bucket: u32, tag: u64, mut is_it: impl FnMut(u64) -> bool) -> Option<Pos> {
        let mut b = bucket as usize;
        loop {
            let slots = &self.table[b];
            for (i, &e) in slots[..ITEM_SLOTS].iter().enumerate() {
                if e == 0 {
                    // Chains are packed: nothing follows an empty slot.
                    return None;
                }
                if entry_tag(e) == tag && is_it(e) {
                    return Some(b * SLOTS + i);
                }
            }
            match slots[ITEM_SLOTS] {
                0 => return None,
                next => b = next as usize,
            }
        }
    }

    /// The entry in `bucket`'s chain that points at `loc`.
    pub fn find_loc(&self, bucket: u32, loc: u64) -> Option<Pos> {
        let mut b = bucket as usize;
        loop {
            let slots = &self.table[b];
            for (i, &e) in slots[..ITEM_SLOTS].iter().enumerate() {
                if e & VALID != 0 && e & LOC_MASK == loc {
                    return Some(b * SLOTS + i);
                }
            }
            match slots[ITEM_SLOTS] {
                0 => return None,
                next => b = next as usize,
            }
        }
    }

    /// Put `e` in a free slot of `bucket`'s chain, taking an overflow
    /// bucket if needed. `None` when the chain is full and the pool empty.
    pub fn insert(&mut self, bucket: u32, e: u64) -> Option<Pos> {
        let mut b = bucket as usize;
        while self.table[b][ITEM_SLOTS] != 0 {
            b = self.table[b][ITEM_SLOTS] as usize;
        }
        if let Some(i) = self.table[b][..ITEM_SLOTS].iter().position(|&s| s == 0) {
            self.table[b][i] = e;
            return Some(b * SLOTS + i);
        }
        let fresh = self.free_overflow.pop()? as usize;
        self.table[fresh] = [0; SLOTS];
        self.table[fresh][0] = e;
        self.table[b][ITEM_SLOTS] = fresh as u64;
        Some(fresh * SLOTS)
    }

    /// The entry of `bucket`'s chain eviction should drop to make a slot:
    /// the least frequently used, preferring never-fetched ones.
    pub fn chain_victim(&self, bucket: u32) -> Pos {
        let mut b = bucket as usize;
        let mut best = (u64::MAX, 0);
        loop {
            for (i, &e) in self.table[b][..ITEM_SLOTS].iter().enumerate() {
                let score = freq(e) * 2 + u64::from(e & FETCHED != 0);
                if e & VALID != 0 && score < best.0 {
                    best = (score, b * SLOTS + i);
                }
            }
            match self.table[b][ITEM_SLOTS] {
                0 => return best.1,
                next => b = next as usize,
            }
        }
    }

    /// Clear the slot at `pos` (in `bucket`'s chain), keeping the chain
    /// packed: its last entry moves into the hole, and an overflow bucket
    /// left empty goes back to the pool. Packed chains use the fewest
    /// overflow buckets and let lookups stop at the first empty slot.
    /// Positions of other entries in the chain may change.
    pub fn remove(&mut self, bucket: u32, pos: Pos) {
        let (mut prev, mut last) = (usize::MAX, bucket as usize);
        while self.table[last][ITEM_SLOTS] != 0 {
            prev = last;
            last = self.table[last][ITEM_SLOTS] as usize;
        }
        let n = self.table[last][..ITEM_SLOTS]
            .iter()
            .position(|&s| s == 0)
            .unwrap_or(ITEM_SLOTS);
        debug_assert!(n > 0 || last == bucket as usize);
        let tail = last * SLOTS + n - 1;
        self.table[pos / SLOTS][pos % SLOTS] = self.table[last][n - 1];
        self.table[last][n - 1] = 0;
        debug_assert!(tail == pos || self.table[pos / SLOTS][pos % SLOTS] != 0);
        if n == 1 && prev != usize::MAX {
            self.table[prev][ITEM_SLOTS] = 0;
            self.free_overflow.push(last as u32);
        }
    }

    /// Forget every entry.
    pub fn clear(&mut self) {
        // A fresh zeroed allocation costs the OS's lazy zero pages, not a
        // pass over the whole table.
        self.table = vec![[0u64; SLOTS]; self.table.len()];
        self.reset_pool();
    }

    pub fn primary(&self) -> usize {
        self.primary
    }

    /// Slots able to hold an entry (for the bytes-per-item figure).
    #[cfg(test)]
    pub fn capacity(&self) -> usize {
        self.table.len() * ITEM_SLOTS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_fields_do_not_overlap() {
        let loc = seg_loc(MAX_SEGMENTS as u32 - 1, (1 << OFFSET_BITS) - 1);
        let e = make_entry(0xffff, loc);
        assert_eq!(entry_tag(e), 0xffff);
        assert_eq!(e & LOC_MASK, loc);
        assert_eq!(
            split_seg_loc(loc),
            (MAX_SEGMENTS as u32 - 1, (1 << OFFSET_BITS) - 1)
        );
        assert_eq!(freq(e), 0);
        let e = hit(hit(hit(hit(e))));
        assert_eq!((freq(e), e & FETCHED != 0), (3, true));
        assert_eq!(e & LOC_MASK, loc);
        assert_eq!(entry_tag(e), 0xffff);
        assert_eq!(large_loc(5) & LARGE, LARGE);
    }

    #[test]
    fn chains_grow_into_the_pool_and_shrink_back() {
        let mut ix = Index::for_limit(1 << 20);
        let pool = ix.free_overflow.len();
        let mut at = Vec::new();
        for i in 0..20u64 {
            let e = make_entry(i, seg_loc(1, i as u32));
            at.push(ix.insert(3, e).unwrap());
        }
        assert_eq!(ix.free_overflow.len(), pool - 2);
        for i in 0..20u64 {
            assert_eq!(ix.find(3, i, |_| true), Some(at[i as usize]));
            assert_eq!(ix.find_loc(3, seg_loc(1, i as u32)), Some(at[i as usize]));
        }
        for (i, pos) in at.iter().enumerate().rev() {
            ix.remove(3, *pos);
            assert_eq!(ix.find(3, i as u64, |_| true), None);
        }
        assert_eq!(ix.free_overflow.len(), pool);
    }

    #[test]
    fn insert_refuses_when_the_pool_is_spent() {
        let mut ix = Index::for_limit(0);
        let mut n = 0;
        while ix.insert(0, make_entry(1, seg_loc(0, n))).is_some() {
            n += 1;
        }
        assert_eq!(n as usize, ITEM_SLOTS * (1 + ix.table.len() - ix.primary));
        let v = ix.chain_victim(0);
        ix.remove(0, v);
        assert!(ix.insert(0, make_entry(1, seg_loc(0, 0))).is_some());
    }
}
