"""The state the op handlers of the graph emitter work in, and their registry.

A handler turns one IR node into Caffe layers through `EmitContext`: it reads its inputs' blobs
and shapes, appends layers with the NetBuilder `ctx.b` (always out of place: every top is a new
blob), stores the layers' weights in `ctx.weights` and says what it folded in `ctx.note`. The
emitter (caffezoo.graph.emit) then infers the shapes of what was added and checks them against
the graph's.

Naming: the last layer of a node is named after the node and writes the blob named after the
node's output value (both sanitised); helper layers and blobs of a decomposition get the node's
name plus a suffix. So `validate --layers` finds every IR value's blob from the prototxt alone.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from caffezoo.builder import NetBuilder
from caffezoo.errors import ConversionError
from caffezoo.graph.ir import NodeNotes

if TYPE_CHECKING:
    from caffezoo.graph.ir import Graph, Node

TARGETS = ("caffe", "fork", "opencv")

# Layer types beyond stock BVLC Caffe that each target runs (checked by
# tests/conversion/test_graph_emit.py in real Caffe and OpenCV 4.14).
EXTRA_LAYERS: dict[str, frozenset[str]] = {
    "caffe": frozenset(),
    "fork": frozenset({"ReLU6", "HardSwish", "HardSigmoid", "Permute"}),
    "opencv": frozenset({"ReLU6", "HardSwish", "Permute"}),
}

_UNSAFE = re.compile(r"[^A-Za-z0-9_./\-]")


def sanitize(name: str) -> str:
    """A value or node name as a Caffe blob/layer name: characters other than letters, digits,
    `_ . / -` become `_`; an empty name becomes `_`."""
    return _UNSAFE.sub("_", name) or "_"


Handler = Callable[["EmitContext", "Node"], None]
HANDLERS: dict[str, Handler] = {}


def handler(*ops: str) -> Callable[[Handler], Handler]:
    """Register a function as the handler of canonical op(s)."""
    def register(fn: Handler) -> Handler:
        for op in ops:
            HANDLERS[op] = fn
        return fn
    return register


class EmitContext:
    """What handlers see while one graph is emitted for one target."""

    def __init__(self, graph: Graph, target: str) -> None:
        self.graph = graph
        self.target = target
        self.b = NetBuilder(sanitize(graph.name))
        self.weights: dict[str, list[np.ndarray]] = {}
        self.notes = NodeNotes()
        self.value_blobs: dict[str, str] = {}  # IR value -> Caffe blob
        self.shapes: dict[str, tuple[int, ...]] = {}  # Caffe blob -> shape
        self.folded: dict[str, str] = {}  # IR value -> why it has no blob of its own
        self.skip: set[str] = set()  # nodes an earlier handler already emitted (patterns)
        # Pad outputs folded into their consumers: value -> (padded value, (t, l, b, r), value)
        self.pad_folds: dict[str, tuple[str, tuple[int, int, int, int], float]] = {}
        self.consumers: dict[str, list[Node]] = {}
        for node in graph.nodes:
            for value in node.inputs:
                self.consumers.setdefault(value, []).append(node)
        # Every value's blob name and every node's layer name are reserved up front, so a helper
        # blob or layer of an earlier node never takes a name a later value or node needs.
        self._blob_names: set[str] = set()
        self._layer_names: set[str] = set()
        self._value_names = {v: self._unique(sanitize(v), self._blob_names)
                             for v in [*graph.inputs, *(o for n in graph.nodes for o in n.outputs)]}
        self._layer_names.update(self._value_names[v] for v in graph.inputs)  # Input layers
        self._node_names = {n.name: self._unique(sanitize(n.name), self._layer_names)
                            for n in graph.nodes}
        self._named: set[str] = set()  # nodes whose reserved layer name is in use

    # -- names -----------------------------------------------------------------------------

    def _unique(self, name: str, used: set[str]) -> str:
        out, k = name, 1
        while out in used:
            out, k = f"{name}_{k}", k + 1
        used.add(out)
        return out

    def layer_name(self, node: Node, suffix: str = "") -> str:
        """The node's layer name (first call without suffix), else a fresh name: the node's
        name plus `_suffix` for a helper layer."""
        if not suffix and node.name not in self._named:
            self._named.add(node.name)
            return self._node_names[node.name]
        base = self._node_names[node.name] + (f"_{suffix}" if suffix else "")
        return self._unique(base, self._layer_names)

    def new_blob(self, name: str) -> str:
        """Reserve a fresh blob name derived from `name`."""
        return self._unique(sanitize(name), self._blob_names)

    def value_name(self, value: str) -> str:
        """The blob name reserved for an IR value (its sanitised name, unique)."""
        return self._value_names[value]

    def top(self, node: Node, i: int = 0) -> str:
        """The blob for the node's i-th output value."""
        value = node.outputs[i]
        self.value_blobs[value] = self._value_names[value]
        return self.value_blobs[value]

    def tmp(self, node: Node, suffix: str) -> str:
        """A fresh blob for an intermediate result of the node's decomposition."""
        return self.new_blob(f"{node.outputs[0]}_{suffix}")

    # -- values ----------------------------------------------------------------------------

    def is_constant(self, value: str) -> bool:
        return value in self.graph.constants

    def constant(self, value: str) -> np.ndarray:
        return np.asarray(self.graph.constants[value], dtype=np.float32)

    def bottom(self, node: Node, value: str) -> str:
        """The blob holding `value`, an input of `node`."""
        blob = self.value_blobs.get(value)
        if blob is None:
            if value in self.folded:
                raise ConversionError(f"{node.describe()}: input {value!r} was "
                                      f"{self.folded[value]} and has no blob")
            if self.is_constant(value):
                raise self.refuse(node, f"constant input {value!r} where a computed value is "
                                  "needed")
            raise ConversionError(f"{node.describe()}: input {value!r} is not defined")
        return blob

    def shape(self, value_or_blob: str) -> tuple[int, ...]:
        blob = self.value_blobs.get(value_or_blob, value_or_blob)
        return self.shapes[blob]

    def alias(self, node: Node, value: str, why: str) -> None:
        """The node's output is `value` itself: no layer, the same blob. A graph output still
        gets a blob named after it, through a one-top Split (Caffe's copy-free identity)."""
        blob = self.bottom(node, value)
        if node.outputs[0] in self.graph.outputs:
            self.b.layer("Split", self.layer_name(node), [blob], [self.top(node)])
            self.notes.add(node.name, f"{why} (a Split names the graph output)")
            return
        self.value_blobs[node.outputs[0]] = blob
        self.notes.add(node.name, why)

    # -- results ---------------------------------------------------------------------------

    def set_weights(self, layer: str, *blobs: np.ndarray) -> None:
        self.weights[layer] = [np.array(b, dtype=np.float32, order="C") for b in blobs]

    def note(self, node: Node, text: str) -> None:
        self.notes.add(node.name, text)

    def refuse(self, node: Node, why: str) -> ConversionError:
        """The error for a node this target cannot express exactly (raise it)."""
        return ConversionError(f"{node.describe()}: {why} (target {self.target})")

    def has_layer(self, type_: str) -> bool:
        return type_ in EXTRA_LAYERS[self.target]
