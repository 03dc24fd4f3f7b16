//! Eviction: making room by merging the oldest segments, keeping the items
//! that were used.
//!
//! Owns the choice of what leaves when memory is full, and the allocation
//! of segments under the limit. It never changes an item's bytes or cas:
//! a kept item is copied whole (with its cas made explicit, since its
//! offset changes) and its index entry repointed.
//!
//! The policy is S3-FIFO (Yang et al., SOSP '23, "FIFO queues are all you
//! need for cache eviction") applied to whole segments with Segcache's
//! merge-based eviction (Yang et al., NSDI '21, section 4.3):
//! - New items are appended to segments of a small FIFO (a tenth of the
//!   segments). When it holds more than that, its oldest segment goes:
//!   items hit while there (frequency >= 1) move to the main FIFO, the
//!   rest are evicted and their tags go to a ghost table.
//! - A key written again while its tag is in the ghost table starts with
//!   frequency 1, so it moves to main at its first merge (S3-FIFO inserts
//!   it into main directly; this way needs no second write head).
//! - Otherwise the oldest `MERGE` main segments are merged (Segcache),
//!   keeping items hit since their last pass (CLOCK-like reinsertion), at
//!   most one segment's worth, the most frequent first; so a main merge
//!   frees at least `MERGE - 1` segments. Every kept or promoted item's
//!   frequency (2 bits, saturating) drops by one.
//! - Kept and promoted items are appended to an open "main head" segment,
//!   sealed into main when full, so merged segments are full too.
//!
//! Why not LRU: on skewed (Zipf) traffic most items are one-hit wonders.
//! S3-FIFO drops them after a tenth of the cache's lifetime, while LRU
//! lets each push a popular item down its list; the paper measures lower
//! miss ratios than LRU on most of 6594 production traces. Here, on a
//! read-through Zipf workload over 1M keys, the store's hit ratio beats an
//! exact LRU with no per-item overhead by up to 6 points when the cache
//! holds a few percent of the keys, and is within a point when it holds
//! half, though it keeps about 8% fewer items (see `store_tests`:
//! `beats_lru_on_zipf`, `zipf_table`). A hit costs one store to the index
//! entry (no list to relink), and memory is reclaimed a segment at a time,
//! so it never fragments.
//!
//! Between projects, eviction is fair (see `fair`): before a merge the
//! store asks which projects hold more than their share, and the merge
//! keeps every live item of the others (first, within its budget) as it
//! keeps used items, and applies the rule above to the rest. A project
//! that writes past its own memory cap evicts its own items instead
//! (`evict_own`), walking segments like a clock from where it last stopped.
//!
//! Large items are one FIFO of their own with the same rule (hit: requeue
//! with frequency cut by one; else evict); whichever of the oldest segment
//! and the oldest large item is older goes first, so both share the limit.

use super::fair::ProjectId;
use super::index::{self, FREQ_MAX};
use super::layout::{self, NewItem};
use super::segment::{State, MAIN, NONE, SMALL};
use super::segmented::{is_live, item_home, Store, Why};
use super::NsId;

/// Main segments merged per eviction: frees at least MERGE - 1 of them.
const MERGE: usize = 4;

/// The small FIFO's share of segments is 1 / SMALL_SHARE_DIV (S3-FIFO: 10%).
const SMALL_SHARE_DIV: usize = 10;

/// Segments' worth of protected items (those of projects under their
/// share or within a reserve) the merges of one allocation may keep
/// before its merges give fairness up (see `Store::room_step`). A fair
/// merge keeps at most a segment's worth of them; an allocation that must
/// copy this many to free one segment is keeping about all it reads.
const FAIR_KEEP_LIMIT: usize = 16;

fn pair_mut<T>(v: &mut [T], a: usize, b: usize) -> (&mut T, &mut T) {
    assert_ne!(a, b);
    if a < b {
        let (x, y) = v.split_at_mut(b);
        (&mut x[a], &mut y[0])
    } else {
        let (x, y) = v.split_at_mut(a);
        (&mut y[0], &mut x[b])
    }
}

impl Store {
    /// Make the head segment able to take `total` more bytes.
    pub(super) fn head_room(&mut self, total: usize) -> bool {
        if self.head != NONE {
            let s = &self.segs.segs[self.head as usize];
            if s.write as usize + total <= self.segs.seg_size {
                return true;
            }
            let old = self.head;
            self.head = NONE;
            if s.live_items == 0 {
                self.segs.free(old);
            } else {
                self.segs.seal(old, SMALL);
            }
        }
        let Some(id) = self.alloc_segment() else {
            return false;
        };
        self.segs.open(id, State::Head, self.next_cas);
        self.next_cas += self.segs.seg_size as u64;
        self.head = id;
        true
    }

    fn take_without_evicting(&mut self) -> Option<u32> {
        if let Some(id) = self.segs.take_allocated() {
            return Some(id);
        }
        if self.memory_bytes() + self.segs.seg_size <= self.limit {
            return self.segs.take_new();
        }
        None
    }

    /// A free segment, evicting if memory is full. Keeps a spare segment
    /// set aside first, as the destination of eviction merges.
    fn alloc_segment(&mut self) -> Option<u32> {
        self.kept_for_room = 0;
        let got = self.alloc_segment_evicting();
        self.plain = false;
        got
    }

    fn alloc_segment_evicting(&mut self) -> Option<u32> {
        loop {
            if self.spare == NONE {
                if let Some(id) = self.take_without_evicting() {
                    self.segs.segs[id as usize].state = State::Spare;
                    self.spare = id;
                }
            }
            if let Some(id) = self.take_without_evicting() {
                return Some(id);
            }
            if !self.room_step() {
                return None;
            }
        }
    }

    /// Free memory until `need` more bytes fit under the limit.
    pub(super) fn make_room(&mut self, need: usize) -> bool {
        // Never empty the store for something that cannot fit anyway.
        if need > self.limit {
            return false;
        }
        self.kept_for_room = 0;
        let made = self.make_room_evicting(need);
        self.plain = false;
        made
    }

    fn make_room_evicting(&mut self, need: usize) -> bool {
        while self.memory_bytes() + need > self.limit {
            if self.segs.release_one() {
                continue;
            }
            if self.room_step() {
                continue;
            }
            // Nothing left to evict: give up the spare too.
            if self.spare == NONE {
                return false;
            }
            self.segs.free(self.spare);
            self.spare = NONE;
        }
        true
    }

    /// One step of eviction for an allocation, as `evict_one`. Once its
    /// merges have kept `FAIR_KEEP_LIMIT` segments' worth of protected
    /// items, projects under their share or within a reserve hold about
    /// all the memory (reserves near the whole limit, say), and fair merges
    /// could go on keeping everything and freeing nothing; the allocation's
    /// later merges are plain S3-FIFO, which always frees. Counted in
    /// `stats` (`store_fair_fallbacks`), and logged once.
    fn room_step(&mut self) -> bool {
        if !self.plain
            && self.projects.shared
            && self.kept_for_room >= FAIR_KEEP_LIMIT * self.segs.seg_size
        {
            self.plain = true;
            self.fair_fallback();
        }
        self.evict_one()
    }

    fn fair_fallback(&mut self) {
        static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        self.stats.fair_fallbacks += 1;
        if !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
            tracing::warn!(
                "projects under their share or within a reserve hold about all \
                 of memory: eviction took from them too, to make room (counted \
                 in stats store_fair_fallbacks; logged once)"
            );
        }
    }

    /// One step of eviction; false when there is nothing to evict.
    /// A step may only requeue (a large item that was hit), but each such
    /// step lowers a frequency, so repeating it always ends.
    pub(super) fn evict_one(&mut self) -> bool {
        // S3-FIFO's rule: evict from the small FIFO while it holds more
        // than its share, else from main.
        let small_share = (self.segs.segs.len() / SMALL_SHARE_DIV).max(1);
        let queue = if self.segs.sealed[MAIN] == 0 || self.segs.sealed[SMALL] > small_share {
            SMALL
        } else {
            MAIN
        };
        self.evict_from(queue)
    }

    fn evict_from(&mut self, queue: usize) -> bool {
        let seg_age = match self.segs.fifo_head[queue] {
            NONE => None,
            id => Some(self.segs.segs[id as usize].cas_base),
        };
        match (seg_age, self.large.oldest()) {
            (None, None) => {
                // Only open segments hold items: retire one so it can be
                // merged (the other queue may have sealed ones; try again).
                let (q, old) = if self.segs.sealed[SMALL + MAIN - queue] > 0 {
                    return self.evict_from(SMALL + MAIN - queue);
                } else if self.head != NONE && self.segs.segs[self.head as usize].write > 0 {
                    (SMALL, std::mem::replace(&mut self.head, NONE))
                } else if self.main_head != NONE {
                    (MAIN, std::mem::replace(&mut self.main_head, NONE))
                } else {
                    return false;
                };
                if self.segs.segs[old as usize].live_items == 0 {
                    self.segs.free(old);
                } else {
                    self.segs.seal(old, q);
                }
            }
            (None, Some((slot, _))) => self.evict_large(slot),
            (Some(age), Some((slot, stamp))) if stamp < age => self.evict_large(slot),
            _ => self.merge_evict(queue),
        }
        true
    }

    fn evict_large(&mut self, slot: u32) {
        let (home, exptime) = {
            let it = self.large.get(slot);
            (it.home, it.exptime)
        };
        let Some(pos) = self.index.find_loc(home, index::large_loc(slot)) else {
            // Unindexed, so nobody can read it: it only holds memory.
            self.skip_broken("eviction met a large item the index does not hold");
            self.retire_unindexed(index::large_loc(slot));
            return;
        };
        let e = self.index.get(pos);
        if self.flushed(e) {
            self.unlink(home, pos, Why::Dropped);
        } else if !is_live(exptime, self.now) {
            self.unlink(home, pos, Why::Expired);
        } else if index::freq(e) > 0 {
            self.index.put(pos, index::with_freq(e, index::freq(e) - 1));
            self.large.requeue(slot, self.next_cas);
        } else {
            self.unlink(home, pos, Why::Evicted);
        }
    }

    /// Copy the live item at `off` in segment `src` to the end of `dest`
    /// and repoint its index entry (at `pos`), its frequency cut by one.
    /// The source copy is marked dead.
    fn move_item(&mut self, src: u32, off: usize, dest: u32, pos: index::Pos) {
        let e = self.index.get(pos);
        let (s, d) = pair_mut(&mut self.segs.segs, src as usize, dest as usize);
        let h = layout::read(&s.data, off);
        let k0 = off + h.hlen;
        let at = d.write as usize;
        let written = layout::write(
            &mut d.data,
            at,
            &NewItem {
                ns: h.ns,
                exptime: h.exptime,
                meta: h.meta,
                flags: h.flags,
                // The offset changes, so the cas it implied is kept explicitly.
                own_cas: Some(h.own_cas.unwrap_or(s.cas_base + off as u64)),
                key: &s.data[k0..k0 + h.klen],
                value: [&s.data[k0 + h.klen..k0 + h.klen + h.vlen], &[]],
            },
        );
        layout::mark_dead(&mut s.data, off);
        d.write += written as u32;
        d.live_items += 1;
        d.live_bytes += written as u32;
        d.note_exptime(h.exptime);
        let moved = (e & !index::LOC_MASK) | index::seg_loc(dest, at as u32);
        self.index.put(
            pos,
            index::with_freq(moved, index::freq(e).saturating_sub(1)),
        );
    }

    /// The segment kept items go to, with room for `len` more bytes:
    /// the main head, or (once that is full: it is sealed into main) the
    /// spare, which becomes the new main head.
    fn merge_dest(&mut self, len: usize) -> Option<u32> {
        let seg_size = self.segs.seg_size;
        if self.main_head != NONE
            && self.segs.segs[self.main_head as usize].write as usize + len <= seg_size
        {
            return Some(self.main_head);
        }
        if self.spare == NONE || len > seg_size {
            return None;
        }
        if self.main_head != NONE {
            let old = self.main_head;
            if self.segs.segs[old as usize].live_items == 0 {
                self.segs.free(old);
            } else {
                self.segs.seal(old, MAIN);
            }
        }
        let id = self.spare;
        self.spare = NONE;
        self.segs.open(id, State::MainHead, self.next_cas);
        self.next_cas += seg_size as u64;
        self.main_head = id;
        Some(id)
    }

    /// Drop every index entry into segment `seg` (about to be freed) when
    /// its items can no longer be walked: a broken invariant. Items still
    /// readable at their entry's offset are counted as evicted.
    fn purge_segment(&mut self, seg: u32) {
        let s = &self.segs.segs[seg as usize];
        let (ns_floors, stats) = (&self.ns, &mut self.stats);
        let mut gone = Vec::new();
        self.index.purge(|e| {
            if e & index::LARGE != 0 {
                return false;
            }
            let (at, off) = index::split_seg_loc(e & index::LOC_MASK);
            if at != seg {
                return false;
            }
            if let Some(h) = layout::read_within(&s.data, off as usize, s.write as usize) {
                let cas = h.own_cas.unwrap_or(s.cas_base + u64::from(off));
                if cas >= ns_floors.floor(h.ns).segment {
                    gone.push((h.ns, h.stats_size() as u64));
                    stats.curr_items = stats.curr_items.saturating_sub(1);
                    stats.bytes = stats.bytes.saturating_sub(h.stats_size() as u64);
                    stats.evictions += 1;
                }
            }
            true
        });
        for (ns, size) in gone {
            let n = self.ns.get_mut(ns);
            n.curr_items = n.curr_items.saturating_sub(1);
            n.bytes = n.bytes.saturating_sub(size);
            n.evictions += 1;
            let p = self.ns.project(ns);
            self.projects.removed(p, size, true);
        }
    }

    /// Merge the oldest segments of `queue`, moving the items to keep to
    /// the main head and evicting the rest.
    fn merge_evict(&mut self, queue: usize) {
        let mut victims = std::mem::take(&mut self.victims);
        let seg_size = self.segs.seg_size;
        // Small gives up one segment at a time and every used item in it
        // moves to main, as in S3-FIFO; that frees no memory by itself but
        // shrinks small until main's turn comes. A main merge keeps at most
        // one segment's worth, so it frees MERGE - 1 (a lone victim may
        // keep half).
        let (count, budget) = match queue {
            SMALL => (1, seg_size),
            _ if self.segs.sealed[MAIN] == 1 => (1, seg_size / 2),
            _ => (MERGE, seg_size),
        };
        // Which projects are over their share, as of now: their items go
        // by the rule above, the others' are kept first.
        self.projects.refresh();
        let fair = self.projects.shared && !self.plain;
        if fair && queue == MAIN {
            self.pick_main_victims(count, budget, &mut victims);
        } else {
            self.segs.oldest(queue, count, &mut victims);
        }
        if fair && queue == SMALL && victims.len() == 1 {
            let (protected, other) = self.live_bytes(victims[0]);
            if protected > 0 && other == 0 {
                // Every live item of it is kept: it joins main as it lies,
                // as a main segment of them goes round whole. Copied, each
                // item would gain an explicit cas (8 bytes), so a segment of
                // them no longer fits one, and the last were evicted.
                // (Expired or flushed items in it wait for its merge from
                // main.)
                self.segs.detach(victims[0]);
                self.segs.seal(victims[0], MAIN);
                self.victims = victims;
                return;
            }
        }
        for &v in &victims {
            self.segs.detach(v);
        }
        let now = self.now;
        let mut protected = 0usize;

        // Pass 1: bytes of live items by frequency, to pick the bar.
        let mut by_freq = [0usize; FREQ_MAX as usize + 1];
        for &v in &victims {
            let s = &self.segs.segs[v as usize];
            let mut off = 0usize;
            // Broken items are counted (and skipped) by pass 2.
            while let Some(h) = layout::read_within(&s.data, off, s.write as usize) {
                if !h.dead && is_live(h.exptime, now) {
                    let found = self.index.find_loc(
                        item_home(&self.keys, &s.data, off, &h),
                        index::seg_loc(v, off as u32),
                    );
                    if let Some(e) = found
                        .map(|pos| self.index.get(pos))
                        .filter(|&e| !self.flushed(e))
                    {
                        let len = layout::header_len(h.ns, h.flags, true) + h.klen + h.vlen;
                        if fair && self.protected(h.ns) {
                            protected += len;
                        } else {
                            by_freq[index::freq(e) as usize] += len;
                        }
                    }
                }
                off += h.total_len();
            }
        }
        // Everything at or above `bar` fits the budget; items at `bar - 1`
        // fill what is left.
        let mut bar = 1;
        let room = budget.saturating_sub(protected);
        while by_freq[bar.min(by_freq.len())..].iter().sum::<usize>() > room {
            bar += 1;
        }
        let partial = bar - 1;

        // Pass 2, in four rounds: keep the items of projects under their
        // share (none when one project holds everything), then what clears
        // the bar, then fill with the next frequency down, then evict what
        // is left.
        let mut kept = 0usize;
        let first = if protected > 0 { 0 } else { 1 };
        for round in first..4 {
            for &v in &victims {
                let mut off = 0usize;
                loop {
                    let s = &self.segs.segs[v as usize];
                    if off >= s.write as usize {
                        break;
                    }
                    let Some(h) = layout::read_within(&s.data, off, s.write as usize) else {
                        // The rest of the segment cannot be walked. Items
                        // the index still holds there are lost with it
                        // once the segment is freed: purge them now.
                        self.skip_broken("merge met an item running past its segment");
                        self.purge_segment(v);
                        // Later rounds stop here too (the victim is freed
                        // after the merge, which resets this).
                        self.segs.segs[v as usize].write = off as u32;
                        break;
                    };
                    let here = off;
                    off += h.total_len();
                    if h.dead {
                        continue;
                    }
                    let home = item_home(&self.keys, &s.data, here, &h);
                    let loc = index::seg_loc(v, here as u32);
                    let Some(pos) = self.index.find_loc(home, loc) else {
                        // The victim is ours until freed: marking it dead
                        // keeps the next round from counting it again.
                        self.skip_broken("merge met a live item the index does not hold");
                        layout::mark_dead(&mut self.segs.segs[v as usize].data, here);
                        continue;
                    };
                    let e = self.index.get(pos);
                    let f = index::freq(e) as usize;
                    let len = layout::header_len(h.ns, h.flags, true) + h.klen + h.vlen;
                    if self.flushed(e) {
                        // flush_ns already uncounted it.
                        self.unlink(home, pos, Why::Dropped);
                        continue;
                    }
                    if !is_live(h.exptime, now) {
                        self.unlink(home, pos, Why::Expired);
                        continue;
                    }
                    let keep = fair && self.protected(h.ns);
                    let wanted = match round {
                        0 => keep,
                        1 => !keep && f >= bar,
                        2 => !keep && f >= 1 && f == partial,
                        _ => false,
                    };
                    if wanted && kept + len <= budget {
                        if let Some(dest) = self.merge_dest(len) {
                            self.move_item(v, here, dest, pos);
                            kept += len;
                            if round == 0 {
                                self.kept_for_room += len;
                            }
                            continue;
                        }
                    }
                    if round == 3 {
                        if queue == SMALL {
                            self.ghost.add(home, index::entry_tag(e));
                        }
                        self.unlink(home, pos, Why::Evicted);
                    }
                }
            }
        }

        for &v in &victims {
            self.segs.free(v);
        }
        if self.spare == NONE {
            if let Some(id) = self.segs.take_allocated() {
                self.segs.segs[id as usize].state = State::Spare;
                self.spare = id;
            }
        }
        self.victims = victims;
    }
}

impl Store {
    /// Whether the items of `ns` are kept by merges now: its project holds
    /// less than its share (as of the last `projects.refresh`).
    #[inline]
    fn protected(&self, ns: NsId) -> bool {
        !self.projects.over(self.ns.project(ns))
    }

    /// Up to `count` of the oldest main segments whose items of projects
    /// under their share fit `budget` together, so the merge keeps them
    /// all. A segment holding more of them than fits goes to the back of
    /// main whole (no copy), like a used item: the items of a small tenant
    /// are passed over, not merged away. At most one lap of main, so
    /// eviction always ends.
    fn pick_main_victims(&mut self, count: usize, budget: usize, victims: &mut Vec<u32>) {
        victims.clear();
        let lap = self.segs.sealed[MAIN];
        let mut id = self.segs.fifo_head[MAIN];
        let (mut looked, mut kept) = (0usize, 0usize);
        while id != NONE && victims.len() < count && looked < lap {
            let next = self.segs.segs[id as usize].next;
            let (protected, _) = self.live_bytes(id);
            if kept + protected <= budget {
                victims.push(id);
                kept += protected;
            } else if looked + 1 < lap || !victims.is_empty() {
                self.segs.requeue(id);
            } else {
                // Every segment is mostly theirs: merge anyway.
                victims.push(id);
            }
            looked += 1;
            id = next;
        }
        if victims.is_empty() {
            self.segs.oldest(MAIN, count, victims);
        }
    }

    /// Bytes (as a merge would copy them) of the live items in segment
    /// `seg`: those of projects under their share, which merges keep, and
    /// the others'.
    fn live_bytes(&self, seg: u32) -> (usize, usize) {
        let s = &self.segs.segs[seg as usize];
        let mut off = 0usize;
        let (mut protected, mut other) = (0usize, 0usize);
        while let Some(h) = layout::read_within(&s.data, off, s.write as usize) {
            if !h.dead && is_live(h.exptime, self.now) {
                let bytes = layout::header_len(h.ns, h.flags, true) + h.klen + h.vlen;
                if self.protected(h.ns) {
                    protected += bytes;
                } else {
                    other += bytes;
                }
            }
            off += h.total_len();
        }
        (protected, other)
    }

    /// Evict at least `need` bytes (as `stats` counts them) of `project`'s
    /// own items, for a write past its cap. A clock over the segments in
    /// age order (small, oldest first, then the head; main, oldest first,
    /// then the main head), resumed where the project's last call stopped:
    /// the first lap spares items used since (cutting their frequency), the
    /// second does not; large items go last.
    pub(super) fn evict_own(&mut self, project: ProjectId, need: u64) {
        let nseg = self.segs.segs.len();
        if nseg == 0 {
            return self.evict_own_large(project, need);
        }
        let target = self.projects.get(project).bytes.saturating_sub(need);
        let (mut seg, mut gen, mut off) = self.projects.cursor(project);
        if seg as usize >= nseg || self.segs.segs[seg as usize].gen != gen {
            // Its segment was freed or reused: start again from the oldest.
            seg = self.clock_next(NONE);
            if seg == NONE {
                return self.evict_own_large(project, need);
            }
            (gen, off) = (self.segs.segs[seg as usize].gen, 0);
        }
        // Segments stepped past; a lap is at most every segment plus the
        // two heads.
        let mut steps = 0usize;
        let lap = nseg + 2;
        while self.projects.get(project).bytes > target && steps <= 2 * lap {
            let s = &self.segs.segs[seg as usize];
            let walkable =
                s.gen == gen && matches!(s.state, State::Sealed | State::Head | State::MainHead);
            let header = if walkable {
                layout::read_within(&s.data, off as usize, s.write as usize)
            } else {
                None
            };
            let Some(h) = header else {
                let next = if walkable {
                    self.clock_next(seg)
                } else {
                    self.clock_next(NONE)
                };
                if next == NONE {
                    break;
                }
                seg = next;
                (gen, off) = (self.segs.segs[seg as usize].gen, 0);
                steps += 1;
                continue;
            };
            let here = off as usize;
            off += h.total_len() as u32;
            if h.dead || self.ns.project(h.ns) != project {
                continue;
            }
            let home = item_home(&self.keys, &s.data, here, &h);
            let Some(pos) = self.index.find_loc(home, index::seg_loc(seg, here as u32)) else {
                continue;
            };
            let e = self.index.get(pos);
            if self.flushed(e) {
                self.unlink(home, pos, Why::Dropped);
            } else if !is_live(h.exptime, self.now) {
                self.unlink(home, pos, Why::Expired);
            } else if index::freq(e) > 0 && steps < lap {
                self.index.put(pos, index::with_freq(e, index::freq(e) - 1));
            } else {
                self.unlink(home, pos, Why::Evicted);
            }
        }
        self.projects.set_cursor(project, (seg, gen, off));
        let left = self.projects.get(project).bytes.saturating_sub(target);
        if left > 0 {
            self.evict_own_large(project, left);
        }
    }

    /// The segment after `seg` in `evict_own`'s clock: small oldest first,
    /// the head, main oldest first, the main head, and round again. NONE
    /// (or a segment that is none of these) starts from the oldest small.
    fn clock_next(&self, seg: u32) -> u32 {
        let segs = &self.segs;
        let stage = if seg == NONE {
            3
        } else if seg == self.head {
            1
        } else if seg == self.main_head {
            3
        } else {
            let s = &segs.segs[seg as usize];
            if s.state != State::Sealed {
                3
            } else if s.next != NONE {
                return s.next;
            } else if s.queue == SMALL {
                0
            } else {
                2
            }
        };
        for k in 1..=4 {
            let next = match (stage + k) % 4 {
                0 => segs.fifo_head[SMALL],
                1 => self.head,
                2 => segs.fifo_head[MAIN],
                _ => self.main_head,
            };
            if next != NONE {
                return next;
            }
        }
        NONE
    }

    /// `evict_own` for large items, oldest slot first.
    fn evict_own_large(&mut self, project: ProjectId, need: u64) {
        let target = self.projects.get(project).bytes.saturating_sub(need);
        for slot in self.large.live_slots() {
            if self.projects.get(project).bytes <= target {
                return;
            }
            let (ns, home) = {
                let it = self.large.get(slot);
                (it.ns, it.home)
            };
            if self.ns.project(ns) != project {
                continue;
            }
            if let Some(pos) = self.index.find_loc(home, index::large_loc(slot)) {
                let why = if is_live(self.large.get(slot).exptime, self.now) {
                    Why::Evicted
                } else {
                    Why::Expired
                };
                self.unlink(home, pos, why);
            }
        }
    }
}
