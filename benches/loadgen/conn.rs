//! One non-blocking client connection: encodes requests into its write
//! buffer, keeps up to the pipeline depth in flight, and matches replies to
//! requests in order (the text protocol answers in request order). It parses
//! replies strictly: anything that is not the exact reply a request allows is
//! counted as malformed and the connection is dropped, because after that the
//! stream can no longer be trusted to line up.
//!
//! Generic over its [`Transport`] (plain TCP or TLS), which moves the bytes;
//! with `--reconnect-every N` it opens a fresh connection (and handshake)
//! once N requests have been answered.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use crate::transport::{connect_nonblocking, Handshake, Transport};
use crate::value::{check_value, push_decimal, push_value, SCAN_BIT, VERIFY_OVERHEAD};
use crate::workload::{Op, Phase, Workload};

struct Pending {
    op: Op,
    sent: Instant,
}

pub struct Conn<T> {
    pub t: T,
    /// Global connection number; makes `--verify` versions unique per writer.
    id: u64,
    version: u64,
    wbuf: Vec<u8>,
    wpos: usize,
    rbuf: Vec<u8>,
    rstart: usize,
    rend: usize,
    pending: VecDeque<Pending>,
    /// Keys that missed under `--cache-aside` and are to be set next.
    refill: VecDeque<u64>,
    /// Whether EPOLLOUT is registered (only while writes are backed up).
    pub want_write: bool,
    pub dead: bool,
    /// Scratch for formatting an expected key while parsing.
    name: Vec<u8>,
    /// Meta protocol: `mg <key> v k` and `ms <key> <len>`, answered
    /// `VA <len> k<key>` / `EN` and `HD`.
    meta: bool,
    /// `--reconnect-every`: requests per connection (cache-aside refills
    /// not counted) before it is replaced by a new one (0: never).
    reconnect_every: u64,
    /// Requests this connection may still issue before it is replaced.
    left: u64,
    /// The auth request, sent again on every new connection.
    auth: Vec<u8>,
}

/// Reads this much at a time; big enough to swallow many pipelined replies.
const READ_CHUNK: usize = 64 * 1024;

impl<T: Transport> Conn<T> {
    pub fn new(t: T, id: u64, oauth: Option<&str>, meta: bool, reconnect_every: u64) -> Conn<T> {
        let mut auth = Vec::new();
        if let Some(token) = oauth {
            // IronCache authentication: the token set as the value of key
            // "oauth"; the server answers STORED and scopes later keys.
            auth.extend_from_slice(if meta {
                b"ms oauth "
            } else {
                b"set oauth 0 0 "
            });
            push_decimal(&mut auth, token.len() as u64);
            auth.extend_from_slice(b"\r\n");
            auth.extend_from_slice(token.as_bytes());
            auth.extend_from_slice(b"\r\n");
        }
        let mut c = Conn {
            t,
            id,
            version: 0,
            wbuf: Vec::with_capacity(READ_CHUNK),
            wpos: 0,
            rbuf: vec![0; 2 * READ_CHUNK],
            rstart: 0,
            rend: 0,
            pending: VecDeque::new(),
            refill: VecDeque::new(),
            want_write: false,
            dead: false,
            name: Vec::with_capacity(64),
            meta,
            reconnect_every,
            left: if reconnect_every == 0 {
                u64::MAX
            } else {
                reconnect_every
            },
            auth,
        };
        c.queue_auth(Instant::now());
        c
    }

    fn queue_auth(&mut self, now: Instant) {
        if !self.auth.is_empty() {
            self.wbuf.extend_from_slice(&self.auth);
            self.pending.push_back(Pending {
                op: Op::Auth,
                sent: now,
            });
        }
    }

    /// Whether this connection has issued its `--reconnect-every` share and
    /// every reply to it is in, so it is due to be replaced.
    pub fn due_for_reconnect(&self) -> bool {
        self.left == 0 && self.pending.is_empty() && self.refill.is_empty()
    }

    /// Replaces the connection with a new one to `addr` (non-blocking
    /// connect; the handshake runs as the event loop drives it). The caller
    /// moves the epoll registration to the new descriptor.
    pub fn reconnect(&mut self, addr: SocketAddr, ctx: &T::Ctx, now: Instant) -> io::Result<()> {
        self.t.close();
        let stream = connect_nonblocking(addr)?;
        self.t.reopen(stream, ctx)?;
        self.wbuf.clear();
        self.wpos = 0;
        self.rstart = 0;
        self.rend = 0;
        self.want_write = false;
        self.left = self.reconnect_every;
        self.queue_auth(now);
        Ok(())
    }

    /// Where a connection that owes replies stands, for the stall report:
    /// whether the bytes are still here or the server holds them.
    pub fn describe_stuck(&self) -> String {
        format!(
            "connection {}: {} replies owed, {} request bytes unsent{}, {} reply bytes parsed in part",
            self.id,
            self.pending.len(),
            self.wbuf.len() - self.wpos,
            if self.t.has_unsent() {
                " (and records below)"
            } else {
                ""
            },
            self.rend - self.rstart,
        )
    }

    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// Whether there is something the socket's writability would let go
    /// (EPOLLOUT is wanted).
    pub fn has_unsent(&self) -> bool {
        (self.wpos < self.wbuf.len() && self.t.write_ready()) || self.t.has_unsent()
    }

    /// Tops the pipeline up to the workload's depth. Sets owed by
    /// cache-aside misses go first: a real application sets right after the
    /// miss, and they must go out even once the load has stopped.
    pub fn fill(&mut self, w: &mut Workload, now: Instant) {
        let depth = w.depth();
        // Reconnects pace only the measured load, not the prefill.
        let bounded = self.reconnect_every != 0 && matches!(w.phase, Phase::Load);
        while self.pending.len() < depth {
            let op = match self.refill.pop_front() {
                Some(key) => Op::Set(key, w.value_len()),
                None if bounded && self.left == 0 => break,
                None => match w.next_op() {
                    Some(op) => {
                        self.left -= u64::from(bounded);
                        op
                    }
                    None => break,
                },
            };
            self.encode(op, w);
            self.pending.push_back(Pending { op, sent: now });
        }
    }

    fn encode(&mut self, op: Op, w: &Workload) {
        let kf = &w.cfg.key_format;
        match op {
            Op::Auth => unreachable!("auth is queued by Conn::new"),
            Op::Get(key) => {
                self.wbuf
                    .extend_from_slice(if self.meta { b"mg " } else { b"get " });
                kf.push(&mut self.wbuf, key);
                self.wbuf
                    .extend_from_slice(if self.meta { b" v k\r\n" } else { b"\r\n" });
            }
            Op::Set(key, len) => {
                self.name.clear();
                kf.push(&mut self.name, key);
                self.version += 1;
                let version = self.id << 40 | self.version;
                // A verified value always holds its header, so it may come
                // out longer than asked for; the length line must match.
                let len = if w.cfg.verify {
                    len.max(self.name.len() + VERIFY_OVERHEAD)
                } else {
                    len
                };
                self.wbuf
                    .extend_from_slice(if self.meta { b"ms " } else { b"set " });
                self.wbuf.extend_from_slice(&self.name);
                self.wbuf
                    .extend_from_slice(if self.meta { b" " } else { b" 0 0 " });
                push_decimal(&mut self.wbuf, len as u64);
                self.wbuf.extend_from_slice(b"\r\n");
                push_value(&mut self.wbuf, &self.name, version, len, w.cfg.verify);
                self.wbuf.extend_from_slice(b"\r\n");
            }
        }
    }

    /// Writes what it can; `Ok(())` even if some stays buffered (the caller
    /// then asks epoll for writability).
    pub fn flush(&mut self) -> io::Result<()> {
        while self.wpos < self.wbuf.len() {
            match self.t.write(&self.wbuf[self.wpos..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.wpos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        self.t.flush()?;
        if self.wpos == self.wbuf.len() {
            self.wbuf.clear();
            self.wpos = 0;
        }
        Ok(())
    }

    /// One socket read, then parses every complete reply (over TLS, as the
    /// plaintext of that read comes out of rustls). Counts a handshake that
    /// finished. An `Err` means the connection is finished (the reason has
    /// been counted and reported).
    pub fn read_and_parse(&mut self, w: &mut Workload, now: Instant) -> Result<(), ()> {
        loop {
            self.make_room();
            let got = self.t.read(&mut self.rbuf[self.rend..]);
            match self.t.take_handshake() {
                Some(Handshake::Full) => w.stats.counts.handshakes_full += 1,
                Some(Handshake::Resumed) => w.stats.counts.handshakes_resumed += 1,
                None => {}
            }
            match got {
                Ok(0) => {
                    if !self.pending.is_empty() {
                        w.stats.counts.conn_errors += 1;
                        w.report_error(format_args!(
                            "server closed connection {} with {} replies owed",
                            self.id,
                            self.pending.len()
                        ));
                    }
                    return Err(());
                }
                Ok(n) => self.rend += n,
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::Interrupted =>
                {
                    return Ok(())
                }
                Err(e) => {
                    w.stats.counts.conn_errors += 1;
                    w.report_error(format_args!("connection {}: read: {e}", self.id));
                    return Err(());
                }
            }
            self.parse(w, now)?;
            // Plain TCP: one read per readiness event. TLS: until the
            // plaintext of that one socket read has all been parsed.
            if !self.t.has_buffered() {
                return Ok(());
            }
        }
    }

    /// Keeps at least half a read chunk free at the end of the read buffer.
    fn make_room(&mut self) {
        if self.rstart == self.rend {
            self.rstart = 0;
            self.rend = 0;
        } else if self.rbuf.len() - self.rend < READ_CHUNK / 2 {
            // Move the partial reply to the front, growing for large values.
            self.rbuf.copy_within(self.rstart..self.rend, 0);
            self.rend -= self.rstart;
            self.rstart = 0;
            if self.rbuf.len() - self.rend < READ_CHUNK / 2 {
                let len = self.rbuf.len() * 2;
                self.rbuf.resize(len, 0);
            }
        }
    }

    fn parse(&mut self, w: &mut Workload, now: Instant) -> Result<(), ()> {
        while self.rstart < self.rend {
            let buf = &self.rbuf[self.rstart..self.rend];
            let Some(front) = self.pending.front() else {
                w.stats.counts.malformed += 1;
                w.report_error(format_args!(
                    "connection {}: unsolicited bytes {:?}",
                    self.id,
                    String::from_utf8_lossy(&buf[..buf.len().min(80)])
                ));
                return Err(());
            };
            let Some(eol) = memchr::memmem::find(buf, b"\r\n") else {
                if buf.len() > 4096 {
                    // No reply line is this long; the stream is garbage.
                    return self.malformed(w, buf.len().min(80));
                }
                return Ok(());
            };
            let line = &buf[..eol];
            let op = front.op;
            let consumed;
            let mut ok = true;
            match op {
                Op::Auth | Op::Set(..) => {
                    consumed = eol + 2;
                    if line == if self.meta { &b"HD"[..] } else { b"STORED" } {
                        if let Op::Set(..) = op {
                            w.stats.counts.sets += 1;
                        }
                    } else if is_error_line(line) {
                        ok = false;
                        w.stats.counts.server_errors += 1;
                        let what = if let Op::Auth = op { "auth" } else { "set" };
                        w.report_error(format_args!(
                            "{what} answered {:?}",
                            String::from_utf8_lossy(line)
                        ));
                    } else {
                        return self.malformed(w, eol);
                    }
                }
                Op::Get(key) => {
                    let (miss, hit_prefix, tail): (&[u8], &[u8], &[u8]) = if self.meta {
                        (b"EN", b"VA ", b"\r\n")
                    } else {
                        (b"END", b"VALUE ", b"\r\nEND\r\n")
                    };
                    if line == miss {
                        consumed = eol + 2;
                        w.stats.counts.gets += 1;
                        w.stats.counts.misses += 1;
                        if key & SCAN_BIT != 0 {
                            w.stats.counts.scan_gets += 1;
                        }
                        if w.cfg.cache_aside {
                            self.refill.push_back(key);
                        }
                    } else if let Some(rest) = line.strip_prefix(hit_prefix) {
                        let parsed = if self.meta {
                            parse_va_line(rest)
                        } else {
                            parse_value_line(rest)
                        };
                        let Some((got_key, bytes)) = parsed else {
                            return self.malformed(w, eol);
                        };
                        let data_at = eol + 2;
                        let need = data_at + bytes + tail.len();
                        if buf.len() < need {
                            return Ok(()); // the rest of the value is in flight
                        }
                        if &buf[data_at + bytes..need] != tail {
                            return self.malformed(w, eol);
                        }
                        consumed = need;
                        w.stats.counts.gets += 1;
                        w.stats.counts.hits += 1;
                        if key & SCAN_BIT != 0 {
                            w.stats.counts.scan_gets += 1;
                            w.stats.counts.scan_hits += 1;
                        }
                        self.name.clear();
                        w.cfg.key_format.push(&mut self.name, key);
                        if got_key != self.name.as_slice() {
                            ok = false;
                            w.stats.counts.wrong_values += 1;
                            w.report_error(format_args!(
                                "get {} returned key {}",
                                String::from_utf8_lossy(&self.name),
                                String::from_utf8_lossy(got_key)
                            ));
                        } else if w.cfg.verify {
                            if let Err(e) = check_value(&self.name, &buf[data_at..data_at + bytes])
                            {
                                ok = false;
                                w.stats.counts.wrong_values += 1;
                                w.report_error(format_args!(
                                    "get {}: {e}",
                                    String::from_utf8_lossy(&self.name)
                                ));
                            }
                        }
                    } else if is_error_line(line) {
                        consumed = eol + 2;
                        ok = false;
                        w.stats.counts.server_errors += 1;
                        w.report_error(format_args!(
                            "get answered {:?}",
                            String::from_utf8_lossy(line)
                        ));
                    } else {
                        return self.malformed(w, eol);
                    }
                }
            }
            let sent = self.pending.pop_front().expect("front exists").sent;
            self.rstart += consumed;
            if ok && !matches!(op, Op::Auth) {
                let ns = now.saturating_duration_since(sent).as_nanos() as u64;
                w.stats.latency.saturating_record(ns.max(1));
                if matches!(w.phase, Phase::Load) {
                    w.completed(now);
                }
            }
        }
        Ok(())
    }

    fn malformed(&mut self, w: &mut Workload, show: usize) -> Result<(), ()> {
        let bytes = &self.rbuf[self.rstart..self.rend];
        w.stats.counts.malformed += 1;
        w.report_error(format_args!(
            "connection {}: malformed reply {:?}",
            self.id,
            String::from_utf8_lossy(&bytes[..show.min(bytes.len()).min(200)])
        ));
        Err(())
    }
}

fn is_error_line(line: &[u8]) -> bool {
    line == b"ERROR" || line.starts_with(b"CLIENT_ERROR ") || line.starts_with(b"SERVER_ERROR ")
}

/// `KEY FLAGS BYTES [CAS]` → (key, bytes).
fn parse_value_line(rest: &[u8]) -> Option<(&[u8], usize)> {
    let mut fields = rest.split(|&b| b == b' ');
    let key = fields.next().filter(|k| !k.is_empty())?;
    let flags = fields.next()?;
    let bytes = fields.next()?;
    if fields.next().is_some_and(|cas| !all_digits(cas)) || fields.next().is_some() {
        return None;
    }
    if !all_digits(flags) || !all_digits(bytes) || bytes.len() > 10 {
        return None;
    }
    let n = bytes
        .iter()
        .fold(0usize, |acc, &d| acc * 10 + (d - b'0') as usize);
    Some((key, n))
}

/// `BYTES k<KEY>` (the reply to `mg <key> v k`) → (key, bytes).
fn parse_va_line(rest: &[u8]) -> Option<(&[u8], usize)> {
    let mut fields = rest.split(|&b| b == b' ');
    let bytes = fields.next()?;
    let key = fields
        .next()?
        .strip_prefix(b"k")
        .filter(|k| !k.is_empty())?;
    if fields.next().is_some() || !all_digits(bytes) || bytes.len() > 10 {
        return None;
    }
    let n = bytes
        .iter()
        .fold(0usize, |acc, &d| acc * 10 + (d - b'0') as usize);
    Some((key, n))
}

fn all_digits(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(u8::is_ascii_digit)
}
