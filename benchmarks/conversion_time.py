"""Times `caffezoo convert` of one card in two checkouts, interleaved (A, B, A, B, ...), so that
a change's cost is measured against its parent on the same machine under the same load.

    scripts/run python benchmarks/conversion_time.py --before ../main --source torch:rx101.pth \
        --model resnext101_64x4d [--runs 5] [--layout torchvision]

Each run is a fresh process (`CHECKOUT/scripts/run caffezoo convert ...`, imports included, as a
user runs it). Prints each run's wall-clock and CPU seconds (user + system of the process and its
children), the medians, and after / before; both outputs must be byte-identical (else it stops).
"""

from __future__ import annotations

import argparse
import filecmp
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]


def run(repo: Path, argv: list[str]) -> tuple[float, float]:
    """(wall, cpu) seconds of `caffezoo convert ARGV` in `repo`."""
    before = os.times()
    t0 = time.perf_counter()
    subprocess.run([str(repo / "scripts" / "run"), "caffezoo", "convert", *argv], cwd=repo,
                   check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = os.times()
    cpu = (after.children_user - before.children_user) + \
        (after.children_system - before.children_system)
    return wall, cpu


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", required=True, help="the checkout to compare against")
    ap.add_argument("--after", default=str(HERE), help="default: this checkout")
    ap.add_argument("--source", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--layout", default=None)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    repos = {"before": Path(args.before).resolve(), "after": Path(args.after).resolve()}
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in repos}
    with tempfile.TemporaryDirectory(prefix="caffezoo-time-") as tmp:
        outs = {k: Path(tmp) / k for k in repos}
        for i in range(args.runs):
            for which, repo in repos.items():
                argv = ["--source", args.source, "--model", args.model, "-o", str(outs[which])]
                argv += ["--layout", args.layout] if args.layout else []
                wall, cpu = run(repo, argv)
                times[which].append((wall, cpu))
                print(f"run {i + 1} {which}: {wall:.2f} s wall, {cpu:.2f} s CPU", flush=True)
        for suffix in (".caffemodel", ".prototxt", ".contract.json"):
            a, b = (Path(f"{outs[k]}{suffix}") for k in repos)
            if not filecmp.cmp(a, b, shallow=False):
                print(f"the {suffix} files differ", file=sys.stderr)
                return 1
    med = {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v))
           for k, v in times.items()}
    for k, (w, c) in med.items():
        print(f"median {k}: {w:.2f} s wall, {c:.2f} s CPU")
    print(f"after / before: {med['after'][0] / med['before'][0]:.2f}x wall, "
          f"{med['after'][1] / med['before'][1]:.2f}x CPU; outputs byte-identical")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
