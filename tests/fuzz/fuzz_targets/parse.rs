//! Arbitrary bytes through `protocol::parse`, with the invariants of
//! `ferrocache_fuzz::check_parse`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ferrocache_fuzz::check_parse(data));
