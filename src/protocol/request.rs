//! A parsed request: what the client asked for, borrowed from the read buffer.

use super::reply::ErrorReply;
use super::MAX_KEY_LEN;

/// Which retrieval command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GetKind {
    Get,
    Gets,
    /// `gat <exptime> <key>*`
    Gat(i64),
    /// `gats <exptime> <key>*`
    Gats(i64),
}

impl GetKind {
    pub fn with_cas(self) -> bool {
        matches!(self, GetKind::Gets | GetKind::Gats(_))
    }
    pub fn touch_exptime(self) -> Option<i64> {
        match self {
            GetKind::Gat(t) | GetKind::Gats(t) => Some(t),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreKind {
    Set,
    Add,
    Replace,
    Append,
    Prepend,
    Cas,
}

impl StoreKind {
    pub fn verb(self) -> &'static str {
        match self {
            StoreKind::Set => "set",
            StoreKind::Add => "add",
            StoreKind::Replace => "replace",
            StoreKind::Append => "append",
            StoreKind::Prepend => "prepend",
            StoreKind::Cas => "cas",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArithKind {
    Incr,
    Decr,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatsGroup<'a> {
    General,
    Settings,
    Reset,
    Items,
    Slabs,
    Sizes,
    /// `stats extstore`: memcached built with external storage, which it
    /// has not turned on, answers it with nothing.
    Extstore,
    /// `stats detail on|off|dump`, with its argument.
    Detail(&'a [u8]),
    /// Any other group name; memcached answers `ERROR`.
    Other(&'a [u8]),
}

/// The keys of a retrieval command: the raw, already validated key list,
/// split lazily so a 1,000-key get allocates nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keys<'a> {
    raw: &'a [u8],
}

impl<'a> Keys<'a> {
    /// `raw` must already be validated by the parser.
    pub(crate) fn new(raw: &'a [u8]) -> Keys<'a> {
        Keys { raw }
    }

    pub fn iter(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.raw.split(|&b| b == b' ').filter(|k| !k.is_empty())
    }

    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }

    /// A key list of one (already validated) key.
    pub fn single(key: &'a [u8]) -> Keys<'a> {
        Keys { raw: key }
    }
}

/// The IronCache handshake, as either form carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Handshake<'a> {
    /// `TOKEN PROJECT_ID CACHE_NAME`
    pub value: &'a [u8],
    /// Whether success goes unanswered.
    pub noreply: bool,
    /// The flags of an `ms` handshake (`None`: `set oauth`); its `HD`
    /// echoes the return flags asked for, as any `ms` reply does.
    pub meta: Option<&'a [u8]>,
}

/// A storage command: `set`, `add`, `replace`, `append`, `prepend` or
/// `cas`, with its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Storage<'a> {
    pub kind: StoreKind,
    pub key: &'a [u8],
    pub flags: u32,
    pub exptime: i64,
    /// The compare-and-swap unique; 0 unless `kind` is `Cas`.
    pub cas: u64,
    pub data: &'a [u8],
    pub noreply: bool,
}

/// One request. Keys and data borrow the connection's read buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request<'a> {
    /// A request for one key: it runs on the shard that owns the key.
    Keyed(Keyed<'a>),
    /// A retrieval of any number of keys: each runs as a [`Keyed::Get`] on
    /// its own key's shard, and one `END` closes the reply.
    Get {
        kind: GetKind,
        keys: Keys<'a>,
    },
    FlushAll {
        delay: i64,
        noreply: bool,
    },
    Stats(StatsGroup<'a>),
    Version,
    Verbosity {
        noreply: bool,
    },
    Quit,
    /// `mn`: answers `MN` in its place.
    MetaNoOp,
}

/// A request that names one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keyed<'a> {
    /// One key of a retrieval.
    Get {
        kind: GetKind,
        key: &'a [u8],
    },
    Store(Storage<'a>),
    /// A storage command whose value exceeds the item size limit. Its data
    /// block (`swallow` bytes, \r\n included) follows and must be discarded.
    StoreTooLarge {
        kind: StoreKind,
        key: &'a [u8],
        noreply: bool,
        swallow: usize,
    },
    Delete {
        key: &'a [u8],
        noreply: bool,
    },
    Arith {
        kind: ArithKind,
        key: &'a [u8],
        delta: u64,
        noreply: bool,
    },
    Touch {
        key: &'a [u8],
        exptime: i64,
        noreply: bool,
    },
    /// A meta command (`mg`, `ms`, `md`, `ma`, `me`).
    Meta(Meta<'a>),
    /// An `ms` whose value exceeds the item size limit, its flags
    /// otherwise valid; `key` is the token as sent, base64 with `b`. Its
    /// data block (`swallow` bytes) is discarded, and the key's item
    /// deleted.
    MetaTooLarge {
        key: &'a [u8],
        base64: bool,
        swallow: usize,
    },
}

/// How long a request's reply can be, in the terms the forwarding envelope
/// reserves room by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyBound {
    /// A status or error line, or a number: at most 256 bytes.
    Line,
    /// A meta reply line without a value. It may echo the key (`k`, up to
    /// 250 bytes) and an opaque (`O`, up to 32) beside numbers: at most 512.
    MetaLine,
    /// A value with its header: up to the item size limit, plus 512.
    Value,
}

impl<'a> Keyed<'a> {
    /// The longest reply this request can have.
    pub fn reply_bound(&self) -> ReplyBound {
        match self {
            Keyed::Get { .. } => ReplyBound::Value,
            Keyed::Meta(meta) if meta.command == MetaCommand::Get && meta.flags.value => {
                ReplyBound::Value
            }
            // `ma ... v` returns a number as its value.
            Keyed::Meta(_) => ReplyBound::MetaLine,
            Keyed::Store(_)
            | Keyed::StoreTooLarge { .. }
            | Keyed::Delete { .. }
            | Keyed::Arith { .. }
            | Keyed::Touch { .. }
            | Keyed::MetaTooLarge { .. } => ReplyBound::Line,
        }
    }

    /// The key as sent (a meta command's may be base64: see
    /// [`Keyed::routing_key`]).
    pub fn key(&self) -> &'a [u8] {
        match *self {
            Keyed::Get { key, .. }
            | Keyed::Store(Storage { key, .. })
            | Keyed::StoreTooLarge { key, .. }
            | Keyed::Delete { key, .. }
            | Keyed::Arith { key, .. }
            | Keyed::Touch { key, .. }
            | Keyed::MetaTooLarge { key, .. } => key,
            Keyed::Meta(meta) => meta.key,
        }
    }

    /// The key's bytes, which decide the shard that runs the request (a
    /// meta command's base64 key decoded into `buf`).
    pub fn routing_key<'b>(&'b self, buf: &'b mut [u8; MAX_KEY_LEN]) -> &'b [u8] {
        match *self {
            Keyed::Meta(ref meta) => meta.key(buf),
            Keyed::MetaTooLarge { key, base64, .. } => super::meta::key_bytes(key, base64, buf),
            _ => self.key(),
        }
    }

    /// Whether the client asked not to be answered.
    pub fn noreply(&self) -> bool {
        match *self {
            Keyed::Store(Storage { noreply, .. })
            | Keyed::StoreTooLarge { noreply, .. }
            | Keyed::Delete { noreply, .. }
            | Keyed::Arith { noreply, .. }
            | Keyed::Touch { noreply, .. } => noreply,
            Keyed::Get { .. } | Keyed::Meta(_) | Keyed::MetaTooLarge { .. } => false,
        }
    }
}

impl<'a> Request<'a> {
    /// The key of a single-key request (a `get` yields its first key).
    pub fn key(&self) -> Option<&'a [u8]> {
        match self {
            Request::Keyed(keyed) => Some(keyed.key()),
            Request::Get { keys, .. } => keys.iter().next(),
            _ => None,
        }
    }

    /// The bytes that decide the shard of a single-key request (a `get`'s
    /// first key; a meta command's base64 key decoded into `buf`), as
    /// [`Keyed::routing_key`] gives them.
    pub fn routing_key<'b>(&'b self, buf: &'b mut [u8; MAX_KEY_LEN]) -> Option<&'b [u8]> {
        match self {
            Request::Keyed(keyed) => Some(keyed.routing_key(buf)),
            _ => self.key(),
        }
    }

    /// Whether the request may run before a session is bound: it reads and
    /// changes nothing of any cache.
    pub fn before_session(&self) -> bool {
        matches!(
            self,
            Request::Version | Request::Verbosity { .. } | Request::Quit
        )
    }

    /// Bytes of a too-large value that follow the request and are to be
    /// discarded.
    pub fn swallow(&self) -> usize {
        match *self {
            Request::Keyed(Keyed::StoreTooLarge { swallow, .. })
            | Request::Keyed(Keyed::MetaTooLarge { swallow, .. }) => swallow,
            _ => 0,
        }
    }

    /// Whether the client asked not to be answered.
    pub fn noreply(&self) -> bool {
        match *self {
            Request::Keyed(keyed) => keyed.noreply(),
            Request::FlushAll { noreply, .. } | Request::Verbosity { noreply } => noreply,
            _ => false,
        }
    }

    /// The IronCache handshake's value and whether its answer is silenced:
    /// `set oauth` (classic) or `ms oauth` (meta; `q` silences `HD` only).
    /// The grammar decides this, so transport never matches a key.
    pub fn handshake(&self) -> Option<Handshake<'a>> {
        match *self {
            Request::Keyed(Keyed::Store(Storage {
                kind: StoreKind::Set,
                key: b"oauth",
                data,
                noreply,
                ..
            })) => Some(Handshake {
                value: data,
                noreply,
                meta: None,
            }),
            Request::Keyed(Keyed::Meta(meta)) if meta.is_handshake() => Some(Handshake {
                value: meta.data,
                noreply: meta.flags.quiet,
                meta: Some(meta.flags.tokens),
            }),
            // Longer than any credentials may be (the data is swallowed, not
            // buffered): a handshake whose empty value is refused as badly
            // formatted.
            Request::Keyed(Keyed::StoreTooLarge {
                kind: StoreKind::Set,
                key: b"oauth",
                noreply,
                ..
            }) => Some(Handshake {
                value: b"",
                noreply,
                meta: None,
            }),
            Request::Keyed(Keyed::MetaTooLarge {
                key: b"oauth",
                base64: false,
                ..
            }) => Some(Handshake {
                value: b"",
                noreply: false,
                meta: Some(b""),
            }),
            _ => None,
        }
    }

    /// Writes the request as a client would send it (tests, fuzzing, loadgen).
    pub fn encode(&self, out: &mut Vec<u8>) {
        fn nr(out: &mut Vec<u8>, noreply: bool) {
            if noreply {
                out.extend_from_slice(b" noreply");
            }
            out.extend_from_slice(b"\r\n");
        }
        match *self {
            Request::Get { kind, keys } => {
                match kind {
                    GetKind::Get => out.extend_from_slice(b"get"),
                    GetKind::Gets => out.extend_from_slice(b"gets"),
                    GetKind::Gat(t) => out.extend_from_slice(format!("gat {t}").as_bytes()),
                    GetKind::Gats(t) => out.extend_from_slice(format!("gats {t}").as_bytes()),
                }
                for k in keys.iter() {
                    out.push(b' ');
                    out.extend_from_slice(k);
                }
                out.extend_from_slice(b"\r\n");
            }
            Request::Keyed(Keyed::Store(Storage {
                kind,
                key,
                flags,
                exptime,
                cas,
                data,
                noreply,
            })) => {
                out.extend_from_slice(kind.verb().as_bytes());
                out.push(b' ');
                out.extend_from_slice(key);
                out.extend_from_slice(format!(" {flags} {exptime} {}", data.len()).as_bytes());
                if kind == StoreKind::Cas {
                    out.extend_from_slice(format!(" {cas}").as_bytes());
                }
                nr(out, noreply);
                out.extend_from_slice(data);
                out.extend_from_slice(b"\r\n");
            }
            Request::Keyed(Keyed::Get { kind, key }) => Request::Get {
                kind,
                keys: Keys::single(key),
            }
            .encode(out),
            // A value past the size limit: the line as sent, with data of
            // the length it gave (flags, exptime and cas are not kept).
            Request::Keyed(Keyed::StoreTooLarge {
                kind,
                key,
                noreply,
                swallow,
            }) => {
                out.extend_from_slice(kind.verb().as_bytes());
                out.push(b' ');
                out.extend_from_slice(key);
                let len = swallow.saturating_sub(2);
                out.extend_from_slice(format!(" 0 0 {len}").as_bytes());
                if kind == StoreKind::Cas {
                    out.extend_from_slice(b" 0");
                }
                nr(out, noreply);
                out.resize(out.len() + len, b'x');
                out.extend_from_slice(b"\r\n");
            }
            Request::Keyed(Keyed::Delete { key, noreply }) => {
                out.extend_from_slice(b"delete ");
                out.extend_from_slice(key);
                nr(out, noreply);
            }
            Request::Keyed(Keyed::Arith {
                kind,
                key,
                delta,
                noreply,
            }) => {
                out.extend_from_slice(if kind == ArithKind::Incr {
                    b"incr "
                } else {
                    b"decr "
                });
                out.extend_from_slice(key);
                out.extend_from_slice(format!(" {delta}").as_bytes());
                nr(out, noreply);
            }
            Request::Keyed(Keyed::Touch {
                key,
                exptime,
                noreply,
            }) => {
                out.extend_from_slice(b"touch ");
                out.extend_from_slice(key);
                out.extend_from_slice(format!(" {exptime}").as_bytes());
                nr(out, noreply);
            }
            Request::FlushAll { delay, noreply } => {
                out.extend_from_slice(format!("flush_all {delay}").as_bytes());
                nr(out, noreply);
            }
            Request::Stats(group) => {
                out.extend_from_slice(b"stats");
                let name: &[u8] = match group {
                    StatsGroup::General => b"",
                    StatsGroup::Settings => b" settings",
                    StatsGroup::Reset => b" reset",
                    StatsGroup::Items => b" items",
                    StatsGroup::Slabs => b" slabs",
                    StatsGroup::Sizes => b" sizes",
                    StatsGroup::Extstore => b" extstore",
                    StatsGroup::Detail(arg) => {
                        out.extend_from_slice(b" detail ");
                        arg
                    }
                    StatsGroup::Other(g) => {
                        out.push(b' ');
                        g
                    }
                };
                out.extend_from_slice(name);
                out.extend_from_slice(b"\r\n");
            }
            Request::Version => out.extend_from_slice(b"version\r\n"),
            Request::Verbosity { noreply } => {
                out.extend_from_slice(b"verbosity 1");
                nr(out, noreply);
            }
            Request::Quit => out.extend_from_slice(b"quit\r\n"),
            Request::Keyed(Keyed::Meta(meta)) => {
                out.extend_from_slice(match meta.command {
                    MetaCommand::Get => b"mg ",
                    MetaCommand::Set => b"ms ",
                    MetaCommand::Delete => b"md ",
                    MetaCommand::Arith => b"ma ",
                    MetaCommand::Debug => b"me ",
                });
                out.extend_from_slice(meta.key);
                if meta.command == MetaCommand::Set {
                    out.extend_from_slice(format!(" {}", meta.data.len()).as_bytes());
                }
                if meta.command == MetaCommand::Debug {
                    if meta.flags.base64 {
                        out.extend_from_slice(b" b");
                    }
                } else {
                    out.extend_from_slice(meta.flags.tokens);
                }
                out.extend_from_slice(b"\r\n");
                if meta.command == MetaCommand::Set {
                    out.extend_from_slice(meta.data);
                    out.extend_from_slice(b"\r\n");
                }
            }
            Request::MetaNoOp => out.extend_from_slice(b"mn\r\n"),
            // The flags are not kept: `ms` with the length it gave.
            Request::Keyed(Keyed::MetaTooLarge {
                key,
                base64,
                swallow,
            }) => {
                let len = swallow.saturating_sub(2);
                out.extend_from_slice(b"ms ");
                out.extend_from_slice(key);
                out.extend_from_slice(format!(" {len}").as_bytes());
                if base64 {
                    out.extend_from_slice(b" b");
                }
                out.extend_from_slice(b"\r\n");
                out.resize(out.len() + len, b'x');
                out.extend_from_slice(b"\r\n");
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetaCommand {
    /// `mg`
    Get,
    /// `ms`
    Set,
    /// `md`
    Delete,
    /// `ma`
    Arith,
    /// `me`
    Debug,
}

/// `ms` modes (`M` flag).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetaSetMode {
    Set,
    Add,
    Replace,
    Append,
    Prepend,
}

/// The flags of one meta request, checked. `tokens` keeps them as sent, so
/// return flags come back in the order asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetaFlags<'a> {
    pub tokens: &'a [u8],
    /// `b`: the key is base64.
    pub base64: bool,
    /// `v`
    pub value: bool,
    /// `q`
    pub quiet: bool,
    /// `u`: no LRU bump, no hit or access-time update.
    pub no_update: bool,
    /// `I`
    pub invalidate: bool,
    /// `N<ttl>`: vivify on miss (mg) or create on miss (ma).
    pub vivify: Option<i64>,
    /// `R<ttl>`
    pub recache: Option<i64>,
    /// `T<ttl>`
    pub ttl: Option<i64>,
    /// `F<flags>`
    pub client_flags: u32,
    /// `C<cas>`
    pub compare_cas: Option<u64>,
    /// `ms` mode.
    pub set_mode: MetaSetMode,
    /// `ma` mode: true for decrement.
    pub decr: bool,
    /// `c` is among the return flags.
    pub return_cas: bool,
    /// The mode letter of an `M` token (`ms`/`ma` read it).
    pub(super) mode: Option<u8>,
    /// `J<initial>` (ma)
    pub initial: u64,
    /// `D<delta>` (ma)
    pub delta: u64,
    /// Where among the flags an `O` over 32 bytes stands. memcached checks
    /// an opaque's length only as the command builds its reply: `md` and
    /// `ms` refuse it before they act, `mg` and `ma` once they have acted
    /// on the flags to its left.
    pub long_opaque: Option<usize>,
}

/// One meta request. `key` is the key token as sent (base64 when
/// `flags.base64`): [`Meta::key`] gives the key's bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta<'a> {
    pub command: MetaCommand,
    pub key: &'a [u8],
    pub flags: MetaFlags<'a>,
    /// `ms`'s data block.
    pub data: &'a [u8],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest item accepted by a storage command, counted as memcached
    /// counts it ([`Limits::too_large`]).
    pub max_item_size: usize,
}

impl Limits {
    /// Whether memcached 1.6 refuses an item as too large before it reads
    /// its data block: its 48-byte header, the key and a NUL, 4 bytes of
    /// client flags unless they are 0, the value and its CR LF, and an
    /// 8-byte cas, against `-I` (`item_make_header`). The store counts an
    /// item the same way (`store::memcached_item_size`), for an append's
    /// joined value.
    pub fn too_large(&self, key_len: usize, flags: u32, value_len: usize) -> bool {
        const HEADER: usize = 48;
        const CAS: usize = 8;
        let flags = if flags == 0 { 0 } else { 4 };
        let size = HEADER + key_len + 1 + flags + value_len.saturating_add(2 + CAS);
        size > self.max_item_size
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// No whole request is buffered yet.
    Incomplete,
    Request {
        request: Request<'a>,
        consumed: usize,
    },
    /// Answer `error` (unless `noreply`) and go on after `consumed` bytes,
    /// discarding the `swallow` bytes that follow them (the data block of a
    /// refused `ms` too large to wait for).
    Invalid {
        error: ErrorReply,
        noreply: bool,
        consumed: usize,
        swallow: usize,
    },
    /// Answer `error` and close the connection.
    Close(ErrorReply),
    /// Close the connection without a word: the line is another
    /// protocol's (an HTTP request line), as memcached decides.
    HangUp,
}
