//! Property tests: the segment store against the reference model.
//!
//! Owns the random command streams and the comparison. Memory is big
//! enough that neither store evicts, so every reply and every counter must
//! agree. cas values differ between the two (the model counts, the store
//! derives them from positions), so the test keeps a one-to-one map between
//! them and translates the cas a `cas` command sends.

use std::collections::HashMap;

use proptest::prelude::*;

use super::model;
use super::semantics::key;
use super::{ArithOutcome, Lookup, NsId, SetMode, SetOutcome, Store};

#[derive(Clone, Debug)]
enum Op {
    Get(u8),
    Gat(u8, Exp),
    Touch(u8, Exp),
    Set(u8, Mode, u32, Exp, Val),
    Delete(u8),
    Arith(u8, bool, u64),
    FlushNs(NsId),
    FlushAll,
    Sweep,
    Tick(u32),
}

#[derive(Clone, Copy, Debug)]
enum Mode {
    Set,
    Add,
    Replace,
    Append,
    Prepend,
    /// cas with the n-th cas value seen so far (or a bogus one).
    Cas(usize),
}

#[derive(Clone, Copy, Debug)]
enum Exp {
    Never,
    Past,
    In(u32),
}

#[derive(Clone, Debug)]
enum Val {
    Bytes(Vec<u8>),
    Number(u64),
    /// A run of one byte, to reach segment and large sizes cheaply.
    Fill(u8, usize),
}

impl Val {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Val::Bytes(b) => b.clone(),
            Val::Number(n) => n.to_string().into_bytes(),
            Val::Fill(b, n) => vec![*b; *n],
        }
    }
}

fn exp_at(e: Exp, now: u32) -> u32 {
    match e {
        Exp::Never => 0,
        Exp::Past => now - 1,
        Exp::In(d) => now + d,
    }
}

fn arb_exp() -> impl Strategy<Value = Exp> {
    prop_oneof![
        3 => Just(Exp::Never),
        1 => Just(Exp::Past),
        2 => (1u32..6).prop_map(Exp::In),
    ]
}

fn arb_mode() -> impl Strategy<Value = Mode> {
    prop_oneof![
        4 => Just(Mode::Set),
        1 => Just(Mode::Add),
        1 => Just(Mode::Replace),
        1 => Just(Mode::Append),
        1 => Just(Mode::Prepend),
        2 => (0usize..8).prop_map(Mode::Cas),
    ]
}

fn arb_val(big: usize) -> impl Strategy<Value = Val> {
    prop_oneof![
        4 => proptest::collection::vec(prop_oneof![Just(b' '), Just(b'7'), any::<u8>()], 0..40)
            .prop_map(Val::Bytes),
        3 => prop_oneof![any::<u64>(), 0u64..200, Just(u64::MAX)].prop_map(Val::Number),
        2 => (any::<u8>(), 500usize..3000).prop_map(|(b, n)| Val::Fill(b, n)),
        1 => (any::<u8>(), (big / 2)..big.max(1)).prop_map(|(b, n)| Val::Fill(b, n)),
    ]
}

fn arb_op(big: usize) -> impl Strategy<Value = Op> {
    let k = 0u8..12;
    prop_oneof![
        6 => k.clone().prop_map(Op::Get),
        1 => (k.clone(), arb_exp()).prop_map(|(k, e)| Op::Gat(k, e)),
        1 => (k.clone(), arb_exp()).prop_map(|(k, e)| Op::Touch(k, e)),
        8 => (k.clone(), arb_mode(), prop_oneof![Just(0u32), any::<u32>()], arb_exp(), arb_val(big))
            .prop_map(|(k, m, f, e, v)| Op::Set(k, m, f, e, v)),
        2 => k.clone().prop_map(Op::Delete),
        2 => (k, any::<bool>(), prop_oneof![0u64..10, any::<u64>()])
            .prop_map(|(k, i, d)| Op::Arith(k, i, d)),
        1 => (1u32..4).prop_map(Op::FlushNs),
        1 => Just(Op::FlushAll).prop_filter("rare", |_| true),
        1 => Just(Op::Sweep),
        3 => (0u32..3).prop_map(Op::Tick),
    ]
}

/// Keys 0..12 spread over namespaces 1..=3 (and ns 300, which takes the
/// wide header), with a few sharing key bytes across namespaces.
fn key_of(k: u8) -> (NsId, Vec<u8>) {
    let ns = match k % 4 {
        0 => 1,
        1 => 2,
        2 => 3,
        _ => 300,
    };
    (ns, format!("k{}", k / 2).into_bytes())
}

/// Bidirectional map between the store's cas values and the model's.
#[derive(Default)]
struct CasMap {
    to_model: HashMap<u64, u64>,
    to_real: HashMap<u64, u64>,
    seen: Vec<(u64, u64)>,
}

impl CasMap {
    fn check(&mut self, real: u64, model: u64) {
        match (self.to_model.get(&real), self.to_real.get(&model)) {
            (None, None) => {
                self.to_model.insert(real, model);
                self.to_real.insert(model, real);
                self.seen.push((real, model));
            }
            (Some(&m), Some(&r)) => assert!(m == model && r == real, "cas map broken"),
            other => panic!("cas {real}/{model} half known: {other:?}"),
        }
    }
}

fn run(ops: Vec<Op>, limit: usize, max_item: usize, seg_size: usize) {
    let mut real = Store::with_segment_size(limit, max_item, seg_size);
    let mut model = model::Store::new(limit, max_item);
    let mut cas = CasMap::default();
    let mut now = 1000u32;
    for op in ops {
        match &op {
            Op::Get(k) | Op::Gat(k, _) => {
                let (ns, kb) = key_of(*k);
                let (r, m) = match op {
                    Op::Gat(_, e) => (
                        real.get_and_touch(key(ns, &kb), exp_at(e, now), now),
                        model.get_and_touch(key(ns, &kb), exp_at(e, now), now),
                    ),
                    _ => (real.get(key(ns, &kb), now), model.get(key(ns, &kb), now)),
                };
                match (r, m) {
                    (Lookup::Hit(r), Lookup::Hit(m)) => {
                        assert_eq!((r.value, r.flags), (m.value, m.flags), "{op:?}");
                        cas.check(r.cas, m.cas);
                    }
                    (Lookup::Expired, Lookup::Expired) | (Lookup::Missing, Lookup::Missing) => {}
                    (r, m) => panic!("{op:?}: store {r:?} model {m:?}"),
                }
            }
            Op::Touch(k, e) => {
                let (ns, kb) = key_of(*k);
                let t = exp_at(*e, now);
                assert_eq!(
                    real.touch(key(ns, &kb), t, now),
                    model.touch(key(ns, &kb), t, now),
                    "{op:?}"
                );
            }
            Op::Set(k, mode, flags, e, v) => {
                let (ns, kb) = key_of(*k);
                let (rm, mm) = match *mode {
                    Mode::Set => (SetMode::Set, SetMode::Set),
                    Mode::Add => (SetMode::Add, SetMode::Add),
                    Mode::Replace => (SetMode::Replace, SetMode::Replace),
                    Mode::Append => (SetMode::Append, SetMode::Append),
                    Mode::Prepend => (SetMode::Prepend, SetMode::Prepend),
                    Mode::Cas(i) => match cas.seen.get(i) {
                        Some(&(r, m)) => (SetMode::Cas(r), SetMode::Cas(m)),
                        None => (SetMode::Cas(u64::MAX), SetMode::Cas(u64::MAX)),
                    },
                };
                let bytes = v.bytes();
                let t = exp_at(*e, now);
                let r: SetOutcome = real.set(key(ns, &kb), rm, *flags, t, &bytes, now);
                let m = model.set(key(ns, &kb), mm, *flags, t, &bytes, now);
                assert_eq!(r, m, "{op:?}");
            }
            Op::Delete(k) => {
                let (ns, kb) = key_of(*k);
                assert_eq!(
                    real.delete(key(ns, &kb), now),
                    model.delete(key(ns, &kb), now),
                    "{op:?}"
                );
            }
            Op::Arith(k, incr, d) => {
                let (ns, kb) = key_of(*k);
                let r: ArithOutcome = real.arith(key(ns, &kb), *incr, *d, now);
                assert_eq!(r, model.arith(key(ns, &kb), *incr, *d, now), "{op:?}");
            }
            Op::FlushNs(ns) => {
                real.flush_ns(*ns);
                model.flush_ns(*ns);
            }
            Op::FlushAll => {
                real.flush_all();
                model.flush_all();
            }
            Op::Sweep => {
                assert_eq!(real.sweep(now, usize::MAX), model.sweep(now, usize::MAX));
            }
            Op::Tick(d) => now += d,
        }
        let (rs, ms) = (real.stats(), model.stats());
        assert_eq!(StatsSansOverhead(rs), StatsSansOverhead(ms), "after {op:?}");
        for ns in [1, 2, 3, 300] {
            assert_eq!(
                real.ns_stats(ns),
                model.ns_stats(ns),
                "ns {ns} after {op:?}"
            );
        }
        assert!(real.memory_bytes() <= limit);
    }
}

#[derive(Debug)]
struct StatsSansOverhead(super::StoreStats);

impl PartialEq for StatsSansOverhead {
    fn eq(&self, o: &Self) -> bool {
        let (a, b) = (self.0, o.0);
        super::StoreStats {
            overhead_bytes: 0,
            hash_bytes: 0,
            ..a
        } == super::StoreStats {
            overhead_bytes: 0,
            hash_bytes: 0,
            ..b
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// 256 KiB segments: items wrap across segments, values over a
    /// segment take the large-item path.
    #[test]
    fn store_matches_model_small_segments(ops in proptest::collection::vec(arb_op(300_000), 1..300)) {
        run(ops, 256 << 20, 1 << 20, 256 << 10);
    }

    /// 4 KiB segments: a new segment every few items.
    #[test]
    fn store_matches_model_tiny_segments(ops in proptest::collection::vec(arb_op(9000), 1..300)) {
        run(ops, 64 << 20, 16 << 10, 4 << 10);
    }
}
