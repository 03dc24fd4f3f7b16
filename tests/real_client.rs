//! A real Rust client, the `memcache` crate (0.17, text protocol), against the
//! real binary on port 0: set, get, multi-get (`gets`), incr/decr, cas, delete
//! and IronCache `set oauth` authentication, each result asserted.
//!
//! `FERROCACHE_TEST_ADDR=127.0.0.1:11211` runs the same assertions against an
//! already running server instead (used to check them against memcached).

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;

use common::Server;

/// A started server (kept alive for the test) or an external one.
struct Target {
    _server: Option<Server>,
    addr: SocketAddr,
}

fn target(extra: &[&str]) -> Target {
    match std::env::var("FERROCACHE_TEST_ADDR") {
        Ok(addr) => Target {
            _server: None,
            addr: addr.parse().expect("FERROCACHE_TEST_ADDR"),
        },
        Err(_) => {
            let server = Server::start(extra);
            let addr = server.addr;
            Target {
                _server: Some(server),
                addr,
            }
        }
    }
}

/// One pooled connection, so an `oauth` set binds every later command.
fn client(t: &Target) -> memcache::Client {
    let url = format!("memcache://{}?protocol=ascii", t.addr);
    let c = memcache::Client::with_pool_size(url.as_str(), 1).expect("connect");
    c.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    c
}

/// A key prefix unique to this test and process, for runs against a shared server.
fn key(test: &str, name: &str) -> String {
    format!("real-client-{}-{test}-{name}", std::process::id())
}

#[test]
fn version_is_a_memcached_version_line() {
    let t = target(&[]);
    let c = client(&t);
    let versions = c.version().expect("version");
    assert_eq!(versions.len(), 1);
    let (_, v) = &versions[0];
    assert!(v.starts_with("1."), "version {v:?}");
}

#[test]
fn set_then_get_round_trips_value_and_flags() {
    let t = target(&[]);
    let c = client(&t);
    let k = key("set", "k");
    c.set(&k, "hello", 0).expect("set");
    assert_eq!(c.get::<String>(&k).unwrap(), Some("hello".to_string()));
    // Integers go through flags-free decimal text; bytes come back unchanged.
    c.set(&k, 42u64, 0).expect("set u64");
    assert_eq!(c.get::<u64>(&k).unwrap(), Some(42));
    let bin: &[u8] = b"a\r\nb\0c";
    c.set(&k, bin, 0).expect("set bytes with CRLF and NUL");
    assert_eq!(c.get::<Vec<u8>>(&k).unwrap(), Some(bin.to_vec()));
    // The crate keeps flags: (value, flags, cas).
    let (_, flags, _) = c.get::<(Vec<u8>, u32, Option<u64>)>(&k).unwrap().unwrap();
    assert_eq!(flags, 0);
    assert_eq!(c.get::<String>(&key("set", "missing")).unwrap(), None);
}

#[test]
fn gets_returns_only_the_keys_present() {
    let t = target(&[]);
    let c = client(&t);
    let (a, b, missing) = (
        key("multi", "a"),
        key("multi", "b"),
        key("multi", "missing"),
    );
    c.set(&a, "1", 0).unwrap();
    c.set(&b, "2", 0).unwrap();
    let got: HashMap<String, String> = c.gets(&[&a, &missing, &b]).expect("gets");
    let want: HashMap<String, String> = [(a, "1".to_string()), (b, "2".to_string())]
        .into_iter()
        .collect();
    assert_eq!(got, want);
}

#[test]
fn incr_and_decr_return_new_values() {
    let t = target(&[]);
    let c = client(&t);
    let k = key("incr", "ctr");
    c.set(&k, "10", 0).unwrap();
    assert_eq!(c.increment(&k, 1).unwrap(), 11);
    assert_eq!(c.increment(&k, 5).unwrap(), 16);
    assert_eq!(c.decrement(&k, 20).unwrap(), 0, "decr floors at 0");
    // memcached pads a shrunk number with spaces ("0 "); protocol.txt allows it.
    assert_eq!(
        c.get::<String>(&k).unwrap().as_deref().map(str::trim_end),
        Some("0")
    );
    assert!(
        c.increment(&key("incr", "missing"), 1).is_err(),
        "incr of a missing key is NOT_FOUND"
    );
}

#[test]
fn cas_succeeds_with_the_current_token_only() {
    let t = target(&[]);
    let c = client(&t);
    let k = key("cas", "k");
    c.set(&k, "one", 0).unwrap();
    let got: HashMap<String, (Vec<u8>, u32, Option<u64>)> = c.gets(&[&k]).unwrap();
    let (value, _, token) = got.get(&k).expect("gets returned the key");
    assert_eq!(value, b"one");
    let token = token.expect("gets returns a cas token");
    assert!(
        c.cas(&k, "two", 0, token).unwrap(),
        "cas with the current token stores"
    );
    assert!(
        !c.cas(&k, "three", 0, token).unwrap(),
        "cas with a stale token is EXISTS"
    );
    assert_eq!(c.get::<String>(&k).unwrap(), Some("two".to_string()));
}

#[test]
fn delete_removes_once() {
    let t = target(&[]);
    let c = client(&t);
    let k = key("delete", "k");
    c.set(&k, "v", 0).unwrap();
    assert!(c.delete(&k).unwrap(), "DELETED");
    assert!(!c.delete(&k).unwrap(), "NOT_FOUND");
    assert_eq!(c.get::<String>(&k).unwrap(), None);
}

#[test]
fn oauth_set_binds_the_connection_to_a_cache() {
    let t = target(&[]);
    let a = client(&t);
    let b = client(&t);
    a.set("oauth", "token project-rs cache-a", 0)
        .expect("auth a");
    b.set("oauth", "token project-rs cache-b", 0)
        .expect("auth b");
    let k = key("oauth", "k");
    a.set(&k, "from-a", 0).unwrap();
    b.set(&k, "from-b", 0).unwrap();
    // A reference server has one namespace, so there the caches are shared.
    let want_a = if t._server.is_none() {
        "from-b"
    } else {
        "from-a"
    };
    assert_eq!(a.get::<String>(&k).unwrap().as_deref(), Some(want_a));
    assert_eq!(b.get::<String>(&k).unwrap().as_deref(), Some("from-b"));
    // After authenticating, `oauth` is an ordinary key.
    a.set("oauth", "just a value", 0).unwrap();
    assert_eq!(
        a.get::<String>("oauth").unwrap(),
        Some("just a value".to_string())
    );
}
