#!/usr/bin/python3
"""pylibmc (libmemcached, text protocol) against the server on 127.0.0.1:$MC_PORT.

Environment: MC_PORT (required), MC_AUTH ("TOKEN PROJECT CACHE", sent first as
`set oauth`; empty = no auth), MC_AUTH_OTHER (second cache: isolation check),
MC_BINARY (refused: ferrocache, served: a reference memcached), MC_PREFIX
(key prefix). Prints one line per check; exits 1 if any failed.
"""
import os
import sys
import time

import pylibmc

PORT = int(os.environ["MC_PORT"])
AUTH = os.environ.get("MC_AUTH", "")
AUTH_OTHER = os.environ.get("MC_AUTH_OTHER", "")
P = os.environ.get("MC_PREFIX", "pylibmc-")
failures = 0


def check(name, got, want):
    global failures
    if got == want:
        print("ok   pylibmc: %s" % name)
    else:
        failures += 1
        print("FAIL pylibmc: %s: expected %r, got %r" % (name, want, got))


def attempt(fn, *args):
    """Calls a pylibmc method; a libmemcached error becomes "raised <class>"."""
    try:
        return fn(*args)
    except pylibmc.Error as e:
        print("     (%s raised %s: %s)" % (fn.__name__, type(e).__name__, e))
        return "raised " + type(e).__name__


def client(auth):
    # binary=False: the text protocol. cas=True so gets returns CAS tokens.
    c = pylibmc.Client(["127.0.0.1:%d" % PORT], binary=False, behaviors={"cas": True, "tcp_nodelay": True})
    if auth:
        check("auth: set oauth '%s'" % auth, attempt(c.set, "oauth", auth), True)
    return c


mc = client(AUTH)

check("expiry: set exptime 2", attempt(mc.set, P + "exp", b"short-lived", 2), True)
check("expiry: get at once", attempt(mc.get, P + "exp"), b"short-lived")
set_at = time.monotonic()

check("set", attempt(mc.set, P + "k1", b"v1"), True)
check("get", attempt(mc.get, P + "k1"), b"v1")
check("get missing", attempt(mc.get, P + "missing"), None)
check("set str", attempt(mc.set, P + "s", "text"), True)
check("get str (flags)", attempt(mc.get, P + "s"), "text")
check("set k2", attempt(mc.set, P + "k2", b"v2"), True)
check("get_multi", attempt(mc.get_multi, [P + "k1", P + "k2", P + "missing"]), {P + "k1": b"v1", P + "k2": b"v2"})

check("set counter", attempt(mc.set, P + "ctr", b"10"), True)
check("incr", attempt(mc.incr, P + "ctr"), 11)
check("incr 5", attempt(mc.incr, P + "ctr", 5), 16)
check("decr 20 floors at 0", attempt(mc.decr, P + "ctr", 20), 0)
check("incr missing", attempt(mc.incr, P + "nocounter"), "raised NotFound")

check("cas: set", attempt(mc.set, P + "cas", b"one"), True)
got = attempt(mc.gets, P + "cas")
check("cas: gets value", got[0] if isinstance(got, tuple) else got, b"one")
token = got[1] if isinstance(got, tuple) else 0
check("cas: cas with current token", attempt(mc.cas, P + "cas", b"two", token), True)
check("cas: cas with stale token", attempt(mc.cas, P + "cas", b"three", token), False)
check("cas: get", attempt(mc.get, P + "cas"), b"two")

check("delete", attempt(mc.delete, P + "k1"), True)
check("delete missing", attempt(mc.delete, P + "k1"), False)
check("get after delete", attempt(mc.get, P + "k1"), None)

if AUTH_OTHER:
    other = client(AUTH_OTHER)
    check("isolation: set in cache A", attempt(mc.set, P + "iso", b"from-A"), True)
    check("isolation: set in cache B", attempt(other.set, P + "iso", b"from-B"), True)
    check("isolation: get in cache A", attempt(mc.get, P + "iso"), b"from-A")
    check("isolation: get in cache B", attempt(other.get, P + "iso"), b"from-B")
    other.disconnect_all()

# The same library configured for the binary protocol (MC_BINARY as for Dalli).
binary = pylibmc.Client(["127.0.0.1:%d" % PORT], binary=True)
if os.environ.get("MC_BINARY") == "refused":
    # libmemcached maps the 0x0081 refusal to a failed read on writes, and
    # reports reads as plain misses: the refusal shows only on writes.
    check("binary=True: set fails", attempt(binary.set, P + "bin", b"x"), "raised UnknownReadFailure")
    check("binary=True: get is a miss", attempt(binary.get, P + "bin"), None)
elif os.environ.get("MC_BINARY") == "served":
    check("binary=True: set", attempt(binary.set, P + "bin", b"x"), True)
    check("binary=True: get", attempt(binary.get, P + "bin"), b"x")
binary.disconnect_all()

time.sleep(max(0.0, 3.0 - (time.monotonic() - set_at)))
check("expiry: get after 3 s", attempt(mc.get, P + "exp"), None)
mc.disconnect_all()

sys.exit(1 if failures else 0)
