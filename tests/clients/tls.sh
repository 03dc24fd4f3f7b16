#!/usr/bin/env bash
# Real clients over TLS against ferrocache's --tls-listen port, with a test CA
# made here by the openssl CLI: pymemcache (`tls_context`) in open and secure
# mode, Dalli 5 (`ssl_context`, from ../shared), and `openssl s_client` with a
# client certificate granted a project, one refused, and a reconnect that
# resumes its session. pymemcache and Dalli also run against memcached -Z,
# which checks the scripts themselves. Ends with `N passed, M failed`.
#
#   bash tests/clients/tls.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

# shellcheck source=tests/clients/server.sh
source tests/clients/server.sh
trap server_stop_all EXIT

: "${CLIENT_TIMEOUT:=60}"
DALLI5=../shared/clients/dalli-5.0.6/lib
passed=0
failed=0
skipped=0
ROWS=()

pki=$SERVER_WORKDIR/pki
mkdir -p "$pki"
# memcached -Z drops to `nobody` before it reads the files: test keys only.
chmod 755 "$SERVER_WORKDIR" "$pki"
ossl() { openssl "$@" 2>/dev/null; }
ossl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -keyout "$pki/ca.key" -out "$pki/ca.pem" -subj "/CN=ferrocache test CA"
# issue NAME CA_PREFIX [SAN]: NAME.pem and NAME.key signed by CA_PREFIX.{pem,key}.
issue() {
    local name=$1 ca=$2 san=${3:-}
    ossl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$pki/$name.key" -out "$pki/$name.csr" -subj "/CN=$name"
    # Extensions make it a v3 certificate (webpki refuses v1).
    if [ -n "$san" ]; then
        echo "subjectAltName=$san" >"$pki/$name.ext"
    else
        echo "extendedKeyUsage=clientAuth" >"$pki/$name.ext"
    fi
    ossl x509 -req -in "$pki/$name.csr" -CA "$ca.pem" -CAkey "$ca.key" -CAcreateserial \
        -days 2 -extfile "$pki/$name.ext" -out "$pki/$name.pem"
}
issue server "$pki/ca" "DNS:localhost,IP:127.0.0.1"
issue alice "$pki/ca"
issue bob "$pki/ca"
chmod 644 "$pki"/*
fingerprint() { openssl x509 -in "$1" -noout -fingerprint -sha256 | cut -d= -f2; }

# record NAME RESULT(PASS|FAIL|SKIP)
record() {
    ROWS+=("$(printf '  %-44s %s' "$1" "$2")")
    case "$2" in
        PASS) passed=$((passed + 1)) ;;
        SKIP*) skipped=$((skipped + 1)) ;;
        *) failed=$((failed + 1)) ;;
    esac
}

# run NAME COMMAND...: passes if it exits 0, prints no ^FAIL and at least one ^ok.
run() {
    local name=$1 log rc
    shift
    log="$SERVER_WORKDIR/$(tr -c 'A-Za-z0-9' '_' <<<"$name").log"
    echo "=== $name ==="
    set +e
    if declare -F "$1" >/dev/null; then
        # A function of this script: its commands carry their own timeouts.
        "$@" >"$log" 2>&1
    else
        timeout "$CLIENT_TIMEOUT" "$@" >"$log" 2>&1
    fi
    rc=$?
    set -e
    cat "$log"
    if [ "$rc" -eq 0 ] && grep -q '^SKIP' "$log" && ! grep -q '^ok' "$log"; then
        record "$name" "SKIP ($(grep -m1 '^SKIP' "$log" | cut -c1-60)...)"
    elif [ "$rc" -eq 0 ] && ! grep -q '^FAIL' "$log" && grep -q '^ok' "$log"; then
        record "$name" PASS
    else
        record "$name" FAIL
    fi
}

# tls_port: the TLS port from the ready line of the server started last.
tls_port() {
    grep -m1 -o ' tls=[^ ]*' "$SERVER_WORKDIR/$1.stdout" | sed 's/.*://'
}

# s_client_session PORT REQUEST [OPENSSL ARGS...]: the decrypted replies
# and s_client's own report (-quiet: the replies alone, not interleaved
# with the report's dumps of session tickets).
s_client_session() {
    local port=$1 request=$2
    shift 2
    { printf '%b' "$request"; sleep 0.5; } |
        timeout 10 openssl s_client -connect "127.0.0.1:$port" -servername localhost \
            -CAfile "$pki/ca.pem" -verify_return_error -ign_eof "$@" 2>&1 || true
}

# expect NAME OUTPUT PATTERN: one ok/FAIL line.
expect() {
    if grep -q -- "$3" <<<"$2"; then echo "ok   $1"; else echo "FAIL $1: no '$3' in:"; head -c 2000 <<<"$2"; echo; fi
}

s_client_checks() {
    local port=$1 out
    out=$(s_client_session "$port" 'set oauth 0 0 11\r\n- proj-a c1\r\nset k 0 0 2\r\nhi\r\nget k\r\n' \
        -quiet -cert "$pki/alice.pem" -key "$pki/alice.key")
    expect "s_client: alice's certificate authenticates proj-a with -" "$out" "^STORED"
    expect "s_client: alice reads her key" "$out" "^VALUE k 0 2"
    out=$(s_client_session "$port" 'set oauth 0 0 11\r\n- proj-b c1\r\n' \
        -quiet -cert "$pki/alice.pem" -key "$pki/alice.key")
    expect "s_client: alice's certificate is refused proj-b" "$out" "^CLIENT_ERROR authentication failed"
    out=$(s_client_session "$port" 'set oauth 0 0 11\r\n- proj-a c1\r\n' \
        -quiet -cert "$pki/bob.pem" -key "$pki/bob.key")
    expect "s_client: bob's (ungranted) certificate is refused" "$out" "^CLIENT_ERROR authentication failed"
    out=$(s_client_session "$port" 'set oauth 0 0 11\r\n- proj-a c1\r\n' -quiet)
    expect "s_client: no certificate, - is refused" "$out" "^CLIENT_ERROR authentication failed"
    out=$(s_client_session "$port" 'set oauth 0 0 19\r\ntok-alpha proj-a c1\r\nget k\r\n' -quiet)
    expect "s_client: a token still works over TLS" "$out" "^VALUE k 0 2"
    # Resumption, TLS 1.3 tickets and TLS 1.2 tickets.
    for version in -tls1_3 -tls1_2; do
        rm -f "$pki/session"
        out=$(s_client_session "$port" 'version\r\n' "$version" -sess_out "$pki/session")
        expect "s_client $version: full handshake" "$out" "^New, "
        out=$(s_client_session "$port" 'version\r\n' "$version" -sess_in "$pki/session")
        expect "s_client $version: the reconnect resumes its session" "$out" "^Reused, "
    done
    # Plaintext to the TLS port gets no memcached reply.
    out=$({ printf 'version\r\n'; sleep 0.5; } | timeout 5 "$PY" -c '
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=3)
s.sendall(b"version\r\n")
try:
    data = s.recv(100)
except OSError:
    data = b""
print("closed" if b"VERSION" not in data else "served:%r" % data)
' "$port")
    expect "plaintext to the TLS port is not served" "$out" "^closed"
}

# --- ferrocache, open mode -------------------------------------------------
server_start tls-open --tls-listen 127.0.0.1:0 --tls-cert "$pki/server.pem" --tls-key "$pki/server.key"
port=$(tls_port tls-open)
MC_TLS_PORT=$port MC_CA=$pki/ca.pem MC_AUTH="any proj-open c1" MC_PREFIX=open- \
    run "pymemcache tls [open]" "$PY" tests/clients/pymemcache_tls.py
if [ -d "$DALLI5" ]; then
    MC_TLS_PORT=$port MC_CA=$pki/ca.pem MC_PREFIX=open- \
        run "dalli 5 tls [open]" ruby -I "$DALLI5" tests/clients/ruby_dalli5_tls.rb
else
    echo "SKIP dalli 5 tls: $DALLI5 is missing (../shared is not beside the checkout)"
    record "dalli 5 tls [open]" "SKIP (no ../shared)"
fi
server_stop

# --- ferrocache, secure mode with certificate grants -------------------------
cat >"$SERVER_WORKDIR/grants" <<GRANTS
tok-alpha proj-a
cert:SHA256:$(fingerprint "$pki/alice.pem") proj-a
GRANTS
server_start tls-secure --tokens "$SERVER_WORKDIR/grants" --tls-listen 127.0.0.1:0 \
    --tls-cert "$pki/server.pem" --tls-key "$pki/server.key" --tls-client-ca "$pki/ca.pem"
port=$(tls_port tls-secure)
MC_TLS_PORT=$port MC_CA=$pki/ca.pem MC_AUTH="tok-alpha proj-a c2" MC_PREFIX=secure- \
    MC_CLIENT_CERT=$pki/alice.pem MC_CLIENT_KEY=$pki/alice.key \
    MC_CERT_AUTH="- proj-a c3" MC_CERT_DENIED="- proj-b c3" \
    run "pymemcache tls [secure, client cert]" "$PY" tests/clients/pymemcache_tls.py
run "openssl s_client [secure, client cert]" s_client_checks "$port"
server_stop

# --- memcached -Z: checks the client scripts themselves ----------------------
if command -v memcached >/dev/null; then
    SERVER_CMD="memcached -U 0 -u nobody -t 1 -l 127.0.0.1 -p @PORT@ -Z -o ssl_chain_cert=$pki/server.pem,ssl_key=$pki/server.key" \
        server_start memcached-tls || true
    if [ -n "${SERVER_PORT:-}" ]; then
        MC_TLS_PORT=$SERVER_PORT MC_CA=$pki/ca.pem MC_PREFIX=ref- \
            run "pymemcache tls vs memcached -Z" "$PY" tests/clients/pymemcache_tls.py
        if [ -d "$DALLI5" ]; then
            MC_TLS_PORT=$SERVER_PORT MC_CA=$pki/ca.pem MC_PREFIX=ref- \
                run "dalli 5 tls vs memcached -Z" ruby -I "$DALLI5" tests/clients/ruby_dalli5_tls.rb
        fi
        server_stop
    fi
fi

echo
echo "TLS clients:"
printf '%s\n' "${ROWS[@]}"
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
