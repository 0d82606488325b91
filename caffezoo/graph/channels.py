"""Reversing a graph's input channels: the converted net takes BGR where the source took RGB
(or the other way round), computing exactly what the source computed on the reversed image.

Walking forward from the input, every value whose channels are now reversed is followed through
the ops that treat channels one by one (activations, pooling, padding, batch norm, arithmetic
with per-channel or scalar constants: their per-channel constants and parameters are reversed
too) up to the convolutions that mix them, whose weights' input-channel axis is reversed. That
is exact in arithmetic: every product and sum is the same, only the order of the sums over
channels changes. Any other reader of a reversed value (a linear layer, a reshape, a concat,
a grouped convolution, a graph output) is refused by name: there the conversion would have to
reorder more than three channels, so the user keeps the source's order (--channel-order rgb).
"""

from __future__ import annotations

import numpy as np

from caffezoo.errors import ConversionError
from caffezoo.graph.ir import Graph, Node

# ops whose output channel c depends on input channel c only, with no per-channel values
_PER_CHANNEL = frozenset({
    "relu", "leaky_relu", "elu", "clip", "sigmoid", "tanh", "softplus", "hard_sigmoid",
    "hard_swish", "silu", "identity", "max_pool", "avg_pool", "global_avg_pool",
    "global_max_pool", "pad",
})
_ARITHMETIC = frozenset({"add", "sub", "mul", "div"})


def reverse_input_channels(graph: Graph) -> list[str]:
    """Rewrite `graph` (in place) to take its input with the channel axis reversed; returns the
    notes saying where the reversal went. ConversionError naming the node that cannot take it.
    """
    convs, _ = _walk(graph, modify=True)
    shown = ", ".join(convs[:3]) + (f" and {len(convs) - 3} more" if len(convs) > 3 else "")
    return [f"input channels reversed in the weights of {shown}"]


def reversed_values(graph: Graph) -> set[str]:
    """The values of `graph` (the source's, unchanged) whose channels the converted net holds
    reversed: the input and what per-channel ops compute from it before a convolution."""
    return _walk(graph, modify=False)[1]


def _walk(graph: Graph, modify: bool) -> tuple[list[str], set[str]]:
    (data,) = graph.inputs
    channels = graph.inputs[data][1]
    flipped = {data}  # values whose channel axis is now reversed
    convs: list[str] = []
    for node in graph.nodes:
        read = [v for v in node.inputs if v in flipped]
        if not read:
            continue
        if node.op == "conv":
            _conv(node, read, channels, modify)
            convs.append(node.name)
            continue
        if node.op in _PER_CHANNEL and node.inputs[0] in flipped:
            pass
        elif node.op == "batch_norm":
            if modify:
                node.params = {k: np.ascontiguousarray(v[::-1]) for k, v in node.params.items()}
        elif node.op == "prelu":
            slope = node.params["slope"]
            if slope.size != 1 and modify:
                node.params["slope"] = np.ascontiguousarray(slope.reshape(-1)[::-1])
        elif node.op in _ARITHMETIC:
            _arithmetic(graph, node, flipped, channels, modify)
        else:
            raise _refuse(node, "reads the input's channels in a way that cannot take them "
                          "reversed")
        flipped.update(node.outputs)
    out = next((v for v in graph.outputs if v in flipped), None)
    if out is not None:
        raise ConversionError(f"graph output {out!r} carries the input's channels; a reversed "
                              "input would reverse it too (convert with --channel-order rgb)")
    if not convs:
        raise ConversionError("no convolution reads the input's channels; nothing can take "
                              "them reversed (convert with --channel-order rgb)")
    return convs, flipped


def _refuse(node: Node, why: str) -> ConversionError:
    return ConversionError(f"{node.describe()}: {why}; a net with the source's channel order "
                           "needs --channel-order rgb")


def _conv(node: Node, read: list[str], channels: int, modify: bool) -> None:
    if read != [node.inputs[0]]:
        raise _refuse(node, "takes its weights from the input")
    group = node.attrs.get("group", 1)
    weight = node.params["weight"]
    if group != 1 or weight.shape[1] != channels:
        raise _refuse(node, f"a grouped convolution (group {group}) of the input: reversing "
                      "its input channels would reorder its outputs")
    if modify:
        node.params["weight"] = np.ascontiguousarray(weight[:, ::-1])


def _arithmetic(graph: Graph, node: Node, flipped: set[str], channels: int,
                modify: bool) -> None:
    """add/sub/mul/div of reversed values and constants: every non-constant operand must be
    reversed too, and a constant with a channel axis is reversed along it (as a new
    constant: others may share the old one)."""
    for i, v in enumerate(node.inputs):
        if v in flipped:
            continue
        const = graph.constants.get(v)
        if const is None:
            raise _refuse(node, f"combines the input's channels with {v!r}, computed from "
                          "elsewhere")
        # broadcast from the right against N, C, H, W: the channel axis is the third from
        # the end
        if const.ndim >= 3 and const.shape[-3] == channels and channels > 1:
            if not modify:
                continue
            name = f"{v}_channels_reversed"
            graph.constants[name] = np.ascontiguousarray(np.flip(const, axis=-3))
            node.inputs[i] = name
        elif const.ndim >= 3 and const.shape[-3] != 1:
            raise _refuse(node, f"constant {v!r} of shape {list(const.shape)} does not "
                          "broadcast per channel")
