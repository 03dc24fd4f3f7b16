//! Running ferrocache as a service: hosts it cannot run on fail fast with one
//! line and a status (locked memory, open files, io_uring blocked), a second
//! server on the port is refused, logs suit files and journald, and the
//! flags taken from memcached say what they mean.
//!
//! Each test starts the real binary. `FERROCACHE_BIN=/path/to/old/ferrocache
//! cargo test --test ops` runs them against another build (to see them fail
//! on one without these checks).
#![cfg(target_os = "linux")]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Exit status for a host that cannot run the server (EX_CONFIG).
const EXIT_CONFIG: i32 = 78;
/// Exit status when another process listens on the address (EX_OSERR).
const EXIT_ADDR_IN_USE: i32 = 71;
/// Exit status for a bad flag.
const EXIT_USAGE: i32 = 2;
/// The reply to `version`.
const VERSION: &str = concat!(
    "VERSION 1.6.18-ferrocache-",
    env!("CARGO_PKG_VERSION"),
    "\r\n"
);

fn bin() -> String {
    std::env::var("FERROCACHE_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_ferrocache").into())
}

struct Exit {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `cmd` to its end, or kills it after `within` (code `None`: it hung,
/// or it started serving).
fn run_for(mut cmd: Command, within: Duration) -> Exit {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + within;
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    Exit {
        code,
        stdout,
        stderr,
    }
}

fn ferrocache(args: &[&str]) -> Command {
    let mut cmd = Command::new(bin());
    cmd.args(args).env_remove("RUST_LOG").env_remove("NO_COLOR");
    cmd
}

/// `bash -c 'ulimit ...; exec ferrocache ARGS'`.
fn under_ulimit(ulimit: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(format!("{ulimit}; exec \"$0\" \"$@\""))
        .arg(bin())
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR");
    cmd
}

/// Asserts a fast exit with `code` and exactly one line on stderr that
/// starts with `prefix`.
fn assert_one_line_exit(exit: &Exit, code: i32, prefix: &str) {
    assert_eq!(
        exit.code,
        Some(code),
        "expected exit {code}; stderr: {}",
        exit.stderr
    );
    assert_eq!(
        exit.stderr.lines().count(),
        1,
        "expected one line: {}",
        exit.stderr
    );
    assert!(
        exit.stderr.starts_with(prefix),
        "expected {prefix:?}, got {:?}",
        exit.stderr
    );
    assert!(!exit.stderr.contains("panicked"), "{}", exit.stderr);
}

/// A running server whose stderr is collected.
struct Running {
    child: Child,
    addr: SocketAddr,
    ready: String,
    stderr: Arc<Mutex<String>>,
}

impl Running {
    fn start(mut cmd: Command) -> Running {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let stderr = Arc::new(Mutex::new(String::new()));
        let pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = match lines.next() {
            Some(Ok(line)) => line,
            _ => {
                let _ = child.wait();
                std::thread::sleep(Duration::from_millis(100));
                panic!("server exited before ready: {}", stderr.lock().unwrap());
            }
        };
        std::thread::spawn(move || for _ in lines {});
        let addr = ready
            .split("listening on ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or_else(|| panic!("ready line: {ready}"))
            .parse()
            .unwrap();
        Running {
            child,
            addr,
            ready,
            stderr,
        }
    }

    /// Waits (up to 5 s) for stderr to contain `needle`; returns all of it.
    fn stderr_with(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let s = self.stderr.lock().unwrap().clone();
            if s.contains(needle) || Instant::now() > deadline {
                return s;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `request` on a fresh connection and reads one line of reply.
fn one_line(addr: SocketAddr, request: &[u8]) -> std::io::Result<String> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    s.write_all(request)?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line)?;
    Ok(line)
}

// ---- locked memory, open files, io_uring ----

#[test]
fn a_low_locked_memory_limit_is_one_line_and_status_78() {
    for kib in ["256", "64"] {
        let exit = run_for(
            under_ulimit(
                &format!("ulimit -l {kib}"),
                &["--listen", "127.0.0.1:0", "--cores", "1"],
            ),
            Duration::from_secs(10),
        );
        assert_one_line_exit(
            &exit,
            EXIT_CONFIG,
            &format!(
                "ferrocache: the locked-memory limit (ulimit -l) is {kib} KiB; io_uring (glommio) \
                 needs at least 512 KiB: raise it with `ulimit -l 512`, LimitMEMLOCK=512K"
            ),
        );
    }
}

#[test]
fn the_glommio_minimum_of_locked_memory_is_enough() {
    let server = Running::start(under_ulimit(
        "ulimit -l 512",
        &["--listen", "127.0.0.1:0", "--cores", "1"],
    ));
    assert_eq!(one_line(server.addr, b"version\r\n").unwrap(), VERSION);
    // glommio's multi-line "registering buffers ... OutOfMemory" warning
    // does not reach the log.
    let log = server.stderr_with("listening");
    assert!(!log.contains("registering buffers"), "{log}");
}

#[test]
fn too_few_open_files_for_the_server_itself_is_one_line_and_status_78() {
    let exit = run_for(
        under_ulimit("ulimit -n 40", &["--listen", "127.0.0.1:0", "--cores", "1"]),
        Duration::from_secs(10),
    );
    assert_one_line_exit(
        &exit,
        EXIT_CONFIG,
        "ferrocache: the open-file limit (ulimit -n) is 40; ferrocache needs at least 46 with \
         --cores 1, and 4141 for --max-connections 4096: raise it",
    );
}

#[test]
fn a_low_open_file_limit_lowers_max_connections_and_refuses_the_rest_aloud() {
    let server = Running::start(under_ulimit(
        "ulimit -n 64",
        &["--listen", "127.0.0.1:0", "--cores", "1"],
    ));
    let log = server.stderr_with("listening");
    assert!(
        log.contains(
            "--max-connections lowered from 4096 to 19: the open-file limit (ulimit -n) is 64; \
             raise it to 4141 (ulimit -n, LimitNOFILE=) for all 4096"
        ),
        "{log}"
    );
    // 60 clients held open at once: every one gets an answer, none waits.
    let mut held = Vec::new();
    let (mut served, mut refused) = (0, 0);
    for _ in 0..60 {
        let mut s = TcpStream::connect(server.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        s.write_all(b"version\r\n").unwrap();
        let mut line = String::new();
        BufReader::new(s.try_clone().unwrap())
            .read_line(&mut line)
            .expect("a client over the limit got no answer");
        match line.as_str() {
            v if v.starts_with("VERSION ") => served += 1,
            "SERVER_ERROR too many open connections\r\n" => refused += 1,
            other => panic!("unexpected reply {other:?}"),
        }
        held.push(s);
    }
    assert_eq!(served, 19);
    assert_eq!(refused, 41);
}

/// Lowers a running server's open-file limit (prlimit) below what it holds,
/// so accepts fail with EMFILE: clients still hear why, and the log does
/// not flood.
#[test]
fn out_of_descriptors_at_run_time_clients_get_the_error_not_silence() {
    let server = one_core(&[]);
    let pid = server.child.id() as libc::pid_t;
    let open = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count() as u64;
    let limit = libc::rlimit {
        rlim_cur: open + 2,
        rlim_max: open + 2,
    };
    // SAFETY: prlimit on a child we own, with a struct we own.
    let set = unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, &limit, std::ptr::null_mut()) };
    assert_eq!(set, 0);
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..30 {
        let mut s = TcpStream::connect(server.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        s.write_all(b"version\r\n").unwrap();
        let mut line = String::new();
        BufReader::new(s.try_clone().unwrap())
            .read_line(&mut line)
            .expect("a client past the descriptor limit got no answer");
        match line.as_str() {
            v if v.starts_with("VERSION ") => {}
            "SERVER_ERROR too many open connections\r\n" => refused += 1,
            other => panic!("unexpected reply {other:?}"),
        }
        held.push(s);
    }
    assert!(refused >= 25, "only {refused} refused");
    std::thread::sleep(Duration::from_millis(200));
    let log = server.stderr.lock().unwrap().clone();
    let lines = log
        .lines()
        .filter(|l| l.contains("descriptors") || l.contains("accept failed"))
        .count();
    assert!(lines <= 2, "the log floods: {log}");
}

/// A seccomp filter that fails io_uring_setup/enter/register (425-427 on
/// every architecture) with `errno`, as Docker's default profile does.
fn block_io_uring(cmd: &mut Command, errno: u32) {
    block_syscalls(cmd, 425, 427, errno);
}

/// A seccomp filter that fails the system calls numbered `first..=last`
/// with `errno`.
fn block_syscalls(cmd: &mut Command, first: u32, last: u32, errno: u32) {
    #[repr(C)]
    struct Insn {
        code: u16,
        jt: u8,
        jf: u8,
        k: u32,
    }
    #[repr(C)]
    struct Prog {
        len: u16,
        filter: *const Insn,
    }
    const LD_W_ABS: u16 = 0x20;
    const JGE_K: u16 = 0x35;
    const JGT_K: u16 = 0x25;
    const RET_K: u16 = 0x06;
    const RET_ERRNO: u32 = 0x0005_0000;
    const RET_ALLOW: u32 = 0x7fff_0000;
    // SAFETY: runs in the child between fork and exec; only prctl calls.
    unsafe {
        cmd.pre_exec(move || {
            let filter = [
                Insn {
                    code: LD_W_ABS,
                    jt: 0,
                    jf: 0,
                    k: 0,
                }, // seccomp_data.nr
                Insn {
                    code: JGE_K,
                    jt: 0,
                    jf: 2,
                    k: first,
                },
                Insn {
                    code: JGT_K,
                    jt: 1,
                    jf: 0,
                    k: last,
                },
                Insn {
                    code: RET_K,
                    jt: 0,
                    jf: 0,
                    k: RET_ERRNO | errno,
                },
                Insn {
                    code: RET_K,
                    jt: 0,
                    jf: 0,
                    k: RET_ALLOW,
                },
            ];
            let prog = Prog {
                len: filter.len() as u16,
                filter: filter.as_ptr(),
            };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(libc::PR_SET_SECCOMP, 2, &prog as *const Prog) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[test]
fn io_uring_blocked_by_seccomp_is_one_line_and_status_78() {
    for (errno, text) in [
        (libc::EPERM as u32, "Operation not permitted"),
        (libc::ENOSYS as u32, "Function not implemented"),
    ] {
        let mut cmd = ferrocache(&["--listen", "127.0.0.1:0", "--cores", "1"]);
        block_io_uring(&mut cmd, errno);
        let exit = run_for(cmd, Duration::from_secs(10));
        assert_one_line_exit(
            &exit,
            EXIT_CONFIG,
            &format!(
                "ferrocache: io_uring is not available (io_uring_setup: {text} (os error \
                 {errno})): a seccomp filter blocks it (Docker's default profile does): allow \
                 io_uring_setup, io_uring_enter and io_uring_register, e.g. docker run \
                 --security-opt seccomp=deploy/seccomp-io_uring.json"
            ),
        );
    }
}

// ---- the core threads' scheduling policy ----

/// Each thread of `pid` as (name, scheduling policy): field 41 of its
/// /proc stat (0 SCHED_OTHER, 3 SCHED_BATCH).
fn thread_policies(pid: u32) -> Vec<(String, u32)> {
    let mut threads = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let dir = task.unwrap().path();
        let stat = std::fs::read_to_string(dir.join("stat")).unwrap();
        // Fields after the parenthesised name start at field 3.
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let policy = after.split(' ').nth(41 - 3).unwrap().parse().unwrap();
        let name = std::fs::read_to_string(dir.join("comm")).unwrap();
        threads.push((name.trim().to_string(), policy));
    }
    threads
}

#[test]
fn each_core_thread_runs_under_the_scheduling_policy_asked_for() {
    const SCHED_OTHER: u32 = 0;
    const SCHED_BATCH: u32 = 3;
    for (extra, policy) in [
        (&[][..], SCHED_BATCH),
        (&["--sched-policy", "batch"][..], SCHED_BATCH),
        (&["--sched-policy", "other"][..], SCHED_OTHER),
    ] {
        let mut args = vec!["--listen", "127.0.0.1:0", "--cores", "2"];
        args.extend_from_slice(extra);
        let server = Running::start(ferrocache(&args));
        let threads = thread_policies(server.child.id());
        // glommio names a core's executor thread and its helper alike
        // (`ferrocache-0-1`); the executor is the one that serves.
        for core in 0..2 {
            let prefix = format!("ferrocache-{core}-");
            assert!(
                threads
                    .iter()
                    .any(|(name, p)| name.starts_with(&prefix) && *p == policy),
                "{extra:?}: no thread of core {core} under policy {policy}: {threads:?}"
            );
        }
        // Only the core threads change: the rest keep the default.
        let batch = threads.iter().filter(|(_, p)| *p == SCHED_BATCH).count();
        assert_eq!(
            batch,
            if policy == SCHED_BATCH { 2 } else { 0 },
            "{threads:?}"
        );
        assert!(threads
            .iter()
            .all(|(_, p)| [SCHED_OTHER, SCHED_BATCH].contains(p)));
        assert_eq!(one_line(server.addr, b"version\r\n").unwrap(), VERSION);
    }
}

#[test]
fn a_refused_scheduling_policy_is_a_warning_and_the_server_serves() {
    let nr = libc::SYS_sched_setscheduler as u32;
    let mut cmd = ferrocache(&["--listen", "127.0.0.1:0", "--cores", "2"]);
    block_syscalls(&mut cmd, nr, nr, libc::EPERM as u32);
    let server = Running::start(cmd);
    let log = server.stderr_with("core 1: cannot set");
    for core in 0..2 {
        assert!(
            log.contains(&format!(
                "core {core}: cannot set its scheduling policy (Operation not permitted (os \
                 error 1)); it keeps the kernel's default"
            )),
            "{log}"
        );
    }
    assert!(thread_policies(server.child.id())
        .iter()
        .all(|(_, p)| *p == 0));
    assert_eq!(one_line(server.addr, b"version\r\n").unwrap(), VERSION);
}

#[test]
fn kernel_io_uring_disabled_is_reported_or_skipped() {
    // kernel.io_uring_disabled is not per namespace: it can only be read.
    let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    if disabled != "2" {
        eprintln!(
            "skipped: kernel.io_uring_disabled is {disabled:?} here and cannot be set for one \
             process (the seccomp test covers a blocked io_uring)"
        );
        return;
    }
    let exit = run_for(
        ferrocache(&["--listen", "127.0.0.1:0", "--cores", "1"]),
        Duration::from_secs(10),
    );
    assert_eq!(exit.code, Some(EXIT_CONFIG));
    assert!(exit.stderr.contains("kernel.io_uring_disabled is 2"));
}

// ---- a second server on the same port ----

#[test]
fn a_second_server_on_the_same_port_is_refused() {
    let first = Running::start(ferrocache(&["--listen", "127.0.0.1:0", "--cores", "2"]));
    let port = first.addr.port();
    let pid = first.child.id();
    let tokens = tempfile("grants", "secret-token-0001 project\n", 0o600);
    for listen in [
        format!("127.0.0.1:{port}"),
        format!("0.0.0.0:{port}"),
        format!("[::]:{port}"),
    ] {
        let exit = run_for(
            ferrocache(&[
                "--listen",
                &listen,
                "--cores",
                "2",
                "--tokens",
                tokens.to_str().unwrap(),
            ]),
            Duration::from_secs(10),
        );
        assert_eq!(
            exit.code,
            Some(EXIT_ADDR_IN_USE),
            "{listen}: {}",
            exit.stderr
        );
        assert!(exit.stdout.is_empty(), "{listen} announced itself");
        assert_eq!(
            exit.stderr.lines().last().unwrap(),
            format!(
                "ferrocache: cannot listen on {listen}: Address already in use (pid {pid} \
                 (ferrocache) listens on 127.0.0.1:{port}); stop it or choose another --listen \
                 port"
            )
        );
    }
    // The first server, two cores on one port, still serves.
    for _ in 0..8 {
        assert_eq!(one_line(first.addr, b"version\r\n").unwrap(), VERSION);
    }
}

#[test]
fn a_port_held_by_another_user_names_its_process() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: not root, so no listener of another user can be made");
        return;
    }
    // A listener of user nobody: binding its port fails whatever the flags
    // (SO_REUSEPORT joins only sockets of one user), so the server must
    // look before it binds to say who holds it.
    let mut holder = Command::new("python3")
        .args([
            "-c",
            "import socket, time\n\
             s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\n\
             print(s.getsockname()[1], flush=True); time.sleep(60)",
        ])
        .uid(65534)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn python3");
    let mut line = String::new();
    BufReader::new(holder.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port: u16 = line.trim().parse().expect("the holder's port");
    let listen = format!("127.0.0.1:{port}");
    let exit = run_for(
        ferrocache(&["--listen", &listen, "--cores", "2"]),
        Duration::from_secs(10),
    );
    let pid = holder.id();
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(exit.code, Some(EXIT_ADDR_IN_USE), "{}", exit.stderr);
    assert_eq!(
        exit.stderr.lines().last().unwrap(),
        format!(
            "ferrocache: cannot listen on {listen}: Address already in use (pid {pid} (python3) \
             listens on {listen}); stop it or choose another --listen port"
        )
    );
}

// ---- logs ----

fn tempfile(name: &str, text: &str, mode: u32) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::temp_dir().join(format!(
        "ferrocache-ops-{}-{name}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

/// A one-core server on a free port, with `extra` flags.
fn one_core(extra: &[&str]) -> Running {
    let mut args = vec!["--listen", "127.0.0.1:0", "--cores", "1"];
    args.extend_from_slice(extra);
    Running::start(ferrocache(&args))
}

fn fail_auth(addr: SocketAddr) -> String {
    one_line(addr, b"set oauth 0 0 15\r\nwrong-token p c\r\n").unwrap()
}

#[test]
fn logs_to_a_pipe_have_no_colour_and_plain_peers_and_count_grants() {
    let tokens = tempfile("two", "secret-token-0001 p\nsecret-token-0002 q\n", 0o644);
    let server = one_core(&["--tokens", tokens.to_str().unwrap()]);
    let start = server.stderr_with("listening");
    assert!(start.contains("grants=2"), "{start}");
    assert!(
        start.contains(&format!(
            "tokens file {} is readable by every user (mode 644): chmod o-r it",
            tokens.display()
        )),
        "{start}"
    );
    assert_eq!(
        fail_auth(server.addr),
        "CLIENT_ERROR authentication failed\r\n"
    );
    let log = server.stderr_with("authentication failed");
    assert!(
        !log.contains('\x1b'),
        "escape codes in a piped log: {log:?}"
    );
    let line = log
        .lines()
        .find(|l| l.contains("authentication failed"))
        .unwrap();
    assert!(line.contains("peer=127.0.0.1:"), "{line}");
    assert!(!line.contains("Some("), "{line}");
}

#[test]
fn json_logs_are_one_object_per_line() {
    let tokens = tempfile("json", "secret-token-0001 p\n", 0o600);
    let server = one_core(&["--log-format", "json", "--tokens", tokens.to_str().unwrap()]);
    fail_auth(server.addr);
    let log = server.stderr_with("authentication failed");
    assert!(!log.is_empty());
    for line in log.lines() {
        assert!(
            line.starts_with("{\"timestamp\":\"") && line.ends_with('}'),
            "not a JSON object: {line}"
        );
    }
    assert!(log.contains("\"level\":\"INFO\""), "{log}");
    assert!(log.contains("\"peer\":\"127.0.0.1:"), "{log}");
}

#[test]
fn a_tokens_file_with_no_grants_is_warned_about() {
    let tokens = tempfile("empty", "# nobody yet\n", 0o600);
    let server = one_core(&["--tokens", tokens.to_str().unwrap()]);
    let log = server.stderr_with("listening");
    assert!(
        log.contains(&format!(
            "tokens file {} has no grants: every client will fail to authenticate",
            tokens.display()
        )),
        "{log}"
    );
    assert!(!log.contains("readable by every user"), "{log}");
}

#[test]
fn a_malformed_rust_log_is_an_error_at_start() {
    let mut cmd = ferrocache(&["--listen", "127.0.0.1:0", "--cores", "1"]);
    cmd.env("RUST_LOG", "ferrocache=loud");
    let exit = run_for(cmd, Duration::from_secs(10));
    assert_one_line_exit(
        &exit,
        EXIT_CONFIG,
        "ferrocache: RUST_LOG=\"ferrocache=loud\" is not a log filter:",
    );
}

/// On a terminal (a pty from util-linux's `script`), text logs are coloured,
/// unless NO_COLOR is set.
#[test]
fn colour_only_on_a_terminal_and_never_with_no_color() {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: no `script` (util-linux) to give the server a terminal");
        return;
    }
    let on_a_pty = |no_color: bool| {
        let command = format!(
            "{}timeout -s INT 2 {} --listen 127.0.0.1:0 --cores 1",
            if no_color { "NO_COLOR=1 " } else { "" },
            bin()
        );
        let out = Command::new("script")
            .args(["-qec", &command, "/dev/null"])
            .env_remove("NO_COLOR")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let coloured = on_a_pty(false);
    assert!(coloured.contains("listening"), "{coloured}");
    assert!(
        coloured.contains('\x1b'),
        "no colour on a terminal: {coloured:?}"
    );
    let plain = on_a_pty(true);
    assert!(plain.contains("listening"), "{plain}");
    assert!(
        !plain.contains('\x1b'),
        "colour despite NO_COLOR: {plain:?}"
    );
}

// ---- flags ----

fn flag_error(args: &[&str]) -> String {
    let exit = run_for(ferrocache(args), Duration::from_secs(10));
    assert_eq!(exit.code, Some(EXIT_USAGE), "{args:?}: {}", exit.stderr);
    exit.stderr
}

#[test]
fn flag_messages_say_what_they_mean() {
    assert_eq!(
        flag_error(&["--cores", "1", "--memory-mb", "1"]),
        "ferrocache: --memory-mb 1m: the default item size limit (-I 1m) needs at least 2 MB; \
         give --memory-mb 2 or more, or lower the limit, e.g. -I 512k\n"
    );
    assert_eq!(
        flag_error(&["--cores", "1", "-U", "11211"]),
        "ferrocache: -U 11211: ferrocache serves TCP only; use -U 0 or drop the flag\n"
    );
    assert_eq!(
        flag_error(&["--cores", "1", "-l", "127.0.0.1,127.0.0.2"]),
        "ferrocache: -l 127.0.0.1,127.0.0.2: ferrocache listens on one address; give one, or \
         0.0.0.0 for every interface\n"
    );
    let too_much = flag_error(&["--cores", "1", "-m", "99999999"]);
    assert!(
        too_much
            .starts_with("ferrocache: --memory-mb 99999999m: more than this machine's memory ("),
        "{too_much}"
    );
    let help = run_for(ferrocache(&["--help"]), Duration::from_secs(10)).stdout;
    // clap wraps the text to the terminal's width.
    let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        help.contains("on the CPU at least --spin-busy-pct (90%)"),
        "{help}"
    );
    assert!(help.contains("0 (never) with one"), "{help}");
    assert!(help.contains("0 polls whenever it is idle"), "{help}");
    assert!(
        help.contains("Each sleep's own CPU cost counts as busy"),
        "{help}"
    );
    assert!(!help.contains("membarrier"), "{help}");
    assert!(
        help.contains("--sched-policy <batch|other> Linux scheduling policy of the core threads"),
        "{help}"
    );
    assert_eq!(
        flag_error(&["--cores", "1", "--sched-policy", "fifo"])
            .lines()
            .next(),
        Some("error: invalid value 'fifo' for '--sched-policy <batch|other>'")
    );
}

#[test]
fn cores_beyond_the_affinity_mask_name_the_mask() {
    let online = std::thread::available_parallelism().map_or(1, |n| n.get());
    // SAFETY: sysconf has no preconditions.
    let online = online.max(unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) } as usize);
    if online < 2 {
        eprintln!("skipped: one CPU online, no narrower affinity mask to set");
        return;
    }
    let mut cmd = ferrocache(&["--cores", "2", "--listen", "127.0.0.1:0"]);
    // SAFETY: between fork and exec; sched_setaffinity on a set we own.
    unsafe {
        cmd.pre_exec(|| {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(0, &mut set);
            if libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let exit = run_for(cmd, Duration::from_secs(10));
    assert_eq!(exit.code, Some(EXIT_USAGE));
    assert_eq!(
        exit.stderr,
        format!(
            "ferrocache: --cores 2: this process's CPU affinity mask allows only 1 of the \
             {online} online CPUs (taskset, cpuset or CPUAffinity=); widen the mask or lower \
             --cores\n"
        )
    );
}

#[test]
fn memcached_style_flags_carry_over() {
    // `-m 1g`, a -l list with the wildcard, -U 0 and -vv.
    let server = Running::start(ferrocache(&[
        "-p",
        "0",
        "-l",
        "0.0.0.0,127.0.0.1",
        "-t",
        "1",
        "-m",
        "1g",
        "-U",
        "0",
        "-vv",
    ]));
    assert!(server.ready.contains("memory_mb=1024"), "{}", server.ready);
    assert!(server.addr.ip().is_unspecified(), "{}", server.ready);
    let log = server.stderr_with("listening");
    assert!(
        log.contains("-l 0.0.0.0,127.0.0.1: listening on 0.0.0.0:"),
        "{log}"
    );
    // -vv is debug; the start-up log has no debug line of its own, so this
    // only checks that -vv starts and logs (the notes above come first).
    let log = server.stderr_with("ferrocache listening");
    assert!(
        log.contains("DEBUG") || log.contains("ferrocache listening"),
        "{log}"
    );
    let local = SocketAddr::from(([127, 0, 0, 1], server.addr.port()));
    assert_eq!(one_line(local, b"version\r\n").unwrap(), VERSION);
}

#[test]
fn dash_u_switches_user_when_started_as_root() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: not root, so -u only notes that it is ignored");
        return;
    }
    let server = one_core(&["-u", "nobody"]);
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.child.id())).unwrap();
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert_eq!(uid.split_whitespace().nth(2), Some("65534"), "{uid}");
    assert_eq!(one_line(server.addr, b"version\r\n").unwrap(), VERSION);
}
