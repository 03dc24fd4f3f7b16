//! Property tests: the segment store against the reference model.
//!
//! Owns the random command streams and the comparison. In `run`, memory is
//! big enough that neither store evicts, so every reply and every counter
//! must agree. In `run_evicting` (the stateful fuzz of issue 12) the store
//! is small, with segments of a few hundred bytes, so eviction merges,
//! segment reuse and partial sweeps happen every few commands, while values
//! are crafted to look like item headers: a key the store lost to eviction
//! is dropped from the model too, and every other reply must agree, and no
//! background step may meet a broken invariant. cas values differ between
//! the two (the model counts, the store derives them from positions), so
//! the test keeps a one-to-one map between them and translates the cas a
//! `cas` command sends.

use std::collections::HashMap;

use proptest::prelude::*;

use super::model;
use super::semantics::key;
use crate::store::layout;
use crate::store::{ArithOutcome, Key, KeyHasher, Lookup, NsId, SetMode, SetOutcome, Store};

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
    /// A sweep that stops after this many items (a cursor left mid-segment).
    SweepSome(usize),
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
    /// Copies of a valid, already expired item of key `k` (see `key_of`),
    /// after `phase` bytes, `n` bytes in all: what a sweep or merge that
    /// lost its place would take for items.
    Items {
        k: u8,
        phase: usize,
        n: usize,
    },
}

impl Val {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Val::Bytes(b) => b.clone(),
            Val::Number(n) => n.to_string().into_bytes(),
            Val::Fill(b, n) => vec![*b; *n],
            Val::Items { k, phase, n } => {
                let (ns, key) = key_of(*k);
                let item = layout::NewItem {
                    ns,
                    exptime: 1,
                    meta: 0,
                    flags: 0,
                    own_cas: None,
                    key: &key,
                    value: [b"zzzz", b""],
                };
                let mut one = vec![0u8; item.total_len()];
                layout::write(&mut one, 0, &item);
                let mut out = vec![0x7a; *phase];
                while out.len() < *n {
                    out.extend_from_slice(&one);
                }
                out.truncate(*n);
                out
            }
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
    arb_op_in(arb_val(big), Just(Op::Sweep).boxed())
}

/// Values for the evicting run: mostly crafted items, some large.
fn arb_hostile_val(big: usize) -> impl Strategy<Value = Val> {
    prop_oneof![
        2 => arb_val(big),
        3 => (0u8..12, 0usize..20, 1usize..(big / 2)).prop_map(|(k, phase, n)| Val::Items { k, phase, n }),
        1 => (0u8..12, 0usize..20, big..big * 2).prop_map(|(k, phase, n)| Val::Items { k, phase, n }),
    ]
}

fn arb_hostile_op(big: usize) -> impl Strategy<Value = Op> {
    let sweeps = prop_oneof![
        1 => Just(Op::Sweep),
        3 => (1usize..40).prop_map(Op::SweepSome),
    ];
    arb_op_in(arb_hostile_val(big), sweeps.boxed())
}

fn arb_op_in(
    val: impl Strategy<Value = Val> + 'static,
    sweep: BoxedStrategy<Op>,
) -> impl Strategy<Value = Op> {
    let k = 0u8..12;
    prop_oneof![
        6 => k.clone().prop_map(Op::Get),
        1 => (k.clone(), arb_exp()).prop_map(|(k, e)| Op::Gat(k, e)),
        1 => (k.clone(), arb_exp()).prop_map(|(k, e)| Op::Touch(k, e)),
        8 => (k.clone(), arb_mode(), prop_oneof![Just(0u32), any::<u32>()], arb_exp(), val)
            .prop_map(|(k, m, f, e, v)| Op::Set(k, m, f, e, v)),
        2 => k.clone().prop_map(Op::Delete),
        2 => (k, any::<bool>(), prop_oneof![0u64..10, any::<u64>()])
            .prop_map(|(k, i, d)| Op::Arith(k, i, d)),
        1 => (1u32..4).prop_map(Op::FlushNs),
        1 => Just(Op::FlushAll).prop_filter("rare", |_| true),
        2 => sweep,
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
    /// `mode` as the store and the model each take it: a cas names the
    /// same write in both by their own uniques.
    fn modes(&self, mode: Mode) -> (SetMode, SetMode) {
        match mode {
            Mode::Set => (SetMode::Set, SetMode::Set),
            Mode::Add => (SetMode::Add, SetMode::Add),
            Mode::Replace => (SetMode::Replace, SetMode::Replace),
            Mode::Append => (SetMode::Append, SetMode::Append),
            Mode::Prepend => (SetMode::Prepend, SetMode::Prepend),
            Mode::Cas(i) => match self.seen.get(i) {
                Some(&(r, m)) => (SetMode::Cas(r), SetMode::Cas(m)),
                None => (SetMode::Cas(u64::MAX), SetMode::Cas(u64::MAX)),
            },
        }
    }

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

/// A `Get` or `Gat` on both the store and the model.
fn lookup_both<'a>(
    real: &'a mut Store,
    model: &'a mut model::Store,
    op: &Op,
    k: Key<'_>,
    now: u32,
) -> (Lookup<'a>, Lookup<'a>) {
    match *op {
        Op::Gat(_, e) => (
            real.get_and_touch(k, exp_at(e, now), now),
            model.get_and_touch(k, exp_at(e, now), now),
        ),
        _ => (real.get(k, now), model.get(k, now)),
    }
}

fn run(ops: Vec<Op>, limit: usize, max_item: usize, seg_size: usize) {
    let mut real = Store::with_segment_size(limit, max_item, seg_size, KeyHasher::default());
    let mut model = model::Store::new(limit, max_item);
    let mut cas = CasMap::default();
    let mut now = 1000u32;
    for op in ops {
        match &op {
            Op::Get(k) | Op::Gat(k, _) => {
                let (ns, kb) = key_of(*k);
                let (r, m) = lookup_both(&mut real, &mut model, &op, key(ns, &kb), now);
                match (r, m) {
                    (Lookup::Hit(r), Lookup::Hit(m)) => {
                        assert_eq!((r.value, r.flags), (m.value, m.flags), "{op:?}");
                        cas.check(r.cas(), m.cas());
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
                let (rm, mm) = cas.modes(*mode);
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
            Op::SweepSome(_) => unreachable!("only run_evicting sweeps partly"),
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

/// The key an op works on, if any.
fn key_of_op(op: &Op) -> Option<u8> {
    match *op {
        Op::Get(k) | Op::Gat(k, _) | Op::Touch(k, _) | Op::Delete(k) => Some(k),
        Op::Set(k, ..) | Op::Arith(k, ..) => Some(k),
        _ => None,
    }
}

/// The store, small enough to evict all the time, against a model that
/// never evicts. Before each command, a key the store no longer holds is
/// dropped from the model (evicted); then every reply must agree, except
/// that the store may run out of room where the model does not (the key
/// is then deleted in both). Counters differ (the model evicts nothing);
/// the store's own must show no broken invariant and memory in bounds.
fn run_evicting(ops: Vec<Op>, limit: usize, max_item: usize, seg_size: usize) {
    let mut real = Store::with_segment_size(limit, max_item, seg_size, KeyHasher::default());
    let mut model = model::Store::new(1 << 40, max_item);
    let mut cas = CasMap::default();
    let mut now = 1000u32;
    for op in ops {
        if let Some(k) = key_of_op(&op) {
            let (ns, kb) = key_of(k);
            if !real.holds(key(ns, &kb), now) {
                model.delete(key(ns, &kb), now);
            }
        }
        match &op {
            Op::Get(k) | Op::Gat(k, _) => {
                let (ns, kb) = key_of(*k);
                let (r, m) = lookup_both(&mut real, &mut model, &op, key(ns, &kb), now);
                match (r, m) {
                    (Lookup::Hit(r), Lookup::Hit(m)) => {
                        assert_eq!((r.value, r.flags), (m.value, m.flags), "{op:?}");
                        cas.check(r.cas(), m.cas());
                    }
                    (Lookup::Hit(_), _) => panic!("{op:?}: the store has what the model lost"),
                    (_, Lookup::Hit(_)) => panic!("{op:?}: holds() said yes, get said no"),
                    _ => {}
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
                let (rm, mm) = cas.modes(*mode);
                let bytes = v.bytes();
                let t = exp_at(*e, now);
                let r = real.set(key(ns, &kb), rm, *flags, t, &bytes, now);
                let m = model.set(key(ns, &kb), mm, *flags, t, &bytes, now);
                if r == SetOutcome::OutOfMemory && m != r {
                    real.delete(key(ns, &kb), now);
                    model.delete(key(ns, &kb), now);
                } else {
                    assert_eq!(r, m, "{op:?}");
                }
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
                let r = real.arith(key(ns, &kb), *incr, *d, now);
                let m = model.arith(key(ns, &kb), *incr, *d, now);
                if r == ArithOutcome::NotFound && m != r {
                    // No room for the new digits.
                    real.delete(key(ns, &kb), now);
                    model.delete(key(ns, &kb), now);
                } else {
                    assert_eq!(r, m, "{op:?}");
                }
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
                real.sweep(now, usize::MAX);
                model.sweep(now, usize::MAX);
            }
            Op::SweepSome(budget) => {
                real.sweep(now, *budget);
            }
            Op::Tick(d) => now += d,
        }
        let st = real.stats();
        assert_eq!(st.invariant_skips, 0, "after {op:?}");
        assert!(real.memory_bytes() <= limit, "after {op:?}");
        let per_ns: u64 = [1, 2, 3, 300]
            .iter()
            .map(|&ns| real.ns_stats(ns).curr_items)
            .sum();
        assert_eq!(per_ns, st.curr_items, "after {op:?}");
    }
    // Whatever the store still holds, the model agrees with.
    for k in 0..12 {
        let (ns, kb) = key_of(k);
        if let Lookup::Hit(r) = real.get(key(ns, &kb), now) {
            let (v, f) = (r.value.to_vec(), r.flags);
            match model.get(key(ns, &kb), now) {
                Lookup::Hit(m) => assert_eq!((&v[..], f), (m.value, m.flags), "key {k}"),
                other => panic!("key {k}: store hit, model {other:?}"),
            }
        }
    }
}

/// What the evicting run found on the code before issue 12's fix, shrunk:
/// a sweep left its cursor in the head, the head was freed and reopened
/// for a value made of item headers, and the next sweep read them.
#[test]
fn regression_sweep_cursor_in_a_reopened_segment() {
    use Exp::*;
    use Op::*;
    let ops = vec![
        Set(0, Mode::Set, 0, Past, Val::Bytes(vec![])),
        Sweep,
        Sweep,
        SweepSome(1),
        Set(
            0,
            Mode::Set,
            0,
            Past,
            Val::Items {
                k: 0,
                phase: 0,
                n: 235,
            },
        ),
        Sweep,
    ];
    run_evicting(ops, 64 * 256, 4 << 10, 256);
    let ops = vec![
        Set(0, Mode::Set, 0, Past, Val::Bytes(vec![])),
        SweepSome(1),
        Set(
            3,
            Mode::Set,
            0,
            Never,
            Val::Items {
                k: 0,
                phase: 0,
                n: 244,
            },
        ),
        Set(
            3,
            Mode::Set,
            0,
            Never,
            Val::Items {
                k: 0,
                phase: 1,
                n: 2539,
            },
        ),
        Set(
            10,
            Mode::Add,
            0,
            Past,
            Val::Items {
                k: 0,
                phase: 19,
                n: 744,
            },
        ),
        SweepSome(27),
    ];
    run_evicting(ops, 64 << 10, 8 << 10, 1 << 10);
}

#[derive(Debug)]
struct StatsSansOverhead(crate::store::StoreStats);

impl PartialEq for StatsSansOverhead {
    fn eq(&self, o: &Self) -> bool {
        let (a, b) = (self.0, o.0);
        crate::store::StoreStats {
            overhead_bytes: 0,
            hash_bytes: 0,
            ..a
        } == crate::store::StoreStats {
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

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("STORE_FUZZ_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(128),
        ..ProptestConfig::default()
    })]

    /// Issue 12's stateful fuzz: 256-byte segments, 64 of them, so most
    /// commands evict, merge or reuse a segment; values that look like
    /// items; sweeps that stop anywhere. `STORE_FUZZ_CASES=N` runs longer.
    #[test]
    fn evicting_store_agrees_with_model_under_hostile_values(
        ops in proptest::collection::vec(arb_hostile_op(600), 1..400)
    ) {
        run_evicting(ops, 64 * 256, 4 << 10, 256);
    }

    /// The same with 1 KiB segments: more items per segment, so merges
    /// keep some and sweeps stop mid-segment more often.
    #[test]
    fn evicting_store_agrees_with_model_kilobyte_segments(
        ops in proptest::collection::vec(arb_hostile_op(2500), 1..400)
    ) {
        run_evicting(ops, 64 << 10, 8 << 10, 1 << 10);
    }
}
