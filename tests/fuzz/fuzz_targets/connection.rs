//! A whole client byte stream, split into requests and executed on a
//! `Shard`, checked against a model (`ferrocache_fuzz::check_connection`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ferrocache_fuzz::check_connection(data));
