//! One core's figures for the operator's metrics, taken on that core.
//!
//! Owns what a core publishes ([`CoreSnapshot`]): its shard's totals and
//! per-namespace figures, its connection counters and its thread's CPU
//! time, copied once a second by a task of the core, off the request path.
//! The request path only bumps the core's own plain counters. Never touches
//! a socket, never sees another core, never copies a key or a value.

use crate::shard::Shard;
use crate::stats::{ConnCounters, Counters, Report};
use crate::store::NsId;

/// The kinds `ferrocache_commands_total` is labelled with, in the order of
/// [`commands_by_kind`].
pub const COMMAND_KINDS: [&str; 7] = ["get", "set", "delete", "incr", "decr", "touch", "flush"];

/// Commands of each kind in [`COMMAND_KINDS`], from memcached's counters:
/// `set` counts every storage command (cas, add, append... as memcached's
/// `cmd_set`), and a gat counts as a get and a touch (as in its `stats`).
pub fn commands_by_kind(c: &Counters) -> [u64; 7] {
    [
        c.cmd_get,
        c.cmd_set,
        c.delete_hits + c.delete_misses,
        c.incr_hits + c.incr_misses,
        c.decr_hits + c.decr_misses,
        c.cmd_touch,
        c.cmd_flush,
    ]
}

/// What the metrics show of one namespace, or of one project (the sum of
/// its namespaces, on every core).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Figures {
    pub items: u64,
    pub bytes: u64,
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
    pub commands: u64,
}

impl Figures {
    pub fn add(&mut self, o: &Figures) {
        self.items += o.items;
        self.bytes += o.bytes;
        self.hits += o.hits;
        self.misses += o.misses;
        self.evictions += o.evictions;
        self.commands += o.commands;
    }

    pub fn is_zero(&self) -> bool {
        *self == Figures::default()
    }
}

/// A project's quota figures in bytes, where it has them: its cap, its
/// reserve and its fair share now. Each shard reports its part, and only
/// for the projects it holds something of. The fair shares differ by shard
/// and are summed. The cap and reserve are divided evenly, and every shard
/// enforces its part whether it holds anything of the project or not, so
/// one part stands for all ([`Quota::across`]). A figure no shard gives
/// stays `None` and has no series.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Quota {
    pub cap: Option<u64>,
    pub reserve: Option<u64>,
    pub fair_share: Option<u64>,
}

impl Quota {
    /// Adds one shard's part. Of the cap and the reserve it keeps the
    /// largest part: the parts are equal but for a reload that one shard
    /// has not applied yet (within a second).
    pub fn add(&mut self, o: &Quota) {
        fn sum(a: &mut Option<u64>, b: Option<u64>) {
            if let Some(b) = b {
                *a = Some(a.unwrap_or(0).saturating_add(b));
            }
        }
        fn largest(a: &mut Option<u64>, b: Option<u64>) {
            if let Some(b) = b {
                *a = Some(a.unwrap_or(0).max(b));
            }
        }
        largest(&mut self.cap, o.cap);
        largest(&mut self.reserve, o.reserve);
        sum(&mut self.fair_share, o.fair_share);
    }

    /// The figures of the whole server, from the parts [`Quota::add`]ed, on
    /// `shards` shards: the cap and reserve that all of them enforce
    /// together, however few of them hold the project's items.
    pub fn across(self, shards: usize) -> Quota {
        let all = |part: Option<u64>| part.map(|p| p.saturating_mul(shards as u64));
        Quota {
            cap: all(self.cap),
            reserve: all(self.reserve),
            fair_share: self.fair_share,
        }
    }

    pub fn is_set(&self) -> bool {
        *self != Quota::default()
    }
}

/// One core's figures at one moment.
#[derive(Clone, Debug, Default)]
pub struct CoreSnapshot {
    pub core: usize,
    /// The shard's totals and the core's connection counters (as `stats`).
    pub report: Report,
    /// CPU time of the core's thread (user and system, spinning included).
    pub busy_seconds: f64,
    /// Namespaces with any figure on this shard.
    pub namespaces: Vec<(NsId, Figures)>,
    /// This shard's part of each project's quota figures, by project name.
    pub quotas: Vec<(String, Quota)>,
}

impl CoreSnapshot {
    /// Takes core `core`'s figures; call it on that core's thread (its CPU
    /// time is the calling thread's).
    pub fn take(core: usize, shard: &Shard, conns: &ConnCounters) -> CoreSnapshot {
        let mut report = shard.report(None);
        report.conns = *conns;
        let namespaces = shard
            .namespaces()
            .map(|(ns, c, items)| {
                let figures = Figures {
                    items: items.curr_items,
                    bytes: items.bytes,
                    hits: c.get_hits,
                    misses: c.get_misses,
                    evictions: items.evictions,
                    commands: commands_by_kind(c).iter().sum(),
                };
                (ns, figures)
            })
            .filter(|(_, f)| !f.is_zero())
            .collect();
        CoreSnapshot {
            core,
            report,
            busy_seconds: crate::clock::thread_cpu_time().map_or(0.0, |t| t.as_secs_f64()),
            namespaces,
            quotas: shard
                .project_figures()
                .into_iter()
                .filter_map(|f| {
                    let quota = Quota {
                        cap: f.cap,
                        reserve: (f.reserve > 0).then_some(f.reserve),
                        fair_share: Some(f.fair_share),
                    };
                    Some((f.name?, quota))
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use crate::keyspace::KeyHasher;
    use crate::protocol::{GetKind, Keyed, Storage, StoreKind};

    fn run(shard: &mut Shard, ns: NsId, request: &Keyed) {
        let hash = KeyHasher::default().hash(ns, request.key());
        shard.execute(ns, hash, request, &mut Vec::new());
    }

    #[test]
    fn a_snapshot_counts_each_namespace_apart() {
        let mut shard = Shard::new(16 << 20, 1 << 20, Clock::new(), KeyHasher::default());
        let set = |key: &'static [u8]| {
            Keyed::Store(Storage {
                kind: StoreKind::Set,
                key,
                flags: 0,
                exptime: 0,
                cas: 0,
                data: b"12345",
                noreply: false,
            })
        };
        let get = |key: &'static [u8]| Keyed::Get {
            kind: GetKind::Get,
            key,
        };
        run(&mut shard, 3, &set(b"a"));
        run(&mut shard, 3, &set(b"b"));
        run(&mut shard, 3, &get(b"a"));
        run(&mut shard, 3, &get(b"zz"));
        run(&mut shard, 5, &get(b"a"));
        let conns = ConnCounters {
            curr_connections: 2,
            ..Default::default()
        };
        let snapshot = CoreSnapshot::take(1, &shard, &conns);
        assert_eq!(snapshot.core, 1);
        assert_eq!(snapshot.report.conns.curr_connections, 2);
        assert_eq!(snapshot.report.items.curr_items, 2);
        assert!(snapshot.busy_seconds > 0.0);
        let ns3 = snapshot
            .namespaces
            .iter()
            .find(|(ns, _)| *ns == 3)
            .unwrap()
            .1;
        assert_eq!(
            (ns3.items, ns3.hits, ns3.misses, ns3.commands),
            (2, 1, 1, 4)
        );
        assert!(ns3.bytes > 0);
        let ns5 = snapshot
            .namespaces
            .iter()
            .find(|(ns, _)| *ns == 5)
            .unwrap()
            .1;
        assert_eq!((ns5.items, ns5.misses, ns5.commands), (0, 1, 1));
        // Namespaces with nothing to show are left out.
        assert_eq!(snapshot.namespaces.len(), 2);
    }

    #[test]
    fn quota_parts_add_up_and_stay_unset_where_no_shard_gives_them() {
        let mut q = Quota::default();
        assert!(!q.is_set());
        q.add(&Quota {
            cap: Some(10),
            reserve: None,
            fair_share: Some(4),
        });
        q.add(&Quota {
            cap: Some(10),
            reserve: None,
            fair_share: Some(6),
        });
        // Two shards reported, of four: the cap is every shard's part.
        assert_eq!(
            q.across(4),
            Quota {
                cap: Some(40),
                reserve: None,
                fair_share: Some(10)
            }
        );
        // The largest cap there is, on 2 shards: exact, never wrapped.
        let mut huge = Quota::default();
        let cap = (u64::MAX >> 10) << 10;
        huge.add(&Quota {
            cap: Some(cap / 2),
            reserve: Some(cap / 2),
            fair_share: Some(u64::MAX),
        });
        huge.add(&Quota {
            fair_share: Some(u64::MAX),
            ..huge
        });
        assert_eq!(
            huge.across(2),
            Quota {
                cap: Some(cap),
                reserve: Some(cap),
                fair_share: Some(u64::MAX)
            }
        );
    }
}
