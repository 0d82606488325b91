"""Converts torchvision/timm classifiers (seeded random weights, randomised BatchNorm statistics)
through the ONNX front end and the graph emitter for every --target, runs each converted net in
real Caffe (pycaffe) and OpenCV DNN, and compares its logits with the PyTorch model's on the
shared ImageNet samples and on seeded random inputs. Prints a markdown table (for
docs/conversion.md).

    scripts/run python benchmarks/graph_sources.py [--size 224] [--images 8] [--random 4]
        [--models torchvision:mobilenet_v2,timm:tf_efficientnet_lite0]

Each cell: max |caffe - source| / max |source logit| over all inputs (relative), and the max
absolute error; exit status 1 when any exceeds 1e-4. A target that cannot express a model says
which node stops it.
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

MODELS = ("torchvision:mobilenet_v2", "torchvision:mobilenet_v3_large",
          "torchvision:shufflenet_v2_x1_0", "torchvision:squeezenet1_1",
          "torchvision:densenet121", "torchvision:regnet_x_400mf", "torchvision:vgg16_bn",
          "torchvision:resnet50", "torchvision:efficientnet_b0", "torchvision:mnasnet1_0",
          "timm:tf_efficientnet_lite0")
# target -> (pooling dialect written, runtimes that run it)
TARGETS = {"caffe": ("portable", ("pycaffe", "opencv")), "fork": ("ceil_mode", ("pycaffe",)),
           "opencv": ("ceil_mode", ("opencv",))}
IMAGES = REPO.parent / "shared" / "data" / "imagenet_samples"


def inputs(runner, size: int, n_images: int, n_random: int) -> tuple[np.ndarray, str]:
    from caffezoo.validation.inputs import image_inputs, random_pixels

    parts, what = [], []
    norm = runner.input_norm
    if n_images and IMAGES.is_dir():
        # eval's preprocessing for the source's contract, at this size
        contract = norm if norm.crop_size == size else norm.at_crop(size)
        images = image_inputs(IMAGES, contract, contract, n_images)
        parts.append(images.source)
        what.append(f"{len(images.source)} images")
    if n_random:
        parts.append(norm.apply(random_pixels(n_random, size, seed=0)))
        what.append(f"{n_random} random")
    return np.concatenate(parts), " + ".join(what)


def main() -> int:
    from caffezoo import netio
    from caffezoo.converters.registry import parse_source
    from caffezoo.errors import ConversionError
    from caffezoo.graph.emit import emit
    from caffezoo.runtimes import open_runtime

    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--random", type=int, default=4)
    ap.add_argument("--models", default=",".join(MODELS))
    args = ap.parse_args()
    runs = [(t, r) for t, (_, rts) in TARGETS.items() for r in rts]
    print(f"input 1x3x{args.size}x{args.size}; each cell: max relative error (max |caffe - "
          "source| / max |source logit|) / max abs error over all inputs\n")
    print("| model | inputs | " + " | ".join(f"{t} in {r}" for t, r in runs)
          + " | Caffe layers (caffe / fork / opencv) | top-1 agree |")
    print("|---" * (len(runs) + 4) + "|")
    failed = 0
    for spec in args.models.split(","):
        source = parse_source(spec)
        plugin = source.kind.plugin()
        shape = (1, 3, args.size, args.size)
        t0 = time.time()
        graph = plugin.read_graph(source.spec, shape)
        runner = plugin.open_graph_runner(source.spec, shape)
        x, what = inputs(runner, args.size, args.images, args.random)
        want = runner.run(x)[graph.outputs[0]]
        cells, layers, agree = {}, [], []
        for target, (dialect, runtimes) in TARGETS.items():
            try:
                emitted = emit(graph, target)
            except ConversionError as err:
                layers.append("-")
                for backend in runtimes:
                    cells[target, backend] = f"refused: {err}"
                continue
            layers.append(str(emitted.layer_count))
            with tempfile.TemporaryDirectory() as tmp:
                proto, model = Path(tmp) / "net.prototxt", Path(tmp) / "net.caffemodel"
                netio.write_prototxt(emitted.net, proto, dialect=dialect)
                netio.write_caffemodel(emitted.net, model, dialect=dialect)
                blob = emitted.output_blobs[graph.outputs[0]]
                for backend in runtimes:
                    rt = open_runtime(backend, proto, model)
                    got = np.concatenate([rt.forward(x[i:i + 1], [blob])[blob]
                                          for i in range(len(x))]).reshape(want.shape)
                    abs_err = float(np.abs(got - want).max())
                    rel = abs_err / float(np.abs(want).max())
                    agree.append(int((got.argmax(1) == want.argmax(1)).sum()))
                    failed += rel > 1e-4
                    cells[target, backend] = f"{rel:.1e} / {abs_err:.1e}"
        print(f"| {spec} | {what} | " + " | ".join(cells[run] for run in runs)
              + f" | {' / '.join(layers)} | {min(agree, default=0)}/{len(x)} |", flush=True)
        print(f"<!-- {spec}: {time.time() - t0:.0f} s -->", file=sys.stderr, flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
