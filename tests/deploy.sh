#!/usr/bin/env bash
# `make install` into a scratch DESTDIR, then the installed systemd unit
# checked offline with `systemd-analyze verify` (no running systemd needed:
# CI has none) and for the settings the Deploy guide promises.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "deploy: FAIL: $*" >&2; exit 1; }

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
make --no-print-directory install DESTDIR="$stage" PREFIX=/usr >/dev/null

for f in usr/bin/ferrocache usr/share/man/man1/ferrocache.1 \
         usr/lib/systemd/system/ferrocache.service usr/lib/sysusers.d/ferrocache.conf; do
    [ -s "$stage/$f" ] || fail "make install did not install $f"
done
grep -q '^\.TH ferrocache 1' "$stage/usr/share/man/man1/ferrocache.1" || fail "man page has no .TH header"
grep -qF -- 'max\-connections' "$stage/usr/share/man/man1/ferrocache.1" || fail "man page lacks the flags"

unit="$stage/usr/lib/systemd/system/ferrocache.service"
grep -q '^ExecStart=/usr/bin/ferrocache ' "$unit" || fail "ExecStart= does not point at PREFIX/bin"

# The policy the guide promises.
want() { grep -qE "$1" "$unit" || fail "unit lacks $1"; }
want '^User=ferrocache$'
want '^ExecReload=/bin/kill -HUP \$MAINPID$'
want '^LimitNOFILE=[0-9]+$'
want '^LimitMEMLOCK=[0-9]+[KMG]?$'
want '^SystemCallFilter=.*io_uring_setup'
want '^SystemCallFilter=.*io_uring_enter'
want '^SystemCallFilter=.*io_uring_register'
want '^RestartPreventExitStatus=78$'
if grep -q '^AmbientCapabilities=' "$unit"; then fail "unit grants AmbientCapabilities"; fi
nofile=$(sed -n 's/^LimitNOFILE=//p' "$unit")
# --max-connections 4096 plus the reserve at 64 cores (32 + 64 * 76).
[ "$nofile" -ge $((4096 + 32 + 64 * 76)) ] || fail "LimitNOFILE=$nofile is short of the default's need"

if ! command -v systemd-analyze >/dev/null; then
    fail "systemd-analyze is missing (tests/install-deps.sh installs systemd)"
fi
# verify resolves ExecStart=, so point it at the staged binary. It exits 0
# on unknown keys or system call groups, only warning: any output fails.
check="$stage/check/ferrocache.service"
mkdir -p "$(dirname "$check")"
sed "s|^ExecStart=/usr/bin/ferrocache|ExecStart=$stage/usr/bin/ferrocache|" "$unit" > "$check"
out=$(SYSTEMD_LOG_LEVEL=warning systemd-analyze verify --man=no "$check" 2>&1) \
    || fail "systemd-analyze verify: $out"
[ -z "$out" ] || fail "systemd-analyze verify warned: $out"

# A unit with a typo must fail this check, or the check proves nothing.
sed 's/^LimitNOFILE=/LimitNOFIL=/' "$check" > "$check.typo"
mv "$check.typo" "$check"
out=$(systemd-analyze verify --man=no "$check" 2>&1 || true)
[ -n "$out" ] || fail "systemd-analyze verify did not notice a misspelt key"

# deploy/seccomp-io_uring.json must allow every system call the server
# makes: trace a start, some traffic on both socket paths, SIGHUP and SIGTERM.
profile=deploy/seccomp-io_uring.json
python3 -c 'import json,sys; p=json.load(open(sys.argv[1])); assert p["defaultAction"]=="SCMP_ACT_ERRNO"' "$profile" \
    || fail "$profile is not a deny-by-default seccomp profile"
if command -v strace >/dev/null; then
    for io in uring glommio; do
        trace="$stage/strace.$io"
        printf 'secret-token-0001 shop\n' > "$stage/tokens"
        strace -f -qq -o "$trace" ./target/release/ferrocache --listen 127.0.0.1:0 --cores 2 \
            --socket-io "$io" --tokens "$stage/tokens" > "$stage/ready.$io" 2>/dev/null &
        pid=$!
        for _ in $(seq 100); do [ -s "$stage/ready.$io" ] && break; sleep 0.1; done
        port=$(sed -n 's/.*listening on [^ ]*:\([0-9]*\) .*/\1/p' "$stage/ready.$io")
        [ -n "$port" ] || fail "server under strace did not start ($io)"
        python3 -c '
import socket, sys
for _ in range(3):
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
    s.sendall(b"set oauth 0 0 27\r\nsecret-token-0001 shop cach\r\nset a 0 0 1\r\nx\r\nget a\r\nstats\r\n")
    s.settimeout(2); s.recv(65536); s.close()
' "$port"
        server=$(pgrep -P "$pid" ferrocache || echo "$pid")
        kill -HUP "$server"; sleep 0.3; kill -TERM "$server"; wait "$pid" || true
        used=$(grep -oE '^[0-9]+ +[a-z0-9_]+\(' "$trace" | awk '{print $2}' | tr -d '(' | sort -u)
        for call in $used; do
            grep -q "\"$call\"" "$profile" || fail "$profile does not allow $call ($io)"
        done
    done
else
    fail "strace is missing (tests/install-deps.sh installs it)"
fi

echo "deploy: make install, the systemd unit and the seccomp profile OK"
