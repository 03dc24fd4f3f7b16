//! Property tests of the parser at the library level:
//!
//! - a stream of random valid requests, cut at every byte boundary (the
//!   prefix fed first, then the whole buffer), parses to exactly the requests
//!   it parses to in one piece: a cut only ever yields `Incomplete` or whole
//!   requests, never an error;
//! - `parse(encode(x)) == x` for random requests.
//!
//! Multi-key `Keys` cannot be built outside the crate, so multi-key gets are
//! generated as bytes and compared by their key lists.

use ferrocache::protocol::{
    parse, ArithKind, GetKind, Keyed, Keys, Limits, Parsed, Request, StatsGroup, Storage, StoreKind,
};
use proptest::prelude::*;
use proptest::test_runner::Config;

const LIMITS: Limits = Limits {
    max_item_size: 1024 * 1024,
};

/// An owned description of one request.
#[derive(Clone, Debug)]
enum Spec {
    Get {
        kind: GetKind,
        keys: Vec<Vec<u8>>,
    },
    Store {
        kind: StoreKind,
        key: Vec<u8>,
        flags: u32,
        exptime: i64,
        cas: u64,
        data: Vec<u8>,
        noreply: bool,
    },
    Delete {
        key: Vec<u8>,
        noreply: bool,
    },
    Arith {
        kind: ArithKind,
        key: Vec<u8>,
        delta: u64,
        noreply: bool,
    },
    Touch {
        key: Vec<u8>,
        exptime: i64,
        noreply: bool,
    },
    FlushAll {
        delay: i64,
        noreply: bool,
    },
    Stats(usize),
    Version,
    Verbosity {
        noreply: bool,
    },
    Quit,
}

const STATS_GROUPS: [StatsGroup<'static>; 7] = [
    StatsGroup::General,
    StatsGroup::Settings,
    StatsGroup::Reset,
    StatsGroup::Items,
    StatsGroup::Slabs,
    StatsGroup::Detail(b"on"),
    StatsGroup::Sizes,
];

impl Spec {
    /// The request this spec stands for; `None` for a multi-key get.
    fn request(&self) -> Option<Request<'_>> {
        Some(match self {
            Spec::Get { kind, keys } => {
                if keys.len() != 1 {
                    return None;
                }
                Request::Get {
                    kind: *kind,
                    keys: Keys::single(&keys[0]),
                }
            }
            Spec::Store {
                kind,
                key,
                flags,
                exptime,
                cas,
                data,
                noreply,
            } => Request::Keyed(Keyed::Store(Storage {
                kind: *kind,
                key,
                flags: *flags,
                exptime: *exptime,
                cas: if *kind == StoreKind::Cas { *cas } else { 0 },
                data,
                noreply: *noreply,
            })),
            Spec::Delete { key, noreply } => Request::Keyed(Keyed::Delete {
                key,
                noreply: *noreply,
            }),
            Spec::Arith {
                kind,
                key,
                delta,
                noreply,
            } => Request::Keyed(Keyed::Arith {
                kind: *kind,
                key,
                delta: *delta,
                noreply: *noreply,
            }),
            Spec::Touch {
                key,
                exptime,
                noreply,
            } => Request::Keyed(Keyed::Touch {
                key,
                exptime: *exptime,
                noreply: *noreply,
            }),
            Spec::FlushAll { delay, noreply } => Request::FlushAll {
                delay: *delay,
                noreply: *noreply,
            },
            Spec::Stats(i) => Request::Stats(STATS_GROUPS[*i]),
            Spec::Version => Request::Version,
            Spec::Verbosity { noreply } => Request::Verbosity { noreply: *noreply },
            Spec::Quit => Request::Quit,
        })
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match (self, self.request()) {
            (_, Some(request)) => request.encode(out),
            (Spec::Get { kind, keys }, None) => {
                let verb = match kind {
                    GetKind::Get => "get".to_owned(),
                    GetKind::Gets => "gets".to_owned(),
                    GetKind::Gat(t) => format!("gat {t}"),
                    GetKind::Gats(t) => format!("gats {t}"),
                };
                out.extend_from_slice(verb.as_bytes());
                for key in keys {
                    out.push(b' ');
                    out.extend_from_slice(key);
                }
                out.extend_from_slice(b"\r\n");
            }
            (other, None) => unreachable!("{other:?} always has a request"),
        }
    }

    /// Whether `parsed` is this request.
    fn is(&self, parsed: &Request<'_>) -> bool {
        match (self, parsed) {
            (Spec::Get { kind, keys }, Request::Get { kind: k, keys: got }) => {
                kind == k && got.iter().eq(keys.iter().map(Vec::as_slice))
            }
            (Spec::Get { .. }, _) => false,
            (spec, parsed) => spec.request().as_ref() == Some(parsed),
        }
    }
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    // 0x21..=0x7e: printable, no space, no DEL; mostly short, sometimes at the limit.
    prop_oneof![
        4 => proptest::collection::vec(0x21u8..=0x7e, 1..8),
        1 => proptest::collection::vec(0x21u8..=0x7e, 240..=250),
    ]
    .prop_filter("`noreply` as a last word means noreply", |k| {
        k != b"noreply"
    })
}

/// Exptimes on the wire are 32-bit, as in memcached (wider ones wrap).
fn exptime() -> impl Strategy<Value = i64> {
    prop_oneof![-5i64..100, Just(0), (i32::MIN as i64)..=(i32::MAX as i64)]
}

fn data() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => proptest::collection::vec(any::<u8>(), 0..32),
        // Data that looks like protocol.
        1 => Just(b"\r\nget a\r\nEND\r\n".to_vec()),
        1 => proptest::collection::vec(any::<u8>(), 0..600),
    ]
}

fn get_kind() -> impl Strategy<Value = GetKind> {
    prop_oneof![
        Just(GetKind::Get),
        Just(GetKind::Gets),
        exptime().prop_map(GetKind::Gat),
        exptime().prop_map(GetKind::Gats),
    ]
}

fn store_kind() -> impl Strategy<Value = StoreKind> {
    prop_oneof![
        Just(StoreKind::Set),
        Just(StoreKind::Add),
        Just(StoreKind::Replace),
        Just(StoreKind::Append),
        Just(StoreKind::Prepend),
        Just(StoreKind::Cas),
    ]
}

fn spec() -> impl Strategy<Value = Spec> {
    prop_oneof![
        3 => (get_kind(), proptest::collection::vec(key(), 0..6)).prop_map(|(kind, mut keys)| {
            // get and gets need a key; gat and gats may have none.
            if keys.is_empty() && matches!(kind, GetKind::Get | GetKind::Gets) {
                keys.push(b"k".to_vec());
            }
            Spec::Get { kind, keys }
        }),
        4 => (store_kind(), key(), any::<u32>(), exptime(), any::<u64>(), data(), any::<bool>())
            .prop_map(|(kind, key, flags, exptime, cas, data, noreply)| Spec::Store {
                kind, key, flags, exptime, cas, data, noreply,
            }),
        1 => (key(), any::<bool>()).prop_map(|(key, noreply)| Spec::Delete { key, noreply }),
        1 => (any::<bool>(), key(), any::<u64>(), any::<bool>()).prop_map(
            |(incr, key, delta, noreply)| Spec::Arith {
                kind: if incr { ArithKind::Incr } else { ArithKind::Decr },
                key, delta, noreply,
            }
        ),
        1 => (key(), exptime(), any::<bool>())
            .prop_map(|(key, exptime, noreply)| Spec::Touch { key, exptime, noreply }),
        1 => (exptime(), any::<bool>()).prop_map(|(delay, noreply)| Spec::FlushAll { delay, noreply }),
        1 => (0..STATS_GROUPS.len()).prop_map(Spec::Stats),
        1 => Just(Spec::Version),
        1 => any::<bool>().prop_map(|noreply| Spec::Verbosity { noreply }),
        1 => Just(Spec::Quit),
    ]
}

fn show(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Parses every request in `buf`; anything but whole requests fails.
fn parse_all(buf: &[u8]) -> Vec<Request<'_>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        match parse(&buf[pos..], &LIMITS) {
            Parsed::Request { request, consumed } => {
                assert!(consumed > 0);
                out.push(request);
                pos += consumed;
            }
            other => panic!("at {pos} of {:?}: {other:?}", show(buf)),
        }
    }
    out
}

fn config(cases: u32) -> Config {
    Config {
        cases,
        // Keep the worktree clean: no proptest-regressions files.
        failure_persistence: None,
        ..Config::default()
    }
}

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn encode_then_parse_is_identity(spec in spec()) {
        let mut wire = Vec::new();
        spec.encode(&mut wire);
        match parse(&wire, &LIMITS) {
            Parsed::Request { request, consumed } => {
                prop_assert_eq!(consumed, wire.len(), "{:?}", show(&wire));
                prop_assert!(spec.is(&request), "{:?} parsed as {:?}", spec, request);
            }
            other => prop_assert!(false, "{:?} gave {:?}", show(&wire), other),
        }
        // Every strict prefix is incomplete, never an error.
        for cut in 0..wire.len() {
            prop_assert_eq!(parse(&wire[..cut], &LIMITS), Parsed::Incomplete, "cut {}", cut);
        }
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn any_split_parses_like_the_whole(specs in proptest::collection::vec(spec(), 1..10)) {
        let mut buf = Vec::new();
        for spec in &specs {
            spec.encode(&mut buf);
        }
        let whole = parse_all(&buf);
        prop_assert_eq!(whole.len(), specs.len());
        for (spec, request) in specs.iter().zip(&whole) {
            prop_assert!(spec.is(request), "{:?} parsed as {:?}", spec, request);
        }
        for cut in 0..=buf.len() {
            let mut got = Vec::new();
            let mut pos = 0;
            // Only the prefix has arrived: whole requests, then Incomplete.
            loop {
                match parse(&buf[pos..cut], &LIMITS) {
                    Parsed::Request { request, consumed } => {
                        got.push(request);
                        pos += consumed;
                    }
                    Parsed::Incomplete => break,
                    other => prop_assert!(false, "cut {}: {:?}", cut, other),
                }
            }
            prop_assert!(pos <= cut);
            // The rest arrives.
            got.extend(parse_all(&buf[pos..]));
            prop_assert_eq!(&got, &whole, "cut at {}", cut);
        }
    }
}
