#!/usr/bin/env bash
# Moves hardware interrupt handling off the CPUs that run ferrocache, so a
# NIC or disk interrupt never preempts a server core in the middle of a
# request (each core is a whole shard; a stall there stalls all its keys).
#
#   tuning/irq-affinity.sh SERVER_CPUS          show what would change
#   APPLY=1 tuning/irq-affinity.sh SERVER_CPUS  change it (root)
#
# SERVER_CPUS is a CPU list such as 0-7 or 0,2,4-6 (what the server is pinned
# to, e.g. with taskset). Every IRQ, and the default for new IRQs, is steered
# to the remaining online CPUs. Kernel-managed IRQs (per-queue NVMe/virtio
# vectors) refuse changes and are reported as skipped. irqbalance undoes this:
# stop it, or set IRQBALANCE_BANNED_CPULIST=SERVER_CPUS in
# /etc/default/irqbalance. Not persistent across reboots.
set -euo pipefail

APPLY="${APPLY:-0}"
[[ $# -eq 1 ]] || {
  echo "usage: $0 SERVER_CPUS   (e.g. 0-3; APPLY=1 to change)" >&2
  exit 2
}

# expand "0-2,5" -> "0 1 2 5"
expand() {
  local part out=() a b c
  IFS=, read -ra parts <<<"$1"
  for part in "${parts[@]}"; do
    [[ $part =~ ^([0-9]+)(-([0-9]+))?$ ]] || {
      echo "bad CPU list element: '$part'" >&2
      exit 2
    }
    a="${BASH_REMATCH[1]}"
    b="${BASH_REMATCH[3]:-$a}"
    ((a <= b)) || {
      echo "bad CPU range: '$part'" >&2
      exit 2
    }
    for ((c = a; c <= b; c++)); do out+=("$c"); done
  done
  echo "${out[@]}"
}

# "0 1 2 5" -> "0-2,5"
compress() {
  local res="" start="" prev="" c
  for c in $1 end; do
    if [[ -n $start && ($c == end || $c -ne $((prev + 1))) ]]; then
      res+="${res:+,}$start"
      [[ $prev != "$start" ]] && res+="-$prev"
      start=""
    fi
    [[ $c == end ]] && break
    [[ -z $start ]] && start=$c
    prev=$c
  done
  echo "$res"
}

# CPU numbers -> the comma-separated 32-bit hex groups of /proc/irq masks.
to_mask() {
  local max=0 c
  for c in $1; do ((c > max)) && max=$c; done
  local words=$((max / 32 + 1)) w groups=()
  local -a bits
  for ((w = 0; w < words; w++)); do bits[w]=0; done
  for c in $1; do bits[c / 32]=$((bits[c / 32] | (1 << (c % 32)))); done
  # Highest group first, as the kernel prints it.
  for ((w = words - 1; w >= 0; w--)); do groups+=("$(printf '%08x' "${bits[w]}")"); done
  (IFS=,; echo "${groups[*]}")
}

server=" $(expand "$1") "
online="$(expand "$(cat /sys/devices/system/cpu/online)")"
rest=()
for c in $online; do
  [[ $server == *" $c "* ]] || rest+=("$c")
done
for c in $server; do
  [[ " $online " == *" $c "* ]] || {
    echo "CPU $c is not online (online: $(cat /sys/devices/system/cpu/online))" >&2
    exit 2
  }
done
((${#rest[@]} > 0)) || {
  echo "no CPU left for interrupts: the server list covers every online CPU" >&2
  exit 2
}
target="$(compress "${rest[*]}")"
echo "server CPUs: $(compress "$server"); interrupts go to: $target"
if pgrep -x irqbalance >/dev/null 2>&1; then
  echo "warning: irqbalance is running and will move IRQs back; stop it or set IRQBALANCE_BANNED_CPULIST=$(compress "$server")" >&2
fi
if [[ $APPLY == 1 && $(id -u) -ne 0 ]]; then
  echo "APPLY=1 needs root" >&2
  exit 1
fi

changed=0 skipped=0 same=0
printf '%-6s %-14s %-14s %s\n' irq current new device
for dir in /proc/irq/[0-9]*; do
  irq="${dir##*/}"
  [[ -r $dir/smp_affinity_list ]] || continue
  cur="$(cat "$dir/smp_affinity_list")"
  # The device name is the one subdirectory of /proc/irq/N (if any).
  dev=""
  for d in "$dir"/*/; do
    [[ -d $d ]] && dev="$(basename "$d")" && break
  done
  if [[ $cur == "$target" ]]; then
    same=$((same + 1))
    continue
  fi
  status="would change"
  if [[ $APPLY == 1 ]]; then
    if echo "$target" >"$dir/smp_affinity_list" 2>/dev/null; then
      status="changed"
      changed=$((changed + 1))
    else
      status="skipped (kernel-managed or not movable)"
      skipped=$((skipped + 1))
    fi
  fi
  printf '%-6s %-14s %-14s %s  %s\n' "$irq" "$cur" "$target" "${dev:--}" "$status"
done
mask="$(to_mask "${rest[*]}")"
cur_default="$(cat /proc/irq/default_smp_affinity 2>/dev/null || echo n/a)"
echo "default affinity for new IRQs: $cur_default -> $mask"
if [[ $APPLY == 1 ]]; then
  echo "$mask" >/proc/irq/default_smp_affinity || echo "could not set the default affinity" >&2
  echo "changed $changed IRQs, $skipped skipped, $same already on $target"
else
  echo "$same IRQs already on $target; run with APPLY=1 (as root) to change the rest"
fi
