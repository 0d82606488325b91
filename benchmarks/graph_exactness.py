#!/usr/bin/env python
"""How exact the graph emitter is: every hand-built test graph of
tests/conversion/test_graph_emit.py
(every canonical op, borders, asymmetric pads, ceil/floor, excluded padding), emitted for each
target and run in real Caffe (pycaffe) and OpenCV DNN, every IR value compared with the
independent float64 numpy implementation in tests/helpers/graph_reference.py.

Prints, per graph and (target, runtime), the largest max-abs error and the largest relative
error (max |caffe - numpy| / max |numpy|) over all values; docs/conversion.md quotes it.

    scripts/run python benchmarks/graph_exactness.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path[1:1] = [str(REPO / "tests" / "helpers"), str(REPO / "tests" / "conversion")]

import graph_reference  # noqa: E402
from test_graph_emit import GRAPHS, run_emitted  # noqa: E402

from caffezoo.errors import ConversionError  # noqa: E402
from caffezoo.graph.emit import emit  # noqa: E402

RUNS = [("caffe", "pycaffe"), ("caffe", "opencv"), ("fork", "pycaffe"), ("opencv", "opencv")]


def main() -> int:
    print(f"{'graph':<8} {'target':<7} {'runtime':<8} {'values':>6} {'max abs':>10} "
          f"{'max rel':>10}")
    worst = 0.0
    for name, make in GRAPHS.items():
        for target, runtime in RUNS:
            g = make()
            x = (np.random.default_rng(1).normal(size=g.inputs["x"]) * 3).astype(np.float32)
            try:
                emitted = emit(g, target)
            except ConversionError as err:
                print(f"{name:<8} {target:<7} {runtime:<8} refused: {str(err)[:60]}...")
                continue
            with tempfile.TemporaryDirectory() as tmp:
                try:
                    got = run_emitted(emitted, runtime, x, Path(tmp))
                except Exception as err:  # e.g. Bias in OpenCV: the target is not OpenCV
                    print(f"{name:<8} {target:<7} {runtime:<8} does not load: "
                          f"{str(err).split(': ')[-1][:50]}")
                    continue
            ref = graph_reference.run(g, x)
            abs_err = rel_err = 0.0
            count = 0
            for value, blob in emitted.value_blobs.items():
                if blob == emitted.input_blob:
                    continue
                diff = float(np.abs(got[blob] - ref[value]).max())
                abs_err = max(abs_err, diff)
                rel_err = max(rel_err, diff / max(float(np.abs(ref[value]).max()), 1e-12))
                count += 1
            worst = max(worst, rel_err)
            print(f"{name:<8} {target:<7} {runtime:<8} {count:>6} {abs_err:>10.3g} "
                  f"{rel_err:>10.3g}")
    print(f"largest relative error: {worst:.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
