#!/bin/bash
# dom0 agent: runs job files the host drops into $LAB/run/spool (host-side: lab/labctl).
#   host writes  ID.sh  (atomically, by rename)        agent renames it to ID.run and runs it in the background
#   agent writes ID.out (stdout+stderr, as it goes)   then ID.rc (exit code; written to .tmp then renamed)
# Jobs run concurrently. The agent sleeps between polls (one pCPU is shared with the guests: never busy-poll)
# and refreshes $LAB/run/dom0.heartbeat so the host can tell a dead dom0 from a slow command.
LAB=$1
SPOOL=$LAB/run/spool
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# The poll loop spawns nothing (a fork+exec costs tens of ms of the one pCPU under TCG): `read -t` on a FIFO
# that never gets data is the sleep, and /proc/uptime is read by the shell itself. A read that does not time out
# (no FIFO, an error) falls back to `sleep`: the loop must never spin. (Sessions 9-10 spun: the FIFO came from
# <(:), and dom0 had no /dev/fd, so every read failed at once and the agent took ~80% of dom0's CPU.)
nap=
mkfifo -m 600 /run/lab-agent.nap 2>/dev/null || [ -p /run/lab-agent.nap ]
exec {nap}<>/run/lab-agent.nap || nap=
n=0
while :; do
  for f in "$SPOOL"/*.sh; do
    [ -e "$f" ] || continue
    id=${f%.sh}
    mv -f "$f" "$id.run" 2>/dev/null || continue
    (
      cd / || exit 1
      bash "$id.run" </dev/null >"$id.out" 2>&1
      echo $? >"$id.rc.tmp"
      mv -f "$id.rc.tmp" "$id.rc"
    ) &
  done
  n=$((n + 1))
  if [ $((n % 10)) -eq 1 ]; then read -r up _ </proc/uptime; echo "$up" >"$LAB/run/dom0.heartbeat"; fi
  if [ -n "$nap" ]; then read -r -t 0.2 -u "$nap" _; [ $? -gt 128 ] || sleep 0.2; else sleep 0.2; fi
done
