#!/usr/bin/python3
"""pymemcache against the server on 127.0.0.1:$MC_PORT.

Environment: MC_PORT (required), MC_AUTH ("TOKEN PROJECT CACHE", sent first as
`set oauth`; empty = no auth), MC_AUTH_OTHER (second cache: isolation check),
MC_BAD_AUTH (set in secure mode only), MC_PREFIX (key prefix).
Prints one line per check; exits 1 if any failed.
"""
import os
import sys
import threading
import time

from pymemcache.client.base import Client
from pymemcache.exceptions import MemcacheClientError, MemcacheServerError

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

# Many keys at once: with several cores they live on different shards.
many = {P + "many-%d" % i: b"value-%d" % i for i in range(200)}
check("set_many 200 keys: none failed", mc.set_many(many), [])
check("get_many 200 keys", mc.get_many(list(many)), many)
check("delete_many 200 keys", mc.delete_many(list(many)), True)
check("get_many after delete_many", mc.get_many(list(many)), {})

# A 2 MB multi-get reply: more than the server buffers before writing.
wide = {P + "wide-%d" % i: bytes([65 + i % 26]) * 20480 for i in range(100)}
check("set_many 100 x 20 KiB", mc.set_many(wide), [])
check("get_many 100 x 20 KiB (2 MB reply)", mc.get_many(list(wide)) == wide, True)
check("gets_many 100 x 20 KiB", {k: v[0] for k, v in mc.gets_many(list(wide)).items()} == wide, True)
mc.delete_many(list(wide))

# Pipelined noreply sets, then one get: replies stay in order.
for i in range(500):
    mc.set(P + "pipe", b"%d" % i, noreply=True)
check("500 noreply sets, then get sees the last", mc.get(P + "pipe"), b"499")

big = bytes(range(256)) * 2048  # 512 KiB, every byte value
check("set 512 KiB value", mc.set(P + "big", big), True)
check("get 512 KiB value", mc.get(P + "big"), big)
check("touch", mc.touch(P + "add", 100, noreply=False), True)
check("touch missing", mc.touch(P + "nokey", 100, noreply=False), False)
check("noreply set, then get", (mc.set(P + "nr", b"q", noreply=True), mc.get(P + "nr")), (True, b"q"))


def worker(i, results):
    """A client of its own: in its own cache where caches are isolated."""
    creds = ""
    if AUTH:
        token, project, cache = AUTH.split(" ")
        creds = "%s %s %s" % (token, project, cache + "-t%d" % i if AUTH_OTHER else cache)
    c = Client(("127.0.0.1", PORT), connect_timeout=5, timeout=5, default_noreply=False)
    ok = not creds or c.set("oauth", creds)
    key = (P + "shared-%d") if AUTH_OTHER else (P + "t%d-%%d" % i)
    for n in range(100):
        ok = ok and c.set(key % n, b"%d-%d" % (i, n)) and c.get(key % n) == b"%d-%d" % (i, n)
    results[i] = bool(ok)
    c.close()


results = {}
threads = [threading.Thread(target=worker, args=(i, results)) for i in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join(30)
check("4 concurrent clients x 100 set+get" + (" (same keys, own caches)" if AUTH_OTHER else ""),
      results, {0: True, 1: True, 2: True, 3: True})

if AUTH_OTHER:
    other = client(AUTH_OTHER)
    check("isolation: set in cache A", mc.set(P + "iso", b"from-A"), True)
    check("isolation: set in cache B", other.set(P + "iso", b"from-B"), True)
    check("isolation: get in cache A", mc.get(P + "iso"), b"from-A")
    check("isolation: get in cache B", other.get(P + "iso"), b"from-B")
    other.close()

# A value over the item size limit, on a client of its own: pymemcache closes
# its socket on any error reply and silently reconnects for the next command,
# and the new connection has not sent `set oauth`.
hc = client(AUTH)
try:
    got = hc.set(P + "huge", b"x" * (2 * 1024 * 1024))
except MemcacheServerError as e:
    got = "MemcacheServerError: %s" % e.args[0].decode()
check("set 2 MiB value refused", got, "MemcacheServerError: object too large for cache")
try:
    got = hc.get(P + "huge")
except MemcacheClientError as e:
    got = "MemcacheClientError: %s" % e.args[0].decode()
if os.environ.get("MC_BAD_AUTH"):
    check("after the error pymemcache reconnected unauthenticated",
          got, "MemcacheClientError: authentication required")
else:
    check("get after refused 2 MiB set", got, None)
hc.close()
check("big value intact", mc.get(P + "big") == big, True)

time.sleep(max(0.0, 3.0 - (time.monotonic() - set_at)))
check("expiry: get after 3 s", mc.get(P + "exp"), None)
check("version", mc.version().startswith(b"1."), True)
mc.close()

sys.exit(1 if failures else 0)
