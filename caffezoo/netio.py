"""Reading and writing Caffe nets (.prototxt) and weights (.caffemodel).

Everything read is upgraded to the program's one representation (see docs/architecture.md):
a `caffe_pb2.NetParameter` with `layer` entries, an Input layer instead of net-level inputs,
and pooling rounding as `ceil_mode` (false = floor). Writers produce one of three pooling
dialects (docs/formats.md):

- ``ceil_mode``: `ceil_mode: false` (BVLC PR 3057 forks, brocolli/inisis Caffe, OpenCV);
- ``round_mode``: `round_mode: FLOOR` (BVLC master since PR 6282; same field number 13, opposite
  meaning in binary);
- ``portable``: ceil-mode pooling, then Slice layers that cut the extra last row/column off into a
  Silence layer; stock layers that every Caffe build, OpenCV and accelerator toolchains know.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np
from google.protobuf import message as pb_message
from google.protobuf import text_format
from google.protobuf.internal.encoder import _VarintBytes

from caffezoo.errors import FormatError, InputFileError, WeightMismatchError, problem_list
from caffezoo.proto import caffe_pb2, caffe_round_mode_pb2

NetParameter = caffe_pb2.NetParameter
_LAYER_TAG = _VarintBytes(100 << 3 | 2)  # NetParameter.layer: field 100, length-delimited
_BLOB_DATA_TAG = _VarintBytes(5 << 3 | 2)  # BlobProto.data: field 5, packed floats
DIALECTS = ("ceil_mode", "round_mode", "portable")

# V1 layer type enum name -> modern type string (Caffe's own upgrade table).
_V1_TYPES = {
    "ABSVAL": "AbsVal", "ACCURACY": "Accuracy", "ARGMAX": "ArgMax", "BNLL": "BNLL",
    "CONCAT": "Concat", "CONTRASTIVE_LOSS": "ContrastiveLoss", "CONVOLUTION": "Convolution",
    "DATA": "Data", "DECONVOLUTION": "Deconvolution", "DROPOUT": "Dropout",
    "DUMMY_DATA": "DummyData", "EUCLIDEAN_LOSS": "EuclideanLoss", "ELTWISE": "Eltwise",
    "EXP": "Exp", "FLATTEN": "Flatten", "HDF5_DATA": "HDF5Data", "HDF5_OUTPUT": "HDF5Output",
    "HINGE_LOSS": "HingeLoss", "IM2COL": "Im2col", "IMAGE_DATA": "ImageData",
    "INFOGAIN_LOSS": "InfogainLoss", "INNER_PRODUCT": "InnerProduct", "LRN": "LRN",
    "MEMORY_DATA": "MemoryData", "MULTINOMIAL_LOGISTIC_LOSS": "MultinomialLogisticLoss",
    "MVN": "MVN", "POOLING": "Pooling", "POWER": "Power", "RELU": "ReLU", "SIGMOID": "Sigmoid",
    "SIGMOID_CROSS_ENTROPY_LOSS": "SigmoidCrossEntropyLoss", "SILENCE": "Silence",
    "SOFTMAX": "Softmax", "SOFTMAX_LOSS": "SoftmaxWithLoss", "SPLIT": "Split", "SLICE": "Slice",
    "TANH": "TanH", "WINDOW_DATA": "WindowData", "THRESHOLD": "Threshold",
}
# V1 parameter fields that have the same name and type in LayerParameter.
_V1_PARAM_FIELDS = [
    f.name for f in caffe_pb2.V1LayerParameter.DESCRIPTOR.fields
    if f.name.endswith("_param") and f.name != "param"
]


# ---------------------------------------------------------------------------------------------
# files


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A binary file object whose contents replace `path` only when the block completes: the
    data goes to a temporary file in the same folder, then a rename. An interrupted or failed
    write leaves the old file (or none), never a half-written one."""
    from caffezoo.outputs import check_target, sweep, temp_name

    path = check_target(path)  # the one output check (never a device or FIFO: docs/cli.md)
    sweep(path.parent)  # what killed runs left here (docs/reliability.md)
    tmp = temp_name(path)  # named so that a later run sweeps it after a kill -9
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as err:
        raise InputFileError(f"{path}: cannot write: {err.strerror or err}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as err:  # a full disk, a file size limit, an I/O error: the user's
        Path(tmp).unlink(missing_ok=True)
        raise InputFileError(f"{path}: cannot write: {err.strerror or err}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(path: str | os.PathLike, data: bytes | str) -> None:
    """Write all of `data` to `path` atomically (see atomic_output)."""
    with atomic_output(path) as f:
        # surrogateescape: a file name that is not UTF-8 is written back as its bytes
        f.write(data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data)


def read_bytes(path: str | os.PathLike, what: str = "file") -> bytes:
    """Read a whole file, turning OS errors into one-line InputFileErrors."""
    path = Path(path).expanduser()
    if not path.exists():
        raise InputFileError(f"{path}: {what} not found")
    if path.is_dir():
        raise InputFileError(f"{path}: is a folder, expected a {what}")
    try:
        return path.read_bytes()
    except OSError as err:
        raise InputFileError(f"{path}: cannot read {what}: {err.strerror}") from None


# ---------------------------------------------------------------------------------------------
# prototxt


def parse_prototxt(text: str, source: str = "<string>") -> NetParameter:
    """Parse prototxt text in any dialect and legacy format into the modern form."""
    try:
        net = text_format.Parse(text, NetParameter())
    except text_format.ParseError as err:
        if "round_mode" not in str(err):
            raise _prototxt_error(err, source) from None
        # BVLC-master dialect: parse with that schema, then express rounding as ceil_mode.
        try:
            rm_net = text_format.Parse(text, caffe_round_mode_pb2.NetParameter())
        except text_format.ParseError as err2:
            raise _prototxt_error(err2, source) from None
        net = _from_round_mode(rm_net)
    _check_text_fields(net, source)
    return upgrade(net, source)


def _check_text_fields(net: NetParameter, source: str) -> None:
    """Refuses a net whose names are not UTF-8 text (protobuf then hands out bytes, which no
    name in caffezoo can be): one line naming the field and the bytes."""
    for i, layer in enumerate([*net.layer, *net.layers]):
        found = _bytes_field(layer)
        if found:
            field, value = found
            name = f" ({layer.name!r})" if isinstance(layer.name, str) else ""
            raise FormatError(f"{source}: layer {i}{name}: {field} {value!r} is not UTF-8 "
                              "text")
    found = _bytes_field(net, skip=("layer", "layers"))
    if found:
        raise FormatError(f"{source}: {found[0]} {found[1]!r} is not UTF-8 text")


def _bytes_field(msg, skip: tuple[str, ...] = ()) -> tuple[str, bytes] | None:
    """(field, value) of the first `string` field, at any depth, that holds invalid UTF-8."""
    for fd, value in msg.ListFields():
        if fd.name in skip:
            continue
        repeated = fd.is_repeated
        if fd.type == fd.TYPE_STRING:
            for v in value if repeated else (value,):
                if isinstance(v, bytes):
                    return fd.name, v
        elif fd.type == fd.TYPE_MESSAGE and fd.name != "blobs":
            for sub in value if repeated else (value,):
                found = _bytes_field(sub)
                if found:
                    return found
    return None


def read_prototxt(path: str | os.PathLike) -> NetParameter:
    raw = read_bytes(path, "prototxt")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        if re.search(rb"[\x00-\x08\x0e-\x1a\x1c-\x1f]", raw[:4096]):  # control bytes
            raise FormatError(f"{path}: not a text prototxt (binary data; a .caffemodel?)"
                              ) from None
        line = raw[:err.start].count(b"\n") + 1
        raise FormatError(f"{path}:{line}: not UTF-8 text (byte {err.start}: "
                          f"0x{raw[err.start]:02x}); save the prototxt as UTF-8") from None
    net = parse_prototxt(text, str(path))
    if not net.layer:
        raise FormatError(f"{path}: prototxt defines no layers")
    return net


def in_dialect(net: NetParameter, dialect: str):
    """`net` as the message to write for a pooling dialect: the net itself (ceil_mode), its
    portable rewrite, or the equivalent message of the round_mode schema."""
    if dialect == "ceil_mode":
        return net
    if dialect == "portable":
        return to_portable(net)
    if dialect == "round_mode":
        return _to_round_mode(net)
    raise ValueError(f"unknown pooling dialect {dialect!r}; choose one of {', '.join(DIALECTS)}")


def format_prototxt(net: NetParameter, dialect: str = "ceil_mode") -> str:
    """The net as prototxt text in `dialect`, without weights."""
    return text_format.MessageToString(in_dialect(_strip_blobs(net), dialect))


def write_prototxt(net: NetParameter, path: str | os.PathLike, dialect: str = "ceil_mode") -> None:
    atomic_write(path, format_prototxt(net, dialect))


def _prototxt_error(err: text_format.ParseError, source: str) -> FormatError:
    line, col = err.GetLine(), err.GetColumn()
    # The parser's text repeats the position and the offending line; keep only the reason.
    reason = re.sub(r"^\d+:\d+ : (?:'.*?': )?", "", str(err))
    reason = reason.replace("caffezoo.caffe_round_mode.", "").replace("caffezoo.caffe.", "")
    where = f"{source}:{line}:{col}" if line else source
    return FormatError(f"{where}: malformed prototxt: {reason}")


# ---------------------------------------------------------------------------------------------
# caffemodel


def read_caffemodel(path: str | os.PathLike) -> NetParameter:
    """A binary NetParameter (weights included), upgraded to the modern form."""
    raw = read_bytes(path, "caffemodel")
    net = NetParameter()
    try:
        net.ParseFromString(raw)
    except pb_message.DecodeError:
        raise FormatError(
            f"{path}: not a Caffe model (truncated or not a binary NetParameter)") from None
    if not net.layer and not net.layers:
        raise FormatError(f"{path}: not a Caffe model (no layers in {len(raw)} bytes)")
    _check_text_fields(net, str(path))
    return upgrade(net, str(path))


def write_caffemodel(net: NetParameter, path: str | os.PathLike,
                     dialect: str = "ceil_mode") -> None:
    """Write the net with its blobs. Caffe takes only the blobs from a caffemodel (by layer
    name), but the layer definitions in it still follow `dialect` so no reader misreads them."""
    msg = in_dialect(net, dialect)
    # Serialized layer by layer (a message's encoding is the concatenation of its fields'), so
    # a large model never exists twice in memory as one big byte string.
    head = _copy_fields(msg, type(msg)(), skip="layer")
    with atomic_output(path) as f:
        f.write(head.SerializeToString())
        for layer in msg.layer:
            data = layer.SerializeToString()
            f.write(_LAYER_TAG + _VarintBytes(len(data)))
            f.write(data)


def read_net(prototxt: str | os.PathLike,
             caffemodel: str | os.PathLike | None = None) -> NetParameter:
    """The prototxt's net, carrying the caffemodel's blobs when one is given. Every layer that
    needs weights must find them in the caffemodel, in the shapes the prototxt implies."""
    net = read_prototxt(prototxt)
    if caffemodel is None:
        return net
    try:
        return attach_weights(net, read_weights(caffemodel), check=True, allow_unused=True)
    except WeightMismatchError as err:
        raise WeightMismatchError(f"{caffemodel} does not fit {prototxt}: {err}") from None


def blob_to_array(blob: caffe_pb2.BlobProto) -> np.ndarray:
    """A blob's data as a float32 array of the blob's shape (legacy 4-D shapes included)."""
    if blob.HasField("shape"):
        shape = tuple(blob.shape.dim)
    else:
        shape = (blob.num, blob.channels, blob.height, blob.width)
    data = blob.data if len(blob.data) else blob.double_data
    arr = np.array(data, dtype=np.float32)
    if arr.size != int(np.prod(shape, dtype=np.int64)):
        raise FormatError(f"blob of shape {shape} holds {arr.size} values")
    return arr.reshape(shape)


def array_to_blob(arr: np.ndarray, blob: caffe_pb2.BlobProto | None = None
                  ) -> caffe_pb2.BlobProto:
    """A BlobProto holding `arr` as float32 (`blob`, an empty one, filled in place: appending a
    filled one would copy its data). The packed data field is encoded directly: extending a
    repeated field from Python costs seconds per ten million values."""
    shape = np.shape(arr)  # ascontiguousarray makes a 0-axis array 1-axis
    arr = np.ascontiguousarray(arr, dtype="<f4")
    blob = caffe_pb2.BlobProto() if blob is None else blob
    blob.shape.SetInParent()  # present even with no axes (PReLU's shared slope)
    blob.shape.dim.extend(shape)
    encoded = bytearray(_BLOB_DATA_TAG + _VarintBytes(arr.nbytes))
    encoded += memoryview(arr).cast("B")
    blob.MergeFromString(encoded)
    return blob


def read_weights(path: str | os.PathLike) -> dict[str, list[np.ndarray]]:
    """Layer name -> its blobs as float32 arrays, for every layer that has blobs."""
    net = read_caffemodel(path)
    weights = {}
    for layer in net.layer:
        if layer.blobs:
            try:
                weights[layer.name] = [blob_to_array(b) for b in layer.blobs]
            except FormatError as err:
                raise FormatError(f"{path}: layer {layer.name!r}: {err}") from None
    return weights


def attach_weights(net: NetParameter, weights: Mapping[str, Sequence[np.ndarray]],
                   check: bool = False, allow_unused: bool = False) -> NetParameter:
    """A copy of `net` whose layers carry `weights` (layer name -> blobs).

    Every name must be a layer of the net unless `allow_unused` (Caffe itself ignores such
    layers, e.g. an auxiliary head absent from a deploy net). With `check`, the weights must
    also fit as Caffe requires (`analysis.check_weights`): every layer that has blobs gets them,
    in the shapes the net implies (legacy 4-D shapes are accepted and stored in the net's
    shapes). All problems are reported together in one WeightMismatchError."""
    out = NetParameter()
    out.CopyFrom(net)
    by_name = {layer.name: layer for layer in out.layer}
    problems = [] if allow_unused else [
        f"unexpected layer {name!r}" for name in weights if name not in by_name]
    if check:
        from caffezoo.analysis import analyze  # shapes come from the analysis

        weights, misfits = _fit(analyze(net), weights)
        problems += misfits
    if problems:
        raise WeightMismatchError(problem_list(problems))
    for name, blobs in weights.items():
        layer = by_name.get(name)
        if layer is None:
            continue
        del layer.blobs[:]
        for blob in blobs:
            array_to_blob(blob, layer.blobs.add())
    return out


def fit_weights(analysis, weights: Mapping[str, Sequence[np.ndarray]]
                ) -> dict[str, list[np.ndarray]]:
    """The weights reshaped to the blob shapes a net implies (`analysis` of that net), after
    checking that they fit as Caffe requires (`analysis.check_weights`: legacy 4-D shapes are
    accepted) and that every layer that has blobs gets them. All problems are reported together
    in one WeightMismatchError; layers the net does not have are left as they are."""
    fitted, problems = _fit(analysis, weights)
    if problems:
        raise WeightMismatchError(problem_list(problems))
    return fitted


def _fit(analysis, weights) -> tuple[dict[str, list[np.ndarray]], list[str]]:
    from caffezoo.analysis import check_weights

    report = check_weights(analysis, weights)
    problems = [m.describe() for m in report.mismatches]
    problems += [f"no weights for layer {name!r}" for name in report.missing]
    fitted = {name: list(blobs) for name, blobs in weights.items()}
    if not problems:
        for stats in analysis.layers:
            if stats.name in fitted:
                fitted[stats.name] = [np.reshape(b, shape) for b, shape in
                                      zip(fitted[stats.name], stats.param_shapes, strict=True)]
    return fitted, problems


def _strip_blobs(net: NetParameter) -> NetParameter:
    """A copy of `net` without blobs (the blobs are never copied: a large model's take
    seconds)."""
    out = _copy_fields(net, NetParameter(), skip="layer")
    for layer in net.layer:
        _copy_fields(layer, out.layer.add(), skip="blobs")
    return out


def _copy_fields(src, dst, skip: str):
    """`dst` given every field of the message `src` except `skip`."""
    for field, value in src.ListFields():
        if field.name == skip:
            continue
        if isinstance(value, pb_message.Message):
            getattr(dst, field.name).CopyFrom(value)
        elif not isinstance(value, str | bytes | int | float | bool):  # a repeated field
            getattr(dst, field.name).extend(value)
        else:
            setattr(dst, field.name, value)
    return dst


# ---------------------------------------------------------------------------------------------
# legacy upgrade


def upgrade(net: NetParameter, source: str = "<net>") -> NetParameter:
    """Modern form: V1 `layers` become `layer`, net-level inputs an Input layer, legacy 4-D blob
    shapes `shape` fields. Returns `net` itself when nothing is legacy."""
    if net.layers and net.layer:
        raise FormatError(f"{source}: mixes V1 'layers' and modern 'layer' entries")
    if net.layers:
        for v1 in net.layers:
            _upgrade_v1_layer(v1, net.layer.add(), source)
        del net.layers[:]
    if net.input:
        _upgrade_net_inputs(net, source)
    for layer in net.layer:
        for blob in layer.blobs:
            if not blob.HasField("shape") and (blob.num or blob.channels or blob.height
                                               or blob.width):
                blob.shape.dim.extend(
                    [d for d in (blob.num, blob.channels, blob.height, blob.width)])
                for field in ("num", "channels", "height", "width"):
                    blob.ClearField(field)
    return net


def _upgrade_v1_layer(v1: caffe_pb2.V1LayerParameter, layer: caffe_pb2.LayerParameter,
                      source: str) -> None:
    type_name = caffe_pb2.V1LayerParameter.LayerType.Name(v1.type)
    if type_name not in _V1_TYPES:
        raise FormatError(f"{source}: V1 layer {v1.name!r} has no type")
    layer.name = v1.name
    layer.type = _V1_TYPES[type_name]
    layer.bottom.extend(v1.bottom)
    layer.top.extend(v1.top)
    layer.include.extend(v1.include)
    layer.exclude.extend(v1.exclude)
    layer.loss_weight.extend(v1.loss_weight)
    layer.blobs.extend(v1.blobs)
    n_params = max(len(v1.param), len(v1.blobs_lr), len(v1.weight_decay))
    for i in range(n_params):
        spec = layer.param.add()
        if i < len(v1.param):
            spec.name = v1.param[i]
        if i < len(v1.blobs_lr):
            spec.lr_mult = v1.blobs_lr[i]
        if i < len(v1.weight_decay):
            spec.decay_mult = v1.weight_decay[i]
    for field in _V1_PARAM_FIELDS:
        if v1.HasField(field):
            getattr(layer, field).CopyFrom(getattr(v1, field))


def _upgrade_net_inputs(net: NetParameter, source: str) -> None:
    names = list(net.input)
    if net.input_shape:
        if len(net.input_shape) != len(names):
            raise FormatError(f"{source}: {len(names)} inputs but {len(net.input_shape)} "
                              "input_shape entries")
        shapes = [list(s.dim) for s in net.input_shape]
    elif net.input_dim:
        if len(net.input_dim) != 4 * len(names):
            raise FormatError(f"{source}: {len(names)} inputs need {4 * len(names)} input_dim "
                              f"values, found {len(net.input_dim)}")
        dims = list(net.input_dim)
        shapes = [dims[4 * i:4 * i + 4] for i in range(len(names))]
    else:
        raise FormatError(f"{source}: input {names[0]!r} has no input_dim or input_shape")
    input_layer = caffe_pb2.LayerParameter(name="input", type="Input")
    if any(layer.name == "input" for layer in net.layer):
        input_layer.name = "input_" + names[0]
    input_layer.top.extend(names)
    for shape in shapes:
        input_layer.input_param.shape.add().dim.extend(shape)
    layers = [input_layer] + list(net.layer)
    del net.layer[:]
    net.layer.extend(layers)
    for field in ("input", "input_shape", "input_dim"):
        net.ClearField(field)


# ---------------------------------------------------------------------------------------------
# pooling dialects


def _pooling_pairs(src, dst):
    """(source pooling_param, destination pooling_param) for every pooling layer of two nets
    with the same layers (V1 and modern)."""
    for a, b in zip(list(src.layer) + list(src.layers), list(dst.layer) + list(dst.layers),
                    strict=True):
        if a.HasField("pooling_param"):
            yield a.pooling_param, b.pooling_param


def _from_round_mode(rm_net) -> NetParameter:
    net = NetParameter()
    net.ParseFromString(rm_net.SerializeToString())
    floor = caffe_round_mode_pb2.PoolingParameter.FLOOR
    for src, dst in _pooling_pairs(rm_net, net):
        dst.ClearField("ceil_mode")
        if src.HasField("round_mode"):
            dst.ceil_mode = src.round_mode != floor
    return net


def _to_round_mode(net: NetParameter):
    rm_net = caffe_round_mode_pb2.NetParameter()
    rm_net.ParseFromString(net.SerializeToString())
    rounding = caffe_round_mode_pb2.PoolingParameter
    for src, dst in _pooling_pairs(net, rm_net):
        dst.ClearField("round_mode")
        if src.HasField("ceil_mode"):
            dst.round_mode = rounding.CEIL if src.ceil_mode else rounding.FLOOR
    return rm_net


def to_portable(net: NetParameter) -> NetParameter:
    """A copy of `net` without `ceil_mode: false`: each floor-mode pooling becomes Caffe's default
    ceil-mode pooling, followed, where the two round differently at the net's input size, by
    Slice layers that keep the floor-size part and a Silence layer that swallows the extra last
    row/column. Exact, because ceil mode only adds windows at the end."""
    from caffezoo.analysis import analyze  # shape inference lives there

    ceil_net = NetParameter()
    ceil_net.CopyFrom(net)
    for layer in ceil_net.layer:
        if layer.type == "Pooling":
            layer.pooling_param.ClearField("ceil_mode")
    floor_shapes = analyze(net).blob_shapes

    def ceil_pooled_hw(pool_layer: caffe_pb2.LayerParameter) -> tuple[int, ...]:
        # the ceil-mode pooling alone, on the input it has in the floor-mode net
        probe = NetParameter()
        probe.layer.add(name="in", type="Input", top=[pool_layer.bottom[0]]).input_param.shape.add(
            dim=floor_shapes[pool_layer.bottom[0]])
        probe.layer.add().CopyFrom(pool_layer)
        return analyze(probe).blob_shapes[pool_layer.top[0]][2:]

    out = NetParameter()
    out.CopyFrom(ceil_net)
    del out.layer[:]
    for layer, ceil_layer in zip(net.layer, ceil_net.layer, strict=True):
        new = out.layer.add()
        new.CopyFrom(ceil_layer)
        if layer.type != "Pooling" or layer.pooling_param.ceil_mode:
            continue
        top = layer.top[0]
        floor_hw, ceil_hw = floor_shapes[top][2:], ceil_pooled_hw(ceil_layer)
        if floor_hw == ceil_hw:
            continue
        current = new.top[0] = f"{top}_ceil"
        cut_axes = [axis for axis in (2, 3) if floor_hw[axis - 2] != ceil_hw[axis - 2]]
        dropped = []
        for axis in cut_axes:
            side = "hw"[axis - 2]
            kept = top if axis == cut_axes[-1] else f"{top}_floor_{side}"
            cut = out.layer.add(name=f"{layer.name}_floor_{side}", type="Slice")
            cut.bottom.append(current)
            cut.top.extend([kept, f"{top}_extra_{side}"])
            cut.slice_param.axis = axis
            cut.slice_param.slice_point.append(floor_hw[axis - 2])
            dropped.append(cut.top[1])
            current = kept
        out.layer.add(name=f"{layer.name}_floor_silence", type="Silence").bottom.extend(dropped)
    return out
