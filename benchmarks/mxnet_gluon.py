"""Gluon model-zoo nets from seeded random weights, exported as MXNet 1.9.1 does, converted
freely (`caffezoo convert --source mxnet:PREFIX`) and validated against MXNet in real Caffe and
OpenCV DNN on the shared ImageNet samples and on seeded random images. Prints a markdown table
(docs/conversion.md, "MXNet: measured errors"); exit status 1 if any run fails.

    scripts/run python benchmarks/mxnet_gluon.py [--models a,b] [--out-dir DIR] [--limit 10]

Each pair runs the commands it prints (convert once, then validate per backend and input set);
the models run one after the other (vgg16_bn needs about 3 GB at 224 px).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SIZES = {"inceptionv3": 299}
IMAGES = REPO.parent / "shared" / "data" / "imagenet_samples"


def _run(cmd: list[str]) -> str:
    print("$ " + " ".join(cmd), file=sys.stderr, flush=True)
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if done.returncode not in (0, 1):
        sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit(f"command failed with status {done.returncode}")
    return done.stdout


def main() -> int:
    from caffezoo.converters.mxnet.gluon import GLUON_MODELS, export_random_gluon

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(GLUON_MODELS))
    parser.add_argument("--out-dir", default="/tmp/caffezoo-mxnet-bench")
    parser.add_argument("--limit", type=int, default=10, help="shared images per run")
    parser.add_argument("--random", type=int, default=4, help="random images per run")
    args = parser.parse_args()
    out = Path(args.out_dir)
    rows = []
    ok = True
    for name in args.models.split(","):
        size = SIZES.get(name, 224)
        t0 = time.time()
        prefix = export_random_gluon(name, out / name, size, seed=0)
        print(f"{name}: exported seeded random weights (seed 0) to {prefix} in "
              f"{time.time() - t0:.0f} s", file=sys.stderr)
        base = str(out / f"{name}-caffe")
        _run(["caffezoo", "convert", "--source", f"mxnet:{prefix}", "-o", base,
              "--input-shape", f"1,3,{size},{size}"])
        inputs = []
        if IMAGES.is_dir():
            inputs.append((["--images", str(IMAGES), "--limit", str(args.limit)],
                           f"{args.limit} ImageNet samples"))
        inputs.append((["--random", str(args.random)], f"{args.random} random"))
        for backend in ("pycaffe", "opencv"):
            for extra, what in inputs:
                text = _run(["caffezoo", "validate", "--source", f"mxnet:{prefix}", "--weights",
                             f"{base}.caffemodel", "--backend", backend, "--json", *extra])
                rep = json.loads(text)
                o = rep["outputs"][0]
                ok &= bool(rep["passed"])
                rows.append(f"| {name} | {size} | {what} | {backend} | {o['max_abs']:.2g} | "
                            f"{o['max_rel']:.2g} | {o['max_source']:.3g} | "
                            f"{o['min_cosine']:.9f} | {o['top1_agree']}/{rep['count']}, "
                            f"{o['top5_agree']}/{rep['count']} | "
                            f"{'PASS' if rep['passed'] else 'FAIL'} |")
                print(rows[-1], file=sys.stderr, flush=True)
        print(f"{name}: done in {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    print("| Gluon model | size | inputs | backend | max abs error | max rel. error | "
          "largest output | min cosine | top-1, top-5 agree | |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
