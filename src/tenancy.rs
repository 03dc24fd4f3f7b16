//! Tenancy: IronCache credentials, the grants file, and namespace ids.
//!
//! Owns who may act for which project and how (project, cache) names become
//! the small [`NsId`] that items carry. It never touches a socket or a store,
//! and it never logs a token.
//!
//! The interner and the grants sit behind locks, but only the handshake
//! touches them (once per connection); the request path never does.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use crate::store::NsId;

/// Longest project id or cache name accepted.
pub const MAX_NAME_LEN: usize = 128;

/// A namespace's identity as the shards see it: the id the process interned
/// (project, cache) to. Keys hash as (id, key) (`crate::store::key_hash`):
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

/// The grants of secure mode: which tokens may act for which projects.
#[derive(Default)]
pub struct Grants {
    /// project -> tokens granted to it.
    by_project: HashMap<String, Vec<Vec<u8>>>,
    /// project -> SHA-256 fingerprints of the TLS client certificates
    /// granted it (`cert:SHA256:<hex> PROJECT` lines).
    certs_by_project: HashMap<String, Vec<[u8; 32]>>,
    lines: usize,
}

/// The token field of `set oauth` that asks for the connection's verified
/// TLS client certificate to be checked instead of a token.
pub const CERT_TOKEN: &[u8] = b"-";
/// How a grants line names a client certificate instead of a token.
const CERT_GRANT_PREFIX: &str = "cert:SHA256:";

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
        let text = std::fs::read_to_string(path).map_err(|e| TokenFileError {
            path: path.to_owned(),
            line: 0,
            reason: format!("cannot read: {e}"),
        })?;
        Grants::parse(&text).map_err(|(line, reason)| TokenFileError {
            path: path.to_owned(),
            line,
            reason,
        })
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
                if !certs.contains(&fp) {
                    certs.push(fp);
                }
                grants.lines += 1;
                continue;
            }
            let tokens = grants.by_project.entry(project.to_owned()).or_default();
            if !tokens.iter().any(|t| t == token.as_bytes()) {
                tokens.push(token.as_bytes().to_vec());
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

    pub fn projects(&self) -> HashSet<&str> {
        self.by_project.keys().map(String::as_str).collect()
    }

    /// Whether the client certificate of SHA-256 `fingerprint` is granted `project`.
    pub fn allows_cert(&self, fingerprint: &[u8; 32], project: &str) -> bool {
        self.certs_by_project
            .get(project)
            .is_some_and(|certs| certs.contains(fingerprint))
    }

    /// Whether `token` is granted `project`, comparing tokens in constant time.
    pub fn allows(&self, token: &[u8], project: &str) -> bool {
        let Some(tokens) = self.by_project.get(project) else {
            // Still compare against something so an unknown project costs the
            // same as a wrong token.
            let _ = std::hint::black_box(constant_time_eq(token, b"\0no-such-project\0"));
            return false;
        };
        tokens.iter().fold(false, |found, granted| {
            constant_time_eq(token, granted) | found
        })
    }
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

/// How a server checks credentials.
pub enum Auth {
    /// No `--tokens`: any token is accepted.
    Open,
    /// `--tokens FILE`: grants, swapped as a whole on SIGHUP.
    Secure {
        path: PathBuf,
        grants: RwLock<Arc<Grants>>,
    },
}

impl Auth {
    pub fn open() -> Auth {
        Auth::Open
    }

    pub fn secure(path: &Path) -> Result<Auth, TokenFileError> {
        let grants = Grants::load(path)?;
        Ok(Auth::Secure {
            path: path.to_owned(),
            grants: RwLock::new(Arc::new(grants)),
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

    pub fn check(&self, credentials: &Credentials) -> Result<(), AuthError> {
        match self {
            Auth::Open => Ok(()),
            Auth::Secure { grants, .. } => {
                let grants = grants.read().unwrap_or_else(|e| e.into_inner()).clone();
                if grants.allows(credentials.token, credentials.project) {
                    Ok(())
                } else {
                    Err(AuthError::Denied)
                }
            }
        }
    }

    /// As [`Auth::check`], but a token of `-` ([`CERT_TOKEN`]) asks whether
    /// the connection's verified TLS client certificate (its SHA-256, if
    /// any) is granted the project. Without a granted certificate it fails
    /// as a wrong token does.
    pub fn check_peer(
        &self,
        credentials: &Credentials,
        client_cert: Option<&[u8; 32]>,
    ) -> Result<(), AuthError> {
        match self {
            Auth::Secure { grants, .. } if credentials.token == CERT_TOKEN => {
                let grants = grants.read().unwrap_or_else(|e| e.into_inner()).clone();
                match client_cert {
                    Some(fp) if grants.allows_cert(fp, credentials.project) => Ok(()),
                    _ => Err(AuthError::Denied),
                }
            }
            _ => self.check(credentials),
        }
    }

    /// Re-reads the tokens file. A bad file keeps the old grants.
    pub fn reload(&self) -> Result<usize, TokenFileError> {
        match self {
            Auth::Open => Ok(0),
            Auth::Secure { path, grants } => {
                let fresh = Grants::load(path)?;
                let n = fresh.len();
                *grants.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(fresh);
                Ok(n)
            }
        }
    }
}

/// Interns (project, cache) into dense ids shared by every core.
pub struct Namespaces {
    ids: Mutex<HashMap<(String, String), Namespace>>,
}

impl Namespaces {
    /// The process-wide interner; (default, default) is always id 0.
    pub fn global() -> &'static Namespaces {
        static GLOBAL: OnceLock<Namespaces> = OnceLock::new();
        GLOBAL.get_or_init(|| {
            let ns = Namespaces {
                ids: Mutex::new(HashMap::new()),
            };
            let default = ns.intern(DEFAULT_NAME, DEFAULT_NAME);
            debug_assert_eq!(default.id, 0);
            ns
        })
    }

    pub fn default_namespace() -> Namespace {
        Namespace { id: 0 }
    }

    pub fn intern(&self, project: &str, cache: &str) -> Namespace {
        let mut ids = self.ids.lock().unwrap_or_else(|e| e.into_inner());
        let next = ids.len() as NsId;
        *ids.entry((project.to_owned(), cache.to_owned()))
            .or_insert_with(|| Namespace { id: next })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(g.allows_cert(&[0xab; 32], "p1"));
        assert!(!g.allows_cert(&[0xab; 32], "p2"));
        assert!(g.allows_cert(&[0xcd; 32], "p2"));
        assert!(!g.allows_cert(&[0xcd; 32], "p1"));
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
        let auth = Auth::secure(&dir).unwrap();
        std::fs::remove_file(&dir).unwrap();
        let dash = Credentials::parse(b"- p1 c").unwrap();
        let other = Credentials::parse(b"- p2 c").unwrap();
        assert_eq!(auth.check_peer(&dash, Some(&[1; 32])), Ok(()));
        assert_eq!(
            auth.check_peer(&dash, Some(&[2; 32])),
            Err(AuthError::Denied)
        );
        assert_eq!(auth.check_peer(&dash, None), Err(AuthError::Denied));
        assert_eq!(
            auth.check_peer(&other, Some(&[1; 32])),
            Err(AuthError::Denied)
        );
        // Tokens keep working, with or without a certificate.
        let tok = Credentials::parse(b"tok p1 c").unwrap();
        assert_eq!(auth.check_peer(&tok, Some(&[2; 32])), Ok(()));
        assert_eq!(auth.check_peer(&tok, None), Ok(()));
    }

    #[test]
    fn constant_time_compare() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
    }

    #[test]
    fn namespaces_are_interned_once() {
        let ns = Namespaces::global();
        let a = ns.intern("p", "c1");
        let b = ns.intern("p", "c2");
        assert_ne!(a.id, b.id);
        assert_eq!(ns.intern("p", "c1"), a);
        assert_eq!(
            ns.intern(DEFAULT_NAME, DEFAULT_NAME),
            Namespaces::default_namespace()
        );
    }
}
