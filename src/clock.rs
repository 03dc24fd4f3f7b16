//! The server clock: whole seconds since start, and memcached's exptime rules.
//!
//! Owns converting a client's exptime (relative, absolute or negative) into
//! the store's absolute server-second. Never sleeps, never touches a socket.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Relative exptimes are at most 30 days; anything larger is a Unix time.
pub const MAX_RELATIVE_EXPTIME: i64 = 60 * 60 * 24 * 30;

/// Server seconds start here, where memcached's `current_time` starts: it
/// backdates its start by ITEM_UPDATE_INTERVAL + 2 = 62 s. So 1 always
/// means "already expired", an expired item's `t` reads as memcached's does
/// (a wrapped negative, not the `-1` of "never"), and so does an absolute
/// exptime from the minute before start.
const EPOCH_OFFSET: u32 = 62;

/// Time since boot from the kernel's coarse monotonic clock: what the
/// request path reads, as memcached reads its once-a-second `current_time`.
/// It moves in scheduler ticks (1-4 ms), and reading it is a load from the
/// vDSO page, where a precise clock costs a TSC read on every request
/// (docs/PERFORMANCE.md, "Clock reads").
pub fn coarse_now() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we pass; the clock id is valid
    // on every Linux since 2.6.32.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// CPU time the calling thread has used (`None` where the kernel cannot
/// say): what a core reports as busy time, and what the benchmarks charge
/// to the code they time.
pub fn thread_cpu_time() -> Option<Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    (rc == 0).then(|| Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
}

#[derive(Clone, Copy, Debug)]
pub struct Clock {
    started: Duration,
    started_unix: u64,
}

impl Clock {
    pub fn new() -> Clock {
        let started_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Clock {
            started: coarse_now(),
            started_unix,
        }
    }

    /// Seconds on the server clock (>= 62).
    pub fn now(&self) -> u32 {
        let secs = self.uptime();
        EPOCH_OFFSET.saturating_add(u32::try_from(secs).unwrap_or(u32::MAX - EPOCH_OFFSET))
    }

    pub fn uptime(&self) -> u64 {
        coarse_now().saturating_sub(self.started).as_secs()
    }

    pub fn unix_now(&self) -> u64 {
        self.started_unix + self.uptime()
    }

    pub fn started_unix(&self) -> u64 {
        self.started_unix
    }

    /// memcached's realtime(): 0 stays "never"; a negative exptime is already
    /// expired; up to 30 days is relative; above that is absolute Unix time.
    pub fn expiry(&self, exptime: i64, now: u32) -> u32 {
        if exptime == 0 {
            0
        } else if exptime < 0 {
            1
        } else if exptime <= MAX_RELATIVE_EXPTIME {
            now.saturating_add(exptime as u32)
        } else {
            // memcached's realtime(): seconds since its backdated start,
            // and 1 at or before that start.
            let unix = exptime as u64;
            let started = self.started_unix.saturating_sub(u64::from(EPOCH_OFFSET));
            if unix <= started {
                1
            } else {
                u32::try_from(unix - started).unwrap_or(u32::MAX)
            }
        }
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exptime_rules() {
        let clock = Clock::new();
        let now = clock.now();
        assert_eq!(clock.expiry(0, now), 0);
        assert!(clock.expiry(-1, now) <= now);
        assert_eq!(clock.expiry(10, now), now + 10);
        assert_eq!(
            clock.expiry(MAX_RELATIVE_EXPTIME, now),
            now + MAX_RELATIVE_EXPTIME as u32
        );
        let in_a_minute = clock.unix_now() as i64 + 60;
        let at = clock.expiry(in_a_minute, now);
        assert!((now + 59..=now + 61).contains(&at));
        let past = clock.unix_now() as i64 - 3600;
        assert!(clock.expiry(past, now) <= now);
        // As memcached's realtime(): from a start backdated by 62 s, so an
        // absolute time in the minute before start is in the past but not 1.
        let started = clock.started_unix() as i64;
        assert_eq!(clock.expiry(started - 30, now), 32);
        assert_eq!(clock.expiry(started - 62, now), 1);
        assert!(clock.now() >= 62);
    }
}
