#!/usr/bin/python3
"""pymemcache against the server on 127.0.0.1:$MC_PORT.

Environment: MC_PORT (required), MC_AUTH ("TOKEN PROJECT CACHE", sent first as
`set oauth`; empty = no auth), MC_AUTH_OTHER (second cache: isolation check),
MC_PREFIX (key prefix). Prints one line per check; exits 1 if any failed.
"""
import os
import sys
import time

from pymemcache.client.base import Client

PORT = int(os.environ["MC_PORT"])
AUTH = os.environ.get("MC_AUTH", "")
AUTH_OTHER = os.environ.get("MC_AUTH_OTHER", "")
P = os.environ.get("MC_PREFIX", "pymemcache-")
failures = 0


def check(name, got, want):
    global failures
    if got == want:
        print("ok   pymemcache: %s" % name)
    else:
        failures += 1
        print("FAIL pymemcache: %s: expected %r, got %r" % (name, want, got))


def client(auth):
    # default_noreply=False: every storage command waits for its reply.
    c = Client(("127.0.0.1", PORT), connect_timeout=5, timeout=5, default_noreply=False)
    if auth:
        check("auth: set oauth '%s'" % auth, c.set("oauth", auth), True)
    return c


mc = client(AUTH)

check("expiry: set exptime 2", mc.set(P + "exp", b"short-lived", expire=2), True)
check("expiry: get at once", mc.get(P + "exp"), b"short-lived")
set_at = time.monotonic()

check("set", mc.set(P + "k1", b"v1"), True)
check("get", mc.get(P + "k1"), b"v1")
check("get missing", mc.get(P + "missing"), None)
check("set k2", mc.set(P + "k2", b"v2"), True)
check("get_many", mc.get_many([P + "k1", P + "k2", P + "missing"]), {P + "k1": b"v1", P + "k2": b"v2"})

check("set counter", mc.set(P + "ctr", b"10"), True)
check("incr", mc.incr(P + "ctr", 1), 11)
check("incr 5", mc.incr(P + "ctr", 5), 16)
check("decr 20 floors at 0", mc.decr(P + "ctr", 20), 0)
check("incr missing", mc.incr(P + "nocounter", 1), None)

check("cas: set", mc.set(P + "cas", b"one"), True)
value, token = mc.gets(P + "cas")
check("cas: gets value", value, b"one")
check("cas: gets token is a number", token is not None and token.isdigit(), True)
check("cas: cas with current token", mc.cas(P + "cas", b"two", token), True)
check("cas: cas with stale token", mc.cas(P + "cas", b"three", token), False)
check("cas: cas on missing key", mc.cas(P + "nocas", b"x", token), None)
check("cas: get", mc.get(P + "cas"), b"two")
many = mc.gets_many([P + "cas", P + "k2"])
check("cas: gets_many values", {k: v[0] for k, v in many.items()}, {P + "cas": b"two", P + "k2": b"v2"})

check("delete", mc.delete(P + "k1", noreply=False), True)
check("delete missing", mc.delete(P + "k1", noreply=False), False)
check("get after delete", mc.get(P + "k1"), None)

check("add new", mc.add(P + "add", b"a", noreply=False), True)
check("add existing", mc.add(P + "add", b"b", noreply=False), False)
check("append", mc.append(P + "add", b"z", noreply=False), True)
check("get after append", mc.get(P + "add"), b"az")

if AUTH_OTHER:
    other = client(AUTH_OTHER)
    check("isolation: set in cache A", mc.set(P + "iso", b"from-A"), True)
    check("isolation: set in cache B", other.set(P + "iso", b"from-B"), True)
    check("isolation: get in cache A", mc.get(P + "iso"), b"from-A")
    check("isolation: get in cache B", other.get(P + "iso"), b"from-B")
    other.close()

time.sleep(max(0.0, 3.0 - (time.monotonic() - set_at)))
check("expiry: get after 3 s", mc.get(P + "exp"), None)
check("version", mc.version().startswith(b"1."), True)
mc.close()

sys.exit(1 if failures else 0)
