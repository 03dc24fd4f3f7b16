//! Reply slots for requests this core forwarded to another: one-shot
//! cells a task waits on, filled by the reply mesh's handler.
//!
//! Owned by one executor thread. It never sees what the replies mean.

use std::cell::RefCell;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use super::uring::stir;
use crate::transport::envelope::{Answer, Part};

/// What a batch part's waiter receives: the batch's answer, shared by its
/// parts, and this part (where its replies start in it, and how much of it
/// ran). A single message's waiter receives its `FromShard` instead.
pub type PartAnswer = (Rc<Answer>, Part);

/// Reply slots for requests this core forwarded: a slab of one-shot cells,
/// each receiving a `T`. A core keeps one slab per kind of answer, so each
/// waiter gets the kind it waits for.
pub struct Waiters<T> {
    slots: RefCell<Vec<Slot<T>>>,
    free: RefCell<Vec<u32>>,
}

impl<T> Default for Waiters<T> {
    fn default() -> Self {
        Waiters {
            slots: RefCell::default(),
            free: RefCell::default(),
        }
    }
}

struct Slot<T> {
    reply: Option<T>,
    waker: Option<Waker>,
}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Slot {
            reply: None,
            waker: None,
        }
    }
}

impl<T> Waiters<T> {
    pub fn register(&self) -> u32 {
        if let Some(id) = self.free.borrow_mut().pop() {
            return id;
        }
        let mut slots = self.slots.borrow_mut();
        slots.push(Slot::default());
        (slots.len() - 1) as u32
    }

    /// Called by the reply mesh handler.
    pub fn complete(&self, id: u32, reply: T) {
        let mut slots = self.slots.borrow_mut();
        let slot = &mut slots[id as usize];
        slot.reply = Some(reply);
        if let Some(w) = slot.waker.take() {
            stir();
            w.wake();
        }
    }

    /// Whether waiter `id`'s reply is in (to take with [`Waiters::wait`]);
    /// if not, `cx` is woken when it comes.
    pub fn poll_ready(&self, id: u32, cx: &mut Context<'_>) -> bool {
        let mut slots = self.slots.borrow_mut();
        let slot = &mut slots[id as usize];
        if slot.reply.is_none() {
            slot.waker = Some(cx.waker().clone());
        }
        slot.reply.is_some()
    }

    pub async fn wait(&self, id: u32) -> T {
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
