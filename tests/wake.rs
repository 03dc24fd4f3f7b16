//! The idle and wake path between cores, against the real binary: a core
//! that sleeps (in its own ring, where its timers also end the sleep, or
//! through glommio on glommio's sockets) is woken by every request another
//! core forwards to it, an idle core never parks through glommio while it
//! has a ring, and shutdown with forwarded requests in flight ends cleanly.
//!
//! A lost wake-up shows here as a reply that never comes (the connection's
//! 10-second read timeout fails the test) or as a round trip far slower
//! than the gap it followed.

mod common;

use std::time::{Duration, Instant};

use common::{stat_num, stats_of, Conn, Server};

/// Keys enough that about half belong to the other core, whichever core
/// serves the connection.
const KEYS: usize = 64;

fn set(conn: &mut Conn, key: &str, value: &str) {
    let req = format!("set {key} 0 0 {}\r\n{value}\r\n", value.len());
    conn.roundtrip(req.as_bytes(), b"STORED\r\n");
}

fn get(conn: &mut Conn, key: &str, value: &str) -> Duration {
    let start = Instant::now();
    let expected = format!("VALUE {key} 0 {}\r\n{value}\r\nEND\r\n", value.len());
    conn.roundtrip(format!("get {key}\r\n").as_bytes(), expected.as_bytes());
    start.elapsed()
}

/// Requests one at a time with gaps that let the cores sleep, from none to
/// 20 ms. Every reply comes, and the slowest round trip stays far below the
/// read timeout. Returns the server's `stats`: idle polls and those that
/// found work, sleeps in the ring and parks through glommio.
fn every_forwarded_request_wakes_its_owner(extra: &[&str]) -> [u64; 4] {
    let server = Server::start(extra);
    let mut conn = server.connect();
    for k in 0..KEYS {
        set(&mut conn, &format!("wake:{k}"), &format!("v{k}"));
    }
    let mut slowest = Duration::ZERO;
    for round in 0..4 {
        let gap = match round {
            0 => Duration::ZERO,
            1 => Duration::from_micros(300),
            2 => Duration::from_millis(3),
            _ => Duration::from_millis(20),
        };
        for k in 0..KEYS {
            std::thread::sleep(gap);
            slowest = slowest.max(get(&mut conn, &format!("wake:{k}"), &format!("v{k}")));
        }
    }
    // A sleeping owner that nobody woke would answer only when something
    // else woke it (its 250 ms deadline check, at best).
    assert!(
        slowest < Duration::from_millis(200),
        "a round trip took {slowest:?}: a core slept through its message"
    );
    let stats = stats_of(&mut conn, "");
    ["idle_polls", "idle_poll_hits", "idle_sleeps", "idle_parks"].map(|s| stat_num(&stats, s))
}

#[test]
fn every_forwarded_request_wakes_its_owner_on_the_socket_ring() {
    // The default polls 50 µs, gated: one round trip at a time keeps each
    // core's thread on its CPU far less than 90% of the time (as its
    // thread CPU clock reads it), so no core ever polls.
    let [polls, _, sleeps, parks] = every_forwarded_request_wakes_its_owner(&[]);
    assert_eq!(polls, 0, "the gate opened on an idle server");
    // Each core slept between requests, in its ring: the 20 ms gaps are
    // ten times what its sleep there once lasted before it parked.
    assert!(sleeps >= 64, "only {sleeps} sleeps in the ring");
    assert_eq!(parks, 0, "a core parked through glommio");
}

#[test]
fn every_forwarded_request_wakes_its_owner_after_a_spin() {
    // The spin polls the ring's flag and the mesh before the sleep: it
    // catches messages that come within it, and must not lose those that
    // come after it gave up. One round trip at a time never makes a core
    // busy enough for the default gate, so it polls whenever idle here.
    let [polls, hits, ..] =
        every_forwarded_request_wakes_its_owner(&["--spin-us", "100", "--spin-busy-pct", "0"]);
    // Every idle stretch began with a poll, and the gaps outlast most.
    assert!(polls >= 64, "only {polls} polls");
    assert!(hits <= polls);
}

#[test]
fn every_forwarded_request_wakes_its_owner_on_glommio_sockets() {
    // No socket ring: the bell is an eventfd glommio reads, and the core
    // sleeps only through glommio, which these counters do not count.
    let [_, _, sleeps, parks] =
        every_forwarded_request_wakes_its_owner(&["--socket-io", "glommio"]);
    assert_eq!((sleeps, parks), (0, 0));
}

/// An idle server's cores sleep in their rings and wake only for their own
/// timers, which are on the ring: the deadline check every 250 ms ends
/// each sleep long before the in-ring sleep's bound (1 s), after which a
/// core would park through glommio (a `membarrier` each time). Were the
/// timers glommio's, the ring could not see them, and every sleep would
/// last the full second and end in a park.
#[test]
fn an_idle_core_sleeps_in_its_ring_and_wakes_for_its_timers() {
    let server = Server::start(&[]);
    let mut conn = server.connect();
    let before = stats_of(&mut conn, "");
    std::thread::sleep(Duration::from_millis(2500));
    let after = stats_of(&mut conn, "");
    let delta = |s: &str| stat_num(&after, s) - stat_num(&before, s);
    assert_eq!(
        delta("idle_parks"),
        0,
        "an idle core parked through glommio"
    );
    // Two cores, each woken four times a second by its deadline check.
    let sleeps = delta("idle_sleeps");
    assert!(
        (12..=200).contains(&sleeps),
        "{sleeps} sleeps in 2.5 s: the timers did not end them, or something woke the cores \
         far more often than the timers"
    );
}

/// Many connections at once, each pipelining gets of keys on both cores:
/// the queues between the cores fill and drain, and every reply arrives in
/// order.
#[test]
fn pipelined_forwarding_from_many_connections_loses_nothing() {
    let server = Server::start(&[]);
    let mut conn = server.connect();
    for k in 0..KEYS {
        set(&mut conn, &format!("many:{k}"), &format!("value-{k}"));
    }
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let mut conn = server.connect();
            std::thread::spawn(move || {
                let mut req = Vec::new();
                let mut expected = Vec::new();
                for i in 0..200 {
                    let k = (i * 7 + t) % KEYS;
                    req.extend_from_slice(format!("get many:{k}\r\n").as_bytes());
                    let v = format!("value-{k}");
                    expected.extend_from_slice(
                        format!("VALUE many:{k} 0 {}\r\n{v}\r\nEND\r\n", v.len()).as_bytes(),
                    );
                }
                for _ in 0..20 {
                    conn.roundtrip(&req, &expected);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("a client thread failed");
    }
}

/// SIGTERM while connections have thousands of forwarded requests queued
/// and unread: the server exits, with status 0, within its grace period.
#[test]
fn shutdown_with_forwarded_requests_in_flight_exits_cleanly() {
    let mut server = Server::start(&[]);
    let mut conn = server.connect();
    for k in 0..KEYS {
        set(&mut conn, &format!("bye:{k}"), &"x".repeat(100));
    }
    let mut busy: Vec<Conn> = (0..4).map(|_| server.connect()).collect();
    let mut req = Vec::new();
    for i in 0..2000 {
        req.extend_from_slice(format!("get bye:{}\r\n", i % KEYS).as_bytes());
    }
    for c in &mut busy {
        c.send(&req);
    }
    server.signal(15);
    let status = server
        .wait_exit(Duration::from_secs(10))
        .expect("the server did not exit after SIGTERM");
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
}
