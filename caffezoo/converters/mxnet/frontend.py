"""MXNet symbol + parameters -> caffezoo.graph.ir.Graph, op by op through a handler table.

Each MXNet op has one handler (registered by op name, aliases of every era included) that reads
its attributes as MXNet does, checks its tensors and emits canonical nodes with normalised
attributes (explicit pads, tuples, the pooling convention as `ceil`). Shapes are inferred
statically from the input shape as we go (Reshape and Flatten need them; the emitter checks its
own against them). An op without a handler stops with a ConversionError naming op and node;
missing or wrong-shaped tensors are collected and reported together in one WeightMismatchError.

Value names are MXNet's own internal output names (`<node>_output`, variables by name), so the
MXNet runner can expose the same values with `get_internals`. Where one MXNet op becomes two
canonical nodes (FullyConnected with flatten), the first one's output gets a new name and the
last one keeps MXNet's.

Inference semantics kept from MXNet: BatchNorm always uses the moving statistics (as MXNet's
own inference does, whatever `use_global_stats` says) and `fix_gamma=True` means gamma = 1
whatever the file holds; Pooling `pooling_convention='valid'` rounds down, `'full'` up.
The scalar ops Gluon puts at the input (`_minus_scalar`, `_div_scalar`, ...) stay in the graph
as `sub`/`div`/`mul`/`add` nodes with scalar constants (so the converted net takes exactly the
input the MXNet model takes); the chain at the input is described in `Graph.notes`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from caffezoo.converters.mxnet import ops  # noqa: F401  (registers the handlers)
from caffezoo.converters.mxnet.context import (
    ARGUMENTS,
    HANDLERS,
    LABEL_OPS,
    Arg,
    Attrs,
    Context,
    OpNode,
)
from caffezoo.converters.mxnet.symbol import Symbol, SymNode
from caffezoo.errors import ConversionError, WeightMismatchError
from caffezoo.graph.ir import Graph, Node


@dataclass
class FrontEndResult:
    graph: Graph
    input_name: str
    unused_params: list[str] = field(default_factory=list)


def output_name(node: SymNode, index: int) -> str:
    """MXNet's name for output `index` of `node` (what get_internals lists)."""
    if node.op == "null":
        return node.name
    return f"{node.name}_output" if index == 0 else f"{node.name}_output{index}"


def build_graph(sym: Symbol, params: dict[str, np.ndarray], input_shape: tuple[int, ...],
                params_path: str = "", name: str = "") -> FrontEndResult:
    """The canonical graph of `sym` with weights from `params` (plain names, no arg:/aux:)."""
    nodes = sym.nodes
    # nodes the heads depend on
    needed: set[int] = set()
    stack = [h for h, _ in sym.heads]
    while stack:
        i = stack.pop()
        if i in needed:
            continue
        needed.add(i)
        stack.extend(src for src, _ in nodes[i].inputs)
    # label variables: second input of the loss-output ops, or named *_label and not stored
    labels = {nodes[i].inputs[1][0] for i in needed
              if nodes[i].op in LABEL_OPS and len(nodes[i].inputs) > 1}
    variables = [nodes[i] for i in sorted(needed) if nodes[i].op == "null"]
    inputs = [v for v in variables if v.name not in params and v.index not in labels
              and not v.name.endswith("_label")]
    if len(inputs) != 1:
        what = ", ".join(v.name for v in inputs) or "none"
        raise ConversionError(f"{sym.path}: expected one input variable not found in "
                              f"{params_path or 'the parameters'}, got {what}"
                              + (" (tensors missing from the params file?)" if inputs else ""))
    data = inputs[0]
    graph = Graph(name=name or data.name, inputs={data.name: tuple(int(d) for d in input_shape)},
                  outputs=[], nodes=[])
    graph.shapes[data.name] = tuple(int(d) for d in input_shape)
    ctx = Context(graph)
    values: dict[tuple[int, int], Arg] = {}
    for v in variables:
        if v.index in labels or (v.name.endswith("_label") and v.name not in params):
            values[(v.index, 0)] = Arg("label", v.name)
        elif v is data:
            values[(v.index, 0)] = Arg("value", v.name)
        else:
            values[(v.index, 0)] = Arg("param", v.name, params.get(v.name))
    names_used: set[str] = set()
    for i in sorted(needed):
        sn = nodes[i]
        if sn.op == "null":
            continue
        fn = HANDLERS.get(sn.op)
        if fn is None:
            raise ConversionError(f"node {sn.name!r}: op {sn.op!r} has no translation to Caffe "
                                  f"(in {sym.path})")
        args = []
        for src, idx in sn.inputs:
            arg = values.get((src, idx))
            if arg is None:
                raise ConversionError(f"node {sn.name!r} ({sn.op}): uses output {idx} of "
                                      f"{nodes[src].name!r}, which has no translation")
            args.append(arg)
        arg_names = ARGUMENTS.get(sn.op, lambda at: ())(sn.attrs)
        for role in arg_names[len(args):]:  # 0.8 files leave out auxiliary states
            implicit = f"{sn.name}_{role}"
            args.append(Arg("label", implicit) if role == "label" else
                        Arg("param", implicit, params.get(implicit)))
        op_name = sn.name if sn.name not in names_used else f"{sn.name}_{i}"
        names_used.add(op_name)
        n = OpNode(op_name, sn.op, sn.attrs, args, output_name(sn, 0) if op_name == sn.name
                   else f"{op_name}_output")
        fn(ctx, n, Attrs(n))
        values[(i, 0)] = Arg("value", n.out)
    for h, idx in sym.heads:
        arg = values.get((h, idx))
        if arg is None or arg.kind != "value":
            raise ConversionError(f"{sym.path}: output {idx} of {nodes[h].name!r} is not a "
                                  "computed value")
        graph.outputs.append(arg.name)
    if ctx.problems:
        raise WeightMismatchError(f"{params_path or 'parameters'} do not fit {sym.path}: "
                                  f"{len(ctx.problems)} problem(s): " + "; ".join(ctx.problems))
    graph.notes.extend(ctx.notes.lines())
    note = describe_input_scaling(graph, data.name)
    if note:
        graph.notes.insert(0, note)
    unused = sorted(set(params) - ctx.used_params)
    return FrontEndResult(graph, data.name, unused)


def input_scaling(graph: Graph, data: str) -> tuple[list[Node], float, float] | None:
    """The chain of scalar add/sub/mul/div nodes that starts at the input, as y = a * x + b:
    (nodes, a, b); None when the input does not start with one."""
    consumers: dict[str, list[Node]] = {}
    for node in graph.nodes:
        for v in node.inputs:
            consumers.setdefault(v, []).append(node)
    chain: list[Node] = []
    a, b = 1.0, 0.0
    value = data
    while len(consumers.get(value, [])) == 1:
        node = consumers[value][0]
        consts = [v for v in node.inputs if v in graph.constants]
        if node.op not in ("add", "sub", "mul", "div") or len(node.inputs) != 2 or \
                len(consts) != 1 or graph.constants[consts[0]].size != 1:
            break
        c = float(graph.constants[consts[0]].reshape(()))
        first = node.inputs[0] == consts[0]
        if node.op == "add":
            b += c
        elif node.op == "sub" and not first:
            b -= c
        elif node.op == "sub":
            a, b = -a, c - b
        elif node.op == "mul":
            a, b = a * c, b * c
        elif node.op == "div" and not first and c != 0:
            a, b = a / c, b / c
        else:
            break
        chain.append(node)
        value = node.outputs[0]
    if not chain:
        return None
    return chain, a, b


def describe_input_scaling(graph: Graph, data: str) -> str:
    found = input_scaling(graph, data)
    if found is None:
        return ""
    chain, a, b = found
    if a != 0:
        mean, std = -b / a, 1 / a
        return (f"the net scales its own input: (x - {mean:.6g}) / {std:.6g} "
                f"({len(chain)} scalar op(s) kept as layers: "
                f"{', '.join(n.name for n in chain)})")
    return f"the net scales its own input by {len(chain)} scalar op(s), kept as layers"
