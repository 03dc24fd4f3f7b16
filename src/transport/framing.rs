//! A connection's read buffer, time limits and memory budgets: pure rules,
//! no I/O.
//!
//! Owns when a connection must be closed ([`Deadlines`]: the handshake,
//! a request stuck mid-transfer, an unread reply, the opt-in idle timeout),
//! how much it may buffer at each stage of its session ([`Budget`]), and
//! its read buffer ([`ReadBuffer`]: growing for one large request, giving
//! the memory back after it, discarding a too-large value as it arrives,
//! and since when a half-read request has been arriving). It never touches
//! a socket and knows no command: `connection` asks it how long the next
//! read or write may wait, and what to allow.
//!
//! Times are `coarse_now()` readings (time since boot), passed in, so the
//! rules are tested without a clock.

use std::time::Duration;

use crate::config::Config;
use crate::protocol::parse::{MAX_RETRIEVAL_LINE, MAX_WHOLE_LINE};
use crate::session::MAX_OAUTH_VALUE;

/// What a connection reads into at a time, and keeps while idle.
pub const READ_BUFFER: usize = 16 * 1024;
// The longest whole command line arrives in one read of a fresh buffer, as
// in memcached, whose read buffer is the same size.
const _: () = assert!(MAX_WHOLE_LINE <= READ_BUFFER);
/// Past this much buffered output, replies are written before parsing more,
/// so a client that pipelines large gets cannot grow our memory without bound.
pub const OUTPUT_HIGH_WATER: usize = 1 << 20;
/// An unauthenticated connection's output budget: its replies are error
/// lines and `VERSION`, and a client that sends many without reading them
/// must not make us hold more.
pub const UNAUTHENTICATED_OUTPUT: usize = 4 * 1024;
/// What a connection keeps for replies between requests: past it, the
/// reply buffer is given back once the connection has been quiet for
/// `SHRINK_AFTER` (and all of it after `RELEASE_AFTER`). A fresh reply
/// buffer's size.
pub const IDLE_REPLY_BUFFER: usize = 16 * 1024;
/// How long a connection holding more than its idle share of buffers must
/// be quiet before it gives the rest back. Long enough that a client
/// streaming large values does not reallocate between requests.
pub const SHRINK_AFTER: Duration = Duration::from_secs(1);
/// How long a connection must be quiet before it gives back all of its
/// buffers (a TLS one, its ciphertext buffers too) and waits for its next
/// request without them. Long enough that a pooled connection asking
/// every few seconds does not pay for a poll and fresh buffers on each
/// request.
pub const RELEASE_AFTER: Duration = Duration::from_secs(10);

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
    /// (`None`: no limit); `Err` with the limit already past. `quiet_since`
    /// is when the connection last finished a request (or opened): the idle
    /// deadline counts from there, however many reads wait meanwhile.
    /// `partial_since` is when the request now half-read began to arrive:
    /// the request deadline (and the idle one, when set) covers a whole
    /// request, so trickling bytes cannot hold it open.
    pub fn read(
        &self,
        now: Duration,
        quiet_since: Duration,
        partial_since: Option<Duration>,
    ) -> Result<Option<(Duration, Expiry)>, Expiry> {
        let mut due = self.handshake_by.map(|t| (t, Expiry::Handshake));
        match partial_since {
            Some(since) => {
                earliest(&mut due, self.request.map(|t| (since + t, Expiry::Request)));
                earliest(&mut due, self.idle.map(|t| (since + t, Expiry::Idle)));
            }
            None => earliest(&mut due, self.idle.map(|t| (quiet_since + t, Expiry::Idle))),
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
            max_request: (max_item_size + MAX_WHOLE_LINE + 2).max(MAX_RETRIEVAL_LINE) + 1,
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

/// A connection's read buffer: bytes received and not yet parsed.
#[derive(Default)]
pub struct ReadBuffer {
    buf: Vec<u8>,
    cursor: Cursor,
}

/// Where parsing stands in a [`ReadBuffer`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cursor {
    start: usize,
    end: usize,
    /// Data bytes of a too-large value still to discard.
    swallow: usize,
    /// When the request now half-read began to arrive (`coarse_now` time).
    partial_since: Option<Duration>,
}

impl ReadBuffer {
    pub fn new() -> ReadBuffer {
        ReadBuffer {
            buf: vec![0; READ_BUFFER],
            cursor: Cursor::default(),
        }
    }

    /// Ensures free space at the end. A whole request larger than the
    /// buffer (a big value or a long multiget) grows it, up to
    /// `max_request`: the parser bounds both, so the growth is bounded too.
    pub fn make_room(&mut self, max_request: usize) {
        if self.buf.is_empty() {
            // Released while the connection was idle.
            self.buf = vec![0; READ_BUFFER];
        }
        let c = &mut self.cursor;
        if c.start == c.end {
            c.start = 0;
            c.end = 0;
        }
        if c.end < self.buf.len() {
            return;
        }
        if c.start > 0 {
            self.buf.copy_within(c.start..c.end, 0);
            c.end -= c.start;
            c.start = 0;
        } else {
            let len = (self.buf.len() * 2).min(max_request).max(self.buf.len());
            self.buf.resize(len, 0);
        }
    }

    /// Lends the buffer to a read, which fills it from the offset given.
    pub fn lend(&mut self) -> (Vec<u8>, usize) {
        (std::mem::take(&mut self.buf), self.cursor.end)
    }

    /// The buffer back from a read that added `n` bytes.
    pub fn filled(&mut self, buf: Vec<u8>, n: usize) {
        self.buf = buf;
        self.cursor.end += n;
    }

    /// The bytes received and not yet parsed.
    pub fn unparsed(&self) -> &[u8] {
        self.cursor.unparsed(&self.buf)
    }

    /// The bytes, and the cursor to advance while parsing them.
    pub fn parts(&mut self) -> (&[u8], &mut Cursor) {
        (&self.buf, &mut self.cursor)
    }

    pub fn swallowing(&self) -> bool {
        self.cursor.swallow > 0
    }

    /// When the request now half-read began to arrive; `None` when nothing
    /// is half-read.
    pub fn partial_since(&self) -> Option<Duration> {
        self.cursor.partial_since
    }

    /// Where parsing stands now, for [`ReadBuffer::passed`].
    pub fn cursor(&self) -> Cursor {
        self.cursor
    }

    /// See [`Cursor::passed`].
    pub fn passed(&mut self, before: Cursor, now: Duration) {
        self.cursor.passed(before, now);
    }

    /// Bytes the buffer holds.
    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// Gives back the memory of a big request once it is done.
    pub fn shrink(&mut self) {
        if self.buf.len() > 4 * READ_BUFFER {
            self.shrink_to_read_buffer();
        }
    }

    /// Back to an idle connection's buffer (one that cannot `release`),
    /// keeping the bytes of a request half-read. Called only between
    /// reads.
    pub fn shrink_idle(&mut self) {
        if self.buf.len() > READ_BUFFER {
            self.shrink_to_read_buffer();
        }
    }

    /// Gives the whole buffer back, when nothing is half-read: the
    /// connection waits for its next request without one (`make_room`
    /// takes a fresh one). True when released.
    pub fn release(&mut self) -> bool {
        let c = &self.cursor;
        if c.start != c.end || c.swallow > 0 || c.partial_since.is_some() {
            return false;
        }
        self.buf = Vec::new();
        self.cursor = Cursor::default();
        true
    }

    fn shrink_to_read_buffer(&mut self) {
        let c = &mut self.cursor;
        let len = c.end - c.start;
        if len > READ_BUFFER {
            return;
        }
        let mut small = vec![0; READ_BUFFER];
        small[..len].copy_from_slice(&self.buf[c.start..c.end]);
        c.start = 0;
        c.end = len;
        self.buf = small;
    }
}

impl Cursor {
    /// Discards what it can of a too-large value. True when there are
    /// bytes to parse after it.
    pub fn discard(&mut self) -> bool {
        let n = self.swallow.min(self.end - self.start);
        self.start += n;
        self.swallow -= n;
        self.swallow == 0 && self.start < self.end
    }

    /// The bytes not yet parsed, of `buf` (the buffer this cursor is of).
    pub fn unparsed<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        &buf[self.start..self.end]
    }

    /// `n` bytes were parsed; `swallow` data bytes follow them, to discard.
    pub fn consume(&mut self, n: usize, swallow: usize) {
        self.start += n;
        self.swallow = swallow;
    }

    /// After a pass over the buffer that started at `before`, at `now`:
    /// restarts the request deadline on progress, starts it on a fresh
    /// partial request, and ends it once everything is parsed.
    pub fn passed(&mut self, before: Cursor, now: Duration) {
        let idle = self.start == self.end && self.swallow == 0;
        let progress = self.start != before.start || self.swallow != before.swallow;
        if idle {
            self.partial_since = None;
        } else if progress || self.partial_since.is_none() {
            self.partial_since = Some(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::parse::MAX_LINE;

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
        assert_eq!(d.read(secs(1000), secs(1000), None), Ok(None));
    }

    /// The idle deadline counts from the connection's last request, not
    /// from each read: a read that ends early (to shrink the connection's
    /// buffers) and waits again does not move it.
    #[test]
    fn the_idle_deadline_counts_from_the_last_request() {
        let d = deadlines(2, 30, 30, None);
        assert_eq!(
            d.read(secs(101), secs(100), None),
            Ok(Some((secs(1), Expiry::Idle)))
        );
        assert_eq!(d.read(secs(102), secs(100), None), Err(Expiry::Idle));
    }

    #[test]
    fn a_half_read_request_must_complete_in_time() {
        let d = deadlines(0, 30, 30, None);
        assert_eq!(
            d.read(secs(110), secs(110), Some(secs(100))),
            Ok(Some((secs(20), Expiry::Request)))
        );
        assert_eq!(
            d.read(secs(130), secs(130), Some(secs(100))),
            Err(Expiry::Request)
        );
        // The opt-in idle timeout, when shorter, bounds a request too.
        let d = deadlines(5, 30, 30, None);
        assert_eq!(
            d.read(secs(100), secs(100), None),
            Ok(Some((secs(5), Expiry::Idle)))
        );
        assert_eq!(
            d.read(secs(101), secs(101), Some(secs(100))),
            Ok(Some((secs(4), Expiry::Idle)))
        );
        assert_eq!(
            d.read(secs(105), secs(105), Some(secs(100))),
            Err(Expiry::Idle)
        );
    }

    #[test]
    fn the_handshake_deadline_holds_whatever_the_connection_does() {
        // Opened at 100 with a 10 s handshake deadline.
        let mut d = deadlines(0, 30, 30, Some(110));
        assert_eq!(
            d.read(secs(104), secs(104), None),
            Ok(Some((secs(6), Expiry::Handshake)))
        );
        // A `version` now and then does not move it; nor does a write.
        assert_eq!(
            d.read(secs(109), secs(109), None),
            Ok(Some((secs(1), Expiry::Handshake)))
        );
        assert_eq!(d.write(secs(105)), Ok(Some((secs(5), Expiry::Handshake))));
        assert_eq!(d.read(secs(110), secs(110), None), Err(Expiry::Handshake));
        assert_eq!(d.write(secs(111)), Err(Expiry::Handshake));
        d.authenticated();
        assert_eq!(d.read(secs(111), secs(111), None), Ok(None));
        assert_eq!(d.write(secs(111)), Ok(Some((secs(30), Expiry::Write))));
    }

    #[test]
    fn writes_wait_at_most_the_write_timeout_and_zero_turns_limits_off() {
        let d = deadlines(0, 30, 7, None);
        assert_eq!(d.write(secs(50)), Ok(Some((secs(7), Expiry::Write))));
        let off = deadlines(0, 0, 0, None);
        assert_eq!(off.write(secs(50)), Ok(None));
        assert_eq!(off.read(secs(50), secs(50), Some(secs(1))), Ok(None));
    }

    #[test]
    fn config_defaults_give_a_handshake_deadline_only_where_one_is_needed() {
        use clap::Parser;
        let args = crate::config::Args::parse_from(["ferrocache", "--cores", "1"]);
        let config = Config::from_args(args).unwrap();
        let secure = Deadlines::new(&config, true, secs(100));
        assert_eq!(
            secure.read(secs(100), secs(100), None),
            Ok(Some((secs(10), Expiry::Handshake)))
        );
        let open = Deadlines::new(&config, false, secs(100));
        assert_eq!(open.read(secs(100), secs(100), None), Ok(None));
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
        assert!(bound.max_request > (1 << 20) + MAX_WHOLE_LINE);
    }

    fn received(read: &mut ReadBuffer, bytes: &[u8]) {
        let (mut buf, at) = read.lend();
        buf[at..at + bytes.len()].copy_from_slice(bytes);
        read.filled(buf, bytes.len());
    }

    #[test]
    fn the_read_buffer_grows_for_one_large_request_within_its_budget_and_shrinks_after() {
        let mut read = ReadBuffer::new();
        let chunk = vec![b'x'; READ_BUFFER];
        read.make_room(10 * READ_BUFFER);
        received(&mut read, &chunk);
        // Full, nothing parsed: a request larger than the buffer.
        read.make_room(10 * READ_BUFFER);
        assert_eq!(read.capacity(), 2 * READ_BUFFER);
        received(&mut read, &chunk);
        read.make_room(3 * READ_BUFFER);
        assert_eq!(read.capacity(), 3 * READ_BUFFER, "never past max_request");
        received(&mut read, &chunk);
        read.make_room(3 * READ_BUFFER);
        assert_eq!(read.capacity(), 3 * READ_BUFFER);
        assert_eq!(read.unparsed().len(), 3 * READ_BUFFER);
        // Parsed all but 10 bytes: compacted to the front on the next read.
        let (_, cursor) = read.parts();
        cursor.consume(3 * READ_BUFFER - 10, 0);
        read.make_room(3 * READ_BUFFER);
        assert_eq!(read.unparsed(), &chunk[..10]);
        let (buf, at) = read.lend();
        assert_eq!(at, 10);
        read.filled(buf, 0);
        // Below 4 read buffers nothing is given back after each request ...
        read.shrink();
        assert_eq!(read.capacity(), 3 * READ_BUFFER);
        // ... but an idle connection keeps one read buffer, and what it held.
        read.shrink_idle();
        assert_eq!(read.capacity(), READ_BUFFER);
        assert_eq!(read.unparsed(), &chunk[..10]);
    }

    #[test]
    fn a_buffer_still_holding_more_than_a_read_buffer_is_not_shrunk() {
        let mut read = ReadBuffer::new();
        for _ in 0..5 {
            read.make_room(8 * READ_BUFFER);
            let (buf, at) = read.lend();
            let n = buf.len() - at;
            read.filled(buf, n);
        }
        assert_eq!(read.capacity(), 8 * READ_BUFFER);
        let (_, cursor) = read.parts();
        cursor.consume(READ_BUFFER, 0);
        read.shrink();
        assert_eq!(read.capacity(), 8 * READ_BUFFER, "7 buffers still unparsed");
        let (_, cursor) = read.parts();
        cursor.consume(6 * READ_BUFFER + 1, 0);
        read.shrink();
        assert_eq!(read.capacity(), READ_BUFFER);
        assert_eq!(read.unparsed().len(), READ_BUFFER - 1);
    }

    #[test]
    fn a_too_large_value_is_discarded_across_reads() {
        let mut read = ReadBuffer::new();
        received(&mut read, b"set k 0 0 10\r\n01234");
        let (buf, cursor) = read.parts();
        let line = cursor
            .unparsed(buf)
            .iter()
            .position(|&b| b == b'\n')
            .unwrap()
            + 1;
        cursor.consume(line, 12);
        assert!(!cursor.discard(), "the value is not all here yet");
        assert!(read.swallowing());
        received(&mut read, b"56789\r\nget k\r\n");
        let (buf, cursor) = read.parts();
        assert!(cursor.discard());
        assert_eq!(cursor.unparsed(buf), b"get k\r\n");
        assert!(!read.swallowing());
    }

    #[test]
    fn the_request_deadline_starts_on_a_partial_request_and_restarts_on_progress() {
        let mut read = ReadBuffer::new();
        received(&mut read, b"get a\r\nget");
        let before = read.cursor();
        read.passed(before, secs(5));
        assert_eq!(
            read.partial_since(),
            Some(secs(5)),
            "a fresh partial request"
        );
        let before = read.cursor();
        read.passed(before, secs(9));
        assert_eq!(
            read.partial_since(),
            Some(secs(5)),
            "no progress: it keeps running"
        );
        let before = read.cursor();
        let (_, cursor) = read.parts();
        cursor.consume(7, 0);
        read.passed(before, secs(12));
        assert_eq!(read.partial_since(), Some(secs(12)), "progress restarts it");
        let before = read.cursor();
        let (_, cursor) = read.parts();
        cursor.consume(3, 0);
        read.passed(before, secs(13));
        assert_eq!(read.partial_since(), None, "all parsed: no deadline");
    }
}
