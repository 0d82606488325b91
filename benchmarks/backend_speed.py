#!/usr/bin/env python
"""Forward-only speed of every runtime side by side, in one run, interleaved pass by pass (the
machine's load varies between passes): images/s, achieved GFLOP/s, the fraction of this
machine's fp32 limit (the best installed engine on a reference GEMM, measured before and after),
and speed relative to pycaffe and OpenCV. Median of the passes; the load average is printed
with the results.

    python benchmarks/backend_speed.py --model resnext50_32x4d --batch-size 8 --passes 7
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnext50_32x4d")
    ap.add_argument("--input-size", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--passes", type=int, default=7)
    ap.add_argument("--backends", default="pycaffe,opencv,onnxruntime,openvino,torch")
    args = ap.parse_args()
    os.environ["OMP_NUM_THREADS"] = os.environ["OPENBLAS_NUM_THREADS"] = str(args.threads)

    from caffezoo import netio
    from caffezoo.evaluation import timing
    from caffezoo.runtimes import open_runtime
    from caffezoo.zoo import get_card

    card = get_card(args.model)
    net = card.build(args.input_size)
    tmp = Path(tempfile.mkdtemp(prefix="caffezoo-speed-"))
    proto, weights = tmp / "net.prototxt", tmp / "net.caffemodel"
    netio.write_prototxt(net, proto)
    timing.write_random_caffemodel(net, weights)
    peak_before = timing.measure_gemm_limit(args.threads)
    backends = args.backends.split(",")
    runtimes = {b: open_runtime(b, proto, weights, threads=args.threads) for b in backends}
    first = next(iter(runtimes.values()))
    macs = timing.needed_macs(proto, weights)
    c, h, w = first.input_shape[1:]
    x = np.random.default_rng(0).standard_normal((args.batch_size, c, h, w), dtype=np.float32)
    for rt in runtimes.values():  # warm-up
        rt.forward(x)
    seconds: dict[str, list[float]] = {b: [] for b in backends}
    loads = []
    for _ in range(args.passes):
        for b, rt in runtimes.items():
            t0 = time.perf_counter()
            rt.forward(x)
            seconds[b].append(time.perf_counter() - t0)
        loads.append(os.getloadavg()[0])
    peak_after = timing.measure_gemm_limit(args.threads)
    peak = max(peak_before.gflops, peak_after.gflops)
    rate = {b: args.batch_size / statistics.median(v) for b, v in seconds.items()}
    print(f"{card.name} {h}x{w}, batch {args.batch_size}, {args.threads} threads, "
          f"{macs / 1e9:.3f} GMACs/image, median of {args.passes} interleaved passes; "
          f"fp32 limit {peak_before.gflops:.1f} GFLOP/s before ({peak_before.engine}), "
          f"{peak_after.gflops:.1f} after ({peak_after.engine}; the higher used); 1-min load "
          f"average during passes {min(loads):.1f}-{max(loads):.1f}")
    print("| backend | img/s | GFLOP/s | of limit | x pycaffe | x opencv |")
    print("|---|---:|---:|---:|---:|---:|")
    for b in backends:
        gflops = 2 * macs * rate[b] / 1e9
        xp = f"{rate[b] / rate['pycaffe']:.2f}" if "pycaffe" in rate else "-"
        xo = f"{rate[b] / rate['opencv']:.2f}" if "opencv" in rate else "-"
        print(f"| {b} | {rate[b]:.2f} | {gflops:.1f} | {100 * gflops / peak:.0f} % | {xp} "
              f"| {xo} |")
    print("per pass (s):", {b: [round(t, 3) for t in v] for b, v in seconds.items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
