"""Speed: the real `caffe time` (forward and backward, parsed), forward-only timing of the
runtimes (interleaved, with the spread of the passes), and this machine's fp32 limit to compare
against: the best of the installed engines on a reference GEMM (docs/benchmarks.md says why
not numpy's sgemm alone, nor a theoretical peak from the clock).

`caffe time` always runs Backward after Forward; a layer with no CPU backward (Threshold, ArgMax,
...) makes it abort (SIGABRT, shell exit 134). That is reported as a `CaffeTimeError` naming the
layer; the forward-only timing of the runtimes has no such limit.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from caffezoo.errors import CaffezooError

# Layer types whose CPU Backward is NOT_IMPLEMENTED in Caffe (and in the fork built here).
NO_CPU_BACKWARD = ("Threshold", "ArgMax", "DetectionOutput", "DetectionEvaluate")


class CaffeTimeError(CaffezooError):
    """`caffe time` failed (typically: a layer without CPU backward aborted it)."""


@dataclass
class LayerTime:
    name: str
    type: str
    forward_ms: float
    backward_ms: float


@dataclass
class CaffeTimeReport:
    iterations: int
    batch_size: int
    layers: list[LayerTime]
    forward_ms: float
    backward_ms: float
    forward_backward_ms: float
    total_ms: float
    command: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


# glog prefix: "I1122 03:41:00.123456 12345 caffe.cpp:417] " (any severity letter)
_GLOG = re.compile(r"^[IWEF]\d{4,8} [\d:.]+\s+\d+ [^\]]*\] ?")
_NUM = r"([-+0-9.eE]+)"
_LAYER = re.compile(rf"^\s*(\S(?:.*\S)?)\s+(forward|backward): {_NUM} ms\.")
_AVERAGES = {
    "forward_ms": re.compile(rf"Average Forward pass: {_NUM} ms"),
    "backward_ms": re.compile(rf"Average Backward pass: {_NUM} ms"),
    "forward_backward_ms": re.compile(rf"Average Forward-Backward: {_NUM} ms"),
    "total_ms": re.compile(rf"Total Time: {_NUM} ms"),
}
_ITERATION = re.compile(r"Iteration: (\d+) forward-backward time")


def _strip_glog(line: str) -> str:
    return _GLOG.sub("", line, count=1)


def parse_caffe_time(text: str, layer_types: dict[str, str] | None = None,
                     batch_size: int = 1) -> CaffeTimeReport:
    """Parse the log of `caffe time` (GLOG_logtostderr=1 output)."""
    types = layer_types or {}
    per_layer: dict[str, dict[str, float]] = {}
    averages: dict[str, float] = {}
    iterations = 0
    in_table = False
    for raw in text.splitlines():
        line = _strip_glog(raw)
        m = _ITERATION.search(line)
        if m:
            iterations = max(iterations, int(m.group(1)))
            continue
        if "Average time per layer" in line:
            in_table = True
            continue
        for key, pattern in _AVERAGES.items():
            m = pattern.search(line)
            if m:
                averages[key] = float(m.group(1))
                in_table = False
        if in_table:
            m = _LAYER.match(line)
            if m:
                per_layer.setdefault(m.group(1), {})[m.group(2)] = float(m.group(3))
    missing = [k for k in ("forward_ms", "backward_ms", "forward_backward_ms")
               if k not in averages]
    if missing or not per_layer:
        raise CaffeTimeError("caffe time output has no benchmark summary (missing "
                             f"{', '.join(missing) or 'per-layer lines'})")
    # Caffe inserts Split layers (named <blob>_<layer>_<i>_split) for blobs used twice.
    layers = [LayerTime(name, types.get(name, "Split" if name.endswith("_split") else ""),
                        t.get("forward", 0.0), t.get("backward", 0.0))
              for name, t in per_layer.items()]
    return CaffeTimeReport(iterations=iterations, batch_size=batch_size, layers=layers,
                           forward_ms=averages["forward_ms"],
                           backward_ms=averages["backward_ms"],
                           forward_backward_ms=averages["forward_backward_ms"],
                           total_ms=averages.get("total_ms", float("nan")))


def _fatal_line(text: str) -> str:
    for raw in text.splitlines():
        if raw.startswith("F") and _GLOG.match(raw):
            m = re.match(r"^F\d{4,8} [\d:.]+\s+\d+ ([^\]]*)\] ?(.*)$", raw)
            return f"{m.group(1)}: {m.group(2)}" if m else raw
        if "Check failed" in raw:
            return _strip_glog(raw)
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return _strip_glog(lines[-1]) if lines else "no output"


def run_caffe_time(prototxt: str | os.PathLike, weights: str | os.PathLike | None = None,
                   iterations: int = 10, batch_size: int | None = None,
                   threads: int | None = None, timeout: float | None = None) -> CaffeTimeReport:
    """Run the real `caffe time -phase TEST` on `prototxt` (checked and re-written by caffezoo
    first, so a malformed file cannot abort Caffe) and parse its per-layer table.

    `weights` does not change what is timed (`caffe time` never loads weights: the fillers'
    values are used); `batch_size` rewrites the input's first dimension."""
    from caffezoo import frameworks, netio
    from caffezoo.runtimes import check_for_caffe, check_net

    checked = check_net(prototxt)
    check_for_caffe(checked)  # what the tool would abort on, refused first
    net = checked.net
    if batch_size is not None:
        net = _with_batch(net, checked.input_name, batch_size)
    batch = batch_size or checked.input_shape[0]
    types = {layer.name: layer.type for layer in net.layer}
    tool = frameworks.caffe_tool()
    env = dict(os.environ, GLOG_logtostderr="1", GLOG_minloglevel="0")
    if threads is not None:
        env["OPENBLAS_NUM_THREADS"] = env["OMP_NUM_THREADS"] = str(threads)
    with tempfile.TemporaryDirectory(prefix="caffezoo-time-") as tmp:
        path = Path(tmp) / "net.prototxt"
        netio.write_prototxt(net, path)
        cmd = [tool, "time", "-model", str(path), "-phase", "TEST",
               "-iterations", str(iterations)]
        if weights is not None:
            cmd += ["-weights", str(weights)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise CaffeTimeError(f"{prototxt}: caffe time ran past {timeout} s") from None
    output = proc.stderr + proc.stdout
    if proc.returncode != 0:
        code = proc.returncode if proc.returncode > 0 else 128 - proc.returncode
        fatal = _fatal_line(output)
        culprits = [f"'{name}' ({t})" for name, t in types.items() if t in NO_CPU_BACKWARD]
        why = ""
        if "Backward" in output and culprits:
            why = (f"; layer {', '.join(culprits)} has no CPU backward and `caffe time` always "
                   "runs Backward (use the forward-only timing)")
        raise CaffeTimeError(f"{prototxt}: caffe time aborted (exit {code}): {fatal}{why}")
    report = parse_caffe_time(output, types, batch)
    report.command = ["caffe", *cmd[1:]]
    report.command[3] = str(prototxt)
    return report


def _with_batch(net, input_name: str, batch: int):
    from caffezoo import netio

    out = netio.NetParameter()
    out.CopyFrom(net)
    for layer in out.layer:
        if layer.type == "Input" and input_name in layer.top:
            layer.input_param.shape[list(layer.top).index(input_name)].dim[0] = batch
    return out


# -- forward-only timing ----------------------------------------------------------------------


# Runs of one setting that disagree by more than this factor (slowest / fastest pass) make
# `time` warn: the machine's load changed, or the backend is unstable (docs/benchmarks.md).
SPREAD_WARN = 1.5


@dataclass
class ForwardTiming:
    backend: str
    threads: int | None
    batch_size: int
    iterations: int
    ms_per_batch: float  # median over iterations
    ms_min: float
    ms_max: float
    images_per_s: float  # at the median
    gflops: float  # achieved at the median, from the net's MACs (2 FLOPs per MAC)
    limit_fraction: float | None  # of the machine's fp32 limit at the same thread count

    @property
    def spread(self) -> float:
        """Slowest pass / fastest pass."""
        return self.ms_max / self.ms_min if self.ms_min > 0 else float("inf")


def time_forward(runtime, batch_size: int, iterations: int = 5, warmup: int = 1,
                 seed: int = 0) -> list[float]:
    """Seconds per forward pass of a random batch, `iterations` of them after `warmup`."""
    return time_interleaved({"": runtime}, batch_size, iterations, warmup, seed)[""]


def time_interleaved(runtimes: dict, batch_size: int, iterations: int = 5, warmup: int = 1,
                     seed: int = 0) -> dict[str, list[float]]:
    """Seconds per forward pass of each runtime on one random batch, passes taken in turns
    (one of each runtime per round), so that a change in the machine's load hits all alike."""
    first = next(iter(runtimes.values()))
    c, h, w = first.input_shape[1:]
    batch = np.random.default_rng(seed).standard_normal((batch_size, c, h, w),
                                                        dtype=np.float32)
    for rt in runtimes.values():
        for _ in range(warmup):
            rt.forward(batch)
    times: dict[str, list[float]] = {name: [] for name in runtimes}
    for _ in range(iterations):
        for name, rt in runtimes.items():
            t0 = time.perf_counter()
            rt.forward(batch)
            times[name].append(time.perf_counter() - t0)
    return times


def macs_per_image(runtime) -> int:
    """The net's multiply-accumulates per image (Convolution, InnerProduct), from its
    prototxt."""
    from caffezoo import analysis

    shape = (1, *runtime.input_shape[1:])
    return analysis.analyze(runtime.checked.net, {runtime.input_name: shape}).total_macs


def needed_macs(prototxt, weights) -> int:
    """The multiply-accumulates per image that computing the net needs: its MACs less those
    that an exact fused form skips (export/fuse.py): kernel taps that are zero at a kernel's
    border (padding written as a grown kernel), the permutation of a channel shuffle, and the
    Scale/BatchNorm folded into convolutions (which count none). The work every backend is
    credited with, so that GFLOP/s compare."""
    from caffezoo import geometry
    from caffezoo.export import export_net, fuse

    ex = export_net.from_files(prototxt, weights)
    input_name, shape = next(iter(ex.inputs.items()))
    ex = export_net.prepare(ex.net, ex.weights, ex.source, {input_name: (1, *shape[1:])})
    fused = fuse.fuse(ex)
    total = 0
    for layer, stats, shapes in fused.steps():
        macs = stats.macs
        if layer.type == "Convolution" and macs:
            weight = fused.weights[layer.name][0]
            n = weight.ndim - 2
            w = geometry.conv_window(layer.convolution_param, n)
            trimmed, _, _ = export_net.trim_zero_taps(weight, w.pad, w.stride, w.dilation,
                                                shapes[0][2:], stats.out_shapes[0][2:])
            macs = macs * trimmed[0, 0].size // weight[0, 0].size
        total += macs
    return total


def summarize(backend: str, threads: int | None, batch_size: int, seconds: list[float],
              macs: int, limit_gflops: float | None) -> ForwardTiming:
    med = statistics.median(seconds)
    gflops = 2 * macs * batch_size / med / 1e9
    return ForwardTiming(backend=backend, threads=threads, batch_size=batch_size,
                         iterations=len(seconds), ms_per_batch=1000 * med,
                         ms_min=1000 * min(seconds), ms_max=1000 * max(seconds),
                         images_per_s=batch_size / med, gflops=gflops,
                         limit_fraction=gflops / limit_gflops if limit_gflops else None)


# -- the machine's limit ------------------------------------------------------------------------

GEMM_ENGINES = ("numpy", "torch", "onnxruntime", "openvino")
LIMIT_METHOD = ("the best of the installed engines ({engines}) on a float32 product of two "
                "n x n matrices, n = {n}, in a fresh process at {threads} thread(s); each "
                "engine's best of {repeats} after one warm-up; 2 n^3 FLOPs per product")

# Runs in a child process: one engine after another, each at `threads` threads, each on the
# same matrices; prints {engine: seconds or an error}.
_GEMM_CODE = """
import json, sys, time
n, repeats, threads, engines = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
import numpy as np
rng = np.random.default_rng(0)
a = rng.standard_normal((n, n), dtype=np.float32)
b = rng.standard_normal((n, n), dtype=np.float32)

def onnx_matmul():
    import onnx
    from onnx import helper, numpy_helper, TensorProto
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])], "gemm",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [n, n])],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])],
        [numpy_helper.from_array(b, "b")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                             ir_version=7).SerializeToString()

def product(engine):
    if engine == "numpy":
        return lambda: a @ b
    if engine == "torch":
        import torch
        torch.set_num_threads(threads)
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        return lambda: torch.mm(ta, tb)
    if engine == "onnxruntime":
        import onnxruntime as ort
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        s = ort.InferenceSession(onnx_matmul(), opts, providers=["CPUExecutionProvider"])
        return lambda: s.run(None, {"a": a})
    if engine == "openvino":
        import openvino as ov
        core = ov.Core()
        m = core.compile_model(core.read_model(onnx_matmul()), "CPU", {
            "INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads,
            "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY"})
        r = m.create_infer_request()
        return lambda: r.infer({0: a})
    raise ValueError(engine)

out = {}
for engine in engines:
    try:
        f = product(engine)
        f()
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            f()
            best = min(best, time.perf_counter() - t0)
        out[engine] = best
    except Exception as err:
        out[engine] = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
print(json.dumps(out))
"""


@dataclass
class GemmLimit:
    """The machine's practical fp32 limit at `threads` threads: the best engine's GEMM."""

    threads: int
    n: int
    repeats: int
    gflops: float  # the best engine's
    engine: str
    by_engine: dict[str, float]  # GFLOP/s of each engine that ran
    failed: dict[str, str]  # engine -> why it did not run
    method: str


def installed_gemm_engines() -> tuple[str, ...]:
    import importlib.util

    return tuple(e for e in GEMM_ENGINES if importlib.util.find_spec(e) is not None)


def measure_gemm_limit(threads: int, n: int = 2048, repeats: int = 5,
                       engines: tuple[str, ...] | None = None,
                       timeout: float = 300) -> GemmLimit:
    """This machine's fp32 limit at `threads` threads (LIMIT_METHOD)."""
    engines = tuple(engines or installed_gemm_engines())
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
               OMP_WAIT_POLICY=os.environ.get("OMP_WAIT_POLICY", "PASSIVE"))
    try:
        proc = subprocess.run([sys.executable, "-c", _GEMM_CODE, str(n), str(repeats),
                               str(threads), *engines],
                              capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise CaffezooError(f"GEMM benchmark ran past {timeout:g} s") from None
    if proc.returncode != 0:
        raise CaffezooError(f"GEMM benchmark failed: {proc.stderr.strip()[-200:]}")
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    by_engine = {e: 2 * n ** 3 / v / 1e9 for e, v in found.items() if isinstance(v, float)}
    failed = {e: v for e, v in found.items() if not isinstance(v, float)}
    if not by_engine:
        raise CaffezooError("GEMM benchmark: no engine ran ("
                            + "; ".join(f"{e}: {v}" for e, v in failed.items()) + ")")
    best = max(by_engine, key=by_engine.get)
    return GemmLimit(threads=threads, n=n, repeats=repeats, gflops=by_engine[best],
                     engine=best, by_engine=by_engine, failed=failed,
                     method=LIMIT_METHOD.format(engines=", ".join(engines), n=n,
                                                threads=threads, repeats=repeats))


# -- random weights, for timing nets that have none -------------------------------------------


def write_random_caffemodel(net, path: str | os.PathLike, seed: int = 0) -> None:
    from caffezoo import netio
    from caffezoo.random_weights import random_weights

    netio.write_caffemodel(netio.attach_weights(net, random_weights(net, seed)), path)
