//! Routing: which shard owns a key, and the envelopes forwarded between cores.
//!
//! Owns the shard choice from a key's hash (`crate::store::key_hash`, of the
//! interned (project, cache) id and the key), and the message types carried
//! by the two channel meshes. It never executes a request and
//! never touches a socket.
//!
//! Forwarded work travels as records: each carries the key's hash, which
//! the sender computed to choose the owner, so the owner does not hash it
//! again. A single-key retrieval (every key of a multi-get becomes one) is
//! sent parsed: its kind and key. Anything else goes as the client's own
//! bytes, which the owner parses. The owner answers with one buffer plus
//! the end offset of each reply. A batch carries the requests of every
//! connection of the core that forwarded to that shard since the last batch
//! went, each connection's run of them a `Part`: one message and one wake-up
//! per core and turn, not per connection.
//!
//! Buffers go home to be reused rather than freed on the other core: the
//! answer carries the request buffer back, and the next batch to the same
//! owner carries the answer buffers back. So a steady flow of batches
//! allocates nothing, and no core frees memory another core's allocator
//! arena holds (which costs that arena's lock).

use std::os::fd::OwnedFd;

use crate::protocol::{GetKind, Keys, Request};
use crate::stats::Report;
use crate::store::{key_hash, NsId};
use crate::tenancy::Namespace;

/// Hashes the keys of one namespace.
#[derive(Clone)]
pub struct KeyHasher {
    ns: NsId,
}

impl KeyHasher {
    pub fn new(ns: Namespace) -> KeyHasher {
        KeyHasher { ns: ns.id }
    }

    #[inline]
    pub fn hash(&self, key: &[u8]) -> u64 {
        key_hash(self.ns, key)
    }
}

/// The shard that owns `hash`, from its high 32 bits (the store indexes by
/// the low bits, so the two choices stay independent).
pub fn shard_of(hash: u64, shards: usize) -> usize {
    (((hash >> 32) * shards as u64) >> 32) as usize
}

/// Work sent to the core that owns it. `reply_to` is the sender's id on the
/// reply mesh; `id` names the waiter there.
#[derive(Debug)]
pub enum ToShard {
    /// Keyed requests in wire format, executed in order; `parts` says whose
    /// they are. `answer` is empty buffers (from this owner's last answer,
    /// or new) for the replies.
    Batch {
        reply_to: usize,
        parts: Vec<Part>,
        wire: Vec<u8>,
        answer: Answer,
    },
    /// `flush_all` for one namespace, now (`delay` 0) or later.
    Flush {
        reply_to: usize,
        id: u32,
        ns: NsId,
        delay: i64,
    },
    /// Figures for `stats`: one namespace's, or the core's totals.
    Report {
        reply_to: usize,
        id: u32,
        ns: Option<NsId>,
    },
    /// `stats reset`.
    Reset {
        reply_to: usize,
        id: u32,
        ns: Option<NsId>,
    },
    /// A client connection another core accepted, for this core to serve
    /// (connection balancing). Needs no answer.
    Adopt(OwnedFd),
}

#[derive(Debug)]
pub enum FromShard {
    /// The replies of a batch from shard `shard`, and the batch's own
    /// buffers, emptied but for `parts`, going home.
    Batch {
        shard: usize,
        answer: Answer,
        wire: Vec<u8>,
        parts: Vec<Part>,
    },
    Report(Box<Report>),
    Done,
}

/// One connection's run of requests in a batch.
#[derive(Clone, Copy, Debug)]
pub struct Part {
    pub ns: Namespace,
    /// Where its requests end in the batch's wire.
    pub end: u32,
    /// The asking core's waiter for its replies.
    pub waiter: u32,
    /// The index of its first reply in the answer.
    pub first: u32,
}

/// The replies of a batch, concatenated; `ends[i]` is where reply i ends.
#[derive(Debug, Default)]
pub struct Answer {
    pub out: Vec<u8>,
    pub ends: Vec<u32>,
}

impl Answer {
    /// Reply `i`.
    pub fn reply(&self, i: usize) -> &[u8] {
        let from = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.out[from..self.ends[i] as usize]
    }
}

/// Record tags: retrievals sent parsed, then requests sent as wire bytes.
const GET: u8 = 0;
const GETS: u8 = 1;
const GAT: u8 = 2;
const GATS: u8 = 3;
const WIRE: u8 = 4;

/// Appends a single-key retrieval of `key` (hashed to `hash`) to a batch.
/// Keys are at most 250 bytes (the parser refuses longer ones).
pub fn push_get(batch: &mut Vec<u8>, hash: u64, kind: GetKind, key: &[u8]) {
    debug_assert!(key.len() <= u8::MAX as usize);
    batch.extend_from_slice(&hash.to_le_bytes());
    match kind {
        GetKind::Get => batch.push(GET),
        GetKind::Gets => batch.push(GETS),
        GetKind::Gat(t) | GetKind::Gats(t) => {
            batch.push(if kind.with_cas() { GATS } else { GAT });
            batch.extend_from_slice(&t.to_le_bytes());
        }
    }
    batch.push(key.len() as u8);
    batch.extend_from_slice(key);
}

/// Appends a request as the client's bytes, `wire`, for the owner to parse.
pub fn push_wire(batch: &mut Vec<u8>, hash: u64, wire: &[u8]) {
    batch.extend_from_slice(&hash.to_le_bytes());
    batch.push(WIRE);
    batch.extend_from_slice(&(wire.len() as u32).to_le_bytes());
    batch.extend_from_slice(wire);
}

/// One record of a batch, read back.
#[derive(Debug, PartialEq)]
pub enum Record<'a> {
    /// A retrieval, ready to run.
    Get(Request<'a>),
    /// A request's wire bytes, to parse.
    Wire(&'a [u8]),
}

/// Reads the record at the start of `batch`: its hash, the record and its
/// length. The sender wrote it with `push_get` or `push_wire`, so a short
/// or unknown record is a bug, and panics.
pub fn read_record(batch: &[u8]) -> (u64, Record<'_>, usize) {
    let hash = u64::from_le_bytes(batch[..8].try_into().expect("8 bytes"));
    let tag = batch[8];
    let mut at = 9;
    let kind = match tag {
        GET => GetKind::Get,
        GETS => GetKind::Gets,
        GAT | GATS => {
            let t = i64::from_le_bytes(batch[at..at + 8].try_into().expect("8 bytes"));
            at += 8;
            if tag == GAT {
                GetKind::Gat(t)
            } else {
                GetKind::Gats(t)
            }
        }
        WIRE => {
            let len = u32::from_le_bytes(batch[at..at + 4].try_into().expect("4 bytes")) as usize;
            at += 4;
            return (hash, Record::Wire(&batch[at..at + len]), at + len);
        }
        other => panic!("unknown forwarded record tag {other}"),
    };
    let len = batch[at] as usize;
    at += 1;
    let keys = Keys::single(&batch[at..at + len]);
    (hash, Record::Get(Request::Get { kind, keys }), at + len)
}

/// An answer on the reply mesh, for waiter `id` of the receiving core (a
/// batch's answer names its waiters in its parts).
#[derive(Debug)]
pub struct Reply {
    pub id: u32,
    pub body: FromShard,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_choice_is_stable_and_spread() {
        let ns = Namespace { id: 0 };
        let h = KeyHasher::new(ns);
        assert_eq!(h.hash(b"key"), KeyHasher::new(ns).hash(b"key"));
        let mut counts = [0usize; 4];
        for i in 0..40_000 {
            counts[shard_of(h.hash(format!("key:{i}").as_bytes()), 4)] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn records_read_back_as_written() {
        let mut batch = Vec::new();
        let kinds = [
            GetKind::Get,
            GetKind::Gets,
            GetKind::Gat(-1),
            GetKind::Gats(1 << 40),
        ];
        let long = [b'k'; 250];
        for (i, &kind) in kinds.iter().enumerate() {
            push_get(&mut batch, i as u64, kind, &long[..1 + i * 83]);
        }
        push_wire(&mut batch, u64::MAX, b"set k 0 0 1\r\nv\r\n");
        push_get(&mut batch, 7, GetKind::Get, b"last");
        let mut pos = 0;
        for (i, &kind) in kinds.iter().enumerate() {
            let (hash, record, len) = read_record(&batch[pos..]);
            assert_eq!(hash, i as u64);
            let keys = Keys::single(&long[..1 + i * 83]);
            assert_eq!(record, Record::Get(Request::Get { kind, keys }));
            pos += len;
        }
        let (hash, record, len) = read_record(&batch[pos..]);
        assert_eq!(
            (hash, record),
            (u64::MAX, Record::Wire(b"set k 0 0 1\r\nv\r\n"))
        );
        pos += len;
        let (hash, record, len) = read_record(&batch[pos..]);
        let keys = Keys::single(b"last");
        assert_eq!(
            (hash, record),
            (
                7,
                Record::Get(Request::Get {
                    kind: GetKind::Get,
                    keys
                })
            )
        );
        assert_eq!(pos + len, batch.len());
    }

    #[test]
    fn namespaces_route_independently() {
        let a = KeyHasher::new(Namespace { id: 1 });
        let b = KeyHasher::new(Namespace { id: 2 });
        let differ = (0..1000)
            .filter(|i| a.hash(format!("{i}").as_bytes()) != b.hash(format!("{i}").as_bytes()))
            .count();
        assert_eq!(differ, 1000);
    }
}
