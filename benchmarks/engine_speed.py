#!/usr/bin/env python
"""Every runtime on every converted net, beside the source ONNX, in one run (the tables of
docs/benchmarks.md).

- The models of benchmarks/graph_sources.py (torchvision/timm, seeded random weights): the
  source traced to ONNX with a dynamic batch axis ("source ONNX", run by onnxruntime, and by
  OpenVINO at float32), and the net converted with each --target (caffe, fork, opencv), run by
  each backend that runs that target (pycaffe: caffe and fork; opencv: caffe and opencv;
  onnxruntime, openvino and torch: all three).
- The zoo cards (random weights): every backend (there is no source ONNX: the zoo's sources are
  checkpoints).
- `auto`: what `--backend auto` picks for the net at that batch size (its probe, cached in
  $CAFFEZOO_PROBE_CACHE), with that backend's time from the row.

One row is one interleaved run: the row's runtimes (and the source ONNX) take their passes in
turns, one warm-up each, then --passes rounds; cells are median ms per image, the spread
(slowest / fastest pass) beside the row, and the worst relative error of the exported
backends' outputs (fused nets) against real Caffe (OpenCV for the opencv target) on the timed
batch. The 1-minute load average is printed per row.

    scripts/run python benchmarks/engine_speed.py --batch-sizes 1,8 --passes 5 --json speed.json
    scripts/run python benchmarks/engine_speed.py --models timm:tf_efficientnet_lite0 --zoo ''
"""

from __future__ import annotations

import argparse
import gc
import json
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
sys.path.insert(0, str(REPO / "benchmarks"))

from graph_sources import MODELS, TARGETS  # noqa: E402

BACKENDS = ("pycaffe", "opencv", "onnxruntime", "openvino", "torch")
SOURCES = ("source onnxruntime", "source openvino")


def source_sessions(spec: str, size: int, tmp: Path, threads: int) -> dict:
    """The source model traced to ONNX (dynamic batch), in onnxruntime and OpenVINO (f32)."""
    import warnings

    import onnxruntime as ort
    import openvino as ov

    from caffezoo.converters.traced import load

    kind, name = spec.split(":", 1)
    tm = load(kind, name)
    torch = sys.modules["torch"]
    path = tmp / "source.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(tm.model, (torch.zeros(1, 3, size, size),), str(path), dynamo=False,
                          opset_version=17, input_names=["data"], output_names=["logits"],
                          dynamic_axes={"data": {0: "N"}, "logits": {0: "N"}})
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    core = ov.Core()
    compiled: dict[int, object] = {}

    def run_ov(x):
        n = x.shape[0]
        if n not in compiled:
            model = core.read_model(str(path))
            model.reshape([n, 3, size, size])
            compiled[n] = core.compile_model(model, "CPU", {
                "INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads,
                "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY"}).create_infer_request()
        return compiled[n].infer({0: x})

    return {"source onnxruntime": lambda x: session.run(None, {"data": x}),
            "source openvino": run_ov}


def timed_row(runs: dict, batch: int, shape, passes: int) -> dict[str, dict]:
    """Interleaved passes of every callable in `runs` on one random batch."""
    x = np.random.default_rng(0).standard_normal((batch, *shape), dtype=np.float32)
    for f in runs.values():
        f(x)
    secs: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(passes):
        for k, f in runs.items():
            t0 = time.perf_counter()
            f(x)
            secs[k].append(time.perf_counter() - t0)
    return {k: {"ms_per_image": 1000 * statistics.median(v) / batch,
                "spread": max(v) / min(v)} for k, v in secs.items()}


def errors(runtimes: dict, batch: int, shape) -> dict[str, float]:
    """Each exported backend's max |output - reference| / max |reference| on the timed batch;
    the reference is real Caffe, or OpenCV for a net only OpenCV runs (the opencv target)."""
    ref = next((b for b in ("pycaffe", "opencv") if b in runtimes), None)
    if ref is None:
        return {}
    x = np.random.default_rng(0).standard_normal((batch, *shape), dtype=np.float32)
    want = runtimes[ref].forward(x)
    out = {}
    for b in ("onnxruntime", "openvino", "torch"):
        if b in runtimes:
            got = runtimes[b].forward(x)
            out[b] = max(float(np.abs(got[k] - v).max() / np.abs(v).max())
                         for k, v in want.items())
    return out


def auto_choice(proto, model, threads: int, batch: int) -> dict:
    from caffezoo.runtimes import open_runtime

    rt = open_runtime("auto", proto, model, threads=threads, batch_size=batch)
    choice = {"backend": rt.probe.backend, "probe_seconds": rt.probe.seconds,
              "cached": rt.probe.cached, "excluded": rt.probe.excluded}
    del rt
    gc.collect()
    return choice


def measure(label: str, proto, model, backends, sources, threads: int, batches, passes: int,
            shape) -> list[dict]:
    from caffezoo.runtimes import open_runtime

    rows = []
    runtimes = {b: open_runtime(b, proto, model, threads=threads) for b in backends}
    runs = {b: rt.forward for b, rt in runtimes.items()}
    runs.update(sources)
    for batch in batches:
        load_before = os.getloadavg()[0]
        cells = timed_row(runs, batch, shape, passes)
        row = {"model": label, "batch": batch, "cells": cells,
               "load": [load_before, os.getloadavg()[0]], "errors": errors(runtimes, batch,
                                                                           shape)}
        rows.append(row)
    del runtimes, runs
    gc.collect()
    for row in rows:  # after the timed runs: the probe opens its own runtimes
        row["auto"] = auto_choice(proto, model, threads, row["batch"])
        print_row(row)
    return rows


def fmt(cell) -> str:
    return f"{cell['ms_per_image']:.2f}" if cell else "-"


def print_row(row: dict) -> None:
    cells = row["cells"]
    pick = row["auto"]["backend"]
    auto = cells.get(pick)
    src = cells.get("source onnxruntime")
    ratio = f"{auto['ms_per_image'] / src['ms_per_image']:.2f}" if auto and src else "-"
    spread = max(c["spread"] for c in cells.values())
    out = [row["model"], str(row["batch"])] + [fmt(cells.get(b)) for b in BACKENDS]
    out += [f"{pick} {fmt(auto)}", fmt(src), fmt(cells.get("source openvino")), ratio,
            f"{spread:.2f}", f"{max(row['errors'].values(), default=0):.1e}",
            f"{row['load'][0]:.1f}-{row['load'][1]:.1f}"]
    print("| " + " | ".join(out) + " |", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS), help="graph_sources models ('' none)")
    ap.add_argument("--zoo", default=None, help="zoo cards (default: all; '' none)")
    ap.add_argument("--batch-sizes", default="1,8")
    ap.add_argument("--passes", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--json", help="write every figure as JSON")
    args = ap.parse_args()
    os.environ["OMP_NUM_THREADS"] = os.environ["OPENBLAS_NUM_THREADS"] = str(args.threads)

    from caffezoo import netio
    from caffezoo.converters.registry import parse_source
    from caffezoo.errors import ConversionError
    from caffezoo.evaluation import timing
    from caffezoo.frameworks import import_torch
    from caffezoo.graph.emit import emit
    from caffezoo.zoo import all_cards, get_card

    import_torch()
    batches = [int(b) for b in args.batch_sizes.split(",")]
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"{args.threads} threads; load average before {os.getloadavg()}")
    head = ["model", "batch", *BACKENDS, "auto (pick ms)", "source onnxruntime",
            "source openvino", "auto / source", "max spread", "max error", "load"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    rows = []
    started = time.time()
    for spec in filter(None, args.models.split(",")):
        source = parse_source(spec)
        plugin = source.kind.plugin()
        shape = (1, 3, args.size, args.size)
        graph = plugin.read_graph(source.spec, shape)
        with tempfile.TemporaryDirectory(prefix="caffezoo-speed-") as tmp:
            tmp = Path(tmp)
            sources = source_sessions(spec, args.size, tmp, args.threads)
            for target, (dialect, runtimes) in TARGETS.items():
                try:
                    emitted = emit(graph, target)
                except ConversionError as err:
                    print(f"<!-- {spec} {target}: refused: {err} -->")
                    continue
                proto, model = tmp / f"{target}.prototxt", tmp / f"{target}.caffemodel"
                netio.write_prototxt(emitted.net, proto, dialect=dialect)
                netio.write_caffemodel(emitted.net, model, dialect=dialect)
                backends = [b for b in BACKENDS if b in runtimes or b not in ("pycaffe",
                                                                              "opencv")]
                rows += measure(f"{spec} ({target})", proto, model, backends, sources,
                                args.threads, batches, args.passes, shape[1:])
            del sources
            gc.collect()
    cards = all_cards() if args.zoo is None else [get_card(n) for n in
                                                  filter(None, args.zoo.split(","))]
    for card in cards:
        net = card.build(card.input_size)
        with tempfile.TemporaryDirectory(prefix="caffezoo-speed-") as tmp:
            proto, model = Path(tmp) / "net.prototxt", Path(tmp) / "net.caffemodel"
            netio.write_prototxt(net, proto)
            timing.write_random_caffemodel(net, model)
            size = card.input_size
            rows += measure(f"zoo {card.name}", proto, model, BACKENDS, {}, args.threads,
                            batches, args.passes, (3, size, size))
    print(f"<!-- {time.time() - started:.0f} s; load average after {os.getloadavg()} -->")
    if args.json:
        netio.atomic_write(args.json, json.dumps({"threads": args.threads, "passes": args.passes,
                                                  "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
