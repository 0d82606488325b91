"""The one comparison: a source and its converted Caffe net run on the same inputs
(validation/inputs.py), batch by batch; their final outputs compared over every input and, with
`layers`, every tensor both compute on the first batch, in the order Caffe computes them. The
first layer beyond the tolerance is the first divergence: the place to look.

The commands hand it a source (a `Side`: validation/card.py or validation/graph.py wraps the
converters' runner and says where each of its tensors lies in the net) and the net open in a
runtime (`open_caffe`). Caffe works in place (BatchNorm, Scale, ReLU overwrite the
convolution's blob), so for a layer pass such a net also runs rewritten with one blob per layer
output (caffezoo.out_of_place: same layers, same weights, the same results).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import numpy as np

from caffezoo import netio
from caffezoo.errors import NetDefinitionError
from caffezoo.out_of_place import OutOfPlace, out_of_place
from caffezoo.validation.inputs import Inputs
from caffezoo.validation.report import Diff, output_diff, value_diff


@dataclass
class ConvertedNet:
    """The converted net, open in a runtime; for a layer pass of a net that works in place, a
    second runtime runs it rewritten out of place (the outputs still come from the net as
    given: a backend that fuses layers may round the rewritten net differently)."""

    prototxt: str  # as given
    weights: str
    backend: str
    runtime: Any  # caffezoo.runtimes.Runtime of the net as given: the outputs
    given: Any  # the NetParameter of `prototxt`
    oop: OutOfPlace  # the net rewritten out of place (its names, whether or not it runs)
    layer_runtime: Any  # the layer pass: on oop.net when `rewritten`, else `runtime`
    rewritten: bool
    writer: dict[str, str] = field(default_factory=dict)  # blob -> the layer writing it last
    order: dict[str, int] = field(default_factory=dict)  # layer pass blob -> layer position

    def output_names(self) -> dict[str, str]:
        """The net's blobs by name (an output is a final value: a blob as the net ends)."""
        return {b: b for b in self.runtime.blob_names()}

    def names(self, source_names=(), final: bool = False) -> dict[str, str]:
        """The names a source may give the net's values -> the blob of the layer pass holding
        it (OutOfPlace.value_names)."""
        if self.rewritten:
            return self.oop.value_names(source_names, final)
        return {b: b for b in self.layer_runtime.blob_names()}

    def layer_of(self, blob: str) -> str:
        """The layer writing a blob of the layer pass."""
        return self.oop.producer.get(blob, "") if self.rewritten else self.writer.get(blob, "")


@contextmanager
def open_caffe(prototxt: str | Path, weights: str | Path, backend: str = "pycaffe",
               layers: bool = False) -> Iterator[ConvertedNet]:
    """The net of `prototxt` + `weights` in runtime `backend`; with `layers`, a net working in
    place also rewritten out of place for the layer pass."""
    from caffezoo.runtimes import open_runtime

    net = netio.read_prototxt(prototxt)
    oop = out_of_place(net)
    rewritten = layers and any(set(layer.top) & set(layer.bottom) for layer in net.layer)
    with tempfile.TemporaryDirectory(prefix="caffezoo-validate-") as tmp:
        rt = open_runtime(backend, prototxt, weights)
        layer_rt = rt
        if rewritten:
            path = Path(tmp) / "out_of_place.prototxt"
            netio.write_prototxt(oop.net, path)
            layer_rt = open_runtime(backend, path, weights)
        runs = oop.net if rewritten else net
        yield ConvertedNet(str(prototxt), str(weights), backend, rt, net, oop, layer_rt, rewritten,
                       {t: layer.name for layer in net.layer for t in layer.top},
                       {t: i for i, layer in enumerate(runs.layer) for t in layer.top})


class Point(NamedTuple):
    """A tensor both sides compute: the source's name and part, and the blob that holds it in
    the net that runs."""

    source: str
    part: str
    layer: str
    blob: str


class Side(Protocol):
    """A source runner as the engine sees it."""

    def outputs(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """The final outputs on `x`, by name."""

    def output_points(self, names: list[str], caffe: ConvertedNet) -> list[Point]:
        """Where the outputs `names` lie in the net."""

    def values(self, x: np.ndarray, caffe: ConvertedNet) -> list[tuple[Point, np.ndarray]]:
        """Every tensor of the source on `x` that the net also holds, with its point, in the
        order Caffe computes them."""


def compare(side: Side, caffe: ConvertedNet, inputs: Inputs, tolerance: float, layers: bool,
            batch_size: int) -> tuple[list[Diff], list[Diff] | None, str | None]:
    """(the outputs compared, the layers compared or None, the first divergent layer)."""
    from caffezoo.progress import Progress

    rt = caffe.runtime
    want = tuple(rt.input_shape[1:])
    if tuple(inputs.caffe.shape[1:]) != want:
        raise NetDefinitionError(f"{caffe.prototxt}: the net takes (N, "
                                 f"{', '.join(map(str, want))}) inputs, the source gets "
                                 f"{tuple(inputs.source.shape)}")
    n = len(inputs.caffe)
    # refused before the source runs a batch the runtime would refuse (memory, shapes)
    rt.check_batch_size(min(batch_size, n))
    bar = Progress(n, label="validate", unit="input", delay=1.0)
    points: list[Point] = []
    caffe_out: dict[str, list[np.ndarray]] = {}
    src_out: dict[str, list[np.ndarray]] = {}
    for start in range(0, n, batch_size):
        chunk = inputs.caffe[start:start + batch_size]
        src = side.outputs(inputs.source[start:start + batch_size])
        if not points:
            points = side.output_points(list(src), caffe)
        got = rt.forward(chunk, sorted({p.blob for p in points}))
        for p in points:
            caffe_out.setdefault(p.source, []).append(got[p.blob])
            src_out.setdefault(p.source, []).append(np.asarray(src[p.source], np.float32))
        bar.update(len(chunk))
    outputs = [output_diff(p.source, p.layer, p.blob, np.concatenate(caffe_out[p.source]),
                           np.concatenate(src_out[p.source]), tolerance,
                           f"{caffe.prototxt}: output {p.source!r} (blob {p.blob!r})")
               for p in points]
    if not layers:
        bar.close()
        return outputs, None, None
    bar.note("layer by layer")
    pairs = side.values(inputs.source[:batch_size], caffe)
    got = caffe.layer_runtime.forward(inputs.caffe[:batch_size],
                                      sorted({p.blob for p, _ in pairs}))
    diffs = [value_diff(p.source, p.part, p.layer, p.blob, got[p.blob], ref, tolerance)
             for p, ref in pairs]
    bar.close()
    first = next((d.layer for d in diffs if not d.ok), None)
    return outputs, diffs, first
