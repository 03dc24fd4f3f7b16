//! Replies: every string ferrocache can send on the text protocol.

/// Every error line, in one place. Strings match memcached 1.6.18 where
/// memcached has the case; the authentication ones follow IronCache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorReply {
    /// Unknown command or wrong number of tokens.
    Error,
    BadCommandLine,
    BadDataChunk,
    InvalidExptime,
    InvalidDelta,
    NonNumeric,
    DeleteUsage,
    TooLarge,
    /// append/prepend result too large, or no room could be made.
    OutOfMemoryStoring,
    LineTooLong,
    AuthRequired,
    AuthFailed,
    BadAuthFormat,
    TooManyConnections,
    DetailUsage,
    /// `shutdown`, which a shared cache never takes from a client: memcached's
    /// answer without `-A`.
    ShutdownDisabled,
    // Meta commands' own error lines (memcached 1.6.18).
    MetaInvalidFlag,
    MetaDuplicateFlag,
    MetaBadToken,
    MetaOpaqueTooLong,
    MetaModeLength,
    MetaSetMode,
    MetaArithMode,
    MetaInvalidOrDuplicateFlag,
    MetaDecodingKey,
    MetaBadDelta,
    MetaBadInitial,
    /// `mg` with 20 words or more (memcached's MFLAG_MAX_OPT_LENGTH).
    MetaFlagsAreTooLong,
    /// `ms`, `md` and `ma` with 20 words or more.
    MetaFlagsTooLong,
    /// The handshake would open a namespace past --max-namespaces.
    TooManyCaches,
    /// The project has its `connections=` quota bound already.
    TooManyProjectConnections,
}

impl ErrorReply {
    pub fn line(self) -> &'static [u8] {
        match self {
            ErrorReply::Error => b"ERROR\r\n",
            ErrorReply::BadCommandLine => b"CLIENT_ERROR bad command line format\r\n",
            ErrorReply::BadDataChunk => b"CLIENT_ERROR bad data chunk\r\n",
            ErrorReply::InvalidExptime => b"CLIENT_ERROR invalid exptime argument\r\n",
            ErrorReply::InvalidDelta => b"CLIENT_ERROR invalid numeric delta argument\r\n",
            ErrorReply::NonNumeric => {
                b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n"
            }
            ErrorReply::DeleteUsage => {
                b"CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n"
            }
            ErrorReply::TooLarge => b"SERVER_ERROR object too large for cache\r\n",
            ErrorReply::OutOfMemoryStoring => b"SERVER_ERROR out of memory storing object\r\n",
            ErrorReply::LineTooLong => b"CLIENT_ERROR line too long\r\n",
            ErrorReply::AuthRequired => b"CLIENT_ERROR authentication required\r\n",
            ErrorReply::AuthFailed => b"CLIENT_ERROR authentication failed\r\n",
            ErrorReply::BadAuthFormat => b"CLIENT_ERROR bad authentication token format\r\n",
            ErrorReply::TooManyConnections => b"SERVER_ERROR too many open connections\r\n",
            ErrorReply::DetailUsage => b"CLIENT_ERROR usage: stats detail on|off|dump\r\n",
            ErrorReply::ShutdownDisabled => b"ERROR: shutdown not enabled\r\n",
            ErrorReply::MetaInvalidFlag => b"CLIENT_ERROR invalid flag\r\n",
            ErrorReply::MetaDuplicateFlag => b"CLIENT_ERROR duplicate flag\r\n",
            ErrorReply::MetaBadToken => b"CLIENT_ERROR bad token in command line format\r\n",
            ErrorReply::MetaOpaqueTooLong => b"CLIENT_ERROR opaque token too long\r\n",
            ErrorReply::MetaModeLength => b"CLIENT_ERROR incorrect length for M token\r\n",
            ErrorReply::MetaSetMode => b"CLIENT_ERROR invalid mode for ms M token\r\n",
            ErrorReply::MetaArithMode => b"CLIENT_ERROR invalid mode for ma M token\r\n",
            ErrorReply::MetaInvalidOrDuplicateFlag => b"CLIENT_ERROR invalid or duplicate flag\r\n",
            ErrorReply::MetaDecodingKey => b"CLIENT_ERROR error decoding key\r\n",
            ErrorReply::MetaBadDelta => b"CLIENT_ERROR invalid numeric delta value\r\n",
            ErrorReply::MetaBadInitial => b"CLIENT_ERROR invalid numeric initial value\r\n",
            ErrorReply::MetaFlagsAreTooLong => b"CLIENT_ERROR options flags are too long\r\n",
            ErrorReply::MetaFlagsTooLong => b"CLIENT_ERROR options flags too long\r\n",
            ErrorReply::TooManyCaches => b"SERVER_ERROR too many caches\r\n",
            ErrorReply::TooManyProjectConnections => {
                b"SERVER_ERROR too many connections for this project\r\n"
            }
        }
    }
}

/// A reply to one request (or one part of a multi-key reply).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Response<'a> {
    Stored,
    NotStored,
    Exists,
    NotFound,
    Deleted,
    Touched,
    Ok,
    Reset,
    /// Closes a retrieval or stats reply.
    End,
    /// incr/decr result.
    Number(u64),
    /// One hit of a retrieval command; `cas` only for gets/gats.
    Value {
        key: &'a [u8],
        flags: u32,
        cas: Option<u64>,
        data: &'a [u8],
    },
    Version(&'a str),
    Stat(&'a str, &'a str),
    Error(ErrorReply),
    /// A bare meta status line (`MN`, or `HD` to a meta handshake).
    Meta(MetaCode),
}

/// The two-letter status of a meta reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetaCode {
    /// Success without a value (STORED, DELETED, a hit without `v`).
    Hd,
    /// A hit with its value: `VA <size>`.
    Va,
    /// A miss (mg, me).
    En,
    /// NOT_FOUND.
    Nf,
    /// NOT_STORED.
    Ns,
    /// EXISTS.
    Ex,
    /// `mn`'s answer.
    Mn,
    /// `me`'s answer line.
    Me,
}

impl MetaCode {
    pub fn word(self) -> &'static [u8] {
        match self {
            MetaCode::Hd => b"HD",
            MetaCode::Va => b"VA",
            MetaCode::En => b"EN",
            MetaCode::Nf => b"NF",
            MetaCode::Ns => b"NS",
            MetaCode::Ex => b"EX",
            MetaCode::Mn => b"MN",
            MetaCode::Me => b"ME",
        }
    }
}

/// Appends the wire form of `response` to `out`.
pub fn compose(response: &Response<'_>, out: &mut Vec<u8>) {
    let line: &[u8] = match *response {
        Response::Stored => b"STORED\r\n",
        Response::NotStored => b"NOT_STORED\r\n",
        Response::Exists => b"EXISTS\r\n",
        Response::NotFound => b"NOT_FOUND\r\n",
        Response::Deleted => b"DELETED\r\n",
        Response::Touched => b"TOUCHED\r\n",
        Response::Ok => b"OK\r\n",
        Response::Reset => b"RESET\r\n",
        Response::End => b"END\r\n",
        Response::Error(e) => e.line(),
        Response::Meta(code) => {
            out.extend_from_slice(code.word());
            out.extend_from_slice(b"\r\n");
            return;
        }
        Response::Number(n) => {
            push_u64(out, n);
            out.extend_from_slice(b"\r\n");
            return;
        }
        Response::Value {
            key,
            flags,
            cas,
            data,
        } => {
            out.reserve(key.len() + data.len() + 48);
            out.extend_from_slice(b"VALUE ");
            out.extend_from_slice(key);
            out.push(b' ');
            push_u64(out, flags as u64);
            out.push(b' ');
            push_u64(out, data.len() as u64);
            if let Some(cas) = cas {
                out.push(b' ');
                push_u64(out, cas);
            }
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(data);
            out.extend_from_slice(b"\r\n");
            return;
        }
        Response::Version(v) => {
            out.extend_from_slice(b"VERSION ");
            out.extend_from_slice(v.as_bytes());
            out.extend_from_slice(b"\r\n");
            return;
        }
        Response::Stat(name, value) => {
            out.extend_from_slice(b"STAT ");
            out.extend_from_slice(name.as_bytes());
            out.push(b' ');
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
            return;
        }
    };
    out.extend_from_slice(line);
}

/// Decimal formatting without going through `fmt`.
pub(crate) fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(r: Response) -> Vec<u8> {
        let mut out = Vec::new();
        compose(&r, &mut out);
        out
    }

    #[test]
    fn value_lines() {
        let r = Response::Value {
            key: b"k",
            flags: 4294967295,
            cas: None,
            data: b"a\r\nb",
        };
        assert_eq!(bytes(r), b"VALUE k 4294967295 4\r\na\r\nb\r\n");
        let r = Response::Value {
            key: b"k",
            flags: 0,
            cas: Some(u64::MAX),
            data: b"",
        };
        assert_eq!(bytes(r), b"VALUE k 0 0 18446744073709551615\r\n\r\n");
    }

    #[test]
    fn simple_lines() {
        assert_eq!(bytes(Response::Number(0)), b"0\r\n");
        assert_eq!(bytes(Response::Stat("pid", "12")), b"STAT pid 12\r\n");
        assert_eq!(bytes(Response::Error(ErrorReply::Error)), b"ERROR\r\n");
        assert_eq!(bytes(Response::Version("1.6.18")), b"VERSION 1.6.18\r\n");
    }
}
