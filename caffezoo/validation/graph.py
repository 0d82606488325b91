"""A graph source (converted without a card: MXNet, ONNX, PyTorch traced...) against its Caffe
net, outputs and IR value by IR value.

Both sides get the *identical* input tensor (the conversion maps the graph input to the Caffe
input as it is), or, for a net converted to take the other channel order, the same tensor with
its channels reversed. Every graph output is compared (the first is the classifier's logits);
with `layers`, every IR value whose blob the prototxt has (the emitter names each value's blob
after it and never works in place; a net written by another tool runs rewritten out of place).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from caffezoo.contract import InputContract
from caffezoo.errors import NetDefinitionError
from caffezoo.graph.context import sanitize
from caffezoo.graph.ir import Graph
from caffezoo.source_runner import GraphRunner
from caffezoo.validation.engine import ConvertedNet, Point, compare
from caffezoo.validation.inputs import Inputs, make_inputs
from caffezoo.validation.report import DEFAULT_TOLERANCE, Report


def graph_inputs(runner: GraphRunner, images: str | Path | None = None,
                 random: int | None = None, seed: int = 0, limit: int | None = None,
                 contract: InputContract | None = None, reverse: bool = False) -> Inputs:
    """The inputs of a graph source and its net (inputs.make_inputs), made by `contract` (the
    net's, in the source's channel order), else by the runner's `input_norm`, moved to the
    source's input size keeping its crop_pct. `reverse`: the net takes the channels reversed."""
    shape = tuple(int(d) for d in runner.input_shape[1:])
    source = contract or runner.input_norm
    net = None
    if source is not None:
        if source.crop_size != shape[-1]:
            source = source.at_crop(shape[-1])
        net = source.in_order("BGR" if source.channel_order == "RGB" else "RGB") \
            if reverse else source
    return make_inputs(shape, net, source, images, random, seed, limit, reverse)


class GraphSide:
    """A graph runner as the engine sees it: its outputs and IR values, found in the net by
    name (`graph`: the source's, names the values of the layer pass; without it the runner is
    asked for every blob name and ignores those that are not its values). `flipped`: the
    values the net holds with their channels reversed, None when it takes the source's
    order."""

    def __init__(self, runner: GraphRunner, graph: Graph | None, flipped: set[str] | None):
        self.runner = runner
        self.graph = graph
        self.flipped = flipped

    def outputs(self, x: np.ndarray) -> dict[str, np.ndarray]:
        return self.runner.run(x)

    def output_points(self, names: list[str], caffe: ConvertedNet) -> list[Point]:
        finals = caffe.output_names()
        points = []
        for value in names:
            blob = blob_of(value, finals, None)
            if blob is None:
                raise NetDefinitionError(f"{caffe.prototxt}: no blob for the source's output "
                                         f"{value!r} (blobs are named after values)")
            points.append(Point(value, "output", caffe.writer.get(blob, ""), blob))
        return points

    def values(self, x: np.ndarray, caffe: ConvertedNet) -> list[tuple[Point, np.ndarray]]:
        value_blobs = (value_blobs_for(self.graph, caffe.names(graph_values(self.graph)))
                       if self.graph is not None else None)
        record = set(value_blobs) if value_blobs is not None else set(caffe.names())
        src = self.runner.run(x, record)  # the outputs and the recorded values
        blobs = caffe.names(src)  # now that the source's names are known
        pairs = []
        for value in src:
            blob = blob_of(value, blobs, value_blobs)
            if blob is not None and blob != caffe.layer_runtime.input_name:
                ref = np.asarray(src[value], np.float32)
                if self.flipped and value in self.flipped:
                    ref = np.ascontiguousarray(ref[:, ::-1])
                pairs.append((Point(value, "value", caffe.layer_of(blob), blob), ref))
        pairs.sort(key=lambda p: caffe.order.get(p[0].blob, 0))
        return pairs


def validate(runner: GraphRunner, caffe: ConvertedNet, inputs: Inputs, source_spec: str,
             tolerance: float = DEFAULT_TOLERANCE, layers: bool = False,
             batch_size: int = 4, graph: Graph | None = None,
             net_channels: str = "") -> Report:
    """Run both sides on `inputs` (graph_inputs) and compare. `net_channels` (e.g. "BGR"): the
    net was converted to take the input channels reversed (graph.channels)."""
    flipped = None
    if net_channels and layers:
        from caffezoo.graph.channels import reversed_values

        flipped = reversed_values(graph) if graph is not None else set()
    outputs, diffs, first = compare(GraphSide(runner, graph, flipped), caffe, inputs,
                                    tolerance, layers, batch_size)
    mapping = (f"the net gets the source's tensor with its channels reversed ({net_channels})"
               if net_channels else "both sides get the same tensor")
    return Report(
        source=source_spec, backend=caffe.backend, prototxt=caffe.prototxt,
        weights=caffe.weights, inputs=inputs.what, count=len(inputs.caffe),
        input_shape=[int(d) for d in inputs.caffe.shape[1:]], caffe_input=inputs.caffe_input,
        source_input=inputs.source_input, mapping=mapping, outputs=outputs,
        tolerance=tolerance, passed=all(o.ok for o in outputs) and first is None,
        layers=diffs, first_divergence=first, net_channels=net_channels)


def blob_of(value: str, blobs: dict[str, str], value_blobs: dict[str, str] | None
            ) -> str | None:
    """The Caffe blob of a source value: by the graph's mapping, else by name (`blobs`: the
    names a value may carry -> the blob)."""
    if value_blobs is not None and value in value_blobs:
        return value_blobs[value]
    for name in (value, sanitize(value)):
        if name in blobs:
            return blobs[name]
    return None


def value_blobs_for(graph: Graph, blobs: dict[str, str]) -> dict[str, str]:
    """IR value -> blob for every value of `graph` whose name, or sanitised name, the net has
    (`blobs`: names -> blob, see `blob_of`): how a prototxt written by the emitter is matched
    to its graph without re-emitting it."""
    found = {v: blob_of(v, blobs, None) for v in graph_values(graph)}
    return {v: b for v, b in found.items() if b is not None}


def graph_values(graph: Graph) -> list[str]:
    return [*graph.inputs, *(v for node in graph.nodes for v in node.outputs)]
