//! The keyspace: namespace ids, the seeded key hash, and which shard owns a
//! hash.
//!
//! Owns [`NsId`], [`KeyHasher`] (a value built once at start from
//! `--hash-seed` and passed down to every shard, store and connection) and
//! [`shard_of`]. It imports nothing from the crate, so the store, the router
//! and tenancy can all depend on it without depending on each other. It
//! never holds state: no statics, nothing shared but copies.

/// Interned (project, cache) namespace. Items store this id, never the names.
pub type NsId = u32;

/// The key hash under one process's seeds. Every core must route a key to
/// the same shard and every store must find it on the same index chain, so
/// the server builds one at start ([`KeyHasher::from_seed`]) and copies it
/// to each core.
///
/// The server seeds it at random (or from `--hash-seed`): with seeds anyone
/// can know (this source's, [`KeyHasher::default`]), a client could search
/// offline for keys that share one index chain, and slow the shard, every
/// tenant's on it, with lookups that walk it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyHasher {
    seeds: [u64; 4],
}

impl Default for KeyHasher {
    /// Fixed seeds, for unit tests and benches only: a server always builds
    /// its hasher with [`KeyHasher::from_seed`].
    fn default() -> KeyHasher {
        KeyHasher {
            seeds: [
                0x243f_6a88_85a3_08d3,
                0x1319_8a2e_0370_7344,
                0xa409_3822_299f_31d0,
                0x082e_fa98_ec4e_6c89,
            ],
        }
    }
}

impl KeyHasher {
    /// The hasher whose four seeds spread from `seed`.
    pub fn from_seed(seed: u64) -> KeyHasher {
        let mut state = seed;
        KeyHasher {
            seeds: [(); 4].map(|()| splitmix64(&mut state)),
        }
    }

    /// The 64-bit hash of a key in its namespace. The router picks the
    /// shard from the high 32 bits ([`shard_of`]); the store's index files
    /// the key by the low 32 bits and tags it with bits 32..48. The store
    /// rehashes the keys of items it visits without a request (eviction,
    /// the sweep, index splits), so items need not carry their hash.
    #[inline]
    pub fn hash(&self, ns: NsId, key: &[u8]) -> u64 {
        self.for_ns(ns).hash(key)
    }

    /// A hasher for the keys of one namespace, which a connection keeps
    /// while its namespace stays the same.
    #[inline]
    pub fn for_ns(&self, ns: NsId) -> NsHasher {
        let [a, b, c, d] = self.seeds;
        NsHasher {
            state: ahash::RandomState::with_seeds(a ^ u64::from(ns), b, c, d),
        }
    }
}

/// Hashes the keys of one namespace: `KeyHasher::hash(ns, key)` with the
/// namespace's state built once.
#[derive(Clone)]
pub struct NsHasher {
    state: ahash::RandomState,
}

impl NsHasher {
    #[inline]
    pub fn hash(&self, key: &[u8]) -> u64 {
        self.state.hash_one(key)
    }
}

/// The shard that owns `hash`, from its high 32 bits (the store indexes by
/// the low bits, so the two choices stay independent).
pub fn shard_of(hash: u64, shards: usize) -> usize {
    (((hash >> 32) * shards as u64) >> 32) as usize
}

/// SplitMix64 (Steele, Lea, Flood '14): spreads one seed over four words.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_decides_every_hash() {
        let keys: Vec<Vec<u8>> = (0..1000).map(|i| format!("key-{i}").into_bytes()).collect();
        let hashes = |seed| {
            let h = KeyHasher::from_seed(seed);
            keys.iter().map(|k| h.hash(1, k)).collect::<Vec<_>>()
        };
        let one = hashes(1);
        assert_eq!(one, hashes(1), "one seed, one placement");
        let moved = one.iter().zip(&hashes(2)).filter(|(a, b)| a != b).count();
        assert_eq!(moved, keys.len(), "another seed must move every hash");
    }

    #[test]
    fn a_namespace_hasher_agrees_with_the_keyed_hash() {
        let h = KeyHasher::from_seed(7);
        for ns in [0, 1, 9999] {
            assert_eq!(h.for_ns(ns).hash(b"key"), h.hash(ns, b"key"));
        }
    }

    #[test]
    fn shard_choice_is_stable_and_spread() {
        let h = KeyHasher::default().for_ns(0);
        assert_eq!(h.hash(b"key"), KeyHasher::default().hash(0, b"key"));
        let mut counts = [0usize; 4];
        for i in 0..40_000 {
            counts[shard_of(h.hash(format!("key:{i}").as_bytes()), 4)] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn namespaces_route_independently() {
        let h = KeyHasher::default();
        let differ = (0..1000)
            .filter(|i| {
                h.hash(1, format!("{i}").as_bytes()) != h.hash(2, format!("{i}").as_bytes())
            })
            .count();
        assert_eq!(differ, 1000);
    }
}
