//! ferrocache: a multi-tenant, thread-per-core cache server that speaks the
//! memcached text protocol.
//!
//! Three layers, one direction:
//! - [`protocol`]: syntax. Bytes to a [`protocol::Request`], a
//!   [`protocol::Response`] to bytes. No I/O, no storage.
//! - [`shard`] over [`store`]: meaning. A shard executes a request against its
//!   store and composes the reply. No I/O.
//! - [`transport`]: sockets, routing to the owning shard, and the
//!   order of replies. No grammar.
//!
//! Beside them: [`session`] (the session gate and the IronCache handshake,
//! no I/O), [`tenancy`] (grants, credentials, the namespace interner),
//! [`keyspace`] (namespace ids, the seeded key hash, the
//! owning shard), [`stats`] (counters), [`clock`] (exptime rules), [`config`] (flags),
//! [`host`] (start-up checks of the host: io_uring, limits, the port),
//! [`quotas`] (the per-project quotas file),
//! [`auth_throttle`] (failed logins per address), [`logthrottle`]
//! (rate-limited warnings) and [`metrics`] (Prometheus metrics for the
//! operator, served off the cores).
//!
//! The path of one request:
//!
//! ```text
//!  client ──TCP──▶ core A: listener (SO_REUSEPORT); Shared::place picks the
//!                   core C serving the fewest (A itself on a tie); if C ≠ A,
//!                   ToShard::Adopt(fd) ──request mesh──▶ core C
//!                  core C: transport::connection
//!                   │  read into the connection's buffer
//!                   │  protocol::parse ─▶ Request (borrows the buffer)
//!                   │  session gate: unauthenticated? only `set`/`ms oauth`, version, quit
//!                   │  keyspace: shard = hash(namespace id, key) high bits mod N
//!                   ├─ shard == C ─▶ shard.execute ─▶ store ─▶ reply appended to `out`
//!                   └─ shard == S ─▶ a record into the connection's batch for S: the
//!                          key's hash, then a get's kind and key, or the request's
//!                          bytes; its place in `out` remembered
//!   end of read:  each batch joins core C's outbox for S (one Part per connection)
//!   core C's flusher, after the connections woken with it ran:
//!                 one ToShard::Batch per S ──request mesh──▶ core S
//!                          core S: read each record (parse the bytes ones),
//!                          shard.execute each, one buffer of replies
//!                 ◀──reply mesh── FromShard::Batch, shared by its parts' connections;
//!                          each splices its replies into their places
//!                 one write of `out` ──TCP──▶ client (replies in request order)
//! ```
//!
//! A panic anywhere is fatal by design ([`install_panic_policy`]): shards
//! depend on each other through the meshes, so a core that died would leave
//! the others waiting on it. We log the panic and exit non-zero, so a
//! supervisor restarts a whole, healthy server instead of a half-alive one.

pub mod auth_throttle;
pub mod clock;
pub mod config;
pub mod host;
pub mod keyspace;
pub mod logthrottle;
pub mod metrics;
pub mod protocol;
pub mod quotas;
pub mod session;
pub mod shard;
pub mod stats;
pub mod store;
pub mod tenancy;
pub mod transport;

/// Exit status after a panic (EX_SOFTWARE).
pub const PANIC_EXIT_CODE: i32 = 70;

/// Makes any panic, on any core, log and end the process with
/// [`PANIC_EXIT_CODE`].
pub fn install_panic_policy() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let thread = std::thread::current();
        tracing::error!(
            thread = thread.name().unwrap_or("?"),
            "panic: {info}; exiting so a supervisor can restart a whole server"
        );
        default(info);
        std::process::exit(PANIC_EXIT_CODE);
    }));
}
