//! Large items: those too big for a segment, one allocation each.
//!
//! Owns the table of large items and their FIFO (oldest first) for
//! eviction. It never decides when to evict and never touches the index;
//! the store charges each item's bytes against the same memory limit as the
//! segments, so a few huge items and many small ones share one budget.

use std::collections::VecDeque;

use super::NsId;

pub(crate) struct LargeItem {
    pub ns: NsId,
    pub home: u32,
    pub flags: u32,
    pub exptime: u32,
    /// The meta field, as a segment item's (see `layout`).
    pub meta: u32,
    pub cas: u64,
    /// When it entered (or re-entered) the FIFO, on the store's cas clock,
    /// so it can be compared with segment ages.
    pub stamp: u64,
    pub klen: usize,
    /// Key then value.
    pub data: Box<[u8]>,
}

impl LargeItem {
    pub fn key(&self) -> &[u8] {
        &self.data[..self.klen]
    }

    pub fn value(&self) -> &[u8] {
        &self.data[self.klen..]
    }

    /// Bytes this item holds against the limit.
    pub fn charge(&self) -> usize {
        self.data.len() + std::mem::size_of::<LargeItem>()
    }
}

pub(crate) struct LargeItems {
    slots: Vec<Option<LargeItem>>,
    free: Vec<u32>,
    /// (slot, stamp); entries whose stamp no longer matches are stale.
    fifo: VecDeque<(u32, u64)>,
    live: usize,
}

impl LargeItems {
    /// A table with room for `n` items up front (the most the limit allows),
    /// so it does not grow past its reported size.
    pub fn with_capacity(n: usize) -> LargeItems {
        LargeItems {
            slots: Vec::with_capacity(n),
            free: Vec::with_capacity(n),
            fifo: VecDeque::with_capacity(n),
            live: 0,
        }
    }

    pub fn get(&self, slot: u32) -> &LargeItem {
        self.slots[slot as usize].as_ref().expect("live large slot")
    }

    /// The item in `slot`, if there is one (for callers that cannot be
    /// sure: a broken invariant must not panic).
    pub fn try_get(&self, slot: u32) -> Option<&LargeItem> {
        self.slots.get(slot as usize)?.as_ref()
    }

    pub fn get_mut(&mut self, slot: u32) -> &mut LargeItem {
        self.slots[slot as usize].as_mut().expect("live large slot")
    }

    pub fn insert(&mut self, item: LargeItem) -> u32 {
        let stamp = item.stamp;
        let slot = match self.free.pop() {
            Some(s) => {
                self.slots[s as usize] = Some(item);
                s
            }
            None => {
                self.slots.push(Some(item));
                (self.slots.len() - 1) as u32
            }
        };
        self.fifo.push_back((slot, stamp));
        self.live += 1;
        slot
    }

    pub fn remove(&mut self, slot: u32) -> LargeItem {
        let item = self.slots[slot as usize].take().expect("live large slot");
        self.free.push(slot);
        self.live -= 1;
        // Deletes leave stale FIFO entries behind; drop them in bulk before
        // they outnumber the live ones.
        if self.fifo.len() > 2 * self.live + 16 {
            let slots = &self.slots;
            self.fifo
                .retain(|&(s, st)| matches!(&slots[s as usize], Some(it) if it.stamp == st));
        }
        item
    }

    /// Move `slot` to the young end of the FIFO with a new stamp.
    pub fn requeue(&mut self, slot: u32, stamp: u64) {
        self.get_mut(slot).stamp = stamp;
        self.fifo.push_back((slot, stamp));
    }

    /// The oldest live item: (slot, stamp).
    pub fn oldest(&mut self) -> Option<(u32, u64)> {
        while let Some(&(slot, stamp)) = self.fifo.front() {
            match &self.slots[slot as usize] {
                Some(it) if it.stamp == stamp => return Some((slot, stamp)),
                _ => {
                    self.fifo.pop_front();
                }
            }
        }
        None
    }

    /// (home, exptime) of the item in `slot`, if any: what the sweep needs.
    pub fn expiry_of(&self, slot: u32) -> Option<(u32, u32)> {
        self.slots
            .get(slot as usize)?
            .as_ref()
            .map(|it| (it.home, it.exptime))
    }

    /// Number of slots, live or free.
    pub fn slot_count(&self) -> usize {
        self.slots.len()
    }

    /// Slots of every live item.
    pub fn live_slots(&self) -> Vec<u32> {
        (0..self.slots.len() as u32)
            .filter(|&s| self.slots[s as usize].is_some())
            .collect()
    }
}
