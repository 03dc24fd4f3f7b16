#!/usr/bin/env bash
# TLS side by side: ferrocache --cores 1 --tls-listen against memcached -t 1 -Z,
# same certificate (ECDSA P-256, made here), same load, same run, with
# memtier_benchmark --tls in text mode. Each server is pinned to SERVER_CPU
# and memtier to LOADGEN_CPU; the servers take turns.
#
#   flock /work/.bench.lock bash benches/tls.sh
#   DURATION=5 bash benches/tls.sh
#
# Reports per server: ops/s at pipeline 1 and 16 over TLS, server CPU µs per
# operation, full handshakes/s (memtier reconnecting after every request),
# and for ferrocache the same loads over plain TCP (what TLS costs). Then the
# ratios ferrocache/memcached, and idle memory per TLS connection.
#
# Environment: DURATION (s per load, 10), CONNS (50), KEYS (100000),
# VALUE_SIZE (100), RATIO (1:10), SERVER_CPU (0), LOADGEN_CPU (1),
# HANDSHAKE_CONNS (20), IDLE_CONNS (1000, for memory), FERROCACHE_BIN.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-10}"
CONNS="${CONNS:-50}"
KEYS="${KEYS:-100000}"
VALUE_SIZE="${VALUE_SIZE:-100}"
RATIO="${RATIO:-1:10}"
SERVER_CPU="${SERVER_CPU:-0}"
LOADGEN_CPU="${LOADGEN_CPU:-1}"
HANDSHAKE_CONNS="${HANDSHAKE_CONNS:-20}"
IDLE_CONNS="${IDLE_CONNS:-1000}"
FERROCACHE_BIN="${FERROCACHE_BIN:-target/release/ferrocache}"

if ! command -v memtier_benchmark >/dev/null; then
  if [ -x ../shared/tools/build-memtier.sh ] || [ -f ../shared/tools/build-memtier.sh ]; then
    bash ../shared/tools/build-memtier.sh >&2
  else
    echo "memtier_benchmark is missing and ../shared/tools/build-memtier.sh is not here" >&2
    exit 1
  fi
fi
[ -x "$FERROCACHE_BIN" ] || cargo build --release >&2
command -v memcached >/dev/null || { echo "memcached is missing (tests/install-deps.sh)" >&2; exit 1; }

TMP="$(mktemp -d -t ferrocache-tls-bench.XXXXXX)"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT
chmod 755 "$TMP"

# The certificate both servers use.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -keyout "$TMP/key.pem" -out "$TMP/cert.pem" -subj /CN=localhost \
  -addext subjectAltName=DNS:localhost,IP:127.0.0.1 2>/dev/null
chmod 644 "$TMP"/*.pem

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 1 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "port $1 never opened" >&2
  return 1
}

FC_PLAIN="$(free_port)"
FC_TLS="$(free_port)"
MC_TLS="$(free_port)"
taskset -c "$SERVER_CPU" "$FERROCACHE_BIN" --cores 1 --memory-mb 1024 \
  --listen "127.0.0.1:$FC_PLAIN" --tls-listen "127.0.0.1:$FC_TLS" \
  --tls-cert "$TMP/cert.pem" --tls-key "$TMP/key.pem" >"$TMP/fc.out" 2>"$TMP/fc.err" &
FC_PID=$!
PIDS+=("$FC_PID")
taskset -c "$SERVER_CPU" memcached -u nobody -U 0 -t 1 -m 1024 -c 4096 -l 127.0.0.1 -p "$MC_TLS" \
  -Z -o "ssl_chain_cert=$TMP/cert.pem,ssl_key=$TMP/key.pem" >"$TMP/mc.out" 2>&1 &
MC_PID=$!
PIDS+=("$MC_PID")
wait_port "$FC_TLS"
wait_port "$MC_TLS"

CLK_TCK="$(getconf CLK_TCK)"
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
calc() { awk "BEGIN { printf \"%.${2:-2}f\", $1 }"; }

# memtier PORT TLS(0|1) OUT ARGS...: one run; prints nothing, leaves OUT.json.
memtier() {
  local port=$1 tls=$2 out=$3
  shift 3
  local tls_args=()
  [ "$tls" = 1 ] && tls_args=(--tls --tls-skip-verify --sni localhost)
  taskset -c "$LOADGEN_CPU" memtier_benchmark -s 127.0.0.1 -p "$port" \
    --protocol=memcache_text "${tls_args[@]}" -t 1 --hide-histogram \
    --key-maximum="$KEYS" -d "$VALUE_SIZE" --json-out-file="$out.json" "$@" >"$out.log" 2>&1
}
# The total operations per second and operations of a memtier JSON report.
ops_per_sec() { python3 -c 'import json,sys; t=json.load(open(sys.argv[1]))["ALL STATS"]["Totals"]; print("%.0f" % t["Ops/sec"])' "$1.json"; }
total_ops() { python3 -c 'import json,sys; t=json.load(open(sys.argv[1]))["ALL STATS"]["Totals"]; print("%.0f" % t["Count"] if "Count" in t else "")' "$1.json"; }

declare -A OPS CPU
# measure NAME PORT TLS LABEL ARGS...: ops/s and server CPU µs per operation.
measure() {
  local name=$1 port=$2 tls=$3 label=$4 pid out t0 t1 ops count
  shift 4
  pid=$FC_PID
  [ "$name" = mc ] && pid=$MC_PID
  out="$TMP/$name-$label"
  echo "load: $name $label for ${DURATION}s" >&2
  t0="$(cpu_ticks "$pid")"
  memtier "$port" "$tls" "$out" --test-time="$DURATION" "$@"
  t1="$(cpu_ticks "$pid")"
  ops="$(ops_per_sec "$out")"
  count="$(total_ops "$out")"
  [ -n "$count" ] || count="$(calc "$ops * $DURATION" 0)"
  OPS[$name,$label]=$ops
  CPU[$name,$label]="$(calc "($t1 - $t0) / $CLK_TCK * 1000000 / $count" 2)"
}

for s in fc mc; do
  port=$FC_TLS
  [ $s = mc ] && port=$MC_TLS
  echo "prefilling $s with $KEYS keys over TLS..." >&2
  memtier "$port" 1 "$TMP/prefill-$s" -c 1 --ratio=1:0 --key-pattern=P:P --requests=allkeys
done

LOAD=(-c "$CONNS" --ratio="$RATIO" --key-pattern=R:R)
for p in 1 16; do
  measure fc "$FC_TLS" 1 "tls-p$p" "${LOAD[@]}" --pipeline="$p"
  measure mc "$MC_TLS" 1 "tls-p$p" "${LOAD[@]}" --pipeline="$p"
  measure fc "$FC_PLAIN" 0 "plain-p$p" "${LOAD[@]}" --pipeline="$p"
done
# Full handshakes: every connection reconnects after each request.
HS=(-c "$HANDSHAKE_CONNS" --ratio=0:1 --key-pattern=R:R --reconnect-interval=1)
measure fc "$FC_TLS" 1 handshakes "${HS[@]}"
measure mc "$MC_TLS" 1 handshakes "${HS[@]}"

# Memory per idle TLS connection (handshake done, one request served): the
# server's RSS before and after opening IDLE_CONNS of them.
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
idle_memory() {
  local port=$1 pid=$2 tls=$3
  python3 - "$port" "$pid" "$tls" "$IDLE_CONNS" <<'PY'
import socket, ssl, sys
port, pid, tls, n = int(sys.argv[1]), sys.argv[2], sys.argv[3] == "1", int(sys.argv[4])
def rss():
    for line in open("/proc/%s/status" % pid):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
before = rss()
conns = []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    if tls:
        s = ctx.wrap_socket(s, server_hostname="localhost")
    s.sendall(b"version\r\n")
    s.recv(100)
    conns.append(s)
after = rss()
print("%.1f" % ((after - before) / n))
PY
}
ulimit -n 8192 2>/dev/null || true
MEM_FC_TLS="$(idle_memory "$FC_TLS" "$FC_PID" 1)"
MEM_FC_PLAIN="$(idle_memory "$FC_PLAIN" "$FC_PID" 0)"
MEM_MC_TLS="$(idle_memory "$MC_TLS" "$MC_PID" 1)"

echo
echo "TLS, one server core each, memtier_benchmark --tls -t 1 -c $CONNS, ${DURATION}s per load, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs:"
printf '  %-22s %14s %14s %14s %10s\n' load "ferrocache TLS" "memcached -Z" "ferrocache TCP" "fc/mc"
for label in tls-p1 tls-p16 handshakes; do
  plain=""
  [ "$label" != handshakes ] && plain="${OPS[fc,plain-${label#tls-}]}"
  printf '  %-22s %14s %14s %14s %10s\n' "$label ops/s" "${OPS[fc,$label]}" "${OPS[mc,$label]}" "$plain" \
    "$(calc "${OPS[fc,$label]} / ${OPS[mc,$label]}")"
  plain=""
  [ "$label" != handshakes ] && plain="${CPU[fc,plain-${label#tls-}]}"
  printf '  %-22s %14s %14s %14s %10s\n' "$label CPU us/op" "${CPU[fc,$label]}" "${CPU[mc,$label]}" "$plain" \
    "$(calc "${CPU[fc,$label]} / ${CPU[mc,$label]}")"
done
printf '  %-22s %14s %14s %14s\n' "idle conn KiB (RSS)" "$MEM_FC_TLS" "$MEM_MC_TLS" "$MEM_FC_PLAIN"
echo "  targets: p16 ops >= 3x memcached -Z; p1 ops >= 1x and CPU/op <= 1x; handshakes/s >= 1x"
# Kernel TLS: whether this kernel offers the "tls" upper-layer protocol that
# kTLS needs. ferrocache keeps TLS in rustls; docs/PERFORMANCE.md says why.
KTLS="$(python3 - <<'PY'
import socket
l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen()
c = socket.create_connection(l.getsockname()); s, _ = l.accept()
try:
    s.setsockopt(socket.IPPROTO_TCP, 31, b"tls")  # TCP_ULP
    print("available (TCP_ULP tls accepted)")
except OSError as e:
    print("not available here (TCP_ULP tls: %s)" % e.strerror)
PY
)"
echo "  kernel TLS: $KTLS"
