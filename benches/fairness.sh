#!/usr/bin/env bash
# Tenant fairness (issue 14), on ferrocache --cores 2 (called by
# `make bench-fairness`). Each tenant is one load generator authenticated as
# its own project, reading through the cache (a miss sets the key), so its
# hit ratio is the cache's for it. Prints, per tenant, its hit ratio beside
# its working set, the bytes it holds and its fair share.
#   Case 1, hot flood: a small steady tenant (4 MiB working set, uniform)
#     beside a hot one (256 MiB working set, Zipf: its hot keys are hit
#     again and again) on 64 MiB. Target: the small one keeps >= 90% hits.
#   Case 2, equal demand: two identical tenants, each wanting twice the
#     cache. Target: shares within 10% of equal.
#   Case 3, 1,000 tenants: store overhead and RSS per tenant, and
#     pipeline-16 throughput of one tenant with 1,000 others' items present
#     against the same load on a server holding one tenant only.
#
# Environment (defaults in brackets):
#   CASES ("1 2 3")        which cases to run
#   SECS (10)              seconds of load per tenant in cases 1 and 2
#   TENANTS (1000)         tenants in case 3
#   BASE_BIN               a second binary (e.g. main's) to run cases 1-2 on too
#   SERVER_CPU (0,1), LOADGEN_CPU (""), FERROCACHE_BIN (skip the build)
set -euo pipefail
# shellcheck source=loadgen/servers.sh
source "$(dirname "${BASH_SOURCE[0]}")/loadgen/servers.sh"

CASES="${CASES:-1 2 3}"
SECS="${SECS:-10}"
TENANTS="${TENANTS:-1000}"
SERVER_CPU="${SERVER_CPU:-0,1}"
LOADGEN_CPU="${LOADGEN_CPU:-}"
BASE_BIN="${BASE_BIN:-}"

build_binaries
TOKENS="$BENCH_TMP/tokens"
{
  for t in steady flood one two; do echo "tok-$t-0123456789abcdef $t"; done
} >"$TOKENS"

# tenant_stat ADDR PROJECT NAME: a field of `stats` as PROJECT sees it.
tenant_stat() {
  local host="${1%:*}" port="${1##*:}" line value="n/a"
  local auth="tok-$2-0123456789abcdef $2 cache"
  exec 9<>"/dev/tcp/$host/$port" || { echo "n/a"; return; }
  printf 'set oauth 0 0 %d\r\n%s\r\nstats\r\n' "${#auth}" "$auth" >&9
  while IFS= read -r -t 5 line <&9; do
    line="${line%$'\r'}"
    [[ "$line" == END || "$line" == *ERROR* ]] && break
    if [[ "$line" == "STAT $3 "* ]]; then value="${line#STAT "$3" }"; fi
  done
  exec 9>&-
  echo "$value"
}

# tenant NAME ADDR PROJECT ARGS...: a read-through load for SECS seconds,
# in the background; its output in $BENCH_TMP/NAME.
tenant() {
  local name="$1" addr="$2" project="$3"
  shift 3
  # shellcheck disable=SC2046
  $(pin "$LOADGEN_CPU") "$LOADGEN" --server "$addr" --oauth "tok-$project-0123456789abcdef $project cache" \
    --ratio 0:1 --cache-aside --duration "$SECS" "$@" >"$BENCH_TMP/$name" 2>&1 &
  TENANT_PIDS+=("$!")
}

wait_tenants() {
  local pid
  for pid in "${TENANT_PIDS[@]}"; do wait "$pid" || die "a tenant's load generator failed"; done
  TENANT_PIDS=()
}

row() { # NAME HIT_RATIO WORKING_SET HELD SHARE
  printf '  %-10s %9s %14s %14s %14s\n' "$@"
}

mib() { calc "$1 / 1048576" 1; }

# Case 1 and 2 on BINARY (label LABEL).
fair_cases() {
  local label="$1" bin="$2"
  FERROCACHE_BIN="$bin"
  if [[ " $CASES " == *" 1 "* ]]; then
    start_ferrocache "hot-$label" "$SERVER_CPU" --cores 2 --memory-mb 64 --tokens "$TOKENS"
    local addr="${SRV_ADDR[hot-$label]}"
    TENANT_PIDS=()
    tenant "steady-$label" "$addr" steady --keys 4096 --value-size 1000 --conns 2 --pipeline 4
    tenant "flood-$label" "$addr" flood --keys 65536 --value-size 4096 --dist zipf --zipf-alpha 0.9 \
      --conns 4 --pipeline 16
    wait_tenants
    echo "case 1, hot flood ($label): 64 MiB on 2 cores"
    row tenant "hit ratio" "working set" "holds (MiB)" "fair share"
    local s f
    s="$(tenant_stat "$addr" steady bytes)"
    f="$(tenant_stat "$addr" flood bytes)"
    row steady "$(result "$BENCH_TMP/steady-$label" hit_ratio)" "4.0 MiB" "$(mib "$s")" "32.0 MiB"
    row flood "$(result "$BENCH_TMP/flood-$label" hit_ratio)" "256.0 MiB" "$(mib "$f")" "32.0 MiB"
    echo "  steady keeps >= 90% hits: $(pass_fail "$(result "$BENCH_TMP/steady-$label" hit_ratio) >= 0.9")"
    stop_server "hot-$label"
  fi
  if [[ " $CASES " == *" 2 "* ]]; then
    start_ferrocache "eq-$label" "$SERVER_CPU" --cores 2 --memory-mb 64 --tokens "$TOKENS"
    local addr="${SRV_ADDR[eq-$label]}"
    TENANT_PIDS=()
    tenant "one-$label" "$addr" one --keys 32768 --value-size 4096 --conns 2 --pipeline 16 --seed 1
    tenant "two-$label" "$addr" two --keys 32768 --value-size 4096 --conns 2 --pipeline 16 --seed 2
    wait_tenants
    local a b
    a="$(tenant_stat "$addr" one bytes)"
    b="$(tenant_stat "$addr" two bytes)"
    echo "case 2, equal demand ($label): 64 MiB on 2 cores"
    row tenant "hit ratio" "working set" "holds (MiB)" "fair share"
    row one "$(result "$BENCH_TMP/one-$label" hit_ratio)" "128.0 MiB" "$(mib "$a")" "32.0 MiB"
    row two "$(result "$BENCH_TMP/two-$label" hit_ratio)" "128.0 MiB" "$(mib "$b")" "32.0 MiB"
    local off
    off="$(calc "($a - $b) / ($a + $b) * 2 * (($a > $b) ? 1 : -1)" 3)"
    echo "  shares differ by $off of equal: $(pass_fail "$off <= 0.1")"
    stop_server "eq-$label"
  fi
}

OUR_BIN="$FERROCACHE_BIN"
fair_cases this "$OUR_BIN"
if [[ -n "$BASE_BIN" ]]; then
  fair_cases base "$BASE_BIN"
fi
FERROCACHE_BIN="$OUR_BIN"

# Case 3 on BINARY (label LABEL): one tenant's pipeline-16 throughput on a
# server holding only its items, then once TENANTS other projects (10 items
# each) were added; store overhead and RSS per added tenant.
many_tenants() {
  local label="$1"
  FERROCACHE_BIN="$2"
  start_ferrocache "many-$label" "$SERVER_CPU" --cores 2 --memory-mb 256
  local addr="${SRV_ADDR[many-$label]}"
  load() {
    run_loadgen "$BENCH_TMP/$1-$label" "$LOADGEN_CPU" --server "$addr" --oauth "t main cache" \
      --conns 8 --pipeline 16 --keys 100000 --value-size 100 --ratio 1:10 --duration "$SECS"
  }
  run_loadgen "$BENCH_TMP/prefill-$label" "$LOADGEN_CPU" --server "$addr" --oauth "t main cache" \
    --conns 4 --pipeline 64 --keys 100000 --value-size 100 --prefill --requests 0
  load alone
  local overhead0 rss0 overhead1 rss1 host="${addr%:*}" port="${addr##*:}" t i auth line
  overhead0="$(mc_stat "$addr" store_overhead_bytes)"
  rss0="$(rss_kb "${SRV_PID[many-$label]}")"
  for ((t = 0; t < TENANTS; t++)); do
    auth="t p$t cache"
    exec 9<>"/dev/tcp/$host/$port"
    {
      printf 'set oauth 0 0 %d\r\n%s\r\n' "${#auth}" "$auth"
      for i in 0 1 2 3 4 5 6 7 8 9; do printf 'set k%d 0 0 100 noreply\r\n%0100d\r\n' "$i" 0; done
      printf 'version\r\n'
    } >&9
    while IFS= read -r -t 5 line <&9; do [[ "$line" == VERSION* ]] && break; done
    exec 9>&-
  done
  overhead1="$(mc_stat "$addr" store_overhead_bytes)"
  rss1="$(rss_kb "${SRV_PID[many-$label]}")"
  load crowded
  local a c
  a="$(result "$BENCH_TMP/alone-$label" ops_per_sec)"
  c="$(result "$BENCH_TMP/crowded-$label" ops_per_sec)"
  echo "case 3 ($label), $TENANTS tenants (10 items each) beside one busy tenant: 256 MiB on 2 cores"
  echo "  store overhead: +$(calc "($overhead1 - $overhead0) / $TENANTS" 0) B per tenant (both cores)"
  echo "  RSS:            +$(calc "($rss1 - $rss0) * 1024 / $TENANTS" 0) B per tenant (items, names and connections' traces included)"
  echo "  pipeline-16 ops/s: alone $a, beside $TENANTS tenants $c (ratio $(calc "$c / $a" 3))"
  stop_server "many-$label"
}

if [[ " $CASES " == *" 3 "* ]]; then
  many_tenants this "$OUR_BIN"
  if [[ -n "$BASE_BIN" ]]; then
    many_tenants base "$BASE_BIN"
  fi
fi
