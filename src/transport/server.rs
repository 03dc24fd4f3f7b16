//! Start-up and shutdown: one pinned glommio executor per core.
//!
//! Each executor binds the listen address itself (SO_REUSEPORT, so the kernel
//! spreads connections across cores), joins the two meshes, owns one
//! shard and serves the connections it accepts, but for those it hands to a
//! core serving fewer (`--balance`). The main thread only starts
//! them, prints the ready line, and handles signals.

use std::io::Write;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use glommio::{LocalExecutorBuilder, Placement};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use tracing::{error, info, warn};

use super::connection::serve;
use super::core::{Core, Mesh, Shared};
use super::mesh::{poll_without_ring, serve_replies, serve_requests};
use super::socket::{Listener, Socket};
use super::spin_gate::SpinGate;
use super::tls::{Tls, TlsFiles, HANDSHAKE_TIMEOUT};
use super::uring::Ring;
use crate::clock::Clock;
use crate::config::{Config, SchedPolicy, SocketIo};
use crate::host::{self, HostError};
use crate::keyspace::KeyHasher;
use crate::metrics::{self, Board, CoreSnapshot};
use crate::quotas::Quotas;
use crate::shard::Shard;
use crate::tenancy::{Auth, Namespaces, TokenFileError};
use crate::transport::envelope::ToShard;

/// Messages per queue of each mesh.
const MESH_CAPACITY: usize = 1024;
/// How long in-flight replies get to finish after SIGINT/SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(300);
/// How often each core runs delayed flushes and reclaims expired items
/// (and how many items at most), and looks whether its connections freed
/// enough memory to hand back to the system.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
const SWEEP_BUDGET: usize = 10_000;

#[derive(Debug)]
pub enum StartError {
    Tokens(TokenFileError),
    Cpus(String),
    Bind(SocketAddr, String),
    Executor(String),
    Host(HostError),
    Tls(String),
    Quotas(crate::quotas::QuotaFileError),
}

impl StartError {
    /// The process's exit status for this error: 78 (EX_CONFIG) where the
    /// host or its configuration must change, 71 where the port is taken.
    pub fn exit_code(&self) -> i32 {
        match self {
            StartError::Host(e) => e.exit_code(),
            StartError::Tokens(_)
            | StartError::Cpus(_)
            | StartError::Tls(_)
            | StartError::Quotas(_) => host::EXIT_CONFIG,
            StartError::Bind(_, e) if e.contains("in use") => host::EXIT_ADDR_IN_USE,
            StartError::Bind(..) | StartError::Executor(_) => 1,
        }
    }
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Tokens(e) => write!(f, "tokens file {e}"),
            StartError::Cpus(e) => write!(f, "cannot list CPUs: {e}"),
            StartError::Bind(addr, e) => write!(f, "cannot listen on {addr}: {e}"),
            StartError::Executor(e) => write!(f, "cannot start an executor: {e}"),
            StartError::Host(e) => write!(f, "{e}"),
            StartError::Tls(e) => write!(f, "TLS: {e}"),
            StartError::Quotas(e) => write!(f, "quotas file {e}"),
        }
    }
}

impl std::error::Error for StartError {}

enum Startup {
    /// The plain port, and the TLS port if any.
    Bound(SocketAddr, Option<SocketAddr>),
    Ready,
    Failed(StartError),
}

/// Runs the server until SIGINT or SIGTERM.
pub fn run(mut config: Config) -> Result<(), StartError> {
    // Host checks first: each ends in one line and a status, never a hang
    // or a panic inside glommio.
    host::check_io_uring().map_err(StartError::Host)?;
    host::check_memlock(config.cores).map_err(StartError::Host)?;
    // The metrics endpoint holds at most its cap of connections and its
    // listener: counted, so it cannot take descriptors clients were promised.
    let metrics_fds = match config.metrics_listen {
        Some(_) => metrics::endpoint::MAX_CONNECTIONS + 1,
        None => 0,
    };
    let (max_connections, lowered) =
        host::check_nofile(config.max_connections, config.cores, metrics_fds)
            .map_err(StartError::Host)?;
    config.max_connections = max_connections;
    if let Some(user) = &config.user {
        host::switch_user(user).map_err(StartError::Host)?;
    }
    for note in &config.notes {
        warn!("{note}");
    }
    if let Some(lowered) = lowered {
        warn!("{lowered}");
    }
    let auth = match &config.tokens {
        Some(path) => {
            let auth = Auth::secure(path, config.auth_failures).map_err(StartError::Tokens)?;
            warn_about_tokens_file(path, auth.grant_count());
            auth
        }
        None => Auth::open(),
    };
    if let Some(path) = &config.quotas {
        let quotas = Quotas::load(path, config.memory_bytes).map_err(StartError::Quotas)?;
        info!(file = %path.display(), projects = quotas.len(), "quotas loaded");
        Namespaces::global().set_quotas(Arc::new(quotas), config.cores);
    }
    let cpus =
        core_affinity::get_core_ids().ok_or_else(|| StartError::Cpus("none online".into()))?;
    let cores = config.cores;
    let tls = match &config.tls {
        Some(t) => Some(Arc::new(
            Tls::load(TlsFiles {
                cert: t.cert.clone(),
                key: t.key.clone(),
                client_ca: t.client_ca.clone(),
                require_client_cert: t.require_client_cert,
            })
            .map_err(|e| StartError::Tls(e.to_string()))?,
        )),
        None => None,
    };
    super::core::return_large_buffers_to_the_os();
    // One key hash for every core: each must route a key to the same shard.
    let keys = KeyHasher::from_seed(config.hash_seed);
    let shared = Arc::new(Shared::new(config, auth, Clock::new()));
    // The metrics endpoint is bound before the cores start, so a bad
    // --metrics-listen fails the start at once.
    let board = shared.config.metrics_listen.map(|_| Board::new(cores));
    let metrics_addr = match (shared.config.metrics_listen, &board) {
        (Some(listen), Some(board)) => {
            let facts = metrics::Facts {
                version: env!("CARGO_PKG_VERSION"),
                memory_limit_bytes: shared.config.memory_bytes as u64,
                top_projects: shared.config.metrics_top_projects,
                open_mode: !shared.auth.is_secure(),
                shards: cores,
            };
            let counted = shared.clone();
            let open_now =
                Box::new(move || counted.open_connections.load(Ordering::Relaxed) as u64);
            Some(
                metrics::serve(listen, board.clone(), facts, open_now)
                    .map_err(|e| StartError::Bind(listen, e))?,
            )
        }
        _ => None,
    };

    // Look before binding: a server that binds and then refuses would take
    // a share of the running one's new connections until its sockets close.
    refuse_shared_ports(
        shared.config.listen,
        shared.config.tls.as_ref().map(|t| t.listen),
    )?;

    let mesh = Mesh::new(cores, MESH_CAPACITY).map_err(|e| StartError::Executor(e.to_string()))?;
    let (tx, rx) = crossbeam_channel::unbounded();

    // Core 0 binds first so that port 0 resolves to one port all cores share.
    let mut addr = shared.config.listen;
    let mut tls_addr = shared.config.tls.as_ref().map(|t| t.listen);
    for (i, cpu) in cpus.iter().take(cores).enumerate() {
        let watcher = tx.clone();
        let (shared, mesh, tx) = (shared.clone(), mesh.for_core(i), tx.clone());
        let board = board.clone();
        let tls = tls.clone().zip(tls_addr);
        let handle = LocalExecutorBuilder::new(Placement::Fixed(cpu.id))
            // On our ring the driver polls, gated (`spin_gate`); glommio's
            // own poll would run ungated before each long park.
            .spin_before_park(match shared.config.socket_io {
                SocketIo::Uring => Duration::ZERO,
                SocketIo::Glommio => shared.config.spin_before_park,
            })
            .io_memory(host::GLOMMIO_IO_MEMORY)
            .name(&format!("ferrocache-{i}"))
            .spawn(move || async move {
                set_sched_policy(i, shared.config.sched_policy);
                let start = CoreStart {
                    addr,
                    tls,
                    keys,
                    board,
                };
                if let Err(e) = executor(start, shared, mesh, &tx).await {
                    let _ = tx.send(Startup::Failed(e));
                }
            })
            .map_err(|e| StartError::Executor(e.to_string()))?;
        watch(handle, watcher);
        if i == 0 {
            (addr, tls_addr) = wait_bound(&rx)?;
        }
    }
    // Every core says it bound, then that it is ready; a core's Ready may
    // come before another's Bound (joining the mesh waits for nobody).
    let (mut bound, mut ready) = (1, 0);
    while bound < cores || ready < cores {
        match next_startup(&rx)? {
            Startup::Bound(..) => bound += 1,
            Startup::Ready => ready += 1,
            Startup::Failed(e) => return Err(e),
        }
    }
    // Every core holds the ports now: look again, for a server that started
    // at the same moment.
    if !refuse_shared_ports(addr, tls_addr)? {
        warn!("cannot read /proc/net/tcp: not checking for other listeners on {addr}");
    }

    // Handlers first: a SIGHUP sent as soon as the ready line is out
    // must reload, not kill the process (SIGHUP's default action).
    let signals = install_signal_handlers();
    announce(&shared, addr, tls_addr, metrics_addr);
    wait_for_signals(&shared, signals, tls);
    Ok(())
}

/// Refuses to start where another process listens on our port or TLS port
/// (a port still 0 is skipped: the kernel picks a free one). `Ok(false)`
/// where /proc cannot be read, so nothing was checked.
fn refuse_shared_ports(addr: SocketAddr, tls_addr: Option<SocketAddr>) -> Result<bool, StartError> {
    let addrs: Vec<_> = [(Some(addr), "--listen"), (tls_addr, "--tls-listen")]
        .into_iter()
        .filter_map(|(addr, flag)| Some((addr.filter(|a| a.port() != 0)?, flag)))
        .collect();
    match host::foreign_listener(&addrs) {
        Some(found) => found.map_err(StartError::Host).map(|()| true),
        None => Ok(false),
    }
}

/// Gives the calling thread, core `core`'s, the `--sched-policy`. A core
/// the kernel keeps on its default policy still serves: it only pays more
/// wake-ups on a CPU it shares, so a refusal is a warning.
fn set_sched_policy(core: usize, policy: SchedPolicy) {
    let policy = match policy {
        SchedPolicy::Batch => libc::SCHED_BATCH,
        SchedPolicy::Other => libc::SCHED_OTHER,
    };
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 is the calling thread; `param` is a valid sched_param,
    // and priority 0 is the only one these two policies take.
    if unsafe { libc::sched_setscheduler(0, policy, &param) } != 0 {
        warn!(
            "core {core}: cannot set its scheduling policy ({}); it keeps the kernel's default",
            std::io::Error::last_os_error()
        );
    }
}

fn wait_bound(rx: &Receiver<Startup>) -> Result<(SocketAddr, Option<SocketAddr>), StartError> {
    match next_startup(rx)? {
        Startup::Bound(addr, tls) => Ok((addr, tls)),
        Startup::Failed(e) => Err(e),
        Startup::Ready => Err(StartError::Executor("startup failed".into())),
    }
}

fn next_startup(rx: &Receiver<Startup>) -> Result<Startup, StartError> {
    rx.recv()
        .map_err(|_| StartError::Executor("startup failed".into()))
}

/// Reports an executor thread that ends, so start-up never waits for ever on
/// a core that glommio could not set up (its closure never runs, and this
/// thread's own sender keeps the channel open). Once running, executors end
/// only with the process, and the watcher with them.
fn watch(executor: glommio::ExecutorJoinHandle<()>, tx: Sender<Startup>) {
    std::thread::spawn(move || {
        let why = match executor.join() {
            Ok(()) => "it stopped".to_string(),
            Err(e) => e.to_string(),
        };
        let _ = tx.send(Startup::Failed(StartError::Executor(why)));
    });
}

/// Start-up warnings about the tokens file: no grants (every client will be
/// refused) or readable by every user (the tokens are secrets).
fn warn_about_tokens_file(path: &std::path::Path, grants: usize) {
    use std::os::unix::fs::PermissionsExt;
    if grants == 0 {
        warn!(
            "tokens file {} has no grants: every client will fail to authenticate",
            path.display()
        );
    }
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o004 != 0 {
            warn!(
                "tokens file {} is readable by every user (mode {mode:03o}): chmod o-r it",
                path.display()
            );
        }
    }
}

fn announce(
    shared: &Shared,
    addr: SocketAddr,
    tls: Option<SocketAddr>,
    metrics: Option<SocketAddr>,
) {
    let config = &shared.config;
    let auth = if shared.auth.is_secure() { "on" } else { "off" };
    info!(
        version = env!("CARGO_PKG_VERSION"),
        %addr,
        cores = config.cores,
        memory_mb = config.memory_bytes >> 20,
        grants = shared.auth.grant_count(),
        max_connections = config.max_connections,
        "ferrocache listening; authentication is {}",
        if shared.auth.is_secure() {
            "on (secure mode: tokens file)"
        } else {
            "OFF (open mode: any token is accepted)"
        }
    );
    // The ready line, on stdout, for scripts and tests: printed only once
    // every core has bound the port and joined the meshes.
    let mut stdout = std::io::stdout().lock();
    // With --tls-listen the line ends ` tls=ADDR`, then with
    // --metrics-listen ` metrics=ADDR`.
    let tls_field = tls.map(|a| format!(" tls={a}")).unwrap_or_default();
    let metrics_field = metrics.map(|a| format!(" metrics={a}")).unwrap_or_default();
    let _ = writeln!(
        stdout,
        "ferrocache {} listening on {addr} cores={} memory_mb={} auth={auth}{tls_field}{metrics_field}",
        env!("CARGO_PKG_VERSION"),
        config.cores,
        config.memory_bytes >> 20,
    );
    if let Some(tls) = tls {
        info!(%tls, "TLS listening");
    }
    if let Some(metrics) = metrics {
        info!(%metrics, "metrics at http://{metrics}/metrics (for the operator only)");
    }
    let _ = stdout.flush();
}

fn install_signal_handlers() -> Signals {
    match Signals::new([SIGINT, SIGTERM, SIGHUP]) {
        Ok(s) => s,
        Err(e) => {
            error!(error = %e, "cannot install signal handlers");
            std::process::exit(1);
        }
    }
}

/// SIGHUP reloads the tokens; SIGINT/SIGTERM stop the server.
///
/// The reload runs on a thread of its own, so that nothing it reads can
/// keep this one from handling SIGTERM; SIGHUPs that arrive while one runs
/// fold into one more reload.
fn wait_for_signals(shared: &Arc<Shared>, mut signals: Signals, tls: Option<Arc<Tls>>) {
    let (reload_tx, reload_rx) = crossbeam_channel::bounded::<()>(1);
    let reloader = shared.clone();
    let spawned = std::thread::Builder::new()
        .name("ferrocache-reload".into())
        .spawn(move || {
            for () in reload_rx {
                reload(&reloader);
                reload_tls(tls.as_deref());
            }
        });
    if let Err(e) = spawned {
        error!(error = %e, "cannot start the reload thread; SIGHUP will be ignored");
    }
    for signal in signals.forever() {
        match signal {
            SIGHUP => {
                // Full: a reload is already due, and will read the file anew.
                let _ = reload_tx.try_send(());
            }
            _ => {
                info!("shutting down: no new connections, finishing replies in flight");
                shared.stop_accepting();
                std::thread::sleep(SHUTDOWN_GRACE);
                return;
            }
        }
    }
}

/// SIGHUP also re-reads the TLS certificate, key and client CA (on the
/// reload thread), for the connections accepted from now on.
fn reload_tls(tls: Option<&Tls>) {
    let Some(tls) = tls else { return };
    match tls.reload() {
        Ok(()) => info!(cert = %tls.files().cert.display(), "TLS certificate and key reloaded"),
        Err(e) => warn!("TLS certificate not reloaded, keeping the old one: {e}"),
    }
}

/// Re-reads the tokens file (on the reload thread), and says what changed.
fn reload(shared: &Shared) {
    match shared.auth.reload() {
        Ok(r) if shared.auth.is_secure() => info!(
            grants = r.grants,
            revoked_sessions = r.revoked,
            "tokens file reloaded; sessions whose grant is gone are closed at their next command"
        ),
        Ok(_) => info!("SIGHUP ignored: no tokens file (open mode)"),
        Err(e) => error!("tokens file not reloaded, keeping the old grants: {e}"),
    }
    if let Some(path) = &shared.config.quotas {
        match Quotas::reload(path, shared.config.memory_bytes) {
            Ok(quotas) => {
                info!(projects = quotas.len(), "quotas file reloaded");
                Namespaces::global().set_quotas(Arc::new(quotas), shared.config.cores);
            }
            Err(e) => error!("quotas file not reloaded, keeping the old quotas: {e}"),
        }
    }
}

/// What one core starts from, besides what every core shares.
struct CoreStart {
    /// The plain listen address (port 0 until core 0 has bound it).
    addr: SocketAddr,
    /// The TLS configuration and its listen address, when TLS is on.
    tls: Option<(Arc<Tls>, SocketAddr)>,
    /// The key hash, the same on every core.
    keys: KeyHasher,
    /// Where the core publishes its metrics, when --metrics-listen is set.
    board: Option<Arc<Board>>,
}

async fn executor(
    start: CoreStart,
    shared: Arc<Shared>,
    mesh: Mesh,
    startup: &Sender<Startup>,
) -> Result<(), StartError> {
    let CoreStart {
        addr,
        tls,
        keys,
        board,
    } = start;
    let config = &shared.config;
    let ring = match config.socket_io {
        SocketIo::Uring => match Ring::new(mesh.bells[mesh.index].eventfd()) {
            Ok(ring) => Some(ring),
            Err(e) => {
                warn!(error = %e, "cannot set up an io_uring for sockets; falling back to glommio's");
                None
            }
        },
        SocketIo::Glommio => None,
    };
    let listener =
        Listener::bind(addr, ring.clone()).map_err(|e| StartError::Bind(addr, e.to_string()))?;
    let bound = listener
        .local_addr()
        .map_err(|e| StartError::Bind(addr, e.to_string()))?;
    let tls = match tls {
        None => None,
        Some((_, tls_addr)) if ring.is_none() => {
            return Err(StartError::Tls(format!(
                "cannot serve {tls_addr}: TLS runs on the io_uring socket path only, \
                 and this core has none (glommio's sockets are plaintext only)"
            )))
        }
        Some((tls, tls_addr)) => {
            let listener = Listener::bind(tls_addr, ring.clone())
                .map_err(|e| StartError::Bind(tls_addr, e.to_string()))?;
            let bound = listener
                .local_addr()
                .map_err(|e| StartError::Bind(tls_addr, e.to_string()))?;
            Some((tls, listener, bound))
        }
    };
    let _ = startup.send(Startup::Bound(bound, tls.as_ref().map(|t| t.2)));

    let shard = Shard::new(
        config.memory_bytes / mesh.bells.len(),
        config.max_item_size,
        shared.clock,
        keys,
    );
    let core = Rc::new(Core::new(shard, shared.clone(), &mesh, ring.clone()));

    for peer in (0..core.shards).filter(|&p| p != core.index) {
        glommio::spawn_local(serve_requests(core.clone(), peer)).detach();
        glommio::spawn_local(serve_replies(core.clone(), peer)).detach();
    }
    glommio::spawn_local(sweep(core.clone())).detach();
    if let Some(board) = board {
        glommio::spawn_local(publish_metrics(core.clone(), board)).detach();
    }
    glommio::spawn_local(core.clone().flush_outbox()).detach();
    if let Some(ring) = ring {
        let inbound: Rc<dyn super::uring::Inbound> = core.clone();
        let driver = ring.clone();
        let gate = SpinGate::new(
            config.spin_before_park,
            config.spin_busy_pct,
            std::time::Instant::now(),
        );
        glommio::spawn_local(
            async move { driver.drive(&mesh.bells[mesh.index], inbound, gate).await },
        )
        .detach();
        glommio::spawn_local(ring.clone().submit_parked()).detach();
        // Deadlines also bound TLS handshakes.
        glommio::spawn_local(ring.watch_deadlines()).detach();
    } else {
        glommio::spawn_local(poll_without_ring(core.clone())).detach();
    }

    shared
        .listeners
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(listener.raw_fd());
    if let Some((tls, tls_listener, _)) = tls {
        shared
            .listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(tls_listener.raw_fd());
        glommio::spawn_local(accept_tls(core.clone(), tls_listener, tls)).detach();
    }
    let _ = startup.send(Startup::Ready);

    let mut out_of_fds = OutOfDescriptors::new();
    loop {
        match listener.accept().await {
            Ok(socket) => {
                let home = shared.place(core.index);
                if home == core.index {
                    glommio::spawn_local(serve(core.clone(), socket)).detach();
                } else {
                    hand_over(&core, home, socket).await;
                }
            }
            Err(_) if shared.shutting_down() => break,
            Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                out_of_fds.refuse_one(&core, &listener).await;
            }
            Err(e) => {
                // Anything else: log (at most once a second), back off
                // briefly, keep serving.
                out_of_fds.note_failure(&e);
                core.pause(Duration::from_millis(10)).await;
            }
        }
    }
    // Keep serving replies in flight until the process exits.
    futures_lite::future::pending::<()>().await;
    Ok(())
}

/// Accepts on this core's TLS listener. A TLS connection is served by the
/// core that accepted it (its session cannot be handed over; SO_REUSEPORT
/// spreads them).
async fn accept_tls(core: Rc<Core>, listener: Listener, tls: Arc<Tls>) {
    let handshake = match core.shared.config.idle_timeout {
        Some(idle) => idle.min(HANDSHAKE_TIMEOUT),
        None => HANDSHAKE_TIMEOUT,
    };
    loop {
        match listener.accept().await {
            Ok(socket) => match socket.into_tls(tls.config(), handshake) {
                Ok(socket) => {
                    // Counted here, as `Shared::place` counts plain ones;
                    // `serve` uncounts it when it closes.
                    core.shared.placed[core.index].fetch_add(1, Ordering::Relaxed);
                    glommio::spawn_local(serve(core.clone(), socket)).detach();
                }
                Err(e) => crate::throttled_warn!(error = %e, "cannot start a TLS session"),
            },
            Err(_) if core.shared.shutting_down() => break,
            Err(e) => {
                crate::throttled_warn!(error = %e, "TLS accept failed");
                core.pause(Duration::from_millis(10)).await;
            }
        }
    }
}

/// How often a core logs that accepts fail, at most.
const ACCEPT_LOG_EVERY: Duration = Duration::from_secs(10);

/// Out of file descriptors, a connection stays queued on the listener and
/// its client waits in silence. A spare descriptor, held for this, is
/// closed so that the connection can be accepted, told
/// `SERVER_ERROR too many open connections` and closed, as memcached does
/// past its limit; then the spare is taken again. Failures are logged as one
/// line with a count per interval, so a flood cannot fill the disk.
struct OutOfDescriptors {
    spare: Option<std::fs::File>,
    refused: u64,
    failed: u64,
    last_error: String,
    logged: Option<std::time::Instant>,
}

impl OutOfDescriptors {
    fn new() -> OutOfDescriptors {
        OutOfDescriptors {
            spare: std::fs::File::open("/dev/null").ok(),
            refused: 0,
            failed: 0,
            last_error: String::new(),
            logged: None,
        }
    }

    async fn refuse_one(&mut self, core: &Core, listener: &Listener) {
        self.spare = None;
        match listener.accept().await {
            Ok(mut socket) => {
                let line = crate::protocol::ErrorReply::TooManyConnections.line();
                let _ = socket
                    .write_all(line.to_vec(), Some(Duration::from_secs(1)))
                    .await;
                socket.close().await;
                self.refused += 1;
            }
            Err(e) => {
                self.failed += 1;
                self.last_error = e.to_string();
                // No spare to free: wait for descriptors to come back.
                core.pause(Duration::from_millis(10)).await;
            }
        }
        self.spare = std::fs::File::open("/dev/null").ok();
        self.log();
    }

    fn note_failure(&mut self, e: &std::io::Error) {
        self.failed += 1;
        self.last_error = e.to_string();
        self.log();
    }

    fn log(&mut self) {
        let now = std::time::Instant::now();
        if self.logged.is_some_and(|at| now - at < ACCEPT_LOG_EVERY) {
            return;
        }
        if self.refused > 0 {
            warn!(
                refused = self.refused,
                "out of file descriptors: refused connections with `SERVER_ERROR too many open \
                 connections`; raise the open-file limit (LimitNOFILE=) or lower --max-connections"
            );
        }
        if self.failed > 0 {
            warn!(failed = self.failed, error = %self.last_error, "accept failed");
        }
        (self.refused, self.failed, self.logged) = (0, 0, Some(now));
    }
}

/// Sends a connection this core accepted to core `home`, which serves it.
async fn hand_over(core: &Core, home: usize, socket: Socket) {
    match socket.into_fd() {
        Ok(fd) => core.post(home, ToShard::Adopt(fd)).await,
        Err(e) => {
            core.shared.unplace(home);
            warn!(error = %e, "cannot hand a connection over");
        }
    }
}

/// A core's housekeeping, once a second: the store's sweep, and free
/// memory handed back after a burst of connections or of large replies
/// (`Core::give_back_memory`), in one wake-up.
async fn sweep(core: Rc<Core>) {
    loop {
        core.pause(SWEEP_EVERY).await;
        core.shard.borrow_mut().tick(SWEEP_BUDGET);
        Namespaces::global().maintain(core.index, core.shards, &mut *core.shard.borrow_mut());
        core.give_back_memory();
    }
}

/// Publishes this core's figures for `--metrics-listen`: at once, then
/// every `metrics::PUBLISH_EVERY`. A copy of counters, off the request path.
async fn publish_metrics(core: Rc<Core>, board: Arc<Board>) {
    loop {
        let snapshot = CoreSnapshot::take(core.index, &core.shard.borrow(), &core.conns.borrow());
        board.publish(snapshot);
        core.pause(metrics::PUBLISH_EVERY).await;
    }
}
