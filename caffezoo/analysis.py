"""Shape inference, parameter and MAC counts of a Caffe net, layer by layer, without Caffe.

`analyze(net)` walks a `NetParameter` in order (TEST phase), computes every top blob's shape with
the rules of Caffe's own `Reshape` functions (pooling rounding and the pad edge rule included),
the shape of every blob a layer owns, and the work it does. What is counted (docs/info.md):

- `params`: learnable weights: Convolution/Deconvolution/InnerProduct weights and biases, Scale
  and Bias blobs, PReLU slopes. This matches published parameter counts (PyTorch's
  `numel()` of parameters), since a Caffe BatchNorm's gamma/beta live in the Scale after it.
- `stats`: BatchNorm's three blobs (mean, variance, scale factor): stored in the .caffemodel
  but not learned, so counted separately, like PyTorch's buffers.
- `macs`: multiply-accumulates of Convolution, Deconvolution and InnerProduct only, for the whole
  declared batch, bias additions not counted: the convention of torchvision's and most papers'
  GMACs figures. Every other layer reports 0.

Errors (unknown layer type, unknown bottom, shapes that do not fit) raise `NetDefinitionError`
naming the layer.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from caffezoo import geometry
from caffezoo.errors import NetDefinitionError, WeightMismatchError

Shape = tuple[int, ...]


@dataclass
class LayerStats:
    """One layer: its blobs' shapes and what it costs."""

    name: str
    type: str
    bottoms: list[str]
    tops: list[str]
    out_shapes: list[Shape]
    params: int = 0  # learnable weights (see the module docstring)
    macs: int = 0  # multiply-accumulates (Convolution, Deconvolution, InnerProduct only)
    stats: int = 0  # non-learned stored values (BatchNorm statistics)
    # Every blob Caffe allocates for the layer, in Caffe's order (e.g. weight, bias): what a
    # .caffemodel must hold for it.
    param_shapes: list[Shape] = field(default_factory=list)


@dataclass
class NetAnalysis:
    """The result of `analyze`."""

    name: str
    layers: list[LayerStats]
    blob_shapes: dict[str, Shape]  # every top blob (the last shape of an in-place blob)
    inputs: dict[str, Shape]
    outputs: list[str]  # blobs no later layer consumes
    # blobs whose last value only Silence layers read (a deploy net may end in Silence)
    silenced: list[str] = field(default_factory=list)

    @property
    def results(self) -> list[str]:
        """What the net computes for its user: its outputs, then the blobs only a Silence
        layer reads (Caffe counts those as consumed; an export or a runtime exposes them)."""
        return [*self.outputs, *(b for b in self.silenced if b not in self.outputs)]

    @property
    def total_params(self) -> int:
        return sum(s.params for s in self.layers)

    @property
    def total_macs(self) -> int:
        return sum(s.macs for s in self.layers)

    @property
    def total_stats(self) -> int:
        return sum(s.stats for s in self.layers)

    def layer(self, name: str) -> LayerStats:
        for stats in self.layers:
            if stats.name == name:
                return stats
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (shapes as lists)."""
        return {
            "name": self.name,
            "inputs": {k: list(v) for k, v in self.inputs.items()},
            "outputs": {k: list(self.blob_shapes[k]) for k in self.outputs},
            "silenced": {k: list(self.blob_shapes[k]) for k in self.silenced},
            "layers": [
                {"name": s.name, "type": s.type, "bottoms": s.bottoms, "tops": s.tops,
                 "out_shapes": [list(x) for x in s.out_shapes], "params": s.params,
                 "macs": s.macs, "stats": s.stats,
                 "param_shapes": [list(x) for x in s.param_shapes]}
                for s in self.layers
            ],
            "total_params": self.total_params,
            "total_macs": self.total_macs,
            "total_stats": self.total_stats,
        }


def analyze(net, input_shapes: Mapping[str, Sequence[int]] | None = None) -> NetAnalysis:
    """Infer shapes, parameter and MAC counts of `net` (a `NetParameter`) for the TEST phase.

    `input_shapes` maps input blob names to shapes that replace the declared ones."""
    if len(net.layers) and not len(net.layer):
        raise NetDefinitionError(f"net '{net.name}': old V1 'layers' entries; read the file with "
                                 "caffezoo.netio, which upgrades them")
    overrides = {k: _shape(v) for k, v in (input_shapes or {}).items()}
    shapes: dict[str, Shape] = {}
    available: dict[str, None] = {}  # ordered set: blobs not consumed yet
    silenced: dict[str, None] = {}  # ordered set: blobs consumed by Silence layers only
    inputs: dict[str, Shape] = {}
    layers: list[LayerStats] = []
    names: set[str] = set()
    shared: dict[str, tuple[str, Shape]] = {}  # ParamSpec name -> (owner layer, blob shape)

    # Legacy net-level inputs (netio upgrades them, but a raw message may still have them).
    for i, blob in enumerate(net.input):
        declared = _legacy_input_shape(net, i, blob)
        shape = overrides.get(blob, declared)
        if shape is None:
            raise NetDefinitionError(f"input '{blob}': no shape declared")
        shapes[blob] = inputs[blob] = shape
        available[blob] = None

    for layer in net.layer:
        if not in_test_phase(layer):
            continue
        name, type_ = layer.name, layer.type
        if name in names:
            raise NetDefinitionError(f"layer '{name}': duplicate layer name")
        names.add(name)
        for bottom in layer.bottom:
            if bottom not in shapes:
                raise NetDefinitionError(f"layer '{name}' ({type_}): unknown bottom blob "
                                         f"'{bottom}'")
        for top in layer.top:
            if top in shapes and top not in layer.bottom:
                raise NetDefinitionError(f"layer '{name}' ({type_}): top blob '{top}' is "
                                         "already produced by an earlier layer")
        if len(set(layer.top)) != len(layer.top):
            raise NetDefinitionError(f"layer '{name}' ({type_}): names a top blob twice")
        bottoms = [shapes[b] for b in layer.bottom]
        if type_ == "Input":
            result = _input(layer, overrides)
            inputs.update(zip(layer.top, result.out_shapes, strict=True))
        else:
            handler = _HANDLERS.get(type_)
            if handler is None:
                raise NetDefinitionError(f"layer '{name}': unsupported layer type '{type_}'")
            result = handler(_Ctx(layer, bottoms))
        _check_top_count(layer)  # after the handler: Caffe checks the bottoms first
        if len(result.out_shapes) != len(layer.top):
            raise NetDefinitionError(f"layer '{name}' ({type_}): produces "
                                     f"{len(result.out_shapes)} tops, {len(layer.top)} named")
        for top, shape in zip(layer.top, result.out_shapes, strict=True):
            if any(d <= 0 for d in shape):
                raise NetDefinitionError(f"layer '{name}' ({type_}): output shape "
                                         f"{_fmt(shape)} is empty")
            _check_blob_size(layer, f"top blob '{top}'", shape)
        for i, shape in enumerate(result.param_shapes):
            _check_blob_size(layer, f"blob {i}", shape)
        if result.buffer:
            _check_blob_size(layer, "its work buffer", (result.buffer,))
        _check_in_place(layer, bottoms, result.out_shapes)
        _check_param_specs(layer, result.param_shapes, shared)
        for top, shape in zip(layer.top, result.out_shapes, strict=True):
            shapes[top] = shape
        for bottom in layer.bottom:
            if available.pop(bottom, 0) is None and type_ == "Silence":
                silenced[bottom] = None
            elif type_ != "Silence":
                silenced.pop(bottom, None)
        for top in layer.top:
            available[top] = None
            silenced.pop(top, None)
        learnable = [s for s, is_stat in zip(result.param_shapes, result.stat_mask(),
                                             strict=True) if not is_stat]
        stat = [s for s, is_stat in zip(result.param_shapes, result.stat_mask(), strict=True)
                if is_stat]
        layers.append(LayerStats(
            name=name, type=type_, bottoms=list(layer.bottom), tops=list(layer.top),
            out_shapes=list(result.out_shapes), params=sum(_count(s) for s in learnable),
            macs=result.macs, stats=sum(_count(s) for s in stat),
            param_shapes=list(result.param_shapes)))

    unknown = set(overrides) - set(inputs)
    if unknown:
        raise NetDefinitionError(f"net '{net.name}': no input blob named "
                                 f"{', '.join(sorted(unknown))} (inputs: "
                                 f"{', '.join(inputs) or 'none'})")
    return NetAnalysis(name=net.name, layers=layers, blob_shapes=shapes, inputs=inputs,
                       outputs=list(available),
                       silenced=[b for b in silenced if b not in inputs])


def nchw_input(net, where) -> tuple[int, ...]:
    """The shape of the net's one input, which must be NCHW (`where` names the net in the
    error)."""
    inputs = analyze(net).inputs
    if len(inputs) != 1 or len(next(iter(inputs.values()))) != 4:
        raise NetDefinitionError(f"{where}: expected one NCHW input, found "
                                 f"{', '.join(f'{k} {v}' for k, v in inputs.items()) or 'none'}")
    (shape,) = inputs.values()
    return tuple(int(d) for d in shape)


def test_phase_net(net, analysis: NetAnalysis):
    """A copy of `net` holding only the layers `analysis` includes (the TEST phase), without
    their include/exclude rules and blobs: the net a runtime loads or an export translates."""
    included = {s.name for s in analysis.layers}
    out = type(net)()
    out.CopyFrom(net)
    del out.layer[:]
    for layer in net.layer:
        if layer.name in included:
            kept = out.layer.add()
            kept.CopyFrom(layer)
            kept.ClearField("include")
            kept.ClearField("exclude")
            del kept.blobs[:]
    return out


def input_names(net) -> list[str]:
    """The net's input blobs (Input layers' tops and legacy net-level inputs), in order."""
    names = list(net.input)
    for layer in net.layer:
        if layer.type == "Input" and in_test_phase(layer):
            names.extend(layer.top)
    return names


# -- weights ------------------------------------------------------------------------------


@dataclass
class BlobMismatch:
    """A blob of the weights that does not fit the net (None: the blob is absent)."""

    layer: str
    index: int
    expected: Shape | None
    actual: Shape | None

    def describe(self) -> str:
        if self.actual is None:
            return (f"layer '{self.layer}': blob {self.index} missing "
                    f"(prototxt implies {_fmt(self.expected)})")
        if self.expected is None:
            return (f"layer '{self.layer}': unexpected blob {self.index} with shape "
                    f"{_fmt(self.actual)} (the layer has no such blob)")
        return (f"layer '{self.layer}': blob {self.index} has shape {_fmt(self.actual)} "
                f"but the prototxt implies {_fmt(self.expected)}")


@dataclass
class WeightReport:
    """How a set of weights fits a net (see `check_weights`)."""

    matched: list[str]  # layers whose blobs all fit
    mismatches: list[BlobMismatch]
    missing: list[str]  # layers that own blobs but have no weights (Caffe keeps their fillers)
    unused: list[str]  # weight entries for layers the net does not have (Caffe ignores them)

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def raise_for_mismatch(self, source: str = "weights") -> None:
        """Raise `WeightMismatchError` naming the first mismatched layer and both shapes."""
        if self.mismatches:
            more = len(self.mismatches) - 1
            tail = f" (and {more} more mismatched blob{'s' if more > 1 else ''})" if more else ""
            raise WeightMismatchError(f"{source}: {self.mismatches[0].describe()}{tail}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "matched": len(self.matched),
            "mismatches": [
                {"layer": m.layer, "blob": m.index,
                 "expected": None if m.expected is None else list(m.expected),
                 "actual": None if m.actual is None else list(m.actual),
                 "message": m.describe()} for m in self.mismatches],
            "missing": self.missing,
            "unused": self.unused,
        }


def check_weights(analysis: NetAnalysis, weights: Mapping[str, Sequence[Any]]) -> WeightReport:
    """Compare weights (layer name -> blobs, anything with `.shape`, e.g. from
    `netio.read_weights`) with the blob shapes the net implies, as Caffe's
    `CopyTrainedLayersFrom` does: a layer's blob count and every shape must match. Shapes from old
    files in legacy 4-D form (leading 1s, e.g. an InnerProduct weight (1, 1, out, in)) match as
    Caffe matches them."""
    matched, mismatches, missing = [], [], []
    for stats in analysis.layers:
        blobs = weights.get(stats.name)
        if blobs is None or len(blobs) == 0:
            if stats.param_shapes:
                missing.append(stats.name)
            continue
        found = []
        for i in range(max(len(stats.param_shapes), len(blobs))):
            expected = stats.param_shapes[i] if i < len(stats.param_shapes) else None
            actual = tuple(int(d) for d in blobs[i].shape) if i < len(blobs) else None
            if expected is None or actual is None or not _same_blob_shape(expected, actual):
                found.append(BlobMismatch(stats.name, i, expected, actual))
        if found:
            mismatches.extend(found)
        else:
            matched.append(stats.name)
    known = {s.name for s in analysis.layers}
    unused = [name for name, blobs in weights.items() if name not in known and len(blobs)]
    return WeightReport(matched=matched, mismatches=mismatches, missing=missing, unused=unused)


def _same_blob_shape(expected: Shape, actual: Shape) -> bool:
    if expected == actual:
        return True
    # Caffe's Blob::ShapeEquals accepts a legacy num/channels/height/width blob when the shape,
    # padded with leading 1s to 4 axes, is the same.
    if len(actual) == 4 and len(expected) <= 4:
        return (1,) * (4 - len(expected)) + expected == actual
    return False


# -- the per-layer rules -----------------------------------------------------------------


@dataclass
class _Result:
    out_shapes: list[Shape]
    param_shapes: list[Shape] = field(default_factory=list)
    macs: int = 0
    stat_blobs: int = 0  # how many of the last param_shapes are statistics, not weights
    buffer: int = 0  # values of Caffe's largest internal buffer (convolution's im2col)

    def stat_mask(self) -> list[bool]:
        n = len(self.param_shapes)
        return [i >= n - self.stat_blobs for i in range(n)]


@dataclass
class _Ctx:
    layer: Any  # LayerParameter
    bottoms: list[Shape]

    def fail(self, message: str) -> NetDefinitionError:
        return NetDefinitionError(f"layer '{self.layer.name}' ({self.layer.type}): {message}")

    def expect_bottoms(self, low: int, high: int | None = None) -> None:
        n = len(self.bottoms)
        high = low if high is None else high
        if n < low or (high >= 0 and n > high):
            want = str(low) if low == high else (f"{low} or more" if high < 0
                                                 else f"{low} to {high}")
            raise self.fail(f"takes {want} bottom blob(s), got {n}")

    def axis(self, axis: int, ndim: int) -> int:
        """Caffe's CanonicalAxisIndex: -ndim <= axis < ndim."""
        if not -ndim <= axis < ndim:
            raise self.fail(f"axis {axis} is out of range for a {ndim}-D blob")
        return axis % ndim


def _input(layer, overrides: Mapping[str, Shape]) -> _Result:
    ctx = _Ctx(layer, [])
    ctx.expect_bottoms(0)
    declared = [_shape(s.dim) for s in layer.input_param.shape]
    if len(declared) not in (0, 1, len(layer.top)):
        raise ctx.fail(f"{len(declared)} shapes for {len(layer.top)} tops")
    out = []
    for i, top in enumerate(layer.top):
        shape = overrides.get(top) or (declared[0] if len(declared) == 1 else
                                       declared[i] if declared else None)
        if shape is None:
            raise ctx.fail(f"no shape declared for input '{top}'")
        out.append(shape)
    return _Result(out)


def _legacy_input_shape(net, i: int, blob: str) -> Shape | None:
    if len(net.input_shape) > i:
        return _shape(net.input_shape[i].dim)
    if len(net.input_dim) >= 4 * (i + 1):
        return _shape(net.input_dim[4 * i: 4 * i + 4])
    return None


def _convolution(ctx: _Ctx, transposed: bool = False) -> _Result:
    ctx.expect_bottoms(1)
    p = ctx.layer.convolution_param
    shape = ctx.bottoms[0]
    axis = ctx.axis(p.axis, len(shape))
    n = len(shape) - axis - 1
    if n < 1:
        raise ctx.fail(f"needs spatial axes after the channel axis, input is {_fmt(shape)}")
    try:
        window = geometry.conv_window(p, n)
    except geometry.GeometryError as err:
        raise ctx.fail(str(err)) from None
    kernel, stride, pad, dilation = window.kernel, window.stride, window.pad, window.dilation
    channels, group, num_output = shape[axis], p.group, p.num_output
    if num_output <= 0:
        raise ctx.fail("num_output must be positive")
    if group <= 0 or channels % group or num_output % group:
        raise ctx.fail(f"group {group} must divide input channels {channels} and num_output "
                       f"{num_output}")
    spatial = []
    for size, k, s, pd, d in zip(shape[axis + 1:], kernel, stride, pad, dilation, strict=True):
        extent = d * (k - 1) + 1
        if transposed:
            spatial.append(geometry.deconv_out(size, k, s, pd, d))
        else:
            if size + 2 * pd < extent:
                raise ctx.fail(f"kernel extent {extent} is larger than the padded input "
                               f"{size + 2 * pd} (input {_fmt(shape)})")
            spatial.append(geometry.conv_out(size, k, s, pd, d))
    out = shape[:axis] + (num_output,) + tuple(spatial)
    if transposed:
        weight = (channels, num_output // group, *kernel)
        macs = _count(shape) * (num_output // group) * math.prod(kernel)
    else:
        weight = (num_output, channels // group, *kernel)
        macs = _count(out) * (channels // group) * math.prod(kernel)
    blobs = [weight] + ([(num_output,)] if p.bias_term else [])
    # Caffe's im2col buffer (one image): kernel_dim * group rows, one column per output pixel
    # (per input pixel for Deconvolution); it is a Blob, so it too must count below 2^31.
    pixels = math.prod(shape[axis + 1:] if transposed else spatial)
    one_by_one = all(k == 1 for k in kernel) and all(s == 1 for s in stride) and not any(pad)
    buffer = 0 if one_by_one else (num_output if transposed else channels) * math.prod(
        kernel) * pixels
    return _Result([out], blobs, macs, buffer=buffer)


def _pooling(ctx: _Ctx) -> _Result:
    ctx.expect_bottoms(1)
    p = ctx.layer.pooling_param
    shape = ctx.bottoms[0]
    if len(shape) != 4:
        raise ctx.fail(f"needs a 4-D input (N, C, H, W), got {_fmt(shape)}")
    height, width = shape[2], shape[3]
    try:
        w = geometry.pool_window(p, (height, width))
    except geometry.GeometryError as err:
        raise ctx.fail(str(err)) from None
    out = geometry.caffe_pooled_hw(w, (height, width))
    for size, k, pd, pooled in zip((height, width), w.kernel, w.pad, out, strict=True):
        if pooled <= 0:
            raise ctx.fail(f"kernel {k} does not fit the padded input {size + 2 * pd} "
                           f"(input {_fmt(shape)})")
    top = (shape[0], shape[1], out[0], out[1])
    if len(ctx.layer.top) > 2:
        raise ctx.fail("has at most two tops (output and mask)")
    return _Result([top] * len(ctx.layer.top))


def _inner_product(ctx: _Ctx) -> _Result:
    ctx.expect_bottoms(1)
    p = ctx.layer.inner_product_param
    shape = ctx.bottoms[0]
    axis = ctx.axis(p.axis, len(shape))
    if p.num_output <= 0:
        raise ctx.fail("num_output must be positive")
    k = math.prod(shape[axis:])
    weight = (k, p.num_output) if p.transpose else (p.num_output, k)
    blobs = [weight] + ([(p.num_output,)] if p.bias_term else [])
    macs = math.prod(shape[:axis]) * k * p.num_output
    return _Result([shape[:axis] + (p.num_output,)], blobs, macs)


def _batch_norm(ctx: _Ctx) -> _Result:
    ctx.expect_bottoms(1)
    shape = ctx.bottoms[0]
    channels = 1 if len(shape) == 1 else shape[1]
    # mean, variance, and the moving-average factor they are divided by: statistics, not weights.
    return _Result([shape], [(channels,), (channels,), (1,)], stat_blobs=3)


def _affine_shape(ctx: _Ctx, axis: int, num_axes: int) -> Shape:
    """The learned blob shape of Scale/Bias: the input's axes [axis, axis + num_axes)."""
    shape = ctx.bottoms[0]
    start = ctx.axis(axis, len(shape))
    if num_axes < -1:
        raise ctx.fail("num_axes must be >= -1")
    if num_axes >= 0 and start + num_axes > len(shape):
        raise ctx.fail(f"axis {axis} + num_axes {num_axes} extend past the input "
                       f"{_fmt(shape)}")
    return shape[start:] if num_axes == -1 else shape[start:start + num_axes]


def _check_second_bottom(ctx: _Ctx, axis: int) -> Shape:
    shape, other = ctx.bottoms
    if not other:  # a scalar applies anywhere
        return other
    start = ctx.axis(axis, len(shape))
    if shape[start:start + len(other)] != other:
        raise ctx.fail(f"second bottom {_fmt(other)} does not match input {_fmt(shape)} "
                       f"from axis {axis}")
    return other


def _scale(ctx: _Ctx) -> _Result:
    ctx.expect_bottoms(1, 2)
    p = ctx.layer.scale_param
    if len(ctx.bottoms) == 2:
        blob = _check_second_bottom(ctx, p.axis)
        blobs = [blob] if p.bias_term else []  # the scale comes from the second bottom
    else:
        blob = _affine_shape(ctx, p.axis, p.num_axes)
        blobs = [blob, blob] if p.bias_term else [blob]
    return _Result([ctx.bottoms[0]], blobs)


def _bias(ctx: _Ctx) -> _Result:
    ctx.expect_bottoms(1, 2)
    p = ctx.layer.bias_param
    if len(ctx.bottoms) == 2:
        _check_second_bottom(ctx, p.axis)
        return _Result([ctx.bottoms[0]])
    return _Result([ctx.bottoms[0]], [_affine_shape(ctx, p.axis, p.num_axes)])


def _same_shape(ctx: _Ctx) -> _Result:
    """Element-wise layers: each top has its bottom's shape."""
    ctx.expect_bottoms(1)
    return _Result([ctx.bottoms[0]])


def _prelu(ctx: _Ctx) -> _Result:
    ctx.expect_bottoms(1)
    shape = ctx.bottoms[0]
    if len(shape) < 2:
        raise ctx.fail(f"needs at least 2 axes, got {_fmt(shape)}")
    blob = () if ctx.layer.prelu_param.channel_shared else (shape[1],)
    return _Result([shape], [blob])


def _lrn(ctx: _Ctx) -> _Result:
    ctx.expect_bottoms(1)
    if len(ctx.bottoms[0]) != 4:
        raise ctx.fail(f"needs a 4-D input, got {_fmt(ctx.bottoms[0])}")
    if ctx.layer.lrn_param.local_size % 2 == 0:
        raise ctx.fail("local_size must be odd")
    return _Result([ctx.bottoms[0]])


def _softmax(ctx: _Ctx) -> _Result:
    ctx.expect_bottoms(1)
    ctx.axis(ctx.layer.softmax_param.axis, len(ctx.bottoms[0]))
    return _Result([ctx.bottoms[0]])


def _eltwise(ctx: _Ctx) -> _Result:
    ctx.expect_bottoms(2, -1)
    p = ctx.layer.eltwise_param
    if len(p.coeff) not in (0, len(ctx.bottoms)):
        raise ctx.fail(f"{len(p.coeff)} coeff for {len(ctx.bottoms)} bottoms")
    if len(p.coeff) and p.operation != 1:  # SUM
        raise ctx.fail("coeff is only allowed with operation SUM")
    first = ctx.bottoms[0]
    for name, shape in zip(ctx.layer.bottom, ctx.bottoms, strict=True):
        if shape != first:
            raise ctx.fail(f"bottom '{name}' has shape {_fmt(shape)}, but "
                           f"'{ctx.layer.bottom[0]}' has {_fmt(first)}")
    return _Result([first])


def _concat(ctx: _Ctx) -> _Result:
    ctx.expect_bottoms(1, -1)
    p = ctx.layer.concat_param
    if p.HasField("concat_dim") and p.HasField("axis"):
        raise ctx.fail("either axis or concat_dim, not both")
    first = ctx.bottoms[0]
    axis = p.concat_dim if p.HasField("concat_dim") else p.axis
    axis = ctx.axis(axis, len(first))
    total = 0
    for name, shape in zip(ctx.layer.bottom, ctx.bottoms, strict=True):
        if len(shape) != len(first) or any(
                a != b for i, (a, b) in enumerate(zip(shape, first, strict=True)) if i != axis):
            raise ctx.fail(f"bottom '{name}' has shape {_fmt(shape)}, which does not match "
                           f"'{ctx.layer.bottom[0]}' {_fmt(first)} outside axis {axis}")
        total += shape[axis]
    return _Result([first[:axis] + (total,) + first[axis + 1:]])


def _slice(ctx: _Ctx) -> _Result:
    ctx.expect_bottoms(1)
    p = ctx.layer.slice_param
    shape = ctx.bottoms[0]
    if p.HasField("slice_dim") and p.HasField("axis"):
        raise ctx.fail("either axis or slice_dim, not both")
    axis = ctx.axis(p.slice_dim if p.HasField("slice_dim") else p.axis, len(shape))
    size, n = shape[axis], len(ctx.layer.top)
    points = list(p.slice_point)
    if points:
        if len(points) != n - 1:
            raise ctx.fail(f"{len(points)} slice points for {n} tops")
        bounds = [0, *points, size]
        sizes = [b - a for a, b in zip(bounds, bounds[1:], strict=False)]
        if any(s <= 0 for s in sizes):
            raise ctx.fail(f"slice points {points} do not cut axis {axis} of size {size} "
                           "into non-empty parts")
    else:
        if n == 0 or size % n:
            raise ctx.fail(f"axis {axis} of size {size} does not split into {n} equal parts")
        sizes = [size // n] * n
    return _Result([shape[:axis] + (s,) + shape[axis + 1:] for s in sizes])


def _split(ctx: _Ctx) -> _Result:
    ctx.expect_bottoms(1)
    return _Result([ctx.bottoms[0]] * len(ctx.layer.top))


def _flatten(ctx: _Ctx) -> _Result:
    ctx.expect_bottoms(1)
    p = ctx.layer.flatten_param
    shape = ctx.bottoms[0]
    start, end = ctx.axis(p.axis, len(shape)), ctx.axis(p.end_axis, len(shape))
    if end < start:
        raise ctx.fail(f"end_axis {p.end_axis} comes before axis {p.axis}")
    return _Result([shape[:start] + (math.prod(shape[start:end + 1]),) + shape[end + 1:]])


def _reshape(ctx: _Ctx) -> _Result:
    ctx.expect_bottoms(1)
    p = ctx.layer.reshape_param
    shape = ctx.bottoms[0]
    ndim = len(shape)
    start = p.axis if p.axis >= 0 else ndim + p.axis + 1
    if not 0 <= start <= ndim:
        raise ctx.fail(f"axis {p.axis} is out of range for a {ndim}-D blob")
    if p.num_axes < -1:
        raise ctx.fail("num_axes must be >= -1")
    end = ndim if p.num_axes == -1 else start + p.num_axes
    if end > ndim:
        raise ctx.fail("axis + num_axes is out of range")
    dims = list(p.shape.dim)
    if dims.count(-1) > 1:
        raise ctx.fail("at most one -1 in the new shape")
    new = []
    for i, d in enumerate(dims):
        if d == 0:  # copy the input's axis
            if start + i >= ndim:
                raise ctx.fail("a 0 in the new shape has no input axis to copy")
            new.append(shape[start + i])
        elif d == -1 or d > 0:
            new.append(d)
        else:
            raise ctx.fail(f"bad dimension {d} in the new shape")
    out = list(shape[:start]) + new + list(shape[end:])
    total = _count(shape)
    if -1 in new:
        known = math.prod(d for d in out if d != -1)
        if known == 0 or total % known:
            raise ctx.fail(f"cannot reshape {_fmt(shape)} to {dims}")
        out[out.index(-1)] = total // known
    if math.prod(out) != total:
        raise ctx.fail(f"cannot reshape {_fmt(shape)} ({total} values) to {_fmt(tuple(out))}")
    return _Result([tuple(out)])


def _crop(ctx: _Ctx) -> _Result:
    ctx.expect_bottoms(2)
    p = ctx.layer.crop_param
    shape, ref = ctx.bottoms
    start = ctx.axis(p.axis, len(shape))
    offsets = list(p.offset)
    if len(offsets) > 1 and start + len(offsets) != len(shape):
        raise ctx.fail(f"{len(offsets)} offsets for {len(shape) - start} cropped axes")
    if len(ref) < len(shape):
        raise ctx.fail(f"reference {_fmt(ref)} has fewer axes than input {_fmt(shape)}")
    out = list(shape)
    for i in range(start, len(shape)):
        offset = 0 if not offsets else offsets[0] if len(offsets) == 1 else offsets[i - start]
        if offset + ref[i] > shape[i]:
            raise ctx.fail(f"crop of size {ref[i]} at offset {offset} does not fit axis {i} of "
                           f"input {_fmt(shape)}")
        out[i] = ref[i]
    return _Result([tuple(out)])


def _permute(ctx: _Ctx) -> _Result:
    """Permute (SSD forks, the brocolli fork, OpenCV): axes in `order`, the rest after them."""
    ctx.expect_bottoms(1)
    shape = ctx.bottoms[0]
    order = list(ctx.layer.permute_param.order)
    if len(set(order)) != len(order) or any(not 0 <= o < len(shape) for o in order):
        raise ctx.fail(f"order {order} is not a permutation of the axes of {_fmt(shape)}")
    order += [a for a in range(len(shape)) if a not in order]
    return _Result([tuple(shape[o] for o in order)])


def _silence(ctx: _Ctx) -> _Result:
    ctx.expect_bottoms(1, -1)
    return _Result([])


_SAME_SHAPE = ("ReLU", "ReLU6", "Sigmoid", "TanH", "Power", "Dropout", "AbsVal", "BNLL", "ELU",
               "Exp", "Log", "Threshold", "Clip", "Swish", "MVN", "HardSwish", "HardSigmoid")

_HANDLERS: dict[str, Callable[[_Ctx], _Result]] = {
    **dict.fromkeys(_SAME_SHAPE, _same_shape),
    "Convolution": _convolution,
    "Deconvolution": lambda ctx: _convolution(ctx, transposed=True),
    "Pooling": _pooling,
    "InnerProduct": _inner_product,
    "BatchNorm": _batch_norm,
    "Scale": _scale,
    "Bias": _bias,
    "PReLU": _prelu,
    "LRN": _lrn,
    "Softmax": _softmax,
    "Eltwise": _eltwise,
    "Concat": _concat,
    "Slice": _slice,
    "Split": _split,
    "Flatten": _flatten,
    "Reshape": _reshape,
    "Crop": _crop,
    "Silence": _silence,
    "Permute": _permute,
}

SUPPORTED_TYPES = ("Input", *sorted(_HANDLERS))


# -- what Caffe's Layer and Blob classes CHECK (a failed CHECK aborts the process) ---------

INT_MAX = 2**31 - 1  # Caffe counts a blob's values in an int
MAX_BLOB_AXES = 32  # Caffe's kMaxBlobAxes

# (min, max) top blobs per type (Caffe's MinTopBlobs/MaxTopBlobs/ExactNumTopBlobs); -1: no max
_TOP_COUNTS: dict[str, tuple[int, int]] = {
    "Input": (1, -1), "Slice": (1, -1), "Split": (1, -1), "Silence": (0, 0), "Pooling": (1, 2),
}

# Types whose Caffe implementation computes correctly with top == bottom (element-wise, or
# copying its input first). Any other layer would read values it has already overwritten, or
# change the shape of a blob earlier layers wrote (pycaffe then returns NaN): refused.
IN_PLACE_TYPES = frozenset({
    "ReLU", "ReLU6", "Sigmoid", "TanH", "Power", "Dropout", "AbsVal", "BNLL", "ELU", "Exp",
    "Log", "Threshold", "Clip", "Swish", "BatchNorm", "Scale", "Bias", "PReLU", "Softmax",
})


def _check_top_count(layer) -> None:
    low, high = _TOP_COUNTS.get(layer.type, (1, 1))
    if layer.type == "Pooling" and layer.pooling_param.pool != 0:  # a mask top only for MAX
        high = 1
    n = len(layer.top)
    if n < low or (high >= 0 and n > high):
        want = str(low) if low == high else (f"at least {low}" if high < 0
                                             else f"{low} to {high}")
        raise NetDefinitionError(f"layer '{layer.name}' ({layer.type}): takes {want} top "
                                 f"blob(s), got {n}")


def _check_in_place(layer, bottoms: list[Shape], out_shapes: list[Shape]) -> None:
    for i, top in enumerate(layer.top):
        if top not in layer.bottom:
            continue
        j = list(layer.bottom).index(top)
        where = f"layer '{layer.name}' ({layer.type}) runs in place on '{top}'"
        if bottoms[j] != out_shapes[i]:
            raise NetDefinitionError(
                f"{where} but changes its shape {_fmt(bottoms[j])} -> {_fmt(out_shapes[i])} "
                "(Caffe would compute on a blob already reshaped: wrong values); give it its "
                "own top")
        if layer.type not in IN_PLACE_TYPES or i != 0 or j != 0:
            raise NetDefinitionError(
                f"{where}, which Caffe's {layer.type} cannot do correctly (it reads values it "
                "has already overwritten, or aborts); give it its own top")


def _check_param_specs(layer, param_shapes: list[Shape],
                       shared: dict[str, tuple[str, Shape]]) -> None:
    """Net::Init's checks of `param` entries (shared weights) and `loss_weight`."""
    where = f"layer '{layer.name}' ({layer.type})"
    if len(layer.param) > len(param_shapes):
        raise NetDefinitionError(f"{where}: {len(layer.param)} param entries for "
                                 f"{len(param_shapes)} blob(s)")
    if len(layer.loss_weight) not in (0, len(layer.top)):
        raise NetDefinitionError(f"{where}: {len(layer.loss_weight)} loss_weight values for "
                                 f"{len(layer.top)} top(s)")
    for spec, shape in zip(layer.param, param_shapes, strict=False):
        if not spec.name:
            continue
        owner = shared.setdefault(spec.name, (layer.name, shape))
        permissive = spec.share_mode == 1  # PERMISSIVE: only the counts must agree
        if owner[1] != shape and not (permissive and _count(owner[1]) == _count(shape)):
            raise NetDefinitionError(
                f"{where}: shares param '{spec.name}' of layer '{owner[0]}', but its blob "
                f"has shape {_fmt(shape)} and the owner's {_fmt(owner[1])}")


def _check_blob_size(layer, what: str, shape: Shape) -> None:
    """Caffe's Blob::Reshape CHECKs: at most 32 axes and fewer than 2^31 values."""
    if len(shape) > MAX_BLOB_AXES:
        raise NetDefinitionError(f"layer '{layer.name}' ({layer.type}): {what} has "
                                 f"{len(shape)} axes; Caffe allows {MAX_BLOB_AXES}")
    if _count(shape) > INT_MAX:
        raise NetDefinitionError(
            f"layer '{layer.name}' ({layer.type}): {what} of shape {_fmt(shape)} has "
            f"{_count(shape):,} values; Caffe's limit is 2^31 - 1 per blob")


# -- helpers -------------------------------------------------------------------------------


def in_test_phase(layer) -> bool:
    """Caffe's net filtering for the TEST phase with no stages and level 0."""
    def matches(rule) -> bool:
        if rule.HasField("phase") and rule.phase != 1:  # TEST
            return False
        if rule.HasField("min_level") and 0 < rule.min_level:
            return False
        if rule.HasField("max_level") and 0 > rule.max_level:
            return False
        return not len(rule.stage)  # no stage is set; not_stage rules always pass

    if len(layer.include):
        return any(matches(r) for r in layer.include)
    return not any(matches(r) for r in layer.exclude)


def _shape(dims: Sequence[int]) -> Shape:
    return tuple(int(d) for d in dims)


def _count(shape: Shape) -> int:
    return math.prod(shape)


def _fmt(shape: Shape | None) -> str:
    return str(tuple(shape)) if shape is not None else "none"


def format_shape(shape: Shape) -> str:
    """A shape as `1x3x224x224`."""
    return "x".join(str(d) for d in shape) if shape else "scalar"
