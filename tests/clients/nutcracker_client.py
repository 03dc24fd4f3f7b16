#!/usr/bin/python3
"""pymemcache through twemproxy (nutcracker) on 127.0.0.1:$MC_PORT, in front
of the servers on $MC_BACKENDS (comma-separated ports), in open mode.

Checks what a proxy user relies on: every command the proxy forwards works,
keys spread over every backend, each key lives on exactly one of them (read
back directly), multi-gets fan out and come back whole, cas tokens pass
through, and a value of 500 KB survives the proxy's buffers.
Prints one line per check; exits 1 if any failed.
"""
import os
import socket
import sys

from pymemcache.client.base import Client

PORT = int(os.environ["MC_PORT"])
BACKENDS = [int(p) for p in os.environ["MC_BACKENDS"].split(",")]
P = os.environ.get("MC_PREFIX", "nutcracker-")
failures = 0


def check(name, got, want):
    global failures
    if got == want:
        print("ok   nutcracker: %s" % name)
    else:
        failures += 1
        print("FAIL nutcracker: %s: expected %r, got %r" % (name, want, got))


def direct(port, request):
    """One request straight to a backend; the reply up to END\\r\\n."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(request)
    buf = b""
    while not buf.endswith(b"END\r\n"):
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    s.close()
    return buf


mc = Client(("127.0.0.1", PORT), connect_timeout=5, timeout=10, default_noreply=False)

keys = [P + "spread-%d" % i for i in range(200)]
for i, k in enumerate(keys):
    mc.set(k, b"value-%d" % i)
got = mc.get_many(keys)
check("get_many of 200 keys through the proxy", len(got), 200)
check("get_many values", all(got[k] == b"value-%d" % i for i, k in enumerate(keys)), True)

# Each key is on exactly one backend, with the value the proxy returned.
holders = {port: 0 for port in BACKENDS}
misplaced = []
for i, k in enumerate(keys):
    found = []
    for port in BACKENDS:
        reply = direct(port, b"get " + k.encode() + b"\r\n")
        if reply != b"END\r\n":
            found.append((port, reply))
    if len(found) != 1 or not found[0][1].endswith(b"value-%d\r\nEND\r\n" % i):
        misplaced.append((k, found))
    else:
        holders[found[0][0]] += 1
check("each key on exactly one backend", misplaced[:3], [])
check("keys spread over every backend", all(n > 0 for n in holders.values()), True)
print("     (keys per backend: %s)" % holders)

check("set", mc.set(P + "k1", b"v1"), True)
check("get", mc.get(P + "k1"), b"v1")
check("get missing", mc.get(P + "missing"), None)
check("add existing", mc.add(P + "k1", b"x", noreply=False), False)
check("add new", mc.add(P + "k-add", b"a", noreply=False), True)
check("replace", mc.replace(P + "k-add", b"b", noreply=False), True)
check("replace missing", mc.replace(P + "k-none", b"b", noreply=False), False)
check("append", mc.append(P + "k-add", b"c", noreply=False), True)
check("prepend", mc.prepend(P + "k-add", b"a", noreply=False), True)
check("append result", mc.get(P + "k-add"), b"abc")

check("set counter", mc.set(P + "ctr", b"10"), True)
check("incr", mc.incr(P + "ctr", 5), 15)
check("decr floors at 0", mc.decr(P + "ctr", 20), 0)
check("incr missing", mc.incr(P + "no-ctr", 1), None)

check("cas: set", mc.set(P + "cas", b"one"), True)
value, token = mc.gets(P + "cas")
check("gets value", value, b"one")
check("cas with the current token", mc.cas(P + "cas", b"two", token), True)
check("cas with a stale token", mc.cas(P + "cas", b"three", token), False)
check("cas result", mc.get(P + "cas"), b"two")
tokens = mc.gets_many([P + "cas", P + "k1"])
check("gets_many", sorted(tokens), sorted([P + "cas", P + "k1"]))

check("touch", mc.touch(P + "k1", 100, noreply=False), True)
check("touch missing", mc.touch(P + "missing", 100, noreply=False), False)
check("delete", mc.delete(P + "k1", noreply=False), True)
check("delete again", mc.delete(P + "k1", noreply=False), False)
check("get deleted", mc.get(P + "k1"), None)

mc.set(P + "quiet", b"q", noreply=True)
check("noreply set, then get", mc.get(P + "quiet"), b"q")

big = bytes(range(256)) * 2000  # 512,000 bytes
check("set 500 KB", mc.set(P + "big", big), True)
check("get 500 KB", mc.get(P + "big") == big, True)

mc.close()
print("%d failed" % failures)
sys.exit(1 if failures else 0)
