#!/usr/bin/env bash
# Memory benchmarks, ferrocache --cores 1 against memcached -t 1 in the same
# run (called by `make bench`):
#   (a) bytes per item: RSS growth while loading N items with 10-byte keys,
#       for 100-byte and 1 KiB values (target: ferrocache <= 0.7x memcached);
#   (b) hit ratio: cache-aside over a 10M-key Zipf space (alpha 0.9 and 1.0)
#       with memory for ~10% of the bytes, plus a Zipf + one-time-scan mix;
#   (c) throughput under eviction: a set-heavy load on a full store against
#       the same load on an empty big store (target: ratio >= 0.8);
#   (d) memory per connection: RSS growth per connection with CONNS clients
#       connected, each having sent a set and a get, once they have been
#       quiet for 11 s, and what is left once they have all closed;
#   (e) the same over TLS (ferrocache --tls-listen against memcached -Z),
#       TLS_CONNS clients, each having read a TLS_VALUE-byte value.
#
# Environment (defaults in brackets):
#   SECTIONS ("a b c d e")   which parts to run
#   ITEMS_100 (1000000)      items for (a) with 100-byte values
#   ITEMS_1K (1000000)       items for (a) with 1 KiB values (~1.2 GB per server)
#   HIT_KEYS (10000000)      key space for (b)
#   HIT_MEMORY_MB            memory for (b) [10% of HIT_KEYS x (10+100) bytes]
#   HIT_WARMUP (1000000)     requests before the hit ratio is measured
#   HIT_REQUESTS (1000000)   measured requests per hit-ratio run
#   SCAN_FRACTION (0.1)      share of one-time scan gets in the scan mix
#   EVICT_KEYS (2000000)     key space for (c), far larger than EVICT_MEMORY_MB
#   EVICT_MEMORY_MB (64)     the full store of (c); the empty one gets 2048
#   EVICT_SECS (5)           seconds per eviction load
#   CONNS (2000)             connections for (d)
#   TLS_CONNS (500), TLS_VALUE (524288)   connections and value size for (e)
#   SERVER_CPU (0), LOADGEN_CPU (1), FERROCACHE_BIN (skip the build)
set -euo pipefail
# shellcheck source=loadgen/servers.sh
source "$(dirname "${BASH_SOURCE[0]}")/loadgen/servers.sh"

SECTIONS="${SECTIONS:-a b c d e}"
ITEMS_100="${ITEMS_100:-1000000}"
ITEMS_1K="${ITEMS_1K:-1000000}"
HIT_KEYS="${HIT_KEYS:-10000000}"
HIT_MEMORY_MB="${HIT_MEMORY_MB:-$(((HIT_KEYS * 110 / 10 + 1048575) / 1048576))}"
HIT_WARMUP="${HIT_WARMUP:-1000000}"
HIT_REQUESTS="${HIT_REQUESTS:-1000000}"
SCAN_FRACTION="${SCAN_FRACTION:-0.1}"
EVICT_KEYS="${EVICT_KEYS:-2000000}"
EVICT_MEMORY_MB="${EVICT_MEMORY_MB:-64}"
EVICT_SECS="${EVICT_SECS:-5}"
CONNS="${CONNS:-2000}"
TLS_CONNS="${TLS_CONNS:-500}"
TLS_VALUE="${TLS_VALUE:-524288}"
SERVER_CPU="${SERVER_CPU:-0}"
# On a 1-CPU machine nothing can be kept apart; leave the generator unpinned.
if [[ -z ${LOADGEN_CPU+set} ]]; then
  LOADGEN_CPU=""
  (($(nproc) > 1)) && LOADGEN_CPU=1
fi
BIG_MB=4096

build_binaries
ensure_memcached
started_at=$SECONDS
REPORT="$BENCH_TMP/report"
: >"$REPORT"
say() { echo "$*" | tee -a "$REPORT"; }

# start NAME KIND MEMORY_MB [ARGS...]: a fresh single-core server of KIND (fc
# or mc), with ARGS.
start() {
  local name="$1" kind="$2" mb="$3"
  shift 3
  if [[ $kind == fc ]]; then
    start_ferrocache "$name" "$SERVER_CPU" --cores 1 --memory-mb "$mb" "$@"
  else
    start_memcached "$name" "$SERVER_CPU" "$mb" -t 1 "$@"
  fi
}

# The measuring functions below start servers, so they run in this shell (a
# $(...) subshell would lose track of them) and hand results back in globals.

# ---- (a) bytes per item ---------------------------------------------------
# bytes_per_item KIND ITEMS VALUE_SIZE: sets BPI to RSS growth per item.
bytes_per_item() {
  local kind="$1" items="$2" size="$3" name="bpi-$1-$3"
  start "$name" "$kind" "$BIG_MB"
  local before after
  before="$(rss_kb "${SRV_PID[$name]}")"
  # Few connections: their buffers are part of the growth and should not
  # dominate it.
  run_loadgen "$BENCH_TMP/$name" "$LOADGEN_CPU" --server "${SRV_ADDR[$name]}" \
    --conns 4 --pipeline 64 --keys "$items" --key-size 10 --value-size "$size" \
    --prefill --requests 0
  after="$(rss_kb "${SRV_PID[$name]}")"
  local count evictions
  count="$(mc_stat "${SRV_ADDR[$name]}" curr_items)"
  evictions="$(mc_stat "${SRV_ADDR[$name]}" evictions)"
  stop_server "$name"
  [[ "$evictions" == 0 || "$evictions" == n/a ]] ||
    die "$kind evicted $evictions items while loading; raise BIG_MB"
  echo "  $kind: RSS $before KiB -> $after KiB for $items items (curr_items $count)" >&2
  BPI="$(calc "($after - $before) * 1024 / $items" 1)"
  BPI_RSS="$((before / 1024)) -> $((after / 1024)) MiB"
}

if [[ " $SECTIONS " == *" a "* ]]; then
  say "(a) bytes per item (RSS growth / items; 10-byte keys)"
  for spec in "100 $ITEMS_100" "1024 $ITEMS_1K"; do
    read -r size items <<<"$spec"
    bytes_per_item fc "$items" "$size"
    fc="$BPI" fcr="$BPI_RSS"
    bytes_per_item mc "$items" "$size"
    mc="$BPI" mcr="$BPI_RSS"
    say "$(printf '  %5s-byte values, %8s items: ferrocache %7s B/item  memcached %7s B/item  ratio %sx  [target <= 0.70] %s' \
      "$size" "$items" "$fc" "$mc" "$(calc "$fc / $mc")" "$(pass_fail "$fc <= 0.7 * $mc")")"
    # Key and value bytes alone, against memcached's whole cost: no layout
    # can go below this ratio (for 1 KiB values it is above 0.7).
    say "        RSS ferrocache $fcr, memcached $mcr; key+value bytes alone would be $(calc "(10 + $size) / $mc")x"
  done
fi

# ---- (b) hit ratio ------------------------------------------------------------
# hit_ratio KIND ALPHA SCAN: sets HR and HRK (overall and key-space hit
# ratio) of a cache-aside Zipf run on a fresh server with HIT_MEMORY_MB, and
# HR_RSS, the server's RSS in MiB at the end: the same --memory-mb must not
# buy a better hit ratio with more real memory.
hit_ratio() {
  local kind="$1" alpha="$2" scan="$3" name="hit-$1-$2-$3"
  start "$name" "$kind" "$HIT_MEMORY_MB"
  run_loadgen "$BENCH_TMP/$name" "$LOADGEN_CPU" --server "${SRV_ADDR[$name]}" \
    --conns 16 --pipeline 16 --keys "$HIT_KEYS" --key-size 10 --value-size 100 \
    --dist zipf --zipf-alpha "$alpha" --ratio 0:1 --cache-aside --scan-fraction "$scan" \
    --warmup-requests "$HIT_WARMUP" --requests "$HIT_REQUESTS"
  HR_RSS=$(($(rss_kb "${SRV_PID[$name]}") / 1024))
  stop_server "$name"
  HR="$(result "$BENCH_TMP/$name" hit_ratio)"
  HRK="$(result "$BENCH_TMP/$name" key_hit_ratio)"
}

if [[ " $SECTIONS " == *" b "* ]]; then
  say "(b) hit ratio: cache-aside, $HIT_KEYS-key Zipf, 100-byte values, ${HIT_MEMORY_MB} MB" \
    "(~10% of the bytes), measured over $HIT_REQUESTS gets after $HIT_WARMUP"
  for spec in "0.9 0" "1.0 0" "0.9 $SCAN_FRACTION"; do
    read -r alpha scan <<<"$spec"
    hit_ratio fc "$alpha" "$scan"
    fc="$HR" fck="$HRK" fcr="$HR_RSS"
    hit_ratio mc "$alpha" "$scan"
    mc="$HR" mck="$HRK" mcr="$HR_RSS"
    if [[ $scan == 0 ]]; then
      say "$(printf '  zipf %-4s            : ferrocache %s  memcached %s  ratio %sx  (RSS %s / %s MiB)' \
        "$alpha" "$fc" "$mc" "$(calc "$fc / $mc" 3)" "$fcr" "$mcr")"
    else
      # Scan gets always miss; the key-space hit ratio shows whether the scan
      # flushed the hot set.
      say "$(printf '  zipf %-4s + %s scans: ferrocache %s (key space %s)  memcached %s (key space %s)  key-space ratio %sx  (RSS %s / %s MiB)' \
        "$alpha" "$scan" "$fc" "$fck" "$mc" "$mck" "$(calc "$fck / $mck" 3)" "$fcr" "$mcr")"
    fi
  done
fi

# ---- (c) throughput under eviction ------------------------------------------
# evict_tput KIND MEMORY_MB PREFILL: sets TPUT to the ops/s of a set-heavy
# uniform load.
evict_tput() {
  local kind="$1" mb="$2" prefill="$3" name="evict-$1-$2"
  start "$name" "$kind" "$mb"
  local load=(--server "${SRV_ADDR[$name]}" --conns 50 --pipeline 16 --keys "$EVICT_KEYS"
    --key-size 10 --value-size 100 --ratio 9:1)
  if [[ $prefill == yes ]]; then
    # Setting every key of a space several times the memory fills the store,
    # so the measured load evicts on nearly every set.
    run_loadgen_counting_errors "$BENCH_TMP/$name.fill" "$LOADGEN_CPU" "${load[@]}" --prefill --requests 0
  fi
  run_loadgen_counting_errors "$BENCH_TMP/$name" "$LOADGEN_CPU" "${load[@]}" --duration "$EVICT_SECS"
  local ev
  ev="$(mc_stat "${SRV_ADDR[$name]}" evictions)"
  stop_server "$name"
  echo "  $kind ${mb} MB: evictions $ev" >&2
  TPUT="$(result "$BENCH_TMP/$name" ops_per_sec)"
}

if [[ " $SECTIONS " == *" c "* ]]; then
  say "(c) throughput under eviction: 9:1 set:get, uniform over $EVICT_KEYS keys," \
    "full ${EVICT_MEMORY_MB} MB store vs empty 2048 MB store, ${EVICT_SECS}s each"
  for kind in fc mc; do
    evict_tput "$kind" "$EVICT_MEMORY_MB" yes
    full="$TPUT"
    evict_tput "$kind" 2048 no
    empty="$TPUT"
    name=ferrocache
    [[ $kind == mc ]] && name=memcached
    say "$(printf '  %-10s: full %9s ops/s  empty %9s ops/s  full/empty %sx  [target >= 0.80] %s' \
      "$name" "$full" "$empty" "$(calc "$full / $empty")" "$(pass_fail "$full >= 0.8 * $empty")")"
  done
fi

# ---- (d) and (e) memory per connection --------------------------------------
# per_connection KIND CONNS [VALUE_SIZE]: sets PC_BUSY, PC_IDLE and PC_LEFT to
# RSS growth per connection (KiB) while they are served, once they are idle,
# and after they have all closed. With VALUE_SIZE, over TLS: each connection
# also reads a value of that size.
per_connection() {
  local kind="$1" conns="$2" size="${3:-0}" name="conn-$1-${3:-plain}"
  local tls=()
  if ((size > 0)); then
    if [[ $kind == fc ]]; then
      tls=(--tls-listen 127.0.0.1:0 --tls-cert "$BENCH_TMP/cert.pem" --tls-key "$BENCH_TMP/key.pem")
    else
      tls=(-Z -o "ssl_chain_cert=$BENCH_TMP/cert.pem,ssl_key=$BENCH_TMP/key.pem")
    fi
  fi
  start "$name" "$kind" 64 "${tls[@]}"
  local addr="${SRV_ADDR[$name]}"
  if ((size > 0)) && [[ $kind == fc ]]; then
    addr="$(grep -m1 -o 'tls=[^ ]*' "$BENCH_TMP/$name.out")"
    addr="${addr#tls=}"
  fi
  local figures
  figures="$(python3 - "$addr" "${SRV_PID[$name]}" "$conns" "$size" <<'PY'
import re, resource, socket, ssl, sys, time
host, port = sys.argv[1].rsplit(":", 1)
pid, conns, size = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
if soft < conns + 64:
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, conns + 64), hard))
tls = ssl.create_default_context()
tls.check_hostname = False
tls.verify_mode = ssl.CERT_NONE
def connect():
    s = socket.create_connection((host, int(port)))
    return tls.wrap_socket(s) if size else s
def rss():
    return int(re.search(r"VmRSS:\s+(\d+)", open(f"/proc/{pid}/status").read()).group(1))
def reply(s, end):
    got = b""
    while not got.endswith(end):
        chunk = s.recv(1 << 20)
        if not chunk:
            sys.exit("connection closed by the server")
        got += chunk
    return got
before = rss()
socks = [connect() for _ in range(conns)]
if size:
    socks[0].sendall(b"set big 0 0 %d\r\n%s\r\n" % (size, b"v" * size))
    reply(socks[0], b"STORED\r\n")
for s in socks:
    s.sendall(b"set k 0 0 1\r\nx\r\nget k\r\n")
for s in socks:
    reply(s, b"END\r\n")
    if size:
        s.sendall(b"get big\r\n")
        reply(s, b"END\r\n")
busy = rss()
time.sleep(11)
idle = rss()
for s in socks:
    s.close()
time.sleep(2.5)
left = rss()
print(*((x - before) / conns for x in (busy, idle, left)))
PY
)" || die "$kind: the connections could not all be served"
  stop_server "$name"
  read -r PC_BUSY PC_IDLE PC_LEFT <<<"$figures"
}

# report_per_connection CONNS [VALUE_SIZE]: one line per server.
report_per_connection() {
  for kind in fc mc; do
    per_connection "$kind" "$@"
    name=ferrocache
    [[ $kind == mc ]] && name=memcached
    say "$(printf '  %-10s: served %6.1f  idle %6.1f  left %6.1f' "$name" "$PC_BUSY" "$PC_IDLE" "$PC_LEFT")"
  done
}

if [[ " $SECTIONS " == *" d "* ]]; then
  say "(d) memory per connection: RSS growth per connection, KiB, $CONNS connections" \
    "(each a set and a get; idle: after 11 s quiet; left: 2.5 s after all closed)"
  report_per_connection "$CONNS"
fi

if [[ " $SECTIONS " == *" e "* ]]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=localhost -keyout "$BENCH_TMP/key.pem" -out "$BENCH_TMP/cert.pem" 2>/dev/null
  say "(e) memory per TLS connection: RSS growth per connection, KiB, $TLS_CONNS connections" \
    "(each a set, a get and a get of $TLS_VALUE bytes; idle and left as in (d))"
  report_per_connection "$TLS_CONNS" "$TLS_VALUE"
fi

echo
echo "memory.sh summary ($((SECONDS - started_at)) s, $(nproc) CPUs; server on CPU $SERVER_CPU, loadgen on CPU $LOADGEN_CPU):"
cat "$REPORT"
