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
//! THIS FILE IS THE CONTRACT: the types, and [`Contract`], what a shard may
//! ask of its [`Store`]. The implementation lives in submodules. The store
//! imports nothing from the crate but [`crate::keyspace`], a leaf.

pub use crate::keyspace::{KeyHasher, NsId};

/// A key as the store sees it: namespace, the client's key bytes, and
/// `KeyHasher::hash(ns, key)`, which the router already computed.
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
    /// Value larger than the configured max item size, or than its
    /// project's cap on this shard. A `Set` that fails so also unlinks the
    /// old item under that key, as memcached does.
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
    /// Memory the store itself holds beyond `limit` (index, headers), for
    /// `stats`. Its per-namespace and per-project tables are in it too,
    /// though they are also charged within the limit (`memory_bytes`), as
    /// namespaces are bound.
    pub overhead_bytes: u64,
    /// Bytes of the index in use now (memcached's `hash_bytes`): it grows
    /// with the items, up to its share of `overhead_bytes`.
    pub hash_bytes: u64,
    /// Items (or rests of segments) that background work skipped because
    /// an internal invariant did not hold, instead of stopping the server.
    /// Zero unless there is a bug.
    pub invariant_skips: u64,
    /// Allocations that found fair eviction freeing nothing (memory held
    /// by projects under their share or within a reserve) and evicted from
    /// every project to make room (`eviction`).
    pub fair_fallbacks: u64,
    /// Writes refused because their index chain was full of other
    /// projects' items that eviction must keep (`index_victim`): a flood of
    /// small items at the index's bound.
    pub index_refusals: u64,
}

/// Per-namespace figures, so a tenant's `stats` never reveals another's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NsStats {
    pub curr_items: u64,
    pub bytes: u64,
    pub evictions: u64,
    pub total_items: u64,
}

mod arith;
mod cas;
mod eviction;
mod fair;
mod ghost;
mod index;
mod large;
mod layout;
mod meta;
mod ns_table;
mod segment;
mod segmented;
mod sweep;
#[cfg(test)]
mod tests;

pub use meta::{
    MetaDeleteOutcome, MetaGetOptions, MetaHit, MetaLookup, MetaSet, MetaState, TtlFlag,
};
pub use segmented::Store;

/// What a shard may ask of its store, all single-threaded on the shard.
/// [`Store`] implements it by delegating to its own methods (spread over
/// the submodules), so this list cannot drift from them; the meta
/// commands' extensions are in `meta`.
pub trait Contract {
    /// A readable item, marked fetched and recently used.
    fn get(&mut self, k: Key<'_>, now: u32) -> Lookup<'_>;
    /// `gat`/`gats`: `get`, then the item's exptime set to `exptime`.
    fn get_and_touch(&mut self, k: Key<'_>, exptime: u32, now: u32) -> Lookup<'_>;
    /// Sets a live item's exptime; whether there was one.
    fn touch(&mut self, k: Key<'_>, exptime: u32, now: u32) -> bool;
    /// set/add/replace/append/prepend/cas, as `mode` says.
    fn set(
        &mut self,
        k: Key<'_>,
        mode: SetMode,
        flags: u32,
        exptime: u32,
        value: &[u8],
        now: u32,
    ) -> SetOutcome;
    /// Unlinks a live item; whether there was one.
    fn delete(&mut self, k: Key<'_>, now: u32) -> bool;
    /// incr (wrapping at 2^64) or decr (floored at 0) of a decimal value.
    fn arith(&mut self, k: Key<'_>, incr: bool, delta: u64, now: u32) -> ArithOutcome;
    /// Drops every item of one namespace, now.
    fn flush_ns(&mut self, ns: NsId);
    /// Drops a namespace whose id is about to name another: its items and
    /// its figures.
    fn retire_ns(&mut self, ns: NsId);
    /// Drops everything, now.
    fn flush_all(&mut self);
    /// Reclaims expired items, at most `budget` examined; returns how many
    /// it reclaimed.
    fn sweep(&mut self, now: u32, budget: usize) -> usize;
    /// Hints for a batch: loads the index bucket of `hash` (first stage).
    fn prefetch_bucket(&self, hash: u64);
    /// Hints for a batch: loads the items the bucket of `hash` points at
    /// (second stage, once the bucket has arrived).
    fn prefetch_items(&self, hash: u64);
    fn stats(&self) -> StoreStats;
    fn ns_stats(&self, ns: NsId) -> NsStats;
    /// The bound on `memory_bytes`.
    fn limit_bytes(&self) -> usize;
    /// Bytes of segments and large items held now: never above
    /// `limit_bytes`.
    fn memory_bytes(&self) -> usize;
    /// The key hash every [`Key::hash`] given to this store came from.
    fn keys(&self) -> KeyHasher;
}

impl Contract for Store {
    fn get(&mut self, k: Key<'_>, now: u32) -> Lookup<'_> {
        Store::get(self, k, now)
    }
    fn get_and_touch(&mut self, k: Key<'_>, exptime: u32, now: u32) -> Lookup<'_> {
        Store::get_and_touch(self, k, exptime, now)
    }
    fn touch(&mut self, k: Key<'_>, exptime: u32, now: u32) -> bool {
        Store::touch(self, k, exptime, now)
    }
    fn set(
        &mut self,
        k: Key<'_>,
        mode: SetMode,
        flags: u32,
        exptime: u32,
        value: &[u8],
        now: u32,
    ) -> SetOutcome {
        Store::set(self, k, mode, flags, exptime, value, now)
    }
    fn delete(&mut self, k: Key<'_>, now: u32) -> bool {
        Store::delete(self, k, now)
    }
    fn arith(&mut self, k: Key<'_>, incr: bool, delta: u64, now: u32) -> ArithOutcome {
        Store::arith(self, k, incr, delta, now)
    }
    fn flush_ns(&mut self, ns: NsId) {
        Store::flush_ns(self, ns)
    }
    fn retire_ns(&mut self, ns: NsId) {
        Store::retire_ns(self, ns)
    }
    fn flush_all(&mut self) {
        Store::flush_all(self)
    }
    fn sweep(&mut self, now: u32, budget: usize) -> usize {
        Store::sweep(self, now, budget)
    }
    fn prefetch_bucket(&self, hash: u64) {
        Store::prefetch_bucket(self, hash)
    }
    fn prefetch_items(&self, hash: u64) {
        Store::prefetch_items(self, hash)
    }
    fn stats(&self) -> StoreStats {
        Store::stats(self)
    }
    fn ns_stats(&self, ns: NsId) -> NsStats {
        Store::ns_stats(self, ns)
    }
    fn limit_bytes(&self) -> usize {
        Store::limit_bytes(self)
    }
    fn memory_bytes(&self) -> usize {
        Store::memory_bytes(self)
    }
    fn keys(&self) -> KeyHasher {
        Store::keys(self)
    }
}
// Fair sharing between projects (see `fair`): `Store::bind_ns`,
// `set_quota`, `project_stats`, `project_figures`.
pub use fair::{fair_shares, max_min, Demand, ProjectId, ProjectStats, Quota};
