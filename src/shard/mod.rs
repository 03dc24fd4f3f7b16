//! A shard: one core's slice of the keyspace, executing requests.
//!
//! Owns the meaning of each command: it runs a single-key [`Request`] against
//! its [`Store`], counts it for the request's namespace, and composes the
//! reply into an output buffer. It never touches a socket and never sees
//! another shard; transport has already routed the key here.
//!
//! The requests that name no key (`flush_all`, `stats`, `version`, …) mean
//! what [`admin`] says, composed from every shard's report.
//!
//! Retrieval replies are composed without the closing `END`: a multi-key get
//! is split per key across shards, and transport adds the one `END`.

use crate::clock::Clock;
use crate::protocol::{
    compose, parse, ArithKind, ErrorReply, GetKind, Keyed, Limits, Parsed, Request, Response,
    Storage, StoreKind, MAX_KEY_LEN,
};
use crate::stats::{tenant_items, Counters, Report};
use crate::store::{
    ArithOutcome, Key, KeyHasher, Lookup, NsId, NsStats, ProjectId, ProjectStats, Quota, SetMode,
    SetOutcome, Store,
};
use crate::tenancy::{NamespaceHost, Namespaces};

/// Requests whose keys [`Shard::prefetch`] loads as one group.
pub const PREFETCH_AHEAD: usize = 16;

pub mod admin;
mod meta;

pub struct Shard {
    store: Store,
    clock: Clock,
    /// Per-namespace counters, indexed by `NsId` (ids are dense).
    counters: Vec<Counters>,
    /// Per-namespace deadline of a delayed `flush_all` (0: none pending).
    pending_flush: Vec<u32>,
    /// The quotas' generation the store's quotas were last read at.
    quota_generation: u64,
}

/// One project's figures on one shard (see [`Shard::project_figures`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProjectFigures {
    pub project: ProjectId,
    /// Its name (None if it went away since).
    pub name: Option<String>,
    /// Items and bytes it holds on this shard (bytes as `stats` counts them).
    pub items: u64,
    pub bytes: u64,
    /// Items of it evicted on this shard since its id was given to it.
    pub evictions: u64,
    /// Its quota on this shard: cap (None: no cap) and reserve, in bytes,
    /// each the quotas file's value divided by the number of shards, and
    /// its weight.
    pub cap: Option<u64>,
    pub reserve: u64,
    pub weight: u32,
    /// Its fair share of this shard's memory now, in bytes: what weighted
    /// max-min fairness gives it if every project holding items wanted more.
    pub fair_share: u64,
}

impl Shard {
    /// `keys` is the process's key hash: every hash this shard is given
    /// must come from it.
    pub fn new(memory_bytes: usize, max_item_size: usize, clock: Clock, keys: KeyHasher) -> Shard {
        let mut store = Store::new(memory_bytes, max_item_size, keys);
        // Counted against the memory limit with the store's own tables.
        store.set_namespace_cost(std::mem::size_of::<Counters>() + std::mem::size_of::<u32>());
        Shard {
            store,
            clock,
            counters: Vec::new(),
            pending_flush: Vec::new(),
            quota_generation: 0,
        }
    }

    /// Tells the store which project `ns` belongs to, the first time this
    /// shard meets it (the interner published it before the namespace's
    /// first request; reading it takes no lock).
    #[cold]
    fn bind(&mut self, ns: NsId) {
        let namespaces = Namespaces::global();
        let project = namespaces.project_of(ns);
        self.store
            .bind_ns(ns, project, namespaces.quota_of(project));
    }

    /// Reads the quotas again if they changed (a reload).
    fn refresh_quotas(&mut self) {
        let namespaces = Namespaces::global();
        let generation = namespaces.quota_generation();
        if generation == self.quota_generation {
            return;
        }
        self.quota_generation = generation;
        let projects: Vec<ProjectId> = self
            .store
            .project_figures()
            .into_iter()
            .map(|(p, _, _)| p)
            .collect();
        for p in projects {
            self.store.set_quota(p, namespaces.quota_of(p));
        }
    }

    /// Every project with items on this shard (or a namespace bound here),
    /// with its figures: for the operator's metrics. Off the request path:
    /// it walks every project, computes the fair shares and takes the
    /// interner's lock for the names.
    pub fn project_figures(&self) -> Vec<ProjectFigures> {
        let namespaces = Namespaces::global();
        self.store
            .project_figures()
            .into_iter()
            .map(|(project, s, fair_share): (ProjectId, ProjectStats, u64)| {
                let Quota {
                    cap,
                    reserve,
                    weight,
                } = s.quota;
                ProjectFigures {
                    project,
                    name: namespaces.project_name(project),
                    items: s.items,
                    bytes: s.bytes,
                    evictions: s.evictions,
                    cap: (cap != u64::MAX).then_some(cap),
                    reserve,
                    weight,
                    fair_share,
                }
            })
            .collect()
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The key hash this shard's hashes come from.
    pub fn keys(&self) -> KeyHasher {
        self.store.keys()
    }

    fn counters(&mut self, ns: NsId) -> &mut Counters {
        let i = ns as usize;
        if i >= self.counters.len() {
            self.counters.resize(i + 1, Counters::default());
        }
        &mut self.counters[i]
    }

    /// The one prefetch pipeline, for a connection's own requests and for
    /// forwarded batches: loads the index buckets of up to
    /// [`PREFETCH_AHEAD`] keys, then their items, so the group's cache
    /// misses overlap instead of coming one per request as they run.
    #[inline]
    pub fn prefetch(&self, hashes: &[u64]) {
        for &hash in hashes {
            self.store.prefetch_bucket(hash);
        }
        for &hash in hashes {
            self.store.prefetch_items(hash);
        }
    }

    /// Runs a forwarded request that came as the client's bytes (parsed
    /// once already, by the connection that forwarded it).
    pub fn execute_wire(
        &mut self,
        ns: NsId,
        hash: u64,
        wire: &[u8],
        limits: &Limits,
        out: &mut Vec<u8>,
    ) {
        match parse(wire, limits) {
            Parsed::Request {
                request: Request::Keyed(keyed),
                ..
            } => self.execute(ns, hash, &keyed, out),
            other => {
                // The sender parsed these bytes already: a bug, not input.
                debug_assert!(false, "unparseable forwarded request: {other:?}");
                tracing::error!(?other, "unparseable forwarded request");
                out.extend_from_slice(ErrorReply::Error.line());
            }
        }
    }

    /// Runs one single-key request and appends its reply to `out` unless
    /// the client said noreply.
    pub fn execute(&mut self, ns: NsId, hash: u64, request: &Keyed, out: &mut Vec<u8>) {
        if self.store.ns_project(ns).is_none() {
            self.bind(ns);
        }
        let now = self.clock.now();
        let response = match *request {
            Keyed::Get { kind, key } => return self.get(Key { ns, hash, key }, kind, now, out),
            Keyed::Store(storage) => {
                let key = Key {
                    ns,
                    hash,
                    key: storage.key,
                };
                let response = self.store(key, &storage, now);
                if storage.noreply {
                    return;
                }
                response
            }
            Keyed::StoreTooLarge {
                kind, key, noreply, ..
            } => {
                self.counters(ns).cmd_set += 1;
                self.counters(ns).store_too_large += 1;
                if kind == StoreKind::Set {
                    // As memcached: a failed set must not leave the old value readable.
                    self.store.delete(Key { ns, hash, key }, now);
                }
                if noreply {
                    return;
                }
                Response::Error(ErrorReply::TooLarge)
            }
            Keyed::Delete { key, noreply } => {
                let deleted = self.store.delete(Key { ns, hash, key }, now);
                let c = self.counters(ns);
                if deleted {
                    c.delete_hits += 1;
                } else {
                    c.delete_misses += 1;
                }
                if noreply {
                    return;
                }
                if deleted {
                    Response::Deleted
                } else {
                    Response::NotFound
                }
            }
            Keyed::Arith {
                kind,
                key,
                delta,
                noreply,
            } => {
                let incr = kind == ArithKind::Incr;
                let outcome = self.store.arith(Key { ns, hash, key }, incr, delta, now);
                let c = self.counters(ns);
                let response = match outcome {
                    ArithOutcome::Value(v) => {
                        if incr {
                            c.incr_hits += 1
                        } else {
                            c.decr_hits += 1
                        }
                        Response::Number(v)
                    }
                    ArithOutcome::NotFound => {
                        if incr {
                            c.incr_misses += 1
                        } else {
                            c.decr_misses += 1
                        }
                        Response::NotFound
                    }
                    ArithOutcome::NonNumeric => Response::Error(ErrorReply::NonNumeric),
                };
                if noreply {
                    return;
                }
                response
            }
            Keyed::Touch {
                key,
                exptime,
                noreply,
            } => {
                let exptime = self.clock.expiry(exptime, now);
                let touched = self.store.touch(Key { ns, hash, key }, exptime, now);
                let c = self.counters(ns);
                c.cmd_touch += 1;
                if touched {
                    c.touch_hits += 1;
                } else {
                    c.touch_misses += 1;
                }
                if noreply {
                    return;
                }
                if touched {
                    Response::Touched
                } else {
                    Response::NotFound
                }
            }
            Keyed::Meta(meta) => return self.execute_meta(ns, hash, &meta, out),
            Keyed::MetaTooLarge { .. } => {
                let c = self.counters(ns);
                c.cmd_set += 1;
                c.store_too_large += 1;
                // As memcached: a failed ms must not leave the old value
                // readable (the key's, decoded when it came in base64).
                let mut buf = [0u8; MAX_KEY_LEN];
                let key = request.routing_key(&mut buf);
                self.store.delete(Key { ns, hash, key }, now);
                Response::Error(ErrorReply::TooLarge)
            }
        };
        compose(&response, out);
    }

    fn get(&mut self, key: Key, kind: GetKind, now: u32, out: &mut Vec<u8>) {
        let touch = kind.touch_exptime().map(|t| self.clock.expiry(t, now));
        let lookup = match touch {
            Some(exptime) => self.store.get_and_touch(key, exptime, now),
            None => self.store.get(key, now),
        };
        let (hit, expired) = match lookup {
            Lookup::Hit(item) => {
                compose(
                    &Response::Value {
                        key: key.key,
                        flags: item.flags,
                        cas: kind.with_cas().then(|| item.cas()),
                        data: item.value,
                    },
                    out,
                );
                (true, false)
            }
            Lookup::Expired => (false, true),
            Lookup::Missing => (false, false),
        };
        self.count_retrieval(key.ns, touch.is_some(), hit, expired);
    }

    /// Counts one retrieval for `ns`, classic or meta, as memcached does: a
    /// touching one (`gat`, `mg T`) as a touch hit or miss, a plain one as a
    /// get hit or miss.
    fn count_retrieval(&mut self, ns: NsId, touch: bool, hit: bool, expired: bool) {
        let c = self.counters(ns);
        c.cmd_get += 1;
        c.get_expired += u64::from(expired);
        match (touch, hit) {
            (true, true) => {
                c.cmd_touch += 1;
                c.touch_hits += 1;
            }
            (true, false) => {
                c.cmd_touch += 1;
                c.touch_misses += 1;
            }
            (false, true) => c.get_hits += 1,
            (false, false) => c.get_misses += 1,
        }
    }

    fn store(&mut self, key: Key, storage: &Storage, now: u32) -> Response<'static> {
        let Storage {
            kind,
            flags,
            exptime,
            cas,
            data,
            ..
        } = *storage;
        let mode = match kind {
            StoreKind::Set => SetMode::Set,
            StoreKind::Add => SetMode::Add,
            StoreKind::Replace => SetMode::Replace,
            StoreKind::Append => SetMode::Append,
            StoreKind::Prepend => SetMode::Prepend,
            StoreKind::Cas => SetMode::Cas(cas),
        };
        let exptime = self.clock.expiry(exptime, now);
        let outcome = self.store.set(key, mode, flags, exptime, data, now);
        let c = self.counters(key.ns);
        c.cmd_set += 1;
        if kind == StoreKind::Cas {
            match outcome {
                SetOutcome::Stored => c.cas_hits += 1,
                SetOutcome::Exists => c.cas_badval += 1,
                SetOutcome::NotFound => c.cas_misses += 1,
                _ => {}
            }
        }
        match outcome {
            SetOutcome::Stored => Response::Stored,
            SetOutcome::NotStored => Response::NotStored,
            SetOutcome::Exists => Response::Exists,
            SetOutcome::NotFound => Response::NotFound,
            // memcached cannot allocate the combined item and answers NOT_STORED.
            SetOutcome::TooLarge if matches!(kind, StoreKind::Append | StoreKind::Prepend) => {
                Response::NotStored
            }
            SetOutcome::TooLarge => {
                c.store_too_large += 1;
                Response::Error(ErrorReply::TooLarge)
            }
            SetOutcome::OutOfMemory => {
                c.store_no_memory += 1;
                Response::Error(ErrorReply::OutOfMemoryStoring)
            }
        }
    }

    /// `flush_all` for one namespace: now (`delay` <= 0) or once the delay
    /// has passed (memcached's exptime rules). A later flush replaces a
    /// pending one, as memcached's single `oldest_live` does; a pending flush
    /// is one deadline per namespace, however many clients ask.
    pub fn flush(&mut self, ns: NsId, delay: i64) {
        let i = ns as usize;
        if i >= self.pending_flush.len() {
            self.pending_flush.resize(i + 1, 0);
        }
        if delay <= 0 {
            self.pending_flush[i] = 0;
            self.store.flush_ns(ns);
        } else {
            let now = self.clock.now();
            self.pending_flush[i] = self.clock.expiry(delay, now).max(now + 1);
        }
    }

    /// Counts a `flush_all` (once per request, on the connection's own shard).
    pub fn count_flush(&mut self, ns: NsId) {
        self.counters(ns).cmd_flush += 1;
    }

    /// Runs delayed flushes whose time has come, then reclaims expired
    /// items, at most `budget` of them. Called once a second.
    pub fn tick(&mut self, budget: usize) -> usize {
        self.refresh_quotas();
        let now = self.clock.now();
        for (ns, deadline) in self.pending_flush.iter_mut().enumerate() {
            if *deadline != 0 && *deadline <= now {
                *deadline = 0;
                self.store.flush_ns(ns as NsId);
            }
        }
        self.store.sweep(now, budget)
    }

    /// This shard's figures: one namespace's, or (`None`) the whole shard's.
    pub fn report(&self, ns: Option<NsId>) -> Report {
        match ns {
            Some(ns) => Report {
                counters: self.counters.get(ns as usize).copied().unwrap_or_default(),
                items: tenant_items(self.store.ns_stats(ns)),
                conns: Default::default(),
            },
            None => {
                let mut counters = Counters::default();
                for c in &self.counters {
                    counters.add(c);
                }
                Report {
                    counters,
                    items: self.store.stats(),
                    conns: Default::default(),
                }
            }
        }
    }

    /// `stats reset`: zero one namespace's counters, or all of them.
    pub fn reset_counters(&mut self, ns: Option<NsId>) {
        match ns {
            Some(ns) => *self.counters(ns) = Counters::default(),
            None => self
                .counters
                .iter_mut()
                .for_each(|c| *c = Counters::default()),
        }
    }

    pub fn limit_bytes(&self) -> usize {
        self.store.limit_bytes()
    }

    /// Each namespace this shard has counted a command for (every one that
    /// can hold items here), with its counters and item figures: what the
    /// operator's metrics (`crate::metrics`) sum per project.
    pub fn namespaces(&self) -> impl Iterator<Item = (NsId, &Counters, NsStats)> + '_ {
        self.counters
            .iter()
            .enumerate()
            .map(|(ns, c)| (ns as NsId, c, self.store.ns_stats(ns as NsId)))
    }
}

/// Namespace reclaiming (`tenancy::Namespaces::maintain`) asks each shard.
impl NamespaceHost for Shard {
    fn holds_items(&self, ns: NsId) -> bool {
        self.store.ns_stats(ns).curr_items > 0
    }

    fn retire(&mut self, ns: NsId) {
        self.store.retire_ns(ns);
        if let Some(c) = self.counters.get_mut(ns as usize) {
            *c = Counters::default();
        }
        if let Some(deadline) = self.pending_flush.get_mut(ns as usize) {
            *deadline = 0;
        }
    }
}
