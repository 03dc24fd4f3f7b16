//! The parked flag: a core that sleeps is woken once, and only when it sleeps.
//!
//! Owns the protocol between a core about to sleep and the cores that hand
//! it work, and where a wake-up goes (the core's io_uring, or its eventfd).
//! It never blocks and never touches a queue: the caller checks its queues
//! between [`Bell::park`] and sleeping, and pushes before [`Bell::should_wake`].
//!
//! The protocol (Dekker's): the sleeper stores `parked = true`, fences, then
//! looks at its queues once more; a sender pushes, fences, then loads
//! `parked`. With a sequentially consistent fence on each side, at least one
//! of them sees the other's store: either the sleeper finds the message and
//! does not sleep, or the sender finds the flag and wakes it. The sender that
//! turns the flag from true to false is the one that wakes, so many senders
//! cost one wake-up; a sender finding it false costs nothing but the fence.
//!
//! A deferred message (one whose replies were already written for the
//! core, `envelope::write_pens`) wakes the sleeper only if it parked
//! wanting such messages: it says so in the same store, so the same
//! argument holds for it. Otherwise it waits in its queue for the next
//! time the core is awake.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{fence, AtomicI32, AtomicU8, Ordering};

/// The sleeper is awake.
const AWAKE: u8 = 0;
/// Asleep: any message wakes it.
const PARKED: u8 = 1;
/// Asleep: a deferred message does not wake it.
const PARKED_DEFERRING: u8 = 2;

/// One core's bell, shared by every core.
pub struct Bell {
    parked: AtomicU8,
    /// The core's socket ring, for `IORING_OP_MSG_RING`; -1 until it has
    /// one (and always, on glommio's sockets).
    ring_fd: AtomicI32,
    /// The fallback: a write here wakes the core wherever it sleeps through
    /// glommio (its ring's registered eventfd, or one glommio reads).
    /// Blocking: glommio reads it through io_uring, which would fail a read
    /// of a non-blocking one at once instead of waiting.
    eventfd: OwnedFd,
    /// The fallback for a core asleep in its socket ring: the ring polls
    /// this one (`uring::Ring::arm_fallback`), so a write here, from a core
    /// whose `IORING_OP_MSG_RING` failed, ends that sleep too. Not the
    /// eventfd above: the ring signals that one on every completion, and
    /// polling it would wake the ring with its own completions. Only its
    /// core reads it, without waiting.
    fallback: OwnedFd,
}

impl Bell {
    pub fn new() -> io::Result<Bell> {
        Ok(Bell {
            parked: AtomicU8::new(AWAKE),
            ring_fd: AtomicI32::new(-1),
            eventfd: new_eventfd(libc::EFD_CLOEXEC)?,
            fallback: new_eventfd(libc::EFD_CLOEXEC | libc::EFD_NONBLOCK)?,
        })
    }

    /// The eventfd a sleeping core reads (or has its ring signal).
    pub fn eventfd(&self) -> RawFd {
        self.eventfd.as_raw_fd()
    }

    /// The eventfd the core's socket ring polls, for wake-ups that could
    /// not go through `IORING_OP_MSG_RING`.
    pub fn fallback_fd(&self) -> RawFd {
        self.fallback.as_raw_fd()
    }

    /// Says where `IORING_OP_MSG_RING` wakes this core from now on. Call
    /// before the core first parks.
    pub fn set_ring(&self, fd: RawFd) {
        self.ring_fd.store(fd, Ordering::Release);
    }

    /// The ring to post a wake-up to, if the core has one.
    pub fn ring(&self) -> Option<RawFd> {
        Some(self.ring_fd.load(Ordering::Acquire)).filter(|&fd| fd >= 0)
    }

    /// The sleeper, before its last look at its queues: from here on,
    /// senders wake it; senders of deferred messages only if it
    /// `wants_deferred`.
    pub fn park(&self, wants_deferred: bool) {
        let state = if wants_deferred {
            PARKED
        } else {
            PARKED_DEFERRING
        };
        self.parked.store(state, Ordering::Relaxed);
        fence(Ordering::SeqCst);
    }

    /// The sleeper is awake (or found work and will not sleep).
    pub fn unpark(&self) {
        self.parked.store(AWAKE, Ordering::Relaxed);
    }

    pub fn is_parked(&self) -> bool {
        self.parked.load(Ordering::Relaxed) != AWAKE
    }

    /// A sender, after pushing: whether it must wake the owner. True for
    /// exactly one sender per park.
    pub fn should_wake(&self) -> bool {
        fence(Ordering::SeqCst);
        self.parked.load(Ordering::Relaxed) != AWAKE
            && self.parked.swap(AWAKE, Ordering::AcqRel) != AWAKE
    }

    /// A sender of a deferred message, after pushing: whether it must wake
    /// the owner, which it must only if the owner parked wanting it. Never
    /// true for a park another sender already ended.
    pub fn should_wake_deferred(&self) -> bool {
        fence(Ordering::SeqCst);
        self.parked.load(Ordering::Relaxed) == PARKED
            && self
                .parked
                .compare_exchange(PARKED, AWAKE, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
    }

    /// Wakes the owner through its eventfd (one system call).
    pub fn ring_eventfd(&self) {
        signal(self.eventfd.as_raw_fd());
    }
}

fn new_eventfd(flags: i32) -> io::Result<OwnedFd> {
    // SAFETY: eventfd takes no pointers; it returns a new descriptor or -1.
    let fd = unsafe { libc::eventfd(0, flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Adds one to the eventfd `fd` (one system call).
pub fn signal(fd: RawFd) {
    let one = 1u64.to_ne_bytes();
    // SAFETY: writes 8 bytes from a live local buffer. EAGAIN (the counter
    // is full) means a wake-up is pending anyway; EBADF cannot happen for a
    // bell's descriptors, which live as long as the process.
    unsafe { libc::write(fd, one.as_ptr().cast(), 8) };
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;
    use std::sync::Arc;
    use std::time::Duration;

    use crossbeam_queue::ArrayQueue;

    use super::*;

    /// Blocks on the bell's eventfd for at most `ms`; whether it was woken.
    fn sleep_on(bell: &Bell, ms: i32) -> bool {
        let mut pfd = libc::pollfd {
            fd: bell.eventfd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one live pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n > 0 {
            let mut buf = [0u8; 8];
            // SAFETY: 8 bytes into a live local buffer; poll said readable.
            unsafe { libc::read(bell.eventfd(), buf.as_mut_ptr().cast(), 8) };
        }
        n > 0
    }

    /// Many senders, one sleeper that parks whenever it finds its queues
    /// empty: every message is received, and the sleeper is never left
    /// asleep with a message waiting (a lost wake-up shows as a sleep that
    /// runs out its whole timeout while a queue holds something).
    #[test]
    fn no_wake_up_is_lost() {
        senders_never_leave_the_sleeper_asleep(Bell::should_wake);
    }

    /// The same with deferred messages, to a sleeper that parks wanting
    /// them.
    #[test]
    fn no_deferred_wake_up_is_lost_when_it_is_wanted() {
        senders_never_leave_the_sleeper_asleep(Bell::should_wake_deferred);
    }

    fn senders_never_leave_the_sleeper_asleep(should_wake: fn(&Bell) -> bool) {
        const SENDERS: usize = 3;
        const MESSAGES: u64 = 20_000;
        for round in 0..5 {
            let bell = Arc::new(Bell::new().unwrap());
            let queues: Arc<Vec<ArrayQueue<u64>>> =
                Arc::new((0..SENDERS).map(|_| ArrayQueue::new(8)).collect());
            let wakes = Arc::new(AtomicU64::new(0));
            let senders: Vec<_> = (0..SENDERS)
                .map(|s| {
                    let (bell, queues, wakes) = (bell.clone(), queues.clone(), wakes.clone());
                    std::thread::spawn(move || {
                        for i in 0..MESSAGES {
                            let mut m = i;
                            while let Err(back) = queues[s].push(m) {
                                m = back;
                                std::hint::spin_loop();
                                if should_wake(&bell) {
                                    bell.ring_eventfd();
                                }
                            }
                            if should_wake(&bell) {
                                wakes.fetch_add(1, Ordering::Relaxed);
                                bell.ring_eventfd();
                            }
                            if (i + round) % 997 == 0 {
                                std::thread::sleep(Duration::from_micros(50));
                            }
                        }
                    })
                })
                .collect();
            let mut next = [0u64; SENDERS];
            let mut sleeps = 0;
            let mut parks = 0;
            while next.iter().any(|&n| n < MESSAGES) {
                let mut got = 0;
                for (s, q) in queues.iter().enumerate() {
                    while let Some(m) = q.pop() {
                        assert_eq!(m, next[s], "in order, none lost");
                        next[s] += 1;
                        got += 1;
                    }
                }
                if got > 0 {
                    continue;
                }
                bell.park(true);
                parks += 1;
                if queues.iter().any(|q| !q.is_empty()) {
                    bell.unpark();
                    continue;
                }
                sleeps += 1;
                let woken = sleep_on(&bell, 2_000);
                bell.unpark();
                assert!(
                    woken || queues.iter().all(|q| q.is_empty()),
                    "slept through a message: a lost wake-up"
                );
            }
            for s in senders {
                s.join().unwrap();
            }
            assert!(sleeps > 0, "the test never parked the sleeper");
            // One wake-up per park at most, however many senders saw it.
            assert!(wakes.load(Ordering::Relaxed) <= parks);
        }
    }

    #[test]
    fn only_one_sender_wakes_a_parked_core() {
        let bell = Bell::new().unwrap();
        assert!(!bell.should_wake(), "awake: nobody wakes it");
        bell.park(false);
        assert!(bell.should_wake());
        assert!(!bell.should_wake(), "the first sender already did");
        assert!(!bell.is_parked());
    }

    #[test]
    fn a_deferred_message_wakes_only_a_core_that_wants_it() {
        let bell = Bell::new().unwrap();
        bell.park(false);
        assert!(!bell.should_wake_deferred(), "not wanted: it waits");
        assert!(bell.is_parked(), "and the core sleeps on");
        assert!(bell.should_wake(), "any other message still wakes it");
        assert!(!bell.should_wake_deferred(), "awake now");
        bell.park(true);
        assert!(bell.should_wake_deferred());
        assert!(!bell.should_wake(), "one wake-up per park");
        assert!(!bell.should_wake_deferred());
    }

    #[test]
    fn the_ring_is_unknown_until_set() {
        let bell = Bell::new().unwrap();
        assert_eq!(bell.ring(), None);
        bell.set_ring(7);
        assert_eq!(bell.ring(), Some(7));
    }
}
