"""The ONNX front end: `onnx:FILE.onnx` sources.

`read_graph(spec, input_shape)` reads FILE.onnx into the canonical graph (caffezoo.graph.ir) that
the one emitter turns into a Caffe net; `open_graph_runner(spec, input_shape)` runs the same file
with onnxruntime for validation. Parts: reader.py (load, check, fix the input shape, fold shape
arithmetic), ops.py (one handler per ONNX op), runner.py (onnxruntime with intermediate values).
The torchvision/timm sources (converters/traced.py) trace a model into ONNX and come here.
"""

from __future__ import annotations

from pathlib import Path

from caffezoo.contract import ONNX_METADATA_KEY, InputContract
from caffezoo.errors import InputFileError


def _path(spec: str) -> Path:
    if not spec:
        raise InputFileError("onnx source: expected onnx:FILE.onnx")
    return Path(spec)


def read_graph(spec: str, input_shape: tuple[int, ...] | None = None, name: str | None = None):
    """The canonical graph of the ONNX file `spec` at `input_shape` (NCHW; None: the file's)."""
    from caffezoo.converters.onnx.ops import translate
    from caffezoo.converters.onnx.reader import prepare

    prep = prepare(_path(spec), input_shape)
    graph = translate(prep, name)
    graph.contract = contract_of(prep)
    return graph


def contract_of(prep) -> InputContract | None:
    """The input contract a caffezoo export wrote into the file's metadata, at the prepared
    input size; None when the file has none (ONNX has no standard place for one)."""
    import json

    text = next((p.value for p in prep.model.metadata_props if p.key == ONNX_METADATA_KEY), None)
    if text is None:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputFileError(f"{prep.path}: metadata {ONNX_METADATA_KEY} is not JSON "
                             f"({e})") from None
    contract = InputContract.from_dict(data, f"{prep.path}: metadata {ONNX_METADATA_KEY}")
    n, *rest = prep.input_shape
    h = rest[0] if prep.nhwc else rest[1]
    return contract if h == contract.crop_size else contract.at_crop(h)


def open_graph_runner(spec: str, input_shape: tuple[int, ...] | None = None):
    """An onnxruntime runner of the ONNX file `spec` (NCHW input, as the converted net)."""
    from caffezoo.converters.onnx.reader import prepare
    from caffezoo.converters.onnx.runner import OnnxRunner

    prep = prepare(_path(spec), input_shape)
    model = prep.model  # the input's open dims set to the prepared shape
    if prep.file_dims is None or prep.file_dims[0] is None:  # keep a dynamic batch dynamic
        vi = next(v for v in model.graph.input if v.name == prep.input_name)
        vi.type.tensor_type.shape.dim[0].dim_param = "N"
    n, *rest = prep.input_shape
    nchw = (n, rest[2], rest[0], rest[1]) if prep.nhwc else tuple(prep.input_shape)
    return OnnxRunner(model, prep.input_name, nchw, prep.nhwc, contract_of(prep), prep.path)
