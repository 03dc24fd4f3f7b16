//! The contract's semantics as unit tests, run against any store type.
//!
//! Owns the table of memcached behaviours the store must reproduce. The
//! same suite runs against the reference model and the real store (see
//! `semantics_suite!`), so the model cannot drift from the contract either.

use crate::store::{Key, KeyHasher, NsId};

pub(crate) fn key(ns: NsId, k: &[u8]) -> Key<'_> {
    Key {
        ns,
        hash: KeyHasher::default().hash(ns, k),
        key: k,
    }
}

macro_rules! semantics_suite {
    ($suite:ident, $store:ty, $new:expr) => {
        mod $suite {
            use crate::store::tests::semantics::key;
            use crate::store::{ArithOutcome, Lookup, SetMode, SetOutcome};
            use crate::store::segmented::memcached_item_size;

            type Store = $store;
            const MB: usize = 1 << 20;

            /// A store under test: `$new(limit_bytes, max_item_size)`.
            fn make(limit_bytes: usize, max_item_size: usize) -> Store {
                $new(limit_bytes, max_item_size)
            }

            fn new() -> Store {
                make(64 * MB, MB)
            }

            fn value(s: &mut Store, k: &[u8], now: u32) -> Option<(Vec<u8>, u32, u64)> {
                match s.get(key(1, k), now) {
                    Lookup::Hit(v) => Some((v.value.to_vec(), v.flags, v.cas())),
                    _ => None,
                }
            }

            fn set(s: &mut Store, mode: SetMode, k: &[u8], v: &[u8]) -> SetOutcome {
                s.set(key(1, k), mode, 0, 0, v, 100)
            }

            #[test]
            fn set_then_get_returns_value_and_flags() {
                let mut s = new();
                assert_eq!(s.set(key(1, b"a"), SetMode::Set, 42, 0, b"hello", 100), SetOutcome::Stored);
                let (v, f, _) = value(&mut s, b"a", 100).unwrap();
                assert_eq!((v.as_slice(), f), (&b"hello"[..], 42));
                assert!(matches!(s.get(key(1, b"b"), 100), Lookup::Missing));
                // Same key bytes in another namespace is another item.
                assert!(matches!(s.get(key(2, b"a"), 100), Lookup::Missing));
            }

            #[test]
            fn empty_value_is_stored() {
                let mut s = new();
                assert_eq!(set(&mut s, SetMode::Set, b"e", b""), SetOutcome::Stored);
                assert_eq!(value(&mut s, b"e", 100).unwrap().0, b"");
            }

            #[test]
            fn every_mutation_takes_a_new_cas_but_touch_does_not() {
                let mut s = new();
                let mut seen = std::collections::HashSet::new();
                set(&mut s, SetMode::Set, b"a", b"1");
                let c0 = value(&mut s, b"a", 100).unwrap().2;
                assert!(seen.insert(c0));
                for mode in [SetMode::Set, SetMode::Replace, SetMode::Append, SetMode::Prepend] {
                    assert_eq!(set(&mut s, mode, b"a", b"1"), SetOutcome::Stored);
                    assert!(seen.insert(value(&mut s, b"a", 100).unwrap().2), "{mode:?}");
                }
                let c = value(&mut s, b"a", 100).unwrap().2;
                assert_eq!(set(&mut s, SetMode::Cas(c), b"a", b"7"), SetOutcome::Stored);
                assert!(seen.insert(value(&mut s, b"a", 100).unwrap().2));
                assert_eq!(s.arith(key(1, b"a"), true, 1, 100), ArithOutcome::Value(8));
                let c = value(&mut s, b"a", 100).unwrap().2;
                assert!(seen.insert(c));
                assert!(s.touch(key(1, b"a"), 500, 100));
                assert!(matches!(s.get_and_touch(key(1, b"a"), 600, 100), Lookup::Hit(v) if v.cas() == c));
                assert_eq!(value(&mut s, b"a", 100).unwrap().2, c);
            }

            #[test]
            fn expiry_boundary_and_reclaim_counters() {
                let mut s = new();
                s.set(key(1, b"t"), SetMode::Set, 0, 105, b"v", 100);
                assert!(value(&mut s, b"t", 104).is_some());
                assert!(matches!(s.get(key(1, b"t"), 105), Lookup::Expired));
                assert!(matches!(s.get(key(1, b"t"), 105), Lookup::Missing));
                let st = s.stats();
                assert_eq!((st.reclaimed, st.expired_unfetched, st.curr_items, st.bytes), (1, 0, 0, 0));
                // Never fetched before expiring.
                s.set(key(1, b"u"), SetMode::Set, 0, 105, b"v", 100);
                assert!(matches!(s.get(key(1, b"u"), 200), Lookup::Expired));
                assert_eq!((s.stats().reclaimed, s.stats().expired_unfetched), (2, 1));
            }

            #[test]
            fn already_expired_exptime_is_stored_but_invisible() {
                let mut s = new();
                assert_eq!(s.set(key(1, b"n"), SetMode::Set, 0, 99, b"v", 100), SetOutcome::Stored);
                assert!(matches!(s.get(key(1, b"n"), 100), Lookup::Expired));
                assert_eq!(s.stats().total_items, 1);
            }

            #[test]
            fn add_only_when_absent_or_expired() {
                let mut s = new();
                assert_eq!(set(&mut s, SetMode::Add, b"a", b"1"), SetOutcome::Stored);
                assert_eq!(set(&mut s, SetMode::Add, b"a", b"2"), SetOutcome::NotStored);
                assert_eq!(value(&mut s, b"a", 100).unwrap().0, b"1");
                s.set(key(1, b"x"), SetMode::Set, 0, 101, b"old", 100);
                assert_eq!(s.set(key(1, b"x"), SetMode::Add, 0, 0, b"new", 101), SetOutcome::Stored);
                assert_eq!(value(&mut s, b"x", 101).unwrap().0, b"new");
            }

            #[test]
            fn replace_append_prepend_need_a_live_item() {
                let mut s = new();
                for mode in [SetMode::Replace, SetMode::Append, SetMode::Prepend] {
                    assert_eq!(set(&mut s, mode, b"a", b"1"), SetOutcome::NotStored);
                }
                s.set(key(1, b"a"), SetMode::Set, 0, 101, b"x", 100);
                assert_eq!(s.set(key(1, b"a"), SetMode::Append, 0, 0, b"y", 101), SetOutcome::NotStored);
                assert_eq!(s.stats().curr_items, 0);
            }

            #[test]
            fn append_prepend_keep_flags_and_exptime() {
                let mut s = new();
                s.set(key(1, b"a"), SetMode::Set, 7, 500, b"mid", 100);
                assert_eq!(s.set(key(1, b"a"), SetMode::Append, 9, 0, b">>", 100), SetOutcome::Stored);
                assert_eq!(s.set(key(1, b"a"), SetMode::Prepend, 9, 0, b"<<", 100), SetOutcome::Stored);
                let (v, f, _) = value(&mut s, b"a", 100).unwrap();
                assert_eq!((v.as_slice(), f), (&b"<<mid>>"[..], 7));
                assert!(matches!(s.get(key(1, b"a"), 500), Lookup::Expired));
            }

            #[test]
            fn replace_takes_new_flags_and_exptime() {
                let mut s = new();
                s.set(key(1, b"a"), SetMode::Set, 7, 0, b"v", 100);
                s.set(key(1, b"a"), SetMode::Replace, 8, 300, b"w", 100);
                assert_eq!(value(&mut s, b"a", 299).unwrap().1, 8);
                assert!(matches!(s.get(key(1, b"a"), 300), Lookup::Expired));
            }

            #[test]
            fn cas_outcomes() {
                let mut s = new();
                assert_eq!(set(&mut s, SetMode::Cas(1), b"a", b"1"), SetOutcome::NotFound);
                set(&mut s, SetMode::Set, b"a", b"1");
                let c = value(&mut s, b"a", 100).unwrap().2;
                assert_eq!(set(&mut s, SetMode::Cas(c + 1000), b"a", b"2"), SetOutcome::Exists);
                assert_eq!(set(&mut s, SetMode::Cas(c), b"a", b"3"), SetOutcome::Stored);
                assert_eq!(set(&mut s, SetMode::Cas(c), b"a", b"4"), SetOutcome::Exists);
                assert_eq!(value(&mut s, b"a", 100).unwrap().0, b"3");
                s.set(key(1, b"e"), SetMode::Set, 0, 101, b"1", 100);
                let c = value(&mut s, b"e", 100).unwrap().2;
                assert_eq!(s.set(key(1, b"e"), SetMode::Cas(c), 0, 0, b"2", 101), SetOutcome::NotFound);
            }

            #[test]
            fn too_large_set_unlinks_the_old_item_but_add_does_not() {
                // Values of up to 1,000 bytes for one-byte keys, as memcached
                // counts an item against the limit.
                let mut s = make(64 * MB, memcached_item_size(1, 0, 1000));
                set(&mut s, SetMode::Set, b"a", b"old");
                set(&mut s, SetMode::Set, b"b", b"old");
                let big = vec![b'x'; 1001];
                assert_eq!(set(&mut s, SetMode::Add, b"b", &big), SetOutcome::TooLarge);
                assert_eq!(set(&mut s, SetMode::Replace, b"b", &big), SetOutcome::TooLarge);
                assert!(value(&mut s, b"b", 100).is_some());
                assert_eq!(set(&mut s, SetMode::Set, b"a", &big), SetOutcome::TooLarge);
                assert!(value(&mut s, b"a", 100).is_none());
                assert_eq!(set(&mut s, SetMode::Set, b"c", &big[..1000]), SetOutcome::Stored);
                assert_eq!(s.stats().curr_items, 2);
            }

            #[test]
            fn a_set_refused_for_want_of_memory_leaves_no_stale_value() {
                // Within the item limit, but larger than the whole store.
                let mut s = make(256 << 10, memcached_item_size(1, 0, MB));
                set(&mut s, SetMode::Set, b"a", b"old");
                set(&mut s, SetMode::Set, b"b", b"old");
                let big = vec![b'x'; 300 << 10];
                assert_eq!(set(&mut s, SetMode::Set, b"a", &big), SetOutcome::OutOfMemory);
                assert!(value(&mut s, b"a", 100).is_none(), "the old value is dropped");
                assert_eq!(value(&mut s, b"b", 100).unwrap().0, b"old");
            }

            #[test]
            fn append_past_max_item_size_is_too_large_and_keeps_the_item() {
                let mut s = make(64 * MB, memcached_item_size(1, 0, 1000));
                set(&mut s, SetMode::Set, b"a", &[b'x'; 600]);
                assert_eq!(set(&mut s, SetMode::Append, b"a", &[b'y'; 401]), SetOutcome::TooLarge);
                assert_eq!(set(&mut s, SetMode::Prepend, b"a", &[b'y'; 401]), SetOutcome::TooLarge);
                assert_eq!(value(&mut s, b"a", 100).unwrap().0.len(), 600);
                assert_eq!(set(&mut s, SetMode::Append, b"a", &[b'y'; 400]), SetOutcome::Stored);
                assert_eq!(value(&mut s, b"a", 100).unwrap().0.len(), 1000);
            }

            #[test]
            fn touch_and_gat_set_exptime() {
                let mut s = new();
                assert!(!s.touch(key(1, b"a"), 200, 100));
                assert!(matches!(s.get_and_touch(key(1, b"a"), 200, 100), Lookup::Missing));
                set(&mut s, SetMode::Set, b"a", b"v");
                assert!(s.touch(key(1, b"a"), 200, 100));
                assert!(value(&mut s, b"a", 199).is_some());
                assert!(matches!(s.get_and_touch(key(1, b"a"), 300, 199), Lookup::Hit(v) if v.value == b"v"));
                assert!(value(&mut s, b"a", 299).is_some());
                assert!(matches!(s.get(key(1, b"a"), 300), Lookup::Expired));
                // touch back to "never".
                s.set(key(1, b"b"), SetMode::Set, 0, 150, b"v", 100);
                assert!(s.touch(key(1, b"b"), 0, 100));
                assert!(value(&mut s, b"b", 10_000).is_some());
            }

            #[test]
            fn delete_reports_whether_a_live_item_went() {
                let mut s = new();
                assert!(!s.delete(key(1, b"a"), 100));
                set(&mut s, SetMode::Set, b"a", b"v");
                assert!(s.delete(key(1, b"a"), 100));
                assert!(!s.delete(key(1, b"a"), 100));
                assert!(value(&mut s, b"a", 100).is_none());
                s.set(key(1, b"e"), SetMode::Set, 0, 101, b"v", 100);
                assert!(!s.delete(key(1, b"e"), 101));
                let st = s.stats();
                assert_eq!((st.curr_items, st.bytes, st.reclaimed), (0, 0, 1));
            }

            #[test]
            fn incr_decr_memcached_quirks() {
                let mut s = new();
                assert_eq!(s.arith(key(1, b"n"), true, 1, 100), ArithOutcome::NotFound);
                s.set(key(1, b"n"), SetMode::Set, 5, 0, b"100", 100);
                assert_eq!(s.arith(key(1, b"n"), false, 91, 100), ArithOutcome::Value(9));
                let (v, f, _) = value(&mut s, b"n", 100).unwrap();
                assert_eq!((v.as_slice(), f), (&b"9  "[..], 5));
                assert_eq!(s.arith(key(1, b"n"), true, 991, 100), ArithOutcome::Value(1000));
                assert_eq!(value(&mut s, b"n", 100).unwrap().0, b"1000");
                assert_eq!(s.arith(key(1, b"n"), false, 5000, 100), ArithOutcome::Value(0));
                assert_eq!(value(&mut s, b"n", 100).unwrap().0, b"0   ");
                set(&mut s, SetMode::Set, b"m", b"18446744073709551615");
                assert_eq!(s.arith(key(1, b"m"), true, 2, 100), ArithOutcome::Value(1));
                assert_eq!(value(&mut s, b"m", 100).unwrap().0, b"1                   ");
                set(&mut s, SetMode::Set, b"q", b"12 abc");
                assert_eq!(s.arith(key(1, b"q"), true, 1, 100), ArithOutcome::Value(13));
                assert_eq!(value(&mut s, b"q", 100).unwrap().0, b"13    ");
                for bad in [&b""[..], b"abc", b"12abc", b"-1", b"18446744073709551616"] {
                    set(&mut s, SetMode::Set, b"x", bad);
                    assert_eq!(s.arith(key(1, b"x"), true, 1, 100), ArithOutcome::NonNumeric, "{bad:?}");
                }
                s.set(key(1, b"e"), SetMode::Set, 0, 101, b"1", 100);
                assert_eq!(s.arith(key(1, b"e"), true, 1, 101), ArithOutcome::NotFound);
            }

            #[test]
            fn arith_keeps_exptime() {
                let mut s = new();
                s.set(key(1, b"n"), SetMode::Set, 0, 200, b"1", 100);
                assert_eq!(s.arith(key(1, b"n"), true, 100, 100), ArithOutcome::Value(101));
                assert!(matches!(s.get(key(1, b"n"), 200), Lookup::Expired));
            }

            #[test]
            fn flush_ns_leaves_other_namespaces_alone() {
                let mut s = new();
                for i in 0..100u32 {
                    let k = i.to_string();
                    s.set(key(1, k.as_bytes()), SetMode::Set, 0, 0, b"one", 100);
                    s.set(key(2, k.as_bytes()), SetMode::Set, 0, 0, b"two", 100);
                }
                let before = s.ns_stats(2);
                s.flush_ns(1);
                assert_eq!(s.ns_stats(1).curr_items, 0);
                assert_eq!(s.ns_stats(1).bytes, 0);
                assert_eq!(s.ns_stats(2), before);
                assert_eq!(s.stats().curr_items, 100);
                assert_eq!(s.stats().bytes, before.bytes);
                for i in 0..100u32 {
                    let k = i.to_string();
                    assert!(matches!(s.get(key(1, k.as_bytes()), 100), Lookup::Missing));
                    assert!(matches!(s.get(key(2, k.as_bytes()), 100), Lookup::Hit(v) if v.value == b"two"));
                }
                // The namespace works again after a flush.
                s.set(key(1, b"0"), SetMode::Set, 0, 0, b"again", 100);
                assert!(matches!(s.get(key(1, b"0"), 100), Lookup::Hit(v) if v.value == b"again"));
                s.flush_all();
                let st = s.stats();
                assert_eq!((st.curr_items, st.bytes), (0, 0));
                assert!(matches!(s.get(key(2, b"0"), 100), Lookup::Missing));
                assert_eq!(s.ns_stats(2).curr_items, 0);
                s.set(key(2, b"0"), SetMode::Set, 0, 0, b"back", 100);
                assert!(matches!(s.get(key(2, b"0"), 100), Lookup::Hit(v) if v.value == b"back"));
            }

            #[test]
            fn stats_count_items_and_bytes() {
                let mut s = new();
                set(&mut s, SetMode::Set, b"a", b"12345");
                set(&mut s, SetMode::Set, b"a", b"123");
                s.set(key(3, b"b"), SetMode::Set, 1, 0, b"x", 100);
                let st = s.stats();
                assert_eq!((st.curr_items, st.total_items), (2, 3));
                let a = crate::store::layout::item_size(1, 0, 1, 3) as u64;
                let b = crate::store::layout::item_size(3, 1, 1, 1) as u64;
                assert_eq!(st.bytes, a + b);
                assert_eq!(s.ns_stats(1).bytes, a);
                assert_eq!(s.ns_stats(3).total_items, 1);
                assert_eq!(s.ns_stats(9), Default::default());
                assert_eq!(s.limit_bytes(), 64 * MB);
            }

            #[test]
            fn sweep_reclaims_expired_within_budget() {
                let mut s = new();
                for i in 0..50u32 {
                    s.set(key(1, i.to_string().as_bytes()), SetMode::Set, 0, 110, b"v", 100);
                }
                set(&mut s, SetMode::Set, b"keep", b"v");
                // A call may examine items without reclaiming any, so the
                // sum over enough calls is what must come out right.
                let mut swept = 0;
                for _ in 0..50 {
                    let n = s.sweep(200, 8);
                    assert!(n <= 8);
                    swept += n;
                }
                assert_eq!(swept, 50);
                let st = s.stats();
                assert_eq!((st.curr_items, st.reclaimed, st.expired_unfetched), (1, 50, 50));
                assert!(value(&mut s, b"keep", 200).is_some());
            }

            #[test]
            fn eviction_when_full_counts() {
                let limit = 4 * MB;
                let mut s = make(limit, MB);
                let v = vec![b'v'; 1000];
                for i in 0..20_000u32 {
                    let k = format!("key{i}");
                    assert_eq!(
                        s.set(key(1 + i % 3, k.as_bytes()), SetMode::Set, 0, 0, &v, 100),
                        SetOutcome::Stored
                    );
                    // What was just stored is readable.
                    assert!(matches!(s.get(key(1 + i % 3, k.as_bytes()), 100), Lookup::Hit(_)));
                }
                let st = s.stats();
                assert!(st.evictions > 0);
                assert!(st.bytes <= limit as u64);
                assert_eq!(st.total_items, 20_000);
                assert_eq!(st.curr_items + st.evictions, 20_000);
                let per_ns: u64 = (1..=3).map(|n| s.ns_stats(n).evictions).sum();
                assert_eq!(per_ns, st.evictions);
                let per_ns: u64 = (1..=3).map(|n| s.ns_stats(n).curr_items).sum();
                assert_eq!(per_ns, st.curr_items);
            }

            #[test]
            fn large_items_round_trip() {
                let mut s = make(64 * MB, 8 * MB);
                let big: Vec<u8> = (0..5 * MB).map(|i| (i % 251) as u8).collect();
                assert_eq!(s.set(key(1, b"big"), SetMode::Set, 3, 0, &big, 100), SetOutcome::Stored);
                let (v, f, _) = value(&mut s, b"big", 100).unwrap();
                assert!(v == big && f == 3);
                assert_eq!(set(&mut s, SetMode::Append, b"big", b"tail"), SetOutcome::Stored);
                assert_eq!(value(&mut s, b"big", 100).unwrap().0.len(), 5 * MB + 4);
                assert!(s.delete(key(1, b"big"), 100));
                assert_eq!(s.stats().bytes, 0);
                // Many large items through a small store: evicted, never over the limit.
                for i in 0..40u32 {
                    let k = format!("big{i}");
                    assert_eq!(
                        s.set(key(1, k.as_bytes()), SetMode::Set, 0, 0, &big, 100),
                        SetOutcome::Stored
                    );
                    assert!(value(&mut s, k.as_bytes(), 100).is_some());
                }
                assert!(s.stats().evictions > 0);
                assert!(s.stats().bytes <= 64 * MB as u64);
            }
        }
    };
}

semantics_suite!(
    model,
    crate::store::tests::model::Store,
    crate::store::tests::model::Store::new
);
semantics_suite!(segmented, crate::store::Store, |limit, max_item| {
    crate::store::Store::new(limit, max_item, crate::store::KeyHasher::default())
});
