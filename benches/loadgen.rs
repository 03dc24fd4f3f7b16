//! Load generator for memcached-text-protocol servers (ferrocache, memcached).
//!
//! `cargo bench --bench loadgen -- --server 127.0.0.1:11211 --conns 50 ...`
//! (`--help` lists everything). Each thread drives its share of the
//! connections from one epoll loop with non-blocking sockets, keeping
//! `--pipeline` requests in flight per connection (closed loop: a reply frees
//! a slot, the slot is refilled at once). One thread is the default because
//! comparisons pin the generator to a single CPU; it must not become the
//! bottleneck, so the hot path does no allocation and no formatting beyond
//! writing decimal digits.
//!
//! `--tls` speaks TLS (rustls on ring, as the server) instead of plain TCP;
//! `--reconnect-every N` replaces each connection after N requests, so with
//! TLS every replacement pays a handshake (full, or resumed with
//! `--tls-resume`) and the run measures handshakes per second.
//!
//! Prints a human summary and one machine-readable `RESULT key=value ...`
//! line (the scripts in `benches/` parse it). Exits 1 if no operation
//! succeeded or any reply was an error, malformed or wrong; 2 on bad
//! arguments or when the server cannot be reached.

// A bench target's modules resolve beside `benches/`, so the pieces living
// in `benches/loadgen/` are named by path.
#[path = "loadgen/conn.rs"]
mod conn;
#[path = "loadgen/rng.rs"]
mod rng;
#[path = "loadgen/stats.rs"]
mod stats;
#[path = "loadgen/tls.rs"]
mod tls;
#[path = "loadgen/transport.rs"]
mod transport;
#[path = "loadgen/value.rs"]
mod value;
#[path = "loadgen/workload.rs"]
mod workload;

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use clap::Parser;

use conn::Conn;
use stats::{Counts, Stats};
use tls::TlsStream;
use transport::Transport;
use value::{KeyFormat, VERIFY_OVERHEAD};
use workload::{Config, Dist, Phase, Workload};

#[derive(Parser, Debug)]
#[command(
    name = "loadgen",
    about = "Closed-loop load generator for memcached-text-protocol servers",
    after_help = "Run as: cargo bench --bench loadgen -- [OPTIONS]"
)]
struct Args {
    /// Server address (host:port).
    #[arg(long, default_value = "127.0.0.1:11211")]
    server: String,
    /// Connections, spread over --threads.
    #[arg(long, default_value_t = 50)]
    conns: usize,
    /// Requests kept in flight per connection.
    #[arg(long, default_value_t = 1)]
    pipeline: usize,
    /// SET:GET weights, e.g. 1:10; 0:1 is read-only.
    #[arg(long, default_value = "1:10", value_parser = parse_ratio)]
    ratio: (u64, u64),
    /// Size of the key space (keys k0..k{N-1}).
    #[arg(long, default_value_t = 100_000)]
    keys: u64,
    /// Key popularity: uniform, or zipf (rank 1 hottest).
    #[arg(long, value_enum, default_value = "uniform")]
    dist: Dist,
    /// Zipf exponent (any value > 0; 1.0 is exact).
    #[arg(long, default_value_t = 0.99)]
    zipf_alpha: f64,
    /// Value length in bytes, or a range MIN-MAX drawn uniformly.
    #[arg(long, default_value = "100", value_parser = parse_size_range)]
    value_size: (usize, usize),
    /// Total key length including its one-letter prefix (0: shortest that fits).
    #[arg(long, default_value_t = 0)]
    key_size: usize,
    /// Seconds of measured load (after warm-up). The default when neither
    /// this nor --requests is given is 10.
    #[arg(long, conflicts_with = "requests")]
    duration: Option<f64>,
    /// Measured operations in total (after warm-up); 0 with --prefill just
    /// loads the keys.
    #[arg(long)]
    requests: Option<u64>,
    /// Operations completed before measuring starts; excluded from every
    /// figure except errors.
    #[arg(long, default_value_t = 0)]
    warmup_requests: u64,
    /// Set every key once before the load (at least 32 deep per connection).
    #[arg(long)]
    prefill: bool,
    /// Authenticate each connection first: "TOKEN PROJECT CACHE".
    #[arg(long)]
    oauth: Option<String>,
    /// On a get miss, set the key (as an application would); the hit ratio
    /// is then the cache's.
    #[arg(long)]
    cache_aside: bool,
    /// Fraction of operations that are gets of one-time keys never used
    /// again (a scan polluting the cache).
    #[arg(long, default_value_t = 0.0)]
    scan_fraction: f64,
    /// Values carry their key, a version and a checksum-like filler; every
    /// value read is checked and any mismatch is an error.
    #[arg(long)]
    verify: bool,
    /// Protocol: classic (get/set) or meta (mg <key> v k / ms <key> <len>;
    /// the handshake as ms oauth).
    #[arg(long, value_enum, default_value = "classic")]
    protocol: Protocol,
    /// PRNG seed; the same seed gives the same operation sequence per thread.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Threads, each with its own epoll loop and share of the connections.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Replace each connection by a new one after this many requests (0:
    /// never); with --tls each new one does a handshake. Prefill is not
    /// paced by it.
    #[arg(long, default_value_t = 0)]
    reconnect_every: u64,
    /// Speak TLS (rustls with ring) instead of plain TCP.
    #[arg(long)]
    tls: bool,
    /// PEM file of the CA certificates the server's certificate must chain
    /// to (webpki refuses a CA certificate as the server's own, so a
    /// self-signed `openssl req -x509` certificate needs --tls-skip-verify).
    #[arg(long, requires = "tls")]
    tls_ca: Option<PathBuf>,
    /// Accept any server certificate (the handshake signature is still
    /// checked): for test certificates only.
    #[arg(long, requires = "tls")]
    tls_skip_verify: bool,
    /// Name to verify the certificate against and send as SNI (default: the
    /// host of --server; an IP address sends no SNI).
    #[arg(long, requires = "tls")]
    tls_server_name: Option<String>,
    /// Keep session tickets and resume with them on reconnect (default:
    /// every handshake is a full one).
    #[arg(long, requires = "tls")]
    tls_resume: bool,
    /// TLS versions to offer.
    #[arg(long, value_enum, default_value = "any", requires = "tls")]
    tls_version: tls::Version,
    /// Checks the samplers and the value encoding, then exits.
    #[arg(long)]
    self_test: bool,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Protocol {
    Classic,
    Meta,
}

fn parse_ratio(s: &str) -> Result<(u64, u64), String> {
    let (a, b) = s
        .split_once(':')
        .ok_or_else(|| format!("expected SET:GET such as 1:10, got {s:?}"))?;
    let a: u64 = a
        .trim()
        .parse()
        .map_err(|e| format!("SET weight {a:?}: {e}"))?;
    let b: u64 = b
        .trim()
        .parse()
        .map_err(|e| format!("GET weight {b:?}: {e}"))?;
    if a + b == 0 {
        return Err("SET:GET weights cannot both be 0".into());
    }
    Ok((a, b))
}

fn parse_size_range(s: &str) -> Result<(usize, usize), String> {
    let one = |t: &str| -> Result<usize, String> {
        t.trim()
            .parse::<usize>()
            .map_err(|e| format!("value size {t:?}: {e}"))
    };
    let (lo, hi) = match s.split_once('-') {
        Some((a, b)) => (one(a)?, one(b)?),
        None => (one(s)?, one(s)?),
    };
    if lo > hi {
        return Err(format!("value size range {s:?} is empty"));
    }
    if hi > 1 << 30 {
        return Err(format!("value size {hi} is over 1 GiB"));
    }
    Ok((lo, hi))
}

/// How long to wait for replies still in flight once the load has stopped.
const DRAIN: Duration = Duration::from_secs(5);
/// A run with requests in flight and no byte received for this long has a
/// stuck server; it is ended and the stuck connections counted as errors.
const STALL: Duration = Duration::from_secs(10);

fn main() -> ExitCode {
    let args = Args::parse();
    if args.self_test {
        return match rng::self_test().and_then(|()| value::self_test()) {
            Ok(()) => {
                println!("loadgen self-test ok");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("loadgen self-test FAILED: {e}");
                ExitCode::FAILURE
            }
        };
    }
    match run(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &Args) -> Result<ExitCode, String> {
    if args.conns == 0 || args.pipeline == 0 || args.keys == 0 {
        return Err("--conns, --pipeline and --keys must be at least 1".into());
    }
    if args.threads == 0 || args.threads > args.conns {
        return Err(format!(
            "--threads must be between 1 and --conns ({})",
            args.conns
        ));
    }
    if !(0.0..1.0).contains(&args.scan_fraction) {
        return Err("--scan-fraction must be in [0, 1)".into());
    }
    if args.requests == Some(0) && !args.prefill {
        return Err("--requests 0 without --prefill does nothing".into());
    }
    let key_format = KeyFormat::new(args.keys, args.key_size)?;
    if args.verify && args.value_size.0 < key_format.len() + VERIFY_OVERHEAD {
        eprintln!(
            "loadgen: note: --verify values hold a {}-byte header, so values are at least that long",
            key_format.len() + VERIFY_OVERHEAD
        );
    }
    let cfg = Config {
        keys: args.keys,
        dist: args.dist,
        zipf_alpha: args.zipf_alpha,
        set_weight: args.ratio.0,
        get_weight: args.ratio.1,
        value_min: args.value_size.0,
        value_max: args.value_size.1,
        key_format,
        scan_fraction: args.scan_fraction,
        cache_aside: args.cache_aside,
        verify: args.verify,
        pipeline: args.pipeline,
        threads: args.threads,
        meta: args.protocol == Protocol::Meta,
    };
    // Fail on a bad --zipf-alpha before connecting anything.
    Workload::new(&cfg, 0, args.seed)?;

    let addr = resolve(&args.server)?;
    if args.tls {
        let host = args
            .server
            .rsplit_once(':')
            .map_or(&*args.server, |(h, _)| h);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let client = tls::Client::new(&tls::Options {
            ca: args.tls_ca.as_deref(),
            skip_verify: args.tls_skip_verify,
            server_name: args.tls_server_name.as_deref().unwrap_or(host),
            resume: args.tls_resume,
            version: args.tls_version,
        })?;
        run_over::<TlsStream>(args, &cfg, addr, &client)
    } else {
        run_over::<TcpStream>(args, &cfg, addr, &())
    }
}

/// The run over one kind of transport.
fn run_over<T: Transport + Send>(
    args: &Args,
    cfg: &Config,
    addr: SocketAddr,
    ctx: &T::Ctx,
) -> Result<ExitCode, String> {
    let mut groups: Vec<Vec<Conn<T>>> = (0..args.threads).map(|_| Vec::new()).collect();
    for id in 0..args.conns {
        let stream =
            transport::connect(addr).map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        let t = T::open(stream, ctx).map_err(|e| format!("connection {id}: {e}"))?;
        groups[id % args.threads].push(Conn::new(
            t,
            id as u64,
            args.oauth.as_deref(),
            cfg.meta,
            args.reconnect_every,
        ));
    }

    let duration = match (args.duration, args.requests) {
        (Some(d), _) if !(d > 0.0 && d.is_finite()) => {
            return Err("--duration must be a positive number of seconds".into())
        }
        (Some(d), _) => Some(Duration::from_secs_f64(d)),
        (None, None) => Some(Duration::from_secs(10)),
        (None, Some(_)) => None,
    };
    println!(
        "loadgen: {addr} conns={} pipeline={} threads={} ratio={}:{} keys={} dist={} value={} verify={} cache_aside={} scan_fraction={} seed={} tls={} reconnect_every={}",
        args.conns,
        args.pipeline,
        args.threads,
        args.ratio.0,
        args.ratio.1,
        args.keys,
        match args.dist {
            Dist::Uniform => "uniform".to_string(),
            Dist::Zipf => format!("zipf({})", args.zipf_alpha),
        },
        if args.value_size.0 == args.value_size.1 {
            args.value_size.0.to_string()
        } else {
            format!("{}-{}", args.value_size.0, args.value_size.1)
        },
        args.verify,
        args.cache_aside,
        args.scan_fraction,
        args.seed,
        match (args.tls, args.tls_resume) {
            (false, _) => "off",
            (true, false) => "full",
            (true, true) => "resume",
        },
        args.reconnect_every,
    );

    let barrier = Barrier::new(args.threads);
    let (cpu_start, wall_start) = (process_cpu(), Instant::now());
    let plan = Plan {
        prefill: args.prefill,
        load: args.requests != Some(0),
        duration,
        requests: args.requests,
        warmup: args.warmup_requests,
        seed: args.seed,
    };
    let dial = Dial { addr, ctx };
    let outcomes: Vec<Outcome> = std::thread::scope(|s| {
        let handles: Vec<_> = groups
            .into_iter()
            .enumerate()
            .map(|(t, conns)| {
                let (plan, barrier, dial) = (&plan, &barrier, &dial);
                s.spawn(move || run_thread(cfg, plan, t, conns, barrier, dial))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("loadgen thread panicked"))
            .collect::<Result<Vec<_>, String>>()
    })?;
    // The generator's own CPU use, in CPUs: near `--threads` means it, not
    // the server, may be what limits the run.
    let client_cpu = (process_cpu() - cpu_start) / wall_start.elapsed().as_secs_f64();
    Ok(report(args, &plan, outcomes, client_cpu))
}

/// User + system CPU seconds of this process so far.
fn process_cpu() -> f64 {
    // SAFETY: rusage is plain integers, for which all-zero bytes are valid.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage fills the struct we pass and keeps no reference.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(ru.ru_utime) + secs(ru.ru_stime)
}

fn resolve(server: &str) -> Result<SocketAddr, String> {
    server
        .to_socket_addrs()
        .map_err(|e| format!("--server {server:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("--server {server:?} resolves to nothing"))
}

/// Where a reconnect goes, shared read-only.
struct Dial<'a, T: Transport> {
    addr: SocketAddr,
    ctx: &'a T::Ctx,
}

/// What the threads are to do, shared read-only.
struct Plan {
    prefill: bool,
    load: bool,
    duration: Option<Duration>,
    requests: Option<u64>,
    warmup: u64,
    seed: u64,
}

struct Outcome {
    stats: Stats,
    measured: Duration,
    prefill: Counts,
    prefill_time: Duration,
    /// What the first connection negotiated (TLS), for the summary.
    session: Option<String>,
}

/// `total` split over `parts`, part `i` of it.
fn share(total: u64, parts: usize, i: usize) -> u64 {
    total / parts as u64 + u64::from((i as u64) < total % parts as u64)
}

fn run_thread<T: Transport>(
    cfg: &Config,
    plan: &Plan,
    t: usize,
    mut conns: Vec<Conn<T>>,
    barrier: &Barrier,
    dial: &Dial<T>,
) -> Result<Outcome, String> {
    let poller = Poller::new()?;
    for (i, c) in conns.iter().enumerate() {
        poller.add(c.t.fd(), i)?;
    }
    let mut w = Workload::new(cfg, t, plan.seed)?;
    let mut prefill = Counts::default();
    let mut prefill_time = Duration::ZERO;
    if plan.prefill {
        // Contiguous key ranges per thread, so every key is set exactly once.
        let lo = share_start(cfg.keys, cfg.threads, t);
        let hi = share_start(cfg.keys, cfg.threads, t + 1);
        w.phase = Phase::Prefill { next: lo, end: hi };
        let start = Instant::now();
        drive(&mut conns, &poller, &mut w, None, dial);
        prefill_time = start.elapsed();
        prefill = w.stats.counts;
    }
    // Every thread finishes its prefill before any starts the load, so the
    // measured load never overlaps set-up traffic.
    barrier.wait();
    let mut measured = Duration::ZERO;
    if plan.load {
        let budget = plan.requests.map(|r| share(r, cfg.threads, t));
        w.start_load(budget, share(plan.warmup, cfg.threads, t));
        drive(&mut conns, &poller, &mut w, plan.duration, dial);
        measured = w
            .measure_start
            .map(|s| s.elapsed())
            .unwrap_or(Duration::ZERO);
    } else {
        w.stats = Stats::new();
    }
    Ok(Outcome {
        stats: w.stats,
        measured,
        prefill,
        prefill_time,
        session: conns.iter().find_map(|c| c.t.describe()),
    })
}

fn share_start(total: u64, parts: usize, i: usize) -> u64 {
    (0..i).map(|j| share(total, parts, j)).sum()
}

/// Runs the current phase until it issues nothing more and every reply is in
/// (or the drain/stall limits end it). `duration` counts from the end of
/// warm-up.
fn drive<T: Transport>(
    conns: &mut [Conn<T>],
    poller: &Poller,
    w: &mut Workload,
    duration: Option<Duration>,
    dial: &Dial<T>,
) {
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
    let now = Instant::now();
    for (i, c) in conns.iter_mut().enumerate() {
        if !c.dead {
            c.fill(w, now);
            write_side(c, i, poller, w);
        }
    }
    let mut drain_until: Option<Instant> = None;
    let mut last_progress = now;
    loop {
        let now = Instant::now();
        if let (Some(d), Some(start)) = (duration, w.measure_start) {
            if !w.stopped && now >= start + d {
                w.stopped = true;
            }
        }
        let live = conns.iter().filter(|c| !c.dead).count();
        if live == 0 {
            break;
        }
        let in_flight = || {
            conns
                .iter()
                .filter(|c| !c.dead)
                .map(Conn::in_flight)
                .sum::<usize>()
        };
        if w.stopped {
            let owed = in_flight();
            if owed == 0 {
                break;
            }
            if now >= *drain_until.get_or_insert(now + DRAIN) {
                w.report_error(format_args!(
                    "{owed} replies still owed {} s after the load stopped",
                    DRAIN.as_secs()
                ));
                w.stats.counts.conn_errors += live as u64;
                for c in conns.iter().filter(|c| !c.dead && c.in_flight() > 0) {
                    w.report_error(format_args!("{}", c.describe_stuck()));
                }
                break;
            }
        }
        if now.duration_since(last_progress) > STALL {
            let stuck = conns
                .iter()
                .filter(|c| !c.dead && c.in_flight() > 0)
                .count();
            w.report_error(format_args!(
                "no reply for {} s on {stuck} connections; giving up",
                STALL.as_secs()
            ));
            for c in conns.iter().filter(|c| !c.dead && c.in_flight() > 0) {
                w.report_error(format_args!("{}", c.describe_stuck()));
            }
            w.stats.counts.conn_errors += stuck as u64;
            break;
        }
        // A short timeout keeps the deadline check prompt on an idle loop.
        let n = poller.wait(&mut events, 10);
        let now = Instant::now();
        if n > 0 {
            last_progress = now;
        }
        for ev in &events[..n] {
            let i = ev.u64 as usize;
            let c = &mut conns[i];
            if c.dead {
                continue;
            }
            let bits = ev.events as i32;
            if bits & (libc::EPOLLIN | libc::EPOLLERR | libc::EPOLLHUP) != 0
                && c.read_and_parse(w, now).is_err()
            {
                kill(c, poller);
                continue;
            }
            if c.due_for_reconnect() && !w.stopped {
                let old = c.t.fd();
                poller.remove(old);
                let moved = c
                    .reconnect(dial.addr, dial.ctx, now)
                    .and_then(|()| poller.ctl(libc::EPOLL_CTL_ADD, c.t.fd(), i, false));
                if let Err(e) = moved {
                    w.stats.counts.conn_errors += 1;
                    w.report_error(format_args!("reconnect: {e}"));
                    kill(c, poller);
                    continue;
                }
                w.stats.counts.connects += 1;
            }
            c.fill(w, now);
            write_side(c, i, poller, w);
        }
    }
}

/// Flushes `c` and keeps its EPOLLOUT interest in step with its backlog.
fn write_side<T: Transport>(c: &mut Conn<T>, i: usize, poller: &Poller, w: &mut Workload) {
    if let Err(e) = c.flush() {
        w.stats.counts.conn_errors += 1;
        w.report_error(format_args!("write: {e}"));
        kill(c, poller);
        return;
    }
    let want = c.has_unsent();
    if want != c.want_write {
        c.want_write = want;
        if let Err(e) = poller.modify(c.t.fd(), i, want) {
            w.stats.counts.conn_errors += 1;
            w.report_error(format_args!("epoll_ctl: {e}"));
            kill(c, poller);
        }
    }
}

fn kill<T: Transport>(c: &mut Conn<T>, poller: &Poller) {
    c.dead = true;
    poller.remove(c.t.fd());
    c.t.close();
}

/// A level-triggered epoll set; the event's data is the connection index.
struct Poller {
    fd: i32,
}

impl Poller {
    fn new() -> Result<Poller, String> {
        // SAFETY: plain syscall; the fd is owned by the returned value.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(format!(
                "epoll_create1: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(Poller { fd })
    }

    fn ctl(&self, op: i32, fd: i32, i: usize, write: bool) -> std::io::Result<()> {
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | if write { libc::EPOLLOUT } else { 0 }) as u32,
            u64: i as u64,
        };
        // SAFETY: `ev` outlives the call; epoll copies it.
        if unsafe { libc::epoll_ctl(self.fd, op, fd, &mut ev) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    fn add(&self, fd: i32, i: usize) -> Result<(), String> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, i, false)
            .map_err(|e| format!("epoll_ctl: {e}"))
    }

    fn modify(&self, fd: i32, i: usize, write: bool) -> std::io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd, i, write)
    }

    fn remove(&self, fd: i32) {
        // Failure only means it was not registered; nothing to undo.
        let _ = self.ctl(libc::EPOLL_CTL_DEL, fd, 0, false);
    }

    fn wait(&self, events: &mut [libc::epoll_event], timeout_ms: i32) -> usize {
        // SAFETY: the kernel writes at most `events.len()` entries.
        let n = unsafe {
            libc::epoll_wait(
                self.fd,
                events.as_mut_ptr(),
                events.len() as i32,
                timeout_ms,
            )
        };
        // EINTR (a signal) is just an empty round.
        n.max(0) as usize
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        // SAFETY: we own the fd.
        unsafe { libc::close(self.fd) };
    }
}

fn report(args: &Args, plan: &Plan, outcomes: Vec<Outcome>, client_cpu: f64) -> ExitCode {
    let mut stats = Stats::new();
    let mut prefill = Counts::default();
    let mut measured = Duration::ZERO;
    let mut prefill_time = Duration::ZERO;
    for o in &outcomes {
        stats.merge(&o.stats);
        prefill.add(&o.prefill);
        measured = measured.max(o.measured);
        prefill_time = prefill_time.max(o.prefill_time);
    }
    let c = stats.counts;
    let errors = c.errors() + prefill.errors();
    let secs = measured.as_secs_f64();
    let ops_per_sec = if secs > 0.0 {
        c.ops() as f64 / secs
    } else {
        0.0
    };
    let per_sec = |n: u64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
    let handshakes = c.handshakes_full + c.handshakes_resumed;
    let q = |p: f64| stats.latency.value_at_quantile(p) as f64 / 1000.0;
    let (p50, p99, p999, max) = if c.ops() > 0 {
        (
            q(0.5),
            q(0.99),
            q(0.999),
            stats.latency.max() as f64 / 1000.0,
        )
    } else {
        (0.0, 0.0, 0.0, 0.0)
    };
    if plan.prefill {
        let pt = prefill_time.as_secs_f64();
        println!(
            "prefill:    {} sets in {:.2} s ({:.0} ops/s), {} errors",
            prefill.sets,
            pt,
            if pt > 0.0 {
                prefill.sets as f64 / pt
            } else {
                0.0
            },
            prefill.errors()
        );
    }
    if plan.load {
        println!(
            "ops/s:      {ops_per_sec:.0} ({} ops in {secs:.2} s)",
            c.ops()
        );
        println!("sets:       {}", c.sets);
        println!(
            "gets:       {} (hits {}, misses {}, hit ratio {:.4})",
            c.gets,
            c.hits,
            c.misses,
            c.hit_ratio()
        );
        if args.scan_fraction > 0.0 {
            println!(
                "key space:  hit ratio {:.4} without the {} scan gets",
                c.key_hit_ratio(),
                c.scan_gets
            );
        }
        println!("latency us: p50 {p50:.1}  p99 {p99:.1}  p99.9 {p999:.1}  max {max:.1}");
        if args.reconnect_every > 0 {
            println!("reconnects: {} ({:.0}/s)", c.connects, per_sec(c.connects));
        }
        if args.tls {
            println!(
                "handshakes: {} full, {} resumed ({:.0}/s)",
                c.handshakes_full,
                c.handshakes_resumed,
                per_sec(handshakes)
            );
        }
    }
    if let Some(session) = outcomes.iter().find_map(|o| o.session.as_deref()) {
        println!("tls:        {session}");
    }
    println!(
        "client:     {client_cpu:.2} CPUs busy (of {} threads){}",
        args.threads,
        if client_cpu > 0.9 * args.threads as f64 {
            "; the generator may be the bottleneck, add --threads"
        } else {
            ""
        }
    );
    println!(
        "errors:     {errors} (server {}, wrong values {}, malformed {}, connection {})",
        c.server_errors + prefill.server_errors,
        c.wrong_values + prefill.wrong_values,
        c.malformed + prefill.malformed,
        c.conn_errors + prefill.conn_errors
    );
    println!(
        "RESULT ops={} secs={secs:.3} ops_per_sec={ops_per_sec:.0} gets={} sets={} hits={} misses={} hit_ratio={:.4} key_hit_ratio={:.4} scan_gets={} errors={errors} wrong_values={} p50_us={p50:.1} p99_us={p99:.1} p999_us={p999:.1} max_us={max:.1} prefill_sets={} prefill_secs={:.3} client_cpu={client_cpu:.2} connects={} handshakes={handshakes} handshakes_full={} handshakes_resumed={} handshakes_per_sec={:.0}",
        c.ops(),
        c.gets,
        c.sets,
        c.hits,
        c.misses,
        c.hit_ratio(),
        c.key_hit_ratio(),
        c.scan_gets,
        c.wrong_values + prefill.wrong_values,
        prefill.sets,
        prefill_time.as_secs_f64(),
        c.connects,
        c.handshakes_full,
        c.handshakes_resumed,
        per_sec(handshakes),
    );
    if errors > 0 {
        eprintln!("loadgen: FAILED: {errors} errors");
        return ExitCode::FAILURE;
    }
    if c.ops() + prefill.ops() == 0 {
        eprintln!("loadgen: FAILED: no operation succeeded");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
