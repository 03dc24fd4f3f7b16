//! Hostile tenants against tenancy, black-box: namespace churn stays
//! bounded and reclaimed ids reveal nothing, client-driven warnings cannot
//! flood the log, token reloads keep the grants on a bad file and never
//! hang shutdown, `stats settings` hides the server's configuration from
//! tenants, failed logins are throttled per address, a reload revokes the
//! sessions of removed grants, and each login logs its grant's line.

mod common;

use std::collections::HashMap;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::FromRawFd;
use std::time::{Duration, Instant};

use common::{Conn, GrantsFile, Server};

const FAILED: &[u8] = b"CLIENT_ERROR authentication failed\r\n";
const TOO_MANY_CACHES: &[u8] = b"SERVER_ERROR too many caches\r\n";
const TOKEN_A: &str = "tokA-0123456789abcdef";
const TOKEN_B: &str = "tokB-0123456789abcdef";

fn grants() -> String {
    format!("# grants\n{TOKEN_A} projA\n{TOKEN_B} projB\n")
}

fn oauth(value: &str) -> Vec<u8> {
    format!("set oauth 0 0 {}\r\n{value}\r\n", value.len()).into_bytes()
}

/// A connection that sent `set oauth VALUE`, and the reply line.
fn login(server: &Server, value: &str) -> (Conn, Vec<u8>) {
    let mut conn = server.connect();
    conn.send(&oauth(value));
    let reply = conn.read_until(b"\r\n");
    (conn, reply)
}

fn bound(server: &Server, value: &str) -> Conn {
    let (conn, reply) = login(server, value);
    assert_eq!(
        String::from_utf8_lossy(&reply),
        "STORED\r\n",
        "login {value:?}"
    );
    conn
}

fn stats(conn: &mut Conn, group: &str) -> HashMap<String, String> {
    conn.send(format!("stats{group}\r\n").as_bytes());
    let text = String::from_utf8(conn.read_until(b"END\r\n")).unwrap();
    text.lines()
        .filter_map(|l| l.strip_prefix("STAT "))
        .map(|l| {
            let (k, v) = l.split_once(' ').unwrap();
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

fn num(stats: &HashMap<String, String>, name: &str) -> u64 {
    stats
        .get(name)
        .unwrap_or_else(|| panic!("no stat {name}: {stats:?}"))
        .parse()
        .unwrap()
}

/// Polls `f` every 50 ms for up to 10 s until it is true.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A connection to `to` from the local address `from` (any of 127/8).
fn connect_from(from: [u8; 4], to: SocketAddr) -> Conn {
    // SAFETY: plain socket calls on a descriptor we own; on success it is
    // handed to a TcpStream, which closes it.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0);
        let sockaddr = |ip: [u8; 4], port: u16| libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes(ip),
            },
            sin_zero: [0; 8],
        };
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        let local = sockaddr(from, 0);
        assert_eq!(
            libc::bind(fd, (&local as *const libc::sockaddr_in).cast(), len),
            0
        );
        let SocketAddr::V4(to) = to else {
            panic!("IPv4 only")
        };
        let remote = sockaddr(to.ip().octets(), to.port());
        assert_eq!(
            libc::connect(fd, (&remote as *const libc::sockaddr_in).cast(), len),
            0
        );
        Conn::new(TcpStream::from_raw_fd(fd))
    }
}

/// Open mode: each tenant that comes, stores and leaves holds a namespace
/// only while it has a connection or an item; the count is in `stats`, a
/// cap refuses more at the handshake, and churn past the cap goes on once
/// the earlier ones are reclaimed.
#[test]
fn namespace_churn_is_bounded_and_reclaimed() {
    const CAP: usize = 20;
    let server = Server::start(&["--max-namespaces", &CAP.to_string()]);
    let mut admin = server.connect();
    assert_eq!(num(&stats(&mut admin, ""), "curr_namespaces"), 0);
    for round in 0..3 {
        let held: Vec<Conn> = (0..CAP)
            .map(|i| {
                let mut c = bound(&server, &format!("t p r{round}c{i}"));
                c.roundtrip(b"set k 0 0 1\r\nv\r\n", b"STORED\r\n");
                c.roundtrip(b"delete k\r\n", b"DELETED\r\n");
                c
            })
            .collect();
        assert_eq!(num(&stats(&mut admin, ""), "curr_namespaces"), CAP as u64);
        // One more cache is refused while all are held; a held one is not.
        let (mut extra, reply) = login(&server, &format!("t p r{round}extra"));
        assert_eq!(
            String::from_utf8_lossy(&reply),
            "SERVER_ERROR too many caches\r\n"
        );
        // The refused connection is still usable for a later handshake.
        extra.send(&oauth(&format!("t p r{round}c0")));
        assert_eq!(extra.read_until(b"\r\n"), b"STORED\r\n");
        drop((held, extra));
        eventually("namespaces reclaimed", || {
            num(&stats(&mut admin, ""), "curr_namespaces") == 0
        });
    }
    let s = stats(&mut admin, "");
    assert_eq!(num(&s, "namespaces_reclaimed"), 3 * CAP as u64);

    // A namespace that still holds an item is kept, and so is its item.
    let mut keeper = bound(&server, "t p keeper");
    keeper.roundtrip(b"set kept 0 0 4\r\nkept\r\n", b"STORED\r\n");
    drop(keeper);
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(num(&stats(&mut admin, ""), "curr_namespaces"), 1);
    let mut back = bound(&server, "t p keeper");
    back.roundtrip(b"get kept\r\n", b"VALUE kept 0 4\r\nkept\r\nEND\r\n");
}

/// Secure mode: an id reclaimed and given to a new cache shows it none of
/// the old cache's items (flushed, but still in memory) or counters.
#[test]
fn a_reclaimed_namespace_id_reveals_nothing_to_its_next_owner() {
    const CAP: usize = 8;
    let tokens = GrantsFile::new(&grants());
    let server = Server::start(&["--tokens", tokens.arg(), "--max-namespaces", "8"]);
    let keys: Vec<String> = (0..20).map(|i| format!("k{i}")).collect();
    let all = keys.join(" ");
    for i in 0..CAP {
        let mut c = bound(&server, &format!("{TOKEN_A} projA old{i}"));
        for k in &keys {
            c.roundtrip(
                format!("set {k} 0 0 6\r\nsecret\r\n").as_bytes(),
                b"STORED\r\n",
            );
        }
        c.roundtrip(b"flush_all\r\n", b"OK\r\n");
    }
    // Every id was in use; new caches get in only once the old are reclaimed.
    let mut fresh: Vec<Conn> = Vec::new();
    eventually("old namespaces reclaimed", || {
        let i = fresh.len();
        let (c, reply) = login(&server, &format!("{TOKEN_B} projB new{i}"));
        if reply == TOO_MANY_CACHES {
            return false;
        }
        assert_eq!(reply, b"STORED\r\n");
        fresh.push(c);
        fresh.len() == CAP
    });
    for c in &mut fresh {
        c.roundtrip(format!("get {all}\r\n").as_bytes(), b"END\r\n");
        let s = stats(c, "");
        assert_eq!(
            (
                num(&s, "curr_items"),
                num(&s, "total_items"),
                num(&s, "cmd_set"),
                num(&s, "cmd_flush"),
            ),
            (0, 0, 0, 0),
            "{s:?}"
        );
    }
}

/// Secure mode: one project holding items in as many caches as it may have
/// (`--max-caches-per-project`) cannot open one more, and leaves the other
/// places under `--max-namespaces` to other projects. (Without the bound,
/// one token filled every place in seconds.)
#[test]
fn one_project_cannot_take_every_cache_place() {
    let tokens = GrantsFile::new(&grants());
    let server = Server::start(&[
        "--tokens",
        tokens.arg(),
        "--max-namespaces",
        "6",
        "--max-caches-per-project",
        "3",
    ]);
    let mut held = Vec::new();
    for i in 0..3 {
        let mut c = bound(&server, &format!("{TOKEN_A} projA c{i}"));
        c.roundtrip(b"set k 0 0 1\r\nx\r\n", b"STORED\r\n");
        held.push(c);
    }
    let (_, reply) = login(&server, &format!("{TOKEN_A} projA c3"));
    assert_eq!(reply, TOO_MANY_CACHES, "a fourth cache of projA");
    // Its own caches still bind; another project opens its own.
    let mut again = bound(&server, &format!("{TOKEN_A} projA c0"));
    again.roundtrip(b"get k\r\n", b"VALUE k 0 1\r\nx\r\nEND\r\n");
    for i in 0..3 {
        let mut c = bound(&server, &format!("{TOKEN_B} projB c{i}"));
        c.roundtrip(b"get k\r\n", b"END\r\n");
    }
}

/// Bad-token guesses and refused connections log one line per interval,
/// not one per event.
#[test]
fn client_driven_warnings_are_rate_limited() {
    let tokens = GrantsFile::new(&grants());
    let (server, log) = Server::start_logged(
        &["--cores", "2"],
        &[
            "--tokens",
            tokens.arg(),
            "--auth-failures",
            "0",
            "--max-connections",
            "3",
        ],
        "warn",
    );
    for _ in 0..2 {
        let mut c = server.connect();
        for _ in 0..10 {
            c.send(&oauth("guess projA c"));
            assert_eq!(c.read_until(b"\r\n"), FAILED);
        }
        assert!(c.is_closed());
    }
    // Admitted (answered) before the others come.
    let held: Vec<Conn> = (0..3)
        .map(|_| {
            let mut c = server.connect();
            c.send(b"version\r\n");
            assert!(c.read_until(b"\r\n").starts_with(b"VERSION"));
            c
        })
        .collect();
    let mut refused = 0;
    for _ in 0..40 {
        let mut c = server.connect();
        let reply = c.read_until(b"\r\n");
        if reply == b"SERVER_ERROR too many open connections\r\n" {
            refused += 1;
        }
    }
    drop(held);
    assert!(refused >= 30, "only {refused} refused");
    log.wait_for("authentication failed");
    log.wait_for("refusing connection");
    std::thread::sleep(Duration::from_millis(200));
    let lines = log.lines();
    let failed = log.count("authentication failed");
    let refusing = log.count("refusing connection");
    assert!(
        failed <= 2 && refusing <= 2 && lines.len() <= 10,
        "{failed} auth lines, {refusing} refusal lines, {} in all:\n{}",
        lines.len(),
        lines.join("\n")
    );
}

/// A flood of connections past what the descriptors allow: one warning per
/// interval, not one line per refused connection.
#[test]
fn failed_accepts_are_logged_rate_limited() {
    // With 64 descriptors the server lowers --max-connections to what fits
    // (one warning), and refuses the rest with an error line: a flood of
    // connections gives one rate-limited warning, not one line each.
    let (server, log) = Server::start_logged_nofile(&["--cores", "1"], &[], "warn", Some(64));
    let mut conns = Vec::new();
    for _ in 0..100 {
        match TcpStream::connect(server.addr) {
            Ok(c) => conns.push(c),
            Err(_) => break,
        }
    }
    log.wait_for("refusing connection: too many open connections");
    std::thread::sleep(Duration::from_millis(1500));
    let lines = log.lines();
    assert!(
        log.count("refusing connection") <= 2 && lines.len() <= 6,
        "{} lines:\n{}",
        lines.len(),
        lines.join("\n")
    );
    drop(conns);
}

/// An empty (or truncated to nothing) tokens file on SIGHUP is an error
/// that keeps the old grants, and it is logged.
#[test]
fn an_empty_tokens_file_on_reload_keeps_the_grants() {
    let tokens = GrantsFile::new(&grants());
    let (server, log) =
        Server::start_logged(&["--cores", "2"], &["--tokens", tokens.arg()], "info");
    drop(bound(&server, &format!("{TOKEN_A} projA c")));
    // Truncated in place, as a rewrite racing the signal would leave it.
    std::fs::write(&tokens.path, "").unwrap();
    server.signal(libc::SIGHUP);
    let line = log.wait_for("not reloaded");
    assert!(line.contains("grants nothing"), "{line}");
    drop(bound(&server, &format!("{TOKEN_A} projA c")));
    drop(bound(&server, &format!("{TOKEN_B} projB c")));
}

/// The tokens path replaced by a FIFO, or by a link to /dev/zero: SIGHUP
/// reads neither (no hang, no unbounded read), and SIGTERM still stops the
/// server at once.
#[test]
fn a_fifo_or_device_as_tokens_file_never_hangs_shutdown() {
    for kind in ["fifo", "dev-zero"] {
        let tokens = GrantsFile::new(&grants());
        let (mut server, log) =
            Server::start_logged(&["--cores", "2"], &["--tokens", tokens.arg()], "info");
        std::fs::remove_file(&tokens.path).unwrap();
        if kind == "fifo" {
            let path = std::ffi::CString::new(tokens.arg()).unwrap();
            // SAFETY: mkfifo reads the NUL-terminated path.
            assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
        } else {
            std::os::unix::fs::symlink("/dev/zero", &tokens.path).unwrap();
        }
        let rss = server.rss_bytes();
        server.signal(libc::SIGHUP);
        let line = log.wait_for("not reloaded");
        assert!(line.contains("not a regular file"), "{kind}: {line}");
        assert!(server.rss_bytes() < rss + (16 << 20), "{kind}: memory grew");
        drop(bound(&server, &format!("{TOKEN_A} projA c")));
        server.signal(libc::SIGTERM);
        let status = server.wait_exit(Duration::from_secs(5));
        assert!(
            status.is_some_and(|s| s.success()),
            "{kind}: SIGTERM not handled after the reload: {status:?}"
        );
    }
}

/// In secure mode `stats settings` shows a tenant none of the server's
/// configuration, as plain `stats` does not; open mode shows it all.
#[test]
fn stats_settings_hide_the_configuration_from_tenants() {
    const CONFIG: &[&str] = &[
        "maxbytes",
        "maxconns",
        "tcpport",
        "inter",
        "item_size_max",
        "num_threads",
        "idle_timeout",
    ];
    let tokens = GrantsFile::new(&grants());
    let server = Server::start(&["--tokens", tokens.arg()]);
    let mut tenant = bound(&server, &format!("{TOKEN_A} projA c"));
    let settings = stats(&mut tenant, " settings");
    for hidden in CONFIG {
        assert!(
            !settings.contains_key(*hidden),
            "tenant sees {hidden}: {settings:?}"
        );
    }
    assert_eq!(settings["auth_enabled_ascii"], "yes");
    let general = stats(&mut tenant, "");
    for hidden in [
        "limit_maxbytes",
        "max_connections",
        "threads",
        "curr_namespaces",
    ] {
        assert!(
            !general.contains_key(hidden),
            "tenant sees {hidden}: {general:?}"
        );
    }

    let open = Server::start(&[]);
    let settings = stats(&mut open.connect(), " settings");
    for shown in CONFIG {
        assert!(settings.contains_key(*shown), "open mode lacks {shown}");
    }
}

/// Failed logins are counted per source address across connections: past
/// the limit, even the right token fails from that address, while another
/// address logs in.
#[test]
fn failed_logins_are_throttled_per_address() {
    let tokens = GrantsFile::new(&grants());
    let (server, log) = Server::start_logged(
        &["--cores", "2"],
        &["--tokens", tokens.arg(), "--auth-failures", "5"],
        "warn",
    );
    let good = format!("{TOKEN_A} projA c");
    // Five guesses over two connections.
    for guesses in [3, 2] {
        let mut c = server.connect();
        for _ in 0..guesses {
            c.send(&oauth("guess projA c"));
            assert_eq!(c.read_until(b"\r\n"), FAILED);
        }
    }
    let (_, reply) = login(&server, &good);
    assert_eq!(
        String::from_utf8_lossy(&reply),
        "CLIENT_ERROR authentication failed\r\n"
    );
    log.wait_for("too many failures from this address");
    let mut other = connect_from([127, 0, 0, 2], server.addr);
    other.send(&oauth(&good));
    assert_eq!(other.read_until(b"\r\n"), b"STORED\r\n");
    other.roundtrip(b"set k 0 0 1\r\nv\r\n", b"STORED\r\n");
}

/// Credentials that logged in from an address before it was blocked are
/// still checked there: a guesser sharing the address (a NAT, an IPv6 /64)
/// cannot lock out the clients already working behind it. Credentials new
/// to the address are refused unchecked, as before.
#[test]
fn a_guesser_cannot_lock_out_credentials_already_used_from_its_address() {
    let tokens = GrantsFile::new(&grants());
    let (server, log) = Server::start_logged(
        &["--cores", "2"],
        &["--tokens", tokens.arg(), "--auth-failures", "5"],
        "warn",
    );
    let known = format!("{TOKEN_A} projA c");
    let (_, reply) = login(&server, &known);
    assert_eq!(reply, b"STORED\r\n");
    let mut guesser = server.connect();
    for _ in 0..5 {
        guesser.send(&oauth("guess projA c"));
        assert_eq!(guesser.read_until(b"\r\n"), FAILED);
    }
    // projB's token never logged in from here: refused unchecked.
    let (_, reply) = login(&server, &format!("{TOKEN_B} projB c"));
    assert_eq!(reply, FAILED);
    log.wait_for("too many failures from this address");
    let (mut conn, reply) = login(&server, &known);
    assert_eq!(
        String::from_utf8_lossy(&reply),
        "STORED\r\n",
        "a login that worked from here before"
    );
    conn.roundtrip(b"set k 0 0 1\r\nv\r\n", b"STORED\r\n");
    // The guesser gains nothing: its guesses stay refused.
    guesser.send(&oauth("guess2 projA c"));
    assert_eq!(guesser.read_until(b"\r\n"), FAILED);
}

/// A reload that removes a grant closes the sessions bound under it before
/// their next command, and says how many; other sessions go on.
#[test]
fn a_reload_revokes_sessions_of_removed_grants() {
    let tokens = GrantsFile::new(&grants());
    let (server, log) =
        Server::start_logged(&["--cores", "2"], &["--tokens", tokens.arg()], "info");
    let mut keep = bound(&server, &format!("{TOKEN_A} projA c"));
    let mut gone: Vec<Conn> = (0..2)
        .map(|i| bound(&server, &format!("{TOKEN_B} projB c{i}")))
        .collect();
    for c in gone.iter_mut() {
        c.roundtrip(b"set k 0 0 1\r\nv\r\n", b"STORED\r\n");
    }
    tokens.write(&format!("{TOKEN_A} projA\n"));
    server.signal(libc::SIGHUP);
    let line = log.wait_for("tokens file reloaded");
    assert!(line.contains("revoked_sessions=2"), "{line}");
    for c in gone.iter_mut() {
        c.send(b"get k\r\n");
        assert!(c.is_closed(), "a revoked session still answers");
    }
    keep.roundtrip(
        b"set k 0 0 1\r\nv\r\nget k\r\n",
        b"STORED\r\nVALUE k 0 1\r\nv\r\nEND\r\n",
    );
    let (_, reply) = login(&server, &format!("{TOKEN_B} projB c0"));
    assert_eq!(reply, FAILED);
}

/// Each login logs the line of the grant it used, never the token; short
/// tokens draw a warning at start.
#[test]
fn logins_log_their_grant_line_and_short_tokens_are_warned_about() {
    let tokens = GrantsFile::new(&format!("{}short projS\n", grants()));
    let (server, log) =
        Server::start_logged(&["--cores", "2"], &["--tokens", tokens.arg()], "info");
    let warning = log.wait_for("shorter than 16");
    assert!(warning.contains('4'), "{warning}");
    assert!(!warning.contains("short projS"), "{warning}");
    drop(bound(&server, &format!("{TOKEN_B} projB c")));
    let line = log.wait_for("authenticated");
    assert!(line.contains("grant_line=3"), "{line}");
    assert!(line.contains("projB"), "{line}");
    for l in log.lines() {
        assert!(
            !l.contains(TOKEN_B) && !l.contains(TOKEN_A),
            "token logged: {l}"
        );
    }
}
