//! Failed authentications per source address, across connections.
//!
//! Owns the answer to "may this address try a token now?": past a number of
//! failures within a window, further attempts from that address are refused
//! without checking, until the window ends, so reconnecting does not reset
//! a token guesser. Credentials that logged in from the address lately are
//! still checked while it is blocked (OWASP's "device cookie" defence): a
//! guesser sharing an address (a NAT, an IPv6 /64) cannot lock out the
//! clients already working there, and gains nothing, since a guess that
//! passes is a token it already knew. Both tables have a fixed number of
//! slots, so a client with many addresses cannot grow them. It never
//! touches a socket or the grants, and it keeps no token, only a keyed
//! hash of one with its address.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

/// How long failures from one address are remembered.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Addresses tracked at once (about 40 bytes each).
pub const SLOTS: usize = 4096;
/// How long credentials that logged in from an address stay exempt from
/// that address's block, from their last login there.
pub const KNOWN_FOR: Duration = Duration::from_secs(3600);
/// (address, credentials) pairs remembered at once (about 24 bytes each).
pub const KNOWN_SLOTS: usize = 16384;

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
    /// Keyed hash of (address key, project, token) -> when those credentials
    /// last logged in from that address (ms of the caller's clock).
    known: Mutex<HashMap<u64, u64>>,
    /// The key of that hash, random for each process: SipHash, a keyed PRF,
    /// so a digest says nothing of the token.
    known_key: RandomState,
}

impl AuthThrottle {
    pub fn new(limit: u32) -> AuthThrottle {
        AuthThrottle {
            limit,
            table: Mutex::new(HashMap::new()),
            known: Mutex::new(HashMap::new()),
            known_key: RandomState::new(),
        }
    }

    fn known_digest(&self, ip: IpAddr, project: &str, token: &[u8]) -> u64 {
        self.known_key
            .hash_one((client_address(ip), project, token))
    }

    /// Whether `project`/`token` may be checked from `ip` at `now_ms`: the
    /// address is not blocked, or those credentials logged in from it
    /// within [`KNOWN_FOR`].
    pub fn admits(&self, ip: IpAddr, project: &str, token: &[u8], now_ms: u64) -> bool {
        if !self.blocked(ip, now_ms) {
            return true;
        }
        let digest = self.known_digest(ip, project, token);
        let known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        known
            .get(&digest)
            .is_some_and(|&at| still_known(at, now_ms))
    }

    /// `project`/`token` logged in from `ip` at `now_ms`: exempt from the
    /// address's block for [`KNOWN_FOR`] from now.
    pub fn succeeded(&self, ip: IpAddr, project: &str, token: &[u8], now_ms: u64) {
        if self.limit == 0 {
            return;
        }
        let digest = self.known_digest(ip, project, token);
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        if !known.contains_key(&digest) && known.len() >= KNOWN_SLOTS {
            known.retain(|_, &mut at| still_known(at, now_ms));
            if known.len() >= KNOWN_SLOTS {
                // All recent: forget the one longest unused.
                if let Some(oldest) = known.iter().min_by_key(|(_, &at)| at).map(|(k, _)| *k) {
                    known.remove(&oldest);
                }
            }
        }
        known.insert(digest, now_ms);
    }

    /// Whether `ip` is blocked at `now_ms`.
    pub fn blocked(&self, ip: IpAddr, now_ms: u64) -> bool {
        if self.limit == 0 {
            return false;
        }
        let table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        table
            .get(&client_address(ip))
            .is_some_and(|e| live(e, now_ms) && e.failures >= self.limit)
    }

    /// Counts one failure of `ip` at `now_ms`; true if it is now blocked.
    pub fn fail(&self, ip: IpAddr, now_ms: u64) -> bool {
        if self.limit == 0 {
            return false;
        }
        let key = client_address(ip);
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

    /// (address, credentials) pairs remembered now.
    pub fn known(&self) -> usize {
        self.known.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// What counts as one client when clients are counted by address (here,
/// and by the metrics endpoint): an IPv4 address, an IPv4-mapped IPv6 one
/// as IPv4, and an IPv6 address by its /64, since one host usually holds a
/// whole /64.
pub fn client_address(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
    }
}

fn live(e: &Entry, now_ms: u64) -> bool {
    now_ms.saturating_sub(e.since_ms) < WINDOW.as_millis() as u64
}

fn still_known(at_ms: u64, now_ms: u64) -> bool {
    now_ms.saturating_sub(at_ms) < KNOWN_FOR.as_millis() as u64
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
    fn credentials_known_at_a_blocked_address_are_still_checked() {
        let t = AuthThrottle::new(2);
        let a = ip("10.0.0.1");
        t.succeeded(a, "p", b"good", 0);
        t.fail(a, 10);
        t.fail(a, 20);
        assert!(t.blocked(a, 30));
        assert!(t.admits(a, "p", b"good", 30), "logged in from here before");
        assert!(!t.admits(a, "p", b"guess", 30));
        assert!(!t.admits(a, "q", b"good", 30), "another project's");
        // Known at one address only (an IPv6 host by its /64).
        let b = ip("10.0.0.2");
        t.fail(b, 10);
        t.fail(b, 20);
        assert!(!t.admits(b, "p", b"good", 30));
        // Exempt for KNOWN_FOR from its last login.
        let late = KNOWN_FOR.as_millis() as u64;
        t.fail(a, late);
        t.fail(a, late);
        assert!(!t.admits(a, "p", b"good", late));
    }

    #[test]
    fn the_known_table_is_bounded() {
        let t = AuthThrottle::new(5);
        for i in 0..(KNOWN_SLOTS as u32 + 100) {
            t.succeeded(IpAddr::from(i.to_be_bytes()), "p", b"tok", u64::from(i));
        }
        assert_eq!(t.known(), KNOWN_SLOTS);
        // Expired pairs go first.
        t.succeeded(ip("10.1.1.1"), "p", b"tok", 100_000_000);
        assert_eq!(t.known(), 1);
    }

    #[test]
    fn zero_turns_it_off() {
        let t = AuthThrottle::new(0);
        let a = ip("10.0.0.1");
        for _ in 0..100 {
            assert!(!t.fail(a, 0));
        }
        assert!(!t.blocked(a, 0));
        t.succeeded(a, "p", b"tok", 0);
        assert_eq!((t.tracked(), t.known()), (0, 0));
    }
}
