#!/usr/bin/env bash
# twemproxy (Debian's nutcracker) in front of two servers, with pymemcache
# driving it (tests/clients/nutcracker_client.py): two ferrocache servers in
# open mode, then two memcached servers, which checks the program itself.
# Open mode only: the proxy shares each backend connection among its
# clients, and `oauth` binds a connection (README, "Behind a proxy").
# Ends with `N passed, M failed`.
#
#   bash tests/clients/nutcracker.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

# shellcheck source=tests/clients/server.sh
source tests/clients/server.sh
trap server_stop_all EXIT

: "${CLIENT_TIMEOUT:=60}"
NUTCRACKER=/usr/sbin/nutcracker
[ -x "$NUTCRACKER" ] || { echo "no $NUTCRACKER: run bash tests/install-deps.sh" >&2; exit 1; }
passed=0
failed=0

# proxy_run LABEL PORT_A PORT_B: nutcracker over the two, then the program.
proxy_run() {
    local label=$1 a=$2 b=$3 port stats conf log pid deadline rc
    port=$(_free_port)
    stats=$(_free_port)
    conf="$SERVER_WORKDIR/nutcracker-$label.yml"
    log="$SERVER_WORKDIR/nutcracker-$label.log"
    cat >"$conf" <<EOF
pool:
  listen: 127.0.0.1:$port
  hash: fnv1a_64
  distribution: ketama
  timeout: 5000
  auto_eject_hosts: false
  servers:
   - 127.0.0.1:$a:1 backend-a
   - 127.0.0.1:$b:1 backend-b
EOF
    "$NUTCRACKER" -c "$conf" -s "$stats" -a 127.0.0.1 -o "$log" -p "$SERVER_WORKDIR/nc-$label.pid" &
    pid=$!
    SERVER_PIDS+=("$pid")
    deadline=$((SECONDS + SERVER_READY_TIMEOUT))
    until _port_open "$port"; do
        if ! kill -0 "$pid" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
            echo "FAIL nutcracker [$label] did not start; its log:"
            cat "$log"
            failed=$((failed + 1))
            return 0
        fi
        sleep 0.05
    done
    echo "=== pymemcache through nutcracker [$label] (127.0.0.1:$port) ==="
    set +e
    MC_PORT=$port MC_BACKENDS="$a,$b" MC_PREFIX="nc-$label-" \
        timeout "$CLIENT_TIMEOUT" "$PY" tests/clients/nutcracker_client.py
    rc=$?
    set -e
    if [ "$rc" -eq 0 ]; then
        passed=$((passed + 1))
    else
        echo "FAIL nutcracker [$label]: exit code $rc; the proxy's log:"
        tail -n 20 "$log"
        failed=$((failed + 1))
    fi
    _stop_pid "$pid"
}

# Two servers; each run leaves SERVER_PORT, so keep both.
backends() {
    local label=$1
    server_start "$label-a" || return 1
    port_a=$SERVER_PORT
    server_start "$label-b" || return 1
    port_b=$SERVER_PORT
}

if backends ferrocache; then
    proxy_run ferrocache "$port_a" "$port_b"
else
    failed=$((failed + 1))
fi

if SERVER_CMD='memcached -U 0 -u nobody -t 2 -l 127.0.0.1 -p @PORT@' backends memcached; then
    proxy_run memcached "$port_a" "$port_b"
else
    failed=$((failed + 1))
fi

echo "nutcracker: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
