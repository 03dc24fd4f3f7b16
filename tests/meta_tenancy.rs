//! The IronCache handshake in meta form (`ms oauth <len>` with `TOKEN
//! PROJECT_ID CACHE_NAME`), and meta commands before it, in secure mode
//! (`--tokens FILE`) and open mode.

mod common;

use common::{Conn, GrantsFile, Server};

const VERSION: &[u8] = b"VERSION 1.6.18-ferrocache-0.1.0\r\n";
const REQUIRED: &[u8] = b"CLIENT_ERROR authentication required\r\n";
const FAILED: &[u8] = b"CLIENT_ERROR authentication failed\r\n";
const BAD_FORMAT: &[u8] = b"CLIENT_ERROR bad authentication token format\r\n";

fn ms_oauth(value: &str, flags: &str) -> Vec<u8> {
    format!("ms oauth {}{flags}\r\n{value}\r\n", value.len()).into_bytes()
}

fn bound(server: &Server, value: &str) -> Conn {
    let mut conn = server.connect();
    conn.roundtrip(&ms_oauth(value, ""), b"HD\r\n");
    conn
}

#[test]
fn meta_handshake_in_secure_mode() {
    let tokens = GrantsFile::new("tokA projA\ntokB projB\n");
    let server = Server::start(&["--tokens", tokens.arg()]);
    let mut c = server.connect();
    let table: &[(&[u8], &[u8])] = &[
        (b"mg a v\r\n", REQUIRED),
        // Quiet does not silence an error.
        (b"mg a v q\r\n", REQUIRED),
        (b"md a q\r\n", REQUIRED),
        (b"ma a\r\n", REQUIRED),
        (b"me a\r\n", REQUIRED),
        (b"mn\r\n", REQUIRED),
        // A storage command's data block is swallowed: the next line parses
        // (two refusals: the ms, then the mn after its data).
        (b"ms a 4\r\nmg a\r\nmn\r\n", &[REQUIRED, REQUIRED].concat()),
        (b"version\r\n", VERSION),
        // A base64 `oauth` key is an ordinary key, refused.
        (b"ms b2F1dGg= 13 b\r\ntokA projA c1\r\n", REQUIRED),
    ];
    for (request, expected) in table {
        c.roundtrip(request, expected);
    }
    c.roundtrip(&ms_oauth("nope projA c1", ""), FAILED);
    c.roundtrip(&ms_oauth("tokB projA c1", ""), FAILED);
    // Errors are answered even with q, as a meta client reads them.
    c.roundtrip(&ms_oauth("tokA projA", " q"), BAD_FORMAT);
    c.roundtrip(&ms_oauth("tokA projA c1 x", ""), BAD_FORMAT);
    c.roundtrip(b"mg a v\r\n", REQUIRED);
    // Success answers HD (with the return flags asked for, as Dalli and
    // opaque-matching clients read them); with q, nothing.
    c.roundtrip(&ms_oauth("tokA projA c1", " T0 F0"), b"HD\r\n");
    let mut flagged = server.connect();
    flagged.roundtrip(
        &ms_oauth("tokA projA c1", " c k O77 F0"),
        b"HD c0 koauth O77\r\n",
    );
    c.roundtrip(b"ms a 2 T0\r\nc1\r\nmg a v\r\n", b"HD\r\nVA 2\r\nc1\r\n");

    let mut quiet = server.connect();
    quiet.send(&ms_oauth("tokA projA c2", " q"));
    quiet.roundtrip(b"mg a v\r\nmn\r\n", b"EN\r\nMN\r\n");
    quiet.roundtrip(b"ms a 2\r\nc2\r\nmg a v\r\n", b"HD\r\nVA 2\r\nc2\r\n");

    // Two caches see their own values; the same cache on a new connection
    // sees what the first stored, over either handshake.
    let mut c1 = bound(&server, "tokA projA c1");
    c1.roundtrip(b"mg a v\r\n", b"VA 2\r\nc1\r\n");
    let mut classic = server.connect();
    classic.roundtrip(b"set oauth 0 0 13\r\ntokA projA c2\r\n", b"STORED\r\n");
    classic.roundtrip(b"get a\r\n", b"VALUE a 0 2\r\nc2\r\nEND\r\n");
    let mut b = bound(&server, "tokB projB c1");
    b.roundtrip(b"mg a v\r\nmn\r\n", b"EN\r\nMN\r\n");
}

#[test]
fn meta_handshake_in_open_mode() {
    let server = Server::start(&[]);
    let mut a = bound(&server, "any projX cache1");
    a.roundtrip(b"ms k 1\r\n1\r\n", b"HD\r\n");
    let mut b = bound(&server, "any projX cache2");
    b.roundtrip(b"mg k v\r\n", b"EN\r\n");
    // Without a handshake: the default namespace, and `ms oauth` after the
    // first keyed command is an ordinary store.
    let mut d = server.connect();
    d.roundtrip(b"mg k v\r\n", b"EN\r\n");
    d.roundtrip(&ms_oauth("any projX cache1", ""), b"HD\r\n");
    d.roundtrip(b"mg k v\r\n", b"EN\r\n");
    d.roundtrip(b"mg oauth v\r\n", b"VA 16\r\nany projX cache1\r\n");
}
