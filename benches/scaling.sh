#!/usr/bin/env bash
# Core scaling on a many-core machine (at least 4 CPUs; meant for 16):
#
#   fc    ferrocache --cores N            on CPUs 0..N-1, one shared port
#   mc    memcached -t N                  on CPUs 0..N-1
#   ind   N independent ferrocache --cores 1 processes, one per CPU 0..N-1,
#         each on its own port with 1/N of the keys and of the memory, the
#         load split evenly: the same work with no cross-shard forwarding
#   spin  ferrocache --cores N --spin-us SPIN_US --spin-busy-pct SPIN_BUSY_PCT
#         (for N in SPIN_NS): by default a core that always polls, against
#         fc's gated poll; SPIN_US=0 gives one that never does
#   ow    ferrocache --cores N --owner-writes off (for N in OW_NS): every
#         forwarded reply goes back through the connection's core, against
#         fc's owner writing a lone request's reply (round 14 of
#         docs/PERFORMANCE.md asks whether that pays when saturated)
#   glm   ferrocache --cores N --socket-io glommio (for N in GLOMMIO_NS)
#
# for N in NS and each pipeline depth, the load generator on LOADGEN_CPUS
# (default 8-15) with LOADGEN_THREADS threads. One loadgen process drives a
# one-port server; for `ind`, one process per server, each on its own slice
# of LOADGEN_CPUS, and the figures are summed (p50/p99: the worst process).
# Every server is prefilled, measured at each pipeline, then stopped, so only
# one server runs at a time.
#
# Per load: ops/s; p50/p99; server CPU µs/op (utime+stime of every thread,
# /proc/PID/stat, over the load, divided by operations) and its kernel
# (stime) part; server utilisation
# (that CPU time / wall time / N: near 1.0 means the server's cores are
# saturated, well below means the generator or waiting limits the run);
# context switches per op (every server thread, /proc/PID/task/*/status);
# the generator's own CPU use; busy share of the server CPUs and of the
# generator CPUs (/proc/stat, softirq included), and the softirq and steal
# shares of the server CPUs; per-executor CPU (fc, spin, ow, glm).
#
#   bash benches/scaling.sh
#   NS="1 2" PIPELINES=16 DURATION=3 bash benches/scaling.sh
#
# Environment: NS ("1 2 4 8"), PIPELINES ("1 16"), DURATION (s per load, 5),
# ROUNDS (1; rounds repeat everything, the summary gives mean and range),
# CONNS_PER_CORE (64: connections per server core, at every pipeline),
# KEYS (100000), VALUE_SIZE (100), RATIO (1:10), MEMORY_MB (1024, total for
# each kind), LOADGEN_CPUS (8-15), LOADGEN_THREADS (number of LOADGEN_CPUS),
# KINDS ("fc mc ind spin ow glm"), SPIN_US (50), SPIN_BUSY_PCT (0), SPIN_NS
# ("8"), OW_NS ("8"), GLOMMIO_NS ("1 2 8"), RESULTS_DIR (where
# raw outputs, results.tsv and summary.txt go; default a new directory under
# /tmp, printed), FERROCACHE_BIN and LOADGEN (prebuilt binaries: skip the
# cargo build), MEMCACHED_BIN (default: memcached on PATH), MEMCACHED_LIBS
# (a directory of shared libraries memcached needs, for a machine without
# them), SUMMARIZE (a RESULTS_DIR: only print its tables again).
#
# Server CPUs are always 0..N-1, so LOADGEN_CPUS must not overlap 0..max(NS)-1.
set -euo pipefail
# shellcheck source=loadgen/servers.sh
source "$(dirname "${BASH_SOURCE[0]}")/loadgen/servers.sh"

# summarize TSV: the tables (means over rounds) from a results.tsv.
summarize() {
  awk -F'\t' '
  NR == 1 { next }
  { k = $1 SUBSEP $2 SUBSEP $3; c[k]++; if ($4 > rounds) rounds = $4
    ops[k] += $7; p99[k] += $9; cpu[k] += $10; util[k] += $11; cs[k] += $12; cl[k] += $13
    lgb[k] += $15; lgm[k] += $16; sy[k] += $20; si[k] += $21; stl[k] += $22
    if (!(k in lo) || $7 < lo[k]) lo[k] = $7; if ($7 > hi[k]) hi[k] = $7
    if ($17 != "-") { emin[k] += $17; emax[k] += $18; ek[k]++ }
    if ($19 != "ok") bad[k] = bad[k] " r" $4 ":" $19
    if (!seen_kind[$1]++) kinds[++nk] = $1
    if (!seen_n[$2]++) ns[++nn] = $2
    if (!seen_p[$3]++) ps[++np] = $3 }
  function m(a, k) { return a[k] / c[k] }
  function has(kind, n, p) { return ((kind SUBSEP n SUBSEP p) in c) }
  function o(kind, n, p) { return m(ops, kind SUBSEP n SUBSEP p) }
  END {
    names["fc"] = "ferrocache --cores N"; names["mc"] = "memcached -t N"
    names["ind"] = "N x ferrocache --cores 1"; names["spin"] = "ferrocache --cores N --spin-us"
    names["glm"] = "ferrocache --socket-io glommio"; names["ow"] = "ferrocache --owner-writes off"
    printf "Means over %d round(s); ops/s range in brackets when rounds > 1.\n", rounds
    printf "server util = server CPU time / wall / N; client = load generator CPUs busy (of its threads);\n"
    printf "lg busy = mean (max) busy share of the generator CPUs from /proc/stat; exec = per-executor util min..max;\n"
    printf "sys = kernel part of cpu_us/op; softirq, steal = shares of the server CPUs (/proc/stat).\n\n"
    for (ip = 1; ip <= np; ip++) {
      p = ps[ip]
      printf "== pipeline %s ==\n", p
      printf "%-32s %3s %11s %8s %10s %9s %7s %6s %8s %7s %13s %11s %7s %6s %s\n", "server", "N", "ops/s", "x N=1", "p99_us", "cpu_us/op", "sys", "util", "ctxsw/op", "client", "lg busy", "exec", "softirq", "steal", ""
      for (ik = 1; ik <= nk; ik++) {
        kind = kinds[ik]
        for (in_ = 1; in_ <= nn; in_++) {
          n = ns[in_]; k = kind SUBSEP n SUBSEP p
          if (!(k in c)) continue
          base = ""
          if (has("fc", 1, p)) base = sprintf("%.2fx", m(ops, k) / o("fc", 1, p))
          if (kind == "mc" && has("mc", 1, p)) base = sprintf("%.2fx", m(ops, k) / o("mc", 1, p))
          rng = (c[k] > 1) ? sprintf(" [%d-%d]", lo[k], hi[k]) : ""
          ex = (k in ek) ? sprintf("%.2f..%.2f", emin[k] / ek[k], emax[k] / ek[k]) : "-"
          printf "%-32s %3s %11d %8s %10.1f %9.3f %7.3f %6.2f %8.3f %7.2f %6.2f (%.2f) %11s %7.3f %6.3f%s%s\n", names[kind], n, m(ops, k), base,
            m(p99, k), m(cpu, k), m(sy, k), m(util, k), m(cs, k), m(cl, k), m(lgb, k), m(lgm, k), ex, m(si, k), m(stl, k), rng, (k in bad) ? " FAILED:" bad[k] : ""
        }
      }
      printf "\nratios at pipeline %s:\n", p
      printf "%3s %14s %16s %18s %18s\n", "N", "fc(N)/fc(1)", "fc(N)/mc(N)", "fc(N)/ind(N) ops", "fc/ind cpu_us/op"
      for (in_ = 1; in_ <= nn; in_++) {
        n = ns[in_]
        a = has("fc", n, p) && has("fc", 1, p) ? sprintf("%.2fx", o("fc", n, p) / o("fc", 1, p)) : "-"
        b = has("fc", n, p) && has("mc", n, p) ? sprintf("%.2fx", o("fc", n, p) / o("mc", n, p)) : "-"
        d = has("fc", n, p) && has("ind", n, p) ? sprintf("%.2fx", o("fc", n, p) / o("ind", n, p)) : "-"
        e = has("fc", n, p) && has("ind", n, p) ? sprintf("%.2fx", m(cpu, "fc" SUBSEP n SUBSEP p) / m(cpu, "ind" SUBSEP n SUBSEP p)) : "-"
        printf "%3s %14s %16s %18s %18s\n", n, a, b, d, e
      }
      printf "\n"
    }
  }' "$1"
}

# SUMMARIZE=DIR: print the tables of an earlier run's DIR/results.tsv and stop.
if [[ -n "${SUMMARIZE:-}" ]]; then
  summarize "$SUMMARIZE/results.tsv"
  exit 0
fi

NS="${NS:-1 2 4 8}"
PIPELINES="${PIPELINES:-1 16}"
DURATION="${DURATION:-5}"
ROUNDS="${ROUNDS:-1}"
CONNS_PER_CORE="${CONNS_PER_CORE:-64}"
KEYS="${KEYS:-100000}"
VALUE_SIZE="${VALUE_SIZE:-100}"
RATIO="${RATIO:-1:10}"
MEMORY_MB="${MEMORY_MB:-1024}"
LOADGEN_CPUS="${LOADGEN_CPUS:-8-15}"
KINDS="${KINDS:-fc mc ind spin ow glm}"
SPIN_US="${SPIN_US:-50}"
SPIN_BUSY_PCT="${SPIN_BUSY_PCT:-0}"
SPIN_NS="${SPIN_NS:-8}"
OW_NS="${OW_NS:-8}"
GLOMMIO_NS="${GLOMMIO_NS:-1 2 8}"
if [[ -z "${RESULTS_DIR:-}" ]]; then
  RESULTS_DIR="$(mktemp -d "${TMPDIR:-/tmp}/ferrocache-scaling.XXXXXX")"
fi
mkdir -p "$RESULTS_DIR/raw"
TSV="$RESULTS_DIR/results.tsv"
SUMMARY="$RESULTS_DIR/summary.txt"

# expand_cpus LIST: "8-11,14" -> "8 9 10 11 14".
expand_cpus() {
  local part parts list=() range=()
  IFS=, read -ra parts <<<"$1"
  for part in "${parts[@]}"; do
    if [[ $part == *-* ]]; then
      mapfile -t range < <(seq "${part%-*}" "${part#*-}")
      list+=("${range[@]}")
    else
      list+=("$part")
    fi
  done
  echo "${list[@]}"
}
# join_cpus CPU...: "8 9 10" -> "8,9,10".
join_cpus() { local IFS=,; echo "$*"; }

read -ra LG_CPUS <<<"$(expand_cpus "$LOADGEN_CPUS")"
LOADGEN_THREADS="${LOADGEN_THREADS:-${#LG_CPUS[@]}}"
NCPU="$(nproc)"
max_n=0
for n in $NS; do
  if ((n > max_n)); then max_n=$n; fi
done
for c in "${LG_CPUS[@]}"; do
  if ((c >= NCPU)); then die "LOADGEN_CPUS names CPU $c; this machine has $NCPU"; fi
  # ALLOW_OVERLAP=1 only to try the script out on a small machine.
  if ((c < max_n)) && [[ ${ALLOW_OVERLAP:-0} != 1 ]]; then
    die "LOADGEN_CPUS ($LOADGEN_CPUS) overlaps the server CPUs 0..$((max_n - 1))"
  fi
done
((max_n <= NCPU)) || die "NS asks for $max_n server CPUs; this machine has $NCPU"

if [[ -n "${LOADGEN:-}" && -x "${LOADGEN:-}" && -n "${FERROCACHE_BIN:-}" ]]; then
  [[ -x "$FERROCACHE_BIN" ]] || die "FERROCACHE_BIN $FERROCACHE_BIN is not executable"
else
  build_binaries
fi
if [[ -z "${MEMCACHED_BIN:-}" ]]; then
  ensure_memcached
fi
if [[ -n "${MEMCACHED_LIBS:-}" ]]; then
  # A wrapper that execs memcached (same PID) with its libraries, so that
  # nothing else sees them.
  real="$MEMCACHED_BIN"
  MEMCACHED_BIN="$BENCH_TMP/memcached"
  printf '#!/bin/sh\nLD_LIBRARY_PATH=%q exec %q "$@"\n' "$MEMCACHED_LIBS" "$real" >"$MEMCACHED_BIN"
  chmod +x "$MEMCACHED_BIN"
fi

# ---- probes ---------------------------------------------------------------

# ticks PID...: CPU time of every thread of these processes, in clock ticks.
ticks() {
  local t=0 p
  for p in "$@"; do t=$((t + $(cpu_ticks "$p"))); done
  echo "$t"
}
# sys_ticks PID...: system (kernel) CPU time of these processes, in ticks.
sys_ticks() {
  local t=0 p
  for p in "$@"; do t=$((t + $(sed 's/.*) //' "/proc/$p/stat" | awk '{ print $13 }'))); done
  echo "$t"
}
# ctxsw PID...: context switches (voluntary + involuntary) of every thread.
ctxsw() {
  local p
  for p in "$@"; do cat /proc/"$p"/task/*/status 2>/dev/null; done |
    awk '/^(voluntary|nonvoluntary)_ctxt_switches:/ { s += $2 } END { print s + 0 }'
}
# thread_ticks PID: "TID NAME TICKS" for each thread.
thread_ticks() {
  local f
  for f in /proc/"$1"/task/*/stat; do
    sed -E 's/^([0-9]+) \((.*)\) /\1 \2 /' "$f" 2>/dev/null | awk '{ print $1, $2, $14 + $15 }'
  done
}
# cpustat: "cpuN busy total softirq steal" per CPU from /proc/stat (busy:
# all but idle and iowait).
cpustat() {
  awk '/^cpu[0-9]/ { t = 0; for (i = 2; i <= 9; i++) t += $i; print $1, t - $5 - $6, t, $8, $9 }' /proc/stat
}
now() { date +%s.%N; }

# ---- one load -----------------------------------------------------------------

printf 'kind\tn\tpipeline\tround\tops\tsecs\tops_per_sec\tp50_us\tp99_us\tcpu_us_per_op\tserver_util\tctxsw_per_op\tclient_cpu\tsrv_cpus_busy\tlg_cpus_busy\tlg_cpu_max_busy\texec_util_min\texec_util_max\tstatus\tsys_us_per_op\tsrv_softirq\tsrv_steal\n' >"$TSV"

# measure KIND N P ROUND: one timed load on the servers in the arrays
# SERVERS (names in SRV_PID/SRV_ADDR), loadgen process i on LG_SLICE[i]
# with LG_KEYS keys and CONNS connections each.
measure() {
  local kind="$1" n="$2" p="$3" r="$4" tag="$1-n$2-p$3-r$4"
  local pids=() s i
  for s in "${SERVERS[@]}"; do pids+=("${SRV_PID[$s]}"); done
  echo "load: $tag (${#SERVERS[@]} server process(es), ${DURATION}s)" >&2
  local tk0 cs0 w0 st0 th0=""
  if ((${#pids[@]} == 1)); then th0="$(thread_ticks "${pids[0]}")"; fi
  st0="$(cpustat)"
  cs0="$(ctxsw "${pids[@]}")"
  tk0="$(ticks "${pids[@]}")"
  local sy0 sy1
  sy0="$(sys_ticks "${pids[@]}")"
  w0="$(now)"
  local lpids=() outs=()
  for i in "${!SERVERS[@]}"; do
    local out="$RESULTS_DIR/raw/$tag.lg$i"
    outs+=("$out")
    # shellcheck disable=SC2046
    timeout $((DURATION + 60)) taskset -c "${LG_SLICE[$i]}" "$LOADGEN" \
      --server "${SRV_ADDR[${SERVERS[$i]}]}" --conns "$CONNS" --threads "$LG_THREADS_EACH" \
      --keys "$LG_KEYS" --value-size "$VALUE_SIZE" --ratio "$RATIO" --pipeline "$p" \
      --duration "$DURATION" --seed $((r * 1000 + i + 1)) >"$out" 2>&1 &
    lpids+=($!)
  done
  local status=ok rc
  for i in "${!lpids[@]}"; do
    rc=0
    wait "${lpids[$i]}" || rc=$?
    if ((rc != 0)); then
      status="loadgen$i-rc$rc"
      echo "  loadgen $i exited $rc:" >&2
      tail -5 "${outs[$i]}" | sed 's/^/    /' >&2
    fi
  done
  local tk1 cs1 w1 st1 th1=""
  tk1="$(ticks "${pids[@]}")"
  sy1="$(sys_ticks "${pids[@]}")"
  cs1="$(ctxsw "${pids[@]}")"
  w1="$(now)"
  st1="$(cpustat)"
  if ((${#pids[@]} == 1)); then th1="$(thread_ticks "${pids[0]}")"; fi
  {
    echo "# server threads, ticks before/after (CLK_TCK $CLK_TCK), wall $w0 .. $w1"
    join <(sort <<<"$th0") <(sort <<<"$th1") 2>/dev/null || true
    echo "# /proc/stat cpu busy total, before / after"
    paste -d' ' <(echo "$st0") <(echo "$st1")
  } >"$RESULTS_DIR/raw/$tag.probes"

  # Sum the generators' figures; the worst p50/p99 of them.
  local agg
  agg="$(for o in "${outs[@]}"; do grep '^RESULT ' "$o" || echo "RESULT ops=0"; done |
    awk '{ for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
           ops += v["ops"]; rate += v["ops_per_sec"]; cpu += v["client_cpu"]
           if (v["secs"] > secs) secs = v["secs"]
           if (v["p50_us"] > p50) p50 = v["p50_us"]
           if (v["p99_us"] > p99) p99 = v["p99_us"]; delete v }
         END { printf "%d %.3f %d %.1f %.1f %.2f", ops, secs, rate, p50, p99, cpu }')"
  local ops secs rate p50 p99 ccpu
  read -r ops secs rate p50 p99 ccpu <<<"$agg"
  local srv_list lg_list
  srv_list="$(seq -s' ' 0 $((n - 1)))"
  lg_list="${LG_CPUS[*]}"
  local derived
  derived="$(paste -d' ' <(echo "$st0") <(echo "$st1") | awk \
    -v srv=" $srv_list " -v lg=" $lg_list " -v dt="$((tk1 - tk0))" -v hz="$CLK_TCK" \
    -v ops="$ops" -v w="$(awk -v a="$w0" -v b="$w1" 'BEGIN { print b - a }')" -v n="$n" \
    -v dcs="$((cs1 - cs0))" -v dsy="$((sy1 - sy0))" '
    # $1-$5: cpuN busy total softirq steal before; $6-$10: the same after.
    { c = substr($1, 4); tot = (($8 - $3) > 0 ? ($8 - $3) : 1); busy = ($7 - $2) / tot
      if (index(srv, " " c " ")) { sb += busy; sn++; ssi += ($9 - $4) / tot; sst += ($10 - $5) / tot }
      if (index(lg, " " c " ")) { lb += busy; ln++; if (busy > lm) lm = busy } }
    END { printf "%.3f %.3f %.3f %.3f %.3f %.3f %.3f %.3f %.3f",
            (ops > 0 ? dt / hz * 1e6 / ops : 0), dt / hz / w / n,
            (ops > 0 ? dcs / ops : 0), (sn ? sb / sn : 0), (ln ? lb / ln : 0), lm,
            (ops > 0 ? dsy / hz * 1e6 / ops : 0), (sn ? ssi / sn : 0), (sn ? sst / sn : 0) }')"
  local cpuop util csop sbusy lbusy lmax sysop ssoft ssteal
  read -r cpuop util csop sbusy lbusy lmax sysop ssoft ssteal <<<"$derived"
  # Per-executor utilisation: glommio names executor I's threads
  # ferrocache-I-ID; the CPU of all threads of one name, over the wall time.
  local emin="-" emax="-"
  if [[ -n "$th0" ]]; then
    read -r emin emax <<<"$(join <(sort <<<"$th0") <(sort <<<"$th1") 2>/dev/null |
      awk -v hz="$CLK_TCK" -v w="$(awk -v a="$w0" -v b="$w1" 'BEGIN { print b - a }')" '
        $2 ~ /^ferrocache-[0-9]+-[0-9]+$/ { t[$2] += $5 - $3 }
        END { for (e in t) { u = t[e] / hz / w; if (k++ == 0 || u < mn) mn = u; if (u > mx) mx = u }
              if (k) printf "%.3f %.3f", mn, mx; else print "- -" }')"
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
    "$kind" "$n" "$p" "$r" "$ops" "$secs" "$rate" "$p50" "$p99" "$cpuop" "$util" "$csop" \
    "$ccpu" "$sbusy" "$lbusy" "$lmax" "$emin" "$emax" "$status" "$sysop" "$ssoft" "$ssteal" >>"$TSV"
  echo "  -> $rate ops/s, p99 $p99 us, $cpuop us/op ($sysop sys), server util $util, client $ccpu CPUs, $csop ctxsw/op, executors $emin..$emax" >&2
}

# prefill: every server in SERVERS gets its LG_KEYS keys (one generator each,
# in parallel, on its slice).
prefill() {
  local i lpids=()
  for i in "${!SERVERS[@]}"; do
    taskset -c "${LG_SLICE[$i]}" "$LOADGEN" --server "${SRV_ADDR[${SERVERS[$i]}]}" \
      --conns "$CONNS" --threads "$LG_THREADS_EACH" --keys "$LG_KEYS" \
      --value-size "$VALUE_SIZE" --ratio "$RATIO" --prefill --requests 0 \
      >"$RESULTS_DIR/raw/prefill-${SERVERS[$i]}" 2>&1 &
    lpids+=($!)
  done
  for i in "${!lpids[@]}"; do
    wait "${lpids[$i]}" || die "prefill of ${SERVERS[$i]} failed: $(tail -3 "$RESULTS_DIR/raw/prefill-${SERVERS[$i]}")"
  done
}

# run_kind KIND N ROUND: start, prefill, measure every pipeline, stop.
run_kind() {
  local kind="$1" n="$2" r="$3" s i
  SERVERS=()
  LG_SLICE=()
  local cpus="0"
  if ((n > 1)); then cpus="0-$((n - 1))"; fi
  case $kind in
  fc | spin | ow | glm)
    local extra=()
    if [[ $kind == spin ]]; then extra=(--spin-us "$SPIN_US" --spin-busy-pct "$SPIN_BUSY_PCT"); fi
    if [[ $kind == ow ]]; then extra=(--owner-writes off); fi
    if [[ $kind == glm ]]; then extra=(--socket-io glommio); fi
    start_ferrocache "$kind$n-r$r" "$cpus" --cores "$n" --memory-mb "$MEMORY_MB" "${extra[@]}"
    SERVERS=("$kind$n-r$r")
    ;;
  mc)
    start_memcached "mc$n-r$r" "$cpus" "$MEMORY_MB" -t "$n"
    SERVERS=("mc$n-r$r")
    ;;
  ind)
    for ((i = 0; i < n; i++)); do
      start_ferrocache "ind$n-$i-r$r" "$i" --cores 1 --memory-mb $((MEMORY_MB / n))
      SERVERS+=("ind$n-$i-r$r")
    done
    ;;
  esac
  local procs=${#SERVERS[@]}
  local per=$((${#LG_CPUS[@]} / procs))
  ((per >= 1)) || die "$procs generator processes need at least as many LOADGEN_CPUS"
  for ((i = 0; i < procs; i++)); do
    LG_SLICE+=("$(join_cpus "${LG_CPUS[@]:$((i * per)):$per}")")
  done
  LG_THREADS_EACH=$((LOADGEN_THREADS / procs))
  ((LG_THREADS_EACH >= 1)) || LG_THREADS_EACH=1
  CONNS=$((CONNS_PER_CORE * n / procs))
  LG_KEYS=$((KEYS / procs))
  prefill
  for p in $PIPELINES; do
    measure "$kind" "$n" "$p" "$r"
  done
  for s in "${SERVERS[@]}"; do stop_server "$s"; done
}

# ---- machine ------------------------------------------------------------------

{
  echo "# machine"
  uname -a
  grep PRETTY_NAME /etc/os-release 2>/dev/null || true
  echo "nproc: $NCPU"
  grep -m1 'model name' /proc/cpuinfo || true
  lscpu 2>/dev/null | grep -E '^(Thread|Core|Socket|NUMA node|L[23])' || true
  echo "cpu0 thread siblings: $(cat /sys/devices/system/cpu/cpu0/topology/thread_siblings_list 2>/dev/null || echo n/a)"
  echo "cpu8 thread siblings: $(cat /sys/devices/system/cpu/cpu8/topology/thread_siblings_list 2>/dev/null || echo n/a)"
  grep -E '^(MemTotal|MemAvailable)' /proc/meminfo
  echo "loadavg: $(cat /proc/loadavg)"
  echo "ferrocache: $FERROCACHE_BIN ($("$FERROCACHE_BIN" --version 2>&1 | head -1))"
  echo "memcached: $("$MEMCACHED_BIN" -V 2>&1 | head -1)"
  echo "loadgen: $LOADGEN"
  echo "settings: NS=\"$NS\" PIPELINES=\"$PIPELINES\" DURATION=$DURATION ROUNDS=$ROUNDS" \
    "CONNS_PER_CORE=$CONNS_PER_CORE KEYS=$KEYS VALUE_SIZE=$VALUE_SIZE RATIO=$RATIO" \
    "MEMORY_MB=$MEMORY_MB LOADGEN_CPUS=$LOADGEN_CPUS LOADGEN_THREADS=$LOADGEN_THREADS" \
    "KINDS=\"$KINDS\" SPIN_US=$SPIN_US SPIN_BUSY_PCT=$SPIN_BUSY_PCT SPIN_NS=\"$SPIN_NS\""
} | tee "$RESULTS_DIR/machine.txt" >&2

# ---- run ------------------------------------------------------------------------

has_kind() { [[ " $KINDS " == *" $1 "* ]]; }
for ((r = 1; r <= ROUNDS; r++)); do
  for n in $NS; do
    if has_kind fc; then run_kind fc "$n" "$r"; fi
    if has_kind mc; then run_kind mc "$n" "$r"; fi
    if ((n > 1)) && has_kind ind; then run_kind ind "$n" "$r"; fi
    if [[ " $SPIN_NS " == *" $n "* ]] && has_kind spin; then run_kind spin "$n" "$r"; fi
    if [[ " $OW_NS " == *" $n "* ]] && has_kind ow; then run_kind ow "$n" "$r"; fi
    if [[ " $GLOMMIO_NS " == *" $n "* ]] && has_kind glm; then run_kind glm "$n" "$r"; fi
  done
done

# ---- summary --------------------------------------------------------------------

summarize "$TSV" | tee "$SUMMARY"
echo "raw outputs, results.tsv and summary.txt: $RESULTS_DIR" >&2
