#!/usr/bin/python3
"""pymemcache over TLS (`tls_context`) against 127.0.0.1:$MC_TLS_PORT.

Environment: MC_TLS_PORT (required), MC_CA (the CA that signed the server's
certificate), MC_AUTH ("TOKEN PROJECT CACHE" sent first as `set oauth`;
empty = no auth), MC_CLIENT_CERT and MC_CLIENT_KEY (a client certificate),
MC_CERT_AUTH ("- PROJECT CACHE": authenticate with the certificate only),
MC_CERT_DENIED ("- PROJECT CACHE" the certificate is not granted),
MC_PREFIX (key prefix). Prints one line per check; exits 1 if any failed.
"""
import os
import ssl
import sys

from pymemcache.client.base import Client
from pymemcache.exceptions import MemcacheClientError

PORT = int(os.environ["MC_TLS_PORT"])
CA = os.environ["MC_CA"]
AUTH = os.environ.get("MC_AUTH", "")
CERT, KEY = os.environ.get("MC_CLIENT_CERT", ""), os.environ.get("MC_CLIENT_KEY", "")
CERT_AUTH = os.environ.get("MC_CERT_AUTH", "")
CERT_DENIED = os.environ.get("MC_CERT_DENIED", "")
P = os.environ.get("MC_PREFIX", "pymemcache-tls-")
failures = 0


def check(name, got, want):
    global failures
    if got == want:
        print("ok   pymemcache tls: %s" % name)
    else:
        failures += 1
        print("FAIL pymemcache tls: %s: expected %r, got %r" % (name, want, got))


def context(with_cert):
    ctx = ssl.create_default_context(cafile=CA)
    ctx.check_hostname = True
    if with_cert:
        ctx.load_cert_chain(CERT, KEY)
    return ctx


def client(auth, with_cert=False):
    c = Client(("localhost", PORT), connect_timeout=5, timeout=5,
               default_noreply=False, tls_context=context(with_cert))
    if auth:
        check("auth: set oauth '%s'" % auth.split(" ", 1)[-1], c.set("oauth", auth), True)
    return c


mc = client(AUTH)
check("set", mc.set(P + "k1", b"v1"), True)
check("get", mc.get(P + "k1"), b"v1")
check("get missing", mc.get(P + "missing"), None)
big = bytes(range(256)) * 2000  # 512000 bytes: many TLS records
check("set 500 KB", mc.set(P + "big", big), True)
check("get 500 KB", mc.get(P + "big"), big)
check("get_many", mc.get_many([P + "k1", P + "missing"]), {P + "k1": b"v1"})
check("incr", (mc.set(P + "ctr", b"1"), mc.incr(P + "ctr", 41))[1], 42)
check("delete", mc.delete(P + "k1"), True)
check("get deleted", mc.get(P + "k1"), None)
mc.close()

if CERT_AUTH:
    # The certificate is the credential: `-` as the token, nothing secret sent.
    alice = client(CERT_AUTH, with_cert=True)
    check("cert auth: set", alice.set(P + "cert", b"by-cert"), True)
    check("cert auth: get", alice.get(P + "cert"), b"by-cert")
    alice.close()
    # Same certificate, a project it is not granted: fails as a wrong token does.
    denied = client("", with_cert=True)
    try:
        denied.set("oauth", CERT_DENIED)
        check("cert auth: ungranted project refused", "accepted", "refused")
    except MemcacheClientError as e:
        check("cert auth: ungranted project refused", "authentication failed" in str(e), True)
    # Without a certificate, `-` is refused.
    anon = client("")
    try:
        anon.set("oauth", CERT_AUTH)
        check("cert auth: no certificate refused", "accepted", "refused")
    except MemcacheClientError as e:
        check("cert auth: no certificate refused", "authentication failed" in str(e), True)

# A client that does not trust the server's CA refuses the handshake.
try:
    bad = Client(("localhost", PORT), connect_timeout=5, timeout=5,
                 tls_context=ssl.create_default_context())
    bad.get(P + "x")
    check("untrusted server certificate refused", "connected", "refused")
except ssl.SSLError:
    check("untrusted server certificate refused", True, True)

sys.exit(1 if failures else 0)
