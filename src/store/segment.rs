//! Segments: the fixed-size arenas items are appended into.
//!
//! Owns segment memory, each segment's bookkeeping (write offset, live
//! counts, expiry range, cas base) and the two FIFOs of sealed segments,
//! oldest first: `SMALL` for items as first written, `MAIN` for items that
//! eviction kept (see `eviction`). It never interprets items beyond what `layout` offers and never
//! touches the index: the store decides what lives and dies.
//!
//! Memory is allocated a segment at a time, only when needed, and freed
//! segments stay allocated for reuse (the pool reports what it holds, so
//! the store can give segments back when large items need the bytes).

/// "No segment" in the FIFO links.
pub(crate) const NONE: u32 = u32::MAX;

/// The FIFO new items enter.
pub(crate) const SMALL: usize = 0;
/// The FIFO of items that were used while in `SMALL` (or since).
pub(crate) const MAIN: usize = 1;

/// Where a segment is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    /// In the free list (allocated or not).
    Free,
    /// Currently taking appends.
    Head,
    /// Full (or finished) and linked into the FIFO.
    Sealed,
    /// Kept empty as the destination of the next eviction merge.
    Spare,
    /// Taken out of the FIFO by an eviction merge in progress; items
    /// leaving it do not free it.
    Evicting,
    /// Taking the items eviction keeps, until full (then sealed into main).
    MainHead,
}

pub(crate) struct Segment {
    /// Empty while the segment holds no memory.
    pub data: Box<[u8]>,
    pub state: State,
    /// Next append goes here.
    pub write: u32,
    pub live_items: u32,
    /// Bytes of live items (headers included).
    pub live_bytes: u32,
    /// Smallest nonzero exptime written here (u32::MAX if none): the sweep
    /// skips the segment while `now` is below it.
    pub min_exp: u32,
    /// Largest exptime written here, u32::MAX if some item never expires:
    /// once `now` passes it the whole segment is dead.
    pub max_exp: u32,
    /// cas of an item written here = cas_base + offset.
    pub cas_base: u64,
    /// Bumped each time the segment is opened or freed, so a position kept
    /// across calls (the sweep's cursor) can tell that the bytes it pointed
    /// into are gone: a reused segment holds other items, at other offsets.
    pub gen: u32,
    pub prev: u32,
    pub next: u32,
    /// Which FIFO it is (or will be) sealed into.
    pub queue: usize,
}

impl Segment {
    fn empty() -> Segment {
        Segment {
            data: Box::default(),
            state: State::Free,
            write: 0,
            live_items: 0,
            live_bytes: 0,
            min_exp: u32::MAX,
            max_exp: 0,
            cas_base: 0,
            gen: 0,
            prev: NONE,
            next: NONE,
            queue: SMALL,
        }
    }

    /// Note an item with `exptime` written or touched here.
    #[inline]
    pub fn note_exptime(&mut self, exptime: u32) {
        if exptime == 0 {
            self.max_exp = u32::MAX;
        } else {
            self.min_exp = self.min_exp.min(exptime);
            self.max_exp = self.max_exp.max(exptime);
        }
    }
}

pub(crate) struct Segments {
    pub segs: Vec<Segment>,
    pub seg_size: usize,
    /// Free segments that still hold memory.
    free_alloc: Vec<u32>,
    /// Free segments without memory.
    free_bare: Vec<u32>,
    /// Segments holding memory, whatever their state.
    pub allocated: usize,
    /// Oldest and newest sealed segment of each FIFO.
    pub fifo_head: [u32; 2],
    pub fifo_tail: [u32; 2],
    /// Sealed segments in each FIFO.
    pub sealed: [usize; 2],
}

impl Segments {
    pub fn new(count: usize, seg_size: usize) -> Segments {
        Segments {
            segs: (0..count).map(|_| Segment::empty()).collect(),
            seg_size,
            free_alloc: Vec::with_capacity(count),
            free_bare: (0..count as u32).rev().collect(),
            allocated: 0,
            fifo_head: [NONE; 2],
            fifo_tail: [NONE; 2],
            sealed: [0; 2],
        }
    }

    /// Bytes of segment memory held.
    pub fn memory_bytes(&self) -> usize {
        self.allocated * self.seg_size
    }

    /// Bytes of bookkeeping, fixed at construction.
    pub fn overhead_bytes(&self) -> usize {
        self.segs.capacity() * std::mem::size_of::<Segment>()
            + (self.free_alloc.capacity() + self.free_bare.capacity()) * 4
    }

    /// A free segment that already holds memory.
    pub fn take_allocated(&mut self) -> Option<u32> {
        self.free_alloc.pop()
    }

    /// A free segment given fresh memory; the caller checked the budget.
    pub fn take_new(&mut self) -> Option<u32> {
        let id = self.free_bare.pop()?;
        self.segs[id as usize].data = vec![0u8; self.seg_size].into_boxed_slice();
        self.allocated += 1;
        Some(id)
    }

    /// Give one free segment's memory back; false if none is idle.
    pub fn release_one(&mut self) -> bool {
        let Some(id) = self.free_alloc.pop() else {
            return false;
        };
        self.segs[id as usize].data = Box::default();
        self.allocated -= 1;
        self.free_bare.push(id);
        true
    }

    /// Prepare `id` (just taken) to receive appends.
    pub fn open(&mut self, id: u32, state: State, cas_base: u64) {
        let s = &mut self.segs[id as usize];
        s.state = state;
        s.write = 0;
        s.live_items = 0;
        s.live_bytes = 0;
        s.min_exp = u32::MAX;
        s.max_exp = 0;
        s.cas_base = cas_base;
        s.gen = s.gen.wrapping_add(1);
        s.prev = NONE;
        s.next = NONE;
    }

    /// Link `id` as the newest sealed segment of FIFO `queue`.
    pub fn seal(&mut self, id: u32, queue: usize) {
        let tail = self.fifo_tail[queue];
        let s = &mut self.segs[id as usize];
        s.state = State::Sealed;
        s.queue = queue;
        s.prev = tail;
        s.next = NONE;
        if tail == NONE {
            self.fifo_head[queue] = id;
        } else {
            self.segs[tail as usize].next = id;
        }
        self.fifo_tail[queue] = id;
        self.sealed[queue] += 1;
    }

    /// Unlink a sealed segment from its FIFO (state is left to the caller).
    fn unlink(&mut self, id: u32) {
        let (prev, next, q) = {
            let s = &self.segs[id as usize];
            (s.prev, s.next, s.queue)
        };
        if prev == NONE {
            self.fifo_head[q] = next;
        } else {
            self.segs[prev as usize].next = next;
        }
        if next == NONE {
            self.fifo_tail[q] = prev;
        } else {
            self.segs[next as usize].prev = prev;
        }
        self.sealed[q] -= 1;
    }

    /// Move a sealed segment to the newest end of its FIFO.
    pub fn requeue(&mut self, id: u32) {
        let queue = self.segs[id as usize].queue;
        self.unlink(id);
        self.seal(id, queue);
    }

    /// Take a sealed segment out of the FIFO for an eviction merge.
    pub fn detach(&mut self, id: u32) {
        self.unlink(id);
        self.segs[id as usize].state = State::Evicting;
    }

    /// Return a segment (in any state but Free) to the free list. The
    /// caller has already dropped its items from the index.
    pub fn free(&mut self, id: u32) {
        if self.segs[id as usize].state == State::Sealed {
            self.unlink(id);
        }
        let s = &mut self.segs[id as usize];
        s.state = State::Free;
        s.gen = s.gen.wrapping_add(1);
        s.write = 0;
        s.live_items = 0;
        s.live_bytes = 0;
        s.prev = NONE;
        s.next = NONE;
        self.free_alloc.push(id);
    }

    /// Up to `n` oldest sealed segments of `queue`, oldest first.
    pub fn oldest(&self, queue: usize, n: usize, out: &mut Vec<u32>) {
        out.clear();
        let mut id = self.fifo_head[queue];
        while id != NONE && out.len() < n {
            out.push(id);
            id = self.segs[id as usize].next;
        }
    }

    /// Every segment holding items: sealed ones (main, then small, oldest
    /// first), then the open ones given (NONE skipped). Used by flush.
    pub fn with_items(&self, heads: [u32; 2]) -> Vec<u32> {
        let mut out = Vec::with_capacity(self.sealed[MAIN] + self.sealed[SMALL] + 1);
        let mut part = Vec::new();
        for q in [MAIN, SMALL] {
            self.oldest(q, usize::MAX, &mut part);
            out.extend_from_slice(&part);
        }
        out.extend(heads.iter().filter(|&&h| h != NONE));
        out
    }

    /// Sealed segments in both FIFOs.
    #[cfg(test)]
    pub fn sealed_count(&self) -> usize {
        self.sealed[SMALL] + self.sealed[MAIN]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_order_and_unlink_from_the_middle() {
        let mut p = Segments::new(4, 1024);
        let ids: Vec<u32> = (0..4).map(|_| p.take_new().unwrap()).collect();
        assert!(p.take_new().is_none());
        for &id in &ids {
            p.open(id, State::Head, 0);
            p.seal(id, SMALL);
        }
        let mut out = Vec::new();
        p.oldest(SMALL, 10, &mut out);
        assert_eq!(out, ids);
        p.free(ids[1]);
        p.free(ids[3]);
        p.oldest(SMALL, 10, &mut out);
        assert_eq!(out, vec![ids[0], ids[2]]);
        assert_eq!(p.fifo_tail[SMALL], ids[2]);
        assert_eq!(p.sealed, [2, 0]);
        p.detach(ids[2]);
        p.seal(ids[2], MAIN);
        assert_eq!((p.fifo_head, p.sealed), ([ids[0], ids[2]], [1, 1]));
        assert_eq!(p.memory_bytes(), 4096);
        assert!(p.release_one());
        assert_eq!(p.memory_bytes(), 3072);
        assert!(p.take_new().is_some());
    }

    #[test]
    fn expiry_range() {
        let mut s = Segment::empty();
        s.write = 1;
        s.note_exptime(50);
        s.note_exptime(40);
        assert_eq!((s.min_exp, s.max_exp), (40, 50));
        s.note_exptime(0);
        assert_eq!((s.min_exp, s.max_exp), (40, u32::MAX));
    }
}
