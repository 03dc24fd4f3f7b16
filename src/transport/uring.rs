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
//! a socket completion is pending. An operation queued while the driver is
//! parked is submitted at once.
//!
//! Buffers are owned by the operation until its completion arrives, so a
//! dropped future can never leave the kernel writing into freed memory.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use io_uring::{opcode, squeue, types, IoUring};

/// Completion of the linked idle timeout; carries no operation.
const TIMEOUT_USER_DATA: u64 = u64::MAX;
const RING_ENTRIES: u32 = 1024;
/// io_uring_enter(2)'s flag to also run completions (not re-exported by io-uring).
const IORING_ENTER_GETEVENTS: u32 = 1;

enum Slot {
    Free,
    Waiting {
        waker: Option<Waker>,
        buf: Option<Vec<u8>>,
    },
    Done {
        result: i32,
        buf: Option<Vec<u8>>,
    },
    /// Its future was dropped; the buffer waits here for the completion.
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
    /// Read at submission by the kernel, so it lives as long as the ring.
    idle_timeout: Option<Box<types::Timespec>>,
}

impl Ring {
    pub fn new(idle_timeout: Option<Duration>) -> io::Result<Rc<Ring>> {
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
        let idle_timeout = idle_timeout.map(|d| {
            Box::new(
                types::Timespec::new()
                    .sec(d.as_secs())
                    .nsec(d.subsec_nanos()),
            )
        });
        Ok(Rc::new(Ring {
            ring: RefCell::new(ring),
            slots: RefCell::new(Vec::new()),
            free: RefCell::new(Vec::new()),
            eventfd,
            parked: Cell::new(false),
            idle_timeout,
        }))
    }

    fn allocate(&self, buf: Option<Vec<u8>>) -> u32 {
        let slot = Slot::Waiting { waker: None, buf };
        if let Some(id) = self.free.borrow_mut().pop() {
            self.slots.borrow_mut()[id as usize] = slot;
            return id;
        }
        let mut slots = self.slots.borrow_mut();
        slots.push(slot);
        (slots.len() - 1) as u32
    }

    /// Queues entries (already tagged); submits at once if the driver sleeps.
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
        if self.parked.get() {
            // The driver is asleep: nobody else will submit this.
            let _ = ring.submit();
        }
    }

    fn op(self: &Rc<Self>, entry: squeue::Entry, buf: Option<Vec<u8>>, timeout: bool) -> Op {
        let id = self.allocate(buf);
        let entry = entry.user_data(u64::from(id));
        match (&self.idle_timeout, timeout) {
            (Some(ts), true) => {
                let link = opcode::LinkTimeout::new(&**ts as *const types::Timespec)
                    .build()
                    .user_data(TIMEOUT_USER_DATA);
                self.push(&[entry.flags(squeue::Flags::IO_LINK), link]);
            }
            _ => self.push(&[entry]),
        }
        Op {
            ring: self.clone(),
            id,
            finished: false,
        }
    }

    /// Receives into `buf[at..]`. A read that waits past the idle timeout
    /// fails with `TimedOut`.
    pub async fn recv(
        self: &Rc<Self>,
        fd: RawFd,
        mut buf: Vec<u8>,
        at: usize,
    ) -> (io::Result<usize>, Vec<u8>) {
        let spare = &mut buf[at..];
        let entry =
            opcode::Recv::new(types::Fd(fd), spare.as_mut_ptr(), spare.len() as u32).build();
        let (result, buf) = self.op(entry, Some(buf), true).await;
        let result = match result {
            n if n >= 0 => Ok(n as usize),
            n if -n == libc::ECANCELED => {
                Err(io::Error::new(io::ErrorKind::TimedOut, "idle timeout"))
            }
            n => Err(io::Error::from_raw_os_error(-n)),
        };
        (result, buf.expect("recv buffer"))
    }

    /// Sends all of `buf`.
    pub async fn send_all(self: &Rc<Self>, fd: RawFd, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
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
            let (result, back) = self.op(entry, Some(buf), false).await;
            buf = back.expect("send buffer");
            match result {
                n if n > 0 => sent += n as usize,
                0 => return (Err(io::ErrorKind::WriteZero.into()), buf),
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
        let (result, _) = self.op(entry, None, false).await;
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
            if data == TIMEOUT_USER_DATA {
                continue;
            }
            reaped += 1;
            let slot = &mut slots[data as usize];
            match std::mem::replace(slot, Slot::Free) {
                Slot::Waiting { waker, buf } => {
                    *slot = Slot::Done {
                        result: cqe.result(),
                        buf,
                    };
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
            Slot::Waiting { buf, .. } => *slot = Slot::Orphaned { _buf: buf },
            Slot::Done { .. } => {
                drop(slots);
                self.ring.free.borrow_mut().push(self.id);
            }
            other => *slot = other,
        }
    }
}
