"""blk suite: the Gears blkif backend (gearsd, kind vbd) against kernel xen-blkback and QEMU qdisk, all serving
the PV guest's stock xen-blkfront in the same boot, measured with fio in the guest.

ids: blk.seq_read, blk.seq_write (MB/s, 1 MiB blocks, O_DIRECT, iodepth 8), blk.rand4k_iops (4 KiB random
reads, iodepth 32, time-based). Each backend gets its own sparse backing file of the same size in dom0's /tmp
(tmpfs): ours `file:` with cache=writeback, blkback `phy:` on a loop device over the file, qdisk raw on the file.
Ours runs twice (grants=copy and grants=persistent); "ours" is the default (copy), the other is in extra.
Needs fio in the guest image: bench/run boots the lab with GEARS_GUEST_TOOLS=fio and --guest-mem 512 when this
suite is selected.
"""
from __future__ import annotations

import json

import bench_run as br

SIZE_MIB = 256
RAND_SECS = 20
GUEST = "pv1"
# Debian's qemu-system-xen. /etc/init.d/xen starts it for dom0's own disks with QEMU_ARGS; a PV domU's qdisk
# backend, though, is the per-domain "xenpv" qemu that libxl launches at `xl create` when the config has a
# backendtype=qdisk disk: hot-plugging one into a domain created without it fails ("device model required but
# not running", measured). TODO: measure qdisk on a bench-created domU with the disk in its config.
QEMU = "/usr/libexec/xen-qemu-system-i386"
QEMU_ARGS = ("-xen-domid 0 -xen-attach -name dom0 -nographic -M xenpv -daemonize -monitor none -serial none "
             "-parallel none -pidfile /run/xen/qemu-dom0.pid")

# name -> (guest vdev, devid)
VDEV = {"ours_copy": ("xvdd", 51760), "ours_persistent": ("xvdd", 51760), "blkback": ("xvde", 51776),
        "qdisk": ("xvdf", 51792)}


def fio(ctx, name: str, dev: str, rw: str, bs: str, depth: int, timed: bool) -> dict:
    extra = f"--time_based --runtime={RAND_SECS}" if timed else ""
    cmd = (f"fio --name={rw} --filename=/dev/{dev} --direct=1 --ioengine=libaio --rw={rw} --bs={bs} "
           f"--iodepth={depth} --size={SIZE_MIB}M {extra} --output-format=json")
    out = ctx.lab.must(f"fio-{name}-{rw}", GUEST, cmd, 300)
    doc = json.loads(out[out.index("{"):out.rindex("}") + 1])
    return doc["jobs"][0]["read" if "read" in rw else "write"]


def wait_dev(ctx, dev: str, present: bool) -> None:
    test = f"[ -b /dev/{dev} ]" if present else f"! [ -b /dev/{dev} ]"
    ctx.lab.must(f"wait-{dev}", GUEST, f"for i in $(seq 150); do {test} && exit 0; sleep 0.2; done; exit 1", 60)


def attach(ctx, name: str, did: int) -> None:
    img = f"/tmp/bench-blk-{name}.img"
    ctx.lab.must(f"img-{name}", "dom0", f"rm -f {img}; truncate -s {SIZE_MIB + 16}M {img}", 60)
    dev, devid = VDEV[name]
    if name.startswith("ours"):
        grants = name.split("_")[1]
        ctx.lab.must(f"attach-{name}", "dom0", f"gearsctl --socket {br.SOCK} attach {did} vbd {devid} "
                     f"--param target=file:{img} --param cache=writeback --param grants={grants}", 60)
    elif name == "blkback":
        ctx.lab.must("attach-blkback", "dom0", f"modprobe loop 2>/dev/null; L=$(losetup -f --show {img}) && echo $L > /run/bench-blk-loop && "
                     f"xl block-attach {GUEST} phy:$L,{dev},w", 120)
    else:
        ctx.lab.must("qdisk-qemu", "dom0", f"[ -f /run/xen/qemu-dom0.pid ] && kill -0 $(cat /run/xen/qemu-dom0.pid) "
                     f"2>/dev/null || {QEMU} {QEMU_ARGS}", 60)
        ctx.lab.must("attach-qdisk", "dom0", f"xl block-attach {GUEST} "
                     f"format=raw,vdev={dev},access=rw,backendtype=qdisk,target={img}", 120)
    wait_dev(ctx, dev, True)


def detach(ctx, name: str, did: int) -> None:
    dev, devid = VDEV[name]
    if name.startswith("ours"):
        ctx.lab.dom0(f"detach-{name}", f"gearsctl --socket {br.SOCK} detach {did} vbd {devid}", 90)
    else:
        ctx.lab.dom0(f"detach-{name}", f"xl block-detach {GUEST} {dev}; "
                     f"[ {name} = blkback ] && losetup -d $(cat /run/bench-blk-loop); true", 120)
    ctx.lab.dom0(f"rm-{name}", f"rm -f /tmp/bench-blk-{name}.img", 30)


def measure(ctx, name: str) -> dict:
    did = br.domid(ctx.lab, GUEST)
    attach(ctx, name, did)
    try:
        dev = VDEV[name][0]
        w = fio(ctx, name, dev, "write", "1M", 8, False)  # also fills the disk the reads then read back
        r = fio(ctx, name, dev, "read", "1M", 8, False)
        q = fio(ctx, name, dev, "randread", "4k", 32, True)
        return {"seq_write": w["bw_bytes"] / 1e6, "seq_read": r["bw_bytes"] / 1e6, "rand4k_iops": q["iops"]}
    finally:
        detach(ctx, name, did)


def run(ctx) -> None:
    ids = {"seq_read": ctx.res.add("blk.seq_read", "MB/s", "higher"),
           "seq_write": ctx.res.add("blk.seq_write", "MB/s", "higher"),
           "rand4k_iops": ctx.res.add("blk.rand4k_iops", "IOPS", "higher")}
    cond = {"guest_type": "pv", "bytes": SIZE_MIB << 20, "direct": True, "seq_iodepth": 8, "rand_iodepth": 32,
            "rand_secs": RAND_SECS, "backing": "sparse file on dom0 tmpfs", "ours_cache": "writeback",
            "host_load": br.host_load()}
    for r in ids.values():
        r["conditions"].update(cond)
    if GUEST not in ctx.guests:
        for r in ids.values():
            r["errors"]["ours"] = f"no {GUEST} guest"
        return
    rc, _, _ = ctx.lab.guest("blk-fio-check", GUEST, "command -v fio", 60)
    if rc != 0:
        for r in ids.values():
            r["errors"]["ours"] = "fio not in the guest image (GEARS_GUEST_TOOLS=fio, --guest-mem 512)"
        return
    got: dict[str, dict] = {}
    for name in ("ours_copy", "ours_persistent", "blkback", "qdisk"):
        if name.startswith("ours") and not ctx.gearsd_ok:
            continue
        try:
            got[name] = measure(ctx, name)
            br.log(f"blk {name}: {got[name]}")
        except (br.StepError, ValueError, KeyError) as e:
            for r in ids.values():
                r["errors"]["ours" if name == "ours_copy" else name] = br.short(str(e))
    for k, r in ids.items():
        ours = got.get("ours_copy", {}).get(k)
        r["ours"] = ours
        r["extra"]["grants_copy"] = ours
        r["extra"]["grants_persistent"] = got.get("ours_persistent", {}).get(k)
        for peer in ("blkback", "qdisk"):
            v = got.get(peer, {}).get(k)
            r["peers"][peer] = v
            r["ratios"][f"vs_{peer}"] = (ours / v) if ours and v else None
