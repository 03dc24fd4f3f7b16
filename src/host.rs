//! Host checks, run before any core starts: whether io_uring is allowed,
//! whether the locked-memory and open-file limits are enough (raising soft
//! limits where the hard ones allow), switching to `-u USER`, and whether
//! another process already listens on our address.
//!
//! Owns turning a host that cannot run the server into one clear line and an
//! exit status a supervisor can act on. Never touches a client connection.

use std::collections::HashSet;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// sysexits' EX_CONFIG: the host or its configuration cannot run the server;
/// restarting will not help (systemd: `RestartPreventExitStatus=78`).
pub const EXIT_CONFIG: i32 = 78;
/// sysexits' EX_OSERR, memcached's status when its port is taken.
pub const EXIT_ADDR_IN_USE: i32 = 71;

/// glommio refuses to start an executor under this locked-memory limit
/// (its `MIN_MEMLOCK_LIMIT`).
pub const GLOMMIO_MIN_MEMLOCK: u64 = 512 << 10;
/// What each executor asks glommio to register with its three rings.
/// Those buffers serve glommio's file I/O, which ferrocache does not use;
/// glommio's floor is 64 KiB.
pub const GLOMMIO_IO_MEMORY: usize = 64 << 10;
/// Rings per glommio executor that register [`GLOMMIO_IO_MEMORY`].
const GLOMMIO_RINGS: u64 = 3;

/// Open files besides client connections: the process's own, and per core
/// its rings, eventfds, listener, spare descriptor and mesh channels, with
/// room for connections being refused (measured: 6 + 9 per core, at 1-2 cores).
fn fd_reserve(cores: usize) -> usize {
    32 + cores * (12 + cores)
}

#[derive(Debug)]
pub enum HostError {
    /// io_uring cannot be used; the text says what blocks it.
    IoUring(String),
    Memlock(String),
    Nofile(String),
    User(String),
    /// Another process listens on the address.
    AddrInUse(String),
}

impl HostError {
    pub fn exit_code(&self) -> i32 {
        match self {
            HostError::AddrInUse(_) => EXIT_ADDR_IN_USE,
            _ => EXIT_CONFIG,
        }
    }
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostError::IoUring(s)
            | HostError::Memlock(s)
            | HostError::Nofile(s)
            | HostError::User(s)
            | HostError::AddrInUse(s) => f.write_str(s),
        }
    }
}

/// Sets up a small ring and closes it, so that a blocked io_uring is found
/// before glommio starts (glommio panics, blaming the kernel version).
pub fn check_io_uring() -> Result<(), HostError> {
    let release = kernel_release();
    if let Some((major, minor)) = parse_release(&release) {
        if (major, minor) < (5, 8) {
            return Err(HostError::IoUring(format!(
                "io_uring: kernel {release} is too old; ferrocache needs Linux 5.8 or later"
            )));
        }
    }
    // struct io_uring_params is 120 bytes; zeroed asks for nothing special.
    let mut params = [0u32; 30];
    // SAFETY: io_uring_setup(2) reads and writes `params`, which is large
    // enough; a returned descriptor is closed below.
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 4u32, params.as_mut_ptr()) };
    if fd >= 0 {
        // SAFETY: a descriptor we just got and nobody else holds.
        unsafe { libc::close(fd as i32) };
        return Ok(());
    }
    let err = io::Error::last_os_error();
    let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(0);
    let why = match (err.raw_os_error(), disabled) {
        (_, 2) => "the sysctl kernel.io_uring_disabled is 2; set it to 0 \
                   (sysctl -w kernel.io_uring_disabled=0)"
            .to_string(),
        (_, 1) => "the sysctl kernel.io_uring_disabled is 1 and this user is not in \
                   kernel.io_uring_group; set it to 0 or add the group"
            .to_string(),
        (Some(libc::ENOMEM), _) => {
            "the locked-memory limit is too low for a ring (ulimit -l; LimitMEMLOCK=)".to_string()
        }
        (Some(libc::EPERM | libc::EACCES | libc::ENOSYS), _) => {
            "a seccomp filter blocks it (Docker's default profile does): allow io_uring_setup, \
             io_uring_enter and io_uring_register, e.g. docker run --security-opt \
             seccomp=deploy/seccomp-io_uring.json"
                .to_string()
        }
        _ => "see the Deploy section of the README".to_string(),
    };
    Err(HostError::IoUring(format!(
        "io_uring is not available (io_uring_setup: {err}): {why}"
    )))
}

fn kernel_release() -> String {
    // SAFETY: uname fills a struct we own.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::uname(&mut uts) } != 0 {
        return String::new();
    }
    // SAFETY: uname NUL-terminates `release`.
    unsafe { std::ffi::CStr::from_ptr(uts.release.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

/// `6.1.0-18-amd64` -> (6, 1).
fn parse_release(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

fn getrlimit(resource: libc::__rlimit_resource_t) -> (u64, u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills a struct we own.
    unsafe { libc::getrlimit(resource, &mut limit) };
    (limit.rlim_cur, limit.rlim_max)
}

fn set_soft_limit(resource: libc::__rlimit_resource_t, soft: u64, hard: u64) -> bool {
    let limit = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: setrlimit reads a struct we own.
    unsafe { libc::setrlimit(resource, &limit) == 0 }
}

fn show_limit(bytes: u64) -> String {
    if bytes == libc::RLIM_INFINITY {
        "unlimited".into()
    } else {
        format!("{} KiB", bytes >> 10)
    }
}

/// The locked-memory limit: glommio needs [`GLOMMIO_MIN_MEMLOCK`] or it
/// will not start; the soft limit is raised toward what every core's
/// registered buffers would use, where the hard limit allows.
pub fn check_memlock(cores: usize) -> Result<(), HostError> {
    let (soft, hard) = getrlimit(libc::RLIMIT_MEMLOCK);
    let wanted = GLOMMIO_MIN_MEMLOCK.max(cores as u64 * GLOMMIO_RINGS * GLOMMIO_IO_MEMORY as u64);
    if soft >= wanted {
        return Ok(());
    }
    if hard < GLOMMIO_MIN_MEMLOCK {
        return Err(HostError::Memlock(format!(
            "the locked-memory limit (ulimit -l) is {}; io_uring (glommio) needs at least {} \
             KiB: raise it with `ulimit -l {}`, LimitMEMLOCK={}K in the systemd unit, or \
             --ulimit memlock={}:{} for docker run",
            show_limit(hard),
            wanted >> 10,
            wanted >> 10,
            wanted >> 10,
            wanted,
            wanted,
        )));
    }
    // Raise the soft limit as far as the hard one allows. Short of `wanted`,
    // glommio skips registering its buffers, which costs ferrocache nothing.
    set_soft_limit(libc::RLIMIT_MEMLOCK, wanted.min(hard), hard);
    Ok(())
}

/// The open-file limit: raises the soft limit to what `max_connections`
/// needs, up to the hard limit. `other_fds` are descriptors besides client
/// connections and the cores' own (the metrics endpoint's). Returns the
/// number of connections the limit allows (`max_connections`, or fewer)
/// and a note when it is fewer.
pub fn check_nofile(
    max_connections: usize,
    cores: usize,
    other_fds: usize,
) -> Result<(usize, Option<String>), HostError> {
    let (soft, hard) = getrlimit(libc::RLIMIT_NOFILE);
    let reserve = fd_reserve(cores) + other_fds;
    let needed = (max_connections + reserve) as u64;
    let mut have = soft;
    if soft < needed {
        let target = needed.min(hard);
        if set_soft_limit(libc::RLIMIT_NOFILE, target, hard) {
            have = target;
        }
    }
    if have >= needed {
        return Ok((max_connections, None));
    }
    let fits = (have as usize).saturating_sub(reserve);
    if fits == 0 {
        return Err(HostError::Nofile(format!(
            "the open-file limit (ulimit -n) is {have}; ferrocache needs at least {} with \
             --cores {cores}, and {needed} for --max-connections {max_connections}: raise it \
             (ulimit -n {needed}, LimitNOFILE={needed})",
            reserve + 1
        )));
    }
    Ok((
        fits,
        Some(format!(
            "--max-connections lowered from {max_connections} to {fits}: the open-file limit \
             (ulimit -n) is {have}; raise it to {needed} (ulimit -n, LimitNOFILE=) for all \
             {max_connections}"
        )),
    ))
}

/// `-u USER` when started as root: switches group, supplementary groups and
/// user, as memcached does.
pub fn switch_user(user: &str) -> Result<(), HostError> {
    let fail = |what: &str| HostError::User(format!("-u {user}: {what}"));
    let name = std::ffi::CString::new(user).map_err(|_| fail("not a user name"))?;
    // SAFETY: getpwnam returns a pointer into static storage or null; we copy
    // the two ids out at once, before any other call could reuse it.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        return Err(fail("no such user"));
    }
    // SAFETY: pw is non-null, as checked.
    let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
    // SAFETY: plain system calls on ids; each result is checked.
    let ok = unsafe {
        libc::setgroups(1, &gid) == 0 && libc::setgid(gid) == 0 && libc::setuid(uid) == 0
    };
    if !ok {
        return Err(fail(&format!(
            "cannot switch: {}",
            io::Error::last_os_error()
        )));
    }
    Ok(())
}

/// Another process listening on an address that overlaps one of `addrs`
/// (each with the flag that set it) would share our connections once we
/// bind it with SO_REUSEPORT (the kernel spreads them over every socket in
/// the group), so find one. Called before binding, so that a second server
/// never takes a share of the first's connections on its way to refusing,
/// and again after every core has bound, which closes the race of two
/// servers starting at once: whichever looks second sees the other. The
/// tables are read once for all the addresses: on a busy host they are
/// large. Returns what was found, or `None` where /proc cannot be read (and
/// nothing can be checked).
pub fn foreign_listener(addrs: &[(SocketAddr, &str)]) -> Option<Result<(), HostError>> {
    let ours = socket_inodes("/proc/self/fd");
    let mut listeners = Vec::new();
    for (file, v6) in [("/proc/net/tcp", false), ("/proc/net/tcp6", true)] {
        let Ok(table) = std::fs::read_to_string(file) else {
            if v6 {
                continue; // IPv6 may be off
            }
            return None;
        };
        listeners.extend(
            table
                .lines()
                .skip(1)
                .filter_map(|line| parse_listener(line, v6))
                .filter(|(_, inode)| !ours.contains(inode)),
        );
    }
    for &(addr, flag) in addrs {
        let found: Vec<_> = listeners
            .iter()
            .filter(|(theirs, _)| theirs.port() == addr.port() && overlaps(theirs.ip(), addr.ip()))
            .collect();
        // Name a listener whose process is alive where there is one: a
        // socket of a process that just exited can outlive it for a moment
        // (its io_uring is torn down after it), and "another process" helps
        // no one.
        let named = found.iter().find_map(|&&(theirs, inode)| {
            owner_of(inode).map(|owner| (theirs, format!("{owner} ")))
        });
        let unnamed = || {
            found
                .first()
                .map(|&&(theirs, _)| (theirs, "another process ".into()))
        };
        if let Some((theirs, owner)) = named.or_else(unnamed) {
            return Some(Err(HostError::AddrInUse(format!(
                "cannot listen on {addr}: Address already in use ({owner}listens on {theirs}); \
                 stop it or choose another {flag} port"
            ))));
        }
    }
    Some(Ok(()))
}

/// `socket:[INODE]` links under a /proc/PID/fd directory.
fn socket_inodes(dir: &str) -> HashSet<u64> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return HashSet::new();
    };
    entries
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|target| {
            let t = target.to_str()?;
            t.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
        })
        .collect()
}

/// Which process holds a socket, where /proc lets us see: `pid 123 (name)`.
fn owner_of(inode: u64) -> Option<String> {
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        if socket_inodes(&format!("/proc/{pid}/fd")).contains(&inode) {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            return Some(format!("pid {pid} ({})", comm.trim()));
        }
    }
    None
}

/// One line of /proc/net/tcp{,6}: the local address and inode of a
/// socket in LISTEN state (0A).
fn parse_listener(line: &str, v6: bool) -> Option<(SocketAddr, u64)> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    if fields.len() < 10 || fields[3] != "0A" {
        return None;
    }
    let (ip_hex, port_hex) = fields[1].split_once(':')?;
    let port = u16::from_str_radix(port_hex, 16).ok()?;
    let ip = if v6 {
        // Four 32-bit words, each in host (little-endian) byte order.
        let mut bytes = [0u8; 16];
        for (i, chunk) in bytes.chunks_mut(4).enumerate() {
            let word = u32::from_str_radix(ip_hex.get(i * 8..i * 8 + 8)?, 16).ok()?;
            chunk.copy_from_slice(&word.to_le_bytes());
        }
        IpAddr::V6(Ipv6Addr::from(bytes))
    } else {
        let word = u32::from_str_radix(ip_hex, 16).ok()?;
        IpAddr::V4(Ipv4Addr::from(word.to_le_bytes()))
    };
    Some((SocketAddr::new(ip, port), fields[9].parse().ok()?))
}

/// Whether a connection to `a` could reach a listener on `b` or the reverse:
/// equal, or either is a wildcard; IPv4-mapped IPv6 compares as IPv4.
fn overlaps(a: IpAddr, b: IpAddr) -> bool {
    let canon = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    let (a, b) = (canon(a), canon(b));
    // `::` takes IPv4 too (unless bindv6only); `0.0.0.0` only IPv4.
    let wild = |w: IpAddr, o: IpAddr| w.is_unspecified() && (w.is_ipv6() || o.is_ipv4());
    a == b || wild(a, b) || wild(b, a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_releases() {
        assert_eq!(parse_release("6.1.0-18-amd64"), Some((6, 1)));
        assert_eq!(parse_release("5.15.0"), Some((5, 15)));
        assert_eq!(parse_release("garbage"), None);
    }

    #[test]
    fn proc_net_tcp_lines() {
        let v4 = "   0: 0100007F:2BCB 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 123456 1 0000000000000000 100 0 0 10 0";
        assert_eq!(
            parse_listener(v4, false),
            Some(("127.0.0.1:11211".parse().unwrap(), 123456))
        );
        let v6 = "   0: 00000000000000000000000001000000:2BCB 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 777 1 0000000000000000 100 0 0 10 0";
        assert_eq!(
            parse_listener(v6, true),
            Some(("[::1]:11211".parse().unwrap(), 777))
        );
        let established = v4.replace(" 0A ", " 01 ");
        assert_eq!(parse_listener(&established, false), None);
    }

    #[test]
    fn overlapping_addresses() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(overlaps(ip("127.0.0.1"), ip("127.0.0.1")));
        assert!(overlaps(ip("0.0.0.0"), ip("127.0.0.1")));
        assert!(overlaps(ip("127.0.0.1"), ip("::")));
        assert!(overlaps(ip("::ffff:127.0.0.1"), ip("127.0.0.1")));
        assert!(!overlaps(ip("127.0.0.1"), ip("127.0.0.2")));
        assert!(!overlaps(ip("0.0.0.0"), ip("::1")));
    }

    #[test]
    fn file_limit_lowers_the_connection_count() {
        // Whatever this process's limits, a demand far past any hard limit
        // is either refused or lowered, and says so.
        match check_nofile(usize::MAX / 4, 1, 0) {
            Ok((fits, Some(note))) => {
                assert!(fits < usize::MAX / 4);
                assert!(note.starts_with("--max-connections lowered from"), "{note}");
            }
            Ok((_, None)) => panic!("an impossible limit was met"),
            Err(e) => assert!(e.to_string().contains("ulimit -n"), "{e}"),
        }
    }
}
