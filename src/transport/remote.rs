//! One connection's requests for other shards, and putting their replies
//! in place.
//!
//! Owns the per-shard queues of forwarded records, where each reply
//! belongs in the connection's output, and the replies that arrived but
//! cannot be placed yet. An owner may answer only part of what was sent
//! (`envelope::answer_batch` bounds every answer): the rest is sent again,
//! and the replies already in hand wait, in order, until everything
//! before them is there. It never touches a socket or a core: the
//! connection forwards, waits and writes.

use std::rc::Rc;

use crate::protocol::{GetKind, ReplyBound};
use crate::transport::envelope::{push_get, push_wire, Answer, Part};

/// What a connection sends a key's owner.
#[derive(Clone, Copy, Debug)]
pub enum Forward<'a> {
    /// One key of a retrieval, as its kind and key.
    Get(GetKind, &'a [u8]),
    /// Any other request, as the client's own bytes, and how long its
    /// reply can be.
    Wire(&'a [u8], ReplyBound),
}

/// Requests queued for other shards, and where their replies go in the
/// connection's output.
pub struct Remote {
    queues: Vec<Queue>,
    inserts: Vec<Insert>,
    /// The first insert not yet placed.
    next: usize,
    /// Bytes queued in all the queues' wires.
    pub wire_bytes: usize,
    /// (shard, waiter) of the batches in flight.
    pub waiting: Vec<(usize, u32)>,
}

#[derive(Default)]
struct Queue {
    wire: Vec<u8>,
    /// Records queued, and how many of them have been answered (their
    /// replies placed, held, or in `answer`), taking `answered_bytes` of
    /// the wire.
    count: u32,
    answered: u32,
    answered_bytes: usize,
    /// Records whose replies are in place.
    placed: u32,
    /// Replies received but not yet placed, from `held_pos` on.
    held: Vec<u8>,
    held_ends: Vec<usize>,
    held_pos: usize,
    /// The latest answer: its replies are those of records `base..`.
    answer: Option<(Rc<Answer>, Part, u32)>,
}

impl Queue {
    fn held_reply(&self, i: usize) -> &[u8] {
        &self.held[self.held_start(i)..self.held_ends[i]]
    }

    /// Where held reply `i` starts.
    fn held_start(&self, i: usize) -> usize {
        if i == 0 {
            0
        } else {
            self.held_ends[i - 1]
        }
    }

    /// Moves the answer's replies from record `from` on into `held`;
    /// returns the answer, for the connection to let go.
    fn hold(&mut self, from: u32) -> Option<Rc<Answer>> {
        let (answer, part, base) = self.answer.take()?;
        if self.held_pos == self.held_ends.len() {
            self.held.clear();
            self.held_ends.clear();
            self.held_pos = 0;
        }
        for i in from.max(base)..base + part.served {
            self.held
                .extend_from_slice(answer.reply((part.first + i - base) as usize));
            self.held_ends.push(self.held.len());
        }
        Some(answer)
    }
}

struct Insert {
    pos: usize,
    shard: u32,
    index: u32,
}

/// What placing the replies came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Spliced {
    /// Every reply is in place; the output is whole.
    All,
    /// `ready` holds the output up to the first reply still missing; the
    /// output holds the rest, and must wait for it.
    Until,
}

impl Remote {
    pub fn new(shards: usize) -> Remote {
        Remote {
            queues: (0..shards).map(|_| Queue::default()).collect(),
            inserts: Vec::new(),
            next: 0,
            wire_bytes: 0,
            waiting: Vec::new(),
        }
    }

    /// Requests queued and not yet placed.
    pub fn pending(&self) -> usize {
        self.inserts.len() - self.next
    }

    pub fn is_empty(&self) -> bool {
        self.inserts.is_empty()
    }

    /// Queues a request (hashed to `hash`) for `shard`. Its reply belongs
    /// at `pos` in the output.
    pub fn queue(&mut self, shard: usize, pos: usize, hash: u64, what: Forward) {
        let q = &mut self.queues[shard];
        let before = q.wire.len();
        match what {
            Forward::Get(kind, key) => push_get(&mut q.wire, hash, kind, key),
            Forward::Wire(wire, bound) => push_wire(&mut q.wire, hash, wire, bound),
        }
        self.wire_bytes += q.wire.len() - before;
        self.inserts.push(Insert {
            pos,
            shard: shard as u32,
            index: q.count,
        });
        q.count += 1;
    }

    /// The shard, and the output position, of the requests queued when
    /// one owner can write all their replies in one piece: they all go to
    /// that shard, no reply of this connection's own lies between them,
    /// and nothing of them was sent yet.
    pub fn lendable(&self) -> Option<(usize, usize)> {
        let first = self.inserts.first()?;
        if self.next != 0 || !self.waiting.is_empty() {
            return None;
        }
        let together = self
            .inserts
            .iter()
            .all(|i| i.shard == first.shard && i.pos == first.pos);
        let q = &self.queues[first.shard as usize];
        (together && q.answered == 0).then_some((first.shard as usize, first.pos))
    }

    /// The first `n` bytes of the output went ahead of the replies still
    /// to place (all before the first one's place): every place moves back
    /// by `n`.
    pub fn written_ahead(&mut self, n: usize) {
        for insert in &mut self.inserts[self.next..] {
            debug_assert!(insert.pos >= n, "written past a reply's place");
            insert.pos -= n;
        }
    }

    /// Every request queued was answered and its reply written by its
    /// owner (`envelope::Pen`): nothing is left to place.
    pub fn written_by_owner(&mut self) {
        for q in &mut self.queues {
            q.answered = q.count;
            q.answer = None;
        }
        self.reset();
    }

    /// What `shard` has yet to answer: the records' bytes and their count.
    pub fn unanswered(&self, shard: usize) -> Option<(&[u8], u32)> {
        let q = &self.queues[shard];
        (q.count > q.answered).then(|| (&q.wire[q.answered_bytes..], q.count - q.answered))
    }

    /// `shard`'s answer to what `unanswered` gave it arrived. With `keep`
    /// false its replies are copied out at once and the answer is returned
    /// to be let go (so a connection waiting on other shards holds none
    /// of a budget they may need). An answer that ran none of it holds
    /// nothing to place and is returned at once, so the requests can be
    /// sent again before anything is placed.
    pub fn answered(
        &mut self,
        shard: usize,
        answer: Rc<Answer>,
        part: Part,
        keep: bool,
    ) -> Option<Rc<Answer>> {
        if part.served == 0 {
            return Some(answer);
        }
        let q = &mut self.queues[shard];
        debug_assert!(q.answer.is_none());
        let base = q.answered;
        q.answered += part.served;
        q.answered_bytes += part.consumed;
        debug_assert!(q.answered <= q.count && q.answered_bytes <= q.wire.len());
        q.answer = Some((answer, part, base));
        if keep {
            None
        } else {
            q.hold(base)
        }
    }

    /// Places every reply it can, in order, into `ready`: the output up to
    /// each reply's place, then the reply. Answers whose replies could not
    /// all be placed have them copied aside; every answer is returned
    /// through `release`. `ready` must come in empty.
    pub fn place(
        &mut self,
        out: &mut Vec<u8>,
        ready: &mut Vec<u8>,
        mut release: impl FnMut(usize, Rc<Answer>),
    ) -> Spliced {
        let mut cursor = 0;
        let mut blocked = None;
        while self.next < self.inserts.len() {
            let insert = &self.inserts[self.next];
            let q = &mut self.queues[insert.shard as usize];
            let index = insert.index;
            let reply = if q.held_pos < q.held_ends.len() {
                q.held_pos += 1;
                q.held_reply(q.held_pos - 1)
            } else {
                match &q.answer {
                    Some((answer, part, base)) if index < base + part.served => {
                        answer.reply((part.first + index - base) as usize)
                    }
                    _ => {
                        blocked = Some(insert.pos);
                        break;
                    }
                }
            };
            ready.extend_from_slice(&out[cursor..insert.pos]);
            ready.extend_from_slice(reply);
            cursor = insert.pos;
            q.placed += 1;
            self.next += 1;
        }
        // Replies that must wait go aside: each answer goes back now.
        for (shard, q) in self.queues.iter_mut().enumerate() {
            if let Some(answer) = q.hold(q.placed) {
                release(shard, answer);
            }
        }
        match blocked {
            None => {
                ready.extend_from_slice(&out[cursor..]);
                out.clear();
                self.reset();
                Spliced::All
            }
            Some(pos) => {
                ready.extend_from_slice(&out[cursor..pos]);
                out.drain(..pos);
                self.written_ahead(pos);
                Spliced::Until
            }
        }
    }

    fn reset(&mut self) {
        for q in &mut self.queues {
            debug_assert!(q.answer.is_none() && q.answered == q.count);
            q.wire.clear();
            q.count = 0;
            q.answered = 0;
            q.answered_bytes = 0;
            q.placed = 0;
            q.held.clear();
            q.held_ends.clear();
            q.held_pos = 0;
        }
        self.inserts.clear();
        self.next = 0;
        self.wire_bytes = 0;
    }

    /// Bytes of the replies in hand not yet placed: what `place` adds to
    /// the connection's own replies, so the buffer it fills can be sized
    /// once.
    pub fn unplaced_len(&self) -> usize {
        let mut len = 0;
        for q in &self.queues {
            len += q.held.len() - q.held_start(q.held_pos);
            if let Some((answer, part, base)) = &q.answer {
                let from = q.placed.max(*base) - base + part.first;
                len += answer.replies_len(from as usize, (part.first + part.served) as usize);
            }
        }
        len
    }

    /// Bytes the queues' buffers hold.
    pub fn capacity(&self) -> usize {
        self.queues
            .iter()
            .map(|q| q.wire.capacity() + q.held.capacity() + q.held_ends.capacity() * 8)
            .sum::<usize>()
            + self.inserts.capacity() * std::mem::size_of::<Insert>()
    }

    /// Gives back buffers grown past `keep` bytes in a burst (call only
    /// when nothing is queued).
    pub fn shrink(&mut self, keep: usize) {
        debug_assert!(self.is_empty());
        for q in &mut self.queues {
            if q.wire.capacity() > keep {
                q.wire = Vec::new();
            }
            if q.held.capacity() > keep {
                q.held = Vec::new();
                q.held_ends = Vec::new();
            }
        }
        if self.inserts.capacity() * std::mem::size_of::<Insert>() > keep {
            self.inserts = Vec::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenancy::Namespace;

    /// An answer with `replies`, for a part whose first `served` records
    /// ran (each record of `wire` is one get).
    fn answer(replies: &[&[u8]], wire: &[u8], served: u32) -> (Rc<Answer>, Part) {
        let mut a = Answer::default();
        for r in replies {
            a.out.extend_from_slice(r);
            a.ends.push(a.out.len() as u32);
        }
        let mut consumed = 0;
        for _ in 0..served {
            consumed += crate::transport::envelope::read_record(&wire[consumed..]).2;
        }
        let mut part = Part::new(Namespace { id: 0 }, wire.len(), 0);
        part.served = served;
        part.consumed = consumed;
        (Rc::new(a), part)
    }

    /// Output `A?B?C?D?E` where each `?` is the reply of a forwarded get:
    /// shard 0 owns the 1st, 3rd and 4th, shard 1 the 2nd.
    fn queued() -> (Remote, Vec<u8>) {
        let mut remote = Remote::new(2);
        let mut out = Vec::new();
        for (i, shard) in [0, 1, 0, 0].into_iter().enumerate() {
            out.push(b'A' + i as u8);
            let key = [b'a' + i as u8];
            remote.queue(shard, out.len(), i as u64, Forward::Get(GetKind::Get, &key));
        }
        out.push(b'E');
        (remote, out)
    }

    #[test]
    fn only_requests_for_one_owner_in_one_place_may_lend_the_socket() {
        let (remote, _) = queued();
        assert_eq!(remote.lendable(), None, "two owners");
        let mut remote = Remote::new(2);
        assert_eq!(remote.lendable(), None, "none");
        remote.queue(1, 0, 7, Forward::Get(GetKind::Get, b"k"));
        assert_eq!(remote.lendable(), Some((1, 0)));
        remote.queue(1, 0, 8, Forward::Get(GetKind::Get, b"l"));
        assert_eq!(remote.lendable(), Some((1, 0)), "two keys, one owner");
        // Its owner wrote the replies: nothing is left to place, and the
        // connection starts afresh.
        remote.written_by_owner();
        assert!(remote.is_empty() && remote.unanswered(1).is_none());
        remote.queue(0, 3, 7, Forward::Wire(b"delete k\r\n", ReplyBound::Line));
        assert_eq!(remote.lendable(), Some((0, 3)), "after a local reply");
        remote.queue(0, 5, 8, Forward::Get(GetKind::Get, b"l"));
        assert_eq!(remote.lendable(), None, "a local reply between them");
        let mut remote = Remote::new(2);
        remote.queue(0, 3, 7, Forward::Get(GetKind::Get, b"k"));
        remote.waiting.push((0, 1));
        assert_eq!(remote.lendable(), None, "already sent");
    }

    #[test]
    fn output_written_ahead_of_the_replies_moves_their_places() {
        let mut remote = Remote::new(2);
        let mut out = b"HEAD".to_vec();
        remote.queue(1, 4, 7, Forward::Get(GetKind::Get, b"k"));
        remote.queue(1, 4, 8, Forward::Get(GetKind::Get, b"l"));
        out.extend_from_slice(b"END");
        // "HE" went out first.
        out.drain(..2);
        remote.written_ahead(2);
        let wire = remote.unanswered(1).unwrap().0.to_vec();
        let (answer, part) = answer(&[b"x", b"y"], &wire, 2);
        assert!(remote.answered(1, answer, part, true).is_none());
        let mut ready = Vec::new();
        assert_eq!(remote.place(&mut out, &mut ready, |_, _| {}), Spliced::All);
        assert_eq!(ready, b"ADxyEND");
    }

    #[test]
    fn an_answer_that_ran_nothing_is_let_go_and_the_request_sent_again() {
        let mut remote = Remote::new(2);
        remote.queue(1, 0, 7, Forward::Get(GetKind::Get, b"k"));
        let (wire, _) = remote.unanswered(1).map(|(w, n)| (w.to_vec(), n)).unwrap();
        // The owner's cap ran out before this request: nothing to keep.
        let (none, part) = answer(&[], &wire, 0);
        let back = remote.answered(1, none.clone(), part, true);
        assert!(back.is_some_and(|a| Rc::ptr_eq(&a, &none)));
        assert_eq!(remote.unanswered(1).map(|(_, n)| n), Some(1));
        // Sent again and answered, before any placing: nothing was held
        // over, so no answer is dropped without being let go.
        let (a, p) = answer(&[b"V"], &wire, 1);
        assert!(remote.answered(1, a, p, true).is_none());
        let (mut out, mut ready) = (Vec::new(), Vec::new());
        let mut released = 0;
        assert_eq!(
            remote.place(&mut out, &mut ready, |_, _| released += 1),
            Spliced::All
        );
        assert_eq!((ready.as_slice(), released), (&b"V"[..], 1));
    }

    #[test]
    fn whole_answers_are_placed_in_request_order() {
        let (mut remote, mut out) = queued();
        let (w0, n0) = remote.unanswered(0).map(|(w, n)| (w.to_vec(), n)).unwrap();
        assert_eq!(n0, 3);
        let (w1, _) = remote.unanswered(1).map(|(w, n)| (w.to_vec(), n)).unwrap();
        let (a0, p0) = answer(&[b"0", b"2", b"3"], &w0, 3);
        let (a1, p1) = answer(&[b"1"], &w1, 1);
        assert!(remote.answered(0, a0, p0, true).is_none());
        assert!(remote.answered(1, a1, p1, true).is_none());
        assert_eq!(remote.unplaced_len(), 4);
        let mut ready = Vec::new();
        let mut released = Vec::new();
        let placed = remote.place(&mut out, &mut ready, |s, a| released.push((s, a)));
        assert_eq!(placed, Spliced::All);
        assert_eq!(ready, b"A0B1C2D3E");
        assert!(out.is_empty() && remote.is_empty());
        assert_eq!(released.len(), 2);
        assert!(released.iter().all(|(_, a)| Rc::strong_count(a) == 1));
    }

    #[test]
    fn a_partial_answer_holds_later_replies_until_the_rest_arrives() {
        let (mut remote, mut out) = queued();
        let (w0, _) = remote.unanswered(0).map(|(w, n)| (w.to_vec(), n)).unwrap();
        let (w1, _) = remote.unanswered(1).map(|(w, n)| (w.to_vec(), n)).unwrap();
        // Shard 0 runs only its first record; shard 1 all of its one.
        let (a0, p0) = answer(&[b"0"], &w0, 1);
        let (a1, p1) = answer(&[b"1"], &w1, 1);
        remote.answered(0, a0, p0, true);
        remote.answered(1, a1, p1, true);
        let mut ready = Vec::new();
        let mut released = 0;
        let placed = remote.place(&mut out, &mut ready, |_, _| released += 1);
        assert_eq!(placed, Spliced::Until);
        assert_eq!(ready, b"A0B1C");
        assert_eq!(out, b"DE");
        assert_eq!(released, 2);
        assert_eq!(remote.pending(), 2);
        // What shard 0 has left is sent again: its 2nd and 3rd records.
        let (rest, n) = remote.unanswered(0).map(|(w, n)| (w.to_vec(), n)).unwrap();
        assert_eq!((rest.as_slice(), n), (&w0[p0.consumed..], 2));
        assert!(remote.unanswered(1).is_none());
        let (a0, p0) = answer(&[b"2", b"3"], &rest, 2);
        remote
            .answered(0, a0, p0, false)
            .expect("copied out, let go");
        assert_eq!(remote.unplaced_len(), 2, "the two copied aside");
        let mut ready = Vec::new();
        let placed = remote.place(&mut out, &mut ready, |_, _| panic!("already let go"));
        assert_eq!(placed, Spliced::All);
        assert_eq!(ready, b"2D3E");
        assert!(remote.is_empty());
    }

    #[test]
    fn replies_behind_a_missing_one_are_copied_aside_in_order() {
        let (mut remote, mut out) = queued();
        let (w0, _) = remote.unanswered(0).map(|(w, n)| (w.to_vec(), n)).unwrap();
        let (w1, _) = remote.unanswered(1).map(|(w, n)| (w.to_vec(), n)).unwrap();
        // Shard 1 (the 2nd reply) ran nothing; shard 0 ran everything.
        let (a0, p0) = answer(&[b"0", b"2", b"3"], &w0, 3);
        let (a1, p1) = answer(&[], &w1, 0);
        remote.answered(0, a0, p0, true);
        remote.answered(1, a1, p1, true);
        let mut ready = Vec::new();
        let placed = remote.place(&mut out, &mut ready, |_, _| {});
        assert_eq!((placed, ready.as_slice()), (Spliced::Until, &b"A0B"[..]));
        assert_eq!(remote.unplaced_len(), 2, "2 and 3, held");
        let (w1, n) = remote.unanswered(1).map(|(w, n)| (w.to_vec(), n)).unwrap();
        assert_eq!(n, 1);
        let (a1, p1) = answer(&[b"1"], &w1, 1);
        remote.answered(1, a1, p1, true);
        assert_eq!(remote.unplaced_len(), 3);
        let mut ready = Vec::new();
        assert_eq!(remote.place(&mut out, &mut ready, |_, _| {}), Spliced::All);
        assert_eq!(ready, b"1C2D3E");
    }
}
