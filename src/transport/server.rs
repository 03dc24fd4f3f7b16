//! Start-up and shutdown: one pinned glommio executor per core.
//!
//! Each executor binds the listen address itself (SO_REUSEPORT, so the kernel
//! spreads connections across cores), joins the two channel meshes, owns one
//! shard and serves the connections it accepts, but for those it hands to a
//! core serving fewer (`--balance`). The main thread only starts
//! them, prints the ready line, and handles signals.

use std::io::Write;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use glommio::channels::channel_mesh::MeshBuilder;
use glommio::{LocalExecutorBuilder, Placement};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use tracing::{error, info, warn};

use super::connection::serve;
use super::core::{Core, Shared};
use super::mesh::{serve_replies, serve_requests};
use super::socket::{Listener, Socket};
use super::uring::Ring;
use crate::clock::Clock;
use crate::config::{Config, SocketIo};
use crate::router::{Reply, ToShard};
use crate::shard::Shard;
use crate::tenancy::{Auth, TokenFileError};

/// Messages per channel of each mesh.
const MESH_CAPACITY: usize = 1024;
/// How long in-flight replies get to finish after SIGINT/SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(300);
/// How often each core runs delayed flushes and reclaims expired items
/// (and how many items at most).
const SWEEP_EVERY: Duration = Duration::from_secs(1);
const SWEEP_BUDGET: usize = 10_000;

#[derive(Debug)]
pub enum StartError {
    Tokens(TokenFileError),
    Cpus(String),
    Bind(SocketAddr, String),
    Executor(String),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Tokens(e) => write!(f, "tokens file {e}"),
            StartError::Cpus(e) => write!(f, "cannot list CPUs: {e}"),
            StartError::Bind(addr, e) => write!(f, "cannot listen on {addr}: {e}"),
            StartError::Executor(e) => write!(f, "cannot start an executor: {e}"),
        }
    }
}

impl std::error::Error for StartError {}

enum Startup {
    Bound(SocketAddr),
    Ready,
    Failed(StartError),
}

/// Runs the server until SIGINT or SIGTERM.
pub fn run(config: Config) -> Result<(), StartError> {
    let auth = match &config.tokens {
        Some(path) => Auth::secure(path).map_err(StartError::Tokens)?,
        None => Auth::open(),
    };
    let cpus =
        core_affinity::get_core_ids().ok_or_else(|| StartError::Cpus("none online".into()))?;
    let cores = config.cores;
    super::core::return_large_buffers_to_the_os();
    // Before any core hashes a key.
    crate::store::seed_key_hash(config.hash_seed);
    let shared = Arc::new(Shared::new(config, auth, Clock::new()));

    let requests = MeshBuilder::<ToShard, _>::full(cores, MESH_CAPACITY);
    let replies = MeshBuilder::<Reply, _>::full(cores, MESH_CAPACITY);
    let (tx, rx) = crossbeam_channel::unbounded();

    // Core 0 binds first so that port 0 resolves to one port all cores share.
    let mut addr = shared.config.listen;
    for (i, cpu) in cpus.iter().take(cores).enumerate() {
        let (shared, requests, replies, tx) = (
            shared.clone(),
            requests.clone(),
            replies.clone(),
            tx.clone(),
        );
        LocalExecutorBuilder::new(Placement::Fixed(cpu.id))
            .spin_before_park(shared.config.spin_before_park)
            .name(&format!("ferrocache-{i}"))
            .spawn(move || async move {
                if let Err(e) = executor(addr, shared, requests, replies, &tx).await {
                    let _ = tx.send(Startup::Failed(e));
                }
            })
            .map_err(|e| StartError::Executor(e.to_string()))?;
        if i == 0 {
            addr = wait_bound(&rx)?;
        }
    }
    for _ in 1..cores {
        wait_bound(&rx)?;
    }
    for _ in 0..cores {
        match rx.recv() {
            Ok(Startup::Ready) => {}
            Ok(Startup::Failed(e)) => return Err(e),
            Ok(Startup::Bound(_)) | Err(_) => {
                return Err(StartError::Executor("startup failed".into()))
            }
        }
    }

    announce(&shared, addr);
    wait_for_signals(&shared);
    Ok(())
}

fn wait_bound(rx: &Receiver<Startup>) -> Result<SocketAddr, StartError> {
    match rx.recv() {
        Ok(Startup::Bound(addr)) => Ok(addr),
        Ok(Startup::Failed(e)) => Err(e),
        Ok(Startup::Ready) | Err(_) => Err(StartError::Executor("startup failed".into())),
    }
}

fn announce(shared: &Shared, addr: SocketAddr) {
    let config = &shared.config;
    let auth = if shared.auth.is_secure() { "on" } else { "off" };
    info!(
        version = env!("CARGO_PKG_VERSION"),
        %addr,
        cores = config.cores,
        memory_mb = config.memory_bytes >> 20,
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
    let _ = writeln!(
        stdout,
        "ferrocache {} listening on {addr} cores={} memory_mb={} auth={auth}",
        env!("CARGO_PKG_VERSION"),
        config.cores,
        config.memory_bytes >> 20,
    );
    let _ = stdout.flush();
}

/// SIGHUP reloads the tokens; SIGINT/SIGTERM stop the server.
fn wait_for_signals(shared: &Shared) {
    let mut signals = match signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) {
        Ok(s) => s,
        Err(e) => {
            error!(error = %e, "cannot install signal handlers");
            std::process::exit(1);
        }
    };
    for signal in signals.forever() {
        match signal {
            SIGHUP => match shared.auth.reload() {
                Ok(grants) if shared.auth.is_secure() => info!(grants, "tokens file reloaded"),
                Ok(_) => info!("SIGHUP ignored: no tokens file (open mode)"),
                Err(e) => warn!("tokens file not reloaded, keeping the old grants: {e}"),
            },
            _ => {
                info!("shutting down: no new connections, finishing replies in flight");
                shared.stop_accepting();
                std::thread::sleep(SHUTDOWN_GRACE);
                return;
            }
        }
    }
}

async fn executor(
    addr: SocketAddr,
    shared: Arc<Shared>,
    requests: MeshBuilder<ToShard, glommio::channels::channel_mesh::Full>,
    replies: MeshBuilder<Reply, glommio::channels::channel_mesh::Full>,
    startup: &Sender<Startup>,
) -> Result<(), StartError> {
    let config = &shared.config;
    let ring = match config.socket_io {
        SocketIo::Uring => match Ring::new() {
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
    let _ = startup.send(Startup::Bound(bound));

    let (to_shard, mut from_peers) = requests
        .join()
        .await
        .map_err(|_| StartError::Executor("request mesh".into()))?;
    let (reply_tx, mut reply_rx) = replies
        .join()
        .await
        .map_err(|_| StartError::Executor("reply mesh".into()))?;
    let shard = Shard::new(
        config.memory_bytes / to_shard.nr_consumers(),
        config.max_item_size,
        shared.clock,
    );
    let core = Rc::new(Core::new(
        shard,
        shared.clone(),
        to_shard,
        reply_tx,
        ring.clone(),
    ));

    for (_, stream) in from_peers.streams() {
        glommio::spawn_local(serve_requests(core.clone(), stream)).detach();
    }
    for (_, stream) in reply_rx.streams() {
        glommio::spawn_local(serve_replies(core.clone(), stream)).detach();
    }
    glommio::spawn_local(sweep(core.clone())).detach();
    glommio::spawn_local(core.clone().flush_outbox()).detach();
    if let Some(ring) = ring {
        glommio::spawn_local(ring.clone().drive()).detach();
        glommio::spawn_local(ring.clone().submit_parked()).detach();
        glommio::spawn_local(ring.watch_deadlines()).detach();
    }

    shared
        .listeners
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(listener.raw_fd());
    let _ = startup.send(Startup::Ready);

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
            Err(e) => {
                // EMFILE and the like: log, back off briefly, keep serving.
                warn!(error = %e, "accept failed");
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    // Keep serving replies in flight until the process exits.
    futures_lite::future::pending::<()>().await;
    Ok(())
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

async fn sweep(core: Rc<Core>) {
    loop {
        glommio::timer::sleep(SWEEP_EVERY).await;
        core.shard.borrow_mut().tick(SWEEP_BUDGET);
    }
}
