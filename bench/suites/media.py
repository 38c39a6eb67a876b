"""semmedia (issue 6): media.latency_ms and media.cpu_pct (tests/lab/media/media.sh bench).

Stock snd-xen-front in guests snda / sndb (created by media.sh with a vsnd card) plays a tone through gearsd's
sndif backend into the null sink, with a 200 ms ALSA buffer (50 ms periods):
- media.latency_ms: write->sink latency as the backend measures it (stamped when a write leaves the ring, popped
  when the mixer hands those bytes to the sink), median over the window, p10/p90 as its spread.
  Peer `guest_buffer`: the guest's ALSA buffer. aplay keeps it nearly full, so up to that much is queued ahead of
  the play position whatever the backend does: ours / guest_buffer at or below 1 means gearsd adds no queue of
  its own. Xen ships no stock sndif backend (Debian has none), so there is no stock peer.
- media.cpu_pct: gearsd's CPU (utime+stime) per stream, one stream playing, minus an idle window; the two-stream
  figure (per stream) is in `extra`.
"""
import bench_run as B


def run(ctx) -> None:
    script = B.REPO / "tests" / "lab" / "media" / "media.sh"
    secs = 14 if ctx.args.quick else 24
    lat = ctx.res.add("media.latency_ms", "ms", "lower")
    cpu = ctx.res.add("media.cpu_pct", "%", "lower")
    cond = {"guests": "snda (440 Hz, 11.025 kHz mono), sndb (1 kHz, 8 kHz mono), stock snd-xen-front + aplay",
            "aplay": "--buffer-time 200 ms --period-time 50 ms", "mixer": "16 kHz, 20 ms period, linear resampler",
            "sink": "null", "seconds": secs}
    lat["conditions"] = dict(cond)
    cpu["conditions"] = dict(cond, measure="dom0 /proc/<gearsd>/stat utime+stime over secs-8 s, minus an idle window")
    got: dict = {}

    def bench() -> float:
        rc, out, err = ctx.lab.run("media-bench", ["env", f"GEARS_LABCTL={B.LABCTL}", str(script), "bench", str(secs)],
                                   secs * 10 + 1200)
        j = B.last_json(out)
        if rc != 0 or not j:
            raise B.StepError(f"media.sh bench rc={rc}: {B.short(out + err)}")
        got.update(j)
        return j["latency_ms"]["median"]

    B.Results.ours(lat, bench)
    if got:
        lat["peers"]["guest_buffer"] = got["guest_buffer_ms"]
        lat["extra"] = {"p10": got["latency_ms"]["p10"], "p90": got["latency_ms"]["p90"],
                        "two_streams": got["latency_ms_two"], "streams": got["streams_two"],
                        "aplay_underrun_lines": got["aplay_underrun_lines"]}
        cpu["ours"] = got["cpu_pct_per_stream"]
        cpu["extra"] = {k: got[k] for k in ("cpu_pct_idle", "cpu_pct_one", "cpu_pct_two", "cpu_pct_per_stream_two")}
    else:
        lat["peers"]["guest_buffer"] = None
        lat["errors"]["guest_buffer"] = "not measured"
        cpu["errors"]["ours"] = lat["errors"].get("ours", "not measured")
