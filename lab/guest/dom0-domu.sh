#!/bin/bash
# dom0-side helper for domUs (run by the dom0 agent on behalf of lab/labctl).
#   dom0-domu.sh create  NAME CFG TIMEOUT   xl create, then wait until the guest agent wrote data/lab/ready
#   dom0-domu.sh exec    NAME TIMEOUT B64   run a command in the guest (protocol: see domu-init.sh)
#   dom0-domu.sh destroy NAME
# Exit codes: the command's own code for exec; 124 = timed out; 125 = lab error (message on stderr).
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
err() { echo "lab: $*" >&2; }

domid_of() { xl domid "$1" 2>/dev/null; }

# Prints the xl state flags (e.g. "-b----", "--p--c") of domain $1; empty if it does not exist.
state_of() { xl list "$1" 2>/dev/null | awk 'NR == 2 { print $5 }'; }

_dead_once() {  # crashed, shut down, dying, or gone
  local s; s=$(state_of "$1")
  [ -z "$s" ] && return 0
  case "$s" in *c* | *s* | *d*) return 0 ;; esac
  return 1
}
# xl list has been seen to misreport a booting domain once; a death must be seen twice, 1 s apart.
is_dead() { _dead_once "$1" || return 1; sleep 1; _dead_once "$1"; }

cmd_create() {
  local name=$1 cfg=$2 timeout=$3 start id now
  start=$(date +%s.%N)
  if ! xl create "$cfg"; then err "xl create $cfg failed"; return 125; fi
  id=$(domid_of "$name") || { err "$name vanished right after xl create"; return 125; }
  local deadline=$(( $(date +%s) + timeout ))
  while :; do
    if xenstore-read "/local/domain/$id/data/lab/ready" >/dev/null 2>&1; then
      now=$(date +%s.%N)
      echo "ready domid=$id seconds=$(awk "BEGIN { printf \"%.1f\", $now - $start }")"
      return 0
    fi
    if is_dead "$name"; then err "$name (domid $id) died while booting: state '$(state_of "$name")'"; return 125; fi
    if [ "$(date +%s)" -ge $deadline ]; then
      err "$name (domid $id) not ready after ${timeout}s (state '$(state_of "$name")')"; return 124
    fi
    sleep 0.5
  done
}

cmd_exec() {
  local name=$1 timeout=$2 b64=$3 id="" st cache=/run/lab-domid.$1
  # Fast path: the domid cached by an earlier exec, confirmed by one xenstore read of its name and agent (xl
  # costs ~1 s of the one pCPU here). A crash on this path shows up in the dead check of the wait below.
  local probe=""
  [ -r "$cache" ] && read -r id <"$cache"
  [ -n "$id" ] && { probe=$(xenstore-read "/local/domain/$id/name" "/local/domain/$id/data/lab/ready" 2>/dev/null) || probe=""; }
  if [ "${probe%%$'\n'*}" != "$name" ]; then
    read -r id st <<<"$(xl list "$name" 2>/dev/null | awk 'NR == 2 { print $2, $5 }')"
    [ -n "$id" ] || { err "no running domain named '$name'"; return 125; }
    case "$st" in *c* | *s* | *d*) is_dead "$name" && { err "$name (domid $id) is not running: state '$(state_of "$name")'"; return 125; } ;; esac
    xenstore-read "/local/domain/$id/data/lab/ready" >/dev/null 2>&1 \
      || { err "$name (domid $id) has no lab agent (data/lab/ready missing)"; return 125; }
    echo "$id" >"$cache"
  fi
  local tok base
  tok=${EPOCHREALTIME/./}-$$
  base=/local/domain/$id/data/lab
  xenstore-write "$base/jobs/$tok" "$timeout $b64" || { err "xenstore-write to $name failed"; return 125; }
  # The guest kills the command after $timeout; allow it 30 s more to report before giving up.
  # Wait on a xenstore watch, not a poll loop: dom0 shares the only pCPU with the guest, and every spawned
  # poll delays the command it waits for. The watch fires once at registration and again when `done` is
  # written; a write between the read and the registration costs one 2 s round.
  local deadline=$(( EPOCHSECONDS + timeout + 30 )) done="" n=0
  while :; do
    done=$(xenstore-read "$base/res/$tok/done" 2>/dev/null) && break
    # Whether the guest died (xl list) only about every 6 s.
    if [ $n -ge 1 ] && [ $((n % 3)) -eq 0 ] && is_dead "$name"; then err "$name (domid $id) died while running the command: state '$(state_of "$name")'"; return 125; fi
    if [ "$EPOCHSECONDS" -ge $deadline ]; then
      err "no answer from $name after $((timeout + 30))s"
      xenstore-rm "$base/jobs/$tok" 2>/dev/null
      return 124
    fi
    timeout 2 xenstore-watch -n 2 "$base/res/$tok/done" >/dev/null 2>&1
    n=$((n + 1))
  done
  local rc chunks size drop i
  read -r rc chunks size drop <<<"$done"
  [ "${drop:-0}" -gt 0 ] && echo "[lab: output truncated: first $drop of $size bytes dropped]"
  local keys=()
  for ((i = 0; i < chunks; i++)); do keys+=("$base/res/$tok/$i"); done
  if [ "$chunks" -gt 0 ]; then xenstore-read "${keys[@]}" | base64 -d; fi
  xenstore-rm "$base/res/$tok"
  return "$rc"
}

cmd_destroy() { xl destroy "$1" 2>&1; return 0; }

sub=$1; shift
case "$sub" in
  create) cmd_create "$@" ;;
  exec) cmd_exec "$@" ;;
  destroy) cmd_destroy "$@" ;;
  *) err "unknown subcommand '$sub'"; exit 125 ;;
esac
