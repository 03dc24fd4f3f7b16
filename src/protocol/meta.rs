//! Grammar of memcached 1.6.18's meta commands: `mg`, `ms`, `md`, `ma`,
//! `mn`, `me`.
//!
//! Owns turning a meta command line (and `ms`'s data block) into a
//! [`Meta`] request, the flag rules (which flags exist, duplicates, token
//! syntax, each command's error line) and the return-flag part of meta
//! replies ([`push_return_flags`]). Every rule here was checked against the
//! memcached 1.6.18 binary, which wins where it differs from its document.
//! It never touches a store: what a flag *does* is the shard's business.

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, PAD};
use base64::engine::Engine;

use super::number::{i32_token, i64_token, u64_token};
use super::reply::{push_u64, ErrorReply};
use super::request::{
    Handshake, Keyed, Limits, Meta, MetaCommand, MetaFlags, MetaSetMode, Parsed, Request,
};
use super::MAX_KEY_LEN;

/// Opaque tokens (`O...`, flag letter included) may be this long.
const MAX_OPAQUE: usize = 32;
/// A meta line of this many words or more is refused (memcached's
/// `ntokens > MFLAG_MAX_OPT_LENGTH`, with 20, its tokens including one
/// for the line's end).
const MAX_WORDS: usize = 20;

/// A meta key token's bytes: the token, or with `b` its base64 decoding
/// (into `buf`), which the parser checked.
pub(crate) fn key_bytes<'b>(
    token: &'b [u8],
    base64: bool,
    buf: &'b mut [u8; MAX_KEY_LEN],
) -> &'b [u8] {
    if base64 {
        let n = base64_decode(token, buf).unwrap_or(0);
        &buf[..n]
    } else {
        token
    }
}

impl<'a> Meta<'a> {
    /// The key's bytes: the token, or its base64 decoding (into `buf`).
    /// The parser checked that a base64 key decodes.
    pub fn key<'b>(&'b self, buf: &'b mut [u8; MAX_KEY_LEN]) -> &'b [u8] {
        key_bytes(self.key, self.flags.base64, buf)
    }

    /// Whether this is the IronCache handshake in meta form: `ms oauth`.
    pub fn is_handshake(&self) -> bool {
        self.command == MetaCommand::Set && !self.flags.base64 && self.key == b"oauth"
    }
}

impl Handshake<'_> {
    /// Appends the success reply: `STORED`, or `HD` with the meta return
    /// flags (`c0`, `koauth`, `O...`).
    pub fn compose_success(&self, out: &mut Vec<u8>) {
        match self.meta {
            None => out.extend_from_slice(b"STORED\r\n"),
            Some(tokens) => {
                out.extend_from_slice(b"HD");
                let fields = ReturnFields {
                    cas: Some(0),
                    key: Some((b"oauth", false)),
                    ..Default::default()
                };
                push_return_flags(tokens, &fields, out);
                out.extend_from_slice(b"\r\n");
            }
        }
    }
}

/// Parses a line that starts with a meta command word; `None` if `command`
/// is not one. `line` excludes its terminator; `line_len` includes it.
pub(crate) fn parse_meta<'a>(
    command: &[u8],
    rest: &'a [u8],
    buf: &'a [u8],
    line_len: usize,
    limits: &Limits,
) -> Option<Parsed<'a>> {
    let command = match command {
        b"mg" => MetaCommand::Get,
        b"ms" => MetaCommand::Set,
        b"md" => MetaCommand::Delete,
        b"ma" => MetaCommand::Arith,
        b"me" => MetaCommand::Debug,
        b"mn" => {
            return Some(Parsed::Request {
                request: Request::MetaNoOp,
                consumed: line_len,
            })
        }
        _ => return None,
    };
    let invalid = |error| Parsed::Invalid {
        error,
        noreply: false,
        consumed: line_len,
        swallow: 0,
    };
    let (key, rest) = next(rest);
    let Some(key) = key else {
        return Some(invalid(if command == MetaCommand::Debug {
            ErrorReply::BadCommandLine
        } else {
            ErrorReply::Error
        }));
    };
    if key.len() > MAX_KEY_LEN {
        return Some(invalid(ErrorReply::BadCommandLine));
    }
    // memcached refuses a line of 20 words or more before it reads its
    // flags, or an `ms`'s length (it counts the line's end as a token, and
    // allows 20); `me` reads only the word after its key.
    if command != MetaCommand::Debug && 2 + words(rest) >= MAX_WORDS {
        return Some(invalid(if command == MetaCommand::Get {
            ErrorReply::MetaFlagsAreTooLong
        } else {
            ErrorReply::MetaFlagsTooLong
        }));
    }
    if command == MetaCommand::Debug {
        // `me <key> [b]`: memcached reads only the word after the key.
        let base64 = next(rest).0 == Some(b"b");
        let flags = MetaFlags {
            base64,
            ..MetaFlags::empty(b"")
        };
        if base64 && base64_decode(key, &mut [0; MAX_KEY_LEN]).is_none() {
            return Some(invalid(ErrorReply::BadCommandLine));
        }
        return Some(finish_key(command, key, flags, &[], line_len, invalid));
    }
    if command != MetaCommand::Set {
        let flags = match check_flags(rest, key) {
            Ok(flags) => flags,
            // ma and md answer one line for every flag error, a key that
            // does not decode included.
            Err(_) if matches!(command, MetaCommand::Arith | MetaCommand::Delete) => {
                return Some(invalid(ErrorReply::MetaInvalidOrDuplicateFlag))
            }
            Err(e) => return Some(invalid(e)),
        };
        let flags = if command == MetaCommand::Arith {
            match arith_mode(flags.mode) {
                Ok(decr) => MetaFlags { decr, ..flags },
                Err(e) => return Some(invalid(e)),
            }
        } else {
            flags
        };
        // md refuses a long opaque before it deletes anything.
        if command == MetaCommand::Delete && flags.long_opaque.is_some() {
            return Some(invalid(ErrorReply::MetaOpaqueTooLong));
        }
        return Some(finish_key(command, key, flags, &[], line_len, invalid));
    }

    // ms <key> <datalen> <flags>*
    let (len, rest) = next(rest);
    // A C long kept in 32 bits, as the classic commands' lengths.
    let Some(len) = len
        .and_then(i32_token)
        .filter(|&n| (0..=i32::MAX - 2).contains(&n))
    else {
        return Some(invalid(ErrorReply::BadCommandLine));
    };
    let len = len as usize;
    let end = line_len + len + 2;
    // A bad line is answered at once and its data block discarded as it
    // comes, as memcached does.
    let swallowed = |error| Parsed::Invalid {
        error,
        noreply: false,
        consumed: line_len,
        swallow: len + 2,
    };
    let flags = match check_flags(rest, key) {
        Ok(flags) => flags,
        Err(e) => return Some(swallowed(e)),
    };
    let set_mode = match set_mode(flags.mode) {
        Ok(mode) => mode,
        Err(e) => return Some(swallowed(e)),
    };
    let flags = MetaFlags { set_mode, ..flags };
    // After the other tokens' errors and the mode's, as memcached's ms.
    if flags.long_opaque.is_some() {
        return Some(swallowed(ErrorReply::MetaOpaqueTooLong));
    }
    if !key_ok(key) {
        return Some(swallowed(ErrorReply::BadCommandLine));
    }
    // A value too large for the limit is not waited for either, counted
    // with the key memcached stores: a `b` key's decoding.
    let key_len = key_bytes(key, flags.base64, &mut [0; MAX_KEY_LEN]).len();
    if limits.too_large(key_len, flags.client_flags, len) {
        return Some(Parsed::Request {
            request: Request::Keyed(Keyed::MetaTooLarge {
                key,
                base64: flags.base64,
                swallow: len + 2,
            }),
            consumed: line_len,
        });
    }
    if buf.len() < end {
        return Some(Parsed::Incomplete);
    }
    if &buf[end - 2..end] != b"\r\n" {
        return Some(Parsed::Invalid {
            error: ErrorReply::BadDataChunk,
            noreply: false,
            consumed: end,
            swallow: 0,
        });
    }
    Some(Parsed::Request {
        request: Request::Keyed(Keyed::Meta(Meta {
            command,
            key,
            flags,
            data: &buf[line_len..end - 2],
        })),
        consumed: end,
    })
}

fn finish_key<'a>(
    command: MetaCommand,
    key: &'a [u8],
    flags: MetaFlags<'a>,
    data: &'a [u8],
    line_len: usize,
    invalid: impl Fn(ErrorReply) -> Parsed<'a>,
) -> Parsed<'a> {
    if !key_ok(key) {
        return invalid(ErrorReply::BadCommandLine);
    }
    Parsed::Request {
        request: Request::Keyed(Keyed::Meta(Meta {
            command,
            key,
            flags,
            data,
        })),
        consumed: line_len,
    }
}

/// Keys have no control bytes (memcached's tokenizer would let them
/// through; ferrocache refuses them on every command).
fn key_ok(key: &[u8]) -> bool {
    key.iter().all(|&b| b > b' ' && b != 0x7f)
}

impl MetaFlags<'_> {
    fn empty(tokens: &[u8]) -> MetaFlags<'_> {
        MetaFlags {
            tokens,
            base64: false,
            value: false,
            quiet: false,
            no_update: false,
            invalidate: false,
            vivify: None,
            recache: None,
            ttl: None,
            client_flags: 0,
            compare_cas: None,
            set_mode: MetaSetMode::Set,
            decr: false,
            return_cas: false,
            mode: None,
            initial: 0,
            delta: 1,
            long_opaque: None,
        }
    }

    /// The flag letters in the order the client sent them, up to an `O`
    /// over 32 bytes: `mg` and `ma` act on their flags left to right, as
    /// memcached does, and stop there with its error.
    pub fn acting_letters(&self) -> impl Iterator<Item = u8> + '_ {
        flag_letters(self.tokens).take(self.long_opaque.unwrap_or(usize::MAX))
    }
}

/// memcached's `_meta_flag_preparse`: every flag known, none twice, tokens
/// well formed, and with `b` a `key` that decodes (memcached decodes it at
/// the `b` token's place). An unknown or repeated flag stops at once; other
/// errors let the scan go on, and the last message set is reported.
fn check_flags<'a>(tokens: &'a [u8], key: &[u8]) -> Result<MetaFlags<'a>, ErrorReply> {
    let mut flags = MetaFlags::empty(tokens);
    // One bit per flag letter seen (letters are ASCII, below 127).
    let mut seen = 0u128;
    let mut error = None;
    let mut rest = tokens;
    let mut at = 0;
    while let (Some(tok), after) = next(rest) {
        rest = after;
        at += 1;
        let o = tok[0];
        if o >= 127 || seen & (1 << o) != 0 {
            return Err(ErrorReply::MetaDuplicateFlag);
        }
        seen |= 1 << o;
        let arg = &tok[1..];
        let ttl = || i64_token(arg).map(|t| t as i32 as i64);
        match o {
            b'b' => {
                flags.base64 = true;
                if base64_decode(key, &mut [0; MAX_KEY_LEN]).is_none() {
                    error = Some(ErrorReply::MetaDecodingKey);
                }
            }
            b'N' => match ttl() {
                Some(t) => flags.vivify = Some(t),
                None => error = Some(ErrorReply::MetaBadToken),
            },
            b'T' => match ttl() {
                Some(t) => flags.ttl = Some(t),
                None => error = Some(ErrorReply::MetaBadToken),
            },
            b'R' => match ttl() {
                Some(t) => flags.recache = Some(t),
                None => error = Some(ErrorReply::MetaBadToken),
            },
            // Its length is each command's to check, not the preparse's.
            b'O' => {
                if tok.len() > MAX_OPAQUE {
                    flags.long_opaque = Some(at - 1);
                }
            }
            b'c' => flags.return_cas = true,
            b'P' | b'L' | b'k' | b's' | b't' | b'f' | b'l' | b'h' => {}
            b'v' => flags.value = true,
            b'u' => flags.no_update = true,
            b'q' => flags.quiet = true,
            // memcached reads flags as an unsigned long and keeps 32 bits.
            // A bad one sets no message of its own: the reply is the last
            // message another token set, else "bad command line format".
            b'F' => match u64_token(arg) {
                Some(f) => flags.client_flags = f as u32,
                None => {
                    error.get_or_insert(ErrorReply::BadCommandLine);
                }
            },
            b'C' => match u64_token(arg) {
                Some(c) => flags.compare_cas = Some(c),
                None => error = Some(ErrorReply::MetaBadToken),
            },
            b'M' => {
                if tok.len() == 2 {
                    flags.mode = Some(tok[1]);
                } else {
                    error = Some(ErrorReply::MetaModeLength);
                }
            }
            b'J' => match u64_token(arg) {
                Some(j) => flags.initial = j,
                None => error = Some(ErrorReply::MetaBadInitial),
            },
            b'D' => match u64_token(arg) {
                Some(d) => flags.delta = d,
                None => error = Some(ErrorReply::MetaBadDelta),
            },
            b'I' => flags.invalidate = true,
            _ => return Err(ErrorReply::MetaInvalidFlag),
        }
    }
    match error {
        Some(e) => Err(e),
        None => Ok(flags),
    }
}

/// The `M` token of `ms`.
fn set_mode(mode: Option<u8>) -> Result<MetaSetMode, ErrorReply> {
    match mode {
        None | Some(b'S') => Ok(MetaSetMode::Set),
        Some(b'E') => Ok(MetaSetMode::Add),
        Some(b'R') => Ok(MetaSetMode::Replace),
        Some(b'A') => Ok(MetaSetMode::Append),
        Some(b'P') => Ok(MetaSetMode::Prepend),
        Some(_) => Err(ErrorReply::MetaSetMode),
    }
}

/// The `M` token of `ma`: whether it decrements.
fn arith_mode(mode: Option<u8>) -> Result<bool, ErrorReply> {
    match mode {
        None | Some(b'I' | b'+') => Ok(false),
        Some(b'D' | b'-') => Ok(true),
        Some(_) => Err(ErrorReply::MetaArithMode),
    }
}

/// What an item looks like to the return flags.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReturnFields<'a> {
    pub cas: Option<u64>,
    pub flags: Option<u32>,
    /// Value size.
    pub size: Option<usize>,
    /// TTL remaining (-1: none), before a `T` in this request, and after.
    pub ttl: Option<(i64, i64)>,
    /// Seconds since last access.
    pub last_access: Option<u32>,
    pub hit_before: Option<bool>,
    /// The key, and whether it is binary (shown base64, with ` b`).
    pub key: Option<(&'a [u8], bool)>,
}

/// Appends ` <flag><value>` for each return flag of `tokens` the fields
/// allow, in the order the client asked: `c f h k l O s t` (`b` comes with
/// `k`). A `t` after a `T` shows the new TTL, as in memcached.
pub fn push_return_flags(tokens: &[u8], fields: &ReturnFields, out: &mut Vec<u8>) {
    let mut rest = tokens;
    let mut touched = false;
    while let (Some(tok), after) = next(rest) {
        rest = after;
        match tok[0] {
            b'T' => touched = true,
            b'c' => {
                if let Some(cas) = fields.cas {
                    out.extend_from_slice(b" c");
                    push_u64(out, cas);
                }
            }
            b'f' => {
                if let Some(f) = fields.flags {
                    out.extend_from_slice(b" f");
                    push_u64(out, u64::from(f));
                }
            }
            b'h' => {
                if let Some(h) = fields.hit_before {
                    out.extend_from_slice(if h { b" h1" } else { b" h0" });
                }
            }
            b'k' => {
                if let Some((key, binary)) = fields.key {
                    out.extend_from_slice(b" k");
                    if binary {
                        base64_encode(key, out);
                        out.extend_from_slice(b" b");
                    } else {
                        out.extend_from_slice(key);
                    }
                }
            }
            b'l' => {
                if let Some(l) = fields.last_access {
                    out.extend_from_slice(b" l");
                    push_u64(out, u64::from(l));
                }
            }
            b'O' => {
                out.push(b' ');
                out.extend_from_slice(tok);
            }
            b's' => {
                if let Some(s) = fields.size {
                    out.extend_from_slice(b" s");
                    push_u64(out, s as u64);
                }
            }
            b't' => {
                if let Some((before, after)) = fields.ttl {
                    out.extend_from_slice(b" t");
                    push_i64(out, if touched { after } else { before });
                }
            }
            _ => {}
        }
    }
}

/// The flag letters of `tokens`, in the order the client sent them: `mg`
/// and `ma` apply `T`, `N` and `R` and show `t` in that order, as memcached
/// does.
pub fn flag_letters(tokens: &[u8]) -> impl Iterator<Item = u8> + '_ {
    let mut rest = tokens;
    std::iter::from_fn(move || {
        let (tok, after) = next(rest);
        rest = after;
        tok.map(|t| t[0])
    })
}

pub(crate) fn push_i64(out: &mut Vec<u8>, n: i64) {
    if n < 0 {
        out.push(b'-');
    }
    push_u64(out, n.unsigned_abs());
}

/// The words of `s` (runs of bytes other than spaces).
fn words(s: &[u8]) -> usize {
    s.split(|&b| b == b' ').filter(|w| !w.is_empty()).count()
}

fn next(s: &[u8]) -> (Option<&[u8]>, &[u8]) {
    let start = match s.iter().position(|&b| b != b' ') {
        Some(i) => i,
        None => return (None, &[]),
    };
    let s = &s[start..];
    match s.iter().position(|&b| b == b' ') {
        Some(end) => (Some(&s[..end]), &s[end..]),
        None => (Some(s), &[]),
    }
}

/// Standard base64 with padding, for the keys meta replies return (`k`
/// with `b`): memcached encodes them the standard way.
const BASE64: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, PAD);

/// Decodes a `b` key into `out` as memcached 1.6.18's own decoder does
/// (its `base64.c`, after Jouni Malinen's): bytes outside the alphabet are
/// skipped, `=` counts as a zero digit, the digits must come in whole
/// blocks of four, and decoding stops after the first block that holds
/// padding (more than two `=` in it is an error). `None` where memcached
/// answers `CLIENT_ERROR error decoding key`: nothing decoded, or no room
/// in `out`. A general codec rejects what memcached accepts here (`Z=g=`
/// is `f` to it), so this one is written out; the differential test holds
/// it to the real binary.
pub fn base64_decode(s: &[u8], out: &mut [u8]) -> Option<usize> {
    fn digit(c: u8) -> Option<u8> {
        match c {
            b'A'..=b'Z' => Some(c - b'A'),
            b'a'..=b'z' => Some(c - b'a' + 26),
            b'0'..=b'9' => Some(c - b'0' + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            b'=' => Some(0),
            _ => None,
        }
    }
    let digits = s.iter().filter(|&&c| digit(c).is_some()).count();
    if digits == 0 || !digits.is_multiple_of(4) {
        return None;
    }
    let (mut block, mut k, mut pad, mut n) = ([0u8; 4], 0, 0, 0);
    for &c in s {
        let Some(d) = digit(c) else { continue };
        pad += usize::from(c == b'=');
        block[k] = d;
        k += 1;
        if k < 4 {
            continue;
        }
        let bytes = [
            (block[0] << 2) | (block[1] >> 4),
            (block[1] << 4) | (block[2] >> 2),
            (block[2] << 6) | block[3],
        ];
        let keep = 3usize.checked_sub(pad).filter(|&keep| keep > 0)?;
        out.get_mut(n..n + keep)?.copy_from_slice(&bytes[..keep]);
        n += keep;
        k = 0;
        if pad > 0 {
            break;
        }
    }
    (n > 0).then_some(n)
}

/// Appends the padded base64 of `data`.
pub fn base64_encode(data: &[u8], out: &mut Vec<u8>) {
    let at = out.len();
    out.resize(at + base64::encoded_len(data.len(), true).unwrap_or(0), 0);
    let n = BASE64.encode_slice(data, &mut out[at..]).unwrap_or(0);
    out.truncate(at + n);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        for data in [&b"f"[..], b"fo", b"foo", b"foob", b"\x00\xff\x10 \r\n"] {
            let mut enc = Vec::new();
            base64_encode(data, &mut enc);
            let mut buf = [0u8; MAX_KEY_LEN];
            let n = base64_decode(&enc, &mut buf).unwrap();
            assert_eq!(&buf[..n], data);
        }
        let mut buf = [0u8; MAX_KEY_LEN];
        assert_eq!(base64_decode(b"foo", &mut buf), None);
        assert_eq!(base64_decode(b"Zm9v", &mut buf), Some(3));
        assert_eq!(
            base64_decode(b"Zg==Zg==", &mut buf),
            Some(1),
            "the first padded block ends it"
        );
        // memcached's rules: padding is required, bits past the last byte
        // are ignored, `=` mid-block is a zero digit, bytes outside the
        // alphabet are skipped, and a padded block ends the key.
        assert_eq!(base64_decode(b"Zg", &mut buf), None);
        assert_eq!(base64_decode(b"Zh==", &mut buf), Some(1));
        assert_eq!(buf[0], b'f');
        assert_eq!(base64_decode(b"Z=g=", &mut buf), Some(1));
        assert_eq!(base64_decode(b"Zm9=vv==", &mut buf), Some(2));
        assert_eq!(&buf[..2], b"fo");
        assert_eq!(base64_decode(b"Zm*9v", &mut buf), Some(3));
        assert_eq!(base64_decode(b"A===", &mut buf), None);
        assert_eq!(base64_decode(b"", &mut buf), None);
        assert_eq!(base64_decode(b"Zm9v", &mut [0; 2]), None, "does not fit");
    }

    #[test]
    fn flag_errors() {
        assert_eq!(
            check_flags(b" v v", b"k"),
            Err(ErrorReply::MetaDuplicateFlag)
        );
        assert_eq!(check_flags(b" !", b"k"), Err(ErrorReply::MetaInvalidFlag));
        assert_eq!(check_flags(b" Tx", b"k"), Err(ErrorReply::MetaBadToken));
        assert_eq!(check_flags(b" Fx", b"k"), Err(ErrorReply::BadCommandLine));
        assert_eq!(check_flags(b" M", b"k"), Err(ErrorReply::MetaModeLength));
        let f = check_flags(b" v q T10 F4294967297 C5 D3 J4", b"k").unwrap();
        assert!(f.value && f.quiet);
        assert_eq!(
            (f.ttl, f.client_flags, f.compare_cas, f.delta, f.initial),
            (Some(10), 1, Some(5), 3, 4)
        );
        // A key that does not decode is the `b` token's error, in its place.
        for (tokens, error) in [
            (&b" b"[..], ErrorReply::MetaDecodingKey),
            (b" Tx b", ErrorReply::MetaDecodingKey),
            (b" b Tx", ErrorReply::MetaBadToken),
            (b" b Fx", ErrorReply::MetaDecodingKey),
            (b" b b", ErrorReply::MetaDuplicateFlag),
        ] {
            assert_eq!(check_flags(tokens, b"A==="), Err(error), "{tokens:?}");
        }
        assert!(check_flags(b" b", b"Zm9v").unwrap().base64);
    }
}
