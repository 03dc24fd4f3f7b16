//! `--quotas FILE`, end to end against the real binary: memory caps that
//! evict only the project's own items, connection limits at the handshake,
//! SIGHUP reloads, and bad files (issue 14, section 2).

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{oauth_request, stat_num, stats_of, within, Conn, GrantsFile, Server};

const TOKENS: &str = "tok-capped-0123456789 capped\ntok-free-0123456789 free\n";

fn login(conn: &mut Conn, token: &str, project: &str) {
    conn.roundtrip(
        &oauth_request(&format!("{token} {project} cache")),
        b"STORED\r\n",
    );
}

fn store_many(conn: &mut Conn, prefix: &str, n: usize, value: &[u8]) {
    for chunk in (0..n).collect::<Vec<_>>().chunks(256) {
        let mut request = Vec::new();
        for i in chunk {
            request.extend_from_slice(
                format!("set {prefix}{i} 0 0 {} noreply\r\n", value.len()).as_bytes(),
            );
            request.extend_from_slice(value);
            request.extend_from_slice(b"\r\n");
        }
        request.extend_from_slice(b"version\r\n");
        conn.send(&request);
        conn.read_until(b"\r\n");
    }
}

fn count_hits(conn: &mut Conn, prefix: &str, keys: std::ops::Range<usize>) -> usize {
    let mut hits = 0;
    for chunk in keys.collect::<Vec<_>>().chunks(256) {
        let mut request = String::from("get");
        for i in chunk {
            request.push_str(&format!(" {prefix}{i}"));
        }
        request.push_str("\r\n");
        conn.send(request.as_bytes());
        let reply = conn.read_until(b"END\r\n");
        hits += reply.windows(6).filter(|w| w == b"VALUE ").count();
    }
    hits
}

/// A project capped at 4 MiB writes 16 MiB: it never holds more than its
/// cap, its newest writes are kept, and the other project, which fits in
/// what is left, loses nothing: the capped project evicted its own items.
#[test]
fn a_memory_cap_evicts_the_projects_own_items_only() {
    let tokens = GrantsFile::new(TOKENS);
    let quotas = GrantsFile::new("capped memory=4m\n");
    let server = Server::start(&[
        "--memory-mb",
        "64",
        "--tokens",
        tokens.arg(),
        "--quotas",
        quotas.arg(),
    ]);
    let mut free = server.connect();
    login(&mut free, "tok-free-0123456789", "free");
    let value = vec![b'x'; 1000];
    store_many(&mut free, "f", 8000, &value);

    let mut capped = server.connect();
    login(&mut capped, "tok-capped-0123456789", "capped");
    store_many(&mut capped, "c", 16000, &value);
    let bytes = stat_num(&stats_of(&mut capped, ""), "bytes");
    assert!(
        bytes <= 4 << 20,
        "the capped project holds {bytes} bytes, over its 4 MiB cap"
    );
    assert!(
        bytes >= 3 << 20,
        "the capped project holds only {bytes} bytes"
    );
    let held = count_hits(&mut capped, "c", 0..16000) as u64;
    assert!(held * 1000 <= 4 << 20, "{held} items held");
    // Oldest go first: the newest 500 are all there.
    assert_eq!(count_hits(&mut capped, "c", 15500..16000), 500);
    assert_eq!(count_hits(&mut free, "f", 0..8000), 8000, "free lost items");
    let evictions = stat_num(&stats_of(&mut free, ""), "evictions");
    assert_eq!(evictions, 0);
}

/// A cap is enforced on each core as its share (`memory=` ÷ `--cores`), so
/// an item larger than that share can never be stored: it is too large
/// for the project's cache, and gets memcached's error for that (not "out
/// of memory", which reads as a passing shortage), whichever command
/// sends it. A set or ms that is refused so drops the old value of its
/// key, as memcached's does; an append that would grow past it is not
/// stored.
#[test]
fn an_item_larger_than_a_cores_share_of_the_cap_is_too_large() {
    const TOO_LARGE: &[u8] = b"SERVER_ERROR object too large for cache\r\n";
    let quotas = GrantsFile::new("capped memory=1m\n");
    let server = Server::start(&["--memory-mb", "64", "--quotas", quotas.arg()]);
    let mut conn = server.connect();
    login(&mut conn, "any", "capped");
    let set = |key: &str, len: usize| {
        let mut request = format!("set {key} 0 0 {len}\r\n").into_bytes();
        request.extend(std::iter::repeat_n(b'v', len));
        request.extend_from_slice(b"\r\n");
        request
    };
    // Two cores: 512 KiB a core.
    conn.roundtrip(&set("k", 400 << 10), b"STORED\r\n");
    conn.roundtrip(&set("k", 600 << 10), TOO_LARGE);
    conn.roundtrip(b"get k\r\n", b"END\r\n");
    let mut meta = format!("ms k {}\r\n", 600 << 10).into_bytes();
    meta.extend(std::iter::repeat_n(b'v', 600 << 10));
    meta.extend_from_slice(b"\r\n");
    conn.roundtrip(&meta, TOO_LARGE);
    conn.roundtrip(&set("k", 400 << 10), b"STORED\r\n");
    let mut append = format!("append k 0 0 {}\r\n", 200 << 10).into_bytes();
    append.extend(std::iter::repeat_n(b'v', 200 << 10));
    append.extend_from_slice(b"\r\n");
    conn.roundtrip(&append, b"NOT_STORED\r\n");
    conn.roundtrip(b"mn\r\n", b"MN\r\n");
    // A classic replace keeps the old value (memcached drops it for set
    // alone); an ms in replace mode makes its item before it looks at the
    // mode, so it drops the old value as a set does.
    let mut replace = format!("replace k 0 0 {}\r\n", 600 << 10).into_bytes();
    replace.extend(std::iter::repeat_n(b'v', 600 << 10));
    replace.extend_from_slice(b"\r\n");
    conn.roundtrip(&replace, TOO_LARGE);
    conn.roundtrip(b"mg k s\r\n", b"HD s409600\r\n");
    let mut meta_replace = format!("ms k {} MR\r\n", 600 << 10).into_bytes();
    meta_replace.extend(std::iter::repeat_n(b'v', 600 << 10));
    meta_replace.extend_from_slice(b"\r\n");
    conn.roundtrip(&meta_replace, TOO_LARGE);
    conn.roundtrip(b"mg k s\r\n", b"EN\r\n");
    assert_eq!(stat_num(&stats_of(&mut conn, ""), "store_too_large"), 4);
    assert_eq!(stat_num(&stats_of(&mut conn, ""), "store_no_memory"), 0);
}

/// `connections=2`: the third handshake for the project is refused with
/// the issue's error, other projects are not affected, and closing one
/// connection makes room again. SIGHUP with a bad file keeps the limit;
/// with a good one, the new limit applies.
#[test]
fn connections_per_project_and_reloads() {
    let tokens = GrantsFile::new(TOKENS);
    let quotas = GrantsFile::new("capped connections=2\n");
    let (server, log) = common::Server::start_logged(
        &["--cores", "2"],
        &["--tokens", tokens.arg(), "--quotas", quotas.arg()],
        "info",
    );
    let mut one = server.connect();
    login(&mut one, "tok-capped-0123456789", "capped");
    let mut two = server.connect();
    login(&mut two, "tok-capped-0123456789", "capped");
    let mut three = server.connect();
    three.roundtrip(
        &oauth_request("tok-capped-0123456789 capped other"),
        b"SERVER_ERROR too many connections for this project\r\n",
    );
    // Still unauthenticated: a data command is refused, the connection open.
    let mut other = server.connect();
    login(&mut other, "tok-free-0123456789", "free");
    drop(one);
    // The close is seen by the server soon after.
    let retried = within(Duration::from_secs(5), || {
        three.send(&oauth_request("tok-capped-0123456789 capped other"));
        three.read_until(b"\r\n") == b"STORED\r\n"
    });
    assert!(retried.is_some(), "a freed slot was not reused");

    // A bad file on SIGHUP keeps the old quotas, and says why.
    quotas.write("capped connections=many\n");
    server.signal(1);
    log.wait_for("quotas file not reloaded, keeping the old quotas");
    let mut four = server.connect();
    four.roundtrip(
        &oauth_request("tok-capped-0123456789 capped cache"),
        b"SERVER_ERROR too many connections for this project\r\n",
    );
    // A good one applies.
    quotas.write("capped connections=3\n");
    server.signal(1);
    log.wait_for("quotas file reloaded");
    four.roundtrip(
        &oauth_request("tok-capped-0123456789 capped cache"),
        b"STORED\r\n",
    );
    let mut five = server.connect();
    five.roundtrip(
        &oauth_request("tok-capped-0123456789 capped cache"),
        b"SERVER_ERROR too many connections for this project\r\n",
    );
}

/// In open mode the quotas apply by project name.
#[test]
fn open_mode_applies_quotas_by_project_name() {
    let quotas = GrantsFile::new("* connections=1\n");
    let server = Server::start(&["--quotas", quotas.arg()]);
    let mut a = server.connect();
    a.roundtrip(&oauth_request("any p1 c"), b"STORED\r\n");
    let mut b = server.connect();
    b.roundtrip(
        &oauth_request("any p1 c2"),
        b"SERVER_ERROR too many connections for this project\r\n",
    );
    b.roundtrip(&oauth_request("any p2 c"), b"STORED\r\n");
}

/// In open mode a connection that names no cache is the project
/// `default`'s, and counts against its `connections=` as a login to it
/// does: past the quota its first command gets the quota's error, its
/// value is read and dropped, and it stays open, free to try again or to
/// name another project; a closed connection's slot is reused.
#[test]
fn open_mode_counts_default_connections_against_the_quota() {
    const FULL: &[u8] = b"SERVER_ERROR too many connections for this project\r\n";
    let quotas = GrantsFile::new("default connections=2\n");
    let server = Server::start(&["--quotas", quotas.arg()]);
    let mut one = server.connect();
    one.roundtrip(b"set k 0 0 1\r\nx\r\n", b"STORED\r\n");
    let mut two = server.connect();
    two.roundtrip(b"get k\r\n", b"VALUE k 0 1\r\nx\r\nEND\r\n");

    let mut three = server.connect();
    three.roundtrip(b"version\r\n", b"VERSION ");
    three.read_until(b"\r\n");
    three.roundtrip(b"set k 0 0 1\r\ny\r\n", FULL);
    three.roundtrip(b"get k\r\n", FULL);
    three.roundtrip(b"set k 0 0 1 noreply\r\nz\r\nget k\r\n", FULL);
    // A login to `default` is counted the same.
    three.roundtrip(&oauth_request("any default default"), FULL);
    one.roundtrip(b"get k\r\n", b"VALUE k 0 1\r\nx\r\nEND\r\n");
    // Another project is not affected.
    three.roundtrip(&oauth_request("any other c"), b"STORED\r\n");

    drop(one);
    let mut four = server.connect();
    // The close is seen by the server soon after.
    let retried = within(Duration::from_secs(5), || {
        four.send(b"get k\r\n");
        let mut reply = four.read_until(b"\r\n");
        if reply == FULL {
            return false;
        }
        if !reply.ends_with(b"END\r\n") {
            reply.extend(four.read_until(b"END\r\n"));
        }
        assert_eq!(reply, b"VALUE k 0 1\r\nx\r\nEND\r\n");
        true
    });
    assert!(retried.is_some(), "a freed slot was not reused");
    server.connect().roundtrip(b"delete k\r\n", FULL);
}

/// Reserves may add up to `--memory-mb`, and one that does leaves less
/// than a segment for anyone else once the store's open segments are
/// counted. Another project's writes used to spin the core forever in
/// eviction merges that kept everything (every connection on that core
/// stopped answering). Now each write is answered, the newest are kept,
/// every core still serves, and `stats` counts the merges that took from
/// the reserve.
#[test]
fn a_reserve_as_large_as_memory_cannot_stall_a_core() {
    let quotas = GrantsFile::new("reserved reserve=56m\n");
    let server = Server::start(&["--memory-mb", "64", "--quotas", quotas.arg()]);
    let value = vec![b'x'; 10_000];
    let mut reserved = server.connect();
    reserved.roundtrip(&oauth_request("any reserved c"), b"STORED\r\n");
    store_many(&mut reserved, "r", 7000, &value);
    let mut other = server.connect();
    other.roundtrip(&oauth_request("any other c"), b"STORED\r\n");
    store_many(&mut other, "o", 2000, &value);
    assert_eq!(count_hits(&mut other, "o", 1900..2000), 100);
    for _ in 0..8 {
        server.connect().roundtrip(b"version\r\n", b"VERSION ");
    }
    let fallbacks = stat_num(&stats_of(&mut server.connect(), ""), "store_fair_fallbacks");
    assert!(fallbacks > 0, "no merge took from the reserve");
}

/// A flood of empty values fills the key index long before memory; its
/// full chains must then drop the flooder's own items, never those of a
/// project within its reserve (the probe's recipe: the reserved project
/// lost 71% of its items with a quarter of memory in use).
#[test]
fn a_flood_of_tiny_items_cannot_evict_a_reserve() {
    let tokens = GrantsFile::new(TOKENS);
    // (The project named "capped" holds a reserve here, and no cap.)
    let quotas = GrantsFile::new("capped reserve=8m\n");
    let server = Server::start(&[
        "--memory-mb",
        "32",
        "--tokens",
        tokens.arg(),
        "--quotas",
        quotas.arg(),
    ]);
    let mut reserved = server.connect();
    login(&mut reserved, "tok-capped-0123456789", "capped");
    store_many(&mut reserved, "r", 20_000, &[b'x'; 100]);
    let mut flood = server.connect();
    login(&mut flood, "tok-free-0123456789", "free");
    for chunk in (0..600_000).collect::<Vec<_>>().chunks(20_000) {
        let mut request = Vec::new();
        for i in chunk {
            request.extend_from_slice(format!("set a{i} 0 0 0 noreply\r\n\r\n").as_bytes());
        }
        request.extend_from_slice(b"version\r\n");
        flood.send(&request);
        flood.read_until(b"\r\n");
    }
    let flooded = stats_of(&mut flood, "");
    assert!(
        stat_num(&flooded, "evictions") > 0,
        "the flood filled nothing"
    );
    assert!(
        stat_num(&flooded, "bytes") < 16 << 20,
        "memory filled: not an index flood"
    );
    let kept = stats_of(&mut reserved, "");
    assert_eq!(stat_num(&kept, "curr_items"), 20_000);
    assert_eq!(stat_num(&kept, "evictions"), 0);
    assert_eq!(count_hits(&mut reserved, "r", 0..20_000), 20_000);
}

/// A bad quotas file at start is a configuration error: exit 78, naming
/// the file and line.
#[test]
fn a_bad_quotas_file_at_start_is_a_config_error() {
    for (text, line, reason) in [
        (
            "a reserve=40m\nb reserve=30m\n",
            2,
            "reserves add up to 70m here, more than --memory-mb 64m",
        ),
        ("p weight=0\n", 1, "weight=0"),
        ("p colour=red\n", 1, "unknown key"),
    ] {
        let quotas = GrantsFile::new(text);
        let out = Command::new(env!("CARGO_BIN_EXE_ferrocache"))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--cores",
                "1",
                "--memory-mb",
                "64",
            ])
            .args(["--quotas", quotas.arg()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .expect("run ferrocache");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{text:?}: {stderr}");
        let at = format!("{}:{line}: ", quotas.arg());
        assert!(
            stderr.contains(&at) && stderr.contains(reason),
            "{text:?}: {stderr}"
        );
    }
}
