//! Metrics for the operator: `--metrics-listen HOST:PORT` serves the
//! Prometheus text format at `/metrics`.
//!
//! Owns the [`Board`] where each core publishes its [`CoreSnapshot`] once a
//! second, and the endpoint: one plain thread running a `tiny_http` server,
//! off the cores, which on each scrape reads the latest snapshots and the
//! namespace names and renders them ([`exposition`]). Nothing here runs on
//! the request path: requests bump only their core's own plain counters,
//! and the one lock here is taken once a second by each core and once per
//! scrape. It serves counts only: never a key, a value or a token.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub mod exposition;
pub mod snapshot;

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
pub type OpenConnections = Box<dyn Fn() -> u64 + Send>;

/// What `/metrics` shows now.
pub fn scrape(board: &Board, facts: &Facts, open_now: u64) -> Result<String, std::fmt::Error> {
    let names = Namespaces::global().projects();
    Exposition::gather(facts.clone(), board.latest(), &names, open_now).render()
}

/// Binds `listen` and serves `/metrics` from `board` on a thread of its
/// own; returns the bound address (port 0 picks a free one).
pub fn serve(
    listen: SocketAddr,
    board: Arc<Board>,
    facts: Facts,
    open_now: OpenConnections,
) -> Result<SocketAddr, String> {
    let server = tiny_http::Server::http(listen).map_err(|e| e.to_string())?;
    let addr = server
        .server_addr()
        .to_ip()
        .ok_or_else(|| "not an IP address".to_string())?;
    std::thread::Builder::new()
        .name("ferrocache-metrics".into())
        .spawn(move || {
            for request in server.incoming_requests() {
                let open = open_now();
                let response = respond(request.method(), request.url(), &board, &facts, open);
                // The scraper may have gone: nothing to do about it.
                let _ = request.respond(response);
            }
        })
        .map_err(|e| e.to_string())?;
    Ok(addr)
}

/// `GET /metrics` (or HEAD); 404 for any other path, 405 for any other method.
fn respond(
    method: &tiny_http::Method,
    url: &str,
    board: &Board,
    facts: &Facts,
    open_now: u64,
) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
    use tiny_http::{Header, Method, Response};
    let path = url.split('?').next().unwrap_or(url);
    if path != "/metrics" {
        return Response::from_string("not found: metrics are at /metrics\n").with_status_code(404);
    }
    if !matches!(method, Method::Get | Method::Head) {
        return Response::from_string("method not allowed\n").with_status_code(405);
    }
    match scrape(board, facts, open_now) {
        Ok(text) => {
            let content_type = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
            let mut response = Response::from_string(text);
            if let Ok(header) = Header::from_bytes("Content-Type", content_type) {
                response.add_header(header);
            }
            response
        }
        Err(e) => {
            crate::throttled_warn!(error = %e, "cannot render /metrics");
            Response::from_string("cannot render metrics\n").with_status_code(500)
        }
    }
}
