//! Transport: sockets, routing to shards, and the order of replies.
//!
//! Owns everything between the network and a shard: the executors and their
//! listeners ([`server`]), admitting a connection ([`admission`]), each
//! connection's read/route/write loop ([`connection`]) with its read buffer
//! and limits ([`framing`]) and the splicing of other shards' replies
//! ([`remote`]), the socket layer ([`socket`], [`uring`], whose idle poll [`spin_gate`] opens), TLS sessions
//! ([`tls`]), the per-core state ([`core`]) with its outgoing batches
//! ([`outbox`]) and reply slots ([`waiters`]), the mesh between cores ([`lanes`], woken through
//! [`bell`]), the messages on it ([`envelope`]) and its handlers ([`mesh`]). It has no grammar (that is
//! `protocol`) and no command meaning (that is `shard`).

pub mod admission;
pub mod bell;
pub mod connection;
pub mod core;
pub mod envelope;
pub mod framing;
pub mod lanes;
pub mod mesh;
pub mod outbox;
pub mod remote;
pub mod server;
pub mod socket;
pub mod spin_gate;
pub mod tls;
pub mod uring;
pub mod waiters;
