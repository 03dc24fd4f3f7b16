//! A connection's time limits and memory budgets: pure rules, no I/O.
//!
//! Owns when a connection must be closed ([`Deadlines`]: the handshake,
//! a request stuck mid-transfer, an unread reply, the opt-in idle timeout)
//! and how much it may buffer at each stage of its session ([`Budget`]).
//! It never touches a socket and knows no command: `connection` asks it
//! how long the next read or write may wait, and what to allow.
//!
//! Times are `coarse_now()` readings (time since boot), passed in, so the
//! rules are tested without a clock.

use std::time::Duration;

use crate::config::Config;
use crate::protocol::parse::{MAX_LINE, MAX_RETRIEVAL_LINE};

/// What a connection reads into at a time, and keeps while idle.
pub const READ_BUFFER: usize = 16 * 1024;
/// Past this much buffered output, replies are written before parsing more,
/// so a client that pipelines large gets cannot grow our memory without bound.
pub const OUTPUT_HIGH_WATER: usize = 1 << 20;
/// An unauthenticated connection's output budget: its replies are error
/// lines and `VERSION`, and a client that sends many without reading them
/// must not make us hold more.
pub const UNAUTHENTICATED_OUTPUT: usize = 4 * 1024;
/// The longest `set oauth` value (`TOKEN PROJECT_ID CACHE_NAME`): a
/// longer one is refused as badly formatted, and its bytes are discarded
/// as they arrive rather than buffered.
pub const MAX_OAUTH_VALUE: usize = 1024;
/// What an idle connection keeps for replies: past it, the reply buffer
/// is given back once the connection has been quiet for `SHRINK_AFTER`.
pub const IDLE_REPLY_BUFFER: usize = 16 * 1024;
/// How long a connection holding more than its idle share of buffers must
/// be quiet before it gives the rest back. Long enough that a client
/// streaming large values does not reallocate between requests.
pub const SHRINK_AFTER: Duration = Duration::from_secs(1);

/// Which limit closed a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiry {
    /// `--idle-timeout`: nothing sent for that long (opt-in).
    Idle,
    /// `--request-timeout`: a request began to arrive and never completed.
    Request,
    /// `--auth-timeout`: not authenticated in time (secure mode).
    Handshake,
    /// `--write-timeout`: the client read none of our replies for that long.
    Write,
}

impl Expiry {
    pub fn describe(self) -> &'static str {
        match self {
            Expiry::Idle => "idle timeout",
            Expiry::Request => "request not completed in time",
            Expiry::Handshake => "not authenticated in time",
            Expiry::Write => "replies not read in time",
        }
    }
}

/// One connection's deadlines.
#[derive(Clone, Copy, Debug)]
pub struct Deadlines {
    idle: Option<Duration>,
    request: Option<Duration>,
    write: Option<Duration>,
    /// When the handshake must be done by, until it is.
    handshake_by: Option<Duration>,
}

impl Deadlines {
    /// Deadlines of a connection opened at `now`; `handshake` says whether
    /// it must authenticate (secure mode) before it may do anything.
    pub fn new(config: &Config, handshake: bool, now: Duration) -> Deadlines {
        Deadlines {
            idle: config.idle_timeout,
            request: config.request_timeout,
            write: config.write_timeout,
            handshake_by: if handshake {
                config.auth_timeout.map(|t| now + t)
            } else {
                None
            },
        }
    }

    /// The connection authenticated: no handshake deadline any more.
    pub fn authenticated(&mut self) {
        self.handshake_by = None;
    }

    /// How long the next read may wait at `now`, and which limit ends it
    /// (`None`: no limit); `Err` with the limit already past. `partial_since`
    /// is when the request now half-read began to arrive: the request
    /// deadline (and the idle one, when set) covers a whole request, so
    /// trickling bytes cannot hold it open.
    pub fn read(
        &self,
        now: Duration,
        partial_since: Option<Duration>,
    ) -> Result<Option<(Duration, Expiry)>, Expiry> {
        let mut due = self.handshake_by.map(|t| (t, Expiry::Handshake));
        match partial_since {
            Some(since) => {
                earliest(&mut due, self.request.map(|t| (since + t, Expiry::Request)));
                earliest(&mut due, self.idle.map(|t| (since + t, Expiry::Idle)));
            }
            None => earliest(&mut due, self.idle.map(|t| (now + t, Expiry::Idle))),
        }
        left(due, now)
    }

    /// How long the next write may wait for the client to read, at `now`.
    pub fn write(&self, now: Duration) -> Result<Option<(Duration, Expiry)>, Expiry> {
        let mut due = self.handshake_by.map(|t| (t, Expiry::Handshake));
        earliest(&mut due, self.write.map(|t| (now + t, Expiry::Write)));
        left(due, now)
    }
}

fn earliest(due: &mut Option<(Duration, Expiry)>, other: Option<(Duration, Expiry)>) {
    if let Some(other) = other {
        if due.is_none_or(|d| other.0 < d.0) {
            *due = Some(other);
        }
    }
}

fn left(
    due: Option<(Duration, Expiry)>,
    now: Duration,
) -> Result<Option<(Duration, Expiry)>, Expiry> {
    match due {
        None => Ok(None),
        Some((at, why)) => match at.checked_sub(now) {
            Some(left) if !left.is_zero() => Ok(Some((left, why))),
            _ => Err(why),
        },
    }
}

/// What a connection may buffer at its stage of the session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Largest value a storage command may carry; a larger one is refused
    /// and its bytes discarded as they arrive.
    pub max_value: usize,
    /// Largest request the read buffer may grow to hold.
    pub max_request: usize,
    /// Replies buffered before they are written out.
    pub output: usize,
}

impl Budget {
    /// A connection that may use the cache.
    pub fn bound(max_item_size: usize) -> Budget {
        Budget {
            max_value: max_item_size,
            max_request: (max_item_size + MAX_LINE + 2).max(MAX_RETRIEVAL_LINE) + 1,
            output: OUTPUT_HIGH_WATER,
        }
    }

    /// A connection that has yet to authenticate: it can only say `set
    /// oauth` (a short value), `version`, `verbosity` or `quit`, so it gets
    /// the read buffer it starts with and a few KiB of replies.
    pub fn unauthenticated() -> Budget {
        Budget {
            max_value: MAX_OAUTH_VALUE,
            max_request: READ_BUFFER,
            output: UNAUTHENTICATED_OUTPUT,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn deadlines(idle: u64, request: u64, write: u64, auth: Option<u64>) -> Deadlines {
        let t = |s| (s > 0).then(|| secs(s));
        Deadlines {
            idle: t(idle),
            request: t(request),
            write: t(write),
            handshake_by: auth.map(secs),
        }
    }

    #[test]
    fn an_authenticated_idle_connection_has_no_deadline_by_default() {
        let d = deadlines(0, 30, 30, None);
        assert_eq!(d.read(secs(1000), None), Ok(None));
    }

    #[test]
    fn a_half_read_request_must_complete_in_time() {
        let d = deadlines(0, 30, 30, None);
        assert_eq!(
            d.read(secs(110), Some(secs(100))),
            Ok(Some((secs(20), Expiry::Request)))
        );
        assert_eq!(d.read(secs(130), Some(secs(100))), Err(Expiry::Request));
        // The opt-in idle timeout, when shorter, bounds a request too.
        let d = deadlines(5, 30, 30, None);
        assert_eq!(d.read(secs(100), None), Ok(Some((secs(5), Expiry::Idle))));
        assert_eq!(
            d.read(secs(101), Some(secs(100))),
            Ok(Some((secs(4), Expiry::Idle)))
        );
        assert_eq!(d.read(secs(105), Some(secs(100))), Err(Expiry::Idle));
    }

    #[test]
    fn the_handshake_deadline_holds_whatever_the_connection_does() {
        // Opened at 100 with a 10 s handshake deadline.
        let mut d = deadlines(0, 30, 30, Some(110));
        assert_eq!(
            d.read(secs(104), None),
            Ok(Some((secs(6), Expiry::Handshake)))
        );
        // A `version` now and then does not move it; nor does a write.
        assert_eq!(
            d.read(secs(109), None),
            Ok(Some((secs(1), Expiry::Handshake)))
        );
        assert_eq!(d.write(secs(105)), Ok(Some((secs(5), Expiry::Handshake))));
        assert_eq!(d.read(secs(110), None), Err(Expiry::Handshake));
        assert_eq!(d.write(secs(111)), Err(Expiry::Handshake));
        d.authenticated();
        assert_eq!(d.read(secs(111), None), Ok(None));
        assert_eq!(d.write(secs(111)), Ok(Some((secs(30), Expiry::Write))));
    }

    #[test]
    fn writes_wait_at_most_the_write_timeout_and_zero_turns_limits_off() {
        let d = deadlines(0, 30, 7, None);
        assert_eq!(d.write(secs(50)), Ok(Some((secs(7), Expiry::Write))));
        let off = deadlines(0, 0, 0, None);
        assert_eq!(off.write(secs(50)), Ok(None));
        assert_eq!(off.read(secs(50), Some(secs(1))), Ok(None));
    }

    #[test]
    fn config_defaults_give_a_handshake_deadline_only_where_one_is_needed() {
        use clap::Parser;
        let args = crate::config::Args::parse_from(["ferrocache", "--cores", "1"]);
        let config = Config::from_args(args).unwrap();
        let secure = Deadlines::new(&config, true, secs(100));
        assert_eq!(
            secure.read(secs(100), None),
            Ok(Some((secs(10), Expiry::Handshake)))
        );
        let open = Deadlines::new(&config, false, secs(100));
        assert_eq!(open.read(secs(100), None), Ok(None));
    }

    #[test]
    fn an_unauthenticated_connection_gets_a_small_budget() {
        let bound = Budget::bound(1 << 20);
        let unauth = Budget::unauthenticated();
        assert!(unauth.output <= 4096 && unauth.output < bound.output);
        assert_eq!(unauth.max_value, MAX_OAUTH_VALUE);
        // A whole `set oauth` of the longest value still fits the read buffer.
        assert!(MAX_LINE + MAX_OAUTH_VALUE + 2 <= unauth.max_request);
        assert!(unauth.max_request <= READ_BUFFER);
        assert!(bound.max_request > (1 << 20) + MAX_LINE);
    }
}
