//! TLS on the memcache port: the server's certificate and settings, and one
//! connection's TLS session on the per-core socket ring.
//!
//! Owns loading (and, on SIGHUP, reloading) the certificate, key and client
//! CA into a rustls `ServerConfig`, and turning a connection's ciphertext
//! into plaintext and back. It has no grammar and no command meaning: what
//! comes out of [`TlsStream::read`] is exactly what a plain socket would have
//! given the connection, so the parser, router and shards see no difference.
//!
//! One read of the socket is fed to rustls whole; the plaintext goes into the
//! connection's own read buffer. One batch of replies is sealed into one
//! buffer of records and sent with one send. The ciphertext buffers are
//! bounded: one receive buffer of `CIPHER_IN` bytes, rustls's own deframer
//! (one record) and received-plaintext buffer (drained before each feed), and
//! the sealed output of one batch of replies (bounded by the connection's
//! output high-water mark). The two of ours are counted with the
//! connection's buffers and given back as its are: the sealed output once
//! the connection is quiet after a burst, both once it has been quiet for
//! long (it then waits for its next record holding neither).
//!
//! A handshake must finish within `HANDSHAKE_TIMEOUT` (or the idle timeout,
//! if shorter), so a client cannot hold a connection open by trickling a
//! handshake. Garbage, or plaintext sent to the TLS port, fails the
//! handshake: an alert is sent and the connection closed. After the
//! handshake, the edges of the client's records are watched
//! ([`RecordEdges`]): a record half-received counts as a request
//! half-received, so `--request-timeout` cuts it off just the same.

use std::fmt;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::crypto::ring as provider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ProducesTickets, StoresServerSessions, WebPkiClientVerifier};
use rustls::{RootCertStore, ServerConfig, ServerConnection};

use super::uring::Ring;
use crate::clock::coarse_now;

/// A handshake not finished this long after accept closes the connection.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The receive buffer for ciphertext: one full TLS record (16 KiB of
/// plaintext plus the largest overhead rustls accepts).
const CIPHER_IN: usize = 16 * 1024 + 2048 + 5;
/// Past this, a sealed-output buffer is freed after its send rather than kept.
const CIPHER_OUT_KEEP: usize = 2 << 20;
/// TLS 1.2 sessions remembered by id, for clients that resume without tickets.
const SESSION_CACHE: usize = 1024;
/// A TLS record's header: content type, version, and the length of its body.
const RECORD_HEADER: usize = 5;

/// The files TLS is served with (from the command line).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Verify client certificates against this CA (and ask for them).
    pub client_ca: Option<PathBuf>,
    /// Refuse a client that presents no certificate.
    pub require_client_cert: bool,
}

#[derive(Debug)]
pub struct TlsError(String);

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsError {}

/// The server's TLS settings, shared by every core. Read once per accepted
/// connection (a lock and an `Arc` clone), never on the request path.
pub struct Tls {
    files: TlsFiles,
    current: Mutex<Arc<ServerConfig>>,
    resumption: Mutex<Resumption>,
}

/// What a resumed session is checked against instead of a handshake.
/// Kept across reloads, so sessions issued before a SIGHUP still resume;
/// made anew when the client CA changes, so that a certificate the new CA
/// does not vouch for cannot come back in on an old ticket.
struct Resumption {
    ticketer: Arc<dyn ProducesTickets>,
    sessions: Arc<dyn StoresServerSessions>,
    /// The client CA file's text the sessions were verified against.
    client_ca: Option<String>,
}

impl Resumption {
    fn new(client_ca: Option<String>) -> Result<Resumption, TlsError> {
        let ticketer = provider::Ticketer::new()
            .map_err(|e| TlsError(format!("cannot make a session ticket key: {e}")))?;
        Ok(Resumption {
            ticketer,
            sessions: rustls::server::ServerSessionMemoryCache::new(SESSION_CACHE),
            client_ca,
        })
    }
}

impl Tls {
    pub fn load(files: TlsFiles) -> Result<Tls, TlsError> {
        let resumption = Resumption::new(client_ca(&files)?)?;
        let config = build(&files, &resumption)?;
        Ok(Tls {
            files,
            current: Mutex::new(Arc::new(config)),
            resumption: Mutex::new(resumption),
        })
    }

    /// Re-reads the certificate, key and client CA. On an error the old
    /// settings stay; connections already open keep theirs either way.
    /// A changed client CA also ends resumption of the sessions before it.
    pub fn reload(&self) -> Result<(), TlsError> {
        let ca = client_ca(&self.files)?;
        let mut resumption = self.resumption.lock().unwrap_or_else(|e| e.into_inner());
        let renewed = if ca == resumption.client_ca {
            None
        } else {
            Some(Resumption::new(ca)?)
        };
        let fresh = build(&self.files, renewed.as_ref().unwrap_or(&resumption))?;
        if let Some(renewed) = renewed {
            *resumption = renewed;
        }
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(fresh);
        Ok(())
    }

    /// The settings a connection accepted now handshakes with.
    pub fn config(&self) -> Arc<ServerConfig> {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn files(&self) -> &TlsFiles {
        &self.files
    }
}

/// The client CA file's text, if there is one.
fn client_ca(files: &TlsFiles) -> Result<Option<String>, TlsError> {
    files.client_ca.as_deref().map(read_pem).transpose()
}

fn build(files: &TlsFiles, resumption: &Resumption) -> Result<ServerConfig, TlsError> {
    let certs = read_certs(&files.cert)?;
    let key = PrivateKeyDer::from_pem_slice(read_pem(&files.key)?.as_bytes())
        .map_err(|e| TlsError(format!("{}: no private key: {e}", files.key.display())))?;
    let provider = Arc::new(provider::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError(e.to_string()))?;
    let builder = match (&files.client_ca, &resumption.client_ca) {
        (Some(ca), Some(pem)) => {
            let mut roots = RootCertStore::empty();
            for cert in parse_certs(ca, pem)? {
                roots
                    .add(cert)
                    .map_err(|e| TlsError(format!("{}: {e}", ca.display())))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(roots.into(), provider);
            let verifier = if files.require_client_cert {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            let verifier = verifier
                .build()
                .map_err(|e| TlsError(format!("{}: {e}", ca.display())))?;
            builder.with_client_cert_verifier(verifier)
        }
        _ => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| {
        TlsError(format!(
            "{} and {}: {e}",
            files.cert.display(),
            files.key.display()
        ))
    })?;
    config.ticketer = resumption.ticketer.clone();
    config.session_storage = resumption.sessions.clone();
    Ok(config)
}

/// A PEM file, read as the tokens and quotas files are: a regular file of
/// at most 4 MiB, so that a FIFO or a device put in its place (say, a link
/// to /dev/zero) fails the load, or a SIGHUP's reload, instead of blocking
/// the reload thread or reading without end.
fn read_pem(path: &Path) -> Result<String, TlsError> {
    crate::config::read_config_file(path)
        .map_err(|reason| TlsError(format!("{}: {reason}", path.display())))
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    parse_certs(path, &read_pem(path)?)
}

/// The certificates in `pem`, the text of the file `path`.
fn parse_certs(path: &Path, pem: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError(format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(TlsError(format!("{}: no certificate", path.display())));
    }
    Ok(certs)
}

/// SHA-256 of a certificate's DER bytes: how a grant names a client
/// certificate (`openssl x509 -noout -fingerprint -sha256` prints it).
pub fn fingerprint(der: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    let mut out = [0; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// One connection's TLS state, without I/O: ciphertext in, plaintext out,
/// plaintext in, ciphertext out. [`TlsStream`] moves its bytes.
pub struct Session {
    conn: ServerConnection,
}

impl Session {
    pub fn new(config: Arc<ServerConfig>) -> io::Result<Session> {
        let conn = ServerConnection::new(config).map_err(io::Error::other)?;
        Ok(Session { conn })
    }

    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// Moves decrypted bytes into `buf`: `Ok(Some(n))` with n > 0, or
    /// `Ok(Some(0))` once the peer sent close_notify, or `Ok(None)` if there
    /// is none now.
    pub fn plaintext(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        match self.conn.reader().read(buf) {
            Ok(n) => Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Feeds ciphertext; returns how much of it was taken (rustls takes at
    /// most a record's worth while its plaintext is undrained). An error is
    /// fatal: the alert it queued is in [`Session::output`].
    pub fn feed(&mut self, mut cipher: &[u8]) -> io::Result<usize> {
        let before = cipher.len();
        self.conn.read_tls(&mut cipher)?;
        if let Err(e) = self.conn.process_new_packets() {
            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
        }
        Ok(before - cipher.len())
    }

    /// Appends to `out` the ciphertext rustls has ready (handshake
    /// messages, tickets, alerts).
    pub fn output(&mut self, out: &mut Vec<u8>) {
        while self.conn.wants_write() {
            // Writing into a Vec cannot fail.
            if self.conn.write_tls(out).is_err() {
                break;
            }
        }
    }

    /// Seals all of `plain` into records appended to `out`.
    pub fn seal(&mut self, mut plain: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        if self.conn.is_handshaking() {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "TLS handshake not finished",
            ));
        }
        while !plain.is_empty() {
            // Takes what fits in rustls's output buffer; drained below.
            let n = self.conn.writer().write(plain)?;
            plain = &plain[n..];
            self.output(out);
        }
        Ok(())
    }

    /// SHA-256 of the verified client certificate, if the client sent one.
    pub fn client_cert(&self) -> Option<[u8; 32]> {
        let certs = self.conn.peer_certificates()?;
        certs.first().map(|der| fingerprint(der))
    }

    /// Whether this session was resumed (no full handshake).
    pub fn resumed(&self) -> bool {
        matches!(
            self.conn.handshake_kind(),
            Some(rustls::HandshakeKind::Resumed)
        )
    }
}

/// Where the client's stream of records stands, and since when a record
/// has been half-received. rustls deframes the records itself; this only
/// follows their lengths, so that a client cannot hold a connection open
/// with a record it never finishes, which yields no plaintext and so no
/// half-read request for the connection's deadlines to see.
#[derive(Debug, Default)]
struct RecordEdges {
    /// Header bytes of the next record received so far (below
    /// `RECORD_HEADER`), and the last two of them: its body's length.
    header_seen: usize,
    length: [u8; 2],
    /// Body bytes of the current record still to come.
    body_left: usize,
    /// When the record now half-received began to arrive.
    partial_since: Option<Duration>,
}

impl RecordEdges {
    /// Follows `bytes` received at `now`.
    fn received(&mut self, mut bytes: &[u8], now: Duration) {
        let mut ended = false;
        while !bytes.is_empty() {
            if self.body_left > 0 {
                let take = self.body_left.min(bytes.len());
                self.body_left -= take;
                bytes = &bytes[take..];
                ended |= self.body_left == 0;
                continue;
            }
            if self.header_seen >= RECORD_HEADER - 2 {
                self.length[self.header_seen + 2 - RECORD_HEADER] = bytes[0];
            }
            self.header_seen += 1;
            bytes = &bytes[1..];
            if self.header_seen == RECORD_HEADER {
                self.header_seen = 0;
                self.body_left = usize::from(u16::from_be_bytes(self.length));
                ended |= self.body_left == 0;
            }
        }
        let mid_record = self.header_seen > 0 || self.body_left > 0;
        // A record that began in these bytes began now; one still going on
        // from before keeps its start, however many bytes trickle in.
        self.partial_since = match (mid_record, ended) {
            (false, _) => None,
            (true, true) => Some(now),
            (true, false) => self.partial_since.or(Some(now)),
        };
    }
}

/// A TLS connection on the per-core ring.
pub struct TlsStream {
    /// Owns the descriptor.
    stream: std::net::TcpStream,
    ring: Rc<Ring>,
    session: Session,
    /// Ciphertext received and not yet fed: `cipher_in[fed..filled]`.
    cipher_in: Vec<u8>,
    fed: usize,
    filled: usize,
    cipher_out: Vec<u8>,
    /// When the handshake must be done by (`coarse_now` time).
    handshake_deadline: Duration,
    edges: RecordEdges,
}

impl TlsStream {
    pub fn new(
        stream: std::net::TcpStream,
        ring: Rc<Ring>,
        config: Arc<ServerConfig>,
        handshake_timeout: Duration,
    ) -> io::Result<TlsStream> {
        Ok(TlsStream {
            stream,
            ring,
            session: Session::new(config)?,
            cipher_in: vec![0; CIPHER_IN],
            fed: 0,
            filled: 0,
            cipher_out: Vec::new(),
            handshake_deadline: coarse_now() + handshake_timeout,
            edges: RecordEdges::default(),
        })
    }

    pub fn stream(&self) -> &std::net::TcpStream {
        &self.stream
    }

    pub fn session(&self) -> &Session {
        &self.session
    }

    /// When the record now half-received began to arrive (`coarse_now`
    /// time); `None` between records.
    pub fn partial_since(&self) -> Option<Duration> {
        self.edges.partial_since
    }

    /// Bytes of ciphertext buffers held (rustls's own state aside).
    pub fn buffer_bytes(&self) -> usize {
        self.cipher_in.capacity() + self.cipher_out.capacity()
    }

    /// Whether the stream can wait for its next record holding no buffer:
    /// past the handshake, with every byte received fed to rustls. (What
    /// rustls has decrypted is drained before a read waits: `read`.)
    pub fn can_release(&self) -> bool {
        self.fed == self.filled && !self.session.is_handshaking()
    }

    /// Frees the sealed-output buffer between reads, where a burst of
    /// large replies left it grown.
    pub fn shrink_idle(&mut self) {
        if self.cipher_out.is_empty() {
            self.cipher_out = Vec::new();
        }
    }

    /// Frees both ciphertext buffers, if it can (`can_release`); the next
    /// `read` (or `restore`) takes a receive buffer again.
    pub fn release(&mut self) -> bool {
        if !self.can_release() {
            return false;
        }
        self.cipher_in = Vec::new();
        (self.fed, self.filled) = (0, 0);
        self.shrink_idle();
        true
    }

    /// Takes the receive buffer back after a `release`.
    pub fn restore(&mut self) {
        if self.cipher_in.is_empty() {
            self.cipher_in = vec![0; CIPHER_IN];
        }
    }

    /// Waits, holding no buffer, until the socket has something to read.
    pub async fn readable(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.ring.readable(self.stream.as_raw_fd(), timeout).await
    }

    /// Reads plaintext into `buf[at..]`, as a plain socket read does: 0
    /// means the peer closed. Handshake messages are answered on the way.
    /// After the handshake, ciphertext that gives no plaintext ends the read
    /// with `WouldBlock`, so the caller weighs its deadlines again
    /// (`partial_since` may have changed) before it reads on.
    pub async fn read(
        &mut self,
        mut buf: Vec<u8>,
        at: usize,
        timeout: Option<Duration>,
    ) -> (io::Result<usize>, Vec<u8>) {
        let mut received = false;
        loop {
            match self.decrypt(&mut buf[at..]) {
                Ok(Some(n)) => return (Ok(n), buf),
                Ok(None) => {}
                Err(e) => {
                    // Best effort: tell the peer why (the alert rustls queued).
                    let _ = self.flush(Some(HANDSHAKE_TIMEOUT)).await;
                    return (Err(e), buf);
                }
            }
            // Handshake messages or tickets to send before waiting.
            if let Err(e) = self.flush(Some(HANDSHAKE_TIMEOUT)).await {
                return (Err(e), buf);
            }
            if received && !self.session.is_handshaking() {
                return (Err(io::ErrorKind::WouldBlock.into()), buf);
            }
            let timeout = match self.read_timeout(timeout) {
                Ok(t) => t,
                Err(e) => return (Err(e), buf),
            };
            self.restore();
            let cipher = std::mem::take(&mut self.cipher_in);
            let (result, cipher) = self
                .ring
                .recv(self.stream.as_raw_fd(), cipher, 0, timeout)
                .await;
            self.cipher_in = cipher;
            match result {
                Ok(0) => return (Ok(0), buf),
                Ok(n) => {
                    (self.fed, self.filled) = (0, n);
                    self.edges.received(&self.cipher_in[..n], coarse_now());
                    received = true;
                }
                Err(e) => return (Err(e), buf),
            }
        }
    }

    /// Plaintext from what was received: as much as fits in `buf`, feeding
    /// buffered ciphertext while there is room. `None`: more is needed.
    fn decrypt(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        let mut n = 0;
        loop {
            match self.session.plaintext(&mut buf[n..])? {
                Some(0) if n == 0 => return Ok(Some(0)),
                Some(got) => n += got,
                None => {}
            }
            if n == buf.len() || self.fed == self.filled {
                return Ok((n > 0).then_some(n));
            }
            let took = self.session.feed(&self.cipher_in[self.fed..self.filled])?;
            if took == 0 {
                // Never expected (plaintext is drained before each feed);
                // closing beats spinning.
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "TLS input not taken",
                ));
            }
            self.fed += took;
        }
    }

    /// The idle timeout, or what is left of the handshake's deadline.
    fn read_timeout(&self, idle: Option<Duration>) -> io::Result<Option<Duration>> {
        if !self.session.is_handshaking() {
            return Ok(idle);
        }
        let left = self.handshake_deadline.saturating_sub(coarse_now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "TLS handshake not finished in time",
            ));
        }
        Ok(Some(idle.map_or(left, |idle| idle.min(left))))
    }

    /// Sends what rustls has ready, in one send.
    async fn flush(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.session.output(&mut self.cipher_out);
        self.send_out(timeout).await
    }

    async fn send_out(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        if self.cipher_out.is_empty() {
            return Ok(());
        }
        let out = std::mem::take(&mut self.cipher_out);
        let (result, mut out) = self
            .ring
            .send_all(self.stream.as_raw_fd(), out, timeout)
            .await;
        if out.capacity() <= CIPHER_OUT_KEEP {
            out.clear();
            self.cipher_out = out;
        }
        result
    }

    /// Seals all of `buf` and sends the records in one send.
    pub async fn write_all(
        &mut self,
        buf: Vec<u8>,
        timeout: Option<Duration>,
    ) -> (io::Result<()>, Vec<u8>) {
        if let Err(e) = self.session.seal(&buf, &mut self.cipher_out) {
            return (Err(e), buf);
        }
        (self.send_out(timeout).await, buf)
    }

    /// Sends close_notify (best effort) before the socket is dropped. (Boxed,
    /// as the socket holds it, so that every connection's task is not the
    /// size of a TLS session.)
    pub async fn close(mut self: Box<Self>) {
        if !self.session.is_handshaking() {
            self.session.conn.send_close_notify();
            let _ = self.flush(Some(HANDSHAKE_TIMEOUT)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, KeyPair};
    use rustls::pki_types::ServerName;
    use rustls::ClientConnection;

    struct Pki {
        ca_pem: String,
        server_cert: CertificateDer<'static>,
        server_key: PrivateKeyDer<'static>,
    }

    fn pki() -> Pki {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .signed_by(&key, &ca, &ca_key)
            .unwrap();
        Pki {
            ca_pem: ca.pem(),
            server_cert: cert.der().clone(),
            server_key: PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
        }
    }

    fn server_config(pki: &Pki) -> Arc<ServerConfig> {
        Arc::new(
            ServerConfig::builder_with_provider(Arc::new(provider::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(vec![pki.server_cert.clone()], pki.server_key.clone_key())
                .unwrap(),
        )
    }

    fn client(pki: &Pki) -> ClientConnection {
        let mut roots = RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(pki.ca_pem.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        let config =
            rustls::ClientConfig::builder_with_provider(Arc::new(provider::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
        ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").unwrap()).unwrap()
    }

    /// Runs the handshake in memory: client bytes fed to the session whole.
    fn handshake(server: &mut Session, client: &mut ClientConnection) {
        for _ in 0..10 {
            let mut wire = Vec::new();
            while client.wants_write() {
                client.write_tls(&mut wire).unwrap();
            }
            let mut at = 0;
            while at < wire.len() {
                at += server.feed(&wire[at..]).unwrap();
            }
            let mut back = Vec::new();
            server.output(&mut back);
            client.read_tls(&mut &back[..]).unwrap();
            client.process_new_packets().unwrap();
            if !server.is_handshaking() && !client.is_handshaking() {
                return;
            }
        }
        panic!("handshake did not finish");
    }

    #[test]
    fn plaintext_round_trips_through_the_session() {
        let pki = pki();
        let mut server = Session::new(server_config(&pki)).unwrap();
        let mut client = client(&pki);
        handshake(&mut server, &mut client);
        assert_eq!(server.client_cert(), None);

        // A pipelined batch bigger than one record, in one feed.
        let request: Vec<u8> = (0..3000)
            .flat_map(|i| format!("get key{i}\r\n").into_bytes())
            .collect();
        client.writer().write_all(&request).unwrap();
        let mut wire = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut wire).unwrap();
        }
        let mut got = Vec::new();
        let mut at = 0;
        let mut buf = [0u8; 4096];
        loop {
            while let Some(n) = server.plaintext(&mut buf).unwrap() {
                got.extend_from_slice(&buf[..n]);
            }
            if at == wire.len() {
                break;
            }
            at += server.feed(&wire[at..]).unwrap();
        }
        assert_eq!(got, request);

        // One reply batch is sealed whole, however large.
        let reply = vec![b'x'; 200_000];
        let mut sealed = Vec::new();
        server.seal(&reply, &mut sealed).unwrap();
        // The client's deframer takes a record at a time.
        let (mut opened, mut at) = (Vec::new(), 0);
        let mut chunk = vec![0; 1 << 16];
        while at < sealed.len() {
            at += client.read_tls(&mut &sealed[at..]).unwrap();
            client.process_new_packets().unwrap();
            while let Ok(n) = client.reader().read(&mut chunk) {
                opened.extend_from_slice(&chunk[..n]);
            }
        }
        assert_eq!(opened, reply);
    }

    #[test]
    fn garbage_fails_the_handshake() {
        let pki = pki();
        for garbage in [
            &b"get foo\r\n"[..],
            b"\x16\x03\x01\x00\x05hello",
            &[0xff; 64],
        ] {
            let mut server = Session::new(server_config(&pki)).unwrap();
            let err = server.feed(garbage).expect_err("garbage accepted");
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{garbage:?}");
            let mut alert = Vec::new();
            server.output(&mut alert);
            // An alert record (0x15) where rustls sends one, nothing else.
            assert!(alert.is_empty() || alert[0] == 0x15, "{err}: {alert:?}");
        }
    }

    #[test]
    fn nothing_is_sealed_before_the_handshake() {
        let pki = pki();
        let mut server = Session::new(server_config(&pki)).unwrap();
        let mut out = Vec::new();
        assert!(server.seal(b"STORED\r\n", &mut out).is_err());
        assert!(out.is_empty());
    }

    /// A record's header, then its body, as `received` sees them.
    fn record(body: usize) -> Vec<u8> {
        let mut r = vec![0x17, 0x03, 0x03];
        r.extend_from_slice(&(body as u16).to_be_bytes());
        r.resize(RECORD_HEADER + body, 0xaa);
        r
    }

    #[test]
    fn record_edges_date_each_half_received_record() {
        let secs = Duration::from_secs;
        let mut edges = RecordEdges::default();
        // Whole records, one or many to a read: nothing is half-received.
        edges.received(&record(100), secs(1));
        assert_eq!(edges.partial_since, None);
        edges.received(&[record(0), record(300), record(1)].concat(), secs(2));
        assert_eq!(edges.partial_since, None);
        // A record split at every point: half-received from its first byte
        // until its last, however it trickles in.
        let r = record(40);
        for split in 1..r.len() {
            let mut edges = RecordEdges::default();
            edges.received(&r[..split], secs(10));
            assert_eq!(edges.partial_since, Some(secs(10)), "split {split}");
            for (i, byte) in r[split..r.len() - 1].iter().enumerate() {
                edges.received(&[*byte], secs(11 + i as u64));
                assert_eq!(edges.partial_since, Some(secs(10)), "split {split}");
            }
            edges.received(&r[r.len() - 1..], secs(100));
            assert_eq!(edges.partial_since, None, "split {split}");
        }
        // A read that ends one record and begins the next: the next one is
        // dated from that read, not from the one before.
        let mut edges = RecordEdges::default();
        let two = [record(50), record(50)].concat();
        edges.received(&two[..20], secs(1));
        edges.received(&two[20..70], secs(5));
        assert_eq!(edges.partial_since, Some(secs(5)));
        edges.received(&two[70..], secs(6));
        assert_eq!(edges.partial_since, None);
    }

    #[test]
    fn fingerprints_are_sha256_of_the_der() {
        // SHA-256("abc"), FIPS 180-2's example.
        let fp = fingerprint(b"abc");
        assert_eq!(fp[..4], [0xba, 0x78, 0x16, 0xbf]);
        assert_eq!(fp[28..], [0xf2, 0x00, 0x15, 0xad]);
    }
}
