//! What a scrape of `/metrics` shows: the cores' latest snapshots summed
//! into server-wide, per-core and per-project series, in the Prometheus
//! text format.
//!
//! Owns the metric names, their help and labels, and the bound on label
//! cardinality: the `top` largest projects by bytes get series of their
//! own and the rest are summed into `project="_other"`. The format itself
//! (escaping, `# HELP`/`# TYPE` lines, `_total` suffixes) is the
//! `prometheus-client` crate's. Pure: no I/O, no lock.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::snapshot::{commands_by_kind, CoreSnapshot, Figures, Quota, COMMAND_KINDS};
use crate::stats::Report;

/// The label value that sums every project past the top `N`. A project
/// that is itself called `_other` is always summed there too, so no two
/// series ever share a label set.
pub const OTHER: &str = "_other";

/// What the server is, beside its counters.
#[derive(Clone, Debug)]
pub struct Facts {
    pub version: &'static str,
    pub memory_limit_bytes: u64,
    /// Projects with series of their own (`--metrics-top-projects`).
    pub top_projects: usize,
    /// Open mode: connections bound to no namespace use the default one.
    pub open_mode: bool,
    /// Shards (`--cores`): each enforces its part of every project's cap
    /// and reserve.
    pub shards: usize,
}

/// One project's line of figures.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Project {
    pub name: String,
    pub figures: Figures,
    /// Connections bound to its caches now.
    pub connections: u64,
    pub quota: Quota,
}

/// Everything one scrape shows.
#[derive(Debug)]
pub struct Exposition {
    facts: Facts,
    total: Report,
    cores: Vec<Arc<CoreSnapshot>>,
    /// The top projects by bytes, then `_other` if any were summed.
    projects: Vec<Project>,
    /// Projects with any figure, those summed into `_other` included.
    projects_seen: usize,
    namespaces: usize,
}

impl Exposition {
    /// Sums the cores' snapshots. `names` is the interner's view
    /// (`tenancy::Namespaces::projects`): each namespace id's project and
    /// its connections; a figure of an id with no name now (reclaimed
    /// since the snapshot) is left out. `open_now` is the count of client
    /// connections open now, read live like `names`.
    pub fn gather(
        facts: Facts,
        cores: Vec<Arc<CoreSnapshot>>,
        names: &[Option<(String, u32)>],
        open_now: u64,
    ) -> Exposition {
        let mut total = Report::default();
        for c in &cores {
            total.add(&c.report);
        }
        total.conns.curr_connections = open_now;
        let mut projects: HashMap<String, Project> = HashMap::new();
        fn entry<'a>(projects: &'a mut HashMap<String, Project>, name: &str) -> &'a mut Project {
            projects.entry(name.to_owned()).or_insert_with(|| Project {
                name: name.to_owned(),
                ..Project::default()
            })
        }
        for c in &cores {
            for (ns, figures) in &c.namespaces {
                if let Some(Some((name, _))) = names.get(*ns as usize) {
                    entry(&mut projects, name).figures.add(figures);
                }
            }
            for (name, quota) in &c.quotas {
                entry(&mut projects, name).quota.add(quota);
            }
        }
        let mut bound = 0u64;
        for (name, connections) in names.iter().flatten() {
            bound += u64::from(*connections);
            if *connections > 0 {
                entry(&mut projects, name).connections += u64::from(*connections);
            }
        }
        if facts.open_mode {
            // In open mode a connection that named no cache uses the default one.
            let unbound = open_now.saturating_sub(bound);
            if unbound > 0 {
                entry(&mut projects, crate::tenancy::DEFAULT_NAME).connections += unbound;
            }
        }
        for p in projects.values_mut() {
            p.quota = p.quota.across(facts.shards);
        }
        let mut ranked: Vec<Project> = projects
            .into_values()
            .filter(|p| !p.figures.is_zero() || p.connections > 0 || p.quota.is_set())
            .collect();
        let projects_seen = ranked.len();
        ranked.sort_by(|a, b| {
            b.figures
                .bytes
                .cmp(&a.figures.bytes)
                .then_with(|| a.name.cmp(&b.name))
        });
        let mut shown = Vec::new();
        let mut other: Option<Project> = None;
        for p in ranked {
            if shown.len() < facts.top_projects && p.name != OTHER {
                shown.push(p);
                continue;
            }
            let o = other.get_or_insert_with(|| Project {
                name: OTHER.to_owned(),
                ..Project::default()
            });
            o.figures.add(&p.figures);
            o.connections += p.connections;
        }
        shown.extend(other);
        Exposition {
            facts,
            total,
            cores,
            projects: shown,
            projects_seen,
            namespaces: names.iter().skip(1).flatten().count(),
        }
    }

    /// The projects shown, `_other` last if present.
    pub fn projects(&self) -> &[Project] {
        &self.projects
    }

    /// The Prometheus text format (version 0.0.4).
    pub fn render(self) -> Result<String, fmt::Error> {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self));
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &registry)?;
        Ok(text)
    }
}

/// A family of counters or gauges, written only if it has a sample.
fn family<L: EncodeLabelSet, M: EncodeMetric>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    samples: impl IntoIterator<Item = (L, M)>,
) -> fmt::Result {
    let mut samples = samples.into_iter().peekable();
    if samples.peek().is_none() {
        return Ok(());
    }
    let mut metric = enc.encode_descriptor(name, help, None, kind)?;
    for (labels, value) in samples {
        value.encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

fn counter(enc: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> fmt::Result {
    let metric = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    ConstCounter::new(value).encode(metric)
}

fn gauge(enc: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> fmt::Result {
    let metric = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(value).encode(metric)
}

/// A project's label set.
fn project(p: &Project) -> [(&'static str, &str); 1] {
    [("project", p.name.as_str())]
}

impl Collector for Exposition {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let enc = &mut enc;
        let (c, items, conns) = (&self.total.counters, &self.total.items, &self.total.conns);
        family(
            enc,
            "ferrocache_build_info",
            "The running version; always 1.",
            MetricType::Gauge,
            [([("version", self.facts.version)], ConstGauge::new(1u64))],
        )?;

        // Server-wide.
        family(
            enc,
            "ferrocache_commands",
            "Commands run, by kind (set: every storage command; a gat counts as get and touch).",
            MetricType::Counter,
            COMMAND_KINDS
                .iter()
                .zip(commands_by_kind(c))
                .map(|(kind, n)| ([("command", *kind)], ConstCounter::new(n))),
        )?;
        counter(
            enc,
            "ferrocache_get_hits",
            "Keys retrieved that were found.",
            c.get_hits,
        )?;
        counter(
            enc,
            "ferrocache_get_misses",
            "Keys retrieved that were not found.",
            c.get_misses,
        )?;
        counter(
            enc,
            "ferrocache_get_expired",
            "Keys retrieved that were found expired (also counted as misses).",
            c.get_expired,
        )?;
        counter(
            enc,
            "ferrocache_evictions",
            "Items evicted to make room.",
            items.evictions,
        )?;
        counter(
            enc,
            "ferrocache_expirations",
            "Expired items reclaimed, on access or by the sweep.",
            items.reclaimed,
        )?;
        gauge(
            enc,
            "ferrocache_items",
            "Items stored now.",
            items.curr_items,
        )?;
        gauge(
            enc,
            "ferrocache_items_bytes",
            "Bytes of the items stored now.",
            items.bytes,
        )?;
        gauge(
            enc,
            "ferrocache_memory_limit_bytes",
            "Memory for items (--memory-mb).",
            self.facts.memory_limit_bytes,
        )?;
        gauge(
            enc,
            "ferrocache_connections_open",
            "Client connections open now.",
            conns.curr_connections,
        )?;
        counter(
            enc,
            "ferrocache_connections_accepted",
            "Client connections accepted.",
            conns.total_connections,
        )?;
        counter(
            enc,
            "ferrocache_connections_rejected",
            "Client connections refused past --max-connections.",
            conns.rejected_connections,
        )?;
        family(
            enc,
            "ferrocache_auth",
            "Handshakes (set oauth), by result: success when the credentials were accepted.",
            MetricType::Counter,
            [
                (
                    [("result", "success")],
                    ConstCounter::new(conns.auth_cmds.saturating_sub(conns.auth_errors)),
                ),
                (
                    [("result", "failure")],
                    ConstCounter::new(conns.auth_errors),
                ),
            ],
        )?;
        counter(
            enc,
            "ferrocache_forwarded_requests",
            "Keyed requests sent to the core that owns the key.",
            conns.forward_requests,
        )?;
        counter(
            enc,
            "ferrocache_owner_written_replies",
            "Lent runs of forwarded requests (a lone request, or a multi-get's forwarded keys) whose replies the owning core wrote straight to the client.",
            conns.owner_written_replies,
        )?;
        counter(
            enc,
            "ferrocache_idle_polls",
            "Times an idle core polled before sleeping (--spin-us, opened by its busy share).",
            conns.idle_polls,
        )?;
        counter(
            enc,
            "ferrocache_idle_poll_hits",
            "Idle polls that found work before their limit, so the core did not sleep.",
            conns.idle_poll_hits,
        )?;
        counter(
            enc,
            "ferrocache_idle_sleeps",
            "Times an idle core slept in its own socket ring.",
            conns.idle_sleeps,
        )?;
        counter(
            enc,
            "ferrocache_idle_parks",
            "Times an idle core parked through glommio (a membarrier that interrupts every CPU \
             running the server): only after a second with nothing, not even its own timers.",
            conns.idle_parks,
        )?;
        counter(
            enc,
            "ferrocache_forwarded_batches",
            "Batches of forwarded requests sent between cores.",
            conns.forward_batches,
        )?;
        gauge(
            enc,
            "ferrocache_namespaces",
            "(project, cache) namespaces in use, the default one aside.",
            self.namespaces as u64,
        )?;

        // Per core.
        let names: Vec<String> = self.cores.iter().map(|c| c.core.to_string()).collect();
        let per_core = |value: fn(&CoreSnapshot) -> u64| {
            self.cores
                .iter()
                .zip(&names)
                .map(move |(c, name)| ([("core", name.as_str())], ConstCounter::new(value(c))))
        };
        family(
            enc,
            "ferrocache_core_busy_seconds",
            "CPU time of each core's thread (user and system; an idle core's spin included).",
            MetricType::Counter,
            self.cores
                .iter()
                .zip(&names)
                .map(|(c, name)| ([("core", name.as_str())], ConstCounter::new(c.busy_seconds))),
        )?;
        family(
            enc,
            "ferrocache_core_commands",
            "Commands each core's shard ran (ops per core).",
            MetricType::Counter,
            per_core(|c| commands_by_kind(&c.report.counters).iter().sum()),
        )?;
        family(
            enc,
            "ferrocache_core_connections_open",
            "Client connections each core serves now.",
            MetricType::Gauge,
            self.cores.iter().zip(&names).map(|(c, name)| {
                (
                    [("core", name.as_str())],
                    ConstGauge::new(c.report.conns.curr_connections),
                )
            }),
        )?;

        // Per project.
        gauge(
            enc,
            "ferrocache_projects",
            "Projects with items, counts or connections, those summed into project=\"_other\" included.",
            self.projects_seen as u64,
        )?;
        let projects = &self.projects;
        let gauges = |value: fn(&Project) -> u64| {
            projects
                .iter()
                .map(move |p| (project(p), ConstGauge::new(value(p))))
        };
        let counters = |value: fn(&Project) -> u64| {
            projects
                .iter()
                .map(move |p| (project(p), ConstCounter::new(value(p))))
        };
        let (g, k) = (MetricType::Gauge, MetricType::Counter);
        let help = "of each project (the largest by bytes; the rest summed as project=\"_other\")";
        family(
            enc,
            "ferrocache_project_items",
            &format!("Items stored now, {help}."),
            g,
            gauges(|p| p.figures.items),
        )?;
        family(
            enc,
            "ferrocache_project_items_bytes",
            &format!("Bytes of items stored now, {help}."),
            g,
            gauges(|p| p.figures.bytes),
        )?;
        family(
            enc,
            "ferrocache_project_get_hits",
            &format!("Keys retrieved that were found, {help}."),
            k,
            counters(|p| p.figures.hits),
        )?;
        family(
            enc,
            "ferrocache_project_get_misses",
            &format!("Keys retrieved that were not found, {help}."),
            k,
            counters(|p| p.figures.misses),
        )?;
        family(
            enc,
            "ferrocache_project_evictions",
            &format!("Items evicted, {help}."),
            k,
            counters(|p| p.figures.evictions),
        )?;
        family(
            enc,
            "ferrocache_project_commands",
            &format!("Commands run, {help}."),
            k,
            counters(|p| p.figures.commands),
        )?;
        family(
            enc,
            "ferrocache_project_connections",
            &format!("Connections bound to its caches now, {help}."),
            g,
            gauges(|p| p.connections),
        )?;
        let quota = |value: fn(&Quota) -> Option<u64>| {
            projects
                .iter()
                .filter(|p| p.name != OTHER)
                .filter_map(move |p| value(&p.quota).map(|v| (project(p), ConstGauge::new(v))))
        };
        family(
            enc,
            "ferrocache_project_quota_cap_bytes",
            "A project's memory cap (--quotas memory=), where it has one.",
            g,
            quota(|q| q.cap),
        )?;
        family(
            enc,
            "ferrocache_project_quota_reserve_bytes",
            "Memory a project keeps under pressure (--quotas reserve=), where it has one.",
            g,
            quota(|q| q.reserve),
        )?;
        family(
            enc,
            "ferrocache_project_fair_share_bytes",
            "A project's fair share of memory now.",
            g,
            quota(|q| q.fair_share),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NsId;

    fn facts(top: usize, open_mode: bool) -> Facts {
        Facts {
            version: "v",
            memory_limit_bytes: 1 << 20,
            top_projects: top,
            open_mode,
            shards: 2,
        }
    }

    fn bytes(n: u64) -> Figures {
        Figures {
            items: 1,
            bytes: n,
            hits: 2,
            misses: 3,
            evictions: 4,
            commands: 5,
        }
    }

    fn core(index: usize, namespaces: Vec<(NsId, Figures)>) -> Arc<CoreSnapshot> {
        Arc::new(CoreSnapshot {
            core: index,
            namespaces,
            ..CoreSnapshot::default()
        })
    }

    fn named(list: &[(&str, u32)]) -> Vec<Option<(String, u32)>> {
        list.iter()
            .map(|&(name, conns)| (!name.is_empty()).then(|| (name.to_owned(), conns)))
            .collect()
    }

    #[test]
    fn the_largest_projects_get_series_and_the_rest_are_summed() {
        // ids: 0 default, 1 a/x, 2 b, 3 a/y, 4 c, 5 "_other" (a real project), 6 free.
        let names = named(&[
            ("default", 0),
            ("a", 1),
            ("b", 2),
            ("a", 0),
            ("c", 0),
            (OTHER, 0),
            ("", 0),
        ]);
        let cores = vec![
            core(0, vec![(1, bytes(100)), (2, bytes(150)), (4, bytes(10))]),
            core(1, vec![(3, bytes(100)), (5, bytes(1000)), (6, bytes(7))]),
        ];
        let e = Exposition::gather(facts(2, false), cores, &names, 3);
        let shown: Vec<(&str, u64, u64)> = e
            .projects()
            .iter()
            .map(|p| (p.name.as_str(), p.figures.bytes, p.connections))
            .collect();
        // a: two caches on two cores (200 bytes); b: 150; c and the real
        // "_other" summed; the free id's figure dropped.
        assert_eq!(shown, [("a", 200, 1), ("b", 150, 2), (OTHER, 1010, 0)]);
        let a = &e.projects()[0].figures;
        assert_eq!(
            (a.items, a.hits, a.misses, a.evictions, a.commands),
            (2, 4, 6, 8, 10)
        );
        assert_eq!(e.projects_seen, 4);
        assert_eq!(e.namespaces, 5);
    }

    #[test]
    fn no_other_series_when_every_project_fits() {
        let names = named(&[("default", 0), ("a", 0)]);
        let e = Exposition::gather(
            facts(100, false),
            vec![core(0, vec![(1, bytes(5))])],
            &names,
            0,
        );
        let shown: Vec<&str> = e.projects().iter().map(|p| p.name.as_str()).collect();
        assert_eq!(shown, ["a"]);
        // With no room at all, everything is summed.
        let e = Exposition::gather(
            facts(0, false),
            vec![core(0, vec![(1, bytes(5))])],
            &names,
            0,
        );
        assert_eq!(e.projects()[0].name, OTHER);
    }

    #[test]
    fn open_mode_counts_connections_without_a_cache_as_the_default_projects() {
        let names = named(&[("default", 1), ("a", 2)]);
        let e = Exposition::gather(facts(10, true), vec![], &names, 5);
        let conns: Vec<(&str, u64)> = e
            .projects()
            .iter()
            .map(|p| (p.name.as_str(), p.connections))
            .collect();
        assert_eq!(conns, [("a", 2), ("default", 3)]);
        // Secure mode: a connection that has not authenticated is no project's.
        let e = Exposition::gather(facts(10, false), vec![], &names, 5);
        let conns: Vec<(&str, u64)> = e
            .projects()
            .iter()
            .map(|p| (p.name.as_str(), p.connections))
            .collect();
        assert_eq!(conns, [("a", 2), ("default", 1)]);
    }

    #[test]
    fn quota_series_only_where_a_quota_is_set() {
        let names = named(&[("default", 0), ("a", 0), ("b", 0)]);
        let quota = Quota {
            cap: Some(1000),
            reserve: None,
            fair_share: Some(300),
        };
        let cores = vec![
            Arc::new(CoreSnapshot {
                core: 0,
                namespaces: vec![(1, bytes(50)), (2, bytes(40))],
                quotas: vec![("a".into(), quota)],
                ..CoreSnapshot::default()
            }),
            Arc::new(CoreSnapshot {
                core: 1,
                quotas: vec![("a".into(), quota)],
                ..CoreSnapshot::default()
            }),
        ];
        let text = Exposition::gather(facts(10, false), cores.clone(), &names, 0)
            .render()
            .unwrap();
        assert!(
            text.contains("ferrocache_project_quota_cap_bytes{project=\"a\"} 2000\n"),
            "{text}"
        );
        assert!(text.contains("ferrocache_project_fair_share_bytes{project=\"a\"} 600\n"));
        assert!(!text.contains("ferrocache_project_quota_reserve_bytes"));
        assert!(!text.contains("ferrocache_project_quota_cap_bytes{project=\"b\"}"));
        // A project that only one shard of the two reports is capped on
        // both all the same; its fair share is the one shard's.
        let text = Exposition::gather(facts(10, false), cores[1..].to_vec(), &names, 0)
            .render()
            .unwrap();
        assert!(
            text.contains("ferrocache_project_quota_cap_bytes{project=\"a\"} 2000\n"),
            "{text}"
        );
        assert!(text.contains("ferrocache_project_fair_share_bytes{project=\"a\"} 300\n"));
    }

    #[test]
    fn the_text_format_names_every_series_and_escapes_project_names() {
        let names = named(&[("default", 0), ("we \"quote\" \\ names", 1)]);
        let mut report = Report::default();
        report.counters.cmd_get = 7;
        report.counters.get_hits = 5;
        report.conns.auth_cmds = 3;
        report.conns.auth_errors = 1;
        report.conns.forward_requests = 9;
        let cores = vec![Arc::new(CoreSnapshot {
            core: 0,
            report,
            busy_seconds: 1.5,
            namespaces: vec![(1, bytes(64))],
            quotas: Vec::new(),
        })];
        let text = Exposition::gather(facts(10, false), cores, &names, 1)
            .render()
            .unwrap();
        for line in [
            "# TYPE ferrocache_commands_total counter\n",
            "ferrocache_commands_total{command=\"get\"} 7\n",
            "ferrocache_get_hits_total 5\n",
            "ferrocache_auth_total{result=\"success\"} 2\n",
            "ferrocache_auth_total{result=\"failure\"} 1\n",
            "ferrocache_forwarded_requests_total 9\n",
            "ferrocache_connections_open 1\n",
            "ferrocache_core_busy_seconds_total{core=\"0\"} 1.5\n",
            "ferrocache_core_commands_total{core=\"0\"} 7\n",
            "# TYPE ferrocache_project_items_bytes gauge\n",
            "ferrocache_project_items_bytes{project=\"we \\\"quote\\\" \\\\ names\"} 64\n",
            "ferrocache_project_connections{project=\"we \\\"quote\\\" \\\\ names\"} 1\n",
        ] {
            assert!(text.contains(line), "no {line:?} in\n{text}");
        }
    }
}
