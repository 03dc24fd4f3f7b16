#!/usr/bin/env bash
# The real-client compatibility matrix: every program in tests/clients/ runs
# against ferrocache in open mode and in secure mode (--tokens), each server
# started here on its own port. Prints a table and ends with the line
# `N passed, M failed`; exits non-zero if any run failed.
#
#   bash tests/clients/run.sh
#   SERVER_CMD='memcached -U 0 -u nobody -t 2 -l 127.0.0.1 -p @PORT@' bash tests/clients/run.sh
#
# Against a server that is not ferrocache (by its `version` reply) only the
# open run happens, without the isolation check, and Dalli is expected to be
# served instead of refused: that checks the programs themselves.
set -euo pipefail
cd "$(dirname "$0")/../.."

# shellcheck source=tests/clients/server.sh
source tests/clients/server.sh
trap server_stop_all EXIT

: "${CLIENT_TIMEOUT:=60}"   # seconds per program run

# Dalli 5 is not packaged: it comes from the shared checkout beside the repo.
DALLI5_LIB=../shared/clients/dalli-5.0.6/lib

# name | command
PROGRAMS=(
    "python-memcached|$PY tests/clients/python_memcached.py"
    "pymemcache|$PY tests/clients/pymemcache_client.py"
    "pymemcache (no auth)|$PY tests/clients/pymemcache_client.py"
    "pylibmc|$PY tests/clients/pylibmc_client.py"
    "perl Cache::Memcached::Fast|perl tests/clients/perl_fast.pl"
    "php-memcached|php tests/clients/php_memcached.php"
    "ruby dalli (binary)|ruby tests/clients/ruby_dalli.rb"
    "ruby dalli 5 (meta)|ruby -I $DALLI5_LIB tests/clients/ruby_dalli5_meta.rb"
    "meta-memcache (python, meta)|$PY tests/clients/meta_memcache_client.py"
    "raw replies vs memcached|$PY tests/clients/differential.py"
    # Last: it edits the grants file under the secure server.
    "tokens reload (SIGHUP)|$PY tests/clients/tokens_reload.py"
)
# The reference for the differential row (open mode, ferrocache only).
REFERENCE_CMD='memcached -U 0 -u nobody -t 2 -l 127.0.0.1 -p @PORT@'

MODES=(open secure)

declare -A RESULT SECONDS_TAKEN
passed=0
failed=0
skipped=0

# Starts memcached beside the server under test; sets MC_REF_PORT on success.
start_reference() {
    local pid=$SERVER_PID port=$SERVER_PORT version=$SERVER_VERSION
    unset MC_REF_PORT
    if SERVER_CMD=$REFERENCE_CMD server_start reference; then
        export MC_REF_PORT=$SERVER_PORT
    fi
    REFERENCE_PID=$SERVER_PID
    SERVER_PID=$pid SERVER_PORT=$port SERVER_VERSION=$version
}

# run_program MODE NAME COMMAND, with MC_* already exported.
run_program() {
    local mode=$1 name=$2 cmd=$3 log rc start
    log="$SERVER_WORKDIR/$(tr -c 'A-Za-z0-9' '_' <<<"$mode-$name").log"
    echo "=== $name [$mode] ==="
    start=$SECONDS
    set +e
    # $cmd is "interpreter script": split on purpose.
    # shellcheck disable=SC2086
    timeout "$CLIENT_TIMEOUT" $cmd >"$log" 2>&1
    rc=$?
    set -e
    cat "$log"
    SECONDS_TAKEN["$mode|$name"]=$((SECONDS - start))
    if [ "$rc" -eq 0 ] && ! grep -q '^FAIL' "$log" && grep -q '^ok' "$log"; then
        RESULT["$mode|$name"]=PASS
        passed=$((passed + 1))
    else
        [ "$rc" -eq 124 ] && echo "FAIL $name: timed out after ${CLIENT_TIMEOUT}s"
        [ "$rc" -ne 0 ] && echo "FAIL $name: exit code $rc"
        RESULT["$mode|$name"]=FAIL
        failed=$((failed + 1))
    fi
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        echo "FAIL the server died; its stderr:"
        tail -n 40 "$SERVER_WORKDIR/$mode.stderr"
        return 1
    fi
}

skip() {
    RESULT["$1|$2"]=SKIP
    skipped=$((skipped + 1))
}

# mark_rest MODE RESULT: every program of MODE without a result gets RESULT.
mark_rest() {
    local mode=$1 result=$2 entry key
    for entry in "${PROGRAMS[@]}"; do
        key="$mode|${entry%%|*}"
        [ -n "${RESULT[$key]:-}" ] && continue
        RESULT[$key]=$result
        SECONDS_TAKEN[$key]=0
        case "$result" in
            SKIP) skipped=$((skipped + 1)) ;;
            *) failed=$((failed + 1)) ;;
        esac
    done
}

run_mode() {
    local mode=$1 entry name cmd tokens=""
    unset MC_AUTH MC_AUTH_OTHER MC_BAD_AUTH MC_BINARY
    case "$mode" in
        open)
            server_start open || { mark_rest open "FAIL"; return 0; }
            # Open mode accepts any token.
            export MC_AUTH="any-token project-open cache-a"
            export MC_AUTH_OTHER="other-token project-open cache-b"
            ;;
        secure)
            if [ -n "${SERVER_CMD:-}" ]; then
                mark_rest secure SKIP
                return 0
            fi
            tokens="$SERVER_WORKDIR/tokens.txt"
            cat >"$tokens" <<'EOF'
# ferrocache test grants: TOKEN PROJECT_ID

tok-alpha-0123456789 project-alpha
tok-beta-9876543210 project-beta
EOF
            server_start secure --tokens "$tokens" || { mark_rest secure "FAIL"; return 0; }
            export MC_AUTH="tok-alpha-0123456789 project-alpha cache-a"
            # Same cache name in another project: must not share keys.
            export MC_AUTH_OTHER="tok-beta-9876543210 project-beta cache-a"
            # A token nobody granted; a granted token for a project it was not granted for.
            export MC_BAD_AUTH="tok-wrong-0000000000 project-alpha cache-a;tok-beta-9876543210 project-alpha cache-a"
            ;;
    esac
    if server_is_ferrocache; then
        export MC_BINARY=refused
    else
        # A reference server shares one namespace and speaks binary.
        unset MC_AUTH_OTHER
        export MC_BINARY=served
    fi
    export MC_PORT=$SERVER_PORT
    for entry in "${PROGRAMS[@]}"; do
        name=${entry%%|*}
        cmd=${entry#*|}
        export MC_PREFIX
        MC_PREFIX="$(tr -c 'A-Za-z0-9' '-' <<<"$name" | tr -s '-')$mode-"
        case "$name" in
            "pymemcache (no auth)")
                # Unauthenticated use is open mode's (default, default) namespace.
                if [ "$mode" = secure ]; then skip "$mode" "$name"; continue; fi
                MC_AUTH="" MC_AUTH_OTHER="" run_program "$mode" "$name" "$cmd" || break
                ;;
            "ruby dalli 5 (meta)")
                if [ ! -d "$DALLI5_LIB" ]; then
                    echo "SKIP ruby dalli 5 (meta) [$mode]: $DALLI5_LIB is missing (Dalli 5.0.6 comes from the shared checkout beside the repo)"
                    skip "$mode" "$name"
                    continue
                fi
                run_program "$mode" "$name" "$cmd" || break
                ;;
            "raw replies vs memcached")
                if [ "$mode" = secure ] || ! server_is_ferrocache; then skip "$mode" "$name"; continue; fi
                start_reference
                run_program "$mode" "$name" "$cmd" || break
                _stop_pid "$REFERENCE_PID"
                ;;
            "tokens reload (SIGHUP)")
                if [ "$mode" = open ]; then skip "$mode" "$name"; continue; fi
                MC_SERVER_PID=$SERVER_PID MC_TOKENS_FILE=$tokens MC_SERVER_STDERR="$SERVER_WORKDIR/$mode.stderr" \
                    run_program "$mode" "$name" "$cmd" || break
                ;;
            *)
                run_program "$mode" "$name" "$cmd" || break
                ;;
        esac
    done
    mark_rest "$mode" FAIL
    server_stop
}

for mode in "${MODES[@]}"; do
    run_mode "$mode"
done

# Suites with their own servers and output (above), one row each here:
# twemproxy in front of two servers (open mode), and the TLS clients
# (pymemcache, Dalli 5, openssl s_client) with their own test CA.
SUITES=(
    "nutcracker (nutcracker.sh)|tests/clients/nutcracker.sh"
    "TLS clients (tls.sh)|tests/clients/tls.sh"
)
declare -A SUITE_RESULT
if [ -z "${SERVER_CMD:-}" ]; then
    for entry in "${SUITES[@]}"; do
        name=${entry%%|*}
        echo "=== $name ==="
        if bash "${entry#*|}"; then
            SUITE_RESULT["$name"]=PASS
            passed=$((passed + 1))
        else
            SUITE_RESULT["$name"]=FAIL
            failed=$((failed + 1))
        fi
    done
fi

echo
echo "Real-client matrix against ${SERVER_CMD:-$FERROCACHE} (${SERVER_VERSION:-did not start}):"
printf '  %-30s %-12s %-12s\n' client "${MODES[@]}"
for entry in "${PROGRAMS[@]}"; do
    name=${entry%%|*}
    row=()
    for mode in "${MODES[@]}"; do
        r=${RESULT["$mode|$name"]:-SKIP}
        [ "$r" != SKIP ] && r="$r (${SECONDS_TAKEN["$mode|$name"]}s)"
        row+=("$r")
    done
    printf '  %-30s %-12s %-12s\n' "$name" "${row[@]}"
done
for entry in "${SUITES[@]}"; do
    name=${entry%%|*}
    [ -n "${SUITE_RESULT[$name]:-}" ] && printf '  %-30s %-12s\n' "$name" "${SUITE_RESULT[$name]}"
done
[ "$skipped" -gt 0 ] && echo "  ($skipped skipped)"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
