//! Command lines over 2048 bytes, against the real binary: each case of
//! tests/common/long_lines.rs, sent whole on a fresh connection, gets
//! memcached 1.6.18's reply byte for byte, and the connection stays open
//! exactly where memcached's does (a following `mn` answers `MN`).

mod common;

use common::long_lines::{cases, End, LINE_TOO_LONG};
use common::{show, Server};

#[test]
fn whole_long_lines_are_answered_as_memcached_does() {
    let server = Server::start(&[]);
    let mut failures = Vec::new();
    for case in cases() {
        let mut c = server.connect();
        // A server that closes early may not take the whole request.
        c.try_send(&case.request);
        let want = match case.end {
            End::Closed => LINE_TOO_LONG.to_vec(),
            End::Open | End::HangUp => case.reply.clone(),
        };
        let got = c.read_up_to(want.len());
        let open = match case.end {
            End::Open => c.try_send(b"mn\r\n") && c.read_up_to(4) == b"MN\r\n",
            End::Closed | End::HangUp => !c.is_closed(),
        };
        if got != want || open != (case.end == End::Open) {
            failures.push(format!(
                "{}: request {}\n  want: {} ({})\n  got:  {} (open: {open})",
                case.name,
                show(&case.request),
                show(&want),
                if case.end == End::Open {
                    "then open"
                } else {
                    "then closed"
                },
                show(&got),
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Past 2048 bytes with no newline a line (not a multiget) closes, as in
/// memcached: a long line is served only when its newline comes with it.
#[test]
fn a_long_line_cut_before_its_newline_closes() {
    let server = Server::start(&[]);
    let mut c = server.connect();
    let line = format!("set {} 0 0 1\r\n", "k".repeat(2100));
    c.send(&line.as_bytes()[..2049]);
    assert_eq!(c.read_exact_n(LINE_TOO_LONG.len()), LINE_TOO_LONG);
    assert!(c.is_closed());
}
