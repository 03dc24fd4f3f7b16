#!/usr/bin/python3
"""Secure mode: SIGHUP re-reads the --tokens file. A grant added to the file
starts to authenticate, a grant removed stops, a connection authenticated
under the removed grant is closed at its next command, and one authenticated
under a grant that stays keeps working.

Environment (set by tests/clients/run.sh): MC_PORT, MC_SERVER_PID,
MC_TOKENS_FILE (the server's grants file; restored on exit), MC_SERVER_STDERR
(its log), MC_AUTH (a granted "TOKEN PROJECT CACHE"). Prints one line per check; exits 1 if any failed.
"""
import os
import signal
import socket
import sys
import time

PORT = int(os.environ["MC_PORT"])
PID = int(os.environ["MC_SERVER_PID"])
TOKENS = os.environ["MC_TOKENS_FILE"]
AUTH = os.environ["MC_AUTH"]
STDERR = os.environ["MC_SERVER_STDERR"]
failures = 0


def check(name, got, want):
    global failures
    if got == want:
        print("ok   tokens reload: %s" % name)
    else:
        failures += 1
        print("FAIL tokens reload: %s: expected %r, got %r" % (name, want, got))


class Conn:
    def __init__(self):
        self.s = socket.create_connection(("127.0.0.1", PORT), timeout=5)
        self.buf = b""

    def line(self, request):
        try:
            self.s.sendall(request)
            while b"\r\n" not in self.buf:
                chunk = self.s.recv(4096)
                if not chunk:
                    return "<closed>"
                self.buf += chunk
        except (ConnectionResetError, BrokenPipeError):
            return "<closed>"
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode(errors="replace")

    def auth(self, creds):
        data = creds.encode()
        return self.line(b"set oauth 0 0 %d\r\n%s\r\n" % (len(data), data))


def auth_once(creds):
    c = Conn()
    reply = c.auth(creds)
    c.s.close()
    return reply


def reload_until(creds, want, seconds=5.0):
    """SIGHUP, then poll (bounded) until auth with creds answers want."""
    os.kill(PID, signal.SIGHUP)
    deadline = time.monotonic() + seconds
    reply = auth_once(creds)
    while reply != want and time.monotonic() < deadline:
        time.sleep(0.05)
        reply = auth_once(creds)
    return reply


original = open(TOKENS).read()
token, project, cache = AUTH.split(" ")
new_creds = "tok-gamma-5555555555 project-gamma cache-a"
try:
    kept = Conn()
    check("granted token authenticates", kept.auth(AUTH), "STORED")
    check("set before reload", kept.line(b"set reload-k 0 0 1\r\nx\r\n"), "STORED")
    check("new token refused before it is granted", auth_once(new_creds), "CLIENT_ERROR authentication failed")

    with open(TOKENS, "a") as f:
        f.write("tok-gamma-5555555555 project-gamma\n")
    check("after SIGHUP the added grant authenticates", reload_until(new_creds, "STORED"), "STORED")
    staying = Conn()
    check("the added grant binds a connection", staying.auth(new_creds), "STORED")
    check("set under the added grant", staying.line(b"set reload-g 0 0 1\r\ny\r\n"), "STORED")

    # Drop the grant the other programs used.
    with open(TOKENS, "w") as f:
        f.write("".join(l for l in original.splitlines(True) if not l.startswith(token + " ")))
        f.write("tok-gamma-5555555555 project-gamma\n")
    check("after SIGHUP the removed grant is refused", reload_until(AUTH, "CLIENT_ERROR authentication failed"),
          "CLIENT_ERROR authentication failed")
    check("a connection bound by the removed grant is closed", kept.line(b"get reload-k\r\n"), "<closed>")
    kept.s.close()
    check("a connection bound by a grant that stays still works", staying.line(b"get reload-g\r\n"), "VALUE reload-g 0 1")
    staying.s.close()

    with open(TOKENS, "w") as f:
        f.write("# unreadable grants must not drop the old ones\nthis line has three words\n")
    os.kill(PID, signal.SIGHUP)
    # Wait (bounded) for the server to log that it kept the old grants.
    deadline = time.monotonic() + 5
    while "not reloaded" not in open(STDERR, errors="replace").read() and time.monotonic() < deadline:
        time.sleep(0.05)
    check("the server logged that it kept the old grants", "not reloaded" in open(STDERR, errors="replace").read(), True)
    check("a bad tokens file keeps the previous grants", auth_once(new_creds), "STORED")
finally:
    with open(TOKENS, "w") as f:
        f.write(original)
    os.kill(PID, signal.SIGHUP)

sys.exit(1 if failures else 0)
