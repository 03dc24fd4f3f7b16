#!/usr/bin/env bash
# Runs libmemcached's memccapable peer suite (ASCII protocol only) against a
# server of our own: memccapable runs flush_all, so it never touches a shared
# one. Passes only if every one of the suite's tests reports [pass].
#
#   bash tests/memccapable.sh
#   SERVER_CMD='memcached -U 0 -u nobody -t 2 -l 127.0.0.1 -p @PORT@' bash tests/memccapable.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# memccapable 1.1.x has 27 ASCII tests; fewer [pass] lines means it stopped early.
: "${MEMCCAPABLE_EXPECTED:=27}"

# shellcheck source=tests/clients/server.sh
source tests/clients/server.sh
trap server_stop_all EXIT

command -v memccapable >/dev/null || { echo "memccapable not found: run bash tests/install-deps.sh" >&2; exit 1; }

if ! server_start memccapable; then
    echo "memccapable: 0 passed, $MEMCCAPABLE_EXPECTED failed (the server did not start)"
    exit 1
fi
log="$SERVER_WORKDIR/memccapable.log"
set +e
# -t: per-I/O timeout, so a missing reply fails one test instead of hanging;
# the outer timeout bounds the whole run.
timeout 300 memccapable -a -t 10 -h 127.0.0.1 -p "$SERVER_PORT" >"$log" 2>&1
rc=$?
set -e
cat "$log"

passed=$(grep -c '\[pass\]$' "$log" || true)
failed=$(grep -c '\[FAIL\]$' "$log" || true)
skipped=$(grep -c '\[skip\]$' "$log" || true)

echo "----"
echo "memccapable (ascii) against $SERVER_VERSION:"
echo "  passed $passed of $MEMCCAPABLE_EXPECTED expected, failed $failed, skipped $skipped, exit code $rc"
if [ "$failed" -ne 0 ]; then
    echo "  failed tests:"
    grep '\[FAIL\]$' "$log" | sed 's/^/    /'
fi

ok=1
[ "$rc" -eq 0 ] || ok=0
[ "$passed" -eq "$MEMCCAPABLE_EXPECTED" ] || ok=0
[ "$failed" -eq 0 ] || ok=0
[ "$skipped" -eq 0 ] || ok=0
grep -q '^All tests passed' "$log" || ok=0
if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    echo "  the server died during the suite; its stderr:"
    tail -n 40 "$SERVER_WORKDIR/memccapable.stderr" | sed 's/^/    /'
    ok=0
fi

if [ "$ok" -eq 1 ]; then
    echo "memccapable: $passed passed, 0 failed"
    exit 0
fi
echo "memccapable: $passed passed, $((MEMCCAPABLE_EXPECTED - passed)) failed"
exit 1
