//! Hostile values and tenants against the store, through the real binary
//! (issue 12, sections 1 and 4).
//!
//! - A value made of valid-looking item headers, stored when the expiry
//!   sweep has stopped partway into a segment that is then freed and
//!   reopened for that value, must not be read as items: the server used to
//!   panic there (exit 70) within a second or two.
//! - A tenant's cas uniques must not move with what other tenants write.
//!
//! Each test starts its own server. The sweep runs once a second; the tests
//! wait for its effects (`curr_items` falling) rather than sleeping.

mod common;

use std::time::{Duration, Instant};

use common::{Conn, GrantsFile, Server};

/// The 14-byte item of the issue: key length 1, value length 4, namespace
/// 0, exptime 1 (long expired), key "z", value "zzzz".
const FAKE_ITEM: [u8; 14] = [1, 4, 0, 0, 0, 1, 0, 0, 0, b'z', b'z', b'z', b'z', b'z'];

/// `n` bytes of back-to-back fake items.
fn fake_items(n: usize) -> Vec<u8> {
    FAKE_ITEM.iter().copied().cycle().take(n).collect()
}

/// A `stats` line's value.
fn stat(conn: &mut Conn, name: &str) -> Option<u64> {
    conn.send(b"stats\r\n");
    let reply = String::from_utf8(conn.read_until(b"END\r\n")).unwrap();
    reply
        .lines()
        .find_map(|l| l.strip_prefix(&format!("STAT {name} ")))
        .map(|v| v.parse().unwrap())
}

/// Waits (polling `stats`) until `curr_items` is 0: the sweep has run over
/// everything expired.
fn wait_swept(conn: &mut Conn) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while stat(conn, "curr_items") != Some(0) {
        assert!(Instant::now() < deadline, "the sweep never reclaimed them");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends `n` already expired one-byte items (`set kNNN 0 -1 1 noreply`):
/// 14 bytes each in a segment (9 header, 4 key, 1 value).
fn expired_items(conn: &mut Conn, n: usize) {
    let mut req = Vec::new();
    for i in 0..n {
        req.extend_from_slice(format!("set k{i:03} 0 -1 1 noreply\r\nx\r\n").as_bytes());
    }
    conn.send(&req);
    conn.roundtrip(b"get k000\r\n", b"END\r\n");
}

/// Stores `value` (already expired) under a 5-byte key: with its 9-byte
/// header the value starts at offset 14 of a fresh segment, so the fake
/// items line up with the sweep's cursor, which stopped at a multiple of
/// 14 among the small items.
fn store_expired(conn: &mut Conn, key: &str, value: &[u8]) {
    assert_eq!(key.len(), 5);
    let mut req = format!("set {key} 0 -1 {}\r\n", value.len()).into_bytes();
    req.extend_from_slice(value);
    req.extend_from_slice(b"\r\n");
    conn.roundtrip(&req, b"STORED\r\n");
}

/// The server is still up and serving.
fn still_serving(server: &mut Server, conn: &mut Conn) {
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "the server exited"
    );
    conn.roundtrip(b"set alive 0 0 2\r\nok\r\n", b"STORED\r\n");
    conn.roundtrip(b"get alive\r\n", b"VALUE alive 0 2\r\nok\r\nEND\r\n");
    let mut fresh = server.connect();
    fresh.roundtrip(b"get alive\r\n", b"VALUE alive 0 2\r\nok\r\nEND\r\n");
}

/// Issue 12's recipe on one core with 8 MB (128 KiB segments): 301 expired
/// items, one sweep (it reclaims them and stops partway into the emptied
/// head), then a value of fake items too big for the head's remaining
/// room, so the head is freed and reopened for it. The next sweep used to
/// parse the fake items and panic.
#[test]
fn a_value_of_item_headers_in_a_reopened_segment_cannot_crash_the_sweep() {
    let mut server = Server::start_with(&["--cores", "1", "--memory-mb", "8"], &[]);
    let mut conn = server.connect();
    expired_items(&mut conn, 301);
    wait_swept(&mut conn);
    // 9 + 5 + 130958 = 130972 bytes: more than the 126858 left in the head.
    store_expired(&mut conn, "bigkk", &fake_items(130_958));
    // The next sweep reclaims the value itself; the old one died first.
    wait_swept(&mut conn);
    still_serving(&mut server, &mut conn);
    assert_eq!(stat(&mut conn, "store_invariant_skips"), Some(0));
}

fn login(server: &Server, grant: &str) -> Conn {
    let mut conn = server.connect();
    let req = format!("set oauth 0 0 {}\r\n{grant}\r\n", grant.len());
    conn.roundtrip(req.as_bytes(), b"STORED\r\n");
    conn
}

/// The same as an authenticated tenant on two cores with 64 MB (512 KiB
/// segments): 700 small expired items over both shards, then six values of
/// fake items, each too big for what is left of a head.
#[test]
fn the_same_as_an_authenticated_tenant_on_two_cores() {
    let tokens = GrantsFile::new("tok-hostile-store projA\n");
    let mut server = Server::start_with(
        &["--cores", "2", "--memory-mb", "64"],
        &["--tokens", tokens.arg()],
    );
    let mut conn = login(&server, "tok-hostile-store projA c1");
    expired_items(&mut conn, 700);
    wait_swept(&mut conn);
    let value = fake_items(524_176);
    for i in 0..6 {
        store_expired(&mut conn, &format!("big{i:02}"), &value);
    }
    wait_swept(&mut conn);
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "the server exited"
    );
    conn.roundtrip(b"set alive 0 0 2\r\nok\r\n", b"STORED\r\n");
    conn.roundtrip(b"get alive\r\n", b"VALUE alive 0 2\r\nok\r\nEND\r\n");
}

/// `gets KEY` → the cas unique.
fn gets(conn: &mut Conn, key: &str) -> u64 {
    conn.send(format!("gets {key}\r\n").as_bytes());
    let reply = String::from_utf8(conn.read_until(b"END\r\n")).unwrap();
    let header = reply.lines().next().unwrap();
    let words: Vec<&str> = header.split(' ').collect();
    assert_eq!(
        (words[0], words[1], words.len()),
        ("VALUE", key, 5),
        "{reply:?}"
    );
    words[4].parse().unwrap()
}

/// Issue 12, section 4: one shard, two tenants. Tenant A's unique used to
/// move by exactly the bytes tenant B wrote in between (1,021 after one
/// 1,010-byte item). Now two consecutive uniques of A are unrelated
/// whatever B writes: their difference is neither those bytes nor small.
/// cas itself still works on them.
#[test]
fn a_tenants_cas_uniques_say_nothing_about_another_tenants_writes() {
    let tokens = GrantsFile::new("tokA projA\ntokB projB\n");
    let server = Server::start_with(&["--cores", "1"], &["--tokens", tokens.arg()]);
    let mut a = login(&server, "tokA projA c1");
    let mut b = login(&server, "tokB projB c1");
    a.roundtrip(b"set a 0 0 1\r\nx\r\n", b"STORED\r\n");
    let mut before = gets(&mut a, "a");
    let mut deltas = Vec::new();
    for (i, size) in [1010usize, 1010, 1, 5000, 0, 1010].into_iter().enumerate() {
        if size > 0 {
            let req = format!("set b{i} 0 0 {size}\r\n{}\r\n", "v".repeat(size));
            b.roundtrip(req.as_bytes(), b"STORED\r\n");
        }
        a.roundtrip(b"set a 0 0 1\r\ny\r\n", b"STORED\r\n");
        let after = gets(&mut a, "a");
        let delta = after.wrapping_sub(before) as i64;
        assert!(
            delta.unsigned_abs() > 1 << 32,
            "unique moved by {delta} after tenant B wrote {size} bytes"
        );
        deltas.push(delta);
        before = after;
    }
    // The same write by B does not move A's unique the same way twice.
    assert_ne!(deltas[0], deltas[1]);
    assert_ne!(deltas[1], deltas[5]);

    // cas semantics hold on the sealed uniques.
    let u = gets(&mut a, "a");
    let req = format!("cas a 0 0 1 {u}\r\nz\r\n");
    a.roundtrip(req.as_bytes(), b"STORED\r\n");
    a.roundtrip(req.as_bytes(), b"EXISTS\r\n");
    let u2 = gets(&mut a, "a");
    assert_ne!(u, u2);
    a.roundtrip(b"touch a 100\r\n", b"TOUCHED\r\n");
    assert_eq!(gets(&mut a, "a"), u2, "touch keeps the unique");
    // B cannot see or hit A's item with A's unique.
    let req = format!("cas a 0 0 1 {u2}\r\nq\r\n");
    b.roundtrip(req.as_bytes(), b"NOT_FOUND\r\n");
}

/// The meta commands show and check the same sealed uniques as `gets` and
/// `cas`: `mg k c` equals the `gets` unique, `ms k C<unique>` stores with
/// it, a meta unique does not move by what another tenant wrote, and an
/// invalidating `ms` with an older unique is told apart by the seal's order.
#[test]
fn meta_uniques_are_the_sealed_ones() {
    let tokens = GrantsFile::new("tokA projA\ntokB projB\n");
    let server = Server::start_with(&["--cores", "1"], &["--tokens", tokens.arg()]);
    let mut a = login(&server, "tokA projA c1");
    let mut b = login(&server, "tokB projB c1");
    let mg_cas = |conn: &mut Conn| -> u64 {
        conn.send(b"mg k c\r\n");
        let line = String::from_utf8(conn.read_until(b"\r\n")).unwrap();
        let c = line
            .trim_end()
            .strip_prefix("HD c")
            .unwrap_or_else(|| panic!("{line:?}"));
        c.parse().unwrap()
    };
    a.roundtrip(b"set k 0 0 1\r\nx\r\n", b"STORED\r\n");
    let u = gets(&mut a, "k");
    assert_eq!(mg_cas(&mut a), u, "mg c and gets show one unique");
    let other = format!("set other 0 0 1010\r\n{}\r\n", "v".repeat(1010));
    b.roundtrip(other.as_bytes(), b"STORED\r\n");
    a.roundtrip(format!("ms k 1 C{u}\r\ny\r\n").as_bytes(), b"HD\r\n");
    let u2 = mg_cas(&mut a);
    assert_eq!(gets(&mut a, "k"), u2);
    assert!(
        (u2.wrapping_sub(u) as i64).unsigned_abs() > 1 << 32,
        "the meta unique moved by {} after another tenant wrote 1,010 bytes",
        u2.wrapping_sub(u) as i64
    );
    a.roundtrip(format!("ms k 1 C{u}\r\nz\r\n").as_bytes(), b"EX\r\n");
    a.roundtrip(format!("md k C{u}\r\n").as_bytes(), b"EX\r\n");
    a.roundtrip(format!("md k C{u2}\r\n").as_bytes(), b"HD\r\n");
}
