//! The store: one shard's items, in memory, executed single-threaded.
//!
//! Owns item layout, the index, expiry and eviction for one shard. It never
//! touches a socket, never parses protocol text, and never looks at another
//! shard: the caller (the shard) has already routed the key here.
//!
//! Time is the shard's `now`: whole seconds on the server's clock (see
//! `crate::clock`). An `exptime` of 0 means "never"; any other value is the
//! absolute second at which the item stops being visible (so a value <= now
//! is already expired).
//!
//! THIS FILE IS THE CONTRACT. The implementation lives in submodules.

use std::sync::atomic::{AtomicU64, Ordering};

/// Interned (project, cache) namespace. Items store this id, never the names.
pub type NsId = u32;

/// The key hash's seeds. Every core must route a key to the same shard, so
/// they are process-wide; set once at start (`seed_key_hash`), before any
/// store holds an item. Until then (unit tests, benches) they are fixed.
static SEEDS: [AtomicU64; 4] = [
    AtomicU64::new(0x243f_6a88_85a3_08d3),
    AtomicU64::new(0x1319_8a2e_0370_7344),
    AtomicU64::new(0xa409_3822_299f_31d0),
    AtomicU64::new(0x082e_fa98_ec4e_6c89),
];

/// Seeds the key hash from `seed` for the life of the process. The server
/// seeds it at random: with seeds anyone can know (this source's), a client
/// could search offline for keys that share one index chain, and slow the
/// shard, every tenant's on it, with lookups that walk it.
pub fn seed_key_hash(seed: u64) {
    let mut state = seed;
    for s in &SEEDS {
        s.store(splitmix64(&mut state), Ordering::Relaxed);
    }
}

/// SplitMix64 (Steele, Lea, Flood '14): spreads one seed over four words.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The 64-bit hash of a key in its namespace. The router picks the shard
/// from the high 32 bits; the index files the key by the low 32 bits and
/// tags it with bits 32..48. The store rehashes the keys of items it visits
/// without a request (eviction, the sweep, index splits), so items need not
/// carry their hash.
#[inline]
pub fn key_hash(ns: NsId, key: &[u8]) -> u64 {
    let seed = |i: usize| SEEDS[i].load(Ordering::Relaxed);
    ahash::RandomState::with_seeds(seed(0) ^ u64::from(ns), seed(1), seed(2), seed(3)).hash_one(key)
}

/// A key as the store sees it: namespace, the client's key bytes, and
/// `key_hash(ns, key)`, which the router already computed.
#[derive(Clone, Copy, Debug)]
pub struct Key<'a> {
    pub ns: NsId,
    pub hash: u64,
    pub key: &'a [u8],
}

/// Storage command semantics (memcached's set/add/replace/append/prepend/cas).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetMode {
    Set,
    Add,
    Replace,
    Append,
    Prepend,
    Cas(u64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetOutcome {
    Stored,
    NotStored,
    /// cas: item exists but its cas unique differs.
    Exists,
    /// cas: no such item.
    NotFound,
    /// Value larger than the configured max item size. A `Set` that fails so
    /// also unlinks the old item under that key, as memcached does.
    TooLarge,
    /// Could not make room (e.g. every candidate is pinned). Rare.
    OutOfMemory,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArithOutcome {
    /// The new value after incr (wrapping at 2^64) or decr (floored at 0).
    Value(u64),
    NotFound,
    NonNumeric,
}

/// A readable item. Borrowed from the store: valid until the next `&mut` call.
#[derive(Clone, Copy, Debug)]
pub struct ItemView<'a> {
    pub flags: u32,
    pub value: &'a [u8],
    /// The item's write stamp; `cas()` shows it sealed.
    stamp: u64,
    seal: &'a cas::CasSeal,
}

impl ItemView<'_> {
    /// The item's cas unique, as `gets` shows it: unique per mutation, and
    /// telling nothing about other tenants' writes (see `cas`). Computed
    /// here, so a plain `get` does not pay for it.
    pub fn cas(&self) -> u64 {
        self.seal.unique(self.stamp)
    }
}

#[derive(Debug)]
pub enum Lookup<'a> {
    Hit(ItemView<'a>),
    /// Present in the index but past its exptime (counts as get_expired).
    Expired,
    Missing,
}

/// Whole-store counters, memcached's meanings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub curr_items: u64,
    pub total_items: u64,
    /// Bytes of items currently stored, as memcached's `bytes`.
    pub bytes: u64,
    pub evictions: u64,
    /// Expired items reclaimed (on access or by the sweep).
    pub reclaimed: u64,
    /// Items that expired (or were evicted after expiring) without ever being fetched.
    pub expired_unfetched: u64,
    pub evicted_unfetched: u64,
    /// Memory the store itself holds beyond `limit` (index, headers), for `stats`.
    pub overhead_bytes: u64,
    /// Bytes of the index in use now (memcached's `hash_bytes`): it grows
    /// with the items, up to its share of `overhead_bytes`.
    pub hash_bytes: u64,
    /// Items (or rests of segments) that background work skipped because
    /// an internal invariant did not hold, instead of stopping the server.
    /// Zero unless there is a bug.
    pub invariant_skips: u64,
}

/// Per-namespace figures, so a tenant's `stats` never reveals another's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NsStats {
    pub curr_items: u64,
    pub bytes: u64,
    pub evictions: u64,
    pub total_items: u64,
}

// The `Store` type (implemented in submodules and re-exported here) offers,
// all single-threaded on its shard:
//
//   Store::new(limit_bytes: usize, max_item_size: usize) -> Store
//   fn get(&mut self, k: Key, now: u32) -> Lookup<'_>            // marks fetched / recency
//   fn get_and_touch(&mut self, k: Key, exptime: u32, now: u32) -> Lookup<'_>   // gat/gats
//   fn touch(&mut self, k: Key, exptime: u32, now: u32) -> bool
//   fn set(&mut self, k: Key, mode: SetMode, flags: u32, exptime: u32,
//          value: &[u8], now: u32) -> SetOutcome
//   fn delete(&mut self, k: Key, now: u32) -> bool
//   fn arith(&mut self, k: Key, incr: bool, delta: u64, now: u32) -> ArithOutcome
//   fn flush_ns(&mut self, ns: NsId)            // drop every item of one namespace, now
//   fn flush_all(&mut self)                     // drop everything, now
//   fn sweep(&mut self, now: u32, budget: usize) -> usize   // reclaim expired; returns count
//   fn stats(&self) -> StoreStats
//   fn ns_stats(&self, ns: NsId) -> NsStats
//   fn limit_bytes(&self) -> usize

mod arith;
mod cas;
mod eviction;
mod index;
mod large;
mod layout;
mod meta;
#[cfg(test)]
mod model;
mod ns_table;
#[cfg(test)]
mod props;
mod segment;
mod segmented;
#[cfg(test)]
mod store_tests;
mod sweep;

#[cfg(test)]
mod semantics;

// Beyond the list above, `Store` also offers `memory_bytes()`: the bytes of
// segments and large items it holds now, never above `limit_bytes()`.
pub use meta::{MetaDeleteOutcome, MetaGetOptions, MetaHit, MetaLookup, MetaSet, MetaState};
pub use segmented::Store;
