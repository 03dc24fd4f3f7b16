//! Metrics for the operator: `--metrics-listen HOST:PORT` serves the
//! Prometheus text format at `/metrics`.
//!
//! Owns the [`Board`] where each core publishes its [`CoreSnapshot`] once a
//! second, and which reply each request to the endpoint gets: on a scrape,
//! the latest snapshots and the namespace names rendered ([`exposition`]).
//! The endpoint's sockets and their bounds are [`endpoint`]'s, on plain
//! threads off the cores, and its wire syntax is [`http`]'s. Nothing here
//! runs on the request path: requests bump only their core's own plain
//! counters, and the one lock here is taken once a second by each core and
//! once per scrape. It serves counts only: never a key, a value or a token.

use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub mod endpoint;
pub mod exposition;
pub mod http;
pub mod snapshot;

use http::{Reply, Request};

pub use exposition::{Exposition, Facts, Project, OTHER};
pub use snapshot::{CoreSnapshot, Figures, Quota};

use crate::tenancy::Namespaces;

/// How often each core publishes its snapshot: a scrape sees figures at
/// most this old.
pub const PUBLISH_EVERY: Duration = Duration::from_secs(1);

/// The latest snapshot of each core.
#[derive(Debug)]
pub struct Board {
    slots: Mutex<Vec<Option<Arc<CoreSnapshot>>>>,
}

impl Board {
    pub fn new(cores: usize) -> Arc<Board> {
        Arc::new(Board {
            slots: Mutex::new(vec![None; cores]),
        })
    }

    /// Replaces core `snapshot.core`'s snapshot.
    pub fn publish(&self, snapshot: CoreSnapshot) {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = slots.get_mut(snapshot.core) {
            *slot = Some(Arc::new(snapshot));
        }
    }

    /// The cores' latest snapshots (a core that has not published yet is
    /// left out).
    pub fn latest(&self) -> Vec<Arc<CoreSnapshot>> {
        let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.iter().flatten().cloned().collect()
    }
}

/// Client connections open now, read live at each scrape.
pub type OpenConnections = Box<dyn Fn() -> u64 + Send + Sync>;

/// What `/metrics` shows now.
pub fn scrape(board: &Board, facts: &Facts, open_now: u64) -> Result<String, std::fmt::Error> {
    let names = Namespaces::global().projects();
    Exposition::gather(facts.clone(), board.latest(), &names, open_now).render()
}

/// Binds `listen` and serves `/metrics` from `board` on threads of their
/// own ([`endpoint`]); returns the bound address (port 0 picks a free one).
pub fn serve(
    listen: SocketAddr,
    board: Arc<Board>,
    facts: Facts,
    open_now: OpenConnections,
) -> Result<SocketAddr, String> {
    let listener = TcpListener::bind(listen).map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let handler: endpoint::Handler =
        Arc::new(move |request| respond(request, &board, &facts, open_now()));
    endpoint::start(listener, handler).map_err(|e| e.to_string())?;
    Ok(addr)
}

/// `GET /metrics` (or HEAD); 404 for any other path, 405 for any other
/// method on `/metrics`.
fn respond(request: &Request<'_>, board: &Board, facts: &Facts, open_now: u64) -> Reply {
    let target = request.target;
    let path = target.split('?').next().unwrap_or(target);
    if path != "/metrics" {
        return Reply::plain(404, "not found: metrics are at /metrics\n");
    }
    if !matches!(request.method, "GET" | "HEAD") {
        return Reply::plain(405, "method not allowed\n");
    }
    match scrape(board, facts, open_now) {
        Ok(text) => Reply::ok(
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            text,
        ),
        Err(e) => {
            crate::throttled_warn!(error = %e, "cannot render /metrics");
            Reply::plain(500, "cannot render metrics\n")
        }
    }
}
