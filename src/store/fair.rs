//! Tenant fairness: per-project accounting, and which projects eviction may
//! take from.
//!
//! Owns the per-project figures of one store (items, bytes, evictions, the
//! project's quota as this shard applies it) and the allocation rules: the
//! weighted max-min fair share, and the set of projects holding more than
//! theirs. It never sees an item: the store tells it what changed, and asks
//! it, once per eviction merge, which projects are fair game.
//!
//! The mechanism is accounting plus victim selection: items of every project
//! share the segments (so a thousand small tenants pin no segment each),
//! and an eviction merge keeps the items of projects under their share, like
//! the items S3-FIFO keeps, and evicts from those over it. No sampling, no
//! lock: the request path adds one counter update per write.
//!
//! The share. With weights w, reserves r and caps c, a project's fair share
//! at water level L is `clamp(w * L, r, c)`; the max-min fair allocation of
//! a capacity K among demands d gives each `min(d, clamp(w * L, r, c))` for
//! the lowest L that fills K (or meets every demand). A full cache meets
//! every demand it holds, so the projects at the top of the water-fill, whose
//! usage per weight is (within `SLACK`) the highest, are the ones over their
//! share: eviction takes from them until a smaller one catches up. This
//! converges to the max-min fair allocation of what each project asks for,
//! and a project under its share, or within its reserve, keeps its items.

/// Dense id of a project (the unit quotas are given for). 0 is the project
/// of namespaces never bound to one (the default namespace, unit tests).
pub type ProjectId = u32;

/// A project's limits as one shard applies them (the quotas file's, divided
/// by the number of shards).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quota {
    /// Most bytes of items (`u64::MAX`: no cap).
    pub cap: u64,
    /// Bytes kept even under pressure.
    pub reserve: u64,
    /// Weight in the fair share, at least 1.
    pub weight: u32,
}

impl Default for Quota {
    fn default() -> Quota {
        Quota {
            cap: u64::MAX,
            reserve: 0,
            weight: 1,
        }
    }
}

/// One project's figures on one shard, for the operator (`/metrics`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProjectStats {
    pub items: u64,
    /// Bytes of items, as `stats` counts them.
    pub bytes: u64,
    pub evictions: u64,
    pub quota: Quota,
    /// Namespaces of this project this store has seen (bound, not retired).
    pub namespaces: u32,
}

/// Usage per weight within this fraction of the highest counts as the top
/// of the water-fill (1/32: shares settle within about 3% of each other).
pub(crate) const SLACK_NUM: u64 = 31;
pub(crate) const SLACK_DEN: u64 = 32;

/// Per-project state of one store.
#[derive(Default)]
pub(crate) struct Projects {
    stats: Vec<ProjectStats>,
    /// Projects holding items, to walk without scanning every id.
    active: Vec<ProjectId>,
    /// Per project: may eviction take its items (refreshed per merge).
    over: Vec<bool>,
    /// Per project: where its cap enforcement stopped (segment, generation,
    /// offset), so the next call goes on from there.
    cursor: Vec<(u32, u32, u32)>,
    /// Whether the last refresh found two or more projects holding items:
    /// with one, eviction is today's S3-FIFO exactly.
    pub(crate) shared: bool,
}

impl Projects {
    #[inline]
    fn entry(&mut self, p: ProjectId) -> &mut ProjectStats {
        let i = p as usize;
        if i >= self.stats.len() {
            self.grow(i + 1);
        }
        &mut self.stats[i]
    }

    #[cold]
    fn grow(&mut self, len: usize) {
        self.stats.resize(len, ProjectStats::default());
        self.over.resize(len, true);
        self.cursor.resize(len, (u32::MAX, 0, 0));
    }

    pub fn get(&self, p: ProjectId) -> ProjectStats {
        self.stats.get(p as usize).copied().unwrap_or_default()
    }

    #[inline]
    pub fn quota(&self, p: ProjectId) -> Quota {
        self.stats
            .get(p as usize)
            .map_or_else(Quota::default, |s| s.quota)
    }

    /// An item of `size` bytes was stored.
    #[inline]
    pub fn added(&mut self, p: ProjectId, size: u64) {
        let s = self.entry(p);
        if s.items == 0 {
            self.active.push(p);
        }
        let s = &mut self.stats[p as usize];
        s.items += 1;
        s.bytes += size;
    }

    /// An item of `size` bytes left (evicted: counted as such).
    #[inline]
    pub fn removed(&mut self, p: ProjectId, size: u64, evicted: bool) {
        let s = self.entry(p);
        s.items = s.items.saturating_sub(1);
        s.bytes = s.bytes.saturating_sub(size);
        s.evictions += u64::from(evicted);
        if s.items == 0 {
            self.deactivate(p);
        }
    }

    /// `items` more items of `bytes` in all are charged to `p` (a namespace
    /// that held them moved to it).
    pub fn charged(&mut self, p: ProjectId, items: u64, bytes: u64) {
        let s = self.entry(p);
        if s.items == 0 && items > 0 {
            self.active.push(p);
        }
        let s = &mut self.stats[p as usize];
        s.items += items;
        s.bytes += bytes;
    }

    /// A namespace of `p` dropped `items` items of `bytes` at once (flush).
    pub fn dropped(&mut self, p: ProjectId, items: u64, bytes: u64) {
        let s = self.entry(p);
        s.items = s.items.saturating_sub(items);
        s.bytes = s.bytes.saturating_sub(bytes);
        if s.items == 0 {
            self.deactivate(p);
        }
    }

    fn deactivate(&mut self, p: ProjectId) {
        if let Some(i) = self.active.iter().position(|&a| a == p) {
            self.active.swap_remove(i);
        }
    }

    /// Every project's items are gone (flush_all).
    pub fn clear_items(&mut self) {
        for s in &mut self.stats {
            s.items = 0;
            s.bytes = 0;
        }
        self.active.clear();
    }

    pub fn set_quota(&mut self, p: ProjectId, quota: Quota) {
        self.entry(p).quota = quota;
    }

    /// A namespace of `p` was bound or retired; when its
    /// last one goes, the id may name another project: its figures reset.
    pub fn namespaces(&mut self, p: ProjectId, bound: bool) {
        let s = self.entry(p);
        if bound {
            s.namespaces += 1;
        } else {
            s.namespaces = s.namespaces.saturating_sub(1);
            if s.namespaces == 0 && s.items == 0 && p != 0 {
                *s = ProjectStats::default();
                self.cursor[p as usize] = (u32::MAX, 0, 0);
            }
        }
    }

    /// Where `p`'s cap enforcement stopped (segment, generation, offset).
    pub fn cursor(&self, p: ProjectId) -> (u32, u32, u32) {
        self.cursor.get(p as usize).copied().unwrap_or((0, 0, 0))
    }

    pub fn set_cursor(&mut self, p: ProjectId, at: (u32, u32, u32)) {
        self.entry(p);
        self.cursor[p as usize] = at;
    }

    /// Whether eviction may take `p`'s items (as of the last refresh).
    #[inline]
    pub fn over(&self, p: ProjectId) -> bool {
        self.over.get(p as usize).copied().unwrap_or(true)
    }

    /// Decides, before an eviction merge, which projects it may take from.
    pub fn refresh(&mut self) {
        self.shared = self.active.len() > 1;
        if !self.shared {
            return;
        }
        let demands: Vec<Demand> = self
            .active
            .iter()
            .map(|&p| Demand::of(&self.stats[p as usize]))
            .collect();
        let over = over_share(&demands);
        for (&p, o) in self.active.iter().zip(over) {
            self.over[p as usize] = o;
        }
    }

    /// Bytes of per-project state held.
    pub fn memory_bytes(&self) -> usize {
        self.stats.capacity() * std::mem::size_of::<ProjectStats>()
            + self.over.capacity()
            + self.cursor.capacity() * 12
            + self.active.capacity() * 4
    }

    /// Every project with items or namespaces here, with its figures.
    pub fn each(&self) -> impl Iterator<Item = (ProjectId, ProjectStats)> + '_ {
        self.stats
            .iter()
            .enumerate()
            .filter(|(_, s)| s.items > 0 || s.namespaces > 0)
            .map(|(p, s)| (p as ProjectId, *s))
    }
}

/// One project as the allocation sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Demand {
    /// Bytes it holds (or asks for).
    pub bytes: u64,
    pub weight: u32,
    pub reserve: u64,
    pub cap: u64,
}

impl Demand {
    fn of(s: &ProjectStats) -> Demand {
        Demand {
            bytes: s.bytes,
            weight: s.quota.weight.max(1),
            reserve: s.quota.reserve,
            cap: s.quota.cap,
        }
    }

    /// Its share at water level `level` (bytes per unit of weight).
    pub fn share_at(&self, level: f64) -> f64 {
        let share = (f64::from(self.weight.max(1)) * level).max(self.reserve as f64);
        share.min(self.cap as f64)
    }
}

/// Which of `projects` (all holding what they hold now, in a full cache)
/// eviction may take from: those beyond their reserve whose usage per
/// weight is within `SLACK` of the highest. If every project is within its
/// reserve, all are (memory has to come from somewhere).
pub fn over_share(projects: &[Demand]) -> Vec<bool> {
    let per_weight = |d: &Demand| d.bytes as f64 / f64::from(d.weight.max(1));
    let top = projects
        .iter()
        .filter(|d| d.bytes > d.reserve)
        .map(per_weight)
        .fold(0.0f64, f64::max);
    if top == 0.0 {
        return vec![true; projects.len()];
    }
    let bar = top * SLACK_NUM as f64 / SLACK_DEN as f64;
    projects
        .iter()
        .map(|d| d.bytes > d.reserve && (d.bytes > d.cap || per_weight(d) >= bar))
        .collect()
}

/// The weighted max-min fair allocation of `capacity` bytes among
/// `projects`, each asking for `bytes` (`u64::MAX`: as much as it can get):
/// each gets `min(bytes, clamp(weight * L, reserve, cap))` at the lowest
/// level L that hands out the whole capacity, or meets every demand.
/// Reserves come first even past the capacity (the quotas file is refused
/// where reserves sum to more than memory).
pub fn max_min(projects: &[Demand], capacity: u64) -> Vec<u64> {
    let alloc = |level: f64| -> Vec<f64> {
        projects
            .iter()
            .map(|d| (d.bytes as f64).min(d.share_at(level)))
            .collect()
    };
    let total = |level: f64| alloc(level).iter().sum::<f64>();
    let cap = capacity as f64;
    // The level at which every demand is met (or capped): no higher needed.
    let mut hi = projects
        .iter()
        .map(|d| (d.bytes.min(d.cap) as f64) / f64::from(d.weight.max(1)))
        .fold(0.0f64, f64::max);
    if total(hi) <= cap {
        return alloc(hi).iter().map(|&a| a as u64).collect();
    }
    let mut lo = 0.0f64;
    for _ in 0..100 {
        let mid = (lo + hi) / 2.0;
        if total(mid) > cap {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    alloc(lo).iter().map(|&a| a.floor() as u64).collect()
}

/// Each project's fair share of `capacity` now: what max-min fairness would
/// give it if every project holding items wanted more than it holds.
pub fn fair_shares(projects: &[Demand], capacity: u64) -> Vec<u64> {
    let unbounded: Vec<Demand> = projects
        .iter()
        .map(|d| Demand {
            bytes: u64::MAX,
            ..*d
        })
        .collect();
    max_min(&unbounded, capacity)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d(bytes: u64) -> Demand {
        Demand {
            bytes,
            weight: 1,
            reserve: 0,
            cap: u64::MAX,
        }
    }

    #[test]
    fn the_hot_flood_takes_from_the_flooder_only() {
        // B holds 4 of 64, A the rest: only A is over its share.
        assert_eq!(over_share(&[d(60), d(4)]), vec![true, false]);
        // Equal holders are both fair game.
        assert_eq!(over_share(&[d(32), d(32)]), vec![true, true]);
        // A weight of 3 entitles B to three times A's usage.
        let b = Demand { weight: 3, ..d(45) };
        assert_eq!(over_share(&[d(15), b]), vec![true, true]);
        assert_eq!(over_share(&[d(20), b]), vec![true, false]);
        // Within its reserve a project is never taken from.
        let r = Demand {
            reserve: 50,
            ..d(50)
        };
        assert_eq!(over_share(&[d(14), r]), vec![true, false]);
        // Past its cap it always is.
        let c = Demand { cap: 10, ..d(11) };
        assert_eq!(over_share(&[d(50), c]), vec![true, true]);
    }

    #[test]
    fn fair_shares_split_by_weight_with_reserves_and_caps() {
        assert_eq!(fair_shares(&[d(60), d(4)], 64), vec![32, 32]);
        let heavy = Demand { weight: 3, ..d(1) };
        assert_eq!(fair_shares(&[d(1), heavy], 64), vec![16, 48]);
        let capped = Demand { cap: 10, ..d(1) };
        assert_eq!(fair_shares(&[d(1), capped], 64), vec![54, 10]);
        let reserved = Demand {
            reserve: 40,
            ..d(1)
        };
        assert_eq!(fair_shares(&[d(1), d(1), reserved], 64), vec![12, 12, 40]);
        // Demands below the level are met; the rest is split.
        assert_eq!(max_min(&[d(4), d(100), d(100)], 64), vec![4, 30, 30]);
    }

    fn demand() -> impl Strategy<Value = Demand> {
        (0u64..1000, 1u32..5, 0u64..100, prop::option::of(0u64..1000)).prop_map(
            |(bytes, weight, reserve, cap)| Demand {
                bytes,
                weight,
                reserve,
                cap: cap.map_or(u64::MAX, |c| c.max(reserve)),
            },
        )
    }

    proptest! {
        /// Reserves are honoured, caps never exceeded, the capacity never
        /// overrun (reserves fit in it), and the result is max-min fair: a
        /// project held below its demand and cap by the level has, per
        /// weight, no less than any project above its reserve.
        #[test]
        fn max_min_allocation(projects in prop::collection::vec(demand(), 1..12), extra in 0u64..3000) {
            let reserves: u64 = projects.iter().map(|d| d.reserve).sum();
            let capacity = reserves + extra;
            let a = max_min(&projects, capacity);
            let total: u64 = a.iter().sum();
            prop_assert!(total <= capacity, "{total} > {capacity}");
            for (d, &got) in projects.iter().zip(&a) {
                prop_assert!(got <= d.cap && got <= d.bytes);
                prop_assert!(got >= d.reserve.min(d.bytes).min(d.cap), "{d:?} got {got}");
            }
            // Work conserving: capacity is left over only if every demand is met.
            if total + projects.len() as u64 + 1 < capacity {
                for (d, &got) in projects.iter().zip(&a) {
                    prop_assert!(got + 1 >= d.bytes.min(d.cap), "{d:?} got {got} of {capacity}");
                }
            }
            for (p, &ap) in projects.iter().zip(&a) {
                let starved = ap + 1 < p.bytes.min(p.cap);
                if !starved {
                    continue;
                }
                for (q, &aq) in projects.iter().zip(&a) {
                    if aq > q.reserve {
                        let (pw, qw) = (ap as f64 / f64::from(p.weight), aq as f64 / f64::from(q.weight));
                        prop_assert!(pw + 1.0 >= qw - 1.0, "{p:?}:{ap} starved below {q:?}:{aq}");
                    }
                }
            }
        }

        /// Eviction only ever takes from a project above its reserve and at
        /// least (within the slack) at its fair share of what is held, and
        /// always has somewhere to take from.
        #[test]
        fn eviction_takes_only_from_projects_over_their_share(projects in prop::collection::vec(demand(), 1..12)) {
            // Caps are enforced as items are written: nobody holds more.
            let projects: Vec<Demand> = projects
                .into_iter()
                .map(|d| Demand { bytes: d.bytes.min(d.cap), ..d })
                .collect();
            let over = over_share(&projects);
            prop_assert!(over.iter().any(|&o| o));
            let held: u64 = projects.iter().map(|d| d.bytes).sum();
            let shares = fair_shares(&projects, held);
            let anyone_over_reserve = projects.iter().any(|d| d.bytes > d.reserve);
            for ((d, &o), &share) in projects.iter().zip(&over).zip(&shares) {
                if o && anyone_over_reserve {
                    prop_assert!(d.bytes > d.reserve);
                    prop_assert!(
                        d.bytes > d.cap || d.bytes as f64 >= share as f64 * SLACK_NUM as f64 / SLACK_DEN as f64 - 1.0,
                        "{d:?} taken from below its share {share}"
                    );
                }
            }
        }
    }
}
