#!/usr/bin/env bash
# Soak test (make soak): a long mixed load with eviction always active and
# every value verified, while the server's RSS is sampled. Fails on any
# error or wrong value, if the server dies, or if RSS ever exceeds the bound.
#
# The load: 50 connections 8 deep, zipf(0.9) over SOAK_KEYS keys with values
# of 16 to 2048 bytes (several times the memory, so the store evicts all the
# time), 1:3 set:get with cache-aside refills and 5% one-time scan keys, each
# connection authenticated first (open mode accepts any token).
#
# Environment (defaults in brackets):
#   SOAK_SECS (600)            length of the load
#   SOAK_MEMORY_MB (64)        --memory-mb of the server
#   SOAK_RSS_BOUND_MB          RSS limit [SOAK_MEMORY_MB + 64]: the item
#                              memory plus allowance for the binary, per-core
#                              runtimes (glommio io_uring rings and buffers),
#                              the hash index and 50 connections' buffers
#   SOAK_CORES (2)             --cores of the server
#   SOAK_KEYS (2000000)        key space
#   SOAK_SAMPLE_SECS (5)       RSS sampling interval
#   SOAK_SERVER (ferrocache)   or "memcached", to check the script itself
#   FERROCACHE_BIN             skip the build and use this binary
set -euo pipefail
# shellcheck source=loadgen/servers.sh
source "$(dirname "${BASH_SOURCE[0]}")/loadgen/servers.sh"

SOAK_SECS="${SOAK_SECS:-600}"
SOAK_MEMORY_MB="${SOAK_MEMORY_MB:-64}"
SOAK_RSS_BOUND_MB="${SOAK_RSS_BOUND_MB:-$((SOAK_MEMORY_MB + 64))}"
SOAK_CORES="${SOAK_CORES:-2}"
SOAK_KEYS="${SOAK_KEYS:-2000000}"
SOAK_SAMPLE_SECS="${SOAK_SAMPLE_SECS:-5}"
SOAK_SERVER="${SOAK_SERVER:-ferrocache}"

build_binaries
case "$SOAK_SERVER" in
  ferrocache) start_ferrocache soak "" --cores "$SOAK_CORES" --memory-mb "$SOAK_MEMORY_MB" ;;
  memcached)
    ensure_memcached
    start_memcached soak "" "$SOAK_MEMORY_MB" -t "$SOAK_CORES"
    ;;
  *) die "SOAK_SERVER must be ferrocache or memcached, not $SOAK_SERVER" ;;
esac
PID="${SRV_PID[soak]}"
bound_kb=$((SOAK_RSS_BOUND_MB * 1024))
echo "soak: $SOAK_SERVER --cores $SOAK_CORES --memory-mb $SOAK_MEMORY_MB for ${SOAK_SECS}s;" \
  "RSS bound ${SOAK_RSS_BOUND_MB} MiB"

OUT="$BENCH_TMP/soak.out"
"$LOADGEN" --server "${SRV_ADDR[soak]}" --conns 50 --pipeline 8 --keys "$SOAK_KEYS" \
  --dist zipf --zipf-alpha 0.9 --value-size 16-2048 --ratio 1:3 --cache-aside \
  --scan-fraction 0.05 --verify --oauth "soak-token soak cache" --seed "$RANDOM" \
  --duration "$SOAK_SECS" >"$OUT" 2>&1 &
LG_PID=$!
STARTED_PIDS+=("$LG_PID")

# Sample RSS while the load runs. The interval is a sampling period, not a
# readiness wait: the loop ends as soon as the load generator does.
samples=0 max_kb=0 over=0 start=$SECONDS next_report=$((SECONDS + 60))
while kill -0 "$LG_PID" 2>/dev/null; do
  if ! kill -0 "$PID" 2>/dev/null; then
    echo "soak: FAILED: the server died after $((SECONDS - start))s" >&2
    tail -20 "$BENCH_TMP/soak.err" >&2 || true
    exit 1
  fi
  kb="$(rss_kb "$PID" 2>/dev/null || echo 0)" # 0: it just exited; caught above next round
  samples=$((samples + 1))
  ((kb > max_kb)) && max_kb=$kb
  if ((kb > bound_kb)); then
    echo "soak: FAILED: RSS $((kb / 1024)) MiB > bound ${SOAK_RSS_BOUND_MB} MiB after $((SECONDS - start))s" >&2
    over=1
    break
  fi
  if ((SECONDS >= next_report)); then
    echo "  ${SECONDS}s: RSS $((kb / 1024)) MiB (max $((max_kb / 1024)) MiB)"
    next_report=$((SECONDS + 60))
  fi
  sleep "$SOAK_SAMPLE_SECS" &
  wait $! || true
done
lg_rc=0
if ((over)); then
  kill -TERM "$LG_PID" 2>/dev/null || true
fi
wait "$LG_PID" || lg_rc=$?
final_kb="$(rss_kb "$PID" 2>/dev/null || echo 0)"
server_alive=yes
kill -0 "$PID" 2>/dev/null || server_alive=no

sed 's/^/    /' "$OUT"
echo "soak figures:"
echo "  duration           $((SECONDS - start)) s"
echo "  ops/s              $(result "$OUT" ops_per_sec)"
echo "  gets / sets        $(result "$OUT" gets) / $(result "$OUT" sets)"
echo "  hit ratio          $(result "$OUT" hit_ratio) (key space $(result "$OUT" key_hit_ratio))"
echo "  latency p50/p99/p99.9 us  $(result "$OUT" p50_us) / $(result "$OUT" p99_us) / $(result "$OUT" p999_us)"
echo "  errors             $(result "$OUT" errors) (wrong values $(result "$OUT" wrong_values))"
echo "  evictions          $(mc_stat "${SRV_ADDR[soak]}" evictions)"
echo "  RSS max / final    $((max_kb / 1024)) / $((final_kb / 1024)) MiB over $samples samples (bound ${SOAK_RSS_BOUND_MB} MiB)"

fail=0
((over == 0)) || fail=1
[[ $server_alive == yes ]] || {
  echo "soak: FAILED: the server is gone"
  fail=1
}
((lg_rc == 0)) || {
  echo "soak: FAILED: load generator exit $lg_rc (errors or wrong values above)"
  fail=1
}
((fail == 0)) && echo "soak: PASS"
exit "$fail"
