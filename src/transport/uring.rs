//! A per-core io_uring of our own, for client sockets, and the one place a
//! core sleeps.
//!
//! Owns the ring, the in-flight operations and the driver task that submits
//! and reaps them, and decides when the core sleeps. It knows nothing of the
//! protocol.
//!
//! Why: glommio's rings are set up without `COOP_TASKRUN`/`DEFER_TASKRUN`, so
//! every socket completion is delivered by an interrupt-driven task-work run,
//! and glommio re-arms a one-shot poll after each partial read, which costs
//! an unpipelined request dearly (docs/PERFORMANCE.md). This ring is created
//! with `SINGLE_ISSUER | DEFER_TASKRUN`: completions are run when *we* enter
//! the kernel, once per driver turn, for every socket of the core at once.
//! With `TASKRUN_FLAG`, the kernel also says in shared memory when
//! completions wait for us, so a turn with nothing to submit and nothing
//! waiting in the kernel makes no system call (it reaps what a sleep
//! posted), and neither does the spin below.
//!
//! Integration with glommio: the driver task runs on the executor like any
//! other task. While work is flowing it loops (submit + reap in one
//! `io_uring_enter`, poll the mesh from other cores, then yield so woken
//! tasks run and queue more). When a turn finds nothing, it yields once more
//! so that every runnable task runs; if that made nothing happen either, no
//! task of the core can run until a completion or a message arrives. The
//! driver then polls for one for up to `--spin-us`, if the core has lately
//! been busy enough for that to pay (`spin_gate`), and sleeps right here,
//! in `io_uring_enter` on this ring: socket completions, wake-ups other
//! cores post with `IORING_OP_MSG_RING` (see `bell`), and the core's own
//! timers (`pause`, an `IORING_OP_TIMEOUT`) end it. glommio's idle path
//! (its own rings' enters, its timers re-armed, a `membarrier`, which
//! interrupts every CPU that runs one of the process's threads) stays out
//! of the way. Only a core that stays idle for all of `RING_SLEEP`, with
//! not even a timer of its own due, parks on the eventfd registered with
//! this ring, read through glommio, so the executor sleeps as usual and
//! glommio's timers fire. Operations queued while the driver is parked
//! there (say, sends of replies that came back from other cores) are
//! submitted by a second task, woken by the first of them, after the other
//! tasks runnable then have queued theirs: one `io_uring_enter` for all of
//! them, not one each.
//!
//! Buffers are owned by the operation until its completion arrives, so a
//! dropped future can never leave the kernel writing into freed memory.
//!
//! Read and write deadlines are kept here, not in the kernel: a linked
//! timeout per receive would cost an hrtimer armed and disarmed, a second
//! completion and a heap-allocated timespec on every request. Instead each
//! waiting receive or send records its deadline, and `watch_deadlines` looks
//! every quarter second for those past due and cancels them
//! (`IORING_OP_ASYNC_CANCEL`); they then fail with `TimedOut`.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use io_uring::{opcode, squeue, types, IoUring};

use super::bell::Bell;
use super::spin_gate::SpinGate;
use crate::clock::coarse_now;

/// Completion of a cancellation; carries no operation.
const CANCEL_USER_DATA: u64 = u64::MAX;
/// A wake-up another core posted to this ring (`IORING_OP_MSG_RING`).
const WAKE_USER_DATA: u64 = u64::MAX - 1;
/// A wake-up this core sent that failed (its success posts nothing here):
/// the low 32 bits are the woken core's fallback eventfd, rung instead.
const WAKE_SENT_TAG: u64 = 0xfffe_0000_0000_0000;
/// The poll of this core's fallback eventfd fired: a wake-up another core
/// could not post with `IORING_OP_MSG_RING` (`wake_failed`).
const FALLBACK_USER_DATA: u64 = u64::MAX - 2;
/// The longest a core sleeps in this ring before it parks through glommio.
/// The core's timers run on this ring, and the deadline check alone wakes
/// it every `DEADLINE_CHECK`, so this bounds only how late a glommio timer
/// (none of the core's own) could fire.
const RING_SLEEP: Duration = Duration::from_secs(1);
/// The result an operation cancelled at its deadline finishes with.
const EXPIRED: i32 = -libc::ETIMEDOUT;
/// How often waiting receives are checked against their deadlines.
const DEADLINE_CHECK: Duration = Duration::from_millis(250);
const RING_ENTRIES: u32 = 1024;
/// io_uring_enter(2)'s flag to also run completions (not re-exported by io-uring).
const IORING_ENTER_GETEVENTS: u32 = 1;

enum Slot {
    Free,
    Waiting {
        waker: Option<Waker>,
        buf: Option<Vec<u8>>,
        /// When to cancel it (`coarse_now` time), if not finished by then.
        deadline: Option<Duration>,
        /// Cancelled at its deadline: a failure then means `TimedOut`.
        expired: bool,
        /// A timer's expiry time, read by the kernel when it submits the
        /// operation (boxed: the slot table may move).
        timespec: Option<Box<types::Timespec>>,
    },
    Done {
        result: i32,
        buf: Option<Vec<u8>>,
    },
    /// Its future was dropped and the operation cancelled; the buffer
    /// waits here for the completion.
    Orphaned {
        _buf: Option<Vec<u8>>,
        _timespec: Option<Box<types::Timespec>>,
    },
}

pub struct Ring {
    ring: RefCell<IoUring>,
    slots: RefCell<Vec<Slot>>,
    free: RefCell<Vec<u32>>,
    /// The bell's eventfd, registered with the ring (and read through
    /// glommio while the driver is parked there).
    eventfd: RawFd,
    /// The driver is parked through glommio (not in a turn, not asleep in
    /// the ring).
    parked: Cell<bool>,
    /// Operations were queued while parked: the submitter is due.
    submit_due: Cell<bool>,
    submitter: RefCell<Option<Waker>>,
    /// Operations waiting with a deadline (so the check can skip the scan).
    with_deadline: Cell<usize>,
    /// The bell's fallback eventfd, polled here once armed (-1 before).
    fallback: Cell<RawFd>,
    /// Polls before sleeping, and those that found work (`stats`).
    polls: Cell<u64>,
    poll_hits: Cell<u64>,
    /// Sleeps in this ring, and parks through glommio (`stats`).
    sleeps: Cell<u64>,
    parks: Cell<u64>,
}

impl Ring {
    /// A ring that signals `eventfd` (a bell's, which outlives the ring)
    /// when a completion arrives while the driver is parked through glommio.
    /// Fails where the kernel lacks what the ring is built on:
    /// `DEFER_TASKRUN` (6.1) and `IORING_OP_MSG_RING`.
    pub fn new(eventfd: RawFd) -> io::Result<Rc<Ring>> {
        let ring = IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            // The kernel flags pending completions in shared memory, so a
            // turn with nothing to do, and a spin, need no system call.
            .setup_taskrun_flag()
            .build(RING_ENTRIES)?;
        let mut probe = io_uring::Probe::new();
        ring.submitter().register_probe(&mut probe)?;
        if !probe.is_supported(opcode::MsgRingData::CODE) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "the kernel lacks IORING_OP_MSG_RING",
            ));
        }
        ring.submitter().register_eventfd(eventfd)?;
        Ok(Rc::new(Ring {
            ring: RefCell::new(ring),
            slots: RefCell::new(Vec::new()),
            free: RefCell::new(Vec::new()),
            eventfd,
            parked: Cell::new(false),
            submit_due: Cell::new(false),
            submitter: RefCell::new(None),
            with_deadline: Cell::new(0),
            fallback: Cell::new(-1),
            polls: Cell::new(0),
            poll_hits: Cell::new(0),
            sleeps: Cell::new(0),
            parks: Cell::new(0),
        }))
    }

    fn allocate(
        &self,
        buf: Option<Vec<u8>>,
        deadline: Option<Duration>,
        timespec: Option<Box<types::Timespec>>,
    ) -> u32 {
        if deadline.is_some() {
            self.with_deadline.set(self.with_deadline.get() + 1);
        }
        let slot = Slot::Waiting {
            waker: None,
            buf,
            deadline,
            expired: false,
            timespec,
        };
        if let Some(id) = self.free.borrow_mut().pop() {
            self.slots.borrow_mut()[id as usize] = slot;
            return id;
        }
        let mut slots = self.slots.borrow_mut();
        slots.push(slot);
        (slots.len() - 1) as u32
    }

    /// Queues entries (already tagged); if the driver sleeps, has the
    /// submitter send them.
    fn push(&self, entries: &[squeue::Entry]) {
        stir();
        let mut ring = self.ring.borrow_mut();
        // SAFETY: every buffer and timespec an entry points to is owned by
        // the slot table or the ring, and outlives the operation (a
        // wake-up's and a cancellation's point to nothing).
        unsafe {
            if ring.submission().push_multiple(entries).is_err() {
                ring.submit().expect("io_uring submit");
                ring.submission()
                    .push_multiple(entries)
                    .expect("submission queue has room after a submit");
            }
        }
        if self.parked.get() && !self.submit_due.replace(true) {
            // The driver is asleep: nobody else would submit this.
            if let Some(w) = self.submitter.borrow_mut().take() {
                w.wake();
            }
        }
    }

    /// Submits what was queued while the driver was parked, once per round
    /// of the executor. Runs for the life of the core.
    pub async fn submit_parked(self: Rc<Self>) {
        loop {
            std::future::poll_fn(|cx| {
                if self.submit_due.replace(false) {
                    Poll::Ready(())
                } else {
                    *self.submitter.borrow_mut() = Some(cx.waker().clone());
                    Poll::Pending
                }
            })
            .await;
            // An unparked driver submits in its own turn.
            if self.parked.get() {
                let _ = self.ring.borrow_mut().submit();
            }
        }
    }

    /// How often the idle core polled before sleeping, and how often that
    /// found work.
    pub fn idle_polls(&self) -> (u64, u64) {
        (self.polls.get(), self.poll_hits.get())
    }

    /// How often the idle core slept in this ring, and how often it parked
    /// through glommio.
    pub fn idle_sleeps(&self) -> (u64, u64) {
        (self.sleeps.get(), self.parks.get())
    }

    /// This ring's descriptor, where other cores post wake-ups.
    pub fn fd(&self) -> RawFd {
        self.ring.borrow().as_raw_fd()
    }

    /// Wakes the core that sleeps on `bell`: a completion posted straight
    /// into its ring (`IORING_OP_MSG_RING`), sent with this ring's next
    /// enter, along with whatever else is queued; nothing comes back here
    /// unless it fails. A core without a ring is rung through its eventfd.
    pub fn wake(&self, bell: &Bell) {
        match bell.ring() {
            Some(fd) => {
                let failed = WAKE_SENT_TAG | u64::from(bell.fallback_fd() as u32);
                self.push(&[
                    opcode::MsgRingData::new(types::Fd(fd), 0, WAKE_USER_DATA, None)
                        .build()
                        .flags(squeue::Flags::SKIP_SUCCESS)
                        .user_data(failed),
                ]);
            }
            None => bell.ring_eventfd(),
        }
    }

    /// Polls `fd`, the bell's fallback eventfd, for as long as the ring
    /// lives (a multishot poll, armed again should the kernel end it): a
    /// core whose `IORING_OP_MSG_RING` to this ring failed writes there
    /// instead (`wake_failed`), and the poll's completion ends a sleep in
    /// this ring, or a park through glommio, like any other.
    pub fn arm_fallback(&self, fd: RawFd) {
        self.fallback.set(fd);
        self.push(&[opcode::PollAdd::new(types::Fd(fd), libc::POLLIN as u32)
            .multi(true)
            .build()
            .user_data(FALLBACK_USER_DATA)]);
    }

    fn op(
        self: &Rc<Self>,
        entry: squeue::Entry,
        buf: Option<Vec<u8>>,
        timeout: Option<Duration>,
    ) -> Op {
        let id = self.allocate(buf, timeout.map(|d| coarse_now() + d), None);
        self.launch(id, entry)
    }

    fn launch(self: &Rc<Self>, id: u32, entry: squeue::Entry) -> Op {
        self.push(&[entry.user_data(u64::from(id))]);
        Op {
            ring: self.clone(),
            id,
            finished: false,
        }
    }

    /// Waits `period`: a timer on this ring (`IORING_OP_TIMEOUT`), whose
    /// expiry is a completion like any other, so it ends the driver's sleep
    /// in the ring. glommio's timers cannot: the core's own timers run on
    /// this, so that an idle core sleeps here, not through glommio.
    pub async fn pause(self: &Rc<Self>, period: Duration) {
        let timespec = Box::new(types::Timespec::from(period));
        let entry = opcode::Timeout::new(&*timespec).build();
        let id = self.allocate(None, None, Some(timespec));
        // Ends with -ETIME when the time is up: nothing else ends it but
        // dropping this future, which cancels it.
        let _ = self.launch(id, entry).await;
    }

    /// Receives into `buf[at..]`. A read that waits past `timeout` fails
    /// with `TimedOut` (checked every quarter second, so up to that late).
    pub async fn recv(
        self: &Rc<Self>,
        fd: RawFd,
        mut buf: Vec<u8>,
        at: usize,
        timeout: Option<Duration>,
    ) -> (io::Result<usize>, Vec<u8>) {
        let spare = &mut buf[at..];
        let entry =
            opcode::Recv::new(types::Fd(fd), spare.as_mut_ptr(), spare.len() as u32).build();
        let (result, buf) = self.op(entry, Some(buf), timeout).await;
        let result = match result {
            n if n >= 0 => Ok(n as usize),
            EXPIRED => Err(io::Error::new(io::ErrorKind::TimedOut, "idle timeout")),
            n => Err(io::Error::from_raw_os_error(-n)),
        };
        (result, buf.expect("recv buffer"))
    }

    /// Waits until `fd` has something to read (or has closed or failed),
    /// holding no buffer meanwhile. A wait past `timeout` fails with
    /// `TimedOut`, as `recv`'s does.
    pub async fn readable(self: &Rc<Self>, fd: RawFd, timeout: Option<Duration>) -> io::Result<()> {
        let entry = opcode::PollAdd::new(types::Fd(fd), libc::POLLIN as u32).build();
        match self.op(entry, None, timeout).await.0 {
            n if n >= 0 => Ok(()),
            EXPIRED => Err(io::Error::new(io::ErrorKind::TimedOut, "idle timeout")),
            n => Err(io::Error::from_raw_os_error(-n)),
        }
    }

    /// Sends all of `buf`. A send that makes no progress for `timeout`
    /// (the client reads nothing) fails with `TimedOut`; each send that
    /// moves bytes starts the wait again.
    pub async fn send_all(
        self: &Rc<Self>,
        fd: RawFd,
        buf: Vec<u8>,
        timeout: Option<Duration>,
    ) -> (io::Result<()>, Vec<u8>) {
        let mut sent = 0;
        let mut buf = buf;
        while sent < buf.len() {
            let rest = &buf[sent..];
            let entry = opcode::Send::new(
                types::Fd(fd),
                rest.as_ptr(),
                rest.len().min(u32::MAX as usize) as u32,
            )
            .flags(libc::MSG_NOSIGNAL)
            .build();
            let (result, back) = self.op(entry, Some(buf), timeout).await;
            buf = back.expect("send buffer");
            match result {
                n if n > 0 => sent += n as usize,
                0 => return (Err(io::ErrorKind::WriteZero.into()), buf),
                EXPIRED => return (Err(io::ErrorKind::TimedOut.into()), buf),
                n if -n == libc::EINTR || -n == libc::EAGAIN => {}
                n => return (Err(io::Error::from_raw_os_error(-n)), buf),
            }
        }
        (Ok(()), buf)
    }

    /// Accepts a connection on a listening socket.
    pub async fn accept(self: &Rc<Self>, listener: RawFd) -> io::Result<OwnedFd> {
        let entry = opcode::Accept::new(
            types::Fd(listener),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
        .flags(libc::SOCK_CLOEXEC)
        .build();
        let (result, _) = self.op(entry, None, None).await;
        if result < 0 {
            return Err(io::Error::from_raw_os_error(-result));
        }
        // SAFETY: a successful accept returns a new descriptor we now own.
        Ok(unsafe { OwnedFd::from_raw_fd(result) })
    }

    /// Submits what is queued and runs completions (one `io_uring_enter`),
    /// then wakes the operations that finished. Returns how much happened.
    fn turn(&self) -> usize {
        let mut ring = self.ring.borrow_mut();
        let queued = ring.submission().len();
        // Completions already in the queue (say, those a sleep posted) are
        // reaped without entering the kernel; it is entered to submit, and
        // for completions it still holds.
        let submitted = if queued > 0 || Self::kernel_holds_completions(&mut ring) {
            // SAFETY: GETEVENTS with min_complete 0 never blocks; no argument.
            unsafe {
                ring.submitter().enter::<libc::sigset_t>(
                    queued as u32,
                    0,
                    IORING_ENTER_GETEVENTS,
                    None,
                )
            }
            .unwrap_or(0)
        } else {
            0
        };
        let mut reaped = 0;
        let mut fallback_ended = false;
        let mut slots = self.slots.borrow_mut();
        for cqe in ring.completion() {
            let data = cqe.user_data();
            if data == CANCEL_USER_DATA {
                continue;
            }
            reaped += 1;
            if data == WAKE_USER_DATA {
                // Another core queued us something: the driver polls the mesh.
                continue;
            }
            if data == FALLBACK_USER_DATA {
                // The same, through the fallback. The poll fires at each
                // write; emptied, the count never fills. A poll the kernel
                // ended is armed again, unless it failed: armed again, a
                // failing one would fail at every turn and keep the core
                // awake.
                drain(self.fallback.get());
                if !io_uring::cqueue::more(cqe.flags()) {
                    if cqe.result() < 0 {
                        fallback_failed(cqe.result());
                    } else {
                        fallback_ended = true;
                    }
                }
                continue;
            }
            if data & WAKE_SENT_TAG == WAKE_SENT_TAG {
                // A wake-up we sent failed; write the woken core's fallback
                // eventfd instead, so it cannot sleep through its message.
                wake_failed(cqe.result(), data as u32 as RawFd);
                continue;
            }
            let slot = &mut slots[data as usize];
            match std::mem::replace(slot, Slot::Free) {
                Slot::Waiting {
                    waker,
                    buf,
                    deadline,
                    expired,
                    timespec: _,
                } => {
                    if deadline.is_some() {
                        self.with_deadline.set(self.with_deadline.get() - 1);
                    }
                    // A cancelled receive fails (-ECANCELED, or -EINTR if it
                    // was running); one that finished first keeps its data.
                    let result = match cqe.result() {
                        n if n < 0 && expired => EXPIRED,
                        n => n,
                    };
                    *slot = Slot::Done { result, buf };
                    if let Some(w) = waker {
                        w.wake();
                    }
                }
                Slot::Orphaned { .. } => self.free.borrow_mut().push(data as u32),
                Slot::Done { .. } | Slot::Free => {
                    unreachable!("completion for a finished operation")
                }
            }
        }
        drop((slots, ring));
        if fallback_ended {
            self.arm_fallback(self.fallback.get());
        }
        submitted + reaped
    }

    /// Whether the kernel holds completions for us that it posts only when
    /// we enter it (`TASKRUN`), or past a full queue (`CQ_OVERFLOW`).
    /// Reads shared memory only.
    fn kernel_holds_completions(ring: &mut IoUring) -> bool {
        let sq = ring.submission();
        sq.taskrun() || sq.cq_overflow()
    }

    /// Whether a turn would find something: entries to submit, or
    /// completions, in the queue or still in the kernel. Reads shared
    /// memory only.
    fn has_work(&self) -> bool {
        let mut ring = self.ring.borrow_mut();
        !ring.submission().is_empty()
            || Self::kernel_holds_completions(&mut ring)
            || !ring.completion().is_empty()
    }

    /// Polls, without a system call, for up to `limit`: whether a socket
    /// completion or a message from another core arrived meanwhile.
    fn spin(&self, limit: Duration, inbound: &dyn Inbound) -> bool {
        let start = Instant::now();
        self.polls.set(self.polls.get() + 1);
        loop {
            if self.has_work() || inbound.pending() {
                self.poll_hits.set(self.poll_hits.get() + 1);
                return true;
            }
            if start.elapsed() >= limit {
                return false;
            }
            for _ in 0..32 {
                std::hint::spin_loop();
            }
        }
    }

    /// The driver: runs for the life of the core. Between turns it polls
    /// `inbound` (the mesh), and it sleeps as the module header says,
    /// marking itself parked on `bell` so other cores wake it. Before it
    /// sleeps it polls for up to `--spin-us` while `gate` says the core is
    /// busy enough: a request or an answer from another core that comes
    /// within it costs no sleep and no wake-up.
    pub async fn drive(self: Rc<Self>, bell: &Bell, inbound: Rc<dyn Inbound>, mut gate: SpinGate) {
        // Before other cores learn the ring: whichever of their wake-ups
        // fails then finds the fallback polled.
        self.arm_fallback(bell.fallback_fd());
        bell.set_ring(self.fd());
        // glommio reads the eventfd on its own ring, which is how the
        // executor learns, while asleep, that a socket completion is pending.
        // SAFETY: dup takes no pointers; it returns a new descriptor or -1.
        let dup = unsafe { libc::dup(self.eventfd) };
        assert!(dup >= 0, "dup eventfd: {}", io::Error::last_os_error());
        // SAFETY: `dup` is a descriptor we own and hand to glommio, which
        // closes it.
        let wakeups = unsafe { glommio::io::BufferedFile::from_raw_fd(dup) };
        // While the driver is busy the eventfd stays muted: otherwise every
        // completion would bump it and each park would end in a spurious
        // wake-up through glommio.
        self.mute_wakeups(true);
        loop {
            if self.turn() + inbound.poll() > 0 {
                futures_lite::future::yield_now().await;
                continue;
            }
            // Nothing here: let every task that can run, run, then look
            // again. If none of them queued anything, nothing on this core
            // can run until a completion or a message arrives.
            let seen = activity();
            futures_lite::future::yield_now().await;
            if inbound.poll() > 0 || activity() != seen || inbound.keep_awake() {
                continue;
            }
            // Idle from here until work comes back (`gate.work_came`).
            let poll = gate.went_idle();
            let found = (!poll.is_zero() && self.spin(poll, &*inbound))
                || self.sleep_parked(bell, &*inbound);
            if found {
                gate.work_came();
                continue;
            }
            // Nothing all that time, not even a timer of the ring: park
            // through glommio, whose own timers (none of the core's) the
            // ring cannot see. Still rung by the bell, now by deferred
            // messages too, so a core idle that long holds none of them
            // (nor the buffers and budget they carry). Unmute, then look
            // once more, because whatever completed while muted did not
            // signal.
            self.parks.set(self.parks.get() + 1);
            bell.park(true);
            self.mute_wakeups(false);
            if self.turn() > 0 || inbound.pending() {
                bell.unpark();
                self.mute_wakeups(true);
                gate.work_came();
                futures_lite::future::yield_now().await;
                continue;
            }
            self.parked.set(true);
            let _ = wakeups.read_at(0, 8).await;
            self.parked.set(false);
            bell.unpark();
            self.mute_wakeups(true);
            gate.work_came();
        }
    }

    /// Parked on `bell`, sleeps in the ring for up to `RING_SLEEP`; whether
    /// work came (whatever completed before, the sleep reaps at once).
    /// Deferred messages (`bell`) ring it only if it wants them (a task
    /// waits on one, or its forwarding budget runs short); otherwise they
    /// wait in their queue until the core wakes for something else, its
    /// next timer at the latest, and a sender whose queue fills rings it
    /// regardless.
    fn sleep_parked(&self, bell: &Bell, inbound: &dyn Inbound) -> bool {
        bell.park(inbound.wants_deferred());
        let woke = inbound.pending() || {
            self.sleeps.set(self.sleeps.get() + 1);
            self.sleep(RING_SLEEP)
        };
        if woke {
            bell.unpark();
        }
        woke
    }

    /// Sleeps in `io_uring_enter` until a completion arrives or `limit`
    /// passes, submitting what is queued on the way in. Whether anything
    /// completed.
    fn sleep(&self, limit: Duration) -> bool {
        let mut ring = self.ring.borrow_mut();
        let ts = types::Timespec::from(limit);
        let args = types::SubmitArgs::new().timespec(&ts);
        // ETIME (the limit passed) and EINTR (a signal) both just end it.
        let _ = ring.submitter().submit_with_args(1, &args);
        let empty = ring.completion().is_empty();
        !empty
    }

    /// Cancels, every `DEADLINE_CHECK`, the operations waiting past their
    /// deadlines. Runs for the life of the core.
    pub async fn watch_deadlines(self: Rc<Self>) {
        loop {
            self.pause(DEADLINE_CHECK).await;
            if self.with_deadline.get() > 0 {
                self.expire(coarse_now());
            }
        }
    }

    fn expire(&self, now: Duration) {
        let mut due = Vec::new();
        for (id, slot) in self.slots.borrow_mut().iter_mut().enumerate() {
            if let Slot::Waiting {
                deadline: Some(d),
                expired,
                ..
            } = slot
            {
                if *d <= now && !*expired {
                    *expired = true;
                    due.push(
                        opcode::AsyncCancel::new(id as u64)
                            .build()
                            .user_data(CANCEL_USER_DATA),
                    );
                }
            }
        }
        for cancel in due {
            self.push(&[cancel]);
        }
    }

    fn mute_wakeups(&self, mute: bool) {
        let mut ring = self.ring.borrow_mut();
        let completion = ring.completion();
        if mute {
            completion.disable_eventfd();
        } else {
            completion.enable_eventfd();
        }
    }
}

/// What the driver polls between turns besides its ring: the mesh from
/// other cores.
pub trait Inbound {
    /// Wakes the tasks that have messages (or room to send) now; how many.
    fn poll(&self) -> usize;
    /// Whether a message waits (the last look before sleeping).
    fn pending(&self) -> bool;
    /// Whether a task waits on something only another core's progress
    /// brings, which does not wake this one (room in a full queue).
    fn keep_awake(&self) -> bool;
    /// Whether a task waits on a deferred message (`bell`), so one must
    /// wake this core while it sleeps.
    fn wants_deferred(&self) -> bool {
        true
    }
}

thread_local! {
    /// Bumped whenever a task of this core makes work for another (queues
    /// an operation, wakes a task): the driver sleeps only if a whole round
    /// of the executor left it unchanged.
    static ACTIVITY: Cell<u64> = const { Cell::new(0) };
}

/// Notes that work was made for another task of this core.
pub fn stir() {
    ACTIVITY.with(|a| a.set(a.get().wrapping_add(1)));
}

fn activity() -> u64 {
    ACTIVITY.with(Cell::get)
}

/// A wake-up's `IORING_OP_MSG_RING` failed: write the woken core's
/// fallback eventfd instead, and say so once. Its ring polls that one
/// (`Ring::arm_fallback`), so the write wakes the core wherever it sleeps.
fn wake_failed(result: i32, fallback: RawFd) {
    static LOGGED: std::sync::Once = std::sync::Once::new();
    LOGGED.call_once(|| {
        tracing::warn!(
            error = %io::Error::from_raw_os_error(-result),
            "IORING_OP_MSG_RING failed; waking cores through their eventfd"
        );
    });
    super::bell::signal(fallback);
}

/// The poll of this core's fallback eventfd failed: a wake-up whose
/// `IORING_OP_MSG_RING` fails would then reach this core only at its next
/// timer. Say so once.
fn fallback_failed(result: i32) {
    static LOGGED: std::sync::Once = std::sync::Once::new();
    LOGGED.call_once(|| {
        tracing::warn!(
            error = %io::Error::from_raw_os_error(-result),
            "the poll of a core's fallback eventfd failed; a failed wake-up reaches it at its next timer"
        );
    });
}

/// Empties the non-blocking eventfd `fd`.
fn drain(fd: RawFd) {
    let mut count = [0u8; 8];
    // SAFETY: reads at most 8 bytes into a live local buffer. EAGAIN (it
    // was empty) is fine.
    unsafe { libc::read(fd, count.as_mut_ptr().cast(), 8) };
}

/// One in-flight operation; resolves to (result, buffer).
pub struct Op {
    ring: Rc<Ring>,
    id: u32,
    finished: bool,
}

impl Future for Op {
    type Output = (i32, Option<Vec<u8>>);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut slots = self.ring.slots.borrow_mut();
        let slot = &mut slots[self.id as usize];
        match slot {
            Slot::Done { result, buf } => {
                let (result, buf) = (*result, buf.take());
                *slot = Slot::Free;
                drop(slots);
                self.ring.free.borrow_mut().push(self.id);
                self.finished = true;
                Poll::Ready((result, buf))
            }
            Slot::Waiting { waker, .. } => {
                *waker = Some(cx.waker().clone());
                Poll::Pending
            }
            Slot::Free | Slot::Orphaned { .. } => unreachable!("polled a finished operation"),
        }
    }
}

impl Drop for Op {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let mut slots = self.ring.slots.borrow_mut();
        let slot = &mut slots[self.id as usize];
        match std::mem::replace(slot, Slot::Free) {
            Slot::Waiting {
                buf,
                deadline,
                timespec,
                ..
            } => {
                if deadline.is_some() {
                    self.ring
                        .with_deadline
                        .set(self.ring.with_deadline.get() - 1);
                }
                *slot = Slot::Orphaned {
                    _buf: buf,
                    _timespec: timespec,
                };
                drop(slots);
                // Nobody waits for it now: have the kernel finish it soon,
                // so the buffer and the slot come back.
                self.ring
                    .push(&[opcode::AsyncCancel::new(u64::from(self.id))
                        .build()
                        .user_data(CANCEL_USER_DATA)]);
            }
            Slot::Done { .. } => {
                drop(slots);
                self.ring.free.borrow_mut().push(self.id);
            }
            other => *slot = other,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    use futures_lite::future::{block_on, poll_once};

    use super::*;

    /// No other cores: nothing ever comes in from them.
    struct Alone;

    impl Inbound for Alone {
        fn poll(&self) -> usize {
            0
        }
        fn pending(&self) -> bool {
            false
        }
        fn keep_awake(&self) -> bool {
            false
        }
    }

    /// A ring, and the bell whose eventfd it signals (which must outlive
    /// it).
    fn ring() -> (Bell, Rc<Ring>) {
        let bell = Bell::new().unwrap();
        let ring = Ring::new(bell.eventfd()).expect("this kernel has DEFER_TASKRUN and MSG_RING");
        (bell, ring)
    }

    /// What the idle path relies on: with `DEFER_TASKRUN`, a completion
    /// waits in the kernel until we enter it, and the `TASKRUN` flag in
    /// shared memory says one waits, so an idle turn and the spin need no
    /// system call, yet never miss one.
    #[test]
    fn a_waiting_completion_shows_without_entering_the_kernel() {
        let (_bell, ring) = ring();
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let mut recv = Box::pin(ring.recv(ours.as_raw_fd(), vec![0; 16], 0, None));
        assert!(
            block_on(poll_once(&mut recv)).is_none(),
            "nothing to read yet"
        );
        assert!(ring.has_work(), "the receive waits to be submitted");
        assert!(ring.turn() > 0);
        assert!(!ring.has_work(), "submitted, and nothing came");
        assert_eq!(ring.turn(), 0, "an idle turn finds nothing");
        assert!(
            !ring.spin(Duration::from_millis(2), &Alone),
            "nothing came while spinning"
        );

        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            theirs.write_all(b"hello").unwrap();
            theirs
        });
        assert!(
            ring.spin(Duration::from_secs(10), &Alone),
            "the spin sees the data arrive"
        );
        assert_eq!(ring.idle_polls(), (2, 1), "two polls, one found work");
        assert!(ring.turn() > 0, "the turn reaps it");
        let (read, buf) = block_on(recv);
        assert_eq!(&buf[..read.unwrap()], b"hello");
        drop(writer.join().unwrap());
    }

    /// A timer of the ring is a completion like any other: it ends a sleep
    /// in the ring when it falls due, not before, so the core's timers need
    /// no park through glommio.
    #[test]
    fn a_timer_on_the_ring_ends_a_sleep_in_it() {
        let (_bell, ring) = ring();
        let start = Instant::now();
        let mut pause = Box::pin(ring.pause(Duration::from_millis(30)));
        assert!(block_on(poll_once(&mut pause)).is_none(), "not due yet");
        assert!(
            ring.sleep(Duration::from_secs(10)),
            "the timer ended the sleep"
        );
        let slept = start.elapsed();
        assert!(
            (Duration::from_millis(29)..Duration::from_secs(5)).contains(&slept),
            "slept {slept:?} for a 30 ms timer"
        );
        assert!(ring.turn() > 0, "the turn reaps the timer");
        assert!(
            block_on(poll_once(&mut pause)).is_some(),
            "the wait is over"
        );
        assert_eq!(ring.free.borrow().len(), 1, "its slot is free again");
    }

    /// A wake-up that `IORING_OP_MSG_RING` cannot post (here: the ring it
    /// names is no ring) still ends the sleeper's sleep in its ring, at
    /// once, through the fallback eventfd its ring polls; twice, so the
    /// poll is still armed after the first.
    #[test]
    fn a_wake_up_msg_ring_refuses_still_ends_a_sleep_in_the_ring() {
        let bell = std::sync::Arc::new(Bell::new().unwrap());
        let (asleep, sleeping) = std::sync::mpsc::channel();
        let sleeper = {
            let bell = bell.clone();
            std::thread::spawn(move || {
                let ring = Ring::new(bell.eventfd()).unwrap();
                ring.arm_fallback(bell.fallback_fd());
                bell.set_ring(ring.fd());
                ring.turn();
                let mut slept = Vec::new();
                for _ in 0..2 {
                    asleep.send(()).unwrap();
                    let start = Instant::now();
                    let woke = ring.sleep(Duration::from_secs(20));
                    let reaped = ring.turn();
                    slept.push((woke, reaped, start.elapsed()));
                }
                slept
            })
        };
        let (_own, waker) = ring();
        for _ in 0..2 {
            sleeping.recv().unwrap();
            std::thread::sleep(Duration::from_millis(50));
            // Not a ring: the kernel fails the MSG_RING (EBADFD).
            let ring_fd = bell.ring().unwrap();
            bell.set_ring(bell.eventfd());
            waker.wake(&bell);
            assert!(waker.turn() > 0, "the failure comes back to the waker");
            bell.set_ring(ring_fd);
        }
        for (woke, reaped, slept) in sleeper.join().unwrap() {
            assert!(woke && reaped > 0, "the fallback's completion woke it");
            assert!(slept < Duration::from_secs(10), "slept {slept:?}");
        }
    }

    /// A timer dropped before it falls due is cancelled: its slot, and the
    /// expiry time the kernel reads, are let go when its completion comes,
    /// not a minute later.
    #[test]
    fn a_dropped_timer_is_cancelled() {
        let (_bell, ring) = ring();
        let mut pause = Box::pin(ring.pause(Duration::from_secs(60)));
        assert!(block_on(poll_once(&mut pause)).is_none());
        assert!(ring.turn() > 0, "the timer is submitted");
        drop(pause);
        assert!(matches!(ring.slots.borrow()[0], Slot::Orphaned { .. }));
        let start = Instant::now();
        while ring.free.borrow().is_empty() {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "the dropped timer was not cancelled"
            );
            ring.sleep(Duration::from_millis(100));
            ring.turn();
        }
        assert!(matches!(ring.slots.borrow()[0], Slot::Free));
    }
}
