"""Handlers of the layers that own weights or windows: conv, batch_norm, linear, pools, pad.

Exactness (docs/conversion.md, "graph conversion"):
- Caffe pads symmetrically. An asymmetric convolution pad becomes the larger pad on both sides
  and a kernel grown by zero rows/columns on the side that has the smaller pad: every window
  then starts where the source's starts and sees the same pixels (the zero taps add exact
  zeros), and the output size is the source's.
- A pooling keeps the source's window starts (Caffe pad = the top/left pad) and takes the Caffe
  rounding (ceil or floor) whose output size is the source's; where both give more windows, the
  extra last rows/columns are cut off with Slice into a Silence layer (the first windows are the
  same). Caffe divides an average by the window clipped to the padded input; where the source
  divides by something else (padding excluded, an asymmetric pad, a window past the padding in
  ceil mode, a folded Pad) a Scale with one factor per output position (axis 2, 2 axes, no
  bias) turns Caffe's divisor into the source's.
- A constant Pad in front of convolutions (value 0), average pools (value 0) or max pools
  (value -inf) is folded into their padding; any other Pad becomes a depthwise convolution with a
  one-hot kernel (exact: one product by 1, sums of zeros) plus, for a non-zero value, a Scale
  whose bias writes the value on the border (x * 1 + 0 inside).
"""

from __future__ import annotations

import math

import numpy as np

from caffezoo.geometry import caffe_divisors, caffe_pooled, source_pooled, window_sizes
from caffezoo.graph.context import EmitContext, handler
from caffezoo.graph.ir import Node

Pads = tuple[int, int, int, int]  # top, left, bottom, right


def _pair(value, default: int) -> tuple[int, int]:
    if value is None:
        return default, default
    if isinstance(value, int | np.integer):
        return int(value), int(value)
    a, b = (int(v) for v in value)
    return a, b


def _pads(value) -> Pads:
    if value is None:
        return 0, 0, 0, 0
    if isinstance(value, int | np.integer):
        return (int(value),) * 4
    return tuple(int(v) for v in value)  # type: ignore[return-value]


def input_and_pads(ctx: EmitContext, node: Node) -> tuple[str, Pads, float]:
    """The node's first input, looking through a Pad folded into it: (value, pads, pad value)."""
    value = node.inputs[0]
    folded = ctx.pad_folds.get(value)
    if folded is None:
        return value, (0, 0, 0, 0), 0.0
    return folded


# ---------------------------------------------------------------------------------------------
# convolution


@handler("conv")
def conv(ctx: EmitContext, node: Node) -> None:
    value, pre, _ = input_and_pads(ctx, node)
    x = ctx.bottom(node, value)
    shape = ctx.shape(x)
    if len(shape) != 4:
        raise ctx.refuse(node, f"convolution of a {len(shape)}-D input")
    w = node.params.get("weight")
    if w is None or np.ndim(w) != 4:
        raise ctx.refuse(node, "needs a 4-D weight (O, I/group, kH, kW)")
    w = np.asarray(w, np.float32)
    bias = node.params.get("bias")
    group = int(node.attrs.get("group", 1))
    out_c, in_per_group, kh, kw = w.shape
    if group < 1 or shape[1] != in_per_group * group or out_c % group:
        raise ctx.refuse(node, f"weight {tuple(w.shape)} with group {group} does not fit an "
                         f"input of {shape[1]} channels")
    if bias is not None and np.shape(bias) != (out_c,):
        raise ctx.refuse(node, f"bias of shape {np.shape(bias)}, expected ({out_c},)")
    stride = _pair(node.attrs.get("stride"), 1)
    dil = _pair(node.attrs.get("dilation"), 1)
    t, lf, b, r = (p + q for p, q in zip(_pads(node.attrs.get("pads")), pre, strict=True))
    if min(t, lf, b, r) < 0:
        raise ctx.refuse(node, f"negative pads {(t, lf, b, r)}")
    w, pad_h = _grow_kernel(ctx, node, w, 2, t, b, dil[0])
    w, pad_w = _grow_kernel(ctx, node, w, 3, lf, r, dil[1])
    if (t, b) != (pad_h, pad_h) or (lf, r) != (pad_w, pad_w):
        ctx.note(node, f"asymmetric pads (t, l, b, r) = {(t, lf, b, r)} as pad "
                 f"({pad_h}, {pad_w}) with the kernel grown to {w.shape[2]}x{w.shape[3]} "
                 "by zero taps")
    if pre != (0, 0, 0, 0):
        ctx.note(node, f"zero Pad {pre} folded into the convolution's padding")
    name = ctx.layer_name(node)
    ctx.b.conv(x, name, num_output=out_c, kernel=(w.shape[2], w.shape[3]), stride=stride,
               pad=(pad_h, pad_w), group=group, dilation=dil, bias=bias is not None,
               top=ctx.top(node))
    ctx.set_weights(name, w, *([] if bias is None else [bias]))


def _grow_kernel(ctx: EmitContext, node: Node, w: np.ndarray, axis: int, lo: int, hi: int,
                 dilation: int) -> tuple[np.ndarray, int]:
    """(weight, symmetric pad) that compute what pads (lo, hi) on `axis` compute."""
    if lo == hi:
        return w, lo
    extra, rem = divmod(abs(hi - lo), dilation)
    if rem:
        raise ctx.refuse(node, f"asymmetric pads ({lo}, {hi}) differ by a non-multiple of the "
                         f"dilation {dilation}: no symmetric Caffe padding is exact")
    widths = [(0, 0)] * 4
    # the side with the smaller pad gets the zero taps, so the real taps stay where they were
    widths[axis] = (extra, 0) if hi > lo else (0, extra)
    return np.pad(w, widths), max(lo, hi)


# ---------------------------------------------------------------------------------------------
# batch norm, linear


@handler("batch_norm")
def batch_norm(ctx: EmitContext, node: Node) -> None:
    x = ctx.bottom(node, node.inputs[0])
    shape = ctx.shape(x)
    if len(shape) < 2:
        raise ctx.refuse(node, f"batch norm of a {len(shape)}-D input")
    c = shape[1]
    p = {k: np.asarray(v, np.float32).reshape(-1) for k, v in node.params.items()}
    for key in ("mean", "var"):
        if key not in p:
            raise ctx.refuse(node, f"missing parameter {key!r}")
    gamma = p.get("gamma", np.ones(c, np.float32))
    beta = p.get("beta", np.zeros(c, np.float32))
    for key, arr in (("mean", p["mean"]), ("var", p["var"]), ("gamma", gamma), ("beta", beta)):
        if arr.shape != (c,):
            raise ctx.refuse(node, f"parameter {key!r} has {arr.size} values for {c} channels")
    if np.any(p["var"] < 0):
        raise ctx.refuse(node, "negative variance")
    eps = float(node.attrs.get("eps", 1e-5))
    if not eps > 0:
        raise ctx.refuse(node, f"eps must be positive (Caffe's BatchNorm), got {eps}")
    bn = ctx.layer_name(node, "bn")
    # Caffe's BatchNorm stores [mean * s, var * s, s]; with s = 1 it uses them as they are.
    y = ctx.b.batch_norm(x, bn, eps=eps, top=ctx.tmp(node, "bn"))
    ctx.set_weights(bn, p["mean"], p["var"], np.ones(1, np.float32))
    name = ctx.layer_name(node)
    ctx.b.scale(y, name, bias=True, top=ctx.top(node))
    ctx.set_weights(name, gamma, beta)


@handler("linear")
def linear(ctx: EmitContext, node: Node) -> None:
    x = ctx.bottom(node, node.inputs[0])
    shape = ctx.shape(x)
    w = node.params.get("weight")
    if w is None or np.ndim(w) != 2:
        raise ctx.refuse(node, "needs a 2-D weight (O, I)")
    w = np.asarray(w, np.float32)
    bias = node.params.get("bias")
    features = math.prod(shape[1:])
    if w.shape[1] != features:
        raise ctx.refuse(node, f"weight {tuple(w.shape)} does not fit an input of shape "
                         f"{shape} ({features} features)")
    if bias is not None and np.shape(bias) != (w.shape[0],):
        raise ctx.refuse(node, f"bias of shape {np.shape(bias)}, expected ({w.shape[0]},)")
    if len(shape) > 2:
        ctx.note(node, f"InnerProduct flattens its {shape} input itself")
    name = ctx.layer_name(node)
    ctx.b.inner_product(x, name, num_output=int(w.shape[0]), bias=bias is not None,
                        top=ctx.top(node))
    ctx.set_weights(name, w, *([] if bias is None else [bias]))


# ---------------------------------------------------------------------------------------------
# pooling


@handler("max_pool", "avg_pool")
def pool(ctx: EmitContext, node: Node) -> None:
    value, pre, pre_value = input_and_pads(ctx, node)
    x = ctx.bottom(node, value)
    shape = ctx.shape(x)
    if len(shape) != 4:
        raise ctx.refuse(node, f"pooling of a {len(shape)}-D input")
    n, c, h, w = shape
    kh, kw = _pair(node.attrs.get("kernel"), 0)
    sh, sw = _pair(node.attrs.get("stride"), 1)
    if min(kh, kw, sh, sw) < 1:
        raise ctx.refuse(node, "kernel and stride must be positive")
    t, lf, b, r = (p + q for p, q in zip(_pads(node.attrs.get("pads")), pre, strict=True))
    ceil = bool(node.attrs.get("ceil", False))
    avg = node.op == "avg_pool"
    include_pad = bool(node.attrs.get("count_include_pad", False))
    want = (source_pooled(h, kh, sh, t, b, ceil), source_pooled(w, kw, sw, lf, r, ceil))
    if min(want) < 1:
        raise ctx.refuse(node, f"kernel {(kh, kw)} does not fit the padded input")
    if t >= kh or lf >= kw:
        raise ctx.refuse(node, f"top/left pad ({t}, {lf}) not smaller than the kernel "
                         f"({kh}, {kw}): Caffe cannot start its windows where the source does")
    any_pad = bool(t or lf)
    options = []
    for caffe_ceil in (False, True):
        got = (caffe_pooled(h, kh, sh, t, caffe_ceil, any_pad),
               caffe_pooled(w, kw, sw, lf, caffe_ceil, any_pad))
        if got[0] >= want[0] and got[1] >= want[1]:
            options.append((got[0] - want[0] + got[1] - want[1], not caffe_ceil, caffe_ceil, got))
    if not options:
        raise ctx.refuse(node, f"no Caffe rounding gives the source's {want[0]}x{want[1]} "
                         f"output with windows starting at its pads ({t}, {lf})")
    _, _, caffe_ceil, got = min(options)
    method = "ave" if avg else "max"
    factors = None
    if avg:
        src_h = _src_divisors(want[0], h, kh, sh, t, b, pre[0], pre[2], include_pad)
        src_w = _src_divisors(want[1], w, kw, sw, lf, r, pre[1], pre[3], include_pad)
        caffe_h = caffe_divisors(h, want[0], kh, sh, t)
        caffe_w = caffe_divisors(w, want[1], kw, sw, lf)
        if np.any(src_h <= 0) or np.any(src_w <= 0):
            raise ctx.refuse(node, "a window holds no counted element")
        f = np.outer(caffe_h, caffe_w) / np.outer(src_h, src_w)
        if not np.all(f == 1.0):
            factors = f.astype(np.float32)
    if pre != (0, 0, 0, 0):
        ctx.note(node, f"Pad {pre} (value {pre_value:g}) folded into the pooling's padding")
    last_top = ctx.top(node)
    slicing = got != want
    name = ctx.layer_name(node)
    pooled = ctx.b.pool(x, name, method, kernel=(kh, kw), stride=(sh, sw), pad=(t, lf),
                        ceil=caffe_ceil, top=ctx.tmp(node, "pool") if slicing or factors
                        is not None else last_top)
    if slicing:
        pooled = _cut(ctx, node, pooled, got, want,
                      last_top if factors is None else ctx.tmp(node, "cut"))
        ctx.note(node, f"Caffe pooling gives {got[0]}x{got[1]}, the extra last windows are cut "
                 f"off to the source's {want[0]}x{want[1]}")
    if (t, lf) != (b, r):
        ctx.note(node, f"asymmetric pads {(t, lf, b, r)}: Caffe pad ({t}, {lf}) with "
                 f"{'ceil' if caffe_ceil else 'floor'} rounding")
    if factors is not None:
        sname = ctx.layer_name(node, "divisor")
        ctx.b.scale(pooled, sname, bias=False, axis=2, num_axes=2, top=last_top)
        ctx.set_weights(sname, factors)
        ctx.note(node, "average divisor made the source's by a per-position Scale "
                 f"({'padding included' if include_pad else 'padding excluded'})")


def _src_divisors(n_out: int, n: int, k: int, s: int, lo: int, hi: int, pre_lo: int,
                  pre_hi: int, include_pad: bool) -> np.ndarray:
    """The source's divisor per output position along one axis. `lo`/`hi` are the total pads
    (the pooling's own plus a folded Pad's `pre_lo`/`pre_hi`, whose zeros always count)."""
    if include_pad:  # the window clipped to the padded input's end (PyTorch, ONNX)
        return window_sizes(n_out, k, s, lo, n + hi)
    return window_sizes(n_out, k, s, lo, n + pre_hi, -pre_lo)


def _cut(ctx: EmitContext, node: Node, blob: str, got: tuple[int, int], want: tuple[int, int],
         top: str) -> str:
    """Slice the extra last rows/columns of `blob` off into a Silence layer."""
    axes = [axis for axis in (2, 3) if got[axis - 2] != want[axis - 2]]
    extra = []
    for axis in axes:
        side = "hw"[axis - 2]
        kept = top if axis == axes[-1] else ctx.tmp(node, f"cut_{side}")
        dropped = ctx.tmp(node, f"extra_{side}")
        ctx.b.slice(blob, ctx.layer_name(node, f"cut_{side}"), [kept, dropped], axis=axis,
                    slice_points=[want[axis - 2]])
        extra.append(dropped)
        blob = kept
    ctx.b.silence(extra, ctx.layer_name(node, "cut_silence"))
    return blob


@handler("global_avg_pool", "global_max_pool")
def global_pool(ctx: EmitContext, node: Node) -> None:
    x = ctx.bottom(node, node.inputs[0])
    if len(ctx.shape(x)) != 4:
        raise ctx.refuse(node, f"global pooling of a {len(ctx.shape(x))}-D input")
    method = "ave" if node.op == "global_avg_pool" else "max"
    ctx.b.pool(x, ctx.layer_name(node), method, global_pooling=True, top=ctx.top(node))


# ---------------------------------------------------------------------------------------------
# pad


def _absorbs(consumer: Node, value: float) -> bool:
    if consumer.op == "conv" or (consumer.op == "avg_pool"):
        return value == 0.0
    if consumer.op == "max_pool":
        return value == -math.inf
    return False


@handler("pad")
def pad(ctx: EmitContext, node: Node) -> None:
    t, lf, b, r = _pads(node.attrs.get("pads"))
    value = float(node.attrs.get("value", 0.0))
    if min(t, lf, b, r) < 0:
        raise ctx.refuse(node, f"negative pads {(t, lf, b, r)} (cropping)")
    out = node.outputs[0]
    users = ctx.consumers.get(out, [])
    src = node.inputs[0]
    if src in ctx.pad_folds:  # a Pad of a folded Pad: emit the first one for real
        raise ctx.refuse(node, "two Pads in a row")
    if (users and out not in ctx.graph.outputs
            and all(_absorbs(u, value) and u.inputs[0] == out and out not in u.inputs[1:]
                    for u in users)):
        ctx.bottom(node, src)  # defined?
        ctx.pad_folds[out] = (src, (t, lf, b, r), value)
        ctx.folded[out] = f"a Pad folded into {', '.join(u.name for u in users)}"
        return
    x = ctx.bottom(node, src)
    shape = ctx.shape(x)
    if len(shape) != 4:
        raise ctx.refuse(node, f"Pad of a {len(shape)}-D input")
    if not math.isfinite(value):
        raise ctx.refuse(node, f"Pad value {value} that no consumer absorbs")
    c = shape[1]
    # depthwise one-hot kernel: the tap sits where the smaller pad puts the pixel
    kh, kw = abs(b - t) + 1, abs(r - lf) + 1
    kernel = np.zeros((c, 1, kh, kw), np.float32)
    kernel[:, 0, max(b - t, 0), max(r - lf, 0)] = 1.0
    name = ctx.layer_name(node)
    padded = ctx.b.conv(x, name, num_output=c, kernel=(kh, kw), pad=(max(t, b), max(lf, r)),
                        group=c, bias=False,
                        top=ctx.top(node) if value == 0.0 else ctx.tmp(node, "zero"))
    ctx.set_weights(name, kernel)
    ctx.note(node, f"Pad {(t, lf, b, r)} as a depthwise convolution with a one-hot kernel")
    if value != 0.0:
        hh, ww = shape[2] + t + b, shape[3] + lf + r
        border = np.full((hh, ww), value, np.float32)
        border[t:t + shape[2], lf:lf + shape[3]] = 0.0
        sname = ctx.layer_name(node, "value")
        ctx.b.scale(padded, sname, bias=True, axis=2, num_axes=2, top=ctx.top(node))
        ctx.set_weights(sname, np.ones((hh, ww), np.float32), border)
        ctx.note(node, f"Pad value {value:g} written on the border by a Scale's bias")
