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
//! The table grows with the items it holds, by linear hashing (Litwin,
//! VLDB '80, "Linear hashing: a new tool for file and table addressing"):
//! when the entries pass six per primary bucket (86% of the slots), one
//! bucket splits, its entries shared between it and a new bucket at the end
//! of the table. So the index costs about 13-14 bytes per item at any item
//! count (bulk chaining keeps the overflow small), it never stops the shard
//! to rehash everything, and the memory it touches grows one bucket at a
//! time: the table is reserved at its largest size up front, zeroed by the
//! OS lazily, and buckets past the split point are never written.
//!
//! A key's address is its "home", 24 bits of its hash, masked: bucket =
//! home mod 2^level, or mod 2^(level+1) for buckets already split this
//! round. Items keep their home in their header (see `layout`), so eviction,
//! the sweep and a split find an item's entry without the key's hash.
//!
//! The largest size is sized from the memory limit: at most one primary
//! bucket per 784 bytes of limit, and a third as many overflow buckets
//! again. Past that the table stops splitting; when a chain is full and
//! the pool is empty, `insert` refuses and the store evicts an item of that
//! chain, so the index never holds more than about 11% of the limit.
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
/// Bits of a key's home: its bucket at the largest table.
pub(crate) const HOME_BITS: u32 = 24;
/// The most primary buckets a table may have: one per home.
pub(crate) const MAX_BUCKETS: usize = 1 << HOME_BITS;
/// A new table's primary buckets (or fewer, if the limit allows fewer).
const FIRST_BUCKETS: usize = 256;
/// Split a bucket when the entries pass this many per primary bucket.
const SPLIT_LOAD: usize = 6;

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

/// A key's home: 24 bits of its hash, from which its bucket is found at
/// every table size. The low 32 bits are first mixed (murmur3's finalizer,
/// a bijection) so that every bit of them reaches the low bits the table
/// masks: a hash whose low bits vary only at the top still spreads. The
/// tag comes from bits 32..48, which this never reads.
#[inline]
pub(crate) fn home_of(hash: u64) -> u32 {
    let mut x = hash as u32;
    x ^= x >> 16;
    x = x.wrapping_mul(0x85eb_ca6b);
    x ^= x >> 13;
    x = x.wrapping_mul(0xc2b2_ae35);
    x ^= x >> 16;
    x & ((1 << HOME_BITS) - 1)
}

/// Asks the CPU to start loading the cache line at `p` (a hint: no effect
/// on what the program computes).
#[inline]
pub(crate) fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch never faults, whatever the address; `p` points
    // into a live allocation anyway.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// A slot in the table: bucket * 8 + slot.
pub(crate) type Pos = usize;

pub(crate) struct Index {
    /// Room for the largest table's primary buckets, then the overflow
    /// pool. Allocated zeroed and touched only as it is used.
    table: Vec<[u64; SLOTS]>,
    /// The largest number of primary buckets.
    max_primary: usize,
    /// Primary buckets at the start of this round of splits: 2^level.
    base: usize,
    /// The next bucket to split; buckets below it are split this round.
    split: usize,
    /// Entries held.
    items: usize,
    /// Overflow buckets never used yet start here.
    fresh_overflow: usize,
    /// Overflow buckets used and given back.
    free_overflow: Vec<u32>,
    /// A split's entries, between taking them out and putting them back.
    moving: Vec<u64>,
}

impl Index {
    /// A table for a store of `limit` bytes: up to one primary slot per
    /// 112 bytes of limit (items of ~100 bytes fill it), and an overflow
    /// pool of a third as many buckets again for uneven chains. Stores of
    /// smaller items are bounded by the index rather than by memory: a full
    /// chain evicts within itself.
    pub fn for_limit(limit: usize) -> Index {
        let max_primary = (limit / (112 * ITEM_SLOTS)).clamp(16, MAX_BUCKETS);
        let overflow = max_primary / 3;
        Index {
            table: vec![[0u64; SLOTS]; max_primary + overflow],
            max_primary,
            base: first_base(max_primary),
            split: 0,
            items: 0,
            fresh_overflow: max_primary,
            free_overflow: Vec::new(),
            moving: Vec::new(),
        }
    }

    /// Bytes this index may hold: fixed at construction, a bound on what it
    /// touches as it grows.
    pub fn memory_bytes(&self) -> usize {
        self.table.capacity() * std::mem::size_of::<[u64; SLOTS]>()
            + (self.table.len() - self.max_primary) * 4
    }

    /// Bytes of the table in use now: primary buckets, and overflow buckets
    /// up to the highest ever taken (for the bytes-per-item figure).
    pub fn touched_bytes(&self) -> usize {
        (self.primary() + self.fresh_overflow - self.max_primary)
            * std::mem::size_of::<[u64; SLOTS]>()
    }

    /// The most primary buckets the table may grow to.
    pub fn max_primary(&self) -> usize {
        self.max_primary
    }

    /// Primary buckets in use now.
    pub fn primary(&self) -> usize {
        self.base + self.split
    }

    /// The bucket holding the chain for `home`.
    #[inline]
    fn bucket(&self, home: u32) -> usize {
        let b = home as usize & (self.base - 1);
        if b < self.split {
            home as usize & (2 * self.base - 1)
        } else {
            b
        }
    }

    #[inline]
    pub fn get(&self, pos: Pos) -> u64 {
        self.table[pos / SLOTS][pos % SLOTS]
    }

    #[inline]
    pub fn put(&mut self, pos: Pos, e: u64) {
        self.table[pos / SLOTS][pos % SLOTS] = e;
    }

    /// The first entry in `home`'s chain with `tag` for which `is_it` says
    /// yes.
    #[inline]
    pub fn find(&self, home: u32, tag: u64, mut is_it: impl FnMut(u64) -> bool) -> Option<Pos> {
        let mut b = self.bucket(home);
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

    /// Hints that `home`'s bucket will be read soon.
    #[inline]
    pub fn prefetch(&self, home: u32) {
        prefetch(self.table[self.bucket(home)].as_ptr().cast());
    }

    /// The entry in `home`'s chain that points at `loc`.
    pub fn find_loc(&self, home: u32, loc: u64) -> Option<Pos> {
        let mut b = self.bucket(home);
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

    /// Put `e` in a free slot of `home`'s chain, taking an overflow bucket
    /// if needed. `None` when the chain is full and the pool empty.
    ///
    /// The position is good until the next `split`: callers that insert
    /// call `split` while `wants_split` says so, and look entries up again
    /// afterwards.
    pub fn insert(&mut self, home: u32, e: u64) -> Option<Pos> {
        let pos = self.insert_at(self.bucket(home), e)?;
        self.items += 1;
        Some(pos)
    }

    fn insert_at(&mut self, bucket: usize, e: u64) -> Option<Pos> {
        let mut b = bucket;
        while self.table[b][ITEM_SLOTS] != 0 {
            b = self.table[b][ITEM_SLOTS] as usize;
        }
        if let Some(i) = self.table[b][..ITEM_SLOTS].iter().position(|&s| s == 0) {
            self.table[b][i] = e;
            return Some(b * SLOTS + i);
        }
        let fresh = self.take_overflow()?;
        self.table[fresh] = [0; SLOTS];
        self.table[fresh][0] = e;
        self.table[b][ITEM_SLOTS] = fresh as u64;
        Some(fresh * SLOTS)
    }

    /// An overflow bucket: one given back, else the lowest never used, so
    /// the memory touched stays compact.
    fn take_overflow(&mut self) -> Option<usize> {
        if let Some(b) = self.free_overflow.pop() {
            return Some(b as usize);
        }
        (self.fresh_overflow < self.table.len()).then(|| {
            self.fresh_overflow += 1;
            self.fresh_overflow - 1
        })
    }

    /// Whether the table should split a bucket: it holds more than
    /// `SPLIT_LOAD` entries per primary bucket and may still grow.
    #[inline]
    pub fn wants_split(&self) -> bool {
        self.items > SPLIT_LOAD * self.primary() && self.primary() < self.max_primary
    }

    /// Split the next bucket: its entries stay or move to the new bucket at
    /// the end of the table by one more bit of their home, which
    /// `home_of_entry` reads from the item. Moves entries, so positions
    /// found before it are stale.
    ///
    /// An entry whose item cannot be read (`None`) or whose home is neither
    /// bucket (broken invariants both) stays in the old bucket; one that
    /// finds no room is dropped. Returns how many met either, for the
    /// caller to count: a split never panics.
    pub fn split(&mut self, mut home_of_entry: impl FnMut(u64) -> Option<u32>) -> usize {
        let (from, to) = (self.split, self.base + self.split);
        let mut moving = std::mem::take(&mut self.moving);
        moving.clear();
        let mut b = from;
        loop {
            moving.extend(
                self.table[b][..ITEM_SLOTS]
                    .iter()
                    .copied()
                    .filter(|&e| e != 0),
            );
            let next = self.table[b][ITEM_SLOTS] as usize;
            if b != from {
                self.free_overflow.push(b as u32);
            }
            if next == 0 {
                break;
            }
            b = next;
        }
        self.table[from] = [0; SLOTS];
        self.table[to] = [0; SLOTS];
        self.split += 1;
        if self.split == self.base {
            self.base *= 2;
            self.split = 0;
        }
        let mut lost = 0;
        for &e in &moving {
            let b = match home_of_entry(e).map(|home| self.bucket(home)) {
                Some(b) if b == from || b == to => b,
                _ => {
                    lost += 1;
                    from
                }
            };
            // The two chains need at most one bucket more than the one
            // chain had, and the new primary bucket is that one.
            if self.insert_at(b, e).is_none() {
                lost += 1;
                self.items -= 1;
            }
        }
        self.moving = moving;
        lost
    }

    /// The entry of `home`'s chain eviction should drop to make a slot:
    /// of those `rank` allows (the store's rules: whose items it may take),
    /// the lowest ranked, then the least frequently used, preferring
    /// never-fetched ones. `None` if it allows none.
    pub fn chain_victim(&self, home: u32, mut rank: impl FnMut(u64) -> Option<u8>) -> Option<Pos> {
        let mut b = self.bucket(home);
        let mut best: Option<(u64, Pos)> = None;
        loop {
            for (i, &e) in self.table[b][..ITEM_SLOTS].iter().enumerate() {
                if e & VALID == 0 {
                    continue;
                }
                let Some(class) = rank(e) else { continue };
                // freq * 2 + fetched is below 8.
                let score = u64::from(class) * 8 + freq(e) * 2 + u64::from(e & FETCHED != 0);
                if best.is_none_or(|(s, _)| score < s) {
                    best = Some((score, b * SLOTS + i));
                }
            }
            match self.table[b][ITEM_SLOTS] {
                0 => return best.map(|(_, pos)| pos),
                next => b = next as usize,
            }
        }
    }

    /// Remove every entry `doomed` picks, wherever it is filed; returns how
    /// many. It walks the whole table: only for recovering from a broken
    /// invariant, when entries cannot be found from their items.
    pub fn purge(&mut self, mut doomed: impl FnMut(u64) -> bool) -> usize {
        let mut removed = 0;
        for first in 0..self.primary() {
            'chain: loop {
                let mut b = first;
                loop {
                    let hit = self.table[b][..ITEM_SLOTS]
                        .iter()
                        .position(|&e| e != 0 && doomed(e));
                    if let Some(i) = hit {
                        // Removing repacks the chain: walk it again.
                        self.remove_in(first, b * SLOTS + i);
                        removed += 1;
                        continue 'chain;
                    }
                    match self.table[b][ITEM_SLOTS] {
                        0 => break 'chain,
                        next => b = next as usize,
                    }
                }
            }
        }
        removed
    }

    /// Clear the slot at `pos` (in `home`'s chain), keeping the chain
    /// packed: its last entry moves into the hole, and an overflow bucket
    /// left empty goes back to the pool. Packed chains use the fewest
    /// overflow buckets and let lookups stop at the first empty slot.
    /// Positions of other entries in the chain may change.
    pub fn remove(&mut self, home: u32, pos: Pos) {
        self.remove_in(self.bucket(home), pos);
    }

    /// `remove`, for the chain that starts at primary bucket `bucket`.
    fn remove_in(&mut self, bucket: usize, pos: Pos) {
        let (mut prev, mut last) = (usize::MAX, bucket);
        while self.table[last][ITEM_SLOTS] != 0 {
            prev = last;
            last = self.table[last][ITEM_SLOTS] as usize;
        }
        let n = self.table[last][..ITEM_SLOTS]
            .iter()
            .position(|&s| s == 0)
            .unwrap_or(ITEM_SLOTS);
        debug_assert!(n > 0 || last == bucket);
        let tail = last * SLOTS + n - 1;
        self.table[pos / SLOTS][pos % SLOTS] = self.table[last][n - 1];
        self.table[last][n - 1] = 0;
        debug_assert!(tail == pos || self.table[pos / SLOTS][pos % SLOTS] != 0);
        if n == 1 && prev != usize::MAX {
            self.table[prev][ITEM_SLOTS] = 0;
            self.free_overflow.push(last as u32);
        }
        self.items -= 1;
    }

    /// Forget every entry, and go back to the first size.
    pub fn clear(&mut self) {
        // A fresh zeroed allocation costs the OS's lazy zero pages, not a
        // pass over the whole table, and gives back the memory touched.
        self.table = vec![[0u64; SLOTS]; self.table.len()];
        self.base = first_base(self.max_primary);
        self.split = 0;
        self.items = 0;
        self.fresh_overflow = self.max_primary;
        self.free_overflow = Vec::new();
    }

    /// Slots able to hold an entry (for the bytes-per-item figure).
    #[cfg(test)]
    pub fn capacity(&self) -> usize {
        self.table.len() * ITEM_SLOTS
    }

    /// Overflow buckets not in use.
    #[cfg(test)]
    fn pool_left(&self) -> usize {
        self.free_overflow.len() + self.table.len() - self.fresh_overflow
    }
}

/// The first round's primary buckets: a power of two, at most the largest
/// table's.
fn first_base(max_primary: usize) -> usize {
    FIRST_BUCKETS.min(1 << (usize::BITS - 1 - max_primary.leading_zeros()))
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
        let pool = ix.pool_left();
        let mut at = Vec::new();
        for i in 0..20u64 {
            let e = make_entry(i, seg_loc(1, i as u32));
            at.push(ix.insert(3, e).unwrap());
        }
        assert_eq!(ix.pool_left(), pool - 2);
        for i in 0..20u64 {
            assert_eq!(ix.find(3, i, |_| true), Some(at[i as usize]));
            assert_eq!(ix.find_loc(3, seg_loc(1, i as u32)), Some(at[i as usize]));
        }
        for (i, pos) in at.iter().enumerate().rev() {
            ix.remove(3, *pos);
            assert_eq!(ix.find(3, i as u64, |_| true), None);
        }
        assert_eq!(ix.pool_left(), pool);
    }

    #[test]
    fn insert_refuses_when_the_pool_is_spent() {
        let mut ix = Index::for_limit(0);
        let mut n = 0;
        while ix.insert(0, make_entry(1, seg_loc(0, n))).is_some() {
            n += 1;
        }
        assert_eq!(
            n as usize,
            ITEM_SLOTS * (1 + ix.table.len() - ix.max_primary)
        );
        let v = ix.chain_victim(0, |_| Some(0)).expect("a victim");
        ix.remove(0, v);
        assert!(ix.insert(0, make_entry(1, seg_loc(0, 0))).is_some());
    }

    #[test]
    fn chain_victims_follow_the_rank_before_the_frequency() {
        let mut ix = Index::for_limit(0);
        let mut at = Vec::new();
        for n in 0..5u32 {
            at.push(ix.insert(0, make_entry(1, seg_loc(0, n))).expect("room"));
        }
        // Entry 1 is never fetched, 2 fetched twice, the others once; the
        // rank allows 2, 3 and 4.
        for (i, &pos) in at.iter().enumerate() {
            if i != 1 {
                ix.put(pos, hit(ix.get(pos)));
            }
        }
        ix.put(at[2], hit(ix.get(at[2])));
        let offset = |e: u64| split_seg_loc(e & LOC_MASK).1;
        let allowed = |e: u64| (offset(e) >= 2).then_some(0);
        let v = ix.chain_victim(0, allowed).expect("a victim");
        assert!([at[3], at[4]].contains(&v), "the coldest allowed");
        // A lower rank wins over a colder entry.
        let v = ix.chain_victim(0, |e| Some(u8::from(offset(e) != 2)));
        assert_eq!(v, Some(at[2]));
        assert_eq!(ix.chain_victim(0, |_| None), None);
    }

    /// Homes spread as a real hash would, and each entry's location the
    /// home itself, so `split` can read it back without items.
    fn grow_to(ix: &mut Index, n: u32) -> Vec<(u32, u64)> {
        let mut all = Vec::new();
        for i in 0..n {
            let home = home_of(u64::from(i).wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let e = make_entry(u64::from(i) & 0xffff, seg_loc(home >> 4, home & 0xf));
            ix.insert(home, e).expect("room");
            while ix.wants_split() {
                let lost = ix.split(|e| {
                    let (seg, off) = split_seg_loc(e & LOC_MASK);
                    Some((seg << 4) | off)
                });
                assert_eq!(lost, 0);
            }
            all.push((home, e & LOC_MASK));
        }
        all
    }

    #[test]
    fn a_split_that_cannot_place_an_entry_keeps_it_and_says_so() {
        let mut ix = Index::for_limit(1 << 30);
        let mut entries = Vec::new();
        let mut i = 0u32;
        while !ix.wants_split() {
            // All in bucket 0's chain (the first to split).
            let e = make_entry(u64::from(i % 0xffff) + 1, seg_loc(i, 0));
            ix.insert(0, e).expect("room");
            entries.push(e);
            i += 1;
        }
        // Unreadable items, and a home in some other bucket: none panics,
        // each is counted, and each stays findable where it was.
        let lost = ix.split(|e| {
            let (seg, _) = split_seg_loc(e & LOC_MASK);
            match seg % 3 {
                0 => None,
                1 => Some(0x00ab_cdef),
                _ => Some(0),
            }
        });
        assert_eq!(
            lost,
            entries
                .iter()
                .filter(|&&e| split_seg_loc(e & LOC_MASK).0 % 3 != 2)
                .count()
        );
        for e in entries {
            assert!(ix.find_loc(0, e & LOC_MASK).is_some());
        }
    }

    #[test]
    fn splits_keep_every_entry_findable_and_grow_with_the_items() {
        let mut ix = Index::for_limit(1 << 30);
        assert_eq!(ix.primary(), FIRST_BUCKETS);
        let all = grow_to(&mut ix, 200_000);
        for &(home, loc) in &all {
            assert!(ix.find_loc(home, loc).is_some(), "{home:#x} lost");
        }
        // Six entries per primary bucket, a split at a time.
        assert_eq!(ix.primary(), 200_000 / SPLIT_LOAD + 1);
        let per_item = ix.touched_bytes() as f64 / 200_000.0;
        assert!(per_item < 15.0, "{per_item:.1} B/item");
        assert!(ix.touched_bytes() < ix.memory_bytes() / 10);
        // Removing everything empties every chain and the pool comes back.
        for &(home, loc) in &all {
            let pos = ix.find_loc(home, loc).unwrap();
            ix.remove(home, pos);
        }
        assert_eq!(ix.items, 0);
        assert_eq!(ix.pool_left(), ix.table.len() - ix.max_primary);
        ix.clear();
        assert_eq!(ix.primary(), FIRST_BUCKETS);
    }

    #[test]
    fn the_table_stops_growing_at_its_largest_size() {
        let mut ix = Index::for_limit(2 << 20);
        let n = ix.max_primary * 31 / 5;
        let all = grow_to(&mut ix, n as u32);
        assert_eq!(ix.primary(), ix.max_primary);
        assert!(!ix.wants_split());
        for &(home, loc) in &all {
            assert!(ix.find_loc(home, loc).is_some());
        }
    }

    #[test]
    fn homes_spread_low_bits_from_any_part_of_the_low_word() {
        // Hashes differing only in their top low-word bits still land in
        // different small buckets.
        let buckets: std::collections::HashSet<u32> =
            (0..64u64).map(|i| home_of(i << 26) & 0xff).collect();
        assert!(buckets.len() > 40, "{}", buckets.len());
        assert_eq!(home_of(0x1234_5678_0000_0000), 0);
    }
}
