"""Handlers of ops that move values around: concat, flatten, reshape, transpose, softmax,
identity.

Transposes: Caffe (stock, and OpenCV's importer) has no general transpose. The one classifiers
use is the channel shuffle, reshape (N, g, C/g, H, W) -> transpose -> reshape (N, C, H, W):
a permutation of channels. It is recognised as a whole (any reshape -> transpose -> reshape
chain whose result is the input with its channels permuted) and emitted as a 1x1 convolution
whose weight is the 0/1 permutation matrix: each output is one input times 1 plus exact zeros,
so the result is bit-identical, on every target. A transpose that is the identity is an alias;
any other transpose is a Permute layer where the target has one (the fork, OpenCV) and refused
by name on stock Caffe.
"""

from __future__ import annotations

import math

import numpy as np

from caffezoo.graph.context import EmitContext, handler
from caffezoo.graph.ir import Node


def _axis(ctx: EmitContext, node: Node, axis: int, ndim: int) -> int:
    a = int(axis) + (ndim if int(axis) < 0 else 0)
    if not 0 <= a < ndim:
        raise ctx.refuse(node, f"axis {axis} out of range for a {ndim}-D value")
    return a


@handler("identity")
def identity(ctx: EmitContext, node: Node) -> None:
    ctx.alias(node, node.inputs[0], f"{node.source_op or 'identity'} is the identity "
              "(no layer)")


@handler("concat")
def concat(ctx: EmitContext, node: Node) -> None:
    blobs = [ctx.bottom(node, v) for v in node.inputs]
    ndim = len(ctx.shape(blobs[0]))
    axis = _axis(ctx, node, node.attrs.get("axis", 1), ndim)
    if len(blobs) == 1:
        ctx.alias(node, node.inputs[0], "concat of one input")
        return
    ctx.b.concat(blobs, ctx.layer_name(node), axis=axis, top=ctx.top(node))


@handler("softmax")
def softmax(ctx: EmitContext, node: Node) -> None:
    x = ctx.bottom(node, node.inputs[0])
    axis = _axis(ctx, node, node.attrs.get("axis", -1), len(ctx.shape(x)))
    ctx.b.softmax(x, ctx.layer_name(node), axis=axis, top=ctx.top(node))


@handler("flatten")
def flatten(ctx: EmitContext, node: Node) -> None:
    x = ctx.bottom(node, node.inputs[0])
    shape = ctx.shape(x)
    axis = node.attrs.get("axis", 1)
    axis = len(shape) if int(axis) == len(shape) else _axis(ctx, node, axis, len(shape))
    out = (math.prod(shape[:axis]), math.prod(shape[axis:]))
    _reshape_to(ctx, node, x, shape, out)


@handler("reshape")
def reshape(ctx: EmitContext, node: Node) -> None:
    x = ctx.bottom(node, node.inputs[0])
    shape = ctx.shape(x)
    target = tuple(int(d) for d in node.attrs.get("shape", ()))
    if not target or any(d <= 0 for d in target):
        raise ctx.refuse(node, f"reshape needs the full static output shape, got {target}")
    if math.prod(target) != math.prod(shape):
        raise ctx.refuse(node, f"cannot reshape {shape} ({math.prod(shape)} values) to "
                         f"{target}")
    if _channel_shuffle(ctx, node, x, shape, target):
        return
    _reshape_to(ctx, node, x, shape, target)


def _reshape_to(ctx: EmitContext, node: Node, x: str, shape: tuple[int, ...],
                out: tuple[int, ...]) -> None:
    if out == shape:
        ctx.alias(node, node.inputs[0], f"reshape to the same shape {shape}")
        return
    name, top = ctx.layer_name(node), ctx.top(node)
    if len(out) == 2 and out[0] == shape[0]:
        ctx.b.flatten(x, name, top=top)
        return
    layer = ctx.b.layer("Reshape", name, [x], [top])
    # 0 copies the batch size, so the net still runs at other batch sizes
    dims = [0 if out[0] == shape[0] else out[0], *out[1:]]
    layer.reshape_param.shape.dim.extend(dims)


@handler("transpose")
def transpose(ctx: EmitContext, node: Node) -> None:
    x = ctx.bottom(node, node.inputs[0])
    shape = ctx.shape(x)
    perm = [int(p) for p in node.attrs.get("perm", range(len(shape) - 1, -1, -1))]
    if sorted(perm) != list(range(len(shape))):
        raise ctx.refuse(node, f"perm {perm} does not fit a {len(shape)}-D value")
    if perm == sorted(perm):
        ctx.alias(node, node.inputs[0], "transpose with the identity permutation")
        return
    if ctx.has_layer("Permute"):
        layer = ctx.b.layer("Permute", ctx.layer_name(node), [x], [ctx.top(node)])
        layer.permute_param.order.extend(perm)
        return
    raise ctx.refuse(node, f"transpose {perm} of a {shape} value: stock Caffe has no general "
                     "transpose (a channel shuffle, reshape -> transpose -> reshape, is "
                     "expressed exactly; the fork and OpenCV have Permute)")


def _sole_consumer(ctx: EmitContext, value: str, op: str) -> Node | None:
    users = ctx.consumers.get(value, [])
    if len(users) != 1 or users[0].op != op or value in ctx.graph.outputs:
        return None
    return users[0]


def _channel_shuffle(ctx: EmitContext, node: Node, x: str, shape: tuple[int, ...],
                     target: tuple[int, ...]) -> bool:
    """reshape -> transpose -> reshape that permutes channels: one 1x1 convolution."""
    if len(shape) != 4:
        return False
    tr = _sole_consumer(ctx, node.outputs[0], "transpose")
    if tr is None:
        return False
    back = _sole_consumer(ctx, tr.outputs[0], "reshape")
    if back is None or tuple(int(d) for d in back.attrs.get("shape", ())) != shape:
        return False
    perm = [int(p) for p in tr.attrs.get("perm", ())]
    if sorted(perm) != list(range(len(target))):
        return False
    n, c, h, w = shape
    index = np.arange(math.prod(shape)).reshape(shape)
    moved = index.reshape(target).transpose(perm).reshape(shape)
    source = moved[:, :, 0, 0] // (h * w) % c  # the input channel each output channel reads
    if not (np.all(source == source[0]) and np.array_equal(moved, _gather(index, source))):
        return False
    weight = np.zeros((c, c, 1, 1), np.float32)
    weight[np.arange(c), source[0], 0, 0] = 1.0
    name = ctx.layer_name(back)
    top = ctx.top(back)
    ctx.b.conv(x, name, num_output=c, kernel=1, bias=False, top=top)
    ctx.set_weights(name, weight)
    for part in (node, tr):
        ctx.folded[part.outputs[0]] = f"part of the channel shuffle emitted as {name}"
    ctx.skip.update({tr.name, back.name})
    ctx.note(back, f"channel shuffle {node.name} -> {tr.name} -> {back.name} as a 1x1 "
             "convolution with a permutation matrix")
    return True


def _gather(index: np.ndarray, source: np.ndarray) -> np.ndarray:
    """index with channels taken in the order `source` (N, C) says, per batch item."""
    return np.stack([index[i][source[i]] for i in range(index.shape[0])])
