#!/usr/bin/env python
"""`caffezoo eval` on its executors, and a plan for the zoo's table on a cluster.

Each pass runs the same evaluation as separate `caffezoo eval` commands, interleaved:

  local 2t   plain `eval`: in-process, the backend's default threads (all cores)
  local 1t   in-process with --threads 1 (one Ray worker's share)
  ray 1w     --executor ray --ray-workers 1 (1 thread), on a Ray cluster started once by this
             script (Ray's own cluster_utils), so the figure is the executor's, not Ray's start
  ray 2w     the same with 2 workers
  ray new    --executor ray with 2 workers on a local Ray the command starts itself (what a user
             without a cluster waits for)

Reported: images/s over the command's whole run (process start to exit), over the evaluation
(the record's clock: from handing out the first unit to the last result), and on Ray per worker
while it scores units; medians of the passes.

    python benchmarks/eval_executors.py --passes 3
    python benchmarks/eval_executors.py --plan-rate 9.5 --plan-model resnext50_32x4d

The plan: the zoo's ten models at the README's four schemes on the 50,000 ILSVRC2012 validation
images, costed from one worker's measured images/s on a model (ResNeXt-50 by default), scaled by
MACs (a stated assumption: the same effective GFLOP/s per worker on every net).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared" / "data"
VAL_IMAGES = 50_000


def eval_command(net: dict, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "caffezoo", "eval", "--prototxt", str(net["prototxt"]),
            "--weights", str(net["weights"]), "--val-list", str(SHARED / "imagenet_samples" /
                                                                "val.txt"),
            "--data-root", str(SHARED / "imagenet_samples"), "--mean", net["mean"],
            "--std", net["std"], "--base-size", str(net["base"]), "--crop-size",
            str(net["crop"]), "--backend", "onnxruntime", *extra]


def timed(cmd: list[str], out: Path) -> tuple[float, float, float]:
    """(images/s over the whole command, over the evaluation, and per Ray worker while busy:
    the mean of the workers' images / seconds in units; nan in-process)."""
    t0 = time.perf_counter()
    subprocess.run([*cmd, "--json", str(out)], check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    result = json.loads(out.read_text())
    workers = result["executor"].get("workers") or []
    busy = (statistics.mean(w["images_per_s"] for w in workers) if workers else float("nan"))
    return result["images"]["evaluated"] / wall, result["time"]["images_per_s"], busy


def nets(tmp: Path, limit_resnext: int) -> list[dict]:
    from caffezoo import netio
    from caffezoo.evaluation import timing
    from caffezoo.zoo import get_card

    sq = SHARED / "squeezenet_v1.0_dc"
    card = get_card("resnext50_32x4d")
    net = card.build(224)
    netio.write_prototxt(net, tmp / "rx50.prototxt")
    timing.write_random_caffemodel(net, tmp / "rx50.caffemodel")
    return [
        {"name": "SqueezeNet v1.0 (real), 100 images, 1-crop", "prototxt": sq / "deploy.prototxt",
         "weights": sq / "squeezenet_v1.0_dc.caffemodel", "mean": "104,117,123", "std": "1",
         "base": 256, "crop": 227, "extra": ["--crop-num", "1"]},
        {"name": "SqueezeNet v1.0 (real), 40 images, 12-crop", "prototxt": sq / "deploy.prototxt",
         "weights": sq / "squeezenet_v1.0_dc.caffemodel", "mean": "104,117,123", "std": "1",
         "base": 256, "crop": 227, "extra": ["--crop-num", "12", "--limit", "40",
                                             "--unit-size", "8"]},
        {"name": f"ResNeXt-50 32x4d (random), {limit_resnext} images, 1-crop",
         "prototxt": tmp / "rx50.prototxt", "weights": tmp / "rx50.caffemodel",
         "mean": "103.53,116.28,123.675", "std": "57.375,57.12,58.395", "base": 256,
         "crop": 224, "extra": ["--crop-num", "1", "--limit", str(limit_resnext),
                                "--unit-size", "8"]},
    ]


def measure(passes: int, limit_resnext: int) -> dict:
    from ray.cluster_utils import Cluster

    tmp = Path(tempfile.mkdtemp(prefix="caffezoo-bench-"))
    cluster = Cluster(initialize_head=True,
                      head_node_args={"num_cpus": os.cpu_count(), "include_dashboard": False})
    configs = {
        "local 2t": [],
        "local 1t": ["--threads", "1"],
        "ray 1w": ["--executor", "ray", "--ray-address", cluster.address, "--ray-workers", "1"],
        "ray 2w": ["--executor", "ray", "--ray-address", cluster.address, "--ray-workers", "2"],
        "ray new": ["--executor", "ray", "--ray-workers", "2"],
    }
    results = {}
    loads = [os.getloadavg()]
    try:
        for net in nets(tmp, limit_resnext):
            runs: dict[str, list[tuple[float, float, float]]] = {k: [] for k in configs}
            for _ in range(passes):
                for key, extra in configs.items():
                    runs[key].append(timed(eval_command(net, [*net["extra"], *extra]),
                                           tmp / "r.json"))
                loads.append(os.getloadavg())
            results[net["name"]] = {
                k: tuple(statistics.median(r[i] for r in v) for i in range(3))
                for k, v in runs.items()}
    finally:
        cluster.shutdown()
    return {"results": results, "loads": loads}


def plan(rate: float, model: str, targets_h: tuple[float, ...]) -> None:
    """Workers for the zoo's table at the README's schemes, from one worker's rate on `model`."""
    from caffezoo.zoo import all_cards, get_card

    per_worker_gmacs = get_card(model).stats(get_card(model).eval_settings[0].crop_size).gmacs \
        * rate  # GMACs one worker does per second
    print(f"one worker: {rate:.2f} img/s on {model} at 1-crop = {per_worker_gmacs:.1f} GMAC/s "
          f"({2 * per_worker_gmacs:.0f} effective GFLOP/s)")
    print("| model | sizes | GMACs (small / large) | crops per image (1+12 at each size) | "
          "worker-hours |")
    print("|---|---|---:|---:|---:|")
    total_h = 0.0
    for card in all_cards():
        sizes = [s.crop_size for s in card.eval_settings]
        gmacs = [card.stats(size).gmacs for size in sizes]
        work = VAL_IMAGES * sum(g * (1 + 12) for g in gmacs)  # GMACs of the four cells
        hours = work / per_worker_gmacs / 3600
        total_h += hours
        print(f"| {card.name} | {'/'.join(map(str, sizes))} | "
              f"{' / '.join(f'{g:.2f}' for g in gmacs)} | 26 | {hours:,.0f} |")
    print(f"| **zoo** | | | | **{total_h:,.0f}** |")
    for target in targets_h:
        print(f"target {target:g} h: {total_h / target:,.0f} workers at perfect scaling")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--limit-resnext", type=int, default=40)
    ap.add_argument("--plan-rate", type=float,
                    help="only the plan, from this per-worker images/s on --plan-model")
    ap.add_argument("--plan-model", default="resnext50_32x4d")
    ap.add_argument("--targets", default="1,8,24", help="wall-time targets in hours")
    args = ap.parse_args()
    targets = tuple(float(t) for t in args.targets.split(","))
    if args.plan_rate:
        plan(args.plan_rate, args.plan_model, targets)
        return 0
    data = measure(args.passes, args.limit_resnext)
    loads = data["loads"]
    print(f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}, onnxruntime, "
          f"median of {args.passes} interleaved passes; load average (1 min) before and after "
          f"each pass: {', '.join(f'{ld[0]:.1f}' for ld in loads)}")
    for name, rows in data["results"].items():
        print(f"\n{name}")
        print("| executor | img/s, whole command | img/s, evaluation | of `local 2t` "
              "(evaluation) | img/s per worker while busy |")
        print("|---|---:|---:|---:|---:|")
        base = rows["local 2t"][1]
        for key, (whole, inner, busy) in rows.items():
            per_worker = "" if busy != busy else f"{busy:.2f}"  # nan: in-process
            print(f"| {key} | {whole:.2f} | {inner:.2f} | {100 * inner / base:.0f} % | "
                  f"{per_worker} |")
    rx = next(v for k, v in data["results"].items() if k.startswith("ResNeXt"))
    print()
    plan(rx["ray 1w"][2], "resnext50_32x4d", targets)
    return 0


if __name__ == "__main__":
    sys.exit(main())
