#!/bin/bash
# semblk lab tests (issue 4): the Gears blkif backend serving the stock xen-blkfront of the lab guests.
#   semblk.sh gearsd | ext4 file|nbd | durable | dcache | hostile | priority | domain_class | bench
# gearsd runs in dom0 for the whole group (log: /run/gears/gearsd.log in dom0). Backing files live in dom0's /tmp.
set -uo pipefail
LABCTL=${GEARS_LABCTL:-$(cd "$(dirname "$0")/../../.." && pwd)/lab/labctl}
LOG=/run/gears/gearsd.log   # in dom0
REPO=$(cd "$(dirname "$0")/../../.." && pwd)
LABDIR=${GEARS_LAB_DIR:-$REPO/build/lab}

fail() { echo "FAIL: $*" >&2; "$LABCTL" exec dom0 -- "tail -n 30 $LOG" >&2 || true; exit 1; }
pass() { echo "PASS: $*"; exit 0; }
dom0() { "$LABCTL" exec dom0 --timeout "${T:-120}" -- "$@"; }
guest() { local g=$1; shift; "$LABCTL" exec "$g" --timeout "${T:-300}" -- "$@"; }
domid() { dom0 "xl domid $1"; }

# dom0 runs the binaries in place over 9p: a binary relinked while the lab is up can be served from stale page
# cache (seen: gearsd segfaulting at once until caches were dropped), so drop them before starting gearsd.
start_gearsd() {
  dom0 "mkdir -p /run/gears; if ! [ -S /run/gears/gearsd.sock ] || ! gearsctl list >/dev/null 2>&1; then
          sync; echo 3 > /proc/sys/vm/drop_caches
          setsid gearsd --socket /run/gears/gearsd.sock --log-file $LOG --log-level debug ${GEARSD_ARGS:-} </dev/null >/dev/null 2>&1 &
          for i in \$(seq 50); do gearsctl list >/dev/null 2>&1 && break; sleep 0.2; done; fi; gearsctl version" \
    || fail "gearsd did not start"
}

# attach <guest> <vdev> <devid> <target> [--param k=v ...]: the disk appears in the guest as /dev/<vdev>.
attach() {
  local g=$1 vdev=$2 devid=$3 target=$4; shift 4
  local id; id=$(domid "$g") || fail "no $g"
  dom0 "gearsctl attach $id vbd $devid --param target=$target $*" || fail "attach $vdev to $g"
  guest "$g" "for i in \$(seq 100); do [ -b /dev/$vdev ] && exit 0; sleep 0.2; done; cat /proc/partitions; exit 1" \
    || fail "$g: /dev/$vdev did not appear"
}
detach() {
  local g=$1 vdev=$2 devid=$3 id; id=$(domid "$g")
  dom0 "gearsctl detach $id vbd $devid" || fail "detach $vdev from $g"
  guest "$g" "for i in \$(seq 100); do [ -b /dev/$vdev ] || exit 0; sleep 0.2; done; exit 1" \
    || fail "$g: /dev/$vdev still there after detach"
}

# Detach of a mounted disk (no --force). Must never hang the guest: either gearsd refuses (clear error, the disk
# keeps working: the files read back while mounted), or the guest's blkfront gives the disk up by itself (Linux
# >= 5.19 closes even when mounted, as it does under xl + blkback) and the detach completes without wedging its
# xenwatch. Either way the files are intact after a re-attach.
in_use_detach() {
  local g=$1 vdev=$2 devid=$3 target=$4 id out rc
  id=$(domid "$g")
  guest "$g" "mount /dev/$vdev /mnt/sb" || fail "mount for the in-use detach"
  out=$(T=90 dom0 "gearsctl detach $id vbd $devid 2>&1"); rc=$?
  echo "detach while mounted: rc=$rc: $out"
  if [ $rc != 0 ]; then
    grep -q 'in use' <<<"$out" || fail "detach refused without a clear reason: $out"
    out=$(T=600 guest "$g" "cd /mnt/sb && md5sum -c /tmp/semblk.md5 | grep -c ': OK'") || fail "disk broken after a refused detach: $out"
    [ "$(echo "$out" | tail -1)" = 16 ] || fail "after the refused detach only $out of 16 files read back"
    echo "refused; all 16 files still read back while mounted"
    guest "$g" "umount /mnt/sb" || fail "umount"
    return 0
  fi
  # The guest let go: its xenwatch must not be stuck (the device node goes away, xenstore still answers).
  guest "$g" "for i in \$(seq 100); do [ -b /dev/$vdev ] || break; sleep 0.2; done; [ ! -b /dev/$vdev ] && umount -l /mnt/sb" \
    || fail "$g: /dev/$vdev still there after the in-use detach (xenwatch hung?)"
  echo "the guest's blkfront closed the mounted disk itself; detach completed, guest responsive"
  attach "$g" "$vdev" "$devid" "$target"
  out=$(T=600 guest "$g" "set -e; mount /dev/$vdev /mnt/sb; cd /mnt/sb; md5sum -c /tmp/semblk.md5 | grep -c ': OK'; cd /; umount /mnt/sb") \
    || fail "checksums after the in-use detach: $out"
  [ "$(echo "$out" | tail -1)" = 16 ] || fail "after the in-use detach only $out of 16 files intact"
  echo "after re-attach all 16 files intact"
}

t_gearsd() {
  start_gearsd
  dom0 "gearsctl list"
  pass "gearsd up"
}

# mkfs.ext4, 256 MiB of random files, checksums; detach, re-attach, mount: the checksums match.
t_ext4() {
  local kind=$1 target out t0 t1
  start_gearsd
  case $kind in
    file)
      dom0 "rm -f /tmp/semblk-ext4.img && truncate -s 1G /tmp/semblk-ext4.img" || fail "backing file"
      target=file:/tmp/semblk-ext4.img ;;
    nbd)
      # A real NBD server on loopback: nbdkit's file plugin over a 1 GiB sparse file.
      dom0 "[ -f /run/gears/nbdkit.pid ] && kill \$(cat /run/gears/nbdkit.pid) 2>/dev/null; rm -f /tmp/semblk-nbd.img
            truncate -s 1G /tmp/semblk-nbd.img && nbdkit -i 127.0.0.1 -p 10809 -P /run/gears/nbdkit.pid file /tmp/semblk-nbd.img \
            && sleep 1 && echo nbdkit pid \$(cat /run/gears/nbdkit.pid)" || fail "nbdkit did not start"
      target=nbd://127.0.0.1:10809 ;;
  esac
  attach pv1 xvdb 51728 "$target"
  t0=$(date +%s.%N)
  out=$(T=900 guest pv1 "set -e; mkfs.ext4 -q -F /dev/xvdb; mkdir -p /mnt/sb; mount /dev/xvdb /mnt/sb
        for i in \$(seq 16); do dd if=/dev/urandom of=/mnt/sb/f\$i bs=1M count=16 2>/dev/null; done
        sync; (cd /mnt/sb && md5sum f*) > /tmp/semblk.md5; df -k /mnt/sb | tail -1; umount /mnt/sb; wc -l < /tmp/semblk.md5") \
    || fail "$kind: mkfs/write in pv1: $out"
  t1=$(date +%s.%N)
  echo "$out"
  echo "wrote 256 MiB in $(echo "$t1 - $t0" | bc) s (mkfs + write + sync, guest time)"
  detach pv1 xvdb 51728
  attach pv1 xvdb 51728 "$target"
  out=$(T=600 guest pv1 "set -e; mount /dev/xvdb /mnt/sb; cd /mnt/sb; md5sum -c /tmp/semblk.md5 | grep -c ': OK'; cd /; umount /mnt/sb") \
    || fail "$kind: checksums after re-attach: $out"
  echo "files OK after re-attach: $out"
  [ "$(echo "$out" | tail -1)" = 16 ] || fail "$kind: only $out of 16 files intact"
  in_use_detach pv1 xvdb 51728 "$target"
  out=$(T=600 guest pv1 "e2fsck -fn /dev/xvdb >/dev/null 2>&1 && echo clean") || true
  echo "e2fsck: $out"
  dom0 "gearsctl list --json | head -c 2000"
  detach pv1 xvdb 51728
  [ "$kind" = nbd ] && dom0 "kill \$(cat /run/gears/nbdkit.pid) 2>/dev/null; rm -f /tmp/semblk-nbd.img"
  [ "$kind" = file ] && dom0 "rm -f /tmp/semblk-ext4.img"
  pass "$kind: ext4 with 16 x 16 MiB random files survives detach + re-attach (checksums equal, fsck clean: $out)"
}

# A write whose flush was acknowledged is in the target file after kill -9 gearsd.
t_durable() {
  local out sum_g sum_f
  start_gearsd
  dom0 "rm -f /tmp/semblk-durable.img && truncate -s 256M /tmp/semblk-durable.img" || fail "backing file"
  attach pv1 xvdc 51744 file:/tmp/semblk-durable.img --param cache=writeback
  # dd conv=fsync: the data, then a flush (FLUSH_DISKCACHE) that must be acknowledged before dd exits.
  out=$(guest pv1 "set -e; dd if=/dev/urandom of=/tmp/blob bs=1M count=4 2>/dev/null
        dd if=/tmp/blob of=/dev/xvdc bs=1M seek=37 conv=fsync 2>/dev/null; md5sum < /tmp/blob") || fail "guest write: $out"
  sum_g=${out%% *}
  dom0 "kill -9 \$(pidof gearsd)" || fail "kill -9"
  sum_f=$(dom0 "dd if=/tmp/semblk-durable.img bs=1M skip=37 count=4 2>/dev/null | md5sum") || fail "read target"
  sum_f=${sum_f%% *}
  echo "guest md5 $sum_g, target file md5 $sum_f"
  dom0 "grep -c 'flush' $LOG >/dev/null; gearsctl list 2>&1 | head -2" || true
  [ "$sum_g" = "$sum_f" ] || fail "acknowledged data missing from the target after kill -9"
  # gearsd comes back, rediscovers the disk from xenstore and resumes the guest's ring.
  start_gearsd
  out=$(guest pv1 "dd if=/dev/xvdc bs=1M skip=37 count=4 iflag=direct 2>/dev/null | md5sum") || true
  echo "after gearsd restart, guest reads back: ${out%% *}"
  dom0 "gearsctl detach \$(xl domid pv1) vbd 51744; rm -f /tmp/semblk-durable.img" || true
  guest pv1 "for i in \$(seq 50); do [ -b /dev/xvdc ] || exit 0; sleep 0.2; done" || true
  pass "flushed write survived kill -9 gearsd (md5 $sum_f)$([ "${out%% *}" = "$sum_g" ] && echo '; the disk resumed after restart')"
}

# The dom0-side cache in write-back mode in front of a real NBD server: an unflushed write is held in the cache
# (not yet on the export), reads come back right (the second from the cache), a FLUSH puts it on the export, and
# after kill -9 gearsd the flushed data is on the export and reads back through a cold cache.
dc_stats() {  # the disk's dcache object, one JSON line
  dom0 "gearsctl stats" | python3 -c "import json,sys; d=json.load(sys.stdin)
for r in d['devices']:
    if r['dev']=='vbd/51760': print(json.dumps(r['stats'].get('dcache')))"
}
t_dcache() {
  local out sum_g sum_b st hits0 img=/tmp/semblk-dc.img
  start_gearsd
  dom0 "[ -f /run/gears/nbdkit-dc.pid ] && kill \$(cat /run/gears/nbdkit-dc.pid) 2>/dev/null; rm -f $img /var/cache/gears/dc-test.dcache
        truncate -s 256M $img && nbdkit -i 127.0.0.1 -p 10810 -P /run/gears/nbdkit-dc.pid file $img && sleep 1" \
    || fail "nbdkit did not start"
  attach pv1 xvdd 51760 nbd://127.0.0.1:10810 --param dcache=writeback --param dcache-file=/var/cache/gears/dc-test.dcache
  # 8 MiB at 5 MiB, O_DIRECT, no flush: acknowledged from the cache, not yet on the export.
  out=$(guest pv1 "set -e; dd if=/dev/urandom of=/tmp/dcblob bs=1M count=8 2>/dev/null
        dd if=/tmp/dcblob of=/dev/xvdd bs=1M seek=5 oflag=direct 2>/dev/null; md5sum < /tmp/dcblob") || fail "guest write: $out"
  sum_g=${out%% *}
  sum_b=$(dom0 "dd if=$img bs=1M skip=5 count=8 2>/dev/null | md5sum"); sum_b=${sum_b%% *}
  st=$(dc_stats); echo "after the unflushed write: export md5 $sum_b, dcache $st"
  [ "$sum_b" != "$sum_g" ] || fail "write-back: the unflushed write is already on the export"
  [ "$(jq_get "$st" dirty_blocks)" -ge 2048 ] || fail "write-back: expected >= 2048 dirty 4 KiB blocks: $st"
  # Reads: the written range comes from the cache; a range read twice is a miss, then a hit.
  out=$(guest pv1 "dd if=/dev/xvdd bs=1M skip=5 count=8 iflag=direct 2>/dev/null | md5sum") || fail "read back"
  [ "${out%% *}" = "$sum_g" ] || fail "read back through the cache: md5 ${out%% *}, wrote $sum_g"
  hits0=$(jq_get "$(dc_stats)" hits)
  out=$(guest pv1 "dd if=/dev/xvdd of=/dev/null bs=1M skip=100 count=16 iflag=direct 2>&1 | tail -1
        dd if=/dev/xvdd of=/dev/null bs=1M skip=100 count=16 iflag=direct 2>&1 | tail -1") || fail "read twice"
  echo "16 MiB read twice (miss, then hit): $out"
  st=$(dc_stats); echo "dcache: $st"
  [ "$(jq_get "$st" hits)" -gt "$hits0" ] || fail "the second read was not served from the cache: $st"
  # FLUSH (fsync of the block device): every dirty block reaches the export before the flush is acknowledged.
  guest pv1 "dd if=/dev/null of=/dev/xvdd conv=notrunc,fsync 2>/dev/null" || fail "flush"
  sum_b=$(dom0 "dd if=$img bs=1M skip=5 count=8 2>/dev/null | md5sum"); sum_b=${sum_b%% *}
  st=$(dc_stats); echo "after the flush: export md5 $sum_b, dcache $st"
  [ "$sum_b" = "$sum_g" ] || fail "after an acknowledged flush the export lacks the data"
  [ "$(jq_get "$st" dirty_blocks)" = 0 ] || fail "dirty blocks left after the flush: $st"
  hits0=$(jq_get "$st" hits)
  # Crash: flushed data stays on the export; the restarted gearsd reopens the disk with a cold cache.
  dom0 "kill -9 \$(pidof gearsd)" || fail "kill -9"
  start_gearsd
  out=$(guest pv1 "dd if=/dev/xvdd bs=1M skip=5 count=8 iflag=direct 2>/dev/null | md5sum") || fail "read after restart"
  st=$(dc_stats); echo "after kill -9 and restart: guest reads ${out%% *}, dcache $st"
  [ "${out%% *}" = "$sum_g" ] || fail "after the restart the guest reads ${out%% *}, wrote $sum_g"
  dom0 "gearsctl detach \$(xl domid pv1) vbd 51760" || fail "detach"
  guest pv1 "for i in \$(seq 50); do [ -b /dev/xvdd ] || exit 0; sleep 0.2; done; exit 1" || fail "xvdd still there"
  dom0 "kill \$(cat /run/gears/nbdkit-dc.pid) 2>/dev/null; rm -f $img" || true
  pass "dcache=writeback over NBD: unflushed write held in dom0, reads correct ($hits0 cache hits), flush reached the export, survived kill -9"
}
jq_get() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }

# pv1 runs a userspace frontend that misbehaves; dom0 closes its device; pvh1's Gears disk keeps working.
t_hostile() {
  local bad out c
  start_gearsd
  bad=$(domid pv1)
  dom0 "rm -f /tmp/semblk-h1.img /tmp/semblk-h2.img; truncate -s 64M /tmp/semblk-h1.img /tmp/semblk-h2.img" || fail "files"
  attach pvh1 xvdb 51728 file:/tmp/semblk-h2.img
  guest pvh1 "dd if=/dev/urandom of=/tmp/good bs=1M count=2 2>/dev/null; dd if=/tmp/good of=/dev/xvdb bs=1M conv=fsync 2>/dev/null" \
    || fail "pvh1 write"
  # pv1's kernel blkfront must not own the device: the test frontend does.
  guest pv1 "rmmod xen_blkfront" || fail "rmmod xen_blkfront"
  for c in junk prod flood; do
    dom0 "gearsctl attach $bad vbd 51888 --param target=file:/tmp/semblk-h1.img" || fail "attach hostile disk"
    out=$(guest pv1 "gears-blkfront-test --devid 51888 hostile --case $c") ; echo "pv1 $c: $out"
    grep -q '"ok":true' <<<"$out" || fail "hostile case $c: $out"
    if [ $c != junk ]; then
      dom0 "grep 'dom=$bad dev=vbd/51888: closed' $LOG | tail -n 1" || fail "no 'closed' log line for $c"
    fi
    out=$(guest pvh1 "dd if=/dev/xvdb bs=1M count=2 iflag=direct 2>/dev/null | md5sum; md5sum < /tmp/good") || fail "pvh1 read"
    [ "$(echo "$out" | cut -d' ' -f1 | uniq | wc -l)" = 1 ] || fail "pvh1's disk corrupted after pv1's $c: $out"
    dom0 "gearsctl detach $bad vbd 51888" || fail "detach hostile disk"
  done
  dom0 "grep -E 'dom=$bad dev=vbd/51888: (closed|request rejected)' $LOG | head -n 30"
  guest pv1 "insmod \$(grep xen-blkfront /etc/lab/modules)" || true
  detach pvh1 xvdb 51728
  pass "junk got error responses, prod/flood closed pv1's device; pvh1's Gears disk kept working"
}

# Two processes in pv1 read concurrently (O_DIRECT, 1 MiB) from the two halves of one Gears disk whose capacity
# model (capacity=) makes the disk the bottleneck. With hints (regions: half A gold, half B bronze; weights 4:1)
# the gold process must get >= 3x the bronze one's throughput; without hints (both halves one class) their
# shares must be within 20%. Throughput = bytes served per process label, from gearsd's per-process statistics
# over the same window (and the guests' own dd counts, printed for comparison).
prio_run() {
  local params=$1 label=$2 secs=${3:-30} out s0 s1
  dom0 "rm -f /tmp/semblk-prio.img && truncate -s 1G /tmp/semblk-prio.img" || fail "backing file"
  # Half A: sectors 0..1048575 (512 MiB), half B: 1048576..2097151.
  attach pv1 xvdb 51728 file:/tmp/semblk-prio.img $params
  guest pv1 "cat > /tmp/prio.sh <<'EOF2'
r() { while :; do dd if=/dev/xvdb of=/dev/null bs=1M count=256 skip=\$1 iflag=direct 2>/dev/null || exit; done; }
r 0 </dev/null >/dev/null 2>&1 & echo \$! > /tmp/prio.a; r 512 </dev/null >/dev/null 2>&1 & echo \$! > /tmp/prio.b
EOF2
sh /tmp/prio.sh" || fail "start readers"
  sleep 5
  s0=$(dom0 "gearsctl top -b -n 1 --json") || fail "top"
  sleep "$secs"
  s1=$(dom0 "gearsctl top -b -n 1 --json") || fail "top"
  guest pv1 "kill -9 \$(cat /tmp/prio.a) \$(cat /tmp/prio.b); killall -9 dd 2>/dev/null; sleep 2; ps | grep -c [d]d; true"
  dom0 "gearsctl top -b -n 1; gearsctl stats | grep -oE '\"anticipation[a-z_]*\": *[0-9]+' | tr '\\n' ' '" || true
  detach pv1 xvdb 51728
  python3 - "$s0" "$s1" "$secs" "$label" <<'PY'
import json, sys
s0, s1, secs, label = json.loads(sys.argv[1]), json.loads(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
def procs(s):
    out = {}
    for d in s.get("devices", []):
        for g in d.get("groups", []):
            if g["group"] == "process": out[g["name"]] = g["bytes"]
    return out
a, b = procs(s0), procs(s1)
rates = {k: (b[k] - a.get(k, 0)) / secs / 1e6 for k in b}
print(json.dumps({"run": label, "MBps": rates}))
PY
}

t_priority() {
  local hinted fair ra rb
  start_gearsd
  local cap=${SEMBLK_CAPACITY:-8M}
  hinted=$(prio_run "--param capacity=$cap --param weights=gold:4,bronze:1 --param anticipate=${SEMBLK_ANTICIPATE_US:-150000} --param regions='0-1048575:gold:A;1048576-2097151:bronze:B'" hinted) \
    || fail "hinted run"
  echo "$hinted"
  fair=$(prio_run "--param capacity=$cap --param regions='0-1048575:silver:A;1048576-2097151:silver:B'" unhinted) \
    || fail "unhinted run"
  echo "$fair"
  python3 - "$(tail -1 <<<"$hinted")" "$(tail -1 <<<"$fair")" <<'PY' || fail "shares out of bounds"
import json, sys
h, f = json.loads(sys.argv[1])["MBps"], json.loads(sys.argv[2])["MBps"]
hr = h["A"] / max(h["B"], 1e-9)
fr = f["A"] / max(f["B"], 1e-9)
print(f"hinted gold/bronze = {hr:.2f} (A {h['A']:.2f} MB/s, B {h['B']:.2f} MB/s); "
      f"unhinted A/B = {fr:.2f} (A {f['A']:.2f} MB/s, B {f['B']:.2f} MB/s)")
sys.exit(0 if hr >= 3.0 and 0.8 <= fr <= 1.25 else 1)
PY
  pass "weighted classes: gold >= 3x bronze with hints, fair within 20% without"
}

# A disk without class= takes its domain's hinted class, live (gearsctl attach DOM --hints class=...: what an xl
# config's gears_hints gives), and counts its requests there; no reconnect. gearsd is restarted at the end: a
# domain's hints cannot be withdrawn from the CLI, and later tests must not inherit them.
disk_check() {  # disk_check <domid> <python condition on s = the disk's stats>
  dom0 "gearsctl stats" | python3 -c "import json,sys; d=json.load(sys.stdin)
s=[r['stats'] for r in d['devices'] if r['dom']==$1 and r['dev']=='vbd/51728'][0]
print({k: s[k] for k in ('default_class','class_source','class_changes','connects','classes')})
sys.exit(0 if ($2) else 1)"
}
t_domain_class() {
  local id
  start_gearsd
  id=$(domid pv1) || fail "no pv1"
  dom0 "rm -f /tmp/semblk-cls.img && truncate -s 64M /tmp/semblk-cls.img" || fail "backing file"
  attach pv1 xvdb 51728 file:/tmp/semblk-cls.img
  disk_check "$id" "s['default_class']==1 and s['class_source']=='default'" || fail "a disk without hints is not silver"
  dom0 "gearsctl attach $id --hints class=gold" || fail "domain hints (gold)"
  guest pv1 "echo 3 > /proc/sys/vm/drop_caches; dd if=/dev/xvdb of=/dev/null bs=64k count=16" || fail "read 1"
  disk_check "$id" "s['default_class']==0 and s['class_source']=='hints' and s['classes']['gold']['reqs']>0" \
    || fail "the domain's gold did not reach the disk"
  dom0 "gearsctl attach $id --hints class=bronze" || fail "domain hints (bronze)"
  guest pv1 "echo 3 > /proc/sys/vm/drop_caches; dd if=/dev/xvdb of=/dev/null bs=64k count=16 skip=64" || fail "read 2"
  disk_check "$id" "s['default_class']==2 and s['class_changes']==2 and s['classes']['bronze']['reqs']>0 and s['connects']==1" \
    || fail "the change to bronze did not apply live"
  detach pv1 xvdb 51728
  dom0 "pkill -x gearsd; rm -f /tmp/semblk-cls.img"
  pass "a disk without its own class follows the domain's hinted class live (gold, then bronze, one connect)"
}

# Performance, for bench/run (bench/suites/blk.py): one JSON line. fio in a PV guest (needs GEARS_GUEST_TOOLS=fio)
# on one 256 MiB backing file in dom0 (tmpfs), served by gearsd (persistent grants, cache=writeback: ours), kernel
# xen-blkback (phy: on a loop device over the same file) and QEMU qdisk (dom0's qemu -M xenpv, guest pvq).
# Jobs: seq read and seq write (1 MiB, iodepth 8), random read (4 KiB, iodepth 16), $1 s each, O_DIRECT, libaio.
# The three are attached at once and measured in turn, ROUNDS ($2, default 3) times per job: ours, blkback, qdisk,
# ours, ... so a change of host load hits all three alike; each side reports its median and every round.
# Extras, measured once before: ours with the default cache=writethrough, and ours with grants=copy.
FIO_JOBS="seq_read:read:1M:8 seq_write:write:1M:8 rand4k:randread:4k:16"
fio_json() {  # fio's JSON outputs on stdin -> {job: {"mb_s", "iops"}}
  python3 -c '
import json, sys
dec, text, out, i = json.JSONDecoder(), sys.stdin.read(), {}, 0
while True:
    j = text.find("{", i)
    if j < 0: break
    try: d, i = dec.raw_decode(text, j)
    except ValueError: i = j + 1; continue
    job = d["jobs"][0]; side = job["read"] if job["read"]["io_bytes"] else job["write"]
    out[job["jobname"]] = {"mb_s": round(side["bw_bytes"] / 1e6, 2), "iops": round(side["iops"], 1)}
print(json.dumps(out))'
}
# fio_run <dev> <secs> <guest> <job spec...>: the given jobs in turn, on /dev/<dev> in <guest>; prints fio_json.
fio_run() {
  local dev=$1 secs=$2 g=$3; shift 3
  T=$((secs * 3 * $# + 300)) guest "$g" "command -v fio >/dev/null || { echo 'fio is not in the guest image (GEARS_GUEST_TOOLS=fio)'; exit 3; }
    for j in $*; do
      set -- \$(echo \$j | tr : ' '); n=\$1; rw=\$2; bs=\$3; qd=\$4
      fio --name=\$n --filename=/dev/$dev --direct=1 --ioengine=libaio --iodepth=\$qd --rw=\$rw --bs=\$bs --size=192M \
          --runtime=$secs --time_based --output-format=json > /tmp/fio-\$n.json 2>/tmp/fio-\$n.err || { cat /tmp/fio-\$n.err; exit 1; }
      cat /tmp/fio-\$n.json
    done" | fio_json
}
fio_all() { fio_run "$1" "$2" "${3:-pv1}" $FIO_JOBS; }

# disk_profile <domid> <label>: the Gears disk's counters and time split, on stderr (kept in bench/run's raw logs).
disk_profile() {
  dom0 "gearsctl stats" | python3 -c "import json,sys; d=json.load(sys.stdin)
for r in d['devices']:
    if r['dom']==$1 and r['dev']=='vbd/51728':
        s=r['stats']; print('disk profile $2:', json.dumps({k: s.get(k) for k in ('ops','bytes','grants','grant_copies','persistent_hits','profile')}))" >&2 || true
}

wait_dev() { guest "${2:-pv1}" "for i in \$(seq 150); do [ -b /dev/$1 ] && exit 0; sleep 0.2; done; exit 1"; }
gone_dev() { guest pv1 "for i in \$(seq 150); do [ -b /dev/$1 ] || exit 0; sleep 0.2; done; exit 1"; }

# blkback_attach <img>: the same file as xvdc of pv1 over kernel xen-blkback (phy: on a loop device); sets loop, or
# bb_err when that failed.
blkback_attach() {
  local img=$1
  loop=$(dom0 "modprobe loop 2>/dev/null; losetup -f --show $img") || loop=""
  if [ -z "$loop" ]; then
    bb_err="no loop device in dom0 (losetup -f failed)"
  # Debian's /etc/xen/scripts/block timed out in the lab's dom0 (libxl killed it after 10 s); this does its job for a
  # phy: device: tell blkback which block device to open.
  elif ! { dom0 "cat > /run/gears/block-phy <<'EOS'
#!/bin/sh
[ \"\$1\" = add ] || exit 0
dev=\$(xenstore-read \"\$XENBUS_PATH/params\") && mm=\$(stat -L -c '%t:%T' \"\$dev\") &&
  xenstore-write \"\$XENBUS_PATH/physical-device\" \"\$mm\" \"\$XENBUS_PATH/hotplug-status\" connected
EOS
chmod +x /run/gears/block-phy" && dom0 "xl block-attach pv1 'phy:$loop,xvdc,w,script=/run/gears/block-phy'" && wait_dev xvdc; }; then
    bb_err="xl block-attach phy: failed"
  fi
}
blkback_detach() {
  if [ -z "$bb_err" ]; then dom0 "xl block-detach pv1 xvdc" || true; gone_dev xvdc || true; fi
  [ -n "$loop" ] && { dom0 "losetup -d $loop" || true; }
}

t_bench() {
  local secs=${1:-10} rounds=${2:-3} wt copy loop id img=/tmp/semblk-bench.img qcfg=$LABDIR/run/pvq.cfg
  local bb_err="" qd_err="" rows=/tmp/semblk-bench.$$ j r side out
  start_gearsd
  id=$(domid pv1) || fail "no pv1"
  dom0 "rm -f $img && dd if=/dev/zero of=$img bs=1M count=256 2>/dev/null" || fail "backing file"
  # Extras, once: the default cache=writethrough (O_DSYNC: durable per write); grants=copy (grant copy for every
  # request), cache=writeback.
  attach pv1 xvdb 51728 "file:$img"
  wt=$(fio_all xvdb "$secs") || wt='{"error":"fio failed"}'
  disk_profile "$id" writethrough
  detach pv1 xvdb 51728
  attach pv1 xvdb 51728 "file:$img" --param grants=copy --param cache=writeback
  copy=$(fio_all xvdb "$secs") || copy='{"error":"fio failed"}'
  disk_profile "$id" copy
  detach pv1 xvdb 51728
  # ours: the default grants=persistent with cache=writeback, the durability contract of the blkback peer (a loop
  # device writes into dom0's page cache; the guest's FLUSH makes it durable).
  attach pv1 xvdb 51728 "file:$img" --param cache=writeback
  blkback_attach "$img"
  # qdisk: libxl serves it from the domain's own device model (QEMU -M xenpv), started only for a domain created
  # with a qdisk disk; so a second PV guest like pv1 (same kernel and image, 512 MiB) gets the file as xvdb.
  sed -e 's/^name = .*/name = "pvq"/' -e 's/^memory = .*/memory = 512/' "$LABDIR/run/pv1.cfg" >"$qcfg"
  echo "disk = [ 'format=raw,vdev=xvdb,access=rw,backendtype=qdisk,target=$img' ]" >>"$qcfg"
  T=400 dom0 "xl domid pvq >/dev/null 2>&1 && xl destroy pvq; lab/guest/dom0-domu.sh create pvq $qcfg 300" && wait_dev xvdb pvq \
    || qd_err="could not create a PV guest with a qdisk disk (xl create, QEMU -M xenpv)"
  : >"$rows"
  for j in $FIO_JOBS; do
    for r in $(seq "$rounds"); do
      # Odd rounds ours first, even rounds ours last: neither side always runs after the other.
      order="ours blkback qdisk"; [ $((r % 2)) -eq 0 ] && order="qdisk blkback ours"
      for side in $order; do
        case $side in
          ours) out=$(fio_run xvdb "$secs" pv1 "$j") ;;
          blkback) [ -z "$bb_err" ] || continue; out=$(fio_run xvdc "$secs" pv1 "$j") ;;
          qdisk) [ -z "$qd_err" ] || continue; out=$(fio_run xvdb "$secs" pvq "$j") ;;
        esac || out='{}'
        echo "$side $out" >>"$rows"
        echo "round $r ${j%%:*} $side: $out" >&2
      done
    done
  done
  disk_profile "$id" ours
  detach pv1 xvdb 51728
  blkback_detach
  dom0 "xl destroy pvq" >/dev/null 2>&1 || true
  dom0 "rm -f $img" || true
  python3 - "$rows" "$secs" "$rounds" "$wt" "$copy" "$bb_err" "$qd_err" <<'PY'
import json, statistics, sys
rows, secs, rounds, wt, copy, bb_err, qd_err = sys.argv[1:8]
got = {"ours": {}, "blkback": {}, "qdisk": {}}
for line in open(rows):
    side, _, text = line.partition(" ")
    for job, v in json.loads(text or "{}").items():
        got[side].setdefault(job, []).append(v)
out = {"seconds": int(secs), "rounds": int(rounds), "order": "interleaved per job: ours, blkback, qdisk in odd rounds, reversed in even rounds",
       "writethrough": json.loads(wt), "copy": json.loads(copy)}
for side, jobs in got.items():
    err = {"blkback": bb_err, "qdisk": qd_err}.get(side, "")
    if err or not jobs:
        out[side] = {"error": err or "fio failed"}
        continue
    out[side] = {job: {"mb_s": statistics.median(v["mb_s"] for v in vals), "iops": statistics.median(v["iops"] for v in vals),
                       "rounds_mb_s": [v["mb_s"] for v in vals], "rounds_iops": [v["iops"] for v in vals]}
                 for job, vals in jobs.items()}
print(json.dumps(out))
PY
  rm -f "$rows"
}

# A/B of two gearsd set-ups against blkback, for experiments (not a test): one fio job (JOB as in FIO_JOBS, e.g.
# rand4k:randread:4k:16) ROUNDS times, SECS each, order alternating; gearsd is restarted for each of its runs with
# GEARSD_ARGS A or B and the disk attached with PARAMS A or B. Each run also prints the CPU seconds every domain
# used (xl list) over its wall time, so an idle machine shows as a sum below 1.
#   semblk.sh ab SECS ROUNDS JOB "GEARSD_ARGS_A" "GEARSD_ARGS_B" ["PARAMS_A" "PARAMS_B"]
cpu_times() { dom0 "xl list | awk 'NR>1 {printf \"%s=%s \", \$1, \$6}'; cat /proc/uptime | cut -d' ' -f1"; }
cpu_share() {  # cpu_share "<before>" "<after>": per-domain CPU seconds per wall second
  python3 -c 'import sys
def parse(t):
    *doms, up = t.split(); return {k: float(v) for k, v in (d.split("=") for d in doms)}, float(up)
(a, ta), (b, tb) = parse(sys.argv[1]), parse(sys.argv[2]); w = tb - ta
print(" ".join(f"{k}={(b[k]-a.get(k, 0))/w:.2f}" for k in b), f"sum={sum(b[k]-a.get(k, 0) for k in b)/w:.2f}")' "$1" "$2"
}
t_ab() {
  [ $# -ge 5 ] || { echo "usage: $0 ab SECS ROUNDS JOB GEARSD_ARGS_A GEARSD_ARGS_B [PARAMS_A PARAMS_B]" >&2; exit 2; }
  local secs=$1 rounds=$2 job=$3 ga=$4 gb=$5 pa=${6:-} pb=${7:-} img=/tmp/semblk-ab.img
  local loop="" bb_err="" r side order out c0 c1 i0 i1
  dom0 "mkdir -p /run/gears; rm -f $img && dd if=/dev/zero of=$img bs=1M count=256 2>/dev/null" || fail "backing file"
  blkback_attach "$img"
  [ -z "$bb_err" ] || fail "$bb_err"
  for r in $(seq "$rounds"); do
    order="A B blkback"; [ $((r % 2)) -eq 0 ] && order="blkback B A"
    for side in $order; do
      if [ "$side" != blkback ]; then
        dom0 "pkill -x gearsd; sleep 1" || true
        if [ "$side" = A ]; then GEARSD_ARGS=$ga start_gearsd >/dev/null; attach pv1 xvdb 51728 "file:$img" --param cache=writeback $pa
        else GEARSD_ARGS=$gb start_gearsd >/dev/null; attach pv1 xvdb 51728 "file:$img" --param cache=writeback $pb; fi
      fi
      c0=$(cpu_times); i0=$(guest pv1 "awk '/blkif/ {print \$1 \$2}' /proc/interrupts" | tr '\n' ' ')
      if [ "$side" = blkback ]; then out=$(fio_run xvdc "$secs" pv1 "$job"); else out=$(fio_run xvdb "$secs" pv1 "$job"); fi
      c1=$(cpu_times); i1=$(guest pv1 "awk '/blkif/ {print \$1 \$2}' /proc/interrupts" | tr '\n' ' ')
      echo "round $r $side: $out cpu: $(cpu_share "$c0" "$c1") guest irqs: $i0-> $i1"
      [ "$side" = blkback ] || detach pv1 xvdb 51728
    done
  done
  blkback_detach
  dom0 "pkill -x gearsd; rm -f $img" || true
}

case "${1:-}" in
  priority) t_priority ;;
  domain_class) t_domain_class ;;
  bench) shift; t_bench "$@" ;;
  ab) shift; t_ab "$@" ;;
  gearsd) t_gearsd ;;
  ext4) t_ext4 "${2:-file}" ;;
  durable) t_durable ;;
  dcache) t_dcache ;;
  hostile) t_hostile ;;
  *) echo "usage: $0 gearsd|ext4 file|nbd|durable|dcache|hostile|priority|domain_class|bench [SECONDS [ROUNDS]]|ab SECS ROUNDS JOB A B [PA PB]" >&2; exit 2 ;;
esac
