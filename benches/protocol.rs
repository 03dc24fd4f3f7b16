//! Parser and composer costs, per request.
//!
//! `cargo bench --bench protocol`

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use ferrocache::protocol::{compose, parse, Limits, Parsed, Response};

const LIMITS: Limits = Limits {
    max_item_size: 1 << 20,
};

fn parse_one(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse");
    group.throughput(Throughput::Elements(1));
    let value = vec![b'v'; 100];
    let mut set = b"set key:000001 0 0 100\r\n".to_vec();
    set.extend_from_slice(&value);
    set.extend_from_slice(b"\r\n");
    let cases: [(&str, Vec<u8>); 4] = [
        ("get/1key", b"get key:000001\r\n".to_vec()),
        ("set/100b", set),
        ("incr", b"incr counter 1\r\n".to_vec()),
        (
            "get/10keys",
            b"get k0 k1 k2 k3 k4 k5 k6 k7 k8 k9\r\n".to_vec(),
        ),
    ];
    for (name, wire) in cases {
        group.bench_function(name, |b| {
            b.iter(|| match parse(black_box(&wire), &LIMITS) {
                Parsed::Request { consumed, .. } => consumed,
                other => panic!("{other:?}"),
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("parse_pipeline");
    let mut wire = Vec::new();
    for i in 0..16 {
        wire.extend_from_slice(format!("get key:{i:06}\r\n").as_bytes());
    }
    group.throughput(Throughput::Elements(16));
    group.bench_function("get/16", |b| {
        b.iter(|| {
            let mut at = 0;
            while at < wire.len() {
                match parse(black_box(&wire[at..]), &LIMITS) {
                    Parsed::Request { consumed, .. } => at += consumed,
                    other => panic!("{other:?}"),
                }
            }
            at
        })
    });
    group.finish();
}

fn compose_one(c: &mut Criterion) {
    let mut group = c.benchmark_group("compose");
    group.throughput(Throughput::Elements(1));
    let data = vec![b'v'; 100];
    let mut out = Vec::with_capacity(4096);
    group.bench_function("value/100b", |b| {
        b.iter(|| {
            out.clear();
            compose(
                black_box(&Response::Value {
                    key: b"key:000001",
                    flags: 0,
                    cas: Some(12345),
                    data: &data,
                }),
                &mut out,
            );
            out.len()
        })
    });
    group.bench_function("stored", |b| {
        b.iter(|| {
            out.clear();
            compose(black_box(&Response::Stored), &mut out);
            out.len()
        })
    });
    group.finish();
}

criterion_group!(benches, parse_one, compose_one);
criterion_main!(benches);
