//! The meaning of the requests that name no key: `flush_all`, `stats` (every
//! group), `version`, `verbosity`, `mn` and `quit`.
//!
//! Owns what each of them asks of the shards ([`Everywhere`]), each shard's
//! part of it, and the reply composed from the shards' reports. It never
//! touches a socket and never reaches another core: transport carries an
//! [`Everywhere`] to every shard and brings the reports back.

use std::time::Duration;

use super::Shard;
use crate::config::Config;
use crate::keyspace::NsId;
use crate::protocol::reply::MetaCode;
use crate::protocol::{compose, ErrorReply, Request, Response, StatsGroup};
use crate::stats::{self, Report, Scope, ServerFacts};
use crate::tenancy::Namespaces;

/// What every shard does before an admin request can be answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Everywhere {
    /// Flush one namespace, now (`delay` <= 0) or once the delay passed.
    Flush { ns: NsId, delay: i64 },
    /// Report figures: one namespace's, or (`None`) each core's totals.
    Report { ns: Option<NsId> },
    /// Zero counters: one namespace's, or (`None`) all.
    Reset { ns: Option<NsId> },
}

/// What transport does next with a request that names no key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// The reply is composed (or the request is silent).
    Done,
    /// Close the connection.
    Close,
    /// Every shard does this, once the replies of earlier requests are in
    /// place; then [`finish`] composes the reply from the summed reports.
    Everywhere(Everywhere),
}

/// What an admin reply may tell of the server.
#[derive(Clone, Copy)]
pub struct Server<'a> {
    pub config: &'a Config,
    /// Shards (one per core).
    pub shards: usize,
    /// Secure mode: a tenant sees its own cache, never the server.
    pub secure: bool,
}

impl Server<'_> {
    /// Whose figures `stats` shows, and of which namespace.
    fn scope(&self, ns: NsId) -> (Scope, Option<NsId>) {
        if self.secure {
            (Scope::Tenant, Some(ns))
        } else {
            (Scope::Server, None)
        }
    }
}

impl Shard {
    /// Starts `request` (one that names no key) for a connection of
    /// namespace `ns` on its own shard: answers it now, or says what every
    /// shard must do first.
    pub fn admin(
        &mut self,
        request: &Request,
        ns: NsId,
        server: &Server,
        out: &mut Vec<u8>,
    ) -> Step {
        match *request {
            Request::FlushAll { delay, .. } => {
                // Counted once per request, on the connection's own shard.
                self.count_flush(ns);
                return Step::Everywhere(Everywhere::Flush { ns, delay });
            }
            Request::Stats(group) => return self.stats(group, ns, server, out),
            Request::Version => compose(&Response::Version(version()), out),
            Request::Verbosity { noreply } => {
                if !noreply {
                    compose(&Response::Ok, out);
                }
            }
            Request::MetaNoOp => compose(&Response::Meta(MetaCode::Mn), out),
            Request::Quit => return Step::Close,
            // A keyed request reaching here is a routing bug, not input.
            _ => {
                debug_assert!(false, "not an admin request: {request:?}");
                compose(&Response::Error(ErrorReply::Error), out);
            }
        }
        Step::Done
    }

    fn stats(&mut self, group: StatsGroup, ns: NsId, server: &Server, out: &mut Vec<u8>) -> Step {
        let (_, ns) = server.scope(ns);
        match group {
            StatsGroup::General => return Step::Everywhere(Everywhere::Report { ns }),
            StatsGroup::Reset => return Step::Everywhere(Everywhere::Reset { ns }),
            StatsGroup::Settings => {
                for (name, value) in settings(server) {
                    compose(&Response::Stat(name, &value), out);
                }
                compose(&Response::End, out);
            }
            // No slab classes here: both groups are empty. No external
            // storage either, as in a memcached that has not turned it on.
            StatsGroup::Items | StatsGroup::Slabs | StatsGroup::Extstore => {
                compose(&Response::End, out)
            }
            // Size histograms are off, as in a default memcached.
            StatsGroup::Sizes => {
                compose(&Response::Stat("sizes_status", "disabled"), out);
                compose(&Response::End, out);
            }
            // Per-prefix detail is not collected; on/off are accepted, the dump is empty.
            StatsGroup::Detail(b"on" | b"off") => compose(&Response::Ok, out),
            StatsGroup::Detail(b"dump") => compose(&Response::End, out),
            StatsGroup::Detail(_) => compose(&Response::Error(ErrorReply::DetailUsage), out),
            StatsGroup::Other(_) => compose(&Response::Error(ErrorReply::Error), out),
        }
        Step::Done
    }

    /// This shard's part of `op`: its report, where `op` asks for one.
    pub fn everywhere(&mut self, op: Everywhere) -> Option<Report> {
        match op {
            Everywhere::Flush { ns, delay } => self.flush(ns, delay),
            Everywhere::Report { ns } => return Some(self.report(ns)),
            Everywhere::Reset { ns } => self.reset_counters(ns),
        }
        None
    }

    /// Composes the reply to `request`, whose [`Everywhere`] every shard
    /// has done; `total` is the sum of their reports where it asked for
    /// them.
    pub fn finish(
        &self,
        request: &Request,
        total: Option<&Report>,
        server: &Server,
        out: &mut Vec<u8>,
    ) {
        match *request {
            Request::FlushAll { noreply, .. } => {
                if !noreply {
                    compose(&Response::Ok, out);
                }
            }
            Request::Stats(StatsGroup::Reset) => compose(&Response::Reset, out),
            Request::Stats(StatsGroup::General) => {
                let total = total.copied().unwrap_or_default();
                let (scope, _) = server.scope(0);
                let (user, system) = rusage();
                let facts = ServerFacts {
                    pid: std::process::id(),
                    uptime: self.clock.uptime(),
                    time: self.clock.unix_now(),
                    version: version(),
                    threads: server.shards,
                    max_connections: server.config.max_connections,
                    limit_maxbytes: server.config.memory_bytes as u64,
                    rusage_user: user,
                    rusage_system: system,
                    namespaces: Namespaces::global().in_use(),
                    namespaces_reclaimed: Namespaces::global().reclaimed(),
                };
                for (name, value) in stats::general(&facts, &total, scope) {
                    compose(&Response::Stat(name, &value), out);
                }
                compose(&Response::End, out);
            }
            _ => {
                debug_assert!(false, "{request:?} asked nothing of every shard");
                compose(&Response::Error(ErrorReply::Error), out);
            }
        }
    }
}

/// What `version` and `stats` report: memcached's protocol level, then ours,
/// so clients that parse major.minor.patch still can.
pub fn version() -> &'static str {
    concat!("1.6.18-ferrocache-", env!("CARGO_PKG_VERSION"))
}

/// `stats settings`. In secure mode, as plain `stats`, nothing of the
/// server's configuration (memory, connection limit, port, address, cores,
/// limits): only what every client may know or learn by trying.
fn settings(server: &Server) -> Vec<(&'static str, String)> {
    let config = server.config;
    let secure = server.secure;
    let mut lines = vec![
        ("maxbytes", config.memory_bytes.to_string()),
        ("maxconns", config.max_connections.to_string()),
        ("tcpport", config.listen.port().to_string()),
        ("inter", config.listen.ip().to_string()),
        ("evictions", "on".into()),
        ("num_threads", server.shards.to_string()),
        ("cas_enabled", "yes".into()),
        ("binding_protocol", "ascii".into()),
        (
            "auth_enabled_ascii",
            if secure { "yes" } else { "no" }.into(),
        ),
        ("item_size_max", config.max_item_size.to_string()),
        ("flush_enabled", "yes".into()),
        ("idle_timeout", secs(config.idle_timeout)),
        ("auth_timeout", secs(config.auth_timeout)),
        ("request_timeout", secs(config.request_timeout)),
        ("write_timeout", secs(config.write_timeout)),
    ];
    if secure {
        lines.retain(|(name, _)| stats::TENANT_SETTINGS.contains(name));
    }
    lines
}

/// A timeout as `stats settings` shows it: seconds, 0 for off.
fn secs(timeout: Option<Duration>) -> String {
    timeout.map_or(0, |d| d.as_secs()).to_string()
}

/// (user, system) CPU seconds of the process.
fn rusage() -> (f64, f64) {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct we pass; RUSAGE_SELF is always valid.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (secs(usage.ru_utime), secs(usage.ru_stime))
}
