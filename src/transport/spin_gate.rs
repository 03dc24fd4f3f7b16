//! Whether an idle core polls before it sleeps (`--spin-us`), decided by
//! how busy it has lately been.
//!
//! A core that finds nothing to do can sleep at once, or poll for a while
//! first. Polling is CPU time charged to the server; sleeping costs the
//! sleeper a system call and the next sender a wake-up (`bell`), and on a
//! virtual machine a wake-up also waits for the host to run the sleeping
//! vCPU again. Which is cheaper depends on how soon work comes back:
//!
//! - at everyday load a core's idle stretches are long, a poll mostly runs
//!   out before work arrives, and the server would show busy cores for no
//!   work (measured on the 2-vCPU VM: a 20 µs poll raised CPU per request
//!   at 40,000 requests/s from 21-23 to 25 µs);
//! - a saturated core's idle stretches are the few microseconds it waits
//!   on another core's answer; polling through them lets that core skip
//!   the wake-up, and on the 16-vCPU device `--cores 8` served 10% (one
//!   request per read) to 28% (16) more with a 50 µs poll, at less CPU per
//!   request (docs/PERFORMANCE.md, round 10).
//!
//! So a core polls only while, over its last [`WINDOW`], it was busy at
//! least a given share of the time (`--spin-busy-pct`, 90 by default).
//! Polling counts as idle, so it cannot keep itself on, and it can cost at
//! most the idle share that remains (10% of a core). The gate reads the
//! clock only when the core goes idle and when work comes back.

use std::time::{Duration, Instant};

/// How long the busy share is measured over before it is judged.
pub const WINDOW: Duration = Duration::from_millis(10);

pub struct SpinGate {
    /// The longest poll (`--spin-us`); zero never polls.
    limit: Duration,
    /// The busy share, in percent, a window needs for the next to poll
    /// (`--spin-busy-pct`); 0 always polls.
    busy_pct: u32,
    window_start: Instant,
    /// Idle time within the current window, stretches that ended only.
    idle: Duration,
    /// When the stretch of idleness in progress began.
    idle_since: Option<Instant>,
    /// What the last whole window decided.
    open: bool,
}

impl SpinGate {
    pub fn new(limit: Duration, busy_pct: u32, now: Instant) -> SpinGate {
        SpinGate {
            limit,
            busy_pct,
            window_start: now,
            idle: Duration::ZERO,
            idle_since: None,
            open: busy_pct == 0,
        }
    }

    /// The core found nothing to do at `now`: how long to poll before it
    /// sleeps.
    pub fn idle(&mut self, now: Instant) -> Duration {
        if !self.polls() {
            return Duration::ZERO;
        }
        self.roll(now);
        self.idle_since = Some(now);
        if self.open {
            self.limit
        } else {
            Duration::ZERO
        }
    }

    /// Work arrived at `now`, ending the idle stretch `idle` began.
    pub fn busy(&mut self, now: Instant) {
        if let Some(since) = self.idle_since.take() {
            self.idle += now.saturating_duration_since(since);
        }
        self.roll(now);
    }

    /// Whether the gate ever opens.
    pub fn polls(&self) -> bool {
        !self.limit.is_zero()
    }

    /// `idle` now; reads no clock if the gate never opens.
    pub fn went_idle(&mut self) -> Duration {
        if self.polls() {
            self.idle(Instant::now())
        } else {
            Duration::ZERO
        }
    }

    /// `busy` now; reads no clock if the gate never opens.
    pub fn work_came(&mut self) {
        if self.polls() {
            self.busy(Instant::now());
        }
    }

    /// Judges the window once it is whole, and starts the next. An idle
    /// stretch counts in the window it ends in.
    fn roll(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed < WINDOW {
            return;
        }
        let busy = elapsed.saturating_sub(self.idle);
        self.open = busy * 100 >= elapsed * self.busy_pct;
        self.window_start = now;
        self.idle = Duration::ZERO;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Duration = Duration::from_micros(50);

    /// Drives `gate` through one window of `cycles` busy-then-idle cycles,
    /// each busy for `busy_us` and idle for `idle_us`, from `t`; returns the
    /// poll it asked for at each idle start, and the time after.
    fn cycles(
        gate: &mut SpinGate,
        mut t: Instant,
        busy_us: u64,
        idle_us: u64,
        cycles: usize,
    ) -> (Vec<Duration>, Instant) {
        let mut polls = Vec::new();
        for _ in 0..cycles {
            t += Duration::from_micros(busy_us);
            polls.push(gate.idle(t));
            t += Duration::from_micros(idle_us);
            gate.busy(t);
        }
        (polls, t)
    }

    /// The polls a new gate of `limit` and `busy_pct` asks for over `n`
    /// such cycles.
    fn polls_of_new_gate(
        limit: Duration,
        busy_pct: u32,
        busy_us: u64,
        idle_us: u64,
        n: usize,
    ) -> Vec<Duration> {
        let t0 = Instant::now();
        cycles(
            &mut SpinGate::new(limit, busy_pct, t0),
            t0,
            busy_us,
            idle_us,
            n,
        )
        .0
    }

    #[test]
    fn a_saturated_core_polls_from_its_second_window_on() {
        let t0 = Instant::now();
        let mut gate = SpinGate::new(LIMIT, 90, t0);
        // 95% busy: 95 µs of work, 5 µs waiting on another core.
        let (first, t) = cycles(&mut gate, t0, 95, 5, 100);
        assert!(
            first.iter().all(|p| p.is_zero()),
            "no judgement before a whole window"
        );
        let (second, _) = cycles(&mut gate, t, 95, 5, 100);
        assert!(second.iter().all(|&p| p == LIMIT));
    }

    #[test]
    fn everyday_load_never_polls() {
        // 40% busy in short cycles: idle stretches often shorter than a
        // poll, but the core has time to spare.
        let polls = polls_of_new_gate(LIMIT, 90, 20, 30, 2000);
        assert!(polls.iter().all(|p| p.is_zero()));
        // Just under the share: 85% busy.
        let polls = polls_of_new_gate(LIMIT, 90, 85, 15, 1000);
        assert!(polls.iter().all(|p| p.is_zero()));
    }

    #[test]
    fn a_long_idle_stretch_closes_the_gate() {
        let t0 = Instant::now();
        let mut gate = SpinGate::new(LIMIT, 90, t0);
        let (_, t) = cycles(&mut gate, t0, 99, 1, 300);
        assert_eq!(gate.idle(t), LIMIT);
        // Asleep for 50 ms, then one request: the windows that passed were idle.
        let t = t + Duration::from_millis(50);
        gate.busy(t);
        assert!(gate.idle(t + Duration::from_micros(5)).is_zero());
    }

    #[test]
    fn an_idle_stretch_counts_in_the_window_it_ends_in() {
        let t0 = Instant::now();
        let mut gate = SpinGate::new(LIMIT, 90, t0);
        // Busy 9.5 ms, then idle across the window's end until 10.5 ms.
        gate.idle(t0 + Duration::from_micros(9_500));
        gate.busy(t0 + Duration::from_micros(10_500));
        // Judged at 10.5 ms with 1 ms idle: 90.5% busy, open.
        assert_eq!(gate.idle(t0 + Duration::from_micros(10_600)), LIMIT);
    }

    #[test]
    fn a_zero_limit_never_polls() {
        assert!(!SpinGate::new(Duration::ZERO, 90, Instant::now()).polls());
        let polls = polls_of_new_gate(Duration::ZERO, 90, 99, 1, 300);
        assert!(polls.iter().all(|p| p.is_zero()));
    }

    #[test]
    fn a_zero_share_always_polls() {
        let polls = polls_of_new_gate(LIMIT, 0, 1, 999, 30);
        assert!(polls.iter().all(|&p| p == LIMIT));
    }
}
