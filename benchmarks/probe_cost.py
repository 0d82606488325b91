#!/usr/bin/env python
"""What `--backend auto`'s probe costs (runtimes/auto.py), per net and batch size: each probe
in a fresh process with an empty cache folder, as `caffezoo eval` meets a new net, timed as a
whole (the process's imports included) and by phase (loading the candidates, the reference,
the exactness check, the batch-1 estimate, the race), then the same net again from the cache.

`--unbounded` switches off the bounds (SKIP and PASS_S infinite: every exact candidate races at
the asked batch, as before they existed), for comparison; runs alternate between the two so
that a change in the machine's load hits both.

    scripts/run python benchmarks/probe_cost.py --zoo resnext50_32x4d \\
        --prototxt ../shared/data/squeezenet_v1.0_dc/deploy.prototxt \\
        --batch-sizes 1,16 --compare
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def child(args: dict) -> dict:
    """One probe and one cached open, in this (fresh) process."""
    t0 = time.perf_counter()
    from caffezoo.runtimes import auto, open_runtime

    if args["unbounded"]:
        auto.SKIP = auto.PASS_S = math.inf
    rt = open_runtime("auto", args["prototxt"], args["weights"], threads=args["threads"],
                      batch_size=args["batch"])
    probe = rt.probe
    first = time.perf_counter() - t0
    del rt
    t1 = time.perf_counter()
    again = open_runtime("auto", args["prototxt"], args["weights"], threads=args["threads"],
                         batch_size=args["batch"])
    assert again.probe.cached
    return {"process_s": round(first, 2), "probe_s": probe.seconds, "phases": probe.phases,
            "cached_open_s": round(time.perf_counter() - t1, 2), "backend": probe.backend,
            "race_batch": probe.race_batch, "skipped": probe.skipped,
            "ms_per_image": probe.ms_per_image, "estimate_ms": probe.estimate_ms}


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        print(json.dumps(child(json.loads(sys.argv[2]))))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zoo", default="resnext50_32x4d", help="zoo cards, random weights")
    ap.add_argument("--prototxt", action="append", default=[],
                    help="a deploy prototxt with its .caffemodel beside it (repeatable)")
    ap.add_argument("--batch-sizes", default="1,16")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--compare", action="store_true", help="also run --unbounded, alternating")
    ap.add_argument("--json")
    args = ap.parse_args()

    from caffezoo import netio
    from caffezoo.evaluation import timing
    from caffezoo.zoo import get_card

    rows = []
    with tempfile.TemporaryDirectory(prefix="caffezoo-probe-") as tmp:
        nets = []
        for name in filter(None, args.zoo.split(",")):
            card = get_card(name)
            net = card.build(card.input_size)
            proto, model = Path(tmp) / f"{name}.prototxt", Path(tmp) / f"{name}.caffemodel"
            netio.write_prototxt(net, proto)
            timing.write_random_caffemodel(net, model)
            nets.append((f"zoo {name}", proto, model))
        for p in args.prototxt:
            p = Path(p)
            nets.append((p.parent.name, p, next(p.parent.glob("*.caffemodel"))))
        modes = [False, True] if args.compare else [False]
        print("| net | batch | probe | process s | probe s | phases s | cached open s | pick "
              "| raced at | skipped | load |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for label, proto, model in nets:
            for batch in (int(b) for b in args.batch_sizes.split(",")):
                for unbounded in modes:
                    cache = tempfile.mkdtemp(dir=tmp)
                    job = {"prototxt": str(proto), "weights": str(model), "batch": batch,
                           "threads": args.threads, "unbounded": unbounded}
                    load = os.getloadavg()[0]
                    env = dict(os.environ, CAFFEZOO_PROBE_CACHE=cache)
                    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(job)],
                                          env=env, capture_output=True, text=True, check=True)
                    r = json.loads(proc.stdout.strip().splitlines()[-1])
                    r.update(net=label, batch=batch, unbounded=unbounded,
                             load=[load, os.getloadavg()[0]])
                    rows.append(r)
                    phases = ", ".join(f"{k} {v:.1f}" for k, v in r["phases"].items())
                    print(f"| {label} | {batch} | {'unbounded' if unbounded else 'bounded'} | "
                          f"{r['process_s']:.1f} | {r['probe_s']:.1f} | {phases} | "
                          f"{r['cached_open_s']:.1f} | {r['backend']} | {r['race_batch']} | "
                          f"{', '.join(r['skipped']) or '-'} | {load:.1f}-"
                          f"{os.getloadavg()[0]:.1f} |", flush=True)
    if args.json:
        netio.atomic_write(args.json, json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
