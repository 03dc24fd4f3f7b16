//! The expiry sweep: reclaiming expired items before anyone asks for them.
//!
//! Owns the cursors that walk the segments (sealed ones oldest first, then
//! the open ones) and the large items across calls. It never evicts live items and never does more than
//! the caller's budget of work per call, so the shard can run it between
//! requests without a latency spike.
//!
//! A segment whose smallest exptime is still in the future is skipped
//! without reading it, and one whose items have all expired (its largest
//! exptime has passed) loses them all and goes back to the free list, so
//! segments of short-lived items are dropped whole, as Segcache does.

use super::layout;
use super::segment::{State, MAIN, NONE, SMALL};
use super::segmented::{is_live, item_home, Store, Why};

impl Store {
    /// Reclaim expired items, examining at most `budget` items (and
    /// skipping at most one pass over the segment table). Returns how many
    /// were reclaimed.
    pub fn sweep(&mut self, now: u32, budget: usize) -> usize {
        self.now = now;
        let (mut seg, mut gen, mut off) = self.sweep_at;
        let mut examined = 0;
        let mut reclaimed = 0;
        let mut skips = 0;
        while examined < budget && skips <= self.segs.segs.len() {
            let (state, now_gen) = match self.segs.segs.get(seg as usize) {
                Some(s) => (s.state, s.gen),
                None => (State::Free, 0),
            };
            // The cursor's segment went away, or was freed and reopened
            // since (its bytes are other items now, at other offsets):
            // start over, oldest first.
            if !matches!(state, State::Sealed | State::Head | State::MainHead) || now_gen != gen {
                seg = self.next_to_sweep(NONE);
                off = 0;
                if seg == NONE {
                    break;
                }
                gen = self.segs.segs[seg as usize].gen;
                skips += 1;
                continue;
            }
            let s = &self.segs.segs[seg as usize];
            if s.min_exp > now || off >= s.write {
                seg = self.next_to_sweep(seg);
                off = 0;
                gen = self.segs.segs.get(seg as usize).map_or(0, |s| s.gen);
                skips += 1;
                continue;
            }
            examined += 1;
            let Some(h) = layout::read_within(&s.data, off as usize, s.write as usize) else {
                self.skip_broken("sweep met an item running past its segment");
                off = u32::MAX;
                continue;
            };
            let here = off;
            off += h.total_len() as u32;
            if !h.dead && !is_live(h.exptime, now) {
                let home = item_home(&self.keys, &s.data, here as usize, &h);
                let loc = super::index::seg_loc(seg, here);
                let Some(pos) = self.index.find_loc(home, loc) else {
                    // Not an item the index knows: nothing after it in this
                    // segment can be trusted either.
                    self.skip_broken("sweep met an expired item the index does not hold");
                    off = u32::MAX;
                    continue;
                };
                // An item flush_ns left behind goes too, but it was
                // counted gone at the flush.
                if self.flushed(self.index.get(pos)) {
                    self.unlink(home, pos, Why::Dropped);
                } else {
                    self.unlink(home, pos, Why::Expired);
                    reclaimed += 1;
                }
            }
        }
        self.sweep_at = (seg, gen, off);

        // Large items are few (each is bigger than a segment): one cursor
        // over their table, from the same budget.
        let slots = self.large.slot_count();
        let mut seen = 0;
        while examined < budget && seen < slots {
            let slot = (self.sweep_large % slots) as u32;
            self.sweep_large = self.sweep_large.wrapping_add(1);
            seen += 1;
            examined += 1;
            if let Some((home, exptime)) = self.large.expiry_of(slot) {
                if !is_live(exptime, now) {
                    let Some(pos) = self.index.find_loc(home, super::index::large_loc(slot)) else {
                        self.skip_broken("sweep met a large item the index does not hold");
                        self.retire_unindexed(super::index::large_loc(slot));
                        continue;
                    };
                    if self.flushed(self.index.get(pos)) {
                        self.unlink(home, pos, Why::Dropped);
                    } else {
                        self.unlink(home, pos, Why::Expired);
                        reclaimed += 1;
                    }
                }
            }
        }
        reclaimed
    }

    /// The segment after `seg` in sweep order: main's sealed segments
    /// oldest first, then small's, then the head and the main head, then
    /// around again.
    fn next_to_sweep(&self, seg: u32) -> u32 {
        let stages = [
            self.segs.fifo_head[MAIN],
            self.segs.fifo_head[SMALL],
            self.head,
            self.main_head,
        ];
        let stage = if seg == NONE {
            stages.len() - 1
        } else if seg == self.head {
            2
        } else if seg == self.main_head {
            3
        } else {
            let s = &self.segs.segs[seg as usize];
            if s.next != NONE {
                return s.next;
            }
            if s.queue == MAIN {
                0
            } else {
                1
            }
        };
        (1..=stages.len())
            .map(|d| stages[(stage + d) % stages.len()])
            .find(|&id| id != NONE)
            .unwrap_or(NONE)
    }
}
