//! Memory is bounded: filling far past `--memory-mb` evicts instead of
//! growing, stored items stay readable until evicted or expired, and the
//! eviction and reclaim counters count.

mod common;

use common::{within, Conn, Server};
use std::time::{Duration, Instant};

const MEMORY_MB: u64 = 32;
/// The documented fixed overhead (README, "Memory"): runtime, index and a
/// handful of connections' buffers, on top of `--memory-mb`.
const OVERHEAD_MB: u64 = 48;

fn stat(conn: &mut Conn, name: &str) -> u64 {
    conn.send(b"stats\r\n");
    let reply = String::from_utf8(conn.read_until(b"END\r\n")).unwrap();
    reply
        .lines()
        .find_map(|l| l.strip_prefix(&format!("STAT {name} ")))
        .unwrap_or_else(|| panic!("no {name} in stats"))
        .parse()
        .unwrap()
}

fn value(key: usize, len: usize) -> Vec<u8> {
    let seed = format!("{key}:");
    seed.bytes().cycle().take(len).collect()
}

#[test]
fn filling_three_times_the_limit_stays_bounded() {
    let server = Server::start(&["--memory-mb", "32", "--max-item-size", "1m"]);
    let mut conn = server.connect();
    // The largest is within what memcached's `-I 1m` takes, its item header counted.
    let sizes = [1usize, 10, 100, 1000, 10_000, 100_000, (1 << 20) - 100];
    let target = 3 * MEMORY_MB * 1024 * 1024;
    let mut sent = 0u64;
    let mut key = 0usize;
    while sent < target {
        let len = sizes[key % sizes.len()];
        let mut req = format!("set k{key} 0 0 {len}\r\n").into_bytes();
        req.extend_from_slice(&value(key, len));
        req.extend_from_slice(b"\r\n");
        conn.roundtrip(&req, b"STORED\r\n");
        sent += len as u64;
        key += 1;
    }
    let rss = server.rss_bytes();
    let bound = (MEMORY_MB + OVERHEAD_MB) << 20;
    assert!(
        rss <= bound,
        "RSS {} MiB over the bound {} MiB",
        rss >> 20,
        bound >> 20
    );

    assert!(
        stat(&mut conn, "evictions") > 0,
        "filling 3x the limit must evict"
    );
    let bytes = stat(&mut conn, "bytes");
    assert!(
        bytes <= MEMORY_MB << 20,
        "stats bytes {bytes} over the limit"
    );
    assert_eq!(stat(&mut conn, "limit_maxbytes"), MEMORY_MB << 20);

    // The newest small items were stored last: they must still be readable.
    for k in (key - 20..key).filter(|k| sizes[k % sizes.len()] <= 1000) {
        let len = sizes[k % sizes.len()];
        let mut expected = format!("VALUE k{k} 0 {len}\r\n").into_bytes();
        expected.extend_from_slice(&value(k, len));
        expected.extend_from_slice(b"\r\nEND\r\n");
        conn.roundtrip(format!("get k{k}\r\n").as_bytes(), &expected);
    }
}

#[test]
fn items_stay_readable_until_they_expire_and_are_then_reclaimed() {
    let server = Server::start(&["--memory-mb", "64"]);
    let mut conn = server.connect();
    for k in 0..50 {
        conn.roundtrip(
            format!("set short{k} 0 1 2\r\nhi\r\n").as_bytes(),
            b"STORED\r\n",
        );
        conn.roundtrip(
            format!("set long{k} 0 0 2\r\nok\r\n").as_bytes(),
            b"STORED\r\n",
        );
    }
    for k in 0..50 {
        conn.roundtrip(
            format!("get short{k} long{k}\r\n").as_bytes(),
            format!("VALUE short{k} 0 2\r\nhi\r\nVALUE long{k} 0 2\r\nok\r\nEND\r\n").as_bytes(),
        );
    }
    // Expiry is at whole-second granularity: poll until the first is gone.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        conn.send(b"get short0\r\n");
        if conn.read_until(b"END\r\n") == b"END\r\n" {
            break;
        }
        assert!(Instant::now() < deadline, "short0 never expired");
        std::thread::sleep(Duration::from_millis(100));
    }
    let reclaimed_before = stat(&mut conn, "reclaimed");
    for k in 0..50 {
        conn.roundtrip(
            format!("get short{k} long{k}\r\n").as_bytes(),
            format!("VALUE long{k} 0 2\r\nok\r\nEND\r\n").as_bytes(),
        );
    }
    let reclaimed = stat(&mut conn, "reclaimed");
    // Expired items are reclaimed on access or by the periodic sweep; either
    // way every one of the 50 is counted once.
    assert!(
        reclaimed >= 50,
        "reclaimed {reclaimed} (before the gets: {reclaimed_before})"
    );
    assert_eq!(stat(&mut conn, "curr_items"), 50);
}

/// The index grows with the items, a bucket at a time, instead of taking
/// its share of `--memory-mb` up front: `hash_bytes` starts small, grows to
/// about 14 bytes per item, and stays within `store_overhead_bytes`.
#[test]
fn the_index_grows_with_the_items() {
    let server = Server::start(&["--memory-mb", "256"]);
    let mut conn = server.connect();
    let empty = stat(&mut conn, "hash_bytes");
    let bound = stat(&mut conn, "store_overhead_bytes");
    // Two shards of 256 primary buckets of 64 bytes.
    assert_eq!(empty, 2 * 256 * 64);
    const ITEMS: u64 = 40_000;
    for batch in 0..ITEMS / 100 {
        let (mut sets, mut stored) = (Vec::new(), Vec::new());
        for i in batch * 100..(batch + 1) * 100 {
            sets.extend_from_slice(format!("set item:{i} 0 0 10\r\n0123456789\r\n").as_bytes());
            stored.extend_from_slice(b"STORED\r\n");
        }
        conn.roundtrip(&sets, &stored);
    }
    assert_eq!(stat(&mut conn, "curr_items"), ITEMS);
    let grown = stat(&mut conn, "hash_bytes");
    let per_item = grown as f64 / ITEMS as f64;
    assert!(
        (10.0..16.0).contains(&per_item),
        "index {per_item:.1} bytes per item"
    );
    assert!(grown < bound / 10, "{grown} of a {bound}-byte bound");
}

/// Raises this process's open-file limit to at least `want` descriptors.
fn allow_descriptors(want: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write the struct we pass.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        assert!(
            limit.rlim_max >= want,
            "the test needs {want} open files; the hard limit is {}",
            limit.rlim_max
        );
        if limit.rlim_cur < want {
            limit.rlim_cur = want;
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
        }
    }
}

/// A burst of clients that all leave gives its memory back: 1,500
/// connections, each with a request served, raise the process's resident
/// memory by their buffers (about 32 KiB each); once they have closed, it
/// falls most of the way back, where the allocator's heaps used to keep it.
#[test]
fn memory_of_a_burst_of_connections_goes_back_when_they_close() {
    const CLIENTS: usize = 1500;
    allow_descriptors(CLIENTS as u64 + 200);
    let server = Server::start(&["--memory-mb", "64"]);
    let mut witness = server.connect();
    witness.roundtrip(b"get a\r\n", b"END\r\n");
    let before = server.rss_bytes();
    let mut burst: Vec<Conn> = (0..CLIENTS).map(|_| server.connect()).collect();
    for conn in &mut burst {
        conn.send(b"get a\r\n");
    }
    for conn in &mut burst {
        assert_eq!(conn.read_until(b"\r\n"), b"END\r\n");
    }
    let peak = server.rss_bytes();
    let grown = peak.saturating_sub(before);
    assert!(
        grown >= 16 << 20,
        "{CLIENTS} connections grew resident memory by only {} KiB",
        grown >> 10
    );
    drop(burst);
    let back = within(Duration::from_secs(6), || {
        server.rss_bytes() < before + grown / 4
    });
    assert!(
        back.is_some(),
        "resident memory {} MiB before the burst, {} MiB at its peak, {} MiB 6 s after it left",
        before >> 20,
        peak >> 20,
        server.rss_bytes() >> 20
    );
    witness.roundtrip(b"get a\r\n", b"END\r\n");
}

/// A request half-sent after a burst of large replies keeps its own bytes,
/// not the burst's buffers: they go back once the connection has been
/// quiet for a second, as they do between requests, and the request is
/// then served whole. (They used to stay until the request completed or
/// `--request-timeout` closed the connection.)
#[test]
fn a_half_sent_request_does_not_hold_the_buffers_of_the_replies_before_it() {
    let server = Server::start(&["--memory-mb", "64", "-I", "2m"]);
    let mut witness = server.connect();
    let mut conn = server.connect();
    let big = value(3, 1_000_000);
    conn.roundtrip(&common::set_request("big", &big), b"STORED\r\n");
    let got = common::get_reply("big", &big);
    conn.roundtrip(b"get big\r\n", &got);
    let held = stat(&mut witness, "conn_buffer_bytes");
    assert!(
        held > 1_000_000,
        "a 1 MB reply left {held} bytes of buffers"
    );
    conn.send(b"get bi");
    let shrunk = within(Duration::from_secs(4), || {
        stat(&mut witness, "conn_buffer_bytes") < 200 * 1024
    });
    assert!(
        shrunk.is_some(),
        "with a request half-sent, {} bytes of buffers are still held",
        stat(&mut witness, "conn_buffer_bytes")
    );
    conn.roundtrip(b"g\r\n", &got);
}

/// A connection quiet for ten seconds gives back all of its buffers, not
/// only what a burst grew: a pool of idle clients holds no read or reply
/// buffers, and each is served as before when it speaks again, a request
/// larger than a fresh buffer and a pipeline included.
#[test]
fn idle_connections_hold_no_buffers() {
    const CLIENTS: usize = 200;
    let server = Server::start(&["--memory-mb", "64"]);
    let mut witness = server.connect();
    let mut pool: Vec<Conn> = (0..CLIENTS).map(|_| server.connect()).collect();
    for (i, conn) in pool.iter_mut().enumerate() {
        conn.roundtrip(
            format!("set k{i} 0 0 1\r\n{}\r\n", i % 10).as_bytes(),
            b"STORED\r\n",
        );
    }
    let busy = stat(&mut witness, "conn_buffer_bytes");
    assert!(
        busy >= (CLIENTS as u64) * 32 * 1024,
        "{CLIENTS} connections hold only {busy} bytes of buffers"
    );
    // The pool keeps its buffers while it asks every few seconds...
    std::thread::sleep(Duration::from_secs(5));
    let asked = stat(&mut witness, "conn_buffer_bytes");
    assert!(
        asked >= (CLIENTS as u64) * 32 * 1024,
        "{CLIENTS} connections quiet for 5 s hold only {asked} bytes of buffers"
    );
    // ...and gives them all back after ten quiet seconds. The witness,
    // which keeps asking, holds its own 32 KiB.
    let quiet = within(Duration::from_secs(12), || {
        stat(&mut witness, "conn_buffer_bytes") <= 32 * 1024
    });
    assert!(
        quiet.is_some(),
        "{CLIENTS} idle connections still hold {} bytes of buffers after 17 s",
        stat(&mut witness, "conn_buffer_bytes")
    );
    for (i, conn) in pool.iter_mut().enumerate() {
        conn.roundtrip(
            format!("get k{i}\r\n").as_bytes(),
            format!("VALUE k{i} 0 1\r\n{}\r\nEND\r\n", i % 10).as_bytes(),
        );
    }
    let big = value(7, 100_000);
    let mut request = common::set_request("big", &big);
    request.extend_from_slice(b"get big\r\nget k0 k1\r\n");
    let mut reply = b"STORED\r\n".to_vec();
    reply.extend_from_slice(&common::get_reply("big", &big));
    reply.extend_from_slice(b"VALUE k0 0 1\r\n0\r\nVALUE k1 0 1\r\n1\r\nEND\r\n");
    pool[0].roundtrip(&request, &reply);
}
