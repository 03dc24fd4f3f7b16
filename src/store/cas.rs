//! cas uniques as clients see them.
//!
//! Owns turning an item's write stamp into the unique `gets` shows. It never
//! decides when a stamp changes (every mutation writes a new copy, which
//! takes a new stamp; see `layout`) and never stores anything per item.
//!
//! Stamps are positions in the shard's write stream (a segment's base plus
//! the item's offset, or the next value of a counter for large items), shared
//! by every tenant on the shard. Shown as they are, the difference between
//! two of one tenant's uniques would tell it how many bytes other tenants
//! wrote in between. So the unique is a keyed permutation of the stamp: a
//! Feistel network over the stamp's two 31-bit halves, whose round function
//! is SipHash-1-3 (std's `RandomState`) under a key drawn at random when the
//! store is made. A permutation of a value never reused is never reused
//! either, so uniques stay unique per mutation; without the key, a unique
//! says nothing about the stamp. It costs nothing per item and runs only
//! when a reply shows a unique.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

/// Feistel rounds: four make a strong pseudorandom permutation out of a
/// pseudorandom round function (Luby-Rackoff).
const ROUNDS: u32 = 4;

/// Bits of each Feistel half. Stamps and uniques stay below 2^62: stamps
/// count bytes written (never near 2^62), and clients print uniques into
/// 20-character buffers (libmemcached refuses a cas of 10^19 or more) or
/// read them as signed 64-bit numbers.
const HALF: u32 = 31;
const HALF_MASK: u64 = (1 << HALF) - 1;
/// Every stamp and unique is below this.
pub(crate) const UNIQUE_LIMIT: u64 = 1 << (2 * HALF);

/// The secret that turns stamps into uniques.
#[derive(Clone, Debug)]
pub(crate) struct CasSeal {
    key: RandomState,
}

impl CasSeal {
    /// A seal under a fresh random key.
    pub fn new() -> CasSeal {
        CasSeal {
            key: RandomState::new(),
        }
    }

    /// The unique clients see for `stamp`.
    pub fn unique(&self, stamp: u64) -> u64 {
        debug_assert!(stamp < UNIQUE_LIMIT, "stamp {stamp} past 2^62");
        let (mut left, mut right) = ((stamp >> HALF) & HALF_MASK, stamp & HALF_MASK);
        for round in 0..ROUNDS {
            let f = self.key.hash_one((round, right)) & HALF_MASK;
            (left, right) = (right, left ^ f);
        }
        (left << HALF) | right
    }

    /// The stamp a unique came from: `unique`'s inverse. For commands that
    /// order uniques (meta's invalidation compares "older than"): uniques
    /// are not ordered, the stamps behind them are.
    #[allow(dead_code)] // the meta commands' invalidation uses it
    pub fn stamp(&self, unique: u64) -> u64 {
        // A number no unique can be (a client's own) maps somewhere in
        // range; it never matches a live item's stamp by construction.
        let (mut left, mut right) = ((unique >> HALF) & HALF_MASK, unique & HALF_MASK);
        for round in (0..ROUNDS).rev() {
            let f = self.key.hash_one((round, left)) & HALF_MASK;
            (left, right) = (right ^ f, left);
        }
        (left << HALF) | right
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn a_permutation_of_stamps() {
        let seal = CasSeal::new();
        // Distinct stamps (neighbours, and ones that differ in one half
        // only) give distinct uniques.
        let stamps: HashSet<u64> = (0..20_000u64)
            .chain((0..20_000).map(|i| i << HALF))
            .chain((0..20_000).map(|i| (i << HALF) | HALF_MASK))
            .collect();
        let uniques: HashSet<u64> = stamps.iter().map(|&s| seal.unique(s)).collect();
        assert!(stamps.len() > 59_000);
        // Below 2^62: 19 digits at most, positive as a signed number.
        assert!(uniques.iter().all(|&u| u < UNIQUE_LIMIT));
        assert_eq!(uniques.len(), stamps.len());
        assert_eq!(seal.unique(12345), seal.unique(12345));
    }

    #[test]
    fn stamp_inverts_unique() {
        let seal = CasSeal::new();
        for stamp in [0, 1, 14, 1 << 20, UNIQUE_LIMIT - 1, 0x0ead_beef_0123_4567] {
            assert_eq!(seal.stamp(seal.unique(stamp)), stamp);
            assert_eq!(seal.unique(seal.stamp(stamp)), stamp);
        }
    }

    #[test]
    fn neighbouring_stamps_give_unrelated_uniques() {
        let seal = CasSeal::new();
        // The write stream moving on by n bytes must not move the unique
        // by anything small or constant: about half the bits flip.
        let mut deltas = HashSet::new();
        for base in [1u64, 1 << 20, 77 << 20, (1 << 40) + 3] {
            for n in [1u64, 14, 1021, 4096] {
                let (a, b) = (seal.unique(base), seal.unique(base + n));
                let flipped = (a ^ b).count_ones();
                assert!((10..=52).contains(&flipped), "{base}+{n}: {flipped} bits");
                assert!(deltas.insert(b.wrapping_sub(a)), "repeated delta");
            }
        }
        // Another store's key gives other uniques.
        let other = CasSeal::new();
        assert_ne!(seal.unique(5), other.unique(5));
    }
}
