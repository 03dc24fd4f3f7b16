//! One client connection: read, frame, gate, route, settle, write.
//!
//! Owns the connection's buffers and the order of pipelined replies. It
//! has no grammar of its own (that is `protocol`), no command meaning (that
//! is `shard`; a request that names no key is `shard::admin`'s, and this
//! only carries what it asks of every shard) and no say in authentication
//! (that is `session`, which it asks about each request). Its limits in
//! time and memory are [`super::framing`]'s rules, and the replies of other
//! shards are put in place by [`super::remote`].
//!
//! Per read: every whole request in the buffer is parsed. A key this core
//! owns runs inline, its reply appended to `out`; a key another core owns is
//! copied into that core's queue, and its place in `out` is remembered. Then
//! each queue is sent once, the answers are spliced into their places, and
//! `out` is written in one go. An owner may answer part of a queue (its
//! answers are bounded): what is in order is written, and the rest is sent
//! again.
//!
//! A connection whose only outstanding request went to another core, with
//! nothing of its own to write but a short tail, lends that core its
//! socket (`envelope::Pen`, `--owner-writes`): the owner writes the reply,
//! and the connection goes back to reading at once instead of waiting to
//! be woken for the answer. Until the answer is back it writes nothing and
//! keeps its descriptor open; what the owner could not write, it writes.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::io;
use std::mem::ManuallyDrop;
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use tracing::{debug, info};

use super::admission::admit;
use super::core::Core;
use super::envelope::{Answer, Part, Pen};
use super::framing::{
    Budget, Deadlines, Expiry, ReadBuffer, IDLE_REPLY_BUFFER, OUTPUT_HIGH_WATER, READ_BUFFER,
    RELEASE_AFTER, SHRINK_AFTER,
};
use super::remote::{Forward, Remote, Spliced};
use super::socket::{send_now, Socket};
use crate::clock::coarse_now;
use crate::keyspace::{shard_of, NsHasher};
use crate::protocol::{
    binary, compose, parse, ErrorReply, Keyed, Limits, Parsed, Request, Response, MAX_KEY_LEN,
};
use crate::session::{Client, Gate, Login, Peer, Session};
use crate::shard::admin::{Server, Step};
use crate::shard::PREFETCH_AHEAD;
use crate::tenancy::NsLimits;

/// At most this many requests wait on other shards at once.
const MAX_QUEUED_REMOTE: usize = 512;
/// What a connection's buffers may hold while it is idle: its read
/// buffer and a few small reply buffers (TLS: and its ciphertext
/// buffers). Past it, they are given back once it has been quiet for
/// `SHRINK_AFTER`. (A connection on the core's ring, plain or TLS, keeps
/// none once quiet for `RELEASE_AFTER`: `shrink_idle`.)
const IDLE_BUFFERS: usize = READ_BUFFER + 4 * IDLE_REPLY_BUFFER;
/// The largest reply buffer kept aside for the next splice of other
/// shards' replies (`settle`). A larger one, left by a burst of large
/// values, is given back at once, so a connection holds one buffer of
/// replies, not two, while a slow client keeps it waiting.
const SPARE_KEPT: usize = 256 << 10;

/// What the read loop does after a request.
enum Next {
    Continue,
    Close,
    /// Close without a reply (a cross-protocol request).
    HangUp,
}

pub async fn serve(core: Rc<Core>, socket: Socket) {
    let Some((socket, _admission)) = admit(&core, socket).await else {
        return;
    };
    let mut conn = Connection::new(core, socket);
    match conn.run().await {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::TimedOut => {
            let why = conn.expired.or(conn.armed);
            let mut c = conn.core.conns.borrow_mut();
            match why {
                Some(Expiry::Idle) => c.idle_kicks += 1,
                Some(Expiry::Request) => c.request_timeouts += 1,
                Some(Expiry::Handshake) => c.auth_timeouts += 1,
                Some(Expiry::Write) => c.write_timeouts += 1,
                None => {}
            }
            debug!(peer = ?conn.peer, why = why.map_or("timeout", Expiry::describe), "closing connection")
        }
        Err(e) => debug!(peer = ?conn.peer, error = %e, "connection error"),
    }
    // Nothing closes the descriptor while another core may write to it.
    if let Err(e) = conn.finish_lent().await {
        debug!(peer = ?conn.peer, error = %e, "connection error");
    }
    conn.core.conns.borrow_mut().conn_buffer_bytes -= conn.reported as u64;
    conn.core.buffers_freed(conn.reported);
    conn.take_socket().close().await;
}

/// A request forwarded with the connection's socket lent to its owner.
#[derive(Clone, Copy)]
struct Lent {
    shard: usize,
    waiter: u32,
}

struct Connection {
    core: Rc<Core>,
    /// Dropped by hand (see `Drop`), or taken to be closed.
    socket: ManuallyDrop<Socket>,
    socket_taken: bool,
    /// The request whose socket is lent, until its answer is back.
    lent: Option<Lent>,
    peer: Peer,
    session: Session,
    hasher: NsHasher,
    limits: Limits,
    budget: Budget,
    deadlines: Deadlines,
    /// When the connection last finished a request, or opened
    /// (`coarse_now` time): the idle deadline and the release of its
    /// buffers count from here.
    quiet_since: Duration,
    /// The limit the pending read or write waits under, and the one found
    /// past before any wait.
    armed: Option<Expiry>,
    expired: Option<Expiry>,
    read: ReadBuffer,
    out: Vec<u8>,
    spare: Vec<u8>,
    remote: Remote,
    /// Buffer bytes last added to the core's `conn_buffer_bytes`.
    reported: usize,
    /// Capacity of this connection's buffers taken out of it while in use
    /// (the read buffer during `process`, a reply buffer during its
    /// write), so that the gauge counts a connection stuck in a write.
    in_use: usize,
}

impl Drop for Connection {
    fn drop(&mut self) {
        // A connection dropped midway (its core shutting down) while
        // another core may still write to its descriptor leaks it: closed,
        // the number could be reused for another connection.
        if !self.socket_taken && self.lent.is_none() {
            // SAFETY: the socket was not taken, and is dropped only here.
            unsafe { ManuallyDrop::drop(&mut self.socket) };
        }
    }
}

impl Connection {
    /// The socket, to close; the connection no longer drops it.
    fn take_socket(&mut self) -> Socket {
        debug_assert!(!self.socket_taken && self.lent.is_none());
        self.socket_taken = true;
        // SAFETY: taken once (the flag), and `Drop` then leaves it alone.
        unsafe { ManuallyDrop::take(&mut self.socket) }
    }

    fn new(core: Rc<Core>, socket: Socket) -> Connection {
        let config = &core.shared.config;
        let secure = core.shared.auth.is_secure();
        let now = coarse_now();
        let budget = if secure {
            Budget::unauthenticated()
        } else {
            // Open mode has no handshake: any command binds a connection.
            Budget::bound(config.max_item_size)
        };
        let session = Session::new(secure);
        let hasher = core.shard.borrow().keys().for_ns(session.ns().id);
        Connection {
            peer: socket.peer_addr(),
            socket: ManuallyDrop::new(socket),
            socket_taken: false,
            lent: None,
            session,
            hasher,
            limits: Limits {
                max_item_size: budget.max_value,
            },
            budget,
            deadlines: Deadlines::new(config, secure, now),
            quiet_since: now,
            armed: None,
            expired: None,
            read: ReadBuffer::new(),
            out: Vec::with_capacity(IDLE_REPLY_BUFFER),
            spare: Vec::new(),
            remote: Remote::new(core.shards),
            reported: 0,
            in_use: 0,
            core,
        }
    }

    async fn run(&mut self) -> io::Result<()> {
        let mut first = true;
        self.report_buffers();
        loop {
            let waking = self.read.capacity() == 0;
            if waking {
                // Idle without buffers (`shrink_idle`): they come back
                // with the next request.
                let (timeout, _) = self.read_timeout()?;
                self.socket.readable(timeout).await?;
                self.socket.restore();
                self.out = Vec::with_capacity(IDLE_REPLY_BUFFER);
            }
            self.read.make_room(self.budget.max_request);
            if waking {
                // Counted at once: thousands of idle clients that all close
                // take buffers back for their last read, then free them.
                self.report_buffers();
            }
            let (timeout, shrinking) = self.read_timeout()?;
            let (buf, at) = self.read.lend();
            let (n, buf) = self.read_socket(buf, at, timeout).await;
            let n = match n {
                // TLS bytes that are not plaintext yet: deadlines again.
                // (Only TLS says so: from a plain socket it is an error, not
                // a reason to read again at once.)
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && self.socket.is_tls() => {
                    self.read.filled(buf, 0);
                    continue;
                }
                Err(e)
                    if e.kind() == io::ErrorKind::TimedOut
                        && shrinking
                        && self.expired.is_none() =>
                {
                    self.read.filled(buf, 0);
                    // Quiet for a while after a burst: give its buffers back.
                    self.shrink_idle();
                    self.report_buffers();
                    continue;
                }
                Err(e) => {
                    self.read.filled(buf, 0);
                    return Err(e);
                }
                Ok(n) => n,
            };
            self.read.filled(buf, n);
            if n == 0 {
                return Ok(());
            }
            // Nothing is written before the lent socket's answer is back.
            self.finish_lent().await?;
            self.core.conns.borrow_mut().bytes_read += n as u64;
            if std::mem::take(&mut first) && self.read.unparsed()[0] == binary::REQUEST_MAGIC {
                crate::throttled_info!(peer = ?self.peer, "refusing a binary-protocol client");
                let refusal = binary::refusal(self.read.unparsed());
                return self.write(refusal).await.0;
            }
            let next = self.process().await;
            self.read.shrink();
            // (A lent socket's tail waits in `out`.)
            if self.out.capacity() > 4 * OUTPUT_HIGH_WATER && self.lent.is_none() {
                self.out = Vec::with_capacity(IDLE_REPLY_BUFFER);
                self.spare = Vec::new();
            }
            self.report_buffers();
            self.quiet_since = coarse_now();
            if matches!(next?, Next::Close | Next::HangUp) || self.core.shared.shutting_down() {
                return Ok(());
            }
        }
    }

    /// How long the next read may wait (`framing::Deadlines`), and whether
    /// it waits only to see the connection quiet enough to shrink. A TLS
    /// record half-received is a request half-received: both are held to
    /// the request deadline, from whichever began first.
    fn read_timeout(&mut self) -> io::Result<(Option<Duration>, bool)> {
        let partial_since = match (self.read.partial_since(), self.socket.partial_since()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let now = coarse_now();
        let deadline = self
            .deadlines
            .read(now, self.quiet_since, partial_since)
            .map_err(|why| self.expire(why))?;
        self.armed = deadline.map(|(_, why)| why);
        let timeout = deadline.map(|(left, _)| left);
        // Past its idle share, a connection shrinks once quiet for
        // `SHRINK_AFTER`, and gives all back once quiet for
        // `RELEASE_AFTER`. A request half-read keeps its bytes, but not
        // the replies' buffers of a burst before it.
        let held = self.buffer_bytes();
        let wait = if partial_since.is_some() {
            (held - self.read.capacity() > IDLE_BUFFERS - READ_BUFFER).then_some(SHRINK_AFTER)
        } else if held > IDLE_BUFFERS {
            Some(SHRINK_AFTER)
        } else if held > 0 && self.socket.waits_unbuffered() {
            // (Looked at again a second later where it could not.)
            Some(
                (self.quiet_since + RELEASE_AFTER)
                    .saturating_sub(now)
                    .max(SHRINK_AFTER),
            )
        } else {
            None
        };
        Ok(match wait {
            Some(wait) if timeout.is_none_or(|t| t > wait) => (Some(wait), true),
            _ => (timeout, false),
        })
    }

    /// The connection is past `why`: the error that closes it.
    fn expire(&mut self, why: Expiry) -> io::Error {
        self.expired = Some(why);
        io::Error::new(io::ErrorKind::TimedOut, why.describe())
    }

    /// Back to an idle connection's buffers: none, where the socket can
    /// wait for the next request without one, the connection has been
    /// quiet for `RELEASE_AFTER` and nothing is left over; otherwise the
    /// read buffer and a small reply buffer. Called only between reads,
    /// with every reply written; a request half-read keeps its bytes.
    fn shrink_idle(&mut self) {
        if self.socket.waits_unbuffered()
            && coarse_now().saturating_sub(self.quiet_since) >= RELEASE_AFTER
            && self.out.is_empty()
            && self.lent.is_none()
            && self.remote.is_empty()
            && self.read.release()
        {
            let released = self.socket.release();
            debug_assert!(
                released,
                "a socket that waits unbuffered gives its buffers back"
            );
            self.out = Vec::new();
            self.spare = Vec::new();
            self.remote.shrink(0);
            return;
        }
        self.socket.shrink_idle();
        self.read.shrink_idle();
        if self.out.is_empty() && self.out.capacity() > IDLE_REPLY_BUFFER {
            self.out = Vec::with_capacity(IDLE_REPLY_BUFFER);
        }
        if self.spare.capacity() > IDLE_REPLY_BUFFER {
            self.spare = Vec::new();
        }
        if self.remote.is_empty() {
            self.remote.shrink(IDLE_REPLY_BUFFER);
        }
    }

    fn buffer_bytes(&self) -> usize {
        self.socket.buffer_bytes()
            + self.read.capacity()
            + self.out.capacity()
            + self.spare.capacity()
            + self.remote.capacity()
            + self.in_use
    }

    /// Keeps the core's `conn_buffer_bytes` gauge up to date.
    fn report_buffers(&mut self) {
        let now = self.buffer_bytes();
        if now != self.reported {
            let mut c = self.core.conns.borrow_mut();
            c.conn_buffer_bytes -= self.reported as u64;
            c.conn_buffer_bytes += now as u64;
            if now < self.reported {
                self.core.buffers_freed(self.reported - now);
            }
            self.reported = now;
        }
    }

    /// Executes every whole request buffered, then writes the replies.
    async fn process(&mut self) -> io::Result<Next> {
        let before = self.read.cursor();
        let mut read = std::mem::take(&mut self.read);
        let held = read.capacity();
        self.in_use += held;
        let next = self.process_buffered(&mut read).await;
        self.in_use -= held;
        read.passed(before, coarse_now());
        self.read = read;
        let next = next?;
        if let Next::Continue = next {
            if self.lend_socket() {
                return Ok(next);
            }
        }
        self.settle().await?;
        if let Next::HangUp = next {
            // As memcached: nothing more is written, not even earlier replies.
            self.out.clear();
            return Ok(next);
        }
        self.flush_out().await?;
        Ok(next)
    }

    /// Parses each request once. Up to [`PREFETCH_AHEAD`] whole requests
    /// are parsed ahead of the one handled, and the shard starts loading
    /// the items of those whose keys it owns, so their cache misses overlap
    /// instead of coming one per request as they run.
    async fn process_buffered(&mut self, read: &mut ReadBuffer) -> io::Result<Next> {
        let (buf, cursor) = read.parts();
        let mut ahead: VecDeque<Parsed<'_>> = VecDeque::with_capacity(PREFETCH_AHEAD);
        loop {
            if !cursor.discard() {
                return Ok(Next::Continue);
            }
            let buffered = cursor.unparsed(buf);
            if ahead.is_empty() {
                self.look_ahead(buffered, &mut ahead);
            }
            match ahead
                .pop_front()
                .unwrap_or_else(|| parse(buffered, &self.limits))
            {
                Parsed::Incomplete => {
                    if buffered.len() >= self.budget.max_request {
                        self.out.extend_from_slice(ErrorReply::LineTooLong.line());
                        return Ok(Next::Close);
                    }
                    return Ok(Next::Continue);
                }
                Parsed::Close(error) => {
                    crate::throttled_warn!(peer = ?self.peer, "closing connection: command line too long");
                    self.out.extend_from_slice(error.line());
                    return Ok(Next::Close);
                }
                Parsed::HangUp => {
                    debug!(peer = ?self.peer, "hanging up on an HTTP request");
                    return Ok(Next::HangUp);
                }
                Parsed::Invalid {
                    error,
                    noreply,
                    consumed,
                    swallow,
                } => {
                    if !noreply {
                        self.out.extend_from_slice(error.line());
                    }
                    cursor.consume(consumed, swallow);
                }
                Parsed::Request { request, consumed } => {
                    cursor.consume(consumed, request.swallow());
                    if let Next::Close = self.handle(request, &buffered[..consumed]).await? {
                        return Ok(Next::Close);
                    }
                }
            }
            self.relieve().await?;
        }
    }

    /// Parses up to [`PREFETCH_AHEAD`] requests from the start of
    /// `buffered` into `ahead`, up to and including the first that is not a
    /// whole request or is followed by a value to discard, and prefetches
    /// the items of the keys this core owns. Before the session is bound
    /// there is no namespace to hash keys in, and requests are parsed one
    /// at a time. (Parsing does not depend on what the requests ahead do:
    /// a bound session's limits stay as they are.)
    fn look_ahead<'b>(&self, buffered: &'b [u8], ahead: &mut VecDeque<Parsed<'b>>) {
        if !self.session.is_bound() {
            return;
        }
        let mut hashes = [0u64; PREFETCH_AHEAD];
        let mut decoded = [0u8; MAX_KEY_LEN];
        let (mut n, mut pos) = (0, 0);
        while ahead.len() < PREFETCH_AHEAD {
            let parsed = parse(&buffered[pos..], &self.limits);
            let Parsed::Request { request, consumed } = &parsed else {
                ahead.push_back(parsed);
                break;
            };
            pos += consumed;
            if let Some(key) = request.routing_key(&mut decoded) {
                let hash = self.hasher.hash(key);
                if shard_of(hash, self.core.shards) == self.core.index {
                    hashes[n] = hash;
                    n += 1;
                }
            }
            let swallow = request.swallow();
            ahead.push_back(parsed);
            if swallow > 0 || pos == buffered.len() {
                break;
            }
        }
        if n > 1 {
            self.core.shard.borrow().prefetch(&hashes[..n]);
        }
    }

    /// Writes out what is pending once it passes the output budget, or once
    /// enough waits on other shards, so one connection's replies and
    /// forwarded requests stay bounded in memory. (What other shards
    /// answer is bounded by `envelope::answer_batch`, whatever was asked.)
    async fn relieve(&mut self) -> io::Result<()> {
        if self.out.len() >= self.budget.output
            || self.remote.pending() >= MAX_QUEUED_REMOTE
            || self.remote.wire_bytes >= OUTPUT_HIGH_WATER
        {
            self.settle().await?;
            self.flush_out().await?;
        }
        Ok(())
    }

    /// One request; `wire` is its bytes as the client sent them.
    async fn handle(&mut self, request: Request<'_>, wire: &[u8]) -> io::Result<Next> {
        match self
            .session
            .gate(&request, &self.core.shared.auth, &mut self.out)
        {
            Gate::Run => {}
            Gate::Refused => return Ok(Next::Continue),
            Gate::Revoked => {
                info!(peer = ?self.peer, "closing session: its grant was revoked");
                return Ok(Next::Close);
            }
            Gate::Handshake(handshake) => return Ok(self.authenticate(handshake)),
        }
        match request {
            Request::Keyed(keyed) => {
                let mut buf = [0u8; MAX_KEY_LEN];
                let key = keyed.routing_key(&mut buf);
                self.keyed(&keyed, key, Forward::Wire(wire, keyed.reply_bound()));
                Ok(Next::Continue)
            }
            Request::Get { kind, keys } => {
                for key in keys.iter() {
                    self.keyed(&Keyed::Get { kind, key }, key, Forward::Get(kind, key));
                    // A multiget of large values is written as it goes.
                    self.relieve().await?;
                }
                compose(&Response::End, &mut self.out);
                Ok(Next::Continue)
            }
            _ => self.admin(&request).await,
        }
    }

    /// A request that names no key. Its meaning is the shard's
    /// (`shard::admin`); this carries what it asks of every shard, once
    /// the replies before it are in place.
    async fn admin(&mut self, request: &Request<'_>) -> io::Result<Next> {
        let core = self.core.clone();
        let server = Server {
            config: &core.shared.config,
            shards: core.shards,
            secure: core.shared.auth.is_secure(),
        };
        let ns = self.session.ns().id;
        let step = core
            .shard
            .borrow_mut()
            .admin(request, ns, &server, &mut self.out);
        match step {
            Step::Done => {}
            Step::Close => return Ok(Next::Close),
            Step::Everywhere(op) => {
                self.settle().await?;
                // Boxed: rare, and every connection's task would otherwise
                // be the size of its state.
                let total = Box::pin(core.everywhere(op)).await;
                core.shard
                    .borrow()
                    .finish(request, total.as_ref(), &server, &mut self.out);
            }
        }
        Ok(Next::Continue)
    }

    /// A single-key request: inline if this core owns the key, else queued
    /// for its owner.
    fn keyed(&mut self, request: &Keyed, key: &[u8], forward: Forward) {
        let hash = self.hasher.hash(key);
        let owner = shard_of(hash, self.core.shards);
        if owner == self.core.index {
            let ns = self.session.ns().id;
            self.core
                .shard
                .borrow_mut()
                .execute(ns, hash, request, &mut self.out);
        } else {
            self.core.conns.borrow_mut().forward_requests += 1;
            self.remote.queue(owner, self.out.len(), hash, forward);
        }
    }

    /// The IronCache handshake (`session`); a bound connection takes a
    /// bound connection's budget and has no handshake deadline.
    fn authenticate(&mut self, handshake: crate::protocol::request::Handshake) -> Next {
        self.core.conns.borrow_mut().auth_cmds += 1;
        let client = Client {
            peer: self.peer,
            cert: self.socket.client_cert(),
        };
        let shared = self.core.shared.clone();
        let limits = NsLimits {
            total: shared.config.max_namespaces,
            per_project: shared.config.max_caches_per_project,
        };
        match self
            .session
            .authenticate(handshake, &shared.auth, client, limits, &mut self.out)
        {
            Login::Bound => {
                self.hasher = self.core.shard.borrow().keys().for_ns(self.session.ns().id);
                self.budget = Budget::bound(shared.config.max_item_size);
                self.limits.max_item_size = self.budget.max_value;
                self.deadlines.authenticated();
                Next::Continue
            }
            Login::Refused => Next::Continue,
            Login::Failed => {
                self.core.conns.borrow_mut().auth_errors += 1;
                Next::Continue
            }
            Login::Close => {
                self.core.conns.borrow_mut().auth_errors += 1;
                Next::Close
            }
        }
    }

    /// Forwards the queued requests with the socket lent to their owner,
    /// where that one core's replies are all there is to write but for
    /// this core's own before them, which go out first, and a short tail
    /// after them. True if they went.
    fn lend_socket(&mut self) -> bool {
        if !self.core.shared.config.owner_writes {
            return false;
        }
        let Some((shard, pos)) = self.remote.lendable() else {
            return false;
        };
        let Some((fd, _)) = self.socket.lendable() else {
            return false;
        };
        // What follows the owner's replies goes with them (at most
        // `envelope::TAIL_MAX`).
        let Some(pen) = Pen::new(fd, self.out.len() - pos) else {
            return false;
        };
        if pos > 0 {
            // What the owner writes follows these bytes: they go now, as
            // far as the socket takes them without waiting (nothing of
            // this connection's is being written: writes finish before
            // the next read).
            let n = send_now(fd, &self.out[..pos], &[]);
            self.core.conns.borrow_mut().bytes_written += n as u64;
            self.out.drain(..n);
            self.remote.written_ahead(n);
            if n < pos {
                return false;
            }
        }
        let Some((wire, _)) = self.remote.unanswered(shard) else {
            return false;
        };
        let lent = Some((pen, &self.out[..]));
        let waiter = self.core.forward(shard, self.session.ns(), wire, lent);
        self.lent = Some(Lent { shard, waiter });
        true
    }

    /// Reads, as `Socket::read`. While the socket is lent, the owner's
    /// answer usually comes deferred and is taken after the read; one that
    /// left part of the reply unwritten wakes this core, and that part is
    /// written while the read waits.
    async fn read_socket(
        &mut self,
        buf: Vec<u8>,
        at: usize,
        timeout: Option<Duration>,
    ) -> (io::Result<usize>, Vec<u8>) {
        let Some(lent) = self.lent else {
            return self.socket.read(buf, at, timeout).await;
        };
        let Some((fd, ring)) = self.socket.lendable() else {
            debug_assert!(false, "only a socket on the ring is lent");
            return self.socket.read(buf, at, timeout).await;
        };
        let read = ring.recv(fd, buf, at, timeout);
        futures_lite::pin!(read);
        let core = self.core.clone();
        let first = poll_fn(|cx| match read.as_mut().poll(cx) {
            Poll::Ready(done) => Poll::Ready(Some(done)),
            Poll::Pending if core.part_waiters.poll_ready(lent.waiter, cx) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        })
        .await;
        if let Some(done) = first {
            return done;
        }
        let (answer, part) = core.part_waiters.wait(lent.waiter).await;
        self.lent = None;
        let armed = self.armed;
        if let Err(e) = self.lent_answered(lent, answer, part).await {
            // The read is cancelled with its buffer; the connection closes.
            // A write that timed out is what expired, not the read's wait.
            if e.kind() == io::ErrorKind::TimedOut {
                self.expired = self.expired.or(self.armed);
            }
            return (Err(e), Vec::new());
        }
        // The read goes on under its own deadline.
        self.armed = armed;
        read.await
    }

    /// Waits for the lent socket's answer, if one is due, and writes what
    /// the owner did not.
    async fn finish_lent(&mut self) -> io::Result<()> {
        let Some(lent) = self.lent else {
            return Ok(());
        };
        let (answer, part) = self.core.wait_deferred(lent.waiter).await;
        self.lent = None;
        self.lent_answered(lent, answer, part).await
    }

    /// The owner's answer to a request sent with the socket lent: done if
    /// it wrote the whole reply; otherwise the reply is placed as usual
    /// (sent again if the owner did not run it) and written, but for the
    /// bytes the owner wrote.
    async fn lent_answered(
        &mut self,
        lent: Lent,
        answer: Rc<Answer>,
        part: Part,
    ) -> io::Result<()> {
        let written = part.written as usize;
        self.core.conns.borrow_mut().bytes_written += written as u64;
        if part.written_whole() {
            self.remote.written_by_owner();
            self.out.clear();
            return Ok(());
        }
        // An owner that ran only some of them leaves the rest to be sent
        // again (`settle`): what it did answer waits aside meanwhile.
        let all = self
            .remote
            .unanswered(lent.shard)
            .is_some_and(|(wire, _)| part.consumed == wire.len());
        if let Some(answer) = self.remote.answered(lent.shard, answer, part, all) {
            self.core.release(lent.shard, answer);
        }
        self.settle().await?;
        self.out.drain(..written.min(self.out.len()));
        self.flush_out().await
    }

    /// Sends the queued requests, waits for every answer and splices each
    /// reply into its place, so `out` holds the replies in request order.
    /// Where an owner answered only part of what it was sent, what is in
    /// order is written and the rest is sent again, until all is answered.
    async fn settle(&mut self) -> io::Result<()> {
        if self.remote.is_empty() {
            return Ok(());
        }
        let core = self.core.clone();
        loop {
            let mut waiting = std::mem::take(&mut self.remote.waiting);
            for shard in 0..core.shards {
                if let Some((wire, _)) = self.remote.unanswered(shard) {
                    waiting.push((shard, core.forward(shard, self.session.ns(), wire, None)));
                }
            }
            let last = waiting.len().saturating_sub(1);
            for (i, &(shard, id)) in waiting.iter().enumerate() {
                let (answer, part) = core.part_waiters.wait(id).await;
                // While it waits on other shards, a connection holds no
                // answer whose owner's budget is running short.
                let keep = i == last || !core.reply_budget_short(shard);
                if let Some(answer) = self.remote.answered(shard, answer, part, keep) {
                    core.release(shard, answer);
                }
            }
            waiting.clear();
            self.remote.waiting = waiting;

            let mut ready = std::mem::take(&mut self.spare);
            ready.clear();
            // Sized once: grown by doubling, it could take twice the bytes.
            ready.reserve_exact(self.out.len() + self.remote.unplaced_len());
            let placed = self
                .remote
                .place(&mut self.out, &mut ready, |shard, answer| {
                    core.release(shard, answer)
                });
            match placed {
                Spliced::All => {
                    self.spare = kept_aside(std::mem::replace(&mut self.out, ready));
                    return Ok(());
                }
                Spliced::Until => {
                    // Write what is in order; the rest goes round again,
                    // unless the client has gone.
                    let (result, mut ready) = self.write(ready).await;
                    ready.clear();
                    self.spare = kept_aside(ready);
                    result?;
                    if self.socket.peer_reset() {
                        return Err(io::ErrorKind::ConnectionReset.into());
                    }
                }
            }
        }
    }

    async fn flush_out(&mut self) -> io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let out = std::mem::take(&mut self.out);
        let (result, mut out) = self.write(out).await;
        out.clear();
        self.out = out;
        result
    }

    /// Writes `buf` within the write deadline, and counts it.
    async fn write(&mut self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        let timeout = match self.deadlines.write(coarse_now()) {
            Ok(deadline) => {
                self.armed = deadline.map(|(_, why)| why);
                deadline.map(|(left, _)| left)
            }
            Err(why) => return (Err(self.expire(why)), buf),
        };
        let len = buf.len();
        // Counted while it waits on the client. A buffer no larger than an
        // idle one is not worth the update on every reply: the gauge is
        // brought up to date after each read's requests anyway.
        let held = buf.capacity();
        self.in_use += held;
        if held > IDLE_REPLY_BUFFER {
            self.report_buffers();
        }
        let (result, buf) = self.socket.write_all(buf, timeout).await;
        self.in_use -= held;
        if result.is_ok() {
            self.core.conns.borrow_mut().bytes_written += len as u64;
        }
        (result, buf)
    }
}

/// A reply buffer to keep for the next splice: itself, unless it is
/// larger than `SPARE_KEPT`.
fn kept_aside(buf: Vec<u8>) -> Vec<u8> {
    if buf.capacity() > SPARE_KEPT {
        Vec::new()
    } else {
        buf
    }
}
