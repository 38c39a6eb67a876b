#!/bin/bash
# Run in dom0: where the CPU goes per megabyte while a transfer into dom0 runs. Over $1 seconds: each domain's CPU
# seconds (xl list, accounted by Xen) and the bytes received by dom0's interfaces (all but lo and bridges), then
# each domain's share of wall time and its CPU milliseconds per MB received. Usage: xen-cpu-split.sh SECONDS
snap() { xl list | awk 'NR>1{print $1, $6}'; for i in /sys/class/net/*; do n=${i##*/}; [ $n = lo ] || [ -d $i/bridge ] && continue; echo "if:$n $(cat $i/statistics/rx_bytes)"; done; }
snap > /tmp/s0; t0=$(date +%s.%N); sleep $1; snap > /tmp/s1; t1=$(date +%s.%N)
paste /tmp/s0 /tmp/s1 | awk -v dt=$(awk "BEGIN{print $t1 - $t0}") '{d=$4-$2; if ($1 ~ /^if:/) { if (d>0) {b+=d; print $1, d/1e6 " MB"} } else { c[$1]=d; print $1, d " cpu-s" } } END { printf "wall %.2f s, %.1f MB/s\n", dt, b/1e6/dt; for (k in c) printf "%s: %.1f%% of wall, %.2f ms per MB\n", k, 100*c[k]/dt, 1000*c[k]/(b/1e6) }'
