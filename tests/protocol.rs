//! Black-box protocol tests: tables of (request bytes, expected reply bytes)
//! run in order against the real binary with two cores, so every table
//! crosses shards. Expected bytes are memcached 1.6.18's.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{Conn, Server};

const VERSION: &[u8] = b"VERSION 1.6.18-ferrocache-0.1.0\r\n";
const BAD_LINE: &[u8] = b"CLIENT_ERROR bad command line format\r\n";

type Case<'a> = (&'a [u8], &'a [u8]);

/// Runs a table on one connection, then proves the stream is in sync (and
/// that nothing extra came back) with a final `version`.
fn run(conn: &mut Conn, table: &[Case<'_>]) {
    for (request, expected) in table {
        conn.roundtrip(request, expected);
    }
    conn.roundtrip(b"version\r\n", VERSION);
}

fn owned_run(conn: &mut Conn, table: &[(Vec<u8>, Vec<u8>)]) {
    let borrowed: Vec<Case<'_>> = table
        .iter()
        .map(|(r, e)| (r.as_slice(), e.as_slice()))
        .collect();
    run(conn, &borrowed);
}

fn get(conn: &mut Conn, key: &str) -> Vec<u8> {
    conn.send(format!("get {key}\r\n").as_bytes());
    conn.read_until(b"END\r\n")
}

/// The CAS unique `gets` reports for `key`.
fn gets_cas(conn: &mut Conn, key: &str) -> u64 {
    conn.send(format!("gets {key}\r\n").as_bytes());
    let reply = String::from_utf8(conn.read_until(b"END\r\n")).unwrap();
    let header = reply.lines().next().unwrap();
    let words: Vec<&str> = header.split(' ').collect();
    assert_eq!(
        (words.len(), words[0], words[1]),
        (5, "VALUE", key),
        "{reply:?}"
    );
    words[4].parse().unwrap()
}

fn stats(conn: &mut Conn, group: &str) -> HashMap<String, String> {
    conn.send(format!("stats{group}\r\n").as_bytes());
    let reply = String::from_utf8(conn.read_until(b"END\r\n")).unwrap();
    let mut map = HashMap::new();
    for line in reply.lines() {
        if line == "END" {
            continue;
        }
        let mut words = line.splitn(3, ' ');
        assert_eq!(words.next(), Some("STAT"), "{line:?}");
        let name = words.next().unwrap().to_owned();
        map.insert(name, words.next().unwrap_or("").to_owned());
    }
    map
}

fn num(map: &HashMap<String, String>, name: &str) -> u64 {
    map.get(name)
        .unwrap_or_else(|| panic!("no stat {name}"))
        .parse()
        .unwrap()
}

/// Polls `get key` until it misses, failing after `limit`. Returns the wait.
fn wait_until_gone(conn: &mut Conn, key: &str, limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        if get(conn, key) == b"END\r\n" {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "{key} still there after {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn storage_commands() {
    let server = Server::start(&[]);
    let mut c = server.connect();
    run(
        &mut c,
        &[
            (b"get a\r\n", b"END\r\n"),
            (b"set a 0 0 1\r\nx\r\n", b"STORED\r\n"),
            (b"get a\r\n", b"VALUE a 0 1\r\nx\r\nEND\r\n"),
            (b"set a 42 0 3\r\nxyz\r\n", b"STORED\r\n"),
            (b"get a\r\n", b"VALUE a 42 3\r\nxyz\r\nEND\r\n"),
            (b"set e 0 0 0\r\n\r\n", b"STORED\r\n"),
            (b"get e\r\n", b"VALUE e 0 0\r\n\r\nEND\r\n"),
            (
                b"set f 4294967295 0 1\r\nf\r\n",
                b"STORED\r\n",
            ),
            (b"get f\r\n", b"VALUE f 4294967295 1\r\nf\r\nEND\r\n"),
            // add: only when absent.
            (b"add a 0 0 1\r\ny\r\n", b"NOT_STORED\r\n"),
            (b"add b 7 0 2\r\nbb\r\n", b"STORED\r\n"),
            (b"get b\r\n", b"VALUE b 7 2\r\nbb\r\nEND\r\n"),
            // replace: only when present.
            (b"replace c 0 0 1\r\nc\r\n", b"NOT_STORED\r\n"),
            (b"replace b 8 0 1\r\nB\r\n", b"STORED\r\n"),
            (b"get b c\r\n", b"VALUE b 8 1\r\nB\r\nEND\r\n"),
            // append/prepend keep the item's flags and exptime, ignore theirs.
            (b"append a 1 1 2\r\n12\r\n", b"STORED\r\n"),
            (b"prepend a 2 2 2\r\n<<\r\n", b"STORED\r\n"),
            (b"get a\r\n", b"VALUE a 42 7\r\n<<xyz12\r\nEND\r\n"),
            (b"append c 0 0 1\r\nz\r\n", b"NOT_STORED\r\n"),
            (b"prepend c 0 0 1\r\nz\r\n", b"NOT_STORED\r\n"),
            (b"get c\r\n", b"END\r\n"),
            // delete.
            (b"delete a\r\n", b"DELETED\r\n"),
            (b"delete a\r\n", b"NOT_FOUND\r\n"),
            (b"delete b 0\r\n", b"DELETED\r\n"),
            (b"get a b\r\n", b"END\r\n"),
            (
                b"delete a 5\r\n",
                b"CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n",
            ),
            // multi-get: key order, repeats, misses.
            (b"set m1 1 0 2\r\nm1\r\nset m2 2 0 2\r\nm2\r\n", b"STORED\r\nSTORED\r\n"),
            (
                b"get m2 nope m1 m2  m1\r\n",
                b"VALUE m2 2 2\r\nm2\r\nVALUE m1 1 2\r\nm1\r\nVALUE m2 2 2\r\nm2\r\nVALUE m1 1 2\r\nm1\r\nEND\r\n",
            ),
            // Values may hold \r\n and look like commands.
            (
                b"set v 0 0 14\r\nget a\r\nEND\r\n\r\n\r\n",
                b"STORED\r\n",
            ),
            (b"get v\r\n", b"VALUE v 0 14\r\nget a\r\nEND\r\n\r\n\r\nEND\r\n"),
            // Keys are bytes: anything above 0x20 but DEL.
            (
                b"set \xc3\xa9\xff~ 0 0 1\r\nh\r\nget \xc3\xa9\xff~\r\n",
                b"STORED\r\nVALUE \xc3\xa9\xff~ 0 1\r\nh\r\nEND\r\n",
            ),
            // LF-only command lines are accepted.
            (b"set lf 0 0 1\nl\r\nget lf\n", b"STORED\r\nVALUE lf 0 1\r\nl\r\nEND\r\n"),
        ],
    );
}

#[test]
fn cas_and_gets() {
    let server = Server::start(&[]);
    let mut c = server.connect();
    c.roundtrip(b"cas k 0 0 1 1\r\nx\r\n", b"NOT_FOUND\r\n");
    c.roundtrip(b"set k 5 0 2\r\nv1\r\n", b"STORED\r\n");
    let cas1 = gets_cas(&mut c, "k");
    // Unchanged item: same unique.
    assert_eq!(gets_cas(&mut c, "k"), cas1);
    owned_run(
        &mut c,
        &[
            (
                format!("cas k 6 0 2 {}\r\nv2\r\n", cas1 + 1000).into_bytes(),
                b"EXISTS\r\n".to_vec(),
            ),
            (
                format!("cas k 6 0 2 {cas1}\r\nv2\r\n").into_bytes(),
                b"STORED\r\n".to_vec(),
            ),
            (
                b"get k\r\n".to_vec(),
                b"VALUE k 6 2\r\nv2\r\nEND\r\n".to_vec(),
            ),
            // The unique is spent: reusing it fails.
            (
                format!("cas k 7 0 2 {cas1}\r\nv3\r\n").into_bytes(),
                b"EXISTS\r\n".to_vec(),
            ),
            (
                format!("cas k 7 0 2 {cas1} noreply\r\nv3\r\n").into_bytes(),
                Vec::new(),
            ),
            (
                b"get k\r\n".to_vec(),
                b"VALUE k 6 2\r\nv2\r\nEND\r\n".to_vec(),
            ),
        ],
    );
    let cas2 = gets_cas(&mut c, "k");
    assert_ne!(cas2, cas1, "a store must change the unique");
    // Every kind of store changes it: touch does not, append does.
    c.roundtrip(b"touch k 100\r\n", b"TOUCHED\r\n");
    assert_eq!(gets_cas(&mut c, "k"), cas2);
    c.roundtrip(b"append k 0 0 1\r\n!\r\n", b"STORED\r\n");
    let cas3 = gets_cas(&mut c, "k");
    assert_ne!(cas3, cas2);
    // gets on several keys: each has its own unique; the reply carries it.
    c.roundtrip(b"set k2 0 0 1\r\ny\r\n", b"STORED\r\n");
    let cas_k2 = gets_cas(&mut c, "k2");
    c.roundtrip(
        b"gets k nope k2\r\n",
        format!("VALUE k 6 3 {cas3}\r\nv2!\r\nVALUE k2 0 1 {cas_k2}\r\ny\r\nEND\r\n").as_bytes(),
    );
    // gats reports the unique too, and touching keeps it.
    c.roundtrip(
        b"gats 100 k2\r\n",
        format!("VALUE k2 0 1 {cas_k2}\r\ny\r\nEND\r\n").as_bytes(),
    );
    // cas noreply that succeeds.
    c.send(format!("cas k2 9 0 1 {cas_k2} noreply\r\nz\r\n").as_bytes());
    run(
        &mut c,
        &[
            (b"get k2\r\n", b"VALUE k2 9 1\r\nz\r\nEND\r\n"),
            (b"delete k2\r\n", b"DELETED\r\n"),
            (
                format!("cas k2 0 0 1 {cas_k2}\r\nw\r\n").as_bytes(),
                b"NOT_FOUND\r\n",
            ),
            (b"cas k 0 0 1\r\nx\r\n", b"ERROR\r\nERROR\r\n"),
            (
                b"cas k 0 0 1 abc\r\nx\r\n",
                b"CLIENT_ERROR bad command line format\r\nERROR\r\n",
            ),
        ],
    );
}

#[test]
fn arithmetic() {
    let server = Server::start(&[]);
    let mut c = server.connect();
    run(
        &mut c,
        &[
            (b"incr n 1\r\n", b"NOT_FOUND\r\n"),
            (b"decr n 1\r\n", b"NOT_FOUND\r\n"),
            (b"set n 3 0 1\r\n5\r\n", b"STORED\r\n"),
            (b"incr n 10\r\n", b"15\r\n"),
            (b"get n\r\n", b"VALUE n 3 2\r\n15\r\nEND\r\n"),
            (b"decr n 3\r\n", b"12\r\n"),
            (b"decr n 100\r\n", b"0\r\n"),
            (
                b"incr n 18446744073709551615\r\n",
                b"18446744073709551615\r\n",
            ),
            (b"incr n 1\r\n", b"0\r\n"),
            (
                b"incr n 18446744073709551615\r\n",
                b"18446744073709551615\r\n",
            ),
            // The 20-digit value shrinks to 1 digit in place: 19 spaces of padding.
            (b"incr n 2\r\n", b"1\r\n"),
            // A shorter result is padded with spaces in place, as memcached does.
            (b"set d 0 0 3\r\n100\r\ndecr d 91\r\n", b"STORED\r\n9\r\n"),
            (b"get d\r\n", b"VALUE d 0 3\r\n9  \r\nEND\r\n"),
            (b"incr d 1\r\n", b"10\r\n"),
            (b"set s 0 0 1\r\na\r\n", b"STORED\r\n"),
            (
                b"incr s 1\r\n",
                b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n",
            ),
            (
                b"decr s 1\r\n",
                b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n",
            ),
            (
                b"incr n -1\r\n",
                b"CLIENT_ERROR invalid numeric delta argument\r\n",
            ),
            (
                b"incr n abc\r\n",
                b"CLIENT_ERROR invalid numeric delta argument\r\n",
            ),
            (
                b"incr n 18446744073709551616\r\n",
                b"CLIENT_ERROR invalid numeric delta argument\r\n",
            ),
            (b"incr n\r\n", b"ERROR\r\n"),
            (b"incr n 1 noreply\r\n", b""),
            (b"decr n 1 noreply\r\n", b""),
            (b"incr n 5 noreply\r\n", b""),
            (
                b"get n\r\n",
                b"VALUE n 3 20\r\n6                   \r\nEND\r\n",
            ),
            (
                b"set n 0 0 2\r\n99\r\nincr n 1\r\nget n\r\n",
                b"STORED\r\n100\r\nVALUE n 0 3\r\n100\r\nEND\r\n",
            ),
        ],
    );
}

#[test]
fn touch_and_gat() {
    let server = Server::start(&[]);
    let mut c = server.connect();
    run(
        &mut c,
        &[
            (b"touch t 10\r\n", b"NOT_FOUND\r\n"),
            (
                b"set t 1 0 1\r\nt\r\nset u 2 0 1\r\nu\r\n",
                b"STORED\r\nSTORED\r\n",
            ),
            (b"touch t 100\r\n", b"TOUCHED\r\n"),
            (
                b"touch t abc\r\n",
                b"CLIENT_ERROR invalid exptime argument\r\n",
            ),
            (b"touch t\r\n", b"ERROR\r\n"),
            (
                b"gat 100 t nope u\r\n",
                b"VALUE t 1 1\r\nt\r\nVALUE u 2 1\r\nu\r\nEND\r\n",
            ),
            (b"gat 0\r\n", b"END\r\n"),
            (b"gat\r\n", b"ERROR\r\n"),
            (
                b"gat abc t\r\n",
                b"CLIENT_ERROR invalid exptime argument\r\n",
            ),
            // A negative exptime expires the item after returning it.
            (b"gat -1 t\r\n", b"VALUE t 1 1\r\nt\r\nEND\r\n"),
            (b"get t\r\n", b"END\r\n"),
            (b"touch u -1\r\n", b"TOUCHED\r\n"),
            (b"get u\r\n", b"END\r\n"),
            (b"set w 0 0 1\r\nw\r\n", b"STORED\r\n"),
            (b"touch w 0 noreply\r\n", b""),
            (b"get w\r\n", b"VALUE w 0 1\r\nw\r\nEND\r\n"),
        ],
    );
}

#[test]
fn noreply_is_silent_everywhere() {
    let server = Server::start(&[]);
    let mut c = server.connect();
    // Each request must produce nothing: `run` follows it with `version`
    // and reads only that reply.
    let silent: &[&[u8]] = &[
        b"set a 1 0 1 noreply\r\na\r\n",
        b"set a 1 0 1 noreply\r\na\r\n",
        b"add a 0 0 1 noreply\r\nz\r\n",
        b"add b 2 0 1 noreply\r\nb\r\n",
        b"replace b 3 0 1 noreply\r\nB\r\n",
        b"replace nope 0 0 1 noreply\r\nz\r\n",
        b"append a 0 0 1 noreply\r\n>\r\n",
        b"prepend a 0 0 1 noreply\r\n<\r\n",
        b"append nope 0 0 1 noreply\r\nz\r\n",
        b"cas nope 0 0 1 1 noreply\r\nz\r\n",
        b"cas a 0 0 1 99999999 noreply\r\nz\r\n",
        b"set n 0 0 1 noreply\r\n1\r\n",
        b"incr n 5 noreply\r\n",
        b"decr n 2 noreply\r\n",
        b"incr nope 1 noreply\r\n",
        b"incr a 1 noreply\r\n",
        b"incr n x noreply\r\n",
        b"touch b 100 noreply\r\n",
        b"touch nope 100 noreply\r\n",
        b"touch b x noreply\r\n",
        b"delete nope noreply\r\n",
        b"delete nope 0 noreply\r\n",
        b"delete nope 5 noreply\r\n",
        // A refused command line leaves its data to be read as a command, so
        // these send none.
        b"set bad\x01 0 0 1 noreply\r\n",
        b"set c 0 0 x noreply\r\n",
        b"set c 0 x 1 noreply\r\n",
        b"verbosity 1 noreply\r\n",
        b"verbosity noreply\r\n",
    ];
    for request in silent {
        c.send(request);
        c.roundtrip(b"version\r\n", VERSION);
    }
    run(
        &mut c,
        &[
            (
                b"get a b n c\r\n",
                b"VALUE a 1 3\r\n<a>\r\nVALUE b 3 1\r\nB\r\nVALUE n 0 1\r\n4\r\nEND\r\n",
            ),
            (b"delete a noreply\r\n", b""),
            (b"flush_all noreply\r\n", b""),
            (b"get b n\r\n", b"END\r\n"),
            (
                b"set b 0 0 1\r\nb\r\nflush_all 0 noreply\r\nget b\r\n",
                b"STORED\r\nEND\r\n",
            ),
        ],
    );
}

#[test]
fn expiry() {
    let server = Server::start(&[]);
    let mut c = server.connect();
    let absolute = unix_now() + 3;
    // Negative: gone at once. Over 30 days: an absolute time, here in 1970.
    run(
        &mut c,
        &[
            (b"set neg 0 -1 1\r\nx\r\n", b"STORED\r\n"),
            (b"get neg\r\n", b"END\r\n"),
            (b"set old 0 2592001 1\r\nx\r\n", b"STORED\r\n"),
            (b"get old\r\n", b"END\r\n"),
            (b"set month 0 2592000 1\r\nx\r\n", b"STORED\r\n"),
            (b"get month\r\n", b"VALUE month 0 1\r\nx\r\nEND\r\n"),
            (
                b"set keep 0 100 1\r\nk\r\nset rel 0 1 1\r\nr\r\n",
                b"STORED\r\nSTORED\r\n",
            ),
            // append/prepend/incr keep the item's exptime (2 s, so it cannot
            // lapse mid-table); touch and gat replace it (100 s); touch can
            // also shorten it.
            (
                b"set ap 0 2 1\r\na\r\nappend ap 0 0 1\r\nb\r\nprepend ap 0 100 1\r\nc\r\n",
                b"STORED\r\nSTORED\r\nSTORED\r\n",
            ),
            (b"set inc 0 2 1\r\n1\r\nincr inc 1\r\n", b"STORED\r\n2\r\n"),
            (
                b"set tch 0 2 1\r\nt\r\ntouch tch 100\r\n",
                b"STORED\r\nTOUCHED\r\n",
            ),
            (
                b"set gat 0 2 1\r\ng\r\ngat 100 gat\r\n",
                b"STORED\r\nVALUE gat 0 1\r\ng\r\nEND\r\n",
            ),
            (
                b"set short 0 100 1\r\ns\r\ntouch short 1\r\n",
                b"STORED\r\nTOUCHED\r\n",
            ),
            (
                format!("set abs 0 {absolute} 1\r\na\r\n").as_bytes(),
                b"STORED\r\n",
            ),
            (b"get abs\r\n", b"VALUE abs 0 1\r\na\r\nEND\r\n"),
        ],
    );
    let waited = wait_until_gone(&mut c, "rel", Duration::from_secs(5));
    assert!(
        waited <= Duration::from_millis(2500),
        "exptime 1 lived {waited:?}"
    );
    for key in ["ap", "inc", "short"] {
        wait_until_gone(&mut c, key, Duration::from_secs(4));
    }
    wait_until_gone(&mut c, "abs", Duration::from_secs(6));
    assert!(unix_now() + 1 >= absolute, "absolute exptime expired early");
    run(
        &mut c,
        &[(
            b"get keep tch gat\r\n",
            b"VALUE keep 0 1\r\nk\r\nVALUE tch 0 1\r\nt\r\nVALUE gat 0 1\r\ng\r\nEND\r\n",
        )],
    );
}

#[test]
fn flush_all() {
    let server = Server::start(&[]);
    let mut c = server.connect();
    let keys: Vec<String> = (0..10).map(|i| format!("f{i}")).collect();
    let set_all = |c: &mut Conn| {
        for k in &keys {
            c.roundtrip(format!("set {k} 0 0 1\r\nv\r\n").as_bytes(), b"STORED\r\n");
        }
    };
    set_all(&mut c);
    run(
        &mut c,
        &[
            (b"flush_all\r\n", b"OK\r\n"),
            (b"get f0 f1 f2 f3 f4 f5 f6 f7 f8 f9\r\n", b"END\r\n"),
            (
                b"flush_all foo\r\n",
                b"CLIENT_ERROR invalid exptime argument\r\n",
            ),
            (b"flush_all 1 2 3\r\n", b"ERROR\r\n"),
        ],
    );
    set_all(&mut c);
    c.roundtrip(b"flush_all 0\r\n", b"OK\r\n");
    c.roundtrip(b"get f0 f9\r\n", b"END\r\n");
    // A delayed flush leaves items alone until the delay is over.
    set_all(&mut c);
    let start = Instant::now();
    c.roundtrip(b"flush_all 2\r\n", b"OK\r\n");
    c.roundtrip(b"get f3\r\n", b"VALUE f3 0 1\r\nv\r\nEND\r\n");
    for k in &keys {
        wait_until_gone(&mut c, k, Duration::from_secs(6));
    }
    assert!(
        start.elapsed() >= Duration::from_millis(900),
        "flushed too early"
    );
    // And after it, new items live.
    c.roundtrip(
        b"set f0 0 0 1\r\nw\r\nget f0\r\n",
        b"STORED\r\nVALUE f0 0 1\r\nw\r\nEND\r\n",
    );
    // Delayed and silent.
    c.send(b"flush_all 1 noreply\r\n");
    c.roundtrip(b"version\r\n", VERSION);
    wait_until_gone(&mut c, "f0", Duration::from_secs(5));
}

#[test]
fn stats_groups() {
    let server = Server::start(&[]);
    let mut c = server.connect();
    let s = stats(&mut c, "");
    for field in [
        "pid",
        "uptime",
        "time",
        "version",
        "curr_connections",
        "total_connections",
        "cmd_get",
        "cmd_set",
        "get_hits",
        "get_misses",
        "curr_items",
        "total_items",
        "bytes",
        "limit_maxbytes",
        "threads",
        "evictions",
    ] {
        assert!(s.contains_key(field), "stats lacks {field}: {s:?}");
    }
    assert_eq!(s["version"], "1.6.18-ferrocache-0.1.0");
    assert_eq!(s["threads"], "2");
    assert_eq!(num(&s, "pid"), u64::from(server.pid()));
    assert!(num(&s, "curr_connections") >= 1);
    let time = num(&s, "time");
    assert!(time.abs_diff(unix_now()) <= 2, "stats time {time}");

    // Counters move: 3 sets, then a get with 2 hits and 1 miss, and a gets.
    for k in ["s1", "s2", "s3"] {
        c.roundtrip(format!("set {k} 0 0 2\r\nab\r\n").as_bytes(), b"STORED\r\n");
    }
    c.roundtrip(
        b"get s1 nope s2\r\n",
        b"VALUE s1 0 2\r\nab\r\nVALUE s2 0 2\r\nab\r\nEND\r\n",
    );
    c.roundtrip(b"gets nope2\r\n", b"END\r\n");
    let t = stats(&mut c, "");
    assert_eq!(num(&t, "cmd_set") - num(&s, "cmd_set"), 3);
    assert_eq!(num(&t, "cmd_get") - num(&s, "cmd_get"), 4);
    assert_eq!(num(&t, "get_hits") - num(&s, "get_hits"), 2);
    assert_eq!(num(&t, "get_misses") - num(&s, "get_misses"), 2);
    assert_eq!(num(&t, "curr_items"), 3);
    assert_eq!(num(&t, "total_items") - num(&s, "total_items"), 3);
    assert!(num(&t, "bytes") > num(&s, "bytes"));

    // stats reset zeroes the counters, not the items.
    c.roundtrip(b"stats reset\r\n", b"RESET\r\n");
    let r = stats(&mut c, "");
    assert_eq!(num(&r, "cmd_get"), 0);
    assert_eq!(num(&r, "get_hits"), 0);
    assert_eq!(num(&r, "cmd_set"), 0);
    assert_eq!(num(&r, "curr_items"), 3);
    c.roundtrip(b"delete s1\r\n", b"DELETED\r\n");
    assert_eq!(num(&stats(&mut c, ""), "curr_items"), 2);

    let settings = stats(&mut c, " settings");
    assert_eq!(settings["item_size_max"], "1048576");
    assert_eq!(settings["num_threads"], "2");
    assert_eq!(settings["cas_enabled"], "yes");
    run(
        &mut c,
        &[
            (b"stats items\r\n", b"END\r\n"),
            (b"stats slabs\r\n", b"END\r\n"),
            (b"stats foo\r\n", b"ERROR\r\n"),
        ],
    );
}

#[test]
fn version_verbosity_quit() {
    let server = Server::start(&[]);
    let mut c = server.connect();
    run(
        &mut c,
        &[
            (b"version\r\n", VERSION),
            (b"verbosity 1\r\n", b"OK\r\n"),
            (b"verbosity 0\r\n", b"OK\r\n"),
            (b"verbosity\r\n", b"ERROR\r\n"),
            (b"verbosity noreply\r\n", b""),
            (b"verbosity 1 noreply\r\n", b""),
            (b"\r\n", b"ERROR\r\n"),
            (b"bogus\r\n", b"ERROR\r\n"),
            (b"shutdown\r\n", b"ERROR: shutdown not enabled\r\n"),
            (
                b"shutdown graceful noreply\r\n",
                b"ERROR: shutdown not enabled\r\n",
            ),
            (b"GET a\r\n", b"ERROR\r\n"),
            (b"get\r\n", b"ERROR\r\n"),
        ],
    );
    c.send(b"quit\r\n");
    assert!(c.is_closed(), "quit must close the connection");
    // Requests after quit in the same write are never answered.
    let mut c = server.connect();
    c.send(b"set q 0 0 1\r\nq\r\nquit\r\nget q\r\n");
    assert_eq!(c.read_exact_n(8), b"STORED\r\n");
    assert!(c.is_closed());
}

#[test]
fn key_and_value_limits() {
    let server = Server::start(&["--max-item-size", "1k"]);
    let mut c = server.connect();
    let k250 = "k".repeat(250);
    let k251 = "k".repeat(251);
    // memcached counts its 48-byte item header, the key and a NUL, the CR
    // LF and an 8-byte cas against -I: 962 value bytes fill 1k for "big".
    let at_limit = vec![b'v'; 962];
    let over = vec![b'o'; 963];
    let mut value_at = b"set big 0 0 962\r\n".to_vec();
    value_at.extend_from_slice(&at_limit);
    value_at.extend_from_slice(b"\r\n");
    let mut value_over = b"set big 0 0 963\r\n".to_vec();
    value_over.extend_from_slice(&over);
    value_over.extend_from_slice(b"\r\n");
    let mut value_over_nr = b"set big 0 0 963 noreply\r\n".to_vec();
    value_over_nr.extend_from_slice(&over);
    value_over_nr.extend_from_slice(b"\r\n");
    let mut big_reply = b"VALUE big 0 962\r\n".to_vec();
    big_reply.extend_from_slice(&at_limit);
    big_reply.extend_from_slice(b"\r\nEND\r\n");
    let table: Vec<(Vec<u8>, Vec<u8>)> = vec![
        (
            format!("set {k250} 0 0 1\r\nx\r\n").into(),
            b"STORED\r\n".to_vec(),
        ),
        (
            format!("get {k250}\r\n").into(),
            format!("VALUE {k250} 0 1\r\nx\r\nEND\r\n").into(),
        ),
        (
            format!("set {k251} 0 0 1\r\nx\r\n").into(),
            [BAD_LINE, b"ERROR\r\n"].concat(),
        ),
        (format!("get {k251}\r\n").into(), BAD_LINE.to_vec()),
        (format!("get a {k251} b\r\n").into(), BAD_LINE.to_vec()),
        (format!("delete {k251}\r\n").into(), BAD_LINE.to_vec()),
        (format!("incr {k251} 1\r\n").into(), BAD_LINE.to_vec()),
        (format!("touch {k251} 1\r\n").into(), BAD_LINE.to_vec()),
        (format!("delete {k250}\r\n").into(), b"DELETED\r\n".to_vec()),
        // Control bytes in keys are refused (a deliberate difference).
        (
            b"set a\x01b 0 0 1\r\nx\r\n".to_vec(),
            [BAD_LINE, b"ERROR\r\n"].concat(),
        ),
        (b"get a\x7fb\r\n".to_vec(), BAD_LINE.to_vec()),
        // Flags beyond 32 bits are refused (a deliberate difference).
        (
            b"set fl 4294967296 0 1\r\nx\r\n".to_vec(),
            [BAD_LINE, b"ERROR\r\n"].concat(),
        ),
        (value_at, b"STORED\r\n".to_vec()),
        (b"get big\r\n".to_vec(), big_reply.clone()),
        // Over the limit: refused, the data block swallowed, old value gone
        // (memcached unlinks it), the stream still in sync.
        (
            value_over,
            b"SERVER_ERROR object too large for cache\r\n".to_vec(),
        ),
        (b"get big\r\n".to_vec(), b"END\r\n".to_vec()),
        (value_over_nr, Vec::new()),
        (
            b"set big 0 0 1\r\nb\r\nget big\r\n".to_vec(),
            b"STORED\r\nVALUE big 0 1\r\nb\r\nEND\r\n".to_vec(),
        ),
        (b"set neg 0 0 -1\r\n".to_vec(), BAD_LINE.to_vec()),
    ];
    owned_run(&mut c, &table);
}

/// memcached 1.6.18 answers NOT_STORED when an append or prepend would make
/// the item larger than the item size limit (the allocation fails).
#[test]
fn append_past_item_limit_is_not_stored() {
    // At -I 1k memcached takes a value of up to 962 bytes for the key
    // "big". Each part below fits alone; joined they do not, and memcached
    // answers NOT_STORED. A part too large on its own is refused before
    // its data block is read, as a set is.
    let server = Server::start(&["--max-item-size", "1k"]);
    let mut c = server.connect();
    let old = vec![b'b'; 900];
    let part = vec![b'v'; 200];
    let alone = vec![b'v'; 963];
    let set = [&b"set big 0 0 900\r\n"[..], &old, b"\r\n"].concat();
    let append = [&b"append big 0 0 200\r\n"[..], &part, b"\r\n"].concat();
    let prepend = [&b"prepend big 0 0 200\r\n"[..], &part, b"\r\n"].concat();
    let too_large = [&b"append big 0 0 963\r\n"[..], &alone, b"\r\n"].concat();
    owned_run(
        &mut c,
        &[
            (set, b"STORED\r\n".to_vec()),
            (append, b"NOT_STORED\r\n".to_vec()),
            (prepend, b"NOT_STORED\r\n".to_vec()),
            (
                too_large,
                b"SERVER_ERROR object too large for cache\r\n".to_vec(),
            ),
            (
                b"get big\r\n".to_vec(),
                [&b"VALUE big 0 900\r\n"[..], &old, b"\r\nEND\r\n"].concat(),
            ),
        ],
    );
}

#[test]
fn bad_data_chunk_keeps_stream_in_sync() {
    let server = Server::start(&[]);
    let mut c = server.connect();
    run(
        &mut c,
        &[
            (
                b"set a 0 0 3\r\nabcde\r\n",
                b"CLIENT_ERROR bad data chunk\r\nERROR\r\n",
            ),
            (b"get a\r\n", b"END\r\n"),
            (b"set a 0 0 3\r\nabc\r\n", b"STORED\r\n"),
            (b"set a 0 0 1 noreply\r\nxyz\r\n", b"ERROR\r\n"),
            (b"get a\r\n", b"VALUE a 0 3\r\nabc\r\nEND\r\n"),
            (b"set a 0 0\r\n", b"ERROR\r\n"),
            (
                b"set a x 0 1\r\nq\r\n",
                b"CLIENT_ERROR bad command line format\r\nERROR\r\n",
            ),
            (b"set a 0 0 1 noreply extra\r\nq\r\n", b"ERROR\r\nERROR\r\n"),
        ],
    );
}

#[test]
fn every_byte_value_round_trips() {
    let server = Server::start(&[]);
    let mut c = server.connect();
    let all: Vec<u8> = (0..=255u8).collect();
    let mut tricky = b"\r\n\r\nEND\r\nVALUE x 0 1\r\n\n\r".to_vec();
    tricky.extend_from_slice(&all);
    tricky.extend_from_slice(b"\r\n");
    for (i, value) in [all.clone(), tricky, b"\r\n".to_vec(), vec![0u8; 300]]
        .iter()
        .enumerate()
    {
        let key = format!("bin{i}");
        let mut set = format!("set {key} 9 0 {}\r\n", value.len()).into_bytes();
        set.extend_from_slice(value);
        set.extend_from_slice(b"\r\n");
        c.roundtrip(&set, b"STORED\r\n");
        let mut want = format!("VALUE {key} 9 {}\r\n", value.len()).into_bytes();
        want.extend_from_slice(value);
        want.extend_from_slice(b"\r\nEND\r\n");
        c.roundtrip(format!("get {key}\r\n").as_bytes(), &want);
    }
    c.roundtrip(b"version\r\n", VERSION);
}

#[test]
fn overlong_line_closes() {
    let server = Server::start(&[]);
    let mut c = server.connect();
    c.roundtrip(b"set a 0 0 1\r\nx\r\n", b"STORED\r\n");
    // 2048 bytes with a newline is a (bad) line, not too long.
    let mut ok = vec![b'x'; 2048];
    ok.extend_from_slice(b"\r\n");
    c.roundtrip(&ok, b"ERROR\r\n");
    c.send(&vec![b's'; 2049]);
    assert_eq!(c.read_exact_n(28), b"CLIENT_ERROR line too long\r\n");
    assert!(c.is_closed());
    // Other connections are unaffected.
    let mut d = server.connect();
    run(&mut d, &[(b"get a\r\n", b"VALUE a 0 1\r\nx\r\nEND\r\n")]);
}

/// A server whose cores accept no new connection for a while must keep
/// running. Observed: `ferrocache --cores 2` with no traffic at all panics
/// after 683 s ("Waker invariant broken ... refcount: -32768", thread
/// ferrocache-0-1) and the process exits. The accept loop races
/// `listener.accept()` against a 20 ms shutdown poll (`future::or` in
/// transport/server.rs); every wake re-polls the pending accept, and glommio's
/// `Source::collect_rw` pushes one more waker clone each time
/// (`add_waiter_many`), so the task's refcount overflows after ~32k wakes
/// (about 11 minutes) unless an accept drains the list. Only one connection
/// is used here, so no accept resets the count. Takes 15 minutes.
#[test]
#[ignore = "takes 15 minutes; regression test for the accept-loop waker leak (fixed: \
            shutdown no longer re-polls the accept)"]
fn server_survives_15_minutes_without_new_connections() {
    let server = Server::start(&[]);
    let start = Instant::now();
    let mut conn = server.connect();
    conn.roundtrip(b"set alive 0 0 3\r\nyes\r\n", b"STORED\r\n");
    while start.elapsed() < Duration::from_secs(15 * 60) {
        // Elapsed time is the point of this test, not readiness.
        std::thread::sleep(Duration::from_secs(10));
        conn.roundtrip(b"get alive\r\n", b"VALUE alive 0 3\r\nyes\r\nEND\r\n");
    }
}
