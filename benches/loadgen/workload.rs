//! What to send next: the operation mix, the key distribution, the request
//! budget and the phase (prefill or measured load). One per thread; it owns
//! that thread's PRNG and statistics and never touches a socket.

use std::time::Instant;

use crate::rng::{Rng, Zipf};
use crate::stats::Stats;
use crate::value::{KeyFormat, KeyId, SCAN_BIT};

#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub enum Dist {
    Uniform,
    Zipf,
}

/// The run's settings, shared read-only by all threads.
pub struct Config {
    pub keys: u64,
    pub dist: Dist,
    pub zipf_alpha: f64,
    pub set_weight: u64,
    pub get_weight: u64,
    pub value_min: usize,
    pub value_max: usize,
    pub key_format: KeyFormat,
    pub scan_fraction: f64,
    pub cache_aside: bool,
    pub verify: bool,
    pub pipeline: usize,
    pub threads: usize,
    /// Speak the meta protocol (mg/ms) instead of get/set.
    pub meta: bool,
}

/// An operation in flight.
#[derive(Clone, Copy)]
pub enum Op {
    /// `set oauth ...`, sent once per connection before anything else.
    Auth,
    Get(KeyId),
    Set(KeyId, usize),
}

pub enum Phase {
    /// Set every key of `next..end` once, in order.
    Prefill {
        next: u64,
        end: u64,
    },
    Load,
}

/// How many errors each thread describes on stderr before only counting.
const ERRORS_SHOWN: u32 = 5;

pub struct Workload<'a> {
    pub cfg: &'a Config,
    rng: Rng,
    zipf: Option<Zipf>,
    pub phase: Phase,
    /// Stop issuing new operations (deadline passed or budget spent).
    pub stopped: bool,
    /// Operations this thread may still issue; `None` means unbounded.
    budget: Option<u64>,
    /// Completed operations still to be excluded as warm-up.
    pub warmup_left: u64,
    /// When the measured part of the load began (end of warm-up).
    pub measure_start: Option<Instant>,
    scan_next: u64,
    scan_stride: u64,
    pub stats: Stats,
    errors_shown: u32,
}

impl<'a> Workload<'a> {
    pub fn new(cfg: &'a Config, thread: usize, seed: u64) -> Result<Workload<'a>, String> {
        let zipf = match cfg.dist {
            Dist::Zipf => Some(Zipf::new(cfg.keys, cfg.zipf_alpha)?),
            Dist::Uniform => None,
        };
        Ok(Workload {
            cfg,
            rng: Rng::new(seed ^ (thread as u64).wrapping_mul(0xA076_1D64_78BD_642F)),
            zipf,
            phase: Phase::Load,
            stopped: false,
            budget: None,
            warmup_left: 0,
            measure_start: None,
            // Threads interleave the scan counter so scan keys never repeat.
            scan_next: thread as u64,
            scan_stride: cfg.threads as u64,
            stats: Stats::new(),
            errors_shown: 0,
        })
    }

    pub fn start_load(&mut self, budget: Option<u64>, warmup: u64) {
        self.phase = Phase::Load;
        self.stopped = false;
        self.budget = budget.map(|b| b + warmup);
        self.warmup_left = warmup;
        self.stats = Stats::new();
        if warmup == 0 {
            self.measure_start = Some(Instant::now());
        }
    }

    /// Pipeline depth: prefill always goes at least 32 deep because it is
    /// set-up, not measurement, and a depth-1 prefill of millions of keys
    /// would take minutes.
    pub fn depth(&self) -> usize {
        match self.phase {
            Phase::Prefill { .. } => self.cfg.pipeline.max(32),
            Phase::Load => self.cfg.pipeline,
        }
    }

    /// The next operation to issue, or `None` when this phase issues no more.
    pub fn next_op(&mut self) -> Option<Op> {
        if self.stopped {
            return None;
        }
        match &mut self.phase {
            Phase::Prefill { next, end } => {
                if *next >= *end {
                    self.stopped = true;
                    return None;
                }
                let key = *next;
                *next += 1;
                Some(Op::Set(key, self.value_len()))
            }
            Phase::Load => {
                if let Some(b) = &mut self.budget {
                    if *b == 0 {
                        self.stopped = true;
                        return None;
                    }
                    *b -= 1;
                }
                let cfg = self.cfg;
                if cfg.scan_fraction > 0.0 && self.rng.unit() < cfg.scan_fraction {
                    let key = SCAN_BIT | self.scan_next;
                    self.scan_next += self.scan_stride;
                    return Some(Op::Get(key));
                }
                let key = match &self.zipf {
                    // Rank 1 is the hottest key; ranks start at 1, keys at 0.
                    Some(z) => z.sample(&mut self.rng) - 1,
                    None => self.rng.below(cfg.keys),
                };
                let total = cfg.set_weight + cfg.get_weight;
                if self.rng.below(total) < cfg.set_weight {
                    Some(Op::Set(key, self.value_len()))
                } else {
                    Some(Op::Get(key))
                }
            }
        }
    }

    pub fn value_len(&mut self) -> usize {
        let cfg = self.cfg;
        if cfg.value_max == cfg.value_min {
            cfg.value_min
        } else {
            cfg.value_min + self.rng.below((cfg.value_max - cfg.value_min + 1) as u64) as usize
        }
    }

    /// Called once per completed load operation; ends the warm-up.
    pub fn completed(&mut self, now: Instant) {
        if self.warmup_left > 0 {
            self.warmup_left -= 1;
            if self.warmup_left == 0 {
                self.stats.reset_figures();
                self.measure_start = Some(now);
            }
        }
    }

    /// Prints the first few errors of this thread, so a failing run says why.
    pub fn report_error(&mut self, what: std::fmt::Arguments) {
        if self.errors_shown < ERRORS_SHOWN {
            self.errors_shown += 1;
            eprintln!("loadgen: error: {what}");
            if self.errors_shown == ERRORS_SHOWN {
                eprintln!("loadgen: (further errors on this thread are only counted)");
            }
        }
    }
}
