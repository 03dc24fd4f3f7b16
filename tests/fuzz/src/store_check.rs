//! The store fuzz check: a byte stream decoded into store commands, run on
//! a small `Store` (1 KiB segments, so eviction merges, segment reuse and
//! partial sweeps happen every few commands), with values that are often
//! valid-looking item headers.
//!
//! Shared by the cargo-fuzz target `store` and by
//! `tests/fuzz_regressions.rs` (both include this file by path), so it may
//! use only `ferrocache` and `std`. The in-crate twin with the full
//! reference model is `src/store/props.rs` (`run_evicting`); this one
//! checks what holds whatever eviction did:
//! - a hit returns exactly the last value stored under the key, with its
//!   flags, and only while it should be live;
//! - no background step met a broken invariant (`invariant_skips` is 0,
//!   and a debug build panics at the skip itself);
//! - memory stays within the limit, and the counters add up.

use std::collections::HashMap;

use ferrocache::store::{ArithOutcome, Key, KeyHasher, Lookup, NsId, SetMode, SetOutcome, Store};

const LIMIT: usize = 64 << 10;
const MAX_ITEM: usize = 8 << 10;

struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn next(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    fn take(&mut self, n: usize) -> Vec<u8> {
        let n = n.min(self.0.len());
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a.to_vec()
    }
}

fn key_of(k: u8) -> (NsId, Vec<u8>) {
    let ns = [1, 2, 3, 300][usize::from(k % 4)];
    (ns, format!("k{}", k % 16).into_bytes())
}

fn key(ns: NsId, k: &[u8]) -> Key<'_> {
    Key {
        ns,
        hash: KeyHasher::default().hash(ns, k),
        key: k,
    }
}

/// A valid item of key `k`, already expired, as the store lays it out
/// (9-byte header: klen, vlen, flags; ns; exptime), repeated after `phase`
/// bytes to `n` bytes.
fn fake_items(k: u8, phase: usize, n: usize) -> Vec<u8> {
    let (ns, kb) = key_of(k);
    let mut one = Vec::new();
    let wide = ns >= 256;
    let w0 = kb.len() as u32 | (4 << 8) | if wide { 1 << 29 } else { 0 };
    one.extend_from_slice(&w0.to_le_bytes());
    one.push(if wide { 0 } else { ns as u8 });
    one.extend_from_slice(&1u32.to_le_bytes());
    if wide {
        one.extend_from_slice(&ns.to_le_bytes());
    }
    one.extend_from_slice(&kb);
    one.extend_from_slice(b"zzzz");
    let mut out = vec![b'z'; phase];
    while out.len() < n {
        out.extend_from_slice(&one);
    }
    out.truncate(n);
    out
}

fn exptime(b: u8, now: u32) -> u32 {
    match b % 4 {
        0 => 0,
        1 => now - 1,
        2 => now + 1,
        _ => now + 3,
    }
}

fn value(input: &mut Bytes<'_>) -> Vec<u8> {
    match input.next() % 4 {
        0 => {
            let n = usize::from(input.next() % 32);
            input.take(n)
        }
        1 => {
            let n = usize::from(input.next()) * 16 + usize::from(input.next());
            let phase = usize::from(input.next() % 16);
            fake_items(input.next(), phase, n)
        }
        2 => vec![input.next(); usize::from(input.next()) * 48],
        _ => u64::from(input.next()).to_string().into_bytes(),
    }
}

/// The model: the last value stored under each key, with flags and exptime.
type Model = HashMap<(NsId, Vec<u8>), (Vec<u8>, u32, u32)>;

fn live(exptime: u32, now: u32) -> bool {
    exptime == 0 || exptime > now
}

/// Runs the commands `data` encodes; panics on any broken check.
pub fn check_store(data: &[u8]) {
    let mut input = Bytes(data);
    let mut store = Store::new(LIMIT, MAX_ITEM, KeyHasher::default());
    let mut model = Model::new();
    let mut now = 1000u32;
    while !input.0.is_empty() {
        let op = input.next() % 9;
        let k = input.next();
        let (ns, kb) = key_of(k);
        let mk = (ns, kb.clone());
        match op {
            0 | 3 => {
                let mode = match (op, input.next() % 4) {
                    (0, 0) => SetMode::Add,
                    (0, 1) => SetMode::Replace,
                    (0, _) => SetMode::Set,
                    (_, 0 | 1) => SetMode::Append,
                    _ => SetMode::Prepend,
                };
                let flags = u32::from(input.next() % 3);
                let exp = exptime(input.next(), now);
                let v = value(&mut input);
                let r = store.set(key(ns, &kb), mode, flags, exp, &v, now);
                let old = model.remove(&mk).filter(|m| live(m.2, now));
                if r == SetOutcome::Stored {
                    let new = match (mode, old) {
                        (SetMode::Append, Some(m)) => ([m.0, v].concat(), m.1, m.2),
                        (SetMode::Prepend, Some(m)) => ([v, m.0].concat(), m.1, m.2),
                        (SetMode::Append | SetMode::Prepend, None) => {
                            panic!("{mode:?} stored on a key the store should not hold")
                        }
                        _ => (v, flags, exp),
                    };
                    model.insert(mk, new);
                } else if let Some(m) = old {
                    // Not stored: the old item stays, unless the store
                    // evicted it, or it was a too large `set`.
                    if store_holds(&mut store, ns, &kb, now, &m) {
                        model.insert(mk, m);
                    }
                }
            }
            1 => match store.get(key(ns, &kb), now) {
                Lookup::Hit(v) => {
                    let m = model.get(&mk).filter(|m| live(m.2, now));
                    let m = m.unwrap_or_else(|| panic!("hit on {mk:?}, which is gone"));
                    assert_eq!((v.value, v.flags), (&m.0[..], m.1), "{mk:?}");
                }
                _ => {
                    model.remove(&mk);
                }
            },
            2 => {
                store.delete(key(ns, &kb), now);
                model.remove(&mk);
            }
            4 => {
                let budget = match input.next() {
                    0 => usize::MAX,
                    b => usize::from(b),
                };
                store.sweep(now, budget);
            }
            5 => now += u32::from(k % 4),
            6 => {
                let delta = u64::from(input.next());
                match store.arith(key(ns, &kb), k & 1 == 0, delta, now) {
                    ArithOutcome::Value(n) => {
                        let Some(m) = model.get_mut(&mk).filter(|m| live(m.2, now)) else {
                            panic!("incr on {mk:?}, which is gone");
                        };
                        // The digits, padded with spaces when shorter than
                        // the old value (memcached rewrites in place).
                        let Lookup::Hit(v) = store.get(key(ns, &kb), now) else {
                            panic!("{mk:?} gone right after incr");
                        };
                        let digits = n.to_string();
                        assert!(v.value.starts_with(digits.as_bytes()), "{mk:?}");
                        assert!(v.value[digits.len()..].iter().all(|&b| b == b' '));
                        assert_eq!(v.flags, m.1);
                        m.0 = v.value.to_vec();
                    }
                    ArithOutcome::NonNumeric => {}
                    ArithOutcome::NotFound => {
                        // Gone, or no room for the new digits (then the
                        // old value stays).
                        if let Some(m) = model.remove(&mk).filter(|m| live(m.2, now)) {
                            if store_holds(&mut store, ns, &kb, now, &m) {
                                model.insert(mk, m);
                            }
                        }
                    }
                }
            }
            7 => {
                let exp = exptime(input.next(), now);
                if store.touch(key(ns, &kb), exp, now) {
                    if let Some(m) = model.get_mut(&mk) {
                        m.2 = exp;
                    }
                } else {
                    model.remove(&mk);
                }
            }
            _ => {
                store.flush_ns(ns);
                model.retain(|(n, _), _| *n != ns);
            }
        }
        let st = store.stats();
        assert_eq!(
            st.invariant_skips, 0,
            "a background step met a broken invariant"
        );
        assert!(store.memory_bytes() <= LIMIT);
        let per_ns: u64 = [1, 2, 3, 300]
            .iter()
            .map(|&n| store.ns_stats(n).curr_items)
            .sum();
        assert_eq!(per_ns, st.curr_items);
    }
}

/// Whether the store still holds `m` under the key (a get, which checks it).
fn store_holds(store: &mut Store, ns: NsId, kb: &[u8], now: u32, m: &(Vec<u8>, u32, u32)) -> bool {
    match store.get(key(ns, kb), now) {
        Lookup::Hit(v) => {
            assert_eq!((v.value, v.flags), (&m.0[..], m.1));
            true
        }
        _ => false,
    }
}
