"""What the guard around real Caffe costs: the pycaffe runtime (Caffe in a child process, batches
and blobs through pipes) against pycaffe called in this process on the same net and weights, and
the guard's own share of each call: the round trip minus the forward pass timed in the child.

    scripts/run python benchmarks/guard_overhead.py [--model squeezenet|resnext50_32x4d]
        [--batch-sizes 1,16] [--repeat 7] [--threads 2]

Prints, per batch size, the median ms per forward of each and their ratio (medians of --repeat
passes, interleaved), the median guard overhead per call (the batch and the blobs through the
pipes, and their copies; the child's layer-by-layer loop, which records the running layer, is
part of the child's time and shows only in the ratio), and the runtime's start-up time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

SQUEEZENET = Path(__file__).resolve().parents[2] / "shared" / "data" / "squeezenet_v1.0_dc"


def _files(model: str, tmp: Path) -> tuple[Path, Path]:
    from caffezoo import netio
    from caffezoo.random_weights import random_weights

    if model == "squeezenet":
        return SQUEEZENET / "deploy.prototxt", next(SQUEEZENET.glob("*.caffemodel"))
    from caffezoo import zoo

    net = zoo.get_card(model).build(None)
    proto, weights = tmp / "net.prototxt", tmp / "net.caffemodel"
    netio.write_prototxt(net, proto)
    netio.write_caffemodel(netio.attach_weights(net, random_weights(net)), weights)
    return proto, weights


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="squeezenet")
    p.add_argument("--batch-sizes", default="1,16")
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    os.environ["OPENBLAS_NUM_THREADS"] = str(args.threads)
    from caffezoo import frameworks
    from caffezoo.runtimes import check_net, open_runtime

    with tempfile.TemporaryDirectory() as tmpdir:
        proto, weights = _files(args.model, Path(tmpdir))
        t0 = time.perf_counter()
        guarded = open_runtime("pycaffe", proto, weights, threads=args.threads)
        start_s = time.perf_counter() - t0
        # the same net, in this process, as the runtime used to run it
        checked = check_net(proto, weights)
        caffe = frameworks.import_caffe(threads=args.threads)
        path = Path(tmpdir) / "inproc.prototxt"
        path.write_text(checked.text())
        net = caffe.Net(str(path), caffe.TEST)
        for name, blobs in checked.weights.items():
            for target, blob in zip(net.params[name], blobs, strict=True):
                target.data[...] = blob
        out = guarded.output_names[0]

        def in_process(batch: np.ndarray) -> np.ndarray:
            blob = net.blobs[checked.input_name]
            if blob.data.shape != batch.shape:
                blob.reshape(*batch.shape)
                net.reshape()
            blob.data[...] = batch
            net.forward()
            return net.blobs[out].data.copy()

        print(f"{args.model}: guarded runtime start-up {start_s:.2f} s; OPENBLAS threads "
              f"{args.threads}; median of {args.repeat}")
        print(f"{'batch':>5} {'in-process ms':>14} {'guarded ms':>11} {'ratio':>6} "
              f"{'guard ms':>9} {'guard %':>8} {'max |diff|':>10}")
        for n in (int(v) for v in args.batch_sizes.split(",")):
            batch = np.random.default_rng(0).normal(
                size=(n, *guarded.input_shape[1:])).astype(np.float32)
            a, b = in_process(batch), guarded.forward(batch)[out]  # warm-up, and agreement
            ours, theirs, guard, share = [], [], [], []
            for _ in range(args.repeat):
                # A pause before each timed call: OpenBLAS threads keep spinning for a while
                # after their work, and would compete with the other process's pass.
                time.sleep(0.3)
                t0 = time.perf_counter()
                in_process(batch)
                theirs.append(time.perf_counter() - t0)
                time.sleep(0.3)
                t0 = time.perf_counter()
                guarded.forward(batch)
                ours.append(time.perf_counter() - t0)
                guard.append(ours[-1] - guarded.child_seconds)
                share.append(guard[-1] / ours[-1])
            mi, mg = statistics.median(theirs) * 1000, statistics.median(ours) * 1000
            print(f"{n:>5} {mi:>14.1f} {mg:>11.1f} {mg / mi:>6.3f} "
                  f"{statistics.median(guard) * 1000:>9.2f} "
                  f"{100 * statistics.median(share):>7.2f}% "
                  f"{float(np.max(np.abs(a - b))):>10.2g}")


if __name__ == "__main__":
    main()
