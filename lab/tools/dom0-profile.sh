#!/bin/bash
# dom0-profile.sh NAME SECONDS [TOP]: where dom0's CPU time goes over SECONDS while a workload runs: the split of
# /proc/stat (user, system, softirq, idle, steal: time Xen gave to other domains) and the TOP threads by CPU time
# (default 15). Run it in dom0 (`labctl exec dom0 -- lab/tools/dom0-profile.sh ...`).
# Kernel accounting, not sampling: perf's cpu-clock sampling is useless in a PV dom0 (its timer fires as dom0 is
# scheduled back in, so nearly every sample lands in the idle hypercall).
set -uo pipefail
name=${1:?name} secs=${2:?seconds} top=${3:-15}
snap() {  # tid comm utime stime (ticks), one line per thread
  local f
  for f in /proc/[0-9]*/task/[0-9]*/stat; do
    { read -r line <"$f"; } 2>/dev/null || continue  # the thread may be gone
    local tid=${line%% *} rest=${line##*) } comm=${line#*(}
    comm=${comm%)*}
    set -- $rest
    echo "$tid ${comm// /_} ${12} ${13}"
  done
}
read -r _ u0 n0 s0 i0 w0 q0 sq0 st0 _ </proc/stat
a=$(snap)
sleep "$secs"
b=$(snap)
read -r _ u1 n1 s1 i1 w1 q1 sq1 st1 _ </proc/stat
tot=$(( (u1-u0) + (n1-n0) + (s1-s0) + (i1-i0) + (w1-w0) + (q1-q0) + (sq1-sq0) + (st1-st0) ))
[ "$tot" -gt 0 ] || tot=1
pct() { echo "$(( $1 * 1000 / tot / 10 )).$(( $1 * 1000 / tot % 10 ))%"; }
echo "== $name: dom0 over ${secs} s: user $(pct $((u1-u0+n1-n0))) system $(pct $((s1-s0))) irq $(pct $((q1-q0))) softirq $(pct $((sq1-sq0))) idle $(pct $((i1-i0+w1-w0))) steal $(pct $((st1-st0)))"
echo "== $name: threads by CPU time (share of the ${secs} s: total, user, system)"
join <(sort <<<"$a") <(sort <<<"$b") | awk -v tot="$tot" '{u=$6-$3; s=$7-$4; if (u+s>0) printf "%6.1f%%  %5.1f%% %5.1f%%  %s (%s)\n", (u+s)*100/tot, u*100/tot, s*100/tot, $2, $1}' | sort -rn | head -"$top"
