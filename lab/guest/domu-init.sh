#!/bin/sh
# domU /init (busybox sh, PID 1) and lab agent. Protocol, all under this domain's /local/domain/<id>/data/lab:
#   dom0 writes  jobs/<tok> = "<timeout-s> <base64 command>"   (one node, one write)
#   agent        removes jobs/<tok>, runs the command with `timeout` in the background, then writes
#                res/<tok>/<i> = base64 chunks of at most 1500 raw bytes (oxenstored quota-maxsize is 2048)
#                res/<tok>/done = "<rc> <chunks> <bytes> <truncated-bytes>"   (written last: its presence = done)
# Output (stdout+stderr) is capped at the LAST 65536 bytes. dom0 reads and removes res/<tok>.
export PATH=/opt/gears/bin:/usr/sbin:/usr/bin:/sbin:/bin
export LD_LIBRARY_PATH=/opt/gears/lib
/bin/busybox mkdir -p /proc /sys /dev /tmp /run /root
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /dev/shm
exec </dev/console >/dev/console 2>&1
echo "lab-guest: init start"
while read -r m; do insmod "$m" 2>/dev/null || echo "lab-guest: insmod $m failed"; done </etc/lab/modules
mkdir -p /proc/xen
mount -t xenfs xenfs /proc/xen 2>/dev/null
hostname "$(xenstore-read name 2>/dev/null || echo domU)"

LIMIT=65536
CHUNK=1500
run_job() {  # $1 token, $2 timeout, $3 base64 command
  d=/tmp/lab.$1
  mkdir -p "$d"
  echo "$3" | base64 -d >"$d/cmd"
  (cd /root && timeout -s KILL "$2" sh "$d/cmd" </dev/null >"$d/out" 2>&1)
  rc=$?
  size=$(wc -c <"$d/out")
  drop=0
  if [ "$size" -gt $LIMIT ]; then
    drop=$((size - LIMIT))
    tail -c $LIMIT "$d/out" >"$d/out.t" && mv "$d/out.t" "$d/out"
  fi
  n=$(wc -c <"$d/out")
  i=0
  while [ $((i * CHUNK)) -lt "$n" ]; do
    xenstore-write "data/lab/res/$1/$i" \
      "$(dd if="$d/out" bs=$CHUNK skip=$i count=1 2>/dev/null | base64 | tr -d '\n')"
    i=$((i + 1))
  done
  xenstore-write "data/lab/res/$1/done" "$rc $i $size $drop"
  rm -rf "$d"
}

i=0
until xenstore-write data/lab/ready "$(cut -d' ' -f1 /proc/uptime)"; do
  i=$((i + 1)); [ $i -gt 50 ] && { echo "lab-guest: cannot write xenstore"; break; }
  sleep 0.2
done
echo "lab-guest: agent ready"
# One long-lived watch on the jobs directory: every change (a new job, our own removals) wakes the loop at
# once, and no job can slip in between a listing and a watch registration. The outer loop re-registers it if
# xenstore-watch ever exits.
while :; do
  xenstore-watch data/lab/jobs 2>/dev/null | while read -r _; do
    for tok in $(xenstore-list data/lab/jobs 2>/dev/null); do
      job=$(xenstore-read "data/lab/jobs/$tok" 2>/dev/null) || continue
      xenstore-rm "data/lab/jobs/$tok"
      run_job "$tok" "${job%% *}" "${job#* }" &
    done
  done
  sleep 1
done
