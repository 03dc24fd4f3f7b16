#!/usr/bin/python3
"""python-memcached (`import memcache`) against the server on 127.0.0.1:$MC_PORT.

Environment (set by tests/clients/run.sh):
  MC_PORT        server port (required)
  MC_AUTH        "TOKEN PROJECT CACHE" sent first as `set oauth`; empty = no auth
  MC_AUTH_OTHER  credentials for a second cache: checks tenant isolation
  MC_BAD_AUTH    refused credentials, ";"-separated (secure mode): checks the
                 refusals over a raw socket and through python-memcached
  MC_PREFIX      prefix for this run's keys
Prints one line per check; exits 1 if any failed.
"""
import os
import socket
import sys
import time

import memcache

PORT = int(os.environ["MC_PORT"])
AUTH = os.environ.get("MC_AUTH", "")
AUTH_OTHER = os.environ.get("MC_AUTH_OTHER", "")
BAD_AUTH = os.environ.get("MC_BAD_AUTH", "")
P = os.environ.get("MC_PREFIX", "pymc-")
ADDR = "127.0.0.1:%d" % PORT
failures = 0


def check(name, got, want):
    global failures
    if got == want:
        print("ok   python-memcached: %s" % name)
    else:
        failures += 1
        print("FAIL python-memcached: %s: expected %r, got %r" % (name, want, got))


def client(auth):
    mc = memcache.Client([ADDR], debug=1, cache_cas=True)
    if auth:
        check("auth: set oauth '%s'" % auth, mc.set("oauth", auth), True)
    return mc


# The IronCache seed example (docs/memcache), checked instead of printed.
token, project_id, cache_name = (AUTH or "token project cache").split(" ")
mc = memcache.Client([ADDR], debug=1, cache_cas=True)
if AUTH:
    check("seed: set oauth", mc.set("oauth", token + " " + project_id + " " + cache_name), True)
check("seed: set abc 123", mc.set("abc", "123"), True)
check("seed: get abc", mc.get("abc"), "123")
check("seed: incr abc", mc.incr("abc"), 124)
check("seed: get abc after incr", mc.get("abc"), "124")
check("seed: set this-value time=3", mc.set("this-value", "disappears after 3 seconds", time=3), True)
check("seed: get this-value at once", mc.get("this-value"), "disappears after 3 seconds")
check("expiry: set exptime 2", mc.set(P + "exp", "short-lived", time=2), True)
check("expiry: get at once", mc.get(P + "exp"), "short-lived")
seeded_at = time.monotonic()

# set / get
check("set", mc.set(P + "k1", "v1"), True)
check("get", mc.get(P + "k1"), "v1")
check("get missing", mc.get(P + "missing"), None)
check("set int (flags)", mc.set(P + "n", 42), True)
check("get int (flags)", mc.get(P + "n"), 42)

# multi-get
check("set k2", mc.set(P + "k2", "v2"), True)
check("get_multi", mc.get_multi([P + "k1", P + "k2", P + "missing"]), {P + "k1": "v1", P + "k2": "v2"})

# incr / decr
check("set counter", mc.set(P + "ctr", "10"), True)
check("incr", mc.incr(P + "ctr"), 11)
check("incr 5", mc.incr(P + "ctr", 5), 16)
check("decr 20 floors at 0", mc.decr(P + "ctr", 20), 0)
check("incr missing", mc.incr(P + "nocounter"), None)

# cas: gets, then cas with the token; a stale token is refused
check("cas: set", mc.set(P + "cas", "one"), True)
check("cas: gets", mc.gets(P + "cas"), "one")
stale = dict(mc.cas_ids)
check("cas: cas with current token", mc.cas(P + "cas", "two"), True)
check("cas: get", mc.get(P + "cas"), "two")
mc.cas_ids = stale
check("cas: cas with stale token refused", mc.cas(P + "cas", "three"), False)
check("cas: value kept", mc.get(P + "cas"), "two")

# delete
check("delete", mc.delete(P + "k1"), 1)
check("get after delete", mc.get(P + "k1"), None)

# isolation: the same key in two caches holds two values
if AUTH_OTHER:
    other = client(AUTH_OTHER)
    check("isolation: set in cache A", mc.set(P + "iso", "from-A"), True)
    check("isolation: set in cache B", other.set(P + "iso", "from-B"), True)
    check("isolation: get in cache A", mc.get(P + "iso"), "from-A")
    check("isolation: get in cache B", other.get(P + "iso"), "from-B")
    check("isolation: B does not see A's k2", other.get(P + "k2"), None)
    other.disconnect_all()


def raw(lines):
    """Sends raw protocol bytes on a fresh connection; returns the first reply line."""
    s = socket.create_connection(("127.0.0.1", PORT), timeout=5)
    s.sendall(lines)
    buf = b""
    while b"\r\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            break
        buf += chunk
    s.close()
    return buf.split(b"\r\n")[0].decode(errors="replace")


if BAD_AUTH:
    for creds in BAD_AUTH.split(";"):
        data = creds.encode()
        check("secure: refused: set oauth '%s'" % creds,
              raw(b"set oauth 0 0 %d\r\n%s\r\n" % (len(data), data)),
              "CLIENT_ERROR authentication failed")
        bad = memcache.Client([ADDR], debug=0)
        check("secure: python-memcached set oauth '%s' fails" % creds, bool(bad.set("oauth", creds)), False)
        bad.disconnect_all()
    check("secure: get before auth refused", raw(b"get abc\r\n"), "CLIENT_ERROR authentication required")
    check("secure: set before auth refused", raw(b"set abc 0 0 1\r\nx\r\n"), "CLIENT_ERROR authentication required")
    check("secure: version before auth works", raw(b"version\r\n").startswith("VERSION "), True)

time.sleep(max(0.0, 4.0 - (time.monotonic() - seeded_at)))
check("seed: get this-value after 4 s", mc.get("this-value"), None)
check("expiry: get after 4 s", mc.get(P + "exp"), None)
mc.disconnect_all()

sys.exit(1 if failures else 0)
