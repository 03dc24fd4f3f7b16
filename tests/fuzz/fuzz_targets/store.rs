//! Bytes decoded into store commands on a small store, with the invariants
//! of `store_check::check_store` (issue 12: no background step may trip
//! over crafted values or reused segments).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../src/store_check.rs"]
mod store_check;

fuzz_target!(|data: &[u8]| store_check::check_store(data));
