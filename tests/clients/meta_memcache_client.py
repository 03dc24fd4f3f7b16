#!/usr/bin/python3
"""meta-memcache (PyPI; meta protocol only) against 127.0.0.1:$MC_PORT.

Environment: MC_PORT (required), MC_AUTH ("TOKEN PROJECT CACHE"; empty = no
auth), MC_AUTH_OTHER (second cache: isolation check), MC_BAD_AUTH (secure
mode: ';'-separated values that must be refused), MC_PREFIX (key prefix).
Prints one line per check; exits 1 if any failed.

meta-memcache pools its connections, and the IronCache handshake binds one
connection, so the handshake goes in the pool's socket factory: every new
socket sends `ms oauth <len>` with the credentials and must read `HD`.
"""
import os
import socket
import sys
import time

from meta_memcache import (
    CacheClient,
    Key,
    LeasePolicy,
    ServerAddress,
    SetMode,
    StalePolicy,
)
from meta_memcache.connection.pool import ConnectionPool

PORT = int(os.environ["MC_PORT"])
AUTH = os.environ.get("MC_AUTH", "")
AUTH_OTHER = os.environ.get("MC_AUTH_OTHER", "")
BAD_AUTH = os.environ.get("MC_BAD_AUTH", "")
# Unique per run, so a rerun against the same server starts clean.
P = "%s%d-" % (os.environ.get("MC_PREFIX", "meta-memcache-"), os.getpid())
failures = 0


def check(name, got, want):
    global failures
    if got == want:
        print("ok   meta-memcache: %s" % name)
    else:
        failures += 1
        print("FAIL meta-memcache: %s: expected %r, got %r" % (name, want, got))


def handshake(sock, auth):
    """`ms oauth` on a fresh socket; returns the server's reply line."""
    value = auth.encode()
    sock.sendall(b"ms oauth %d\r\n%s\r\n" % (len(value), value))
    reply = b""
    while not reply.endswith(b"\r\n"):
        chunk = sock.recv(4096)
        if not chunk:
            break
        reply += chunk
    return reply


def client(auth):
    def socket_factory():
        s = socket.create_connection(("127.0.0.1", PORT), timeout=5)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if auth:
            reply = handshake(s, auth)
            if reply != b"HD\r\n":
                raise ConnectionError("handshake refused: %r" % reply)
        return s

    def pool_factory(server):
        return ConnectionPool(
            server=str(server),
            socket_factory_fn=socket_factory,
            initial_pool_size=1,
            max_pool_size=3,
        )

    return CacheClient.cache_client_from_servers(
        servers=[ServerAddress(host="127.0.0.1", port=PORT)],
        connection_pool_factory_fn=pool_factory,
    )


mc = client(AUTH)

check("set", mc.set(P + "k1", b"v1", ttl=0), True)
check("get", mc.get(P + "k1"), b"v1")
check("get missing", mc.get(P + "missing"), None)
check("str values round-trip", (mc.set(P + "s", "text", ttl=0), mc.get(P + "s")), (True, "text"))
check("add new", mc.set(P + "add", b"a", ttl=0, set_mode=SetMode.ADD), True)
check("add existing", mc.set(P + "add", b"b", ttl=0, set_mode=SetMode.ADD), False)
check("replace existing", mc.set(P + "add", b"c", ttl=0, set_mode=SetMode.REPLACE), True)
check("replace missing", mc.set(P + "norep", b"c", ttl=0, set_mode=SetMode.REPLACE), False)
check("append", mc.set(P + "add", b"z", ttl=0, set_mode=SetMode.APPEND), True)
check("prepend", mc.set(P + "add", b"y", ttl=0, set_mode=SetMode.PREPEND), True)
check("get after append/prepend", mc.get(P + "add"), b"ycz")

# meta-memcache 4.3 reads cas tokens as 32-bit numbers (its parser returns
# None past 4294967295). ferrocache's uniques are sealed 62-bit values (they
# must not reveal other tenants' writes), so this client cannot use cas
# against it: a documented limitation, pinned here. cas itself is covered by
# Dalli 5, pymemcache, pylibmc and the byte-exact tests.
value, cas = mc.get_cas(P + "k1")
check("get_cas value", value, b"v1")
check("get_cas token: a 62-bit unique reads as None (client limitation)", cas, None)
check("set after get_cas", mc.set(P + "k1", b"v2", ttl=0), True)
check("get after set", mc.get(P + "k1"), b"v2")

check("delete", mc.delete(P + "k1"), True)
check("delete missing", mc.delete(P + "k1"), False)
check("get after delete", mc.get(P + "k1"), None)
check("invalidate missing", mc.invalidate(P + "k1"), True)

check("delta_initialize on a miss", mc.delta_initialize_and_get(P + "ctr", 1, 10, 0), 10)
check("incr", mc.delta_and_get(P + "ctr", 5), 15)
check("decr", mc.delta_and_get(P + "ctr", -3), 12)
check("decr floors at 0", mc.delta_and_get(P + "ctr", -100), 0)
check("incr missing", mc.delta(P + "noctr", 1), False)

check("set with ttl", mc.set(P + "ttl", b"x", ttl=100), True)
check("touch", mc.touch(P + "ttl", 200), True)
check("touch missing", mc.touch(P + "nottl", 200), False)
check("get and touch (gat)", mc.get(P + "ttl", touch_ttl=300), b"x")

# Many keys: with several cores they live on different shards.
many = {P + "many-%d" % i: b"value-%d" % i for i in range(200)}
for k, v in many.items():
    mc.set(k, v, ttl=0)
got = mc.multi_get(list(many) + [P + "missing"])
check("multi_get over shards", {k.key: v for k, v in got.items() if v is not None}, many)
check("multi_get miss", got[Key(P + "missing")], None)
for k in list(many)[:100]:
    mc.delete(k)
got = mc.multi_get(list(many))
check("deletes left the rest", sum(v is not None for v in got.values()), 100)

# get_or_lease: the first miss wins the lease (N: vivify, W), as a fetch.
lease = LeasePolicy(ttl=30, miss_retries=1, miss_retry_wait=0.01, wait_backoff_factor=1, miss_max_retry_wait=0.01)
value, cas = mc.get_or_lease_cas(P + "lease", lease)
# The winner sees a miss (its cas token is unreadable to this client, above).
check("lease: the first miss wins", (value, cas), (None, None))
check("lease: the winner fills it", mc.set(P + "lease", b"filled", ttl=0, cas_token=cas), True)
check("lease: a later get sees it", mc.get_or_lease(P + "lease", lease), b"filled")

# Stale-while-revalidate: md I marks stale, a get says so and hands out the win.
stale = StalePolicy(mark_stale_on_deletion_ttl=30)
mc.set(P + "stale", b"old", ttl=0)
check("stale: delete marks stale", mc.delete(P + "stale", stale_policy=stale), True)
# The first reader wins the recache (W): a miss to it; later readers (Z)
# are served the stale value while it recaches.
check("stale: the first reader must recache", mc.get(P + "stale"), None)
check("stale: later readers get the old value", mc.get(P + "stale"), b"old")

if AUTH_OTHER:
    other = client(AUTH_OTHER)
    check("isolation: other cache misses", other.get(P + "add"), None)
    other.set(P + "add", b"other", ttl=0)
    check("isolation: other cache has its own", other.get(P + "add"), b"other")
    check("isolation: first cache unchanged", mc.get(P + "add"), b"ycz")

for bad in filter(None, BAD_AUTH.split(";")):
    s = socket.create_connection(("127.0.0.1", PORT), timeout=5)
    check("bad auth '%s' refused" % bad, handshake(s, bad), b"CLIENT_ERROR authentication failed\r\n")
    s.sendall(b"mg %sadd v\r\n" % P.encode())
    check("unauthenticated mg after '%s'" % bad, s.recv(4096), b"CLIENT_ERROR authentication required\r\n")
    s.close()

# meta-memcache has no flush or stats; its meta no-op round trip is all.
print("ok   meta-memcache: all checks passed" if failures == 0 else "FAIL meta-memcache: %d checks failed" % failures)
sys.exit(1 if failures else 0)
