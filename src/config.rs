//! Command-line configuration: every flag, its memcached alias and its default.
//!
//! Owns turning argv into a validated [`Config`]. Never starts anything.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;

/// memcached's `-I` ceiling.
const MAX_ITEM_SIZE_CEILING: usize = 1 << 30;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "ferrocache",
    version,
    about = "A multi-tenant, thread-per-core cache server that speaks the memcached text protocol.",
    long_about = "A multi-tenant, thread-per-core cache server that speaks the memcached text protocol.\n\n\
        One glommio executor is pinned to each core; each accepts its own connections on the shared \
        port (SO_REUSEPORT) and owns one shard of the keyspace. Clients authenticate the IronCache \
        way, by setting the pseudo-key `oauth` to `TOKEN PROJECT_ID CACHE_NAME`; every key then lives \
        in that (project, cache) namespace.\n\n\
        Sizes (--memory-mb, --max-item-size) take a k, m or g suffix (binary units: 1m is 1048576 \
        bytes); a bare number is megabytes for --memory-mb (as memcached's -m) and bytes for \
        --max-item-size (as memcached's -I).\n\n\
        Logging goes to stderr, as text or JSON (--log-format), filtered by RUST_LOG (default: info; \
        -vv: debug); text is coloured only on a terminal and never when NO_COLOR is set. Once every \
        core has bound the port, one line `ferrocache VERSION listening on ADDR ...` is printed on \
        stdout.\n\n\
        Signals: SIGINT/SIGTERM stop accepting, finish replies in flight and exit 0; SIGHUP re-reads \
        the --tokens and --quotas files.\n\n\
        Exit status: 0 after SIGINT/SIGTERM; 2 for a bad flag; 71 when another process already \
        listens on the address; 78 when the host cannot run it (io_uring blocked, locked-memory or \
        open-file limit too low, tokens or quotas file unreadable or invalid); 70 after a panic."
)]
pub struct Args {
    /// Address to listen on, as HOST:PORT (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:11211", value_name = "HOST:PORT")]
    pub listen: String,

    /// Interface to listen on; overrides the host part of --listen (memcached's -l).
    /// memcached's list form is accepted where it names one address, or
    /// includes the wildcard that covers the others (`-l 0.0.0.0,127.0.0.1`).
    #[arg(short = 'l', value_name = "HOST[,HOST...]")]
    pub listen_host: Option<String>,

    /// TCP port to listen on; overrides the port part of --listen (memcached's -p).
    #[arg(short = 'p', value_name = "PORT")]
    pub port: Option<u16>,

    /// Number of cores to run on, one pinned executor and one shard each
    /// [default: every online CPU] (memcached's -t).
    #[arg(short = 't', long, value_name = "N")]
    pub cores: Option<usize>,

    /// Memory for items, split evenly across the shards: a bare number is
    /// megabytes (memcached's -m), or give a k, m or g suffix (`64m`, `1g`).
    /// At most the machine's memory [default: 1g].
    #[arg(
        short = 'm',
        long = "memory-mb",
        default_value = "1024",
        hide_default_value = true,
        value_parser = parse_memory,
        value_name = "SIZE"
    )]
    pub memory: usize,

    /// Largest item a client may store, counted as memcached counts it (the
    /// value, the key and about 60 bytes): bytes, or with a k, m or g suffix;
    /// 1k to 1g, and at most half of --memory-mb (memcached's -I) [default: 1m].
    #[arg(short = 'I', long = "max-item-size", value_parser = parse_size, value_name = "SIZE")]
    pub max_item_size: Option<usize>,

    /// Most client connections open at once; further connections get
    /// `SERVER_ERROR too many open connections` and are closed (memcached's -c).
    #[arg(
        short = 'c',
        long = "max-connections",
        default_value_t = 4096,
        value_name = "N"
    )]
    pub max_connections: usize,

    /// Secure mode: a file of grants, one `TOKEN PROJECT_ID` per line (# comments).
    /// Without it, authentication is off and any token is accepted.
    #[arg(long, value_name = "FILE")]
    pub tokens: Option<PathBuf>,

    /// Opt-in: close any connection that sends nothing, or sits on a
    /// half-sent command, for this many seconds (0, the default: never).
    /// memcached closes no idle connection either; clients that reconnect
    /// without authenticating again break when their connection is closed.
    #[arg(long = "idle-timeout", default_value_t = 0, value_name = "SECS")]
    pub idle_timeout: u64,

    /// Secure mode: close a connection that has not authenticated (`set
    /// oauth`) this many seconds after it opened, whatever it sends
    /// meanwhile (0 disables). Open mode has no handshake to wait for.
    #[arg(long = "auth-timeout", default_value_t = 10, value_name = "SECS")]
    pub auth_timeout: u64,

    /// Close a connection whose request (a command line, or a value being
    /// sent) has been arriving for this many seconds without completing
    /// (0 disables). Idle connections are not affected.
    #[arg(long = "request-timeout", default_value_t = 30, value_name = "SECS")]
    pub request_timeout: u64,

    /// Close a connection whose replies the client has not read, with no
    /// byte written for this many seconds (0 disables).
    #[arg(long = "write-timeout", default_value_t = 30, value_name = "SECS")]
    pub write_timeout: u64,

    /// Socket I/O path: `uring`, a per-core io_uring of our own (cheaper per
    /// request), or `glommio`, glommio's own sockets. `uring` falls back to
    /// `glommio` with a warning where the ring cannot be set up.
    #[arg(long = "socket-io", value_enum, default_value_t = SocketIo::Uring)]
    pub socket_io: SocketIo,

    /// Microseconds an idle core may keep polling (without system calls)
    /// for a request or another core's message before it sleeps. It polls
    /// only while it was on the CPU at least --spin-busy-pct (90%) of its
    /// last 10 ms: a saturated core then waits out the few microseconds until
    /// another core's answer instead of sleeping and being woken, while at
    /// everyday load a core sleeps at once and costs no CPU idling. Polling
    /// time counts as CPU time. Default: 50 with two or more cores, 0
    /// (never) with one, which has no other core to wait on
    /// (docs/PERFORMANCE.md, "Idle spin").
    #[arg(long = "spin-us", value_name = "US")]
    pub spin_us: Option<u64>,

    /// The share, in percent of its last 10 ms, a core's thread must have
    /// been on the CPU (polling aside) before it polls (`--spin-us`) rather
    /// than sleeping at once. Each sleep's own CPU cost counts as busy, so a
    /// saturated core that sleeps often still polls. Lower trades more idle
    /// CPU for latency; 0 polls whenever it is idle.
    #[arg(long = "spin-busy-pct", value_name = "PCT", default_value_t = 90,
          value_parser = clap::value_parser!(u32).range(0..=100))]
    pub spin_busy_pct: u32,

    /// Linux scheduling policy of the core threads. `batch` (SCHED_BATCH)
    /// keeps a core that a socket or another core wakes from preempting
    /// whatever else runs on its CPU (a load generator, a sidecar): the
    /// running task finishes its turn, the core then serves everything that
    /// came meanwhile in one wake-up. `other` (SCHED_OTHER, the kernel's
    /// default) preempts on every wake-up, for lower latency on a shared
    /// CPU at more CPU per request. On CPUs the server has to itself the
    /// two behave the same (docs/PERFORMANCE.md, round 11).
    #[arg(long = "sched-policy", value_enum, default_value_t = SchedPolicy::Batch,
          value_name = "batch|other")]
    pub sched_policy: SchedPolicy,

    /// Spread client connections evenly over the cores: a core that accepts
    /// a connection while another core serves fewer hands it over (`on`),
    /// or every core serves what the kernel's SO_REUSEPORT hash gave it
    /// (`off`).
    #[arg(long = "balance", value_enum, default_value_t = Switch::On, value_name = "on|off")]
    pub balance: Switch,

    /// With two or more cores: when what a connection has outstanding is
    /// for keys one other core owns (a lone request, or a multi-get whose
    /// other keys are the connection's core's, with their replies before
    /// those or a short tail after), that core writes the replies straight
    /// to the client (`on`), instead of handing them back to the
    /// connection's core to write (`off`). This saves the connection's core
    /// a wake-up per such request at everyday load. Never for TLS
    /// connections, or for a read whose replies from the two cores
    /// interleave, which keep their order through the connection's core.
    #[arg(long = "owner-writes", value_enum, default_value_t = Switch::On, value_name = "on|off")]
    pub owner_writes: Switch,

    /// Seed of the key hash, which picks each key's shard and index chain
    /// [default: random at every start]. Give one only to reproduce where
    /// keys land (tests, benchmarks): a client that knows the seed can craft
    /// keys that all share one chain and slow its shard for every tenant.
    #[arg(long = "hash-seed", value_name = "N")]
    pub hash_seed: Option<u64>,

    /// Log format on stderr: `text` (one line per event) or `json` (one
    /// object per line, for log shippers).
    #[arg(long = "log-format", value_enum, default_value_t = LogFormat::Text, value_name = "text|json")]
    pub log_format: LogFormat,

    /// More log detail where RUST_LOG is not set: -vv debug, -vvv trace
    /// (memcached's -v; one -v keeps the default, info).
    #[arg(short = 'v', action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// When started as root, run as this user (memcached's -u); ignored,
    /// with a note, otherwise. The port is bound after the switch.
    #[arg(short = 'u', value_name = "USER")]
    pub user: Option<String>,

    /// memcached's UDP port: only `-U 0` (UDP off) is accepted; ferrocache
    /// serves TCP only.
    #[arg(short = 'U', value_name = "0")]
    pub udp_port: Option<u16>,

    /// Also serve TLS (1.2 and 1.3) on this address, beside the plain
    /// --listen port; needs --tls-cert and --tls-key and the `uring` socket
    /// path. For TLS only, bind --listen to loopback.
    #[arg(long = "tls-listen", value_name = "HOST:PORT")]
    pub tls_listen: Option<String>,

    /// The server's certificate chain, PEM (leaf first). Re-read on SIGHUP.
    #[arg(long = "tls-cert", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,

    /// The server's private key, PEM (PKCS#8, PKCS#1 or SEC1). Re-read on SIGHUP.
    #[arg(long = "tls-key", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,

    /// Ask TLS clients for a certificate and verify it against this CA (PEM).
    /// A verified certificate may be granted a project in the --tokens file
    /// (`cert:SHA256:<fingerprint> PROJECT_ID`) and then authenticates with
    /// `set oauth` and the token `-`.
    #[arg(long = "tls-client-ca", value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,

    /// Refuse TLS clients that present no certificate (needs --tls-client-ca).
    #[arg(long = "tls-require-client-cert")]
    pub tls_require_client_cert: bool,

    /// Most (project, cache) namespaces in use at once; a handshake that
    /// would open one more gets `SERVER_ERROR too many caches`. A namespace
    /// with no connection and no items is reclaimed within seconds.
    #[arg(long = "max-namespaces", default_value_t = DEFAULT_MAX_NAMESPACES, value_name = "N")]
    pub max_namespaces: usize,

    /// Most namespaces (caches) one project may have in use at once, so
    /// that one tenant cannot take every place under --max-namespaces; past
    /// it, a handshake for a new cache of that project gets `SERVER_ERROR
    /// too many caches`. At most --max-namespaces.
    #[arg(
        long = "max-caches-per-project",
        default_value_t = DEFAULT_MAX_CACHES_PER_PROJECT,
        value_name = "N"
    )]
    pub max_caches_per_project: usize,

    /// Secure mode: failed authentications from one source address (an IPv6
    /// /64) within a minute, after which its further attempts fail unchecked
    /// until the minute is over, except with credentials that logged in from
    /// that address within the hour (0: no limit).
    #[arg(long = "auth-failures", default_value_t = DEFAULT_AUTH_FAILURES, value_name = "N")]
    pub auth_failures: u32,

    /// Serve Prometheus metrics (text format) at http://HOST:PORT/metrics,
    /// for the operator: server-wide, per-core and per-project counts, no
    /// keys or values. Off by default. Keep it off the client network
    /// (bind loopback or a management interface): it names every project.
    #[arg(long = "metrics-listen", value_name = "HOST:PORT")]
    pub metrics_listen: Option<String>,

    /// --metrics-listen: how many projects, the largest by bytes stored, get
    /// series of their own; the rest are summed into `project="_other"`.
    #[arg(long = "metrics-top-projects", default_value_t = DEFAULT_METRICS_TOP_PROJECTS, value_name = "N")]
    pub metrics_top_projects: usize,
    /// Per-project quotas: one `PROJECT key=value...` line per project,
    /// `*` for the rest, `#` comments; keys memory=SIZE (a cap), reserve=SIZE,
    /// weight=N (in the fair share) and connections=N. Re-read on SIGHUP.
    /// Without it every project has weight 1 and no cap. Each core enforces
    /// SIZE / --cores: one item larger than that gets `SERVER_ERROR object
    /// too large for cache`.
    #[arg(long = "quotas", value_name = "FILE")]
    pub quotas: Option<PathBuf>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// TLS settings (`--tls-*`).
#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub listen: SocketAddr,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
    pub require_client_cert: bool,
}

/// Namespaces in use at once: each costs about 212 bytes per core and up to
/// about 600 bytes of names, so 4 Ki of them stay within a few MiB.
pub const DEFAULT_MAX_NAMESPACES: usize = 4096;
/// A sixteenth of the default --max-namespaces: sixteen projects at their
/// bound to fill it.
pub const DEFAULT_MAX_CACHES_PER_PROJECT: usize = 256;
/// `--spin-us` with two or more cores (`transport::spin_gate`).
pub const DEFAULT_SPIN_US: u64 = 50;
/// Failed logins per address per minute before it is refused unchecked.
pub const DEFAULT_AUTH_FAILURES: u32 = 30;
/// Projects with series of their own on /metrics (the rest are summed).
pub const DEFAULT_METRICS_TOP_PROJECTS: usize = 100;
/// Ids are 32-bit; far below that, the per-core tables stay small.
const MAX_NAMESPACES_CEILING: usize = 1 << 20;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Switch {
    On,
    Off,
}

/// `--sched-policy`: the Linux scheduling policy of the core threads.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SchedPolicy {
    /// SCHED_BATCH: no preemption of the CPU's running task on wake-up.
    Batch,
    /// SCHED_OTHER: the kernel's default.
    Other,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SocketIo {
    Uring,
    Glommio,
}

/// The validated configuration the server runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub cores: usize,
    pub memory_bytes: usize,
    pub max_item_size: usize,
    pub max_connections: usize,
    pub tokens: Option<PathBuf>,
    pub idle_timeout: Option<Duration>,
    pub auth_timeout: Option<Duration>,
    pub request_timeout: Option<Duration>,
    pub write_timeout: Option<Duration>,
    pub socket_io: SocketIo,
    pub spin_before_park: Duration,
    /// `--spin-busy-pct` (`transport::spin_gate`).
    pub spin_busy_pct: u32,
    /// `--sched-policy`, which each core thread sets as it starts.
    pub sched_policy: SchedPolicy,
    pub balance_connections: bool,
    /// `--owner-writes`: a key's owner may write the replies to what a
    /// connection forwarded it to the client (`transport::envelope::Pen`).
    pub owner_writes: bool,
    /// For `crate::keyspace::KeyHasher::from_seed`.
    pub hash_seed: u64,
    /// `-u`: the user to switch to when started as root.
    pub user: Option<String>,
    /// One-line warnings about the flags (memcached's taken loosely,
    /// overcommitted memory), logged at start.
    pub notes: Vec<String>,
    /// `None`: no TLS port.
    pub tls: Option<TlsConfig>,
    pub max_namespaces: usize,
    /// `--max-caches-per-project`, at most `max_namespaces`.
    pub max_caches_per_project: usize,
    pub auth_failures: u32,
    /// `--metrics-listen` (`None`: no metrics endpoint).
    pub metrics_listen: Option<SocketAddr>,
    pub metrics_top_projects: usize,
    /// `--quotas FILE`.
    pub quotas: Option<PathBuf>,
}

impl Config {
    pub fn from_args(args: Args) -> Result<Config, String> {
        let mut notes = Vec::new();
        let listen = resolve_listen(&args, &mut notes)?;
        // The CPUs this process may run on: its affinity mask (taskset,
        // cpusets, systemd's CPUAffinity=), which can be fewer than online.
        let allowed = core_affinity::get_core_ids()
            .map(|c| c.len())
            .unwrap_or(1)
            .max(1);
        let cores = args.cores.unwrap_or(allowed);
        if cores == 0 {
            return Err("--cores must be at least 1".into());
        }
        if cores > allowed {
            let online = online_cpus();
            return Err(if online > allowed {
                format!(
                    "--cores {cores}: this process's CPU affinity mask allows only {allowed} of the \
                     {online} online CPUs (taskset, cpuset or CPUAffinity=); widen the mask or \
                     lower --cores"
                )
            } else {
                format!("--cores {cores}: only {online} CPUs are online")
            });
        }
        let memory_bytes = args.memory;
        if memory_bytes < 1 << 20 {
            return Err(format!(
                "--memory-mb {}: at least 1 MB is needed",
                show_size(memory_bytes)
            ));
        }
        check_memory_fits(memory_bytes, &mut notes)?;
        let max_item_size = args.max_item_size.unwrap_or(DEFAULT_MAX_ITEM_SIZE);
        // memcached's floor: an item's header, key and cas count against the
        // limit, so below it few values would fit.
        if !(1024..=MAX_ITEM_SIZE_CEILING).contains(&max_item_size) {
            return Err("--max-item-size must be between 1k and 1g".into());
        }
        if max_item_size > memory_bytes / 2 {
            let needed = show_megabytes(max_item_size * 2);
            return Err(match args.max_item_size {
                None => format!(
                    "--memory-mb {}: the default item size limit (-I 1m) needs at least \
                     {needed} MB; give --memory-mb {needed} or more, or lower the limit, \
                     e.g. -I {}",
                    show_size(memory_bytes),
                    show_size((memory_bytes / 2).max(1)),
                ),
                Some(_) => format!(
                    "--max-item-size {} needs at least {needed} MB (twice the item size), but \
                     --memory-mb is {}; give more memory or a smaller --max-item-size",
                    show_size(max_item_size),
                    show_size(memory_bytes),
                ),
            });
        }
        match args.udp_port {
            None | Some(0) => {}
            Some(port) => {
                return Err(format!(
                    "-U {port}: ferrocache serves TCP only; use -U 0 or drop the flag"
                ))
            }
        }
        let user = match &args.user {
            // SAFETY: geteuid has no preconditions.
            Some(user) if unsafe { libc::geteuid() } != 0 => {
                notes.push(format!("-u {user} ignored: not started as root"));
                None
            }
            other => other.clone(),
        };
        if args.max_connections == 0 {
            return Err("--max-connections must be at least 1".into());
        }
        let tls = tls_config(&args)?;
        let metrics_listen = metrics_listen(&args)?;
        if args.max_namespaces == 0 || args.max_namespaces > MAX_NAMESPACES_CEILING {
            return Err(format!(
                "--max-namespaces must be between 1 and {MAX_NAMESPACES_CEILING}"
            ));
        }
        if args.max_caches_per_project == 0 {
            return Err("--max-caches-per-project must be at least 1".into());
        }
        Ok(Config {
            tls,
            listen,
            cores,
            memory_bytes,
            max_item_size,
            max_connections: args.max_connections,
            tokens: args.tokens,
            idle_timeout: seconds(args.idle_timeout),
            auth_timeout: seconds(args.auth_timeout),
            request_timeout: seconds(args.request_timeout),
            write_timeout: seconds(args.write_timeout),
            socket_io: args.socket_io,
            spin_before_park: Duration::from_micros(args.spin_us.unwrap_or(if cores > 1 {
                DEFAULT_SPIN_US
            } else {
                0
            })),
            spin_busy_pct: args.spin_busy_pct,
            sched_policy: args.sched_policy,
            balance_connections: args.balance == Switch::On,
            owner_writes: args.owner_writes == Switch::On,
            hash_seed: match args.hash_seed {
                Some(seed) => seed,
                None => random_seed()?,
            },
            user,
            notes,
            max_namespaces: args.max_namespaces,
            // A bound above the total is the total.
            max_caches_per_project: args.max_caches_per_project.min(args.max_namespaces),
            quotas: args.quotas.clone(),
            auth_failures: args.auth_failures,
            metrics_listen,
            metrics_top_projects: args.metrics_top_projects,
        })
    }
}

/// memcached's -I default.
const DEFAULT_MAX_ITEM_SIZE: usize = 1 << 20;

fn online_cpus() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    n.max(1) as usize
}

/// Refuses item memory beyond the machine's RAM, and notes memory beyond
/// the limit of the cgroup the process runs in (a container's limit): the
/// store would be killed or swap long before it filled.
fn check_memory_fits(memory_bytes: usize, notes: &mut Vec<String>) -> Result<(), String> {
    let asked = show_size(memory_bytes);
    if let Some(total) = mem_total() {
        if memory_bytes as u64 > total {
            return Err(format!(
                "--memory-mb {asked}: more than this machine's memory ({}); give at most that, \
                 less what the rest of the host needs",
                show_size(total as usize)
            ));
        }
    }
    if let Some(limit) = cgroup_memory_max() {
        if memory_bytes as u64 > limit {
            // Memory is taken as items arrive, so this can run for a while:
            // said plainly rather than refused.
            notes.push(format!(
                "--memory-mb {asked} is overcommitted: more than this cgroup's memory limit \
                 (memory.max {}); the kernel will kill the server before the cache is full",
                show_size(limit as usize)
            ));
        }
    }
    Ok(())
}

/// MemTotal from /proc/meminfo, in bytes.
fn mem_total() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The cgroup v2 `memory.max` of this process's cgroup, when it is a number.
fn cgroup_memory_max() -> Option<u64> {
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = cgroup.lines().find_map(|l| l.strip_prefix("0::"))?;
    let max = std::fs::read_to_string(format!("/sys/fs/cgroup{path}/memory.max")).ok()?;
    max.trim().parse().ok()
}

/// A size as the flags write it: `1g`, `512m`, `64k` or bytes.
pub fn show_size(bytes: usize) -> String {
    for (shift, suffix) in [(30, "g"), (20, "m"), (10, "k")] {
        if bytes >= 1 << shift && bytes.is_multiple_of(1 << shift) {
            return format!("{}{suffix}", bytes >> shift);
        }
    }
    bytes.to_string()
}

/// Whole megabytes, rounded up.
fn show_megabytes(bytes: usize) -> usize {
    bytes.div_ceil(1 << 20)
}

/// `--memory-mb`: the size syntax of [`parse_size`], but a bare number is
/// megabytes, as memcached's -m.
pub fn parse_memory(s: &str) -> Result<usize, String> {
    let t = s.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        let mb: usize = t.parse().map_err(|_| format!("{t:?} is too large"))?;
        return mb
            .checked_mul(1 << 20)
            .ok_or_else(|| format!("{t:?} is too large"));
    }
    parse_size(t).map_err(|_| format!("{t:?} is not a size (e.g. 1024 for megabytes, 64m, 1g)"))
}

/// A timeout flag's value: `None` for 0 (off).
fn seconds(secs: u64) -> Option<Duration> {
    (secs > 0).then(|| Duration::from_secs(secs))
}

/// Eight bytes from the kernel's CSPRNG.
fn random_seed() -> Result<u64, String> {
    let mut seed = [0u8; 8];
    // SAFETY: getrandom(2) writes at most `seed.len()` bytes into `seed`.
    let n = unsafe { libc::getrandom(seed.as_mut_ptr().cast(), seed.len(), 0) };
    if n != seed.len() as isize {
        return Err(format!(
            "cannot seed the key hash: getrandom: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(u64::from_ne_bytes(seed))
}

fn tls_config(args: &Args) -> Result<Option<TlsConfig>, String> {
    let Some(listen) = &args.tls_listen else {
        if args.tls_cert.is_some() || args.tls_key.is_some() || args.tls_client_ca.is_some() {
            return Err("--tls-cert, --tls-key and --tls-client-ca need --tls-listen".into());
        }
        if args.tls_require_client_cert {
            return Err("--tls-require-client-cert needs --tls-listen".into());
        }
        return Ok(None);
    };
    let listen = listen
        .to_socket_addrs()
        .map_err(|e| format!("--tls-listen {listen}: {e}"))?
        .next()
        .ok_or_else(|| format!("--tls-listen {listen}: no address"))?;
    let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) else {
        return Err("--tls-listen needs --tls-cert and --tls-key".into());
    };
    if args.tls_require_client_cert && args.tls_client_ca.is_none() {
        return Err("--tls-require-client-cert needs --tls-client-ca".into());
    }
    if args.socket_io == SocketIo::Glommio {
        return Err("--tls-listen is served on the io_uring socket path only; \
             --socket-io glommio is plaintext only"
            .into());
    }
    Ok(Some(TlsConfig {
        listen,
        cert: cert.clone(),
        key: key.clone(),
        client_ca: args.tls_client_ca.clone(),
        require_client_cert: args.tls_require_client_cert,
    }))
}

/// `--metrics-listen HOST:PORT`, resolved.
fn metrics_listen(args: &Args) -> Result<Option<SocketAddr>, String> {
    let Some(listen) = &args.metrics_listen else {
        return Ok(None);
    };
    let addr = listen
        .to_socket_addrs()
        .map_err(|e| format!("--metrics-listen {listen}: {e}"))?
        .next()
        .ok_or_else(|| format!("--metrics-listen {listen}: no address"))?;
    Ok(Some(addr))
}

fn resolve_listen(args: &Args, notes: &mut Vec<String>) -> Result<SocketAddr, String> {
    let mut addr = args
        .listen
        .to_socket_addrs()
        .map_err(|e| format!("--listen {}: {e}", args.listen))?
        .next()
        .ok_or_else(|| format!("--listen {}: no address", args.listen))?;
    if let Some(list) = &args.listen_host {
        addr = listen_list(list, addr.port(), notes)?;
    }
    if let Some(port) = args.port {
        addr.set_port(port);
    }
    Ok(addr)
}

/// memcached's `-l HOST[,HOST...]`. ferrocache listens on one address, so a
/// list is accepted where it comes down to one: every entry the same, or a
/// wildcard (`0.0.0.0`, `::`) that already covers the others.
fn listen_list(list: &str, port: u16, notes: &mut Vec<String>) -> Result<SocketAddr, String> {
    let mut addrs = Vec::new();
    for host in list
        .split([',', ';'])
        .map(str::trim)
        .filter(|h| !h.is_empty())
    {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let addr = (host, port)
            .to_socket_addrs()
            .map_err(|e| format!("-l {host}: {e}"))?
            .next()
            .ok_or_else(|| format!("-l {host}: no address"))?;
        addrs.push(addr);
    }
    let first = *addrs.first().ok_or("-l: no address given")?;
    if addrs.iter().all(|a| *a == first) {
        return Ok(first);
    }
    // `::` also takes IPv4 connections (unless the host sets bindv6only).
    let covers = |wild: &SocketAddr, other: &SocketAddr| {
        wild.ip().is_unspecified() && (wild.is_ipv6() || other.is_ipv4())
    };
    match addrs
        .iter()
        .find(|w| addrs.iter().all(|a| covers(w, a) || a == *w))
    {
        Some(wild) => {
            notes.push(format!(
                "-l {list}: listening on {wild}, which covers every address listed"
            ));
            Ok(*wild)
        }
        None => Err(format!(
            "-l {list}: ferrocache listens on one address; give one, or 0.0.0.0 for every \
             interface"
        )),
    }
}

/// `1048576`, `512k`, `1m`, `1g` (binary units, case-insensitive).
pub fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let (digits, shift) = match s.chars().last().map(|c| c.to_ascii_lowercase()) {
        Some('k') => (&s[..s.len() - 1], 10),
        Some('m') => (&s[..s.len() - 1], 20),
        Some('g') => (&s[..s.len() - 1], 30),
        _ => (s, 0),
    };
    let n: usize = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a size (e.g. 1048576, 512k, 1m)"))?;
    n.checked_shl(shift)
        .filter(|v| v >> shift == n)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// Longest project id or cache name accepted, in `set oauth` and in the
/// tokens and quotas files.
pub const MAX_NAME_LEN: usize = 128;

/// Largest tokens or quotas file read; a larger one is refused (keeping
/// what was loaded before).
pub const MAX_CONFIG_FILE: u64 = 4 << 20;

/// Reads a configuration file named by a flag (`--tokens`, `--quotas`,
/// the TLS certificate, key and client CA): a regular file only (a FIFO, a
/// device or a directory is refused without reading, so nothing blocks or
/// reads without end), at most [`MAX_CONFIG_FILE`] bytes, UTF-8.
pub(crate) fn read_config_file(path: &Path) -> Result<String, String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        // Opening a FIFO for reading would wait for a writer.
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| format!("cannot read: {e}"))?;
    let meta = file.metadata().map_err(|e| format!("cannot read: {e}"))?;
    if !meta.is_file() {
        return Err("cannot read: not a regular file".into());
    }
    if meta.len() > MAX_CONFIG_FILE {
        return Err(format!("larger than {MAX_CONFIG_FILE} bytes"));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_CONFIG_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() as u64 > MAX_CONFIG_FILE {
        return Err(format!("larger than {MAX_CONFIG_FILE} bytes"));
    }
    String::from_utf8(bytes).map_err(|_| "cannot read: not UTF-8".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1m"), Ok(1 << 20));
        assert_eq!(parse_size("512K"), Ok(512 << 10));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("100"), Ok(100));
        assert!(parse_size("1x").is_err());
        assert!(parse_size("").is_err());
    }

    #[test]
    fn memcached_aliases() {
        let args = Args::parse_from([
            "ferrocache",
            "-l",
            "127.0.0.1",
            "-p",
            "0",
            "-t",
            "1",
            "-m",
            "64",
            "-I",
            "2m",
        ]);
        let config = Config::from_args(args).unwrap();
        assert_eq!(config.listen, "127.0.0.1:0".parse().unwrap());
        assert_eq!(config.cores, 1);
        assert_eq!(config.memory_bytes, 64 << 20);
        assert_eq!(config.max_item_size, 2 << 20);
    }

    #[test]
    fn the_hash_seed_is_random_unless_given() {
        let config = |args: &[&str]| {
            let args = Args::parse_from([&["ferrocache", "--cores", "1"], args].concat());
            Config::from_args(args).unwrap()
        };
        assert_eq!(config(&["--hash-seed", "42"]).hash_seed, 42);
        // Two draws of 64 random bits: equal once in 2^64 runs.
        assert_ne!(config(&[]).hash_seed, config(&[]).hash_seed);
    }

    #[test]
    fn several_cores_may_poll_before_sleeping_and_one_only_when_told() {
        let config = |args: &[&str]| {
            let args = Args::parse_from([&["ferrocache"], args].concat());
            Config::from_args(args).unwrap()
        };
        assert_eq!(config(&["--cores", "1"]).spin_before_park, Duration::ZERO);
        let set = config(&["--cores", "1", "--spin-us", "75"]);
        assert_eq!(set.spin_before_park, Duration::from_micros(75));
        // Two cores, where the machine has them (CI has two).
        if core_affinity::get_core_ids().map_or(0, |c| c.len()) >= 2 {
            assert_eq!(
                config(&["--cores", "2"]).spin_before_park,
                Duration::from_micros(DEFAULT_SPIN_US)
            );
            let off = config(&["--cores", "2", "--spin-us", "0"]);
            assert_eq!(off.spin_before_park, Duration::ZERO);
            let set = config(&["--cores", "2", "--spin-us", "20"]);
            assert_eq!(set.spin_before_park, Duration::from_micros(20));
        }
    }

    #[test]
    fn the_busy_share_before_polling_is_a_percentage() {
        let parse = |pct: &str| Args::try_parse_from(["ferrocache", "--spin-busy-pct", pct]);
        assert_eq!(parse("0").unwrap().spin_busy_pct, 0);
        assert_eq!(parse("100").unwrap().spin_busy_pct, 100);
        assert!(parse("101").is_err());
        assert!(parse("-1").is_err());
        let args = Args::parse_from(["ferrocache", "--cores", "1"]);
        assert_eq!(Config::from_args(args).unwrap().spin_busy_pct, 90);
    }

    fn error_of(args: &[&str]) -> String {
        let args = Args::try_parse_from([&["ferrocache"], args].concat()).unwrap();
        Config::from_args(args).unwrap_err()
    }

    #[test]
    fn memory_takes_the_size_syntax_and_a_bare_number_is_megabytes() {
        assert_eq!(parse_memory("64"), Ok(64 << 20));
        assert_eq!(parse_memory("1g"), Ok(1 << 30));
        assert_eq!(parse_memory("1G"), Ok(1 << 30));
        assert_eq!(parse_memory("512m"), Ok(512 << 20));
        assert!(parse_memory("1x").is_err());
        let args = Args::parse_from(["ferrocache", "-t", "1", "--memory-mb", "1g"]);
        assert_eq!(Config::from_args(args).unwrap().memory_bytes, 1 << 30);
    }

    #[test]
    fn too_little_memory_names_the_default_item_size() {
        assert_eq!(
            error_of(&["-t", "1", "--memory-mb", "1"]),
            "--memory-mb 1m: the default item size limit (-I 1m) needs at least 2 MB; give \
             --memory-mb 2 or more, or lower the limit, e.g. -I 512k"
        );
        assert_eq!(
            error_of(&["-t", "1", "-m", "3", "-I", "2m"]),
            "--max-item-size 2m needs at least 4 MB (twice the item size), but --memory-mb is \
             3m; give more memory or a smaller --max-item-size"
        );
        let args = Args::parse_from(["ferrocache", "-t", "1", "-m", "1", "-I", "512k"]);
        assert!(Config::from_args(args).is_ok());
    }

    #[test]
    fn memory_beyond_the_machine_is_refused() {
        let e = error_of(&["-t", "1", "-m", "99999999"]);
        assert!(
            e.starts_with("--memory-mb 99999999m: more than this machine's memory ("),
            "{e}"
        );
    }

    #[test]
    fn memcached_listen_lists() {
        let listen = |l: &str| {
            let args = Args::parse_from(["ferrocache", "-t", "1", "-p", "11311", "-l", l]);
            Config::from_args(args).map(|c| c.listen)
        };
        assert_eq!(listen("127.0.0.1"), Ok("127.0.0.1:11311".parse().unwrap()));
        assert_eq!(
            listen("0.0.0.0,127.0.0.1"),
            Ok("0.0.0.0:11311".parse().unwrap())
        );
        assert_eq!(
            listen("127.0.0.1,0.0.0.0"),
            Ok("0.0.0.0:11311".parse().unwrap())
        );
        assert_eq!(listen("::,127.0.0.1"), Ok("[::]:11311".parse().unwrap()));
        assert_eq!(listen("[::1]"), Ok("[::1]:11311".parse().unwrap()));
        assert_eq!(
            listen("127.0.0.1,127.0.0.2"),
            Err(
                "-l 127.0.0.1,127.0.0.2: ferrocache listens on one address; give one, or \
                 0.0.0.0 for every interface"
                    .into()
            )
        );
    }

    #[test]
    fn harmless_memcached_flags() {
        let args = Args::parse_from(["ferrocache", "-t", "1", "-U", "0", "-vv", "-u", "nobody"]);
        assert_eq!(args.verbose, 2);
        assert!(Config::from_args(args).is_ok());
        assert_eq!(
            error_of(&["-t", "1", "-U", "11211"]),
            "-U 11211: ferrocache serves TCP only; use -U 0 or drop the flag"
        );
    }

    #[test]
    fn tls_flags_come_together() {
        let parse = |args: &[&str]| {
            let args = Args::parse_from([&["ferrocache", "--cores", "1"], args].concat());
            Config::from_args(args)
        };
        assert!(parse(&[]).unwrap().tls.is_none());
        let full = [
            "--tls-listen",
            "127.0.0.1:0",
            "--tls-cert",
            "c",
            "--tls-key",
            "k",
        ];
        let tls = parse(&full).unwrap().tls.unwrap();
        assert_eq!(tls.listen, "127.0.0.1:0".parse().unwrap());
        assert!(!tls.require_client_cert);
        assert!(parse(&full[..4]).is_err(), "no key");
        assert!(parse(&full[2..]).is_err(), "cert and key without a port");
        assert!(parse(&[&full[..], &["--tls-require-client-cert"]].concat()).is_err());
        assert!(parse(&[&full[..], &["--socket-io", "glommio"]].concat()).is_err());
        let mutual = [
            &full[..],
            &["--tls-client-ca", "ca", "--tls-require-client-cert"],
        ]
        .concat();
        assert!(parse(&mutual).unwrap().tls.unwrap().require_client_cert);
    }

    #[test]
    fn deadlines_default_to_the_ironcache_model() {
        let config = |args: &[&str]| {
            let args = Args::parse_from([&["ferrocache", "--cores", "1"], args].concat());
            Config::from_args(args).unwrap()
        };
        let default = config(&[]);
        assert_eq!(default.idle_timeout, None);
        assert_eq!(default.auth_timeout, Some(Duration::from_secs(10)));
        assert_eq!(default.request_timeout, Some(Duration::from_secs(30)));
        assert_eq!(default.write_timeout, Some(Duration::from_secs(30)));
        let set = config(&[
            "--idle-timeout",
            "5",
            "--auth-timeout",
            "0",
            "--request-timeout",
            "7",
            "--write-timeout",
            "0",
        ]);
        assert_eq!(set.idle_timeout, Some(Duration::from_secs(5)));
        assert_eq!(set.auth_timeout, None);
        assert_eq!(set.request_timeout, Some(Duration::from_secs(7)));
        assert_eq!(set.write_timeout, None);
    }

    #[test]
    fn item_size_is_at_most_half_the_memory() {
        let args = Args::parse_from(["ferrocache", "-t", "1", "-m", "2", "-I", "2m"]);
        assert!(Config::from_args(args).is_err());
    }
}
