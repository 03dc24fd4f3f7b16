//! Tenancy: IronCache credentials, the grants file, and namespace ids.
//!
//! Owns who may act for which project and how (project, cache) names become
//! the small [`NsId`] that items carry. It never touches a socket or a store,
//! and it never logs a token.
//!
//! The interner and the grants sit behind locks, but only the handshake
//! (once per connection), a connection's close, a reload and each core's
//! once-a-second maintenance touch them; the request path reads one atomic
//! (the grants' generation) and nothing else.
//!
//! Namespaces belong to projects, the unit quotas (`crate::quotas`) are
//! given for: the interner also interns project names into small
//! [`ProjectId`]s, counts each project's connections against its
//! `connections=` quota at the handshake, and publishes, without a lock for
//! readers, which project each namespace id belongs to and each project's
//! quota per shard (`project_of`, `quota_of`), for the shards' fair sharing.
//!
//! Namespaces are reclaimed: once no connection is bound to one and no
//! shard holds an item of it, every shard retires its id (a flush floor at
//! the present, so nothing written under the id before is visible again, and
//! zeroed counters), and only then may the id name another namespace.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use crate::auth_throttle::AuthThrottle;
use crate::clock::coarse_now;
use crate::config::{read_config_file, MAX_NAME_LEN};
use crate::keyspace::NsId;
use crate::quotas::Quotas;
use crate::store::{ProjectId, Quota};

/// A namespace's identity as the shards see it: the id the process interned
/// (project, cache) to. Keys hash as (id, key) (`crate::keyspace::KeyHasher`):
/// the same on every core, since all of them share one interner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Namespace {
    pub id: NsId,
}

/// The namespace of unauthenticated connections in open mode.
pub const DEFAULT_NAME: &str = "default";

/// The parsed value of `set oauth`: `TOKEN PROJECT_ID CACHE_NAME`.
#[derive(PartialEq, Eq)]
pub struct Credentials<'a> {
    pub token: &'a [u8],
    pub project: &'a str,
    pub cache: &'a str,
}

impl fmt::Debug for Credentials<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Tokens are secrets: never print them.
        f.debug_struct("Credentials")
            .field("project", &self.project)
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthError {
    /// Not three fields, or a bad project or cache name.
    BadFormat,
    /// Unknown token, or a project the token is not granted.
    Denied,
    /// Too many failures from this address lately: not checked.
    Throttled,
}

impl<'a> Credentials<'a> {
    pub fn parse(value: &'a [u8]) -> Result<Credentials<'a>, AuthError> {
        let mut fields = value.split(|&b| b == b' ');
        let (Some(token), Some(project), Some(cache), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(AuthError::BadFormat);
        };
        if token.is_empty() || token.iter().any(|b| b.is_ascii_control()) {
            return Err(AuthError::BadFormat);
        }
        Ok(Credentials {
            token,
            project: valid_name(project)?,
            cache: valid_name(cache)?,
        })
    }
}

fn valid_name(name: &[u8]) -> Result<&str, AuthError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN || name.iter().any(|b| b.is_ascii_control()) {
        return Err(AuthError::BadFormat);
    }
    std::str::from_utf8(name).map_err(|_| AuthError::BadFormat)
}

/// Tokens shorter than this draw a warning when the file is loaded.
pub const MIN_TOKEN_LEN: usize = 16;

/// One `TOKEN PROJECT_ID` line of the tokens file.
struct TokenGrant {
    project: String,
    token: Vec<u8>,
    line: usize,
}

/// The grants of secure mode: which tokens may act for which projects.
#[derive(Default)]
pub struct Grants {
    /// The token grants, under a keyed hash of (project, token), so that a
    /// login finds its one candidate without looking at any other token:
    /// what a failed login costs says nothing about how many tokens a
    /// project has, nor whether it exists. A list only for the odd
    /// collision of two grants' hashes.
    tokens: HashMap<u64, Vec<TokenGrant>>,
    /// The key of that hash, random for each load. SipHash (std's
    /// `RandomState`), not ahash: it is built as a keyed PRF, so its
    /// outputs give away nothing of the key, and a login is far too rare
    /// for its speed to matter.
    token_key: RandomState,
    /// project -> (SHA-256 fingerprint, line) of the TLS client certificates
    /// granted it (`cert:SHA256:<hex> PROJECT` lines).
    certs_by_project: HashMap<String, Vec<([u8; 32], usize)>>,
    lines: usize,
    /// Lines whose token is shorter than [`MIN_TOKEN_LEN`].
    short: Vec<usize>,
}

/// The token field of `set oauth` that asks for the connection's verified
/// TLS client certificate to be checked instead of a token.
pub const CERT_TOKEN: &[u8] = b"-";
/// How a grants line names a client certificate instead of a token.
const CERT_GRANT_PREFIX: &str = "cert:SHA256:";

/// How a session bound by a client certificate names its grant: the
/// grants file's own form, which the parser never takes as a token.
fn cert_grant_key(fingerprint: &[u8; 32]) -> Vec<u8> {
    let hex: String = fingerprint.iter().map(|b| format!("{b:02x}")).collect();
    format!("{CERT_GRANT_PREFIX}{hex}").into_bytes()
}

/// `AB:CD:...` or `abcd...`: 32 bytes in hex, colons allowed between bytes.
fn parse_fingerprint(hex: &str) -> Option<[u8; 32]> {
    let digits: Vec<u8> = hex.bytes().filter(|&b| b != b':').collect();
    if digits.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in digits.chunks(2).enumerate() {
        let pair = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

#[derive(Debug)]
pub struct TokenFileError {
    pub path: PathBuf,
    pub line: usize,
    pub reason: String,
}

impl fmt::Display for TokenFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.path.display(), self.reason)
        } else {
            write!(f, "{}:{}: {}", self.path.display(), self.line, self.reason)
        }
    }
}

impl std::error::Error for TokenFileError {}

impl Grants {
    pub fn load(path: &Path) -> Result<Grants, TokenFileError> {
        let error = |line, reason| TokenFileError {
            path: path.to_owned(),
            line,
            reason,
        };
        let text = read_config_file(path).map_err(|reason| error(0, reason))?;
        Grants::parse(&text).map_err(|(line, reason)| error(line, reason))
    }

    /// One grant a line, `TOKEN PROJECT_ID`; `#` starts a comment.
    pub fn parse(text: &str) -> Result<Grants, (usize, String)> {
        let mut grants = Grants::default();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [token, project] = fields[..] else {
                return Err((
                    i + 1,
                    format!("expected `TOKEN PROJECT_ID`, found {} fields", fields.len()),
                ));
            };
            if project.len() > MAX_NAME_LEN {
                return Err((
                    i + 1,
                    format!("project id longer than {MAX_NAME_LEN} bytes"),
                ));
            }
            if token.as_bytes() == CERT_TOKEN {
                return Err((
                    i + 1,
                    "`-` is not a token: it asks for a client certificate's grant".into(),
                ));
            }
            // A certificate grant is kept apart from the tokens, so a
            // fingerprint (which is public) never works as a token.
            if let Some(hex) = token.strip_prefix(CERT_GRANT_PREFIX) {
                let Some(fp) = parse_fingerprint(hex) else {
                    return Err((
                        i + 1,
                        format!("expected {CERT_GRANT_PREFIX}<64 hex digits> PROJECT_ID"),
                    ));
                };
                let certs = grants
                    .certs_by_project
                    .entry(project.to_owned())
                    .or_default();
                if !certs.iter().any(|(f, _)| *f == fp) {
                    certs.push((fp, i + 1));
                }
                grants.lines += 1;
                continue;
            }
            let digest = grants.token_key.hash_one((project, token.as_bytes()));
            let same = grants.tokens.entry(digest).or_default();
            // A repeated grant keeps its first line.
            if !same
                .iter()
                .any(|g| g.project == project && g.token == token.as_bytes())
            {
                same.push(TokenGrant {
                    project: project.to_owned(),
                    token: token.as_bytes().to_vec(),
                    line: i + 1,
                });
            }
            if token.len() < MIN_TOKEN_LEN {
                grants.short.push(i + 1);
            }
            grants.lines += 1;
        }
        Ok(grants)
    }

    pub fn len(&self) -> usize {
        self.lines
    }

    pub fn is_empty(&self) -> bool {
        self.lines == 0
    }

    /// The line of the grant of `project` to the client certificate of
    /// SHA-256 `fingerprint`, if any.
    pub fn cert_grant_line(&self, fingerprint: &[u8; 32], project: &str) -> Option<usize> {
        self.certs_by_project
            .get(project)?
            .iter()
            .find(|(fp, _)| fp == fingerprint)
            .map(|(_, line)| *line)
    }

    /// Lines of the file whose token is shorter than [`MIN_TOKEN_LEN`].
    pub fn short_token_lines(&self) -> &[usize] {
        &self.short
    }

    /// Whether `token` is granted `project`, comparing tokens in constant time.
    pub fn allows(&self, token: &[u8], project: &str) -> bool {
        self.grant_line(token, project).is_some()
    }

    /// Whether a session's grant is still in the file: its token's, or for
    /// a session bound by a client certificate (its lease names the
    /// certificate as the grants file does), that certificate's.
    fn allows_lease(&self, token: &[u8], project: &str) -> bool {
        match std::str::from_utf8(token)
            .ok()
            .and_then(|t| t.strip_prefix(CERT_GRANT_PREFIX))
            .and_then(parse_fingerprint)
        {
            Some(fp) => self.cert_grant_line(&fp, project).is_some(),
            None => self.grant_line(token, project).is_some(),
        }
    }

    /// The line of the grant of `project` to `token` (a label safe to log).
    ///
    /// The same work whatever the file holds: one keyed hash, one table
    /// lookup, and one comparison in constant time, against the grant
    /// found, or against the token itself where none is (a wrong token and
    /// an unknown project alike), so that a miss costs what a hit does.
    pub fn grant_line(&self, token: &[u8], project: &str) -> Option<usize> {
        let digest = self.token_key.hash_one((project, token));
        let Some(candidates) = self.tokens.get(&digest) else {
            let _ = std::hint::black_box(compare_token(token, std::hint::black_box(token)));
            return None;
        };
        // One candidate but for a collision of 64-bit keyed hashes, which a
        // client cannot aim at without the key.
        candidates.iter().fold(None, |found, g| {
            if compare_token(token, &g.token) && g.project == project {
                Some(g.line)
            } else {
                found
            }
        })
    }

    fn warn_short_tokens(&self, path: &Path) {
        if !self.short.is_empty() {
            tracing::warn!(
                file = %path.display(),
                lines = ?self.short,
                "tokens shorter than {MIN_TOKEN_LEN} characters are easy to guess; use long random tokens"
            );
        }
    }
}

/// A client's token against a stored one (or itself, for a miss).
#[inline]
fn compare_token(token: &[u8], stored: &[u8]) -> bool {
    #[cfg(test)]
    tests::TOKEN_COMPARES.with(|n| n.set(n.get() + 1));
    constant_time_eq(token, stored)
}

/// Compares without an early exit on the first differing byte.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u64;
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0xff);
        diff |= u64::from(x ^ y);
    }
    std::hint::black_box(diff) == 0
}

/// Sessions bound under each (token, project), so a reload can say how
/// many it revokes.
type SessionCounts = Arc<Mutex<HashMap<(Vec<u8>, String), usize>>>;

/// How a server checks credentials.
pub enum Auth {
    /// No `--tokens`: any token is accepted.
    Open,
    /// `--tokens FILE`: grants, swapped as a whole on SIGHUP.
    Secure {
        path: PathBuf,
        grants: RwLock<Arc<Grants>>,
        /// Bumped by every reload that swaps the grants: a bound session
        /// re-checks its grant before its next command once it changed.
        generation: AtomicU64,
        sessions: SessionCounts,
        throttle: AuthThrottle,
    },
}

/// What a successful login holds: in secure mode, the grant it used, which
/// is re-checked after each reload and counted while the session lives.
pub struct GrantLease {
    token: Vec<u8>,
    project: String,
    generation: u64,
    sessions: SessionCounts,
}

impl GrantLease {
    fn key(&self) -> (Vec<u8>, String) {
        (self.token.clone(), self.project.clone())
    }
}

impl Drop for GrantLease {
    fn drop(&mut self) {
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let key = self.key();
        if let Some(n) = sessions.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                sessions.remove(&key);
            }
        }
    }
}

/// A successful login.
pub struct Login {
    /// The tokens file's line of the grant used (secure mode): a label
    /// that is safe to log.
    pub line: Option<usize>,
    pub lease: Option<GrantLease>,
}

/// What a reload did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reloaded {
    pub grants: usize,
    /// Sessions bound under grants the new file no longer has: each is
    /// closed before its next command.
    pub revoked: usize,
}

impl Auth {
    pub fn open() -> Auth {
        Auth::Open
    }

    /// Secure mode with the grants of `path`; `failures_per_window` failed
    /// logins from one address block it (see [`AuthThrottle`]; 0: never).
    pub fn secure(path: &Path, failures_per_window: u32) -> Result<Auth, TokenFileError> {
        let grants = Grants::load(path)?;
        grants.warn_short_tokens(path);
        Ok(Auth::Secure {
            path: path.to_owned(),
            grants: RwLock::new(Arc::new(grants)),
            generation: AtomicU64::new(0),
            sessions: Default::default(),
            throttle: AuthThrottle::new(failures_per_window),
        })
    }

    pub fn is_secure(&self) -> bool {
        matches!(self, Auth::Secure { .. })
    }

    /// How many grants are loaded (0 in open mode).
    pub fn grant_count(&self) -> usize {
        match self {
            Auth::Open => 0,
            Auth::Secure { grants, .. } => grants.read().unwrap_or_else(|e| e.into_inner()).len(),
        }
    }

    /// Checks `credentials` from `peer`. In secure mode an address that
    /// failed too often lately is refused without a check, unless these
    /// credentials logged in from it lately, and a failure counts against
    /// its address; except a login by a verified client certificate (token
    /// `-`), which has no secret to guess, so a token guesser sharing the
    /// address cannot lock it out.
    pub fn login(
        &self,
        credentials: &Credentials,
        peer: Option<IpAddr>,
        client_cert: Option<&[u8; 32]>,
    ) -> Result<Login, AuthError> {
        let Auth::Secure {
            grants,
            generation,
            sessions,
            throttle,
            ..
        } = self
        else {
            return Ok(Login {
                line: None,
                lease: None,
            });
        };
        let now_ms = coarse_now().as_millis() as u64;
        let by_cert = credentials.token == CERT_TOKEN && client_cert.is_some();
        let throttled = peer.filter(|_| !by_cert);
        let admitted = |ip| throttle.admits(ip, credentials.project, credentials.token, now_ms);
        if throttled.is_some_and(|ip| !admitted(ip)) {
            return Err(AuthError::Throttled);
        }
        // The generation before the grants: a reload in between makes the
        // session re-check at once, never miss a revocation.
        let seen = generation.load(Ordering::Acquire);
        let grants = grants.read().unwrap_or_else(|e| e.into_inner()).clone();
        // A token of `-` asks for the connection's verified client
        // certificate instead; the lease then names the certificate in the
        // form no token can take (the parser reads such lines as cert grants).
        let (line, token) = if credentials.token == CERT_TOKEN {
            let line = client_cert.and_then(|fp| grants.cert_grant_line(fp, credentials.project));
            (line, client_cert.map(cert_grant_key).unwrap_or_default())
        } else {
            (
                grants.grant_line(credentials.token, credentials.project),
                credentials.token.to_vec(),
            )
        };
        let Some(line) = line else {
            if let Some(ip) = throttled {
                throttle.fail(ip, now_ms);
            }
            return Err(AuthError::Denied);
        };
        if let Some(ip) = throttled {
            throttle.succeeded(ip, credentials.project, credentials.token, now_ms);
        }
        let lease = GrantLease {
            token,
            project: credentials.project.to_owned(),
            generation: seen,
            sessions: sessions.clone(),
        };
        *sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(lease.key())
            .or_default() += 1;
        Ok(Login {
            line: Some(line),
            lease: Some(lease),
        })
    }

    /// Whether a session bound under `lease` may go on: true at the cost of
    /// one atomic load unless the grants were reloaded since it last looked.
    #[inline]
    pub fn still_granted(&self, lease: &mut GrantLease) -> bool {
        let Auth::Secure {
            grants, generation, ..
        } = self
        else {
            return true;
        };
        let now = generation.load(Ordering::Acquire);
        if now == lease.generation {
            return true;
        }
        let grants = grants.read().unwrap_or_else(|e| e.into_inner()).clone();
        lease.generation = now;
        grants.allows_lease(&lease.token, &lease.project)
    }

    /// Re-reads the tokens file. A file that cannot be read or parsed, or
    /// that grants nothing (empty, or truncated while being rewritten),
    /// keeps the old grants.
    pub fn reload(&self) -> Result<Reloaded, TokenFileError> {
        match self {
            Auth::Open => Ok(Reloaded {
                grants: 0,
                revoked: 0,
            }),
            Auth::Secure {
                path,
                grants,
                generation,
                sessions,
                ..
            } => {
                let fresh = Grants::load(path)?;
                if fresh.is_empty() {
                    return Err(TokenFileError {
                        path: path.to_owned(),
                        line: 0,
                        reason: "grants nothing (empty or truncated?); replace it atomically: write a new file, rename it over, then SIGHUP".into(),
                    });
                }
                fresh.warn_short_tokens(path);
                let n = fresh.len();
                let revoked = sessions
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .iter()
                    .filter(|((token, project), _)| !fresh.allows_lease(token, project))
                    .map(|(_, n)| n)
                    .sum();
                *grants.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(fresh);
                generation.fetch_add(1, Ordering::AcqRel);
                Ok(Reloaded { grants: n, revoked })
            }
        }
    }
}

/// Why a handshake could not bind a namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The namespace limit was reached: no new (project, cache) now.
    TooManyNamespaces,
    /// The project has `--max-caches-per-project` namespaces in use.
    TooManyProjectNamespaces,
    /// The project has its quota's `connections=` bound already.
    TooManyConnections,
}

/// How many namespaces may be in use at once: in all, and naming one
/// project (`--max-namespaces`, `--max-caches-per-project`). Namespaces
/// not yet reclaimed count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NsLimits {
    pub total: usize,
    pub per_project: usize,
}

/// What a shard offers the interner's maintenance (see
/// [`Namespaces::maintain`]). Implemented by the shard.
pub trait NamespaceHost {
    /// Whether this shard holds any item of `ns`.
    fn holds_items(&self, ns: NsId) -> bool;
    /// Forgets `ns` on this shard: every item written under it so far is
    /// invisible from now on, and its counters are zero.
    fn retire(&mut self, ns: NsId);
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Slot {
    /// Not in use: on the free list.
    Free,
    /// Bound by `leases` connections (or, for id 0, always in use).
    Live { leases: u32 },
    /// No connection; shards in `empty` found it holding no items since.
    Idle { empty: Vec<u64> },
    /// Its name is gone; shards in `done` have retired the id.
    Retiring { done: Vec<u64> },
}

#[derive(Default)]
struct ProjectSlot {
    name: Option<String>,
    namespaces: u32,
    connections: u32,
}

/// A table of atomics indexed by id, allocated a chunk at a time (ids are
/// dense), read without a lock.
struct Board<T> {
    chunks: Box<[OnceLock<Box<[T]>>]>,
}

const BOARD_CHUNK: usize = 4096;
/// Ids up to 2^20 (the `--max-namespaces` ceiling) and a chunk more.
const BOARD_CHUNKS: usize = (1 << 20) / BOARD_CHUNK + 1;

impl<T: Default> Board<T> {
    fn new() -> Board<T> {
        Board {
            chunks: (0..BOARD_CHUNKS).map(|_| OnceLock::new()).collect(),
        }
    }

    #[inline]
    fn get(&self, id: u32) -> Option<&T> {
        let id = id as usize;
        self.chunks
            .get(id / BOARD_CHUNK)?
            .get()
            .map(|c| &c[id % BOARD_CHUNK])
    }

    /// The slot of `id`, its chunk allocated if need be (None past the end).
    fn slot(&self, id: u32) -> Option<&T> {
        let id = id as usize;
        let chunk = self.chunks.get(id / BOARD_CHUNK)?;
        let c = chunk.get_or_init(|| (0..BOARD_CHUNK).map(|_| T::default()).collect());
        Some(&c[id % BOARD_CHUNK])
    }
}

/// A project's quota on one shard, as published to the shards.
struct PublishedQuota {
    cap: AtomicU64,
    reserve: AtomicU64,
    weight: AtomicU64,
}

impl Default for PublishedQuota {
    fn default() -> PublishedQuota {
        PublishedQuota {
            cap: AtomicU64::new(u64::MAX),
            reserve: AtomicU64::new(0),
            weight: AtomicU64::new(1),
        }
    }
}

struct Interner {
    ids: HashMap<(String, String), NsId>,
    slots: Vec<Slot>,
    /// Each id's name while it has one (indexed like `slots`).
    names: Vec<Option<(String, String)>>,
    free: Vec<NsId>,
    /// Slots not `Free`, but id 0.
    in_use: usize,
    /// Slots `Idle` or `Retiring`: what maintenance has to look at.
    pending: usize,
    /// Each id's project (indexed like `slots`).
    ns_project: Vec<ProjectId>,
    project_ids: HashMap<String, ProjectId>,
    /// Per project: its name, the namespaces (not `Free`) naming it, and
    /// the connections bound to them.
    projects: Vec<ProjectSlot>,
    free_projects: Vec<ProjectId>,
    quotas: Arc<Quotas>,
    /// Shards the quotas are divided among.
    shards: usize,
    reclaimed: u64,
}

fn bit(bits: &[u64], i: usize) -> bool {
    bits.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
}

fn set_bit(bits: &mut Vec<u64>, i: usize) {
    if bits.len() <= i / 64 {
        bits.resize(i / 64 + 1, 0);
    }
    bits[i / 64] |= 1 << (i % 64);
}

fn all_bits(bits: &[u64], n: usize) -> bool {
    (0..n).all(|i| bit(bits, i))
}

/// Interns (project, cache) into small ids shared by every core, and
/// reclaims those no connection and no item uses any more.
pub struct Namespaces {
    inner: Mutex<Interner>,
    /// Namespace id -> project id, for the shards.
    ns_project: Board<AtomicU32>,
    /// Project id -> its quota per shard, for the shards.
    quotas: Board<PublishedQuota>,
    /// Bumped when the quotas change, so shards know to read them again.
    quota_generation: AtomicU64,
}

/// A connection's hold on its namespace: while one exists the namespace is
/// never reclaimed.
pub struct NsLease {
    pub ns: Namespace,
    owner: &'static Namespaces,
}

impl Drop for NsLease {
    fn drop(&mut self) {
        self.owner.release(self.ns.id);
    }
}

impl Default for Namespaces {
    fn default() -> Namespaces {
        Namespaces::new()
    }
}

impl Namespaces {
    /// An interner holding (default, default) as id 0, for good, in the
    /// project `default`, id 0, also for good.
    pub fn new() -> Namespaces {
        let mut ids = HashMap::new();
        ids.insert((DEFAULT_NAME.to_owned(), DEFAULT_NAME.to_owned()), 0);
        let mut project_ids = HashMap::new();
        project_ids.insert(DEFAULT_NAME.to_owned(), 0);
        Namespaces {
            inner: Mutex::new(Interner {
                ids,
                slots: vec![Slot::Live { leases: 0 }],
                names: vec![None],
                free: Vec::new(),
                in_use: 0,
                pending: 0,
                reclaimed: 0,
                ns_project: vec![0],
                project_ids,
                projects: vec![ProjectSlot {
                    name: Some(DEFAULT_NAME.to_owned()),
                    namespaces: 1,
                    connections: 0,
                }],
                free_projects: Vec::new(),
                quotas: Arc::new(Quotas::default()),
                shards: 1,
            }),
            ns_project: Board::new(),
            quotas: Board::new(),
            quota_generation: AtomicU64::new(0),
        }
    }

    /// The project of namespace `ns` (0 for an id never handed out).
    /// Lock-free: the shards call it the first time they meet `ns`.
    #[inline]
    pub fn project_of(&self, ns: NsId) -> ProjectId {
        self.ns_project
            .get(ns)
            .map_or(0, |p| p.load(Ordering::Acquire))
    }

    /// `project`'s quota on one shard. Lock-free.
    pub fn quota_of(&self, project: ProjectId) -> Quota {
        match self.quotas.get(project) {
            None => Quota::default(),
            Some(q) => Quota {
                cap: q.cap.load(Ordering::Acquire),
                reserve: q.reserve.load(Ordering::Acquire),
                weight: q
                    .weight
                    .load(Ordering::Acquire)
                    .clamp(1, u64::from(u32::MAX)) as u32,
            },
        }
    }

    /// Bumped each time quotas change (`set_quotas`).
    pub fn quota_generation(&self) -> u64 {
        self.quota_generation.load(Ordering::Acquire)
    }

    /// The name of `project`, while it has one.
    pub fn project_name(&self, project: ProjectId) -> Option<String> {
        self.lock()
            .projects
            .get(project as usize)
            .and_then(|p| p.name.clone())
    }

    /// Applies `quotas` (divided among `shards`) to every project from now
    /// on: connections at the next handshake, memory at the shards' next
    /// second.
    pub fn set_quotas(&self, quotas: Arc<Quotas>, shards: usize) {
        let mut inner = self.lock();
        inner.quotas = quotas;
        inner.shards = shards.max(1);
        for p in 0..inner.projects.len() {
            if let Some(name) = inner.projects[p].name.clone() {
                self.publish_quota(&inner, p as ProjectId, &name);
            }
        }
        self.quota_generation.fetch_add(1, Ordering::AcqRel);
    }

    fn publish_quota(&self, inner: &Interner, project: ProjectId, name: &str) {
        let q = inner.quotas.per_shard(name, inner.shards);
        if let Some(slot) = self.quotas.slot(project) {
            slot.cap.store(q.cap, Ordering::Release);
            slot.reserve.store(q.reserve, Ordering::Release);
            slot.weight.store(u64::from(q.weight), Ordering::Release);
        }
    }

    /// The id of project `name`, interned (one more namespace naming it).
    fn intern_project(&self, inner: &mut Interner, name: &str) -> ProjectId {
        if let Some(&p) = inner.project_ids.get(name) {
            inner.projects[p as usize].namespaces += 1;
            return p;
        }
        let p = match inner.free_projects.pop() {
            Some(p) => p,
            None => {
                inner.projects.push(ProjectSlot::default());
                (inner.projects.len() - 1) as ProjectId
            }
        };
        inner.projects[p as usize] = ProjectSlot {
            name: Some(name.to_owned()),
            namespaces: 1,
            connections: 0,
        };
        inner.project_ids.insert(name.to_owned(), p);
        self.publish_quota(inner, p, name);
        p
    }

    /// One namespace fewer names `project`; the last frees its id.
    fn release_project(inner: &mut Interner, project: ProjectId) {
        let slot = &mut inner.projects[project as usize];
        slot.namespaces = slot.namespaces.saturating_sub(1);
        if slot.namespaces == 0 && project != 0 {
            if let Some(name) = slot.name.take() {
                inner.project_ids.remove(&name);
            }
            inner.free_projects.push(project);
        }
    }

    /// The process-wide interner.
    pub fn global() -> &'static Namespaces {
        static GLOBAL: OnceLock<Namespaces> = OnceLock::new();
        GLOBAL.get_or_init(Namespaces::new)
    }

    pub fn default_namespace() -> Namespace {
        Namespace { id: 0 }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Interner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Binds a connection to (project, cache): its id, held until the lease
    /// drops. A new namespace needs a free place under `limits.total`
    /// namespaces (besides the default one), and under `limits.per_project`
    /// of its project's, so that no one project can take every place.
    pub fn acquire(
        &'static self,
        project: &str,
        cache: &str,
        limits: NsLimits,
    ) -> Result<NsLease, Refused> {
        let mut inner = self.lock();
        if let Some(max) = inner.quotas.limits(project).connections {
            let now = inner
                .project_ids
                .get(project)
                .map_or(0, |&p| inner.projects[p as usize].connections);
            if now >= max {
                return Err(Refused::TooManyConnections);
            }
        }
        let key = (project.to_owned(), cache.to_owned());
        let id = match inner.ids.get(&key) {
            Some(&id) => id,
            None => {
                if inner.in_use >= limits.total {
                    return Err(Refused::TooManyNamespaces);
                }
                let named = inner
                    .project_ids
                    .get(project)
                    .map_or(0, |&p| inner.projects[p as usize].namespaces as usize);
                if named >= limits.per_project {
                    return Err(Refused::TooManyProjectNamespaces);
                }
                let id = match inner.free.pop() {
                    Some(id) => id,
                    None => {
                        inner.slots.push(Slot::Free);
                        inner.names.push(None);
                        (inner.slots.len() - 1) as NsId
                    }
                };
                inner.in_use += 1;
                inner.names[id as usize] = Some(key.clone());
                inner.ids.insert(key, id);
                let p = self.intern_project(&mut inner, project);
                if inner.ns_project.len() <= id as usize {
                    inner.ns_project.resize(id as usize + 1, 0);
                }
                inner.ns_project[id as usize] = p;
                // Published before the lease exists, so before any request
                // of the namespace can reach a shard.
                if let Some(slot) = self.ns_project.slot(id) {
                    slot.store(p, Ordering::Release);
                }
                id
            }
        };
        let p = inner.ns_project[id as usize];
        inner.projects[p as usize].connections += 1;
        if id != 0 {
            let slot = &mut inner.slots[id as usize];
            // An idle namespace is live again; what shards found is void.
            let was_idle = matches!(slot, Slot::Idle { .. });
            *slot = match slot {
                Slot::Live { leases } => Slot::Live {
                    leases: *leases + 1,
                },
                _ => Slot::Live { leases: 1 },
            };
            inner.pending -= usize::from(was_idle);
        } else if let Slot::Live { leases } = &mut inner.slots[0] {
            // Counted for the operator's metrics only: id 0 is never reclaimed.
            *leases += 1;
        }
        Ok(NsLease {
            ns: Namespace { id },
            owner: self,
        })
    }

    /// Binds an open-mode connection that named no cache to (default,
    /// default), counted against the project `default`'s `connections=`
    /// like a login to it. That namespace is always interned, so no
    /// namespace limit applies.
    pub fn acquire_default(&'static self) -> Result<NsLease, Refused> {
        let unlimited = NsLimits {
            total: usize::MAX,
            per_project: usize::MAX,
        };
        self.acquire(DEFAULT_NAME, DEFAULT_NAME, unlimited)
    }

    fn release(&self, id: NsId) {
        let mut inner = self.lock();
        let p = inner.ns_project[id as usize];
        let conns = &mut inner.projects[p as usize].connections;
        *conns = conns.saturating_sub(1);
        if id == 0 {
            if let Slot::Live { leases } = &mut inner.slots[0] {
                *leases = leases.saturating_sub(1);
            }
            return;
        }
        let slot = &mut inner.slots[id as usize];
        match slot {
            Slot::Live { leases } if *leases > 1 => *leases -= 1,
            Slot::Live { .. } => {
                *slot = Slot::Idle { empty: Vec::new() };
                inner.pending += 1;
            }
            other => debug_assert!(false, "released namespace {id} in state {other:?}"),
        }
    }

    /// One shard's part in reclaiming, run on its own core now and then:
    /// it notes which idle namespaces it holds no items of, and retires
    /// the ids of namespaces every shard found empty. An id is free again
    /// once all `shards` retired it.
    ///
    /// Sound because an idle namespace gains no items: its last connection
    /// waited for every reply before it closed, and a new one makes it live
    /// again (clearing what the shards found).
    pub fn maintain(&self, shard: usize, shards: usize, host: &mut dyn NamespaceHost) {
        let mut inner = self.lock();
        let inner = &mut *inner;
        if inner.pending == 0 {
            return;
        }
        for id in 1..inner.slots.len() {
            let ns = id as NsId;
            if let Slot::Idle { empty } = &mut inner.slots[id] {
                if !bit(empty, shard) && !host.holds_items(ns) {
                    set_bit(empty, shard);
                }
                if all_bits(empty, shards) {
                    if let Some(name) = inner.names[id].take() {
                        inner.ids.remove(&name);
                    }
                    inner.slots[id] = Slot::Retiring { done: Vec::new() };
                }
            }
            if let Slot::Retiring { done } = &mut inner.slots[id] {
                if !bit(done, shard) {
                    host.retire(ns);
                    set_bit(done, shard);
                }
                if all_bits(done, shards) {
                    inner.slots[id] = Slot::Free;
                    let p = inner.ns_project[id];
                    Namespaces::release_project(inner, p);
                    inner.free.push(ns);
                    inner.in_use -= 1;
                    inner.pending -= 1;
                    inner.reclaimed += 1;
                }
            }
        }
    }

    /// Namespaces in use now (bound, idle or being retired), but the default.
    pub fn in_use(&self) -> usize {
        self.lock().in_use
    }

    /// Namespaces reclaimed since start.
    pub fn reclaimed(&self) -> u64 {
        self.lock().reclaimed
    }

    /// Each id's project and the connections bound to it now, indexed by
    /// id (`None`: a free id, or one being retired), for the operator's
    /// metrics (`crate::metrics`). Takes the lock once.
    pub fn projects(&self) -> Vec<Option<(String, u32)>> {
        let inner = self.lock();
        inner
            .slots
            .iter()
            .enumerate()
            .map(|(id, slot)| {
                let project = match &inner.names[id] {
                    Some((project, _)) => project.clone(),
                    None if id == 0 => DEFAULT_NAME.to_owned(),
                    None => return None,
                };
                let connections = match slot {
                    Slot::Live { leases } => *leases,
                    Slot::Idle { .. } => 0,
                    Slot::Free | Slot::Retiring { .. } => return None,
                };
                Some((project, connections))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        /// Tokens compared on this thread (`compare_token`).
        pub(super) static TOKEN_COMPARES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    /// A project of thousands of tokens finds each of its own, refuses
    /// others, and whatever a login names, it compares one token: a failed
    /// login's cost tells nothing of how many tokens a project has.
    #[test]
    fn a_login_compares_one_token_however_many_a_project_has() {
        const N: usize = 5000;
        let mut text = String::from("lone-token-lone-token solo\n");
        for i in 0..N {
            text.push_str(&format!("token-{i:05}-of-many many\n"));
        }
        let g = Grants::parse(&text).unwrap();
        let compares = |token: &[u8], project: &str| {
            TOKEN_COMPARES.with(|n| n.set(0));
            let line = g.grant_line(token, project);
            (line, TOKEN_COMPARES.with(|n| n.get()))
        };
        for i in 0..N {
            let token = format!("token-{i:05}-of-many");
            assert_eq!(compares(token.as_bytes(), "many"), (Some(i + 2), 1));
            assert_eq!(compares(token.as_bytes(), "solo"), (None, 1));
        }
        assert_eq!(compares(b"lone-token-lone-token", "solo"), (Some(1), 1));
        for (token, project) in [
            (&b"token-05000-of-many"[..], "many"),
            (b"token-00001-of-man", "many"),
            (b"lone-token-lone-token", "many"),
            (b"wrong", "solo"),
            (b"wrong", "no-such-project"),
        ] {
            assert_eq!(compares(token, project), (None, 1), "{token:?} {project}");
        }
    }

    #[test]
    fn credentials() {
        let c = Credentials::parse(b"tok proj cache").unwrap();
        assert_eq!(
            (c.token, c.project, c.cache),
            (&b"tok"[..], "proj", "cache")
        );
        for bad in [
            &b"tok proj"[..],
            b"a b c d",
            b"tok  cache",
            b"",
            b"t p c\x01",
        ] {
            assert_eq!(
                Credentials::parse(bad),
                Err(AuthError::BadFormat),
                "{bad:?}"
            );
        }
        let long = format!("t {} c", "p".repeat(129));
        assert_eq!(
            Credentials::parse(long.as_bytes()),
            Err(AuthError::BadFormat)
        );
        assert!(
            !format!("{c:?}").contains("tok\""),
            "Debug must not print the token"
        );
    }

    #[test]
    fn grants_file() {
        let g = Grants::parse(
            "# comment\n\nsecret1 proj1\nsecret1 proj2 # two projects\nsecret2 proj1\n",
        )
        .unwrap();
        assert!(g.allows(b"secret1", "proj1"));
        assert!(g.allows(b"secret1", "proj2"));
        assert!(g.allows(b"secret2", "proj1"));
        assert!(!g.allows(b"secret2", "proj2"));
        assert!(!g.allows(b"secret", "proj1"));
        assert!(!g.allows(b"secret1", "nope"));
        assert_eq!(Grants::parse("a b\nonlyone\n").err().unwrap().0, 2);
    }

    #[test]
    fn certificate_grants() {
        let hex = "AB".repeat(32);
        let colons = vec!["cd"; 32].join(":");
        let g = Grants::parse(&format!(
            "tok p1\ncert:SHA256:{hex} p1\ncert:SHA256:{colons} p2\n"
        ))
        .unwrap();
        assert_eq!(g.len(), 3);
        assert!(g.cert_grant_line(&[0xab; 32], "p1").is_some());
        assert!(g.cert_grant_line(&[0xab; 32], "p2").is_none());
        assert!(g.cert_grant_line(&[0xcd; 32], "p2").is_some());
        assert!(g.cert_grant_line(&[0xcd; 32], "p1").is_none());
        // The grant line is not a token: the fingerprint is public.
        let line = format!("cert:SHA256:{hex}");
        assert!(!g.allows(line.as_bytes(), "p1"));
        assert!(g.allows(b"tok", "p1"));
        for bad in ["cert:SHA256:abcd p", "cert:SHA256:{zz} p", "- p"] {
            let bad = bad.replace("{zz}", &"zz".repeat(32));
            assert_eq!(Grants::parse(&bad).err().map(|e| e.0), Some(1), "{bad}");
        }
    }

    #[test]
    fn dash_authenticates_only_a_granted_certificate() {
        let dir =
            std::env::temp_dir().join(format!("ferrocache-cert-grants-{}", std::process::id()));
        std::fs::write(
            &dir,
            format!("tok p1\ncert:SHA256:{} p1\n", "01".repeat(32)),
        )
        .unwrap();
        let auth = Auth::secure(&dir, 0).unwrap();
        std::fs::remove_file(&dir).unwrap();
        let dash = Credentials::parse(b"- p1 c").unwrap();
        let other = Credentials::parse(b"- p2 c").unwrap();
        let login =
            |c: &Credentials, fp: Option<&[u8; 32]>| auth.login(c, None, fp).map(|l| l.line);
        assert_eq!(login(&dash, Some(&[1; 32])), Ok(Some(2)));
        assert_eq!(login(&dash, Some(&[2; 32])).err(), Some(AuthError::Denied));
        assert_eq!(login(&dash, None).err(), Some(AuthError::Denied));
        assert_eq!(login(&other, Some(&[1; 32])).err(), Some(AuthError::Denied));
        // Tokens keep working, with or without a certificate.
        let tok = Credentials::parse(b"tok p1 c").unwrap();
        assert_eq!(login(&tok, Some(&[2; 32])), Ok(Some(1)));
        assert_eq!(login(&tok, None), Ok(Some(1)));
        // A session bound by its certificate stays granted across a reload.
        let mut lease = auth
            .login(&dash, None, Some(&[1; 32]))
            .unwrap()
            .lease
            .unwrap();
        assert!(auth.still_granted(&mut lease));
    }

    #[test]
    fn constant_time_compare() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
    }

    #[test]
    fn grant_lines_and_short_tokens() {
        let g = Grants::parse("# c\nshort p1\n\na-token-of-32-characters-long-xx p2\n").unwrap();
        assert_eq!(g.grant_line(b"short", "p1"), Some(2));
        assert_eq!(
            g.grant_line(b"a-token-of-32-characters-long-xx", "p2"),
            Some(4)
        );
        assert_eq!(g.grant_line(b"short", "p2"), None);
        assert_eq!(g.short_token_lines(), &[2]);
    }

    fn temp_path(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!(
            "ferrocache-tenancy-unit-{}-{name}",
            std::process::id()
        ))
    }

    #[test]
    fn reload_keeps_grants_on_an_empty_file_and_counts_revoked_sessions() {
        let path = temp_path("reload");
        std::fs::write(&path, "tokA projA\ntokB projB\n").unwrap();
        let auth = Auth::secure(&path, 0).unwrap();
        let creds = |t: &'static str, p: &'static str| Credentials {
            token: t.as_bytes(),
            project: p,
            cache: "c",
        };
        let mut a = auth.login(&creds("tokA", "projA"), None, None).unwrap();
        let mut b1 = auth.login(&creds("tokB", "projB"), None, None).unwrap();
        let b2 = auth.login(&creds("tokB", "projB"), None, None).unwrap();
        assert_eq!((a.line, b1.line), (Some(1), Some(2)));
        assert!(auth.login(&creds("tokB", "projA"), None, None).is_err());

        for empty in ["", "# only a comment\n\n"] {
            std::fs::write(&path, empty).unwrap();
            assert!(auth.reload().is_err());
            assert!(auth.login(&creds("tokA", "projA"), None, None).is_ok());
        }
        std::fs::write(&path, "tokA projA\n").unwrap();
        assert_eq!(
            auth.reload().unwrap(),
            Reloaded {
                grants: 1,
                revoked: 2
            }
        );
        assert!(auth.still_granted(a.lease.as_mut().unwrap()));
        assert!(!auth.still_granted(b1.lease.as_mut().unwrap()));
        drop((b1, b2));
        // Gone sessions are no longer counted.
        std::fs::write(&path, "tokZ projZ\n").unwrap();
        assert_eq!(auth.reload().unwrap().revoked, 1);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn only_regular_files_are_read() {
        let fifo = temp_path("fifo");
        let _ = std::fs::remove_file(&fifo);
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: mkfifo reads the NUL-terminated path we pass.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = Grants::load(&fifo).err().expect("a FIFO is refused");
        assert!(e.reason.contains("not a regular file"), "{e}");
        std::fs::remove_file(&fifo).unwrap();
        let e = Grants::load(Path::new("/dev/zero"))
            .err()
            .expect("a device is refused");
        assert!(e.reason.contains("not a regular file"), "{e}");
        let big = temp_path("big");
        std::fs::write(
            &big,
            "x p\n".repeat(crate::config::MAX_CONFIG_FILE as usize / 4 + 1),
        )
        .unwrap();
        let e = Grants::load(&big).err().expect("a huge file is refused");
        assert!(e.reason.contains("larger than"), "{e}");
        std::fs::remove_file(&big).unwrap();
    }

    /// A wrong token for project `p`.
    const WRONG: Credentials<'static> = Credentials {
        token: b"guess",
        project: "p",
        cache: "c",
    };
    /// The token `throttled_auth` grants for `p`.
    const RIGHT: Credentials<'static> = Credentials {
        token: b"good-token-good-token",
        ..WRONG
    };

    /// Secure mode with `grants` (`RIGHT`'s line among them), throttling
    /// an address at its third failure; `WRONG` is then sent from `ip`
    /// until it is.
    fn throttled_auth(name: &str, grants: &str, ip: IpAddr) -> Auth {
        let path = temp_path(name);
        std::fs::write(&path, grants).unwrap();
        let auth = Auth::secure(&path, 3).unwrap();
        std::fs::remove_file(&path).unwrap();
        for _ in 0..3 {
            assert_eq!(
                auth.login(&WRONG, Some(ip), None).err(),
                Some(AuthError::Denied)
            );
        }
        auth
    }

    #[test]
    fn failures_from_one_address_are_throttled_across_logins() {
        let ip: IpAddr = "10.9.8.7".parse().unwrap();
        let auth = throttled_auth("throttle", "good-token-good-token p\n", ip);
        assert_eq!(
            auth.login(&RIGHT, Some(ip), None).err(),
            Some(AuthError::Throttled)
        );
        assert!(auth
            .login(&RIGHT, Some("10.9.8.6".parse().unwrap()), None)
            .is_ok());
    }

    /// A verified client certificate has nothing to guess: a guesser on
    /// the same address does not lock its logins out, and its own refused
    /// logins (a project it is not granted) lock out nobody.
    #[test]
    fn certificate_logins_are_not_throttled() {
        let fp = [7u8; 32];
        let hex: String = fp.iter().map(|b| format!("{b:02x}")).collect();
        let ip: IpAddr = "10.9.8.7".parse().unwrap();
        let grants = format!("good-token-good-token p\ncert:SHA256:{hex} p\n");
        let auth = throttled_auth("throttle-cert", &grants, ip);
        let by_cert = Credentials {
            token: b"-",
            ..WRONG
        };
        assert!(auth.login(&by_cert, Some(ip), Some(&fp)).is_ok());
        // Without a certificate `-` is a wrong token like any other.
        assert_eq!(
            auth.login(&by_cert, Some(ip), None).err(),
            Some(AuthError::Throttled)
        );
        let other: IpAddr = "10.9.8.6".parse().unwrap();
        let elsewhere = Credentials {
            project: "q",
            ..by_cert
        };
        for _ in 0..5 {
            assert_eq!(
                auth.login(&elsewhere, Some(other), Some(&fp)).err(),
                Some(AuthError::Denied)
            );
        }
        assert!(auth.login(&RIGHT, Some(other), None).is_ok());
    }

    /// A real shard to reclaim on: `n` items of `ns` stored in it.
    fn shard_with(ns: NsId, n: usize) -> crate::shard::Shard {
        use crate::protocol::{Keyed, Storage, StoreKind};
        let keys = crate::keyspace::KeyHasher::default();
        let mut shard =
            crate::shard::Shard::new(16 << 20, 1 << 20, crate::clock::Clock::new(), keys);
        for i in 0..n {
            let key = format!("k{i}");
            let request = Keyed::Store(Storage {
                kind: StoreKind::Set,
                key: key.as_bytes(),
                flags: 0,
                exptime: 0,
                cas: 0,
                data: b"v",
                noreply: false,
            });
            let mut out = Vec::new();
            let hash = keys.hash(ns, key.as_bytes());
            shard.execute(ns, hash, &request, &mut out);
            assert_eq!(out, b"STORED\r\n");
        }
        shard
    }

    #[test]
    fn projects_name_each_id_and_count_its_connections() {
        let ns: &'static Namespaces = Box::leak(Box::new(Namespaces::new()));
        let a = ns.acquire("p", "c1", lim(10)).unwrap();
        let a2 = ns.acquire("p", "c1", lim(10)).unwrap();
        let b = ns.acquire("q", "c1", lim(10)).unwrap();
        let d = ns.acquire(DEFAULT_NAME, DEFAULT_NAME, lim(10)).unwrap();
        let connections = |ns: &Namespaces| {
            let mut found: Vec<(String, u32)> = ns.projects().into_iter().flatten().collect();
            found.sort();
            found
        };
        assert_eq!(
            connections(ns),
            [("default".into(), 1), ("p".into(), 2), ("q".into(), 1)]
        );
        drop((a2, d, b));
        assert_eq!(
            connections(ns),
            [("default".into(), 0), ("p".into(), 1), ("q".into(), 0)]
        );
        drop(a);
        assert_eq!(ns.projects().len(), 3);
    }

    /// Limits with no per-project bound below the total.
    fn lim(total: usize) -> NsLimits {
        NsLimits {
            total,
            per_project: total,
        }
    }

    #[test]
    fn one_project_cannot_take_every_namespace() {
        let ns: &'static Namespaces = Box::leak(Box::new(Namespaces::new()));
        let limits = NsLimits {
            total: 10,
            per_project: 2,
        };
        let p1 = ns.acquire("p", "c1", limits).unwrap();
        let p2 = ns.acquire("p", "c2", limits).unwrap();
        assert_eq!(
            ns.acquire("p", "c3", limits).err(),
            Some(Refused::TooManyProjectNamespaces)
        );
        // Its caches in use still bind, and another project opens its own.
        let again = ns.acquire("p", "c1", limits).unwrap();
        let q = ns.acquire("q", "c1", limits).unwrap();
        assert_eq!(ns.in_use(), 3);
        drop((p1, p2, again, q));
    }

    #[test]
    fn namespaces_are_interned_once_and_reclaimed_when_unused() {
        let ns: &'static Namespaces = Box::leak(Box::new(Namespaces::new()));
        let a = ns.acquire("p", "c1", lim(10)).unwrap();
        let a2 = ns.acquire("p", "c1", lim(10)).unwrap();
        let b = ns.acquire("p", "c2", lim(10)).unwrap();
        assert_ne!(a.ns, b.ns);
        assert_eq!(a.ns, a2.ns);
        assert_eq!(
            ns.acquire(DEFAULT_NAME, DEFAULT_NAME, lim(10)).unwrap().ns,
            Namespaces::default_namespace()
        );
        assert_eq!(ns.in_use(), 2);
        assert_eq!(
            ns.acquire("p", "c3", lim(2)).err(),
            Some(Refused::TooManyNamespaces)
        );

        // Two shards; shard 1 holds an item of c1.
        let id = a.ns.id;
        let mut shards = [shard_with(id, 0), shard_with(id, 1)];
        drop((a, a2, b));
        let round = |shards: &mut [crate::shard::Shard; 2]| {
            for (i, s) in shards.iter_mut().enumerate() {
                ns.maintain(i, 2, s);
            }
        };
        round(&mut shards);
        round(&mut shards);
        // c2 is gone; c1 stays while shard 1 holds its item.
        assert_eq!((ns.in_use(), ns.reclaimed()), (1, 1));
        let again = ns.acquire("p", "c1", lim(10)).unwrap();
        assert_eq!(again.ns.id, id, "a namespace with items keeps its id");
        drop(again);
        shards[1].flush(id, 0);
        round(&mut shards);
        assert_eq!(ns.in_use(), 1, "retired on one shard, not yet the other");
        round(&mut shards);
        assert_eq!((ns.in_use(), ns.reclaimed()), (0, 2));

        // The freed id names a new namespace, which sees none of the old
        // items (flushed, still in memory) and none of the old counters.
        let c = ns.acquire("q", "new", lim(10)).unwrap();
        assert!(c.ns.id == id || c.ns.id != 0);
        let report = shards[1].report(Some(c.ns.id));
        assert_eq!(
            (
                report.items.curr_items,
                report.items.total_items,
                report.counters.cmd_set
            ),
            (0, 0, 0)
        );
        let mut out = Vec::new();
        let request = crate::protocol::Keyed::Get {
            kind: crate::protocol::GetKind::Get,
            key: b"k0",
        };
        let hash = shards[1].keys().hash(c.ns.id, b"k0");
        shards[1].execute(c.ns.id, hash, &request, &mut out);
        assert!(
            out.is_empty(),
            "old item visible: {:?}",
            String::from_utf8_lossy(&out)
        );
    }
}
