"""Gluon model-zoo nets from seeded random weights, exported as MXNet 1.9.1 does, converted
freely (`caffezoo convert --source mxnet:PREFIX`) and into the zoo cards they fit (`--model`),
and validated against MXNet in real Caffe and OpenCV DNN on the shared ImageNet samples and on
seeded random images. Prints markdown tables (docs/conversion.md, "MXNet: measured errors");
exit status 1 if any run fails.

    scripts/run python benchmarks/mxnet_gluon.py [--models a,b] [--cards a:c,...] [--out-dir DIR]

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
CARDS = ("resnet101_v2:resnet101_v2_gluon,resnet152_v2:resnet152_v2_gluon,"
         "inceptionv3:inception_v3_tv")


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
    parser.add_argument("--cards", default=CARDS, help="GLUON:CARD pairs for --model ('' none)")
    args = parser.parse_args()
    out = Path(args.out_dir)
    inputs = []
    if IMAGES.is_dir():
        inputs.append((["--images", str(IMAGES), "--limit", str(args.limit)],
                       f"{args.limit} ImageNet samples"))
    inputs.append((["--random", str(args.random)], f"{args.random} random"))
    exported: dict[str, str] = {}

    def export(name: str) -> str:
        if name not in exported:
            t0 = time.time()
            exported[name] = export_random_gluon(name, out / name, SIZES.get(name, 224), seed=0)
            print(f"{name}: exported seeded random weights (seed 0) to {exported[name]} in "
                  f"{time.time() - t0:.0f} s", file=sys.stderr)
        return exported[name]

    def validate(label: str, prefix: str, base: str, size: int, model: list[str]) -> bool:
        ok = True
        for backend in ("pycaffe", "opencv"):
            for extra, what in inputs:
                rep = json.loads(_run(["caffezoo", "validate", "--source", f"mxnet:{prefix}",
                                       *model, "--weights", f"{base}.caffemodel", "--backend",
                                       backend, "--json", *extra]))
                o = rep["outputs"][0]  # card and graph sources alike
                ok &= bool(rep["passed"])
                rows.append(f"| {label} | {size} | {what} | {backend} | {o['max_abs']:.2g} | "
                            f"{o['max_rel']:.2g} | {o['max_source']:.3g} | "
                            f"{o['min_cosine']:.9f} | {o['top1_agree']}/{rep['count']}, "
                            f"{o['top5_agree']}/{rep['count']} | "
                            f"{'PASS' if rep['passed'] else 'FAIL'} |")
                print(rows[-1], file=sys.stderr, flush=True)
        return ok

    rows: list[str] = []
    ok = True
    for name in filter(None, args.models.split(",")):
        size = SIZES.get(name, 224)
        prefix = export(name)
        base = str(out / f"{name}-caffe")
        _run(["caffezoo", "convert", "--source", f"mxnet:{prefix}", "-o", base,
              "--input-shape", f"1,3,{size},{size}"])
        ok &= validate(name, prefix, base, size, [])
    free, rows = rows, []
    for pair in filter(None, args.cards.split(",")):
        name, card = pair.split(":")
        size = SIZES.get(name, 224)
        prefix = export(name)
        base = str(out / f"{name}-{card}")
        _run(["caffezoo", "convert", "--source", f"mxnet:{prefix}", "--model", card, "-o", base])
        ok &= validate(f"{name} -> {card}", prefix, base, size, ["--model", card])
    head = ("| {} | size | inputs | backend | max abs error | max rel. error | largest output | "
            "min cosine | top-1, top-5 agree | |\n|---|---|---|---|---|---|---|---|---|---|")
    if free:
        print("Free conversion (`convert --source mxnet:PREFIX`; both sides get the same "
              "tensor):\n")
        print(head.format("Gluon model"))
        print("\n".join(free) + "\n")
    if rows:
        print("Into zoo cards (`--model`; Caffe gets the card's BGR preprocessing, MXNet "
              "Gluon's RGB one):\n")
        print(head.format("Gluon model -> card"))
        print("\n".join(rows))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
