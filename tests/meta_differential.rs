//! Differential test of the meta protocol: the same meta requests go to the
//! real memcached 1.6.18 and to ferrocache (two cores, so keys and quiet
//! runs span shards), and the replies must be identical byte for byte, once
//! cas uniques (per-server counters) are masked, except for the documented
//! differences pinned below. Each case is also sent to ferrocache one byte
//! per write, and must give the same reply; and the parser is fed each
//! case cut at every byte.
//!
//! Each case runs on a fresh connection: write, half-close, read to EOF.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{exchange, show, Memcached, Server};
use ferrocache::protocol::{parse, Limits, Parsed};

/// Masks what differs by design: cas uniques (` c123` return flags and
/// `me`'s `cas=123`) and `me`'s `size=` (item sizes are ferrocache's own,
/// see the documented differences). Data blocks are left alone.
fn normalize(reply: &[u8]) -> String {
    let text = String::from_utf8_lossy(reply);
    let mut out = String::new();
    for line in text.split_inclusive("\r\n") {
        let meta_line = ["HD", "VA ", "NS", "EX", "NF", "ME "]
            .iter()
            .any(|p| line.starts_with(p));
        if !meta_line {
            out.push_str(line);
            continue;
        }
        let words: Vec<String> = line
            .trim_end_matches("\r\n")
            .split(' ')
            .map(|w| {
                let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
                if w.len() > 1 && w.starts_with('c') && digits(&w[1..]) {
                    "c<cas>".to_string()
                } else if let Some(v) = w.strip_prefix("cas=").filter(|v| digits(v)) {
                    let _ = v;
                    "cas=<cas>".to_string()
                } else if w.starts_with("size=") && line.starts_with("ME ") {
                    "size=<size>".to_string()
                } else {
                    w.to_string()
                }
            })
            .collect();
        out.push_str(&words.join(" "));
        out.push_str("\r\n");
    }
    out
}

/// (name, request). Keys are unique per case, as both servers keep state.
fn cases() -> Vec<(&'static str, Vec<u8>)> {
    let mut cases: Vec<(&'static str, Vec<u8>)> = vec![
        ("mn", b"mn\r\n".to_vec()),
        ("mn with words", b"mn foo bar\r\n".to_vec()),
        ("mg no key", b"mg\r\n".to_vec()),
        ("md no key", b"md \r\n".to_vec()),
        ("me no key", b"me\r\n".to_vec()),
        ("ma no key", b"ma\r\n".to_vec()),
        ("ms no length", b"ms a1\r\n".to_vec()),
        ("ms bad length", b"ms a2 abc\r\n".to_vec()),
        ("ms negative length", b"ms a3 -1\r\nmn\r\n".to_vec()),
        ("mg miss", b"mg b1 v\r\nmg b1\r\nmg b1 q v\r\nmn\r\n".to_vec()),
        (
            "mg every return flag",
            b"ms c1 3 T0 F5 k O123\r\nbar\r\nmg c1 v f k s t h l O99 c q\r\nmg c1 k v h\r\nmg c1 s t f c k O1 l h\r\n"
                .to_vec(),
        ),
        ("mg hit without flags", b"ms c2 1\r\nx\r\nmg c2\r\nmg c2 q\r\nmg c2 q k\r\n".to_vec()),
        ("mg unknown flag", b"mg d1 zz\r\nmg d1 !\r\nmg d1 E5\r\nmg d1 S5\r\n".to_vec()),
        ("mg duplicate flag", b"mg d2 v v\r\nmg d2 t T30 t\r\n".to_vec()),
        ("mg ignored flags", b"mg d3 P L\r\nmg d3 D5 J1 I C1 F1 Mx\r\n".to_vec()),
        (
            "opaque length",
            b"mg d4 O1234567890123456789012345678901\r\nmg d4 O12345678901234567890123456789012\r\nmg d4 k O12345678901234567890123456789012345\r\nmn\r\n"
                .to_vec(),
        ),
        (
            "an opaque over 32 bytes is checked as memcached checks it, after what the command did",
            b"set op1 0 0 1\r\n5\r\nmd op1 O123456789012345678901234567890123 q\r\nma op1 O123456789012345678901234567890123\r\nget op1\r\nma op2 Ma O123456789012345678901234567890123 T0\r\nms op3 2 ME I Fabc O123456789012345678901234567890123 q\r\nyy\r\nms op4 2 M- O123456789012345678901234567890123 q\r\nyy\r\nms op4 2 O123456789012345678901234567890123\r\nyy\r\nmg op4 v\r\nmg op5 c O123456789012345678901234567890123 h u q N0 f T2592000\r\nprepend op5 0 0 2\r\n18\r\nmg op5 v\r\nma op6 c N100000 k O77\r\nmg op6 O123456789012345678901234567890123\r\nmg op6 R99999999 h\r\nmg op7 N100 O123456789012345678901234567890123 T5\r\nmg op7 t\r\nmg op8 T100 O123456789012345678901234567890123 N5\r\nmg op8 t v\r\nset op9 0 0 1\r\n1\r\nmg op9 h O123456789012345678901234567890123\r\nmg op9 h\r\nma op10 N0 O123456789012345678901234567890123\r\nma op10 v\r\nma op11 O123456789012345678901234567890123 q\r\nmg op12 O123456789012345678901234567890123 q\r\nmd op1 O123456789012345678901234567890123 Mx\r\nmn\r\n"
                .to_vec(),
        ),
        ("bad data chunk", b"ms e1 3\r\nabcde\r\nmg e1 v\r\n".to_vec()),
        ("ms bad mode swallows data", b"ms e2 3 MX\r\nabc\r\nmn\r\n".to_vec()),
        (
            "ms token errors",
            b"ms e3 1 T\r\n1\r\nms e3 1 Tx\r\n1\r\nms e3 1 Fx\r\n1\r\nms e3 1 C\r\n1\r\nms e3 1 F-1\r\n1\r\nms e3 1 Ms\r\n1\r\nms e3 1 M\r\n1\r\nms e3 1 MSS\r\n1\r\nms e3 1 S5\r\n1\r\nmn\r\n"
                .to_vec(),
        ),
        (
            "several bad tokens: the last message set, and a bad F sets none",
            b"ms e5 1 Tx F-1\r\n1\r\nms e5 1 F-1 Tx\r\n1\r\nms e5 1 F-1 MSS Cx\r\n1\r\nms e5 1 Cx MSS F-1\r\n1\r\nma e5 Jx F-1\r\nmn\r\n"
                .to_vec(),
        ),
        (
            "ms flags wrap at 32 bits",
            b"ms e4 1 F4294967297\r\n1\r\nmg e4 f\r\nms e4 1 F4294967296 F5\r\n1\r\nmn\r\n"
                .to_vec(),
        ),
        (
            "ms modes",
            b"ms f1 1 MS q\r\n1\r\nms f1 1 ME\r\n1\r\nms f1 1 ME q\r\n1\r\nms f2 1 MR\r\n1\r\nms f1 1 MA\r\n2\r\nms f1 1 MP\r\n0\r\nmg f1 v\r\nms f3 2 MA\r\nab\r\nms f3 2 MP\r\nab\r\nms f1 1 MR k O7 c\r\n9\r\nmg f1 v\r\n"
                .to_vec(),
        ),
        (
            "ms returns",
            b"ms f4 1 ME k O5 c\r\n1\r\nms f4 1 ME k O5 c\r\n1\r\nms f4 1 c k\r\n2\r\n".to_vec(),
        ),
        (
            "ms cas",
            b"ms g1 1 c\r\n1\r\nmg g1 c v\r\nms g1 1 C999 c\r\n2\r\nms g2 1 C1\r\n1\r\nms g1 2 MA C1\r\ncd\r\nmg g1 v\r\n"
                .to_vec(),
        ),
        ("ms negative ttl", b"ms g3 3 T-1\r\nabc\r\nmg g3 v\r\n".to_vec()),
        (
            "ms ttl",
            b"ms g4 1 T100\r\n1\r\nmg g4 t v\r\nmg g4 T30 t\r\nmg g4 t T60\r\nmg g4 t\r\n".to_vec(),
        ),
        (
            "md",
            b"ms h1 1\r\n1\r\nmd h1 q\r\nmd h1\r\nmd h1 q\r\nmd h1 k O9\r\nms h1 1\r\n1\r\nmd h1 C1\r\nmd h1 x\r\nmn\r\n"
                .to_vec(),
        ),
        (
            "md invalidate then recache",
            b"ms h2 1 T100\r\n1\r\nmd h2 I T5\r\nmg h2 v t\r\nmg h2 t\r\nms h2 1\r\n3\r\nmg h2 v\r\n"
                .to_vec(),
        ),
        (
            "vivify",
            b"mg i1 N30 v t s\r\nmg i1 N30 v\r\nmg i1 v\r\nms i1 2\r\nhi\r\nmg i1 v\r\nmg i2 N-1 v\r\nmg i2 v\r\n"
                .to_vec(),
        ),
        (
            "recache",
            b"mg i3 N30 R30 t\r\nmg i3 t R30\r\nms i4 1 T20\r\n1\r\nmg i4 R30\r\nmg i4 R30\r\nms i5 1 T100\r\n1\r\nmg i5 R30\r\n"
                .to_vec(),
        ),
        (
            "ma",
            b"ma j1\r\nma j1 N0 J10 v\r\nma j1 v D5 MD\r\nma j1 q\r\nma j1 v t\r\nma j1 M+ v\r\nma j1 M- v\r\nma j1 MI v\r\nma j1 Md v\r\n"
                .to_vec(),
        ),
        (
            "ma errors",
            b"ms j2 1\r\nx\r\nma j2\r\nma j3 Mx v\r\nma j3 D-1\r\nma j3 Dx\r\nma j3 Jx\r\nma j3 M\r\nma j3 v v\r\nmn\r\n"
                .to_vec(),
        ),
        (
            "ma flags",
            b"ma j4 N0 J5 D10 v\r\nma j4 D10 v\r\nma j4 MD D100 v\r\nma j4 C1 q\r\nma j4 q k O3\r\nma j5 q k O3\r\nma j4 T10 t v\r\nma j4 v D18446744073709551615\r\nmn\r\n"
                .to_vec(),
        ),
        (
            "ma wraps and floors",
            b"ms j6 20\r\n18446744073709551615\r\nma j6 v\r\nma j6 v MD D5\r\n".to_vec(),
        ),
        // (No arith follows an mg of the same item in one case: memcached
        // rewrites a number in place only while no pending reply holds it.)
        (
            "ma q hides every success but a created item",
            b"ms ma4 3 T0\r\n007\r\nma ma4 v q D0\r\nma ma4 q\r\nma ma4b N0 k q\r\nma ma4c q v J5 N0\r\nma ma4d q\r\nmn\r\n"
                .to_vec(),
        ),
        (
            "ma expiring the item at once still answers c",
            b"ma ma5 N-1 c v\r\nms ma5b 1\r\n5\r\nma ma5b T-1 c v O9\r\nms ma5c 1\r\n5\r\nma ma5c N-1 c\r\nmg ma5 v\r\nmg ma5b v\r\nmg ma5c v\r\n"
                .to_vec(),
        ),
        (
            "C0 is no cas in ma and ms append and prepend",
            b"ms ma6 1\r\n5\r\nma ma6 C0 v\r\nms ma6 1 MA C0\r\n6\r\nms ma6 1 MP C0 q\r\n0\r\nmg ma6 v\r\nms ma6 1 MA C1\r\n7\r\nmn\r\n"
                .to_vec(),
        ),
        (
            "ma on an empty value: non-numeric before the cas",
            b"ms ma7 0\r\n\r\nma ma7 C987654321987654 v k\r\nms ma7b 1\r\nx\r\nma ma7b C987654321987654 v k\r\n"
                .to_vec(),
        ),
        (
            "ma and incr in place keep the stale mark",
            b"ma ma8 v N0\r\nmd ma8 q I\r\nma ma8 q J18446744073709551615\r\nincr ma8 1\r\nmg ma8 c q R300000\r\nmg ma8 v\r\nma ma8b N0\r\nmd ma8b q I\r\nincr ma8b 10\r\nmg ma8b v\r\n"
                .to_vec(),
        ),
        (
            "ma T does not mark the item hit",
            b"ms ma9 1\r\n1\r\nma ma9 T100000\r\nmg ma9 h t\r\nmg ma9 h\r\n".to_vec(),
        ),
        (
            "ma applies N and T and shows t in request order",
            b"ma ma10 t N100000\r\nma ma10 t T2592000 v\r\nma ma10 t\r\nma ma10b N100 T200 t\r\nma ma10c T200 N100 t\r\nma ma10d T-1 N0 v\r\nmg ma10b t\r\nmg ma10c t\r\nmg ma10d v\r\n"
                .to_vec(),
        ),
        (
            "ma T on a number that outgrows its value",
            b"ms ma11 1\r\n9\r\nma ma11 T100 t\r\nmg ma11 t v\r\n".to_vec(),
        ),
        (
            "me",
            b"me k1\r\nms k1 2\r\nhi\r\nme k1\r\nmg k1\r\nme k1\r\nme k1 b\r\nme k1 x y\r\n".to_vec(),
        ),
        (
            "me of an item with a ttl: memcached prints current_time - exptime",
            b"ms me2 2 T100\r\nhi\r\nme me2\r\nmg me2 t\r\n".to_vec(),
        ),
        (
            "mg applies T, N and R, and shows t, in the order they came",
            b"mg fo1 q k t f N500000\r\nmg fo2 T100000 N2592000 h t\r\nmg fo3 T0 N-1 f\r\nget fo3\r\nmg fo4 T1000000000 N0\r\nmg fo4 t\r\nset fo5 0 500000 1\r\nx\r\nmg fo5 R300000 T1000000000 h\r\nset fo6 0 500000 1\r\nx\r\nmg fo6 T100 R300000 h\r\nmn\r\n"
                .to_vec(),
        ),
        (
            "a key shows as the item was stored: only ms with b marks it binary",
            b"mg azI= b N100 k v\r\nmg k2 k v\r\nmg azI= b k v\r\nms azM= 1 b k\r\nx\r\nmg k3 k\r\nms azM= 1 b k MA\r\ny\r\nmg k3 k v\r\nms azQ= 1 b\r\nx\r\nms k4 1 MA\r\ny\r\nmg k4 k\r\nmg azQ= b k\r\nmg azU= b k q\r\nmn\r\n"
                .to_vec(),
        ),
        (
            "me prints the key as stored: base64 only for an item stored with b",
            b"set mekey 0 0 1\r\nx\r\nme bWVrZXk= b\r\nme mekey\r\nms bWVrZXk= 1 b\r\ny\r\nme mekey\r\nme bWVrZXk= b\r\n"
                .to_vec(),
        ),
        (
            "a line of 20 words or more is refused before its flags",
            [
                &b"set a 0 0 1\r\nx\r\nmg a v v v v v v v v v v v v v v v v v\r\n"[..],
                b"mg a v v v v v v v v v v v v v v v v v v\r\n",
                b"mg a v k c f h l t s O1 T1 N1 R1 E1 u x x x x\r\n",
                b"ms a 1 T1 T1 T1 T1 T1 T1 T1 T1 T1 T1 T1 T1 T1 T1 T1 T1\r\nx\r\n",
                b"ms a 1 T1 T1 T1 T1 T1 T1 T1 T1 T1 T1 T1 T1 T1 T1 T1 T1 T1\r\nx\r\n",
                b"md a q q q q q q q q q q q q q q q q q q\r\n",
                b"ma a q q q q q q q q q q q q q q q q q q q q q q q q q\r\nmn\r\n",
            ]
            .concat(),
        ),
        (
            "numbers in flags as memcached's safe_strto* read them",
            b"set n 0 0 1\r\n5\r\nmg n C-0 v\r\nms n 1 C-0\r\nx\r\nma n D-0\r\nma n J-0 N0\r\nms n 1 F-0\r\ny\r\nmg n f v\r\nms k -0\r\n\r\nmg k v\r\nms k2 +2\r\nab\r\nmg k2 v\r\nmg n T-0 t\r\nmg n N-5 v\r\nms n 1 T5\t\r\nz\r\nma n D-18446744073709551615 v\r\nmg n Cx v\r\nmn\r\nms k 4294967297\r\nx\r\nmg k v\r\nms k -18446744073709551615\r\nx\r\nms k -4294967295\r\ny\r\nmg k v\r\nmn\r\n"
                .to_vec(),
        ),
        (
            "base64 keys",
            b"ms Zm9vMQ== 3 b k\r\nbar\r\nmg Zm9vMQ== b k v\r\nmg foo1 k v\r\nmg foo1 q k\r\nme Zm9vMQ== b\r\nmd Zm9vMQ== b k q\r\nmg foo1\r\n"
                .to_vec(),
        ),
        (
            "bad base64 keys",
            b"mg k2 b\r\nmg ==== b\r\nmg Zg== b v\r\nmd Zm9v= b\r\nma Zm9v= b\r\nms foo 3 b\r\nbar\r\nmn\r\n"
                .to_vec(),
        ),
        (
            // memcached decodes the key at the `b` token's place: a later
            // bad token's message wins, an earlier one's loses, and the
            // modes are checked after.
            "a key that does not decode among other errors",
            b"mg A=== Tx b v\r\nmg A=== b Tx v\r\nmg A=== b Fx\r\nmg A=== Fx b\r\nmg A=== b Mxy\r\nmg A=== b b\r\nms A=== 1 MZ b\r\nx\r\nms A=== 1 b MZ\r\nx\r\nms A=== 1 b Tx\r\nx\r\nms A=== 1 Cx b\r\nx\r\nma A=== MZ b\r\nma A=== b Dx\r\nmd A=== b Tx\r\nmn\r\n"
                .to_vec(),
        ),
        (
            "base64 padding and trailing bits",
            b"ms Zg== 1 b\r\nx\r\nmg Zh== b k v\r\nmg Zg b v\r\nmg Z=g= b v\r\nmg Zm8 b\r\nmg Zm9=vv== b\r\nmg AA== b k v\r\nmg Zg*== b k v\r\nmg Z.g.=.= b v\r\nmg A=== b\r\nmg Zg==Zg== b k v\r\nmn\r\n"
                .to_vec(),
        ),
        ("extra spaces", b"mg  l1  v\r\nms  l1  1  T0\r\n1\r\nmg l1 v \r\n".to_vec()),
        (
            "classic and meta mixed",
            b"set l2 0 0 1\r\n1\r\nmg l2 s v f\r\nincr l2 1\r\nmg l2 v\r\nms l2 2 F3\r\nab\r\nget l2\r\n".to_vec(),
        ),
        ("key too long", {
            let mut v = b"mg ".to_vec();
            v.extend(std::iter::repeat_n(b'k', 251));
            v.extend_from_slice(b" v\r\nmn\r\n");
            v
        }),
        ("ms too large", {
            let mut v = b"ms big1 2000000\r\n".to_vec();
            v.extend(std::iter::repeat_n(b'x', 2_000_000));
            v.extend_from_slice(b"\r\nmg big1 v\r\nmn\r\n");
            v
        }),
        // Too large, its line's own errors first (the old item stays), and
        // with `b` the decoded key's item deleted, not the token's.
        ("ms too large, after its flags", {
            let mut v = Vec::new();
            for line in [
                "ms Zm9v 2000000 b",
                "ms Zm9v 2000000 b T5 ME",
                "ms Zm9v 2000000 b Tx",
                "ms foo 2000000 MZ",
                "ms foo 2000000 zz",
                "ms A=== 2000000 b",
                "ms foo 2000000 q O123 k",
            ] {
                v.extend_from_slice(b"ms foo 1\r\na\r\nms Zm9v 1\r\nb\r\n");
                v.extend_from_slice(line.as_bytes());
                v.extend_from_slice(b"\r\n");
                v.extend(std::iter::repeat_n(b'x', 2_000_000));
                v.extend_from_slice(b"\r\nmg foo v\r\nmg Zm9v v\r\nmn\r\n");
            }
            v
        }),
    ];
    // A quiet run over many keys (two shards on ferrocache), ending in mn.
    let mut quiet = Vec::new();
    for i in 0..40 {
        if i % 3 == 0 {
            quiet.extend_from_slice(format!("ms q{i} 2 q T0\r\nv{}\r\n", i % 10).as_bytes());
        }
    }
    for i in 0..40 {
        quiet.extend_from_slice(format!("mg q{i} v k q O{i}\r\n").as_bytes());
    }
    quiet.extend_from_slice(b"mn\r\n");
    for i in 0..40 {
        quiet.extend_from_slice(format!("md q{i} q\r\n").as_bytes());
    }
    quiet.extend_from_slice(b"mn\r\n");
    cases.push(("quiet run across shards", quiet));
    cases
}

#[test]
fn meta_same_bytes_as_memcached() {
    let Some(memcached) = Memcached::start("meta_differential") else {
        return;
    };
    let ferrocache = Server::start(&[]);
    let mut failures = Vec::new();
    for (name, request) in cases() {
        let want = normalize(&exchange(memcached.addr, &request, usize::MAX));
        let got = normalize(&exchange(ferrocache.addr, &request, usize::MAX));
        if want != got {
            failures.push(format!(
                "{name}: request {:?}\n  memcached:  {want:?}\n  ferrocache: {got:?}",
                show(&request)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} cases differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Every case again, one byte per write (each case's own keys: the first
/// pass's items would change the replies, so keys get a prefix).
#[test]
fn meta_split_writes_same_bytes() {
    let Some(memcached) = Memcached::start("meta_differential") else {
        return;
    };
    let ferrocache = Server::start(&[]);
    for (name, request) in cases() {
        if request.len() > 10_000 {
            continue; // the 2 MB case a byte at a time would take minutes
        }
        let want = normalize(&exchange(memcached.addr, &request, usize::MAX));
        let got = normalize(&exchange(ferrocache.addr, &request, 1));
        assert_eq!(got, want, "{name}, one byte per write");
        // Both servers hold the case's items now: clear them for the next.
        exchange(memcached.addr, b"flush_all\r\n", usize::MAX);
        exchange(ferrocache.addr, b"flush_all\r\n", usize::MAX);
    }
}

/// The parser, fed each case cut at every byte, says Incomplete or gives
/// exactly the requests the whole buffer gives, never an error a whole
/// buffer would not give.
#[test]
fn meta_parse_at_every_split() {
    let limits = Limits {
        max_item_size: 1024 * 1024,
    };
    fn run(buf: &[u8], limits: &Limits) -> (Vec<String>, usize) {
        let mut pos = 0;
        let mut seen = Vec::new();
        loop {
            match parse(&buf[pos..], limits) {
                Parsed::Incomplete => return (seen, pos),
                Parsed::Request { request, consumed } => {
                    seen.push(format!("{request:?}"));
                    pos += consumed;
                }
                Parsed::Invalid {
                    error, consumed, ..
                } => {
                    seen.push(format!("{error:?}"));
                    pos += consumed;
                }
                Parsed::Close(e) => {
                    seen.push(format!("close {e:?}"));
                    return (seen, buf.len());
                }
                Parsed::HangUp => {
                    seen.push("hang up".to_owned());
                    return (seen, buf.len());
                }
            }
        }
    }
    for (name, request) in cases() {
        if request.len() > 10_000 {
            continue;
        }
        let (whole, _) = run(&request, &limits);
        for cut in 0..request.len() {
            let (first, pos) = run(&request[..cut], &limits);
            assert_eq!(first[..], whole[..first.len()], "{name} cut at {cut}");
            let (rest, _) = run(&request[pos..], &limits);
            let joined: Vec<String> = first.into_iter().chain(rest).collect();
            assert_eq!(joined, whole, "{name} cut at {cut}");
        }
    }
}

/// Differences kept on purpose (listed in docs/META.md); both sides pinned.
#[test]
fn meta_documented_differences_hold() {
    let Some(memcached) = Memcached::start("meta_differential") else {
        return;
    };
    let ferrocache = Server::start(&[]);
    let request = b"ms z1 2\r\nhi\r\nme z1\r\n";
    let want = exchange(memcached.addr, request, usize::MAX);
    let got = exchange(ferrocache.addr, request, usize::MAX);
    // memcached's item size counts its 48-byte item header and slab
    // rounding; ferrocache's counts its own header (12 bytes), key and value.
    assert!(
        show(&want).ends_with("cls=1 size=63\r\n"),
        "{}",
        show(&want)
    );
    assert!(show(&got).ends_with("cls=1 size=16\r\n"), "{}", show(&got));
    // `ms I C<cas>` stores over a stale item when the cas is older than the
    // item's. memcached compares the numbers, so any small number is
    // "older"; ferrocache's uniques are sealed (they reveal nothing about
    // other tenants' writes), so only a unique it gave out before counts.
    let request = b"ms h3 1 T100\r\n1\r\nmd h3 I\r\nms h3 1 I C1 T50 F7\r\n2\r\nmg h3 t v f\r\n";
    assert_eq!(
        show(&exchange(memcached.addr, request, usize::MAX)),
        show(b"HD\r\nHD\r\nHD\r\nVA 1 t100 f7 X W\r\n2\r\n")
    );
    assert_eq!(
        show(&exchange(ferrocache.addr, request, usize::MAX)),
        show(b"HD\r\nHD\r\nEX\r\nVA 1 t100 f0 X W\r\n1\r\n")
    );
    // The same with the unique the client read before the invalidation.
    let first = exchange(ferrocache.addr, b"ms h4 1 T100 c\r\n1\r\n", usize::MAX);
    let first = String::from_utf8(first).unwrap();
    let unique = first.trim_end().strip_prefix("HD c").expect("HD c<cas>");
    let request = format!("md h4 I\r\nms h4 1 I C{unique} T50 F7\r\n2\r\nmg h4 t v f\r\n");
    assert_eq!(
        show(&exchange(ferrocache.addr, request.as_bytes(), usize::MAX)),
        show(b"HD\r\nHD\r\nVA 1 t100 f7 X W\r\n2\r\n")
    );
    // A control byte in a key: memcached stores it, ferrocache refuses it,
    // as for the classic commands.
    let request = b"mg k\x01 v\r\n";
    assert_eq!(exchange(memcached.addr, request, usize::MAX), b"EN\r\n");
    assert_eq!(
        exchange(ferrocache.addr, request, usize::MAX),
        b"CLIENT_ERROR bad command line format\r\n"
    );
}

/// `h` and `l` report the item as it was before the request: the first
/// fetch marks it hit, later fetches move its last access (memcached's
/// segmented LRU). Needs the clock to move: one 2.2 s wait, both servers
/// at once.
/// `stats`' arithmetic counters after the same `ma`, `incr` and `decr`
/// requests, on a fresh server each: memcached counts a change as a hit and
/// a missing item as a miss, and an item `N` created or a cas mismatch as
/// neither.
#[test]
fn meta_arith_counted_as_memcached() {
    let Some(memcached) = Memcached::start("meta_differential") else {
        return;
    };
    let ferrocache = Server::start(&[]);
    let request = b"ma c1 N0\r\nma c1\r\nma c2\r\nma c3 N5 MD\r\nma c3 MD\r\nma c3 C1 MD\r\n\
        set c4 0 0 1\r\n5\r\nincr c4 1\r\ndecr c4 1\r\nincr c5 1\r\ndecr c5 1\r\nma c2 MD\r\n\
        ma c6 q N0\r\nma c6 C1\r\nstats\r\n";
    let counters = |addr| {
        let reply = exchange(addr, request, usize::MAX);
        String::from_utf8_lossy(&reply)
            .lines()
            .filter(|l| {
                ["incr_", "decr_"]
                    .iter()
                    .any(|p| l.starts_with(&format!("STAT {p}")))
            })
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let want = counters(memcached.addr);
    assert_eq!(want.len(), 4, "{want:?}");
    assert_eq!(counters(ferrocache.addr), want);
}

#[test]
fn meta_hit_and_last_access_as_memcached() {
    let Some(memcached) = Memcached::start("meta_differential") else {
        return;
    };
    let ferrocache = Server::start(&[]);
    let mut conns: Vec<TcpStream> = [memcached.addr, ferrocache.addr]
        .iter()
        .map(|&a| {
            let s = TcpStream::connect(a).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s
        })
        .collect();
    let read = |s: &mut TcpStream, want: usize| {
        let mut got = vec![0; want];
        s.read_exact(&mut got).unwrap();
        String::from_utf8(got).unwrap()
    };
    for s in &mut conns {
        s.write_all(b"ms la1 1\r\n1\r\nset la2 0 0 1\r\n2\r\n")
            .unwrap();
        assert_eq!(read(s, 12), "HD\r\nSTORED\r\n");
    }
    std::thread::sleep(Duration::from_millis(2200));
    // One request at a time: memcached moves the access time of an item in
    // its cold LRU asynchronously, so a pipelined next request may not see it.
    // la2's first fetch is a classic get: it counts the same.
    let steps: [(&[u8], &str); 5] = [
        (b"mg la1 l h\r\n", "HD l2 h0\r\n"),
        (b"mg la1 l h\r\n", "HD l2 h1\r\n"),
        (b"mg la1 l h t\r\n", "HD l0 h1 t-1\r\n"),
        (b"get la2\r\n", "VALUE la2 0 1\r\n2\r\nEND\r\n"),
        (b"mg la2 h l\r\n", "HD h1 l2\r\n"),
    ];
    for (request, want) in steps {
        for (i, s) in conns.iter_mut().enumerate() {
            s.write_all(request).unwrap();
            let got = read(s, want.len());
            if i == 0 {
                // Give memcached's LRU thread its moment before the next step.
                std::thread::sleep(Duration::from_millis(100));
            }
            // Seconds tick on each server's own phase: an l of 2 s or more
            // reads as lN.
            let coarse = |r: &str| {
                r.split(' ')
                    .map(
                        |w| match w.strip_prefix('l').map(|n| n.trim_end().parse::<u32>()) {
                            Some(Ok(n)) if n >= 2 => format!("lN{}", &w[1 + n.to_string().len()..]),
                            _ => w.to_string(),
                        },
                    )
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            // memcached applies that bump from its LRU thread, so under
            // load it may land after the next request: either is memcached.
            if i == 0 && coarse(&got) == coarse(&want.replace(" l0 ", " l2 ")) {
                continue;
            }
            assert_eq!(
                coarse(&got),
                coarse(want),
                "server {i}, {:?}",
                String::from_utf8_lossy(request)
            );
        }
    }
}
