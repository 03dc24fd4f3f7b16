# shellcheck shell=bash
# Shell helpers shared by benches/compare.sh, memory.sh, soak.sh and sweep.sh:
# build the binaries, start ferrocache, memcached and Pelikan on free ports and wait
# for them to say they are ready, read their CPU time and RSS, run the load
# generator, and stop everything that was started when the script exits.
# Sourced, never run; the caller has `set -euo pipefail`.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# Seconds a server gets to report readiness before the script gives up.
READY_TIMEOUT="${READY_TIMEOUT:-30}"

declare -A SRV_PID=() SRV_ADDR=()
BENCH_TMP="$(mktemp -d "${TMPDIR:-/tmp}/ferrocache-bench.XXXXXX")"
STARTED_PIDS=()

bench_cleanup() {
  local pid
  for pid in "${STARTED_PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${STARTED_PIDS[@]}"; do
    # Bounded wait for a clean exit, then force it.
    local _
    for _ in $(seq 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  STARTED_PIDS=()
  rm -rf "$BENCH_TMP"
}
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

die() {
  echo "$(basename "$0"): error: $*" >&2
  exit 1
}

# Builds the release server (unless FERROCACHE_BIN names another binary) and
# the load generator; sets FERROCACHE_BIN and LOADGEN.
build_binaries() {
  cd "$ROOT" || die "cannot cd to $ROOT"
  if [[ -z "${FERROCACHE_BIN:-}" ]]; then
    echo "building ferrocache (release)..." >&2
    cargo build --release --bin ferrocache >&2
    FERROCACHE_BIN="$ROOT/target/release/ferrocache"
  fi
  [[ -x "$FERROCACHE_BIN" ]] || die "ferrocache binary $FERROCACHE_BIN is not executable"
  echo "building loadgen (bench profile)..." >&2
  # cargo names the bench executable with a hash; its JSON messages say which.
  local log="$BENCH_TMP/loadgen-build.log"
  LOADGEN="$(cargo bench --bench loadgen --no-run --message-format=json 2>"$log" |
    grep -o '"executable":"[^"]*loadgen-[^"]*"' | tail -1 | cut -d'"' -f4 || true)"
  if [[ -z "$LOADGEN" || ! -x "$LOADGEN" ]]; then
    tail -30 "$log" >&2
    die "could not build the load generator (cargo bench --bench loadgen --no-run)"
  fi
}

# Installs Debian's memcached when it is missing; sets MEMCACHED_BIN.
ensure_memcached() {
  if ! command -v memcached >/dev/null; then
    echo "memcached not found; installing it..." >&2
    if [[ $(id -u) -eq 0 ]]; then
      apt-get install -y memcached >&2 || { apt-get update >&2 && apt-get install -y memcached >&2; }
    else
      sudo apt-get install -y memcached >&2
    fi
  fi
  MEMCACHED_BIN="$(command -v memcached)"
}

# Prints `cpu-list-prefix`: "taskset -c LIST" when LIST is non-empty.
pin() {
  if [[ -n "$1" ]]; then echo "taskset -c $1"; fi
}

# start_ferrocache NAME CPUS ARGS...: starts it on 127.0.0.1:0 (pinned to
# CPUS when non-empty) and waits for its ready line, which names the port.
start_ferrocache() {
  local name="$1" cpus="$2"
  shift 2
  local out="$BENCH_TMP/$name.out" err="$BENCH_TMP/$name.err"
  # shellcheck disable=SC2046
  RUST_LOG="${RUST_LOG:-warn}" $(pin "$cpus") "$FERROCACHE_BIN" --listen 127.0.0.1:0 "$@" \
    >"$out" 2>"$err" &
  local pid=$!
  STARTED_PIDS+=("$pid")
  local line
  line="$(await_ready "ferrocache ($name)" "$pid" "$err" grep -m1 ' listening on ' "$out")"
  local addr="${line#* listening on }"
  SRV_ADDR[$name]="${addr%% *}"
  SRV_PID[$name]="$pid"
  echo "started $name: ferrocache $* on ${SRV_ADDR[$name]} (pid $pid${cpus:+, cpus $cpus})" >&2
}

# await_ready WHAT PID ERRFILE PROBE...: runs PROBE until it prints something
# (the server's ready line or port) and prints that; dies, showing ERRFILE,
# if the server exits first, or after READY_TIMEOUT seconds.
await_ready() {
  local what="$1" pid="$2" err="$3"
  shift 3
  local deadline=$((SECONDS + READY_TIMEOUT)) found=""
  while :; do
    found="$("$@" 2>/dev/null || true)"
    [[ -n "$found" ]] && break
    if ! kill -0 "$pid" 2>/dev/null; then
      cat "$err" >&2
      die "$what exited before it was ready"
    fi
    ((SECONDS < deadline)) || die "$what not ready after ${READY_TIMEOUT}s"
    sleep 0.05
  done
  printf '%s\n' "$found"
}

# start_memcached NAME CPUS MEMORY_MB ARGS...: memcached on an ephemeral port.
# memcached writes the port it bound to $MEMCACHED_PORT_FILENAME (renamed
# into place once listening), which is its readiness signal.
start_memcached() {
  local name="$1" cpus="$2" mb="$3"
  shift 3
  local portfile="$BENCH_TMP/$name.port" err="$BENCH_TMP/$name.err"
  local user=()
  [[ $(id -u) -eq 0 ]] && user=(-u root) # memcached refuses to run as root otherwise
  # shellcheck disable=SC2046
  MEMCACHED_PORT_FILENAME="$portfile" $(pin "$cpus") "$MEMCACHED_BIN" \
    -l 127.0.0.1 -p -1 -U 0 -m "$mb" -c 4096 "${user[@]}" "$@" >"$err" 2>&1 &
  local pid=$!
  STARTED_PIDS+=("$pid")
  local port
  port="$(await_ready "memcached ($name)" "$pid" "$err" sed -n '1s/^TCP INET: //p' "$portfile")"
  SRV_ADDR[$name]="127.0.0.1:$port"
  SRV_PID[$name]="$pid"
  echo "started $name: memcached -m $mb $* on ${SRV_ADDR[$name]} (pid $pid${cpus:+, cpus $cpus})" >&2
}

# free_port: a TCP port on 127.0.0.1 nothing listens on now (for servers
# that cannot bind port 0 and say which port they got).
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_pelikan NAME CPUS MEMORY_MB: Pelikan segcache (PELIKAN_BIN, built by
# benches/build-pelikan.sh) with one worker thread, on a free port; ready
# when its port answers `version`.
start_pelikan() {
  local name="$1" cpus="$2" mb="$3"
  [[ -x "${PELIKAN_BIN:-}" ]] || die "PELIKAN_BIN is not set to a pelikan-segcache binary (benches/build-pelikan.sh builds one)"
  local port admin conf="$BENCH_TMP/$name.toml" err="$BENCH_TMP/$name.err"
  port="$(free_port)"
  admin="$(free_port)"
  cat >"$conf" <<EOF
[admin]
host = "127.0.0.1"
port = "$admin"
http_enabled = false

[server]
host = "127.0.0.1"
port = "$port"

[worker]
threads = 1

[seg]
heap_size = "${mb}MB"
segment_size = "1MB"
# 2^20 buckets of 8 slots: room for millions of keys (the default, 2^16,
# fills up and answers SERVER_ERROR before a sweep's 100k keys are in).
hash_power = 20

[time]
time_type = "Memcache"

[debug]
log_level = "warn"

[klog]
sample = 0
EOF
  # shellcheck disable=SC2046
  $(pin "$cpus") "$PELIKAN_BIN" "$conf" >"$err" 2>&1 &
  local pid=$!
  STARTED_PIDS+=("$pid")
  await_ready "pelikan ($name)" "$pid" "$err" probe_version "127.0.0.1" "$port" >/dev/null
  SRV_ADDR[$name]="127.0.0.1:$port"
  SRV_PID[$name]="$pid"
  echo "started $name: pelikan-segcache, 1 worker, ${mb} MB heap on ${SRV_ADDR[$name]} (pid $pid${cpus:+, cpus $cpus})" >&2
}

# probe_version HOST PORT: prints the server's VERSION line, if it answers.
probe_version() {
  local line=""
  exec 8<>"/dev/tcp/$1/$2" || return 1
  printf 'version\r\n' >&8
  IFS= read -r -t 2 line <&8 || true
  exec 8>&-
  [[ "$line" == VERSION* ]] && printf '%s\n' "$line"
}

# stop_server NAME: stops one server early (frees its memory between runs).
stop_server() {
  local pid="${SRV_PID[$1]}" _
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  local kept=() p
  for p in "${STARTED_PIDS[@]}"; do [[ "$p" != "$pid" ]] && kept+=("$p"); done
  STARTED_PIDS=("${kept[@]}")
  unset "SRV_PID[$1]" "SRV_ADDR[$1]"
}

# Server CPU time (user + system, all threads) in clock ticks.
cpu_ticks() {
  # Fields after the parenthesised command name: utime and stime are the
  # 12th and 13th (14th and 15th of the whole line).
  sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'
}
# sys_ticks PID: the kernel's share of cpu_ticks (stime): system calls, and
# the TCP work a loopback send does for its receiver.
sys_ticks() {
  sed 's/.*) //' "/proc/$1/stat" | awk '{ print $13 }'
}
# shellcheck disable=SC2034 # used by the scripts that source this file
CLK_TCK="$(getconf CLK_TCK)"

# Resident set size in KiB.
rss_kb() {
  awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"
}

# run_loadgen OUT CPUS ARGS...: runs the load generator pinned to CPUS, its
# output in OUT (and on stderr, indented); a failed run is fatal.
run_loadgen() {
  loadgen_run fatal "$@"
}

# run_loadgen_counting_errors OUT CPUS ARGS...: the same, except that a run
# that finished (it printed its RESULT line) with server error replies, such
# as memcached's "SERVER_ERROR out of memory storing object" under eviction,
# is a measurement, not a harness failure: the errors are reported, not fatal.
run_loadgen_counting_errors() {
  loadgen_run counted "$@"
}

loadgen_run() {
  local errors="$1" out="$2" cpus="$3"
  shift 3
  local rc=0
  # shellcheck disable=SC2046
  $(pin "$cpus") "$LOADGEN" "$@" >"$out" 2>&1 || rc=$?
  sed 's/^/    /' "$out" >&2
  ((rc == 0)) && return
  if [[ $errors == counted ]] && grep -q '^RESULT ' "$out"; then
    echo "    (server answered $(result "$out" errors) requests with errors; counted, not fatal)" >&2
    return
  fi
  die "loadgen failed (exit $rc): $LOADGEN $*"
}

# result FILE KEY: a field of the loadgen RESULT line.
result() {
  grep '^RESULT ' "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"
}

# mc_stat ADDR NAME: one field of the server's `stats` reply, or "n/a".
mc_stat() {
  local host="${1%:*}" port="${1##*:}" line value="n/a"
  exec 9<>"/dev/tcp/$host/$port" || { echo "n/a"; return; }
  printf 'stats\r\n' >&9
  while IFS= read -r -t 5 line <&9; do
    line="${line%$'\r'}"
    [[ "$line" == END || "$line" == *ERROR* ]] && break
    if [[ "$line" == "STAT $2 "* ]]; then value="${line#STAT "$2" }"; fi
  done
  exec 9>&-
  echo "$value"
}

# Floating-point helpers (bash has none).
calc() { awk "BEGIN { printf \"%.${2:-2}f\", $1 }"; }
# pass_fail EXPR: PASS when the awk condition holds.
pass_fail() { awk "BEGIN { print (($1) ? \"PASS\" : \"FAIL\") }"; }
