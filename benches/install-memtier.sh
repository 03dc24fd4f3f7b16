#!/usr/bin/env bash
# Builds and installs memtier_benchmark, the load tool the benches drive, from
# the source snapshot in ../shared/tools/memtier_benchmark (or MEMTIER_SRC).
# Does nothing if memtier_benchmark is already on PATH (FORCE=1 builds anyway).
#
# ../shared/tools/build-memtier.sh does the same, but on a fresh Debian 12
# machine it stops at `autoreconf` (the snapshot's configure.ac needs libtool
# and autoconf-archive, which it does not install) and then in `configure` (an
# unsubstituted `@CODE_COVERAGE_RULES@` line in the Makefile). This script
# installs both packages and drops that line.
#
# Environment: MEMTIER_SRC (the source tree), PREFIX (default /usr/local),
# JOBS (default: every CPU). Needs root for apt-get and the install.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SRC="${MEMTIER_SRC:-$ROOT/../shared/tools/memtier_benchmark}"
PREFIX="${PREFIX:-/usr/local}"
JOBS="${JOBS:-$(nproc)}"

if [[ -z "${FORCE:-}" ]] && command -v memtier_benchmark >/dev/null; then
  echo "memtier_benchmark already installed: $(command -v memtier_benchmark)" >&2
  exit 0
fi
[[ -f "$SRC/configure.ac" ]] || {
  echo "install-memtier: no memtier_benchmark source at $SRC (set MEMTIER_SRC)" >&2
  exit 1
}

export DEBIAN_FRONTEND=noninteractive
packages=(build-essential autoconf automake libtool autoconf-archive pkg-config
  libpcre3-dev libevent-dev zlib1g-dev libssl-dev)
# A fresh machine may have no package lists yet: update only then.
apt-get install -y -qq "${packages[@]}" >/dev/null 2>&1 || {
  apt-get update -q
  apt-get install -y -qq "${packages[@]}" >/dev/null
}

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp -r "$SRC"/. "$work"
cd "$work"
autoreconf -ivf >/dev/null 2>&1 || { autoreconf -ivf; exit 1; }
# Left unsubstituted when configure.ac's code-coverage macro expands to
# nothing; make (configure's dependency set-up included) reads the bare
# line as a syntax error.
sed -i 's/^@CODE_COVERAGE_RULES@$//' Makefile.in
./configure --prefix="$PREFIX" >/dev/null
make -j"$JOBS" >/dev/null 2>&1 || { make; exit 1; }
make install >/dev/null
echo "installed $PREFIX/bin/memtier_benchmark: $("$PREFIX/bin/memtier_benchmark" --version | head -1)" >&2
