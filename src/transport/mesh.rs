//! The receiving ends of the two channel meshes, and work any core may be
//! asked to do for another.
//!
//! Two meshes, not one: requests and replies travel on separate channels so
//! that a core blocked forwarding requests can always still drain replies,
//! which rules out a cycle of full channels. We use glommio's `channel_mesh`
//! rather than crossbeam-channel because its lock-free SPSC queues wake the
//! receiving executor themselves; crossbeam would need a poller spinning or
//! sleeping on every core.

use std::rc::Rc;

use glommio::channels::shared_channel::ConnectedReceiver;
use tracing::{error, warn};

use super::connection::serve;
use super::core::{Core, Delivery};
use super::socket::Socket;
use crate::protocol::{parse, ErrorReply, Limits, Parsed, Request};
use crate::router::{read_record, Answer, FromShard, Part, Record, Reply, ToShard};
use crate::stats::Report;
use crate::store::NsId;

/// Executes work other cores forwarded to this shard, in arrival order.
pub async fn serve_requests(core: Rc<Core>, from_peer: ConnectedReceiver<ToShard>) {
    while let Some(message) = from_peer.recv().await {
        let (reply_to, id, body) = match message {
            ToShard::Batch {
                reply_to,
                parts,
                mut wire,
                mut answer,
            } => {
                execute_batch(&core, &parts, &wire, &mut answer);
                wire.clear();
                let body = FromShard::Batch {
                    shard: core.index,
                    answer,
                    wire,
                    parts,
                };
                // A batch's waiters are in its parts.
                (reply_to, 0, body)
            }
            ToShard::Flush {
                reply_to,
                id,
                ns,
                delay,
            } => {
                core.shard.borrow_mut().flush(ns, delay);
                (reply_to, id, FromShard::Done)
            }
            ToShard::Report { reply_to, id, ns } => (
                reply_to,
                id,
                FromShard::Report(Box::new(report_here(&core, ns))),
            ),
            ToShard::Reset { reply_to, id, ns } => {
                core.shard.borrow_mut().reset_counters(ns);
                (reply_to, id, FromShard::Done)
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
        if core
            .replies
            .send_to(reply_to, Reply { id, body })
            .await
            .is_err()
        {
            return;
        }
    }
}

/// Hands answers to the connections of this core that wait for them.
pub async fn serve_replies(core: Rc<Core>, from_peer: ConnectedReceiver<Reply>) {
    while let Some(reply) = from_peer.recv().await {
        match reply.body {
            FromShard::Batch {
                shard,
                answer,
                wire,
                parts,
            } => core.deliver(shard, answer, wire, parts),
            body => core.waiters.complete(reply.id, Delivery::Whole(body)),
        }
    }
}

/// Requests of a batch parsed and prefetched ahead of running them.
const AHEAD: usize = 16;

/// Runs a forwarded batch: records of requests (see `router`), each
/// answered in order into `answer`, each part in its own namespace. They go
/// in groups of `AHEAD`: read all and start loading their index buckets,
/// then their items, then run them, so the group's cache misses overlap.
fn execute_batch(core: &Core, parts: &[Part], batch: &[u8], answer: &mut Answer) {
    let limits = Limits {
        max_item_size: core.shared.config.max_item_size,
    };
    let Answer { out, ends } = answer;
    let mut shard = core.shard.borrow_mut();
    // (None, _): a request that did not parse, answered ERROR in its place.
    let mut group: [Option<(Option<Request>, u64)>; AHEAD] = std::array::from_fn(|_| None);
    let mut pos = 0;
    for part in parts {
        let end = part.end as usize;
        while pos < end {
            let mut n = 0;
            while n < AHEAD && pos < end {
                let (hash, record, len) = read_record(&batch[pos..end]);
                pos += len;
                let request = match record {
                    Record::Get(request) => Some(request),
                    Record::Wire(wire) => match parse(wire, &limits) {
                        Parsed::Request { request, .. } => Some(request),
                        other => {
                            // The sender parsed these bytes already: a bug, not input.
                            error!(?other, "unparseable forwarded request");
                            None
                        }
                    },
                };
                shard.prefetch_bucket(hash);
                group[n] = Some((request, hash));
                n += 1;
            }
            for (_, hash) in group[..n].iter().flatten() {
                shard.prefetch_items(*hash);
            }
            for slot in &mut group[..n] {
                match slot.take().expect("read above") {
                    (Some(request), hash) => shard.execute(part.ns.id, hash, &request, out),
                    (None, _) => out.extend_from_slice(ErrorReply::Error.line()),
                }
                ends.push(out.len() as u32);
            }
        }
    }
}

/// This core's figures: one namespace's, or (`None`) the core's totals,
/// connection counters included.
pub fn report_here(core: &Core, ns: Option<NsId>) -> Report {
    let mut report = core.shard.borrow().report(ns);
    if ns.is_none() {
        report.conns = *core.conns.borrow();
    }
    report
}
