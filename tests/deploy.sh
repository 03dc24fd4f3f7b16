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

echo "deploy: make install and the systemd unit OK"
