//! Bytes to [`Request`]: memcached 1.6's text grammar.
//!
//! [`parse`] looks at the front of a read buffer and says one of: a whole
//! request is there (and how many bytes it used), more bytes are needed
//! (an expected outcome, not an error), the command is invalid (which error
//! line to send, and how much to skip), or the connection must be closed.
//! It never copies: keys and data borrow the buffer.

use memchr::memchr;

use super::number::{i32_token, u32_token, u64_token};
use super::reply::ErrorReply;
use super::request::{
    ArithKind, GetKind, Keyed, Keys, Limits, Parsed, Request, StatsGroup, Storage, StoreKind,
};
use super::MAX_KEY_LEN;

/// A command line (not a multiget) still without its newline past this
/// many bytes closes the connection, as in memcached.
pub const MAX_LINE: usize = 2048;

/// The longest whole command line (not a multiget), through its "\n", that
/// is processed: memcached's 16 KiB read buffer. memcached processes any
/// line whose newline is in that buffer, however long, and a longer line
/// never has its newline in it. So a line of 2049 to 16384 bytes is
/// processed when it arrives whole, and refused when more than `MAX_LINE`
/// bytes of it come before its newline, as in memcached.
pub const MAX_WHOLE_LINE: usize = 16 * 1024;

/// Retrieval lines may be long (memcached lets multigets grow unbounded); we
/// allow 2,000 keys of 250 bytes and no more.
pub const MAX_RETRIEVAL_LINE: usize = 2000 * (MAX_KEY_LEN + 1) + 64;

/// memcached treats a line as a multiget only when `get ` or `gets `
/// starts within this many leading spaces.
const MAX_MULTIGET_INDENT: usize = 100;

/// memcached's MAX_TOKENS: a line splits into at most this many words (the
/// last holding the rest), so longer lines read as "wrong token count".
const MAX_TOKENS: usize = 24;

/// Parses the request at the front of `buf`.
pub fn parse<'a>(buf: &'a [u8], limits: &Limits) -> Parsed<'a> {
    let Some(nl) = memchr(b'\n', buf) else {
        // A trailing '\r' may be the start of the line's terminator: the
        // verdict must not depend on where TCP split the stream.
        let pending = buf.strip_suffix(b"\r").unwrap_or(buf);
        let limit = if is_multiget(buf) {
            MAX_RETRIEVAL_LINE
        } else {
            MAX_LINE
        };
        return if pending.len() > limit {
            Parsed::Close(ErrorReply::LineTooLong)
        } else {
            Parsed::Incomplete
        };
    };
    let line_len = nl + 1;
    let line = &buf[..nl];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let too_long = if is_multiget(line) {
        line.len() > MAX_RETRIEVAL_LINE
    } else {
        line_len > MAX_WHOLE_LINE
    };
    if too_long {
        return Parsed::Close(ErrorReply::LineTooLong);
    }

    let (command, rest) = next_token(line);
    let invalid = |error, noreply| Parsed::Invalid {
        error,
        noreply,
        consumed: line_len,
        swallow: 0,
    };
    let request = |request| Parsed::Request {
        request,
        consumed: line_len,
    };
    let Some(command) = command else {
        return invalid(ErrorReply::Error, false);
    };

    match command {
        b"get" | b"gets" | b"gat" | b"gats" => {
            let (kind, keys) = match command {
                b"get" => (GetKind::Get, rest),
                b"gets" => (GetKind::Gets, rest),
                _ => {
                    let (exptime, keys) = next_token(rest);
                    let Some(exptime) = exptime else {
                        return invalid(ErrorReply::Error, false);
                    };
                    let Some(exptime) = parse_exptime(exptime) else {
                        return invalid(ErrorReply::InvalidExptime, false);
                    };
                    let kind = if command == b"gat" {
                        GetKind::Gat(exptime)
                    } else {
                        GetKind::Gats(exptime)
                    };
                    (kind, keys)
                }
            };
            let keys = Keys::new(keys);
            if keys.is_empty() && kind.touch_exptime().is_none() {
                return invalid(ErrorReply::Error, false);
            }
            if !keys.iter().all(valid_key) {
                return invalid(ErrorReply::BadCommandLine, false);
            }
            request(Request::Get { kind, keys })
        }
        b"set" | b"add" | b"replace" | b"append" | b"prepend" | b"cas" => {
            let kind = match command {
                b"set" => StoreKind::Set,
                b"add" => StoreKind::Add,
                b"replace" => StoreKind::Replace,
                b"append" => StoreKind::Append,
                b"prepend" => StoreKind::Prepend,
                _ => StoreKind::Cas,
            };
            parse_storage(kind, buf, line_len, rest, limits)
        }
        b"delete" => {
            let args = Tokens::split(rest);
            if !(1..=3).contains(&args.len()) {
                return invalid(ErrorReply::Error, false);
            }
            let noreply = args.noreply();
            if args.len() > 1 {
                let hold_is_zero = args.get(1) == b"0";
                let valid = (args.len() == 2 && (hold_is_zero || noreply))
                    || (args.len() == 3 && hold_is_zero && noreply);
                if !valid {
                    return invalid(ErrorReply::DeleteUsage, noreply);
                }
            }
            let key = args.get(0);
            if !valid_key(key) {
                return invalid(ErrorReply::BadCommandLine, noreply);
            }
            request(Request::Keyed(Keyed::Delete { key, noreply }))
        }
        b"incr" | b"decr" => {
            let KeyAndArgument {
                key,
                argument: delta,
                noreply,
            } = match key_and_argument(rest) {
                Ok(parts) => parts,
                Err((error, noreply)) => return invalid(error, noreply),
            };
            let Some(delta) = u64_token(delta) else {
                return invalid(ErrorReply::InvalidDelta, noreply);
            };
            let kind = if command == b"incr" {
                ArithKind::Incr
            } else {
                ArithKind::Decr
            };
            request(Request::Keyed(Keyed::Arith {
                kind,
                key,
                delta,
                noreply,
            }))
        }
        b"touch" => {
            let KeyAndArgument {
                key,
                argument: exptime,
                noreply,
            } = match key_and_argument(rest) {
                Ok(parts) => parts,
                Err((error, noreply)) => return invalid(error, noreply),
            };
            let Some(exptime) = parse_exptime(exptime) else {
                return invalid(ErrorReply::InvalidExptime, noreply);
            };
            request(Request::Keyed(Keyed::Touch {
                key,
                exptime,
                noreply,
            }))
        }
        b"flush_all" => {
            let args = Tokens::split(rest);
            if args.len() > 2 {
                return invalid(ErrorReply::Error, false);
            }
            let noreply = args.noreply();
            let mut delay = 0;
            if args.len() > usize::from(noreply) {
                match parse_exptime(args.get(0)) {
                    Some(d) => delay = d,
                    None => return invalid(ErrorReply::InvalidExptime, noreply),
                }
            }
            request(Request::FlushAll { delay, noreply })
        }
        b"stats" => {
            let (group, rest) = next_token(rest);
            let group = match group {
                None => StatsGroup::General,
                Some(b"settings") => StatsGroup::Settings,
                Some(b"reset") => StatsGroup::Reset,
                Some(b"items") => StatsGroup::Items,
                Some(b"slabs") => StatsGroup::Slabs,
                Some(b"sizes") => StatsGroup::Sizes,
                Some(b"extstore") => StatsGroup::Extstore,
                Some(b"detail") => StatsGroup::Detail(next_token(rest).0.unwrap_or(b"")),
                Some(other) => StatsGroup::Other(other),
            };
            request(Request::Stats(group))
        }
        b"version" => request(Request::Version),
        b"quit" => request(Request::Quit),
        b"verbosity" => {
            let args = Tokens::split(rest);
            if !(1..=2).contains(&args.len()) {
                return invalid(ErrorReply::Error, false);
            }
            let noreply = args.noreply();
            if noreply && args.len() == 1 {
                // "verbosity noreply" lacks its level; memcached answers ERROR, silenced.
                return invalid(ErrorReply::Error, true);
            }
            if u64_token(args.get(0)).is_none() {
                return invalid(ErrorReply::BadCommandLine, noreply);
            }
            request(Request::Verbosity { noreply })
        }
        // Any form, `noreply` or not: memcached answers so before it reads
        // the arguments.
        b"shutdown" => invalid(ErrorReply::ShutdownDisabled, false),
        _ => match super::meta::parse_meta(command, rest, buf, line_len, limits) {
            Some(parsed) => parsed,
            None if is_http(command, line) => Parsed::HangUp,
            None => invalid(ErrorReply::Error, false),
        },
    }
}

/// memcached verbs that we answer `ERROR` but that memcached 1.6.18
/// parses, so that it never hangs up on them.
const OTHER_MEMCACHED_VERBS: [&[u8]; 5] = [
    b"lru",
    b"lru_crawler",
    b"watch",
    b"extstore",
    b"refresh_certs",
];

/// Whether an unknown command's line is an HTTP request line, on which
/// memcached 1.6.18 closes the connection without a reply (so a browser
/// tricked into posting to a cache port cannot drive it). Its rule, as the
/// real binary behaves: the command is not one it knows (nor one of its
/// first letters it dispatches on, `a c d g i s t`, nor a two-letter
/// `m` meta command, nor a single letter), and the last word of the
/// line, counting at most `MAX_TOKENS - 1` words, starts with `HTTP/`.
/// Any line, not only the first: `GET / HTTP/1.0`, `PUT /x HTTP/1.1`,
/// `DELETE HTTP/1.1`, `POST /a?b HTTP/1.1`.
fn is_http(command: &[u8], line: &[u8]) -> bool {
    let dispatched = matches!(command[0], b'a' | b'c' | b'd' | b'g' | b'i' | b's' | b't')
        || (command.len() == 2 && command[0] == b'm');
    if command.len() < 2 || dispatched || OTHER_MEMCACHED_VERBS.contains(&command) {
        return false;
    }
    let (mut last, mut rest) = (None, line);
    for _ in 0..MAX_TOKENS - 1 {
        match next_token(rest) {
            (Some(token), after) => (last, rest) = (Some(token), after),
            (None, _) => break,
        }
    }
    last.is_some_and(|token| token.starts_with(b"HTTP/"))
}

/// `<cmd> <key> <flags> <exptime> <bytes> [cas] [noreply]\r\n<data>\r\n`
fn parse_storage<'a>(
    kind: StoreKind,
    buf: &'a [u8],
    line_len: usize,
    rest: &'a [u8],
    limits: &Limits,
) -> Parsed<'a> {
    let args = Tokens::split(rest);
    let fixed = if kind == StoreKind::Cas { 5 } else { 4 };
    let invalid = |error, noreply| Parsed::Invalid {
        error,
        noreply,
        consumed: line_len,
        swallow: 0,
    };
    if args.len() != fixed && args.len() != fixed + 1 {
        return invalid(ErrorReply::Error, false);
    }
    let noreply = args.noreply();
    let key = args.get(0);
    if !valid_key(key) {
        return invalid(ErrorReply::BadCommandLine, noreply);
    }
    let (Some(flags), Some(exptime), Some(len)) = (
        u32_token(args.get(1)),
        parse_exptime(args.get(2)),
        i32_token(args.get(3)),
    ) else {
        return invalid(ErrorReply::BadCommandLine, noreply);
    };
    let cas = if kind == StoreKind::Cas {
        match u64_token(args.get(4)) {
            Some(cas) => cas,
            None => return invalid(ErrorReply::BadCommandLine, noreply),
        }
    } else {
        0
    };
    if !(0..=i32::MAX - 2).contains(&len) {
        return invalid(ErrorReply::BadCommandLine, noreply);
    }
    let len = len as usize;
    // Refused before its data block is read, with the line's flags (an
    // append's too: memcached allocates the appended part first).
    if limits.too_large(key.len(), flags, len) {
        return Parsed::Request {
            request: Request::Keyed(Keyed::StoreTooLarge {
                kind,
                key,
                noreply,
                swallow: len + 2,
            }),
            consumed: line_len,
        };
    }
    let end = line_len + len + 2;
    if buf.len() < end {
        return Parsed::Incomplete;
    }
    if &buf[end - 2..end] != b"\r\n" {
        return Parsed::Invalid {
            error: ErrorReply::BadDataChunk,
            noreply,
            consumed: end,
            swallow: 0,
        };
    }
    Parsed::Request {
        request: Request::Keyed(Keyed::Store(Storage {
            kind,
            key,
            flags,
            exptime,
            cas,
            data: &buf[line_len..end - 2],
            noreply,
        })),
        consumed: end,
    }
}

/// `<key> <argument> [noreply]`, the shape of incr, decr and touch: the key
/// (validated), the argument (still text) and noreply; or the error to send
/// and whether it is silenced.
fn key_and_argument(rest: &[u8]) -> Result<KeyAndArgument<'_>, (ErrorReply, bool)> {
    let args = Tokens::split(rest);
    if !(2..=3).contains(&args.len()) {
        return Err((ErrorReply::Error, false));
    }
    let noreply = args.noreply();
    let key = args.get(0);
    if !valid_key(key) {
        return Err((ErrorReply::BadCommandLine, noreply));
    }
    Ok(KeyAndArgument {
        key,
        argument: args.get(1),
        noreply,
    })
}

struct KeyAndArgument<'a> {
    key: &'a [u8],
    argument: &'a [u8],
    noreply: bool,
}

/// Whether a line starting like `line` is a multiget, which may grow to
/// `MAX_RETRIEVAL_LINE`: memcached's own test, `get ` or `gets ` after at
/// most `MAX_MULTIGET_INDENT` spaces (a `gat` line is held to the limits of
/// any other line).
fn is_multiget(line: &[u8]) -> bool {
    let start = line.iter().position(|&b| b != b' ').unwrap_or(line.len());
    let word = &line[start..];
    start <= MAX_MULTIGET_INDENT && (word.starts_with(b"get ") || word.starts_with(b"gets "))
}

/// A key is 1 to 250 bytes with no space or control byte.
pub fn valid_key(key: &[u8]) -> bool {
    !key.is_empty() && key.len() <= MAX_KEY_LEN && key.iter().all(|&b| b > b' ' && b != 0x7f)
}

/// Splits off the first space-separated word; memcached collapses runs of spaces.
fn next_token(s: &[u8]) -> (Option<&[u8]>, &[u8]) {
    let start = match s.iter().position(|&b| b != b' ') {
        Some(i) => i,
        None => return (None, &[]),
    };
    let s = &s[start..];
    match memchr(b' ', s) {
        Some(end) => (Some(&s[..end]), &s[end..]),
        None => (Some(s), &[]),
    }
}

/// The arguments of a command, at most `MAX_TOKENS - 1` of them.
struct Tokens<'a> {
    items: [&'a [u8]; MAX_TOKENS],
    len: usize,
}

impl<'a> Tokens<'a> {
    fn split(mut s: &'a [u8]) -> Tokens<'a> {
        let mut items: [&[u8]; MAX_TOKENS] = [&[]; MAX_TOKENS];
        let mut len = 0;
        while let (Some(tok), rest) = next_token(s) {
            if len == MAX_TOKENS {
                break; // too many: every caller rejects this count
            }
            items[len] = tok;
            len += 1;
            s = rest;
        }
        Tokens { items, len }
    }

    fn len(&self) -> usize {
        self.len
    }

    fn get(&self, i: usize) -> &'a [u8] {
        self.items[i]
    }

    /// memcached's set_noreply_maybe: the last word is exactly `noreply`.
    fn noreply(&self) -> bool {
        self.len > 0 && self.items[self.len - 1] == b"noreply"
    }
}

/// Exptimes: a C long kept in 32 bits (`safe_strtol`).
fn parse_exptime(s: &[u8]) -> Option<i64> {
    i32_token(s).map(i64::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ReplyBound;

    const LIMITS: Limits = Limits {
        max_item_size: 1024 * 1024,
    };

    fn req(input: &[u8]) -> Request<'_> {
        match parse(input, &LIMITS) {
            Parsed::Request { request, consumed } => {
                assert_eq!(consumed, input.len(), "consumed all of {input:?}");
                request
            }
            other => panic!("{input:?} gave {other:?}"),
        }
    }

    #[test]
    fn the_routing_key_is_the_key_the_shard_sees() {
        let mut buf = [0u8; MAX_KEY_LEN];
        // A base64 meta key routes by its decoded bytes ("foo").
        assert_eq!(
            req(b"mg Zm9v b v\r\n").routing_key(&mut buf),
            Some(&b"foo"[..])
        );
        let mut buf = [0u8; MAX_KEY_LEN];
        assert_eq!(
            req(b"mg Zm9v v\r\n").routing_key(&mut buf),
            Some(&b"Zm9v"[..])
        );
        let mut buf = [0u8; MAX_KEY_LEN];
        assert_eq!(req(b"get a b\r\n").routing_key(&mut buf), Some(&b"a"[..]));
        let mut buf = [0u8; MAX_KEY_LEN];
        assert_eq!(req(b"version\r\n").routing_key(&mut buf), None);
    }

    #[test]
    fn each_keyed_request_names_the_bound_of_its_reply() {
        let bound = |input: &[u8]| match req(input) {
            Request::Keyed(keyed) => keyed.reply_bound(),
            other => panic!("{input:?} gave {other:?}"),
        };
        assert_eq!(bound(b"mg k v\r\n"), ReplyBound::Value);
        assert_eq!(bound(b"mg k s v t\r\n"), ReplyBound::Value);
        // Without `v` a meta reply is a line, which may echo the key.
        assert_eq!(bound(b"mg k k O123 c t\r\n"), ReplyBound::MetaLine);
        assert_eq!(bound(b"ma k v\r\n"), ReplyBound::MetaLine);
        assert_eq!(bound(b"ms k 1 k\r\nv\r\n"), ReplyBound::MetaLine);
        assert_eq!(bound(b"md k k\r\n"), ReplyBound::MetaLine);
        assert_eq!(bound(b"me k\r\n"), ReplyBound::MetaLine);
        assert_eq!(bound(b"set k 0 0 1\r\nv\r\n"), ReplyBound::Line);
        assert_eq!(bound(b"incr k 1\r\n"), ReplyBound::Line);
        assert_eq!(bound(b"delete k\r\n"), ReplyBound::Line);
        assert_eq!(bound(b"touch k 1\r\n"), ReplyBound::Line);
    }

    fn err(input: &[u8]) -> (ErrorReply, bool, usize) {
        match parse(input, &LIMITS) {
            Parsed::Invalid {
                error,
                noreply,
                consumed,
                swallow: 0,
            } => (error, noreply, consumed),
            other => panic!("{input:?} gave {other:?}"),
        }
    }

    #[test]
    fn retrievals() {
        let Request::Get { kind, keys } = req(b"get a  b c\r\n") else {
            panic!()
        };
        assert_eq!(kind, GetKind::Get);
        assert_eq!(keys.iter().collect::<Vec<_>>(), vec![&b"a"[..], b"b", b"c"]);
        assert!(matches!(
            req(b"gets a\n"),
            Request::Get {
                kind: GetKind::Gets,
                ..
            }
        ));
        assert!(matches!(
            req(b"gat 10 a\r\n"),
            Request::Get {
                kind: GetKind::Gat(10),
                ..
            }
        ));
        assert!(matches!(
            req(b"gats -1 a\r\n"),
            Request::Get {
                kind: GetKind::Gats(-1),
                ..
            }
        ));
        // memcached answers END to a gat with no keys, ERROR to a get with none.
        assert!(matches!(req(b"gat 0\r\n"), Request::Get { .. }));
        assert_eq!(err(b"get\r\n").0, ErrorReply::Error);
        assert_eq!(err(b"gat abc a\r\n").0, ErrorReply::InvalidExptime);
        let long = format!("get a {} b\r\n", "k".repeat(251));
        assert_eq!(err(long.as_bytes()).0, ErrorReply::BadCommandLine);
    }

    #[test]
    fn storage() {
        let r = req(b"set k 5 -1 3 noreply\r\na\nb\r\n");
        assert_eq!(
            r,
            Request::Keyed(Keyed::Store(Storage {
                kind: StoreKind::Set,
                key: b"k",
                flags: 5,
                exptime: -1,
                cas: 0,
                data: b"a\nb",
                noreply: true
            }))
        );
        assert!(matches!(
            req(b"cas k 0 0 1 99\r\nx\r\n"),
            Request::Keyed(Keyed::Store(Storage {
                kind: StoreKind::Cas,
                cas: 99,
                ..
            }))
        ));
        // An unknown sixth word is ignored, as memcached does.
        assert!(matches!(
            req(b"set k 0 0 1 foo\r\nx\r\n"),
            Request::Keyed(Keyed::Store(Storage { noreply: false, .. }))
        ));
        assert_eq!(parse(b"set k 0 0 3\r\nab", &LIMITS), Parsed::Incomplete);
        assert_eq!(parse(b"set k 0 0 3\r\nabc\r", &LIMITS), Parsed::Incomplete);
    }

    #[test]
    fn storage_errors() {
        assert_eq!(
            err(b"set k 0 0 3\r\nabcde\r\n"),
            (ErrorReply::BadDataChunk, false, 18)
        );
        assert_eq!(err(b"set k 0 0 -1\r\n").0, ErrorReply::BadCommandLine);
        assert_eq!(
            err(b"set k 4294967296 0 1\r\n").0,
            ErrorReply::BadCommandLine
        );
        assert_eq!(
            err(b"set k x 0 1 noreply\r\n"),
            (ErrorReply::BadCommandLine, true, 21)
        );
        assert_eq!(err(b"cas k 0 0 1\r\n").0, ErrorReply::Error);
        assert_eq!(err(b"set k 0 0 1 noreply extra\r\n").0, ErrorReply::Error);
        assert_eq!(err(b"set k\x01 0 0 1\r\n").0, ErrorReply::BadCommandLine);
        let too_large = format!("set k 0 0 {}\r\n", 2 * 1024 * 1024);
        assert_eq!(
            req(too_large.as_bytes()),
            Request::Keyed(Keyed::StoreTooLarge {
                kind: StoreKind::Set,
                key: b"k",
                noreply: false,
                swallow: 2 * 1024 * 1024 + 2
            })
        );
    }

    #[test]
    fn other_commands() {
        assert_eq!(
            req(b"delete k 0 noreply\r\n"),
            Request::Keyed(Keyed::Delete {
                key: b"k",
                noreply: true
            })
        );
        assert_eq!(err(b"delete k 5\r\n").0, ErrorReply::DeleteUsage);
        assert_eq!(
            req(b"incr k 18446744073709551615\r\n"),
            Request::Keyed(Keyed::Arith {
                kind: ArithKind::Incr,
                key: b"k",
                delta: u64::MAX,
                noreply: false
            })
        );
        assert_eq!(err(b"decr k -1\r\n").0, ErrorReply::InvalidDelta);
        assert_eq!(err(b"touch k x\r\n").0, ErrorReply::InvalidExptime);
        assert_eq!(
            req(b"flush_all\r\n"),
            Request::FlushAll {
                delay: 0,
                noreply: false
            }
        );
        assert_eq!(
            req(b"flush_all noreply\r\n"),
            Request::FlushAll {
                delay: 0,
                noreply: true
            }
        );
        assert_eq!(
            req(b"flush_all 10 noreply\r\n"),
            Request::FlushAll {
                delay: 10,
                noreply: true
            }
        );
        assert_eq!(err(b"flush_all foo\r\n").0, ErrorReply::InvalidExptime);
        assert_eq!(req(b"stats\r\n"), Request::Stats(StatsGroup::General));
        assert_eq!(
            req(b"stats foo\r\n"),
            Request::Stats(StatsGroup::Other(b"foo"))
        );
        assert_eq!(err(b"verbosity\r\n").0, ErrorReply::Error);
        assert_eq!(err(b"verbosity noreply\r\n"), (ErrorReply::Error, true, 19));
        assert_eq!(err(b"GET a\r\n").0, ErrorReply::Error);
        assert_eq!(err(b"\r\n").0, ErrorReply::Error);
    }

    #[test]
    fn http_request_lines_hang_up_as_in_memcached() {
        // Each checked against memcached 1.6.18: EOF without a reply.
        for line in [
            &b"GET / HTTP/1.0\r\n"[..],
            b"PUT /x HTTP/1.1\r\n",
            b"DELETE HTTP/1.1\r\n",
            b"POST /a?b=c HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET / HTTP/1.0\n",
            b"  GET   /   HTTP/1.1  \r\n",
            b"HTTP/1.1\r\n",
            b"foo HTTP/\r\n",
            b"Get / HTTP/1.1\r\n",
            b"misbehave HTTP/1.1\r\n",
            b"mgx HTTP/1.1\r\n",
            b"GET / HTTP/1.1\rx\r\n",
            b"foo HTTP/1.1\tx\r\n",
        ] {
            assert_eq!(
                parse(line, &LIMITS),
                Parsed::HangUp,
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
        // ... and these it answers (ERROR unless said), and so do we.
        for (line, error) in [
            (&b"foo HTTP/1.1 bar\r\n"[..], ErrorReply::Error),
            (b"foo HTTPX\r\n", ErrorReply::Error),
            (b"foo http/1.1\r\n", ErrorReply::Error),
            (b"x HTTP/1.1\r\n", ErrorReply::Error),
            (b"sets HTTP/1.1\r\n", ErrorReply::Error),
            (b"mx HTTP/1.1\r\n", ErrorReply::Error),
            (b"lru_crawler HTTP/1.1\r\n", ErrorReply::Error),
            (b"watch HTTP/1.1\r\n", ErrorReply::Error),
            (b"set HTTP/1.1\r\n", ErrorReply::Error),
            (b"GET\r\n", ErrorReply::Error),
            (b"foo\tHTTP/1.1\r\n", ErrorReply::Error),
            (b"touch x HTTP/1.1\r\n", ErrorReply::InvalidExptime),
        ] {
            assert_eq!(err(line).0, error, "{:?}", String::from_utf8_lossy(line));
        }
        let Request::Get { keys, .. } = req(b"get / HTTP/1.0\r\n") else {
            panic!("a get")
        };
        assert_eq!(keys.iter().collect::<Vec<_>>(), [&b"/"[..], b"HTTP/1.0"]);
        // Only the first 23 words count: the 23rd must be the HTTP one.
        let words = |n: usize| {
            (0..n)
                .map(|i| format!("w{i}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        for (before, after, hang_up) in [
            (22, "", true),
            (23, "", false),
            (22, " x", true),
            (21, " x", false),
        ] {
            let line = format!("{} HTTP/1.1{after}\r\n", words(before));
            let parsed = parse(line.as_bytes(), &LIMITS);
            assert_eq!(
                parsed == Parsed::HangUp,
                hang_up,
                "{before} words, then HTTP/1.1{after}"
            );
        }
        // Cut short, it is only incomplete.
        assert_eq!(parse(b"GET / HTTP/1.0", &LIMITS), Parsed::Incomplete);
        assert_eq!(parse(b"GET / HTTP/1.0\r", &LIMITS), Parsed::Incomplete);
    }

    #[test]
    fn long_lines() {
        assert_eq!(parse(&[b'x'; MAX_LINE], &LIMITS), Parsed::Incomplete);
        assert_eq!(
            parse(&[b'x'; MAX_LINE + 1], &LIMITS),
            Parsed::Close(ErrorReply::LineTooLong)
        );
        let mut get = b"get ".to_vec();
        for i in 0..1000 {
            get.extend_from_slice(format!("{i:0>250} ").as_bytes());
        }
        assert_eq!(parse(&get, &LIMITS), Parsed::Incomplete);
        get.extend_from_slice(b"\r\n");
        let Request::Get { keys, .. } = req(&get) else {
            panic!()
        };
        assert_eq!(keys.iter().count(), 1000);
    }

    #[test]
    fn a_whole_long_line_is_parsed_up_to_memcacheds_read_buffer() {
        let key = "k".repeat(2100);
        // Whole, a long line is an ordinary (bad) command.
        let set = format!("set {key} 0 0 1\r\n");
        assert_eq!(
            parse(set.as_bytes(), &LIMITS),
            Parsed::Invalid {
                error: ErrorReply::BadCommandLine,
                noreply: false,
                consumed: set.len(),
                swallow: 0,
            }
        );
        // Without its newline, past MAX_LINE, it closes.
        assert_eq!(
            parse(&set.as_bytes()[..MAX_LINE + 1], &LIMITS),
            Parsed::Close(ErrorReply::LineTooLong)
        );
        // Spaces are separators however many: a valid set.
        let spaced = format!("set k{}0 0 1\r\nx\r\n", " ".repeat(3000));
        assert!(matches!(
            parse(spaced.as_bytes(), &LIMITS),
            Parsed::Request { consumed, .. } if consumed == spaced.len()
        ));
        // The longest whole line is MAX_WHOLE_LINE bytes through its "\n".
        let mut line = vec![b'x'; MAX_WHOLE_LINE - 2];
        line.extend_from_slice(b"\r\n");
        assert!(matches!(
            parse(&line, &LIMITS),
            Parsed::Invalid { error: ErrorReply::Error, consumed, .. } if consumed == MAX_WHOLE_LINE
        ));
        line.insert(0, b'x');
        assert_eq!(
            parse(&line, &LIMITS),
            Parsed::Close(ErrorReply::LineTooLong)
        );
    }

    #[test]
    fn only_get_and_gets_lines_may_grow_past_max_line() {
        let keys = " k".repeat(MAX_LINE);
        for verb in ["get", "gets", "  get"] {
            let line = format!("{verb}{keys}");
            assert_eq!(
                parse(line.as_bytes(), &LIMITS),
                Parsed::Incomplete,
                "{verb}"
            );
        }
        // memcached's own test: a gat, or a get after over 100 spaces, is
        // held to MAX_LINE while its newline has not come.
        let indented = format!("{}get", " ".repeat(MAX_MULTIGET_INDENT + 1));
        for verb in ["gat 0", "gats 0", indented.as_str()] {
            let line = format!("{verb}{keys}");
            assert_eq!(
                parse(line.as_bytes(), &LIMITS),
                Parsed::Close(ErrorReply::LineTooLong),
                "{verb}"
            );
            // Whole, it is served.
            let line = format!("{verb}{keys}\r\n");
            assert!(
                matches!(parse(line.as_bytes(), &LIMITS), Parsed::Request { .. }),
                "{verb}"
            );
        }
    }

    #[test]
    fn encode_then_parse_round_trips() {
        let reqs = [
            Request::Keyed(Keyed::Store(Storage {
                kind: StoreKind::Cas,
                key: b"k",
                flags: 1,
                exptime: 100,
                cas: 7,
                data: b"v\r\nv",
                noreply: true,
            })),
            Request::Keyed(Keyed::Arith {
                kind: ArithKind::Decr,
                key: b"n",
                delta: 3,
                noreply: false,
            }),
            Request::Keyed(Keyed::Touch {
                key: b"t",
                exptime: -5,
                noreply: true,
            }),
            Request::Keyed(Keyed::Delete {
                key: b"d",
                noreply: false,
            }),
            Request::Version,
        ];
        for r in reqs {
            let mut wire = Vec::new();
            r.encode(&mut wire);
            assert_eq!(req(&wire), r);
        }
    }

    #[test]
    fn a_too_large_request_encodes_as_its_line_and_data_of_its_length() {
        let small = Limits { max_item_size: 4 };
        for r in [
            Request::Keyed(Keyed::StoreTooLarge {
                kind: StoreKind::Cas,
                key: b"k",
                noreply: true,
                swallow: 12,
            }),
            Request::Keyed(Keyed::MetaTooLarge {
                key: b"m",
                base64: false,
                swallow: 7,
            }),
            Request::Keyed(Keyed::MetaTooLarge {
                key: b"Zm9v",
                base64: true,
                swallow: 7,
            }),
        ] {
            let mut wire = Vec::new();
            r.encode(&mut wire);
            let Parsed::Request { request, consumed } = parse(&wire, &small) else {
                panic!("{wire:?} is not a request");
            };
            assert_eq!(request, r);
            assert_eq!(consumed + r.swallow(), wire.len(), "{wire:?}");
        }
    }
    #[test]
    fn a_too_large_meta_set_is_refused_for_its_flags_first() {
        let small = Limits { max_item_size: 4 };
        // Its flags' errors first, swallowing the data block as it comes.
        for (line, error) in [
            (&b"ms k 10 zz\r\n"[..], ErrorReply::MetaInvalidFlag),
            (b"ms k 10 MZ\r\n", ErrorReply::MetaSetMode),
            (b"ms A=== 10 b\r\n", ErrorReply::MetaDecodingKey),
        ] {
            assert_eq!(
                parse(line, &small),
                Parsed::Invalid {
                    error,
                    noreply: false,
                    consumed: line.len(),
                    swallow: 12,
                },
                "{line:?}"
            );
        }
        // A base64 key routes, and is deleted, by its decoded bytes.
        let Parsed::Request { request, .. } = parse(b"ms Zm9v 10 b q\r\n", &small) else {
            panic!("not a request");
        };
        let mut buf = [0u8; MAX_KEY_LEN];
        assert_eq!(request.routing_key(&mut buf), Some(&b"foo"[..]));
    }
}
