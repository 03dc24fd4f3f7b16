//! The receiving ends of the two channel meshes, and work any core may be
//! asked to do for another.
//!
//! Two meshes, not one: requests and replies travel on separate queues so
//! that a core blocked forwarding requests can always still drain replies,
//! which rules out a cycle of full queues. The queues (`lanes`) are polled
//! by the core's socket ring driver between its turns, and a sender wakes
//! the receiving core only when it sleeps (`bell`); on glommio's sockets,
//! [`poll_without_ring`] polls them instead.

use std::rc::Rc;

use tracing::warn;

use super::connection::serve;
use super::core::Core;
use super::socket::{send_now, Socket};
use crate::protocol::Limits;
use crate::transport::envelope::{
    answer_batch, write_pens, Answer, FromShard, Part, Record, Reply, ToShard,
};

/// Executes work other cores forwarded to this shard, in arrival order.
pub async fn serve_requests(core: Rc<Core>, from_peer: usize) {
    loop {
        let message = core.to_shard.recv(from_peer).await;
        let (reply_to, id, body, deferred) = match message {
            ToShard::Batch {
                reply_to,
                mut parts,
                mut wire,
                mut answer,
                cap,
            } => {
                execute_batch(&core, &mut parts, &wire, &mut answer, cap);
                // Lent sockets get their replies now; an answer that only
                // says so need not wake the asking core.
                let whole = write_pens(&mut parts, &answer, &wire, send_now);
                if whole > 0 {
                    core.conns.borrow_mut().owner_written_replies += whole as u64;
                }
                let deferred = whole == parts.len();
                wire.clear();
                let body = FromShard::Batch {
                    shard: core.index,
                    answer,
                    wire,
                    parts,
                    cap,
                };
                // A batch's waiters are in its parts.
                (reply_to, 0, body, deferred)
            }
            ToShard::Flush {
                reply_to,
                id,
                ns,
                delay,
            } => {
                core.shard.borrow_mut().flush(ns, delay);
                (reply_to, id, FromShard::Done, false)
            }
            ToShard::Report { reply_to, id, ns } => (
                reply_to,
                id,
                FromShard::Report(Box::new(core.report(ns))),
                false,
            ),
            ToShard::Reset { reply_to, id, ns } => {
                core.shard.borrow_mut().reset_counters(ns);
                (reply_to, id, FromShard::Done, false)
            }
            ToShard::Adopt(fd) => {
                match Socket::adopt(fd, core.ring.clone()) {
                    Ok(socket) => {
                        glommio::spawn_local(serve(core.clone(), socket)).detach();
                    }
                    Err(e) => {
                        core.shared.unplace(core.index);
                        warn!(error = %e, "cannot adopt a connection");
                    }
                }
                continue;
            }
        };
        core.answer(reply_to, Reply { id, body, deferred }).await;
    }
}

/// Hands answers to the connections of this core that wait for them.
pub async fn serve_replies(core: Rc<Core>, from_peer: usize) {
    loop {
        let reply = core.replies.recv(from_peer).await;
        core.take_reply(reply);
    }
}

/// Polls the mesh on a core without a socket ring (`--socket-io glommio`):
/// whenever a round of the executor brought nothing, it parks on the core's
/// bell, whose eventfd glommio reads. Runs for the life of the core.
pub async fn poll_without_ring(core: Rc<Core>) {
    use super::uring::Inbound;
    let bell = core.bell();
    // SAFETY: dup takes no pointers; it returns a new descriptor or -1.
    let dup = unsafe { libc::dup(bell.eventfd()) };
    assert!(dup >= 0, "dup eventfd: {}", std::io::Error::last_os_error());
    // SAFETY: `dup` is a descriptor we own and hand to glommio, which closes it.
    let wakeups =
        unsafe { <glommio::io::BufferedFile as std::os::fd::FromRawFd>::from_raw_fd(dup) };
    loop {
        if core.poll() > 0 || core.keep_awake() {
            futures_lite::future::yield_now().await;
            continue;
        }
        // Parked for as long as it takes: any message wakes it.
        bell.park(true);
        if core.pending() {
            bell.unpark();
            continue;
        }
        let _ = wakeups.read_at(0, 8).await;
        bell.unpark();
    }
}

/// Runs a forwarded batch (see `envelope::answer_batch`, which bounds its
/// answer by `cap`): retrievals come parsed, anything else as wire bytes
/// to parse. Each group of records has its index buckets, then its items,
/// loaded before it runs, so the group's cache misses overlap.
fn execute_batch(core: &Core, parts: &mut [Part], batch: &[u8], answer: &mut Answer, cap: usize) {
    let limits = Limits {
        max_item_size: core.shared.config.max_item_size,
    };
    let shard = &core.shard;
    answer_batch(
        parts,
        batch,
        answer,
        &core.forward_limits,
        cap,
        |hashes| shard.borrow().prefetch(hashes),
        |ns, hash, record, out| match record {
            Record::Get(request) => shard.borrow_mut().execute(ns.id, hash, &request, out),
            Record::Wire(wire, _) => shard
                .borrow_mut()
                .execute_wire(ns.id, hash, wire, &limits, out),
        },
    );
}
