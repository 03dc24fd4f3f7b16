#!/usr/bin/env bash
# A load sweep: server CPU per operation and p99 latency against request
# rate, from 10% of saturation to saturation, for ferrocache --cores 1 and
# --cores 2 and memcached -t 1 and -t 2, at pipeline 1 and 16, with
# memtier_benchmark in text mode (50 connections, 100-byte values, 1:10
# set:get over 100k keys, --rate-limiting per connection). Draws the curves
# as a PNG and prints the ratios the wake path is judged by (issue 17).
# With PELIKAN=1 (benches/build-pelikan.sh then builds Pelikan segcache from
# its public source) or PELIKAN_BIN set to such a binary, Pelikan with one
# worker ("pk1") is measured too.
#
#   bash benches/sweep.sh              (make bench-sweep)
#   QUICK=1 bash benches/sweep.sh      (short runs, fewer rates: a smoke test)
#
# CPU per operation is the server's utime+stime over the run (from
# /proc/PID/stat, all threads) divided by the operations memtier completed;
# it holds up on a busy machine better than throughput does, but compare
# only figures from one run. Sleeps per operation (the server threads'
# voluntary context switches ÷ operations) count how often a core went to
# sleep and had to be woken.
#
# Environment: DURATION (s per point; 10, QUICK: 3), FRACTIONS (of each
# server's saturated rate; "0.1 0.25 0.4 0.55 0.7 0.85", QUICK: "0.1 0.4
# 0.8"), FIXED_RATE (ops/s measured for every server as well; 40000),
# CONNS (50), KEYS (100000), VALUE_SIZE (100), RATIO (1:10), PIPELINES
# ("1 16"), SERVERS ("fc1 fc2 mc1 mc2", and pk1 with Pelikan; fcN and mcN
# for any N run ferrocache --cores N and memcached -t N, on CPUs 0..N-1
# from N=3 up), MEMORY_MB (1024), CPUS1 (the CPU a one-thread server runs
# on; 0), CPUS2 (a two-thread server's; 0,1), MEMTIER_THREADS (1; memtier's
# threads, each with CONNS connections: on a many-core machine one thread
# cannot load eight server cores),
# LOADGEN_CPUS (memtier's; 1, "" leaves it unpinned), MC_PIN (1: pin
# memcached -t 2's worker threads one to each CPU of CPUS2, as ferrocache
# pins its cores, instead of letting the kernel move them), FC_ARGS (more
# ferrocache flags, say "--spin-us 0"), FIXED_ROUNDS (0; N: after the
# sweeps, every server, kept running, serves FIXED_RATE again N more times
# in turn, one server after another, and the ratios at FIXED_RATE use each
# server's median, so a host that drifts during the run moves every server
# alike), OUT (where sweep.tsv and sweep.png
# go; target/sweep), FERROCACHE_BIN (skip the build, use this binary),
# MEMCACHED_BIN (default: memcached on PATH, installed if missing), MEMTIER
# (memtier_benchmark's path).
#
# On a many-core machine (docs/PERFORMANCE.md, round 18):
#   SERVERS="fc1 fc2 fc8 mc1 mc2 mc8" MEMTIER_THREADS=8 CONNS=8 \
#   LOADGEN_CPUS=8-15 MC_PIN=1 bash benches/sweep.sh
#
# The plot needs python3 with matplotlib; when it is missing the script
# tries `pip install --user matplotlib`, and without it still writes the
# table.
set -euo pipefail
# shellcheck source=loadgen/servers.sh
source "$(dirname "${BASH_SOURCE[0]}")/loadgen/servers.sh"

QUICK="${QUICK:-0}"
if ((QUICK)); then
  DURATION="${DURATION:-3}"
  FRACTIONS="${FRACTIONS:-0.1 0.4 0.8}"
else
  DURATION="${DURATION:-10}"
  FRACTIONS="${FRACTIONS:-0.1 0.25 0.4 0.55 0.7 0.85}"
fi
FIXED_RATE="${FIXED_RATE:-40000}"
CONNS="${CONNS:-50}"
MEMTIER_THREADS="${MEMTIER_THREADS:-1}"
KEYS="${KEYS:-100000}"
VALUE_SIZE="${VALUE_SIZE:-100}"
RATIO="${RATIO:-1:10}"
PIPELINES="${PIPELINES:-1 16}"
if [[ -n "${PELIKAN:-}" && -z "${PELIKAN_BIN:-}" ]]; then
  PELIKAN_BIN="$(bash "$ROOT/benches/build-pelikan.sh")"
fi
if [[ -n "${PELIKAN_BIN:-}" ]]; then
  SERVERS="${SERVERS:-fc1 fc2 mc1 mc2 pk1}"
else
  SERVERS="${SERVERS:-fc1 fc2 mc1 mc2}"
fi
MEMORY_MB="${MEMORY_MB:-1024}"
CPUS1="${CPUS1:-0}"
CPUS2="${CPUS2:-0,1}"
if [[ -z ${LOADGEN_CPUS+set} ]]; then
  LOADGEN_CPUS=""
  (($(nproc) > 1)) && LOADGEN_CPUS=1
fi
MC_PIN="${MC_PIN:-0}"
FC_ARGS="${FC_ARGS:-}"
FIXED_ROUNDS="${FIXED_ROUNDS:-0}"
OUT="${OUT:-$ROOT/target/sweep}"
if [[ -z "${MEMTIER:-}" ]] && ! command -v memtier_benchmark >/dev/null; then
  bash "$ROOT/benches/install-memtier.sh" || die "memtier_benchmark is missing and could not be built"
fi
MEMTIER="${MEMTIER:-$(command -v memtier_benchmark || echo /usr/local/bin/memtier_benchmark)}"

[[ -x "$MEMTIER" ]] || die "memtier_benchmark not found at $MEMTIER (benches/install-memtier.sh builds it)"
cd "$ROOT" || die "cannot cd to $ROOT"
if [[ -z "${FERROCACHE_BIN:-}" ]]; then
  echo "building ferrocache (release)..." >&2
  cargo build --release --bin ferrocache >&2
  FERROCACHE_BIN="$ROOT/target/release/ferrocache"
fi
[[ -n "${MEMCACHED_BIN:-}" ]] || ensure_memcached
mkdir -p "$OUT"
TSV="$OUT/sweep.tsv"
printf 'server\tpipeline\ttarget_ops\tops_per_sec\tcpu_us_per_op\tp99_ms\tsleeps_per_op\tphase\n' >"$TSV"

# Times the server's threads went to sleep (voluntary context switches, all
# threads): each is a sleep and a wake-up, a figure the machine's other load
# hardly moves.
sleeps() {
  cat /proc/"$1"/task/*/status 2>/dev/null | awk '/^voluntary_ctxt_switches/ { n += $2 } END { print n + 0 }'
}

# pin_workers PID CPULIST: pins memcached's worker threads (named
# mc-worker) one to each CPU of CPULIST, in thread order.
pin_workers() {
  local cpus i=0 t
  IFS=, read -ra cpus <<<"$2"
  for t in /proc/"$1"/task/*; do
    [[ $(cat "$t/comm") == mc-worker ]] || continue
    taskset -pc "${cpus[i % ${#cpus[@]}]}" "${t##*/}" >/dev/null
    echo "pinned memcached worker ${t##*/} to CPU ${cpus[i % ${#cpus[@]}]}" >&2
    i=$((i + 1))
  done
}

# memtier ARGS...: one memtier run against the current server; JSON to $MT_JSON.
MT_JSON="$BENCH_TMP/memtier.json"
memtier() {
  local host="${ADDR%:*}" port="${ADDR##*:}"
  # shellcheck disable=SC2046
  $(pin "$LOADGEN_CPUS") "$MEMTIER" -s "$host" -p "$port" --protocol=memcache_text \
    -t "$MEMTIER_THREADS" -c "$CONNS" --data-size="$VALUE_SIZE" --key-maximum="$KEYS" \
    --hide-histogram --json-out-file="$MT_JSON" "$@" >"$BENCH_TMP/memtier.out" 2>&1 ||
    { tail -20 "$BENCH_TMP/memtier.out" >&2; die "memtier failed: $*"; }
}

# json FIELD: ops count, ops/s or p99 (ms) of the last memtier run.
json() {
  python3 - "$MT_JSON" "$1" <<'EOF'
import json, sys
t = json.load(open(sys.argv[1]))["ALL STATS"]["Totals"]
print({"count": t["Count"], "ops": t["Ops/sec"], "p99": t["Percentile Latencies"]["p99.00"]}[sys.argv[2]])
EOF
}

# point NAME PIPELINE RATE [PHASE]: one timed load at RATE ops/s in all (0:
# as fast as memtier goes) against the server at $ADDR (pid $PID); appends
# a row (PHASE: sweep, or fixed for the interleaved rounds) and prints the
# achieved ops/s.
point() {
  local name="$1" p="$2" rate="$3" phase="${4:-sweep}" limit=()
  if ((rate > 0)); then
    local conns=$((CONNS * MEMTIER_THREADS))
    local per=$(((rate + conns / 2) / conns))
    ((per >= 1)) || per=1
    limit=(--rate-limiting="$per")
  fi
  local t0 t1 s0 s1
  t0="$(cpu_ticks "$PID")"
  s0="$(sleeps "$PID")"
  memtier --pipeline="$p" --ratio="$RATIO" --key-pattern=R:R --distinct-client-seed \
    --test-time="$DURATION" "${limit[@]}"
  t1="$(cpu_ticks "$PID")"
  s1="$(sleeps "$PID")"
  local count ops p99 cpu slp
  count="$(json count)"
  ops="$(json ops)"
  p99="$(json p99)"
  cpu="$(calc "($t1 - $t0) / $CLK_TCK * 1000000 / $count" 3)"
  slp="$(calc "($s1 - $s0) / $count" 3)"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$p" "$rate" "$ops" "$cpu" "$p99" "$slp" \
    "$phase" >>"$TSV"
  printf '  %-4s p%-2s target %8s ops/s: %10.0f ops/s, %7s us CPU/op, p99 %s ms, %s sleeps/op\n' \
    "$name" "$p" "${rate/#0/max}" "$ops" "$cpu" "$p99" "$slp" >&2
  echo "$ops"
}

for name in $SERVERS; do
  case "$name" in
    pk1) start_pelikan "$name" "$CPUS1" "$MEMORY_MB" ;;
    fc[0-9]* | mc[0-9]*)
      n="${name#??}"
      [[ $n =~ ^[1-9][0-9]*$ ]] || die "unknown server $name (fcN mcN pk1)"
      case $n in 1) cpus="$CPUS1" ;; 2) cpus="$CPUS2" ;; *) cpus="0-$((n - 1))" ;; esac
      if [[ ${name:0:2} == fc ]]; then # shellcheck disable=SC2086
        start_ferrocache "$name" "$cpus" --cores "$n" --memory-mb "$MEMORY_MB" $FC_ARGS
      else
        start_memcached "$name" "$cpus" "$MEMORY_MB" -t "$n"
        ((MC_PIN)) && pin_workers "${SRV_PID[$name]}" "$cpus"
      fi
      ;;
    *) die "unknown server $name (fcN mcN pk1)" ;;
  esac
  ADDR="${SRV_ADDR[$name]}"
  PID="${SRV_PID[$name]}"
  echo "prefilling $name with $KEYS keys..." >&2
  memtier --ratio=1:0 --key-pattern=P:P --requests=allkeys --pipeline=16
  for p in $PIPELINES; do
    echo "$name pipeline $p: saturation first, then fractions of it" >&2
    max="$(point "$name" "$p" 0)"
    rates="$FIXED_RATE"
    for f in $FRACTIONS; do rates+=" $(calc "$max * $f" 0)"; done
    for rate in $rates; do
      point "$name" "$p" "$rate" >/dev/null
    done
  done
  # Kept for the interleaved rounds: idle, it costs the others nothing.
  ((FIXED_ROUNDS > 0)) || stop_server "$name"
done

for ((round = 1; round <= FIXED_ROUNDS; round++)); do
  echo "fixed rate, round $round of $FIXED_ROUNDS: every server in turn at $FIXED_RATE ops/s" >&2
  for p in $PIPELINES; do
    for name in $SERVERS; do
      ADDR="${SRV_ADDR[$name]}"
      PID="${SRV_PID[$name]}"
      point "$name" "$p" "$FIXED_RATE" fixed >/dev/null
    done
  done
done
if ((FIXED_ROUNDS > 0)); then
  for name in $SERVERS; do stop_server "$name"; done
fi

echo >&2
echo "results: $TSV" >&2
column -t "$TSV" >&2 || cat "$TSV" >&2

# The ratios issue 17 judges (same run): at FIXED_RATE, and at saturation.
python3 - "$TSV" "$FIXED_RATE" <<'EOF' >&2
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
fixed = sys.argv[2]
def order(name):
    return (name[:2], int(name[2:]) if name[2:].isdigit() else 0)
servers = sorted({r["server"] for r in rows}, key=order)
def get(server, p, target, field):
    # The interleaved rounds' median (the lower middle one for an even
    # count) where there are some, else the sweep's own point.
    found = [r for r in rows if r["server"] == server and r["pipeline"] == p
             and r["target_ops"] == target]
    interleaved = [r for r in found if r["phase"] == "fixed"]
    values = sorted(float(r[field]) for r in (interleaved or found))
    return values[(len(values) - 1) // 2] if values else None
def ratio(a, b):
    return "n/a" if a is None or b is None or b == 0 else f"{a / b:.2f}x"
def ratios(c):
    # fcN/fc1 and fcN/mcN for each N > 1 measured, fc1/mc1, fc1/pk1.
    ns = sorted(int(s[2:]) for s in servers if s.startswith("fc") and s[2:].isdigit())
    out = [f"fc{n}/fc1 {ratio(c.get(f'fc{n}'), c.get('fc1'))}  fc{n}/mc{n} "
           f"{ratio(c.get(f'fc{n}'), c.get(f'mc{n}'))}" for n in ns if n > 1]
    out.append(f"fc1/mc1 {ratio(c.get('fc1'), c.get('mc1'))}  fc1/pk1 {ratio(c.get('fc1'), c.get('pk1'))}")
    return "  ".join(out)
def each(v):
    return " ".join(f"{s} {v[s]}" for s in servers)
counts = {}
for r in rows:
    if r["phase"] == "fixed":
        counts[r["server"], r["pipeline"]] = counts.get((r["server"], r["pipeline"]), 0) + 1
rounds = max(counts.values(), default=0)
how = f"median of {rounds} interleaved rounds" if rounds else "one run each"
pipelines = sorted({r["pipeline"] for r in rows}, key=int)
print(f"\nat {fixed} ops/s ({how}; CPU per op ratios; p99 in ms):")
for p in pipelines:
    c = {s: get(s, p, fixed, "cpu_us_per_op") for s in servers}
    q = {s: get(s, p, fixed, "p99_ms") for s in servers}
    z = {s: get(s, p, fixed, "sleeps_per_op") for s in servers}
    print(f"  pipeline {p}: {ratios(c)}  p99 {each(q)}  sleeps/op {each(z)}")
print("at saturation (target 0):")
for p in pipelines:
    c = {s: get(s, p, "0", "cpu_us_per_op") for s in servers}
    o = {s: get(s, p, "0", "ops_per_sec") for s in servers}
    print(f"  pipeline {p}: CPU {ratios(c)}  ops/s {each(o)}")
EOF

if ! python3 -c 'import matplotlib' 2>/dev/null; then
  echo "matplotlib missing: trying pip install --user matplotlib" >&2
  python3 -m pip install --user --quiet matplotlib >&2 || true
fi
if python3 -c 'import matplotlib' 2>/dev/null; then
  python3 - "$TSV" "$OUT/sweep.png" "$((CONNS * MEMTIER_THREADS))" <<'EOF'
import csv, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import matplotlib.ticker
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
def order(name):
    return (name[:2], int(name[2:]) if name[2:].isdigit() else 0)
names = sorted({r["server"] for r in rows}, key=order)
def label(s):
    if s == "pk1":
        return "Pelikan segcache, 1 worker"
    return (f"ferrocache --cores {s[2:]}" if s.startswith("fc") else f"memcached -t {s[2:]}")
labels = {s: label(s) for s in names}
marks = "osDv^<>p"
styles = {s: ("^:" if s == "pk1" else marks[i % len(marks)] + ("-" if s.startswith("fc") else "--"))
          for i, s in enumerate(n for n in names if n != "pk1")}
styles.setdefault("pk1", "^:")
pipelines = sorted({r["pipeline"] for r in rows}, key=int)
fig, axes = plt.subplots(2, len(pipelines), figsize=(6 * len(pipelines), 8), squeeze=False)
for col, p in enumerate(pipelines):
    for server in labels:
        pts = sorted((float(r["ops_per_sec"]), float(r["cpu_us_per_op"]), float(r["p99_ms"]))
                     for r in rows if r["server"] == server and r["pipeline"] == p
                     and r["phase"] == "sweep")
        if not pts:
            continue
        x = [a / 1000 for a, _, _ in pts]
        axes[0][col].plot(x, [b for _, b, _ in pts], styles[server], label=labels[server])
        axes[1][col].plot(x, [c for _, _, c in pts], styles[server], label=labels[server])
    axes[0][col].set_title(f"pipeline {p}: server CPU per operation")
    axes[0][col].set_ylabel("CPU µs / op")
    axes[0][col].set_ylim(bottom=0)
    axes[1][col].set_title(f"pipeline {p}: p99 latency")
    axes[1][col].set_ylabel("p99 ms")
    axes[1][col].set_yscale("log")
    axes[1][col].yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    axes[1][col].yaxis.set_minor_formatter(matplotlib.ticker.ScalarFormatter())
    for row in (0, 1):
        axes[row][col].set_xlabel("thousand ops/s (achieved)")
        axes[row][col].grid(True, alpha=0.3)
        axes[row][col].legend(fontsize=8)
fig.suptitle(f"memtier_benchmark, text, {sys.argv[3]} conns, 100 B values, 1:10 set:get, 100k keys", fontsize=10)
fig.tight_layout()
fig.savefig(sys.argv[2], dpi=100)
EOF
  echo "plot: $OUT/sweep.png" >&2
else
  echo "no matplotlib: table only (pip install matplotlib for the plot)" >&2
fi
