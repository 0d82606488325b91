"""The one graph emitter: a `caffezoo.graph.ir.Graph` -> a Caffe net with its weights.

    emitted = emit(graph, target="caffe")     # or "fork", "opencv"
    netio.write_caffemodel(emitted.net, "out.caffemodel", dialect="portable")
    netio.write_prototxt(emitted.net, "out.prototxt", dialect="portable")

Each canonical op has one handler (caffezoo/graph/ops_*.py, registered by op name) that
expresses it in Caffe layers exactly, or refuses naming the node: an op without a handler, or a
node the target cannot express, raises `ConversionError`. Before anything is emitted the graph
is checked as a whole (`check_graph`: one NCHW input with a static shape, nodes in an order where
every input is defined, canonical ops, unique names); while emitting, the shape of every layer's
output is inferred with `caffezoo.analysis` and compared with the shapes the front end knows.

Nothing is computed in place: every IR value gets a blob of its own named after it, so a
validator can compare each value with the source from the prototxt alone. The net is in the
program's modern form (floor pooling as `ceil_mode: false`); the writer's dialect decides how
that is spelled (`portable` for stock Caffe). docs/conversion.md lists what each op becomes on
each target.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from caffezoo import netio
from caffezoo.errors import CaffezooError, ConversionError
from caffezoo.graph import ops_nn, ops_pointwise, ops_shape, ops_slice  # noqa: F401  (handlers)
from caffezoo.graph.context import HANDLERS, TARGETS, EmitContext, sanitize
from caffezoo.graph.ir import OPS, Graph, Node


@dataclass
class Emitted:
    """The result of `emit`."""

    net: netio.NetParameter  # modern form, weights attached as blobs
    notes: list[str]  # what was folded, decomposed or aliased; one line per distinct note
    value_blobs: dict[str, str]  # IR value -> Caffe blob (values folded away are absent)
    target: str
    input_blob: str = ""
    output_blobs: dict[str, str] = field(default_factory=dict)  # graph output -> blob
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)  # blob -> shape

    @property
    def layer_count(self) -> int:
        return len(self.net.layer)


# inputs per op (min, max; None: any number); ops not listed take exactly one
_ARITY: dict[str, tuple[int, int | None]] = {
    "add": (1, None), "concat": (1, None), "sub": (2, 2), "mul": (2, 2), "div": (2, 2),
    "max": (2, 2),
}


def check_graph(graph: Graph) -> None:
    """Structural checks before emitting; one ConversionError naming the node at fault."""
    if len(graph.inputs) != 1:
        raise ConversionError(f"graph {graph.name!r}: exactly one input is supported, found "
                              f"{len(graph.inputs)} ({', '.join(graph.inputs) or 'none'})")
    (name, shape), = graph.inputs.items()
    if (len(shape) != 4 or any(not isinstance(d, int | np.integer) or isinstance(d, bool)
                               or d <= 0 for d in shape)):
        raise ConversionError(f"graph {graph.name!r}: input {name!r} must have a static NCHW "
                              f"shape of four positive sizes, got {tuple(shape)}")
    defined: set[str] = {name} | set(graph.constants)
    names: set[str] = set()
    for node in graph.nodes:
        if node.name in names:
            raise ConversionError(f"{node.describe()}: duplicate node name")
        names.add(node.name)
        if node.op not in OPS:
            raise ConversionError(f"{node.describe()}: unknown op {node.op!r} (canonical ops: "
                                  f"{', '.join(sorted(OPS))})")
        lo, hi = _ARITY.get(node.op, (1, 1))
        if len(node.inputs) < lo or (hi is not None and len(node.inputs) > hi):
            want = f"{lo}" if lo == hi else f"{lo} or more" if hi is None else f"{lo}..{hi}"
            raise ConversionError(f"{node.describe()}: {node.op} takes {want} input(s), got "
                                  f"{len(node.inputs)}")
        if len(node.outputs) != 1:
            raise ConversionError(f"{node.describe()}: {len(node.outputs)} outputs, every "
                                  "canonical op has one")
        for value in node.inputs:
            if value not in defined:
                raise ConversionError(f"{node.describe()}: input {value!r} is not defined "
                                      "before this node (not a graph input, constant or "
                                      "earlier node's output)")
        for value in node.outputs:
            if value in defined:
                raise ConversionError(f"{node.describe()}: output {value!r} is already "
                                      "defined")
            defined.add(value)
    for value in graph.outputs:
        if value not in defined or value in graph.constants:
            raise ConversionError(f"graph {graph.name!r}: output {value!r} is not computed by "
                                  "any node")
    if not graph.outputs:
        raise ConversionError(f"graph {graph.name!r}: no outputs")


def emit(graph: Graph, target: str = "caffe") -> Emitted:
    """Express `graph` in Caffe for `target` ("caffe", "fork" or "opencv"); see the module doc."""
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    check_graph(graph)
    ctx = EmitContext(graph, target)
    (in_value, in_shape), = graph.inputs.items()
    in_blob = ctx.value_name(in_value)
    ctx.b.input(in_blob, tuple(int(d) for d in in_shape))
    ctx.value_blobs[in_value] = in_blob
    ctx.shapes[in_blob] = tuple(int(d) for d in in_shape)
    _check_shape(graph, in_value, ctx.shapes[in_blob], None)
    for node in graph.nodes:
        if node.name in ctx.skip:
            continue
        fn = HANDLERS.get(node.op)
        if fn is None:
            raise ConversionError(f"{node.describe()}: no handler for op {node.op!r}")
        start = ctx.b.layer_count
        try:
            fn(ctx, node)
        except ConversionError:
            raise
        except CaffezooError as err:  # a builder or analysis error: still name the node
            raise ConversionError(f"{node.describe()}: {err}") from None
        except (KeyError, ValueError, TypeError, IndexError) as err:  # attrs a handler
            raise ConversionError(f"{node.describe()}: malformed attributes or parameters "
                                  f"({type(err).__name__}: {err})") from err
        _infer_new(ctx, node, start)
        for value in node.outputs:
            if value in ctx.value_blobs:
                _check_shape(graph, value, ctx.shape(value), node)
    net = ctx.b.net
    try:
        net = netio.attach_weights(net, ctx.weights, check=True)
    except CaffezooError as err:
        raise ConversionError(f"graph {graph.name!r}: emitted net does not hold its weights: "
                              f"{err}") from None
    outputs = {}
    for value in graph.outputs:
        if value not in ctx.value_blobs:
            raise ConversionError(f"graph {graph.name!r}: output {value!r} has no blob "
                                  f"({ctx.folded.get(value, 'folded away')})")
        outputs[value] = ctx.value_blobs[value]
    return Emitted(net=net, notes=ctx.notes.lines(), value_blobs=dict(ctx.value_blobs),
                   target=target, input_blob=in_blob, output_blobs=outputs, shapes=dict(ctx.shapes))


def _infer_new(ctx: EmitContext, node: Node, start: int) -> None:
    """Infer the shapes of the layers a handler added, with caffezoo.analysis on a probe net
    whose inputs are the blobs they read from earlier layers."""
    from caffezoo.analysis import analyze

    layers = ctx.b.layers_from(start)
    if not layers:
        return
    probe = netio.NetParameter()
    produced: set[str] = set()
    for i, layer in enumerate(layers):
        for bottom in layer.bottom:
            if bottom not in produced:
                produced.add(bottom)
                inp = probe.layer.add(name=f"__probe_input{i}_{bottom}", type="Input")
                inp.top.append(bottom)
                inp.input_param.shape.add().dim.extend(ctx.shapes[bottom])
        produced.update(layer.top)
    for layer in layers:
        probe.layer.add().CopyFrom(layer)
    # the weights are not attached yet: analysis only needs the layers' parameters
    try:
        result = analyze(probe)
    except CaffezooError as err:
        raise ConversionError(f"{node.describe()}: the emitted layers do not fit: {err}") from None
    for layer in layers:
        for top in layer.top:
            ctx.shapes[top] = tuple(result.blob_shapes[top])


def _check_shape(graph: Graph, value: str, shape: tuple[int, ...], node: Node | None) -> None:
    want = graph.shapes.get(value)
    if want is None or tuple(int(d) for d in want) == tuple(shape):
        return
    where = node.describe() if node is not None else f"graph input {value!r}"
    raise ConversionError(f"{where}: Caffe computes shape {tuple(shape)} for {value!r}, the "
                          f"source graph says {tuple(want)}")


__all__ = ["Emitted", "check_graph", "emit", "sanitize"]
