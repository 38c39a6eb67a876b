#!/usr/bin/env python3
"""proctrack lab helper (runs in dom0).
  count.py next                          < events JSON: prints its "next" sequence number
  count.py count DOM SINCE COMM TRUTH    pages through `gearsctl events`, counts processes that carried COMM:
      created = distinct pids with a birth event that were ever seen as COMM (birth, exec or exit);
      exited  = exit events with COMM. Exit 0 if both are within 5% of TRUTH."""
import json, subprocess, sys

def page(dom, since):
    out = subprocess.run(["gearsctl", "events", str(dom), "--json", "--since", str(since), "--max", "10000"],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)

if sys.argv[1] == "next":
    print(json.load(sys.stdin)["next"])
    sys.exit(0)

dom, since, comm, truth = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
events, dropped = [], 0
while True:
    r = page(dom, since)
    dropped += r.get("dropped", 0)
    if not r["events"]:
        break
    events += r["events"]
    since = r["next"]
born = {e["pid"] for e in events if e["type"] == "birth"}
named = {e["pid"] for e in events if e.get("comm") == comm and "pid" in e}
created = len(born & named)
exited = sum(1 for e in events if e["type"] == "exit" and e.get("comm") == comm)
kinds = {}
for e in events:
    kinds[e["type"]] = kinds.get(e["type"], 0) + 1
ok = abs(created - truth) <= 0.05 * truth and abs(exited - truth) <= 0.05 * truth
print(f"truth={truth} created={created} exited={exited} (all events in window: {json.dumps(kinds)}; dropped {dropped})")
print(f"os-agnostic: as_births={kinds.get('as_birth', 0)} as_deaths={kinds.get('as_death', 0)} "
      f"(address-space lifetimes; a fork+exec makes two: the forked copy and the exec'd image)")
sys.exit(0 if ok else 1)
