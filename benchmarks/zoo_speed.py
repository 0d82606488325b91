#!/usr/bin/env python
"""Speed of the zoo's models on this machine (random weights: speed does not depend on the
values), beside the original README's `caffe time` figures on a Pascal Titan X.

For each model at its default input size: the real `caffe time` (forward + backward, batch 1)
and forward-only passes on every runtime at two batch sizes, with achieved GFLOP/s against the
machine's fp32 limit (the best installed engine on a reference GEMM). Runs are short (few
iterations; see --iterations): the figures show orders of magnitude and ratios, not three
significant digits.

    python benchmarks/zoo_speed.py --threads 2 --batch-sizes 1,4 --iterations 2 \\
        --json zoo_speed.json
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", help="comma-separated zoo names (default: all)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-sizes", default="1,4")
    ap.add_argument("--iterations", type=int, default=2)
    ap.add_argument("--backends", default="pycaffe,opencv")
    ap.add_argument("--no-caffe-time", action="store_true")
    ap.add_argument("--json", help="write all figures as JSON")
    args = ap.parse_args()

    from caffezoo import netio
    from caffezoo.evaluation import timing
    from caffezoo.runtimes import open_runtime
    from caffezoo.zoo import all_cards, get_card

    os.environ["OPENBLAS_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"] = str(args.threads)
    batches = [int(b) for b in args.batch_sizes.split(",")]
    backends = args.backends.split(",")
    cards = ([get_card(n) for n in args.models.split(",")] if args.models else all_cards())
    peak = timing.measure_gemm_limit(args.threads)
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"{args.threads} threads; fp32 limit {peak.gflops:.0f} GFLOP/s ({peak.method})")
    head = ["model", "input", "GMACs", "caffe time F/B ms"]
    head += [f"{be} b{b} ms/img" for be in backends for b in batches]
    head += ["best GFLOP/s (% of limit)", "Titan X F/B ms"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    rows = []
    for card in cards:
        t0 = time.perf_counter()
        size = card.input_size
        net = card.build(size)
        row: dict = {"model": card.name, "input": size}
        with tempfile.TemporaryDirectory(prefix="caffezoo-zoo-") as tmp:
            proto, weights = Path(tmp) / "net.prototxt", Path(tmp) / "net.caffemodel"
            netio.write_prototxt(net, proto)
            timing.write_random_caffemodel(net, weights)
            if not args.no_caffe_time:
                try:
                    rep = timing.run_caffe_time(proto, iterations=args.iterations,
                                                batch_size=1, threads=args.threads)
                    row["caffe_time"] = {"forward_ms": rep.forward_ms,
                                         "backward_ms": rep.backward_ms}
                except timing.CaffeTimeError as err:
                    row["caffe_time"] = {"error": str(err)}
            row["forward"] = []
            for be in backends:
                rt = open_runtime(be, proto, weights, threads=args.threads)
                macs = timing.needed_macs(proto, weights)
                row["gmacs"] = macs / 1e9
                for b in batches:
                    secs = timing.time_forward(rt, b, args.iterations, warmup=1)
                    row["forward"].append(asdict(timing.summarize(be, args.threads, b, secs,
                                                                  macs, peak.gflops)))
                del rt
                gc.collect()
        ref = next((t for t in card.caffe_time if t.input_size == size), None)
        row["titan_x"] = asdict(ref) if ref else None
        row["seconds"] = time.perf_counter() - t0
        rows.append(row)
        ct = row.get("caffe_time", {})
        ct_text = (f"{ct['forward_ms']:.0f} / {ct['backward_ms']:.0f}" if "forward_ms" in ct
                   else ("aborted" if ct else "-"))
        cells = [card.name, str(size), f"{row['gmacs']:.2f}", ct_text]
        cells += [f"{1000 / f['images_per_s']:.0f}" for f in row["forward"]]
        best = max(row["forward"], key=lambda f: f["gflops"])
        cells.append(f"{best['gflops']:.0f} ({100 * best['limit_fraction']:.0f} %)")
        cells.append(f"{ref.forward_ms} / {ref.backward_ms}" if ref else "-")
        print("| " + " | ".join(cells) + " |", flush=True)
        if args.json:
            netio.atomic_write(args.json, json.dumps({"peak": asdict(peak), "rows": rows},
                                                     indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
