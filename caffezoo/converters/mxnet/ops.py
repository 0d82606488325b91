"""One handler per MXNet op (aliases of every era included): read the attributes as MXNet
does, check the tensors, emit canonical nodes (caffezoo.graph.ir) with normalised attributes and
their static output shapes. See frontend.py for the semantics kept from MXNet."""

from __future__ import annotations

import math

import numpy as np

from caffezoo.converters.mxnet.context import ARGUMENTS, Attrs, Context, OpNode, handler
from caffezoo.converters.mxnet.symbol import AttrError, is_none, parse_bool
from caffezoo.errors import ConversionError
from caffezoo.geometry import full_pooled, source_pooled


def _need_4d(n: OpNode, shape: tuple[int, ...]) -> None:
    if len(shape) != 4:
        raise ConversionError(f"{n.describe()}: input of shape {list(shape)}; only NCHW (4-D) "
                              "inputs are supported")


def _layout(n: OpNode, a: Attrs) -> None:
    layout = a.str("layout")
    if layout not in (None, "NCHW"):
        raise ConversionError(f"{n.describe()}: layout {layout!r}; only NCHW is supported")


def _no_bias(attrs: dict[str, str]) -> bool:
    raw = attrs.get("no_bias")
    try:
        return False if is_none(raw) else parse_bool(raw)
    except AttrError:
        return False


# ---------------------------------------------------------------------------------------------
# layers with weights


@handler("Convolution", "Convolution_v1",
         arguments=lambda at: ("data", "weight") + (() if _no_bias(at) else ("bias",)))
def _convolution(ctx: Context, n: OpNode, a: Attrs) -> None:
    x = ctx.value(n)
    shape = ctx.shape(x)
    _need_4d(n, shape)
    _layout(n, a)
    kh, kw = a.pair("kernel", 0)
    if kh <= 0 or kw <= 0:
        raise ConversionError(f"{n.describe()}: no kernel size")
    sh, sw = a.pair("stride", 1, least=1)
    ph, pw = a.pair("pad", 0)
    dh, dw = a.pair("dilate", 1, least=1)
    group = a.int("num_group", 1)
    filters = a.int("num_filter", None)
    no_bias = a.bool("no_bias", False)
    channels = shape[1]
    if filters is None or group <= 0 or channels % group or filters % group:
        raise ConversionError(f"{n.describe()}: num_filter {filters}, num_group {group} do not "
                              f"fit {channels} input channels")
    weight = ctx.param(n, 1, (filters, channels // group, kh, kw), "weight")
    bias = None if no_bias else ctx.param(n, 2, (filters,), "bias")
    out_h = (shape[2] + 2 * ph - (dh * (kh - 1) + 1)) // sh + 1
    out_w = (shape[3] + 2 * pw - (dw * (kw - 1) + 1)) // sw + 1
    if out_h <= 0 or out_w <= 0:
        raise ConversionError(f"{n.describe()}: a {kh}x{kw} kernel does not fit the "
                              f"{shape[2]}x{shape[3]} input")
    ctx.emit(n, "conv", [x], (shape[0], filters, out_h, out_w),
             {"stride": (sh, sw), "pads": (ph, pw, ph, pw), "dilation": (dh, dw),
              "group": group},
             {"weight": weight, "bias": bias})


@handler("BatchNorm", "BatchNorm_v1", "CuDNNBatchNorm",
         arguments=lambda at: ("data", "gamma", "beta", "moving_mean", "moving_var"))
def _batch_norm(ctx: Context, n: OpNode, a: Attrs) -> None:
    x = ctx.value(n)
    shape = ctx.shape(x)
    axis = a.int("axis", 1)
    if axis < 0:
        axis += len(shape)
    if axis != 1 or len(shape) < 2:
        raise ConversionError(f"{n.describe()}: normalises axis {a.n.attrs.get('axis')} of "
                              f"{list(shape)}; only the channel axis 1 is supported")
    if a.bool("output_mean_var", False):
        ctx.notes.add(n.name, "output_mean_var ignored (only the output is used)")
    c = (shape[1],)
    eps = a.float("eps", 1e-3)
    fix_gamma = a.bool("fix_gamma", True)
    gamma = ctx.param(n, 1, c, "gamma")
    beta = ctx.param(n, 2, c, "beta")
    mean = ctx.param(n, 3, c, "moving_mean")
    var = ctx.param(n, 4, c, "moving_var")
    if fix_gamma:
        if gamma is not None and not np.all(gamma == 1):
            ctx.notes.add(n.name, "fix_gamma=True, so gamma is 1 (the file holds other "
                             "values, which MXNet ignores too)")
        gamma = np.ones(c, np.float32)
    if var is not None and np.any(var < 0):
        ctx.problems.append(f"tensor {n.args[4].name!r} (moving_var of {n.describe()}) has "
                            "negative values")
    ctx.emit(n, "batch_norm", [x], shape, {"eps": float(eps)},
             {"mean": mean, "var": var, "gamma": gamma, "beta": beta})


@handler("FullyConnected",
         arguments=lambda at: ("data", "weight") + (() if _no_bias(at) else ("bias",)))
def _fully_connected(ctx: Context, n: OpNode, a: Attrs) -> None:
    x = ctx.value(n)
    shape = ctx.shape(x)
    hidden = a.int("num_hidden", None)
    if hidden is None or hidden <= 0:
        raise ConversionError(f"{n.describe()}: no num_hidden")
    if len(shape) > 2:
        if not a.bool("flatten", True):
            raise ConversionError(f"{n.describe()}: flatten=False on a {len(shape)}-D input "
                                  "(applies to the last axis); only 2-D inputs are supported")
        flat = (shape[0], math.prod(shape[1:]))
        x = ctx.emit(n, "flatten", [x], flat, {"axis": 1}, name=f"{n.name}_flatten",
                     out=f"{n.name}_flatten_output")
        shape = flat
    elif len(shape) != 2:
        raise ConversionError(f"{n.describe()}: input of shape {list(shape)}")
    weight = ctx.param(n, 1, (hidden, shape[1]), "weight")
    bias = None if a.bool("no_bias", False) else ctx.param(n, 2, (hidden,), "bias")
    ctx.emit(n, "linear", [x], (shape[0], hidden), {}, {"weight": weight, "bias": bias})


@handler("LeakyReLU", arguments=lambda at: ("data", "gamma")
         if at.get("act_type", "leaky").strip() == "prelu" else ("data",))
def _leaky_relu(ctx: Context, n: OpNode, a: Attrs) -> None:
    x = ctx.value(n)
    shape = ctx.shape(x)
    act = a.str("act_type", "leaky")
    if act == "leaky":
        ctx.emit(n, "leaky_relu", [x], shape, {"alpha": a.float("slope", 0.25)})
    elif act == "elu":
        ctx.emit(n, "elu", [x], shape, {"alpha": a.float("slope", 0.25)})
    elif act == "rrelu":  # inference uses the mean of the random slope's range
        lo, hi = a.float("lower_bound", 0.125), a.float("upper_bound", 0.334)
        ctx.emit(n, "leaky_relu", [x], shape, {"alpha": (lo + hi) / 2})
        ctx.notes.add(n.name, "rrelu at inference: slope (lower + upper) / 2")
    elif act == "prelu":
        arr = n.args[1].array if len(n.args) > 1 else None
        count = shape[1] if arr is None or arr.size != 1 else 1
        slope = ctx.param(n, 1, (count,), "gamma")
        ctx.emit(n, "prelu", [x], shape, {}, {"slope": slope})
    else:
        raise ConversionError(f"{n.describe()}: act_type {act!r} has no exact translation "
                              "(leaky, prelu, elu, rrelu do)")


# ---------------------------------------------------------------------------------------------
# activations and pointwise ops


ACTIVATIONS = {"relu": "relu", "sigmoid": "sigmoid", "tanh": "tanh", "softrelu": "softplus"}


@handler("Activation")
def _activation(ctx: Context, n: OpNode, a: Attrs) -> None:
    act = a.str("act_type", "")
    if act not in ACTIVATIONS:
        raise ConversionError(f"{n.describe()}: act_type {act!r} has no translation "
                              f"({', '.join(ACTIVATIONS)} do)")
    x = ctx.value(n)
    ctx.emit(n, ACTIVATIONS[act], [x], ctx.shape(x))


@handler("relu", "sigmoid", "tanh", "softrelu")
def _unary(ctx: Context, n: OpNode, a: Attrs) -> None:
    x = ctx.value(n)
    ctx.emit(n, ACTIVATIONS[n.op], [x], ctx.shape(x))


@handler("clip")
def _clip(ctx: Context, n: OpNode, a: Attrs) -> None:
    x = ctx.value(n)
    lo, hi = a.float("a_min", None), a.float("a_max", None)
    if lo is None or hi is None:
        raise ConversionError(f"{n.describe()}: needs a_min and a_max")
    ctx.emit(n, "clip", [x], ctx.shape(x), {"min": float(lo), "max": float(hi)})


@handler("hard_sigmoid")
def _hard_sigmoid(ctx: Context, n: OpNode, a: Attrs) -> None:
    x = ctx.value(n)
    ctx.emit(n, "hard_sigmoid", [x], ctx.shape(x),
             {"alpha": a.float("alpha", 0.2), "beta": a.float("beta", 0.5)})


@handler("Dropout", "_copy", "identity", "BlockGrad", "stop_gradient", "_CrossDeviceCopy")
def _identity(ctx: Context, n: OpNode, a: Attrs) -> None:
    x = ctx.value(n)
    ctx.emit(n, "identity", [x], ctx.shape(x))


def _broadcast(n: OpNode, shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
    try:
        return tuple(int(d) for d in np.broadcast_shapes(*shapes))
    except ValueError:
        raise ConversionError(f"{n.describe()}: input shapes "
                              f"{', '.join(str(list(s)) for s in shapes)} do not broadcast"
                              ) from None


BINARY = {
    "add": ("elemwise_add", "_Plus", "_plus", "_add", "broadcast_add", "broadcast_plus"),
    "sub": ("elemwise_sub", "_Minus", "_minus", "_sub", "broadcast_sub", "broadcast_minus"),
    "mul": ("elemwise_mul", "_Mul", "_mul", "broadcast_mul"),
    "div": ("elemwise_div", "_Div", "_div", "broadcast_div"),
}
BINARY_OP = {name: op for op, names in BINARY.items() for name in names}


@handler(*BINARY_OP)
def _binary(ctx: Context, n: OpNode, a: Attrs) -> None:
    if len(n.args) != 2:
        raise ConversionError(f"{n.describe()}: expected 2 inputs, got {len(n.args)}")
    ins = [ctx.operand(n, i) for i in range(2)]
    if all(v in ctx.graph.constants for v in ins):
        raise ConversionError(f"{n.describe()}: both inputs are stored tensors")
    shapes = [ctx.shape(v) for v in ins]
    if n.op.startswith("elemwise_") and shapes[0] != shapes[1]:
        raise ConversionError(f"{n.describe()}: elementwise op on shapes {list(shapes[0])} "
                              f"and {list(shapes[1])}")
    ctx.emit(n, BINARY_OP[n.op], ins, _broadcast(n, shapes))


@handler("ElementWiseSum", "add_n", "_sum")
def _sum(ctx: Context, n: OpNode, a: Attrs) -> None:
    ins = ctx.values(n)
    shapes = [ctx.shape(v) for v in ins]
    if any(s != shapes[0] for s in shapes):
        raise ConversionError(f"{n.describe()}: sums inputs of different shapes "
                              f"{', '.join(str(list(s)) for s in shapes)}")
    if len(ins) == 1:
        ctx.emit(n, "identity", ins, shapes[0])
    else:
        ctx.emit(n, "add", ins, shapes[0])


SCALAR = {  # op -> (canonical op, scalar first)
    "_plus_scalar": ("add", False), "_PlusScalar": ("add", False),
    "_minus_scalar": ("sub", False), "_MinusScalar": ("sub", False),
    "_rminus_scalar": ("sub", True), "_RMinusScalar": ("sub", True),
    "_mul_scalar": ("mul", False), "_MulScalar": ("mul", False),
    "_div_scalar": ("div", False), "_DivScalar": ("div", False),
}


@handler(*SCALAR)
def _scalar(ctx: Context, n: OpNode, a: Attrs) -> None:
    x = ctx.value(n)
    s = a.float("scalar", None)
    if s is None:
        raise ConversionError(f"{n.describe()}: no scalar")
    op, first = SCALAR[n.op]
    c = ctx.constant(f"{n.name}_scalar", s)
    ctx.emit(n, op, [c, x] if first else [x, c], ctx.shape(x))


# ---------------------------------------------------------------------------------------------
# pooling


@handler("Pooling", "Pooling_v1")
def _pooling(ctx: Context, n: OpNode, a: Attrs) -> None:
    x = ctx.value(n)
    shape = ctx.shape(x)
    _need_4d(n, shape)
    _layout(n, a)
    kind = a.str("pool_type", "max")
    if kind not in ("max", "avg"):
        raise ConversionError(f"{n.describe()}: pool_type {kind!r}; max and avg are supported")
    if a.bool("global_pool", False):
        op = "global_max_pool" if kind == "max" else "global_avg_pool"
        ctx.emit(n, op, [x], shape[:2] + (1, 1), {"keepdims": True})
        return
    k = a.pair("kernel", 0)
    s = a.pair("stride", 1)
    p = a.pair("pad", 0)
    if min(k) <= 0 or min(s) <= 0:
        raise ConversionError(f"{n.describe()}: kernel {k}, stride {s}")
    convention = a.str("pooling_convention", "valid")
    if convention not in ("valid", "full"):
        raise ConversionError(f"{n.describe()}: pooling_convention {convention!r} has no exact "
                              "translation (valid and full do)")
    ceil = convention == "full"
    out = []
    for size, kk, ss, pp in zip(shape[2:], k, s, p, strict=True):
        span = size + 2 * pp - kk
        if span < 0:
            raise ConversionError(f"{n.describe()}: a {k[0]}x{k[1]} window does not fit the "
                                  f"{shape[2]}x{shape[3]} input (pad {p})")
        o = full_pooled(size, kk, ss, pp, pp, ceil)
        if ceil and pp > 0 and source_pooled(size, kk, ss, pp, pp, ceil) != o:
            # MXNet keeps a last window that starts in the padding; Caffe and PyTorch drop it
            raise ConversionError(f"{n.describe()}: with pooling_convention 'full' its last "
                                  "window lies wholly in the padding, which Caffe drops")
        out.append(o)
    attrs = {"kernel": k, "stride": s, "pads": (p[0], p[1], p[0], p[1]), "ceil": ceil}
    if kind == "avg":
        attrs["count_include_pad"] = a.bool("count_include_pad", True)
        ctx.emit(n, "avg_pool", [x], shape[:2] + tuple(out), attrs)
    else:
        ctx.emit(n, "max_pool", [x], shape[:2] + tuple(out), attrs)


@handler("mean")
def _mean(ctx: Context, n: OpNode, a: Attrs) -> None:
    """mean over H and W (what some exports use for global average pooling)."""
    x = ctx.value(n)
    shape = ctx.shape(x)
    axes = tuple(int(v) % len(shape) for v in a.tuple("axis", ()) if v is not None)
    if len(shape) != 4 or sorted(axes) != [2, 3] or a.bool("exclude", False):
        raise ConversionError(f"{n.describe()}: mean over axes {list(axes)} of "
                              f"{list(shape)}; only the spatial mean (axis=(2,3)) is supported")
    if a.bool("keepdims", False):
        ctx.emit(n, "global_avg_pool", [x], shape[:2] + (1, 1), {"keepdims": True})
        return
    pooled = ctx.emit(n, "global_avg_pool", [x], shape[:2] + (1, 1), {"keepdims": True},
                      name=f"{n.name}_pool", out=f"{n.name}_pool_output")
    ctx.emit(n, "flatten", [pooled], shape[:2], {"axis": 1})


# ---------------------------------------------------------------------------------------------
# shape ops


@handler("Concat", "concat")
def _concat(ctx: Context, n: OpNode, a: Attrs) -> None:
    ins = ctx.values(n)
    shapes = [ctx.shape(v) for v in ins]
    axis = a.int("dim", 1)
    rank = len(shapes[0])
    if axis < 0:
        axis += rank
    if not 0 <= axis < rank or any(len(s) != rank or s[:axis] + s[axis + 1:] !=
                                   shapes[0][:axis] + shapes[0][axis + 1:] for s in shapes):
        raise ConversionError(f"{n.describe()}: cannot concatenate "
                              f"{', '.join(str(list(s)) for s in shapes)} on axis {axis}")
    out = list(shapes[0])
    out[axis] = sum(s[axis] for s in shapes)
    if len(ins) == 1:
        ctx.emit(n, "identity", ins, tuple(out))
    else:
        ctx.emit(n, "concat", ins, tuple(out), {"axis": axis})


@handler("Flatten", "flatten")
def _flatten(ctx: Context, n: OpNode, a: Attrs) -> None:
    x = ctx.value(n)
    shape = ctx.shape(x)
    ctx.emit(n, "flatten", [x], (shape[0], math.prod(shape[1:])), {"axis": 1})


def reshape_shape(src: tuple[int, ...], spec: tuple[int, ...], reverse: bool = False
                  ) -> tuple[int, ...]:
    """MXNet Reshape's special values: 0 copy, -1 infer, -2 copy the rest, -3 merge two,
    -4 split one into the next two (one of which may be -1); `reverse` reads right to left."""
    if reverse:
        out = reshape_shape(src[::-1], spec[::-1], False)  # as MXNet: both reversed
        return out[::-1]
    out: list[int] = []
    i = j = 0
    infer = -1
    while j < len(spec):
        v = spec[j]
        if v > 0:
            out.append(v)
            i += 1
        elif v == 0:
            out.append(src[i])
            i += 1
        elif v == -1:
            if infer >= 0:
                raise ValueError("more than one -1")
            infer = len(out)
            out.append(1)
            i += 1
        elif v == -2:
            out.extend(src[i:])
            i = len(src)
        elif v == -3:
            out.append(src[i] * src[i + 1])
            i += 2
        elif v == -4:
            a, b = spec[j + 1], spec[j + 2]
            d = src[i]
            if a == -1:
                a = d // b
            if b == -1:
                b = d // a
            if a * b != d:
                raise ValueError(f"-4 split of {d} into {a} x {b}")
            out.extend([a, b])
            i += 1
            j += 2
        else:
            raise ValueError(f"unknown special value {v}")
        j += 1
    total = math.prod(src)
    if infer >= 0:
        rest = math.prod(out) // max(out[infer], 1)
        if rest == 0 or total % rest:
            raise ValueError("-1 cannot be inferred")
        out[infer] = total // rest
    if math.prod(out) != total:
        raise ValueError(f"{list(out)} does not hold {total} elements")
    return tuple(out)


@handler("Reshape", "reshape")
def _reshape(ctx: Context, n: OpNode, a: Attrs) -> None:
    x = ctx.value(n)
    shape = ctx.shape(x)
    spec = a.tuple("shape", ())
    target = a.tuple("target_shape", ())
    try:
        if spec:
            out = reshape_shape(shape, tuple(int(v) for v in spec), a.bool("reverse", False))
        elif target:  # the pre-0.9 parameter: one 0 is inferred; keep_highest keeps dim 0
            t = [(-1 if v == 0 else int(v)) for v in target]
            if a.bool("keep_highest", False):
                t = [0] + t
            out = reshape_shape(shape, tuple(t))
        else:
            raise ValueError("no shape")
    except (ValueError, IndexError) as err:
        raise ConversionError(f"{n.describe()}: cannot reshape {list(shape)} to "
                              f"{n.attrs.get('shape') or n.attrs.get('target_shape')} ({err})"
                              ) from None
    if out == shape:
        ctx.emit(n, "identity", [x], out)
    else:
        ctx.emit(n, "reshape", [x], out, {"shape": out})


@handler("transpose", "SwapAxis", "swapaxes")
def _transpose(ctx: Context, n: OpNode, a: Attrs) -> None:
    x = ctx.value(n)
    shape = ctx.shape(x)
    rank = len(shape)
    if n.op == "transpose":
        axes = tuple(int(v) % rank for v in a.tuple("axes", ()) if v is not None)
        perm = axes or tuple(range(rank))[::-1]
    else:
        d1, d2 = a.int("dim1", 0) % rank, a.int("dim2", 0) % rank
        perm_l = list(range(rank))
        perm_l[d1], perm_l[d2] = perm_l[d2], perm_l[d1]
        perm = tuple(perm_l)
    if sorted(perm) != list(range(rank)):
        raise ConversionError(f"{n.describe()}: axes {list(perm)} are not a permutation")
    out = tuple(shape[p] for p in perm)
    if perm == tuple(range(rank)):
        ctx.emit(n, "identity", [x], out)
    else:
        ctx.emit(n, "transpose", [x], out, {"perm": perm})


@handler("Pad", "pad")
def _pad(ctx: Context, n: OpNode, a: Attrs) -> None:
    x = ctx.value(n)
    shape = ctx.shape(x)
    _need_4d(n, shape)
    mode = a.str("mode", "constant")
    width = a.tuple("pad_width", ())
    if mode != "constant" or len(width) != 8 or any(width[:4]):
        raise ConversionError(f"{n.describe()}: mode {mode!r}, pad_width {list(width)}; only "
                              "constant padding of H and W is supported")
    top, bottom, left, right = (int(v) for v in width[4:])
    ctx.emit(n, "pad", [x], (shape[0], shape[1], shape[2] + top + bottom, shape[3] + left + right),
             {"pads": (top, left, bottom, right), "value": a.float("constant_value", 0.0)})


# ---------------------------------------------------------------------------------------------
# softmax


@handler("softmax", "Softmax", "SoftmaxOutput", "SoftmaxActivation",
         arguments=None)
def _softmax(ctx: Context, n: OpNode, a: Attrs) -> None:
    x = ctx.value(n)
    shape = ctx.shape(x)
    rank = len(shape)
    if n.op == "softmax":
        axis = a.int("axis", -1) % rank
        temp = a.float("temperature", None)
        if (temp is not None and temp != 1.0) or a.bool("use_length", False):
            raise ConversionError(f"{n.describe()}: temperature/use_length have no "
                                  "translation")
    elif n.op == "SoftmaxActivation":
        axis = 1
        if a.str("mode", "instance") == "instance" and rank > 2 and math.prod(shape[2:]) != 1:
            raise ConversionError(f"{n.describe()}: instance softmax over a {list(shape)} "
                                  "input (all of C, H, W)")
    else:  # SoftmaxOutput (and its old name Softmax): the label input is ignored
        axis = rank - 1 if a.bool("preserve_shape", False) else 1
        if rank > 2 and not a.bool("multi_output", False) and not a.bool("preserve_shape",
                                                                         False):
            if math.prod(shape[2:]) != 1:
                raise ConversionError(f"{n.describe()}: softmax over the flattened "
                                      f"{list(shape)} input")
    ctx.emit(n, "softmax", [x], shape, {"axis": axis})


for _op in ("SoftmaxOutput", "Softmax"):
    ARGUMENTS[_op] = lambda at: ("data", "label")
