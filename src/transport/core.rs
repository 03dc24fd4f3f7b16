//! One core's shared state: its shard, its mesh endpoints and its waiters.
//!
//! Everything here is owned by one executor thread (`Rc`, `RefCell`, `Cell`):
//! no lock on the request path, and no atomic but the queues' and the
//! other core's parked flag (`bell`) when sending to it. Other cores reach
//! this shard only through the mesh, whose handlers run here too.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};

use super::bell::Bell;
use super::lanes::{Endpoint, Lanes};
use super::outbox::Outboxes;
use super::uring::{stir, Inbound, Ring};
use super::waiters::{PartAnswer, Waiters};
use crate::clock::{coarse_now, Clock};
use crate::config::Config;
use crate::shard::admin::Everywhere;
use crate::shard::Shard;
use crate::stats::{ConnCounters, Report};
use crate::store::NsId;
use crate::tenancy::{Auth, Namespace};
use crate::transport::envelope::{Answer, ForwardLimits, FromShard, Part, Pen, Reply, ToShard};

/// Has the allocator give large buffers back to the system when they are
/// freed. glibc's default raises its mmap threshold each time a large
/// block is freed, so after a burst of big replies the next ones come from
/// the heap, which keeps their memory once they are freed (gigabytes, in a
/// flood of large multigets). A fixed threshold keeps every block of 256
/// KiB or more (reply buffers past their idle size, batch answers) in its
/// own mapping, returned on free. Call once, before the cores start.
pub fn return_large_buffers_to_the_os() {
    // SAFETY: mallopt only sets an allocator parameter.
    unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 10) };
}

/// Bytes of connection buffers a core's connections must free before free
/// memory is handed back to the system (`Core::give_back_memory`).
const GIVE_BACK_AFTER: u64 = 8 << 20;
/// The least time between two hand-backs, in seconds: each covers the
/// whole process.
const GIVE_BACK_SPACING: u64 = 1;

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim_heaps() {
    let start = std::time::Instant::now();
    // SAFETY: malloc_trim only returns free memory of the allocator's heaps.
    unsafe { libc::malloc_trim(0) };
    tracing::debug!(took = ?start.elapsed(), "free memory handed back to the system");
}

/// Other allocators (musl's) return freed memory themselves.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim_heaps() {}

/// What every core shares: set once at start, then read-only but for the
/// connection count (touched on accept and close, never per request).
pub struct Shared {
    pub config: Config,
    pub auth: Auth,
    pub clock: Clock,
    pub open_connections: AtomicUsize,
    pub shutdown: AtomicBool,
    /// Every core's listening socket, so shutdown can wake their accepts.
    /// Locked only at start-up and at shutdown.
    pub listeners: Mutex<Vec<RawFd>>,
    /// Connections placed on each core and not yet closed (touched on
    /// accept and close only).
    pub placed: Box<[AtomicUsize]>,
    /// When free memory was last handed back to the system (`coarse_now`
    /// seconds), so that cores do not do it again at once.
    last_give_back: AtomicU64,
}

impl Shared {
    pub fn new(config: Config, auth: Auth, clock: Clock) -> Shared {
        Shared {
            placed: (0..config.cores).map(|_| AtomicUsize::new(0)).collect(),
            config,
            auth,
            clock,
            open_connections: AtomicUsize::new(0),
            shutdown: AtomicBool::new(false),
            listeners: Default::default(),
            last_give_back: AtomicU64::new(0),
        }
    }

    /// Claims the next hand-back of free memory to the system, unless one
    /// was made less than `GIVE_BACK_SPACING` ago.
    fn may_give_back(&self) -> bool {
        let now = coarse_now().as_secs();
        let last = self.last_give_back.load(Ordering::Relaxed);
        now >= last + GIVE_BACK_SPACING
            && self
                .last_give_back
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    /// Picks the core that serves a connection `accepting` took in, and
    /// counts it there: `accepting` itself, unless balancing is on and
    /// another core has fewer connections, which then adopts it.
    /// SO_REUSEPORT spreads connections by a hash of their addresses, so
    /// 128 connections land about 64 ± 6 per core on two cores; the core
    /// with more carries more of the socket work, and every other core
    /// waits on its answers.
    pub fn place(&self, accepting: usize) -> usize {
        let mut home = accepting;
        if self.config.balance_connections {
            let mut fewest = self.placed[accepting].load(Ordering::Relaxed);
            for (core, placed) in self.placed.iter().enumerate() {
                let placed = placed.load(Ordering::Relaxed);
                if placed < fewest {
                    (home, fewest) = (core, placed);
                }
            }
        }
        self.placed[home].fetch_add(1, Ordering::Relaxed);
        home
    }

    /// A connection placed on `core` closed (or was never served).
    pub fn unplace(&self, core: usize) {
        self.placed[core].fetch_sub(1, Ordering::Relaxed);
    }

    pub fn shutting_down(&self) -> bool {
        self.shutdown.load(Ordering::Relaxed)
    }

    /// Stops accepting on every core: sets the flag, then shuts the listening
    /// sockets down, which fails each core's pending accept.
    pub fn stop_accepting(&self) {
        self.shutdown.store(true, Ordering::Relaxed);
        for &fd in self
            .listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            // SAFETY: shutdown(2) on a descriptor the cores keep open until exit.
            unsafe { libc::shutdown(fd, libc::SHUT_RD) };
        }
    }
}

pub struct Core {
    /// This core's shard number, which is also its id on the request mesh.
    pub(super) index: usize,
    pub(super) shards: usize,
    pub(super) shard: RefCell<Shard>,
    pub(super) shared: Arc<Shared>,
    /// Forwards work to the owning core, and receives other cores' work.
    pub(super) to_shard: Endpoint<ToShard>,
    /// Sends answers back to the asking core, and receives this core's.
    pub(super) replies: Endpoint<Reply>,
    /// Every core's bell, this one's at `index`.
    bells: Arc<[Bell]>,
    /// Waiters for single messages (flush, stats): each gets its `FromShard`.
    pub(super) waiters: Waiters<FromShard>,
    /// Waiters for batch parts: each gets its share of a batch's answer.
    pub(super) part_waiters: Waiters<PartAnswer>,
    pub(super) conns: RefCell<ConnCounters>,
    /// Requests for each other shard, gathered from every connection until
    /// the flusher sends them as one batch.
    outbox: RefCell<Outboxes>,
    /// The flusher's waker, and whether a flush is due.
    flusher: RefCell<Option<Waker>>,
    flush_due: Cell<bool>,
    /// This core's socket ring (`None`: glommio's sockets), for connections
    /// other cores hand over.
    pub(super) ring: Option<Rc<Ring>>,
    /// What this core may be owed by each other core, and the caps of the
    /// batches it sends.
    pub(super) forward_limits: ForwardLimits,
    /// Connections waiting for a deferred answer (`bell`).
    deferred_waits: Cell<usize>,
    /// What a part whose replies its owner wrote gets instead of the
    /// batch's answer: it has nothing to place.
    nothing_to_place: Rc<Answer>,
    /// Bytes of connection buffers freed since free memory was last handed
    /// back to the system.
    buffers_freed: Cell<u64>,
}

impl Inbound for Core {
    fn poll(&self) -> usize {
        self.to_shard.poll() + self.replies.poll()
    }

    fn pending(&self) -> bool {
        self.to_shard.pending() || self.replies.pending()
    }

    fn keep_awake(&self) -> bool {
        self.to_shard.has_blocked_senders() || self.replies.has_blocked_senders()
    }

    /// A connection waits for the answer to a reply written on its behalf,
    /// or a batch waits for the budget answers give back.
    fn wants_deferred(&self) -> bool {
        self.deferred_waits.get() > 0 || self.outbox.borrow().starving()
    }
}

/// The mesh between cores as one core joins it: both meshes' queues, every
/// core's bell, and which core this is.
#[derive(Clone)]
pub struct Mesh {
    pub index: usize,
    pub requests: Arc<Lanes<ToShard>>,
    pub replies: Arc<Lanes<Reply>>,
    pub bells: Arc<[Bell]>,
}

impl Mesh {
    /// The mesh of `cores` cores, `capacity` messages per queue, as core 0
    /// joins it (`for_core` gives the others').
    pub fn new(cores: usize, capacity: usize) -> std::io::Result<Mesh> {
        Ok(Mesh {
            index: 0,
            requests: Lanes::new(cores, capacity),
            replies: Lanes::new(cores, capacity),
            bells: (0..cores)
                .map(|_| Bell::new())
                .collect::<std::io::Result<Vec<_>>>()?
                .into(),
        })
    }

    pub fn for_core(&self, index: usize) -> Mesh {
        Mesh {
            index,
            ..self.clone()
        }
    }
}

impl Core {
    /// Core `mesh.index` of `mesh.bells.len()`, on its own thread.
    pub fn new(shard: Shard, shared: Arc<Shared>, mesh: &Mesh, ring: Option<Rc<Ring>>) -> Core {
        let shards = mesh.bells.len();
        let forward_limits = ForwardLimits::new(shared.config.max_item_size);
        Core {
            index: mesh.index,
            shards,
            shard: RefCell::new(shard),
            shared,
            to_shard: Endpoint::new(mesh.requests.clone(), mesh.index),
            replies: Endpoint::new(mesh.replies.clone(), mesh.index),
            bells: mesh.bells.clone(),
            waiters: Waiters::default(),
            part_waiters: Waiters::default(),
            conns: Default::default(),
            outbox: RefCell::new(Outboxes::new(shards, forward_limits)),
            flusher: RefCell::new(None),
            flush_due: Cell::new(false),
            ring,
            forward_limits,
            deferred_waits: Cell::new(0),
            nothing_to_place: Rc::new(Answer::default()),
            buffers_freed: Cell::new(0),
        }
    }

    /// The connections gave `bytes` of buffers back (closed, or shrank
    /// them after a burst).
    pub(super) fn buffers_freed(&self, bytes: usize) {
        self.buffers_freed
            .set(self.buffers_freed.get() + bytes as u64);
    }

    /// Hands free memory back to the system once this core's connections
    /// have freed `GIVE_BACK_AFTER` bytes of buffers: the clients of a
    /// burst have left, or gone quiet. Those buffers (16 KiB and up; the
    /// larger, from 256 KiB, are mapped apart and returned when freed) come
    /// from the allocator's heaps, which keep freed memory for reuse: after
    /// a burst of 4,000 connections, the process kept about 32 KiB for each
    /// once they had all gone. `malloc_trim` returns every heap's free
    /// pages, on this core's thread and under each heap's lock in turn (so
    /// another core's allocation may wait while its heap is trimmed):
    /// 11-20 ms after 4,000 connections left, a fraction of a millisecond
    /// where little is free.
    pub(super) fn give_back_memory(&self) {
        if self.buffers_freed.get() >= GIVE_BACK_AFTER && self.shared.may_give_back() {
            trim_heaps();
            self.buffers_freed.set(0);
        }
    }

    /// This core's id on the reply mesh (where its answers must be sent).
    pub fn reply_id(&self) -> usize {
        self.replies.peer_id()
    }

    /// The bounds of forwarded work, for a driver outside transport (the
    /// mesh benchmark).
    pub fn forward_limits(&self) -> ForwardLimits {
        self.forward_limits
    }

    /// The next reply from core `from` (for a driver outside transport;
    /// transport's own handler is `mesh::serve_replies`).
    pub async fn next_reply(&self, from: usize) -> Reply {
        self.replies.recv(from).await
    }

    /// This core's bell, which other cores ring.
    pub fn bell(&self) -> &Bell {
        &self.bells[self.index]
    }

    /// Wakes core `to` if it sleeps (for a `deferred` message, only if it
    /// wants one): through this core's ring with its next enter, or
    /// (without one) its eventfd.
    fn ring_bell(&self, to: usize, deferred: bool) {
        let bell = &self.bells[to];
        let wake = if deferred {
            bell.should_wake_deferred()
        } else {
            bell.should_wake()
        };
        if wake {
            match &self.ring {
                Some(ring) => ring.wake(bell),
                None => bell.ring_eventfd(),
            }
        }
    }

    /// Waits `period`: on the core's socket ring where it has one, so the
    /// timer ends the driver's sleep there (`uring`), else on glommio's
    /// timers.
    pub async fn pause(&self, period: std::time::Duration) {
        match &self.ring {
            Some(ring) => ring.pause(period).await,
            None => glommio::timer::sleep(period).await,
        }
    }

    /// This core's figures: one namespace's, or (`None`) the core's totals,
    /// connection counters included.
    pub fn report(&self, ns: Option<NsId>) -> Report {
        let mut report = self.shard.borrow().report(ns);
        if ns.is_none() {
            // Answers already in this core's queues count as received: an
            // answer deferred (its replies written by the owner) waits
            // there until the core next wakes, still holding a batch's cap.
            self.take_replies();
            report.conns = *self.conns.borrow();
            report.conns.forward_reply_bytes = self.forward_reply_bytes() as u64;
            if let Some(ring) = &self.ring {
                (report.conns.idle_polls, report.conns.idle_poll_hits) = ring.idle_polls();
                (report.conns.idle_sleeps, report.conns.idle_parks) = ring.idle_sleeps();
            }
        }
        report
    }

    /// Hands an answer from another core to what waits for it: a batch's
    /// to its parts' connections, any other to its waiter.
    pub fn take_reply(&self, reply: Reply) {
        match reply.body {
            FromShard::Batch {
                shard,
                answer,
                wire,
                parts,
                cap,
            } => self.deliver(shard, answer, wire, parts, cap),
            body => self.waiters.complete(reply.id, body),
        }
    }

    /// Takes every answer already queued for this core, in order, as its
    /// reply handlers would when next woken.
    fn take_replies(&self) {
        for peer in (0..self.shards).filter(|&p| p != self.index) {
            while let Some(reply) = self.replies.try_recv(peer) {
                self.take_reply(reply);
            }
        }
    }

    /// Sends `make(reply_to, id)` to `shard`; its answer goes to waiter `id`.
    pub async fn send(&self, shard: usize, make: impl FnOnce(usize, u32) -> ToShard) -> u32 {
        let id = self.waiters.register();
        self.post(shard, make(self.reply_id(), id)).await;
        id
    }

    /// Puts `message` on the request mesh to `shard`, waiting for room.
    pub async fn post(&self, shard: usize, mut message: ToShard) {
        loop {
            match self.to_shard.try_send(shard, message) {
                Ok(()) => return self.ring_bell(shard, false),
                Err(back) => {
                    message = back;
                    self.ring_bell(shard, false);
                    self.to_shard.room(shard).await;
                }
            }
        }
    }

    /// Puts `reply` on the reply mesh to core `to`, waiting for room.
    pub async fn answer(&self, to: usize, mut reply: Reply) {
        let deferred = reply.deferred;
        loop {
            match self.replies.try_send(to, reply) {
                Ok(()) => return self.ring_bell(to, deferred),
                Err(back) => {
                    reply = back;
                    // A full queue: its owner must drain it, whatever it wants.
                    self.ring_bell(to, false);
                    self.replies.room(to).await;
                }
            }
        }
    }

    /// Does `op` on every shard, this core's first, and sums their reports
    /// where it asks for them.
    pub async fn everywhere(&self, op: Everywhere) -> Option<Report> {
        let mut total = match op {
            Everywhere::Report { ns } => Some(self.report(ns)),
            _ => self.shard.borrow_mut().everywhere(op),
        };
        let others = self
            .ask_others(|reply_to, id| match op {
                Everywhere::Flush { ns, delay } => ToShard::Flush {
                    reply_to,
                    id,
                    ns,
                    delay,
                },
                Everywhere::Report { ns } => ToShard::Report { reply_to, id, ns },
                Everywhere::Reset { ns } => ToShard::Reset { reply_to, id, ns },
            })
            .await;
        for answer in others {
            if let (Some(total), FromShard::Report(report)) = (&mut total, answer) {
                total.add(&report);
            }
        }
        total
    }

    /// Sends `make(reply_to, id)` to every other shard at once, then waits
    /// for all their answers (admin commands: flush_all, stats).
    pub async fn ask_others(&self, make: impl Fn(usize, u32) -> ToShard) -> Vec<FromShard> {
        let mut ids = Vec::with_capacity(self.shards);
        for shard in (0..self.shards).filter(|&s| s != self.index) {
            ids.push(self.send(shard, &make).await);
        }
        let mut answers = Vec::with_capacity(ids.len());
        for id in ids {
            answers.push(self.waiters.wait(id).await);
        }
        answers
    }

    /// Queues keyed requests of `ns` (`wire`) for `shard`, to go in the
    /// next batch, with the connection's socket and the tail to write
    /// after their replies if it lends it (`lent`);
    /// returns the waiter that receives their replies, as a `PartAnswer` in
    /// `part_waiters` (which says how many of them ran).
    pub fn forward(
        &self,
        shard: usize,
        ns: Namespace,
        wire: &[u8],
        lent: Option<(Pen, &[u8])>,
    ) -> u32 {
        let waiter = self.part_waiters.register();
        self.outbox
            .borrow_mut()
            .queue(shard, ns, wire, waiter, lent);
        self.wake_flusher();
        waiter
    }

    fn wake_flusher(&self) {
        if !self.flush_due.replace(true) {
            stir();
            if let Some(w) = self.flusher.borrow_mut().take() {
                w.wake();
            }
        }
    }

    /// Bytes of replies other cores owe this core or it still holds.
    pub fn forward_reply_bytes(&self) -> usize {
        self.outbox.borrow().owed()
    }

    /// Whether less than half of the reply budget for `shard` is free.
    pub fn reply_budget_short(&self, shard: usize) -> bool {
        self.outbox.borrow().short(shard)
    }

    /// Sends every pending batch, one message per shard. Runs for the life
    /// of the core, woken by the first `forward` after each flush; tasks
    /// already runnable then run first, so their requests join the batch.
    pub async fn flush_outbox(self: Rc<Self>) {
        loop {
            poll_fn(|cx| {
                if self.flush_due.replace(false) {
                    Poll::Ready(())
                } else {
                    *self.flusher.borrow_mut() = Some(cx.waker().clone());
                    Poll::Pending
                }
            })
            .await;
            for shard in 0..self.shards {
                let Some(batch) = self.outbox.borrow_mut().take_batch(shard) else {
                    continue;
                };
                let message = ToShard::Batch {
                    reply_to: self.reply_id(),
                    parts: batch.parts,
                    wire: batch.wire,
                    answer: batch.answer,
                    cap: batch.cap,
                };
                self.conns.borrow_mut().forward_batches += 1;
                self.post(shard, message).await;
            }
        }
    }

    /// Waits for the answer to a part whose socket was lent (`waiter`),
    /// having the core woken for it even though it comes deferred.
    pub async fn wait_deferred(&self, waiter: u32) -> PartAnswer {
        struct Waiting<'a>(&'a Cell<usize>);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.set(self.0.get() - 1);
            }
        }
        self.deferred_waits.set(self.deferred_waits.get() + 1);
        let _waiting = Waiting(&self.deferred_waits);
        self.part_waiters.wait(waiter).await
    }

    /// A batch's answer arrived: what its cap reserved beyond its size goes
    /// back to the budget, each part's waiter gets the shared answer (or,
    /// if its owner wrote its replies, nothing to place), and the batch's
    /// buffers go back to the outbox.
    fn deliver(
        &self,
        shard: usize,
        mut answer: Answer,
        wire: Vec<u8>,
        parts: Vec<Part>,
        cap: usize,
    ) {
        let waited = self.outbox.borrow_mut().delivered(shard, &mut answer, cap);
        if waited {
            self.wake_flusher();
        }
        let answer = Rc::new(answer);
        for part in &parts {
            let share = if part.written_whole() {
                self.nothing_to_place.clone()
            } else {
                answer.clone()
            };
            self.part_waiters.complete(part.waiter, (share, *part));
        }
        self.outbox.borrow_mut().reuse_request(shard, wire, parts);
        // If no part holds it, the answer goes home now.
        self.release(shard, answer);
    }

    /// A connection is done with a batch answer from `shard`: the last one
    /// to let go sends its buffers home with the next batch.
    pub fn release(&self, shard: usize, answer: Rc<Answer>) {
        if let Ok(answer) = Rc::try_unwrap(answer) {
            let waited = self.outbox.borrow_mut().reuse_answer(shard, answer);
            if waited {
                self.wake_flusher();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::config::Args;

    fn shared(cores: usize, balance: &str) -> Shared {
        let args = Args::parse_from(["ferrocache", "--cores", "1", "--balance", balance]);
        let mut config = Config::from_args(args).expect("valid arguments");
        config.cores = cores;
        Shared::new(config, Auth::open(), Clock::new())
    }

    fn placed(shared: &Shared) -> Vec<usize> {
        shared
            .placed
            .iter()
            .map(|p| p.load(Ordering::Relaxed))
            .collect()
    }

    #[test]
    fn balancing_evens_out_what_the_kernel_gave_one_core() {
        let shared = shared(3, "on");
        // Every connection lands on core 0, as a skewed SO_REUSEPORT hash could.
        let homes: Vec<usize> = (0..7).map(|_| shared.place(0)).collect();
        assert_eq!(homes, [0, 1, 2, 0, 1, 2, 0]);
        assert_eq!(placed(&shared), [3, 2, 2]);
        // Core 2 loses two; the next two go there, wherever they were accepted.
        shared.unplace(2);
        shared.unplace(2);
        assert_eq!([shared.place(1), shared.place(0)], [2, 2]);
        // A tie keeps the connection where it was accepted.
        assert_eq!(placed(&shared), [3, 2, 2]);
        assert_eq!(shared.place(2), 2);
        assert_eq!(shared.place(1), 1);
        assert_eq!(placed(&shared), [3, 3, 3]);
    }

    #[test]
    fn without_balancing_each_core_keeps_what_it_accepts() {
        let shared = shared(3, "off");
        let homes: Vec<usize> = (0..4).map(|_| shared.place(0)).collect();
        assert_eq!(homes, [0, 0, 0, 0]);
        assert_eq!(shared.place(2), 2);
        shared.unplace(0);
        assert_eq!(placed(&shared), [3, 0, 1]);
    }
}
