"""What the ONNX and PyTorch exporters share: the net as it runs in Caffe's TEST phase with its
weights checked and shaped (`ExportNet`), refusal of what has no exact export
(`ConversionError` naming the layer and type), BatchNorm(+Scale) folding into the convolution
before it, and pooling geometry with Caffe's rounding and divisor rules.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from caffezoo import analysis as _analysis
from caffezoo import geometry, netio
from caffezoo.errors import ConversionError, NetDefinitionError, WeightMismatchError

Shape = tuple[int, ...]
FLT_MAX = float(np.finfo(np.float32).max)
# Layer types both exporters handle: everything `caffezoo info` understands.
SUPPORTED_TYPES = frozenset(_analysis.SUPPORTED_TYPES)


@dataclass
class ExportNet:
    """A Caffe net ready to export: TEST-phase layers only (Silence kept, exporters skip it),
    modern form, no blobs in `net`; `weights` holds every layer's blobs as float32 arrays in the
    shapes the net implies."""

    net: netio.NetParameter
    weights: dict[str, list[np.ndarray]]
    analysis: _analysis.NetAnalysis
    source: str  # the file (or net name) named in error messages
    folded: list[str]  # BatchNorm/Scale layers folded into a convolution (fold_bn)
    # rewritten by export.fuse: blob names inside fused chains are gone, and the exporters
    # also trim zero kernel taps and broadcast flattened products (export/fuse.py)
    fused: bool = False
    fusions: dict[str, int] = field(default_factory=dict)  # what fuse rewrote, by kind

    def steps(self) -> Iterator[tuple[object, _analysis.LayerStats, list[Shape]]]:
        """(layer, its stats, its bottoms' shapes) in net order."""
        shapes: dict[str, Shape] = {}
        for layer, stats in zip(self.net.layer, self.analysis.layers, strict=True):
            yield layer, stats, [shapes[b] for b in layer.bottom]
            shapes.update(zip(layer.top, stats.out_shapes, strict=True))

    def fail(self, layer, reason: str) -> ConversionError:
        return conversion_error(self.source, layer, reason)

    @property
    def inputs(self) -> dict[str, Shape]:
        return dict(self.analysis.inputs)

    @property
    def outputs(self) -> list[str]:
        """The blobs the export returns: the net's outputs and what only Silence reads."""
        return self.analysis.results


def conversion_error(source: str, layer, reason: str) -> ConversionError:
    return ConversionError(f"{source}: layer '{layer.name}' ({layer.type}): {reason}")


def prepare(net: netio.NetParameter, weights: Mapping[str, Sequence[np.ndarray]] | None,
            source: str | None = None, input_shapes: Mapping[str, Sequence[int]] | None = None,
            fold_bn: bool = False, keep_blobs: bool = False) -> ExportNet:
    """Checks `net` (modern form, e.g. from netio.read_prototxt) and `weights` (layer -> blobs,
    e.g. netio.read_weights) for export. `input_shapes` replaces declared input shapes. With
    `fold_bn`, BatchNorm (+ the Scale after it) is folded into the convolution before it;
    `keep_blobs` folds only where they work in place, so that no blob name disappears."""
    source = source or f"net '{net.name}'"
    for layer in net.layer:
        if _analysis.in_test_phase(layer) and layer.type not in SUPPORTED_TYPES:
            raise conversion_error(source, layer, "layer type not supported for export "
                                   f"(supported: {', '.join(sorted(SUPPORTED_TYPES))})")
    try:
        stats = _analysis.analyze(net, input_shapes)
    except NetDefinitionError as err:
        raise NetDefinitionError(f"{source}: {err}") from None
    included = {s.name for s in stats.layers}
    test_net = _analysis.test_phase_net(net, stats)
    needs = [s.name for s in stats.layers if s.param_shapes]
    if weights is None:
        if needs:
            raise WeightMismatchError(f"{source}: no weights given, but layer '{needs[0]}' has "
                                      "learnable blobs")
        weights = {}
    try:
        fitted = netio.fit_weights(stats, weights)
    except WeightMismatchError as err:
        raise WeightMismatchError(f"weights do not fit {source}: {err}") from None
    fitted = {k: [np.asarray(b, dtype=np.float32, order="C") for b in v]
              for k, v in fitted.items() if k in included}
    for layer in test_net.layer:
        _check_exportable(source, layer)
    folded: list[str] = []
    if fold_bn:
        test_net, fitted, folded = fold_batch_norm(test_net, fitted, keep_blobs,
                                                   stats.blob_shapes)
        stats = _analysis.analyze(test_net, input_shapes)
    return ExportNet(test_net, fitted, stats, source, folded)


def from_files(prototxt: str | Path, weights: str | Path | None,
               input_shapes: Mapping[str, Sequence[int]] | None = None,
               fold_bn: bool = False) -> ExportNet:
    """`prepare` on files: any legacy form and pooling dialect netio reads."""
    net = netio.read_prototxt(prototxt)
    blobs = netio.read_weights(weights) if weights is not None else None
    return prepare(net, blobs, str(prototxt), input_shapes, fold_bn)


def _check_exportable(source: str, layer) -> None:
    """Parameters that have no exact export (the type itself is supported)."""
    t = layer.type
    if t in ("Convolution", "Deconvolution") and layer.convolution_param.axis not in (1, -3):
        # -3 is axis 1 of a 4-D input only; analysis already checked the axis range
        raise conversion_error(source, layer, "convolution over an axis other than 1")
    if t == "Pooling":
        if layer.pooling_param.pool == 2:
            raise conversion_error(source, layer, "STOCHASTIC pooling (Caffe has no CPU "
                                   "implementation of it either)")
        if len(layer.top) > 1:
            raise conversion_error(source, layer, "the argmax mask top of MAX pooling")


# -- BatchNorm folding -----------------------------------------------------------------------


def fold_batch_norm(net: netio.NetParameter, weights: dict[str, list[np.ndarray]],
                    keep_blobs: bool = False, shapes: Mapping[str, Shape] | None = None
                    ) -> tuple[netio.NetParameter, dict[str, list[np.ndarray]], list[str]]:
    """Folds each BatchNorm (global statistics) that reads a Convolution's output, and the
    per-channel Scale that reads the BatchNorm's output (or the convolution's, when there is no
    BatchNorm), into the convolution's weights and bias, computed in float64 and rounded to
    float32 once: the outputs differ from the unfolded net by float32 rounding only
    (docs/export.md states the measured difference).

    A step is folded only when the value it reads has no other reader. With `keep_blobs`, only
    in-place BatchNorm/Scale are folded (their blob keeps its final value); otherwise the
    convolution takes the last folded layer's top and the intermediate blob names disappear."""
    layers = list(net.layer)
    writer: dict[str, int] = {}
    readers: dict[tuple[str, int], list[int]] = defaultdict(list)
    reads: list[list[tuple[str, int]]] = []
    for i, layer in enumerate(layers):
        r = [(b, writer.get(b, -1)) for b in layer.bottom]
        for key in r:
            readers[key].append(i)
        reads.append(r)
        for top in layer.top:
            writer[top] = i
    shapes = shapes or _analysis.analyze(net).blob_shapes

    def sole_reader(i: int, top: str) -> int | None:
        found = readers.get((top, i), [])
        return found[0] if len(found) == 1 else None

    weights = dict(weights)
    removed: set[int] = set()
    new_top: dict[int, str] = {}
    folded: list[str] = []
    for i, conv in enumerate(layers):
        if conv.type != "Convolution" or len(conv.top) != 1:
            continue
        chain, a, shift = [], np.float64(1.0), np.float64(0.0)
        j = sole_reader(i, conv.top[0])
        if j is not None and _global_batch_norm(layers[j]) and \
                (not keep_blobs or layers[j].top[0] == conv.top[0]):
            bn = layers[j]
            mean, var, factor = (b.astype(np.float64) for b in weights[bn.name])
            f = 0.0 if factor[0] == 0 else 1.0 / factor[0]
            a = 1.0 / np.sqrt(var * f + np.float64(np.float32(bn.batch_norm_param.eps)))
            shift = -mean * f * a
            chain.append(j)
            j = sole_reader(j, bn.top[0])
        if j is not None and _per_channel_scale(layers[j], len(shapes[conv.top[0]])) and \
                (not keep_blobs or layers[j].top[0] == conv.top[0]):
            sc = layers[j]
            blobs = weights[sc.name]
            gamma = blobs[0].astype(np.float64)
            beta = blobs[1].astype(np.float64) if sc.scale_param.bias_term else 0.0
            a, shift = a * gamma, shift * gamma + beta
            chain.append(j)
        if not chain:
            continue
        blobs = weights[conv.name]
        w = blobs[0].astype(np.float64)
        b = blobs[1].astype(np.float64) if conv.convolution_param.bias_term else 0.0
        a = np.broadcast_to(a, (w.shape[0],))
        w = w * a.reshape((-1,) + (1,) * (w.ndim - 1))
        weights[conv.name] = [w.astype(np.float32),
                              np.broadcast_to(b * a + shift, (w.shape[0],)).astype(np.float32)]
        for k in chain:
            removed.add(k)
            weights.pop(layers[k].name, None)
            folded.append(layers[k].name)
        new_top[i] = layers[chain[-1]].top[0]
    out = netio.NetParameter()
    out.CopyFrom(net)
    del out.layer[:]
    for i, layer in enumerate(layers):
        if i in removed:
            continue
        kept = out.layer.add()
        kept.CopyFrom(layer)
        if i in new_top:
            kept.convolution_param.bias_term = True
            kept.top[0] = new_top[i]
    return out, weights, folded


def _per_channel_scale(layer, ndim: int) -> bool:
    p = layer.scale_param
    return (layer.type == "Scale" and len(layer.bottom) == 1 and p.axis in (1, 1 - ndim)
            and p.num_axes == 1)


def _global_batch_norm(layer) -> bool:
    """A BatchNorm that normalises with its stored statistics (Caffe's TEST phase default)."""
    p = layer.batch_norm_param
    return (layer.type == "BatchNorm" and len(layer.bottom) == 1
            and not (p.HasField("use_global_stats") and not p.use_global_stats))


# -- convolution -----------------------------------------------------------------------------


def trim_zero_taps(weight: np.ndarray, pads: Sequence[int], stride: Sequence[int],
                   dilation: Sequence[int], in_sizes: Sequence[int], out_sizes: Sequence[int]
                   ) -> tuple[np.ndarray, tuple[int, ...], tuple[int, ...]]:
    """(weight, pads at the start, pads at the end) of the same convolution without the
    all-zero rows/columns at the borders of its kernel, for a fused export (export/fuse.py).

    Caffe pads symmetrically, so an asymmetric padding (TF's SAME, stride 2) is written as a
    kernel grown by zero taps on the side with less padding (graph/ops_nn.py). Each tap removed
    at the start of an axis moves the windows' start by the dilation (one pad less there); at
    the end, the padding is what the last window still needs. A tap is removed only where the
    windows and the output size stay the same, so the result is the convolution's, less terms
    that were 0 * x."""
    spatial = weight.ndim - 2
    begin, end = list(pads), list(pads)
    for ax in range(spatial):
        axis = 2 + ax
        taps = weight.shape[axis]
        others = tuple(a for a in range(weight.ndim) if a != axis)
        live = np.flatnonzero(np.any(weight != 0, axis=others))
        if live.size == 0:
            continue
        d, s, n, o = dilation[ax], stride[ax], in_sizes[ax], out_sizes[ax]
        lead = min(int(live[0]), pads[ax] // d)
        keep = int(live[-1]) + 1 - lead  # taps left after the leading and trailing zeros
        if lead == 0 and keep == taps:
            continue
        b = pads[ax] - lead * d
        need = (o - 1) * s - b + (keep - 1) * d - n + 1  # end pad the last window reads
        e = max(need, 0)
        if (n + b + e - (keep - 1) * d - 1) // s + 1 != o:
            continue  # the output would grow: keep this axis as it is
        index = [slice(None)] * weight.ndim
        index[axis] = slice(lead, lead + keep)
        weight = weight[tuple(index)]
        begin[ax], end[ax] = b, e
    return np.ascontiguousarray(weight), tuple(begin), tuple(end)


# -- pooling ---------------------------------------------------------------------------------


@dataclass
class PoolGeometry:
    """A non-global Caffe pooling as floor-mode pooling over an explicitly padded input.

    `pad_begin`/`pad_end` (h, w) pad the input so that every output window lies inside the
    padded input (end padding covers ceil mode's extra window; it is 0 where floor rounding
    drops input instead). `factor` (OH, OW), for AVE only and None when it is all 1: what turns
    sum / (kh * kw) into Caffe's sum / divisor, where Caffe's divisor counts padding but stops
    at the padded border. `empty`: some window holds no input pixel (Caffe's MAX gives -FLT_MAX
    there; such windows exist only in ceil mode with stride > kernel)."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    pad_begin: tuple[int, int]
    pad_end: tuple[int, int]
    out: tuple[int, int]
    factor: np.ndarray | None
    empty: bool


def pool_geometry(layer, in_shape: Shape, out_shape: Shape) -> PoolGeometry:
    p = layer.pooling_param
    sizes, outs = in_shape[2:], out_shape[2:]
    w = geometry.pool_window(p, sizes)
    kernel, stride, pad = w.kernel, w.stride, w.pad
    ends, divisors, empty = [], [], False
    for n, k, s, pd, o in zip(sizes, kernel, stride, pad, outs, strict=True):
        last = (o - 1) * s - pd  # where the last window starts
        ends.append(max(last + k - n, 0))
        divisors.append(geometry.caffe_divisors(n, o, k, s, pd))
        empty = empty or last >= n
    factor = None
    if p.pool == 1:  # AVE
        divisor = np.multiply.outer(divisors[0], divisors[1]).astype(np.float64)
        area = kernel[0] * kernel[1]
        if np.any(divisor != area):
            with np.errstate(divide="ignore"):
                factor = (area / divisor).astype(np.float32)  # 1/0 -> inf: 0 * inf = NaN = 0/0
    return PoolGeometry(tuple(kernel), tuple(stride), tuple(pad), tuple(ends), tuple(outs),
                        factor, empty)


def canonical_axis(axis: int, ndim: int) -> int:
    return axis % ndim if -ndim <= axis < ndim else axis


def affine_blob_shape(in_shape: Shape, axis: int, blob_shape: Shape) -> tuple[int, ...]:
    """The shape to give a Scale/Bias blob (or second bottom) so that numpy broadcasting applies
    it over the input's axes [axis, axis + blob ndim), as Caffe does: trailing 1s."""
    axis = canonical_axis(axis, len(in_shape))
    trailing = len(in_shape) - axis - len(blob_shape)
    return tuple(blob_shape) + (1,) * trailing


def caffe_batch_norm_stats(blobs: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of a Caffe BatchNorm's blobs [mean*s, var*s, s] (s = 0: zeros)."""
    mean, var, factor = blobs
    f = np.float32(0.0) if factor.reshape(-1)[0] == 0 else np.float32(1.0) / factor.reshape(-1)[0]
    return (mean * f).astype(np.float32), (var * f).astype(np.float32)
