//! The mesh between cores: one bounded lock-free queue per ordered pair of
//! cores, polled by the receiving core between turns of its socket ring.
//!
//! Owns the queues and, per core, who waits on them: tasks waiting for a
//! message from a peer, and tasks waiting for room to send. It never wakes
//! another core (that is [`super::bell`], after a send) and never sleeps:
//! the core's driver calls [`Endpoint::poll`] each turn, which wakes the
//! local tasks whose queue has something (or room) now.
//!
//! A queue is crossbeam's `ArrayQueue`: bounded, lock-free, one cache line
//! per end. Each is used by exactly one sender core and one receiver core.

use std::cell::RefCell;
use std::future::poll_fn;
use std::sync::Arc;
use std::task::{Poll, Waker};

use crossbeam_queue::ArrayQueue;

/// Every queue of one mesh: `n × n`, the one from `a` to `b` at `a * n + b`
/// (the diagonal is never used: a core does not send to itself).
pub struct Lanes<T> {
    n: usize,
    queues: Box<[ArrayQueue<T>]>,
}

impl<T> Lanes<T> {
    pub fn new(n: usize, capacity: usize) -> Arc<Lanes<T>> {
        Arc::new(Lanes {
            n,
            queues: (0..n * n).map(|_| ArrayQueue::new(capacity)).collect(),
        })
    }

    fn lane(&self, from: usize, to: usize) -> &ArrayQueue<T> {
        &self.queues[from * self.n + to]
    }

    /// Whether anything waits for core `to`, from any peer.
    pub fn pending_for(&self, to: usize) -> bool {
        (0..self.n).any(|from| !self.lane(from, to).is_empty())
    }
}

/// One core's end of a mesh: it sends on the queues from it and receives on
/// the queues to it. Owned by that core's thread.
pub struct Endpoint<T> {
    me: usize,
    lanes: Arc<Lanes<T>>,
    /// Per peer: the task waiting for a message from it.
    receivers: RefCell<Vec<Option<Waker>>>,
    /// Tasks waiting for room in some queue from this core.
    blocked: RefCell<Vec<Waker>>,
}

impl<T> Endpoint<T> {
    pub fn new(lanes: Arc<Lanes<T>>, me: usize) -> Endpoint<T> {
        let n = lanes.n;
        Endpoint {
            me,
            lanes,
            receivers: RefCell::new((0..n).map(|_| None).collect()),
            blocked: RefCell::new(Vec::new()),
        }
    }

    /// This core's id (the same on every mesh).
    pub fn peer_id(&self) -> usize {
        self.me
    }

    /// How many cores the mesh joins.
    pub fn peers(&self) -> usize {
        self.lanes.n
    }

    /// Queues `message` for `to`, or gives it back if that queue is full.
    /// The caller then rings `to`'s bell.
    pub fn try_send(&self, to: usize, message: T) -> Result<(), T> {
        debug_assert_ne!(to, self.me, "a core never sends to itself");
        self.lanes.lane(self.me, to).push(message)
    }

    /// Waits until the queue to `to` may have room again (the next poll
    /// after the peer took something). The caller rings `to` first, so a
    /// sleeping peer drains it.
    pub async fn room(&self, to: usize) {
        let mut registered = false;
        poll_fn(|cx| {
            if registered || !self.lanes.lane(self.me, to).is_full() {
                return Poll::Ready(());
            }
            registered = true;
            self.blocked.borrow_mut().push(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// The next message from `from`, in the order it was sent.
    pub async fn recv(&self, from: usize) -> T {
        poll_fn(|cx| match self.lanes.lane(from, self.me).pop() {
            Some(message) => Poll::Ready(message),
            None => {
                self.receivers.borrow_mut()[from] = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }

    /// Takes a message from `from` if one is there (for a receiver already
    /// running, so a burst is drained without a wake-up each).
    pub fn try_recv(&self, from: usize) -> Option<T> {
        self.lanes.lane(from, self.me).pop()
    }

    /// Wakes the receivers whose queue holds something and, if any queue of
    /// ours has room, the senders waiting for it. Returns how many it woke.
    pub fn poll(&self) -> usize {
        let mut woke = 0;
        let mut receivers = self.receivers.borrow_mut();
        for (from, waiting) in receivers.iter_mut().enumerate() {
            if waiting.is_some() && !self.lanes.lane(from, self.me).is_empty() {
                if let Some(w) = waiting.take() {
                    w.wake();
                    woke += 1;
                }
            }
        }
        drop(receivers);
        let mut blocked = self.blocked.borrow_mut();
        if !blocked.is_empty() {
            let room = (0..self.lanes.n)
                .any(|to| to != self.me && !self.lanes.lane(self.me, to).is_full());
            if room {
                woke += blocked.len();
                for w in blocked.drain(..) {
                    w.wake();
                }
            }
        }
        woke
    }

    /// Whether a message waits for this core (the last look before sleeping).
    pub fn pending(&self) -> bool {
        self.lanes.pending_for(self.me)
    }

    /// Whether a task waits for room to send (the core must not sleep long:
    /// the room it waits for is made by another core, which does not wake
    /// this one for it).
    pub fn has_blocked_senders(&self) -> bool {
        !self.blocked.borrow().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Counts its drops, to check that messages left in flight are freed.
    struct Tracked(Arc<AtomicUsize>);
    impl Drop for Tracked {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn a_full_queue_gives_the_message_back_and_keeps_order() {
        let lanes = Lanes::new(2, 4);
        let a = Endpoint::new(lanes.clone(), 0);
        let b = Endpoint::new(lanes.clone(), 1);
        for i in 0..4 {
            a.try_send(1, i).unwrap();
        }
        assert_eq!(a.try_send(1, 99), Err(99));
        assert!(b.pending() && !a.pending());
        assert_eq!(b.try_recv(0), Some(0));
        a.try_send(1, 4).unwrap();
        let got: Vec<_> = std::iter::from_fn(|| b.try_recv(0)).collect();
        assert_eq!(got, [1, 2, 3, 4]);
    }

    #[test]
    fn messages_in_flight_at_shutdown_are_freed() {
        let drops = Arc::new(AtomicUsize::new(0));
        let lanes = Lanes::new(3, 8);
        let a = Endpoint::new(lanes.clone(), 0);
        for to in [1, 2, 1] {
            a.try_send(to, Tracked(drops.clone())).ok().unwrap();
        }
        drop(a);
        drop(lanes);
        assert_eq!(drops.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn poll_wakes_a_waiting_receiver_and_blocked_senders() {
        glommio::LocalExecutor::default().run(async {
            let lanes = Lanes::new(2, 1);
            let a = Rc::new(Endpoint::new(lanes.clone(), 0));
            let b = Rc::new(Endpoint::new(lanes, 1));
            let got = Rc::new(RefCell::new(Vec::new()));
            let receiver = {
                let (b, got) = (b.clone(), got.clone());
                glommio::spawn_local(async move {
                    for _ in 0..3 {
                        let m = b.recv(0).await;
                        got.borrow_mut().push(m);
                    }
                })
            };
            let sender = {
                let a = a.clone();
                glommio::spawn_local(async move {
                    for i in 0..3u32 {
                        let mut m = i;
                        loop {
                            match a.try_send(1, m) {
                                Ok(()) => break,
                                Err(back) => {
                                    m = back;
                                    a.room(1).await;
                                }
                            }
                        }
                    }
                })
            };
            // The driver's part: poll both ends until everything moved.
            for _ in 0..1000 {
                a.poll();
                b.poll();
                futures_lite::future::yield_now().await;
                if got.borrow().len() == 3 {
                    break;
                }
            }
            sender.await;
            receiver.await;
            assert_eq!(*got.borrow(), [0, 1, 2]);
        });
    }
}
