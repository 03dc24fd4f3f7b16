//! TLS on the memcache port, black-box: the real binary on port 0, a test CA
//! made here with rcgen, and rustls as the client. Exact reply bytes, client
//! certificates granted a project, resumption, reload, and hostile input.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls::client::Resumption;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, HandshakeKind, RootCertStore, StreamOwned};

const FAILED: &[u8] = b"CLIENT_ERROR authentication failed\r\n";

/// A CA and certificates signed by it, as PEM files in a fresh directory.
struct Pki {
    dir: PathBuf,
    ca: rcgen::Certificate,
    ca_key: KeyPair,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let dir =
            std::env::temp_dir().join(format!("ferrocache-tls-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            format!("ferrocache test CA {name}"),
        );
        let ca = params.self_signed(&ca_key).unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        let pki = Pki { dir, ca, ca_key };
        pki.issue("server", &["localhost", "127.0.0.1"]);
        pki
    }

    /// Writes NAME.pem and NAME.key; returns the certificate's DER.
    fn issue(&self, name: &str, sans: &[&str]) -> Vec<u8> {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let cert = params.signed_by(&key, &self.ca, &self.ca_key).unwrap();
        std::fs::write(self.path(&format!("{name}.pem")), cert.pem()).unwrap();
        std::fs::write(self.path(&format!("{name}.key")), key.serialize_pem()).unwrap();
        cert.der().to_vec()
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    fn arg(&self, file: &str) -> String {
        self.path(file).to_str().unwrap().to_owned()
    }

    fn client_config(&self, client_cert: Option<&str>) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(self.path("ca.pem")).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        let builder =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots);
        let mut config = match client_cert {
            None => builder.with_no_client_auth(),
            Some(name) => {
                let certs = CertificateDer::pem_file_iter(self.path(&format!("{name}.pem")))
                    .unwrap()
                    .collect::<Result<Vec<_>, _>>()
                    .unwrap();
                let key = PrivateKeyDer::from_pem_file(self.path(&format!("{name}.key"))).unwrap();
                builder.with_client_auth_cert(certs, key).unwrap()
            }
        };
        config.resumption = Resumption::in_memory_sessions(16);
        Arc::new(config)
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn hex(der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    digest.as_ref().iter().map(|b| format!("{b:02X}")).collect()
}

struct Server {
    child: Child,
    plain: SocketAddr,
    tls: SocketAddr,
}

impl Server {
    fn start(pki: &Pki, extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ferrocache"))
            .args(["--cores", "2", "--listen", "127.0.0.1:0"])
            .args(["--tls-listen", "127.0.0.1:0"])
            .args(["--tls-cert", &pki.arg("server.pem")])
            .args(["--tls-key", &pki.arg("server.key")])
            .args(extra)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn ferrocache");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = lines.next().expect("no ready line").unwrap();
        std::thread::spawn(move || for _ in lines {});
        let plain: SocketAddr = line
            .split("listening on ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("ready line {line}"))
            .parse()
            .unwrap();
        let tls: SocketAddr = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("tls="))
            .unwrap_or_else(|| panic!("no tls= in the ready line {line}"))
            .parse()
            .unwrap();
        assert_ne!(plain, tls, "{line}");
        Server { child, plain, tls }
    }

    fn connect(&self, config: &Arc<ClientConfig>) -> Tls {
        Tls::connect(self.tls, config)
    }

    fn hup(&self) {
        let ok = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Tls {
    stream: StreamOwned<ClientConnection, TcpStream>,
}

impl Tls {
    fn connect(addr: SocketAddr, config: &Arc<ClientConfig>) -> Tls {
        let tcp = TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        tcp.set_nodelay(true).unwrap();
        let conn =
            ClientConnection::new(config.clone(), ServerName::try_from("localhost").unwrap())
                .unwrap();
        let mut tls = Tls {
            stream: StreamOwned::new(conn, tcp),
        };
        tls.stream.flush().unwrap();
        tls
    }

    /// Completes the handshake (or fails it).
    fn handshake(&mut self) -> std::io::Result<()> {
        while self.stream.conn.is_handshaking() {
            self.stream.conn.complete_io(&mut self.stream.sock)?;
        }
        Ok(())
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
        self.stream.flush().unwrap();
    }

    fn read_n(&mut self, n: usize) -> Vec<u8> {
        let mut buf = vec![0; n];
        self.stream.read_exact(&mut buf).expect("read reply");
        buf
    }

    fn roundtrip(&mut self, req: &[u8], expected: &[u8]) {
        self.send(req);
        let got = self.read_n(expected.len());
        if got != expected {
            let at = got.iter().zip(expected).take_while(|(a, b)| a == b).count();
            let show =
                |b: &[u8]| String::from_utf8_lossy(&b[at..(at + 80).min(b.len())]).into_owned();
            panic!(
                "request {:?}: reply differs at byte {at}: got {:?}, expected {:?}",
                String::from_utf8_lossy(&req[..req.len().min(80)]),
                show(&got),
                show(expected)
            );
        }
    }

    /// The server's leaf certificate, DER.
    fn server_cert(&self) -> Vec<u8> {
        self.stream.conn.peer_certificates().unwrap()[0].to_vec()
    }

    /// True once the server has closed the connection (or failed the session).
    fn is_closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.stream.read(&mut b), Ok(0) | Err(_))
    }
}

fn oauth(value: &str) -> Vec<u8> {
    format!("set oauth 0 0 {}\r\n{value}\r\n", value.len()).into_bytes()
}

#[test]
fn tls_and_plain_ports_serve_the_same_bytes() {
    let pki = Pki::new("bytes");
    let server = Server::start(&pki, &[]);
    let config = pki.client_config(None);
    let mut tls = server.connect(&config);
    tls.roundtrip(b"set k 5 0 3\r\nabc\r\n", b"STORED\r\n");
    tls.roundtrip(b"get k\r\n", b"VALUE k 5 3\r\nabc\r\nEND\r\n");
    // The plain port, at the same time, sees the same cache.
    let mut plain = common::Conn::new(TcpStream::connect(server.plain).unwrap());
    plain.roundtrip(b"get k\r\n", b"VALUE k 5 3\r\nabc\r\nEND\r\n");

    // A value larger than a TLS record, and a pipelined batch of gets
    // that spans many records, both ways.
    let big: Vec<u8> = (0..300_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let mut set = format!("set big 0 0 {}\r\n", big.len()).into_bytes();
    set.extend_from_slice(&big);
    set.extend_from_slice(b"\r\n");
    tls.roundtrip(&set, b"STORED\r\n");
    let mut expected = format!("VALUE big 0 {}\r\n", big.len()).into_bytes();
    expected.extend_from_slice(&big);
    expected.extend_from_slice(b"\r\nEND\r\n");
    tls.roundtrip(b"get big\r\n", &expected);
    let mut batch = Vec::new();
    let mut replies = Vec::new();
    for i in 0..2000 {
        batch.extend_from_slice(format!("set key{i} 0 0 5\r\nv{i:04}\r\n").as_bytes());
        replies.extend_from_slice(b"STORED\r\n");
    }
    for i in 0..2000 {
        batch.extend_from_slice(format!("get key{i}\r\n").as_bytes());
        replies.extend_from_slice(format!("VALUE key{i} 0 5\r\nv{i:04}\r\nEND\r\n").as_bytes());
    }
    tls.roundtrip(&batch, &replies);
}

/// A TLS connection's ciphertext buffers are counted with its others and
/// given back when it goes quiet: after each of a pool of connections has
/// read a 1 MB value, the server's resident memory falls back, and once
/// quiet for ten seconds they hold no buffers at all. Each is then served
/// as before. (Each connection used to keep its sealed output, as large as
/// its largest batch of replies, for as long as it stayed open: a tenant
/// could hold a megabyte per idle connection.)
#[test]
fn idle_tls_connections_give_their_buffers_back() {
    const CLIENTS: usize = 40;
    const SIZE: usize = 1_000_000;
    let pki = Pki::new("idle");
    let server = Server::start(&pki, &["-I", "2m"]);
    let config = pki.client_config(None);
    let mut witness = common::Conn::new(TcpStream::connect(server.plain).unwrap());
    let buffers = |witness: &mut common::Conn| {
        common::stat_num(&common::stats_of(witness, ""), "conn_buffer_bytes")
    };
    let big: Vec<u8> = (0..SIZE).map(|i| b'a' + (i % 26) as u8).collect();
    let set = common::set_request("big", &big);
    let got = common::get_reply("big", &big);

    let mut pool: Vec<Tls> = (0..CLIENTS).map(|_| server.connect(&config)).collect();
    pool[0].roundtrip(&set, b"STORED\r\n");
    for tls in &mut pool {
        tls.roundtrip(b"verbosity 1\r\n", b"OK\r\n");
    }
    let before = rss_bytes(&server);
    for tls in &mut pool {
        tls.roundtrip(b"get big\r\n", &got);
    }
    let held = buffers(&mut witness);
    assert!(
        held >= (CLIENTS * 2 * SIZE) as u64,
        "{CLIENTS} connections that each read {SIZE} bytes count {held} bytes of buffers"
    );
    let shrunk = common::within(Duration::from_secs(5), || {
        rss_bytes(&server) < before + (CLIENTS * SIZE / 4) as u64
    });
    assert!(
        shrunk.is_some(),
        "resident memory {} MiB before the gets, {} MiB 5 s after them",
        before >> 20,
        rss_bytes(&server) >> 20
    );
    // Quiet for ten seconds: nothing held but the witness's 32 KiB.
    let released = common::within(Duration::from_secs(14), || {
        buffers(&mut witness) <= 32 * 1024
    });
    assert!(
        released.is_some(),
        "{CLIENTS} quiet TLS connections still hold {} bytes of buffers",
        buffers(&mut witness)
    );
    for (i, tls) in pool.iter_mut().enumerate() {
        tls.roundtrip(
            format!("set k{i} 0 0 1\r\n{}\r\nget k{i}\r\n", i % 10).as_bytes(),
            format!("STORED\r\nVALUE k{i} 0 1\r\n{}\r\nEND\r\n", i % 10).as_bytes(),
        );
    }
    let mut both = set.clone();
    both.extend_from_slice(b"get big\r\n");
    let mut replies = b"STORED\r\n".to_vec();
    replies.extend_from_slice(&got);
    pool[1].roundtrip(&both, &replies);
}

fn rss_bytes(server: &Server) -> u64 {
    common::rss_of(server.child.id())
}

#[test]
fn sessions_resume_on_reconnect() {
    let pki = Pki::new("resume");
    let server = Server::start(&pki, &[]);
    let config = pki.client_config(None);
    let mut first = server.connect(&config);
    first.roundtrip(b"verbosity 1\r\n", b"OK\r\n");
    assert_eq!(
        first.stream.conn.handshake_kind(),
        Some(HandshakeKind::Full)
    );
    // Read the tickets the server sent after its handshake.
    first.roundtrip(b"verbosity 1\r\n", b"OK\r\n");
    drop(first);
    let mut second = server.connect(&config);
    second.roundtrip(b"verbosity 1\r\n", b"OK\r\n");
    assert_eq!(
        second.stream.conn.handshake_kind(),
        Some(HandshakeKind::Resumed),
        "a reconnect with the ticket resumes"
    );
}

#[test]
fn garbage_and_plaintext_on_the_tls_port_close_the_connection() {
    let pki = Pki::new("garbage");
    let server = Server::start(&pki, &[]);
    for garbage in [&b"get k\r\n"[..], b"\x16\x03\x01\x00\x05hello", &[0u8; 300]] {
        let mut raw = common::Conn::new(TcpStream::connect(server.tls).unwrap());
        raw.send(garbage);
        let started = Instant::now();
        let mut got = Vec::new();
        let _ = raw.stream.read_to_end(&mut got);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "closed promptly"
        );
        // Nothing but (at most) one TLS alert record: never a memcached reply.
        assert!(
            got.is_empty() || (got[0] == 0x15 && got.len() <= 7),
            "{garbage:?} got {got:?}"
        );
    }
    // The server still serves.
    let mut tls = server.connect(&pki.client_config(None));
    tls.roundtrip(b"verbosity 1\r\n", b"OK\r\n");
}

#[test]
fn a_slow_handshake_is_cut_off() {
    let pki = Pki::new("slow");
    let server = Server::start(&pki, &["--idle-timeout", "1"]);
    // A client that connects and says nothing, and one that sends half a
    // ClientHello and then trickles a byte at a time.
    let mut silent = common::Conn::new(TcpStream::connect(server.tls).unwrap());
    let mut hello = Vec::new();
    let mut client = ClientConnection::new(
        pki.client_config(None),
        ServerName::try_from("localhost").unwrap(),
    )
    .unwrap();
    client.write_tls(&mut hello).unwrap();
    let mut trickle = common::Conn::new(TcpStream::connect(server.tls).unwrap());
    trickle.send(&hello[..hello.len() / 2]);
    // A byte every 100 ms would keep an idle timeout of 1 s from ever
    // firing; the handshake deadline (1 s here) cuts it off.
    let started = Instant::now();
    let mut cut_off = None;
    for byte in &hello[hello.len() / 2..hello.len() - 1] {
        if trickle.stream.write_all(&[*byte]).is_err() {
            cut_off = Some(started.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        if started.elapsed() > Duration::from_secs(8) {
            break;
        }
    }
    let cut_off = cut_off.expect("a trickled handshake was never cut off");
    assert!(
        cut_off < Duration::from_secs(3),
        "handshake deadline 1 s, cut off after {cut_off:?}"
    );
    assert!(silent.is_closed());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a silent client closed at the deadline: {:?}",
        started.elapsed()
    );
    let mut tls = server.connect(&pki.client_config(None));
    tls.roundtrip(b"verbosity 1\r\n", b"OK\r\n");
}

/// Half a TLS record is cut off by `--request-timeout`, as half a request
/// is on the plain port: sent and left there, or trickled a byte at a time
/// (each byte would keep an idle timeout from firing). A TLS connection
/// idle between records is not cut off, and `stats` counts both as
/// request timeouts.
#[test]
fn half_a_record_is_cut_off_by_the_request_timeout() {
    let pki = Pki::new("halfrecord");
    let server = Server::start(&pki, &["--request-timeout", "1"]);
    let config = pki.client_config(None);
    let ready = || {
        let mut tls = server.connect(&config);
        // The handshake done and the tickets read.
        tls.roundtrip(b"verbosity 1\r\n", b"OK\r\n");
        tls
    };
    // One record of a whole request, as the client would send it.
    let sealed = |tls: &mut Tls| {
        let value = vec![b'v'; 200];
        let mut request = format!("set k 0 0 {}\r\n", value.len()).into_bytes();
        request.extend_from_slice(&value);
        request.extend_from_slice(b"\r\n");
        tls.stream.conn.writer().write_all(&request).unwrap();
        let mut wire = Vec::new();
        while tls.stream.conn.wants_write() {
            tls.stream.conn.write_tls(&mut wire).unwrap();
        }
        wire
    };
    let mut idle = ready();

    let mut half = ready();
    let record = sealed(&mut half);
    half.stream
        .sock
        .write_all(&record[..record.len() / 2])
        .unwrap();
    let mut rest = Vec::new();
    match half.stream.sock.read_to_end(&mut rest) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("half a record left the connection open: {e}"),
    }

    let mut trickle = ready();
    let record = sealed(&mut trickle);
    let sock = &mut trickle.stream.sock;
    sock.write_all(&record[..10]).unwrap();
    let started = Instant::now();
    let cut_off = record[10..record.len() - 1].iter().any(|byte| {
        std::thread::sleep(Duration::from_millis(100));
        sock.write_all(&[*byte]).is_err() || started.elapsed() > Duration::from_secs(15)
    });
    assert!(
        cut_off && started.elapsed() < Duration::from_secs(15),
        "a trickled record was never cut off"
    );

    idle.roundtrip(b"verbosity 1\r\n", b"OK\r\n");
    let mut plain = common::Conn::new(TcpStream::connect(server.plain).unwrap());
    let stats = common::stats_of(&mut plain, "");
    assert_eq!(common::stat_num(&stats, "request_timeouts"), 2);
    assert_eq!(common::stat_num(&stats, "idle_kicks"), 0);
}

/// A grants file with a token and certificate grants.
fn grants(pki: &Pki, contents: &str) -> String {
    let path = pki.path("grants");
    std::fs::write(&path, contents).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn a_granted_client_certificate_authenticates_without_a_secret() {
    let pki = Pki::new("certs");
    let alice = pki.issue("alice", &["alice"]);
    let _bob = pki.issue("bob", &["bob"]);
    let tokens = grants(
        &pki,
        &format!(
            "tok projT\ncert:SHA256:{} projA  # alice's certificate\n",
            hex(&alice)
        ),
    );
    let server = Server::start(
        &pki,
        &["--tokens", &tokens, "--tls-client-ca", &pki.arg("ca.pem")],
    );
    // Alice: her project with `-`; another project fails as a wrong token.
    let mut a = server.connect(&pki.client_config(Some("alice")));
    a.roundtrip(b"get k\r\n", b"CLIENT_ERROR authentication required\r\n");
    a.roundtrip(&oauth("- projT c"), FAILED);
    a.roundtrip(&oauth("- projA c"), b"STORED\r\n");
    a.roundtrip(b"set k 0 0 1\r\na\r\n", b"STORED\r\n");
    a.roundtrip(b"get k\r\n", b"VALUE k 0 1\r\na\r\nEND\r\n");
    // The grant line itself is no token.
    let mut a2 = server.connect(&pki.client_config(Some("alice")));
    a2.roundtrip(
        &oauth(&format!("cert:SHA256:{} projA c", hex(&alice))),
        FAILED,
    );
    // Bob's certificate is verified but granted nothing.
    let mut b = server.connect(&pki.client_config(Some("bob")));
    b.roundtrip(&oauth("- projA c"), FAILED);
    // No certificate: `-` fails, a token still works over TLS.
    let mut anon = server.connect(&pki.client_config(None));
    anon.roundtrip(&oauth("- projA c"), FAILED);
    anon.roundtrip(&oauth("tok projT c"), b"STORED\r\n");
    anon.roundtrip(b"get k\r\n", b"END\r\n");
    // And on the plain port `-` never authenticates.
    let mut plain = common::Conn::new(TcpStream::connect(server.plain).unwrap());
    plain.roundtrip(&oauth("- projA c"), FAILED);
}

#[test]
fn required_client_certificates_refuse_others() {
    let pki = Pki::new("require");
    pki.issue("alice", &["alice"]);
    // A certificate from another CA is refused too.
    let stranger = Pki::new("stranger");
    stranger.issue("mallory", &["mallory"]);
    std::fs::copy(stranger.path("mallory.pem"), pki.path("mallory.pem")).unwrap();
    std::fs::copy(stranger.path("mallory.key"), pki.path("mallory.key")).unwrap();
    let server = Server::start(
        &pki,
        &[
            "--tls-client-ca",
            &pki.arg("ca.pem"),
            "--tls-require-client-cert",
        ],
    );
    let mut alice = server.connect(&pki.client_config(Some("alice")));
    alice.roundtrip(b"verbosity 1\r\n", b"OK\r\n");
    for client in [None, Some("mallory")] {
        let mut refused = server.connect(&pki.client_config(client));
        // TLS 1.3 clients finish their side first; the refusal arrives as
        // an alert on the first read.
        let result = refused.handshake();
        if result.is_ok() {
            refused.stream.write_all(b"verbosity 1\r\n").ok();
            assert!(refused.is_closed(), "{client:?} was served");
        }
    }
}

#[test]
fn sighup_reloads_the_certificate_for_new_connections() {
    let pki = Pki::new("reload");
    let server = Server::start(&pki, &[]);
    let config = pki.client_config(None);
    let mut old = server.connect(&config);
    old.roundtrip(b"set k 0 0 1\r\no\r\n", b"STORED\r\n");
    let before = old.server_cert();
    // A new certificate and key in place, then SIGHUP.
    let fresh = pki.issue("server", &["localhost"]);
    assert_ne!(before, fresh);
    server.hup();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // A config without resumption, so each connection sees the cert.
        let mut config = (*pki.client_config(None)).clone();
        config.resumption = Resumption::disabled();
        let mut new = server.connect(&Arc::new(config));
        new.roundtrip(b"verbosity 1\r\n", b"OK\r\n");
        if new.server_cert() == fresh {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new certificate never served"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The connection opened before keeps its session.
    old.roundtrip(b"get k\r\n", b"VALUE k 0 1\r\no\r\nEND\r\n");
    // A broken key file is refused; the server keeps serving the last good one.
    std::fs::write(pki.path("server.key"), "not a key").unwrap();
    server.hup();
    let mut after = server.connect(&config);
    after.roundtrip(b"verbosity 1\r\n", b"OK\r\n");
}

/// A client CA taken out by a SIGHUP no longer vouches for its
/// certificates, on a resumed session either: the reload that changes the
/// CA file also ends resumption of the sessions made before (a resumed
/// session is not verified again). A reload that leaves the CA as it was
/// keeps them.
#[test]
fn a_changed_client_ca_ends_resumption_of_older_sessions() {
    let pki = Pki::new("rotate");
    let alice = pki.issue("alice", &["alice"]);
    let other = Pki::new("rotate-other");
    let tokens = grants(&pki, &format!("cert:SHA256:{} projA\n", hex(&alice)));
    let server = Server::start(
        &pki,
        &["--tokens", &tokens, "--tls-client-ca", &pki.arg("ca.pem")],
    );
    let config = pki.client_config(Some("alice"));
    let login = |kind: HandshakeKind| {
        let mut tls = server.connect(&config);
        tls.roundtrip(&oauth("- projA c"), b"STORED\r\n");
        assert_eq!(tls.stream.conn.handshake_kind(), Some(kind));
        // Read the tickets sent after the handshake.
        tls.roundtrip(b"verbosity 1\r\n", b"OK\r\n");
    };
    login(HandshakeKind::Full);
    login(HandshakeKind::Resumed);
    // The same CA again: sessions still resume.
    server.hup();
    std::thread::sleep(Duration::from_millis(300));
    login(HandshakeKind::Resumed);
    std::fs::copy(other.path("ca.pem"), pki.path("ca.pem")).unwrap();
    server.hup();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut tls = server.connect(&config);
        let refused = tls.handshake().is_err() || {
            tls.send(&oauth("- projA c"));
            tls.is_closed()
        };
        if refused {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "alice still logs in after her CA was taken out ({:?})",
            tls.stream.conn.handshake_kind()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A FIFO, or a link to a device, put in place of a TLS file fails that
/// file's reload at once, and the old settings stay. It used to block the
/// reload thread on the FIFO (or read /dev/zero without end), so no later
/// SIGHUP was handled: a token taken out of the tokens file stayed valid.
#[test]
fn a_fifo_or_a_device_as_a_tls_file_cannot_stop_reloads() {
    let pki = Pki::new("fifo");
    let tokens = grants(&pki, "tok-one-0123456789 projA\ntok-two-0123456789 projB\n");
    let server = Server::start(
        &pki,
        &["--tokens", &tokens, "--tls-client-ca", &pki.arg("ca.pem")],
    );
    // Made before ca.pem turns into a FIFO: it reads that file too.
    let config = pki.client_config(None);
    std::fs::remove_file(pki.path("ca.pem")).unwrap();
    let made = Command::new("mkfifo")
        .arg(pki.path("ca.pem"))
        .status()
        .unwrap();
    assert!(made.success());
    std::fs::remove_file(pki.path("server.pem")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", pki.path("server.pem")).unwrap();
    server.hup();
    std::thread::sleep(Duration::from_millis(200));
    std::fs::write(&tokens, "tok-one-0123456789 projA\n").unwrap();
    server.hup();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut plain = common::Conn::new(TcpStream::connect(server.plain).unwrap());
        plain.send(&oauth("tok-two-0123456789 projB c"));
        if plain.read_until(b"\r\n") == FAILED {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the tokens file was never reloaded: the removed token still logs in"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // TLS still serves, with the settings loaded before.
    let mut tls = server.connect(&config);
    tls.roundtrip(&oauth("tok-one-0123456789 projA c"), b"STORED\r\n");
}

#[test]
fn start_fails_clearly_on_bad_tls_files() {
    let pki = Pki::new("bad");
    let missing = Path::new("/nonexistent/cert.pem");
    let out = Command::new(env!("CARGO_BIN_EXE_ferrocache"))
        .args(["--cores", "1", "--listen", "127.0.0.1:0"])
        .args(["--tls-listen", "127.0.0.1:0"])
        .args(["--tls-cert", missing.to_str().unwrap()])
        .args(["--tls-key", &pki.arg("server.key")])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/cert.pem"), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_ferrocache"))
        .args(["--cores", "1", "--listen", "127.0.0.1:0"])
        .args(["--tls-listen", "127.0.0.1:0"])
        .args(["--tls-cert", &pki.arg("server.pem")])
        .args(["--tls-key", &pki.arg("server.key")])
        .args(["--socket-io", "glommio"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("plaintext only"), "{err}");
}

#[test]
fn a_second_server_on_the_same_tls_port_is_refused() {
    let pki = Pki::new("second");
    let first = Server::start(&pki, &[]);
    let config = pki.client_config(None);
    // Its own plain port, the first's TLS port: the kernel would spread the
    // first's TLS connections over both (SO_REUSEPORT).
    let mut out = Command::new(env!("CARGO_BIN_EXE_ferrocache"))
        .args(["--cores", "2", "--listen", "127.0.0.1:0"])
        .args(["--tls-listen", &first.tls.to_string()])
        .args(["--tls-cert", &pki.arg("server.pem")])
        .args(["--tls-key", &pki.arg("server.key")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A build that shares the port serves on: stop it rather than hang.
    let started = Instant::now();
    while out.try_wait().unwrap().is_none() && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = out.kill();
    let out = out.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(71), "{out:?}");
    assert!(out.stdout.is_empty(), "the second server announced itself");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.lines().last().unwrap(),
        format!(
            "ferrocache: cannot listen on {tls}: Address already in use (pid {pid} (ferrocache) \
             listens on {tls}); stop it or choose another --tls-listen port",
            tls = first.tls,
            pid = first.child.id()
        )
    );
    for _ in 0..8 {
        first
            .connect(&config)
            .roundtrip(b"verbosity 1\r\n", b"OK\r\n");
    }
}
