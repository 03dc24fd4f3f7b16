//! One client connection: read, gate, route, reorder, write.
//!
//! Owns the connection's buffers, its session (authentication is connection
//! state: until a connection is bound to a namespace only the handshake and a
//! few harmless commands get through), and the order of pipelined replies.
//! It has no grammar of its own (that is `protocol`) and no command meaning
//! (that is `shard`; a request that names no key is `shard::admin`'s, and
//! this only carries what it asks of every shard); its limits in time and memory are [`super::framing`]'s
//! rules, and the replies of other shards are put in place by
//! [`super::remote`].
//!
//! Per read: every whole request in the buffer is parsed. A key this core
//! owns runs inline, its reply appended to `out`; a key another core owns is
//! copied into that core's queue, and its place in `out` is remembered. Then
//! each queue is sent once, the answers are spliced into their places, and
//! `out` is written in one go. An owner may answer part of a queue (its
//! answers are bounded): what is in order is written, and the rest is sent
//! again.

use std::io;
use std::rc::Rc;
use std::time::Duration;

use tracing::{debug, info};

use super::core::{ConnectionGuard, Core};
use super::framing::{
    Budget, Deadlines, Expiry, IDLE_REPLY_BUFFER, MAX_OAUTH_VALUE, OUTPUT_HIGH_WATER, READ_BUFFER,
    SHRINK_AFTER,
};
use super::remote::{Remote, Spliced};
use super::socket::Socket;
use crate::clock::coarse_now;
use crate::keyspace::{shard_of, NsHasher};
use crate::protocol::binary;
use crate::protocol::request::Handshake;
use crate::protocol::{
    compose, parse, ErrorReply, GetKind, Keys, Limits, Parsed, Request, Response, MAX_KEY_LEN,
};
use crate::router::{FromShard, ToShard};
use crate::shard::admin::{Everywhere, Server, Step};
use crate::shard::PREFETCH_AHEAD;
use crate::stats::Report;
use crate::tenancy::{AuthError, Credentials, GrantLease, Namespace, Namespaces, NsLease, Refused};

/// At most this many requests wait on other shards at once.
const MAX_QUEUED_REMOTE: usize = 512;
/// What a connection's buffers may hold while it is idle: its read
/// buffer and a few small reply buffers. Past it, they are given back
/// once it has been quiet for `SHRINK_AFTER`.
const IDLE_BUFFERS: usize = READ_BUFFER + 4 * IDLE_REPLY_BUFFER;
/// How long a refusal (too many connections) may wait to be written.
const REFUSAL_WRITE: Duration = Duration::from_secs(1);

/// Failed handshakes before the connection is closed.
const MAX_AUTH_FAILURES: u32 = 10;

/// Where the connection stands with authentication.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Session {
    /// Open mode, nothing keyed yet: `set oauth` may still pick a namespace.
    Fresh,
    /// Secure mode, not yet authenticated.
    Unauthenticated,
    /// Every key lives in this namespace.
    Bound,
}

/// What the read loop does after a request.
enum Next {
    Continue,
    Close,
    /// Close without a reply (a cross-protocol request).
    HangUp,
}

pub async fn serve(core: Rc<Core>, socket: Socket) {
    let _placed = Placed(core.clone());
    let Some(_guard) = ConnectionGuard::admit(&core) else {
        refuse(socket, &core).await;
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
    conn.core.conns.borrow_mut().conn_buffer_bytes -= conn.reported as u64;
    conn.socket.close().await;
}

/// A connection counted on this core by `Shared::place`, until it closes.
struct Placed(Rc<Core>);

impl Drop for Placed {
    fn drop(&mut self) {
        self.0.shared.unplace(self.0.index);
    }
}

/// Past --max-connections: one error line, then close (as memcached does).
async fn refuse(mut socket: Socket, core: &Core) {
    crate::throttled_warn!(
        max = core.shared.config.max_connections,
        "refusing connection: too many open connections"
    );
    let _ = socket
        .write_all(
            ErrorReply::TooManyConnections.line().to_vec(),
            Some(REFUSAL_WRITE),
        )
        .await;
    socket.close().await;
}

struct Connection {
    core: Rc<Core>,
    socket: Socket,
    peer: super::socket::Peer,
    session: Session,
    auth_failures: u32,
    /// What a bound session holds: its namespace, and (secure mode) its
    /// grant, re-checked after each reload.
    binding: Option<(NsLease, Option<GrantLease>)>,
    ns: Namespace,
    hasher: NsHasher,
    limits: Limits,
    budget: Budget,
    deadlines: Deadlines,
    /// The limit the pending read or write waits under, and the one found
    /// past before any wait.
    armed: Option<Expiry>,
    expired: Option<Expiry>,
    rbuf: Vec<u8>,
    start: usize,
    end: usize,
    /// Data bytes of a too-large value still to discard.
    swallow: usize,
    /// When the request now half-read began to arrive (`coarse_now` time).
    partial_since: Option<Duration>,
    out: Vec<u8>,
    spare: Vec<u8>,
    remote: Remote,
    /// Buffer bytes last added to the core's `conn_buffer_bytes`.
    reported: usize,
}

impl Connection {
    fn new(core: Rc<Core>, socket: Socket) -> Connection {
        let config = &core.shared.config;
        let secure = core.shared.auth.is_secure();
        let (session, budget) = if secure {
            (Session::Unauthenticated, Budget::unauthenticated())
        } else {
            (Session::Fresh, Budget::bound(config.max_item_size))
        };
        // Open mode has no handshake: any command binds a connection.
        let deadlines = Deadlines::new(config, secure, coarse_now());
        let ns = Namespaces::default_namespace();
        let shards = core.shards;
        let hasher = core.shard.borrow().keys().for_ns(ns.id);
        Connection {
            peer: socket.peer_addr(),
            socket,
            session,
            auth_failures: 0,
            binding: None,
            ns,
            hasher,
            limits: Limits {
                max_item_size: budget.max_value,
            },
            budget,
            deadlines,
            armed: None,
            expired: None,
            rbuf: vec![0; READ_BUFFER],
            start: 0,
            end: 0,
            swallow: 0,
            partial_since: None,
            out: Vec::with_capacity(IDLE_REPLY_BUFFER),
            spare: Vec::new(),
            remote: Remote::new(shards),
            reported: 0,
            core,
        }
    }

    async fn run(&mut self) -> io::Result<()> {
        let mut first = true;
        self.report_buffers();
        loop {
            self.make_room();
            let (timeout, shrinking) = self.read_timeout()?;
            let rbuf = std::mem::take(&mut self.rbuf);
            let (n, rbuf) = self.socket.read(rbuf, self.end, timeout).await;
            self.rbuf = rbuf;
            let n = match n {
                Err(e) if e.kind() == io::ErrorKind::TimedOut && shrinking => {
                    // Quiet for a while after a burst: give its buffers back.
                    self.shrink_idle();
                    self.report_buffers();
                    continue;
                }
                result => result?,
            };
            if n == 0 {
                return Ok(());
            }
            self.core.conns.borrow_mut().bytes_read += n as u64;
            self.end += n;
            if first {
                first = false;
                if self.rbuf[self.start] == binary::REQUEST_MAGIC {
                    crate::throttled_info!(peer = ?self.peer, "refusing a binary-protocol client");
                    let refusal = binary::refusal(&self.rbuf[self.start..self.end]);
                    return self.write(refusal).await.0;
                }
            }
            let next = self.process().await;
            self.shrink();
            self.report_buffers();
            if matches!(next?, Next::Close | Next::HangUp) || self.core.shared.shutting_down() {
                return Ok(());
            }
        }
    }

    /// How long the next read may wait (`framing::Deadlines`), and whether
    /// it waits only to see the connection quiet enough to shrink.
    fn read_timeout(&mut self) -> io::Result<(Option<Duration>, bool)> {
        let deadline = self
            .deadlines
            .read(coarse_now(), self.partial_since)
            .map_err(|why| self.expire(why))?;
        self.armed = deadline.map(|(_, why)| why);
        let timeout = deadline.map(|(left, _)| left);
        let shrink = self.partial_since.is_none()
            && self.buffer_bytes() > IDLE_BUFFERS
            && timeout.is_none_or(|t| t > SHRINK_AFTER);
        Ok(if shrink {
            (Some(SHRINK_AFTER), true)
        } else {
            (timeout, false)
        })
    }

    /// The connection is past `why`: the error that closes it.
    fn expire(&mut self, why: Expiry) -> io::Error {
        self.expired = Some(why);
        io::Error::new(io::ErrorKind::TimedOut, why.describe())
    }

    /// Ensures free space at the end of the read buffer.
    fn make_room(&mut self) {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        if self.end < self.rbuf.len() {
            return;
        }
        if self.start > 0 {
            self.rbuf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        } else {
            // A whole request is larger than the buffer: a big value or a long
            // multiget. The parser bounds both, so this growth is bounded too.
            let len = (self.rbuf.len() * 2).min(self.budget.max_request);
            self.rbuf.resize(len, 0);
        }
    }

    /// Gives back the memory of a big request once it is done.
    fn shrink(&mut self) {
        if self.rbuf.len() > 4 * READ_BUFFER && self.end - self.start <= READ_BUFFER {
            self.shrink_read_buffer();
        }
        if self.out.capacity() > 4 * OUTPUT_HIGH_WATER {
            self.out = Vec::with_capacity(IDLE_REPLY_BUFFER);
            self.spare = Vec::new();
        }
    }

    fn shrink_read_buffer(&mut self) {
        let mut small = vec![0; READ_BUFFER];
        small[..self.end - self.start].copy_from_slice(&self.rbuf[self.start..self.end]);
        self.end -= self.start;
        self.start = 0;
        self.rbuf = small;
    }

    /// Back to an idle connection's buffers: the read buffer and a small
    /// reply buffer. Called only between requests.
    fn shrink_idle(&mut self) {
        if self.rbuf.len() > READ_BUFFER && self.end - self.start <= READ_BUFFER {
            self.shrink_read_buffer();
        }
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
        self.rbuf.len() + self.out.capacity() + self.spare.capacity() + self.remote.capacity()
    }

    /// Keeps the core's `conn_buffer_bytes` gauge up to date.
    fn report_buffers(&mut self) {
        let now = self.buffer_bytes();
        if now != self.reported {
            let mut c = self.core.conns.borrow_mut();
            c.conn_buffer_bytes -= self.reported as u64;
            c.conn_buffer_bytes += now as u64;
            self.reported = now;
        }
    }

    /// Executes every whole request buffered, then writes the replies.
    async fn process(&mut self) -> io::Result<Next> {
        let before = (self.start, self.swallow);
        if self.swallow == 0 && self.session == Session::Bound {
            self.prefetch(&self.rbuf[self.start..self.end]);
        }
        let rbuf = std::mem::take(&mut self.rbuf);
        let next = self.process_buffered(&rbuf).await;
        self.rbuf = rbuf;
        let next = next?;
        // Restart the request deadline on progress; start it on a fresh partial.
        let idle = self.start == self.end && self.swallow == 0;
        let progress = self.start != before.0 || self.swallow != before.1;
        if idle {
            self.partial_since = None;
        } else if progress || self.partial_since.is_none() {
            self.partial_since = Some(coarse_now());
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
    /// When a read brought several requests, starts loading the index
    /// buckets and then the items of the first [`PREFETCH_AHEAD`] that this
    /// core owns, so their cache misses overlap instead of coming one per
    /// request as they run. (Forwarded requests get the same on their
    /// owner, in `mesh::execute_batch`.) Costs a second parse of those
    /// requests, so a lone request skips it.
    fn prefetch(&self, buffered: &[u8]) {
        // One command line and nothing after it: nothing to overlap.
        if memchr::memchr(b'\n', buffered).is_none_or(|i| i + 1 == buffered.len()) {
            return;
        }
        let mut hashes = [0u64; PREFETCH_AHEAD];
        let (mut n, mut pos) = (0, 0);
        while n < PREFETCH_AHEAD {
            let Parsed::Request { request, consumed } = parse(&buffered[pos..], &self.limits)
            else {
                break;
            };
            if pos == 0 && consumed == buffered.len() {
                return;
            }
            pos += consumed;
            if let Some(key) = request.key() {
                let hash = self.hasher.hash(key);
                if shard_of(hash, self.core.shards) == self.core.index {
                    hashes[n] = hash;
                    n += 1;
                }
            }
        }
        self.core.shard.borrow().prefetch(&hashes[..n]);
    }

    async fn process_buffered(&mut self, rbuf: &[u8]) -> io::Result<Next> {
        loop {
            if self.swallow > 0 {
                let n = self.swallow.min(self.end - self.start);
                self.start += n;
                self.swallow -= n;
                if self.swallow > 0 {
                    return Ok(Next::Continue);
                }
            }
            if self.start == self.end {
                return Ok(Next::Continue);
            }
            let buffered = &rbuf[self.start..self.end];
            match parse(buffered, &self.limits) {
                Parsed::Incomplete => {
                    if self.end - self.start >= self.budget.max_request {
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
                } => {
                    if !noreply {
                        self.out.extend_from_slice(error.line());
                    }
                    self.start += consumed;
                }
                Parsed::Request { request, consumed } => {
                    self.start += consumed;
                    self.swallow = request.swallow();
                    let wire = &buffered[..consumed];
                    if let Next::Close = self.handle(request, wire).await? {
                        return Ok(Next::Close);
                    }
                }
            }
            self.relieve().await?;
        }
    }

    /// Writes out what is pending once it passes the output budget, or once
    /// enough waits on other shards, so one connection's replies and
    /// forwarded requests stay bounded in memory. (What other shards
    /// answer is bounded by `router::answer_batch`, whatever was asked.)
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
        if let Some((_, Some(grant))) = &mut self.binding {
            if !self.core.shared.auth.still_granted(grant) {
                info!(peer = ?self.peer, "closing session: its grant was revoked");
                return Ok(Next::Close);
            }
        }
        if self.session != Session::Bound {
            if let Some(handshake) = request.handshake() {
                return Ok(self.authenticate(handshake));
            }
            match request {
                _ if request.before_session() => {}
                _ if self.session == Session::Unauthenticated => {
                    if !request.noreply() {
                        self.out.extend_from_slice(ErrorReply::AuthRequired.line());
                    }
                    return Ok(Next::Continue);
                }
                // Open mode: the first other command settles on (default, default).
                _ => self.session = Session::Bound,
            }
        }

        if let Some((kind, keys)) = request.retrieval() {
            for key in keys.iter() {
                self.get(kind, key);
                // A multiget of large values is written as it goes.
                self.relieve().await?;
            }
            compose(&Response::End, &mut self.out);
            return Ok(Next::Continue);
        }
        let mut buf = [0u8; MAX_KEY_LEN];
        if let Some(key) = request.routing_key(&mut buf) {
            self.keyed(&request, key, Some(wire));
            return Ok(Next::Continue);
        }
        self.admin(&request).await
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
        let step = core
            .shard
            .borrow_mut()
            .admin(request, self.ns.id, &server, &mut self.out);
        match step {
            Step::Done => {}
            Step::Close => return Ok(Next::Close),
            Step::Everywhere(op) => {
                self.settle().await?;
                let total = everywhere(&core, op).await;
                core.shard
                    .borrow()
                    .finish(request, total.as_ref(), &server, &mut self.out);
            }
        }
        Ok(Next::Continue)
    }

    /// A single-key request: inline if this core owns the key, else queued
    /// for its owner (as `wire`, the client's own bytes, where given).
    fn keyed(&mut self, request: &Request, key: &[u8], wire: Option<&[u8]>) {
        let hash = self.hasher.hash(key);
        let owner = shard_of(hash, self.core.shards);
        if owner == self.core.index {
            self.core
                .shard
                .borrow_mut()
                .execute(self.ns.id, hash, request, &mut self.out);
        } else {
            self.core.conns.borrow_mut().forward_requests += 1;
            self.remote
                .queue(owner, self.out.len(), hash, request, key, wire);
        }
    }

    /// One key of a retrieval, as a single-key get of its own.
    fn get(&mut self, kind: GetKind, key: &[u8]) {
        let single = Request::Get {
            kind,
            keys: Keys::single(key),
        };
        self.keyed(&single, key, None);
    }

    /// The IronCache handshake: `set oauth` (or `ms oauth`) with
    /// `TOKEN PROJECT CACHE`.
    fn authenticate(&mut self, handshake: Handshake) -> Next {
        let Handshake {
            value,
            noreply,
            meta,
        } = handshake;
        // A meta client reads every error, q or not.
        let silent_errors = noreply && meta.is_none();
        self.core.conns.borrow_mut().auth_cmds += 1;
        let shared = self.core.shared.clone();
        // A value longer than credentials may be is refused unparsed.
        let credentials = (value.len() <= MAX_OAUTH_VALUE).then(|| Credentials::parse(value));
        let error = match credentials {
            None | Some(Err(_)) => ErrorReply::BadAuthFormat,
            Some(Ok(credentials)) => match shared.auth.login(
                &credentials,
                self.peer.0.map(|p| p.ip()),
                self.socket.client_cert().as_ref(),
            ) {
                Ok(login) => {
                    let limit = shared.config.max_namespaces;
                    let acquired =
                        Namespaces::global().acquire(credentials.project, credentials.cache, limit);
                    let lease = match acquired {
                        Ok(lease) => lease,
                        Err(refused) => {
                            let reply = match refused {
                                Refused::TooManyNamespaces => {
                                    crate::throttled_warn!(
                                        limit,
                                        "refusing a new cache: --max-namespaces reached"
                                    );
                                    ErrorReply::TooManyCaches
                                }
                                Refused::TooManyConnections => {
                                    crate::throttled_warn!(
                                        project = credentials.project,
                                        "refusing a connection: the project's connections= quota is reached"
                                    );
                                    ErrorReply::TooManyProjectConnections
                                }
                            };
                            if !noreply {
                                self.out.extend_from_slice(reply.line());
                            }
                            return Next::Continue;
                        }
                    };
                    self.ns = lease.ns;
                    self.hasher = self.core.shard.borrow().keys().for_ns(self.ns.id);
                    self.bind();
                    self.binding = Some((lease, login.lease));
                    // The grant's line in the tokens file, never the token.
                    info!(peer = ?self.peer, project = credentials.project, cache = credentials.cache, grant_line = login.line, "authenticated");
                    if !noreply {
                        handshake.compose_success(&mut self.out);
                    }
                    return Next::Continue;
                }
                Err(AuthError::Throttled) => {
                    crate::throttled_warn!(peer = ?self.peer, "authentication refused unchecked: too many failures from this address");
                    ErrorReply::AuthFailed
                }
                Err(_) => {
                    // Log who asked for what, never the token.
                    crate::throttled_warn!(peer = ?self.peer, project = credentials.project, "authentication failed");
                    ErrorReply::AuthFailed
                }
            },
        };
        self.core.conns.borrow_mut().auth_errors += 1;
        self.auth_failures += 1;
        if !silent_errors {
            self.out.extend_from_slice(error.line());
        }
        if self.auth_failures >= MAX_AUTH_FAILURES {
            crate::throttled_warn!(peer = ?self.peer, "closing connection after {MAX_AUTH_FAILURES} failed authentications");
            return Next::Close;
        }
        Next::Continue
    }

    /// The connection may use the cache now: a bound connection's budget,
    /// and no handshake deadline.
    fn bind(&mut self) {
        self.session = Session::Bound;
        self.budget = Budget::bound(self.core.shared.config.max_item_size);
        self.limits.max_item_size = self.budget.max_value;
        self.deadlines.authenticated();
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
                    waiting.push((shard, core.forward(shard, self.ns, wire)));
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
            let placed = self
                .remote
                .place(&mut self.out, &mut ready, |shard, answer| {
                    core.release(shard, answer)
                });
            match placed {
                Spliced::All => {
                    self.spare = std::mem::replace(&mut self.out, ready);
                    return Ok(());
                }
                Spliced::Until => {
                    // Write what is in order; the rest goes round again,
                    // unless the client has gone.
                    let (result, mut ready) = self.write(ready).await;
                    ready.clear();
                    self.spare = ready;
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
        let (result, buf) = self.socket.write_all(buf, timeout).await;
        if result.is_ok() {
            self.core.conns.borrow_mut().bytes_written += len as u64;
        }
        (result, buf)
    }
}

/// Does `op` on every shard, this core's first, and sums their reports
/// where it asks for them.
async fn everywhere(core: &Rc<Core>, op: Everywhere) -> Option<Report> {
    let mut total = match op {
        Everywhere::Report { ns } => Some(core.report(ns)),
        _ => core.shard.borrow_mut().everywhere(op),
    };
    let others = core
        .ask_others(|reply_to, id| match op {
            Everywhere::Flush { ns, delay } => ToShard::Flush {
                reply_to,
                id,
                ns,
                delay,
            },
            Everywhere::Report { ns } => ToShard::Report { reply_to, id, ns },
            Everywhere::Reset { ns } => ToShard::Reset { reply_to, id, ns },
        })
        .await;
    for answer in others {
        if let (Some(total), FromShard::Report(report)) = (&mut total, answer) {
            total.add(&report);
        }
    }
    total
}
