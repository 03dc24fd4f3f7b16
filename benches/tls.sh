#!/usr/bin/env bash
# TLS side by side: ferrocache --cores 1 --tls-listen against memcached -t 1 -Z,
# same certificate (ECDSA P-256, made here), same load, same run, with two
# clients in turn: memtier_benchmark --tls in text mode (what users measure
# with; OpenSSL) and the in-repo load generator with --tls (rustls on ring,
# cheaper per request, so it is less often the limit). Each server is pinned
# to SERVER_CPU and the client to LOADGEN_CPU; the servers take turns.
#
#   flock /work/.bench.lock bash benches/tls.sh
#   DURATION=5 TOOLS=loadgen bash benches/tls.sh
#
# Reports per server and client: ops/s at pipeline 1 and 16 over TLS, server
# CPU µs per operation, full handshakes/s (the client reconnecting after
# every request), and for ferrocache the same loads over plain TCP (what TLS
# costs). The loadgen part adds resumed handshakes (session tickets), server
# CPU per handshake from its handshake count, and its own CPU use (a client
# near 1.00 CPU is the limit, not the server). Then the ratios
# ferrocache/memcached against the issue's targets, and idle memory per TLS
# connection.
#
# Environment: DURATION (s per load, 10), CONNS (50), KEYS (100000),
# VALUE_SIZE (100), RATIO (1:10), SERVER_CPU (0), LOADGEN_CPU (1),
# HANDSHAKE_CONNS (20), IDLE_CONNS (1000, for memory), FERROCACHE_BIN,
# TOOLS ("memtier loadgen": which clients to run).
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
TOOLS="${TOOLS:-memtier loadgen}"
has_tool() { [[ " $TOOLS " == *" $1 "* ]]; }

if has_tool memtier && ! command -v memtier_benchmark >/dev/null; then
  bash benches/install-memtier.sh >&2 || {
    echo "memtier_benchmark is missing and could not be built" >&2
    exit 1
  }
fi
[ -x "$FERROCACHE_BIN" ] || cargo build --release >&2
if has_tool loadgen; then
  # cargo names the bench executable with a hash; its JSON messages say which.
  LOADGEN="$(cargo bench --bench loadgen --no-run --message-format=json 2>/dev/null |
    grep -o '"executable":"[^"]*loadgen-[^"]*"' | tail -1 | cut -d'"' -f4 || true)"
  [ -n "$LOADGEN" ] && [ -x "$LOADGEN" ] || { echo "cannot build the load generator (cargo bench --bench loadgen --no-run)" >&2; exit 1; }
fi
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
  # memtier's own CPU (user, system, wall seconds) goes to OUT.time.
  local TIMEFORMAT='%3U %3S %3R'
  { time taskset -c "$LOADGEN_CPU" memtier_benchmark -s 127.0.0.1 -p "$port" \
    --protocol=memcache_text "${tls_args[@]}" -t 1 --hide-histogram \
    --key-maximum="$KEYS" -d "$VALUE_SIZE" --json-out-file="$out.json" "$@" >"$out.log" 2>&1; } 2>"$out.time"
}
# The total operations per second and operations of a memtier JSON report.
ops_per_sec() { python3 -c 'import json,sys; t=json.load(open(sys.argv[1]))["ALL STATS"]["Totals"]; print("%.0f" % t["Ops/sec"])' "$1.json"; }
total_ops() { python3 -c 'import json,sys; t=json.load(open(sys.argv[1]))["ALL STATS"]["Totals"]; print("%.0f" % t["Count"] if "Count" in t else "")' "$1.json"; }

declare -A OPS CPU CLIENT
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
  CLIENT[$name,$label]="$(awk '{ printf "%.2f", ($1 + $2) / $3 }' "$out.time")"
}

if has_tool memtier; then
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
fi

# The same loads with the in-repo load generator. Server CPU is read from
# the scheduler's per-thread nanoseconds (finer than clock ticks).
cpu_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ s += $1 } END { printf "%.0f", s }'; }
field() { grep '^RESULT ' "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }
declare -A LG_OPS LG_CPU LG_CLIENT LG_HS LG_HS_CPU LG_OK
# lg NAME PORT TLS LABEL ARGS...: one loadgen run against one server; keeps
# ops/s, server CPU µs per op and per handshake, and the loadgen's CPUs.
lg() {
  local name=$1 port=$2 tls=$3 label=$4 pid out t0 t1 rc=0 ops hs
  shift 4
  pid=$FC_PID
  [ "$name" = mc ] && pid=$MC_PID
  out="$TMP/lg-$name-$label.out"
  local tls_args=()
  [ "$tls" = 1 ] && tls_args=(--tls --tls-skip-verify --tls-server-name localhost)
  echo "loadgen: $name $label" >&2
  t0="$(cpu_ns "$pid")"
  taskset -c "$LOADGEN_CPU" "$LOADGEN" --server "127.0.0.1:$port" "${tls_args[@]}" \
    --keys "$KEYS" --value-size "$VALUE_SIZE" "$@" >"$out" 2>&1 || rc=$?
  t1="$(cpu_ns "$pid")"
  if ! grep -q '^RESULT ' "$out" || [ "$rc" != 0 ]; then
    echo "  loadgen $name $label failed (exit $rc):" >&2
    tail -8 "$out" | sed 's/^/    /' >&2
    LG_OK[$name,$label]=0
  else
    LG_OK[$name,$label]=1
  fi
  grep -q '^RESULT ' "$out" || return 0
  ops="$(field "$out" ops)"
  hs="$(field "$out" handshakes)"
  LG_OPS[$name,$label]="$(field "$out" ops_per_sec)"
  LG_CLIENT[$name,$label]="$(field "$out" client_cpu)"
  LG_CPU[$name,$label]="$(calc "($t1 - $t0) / 1000 / ($ops > 0 ? $ops : 1)" 2)"
  LG_HS[$name,$label]="$(field "$out" handshakes_per_sec)"
  LG_HS_CPU[$name,$label]="$(calc "($t1 - $t0) / 1000 / ($hs > 0 ? $hs : 1)" 0)"
}
if has_tool loadgen; then
  for s in fc mc; do
    port=$FC_TLS
    [ $s = mc ] && port=$MC_TLS
    echo "prefilling $s with $KEYS loadgen keys over TLS..." >&2
    lg "$s" "$port" 1 prefill --conns 4 --prefill --requests 0
  done
  LGLOAD=(--conns "$CONNS" --ratio "$RATIO" --duration "$DURATION")
  for p in 1 16; do
    lg fc "$FC_TLS" 1 "tls-p$p" "${LGLOAD[@]}" --pipeline "$p"
    lg mc "$MC_TLS" 1 "tls-p$p" "${LGLOAD[@]}" --pipeline "$p"
    lg fc "$FC_PLAIN" 0 "plain-p$p" "${LGLOAD[@]}" --pipeline "$p"
  done
  # Handshakes: every connection is replaced after each request (a get of a
  # prefilled key), with a full handshake, then resuming from tickets.
  LGHS=(--conns "$HANDSHAKE_CONNS" --ratio 0:1 --reconnect-every 1 --duration "$DURATION")
  lg fc "$FC_TLS" 1 handshakes "${LGHS[@]}"
  lg mc "$MC_TLS" 1 handshakes "${LGHS[@]}"
  lg fc "$FC_TLS" 1 resumed "${LGHS[@]}" --tls-resume
  lg mc "$MC_TLS" 1 resumed "${LGHS[@]}" --tls-resume
fi

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
if has_tool memtier; then
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
  plain=""
  [ "$label" != handshakes ] && plain="${CLIENT[fc,plain-${label#tls-}]}"
  printf '  %-22s %14s %14s %14s\n' "$label memtier CPUs" "${CLIENT[fc,$label]}" "${CLIENT[mc,$label]}" "$plain"
done
echo "  targets: p16 ops >= 3x memcached -Z; p1 ops >= 1x and CPU/op <= 1x; handshakes/s >= 1x"
fi

# ratio A B: A/B, or n/a when either is missing or B is zero.
ratio() { if [ -n "$1" ] && [ -n "$2" ] && awk "BEGIN { exit !($2 > 0) }"; then calc "$1 / $2"; else echo n/a; fi; }
# verdict COND: met / NOT met, or n/a when a figure is missing.
verdict() { if [[ "$1" == *n/a* ]]; then echo n/a; else awk "BEGIN { print (($1) ? \"met\" : \"NOT met\") }"; fi; }
if has_tool loadgen; then
  echo
  echo "TLS, one server core each, in-repo loadgen --tls (rustls/ring) -c $CONNS, ${DURATION}s per load, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs:"
  printf '  %-28s %14s %14s %14s %8s\n' load "ferrocache TLS" "memcached -Z" "ferrocache TCP" "fc/mc"
  for label in tls-p1 tls-p16; do
    pl="plain-${label#tls-}"
    printf '  %-28s %14s %14s %14s %8s\n' "${label#tls-} ops/s" "${LG_OPS[fc,$label]:-}" "${LG_OPS[mc,$label]:-}" "${LG_OPS[fc,$pl]:-}" \
      "$(ratio "${LG_OPS[fc,$label]:-}" "${LG_OPS[mc,$label]:-}")"
    printf '  %-28s %14s %14s %14s %8s\n' "${label#tls-} server CPU us/op" "${LG_CPU[fc,$label]:-}" "${LG_CPU[mc,$label]:-}" "${LG_CPU[fc,$pl]:-}" \
      "$(ratio "${LG_CPU[fc,$label]:-}" "${LG_CPU[mc,$label]:-}")"
    printf '  %-28s %14s %14s %14s\n' "${label#tls-} loadgen CPUs" "${LG_CLIENT[fc,$label]:-}" "${LG_CLIENT[mc,$label]:-}" "${LG_CLIENT[fc,$pl]:-}"
  done
  for label in handshakes resumed; do
    name="full handshakes"
    [ "$label" = resumed ] && name="resumed handshakes"
    printf '  %-28s %14s %14s %14s %8s\n' "$name/s" "${LG_HS[fc,$label]:-}" "${LG_HS[mc,$label]:-}" "" \
      "$(ratio "${LG_HS[fc,$label]:-}" "${LG_HS[mc,$label]:-}")"
    printf '  %-28s %14s %14s %14s %8s\n' "server CPU us/${label%s}" "${LG_HS_CPU[fc,$label]:-}" "${LG_HS_CPU[mc,$label]:-}" "" \
      "$(ratio "${LG_HS_CPU[fc,$label]:-}" "${LG_HS_CPU[mc,$label]:-}")"
    printf '  %-28s %14s %14s\n' "$label loadgen CPUs" "${LG_CLIENT[fc,$label]:-}" "${LG_CLIENT[mc,$label]:-}"
  done
  for k in "${!LG_OK[@]}"; do
    [ "${LG_OK[$k]}" = 1 ] || echo "  (loadgen run ${k/,/ } failed: its figures are missing or partial)"
  done
  r16="$(ratio "${LG_OPS[fc,tls-p16]:-}" "${LG_OPS[mc,tls-p16]:-}")"
  r1="$(ratio "${LG_OPS[fc,tls-p1]:-}" "${LG_OPS[mc,tls-p1]:-}")"
  c1="$(ratio "${LG_CPU[fc,tls-p1]:-}" "${LG_CPU[mc,tls-p1]:-}")"
  rh="$(ratio "${LG_HS[fc,handshakes]:-}" "${LG_HS[mc,handshakes]:-}")"
  echo "  targets (loadgen): p16 ops >= 3x: $(verdict "$r16 >= 3") (${r16}x);" \
    "p1 ops >= 1x: $(verdict "$r1 >= 1") (${r1}x), p1 CPU/op <= 1x: $(verdict "$c1 <= 1") (${c1}x);" \
    "full handshakes/s >= 1x: $(verdict "$rh >= 1") (${rh}x)"
  echo "  a loadgen near 1.00 CPU (pinned, one thread) is itself the limit of that load"
fi
echo
printf '  %-22s %14s %14s %14s\n' "idle conn KiB (RSS)" "$MEM_FC_TLS" "$MEM_MC_TLS" "$MEM_FC_PLAIN"
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
