"""A card source (converted into a zoo card through a plan) against its Caffe net.

Each side gets its own input convention from the same images (validation/inputs.py): the
source model its own normalisation (RGB for PyTorch models), Caffe the net's contract (the zoo
card's, BGR). So a pass proves the weights *and* the stated mapping between the two
preprocessings. The output compared is the classifier's (the logits, before softmax).

The layer pass compares every mapped source module with its Caffe layer: a convolution's input
and output, a batch norm's output (after Scale), a pooling's output, the classifier's input and
output.
"""

from __future__ import annotations

import numpy as np

from caffezoo.card_plan import Op, Plan
from caffezoo.contract import InputContract, input_affine
from caffezoo.out_of_place import OutOfPlace
from caffezoo.source_runner import CardRunner
from caffezoo.validation.engine import ConvertedNet, Point, compare
from caffezoo.validation.inputs import Inputs
from caffezoo.validation.report import DEFAULT_TOLERANCE, Report


def net_contract(card, size: int, found: InputContract | None) -> InputContract:
    """The contract of a card's net at crop `size`: the one beside the net (moved to `size`
    as eval moves it, keeping its crop_pct), else the card's (caffezoo.zoo.ModelCard.contract)."""
    if found is None:
        return card.contract(size)
    return found if found.crop_size == size else found.at_crop(size)


class CardSide:
    """A card runner as the engine sees it: its classifier's output, and the plan's modules
    found in the net."""

    def __init__(self, runner: CardRunner, zoo_net):
        self.runner = runner
        self.zoo_net = zoo_net
        linear = next(a for a in runner.plan.assigns if a.op == Op.LINEAR)
        self.classifier = linear.layers[0]
        self.module = linear.source or self.classifier

    def outputs(self, x: np.ndarray) -> dict[str, np.ndarray]:
        return {self.module: self.runner.run(x).logits}

    def output_points(self, names: list[str], caffe: ConvertedNet) -> list[Point]:
        top = next((layer.top[0] for layer in caffe.given.layer
                    if layer.name == self.classifier), self.classifier)
        return [Point(self.module, "output", self.classifier, top)]

    def values(self, x: np.ndarray, caffe: ConvertedNet) -> list[tuple[Point, np.ndarray]]:
        refs = references(self.runner.plan, self.zoo_net, caffe.oop)
        records = self.runner.run(x, record_set(self.runner.plan)).records
        out = []
        for point, side in refs:
            rec = records.get(point.source)
            if rec is not None:
                out.append((point, rec[0] if side == "in" else rec[1]))
        return out


def references(plan: Plan, zoo_net, oop: OutOfPlace) -> list[tuple[Point, str]]:
    """(point, 'in'|'out') for every comparable module of the plan, in the order Caffe
    computes the blobs (named as in the net rewritten out of place)."""
    zoo_tops = {layer.name: list(layer.top) for layer in zoo_net.layer}
    refs = []
    for a in plan.assigns:
        if not a.source:
            continue
        layer = a.layers[-1] if a.op == Op.BN else a.layers[0]
        if layer not in oop.tops:
            continue
        if a.op in (Op.CONV, Op.LINEAR):
            bottom = oop.bottoms[layer][0]
            producer = oop.producer.get(bottom)
            if producer is not None and oop.types[producer] != "Input":
                refs.append((Point(a.source, "input", producer, bottom), "in"))
            refs.append((Point(a.source, "output", layer, oop.tops[layer][0]), "out"))
        elif a.op == Op.BN:
            refs.append((Point(a.source, "output", layer, oop.tops[layer][0]), "out"))
        elif a.op == Op.POOL:
            blob = oop.consumed(zoo_tops.get(layer, [""])[0], layer) or oop.tops[layer][0]
            refs.append((Point(a.source, "output", layer, blob), "out"))
    # one entry per blob; a pooling's output is also the next convolution's input: keep the
    # pooling's name
    chosen: dict[str, tuple[Point, str]] = {}
    for r in refs:
        old = chosen.get(r[0].blob)
        if old is None or (old[0].part == "input" and r[0].part == "output"):
            chosen[r[0].blob] = r
    return sorted(chosen.values(),
                  key=lambda r: oop.index[oop.producer.get(r[0].blob, r[0].layer)])


def record_set(plan: Plan) -> set[str]:
    return {a.source for a in plan.assigns if a.source and a.op in (*Op.WEIGHTED, Op.POOL)}


def validate(runner: CardRunner, card, zoo_net, caffe: ConvertedNet, inputs: Inputs,
             net: InputContract, source_spec: str, tolerance: float = DEFAULT_TOLERANCE,
             layers: bool = False, batch_size: int = 4) -> Report:
    """Run both sides on `inputs` (made for the net's contract `net` and the runner's
    input_norm) and compare."""
    mean, std = net.bgr_normalization_255()
    mapping = ("the net's mean/std = the source's normalisation, channels reversed"
               if input_affine(runner.effective_norm, mean, std) is None else
               "the net's mean/std differ from the source's; the conversion must have folded "
               "the difference into the first convolution")
    source_input = inputs.source_input + (
        "" if runner.input_norm == runner.effective_norm else
        f" (the model turns it into {runner.effective_norm.describe_normalization()})")
    outputs, diffs, first = compare(CardSide(runner, zoo_net), caffe, inputs, tolerance,
                                    layers, batch_size)
    return Report(
        source=source_spec, backend=caffe.backend, prototxt=caffe.prototxt,
        weights=caffe.weights, inputs=inputs.what, count=len(inputs.caffe),
        input_shape=[int(d) for d in inputs.caffe.shape[1:]],
        caffe_input=f"{inputs.caffe_input} ({net.origin or 'the net contract'})",
        source_input=source_input, mapping=mapping, outputs=outputs, tolerance=tolerance,
        passed=all(o.ok for o in outputs) and first is None, model=card.name,
        layout=runner.plan.layout, layers=diffs, first_divergence=first)
