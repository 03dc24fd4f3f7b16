//! One core's outgoing batches to the other shards, their reply budgets,
//! and the batch buffers kept for reuse.
//!
//! Owns, per shard: the requests queued since the last batch went (`wire`
//! and its `Part`s), how much of the budget for that shard's replies is
//! not yet spoken for, and the buffers that came home for batches to come.
//! A batch goes with a cap taken from that budget (`ForwardLimits`), which
//! answers give back as connections let go of them; past the budget a
//! batch waits. It does no I/O and never wakes anything: `core` sends what
//! [`Outboxes::take_batch`] gives and wakes the flusher when
//! [`Outboxes::refund`] says a waiting batch may go.

use super::envelope::{Answer, ForwardLimits, Part, Pen};
use crate::tenancy::Namespace;

/// Spare batch buffers (wire and answers) kept for batches to come may hold
/// this much per core in all; past it, buffers that come home are freed. A
/// busy core's batches to one owner reach a few hundred KiB at pipeline 16.
const SPARE_BUDGET: usize = 4 << 20;
/// Buffers of each kind kept per shard for batches to come: enough for
/// the batches in flight at once. Unpipelined load sends many small
/// batches, several in flight to each owner.
const SPARES: usize = 16;
/// What a batch buffer made afresh starts with, so a small batch does not
/// grow by doubling from nothing.
const FRESH_BATCH: usize = 2048;

/// A batch ready to go to a shard.
pub struct Batch {
    pub parts: Vec<Part>,
    pub wire: Vec<u8>,
    /// The buffer its answer is written into.
    pub answer: Answer,
    /// The most its answer may hold.
    pub cap: usize,
}

pub struct Outboxes {
    boxes: Vec<Outbox>,
    limits: ForwardLimits,
    /// Bytes of the spare buffers in all the outboxes (up to `SPARE_BUDGET`).
    spare_bytes: usize,
}

/// One shard's pending batch, and buffers that came home for the next.
#[derive(Default)]
struct Outbox {
    wire: Vec<u8>,
    parts: Vec<Part>,
    /// The part of the budget for replies from this shard not spoken for
    /// (batches in flight count at their caps, answers at their size).
    left: usize,
    /// A batch waits for `left` to grow.
    starved: bool,
    spare_wires: Vec<Vec<u8>>,
    spare_parts: Vec<Vec<Part>>,
    spare_answers: Vec<Answer>,
}

fn answer_bytes(a: &Answer) -> usize {
    a.out.capacity() + a.ends.capacity() * 4
}

impl Outboxes {
    pub fn new(shards: usize, limits: ForwardLimits) -> Outboxes {
        Outboxes {
            boxes: (0..shards)
                .map(|_| Outbox {
                    left: limits.budget,
                    ..Outbox::default()
                })
                .collect(),
            limits,
            spare_bytes: 0,
        }
    }

    /// Queues keyed requests of `ns` (`wire`) for `shard`, to go in its
    /// next batch; `waiter` receives their replies. `lent`: the socket
    /// lent for them, and the tail to write after their replies.
    pub fn queue(
        &mut self,
        shard: usize,
        ns: Namespace,
        wire: &[u8],
        waiter: u32,
        lent: Option<(Pen, &[u8])>,
    ) {
        let o = &mut self.boxes[shard];
        o.wire.extend_from_slice(wire);
        // A lent socket's tail follows the part's records (`Part::records_end`).
        let pen = lent.map(|(pen, tail)| {
            o.wire.extend_from_slice(tail);
            pen
        });
        let mut part = Part::new(ns, o.wire.len(), waiter);
        part.pen = pen;
        o.parts.push(part);
    }

    /// Whether a batch waits for budget (which every answer may give back).
    pub fn starving(&self) -> bool {
        self.boxes.iter().any(|o| o.starved)
    }

    /// Bytes of replies other shards owe this core or it still holds.
    pub fn owed(&self) -> usize {
        let budget = self.limits.budget;
        self.boxes.iter().map(|o| budget - o.left).sum()
    }

    /// Whether less than half of the reply budget for `shard` is free.
    pub fn short(&self, shard: usize) -> bool {
        self.boxes[shard].left < self.limits.budget / 2
    }

    /// Gives `bytes` of `shard`'s reply budget back. True if a batch was
    /// waiting for it, and may go now.
    pub fn refund(&mut self, shard: usize, bytes: usize) -> bool {
        let o = &mut self.boxes[shard];
        o.left += bytes;
        debug_assert!(o.left <= self.limits.budget);
        std::mem::take(&mut o.starved)
    }

    /// The batch for `shard`, if requests wait for it and its reply budget
    /// allows one; the outbox starts the next with spare buffers.
    pub fn take_batch(&mut self, shard: usize) -> Option<Batch> {
        let o = &mut self.boxes[shard];
        if o.parts.is_empty() {
            return None;
        }
        // Past its budget, the batch waits for answers to be let go.
        let Some(cap) = self.limits.batch_cap(o.left) else {
            o.starved = true;
            return None;
        };
        o.left -= cap;
        let wire = match o.spare_wires.pop() {
            Some(wire) => {
                self.spare_bytes -= wire.capacity();
                wire
            }
            None => Vec::with_capacity(FRESH_BATCH),
        };
        let parts = o.spare_parts.pop().unwrap_or_default();
        let answer = match o.spare_answers.pop() {
            Some(answer) => {
                self.spare_bytes -= answer_bytes(&answer);
                answer
            }
            None => Answer {
                out: Vec::with_capacity(FRESH_BATCH),
                ends: Vec::with_capacity(FRESH_BATCH / 64),
                charged: 0,
            },
        };
        Some(Batch {
            parts: std::mem::replace(&mut o.parts, parts),
            wire: std::mem::replace(&mut o.wire, wire),
            answer,
            cap,
        })
    }

    /// A batch's answer came home: of the `cap` it was sent with, the part
    /// it does not fill goes back to the budget now (true if a batch was
    /// waiting for it), and the answer holds the rest until it is let go.
    /// The owner stops before a reply that might pass the cap
    /// (`envelope::answer_batch`); were an answer past it anyway, the books
    /// still balance: the cap is all that ever comes back.
    pub fn delivered(&mut self, shard: usize, answer: &mut Answer, cap: usize) -> bool {
        debug_assert!(answer.out.len() <= cap, "an answer past its cap");
        answer.charged = answer.out.len().min(cap);
        self.refund(shard, cap - answer.charged)
    }

    /// A batch's request buffers came home with its answer: kept for the
    /// batches to come, within the spare budget.
    pub fn reuse_request(&mut self, shard: usize, wire: Vec<u8>, mut parts: Vec<Part>) {
        let o = &mut self.boxes[shard];
        if o.spare_wires.len() < SPARES && self.spare_bytes + wire.capacity() <= SPARE_BUDGET {
            self.spare_bytes += wire.capacity();
            o.spare_wires.push(wire);
        }
        if o.spare_parts.len() < SPARES {
            parts.clear();
            o.spare_parts.push(parts);
        }
    }

    /// No connection holds `answer` any more: its budget goes back (true
    /// if a batch was waiting for it), and its buffers are kept for the
    /// next batch to `shard`, which carries them home.
    pub fn reuse_answer(&mut self, shard: usize, mut answer: Answer) -> bool {
        let waited = self.refund(shard, std::mem::take(&mut answer.charged));
        let bytes = answer_bytes(&answer);
        let spares = &mut self.boxes[shard].spare_answers;
        if spares.len() < SPARES && self.spare_bytes + bytes <= SPARE_BUDGET {
            self.spare_bytes += bytes;
            answer.out.clear();
            answer.ends.clear();
            spares.push(answer);
        }
        waited
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ForwardLimits {
        ForwardLimits::new(1 << 20)
    }

    fn queued(outboxes: &mut Outboxes, shard: usize) {
        outboxes.queue(shard, Namespace { id: 0 }, b"0123456789", 7, None);
    }

    #[test]
    fn a_batch_takes_its_cap_from_the_budget_and_answers_give_it_back() {
        let limits = limits();
        let mut o = Outboxes::new(2, limits);
        assert!(o.take_batch(1).is_none(), "nothing queued");
        queued(&mut o, 1);
        let batch = o.take_batch(1).expect("a batch");
        assert_eq!(batch.wire, b"0123456789");
        assert_eq!(batch.parts.len(), 1);
        assert_eq!(o.owed(), batch.cap);
        assert!(o.take_batch(1).is_none(), "the outbox starts empty again");
        // The answer's size is held until it is let go; the rest of the cap
        // comes back as soon as it arrives.
        let mut answer = batch.answer;
        answer.out.extend_from_slice(b"VALUE ...");
        assert!(!o.delivered(1, &mut answer, batch.cap));
        assert_eq!(o.owed(), answer.out.len());
        o.reuse_request(1, batch.wire, batch.parts);
        assert!(!o.reuse_answer(1, answer));
        assert_eq!(o.owed(), 0);
        // The next batch reuses the buffers that came home.
        queued(&mut o, 1);
        let again = o.take_batch(1).unwrap();
        assert_eq!(again.wire, b"0123456789");
        assert!(again.answer.out.is_empty());
    }

    #[test]
    fn past_its_budget_a_batch_waits_and_a_refund_lets_it_go() {
        let limits = limits();
        let mut o = Outboxes::new(1, limits);
        let mut caps = Vec::new();
        loop {
            queued(&mut o, 0);
            match o.take_batch(0) {
                Some(batch) => caps.push(batch.cap),
                None => break,
            }
            assert!(caps.len() < 10_000, "the budget never ran out");
        }
        assert!(o.owed() <= limits.budget);
        assert!(o.short(0));
        // Answers come back: the waiting batch may go.
        assert!(o.refund(0, caps[0]));
        assert!(o.take_batch(0).is_some());
    }

    #[test]
    fn spare_buffers_stay_within_their_budget() {
        let mut o = Outboxes::new(1, limits());
        for _ in 0..4 * SPARES {
            o.reuse_request(0, Vec::with_capacity(1 << 20), Vec::new());
        }
        assert!(o.spare_bytes <= SPARE_BUDGET);
        assert!(o.boxes[0].spare_wires.len() <= SPARES);
        assert_eq!(o.boxes[0].spare_parts.len(), SPARES);
    }
}
