#!/usr/bin/env python
"""What a runtime leaves running after its pass, and what that costs the runtime timed next
(docs/benchmarks.md, issue 19: the wall-clock batch-1 rows of the caffe and fork targets).

1. Leftovers: after each runtime's pass the process sleeps --window seconds; the CPU seconds
   spent meanwhile by this process (its runtimes' idle threads) and by pycaffe's worker
   process (its OpenBLAS threads) are what the pass left running. Also measured after a
   sleep with no pass before it (the baseline).
2. The cost: --probe's pass timed right after a pass of --after, and after the same pass
   followed by a sleep of --window seconds, alternating, --rounds times each.

    scripts/run python benchmarks/leftover_cpu.py --prototxt out/sq.prototxt \\
        --weights out/sq.caffemodel --batch 1 --rounds 30

Run it again with OPENBLAS_THREAD_TIMEOUT=4 in the environment (OpenBLAS's idle threads then
sleep at once instead of spinning for about 2^28 cycles) to see what the spinning accounts for.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def worker_seconds(pid: int | None) -> float:
    """CPU seconds of a process so far (/proc/PID/stat utime + stime, 10 ms ticks)."""
    if pid is None:
        return 0.0
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def idle_cpu(window: float, pid: int | None) -> tuple[float, float]:
    """(this process's, the worker's) CPU ms while sleeping `window` seconds."""
    p0, w0 = time.process_time(), worker_seconds(pid)
    time.sleep(window)
    return 1000 * (time.process_time() - p0), 1000 * (worker_seconds(pid) - w0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prototxt", required=True)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--backends", default="pycaffe,opencv,onnxruntime,openvino,torch")
    ap.add_argument("--after", default="pycaffe", help="the runtime whose leftovers are tested")
    ap.add_argument("--probe", default="onnxruntime", help="the runtime timed after it")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--window", type=float, default=0.3)
    args = ap.parse_args()

    from caffezoo.runtimes import check_net, open_runtime

    shape = check_net(args.prototxt).input_shape[1:]
    x = np.random.default_rng(0).standard_normal((args.batch, *shape), dtype=np.float32)
    runtimes = {b: open_runtime(b, args.prototxt, args.weights, threads=args.threads)
                for b in args.backends.split(",")}
    pid = runtimes["pycaffe"]._worker.proc.pid if "pycaffe" in runtimes else None
    for rt in runtimes.values():
        rt.forward(x)
        rt.forward(x)
    print(f"# load average {os.getloadavg()}, OPENBLAS_THREAD_TIMEOUT="
          f"{os.environ.get('OPENBLAS_THREAD_TIMEOUT', 'unset')}, batch {args.batch}, "
          f"{args.threads} threads, window {args.window} s")

    # 1. leftovers
    after: dict[str, list[tuple[float, float]]] = {b: [] for b in ["(no pass)", *runtimes]}
    for _ in range(max(5, args.rounds // 3)):
        after["(no pass)"].append(idle_cpu(args.window, pid))
        for b, rt in runtimes.items():
            rt.forward(x)
            after[b].append(idle_cpu(args.window, pid))
    print(f"| pass before the sleep | this process CPU ms in {args.window} s | pycaffe worker "
          "CPU ms | total |\n|---|---|---|---|")
    for b, v in after.items():
        own, work = statistics.mean(a for a, _ in v), statistics.mean(w for _, w in v)
        print(f"| {b} | {own:.1f} | {work:.1f} | {own + work:.1f} |")

    # 2. the cost to the next runtime
    first, probe = runtimes[args.after], runtimes[args.probe]
    secs: dict[str, list[float]] = {"right after": [], "after a sleep": []}
    for _ in range(args.rounds):
        for how in secs:
            first.forward(x)
            if how == "after a sleep":
                time.sleep(args.window)
            t0 = time.perf_counter()
            probe.forward(x)
            secs[how].append(time.perf_counter() - t0)
            time.sleep(args.window)  # the next pair starts from the same state
    print(f"\n| {args.probe} after {args.after} | median ms | min ms | max ms |\n|---|---|---|---|")
    for how, v in secs.items():
        print(f"| {how} | {1000 * statistics.median(v):.2f} | {1000 * min(v):.2f} | "
              f"{1000 * max(v):.2f} |")
    print(f"# load average after {os.getloadavg()}")
    for rt in runtimes.values():
        if hasattr(rt, "close"):
            rt.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
