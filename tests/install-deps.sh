#!/usr/bin/env bash
# Installs, when missing, what ferrocache's tests need: memcached (the
# behaviour reference), libmemcached-tools (memccapable, memcslap) and the
# real client libraries the compatibility matrix in tests/clients/ drives.
# Idempotent: a fast no-op when everything is present; `apt-get update` runs
# only if something has to be installed. Fails loudly if an install fails.
set -euo pipefail

# Debian package -> why the tests need it.
PACKAGES=(
    memcached                    # reference server for the scripts' self-checks
    libmemcached-tools           # memccapable (peer suite), memcslap
    python3                      # Debian's interpreter (/usr/bin/python3) for the python clients
    python3-memcache             # python-memcached
    python3-pymemcache           # pymemcache
    python3-pylibmc              # pylibmc (libmemcached)
    perl                         # Cache::Memcached::Fast runs on it
    libcache-memcached-fast-perl # Cache::Memcached::Fast
    php-cli                      # PHP interpreter
    php-memcached                # PHP Memcached extension (libmemcached)
    ruby                         # Ruby interpreter (ruby-dalli does not depend on it)
    ruby-dalli                   # Dalli 3.0.6, binary protocol only
    systemd                      # systemd-analyze verify of deploy/ferrocache.service (tests/deploy.sh)
    procps                       # /bin/kill, the unit's ExecReload (verify checks it exists)
    python3-pip                  # installs meta-memcache (below)
    openssl                      # test CA and s_client for the TLS clients (tests/clients/tls.sh)
    strace                       # checks deploy/seccomp-io_uring.json covers what the server calls (tests/deploy.sh)
    prometheus                   # promtool check metrics, and a real server scraping /metrics (tests/metrics.rs)
    nutcracker                   # twemproxy in front of two servers (tests/clients/nutcracker.sh)
)

# PyPI packages (not in Debian) -> why. Installed into Debian's python3.
PIP_PACKAGES=(
    meta-memcache==4.3.0         # a meta-protocol client (tests/clients/meta_memcache_client.py)
)

install_pip() {
    local pkg missing_pip=()
    for pkg in "${PIP_PACKAGES[@]}"; do
        /usr/bin/python3 -m pip show -q "${pkg%%==*}" >/dev/null 2>&1 || missing_pip+=("$pkg")
    done
    [ "${#missing_pip[@]}" -eq 0 ] && return 0
    echo "install-deps: pip installing ${missing_pip[*]}"
    /usr/bin/python3 -m pip install -q --break-system-packages "${missing_pip[@]}"
}

installed() {
    [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

missing=()
for pkg in "${PACKAGES[@]}"; do
    installed "$pkg" || missing+=("$pkg")
done

if [ "${#missing[@]}" -eq 0 ]; then
    echo "install-deps: all ${#PACKAGES[@]} test packages present"
    install_pip
    exit 0
fi

echo "install-deps: installing ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: must run as root to install: ${missing[*]}" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null

# apt-get exits 0 when every package was installed, but check anyway: a
# package left half-configured must not pass silently.
still=()
for pkg in "${missing[@]}"; do
    installed "$pkg" || still+=("$pkg")
done
if [ "${#still[@]}" -ne 0 ]; then
    echo "install-deps: FAILED to install ${still[*]}" >&2
    exit 1
fi
echo "install-deps: installed ${missing[*]}"
install_pip
