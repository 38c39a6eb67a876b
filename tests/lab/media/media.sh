#!/bin/bash
# Media backend lab tests (issue 6), against the lab booted by the `gears_lab` fixture.
#   media.sh mix | duck | hostile | capture | bench [SECONDS]
# gearsd runs in dom0 with the vsnd backend (discovery of backend/vsnd written by libxl) and a media control
# socket; each test points the mixer's sink at its own WAV on the lab's read-write share, so the host reads it.
# Extra domUs with `vsnd=` are created AFTER gearsd runs (xl create waits for the backend's InitWait):
#   snda (unique-id 101, media), sndb (unique-id 201, voice in the duck test): stock snd-xen-front + aplay;
#   sndh: snd-xen-front blacklisted, so the crafted userspace frontend gears-sndfront-hostile owns device/vsnd/0.
set -uo pipefail
LABCTL=${GEARS_LABCTL:-$(cd "$(dirname "$0")/../../.." && pwd)/lab/labctl}
REPO=${GEARS_REPO:-$(cd "$(dirname "$0")/../../.." && pwd)}
LABDIR=${GEARS_LAB_DIR:-$REPO/build/lab}
BIN=${GEARS_BIN:-$REPO/build/rel/bin}
OUT=$LABDIR/media          # shared with dom0 at the same path
LOG=/run/gears/gearsd.log  # in dom0 (tmpfs: the 9p share is slow under TCG)
# The lab shares two cores with other work: a 16 kHz mixer with libsamplerate's linear converter keeps dom0's
# real-time budget small. Guests play 11.025 / 8 kHz tones, so every stream is rate-converted.
RATE=${GEARS_MEDIA_RATE:-16000}
RESAMPLER=${GEARS_MEDIA_RESAMPLER:-linear}
CAPTURE_HZ=700             # gearsd's capture generator; no guest plays this tone, so finding it proves capture
mkdir -p "$OUT"

fail() { echo "FAIL: $*" >&2; "$LABCTL" exec dom0 -- "tail -n 40 $LOG" >&2; exit 1; }
pass() { echo "PASS: $*"; exit 0; }
dom0() { "$LABCTL" exec dom0 --timeout "${T:-120}" -- "$@"; }
guest() { local g=$1; shift; "$LABCTL" exec "$g" --timeout "${T:-300}" -- "$@"; }
domid() { dom0 "xl domid $1"; }
jget() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1], {}, {"d": d}))' "$1"; }

# gearsd with the media backend configured for these tests; reused if it is our copy and answers, else (re)started
# (the other lab groups start gearsd with default media options). dom0 runs a private copy
# on the share: dom0 reads the host tree over 9p, and a binary rebuilt while the lab is up can show stale pages
# there (seen: a segfault at start).
ensure_gearsd() {
  local g=$OUT/gearsd.$(stat -c %Y "$BIN/gearsd")
  [ -x "$g" ] || cp "$BIN/gearsd" "$g" || fail "cannot copy gearsd"
  T=300 dom0 "pidof $(basename "$g") >/dev/null && gearsctl media status >/dev/null 2>&1 && exit 0
        for p in \$(pidof gearsd) \$(pidof $(basename "$g")); do kill \$p; done; sleep 1
        mkdir -p /run/gears
        setsid $g --socket /run/gears/gearsd.sock --log-file $LOG --log-level debug \
          --media-duck-db 20 --media-sink null --media-rate $RATE --media-resampler $RESAMPLER --media-period-ms 20 \
          --media-capture sine:$CAPTURE_HZ </dev/null >/dev/null 2>&1 &
        for i in \$(seq 100); do gearsctl media status >/dev/null 2>&1 && exit 0; sleep 0.5; done; exit 1" \
    || fail "gearsd with the media backend did not start"
}

# A PV guest like pv1 plus one vsnd card (one stream, unique-id $2); $3 = extra kernel args; $4 = p|c (playback).
ensure_guest() {
  local name=$1 uid=$2 extra=${3:-} type=${4:-p}
  if dom0 "xl domid $name >/dev/null 2>&1 && xenstore-read /local/domain/\$(xl domid $name)/data/lab/ready" >/dev/null 2>&1; then
    return 0
  fi
  local cfg=$LABDIR/run/$name.cfg
  [ -f "$LABDIR/run/pv1.cfg" ] || fail "no $LABDIR/run/pv1.cfg to start from"
  # A fresh copy of the guest image (dom0 may cache stale pages of a file rewritten since the lab came up).
  local rd=$LABDIR/run/$name-initrd.$(stat -c %Y "$LABDIR/images/domu-initrd.gz").gz
  [ -f "$rd" ] || cp "$LABDIR/images/domu-initrd.gz" "$rd" || fail "cannot copy the guest image"
  sed -e "s/^name = .*/name = \"$name\"/" -e "s/^memory = .*/memory = 256/" -e "s|^ramdisk = .*|ramdisk = \"$rd\"|" \
      -e "s/^extra = \"\(.*\)\"/extra = \"\1 $extra\"/" "$LABDIR/run/pv1.cfg" >"$cfg"
  cat >>"$cfg" <<EOF
vsnd = [ [ 'CARD, short-name=Gears, sample-rates=8000;11025;16000;22050;44100;48000, buffer-size=65536', 'PCM, name=main', 'STREAM, unique-id=$uid, type=$type' ] ]
EOF
  T=400 dom0 "lab/guest/dom0-domu.sh create $name $cfg 300" || fail "xl create $name (vsnd) failed"
}

# Start barrier. A guest command prepares, announces it is ready (data/media/ready in its xenstore directory) and
# waits for dom0's go epoch (data/media/go; dom0's clock, which PV guests share through Xen's wallclock); `release`
# gives go = now + 2 s once every guest is ready. Each guest round trip costs seconds on a quiet host and minutes
# on a loaded one, so a fixed lead would either waste time or be too short.
# await_go <offset>: the guest-side part (prints late_s: how late the guest was for go + offset).
await_go() {
  echo "xenstore-write data/media/ready 1
while ! go=\$(xenstore-read data/media/go 2>/dev/null); do sleep 0.1; done
echo late_s=\$(( \$(date +%s) - go - $1 ))
while [ \$(date +%s) -lt \$(( go + $1 )) ]; do sleep 0.1; done"
}
ids_of() { local g ids=""; for g; do ids="$ids $(domid "$g")" || return 1; done; echo "$ids"; }
# arm <guest>...: clears the guests' barrier keys; call it before sending their commands.
arm() {
  local ids; ids=$(ids_of "$@") || fail "no domain among: $*"
  dom0 "for i in $ids; do xenstore-rm /local/domain/\$i/data/media 2>/dev/null; done; true" >/dev/null
}
# release <guest>...: waits (up to 5 min) until every guest is ready, then sets go; prints the go epoch.
release() {
  local ids; ids=$(ids_of "$@") || fail "no domain among: $*"
  T=400 dom0 "for i in $ids; do n=0; until xenstore-read /local/domain/\$i/data/media/ready >/dev/null 2>&1; do
        n=\$((n + 1)); [ \$n -gt 3000 ] && exit 1; sleep 0.1; done; done
      go=\$(( \$(date +%s) + 2 )); for i in $ids; do xenstore-write /local/domain/\$i/data/media/go \$go; done; echo \$go" \
    || fail "not every guest got ready to play: $*"
}

# play_at <guest> <hz> <seconds> <rate> <channels> <offset>: ONE guest command: wait for the snd-xen-front card,
# write the tone and the ALSA config aplay needs, then (await_go) at go + <offset> aplay through the card
# (buffer BUF_US and period PERIOD_US, 2 s and 250 ms unless set).
play_at() {
  guest "$1" "for i in \$(seq 240); do grep -q '[0-9] \[' /proc/asound/cards 2>/dev/null && break; sleep 0.5; done
cat /proc/asound/cards | head -1
gears-sndfront-tone --alsa-conf >/tmp/alsa.conf && gears-sndfront-tone $2 $3 $4 $5 0.5 >/tmp/t.wav || exit 3
$(await_go "$6")
ALSA_CONFIG_PATH=/tmp/alsa.conf aplay -D hw:0,0 --buffer-time=${BUF_US:-2000000} --period-time=${PERIOD_US:-250000} /tmp/t.wav 2>&1; echo aplay rc=\$?"
}
now() { dom0 "date +%s"; }
# The lab runs every domain on one emulated pCPU, and an idle guest costs ~20% of it under TCG: pause the
# domains a test does not use (real-time audio needs the CPU), and unpause the fixture guests afterwards.
only() {
  local keep=" $* " d
  for d in pv1 pvh1 snda sndb sndh sndc; do
    case "$keep" in *" $d "*) dom0 "xl unpause $d 2>/dev/null; true" >/dev/null ;;
      *) dom0 "xl list $d >/dev/null 2>&1 && xl pause $d 2>/dev/null; true" >/dev/null ;; esac
  done
}
trap 'dom0 "xl unpause pv1 2>/dev/null; xl unpause pvh1 2>/dev/null; true" >/dev/null 2>&1' EXIT
# record <name>: the mixer writes /run/gears/<name>.wav in dom0 (tmpfs); stop_record copies it to $OUT.
record() { dom0 "rm -f /run/gears/$1.wav; gearsctl media sink wav:/run/gears/$1.wav" >/dev/null || fail "cannot set the sink"; }
stop_record() {
  dom0 "gearsctl media sink null >/dev/null && sleep 0.5 && cp /run/gears/$1.wav $OUT/$1.wav" || fail "cannot save $1.wav"
}

# Two domUs play 440 Hz (11.025 kHz mono) and 1 kHz (8 kHz mono) at once (aplay with a 2 s buffer); the dom0 WAV holds both tones,
# each for its full duration (+-5%).
t_mix() {
  ensure_gearsd
  ensure_guest snda 101 & ensure_guest sndb 201 & wait
  only snda sndb
  local wav=$OUT/mix.wav
  rm -f "$wav"
  record mix
  arm snda sndb
  play_at snda 440 6 11025 1 0 >"$OUT/mix.snda.out" & local pa=$!
  play_at sndb 1000 6 8000 1 0 >"$OUT/mix.sndb.out" & local pb=$!
  release snda sndb >/dev/null
  wait $pa $pb
  dom0 "gearsctl media status" | tee "$OUT/mix.status"
  stop_record mix
  cat "$OUT/mix.snda.out" "$OUT/mix.sndb.out"
  grep -q 'aplay rc=0' "$OUT/mix.snda.out" || fail "aplay in snda failed"
  grep -q 'aplay rc=0' "$OUT/mix.sndb.out" || fail "aplay in sndb failed"
  local r; r=$("$BIN/media-wavcheck" "$wav" --freq 440 --freq 1000) || fail "wavcheck failed"
  echo "$r" | tee "$OUT/mix.json"
  python3 - "$r" <<'EOF' || fail "spectrum/duration check failed"
import json, sys
r = json.loads(sys.argv[1])
peaks = [p["hz"] for p in r["peaks"][:4]]
ok = True
for want in (440, 1000):
    hit = [p for p in peaks if abs(p - want) <= 10]
    print(f"tone {want} Hz: detected peaks near it: {hit}")
    ok &= bool(hit)
for t in r["tones"]:
    err = (t["present_s"] - 6.0) / 6.0 * 100
    print(f"tone {t['hz']:.0f} Hz: present {t['present_s']:.2f} s (want 6.00 s, error {err:+.1f}%), level {t['level_db']:.1f} dBFS")
    ok &= abs(err) <= 5.0
print(f"wav duration {r['duration_s']:.2f} s")
sys.exit(0 if ok else 1)
EOF
  pass "both tones in the dom0 WAV, each for 6 s +-5%"
}

# snda plays media (440 Hz, 20 s); 8 s in, sndb plays voice (1 kHz, 5 s). While voice plays, the 440 Hz tone is
# >= 12 dB lower in the WAV; after, it is back (within 1.5 dB). sndb's role comes from a static stream hint
# (stream=201 = its unique-id).
t_duck() {
  ensure_gearsd
  ensure_guest snda 101 & ensure_guest sndb 201 & wait
  only snda sndb
  local b; b=$(domid sndb) || fail "no sndb"
  dom0 "gearsctl attach $b --hints 'stream=201,role=voice'" || fail "cannot publish the voice hint"
  local wav=$OUT/duck.wav
  rm -f "$wav"
  record duck
  arm snda sndb
  play_at snda 440 20 11025 1 0 >"$OUT/duck.snda.out" & local pa=$!
  play_at sndb 1000 5 8000 1 8 >"$OUT/duck.sndb.out" & local pb=$!
  local t0; t0=$(release snda sndb)
  local d; d=$(( t0 + 10 - $(now) )); [ "$d" -gt 0 ] && sleep "$d"
  dom0 "gearsctl media status" | tee "$OUT/duck.status"
  wait $pa $pb
  stop_record duck
  grep -q 'aplay rc=0' "$OUT/duck.snda.out" || fail "aplay in snda failed: $(cat "$OUT/duck.snda.out")"
  grep -q 'aplay rc=0' "$OUT/duck.sndb.out" || fail "aplay in sndb failed: $(cat "$OUT/duck.sndb.out")"
  grep -q 'voice' "$OUT/duck.status" || fail "no voice stream in gearsctl media status"
  local r; r=$("$BIN/media-wavcheck" "$wav" --freq 440 --freq 1000 --duck 440,1000) || fail "wavcheck failed"
  echo "$r" | tee "$OUT/duck.json"
  python3 - "$r" <<'EOF' || fail "ducking check failed"
import json, sys
d = json.loads(sys.argv[1])["duck"]
print(f"media 440 Hz: before {d['before_db']:.1f} dBFS, during voice {d['during_db']:.1f} dBFS, after {d['after_db']:.1f} dBFS;"
      f" attenuation {d['attenuation_db']:.1f} dB, restored {d['restored_db']:+.1f} dB, voice {d['voice_s']:.1f} s, windows {d['windows']}")
ok = d["attenuation_db"] >= 12.0 and abs(d["restored_db"]) <= 1.5 and all(n > 0 for n in d["windows"])
sys.exit(0 if ok else 1)
EOF
  dom0 "gearsctl attach $b --hints 'stream=201,role=media'" >/dev/null || true
  pass "voice ducked media by >= 12 dB and it was restored"
}

# sndh's crafted frontend sends malformed requests (errors expected) and finally breaks the ring (dom0 closes
# its device); meanwhile snda keeps playing 440 Hz for 30 s without a gap.
t_hostile() {
  ensure_gearsd
  ensure_guest snda 101 & ensure_guest sndh 301 module_blacklist=snd_xen_front & wait
  only snda sndh
  local h; h=$(domid sndh) || fail "no sndh"
  local wav=$OUT/hostile.wav
  rm -f "$wav"
  record hostile
  arm snda sndh
  play_at snda 440 30 11025 1 0 >"$OUT/hostile.snda.out" & local pa=$!
  guest sndh "$(await_go 3)
gears-sndfront-hostile" >"$OUT/hostile.front.out" & local ph=$!
  release snda sndh >/dev/null
  wait $ph
  local out; out=$(grep -v '^late_s=' "$OUT/hostile.front.out")
  echo "$out" | tee "$OUT/hostile.front.json"
  wait $pa
  stop_record hostile
  grep -q 'aplay rc=0' "$OUT/hostile.snda.out" || fail "snda stopped playing: $(cat "$OUT/hostile.snda.out")"
  python3 - "$out" <<'EOF' || fail "the hostile frontend's expectations failed"
import json, sys
r = json.loads(sys.argv[1].strip().splitlines()[-1])
for c in r.get("cases", []):
    print(f"  {c['name']:<34} status {c['status']:>5}  {'ok' if c['ok'] else 'WRONG'}")
print(f"malformed {r.get('malformed')} rejected {r.get('malformed_rejected')}, valid {r.get('valid')} ok {r.get('valid_ok')},"
      f" closed_by_dom0 {r.get('closed_by_dom0')}, error {r.get('error')}")
sys.exit(0 if r.get("ok") else 1)
EOF
  dom0 "grep 'dom=$h dev=vsnd/0: closed' $LOG | tail -n 1" || fail "no close log line for dom $h"
  dom0 "gearsctl media status" >/dev/null || fail "gearsd died"
  local r; r=$("$BIN/media-wavcheck" "$wav" --freq 440) || fail "wavcheck failed"
  echo "$r" | tee "$OUT/hostile.json"
  python3 - "$r" <<'EOF' || fail "snda's audio has a gap"
import json, sys
t = json.loads(sys.argv[1])["tones"][0]
err = (t["present_s"] - 30.0) / 30.0 * 100
print(f"snda 440 Hz present {t['present_s']:.2f} s of 30.00 s ({err:+.1f}%), level {t['level_db']:.1f} dBFS")
sys.exit(0 if abs(err) <= 5.0 else 1)
EOF
  pass "malformed requests got errors, the ring violation closed sndh's device, snda kept playing"
}

# sndc's stock snd-xen-front captures with arecord (`aplay -C`: the guest image carries aplay only; 8 kHz mono, 2 s)
# from gearsd's generator (sine:700); the guest returns the WAV base64 over the exec channel (its output is capped
# at 64 KiB, hence 2 s) and the host checks its spectrum: 700 Hz is the main peak and is present for the 2 s the
# WAV's frames span (+-5%; duration from frames, not wall time).
t_capture() {
  ensure_gearsd
  ensure_guest sndc 401 "" c
  only sndc
  local out; out=$(guest sndc "for i in \$(seq 240); do grep -q '[0-9] \[' /proc/asound/cards 2>/dev/null && break; sleep 0.5; done
gears-sndfront-tone --alsa-conf >/tmp/alsa.conf || exit 3
ALSA_CONFIG_PATH=/tmp/alsa.conf aplay -C -D hw:0,0 -f S16_LE -r 8000 -c 1 -d 2 --buffer-time=2000000 \
  --period-time=250000 /tmp/c.wav >/tmp/arecord.out 2>&1; rc=\$?
cat /tmp/arecord.out; echo \"arecord rc=\$rc\"
echo BEGIN-WAV; base64 /tmp/c.wav | tr -d '\n'; echo; echo END-WAV; exit \$rc") || fail "arecord in sndc failed: $out"
  echo "$out" | grep -v '^[A-Za-z0-9+/=]\{200,\}$'
  local wav=$OUT/capture.wav
  echo "$out" | sed -n '/^BEGIN-WAV$/,/^END-WAV$/p' | sed '1d;$d' | tr -d '\n' | base64 -d >"$wav" || fail "no WAV from sndc"
  local r; r=$("$BIN/media-wavcheck" "$wav" --freq $CAPTURE_HZ) || fail "wavcheck failed"
  echo "$r" | tee "$OUT/capture.json"
  python3 - "$r" $CAPTURE_HZ <<'EOF' || fail "the captured WAV does not hold the generator's tone"
import json, sys
r, want = json.loads(sys.argv[1]), float(sys.argv[2])
top = r["peaks"][0]["hz"] if r["peaks"] else None
t = r["tones"][0]
err = (t["present_s"] - 2.0) / 2.0 * 100
print(f"main peak {top} Hz (want {want:.0f}), tone present {t['present_s']:.2f} s of 2.00 s ({err:+.1f}%),"
      f" level {t['level_db']:.1f} dBFS, wav {r['duration_s']:.2f} s")
sys.exit(0 if top is not None and abs(top - want) <= 10 and abs(err) <= 5.0 else 1)
EOF
  pass "arecord (aplay -C) in sndc recorded gearsd's $CAPTURE_HZ Hz generator through stock snd-xen-front"
}

# bench [SECONDS]: media.latency_ms and media.cpu_pct for bench/suites/media.py; prints one JSON line last.
# snda alone, then snda and sndb together, play SECONDS of tone through stock snd-xen-front into the null sink,
# with a small ALSA buffer (BUF_US, 200 ms; periods of PERIOD_US, 50 ms). While they play, dom0 samples gearsd's
# CPU time (/proc/<pid>/stat, utime+stime) over a window, then each stream's write->sink latency (gearsctl stats:
# the backend stamps each write when it takes it off the ring and the mixer pops the stamp when it hands those
# bytes to the sink). A window of the same length with no stream open is the CPU baseline.
t_bench() {
  local secs=${1:-20}
  local win=$(( secs - 8 ))
  [ "$win" -ge 4 ] || fail "bench needs at least 12 s of play"
  export BUF_US=${BUF_US:-200000} PERIOD_US=${PERIOD_US:-50000}
  ensure_gearsd
  ensure_guest snda 101 & ensure_guest sndb 201 & wait
  only snda sndb
  dom0 "gearsctl media sink null" >/dev/null || fail "cannot set the null sink"
  local g; g=gearsd.$(stat -c %Y "$BIN/gearsd")
  # measure_at <epoch> <seconds>: waits for <epoch> (dom0's clock), then prints "CPU <ticks0> <ticks1> <up0> <up1>
  # <hz>" over the window and gearsctl stats right after it.
  measure_at() {
    T=$(( $2 + 200 )) dom0 "while [ \$(date +%s) -lt $1 ]; do sleep 0.1; done; p=\$(pidof $g) || exit 3
      a=\$(awk '{print \$14+\$15}' /proc/\$p/stat); u=\$(cut -d' ' -f1 /proc/uptime); sleep $2
      b=\$(awk '{print \$14+\$15}' /proc/\$p/stat); v=\$(cut -d' ' -f1 /proc/uptime)
      echo CPU \$a \$b \$u \$v \$(getconf CLK_TCK); gearsctl stats"
  }
  local t0 idle one two pa pb
  idle=$(measure_at 0 "$win") || fail "idle CPU window"
  arm snda
  play_at snda 440 "$secs" 11025 1 0 >"$OUT/bench1.snda.out" & pa=$!
  t0=$(release snda)
  one=$(measure_at $(( t0 + 5 )) "$win") || fail "one-stream window"
  wait $pa
  arm snda sndb
  play_at snda 440 "$secs" 11025 1 0 >"$OUT/bench2.snda.out" & pa=$!
  play_at sndb 1000 "$secs" 8000 1 0 >"$OUT/bench2.sndb.out" & pb=$!
  t0=$(release snda sndb)
  two=$(measure_at $(( t0 + 5 )) "$win") || fail "two-stream window"
  wait $pa $pb
  local f; for f in bench1.snda bench2.snda bench2.sndb; do
    grep -q 'aplay rc=0' "$OUT/$f.out" || fail "aplay failed ($f): $(cat "$OUT/$f.out")"
  done
  local xruns; xruns=$(cat "$OUT"/bench1.snda.out "$OUT"/bench2.snd?.out | grep -ci 'underrun')
  python3 - "$idle" "$one" "$two" "$BUF_US" "$PERIOD_US" "$xruns" <<'EOF' || fail "cannot read the windows"
import json, statistics, sys
def parse(text):
    cpu = stats = None
    for line in text.splitlines():
        if line.startswith("CPU "):
            a, b, u, v, hz = (float(x) for x in line.split()[1:])
            cpu = 100.0 * (b - a) / hz / (v - u)
        elif line.startswith("{"):
            stats = json.loads(line)
    lat = []
    for dev in (stats or {}).get("devices", []):
        st_all = dev.get("stats") if isinstance(dev.get("stats"), dict) else {}
        for st in st_all.get("streams", []):
            if "latency_ms" in st and st.get("running"):
                lat.append({"dom": dev.get("dom"), "stream": st.get("key"), **st["latency_ms"],
                            "underruns": st.get("underruns")})
    return cpu, lat
idle, _ = parse(sys.argv[1])
c1, l1 = parse(sys.argv[2])
c2, l2 = parse(sys.argv[3])
if idle is None or c1 is None or c2 is None or len(l1) < 1 or len(l2) < 2:
    print(f"missing data: idle {idle} one {c1}/{len(l1)} streams two {c2}/{len(l2)} streams", file=sys.stderr)
    sys.exit(1)
def spread(ls):
    return {"median": statistics.median(s["median"] for s in ls), "p10": min(s["p10"] for s in ls),
            "p90": max(s["p90"] for s in ls)}
out = {"latency_ms": spread(l1), "latency_ms_two": spread(l2), "streams_one": l1, "streams_two": l2,
       "cpu_pct_idle": round(idle, 3), "cpu_pct_one": round(c1, 3), "cpu_pct_two": round(c2, 3),
       "cpu_pct_per_stream": round(c1 - idle, 3), "cpu_pct_per_stream_two": round((c2 - idle) / 2, 3),
       "guest_buffer_ms": int(sys.argv[4]) / 1000, "guest_period_ms": int(sys.argv[5]) / 1000,
       "aplay_underrun_lines": int(sys.argv[6])}
l = out["latency_ms"]
print(f"write->sink latency, one stream: median {l['median']} ms (p10 {l['p10']}, p90 {l['p90']});"
      f" guest buffer {out['guest_buffer_ms']} ms")
print(f"gearsd CPU: idle {idle:.2f}%, one stream {c1:.2f}%, two streams {c2:.2f}%")
print(json.dumps(out))
EOF
}

case "${1:-}" in
  capture) t_capture ;;
  mix) t_mix ;;
  duck) t_duck ;;
  hostile) t_hostile ;;
  bench) t_bench "${2:-20}" ;;
  *) echo "usage: $0 mix|duck|hostile|capture|bench [SECONDS]" >&2; exit 2 ;;
esac
