"""semblk (issue 4): blk.seq_read, blk.seq_write (MB/s) and blk.rand4k_iops, fio in pv1, against kernel
xen-blkback (phy: on a loop device) and QEMU qdisk, on the same backing file in dom0, in the same boot
(tests/lab/blk/semblk.sh bench). The three are attached at once and measured in turn, ROUNDS times per job
(ours, blkback, qdisk, ours, ...); each figure is the median of its rounds, so a change of host load during the
run hits all three alike (run once each in sequence, the ratios swung from 0.6x to 1.4x between runs). ours: gearsd with its default grants=persistent (zero-bounce) and cache=writeback,
the blkback peer's durability contract (a loop device writes into dom0's page cache and makes it durable at the
guest's FLUSH). extra.writethrough: the default cache=writethrough (O_DSYNC, durable per write); extra.grant_copy:
grants=copy (cache=writeback).
Needs fio in the guest image: bench/run sets GEARS_GUEST_TOOLS=fio and --guest-mem 512 when this suite runs.
"""
import bench_run as B

GUEST_TOOLS = "fio"
GUEST_MEM = 512


def run(ctx) -> None:
    script = B.REPO / "tests" / "lab" / "blk" / "semblk.sh"
    secs = 5 if ctx.args.quick else 8
    rounds = 1 if ctx.args.quick else 5  # 3 could not resolve 5% (rounds swing 0.7-1.5x under TCG)
    ids = {"seq_read": ("blk.seq_read", "MB/s", "mb_s"), "seq_write": ("blk.seq_write", "MB/s", "mb_s"),
           "rand4k": ("blk.rand4k_iops", "IOPS", "iops")}
    rows = {job: ctx.res.add(rid, unit, "higher") for job, (rid, unit, _) in ids.items()}
    got: dict = {}
    rc, out, err = ctx.lab.run("blk-bench", ["env", f"GEARS_LABCTL={B.LABCTL}", str(script), "bench", str(secs), str(rounds)],
                               secs * (6 + 9 * rounds) + 1200)
    j = B.last_json(out)
    if rc == 0 and j:
        got = j
    for job, r in rows.items():
        key = ids[job][2]
        r["conditions"] = {"guest": "pv1", "tool": "fio libaio O_DIRECT", "seconds": secs, "rounds": rounds,
                           "order": "interleaved per job: ours, blkback, qdisk (reversed in even rounds); median of the rounds",
                           "job": {"seq_read": "read 1M qd8", "seq_write": "write 1M qd8", "rand4k": "randread 4k qd16"}[job],
                           "backing": "one 256 MiB file in dom0, the same for every backend",
                           "ours": "gearsd vbd, grants=persistent (default), cache=writeback"}
        if not got:
            r["errors"]["ours"] = f"semblk.sh bench rc={rc}: {B.short(out + err)}"
            continue
        def val(side):
            v = got.get(side, {})
            return v.get(job, {}).get(key) if "error" not in v else None
        r["ours"] = val("ours")
        for peer in ("blkback", "qdisk"):
            r["peers"][peer] = val(peer)
            if r["peers"][peer] is None:
                r["errors"][peer] = got.get(peer, {}).get("error", "not measured")
        r["extra"] = {"grant_copy": val("copy"), "writethrough": val("writethrough")}
        r["conditions"]["rounds_values"] = {side: got.get(side, {}).get(job, {}).get("rounds_" + key)
                                            for side in ("ours", "blkback", "qdisk")}
