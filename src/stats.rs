//! Counters, and the `stats` reply built from them.
//!
//! Owns the names and meanings of every counter (memcached's names). Shards
//! count per namespace and connections count per core; a `stats` request
//! sums reports from every core. Never touches a socket.

use crate::store::{NsStats, StoreStats};

macro_rules! counters {
    ($(#[$doc:meta])* $name:ident { $($field:ident),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct $name { $(pub $field: u64),* }

        impl $name {
            pub fn add(&mut self, other: &$name) {
                $(self.$field += other.$field;)*
            }

            /// (memcached name, value), in memcached's order.
            pub fn fields(&self) -> impl Iterator<Item = (&'static str, u64)> {
                [$((stringify!($field), self.$field)),*].into_iter()
            }
        }
    };
}

counters! {
    /// Command counters, kept per namespace on each shard.
    Counters {
        cmd_get, cmd_set, cmd_flush, cmd_touch,
        get_hits, get_misses, get_expired,
        delete_misses, delete_hits,
        incr_misses, incr_hits, decr_misses, decr_hits,
        cas_misses, cas_hits, cas_badval,
        touch_hits, touch_misses,
        store_too_large, store_no_memory,
    }
}

counters! {
    /// Connection counters, kept per core.
    ConnCounters {
        curr_connections, total_connections, rejected_connections,
        auth_cmds, auth_errors,
        bytes_read, bytes_written,
        // Connections closed by each deadline (`idle_kicks` is memcached's).
        idle_kicks, auth_timeouts, request_timeouts, write_timeouts,
        // Batches of forwarded requests sent to other cores.
        forward_batches,
        // Keyed requests (each key of a multiget) sent to another core's shard.
        forward_requests,
        // Forwarded requests whose reply the owning core wrote straight to
        // the client (`--owner-writes`), counted by the owner.
        owner_written_replies,
        // Times an idle core polled before sleeping (`--spin-us`, when its
        // busy share opened the gate), and how many of those polls found
        // work before the limit.
        idle_polls, idle_poll_hits,
        // Times an idle core slept in its own socket ring, and times it
        // parked through glommio instead (each of those costs a
        // `membarrier` that interrupts every CPU running the server).
        idle_sleeps, idle_parks,
        // Gauges: bytes the connections' buffers hold now, and bytes of
        // forwarded replies that other cores owe or this core still holds.
        conn_buffer_bytes, forward_reply_bytes,
    }
}

/// Adds one shard's item figures to a running total.
fn add_items(total: &mut StoreStats, o: &StoreStats) {
    total.curr_items += o.curr_items;
    total.total_items += o.total_items;
    total.bytes += o.bytes;
    total.evictions += o.evictions;
    total.reclaimed += o.reclaimed;
    total.expired_unfetched += o.expired_unfetched;
    total.evicted_unfetched += o.evicted_unfetched;
    total.overhead_bytes += o.overhead_bytes;
    total.hash_bytes += o.hash_bytes;
    total.invariant_skips += o.invariant_skips;
    total.fair_fallbacks += o.fair_fallbacks;
    total.index_refusals += o.index_refusals;
}

/// A namespace's figures in the store's shape (the rest stay zero: they
/// would say something about other tenants or the whole server).
pub fn tenant_items(s: NsStats) -> StoreStats {
    StoreStats {
        curr_items: s.curr_items,
        total_items: s.total_items,
        bytes: s.bytes,
        evictions: s.evictions,
        ..StoreStats::default()
    }
}

/// One core's contribution to a `stats` reply.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub counters: Counters,
    pub items: StoreStats,
    pub conns: ConnCounters,
}

impl Report {
    pub fn add(&mut self, o: &Report) {
        self.counters.add(&o.counters);
        add_items(&mut self.items, &o.items);
        self.conns.add(&o.conns);
    }
}

/// Whose figures a `stats` reply shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Secure mode: one cache's own figures, nothing about other tenants.
    Tenant,
    /// Open mode: server totals.
    Server,
}

/// Process-level facts a `stats` reply shows.
pub struct ServerFacts {
    pub pid: u32,
    pub uptime: u64,
    pub time: u64,
    pub version: &'static str,
    pub threads: usize,
    pub max_connections: usize,
    pub limit_maxbytes: u64,
    pub rusage_user: f64,
    pub rusage_system: f64,
    /// Namespaces in use (`tenancy::Namespaces::in_use`), and reclaimed.
    pub namespaces: usize,
    pub namespaces_reclaimed: u64,
}

/// The `stats settings` lines a tenant sees in secure mode: none of the
/// server's configuration, as in plain `stats`.
pub const TENANT_SETTINGS: &[&str] = &[
    "evictions",
    "cas_enabled",
    "binding_protocol",
    "auth_enabled_ascii",
    "flush_enabled",
];

/// `stats` lines, memcached's names and order (those we keep).
pub fn general(facts: &ServerFacts, report: &Report, scope: Scope) -> Vec<(&'static str, String)> {
    let mut out: Vec<(&'static str, String)> = vec![
        ("pid", facts.pid.to_string()),
        ("uptime", facts.uptime.to_string()),
        ("time", facts.time.to_string()),
        ("version", facts.version.to_string()),
        ("pointer_size", (usize::BITS).to_string()),
    ];
    if scope == Scope::Server {
        out.push(("rusage_user", format!("{:.6}", facts.rusage_user)));
        out.push(("rusage_system", format!("{:.6}", facts.rusage_system)));
        out.push(("max_connections", facts.max_connections.to_string()));
        for (name, value) in report.conns.fields() {
            out.push((name, value.to_string()));
        }
    }
    for (name, value) in report.counters.fields() {
        out.push((name, value.to_string()));
    }
    if scope == Scope::Server {
        out.push(("limit_maxbytes", facts.limit_maxbytes.to_string()));
    }
    if scope == Scope::Server {
        out.push(("threads", facts.threads.to_string()));
    }
    let items = &report.items;
    if scope == Scope::Server {
        out.push(("hash_bytes", items.hash_bytes.to_string()));
    }
    out.push(("bytes", items.bytes.to_string()));
    out.push(("curr_items", items.curr_items.to_string()));
    out.push(("total_items", items.total_items.to_string()));
    out.push(("evictions", items.evictions.to_string()));
    if scope == Scope::Server {
        out.push(("expired_unfetched", items.expired_unfetched.to_string()));
        out.push(("evicted_unfetched", items.evicted_unfetched.to_string()));
        out.push(("reclaimed", items.reclaimed.to_string()));
        out.push(("store_overhead_bytes", items.overhead_bytes.to_string()));
        out.push(("store_invariant_skips", items.invariant_skips.to_string()));
        out.push(("store_fair_fallbacks", items.fair_fallbacks.to_string()));
        out.push(("store_index_refusals", items.index_refusals.to_string()));
        out.push(("curr_namespaces", facts.namespaces.to_string()));
        out.push((
            "namespaces_reclaimed",
            facts.namespaces_reclaimed.to_string(),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_scope_hides_server_figures() {
        let facts = ServerFacts {
            pid: 1,
            uptime: 2,
            time: 3,
            version: "v",
            threads: 2,
            max_connections: 10,
            limit_maxbytes: 100,
            rusage_user: 0.0,
            rusage_system: 0.0,
            namespaces: 3,
            namespaces_reclaimed: 4,
        };
        let report = Report::default();
        let tenant: Vec<_> = general(&facts, &report, Scope::Tenant)
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        for hidden in [
            "curr_connections",
            "limit_maxbytes",
            "reclaimed",
            "auth_errors",
            "threads",
            "curr_namespaces",
        ] {
            assert!(!tenant.contains(&hidden), "{hidden}");
        }
        for shown in [
            "pid",
            "uptime",
            "version",
            "curr_items",
            "cmd_get",
            "get_hits",
        ] {
            assert!(tenant.contains(&shown), "{shown}");
        }
        let server: Vec<_> = general(&facts, &report, Scope::Server)
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert!(server.contains(&"curr_connections"));
        assert!(server.contains(&"auth_cmds"));
        assert!(server.contains(&"store_invariant_skips"));
        assert!(!tenant.contains(&"store_invariant_skips"));
        assert!(server.contains(&"store_fair_fallbacks"));
        assert!(!tenant.contains(&"store_fair_fallbacks"));
        assert!(server.contains(&"store_index_refusals"));
        assert!(!tenant.contains(&"store_index_refusals"));
        assert!(server.contains(&"threads"));
        assert!(server.contains(&"curr_namespaces"));
    }
}
