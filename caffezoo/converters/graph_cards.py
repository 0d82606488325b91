"""A source graph into a zoo card: the one way a card conversion goes wherever a graph front end
exists (MXNet checkpoints, PyTorch checkpoints traced to ONNX, Lua trees through the PyTorch
model they map to).

1. `fold_input`: the graph is made to take the card's input (BGR, the card's mean/std) instead
   of the source's: the channel reversal through graph/channels.py, then the per-channel affine
   difference into the layers reading the input (`fold_affine_into_conv`, which TF-slim's
   plans use too; exact only where a convolution does not pad).
2. `match_card`: the graph and the card's net are paired layer by layer by structure
   (graph/match.py); where they differ, `refuse` names the first difference and the cards the
   graph does fit.
3. `plan_from_match`: the pairing becomes a Plan of canonical tensors (`<source>.weight`,
   `<source>.mean`, ...) that converters.common.apply_plan applies with its usual checks (every
   tensor placed, every layer filled, pooling geometry, exclude-pad Scales, eps).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from caffezoo.card_plan import Assign, Op, Plan, PoolSpec
from caffezoo.contract import InputContract, input_affine
from caffezoo.converters.common import Checkpoint, ParamNaming, Part, fold_affine_into_conv
from caffezoo.errors import ConversionError
from caffezoo.graph.ir import Graph

REVERSED = np.zeros(0, np.float32)  # offsets marker: the node's channels are in reversed order
NAMING_KEYS = {Part.WEIGHT: "{m}.weight", Part.BIAS: "{m}.bias", Part.MEAN: "{m}.mean",
               Part.VAR: "{m}.var", Part.GAMMA: "{m}.gamma", Part.BETA: "{m}.beta"}


def fold_input(graph: Graph, effective: InputContract, card, bgr: bool = True
               ) -> tuple[list[str], dict[str, np.ndarray]]:
    """Make `graph` (in place) take the card's input (BGR, card mean/std) instead of the
    source's (`effective`: what its first layers see). Returns the notes and the offsets: node
    -> per-channel amount its Caffe output is below the source's (a mean shift folded into the
    batch norm after a first convolution without bias), or REVERSED (a node whose output keeps
    the input's channels: Caffe holds them in BGR order)."""
    from caffezoo.graph.channels import reverse_input_channels, reversed_values

    (data,) = graph.inputs
    affine = input_affine(effective, card.mean, card.std)
    offsets: dict[str, np.ndarray] = {}
    notes: list[str] = []
    if bgr and effective.channel_order == "RGB":
        flipped = reversed_values(graph) - {data}
        for node in graph.nodes:
            if node.op != "conv" and node.outputs[0] in flipped:
                offsets[node.name] = REVERSED
        reverse_input_channels(graph)
        notes += [f"{n.name}: input channels reversed (RGB source, BGR input)"
                  for n in graph.nodes if data in n.inputs]
    if affine is not None:
        a, b = affine  # BGR; the source's order where the net keeps it
        if not bgr and effective.channel_order == "RGB":
            a, b = a[::-1], b[::-1]
        source = effective.describe_normalization()
        for node in [n for n in graph.nodes if data in n.inputs]:
            _fold_affine(graph, node, a, b, card, source, offsets)
        notes.append(f"{card.name}'s mean/std folded into the layers reading the input "
                     f"(source: {source})")
    return notes, offsets


def _fold_affine(graph: Graph, node, a: np.ndarray, b: np.ndarray, card, source: str,
                 offsets: dict[str, np.ndarray]) -> None:
    """source_input = a * card_input + b (per channel) folded into `node`, a reader of the
    input."""
    if node.op == "conv":
        what = (f"{node.describe()}: {card.name}'s mean/std differ from the source's "
                f"({source})")
        w, shift = fold_affine_into_conv(node.params["weight"], node.attrs["pads"], a, b, what)
        node.params["weight"] = w
        if "bias" in node.params:
            node.params["bias"] = (node.params["bias"] + shift).astype(np.float32)
            return
        bn = [n for n in graph.nodes if node.outputs[0] in n.inputs]
        if len(bn) != 1 or bn[0].op != "batch_norm":
            raise ConversionError(f"{node.describe()}: no bias and no batch norm after it to "
                                  "take the mean shift")
        bn[0].params["mean"] = (bn[0].params["mean"] - shift).astype(np.float32)
        offsets[node.name] = shift
    elif node.op == "batch_norm":
        p = {k: v.astype(np.float64) for k, v in node.params.items()}
        # gamma (a x + b - m) / s = (gamma a) (x - (m - b) / a) / s
        p["mean"] = (p["mean"] - b) / a
        p["gamma"] = p["gamma"] * a
        node.params = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in p.items()}
    else:
        raise ConversionError(f"{node.describe()}: reads the input directly; only "
                              "convolutions and batch norms can take the card's input "
                              "convention")


def match_card(graph: Graph, net):
    """graph/match.py's pairing of `graph` with the card's `net` (layer names as in `net`)."""
    from caffezoo.analysis import analyze
    from caffezoo.graph.match import match
    from caffezoo.out_of_place import out_of_place

    oop = out_of_place(net)
    shapes = {k: tuple(v) for k, v in analyze(oop.net).blob_shapes.items()}
    ips = [layer.name for layer in net.layer if layer.type == "InnerProduct"]
    if not ips:
        raise ConversionError(f"{net.name}: no InnerProduct layer to pair with the source's "
                              "output")
    # the out-of-place net keeps layer names: pairs apply to the card's net as they are
    return match(graph, oop.net, shapes, ips[-1])


def fitting_cards(graph: Graph, size: int, exclude: str) -> list[str]:
    """The zoo cards (variants included) whose net at `size` the graph fits."""
    from caffezoo import zoo

    out = []
    for card in zoo.all_cards(variants=True):
        if card.name == exclude or not card.available:
            continue
        try:
            if match_card(graph, card.build(size)).mismatch is None:
                out.append(card.name)
        except Exception:  # a card that cannot be built at this size fits nothing
            continue
    return out


def refuse(graph: Graph, card, spec: str, mismatch: str, size: int) -> ConversionError:
    """The refusal of a graph that does not fit the card: the first difference, and the cards
    it fits."""
    fits = fitting_cards(graph, size, card.name)
    hint = (f"; the checkpoint fits --model {' or '.join(fits)}" if fits else
            "; no zoo card has this structure: convert it without --model")
    return ConversionError(f"{card.name} cannot hold {spec} exactly: {mismatch}{hint}")


def pool_spec(graph: Graph, node) -> PoolSpec:
    a = node.attrs
    method = "max" if node.op in ("max_pool", "global_max_pool") else "ave"
    if node.op.startswith("global"):
        return PoolSpec(method, global_pool=True)
    in_shape = graph.shapes[node.inputs[0]]
    k, s, pads = a["kernel"], a["stride"], a["pads"]
    if not any(pads) and tuple(k) == tuple(in_shape[2:]) and \
            graph.shapes[node.outputs[0]][2:] == (1, 1):
        return PoolSpec(method, global_pool=True)
    if k[0] != k[1] or s[0] != s[1] or len(set(pads)) != 1:
        raise ConversionError(f"{node.describe()}: non-square pooling has no zoo counterpart")
    return PoolSpec(method, int(k[0]), int(s[0]), int(pads[0]),
                    exclude_pad=not a.get("count_include_pad", True), ceil=bool(a["ceil"]))


def plan_from_match(graph: Graph, net, pairs: dict[str, str], layout: str, path: str, fmt: str,
                    source_of: Callable[[str], str] = str) -> tuple[Plan, Checkpoint]:
    """The plan of a pairing (zoo layer -> graph node) and the checkpoint (`path`, format
    `fmt`) of the paired nodes' canonical tensors, named `<source>.<part>` where
    `source_of(node name)` names the source module (the node itself by default; "" for a
    pooling that is no module)."""
    nodes = {n.name: n for n in graph.nodes}
    layers = {layer.name: layer for layer in net.layer}
    tensors: dict[str, np.ndarray] = {}
    eps: dict[str, float] = {}
    assigns: list[Assign] = []
    bn_pairs: dict[str, list[str]] = {}
    for layer_name, node_name in pairs.items():
        layer, node = layers.get(layer_name), nodes[node_name]
        if layer is None:
            continue
        src = source_of(node_name)
        if layer.type == "Convolution":
            assigns.append(Assign(Op.CONV, src, (layer_name,)))
        elif layer.type == "InnerProduct":
            assigns.append(Assign(Op.LINEAR, src, (layer_name,)))
        elif layer.type in ("BatchNorm", "Scale"):
            bn_pairs.setdefault(node_name, []).append(layer_name)
        elif layer.type == "Pooling":
            assigns.append(Assign(Op.POOL, src, (layer_name,), pool=pool_spec(graph, node)))
    for node_name, pair in bn_pairs.items():
        bn = next(x for x in pair if layers[x].type == "BatchNorm")
        scale = next(x for x in pair if layers[x].type == "Scale")
        src = source_of(node_name)
        eps[src] = float(nodes[node_name].attrs["eps"])
        assigns.append(Assign(Op.BN, src, (bn, scale), eps=eps[src]))
    order = {layer.name: i for i, layer in enumerate(net.layer)}
    assigns.sort(key=lambda a: order[a.layers[0]])
    by_source = {source_of(n): n for n in pairs.values()}
    for a in assigns:
        if a.op in Op.WEIGHTED:
            for part, arr in nodes[by_source[a.source]].params.items():
                tensors[f"{a.source}.{part}"] = arr
    ckpt = Checkpoint(path, fmt, tensors, eps=eps, naming=ParamNaming(keys=NAMING_KEYS))
    return Plan(layout, assigns), ckpt
