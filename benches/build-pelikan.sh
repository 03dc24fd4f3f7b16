#!/usr/bin/env bash
# Builds Pelikan segcache (Twitter's, now pelikan-io's, segment-structured
# memcache server) from its public source with cargo, for the load sweep's
# side-by-side comparison (benches/sweep.sh, server "pk1"). Prints the
# binary's path on stdout.
#
#   bash benches/build-pelikan.sh                 clones the source from GitHub
#   PELIKAN_SRC=/path/to/pelikan bash benches/build-pelikan.sh
#                                                 builds a checkout you have
#
# Environment: PELIKAN_SRC (a git checkout or a git URL; default
# https://github.com/pelikan-io/pelikan), PELIKAN_REV (the commit built;
# default the one measured in docs/PERFORMANCE.md), PELIKAN_DIR (where the
# clone and its build go; target/pelikan).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PELIKAN_SRC="${PELIKAN_SRC:-https://github.com/pelikan-io/pelikan}"
# "feat: support the version command on the memcache data listener (#170)"
PELIKAN_REV="${PELIKAN_REV:-49300de0}"
PELIKAN_DIR="${PELIKAN_DIR:-$ROOT/target/pelikan}"

die() {
  echo "build-pelikan.sh: error: $*" >&2
  exit 1
}

command -v git >/dev/null || die "git is needed to fetch Pelikan's source"
command -v cargo >/dev/null || die "cargo is needed to build Pelikan"
if [[ ! -d "$PELIKAN_DIR/.git" ]]; then
  echo "cloning Pelikan from $PELIKAN_SRC into $PELIKAN_DIR..." >&2
  git clone --quiet "$PELIKAN_SRC" "$PELIKAN_DIR" ||
    die "cannot clone $PELIKAN_SRC (set PELIKAN_SRC to a local checkout)"
fi
git -C "$PELIKAN_DIR" checkout --quiet "$PELIKAN_REV" ||
  die "commit $PELIKAN_REV is not in $PELIKAN_DIR (set PELIKAN_REV, or remove the directory)"
echo "building pelikan-segcache at $(git -C "$PELIKAN_DIR" log -1 --format='%h %s')..." >&2
(cd "$PELIKAN_DIR" && cargo build --release --locked -p pelikan-segcache >&2)
BIN="$PELIKAN_DIR/target/release/pelikan-segcache"
[[ -x "$BIN" ]] || die "the build did not produce $BIN"
echo "$BIN"
