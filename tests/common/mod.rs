//! Test support: start the real `ferrocache` binary on an ephemeral port and
//! talk raw bytes to it. The server prints one ready line on stdout once every
//! core has bound the port, so tests never sleep to wait for it.
#![allow(dead_code)]

pub mod long_lines;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
}

impl Server {
    /// `ferrocache --cores 2 --listen 127.0.0.1:0` plus `extra` arguments.
    pub fn start(extra: &[&str]) -> Server {
        Self::start_with(&["--cores", "2"], extra)
    }

    pub fn start_with(base: &[&str], extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ferrocache"))
            .args(["--listen", "127.0.0.1:0"])
            .args(base)
            .args(extra)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn ferrocache");
        let addr = read_ready_line(&mut child);
        Server { child, addr }
    }

    pub fn connect(&self) -> Conn {
        Conn::new(TcpStream::connect(self.addr).expect("connect"))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident set size of the server process, in bytes.
    pub fn rss_bytes(&self) -> u64 {
        rss_of(self.pid())
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) takes plain integers; the pid is our own child's.
        unsafe { libc_kill(self.pid() as i32, sig) };
    }
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads stdout until `ferrocache <version> listening on <addr> ...`.
fn read_ready_line(child: &mut Child) -> SocketAddr {
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let line = lines
        .next()
        .expect("server exited before it was ready")
        .expect("read ready line");
    // Keep draining stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    let mut words = line.split_whitespace();
    assert_eq!(
        words.next(),
        Some("ferrocache"),
        "unexpected ready line: {line}"
    );
    let addr = line
        .split("listening on ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("unexpected ready line: {line}"));
    addr.parse().expect("ready line address")
}

/// A raw text-protocol connection with byte-exact helpers.
pub struct Conn {
    pub stream: TcpStream,
}

impl Conn {
    pub fn new(stream: TcpStream) -> Conn {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        Conn { stream }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// Reads exactly `n` bytes.
    pub fn read_exact_n(&mut self, n: usize) -> Vec<u8> {
        let mut buf = vec![0; n];
        self.stream.read_exact(&mut buf).expect("read reply");
        buf
    }

    /// Sends `bytes`; false when the server closed before taking them all.
    pub fn try_send(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).is_ok()
    }

    /// Reads `n` bytes, or what came before the server closed.
    pub fn read_up_to(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n);
        let mut buf = vec![0; n];
        while out.len() < n {
            match self.stream.read(&mut buf[..n - out.len()]) {
                Ok(0) | Err(_) => break,
                Ok(got) => out.extend_from_slice(&buf[..got]),
            }
        }
        out
    }

    /// Sends `req` and asserts the reply is exactly `expected`.
    pub fn roundtrip(&mut self, req: &[u8], expected: &[u8]) {
        self.send(req);
        let got = self.read_exact_n(expected.len());
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(expected),
            "request {:?}",
            String::from_utf8_lossy(req)
        );
    }

    /// Reads until the buffer ends with `terminator` (e.g. b"END\r\n").
    pub fn read_until(&mut self, terminator: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut byte = [0u8; 4096];
        let deadline = Instant::now() + Duration::from_secs(10);
        while !out.ends_with(terminator) {
            assert!(
                Instant::now() < deadline,
                "timed out; got {:?}",
                String::from_utf8_lossy(&out)
            );
            let n = self.stream.read(&mut byte).expect("read");
            assert!(n > 0, "closed; got {:?}", String::from_utf8_lossy(&out));
            out.extend_from_slice(&byte[..n]);
        }
        out
    }

    /// True once the server has closed the connection (EOF or reset).
    pub fn is_closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.stream.read(&mut b), Ok(0) | Err(_))
    }
}

/// A server's log (its stderr), captured line by line as it is written.
#[derive(Clone, Default)]
pub struct Log(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl Log {
    pub fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    /// Lines containing `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.lines().iter().filter(|l| l.contains(needle)).count()
    }

    /// Waits (up to 10 s) for a line containing `needle`, and returns it.
    pub fn wait_for(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(line) = self.lines().into_iter().find(|l| l.contains(needle)) {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "no log line with {needle:?}; log:\n{}",
                self.lines().join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Server {
    /// As [`Server::start_with`], with RUST_LOG=`filter` and stderr captured.
    pub fn start_logged(base: &[&str], extra: &[&str], filter: &str) -> (Server, Log) {
        Self::start_logged_nofile(base, extra, filter, None)
    }

    /// As [`Server::start_logged`], with at most `nofile` open descriptors.
    pub fn start_logged_nofile(
        base: &[&str],
        extra: &[&str],
        filter: &str,
        nofile: Option<u64>,
    ) -> (Server, Log) {
        let mut command = Command::new(env!("CARGO_BIN_EXE_ferrocache"));
        if let Some(n) = nofile {
            limit_open_files(&mut command, n);
        }
        let mut child = command
            .args(["--listen", "127.0.0.1:0"])
            .args(base)
            .args(extra)
            .env("RUST_LOG", filter)
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ferrocache");
        let log = Log::default();
        let stderr = child.stderr.take().expect("stderr");
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                sink.0.lock().unwrap().push(strip_ansi(&line));
            }
        });
        let addr = read_ready_line(&mut child);
        (Server { child, addr }, log)
    }

    /// Waits up to `limit` for the process to exit; its status if it did.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// `line` without ANSI colour sequences (ESC [ ... letter).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `stats` (or `stats GROUP`) as a map of name to value.
pub fn stats_of(conn: &mut Conn, group: &str) -> std::collections::HashMap<String, String> {
    let request = if group.is_empty() {
        "stats\r\n".to_owned()
    } else {
        format!("stats {group}\r\n")
    };
    conn.send(request.as_bytes());
    let reply = String::from_utf8(conn.read_until(b"END\r\n")).expect("utf-8 stats");
    reply
        .lines()
        .filter(|l| *l != "END")
        .map(|l| {
            let mut w = l.splitn(3, ' ');
            assert_eq!(w.next(), Some("STAT"), "{l:?}");
            (
                w.next().unwrap_or("").to_owned(),
                w.next().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

/// One figure of `stats_of`, as a number.
pub fn stat_num(stats: &std::collections::HashMap<String, String>, name: &str) -> u64 {
    stats
        .get(name)
        .unwrap_or_else(|| panic!("no stat {name} in {stats:?}"))
        .parse()
        .unwrap_or_else(|_| panic!("stat {name} is not a number"))
}

/// A grants file (`TOKEN PROJECT_ID` lines) in the temp dir, removed on drop.
pub struct GrantsFile {
    pub path: std::path::PathBuf,
}

impl GrantsFile {
    pub fn new(contents: &str) -> GrantsFile {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "ferrocache-grants-{}-{}.tokens",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, contents).expect("write grants file");
        GrantsFile { path }
    }

    pub fn arg(&self) -> &str {
        self.path.to_str().expect("utf-8 temp path")
    }

    /// Replaces the contents atomically (write a sibling, then rename), so a
    /// reload never sees a half-written file.
    pub fn write(&self, contents: &str) {
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, contents).expect("write grants file");
        std::fs::rename(&tmp, &self.path).expect("rename grants file");
    }
}

impl Drop for GrantsFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Resident set size of process `pid`, in bytes.
pub fn rss_of(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

/// `set KEY 0 0 LEN` with `data` as its block.
pub fn set_request(key: &str, data: &[u8]) -> Vec<u8> {
    let mut request = format!("set {key} 0 0 {}\r\n", data.len()).into_bytes();
    request.extend_from_slice(data);
    request.extend_from_slice(b"\r\n");
    request
}

/// A `get KEY` reply holding `data` (flags 0).
pub fn get_reply(key: &str, data: &[u8]) -> Vec<u8> {
    let mut reply = format!("VALUE {key} 0 {}\r\n", data.len()).into_bytes();
    reply.extend_from_slice(data);
    reply.extend_from_slice(b"\r\nEND\r\n");
    reply
}

/// `set oauth` with `value`.
pub fn oauth_request(value: &str) -> Vec<u8> {
    format!("set oauth 0 0 {}\r\n{value}\r\n", value.len()).into_bytes()
}

/// A client socket whose receive buffer is `rcvbuf` bytes, set before
/// connecting so the window stays that small: a client slow to read.
pub fn small_window(addr: SocketAddr, rcvbuf: usize) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(rcvbuf).unwrap();
    socket.connect(&addr.into()).unwrap();
    socket.into()
}

/// Polls `done` every 50 ms for up to `limit`; how long it took, if it did.
pub fn within(limit: Duration, mut done: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if done() {
            return Some(start.elapsed());
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub const MEMCACHED: &str = "/usr/bin/memcached";

/// A memcached child process on a free port, killed on drop.
/// The first CRLF-ended line of `reply` (all of it when no line ends): the
/// line with its CRLF, the line without it, and what follows.
pub fn split_line(reply: &[u8]) -> (&[u8], &[u8], &[u8]) {
    let end = reply
        .windows(2)
        .position(|w| w == b"\r\n")
        .map_or(reply.len(), |i| i + 2);
    let (line, rest) = reply.split_at(end);
    (line, line.strip_suffix(b"\r\n").unwrap_or(line), rest)
}

pub struct Memcached {
    child: Child,
    pub addr: SocketAddr,
}

impl Memcached {
    /// Starts memcached, or returns `None` (after checking `CI`) when it is not
    /// installed; `test` names the caller in the message.
    pub fn start(test: &str) -> Option<Memcached> {
        Memcached::start_with(test, &[])
    }

    /// [`Memcached::start`] with more memcached options.
    pub fn start_with(test: &str, extra: &[&str]) -> Option<Memcached> {
        if !std::path::Path::new(MEMCACHED).exists() {
            let ci = std::env::var_os("CI").is_some();
            assert!(
                !ci,
                "{MEMCACHED} is not installed, and CI is set: the {test} test must run in CI"
            );
            eprintln!("SKIP {test}: {MEMCACHED} is not installed (set CI to make this fail)");
            return None;
        }
        // A free port: bind :0, note it, let it go. memcached has no port 0
        // mode that reports the port back, so another test's server may take
        // the port first: then memcached exits (it cannot bind), or the port
        // answers as some other server. Either way, try another port.
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let child = Command::new(MEMCACHED)
                .args(["-u", "root", "-l", "127.0.0.1", "-t", "1", "-U", "0"])
                .args(["-p", &port.to_string()])
                .args(extra)
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("spawn memcached");
            let mut server = Memcached {
                child,
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
            };
            if server.ready() {
                return Some(server);
            }
        }
        panic!("memcached never started on a free port");
    }

    /// Waits until this memcached answers `version` on its port: true, or
    /// false if it exited or something else holds the port.
    fn ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if self.child.try_wait().unwrap().is_some() {
                return false;
            }
            if let Ok(mut stream) = TcpStream::connect(self.addr) {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut reply = [0u8; 32];
                let n = stream
                    .write_all(b"version\r\n")
                    .and_then(|()| stream.read(&mut reply))
                    .unwrap_or(0);
                // memcached's own answer; ferrocache's names itself.
                return &reply[..n] == b"VERSION 1.6.18\r\n"
                    && self.child.try_wait().unwrap().is_none();
            }
            assert!(Instant::now() < deadline, "memcached never accepted");
            std::thread::yield_now();
        }
    }
}

impl Drop for Memcached {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One case of a differential test, on a fresh connection: sends
/// `request` (in `chunk`-byte writes), half-closes, and reads until the
/// server closes. A server processes everything buffered before it sees
/// EOF, so this captures every byte a case produces, including nothing.
pub fn exchange(addr: SocketAddr, request: &[u8], chunk: usize) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).expect("connect");
    if chunk < request.len() {
        // Each write its own segment, so the server sees the cuts.
        stream.set_nodelay(true).unwrap();
    }
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // A server that closes early (a line too long) may refuse the rest of
    // the request, or reset the connection: what it sent still counts.
    let sent = request
        .chunks(chunk.max(1))
        .all(|part| stream.write_all(part).is_ok());
    if sent {
        let _ = stream.shutdown(Shutdown::Write);
    }
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            // A reset after the last reply also means "closed".
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("reading reply to {:?}: {e}", show(request)),
        }
    }
    out
}

/// Bytes as text for an assertion message, cut at 300 characters.
pub fn show(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    match s.char_indices().nth(300) {
        Some((cut, _)) => format!("{}...({} bytes)", &s[..cut], bytes.len()),
        None => s.into_owned(),
    }
}

/// Has `command`'s child start with at most `n` open descriptors.
pub fn limit_open_files(command: &mut Command, n: u64) {
    use std::os::unix::process::CommandExt;
    // SAFETY: setrlimit is async-signal-safe; it only lowers a limit of the
    // child about to exec.
    unsafe {
        command.pre_exec(move || {
            let limit = libc::rlimit {
                rlim_cur: n,
                rlim_max: n,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
