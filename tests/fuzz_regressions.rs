//! Replays every saved fuzz input through the invariant checks the fuzz
//! targets run, so CI covers them without cargo-fuzz or nightly.
//!
//! Every file under `tests/fuzz/regressions/<target>/` must pass: seeds
//! written by hand, and any crash input a fuzz run finds (copied there from
//! `tests/fuzz/artifacts/<target>/`). An input for a bug not yet fixed gets
//! its own `#[ignore = "BUG: ..."]` test until the fix lands.

#[path = "fuzz/src/lib.rs"]
#[allow(dead_code)]
mod checks;

#[path = "fuzz/src/store_check.rs"]
mod store_check;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

fn inputs(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Runs `check` on every input in `dir`; fails naming each failing file.
fn replay(dir: &str, check: fn(&[u8])) -> usize {
    let files = inputs(dir);
    let failed: Vec<String> = files
        .iter()
        .filter(|path| {
            let data = std::fs::read(path).unwrap();
            catch_unwind(AssertUnwindSafe(|| check(&data))).is_err()
        })
        .map(|p| p.display().to_string())
        .collect();
    assert!(failed.is_empty(), "failing inputs: {failed:#?}");
    files.len()
}

#[test]
fn parse_regressions() {
    assert!(replay("tests/fuzz/regressions/parse", checks::check_parse) > 0);
}

#[test]
fn connection_regressions() {
    assert!(
        replay(
            "tests/fuzz/regressions/connection",
            checks::check_connection
        ) > 0
    );
}

#[test]
fn connection_inputs_pass_the_parse_checks_too() {
    replay("tests/fuzz/regressions/connection", checks::check_parse);
}

#[test]
fn store_regressions() {
    assert!(replay("tests/fuzz/regressions/store", store_check::check_store) > 0);
}

/// A bounded random run of the store check in every `cargo test` (about a
/// second); `make fuzz` runs the cargo-fuzz target for longer.
#[test]
fn store_check_on_random_streams() {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..1500 {
        let len = (next() % 4000) as usize;
        let data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        store_check::check_store(&data);
    }
}
