"""What a validation measured, for card and graph sources alike: one record per compared tensor
(`Diff`: a final output or an intermediate value), one `Report`, one verdict and one text.

Every tensor is measured the same way: max abs error, and max relative error = max |caffe -
source| / max |source|. A final output (the classifier's logits) also gets the lowest cosine
similarity per input and top-1 / top-5 agreement (same class; same set of five).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from caffezoo.errors import NetDefinitionError

DEFAULT_TOLERANCE = 1e-4
WORST_SHOWN = 5  # rows of a layer report without `--layers all`


@dataclass
class Diff:
    """One tensor both sides compute: the source's `source` (a module's input or output for a
    card source, an IR value for a graph source) against the Caffe blob that holds it."""

    source: str  # the source's name: a module (card sources) or an IR value (graph sources)
    part: str  # "output" or "input" of a module; "value" of a graph
    layer: str  # the Caffe layer that writes the blob
    blob: str
    caffe_shape: list[int]
    source_shape: list[int]
    max_abs: float | None  # None: the shapes differ
    max_rel: float | None
    ok: bool
    # final outputs only (None for intermediate values)
    max_source: float | None = None  # the largest |source value|
    min_cosine: float | None = None
    top1_agree: int | None = None
    top5_agree: int | None = None


@dataclass
class Report:
    source: str  # the --source given
    backend: str
    prototxt: str
    weights: str
    inputs: str  # what the inputs are, in words
    count: int
    input_shape: list[int]  # (C, H, W) of the net's input
    caffe_input: str  # how each side's input is made from the images, in words
    source_input: str
    mapping: str  # how the two relate
    outputs: list[Diff]
    tolerance: float
    passed: bool
    model: str | None = None  # the zoo card (card sources)
    layout: str | None = None  # the checkpoint's naming scheme (card sources)
    layers: list[Diff] | None = None  # with --layers, in the order Caffe computes them
    first_divergence: str | None = None  # the Caffe layer of the first that differs
    # a graph source's net converted to take the input channels reversed: its order ("BGR")
    net_channels: str = ""

    @property
    def max_rel(self) -> float:
        return max(o.max_rel for o in self.outputs)

    @property
    def max_abs(self) -> float:
        return max(o.max_abs for o in self.outputs)

    @property
    def first_bad(self) -> Diff | None:
        return next((d for d in self.layers or () if not d.ok), None)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["max_abs"], d["max_rel"] = self.max_abs, self.max_rel
        return d

    def lines(self, all_layers: bool = False) -> list[str]:
        h, w = self.input_shape[-2:]
        what = (f"{self.model} ({h}x{w})" if self.model
                else f"{self.prototxt} + {self.weights}")
        how = (f"{self.layout} layout" if self.layout
               else f"input {'x'.join(map(str, self.input_shape))}")
        out = [f"validate {what} with {self.backend} against {self.source} ({how}): "
               f"{verdict(self)}",
               f"  inputs: {self.inputs}",
               f"  Caffe input:  {self.caffe_input}",
               f"  source input: {self.source_input}",
               f"  mapping: {self.mapping}"]
        for o in self.outputs:
            out.append(f"  output {o.source} (blob {o.blob}): max abs error {o.max_abs:.3g}, "
                       f"max relative error {o.max_rel:.3g} (largest |source| "
                       f"{o.max_source:.4g}), min cosine {o.min_cosine:.9f}")
            out.append(f"    top-1 agreement {o.top1_agree}/{self.count}, top-5 agreement "
                       f"{o.top5_agree}/{self.count}")
        out.append(f"  tolerance: relative error <= {self.tolerance:g}: "
                   f"{'pass' if all(o.ok for o in self.outputs) else 'FAIL'}")
        if self.layers is not None:
            out += layer_lines(self.layers, self.first_divergence, all_layers)
        return out


def where(d: Diff) -> str:
    """A compared tensor in words: "layer 'conv1' (source layer1.0.conv1, output)"."""
    return f"layer {d.layer!r} (source {d.source}, {d.part})"


def verdict(report: Report) -> str:
    """PASS, or FAIL and why: the outputs over the tolerance, or the first divergent layer
    while the outputs agree."""
    if report.passed:
        return "PASS"
    first = report.first_bad
    if report.max_rel > report.tolerance or first is None:
        return "FAIL (the outputs differ)"
    return f"FAIL (the outputs agree, {where(first)} does not)"


def failure_line(weights, report: Report) -> str:
    """Why a report failed, in words that agree with its verdict: the outputs over the
    tolerance, or (outputs within it) the first compared layer that is not."""
    tolerance = f"tolerance {report.tolerance:g}"
    first = report.first_bad
    if report.max_rel > report.tolerance or first is None:
        return (f"{weights}: relative error {report.max_rel:.3g} of the outputs ({tolerance})"
                + (f"; first divergence at {where(first)}" if first is not None else ""))
    how = ("a shape that is not the source's" if first.max_rel is None
           else f"relative error {first.max_rel:.3g}")
    return (f"{weights}: the outputs agree (relative error {report.max_rel:.3g}, {tolerance}) "
            f"but {where(first)} does not ({how})")


def layer_lines(items: list[Diff], first: str | None, all_rows: bool = False) -> list[str]:
    """The layer-by-layer part of a report: how many were compared and where they first
    diverge, then a table (caffezoo.table) of the first divergent one and the WORST_SHOWN
    worst, in net order (every one with `all_rows`)."""
    from caffezoo.table import format_table

    bad = sum(1 for d in items if not d.ok)
    shown = list(items)
    if not all_rows:
        # a shape mismatch (max_rel None) counts as the worst
        worst = sorted(items, key=lambda d: -math.inf if d.max_rel is None else -d.max_rel)
        keep = {id(d) for d in worst[:WORST_SHOWN]}
        first_bad = next((d for d in items if not d.ok), None)
        if first_bad is not None:
            keep.add(id(first_bad))
        shown = [d for d in items if id(d) in keep]
    out = [f"  layers: {len(items)} compared, {bad} beyond the tolerance; first divergence: "
           f"{first or 'none'}"
           + ("" if all_rows or len(shown) == len(items) else
              f"; the worst {len(shown)} below (`--layers all` lists every one)")]
    rows = [(d.layer, d.part, d.source,
             *(("shape", f"{d.caffe_shape} vs source {d.source_shape}") if d.max_abs is None
               else (f"{d.max_abs:.3g}", f"{d.max_rel:.3g}")),
             "" if d.ok else "<-- differs") for d in shown]
    out.append(format_table(("layer", "part", "source", "max abs", "max rel", ""), rows,
                            align="lllrr", indent="    "))
    return out


# ---------------------------------------------------------------------------------------------
# measuring


def errors(caffe: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """(max abs error, max relative error) of `caffe` against `ref`, in float64."""
    diff = float(np.abs(caffe.astype(np.float64) - ref).max()) if ref.size else 0.0
    scale = float(np.abs(ref).max()) if ref.size else 0.0
    return diff, diff / scale if scale > 0 else (0.0 if diff == 0 else float("inf"))


def value_diff(source: str, part: str, layer: str, blob: str, got: np.ndarray,
               ref: np.ndarray, tolerance: float) -> Diff:
    """An intermediate value compared. A mismatch: another number of values, another batch,
    or two 4-D maps of different shapes (a flattened (N, K) against (N, K, 1, 1) is none)."""
    shapes = list(got.shape), list(ref.shape)
    if got.size != ref.size or got.shape[0] != ref.shape[0] or (
            got.ndim == ref.ndim == 4 and got.shape != ref.shape):
        return Diff(source, part, layer, blob, *shapes, None, None, False)
    max_abs, rel = errors(got.reshape(ref.shape), ref)
    return Diff(source, part, layer, blob, *shapes, max_abs, rel, rel <= tolerance)


def output_diff(source: str, layer: str, blob: str, caffe: np.ndarray, ref: np.ndarray,
                tolerance: float, what: str) -> Diff:
    """A final output compared over every input (`what` names it in the error when the net
    gives another shape than the source: a net that is not the source's)."""
    if caffe.size != ref.size or len(caffe) != len(ref):
        raise NetDefinitionError(f"{what}: the Caffe net gives shape {tuple(caffe.shape)}, the "
                                 f"source {tuple(ref.shape)}")
    shapes = list(caffe.shape), list(ref.shape)
    caffe = caffe.reshape(len(caffe), -1).astype(np.float64)
    ref = ref.reshape(len(ref), -1).astype(np.float64)
    max_abs, rel = errors(caffe, ref)
    cos = (caffe * ref).sum(1) / np.maximum(
        np.linalg.norm(caffe, axis=1) * np.linalg.norm(ref, axis=1), 1e-30)
    k = min(5, caffe.shape[1])
    top5 = [set(np.argsort(-c)[:k]) == set(np.argsort(-r)[:k])
            for c, r in zip(caffe, ref, strict=True)]
    return Diff(source, "output", layer, blob, *shapes, max_abs, rel, rel <= tolerance,
                max_source=float(np.abs(ref).max()), min_cosine=float(cos.min()),
                top1_agree=int((caffe.argmax(1) == ref.argmax(1)).sum()),
                top5_agree=int(sum(top5)))
