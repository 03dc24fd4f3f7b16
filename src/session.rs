//! The session gate and the IronCache handshake: what a connection may do
//! before it authenticates, and binding it to a namespace when it does.
//!
//! Owns a connection's standing with authentication: open or secure mode,
//! the handshake (`set oauth` / `ms oauth` with `TOKEN PROJECT_ID
//! CACHE_NAME`), the failures it may make before it is closed, and the
//! namespace and grant a bound session holds. It does no I/O and keeps no
//! time: transport asks it what to do with each request and writes what it
//! puts in the output. The grants are `tenancy`'s, the grammar
//! `protocol`'s.

use std::net::SocketAddr;

use tracing::info;

use crate::protocol::request::Handshake;
use crate::protocol::{ErrorReply, Request};
use crate::tenancy::{
    Auth, AuthError, Credentials, GrantLease, Namespace, Namespaces, NsLease, NsLimits, Refused,
    DEFAULT_NAME,
};

/// The longest `set oauth` value (`TOKEN PROJECT_ID CACHE_NAME`): a
/// longer one is refused as badly formatted, and its bytes are discarded
/// as they arrive rather than buffered.
pub const MAX_OAUTH_VALUE: usize = 1024;

/// Failed handshakes before the connection is closed.
pub const MAX_AUTH_FAILURES: u32 = 10;

/// A client's address as logs write it: `127.0.0.1:55578`, or `unknown`
/// where the socket no longer has one (`?peer` and `%peer` read the same).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Peer(pub Option<SocketAddr>);

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(addr) => write!(f, "{addr}"),
            None => f.write_str("unknown"),
        }
    }
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// Who is asking: what a login is checked against.
#[derive(Clone, Copy, Debug)]
pub struct Client {
    pub peer: Peer,
    /// The SHA-256 fingerprint of its verified TLS client certificate.
    pub cert: Option<[u8; 32]>,
}

/// Where a connection stands with authentication.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Standing {
    /// Open mode, nothing keyed yet: `set oauth` may still pick a namespace.
    Fresh,
    /// Secure mode, not yet authenticated.
    Unauthenticated,
    /// Every key lives in the session's namespace.
    Bound,
}

/// What to do with a request, as the session sees it.
#[derive(Debug, PartialEq, Eq)]
pub enum Gate<'a> {
    /// Run it, in [`Session::ns`].
    Run,
    /// It is the handshake: [`Session::authenticate`] it.
    Handshake(Handshake<'a>),
    /// Refused before authentication (or, in open mode, for want of room
    /// in the project `default`); the refusal (if the client wants one) is
    /// in the output.
    Refused,
    /// The session's grant was revoked by a reload: close the connection.
    Revoked,
}

/// What a handshake came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Login {
    /// The session is bound to a (new) namespace: the connection takes a
    /// bound connection's budget and drops its handshake deadline.
    Bound,
    /// Refused for want of room (`--max-namespaces`, the project's
    /// `connections=`), not for its credentials; the reply is in the output.
    Refused,
    /// The credentials failed; the reply (if any) is in the output.
    Failed,
    /// Failed once too often: close the connection.
    Close,
}

pub struct Session {
    standing: Standing,
    failures: u32,
    /// What an authenticated session holds: its namespace, and (secure
    /// mode) its grant, re-checked after each reload. Without it, the
    /// session's keys live in the default namespace.
    binding: Option<(NsLease, Option<GrantLease>)>,
}

impl Session {
    /// A new connection's session: secure mode must authenticate first;
    /// open mode may, or may use the default namespace.
    pub fn new(secure: bool) -> Session {
        Session {
            standing: if secure {
                Standing::Unauthenticated
            } else {
                Standing::Fresh
            },
            failures: 0,
            binding: None,
        }
    }

    pub fn is_bound(&self) -> bool {
        self.standing == Standing::Bound
    }

    /// The namespace the session's keys live in.
    pub fn ns(&self) -> Namespace {
        match &self.binding {
            Some((lease, _)) => lease.ns,
            None => Namespaces::default_namespace(),
        }
    }

    /// Whether `request` may run now. A refusal's error line goes to `out`:
    /// before authentication in secure mode; in open mode, a first command
    /// with the project `default` at its `connections=` quota.
    pub fn gate<'a>(&mut self, request: &Request<'a>, auth: &Auth, out: &mut Vec<u8>) -> Gate<'a> {
        if let Some((_, Some(grant))) = &mut self.binding {
            if !auth.still_granted(grant) {
                return Gate::Revoked;
            }
        }
        if self.standing == Standing::Bound {
            return Gate::Run;
        }
        if let Some(handshake) = request.handshake() {
            return Gate::Handshake(handshake);
        }
        if request.before_session() {
            return Gate::Run;
        }
        if self.standing == Standing::Unauthenticated {
            if !request.noreply() {
                out.extend_from_slice(ErrorReply::AuthRequired.line());
            }
            return Gate::Refused;
        }
        // Open mode: the first other command settles on (default, default),
        // and from then on counts against the project `default`'s
        // `connections=`, as a login to it would.
        match Namespaces::global().acquire_default() {
            Ok(lease) => {
                self.standing = Standing::Bound;
                self.binding = Some((lease, None));
                Gate::Run
            }
            Err(_) => {
                crate::throttled_warn!(
                    project = DEFAULT_NAME,
                    "refusing a command: the project's connections= quota is reached"
                );
                if !request.noreply() {
                    out.extend_from_slice(ErrorReply::TooManyProjectConnections.line());
                }
                // Still fresh: it may try again, or `set oauth` elsewhere.
                Gate::Refused
            }
        }
    }

    /// The IronCache handshake: checks the credentials against `auth`,
    /// takes a lease on the namespace (within `limits`), and answers into
    /// `out` as memcached answers a `set` (or an `ms`: a meta client reads
    /// every error, `q` or not).
    pub fn authenticate(
        &mut self,
        handshake: Handshake,
        auth: &Auth,
        client: Client,
        limits: NsLimits,
        out: &mut Vec<u8>,
    ) -> Login {
        let silent_errors = handshake.noreply && handshake.meta.is_none();
        let error = match self.login(&handshake, auth, client, limits) {
            Ok(()) => {
                if !handshake.noreply {
                    handshake.compose_success(out);
                }
                return Login::Bound;
            }
            // Refused for want of room, not for its credentials.
            Err((reply, false)) => {
                if !handshake.noreply {
                    out.extend_from_slice(reply.line());
                }
                return Login::Refused;
            }
            Err((reply, true)) => reply,
        };
        self.failures += 1;
        if !silent_errors {
            out.extend_from_slice(error.line());
        }
        if self.failures >= MAX_AUTH_FAILURES {
            crate::throttled_warn!(peer = ?client.peer, "closing connection after {MAX_AUTH_FAILURES} failed authentications");
            return Login::Close;
        }
        Login::Failed
    }

    /// Binds the session, or says why not: the error, and whether it counts
    /// as a failed authentication.
    fn login(
        &mut self,
        handshake: &Handshake,
        auth: &Auth,
        client: Client,
        limits: NsLimits,
    ) -> Result<(), (ErrorReply, bool)> {
        // A value longer than credentials may be is refused unparsed.
        let credentials = (handshake.value.len() <= MAX_OAUTH_VALUE)
            .then(|| Credentials::parse(handshake.value))
            .and_then(Result::ok)
            .ok_or((ErrorReply::BadAuthFormat, true))?;
        let ip = client.peer.0.map(|p| p.ip());
        let login = match auth.login(&credentials, ip, client.cert.as_ref()) {
            Ok(login) => login,
            Err(AuthError::Throttled) => {
                crate::throttled_warn!(peer = ?client.peer, "authentication refused unchecked: too many failures from this address");
                return Err((ErrorReply::AuthFailed, true));
            }
            Err(_) => {
                // Log who asked for what, never the token.
                crate::throttled_warn!(peer = ?client.peer, project = credentials.project, "authentication failed");
                return Err((ErrorReply::AuthFailed, true));
            }
        };
        let acquired = Namespaces::global().acquire(credentials.project, credentials.cache, limits);
        let lease = acquired.map_err(|refused| match refused {
            Refused::TooManyNamespaces => {
                crate::throttled_warn!(
                    limit = limits.total,
                    "refusing a new cache: --max-namespaces reached"
                );
                (ErrorReply::TooManyCaches, false)
            }
            Refused::TooManyProjectNamespaces => {
                crate::throttled_warn!(
                    project = credentials.project,
                    limit = limits.per_project,
                    "refusing a new cache: the project has --max-caches-per-project"
                );
                (ErrorReply::TooManyCaches, false)
            }
            Refused::TooManyConnections => {
                crate::throttled_warn!(
                    project = credentials.project,
                    "refusing a connection: the project's connections= quota is reached"
                );
                (ErrorReply::TooManyProjectConnections, false)
            }
        })?;
        self.standing = Standing::Bound;
        self.binding = Some((lease, login.lease));
        // The grant's line in the tokens file, never the token.
        info!(peer = ?client.peer, project = credentials.project, cache = credentials.cache, grant_line = login.line, "authenticated");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{parse, Limits, Parsed};

    const LIMITS: NsLimits = NsLimits {
        total: 100,
        per_project: 100,
    };

    fn request(wire: &[u8]) -> Request<'_> {
        let limits = Limits {
            max_item_size: 1 << 20,
        };
        match parse(wire, &limits) {
            Parsed::Request { request, .. } => request,
            other => panic!("not a request: {other:?}"),
        }
    }

    fn client() -> Client {
        Client {
            peer: Peer(None),
            cert: None,
        }
    }

    fn secure_auth() -> Auth {
        let path = std::env::temp_dir().join(format!(
            "ferrocache-session-test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::write(&path, "secret-token-0123456789 p1\n").unwrap();
        let auth = Auth::secure(&path, 1000).unwrap();
        std::fs::remove_file(&path).unwrap();
        auth
    }

    #[test]
    fn open_mode_binds_the_default_namespace_on_the_first_keyed_command() {
        let mut session = Session::new(false);
        let mut out = Vec::new();
        assert!(!session.is_bound());
        assert_eq!(
            session.gate(&request(b"version\r\n"), &Auth::Open, &mut out),
            Gate::Run
        );
        assert!(!session.is_bound(), "version binds nothing");
        assert_eq!(
            session.gate(&request(b"get k\r\n"), &Auth::Open, &mut out),
            Gate::Run
        );
        assert!(session.is_bound());
        assert_eq!(session.ns(), Namespaces::default_namespace());
        // Bound: `set oauth` is an ordinary key now.
        assert_eq!(
            session.gate(&request(b"set oauth 0 0 1\r\nx\r\n"), &Auth::Open, &mut out),
            Gate::Run
        );
        assert!(out.is_empty());
    }

    #[test]
    fn open_mode_may_pick_a_namespace_before_anything_else() {
        let mut session = Session::new(false);
        let mut out = Vec::new();
        let wire = b"set oauth 0 0 7\r\n- p1 c1\r\n";
        let Gate::Handshake(handshake) = session.gate(&request(wire), &Auth::Open, &mut out) else {
            panic!("not a handshake");
        };
        let login = session.authenticate(handshake, &Auth::Open, client(), LIMITS, &mut out);
        assert_eq!(login, Login::Bound);
        assert_eq!(out, b"STORED\r\n");
        assert!(session.is_bound());
        assert_ne!(session.ns(), Namespaces::default_namespace());
    }

    #[test]
    fn secure_mode_refuses_until_authenticated_and_closes_after_too_many_failures() {
        let auth = secure_auth();
        let mut session = Session::new(true);
        let mut out = Vec::new();
        assert_eq!(
            session.gate(&request(b"get k\r\n"), &auth, &mut out),
            Gate::Refused
        );
        assert_eq!(out, ErrorReply::AuthRequired.line());
        out.clear();
        // noreply: refused without a word.
        assert_eq!(
            session.gate(&request(b"delete k noreply\r\n"), &auth, &mut out),
            Gate::Refused
        );
        assert!(out.is_empty());
        assert_eq!(
            session.gate(&request(b"version\r\n"), &auth, &mut out),
            Gate::Run
        );
        let bad = b"set oauth 0 0 11\r\nwrong p1 c1\r\n";
        for i in 1..=MAX_AUTH_FAILURES {
            out.clear();
            let Gate::Handshake(h) = session.gate(&request(bad), &auth, &mut out) else {
                panic!("not a handshake");
            };
            let login = session.authenticate(h, &auth, client(), LIMITS, &mut out);
            assert_eq!(out, ErrorReply::AuthFailed.line());
            let expected = if i == MAX_AUTH_FAILURES {
                Login::Close
            } else {
                Login::Failed
            };
            assert_eq!(login, expected, "failure {i}");
        }
        assert!(!session.is_bound());
    }

    #[test]
    fn a_meta_handshake_answers_hd_and_its_errors_even_when_quiet() {
        let auth = secure_auth();
        let mut session = Session::new(true);
        let mut out = Vec::new();
        let Gate::Handshake(h) =
            session.gate(&request(b"ms oauth 5 q\r\nx y z\r\n"), &auth, &mut out)
        else {
            panic!("not a handshake");
        };
        assert_eq!(
            session.authenticate(h, &auth, client(), LIMITS, &mut out),
            Login::Failed
        );
        assert_eq!(out, ErrorReply::AuthFailed.line());
        out.clear();
        let wire = b"ms oauth 29 O7\r\nsecret-token-0123456789 p1 c1\r\n";
        let Gate::Handshake(h) = session.gate(&request(wire), &auth, &mut out) else {
            panic!("not a handshake");
        };
        assert_eq!(
            session.authenticate(h, &auth, client(), LIMITS, &mut out),
            Login::Bound
        );
        assert_eq!(out, b"HD O7\r\n");
    }
}
