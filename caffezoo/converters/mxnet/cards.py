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
The difference is folded into the graph's first layers before pairing
(converters/graph_cards.py, the path every card source with a graph front end takes): the
channel reversal through graph/channels.py, and, exactly only where a convolution does not pad,
the per-channel affine map; a batch norm on the input (Gluon's ResNetV2) gets both in its
statistics and gamma.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from caffezoo.card_plan import Plan
from caffezoo.contract import InputContract
from caffezoo.converters import graph_cards
from caffezoo.converters.common import Checkpoint, Conversion, ConvertOptions, apply_plan
from caffezoo.converters.graph_cards import REVERSED
from caffezoo.errors import ConversionError
from caffezoo.graph.ir import Graph
from caffezoo.source_runner import SourceRun

LAYOUT = "mxnet-graph"
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
    more, offsets = graph_cards.fold_input(graph, effective, card)
    notes += more
    m = graph_cards.match_card(graph, net)
    if m.mismatch is not None:
        raise graph_cards.refuse(graph, card, spec, m.mismatch, size)
    plan, ckpt = graph_cards.plan_from_match(graph, net, m.pairs, LAYOUT, spec, "mxnet")
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
