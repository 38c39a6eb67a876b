#!/bin/bash
# dom0 stage 2: PID 1 after switch_root. Root is the host filesystem (read-only 9p + tmpfs overlay); $LAB is the
# read-write lab directory (build/lab) at the same path as on the host. Brings up the Xen toolstack exactly as
# the notes describe, then becomes the dom0 agent (never exits: PID 1 exiting panics the kernel).
LAB=$1
REPO=$2
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
exec </dev/console >/dev/console 2>&1
XENBIN=$(dirname "$(ls /usr/lib/xen-*/bin/oxenstored 2>/dev/null | sort -V | tail -1)")

fail() {
  echo "LAB-DOM0-FAIL: stage2: $*"
  echo "$*" > "$LAB/run/dom0.failed"
  sleep 1
  echo o > /proc/sysrq-trigger
  while :; do sleep 60; done
}
t0=$(cut -d' ' -f1 /proc/uptime)
echo "lab: dom0 stage2 start (uptime ${t0}s, xen tools $XENBIN)"

mountpoint -q /proc || mount -t proc proc /proc
mountpoint -q /sys || mount -t sysfs sys /sys
mountpoint -q /dev || mount -t devtmpfs dev /dev
mkdir -p /dev/pts /dev/shm
# devtmpfs has no /dev/fd (udev would add it): bash process substitution <(...) needs it.
ln -sfn /proc/self/fd /dev/fd; ln -sf /proc/self/fd/0 /dev/stdin; ln -sf /proc/self/fd/1 /dev/stdout; ln -sf /proc/self/fd/2 /dev/stderr
mount -t devpts devpts /dev/pts
# Fresh tmpfs for state directories, except one that holds the repository or the lab directory (a clone under
# /tmp, say): that one stays the overlay's own (already writable) view, or we would hide the project from itself.
for d in /run /tmp /var/lib/xen /var/log /dev/shm; do
  mkdir -p "$d"
  case "$REPO/ $LAB/" in "$d"/*|*" $d"/*) echo "lab: keeping $d from the host view (it holds $REPO or $LAB)"; continue ;; esac
  mount -t tmpfs tmpfs "$d"
done
mkdir -p /run/xen /run/xenstored /run/lock /var/lib/xen /var/log/xen "$LAB/logs/console" "$LAB/run/spool"
hostname gears-dom0

modprobe -a xen-evtchn xen-gntdev xen-gntalloc xen-privcmd xenfs xen-netback xen-blkback bridge \
  || echo "lab: some dom0 modules failed to load"
mount -t xenfs xenfs /proc/xen || fail "mount xenfs"

XENSTORED_ROOTDIR=/run/xenstored "$XENBIN/oxenstored" --pid-file /run/xen/xenstored.pid \
  || fail "oxenstored did not start"
for _ in $(seq 100); do xenstore-read -s / >/dev/null 2>&1 && break; sleep 0.2; done
xenstore-read -s / >/dev/null 2>&1 || fail "xenstored does not answer"
"$XENBIN/xen-init-dom0" || fail "xen-init-dom0"
"$XENBIN/xenconsoled" --pid-file=/run/xen/xenconsoled.pid --log=guest --log-dir="$LAB/logs/console" \
  || fail "xenconsoled"
# A bridge for later network tests (no guest gets a vif by default).
ip link add xenbr0 type bridge 2>/dev/null && ip link set xenbr0 up
ip link set lo up

t1=$(cut -d' ' -f1 /proc/uptime)
echo "$t1" > "$LAB/run/dom0.ready"
echo "dom0 ready (uptime ${t1}s)"
exec "$REPO/lab/guest/dom0-agent.sh" "$LAB" "$REPO"
