"""Reading an ONNX classifier: load, check, fix the input shape, fold constants, infer shapes.

The result (`Prepared`) is the graph the translator (converters/onnx/ops.py) walks: the nodes
left after folding, every constant as a numpy array, and a static shape for every value.

- The file is read with `onnx.load` without external data; a model that keeps tensors in
  external files gets them from the model's own folder only (a location that leaves it, by
  `..` or an absolute path, is refused).
- `onnx.checker` validates the graph first: a malformed graph stops with its first finding.
- The one image input gets a static shape: the file's own, with `--input-shape` filling the
  dimensions the file leaves open (a dynamic batch defaults to 1). A spatial dimension left open
  without `--input-shape` is refused, because Caffe nets have static shapes.
- Shape arithmetic (Shape, Gather, Unsqueeze, Concat, Constant, ConstantOfShape, Cast, Slice,
  arithmetic on constants, ...) is folded with numpy (onnx's reference implementation of each
  op, at the file's opset), alternating with onnx shape inference until nothing changes, so a
  Reshape whose target is computed from `Shape(x)` ends with a static target.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from caffezoo.errors import ConversionError, FormatError, InputFileError
from caffezoo.frameworks import import_onnx

MIN_OPSET = 9
# ops never folded even with constant inputs: random, or not deterministic functions
NOT_FOLDED = frozenset({"RandomNormal", "RandomNormalLike", "RandomUniform",
                        "RandomUniformLike", "Multinomial", "Bernoulli"})
MAX_FOLDED_ELEMENTS = 50_000_000  # a folded constant larger than this is refused, not computed
SMALL_CONSTANT = 4096  # constants up to this size go to shape inference (for data propagation)
FLOAT_MAX = 3.4028234663852886e38


def first_line(err: BaseException) -> str:
    text = str(err).strip()
    return (text.splitlines()[0] if text else type(err).__name__)[:300]


@dataclass
class Prepared:
    """An ONNX graph with its input shape fixed and its shape arithmetic folded."""

    path: str
    model: object  # onnx.ModelProto as read (input shape fixed; for the runner)
    opset: int
    input_name: str
    input_shape: tuple[int, ...]  # in the file's own layout (NHWC for TF exports)
    nodes: list  # onnx.NodeProto left after folding, in graph order
    consts: dict[str, np.ndarray]  # initializers and folded values
    shapes: dict[str, tuple[int, ...]]  # static shape of every value known
    outputs: list[str]
    node_names: dict[int, str] = field(default_factory=dict)  # id(node) -> unique name
    folded: int = 0  # nodes folded into constants
    nhwc: bool = False  # the input is NHWC and leads into a Transpose to NCHW (TF exports)
    inference_error: str = ""  # strict shape inference's complaint, if any
    file_dims: list | None = None  # the input dims as the file gives them (None: open)

    def name_of(self, node) -> str:
        return self.node_names.get(id(node)) or node.name or node.op_type

    def describe(self, node) -> str:
        return f"node {self.name_of(node)!r} ({node.op_type})"


# ---------------------------------------------------------------------------------------------
# loading and checking


def load_model(path: str | Path):
    """The ModelProto in `path`, checked; external data only from the file's folder."""
    onnx = import_onnx()
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: no such file")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # DecodeError and friends
        raise FormatError(f"{path}: not an ONNX model ({first_line(err)})") from None
    from caffezoo.limits import check_graph_nodes

    check_graph_nodes(path, len(model.graph.node))
    _load_external_data(model, path)
    try:
        onnx.checker.check_model(model)
    except Exception as err:  # onnx.checker.ValidationError
        raise FormatError(f"{path}: malformed ONNX graph: {first_line(err)}") from None
    return model


def _load_external_data(model, path: Path) -> None:
    from onnx.external_data_helper import load_external_data_for_model, uses_external_data

    tensors = [t for t in model.graph.initializer if uses_external_data(t)]
    if not tensors:
        return
    folder = path.parent.resolve()
    for t in tensors:
        location = next((e.value for e in t.external_data if e.key == "location"), "")
        target = (folder / location).resolve()
        if not location or Path(location).is_absolute() or folder not in target.parents:
            raise FormatError(f"{path}: tensor {t.name!r} keeps its data at {location!r}, "
                              f"outside the model's folder; refused")
        if not target.is_file():
            raise InputFileError(f"{path}: tensor {t.name!r}: external data file {target} "
                                 f"is missing")
    try:
        load_external_data_for_model(model, str(folder))
    except Exception as err:
        raise FormatError(f"{path}: cannot read external data ({first_line(err)})") from None


def opset_of(model, path) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            if imp.version < MIN_OPSET:
                raise ConversionError(f"{path}: opset {imp.version} is older than {MIN_OPSET}; "
                                      f"re-export the model at opset {MIN_OPSET} or later")
            return int(imp.version)
    raise FormatError(f"{path}: imports no default ONNX opset")


def _dims(value_info) -> list[int | None] | None:
    t = value_info.type.tensor_type
    if not t.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
            for d in t.shape.dim]


def image_input(model, path) -> tuple[str, list[int | None] | None]:
    """(name, dims) of the one graph input that is not an initializer."""
    onnx = import_onnx()
    inits = {t.name for t in model.graph.initializer}
    inputs = [v for v in model.graph.input if v.name not in inits]
    if len(inputs) != 1:
        names = ", ".join(repr(v.name) for v in inputs) or "none"
        raise ConversionError(f"{path}: {len(inputs)} graph inputs ({names}); a classifier "
                              f"takes one image batch")
    vi = inputs[0]
    elem = vi.type.tensor_type.elem_type
    if elem != onnx.TensorProto.FLOAT:
        raise ConversionError(f"{path}: input {vi.name!r} is "
                              f"{onnx.TensorProto.DataType.Name(elem)}, not FLOAT; Caffe nets "
                              f"take float images")
    return vi.name, _dims(vi)


def static_input_shape(path, name: str, dims: list[int | None] | None,
                       wanted: tuple[int, ...] | None,
                       given: tuple[int, ...] | None = None) -> tuple[int, ...]:
    """The file's input dims completed by `wanted` (same layout), checked against each other;
    `given` is what the user asked for (NCHW), for messages."""
    given = given or wanted
    if dims is None:
        if wanted is None:
            raise ConversionError(f"{path}: input {name!r} has no shape in the file; give "
                                  f"--input-shape N,C,H,W")
        return tuple(wanted)
    shown = "(" + ", ".join("?" if d is None else str(d) for d in dims) + ")"
    if wanted is not None:
        if len(wanted) != len(dims):
            raise ConversionError(f"{path}: --input-shape {_fmt(given)} has {len(wanted)} "
                                  f"dimensions, input {name!r} has {len(dims)} {shown}")
        for d, w in zip(dims, wanted, strict=True):
            if d is not None and d != w:
                raise ConversionError(f"{path}: --input-shape {_fmt(given)} does not fit input "
                                      f"{name!r} {shown}: the file fixes that shape (shapes "
                                      f"folded into the graph would not follow)")
        return tuple(int(w) for w in wanted)
    if any(d is None for d in dims[1:]):
        raise ConversionError(f"{path}: input {name!r} has a dynamic shape {shown}; give "
                              f"--input-shape (e.g. 1,3,224,224) to convert it at a fixed size")
    return tuple([1 if dims[0] is None else dims[0]] + [int(d) for d in dims[1:]])


def _fmt(shape) -> str:
    return ",".join(str(s) for s in shape)


def set_input_shape(model, name: str, shape: tuple[int, ...]) -> None:
    vi = next(v for v in model.graph.input if v.name == name)
    dims = vi.type.tensor_type.shape.dim
    del dims[:]
    for s in shape:
        dims.add().dim_value = int(s)


# ---------------------------------------------------------------------------------------------
# folding and shapes


def _node_names(nodes) -> dict[int, str]:
    names: dict[int, str] = {}
    used: set[str] = set()
    for i, node in enumerate(nodes):
        base = node.name or f"{node.op_type}_{i}"
        name, k = base, 1
        while name in used:
            k += 1
            name = f"{base}_{k}"
        used.add(name)
        names[id(node)] = name
    return names


def _infer(model, nodes, consts: dict[str, np.ndarray], input_name: str
           ) -> tuple[dict[str, tuple[int, ...] | None], str]:
    """Shapes of every value of the graph made of `nodes`, with big constants given as typed
    inputs (their data is not needed) and small ones as initializers (for data propagation),
    and the first complaint of strict shape inference ("" when none). A graph strict
    inference rejects (an op it does not know, say) is inferred leniently: the translator
    names unsupported ops before any missing shape."""
    onnx = import_onnx()
    from onnx import helper, numpy_helper

    graph_inputs = [next(v for v in model.graph.input if v.name == input_name)]
    inits = []
    used = {i for n in nodes for i in n.input if i}
    for name in sorted(used & consts.keys()):
        arr = consts[name]
        if arr.size <= SMALL_CONSTANT:
            inits.append(numpy_helper.from_array(arr, name))
        else:
            elem = helper.np_dtype_to_tensor_dtype(arr.dtype)
            graph_inputs.append(helper.make_tensor_value_info(name, elem, arr.shape))
    outputs = [helper.make_value_info(o.name, onnx.TypeProto()) for o in model.graph.output]
    graph = helper.make_graph(nodes, "infer", graph_inputs, outputs, inits)
    probe = helper.make_model(graph, opset_imports=list(model.opset_import),
                              ir_version=model.ir_version)
    error = ""
    try:
        inferred = onnx.shape_inference.infer_shapes(probe, check_type=True, strict_mode=True,
                                                     data_prop=True)
    except Exception as err:
        error = first_line(err)
        try:
            inferred = onnx.shape_inference.infer_shapes(probe, data_prop=True)
        except Exception:
            inferred = probe
    shapes: dict[str, tuple[int, ...] | None] = {}
    for vi in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        dims = _dims(vi)
        shapes[vi.name] = None if dims is None or None in dims else tuple(dims)
    return shapes, error


ELEMENTWISE_UNARY = frozenset({"Relu", "Sigmoid", "Tanh", "Clip", "LeakyRelu", "HardSigmoid",
                               "HardSwish", "Elu", "Softplus", "Identity"})
ELEMENTWISE_BINARY = frozenset({"Add", "Sub", "Mul", "Div"})
NCHW_PERM = [0, 3, 1, 2]


def find_nhwc_chain(nodes, input_name: str) -> tuple[list, object] | None:
    """For a graph exported from TensorFlow: the elementwise nodes between the NHWC input and
    its Transpose to NCHW (often none; else e.g. the mean subtraction), and that Transpose.
    None when the input does not lead, through one-consumer elementwise nodes whose other
    operand is not computed from the input, into Transpose(perm=0,3,1,2)."""
    from onnx import helper

    consumers: dict[str, list] = {}
    for node in nodes:
        for i in node.input:
            consumers.setdefault(i, []).append(node)
    chain, current = [], input_name
    while True:
        users = consumers.get(current, [])
        if len(users) != 1:
            return None
        node = users[0]
        if node.op_type == "Transpose":
            perm = next((list(helper.get_attribute_value(a)) for a in node.attribute
                         if a.name == "perm"), None)
            return (chain, node) if perm == NCHW_PERM else None
        if node.op_type in ELEMENTWISE_BINARY:
            if sum(1 for i in node.input if i == current) != 1:
                return None
        elif node.op_type not in ELEMENTWISE_UNARY or node.input[0] != current:
            return None
        chain.append(node)
        current = node.output[0]


def read_initializer(tensor, path) -> np.ndarray:
    """An initializer as numpy; one FormatError naming it when its data does not fit its dims
    or its data type is unknown (numpy_helper only ever views the bytes the file holds)."""
    from onnx import numpy_helper

    try:
        return numpy_helper.to_array(tensor)
    except Exception as err:  # ValueError (size), KeyError/TypeError (data type)
        raise FormatError(f"{path}: initializer {tensor.name!r} (dims "
                          f"{_fmt(tuple(tensor.dims))}, data type {tensor.data_type}) is "
                          f"unreadable: {first_line(err)}") from None


def _fold_node(node, consts: dict[str, np.ndarray], opset: int, describe):
    """The node's outputs computed from its constant inputs (onnx's reference ops)."""
    from onnx.reference import ReferenceEvaluator

    try:
        ref = ReferenceEvaluator(node, opsets={"": opset})
        feeds = {i: consts[i] for i in node.input if i}
        results = ref.run(None, feeds)
    except Exception as err:
        raise ConversionError(f"{describe(node)}: cannot fold its constant inputs "
                              f"({first_line(err)})") from None
    return [np.asarray(r) for r in results]


def _folded_size(node, consts: dict[str, np.ndarray],
                 shapes: dict[str, tuple[int, ...] | None]) -> int | None:
    """The size of the node's largest output, known before computing it (None: unknown):
    from shape inference, else from the values of the inputs that give it (ConstantOfShape,
    Expand, Tile, Range), so a shape in the file never makes us allocate it first."""
    import math

    known = [math.prod(shapes[o]) for o in node.output if o and shapes.get(o) is not None]
    if known:
        return max(known)
    ins = [consts.get(i) for i in node.input]
    try:
        if node.op_type == "ConstantOfShape":
            return math.prod(int(v) for v in ins[0].ravel())
        if node.op_type == "Expand":
            target = tuple(int(v) for v in ins[1].ravel())
            return math.prod(np.broadcast_shapes(ins[0].shape, target))
        if node.op_type == "Tile":
            return math.prod(s * int(r) for s, r in zip(ins[0].shape, ins[1].ravel(),
                                                        strict=True))
        if node.op_type == "Range":
            start, limit, delta = (float(v) for v in ins[:3])
            return max(0, math.ceil((limit - start) / delta))
    except (ValueError, TypeError, ZeroDivisionError, OverflowError, IndexError,
            AttributeError):
        return None  # malformed: the reference op reports it in one line
    return None


def _foldable(node, consts: dict[str, np.ndarray]) -> bool:
    if node.domain not in ("", "ai.onnx") or node.op_type in NOT_FOLDED:
        return False
    if any(a.type in (a.GRAPH, a.GRAPHS) for a in node.attribute):
        return False
    return all(i in consts for i in node.input if i)


def prepare(path: str | Path, input_shape: tuple[int, ...] | None = None) -> Prepared:
    """Load, check and fold `path`. `input_shape` is NCHW, as the Caffe net will take it; for
    an NHWC input (TensorFlow exports) it is reordered into the file's layout."""
    return prepare_model(load_model(path), path, input_shape)


def prepare_model(model, path: str | Path, input_shape: tuple[int, ...] | None = None,
                  weights: dict[str, np.ndarray] | None = None) -> Prepared:
    """`prepare` for a ModelProto already loaded (`path` names it in messages); `weights`: the
    arrays of graph inputs the model was exported without (a traced model's parameters)."""
    if weights:
        kept = [v for v in model.graph.input if v.name not in weights]
        del model.graph.input[:]
        model.graph.input.extend(kept)
    opset = opset_of(model, path)
    name, dims = image_input(model, path)
    nhwc = dims is not None and len(dims) == 4 and \
        find_nhwc_chain(list(model.graph.node), name) is not None
    wanted = None if input_shape is None else tuple(int(s) for s in input_shape)
    if wanted is not None and nhwc and len(wanted) == 4:
        wanted = (wanted[0], wanted[2], wanted[3], wanted[1])
    shape = static_input_shape(path, name, dims, wanted, input_shape and tuple(input_shape))
    if any(s <= 0 or s > 1 << 20 for s in shape) or int(np.prod(shape)) > 1 << 31:
        raise ConversionError(f"{path}: input shape {_fmt(shape)} is absurd")
    set_input_shape(model, name, shape)

    nodes = list(model.graph.node)
    names = _node_names(nodes)

    def describe(node) -> str:
        return f"node {names[id(node)]!r} ({node.op_type})"

    consts = {t.name: read_initializer(t, path) for t in model.graph.initializer}
    consts.update(weights or {})
    folded = 0
    for _ in range(32):  # to a fixed point; real graphs need two or three rounds
        shapes, error = _infer(model, nodes, consts, name)
        kept, changed = [], False
        for node in nodes:
            values = None
            src = node.input[0] if node.input else ""
            if node.op_type in ("Shape", "Size") and shapes.get(src) is not None \
                    and src not in consts:
                values = [_shape_op(node, shapes[src])]
            elif _foldable(node, consts):
                size = _folded_size(node, consts, shapes)
                if size is not None and size > MAX_FOLDED_ELEMENTS:
                    raise ConversionError(f"{describe(node)}: would fold to {size:,} "
                                          f"elements; refused")
                values = _fold_node(node, consts, opset, describe)
            if values is None:
                kept.append(node)
                continue
            for out, val in zip(node.output, values, strict=False):
                if out:
                    if val.size > MAX_FOLDED_ELEMENTS:
                        raise ConversionError(f"{describe(node)}: folds to {val.size:,} "
                                              f"elements; refused")
                    consts[out] = val
            changed, folded = True, folded + 1
        nodes = kept
        if not changed:
            break
    outputs = [o.name for o in model.graph.output]
    for out in outputs:
        if out in consts:
            raise ConversionError(f"{path}: output {out!r} does not depend on the input")
    static = {k: v for k, v in shapes.items() if v is not None}
    for k, v in consts.items():
        static.setdefault(k, tuple(v.shape))
    return Prepared(str(path), model, opset, name, shape, nodes, consts, static, outputs,
                    names, folded, nhwc, error, dims)


def _shape_op(node, shape: tuple[int, ...]) -> np.ndarray:
    if node.op_type == "Size":
        return np.asarray(int(np.prod(shape)), np.int64)
    from onnx import helper

    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    rank = len(shape)
    start = int(attrs.get("start", 0))
    end = attrs.get("end")
    start = max(0, min(rank, start + rank if start < 0 else start))
    end = rank if end is None else int(end)
    end = max(0, min(rank, end + rank if end < 0 else end))
    return np.asarray(shape[start:end], np.int64)
