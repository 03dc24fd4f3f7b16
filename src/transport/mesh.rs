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
use std::time::Duration;

use glommio::channels::shared_channel::ConnectedReceiver;
use tracing::error;

use super::core::Core;
use crate::protocol::{parse, Limits, Parsed};
use crate::router::{FromShard, KeyHasher, Reply, ToShard};
use crate::stats::Report;
use crate::store::NsId;
use crate::tenancy::Namespace;

/// Executes work other cores forwarded to this shard, in arrival order.
pub async fn serve_requests(core: Rc<Core>, from_peer: ConnectedReceiver<ToShard>) {
    while let Some(message) = from_peer.recv().await {
        let (reply_to, id, body) = match message {
            ToShard::Batch {
                reply_to,
                id,
                ns,
                wire,
            } => (reply_to, id, execute_batch(&core, ns, &wire)),
            ToShard::Flush {
                reply_to,
                id,
                ns,
                delay,
            } => {
                flush_here(&core, ns, delay);
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
        core.waiters.complete(reply.id, reply.body);
    }
}

/// Runs a forwarded batch: wire-format requests, each answered in order.
fn execute_batch(core: &Core, ns: Namespace, wire: &[u8]) -> FromShard {
    let limits = Limits {
        max_item_size: core.shared.config.max_item_size,
    };
    let hasher = KeyHasher::new(ns);
    let mut out = Vec::with_capacity(256);
    let mut ends = Vec::new();
    let mut shard = core.shard.borrow_mut();
    let mut pos = 0;
    while pos < wire.len() {
        match parse(&wire[pos..], &limits) {
            Parsed::Request { request, consumed } => {
                let key = request.key().expect("forwarded requests are keyed");
                shard.execute(ns.id, hasher.hash(key), &request, &mut out);
                ends.push(out.len() as u32);
                pos += consumed;
            }
            other => {
                // The sender parsed these bytes already; this is a bug, not input.
                error!(?other, "unparseable forwarded batch");
                break;
            }
        }
    }
    FromShard::Batch { out, ends }
}

/// `flush_all` on this core's shard: now, or after `delay` (memcached's
/// exptime rules), unless a later flush replaces it.
pub fn flush_here(core: &Rc<Core>, ns: NsId, delay: i64) {
    let mut shard = core.shard.borrow_mut();
    if delay <= 0 {
        shard.flush(ns);
        return;
    }
    let now = shard.clock().now();
    let at = shard.clock().expiry(delay, now);
    let wait = Duration::from_secs(u64::from(at.saturating_sub(now)));
    let generation = shard.schedule_flush(ns);
    let core = core.clone();
    glommio::spawn_local(async move {
        glommio::timer::sleep(wait).await;
        core.shard.borrow_mut().run_scheduled_flush(ns, generation);
    })
    .detach();
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
