"""Handler of `slice` (the part [start, end) of one axis): a stock Caffe `Slice` layer cut at
start and end, the parts before and after it into a `Silence` layer (stock Caffe and OpenCV's
importer both run this; the result is the input's values, copied)."""

from __future__ import annotations

from caffezoo.graph.context import EmitContext, handler
from caffezoo.graph.ir import Node


@handler("slice")
def slice_(ctx: EmitContext, node: Node) -> None:
    x = ctx.bottom(node, node.inputs[0])
    shape = ctx.shape(x)
    axis = int(node.attrs["axis"])
    axis += len(shape) if axis < 0 else 0
    if not 0 < axis < len(shape):
        raise ctx.refuse(node, f"slice on axis {node.attrs['axis']} of a {shape} value (the "
                         "batch axis cannot be sliced)")
    start, end = int(node.attrs["start"]), int(node.attrs["end"])
    if not 0 <= start < end <= shape[axis]:
        raise ctx.refuse(node, f"slice [{start}, {end}) is outside axis {axis} of {shape}")
    if (start, end) == (0, shape[axis]):
        ctx.alias(node, node.inputs[0], "slice of the whole axis")
        return
    top = ctx.top(node)
    tops, points, unused = [], [], []
    if start > 0:
        unused.append(ctx.tmp(node, "before"))
        tops.append(unused[-1])
        points.append(start)
    tops.append(top)
    if end < shape[axis]:
        unused.append(ctx.tmp(node, "after"))
        tops.append(unused[-1])
        points.append(end)
    ctx.b.slice(x, ctx.layer_name(node), tops, axis=axis, slice_points=points)
    ctx.b.silence(unused, ctx.layer_name(node, "silence"))
