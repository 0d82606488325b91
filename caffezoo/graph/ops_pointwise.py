"""Handlers of element-wise ops: activations and broadcasting arithmetic.

Stock Caffe has no ReLU6, Clip, HardSwish or Swish; their stock forms here are exact:
- clip(lo, hi) = -max(-max(x, lo), -hi): `max(x, 0)` is ReLU, `max(x, c)` an Eltwise MAX with a
  constant blob, `-y` a Power with scale -1 (a sign flip, exact), and a constant blob is a Power
  with scale 0 and shift c (Caffe's Power writes `shift` for every element when scale is 0;
  OpenCV computes shift + 0 * x = shift). Every step is exact, so the result is bit-identical
  to clamping.
- hard_sigmoid = clip(0, 1) of Power(scale alpha, shift beta); hard_swish = x * clip(x + 3, 0, 6)
  then * 1/6; silu = x * Sigmoid(x) (Eltwise PROD): one rounding away from the source's own
  order of operations, i.e. fp32 noise.
- softplus = BNLL (Caffe computes log(1 + exp(x)) in the overflow-safe form).

Arithmetic with numpy broadcasting: equal shapes -> Eltwise (SUM with coefficients [1, -1] for
sub, PROD); a (N, C, 1, 1) value times an (N, C, H, W) one (squeeze-excitation) -> Flatten to
(N, C) + Scale with two bottoms on axis 0; their sum -> Bias with two bottoms, or (OpenCV,
subtractions) the small one spread exactly over the big one's shape (ones times it) and an
Eltwise SUM; a constant operand -> Power (scalar) or Scale (a
tensor over contiguous axes: scale blob for mul, scale 1 and bias blob for add/sub, both exact).
Division by a constant multiplies by its reciprocal: exact when the constant is a power of two,
otherwise within one rounding of the quotient (noted); division by a value takes its reciprocal
with Power(power -1) first (noted).
"""

from __future__ import annotations

import math

import numpy as np

from caffezoo.graph.context import EmitContext, handler
from caffezoo.graph.ir import Node

# -- single layers ----------------------------------------------------------------------------


@handler("relu")
def relu(ctx: EmitContext, node: Node) -> None:
    ctx.b.relu(ctx.bottom(node, node.inputs[0]), ctx.layer_name(node), top=ctx.top(node))


@handler("leaky_relu")
def leaky_relu(ctx: EmitContext, node: Node) -> None:
    alpha = float(node.attrs.get("alpha", 0.01))
    ctx.b.relu(ctx.bottom(node, node.inputs[0]), ctx.layer_name(node), negative_slope=alpha,
               top=ctx.top(node))


def _simple(ctx: EmitContext, node: Node, type_: str):
    return ctx.b.layer(type_, ctx.layer_name(node), [ctx.bottom(node, node.inputs[0])],
                       [ctx.top(node)])


@handler("sigmoid")
def sigmoid(ctx: EmitContext, node: Node) -> None:
    _simple(ctx, node, "Sigmoid")


@handler("tanh")
def tanh(ctx: EmitContext, node: Node) -> None:
    _simple(ctx, node, "TanH")


@handler("softplus")
def softplus(ctx: EmitContext, node: Node) -> None:
    _simple(ctx, node, "BNLL")


@handler("elu")
def elu(ctx: EmitContext, node: Node) -> None:
    alpha = float(node.attrs.get("alpha", 1.0))
    layer = _simple(ctx, node, "ELU")
    if alpha != 1.0:
        layer.elu_param.alpha = alpha


@handler("prelu")
def prelu(ctx: EmitContext, node: Node) -> None:
    x = ctx.bottom(node, node.inputs[0])
    slope = node.params.get("slope")
    if slope is None:
        raise ctx.refuse(node, "missing parameter 'slope'")
    slope = np.asarray(slope, np.float32).reshape(-1)
    channels = ctx.shape(x)[1]
    if slope.size not in (1, channels):
        raise ctx.refuse(node, f"{slope.size} slopes for {channels} channels")
    name = ctx.layer_name(node)
    ctx.b.layer("PReLU", name, [x], [ctx.top(node)])
    # a shared slope repeated per channel: Caffe's channel_shared form is a blob with no axes,
    # which OpenCV cannot load
    ctx.set_weights(name, np.broadcast_to(slope, (channels,)))


# -- clip and its relatives ---------------------------------------------------------------------


def _power(ctx: EmitContext, node: Node, x: str, suffix: str, top: str | None = None,
           power: float = 1.0, scale: float = 1.0, shift: float = 0.0) -> str:
    top = top or ctx.tmp(node, suffix)
    p = ctx.b.layer("Power", ctx.layer_name(node, suffix), [x], [top]).power_param
    if power != 1.0:
        p.power = power
    if scale != 1.0:
        p.scale = scale
    if shift != 0.0:
        p.shift = shift
    return top


def _max_const(ctx: EmitContext, node: Node, x: str, c: float, suffix: str,
               top: str | None) -> str:
    """max(x, c), exactly."""
    if c == 0.0:
        return ctx.b.relu(x, ctx.layer_name(node, suffix), top=top or ctx.tmp(node, suffix))
    const = _power(ctx, node, x, f"{suffix}_const", scale=0.0, shift=c)
    return ctx.b.eltwise([x, const], ctx.layer_name(node, suffix), op="max",
                         top=top or ctx.tmp(node, suffix))


def clip_blob(ctx: EmitContext, node: Node, x: str, lo: float, hi: float, top: str,
              suffix: str = "clip") -> str:
    """clamp(x, lo, hi) into `top`: ReLU6 where the target has it, else exact stock layers."""
    if lo == 0.0 and hi == 6.0 and ctx.has_layer("ReLU6"):
        ctx.b.layer("ReLU6", ctx.layer_name(node, suffix if suffix != "clip" else ""), [x], [top])
        return top
    if lo == 0.0 and math.isfinite(hi) and hi > 0 and ctx.target == "fork":
        layer = ctx.b.layer("ReLU6", ctx.layer_name(node, suffix if suffix != "clip" else ""),
                            [x], [top])
        layer.relu6_param.threshold = hi  # the fork's ReLU6 clamps at `threshold`
        return top
    if hi == math.inf:
        return _max_const(ctx, node, x, lo, f"{suffix}_max", top)
    y = x if lo == -math.inf else _max_const(ctx, node, x, lo, f"{suffix}_max", None)
    neg = _power(ctx, node, y, f"{suffix}_neg", scale=-1.0)
    m = _max_const(ctx, node, neg, -hi, f"{suffix}_min", None)
    _power(ctx, node, m, f"{suffix}_out", top=top, scale=-1.0)
    return top


@handler("clip")
def clip(ctx: EmitContext, node: Node) -> None:
    lo = float(node.attrs.get("min", -math.inf))
    hi = float(node.attrs.get("max", math.inf))
    if math.isnan(lo) or math.isnan(hi) or lo > hi:
        raise ctx.refuse(node, f"clip bounds ({lo}, {hi})")
    x = ctx.bottom(node, node.inputs[0])
    if lo == -math.inf and hi == math.inf:
        ctx.alias(node, node.inputs[0], "unbounded clip is the identity")
        return
    start = ctx.b.layer_count
    clip_blob(ctx, node, x, lo, hi, ctx.top(node))
    if ctx.b.layer_count - start > 1:
        ctx.note(node, f"clip({lo:g}, {hi:g}) as exact stock layers (ReLU, Power, Eltwise MAX)")


@handler("hard_sigmoid")
def hard_sigmoid(ctx: EmitContext, node: Node) -> None:
    alpha = float(node.attrs.get("alpha", 0.2))
    beta = float(node.attrs.get("beta", 0.5))
    x = ctx.bottom(node, node.inputs[0])
    if ctx.has_layer("HardSigmoid"):
        layer = ctx.b.layer("HardSigmoid", ctx.layer_name(node), [x], [ctx.top(node)])
        p = layer.hardsigmoid_param  # the fork computes max(0, min(1, x * alpha + beta))
        if np.float32(alpha) != np.float32(0.2):
            p.alpha = alpha
        if np.float32(beta) != np.float32(0.5):
            p.beta = beta
        return
    lin = _power(ctx, node, x, "lin", scale=alpha, shift=beta)
    clip_blob(ctx, node, lin, 0.0, 1.0, ctx.top(node))
    ctx.note(node, f"hard_sigmoid as Power(scale {alpha:g}, shift {beta:g}) and clip(0, 1)")


@handler("hard_swish")
def hard_swish(ctx: EmitContext, node: Node) -> None:
    x = ctx.bottom(node, node.inputs[0])
    if ctx.has_layer("HardSwish"):
        ctx.b.layer("HardSwish", ctx.layer_name(node), [x], [ctx.top(node)])
        return
    shifted = _power(ctx, node, x, "plus3", shift=3.0)
    r6 = clip_blob(ctx, node, shifted, 0.0, 6.0, ctx.tmp(node, "relu6"), suffix="relu6")
    prod = ctx.b.eltwise([x, r6], ctx.layer_name(node, "mul"), op="prod",
                         top=ctx.tmp(node, "mul"))
    _power(ctx, node, prod, "div6", top=ctx.top(node), scale=1.0 / 6.0)
    ctx.note(node, "hard_swish as x * clip(x + 3, 0, 6) * (1/6) in stock layers")


@handler("silu")
def silu(ctx: EmitContext, node: Node) -> None:
    x = ctx.bottom(node, node.inputs[0])
    s = ctx.b.layer("Sigmoid", ctx.layer_name(node, "sigmoid"), [x], [ctx.tmp(node, "sigmoid")])
    ctx.b.eltwise([x, s.top[0]], ctx.layer_name(node), op="prod", top=ctx.top(node))


@handler("max")
def elementwise_max(ctx: EmitContext, node: Node) -> None:
    """max(a, b) of two values of one shape (the front ends check the shapes)."""
    blobs = [ctx.bottom(node, v) for v in node.inputs]
    if len(blobs) != 2 or ctx.shape(blobs[0]) != ctx.shape(blobs[1]):
        raise ctx.refuse(node, "max of values of different shapes")
    ctx.b.eltwise(blobs, ctx.layer_name(node), op="max", top=ctx.top(node))


# -- arithmetic ----------------------------------------------------------------------------------


def _is_pow2(c: np.ndarray) -> bool:
    m, _ = np.frexp(np.asarray(c, np.float64))
    return bool(np.all(np.abs(m) == 0.5))


@handler("add", "sub", "mul", "div")
def arithmetic(ctx: EmitContext, node: Node) -> None:
    op = node.op
    if not node.inputs or (op != "add" and len(node.inputs) != 2):
        raise ctx.refuse(node, f"{op} of {len(node.inputs)} inputs")
    consts = [ctx.is_constant(v) for v in node.inputs]
    if all(consts):
        raise ctx.refuse(node, "all operands are constants (the front end folds these)")
    if len(node.inputs) == 1:
        ctx.alias(node, node.inputs[0], "sum of one input")
        return
    if len(node.inputs) > 2:
        blobs = [ctx.bottom(node, v) for v in node.inputs]
        if len({ctx.shape(b) for b in blobs}) != 1:
            raise ctx.refuse(node, "broadcasting sum of more than two inputs")
        ctx.b.eltwise(blobs, ctx.layer_name(node), op="sum", top=ctx.top(node))
        return
    a, b = node.inputs
    if consts[0] or consts[1]:
        value, const = (b, a) if consts[0] else (a, b)
        _with_constant(ctx, node, ctx.bottom(node, value), ctx.constant(const),
                       const_first=consts[0])
        return
    xa, xb = ctx.bottom(node, a), ctx.bottom(node, b)
    sa, sb = ctx.shape(xa), ctx.shape(xb)
    if sa == sb:
        _same_shape(ctx, node, xa, xb)
        return
    _broadcast_values(ctx, node, xa, xb)


def _same_shape(ctx: EmitContext, node: Node, xa: str, xb: str) -> None:
    name, top = ctx.layer_name(node), ctx.top(node)
    if node.op == "add":
        ctx.b.eltwise([xa, xb], name, op="sum", top=top)
    elif node.op == "sub":
        ctx.b.eltwise([xa, xb], name, op="sum", coeff=[1.0, -1.0], top=top)
    elif node.op == "mul":
        ctx.b.eltwise([xa, xb], name, op="prod", top=top)
    else:
        inv = _power(ctx, node, xb, "reciprocal", power=-1.0)
        ctx.b.eltwise([xa, inv], name, op="prod", top=top)
        ctx.note(node, "a / b as a * (1 / b): within one rounding of the quotient")


def _broadcast_values(ctx: EmitContext, node: Node, xa: str, xb: str) -> None:
    """Two values of different shapes: the smaller must be the larger's leading axes followed
    by ones (e.g. (N, C, 1, 1) against (N, C, H, W))."""
    sa, sb = ctx.shape(xa), ctx.shape(xb)
    big, small = (xa, xb) if math.prod(sa) >= math.prod(sb) else (xb, xa)
    s_big, s_small = ctx.shape(big), ctx.shape(small)
    k = len(s_small)
    while k > 0 and s_small[k - 1] == 1:
        k -= 1
    if (len(s_small) != len(s_big) or k == 0 or s_small[:k] != s_big[:k]
            or np.broadcast_shapes(s_big, s_small) != s_big):
        raise ctx.refuse(node, f"broadcasting {sa} against {sb}: only a value of shape "
                         "(N, C, 1, 1)-like against (N, C, H, W) is supported")
    op = node.op
    small_first = small == xa
    # shapes left out of the notes, so that e.g. every squeeze-excitation shares one
    spread = f" over the last {len(s_big) - k} axes"
    flat = ctx.tmp(node, "flat")
    if k == 2:
        small2 = ctx.b.flatten(small, ctx.layer_name(node, "flat"), top=flat)
    else:
        layer = ctx.b.layer("Reshape", ctx.layer_name(node, "flat"), [small], [flat])
        layer.reshape_param.shape.dim.extend([0, *s_small[1:k]])
        small2 = flat
    name, top = ctx.layer_name(node), ctx.top(node)
    if op == "mul":
        ctx.b.scale([big, small2], name, bias=False, axis=0, top=top)
        ctx.note(node, f"broadcast product{spread} as Scale with two bottoms")
    elif op == "div" and not small_first:
        inv = _power(ctx, node, small2, "reciprocal", power=-1.0)
        ctx.b.scale([big, inv], name, bias=False, axis=0, top=top)
        ctx.note(node, "broadcast a / b as a * (1 / b): within one rounding of the quotient")
    elif op == "div":
        inv = _power(ctx, node, big, "reciprocal", power=-1.0)
        ctx.b.scale([inv, small2], name, bias=False, axis=0, top=top)
        ctx.note(node, "broadcast a / b as (1 / b) * a: within one rounding of the quotient")
    elif op == "add" and ctx.target != "opencv":
        layer = ctx.b.layer("Bias", name, [big, small2], [top])
        layer.bias_param.axis = 0
        ctx.note(node, f"broadcast sum{spread} as Bias with two bottoms")
    else:
        # The small value spread over the big one's shape, exactly: a blob of ones (Power with
        # scale 0, shift 1) times it (Scale with two bottoms); then an Eltwise sum with
        # coefficients +-1. Stock layers that OpenCV's importer also runs (it has no Bias).
        ones = _power(ctx, node, big, "ones", scale=0.0, shift=1.0)
        spread = ctx.b.scale([ones, small2], ctx.layer_name(node, "spread"), bias=False, axis=0,
                             top=ctx.tmp(node, "spread"))
        pair = [spread, big] if small_first else [big, spread]
        coeff = None if op == "add" else [1.0, -1.0]
        ctx.b.eltwise(pair, name, op="sum", coeff=coeff, top=top)
        ctx.note(node, f"broadcast {op}{spread}: the smaller value spread by a Scale of "
                 "ones, then Eltwise SUM")


def _with_constant(ctx: EmitContext, node: Node, x: str, c: np.ndarray,
                   const_first: bool) -> None:
    op = node.op
    shape = ctx.shape(x)
    c = np.asarray(c, np.float32)
    if c.ndim > len(shape) or np.broadcast_shapes(shape, c.shape) != shape:
        raise ctx.refuse(node, f"constant of shape {c.shape} enlarges the value's {shape}")
    top = ctx.top(node)
    if op == "div" and not const_first:
        if np.any(c == 0):
            raise ctx.refuse(node, "division by a constant that holds zeros")
        inv = (1.0 / c.astype(np.float64)).astype(np.float32)
        if not _is_pow2(c):
            ctx.note(node, "division by a constant as a product with its reciprocal: within "
                     "one rounding of the quotient")
        c, op = inv, "mul"
    if op == "div":  # c / x
        x = _power(ctx, node, x, "reciprocal", power=-1.0)
        ctx.note(node, "c / x as c * (1 / x): within one rounding of the quotient")
        op = "mul"
    aligned = c.reshape((1,) * (len(shape) - c.ndim) + c.shape)
    varying = [i for i, d in enumerate(aligned.shape) if d != 1]
    name = ctx.layer_name(node)
    if not varying:  # a scalar: Power
        s = float(aligned.reshape(-1)[0])
        if op == "mul":
            _power_named(ctx, name, x, top, scale=s)
        elif op == "add":
            _power_named(ctx, name, x, top, shift=s)
        elif const_first:  # c - x
            _power_named(ctx, name, x, top, scale=-1.0, shift=s)
        else:  # x - c = x + (-c): the same rounding
            _power_named(ctx, name, x, top, shift=-s)
        return
    first, last = varying[0], varying[-1]
    if first == 0:
        raise ctx.refuse(node, f"constant of shape {c.shape} differs along the batch axis")
    blob_shape = shape[first:last + 1]
    blob = np.broadcast_to(aligned.reshape(aligned.shape[first:last + 1]), blob_shape)
    num_axes = last - first + 1
    if op == "mul":
        ctx.b.scale(x, name, bias=False, axis=first, num_axes=num_axes, top=top)
        ctx.set_weights(name, blob)
        return
    ones = np.ones(blob_shape, np.float32)
    if op == "add":
        scale, bias = ones, blob
    elif const_first:  # c - x = (-1) * x + c
        scale, bias = -ones, blob
    else:  # x - c = x * 1 + (-c)
        scale, bias = ones, -blob
    ctx.b.scale(x, name, bias=True, axis=first, num_axes=num_axes, top=top)
    ctx.set_weights(name, scale, bias)


def _power_named(ctx: EmitContext, name: str, x: str, top: str, scale: float = 1.0,
                 shift: float = 0.0) -> None:
    p = ctx.b.layer("Power", name, [x], [top]).power_param
    if scale != 1.0:
        p.scale = scale
    if shift != 0.0:
        p.shift = shift
