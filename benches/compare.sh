#!/usr/bin/env bash
# Side-by-side throughput, latency and CPU cost: ferrocache --cores 1 against
# memcached -t 1, same memory, same load, same run. Each server is pinned to
# SERVER_CPU and the load generator to LOADGEN_CPU so neither steals from the
# other; the servers take turns, so only one is loaded at a time.
#
#   bash benches/compare.sh            (make bench-compare)
#   DURATION=3 bash benches/compare.sh
#
# Environment: DURATION (s per load, 10), MEMORY_MB (1024), CONNS (50),
# KEYS (100000), VALUE_SIZE (100), RATIO (1:10), PIPELINES ("1 16"),
# SERVER_CPU (0), LOADGEN_CPU (1), SCALE (auto: on with >= 4 CPUs; 1 forces
# it), SCALE_SERVER_CPUS (0,1), SCALE_LOADGEN_CPUS (2,3), ROUNDS (1: on a noisy machine use 3; each
# figure is then from the median-throughput round), FERROCACHE_BIN (skip the
# build, use this binary), STRICT=1 (exit 1 when a target is missed),
# PROTOCOLS ("classic meta": meta runs mg/ms through the load generator's
# --protocol meta, labelled meta-1 and meta-16).
set -euo pipefail
# shellcheck source=loadgen/servers.sh
source "$(dirname "${BASH_SOURCE[0]}")/loadgen/servers.sh"

DURATION="${DURATION:-10}"
MEMORY_MB="${MEMORY_MB:-1024}"
CONNS="${CONNS:-50}"
KEYS="${KEYS:-100000}"
VALUE_SIZE="${VALUE_SIZE:-100}"
RATIO="${RATIO:-1:10}"
PIPELINES="${PIPELINES:-1 16}"
SERVER_CPU="${SERVER_CPU:-0}"
# On a 1-CPU machine nothing can be kept apart; leave the generator unpinned.
if [[ -z ${LOADGEN_CPU+set} ]]; then
  LOADGEN_CPU=""
  (($(nproc) > 1)) && LOADGEN_CPU=1
fi
STRICT="${STRICT:-0}"
ROUNDS="${ROUNDS:-1}"
PROTOCOLS="${PROTOCOLS:-classic meta}"
# One label per (protocol, pipeline): "16" for classic, "meta-16" for meta.
LABELS=""
for proto in $PROTOCOLS; do
  for p in $PIPELINES; do
    if [[ $proto == meta ]]; then LABELS+=" meta-$p"; else LABELS+=" $p"; fi
  done
done

build_binaries
ensure_memcached
NCPU="$(nproc)"
((NCPU >= 2)) || echo "warning: 1 CPU: server and load generator share it; figures are only indicative" >&2

start_ferrocache fc "$SERVER_CPU" --cores 1 --memory-mb "$MEMORY_MB"
start_memcached mc "$SERVER_CPU" "$MEMORY_MB" -t 1

LOAD=(--conns "$CONNS" --keys "$KEYS" --value-size "$VALUE_SIZE" --ratio "$RATIO")
for s in fc mc; do
  echo "prefilling $s with $KEYS keys..." >&2
  run_loadgen "$BENCH_TMP/prefill-$s" "$LOADGEN_CPU" --server "${SRV_ADDR[$s]}" \
    "${LOAD[@]}" --prefill --requests 0
done

declare -A OPS P99 CPU SYS
CLIENT_CPU_MAX=0
# measure NAME PIPELINE ROUND: one timed load; records ops/s, p99 and CPU
# µs/op under [NAME,PIPELINE,ROUND].
measure() {
  local s="$1" label="$2" r="$3" out="$BENCH_TMP/load-$1-$2-$3" p proto=classic
  p="${label#meta-}"
  [[ $label == meta-* ]] && proto=meta
  echo "load: $s $proto pipeline $p for ${DURATION}s (round $r of $ROUNDS)" >&2
  local t0 t1 k0 k1
  t0="$(cpu_ticks "${SRV_PID[$s]}")" k0="$(sys_ticks "${SRV_PID[$s]}")"
  run_loadgen "$out" "$LOADGEN_CPU" --server "${SRV_ADDR[$s]}" "${LOAD[@]}" \
    --pipeline "$p" --protocol "$proto" --duration "$DURATION"
  t1="$(cpu_ticks "${SRV_PID[$s]}")" k1="$(sys_ticks "${SRV_PID[$s]}")"
  p="$label"
  OPS[$s,$p,$r]="$(result "$out" ops_per_sec)"
  P99[$s,$p,$r]="$(result "$out" p99_us)"
  # The server's CPU over the run includes the drain after the deadline,
  # so divide by every operation the generator completed.
  CPU[$s,$p,$r]="$(calc "($t1 - $t0) / $CLK_TCK * 1000000 / $(result "$out" ops)" 3)"
  SYS[$s,$p,$r]="$(calc "($k1 - $k0) / $CLK_TCK * 1000000 / $(result "$out" ops)" 3)"
  CLIENT_CPU_MAX="$(calc "max($CLIENT_CPU_MAX, $(result "$out" client_cpu))")"
}
# max() for calc's awk.
calc() { awk "function max(a, b) { return a > b ? a : b } BEGIN { printf \"%.${2:-2}f\", $1 }"; }

# Rounds alternate the servers so slow drift on a shared machine hits both.
for ((r = 1; r <= ROUNDS; r++)); do
  for p in $LABELS; do
    measure fc "$p" "$r"
    measure mc "$p" "$r"
  done
done
# Keep, per server and pipeline, the round with the median throughput.
for p in $LABELS; do
  for s in fc mc; do
    median="$(for ((r = 1; r <= ROUNDS; r++)); do echo "${OPS[$s,$p,$r]} $r"; done |
      sort -n | sed -n "$(((ROUNDS + 1) / 2))p" | cut -d' ' -f2)"
    OPS[$s,$p]="${OPS[$s,$p,$median]}"
    P99[$s,$p]="${P99[$s,$p,$median]}"
    CPU[$s,$p]="${CPU[$s,$p,$median]}"
    SYS[$s,$p]="${SYS[$s,$p,$median]}"
  done
done

SCALE_SERVER_CPUS="${SCALE_SERVER_CPUS:-0,1}"
SCALE_LOADGEN_CPUS="${SCALE_LOADGEN_CPUS:-2,3}"
if [[ -z ${SCALE:-} ]]; then
  SCALE=0
  ((NCPU >= 4)) && SCALE=1
fi
SCALING=""
if ((SCALE == 1)); then
  # Scaling: the same load at pipeline 16 against --cores 2 (on both server
  # CPUs) and --cores 1 (on the first), the generator on two other CPUs with
  # two threads so it keeps up.
  stop_server fc
  stop_server mc
  for n in 1 2; do
    cpus="$SCALE_SERVER_CPUS"
    ((n == 1)) && cpus="${SCALE_SERVER_CPUS%%,*}"
    start_ferrocache "fc$n" "$cpus" --cores "$n" --memory-mb "$MEMORY_MB"
    run_loadgen "$BENCH_TMP/prefill-fc$n" "$SCALE_LOADGEN_CPUS" --server "${SRV_ADDR[fc$n]}" \
      "${LOAD[@]}" --prefill --requests 0
    run_loadgen "$BENCH_TMP/scale-$n" "$SCALE_LOADGEN_CPUS" --server "${SRV_ADDR[fc$n]}" \
      "${LOAD[@]}" --threads 2 --pipeline 16 --duration "$DURATION"
    stop_server "fc$n"
  done
  SCALING="$(calc "$(result "$BENCH_TMP/scale-2" ops_per_sec) / $(result "$BENCH_TMP/scale-1" ops_per_sec)")"
fi

echo
echo "ferrocache --cores 1 vs memcached -t 1: $CONNS conns, ${VALUE_SIZE}-byte values," \
  "$RATIO set:get, $KEYS keys, ${MEMORY_MB} MB, ${DURATION}s per load x $ROUNDS rounds, $NCPU CPUs;" \
  "loadgen peak $CLIENT_CPU_MAX CPUs"
printf '%-18s %8s %12s %10s %12s %12s\n' server pipeline ops/s p99_us cpu_us/op sys_us/op
for p in $LABELS; do
  for s in fc mc; do
    name=ferrocache
    [[ $s == mc ]] && name=memcached
    printf '%-18s %8s %12s %10s %12s %12s\n' "$name" "$p" "${OPS[$s,$p]}" "${P99[$s,$p]}" \
      "${CPU[$s,$p]}" "${SYS[$s,$p]}"
  done
  printf '%-18s %8s %11sx %9sx %11sx %11sx\n' "ferrocache/memc." "$p" \
    "$(calc "${OPS[fc,$p]} / ${OPS[mc,$p]}")" \
    "$(calc "${P99[fc,$p]} / ${P99[mc,$p]}")" \
    "$(calc "${CPU[fc,$p]} / ${CPU[mc,$p]}")" \
    "$(calc "${SYS[fc,$p]} / ${SYS[mc,$p]}")"
done
# A saturated one-core server serves 1 / (CPU per op). Its kernel time per
# op (sys_us/op: the system calls, and the loopback TCP work its sends do
# for the client) stays whatever its own code costs, so memcached's CPU per
# op over ferrocache's kernel time per op bounds the throughput ratio that
# any user-space work could reach on this host.
kernel_bound() { calc "${CPU[mc,$1]} / max(${SYS[fc,$1]}, 0.001)"; }

missed=0
verdict() { # verdict TEXT CONDITION
  local v
  v="$(pass_fail "$2")"
  [[ $v == PASS ]] || missed=1
  echo "  $v  $1"
}
echo "targets:"
if [[ " $LABELS " == *" 16 "* ]]; then
  verdict "pipeline 16: ops/s >= 4x memcached ($(calc "${OPS[fc,16]} / ${OPS[mc,16]}")x)" \
    "${OPS[fc,16]} >= 4 * ${OPS[mc,16]}"
  echo "        kernel bound: $(kernel_bound 16)x"
fi
if [[ " $LABELS " == *" 1 "* ]]; then
  verdict "pipeline 1: ops/s >= memcached ($(calc "${OPS[fc,1]} / ${OPS[mc,1]}")x)" \
    "${OPS[fc,1]} >= ${OPS[mc,1]}"
  verdict "pipeline 1: CPU/op <= 0.9x memcached ($(calc "${CPU[fc,1]} / ${CPU[mc,1]}")x)" \
    "${CPU[fc,1]} <= 0.9 * ${CPU[mc,1]}"
  verdict "pipeline 1: p99 <= memcached ($(calc "${P99[fc,1]} / ${P99[mc,1]}")x)" \
    "${P99[fc,1]} <= ${P99[mc,1]}"
fi
if [[ " $LABELS " == *" meta-16 "* ]]; then
  verdict "meta pipeline 16: ops/s >= 4x memcached ($(calc "${OPS[fc,meta-16]} / ${OPS[mc,meta-16]}")x)" \
    "${OPS[fc,meta-16]} >= 4 * ${OPS[mc,meta-16]}"
  echo "        kernel bound: $(kernel_bound meta-16)x (memcached's CPU/op over ferrocache's" \
    "sys time per op: the ratio with no user-space time at all)"
fi
if [[ " $LABELS " == *" meta-1 "* ]]; then
  verdict "meta pipeline 1: ops/s >= memcached ($(calc "${OPS[fc,meta-1]} / ${OPS[mc,meta-1]}")x)" \
    "${OPS[fc,meta-1]} >= ${OPS[mc,meta-1]}"
fi
if [[ -n "$SCALING" ]]; then
  s1="$(result "$BENCH_TMP/scale-1" ops_per_sec)"
  s2="$(result "$BENCH_TMP/scale-2" ops_per_sec)"
  verdict "scaling: --cores 2 >= 1.8x --cores 1 at pipeline 16 (${SCALING}x; $s2 vs $s1 ops/s)" \
    "$SCALING >= 1.8"
else
  echo "  SKIP  scaling --cores 2 vs 1: needs >= 4 CPUs, this machine has $NCPU"
fi
if [[ $(pass_fail "$CLIENT_CPU_MAX > 0.9") == PASS ]]; then
  echo "warning: the load generator used up to $CLIENT_CPU_MAX CPUs; it may have limited the" \
    "throughput figures" >&2
fi
if ((STRICT == 1 && missed == 1)); then
  exit 1
fi
