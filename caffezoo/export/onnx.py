"""Caffe -> ONNX, with Caffe's semantics exactly.

    model = to_onnx(export_net, opset=18)             # onnx.ModelProto (checked, shapes inferred)
    export_onnx("deploy.prototxt", "w.caffemodel", "net.onnx", dynamic_batch=True)

Names survive: every layer's main node carries the layer's name, and a blob's *final* value
(after any in-place layers, as Caffe's `net.blobs[name]` after a forward pass) carries the blob's
name, so Netron reads like the prototxt. An earlier version of a blob rewritten in place is named
`blob@layer` (the value `layer` wrote). Weights are initializers named `layer.weight`,
`layer.bias`, `layer.mean`, ...

The layer rules that other converters get wrong, and how they are expressed here (proofs in
tests/export/test_export.py against real Caffe):
- Pooling: Caffe rounds up (unless `ceil_mode: false`), drops a last window that would start in
  the padding, and divides AVE sums by a window count that includes padding but stops at the
  padded border. Every pooling becomes floor-mode pooling over explicit, possibly asymmetric
  padding that covers exactly Caffe's windows (`export_net.pool_geometry`); AVE is then sum/(kh*kw)
  (count_include_pad over the explicit padding) times a constant (OH, OW) map kh*kw/divisor
  where Caffe's divisor differs. Windows with no input pixel (ceil mode, stride > kernel) give
  Caffe's values: -FLT_MAX (MAX), 0/0 = NaN or 0 (AVE).
- InnerProduct flattens from `axis` (Flatten + Gemm for axis 1, else Reshape + MatMul).
- Scale/Bias broadcast their blob (or second bottom) over axes [axis, axis + ndim) with
  trailing 1s; LRN WITHIN_CHANNEL is (1 + alpha * avg(x^2))^-beta (Caffe ignores k there).
- BatchNorm divides its blobs by the stored factor (0 -> 0); `use_global_stats: false` uses the
  batch's statistics, as Caffe does in that case.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from caffezoo import frameworks, geometry, netio
from caffezoo.errors import ConversionError
from caffezoo.export import export_net
from caffezoo.export.export_net import FLT_MAX, ExportNet

DEFAULT_OPSET = 18
MIN_OPSET = 13  # Softmax over one axis, Split/Squeeze/Unsqueeze with tensor inputs
BATCH_DIM = "N"


def max_opset() -> int:
    return frameworks.import_onnx().defs.onnx_opset_version()


def to_onnx(ex: ExportNet, opset: int = DEFAULT_OPSET, dynamic_batch: bool = False,
            outputs: Sequence[str] | None = None, check: bool = True):
    """The ONNX model of `ex`. `outputs` lists the blobs to expose as graph outputs (default:
    the net's outputs, the blobs no layer reads). With `check`, the model passes onnx.checker
    and strict shape inference, and carries the inferred shapes (Netron shows them)."""
    onnx = frameworks.import_onnx()
    if not MIN_OPSET <= opset <= max_opset():
        raise ConversionError(f"opset {opset} is not supported: choose {MIN_OPSET} to "
                              f"{max_opset()}")
    emitter = _Emitter(ex, opset, dynamic_batch)
    model = emitter.build(list(outputs) if outputs is not None else ex.outputs)
    if check:
        try:
            onnx.checker.check_model(model, full_check=False)
            model = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True,
                                                      data_prop=True)
        except Exception as err:  # a bug here, not the user's: say where
            raise ConversionError(f"{ex.source}: the exported ONNX model fails "
                                  f"onnx's checks: {str(err).splitlines()[0]}") from err
    return model


def optimise(model):
    """`model` after onnxslim's generic clean-up (one Split for slices of one value, dead
    nodes and identities removed, constants folded), when onnxslim is installed; the fusions
    it does not know are export/fuse.py's. Its output names stay, its values are the same."""
    try:
        import onnxslim
    except ImportError:
        return model
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        return onnxslim.slim(model)


def blob_value_names(model) -> dict[str, str]:
    """Blob -> the ONNX value holding its final value, as recorded by `to_onnx`."""
    return {p.key[len("caffezoo.blob:"):]: p.value for p in model.metadata_props
            if p.key.startswith("caffezoo.blob:")}


def export_onnx(prototxt: str | Path, weights: str | Path | None, out: str | Path,
                opset: int = DEFAULT_OPSET, dynamic_batch: bool = False, fold_bn: bool = False,
                input_shapes=None) -> ExportNet:
    """Reads prototxt + caffemodel, writes the ONNX file atomically; returns what was exported."""
    ex = export_net.from_files(prototxt, weights, input_shapes, fold_bn)
    write_onnx(ex, out, opset, dynamic_batch)
    return ex


def write_onnx(ex: ExportNet, out: str | Path, opset: int = DEFAULT_OPSET,
               dynamic_batch: bool = False, contract=None) -> None:
    """Writes the model; `contract` (the net's InputContract) goes into its metadata_props
    under contract.ONNX_METADATA_KEY, where `caffezoo convert --source onnx:` takes it back."""
    model = to_onnx(ex, opset, dynamic_batch)
    if contract is not None:
        from caffezoo.contract import ONNX_METADATA_KEY

        model.metadata_props.add(key=ONNX_METADATA_KEY, value=contract.to_json())
    netio.atomic_write(out, model.SerializeToString())


# -- the emitter -----------------------------------------------------------------------------


class _Emitter:
    def __init__(self, ex: ExportNet, opset: int, dynamic_batch: bool) -> None:
        self.onnx = frameworks.import_onnx()
        self.ex = ex
        self.opset = opset
        self.dynamic = dynamic_batch
        self.nodes: list = []
        self.initializers: list = []
        self.used: set[str] = set()
        self.current: dict[str, str] = {}  # blob -> value name of its current version
        self.flattened: dict[str, tuple[str, tuple]] = {}  # Flatten output -> (input, shape)

    # names and constants

    def unique(self, want: str) -> str:
        name, i = want, 1
        while name in self.used:
            name, i = f"{want}_{i}", i + 1
        self.used.add(name)
        return name

    def const(self, name: str, array, dtype=np.float32) -> str:
        arr = np.asarray(array, dtype=dtype)
        name = self.unique(name)
        self.initializers.append(self.onnx.numpy_helper.from_array(arr, name))
        return name

    def ints(self, name: str, values: Sequence[int]) -> str:
        return self.const(name, np.asarray(list(values), dtype=np.int64), np.int64)

    def node(self, op: str, inputs: Sequence[str], outputs: Sequence[str], name: str,
             **attrs) -> None:
        self.nodes.append(self.onnx.helper.make_node(op, list(inputs), list(outputs),
                                                     name=self.unique_node(name), **attrs))

    def unique_node(self, want: str) -> str:
        names = getattr(self, "_node_names", set())
        self._node_names = names
        name, i = want, 1
        while name in names:
            name, i = f"{want}_{i}", i + 1
        names.add(name)
        return name

    def tmp(self, layer, what: str) -> str:
        return self.unique(f"{layer.name}/{what}")

    def reduce_mean(self, x: str, axes: Sequence[int], out: str, name: str) -> None:
        if self.opset >= 18:
            self.node("ReduceMean", [x, self.ints(f"{name}.axes", axes)], [out], name,
                      keepdims=1)
        else:
            self.node("ReduceMean", [x], [out], name, axes=list(axes), keepdims=1)

    def fail(self, layer, reason: str) -> ConversionError:
        return self.ex.fail(layer, reason)

    def no_dynamic(self, layer, reason: str) -> None:
        if self.dynamic:
            raise self.fail(layer, f"cannot take a dynamic batch size: {reason}")

    # the graph

    def build(self, outputs: list[str]):
        helper = self.onnx.helper
        tp = self.onnx.TensorProto
        ex = self.ex
        writers: dict[str, list[str]] = {}
        for layer in ex.net.layer:
            if layer.type not in ("Input", "Silence"):
                for top in layer.top:
                    writers.setdefault(top, []).append(layer.name)
        graph_inputs = []
        for name, shape in ex.inputs.items():
            self.used.add(name)
            self.current[name] = name
            graph_inputs.append(helper.make_tensor_value_info(name, tp.FLOAT,
                                                              self._dims(shape)))
        # the final writer of a blob names its value after the blob (unless an input has it)
        final_names = {blob: names[-1] for blob, names in writers.items()}
        for blob in final_names:
            if blob not in ex.inputs:
                self.used.add(blob)
        for layer, stats, in_shapes in ex.steps():
            if layer.type in ("Input", "Silence"):
                continue
            handler = _HANDLERS.get(layer.type)
            if handler is None:  # export_net.prepare refuses these first
                raise self.fail(layer, "layer type not supported for export")
            x = [self.current[b] for b in layer.bottom]
            y = []
            for top in layer.top:
                if final_names[top] == layer.name and top not in ex.inputs:
                    y.append(top)
                else:
                    y.append(self.unique(f"{top}@{layer.name}"))
            handler(self, layer, stats, in_shapes, x, y)
            self.current.update(zip(layer.top, y, strict=True))
        graph_outputs = []
        for blob in outputs:
            if blob not in self.current:
                raise ConversionError(f"{ex.source}: no blob named '{blob}'")
            if blob in ex.inputs and self.current[blob] == blob:
                raise ConversionError(f"{ex.source}: blob '{blob}' is an input, not an output")
            graph_outputs.append(helper.make_tensor_value_info(
                self.current[blob], tp.FLOAT, self._dims(ex.analysis.blob_shapes[blob])))
        graph = helper.make_graph(self.nodes, ex.net.name or "caffe_net", graph_inputs,
                                  graph_outputs, self.initializers)
        opsets = [helper.make_opsetid("", self.opset)]
        model = helper.make_model(graph, opset_imports=opsets, producer_name="caffezoo",
                                  ir_version=helper.find_min_ir_version_for(opsets))
        # a file name is any bytes; the field is UTF-8 text
        source = os.fsencode(ex.source).decode("utf-8", "replace")
        model.doc_string = f"exported by caffezoo from {source}"
        props = {f"caffezoo.blob:{k}": v for k, v in self.current.items()}
        helper.set_model_props(model, props)
        return model

    def _dims(self, shape: Sequence[int]) -> list:
        dims: list = list(shape)
        if self.dynamic and dims:
            dims[0] = BATCH_DIM
        return dims


# -- the layers ------------------------------------------------------------------------------
# handler(emitter, layer, stats, bottom shapes, input value names, output value names)

Handler = Callable[[_Emitter, object, object, list, list[str], list[str]], None]


def _weights(e: _Emitter, layer) -> list[np.ndarray]:
    return e.ex.weights.get(layer.name, [])


def _conv_attrs(layer, n: int) -> dict:
    w = geometry.conv_window(layer.convolution_param, n)
    return {"kernel_shape": list(w.kernel), "strides": list(w.stride), "pads": list(w.pad) * 2,
            "dilations": list(w.dilation), "group": layer.convolution_param.group}


def _convolution(e, layer, stats, shapes, x, y, op="Conv"):
    blobs = _weights(e, layer)
    attrs = _conv_attrs(layer, len(shapes[0]) - 2)
    weight = blobs[0]
    if e.ex.fused and op == "Conv":
        n = len(attrs["strides"])
        weight, begin, end = export_net.trim_zero_taps(
            weight, attrs["pads"][:n], attrs["strides"], attrs["dilations"], shapes[0][2:],
            stats.out_shapes[0][2:])
        attrs.update(kernel_shape=list(weight.shape[2:]), pads=[*begin, *end])
    inputs = [x[0], e.const(f"{layer.name}.weight", weight)]
    if layer.convolution_param.bias_term:
        inputs.append(e.const(f"{layer.name}.bias", blobs[1]))
    e.node(op, inputs, y, layer.name, **attrs)


def _deconvolution(e, layer, stats, shapes, x, y):
    _convolution(e, layer, stats, shapes, x, y, op="ConvTranspose")


def _pooling(e, layer, stats, shapes, x, y):
    p = layer.pooling_param
    ave = p.pool == 1
    if p.global_pooling:
        e.node("GlobalAveragePool" if ave else "GlobalMaxPool", x, y, layer.name)
        return
    g = export_net.pool_geometry(layer, shapes[0], stats.out_shapes[0])
    # Windows that start past the input (ceil mode, stride > kernel) need more end padding
    # than the kernel, which pooling attributes do not take: pool without them, then append
    # their values: Caffe's -FLT_MAX (MAX), or 0 that the divisor factor turns into 0/0.
    ends = [min(end, k - 1) for end, k in zip(g.pad_end, g.kernel, strict=True)]
    fitted = [(n + b + end - k) // s + 1 for n, b, end, k, s in
              zip(shapes[0][2:], g.pad_begin, ends, g.kernel, g.stride, strict=True)]
    missing = [o - f for o, f in zip(g.out, fitted, strict=True)]
    scaled = ave and g.factor is not None
    pooled = e.tmp(layer, "pool") if scaled or any(missing) else y[0]
    attrs = {"kernel_shape": list(g.kernel), "strides": list(g.stride),
             "pads": list(g.pad_begin) + ends}
    if ave:
        e.node("AveragePool", [x[0]], [pooled], layer.name, count_include_pad=1, **attrs)
    else:
        e.node("MaxPool", [x[0]], [pooled], layer.name, **attrs)
    if any(missing):
        out = e.tmp(layer, "empty_windows") if scaled else y[0]
        value = e.const(f"{layer.name}.empty_value", 0.0 if ave else -FLT_MAX)
        e.node("Pad", [pooled, e.ints(f"{layer.name}.pads", [0, 0, 0, 0, 0, 0, *missing]),
                       value], [out], f"{layer.name}/empty_windows", mode="constant")
        pooled = out
    if scaled:
        factor = e.const(f"{layer.name}.divisor_factor", g.factor[None, None])
        e.node("Mul", [pooled, factor], y, f"{layer.name}/divisor")


def _inner_product(e, layer, stats, shapes, x, y):
    p = layer.inner_product_param
    shape = shapes[0]
    axis = export_net.canonical_axis(p.axis, len(shape))
    blobs = _weights(e, layer)
    weight = blobs[0] if p.transpose else blobs[0].T  # as (K, num_output)
    bias = e.const(f"{layer.name}.bias", blobs[1]) if p.bias_term else None
    if axis == 1:
        flat = x[0]
        if len(shape) != 2:
            flat = e.tmp(layer, "flatten")
            e.node("Flatten", x, [flat], f"{layer.name}/flatten", axis=1)
        w = e.const(f"{layer.name}.weight", blobs[0])
        e.node("Gemm", [flat, w] + ([bias] if bias else []), y, layer.name,
               transB=0 if p.transpose else 1)
        return
    if axis == 0:
        e.no_dynamic(layer, "it flattens the batch axis (axis 0)")
    flat = e.tmp(layer, "flatten")
    e.node("Reshape", [x[0], e.ints(f"{layer.name}.shape", [0] * axis + [-1])], [flat],
           f"{layer.name}/flatten")
    w = e.const(f"{layer.name}.weight", np.ascontiguousarray(weight))
    if bias is None:
        e.node("MatMul", [flat, w], y, layer.name)
        return
    prod = e.tmp(layer, "matmul")
    e.node("MatMul", [flat, w], [prod], layer.name)
    e.node("Add", [prod, bias], y, f"{layer.name}/bias")


def _batch_norm(e, layer, stats, shapes, x, y):
    p = layer.batch_norm_param
    shape = shapes[0]
    eps = float(p.eps)
    channels = 1 if len(shape) == 1 else shape[1]
    if p.HasField("use_global_stats") and not p.use_global_stats:
        # Caffe then normalises with this batch's statistics (biased variance)
        axes = [0] + list(range(2, len(shape)))
        mean, centred, sq, var = (e.tmp(layer, w) for w in ("mean", "centred", "sq", "var"))
        std, veps = e.tmp(layer, "std"), e.tmp(layer, "var_eps")
        e.reduce_mean(x[0], axes, mean, f"{layer.name}/mean")
        e.node("Sub", [x[0], mean], [centred], f"{layer.name}/centre")
        e.node("Mul", [centred, centred], [sq], f"{layer.name}/square")
        e.reduce_mean(sq, axes, var, f"{layer.name}/variance")
        e.node("Add", [var, e.const(f"{layer.name}.eps", eps)], [veps], f"{layer.name}/eps")
        e.node("Sqrt", [veps], [std], f"{layer.name}/sqrt")
        e.node("Div", [centred, std], y, layer.name)
        return
    mean, var = export_net.caffe_batch_norm_stats(_weights(e, layer))
    if len(shape) >= 2:
        e.node("BatchNormalization",
               [x[0], e.const(f"{layer.name}.gamma", np.ones(channels)),
                e.const(f"{layer.name}.beta", np.zeros(channels)),
                e.const(f"{layer.name}.mean", mean), e.const(f"{layer.name}.var", var)],
               y, layer.name, epsilon=eps)
        return
    centred = e.tmp(layer, "centred")
    std = np.sqrt(var + np.float32(eps)).astype(np.float32)
    e.node("Sub", [x[0], e.const(f"{layer.name}.mean", mean)], [centred],
           f"{layer.name}/centre")
    e.node("Div", [centred, e.const(f"{layer.name}.std", std)], y, layer.name)


def _affine(e, layer, shapes, x, y, op: str, param) -> None:
    """Scale (op Mul) or Bias (op Add): blob or second bottom broadcast from `axis`."""
    shape = shapes[0]
    blobs = _weights(e, layer)
    bias_term = layer.type == "Scale" and param.bias_term
    if len(x) == 2:
        other = shapes[1]
        factor = x[1]
        unflat = e.flattened.get(x[1]) if e.ex.fused else None
        if unflat and unflat[1] == export_net.affine_blob_shape(shape, param.axis, other):
            # a fused net: the (N, C, 1, 1) value that was flattened for Caffe's Scale
            # broadcasts as it is (numpy rules), at any batch size
            factor, other = unflat[0], ()
        elif other and export_net.canonical_axis(param.axis, len(shape)) == 0:
            e.no_dynamic(layer, "its second bottom spans the batch axis")
        trailing = len(export_net.affine_blob_shape(shape, param.axis, other)) - len(other)
        if other and trailing:
            factor = e.tmp(layer, "broadcast")
            axes = list(range(len(other), len(other) + trailing))
            e.node("Unsqueeze", [x[1], e.ints(f"{layer.name}.axes", axes)], [factor],
                   f"{layer.name}/broadcast")
        bias_blob = blobs[0] if bias_term else None
    else:
        blob = blobs[0]
        if blob.ndim and export_net.canonical_axis(param.axis, len(shape)) == 0:
            e.no_dynamic(layer, "its blob spans the batch axis")
        if e.ex.fused and bias_term and _per_channel(shape, param.axis, blob, blobs[1]):
            _affine_as_batch_norm(e, layer, x[0], y, blob, blobs[1])
            return
        factor = e.const(f"{layer.name}.{'weight' if op == 'Mul' else 'bias'}",
                         blob.reshape(export_net.affine_blob_shape(shape, param.axis, blob.shape)))
        bias_blob = blobs[1] if bias_term else None
    if bias_blob is None:
        e.node(op, [x[0], factor], y, layer.name)
        return
    scaled = e.tmp(layer, "scaled")
    e.node(op, [x[0], factor], [scaled], layer.name)
    bias = e.const(f"{layer.name}.bias",
                   bias_blob.reshape(export_net.affine_blob_shape(shape, param.axis,
                                                            bias_blob.shape)))
    e.node("Add", [scaled, bias], y, f"{layer.name}/bias")


def _per_channel(shape, axis: int, *blobs) -> bool:
    """Whether Scale blobs apply one value per channel (axis 1) of an (N, C, ...) input."""
    return len(shape) >= 3 and export_net.canonical_axis(axis, len(shape)) == 1 and all(
        b.ndim == 1 and b.shape[0] == shape[1] for b in blobs)


def _affine_as_batch_norm(e, layer, x: str, y, a: np.ndarray, b: np.ndarray) -> None:
    """x * a + b per channel as one BatchNormalization (mean 0, variance 1, epsilon 0: it then
    computes x * a / sqrt(1) + b, the same to a rounding) instead of a Mul and an Add: one pass
    over the values, as the source's own BatchNormalization (a standalone BatchNorm + Scale
    that fuse.py made one Scale: DenseNet's 62, 1.19x slower as Mul + Add in ONNX Runtime)."""
    c = a.shape[0]
    e.node("BatchNormalization",
           [x, e.const(f"{layer.name}.weight", a), e.const(f"{layer.name}.bias", b),
            e.const(f"{layer.name}.zero_mean", np.zeros(c)),
            e.const(f"{layer.name}.unit_var", np.ones(c))], y, layer.name, epsilon=0.0)


def _scale(e, layer, stats, shapes, x, y):
    _affine(e, layer, shapes, x, y, "Mul", layer.scale_param)


def _bias(e, layer, stats, shapes, x, y):
    _affine(e, layer, shapes, x, y, "Add", layer.bias_param)


def _eltwise(e, layer, stats, shapes, x, y):
    p = layer.eltwise_param
    if p.operation == 0:  # PROD
        op = "Mul"
    elif p.operation == 2:  # MAX
        e.node("Max", x, y, layer.name)
        return
    else:
        op = "Add"
        coeff = list(p.coeff) or [1.0] * len(x)
        terms = []
        for i, (value, c) in enumerate(zip(x, coeff, strict=True)):
            if c == 1.0:
                terms.append(value)
                continue
            scaled = e.tmp(layer, f"coeff{i}")
            e.node("Mul", [value, e.const(f"{layer.name}.coeff{i}", c)], [scaled],
                   f"{layer.name}/coeff{i}")
            terms.append(scaled)
        x = terms
    if op == "Add" and len(x) > 2:
        e.node("Sum", x, y, layer.name)
        return
    acc = x[0]
    for i, value in enumerate(x[1:], start=1):
        out = y[0] if i == len(x) - 1 else e.tmp(layer, f"partial{i}")
        e.node(op, [acc, value], [out], layer.name if i == len(x) - 1 else
               f"{layer.name}/partial{i}")
        acc = out


def _concat(e, layer, stats, shapes, x, y):
    p = layer.concat_param
    axis = p.concat_dim if p.HasField("concat_dim") else p.axis
    e.node("Concat", x, y, layer.name, axis=export_net.canonical_axis(axis, len(shapes[0])))


def _slice(e, layer, stats, shapes, x, y):
    p = layer.slice_param
    axis = export_net.canonical_axis(p.slice_dim if p.HasField("slice_dim") else p.axis,
                               len(shapes[0]))
    if axis == 0:
        e.no_dynamic(layer, "it slices the batch axis")
    sizes = [s[axis] for s in stats.out_shapes]
    e.node("Split", [x[0], e.ints(f"{layer.name}.split", sizes)], y, layer.name, axis=axis)


def _identity(e, layer, stats, shapes, x, y):
    for i, out in enumerate(y):
        e.node("Identity", [x[0]], [out], layer.name if i == 0 else f"{layer.name}/{i}")


def _reshape_to(e, layer, out_shape, keeps_batch: bool, infer_at: int | None = None) -> str:
    """A Reshape target for a static `out_shape`; with a dynamic batch, 0 copies the batch when
    axis 0 is kept, or -1 at `infer_at` absorbs it."""
    dims = list(out_shape)
    if e.dynamic:
        if keeps_batch:
            dims[0] = 0
        elif infer_at is not None:
            dims[infer_at] = -1
        else:
            e.no_dynamic(layer, "it reshapes the batch axis into fixed sizes")
    return e.ints(f"{layer.name}.shape", dims)


def _flatten(e, layer, stats, shapes, x, y):
    p = layer.flatten_param
    ndim = len(shapes[0])
    start = export_net.canonical_axis(p.axis, ndim)
    end = export_net.canonical_axis(p.end_axis, ndim)
    if start == 1 and end == ndim - 1:
        e.node("Flatten", x, y, layer.name, axis=1)
        e.flattened[y[0]] = (x[0], tuple(shapes[0]))
        return
    target = _reshape_to(e, layer, stats.out_shapes[0], keeps_batch=start > 0, infer_at=0)
    e.node("Reshape", [x[0], target], y, layer.name)


def _reshape(e, layer, stats, shapes, x, y):
    p = layer.reshape_param
    ndim = len(shapes[0])
    start = p.axis if p.axis >= 0 else ndim + p.axis + 1
    dims = list(p.shape.dim)
    infer_at = None
    if start == 0 and dims and dims[0] == 0:
        keeps = True
    else:
        keeps = start > 0
        if start == 0 and dims and -1 in dims:
            infer_at = dims.index(-1)
    target = _reshape_to(e, layer, stats.out_shapes[0], keeps, infer_at)
    e.node("Reshape", [x[0], target], y, layer.name)


def _softmax(e, layer, stats, shapes, x, y):
    e.node("Softmax", x, y, layer.name,
           axis=export_net.canonical_axis(layer.softmax_param.axis, len(shapes[0])))


def _prelu(e, layer, stats, shapes, x, y):
    slope = _weights(e, layer)[0]
    shape = shapes[0]
    if slope.ndim:
        slope = slope.reshape((shape[1],) + (1,) * (len(shape) - 2))
    else:
        slope = slope.reshape(1)
    e.node("PRelu", [x[0], e.const(f"{layer.name}.slope", slope)], y, layer.name)


def _lrn(e, layer, stats, shapes, x, y):
    p = layer.lrn_param
    if p.norm_region == 0:  # ACROSS_CHANNELS: the same formula as ONNX LRN
        e.node("LRN", x, y, layer.name, size=p.local_size, alpha=float(p.alpha),
               beta=float(p.beta), bias=float(p.k))
        return
    # WITHIN_CHANNEL: x * (1 + alpha * avg_{n x n}(x^2))^-beta, zero padding counted (k unused)
    pad = (p.local_size - 1) // 2
    sq, avg, scaled, base, power = (e.tmp(layer, w) for w in
                                    ("sq", "avg", "scaled", "base", "power"))
    e.node("Mul", [x[0], x[0]], [sq], f"{layer.name}/square")
    e.node("AveragePool", [sq], [avg], f"{layer.name}/pool", kernel_shape=[p.local_size] * 2,
           strides=[1, 1], pads=[pad] * 4, count_include_pad=1)
    e.node("Mul", [avg, e.const(f"{layer.name}.alpha", p.alpha)], [scaled],
           f"{layer.name}/alpha")
    e.node("Add", [scaled, e.const(f"{layer.name}.one", 1.0)], [base], f"{layer.name}/shift")
    e.node("Pow", [base, e.const(f"{layer.name}.beta", -p.beta)], [power],
           f"{layer.name}/power")
    e.node("Mul", [x[0], power], y, layer.name)


def _chain(e, layer, x: str, y: str, steps: list[tuple[str, str, float]]) -> None:
    """x -> op(x, const) -> ... -> y, each (op, what, value)."""
    if not steps:
        e.node("Identity", [x], [y], layer.name)
        return
    current = x
    for i, (op, what, value) in enumerate(steps):
        last = i == len(steps) - 1
        out = y if last else e.tmp(layer, what)
        e.node(op, [current, e.const(f"{layer.name}.{what}", value)], [out],
               layer.name if last else f"{layer.name}/{what}")
        current = out


def _constant_like(e, layer, x: str, y: str, value: float) -> None:
    shape = e.tmp(layer, "shape")
    e.node("Shape", [x], [shape], f"{layer.name}/shape")
    e.node("ConstantOfShape", [shape], [y], layer.name,
           value=e.onnx.numpy_helper.from_array(np.array([value], dtype=np.float32)))


def _power(e, layer, stats, shapes, x, y):
    p = layer.power_param
    if p.scale * p.power == 0:  # Caffe fills a constant: 1 for power 0, else shift^power
        _constant_like(e, layer, x[0], y[0],
                       1.0 if p.power == 0 else float(np.float32(p.shift) ** p.power))
        return
    steps = []
    if p.scale != 1:
        steps.append(("Mul", "scale", p.scale))
    if p.shift != 0:
        steps.append(("Add", "shift", p.shift))
    if p.power != 1:
        steps.append(("Pow", "power", p.power))
    _chain(e, layer, x[0], y[0], steps)


def _exp(e, layer, stats, shapes, x, y):
    p = layer.exp_param
    log_base = 1.0 if p.base == -1 else math.log(p.base)
    inner = np.float32(log_base * p.scale)
    outer = 1.0 if p.shift == 0 else (math.e ** p.shift if p.base == -1 else p.base ** p.shift)
    pre = [("Mul", "inner_scale", inner)] if inner != 1 else []
    post = [("Mul", "outer_scale", np.float32(outer))] if np.float32(outer) != 1 else []
    if not pre and not post:
        e.node("Exp", x, y, layer.name)
        return
    src = x[0]
    if pre:
        src = e.tmp(layer, "scaled")
        _chain_one(e, layer, x[0], src, *pre[0], name=f"{layer.name}/inner_scale")
    if post:
        exp = e.tmp(layer, "exp")
        e.node("Exp", [src], [exp], layer.name)
        _chain_one(e, layer, exp, y[0], *post[0], name=f"{layer.name}/outer_scale")
    else:
        e.node("Exp", [src], y, layer.name)


def _chain_one(e, layer, x, y, op, what, value, name):
    e.node(op, [x, e.const(f"{layer.name}.{what}", value)], [y], name)


def _log(e, layer, stats, shapes, x, y):
    p = layer.log_param
    base_scale = np.float32(1.0 if p.base == -1 else 1.0 / math.log(p.base))
    src = x[0]
    pre = []
    if p.scale != 1:
        pre.append(("Mul", "scale", p.scale))
    if p.shift != 0:
        pre.append(("Add", "shift", p.shift))
    if pre:
        src = e.tmp(layer, "input")
        _chain(e, layer, x[0], src, pre)
    if base_scale == 1:
        e.node("Log", [src], y, f"{layer.name}/log" if pre else layer.name)
        return
    ln = e.tmp(layer, "ln")
    e.node("Log", [src], [ln], f"{layer.name}/log")
    _chain_one(e, layer, ln, y[0], "Mul", "base_scale", base_scale, name=layer.name)


def _relu(e, layer, stats, shapes, x, y):
    slope = layer.relu_param.negative_slope
    if slope == 0:
        e.node("Relu", x, y, layer.name)
    else:
        e.node("LeakyRelu", x, y, layer.name, alpha=float(slope))


def _relu6(e, layer, stats, shapes, x, y):
    p = layer.relu6_param  # fork: min(max(x, 0) + slope * min(x, 0), threshold)
    if p.negative_slope == 0:
        e.node("Clip", [x[0], e.const(f"{layer.name}.min", 0.0),
                        e.const(f"{layer.name}.max", p.threshold)], y, layer.name)
        return
    leaky = e.tmp(layer, "leaky")
    e.node("LeakyRelu", x, [leaky], f"{layer.name}/leaky", alpha=float(p.negative_slope))
    e.node("Min", [leaky, e.const(f"{layer.name}.threshold", p.threshold)], y, layer.name)


def _clip(e, layer, stats, shapes, x, y):
    p = layer.clip_param
    e.node("Clip", [x[0], e.const(f"{layer.name}.min", p.min),
                    e.const(f"{layer.name}.max", p.max)], y, layer.name)


def _swish(e, layer, stats, shapes, x, y):
    beta = layer.swish_param.beta
    src = x[0]
    if beta != 1:
        src = e.tmp(layer, "beta_x")
        _chain_one(e, layer, x[0], src, "Mul", "beta", beta, name=f"{layer.name}/beta")
    sig = e.tmp(layer, "sigmoid")
    e.node("Sigmoid", [src], [sig], f"{layer.name}/sigmoid")
    e.node("Mul", [x[0], sig], y, layer.name)


def _hard_sigmoid(e, layer, stats, shapes, x, y):
    # the fork's HardSigmoid: max(0, min(1, alpha x + beta)), ONNX's formula
    p = layer.hardsigmoid_param
    e.node("HardSigmoid", x, y, layer.name, alpha=float(p.alpha), beta=float(p.beta))


def _permute(e, layer, stats, shapes, x, y):
    order = list(layer.permute_param.order)
    order += [a for a in range(len(shapes[0])) if a not in order]
    if order[0] != 0:
        e.no_dynamic(layer, "it moves the batch axis")
    e.node("Transpose", x, y, layer.name, perm=order)


def _hard_swish(e, layer, stats, shapes, x, y):
    # the fork's HardSwish: x * max(0, min(1, x / 6 + 0.5)), ONNX's HardSwish (opset 14)
    if e.opset >= 14:
        e.node("HardSwish", x, y, layer.name)
        return
    gate = e.tmp(layer, "gate")
    e.node("HardSigmoid", x, [gate], f"{layer.name}/gate", alpha=1.0 / 6.0, beta=0.5)
    e.node("Mul", [x[0], gate], y, layer.name)


def _threshold(e, layer, stats, shapes, x, y):
    above = e.tmp(layer, "above")
    e.node("Greater", [x[0], e.const(f"{layer.name}.threshold",
                                     layer.threshold_param.threshold)], [above],
           f"{layer.name}/compare")
    e.node("Cast", [above], y, layer.name, to=e.onnx.TensorProto.FLOAT)


def _simple(op: str, **attrs) -> Handler:
    def handler(e, layer, stats, shapes, x, y):
        e.node(op, x, y, layer.name, **attrs)
    return handler


def _elu(e, layer, stats, shapes, x, y):
    e.node("Elu", x, y, layer.name, alpha=float(layer.elu_param.alpha))


def _crop(e, layer, stats, shapes, x, y):
    p = layer.crop_param
    shape, out = shapes[0], stats.out_shapes[0]
    start = export_net.canonical_axis(p.axis, len(shape))
    offsets = list(p.offset)
    axes, begins, ends = [], [], []
    for i in range(start, len(shape)):
        off = 0 if not offsets else offsets[0] if len(offsets) == 1 else offsets[i - start]
        if off == 0 and out[i] == shape[i]:
            continue
        if i == 0:
            e.no_dynamic(layer, "it crops the batch axis")
        axes.append(i)
        begins.append(off)
        ends.append(off + out[i])
    if not axes:
        e.node("Identity", [x[0]], y, layer.name)
        return
    e.node("Slice", [x[0], e.ints(f"{layer.name}.starts", begins),
                     e.ints(f"{layer.name}.ends", ends), e.ints(f"{layer.name}.axes", axes)],
           y, layer.name)


def _mvn(e, layer, stats, shapes, x, y):
    p = layer.mvn_param
    ndim = len(shapes[0])
    axes = list(range(1 if p.across_channels else 2, ndim))
    mean, centred = e.tmp(layer, "mean"), e.tmp(layer, "centred")
    e.reduce_mean(x[0], axes, mean, f"{layer.name}/mean")
    if not p.normalize_variance:
        e.node("Sub", [x[0], mean], y, layer.name)
        return
    e.node("Sub", [x[0], mean], [centred], f"{layer.name}/centre")
    sq, var, std, stde = (e.tmp(layer, w) for w in ("sq", "var", "std", "std_eps"))
    e.node("Mul", [centred, centred], [sq], f"{layer.name}/square")
    e.reduce_mean(sq, axes, var, f"{layer.name}/variance")
    e.node("Sqrt", [var], [std], f"{layer.name}/sqrt")
    # Caffe adds eps to the standard deviation, not to the variance
    e.node("Add", [std, e.const(f"{layer.name}.eps", p.eps)], [stde], f"{layer.name}/eps")
    e.node("Div", [centred, stde], y, layer.name)


_HANDLERS: dict[str, Handler] = {
    "Convolution": _convolution,
    "Deconvolution": _deconvolution,
    "Pooling": _pooling,
    "InnerProduct": _inner_product,
    "BatchNorm": _batch_norm,
    "Scale": _scale,
    "Bias": _bias,
    "Eltwise": _eltwise,
    "Concat": _concat,
    "Slice": _slice,
    "Split": _identity,
    "Dropout": _identity,
    "Flatten": _flatten,
    "Reshape": _reshape,
    "Softmax": _softmax,
    "PReLU": _prelu,
    "LRN": _lrn,
    "Power": _power,
    "Exp": _exp,
    "Log": _log,
    "ReLU": _relu,
    "ReLU6": _relu6,
    "Clip": _clip,
    "Swish": _swish,
    "Threshold": _threshold,
    "HardSigmoid": _hard_sigmoid,
    "Permute": _permute,
    "HardSwish": _hard_swish,
    "ELU": _elu,
    "Sigmoid": _simple("Sigmoid"),
    "TanH": _simple("Tanh"),
    "AbsVal": _simple("Abs"),
    "BNLL": _simple("Softplus"),
    "Crop": _crop,
    "MVN": _mvn,
}
