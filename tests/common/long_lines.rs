//! Command lines longer than 2048 bytes, and what memcached 1.6.18 answers
//! to each when the line arrives whole (one write): the table shared by
//! tests/long_lines.rs (ferrocache's exact bytes) and tests/differential.rs
//! (the same inputs against the real memcached).
//!
//! memcached processes any line whose newline is in its 16 KiB read buffer,
//! however long; it closes only when more than 2048 bytes have no newline
//! (a `get`/`gets` line excepted), so a whole line over 16 KiB closes.

/// How a case leaves the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// Still open: a following `mn` answers `MN`.
    Open,
    /// Closed. memcached says nothing; ferrocache first says
    /// `CLIENT_ERROR line too long` (a documented difference).
    Closed,
    /// Closed without a word by both (an HTTP request line).
    HangUp,
}

pub struct LongLine {
    pub name: &'static str,
    pub request: Vec<u8>,
    /// memcached 1.6.18's reply, byte for byte.
    pub reply: Vec<u8>,
    pub end: End,
}

pub const LINE_TOO_LONG: &[u8] = b"CLIENT_ERROR line too long\r\n";
const BAD_LINE: &[u8] = b"CLIENT_ERROR bad command line format\r\n";

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn open(name: &'static str, request: Vec<u8>, reply: Vec<u8>) -> LongLine {
    LongLine {
        name,
        request,
        reply,
        end: End::Open,
    }
}

pub fn cases() -> Vec<LongLine> {
    let key = "k".repeat(2100);
    let key = key.as_bytes();
    let spaces = " ".repeat(3000);
    let spaces = spaces.as_bytes();
    let mut gat_reply = b"STORED\r\n".to_vec();
    for _ in 0..1000 {
        gat_reply.extend_from_slice(b"VALUE llg 0 1\r\na\r\n");
    }
    gat_reply.extend_from_slice(b"END\r\n");
    let mut get_reply = Vec::new();
    for _ in 0..9000 {
        get_reply.extend_from_slice(b"VALUE llg 0 1\r\na\r\n");
    }
    get_reply.extend_from_slice(b"END\r\n");
    let mut too_large = cat(&[b"set llbig", spaces, b"0 0 2000000\r\n"]);
    too_large.extend(std::iter::repeat_n(b'z', 2_000_000));
    too_large.extend_from_slice(b"\r\n");

    vec![
        // A key over 250 bytes: refused, and (as for any bad storage line)
        // the data block is read as a command.
        open(
            "set with a 2100-byte key",
            cat(&[b"set ", key, b" 0 0 1\r\na\r\n"]),
            cat(&[BAD_LINE, b"ERROR\r\n"]),
        ),
        open(
            "set with a 2100-byte key, noreply",
            cat(&[b"set ", key, b" 0 0 1 noreply\r\na\r\n"]),
            b"ERROR\r\n".to_vec(),
        ),
        open(
            "set with a 2100-byte key and a length past the item size",
            cat(&[b"set ", key, b" 0 0 100000\r\n"]),
            BAD_LINE.to_vec(),
        ),
        open(
            "cas with a 2100-byte key",
            cat(&[b"cas ", key, b" 0 0 1 1\r\na\r\n"]),
            cat(&[BAD_LINE, b"ERROR\r\n"]),
        ),
        open(
            "delete with a 2100-byte key",
            cat(&[b"delete ", key, b"\r\n"]),
            BAD_LINE.to_vec(),
        ),
        open(
            "incr with a 2100-byte key",
            cat(&[b"incr ", key, b" 1\r\n"]),
            BAD_LINE.to_vec(),
        ),
        open(
            "touch with a 2100-byte key",
            cat(&[b"touch ", key, b" 1\r\n"]),
            BAD_LINE.to_vec(),
        ),
        open(
            "verbosity with a 2100-byte level",
            cat(&[b"verbosity ", key, b"\r\n"]),
            BAD_LINE.to_vec(),
        ),
        open(
            "flush_all with a 2100-byte delay",
            cat(&[b"flush_all ", key, b"\r\n"]),
            b"CLIENT_ERROR invalid exptime argument\r\n".to_vec(),
        ),
        // Runs of spaces are one separator, however long the line.
        open(
            "set with 3000 spaces, then get",
            cat(&[b"set llk", spaces, b"0 0 1\r\na\r\nget llk\r\n"]),
            b"STORED\r\nVALUE llk 0 1\r\na\r\nEND\r\n".to_vec(),
        ),
        open(
            "set with 3000 spaces, too large: its data is swallowed",
            too_large,
            b"SERVER_ERROR object too large for cache\r\n".to_vec(),
        ),
        open(
            "set with 1500 extra words",
            cat(&[b"set llk 0 0 1", &b" a".repeat(1500), b"\r\nx\r\n"]),
            b"ERROR\r\nERROR\r\n".to_vec(),
        ),
        open(
            "incr with 3000 spaces",
            cat(&[b"set lln 0 0 1\r\n1\r\nincr lln", spaces, b"5\r\n"]),
            b"STORED\r\n6\r\n".to_vec(),
        ),
        open(
            "unknown command of 3000 bytes",
            cat(&[&[b'x'; 3000], b"\r\n"]),
            b"ERROR\r\n".to_vec(),
        ),
        open(
            "mn followed by 3000 bytes is an unknown command",
            cat(&[b"mn", &[b'x'; 3000], b"\r\n"]),
            b"ERROR\r\n".to_vec(),
        ),
        open(
            "mn with 3000 spaces",
            cat(&[b"mn", spaces, b"\r\n"]),
            b"MN\r\n".to_vec(),
        ),
        open(
            "mn with 1500 words",
            cat(&[b"mn", &b" x".repeat(1500), b"\r\n"]),
            b"MN\r\n".to_vec(),
        ),
        open(
            "mg with 1200 flags",
            cat(&[b"mg k", &b" v".repeat(1200), b"\r\n"]),
            b"CLIENT_ERROR options flags are too long\r\n".to_vec(),
        ),
        open(
            "mg with a 2100-byte key",
            cat(&[b"mg ", key, b" v\r\n"]),
            BAD_LINE.to_vec(),
        ),
        open(
            "ms and mg with 3000 spaces",
            cat(&[b"ms llm", spaces, b"1 T0\r\na\r\nmg llm", spaces, b"v\r\n"]),
            b"HD\r\nVA 1\r\na\r\n".to_vec(),
        ),
        // Refused before its length is used: its data block is a command.
        open(
            "ms with 700 flags",
            cat(&[b"ms k 1", &b" T1".repeat(700), b"\r\na\r\n"]),
            b"CLIENT_ERROR options flags too long\r\nERROR\r\n".to_vec(),
        ),
        open(
            "ms with a 2100-byte key",
            cat(&[b"ms ", key, b" 1\r\na\r\n"]),
            cat(&[BAD_LINE, b"ERROR\r\n"]),
        ),
        open(
            "ma with 1000 flags",
            cat(&[b"ma k", &b" N0".repeat(1000), b"\r\n"]),
            b"CLIENT_ERROR options flags too long\r\n".to_vec(),
        ),
        open(
            "md with 1100 flags",
            cat(&[b"md k", &b" q".repeat(1100), b"\r\n"]),
            b"CLIENT_ERROR options flags too long\r\n".to_vec(),
        ),
        open(
            "md with a 2100-byte key",
            cat(&[b"md ", key, b"\r\n"]),
            BAD_LINE.to_vec(),
        ),
        open(
            "ma with a 2100-byte key",
            cat(&[b"ma ", key, b"\r\n"]),
            BAD_LINE.to_vec(),
        ),
        open(
            "gat of 1000 keys (4 KB)",
            cat(&[
                b"set llg 0 0 1\r\na\r\ngat 0",
                &b" llg".repeat(1000),
                b"\r\n",
            ]),
            gat_reply,
        ),
        open(
            "get of 9000 keys (36 KB) grows past 16 KiB",
            cat(&[b"get", &b" llg".repeat(9000), b"\r\n"]),
            get_reply,
        ),
        open(
            "16384-byte line through its newline",
            cat(&[&[b'x'; 16382], b"\r\n"]),
            b"ERROR\r\n".to_vec(),
        ),
        open(
            "16384-byte line ending in a bare newline",
            cat(&[&[b'x'; 16383], b"\n"]),
            b"ERROR\r\n".to_vec(),
        ),
        LongLine {
            name: "16385-byte line: its newline is past the read buffer",
            request: cat(&[&[b'x'; 16383], b"\r\n"]),
            reply: Vec::new(),
            end: End::Closed,
        },
        LongLine {
            name: "gat over 16 KiB: only get and gets may grow",
            request: cat(&[b"gat 0", &b" llg".repeat(5000), b"\r\n"]),
            reply: Vec::new(),
            end: End::Closed,
        },
        LongLine {
            name: "3000-byte line with no newline",
            request: vec![b's'; 3000],
            reply: Vec::new(),
            end: End::Closed,
        },
        LongLine {
            name: "HTTP request line of 2100 bytes",
            request: cat(&[b"GET /", key, b" HTTP/1.1\r\n"]),
            reply: Vec::new(),
            end: End::HangUp,
        },
    ]
}
