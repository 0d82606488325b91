"""Source vs converted: final outputs and, layer by layer, where they part.

The same images (decoded, resized, centre-cropped: 0..255 BGR pixels) go to both sides, each
with its own input convention: the source model gets its own normalisation (RGB for PyTorch
models), Caffe gets the zoo card's (BGR). So a pass proves the weights *and* the stated mapping
between the two preprocessings.

Reported on the logits (the classifier's output, before softmax):
- max abs error, and max relative error = max |caffe - source| / max |source logit|;
- cosine similarity per input (the lowest is shown);
- top-1 and top-5 agreement (same class; same set of five).

The tolerance (`DEFAULT_TOLERANCE`) is on the relative error: 1e-4. Exact conversions measure
6e-7 to 1.5e-5 (fp32 rounding in different convolution algorithms over 50-100 layers; the
largest on random inputs, whose logits are small; docs/conversion.md); a mistake (a channel swap,
ceil rounding, a missing padding fix) measures 1e-2 and more.

With `layers=True` every mapped source module is compared with its Caffe layer: a convolution's
input and output, a batch norm's output (after Scale), a pooling's output, the classifier's input
and output. Caffe works in place (BatchNorm, Scale, ReLU overwrite the convolution's blob), so the
net is first rewritten with a fresh blob per layer output (same layers, same weights, same
results). The first layer, in Caffe's order, whose output differs beyond the tolerance is the
first divergence: the place to look.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from caffezoo import netio
from caffezoo.card_plan import Op, Plan
from caffezoo.contract import InputContract, input_affine
from caffezoo.errors import InputFileError, NetDefinitionError
from caffezoo.out_of_place import OutOfPlace, out_of_place

DEFAULT_TOLERANCE = 1e-4
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".tif", ".tiff", ".webp")


# ---------------------------------------------------------------------------------------------
# what validation is handed: a source ready to run (the converters' runners implement these)


@dataclass
class SourceRun:
    """What a card runner's run() returns."""

    logits: np.ndarray  # (N, classes): the classifier's output
    records: dict[str, tuple[np.ndarray, np.ndarray]]  # module -> (input, output)


class CardRunner(Protocol):
    """A card source ready to run: its plan names the modules `run` can record."""

    plan: Plan
    input_norm: InputContract  # what run() expects
    effective_norm: InputContract  # what the first convolution sees

    def run(self, x: np.ndarray, record: set[str] | None = None) -> SourceRun: ...


class GraphRunner(Protocol):
    """A graph source ready to run; `record` names graph values to return besides outputs."""

    input_shape: tuple[int, ...]
    input_norm: InputContract | None  # how images become its input; None: unknown

    def run(self, x: np.ndarray, record: set[str] | None = None) -> dict[str, np.ndarray]: ...


# ---------------------------------------------------------------------------------------------
# inputs


def eval_base_size(card, size: int) -> int:
    """The resize-before-crop size for a centre crop of `size` (one rule: ModelCard.contract)."""
    return card.contract(size).resize_size


def image_pixels(folder: str | Path, size: int, base: int, limit: int | None = None
                 ) -> tuple[np.ndarray, list[str]]:
    """Centre crops (N, 3, size, size) of the images in `folder` (sorted by name), as float32
    BGR pixels 0..255: short side resized to `base`, then the centre `size` x `size`."""
    from caffezoo.evaluation.dataset import load_image
    from caffezoo.evaluation.preprocess import center_crop, resize_short_side

    folder = Path(folder)
    if not folder.is_dir():
        raise InputFileError(f"{folder}: not a folder of images")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if limit is not None:
        files = files[:limit]
    if not files:
        raise InputFileError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)})")
    input_memory(len(files), (3, size, size))
    from caffezoo.progress import steps

    crops = [center_crop(resize_short_side(load_image(str(f)), base), size)
             for f in steps(files, label="reading images", unit="img", delay=1.0)]
    batch = np.stack(crops).astype(np.float32).transpose(0, 3, 1, 2)
    return np.ascontiguousarray(batch), [f.name for f in files]


def input_memory(n: int, shape: tuple[int, ...]) -> None:
    """Refuses `n` inputs of `shape` that would not fit in memory: they are held as float32
    three times over (as made, normalised for each side)."""
    from caffezoo import memory

    memory.check(3 * 4 * n * math.prod(shape),
                 f"{n} inputs of {'x'.join(map(str, shape))} (--random, --images)")


def random_pixels(n: int, size: int, seed: int = 0) -> np.ndarray:
    """`n` seeded random images (N, 3, size, size), BGR 0..255: smooth colour gradients with
    noise, so that both borders and interiors carry signal."""
    input_memory(n, (3, size, size))
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / max(1, size - 1)
    out = np.empty((n, 3, size, size), np.float32)
    for i in range(n):
        for c in range(3):
            a, b, base = rng.uniform(-120, 120, 3)
            field = 127.5 + base * 0.5 + a * (xx - 0.5) + b * (yy - 0.5)
            out[i, c] = np.clip(field + rng.normal(0, 40, (size, size)), 0, 255)
    return out


# ---------------------------------------------------------------------------------------------
# the report


@dataclass
class LayerDiff:
    layer: str  # the Caffe layer whose output is compared
    blob: str
    module: str  # the source module
    what: str  # "output", "input", ...
    caffe_shape: list[int]
    source_shape: list[int]
    max_abs: float | None
    rel: float | None
    ok: bool


@dataclass
class Report:
    model: str
    input_size: int
    source: str
    layout: str
    backend: str
    prototxt: str
    weights: str
    inputs: str
    count: int
    caffe_preprocessing: str
    source_preprocessing: str
    mapping: str
    max_abs: float
    max_rel: float
    max_logit: float
    min_cosine: float
    top1_agree: int
    top5_agree: int
    tolerance: float
    passed: bool
    layers: list[LayerDiff] | None = None
    first_divergence: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self, all_layers: bool = False) -> list[str]:
        out = [
            f"validate {self.model} ({self.input_size}x{self.input_size}) with "
            f"{self.backend} against {self.source} ({self.layout} layout): "
            f"{verdict(self, 'layer')}",
            f"  inputs: {self.inputs}",
            f"  Caffe input:  {self.caffe_preprocessing} (zoo card)",
            f"  source input: {self.source_preprocessing}",
            f"  mapping: {self.mapping}",
            f"  logits: max abs error {self.max_abs:.3g}, max relative error {self.max_rel:.3g} "
            f"(largest |logit| {self.max_logit:.4g}), min cosine {self.min_cosine:.9f}",
            f"  top-1 agreement {self.top1_agree}/{self.count}, top-5 agreement "
            f"{self.top5_agree}/{self.count}",
            f"  tolerance: relative error <= {self.tolerance:g}: "
            f"{'pass' if self.max_rel <= self.tolerance else 'FAIL'}",
        ]
        if self.layers is not None:
            out += comparison_lines("layers", self.layers, self.first_divergence,
                                    ("layer", "part", "source module"),
                                    lambda d: (d.layer, d.what, d.module), all_layers)
        return out


def verdict(report, unit: str) -> str:
    """PASS, or FAIL and why: the outputs over the tolerance, or the first divergent `unit`
    (a layer, a value) while the outputs agree."""
    if report.passed:
        return "PASS"
    if report.max_rel > report.tolerance or report.first_divergence is None:
        return "FAIL (the outputs differ)"
    return f"FAIL (the outputs agree, {unit} {report.first_divergence!r} does not)"


WORST_SHOWN = 5  # rows of a layer report without `--layers all`


def comparison_lines(label: str, items, first: str | None, header: tuple[str, ...],
                     columns, all_rows: bool = False) -> list[str]:
    """The layer-by-layer part of a report (a card's layers, a graph's values): how many were
    compared and where they first diverge, then a table (caffezoo.table) of the first
    divergent item and the WORST_SHOWN worst, in net order (every item with `all_rows`):
    `columns(item)` gives its leading cells (named by `header`), the item (`max_abs`, `rel`,
    `ok`, `caffe_shape`, `source_shape`) the error."""
    from caffezoo.table import format_table

    bad = sum(1 for d in items if not d.ok)
    shown = list(items)
    if not all_rows:
        # a shape mismatch (rel None) counts as the worst
        worst = sorted(items, key=lambda d: -math.inf if d.rel is None else -d.rel)
        keep = {id(d) for d in worst[:WORST_SHOWN]}
        first_bad = next((d for d in items if not d.ok), None)
        if first_bad is not None:
            keep.add(id(first_bad))
        shown = [d for d in items if id(d) in keep]
    out = [f"  {label}: {len(items)} compared, {bad} beyond the tolerance; first divergence: "
           f"{first or 'none'}"
           + ("" if all_rows or len(shown) == len(items) else
              f"; the worst {len(shown)} below (`--layers all` lists every one)")]
    rows = [(*columns(d),
             *(("shape", f"{d.caffe_shape} vs source {d.source_shape}") if d.max_abs is None
               else (f"{d.max_abs:.3g}", f"{d.rel:.3g}")),
             "" if d.ok else "<-- differs") for d in shown]
    align = "l" * len(header) + "rr"
    out.append(format_table((*header, "max abs", "max rel", ""), rows, align=align,
                            indent="    "))
    return out


def _rel(caffe: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    diff = float(np.abs(caffe.astype(np.float64) - ref).max()) if ref.size else 0.0
    scale = float(np.abs(ref).max()) if ref.size else 0.0
    return diff, diff / scale if scale > 0 else (0.0 if diff == 0 else float("inf"))


def logit_metrics(caffe: np.ndarray, ref: np.ndarray, what: str = "the outputs"
                  ) -> dict[str, float]:
    if caffe.size != ref.size or len(caffe) != len(ref):  # a net that is not the source's
        raise NetDefinitionError(f"{what}: the Caffe net gives shape {tuple(caffe.shape)}, the "
                                 f"source {tuple(ref.shape)}")
    caffe = caffe.reshape(len(caffe), -1).astype(np.float64)
    ref = ref.reshape(len(ref), -1).astype(np.float64)
    max_abs, rel = _rel(caffe, ref)
    cos = (caffe * ref).sum(1) / np.maximum(
        np.linalg.norm(caffe, axis=1) * np.linalg.norm(ref, axis=1), 1e-30)
    k = min(5, caffe.shape[1])
    top5 = [set(np.argsort(-c)[:k]) == set(np.argsort(-r)[:k]) for c, r in zip(caffe, ref,
                                                                                  strict=True)]
    return {"max_abs": max_abs, "max_rel": rel, "max_logit": float(np.abs(ref).max()),
            "min_cosine": float(cos.min()),
            "top1": int((caffe.argmax(1) == ref.argmax(1)).sum()), "top5": int(sum(top5))}


def _references(plan: Plan, zoo_net, oop: OutOfPlace) -> list[tuple[str, str, str, str, str]]:
    """(caffe layer, caffe blob, module, what, 'in'|'out') for every comparable point, in the
    order Caffe computes the blobs."""
    zoo_tops = {layer.name: list(layer.top) for layer in zoo_net.layer}
    refs = []
    for a in plan.assigns:
        if not a.source:
            continue
        layer = a.layers[-1] if a.op == Op.BN else a.layers[0]
        if layer not in oop.tops:
            continue
        if a.op in (Op.CONV, Op.LINEAR):
            bottom = oop.bottoms[layer][0]
            producer = oop.producer.get(bottom)
            if producer is not None and oop.types[producer] != "Input":
                refs.append((producer, bottom, a.source, "input", "in"))
            refs.append((layer, oop.tops[layer][0], a.source, "output", "out"))
        elif a.op == Op.BN:
            refs.append((layer, oop.tops[layer][0], a.source, "output", "out"))
        elif a.op == Op.POOL:
            blob = oop.consumed(zoo_tops.get(layer, [""])[0], layer) or oop.tops[layer][0]
            refs.append((layer, blob, a.source, "output", "out"))
    # one entry per blob; a pooling's output is also the next convolution's input: keep the
    # pooling's name
    chosen: dict[str, tuple[str, str, str, str, str]] = {}
    for r in refs:
        old = chosen.get(r[1])
        if old is None or (old[3] == "input" and r[3] == "output"):
            chosen[r[1]] = r
    return sorted(chosen.values(), key=lambda r: oop.index[oop.producer.get(r[1], r[0])])


def _record_set(plan: Plan) -> set[str]:
    return {a.source for a in plan.assigns if a.source and a.op in (*Op.WEIGHTED, Op.POOL)}


def compare_layers(source: CardRunner, zoo_net, prototxt: str | Path, weights: str | Path,
                   backend: str, caffe_x: np.ndarray, src_x: np.ndarray,
                   tolerance: float) -> tuple[list[LayerDiff], str | None]:
    from caffezoo.runtimes import open_runtime

    net = netio.read_prototxt(prototxt)
    oop = out_of_place(net)
    refs = _references(source.plan, zoo_net, oop)
    run = source.run(src_x, _record_set(source.plan))
    with tempfile.TemporaryDirectory(prefix="caffezoo-validate-") as tmp:
        path = Path(tmp) / "out_of_place.prototxt"
        netio.write_prototxt(oop.net, path)
        rt = open_runtime(backend, path, weights)
        blobs = rt.forward(caffe_x, sorted({r[1] for r in refs}))
    diffs: list[LayerDiff] = []
    first = None
    for layer, blob, module, what, side in refs:
        rec = run.records.get(module)
        if rec is None:
            continue
        ref = rec[0] if side == "in" else rec[1]
        got = blobs[blob]
        if ref.size == got.size and ref.shape[0] == got.shape[0] and (
                ref.shape == got.shape or ref.ndim == 2 or got.ndim == 2):
            max_abs, rel = _rel(got.reshape(ref.shape), ref)
            ok = rel <= tolerance
            d = LayerDiff(layer, blob, module, what, list(got.shape), list(ref.shape),
                          max_abs, rel, ok)
        else:
            d = LayerDiff(layer, blob, module, what, list(got.shape), list(ref.shape), None,
                          None, False)
        diffs.append(d)
        if not d.ok and first is None:
            first = layer
    return diffs, first


def validate(source: CardRunner, card, zoo_net, prototxt: str | Path, weights: str | Path,
             pixels: np.ndarray, inputs: str, source_spec: str, backend: str = "pycaffe",
             tolerance: float = DEFAULT_TOLERANCE, layers: bool = False,
             batch_size: int = 4) -> Report:
    """Run both sides on `pixels` (N, 3, S, S) BGR 0..255 and compare (see the module doc)."""
    from caffezoo.runtimes import open_runtime

    card_norm = card.contract(int(pixels.shape[-1]))
    affine = input_affine(source.effective_norm, card.mean, card.std)
    mapping = ("card mean/std = the source's normalisation, channels reversed"
               if affine is None else "card mean/std differ from the source's; the "
               "conversion must have folded the difference into the first convolution")
    rt = open_runtime(backend, prototxt, weights)
    classifier = next(a.layers[0] for a in source.plan.assigns if a.op == Op.LINEAR)
    caffe_logits, src_logits = [], []
    rt.check_batch_size(min(batch_size, len(pixels)))  # before the source runs such a batch
    from caffezoo.progress import Progress

    bar = Progress(len(pixels), label="validate", unit="img", delay=1.0)
    for start in range(0, len(pixels), batch_size):
        chunk = pixels[start:start + batch_size]
        caffe_logits.append(rt.forward(card_norm.apply(chunk), [classifier])[classifier])
        src_logits.append(source.run(source.input_norm.apply(chunk)).logits)
        bar.update(len(chunk))
    m = logit_metrics(np.concatenate(caffe_logits), np.concatenate(src_logits),
                      f"{prototxt}: layer {classifier!r}")
    report = Report(
        model=card.name, input_size=int(pixels.shape[-1]), source=source_spec,
        layout=source.plan.layout, backend=backend, prototxt=str(prototxt), weights=str(weights),
        inputs=inputs, count=len(pixels), caffe_preprocessing=card_norm.describe_normalization(),
        source_preprocessing=source.input_norm.describe_normalization()
        + ("" if source.input_norm == source.effective_norm
           else " (the model turns it into "
           f"{source.effective_norm.describe_normalization()})"),
        mapping=mapping, max_abs=m["max_abs"], max_rel=m["max_rel"], max_logit=m["max_logit"],
        min_cosine=m["min_cosine"], top1_agree=m["top1"], top5_agree=m["top5"],
        tolerance=tolerance, passed=m["max_rel"] <= tolerance)
    if layers:
        bar.note("layer by layer")
        chunk = pixels[:batch_size]
        report.layers, report.first_divergence = compare_layers(
            source, zoo_net, prototxt, weights, backend, card_norm.apply(chunk),
            source.input_norm.apply(chunk), tolerance)
        if report.first_divergence is not None:
            report.passed = False
    bar.close()
    return report


def default_prototxt(weights: str | Path) -> Path | None:
    """OUT.prototxt beside OUT.caffemodel, as `caffezoo convert` writes them."""
    p = Path(weights).with_suffix(".prototxt")
    return p if p.exists() else None
