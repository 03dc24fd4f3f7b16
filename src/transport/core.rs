//! One core's shared state: its shard, its mesh endpoints and its waiters.
//!
//! Everything here is owned by one executor thread (`Rc`, `RefCell`, `Cell`):
//! no lock, no atomic on the request path. Other cores reach this shard only
//! through the mesh, whose handlers run here too.

use std::cell::RefCell;
use std::future::poll_fn;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};

use glommio::channels::channel_mesh::Senders;

use crate::clock::Clock;
use crate::config::Config;
use crate::router::{FromShard, Reply, ToShard};
use crate::shard::Shard;
use crate::stats::ConnCounters;
use crate::tenancy::Auth;

/// What every core shares: set once at start, then read-only but for the
/// connection count (touched on accept and close, never per request).
pub struct Shared {
    pub config: Config,
    pub auth: Auth,
    pub clock: Clock,
    pub open_connections: AtomicUsize,
    pub shutdown: AtomicBool,
    /// An upper bound on any stored value's length: what one forwarded get
    /// can cost in reply memory. Raised by stores (relaxed, and written only
    /// when it grows), never lowered.
    pub largest_value: AtomicUsize,
    /// Every core's listening socket, so shutdown can wake their accepts.
    /// Locked only at start-up and at shutdown.
    pub listeners: Mutex<Vec<RawFd>>,
}

impl Shared {
    pub fn shutting_down(&self) -> bool {
        self.shutdown.load(Ordering::Relaxed)
    }

    /// Notes a store of `len` bytes; an append or prepend grows an item by
    /// `len`, so it may reach the largest value plus `len`.
    pub fn note_store(&self, len: usize, grows: bool) {
        let largest = self.largest_value.load(Ordering::Relaxed);
        let bound = if grows {
            largest.saturating_add(len).min(self.config.max_item_size)
        } else {
            len
        };
        if bound > largest {
            self.largest_value.fetch_max(bound, Ordering::Relaxed);
        }
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
    pub index: usize,
    pub shards: usize,
    pub shard: RefCell<Shard>,
    pub shared: Arc<Shared>,
    /// Forwards work to the owning core.
    pub to_shard: Senders<ToShard>,
    /// Sends answers back to the asking core.
    pub replies: Senders<Reply>,
    pub waiters: Waiters,
    pub conns: RefCell<ConnCounters>,
}

impl Core {
    /// This core's id on the reply mesh (where its answers must be sent).
    pub fn reply_id(&self) -> usize {
        self.replies.peer_id()
    }

    /// Sends `make(reply_to, id)` to `shard`; its answer goes to waiter `id`.
    pub async fn send(&self, shard: usize, make: impl FnOnce(usize, u32) -> ToShard) -> u32 {
        let id = self.waiters.register();
        let message = make(self.reply_id(), id);
        if self.to_shard.send_to(shard, message).await.is_err() {
            panic!("the mesh to shard {shard} is closed");
        }
        id
    }

    /// Sends `make(reply_to, id)` to `shard` and waits for the answer.
    pub async fn ask(&self, shard: usize, make: impl FnOnce(usize, u32) -> ToShard) -> FromShard {
        let id = self.send(shard, make).await;
        self.waiters.wait(id).await
    }
}

/// Reply slots for requests this core forwarded: a slab of one-shot cells.
#[derive(Default)]
pub struct Waiters {
    slots: RefCell<Vec<Slot>>,
    free: RefCell<Vec<u32>>,
}

#[derive(Default)]
struct Slot {
    reply: Option<FromShard>,
    waker: Option<Waker>,
}

impl Waiters {
    pub fn register(&self) -> u32 {
        if let Some(id) = self.free.borrow_mut().pop() {
            return id;
        }
        let mut slots = self.slots.borrow_mut();
        slots.push(Slot::default());
        (slots.len() - 1) as u32
    }

    /// Called by the reply mesh handler.
    pub fn complete(&self, id: u32, reply: FromShard) {
        let mut slots = self.slots.borrow_mut();
        let slot = &mut slots[id as usize];
        slot.reply = Some(reply);
        if let Some(w) = slot.waker.take() {
            w.wake();
        }
    }

    pub async fn wait(&self, id: u32) -> FromShard {
        let reply = poll_fn(|cx| {
            let mut slots = self.slots.borrow_mut();
            let slot = &mut slots[id as usize];
            match slot.reply.take() {
                Some(r) => Poll::Ready(r),
                None => {
                    slot.waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await;
        self.free.borrow_mut().push(id);
        reply
    }
}

/// Keeps a connection counted in `open_connections` and the core's counters.
pub struct ConnectionGuard {
    core: Rc<Core>,
}

impl ConnectionGuard {
    /// Counts a new connection, or refuses it past `--max-connections`.
    pub fn admit(core: &Rc<Core>) -> Option<ConnectionGuard> {
        let shared = &core.shared;
        let open = shared.open_connections.fetch_add(1, Ordering::Relaxed);
        if open >= shared.config.max_connections {
            shared.open_connections.fetch_sub(1, Ordering::Relaxed);
            core.conns.borrow_mut().rejected_connections += 1;
            return None;
        }
        let mut c = core.conns.borrow_mut();
        c.curr_connections += 1;
        c.total_connections += 1;
        Some(ConnectionGuard { core: core.clone() })
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.core
            .shared
            .open_connections
            .fetch_sub(1, Ordering::Relaxed);
        self.core.conns.borrow_mut().curr_connections -= 1;
    }
}
