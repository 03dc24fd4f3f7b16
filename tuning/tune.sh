#!/usr/bin/env bash
# Host tuning for ferrocache (make tune). Shows every setting as current
# against recommended; changes nothing unless APPLY=1 (as root).
#
#   bash tuning/tune.sh                    show
#   APPLY=1 bash tuning/tune.sh            apply sysctl, limits and THP
#   SERVER_CPUS=0-7 bash tuning/tune.sh    also show (or apply) moving IRQs
#                                          off the server's CPUs
#
# The settings and the reason for each live in tuning/sysctl.conf,
# tuning/limits.conf and tuning/thp.conf; tuning/irq-affinity.sh does IRQs.
set -euo pipefail

DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
APPLY="${APPLY:-0}"
SERVER_CPUS="${SERVER_CPUS:-}"
SYSCTL_DEST=/etc/sysctl.d/90-ferrocache.conf
LIMITS_DEST=/etc/security/limits.d/90-ferrocache.conf
THP_DIR=/sys/kernel/mm/transparent_hugepage

if [[ $APPLY == 1 && $(id -u) -ne 0 ]]; then
  echo "APPLY=1 needs root" >&2
  exit 1
fi
failed=0
row() { printf '%-36s %-22s %-22s %s\n' "$@"; }

# "at least" keys (see sysctl.conf) are satisfied by any higher value.
at_least() {
  grep -B1 -x -- "$1 = .*" "$DIR/sysctl.conf" | head -1 | grep -q '^# At least:'
}

echo "== sysctl ($DIR/sysctl.conf)"
row key current recommended status
applied_sysctl=()
while IFS= read -r line; do
  [[ -z $line || $line == \#* ]] && continue
  key="${line%% =*}"
  want="$(echo "${line#*= }" | xargs)"
  path="/proc/sys/${key//.//}"
  if [[ ! -e $path ]]; then
    row "$key" "n/a" "$want" "not on this kernel; skipped"
    continue
  fi
  cur="$(xargs <"$path")"
  status=ok
  if [[ $cur != "$want" ]]; then
    if at_least "$key" && [[ $cur =~ ^[0-9]+$ ]] && ((cur >= want)); then
      status="ok (higher)"
    else
      status=change
    fi
  fi
  if [[ $status == change ]]; then
    applied_sysctl+=("$key = $want")
    if [[ $APPLY == 1 ]]; then
      if sysctl -q -w "$key=$want" >/dev/null 2>&1; then
        status=changed
      else
        status="FAILED (read-only here?)"
        failed=1
      fi
    fi
  fi
  row "$key" "$cur" "$want" "$status"
done <"$DIR/sysctl.conf"
if [[ $APPLY == 1 ]]; then
  # Persist only what this kernel has, so `sysctl --system` stays quiet.
  {
    echo "# Installed by ferrocache tuning/tune.sh from tuning/sysctl.conf; reasons there."
    while IFS= read -r line; do
      [[ -z $line || $line == \#* ]] && continue
      key="${line%% =*}"
      [[ -e /proc/sys/${key//.//} ]] && echo "$line"
    done <"$DIR/sysctl.conf"
  } >"$SYSCTL_DEST"
  echo "wrote $SYSCTL_DEST"
fi

echo
echo "== limits for $(id -un) ($DIR/limits.conf; effective at next login)"
row limit current recommended status
want_nofile="$(awk '$3 == "nofile" && $2 == "soft" { print $4; exit }' "$DIR/limits.conf")"
want_memlock="$(awk '$3 == "memlock" && $2 == "soft" { print $4; exit }' "$DIR/limits.conf")"
lim_status() { # current wanted
  if [[ $1 == unlimited ]] || { [[ $1 =~ ^[0-9]+$ ]] && (($1 >= $2)); }; then echo ok; else echo change; fi
}
row "nofile (soft)" "$(ulimit -Sn)" "$want_nofile" "$(lim_status "$(ulimit -Sn)" "$want_nofile")"
row "nofile (hard)" "$(ulimit -Hn)" "$want_nofile" "$(lim_status "$(ulimit -Hn)" "$want_nofile")"
row "memlock KiB (soft)" "$(ulimit -Sl)" "$want_memlock" "$(lim_status "$(ulimit -Sl)" "$want_memlock")"
row "memlock KiB (hard)" "$(ulimit -Hl)" "$want_memlock" "$(lim_status "$(ulimit -Hl)" "$want_memlock")"
if [[ $APPLY == 1 ]]; then
  if install -m 0644 "$DIR/limits.conf" "$LIMITS_DEST"; then
    echo "wrote $LIMITS_DEST (log in again; systemd units need LimitNOFILE=/LimitMEMLOCK=)"
  else
    failed=1
  fi
fi

echo
echo "== transparent huge pages ($DIR/thp.conf)"
row setting current recommended status
while IFS= read -r line; do
  [[ -z $line || $line == \#* ]] && continue
  name="${line%% =*}"
  want="$(echo "${line#*= }" | xargs)"
  file="$THP_DIR/$name"
  if [[ ! -r $file ]]; then
    row "$name" "n/a" "$want" "no THP on this kernel; skipped"
    continue
  fi
  # The active choice is the bracketed word: "always [madvise] never".
  cur="$(sed -n 's/.*\[\(.*\)\].*/\1/p' "$file")"
  status=ok
  if [[ $cur != "$want" ]]; then
    status=change
    if [[ $APPLY == 1 ]]; then
      if echo "$want" >"$file" 2>/dev/null; then status=changed; else
        status="FAILED (read-only here?)"
        failed=1
      fi
    fi
  fi
  row "$name" "$cur" "$want" "$status"
done <"$DIR/thp.conf"

echo
echo "== IRQ affinity"
if [[ -n $SERVER_CPUS ]]; then
  APPLY="$APPLY" bash "$DIR/irq-affinity.sh" "$SERVER_CPUS" || failed=1
else
  echo "set SERVER_CPUS (e.g. SERVER_CPUS=0-7) to move interrupts off the server's cores;" \
    "see tuning/irq-affinity.sh"
fi

echo
if [[ $APPLY != 1 ]]; then
  echo "nothing changed; run APPLY=1 bash tuning/tune.sh as root to apply"
elif ((failed)); then
  echo "some settings could not be applied (see FAILED above)" >&2
  exit 1
fi
