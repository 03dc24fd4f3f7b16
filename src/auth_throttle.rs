//! Failed authentications per source address, across connections.
//!
//! Owns the answer to "may this address try a token now?": past a number of
//! failures within a window, further attempts from that address are refused
//! without checking, until the window ends, so reconnecting does not reset
//! a token guesser. The table has a fixed number of slots, so a client with
//! many addresses cannot grow it. It never touches a socket or the grants,
//! and it never sees a token.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

/// How long failures from one address are remembered.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Addresses tracked at once (about 40 bytes each).
pub const SLOTS: usize = 4096;

#[derive(Clone, Copy)]
struct Entry {
    /// When this address's window began (ms of the caller's clock).
    since_ms: u64,
    failures: u32,
}

/// Counts failures per address; `limit` of them within [`WINDOW`] blocks
/// the address for the rest of the window. A `limit` of 0 turns it off.
pub struct AuthThrottle {
    limit: u32,
    table: Mutex<HashMap<IpAddr, Entry>>,
}

impl AuthThrottle {
    pub fn new(limit: u32) -> AuthThrottle {
        AuthThrottle {
            limit,
            table: Mutex::new(HashMap::new()),
        }
    }

    /// The key an address is counted under: IPv6 clients usually hold a
    /// whole /64, so they are counted by it (mapped IPv4 as IPv4).
    fn key(ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(_) => ip,
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => {
                    let s = v6.segments();
                    IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
                }
            },
        }
    }

    /// Whether `ip` is blocked at `now_ms`.
    pub fn blocked(&self, ip: IpAddr, now_ms: u64) -> bool {
        if self.limit == 0 {
            return false;
        }
        let table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        table
            .get(&Self::key(ip))
            .is_some_and(|e| live(e, now_ms) && e.failures >= self.limit)
    }

    /// Counts one failure of `ip` at `now_ms`; true if it is now blocked.
    pub fn fail(&self, ip: IpAddr, now_ms: u64) -> bool {
        if self.limit == 0 {
            return false;
        }
        let key = Self::key(ip);
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if !table.contains_key(&key) && table.len() >= SLOTS {
            table.retain(|_, e| live(e, now_ms));
            if table.len() >= SLOTS {
                // Every slot is in use: give up the one closest to its end,
                // so the table stays bounded and blocks stay mostly intact.
                if let Some(oldest) = table
                    .iter()
                    .min_by_key(|(_, e)| e.since_ms)
                    .map(|(k, _)| *k)
                {
                    table.remove(&oldest);
                }
            }
        }
        let entry = table.entry(key).or_insert(Entry {
            since_ms: now_ms,
            failures: 0,
        });
        if !live(entry, now_ms) {
            *entry = Entry {
                since_ms: now_ms,
                failures: 0,
            };
        }
        entry.failures = entry.failures.saturating_add(1);
        entry.failures >= self.limit
    }

    /// Addresses tracked now.
    pub fn tracked(&self) -> usize {
        self.table.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

fn live(e: &Entry, now_ms: u64) -> bool {
    now_ms.saturating_sub(e.since_ms) < WINDOW.as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn blocks_after_the_limit_until_the_window_ends() {
        let t = AuthThrottle::new(3);
        let a = ip("10.0.0.1");
        assert!(!t.blocked(a, 0));
        assert!(!t.fail(a, 0));
        assert!(!t.fail(a, 10));
        assert!(t.fail(a, 20));
        assert!(t.blocked(a, 30));
        // Another address is not affected.
        assert!(!t.blocked(ip("10.0.0.2"), 30));
        // The window is counted from the first failure.
        assert!(t.blocked(a, 59_999));
        assert!(!t.blocked(a, 60_000));
        assert!(!t.fail(a, 60_000));
    }

    #[test]
    fn ipv6_counts_by_prefix_and_mapped_v4_as_v4() {
        let t = AuthThrottle::new(2);
        t.fail(ip("2001:db8:1:2::1"), 0);
        t.fail(ip("2001:db8:1:2::ffff"), 0);
        assert!(t.blocked(ip("2001:db8:1:2::7"), 1));
        assert!(!t.blocked(ip("2001:db8:1:3::1"), 1));
        t.fail(ip("::ffff:10.0.0.9"), 0);
        t.fail(ip("10.0.0.9"), 0);
        assert!(t.blocked(ip("10.0.0.9"), 1));
    }

    #[test]
    fn the_table_is_bounded() {
        let t = AuthThrottle::new(5);
        for i in 0..(SLOTS as u32 * 3) {
            t.fail(IpAddr::from(i.to_be_bytes()), u64::from(i));
        }
        assert!(t.tracked() <= SLOTS);
        // Expired entries are dropped first.
        t.fail(ip("10.1.1.1"), 10_000_000);
        assert_eq!(t.tracked(), 1);
    }

    #[test]
    fn zero_turns_it_off() {
        let t = AuthThrottle::new(0);
        let a = ip("10.0.0.1");
        for _ in 0..100 {
            assert!(!t.fail(a, 0));
        }
        assert!(!t.blocked(a, 0));
        assert_eq!(t.tracked(), 0);
    }
}
