#!/usr/bin/env bash
# Two ferrocache variants, A and B, side by side at the same core counts:
# for each N and round, A, B, B, A, so drift on a shared host (a neighbour's
# load coming and going) falls on both alike. A variant is a binary and its
# flags. Meant for a many-core machine (servers on CPUs 0..N-1, the load
# generator on the CPUs after them), like benches/scaling.sh.
#
#   B_ARGS="--spin-us 0" bash benches/ab.sh          # the defaults against no spin
#   A_BIN=/tmp/ferrocache-old bash benches/ab.sh     # an older build against this one
#
# Per load: ops/s, p99, server CPU µs per op (utime + stime of every thread,
# from /proc, over the load) and utilisation (that CPU time / wall / N).
# Printed: each variant's means (ops/s range in brackets), B ÷ A, and each
# variant's N ÷ its one-core figure when NS includes 1.
#
# Environment: A_BIN (default: this tree's release build), A_ARGS (""),
# B_BIN (default A_BIN), B_ARGS (""), NS ("1 2"), PIPELINES ("1 16"),
# ROUNDS (2), DURATION (s per load, 4), CONNS_PER_CORE (64), KEYS (100000),
# VALUE_SIZE (100), RATIO (1:10), MEMORY_MB (1024), LOADGEN_CPUS (default:
# the CPUs from max(NS) on), LOADGEN_THREADS (8), LOADGEN (a prebuilt load
# generator: skips the cargo build).
set -euo pipefail
# shellcheck source=loadgen/servers.sh
source "$(dirname "${BASH_SOURCE[0]}")/loadgen/servers.sh"

NS="${NS:-1 2}"
PIPELINES="${PIPELINES:-1 16}"
ROUNDS="${ROUNDS:-2}"
DURATION="${DURATION:-4}"
CONNS_PER_CORE="${CONNS_PER_CORE:-64}"
KEYS="${KEYS:-100000}"
VALUE_SIZE="${VALUE_SIZE:-100}"
RATIO="${RATIO:-1:10}"
MEMORY_MB="${MEMORY_MB:-1024}"
LOADGEN_THREADS="${LOADGEN_THREADS:-8}"
A_ARGS="${A_ARGS:-}"
B_ARGS="${B_ARGS:-}"

max_n=0
for n in $NS; do ((n > max_n)) && max_n=$n; done
cpus=$(nproc)
((max_n < cpus)) || die "NS needs CPUs for the load generator: max N $max_n, $cpus CPUs"
LOADGEN_CPUS="${LOADGEN_CPUS:-$max_n-$((cpus - 1))}"

FERROCACHE_BIN="${A_BIN:-}"
if [[ -z "${LOADGEN:-}" ]]; then
  build_binaries
elif [[ -z "$FERROCACHE_BIN" ]]; then
  (cd "$ROOT" && cargo build --release --bin ferrocache >&2)
  FERROCACHE_BIN="$ROOT/target/release/ferrocache"
fi
A_BIN="${A_BIN:-$FERROCACHE_BIN}"
B_BIN="${B_BIN:-$A_BIN}"
for bin in "$A_BIN" "$B_BIN"; do [[ -x "$bin" ]] || die "$bin is not executable"; done
echo "A: $A_BIN $A_ARGS" >&2
echo "B: $B_BIN $B_ARGS" >&2

TSV="$BENCH_TMP/ab.tsv"
: >"$TSV"

# measure VARIANT N ROUND: one server, prefilled, then one load per pipeline.
measure() {
  local variant="$1" n="$2" round="$3" bin args
  if [[ $variant == A ]]; then bin="$A_BIN" args="$A_ARGS"; else bin="$B_BIN" args="$B_ARGS"; fi
  local conns=$((CONNS_PER_CORE * n))
  # shellcheck disable=SC2086 # flags split on purpose
  FERROCACHE_BIN="$bin" start_ferrocache "$variant$n" "0-$((n - 1))" \
    --cores "$n" --memory-mb "$MEMORY_MB" $args
  local addr="${SRV_ADDR[$variant$n]}" pid="${SRV_PID[$variant$n]}"
  local lg=(--server "$addr" --conns "$conns" --threads "$LOADGEN_THREADS" --keys "$KEYS"
    --value-size "$VALUE_SIZE" --ratio "$RATIO")
  run_loadgen "$BENCH_TMP/prefill.out" "$LOADGEN_CPUS" "${lg[@]}" --prefill --requests 0
  local p out t0 t1 w0 w1
  for p in $PIPELINES; do
    out="$BENCH_TMP/$variant-$n-$p-$round.out"
    t0=$(cpu_ticks "$pid") w0=$(date +%s%N)
    run_loadgen "$out" "$LOADGEN_CPUS" "${lg[@]}" --pipeline "$p" --duration "$DURATION"
    t1=$(cpu_ticks "$pid") w1=$(date +%s%N)
    local ops_s ops p99
    ops_s=$(result "$out" ops_per_sec) ops=$(result "$out" ops) p99=$(result "$out" p99_us)
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$variant" "$n" "$p" "$round" "$ops_s" "$p99" \
      "$(calc "($t1 - $t0) / $CLK_TCK * 1000000 / $ops" 3)" \
      "$(calc "($t1 - $t0) / $CLK_TCK * 1000000000 / ($w1 - $w0) / $n")" >>"$TSV"
  done
  stop_server "$variant$n"
}

for n in $NS; do
  for round in $(seq "$ROUNDS"); do
    for variant in A B B A; do
      measure "$variant" "$n" "$round"
    done
  done
done

echo
echo "A: $A_BIN $A_ARGS"
echo "B: $B_BIN $B_ARGS"
echo "loads: ${CONNS_PER_CORE} connections per server core, ${VALUE_SIZE}-byte values, $RATIO set:get,"
echo "$KEYS keys, ${DURATION}s each; servers on CPUs 0..N-1, load generator on $LOADGEN_CPUS;"
echo "each variant measured twice per round (A B B A), $ROUNDS round(s)."
awk -F'\t' '
  { k = $1 SUBSEP $2 SUBSEP $3; c[k]++; ops[k] += $5; p99[k] += $6; cpu[k] += $7; util[k] += $8
    if (!(k in lo) || $5 < lo[k]) lo[k] = $5; if ($5 > hi[k]) hi[k] = $5
    if (!seen_n[$2]++) ns[++nn] = $2; if (!seen_p[$3]++) ps[++np] = $3 }
  function m(a, k) { return a[k] / c[k] }
  END {
    printf "\n%-8s %3s %5s %11s %21s %9s %10s %5s\n", "variant", "N", "pipe", "ops/s", "range", "p99_us", "cpu_us/op", "util"
    for (v = 1; v <= 2; v++) {
      var = (v == 1) ? "A" : "B"
      for (i = 1; i <= nn; i++) for (j = 1; j <= np; j++) {
        k = var SUBSEP ns[i] SUBSEP ps[j]
        if (!(k in c)) continue
        printf "%-8s %3s %5s %11d %21s %9.0f %10.3f %5.2f\n", var, ns[i], ps[j], m(ops, k),
          sprintf("[%d-%d]", lo[k], hi[k]), m(p99, k), m(cpu, k), m(util, k)
      }
    }
    printf "\n%3s %5s %10s %12s %12s %12s\n", "N", "pipe", "B/A ops", "B/A cpu/op", "A: N/1 ops", "B: N/1 ops"
    for (i = 1; i <= nn; i++) for (j = 1; j <= np; j++) {
      a = "A" SUBSEP ns[i] SUBSEP ps[j]; b = "B" SUBSEP ns[i] SUBSEP ps[j]
      a1 = "A" SUBSEP 1 SUBSEP ps[j]; b1 = "B" SUBSEP 1 SUBSEP ps[j]
      sa = (a1 in c) ? sprintf("%.2fx", m(ops, a) / m(ops, a1)) : "-"
      sb = (b1 in c) ? sprintf("%.2fx", m(ops, b) / m(ops, b1)) : "-"
      printf "%3s %5s %9.2fx %11.2fx %12s %12s\n", ns[i], ps[j], m(ops, b) / m(ops, a), m(cpu, b) / m(cpu, a), sa, sb
    }
  }' "$TSV"
