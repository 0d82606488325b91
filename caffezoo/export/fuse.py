"""Fusions for the exported backends: the layer patterns that stand for one op are rewritten
into that op, so that ONNX Runtime, OpenVINO and PyTorch run what the source framework ran.

Stock Caffe lacks ReLU6, Clip, HardSwish, HardSigmoid, SiLU, broadcasting arithmetic and a
channel shuffle, so the graph emitter (caffezoo/graph/) writes each as an exact chain of stock
layers, and Caffe authors did the same by hand. Exported layer by layer, such a chain costs a
pass over memory per layer (EfficientNet-Lite0's ReLU6 as ReLU + 3 Power + Eltwise MAX: 2.8x
slower in ONNX Runtime than its source). `fuse` rewrites the chains into the Caffe layer types
that say what they compute, which both exporters (export/onnx.py, export/torch.py) translate
into the ONNX or torch op of the same name:

  ReLU / Clip / ReLU6 -> ... -> Clip       clip(lo, hi) as ReLU, max with a constant blob
                                           (Eltwise MAX with Power(scale 0)) and negation
                                           (Power(scale -1)): one Clip
  Power(scale a, shift b) -> Clip(0, 1)    HardSigmoid(a, b)
  x * clip(x + 3, 0, 6) * 1/6              HardSwish (also x * HardSigmoid(x; 1/6, 1/2))
  x * Sigmoid(x)                           Swish (SiLU)
  big + Scale(Power(big, scale 0, shift 1), small)
                                           Bias(big, small): OpenCV's broadcast add/sub
  1x1 convolution with a permutation matrix of a channel shuffle
                                           Reshape -> Permute -> Reshape
  BatchNorm (+ Scale) not after a convolution
                                           one per-channel Scale with bias
  Convolution -> BatchNorm -> Scale, Convolution -> Scale
                                           folded into the convolution (export_net.fold_batch_norm)

Every rewrite is exact (negation, max and min are exact; a permutation copies values) or one
float32 rounding away from the chain (the folded affine maps, HardSigmoid's a*x+b as one
expression, HardSwish's order of operations): outputs equal the Caffe net's within fp32 noise,
tests/export/test_fuse.py measures it against real Caffe. Two more are done by the exporters on a
fused net (`ExportNet.fused`): a convolution whose kernel was grown by zero rows or columns to
express asymmetric padding loses them again, with the padding made asymmetric (the ONNX pads,
or an explicit pad in torch; export_net.trim_zero_taps), and a broadcast product with an
(N, C, 1, 1) value that the emitter flattened to (N, C) for Caffe's Scale uses the (N, C, 1, 1)
value directly. What is left to the ONNX optimiser (onnxslim, in export/onnx.py `optimise`) is
what it does itself: identities, shared slices of one value, dead outputs.

A chain is rewritten only where its intermediate values have no other reader and are not net
outputs; intermediate blob names disappear, so the runtimes use a fused net only for requests
of the net's outputs (docs/export.md).
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from caffezoo import analysis as _analysis
from caffezoo import netio
from caffezoo.export import export_net
from caffezoo.export.export_net import ExportNet
from caffezoo.proto import caffe_pb2

_INF = math.inf


def fuse(ex: ExportNet) -> ExportNet:
    """`ex` with its chains rewritten (module docstring); `ExportNet.fused` is set and
    `ExportNet.fusions` counts the rewrites by kind."""
    g = _Graph(list(ex.net.layer), ex.weights, set(ex.outputs), ex.analysis.blob_shapes)
    counts: dict[str, int] = defaultdict(int)
    changed = True
    while changed:  # a rewrite can complete another rule's pattern (clip pieces merge)
        changed = False
        for kind, rule in _RULES:
            i = 0
            while i < len(g.layers):
                rewrite = rule(g, i)
                if rewrite is not None and g.apply(rewrite):
                    counts[kind] += 1
                    changed = True
                else:
                    i += 1
    out = netio.NetParameter()
    out.CopyFrom(ex.net)
    del out.layer[:]
    out.layer.extend(g.layers)
    # last: a permutation conv must be seen before a BatchNorm after it is folded into it
    out, weights, folded = export_net.fold_batch_norm(out, g.weights, keep_blobs=False,
                                                shapes=_analysis.analyze(out, ex.inputs)
                                                .blob_shapes)
    counts["folded into a convolution"] = len(folded)
    stats = _analysis.analyze(out, ex.inputs)
    for blob in ex.outputs:  # the rewrites keep every output and its shape
        if stats.blob_shapes.get(blob) != ex.analysis.blob_shapes[blob]:
            raise AssertionError(f"{ex.source}: fusion changed output '{blob}'")
    return ExportNet(out, weights, stats, ex.source, ex.folded + folded, fused=True,
                     fusions={k: v for k, v in counts.items() if v})


# -- the net as values, writers and readers --------------------------------------------------

Value = tuple[str, int]  # (blob, index of the layer that wrote it)


@dataclass
class _Rewrite:
    """Replace the layer at `at` by `layers`, delete `remove`; `reads` are the values the new
    layers read (bottom blob -> value), which must still be current at `at`."""

    at: int
    layers: list
    remove: set[int]
    reads: dict[str, Value] = field(default_factory=dict)
    weights: dict[str, list[np.ndarray]] = field(default_factory=dict)


class _Graph:
    def __init__(self, layers, weights, outputs: set[str], shapes) -> None:
        self.layers = layers
        self.weights = dict(weights)
        self.outputs = outputs
        self.shapes = dict(shapes)
        self._index()

    def _index(self) -> None:
        self.writers: dict[str, list[int]] = defaultdict(list)
        self.readers: dict[Value, list[int]] = defaultdict(list)
        for i, layer in enumerate(self.layers):
            for b in layer.bottom:
                self.readers[self.value_at(i, b)].append(i)
            for top in layer.top:
                self.writers[top].append(i)
        self.names = {la.name for la in self.layers}

    def value_at(self, i: int, blob: str, skip: set[int] = frozenset()) -> Value:
        """The value of `blob` that layer i reads (its last writer before i, `skip` ignored)."""
        ws = self.writers.get(blob, [])
        k = bisect.bisect_left(ws, i) - 1
        while k >= 0 and ws[k] in skip:
            k -= 1
        return (blob, ws[k] if k >= 0 else -1)

    def input(self, i: int, k: int = 0) -> tuple[object | None, Value]:
        """(the layer that wrote bottom k of layer i, or None for a net input; that value)."""
        value = self.value_at(i, self.layers[i].bottom[k])
        return (self.layers[value[1]] if value[1] >= 0 else None), value

    def sole_reader(self, value: Value) -> int | None:
        """The one layer reading `value`, when it is not also a net output."""
        blob, w = value
        found = self.readers.get(value, [])
        if len(found) != 1 or (blob in self.outputs and self.writers[blob][-1] == w):
            return None
        return found[0]

    def feeds_only(self, value: Value, j: int) -> bool:
        return self.sole_reader(value) == j

    def unique_name(self, want: str) -> str:
        name, n = want, 1
        while name in self.names:
            name, n = f"{want}_{n}", n + 1
        self.names.add(name)
        return name

    def apply(self, rw: _Rewrite) -> bool:
        skip = rw.remove | {rw.at}
        for blob, value in rw.reads.items():
            if self.value_at(rw.at, blob, skip) != value:
                return False  # a removed layer rewrote it in place meanwhile: keep the chain
        for i in sorted(rw.remove | {rw.at}):
            self.weights.pop(self.layers[i].name, None)
        self.weights.update(rw.weights)
        keep = [la for i, la in enumerate(self.layers) if i not in rw.remove and i != rw.at]
        at = rw.at - sum(1 for i in rw.remove if i < rw.at)
        self.layers = keep[:at] + list(rw.layers) + keep[at:]
        self._index()
        return True


# -- building layers -------------------------------------------------------------------------


def _layer(name: str, type_: str, bottoms, tops):
    layer = caffe_pb2.LayerParameter()
    layer.name, layer.type = name, type_
    layer.bottom.extend(bottoms)
    layer.top.extend(tops)
    return layer


def _clip_layer(name: str, x: str, top: str, lo: float, hi: float):
    if lo == 0.0 and hi == _INF:
        return _layer(name, "ReLU", [x], [top])
    layer = _layer(name, "Clip", [x], [top])
    layer.clip_param.min, layer.clip_param.max = lo, hi
    return layer


def _f32(v: float) -> float:
    return float(np.float32(v))


def _is_power(layer, scale: float | None = None, shift: float | None = None,
              power: float = 1.0) -> bool:
    """A Power layer with these parameters (None: any), compared as float32."""
    if layer is None or layer.type != "Power" or len(layer.bottom) != 1:
        return False
    p = layer.power_param
    return (p.power == _f32(power) and (scale is None or p.scale == _f32(scale))
            and (shift is None or p.shift == _f32(shift)))


def _clip_bounds(layer) -> tuple[float, float] | None:
    """(lo, hi) of a layer that clamps its input: Clip, ReLU and ReLU6 without a slope."""
    if layer is None or len(layer.bottom) != 1:
        return None
    if layer.type == "Clip":
        return float(layer.clip_param.min), float(layer.clip_param.max)
    if layer.type == "ReLU" and layer.relu_param.negative_slope == 0:
        return 0.0, _INF
    if layer.type == "ReLU6" and layer.relu6_param.negative_slope == 0:
        return 0.0, float(layer.relu6_param.threshold)
    return None


# -- the rules: each looks at layer i as the LAST layer of its pattern ------------------------


def _max_with_constant(g: _Graph, i: int) -> _Rewrite | None:
    """Eltwise MAX(x, c) where c = Power(scale 0, shift s) of anything shaped like x:
    Clip(x, s^power, inf)."""
    la = g.layers[i]
    if la.type != "Eltwise" or la.eltwise_param.operation != 2 or len(la.bottom) != 2:
        return None
    for k in (0, 1):
        const, cv = g.input(i, k)
        other, xv = g.input(i, 1 - k)
        if (const is not None and const.type == "Power" and const.power_param.scale == 0
                and g.feeds_only(cv, i) and cv[0] != xv[0]
                and g.shapes.get(cv[0]) == g.shapes.get(xv[0])):
            p = const.power_param
            c = float(np.float32(p.shift) ** np.float32(p.power)) if p.power != 1 else p.shift
            return _Rewrite(i, [_clip_layer(la.name, xv[0], la.top[0], c, _INF)],
                            {cv[1]}, {xv[0]: xv})
    return None


def _negated_clip(g: _Graph, i: int) -> _Rewrite | None:
    """-clip(-x, lo, hi) = clip(x, -hi, -lo)."""
    la = g.layers[i]
    if not _is_power(la, scale=-1.0, shift=0.0):
        return None
    mid, mv = g.input(i)
    bounds = _clip_bounds(mid)
    if bounds is None or not g.feeds_only(mv, i):
        return None
    neg, nv = g.input(mv[1])
    if not _is_power(neg, scale=-1.0, shift=0.0) or not g.feeds_only(nv, mv[1]):
        return None
    _, xv = g.input(nv[1])
    lo, hi = bounds
    return _Rewrite(i, [_clip_layer(la.name, xv[0], la.top[0], -hi, -lo)], {mv[1], nv[1]},
                    {xv[0]: xv})


def _merged_clip(g: _Graph, i: int) -> _Rewrite | None:
    """clip(clip(x, a, b), c, d) = clip(x, max(a, c), min(b, d)) where the ranges overlap."""
    la = g.layers[i]
    outer = _clip_bounds(la)
    if outer is None:
        return None
    first, fv = g.input(i)
    inner = _clip_bounds(first)
    if inner is None or not g.feeds_only(fv, i):
        return None
    lo, hi = max(inner[0], outer[0]), min(inner[1], outer[1])
    if lo > hi:
        return None
    _, xv = g.input(fv[1])
    return _Rewrite(i, [_clip_layer(la.name, xv[0], la.top[0], lo, hi)], {fv[1]}, {xv[0]: xv})


def _hard_sigmoid(g: _Graph, i: int) -> _Rewrite | None:
    """clip(a * x + b, 0, 1) = HardSigmoid(a, b)."""
    la = g.layers[i]
    if _clip_bounds(la) != (0.0, 1.0) or la.type != "Clip":
        return None
    lin, lv = g.input(i)
    if not _is_power(lin) or lin.power_param.scale == 0 or not g.feeds_only(lv, i):
        return None
    _, xv = g.input(lv[1])
    new = _layer(la.name, "HardSigmoid", [xv[0]], [la.top[0]])
    new.hardsigmoid_param.alpha = lin.power_param.scale
    new.hardsigmoid_param.beta = lin.power_param.shift
    return _Rewrite(i, [new], {lv[1]}, {xv[0]: xv})


def _product_of(g: _Graph, i: int, gate: Callable, reads_x: Callable | None = None
                ) -> tuple[Value, Value] | None:
    """For an Eltwise PROD of x and f(...) at i, where f's layer passes `gate`, feeds only
    the product and reads x (or, with `reads_x`, reads_x(g, index of f, value of x) holds):
    (value of x, value of f)."""
    la = g.layers[i]
    if la.type != "Eltwise" or la.eltwise_param.operation != 0 or len(la.bottom) != 2:
        return None
    for k in (0, 1):
        f, fv = g.input(i, k)
        _, xv = g.input(i, 1 - k)
        if f is None or not gate(f) or not g.feeds_only(fv, i):
            continue
        if (reads_x(g, fv[1], xv) if reads_x else g.input(fv[1])[1] == xv):
            return xv, fv
    return None


def _hard_swish(g: _Graph, i: int) -> _Rewrite | None:
    """x * clip(x + 3, 0, 6) * (1/6), or x * HardSigmoid(x; 1/6, 1/2): HardSwish."""
    la = g.layers[i]
    remove: set[int] = set()
    if _is_power(la, scale=1.0 / 6.0, shift=0.0):  # the emitter's stock form
        prod, pv = g.input(i)
        if prod is None or not g.feeds_only(pv, i):
            return None
        def plus3_of_x(g: _Graph, c: int, xv: Value) -> bool:
            plus3, sv = g.input(c)
            return (_is_power(plus3, scale=1.0, shift=3.0) and g.feeds_only(sv, c)
                    and g.input(sv[1])[1] == xv)

        found = _product_of(g, pv[1], lambda f: _clip_bounds(f) == (0.0, 6.0), plus3_of_x)
        if found is None:
            return None
        xv, cv = found
        remove = {pv[1], cv[1], g.input(cv[1])[1][1]}
    else:
        def gate(f) -> bool:
            p = f.hardsigmoid_param
            return (f.type == "HardSigmoid" and p.alpha == _f32(1 / 6) and p.beta == 0.5)

        found = _product_of(g, i, gate)
        if found is None:
            return None
        xv, hv = found
        remove = {hv[1]}
    return _Rewrite(i, [_layer(la.name, "HardSwish", [xv[0]], [la.top[0]])], remove,
                    {xv[0]: xv})


def _swish(g: _Graph, i: int) -> _Rewrite | None:
    """x * Sigmoid(x): Swish (beta 1), i.e. SiLU."""
    found = _product_of(g, i, lambda f: f.type == "Sigmoid")
    if found is None:
        return None
    xv, sv = found
    la = g.layers[i]
    return _Rewrite(i, [_layer(la.name, "Swish", [xv[0]], [la.top[0]])], {sv[1]}, {xv[0]: xv})


def _broadcast_sum(g: _Graph, i: int) -> _Rewrite | None:
    """big +- Scale(ones, small) with ones = Power(big, scale 0, shift 1): the small value
    spread over big's shape and added (the emitter's form for OpenCV, which has no Bias):
    Bias(big, small) on axis 0, negating first where the sum has coefficients [1, -1]."""
    la = g.layers[i]
    p = la.eltwise_param
    coeff = list(p.coeff) or [1.0, 1.0]
    if la.type != "Eltwise" or p.operation != 1 or len(la.bottom) != 2 or \
            coeff not in ([1.0, 1.0], [1.0, -1.0]):
        return None
    for k in (0, 1):
        spread, sv = g.input(i, k)
        _, bv = g.input(i, 1 - k)
        if spread is None or spread.type != "Scale" or len(spread.bottom) != 2 or \
                spread.scale_param.bias_term or not g.feeds_only(sv, i):
            continue
        ones, ov = g.input(sv[1], 0)
        _, small = g.input(sv[1], 1)
        if not (_is_power(ones, scale=0.0, shift=1.0) and g.feeds_only(ov, sv[1])
                and g.input(ov[1])[1] == bv):
            continue
        layers, x, y = [], bv[0], small[0]
        if coeff[1] == -1.0:  # big - spread: negate small; spread - big: negate big
            neg = g.unique_name(f"{la.name}/negate")
            src = y if k == 1 else x
            layers.append(_layer(neg, "Power", [src], [neg]))
            layers[-1].power_param.scale = -1.0
            x, y = (x, neg) if k == 1 else (neg, y)
        bias = _layer(la.name, "Bias", [x, y], [la.top[0]])
        bias.bias_param.axis = spread.scale_param.axis
        layers.append(bias)
        return _Rewrite(i, layers, {sv[1], ov[1]}, {bv[0]: bv, small[0]: small})
    return None


def _channel_shuffle(g: _Graph, i: int) -> _Rewrite | None:
    """A 1x1 convolution whose weight permutes channels as a shuffle of g groups does
    (reshape to (N, g, C/g, ...), swap the two, reshape back): those three steps."""
    la = g.layers[i]
    p = la.convolution_param
    if la.type != "Convolution" or p.group != 1 or len(la.bottom) != 1:
        return None
    blobs = g.weights.get(la.name, [])
    if not blobs or blobs[0].ndim != 4 or blobs[0].shape[2:] != (1, 1) or \
            (p.bias_term and np.any(blobs[1])):
        return None
    shape = g.shapes.get(la.top[0])
    w = blobs[0][:, :, 0, 0]
    c = w.shape[0]
    if w.shape != (c, c) or shape is None or len(shape) != 4 or \
            shape != g.shapes.get(la.bottom[0]) or not np.array_equal(w, w.astype(bool)):
        return None
    if not np.all(w.sum(axis=1) == 1):
        return None
    source = w.argmax(axis=1)
    groups = next((k for k in range(2, c) if c % k == 0 and np.array_equal(
        source, (np.arange(c) % k) * (c // k) + np.arange(c) // k)), None)
    if groups is None:
        return None
    _, xv = g.input(i)
    n, _, h, wd = shape
    split, swapped = g.unique_name(f"{la.name}/groups"), g.unique_name(f"{la.name}/swapped")
    first = _layer(split, "Reshape", [xv[0]], [split])
    first.reshape_param.shape.dim.extend([0, groups, c // groups, h * wd])
    swap = _layer(swapped, "Permute", [split], [swapped])
    swap.permute_param.order.extend([0, 2, 1, 3])
    back = _layer(la.name, "Reshape", [swapped], [la.top[0]])
    back.reshape_param.shape.dim.extend([0, c, h, wd])
    return _Rewrite(i, [first, swap, back], set(), {xv[0]: xv})


def _affine_batch_norm(g: _Graph, i: int) -> _Rewrite | None:
    """BatchNorm with stored statistics (and the per-channel Scale after it) that no
    convolution absorbed: one Scale with bias, y = x * a + b, computed in float64."""
    la = g.layers[i]
    scale = None
    if len(la.top) != 1:
        return None
    if export_net._per_channel_scale(la, len(g.shapes.get(la.top[0], ()))):
        bn, bv = g.input(i)
        if bn is None or not export_net._global_batch_norm(bn) or not g.feeds_only(bv, i):
            return None
        scale, bn_at = la, bv[1]
    elif export_net._global_batch_norm(la) and len(g.shapes.get(la.top[0], ())) >= 2:
        bn, bn_at = la, i
        reader = g.sole_reader((la.top[0], i))
        if reader is not None and export_net._per_channel_scale(
                g.layers[reader], len(g.shapes[la.top[0]])):
            return None  # matched from the Scale
    else:
        return None
    conv, cv = g.input(bn_at)
    if conv is not None and conv.type == "Convolution" and g.feeds_only(cv, bn_at):
        return None  # folded into the convolution at the end, in one rounding
    blobs = export_net.caffe_batch_norm_stats(g.weights[bn.name])
    mean, var = (v.astype(np.float64) for v in blobs)
    a = 1.0 / np.sqrt(var + np.float64(np.float32(bn.batch_norm_param.eps)))
    b = -mean * a
    if scale is not None:
        blobs = g.weights[scale.name]
        gamma = blobs[0].astype(np.float64).reshape(-1)
        beta = blobs[1].astype(np.float64).reshape(-1) if scale.scale_param.bias_term else 0.0
        a, b = a * gamma, b * gamma + beta
    _, xv = g.input(bn_at)
    new = _layer(la.name, "Scale", [xv[0]], [la.top[0]])
    new.scale_param.bias_term = True
    weights = {la.name: [a.astype(np.float32), np.broadcast_to(b, a.shape).astype(np.float32)]}
    return _Rewrite(i, [new], {bn_at} - {i}, {xv[0]: xv}, weights)


_RULES: list[tuple[str, Callable[[_Graph, int], _Rewrite | None]]] = [
    ("max with a constant -> Clip", _max_with_constant),
    ("negated clip -> Clip", _negated_clip),
    ("clip of a clip -> Clip", _merged_clip),
    ("Power + Clip(0, 1) -> HardSigmoid", _hard_sigmoid),
    ("-> HardSwish", _hard_swish),
    ("x * Sigmoid(x) -> Swish", _swish),
    ("broadcast sum -> Bias", _broadcast_sum),
    ("channel shuffle -> Reshape/Permute/Reshape", _channel_shuffle),
    ("BatchNorm (+ Scale) -> Scale", _affine_batch_norm),
]
