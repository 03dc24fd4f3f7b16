//! `--metrics-listen`: the real binary's `/metrics`, checked by real tools.
//!
//! A scrape after real traffic shows exact per-project figures (the top N
//! by bytes apart, the rest as `project="_other"`), `promtool check
//! metrics` accepts it, and a real Prometheus server scrapes it and answers
//! a per-project query. promtool and prometheus come from Debian's
//! `prometheus` package (tests/install-deps.sh); without them these checks
//! are skipped, unless `CI` is set, where they fail.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{limit_open_files, oauth_request, within, Conn, GrantsFile};

/// The real binary with `--metrics-listen 127.0.0.1:0`; the addresses of
/// both ports come from its ready line.
struct Server {
    child: Child,
    addr: SocketAddr,
    metrics: SocketAddr,
}

impl Server {
    fn start(extra: &[&str]) -> Server {
        Server::start_nofile(extra, None)
    }

    /// As [`Server::start`], with at most `nofile` open descriptors.
    fn start_nofile(extra: &[&str], nofile: Option<u64>) -> Server {
        let mut command = Command::new(env!("CARGO_BIN_EXE_ferrocache"));
        if let Some(n) = nofile {
            limit_open_files(&mut command, n);
        }
        let mut child = command
            .args([
                "--listen",
                "127.0.0.1:0",
                "--cores",
                "2",
                "--memory-mb",
                "64",
            ])
            .args(["--metrics-listen", "127.0.0.1:0"])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn ferrocache");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = lines.next().expect("a ready line").expect("read it");
        std::thread::spawn(move || for _ in lines {});
        let field = |prefix: &str| -> SocketAddr {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(prefix))
                .unwrap_or_else(|| panic!("no {prefix} in the ready line {line:?}"))
                .parse()
                .unwrap()
        };
        let addr = line
            .split("listening on ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .expect("address in the ready line")
            .parse()
            .unwrap();
        let metrics = field("metrics=");
        Server {
            child,
            addr,
            metrics,
        }
    }

    fn connect(&self) -> Conn {
        Conn::new(TcpStream::connect(self.addr).expect("connect"))
    }

    fn scrape(&self) -> String {
        let (status, body) = http(self.metrics, "GET /metrics");
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Resident set size of the server, in bytes.
    fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the server is running");
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kib << 10
    }

    /// Asserts the server still runs, and its memcache port still answers.
    fn assert_up(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("the server exited: {status}");
        }
        let mut conn = self.connect();
        conn.send(b"version\r\n");
        assert!(conn.read_until(b"\r\n").starts_with(b"VERSION "));
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.0 request (`METHOD PATH`); the status and the body.
fn http(addr: SocketAddr, request: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect over HTTP");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(stream, "{request} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read response");
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    (status, body.to_owned())
}

/// The value of the sample `series` (name and labels, exactly as written).
fn sample(text: &str, series: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(str::to_owned)
}

fn authenticate(conn: &mut Conn, token: &str, project: &str) {
    let value = format!("{token} {project} cache");
    conn.roundtrip(&oauth_request(&value), b"STORED\r\n");
}

fn store(conn: &mut Conn, key: &str, len: usize) {
    let value = "v".repeat(len);
    conn.roundtrip(
        format!("set {key} 0 0 {len}\r\n{value}\r\n").as_bytes(),
        b"STORED\r\n",
    );
}

/// `tool` from Debian's prometheus package, or `None` (after checking
/// `CI`) where it is not installed.
fn installed(tool: &str) -> Option<PathBuf> {
    let path = Path::new("/usr/bin").join(tool);
    if path.exists() {
        return Some(path);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{} is not installed, and CI is set: run tests/install-deps.sh",
        path.display()
    );
    eprintln!(
        "SKIP: {} is not installed (set CI to make this fail)",
        path.display()
    );
    None
}

#[test]
fn a_scrape_shows_each_project_and_passes_promtool() {
    let server = Server::start(&["--metrics-top-projects", "2"]);
    // alpha stores the most bytes, beta less, gamma least: with two
    // projects shown, gamma is summed into _other.
    let mut alpha = server.connect();
    authenticate(&mut alpha, "t", "alpha");
    for i in 0..30 {
        store(&mut alpha, &format!("a{i}"), 200);
    }
    for key in ["a1", "a2", "a3", "a4", "nope1", "nope2"] {
        alpha.send(format!("get {key}\r\n").as_bytes());
        alpha.read_until(b"END\r\n");
    }
    let mut beta = server.connect();
    authenticate(&mut beta, "t", "beta");
    for i in 0..5 {
        store(&mut beta, &format!("b{i}"), 100);
    }
    let mut gamma = server.connect();
    authenticate(&mut gamma, "t", "gamma");
    store(&mut gamma, "g", 10);

    let expected = [
        ("ferrocache_project_items{project=\"_other\"}", "1"),
        ("ferrocache_project_items{project=\"alpha\"}", "30"),
        ("ferrocache_project_commands_total{project=\"alpha\"}", "36"),
        ("ferrocache_project_items{project=\"beta\"}", "5"),
        ("ferrocache_project_get_hits_total{project=\"alpha\"}", "4"),
        (
            "ferrocache_project_get_misses_total{project=\"alpha\"}",
            "2",
        ),
        ("ferrocache_project_get_hits_total{project=\"_other\"}", "0"),
        ("ferrocache_project_connections{project=\"alpha\"}", "1"),
        ("ferrocache_project_connections{project=\"_other\"}", "1"),
        ("ferrocache_project_evictions_total{project=\"alpha\"}", "0"),
        ("ferrocache_projects", "3"),
        ("ferrocache_items", "36"),
        ("ferrocache_get_hits_total", "4"),
        ("ferrocache_get_misses_total", "2"),
        ("ferrocache_commands_total{command=\"set\"}", "36"),
        ("ferrocache_commands_total{command=\"get\"}", "6"),
        ("ferrocache_auth_total{result=\"success\"}", "3"),
        ("ferrocache_connections_open", "3"),
        ("ferrocache_namespaces", "3"),
    ];
    // Each core publishes its figures once a second, on its own tick: wait
    // until every core's show what was done, not only the first core's.
    let mut text = String::new();
    let settled = within(Duration::from_secs(15), || {
        text = server.scrape();
        expected
            .iter()
            .all(|(series, value)| sample(&text, series).as_deref() == Some(*value))
    });
    for (series, value) in expected {
        assert_eq!(
            sample(&text, series).as_deref(),
            Some(value),
            "{series} after {settled:?} in\n{text}"
        );
    }
    assert!(
        !text.contains("gamma"),
        "gamma has series of its own:\n{text}"
    );
    let bytes = |p: &str| -> u64 {
        sample(
            &text,
            &format!("ferrocache_project_items_bytes{{project=\"{p}\"}}"),
        )
        .unwrap()
        .parse()
        .unwrap()
    };
    assert!(bytes("alpha") > bytes("beta") && bytes("beta") > bytes("_other"));
    // 42 keys over two shards: some were forwarded, and each core did work.
    let forwarded: u64 = sample(&text, "ferrocache_forwarded_requests_total")
        .unwrap()
        .parse()
        .unwrap();
    assert!(forwarded > 0, "{text}");
    for core in ["0", "1"] {
        let busy: f64 = sample(
            &text,
            &format!("ferrocache_core_busy_seconds_total{{core=\"{core}\"}}"),
        )
        .unwrap()
        .parse()
        .unwrap();
        assert!(busy > 0.0);
        assert!(sample(
            &text,
            &format!("ferrocache_core_commands_total{{core=\"{core}\"}}")
        )
        .is_some());
    }
    // No quotas: no quota series.
    assert!(!text.contains("quota"), "{text}");

    // Only /metrics, only read.
    assert_eq!(http(server.metrics, "GET /").0, 404);
    assert_eq!(http(server.metrics, "POST /metrics").0, 405);

    let Some(promtool) = installed("promtool") else {
        return;
    };
    let mut check = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    check
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn secure_mode_counts_handshakes_and_only_bound_connections() {
    let grants = GrantsFile::new("token-for-acme-0001 acme\n");
    let server = Server::start(&["--tokens", grants.arg()]);
    let mut good = server.connect();
    authenticate(&mut good, "token-for-acme-0001", "acme");
    store(&mut good, "k", 5);
    let mut bad = server.connect();
    for _ in 0..2 {
        bad.roundtrip(
            &oauth_request("wrong-token-000001 acme cache"),
            b"CLIENT_ERROR authentication failed\r\n",
        );
    }
    // Each core publishes its figures once a second, on its own tick: wait
    // for every core's, not only the first to show something.
    let mut text = String::new();
    let settled = within(Duration::from_secs(15), || {
        text = server.scrape();
        sample(&text, "ferrocache_auth_total{result=\"failure\"}").as_deref() == Some("2")
            && sample(&text, "ferrocache_auth_total{result=\"success\"}").as_deref() == Some("1")
            && sample(&text, "ferrocache_project_items{project=\"acme\"}").as_deref() == Some("1")
    });
    assert!(settled.is_some(), "figures never arrived:\n{text}");
    // The unauthenticated connection is open, but no project's.
    assert_eq!(
        sample(&text, "ferrocache_connections_open").as_deref(),
        Some("2")
    );
    assert_eq!(
        sample(&text, "ferrocache_project_connections{project=\"acme\"}").as_deref(),
        Some("1")
    );
    assert!(!text.contains("project=\"default\""), "{text}");
}

/// With `--quotas`, each project with items shows its cap and reserve (the
/// file's values, as the shards enforce them together, even for a project
/// whose items are all on one shard, and for the largest cap a file can
/// give) and its fair share now.
#[test]
fn quota_figures_are_served_per_project() {
    let dir =
        std::env::temp_dir().join(format!("ferrocache-metrics-quotas-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let quotas = dir.join("quotas");
    std::fs::write(
        &quotas,
        "acme memory=8m reserve=2m\nlone memory=18014398509481983k reserve=2m\n",
    )
    .unwrap();
    let server = Server::start(&["--quotas", quotas.to_str().unwrap()]);
    let mut acme = server.connect();
    authenticate(&mut acme, "any", "acme");
    let mut other = server.connect();
    authenticate(&mut other, "any", "globex");
    for i in 0..40 {
        store(&mut acme, &format!("a{i}"), 100);
        store(&mut other, &format!("g{i}"), 100);
    }
    // One item: on one shard of the two.
    let mut lone = server.connect();
    authenticate(&mut lone, "any", "lone");
    store(&mut lone, "only", 100);
    let mut text = String::new();
    let settled = within(Duration::from_secs(15), || {
        text = server.scrape();
        sample(&text, "ferrocache_project_items{project=\"acme\"}").as_deref() == Some("40")
            && sample(&text, "ferrocache_project_items{project=\"globex\"}").as_deref()
                == Some("40")
            && sample(&text, "ferrocache_project_items{project=\"lone\"}").as_deref() == Some("1")
    });
    assert!(settled.is_some(), "figures never arrived:\n{text}");
    let gauge = |series: &str| -> Option<u64> { sample(&text, series).map(|v| v.parse().unwrap()) };
    assert_eq!(
        gauge("ferrocache_project_quota_cap_bytes{project=\"acme\"}"),
        Some(8 << 20),
        "{text}"
    );
    assert_eq!(
        gauge("ferrocache_project_quota_reserve_bytes{project=\"acme\"}"),
        Some(2 << 20),
        "{text}"
    );
    assert_eq!(
        gauge("ferrocache_project_quota_cap_bytes{project=\"lone\"}"),
        Some((u64::MAX >> 10) << 10),
        "{text}"
    );
    assert_eq!(
        gauge("ferrocache_project_quota_reserve_bytes{project=\"lone\"}"),
        Some(2 << 20),
        "{text}"
    );
    // globex has no quota line: no cap or reserve, but a fair share.
    assert_eq!(
        gauge("ferrocache_project_quota_cap_bytes{project=\"globex\"}"),
        None
    );
    assert_eq!(
        gauge("ferrocache_project_quota_reserve_bytes{project=\"globex\"}"),
        None
    );
    for project in ["acme", "globex"] {
        let share = gauge(&format!(
            "ferrocache_project_fair_share_bytes{{project=\"{project}\"}}"
        ));
        assert!(share.is_some_and(|s| s > 0), "{project}: {text}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A Prometheus server in a scratch directory, killed on drop.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
}

impl Prometheus {
    fn start(binary: &Path, target: SocketAddr) -> Prometheus {
        let dir =
            std::env::temp_dir().join(format!("ferrocache-prometheus-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
                 scrape_configs:\n  - job_name: ferrocache\n    static_configs:\n      \
                 - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        // A free port: Prometheus does not report a port 0 back.
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start prometheus");
        Prometheus { child, addr, dir }
    }

    /// The samples of an instant query, as (labels, value).
    fn query(&self, query: &str) -> Vec<(serde_json::Value, String)> {
        let Some(json) = self.answer(query) else {
            return Vec::new();
        };
        json["data"]["result"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| {
                (
                    r["metric"].clone(),
                    r["value"][1].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect()
    }

    /// The query API's whole answer to an instant query (`None`: none came).
    fn answer(&self, query: &str) -> Option<serde_json::Value> {
        let encoded: String = query
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect();
        let mut stream = TcpStream::connect(self.addr).ok()?;
        drop(stream.set_read_timeout(Some(Duration::from_secs(5))));
        let request = format!(
            "GET /api/v1/query?query={encoded} HTTP/1.0\r\nHost: {}\r\n\r\n",
            self.addr
        );
        let mut response = String::new();
        stream.write_all(request.as_bytes()).ok()?;
        stream.read_to_string(&mut response).ok()?;
        let (_, body) = response.split_once("\r\n\r\n")?;
        serde_json::from_str(body).ok()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn a_real_prometheus_scrapes_a_per_project_series() {
    let Some(binary) = installed("prometheus") else {
        return;
    };
    let grants = GrantsFile::new("token-for-acme-0002 acme\n");
    let server = Server::start(&["--tokens", grants.arg()]);
    let mut conn = server.connect();
    authenticate(&mut conn, "token-for-acme-0002", "acme");
    for i in 0..7 {
        store(&mut conn, &format!("k{i}"), 50);
    }
    let prometheus = Prometheus::start(&binary, server.metrics);
    let mut found = Vec::new();
    let answered = within(Duration::from_secs(45), || {
        found = prometheus.query("ferrocache_project_items{project=\"acme\"}");
        found.iter().any(|(_, value)| value == "7")
    });
    assert!(
        answered.is_some(),
        "Prometheus never returned acme's 7 items; last answer: {found:?}"
    );
    let (labels, _) = &found[0];
    assert_eq!(labels["job"], "ferrocache");
    assert_eq!(labels["instance"], server.metrics.to_string());

    // Every query of the Grafana dashboard is valid PromQL, with Grafana's
    // variables as Grafana fills them in; memory by project shows acme.
    for (title, expr) in dashboard_queries() {
        let expr = expr
            .replace("$__rate_interval", "1m")
            .replace("$instance", ".*");
        let answer = prometheus.answer(&expr);
        let status = answer.as_ref().map(|a| a["status"].clone());
        assert_eq!(
            status,
            Some(serde_json::json!("success")),
            "panel {title:?}: {expr}: {answer:?}"
        );
        if title == "Memory by project" {
            let samples = prometheus.query(&expr);
            assert!(
                samples
                    .iter()
                    .any(|(l, v)| l["project"] == "acme" && v != "0"),
                "{title}: {samples:?}"
            );
        }
    }
}

fn dashboard() -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/grafana-dashboard.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).expect("valid JSON")
}

/// docs/grafana-dashboard.json's panels: (title, PromQL) for each query.
fn dashboard_queries() -> Vec<(String, String)> {
    let mut queries = Vec::new();
    for panel in dashboard()["panels"].as_array().expect("panels") {
        assert_eq!(
            panel["datasource"]["uid"], "${datasource}",
            "each panel uses the dashboard's data source variable"
        );
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("a PromQL expr");
            queries.push((panel["title"].as_str().unwrap().to_owned(), expr.to_owned()));
        }
    }
    queries
}

#[test]
fn the_dashboard_asks_for_series_the_server_serves() {
    let json = dashboard();
    let variables: Vec<&str> = json["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(variables, ["datasource", "instance"]);
    assert_eq!(json["templating"]["list"][0]["query"], "prometheus");
    let titles: Vec<String> = dashboard_queries().into_iter().map(|(t, _)| t).collect();
    for needed in [
        "Hit ratio",
        "Memory by project",
        "Evictions by project",
        "Ops per core",
    ] {
        assert!(titles.iter().any(|t| t == needed), "no panel {needed:?}");
    }
    let server = Server::start(&[]);
    // Per-project series exist once a project has a figure.
    store(&mut server.connect(), "k", 1);
    let mut text = String::new();
    let published = within(Duration::from_secs(15), || {
        text = server.scrape();
        text.contains("ferrocache_project_items{project=\"default\"} 1")
    });
    assert!(published.is_some(), "{text}");
    for (title, expr) in dashboard_queries() {
        for name in expr
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("ferrocache_"))
        {
            assert!(
                text.contains(&format!("# TYPE {name} ")),
                "panel {title:?} asks for {name}, which /metrics does not serve"
            );
        }
    }
}

#[test]
fn a_metrics_address_in_use_stops_the_start() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_ferrocache"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--cores",
            "1",
            "--memory-mb",
            "16",
        ])
        .args(["--metrics-listen", &addr])
        .env("RUST_LOG", "error")
        .env("NO_COLOR", "1")
        .output()
        .expect("run ferrocache");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(71), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "a ready line was printed");
}

/// The endpoint's connection cap (src/metrics/endpoint.rs).
const METRICS_CAP: usize = 16;

/// Reads `stream` to its end on a thread of its own; the channel says what
/// came, and when the server closed it (EOF, or a reset).
fn read_to_close(mut stream: TcpStream) -> std::sync::mpsc::Receiver<(Vec<u8>, Instant)> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = stream.read(&mut buf) {
            got.extend_from_slice(&buf[..n]);
        }
        let _ = tx.send((got, Instant::now()));
    });
    rx
}

/// Far more metrics connections than the descriptor limit allows, held
/// open: the server closes those past its cap unread, stays up, its
/// memcache port answers, and `/metrics` answers again once they close.
/// (tiny_http took two descriptors per connection with no cap, and
/// panicked when they ran out: exit 70.)
#[test]
fn metrics_connections_past_the_cap_are_closed_and_the_server_stays_up() {
    let mut server = Server::start_nofile(&[], Some(128));
    // A connect refused here means the server is gone: assert_up says so.
    let held: Vec<TcpStream> = (0..200)
        .filter_map(|_| TcpStream::connect(server.metrics).ok())
        .collect();
    server.assert_up();
    // Those past the cap are closed at once: a read ends rather than
    // waiting for the whole timeout.
    let mut closed = 0;
    for stream in &held {
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut b = [0u8; 1];
        match (&*stream).read(&mut b) {
            Ok(0) => closed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => closed += 1,
            _ => {}
        }
    }
    assert!(
        closed >= held.len() - METRICS_CAP,
        "only {closed} of {} held connections were closed",
        held.len()
    );
    server.assert_up();
    drop(held);
    let mut last = String::new();
    let answered = within(Duration::from_secs(15), || {
        match try_http(server.metrics, "GET /metrics") {
            Some((200, _)) => true,
            other => {
                last = format!("{other:?}");
                false
            }
        }
    });
    assert!(answered.is_some(), "/metrics never answered again: {last}");
    server.assert_up();
}

/// A connection to `to` from the loopback address `from` (any 127.x.y.z is
/// this host's own).
fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let local: SocketAddr = format!("{from}:0").parse().unwrap();
    socket.bind(&local.into()).unwrap();
    socket.connect(&to.into()).unwrap();
    socket.into()
}

/// Connections held open from one address take at most two of the
/// endpoint's places: the rest are closed unread, and a scrape from another
/// address is answered. (Before, sixteen idle connections from anywhere,
/// renewed every few seconds, kept every scrape out.)
#[test]
fn one_address_cannot_hold_the_endpoint_against_a_scrape() {
    let mut server = Server::start(&[]);
    let held: Vec<TcpStream> = (0..METRICS_CAP)
        .map(|_| connect_from("127.0.0.2", server.metrics))
        .collect();
    let closed = held
        .iter()
        .filter(|stream| {
            stream
                .set_read_timeout(Some(Duration::from_secs(1)))
                .unwrap();
            let mut b = [0u8; 1];
            match (&**stream).read(&mut b) {
                Ok(0) => true,
                Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
                Ok(_) => panic!("a reply to a connection that sent nothing"),
            }
        })
        .count();
    assert_eq!(closed, METRICS_CAP - 2, "closed unread from 127.0.0.2");
    let scrape = try_http(server.metrics, "GET /metrics");
    assert!(
        matches!(scrape, Some((200, _))),
        "a scrape beside them got {scrape:?}"
    );
    server.assert_up();
}

/// One HTTP/1.0 request, or `None` if the server closed without a reply.
fn try_http(addr: SocketAddr, request: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(stream, "{request} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}

/// A header line that never ends is cut off at the head cap: the server
/// closes the connection, and 64 MiB sent costs it no memory to speak of.
/// (tiny_http read each line into a Vec with no cap.)
#[test]
fn an_endless_header_line_is_cut_off() {
    let server = Server::start(&[]);
    server.scrape();
    let before = server.rss_bytes();
    let stream = TcpStream::connect(server.metrics).expect("connect to /metrics");
    let closed = read_to_close(stream.try_clone().unwrap());
    let (sent_tx, sent) = std::sync::mpsc::channel();
    let mut writer = stream;
    std::thread::spawn(move || {
        let mut total = 0usize;
        let chunk = vec![b'a'; 64 << 10];
        if writer.write_all(b"GET /metrics HTTP/1.1\r\nX-A: ").is_ok() {
            while total < 64 << 20 && writer.write_all(&chunk).is_ok() {
                total += chunk.len();
            }
        }
        let _ = sent_tx.send(total);
    });
    let (reply, _) = closed
        .recv_timeout(Duration::from_secs(15))
        .expect("the server never closed the connection");
    // The 431 may be lost to the reset that closing with unread bytes
    // sends; if it came, it is a 431.
    let reply = String::from_utf8_lossy(&reply);
    assert!(
        reply.is_empty() || reply.starts_with("HTTP/1.1 431 "),
        "{reply}"
    );
    let sent = sent
        .recv_timeout(Duration::from_secs(15))
        .expect("the writer never stopped");
    assert!(sent < 64 << 20, "the server took all {sent} bytes");
    let after = server.rss_bytes();
    assert!(
        after < before + (16 << 20),
        "RSS grew from {before} to {after} bytes"
    );
    server.scrape();
}

/// A client that sends half a request and waits is closed after the read
/// timeout, and meanwhile another scrape is served.
#[test]
fn a_half_sent_request_is_closed_after_the_read_timeout() {
    let server = Server::start(&[]);
    let mut slow = TcpStream::connect(server.metrics).expect("connect to /metrics");
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let sent_at = Instant::now();
    let closed = read_to_close(slow.try_clone().unwrap());
    // Fewer slow clients than the cap: a scrape is served meanwhile.
    assert!(server.scrape().contains("ferrocache_build_info"));
    let (reply, at) = closed
        .recv_timeout(Duration::from_secs(20))
        .expect("the server never closed the half-sent request");
    assert!(reply.is_empty(), "{:?}", String::from_utf8_lossy(&reply));
    // Closed by the timeout (5 s), not at once.
    let waited = at - sent_at;
    assert!(
        waited >= Duration::from_secs(4),
        "closed after only {waited:?}"
    );
    drop(slow);
    server.scrape();
}
