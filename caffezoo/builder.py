"""NetBuilder: the small typed language that generators describe Caffe nets in.

Each method appends one layer to a `NetParameter` (modern form) and returns the name of its top
blob, so a generator reads like the net's diagram:

    b = NetBuilder("tiny")
    x = b.input("data", (1, 3, 32, 32))
    x = b.conv(x, "conv1", num_output=16, kernel=3, pad=1, bias=False)
    x = b.batch_norm(x, "conv1_bn")
    x = b.scale(x, "conv1_scale")
    x = b.relu(x, "conv1_relu")
    net = b.net

The builder checks what it can without shapes (unknown bottoms, duplicate layer names, bad
arguments) and raises `NetDefinitionError` naming the layer; shape errors are found by
`caffezoo.analysis.analyze`. It writes a field only where it differs from Caffe's default, except
where Caffe's own deploy files spell it out (`pool: MAX`, `operation: SUM`, `dropout_ratio`,
`bias_term` of Scale) so the generated text reads like theirs. The same calls always produce the
same message, hence byte-identical text.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from caffezoo.errors import NetDefinitionError
from caffezoo.proto import caffe_pb2

Size = int | tuple[int, int]

_POOL_METHODS = {"max": "MAX", "ave": "AVE", "avg": "AVE", "stochastic": "STOCHASTIC"}
_ELTWISE_OPS = {"sum": "SUM", "prod": "PROD", "max": "MAX"}


class NetBuilder:
    """Builds a Caffe `NetParameter` layer by layer; see the module docstring."""

    def __init__(self, name: str) -> None:
        self._net = caffe_pb2.NetParameter()
        self._net.name = name
        self._layer_names: set[str] = set()
        self._blobs: set[str] = set()

    @property
    def net(self) -> caffe_pb2.NetParameter:
        """A copy of the net built so far (later calls do not change it)."""
        net = caffe_pb2.NetParameter()
        net.CopyFrom(self._net)
        return net

    @property
    def layer_count(self) -> int:
        """How many layers have been added so far."""
        return len(self._net.layer)

    def layers_from(self, start: int) -> list[caffe_pb2.LayerParameter]:
        """Copies of the layers added from position `start` on (cheaper than `net` for a few)."""
        out = []
        for layer in self._net.layer[start:]:
            copy = caffe_pb2.LayerParameter()
            copy.CopyFrom(layer)
            out.append(copy)
        return out

    @property
    def blobs(self) -> frozenset[str]:
        """Names of the blobs produced so far."""
        return frozenset(self._blobs)

    # -- generic -------------------------------------------------------------------------

    def layer(self, type_: str, name: str, bottoms: Sequence[str] = (),
              tops: Sequence[str] = ()) -> caffe_pb2.LayerParameter:
        """Append a layer of any type and return it, for the caller to fill in its parameters.

        The escape hatch for layer types without a method of their own (LRN, PReLU, ...)."""
        if not name:
            raise NetDefinitionError(f"a {type_} layer needs a name")
        if name in self._layer_names:
            raise NetDefinitionError(f"layer '{name}': duplicate layer name")
        if isinstance(bottoms, str) or isinstance(tops, str):
            raise NetDefinitionError(f"layer '{name}': bottoms and tops must be lists of names")
        for bottom in bottoms:
            if bottom not in self._blobs:
                raise NetDefinitionError(f"layer '{name}': unknown bottom blob '{bottom}'")
        for top in tops:
            if not top:
                raise NetDefinitionError(f"layer '{name}': empty top name")
        layer = self._net.layer.add()
        layer.name = name
        layer.type = type_
        layer.bottom.extend(bottoms)
        layer.top.extend(tops)
        self._layer_names.add(name)
        self._blobs.update(tops)
        return layer

    # -- layers --------------------------------------------------------------------------

    def input(self, name: str, shape: Sequence[int]) -> str:
        """An `Input` layer named `name` with one top blob of the same name."""
        dims = [int(d) for d in shape]
        if not dims or any(d <= 0 for d in dims):
            raise NetDefinitionError(f"layer '{name}': input shape must be positive, got {shape}")
        layer = self.layer("Input", name, [], [name])
        layer.input_param.shape.add().dim.extend(dims)
        return name

    def conv(self, bottom: str, name: str, num_output: int, kernel: Size, stride: Size = 1,
             pad: Size = 0, group: int = 1, dilation: Size = 1, bias: bool = True,
             top: str | None = None) -> str:
        """A `Convolution` layer; `bias=False` writes `bias_term: false`."""
        return self._conv("Convolution", bottom, name, num_output, kernel, stride, pad, group,
                          dilation, bias, top)

    def deconv(self, bottom: str, name: str, num_output: int, kernel: Size, stride: Size = 1,
               pad: Size = 0, group: int = 1, dilation: Size = 1, bias: bool = True,
               top: str | None = None) -> str:
        """A `Deconvolution` (transposed convolution) layer, same parameters as `conv`."""
        return self._conv("Deconvolution", bottom, name, num_output, kernel, stride, pad, group,
                          dilation, bias, top)

    def _conv(self, type_: str, bottom: str, name: str, num_output: int, kernel: Size,
              stride: Size, pad: Size, group: int, dilation: Size, bias: bool,
              top: str | None) -> str:
        kh, kw = _pair(name, "kernel", kernel, minimum=1)
        sh, sw = _pair(name, "stride", stride, minimum=1)
        ph, pw = _pair(name, "pad", pad, minimum=0)
        dh, dw = _pair(name, "dilation", dilation, minimum=1)
        _positive(name, "num_output", num_output)
        _positive(name, "group", group)
        if num_output % group:
            raise NetDefinitionError(
                f"layer '{name}': num_output {num_output} is not divisible by group {group}")
        top = top or name
        p = self.layer(type_, name, [bottom], [top]).convolution_param
        p.num_output = num_output
        if not bias:
            p.bias_term = False
        # Caffe's own files write square sizes as kernel_size/stride/pad, others as _h/_w.
        if ph == pw:
            if ph:
                p.pad.append(ph)
        else:
            p.pad_h, p.pad_w = ph, pw
        if kh == kw:
            p.kernel_size.append(kh)
        else:
            p.kernel_h, p.kernel_w = kh, kw
        if sh == sw:
            if sh != 1:
                p.stride.append(sh)
        else:
            p.stride_h, p.stride_w = sh, sw
        if group != 1:
            p.group = group
        # dilation has no _h/_w form: one value for both axes, or one per axis.
        if dh != 1 or dw != 1:
            p.dilation.extend([dh] if dh == dw else [dh, dw])
        return top

    def batch_norm(self, bottom: str, name: str, eps: float = 1e-5,
                   top: str | None = None) -> str:
        """`BatchNorm` with `use_global_stats: true` (inference); in place by default."""
        top = top or bottom
        p = self.layer("BatchNorm", name, [bottom], [top]).batch_norm_param
        p.use_global_stats = True
        if not _same_float32(eps, 1e-5):
            p.eps = eps
        return top

    def scale(self, bottom: str | Sequence[str], name: str, bias: bool = True, axis: int = 1,
              num_axes: int = 1, top: str | None = None) -> str:
        """`Scale` (the affine half of Caffe's batch norm); in place by default.

        `bottom` may be two names: the second blob is then the scale factor (no learned scale).
        `bias_term` is always written, as Caffe's deploy files do."""
        bottoms = [bottom] if isinstance(bottom, str) else list(bottom)
        if len(bottoms) not in (1, 2):
            raise NetDefinitionError(f"layer '{name}': Scale takes one or two bottoms")
        top = top or bottoms[0]
        p = self.layer("Scale", name, bottoms, [top]).scale_param
        if axis != 1:
            p.axis = axis
        if num_axes != 1:
            p.num_axes = num_axes
        p.bias_term = bias
        return top

    def relu(self, bottom: str, name: str, negative_slope: float = 0.0,
             top: str | None = None) -> str:
        """`ReLU` (leaky when `negative_slope` is not 0); in place by default."""
        top = top or bottom
        layer = self.layer("ReLU", name, [bottom], [top])
        if negative_slope:
            layer.relu_param.negative_slope = negative_slope
        return top

    def pool(self, bottom: str, name: str, method: str = "max", kernel: Size | None = None,
             stride: Size = 1, pad: Size = 0, global_pooling: bool = False, ceil: bool = True,
             top: str | None = None) -> str:
        """`Pooling`: method "max" or "ave"; `ceil=False` rounds the output size down (writes
        `ceil_mode: false`); `ceil=True` is Caffe's default and writes nothing."""
        if method.lower() not in _POOL_METHODS:
            raise NetDefinitionError(f"layer '{name}': unknown pooling method '{method}' "
                                     f"(use one of {', '.join(sorted(_POOL_METHODS))})")
        sh, sw = _pair(name, "stride", stride, minimum=1)
        ph, pw = _pair(name, "pad", pad, minimum=0)
        if global_pooling:
            if kernel is not None or (sh, sw) != (1, 1) or (ph, pw) != (0, 0):
                raise NetDefinitionError(
                    f"layer '{name}': global pooling takes no kernel, stride or pad")
        elif kernel is None:
            raise NetDefinitionError(f"layer '{name}': pooling needs a kernel "
                                     "(or global_pooling=True)")
        else:
            kh, kw = _pair(name, "kernel", kernel, minimum=1)
        top = top or name
        p = self.layer("Pooling", name, [bottom], [top]).pooling_param
        p.pool = caffe_pb2.PoolingParameter.PoolMethod.Value(_POOL_METHODS[method.lower()])
        if global_pooling:
            p.global_pooling = True
            return top
        if kh == kw:
            p.kernel_size = kh
        else:
            p.kernel_h, p.kernel_w = kh, kw
        if sh == sw:
            if sh != 1:
                p.stride = sh
        else:
            p.stride_h, p.stride_w = sh, sw
        if ph == pw:
            if ph:
                p.pad = ph
        else:
            p.pad_h, p.pad_w = ph, pw
        if not ceil:
            p.ceil_mode = False
        return top

    def eltwise(self, bottoms: Sequence[str], name: str, op: str = "sum",
                coeff: Sequence[float] | None = None, top: str | None = None) -> str:
        """`Eltwise` over two or more blobs: op "sum" (with optional coeff per bottom), "prod",
        or "max"."""
        bottoms = list(bottoms)
        if op.lower() not in _ELTWISE_OPS:
            raise NetDefinitionError(f"layer '{name}': unknown eltwise op '{op}' "
                                     f"(use one of {', '.join(sorted(_ELTWISE_OPS))})")
        if len(bottoms) < 2:
            raise NetDefinitionError(f"layer '{name}': Eltwise needs at least two bottoms")
        if coeff is not None:
            if op.lower() != "sum":
                raise NetDefinitionError(f"layer '{name}': coeff is only allowed with op 'sum'")
            if len(coeff) != len(bottoms):
                raise NetDefinitionError(f"layer '{name}': {len(coeff)} coeff for "
                                         f"{len(bottoms)} bottoms")
        top = top or name
        p = self.layer("Eltwise", name, bottoms, [top]).eltwise_param
        p.operation = caffe_pb2.EltwiseParameter.EltwiseOp.Value(_ELTWISE_OPS[op.lower()])
        if coeff is not None:
            p.coeff.extend(float(c) for c in coeff)
        return top

    def concat(self, bottoms: Sequence[str], name: str, axis: int = 1,
               top: str | None = None) -> str:
        """`Concat` along `axis` (channels by default)."""
        top = top or name
        layer = self.layer("Concat", name, list(bottoms), [top])
        if axis != 1:
            layer.concat_param.axis = axis
        return top

    def inner_product(self, bottom: str, name: str, num_output: int, bias: bool = True,
                      axis: int = 1, top: str | None = None) -> str:
        """`InnerProduct` (fully connected) over the axes from `axis` on."""
        _positive(name, "num_output", num_output)
        top = top or name
        p = self.layer("InnerProduct", name, [bottom], [top]).inner_product_param
        p.num_output = num_output
        if not bias:
            p.bias_term = False
        if axis != 1:
            p.axis = axis
        return top

    def dropout(self, bottom: str, name: str, ratio: float = 0.5, top: str | None = None) -> str:
        """`Dropout` (identity at inference); in place by default."""
        if not 0.0 <= ratio < 1.0:
            raise NetDefinitionError(f"layer '{name}': dropout ratio must be in [0, 1)")
        top = top or bottom
        self.layer("Dropout", name, [bottom], [top]).dropout_param.dropout_ratio = ratio
        return top

    def softmax(self, bottom: str, name: str, axis: int = 1, top: str | None = None) -> str:
        """`Softmax` over `axis`."""
        top = top or name
        layer = self.layer("Softmax", name, [bottom], [top])
        if axis != 1:
            layer.softmax_param.axis = axis
        return top

    def flatten(self, bottom: str, name: str, axis: int = 1, end_axis: int = -1,
                top: str | None = None) -> str:
        """`Flatten` axes `axis`..`end_axis` into one."""
        top = top or name
        layer = self.layer("Flatten", name, [bottom], [top])
        if axis != 1:
            layer.flatten_param.axis = axis
        if end_axis != -1:
            layer.flatten_param.end_axis = end_axis
        return top

    def crop(self, bottom: str, reference: str, name: str, axis: int = 2,
             offset: int | Sequence[int] = 0, top: str | None = None) -> str:
        """`Crop` `bottom` to the shape of `reference` on the axes from `axis` on, starting at
        `offset` (one value for all cropped axes, or one per axis)."""
        offsets = [offset] if isinstance(offset, int) else list(offset)
        if any(o < 0 for o in offsets):
            raise NetDefinitionError(f"layer '{name}': crop offsets must be >= 0")
        top = top or name
        p = self.layer("Crop", name, [bottom, reference], [top]).crop_param
        if axis != 2:
            p.axis = axis
        if offsets != [0]:
            p.offset.extend(offsets)
        return top

    def slice(self, bottom: str, name: str, tops: Sequence[str], axis: int = 1,
              slice_points: Sequence[int] = ()) -> list[str]:
        """`Slice` `bottom` along `axis` into `tops`, cut at `slice_points` (len(tops) - 1
        increasing positions), or into equal parts when none are given."""
        tops = list(tops)
        points = [int(p) for p in slice_points]
        if not tops:
            raise NetDefinitionError(f"layer '{name}': Slice needs at least one top")
        if points and len(points) != len(tops) - 1:
            raise NetDefinitionError(f"layer '{name}': {len(points)} slice points for "
                                     f"{len(tops)} tops (need {len(tops) - 1})")
        if any(b <= a for a, b in zip(points, points[1:], strict=False)) or any(
                p <= 0 for p in points):
            raise NetDefinitionError(f"layer '{name}': slice points must be positive and "
                                     f"increasing, got {points}")
        p = self.layer("Slice", name, [bottom], tops).slice_param
        if axis != 1:
            p.axis = axis
        p.slice_point.extend(points)
        return tops

    def silence(self, bottoms: str | Sequence[str], name: str) -> None:
        """`Silence`: consumes blobs nobody else uses (no top)."""
        bottoms = [bottoms] if isinstance(bottoms, str) else list(bottoms)
        self.layer("Silence", name, bottoms, [])


def _pair(layer: str, what: str, value: Size, minimum: int) -> tuple[int, int]:
    """An int or an (h, w) pair as (h, w), checked against `minimum`."""
    if isinstance(value, bool):
        raise NetDefinitionError(f"layer '{layer}': {what} must be an int or (h, w)")
    if isinstance(value, int):
        h = w = value
    else:
        try:
            h, w = (int(v) for v in value)
        except (TypeError, ValueError):
            raise NetDefinitionError(
                f"layer '{layer}': {what} must be an int or (h, w), got {value!r}") from None
    if h < minimum or w < minimum:
        raise NetDefinitionError(f"layer '{layer}': {what} must be >= {minimum}, got {value!r}")
    return h, w


def _positive(layer: str, what: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise NetDefinitionError(f"layer '{layer}': {what} must be a positive int, "
                                 f"got {value!r}")


def _same_float32(a: float, b: float) -> bool:
    """Whether two numbers are the same float32 (eps is a float field)."""
    return struct.pack("<f", a) == struct.pack("<f", b)
