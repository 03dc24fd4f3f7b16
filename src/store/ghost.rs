//! The ghost table: tags of keys recently evicted from the small FIFO
//! without a hit (S3-FIFO's ghost queue, as a direct-mapped table of tags).
//!
//! Owns the table and its slots. A key written again while its tag is here
//! starts with frequency 1 (see `eviction`). It never looks at items.

/// Ghost slots per primary index bucket (of the largest table).
const PER_BUCKET: usize = 4;

pub(super) struct Ghosts {
    tags: Vec<u16>,
}

impl Ghosts {
    /// A table for an index of at most `max_primary` primary buckets.
    pub fn new(max_primary: usize) -> Ghosts {
        let buckets = 1 << (usize::BITS - 1 - max_primary.leading_zeros());
        Ghosts {
            tags: vec![0u16; buckets * PER_BUCKET],
        }
    }

    /// Bytes the table holds (fixed at creation).
    pub fn bytes(&self) -> usize {
        self.tags.len() * 2
    }

    /// The slot of a key: its home folded onto the table (a power of two),
    /// then its tag.
    #[inline]
    fn slot(&self, home: u32, tag: u64) -> usize {
        let buckets = self.tags.len() / PER_BUCKET;
        (home as usize & (buckets - 1)) * PER_BUCKET + (tag as usize % PER_BUCKET)
    }

    /// Remember that the item with this home and tag left the small FIFO
    /// unused.
    pub fn add(&mut self, home: u32, tag: u64) {
        let slot = self.slot(home, tag);
        if let Some(g) = self.tags.get_mut(slot) {
            *g = tag as u16;
        }
    }

    /// Whether a key with this home and tag was recently evicted from
    /// small unused; forgets it either way.
    pub fn take(&mut self, home: u32, tag: u64) -> bool {
        let slot = self.slot(home, tag);
        match self.tags.get_mut(slot) {
            Some(g) if *g == tag as u16 && tag != 0 => {
                *g = 0;
                true
            }
            _ => false,
        }
    }
}
