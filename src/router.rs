//! Routing: which shard owns a key, and the envelopes forwarded between cores.
//!
//! Owns the shard choice from a key's hash (`crate::store::key_hash`, of the
//! interned (project, cache) id and the key), and the message types carried
//! by the two channel meshes. It never executes a request and
//! never touches a socket.
//!
//! Forwarded work travels in the protocol's own wire format: a connection
//! copies each request's bytes (one `get` per key) into its core's outbox
//! for the target shard, and the owner parses and executes them in order. So
//! the mesh needs no second encoding, and the owner answers with one buffer
//! plus the end offset of each reply. A batch carries the requests of every
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
    fn namespaces_route_independently() {
        let a = KeyHasher::new(Namespace { id: 1 });
        let b = KeyHasher::new(Namespace { id: 2 });
        let differ = (0..1000)
            .filter(|i| a.hash(format!("{i}").as_bytes()) != b.hash(format!("{i}").as_bytes()))
            .count();
        assert_eq!(differ, 1000);
    }
}
