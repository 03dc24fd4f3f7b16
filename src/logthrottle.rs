//! Rate-limited warnings: one log line per interval for an event a client
//! can repeat at will, with a count of the lines held back.
//!
//! Owns the decision "log now, or only count": a bad-token guess, a refused
//! connection or a failed accept costs a client nothing to repeat, and one
//! line each would let it fill the operator's disk. It never formats or
//! writes a line itself; the caller logs when told to, with the count.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::clock::coarse_now;

/// How often each throttled warning may be logged, unless a site says.
pub const WARN_EVERY: Duration = Duration::from_secs(10);

/// One throttled log site. Lock-free, so a `static` per call site works
/// from every core.
pub struct LogThrottle {
    every_ms: u64,
    /// When the next line may be logged (ms of `coarse_now`); 0: at once.
    next_ms: AtomicU64,
    /// Events since the last line that was logged.
    held: AtomicU64,
}

impl LogThrottle {
    pub const fn new(every: Duration) -> LogThrottle {
        LogThrottle {
            every_ms: every.as_millis() as u64,
            next_ms: AtomicU64::new(0),
            held: AtomicU64::new(0),
        }
    }

    /// Notes one event now. `Some(held)`: log it, and say that `held`
    /// earlier events went unlogged; `None`: only counted.
    pub fn hit(&self) -> Option<u64> {
        self.hit_at(coarse_now().as_millis() as u64)
    }

    /// [`LogThrottle::hit`] at `now_ms`.
    pub fn hit_at(&self, now_ms: u64) -> Option<u64> {
        let next = self.next_ms.load(Ordering::Relaxed);
        if now_ms >= next
            && self
                .next_ms
                .compare_exchange(
                    next,
                    now_ms + self.every_ms.max(1),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            return Some(self.held.swap(0, Ordering::Relaxed));
        }
        self.held.fetch_add(1, Ordering::Relaxed);
        None
    }
}

/// `warn!` at most once per [`WARN_EVERY`] from this call site, adding
/// `suppressed = N` for the events held back since the last line.
#[macro_export]
macro_rules! throttled_warn {
    ($($arg:tt)+) => {{
        static SITE: $crate::logthrottle::LogThrottle =
            $crate::logthrottle::LogThrottle::new($crate::logthrottle::WARN_EVERY);
        if let Some(suppressed) = SITE.hit() {
            tracing::warn!(suppressed, $($arg)+);
        }
    }};
}

/// `throttled_warn!` at info level, for events worth a line but not a warning
/// (a client speaking the wrong protocol).
#[macro_export]
macro_rules! throttled_info {
    ($($arg:tt)+) => {{
        static SITE: $crate::logthrottle::LogThrottle =
            $crate::logthrottle::LogThrottle::new($crate::logthrottle::WARN_EVERY);
        if let Some(suppressed) = SITE.hit() {
            tracing::info!(suppressed, $($arg)+);
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_the_count_held_back() {
        let t = LogThrottle::new(Duration::from_secs(10));
        assert_eq!(t.hit_at(1_000), Some(0));
        for ms in 1_001..1_100 {
            assert_eq!(t.hit_at(ms), None);
        }
        assert_eq!(t.hit_at(10_999), None);
        // 99 + 1 held back, reported with the next line.
        assert_eq!(t.hit_at(11_000), Some(100));
        assert_eq!(t.hit_at(11_001), None);
        assert_eq!(t.hit_at(60_000), Some(1));
        assert_eq!(t.hit_at(60_000), None);
    }

    #[test]
    fn many_threads_log_once_per_interval() {
        let t = std::sync::Arc::new(LogThrottle::new(Duration::from_secs(10)));
        let logged: u64 = (0..4)
            .map(|_| {
                let t = t.clone();
                std::thread::spawn(move || (0..10_000).filter(|_| t.hit_at(5).is_some()).count())
            })
            .map(|h| h.join().unwrap() as u64)
            .sum();
        assert_eq!(logged, 1);
        assert_eq!(t.hit_at(10_005), Some(39_999));
    }
}
