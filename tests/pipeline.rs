//! Pipelining and concurrency against the real binary with two cores: many
//! requests in one write must come back as exactly the concatenation of their
//! replies, in request order, even when the keys live on different shards.

mod common;

use std::collections::HashMap;

use common::{Conn, Server};

const VERSION: &[u8] = b"VERSION 1.6.18-ferrocache-0.1.0\r\n";

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What a single memcached holds: key -> (flags, value).
#[derive(Default)]
struct Model {
    items: HashMap<Vec<u8>, (u32, Vec<u8>)>,
}

impl Model {
    fn get(&self, keys: &[&[u8]], out: &mut Vec<u8>) {
        for key in keys {
            if let Some((flags, value)) = self.items.get(*key) {
                out.extend_from_slice(b"VALUE ");
                out.extend_from_slice(key);
                out.extend_from_slice(format!(" {flags} {}\r\n", value.len()).as_bytes());
                out.extend_from_slice(value);
                out.extend_from_slice(b"\r\n");
            }
        }
        out.extend_from_slice(b"END\r\n");
    }

    /// memcached's do_add_delta: a result that fits is written in place and
    /// padded with spaces; a longer one replaces the value.
    fn arith(&mut self, key: &[u8], incr: bool, delta: u64) -> Vec<u8> {
        let Some((_, value)) = self.items.get_mut(key) else {
            return b"NOT_FOUND\r\n".to_vec();
        };
        let Some(old) = safe_strtoull(value) else {
            return b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n".to_vec();
        };
        let new = if incr {
            old.wrapping_add(delta)
        } else {
            old.saturating_sub(delta)
        };
        let digits = new.to_string().into_bytes();
        if digits.len() <= value.len() {
            let mut padded = digits.clone();
            padded.resize(value.len(), b' ');
            *value = padded;
        } else {
            *value = digits.clone();
        }
        [digits, b"\r\n".to_vec()].concat()
    }
}

/// memcached's safe_strtoull on an item's data (which is followed by \r\n in
/// memory): leading spaces, an optional `+`, digits, then a space or the end.
fn safe_strtoull(data: &[u8]) -> Option<u64> {
    let space = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r');
    let start = data.iter().position(|b| !space(b)).unwrap_or(data.len());
    let rest = &data[start..];
    let rest = rest.strip_prefix(b"+").unwrap_or(rest);
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || !(digits == rest.len() || space(&rest[digits])) {
        return None;
    }
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

fn value_for(rng: &mut Rng) -> Vec<u8> {
    match rng.below(4) {
        0 => rng.below(1000).to_string().into_bytes(),
        1 => Vec::new(),
        2 => [b"a\r\nb".as_slice(), b" 7", b"9  5", b"\r\n"][rng.below(4) as usize].to_vec(),
        _ => {
            let len = rng.below(40) as usize;
            (0..len).map(|i| b'a' + (i % 26) as u8).collect()
        }
    }
}

/// 200 random commands over 12 keys, written at once; the reply must equal
/// the model's, byte for byte.
#[test]
fn two_hundred_mixed_commands_in_one_write() {
    let server = Server::start(&[]);
    let mut conn = server.connect();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut model = Model::default();
    let keys: Vec<Vec<u8>> = (0..12).map(|i| format!("pk{i}").into_bytes()).collect();
    let mut request = Vec::new();
    let mut expected = Vec::new();
    for _ in 0..200 {
        let key = keys[rng.below(keys.len() as u64) as usize].clone();
        let noreply = rng.below(8) == 0;
        let nr = if noreply { " noreply" } else { "" };
        let mut reply = Vec::new();
        match rng.below(11) {
            kind @ 0..=4 => {
                let verb = ["set", "add", "replace", "append", "prepend"][kind as usize];
                let flags = rng.below(5) as u32;
                let data = value_for(&mut rng);
                request.extend_from_slice(verb.as_bytes());
                request.push(b' ');
                request.extend_from_slice(&key);
                request.extend_from_slice(format!(" {flags} 0 {}{nr}\r\n", data.len()).as_bytes());
                request.extend_from_slice(&data);
                request.extend_from_slice(b"\r\n");
                let present = model.items.contains_key(&key);
                let stored = match verb {
                    "set" => {
                        model.items.insert(key, (flags, data));
                        true
                    }
                    "add" if !present => {
                        model.items.insert(key, (flags, data));
                        true
                    }
                    "replace" if present => {
                        model.items.insert(key, (flags, data));
                        true
                    }
                    "append" if present => {
                        model
                            .items
                            .get_mut(&key)
                            .unwrap()
                            .1
                            .extend_from_slice(&data);
                        true
                    }
                    "prepend" if present => {
                        let item = model.items.get_mut(&key).unwrap();
                        item.1 = [data, std::mem::take(&mut item.1)].concat();
                        true
                    }
                    _ => false,
                };
                reply.extend_from_slice(if stored {
                    b"STORED\r\n"
                } else {
                    b"NOT_STORED\r\n"
                });
            }
            5 | 6 => {
                // A multi-get, possibly with repeats; never noreply.
                let n = 1 + rng.below(4) as usize;
                let picked: Vec<&[u8]> = (0..n)
                    .map(|_| keys[rng.below(keys.len() as u64) as usize].as_slice())
                    .collect();
                request.extend_from_slice(b"get");
                for k in &picked {
                    request.push(b' ');
                    request.extend_from_slice(k);
                }
                request.extend_from_slice(b"\r\n");
                model.get(&picked, &mut expected);
                continue;
            }
            7 | 8 => {
                let incr = rng.below(2) == 0;
                let delta = rng.below(200);
                let verb = if incr { "incr" } else { "decr" };
                request.extend_from_slice(format!("{verb} ").as_bytes());
                request.extend_from_slice(&key);
                request.extend_from_slice(format!(" {delta}{nr}\r\n").as_bytes());
                reply = model.arith(&key, incr, delta);
            }
            9 => {
                request.extend_from_slice(b"delete ");
                request.extend_from_slice(&key);
                request.extend_from_slice(format!("{nr}\r\n").as_bytes());
                let found = model.items.remove(&key).is_some();
                reply.extend_from_slice(if found {
                    b"DELETED\r\n"
                } else {
                    b"NOT_FOUND\r\n"
                });
            }
            _ => {
                request.extend_from_slice(b"touch ");
                request.extend_from_slice(&key);
                request.extend_from_slice(format!(" 0{nr}\r\n").as_bytes());
                let found = model.items.contains_key(&key);
                reply.extend_from_slice(if found {
                    b"TOUCHED\r\n"
                } else {
                    b"NOT_FOUND\r\n"
                });
            }
        }
        if !noreply {
            expected.extend_from_slice(&reply);
        }
    }
    // A final check of every key, and a sentinel that proves nothing trails.
    let all: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
    request.extend_from_slice(b"get ");
    request.extend_from_slice(&all.join(&b' '));
    request.extend_from_slice(b"\r\nversion\r\n");
    model.get(&all, &mut expected);
    expected.extend_from_slice(VERSION);

    conn.send(&request);
    let got = conn.read_exact_n(expected.len());
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&expected)
    );
    conn.roundtrip(b"version\r\n", VERSION);
}

fn value_reply(key: &str, flags: u32, data: &str) -> String {
    format!("VALUE {key} {flags} {}\r\n{data}\r\nEND\r\n", data.len())
}

/// 50 keys (so both shards own some), fetched in a scrambled order with
/// repeats and misses: the reply follows the request's key order.
#[test]
fn multi_get_across_shards_keeps_key_order() {
    let server = Server::start(&[]);
    let mut conn = server.connect();
    let mut sets = Vec::new();
    for i in 0..50 {
        sets.extend_from_slice(
            format!("set mk{i} {i} 0 {}\r\nval{i}\r\n", 3 + i.to_string().len()).as_bytes(),
        );
    }
    conn.send(&sets);
    assert_eq!(conn.read_exact_n(8 * 50), b"STORED\r\n".repeat(50));

    let mut rng = Rng(42);
    let mut order: Vec<String> = Vec::new();
    for _ in 0..120 {
        let i = rng.below(60); // 50..59 are never set
        order.push(format!("mk{i}"));
    }
    order.push("mk7".into());
    order.push("mk7".into());
    let mut expected = String::new();
    for key in &order {
        let i: u32 = key[2..].parse().unwrap();
        if i < 50 {
            expected.push_str(&format!(
                "VALUE {key} {i} {}\r\nval{i}\r\n",
                3 + i.to_string().len()
            ));
        }
    }
    expected.push_str("END\r\n");
    conn.roundtrip(
        format!("get {}\r\n", order.join(" ")).as_bytes(),
        expected.as_bytes(),
    );

    // gets in the same shape carries uniques; strip them and compare.
    conn.send(format!("gets {}\r\n", order.join(" ")).as_bytes());
    let reply = String::from_utf8(conn.read_until(b"\r\nEND\r\n")).unwrap();
    let mut stripped = String::new();
    for line in reply.split_inclusive("\r\n") {
        if let Some(header) = line.strip_prefix("VALUE ") {
            let words: Vec<&str> = header.trim_end().split(' ').collect();
            assert_eq!(words.len(), 4, "{line:?}");
            stripped.push_str(&format!("VALUE {} {} {}\r\n", words[0], words[1], words[2]));
        } else {
            stripped.push_str(line);
        }
    }
    assert_eq!(stripped, expected);

    // Pipelined single-key gets interleaved with writes stay in order too.
    let mut request = String::new();
    let mut expected = String::new();
    for i in 0..50 {
        request.push_str(&format!(
            "get mk{i}\r\nset mk{i} 1 0 1\r\nz\r\nget mk{i}\r\n"
        ));
        expected.push_str(&value_reply(&format!("mk{i}"), i, &format!("val{i}")));
        expected.push_str("STORED\r\n");
        expected.push_str(&value_reply(&format!("mk{i}"), 1, "z"));
    }
    conn.roundtrip(request.as_bytes(), expected.as_bytes());
}

/// 100 connections at once, each on its own thread with its own keys.
#[test]
fn hundred_concurrent_connections() {
    let server = Server::start(&[]);
    let addr = server.addr;
    let threads: Vec<_> = (0..100)
        .map(|t| {
            std::thread::spawn(move || {
                let mut conn = Conn::new(std::net::TcpStream::connect(addr).expect("connect"));
                for round in 0..20 {
                    let key = format!("c{t}_{}", round % 5);
                    let value = format!("t{t}r{round}");
                    conn.roundtrip(
                        format!("set {key} {t} 0 {}\r\n{value}\r\n", value.len()).as_bytes(),
                        b"STORED\r\n",
                    );
                    conn.roundtrip(
                        format!("get {key}\r\n").as_bytes(),
                        value_reply(&key, t, &value).as_bytes(),
                    );
                }
                let counter = format!("n{t}");
                conn.roundtrip(
                    format!("set {counter} 0 0 1\r\n0\r\n").as_bytes(),
                    b"STORED\r\n",
                );
                let mut pipelined = String::new();
                let mut expected = String::new();
                for i in 1..=30 {
                    pipelined.push_str(&format!("incr {counter} 1\r\n"));
                    expected.push_str(&format!("{i}\r\n"));
                }
                conn.roundtrip(pipelined.as_bytes(), expected.as_bytes());
                conn
            })
        })
        .collect();
    // Hold every connection open until all are done, so they overlap.
    let conns: Vec<Conn> = threads.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(conns.len(), 100);
    // Another connection sees every thread's last writes.
    let mut check = server.connect();
    let keys: Vec<String> = (0..100).map(|t| format!("c{t}_4 n{t}")).collect();
    let mut expected = String::new();
    for t in 0..100 {
        expected.push_str(&format!(
            "VALUE c{t}_4 {t} {}\r\nt{t}r19\r\n",
            format!("t{t}r19").len()
        ));
        expected.push_str(&format!("VALUE n{t} 0 2\r\n30\r\n"));
    }
    expected.push_str("END\r\n");
    check.roundtrip(
        format!("get {}\r\n", keys.join(" ")).as_bytes(),
        expected.as_bytes(),
    );
}

/// Connections opened together, with the cores' connections balanced
/// (some are handed to the other core as they arrive, on either socket
/// path) and without: every
/// one is served, its pipelined replies in order, and each sees the others'
/// writes; then half close and new ones take their place.
#[test]
fn connections_are_served_with_and_without_balancing() {
    for (balance, socket_io) in [("on", "uring"), ("off", "uring"), ("on", "glommio")] {
        let server = Server::start(&["--balance", balance, "--socket-io", socket_io]);
        let mut conns: Vec<Conn> = (0..24).map(|_| server.connect()).collect();
        for (i, conn) in conns.iter_mut().enumerate() {
            let mut request = String::new();
            let mut expected = String::new();
            for j in 0..8 {
                let value = format!("{balance}{i}.{j}");
                request.push_str(&format!(
                    "set b{i}_{j} {i} 0 {}\r\n{value}\r\n",
                    value.len()
                ));
                request.push_str(&format!("get b{i}_{j}\r\n"));
                expected.push_str("STORED\r\n");
                expected.push_str(&value_reply(&format!("b{i}_{j}"), i as u32, &value));
            }
            conn.roundtrip(request.as_bytes(), expected.as_bytes());
        }
        conns.truncate(12);
        conns.extend((0..12).map(|_| server.connect()));
        for (i, conn) in conns.iter_mut().enumerate() {
            let other = 23 - i;
            let value = format!("{balance}{other}.7");
            conn.roundtrip(
                format!("get b{other}_7\r\n").as_bytes(),
                value_reply(&format!("b{other}_7"), other as u32, &value).as_bytes(),
            );
        }
    }
}

/// One get line of 1,000 keys of 250 bytes (about 251 KB).
#[test]
fn thousand_key_multi_get_of_long_keys() {
    let server = Server::start(&[]);
    let mut conn = server.connect();
    let key = |i: usize| format!("{i:0>250}");
    let mut sets = Vec::new();
    for i in (0..1000).step_by(2) {
        sets.extend_from_slice(
            format!(
                "set {} {i} 0 {}\r\nv{i}\r\n",
                key(i),
                1 + i.to_string().len()
            )
            .as_bytes(),
        );
    }
    conn.send(&sets);
    assert_eq!(conn.read_exact_n(8 * 500), b"STORED\r\n".repeat(500));

    let mut line = String::from("get");
    let mut expected = String::new();
    for i in 0..1000 {
        line.push(' ');
        line.push_str(&key(i));
        if i % 2 == 0 {
            expected.push_str(&format!(
                "VALUE {} {i} {}\r\nv{i}\r\n",
                key(i),
                1 + i.to_string().len()
            ));
        }
    }
    line.push_str("\r\n");
    expected.push_str("END\r\n");
    assert!(line.len() > 250_000);
    conn.roundtrip(line.as_bytes(), expected.as_bytes());
    conn.roundtrip(b"version\r\n", VERSION);
}

/// Large values on both shards, set and fetched in one pipelined write: the
/// remote replies are big and must still be spliced in order.
#[test]
fn large_values_across_shards_in_one_write() {
    let server = Server::start(&[]);
    let mut conn = server.connect();
    let value = |i: usize| -> Vec<u8> {
        (0..200_000 + i * 1000)
            .map(|j| b'a' + ((i + j) % 26) as u8)
            .collect()
    };
    let mut request = Vec::new();
    let mut expected = Vec::new();
    for i in 0..16 {
        let v = value(i);
        request.extend_from_slice(format!("set big{i} {i} 0 {}\r\n", v.len()).as_bytes());
        request.extend_from_slice(&v);
        request.extend_from_slice(b"\r\n");
        expected.extend_from_slice(b"STORED\r\n");
    }
    // One multi-get of all of them (about 3.3 MB of reply), then singles
    // interleaved with a small local/remote mix.
    request.extend_from_slice(b"get");
    for i in 0..16 {
        request.extend_from_slice(format!(" big{i}").as_bytes());
    }
    request.extend_from_slice(b"\r\n");
    for i in 0..16 {
        let v = value(i);
        expected.extend_from_slice(format!("VALUE big{i} {i} {}\r\n", v.len()).as_bytes());
        expected.extend_from_slice(&v);
        expected.extend_from_slice(b"\r\n");
    }
    expected.extend_from_slice(b"END\r\n");
    for i in (0..16).rev() {
        let v = value(i);
        request.extend_from_slice(format!("get big{i}\r\nincr nope{i} 1\r\n").as_bytes());
        expected.extend_from_slice(format!("VALUE big{i} {i} {}\r\n", v.len()).as_bytes());
        expected.extend_from_slice(&v);
        expected.extend_from_slice(b"\r\nEND\r\nNOT_FOUND\r\n");
    }
    request.extend_from_slice(b"version\r\n");
    expected.extend_from_slice(VERSION);
    // Write from another thread: the replies are far bigger than the socket
    // buffers, so reading must go on while the request is still being sent.
    let mut writer = conn.stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        use std::io::Write;
        writer.write_all(&request).unwrap();
    });
    let got = conn.read_exact_n(expected.len());
    sender.join().unwrap();
    assert!(got == expected, "large pipelined replies differ");
    conn.roundtrip(b"version\r\n", VERSION);
}

/// The same pipeline written one byte per write: requests split at every
/// point on the wire still produce the same replies.
#[test]
fn byte_at_a_time() {
    let server = Server::start(&[]);
    let mut conn = server.connect();
    let mut request = Vec::new();
    let mut expected = Vec::new();
    for i in 0..20 {
        request.extend_from_slice(
            format!(
                "set s{i} {i} 0 5\r\nv\r\n{i:>2}\r\nget s{i} s{} s{i}\r\nincr s{i} 1\r\n",
                i + 1
            )
            .as_bytes(),
        );
        let value = format!("v\r\n{i:>2}");
        expected.extend_from_slice(
            format!(
                "STORED\r\nVALUE s{i} {i} 5\r\n{value}\r\nVALUE s{i} {i} 5\r\n{value}\r\nEND\r\n"
            )
            .as_bytes(),
        );
        expected
            .extend_from_slice(b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n");
    }
    request.extend_from_slice(b"set n 0 0 1 noreply\r\n7\r\nincr n 3\r\ndelete n 0\r\nversion\r\n");
    expected.extend_from_slice(b"10\r\nDELETED\r\n");
    expected.extend_from_slice(VERSION);
    for byte in &request {
        conn.send(std::slice::from_ref(byte));
    }
    let got = conn.read_exact_n(expected.len());
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&expected)
    );
}

/// flush_all and stats in the middle of a pipeline apply after every keyed
/// command before them (local or forwarded) and before every one after.
#[test]
fn admin_commands_keep_their_place_in_a_pipeline() {
    let server = Server::start(&[]);
    let mut conn = server.connect();
    let keys: Vec<String> = (0..20).map(|i| format!("ak{i}")).collect();
    let all = keys.join(" ");
    let sets = |value: &str, noreply: &str| -> String {
        keys.iter()
            .map(|k| format!("set {k} 0 0 {}{noreply}\r\n{value}\r\n", value.len()))
            .collect()
    };
    let values = |value: &str| -> String {
        let mut s: String = keys
            .iter()
            .map(|k| format!("VALUE {k} 0 {}\r\n{value}\r\n", value.len()))
            .collect();
        s.push_str("END\r\n");
        s
    };
    let request = format!(
        "{}get {all}\r\nflush_all\r\nget {all}\r\n{}flush_all noreply\r\n{}get {all}\r\n",
        sets("one", ""),
        sets("two", " noreply"),
        sets("three", " noreply"),
    );
    let expected = format!(
        "{}{}OK\r\nEND\r\n{}",
        "STORED\r\n".repeat(20),
        values("one"),
        values("three"),
    );
    conn.roundtrip(request.as_bytes(), expected.as_bytes());

    // stats counts every set written before it in the same batch.
    conn.send(
        format!(
            "{}delete ak0 noreply\r\nstats\r\n",
            sets("four", " noreply")
        )
        .as_bytes(),
    );
    let reply = String::from_utf8(conn.read_until(b"END\r\n")).unwrap();
    assert!(
        reply.contains("\r\nSTAT curr_items 19\r\n"),
        "stats after 20 sets and a delete: {reply}"
    );
}
