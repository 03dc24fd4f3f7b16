//! The key hash's seed (`--hash-seed`; random at every start by default):
//! where every key lands, shard and index chain, follows from it. Its own
//! test binary, because seeding changes the hash for the whole process.

use ferrocache::store::{key_hash, seed_key_hash};

#[test]
fn the_seed_decides_every_hash() {
    let keys: Vec<Vec<u8>> = (0..1000).map(|i| format!("key-{i}").into_bytes()).collect();
    let hashes = |seed| {
        seed_key_hash(seed);
        keys.iter().map(|k| key_hash(1, k)).collect::<Vec<_>>()
    };
    let one = hashes(1);
    let two = hashes(2);
    assert_eq!(one, hashes(1), "one seed, one placement");
    let moved = one.iter().zip(&two).filter(|(a, b)| a != b).count();
    assert_eq!(moved, keys.len(), "another seed must move every hash");
}
