//! Tenant fairness, end to end against the real binary over TCP: one
//! tenant's hot data must not evict another's (issue 14, section 1).

mod common;

use common::{oauth_request, Conn, Server};

/// Logs `conn` in as (project, cache); open mode accepts any token.
fn login(conn: &mut Conn, project: &str) {
    conn.roundtrip(
        &oauth_request(&format!("token {project} cache")),
        b"STORED\r\n",
    );
}

/// Gets `keys` in multi-gets of at most 256 keys; how many were hits.
fn hits(conn: &mut Conn, keys: &[String]) -> usize {
    keys.chunks(256)
        .map(|chunk| hits_at_once(conn, chunk))
        .sum()
}

fn hits_at_once(conn: &mut Conn, keys: &[String]) -> usize {
    let mut request = String::from("get");
    for k in keys {
        request.push(' ');
        request.push_str(k);
    }
    request.push_str("\r\n");
    conn.send(request.as_bytes());
    let reply = conn.read_until(b"END\r\n");
    // Values hold no `VALUE ` of their own (they are all `v`s or `h`s).
    reply.windows(6).filter(|w| w == b"VALUE ").count()
}

/// Stores `keys` with `value`, pipelined, noreply, then a `version` to wait
/// for them all.
fn store_all(conn: &mut Conn, keys: &[String], value: &[u8]) {
    let mut request = Vec::new();
    for k in keys {
        request.extend_from_slice(format!("set {k} 0 0 {} noreply\r\n", value.len()).as_bytes());
        request.extend_from_slice(value);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"version\r\n");
    conn.send(&request);
    conn.read_until(b"\r\n");
}

/// The case, on the server: tenant B keeps reading a 4 MiB
/// working set (about 6% of the cache) while tenant A writes 256 MiB of
/// 4 KB values and reads each twice right after writing it, so A's data
/// looks hot too. With one eviction order for all, B's hit ratio fell to
/// 0.26; with fair sharing B is under its share and keeps its items.
#[test]
fn a_hot_flood_does_not_evict_a_small_tenants_working_set() {
    let server = Server::start(&["--memory-mb", "64"]);
    let mut a = server.connect();
    let mut b = server.connect();
    login(&mut a, "flood");
    login(&mut b, "steady");

    let b_keys: Vec<String> = (0..4096).map(|i| format!("steady:{i}")).collect();
    let b_value = vec![b'v'; 1000];
    for chunk in b_keys.chunks(256) {
        store_all(&mut b, chunk, &b_value);
    }
    assert_eq!(hits(&mut b, &b_keys), b_keys.len(), "B's set fits");

    let a_value = vec![b'h'; 4096];
    let (mut b_gets, mut b_hits) = (0usize, 0usize);
    let mut next_b = 0usize;
    // 256 MiB in chunks of 32 values: store, read twice, and let B read
    // 128 of its keys, round-robin.
    for round in 0..(256 << 20) / (4096 * 32) {
        let keys: Vec<String> = (0..32).map(|i| format!("flood:{round}:{i}")).collect();
        store_all(&mut a, &keys, &a_value);
        hits(&mut a, &keys);
        hits(&mut a, &keys);
        let b_batch: Vec<String> = (0..128)
            .map(|i| b_keys[(next_b + i) % b_keys.len()].clone())
            .collect();
        next_b = (next_b + 128) % b_keys.len();
        b_gets += b_batch.len();
        b_hits += hits(&mut b, &b_batch);
    }
    let during = b_hits as f64 / b_gets as f64;
    let kept = hits(&mut b, &b_keys) as f64 / b_keys.len() as f64;
    eprintln!("B during the flood: hit ratio {during:.3}; kept {kept:.3} of its set");
    assert!(
        kept >= 0.9,
        "B kept {kept:.3} of its working set (hit ratio during the flood {during:.3})"
    );
    assert!(during >= 0.9, "B's hit ratio during the flood: {during:.3}");
    // A still gets the rest of the cache: its latest values are there.
    let last: Vec<String> = (0..32).map(|i| format!("flood:2047:{i}")).collect();
    assert_eq!(hits(&mut a, &last), 32);
}

/// Two tenants writing alike end up with about equal shares of the cache.
#[test]
fn equal_demand_gets_equal_shares() {
    let server = Server::start_with(&["--cores", "1"], &["--memory-mb", "16"]);
    let mut conns: Vec<Conn> = ["one", "two"]
        .iter()
        .map(|p| {
            let mut c = server.connect();
            login(&mut c, p);
            c
        })
        .collect();
    let value = vec![b'v'; 2000];
    // Each writes 32 MiB (twice the cache), interleaved.
    for round in 0..(32 << 20) / (2000 * 64) {
        for (t, c) in conns.iter_mut().enumerate() {
            let keys: Vec<String> = (0..64).map(|i| format!("{t}:{round}:{i}")).collect();
            store_all(c, &keys, &value);
        }
    }
    // What each holds: probe every key it wrote.
    let mut held = Vec::new();
    for (t, c) in conns.iter_mut().enumerate() {
        let mut n = 0;
        for round in 0..(32 << 20) / (2000 * 64) {
            let keys: Vec<String> = (0..64).map(|i| format!("{t}:{round}:{i}")).collect();
            n += hits(c, &keys);
        }
        held.push(n as f64);
    }
    let mean = (held[0] + held[1]) / 2.0;
    eprintln!("items held: {held:?}");
    assert!(mean > 0.0);
    for h in &held {
        assert!((h - mean).abs() / mean <= 0.1, "shares {held:?}");
    }
}
