"""The source graph every graph front end (MXNet symbol JSON, ONNX, traced PyTorch) produces and
the one emitter (caffezoo.graph.emit) turns into a Caffe net.

A front end's job is to translate its framework's ops into the canonical ops below, with their
attributes normalised (explicit pads, resolved shapes, canonical weight layouts). The emitter's
job is to express each canonical op in Caffe exactly, for a target (stock Caffe, the fork the
set-up builds, OpenCV's importer), or to refuse it naming the node. Neither side knows the
other's framework.

Values are NCHW float32 tensors named by strings. A node's `inputs` name values produced by
earlier nodes or graph inputs, or constants in `Graph.constants` (e.g. the other operand of a
broadcast `mul`). Weights a layer owns live in `Node.params` under the canonical names below.

Canonical ops (attrs; params) -- semantics as in ONNX unless said otherwise:

  conv             stride (sh, sw), pads (top, left, bottom, right), dilation (dh, dw), group;
                   weight (O, I/group, kH, kW), bias (O,) optional
  batch_norm       eps; mean, var (C,), gamma (C,) optional (= 1), beta (C,) optional (= 0)
  relu
  leaky_relu       alpha
  prelu            ; slope (C,) or (1,)
  elu              alpha
  clip             min, max (floats; -inf/inf where unbounded)
  sigmoid, tanh, softplus
  hard_sigmoid     alpha, beta (ONNX: max(0, min(1, alpha * x + beta)))
  hard_swish       (x * relu6(x + 3) / 6)
  silu             (x * sigmoid(x))
  max_pool         kernel (kh, kw), stride (sh, sw), pads (t, l, b, r), ceil (bool)
  avg_pool         kernel, stride, pads, ceil, count_include_pad (bool)
                   (pool output size: floor, or with ceil ceil, of (n + lo + hi - k) / s, plus
                   1; in ceil mode a last window that would start in the bottom/right padding
                   is dropped, as PyTorch does. count_include_pad True divides by the window
                   clipped to the padded input (PyTorch, ONNX Runtime); False by the real
                   pixels in it.)
  global_avg_pool  keepdims: output (N, C, 1, 1)
  global_max_pool
  add, sub, mul, div   numpy broadcasting; `add` may have more than two inputs
  max              two values of one shape (Eltwise MAX)
  concat           axis
  flatten          axis (ONNX Flatten: 2-D result)
  reshape          shape: the full static output shape (no 0 / -1 left)
  transpose        perm
  linear           y = x @ weight.T + bias on a 2-D input; weight (O, I), bias (O,) optional
  softmax          axis
  pad              pads (t, l, b, r) on H and W, value (constant mode only; -inf allowed in
                   front of a max_pool)
  slice            axis, start, end: the part [start, end) of one axis, step 1, static and
                   within bounds (ShuffleNet's channel halves; ONNX Slice and Split)
  identity         (Dropout at inference, _copy, Identity)

A front end that meets an op it cannot translate raises ConversionError naming the node and op
(`Node.source_op` keeps the framework's op name for messages).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from caffezoo.contract import InputContract

OPS = frozenset({
    "conv", "batch_norm", "relu", "leaky_relu", "prelu", "elu", "clip", "sigmoid", "tanh",
    "softplus", "hard_sigmoid", "hard_swish", "silu", "max_pool", "avg_pool",
    "global_avg_pool", "global_max_pool", "add", "sub", "mul", "div", "max", "concat", "flatten",
    "reshape", "transpose", "linear", "softmax", "pad", "slice", "identity",
})


@dataclass
class Node:
    name: str  # unique in the graph; becomes the Caffe layer name (sanitised by the emitter)
    op: str  # one of OPS
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)
    params: dict[str, np.ndarray] = field(default_factory=dict)
    source_op: str = ""  # the framework's op name, for messages

    def describe(self) -> str:
        return f"node {self.name!r} ({self.source_op or self.op})"


@dataclass
class Graph:
    name: str
    inputs: dict[str, tuple[int, ...]]  # name -> NCHW shape, static
    outputs: list[str]
    nodes: list[Node]  # in an order where every input is produced before it is used
    constants: dict[str, np.ndarray] = field(default_factory=dict)
    # optional: shapes the front end knows (the emitter checks its own against them)
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what the front end folded or absorbed
    # what the source states of its input (channel order, normalisation, sizes, labels), in
    # the source's channel order; None when it states nothing (an ONNX file without metadata)
    contract: InputContract | None = None


@dataclass
class NodeNotes:
    """Notes about single nodes, one line per distinct text: "NODE: TEXT" for a text one node
    has, "TEXT: on N nodes (A, B, ...)" for a text several share (MobileNetV3 has its HardSwish
    note on 21 nodes), in order of first appearance. Front ends and the emitter collect their
    per-node notes here."""

    by_text: dict[str, list[str]] = field(default_factory=dict)  # text -> node names

    def add(self, node: str, text: str) -> None:
        self.by_text.setdefault(text, []).append(node)

    def lines(self, named: int = 2) -> list[str]:
        out = []
        for text, nodes in self.by_text.items():
            if len(nodes) == 1:
                out.append(f"{nodes[0]}: {text}")
            else:
                names = ", ".join(nodes[:named]) + (", ..." if len(nodes) > named else "")
                out.append(f"{text}: on {len(nodes)} nodes ({names})")
        return out
