//! ferrocache: a multi-tenant, thread-per-core memcached (text protocol) server.
pub mod store;
