#!/usr/bin/env bash
# `make fuzz`: runs every cargo-fuzz target for FUZZ_SECS seconds (default 60)
# with the memcached dictionary, then prints each target's executions.
# A crash input lands in tests/fuzz/artifacts/<target>/; copy it into
# tests/fuzz/regressions/<target>/ so tests/fuzz_regressions.rs replays it.
set -euo pipefail
cd "$(dirname "$0")/../.."
FUZZ=tests/fuzz

SECS="${FUZZ_SECS:-60}"
JOBS="${FUZZ_BUILD_JOBS:-1}"
TARGETS="${FUZZ_TARGETS:-parse connection store}"

if ! command -v cargo-fuzz >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked -j "$JOBS"
fi
# cargo-fuzz needs nightly for -Zsanitizer; fall back to stable plus RUSTC_BOOTSTRAP.
if rustup run nightly rustc --version >/dev/null 2>&1 \
    || rustup toolchain install nightly --profile minimal >/dev/null 2>&1; then
    TOOLCHAIN=(+nightly)
else
    TOOLCHAIN=()
    export RUSTC_BOOTSTRAP=1
fi

status=0
summary=()
for target in $TARGETS; do
    mkdir -p "$FUZZ/corpus/$target" "$FUZZ/artifacts/$target"
    # Seed the corpus with the saved regressions: known-interesting inputs.
    cp -n "$FUZZ"/regressions/"$target"/* "$FUZZ/corpus/$target/" 2>/dev/null || true
    log="$FUZZ/artifacts/$target/last-run.log"
    echo "== fuzzing $target for ${SECS}s"
    if CARGO_BUILD_JOBS="$JOBS" cargo "${TOOLCHAIN[@]}" fuzz run --fuzz-dir "$FUZZ" "$target" \
        "$FUZZ/corpus/$target" -- \
        -dict="$FUZZ/memcached.dict" -max_total_time="$SECS" -max_len=8192 \
        -print_final_stats=1 2>&1 | tee "$log" | grep -E '^(#[0-9]+[[:space:]]+(INITED|DONE)|==[0-9]+==|SUMMARY|artifact_prefix|Test unit)'; then
        :
    fi
    runs=$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}' | tail -1)
    if grep -q -E 'Test unit written|SUMMARY: ' "$log"; then
        status=1
        summary+=("$target: CRASH after ${runs:-?} executions (see $FUZZ/artifacts/$target/)")
    else
        summary+=("$target: ${runs:-?} executions, no crash")
    fi
done

echo "== fuzz summary (${SECS}s per target)"
printf '%s\n' "${summary[@]}"
exit "$status"
