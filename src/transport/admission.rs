//! Admitting a connection: counted on the core that serves it (for
//! hand-over balancing) and in the process's open connections, or refused
//! with one error line past `--max-connections`, as memcached does.

use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::core::Core;
use super::socket::Socket;
use crate::protocol::ErrorReply;

/// How long a refusal (too many connections) may wait to be written.
const REFUSAL_WRITE: Duration = Duration::from_secs(1);

/// A connection admitted on a core, counted until it is dropped.
pub struct Admission {
    _placed: Placed,
    _guard: ConnectionGuard,
}

/// Admits `socket` on `core`, or refuses it (and closes it) past
/// `--max-connections`.
pub async fn admit(core: &Rc<Core>, socket: Socket) -> Option<(Socket, Admission)> {
    let placed = Placed(core.clone());
    match ConnectionGuard::admit(core) {
        Some(guard) => Some((
            socket,
            Admission {
                _placed: placed,
                _guard: guard,
            },
        )),
        None => {
            refuse(socket, core).await;
            None
        }
    }
}

/// A connection counted on this core by `Shared::place`, until it closes.
struct Placed(Rc<Core>);

impl Drop for Placed {
    fn drop(&mut self) {
        self.0.shared.unplace(self.0.index);
    }
}

/// Past --max-connections: one error line, then close (as memcached does).
async fn refuse(mut socket: Socket, core: &Core) {
    crate::throttled_warn!(
        max = core.shared.config.max_connections,
        "refusing connection: too many open connections"
    );
    let _ = socket
        .write_all(
            ErrorReply::TooManyConnections.line().to_vec(),
            Some(REFUSAL_WRITE),
        )
        .await;
    socket.close().await;
}

/// Keeps a connection counted in `open_connections` and the core's counters.
struct ConnectionGuard {
    core: Rc<Core>,
}

impl ConnectionGuard {
    /// Counts a new connection, or refuses it past `--max-connections`.
    fn admit(core: &Rc<Core>) -> Option<ConnectionGuard> {
        let shared = &core.shared;
        let open = shared.open_connections.fetch_add(1, Ordering::Relaxed);
        if open >= shared.config.max_connections {
            shared.open_connections.fetch_sub(1, Ordering::Relaxed);
            core.conns.borrow_mut().rejected_connections += 1;
            return None;
        }
        let mut c = core.conns.borrow_mut();
        c.curr_connections += 1;
        c.total_connections += 1;
        Some(ConnectionGuard { core: core.clone() })
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.core
            .shared
            .open_connections
            .fetch_sub(1, Ordering::Relaxed);
        self.core.conns.borrow_mut().curr_connections -= 1;
    }
}
