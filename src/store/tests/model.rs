//! The reference model of the store: the contract's semantics, written plainly.
//!
//! Owns nothing in production (it is compiled for tests only). It keeps every item in a `HashMap` keyed by
//! (namespace, key) with an exact LRU, so that property tests can run the
//! real store and this model side by side and demand the same answers. It
//! must never be clever: each rule of the contract appears here once, in
//! the most obvious form.

use std::collections::{BTreeMap, HashMap};

use crate::store::arith;
use crate::store::cas::CasSeal;
use crate::store::layout::item_size;
use crate::store::segmented::memcached_item_size;
use crate::store::{
    ArithOutcome, ItemView, Key, Lookup, NsId, NsStats, SetMode, SetOutcome, StoreStats,
};

struct Item {
    flags: u32,
    exptime: u32,
    cas: u64,
    value: Vec<u8>,
    fetched: bool,
    /// Position in the LRU (`Store::lru`).
    tick: u64,
}

impl Item {
    fn live(&self, now: u32) -> bool {
        self.exptime == 0 || self.exptime > now
    }
}

type MapKey = (NsId, Vec<u8>);

pub struct Store {
    items: HashMap<MapKey, Item>,
    lru: BTreeMap<u64, MapKey>,
    tick: u64,
    cas: u64,
    limit: usize,
    max_item_size: usize,
    used: usize,
    stats: StoreStats,
    ns: HashMap<NsId, NsStats>,
    scratch: Vec<u8>,
    /// Uniques are sealed stamps here too (the model counts stamps plainly).
    seal: CasSeal,
}

fn size_of(ns: NsId, key: &[u8], it: &Item) -> usize {
    item_size(ns, it.flags, key.len(), it.value.len())
}

impl Store {
    pub fn new(limit_bytes: usize, max_item_size: usize) -> Store {
        Store {
            items: HashMap::new(),
            lru: BTreeMap::new(),
            tick: 0,
            cas: 0,
            limit: limit_bytes,
            max_item_size,
            used: 0,
            stats: StoreStats::default(),
            ns: HashMap::new(),
            scratch: Vec::new(),
            seal: CasSeal::new(),
        }
    }

    fn mk(k: &Key<'_>) -> MapKey {
        (k.ns, k.key.to_vec())
    }

    fn unlink(&mut self, mk: &MapKey) -> Item {
        let it = self.items.remove(mk).expect("unlink of a present item");
        self.lru.remove(&it.tick);
        let size = size_of(mk.0, &mk.1, &it) as u64;
        self.used -= size as usize;
        self.stats.curr_items -= 1;
        self.stats.bytes -= size;
        let ns = self.ns.entry(mk.0).or_default();
        ns.curr_items -= 1;
        ns.bytes -= size;
        it
    }

    /// The item under `mk` if live; an expired one is reclaimed on the way.
    /// Returns whether an expired item was found.
    fn reclaim_if_expired(&mut self, mk: &MapKey, now: u32) -> bool {
        match self.items.get(mk) {
            Some(it) if !it.live(now) => {
                let it = self.unlink(mk);
                self.stats.reclaimed += 1;
                if !it.fetched {
                    self.stats.expired_unfetched += 1;
                }
                true
            }
            _ => false,
        }
    }

    fn bump(&mut self, mk: &MapKey) {
        self.tick += 1;
        let tick = self.tick;
        let it = self.items.get_mut(mk).unwrap();
        self.lru.remove(&it.tick);
        it.tick = tick;
        it.fetched = true;
        self.lru.insert(tick, mk.clone());
    }

    fn link(
        &mut self,
        mk: MapKey,
        (flags, exptime): (u32, u32),
        value: Vec<u8>,
        count: bool,
        fetched: bool,
    ) -> bool {
        let size = item_size(mk.0, flags, mk.1.len(), value.len());
        if size > self.limit {
            return false;
        }
        while self.used + size > self.limit {
            let (_, victim) = self.lru.first_key_value().expect("something to evict");
            let victim = victim.clone();
            let it = self.unlink(&victim);
            self.stats.evictions += 1;
            if !it.fetched {
                self.stats.evicted_unfetched += 1;
            }
            self.ns.entry(victim.0).or_default().evictions += 1;
        }
        self.cas += 1;
        self.tick += 1;
        let it = Item {
            flags,
            exptime,
            cas: self.cas,
            value,
            fetched,
            tick: self.tick,
        };
        self.lru.insert(self.tick, mk.clone());
        self.used += size;
        self.stats.curr_items += 1;
        self.stats.bytes += size as u64;
        let ns = self.ns.entry(mk.0).or_default();
        ns.curr_items += 1;
        ns.bytes += size as u64;
        if count {
            self.stats.total_items += 1;
            ns.total_items += 1;
        }
        self.items.insert(mk, it);
        true
    }

    fn view(&self, mk: &MapKey) -> ItemView<'_> {
        let it = &self.items[mk];
        ItemView {
            flags: it.flags,
            value: &it.value,
            stamp: it.cas,
            seal: &self.seal,
        }
    }

    pub fn get(&mut self, k: Key<'_>, now: u32) -> Lookup<'_> {
        self.lookup(k, None, now)
    }

    pub fn get_and_touch(&mut self, k: Key<'_>, exptime: u32, now: u32) -> Lookup<'_> {
        self.lookup(k, Some(exptime), now)
    }

    /// `get`, and where `touch` says, the item's new exptime.
    fn lookup(&mut self, k: Key<'_>, touch: Option<u32>, now: u32) -> Lookup<'_> {
        let mk = Self::mk(&k);
        if self.reclaim_if_expired(&mk, now) {
            return Lookup::Expired;
        }
        if !self.items.contains_key(&mk) {
            return Lookup::Missing;
        }
        self.bump(&mk);
        if let Some(exptime) = touch {
            self.items.get_mut(&mk).unwrap().exptime = exptime;
        }
        Lookup::Hit(self.view(&mk))
    }

    pub fn touch(&mut self, k: Key<'_>, exptime: u32, now: u32) -> bool {
        let mk = Self::mk(&k);
        self.reclaim_if_expired(&mk, now);
        if !self.items.contains_key(&mk) {
            return false;
        }
        self.bump(&mk);
        self.items.get_mut(&mk).unwrap().exptime = exptime;
        true
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
        let mk = Self::mk(&k);
        self.reclaim_if_expired(&mk, now);
        let present = self.items.contains_key(&mk);
        if memcached_item_size(k.key.len(), flags, value.len()) > self.max_item_size {
            if mode == SetMode::Set && present {
                self.unlink(&mk);
            }
            return SetOutcome::TooLarge;
        }
        let (flags, exptime, value) = match mode {
            SetMode::Set => (flags, exptime, value.to_vec()),
            SetMode::Add if present => return SetOutcome::NotStored,
            SetMode::Add => (flags, exptime, value.to_vec()),
            SetMode::Replace if !present => return SetOutcome::NotStored,
            SetMode::Replace => (flags, exptime, value.to_vec()),
            SetMode::Append | SetMode::Prepend if !present => return SetOutcome::NotStored,
            SetMode::Append | SetMode::Prepend => {
                let it = &self.items[&mk];
                let joined = it.value.len() + value.len();
                if memcached_item_size(k.key.len(), it.flags, joined) > self.max_item_size {
                    return SetOutcome::TooLarge;
                }
                let joined = if mode == SetMode::Append {
                    [&it.value[..], value].concat()
                } else {
                    [value, &it.value[..]].concat()
                };
                (it.flags, it.exptime, joined)
            }
            SetMode::Cas(_) if !present => return SetOutcome::NotFound,
            SetMode::Cas(cas) if self.seal.unique(self.items[&mk].cas) != cas => {
                return SetOutcome::Exists
            }
            SetMode::Cas(_) => (flags, exptime, value.to_vec()),
        };
        if present {
            self.unlink(&mk);
        }
        if self.link(mk, (flags, exptime), value, true, false) {
            SetOutcome::Stored
        } else {
            SetOutcome::OutOfMemory
        }
    }

    pub fn delete(&mut self, k: Key<'_>, now: u32) -> bool {
        let mk = Self::mk(&k);
        self.reclaim_if_expired(&mk, now);
        if !self.items.contains_key(&mk) {
            return false;
        }
        self.unlink(&mk);
        true
    }

    pub fn arith(&mut self, k: Key<'_>, incr: bool, delta: u64, now: u32) -> ArithOutcome {
        let mk = Self::mk(&k);
        self.reclaim_if_expired(&mk, now);
        let Some(it) = self.items.get(&mk) else {
            return ArithOutcome::NotFound;
        };
        let Some(old) = arith::parse_u64(&it.value) else {
            return ArithOutcome::NonNumeric;
        };
        let new = arith::apply(old, incr, delta);
        let mut buf = std::mem::take(&mut self.scratch);
        arith::render(new, it.value.len(), &mut buf);
        // memcached counts a new item (total_items) only when the digits no
        // longer fit in the old value and it allocates a replacement.
        let grew = buf.len() > it.value.len();
        // In place, the item keeps its fetched bit too.
        let fetched = !grew && it.fetched;
        let (flags, exptime) = (it.flags, it.exptime);
        self.unlink(&mk);
        self.link(mk, (flags, exptime), buf.clone(), grew, fetched);
        self.scratch = buf;
        ArithOutcome::Value(new)
    }

    pub fn flush_ns(&mut self, ns: NsId) {
        let keys: Vec<MapKey> = self.items.keys().filter(|k| k.0 == ns).cloned().collect();
        for k in keys {
            self.unlink(&k);
        }
    }

    pub fn flush_all(&mut self) {
        let keys: Vec<MapKey> = self.items.keys().cloned().collect();
        for k in keys {
            self.unlink(&k);
        }
    }

    pub fn sweep(&mut self, now: u32, budget: usize) -> usize {
        let expired: Vec<MapKey> = self
            .items
            .iter()
            .filter(|(_, it)| !it.live(now))
            .map(|(k, _)| k.clone())
            .take(budget)
            .collect();
        for k in &expired {
            self.reclaim_if_expired(k, now);
        }
        expired.len()
    }

    pub fn stats(&self) -> StoreStats {
        self.stats
    }

    pub fn ns_stats(&self, ns: NsId) -> NsStats {
        self.ns.get(&ns).copied().unwrap_or_default()
    }

    pub fn limit_bytes(&self) -> usize {
        self.limit
    }
}
