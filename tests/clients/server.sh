# shellcheck shell=bash
# Sourced by tests/memccapable.sh and tests/clients/run.sh: start and stop a
# server under test on 127.0.0.1 without fixed ports or fixed sleeps.
#
#   server_start NAME [EXTRA_ARGS...]   sets SERVER_PID, SERVER_PORT, SERVER_VERSION
#   server_stop                         stops the server started last (idempotent)
#   server_stop_all                     for the EXIT trap
#
# By default the server is `$FERROCACHE --cores 2 --listen 127.0.0.1:0
# EXTRA_ARGS $FERROCACHE_ARGS`, and readiness is its one stdout line
# `ferrocache <version> listening on <ip:port> ...`, which also gives the port.
#
# SERVER_CMD overrides the command, to check the test programs themselves
# against a reference server. It must contain @PORT@, which is replaced by a
# free port; readiness is then a bounded wait for the port to accept, e.g.
#   SERVER_CMD='memcached -U 0 -u nobody -t 2 -l 127.0.0.1 -p @PORT@'
# EXTRA_ARGS are not passed to an overriding command.

: "${FERROCACHE:=target/release/ferrocache}"
: "${SERVER_READY_TIMEOUT:=30}"   # seconds
# Extra ferrocache flags for every server, e.g. FERROCACHE_ARGS="--socket-io glommio".
: "${FERROCACHE_ARGS:=}"
SERVER_WORKDIR="${SERVER_WORKDIR:-$(mktemp -d -t ferrocache-test.XXXXXX)}"
SERVER_PIDS=()

# The python that has Debian's client packages (a pyenv shim may shadow it).
PY=/usr/bin/python3

_free_port() {
    "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Asks the server for `version` over a raw socket; prints the reply line.
_server_version() {
    "$PY" - "$1" <<'EOF'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
s.sendall(b"version\r\n")
buf = b""
while not buf.endswith(b"\r\n"):
    chunk = s.recv(4096)
    if not chunk:
        break
    buf += chunk
print(buf.decode(errors="replace").strip())
EOF
}

_port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

server_start() {
    local name=$1
    shift
    local out="$SERVER_WORKDIR/$name.stdout" err="$SERVER_WORKDIR/$name.stderr"
    local deadline=$((SECONDS + SERVER_READY_TIMEOUT))
    SERVER_PORT=""
    SERVER_VERSION=""
    if [ -n "${SERVER_CMD:-}" ]; then
        case "$SERVER_CMD" in
            *@PORT@*) ;;
            *) echo "SERVER_CMD must contain @PORT@: $SERVER_CMD" >&2; return 1 ;;
        esac
        local port
        port=$(_free_port)
        bash -c "exec ${SERVER_CMD//@PORT@/$port}" >"$out" 2>"$err" </dev/null &
        SERVER_PID=$!
        SERVER_PIDS+=("$SERVER_PID")
        until _port_open "$port"; do
            if ! kill -0 "$SERVER_PID" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
                echo "server '$name' ($SERVER_CMD) did not start; stderr:" >&2
                cat "$err" >&2
                return 1
            fi
            sleep 0.05
        done
        SERVER_PORT=$port
    else
        if [ ! -x "$FERROCACHE" ]; then
            echo "no server binary at $FERROCACHE (run: cargo build --release)" >&2
            return 1
        fi
        # shellcheck disable=SC2086 # FERROCACHE_ARGS is a list of flags
        "$FERROCACHE" --cores 2 --listen 127.0.0.1:0 "$@" $FERROCACHE_ARGS >"$out" 2>"$err" </dev/null &
        SERVER_PID=$!
        SERVER_PIDS+=("$SERVER_PID")
        local line=""
        while :; do
            line=$(grep -m1 '^ferrocache .* listening on ' "$out" 2>/dev/null || true)
            [ -n "$line" ] && break
            if ! kill -0 "$SERVER_PID" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
                echo "server '$name' ($FERROCACHE $*) printed no ready line; stdout:" >&2
                cat "$out" >&2
                echo "stderr:" >&2
                tail -n 40 "$err" >&2
                return 1
            fi
            sleep 0.05
        done
        SERVER_PORT=$(sed -n 's/.* listening on [^ ]*:\([0-9][0-9]*\).*/\1/p' <<<"$line")
        if [ -z "$SERVER_PORT" ]; then
            echo "cannot read the port from the ready line: $line" >&2
            return 1
        fi
    fi
    SERVER_VERSION=$(_server_version "$SERVER_PORT")
    echo "server '$name' ready on 127.0.0.1:$SERVER_PORT (pid $SERVER_PID): $SERVER_VERSION"
}

# True when the running server is ferrocache (by its version reply), so the
# ferrocache-only checks (auth, binary-protocol refusal) apply.
server_is_ferrocache() {
    case "$SERVER_VERSION" in *ferrocache*) return 0 ;; *) return 1 ;; esac
}

_stop_pid() {
    local pid=$1
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

server_stop() {
    [ -n "${SERVER_PID:-}" ] && _stop_pid "$SERVER_PID"
    SERVER_PID=""
}

server_stop_all() {
    local pid
    for pid in "${SERVER_PIDS[@]}"; do
        _stop_pid "$pid"
    done
    SERVER_PIDS=()
    if [ -z "${KEEP_SERVER_WORKDIR:-}" ]; then
        rm -rf "$SERVER_WORKDIR"
    fi
}
