//! The store's test-only code: never compiled into the server.
//!
//! - `model`: the reference model, the contract written plainly;
//! - `semantics`: the contract's behaviours as one suite, run against the
//!   model and the real store alike;
//! - `props`: property tests, the real store against the model;
//! - `store`: what only the real store has (segments, eviction, memory);
//! - `fair`: fair sharing and quotas in the real store.

mod fair;
mod model;
mod props;
mod semantics;
mod store;
