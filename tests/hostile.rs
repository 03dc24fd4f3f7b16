//! Hostile clients against the real binary (`--cores 2`, small memory).
//!
//! In every case the offending connection gets a memcached-style error or is
//! closed; a witness connection, opened before it, still gets correct
//! replies afterwards; and the server's memory stays bounded. Each test
//! starts its own server, so they run in parallel.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{Conn, Server};
use ferrocache::keyspace::{shard_of, KeyHasher};
use ferrocache::tenancy::Namespaces;

const MIB: u64 = 1 << 20;
const SMALL: &[&str] = &["--memory-mb", "64"];

const BAD_LINE: &[u8] = b"CLIENT_ERROR bad command line format\r\n";
const BAD_CHUNK: &[u8] = b"CLIENT_ERROR bad data chunk\r\n";
const BAD_EXPTIME: &[u8] = b"CLIENT_ERROR invalid exptime argument\r\n";
const BAD_DELTA: &[u8] = b"CLIENT_ERROR invalid numeric delta argument\r\n";
const LINE_TOO_LONG: &[u8] = b"CLIENT_ERROR line too long\r\n";
const TOO_LARGE: &[u8] = b"SERVER_ERROR object too large for cache\r\n";
const TOO_MANY: &[u8] = b"SERVER_ERROR too many open connections\r\n";

/// A connection opened before the hostile one, which must keep working.
struct Witness {
    conn: Conn,
    n: u32,
}

impl Witness {
    fn new(server: &Server) -> Witness {
        let mut conn = server.connect();
        conn.roundtrip(b"get witness-probe\r\n", b"END\r\n");
        Witness { conn, n: 0 }
    }

    /// A fresh set/get round trip.
    fn check(&mut self) {
        self.n += 1;
        let (key, value) = (format!("witness-{}", self.n), format!("alive {}", self.n));
        let set = format!("set {key} 7 0 {}\r\n{value}\r\n", value.len());
        self.conn.roundtrip(set.as_bytes(), b"STORED\r\n");
        let get = format!("get {key}\r\n");
        let reply = format!("VALUE {key} 7 {}\r\n{value}\r\nEND\r\n", value.len());
        self.conn.roundtrip(get.as_bytes(), reply.as_bytes());
    }
}

/// The most resident memory the server process has had (VmHWM).
fn peak_rss(server: &Server) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

fn assert_rss_bounded(server: &Server, before: u64, slack: u64, what: &str) {
    let (now, peak) = (server.rss_bytes(), peak_rss(server));
    assert!(
        now <= before + slack && peak <= before + slack,
        "{what}: RSS grew from {} MiB to {} MiB (peak {} MiB), bound +{} MiB",
        before / MIB,
        now / MIB,
        peak / MIB,
        slack / MIB
    );
}

fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Seeded xorshift64: the same "random" bytes on every run.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// One row of the table: bytes sent on a fresh connection, the exact reply,
/// and whether the server then closes the connection.
struct Case {
    name: &'static str,
    send: Vec<u8>,
    reply: Vec<u8>,
    closes: bool,
}

fn case(name: &'static str, send: &[u8], reply: &[&[u8]]) -> Case {
    Case {
        name,
        send: send.to_vec(),
        reply: reply.concat(),
        closes: false,
    }
}

fn closing(name: &'static str, send: &[u8], reply: &[u8]) -> Case {
    Case {
        name,
        send: send.to_vec(),
        reply: reply.to_vec(),
        closes: true,
    }
}

fn table() -> Vec<Case> {
    let key250 = "k".repeat(250);
    let key251 = "k".repeat(251);
    let get250 = format!("get {key250}\r\n");
    let get251 = format!("get {key251}\r\n");
    let many_tokens = format!("set k 0 0 1{}\r\nx\r\n", " a".repeat(30));
    // A too-large value whose data is itself commands: none may run.
    let mut too_large = b"set huge 0 0 2000000\r\n".to_vec();
    while too_large.len() < 22 + 2_000_000 {
        too_large.extend_from_slice(b"set evil 0 0 1\r\nx\r\n");
    }
    too_large.truncate(22 + 2_000_000);
    too_large.extend_from_slice(b"\r\nget evil huge\r\n");

    vec![
        // Lines with no end.
        closing("line too long", &[b'a'; 3000], LINE_TOO_LONG),
        closing(
            "storage line too long",
            format!("set {}", "k".repeat(3000)).as_bytes(),
            LINE_TOO_LONG,
        ),
        // NUL and other control bytes in commands and keys.
        case("NUL in key", b"get a\x00b\r\n", &[BAD_LINE]),
        case(
            "control byte in set key",
            b"set k\x01y 0 0 1\r\nx\r\n",
            &[BAD_LINE, b"ERROR\r\n"],
        ),
        case("NUL command", b"\x00\x00\x00\r\n", &[b"ERROR\r\n"]),
        case("tab is not a separator", b"get\tk\r\n", &[b"ERROR\r\n"]),
        case("DEL in key", b"delete k\x7f\r\n", &[BAD_LINE]),
        case("escape sequence key", b"incr \x1b[31m 1\r\n", &[BAD_LINE]),
        case("empty lines", b"\r\n\n", &[b"ERROR\r\n", b"ERROR\r\n"]),
        case(
            "high bytes are key bytes",
            b"get \x80\xff\r\n",
            &[b"END\r\n"],
        ),
        case("250-byte key", get250.as_bytes(), &[b"END\r\n"]),
        case("251-byte key", get251.as_bytes(), &[BAD_LINE]),
        case(
            "binary-safe data",
            b"set nul-data 0 0 5\r\n\x00\r\n\x00\n\r\nget nul-data\r\n",
            &[
                b"STORED\r\n",
                b"VALUE nul-data 0 5\r\n\x00\r\n\x00\n\r\n",
                b"END\r\n",
            ],
        ),
        // Negative, overflowing and non-numeric numbers.
        case(
            "negative flags",
            b"set k -1 0 1\r\nx\r\n",
            &[BAD_LINE, b"ERROR\r\n"],
        ),
        case(
            "flags 2^32",
            b"set k 4294967296 0 1\r\nx\r\n",
            &[BAD_LINE, b"ERROR\r\n"],
        ),
        case(
            "flags 2^32-1",
            b"set flags-max 4294967295 0 1\r\nx\r\nget flags-max\r\n",
            &[
                b"STORED\r\n",
                b"VALUE flags-max 4294967295 1\r\nx\r\nEND\r\n",
            ],
        ),
        case(
            "non-numeric flags",
            b"set k 0x1 0 1\r\nx\r\n",
            &[BAD_LINE, b"ERROR\r\n"],
        ),
        case("negative length", b"set k 0 0 -1\r\n", &[BAD_LINE]),
        case("non-numeric length", b"set k 0 0 abc\r\n", &[BAD_LINE]),
        case(
            "overflowing length",
            b"set k 0 0 99999999999999999999\r\n",
            &[BAD_LINE],
        ),
        case("length 2^31", b"set k 0 0 2147483648\r\n", &[BAD_LINE]),
        case(
            "non-numeric exptime",
            b"set k 0 abc 1\r\nx\r\n",
            &[BAD_LINE, b"ERROR\r\n"],
        ),
        case(
            "overflowing exptime",
            b"set k 0 -99999999999999999999 1\r\nx\r\n",
            &[BAD_LINE, b"ERROR\r\n"],
        ),
        case(
            "negative exptime is already expired",
            b"set neg-exp 0 -1 1\r\nx\r\nget neg-exp\r\n",
            &[b"STORED\r\n", b"END\r\n"],
        ),
        case(
            "negative cas",
            b"cas k 0 0 1 -1\r\nx\r\n",
            &[BAD_LINE, b"ERROR\r\n"],
        ),
        case(
            "cas 2^64",
            b"cas k 0 0 1 18446744073709551616\r\nx\r\n",
            &[BAD_LINE, b"ERROR\r\n"],
        ),
        case("touch exptime word", b"touch k abc\r\n", &[BAD_EXPTIME]),
        case(
            "touch exptime overflow",
            b"touch k 99999999999999999999\r\n",
            &[BAD_EXPTIME],
        ),
        case("gat exptime word", b"gat abc k\r\n", &[BAD_EXPTIME]),
        case("gats bare minus", b"gats - k\r\n", &[BAD_EXPTIME]),
        case(
            "flush_all exptime word",
            b"flush_all -x\r\n",
            &[BAD_EXPTIME],
        ),
        case("negative delta", b"incr k -1\r\n", &[BAD_DELTA]),
        case(
            "delta 2^64",
            b"incr k 18446744073709551616\r\n",
            &[BAD_DELTA],
        ),
        case("non-numeric delta", b"decr k 1a\r\n", &[BAD_DELTA]),
        case(
            "incr wraps, decr floors",
            b"set num 0 0 2\r\n10\r\nincr num 18446744073709551615\r\ndecr num 100\r\n",
            &[b"STORED\r\n", b"9\r\n", b"0\r\n"],
        ),
        // Data blocks that do not match their declared length.
        case(
            "data shorter than declared",
            b"set short 0 0 10\r\nabc\r\nget zz\r\nget short\r\n",
            &[BAD_CHUNK, b"ERROR\r\n", b"END\r\n"],
        ),
        case(
            "data longer than declared",
            b"set long 0 0 3\r\nabcdef\r\nget long\r\n",
            &[BAD_CHUNK, b"ERROR\r\n", b"END\r\n"],
        ),
        case(
            "too large value is swallowed whole",
            &too_large,
            &[TOO_LARGE, b"END\r\n"],
        ),
        // Extra tokens.
        case(
            "set extra token",
            b"set k 0 0 1 noreply extra\r\nx\r\n",
            &[b"ERROR\r\n", b"ERROR\r\n"],
        ),
        case(
            "delete extra token",
            b"delete k 0 noreply extra\r\n",
            &[b"ERROR\r\n"],
        ),
        case(
            "delete hold time",
            b"delete k 5\r\n",
            &[b"CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n"],
        ),
        case(
            "incr extra token",
            b"incr k 1 noreply x\r\n",
            &[b"ERROR\r\n"],
        ),
        case("touch extra tokens", b"touch k 1 2 3\r\n", &[b"ERROR\r\n"]),
        case(
            "verbosity extra tokens",
            b"verbosity 1 2 3\r\n",
            &[b"ERROR\r\n"],
        ),
        case(
            "flush_all extra tokens",
            b"flush_all 0 0 0\r\n",
            &[b"ERROR\r\n"],
        ),
        case(
            "thirty tokens",
            many_tokens.as_bytes(),
            &[b"ERROR\r\n", b"ERROR\r\n"],
        ),
        case(
            "26-key get",
            b"get a b c d e f g h i j k l m n o p q r s t u v w x y z\r\n",
            &[b"END\r\n"],
        ),
    ]
}

#[test]
fn table_of_hostile_inputs() {
    let server = Server::start(SMALL);
    let mut witness = Witness::new(&server);
    witness.check();
    let before = server.rss_bytes();
    for case in table() {
        let mut conn = server.connect();
        conn.send(&case.send);
        let got = conn.read_exact_n(case.reply.len());
        assert_eq!(show(&got), show(&case.reply), "case {:?}", case.name);
        if case.closes {
            assert!(
                conn.is_closed(),
                "case {:?}: connection left open",
                case.name
            );
        } else {
            // Still in step: the next command gets its own reply.
            conn.roundtrip(b"get after-case\r\n", b"END\r\n");
        }
        witness.check();
    }
    assert_rss_bounded(&server, before, 64 * MIB, "table");
}

#[test]
fn binary_protocol_is_refused_and_closed() {
    let server = Server::start(SMALL);
    let mut witness = Witness::new(&server);
    let mut conn = server.connect();
    let mut header = vec![0x80, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1];
    header.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
    header.extend_from_slice(&[0; 8]);
    header.push(b'k');
    conn.send(&header);
    let head = conn.read_exact_n(24);
    assert_eq!(head[0], 0x81, "response magic");
    assert_eq!(&head[6..8], &[0x00, 0x81], "status: unknown command");
    assert_eq!(&head[12..16], &[0xde, 0xad, 0xbe, 0xef], "opaque echoed");
    let body_len = u32::from_be_bytes(head[8..12].try_into().unwrap()) as usize;
    conn.read_exact_n(body_len);
    assert!(conn.is_closed());
    witness.check();
}

#[test]
fn half_sent_commands_then_disconnect() {
    let server = Server::start(SMALL);
    let mut witness = Witness::new(&server);
    let halves: [&[u8]; 4] = [
        b"set half 0 0 100\r\nabc",
        b"set half 0 0 3\r\nabc\r",
        b"get half-line",
        b"set half 0 0 100000\r\n",
    ];
    for half in halves {
        let mut conn = server.connect();
        conn.send(half);
        drop(conn);
        witness.check();
    }
    // Shut both directions mid-value, then close.
    let mut conn = server.connect();
    conn.send(b"set half 0 0 10\r\nab");
    conn.stream.shutdown(Shutdown::Both).unwrap();
    drop(conn);
    witness.check();
    witness.conn.roundtrip(b"get half\r\n", b"END\r\n");
}

#[test]
fn overlong_multiget_line_closes() {
    let server = Server::start(SMALL);
    let mut witness = Witness::new(&server);
    // 2,001 keys of 250 bytes: past the retrieval line limit, no newline.
    let mut line = b"get".to_vec();
    for i in 0..2001 {
        line.extend_from_slice(format!(" {i:0>250}").as_bytes());
    }
    let conn = server.connect();
    let mut writer = conn.stream.try_clone().unwrap();
    let sender = thread::spawn(move || {
        // The server may close (and reset) before we finish writing.
        let _ = writer.write_all(&line);
    });
    let mut reply = Vec::new();
    let mut stream = conn.stream;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = stream.read_to_end(&mut reply);
    sender.join().unwrap();
    assert!(
        reply.is_empty() || reply == LINE_TOO_LONG,
        "got {:?}",
        show(&reply)
    );
    witness.check();
}

/// Writes `bytes` from one thread while another reads every reply, so
/// neither side can deadlock on full socket buffers. Returns the replies.
fn blast(conn: Conn, bytes: Vec<u8>) -> Vec<u8> {
    let mut writer = conn.stream.try_clone().unwrap();
    let sender = thread::spawn(move || {
        for chunk in bytes.chunks(64 * 1024) {
            if writer.write_all(chunk).is_err() {
                return; // closed by the server: fine
            }
        }
        let _ = writer.shutdown(Shutdown::Write);
    });
    let mut stream = conn.stream;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut replies = Vec::new();
    let mut buf = vec![0; 64 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => replies.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => panic!("reading replies: {e}"),
        }
    }
    sender.join().unwrap();
    replies
}

#[test]
fn ten_megabytes_of_random_bytes() {
    let server = Server::start(SMALL);
    let mut witness = Witness::new(&server);
    let before = server.rss_bytes();
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut bytes: Vec<u8> = (0..10 << 20).map(|_| rng.next() as u8).collect();
    bytes[0] = b'x'; // not the binary magic, or the first reply is all there is
    let replies = blast(server.connect(), bytes);
    // Random bytes make unknown commands, or a line too long; nothing else.
    // A reset may cut the last reply short; check the whole lines.
    let end = replies
        .windows(2)
        .rposition(|w| w == b"\r\n")
        .map_or(0, |i| i + 2);
    let text = show(&replies[..end]);
    for line in text.split_terminator("\r\n") {
        assert!(
            ["ERROR", "CLIENT_ERROR line too long"].contains(&line)
                || line.starts_with("CLIENT_ERROR ")
                || line.starts_with("SERVER_ERROR "),
            "unexpected reply line {line:?}"
        );
    }
    witness.check();
    assert_rss_bounded(&server, before, 64 * MIB, "random bytes");
}

#[test]
fn two_megabytes_of_random_commands() {
    let server = Server::start(SMALL);
    let mut witness = Witness::new(&server);
    let before = server.rss_bytes();
    // Real verbs and tokens in random order, so the parser gets past the
    // first word: storage lines with odd lengths, bad numbers, noreply...
    let words: &[&[u8]] = &[
        b"get",
        b"gets",
        b"gat",
        b"gats",
        b"set",
        b"add",
        b"replace",
        b"append",
        b"prepend",
        b"cas",
        b"delete",
        b"incr",
        b"decr",
        b"touch",
        b"stats",
        b"version",
        b"verbosity",
        b"noreply",
        b"k",
        b"key",
        b"0",
        b"1",
        b"5",
        b"-1",
        b"100",
        b"4294967296",
        b"18446744073709551616",
        b"abc",
        b"\x00",
        b"\x7f",
        b"\r",
        b"\t",
        b"\xff",
        b"",
    ];
    let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
    // No `stats` (a round trip to every shard each): it would only make this slow.
    let mut bytes = Vec::with_capacity(2 << 20);
    while bytes.len() < 2 << 20 {
        for _ in 0..rng.below(8) {
            bytes.extend_from_slice(words[rng.below(words.len())]);
            bytes.push(b' ');
        }
        bytes.extend_from_slice(if rng.below(4) == 0 { b"\n" } else { b"\r\n" });
    }
    let replies = blast(server.connect(), bytes);
    assert!(!replies.is_empty());
    witness.check();
    assert_rss_bounded(&server, before, 64 * MIB, "random commands");
}

/// Reads until the server closes the connection; returns how long it took.
fn time_to_close(mut stream: TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 256];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return None
            }
            Err(_) => return Some(start.elapsed()),
        }
    }
}

/// Keeps the witness busy (so its own idle timer never fires) until `done`.
fn keep_witness_busy(witness: &mut Witness, done: impl Fn() -> bool) {
    while !done() {
        witness.check();
        thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn idle_and_half_sent_connections_are_closed() {
    let server = Server::start(&["--memory-mb", "64", "--idle-timeout", "2"]);
    let mut witness = Witness::new(&server);
    let bound = Duration::from_secs(2 + 2);
    let idle = server.connect();
    let mut half = server.connect();
    half.send(b"set half 0 0 5\r\nhe");
    let watchers: Vec<_> = [idle.stream, half.stream]
        .into_iter()
        .map(|s| thread::spawn(move || time_to_close(s, Duration::from_secs(8))))
        .collect();
    keep_witness_busy(&mut witness, || watchers.iter().all(|w| w.is_finished()));
    let times: Vec<_> = watchers.into_iter().map(|w| w.join().unwrap()).collect();
    for (what, t) in ["idle", "half-sent"].iter().zip(times) {
        let t = t.unwrap_or_else(|| panic!("{what} connection still open after 8 s"));
        assert!(t <= bound, "{what} connection closed after {t:?}");
    }
    witness.check();
}

#[test]
fn slowloris_connection_is_closed() {
    let server = Server::start(&["--memory-mb", "64", "--idle-timeout", "2"]);
    let mut witness = Witness::new(&server);
    let slow = server.connect();
    let mut writer = slow.stream.try_clone().unwrap();
    let closed = Arc::new(AtomicBool::new(false));
    let stop = closed.clone();
    let dribbler = thread::spawn(move || {
        // One byte a second of a command that never ends.
        for &b in b"set slowloris 0 0 100\r\n".iter().cycle() {
            if stop.load(Ordering::Relaxed) || writer.write_all(&[b]).is_err() {
                return;
            }
            thread::sleep(Duration::from_secs(1));
        }
    });
    let watcher = thread::spawn(move || {
        let t = time_to_close(slow.stream, Duration::from_secs(8));
        closed.store(true, Ordering::Relaxed);
        t
    });
    keep_witness_busy(&mut witness, || watcher.is_finished());
    let t = watcher.join().unwrap();
    dribbler.join().unwrap();
    let t = t.expect("a connection sending one byte a second was still open after 8 s");
    assert!(t <= Duration::from_secs(4), "slowloris closed after {t:?}");
    witness.check();
}

/// Connects and sends a probe: the connection if served, `None` if refused
/// (the error line, or a reset when the refusal raced our probe).
fn try_admit(server: &Server) -> Option<Conn> {
    let mut conn = server.connect();
    conn.send(b"get probe\r\n");
    let mut reply = Vec::new();
    let mut byte = [0u8; 1];
    while !reply.ends_with(b"\r\n") {
        match conn.stream.read(&mut byte) {
            Ok(1) => reply.push(byte[0]),
            _ => return None,
        }
    }
    if reply == TOO_MANY {
        return None;
    }
    assert_eq!(show(&reply), "END\r\n");
    Some(conn)
}

/// A connection past the limit gets the error line, unasked, then EOF.
fn assert_refused(server: &Server) {
    let mut conn = server.connect();
    let reply = conn.read_until(b"\r\n");
    assert_eq!(show(&reply), show(TOO_MANY));
    assert!(conn.is_closed(), "a refused connection must be closed");
}

/// Admission after a close is asynchronous (the server sees the FIN later),
/// so poll until a slot frees, within a deadline.
fn admit_eventually(server: &Server) -> Conn {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match try_admit(server) {
            Some(conn) => return conn,
            None if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            None => panic!("no slot freed within 5 s of closing connections"),
        }
    }
}

#[test]
fn connections_past_the_limit_are_refused() {
    let server = Server::start(&["--memory-mb", "64", "--max-connections", "20"]);
    let mut witness = Witness::new(&server);
    let mut open: Vec<Conn> = (0..19)
        .map(|i| try_admit(&server).unwrap_or_else(|| panic!("connection {i} refused")))
        .collect();
    for _ in 0..3 {
        assert_refused(&server);
    }
    for conn in &mut open {
        conn.roundtrip(b"get still-here\r\n", b"END\r\n");
    }
    witness.check();
    open.truncate(14);
    for _ in 0..5 {
        open.push(admit_eventually(&server));
    }
    assert_refused(&server);
    for conn in &mut open {
        conn.roundtrip(b"get still-here\r\n", b"END\r\n");
    }
    witness.check();
}

/// The hash seed of servers whose key placement a test predicts.
const HASH_SEED: &str = "7";
/// `SMALL`, with the key hash seeded as `key_per_shard` predicts.
const SMALL_PLACED: &[&str] = &["--memory-mb", "64", "--hash-seed", HASH_SEED];

/// Keys of the default namespace owned by shard 0 and by shard 1 of 2, on
/// a server started with `SMALL_PLACED`.
fn key_per_shard(prefix: &str) -> [String; 2] {
    let hasher =
        KeyHasher::from_seed(HASH_SEED.parse().unwrap()).for_ns(Namespaces::default_namespace().id);
    let mut found: [Option<String>; 2] = [None, None];
    for i in 0.. {
        let key = format!("{prefix}{i}");
        let shard = shard_of(hasher.hash(key.as_bytes()), 2);
        found[shard].get_or_insert(key);
        if found.iter().all(Option::is_some) {
            break;
        }
    }
    found.map(Option::unwrap)
}

fn set_value(conn: &mut Conn, key: &str, value: &[u8]) {
    let mut req = format!("set {key} 0 0 {}\r\n", value.len()).into_bytes();
    req.extend_from_slice(value);
    req.extend_from_slice(b"\r\n");
    conn.roundtrip(&req, b"STORED\r\n");
}

/// Writes `bytes` without ever reading, until done or the socket blocks;
/// then waits until the server has started answering (its first reply
/// byte is in our receive buffer).
fn write_never_read(conn: &mut Conn, bytes: &[u8]) {
    conn.stream.set_nonblocking(true).unwrap();
    let mut sent = 0;
    while sent < bytes.len() {
        match conn.stream.write(&bytes[sent..]) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) => panic!("write: {e}"),
        }
    }
    conn.stream.set_nonblocking(false).unwrap();
    let mut first = [0u8; 1];
    assert_eq!(conn.stream.peek(&mut first).unwrap(), 1, "no reply at all");
}

#[test]
fn pipelined_large_gets_from_a_client_that_never_reads() {
    let server = Server::start(SMALL_PLACED);
    let mut witness = Witness::new(&server);
    let keys = key_per_shard("big-");
    let value = vec![b'v'; 512 << 10];
    for key in &keys {
        set_value(&mut witness.conn, key, &value);
    }
    let before = server.rss_bytes();
    // Each connection lands on either core; with one key per shard, several
    // connections make it all but certain that some key is remote to one.
    let mut stalled = Vec::new();
    for i in 0..6 {
        let mut conn = server.connect();
        let get = format!("get {}\r\n", keys[i % 2]);
        write_never_read(&mut conn, get.repeat(2000).as_bytes());
        stalled.push(conn);
        let what = format!(
            "connection {i}: 2,000 pipelined gets of {} (shard {})",
            keys[i % 2],
            i % 2
        );
        assert_rss_bounded(&server, before, 64 * MIB, &what);
        witness.check();
    }
    drop(stalled);
    witness.check();
}

#[test]
fn one_multiget_of_a_large_value_many_times() {
    let server = Server::start(SMALL_PLACED);
    let mut witness = Witness::new(&server);
    let keys = key_per_shard("wide-");
    let value = vec![b'v'; 512 << 10];
    for key in &keys {
        set_value(&mut witness.conn, key, &value);
    }
    let before = server.rss_bytes();
    // 200 keys on a ~1.3 KB line ask for 100 MiB of replies; the line limit
    // (~500 KB) would allow 100,000 of them, 50 GiB.
    let mut stalled = Vec::new();
    for key in &keys {
        let mut conn = server.connect();
        let line = format!("get{}\r\n", format!(" {key}").repeat(200));
        write_never_read(&mut conn, line.as_bytes());
        stalled.push(conn);
        assert_rss_bounded(
            &server,
            before,
            64 * MIB,
            "a 200-key get of a 512 KiB value",
        );
        witness.check();
    }
}

#[test]
fn thousand_key_multiget_under_load() {
    let server = Server::start(SMALL);
    let mut witness = Witness::new(&server);
    let mut sets = Vec::new();
    for i in 0..1000 {
        let value = format!("value-{i}");
        sets.extend_from_slice(
            format!("set mk{i} {i} 0 {}\r\n{value}\r\n", value.len()).as_bytes(),
        );
    }
    witness.conn.send(&sets);
    let stored = witness.conn.read_exact_n(1000 * 8);
    assert_eq!(stored, b"STORED\r\n".repeat(1000));

    let stop = Arc::new(AtomicBool::new(false));
    let load: Vec<_> = (0..2)
        .map(|t| {
            let mut conn = server.connect();
            let stop = stop.clone();
            thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let mut batch = Vec::new();
                    let mut expect = Vec::new();
                    for j in 0..50 {
                        let key = format!("load-{t}-{j}");
                        let value = format!("{n}-{j}");
                        batch.extend_from_slice(
                            format!("set {key} 0 0 {}\r\n{value}\r\nget {key}\r\n", value.len())
                                .as_bytes(),
                        );
                        expect.extend_from_slice(
                            format!(
                                "STORED\r\nVALUE {key} 0 {}\r\n{value}\r\nEND\r\n",
                                value.len()
                            )
                            .as_bytes(),
                        );
                    }
                    conn.roundtrip(&batch, &expect);
                    n += 1;
                }
                n
            })
        })
        .collect();

    // Keys in a scrambled order, with a duplicate and a missing key.
    let mut order: Vec<usize> = (0..1000).collect();
    let mut rng = XorShift(7);
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i + 1));
    }
    let mut line = b"get".to_vec();
    let mut expect = Vec::new();
    for (n, &i) in order.iter().enumerate() {
        line.extend_from_slice(format!(" mk{i}").as_bytes());
        let value = format!("value-{i}");
        expect.extend_from_slice(
            format!("VALUE mk{i} {i} {}\r\n{value}\r\n", value.len()).as_bytes(),
        );
        if n == 500 {
            line.extend_from_slice(b" missing-key mk0");
            expect.extend_from_slice(b"VALUE mk0 0 7\r\nvalue-0\r\n");
        }
    }
    line.extend_from_slice(b"\r\n");
    expect.extend_from_slice(b"END\r\n");
    let mut client = server.connect();
    for _ in 0..20 {
        client.roundtrip(&line, &expect);
    }
    stop.store(true, Ordering::Relaxed);
    for l in load {
        assert!(l.join().unwrap() > 0, "a load thread made no progress");
    }
    witness.check();
}

#[test]
fn many_delayed_flush_alls_stay_bounded() {
    let server = Server::start(SMALL);
    let mut witness = Witness::new(&server);
    let mut conn = server.connect();
    // noreply: a client that never reads; the trailing get says all ran.
    let flushes = |n: usize| {
        let mut bytes = b"flush_all 1000000 noreply\r\n".repeat(n);
        bytes.extend_from_slice(b"get sync\r\n");
        bytes
    };
    conn.roundtrip(&flushes(1000), b"END\r\n");
    let before = server.rss_bytes();
    for _ in 0..16 {
        conn.roundtrip(&flushes(1000), b"END\r\n");
    }
    // 16,000 pending timers x 2 shards; the bug costs ~10 MiB here.
    assert_rss_bounded(&server, before, 4 * MIB, "16,000 delayed flush_all");
    witness.check();
}

/// Protocol errors a client can repeat at will (lines too long, binary
/// requests) log one line per interval, not one per connection.
#[test]
fn protocol_error_logs_are_rate_limited() {
    let (server, log) = Server::start_logged(SMALL, &[], "info");
    for _ in 0..20 {
        let mut conn = server.connect();
        conn.send(&[b'a'; 3000]);
        assert_eq!(conn.read_until(b"\r\n"), LINE_TOO_LONG);
        assert!(conn.is_closed());
        let mut binary = server.connect();
        binary.send(&[
            0x80, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, b'k',
        ]);
        assert_eq!(binary.read_exact_n(24)[0], 0x81, "response magic");
    }
    log.wait_for("command line too long");
    log.wait_for("refusing a binary-protocol client");
    // Everything was answered, so every event has been logged or held back.
    assert_eq!(log.count("command line too long"), 1, "{:#?}", log.lines());
    assert_eq!(
        log.count("refusing a binary-protocol client"),
        1,
        "{:#?}",
        log.lines()
    );
}
