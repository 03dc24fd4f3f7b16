//! The invariants the fuzz targets check, beyond "it did not panic".
//!
//! Shared by the cargo-fuzz targets (`fuzz_targets/`) and by
//! `tests/fuzz_regressions.rs`, which includes this file by path so every
//! saved crash input is replayed by a plain `cargo test`. So it may use only
//! `ferrocache` and `std`.
//!
//! - [`check_parse`]: bytes through `protocol::parse`, request after request
//!   (and each request's own bytes again, as a shard's forwarded batch).
//! - [`check_connection`]: a whole client stream executed on a `Shard`,
//!   every reply compared with a small model of the store.

use std::collections::HashMap;

use ferrocache::clock::Clock;
use ferrocache::keyspace::KeyHasher;
use ferrocache::protocol::parse::{valid_key, MAX_LINE, MAX_RETRIEVAL_LINE};
use ferrocache::protocol::{
    parse, ArithKind, ErrorReply, GetKind, Keyed, Limits, MetaCommand, Parsed, Request, Storage,
    StoreKind,
};
use ferrocache::shard::Shard;
use ferrocache::tenancy::Namespaces;

/// Small, so short inputs reach "object too large".
pub const MAX_ITEM_SIZE: usize = 512;
const LIMITS: Limits = Limits {
    max_item_size: MAX_ITEM_SIZE,
};

/// The errors a parser may answer with (the rest belong to auth and transport).
const PARSE_ERRORS: [ErrorReply; 21] = [
    ErrorReply::Error,
    ErrorReply::BadCommandLine,
    ErrorReply::BadDataChunk,
    ErrorReply::InvalidExptime,
    ErrorReply::InvalidDelta,
    ErrorReply::DeleteUsage,
    ErrorReply::LineTooLong,
    ErrorReply::ShutdownDisabled,
    // The meta commands' own.
    ErrorReply::MetaInvalidFlag,
    ErrorReply::MetaDuplicateFlag,
    ErrorReply::MetaBadToken,
    ErrorReply::MetaOpaqueTooLong,
    ErrorReply::MetaModeLength,
    ErrorReply::MetaSetMode,
    ErrorReply::MetaArithMode,
    ErrorReply::MetaInvalidOrDuplicateFlag,
    ErrorReply::MetaDecodingKey,
    ErrorReply::MetaBadDelta,
    ErrorReply::MetaBadInitial,
    ErrorReply::MetaFlagsAreTooLong,
    ErrorReply::MetaFlagsTooLong,
];

const STORAGE_VERBS: [&[u8]; 6] = [b"set", b"add", b"replace", b"append", b"prepend", b"cas"];

/// Parses `data` request after request, as a connection would, and checks:
/// `consumed` is in 1..=remaining; every key is valid (1 to 250 bytes, no
/// space or control byte); a stored value is exactly as long as declared and
/// followed by "\r\n"; `encode` of a request parses back to the same request;
/// and a request cut short anywhere is `Incomplete`, not something else.
pub fn check_parse(data: &[u8]) {
    let mut rest = data;
    while !rest.is_empty() {
        match parse(rest, &LIMITS) {
            Parsed::Incomplete => {
                check_incomplete(rest);
                return;
            }
            // An HTTP request line: memcached hangs up on it too.
            Parsed::HangUp => return,
            Parsed::Close(error) => {
                assert_eq!(error, ErrorReply::LineTooLong);
                let line = rest.split(|&b| b == b'\n').next().unwrap();
                assert!(line.len() > MAX_LINE, "closed on a short line: {line:?}");
                return;
            }
            Parsed::Invalid {
                error,
                consumed,
                swallow,
                ..
            } => {
                check_consumed(rest, consumed);
                assert!(PARSE_ERRORS.contains(&error), "parser answered {error:?}");
                assert_ne!(error, ErrorReply::LineTooLong, "LineTooLong must close");
                if words(rest).first() == Some(&&b"ms"[..])
                    && (consumed != line_len(rest) || swallow > 0)
                {
                    // A meta set refused after its length swallows its data
                    // block as it comes; a bad chunk is refused once it is
                    // buffered.
                    assert_eq!(consumed + swallow, line_len(rest) + declared_len(rest) + 2);
                    if error == ErrorReply::BadDataChunk {
                        assert_eq!(swallow, 0, "a bad chunk is buffered");
                    } else {
                        assert_eq!(consumed, line_len(rest), "the line is answered at once");
                    }
                } else {
                    assert_eq!(swallow, 0, "only a meta set swallows");
                    if error != ErrorReply::BadDataChunk {
                        assert_eq!(consumed, line_len(rest), "an invalid line skips itself");
                    }
                }
                check_prefixes(rest, consumed);
                rest = &rest[(consumed + swallow).min(rest.len())..];
            }
            Parsed::Request { request, consumed } => {
                check_consumed(rest, consumed);
                check_request(rest, &request, consumed);
                check_prefixes(rest, consumed);
                let swallow = match request {
                    Request::Keyed(Keyed::StoreTooLarge { swallow, .. })
                    | Request::Keyed(Keyed::MetaTooLarge { swallow, .. }) => swallow,
                    _ => 0,
                };
                let next = (consumed + swallow).min(rest.len());
                rest = &rest[next..];
            }
        }
    }
}

fn check_consumed(rest: &[u8], consumed: usize) {
    assert!(
        consumed > 0 && consumed <= rest.len(),
        "consumed {consumed} of {} bytes",
        rest.len()
    );
}

/// Length of the first line, newline included.
fn line_len(buf: &[u8]) -> usize {
    buf.iter().position(|&b| b == b'\n').expect("a newline") + 1
}

/// The words of the first line, as memcached splits them (on spaces only).
fn words(buf: &[u8]) -> Vec<&[u8]> {
    let line = &buf[..line_len(buf) - 1];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    line.split(|&b| b == b' ')
        .filter(|w| !w.is_empty())
        .collect()
}

/// The `<bytes>` word of a storage command line ("+5" is 5, "-0" is 0):
/// the fifth word, or the third of a meta set.
fn declared_len(buf: &[u8]) -> usize {
    let w = words(buf);
    let at = if w[0] == b"ms" { 2 } else { 4 };
    // strtol skips leading whitespace, takes one sign and stops at the
    // first byte that is not a digit (whitespace, which the parser checked).
    let token = w[at];
    let token = &token[token
        .iter()
        .take_while(|b| b"\t\n\x0b\x0c\r".contains(b))
        .count()..];
    let (negative, token) = match token.first() {
        Some(b'-') => (true, &token[1..]),
        Some(b'+') => (false, &token[1..]),
        _ => (false, token),
    };
    let digits: Vec<u8> = token
        .iter()
        .copied()
        .take_while(u8::is_ascii_digit)
        .collect();
    let n: i128 = std::str::from_utf8(&digits).unwrap().parse().unwrap();
    // memcached's safe_strtol stores strtol's long into an int32_t, so
    // only the low 32 bits count: 14294967296 declares 1410065408 bytes,
    // and -4294967294 declares 2.
    let n = (if negative { -n } else { n }) as i64 as i32;
    assert!(n >= 0, "negative length {n} accepted");
    n as usize
}

/// The item a storage line declares, as memcached counts it against -I:
/// a 48-byte header, the key (a `b` key's decoding) and a NUL, 4 bytes of
/// non-zero flags, the value and its CR LF, and an 8-byte cas.
fn item_size(buf: &[u8]) -> usize {
    let w = words(buf);
    let nonzero = |t: &[u8]| t.iter().any(|b| (b'1'..=b'9').contains(b));
    let (key_len, flags) = if w[0] == b"ms" {
        let tokens = &w[3..];
        let key_len = if tokens.contains(&&b"b"[..]) {
            let digits = w[1].iter().filter(|&&b| b != b'=').count();
            digits * 3 / 4
        } else {
            w[1].len()
        };
        let flags = tokens
            .iter()
            .find_map(|t| t.strip_prefix(b"F"))
            .is_some_and(nonzero);
        (key_len, flags)
    } else {
        (w[1].len(), nonzero(w[2]))
    };
    48 + key_len + 1 + 4 * usize::from(flags) + declared_len(buf) + 2 + 8
}

fn check_incomplete(rest: &[u8]) {
    match rest.iter().position(|&b| b == b'\n') {
        None => assert!(
            rest.len() <= MAX_RETRIEVAL_LINE,
            "{} bytes without a newline are still Incomplete",
            rest.len()
        ),
        Some(_) => {
            // Only a storage command waits for more after a whole line: its data.
            let w = words(rest);
            assert!(
                STORAGE_VERBS.contains(&w[0]) || w[0] == b"ms",
                "a whole {:?} line is Incomplete",
                String::from_utf8_lossy(w[0])
            );
            let need = line_len(rest) + declared_len(rest) + 2;
            assert!(
                rest.len() < need,
                "{} of {need} bytes is Incomplete",
                rest.len()
            );
        }
    }
}

fn check_request(rest: &[u8], request: &Request, consumed: usize) {
    let line = line_len(rest);
    match *request {
        Request::Get { kind, keys } => {
            assert!(keys.iter().all(valid_key), "invalid key in {request:?}");
            if kind.touch_exptime().is_none() {
                assert!(!keys.is_empty(), "get without keys");
            }
            assert_eq!(consumed, line);
        }
        Request::Keyed(Keyed::Store(Storage {
            key, data, kind, ..
        })) => {
            assert!(valid_key(key), "invalid key {key:?}");
            let declared = declared_len(rest);
            assert_eq!(data.len(), declared, "value length");
            assert!(
                item_size(rest) <= MAX_ITEM_SIZE,
                "a too large item was buffered"
            );
            assert_eq!(consumed, line + declared + 2);
            assert_eq!(data, &rest[line..line + declared]);
            assert_eq!(&rest[consumed - 2..consumed], b"\r\n");
            assert_eq!(words(rest)[0], kind.verb().as_bytes());
        }
        Request::Keyed(Keyed::StoreTooLarge { key, swallow, .. }) => {
            assert!(valid_key(key), "invalid key {key:?}");
            let declared = declared_len(rest);
            assert!(item_size(rest) > MAX_ITEM_SIZE, "refused an item that fits");
            assert_eq!(swallow, declared + 2);
            assert_eq!(consumed, line);
        }
        Request::Keyed(Keyed::Delete { key, .. })
        | Request::Keyed(Keyed::Arith { key, .. })
        | Request::Keyed(Keyed::Touch { key, .. }) => {
            assert!(valid_key(key), "invalid key {key:?}");
            assert_eq!(consumed, line);
        }
        Request::Keyed(Keyed::Meta(meta)) => {
            // The key as sent is 1 to 250 bytes with no space or control
            // byte; a base64 key decodes to 1 to 250 bytes (any bytes).
            assert!(valid_key(meta.key), "invalid meta key {:?}", meta.key);
            let mut buf = [0u8; ferrocache::protocol::MAX_KEY_LEN];
            let key = meta.key(&mut buf);
            assert!(!key.is_empty() && key.len() <= ferrocache::protocol::MAX_KEY_LEN);
            if meta.command == MetaCommand::Set {
                let declared = declared_len(rest);
                assert_eq!(meta.data.len(), declared, "meta value length");
                assert!(
                    item_size(rest) <= MAX_ITEM_SIZE,
                    "a too large item was buffered"
                );
                assert_eq!(consumed, line + declared + 2);
                assert_eq!(&rest[consumed - 2..consumed], b"\r\n");
            } else {
                assert!(meta.data.is_empty());
                assert_eq!(consumed, line);
            }
        }
        Request::Keyed(Keyed::MetaTooLarge { swallow, .. }) => {
            assert!(item_size(rest) > MAX_ITEM_SIZE, "refused an item that fits");
            assert_eq!(swallow, declared_len(rest) + 2);
            assert_eq!(consumed, line);
        }
        _ => assert_eq!(consumed, line),
    }
    // Transport forwards a request to its owning shard as these very bytes,
    // followed by other requests; the owner must read back the same request.
    let mut forwarded = rest[..consumed].to_vec();
    forwarded.extend_from_slice(b"get next\r\n");
    match parse(&forwarded, &LIMITS) {
        Parsed::Request {
            request: again,
            consumed: c,
        } if c == consumed && again == *request => {}
        other => panic!("{request:?} forwarded as its own bytes parsed as {other:?}"),
    }
    if !matches!(
        request,
        Request::Keyed(Keyed::StoreTooLarge { .. }) | Request::Keyed(Keyed::MetaTooLarge { .. })
    ) {
        let mut wire = Vec::new();
        request.encode(&mut wire);
        match parse(&wire, &LIMITS) {
            Parsed::Request {
                request: again,
                consumed,
            } => {
                assert!(same(request, &again), "{request:?} came back as {again:?}");
                assert_eq!(consumed, wire.len());
            }
            other => panic!("{request:?} encoded as {wire:?} parsed as {other:?}"),
        }
    }
}

/// Equality up to how the key list of a get was spaced.
fn same(a: &Request, b: &Request) -> bool {
    match (a, b) {
        (Request::Get { kind: ka, keys: a }, Request::Get { kind: kb, keys: b }) => {
            ka == kb && a.iter().eq(b.iter())
        }
        _ => a == b,
    }
}

/// A request cut before its end must be `Incomplete`: what the server does
/// cannot depend on how TCP split the bytes. The one exception is the line
/// limit itself, which closes as soon as `MAX_LINE` bytes pass with no
/// newline (so a line of exactly `MAX_LINE` bytes plus "\r\n" is accepted
/// whole but refused when the "\n" arrives later; see tests/fuzz_regressions.rs).
fn check_prefixes(rest: &[u8], consumed: usize) {
    let line = line_len(rest);
    for cut in [1, consumed / 2, line - 1, line, consumed - 1] {
        if cut == 0 || cut >= consumed {
            continue;
        }
        match parse(&rest[..cut], &LIMITS) {
            Parsed::Incomplete => {}
            Parsed::Close(ErrorReply::LineTooLong) if cut > MAX_LINE && cut < line => {}
            other => panic!("the first {cut} of {consumed} bytes parsed as {other:?}"),
        }
    }
}

/// What the model knows about a key.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Known {
    Absent,
    Present {
        flags: u32,
        data: Vec<u8>,
    },
    /// Something happened we do not model exactly (an exptime, incr text).
    Unknown,
}

/// Runs `data` as one client connection would on one shard (every key local),
/// checking each reply byte for byte against the model where it is known,
/// and for form where it is not.
pub fn check_connection(data: &[u8]) {
    let namespace = Namespaces::default_namespace();
    let keys = KeyHasher::default();
    let hasher = keys.for_ns(namespace.id);
    let ns = namespace.id;
    let mut shard = Shard::new(8 << 20, MAX_ITEM_SIZE, Clock::new(), keys);
    let mut model: HashMap<Vec<u8>, Known> = HashMap::new();
    let mut out = Vec::new();
    let mut rest = data;
    loop {
        let (request, consumed) = match parse(rest, &LIMITS) {
            Parsed::Incomplete | Parsed::Close(_) | Parsed::HangUp => return,
            Parsed::Invalid {
                consumed, swallow, ..
            } => {
                rest = &rest[(consumed + swallow).min(rest.len())..];
                continue;
            }
            Parsed::Request { request, consumed } => (request, consumed),
        };
        let swallow = match request {
            Request::Keyed(Keyed::StoreTooLarge { swallow, .. })
            | Request::Keyed(Keyed::MetaTooLarge { swallow, .. }) => swallow,
            _ => 0,
        };
        let next = (consumed + swallow).min(rest.len());
        match request {
            Request::MetaNoOp => {}
            Request::Keyed(keyed @ (Keyed::Meta(_) | Keyed::MetaTooLarge { .. })) => {
                let mut buf = [0u8; ferrocache::protocol::MAX_KEY_LEN];
                let key = keyed.routing_key(&mut buf).to_vec();
                out.clear();
                shard.execute(ns, hasher.hash(&key), &keyed, &mut out);
                check_meta_reply(&keyed, &out);
                // Meta commands can change the item in ways the model does
                // not follow (stale copies, vivified items, touched TTLs).
                model.insert(key, Known::Unknown);
            }
            Request::Get { kind, keys } => {
                for key in keys.iter() {
                    out.clear();
                    shard.execute(ns, hasher.hash(key), &Keyed::Get { kind, key }, &mut out);
                    let state = model.entry(key.to_vec()).or_insert(Known::Absent);
                    check_get(state, kind, key, &out);
                }
            }
            Request::FlushAll { delay: 0, .. } => {
                shard.flush(ns, 0);
                model.clear();
            }
            Request::Quit => return,
            Request::FlushAll { .. }
            | Request::Stats(_)
            | Request::Version
            | Request::Verbosity { .. } => {}
            Request::Keyed(keyed) => {
                let key = keyed.key();
                out.clear();
                shard.execute(ns, hasher.hash(key), &keyed, &mut out);
                let state = model.entry(key.to_vec()).or_insert(Known::Absent);
                check_keyed(state, &keyed, &out);
            }
        }
        rest = &rest[next..];
    }
}

/// A meta reply is empty (quiet), or status lines: a meta code or an
/// error, each ending in "\r\n", with a value block after `VA <n>`.
fn check_meta_reply(request: &Keyed, out: &[u8]) {
    let mut rest = out;
    while !rest.is_empty() {
        let eol = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .unwrap_or_else(|| panic!("{request:?}: unterminated reply {}", show(out)));
        let line = &rest[..eol];
        let ok = [&b"HD"[..], b"EN", b"NF", b"NS", b"EX", b"ME "]
            .iter()
            .any(|p| line.starts_with(p))
            || line.starts_with(b"CLIENT_ERROR ")
            || line.starts_with(b"SERVER_ERROR ");
        if let Some(va) = line.strip_prefix(b"VA ") {
            let n: usize = std::str::from_utf8(va.split(|&b| b == b' ').next().unwrap())
                .unwrap()
                .parse()
                .unwrap();
            let end = eol + 2 + n + 2;
            assert!(
                rest.len() >= end,
                "{request:?}: short value in {}",
                show(out)
            );
            assert_eq!(&rest[end - 2..end], b"\r\n");
            rest = &rest[end..];
            continue;
        }
        assert!(ok, "{request:?} answered {}", show(out));
        rest = &rest[eol + 2..];
    }
}

fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Parses one `VALUE <key> <flags> <bytes>[ <cas>]\r\n<data>\r\n` reply.
fn parse_value<'a>(out: &'a [u8], key: &[u8], with_cas: bool) -> (u32, &'a [u8]) {
    let header_len = line_len(out);
    let w = words(out);
    assert_eq!(w[0], b"VALUE", "reply {}", show(out));
    assert_eq!(w[1], key, "reply {}", show(out));
    assert_eq!(w.len(), if with_cas { 5 } else { 4 }, "reply {}", show(out));
    let num = |b: &[u8]| -> u64 { show(b).parse().expect("a number in VALUE") };
    let flags = u32::try_from(num(w[2])).expect("32-bit flags");
    let len = num(w[3]) as usize;
    assert_eq!(out.len(), header_len + len + 2, "reply {}", show(out));
    assert_eq!(&out[header_len - 2..header_len], b"\r\n");
    assert!(out.ends_with(b"\r\n"));
    (flags, &out[header_len..header_len + len])
}

fn check_get(state: &mut Known, kind: GetKind, key: &[u8], out: &[u8]) {
    let hit = (!out.is_empty()).then(|| parse_value(out, key, kind.with_cas()));
    let touch = kind.touch_exptime();
    match (&*state, hit) {
        (Known::Absent, Some(_)) => panic!("hit on an absent key: {}", show(out)),
        (Known::Present { flags, data }, Some((f, d))) => {
            assert_eq!((*flags, &data[..]), (f, d), "stale value");
        }
        // gat with a past exptime may expire the item as it touches it.
        (Known::Present { .. }, None) if touch.is_some_and(|t| t != 0) => {}
        (Known::Present { .. }, None) => panic!("miss on a present key {}", show(key)),
        _ => {}
    }
    if touch.is_some_and(|t| t != 0) && *state != Known::Absent {
        *state = Known::Unknown;
    }
}

const TOO_LARGE: &[u8] = b"SERVER_ERROR object too large for cache\r\n";
const NO_MEMORY: &[u8] = b"SERVER_ERROR out of memory storing object\r\n";
const NON_NUMERIC: &[u8] = b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n";

fn check_keyed(state: &mut Known, request: &Keyed, out: &[u8]) {
    if request.noreply() {
        assert!(out.is_empty(), "noreply answered {}", show(out));
    }
    let got = |expected: &[u8]| request.noreply() || out == expected;
    match *request {
        Keyed::Store(Storage {
            kind,
            key,
            flags,
            exptime,
            data,
            noreply,
            ..
        }) => {
            // An item over the limit as memcached counts it (its header,
            // key, flags and cas with the value) is refused, whatever the
            // kind; a set also drops the old item.
            let item = |flags: u32, len: usize| 59 + key.len() + 4 * usize::from(flags != 0) + len;
            if item(flags, data.len()) > MAX_ITEM_SIZE {
                assert!(got(TOO_LARGE), "too large answered {}", show(out));
                if kind == StoreKind::Set {
                    *state = Known::Absent;
                }
                return;
            }
            let stored = if exptime == 0 {
                Known::Present {
                    flags,
                    data: data.to_vec(),
                }
            } else {
                Known::Unknown
            };
            let allowed: &[&[u8]] = match (kind, &*state) {
                (StoreKind::Set, _) => &[b"STORED\r\n"],
                (StoreKind::Add, Known::Absent) | (StoreKind::Replace, Known::Present { .. }) => {
                    &[b"STORED\r\n"]
                }
                (StoreKind::Add, Known::Present { .. })
                | (StoreKind::Replace | StoreKind::Append | StoreKind::Prepend, Known::Absent) => {
                    &[b"NOT_STORED\r\n"]
                }
                (
                    StoreKind::Append | StoreKind::Prepend,
                    Known::Present {
                        data: old,
                        flags: f,
                    },
                ) => {
                    if item(*f, old.len() + data.len()) > MAX_ITEM_SIZE {
                        // memcached cannot allocate the joined item.
                        &[b"NOT_STORED\r\n"]
                    } else {
                        &[b"STORED\r\n"]
                    }
                }
                (StoreKind::Cas, Known::Absent) => &[b"NOT_FOUND\r\n"],
                (StoreKind::Cas, Known::Present { .. }) => &[b"STORED\r\n", b"EXISTS\r\n"],
                (_, Known::Unknown) => &[
                    b"STORED\r\n",
                    b"NOT_STORED\r\n",
                    b"EXISTS\r\n",
                    b"NOT_FOUND\r\n",
                    NO_MEMORY,
                ],
            };
            assert!(
                noreply || allowed.contains(&out),
                "{request:?} in state {state:?} answered {}",
                show(out)
            );
            let outcome: Option<&[u8]> = match allowed {
                [one] => Some(one),
                _ if noreply => None,
                _ => Some(out),
            };
            *state = match (outcome, &*state) {
                (
                    Some(b"STORED\r\n"),
                    Known::Present {
                        flags: f,
                        data: old,
                    },
                ) if matches!(kind, StoreKind::Append | StoreKind::Prepend) => {
                    let joined = if kind == StoreKind::Append {
                        [&old[..], data].concat()
                    } else {
                        [data, &old[..]].concat()
                    };
                    Known::Present {
                        flags: *f,
                        data: joined,
                    }
                }
                (Some(b"STORED\r\n"), Known::Unknown)
                    if matches!(kind, StoreKind::Append | StoreKind::Prepend) =>
                {
                    Known::Unknown
                }
                (Some(b"STORED\r\n"), _) => stored,
                (Some(_), _) => state.clone(),
                (None, _) => Known::Unknown,
            };
        }
        Keyed::StoreTooLarge { kind, .. } => {
            assert!(got(TOO_LARGE), "too large answered {}", show(out));
            if kind == StoreKind::Set {
                *state = Known::Absent;
            }
        }
        Keyed::Delete { .. } => {
            let ok = match state {
                Known::Absent => got(b"NOT_FOUND\r\n"),
                Known::Present { .. } => got(b"DELETED\r\n"),
                Known::Unknown => got(b"NOT_FOUND\r\n") || got(b"DELETED\r\n"),
            };
            assert!(ok, "delete in state {state:?} answered {}", show(out));
            *state = Known::Absent;
        }
        Keyed::Arith { kind, delta, .. } => {
            let number = out.strip_suffix(b"\r\n").is_some_and(|n| {
                !n.is_empty() && n.iter().all(u8::is_ascii_digit) && show(n).parse::<u64>().is_ok()
            });
            match state {
                Known::Absent => assert!(got(b"NOT_FOUND\r\n"), "arith answered {}", show(out)),
                Known::Present { data, .. } => {
                    let plain =
                        (1..=19).contains(&data.len()) && data.iter().all(u8::is_ascii_digit);
                    if plain {
                        let v: u64 = show(data).parse().unwrap();
                        let new = match kind {
                            ArithKind::Incr => v.wrapping_add(delta),
                            ArithKind::Decr => v.saturating_sub(delta),
                        };
                        assert!(
                            got(format!("{new}\r\n").as_bytes()),
                            "{v} {kind:?} {delta} answered {}",
                            show(out)
                        );
                    } else {
                        assert!(
                            request.noreply() || number || out == NON_NUMERIC,
                            "arith answered {}",
                            show(out)
                        );
                    }
                    *state = Known::Unknown;
                }
                Known::Unknown => assert!(
                    request.noreply() || number || out == NON_NUMERIC || out == b"NOT_FOUND\r\n",
                    "arith answered {}",
                    show(out)
                ),
            }
        }
        Keyed::Touch { exptime, .. } => {
            let ok = match state {
                Known::Absent => got(b"NOT_FOUND\r\n"),
                Known::Present { .. } => got(b"TOUCHED\r\n"),
                Known::Unknown => got(b"NOT_FOUND\r\n") || got(b"TOUCHED\r\n"),
            };
            assert!(ok, "touch in state {state:?} answered {}", show(out));
            if exptime != 0 && *state != Known::Absent {
                *state = Known::Unknown;
            }
        }
        Keyed::Get { .. } | Keyed::Meta(_) | Keyed::MetaTooLarge { .. } => {
            unreachable!("checked by check_get and check_meta_reply: {request:?}")
        }
    }
}
