#!/bin/bash
# Foundation lab tests (issue 2). Run by ctest (tests/lab/CMakeLists.txt) on the host, against the lab booted by
# the `gears_lab` fixture:  foundation.sh xl_list | xenstore | vchan <guest> | exec_errors | missing_kernel
set -uo pipefail
LABCTL=${GEARS_LABCTL:-$(cd "$(dirname "$0")/../.." && pwd)/lab/labctl}
BYTES=${GEARS_LAB_VCHAN_BYTES:-64M}

fail() { echo "FAIL: $*" >&2; exit 1; }
pass() { echo "PASS: $*"; exit 0; }

# xl list in dom0 shows a running PV pv1 and a running PVH pvh1 (running/blocked, not crashed/dying/paused).
t_xl_list() {
  local out
  out=$("$LABCTL" exec dom0 -- 'xl list; echo ---; for d in pv1 pvh1; do echo "$d $(xl list -l "$d" | grep -m1 -o "\"type\": \"[a-z]*\"")"; done') \
    || fail "xl list failed: $out"
  echo "$out"
  local d want state
  for d in pv1:pv pvh1:pvh; do
    want=${d#*:}; d=${d%%:*}
    state=$(awk -v n="$d" '$1 == n && NF == 6 { print $5 }' <<<"$out")
    [ -n "$state" ] || fail "$d is not in xl list"
    [[ "$state" =~ ^[rb-]{6}$ ]] || fail "$d state is '$state' (crashed/shutdown/dying/paused)"
    grep -q "^$d \"type\": \"$want\"" <<<"$out" || fail "$d is not a $want domain"
  done
  pass "pv1 (pv) and pvh1 (pvh) are running"
}

# Each domU writes a random nonce into its own xenstore data dir; dom0 reads it back.
t_xenstore() {
  local g nonce got
  for g in pv1 pvh1; do
    nonce=$(od -An -tx8 -N16 /dev/urandom | tr -d ' \n')
    "$LABCTL" exec "$g" -- "xenstore-write data/lab-test/nonce $nonce" || fail "$g: xenstore-write failed"
    got=$("$LABCTL" exec dom0 -- "xenstore-read /local/domain/\$(xl domid $g)/data/lab-test/nonce") \
      || fail "dom0: xenstore-read of $g's nonce failed"
    [ "$got" = "$nonce" ] || fail "$g wrote '$nonce', dom0 read '$got'"
    echo "$g -> dom0 nonce $nonce ok"
  done
  pass "xenstore round trip from pv1 and pvh1"
}

# libxenvchan: server in the domU, client in dom0, $BYTES each way at once, checksums compared across sides.
t_vchan() {
  local g=${1:-pv1} id path tmp
  id=$("$LABCTL" exec dom0 -- "xl domid $g") || fail "no domain $g"
  path=/local/domain/$id/data/vchan-test
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  "$LABCTL" exec "$g" --timeout 300 -- \
    "gears-vchan-xfer server --peer 0 --path $path --bytes $BYTES --wait 120 --json" >"$tmp/server" 2>&1 &
  local spid=$!
  "$LABCTL" exec dom0 --timeout 300 -- \
    "gears-vchan-xfer client --peer $id --path $path --bytes $BYTES --wait 120 --json" >"$tmp/client" 2>&1
  local crc=$?
  wait $spid
  local src=$?
  echo "server ($g): $(cat "$tmp/server")"
  echo "client (dom0): $(cat "$tmp/client")"
  [ $crc -eq 0 ] || fail "client exited $crc"
  [ $src -eq 0 ] || fail "server exited $src"
  python3 - "$tmp/server" "$tmp/client" <<'EOF' || exit 1
import json, sys
def load(p):
    for line in open(p):
        if line.startswith("{"):
            return json.loads(line)
    sys.exit(f"FAIL: no JSON result in {p}")
s, c = load(sys.argv[1]), load(sys.argv[2])
for k in (s, c):
    if not k["ok"] or k["rx_bad_words"]:
        sys.exit(f"FAIL: {k['role']} received a corrupt stream")
if c["tx_checksum"] != s["rx_checksum"]:
    sys.exit(f"FAIL: dom0->domU checksum: sent {c['tx_checksum']}, received {s['rx_checksum']}")
if s["tx_checksum"] != c["rx_checksum"]:
    sys.exit(f"FAIL: domU->dom0 checksum: sent {s['tx_checksum']}, received {c['rx_checksum']}")
print(f"dom0->domU {c['tx_mbps']:.1f} MB/s, domU->dom0 {c['rx_mbps']:.1f} MB/s, {c['bytes']} bytes each way")
EOF
  pass "vchan with $g: checksums match both ways"
}

# exec reports exit codes and stderr, enforces --timeout, and names unknown guests.
t_exec_errors() {
  local out rc
  out=$("$LABCTL" exec dom0 -- 'echo to-out; echo to-err >&2; exit 7' 2>&1); rc=$?
  [ $rc -eq 7 ] || fail "dom0 exit code: want 7, got $rc"
  grep -q to-out <<<"$out" && grep -q to-err <<<"$out" || fail "dom0 output lost: $out"
  out=$("$LABCTL" exec pv1 -- 'echo to-out; echo to-err >&2; exit 9' 2>&1); rc=$?
  [ $rc -eq 9 ] || fail "domU exit code: want 9, got $rc"
  grep -q to-out <<<"$out" && grep -q to-err <<<"$out" || fail "domU output lost: $out"
  out=$("$LABCTL" exec pv1 -- 'head -c 100000 /dev/zero | tr "\0" x; echo; echo END' 2>&1); rc=$?
  [ $rc -eq 0 ] && grep -q "output truncated" <<<"$out" && grep -q END <<<"$out" \
    || fail "big domU output not truncated to its tail (rc $rc, ${#out} bytes)"
  local t0=$SECONDS
  "$LABCTL" exec dom0 --timeout 3 -- 'sleep 60' >/dev/null 2>&1; rc=$?
  [ $rc -eq 124 ] || fail "dom0 --timeout: want rc 124, got $rc"
  "$LABCTL" exec pv1 --timeout 3 -- 'sleep 60' >/dev/null 2>&1; rc=$?
  [ $rc -ne 0 ] || fail "domU --timeout: command was not stopped"
  [ $((SECONDS - t0)) -lt 60 ] || fail "timeouts took $((SECONDS - t0)) s"
  out=$("$LABCTL" exec nosuchguest -- true 2>&1); rc=$?
  [ $rc -eq 125 ] && grep -q "no running domain named 'nosuchguest'" <<<"$out" || fail "unknown guest: rc $rc: $out"
  pass "exec exit codes, output, truncation, timeouts and unknown guests"
}

# lab/tools/xen-sched-split on real Xen: a busy loop in pv1 for 5 s while the tool traces 2 s of it. Xen's switch
# records must account the whole span (shares sum to 1), name dom0 and pv1, and give pv1 most of the pCPU.
t_sched_split() {
  local out
  "$LABCTL" exec pv1 --timeout 60 -- 'end=$(($(cut -d. -f1 /proc/uptime) + 5)); while [ $(cut -d. -f1 /proc/uptime) -lt $end ]; do :; done' >/dev/null &
  sleep 1
  out=$("$(dirname "$0")/../../lab/tools/xen-sched-split" 2 --json) || { wait; fail "xen-sched-split failed: $out"; }
  wait
  echo "$out"
  python3 - "$out" <<'EOF' || fail "xen-sched-split accounting on real Xen"
import json, sys
d = json.loads(sys.argv[1])
doms = d["domains"]
total = sum(v["share"] for v in doms.values())
if not 0.99 <= total <= 1.01:
    sys.exit(f"FAIL: shares sum to {total}")
if not 1.5 <= d["span_s"] <= 2.5:
    sys.exit(f"FAIL: span {d['span_s']} s for a 2 s trace")
if "Domain-0" not in doms or "pv1" not in doms:
    sys.exit(f"FAIL: domains {sorted(doms)}")
if doms["pv1"]["share"] < 0.5:
    sys.exit(f"FAIL: pv1 busy-looping got only {doms['pv1']['share']} of the pCPU")
if d["lost_records"]:
    sys.exit(f"FAIL: {d['lost_records']} lost-record markers")
print(f"pv1 {doms['pv1']['share']:.2f}, dom0 {doms['Domain-0']['share']:.2f}, {d['switches']} switches in {d['span_s']} s")
EOF
  pass "xen-sched-split accounts a busy guest on real Xen"
}

# A broken lab (no kernel) fails within seconds, naming what is missing and the fix.
t_missing_kernel() {
  local out rc t0
  t0=$(date +%s%N)
  out=$(GEARS_LAB_KERNEL=/nonexistent/vmlinuz timeout 30 "$LABCTL" up 2>&1); rc=$?
  local ms=$((($(date +%s%N) - t0) / 1000000))
  echo "$out"
  [ $rc -ne 0 ] || fail "labctl up succeeded without a kernel"
  [ $rc -ne 124 ] || fail "labctl up hung (killed by timeout)"
  grep -q "/nonexistent/vmlinuz" <<<"$out" || fail "message does not name the missing kernel"
  grep -q "make deps" <<<"$out" || fail "message does not suggest make deps"
  [ $ms -lt 10000 ] || fail "took $ms ms to fail"
  pass "missing kernel rejected in $ms ms"
}

case "${1:-}" in
  xl_list) t_xl_list ;;
  xenstore) t_xenstore ;;
  vchan) t_vchan "${2:-pv1}" ;;
  exec_errors) t_exec_errors ;;
  sched_split) t_sched_split ;;
  missing_kernel) t_missing_kernel ;;
  *) echo "usage: $0 xl_list|xenstore|vchan <guest>|exec_errors|sched_split|missing_kernel" >&2; exit 2 ;;
esac
