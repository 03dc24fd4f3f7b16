//! `--owner-writes`, against the real binary: a lone request for a key
//! another core owns, or a multi-get whose forwarded keys all go to one
//! core, is answered by that core, straight to the client's socket, byte
//! for byte as the connection's own core would answer it; a reply the
//! owner cannot write at once (the client reads nothing) is finished by
//! the connection's core, in order; and pipelined reads with replies of
//! the connection's own core between the owner's keep going through the
//! connection's core (lending the socket for them cost more than the
//! wake-up it saved: docs/PERFORMANCE.md, round 14).

mod common;

use std::time::Duration;

use common::{get_reply, set_request, small_window, stat_num, stats_of, within, Conn, Server};

/// A key of `prefix` that the other core owns, whichever core serves
/// `conn`: a lone `get` of it is forwarded (`forward_requests` grows).
fn remote_key(conn: &mut Conn, prefix: &str) -> String {
    key_on(conn, prefix, true)
}

/// A key of `prefix` that `conn`'s own core owns (`remote` false), or the
/// other core (`remote` true).
fn key_on(conn: &mut Conn, prefix: &str, remote: bool) -> String {
    for i in 0..256 {
        let key = format!("{prefix}{i}");
        let before = stat_num(&stats_of(conn, ""), "forward_requests");
        conn.roundtrip(format!("get {key}\r\n").as_bytes(), b"END\r\n");
        if (stat_num(&stats_of(conn, ""), "forward_requests") > before) == remote {
            return key;
        }
    }
    panic!("256 keys and none on the core asked for");
}

fn owner_written(conn: &mut Conn) -> u64 {
    stat_num(&stats_of(conn, ""), "owner_written_replies")
}

fn lone_requests(extra: &[&str]) -> u64 {
    let server = Server::start(extra);
    let mut conn = server.connect();
    let key = remote_key(&mut conn, "lone:");
    let before = owner_written(&mut conn);
    conn.roundtrip(
        format!("set {key} 5 0 3\r\nabc\r\n").as_bytes(),
        b"STORED\r\n",
    );
    let value = format!("VALUE {key} 5 3\r\nabc\r\nEND\r\n");
    conn.roundtrip(format!("get {key}\r\n").as_bytes(), value.as_bytes());
    conn.roundtrip(
        format!("mg {key} v f\r\n").as_bytes(),
        b"VA 3 f5\r\nabc\r\n",
    );
    conn.roundtrip(
        format!("incr {key} 1\r\n").as_bytes(),
        b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n",
    );
    conn.roundtrip(format!("delete {key}\r\n").as_bytes(), b"DELETED\r\n");
    conn.roundtrip(format!("get {key}\r\n").as_bytes(), b"END\r\n");
    let written = owner_written(&mut conn) - before;
    // A quiet miss has no reply at all; the `mn` after it, read on its
    // own, still comes after it.
    conn.send(format!("mg {key} v q\r\n").as_bytes());
    std::thread::sleep(Duration::from_millis(20));
    conn.roundtrip(b"mn\r\n", b"MN\r\n");
    // The same requests pipelined: one read, replies in order.
    let pipelined = format!("set {key} 0 0 1\r\nx\r\nget {key}\r\ndelete {key}\r\n");
    let replies = format!("STORED\r\nVALUE {key} 0 1\r\nx\r\nEND\r\nDELETED\r\n");
    conn.roundtrip(pipelined.as_bytes(), replies.as_bytes());
    written
}

#[test]
fn a_lone_request_for_another_core_is_answered_by_its_owner() {
    // Six lone requests for the other core, all written by their owner.
    assert_eq!(lone_requests(&[]), 6);
}

#[test]
fn without_owner_writes_the_connections_core_writes_every_reply() {
    assert_eq!(lone_requests(&["--owner-writes", "off"]), 0);
}

/// One read of requests for both cores is answered as memcached 1.6.18
/// answers it, every reply written by the connection's own core.
#[test]
fn a_pipelined_read_for_both_cores_is_written_in_order_by_its_core() {
    let server = Server::start(&[]);
    let mut conn = server.connect();
    let local = key_on(&mut conn, "here:", false);
    let remote = remote_key(&mut conn, "there:");
    let missing = remote_key(&mut conn, "missing:");
    let before = owner_written(&mut conn);
    let read = format!(
        "set {local} 0 0 1\r\nl\r\nset {remote} 1 0 1\r\nr\r\nget {local} {remote}\r\n\
         get {remote}\r\nmg {remote} v q\r\nmg {missing} v q\r\ndelete {local}\r\n\
         incr {remote} 1\r\nmn\r\n"
    );
    let replies = format!(
        "STORED\r\nSTORED\r\nVALUE {local} 0 1\r\nl\r\nVALUE {remote} 1 1\r\nr\r\nEND\r\n\
         VALUE {remote} 1 1\r\nr\r\nEND\r\nVA 1\r\nr\r\nDELETED\r\n\
         CLIENT_ERROR cannot increment or decrement non-numeric value\r\nMN\r\n"
    );
    conn.roundtrip(read.as_bytes(), replies.as_bytes());
    assert_eq!(owner_written(&mut conn), before);
}

/// `VALUE` lines and data for `key` holding `data` (flags 0), as a
/// multi-get returns each hit before its `END`.
fn value_of(key: &str, data: &[u8]) -> Vec<u8> {
    let reply = get_reply(key, data);
    reply[..reply.len() - b"END\r\n".len()].to_vec()
}

/// Reads each read's `replies` in turn, byte for byte.
fn read_each(conn: &mut Conn, replies: &[Vec<u8>]) {
    for (i, expected) in replies.iter().enumerate() {
        let got = conn.read_exact_n(expected.len());
        assert!(
            got == *expected,
            "read {i}'s replies differ from what was stored"
        );
    }
}

/// A multi-get whose forwarded keys all go to the other core is written
/// by that core, the connection's own replies before them having gone
/// first and those after them (up to 16 KiB) going with the owner's: one
/// wake-up of the connection's core saved each, and the bytes are
/// memcached's.
#[test]
fn a_multiget_whose_forwarded_keys_have_one_owner_is_written_by_it() {
    let server = Server::start(&[]);
    let mut conn = server.connect();
    let here = key_on(&mut conn, "here:", false);
    let there = remote_key(&mut conn, "there:");
    let also = remote_key(&mut conn, "also:");
    let missing = remote_key(&mut conn, "missing:");
    for (key, data) in [(&here, "h"), (&there, "tt"), (&also, "aaa")] {
        conn.roundtrip(&set_request(key, data.as_bytes()), b"STORED\r\n");
    }
    let (h, t, a) = (
        value_of(&here, b"h"),
        value_of(&there, b"tt"),
        value_of(&also, b"aaa"),
    );
    let end = b"END\r\n".to_vec();
    let lent: [(String, Vec<u8>); 5] = [
        (
            format!("get {there} {also}\r\n"),
            [&t[..], &a, &end].concat(),
        ),
        // The connection's own reply first: it writes that, the owner the rest.
        (
            format!("get {here} {there} {missing} {also}\r\n"),
            [&h[..], &t, &a, &end].concat(),
        ),
        // The connection's own reply after: it goes with the owner's.
        (
            format!("get {also} {there} {here}\r\n"),
            [&a[..], &t, &h, &end].concat(),
        ),
        (
            format!("get {here} {there} {here}\r\n"),
            [&h[..], &t, &h, &end].concat(),
        ),
        // Meta requests in one read, every reply but the last the owner's.
        (
            format!("mg {there} v\r\nmg {missing} v q\r\nmg {also} v k\r\nmn\r\n"),
            format!("VA 2\r\ntt\r\nVA 3 k{also}\r\naaa\r\nMN\r\n").into_bytes(),
        ),
    ];
    let before = owner_written(&mut conn);
    for (read, replies) in &lent {
        conn.roundtrip(read.as_bytes(), replies);
    }
    assert_eq!(owner_written(&mut conn) - before, lent.len() as u64);

    // A tail of a few KiB goes with the owner's replies too.
    let value: Vec<u8> = vec![b'l'; 4000];
    conn.roundtrip(&set_request(&here, &value), b"STORED\r\n");
    let l = value_of(&here, &value);
    let before = owner_written(&mut conn);
    conn.roundtrip(
        format!("get {there} {here}\r\n").as_bytes(),
        &[&t[..], &l, &end].concat(),
    );
    assert_eq!(owner_written(&mut conn), before + 1);

    // A reply of the connection's own between the owner's, or a tail
    // longer than a lent socket carries (16 KiB): the connection's core
    // writes all.
    let value: Vec<u8> = vec![b'L'; 20_000];
    conn.roundtrip(&set_request(&here, &value), b"STORED\r\n");
    let l = value_of(&here, &value);
    let before = owner_written(&mut conn);
    conn.roundtrip(
        format!("get {there} {here} {also}\r\n").as_bytes(),
        &[&t[..], &l, &a, &end].concat(),
    );
    conn.roundtrip(
        format!("get {there} {here}\r\n").as_bytes(),
        &[&t[..], &l, &end].concat(),
    );
    assert_eq!(owner_written(&mut conn), before);
}

/// A lent multi-get whose replies are more than its owner runs of one
/// connection's part at once (`envelope::PART_REPLIES`, 1 MiB): the owner
/// writes none of it, the rest is sent again, and the connection's core
/// writes every reply in order.
#[test]
fn a_lent_multiget_past_what_its_owner_runs_at_once_is_finished_in_order() {
    let server = Server::start(&[]);
    let mut conn = server.connect();
    let here = key_on(&mut conn, "here:", false);
    let keys: Vec<String> = (0..3)
        .map(|i| remote_key(&mut conn, &format!("wide{i}:")))
        .collect();
    let value: Vec<u8> = (0..600_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    for key in &keys {
        conn.roundtrip(&set_request(key, &value), b"STORED\r\n");
    }
    conn.roundtrip(&set_request(&here, b"h"), b"STORED\r\n");
    let mut expected = value_of(&here, b"h");
    for key in &keys {
        expected.extend_from_slice(&value_of(key, &value));
    }
    expected.extend_from_slice(b"END\r\n");
    for _ in 0..3 {
        conn.send(format!("get {here} {}\r\n", keys.join(" ")).as_bytes());
        let got = conn.read_exact_n(expected.len());
        assert!(got == expected, "the replies differ from what was stored");
    }
    conn.roundtrip(b"mn\r\n", b"MN\r\n");
}

/// The connection's own replies before the owner's, more than its socket
/// takes at once (the client reads nothing for a while): what is left of
/// them, and the owner's, are written by the connection's core, in order.
#[test]
fn replies_of_its_own_before_the_owners_that_do_not_fit_are_finished_in_order() {
    let server = Server::start(&[]);
    let mut conn = Conn::new(small_window(server.addr, 4096));
    let local = key_on(&mut conn, "big:", false);
    let remote = remote_key(&mut conn, "small:");
    let value: Vec<u8> = (0..900_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let mut setup = server.connect();
    setup.send(&set_request(&local, &value));
    assert_eq!(setup.read_until(b"\r\n"), b"STORED\r\n");
    conn.roundtrip(&set_request(&remote, b"small"), b"STORED\r\n");

    const GETS: usize = 6;
    for _ in 0..GETS {
        conn.send(format!("get {local} {remote}\r\n").as_bytes());
        std::thread::sleep(Duration::from_millis(20));
    }
    let expected = [
        &value_of(&local, &value)[..],
        &value_of(&remote, b"small"),
        b"END\r\n",
    ]
    .concat();
    read_each(&mut conn, &vec![expected; GETS]);
    conn.roundtrip(format!("delete {remote}\r\n").as_bytes(), b"DELETED\r\n");
    conn.roundtrip(b"mn\r\n", b"MN\r\n");
}

#[test]
fn a_reply_the_owner_cannot_write_at_once_is_finished_in_order() {
    let server = Server::start(&[]);
    let mut setup = server.connect();
    // A client that reads nothing for a while, with a small receive
    // buffer: the replies below fill the server's send buffer, so some
    // owner's write stops short, and the connection's core writes the rest.
    let mut conn = Conn::new(small_window(server.addr, 4096));
    let key = remote_key(&mut conn, "big:");
    let value: Vec<u8> = (0..900_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    setup.send(&set_request(&key, &value));
    assert_eq!(setup.read_until(b"\r\n"), b"STORED\r\n");

    // And a key of the connection's own core, whose replies come between
    // the owner's when pipelined.
    let local = key_on(&mut conn, "small:", false);
    conn.roundtrip(
        format!("set {local} 0 0 5\r\nsmall\r\n").as_bytes(),
        b"STORED\r\n",
    );

    // 14 MB, past any send buffer the kernel allows. A read with three
    // of the large values is more than the owner runs of one connection's
    // part at once (`envelope::PART_REPLIES`): the connection's core sends
    // the third again, and writes them all in order with its own.
    const GETS: usize = 8;
    for i in 0..GETS {
        let read = if i % 2 == 0 {
            format!("get {key}\r\n")
        } else {
            format!("get {local}\r\nget {key}\r\nget {local}\r\nget {key}\r\nget {key}\r\n")
        };
        conn.send(read.as_bytes());
        std::thread::sleep(Duration::from_millis(20));
    }
    let big = get_reply(&key, &value);
    let small = get_reply(&local, b"small");
    let expected: Vec<Vec<u8>> = (0..GETS)
        .map(|i| {
            if i % 2 == 0 {
                big.clone()
            } else {
                [&small[..], &big, &small, &big, &big].concat()
            }
        })
        .collect();
    read_each(&mut conn, &expected);
    // The connection goes on as usual.
    conn.roundtrip(format!("delete {key}\r\n").as_bytes(), b"DELETED\r\n");
    conn.roundtrip(b"mn\r\n", b"MN\r\n");
}

/// A client that stops reading while the connection's core finishes what
/// the owner could not write: closed once `--write-timeout` passes with
/// nothing moving, and counted as a write timeout (where the wait for
/// the client had been taken for the read's own deadline: the rest of the
/// reply was dropped and the connection went on reading).
#[test]
fn a_reply_left_to_the_connection_that_the_client_never_reads_times_out_as_a_write() {
    // A value larger than the kernel's send buffer takes (up to 4 MiB).
    let server = Server::start(&["--write-timeout", "2", "--max-item-size", "16m"]);
    let mut witness = server.connect();
    let mut conn = Conn::new(small_window(server.addr, 4096));
    let key = remote_key(&mut conn, "big:");
    let value = vec![b'v'; 12 << 20];
    witness.roundtrip(&set_request(&key, &value), b"STORED\r\n");
    let before = owner_written(&mut witness);
    // A lone get for the other core: its owner writes what the socket
    // takes, and the connection's core is left the rest.
    conn.send(format!("get {key}\r\n").as_bytes());
    let connections = |w: &mut Conn| stat_num(&stats_of(w, ""), "curr_connections");
    let t = within(Duration::from_secs(8), || connections(&mut witness) == 1)
        .expect("a client that never reads kept its connection for 8 s");
    assert!(t >= Duration::from_millis(1500), "closed after only {t:?}");
    let stats = stats_of(&mut witness, "");
    assert_eq!(stat_num(&stats, "write_timeouts"), 1, "{stats:?}");
    assert_eq!(stat_num(&stats, "owner_written_replies"), before);
    witness.roundtrip(b"mn\r\n", b"MN\r\n");
}
