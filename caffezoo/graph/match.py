"""Where a source graph (caffezoo.graph.ir) and a zoo net (Caffe) compute the same thing, layer
for layer: the structural correspondence that lets a graph source fill a zoo card (`--model`).

Every value on both sides gets a structural id: its op, the op's parameters that change the
result, and the ids of its inputs (hash-consed, so a deep net costs one pass). Layers that pass
values through (Dropout, a Flatten or a flattening Reshape in front of an InnerProduct, identity)
take their input's id; a batch norm is BatchNorm + Scale on the Caffe side; a pooling whose window
covers the whole map is a global pooling on both sides; an average pooling that excludes the
padding is a Caffe AVE pooling followed by its exclude-pad Scale; an Eltwise sum with
coefficients is a sum of inputs multiplied by scalars (Inception-ResNet's scaled residual
branches; a multiplication by 1 passes its input through). Equal ids mean equal computations up
to the weights.

The pairing then walks down from the graph's output and the zoo net's classifier: a pair's
inputs are paired positionally (Concat order matters) or, for sums, by id (summands with equal
ids are interchangeable). Each paired zoo layer with weights gets its source node. Where the ids
differ, the walk descends to the first point (in the data flow) where the two sides' own
operations differ and reports it, so a refusal can say what differs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from caffezoo.geometry import conv_window, pool_window
from caffezoo.graph.ir import Graph, Node

PASS_IR = {"identity", "flatten"}


@dataclass
class Match:
    pairs: dict[str, str]  # zoo layer (weighted or pooling) -> graph node
    mismatch: str | None = None  # what differs, when the structures do not correspond
    notes: list[str] = field(default_factory=list)


class _Ids:
    def __init__(self) -> None:
        self.table: dict[tuple, int] = {}

    def get(self, key: tuple) -> int:
        return self.table.setdefault(key, len(self.table))


def _pair2(v) -> tuple[int, int]:
    v = tuple(int(x) for x in v)
    return (v[0], v[0]) if len(v) == 1 else v[:2]


# ---------------------------------------------------------------------------------------------
# the graph side


@dataclass
class _Side:
    ids: dict[str, int]  # value / blob -> structural id
    local: dict[str, tuple]  # value / blob -> its own op and parameters (no inputs)
    inputs: dict[str, list[str]]  # value / blob -> the values it is computed from
    owner: dict[str, str]  # value / blob -> node / layer that computes it
    commutative: set[str]  # values whose inputs may be paired in any order


def _graph_side(graph: Graph, ids: _Ids) -> _Side:
    side = _Side({}, {}, {}, {}, set())
    (inp,) = graph.inputs
    side.ids[inp] = ids.get(("input",))
    side.local[inp] = ("input",)
    side.inputs[inp] = []
    for node in graph.nodes:
        out = node.outputs[0]
        ins = [v for v in node.inputs if v not in graph.constants]
        if node.op in PASS_IR or (node.op == "reshape" and len(node.attrs["shape"]) == 2) or \
                _scalar_factor(graph, node) == 1.0:
            side.ids[out] = side.ids[ins[0]]
            side.local[out] = side.local[ins[0]]
            side.inputs[out] = side.inputs[ins[0]]
            side.owner[out] = side.owner.get(ins[0], node.name)
            continue
        local = _graph_local(graph, node)
        side.local[out] = local
        side.inputs[out] = _flat_concat(side, local, ins)
        ins = side.inputs[out]
        side.owner[out] = node.name
        in_ids = [side.ids[v] for v in ins]
        if node.op == "add":
            in_ids.sort()
            side.commutative.add(out)
        side.ids[out] = ids.get(local + tuple(in_ids))
    return side


def _scalar_factor(graph: Graph, node: Node) -> float | None:
    """The factor of a `mul` of one value by a scalar constant (a scaled residual branch)."""
    if node.op != "mul" or len(node.inputs) != 2:
        return None
    consts = [graph.constants[v] for v in node.inputs if v in graph.constants]
    if len(consts) != 1 or consts[0].size != 1:
        return None
    return float(np.float32(consts[0].reshape(-1)[0]))


def _graph_local(graph: Graph, node: Node) -> tuple:
    a = node.attrs
    factor = _scalar_factor(graph, node)
    if factor is not None:
        return ("scale", factor)
    if node.op == "conv":
        w = node.params["weight"]
        t, lf, b, r = a["pads"]
        if (t, lf) != (b, r):
            return ("conv-asymmetric", node.name)
        return ("conv", int(w.shape[0]), int(w.shape[2]), int(w.shape[3]), _pair2(a["stride"]),
                (t, lf), _pair2(a["dilation"]), int(a["group"]), "bias" in node.params)
    if node.op == "batch_norm":
        return ("bn",)
    if node.op == "relu":
        return ("relu", 0.0)
    if node.op == "leaky_relu":
        return ("relu", float(a["alpha"]))
    if node.op in ("max_pool", "avg_pool"):
        in_shape = graph.shapes[node.inputs[0]]
        out_shape = graph.shapes[node.outputs[0]]
        method = "max" if node.op == "max_pool" else "ave"
        t, lf, b, r = a["pads"]
        k = _pair2(a["kernel"])
        if (t, lf, b, r) == (0, 0, 0, 0) and k == tuple(in_shape[2:]) and out_shape[2:] == (1, 1):
            return ("global", method)
        exclude = method == "ave" and not a.get("count_include_pad", True) and any((t, lf, b, r))
        return ("pool", method, k, _pair2(a["stride"]), (t, lf), tuple(out_shape[2:]), exclude)
    if node.op in ("global_avg_pool", "global_max_pool"):
        return ("global", "ave" if node.op == "global_avg_pool" else "max")
    if node.op == "add":
        return ("sum",)
    if node.op == "concat":
        return ("concat", int(a["axis"]))
    if node.op == "linear":
        return ("linear", int(node.params["weight"].shape[0]), "bias" in node.params)
    if node.op == "softmax":
        return ("softmax", int(a["axis"]))
    return (node.op, node.name)  # unique: corresponds to nothing in a zoo net


def _flat_concat(side: _Side, local: tuple, ins: list[str]) -> list[str]:
    """A concat's inputs with nested concats on the same axis spliced in (Gluon builds a split
    branch as its own concat; the zoo's Inceptions concatenate all branches at once)."""
    if local[0] != "concat":
        return ins
    out: list[str] = []
    for v in ins:
        out.extend(side.inputs[v] if side.local.get(v) == local else [v])
    return out


# ---------------------------------------------------------------------------------------------
# the Caffe side


def _caffe_side(net, shapes: dict[str, tuple[int, ...]], ids: _Ids) -> _Side:
    """On the out-of-place net (one blob per layer output); `shapes` by those blob names."""
    side = _Side({}, {}, {}, {}, set())
    producer_type: dict[str, Any] = {}
    for layer in net.layer:
        if layer.type == "Input":
            top = layer.top[0]
            side.ids[top] = ids.get(("input",))
            side.local[top] = ("input",)
            side.inputs[top] = []
            continue
        bottoms = list(layer.bottom)
        top = layer.top[0] if layer.top else None
        if top is None:
            continue
        producer_type[top] = layer
        passes = layer.type in ("Dropout", "Flatten", "Split") or (
            layer.type == "Reshape" and len(shapes.get(top, ())) == 2)
        prev = producer_type.get(bottoms[0]) if bottoms else None
        if layer.type == "Scale" and prev is not None and prev.type == "Pooling" and \
                layer.scale_param.axis == 2 and not layer.scale_param.bias_term:
            # an exclude-pad fix-up: the pooling's value with the padding excluded
            local = side.local[bottoms[0]][:-1] + (True,)
            side.local[top] = local
            side.inputs[top] = side.inputs[bottoms[0]]
            side.owner[top] = side.owner[bottoms[0]]
            side.ids[top] = ids.get(local + tuple(side.ids[v] for v in side.inputs[top]))
            continue
        if layer.type == "Scale" and prev is not None and prev.type == "BatchNorm" and \
                layer.scale_param.bias_term:
            # BatchNorm + Scale: one batch norm, owned by the pair
            src = side.inputs[bottoms[0]]
            side.local[top] = ("bn",)
            side.inputs[top] = src
            side.owner[top] = f"{prev.name}+{layer.name}"
            side.ids[top] = ids.get(("bn",) + tuple(side.ids[v] for v in src))
            continue
        if passes:
            b0 = bottoms[0]
            side.ids[top] = side.ids[b0]
            side.local[top] = side.local[b0]
            side.inputs[top] = side.inputs[b0]
            side.owner[top] = side.owner.get(b0, layer.name)
            continue
        local = _caffe_local(layer, shapes, bottoms)
        if local[0] == "eltwise" and local[1] == 1 and len(local[2]) == len(bottoms):
            # a sum with coefficients: a sum of scaled inputs (no pair of its own)
            bottoms = [b if c == 1 else _scaled(side, ids, f"{top}#{i}", b, c)
                       for i, (b, c) in enumerate(zip(bottoms, local[2], strict=True))]
            local = ("sum",)
        side.local[top] = local
        bottoms = _flat_concat(side, local, bottoms)
        side.inputs[top] = bottoms
        side.owner[top] = layer.name
        in_ids = [side.ids[v] for v in bottoms]
        if local[0] == "sum":
            in_ids.sort()
            side.commutative.add(top)
        side.ids[top] = ids.get(local + tuple(in_ids))
    return side


def _scaled(side: _Side, ids: _Ids, name: str, bottom: str, factor: float) -> str:
    side.local[name] = ("scale", float(np.float32(factor)))
    side.inputs[name] = [bottom]
    side.ids[name] = ids.get(side.local[name] + (side.ids[bottom],))
    return name


def _caffe_local(layer, shapes, bottoms) -> tuple:
    t = layer.type
    if t == "Convolution":
        p = layer.convolution_param
        w = conv_window(p)
        return ("conv", int(p.num_output), *w.kernel, w.stride, w.pad, w.dilation,
                int(p.group or 1), bool(p.bias_term))
    if t == "BatchNorm":
        return ("bn-without-scale", layer.name)
    if t == "ReLU":
        return ("relu", float(layer.relu_param.negative_slope))
    if t == "Pooling":
        p = layer.pooling_param
        method = {0: "max", 1: "ave"}.get(p.pool, "stochastic")
        in_shape = shapes[bottoms[0]]
        if p.global_pooling:
            return ("global", method)
        w = pool_window(p, in_shape[2:])
        out = tuple(shapes[layer.top[0]][2:])
        if w.pad == (0, 0) and w.kernel == tuple(in_shape[2:]) and out == (1, 1):
            return ("global", method)
        return ("pool", method, w.kernel, w.stride, w.pad, out, False)
    if t == "Eltwise":
        p = layer.eltwise_param
        coeff = tuple(p.coeff)
        if p.operation == 1 and all(c == 1 for c in coeff):
            return ("sum",)
        return ("eltwise", int(p.operation), coeff)
    if t == "Concat":
        return ("concat", int(layer.concat_param.axis))
    if t == "InnerProduct":
        return ("linear", int(layer.inner_product_param.num_output),
                bool(layer.inner_product_param.bias_term))
    if t == "Softmax":
        return ("softmax", int(layer.softmax_param.axis))
    return (t, layer.name)


# ---------------------------------------------------------------------------------------------


def _describe(local: tuple) -> str:
    names = {"conv": "convolution", "bn": "batch norm", "relu": "ReLU", "pool": "pooling",
             "global": "global pooling", "sum": "sum", "concat": "concat",
             "linear": "inner product", "input": "the input"}
    head = names.get(local[0], local[0])
    if local[0] == "conv":
        _, o, kh, kw, s, p, d, g, bias = local
        return (f"convolution {o}x{kh}x{kw} stride {s[0]} pad {p[0]}/{p[1]}"
                + (f" dilation {d[0]}" if d != (1, 1) else "") + (f" group {g}" if g > 1 else "")
                + (" with bias" if bias else ""))
    if local[0] == "pool":
        _, m, k, s, p, out, exclude = local
        return (f"{m.upper()} pooling {k[0]}x{k[1]} stride {s[0]} pad {p[0]} -> "
                f"{out[0]}x{out[1]}" + (" (padding excluded)" if exclude else ""))
    if local[0] == "relu" and local[1]:
        return f"leaky ReLU {local[1]:g}"
    if local[0] == "scale":
        return f"scaling by {local[1]:g}"
    return head


def match(graph: Graph, net, net_shapes: dict[str, tuple[int, ...]], classifier: str) -> Match:
    """Pair the out-of-place zoo `net`'s layers with `graph`'s nodes, from `classifier` (the zoo
    InnerProduct whose output is the graph's first output) down to the input."""
    ids = _Ids()
    g = _graph_side(graph, ids)
    z = _caffe_side(net, net_shapes, ids)
    top = next(layer.top[0] for layer in net.layer if layer.name == classifier)
    pairs: dict[str, str] = {}
    seen: dict[str, str] = {}
    result = Match(pairs)
    stack = [(top, graph.outputs[0])]
    while stack:
        zb, gv = stack.pop()
        if zb in seen:
            if seen[zb] != gv and g.ids[seen[zb]] != g.ids[gv]:
                result.mismatch = f"zoo blob {zb!r} corresponds to two different source values"
                return result
            continue
        seen[zb] = gv
        if z.ids[zb] != g.ids[gv]:
            result.mismatch = _first_difference(z, g, zb, gv)
            return result
        owner = z.owner.get(zb)
        if owner is not None and z.local[zb][0] not in ("input",):
            for name in owner.split("+"):
                pairs[name] = g.owner[gv]
        zin, gin = z.inputs[zb], g.inputs[gv]
        if zb in z.commutative:
            remaining = list(gin)
            for b in zin:
                k = next(i for i, v in enumerate(remaining) if g.ids[v] == z.ids[b])
                stack.append((b, remaining.pop(k)))
        else:
            stack.extend(zip(zin, gin, strict=True))
    return result


def _first_difference(z: _Side, g: _Side, zb: str, gv: str) -> str:
    """Descend while the two sides' own operations agree; describe where they first differ."""
    while True:
        zl, gl = z.local[zb], g.local[gv]
        zin, gin = z.inputs[zb], g.inputs[gv]
        if zl != gl or len(zin) != len(gin):
            counts = f" of {len(zin)} inputs" if len(zin) != len(gin) else ""
            gcounts = f" of {len(gin)} inputs" if len(zin) != len(gin) else ""
            return (f"zoo layer {z.owner.get(zb, zb)!r} is a {_describe(zl)}{counts} where the "
                    f"source's {g.owner.get(gv, gv)!r} is a {_describe(gl)}{gcounts}")
        if zb in z.commutative:
            zs = sorted(zin, key=lambda v: z.ids[v])
            gs = sorted(gin, key=lambda v: g.ids[v])
        else:
            zs, gs = zin, gin
        nxt = next(((a, b) for a, b in zip(zs, gs, strict=True) if z.ids[a] != g.ids[b]), None)
        if nxt is None:
            return (f"zoo layer {z.owner.get(zb, zb)!r} and the source's "
                    f"{g.owner.get(gv, gv)!r} combine their inputs differently")
        zb, gv = nxt
