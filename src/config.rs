//! Command-line configuration: every flag, its memcached alias and its default.
//!
//! Owns turning argv into a validated [`Config`]. Never starts anything.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// memcached's `-I` ceiling.
const MAX_ITEM_SIZE_CEILING: usize = 1 << 30;
/// How long a core of several polls before it sleeps, unless --spin-us says.
/// On the 16-vCPU device, --cores 2 on one host served 5-14% more at
/// pipeline 16 and 8-11% more unpipelined with 20-50 us than with none, at
/// no more CPU per operation under load; on another, 50 us served 3% more
/// and 1% less.
const DEFAULT_SPIN_US: u64 = 20;

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
        Logging goes to stderr and is filtered by RUST_LOG (default: info). Once every core has bound \
        the port, one line `ferrocache VERSION listening on ADDR ...` is printed on stdout.\n\n\
        Signals: SIGINT/SIGTERM stop accepting, finish replies in flight and exit 0; SIGHUP re-reads \
        the --tokens file."
)]
pub struct Args {
    /// Address to listen on, as HOST:PORT (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:11211", value_name = "HOST:PORT")]
    pub listen: String,

    /// Interface to listen on; overrides the host part of --listen (memcached's -l).
    #[arg(short = 'l', value_name = "HOST")]
    pub listen_host: Option<String>,

    /// TCP port to listen on; overrides the port part of --listen (memcached's -p).
    #[arg(short = 'p', value_name = "PORT")]
    pub port: Option<u16>,

    /// Number of cores to run on, one pinned executor and one shard each
    /// [default: every online CPU] (memcached's -t).
    #[arg(short = 't', long, value_name = "N")]
    pub cores: Option<usize>,

    /// Memory for items, in megabytes, split evenly across the shards (memcached's -m).
    #[arg(
        short = 'm',
        long = "memory-mb",
        default_value_t = 1024,
        value_name = "MB"
    )]
    pub memory_mb: usize,

    /// Largest value a client may store, in bytes with an optional k or m suffix;
    /// at most 1g and at most half of --memory-mb (memcached's -I).
    #[arg(short = 'I', long = "max-item-size", default_value = "1m", value_parser = parse_size, value_name = "SIZE")]
    pub max_item_size: usize,

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

    /// Microseconds each core keeps polling before it sleeps when idle
    /// (0: never spin). Cores forward keys to each other, and a core that
    /// sleeps must be woken (an eventfd write, and glommio's membarrier as
    /// it parks); a short spin skips most of that. Default: 20 with two or
    /// more cores, 0 with one.
    #[arg(long = "spin-us", value_name = "US")]
    pub spin_us: Option<u64>,

    /// Spread client connections evenly over the cores: a core that accepts
    /// a connection while another core serves fewer hands it over (`on`),
    /// or every core serves what the kernel's SO_REUSEPORT hash gave it
    /// (`off`).
    #[arg(long = "balance", value_enum, default_value_t = Switch::On, value_name = "on|off")]
    pub balance: Switch,

    /// Seed of the key hash, which picks each key's shard and index chain
    /// [default: random at every start]. Give one only to reproduce where
    /// keys land (tests, benchmarks): a client that knows the seed can craft
    /// keys that all share one chain and slow its shard for every tenant.
    #[arg(long = "hash-seed", value_name = "N")]
    pub hash_seed: Option<u64>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Switch {
    On,
    Off,
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
    pub balance_connections: bool,
    /// For `crate::store::seed_key_hash`.
    pub hash_seed: u64,
}

impl Config {
    pub fn from_args(args: Args) -> Result<Config, String> {
        let listen = resolve_listen(&args)?;
        let online = core_affinity::get_core_ids()
            .map(|c| c.len())
            .unwrap_or(1)
            .max(1);
        let cores = args.cores.unwrap_or(online);
        if cores == 0 {
            return Err("--cores must be at least 1".into());
        }
        if cores > online {
            return Err(format!("--cores {cores}: only {online} CPUs are online"));
        }
        if args.memory_mb == 0 {
            return Err("--memory-mb must be at least 1".into());
        }
        let memory_bytes = args.memory_mb << 20;
        if args.max_item_size == 0 || args.max_item_size > MAX_ITEM_SIZE_CEILING {
            return Err("--max-item-size must be between 1 byte and 1g".into());
        }
        if args.max_item_size > memory_bytes / 2 {
            return Err(format!(
                "--max-item-size {} is more than half of --memory-mb {}",
                args.max_item_size, args.memory_mb
            ));
        }
        if args.max_connections == 0 {
            return Err("--max-connections must be at least 1".into());
        }
        Ok(Config {
            listen,
            cores,
            memory_bytes,
            max_item_size: args.max_item_size,
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
            balance_connections: args.balance == Switch::On,
            hash_seed: match args.hash_seed {
                Some(seed) => seed,
                None => random_seed()?,
            },
        })
    }
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

fn resolve_listen(args: &Args) -> Result<SocketAddr, String> {
    let mut addr = args
        .listen
        .to_socket_addrs()
        .map_err(|e| format!("--listen {}: {e}", args.listen))?
        .next()
        .ok_or_else(|| format!("--listen {}: no address", args.listen))?;
    if let Some(host) = &args.listen_host {
        addr = (host.as_str(), addr.port())
            .to_socket_addrs()
            .map_err(|e| format!("-l {host}: {e}"))?
            .next()
            .ok_or_else(|| format!("-l {host}: no address"))?;
    }
    if let Some(port) = args.port {
        addr.set_port(port);
    }
    Ok(addr)
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
    fn cores_spin_before_sleeping_only_where_they_forward() {
        let config = |args: &[&str]| {
            let args = Args::parse_from([&["ferrocache"], args].concat());
            Config::from_args(args).unwrap()
        };
        let one = config(&["--cores", "1"]);
        assert_eq!(one.spin_before_park, Duration::ZERO);
        let set = config(&["--cores", "1", "--spin-us", "75"]);
        assert_eq!(set.spin_before_park, Duration::from_micros(75));
        // Two cores, where the machine has them (CI has two).
        if core_affinity::get_core_ids().map_or(0, |c| c.len()) >= 2 {
            let two = config(&["--cores", "2"]);
            assert_eq!(two.spin_before_park, Duration::from_micros(DEFAULT_SPIN_US));
            let off = config(&["--cores", "2", "--spin-us", "0"]);
            assert_eq!(off.spin_before_park, Duration::ZERO);
        }
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
