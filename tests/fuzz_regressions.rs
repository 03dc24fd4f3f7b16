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
