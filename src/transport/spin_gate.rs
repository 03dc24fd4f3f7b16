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
//! So a core polls only while, over its last [`WINDOW`], its thread was on
//! the CPU, polling aside, at least a given share of the time
//! (`--spin-busy-pct`, 90 by default). The share is read from the thread's
//! CPU clock, not from the stretches between going idle and work coming
//! back: a core that sleeps often spends a few microseconds of CPU on each
//! sleep and wake-up, so a saturated one can be on the CPU 98% of the time
//! while its idle stretches, each sleep's own cost included, add up to more
//! than the 10% the gate allows (round 10 on the device: the cores were on
//! the CPU 97-99% of the time, and a gate that measured those stretches
//! gained 4-6% where always polling gained 10%). Polling counts
//! as idle, so it cannot keep itself on, and it can cost at most the idle
//! share that remains (10% of a core). A core that shares its CPU with
//! another busy task (the load generator on a small machine) is off the
//! CPU while that task runs, so its share stays low and it does not take
//! that task's time to poll.
//! The gate reads the wall clock only when the core goes idle and when work
//! comes back, and the CPU clock once a window.

use std::time::{Duration, Instant};

/// How long the busy share is measured over before it is judged.
pub const WINDOW: Duration = Duration::from_millis(10);

/// The CPU time a core's thread has used so far.
pub trait CpuClock {
    /// `None` where the kernel cannot say; the gate then stays shut.
    fn cpu_time(&mut self) -> Option<Duration>;
}

/// The calling thread's CPU clock (`CLOCK_THREAD_CPUTIME_ID`).
pub struct ThreadCpu;

impl CpuClock for ThreadCpu {
    fn cpu_time(&mut self) -> Option<Duration> {
        crate::clock::thread_cpu_time()
    }
}

pub struct SpinGate<C: CpuClock = ThreadCpu> {
    /// The longest poll (`--spin-us`); zero never polls.
    limit: Duration,
    /// The busy share, in percent, a window needs for the next to poll
    /// (`--spin-busy-pct`); 0 always polls.
    busy_pct: u32,
    cpu: C,
    window_start: Instant,
    /// The thread's CPU time as the window began; `None` until the clock
    /// answers.
    window_cpu: Option<Duration>,
    /// Polling within the current window, polls that ended only.
    polled: Duration,
    /// When the poll in progress began.
    poll_since: Option<Instant>,
    /// What the last whole window decided.
    open: bool,
}

impl SpinGate<ThreadCpu> {
    /// A gate for the calling thread, which must be the core's.
    pub fn new(limit: Duration, busy_pct: u32, now: Instant) -> SpinGate {
        SpinGate::with_clock(limit, busy_pct, now, ThreadCpu)
    }
}

impl<C: CpuClock> SpinGate<C> {
    pub fn with_clock(limit: Duration, busy_pct: u32, now: Instant, mut cpu: C) -> SpinGate<C> {
        let window_cpu = if limit.is_zero() || busy_pct == 0 {
            None
        } else {
            cpu.cpu_time()
        };
        SpinGate {
            limit,
            busy_pct,
            cpu,
            window_start: now,
            window_cpu,
            polled: Duration::ZERO,
            poll_since: None,
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
        if self.open {
            self.poll_since = Some(now);
            self.limit
        } else {
            Duration::ZERO
        }
    }

    /// Work arrived at `now`, ending the idle stretch `idle` began: the
    /// poll, if there was one, lasted until now or until its limit ran out
    /// (and the core slept).
    pub fn busy(&mut self, now: Instant) {
        if let Some(since) = self.poll_since.take() {
            self.polled += now.saturating_duration_since(since).min(self.limit);
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

    /// Judges the window once it is whole, and starts the next. A poll
    /// counts in the window it ends in. A zero share is open from the
    /// start and judges nothing, so it reads no clock.
    fn roll(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.window_start);
        if self.busy_pct == 0 || elapsed < WINDOW {
            return;
        }
        let cpu = self.cpu.cpu_time();
        self.open = match (self.window_cpu, cpu) {
            (Some(start), Some(end)) => {
                let busy = end.saturating_sub(start).saturating_sub(self.polled);
                busy * 100 >= elapsed * self.busy_pct
            }
            _ => false,
        };
        self.window_start = now;
        self.window_cpu = cpu;
        self.polled = Duration::ZERO;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;

    const LIMIT: Duration = Duration::from_micros(50);

    /// A CPU clock the test moves by hand.
    #[derive(Clone, Default)]
    struct FakeCpu(Rc<Cell<Duration>>);

    impl FakeCpu {
        fn run(&self, us: u64) {
            self.0.set(self.0.get() + Duration::from_micros(us));
        }
    }

    impl CpuClock for FakeCpu {
        fn cpu_time(&mut self) -> Option<Duration> {
            Some(self.0.get())
        }
    }

    /// A core's life in cycles: `work_us` of work on the CPU, then
    /// `wait_us` until the next request or another core's answer comes. A
    /// wait the gate polls through costs the poll; one it does not (or
    /// that outlasts the poll) is slept, and going to sleep and waking
    /// cost `sleep_us` more, of CPU and of time.
    struct Load {
        work_us: u64,
        wait_us: u64,
        sleep_us: u64,
    }

    /// One cycle of `load` at `t`: the poll the gate asked for, and the
    /// time after.
    fn cycle(
        gate: &mut SpinGate<FakeCpu>,
        cpu: &FakeCpu,
        mut t: Instant,
        load: &Load,
    ) -> (Duration, Instant) {
        t += Duration::from_micros(load.work_us);
        cpu.run(load.work_us);
        let poll = gate.idle(t);
        let poll_us = poll.as_micros() as u64;
        cpu.run(load.wait_us.min(poll_us));
        t += Duration::from_micros(load.wait_us);
        if load.wait_us > poll_us {
            cpu.run(load.sleep_us);
            t += Duration::from_micros(load.sleep_us);
        }
        gate.busy(t);
        (poll, t)
    }

    /// Drives `gate` through the cycles of `load` from `t` that go idle
    /// before `end`; returns the poll it asked for at each idle start, and
    /// the time after.
    fn until(
        gate: &mut SpinGate<FakeCpu>,
        cpu: &FakeCpu,
        mut t: Instant,
        end: Instant,
        load: &Load,
    ) -> (Vec<Duration>, Instant) {
        let mut polls = Vec::new();
        while t + Duration::from_micros(load.work_us) < end {
            let (poll, after) = cycle(gate, cpu, t, load);
            polls.push(poll);
            t = after;
        }
        (polls, t)
    }

    /// A new gate of `limit` and `busy_pct`, with its clock.
    fn gate(limit: Duration, busy_pct: u32, t0: Instant) -> (SpinGate<FakeCpu>, FakeCpu) {
        let cpu = FakeCpu::default();
        (SpinGate::with_clock(limit, busy_pct, t0, cpu.clone()), cpu)
    }

    /// The polls a new gate of `limit` and `busy_pct` asks for in each of
    /// `n` windows of `load`: those of window k were decided by window k-1.
    fn windows(limit: Duration, busy_pct: u32, load: &Load, n: u32) -> Vec<Vec<Duration>> {
        let t0 = Instant::now();
        let (mut gate, cpu) = gate(limit, busy_pct, t0);
        let mut t = t0;
        (1..=n)
            .map(|k| {
                let (polls, after) = until(&mut gate, &cpu, t, t0 + WINDOW * k, load);
                t = after;
                polls
            })
            .collect()
    }

    fn none(polls: &[Duration]) -> bool {
        polls.iter().all(|p| p.is_zero())
    }

    fn all(polls: &[Duration], limit: Duration) -> bool {
        polls.iter().all(|&p| p == limit)
    }

    #[test]
    fn a_saturated_core_polls_from_its_second_window_on() {
        // 95 µs of work, 5 µs waiting on another core.
        let w = windows(
            LIMIT,
            90,
            &Load {
                work_us: 95,
                wait_us: 5,
                sleep_us: 1,
            },
            3,
        );
        assert!(none(&w[0]), "no judgement before a whole window");
        assert!(all(&w[1], LIMIT) && all(&w[2], LIMIT));
    }

    #[test]
    fn the_cpu_a_sleep_costs_counts_as_busy() {
        // 70 µs of work, then a 3 µs wait, slept at a cost of 12 µs: the
        // idle stretches, sleeps included, fill 18% of the time, but the
        // thread is on the CPU 96% of it. Polling, it waits 3 µs in 73 and
        // stays open.
        let w = windows(
            LIMIT,
            90,
            &Load {
                work_us: 70,
                wait_us: 3,
                sleep_us: 12,
            },
            4,
        );
        assert!(none(&w[0]));
        assert!(
            w[1..].iter().all(|p| all(p, LIMIT)),
            "on the CPU 96%: it polls"
        );
    }

    #[test]
    fn everyday_load_never_polls() {
        // 40% busy in short cycles: waits often shorter than a poll, but
        // the core has time to spare, even counting each sleep's CPU.
        let w = windows(
            LIMIT,
            90,
            &Load {
                work_us: 20,
                wait_us: 30,
                sleep_us: 5,
            },
            5,
        );
        assert!(w.iter().all(|p| none(p)));
        // Just under the share: 81% on the CPU, sleeps included.
        let w = windows(
            LIMIT,
            90,
            &Load {
                work_us: 80,
                wait_us: 20,
                sleep_us: 5,
            },
            5,
        );
        assert!(w.iter().all(|p| none(p)));
    }

    #[test]
    fn polling_counts_as_idle_so_it_cannot_keep_itself_on() {
        // Sleeps so dear (40 µs for a 5 µs wait after 10 µs of work) that
        // the thread is on the CPU 91% of the time: it polls the next
        // window, finds itself 67% busy, and shuts the one after.
        let w = windows(
            LIMIT,
            90,
            &Load {
                work_us: 10,
                wait_us: 5,
                sleep_us: 40,
            },
            4,
        );
        assert!(none(&w[0]));
        assert!(all(&w[1], LIMIT), "on the CPU 91%: it polls");
        assert!(none(&w[2]), "polling a third of the time: it shuts");
        assert!(all(&w[3], LIMIT));
    }

    #[test]
    fn a_long_idle_stretch_closes_the_gate() {
        let t0 = Instant::now();
        let (mut gate, cpu) = gate(LIMIT, 90, t0);
        let load = Load {
            work_us: 99,
            wait_us: 1,
            sleep_us: 1,
        };
        let (_, t) = until(&mut gate, &cpu, t0, t0 + WINDOW, &load);
        let t = t.max(t0 + WINDOW) + Duration::from_micros(99);
        cpu.run(99);
        assert_eq!(gate.idle(t), LIMIT, "the whole window judged: open");
        // The poll runs out, then 50 ms asleep, then one request: the
        // windows that passed were idle.
        let t = t + Duration::from_millis(50);
        cpu.run(55);
        gate.busy(t);
        assert!(gate.idle(t + Duration::from_micros(5)).is_zero());
    }

    #[test]
    fn a_poll_counts_in_the_window_it_ends_in_and_no_longer_than_its_limit() {
        let t0 = Instant::now();
        let (mut gate, cpu) = gate(LIMIT, 90, t0);
        // As if the window before had opened it.
        gate.open = true;
        // Polling from 9.9 ms; the poll runs out and the core sleeps until
        // 10.5 ms, on the CPU for 9.9 ms of work, the 50 µs poll and 10 µs
        // of sleep: judged then, 9.91 of 10.5 ms busy (94%), open.
        cpu.run(9_900);
        assert_eq!(gate.idle(t0 + Duration::from_micros(9_900)), LIMIT);
        cpu.run(60);
        gate.busy(t0 + Duration::from_micros(10_500));
        assert_eq!(gate.idle(t0 + Duration::from_micros(10_600)), LIMIT);
    }

    #[test]
    fn a_zero_limit_never_polls() {
        assert!(!SpinGate::new(Duration::ZERO, 90, Instant::now()).polls());
        let load = Load {
            work_us: 99,
            wait_us: 1,
            sleep_us: 1,
        };
        assert!(windows(Duration::ZERO, 90, &load, 3)
            .iter()
            .all(|p| none(p)));
    }

    #[test]
    fn a_zero_share_always_polls() {
        let load = Load {
            work_us: 1,
            wait_us: 999,
            sleep_us: 5,
        };
        assert!(windows(LIMIT, 0, &load, 3).iter().all(|p| all(p, LIMIT)));
    }

    #[test]
    fn without_a_cpu_clock_the_gate_stays_shut() {
        struct NoClock;
        impl CpuClock for NoClock {
            fn cpu_time(&mut self) -> Option<Duration> {
                None
            }
        }
        let t0 = Instant::now();
        let mut gate = SpinGate::with_clock(LIMIT, 90, t0, NoClock);
        for ms in 1..50 {
            assert!(gate.idle(t0 + Duration::from_millis(ms)).is_zero());
            gate.busy(t0 + Duration::from_millis(ms) + Duration::from_micros(1));
        }
    }

    #[test]
    fn the_thread_clock_answers() {
        let t0 = Instant::now();
        let gate = SpinGate::new(LIMIT, 90, t0);
        assert!(gate.window_cpu.is_some());
    }
}
