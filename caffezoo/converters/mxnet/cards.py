"""An MXNet checkpoint into a zoo card (`caffezoo convert --source mxnet:PREFIX --model M`).

The card's net and the checkpoint's graph are paired layer by layer by structure
(caffezoo.graph.match): where they compute the same thing up to the weights, the pairing becomes
a Plan of canonical tensors (`<node>.weight`, `<node>.mean`, ...) that the card converters'
handlers apply with their usual checks (converters.common.apply_plan: every tensor placed, every
layer filled, pooling geometry, exclude-pad Scales, eps). Where they differ, the conversion is
refused naming the first difference and the cards the checkpoint does fit (e.g. Gluon's
resnet101_v2 fits `resnet101_v2_gluon`, not the zoo's original `resnet101_v2`).

Input conventions: a zoo card takes BGR images normalised with the card's mean/std. The
checkpoint's convention is Gluon's ImageNet one (RGB), or, when the net scales its own input with
scalar ops, raw RGB pixels composed with those ops (the ops are then folded out of the graph).
The difference is folded into the graph's first layers before pairing: a convolution gets its
input channels reversed and, exactly only when it does not pad, the per-channel affine map; a
batch norm on the input (Gluon's ResNetV2) gets both in its statistics and gamma.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from caffezoo.card_plan import Assign, Op, Plan, PoolSpec
from caffezoo.contract import InputContract, input_affine
from caffezoo.converters.common import (
    Checkpoint,
    Conversion,
    ConvertOptions,
    ParamNaming,
    Part,
    apply_plan,
)
from caffezoo.errors import ConversionError
from caffezoo.graph.ir import Graph
from caffezoo.source_runner import SourceRun

LAYOUT = "mxnet-graph"
REVERSED = np.zeros(0, np.float32)  # offsets marker: the node's channels are in reversed order
# the zoo cards a Gluon model-zoo net fills, and that net (for --random-init)
GLUON_FOR_CARD = {"inception_v3_tv": "inceptionv3", "resnet101_v2_gluon": "resnet101_v2",
                  "resnet152_v2_gluon": "resnet152_v2"}


@dataclass
class CardPairing:
    graph: Graph  # input conventions folded in, input scaling ops removed
    plan: Plan
    ckpt: Checkpoint
    input_norm: InputContract  # what the MXNet net takes (run() expects)
    effective_norm: InputContract  # what its first layers see
    notes: list[str]
    # node -> per-channel amount its Caffe output is below MXNet's (a mean shift folded into
    # the batch norm after a first convolution without bias), or REVERSED (a batch norm on the
    # input: Caffe's channels are BGR)
    offsets: dict[str, np.ndarray]


def _strip_input_scaling(graph: Graph, data: str, source_norm: InputContract
                         ) -> tuple[InputContract, InputContract, list[str]]:
    from caffezoo.converters.mxnet.frontend import input_scaling

    found = input_scaling(graph, data)
    if found is None:
        return source_norm, source_norm, []
    chain, a, b = found
    if a == 0:
        raise ConversionError(f"{chain[0].describe()}: the input scaling multiplies by 0")
    last = chain[-1].outputs[0]
    removed = {n.name for n in chain}
    graph.nodes = [n for n in graph.nodes if n.name not in removed]
    for node in graph.nodes:
        node.inputs = [data if v == last else v for v in node.inputs]
    from caffezoo.converters.mxnet import RAW_RGB

    mean, std = -b / a, 1 / a
    if std <= 0:
        raise ConversionError(f"{chain[0].describe()}: the input scaling negates the input "
                              f"(x * {a:g} + {b:g}); no mean/std states it")
    effective = InputContract(channel_order="RGB", mean=(mean,) * 3, std=(std,) * 3)
    return RAW_RGB, effective, [f"input scaling ops {', '.join(n.name for n in chain)} folded into "
                            f"the input normalisation: {effective.describe_normalization()}"]


def _fold_input(graph: Graph, data: str, effective: InputContract, card,
                offsets: dict[str, np.ndarray]) -> list[str]:
    """Make the graph take the card's input (BGR, card mean/std) instead of the source's."""
    affine = input_affine(effective, card.mean, card.std)
    reverse = effective.channel_order == "RGB"
    consumers = [n for n in graph.nodes if data in n.inputs]
    notes = []
    for node in consumers:
        if node.op == "conv":
            w = node.params["weight"].astype(np.float64)
            if reverse:
                w = w[:, ::-1]
            if affine is not None:
                if any(node.attrs["pads"]):
                    raise ConversionError(
                        f"{node.describe()}: {card.name}'s mean/std differ from the source's "
                        f"({effective.describe_normalization()}) and this first convolution "
                        "pads its input, so the difference cannot be folded in exactly")
                a, b = affine  # BGR, per input channel
                shift = (w * b.reshape(1, -1, 1, 1)).sum(axis=(1, 2, 3))
                w = w * a.reshape(1, -1, 1, 1)
                if "bias" in node.params:
                    node.params["bias"] = (node.params["bias"] + shift).astype(np.float32)
                else:
                    bn = [n for n in graph.nodes if node.outputs[0] in n.inputs]
                    if len(bn) != 1 or bn[0].op != "batch_norm":
                        raise ConversionError(f"{node.describe()}: no bias and no batch norm "
                                              "after it to take the mean shift")
                    bn[0].params["mean"] = (bn[0].params["mean"] - shift).astype(np.float32)
                    offsets[node.name] = shift
            node.params["weight"] = np.ascontiguousarray(w, dtype=np.float32)
        elif node.op == "batch_norm":
            p = {k: v.astype(np.float64) for k, v in node.params.items()}
            if reverse:
                p = {k: v[::-1] for k, v in p.items()}
            if affine is not None:
                a, b = affine
                # gamma (a x + b - m) / s = (gamma a) (x - (m - b) / a) / s
                p["mean"] = (p["mean"] - b) / a
                p["gamma"] = p["gamma"] * a
            node.params = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in p.items()}
            if reverse:  # its output keeps the input's channel order: so must its readers
                offsets[node.name] = REVERSED
                for reader in (n for n in graph.nodes if node.outputs[0] in n.inputs):
                    if reader.op != "conv":
                        raise ConversionError(f"{reader.describe()}: reads the input's batch "
                                              "norm; only convolutions can take reversed "
                                              "channels there")
                    reader.params["weight"] = np.ascontiguousarray(
                        reader.params["weight"][:, ::-1])
        else:
            raise ConversionError(f"{node.describe()}: reads the input directly; only "
                                  "convolutions and batch norms can take the card's input "
                                  "convention")
        notes.append(f"{node.name}: input channels reversed (RGB source, BGR input)"
                     + ("" if affine is None else
                        f"; {card.name}'s mean/std folded in (source: "
                        f"{effective.describe_normalization()})"))
    return notes


def _pool_spec(graph: Graph, node) -> PoolSpec:
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


def _fitting_cards(graph: Graph, size: int, exclude: str) -> list[str]:
    from caffezoo import zoo

    out = []
    for card in zoo.all_cards(variants=True):
        if card.name == exclude or not card.available:
            continue
        try:
            if _match(graph, card.build(size)).mismatch is None:
                out.append(card.name)
        except Exception:  # a card that cannot be built at this size fits nothing
            continue
    return out


def _match(graph: Graph, net):
    from caffezoo.analysis import analyze
    from caffezoo.graph.match import match
    from caffezoo.out_of_place import out_of_place

    oop = out_of_place(net)
    shapes = {k: tuple(v) for k, v in analyze(oop.net).blob_shapes.items()}
    ips = [layer.name for layer in net.layer if layer.type == "InnerProduct"]
    if not ips:
        raise ConversionError(f"{net.name}: no InnerProduct layer to pair with the source's "
                              "output")
    m = match(graph, oop.net, shapes, ips[-1])
    # the out-of-place net keeps layer names: pairs apply to the card's net as they are
    return m


def pair_with_card(spec: str, card, net, size: int) -> CardPairing:
    """Read, fold the input conventions in, pair with the card's net; the plan and tensors."""
    from caffezoo.converters.mxnet import GLUON_IMAGENET, read_graph

    graph = read_graph(spec, (1, 3, size, size))
    (data,) = graph.inputs
    notes = [n for n in graph.notes if not n.startswith("the net scales its own input")]
    input_norm, effective, more = _strip_input_scaling(graph, data, GLUON_IMAGENET)
    notes += more
    if effective is GLUON_IMAGENET:
        notes.append("the source's input convention is taken as Gluon's: "
                     f"{GLUON_IMAGENET.describe_normalization()}")
    offsets: dict[str, np.ndarray] = {}
    notes += _fold_input(graph, data, effective, card, offsets)
    m = _match(graph, net)
    if m.mismatch is not None:
        fits = _fitting_cards(graph, size, card.name)
        hint = (f"; the checkpoint fits --model {' or '.join(fits)}" if fits else
                "; no zoo card has this structure: convert it without --model")
        raise ConversionError(f"{card.name} cannot hold {spec} exactly: {m.mismatch}{hint}")
    nodes = {n.name: n for n in graph.nodes}
    layers = {layer.name: layer for layer in net.layer}
    tensors: dict[str, np.ndarray] = {}
    eps: dict[str, float] = {}
    assigns: list[Assign] = []
    bn_pairs: dict[str, list[str]] = {}
    for layer_name, node_name in m.pairs.items():
        layer, node = layers.get(layer_name), nodes[node_name]
        if layer is None:
            continue
        if layer.type == "Convolution":
            assigns.append(Assign(Op.CONV, node_name, (layer_name,)))
        elif layer.type == "InnerProduct":
            assigns.append(Assign(Op.LINEAR, node_name, (layer_name,)))
        elif layer.type in ("BatchNorm", "Scale"):
            bn_pairs.setdefault(node_name, []).append(layer_name)
        elif layer.type == "Pooling":
            assigns.append(Assign(Op.POOL, node_name, (layer_name,),
                                  pool=_pool_spec(graph, node)))
    for node_name, pair in bn_pairs.items():
        bn = next(x for x in pair if layers[x].type == "BatchNorm")
        scale = next(x for x in pair if layers[x].type == "Scale")
        eps[node_name] = float(nodes[node_name].attrs["eps"])
        assigns.append(Assign(Op.BN, node_name, (bn, scale), eps=eps[node_name]))
    order = {layer.name: i for i, layer in enumerate(net.layer)}
    assigns.sort(key=lambda a: order[a.layers[0]])
    for a in assigns:
        if a.op in Op.WEIGHTED:
            for part, arr in nodes[a.source].params.items():
                tensors[f"{a.source}.{part}"] = arr
    ckpt = Checkpoint(spec, "mxnet", tensors, eps=eps, naming=ParamNaming(keys=NAMING_KEYS))
    plan = Plan(LAYOUT, assigns)
    return CardPairing(graph, plan, ckpt, input_norm, effective, notes, offsets)


def convert(spec: str, card, input_size: int | None = None, layout: str | None = None,
            options: ConvertOptions | None = None) -> Conversion:
    size = input_size or card.input_size
    net = card.build(size)
    prep = pair_with_card(spec, card, net, size)
    # the input conventions are already folded into the tensors
    result = apply_plan(net, prep.ckpt, prep.plan, ConvertOptions(bgr=False))
    result.notes[:0] = prep.notes
    return result


NAMING_KEYS = {Part.WEIGHT: "{m}.weight", Part.BIAS: "{m}.bias", Part.MEAN: "{m}.mean",
               Part.VAR: "{m}.var", Part.GAMMA: "{m}.gamma", Part.BETA: "{m}.beta"}


# ---------------------------------------------------------------------------------------------
# validate's source side for a card


class CardRunner:
    """MXNet running the checkpoint, recording the planned nodes' inputs and outputs."""

    def __init__(self, spec: str, prep: CardPairing, size: int) -> None:
        from caffezoo.converters.mxnet import open_graph_runner

        self.plan = prep.plan
        self.input_norm = prep.input_norm
        self.effective_norm = prep.effective_norm
        self._graph = prep.graph
        self._mx = open_graph_runner(spec, (1, 3, size, size))
        self._nodes = {n.name: n for n in prep.graph.nodes}
        self._producer = {n.outputs[0]: n for n in prep.graph.nodes}
        self._offsets = prep.offsets

    def _mx_value(self, value: str) -> tuple[str, bool]:
        """The MXNet value holding `value` (a front-end flatten's input), and whether it must
        be flattened."""
        node = self._producer.get(value)
        if node is not None and node.op == "flatten" and value not in self._mx.available():
            return node.inputs[0], True
        return value, False

    def run(self, x: np.ndarray, record: set[str] | None = None) -> SourceRun:
        wanted: dict[str, tuple[tuple[str, bool], tuple[str, bool]]] = {}
        for name in record or ():
            node = self._nodes.get(name)
            if node is not None:
                wanted[name] = (self._mx_value(node.inputs[0]), self._mx_value(node.outputs[0]))
        values = {v for pair in wanted.values() for v, _ in pair}
        out = self._mx.run(x, values)
        logits = out[self._graph.outputs[0]]

        def get(ref: tuple[str, bool]) -> np.ndarray:
            arr = out.get(ref[0])
            if arr is None:
                return np.zeros((0,), np.float32)
            return arr.reshape(len(arr), -1) if ref[1] else arr

        records = {name: (get(i), get(o)) for name, (i, o) in wanted.items()}
        for name, shift in self._offsets.items():  # what the Caffe layer holds
            if name in records:
                i, o = records[name]
                if shift is REVERSED:
                    records[name] = (i[:, ::-1], o[:, ::-1])
                else:
                    records[name] = (i, o - shift.reshape(1, -1, 1, 1).astype(np.float32))
        return SourceRun(logits.reshape(len(logits), -1), records)


def open_source(spec: str, card, net, layout: str | None = None) -> CardRunner:
    from caffezoo.analysis import analyze

    (shape,) = analyze(net).inputs.values()
    size = int(shape[-1])
    return CardRunner(spec, pair_with_card(spec, card, net, size), size)


def random_prefix(spec: str) -> str:
    """The PREFIX a random checkpoint for `spec` (PREFIX, PREFIX-symbol.json, PREFIX,EPOCH)
    is written to."""
    prefix = spec[: -len("-symbol.json")] if spec.endswith("-symbol.json") else spec
    return prefix.partition(",")[0]


def random_checkpoint(card_name: str, path: str, layout: str | None = None, seed: int = 0
                      ) -> str:
    from caffezoo import zoo
    from caffezoo.converters.mxnet.gluon import export_random_gluon
    from caffezoo.errors import InputFileError

    if card_name not in GLUON_FOR_CARD:
        raise InputFileError(f"no Gluon model-zoo net fills {card_name} (ones that do: "
                             f"{', '.join(GLUON_FOR_CARD)})")
    prefix = random_prefix(path)
    name = GLUON_FOR_CARD[card_name]
    export_random_gluon(name, prefix, zoo.get_card(card_name).input_size, seed)
    return f"Gluon {name} exported to {prefix}-symbol.json + {prefix}-0000.params"
