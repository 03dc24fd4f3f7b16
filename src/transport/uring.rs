//! A per-core io_uring of our own, for client sockets.
//!
//! Owns the ring, the in-flight operations and the driver task that submits
//! and reaps them. It knows nothing of the protocol.
//!
//! Why: glommio's rings are set up without `COOP_TASKRUN`/`DEFER_TASKRUN`, so
//! every socket completion is delivered by an interrupt-driven task-work run,
//! and glommio re-arms a one-shot poll after each partial read. On the
//! virtual machines we measured, that doubles the CPU cost of an unpipelined
//! request (see the README's performance section). This ring is created with
//! `SINGLE_ISSUER | DEFER_TASKRUN`: completions are run when *we* enter the
//! kernel, once per driver turn, for every socket of the core at once.
//!
//! Integration with glommio: the driver task runs on the executor like any
//! other task. While work is flowing it loops (submit + reap in one
//! `io_uring_enter`, then yield so woken connections run and queue more).
//! When a turn finds nothing, it parks on an eventfd registered with the
//! ring, read through glommio, so the executor sleeps as usual and wakes when
//! a socket completion is pending. Operations queued while the driver is
//! parked (say, sends of replies that came back from other cores) are
//! submitted by a second task, woken by the first of them, after the other
//! tasks runnable then have queued theirs: one `io_uring_enter` for all of
//! them, not one each. With forwarding, that was 17% of a 2-core server's
//! CPU at pipeline 16.
//!
//! Buffers are owned by the operation until its completion arrives, so a
//! dropped future can never leave the kernel writing into freed memory.
//!
//! Read and write deadlines are kept here, not in the kernel: a linked
//! timeout per receive cost an hrtimer armed and disarmed, a second
//! completion and a heap-allocated timespec on every request (about 4% of
//! the server's CPU at pipeline 1). Instead each waiting receive or send
//! records its deadline, and `watch_deadlines` looks every quarter second
//! for those past due and cancels them (`IORING_OP_ASYNC_CANCEL`); they
//! then fail with `TimedOut`.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use io_uring::{opcode, squeue, types, IoUring};

use crate::clock::coarse_now;

/// Completion of a cancellation; carries no operation.
const CANCEL_USER_DATA: u64 = u64::MAX;
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
    },
    Done {
        result: i32,
        buf: Option<Vec<u8>>,
    },
    /// Its future was dropped and the operation cancelled; the buffer
    /// waits here for the completion.
    Orphaned {
        _buf: Option<Vec<u8>>,
    },
}

pub struct Ring {
    ring: RefCell<IoUring>,
    slots: RefCell<Vec<Slot>>,
    free: RefCell<Vec<u32>>,
    eventfd: OwnedFd,
    parked: Cell<bool>,
    /// Operations were queued while parked: the submitter is due.
    submit_due: Cell<bool>,
    submitter: RefCell<Option<Waker>>,
    /// Operations waiting with a deadline (so the check can skip the scan).
    with_deadline: Cell<usize>,
}

impl Ring {
    pub fn new() -> io::Result<Rc<Ring>> {
        let ring = IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .build(RING_ENTRIES)?;
        // SAFETY: eventfd returns a new descriptor or -1.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor we own.
        let eventfd = unsafe { OwnedFd::from_raw_fd(fd) };
        ring.submitter().register_eventfd(eventfd.as_raw_fd())?;
        Ok(Rc::new(Ring {
            ring: RefCell::new(ring),
            slots: RefCell::new(Vec::new()),
            free: RefCell::new(Vec::new()),
            eventfd,
            parked: Cell::new(false),
            submit_due: Cell::new(false),
            submitter: RefCell::new(None),
            with_deadline: Cell::new(0),
        }))
    }

    fn allocate(&self, buf: Option<Vec<u8>>, deadline: Option<Duration>) -> u32 {
        if deadline.is_some() {
            self.with_deadline.set(self.with_deadline.get() + 1);
        }
        let slot = Slot::Waiting {
            waker: None,
            buf,
            deadline,
            expired: false,
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
        let mut ring = self.ring.borrow_mut();
        // SAFETY: every buffer and timespec an entry points to is owned by
        // the slot table or the ring, and outlives the operation.
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

    fn op(
        self: &Rc<Self>,
        entry: squeue::Entry,
        buf: Option<Vec<u8>>,
        timeout: Option<Duration>,
    ) -> Op {
        let id = self.allocate(buf, timeout.map(|d| coarse_now() + d));
        self.push(&[entry.user_data(u64::from(id))]);
        Op {
            ring: self.clone(),
            id,
            finished: false,
        }
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
        // SAFETY: GETEVENTS with min_complete 0 never blocks; no argument.
        let submitted = unsafe {
            ring.submitter()
                .enter::<libc::sigset_t>(queued as u32, 0, IORING_ENTER_GETEVENTS, None)
        }
        .unwrap_or(0);
        let mut reaped = 0;
        let mut slots = self.slots.borrow_mut();
        for cqe in ring.completion() {
            let data = cqe.user_data();
            if data == CANCEL_USER_DATA {
                continue;
            }
            reaped += 1;
            let slot = &mut slots[data as usize];
            match std::mem::replace(slot, Slot::Free) {
                Slot::Waiting {
                    waker,
                    buf,
                    deadline,
                    expired,
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
        submitted + reaped
    }

    /// The driver: runs for the life of the core.
    pub async fn drive(self: Rc<Self>) {
        // glommio reads the eventfd on its own ring, which is how the
        // executor learns, while asleep, that a socket completion is pending.
        // SAFETY: a duplicate we own, handed to glommio.
        let dup = unsafe { libc::dup(self.eventfd.as_raw_fd()) };
        assert!(dup >= 0, "dup eventfd: {}", io::Error::last_os_error());
        // SAFETY: `dup` is open and ours alone; the file takes it over.
        let wakeups = unsafe { glommio::io::BufferedFile::from_raw_fd(dup) };
        // While the driver is busy the eventfd stays muted: otherwise every
        // completion would bump it and each park would end in a spurious
        // wake-up through glommio.
        self.mute_wakeups(true);
        loop {
            if self.turn() > 0 {
                futures_lite::future::yield_now().await;
                continue;
            }
            // About to park: unmute, then look once more, because whatever
            // completed while muted did not signal.
            self.mute_wakeups(false);
            if self.turn() > 0 {
                self.mute_wakeups(true);
                futures_lite::future::yield_now().await;
                continue;
            }
            self.parked.set(true);
            let _ = wakeups.read_at(0, 8).await;
            self.parked.set(false);
            self.mute_wakeups(true);
        }
    }

    /// Cancels, every `DEADLINE_CHECK`, the operations waiting past their
    /// deadlines. Runs for the life of the core.
    pub async fn watch_deadlines(self: Rc<Self>) {
        loop {
            glommio::timer::sleep(DEADLINE_CHECK).await;
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
            Slot::Done { .. } => {
                let Slot::Done { result, buf } = std::mem::replace(slot, Slot::Free) else {
                    unreachable!()
                };
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
            Slot::Waiting { buf, deadline, .. } => {
                if deadline.is_some() {
                    self.ring
                        .with_deadline
                        .set(self.ring.with_deadline.get() - 1);
                }
                *slot = Slot::Orphaned { _buf: buf };
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
