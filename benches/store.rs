//! Micro-benchmarks of one shard's store: the get and set hot paths, with
//! room to spare and with every set evicting.
//!
//! Keys and their hashes are computed up front: the router hashes a key
//! once per request, so hashing is not the store's cost. Throughput is one
//! operation per iteration.
//!
//! Time is the bench thread's CPU time, not wall time: the development
//! machines are shared, and time spent descheduled is not the store's.
//! (Cache pollution by neighbours still shows; compare runs on one machine.)

use std::time::Duration;

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use ferrocache::clock::thread_cpu_time;
use ferrocache::store::{Key, KeyHasher, Lookup, SetMode, Store};

/// Criterion measurement: CPU time of the calling thread.
struct ThreadCpuTime;

fn thread_cpu_now() -> Duration {
    thread_cpu_time().expect("CLOCK_THREAD_CPUTIME_ID unavailable")
}

/// Durations print the same whichever clock measured them.
static WALL: WallTime = WallTime;

impl Measurement for ThreadCpuTime {
    type Intermediate = Duration;
    type Value = Duration;

    fn start(&self) -> Duration {
        thread_cpu_now()
    }

    fn end(&self, started: Duration) -> Duration {
        thread_cpu_now() - started
    }

    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }

    fn zero(&self) -> Duration {
        Duration::ZERO
    }

    fn to_f64(&self, v: &Duration) -> f64 {
        v.as_nanos() as f64
    }

    fn formatter(&self) -> &dyn ValueFormatter {
        WALL.formatter()
    }
}

type Bench = Criterion<ThreadCpuTime>;

const MB: usize = 1 << 20;

/// `n` distinct 10-byte keys with their hashes.
fn keys(n: usize, prefix: &str) -> Vec<(Vec<u8>, u64)> {
    (0..n)
        .map(|i| {
            let k = format!("{prefix}{i:09}").into_bytes();
            let h = KeyHasher::default().hash(1, &k);
            (k, h)
        })
        .collect()
}

fn key(k: &(Vec<u8>, u64)) -> Key<'_> {
    Key {
        ns: 1,
        hash: k.1,
        key: &k.0,
    }
}

/// Fill a store with `n` items of 100 bytes under 10-byte keys.
fn filled(limit: usize, n: usize, prefix: &str) -> (Store, Vec<(Vec<u8>, u64)>) {
    let mut store = Store::new(limit, MB, KeyHasher::default());
    let ks = keys(n, prefix);
    for k in &ks {
        store.set(key(k), SetMode::Set, 0, 0, &[b'v'; 100], 1);
    }
    assert_eq!(store.stats().evictions, 0);
    (store, ks)
}

fn get(c: &mut Bench) {
    let mut g = c.benchmark_group("get");
    g.throughput(Throughput::Elements(1));
    // 10k hot items: index buckets and items stay in the CPU caches.
    let (mut store, ks) = filled(64 * MB, 10_000, "k");
    let mut i = 0usize;
    g.bench_function("hit/10b_key_100b_value", |b| {
        b.iter(|| {
            // A stride so consecutive gets touch unrelated memory.
            i = (i + 7919) % ks.len();
            match store.get(key(&ks[i]), 1) {
                Lookup::Hit(v) => {
                    black_box(v.value);
                }
                _ => unreachable!(),
            }
        })
    });
    let missing = keys(10_000, "m");
    g.bench_function("miss/10b_key", |b| {
        b.iter(|| {
            i = (i + 7919) % missing.len();
            black_box(matches!(store.get(key(&missing[i]), 1), Lookup::Missing));
        })
    });
    drop(store);
    // 1M items in 256 MiB: each get is an index miss and an item miss in
    // DRAM (and TLB misses): the cold-key case.
    let (mut store, ks) = filled(256 * MB, 1_000_000, "k");
    g.bench_function("hit_1m_keys/10b_key_100b_value", |b| {
        b.iter(|| {
            i = (i + 7919) % ks.len();
            match store.get(key(&ks[i]), 1) {
                Lookup::Hit(v) => {
                    black_box(v.value);
                }
                _ => unreachable!(),
            }
        })
    });
    g.finish();
}

fn set(c: &mut Bench) {
    let mut g = c.benchmark_group("set");
    g.throughput(Throughput::Elements(1));
    let value = [b'v'; 100];

    // Overwrites over 10k keys in a store with room: appends plus the old
    // copy's retirement, and segments freed as they empty.
    let mut store = Store::new(64 * MB, MB, KeyHasher::default());
    let ks = keys(10_000, "k");
    let mut i = 0usize;
    g.bench_function("100b", |b| {
        b.iter(|| {
            i = (i + 7919) % ks.len();
            black_box(store.set(key(&ks[i]), SetMode::Set, 0, 0, &value, 1));
        })
    });

    // Fresh keys into a full 16 MiB store: every set ends up paying for an
    // eviction (merges of small-FIFO segments).
    let mut store = Store::new(16 * MB, MB, KeyHasher::default());
    let ks = keys(4_000_000, "e");
    for k in ks.iter().take(300_000) {
        store.set(key(k), SetMode::Set, 0, 0, &value, 1);
    }
    assert!(store.stats().evictions > 0);
    let mut i = 0usize;
    g.bench_function("full_store_evicting/100b", |b| {
        b.iter(|| {
            i = (i + 1) % ks.len();
            black_box(store.set(key(&ks[i]), SetMode::Set, 0, 0, &value, 1));
        })
    });

    // Items bigger than a segment: one allocation each, evicted as a FIFO.
    let mut store = Store::new(64 * MB, 4 * MB, KeyHasher::default());
    let big = vec![b'v'; 2 * MB];
    let ks = keys(1000, "b");
    let mut i = 0usize;
    g.bench_function("large/2mb", |b| {
        b.iter(|| {
            i = (i + 1) % ks.len();
            black_box(store.set(key(&ks[i]), SetMode::Set, 0, 0, &big, 1));
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(ThreadCpuTime);
    targets = get, set
}
criterion_main!(benches);
