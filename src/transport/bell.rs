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

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{fence, AtomicBool, AtomicI32, Ordering};

/// One core's bell, shared by every core.
pub struct Bell {
    parked: AtomicBool,
    /// The core's socket ring, for `IORING_OP_MSG_RING`; -1 until it has
    /// one (and always, on glommio's sockets).
    ring_fd: AtomicI32,
    /// The fallback: a write here wakes the core wherever it sleeps through
    /// glommio (its ring's registered eventfd, or one glommio reads).
    /// Blocking: glommio reads it through io_uring, which would fail a read
    /// of a non-blocking one at once instead of waiting.
    eventfd: OwnedFd,
}

impl Bell {
    pub fn new() -> io::Result<Bell> {
        // SAFETY: eventfd takes no pointers; it returns a new descriptor or -1.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Bell {
            parked: AtomicBool::new(false),
            ring_fd: AtomicI32::new(-1),
            // SAFETY: fd is a fresh descriptor nothing else owns.
            eventfd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// The eventfd a sleeping core reads (or has its ring signal).
    pub fn eventfd(&self) -> RawFd {
        self.eventfd.as_raw_fd()
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
    /// senders wake it.
    pub fn park(&self) {
        self.parked.store(true, Ordering::Relaxed);
        fence(Ordering::SeqCst);
    }

    /// The sleeper is awake (or found work and will not sleep).
    pub fn unpark(&self) {
        self.parked.store(false, Ordering::Relaxed);
    }

    pub fn is_parked(&self) -> bool {
        self.parked.load(Ordering::Relaxed)
    }

    /// A sender, after pushing: whether it must wake the owner. True for
    /// exactly one sender per park.
    pub fn should_wake(&self) -> bool {
        fence(Ordering::SeqCst);
        self.parked.load(Ordering::Relaxed) && self.parked.swap(false, Ordering::AcqRel)
    }

    /// Wakes the owner through its eventfd (one system call).
    pub fn ring_eventfd(&self) {
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a live local buffer to our descriptor.
        // EAGAIN (the counter is full) means a wake-up is pending anyway.
        unsafe { libc::write(self.eventfd.as_raw_fd(), one.as_ptr().cast(), 8) };
    }
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
                                if bell.should_wake() {
                                    bell.ring_eventfd();
                                }
                            }
                            if bell.should_wake() {
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
                bell.park();
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
        bell.park();
        assert!(bell.should_wake());
        assert!(!bell.should_wake(), "the first sender already did");
        assert!(!bell.is_parked());
    }

    #[test]
    fn the_ring_is_unknown_until_set() {
        let bell = Bell::new().unwrap();
        assert_eq!(bell.ring(), None);
        bell.set_ring(7);
        assert_eq!(bell.ring(), Some(7));
    }
}
