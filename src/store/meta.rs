//! The store's side of the meta protocol: per-item metadata (hit before,
//! last access, stale, win token sent, binary key) and the operations that
//! read or set it.
//!
//! Owns memcached 1.6.18's item-flag rules for `mg` (`N` vivify, `R`
//! recache, `W`/`X`/`Z`), `ms` with `I` and `md` with `I`. The bits live in
//! the item header's meta field (`layout`) and the index entry's fetched
//! bit. It never parses protocol text; the shard turns the results into
//! replies.

use super::index::{self, FETCHED, FREQ_MASK, LARGE, LOC_MASK};
use super::layout::{self, ACCESS_MASK, META_BINARY_KEY, META_STALE, META_TOKEN_SENT};
use super::segmented::{is_live, memcached_chunked, Store, Why, Write};
use super::{Key, SetMode, SetOutcome};

/// One of `mg`'s flags that read or set the exptime (server seconds, 0
/// never).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TtlFlag {
    /// `T`: the new exptime.
    Touch(u32),
    /// `N`: an item this request created takes this exptime here.
    Vivify(u32),
    /// `R`: win when the exptime, as the flags before it left it, is
    /// below this.
    Recache(u32),
}

/// How `mg` treats the item.
#[derive(Clone, Copy, Debug, Default)]
pub struct MetaGetOptions {
    /// `T`, `N` and `R` in the order the request gave them, each at most
    /// once: memcached applies them left to right after the lookup, each
    /// to the exptime the ones before it left.
    pub ttl_flags: [Option<TtlFlag>; 3],
    /// `N`: on a miss, create an empty item, never expiring until a
    /// `TtlFlag::Vivify` gives it its exptime.
    pub vivify: bool,
    /// Mark the item hit and accessed now (not with `u`).
    pub bump: bool,
    /// Hand out the win token (`W`) where one is won; not when the request
    /// ends in an error.
    pub mark_won: bool,
    /// Compute the item's cas unique (`c`); without it `MetaState::cas` is
    /// 0, sparing the unique's permutation on every lookup.
    pub want_cas: bool,
}

/// What `ms` stores: the value and how (`meta_set`'s request).
#[derive(Clone, Copy, Debug)]
pub struct MetaSet<'v> {
    pub mode: SetMode,
    /// Client flags (`F`).
    pub flags: u32,
    /// Server seconds, 0 never.
    pub exptime: u32,
    pub value: &'v [u8],
    /// `I`: with a `Cas` mode, an older cas stores the value as stale.
    pub invalidate: bool,
    /// `b`: the key is binary.
    pub binary_key: bool,
    /// Answer the stored item's cas unique (`c`); otherwise 0 comes back.
    pub want_cas: bool,
}

/// An item's metadata, as it was before the command.
#[derive(Clone, Copy, Debug)]
pub struct MetaState {
    pub flags: u32,
    pub cas: u64,
    pub exptime: u32,
    pub size: usize,
    /// Header, key and value bytes (`me`'s size).
    pub total: usize,
    /// memcached would store it in chunks: its incr and decr refuse it as
    /// non-numeric before they compare a cas (`memcached_chunked`).
    pub chunked: bool,
    pub hit_before: bool,
    /// Seconds since its last access.
    pub idle: u32,
    pub stale: bool,
    pub token_sent: bool,
    pub binary_key: bool,
}

/// An `mg` hit: the item after the command, and what the flags report.
#[derive(Clone, Copy, Debug)]
pub struct MetaHit<'a> {
    pub before: MetaState,
    /// The exptime as the first `i` of the `ttl_flags` left it: what a `t`
    /// placed after them shows.
    pub exptimes: [u32; 4],
    pub value: &'a [u8],
    /// `W`: this client won the right to recache.
    pub won: bool,
}

#[derive(Debug)]
pub enum MetaLookup<'a> {
    Hit(MetaHit<'a>),
    Expired,
    Missing,
}

/// `md`'s outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetaDeleteOutcome {
    Deleted,
    NotFound,
    Exists,
}

/// The meta field after a fetch, as memcached's segmented LRU keeps it: the
/// first fetch only marks the item fetched (the index bit); later fetches
/// move its last access to now.
fn fetched_meta(meta: u32, before: u64, now: u32) -> u32 {
    if before & FETCHED == 0 {
        meta
    } else {
        (meta & !ACCESS_MASK) | (now & ACCESS_MASK)
    }
}

impl Store {
    pub(super) fn meta_of(&self, e: u64) -> u32 {
        if e & LARGE != 0 {
            self.large.get((e & (LARGE - 1)) as u32).meta
        } else {
            let (seg, off) = index::split_seg_loc(e & LOC_MASK);
            layout::meta(&self.segs.segs[seg as usize].data, off as usize)
        }
    }

    fn set_meta_of(&mut self, e: u64, meta: u32) {
        if e & LARGE != 0 {
            self.large.get_mut((e & (LARGE - 1)) as u32).meta = meta;
        } else {
            let (seg, off) = index::split_seg_loc(e & LOC_MASK);
            layout::set_meta(&mut self.segs.segs[seg as usize].data, off as usize, meta);
        }
    }

    /// Sets the exptime of the item index entry `e` points at.
    pub(super) fn set_exptime_of(&mut self, e: u64, exptime: u32) {
        if e & LARGE != 0 {
            self.large.get_mut((e & (LARGE - 1)) as u32).exptime = exptime;
        } else {
            let (seg, off) = index::split_seg_loc(e & LOC_MASK);
            let s = &mut self.segs.segs[seg as usize];
            layout::set_exptime(&mut s.data, off as usize, exptime);
            s.note_exptime(exptime);
        }
    }

    /// Records a fetch of the item an entry (as it was before the fetch)
    /// points at: the classic retrievals call this too.
    pub(super) fn note_fetch(&mut self, before: u64, now: u32) {
        if before & FETCHED != 0 {
            let meta = self.meta_of(before);
            self.set_meta_of(before, fetched_meta(meta, before, now));
        }
    }

    /// The item's metadata; `cas` is its unique when `want_cas`, else 0.
    fn state_of(&self, e: u64, now: u32, want_cas: bool) -> MetaState {
        let meta = self.meta_of(e);
        let it = self.item(e);
        let klen = if e & LARGE != 0 {
            self.large.get((e & (LARGE - 1)) as u32).klen
        } else {
            let (seg, off) = index::split_seg_loc(e & LOC_MASK);
            layout::read(&self.segs.segs[seg as usize].data, off as usize).klen
        };
        MetaState {
            flags: it.flags,
            cas: if want_cas {
                self.seal.unique(it.cas)
            } else {
                0
            },
            exptime: it.exptime,
            size: it.value.len(),
            total: layout::item_size(it.ns, it.flags, klen, it.value.len()),
            chunked: memcached_chunked(klen, it.flags, it.value.len()),
            hit_before: e & FETCHED != 0,
            idle: now.wrapping_sub(meta) & ACCESS_MASK,
            stale: meta & META_STALE != 0,
            token_sent: meta & META_TOKEN_SENT != 0,
            binary_key: meta & META_BINARY_KEY != 0,
        }
    }

    /// The live item under `k`, read without changing it (`me`, and the
    /// checks of `ma` and `ms`).
    pub fn meta_peek(&mut self, k: Key<'_>, now: u32) -> Option<MetaState> {
        self.now = now;
        let pos = self.find_live(&k, now).ok()??;
        Some(self.state_of(self.index.get(pos), now, true))
    }

    /// `ma`'s `T` and `N`: sets the live item's exptime and nothing else.
    /// memcached's `ma` reads the item without a bump and only writes its
    /// exptime, so unlike `touch` this neither marks it hit nor moves its
    /// last access. False if there is no live item.
    pub fn meta_set_exptime(&mut self, k: Key<'_>, exptime: u32, now: u32) -> bool {
        self.now = now;
        match self.find_live(&k, now) {
            Ok(Some(pos)) => {
                self.set_exptime_of(self.index.get(pos), exptime);
                true
            }
            _ => false,
        }
    }

    /// `mg`: a lookup that may touch, vivify and hand out the win token.
    pub fn meta_get(&mut self, k: Key<'_>, opts: MetaGetOptions, now: u32) -> MetaLookup<'_> {
        self.now = now;
        let (pos, created) = match self.find_live(&k, now) {
            Ok(Some(pos)) => (pos, false),
            missed => {
                if !opts.vivify {
                    return if missed.is_err() {
                        MetaLookup::Expired
                    } else {
                        MetaLookup::Missing
                    };
                };
                // Created never expiring, and never marked binary, even
                // when the request's key was base64; `N` gives it its
                // exptime below, in its place among the flags.
                let write = Write {
                    meta: now & ACCESS_MASK,
                    ..Write::new(now)
                };
                let stored = self.store_item(&k, 0, 0, [&[], &[]], write);
                match (stored, self.find(&k)) {
                    (SetOutcome::Stored, Some(pos)) => (pos, true),
                    _ => return MetaLookup::Missing,
                }
            }
        };
        let mut e = self.index.get(pos);
        let before = self.state_of(e, now, opts.want_cas);
        let mut exptime = before.exptime;
        let mut exptimes = [exptime; 4];
        let mut won = false;
        for (i, flag) in opts.ttl_flags.iter().flatten().enumerate() {
            match *flag {
                TtlFlag::Touch(t) => exptime = t,
                TtlFlag::Vivify(t) => {
                    if created {
                        exptime = t;
                        won = true;
                    }
                }
                TtlFlag::Recache(r) => {
                    if !before.token_sent && !created && exptime != 0 && exptime < r {
                        won = true;
                    }
                }
            }
            if let Some(after) = exptimes.get_mut(i + 1..) {
                after.fill(exptime);
            }
        }
        if exptime != before.exptime {
            self.set_exptime_of(e, exptime);
        }
        if before.stale && !before.token_sent {
            won = true;
        }
        let mut meta = self.meta_of(e);
        if won && opts.mark_won {
            meta |= META_TOKEN_SENT;
        }
        if opts.bump {
            meta = fetched_meta(meta, e, now);
            e = index::hit(e);
            self.index.put(pos, e);
        }
        self.set_meta_of(e, meta);
        let value = self.item(e).value;
        MetaLookup::Hit(MetaHit {
            before,
            exptimes,
            value,
            won,
        })
    }

    /// `ms`: a store with memcached's meta rules. A `Cas` mode with
    /// `invalidate` stores a value whose cas is older than the item's,
    /// keeping that cas and marking the item stale. Answers the outcome
    /// and, when stored, the new item's cas.
    ///
    /// An item that cannot be made (too large, or no room for it) leaves
    /// no old value behind in any mode but append and prepend: memcached's
    /// `ms` allocates the new item before it looks at the mode, and unlinks
    /// the key when that fails. (Classic commands do so only for `set`,
    /// which `Store::set` handles.)
    pub fn meta_set(&mut self, k: Key<'_>, set: MetaSet<'_>, now: u32) -> (SetOutcome, u64) {
        let mode = set.mode;
        let (r, unique) = self.meta_store(k, set, now);
        let unmade = matches!(r, SetOutcome::TooLarge | SetOutcome::OutOfMemory);
        if unmade && matches!(mode, SetMode::Add | SetMode::Replace | SetMode::Cas(_)) {
            if let Some(pos) = self.find(&k) {
                self.unlink(index::home_of(k.hash), pos, Why::Dropped);
            }
        }
        (r, unique)
    }

    fn meta_store(&mut self, k: Key<'_>, set: MetaSet<'_>, now: u32) -> (SetOutcome, u64) {
        let MetaSet {
            mode,
            flags,
            exptime,
            value,
            invalidate,
            binary_key,
            want_cas,
        } = set;
        self.now = now;
        if let (SetMode::Cas(cas), true) = (mode, invalidate) {
            if let Ok(Some(pos)) = self.find_live(&k, now) {
                let e = self.index.get(pos);
                let old = self.state_of(e, now, false);
                // Write stamps are ordered; the uniques clients see are not.
                let old_stamp = self.item(e).cas;
                if self.seal.stamp(cas) < old_stamp && !self.too_large(k.key, flags, value.len()) {
                    let meta = (now & ACCESS_MASK)
                        | META_STALE
                        | if old.token_sent { META_TOKEN_SENT } else { 0 }
                        | if binary_key { META_BINARY_KEY } else { 0 };
                    // memcached keeps the item's exptime (a `T` is ignored).
                    let write = Write {
                        meta,
                        own_cas: Some(old_stamp),
                        ..Write::new(now).replacing(Some((pos, e & LOC_MASK)), e & FREQ_MASK)
                    };
                    let r = self.store_item(&k, flags, old.exptime, [value, &[]], write);
                    let unique = if r == SetOutcome::Stored {
                        self.seal.unique(old_stamp)
                    } else {
                        0
                    };
                    return (r, unique);
                }
            }
        }
        let r = self.set(k, mode, flags, exptime, value, now);
        if r != SetOutcome::Stored || !(binary_key || want_cas) {
            return (r, 0);
        }
        let Some(pos) = self.find(&k) else {
            return (r, 0);
        };
        let e = self.index.get(pos);
        if binary_key {
            let meta = self.meta_of(e) | META_BINARY_KEY;
            self.set_meta_of(e, meta);
        }
        let unique = if want_cas {
            self.seal.unique(self.item(e).cas)
        } else {
            0
        };
        (r, unique)
    }

    /// `md`: delete, or with `invalidate` mark stale under a new cas (and
    /// the exptime `ttl`, if given), clearing the win token.
    pub fn meta_delete(
        &mut self,
        k: Key<'_>,
        compare_cas: Option<u64>,
        invalidate: bool,
        ttl: Option<u32>,
        now: u32,
    ) -> MetaDeleteOutcome {
        self.now = now;
        let Ok(Some(pos)) = self.find_live(&k, now) else {
            return MetaDeleteOutcome::NotFound;
        };
        let e = self.index.get(pos);
        let it = self.item(e);
        if compare_cas.is_some_and(|c| c != self.seal.unique(it.cas)) {
            return MetaDeleteOutcome::Exists;
        }
        if !invalidate {
            let home = index::home_of(k.hash);
            self.unlink(home, pos, Why::Dropped);
            return MetaDeleteOutcome::Deleted;
        }
        let (flags, exptime) = (it.flags, ttl.unwrap_or(it.exptime));
        let value = it.value.to_vec();
        let meta = (self.meta_of(e) | META_STALE) & !META_TOKEN_SENT;
        let keep = e & (FETCHED | FREQ_MASK);
        let write = Write {
            count: false,
            meta,
            ..Write::new(self.now).replacing(Some((pos, e & LOC_MASK)), keep)
        };
        match self.store_item(&k, flags, exptime, [&value, &[]], write) {
            SetOutcome::Stored => MetaDeleteOutcome::Deleted,
            _ => MetaDeleteOutcome::NotFound,
        }
    }

    /// Whether an exptime is still in the future (for the shard's `t`).
    pub fn meta_is_live(exptime: u32, now: u32) -> bool {
        is_live(exptime, now)
    }
}
