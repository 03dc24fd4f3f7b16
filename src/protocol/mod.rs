//! Syntax of memcached's text protocol: the classic commands and the meta
//! commands ([`meta`]).
//!
//! Owns the wire format: bytes in become a [`Request`] ([`parse`]), and a
//! [`Response`] becomes bytes out ([`compose`]). It never does I/O, never
//! touches a store, and knows nothing about shards or tenants. Every memcached
//! reply and error string lives here, in [`reply`], and nowhere else.

pub mod binary;
pub mod meta;
pub mod number;
pub mod parse;
pub mod reply;
pub mod request;

pub use parse::parse;
pub use reply::{compose, ErrorReply, Response};
pub use request::{
    ArithKind, GetKind, Keyed, Keys, Limits, Meta, MetaCommand, MetaFlags, MetaSetMode, Parsed,
    ReplyBound, Request, StatsGroup, Storage, StoreKind,
};

/// memcached's key limit (KEY_MAX_LENGTH).
pub const MAX_KEY_LEN: usize = 250;
