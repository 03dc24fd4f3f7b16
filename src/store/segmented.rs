//! The shard's store: items appended into segments, found through the hash
//! index, evicted a segment at a time (S3-FIFO over Segcache-style merges).
//!
//! Owns the commands' semantics (memcached 1.6: set/add/replace/append/
//! prepend/cas, get/gat/touch, incr/decr, delete, flush) and the counters
//! `stats` reports. It never touches a socket, never parses protocol text
//! and never allocates per item: small items live in segments (see
//! `segment`), items bigger than a segment get one allocation each (see
//! `large`), both charged against one memory limit. Eviction and the
//! expiry sweep live in `eviction` and `sweep`.
//!
//! Every mutation appends a new copy of the item and retires the old one,
//! so an item's bytes never change under a reader except its exptime
//! (touch) and its dead bit; `ItemView` borrows the store, so Rust keeps
//! them stable while a caller holds one. `flush_ns` is lazy (a cas floor
//! per namespace) so one tenant's flush costs the others nothing;
//! `flush_all` drops the index and every segment at once.
//!
//! Memory: segment memory plus large items, plus the per-namespace and
//! per-project tables of the namespaces bound so far, stay within
//! `limit_bytes`. The
//! index, the segment and large-item tables are fixed at construction from
//! the limit and are reported (with the per-namespace counter table) as
//! `StoreStats::overhead_bytes`; see [`Store::new`] for the sizes.

use std::sync::atomic::{AtomicBool, Ordering};

use super::cas::CasSeal;
use super::fair::{self, Demand, ProjectId, ProjectStats, Projects, Quota};
use super::ghost::Ghosts;
use super::index::{self, Index, Pos, FETCHED, FREQ_MASK, LARGE, LOC_MASK};
use super::large::{LargeItem, LargeItems};
use super::layout::{self, NewItem, MAX_SEGMENT_VLEN};
use super::ns_table::{Floor, NsTable, UNBOUND};
use super::segment::{Segments, State, NONE};
use super::{
    arith, ArithOutcome, ItemView, Key, KeyHasher, Lookup, NsId, NsStats, SetMode, SetOutcome,
    StoreStats,
};

/// Largest segment: offsets are 20 bits in an index entry.
const MAX_SEG_SIZE: usize = 1 << index::OFFSET_BITS;
/// Smallest segment, for toy limits.
const MIN_SEG_SIZE: usize = 256;
/// A store has at least this many segments (when the limit allows), so
/// eviction always has older segments to choose from.
const MIN_SEGMENTS: usize = 64;

/// The largest scratch buffer kept between commands.
const SCRATCH_KEEP: usize = 64 << 10;
/// Cache lines of an item `prefetch_items` starts loading: its header and
/// key, and the value of a typical small item (a 100-byte value spans two or
/// three lines). Loading only the first left the value's lines to miss one
/// after another as the reply copied them.
const PREFETCH_LINES: usize = 3;
const CACHE_LINE: usize = 64;
/// Writes to full index chains between reckonings of the projects' shares.
const INDEX_REFRESH: u64 = 32;

/// Why an item leaves the store; decides which counters move.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Why {
    /// delete, overwrite, a `Set` that was too large, flush.
    Dropped,
    /// Past its exptime (reclaimed).
    Expired,
    /// Pushed out to make room.
    Evicted,
}

/// What the store needs to know about an item, wherever it lives.
pub(super) struct ItemRef<'a> {
    pub ns: NsId,
    pub exptime: u32,
    pub flags: u32,
    pub cas: u64,
    pub value: &'a [u8],
}

#[inline]
pub(super) fn is_live(exptime: u32, now: u32) -> bool {
    exptime == 0 || exptime > now
}

/// The index home of the segment item at `off` (header `h`): its key
/// rehashed, since items do not keep it.
#[inline]
pub(super) fn item_home(keys: &KeyHasher, data: &[u8], off: usize, h: &layout::Header) -> u32 {
    let key = &data[off + h.hlen..off + h.hlen + h.klen];
    index::home_of(keys.hash(h.ns, key))
}

pub struct Store {
    pub(super) index: Index,
    pub(super) segs: Segments,
    pub(super) large: LargeItems,
    /// Bytes charged by large items.
    pub(super) large_bytes: usize,
    /// Segment taking appends, or NONE.
    pub(super) head: u32,
    /// Segment taking the items eviction keeps (see `eviction`), or NONE.
    pub(super) main_head: u32,
    /// Segment kept empty for when the main head fills up, or NONE.
    pub(super) spare: u32,
    pub(super) limit: usize,
    pub(super) max_item_size: usize,
    /// Next cas value not yet handed out (segments take blocks of them).
    pub(super) next_cas: u64,
    /// The latest `now` a command passed in; eviction uses it to tell
    /// expired items from live ones.
    pub(super) now: u32,
    pub(super) stats: StoreStats,
    pub(super) ns: NsTable,
    /// Per-project figures and quotas: fair sharing (see `fair`).
    pub(super) projects: Projects,
    /// Bytes of per-namespace and per-project state charged against the
    /// limit (see `charge_namespaces`), and what the shard keeps per
    /// namespace beside the store's own table.
    ns_charge: usize,
    ns_extra: usize,
    fixed_overhead: usize,
    /// Tags of keys recently evicted from the small FIFO without a hit
    /// (see `eviction`): such a key written again starts with frequency 1.
    pub(super) ghost: Ghosts,
    /// Reused buffers, so commands never allocate in steady state.
    scratch: Vec<u8>,
    pub(super) victims: Vec<u32>,
    /// Bytes of protected items eviction merges kept (copied) for the
    /// allocation under way, and whether its merges have given fairness
    /// up (`eviction`).
    pub(super) kept_for_room: usize,
    pub(super) plain: bool,
    /// Writes that found their index chain full (`index_victim`).
    index_full_writes: u64,
    /// The sweep's place: (segment, the segment's generation then,
    /// offset), and a large-item slot counter. The generation tells the
    /// sweep when the segment was freed or reused since.
    pub(super) sweep_at: (u32, u32, u32),
    pub(super) sweep_large: usize,
    /// Turns write stamps into the cas uniques clients see. Every reply
    /// that shows a unique, and every command that compares one, goes
    /// through it: a raw stamp must never reach a client.
    pub(super) seal: CasSeal,
    /// The process's key hash, to find the index home of a stored key.
    pub(super) keys: KeyHasher,
    /// Tests that break an invariant on purpose set this, so the
    /// `debug_assert!` in `skip_broken` lets them see the skip.
    #[cfg(test)]
    pub(super) expect_broken: bool,
}

/// How [`Store::store_item`] writes an item.
#[derive(Clone, Copy, Debug)]
pub(super) struct Write {
    /// The entry it replaces (position and location, as found before
    /// writing), unlinked once the new bytes are safely written, so a
    /// failed write leaves it in place.
    pub old: Option<(Pos, u64)>,
    /// Index bits (fetched, frequency) carried over from the old entry.
    pub keep: u64,
    /// Whether it counts in `total_items` (a rewrite of the same item,
    /// memcached's in-place update, does not).
    pub count: bool,
    /// The item's meta field (see `layout`).
    pub meta: u32,
    /// The cas the item must keep, where it keeps one.
    pub own_cas: Option<u64>,
}

impl Write {
    /// A new item at `now`, replacing nothing: counted, last accessed
    /// now, with a fresh cas.
    pub fn new(now: u32) -> Write {
        Write {
            old: None,
            keep: 0,
            count: true,
            meta: now & layout::ACCESS_MASK,
            own_cas: None,
        }
    }

    /// The same write, replacing `old` and keeping `keep` of its index bits.
    pub fn replacing(self, old: Option<(Pos, u64)>, keep: u64) -> Write {
        Write { old, keep, ..self }
    }
}

impl Store {
    /// A store holding at most `limit_bytes` of segments and large items.
    ///
    /// Segments are 1 MiB (smaller for limits under 64 MiB, so there are
    /// at least 64 and the few not full of items, the head, the merge spare
    /// and those just freed, cost little); items whose header, key and
    /// value exceed a segment are large items. The index has up to one bucket of
    /// 64 bytes per 784 bytes of limit plus a third as many overflow
    /// buckets (and 4 bytes per overflow bucket to track the free ones):
    /// 11.0% of the limit, touched only as items arrive (about 14 bytes per
    /// item); the ghost table (at most 8 bytes per primary bucket)
    /// adds 1.0%. The tables of segments and large items add about
    /// 150 bytes per segment, and a scratch buffer up to 64 KiB. All of it
    /// is `overhead_bytes`, fixed here (plus the per-namespace table, which
    /// grows with the namespaces seen: 48 bytes each).
    /// `keys` must be the hasher that computed every [`Key::hash`] this
    /// store is given.
    pub fn new(limit_bytes: usize, max_item_size: usize, keys: KeyHasher) -> Store {
        let per = (limit_bytes / MIN_SEGMENTS).max(MIN_SEG_SIZE);
        let seg_size = (1usize << (usize::BITS - 1 - per.leading_zeros())).min(MAX_SEG_SIZE);
        Store::with_segment_size(limit_bytes, max_item_size, seg_size, keys)
    }

    /// A store with segments of `seg_size` bytes (at most 1 MiB), for tests
    /// that want many segment boundaries without a small limit.
    pub(crate) fn with_segment_size(
        limit_bytes: usize,
        max_item_size: usize,
        seg_size: usize,
        keys: KeyHasher,
    ) -> Store {
        assert!((MIN_SEG_SIZE..=MAX_SEG_SIZE).contains(&seg_size));
        let nseg = (limit_bytes / seg_size).min(index::MAX_SEGMENTS);
        let index = Index::for_limit(limit_bytes);
        let segs = Segments::new(nseg, seg_size);
        // Every large item is bigger than a segment, so there are at most
        // `nseg` of them; bound their table (and FIFO, kept under 2x live +
        // 16) by that.
        let large_table = (nseg + 1) * (std::mem::size_of::<Option<LargeItem>>() + 4 + 3 * 16);
        let ghost = Ghosts::new(index.max_primary());
        let fixed_overhead = index.memory_bytes()
            + segs.overhead_bytes()
            + large_table
            + ghost.bytes()
            + SCRATCH_KEEP;
        Store {
            index,
            segs,
            large: LargeItems::with_capacity(nseg + 1),
            large_bytes: 0,
            head: NONE,
            main_head: NONE,
            spare: NONE,
            limit: limit_bytes,
            max_item_size,
            next_cas: 1,
            now: 0,
            stats: StoreStats::default(),
            ns: NsTable::default(),
            projects: Projects::default(),
            ns_charge: 0,
            ns_extra: 0,
            fixed_overhead,
            ghost,
            scratch: Vec::new(),
            victims: Vec::new(),
            kept_for_room: 0,
            plain: false,
            index_full_writes: 0,
            sweep_at: (NONE, 0, 0),
            sweep_large: 0,
            seal: CasSeal::new(),
            keys,
            #[cfg(test)]
            expect_broken: false,
        }
    }

    /// The key hash this store files keys by.
    pub fn keys(&self) -> KeyHasher {
        self.keys
    }

    /// Bytes of segments and large items held now, and of the state of
    /// the namespaces bound here: never above the limit.
    pub fn memory_bytes(&self) -> usize {
        self.segs.memory_bytes() + self.large_bytes + self.ns_charge
    }

    /// Charges `bytes` more per namespace, for what the caller keeps per
    /// namespace beside the store (the shard's counters).
    pub fn set_namespace_cost(&mut self, bytes: usize) {
        self.ns_extra = bytes;
    }

    /// Counts the per-namespace and per-project tables, as they are now,
    /// against the limit, making room if they grew: namespaces cannot grow
    /// memory past `--memory-mb`. Called as a namespace is bound.
    fn charge_namespaces(&mut self) {
        self.ns_charge =
            self.ns.memory_bytes() + self.projects.memory_bytes() + self.ns.slots() * self.ns_extra;
        self.make_room(0);
    }

    /// The item an index entry points at.
    #[inline]
    pub(super) fn item(&self, e: u64) -> ItemRef<'_> {
        if e & LARGE != 0 {
            let it = self.large.get((e & (LARGE - 1)) as u32);
            ItemRef {
                ns: it.ns,
                exptime: it.exptime,
                flags: it.flags,
                cas: it.cas,
                value: it.value(),
            }
        } else {
            let (seg, off) = index::split_seg_loc(e & LOC_MASK);
            let s = &self.segs.segs[seg as usize];
            let h = layout::read(&s.data, off as usize);
            let k = off as usize + h.hlen;
            let v = k + h.klen;
            ItemRef {
                ns: h.ns,
                exptime: h.exptime,
                flags: h.flags,
                cas: h.own_cas.unwrap_or(s.cas_base + u64::from(off)),
                value: &s.data[v..v + h.vlen],
            }
        }
    }

    /// Just the exptime of the item an entry points at.
    #[inline]
    fn exptime_of(&self, e: u64) -> u32 {
        if e & LARGE != 0 {
            self.large.get((e & (LARGE - 1)) as u32).exptime
        } else {
            let (seg, off) = index::split_seg_loc(e & LOC_MASK);
            layout::exptime(&self.segs.segs[seg as usize].data, off as usize)
        }
    }

    #[inline]
    fn matches(&self, e: u64, k: &Key<'_>) -> bool {
        if e & LARGE != 0 {
            let it = self.large.get((e & (LARGE - 1)) as u32);
            it.ns == k.ns && it.key() == k.key
        } else {
            let (seg, off) = index::split_seg_loc(e & LOC_MASK);
            let data = &self.segs.segs[seg as usize].data;
            let h = layout::read(data, off as usize);
            let at = off as usize + h.hlen;
            h.ns == k.ns && h.klen == k.key.len() && &data[at..at + h.klen] == k.key
        }
    }

    #[inline]
    pub(super) fn find(&self, k: &Key<'_>) -> Option<Pos> {
        // Eviction and splits rehash stored keys: a caller's hash that
        // disagreed would file the key where they cannot find it.
        debug_assert_eq!(
            k.hash,
            self.keys.hash(k.ns, k.key),
            "Key::hash is not this store's KeyHasher::hash"
        );
        let home = index::home_of(k.hash);
        self.index
            .find(home, index::tag_of(k.hash), |e| self.matches(e, k))
    }

    /// The live item under `k`; an expired one is reclaimed on the way
    /// (`Err(())` tells the caller it was there but expired).
    #[inline]
    pub(super) fn find_live(&mut self, k: &Key<'_>, now: u32) -> Result<Option<Pos>, ()> {
        let Some(pos) = self.find(k) else {
            return Ok(None);
        };
        let e = self.index.get(pos);
        let home = index::home_of(k.hash);
        if self.ns.floor(k.ns).large > 0 && self.flushed(e) {
            // Left behind by flush_ns: already uncounted, now unindexed.
            self.unlink(home, pos, Why::Dropped);
            return Ok(None);
        }
        if is_live(self.exptime_of(e), now) {
            return Ok(Some(pos));
        }
        self.unlink(home, pos, Why::Expired);
        Err(())
    }

    /// Whether the item an entry points at was dropped by `flush_ns`
    /// (its cas is below its namespace's floor) but not yet removed.
    #[inline]
    pub(super) fn flushed(&self, e: u64) -> bool {
        let it = self.item(e);
        let floor = self.ns.floor(it.ns);
        it.cas
            < if e & LARGE != 0 {
                floor.large
            } else {
                floor.segment
            }
    }

    #[inline]
    fn ns_mut(&mut self, ns: NsId) -> &mut NsStats {
        self.ns.get_mut(ns)
    }

    /// Remove the entry at `pos` (in `home`'s chain) and retire its item.
    /// An item `flush_ns` left behind was uncounted then; it moves no
    /// counter now.
    pub(super) fn unlink(&mut self, home: u32, pos: Pos, why: Why) {
        let e = self.index.get(pos);
        let flushed = self.flushed(e);
        self.index.remove(home, pos);
        let (ns, size) = if e & LARGE != 0 {
            let it = self.large.remove((e & (LARGE - 1)) as u32);
            self.large_bytes -= it.charge();
            (
                it.ns,
                layout::item_size(it.ns, it.flags, it.klen, it.data.len() - it.klen),
            )
        } else {
            let (seg, off) = index::split_seg_loc(e & LOC_MASK);
            let s = &mut self.segs.segs[seg as usize];
            let h = layout::read(&s.data, off as usize);
            layout::mark_dead(&mut s.data, off as usize);
            s.live_items -= 1;
            s.live_bytes -= h.total_len() as u32;
            if s.live_items == 0 && s.state == State::Sealed {
                self.segs.free(seg);
            }
            (h.ns, h.stats_size())
        };
        if flushed {
            return;
        }
        let fetched = e & FETCHED != 0;
        let st = &mut self.stats;
        st.curr_items -= 1;
        st.bytes -= size as u64;
        match why {
            Why::Dropped => {}
            Why::Expired => {
                st.reclaimed += 1;
                st.expired_unfetched += u64::from(!fetched);
            }
            Why::Evicted => {
                st.evictions += 1;
                st.evicted_unfetched += u64::from(!fetched);
            }
        }
        let n = self.ns_mut(ns);
        n.curr_items -= 1;
        n.bytes -= size as u64;
        n.evictions += u64::from(why == Why::Evicted);
        let p = self.ns.project(ns);
        self.projects.removed(p, size as u64, why == Why::Evicted);
    }

    /// Writes a new item and indexes it: `write` says what it replaces,
    /// how it counts and its fields beside the client's.
    pub(super) fn store_item(
        &mut self,
        k: &Key<'_>,
        flags: u32,
        exptime: u32,
        value: [&[u8]; 2],
        write: Write,
    ) -> SetOutcome {
        let Write {
            old,
            keep,
            count,
            meta,
            own_cas,
        } = write;
        let home = index::home_of(k.hash);
        let item = NewItem {
            ns: k.ns,
            exptime,
            meta,
            flags,
            own_cas,
            key: k.key,
            value,
        };
        let vlen = item.vlen();
        let total = item.total_len();
        let project = self.ns.project(k.ns);
        let cap = self.projects.quota(project).cap;
        if cap != u64::MAX && !self.within_cap(project, cap, k, flags, vlen) {
            return SetOutcome::OutOfMemory;
        }
        let loc = if total <= self.segs.seg_size && vlen <= MAX_SEGMENT_VLEN {
            if !self.head_room(total) {
                return SetOutcome::OutOfMemory;
            }
            let s = &mut self.segs.segs[self.head as usize];
            let off = s.write as usize;
            layout::write(&mut s.data, off, &item);
            s.write += total as u32;
            s.live_items += 1;
            s.live_bytes += total as u32;
            s.note_exptime(exptime);
            index::seg_loc(self.head, off as u32)
        } else {
            let charge = k.key.len() + vlen + std::mem::size_of::<LargeItem>();
            if !self.make_room(charge) {
                return SetOutcome::OutOfMemory;
            }
            let mut data = Vec::with_capacity(k.key.len() + vlen);
            data.extend_from_slice(k.key);
            data.extend_from_slice(value[0]);
            data.extend_from_slice(value[1]);
            let stamp = self.next_cas;
            let cas = own_cas.unwrap_or(stamp);
            self.next_cas += 1;
            let slot = self.large.insert(LargeItem {
                ns: k.ns,
                home,
                flags,
                exptime,
                meta,
                cas,
                stamp,
                klen: k.key.len(),
                data: data.into_boxed_slice(),
            });
            self.large_bytes += charge;
            index::large_loc(slot)
        };
        // Making room may have evicted or moved the old item, and reused its
        // segment: use the remembered position only if it still points
        // where it did, at an item with this key.
        if let Some((pos, old_loc)) = old {
            let e = self.index.get(pos);
            if e & LOC_MASK == old_loc && e & index::VALID != 0 && self.matches(e, k) {
                self.unlink(home, pos, Why::Dropped);
            } else if let Some(pos) = self.find(k) {
                self.unlink(home, pos, Why::Dropped);
            }
        }
        let tag = index::tag_of(k.hash);
        let mut keep = keep;
        if old.is_none() && self.ghost.take(home, tag) {
            keep = index::with_freq(keep, 1);
        }
        let entry = index::make_entry(tag, loc) | keep;
        if self.index.insert(home, entry).is_none() {
            // Chain full and overflow pool spent: the chain's coldest item
            // that fairness lets go makes way (an eviction like any other).
            let Some(victim) = self.index_victim(home, project) else {
                // Every item of the chain is another project's that
                // eviction must keep: the writer is at the index's bound.
                self.stats.index_refusals += 1;
                self.retire_unindexed(loc);
                return SetOutcome::OutOfMemory;
            };
            let why = if is_live(self.item(self.index.get(victim)).exptime, self.now) {
                Why::Evicted
            } else {
                Why::Expired
            };
            self.unlink(home, victim, why);
            if self.index.insert(home, entry).is_none() {
                // Cannot happen (a slot was just freed); if it did, the new
                // item goes unindexed rather than the server down.
                self.skip_broken("no index slot after freeing one");
                self.retire_unindexed(loc);
                return SetOutcome::OutOfMemory;
            }
        }
        // The table grows a bucket at a time as items arrive; a split reads
        // the key of each entry it moves again to find its home.
        while self.index.wants_split() {
            let (segs, large, keys) = (&self.segs, &self.large, &self.keys);
            let lost = self.index.split(|e| {
                if e & LARGE != 0 {
                    large.try_get((e & (LARGE - 1)) as u32).map(|it| it.home)
                } else {
                    let (seg, off) = index::split_seg_loc(e & LOC_MASK);
                    let s = segs.segs.get(seg as usize)?;
                    let h = layout::read_within(&s.data, off as usize, s.write as usize)?;
                    Some(item_home(keys, &s.data, off as usize, &h))
                }
            });
            for _ in 0..lost {
                self.skip_broken("index split met an entry it could not place");
            }
        }
        let size = layout::item_size(k.ns, flags, k.key.len(), vlen) as u64;
        self.stats.curr_items += 1;
        self.stats.bytes += size;
        self.stats.total_items += u64::from(count);
        let n = self.ns_mut(k.ns);
        n.curr_items += 1;
        n.bytes += size;
        n.total_items += u64::from(count);
        self.projects.added(project, size);
        SetOutcome::Stored
    }

    /// The entry of `home`'s full chain to drop for a new item of
    /// `project`: an expired item first, then the coldest of the writer's
    /// own and of projects over their share (`fair`), as a merge would
    /// choose; never an item of a project eviction must keep (under its
    /// share, or within its reserve, even where every project is: a write
    /// can be refused, a reserve cannot be broken). A flood of small items
    /// fills the index long before memory, and its chains would otherwise
    /// hand the flooder everyone's items, reserves included. `None` when
    /// the chain holds only items to keep.
    fn index_victim(&mut self, home: u32, project: ProjectId) -> Option<Pos> {
        // Shares move slowly: reckoned again every so many full chains, not
        // on each (every new key, once the index is full); at once while
        // one project held everything (cheap), so a second is seen.
        if !self.projects.shared || self.index_full_writes.is_multiple_of(INDEX_REFRESH) {
            self.projects.refresh();
        }
        self.index_full_writes = self.index_full_writes.wrapping_add(1);
        let shared = self.projects.shared;
        if !shared && self.projects.get(project).items > 0 {
            // The writer's items are all there is: the coldest, with no
            // item read to ask whose it is.
            return self.index.chain_victim(home, |_| Some(1));
        }
        let (now, store) = (self.now, &*self);
        self.index.chain_victim(home, |e| {
            let it = store.item(e);
            if !is_live(it.exptime, now) {
                return Some(0);
            }
            let owner = store.ns.project(it.ns);
            if owner == project {
                return Some(1);
            }
            // Another's: beyond its reserve, and over its share where
            // shares are reckoned (with one project holding items, the
            // writer holds none, so that one is over).
            let held = store.projects.get(owner);
            let over = !shared || store.projects.over(owner);
            (held.bytes > held.quota.reserve && over).then_some(1)
        })
    }

    /// Background work met a broken invariant and skipped what it could not
    /// trust: count it (`stats`: store_invariant_skips), say so once in the
    /// log, and go on. One lost item is a cache miss; a panic would be every
    /// tenant's outage. Tests stay loud through the `debug_assert!`.
    #[cold]
    pub(super) fn skip_broken(&mut self, what: &'static str) {
        static WARNED: AtomicBool = AtomicBool::new(false);
        self.stats.invariant_skips += 1;
        if !WARNED.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                what,
                "store invariant broken: skipped the item and went on \
                 (counted in stats store_invariant_skips; logged once)"
            );
        }
        #[cfg(test)]
        let expected = self.expect_broken;
        #[cfg(not(test))]
        let expected = false;
        debug_assert!(expected, "store invariant broken: {what}");
    }

    /// Take back an item just written at `loc` that could not be indexed.
    pub(super) fn retire_unindexed(&mut self, loc: u64) {
        if loc & LARGE != 0 {
            let it = self.large.remove((loc & (LARGE - 1)) as u32);
            self.large_bytes -= it.charge();
        } else {
            let (seg, off) = index::split_seg_loc(loc);
            let s = &mut self.segs.segs[seg as usize];
            let h = layout::read(&s.data, off as usize);
            layout::mark_dead(&mut s.data, off as usize);
            s.live_items -= 1;
            s.live_bytes -= h.total_len() as u32;
        }
    }

    /// Keep a buffer for the next command, unless a big value (append to
    /// or incr of a large item) grew it: memory outside the limit must
    /// stay small.
    fn keep_scratch(&mut self, buf: Vec<u8>) {
        if buf.capacity() <= SCRATCH_KEEP {
            self.scratch = buf;
        }
    }

    /// Look up `k`, marking a hit fetched and more frequent.
    /// Hints that a request for `hash` is coming: its index bucket starts
    /// loading. A batch of requests calls this for each, then
    /// `prefetch_items` for each, then runs them, so their cache misses
    /// overlap instead of following one another.
    #[inline]
    pub fn prefetch_bucket(&self, hash: u64) {
        self.index.prefetch(index::home_of(hash));
    }

    /// Hints that the items whose entries carry `hash`'s tag will be read
    /// soon (their headers and keys start loading).
    #[inline]
    pub fn prefetch_items(&self, hash: u64) {
        self.index
            .find(index::home_of(hash), index::tag_of(hash), |e| {
                if e & LARGE == 0 {
                    let (seg, off) = index::split_seg_loc(e & LOC_MASK);
                    let data = &self.segs.segs[seg as usize].data;
                    let item = data[off as usize..].as_ptr();
                    for line in 0..PREFETCH_LINES {
                        index::prefetch(item.wrapping_add(line * CACHE_LINE));
                    }
                }
                false
            });
    }

    pub fn get(&mut self, k: Key<'_>, now: u32) -> Lookup<'_> {
        self.now = now;
        match self.find_live(&k, now) {
            Err(()) => Lookup::Expired,
            Ok(None) => Lookup::Missing,
            Ok(Some(pos)) => {
                let before = self.index.get(pos);
                self.note_fetch(before, now);
                let e = index::hit(before);
                self.index.put(pos, e);
                let it = self.item(e);
                Lookup::Hit(ItemView {
                    flags: it.flags,
                    value: it.value,
                    stamp: it.cas,
                    seal: &self.seal,
                })
            }
        }
    }

    /// gat/gats: a hit that also sets the exptime (cas unchanged).
    pub fn get_and_touch(&mut self, k: Key<'_>, exptime: u32, now: u32) -> Lookup<'_> {
        self.now = now;
        match self.find_live(&k, now) {
            Err(()) => Lookup::Expired,
            Ok(None) => Lookup::Missing,
            Ok(Some(pos)) => {
                let e = self.touch_at(pos, exptime);
                let it = self.item(e);
                Lookup::Hit(ItemView {
                    flags: it.flags,
                    value: it.value,
                    stamp: it.cas,
                    seal: &self.seal,
                })
            }
        }
    }

    /// Set the exptime of the item at `pos` in place and count a hit.
    pub(super) fn touch_at(&mut self, pos: Pos, exptime: u32) -> u64 {
        let before = self.index.get(pos);
        self.note_fetch(before, self.now);
        let e = index::hit(before);
        self.index.put(pos, e);
        self.set_exptime_of(e, exptime);
        e
    }

    pub fn touch(&mut self, k: Key<'_>, exptime: u32, now: u32) -> bool {
        self.now = now;
        match self.find_live(&k, now) {
            Ok(Some(pos)) => {
                self.touch_at(pos, exptime);
                true
            }
            _ => false,
        }
    }

    pub fn set(
        &mut self,
        k: Key<'_>,
        mode: SetMode,
        flags: u32,
        exptime: u32,
        value: &[u8],
        now: u32,
    ) -> SetOutcome {
        self.now = now;
        let found = self.find_live(&k, now).unwrap_or(None);
        if self.too_large(k.key, flags, value.len())
            || k.key.len() > u8::MAX as usize
            || self.over_cap(&k, flags, value.len())
        {
            if let (SetMode::Set, Some(pos)) = (mode, found) {
                let home = index::home_of(k.hash);
                self.unlink(home, pos, Why::Dropped);
            }
            return SetOutcome::TooLarge;
        }
        let old = found.map(|pos| (pos, self.index.get(pos) & LOC_MASK));
        // An overwrite is a use for eviction's purposes (not a fetch).
        let keep = found.map_or(0, |pos| self.index.get(pos) & FREQ_MASK);
        match (mode, found) {
            (SetMode::Set, _) | (SetMode::Add, None) => {}
            (SetMode::Add, Some(_)) => return SetOutcome::NotStored,
            (SetMode::Replace | SetMode::Append | SetMode::Prepend, None) => {
                return SetOutcome::NotStored
            }
            (SetMode::Replace, Some(_)) => {}
            (SetMode::Cas(_), None) => return SetOutcome::NotFound,
            (SetMode::Cas(cas), Some(pos)) => {
                if self.seal.unique(self.item(self.index.get(pos)).cas) != cas {
                    return SetOutcome::Exists;
                }
            }
            (SetMode::Append | SetMode::Prepend, Some(pos)) => {
                let it = self.item(self.index.get(pos));
                let vlen = it.value.len() + value.len();
                if self.too_large(k.key, it.flags, vlen) || self.over_cap(&k, it.flags, vlen) {
                    return SetOutcome::TooLarge;
                }
                let (flags, exptime) = (it.flags, it.exptime);
                // The old bytes may be evicted while room is made for the
                // new item, so they are copied out first.
                let mut old_value = std::mem::take(&mut self.scratch);
                old_value.clear();
                old_value.extend_from_slice(self.item(self.index.get(pos)).value);
                let parts = if mode == SetMode::Append {
                    [&old_value[..], value]
                } else {
                    [value, &old_value[..]]
                };
                let write = Write::new(self.now).replacing(old, keep);
                let r = self.store_item(&k, flags, exptime, parts, write);
                self.keep_scratch(old_value);
                return r;
            }
        }
        let write = Write::new(self.now).replacing(old, keep);
        let r = self.store_item(&k, flags, exptime, [value, &[]], write);
        if r == SetOutcome::OutOfMemory && mode == SetMode::Set {
            // As memcached: a set that could not be stored leaves no stale
            // value behind (it may have been evicted while room was sought).
            if let Some(pos) = self.find(&k) {
                self.unlink(index::home_of(k.hash), pos, Why::Dropped);
            }
        }
        r
    }

    pub fn delete(&mut self, k: Key<'_>, now: u32) -> bool {
        self.now = now;
        match self.find_live(&k, now) {
            Ok(Some(pos)) => {
                let home = index::home_of(k.hash);
                self.unlink(home, pos, Why::Dropped);
                true
            }
            _ => false,
        }
    }

    pub fn arith(&mut self, k: Key<'_>, incr: bool, delta: u64, now: u32) -> ArithOutcome {
        self.now = now;
        let Ok(Some(pos)) = self.find_live(&k, now) else {
            return ArithOutcome::NotFound;
        };
        let e = self.index.get(pos);
        let it = self.item(e);
        if memcached_chunked(k.key.len(), it.flags, it.value.len()) {
            return ArithOutcome::NonNumeric;
        }
        let Some(old) = arith::parse_u64(it.value) else {
            return ArithOutcome::NonNumeric;
        };
        let new = arith::apply(old, incr, delta);
        let (flags, exptime, old_len) = (it.flags, it.exptime, it.value.len());
        let mut buf = std::mem::take(&mut self.scratch);
        arith::render(new, old_len, &mut buf);
        // memcached rewrites in place (same item: fetched bit, stale, win
        // token and binary-key marks, and no new total_items) when the
        // digits fit, else links a new item with none of them.
        let grew = buf.len() > old_len;
        let (keep, marks) = if grew {
            (e & FREQ_MASK, 0)
        } else {
            let marks = self.meta_of(e) & !layout::ACCESS_MASK;
            (e & (FETCHED | FREQ_MASK), marks)
        };
        let fresh = Write::new(self.now);
        let write = Write {
            count: grew,
            meta: fresh.meta | marks,
            ..fresh.replacing(Some((pos, e & LOC_MASK)), keep)
        };
        let r = self.store_item(&k, flags, exptime, [&buf, &[]], write);
        self.keep_scratch(buf);
        match r {
            SetOutcome::Stored => ArithOutcome::Value(new),
            // Could not make room for the new digits; memcached reports
            // the same as for a vanished item.
            _ => ArithOutcome::NotFound,
        }
    }

    /// Drop every item of `ns` now, in constant time: items of `ns` with
    /// a cas below the namespace's new floor are invisible from here on
    /// and are removed when next met (lookup, eviction, sweep), moving no
    /// counter then.
    ///
    /// Segment items' cas grow with write time (a segment opened for
    /// writes takes the next block of cas values; items take base + offset)
    /// and so do large items' (one each from the counter), but the two
    /// interleave: the head's block is reserved ahead of large items
    /// written meanwhile. So the floor is a pair: the head's next write
    /// position for segment items (items eviction moves keep their
    /// original, segment-derived cas), and the counter for large items.
    pub fn flush_ns(&mut self, ns: NsId) {
        let segment = match self.head {
            NONE => self.next_cas,
            h => {
                let s = &self.segs.segs[h as usize];
                s.cas_base + u64::from(s.write)
            }
        };
        self.ns.set_floor(
            ns,
            Floor {
                segment,
                large: self.next_cas,
            },
        );
        let n = self.ns.get_mut(ns);
        let (items, bytes) = (n.curr_items, n.bytes);
        n.curr_items = 0;
        n.bytes = 0;
        self.stats.curr_items -= items;
        self.stats.bytes -= bytes;
        let p = self.ns.project(ns);
        self.projects.dropped(p, items, bytes);
    }

    /// Forget `ns` before its id names another namespace: its items are
    /// flushed (invisible from now on, however long they stay in memory)
    /// and its counters are zero.
    pub fn retire_ns(&mut self, ns: NsId) {
        self.flush_ns(ns);
        self.ns.reset_stats(ns);
        let p = self.ns.bound(ns);
        if p != UNBOUND {
            self.ns.set_project(ns, UNBOUND);
            self.projects.namespaces(p, false);
        }
    }

    /// Drop everything now; segment memory stays allocated for reuse.
    pub fn flush_all(&mut self) {
        self.index.clear();
        for seg in self.segs.with_items([self.head, self.main_head]) {
            self.segs.free(seg);
        }
        self.head = NONE;
        self.main_head = NONE;
        for slot in self.large.live_slots() {
            let it = self.large.remove(slot);
            self.large_bytes -= it.charge();
        }
        self.stats.curr_items = 0;
        self.stats.bytes = 0;
        self.ns.for_each(|n| {
            n.curr_items = 0;
            n.bytes = 0;
        });
        self.projects.clear_items();
    }

    /// Whether `k` is here and visible, changing nothing (tests compare
    /// a store that evicts with a model that does not).
    #[cfg(test)]
    pub(super) fn holds(&self, k: Key<'_>, now: u32) -> bool {
        self.find(&k)
            .map(|pos| self.index.get(pos))
            .is_some_and(|e| is_live(self.exptime_of(e), now) && !self.flushed(e))
    }

    pub fn stats(&self) -> StoreStats {
        StoreStats {
            overhead_bytes: (self.fixed_overhead
                + self.ns.memory_bytes()
                + self.projects.memory_bytes()) as u64,
            hash_bytes: self.index.touched_bytes() as u64,
            ..self.stats
        }
    }

    pub fn ns_stats(&self, ns: NsId) -> NsStats {
        self.ns.get(ns)
    }

    pub fn limit_bytes(&self) -> usize {
        self.limit
    }
}

/// Projects: fair sharing and quotas (see `fair`). The shard binds each
/// namespace to its project before its first command, and passes quota
/// changes on; the store charges items to projects and evicts by them.
impl Store {
    /// The project `ns` is bound to, if it was.
    #[inline]
    pub fn ns_project(&self, ns: NsId) -> Option<ProjectId> {
        match self.ns.bound(ns) {
            UNBOUND => None,
            p => Some(p),
        }
    }

    /// Charges `ns`'s items to `project` (limited by `quota` on this store)
    /// from now on. Items it already holds move with it.
    pub fn bind_ns(&mut self, ns: NsId, project: ProjectId, quota: Quota) {
        let was = self.ns.bound(ns);
        self.projects.set_quota(project, quota);
        if was == project {
            return;
        }
        let held = self.ns.get(ns);
        let from = self.ns.project(ns);
        self.projects.dropped(from, held.curr_items, held.bytes);
        if was != UNBOUND {
            self.projects.namespaces(was, false);
        }
        self.ns.set_project(ns, project);
        self.projects.namespaces(project, true);
        self.charge_namespaces();
        self.projects.charged(project, held.curr_items, held.bytes);
    }

    /// `project`'s quota on this store from now on. A lower cap takes
    /// effect at the project's next write.
    pub fn set_quota(&mut self, project: ProjectId, quota: Quota) {
        self.projects.set_quota(project, quota);
    }

    /// One project's figures on this store.
    pub fn project_stats(&self, project: ProjectId) -> ProjectStats {
        self.projects.get(project)
    }

    /// Every project holding items or bound here: its figures, and its fair
    /// share of this store's memory now (see `fair::fair_shares`).
    pub fn project_figures(&self) -> Vec<(ProjectId, ProjectStats, u64)> {
        let all: Vec<(ProjectId, ProjectStats)> = self.projects.each().collect();
        let holding: Vec<Demand> = all
            .iter()
            .filter(|(_, s)| s.items > 0)
            .map(|(_, s)| Demand {
                bytes: s.bytes,
                weight: s.quota.weight.max(1),
                reserve: s.quota.reserve,
                cap: s.quota.cap,
            })
            .collect();
        let mut shares = fair::fair_shares(&holding, self.limit as u64).into_iter();
        all.into_iter()
            .map(|(p, s)| {
                let share = if s.items > 0 {
                    shares.next().unwrap_or(0)
                } else {
                    // Not holding items: its share if it were the only newcomer.
                    let mut with: Vec<Demand> = holding.clone();
                    with.push(Demand {
                        bytes: 0,
                        weight: s.quota.weight.max(1),
                        reserve: s.quota.reserve,
                        cap: s.quota.cap,
                    });
                    fair::fair_shares(&with, self.limit as u64)
                        .last()
                        .copied()
                        .unwrap_or(0)
                };
                (p, s, share)
            })
            .collect()
    }

    /// Whether an item of `vlen` value bytes under `k` fits `project`'s
    /// `cap`, once the project's own items make room: a project at its cap
    /// evicts its own items, never another's. False if it cannot fit at all.
    fn within_cap(
        &mut self,
        project: ProjectId,
        cap: u64,
        k: &Key<'_>,
        flags: u32,
        vlen: usize,
    ) -> bool {
        let size = layout::item_size(k.ns, flags, k.key.len(), vlen) as u64;
        if size > cap {
            return false;
        }
        let held = self.projects.get(project).bytes;
        if held + size > cap {
            self.evict_own(project, held + size - cap);
        }
        self.projects.get(project).bytes + size <= cap
    }

    /// Whether an item is larger than its project's cap on this shard (the
    /// project's `memory=` divided among the shards): no eviction can make
    /// room for it, so it is too large for this project's cache, as one
    /// over `--max-item-size` is for every project's.
    fn over_cap(&self, k: &Key<'_>, flags: u32, vlen: usize) -> bool {
        let cap = self.projects.quota(self.ns.project(k.ns)).cap;
        cap != u64::MAX && layout::item_size(k.ns, flags, k.key.len(), vlen) as u64 > cap
    }

    /// Whether an item is over `--max-item-size` as memcached 1.6 counts
    /// an item: its 48-byte header, the key and a NUL, 4 bytes of client
    /// flags unless they are 0, the value and its CR LF, and an 8-byte cas.
    /// So a value meets the limit at the same length on either server.
    pub(super) fn too_large(&self, key: &[u8], flags: u32, value_len: usize) -> bool {
        memcached_item_size(key.len(), flags, value_len) > self.max_item_size
    }
}

/// An item's size as memcached 1.6 counts it against `-I` (`item_make_header`
/// plus the cas): the limit is the same for clients of either server. The
/// parser counts a storage line's item the same way (`Limits::too_large`).
pub(super) fn memcached_item_size(key_len: usize, flags: u32, value_len: usize) -> usize {
    const HEADER: usize = 48;
    const CAS: usize = 8;
    let flags = if flags == 0 { 0 } else { 4 };
    HEADER + key_len + 1 + flags + value_len + 2 + CAS
}

/// Whether memcached 1.6 would store the item in chunks: over its default
/// `slab_chunk_max`, 512 KiB as it counts an item. Its incr and decr call
/// such an item non-numeric before they read the value or compare a cas
/// (`do_add_delta`), so ferrocache does too.
pub(super) fn memcached_chunked(key_len: usize, flags: u32, value_len: usize) -> bool {
    const SLAB_CHUNK_MAX: usize = 512 * 1024;
    memcached_item_size(key_len, flags, value_len) > SLAB_CHUNK_MAX
}
