#!/usr/bin/env python
"""Evaluation throughput on one backend and one set of cores, three ways:

  forward   forward passes only, over crops decoded beforehand (the ceiling)
  eval      `caffezoo eval`'s loop end to end (decode + crop in workers beside the forward)
  decode    decoding and cropping alone, in the eval loop's workers (what bounds eval when the
            forward pass is fast: 1-crop on 2 cores)
  original  a sequential loop in the original evaluation_cls.py's style: imread, resize,
            normalise, centre crop, one forward pass per image (batch 1)

Passes are interleaved (forward, eval, original, forward, ...) and the median of each is
reported, with eval / forward; this machine's load varies between passes.

    python benchmarks/eval_throughput.py --squeezenet ../shared/data/squeezenet_v1.0_dc
    python benchmarks/eval_throughput.py --model resnext50_32x4d --limit 40
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared" / "data"


def original_style_loop(runtime, samples, pre, blob: str) -> float:
    """Seconds for the plain sequential loop, one image at a time (1-crop)."""
    from caffezoo.frameworks import import_cv2

    cv2 = import_cv2()
    bgr_mean, bgr_std = pre.contract.bgr_normalization_255()
    mean, std, base, c = np.array(bgr_mean), np.array(bgr_std), pre.base_size, pre.crop_size
    t0 = time.perf_counter()
    for s in samples:
        img = cv2.imread(s.path)
        h, w = img.shape[:2]
        img = cv2.resize(img, (w * base // min(h, w), h * base // min(h, w)))
        b, g, r = cv2.split(img)
        img = cv2.merge([(b - mean[0]) / std[0], (g - mean[1]) / std[1], (r - mean[2]) / std[2]])
        y, x = (img.shape[0] - c) // 2, (img.shape[1] - c) // 2
        crop = np.asarray([img[y:y + c, x:x + c]], dtype=np.float32).transpose(0, 3, 1, 2)
        scores = runtime.forward(crop, [blob])[blob].reshape(1, -1)
        (-scores[0]).argsort()
    return time.perf_counter() - t0


def decode_only(samples, pre, workers: int) -> float:
    """Seconds to decode and crop every image in the eval loop's worker threads, no forward."""
    from caffezoo.evaluation.classify import _crops_in_order

    t0 = time.perf_counter()
    for _ in _crops_in_order(samples, pre, workers, workers + 2, "thread"):
        pass
    return time.perf_counter() - t0


def forward_only(runtime, crops: np.ndarray, batch: int, blob: str) -> float:
    t0 = time.perf_counter()
    for i in range(0, len(crops), batch):
        runtime.forward(crops[i:i + batch], [blob])
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="zoo model (random weights)")
    ap.add_argument("--squeezenet", type=Path, help="folder of the shared real SqueezeNet")
    ap.add_argument("--val-list", type=Path, default=SHARED / "imagenet_samples" / "val.txt")
    ap.add_argument("--data-root", type=Path, default=SHARED / "imagenet_samples")
    ap.add_argument("--backend", default="opencv",
                    choices=("opencv", "pycaffe", "onnxruntime", "torch", "auto"))
    ap.add_argument("--crop-num", type=int, default=1, choices=(1, 10, 12),
                    help="crops per image (the 'original' loop is 1-crop only: skipped else)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--worker-kind", default="auto", choices=("auto", "thread", "process"))
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--passes", type=int, default=3)
    args = ap.parse_args()

    from caffezoo.evaluation import dataset, timing
    from caffezoo.evaluation.classify import EvalConfig, evaluate, probe_classes
    from caffezoo.evaluation.preprocess import original
    from caffezoo.runtimes import open_runtime

    tmp = Path(tempfile.mkdtemp(prefix="caffezoo-bench-"))
    if args.squeezenet:
        prototxt = args.squeezenet / "deploy.prototxt"
        weights = args.squeezenet / "squeezenet_v1.0_dc.caffemodel"
        pre = original((104.0, 117.0, 123.0), (1.0, 1.0, 1.0), 256, 227, args.crop_num)
        name, blob = "SqueezeNet v1.0 (real weights)", "pool_final"
    elif args.model:
        from caffezoo import netio
        from caffezoo.zoo import get_card

        card = get_card(args.model)
        setting = card.eval_settings[0]
        net = card.build(setting.crop_size)
        prototxt, weights = tmp / "net.prototxt", tmp / "net.caffemodel"
        netio.write_prototxt(net, prototxt)
        timing.write_random_caffemodel(net, weights)
        pre = original(card.mean, card.std, setting.base_size, setting.crop_size,
                       args.crop_num)
        name, blob = f"{card.name} (random weights)", "prob"
    else:
        ap.error("give --model or --squeezenet")

    runtime = open_runtime(args.backend, prototxt, weights, threads=args.threads)
    classes = probe_classes(runtime, pre.crop_size, blob)
    samples = dataset.read_val_list(args.val_list, args.data_root, args.limit)
    crops = np.concatenate([pre(dataset.load_image(s.path)) for s in samples])
    config = EvalConfig(pre, blob, classes, batch_size=args.batch_size, workers=args.workers,
                        worker_kind=args.worker_kind, top_k=(1,))
    n = len(samples)
    times: dict[str, list[float]] = {"forward": [], "eval": [], "decode": [], "original": []}
    for _ in range(args.passes):
        times["forward"].append(forward_only(runtime, crops, args.batch_size, blob))
        times["eval"].append(evaluate(runtime, samples, config).wall_s)
        times["decode"].append(decode_only(samples, pre, args.workers))
        if args.crop_num == 1:
            times["original"].append(original_style_loop(runtime, samples, pre, blob))
    rate = {k: n / statistics.median(v) for k, v in times.items() if v}
    load = os.getloadavg()
    print(f"{name}, {args.crop_num}-crop, backend {runtime.backend}, {args.threads} inference "
          f"threads, batch "
          f"{args.batch_size}, {args.workers} {args.worker_kind} workers, {n} images, "
          f"median of {args.passes} passes, {os.cpu_count()} cores, "
          f"{platform.processor() or platform.machine()}, load average after "
          f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}")
    print("| way | images/s | of forward-only |")
    print("|---|---:|---:|")
    for k in rate:
        print(f"| {k} | {rate[k]:.2f} | {100 * rate[k] / rate['forward']:.0f} % |")
    print("per pass (s):", {k: [round(t, 2) for t in v] for k, v in times.items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
