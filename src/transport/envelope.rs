//! The envelopes forwarded between cores.
//!
//! Owns the message types carried by the two meshes between cores
//! (`transport::lanes`; the shard that owns a key is
//! `crate::keyspace::shard_of` of its hash). It never executes
//! a request and never touches a socket.
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
//! A batch's answer is bounded by construction: the asking core gives
//! each batch a cap out of a per-owner budget ([`ForwardLimits`]), and the
//! owner stops before a record whose reply might pass it, and before a
//! connection's run passes [`PART_REPLIES`] ([`answer_batch`]). What was
//! not run is left for the connection to send again. So an answer's
//! offsets (`u32`) cannot wrap, and what one core is owed is bounded
//! whatever the number of connections.
//!
//! A connection whose outstanding requests all went to one owner, with no
//! reply of its own between theirs, may lend its socket with them (a
//! [`Pen`]), once it has written what its output holds before their
//! replies: the owner then writes the replies, and what followed them in
//! the connection's output (the part's tail, carried in the batch's wire
//! after its records), straight to the client ([`write_pens`]), and says
//! how much it wrote. The asking core need not wake for an answer
//! that only tells it the replies are out, so such an answer is sent
//! deferred (`Reply::deferred`). The connection keeps its descriptor open,
//! and writes nothing, until that answer has come back.
//!
//! Buffers go home to be reused rather than freed on the other core: the
//! answer carries the request buffer back, and the next batch to the same
//! owner carries the answer buffers back. So a steady flow of batches
//! allocates nothing, and no core frees memory another core's allocator
//! arena holds (which costs that arena's lock).

use std::os::fd::OwnedFd;

use crate::keyspace::NsId;
use crate::protocol::{GetKind, Keyed, ReplyBound};
use crate::shard::PREFETCH_AHEAD;
use crate::stats::Report;
use crate::tenancy::Namespace;

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
        /// Bytes the answer may hold (see [`answer_batch`]).
        cap: usize,
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
        /// The cap the batch was sent with.
        cap: usize,
    },
    Report(Box<Report>),
    Done,
}

/// One connection's run of requests in a batch.
#[derive(Clone, Copy, Debug)]
pub struct Part {
    pub ns: Namespace,
    /// Where its requests end in the batch's wire (a `usize`: a batch's
    /// wire gathers every connection's requests and cannot wrap).
    pub end: usize,
    /// The asking core's waiter for its replies.
    pub waiter: u32,
    /// Set by the owner: the index of its first reply in the answer, how
    /// many of its requests ran (their replies follow `first`), and how
    /// many bytes of its wire they took. The rest is for the connection to
    /// send again.
    pub first: u32,
    pub served: u32,
    pub consumed: usize,
    /// The asking connection's socket, lent for its reply (see the module
    /// header), and what the owner wrote of it.
    pub pen: Option<Pen>,
    pub written: u32,
}

impl Part {
    pub fn new(ns: Namespace, end: usize, waiter: u32) -> Part {
        Part {
            ns,
            end,
            waiter,
            first: 0,
            served: 0,
            consumed: 0,
            pen: None,
            written: 0,
        }
    }

    /// Whether the owner wrote this part's whole reply, and its tail, to
    /// the client: nothing is left for the connection to write.
    pub fn written_whole(&self) -> bool {
        self.pen.is_some_and(|pen| pen.whole == Some(self.written))
    }

    /// Where its records end in the batch's wire: a lent socket's tail
    /// follows them, up to `end`.
    pub fn records_end(&self) -> usize {
        self.end - self.pen.map_or(0, |pen| pen.tail_len as usize)
    }
}

/// The most a lent socket's tail may hold: what a connection appends after
/// a forwarded retrieval (`END\r\n`), or after the forwarded keys of a
/// multi-get, its own keys' replies (as much as a read buffer; a larger
/// tail, copied to the owner, would cost more than the wake-up it saves).
pub const TAIL_MAX: usize = 16 << 10;

/// A connection's socket, lent with its forwarded requests: the owner
/// writes their replies, then the part's tail (the bytes the connection's
/// output holds after them, in the batch's wire after the part's records),
/// with one non-blocking system call.
#[derive(Clone, Copy, Debug)]
pub struct Pen {
    pub fd: i32,
    tail_len: u32,
    /// Set by the owner: the bytes it had to write (reply and tail);
    /// `None` if it did not run the whole part, and wrote nothing.
    whole: Option<u32>,
}

impl Pen {
    /// `None` if `tail_len` is more than [`TAIL_MAX`].
    pub fn new(fd: i32, tail_len: usize) -> Option<Pen> {
        (tail_len <= TAIL_MAX).then_some(Pen {
            fd,
            tail_len: tail_len as u32,
            whole: None,
        })
    }
}

/// The owner's side of lent sockets, after [`answer_batch`]: each part
/// that came with a [`Pen`] and ran whole has its replies and tail written
/// by `send` (which writes what it can without waiting and returns how
/// much; it never blocks), and records what it wrote. `wire` is the
/// batch's, which holds the tails. Returns how many parts have their reply
/// out whole: if all of them, the asking core has nothing to write and
/// need not be woken for the answer.
pub fn write_pens(
    parts: &mut [Part],
    answer: &Answer,
    wire: &[u8],
    mut send: impl FnMut(i32, &[u8], &[u8]) -> usize,
) -> usize {
    let mut start = 0;
    let mut out_whole = 0;
    for part in parts.iter_mut() {
        let records_end = part.records_end();
        let ran_whole = part.consumed == records_end - start && part.served > 0;
        let tail = &wire[records_end..part.end];
        start = part.end;
        let Some(pen) = part.pen.as_mut().filter(|_| ran_whole) else {
            continue;
        };
        let first = part.first as usize;
        let from = if first == 0 {
            0
        } else {
            answer.ends[first - 1] as usize
        };
        let to = answer.ends[first + part.served as usize - 1] as usize;
        let reply = &answer.out[from..to];
        let whole = (reply.len() + tail.len()) as u32;
        pen.whole = Some(whole);
        // A quiet or `noreply` request may have nothing to write.
        if whole > 0 {
            part.written = send(pen.fd, reply, tail) as u32;
        }
        out_whole += usize::from(part.written == whole);
    }
    out_whole
}

/// Replies one connection's run may take in one answer, past its first
/// reply: as much as a connection buffers before writing, so forwarding
/// holds no more per connection than a local multiget does.
pub const PART_REPLIES: usize = 1 << 20;
/// The most a retrieval's reply adds to its value: `VALUE`, a 250-byte
/// key, flags, length, cas and two line ends.
const REPLY_OVERHEAD: usize = 512;
/// The most any other forwarded request's reply takes (a status or error
/// line, or a number).
const SMALL_REPLY: usize = 256;
/// Answer offsets are `u32`: no answer may hold more.
const MAX_ANSWER: usize = u32::MAX as usize;

/// How much forwarded work may be owed to one core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ForwardLimits {
    /// Bytes of replies one core may be owed by (or still hold from) each
    /// other core: batches in flight at their caps, answers at their size.
    pub budget: usize,
    /// The smallest cap a batch is sent with: room for two of the largest
    /// replies, so every batch makes progress.
    pub min_batch: usize,
    /// The largest cap a batch is sent with.
    pub max_batch: usize,
    /// The largest reply one retrieval can have.
    pub max_reply: usize,
}

impl ForwardLimits {
    pub fn new(max_item_size: usize) -> ForwardLimits {
        let max_reply = max_item_size + REPLY_OVERHEAD;
        let min_batch = (2 * max_reply).min(MAX_ANSWER);
        let max_batch = (16 << 20).max(min_batch).min(MAX_ANSWER);
        ForwardLimits {
            budget: (32 << 20).max(2 * max_batch),
            min_batch,
            max_batch,
            max_reply,
        }
    }

    /// The cap of the next batch to an owner with `left` of its budget
    /// unused: half of it, between `min_batch` and `max_batch`; `None`
    /// when even `min_batch` does not fit, and the batch must wait.
    pub fn batch_cap(&self, left: usize) -> Option<usize> {
        (left >= self.min_batch).then(|| (left / 2).clamp(self.min_batch, self.max_batch))
    }

    /// The most `record`'s reply can take.
    fn room(&self, record: &Record) -> usize {
        match record {
            Record::Get(_) | Record::Wire(_, ReplyBound::Value) => self.max_reply,
            Record::Wire(_, ReplyBound::MetaLine) => REPLY_OVERHEAD,
            Record::Wire(_, ReplyBound::Line) => SMALL_REPLY,
        }
    }
}

/// Runs a batch's records in order into `answer`, each part in its own
/// namespace: reads up to [`PREFETCH_AHEAD`] records, hands their hashes to
/// `prefetch` (so their cache misses overlap), then `run`s them. Stops
/// before a record whose reply might take the answer past `cap` (but
/// always runs the batch's first, so every batch makes progress), and
/// moves to the next part once a part's replies pass [`PART_REPLIES`].
/// Each part says how much of it ran (`served`, `consumed`).
pub fn answer_batch(
    parts: &mut [Part],
    wire: &[u8],
    answer: &mut Answer,
    limits: &ForwardLimits,
    cap: usize,
    mut prefetch: impl FnMut(&[u64]),
    mut run: impl FnMut(Namespace, u64, Record<'_>, &mut Vec<u8>),
) {
    let Answer { out, ends, .. } = answer;
    let cap = cap.min(MAX_ANSWER);
    let mut full = false;
    let mut start = 0;
    let mut group: Vec<(u64, Record, usize)> = Vec::with_capacity(PREFETCH_AHEAD);
    let mut hashes = [0u64; PREFETCH_AHEAD];
    for part in parts.iter_mut() {
        let end = part.records_end();
        part.first = ends.len() as u32;
        let (mut served, mut pos, part_from) = (0u32, start, out.len());
        'part: while !full && pos < end {
            group.clear();
            let mut at = pos;
            while group.len() < PREFETCH_AHEAD && at < end {
                let (hash, record, len) = read_record(&wire[at..end]);
                at += len;
                hashes[group.len()] = hash;
                group.push((hash, record, at));
            }
            prefetch(&hashes[..group.len()]);
            for (hash, record, record_end) in group.drain(..) {
                let first = ends.is_empty();
                if !first && out.len() + limits.room(&record) > cap {
                    full = true;
                    break 'part;
                }
                if served > 0 && out.len() - part_from >= PART_REPLIES {
                    break 'part;
                }
                let (before, room) = (out.len(), limits.room(&record));
                run(part.ns, hash, record, out);
                debug_assert!(out.len() - before <= room, "a reply past its bound");
                debug_assert!(out.len() <= MAX_ANSWER);
                ends.push(out.len() as u32);
                served += 1;
                pos = record_end;
            }
        }
        part.served = served;
        part.consumed = pos - start;
        start = part.end;
    }
}

/// The replies of a batch, concatenated; `ends[i]` is where reply i ends.
#[derive(Debug, Default)]
pub struct Answer {
    pub out: Vec<u8>,
    pub ends: Vec<u32>,
    /// What of its owner's reply budget the answer holds once delivered
    /// (its size, within the batch's cap): given back when it is let go.
    pub charged: usize,
}

impl Answer {
    /// Reply `i`.
    pub fn reply(&self, i: usize) -> &[u8] {
        &self.out[self.start(i)..self.ends[i] as usize]
    }

    /// The bytes of replies `from..to`.
    pub fn replies_len(&self, from: usize, to: usize) -> usize {
        if from >= to {
            return 0;
        }
        self.ends[to - 1] as usize - self.start(from)
    }

    fn start(&self, i: usize) -> usize {
        if i == 0 {
            0
        } else {
            self.ends[i - 1] as usize
        }
    }
}

/// Record tags: retrievals sent parsed, then requests sent as wire bytes,
/// by the bound of their reply.
const GET: u8 = 0;
const GETS: u8 = 1;
const GAT: u8 = 2;
const GATS: u8 = 3;
const WIRE_LINE: u8 = 4;
const WIRE_META_LINE: u8 = 5;
const WIRE_VALUE: u8 = 6;

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

/// Appends a request as the client's bytes, `wire`, for the owner to parse,
/// with the bound of its reply.
pub fn push_wire(batch: &mut Vec<u8>, hash: u64, wire: &[u8], bound: ReplyBound) {
    batch.extend_from_slice(&hash.to_le_bytes());
    batch.push(match bound {
        ReplyBound::Line => WIRE_LINE,
        ReplyBound::MetaLine => WIRE_META_LINE,
        ReplyBound::Value => WIRE_VALUE,
    });
    batch.extend_from_slice(&(wire.len() as u32).to_le_bytes());
    batch.extend_from_slice(wire);
}

/// One record of a batch, read back.
#[derive(Debug, PartialEq)]
pub enum Record<'a> {
    /// A retrieval, ready to run.
    Get(Keyed<'a>),
    /// A request's wire bytes, to parse, and how long its reply can be.
    Wire(&'a [u8], ReplyBound),
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
        WIRE_LINE | WIRE_META_LINE | WIRE_VALUE => {
            let bound = match tag {
                WIRE_LINE => ReplyBound::Line,
                WIRE_META_LINE => ReplyBound::MetaLine,
                _ => ReplyBound::Value,
            };
            let len = u32::from_le_bytes(batch[at..at + 4].try_into().expect("4 bytes")) as usize;
            at += 4;
            return (hash, Record::Wire(&batch[at..at + len], bound), at + len);
        }
        other => panic!("unknown forwarded record tag {other}"),
    };
    let len = batch[at] as usize;
    at += 1;
    let key = &batch[at..at + len];
    (hash, Record::Get(Keyed::Get { kind, key }), at + len)
}

/// An answer on the reply mesh, for waiter `id` of the receiving core (a
/// batch's answer names its waiters in its parts).
#[derive(Debug)]
pub struct Reply {
    pub id: u32,
    pub body: FromShard,
    /// Nothing waits on it but bookkeeping: every reply it carries is
    /// already written ([`write_pens`]). A core asleep is woken for it
    /// only if it asked to be (`bell`).
    pub deferred: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

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
        push_wire(
            &mut batch,
            u64::MAX,
            b"set k 0 0 1\r\nv\r\n",
            ReplyBound::Line,
        );
        push_get(&mut batch, 7, GetKind::Get, b"last");
        let mut pos = 0;
        for (i, &kind) in kinds.iter().enumerate() {
            let (hash, record, len) = read_record(&batch[pos..]);
            assert_eq!(hash, i as u64);
            let key = &long[..1 + i * 83];
            assert_eq!(record, Record::Get(Keyed::Get { kind, key }));
            pos += len;
        }
        let (hash, record, len) = read_record(&batch[pos..]);
        assert_eq!(
            (hash, record),
            (
                u64::MAX,
                Record::Wire(b"set k 0 0 1\r\nv\r\n", ReplyBound::Line)
            )
        );
        pos += len;
        let (hash, record, len) = read_record(&batch[pos..]);
        let key = b"last";
        assert_eq!(
            (hash, record),
            (
                7,
                Record::Get(Keyed::Get {
                    kind: GetKind::Get,
                    key
                })
            )
        );
        assert_eq!(pos + len, batch.len());
    }

    /// A batch of parts, each a run of requests whose hash is the size of
    /// the reply it gets (`run` answers with that many bytes): gets, and
    /// wire requests within each bound (meta gets of values among them).
    fn batch_of(sizes: &[Vec<usize>]) -> (Vec<Part>, Vec<u8>) {
        let ns = Namespace { id: 3 };
        let (mut parts, mut wire) = (Vec::new(), Vec::new());
        for (i, part) in sizes.iter().enumerate() {
            for &size in part {
                let hash = size as u64;
                match size % 4 {
                    0 if size <= SMALL_REPLY => push_wire(&mut wire, hash, b"w", ReplyBound::Line),
                    1 if size <= REPLY_OVERHEAD => {
                        push_wire(&mut wire, hash, b"w", ReplyBound::MetaLine)
                    }
                    2 => push_wire(&mut wire, hash, b"w", ReplyBound::Value),
                    _ => push_get(&mut wire, hash, GetKind::Get, b"k"),
                }
            }
            parts.push(Part::new(ns, wire.len(), i as u32));
        }
        (parts, wire)
    }

    fn run_sized(_: Namespace, hash: u64, _: Record<'_>, out: &mut Vec<u8>) {
        out.resize(out.len() + hash as usize, b'v');
    }

    /// Sends what each part has left until every request has run, as the
    /// connections do; checks every answer against its cap and returns
    /// the replies each part got, in order, and the number of rounds.
    fn answer_all(
        sizes: &[Vec<usize>],
        limits: &ForwardLimits,
        cap: usize,
    ) -> (Vec<Vec<usize>>, usize) {
        let mut left: Vec<Vec<usize>> = sizes.to_vec();
        let mut got: Vec<Vec<usize>> = vec![Vec::new(); sizes.len()];
        let mut rounds = 0;
        while left.iter().any(|p| !p.is_empty()) {
            rounds += 1;
            assert!(rounds < 10_000, "no progress");
            let (mut parts, wire) = batch_of(&left);
            let mut answer = Answer::default();
            answer_batch(
                &mut parts,
                &wire,
                &mut answer,
                limits,
                cap,
                |_| {},
                run_sized,
            );
            assert!(!answer.ends.is_empty(), "a batch must make progress");
            if answer.ends.len() > 1 {
                assert!(answer.out.len() <= cap, "{} > cap {cap}", answer.out.len());
            }
            assert!(answer.out.len() <= u32::MAX as usize);
            let mut reply = 0;
            let mut start = 0;
            for (p, part) in parts.iter().enumerate() {
                // Each part's replies follow the last part's.
                assert_eq!(part.first as usize, reply, "part {p}");
                let served = part.served as usize;
                let bytes: usize = (reply..reply + served).map(|i| answer.reply(i).len()).sum();
                if served > 1 {
                    let last = answer.reply(reply + served - 1).len();
                    assert!(bytes - last < PART_REPLIES, "part {p} ran past its share");
                }
                // `consumed` covers exactly the records that ran.
                let mut at = start;
                for _ in 0..served {
                    at += read_record(&wire[at..]).2;
                }
                assert_eq!(at - start, part.consumed);
                for i in 0..served {
                    got[p].push(answer.reply(reply + i).len());
                }
                left[p].drain(..served);
                reply += served;
                start = part.end;
            }
            assert_eq!(reply, answer.ends.len());
        }
        (got, rounds)
    }

    #[test]
    fn a_batch_answer_stays_within_its_cap_and_resumes_in_order() {
        let limits = ForwardLimits::new(1 << 20);
        let mut seed = 0x9e3779b97f4a7c15u64;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for _ in 0..50 {
            let sizes: Vec<Vec<usize>> = (0..1 + next(40))
                .map(|_| {
                    (0..next(40))
                        .map(|_| match next(4) {
                            0 => 1 << 20,
                            1 => next(600_000) as usize,
                            _ => next(100) as usize,
                        })
                        .collect()
                })
                .collect();
            let cap = limits.min_batch + next(limits.max_batch as u64) as usize;
            let (got, _) = answer_all(&sizes, &limits, cap);
            assert_eq!(got, sizes);
        }
    }

    #[test]
    fn small_replies_are_not_held_back_by_the_caps() {
        let limits = ForwardLimits::new(1 << 20);
        // 1,000 connections of 16 small gets each: one batch answers all.
        let sizes = vec![vec![100; 16]; 1000];
        let (got, rounds) = answer_all(&sizes, &limits, limits.max_batch);
        assert_eq!((got, rounds), (sizes, 1));
    }

    #[test]
    fn what_one_core_is_owed_is_bounded_and_fits_the_offsets() {
        for item in [1 << 10, 1 << 20, 64 << 20, 1 << 30] {
            let limits = ForwardLimits::new(item);
            assert!(limits.max_reply > item);
            assert!(limits.min_batch >= 2 * limits.max_reply);
            assert!(limits.max_batch <= u32::MAX as usize);
            assert!(limits.budget >= 2 * limits.max_batch);
            // Batches keep being sent until the budget is spent, each within it.
            let mut left = limits.budget;
            let mut sent = 0;
            while let Some(cap) = limits.batch_cap(left) {
                assert!((limits.min_batch..=limits.max_batch).contains(&cap) && cap <= left);
                left -= cap;
                sent += 1;
            }
            assert!(
                sent >= 2 && left < limits.min_batch,
                "{item}: {sent} batches"
            );
        }
        // The default: 32 MiB per owner, batches of 2 to 16 MiB.
        let limits = ForwardLimits::new(1 << 20);
        assert_eq!(limits.budget, 32 << 20);
        assert_eq!(limits.max_batch, 16 << 20);
    }

    /// Three parts of one record (10 bytes of wire) each; the middle one
    /// lent no socket, the last one's tail is `END`. Their wire, with the
    /// tails after the records, and the answer.
    fn three_parts() -> (Vec<Part>, Answer, Vec<u8>) {
        let mut answer = Answer::default();
        let mut parts = Vec::new();
        let mut wire = Vec::new();
        for (i, reply) in [
            &b"STORED\r\n"[..],
            b"NOT_FOUND\r\n",
            b"VALUE k 0 1\r\nv\r\n",
        ]
        .iter()
        .enumerate()
        {
            answer.out.extend_from_slice(reply);
            answer.ends.push(answer.out.len() as u32);
            let tail: &[u8] = if i == 2 { b"END\r\n" } else { b"" };
            wire.extend_from_slice(&[b'0' + i as u8; 10]);
            wire.extend_from_slice(tail);
            let mut part = Part::new(Namespace { id: 0 }, wire.len(), 0);
            part.first = i as u32;
            part.served = 1;
            part.consumed = 10;
            part.pen = (i != 1).then(|| Pen::new(100 + i as i32, tail.len()).unwrap());
            parts.push(part);
        }
        (parts, answer, wire)
    }

    /// Lends the middle part's socket too.
    fn lend_middle(parts: &mut [Part]) {
        parts[1].pen = Pen::new(101, 0);
    }

    #[test]
    fn the_owner_writes_each_lent_reply_and_its_tail() {
        let (mut parts, answer, wire) = three_parts();
        let mut sent: Vec<(i32, Vec<u8>)> = Vec::new();
        let whole = write_pens(&mut parts, &answer, &wire, |fd, a, b| {
            sent.push((fd, [a, b].concat()));
            a.len() + b.len()
        });
        assert_eq!(
            whole, 2,
            "the middle part lent no socket: its core must be woken"
        );
        assert_eq!(
            sent,
            [
                (100, b"STORED\r\n".to_vec()),
                (102, b"VALUE k 0 1\r\nv\r\nEND\r\n".to_vec())
            ]
        );
        assert!(parts[0].written_whole() && parts[2].written_whole());
        assert!(!parts[1].written_whole() && parts[1].written == 0);

        // Every part lent, every reply out whole: the answer may be deferred.
        let (mut parts, answer, wire) = three_parts();
        lend_middle(&mut parts);
        assert_eq!(
            write_pens(&mut parts, &answer, &wire, |_, a, b| a.len() + b.len()),
            3
        );
    }

    #[test]
    fn a_reply_written_short_or_not_run_is_left_to_the_connection() {
        // The socket takes only 3 bytes.
        let (mut parts, answer, wire) = three_parts();
        lend_middle(&mut parts);
        assert_eq!(write_pens(&mut parts, &answer, &wire, |_, _, _| 3), 0);
        assert!(parts.iter().all(|p| p.written == 3 && !p.written_whole()));
        // A part the owner did not run (its cap ran out) is not written.
        let (mut parts, answer, wire) = three_parts();
        parts[2].served = 0;
        parts[2].consumed = 0;
        let mut fds = Vec::new();
        write_pens(&mut parts, &answer, &wire, |fd, a, b| {
            fds.push(fd);
            a.len() + b.len()
        });
        assert_eq!(fds, [100]);
        assert!(!parts[2].written_whole());
        // Nothing to write (a quiet request, no tail): done, without a
        // system call.
        let (mut parts, mut answer, mut wire) = three_parts();
        answer.out.truncate(answer.ends[1] as usize);
        answer.ends[2] = answer.ends[1];
        wire.truncate(parts[2].records_end());
        parts[2].pen = Pen::new(102, 0);
        parts[2].end = wire.len();
        fds.clear();
        write_pens(&mut parts, &answer, &wire, |fd, a, b| {
            fds.push(fd);
            a.len() + b.len()
        });
        assert_eq!(fds, [100]);
        assert!(parts[2].written_whole());
        // A tail longer than a pen carries is refused: the connection writes.
        assert!(Pen::new(1, TAIL_MAX + 1).is_none());
        assert!(Pen::new(1, TAIL_MAX).is_some());
    }

    /// A lent part's tail rides in the wire after its records: the owner
    /// runs only the records.
    #[test]
    fn a_lent_parts_tail_is_not_run_as_records() {
        // Items of up to 1 KiB: three gets' replies fit one answer.
        let limits = ForwardLimits::new(1 << 10);
        let mut wire = Vec::new();
        push_get(&mut wire, 1, GetKind::Get, b"a");
        push_get(&mut wire, 2, GetKind::Get, b"b");
        let records = wire.len();
        wire.extend_from_slice(b"VALUE c 0 1\r\nc\r\nEND\r\n");
        let mut first = Part::new(Namespace { id: 0 }, wire.len(), 0);
        first.pen = Pen::new(7, wire.len() - records);
        push_get(&mut wire, 3, GetKind::Get, b"d");
        let mut parts = vec![first, Part::new(Namespace { id: 0 }, wire.len(), 1)];
        let mut answer = Answer::default();
        let mut ran = Vec::new();
        answer_batch(
            &mut parts,
            &wire,
            &mut answer,
            &limits,
            1 << 20,
            |_| {},
            |_, hash, _, out| {
                ran.push(hash);
                out.extend_from_slice(format!("V{hash}\r\n").as_bytes());
            },
        );
        assert_eq!(ran, [1, 2, 3]);
        assert_eq!((parts[0].served, parts[0].consumed), (2, records));
        assert_eq!(parts[1].served, 1);
        let mut sent = Vec::new();
        let whole = write_pens(&mut parts, &answer, &wire, |fd, a, b| {
            sent.push((fd, [a, b].concat()));
            a.len() + b.len()
        });
        assert_eq!(whole, 1);
        assert_eq!(
            sent,
            [(7, b"V1\r\nV2\r\nVALUE c 0 1\r\nc\r\nEND\r\n".to_vec())]
        );
    }
}
