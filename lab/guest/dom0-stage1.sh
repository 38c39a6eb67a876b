#!/bin/busybox sh
# dom0 stage 1 (PID 1 of the dom0 initramfs). Mounts the host root read-only over virtio-9p with a tmpfs
# overlay, mounts the lab directory read-write at the same path, then switch_roots into stage 2 (a script on
# the host filesystem). Any failure here prints LAB-DOM0-FAIL and powers off, so the host side fails fast.
/bin/busybox mkdir -p /bin /sbin /proc /sys /dev
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
exec </dev/console >/dev/console 2>&1

fail() {
  echo "LAB-DOM0-FAIL: stage1: $*"
  sleep 1
  echo o > /proc/sysrq-trigger
  while :; do sleep 60; done
}

echo "lab: dom0 stage1 start"
while read -r m; do
  insmod "$m" || echo "lab: stage1: insmod $m failed"
done < /etc/lab/modules

LAB=; REPO=; LIVE=
for a in $(cat /proc/cmdline); do
  case "$a" in
    gears_lab=*) LAB=${a#gears_lab=} ;;
    gears_repo=*) REPO=${a#gears_repo=} ;;
    gears_live=*) LIVE=${a#gears_live=} ;;
  esac
done
[ -n "$LAB" ] && [ -n "$REPO" ] || fail "gears_lab= or gears_repo= missing from the kernel command line"

# Two exports of the host root. `hostcache` (cache=loose: page cache and inodes kept) is the overlay's lower
# layer, so system binaries and libraries are read over 9p once, not on every exec (without it an exec cost
# ~1.5 s more than from tmpfs on a loaded host). `hostroot` (no cache) serves the paths that change while the
# lab is up (gears_live: the repo and GEARS_BIN), each with its own tmpfs overlay so dom0 may write as before.
mkdir -p /lower /live /ovl /newroot
M9P="trans=virtio,version=9p2000.L,msize=262144"
i=0
until mount -t 9p -o "$M9P,ro" hostroot /live; do
  i=$((i + 1)); [ $i -ge 20 ] && fail "cannot mount the hostroot 9p share"
  sleep 0.5
done
if ! mount -t 9p -o "$M9P,ro,cache=loose" hostcache /lower; then
  echo "lab: stage1: no hostcache share; the whole host root is uncached"
  mount --bind /live /lower || fail "bind hostroot"
  LIVE=
fi
mount -t tmpfs -o size=768m,mode=0755 tmpfs /ovl || fail "tmpfs"
mkdir -p /ovl/upper /ovl/work
mount -t overlay overlay -o lowerdir=/lower,upperdir=/ovl/upper,workdir=/ovl/work /newroot || fail "overlay mount"
n=0
for p in $(echo "$LIVE" | tr ':' ' '); do
  [ -d "/live$p" ] || continue
  n=$((n + 1)); mkdir -p "/ovl/u$n" "/ovl/w$n" "/newroot$p"
  mount -t overlay overlay -o "lowerdir=/live$p,upperdir=/ovl/u$n,workdir=/ovl/w$n" "/newroot$p" \
    || fail "overlay for the live path $p"
done
mount -t 9p -o "$M9P" labdir "/newroot$LAB" || fail "cannot mount the labdir 9p share on $LAB"
[ -x "/newroot$REPO/lab/guest/dom0-stage2.sh" ] || fail "stage 2 not found at $REPO/lab/guest/dom0-stage2.sh"
for d in dev proc sys; do mount --move /$d /newroot/$d || fail "move /$d"; done
echo "lab: dom0 stage1 done, switching root"
exec switch_root /newroot /bin/bash "$REPO/lab/guest/dom0-stage2.sh" "$LAB" "$REPO"
