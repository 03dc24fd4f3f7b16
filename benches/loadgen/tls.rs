//! TLS for the load generator (`--tls`): the rustls client configuration
//! (ring, the server's own provider; a CA file or no certificate check;
//! session tickets on or off) and [`TlsStream`], a rustls client session
//! over one non-blocking socket.
//!
//! One socket read per readiness event, fed to rustls; the plaintext goes to
//! the connection's read buffer. Requests are sealed and sent with one write
//! of all pending records. rustls's buffered API still allocates one vector
//! per record it seals or opens; nothing else here allocates once a
//! connection is open, and a reconnect keeps the ciphertext buffer. Never
//! parses or builds a request.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::crypto::{ring as provider, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, HandshakeKind, RootCertStore,
    SignatureScheme,
};

use crate::transport::{Handshake, Transport};

/// Ciphertext read from the socket at once: several full records, so a deep
/// pipeline's replies come in one read.
const CIPHER_READ: usize = 64 * 1024;

/// Which TLS versions to offer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Version {
    /// TLS 1.3, falling back to 1.2 if the server has no 1.3.
    Any,
    #[value(name = "1.2")]
    V12,
    #[value(name = "1.3")]
    V13,
}

/// How to reach a TLS server: shared by every connection of the run.
pub struct Client {
    pub config: Arc<ClientConfig>,
    pub name: ServerName<'static>,
}

/// The settings `--tls*` give.
pub struct Options<'a> {
    /// PEM file of the CA certificates to verify against.
    pub ca: Option<&'a Path>,
    /// Accept any certificate (still checking the handshake signature).
    pub skip_verify: bool,
    /// Name to verify and send as SNI; an IP address sends no SNI.
    pub server_name: &'a str,
    /// Keep session tickets and resume with them.
    pub resume: bool,
    pub version: Version,
}

impl Client {
    pub fn new(o: &Options) -> Result<Client, String> {
        let provider = Arc::new(provider::default_provider());
        let versions: &[&'static rustls::SupportedProtocolVersion] = match o.version {
            Version::Any => rustls::DEFAULT_VERSIONS,
            Version::V12 => &[&rustls::version::TLS12],
            Version::V13 => &[&rustls::version::TLS13],
        };
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .map_err(|e| format!("TLS versions: {e}"))?;
        let mut config = match (o.ca, o.skip_verify) {
            (Some(_), true) => {
                return Err("--tls-ca and --tls-skip-verify exclude each other".into())
            }
            (None, false) => {
                return Err(
                    "--tls needs --tls-ca FILE, or --tls-skip-verify for a test certificate".into(),
                )
            }
            (Some(ca), false) => {
                let mut roots = RootCertStore::empty();
                let certs = CertificateDer::pem_file_iter(ca)
                    .map_err(|e| format!("--tls-ca {}: {e}", ca.display()))?;
                for cert in certs {
                    let cert = cert.map_err(|e| format!("--tls-ca {}: {e}", ca.display()))?;
                    roots
                        .add(cert)
                        .map_err(|e| format!("--tls-ca {}: {e}", ca.display()))?;
                }
                if roots.is_empty() {
                    return Err(format!("--tls-ca {}: no certificate in it", ca.display()));
                }
                builder.with_root_certificates(roots).with_no_client_auth()
            }
            (None, true) => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
                .with_no_client_auth(),
        };
        config.resumption = if o.resume {
            Resumption::default()
        } else {
            Resumption::disabled()
        };
        let name = ServerName::try_from(o.server_name.to_owned())
            .map_err(|e| format!("--tls-server-name {:?}: {e}", o.server_name))?;
        Ok(Client {
            config: Arc::new(config),
            name,
        })
    }
}

/// `--tls-skip-verify`: any certificate is taken, but the server must still
/// prove it holds the key (the signature over the handshake is checked), so
/// the client does the same work as one that verifies, less the chain.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A rustls client session over a non-blocking socket.
pub struct TlsStream {
    sock: TcpStream,
    tls: ClientConnection,
    /// Ciphertext of the last socket read; `cbuf[cpos..clen]` is not yet fed.
    cbuf: Box<[u8]>,
    cpos: usize,
    clen: usize,
    /// Plaintext rustls holds, as its last `process_new_packets` said, less
    /// what has been read since.
    plain: usize,
    /// The peer's close_notify arrived: `read` returns `Ok(0)` once drained.
    closed: bool,
    /// The handshake has been reported by `take_handshake`.
    counted: bool,
}

impl TlsStream {
    fn session(ctx: &Client) -> io::Result<ClientConnection> {
        ClientConnection::new(ctx.config.clone(), ctx.name.clone()).map_err(io::Error::other)
    }

    /// Feeds rustls the next part of `cbuf` and decrypts it.
    fn feed(&mut self) -> io::Result<()> {
        let mut rest = &self.cbuf[self.cpos..self.clen];
        let before = rest.len();
        self.tls.read_tls(&mut rest)?;
        self.cpos += before - rest.len();
        match self.tls.process_new_packets() {
            Ok(state) => {
                self.plain = state.plaintext_bytes_to_read();
                self.closed = state.peer_has_closed();
                Ok(())
            }
            Err(e) => {
                // Send the alert rustls queued, best effort, then fail.
                let _ = self.tls.write_tls(&mut self.sock);
                Err(io::Error::new(io::ErrorKind::InvalidData, e))
            }
        }
    }
}

impl Transport for TlsStream {
    type Ctx = Client;

    fn open(sock: TcpStream, ctx: &Client) -> io::Result<TlsStream> {
        Ok(TlsStream {
            sock,
            tls: TlsStream::session(ctx)?,
            cbuf: vec![0; CIPHER_READ].into_boxed_slice(),
            cpos: 0,
            clen: 0,
            plain: 0,
            closed: false,
            counted: false,
        })
    }

    fn reopen(&mut self, sock: TcpStream, ctx: &Client) -> io::Result<()> {
        self.tls = TlsStream::session(ctx)?;
        self.sock = sock;
        (self.cpos, self.clen, self.plain) = (0, 0, 0);
        self.closed = false;
        self.counted = false;
        Ok(())
    }

    fn fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.plain > 0 {
                let n = self.tls.reader().read(buf)?;
                self.plain -= n.min(self.plain);
                return Ok(n);
            }
            if self.closed {
                return Ok(0);
            }
            if self.cpos == self.clen {
                // The socket is read only when everything it brought last
                // time has been handed out, so once per readiness event:
                // the caller stops calling when `has_buffered` is false.
                let n = Read::read(&mut self.sock, &mut self.cbuf)?;
                if n == 0 {
                    return Ok(0);
                }
                (self.cpos, self.clen) = (0, n);
            }
            self.feed()?;
            if self.plain == 0 && !self.closed && self.cpos == self.clen {
                // Handshake messages, tickets or a partial record only.
                return Err(io::ErrorKind::WouldBlock.into());
            }
        }
    }

    #[inline]
    fn has_buffered(&self) -> bool {
        self.plain > 0 || self.cpos < self.clen || self.closed
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.tls.writer().write(buf)?;
        if n > 0 {
            return Ok(n);
        }
        // rustls's buffer is full: make room by sending, then try once more.
        self.flush()?;
        match self.tls.writer().write(buf)? {
            0 => Err(io::ErrorKind::WouldBlock.into()),
            n => Ok(n),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut self.sock) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    #[inline]
    fn has_unsent(&self) -> bool {
        self.tls.wants_write()
    }

    #[inline]
    fn write_ready(&self) -> bool {
        !self.tls.is_handshaking()
    }

    fn take_handshake(&mut self) -> Option<Handshake> {
        if self.counted || self.tls.is_handshaking() {
            return None;
        }
        self.counted = true;
        Some(match self.tls.handshake_kind() {
            Some(HandshakeKind::Resumed) => Handshake::Resumed,
            _ => Handshake::Full,
        })
    }

    fn describe(&self) -> Option<String> {
        let version = self.tls.protocol_version()?;
        let suite = self.tls.negotiated_cipher_suite()?;
        let group = self
            .tls
            .negotiated_key_exchange_group()
            .map(|g| format!("{:?}", g.name()))
            .unwrap_or_else(|| "-".into());
        Some(format!("{version:?} {:?} {group}", suite.suite()))
    }

    fn close(&mut self) {
        self.tls.send_close_notify();
        let _ = self.tls.write_tls(&mut self.sock);
        let _ = self.sock.shutdown(std::net::Shutdown::Both);
    }
}
