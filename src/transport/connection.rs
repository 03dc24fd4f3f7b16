//! One client connection: read, gate, route, reorder, write.
//!
//! Owns the connection's buffers, its session (authentication is connection
//! state: until a connection is bound to a namespace only the handshake and a
//! few harmless commands get through), and the order of pipelined replies.
//! It has no grammar of its own (that is `protocol`) and no command meaning
//! (that is `shard`).
//!
//! Per read: every whole request in the buffer is parsed. A key this core
//! owns runs inline, its reply appended to `out`; a key another core owns is
//! copied into that core's batch, and its place in `out` is remembered. Then
//! each batch is sent once, the answers are spliced into their places, and
//! `out` is written in one go.

use std::io;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tracing::{debug, info, warn};

use super::core::{ConnectionGuard, Core, Delivery};
use super::mesh::report_here;
use super::socket::Socket;
use crate::clock::coarse_now;
use crate::protocol::binary;
use crate::protocol::parse::{MAX_LINE, MAX_RETRIEVAL_LINE};
use crate::protocol::reply::MetaCode;
use crate::protocol::request::Handshake;
use crate::protocol::{
    compose, parse, ErrorReply, GetKind, Keys, Limits, MetaCommand, Parsed, Request, Response,
    StatsGroup, StoreKind, MAX_KEY_LEN,
};
use crate::router::{push_get, push_wire, shard_of, Answer, FromShard, KeyHasher, ToShard};
use crate::stats::{self, Scope, ServerFacts};
use crate::tenancy::{AuthError, Credentials, GrantLease, Namespace, Namespaces, NsLease};

const READ_BUFFER: usize = 16 * 1024;
/// Past this much buffered output, replies are written before parsing more,
/// so a client that pipelines large gets cannot grow our memory without bound.
const OUTPUT_HIGH_WATER: usize = 1 << 20;
/// Replies queued from other shards may reach this many bytes in the worst
/// case (every get the largest value stored) before they are collected and
/// written.
const REMOTE_REPLY_BUDGET: usize = 4 << 20;
/// What a forwarded get is assumed to cost at least (VALUE line included).
const MIN_REPLY_ESTIMATE: usize = 1024;
/// At most this many requests wait on other shards at once.
const MAX_QUEUED_REMOTE: usize = 512;

/// Requests of one read whose keys are prefetched before they run.
const PREFETCH_AHEAD: usize = 16;
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
            debug!(peer = ?conn.peer, "closing idle connection")
        }
        Err(e) => debug!(peer = ?conn.peer, error = %e, "connection error"),
    }
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
        .write_all(ErrorReply::TooManyConnections.line().to_vec())
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
    hasher: KeyHasher,
    limits: Limits,
    rbuf: Vec<u8>,
    start: usize,
    end: usize,
    max_rbuf: usize,
    /// Data bytes of a too-large value still to discard.
    swallow: usize,
    /// When the request now half-read began to arrive: the idle timeout is a
    /// deadline for a whole request, so trickling bytes cannot hold it open
    /// (`coarse_now` time).
    partial_since: Option<Duration>,
    out: Vec<u8>,
    spare: Vec<u8>,
    remote: Remote,
}

/// Requests queued for other shards during one read, and where their
/// replies go in `out`.
struct Remote {
    batches: Vec<Vec<u8>>,
    counts: Vec<u32>,
    inserts: Vec<Insert>,
    /// Queued retrievals, whose replies may be as large as a value.
    gets: usize,
    /// Each shard's answer to the batch in flight, while settling, and
    /// where this connection's replies start in it.
    answers: Vec<Option<(Rc<Answer>, u32)>>,
    /// (shard, waiter) of the batches in flight.
    waiting: Vec<(usize, u32)>,
}

struct Insert {
    pos: usize,
    shard: u32,
    index: u32,
}

impl Remote {
    fn new(shards: usize) -> Remote {
        Remote {
            batches: vec![Vec::new(); shards],
            counts: vec![0; shards],
            inserts: Vec::new(),
            gets: 0,
            answers: (0..shards).map(|_| None).collect(),
            waiting: Vec::new(),
        }
    }

    /// Queues a request of `key` (hashed to `hash`) for `shard`: a
    /// retrieval as its kind and key, anything else as its `wire` bytes.
    /// Its reply belongs at `pos` in the output.
    fn queue(
        &mut self,
        shard: usize,
        pos: usize,
        hash: u64,
        request: &Request,
        key: &[u8],
        wire: Option<&[u8]>,
    ) {
        let batch = &mut self.batches[shard];
        match (request, wire) {
            (Request::Get { kind, .. }, _) => {
                self.gets += 1;
                push_get(batch, hash, *kind, key);
            }
            (_, Some(wire)) => push_wire(batch, hash, wire),
            (_, None) => unreachable!("only retrievals are forwarded without their bytes"),
        }
        self.inserts.push(Insert {
            pos,
            shard: shard as u32,
            index: self.counts[shard],
        });
        self.counts[shard] += 1;
    }
}

impl Connection {
    fn new(core: Rc<Core>, socket: Socket) -> Connection {
        let config = &core.shared.config;
        let session = if core.shared.auth.is_secure() {
            Session::Unauthenticated
        } else {
            Session::Fresh
        };
        let ns = Namespaces::default_namespace();
        let limits = Limits {
            max_item_size: config.max_item_size,
        };
        let max_rbuf = (config.max_item_size + MAX_LINE + 2).max(MAX_RETRIEVAL_LINE) + 1;
        let shards = core.shards;
        Connection {
            peer: socket.peer_addr(),
            socket,
            session,
            auth_failures: 0,
            binding: None,
            ns,
            hasher: KeyHasher::new(ns),
            limits,
            rbuf: vec![0; READ_BUFFER],
            start: 0,
            end: 0,
            max_rbuf,
            swallow: 0,
            partial_since: None,
            out: Vec::with_capacity(READ_BUFFER),
            spare: Vec::new(),
            remote: Remote::new(shards),
            core,
        }
    }

    async fn run(&mut self) -> io::Result<()> {
        let mut first = true;
        loop {
            self.make_room();
            let timeout = self.read_timeout()?;
            let rbuf = std::mem::take(&mut self.rbuf);
            let (n, rbuf) = self.socket.read(rbuf, self.end, timeout).await;
            self.rbuf = rbuf;
            let n = n?;
            if n == 0 {
                return Ok(());
            }
            self.core.conns.borrow_mut().bytes_read += n as u64;
            self.end += n;
            if first {
                first = false;
                if self.rbuf[self.start] == binary::REQUEST_MAGIC {
                    info!(peer = ?self.peer, "refusing a binary-protocol client");
                    let refusal = binary::refusal(&self.rbuf[self.start..self.end]);
                    return self.socket.write_all(refusal).await.0;
                }
            }
            let next = self.process().await?;
            self.shrink();
            if matches!(next, Next::Close) || self.core.shared.shutting_down() {
                return Ok(());
            }
        }
    }

    /// How long the next read may wait: the idle timeout for an idle
    /// connection, what is left of it for a half-read request.
    fn read_timeout(&self) -> io::Result<Option<Duration>> {
        let Some(idle) = self.core.shared.config.idle_timeout else {
            return Ok(None);
        };
        match self.partial_since {
            None => Ok(Some(idle)),
            Some(since) => match idle.checked_sub(coarse_now().saturating_sub(since)) {
                Some(left) if !left.is_zero() => Ok(Some(left)),
                _ => Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "request not completed in time",
                )),
            },
        }
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
            let len = (self.rbuf.len() * 2).min(self.max_rbuf);
            self.rbuf.resize(len, 0);
        }
    }

    /// Gives back the memory of a big request once it is done.
    fn shrink(&mut self) {
        if self.rbuf.len() > 4 * READ_BUFFER && self.end - self.start <= READ_BUFFER {
            let mut small = vec![0; READ_BUFFER];
            small[..self.end - self.start].copy_from_slice(&self.rbuf[self.start..self.end]);
            self.end -= self.start;
            self.start = 0;
            self.rbuf = small;
        }
        if self.out.capacity() > 4 * OUTPUT_HIGH_WATER {
            self.out = Vec::with_capacity(READ_BUFFER);
            self.spare = Vec::new();
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
        self.settle().await;
        self.flush_out().await?;
        Ok(next)
    }

    /// When a read brought several requests, starts loading the index
    /// buckets and then the items of the first `PREFETCH_AHEAD` that this
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
                    self.core.shard.borrow().prefetch_bucket(hash);
                    hashes[n] = hash;
                    n += 1;
                }
            }
        }
        let shard = self.core.shard.borrow();
        for &hash in &hashes[..n] {
            shard.prefetch_items(hash);
        }
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
                    if self.end - self.start >= self.max_rbuf {
                        self.out.extend_from_slice(ErrorReply::LineTooLong.line());
                        return Ok(Next::Close);
                    }
                    return Ok(Next::Continue);
                }
                Parsed::Close(error) => {
                    warn!(peer = ?self.peer, "closing connection: command line too long");
                    self.out.extend_from_slice(error.line());
                    return Ok(Next::Close);
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
                    if let Request::StoreTooLarge { swallow, .. }
                    | Request::MetaTooLarge { swallow, .. } = request
                    {
                        self.swallow = swallow;
                    }
                    let wire = &buffered[..consumed];
                    if let Next::Close = self.handle(request, wire).await? {
                        return Ok(Next::Close);
                    }
                }
            }
            self.relieve().await?;
        }
    }

    /// Writes out what is pending once it is large, or once enough waits on
    /// other shards, so one connection's replies stay bounded in memory.
    async fn relieve(&mut self) -> io::Result<()> {
        if self.out.len() >= OUTPUT_HIGH_WATER
            || self.remote_gets_full()
            || self.remote.inserts.len() >= MAX_QUEUED_REMOTE
        {
            self.settle().await;
            self.flush_out().await?;
        }
        Ok(())
    }

    /// Whether enough gets wait on other shards: as many as the budget
    /// over what the largest value stored could cost each (at least one).
    /// Checked per key, so it multiplies rather than divides: `gets >=
    /// budget / cost` is `(gets + 1) * cost > budget` in integers. Past
    /// `MAX_QUEUED_REMOTE` the queue is full anyway.
    fn remote_gets_full(&self) -> bool {
        let gets = self.remote.gets;
        if gets == 0 {
            return false;
        }
        let largest = self.core.shared.largest_value.load(Ordering::Relaxed);
        (gets + 1) * largest.max(MIN_REPLY_ESTIMATE) > REMOTE_REPLY_BUDGET
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
                Request::Version | Request::Verbosity { .. } | Request::Quit => {}
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

        match request {
            Request::Get { kind, keys } => {
                for key in keys.iter() {
                    self.get(kind, key);
                    // A multiget of large values is written as it goes.
                    self.relieve().await?;
                }
                compose(&Response::End, &mut self.out);
            }
            Request::Store {
                key, kind, data, ..
            } => {
                let grows = matches!(kind, StoreKind::Append | StoreKind::Prepend);
                self.core.shared.note_store(data.len(), grows);
                self.keyed(&request, key, Some(wire));
            }
            Request::StoreTooLarge { key, .. }
            | Request::Delete { key, .. }
            | Request::Arith { key, .. }
            | Request::Touch { key, .. }
            | Request::MetaTooLarge { key, .. } => self.keyed(&request, key, Some(wire)),
            Request::Meta(meta) => {
                if meta.command == MetaCommand::Set {
                    self.core.shared.note_store(meta.data.len(), true);
                }
                let mut buf = [0u8; MAX_KEY_LEN];
                let key = meta.key(&mut buf);
                self.keyed(&request, key, Some(wire));
            }
            Request::MetaNoOp => compose(&Response::Meta(MetaCode::Mn), &mut self.out),
            Request::FlushAll { delay, noreply } => {
                self.settle().await;
                self.flush_all(delay).await;
                if !noreply {
                    compose(&Response::Ok, &mut self.out);
                }
            }
            Request::Stats(group) => {
                self.settle().await;
                self.stats(group).await;
            }
            Request::Version => compose(&Response::Version(version()), &mut self.out),
            Request::Verbosity { noreply } => {
                if !noreply {
                    compose(&Response::Ok, &mut self.out);
                }
            }
            Request::Quit => return Ok(Next::Close),
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
        let error = match Credentials::parse(value) {
            Err(_) => ErrorReply::BadAuthFormat,
            Ok(credentials) => match shared.auth.login(
                &credentials,
                self.peer.0.map(|p| p.ip()),
                self.socket.client_cert().as_ref(),
            ) {
                Ok(login) => {
                    let limit = shared.config.max_namespaces;
                    let Ok(lease) =
                        Namespaces::global().acquire(credentials.project, credentials.cache, limit)
                    else {
                        crate::throttled_warn!(
                            limit,
                            "refusing a new cache: --max-namespaces reached"
                        );
                        if !noreply {
                            self.out.extend_from_slice(ErrorReply::TooManyCaches.line());
                        }
                        return Next::Continue;
                    };
                    self.ns = lease.ns;
                    self.hasher = KeyHasher::new(self.ns);
                    self.session = Session::Bound;
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

    /// Sends the queued batches, waits for every answer and splices each
    /// reply into its place, so `out` holds the replies in request order.
    async fn settle(&mut self) {
        if self.remote.inserts.is_empty() {
            return;
        }
        let core = self.core.clone();
        let remote = &mut self.remote;
        let mut waiting = std::mem::take(&mut remote.waiting);
        for shard in 0..core.shards {
            if remote.counts[shard] == 0 {
                continue;
            }
            let batch = &mut remote.batches[shard];
            waiting.push((
                shard,
                core.forward(shard, self.ns, batch, remote.counts[shard]),
            ));
            batch.clear();
        }
        for &(shard, id) in &waiting {
            match core.waiters.wait(id).await {
                Delivery::Part(answer, first) => remote.answers[shard] = Some((answer, first)),
                Delivery::Whole(other) => unreachable!("batch answered with {other:?}"),
            }
        }
        waiting.clear();
        remote.waiting = waiting;

        let mut spliced = std::mem::take(&mut self.spare);
        spliced.clear();
        let mut cursor = 0;
        for insert in remote.inserts.drain(..) {
            spliced.extend_from_slice(&self.out[cursor..insert.pos]);
            cursor = insert.pos;
            let (answer, first) = remote.answers[insert.shard as usize]
                .as_ref()
                .expect("answer");
            spliced.extend_from_slice(answer.reply((first + insert.index) as usize));
        }
        spliced.extend_from_slice(&self.out[cursor..]);
        self.spare = std::mem::replace(&mut self.out, spliced);
        for shard in 0..core.shards {
            if let Some((answer, _)) = remote.answers[shard].take() {
                core.release(shard, answer);
            }
        }
        remote.counts.iter_mut().for_each(|c| *c = 0);
        remote.gets = 0;
    }

    async fn flush_out(&mut self) -> io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let len = self.out.len();
        let (result, mut out) = self.socket.write_all(std::mem::take(&mut self.out)).await;
        out.clear();
        self.out = out;
        result?;
        self.core.conns.borrow_mut().bytes_written += len as u64;
        Ok(())
    }

    /// `flush_all` empties the connection's own cache, on every shard.
    async fn flush_all(&mut self, delay: i64) {
        let core = self.core.clone();
        let ns = self.ns.id;
        core.shard.borrow_mut().count_flush(ns);
        core.shard.borrow_mut().flush(ns, delay);
        core.ask_others(|reply_to, id| ToShard::Flush {
            reply_to,
            id,
            ns,
            delay,
        })
        .await;
    }

    async fn stats(&mut self, group: StatsGroup<'_>) {
        let core = self.core.clone();
        let shared = &core.shared;
        // Secure mode shows a tenant its own cache; open mode shows the server.
        let (scope, ns) = if shared.auth.is_secure() {
            (Scope::Tenant, Some(self.ns.id))
        } else {
            (Scope::Server, None)
        };
        match group {
            StatsGroup::General => {
                let mut total = report_here(&core, ns);
                let others = core
                    .ask_others(|reply_to, id| ToShard::Report { reply_to, id, ns })
                    .await;
                for answer in others {
                    match answer {
                        FromShard::Report(r) => total.add(&r),
                        other => unreachable!("report answered with {other:?}"),
                    }
                }
                let (user, system) = rusage();
                let facts = ServerFacts {
                    pid: std::process::id(),
                    uptime: shared.clock.uptime(),
                    time: shared.clock.unix_now(),
                    version: version(),
                    threads: core.shards,
                    max_connections: shared.config.max_connections,
                    limit_maxbytes: shared.config.memory_bytes as u64,
                    rusage_user: user,
                    rusage_system: system,
                    namespaces: Namespaces::global().in_use(),
                    namespaces_reclaimed: Namespaces::global().reclaimed(),
                };
                for (name, value) in stats::general(&facts, &total, scope) {
                    compose(&Response::Stat(name, &value), &mut self.out);
                }
                compose(&Response::End, &mut self.out);
            }
            StatsGroup::Settings => {
                for (name, value) in settings(&core) {
                    compose(&Response::Stat(name, &value), &mut self.out);
                }
                compose(&Response::End, &mut self.out);
            }
            StatsGroup::Reset => {
                core.shard.borrow_mut().reset_counters(ns);
                core.ask_others(|reply_to, id| ToShard::Reset { reply_to, id, ns })
                    .await;
                compose(&Response::Reset, &mut self.out);
            }
            // No slab classes here: both groups are empty.
            StatsGroup::Items | StatsGroup::Slabs => compose(&Response::End, &mut self.out),
            // Size histograms are off, as in a default memcached.
            StatsGroup::Sizes => {
                compose(&Response::Stat("sizes_status", "disabled"), &mut self.out);
                compose(&Response::End, &mut self.out);
            }
            // Per-prefix detail is not collected; on/off are accepted, the dump is empty.
            StatsGroup::Detail(b"on" | b"off") => compose(&Response::Ok, &mut self.out),
            StatsGroup::Detail(b"dump") => compose(&Response::End, &mut self.out),
            StatsGroup::Detail(_) => {
                compose(&Response::Error(ErrorReply::DetailUsage), &mut self.out)
            }
            StatsGroup::Other(_) => compose(&Response::Error(ErrorReply::Error), &mut self.out),
        }
    }
}

/// What `version` and `stats` report: memcached's protocol level, then ours,
/// so clients that parse major.minor.patch still can.
pub fn version() -> &'static str {
    concat!("1.6.18-ferrocache-", env!("CARGO_PKG_VERSION"))
}

/// `stats settings`. In secure mode, as plain `stats`, nothing of the
/// server's configuration (memory, connection limit, port, address, cores,
/// limits): only what every client may know or learn by trying.
fn settings(core: &Core) -> Vec<(&'static str, String)> {
    let config = &core.shared.config;
    let secure = core.shared.auth.is_secure();
    let mut lines = vec![
        ("maxbytes", config.memory_bytes.to_string()),
        ("maxconns", config.max_connections.to_string()),
        ("tcpport", config.listen.port().to_string()),
        ("inter", config.listen.ip().to_string()),
        ("evictions", "on".into()),
        ("num_threads", core.shards.to_string()),
        ("cas_enabled", "yes".into()),
        ("binding_protocol", "ascii".into()),
        (
            "auth_enabled_ascii",
            if secure { "yes" } else { "no" }.into(),
        ),
        ("item_size_max", config.max_item_size.to_string()),
        ("flush_enabled", "yes".into()),
        (
            "idle_timeout",
            config.idle_timeout.map_or(0, |d| d.as_secs()).to_string(),
        ),
    ];
    if secure {
        lines.retain(|(name, _)| stats::TENANT_SETTINGS.contains(name));
    }
    lines
}

/// (user, system) CPU seconds of the process.
fn rusage() -> (f64, f64) {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct we pass; RUSAGE_SELF is always valid.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (secs(usage.ru_utime), secs(usage.ru_stime))
}
