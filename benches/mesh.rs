//! A local operation against a forwarded one.
//!
//! `local/*` runs a request on the connection's own shard. `forwarded/*`
//! sends it to another core the way a connection does (a batch of records,
//! see `router`, over the mesh, executed by the owner's real request
//! handler, answered over the reply mesh) and waits for the answer: the
//! price of a key that lives on another core. Both cores run their socket
//! ring's driver, which polls the mesh and sleeps in the ring when idle, so
//! a round trip pays for waking the owner, then the asker, as under light
//! load. `forwarded/batch16` amortises one round trip over 16 requests, as
//! pipelined reads do.
//!
//! `cargo bench --bench mesh` (`SPIN_US=N`: each core polls for N µs before it sleeps)

use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ferrocache::clock::Clock;
use ferrocache::config::{Config, SchedPolicy, SocketIo};
use ferrocache::keyspace::KeyHasher;
use ferrocache::protocol::{GetKind, Keyed, ReplyBound, Request, Storage, StoreKind};
use ferrocache::shard::Shard;
use ferrocache::tenancy::{Auth, Namespaces};
use ferrocache::transport::core::{Core, Mesh, Shared};
use ferrocache::transport::envelope::{push_get, push_wire, FromShard, Part, ToShard};
use ferrocache::transport::mesh::serve_requests;
use ferrocache::transport::spin_gate::SpinGate;
use ferrocache::transport::uring::{Inbound, Ring};
use glommio::{LocalExecutorBuilder, Placement};

const MEMORY: usize = 64 << 20;

fn config() -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        cores: 2,
        memory_bytes: MEMORY,
        max_item_size: 1 << 20,
        max_connections: 16,
        tokens: None,
        idle_timeout: None,
        auth_timeout: None,
        request_timeout: None,
        write_timeout: None,
        socket_io: SocketIo::Uring,
        spin_before_park: Duration::ZERO,
        spin_busy_pct: 90,
        sched_policy: SchedPolicy::Batch,
        balance_connections: false,
        owner_writes: false,
        // The bench runs no server, so nothing seeds the hash: fixed seeds.
        hash_seed: 0,
        user: None,
        notes: Vec::new(),
        tls: None,
        max_namespaces: 16,
        max_caches_per_project: 16,
        auth_failures: 0,
        metrics_listen: None,
        metrics_top_projects: 0,
        quotas: None,
    }
}

fn key_hash(key: &[u8]) -> u64 {
    KeyHasher::default().hash(Namespaces::default_namespace().id, key)
}

/// A set as its wire bytes (what `set_batch` sends, and the local bench runs).
fn set_wire(key: &[u8]) -> Vec<u8> {
    let mut wire = Vec::new();
    Request::Keyed(Keyed::Store(Storage {
        kind: StoreKind::Set,
        key,
        flags: 0,
        exptime: 0,
        cas: 0,
        data: &[b'v'; 100],
        noreply: false,
    }))
    .encode(&mut wire);
    wire
}

/// A forwarded batch of one set of `key`, as a connection queues it.
fn set_batch(key: &[u8]) -> Vec<u8> {
    let mut batch = Vec::new();
    push_wire(&mut batch, key_hash(key), &set_wire(key), ReplyBound::Line);
    batch
}

/// A forwarded batch of `n` gets of `key`.
fn get_batch(key: &[u8], n: usize) -> Vec<u8> {
    let mut batch = Vec::new();
    for _ in 0..n {
        push_get(&mut batch, key_hash(key), GetKind::Get, key);
    }
    batch
}

/// Runs `iters` forwarded round trips of `per_batch` gets; returns the time.
fn forwarded(iters: u64, per_batch: usize) -> Duration {
    let shared = Arc::new(Shared::new(config(), Auth::open(), Clock::new()));
    let mesh = Mesh::new(2, 1024).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let cpus = core_affinity::get_core_ids().unwrap_or_default();
    let cpu = |i: usize| cpus.get(i % cpus.len().max(1)).map(|c| c.id).unwrap_or(0);
    let handles: Vec<_> = (0..2)
        .map(|i| {
            let (shared, mesh, done) = (shared.clone(), mesh.for_core(i), done.clone());
            let spin = Duration::from_micros(
                std::env::var("SPIN_US")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
            );
            LocalExecutorBuilder::new(Placement::Fixed(cpu(i)))
                .spawn(move || async move {
                    let ring = Ring::new(mesh.bells[i].eventfd()).unwrap();
                    let shard = Shard::new(MEMORY / 2, 1 << 20, shared.clock, KeyHasher::default());
                    let core = Rc::new(Core::new(shard, shared.clone(), &mesh, Some(ring.clone())));
                    let inbound: Rc<dyn Inbound> = core.clone();
                    let bells = mesh.bells.clone();
                    // A round trip at a time never makes a core busy enough for
                    // the gate: it polls whenever idle, to measure the poll.
                    let gate = SpinGate::new(spin, 0, Instant::now());
                    glommio::spawn_local(async move { ring.drive(&bells[i], inbound, gate).await })
                        .detach();
                    let ns = Namespaces::default_namespace();
                    if i == 1 {
                        // The owner: serve until the asker is done.
                        glommio::spawn_local(serve_requests(core, 0)).detach();
                        while !done.load(Ordering::Relaxed) {
                            glommio::timer::sleep(Duration::from_millis(1)).await;
                        }
                        return Duration::ZERO;
                    }
                    let ask = |wire: Vec<u8>| {
                        let core = core.clone();
                        async move {
                            let message = ToShard::Batch {
                                reply_to: core.reply_id(),
                                parts: vec![Part::new(ns, wire.len(), 0)],
                                wire,
                                answer: Default::default(),
                                cap: core.forward_limits().max_batch,
                            };
                            core.post(1, message).await;
                            match core.next_reply(1).await.body {
                                FromShard::Batch { answer, .. } => answer.out,
                                other => panic!("not a batch answer: {other:?}"),
                            }
                        }
                    };
                    let key = b"bench:key";
                    assert_eq!(ask(set_batch(key)).await, b"STORED\r\n");
                    let gets = get_batch(key, per_batch);
                    let start = Instant::now();
                    for _ in 0..iters {
                        let out = ask(gets.clone()).await;
                        assert!(out.starts_with(b"VALUE "));
                    }
                    let elapsed = start.elapsed();
                    done.store(true, Ordering::Relaxed);
                    elapsed
                })
                .unwrap()
        })
        .collect();
    let mut elapsed = Duration::ZERO;
    for h in handles {
        elapsed += h.join().unwrap();
    }
    elapsed
}

fn local_vs_forwarded(c: &mut Criterion) {
    let mut group = c.benchmark_group("op");
    group.throughput(Throughput::Elements(1));

    let mut shard = Shard::new(MEMORY, 1 << 20, Clock::new(), KeyHasher::default());
    let ns = Namespaces::default_namespace();
    let hasher = KeyHasher::default().for_ns(ns.id);
    let key = b"bench:key";
    let hash = hasher.hash(key);
    let mut out = Vec::with_capacity(4096);
    let set = set_wire(key);
    let set_request = match ferrocache::protocol::parse(
        &set,
        &ferrocache::protocol::Limits {
            max_item_size: 1 << 20,
        },
    ) {
        ferrocache::protocol::Parsed::Request {
            request: Request::Keyed(keyed),
            ..
        } => keyed,
        other => panic!("{other:?}"),
    };
    shard.execute(ns.id, hash, &set_request, &mut out);
    let get = Keyed::Get {
        kind: GetKind::Get,
        key,
    };
    group.bench_function("local/get_hit_100b", |b| {
        b.iter(|| {
            out.clear();
            shard.execute(ns.id, hash, &get, &mut out);
            out.len()
        })
    });
    group.bench_function(BenchmarkId::new("forwarded/get_hit_100b", "batch1"), |b| {
        b.iter_custom(|iters| forwarded(iters, 1))
    });
    group.finish();

    let mut group = c.benchmark_group("op_batched");
    group.throughput(Throughput::Elements(16));
    group.bench_function(BenchmarkId::new("forwarded/get_hit_100b", "batch16"), |b| {
        b.iter_custom(|iters| forwarded(iters, 16))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = local_vs_forwarded
}
criterion_main!(benches);
