//! Hostile flows against the real binary: clients that never read, never
//! authenticate, trickle, speak HTTP, or flood other cores with large
//! replies. Each holds a connection slot, memory or another core's time
//! only within a stated limit (a deadline, a budget), while a witness
//! connection keeps working. Each test starts its own server.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{
    oauth_request, set_request, small_window, stat_num, stats_of, within, Conn, GrantsFile, Server,
};

const MIB: u64 = 1 << 20;
const AUTH_REQUIRED: &[u8] = b"CLIENT_ERROR authentication required\r\n";
const BAD_FORMAT: &[u8] = b"CLIENT_ERROR bad authentication token format\r\n";
const TOO_MANY: &[u8] = b"SERVER_ERROR too many open connections\r\n";
const GRANTS: &str = "tokA projA\n";
const CREDENTIALS: &str = "tokA projA cache";

fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Reads until the server closes the connection; how long it took, or
/// `None` past `limit`. Replies read on the way are discarded.
fn time_to_close(mut stream: TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        let left = limit.checked_sub(start.elapsed())?;
        stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
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

/// Everything the server sends until it closes (within 5 s).
fn read_to_close(conn: &mut Conn) -> Vec<u8> {
    conn.stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match conn.stream.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return got,
            Err(e) => panic!("still open after 5 s ({e}); got {:?}", show(&got)),
        }
    }
}

/// A set/get round trip on `conn` with a fresh key.
fn check_alive(conn: &mut Conn, tag: &str) {
    let set = format!("set alive-{tag} 0 0 2\r\nok\r\n");
    conn.roundtrip(set.as_bytes(), b"STORED\r\n");
    let get = format!("get alive-{tag}\r\n");
    let reply = format!("VALUE alive-{tag} 0 2\r\nok\r\nEND\r\n");
    conn.roundtrip(get.as_bytes(), reply.as_bytes());
}

fn store(conn: &mut Conn, key: &str, len: usize) {
    conn.roundtrip(&set_request(key, &vec![b'v'; len]), b"STORED\r\n");
}

/// Admits a connection once a slot is free, and authenticates it.
fn authenticate_eventually(server: &Server, limit: Duration) -> Option<Conn> {
    let mut bound = None;
    within(limit, || {
        let mut conn = server.connect();
        conn.send(&oauth_request(CREDENTIALS));
        let mut reply = Vec::new();
        let mut byte = [0u8; 1];
        while !reply.ends_with(b"\r\n") {
            match conn.stream.read(&mut byte) {
                Ok(1) => reply.push(byte[0]),
                _ => return false,
            }
        }
        if reply == b"STORED\r\n" {
            bound = Some(conn);
            return true;
        }
        assert_eq!(show(&reply), show(TOO_MANY));
        false
    })?;
    bound
}

// ---- Section A: unread replies, unauthenticated budgets ----

#[test]
fn unauthenticated_floods_that_never_read_cannot_hold_the_slots() {
    let grants = GrantsFile::new(GRANTS);
    let server = Server::start(&[
        "--tokens",
        grants.arg(),
        "--max-connections",
        "4",
        "--auth-timeout",
        "2",
    ]);
    let mut witness = server.connect();
    witness.roundtrip(&oauth_request(CREDENTIALS), b"STORED\r\n");
    // Three clients send `get a` 200,000 times before authenticating and
    // never read a reply: the server soon blocks writing to them.
    let flood: Arc<Vec<u8>> = Arc::new(b"get a\n".repeat(200_000));
    let flooders: Vec<_> = (0..3)
        .map(|_| {
            let mut stream = server.connect().stream;
            let flood = flood.clone();
            thread::spawn(move || {
                stream
                    .set_write_timeout(Some(Duration::from_secs(20)))
                    .unwrap();
                let _ = stream.write_all(&flood);
                // Hold the socket until the server closes it.
                time_to_close(stream, Duration::from_secs(20))
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(500));
    // Every slot is taken now.
    let mut refused = server.connect();
    assert_eq!(show(&refused.read_until(b"\r\n")), show(TOO_MANY));
    // Within the handshake deadline (and the quarter-second check), the
    // floods are closed and a real client gets in.
    let mut admitted = authenticate_eventually(&server, Duration::from_secs(5))
        .expect("no client admitted 5 s after the handshake deadline");
    check_alive(&mut admitted, "admitted");
    for flooder in flooders {
        let closed = flooder.join().unwrap();
        let t = closed.expect("an unauthenticated flood held its connection for 20 s");
        assert!(t < Duration::from_secs(8), "flood closed after {t:?}");
    }
    check_alive(&mut witness, "witness");
}

#[test]
fn an_authenticated_client_that_never_reads_is_closed_after_the_write_timeout() {
    let server = Server::start(&["--memory-mb", "64", "--write-timeout", "2"]);
    let mut witness = server.connect();
    store(&mut witness, "big", 500_000);
    let mut hostile = small_window(server.addr, 4096);
    let get = format!("get{}\r\n", " big".repeat(40));
    hostile.write_all(get.as_bytes()).unwrap();
    let connections = |w: &mut Conn| stat_num(&stats_of(w, ""), "curr_connections");
    // The server admits it on its own time (maybe on the other core).
    let admitted = within(Duration::from_secs(2), || connections(&mut witness) == 2);
    assert!(admitted.is_some(), "the reader was never admitted");
    // 20 MB of replies wait on a client that reads nothing: closed once no
    // byte has moved for 2 s.
    let t = within(Duration::from_secs(8), || connections(&mut witness) == 1)
        .expect("a client that never reads kept its connection for 8 s");
    assert!(t >= Duration::from_millis(1500), "closed after only {t:?}");
    let stats = stats_of(&mut witness, "");
    assert_eq!(stat_num(&stats, "write_timeouts"), 1);
    check_alive(&mut witness, "witness");
    drop(hostile);
}

#[test]
fn an_oversized_oauth_value_is_refused_without_being_buffered() {
    let grants = GrantsFile::new(GRANTS);
    let server = Server::start(&["--tokens", grants.arg()]);
    let mut conn = server.connect();
    // The refusal comes as soon as the command line is read: the value is
    // never waited for, let alone held.
    conn.roundtrip(b"set oauth 0 0 1025\r\n", BAD_FORMAT);
    conn.send(&[b'x'; 1025]);
    conn.send(b"\r\n");
    // Any other value before authentication: refused the same way.
    conn.roundtrip(b"set k 0 0 1048576\r\n", AUTH_REQUIRED);
    conn.send(&vec![b'y'; 1 << 20]);
    conn.send(b"\r\n");
    conn.roundtrip(b"version\r\n", b"VERSION ");
    conn.read_until(b"\r\n");
    // The connection is intact, and can still authenticate.
    conn.roundtrip(&oauth_request(CREDENTIALS), b"STORED\r\n");
    check_alive(&mut conn, "after");

    // Open mode: the same cap on the handshake's value.
    let open = Server::start(&["--memory-mb", "64"]);
    let mut conn = open.connect();
    let long = format!("tok proj {}", "c".repeat(1100));
    conn.roundtrip(&oauth_request(&long), BAD_FORMAT);
    conn.roundtrip(&oauth_request("tok proj cache"), b"STORED\r\n");
}

// ---- Section C: cross-protocol requests ----

#[test]
fn http_request_lines_get_a_hang_up_and_no_reply() {
    let server = Server::start(&["--memory-mb", "64"]);
    let mut witness = server.connect();
    for request in [
        &b"GET / HTTP/1.0\r\n"[..],
        b"PUT /x HTTP/1.1\r\n",
        b"DELETE HTTP/1.1\r\n",
        b"GET / HTTP/1.1\r\nHost: cache:11211\r\nAccept: */*\r\n\r\n",
        // A browser's form post: the body is never run as commands.
        b"POST /submit HTTP/1.1\r\nHost: cache\r\nContent-Length: 23\r\n\r\nset posted 0 0 1\r\nx\r\n",
        // Any line, not only the first; and, as memcached, even the
        // replies before it are not sent.
        b"version\r\nGET / HTTP/1.0\r\nversion\r\n",
    ] {
        let mut conn = server.connect();
        conn.send(request);
        let got = read_to_close(&mut conn);
        assert!(got.is_empty(), "{:?} got {:?}", show(request), show(&got));
    }
    witness.roundtrip(b"get posted\r\n", b"END\r\n");
    // Lines that only look like it are answered, as memcached does.
    let mut conn = server.connect();
    conn.roundtrip(b"get / HTTP/1.0\r\n", b"END\r\n");
    conn.roundtrip(b"foo HTTP/1.1 bar\r\n", b"ERROR\r\n");
    conn.roundtrip(b"get HTTP/1.1\r\n", b"END\r\n");
    check_alive(&mut witness, "witness");
}

// ---- Section B: idle buffers ----

#[test]
fn idle_connections_give_back_the_buffers_of_a_burst() {
    let server = Server::start(&["--memory-mb", "64"]);
    let mut witness = server.connect();
    let keys: Vec<String> = (0..6).map(|i| format!("v{i}")).collect();
    for key in &keys {
        store(&mut witness, key, 500_000);
    }
    let before = server.rss_bytes();
    let get = format!("get {}\r\n", keys.join(" "));
    let mut readers: Vec<Conn> = (0..16).map(|_| server.connect()).collect();
    for conn in &mut readers {
        conn.send(get.as_bytes());
    }
    for conn in &mut readers {
        let reply = conn.read_until(b"END\r\n");
        assert_eq!(
            reply.len(),
            6 * (500_000 + "VALUE v0 0 500000\r\n\r\n".len()) + 5
        );
    }
    // Idle now: within about a second each keeps at most its read buffer
    // and a small reply buffer (80 KiB in all), not megabytes.
    let held = |w: &mut Conn| stat_num(&stats_of(w, ""), "conn_buffer_bytes");
    let bound = 17 * 80 * 1024;
    let t = within(Duration::from_secs(5), || held(&mut witness) <= bound);
    assert!(
        t.is_some(),
        "idle connections hold {} KiB of buffers after 5 s",
        held(&mut witness) >> 10
    );
    let after = server.rss_bytes();
    assert!(
        after < before + 24 * MIB,
        "RSS {} MiB before the burst, {} MiB idle after it",
        before / MIB,
        after / MIB
    );
    for conn in &mut readers {
        conn.roundtrip(b"get nothing\r\n", b"END\r\n");
    }
}

/// Clients that ask for multigets of large values spread over both cores
/// and never read hold one buffer of replies each while their writes wait
/// (the replies in order: about 2 MiB and two values), not that and a
/// second of the same size kept aside, and `conn_buffer_bytes` counts what
/// they hold while they are stuck, not only between requests.
#[test]
fn clients_that_never_read_large_multigets_hold_one_reply_buffer_each() {
    const CLIENTS: u64 = 20;
    const VALUE: u64 = 900_000;
    let server = Server::start(&["--memory-mb", "64"]);
    let mut witness = server.connect();
    let keys: Vec<String> = (0..8).map(|i| format!("big{i}")).collect();
    for key in &keys {
        store(&mut witness, key, VALUE as usize);
    }
    let before = server.rss_bytes();
    let get = format!("get {}\r\n", keys.join(" ")).repeat(200);
    let _stuck: Vec<TcpStream> = (0..CLIENTS)
        .map(|_| {
            let mut s = small_window(server.addr, 4096);
            s.write_all(get.as_bytes()).unwrap();
            s
        })
        .collect();
    // Each holds its replies up to the output budget (1 MiB and a value)
    // and one answer from the other core (as much again), in one buffer,
    // beside its read buffer.
    let per_client = 2 * MIB + 2 * VALUE + 256 * 1024;
    let held = |w: &mut Conn| stat_num(&stats_of(w, ""), "conn_buffer_bytes");
    let counted = within(Duration::from_secs(10), || {
        held(&mut witness) >= CLIENTS * MIB
    });
    assert!(
        counted.is_some(),
        "{CLIENTS} stuck clients counted at {} KiB of buffers",
        held(&mut witness) >> 10
    );
    // Let every client reach the point where its writes wait.
    thread::sleep(Duration::from_secs(2));
    // The gauge counts buffers' capacity, which a buffer grown by doubling
    // may have up to twice of; resident memory is what they hold.
    let gauge = held(&mut witness);
    assert!(
        gauge <= 2 * CLIENTS * per_client,
        "{CLIENTS} stuck clients hold {} KiB of buffers, over twice {} KiB each",
        gauge >> 10,
        per_client >> 10
    );
    let grown = server.rss_bytes().saturating_sub(before);
    assert!(
        grown <= CLIENTS * per_client + 16 * MIB,
        "RSS grew {} MiB for {CLIENTS} stuck clients",
        grown / MIB
    );
    check_alive(&mut witness, "beside-stuck-clients");
}

// ---- Section D: forwarded replies ----

/// The most resident memory the server process has had (VmHWM).
fn peak_rss(server: &Server) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

#[test]
fn forwarded_replies_for_clients_that_leave_cannot_pile_up() {
    // A scaled-down version of the flood of issue 12 §6: eight 500 KB
    // values, clients that ask for 32 of them (16 MB) and reset 2 ms later.
    let server = Server::start(&["--memory-mb", "64"]);
    let mut witness = server.connect();
    let keys: Vec<String> = (0..8).map(|i| format!("big{i}")).collect();
    for key in &keys {
        store(&mut witness, key, 500_000);
    }
    store(&mut witness, "small", 10);
    let base = server.rss_bytes();
    let get: Arc<Vec<u8>> = Arc::new(
        format!(
            "get {}\r\n",
            (0..32)
                .map(|i| keys[i % 8].as_str())
                .collect::<Vec<_>>()
                .join(" ")
        )
        .into_bytes(),
    );
    let done = Arc::new(AtomicBool::new(false));
    let slowest = Arc::new(AtomicU64::new(0));
    let prober = {
        let (done, slowest) = (done.clone(), slowest.clone());
        let mut probe = server.connect();
        thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                let start = Instant::now();
                probe.roundtrip(
                    b"get small\r\n",
                    b"VALUE small 0 10\r\nvvvvvvvvvv\r\nEND\r\n",
                );
                slowest.fetch_max(start.elapsed().as_millis() as u64, Ordering::Relaxed);
                thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let addr = server.addr;
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let get = get.clone();
            thread::spawn(move || {
                for _ in 0..100 {
                    let socket =
                        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                            .unwrap();
                    if socket.connect(&addr.into()).is_err() {
                        continue;
                    }
                    let _ = (&socket).write_all(&get);
                    thread::sleep(Duration::from_millis(2));
                    // Reset, not close: SO_LINGER 0.
                    let _ = socket.set_linger(Some(Duration::ZERO));
                }
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    // The server catches up with the 400 connections it was sent.
    let settled = within(Duration::from_secs(20), || {
        stat_num(&stats_of(&mut witness, ""), "curr_connections") <= 2
    });
    done.store(true, Ordering::Relaxed);
    prober.join().unwrap();
    assert!(
        settled.is_some(),
        "connections of gone clients still open after 20 s"
    );
    let peak = peak_rss(&server);
    let slowest = Duration::from_millis(slowest.load(Ordering::Relaxed));
    eprintln!(
        "pile-up: RSS {} MiB before, peak {} MiB; slowest small get {slowest:?}",
        base / MIB,
        peak / MIB
    );
    // What the design bounds, were all 400 connections alive at once: each
    // buffers at most 1 MiB of replies plus one value before it must write,
    // and each core is owed at most 32 MiB by the other (2 cores here). The
    // old code, which bounded neither per core, peaked at 1,052 MiB on this
    // test; a server that keeps up with the resets stays far below the bound
    // (107-279 MiB on an idle machine).
    let bound = 400 * (MIB + 500_000) + 2 * 32 * MIB;
    assert!(
        peak < base + bound,
        "RSS peaked at {} MiB from {} MiB (bound {} MiB more)",
        peak / MIB,
        base / MIB,
        bound / MIB
    );
    assert!(
        slowest < Duration::from_secs(3),
        "a small get waited {slowest:?}"
    );
    // Afterwards the memory goes back, and nothing is owed between cores.
    let stats = stats_of(&mut witness, "");
    assert_eq!(stat_num(&stats, "forward_reply_bytes"), 0);
    let back = within(Duration::from_secs(5), || {
        server.rss_bytes() < base + 64 * MIB
    });
    assert!(
        back.is_some(),
        "RSS still {} MiB 5 s after the burst (from {} MiB)",
        server.rss_bytes() / MIB,
        base / MIB
    );
    check_alive(&mut witness, "witness");
}

#[test]
fn the_forwarded_get_budget_does_not_follow_the_largest_value_ever_stored() {
    let server = Server::start(&["--memory-mb", "64"]);
    let mut conn = server.connect();
    let multiget = format!(
        "get {}\r\n",
        (0..500)
            .map(|i| format!("k{i}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let batches = |conn: &mut Conn| stat_num(&stats_of(conn, ""), "forward_batches");
    let run = |conn: &mut Conn| {
        let before = batches(conn);
        conn.roundtrip(multiget.as_bytes(), b"END\r\n");
        batches(conn) - before
    };
    let small = run(&mut conn);
    assert!(small <= 2, "a 500-key multiget took {small} batches");
    // One value of about 1 MiB (the most -I 1m takes, as memcached counts
    // an item), not even stored, once sized every connection's forwarded
    // gets for ever: a round trip to the other core every 4 keys.
    let huge = (1 << 20) - 100;
    let mut replace = format!("replace nosuchkey 0 0 {huge}\r\n").into_bytes();
    replace.extend(std::iter::repeat_n(b'x', huge));
    replace.extend_from_slice(b"\r\n");
    conn.roundtrip(&replace, b"NOT_STORED\r\n");
    store(&mut conn, "huge", huge);
    let after = run(&mut conn);
    assert!(
        after <= small + 1,
        "after a 1 MiB store a 500-key multiget took {after} batches, {small} before"
    );
}

// ---- Section E: deadlines ----

#[test]
fn authenticated_and_open_mode_connections_are_not_closed_when_idle() {
    let grants = GrantsFile::new(GRANTS);
    let server = Server::start(&[
        "--tokens",
        grants.arg(),
        "--auth-timeout",
        "1",
        "--request-timeout",
        "1",
    ]);
    let mut bound = server.connect();
    bound.roundtrip(&oauth_request(CREDENTIALS), b"STORED\r\n");
    let open = Server::start(&[
        "--memory-mb",
        "64",
        "--auth-timeout",
        "1",
        "--request-timeout",
        "1",
    ]);
    // Open mode has no handshake: a connection that has sent nothing yet
    // is as good as bound.
    let mut fresh = open.connect();
    thread::sleep(Duration::from_secs(3));
    check_alive(&mut bound, "bound");
    fresh.roundtrip(b"version\r\n", b"VERSION ");
    fresh.read_until(b"\r\n");
    check_alive(&mut fresh, "fresh");
}

#[test]
fn unauthenticated_connections_are_closed_at_the_handshake_deadline() {
    let grants = GrantsFile::new(GRANTS);
    let server = Server::start(&["--tokens", grants.arg(), "--auth-timeout", "2"]);
    let silent = server.connect().stream;
    // Another says `version` now and then: that does not move the deadline.
    let mut chatty = server.connect();
    let chatter = thread::spawn(move || {
        let start = Instant::now();
        loop {
            chatty.send(b"version\r\n");
            let mut buf = [0u8; 64];
            match chatty.stream.read(&mut buf) {
                Ok(n) if n > 0 => assert!(buf.starts_with(b"VERSION ")),
                _ => return start.elapsed(),
            }
            if start.elapsed() > Duration::from_secs(10) {
                return start.elapsed();
            }
            thread::sleep(Duration::from_millis(300));
        }
    });
    let silent = time_to_close(silent, Duration::from_secs(10)).expect("silent one still open");
    let chatty = chatter.join().unwrap();
    for (what, t) in [("silent", silent), ("chatty", chatty)] {
        assert!(
            (Duration::from_millis(1500)..Duration::from_secs(5)).contains(&t),
            "{what} unauthenticated connection closed after {t:?}"
        );
    }
    // An authenticated one is not.
    let mut bound = server.connect();
    bound.roundtrip(&oauth_request(CREDENTIALS), b"STORED\r\n");
    thread::sleep(Duration::from_secs(3));
    check_alive(&mut bound, "bound");
}

#[test]
fn a_request_stuck_mid_transfer_is_closed_but_an_idle_one_is_not() {
    let server = Server::start(&["--memory-mb", "64", "--request-timeout", "2"]);
    let mut idle = server.connect();
    check_alive(&mut idle, "idle");
    let mut half = server.connect();
    half.send(b"set half 0 0 10\r\nhal");
    let mut line = server.connect();
    line.send(b"get never-ending-li");
    let watchers: Vec<_> = [half.stream, line.stream]
        .into_iter()
        .map(|s| thread::spawn(move || time_to_close(s, Duration::from_secs(8))))
        .collect();
    for watcher in watchers {
        let t = watcher
            .join()
            .unwrap()
            .expect("a stuck request still open after 8 s");
        assert!(
            t < Duration::from_secs(5),
            "stuck request closed after {t:?}"
        );
    }
    check_alive(&mut idle, "idle");
    let stats = stats_of(&mut idle, "");
    assert_eq!(stat_num(&stats, "request_timeouts"), 2);
    assert_eq!(stat_num(&stats, "idle_kicks"), 0);
}

#[test]
fn the_idle_timeout_is_opt_in() {
    let server = Server::start(&["--memory-mb", "64", "--idle-timeout", "2"]);
    let idle = server.connect();
    let t = time_to_close(idle.stream, Duration::from_secs(8)).expect("idle connection still open");
    assert!(
        t < Duration::from_secs(5),
        "idle connection closed after {t:?}"
    );
    let mut fresh = server.connect();
    assert!(stat_num(&stats_of(&mut fresh, ""), "idle_kicks") >= 1);
}

#[test]
fn stats_settings_and_help_show_the_deadlines() {
    let server = Server::start(&["--memory-mb", "64"]);
    let mut conn = server.connect();
    let settings = stats_of(&mut conn, "settings");
    for (name, value) in [
        ("idle_timeout", 0),
        ("auth_timeout", 10),
        ("request_timeout", 30),
        ("write_timeout", 30),
    ] {
        assert_eq!(stat_num(&settings, name), value, "{name}");
    }
    let server = Server::start(&[
        "--memory-mb",
        "64",
        "--idle-timeout",
        "600",
        "--auth-timeout",
        "5",
        "--request-timeout",
        "0",
        "--write-timeout",
        "7",
    ]);
    let mut conn = server.connect();
    let settings = stats_of(&mut conn, "settings");
    for (name, value) in [
        ("idle_timeout", 600),
        ("auth_timeout", 5),
        ("request_timeout", 0),
        ("write_timeout", 7),
    ] {
        assert_eq!(stat_num(&settings, name), value, "{name}");
    }
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_ferrocache"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    for flag in [
        "--idle-timeout",
        "--auth-timeout",
        "--request-timeout",
        "--write-timeout",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
}

#[test]
fn stats_count_no_reply_budget_for_answers_already_written() {
    // A forwarded get whose owner wrote the reply itself (the socket was
    // lent) sends its answer without waking the asking core, which takes
    // it when it next wakes. `stats` wakes every core, so what it shows
    // must be settled: nothing owed once every reply is out. (CI once saw
    // a whole batch cap, 16 MiB, for the last tiny get of an idle client.)
    let server = Server::start(&[]);
    let mut witness = server.connect();
    let keys: Vec<String> = (0..16).map(|i| format!("k{i}")).collect();
    for key in &keys {
        store(&mut witness, key, 10);
    }
    let mut probes: Vec<Conn> = (0..8).map(|_| server.connect()).collect();
    for probe in &mut probes {
        for key in &keys {
            probe.roundtrip(
                format!("get {key}\r\n").as_bytes(),
                format!("VALUE {key} 0 10\r\nvvvvvvvvvv\r\nEND\r\n").as_bytes(),
            );
        }
    }
    for round in 0..3 {
        thread::sleep(Duration::from_millis(50));
        let stats = stats_of(&mut witness, "");
        assert_eq!(
            stat_num(&stats, "forward_reply_bytes"),
            0,
            "owed after every reply was out (stats round {round})"
        );
    }
    check_alive(&mut witness, "witness");
}

#[test]
fn meta_gets_of_large_values_keep_the_reply_budget_whole() {
    // A batch's answer may not outgrow the cap its budget was charged: a
    // meta get's reply was reckoned as a short status line, so the owner
    // packed values past the cap, and the asking core was refunded more
    // than it had lent. The budget then grew with each such batch (probe:
    // -224 MB owed after 25 s), and with it what one core may be owed.
    let server = Server::start(&["--memory-mb", "64"]);
    let mut witness = server.connect();
    for i in 0..20 {
        store(&mut witness, &format!("hv{i}"), 900_000);
    }
    // Many connections at once, so that one batch carries many parts; a
    // few rounds, as how the parts fall into batches varies.
    for _round in 0..3 {
        meta_gets_from_many_clients(&server);
    }
    let owed = stat_num(&stats_of(&mut witness, ""), "forward_reply_bytes");
    assert_eq!(
        owed, 0,
        "owed once every reply is out (as i64: {})",
        owed as i64
    );
    check_alive(&mut witness, "witness");
}

/// Sixteen connections each pipeline twenty `mg KEY v` of 900 KB values
/// and read the replies.
fn meta_gets_from_many_clients(server: &Server) {
    let clients: Vec<_> = (0..16)
        .map(|c| {
            let mut client = server.connect();
            thread::spawn(move || {
                let request: String = (0..20)
                    .map(|i| format!("mg hv{} v\r\n", (c + i) % 20))
                    .collect();
                client.send(request.as_bytes());
                let reply = client.read_exact_n(20 * ("VA 900000\r\n".len() + 900_002));
                assert!(reply.starts_with(b"VA 900000\r\nvvvv"));
                assert!(reply.ends_with(b"vvvv\r\n"));
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
}
