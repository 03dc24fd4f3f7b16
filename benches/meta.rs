//! What a pipelined request costs a shard, from bytes to reply bytes: parse,
//! hash, execute and compose, for the classic `get`/`set` and the meta
//! `mg`/`ms` the load generator sends (`mg <key> v k`, `ms <key> <len>`), on
//! a store holding every key.
//!
//! `cargo bench --bench meta`. Prints ns per request for batches of 16,
//! the best of many rounds of the bench thread's CPU time: the development
//! machines are shared, and the minimum is the figure least disturbed by
//! neighbours. No socket is involved (that cost is the kernel's and the
//! same for every command).

use std::time::Duration;

use ferrocache::clock::{thread_cpu_time, Clock};
use ferrocache::keyspace::KeyHasher;
use ferrocache::protocol::{parse, Limits, Parsed, Request};
use ferrocache::shard::Shard;

const KEYS: u64 = 100_000;
const BATCH: usize = 16;
const LIMITS: Limits = Limits {
    max_item_size: 1 << 20,
};

fn thread_cpu_now() -> Duration {
    thread_cpu_time().expect("CLOCK_THREAD_CPUTIME_ID unavailable")
}

/// Parses and executes every request of `wire` on `shard`, replies into `out`.
fn run(shard: &mut Shard, wire: &[u8], out: &mut Vec<u8>) -> usize {
    let mut at = 0;
    let mut n = 0;
    while at < wire.len() {
        match parse(&wire[at..], &LIMITS) {
            Parsed::Request {
                request: Request::Keyed(keyed),
                consumed,
            } => {
                shard.execute(0, KeyHasher::default().hash(0, keyed.key()), &keyed, out);
                at += consumed;
                n += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    n
}

/// Batches of 16 requests over keys spread like the load generator's.
fn batches(make: impl Fn(u64) -> Vec<u8>) -> Vec<Vec<u8>> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    (0..1024)
        .map(|_| {
            (0..BATCH)
                .flat_map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    make(x % KEYS)
                })
                .collect()
        })
        .collect()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let mut shard = Shard::new(256 << 20, 1 << 20, Clock::new(), KeyHasher::default());
    let value = vec![b'v'; 100];
    let set = |k: u64| {
        let mut w = format!("set k{k} 0 0 {}\r\n", value.len()).into_bytes();
        w.extend_from_slice(&value);
        w.extend_from_slice(b"\r\n");
        w
    };
    let ms = |k: u64| {
        let mut w = format!("ms k{k} {}\r\n", value.len()).into_bytes();
        w.extend_from_slice(&value);
        w.extend_from_slice(b"\r\n");
        w
    };
    let mut out = Vec::with_capacity(1 << 16);
    for k in 0..KEYS {
        run(&mut shard, &set(k), &mut out);
        out.clear();
    }
    let loads: [(&str, Vec<Vec<u8>>); 5] = [
        ("get", batches(|k| format!("get k{k}\r\n").into_bytes())),
        (
            "mg v k",
            batches(|k| format!("mg k{k} v k\r\n").into_bytes()),
        ),
        (
            "mg v k c t",
            batches(|k| format!("mg k{k} v k c t\r\n").into_bytes()),
        ),
        ("set 100b", batches(set)),
        ("ms 100b", batches(ms)),
    ];
    println!(
        "per request, batches of {BATCH}, {KEYS} keys held (best of 30 rounds of 1024 batches):"
    );
    for (name, wire) in &loads {
        let mut best = Duration::MAX;
        for _ in 0..30 {
            let t0 = thread_cpu_now();
            let mut n = 0;
            for batch in wire {
                n += run(&mut shard, batch, &mut out);
                out.clear();
            }
            best = best.min((thread_cpu_now() - t0) / n as u32);
        }
        println!("  {name:12} {:6.0} ns", best.as_nanos());
    }
}
