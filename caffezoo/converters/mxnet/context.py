"""What the MXNet op handlers work with: a node's inputs (computed values, stored tensors,
labels), its attributes read as MXNet reads them, and the graph being built (caffezoo.graph.ir)
with its static shapes; plus the handler registry. Tensor problems are collected, not raised,
so that one error lists all of them."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from caffezoo.converters.mxnet.symbol import (
    AttrError,
    is_none,
    parse_bool,
    parse_float,
    parse_int,
    parse_tuple,
)
from caffezoo.errors import ConversionError
from caffezoo.graph.ir import Graph, Node, NodeNotes

# The named arguments of ops whose weights are inputs; an 0.8-era file leaves out the auxiliary
# ones (and the front end, like MXNet's loader, names them <node>_<argument>).
ARGUMENTS: dict[str, Callable[[dict[str, str]], tuple[str, ...]]] = {}
LABEL_OPS = {"SoftmaxOutput", "Softmax", "LinearRegressionOutput", "LogisticRegressionOutput",
             "MAERegressionOutput", "SVMOutput"}


@dataclass
class Arg:
    """One input of an MXNet node: a computed value, a tensor from the params file, a label."""

    kind: str  # "value" | "param" | "label"
    name: str
    array: np.ndarray | None = None


@dataclass
class OpNode:
    name: str
    op: str
    attrs: dict[str, str]
    args: list[Arg]
    out: str  # the value name of output 0

    def describe(self) -> str:
        return f"node {self.name!r} ({self.op})"


class Attrs:
    """A node's attributes, read as MXNet reads them; errors name the node."""

    def __init__(self, n: OpNode) -> None:
        self.n = n

    def _get(self, key: str, default, parse):
        raw = self.n.attrs.get(key)
        if is_none(raw):
            return default
        try:
            return parse(raw)
        except AttrError as err:
            raise ConversionError(f"{self.n.describe()}: attribute {key}={raw!r}: {err}"
                                  ) from None

    def str(self, key: str, default: str | None = None) -> str | None:
        return self._get(key, default, lambda s: s.strip())

    def bool(self, key: str, default: bool) -> bool:
        return self._get(key, default, parse_bool)

    def int(self, key: str, default: int | None) -> int | None:
        return self._get(key, default, parse_int)

    def float(self, key: str, default: float | None) -> float | None:
        return self._get(key, default, parse_float)

    def tuple(self, key: str, default: tuple = ()) -> tuple:
        return self._get(key, default, parse_tuple)

    def pair(self, key: str, default: int, least: int = 0) -> tuple[int, int]:
        """A 2-D spatial parameter (kernel, stride, pad, dilate); () means the default; values
        below `least` are refused (a stride of 0 has no meaning)."""
        t = self.tuple(key, ())
        if not t:
            return (default, default)
        if len(t) != 2 or any(v is None for v in t):
            raise ConversionError(f"{self.n.describe()}: {key}={self.n.attrs.get(key)!r}: only "
                                  "2-D (NCHW) operations are supported")
        if min(t) < least:
            raise ConversionError(f"{self.n.describe()}: {key}={self.n.attrs.get(key)!r}: "
                                  f"each value must be at least {least}")
        return (int(t[0]), int(t[1]))


class Context:
    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.problems: list[str] = []  # tensors: missing, wrong shape
        self.notes = NodeNotes()  # per node, identical ones listed once
        self.used_params: set[str] = set()

    # -- shapes and values --------------------------------------------------------------------

    def shape(self, value: str) -> tuple[int, ...]:
        if value in self.graph.constants:
            return tuple(self.graph.constants[value].shape)
        return self.graph.shapes[value]

    def value(self, n: OpNode, i: int = 0) -> str:
        """The i-th input of `n`, which must be a computed value."""
        if i >= len(n.args):
            raise ConversionError(f"{n.describe()}: has {len(n.args)} inputs, needs more")
        a = n.args[i]
        if a.kind != "value":
            raise ConversionError(f"{n.describe()}: input {i} is the {a.kind} {a.name!r} where "
                                  "a computed value is expected")
        return a.name

    def values(self, n: OpNode) -> list[str]:
        """Every input of `n` (at least one), each a computed value."""
        if not n.args:
            raise ConversionError(f"{n.describe()}: no inputs")
        return [self.value(n, i) for i in range(len(n.args))]

    def operand(self, n: OpNode, i: int) -> str:
        """The i-th input as a value or, for a tensor from the params file, a constant."""
        if i >= len(n.args):
            raise ConversionError(f"{n.describe()}: has {len(n.args)} inputs, needs more")
        a = n.args[i]
        if a.kind == "param":
            self.used_params.add(a.name)
            if a.array is None:
                self.problems.append(f"missing tensor {a.name!r} (input {i} of {n.describe()})")
                self.graph.constants[a.name] = np.zeros((1,), np.float32)
            else:
                self.graph.constants[a.name] = np.asarray(a.array, np.float32)
            return a.name
        if a.kind == "label":
            raise ConversionError(f"{n.describe()}: input {i} is a label")
        return a.name

    def param(self, n: OpNode, i: int, shape: tuple[int, ...] | None, role: str
              ) -> np.ndarray | None:
        """The i-th input, a tensor from the params file, checked against `shape`."""
        if i >= len(n.args):
            self.problems.append(f"{n.describe()} has no {role} input")
            return None
        a = n.args[i]
        if a.kind != "param":
            raise ConversionError(f"{n.describe()}: its {role} ({a.name!r}) is computed by the "
                                  "graph, not a stored tensor")
        self.used_params.add(a.name)
        if a.array is None:
            self.problems.append(f"missing tensor {a.name!r} ({role} of {n.describe()})")
            return None
        arr = np.asarray(a.array)
        if shape is not None and tuple(arr.shape) != tuple(shape):
            if arr.size == math.prod(shape) and arr.ndim <= 1 and len(shape) == 1:
                arr = arr.reshape(shape)
            else:
                self.problems.append(f"tensor {a.name!r} has shape {list(arr.shape)}, the "
                                     f"{role} of {n.describe()} needs {list(shape)}")
                return None
        return arr.astype(np.float32)

    # -- emitting -----------------------------------------------------------------------------

    def emit(self, n: OpNode, op: str, inputs: list[str], shape: tuple[int, ...],
             attrs: dict | None = None, params: dict | None = None, name: str | None = None,
             out: str | None = None) -> str:
        """Append one canonical node; its output is `out` (default: n's MXNet output name)."""
        node_name = name or n.name
        value = out or n.out
        self.graph.nodes.append(Node(node_name, op, list(inputs), [value], dict(attrs or {}),
                                     {k: v for k, v in (params or {}).items() if v is not None},
                                     source_op=n.op))
        self.graph.shapes[value] = tuple(int(d) for d in shape)
        return value

    def constant(self, name: str, value: float) -> str:
        self.graph.constants[name] = np.asarray(value, np.float32)
        return name


Handler = Callable[[Context, OpNode, Attrs], None]
HANDLERS: dict[str, Handler] = {}


def handler(*ops: str, arguments: Callable[[dict[str, str]], tuple[str, ...]] | None = None):
    def register(fn: Handler) -> Handler:
        for op in ops:
            HANDLERS[op] = fn
            if arguments is not None:
                ARGUMENTS[op] = arguments
        return fn
    return register
