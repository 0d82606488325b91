"""A graph source against its converted Caffe net: final outputs and, value by value, where
they part.

The source side is a *graph runner* (the front end's: MXNet, ONNX Runtime, PyTorch...) with
`input_shape`, `input_norm` (how its input is made from 0..255 BGR pixels, or None when unknown)
and `run(x, record) -> {value name: array}` returning the graph's outputs plus the recorded
values. The Caffe side is a runtime (`caffezoo.runtimes.open_runtime`, pycaffe or opencv). Both
get the *identical* input tensor: the conversion maps the graph input to the Caffe input as it
is, so no preprocessing differs between the two sides.

Reported per graph output (the headline is the first, the classifier's logits): max abs error,
max relative error = max |caffe - source| / max |source|, the lowest cosine similarity per
input, and top-1 / top-5 agreement (caffezoo.validate.logit_metrics). With `layers=True`, every
IR value whose blob the prototxt has (the emitter names each value's blob after it and never
works in place; a net written by another tool is first rewritten out of place) is compared on the
first batch, in the order Caffe computes them; the first beyond the tolerance is the first
divergence.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from caffezoo import netio
from caffezoo.contract import InputContract
from caffezoo.errors import InputFileError, NetDefinitionError
from caffezoo.graph.context import sanitize
from caffezoo.graph.ir import Graph
from caffezoo.out_of_place import out_of_place
from caffezoo.validate import (
    DEFAULT_TOLERANCE,
    GraphRunner,
    comparison_lines,
    image_pixels,
    input_memory,
    logit_metrics,
    random_pixels,
    verdict,
)


@dataclass
class ValueDiff:
    value: str  # the IR value
    blob: str  # its Caffe blob
    layer: str  # the Caffe layer that writes it
    caffe_shape: list[int]
    source_shape: list[int]
    max_abs: float | None
    rel: float | None
    ok: bool


@dataclass
class OutputDiff:
    value: str
    blob: str
    max_abs: float
    max_rel: float
    max_source: float  # largest |source output|
    min_cosine: float
    top1_agree: int
    top5_agree: int
    ok: bool


@dataclass
class GraphReport:
    source: str
    backend: str
    prototxt: str
    weights: str
    inputs: str
    count: int
    input_shape: list[int]
    preprocessing: str
    outputs: list[OutputDiff]
    tolerance: float
    passed: bool
    layers: list[ValueDiff] | None = None
    first_divergence: str | None = None
    # the net's channel order when it takes the source's input with its channels reversed
    # (a graph conversion to BGR); "" when both sides get the identical tensor
    net_channels: str = ""

    @property
    def max_rel(self) -> float:
        return max(o.max_rel for o in self.outputs)

    @property
    def max_abs(self) -> float:
        return max(o.max_abs for o in self.outputs)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["max_abs"], d["max_rel"] = self.max_abs, self.max_rel
        return d

    def lines(self, all_layers: bool = False) -> list[str]:
        shape = "x".join(map(str, self.input_shape))
        out = [f"validate {self.prototxt} + {self.weights} with {self.backend} against "
               f"{self.source} (input {shape}): {verdict(self, 'value')}",
               f"  inputs: {self.inputs}",
               f"  both sides get the same tensor: {self.preprocessing}" if not self.net_channels
               else f"  the source gets {self.preprocessing}; the net the same tensor with its "
               f"channels reversed ({self.net_channels})"]
        for o in self.outputs:
            out.append(f"  output {o.value} (blob {o.blob}): max abs error {o.max_abs:.3g}, max "
                       f"relative error {o.max_rel:.3g} (largest |source| {o.max_source:.4g}), "
                       f"min cosine {o.min_cosine:.9f}")
            out.append(f"    top-1 agreement {o.top1_agree}/{self.count}, top-5 agreement "
                       f"{o.top5_agree}/{self.count}")
        out.append(f"  tolerance: relative error <= {self.tolerance:g}: "
                   f"{'pass' if all(o.ok for o in self.outputs) else 'FAIL'}")
        if self.layers is not None:
            out += comparison_lines("values", self.layers, self.first_divergence,
                                    ("value", "Caffe layer"), lambda d: (d.value, d.layer),
                                    all_layers)
        return out


# ---------------------------------------------------------------------------------------------
# inputs


def graph_inputs(runner: GraphRunner, images: str | Path | None = None,
                 random: int | None = None, seed: int = 0, limit: int | None = None,
                 contract: InputContract | None = None) -> tuple[np.ndarray, str, str]:
    """(N, C, H, W) input tensors of the source, what they are, and how they were made.

    Images are resized (short side to the contract's resize size, else H * 256/224),
    centre-cropped and normalised with `contract` (the net's, in the source's channel order),
    else the runner's `input_norm`; random inputs are seeded random images through the same
    normalisation, or standard normal tensors when neither states one."""
    _, c, h, w = (int(d) for d in runner.input_shape)
    norm = contract or runner.input_norm
    if images is not None:
        if norm is None:
            raise InputFileError(f"{images}: the source states no input normalisation, so "
                                 "images cannot be fed to it; use --random")
        if h != w or c != 3:
            raise InputFileError(f"{images}: images need a square 3-channel input, the net "
                                 f"takes {c}x{h}x{w}; use --random")
        base = (contract.resize_size if contract is not None and contract.crop_size == h
                else max(h, round(h * 256 / 224)))
        pixels, names = image_pixels(images, h, base, limit)
        return (norm.apply(pixels), f"{len(names)} images from {images} (resized to {base}, "
                f"centre {h}x{w})", norm.describe_normalization())
    n = 4 if random is None else random
    if limit is not None:
        n = min(n, limit)
    if n < 1:
        raise InputFileError(f"--random {n}: need at least one input")
    if norm is not None and c == 3 and h == w:
        return (norm.apply(random_pixels(n, h, seed)), f"{n} seeded random images "
                f"(seed {seed})", norm.describe_normalization())
    input_memory(n, (c, h, w))
    x = np.random.default_rng(seed).standard_normal((n, c, h, w)).astype(np.float32)
    return x, f"{n} seeded standard normal tensors (seed {seed})", "none (normal tensors)"


# ---------------------------------------------------------------------------------------------
# comparing


def _blob_of(value: str, blobs: dict[str, str], value_blobs: dict[str, str] | None
             ) -> str | None:
    """The Caffe blob of a source value: by the graph's mapping, else by name (`blobs`: the
    names a value may carry -> the blob)."""
    if value_blobs is not None and value in value_blobs:
        return value_blobs[value]
    for name in (value, sanitize(value)):
        if name in blobs:
            return blobs[name]
    return None


def _diff(got: np.ndarray, ref: np.ndarray) -> tuple[float | None, float | None]:
    if got.size != ref.size or got.shape[0] != ref.shape[0]:
        return None, None
    m = logit_metrics(got.reshape(ref.shape), ref)
    return m["max_abs"], m["max_rel"]


def validate_graph(runner: GraphRunner, prototxt: str | Path, weights: str | Path,
                   x: np.ndarray, inputs: str, source_spec: str, preprocessing: str = "",
                   backend: str = "pycaffe", tolerance: float = DEFAULT_TOLERANCE,
                   layers: bool = False, batch_size: int = 4,
                   graph: Graph | None = None, net_channels: str = "") -> GraphReport:
    """Run both sides on `x` (N, C, H, W source inputs) and compare (see the module doc).

    `graph` (the source's, optional) names the values to compare with `layers`; without it the
    runner is asked for every blob name (a runner ignores names that are not its values).
    `net_channels` (e.g. "BGR"): the net was converted to take the input channels reversed, so
    it gets `x` with its channel axis reversed."""
    from caffezoo.runtimes import open_runtime

    net = netio.read_prototxt(prototxt)
    in_place = any(set(layer.top) & set(layer.bottom) for layer in net.layer)
    with tempfile.TemporaryDirectory(prefix="caffezoo-validate-") as tmp:
        run_proto = Path(prototxt)
        if in_place:  # a net not written by the emitter: one blob per layer output first
            oop = out_of_place(net)
            net = oop.net
            run_proto = Path(tmp) / "out_of_place.prototxt"
            netio.write_prototxt(net, run_proto)
        rt = open_runtime(backend, run_proto, weights)
        want_shape = tuple(rt.input_shape[1:])
        if tuple(x.shape[1:]) != want_shape:
            raise NetDefinitionError(f"{prototxt}: the net takes (N, "
                                     f"{', '.join(map(str, want_shape))}) inputs, the source "
                                     f"gets {tuple(x.shape)}")
        # a source value's name -> the blob that holds it in the net that runs
        def names_for(source_names, final: bool = False) -> dict[str, str]:
            if in_place:
                return oop.value_names(source_names, final)
            return {b: b for b in rt.blob_names()}

        values = graph_values(graph) if graph is not None else []
        blobs = names_for(values)
        value_blobs = value_blobs_for(graph, blobs) if graph is not None else None
        writer = {t: layer.name for layer in net.layer for t in layer.top}
        order = {t: i for i, layer in enumerate(net.layer) for t in layer.top}
        caffe_out: dict[str, list[np.ndarray]] = {}
        src_out: dict[str, list[np.ndarray]] = {}
        out_blobs: dict[str, str] = {}
        # refused before the source runs a batch the runtime would refuse (memory, shapes)
        rt.check_batch_size(min(batch_size, len(x)))
        from caffezoo.progress import Progress

        bar = Progress(len(x), label="validate", unit="input", delay=1.0)
        for start in range(0, len(x), batch_size):
            chunk = x[start:start + batch_size]
            src = runner.run(chunk)
            if net_channels:
                chunk = np.ascontiguousarray(chunk[:, ::-1])
            if not out_blobs:
                finals = names_for(src, final=True)  # an output is a final value
                for value in src:
                    blob = _blob_of(value, finals, None)
                    if blob is None:
                        raise NetDefinitionError(f"{prototxt}: no blob for the source's output "
                                                 f"{value!r} (blobs are named after values)")
                    out_blobs[value] = blob
            got = rt.forward(chunk, sorted(set(out_blobs.values())))
            for value, blob in out_blobs.items():
                caffe_out.setdefault(value, []).append(got[blob])
                src_out.setdefault(value, []).append(np.asarray(src[value], np.float32))
            bar.update(len(chunk))
        outputs = []
        for value, blob in out_blobs.items():
            m = logit_metrics(np.concatenate(caffe_out[value]), np.concatenate(src_out[value]),
                              f"{prototxt}: output {value!r} (blob {blob!r})")
            outputs.append(OutputDiff(value, blob, m["max_abs"], m["max_rel"], m["max_logit"],
                                      m["min_cosine"], m["top1"], m["top5"],
                                      m["max_rel"] <= tolerance))
        report = GraphReport(
            source=source_spec, backend=backend, prototxt=str(prototxt), weights=str(weights),
            inputs=inputs, count=len(x), input_shape=[int(d) for d in x.shape[1:]],
            preprocessing=preprocessing or "as given", outputs=outputs, tolerance=tolerance,
            passed=all(o.ok for o in outputs), net_channels=net_channels)
        if layers:
            bar.note("value by value")
            flipped = None
            if net_channels:
                from caffezoo.graph.channels import reversed_values

                flipped = reversed_values(graph) if graph is not None else set()
            report.layers, report.first_divergence = _compare_values(
                runner, rt, x[:batch_size], names_for, value_blobs, writer, order, tolerance,
                flipped)
            if report.first_divergence is not None:
                report.passed = False
        bar.close()
    return report


def _compare_values(runner: GraphRunner, rt, x: np.ndarray, names_for,
                    value_blobs: dict[str, str] | None, writer: dict[str, str],
                    order: dict[str, int], tolerance: float,
                    flipped: set[str] | None = None) -> tuple[list[ValueDiff], str | None]:
    """`flipped`: the source values the net holds with their channels reversed (the input
    and per-channel ops on it, for a net converted to the other channel order), else None."""
    record = set(value_blobs) if value_blobs is not None else set(names_for((), False))
    src = runner.run(x, record)  # the outputs and the recorded values
    if flipped is not None:  # the net takes the input's channels reversed
        x = np.ascontiguousarray(x[:, ::-1])
    blobs = names_for(src)  # now that the source's names are known
    pairs = []
    for value in src:
        blob = _blob_of(value, blobs, value_blobs)
        if blob is not None and blob != rt.input_name:
            pairs.append((value, blob))
    pairs.sort(key=lambda p: order.get(p[1], 0))
    got = rt.forward(x, sorted({b for _, b in pairs}))
    diffs, first = [], None
    for value, blob in pairs:
        ref = np.asarray(src[value], np.float32)
        if flipped and value in flipped:
            ref = np.ascontiguousarray(ref[:, ::-1])
        max_abs, rel = _diff(got[blob], ref)
        ok = rel is not None and rel <= tolerance
        diffs.append(ValueDiff(value, blob, writer.get(blob, ""), list(got[blob].shape),
                               list(ref.shape), max_abs, rel, ok))
        if not ok and first is None:
            first = value
    return diffs, first



def value_blobs_for(graph: Graph, blobs: dict[str, str]) -> dict[str, str]:
    """IR value -> blob for every value of `graph` whose name, or sanitised name, the net has
    (`blobs`: names -> blob, see `_blob_of`): how a prototxt written by the emitter is matched
    to its graph without re-emitting it."""
    found = {v: _blob_of(v, blobs, None) for v in graph_values(graph)}
    return {v: b for v, b in found.items() if b is not None}


def graph_values(graph: Graph) -> list[str]:
    return [*graph.inputs, *(v for node in graph.nodes for v in node.outputs)]
