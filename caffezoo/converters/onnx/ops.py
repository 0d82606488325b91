"""ONNX nodes -> canonical graph nodes (caffezoo.graph.ir), one small handler per ONNX op.

Handlers are registered by op type in `HANDLERS`; a node whose op has no handler stops the
conversion with its name and op type (all unsupported op types of the graph in one message).
Each handler normalises its op's attributes for every opset from 9 on (Pad and Clip take
attributes before opset 11 and inputs after; Softmax's axis means "flatten from here" before 13;
ReduceMean takes its axes as an input from 18) and resolves what depends on shapes
(auto_pad, Reshape's 0 and -1) from the static shapes the reader inferred.

After the node-by-node pass, three rewrites keep the graph in the forms the emitter expresses
best, each exact:
- a leading NHWC -> NCHW Transpose (graphs from TensorFlow) is absorbed: the graph takes NCHW,
  and the elementwise nodes before that Transpose work on NCHW with their constants transposed;
- a constant Pad before a convolution (zeros), max pooling (-inf) or average pooling (zeros,
  counted) becomes that node's own, possibly asymmetric, padding (timm's TF-style "same" convs);
- x * sigmoid(x) becomes `silu`, x * hard_sigmoid(x; 1/6, 1/2) becomes `hard_swish`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from caffezoo.converters.onnx.reader import FLOAT_MAX, NCHW_PERM, Prepared, find_nhwc_chain
from caffezoo.errors import ConversionError
from caffezoo.geometry import same_padding, source_pooled
from caffezoo.graph.ir import Graph, Node

Handler = Callable[["Translation", Any, dict[str, Any]], None]
HANDLERS: dict[str, Handler] = {}


def handles(*ops: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        for op in ops:
            HANDLERS[op] = fn
        return fn
    return register


def supported_ops() -> list[str]:
    return sorted(HANDLERS)


class Translation:
    """State while one prepared ONNX graph is translated."""

    def __init__(self, prep: Prepared) -> None:
        self.prep = prep
        self.nodes: list[Node] = []
        self.constants: dict[str, np.ndarray] = {}
        self.alias: dict[str, str] = {}  # ONNX value -> the IR value that carries it
        self.shapes: dict[str, tuple[int, ...]] = dict(prep.shapes)
        self.notes: list[str] = []
        self.node = None  # the ONNX node being translated
        self.used = {i for n in prep.nodes for i in n.input} | set(prep.outputs)

    # -- values
    def value(self, name: str) -> str:
        while name in self.alias:
            name = self.alias[name]
        return name

    def const(self, name: str) -> np.ndarray | None:
        if not name:
            return None
        return self.prep.consts.get(self.value(name), self.prep.consts.get(name))

    def need_const(self, name: str, what: str) -> np.ndarray:
        arr = self.const(name)
        if arr is None:
            raise self.error(f"its {what} ({name!r}) is computed, not a constant")
        return arr

    def shape(self, name: str) -> tuple[int, ...]:
        shape = self.shapes.get(self.value(name), self.shapes.get(name))
        if shape is None:
            why = f"; shape inference: {self.prep.inference_error}" \
                if self.prep.inference_error else ""
            raise self.error(f"value {name!r} has no static shape (give --input-shape; a "
                             f"shape that depends on the data cannot be converted){why}")
        return shape

    def operand(self, name: str) -> str:
        """An input as the IR names it: a value, or a float constant put into the graph's
        constants."""
        arr = self.const(name)
        if arr is None:
            return self.value(name)
        if not np.issubdtype(arr.dtype, np.floating):
            raise self.error(f"its constant operand {name!r} is {arr.dtype}, not float")
        self.constants[name] = arr.astype(np.float32)
        return name

    # -- emitting
    def error(self, why: str) -> ConversionError:
        return ConversionError(f"{self.prep.path}: {self.prep.describe(self.node)}: {why}")

    def emit(self, op: str, inputs: list[str], outputs: list[str] | None = None,
             suffix: str = "", **attrs: Any) -> str:
        """Appends an IR node named after the ONNX node (plus `suffix`) and returns its first
        output (default: the ONNX node's first output)."""
        params = attrs.pop("params", {})
        onnx_node = self.node
        name = self.prep.name_of(onnx_node) + suffix
        outputs = outputs or [onnx_node.output[0]]
        self.nodes.append(Node(name, op, list(inputs), list(outputs), attrs, params,
                               onnx_node.op_type))
        return outputs[0]

    def pass_through(self) -> None:
        """The node's first output is its first input (Identity, Dropout at inference)."""
        node = self.node
        if node.output[0] in self.prep.outputs:  # keep the graph output's name
            self.emit("identity", [self.value(node.input[0])])
        else:
            self.alias[node.output[0]] = node.input[0]

    def only_first_output(self) -> None:
        node = self.node
        if any(o in self.used for o in node.output[1:] if o):
            raise self.error("only its first output can be converted (the others are used)")


def _attrs(node) -> dict[str, Any]:
    from onnx import helper

    out: dict[str, Any] = {}
    for a in node.attribute:
        value = helper.get_attribute_value(a)
        out[a.name] = value.decode() if isinstance(value, bytes) else value
    return out


# ---------------------------------------------------------------------------------------------
# shape helpers


def resolve_pads(t: Translation, a: dict, in_hw: tuple[int, int], kernel: tuple[int, int],
                 stride: tuple[int, int], dilation: tuple[int, int]) -> tuple[int, int, int, int]:
    """ONNX pads / auto_pad -> (top, left, bottom, right)."""
    auto = a.get("auto_pad", "NOTSET")
    if auto in ("NOTSET", ""):
        pads = list(a.get("pads", [0, 0, 0, 0]))
        if len(pads) != 4:
            raise t.error(f"pads {pads} are not 2-D")
        return pads[0], pads[1], pads[2], pads[3]
    if auto == "VALID":
        return 0, 0, 0, 0
    if auto not in ("SAME_UPPER", "SAME_LOWER"):
        raise t.error(f"auto_pad {auto!r} is unknown")
    begin, end = [], []
    for n, k, s, d in zip(in_hw, kernel, stride, dilation, strict=True):
        small, big = same_padding(n, k, s, d)
        # SAME_UPPER puts the odd pixel at the end (TensorFlow's SAME), SAME_LOWER at the start
        b, e = (small, big) if auto == "SAME_UPPER" else (big, small)
        begin.append(b)
        end.append(e)
    return begin[0], begin[1], end[0], end[1]


def _pair(values, default: int, what: str, t: Translation) -> tuple[int, int]:
    values = list(values) if values is not None else [default, default]
    if len(values) != 2:
        raise t.error(f"{what} {values} is not 2-D (only 2-D images convert)")
    return int(values[0]), int(values[1])


def _rank4(t: Translation, name: str) -> tuple[int, int, int, int]:
    shape = t.shape(name)
    if len(shape) != 4:
        raise t.error(f"input {name!r} has shape {shape}; expected N, C, H, W")
    return shape  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------
# handlers


@handles("Conv")
def _conv(t: Translation, node, a: dict) -> None:
    x = node.input[0]
    n, c, h, w = _rank4(t, x)
    weight = t.need_const(node.input[1], "weight").astype(np.float32, copy=False)
    if weight.ndim != 4:
        raise t.error(f"weight of shape {weight.shape}: only 2-D convolutions convert")
    kernel = (int(weight.shape[2]), int(weight.shape[3]))
    if "kernel_shape" in a and tuple(a["kernel_shape"]) != kernel:
        raise t.error(f"kernel_shape {a['kernel_shape']} differs from the weight's {kernel}")
    stride = _pair(a.get("strides"), 1, "strides", t)
    dilation = _pair(a.get("dilations"), 1, "dilations", t)
    group = int(a.get("group", 1))
    if group < 1:
        raise t.error(f"group {group}: must be at least 1")
    if c % group or weight.shape[1] * group != c or weight.shape[0] % group:
        raise t.error(f"weight {weight.shape} does not fit {c} input channels in {group} groups")
    pads = resolve_pads(t, a, (h, w), kernel, stride, dilation)
    params = {"weight": weight}
    if len(node.input) > 2 and node.input[2]:
        bias = t.need_const(node.input[2], "bias")
        params["bias"] = bias.astype(np.float32, copy=False).reshape(-1)
    t.emit("conv", [t.value(x)], stride=stride, pads=pads, dilation=dilation, group=group,
           params=params)


@handles("BatchNormalization")
def _batch_norm(t: Translation, node, a: dict) -> None:
    if int(a.get("training_mode", 0)):
        raise t.error("training_mode=1 (batch statistics) cannot run at inference")
    t.only_first_output()
    x = node.input[0]
    channels = t.shape(x)[1]
    names = ("gamma", "beta", "mean", "var")
    params = {}
    for name, src in zip(names, node.input[1:5], strict=False):
        arr = t.need_const(src, name).astype(np.float32, copy=False).reshape(-1)
        if arr.shape != (channels,):
            raise t.error(f"{name} has {arr.size} values for {channels} channels")
        params[name] = arr
    if np.any(params["var"] < 0):
        raise t.error("negative variance")
    t.emit("batch_norm", [t.value(x)], eps=float(a.get("epsilon", 1e-5)), params=params)


_UNARY = {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Softplus": "softplus",
          "HardSwish": "hard_swish"}


@handles(*_UNARY)
def _unary(t: Translation, node, a: dict) -> None:
    t.emit(_UNARY[node.op_type], [t.value(node.input[0])])


@handles("LeakyRelu")
def _leaky(t: Translation, node, a: dict) -> None:
    t.emit("leaky_relu", [t.value(node.input[0])], alpha=float(a.get("alpha", 0.01)))


@handles("Elu")
def _elu(t: Translation, node, a: dict) -> None:
    t.emit("elu", [t.value(node.input[0])], alpha=float(a.get("alpha", 1.0)))


@handles("HardSigmoid")
def _hard_sigmoid(t: Translation, node, a: dict) -> None:
    t.emit("hard_sigmoid", [t.value(node.input[0])], alpha=float(a.get("alpha", 0.2)),
           beta=float(a.get("beta", 0.5)))


@handles("Swish")
def _swish(t: Translation, node, a: dict) -> None:
    if float(a.get("alpha", 1.0)) != 1.0:
        raise t.error(f"alpha {a['alpha']} (only x * sigmoid(x) converts)")
    t.emit("silu", [t.value(node.input[0])])


def _bound(v: float) -> float:
    return math.copysign(math.inf, v) if abs(v) >= FLOAT_MAX else float(v)


@handles("Clip")
def _clip(t: Translation, node, a: dict) -> None:
    if t.prep.opset < 11:  # attributes
        lo, hi = a.get("min", -math.inf), a.get("max", math.inf)
    else:  # optional inputs
        lo = hi = None
        if len(node.input) > 1 and node.input[1]:
            lo = float(t.need_const(node.input[1], "min").reshape(()))
        if len(node.input) > 2 and node.input[2]:
            hi = float(t.need_const(node.input[2], "max").reshape(()))
        lo = -math.inf if lo is None else lo
        hi = math.inf if hi is None else hi
    t.emit("clip", [t.value(node.input[0])], min=_bound(lo), max=_bound(hi))


@handles("Max", "Min")
def _max_min(t: Translation, node, a: dict) -> None:
    """Max/Min against a constant of one value is a one-sided clip (exact stock layers; what
    `caffezoo export` writes for an Eltwise MAX with a Power(scale 0) constant); Max of two
    values of one shape is an Eltwise MAX."""
    inputs = [i for i in node.input if i]
    if len(inputs) == 1:
        t.pass_through()
        return
    if len(inputs) != 2:
        raise t.error(f"{node.op_type} of {len(inputs)} inputs (two convert)")
    consts = [t.const(i) for i in inputs]
    if consts[0] is not None and consts[1] is not None:
        raise t.error("all operands are constants")
    if consts[0] is not None or consts[1] is not None:
        value, c = (inputs[1], consts[0]) if consts[0] is not None else (inputs[0], consts[1])
        flat = np.asarray(c, np.float32).reshape(-1)
        shape = t.shape(value)
        if flat.size == 0 or np.any(flat != flat[0]) or c.ndim > len(shape) \
                or np.broadcast_shapes(shape, c.shape) != shape:
            raise t.error(f"{node.op_type} with a constant of shape {c.shape} that is not one "
                          f"value (only max(x, c) and min(x, c) with a scalar c convert)")
        bound = {"min": float(flat[0])} if node.op_type == "Max" else {"max": float(flat[0])}
        t.emit("clip", [t.value(value)], **{"min": -math.inf, "max": math.inf, **bound})
        return
    if node.op_type == "Min" or t.shape(inputs[0]) != t.shape(inputs[1]):
        raise t.error(f"{node.op_type} of two computed values (only Max of two values of one "
                      f"shape converts, as Eltwise MAX)")
    t.emit("max", [t.value(i) for i in inputs])


@handles("PRelu")
def _prelu(t: Translation, node, a: dict) -> None:
    x = node.input[0]
    slope = t.need_const(node.input[1], "slope").astype(np.float32)
    shape = t.shape(x)
    # ONNX broadcasts the slope from the right: one per channel is (C, 1, 1) or (1, C, 1, 1)
    per_channel = len(shape) == 4 and slope.ndim in (3, 4) and slope.shape[-3] == shape[1] \
        and slope.size == shape[1]
    if slope.size != 1 and not per_channel:
        raise t.error(f"slope of shape {slope.shape} on {shape}: only one slope or one per "
                      f"channel (C, 1, 1) converts")
    t.emit("prelu", [t.value(x)], params={"slope": slope.reshape(-1)})


@handles("Add", "Sub", "Mul", "Div")
def _binary(t: Translation, node, a: dict) -> None:
    inputs = [t.operand(i) for i in node.input]
    t.emit(node.op_type.lower(), inputs)


@handles("Sum")
def _sum(t: Translation, node, a: dict) -> None:
    inputs = [t.operand(i) for i in node.input]
    if len(inputs) == 1:
        t.pass_through()
    else:
        t.emit("add", inputs)


@handles("GlobalAveragePool", "GlobalMaxPool")
def _global_pool(t: Translation, node, a: dict) -> None:
    _rank4(t, node.input[0])
    op = "global_avg_pool" if node.op_type == "GlobalAveragePool" else "global_max_pool"
    t.emit(op, [t.value(node.input[0])], keepdims=True)


@handles("ReduceMean", "ReduceMax")
def _reduce(t: Translation, node, a: dict) -> None:
    x = node.input[0]
    rank = len(t.shape(x))
    if "axes" in a:
        axes = list(a["axes"])
    elif len(node.input) > 1 and node.input[1]:
        axes = [int(v) for v in t.need_const(node.input[1], "axes").reshape(-1)]
    else:
        axes = list(range(rank))
    axes = sorted(ax + rank if ax < 0 else ax for ax in axes)
    if rank != 4 or axes != [2, 3]:
        raise t.error(f"reduces axes {axes} of a rank-{rank} value (only the spatial axes "
                      f"2, 3 of N, C, H, W convert, as global pooling)")
    op = "global_avg_pool" if node.op_type == "ReduceMean" else "global_max_pool"
    if int(a.get("keepdims", 1)):
        t.emit(op, [t.value(x)], keepdims=True)
        return
    pooled = node.output[0] + "/pooled"
    n, c = t.shape(x)[:2]
    t.shapes[pooled] = (n, c, 1, 1)
    t.emit(op, [t.value(x)], [pooled], keepdims=True)
    t.emit("flatten", [pooled], suffix="/flatten", axis=1)


@handles("MaxPool", "AveragePool")
def _pool(t: Translation, node, a: dict) -> None:
    x = node.input[0]
    n, c, h, w = _rank4(t, x)
    t.only_first_output()
    kernel = _pair(a.get("kernel_shape"), 1, "kernel_shape", t)
    stride = _pair(a.get("strides"), 1, "strides", t)
    if any(d != 1 for d in a.get("dilations", [1, 1])):
        raise t.error(f"dilations {a['dilations']} (dilated pooling has no Caffe layer)")
    pads = resolve_pads(t, a, (h, w), kernel, stride, (1, 1))
    ceil = bool(a.get("ceil_mode", 0))
    expected = t.shape(node.output[0])[2:]
    ours = (source_pooled(h, kernel[0], stride[0], pads[0], pads[2], ceil),
            source_pooled(w, kernel[1], stride[1], pads[1], pads[3], ceil))
    if tuple(expected) != ours:
        raise t.error(f"pooled size {tuple(expected)} differs from the ONNX rule's {ours}")
    attrs: dict[str, Any] = {"kernel": kernel, "stride": stride, "pads": pads, "ceil": ceil}
    if node.op_type == "MaxPool":
        t.emit("max_pool", [t.value(x)], **attrs)
    else:
        # ONNX's default excludes the padding from the average
        t.emit("avg_pool", [t.value(x)], count_include_pad=bool(a.get("count_include_pad", 0)),
               **attrs)


@handles("Concat")
def _concat(t: Translation, node, a: dict) -> None:
    rank = len(t.shape(node.output[0]))
    axis = int(a["axis"]) if "axis" in a else 1
    for i in node.input:
        if t.const(i) is not None:
            raise t.error(f"concatenates the constant {i!r} (only computed values convert)")
    t.emit("concat", [t.value(i) for i in node.input], axis=axis + rank if axis < 0 else axis)


def _reshape_to(t: Translation, x: str, out_shape: tuple[int, ...]) -> None:
    """A reshape as the simplest equivalent: nothing, a flatten to (N, rest), or a reshape."""
    in_shape = t.shape(x)
    if tuple(in_shape) == tuple(out_shape):
        t.pass_through()
    elif len(out_shape) == 2 and out_shape[0] == in_shape[0] and len(in_shape) > 2:
        t.emit("flatten", [t.value(x)], axis=1)
    else:
        t.emit("reshape", [t.value(x)], shape=tuple(int(s) for s in out_shape))


@handles("Reshape", "Squeeze", "Unsqueeze")
def _reshape(t: Translation, node, a: dict) -> None:
    _reshape_to(t, node.input[0], t.shape(node.output[0]))


@handles("Flatten")
def _flatten(t: Translation, node, a: dict) -> None:
    x = node.input[0]
    rank = len(t.shape(x))
    axis = int(a.get("axis", 1))
    axis = axis + rank if axis < 0 else axis
    if axis == 1:
        if rank == 2:
            t.pass_through()
        else:
            t.emit("flatten", [t.value(x)], axis=1)
    else:
        _reshape_to(t, x, t.shape(node.output[0]))


@handles("Gemm")
def _gemm(t: Translation, node, a: dict) -> None:
    x = node.input[0]
    if int(a.get("transA", 0)):
        raise t.error("transA=1 (the batch would be transposed)")
    if len(t.shape(x)) != 2:
        raise t.error(f"input of shape {t.shape(x)} is not 2-D")
    b = t.need_const(node.input[1], "weight B").astype(np.float64)
    weight = b if int(a.get("transB", 0)) else b.T  # (out, in)
    alpha, beta = float(a.get("alpha", 1.0)), float(a.get("beta", 1.0))
    if alpha != 1.0:
        weight = weight * alpha
    params = {"weight": weight.astype(np.float32)}
    if len(node.input) > 2 and node.input[2]:
        c = t.need_const(node.input[2], "bias C").astype(np.float64)
        out = weight.shape[0]
        if c.size == 1:
            c = np.full(out, c.reshape(()))
        elif c.shape[-1:] != (out,) or c.size != out:
            raise t.error(f"bias C of shape {c.shape} is not one value per output ({out})")
        params["bias"] = (beta * c.reshape(-1)).astype(np.float32)
    t.emit("linear", [t.value(x)], params=params)


@handles("MatMul")
def _matmul(t: Translation, node, a: dict) -> None:
    x = node.input[0]
    b = t.const(node.input[1])
    if b is None or b.ndim != 2 or len(t.shape(x)) != 2:
        raise t.error("only a 2-D input times a constant 2-D weight converts (as InnerProduct)")
    t.emit("linear", [t.value(x)], params={"weight": np.ascontiguousarray(b.T, np.float32)})


@handles("Softmax")
def _softmax(t: Translation, node, a: dict) -> None:
    x = node.input[0]
    shape = t.shape(x)
    rank = len(shape)
    if t.prep.opset < 13:
        # the input is seen as 2-D (dims before axis, dims from axis on): one softmax over all
        # of the latter, which is a softmax over `axis` when the dims after it are all 1
        axis = int(a.get("axis", 1))
        axis = axis + rank if axis < 0 else axis
        if any(d != 1 for d in shape[axis + 1:]):
            raise t.error(f"softmax over the flattened dims {shape[axis:]} (opset "
                          f"{t.prep.opset} semantics) does not convert")
    else:
        axis = int(a.get("axis", -1))
        axis = axis + rank if axis < 0 else axis
    t.emit("softmax", [t.value(x)], axis=axis)


@handles("Transpose")
def _transpose(t: Translation, node, a: dict) -> None:
    x = node.input[0]
    rank = len(t.shape(x))
    perm = [int(p) for p in a.get("perm", list(range(rank))[::-1])]
    if perm == list(range(rank)):
        t.pass_through()
    else:
        t.emit("transpose", [t.value(x)], perm=tuple(perm))


@handles("Pad")
def _pad(t: Translation, node, a: dict) -> None:
    mode = a.get("mode", "constant")
    if mode != "constant":
        raise t.error(f"mode {mode!r} (only constant padding converts)")
    x = node.input[0]
    rank = len(t.shape(x))
    if t.prep.opset < 11:  # attributes (`paddings` in opset 1)
        pads = [int(p) for p in a.get("pads", a.get("paddings", []))]
        value = float(a.get("value", 0.0))
    else:
        pads = [int(p) for p in t.need_const(node.input[1], "pads").reshape(-1)]
        value = 0.0
        if len(node.input) > 2 and node.input[2]:
            value = float(t.need_const(node.input[2], "constant_value").reshape(()))
        if len(node.input) > 3 and node.input[3]:  # opset 18: the axes the pads are for
            axes = [int(v) for v in t.need_const(node.input[3], "axes").reshape(-1)]
            full = [0] * (2 * rank)
            for i, ax in enumerate(axes):
                ax = ax + rank if ax < 0 else ax
                full[ax], full[ax + rank] = pads[i], pads[i + len(axes)]
            pads = full
    if rank != 4 or len(pads) != 8:
        raise t.error(f"pads {pads} on a rank-{rank} value (only N, C, H, W converts)")
    begin, end = pads[:4], pads[4:]
    if begin[:2] != [0, 0] or end[:2] != [0, 0]:
        raise t.error(f"pads the batch or channel axis ({pads})")
    if min(pads) < 0:
        raise t.error(f"negative pads {pads} (cropping) do not convert")
    if not any(pads):
        t.pass_through()
        return
    t.emit("pad", [t.value(x)], pads=(begin[2], begin[3], end[2], end[3]), value=value)


def _emit_slice(t: Translation, x: str, axis: int, start: int, end: int, out: str,
                suffix: str = "") -> None:
    shape = t.shape(x)
    if start == 0 and end == shape[axis]:
        if out in t.prep.outputs:
            t.emit("identity", [t.value(x)], [out], suffix)
        else:
            t.alias[out] = x
        return
    if axis == 0:
        raise t.error("slices the batch axis")
    t.emit("slice", [t.value(x)], [out], suffix, axis=axis, start=start, end=end)


@handles("Slice")
def _slice(t: Translation, node, a: dict) -> None:
    x = node.input[0]
    shape = t.shape(x)
    rank = len(shape)
    if t.prep.opset < 10:
        starts, ends = list(a["starts"]), list(a["ends"])
        axes = list(a.get("axes", range(len(starts))))
        steps = [1] * len(starts)
    else:
        def ints(i: int, what: str, default=None):
            if len(node.input) > i and node.input[i]:
                return [int(v) for v in t.need_const(node.input[i], what).reshape(-1)]
            return default
        starts, ends = ints(1, "starts"), ints(2, "ends")
        axes = ints(3, "axes", list(range(len(starts))))
        steps = ints(4, "steps", [1] * len(starts))
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise t.error(f"starts {starts}, ends {ends}, axes {axes}, steps {steps} differ in length")
    cut = []
    for start, end, ax, step in zip(starts, ends, axes, steps, strict=True):
        ax = ax + rank if ax < 0 else ax
        n = shape[ax]
        if step != 1:
            raise t.error(f"step {step} on axis {ax} (only contiguous slices convert)")
        start = max(0, min(n, start + n if start < 0 else start))
        end = max(0, min(n, end + n if end < 0 else end))
        if (start, end) != (0, n):
            cut.append((ax, start, end))
    if len(cut) > 1:
        raise t.error(f"slices {len(cut)} axes at once (one converts)")
    if not cut:
        t.pass_through()
        return
    ax, start, end = cut[0]
    if end <= start:
        raise t.error(f"empty slice [{start}, {end}) of axis {ax}")
    _emit_slice(t, x, ax, start, end, node.output[0])


@handles("Split")
def _split(t: Translation, node, a: dict) -> None:
    x = node.input[0]
    shape = t.shape(x)
    axis = int(a.get("axis", 0))
    axis = axis + len(shape) if axis < 0 else axis
    if "split" in a:
        sizes = [int(v) for v in a["split"]]
    elif len(node.input) > 1 and node.input[1]:
        sizes = [int(v) for v in t.need_const(node.input[1], "split").reshape(-1)]
    else:
        sizes = [t.shape(o)[axis] for o in node.output]
    if sum(sizes) != shape[axis] or len(sizes) != len(node.output):
        raise t.error(f"split sizes {sizes} do not cover axis {axis} of {shape}")
    start = 0
    for k, (out, size) in enumerate(zip(node.output, sizes, strict=True)):
        if out:
            _emit_slice(t, x, axis, start, start + size, out, f"/{k}")
        start += size


@handles("Identity", "Dropout")
def _identity(t: Translation, node, a: dict) -> None:
    t.only_first_output()
    t.pass_through()


@handles("Cast")
def _cast(t: Translation, node, a: dict) -> None:
    from onnx import TensorProto

    if int(a.get("to", 0)) != TensorProto.FLOAT:
        raise t.error("casts a computed value to a non-float type")
    t.pass_through()


# ---------------------------------------------------------------------------------------------
# the whole graph


def translate(prep: Prepared, name: str | None = None) -> Graph:
    """The canonical graph of a prepared ONNX graph (ConversionError naming the node at fault;
    every unsupported op type of the graph is named at once)."""
    unsupported: dict[str, list[str]] = {}
    for node in prep.nodes:
        if node.domain not in ("", "ai.onnx") or node.op_type not in HANDLERS:
            op = node.op_type if node.domain in ("", "ai.onnx") else \
                f"{node.domain}.{node.op_type}"
            unsupported.setdefault(op, []).append(prep.name_of(node))
    if unsupported:
        first_op, nodes = next(iter(unsupported.items()))
        more = [f"{op} ({len(ns)})" for op, ns in list(unsupported.items())[1:]]
        raise ConversionError(
            f"{prep.path}: node {nodes[0]!r} ({first_op}) has no Caffe translation"
            + (f" ({len(nodes)} {first_op} nodes)" if len(nodes) > 1 else "")
            + (f"; also unsupported: {', '.join(more)}" if more else "")
            + f"; supported ONNX ops: {', '.join(supported_ops())}")

    t = Translation(prep)
    input_name = prep.input_name
    input_shape = prep.input_shape
    nodes = list(prep.nodes)
    if prep.nhwc:
        input_shape, nodes = _absorb_nhwc(t, nodes)
    for node in nodes:
        t.node = node
        HANDLERS[node.op_type](t, node, _attrs(node))
    outputs = [t.value(o) for o in prep.outputs]
    graph = Graph(name or Path(prep.path).stem, {input_name: tuple(input_shape)}, outputs,
                  t.nodes, t.constants, notes=t.notes)
    _fuse_matmul_bias(graph, t)
    _fuse_pads(graph, t)
    _fuse_swish(graph)
    _prune(graph)
    graph.constants = {k: v for k, v in graph.constants.items()
                       if any(k in n.inputs for n in graph.nodes)}
    values = {input_name} | {o for n in graph.nodes for o in n.outputs}
    graph.shapes = {k: tuple(int(d) for d in v) for k, v in t.shapes.items() if k in values}
    graph.shapes[input_name] = tuple(input_shape)
    if prep.folded:
        graph.notes.append(f"{prep.folded} ONNX nodes of shape arithmetic and constants folded")
    return graph


def _absorb_nhwc(t: Translation, nodes: list) -> tuple[tuple[int, ...], list]:
    """Drops the NHWC -> NCHW Transpose after the input; the nodes before it (elementwise) work
    on NCHW values (renamed `<value>_nchw`, so they never stand for the NHWC values of the
    source), with their constants transposed the same way."""
    prep = t.prep
    found = find_nhwc_chain(nodes, prep.input_name)
    assert found is not None  # the reader checked
    chain, transpose = found
    n, h, w, c = prep.input_shape
    nchw = (n, c, h, w)
    t.shapes[prep.input_name] = nchw
    current, previous = prep.input_name, prep.input_name  # IR name, ONNX name
    for node in chain:
        t.node = node
        out = node.output[0] + "_nchw"
        inputs = []
        for i in node.input:
            if i == previous:
                inputs.append(current)
            elif i and node.op_type in ("Add", "Sub", "Mul", "Div"):
                arr = t.need_const(i, "operand").astype(np.float32)
                if arr.ndim > 4:
                    raise t.error(f"constant {i!r} of rank {arr.ndim} on the NHWC input")
                arr = arr.reshape((1,) * (4 - arr.ndim) + arr.shape).transpose(NCHW_PERM)
                prep.consts[i + "_nchw"] = np.ascontiguousarray(arr)
                inputs.append(i + "_nchw")
            else:
                inputs.append(i)  # a Clip bound, a constant
        t.shapes[out] = nchw
        renamed = _renamed_node(node, inputs, out, prep.name_of(node))
        t.node = renamed
        HANDLERS[node.op_type](t, renamed, _attrs(node))
        current, previous = out, node.output[0]
    t.alias[transpose.output[0]] = current
    t.notes.append(f"the input {prep.input_name!r} is NHWC {prep.input_shape} (a TensorFlow "
                   f"export): its Transpose {prep.name_of(transpose)!r} to NCHW is absorbed, "
                   f"the Caffe net takes NCHW {nchw}"
                   + (f"; {len(chain)} elementwise node(s) before it now work on NCHW"
                      if chain else ""))
    return nchw, [x for x in nodes if x is not transpose and x not in chain]


def _renamed_node(node, inputs: list[str], output: str, name: str):
    from onnx import helper

    made = helper.make_node(node.op_type, inputs, [output], name=name)
    made.attribute.extend(node.attribute)
    return made


def _consumers(graph: Graph) -> dict[str, list[Node]]:
    users: dict[str, list[Node]] = {}
    for n in graph.nodes:
        for i in n.inputs:
            users.setdefault(i, []).append(n)
    return users


def _fuse_matmul_bias(graph: Graph, t: Translation) -> None:
    """linear (from MatMul, no bias) followed by add of a constant vector: one linear."""
    users = _consumers(graph)
    drop = set()
    for n in graph.nodes:
        if n.op != "linear" or "bias" in n.params or n.outputs[0] in graph.outputs:
            continue
        after = users.get(n.outputs[0], [])
        if len(after) != 1 or after[0].op != "add" or len(after[0].inputs) != 2:
            continue
        add = after[0]
        other = add.inputs[1] if add.inputs[0] == n.outputs[0] else add.inputs[0]
        bias = graph.constants.get(other)
        out = n.params["weight"].shape[0]
        if bias is None or bias.size != out or bias.shape[-1:] != (out,):
            continue
        n.params["bias"] = bias.reshape(-1).astype(np.float32)
        n.outputs = list(add.outputs)
        drop.add(id(add))
    graph.nodes = [n for n in graph.nodes if id(n) not in drop]


def _fuse_pads(graph: Graph, t: Translation) -> None:
    """A constant pad whose every consumer can take the padding itself disappears into them."""
    users = _consumers(graph)
    drop = set()
    for p in graph.nodes:
        if p.op != "pad" or p.outputs[0] in graph.outputs:
            continue
        after = users.get(p.outputs[0], [])
        value = p.attrs["value"]
        if not after or not all(_takes_pad(n, value) for n in after):
            continue
        for n in after:
            n.attrs["pads"] = tuple(a + b for a, b in zip(n.attrs["pads"], p.attrs["pads"],
                                                          strict=True))
            if n.op == "avg_pool":
                n.attrs["count_include_pad"] = True
            n.inputs = [p.inputs[0] if i == p.outputs[0] else i for i in n.inputs]
        t.notes.append(f"pad {p.name!r} {p.attrs['pads']} folded into "
                       + ", ".join(repr(n.name) for n in after))
        drop.add(id(p))
    graph.nodes = [n for n in graph.nodes if id(n) not in drop]


def _takes_pad(n: Node, value: float) -> bool:
    if n.op == "conv":
        return value == 0.0
    if n.op == "max_pool":  # ONNX max pooling pads with -inf; so does a -inf Pad
        return value == -math.inf and not n.attrs["ceil"]
    if n.op == "avg_pool":  # zeros that count; the node's own pads must count them too
        return value == 0.0 and (not any(n.attrs["pads"]) or n.attrs["count_include_pad"]) \
            and not n.attrs["ceil"]
    return False


def _fuse_swish(graph: Graph) -> None:
    """x * sigmoid(x) -> silu(x); x * hard_sigmoid(x; 1/6, 1/2) -> hard_swish(x)."""
    producer = {o: n for n in graph.nodes for o in n.outputs}
    users = _consumers(graph)
    drop = set()
    for m in graph.nodes:
        if m.op != "mul" or len(m.inputs) != 2:
            continue
        for gate_out, x in (m.inputs, m.inputs[::-1]):
            gate = producer.get(gate_out)
            if gate is None or gate.inputs != [x] or len(users.get(gate_out, [])) != 1 \
                    or gate_out in graph.outputs:
                continue
            if gate.op == "sigmoid":
                op = "silu"
            elif gate.op == "hard_sigmoid" and math.isclose(gate.attrs["alpha"], 1 / 6,
                                                            rel_tol=1e-6) \
                    and gate.attrs["beta"] == 0.5:
                op = "hard_swish"
            else:
                continue
            m.op, m.inputs, m.attrs = op, [x], {}
            drop.add(id(gate))
            break
    graph.nodes = [n for n in graph.nodes if id(n) not in drop]


def _prune(graph: Graph) -> None:
    """Drops nodes nothing needs (a Dropout's mask, shape computations left over)."""
    needed = set(graph.outputs)
    kept = []
    for n in reversed(graph.nodes):
        if any(o in needed for o in n.outputs):
            kept.append(n)
            needed.update(n.inputs)
    graph.nodes = kept[::-1]
