"""Lua Torch (.t7) models: read with torchfile, named like torchvision, and run in PyTorch
(the `torch` source kind reads .t7 files through this module).

fb.resnet.torch and the Facebook ResNeXt release saved whole `nn.Sequential` models. We read the
module tree (torchfile parses the binary format; nothing in the file is executed), then:

- `resnet_state_dict` walks a ResNet-shaped tree (stem, stages of residual blocks built from
  ConcatTable + CAddTable, average pooling, View, Linear) and names every tensor as torchvision
  does (`conv1.weight`, `layer1.0.bn2.running_var`, `layer2.0.downsample.0.weight`, `fc.bias`),
  so the ResNet mapping serves PyTorch and Lua checkpoints alike;
- `LuaNet` runs the tree with PyTorch ops following the Lua modules' own semantics (floor or ceil
  pooling as the module says, fixed-size average pooling, ...), the source side of validation.

Both walk the tree through tables of one handler per Lua class; an unknown class stops with its
name and its place in the tree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from caffezoo.card_plan import PoolSpec
from caffezoo.converters.common import Checkpoint, ParamNaming
from caffezoo.errors import ConversionError, InputFileError
from caffezoo.frameworks import import_torch


@dataclass
class LuaModule:
    """One Lua module: its class without the `nn.`/`cudnn.` package, fields, children."""

    cls: str
    package: str
    fields: dict[str, Any]
    children: list[LuaModule]
    path: str  # where it sits in the tree, e.g. "model.modules[5].modules[0]"
    key: str | None = None  # torchvision-style name given by `resnet_state_dict`

    def field(self, name: str, default: Any = None) -> Any:
        return self.fields.get(name, default)

    def array(self, name: str) -> np.ndarray | None:
        v = self.fields.get(name)
        if v is None or (isinstance(v, np.ndarray) and v.size == 0):
            return None
        return np.ascontiguousarray(v, dtype=np.float32)


def _text(v) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


def _plain(v):
    """torchfile values -> plain Python: bytes keys to str, arrays copied (torchfile returns
    strided views into storages)."""
    if isinstance(v, np.ndarray):
        return np.array(v)
    if isinstance(v, dict):
        return {_text(k): _plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    if isinstance(v, bytes):
        return _text(v)
    return v


def _module(obj, path: str) -> LuaModule:
    typename = getattr(obj, "torch_typename", None)
    if typename is None:
        raise ConversionError(f"{path}: not a Torch module ({type(obj).__name__})")
    name = _text(typename())
    package, _, cls = name.rpartition(".")
    raw = obj._obj if isinstance(obj._obj, dict) else {}
    fields = {}
    children_raw = None
    for k, v in raw.items():
        k = _text(k)
        if k == "modules":
            children_raw = v
        elif hasattr(v, "torch_typename"):
            continue  # nested objects other than children (e.g. cached buffers): not needed
        else:
            fields[k] = _plain(v)
    children = []
    if children_raw is not None:
        items = children_raw if isinstance(children_raw, list) else [
            children_raw[k] for k in sorted(children_raw)]
        children = [_module(c, f"{path}.modules[{i}]") for i, c in enumerate(items)]
    return LuaModule(cls, package or "nn", fields, children, path)


def read_t7(path: str | Path) -> LuaModule:
    """The module tree of a .t7 file (a model, or a table with a `model` entry)."""
    from caffezoo.frameworks import import_torchfile

    torchfile = import_torchfile()
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: no such file")
    try:
        obj = torchfile.load(str(path))
    except Exception as err:  # struct.error, ValueError, NotImplementedError on bad input
        raise InputFileError(f"{path}: not a readable Lua Torch .t7 file ({type(err).__name__}: "
                             f"{str(err).splitlines()[0] if str(err) else ''})") from None
    if isinstance(obj, dict):
        model = obj.get(b"model", obj.get("model"))
        if model is None:
            raise InputFileError(f"{path}: a table without a 'model' entry")
        obj = model
    try:
        return _module(obj, "model")
    except ConversionError as err:
        raise ConversionError(f"{path}: {err}") from None


# ---------------------------------------------------------------------------------------------
# naming: fb.resnet.torch tree -> torchvision keys


CONV = ("SpatialConvolution", "SpatialConvolutionMM")
BN = ("SpatialBatchNormalization", "BatchNormalization")
PARAM_FREE = ("ReLU", "Dropout", "Identity", "View", "Reshape", "SoftMax", "LogSoftMax",
              "SpatialMaxPooling", "SpatialAveragePooling", "CAddTable")


def conv_weight(m: LuaModule) -> np.ndarray:
    """Weight as (out, in/groups, kH, kW); older modules store it flattened to 2-D."""
    w = m.array("weight")
    if w is None:
        raise ConversionError(f"{m.path}: {m.cls} without weight")
    groups = int(m.field("groups", 1) or 1)
    shape = (int(m.field("nOutputPlane")), int(m.field("nInputPlane")) // groups,
             int(m.field("kH")), int(m.field("kW")))
    if w.size != int(np.prod(shape)):
        raise ConversionError(f"{m.path}: weight of {w.size} values does not fit {shape}")
    return w.reshape(shape)


def bn_tensors(m: LuaModule) -> dict[str, np.ndarray]:
    eps = float(m.field("eps", 1e-5))
    mean = m.array("running_mean")
    var = m.array("running_var")
    if var is None and m.array("running_std") is not None:
        # before 2016 Torch stored 1 / sqrt(var + eps)
        var = (1.0 / np.square(m.array("running_std").astype(np.float64)) - eps).astype(
            np.float32)
    if mean is None or var is None:
        raise ConversionError(f"{m.path}: {m.cls} without running statistics")
    n = mean.shape[0]
    weight = m.array("weight")
    bias = m.array("bias")
    return {"running_mean": mean, "running_var": var,
            "weight": weight if weight is not None else np.ones(n, np.float32),
            "bias": bias if bias is not None else np.zeros(n, np.float32)}


@dataclass
class _Namer:
    tensors: dict[str, np.ndarray] = field(default_factory=dict)
    eps: dict[str, float] = field(default_factory=dict)
    pools: dict[str, PoolSpec] = field(default_factory=dict)

    def pool(self, m: LuaModule, key: str) -> None:
        kh, kw = int(m.field("kH")), int(m.field("kW"))
        dh, dw = int(m.field("dH", 1)), int(m.field("dW", 1))
        ph, pw = int(m.field("padH", 0)), int(m.field("padW", 0))
        if kh != kw or dh != dw or ph != pw:
            raise ConversionError(f"{m.path}: non-square pooling {kh}x{kw}/{dh}x{dw}")
        ave = m.cls == "SpatialAveragePooling"
        m.key = key
        self.pools[key] = PoolSpec("ave" if ave else "max", kh, dh, ph,
                                   exclude_pad=ave and not m.field("count_include_pad", True),
                                   ceil=bool(m.field("ceil_mode", False)))

    def conv(self, m: LuaModule, key: str) -> None:
        m.key = key
        self.tensors[f"{key}.weight"] = conv_weight(m)
        if m.array("bias") is not None:
            self.tensors[f"{key}.bias"] = m.array("bias")

    def bn(self, m: LuaModule, key: str) -> None:
        m.key = key
        for part, v in bn_tensors(m).items():
            self.tensors[f"{key}.{part}"] = v
        self.eps[key] = float(m.field("eps", 1e-5))

    def linear(self, m: LuaModule, key: str) -> None:
        m.key = key
        self.tensors[f"{key}.weight"] = m.array("weight")
        if m.array("bias") is not None:
            self.tensors[f"{key}.bias"] = m.array("bias")


def _params(m: LuaModule) -> list[LuaModule]:
    """Parametrised leaves under m, in order."""
    if m.children:
        return [leaf for c in m.children for leaf in _params(c)]
    return [m] if m.cls in CONV + BN + ("Linear",) else []


def _is_block(m: LuaModule) -> bool:
    return m.cls == "Sequential" and any(c.cls == "ConcatTable" for c in m.children)


def _unsupported(m: LuaModule, what: str) -> ConversionError:
    return ConversionError(f"{m.path}: {m.package}.{m.cls} is not part of a {what}")


def _name_block(namer: _Namer, blk: LuaModule, key: str) -> None:
    table = next(c for c in blk.children if c.cls == "ConcatTable")
    branches = sorted(table.children, key=lambda b: -len(_params(b)))
    if len(branches) != 2:
        raise _unsupported(table, "residual block with two branches")
    main, shortcut = branches
    convs = bns = 0
    for leaf in _params(main):
        if leaf.cls in CONV:
            convs += 1
            namer.conv(leaf, f"{key}.conv{convs}")
        elif leaf.cls in BN:
            bns += 1
            namer.bn(leaf, f"{key}.bn{bns}")
        else:
            raise _unsupported(leaf, "residual branch")
    for i, leaf in enumerate(_params(shortcut)):
        if leaf.cls in CONV and i == 0:
            namer.conv(leaf, f"{key}.downsample.0")
        elif leaf.cls in BN and i == 1:
            namer.bn(leaf, f"{key}.downsample.1")
        else:
            raise _unsupported(leaf, "projection shortcut (convolution, batch norm)")


def resnet_state_dict(root: LuaModule, naming: ParamNaming, path: str = "<t7>") -> Checkpoint:
    """Torchvision-named tensors of an fb.resnet.torch-style ResNet/ResNeXt/WRN tree (`naming`:
    the torchvision naming the reader gives)."""
    if root.cls != "Sequential":
        raise ConversionError(f"{path}: the model is a {root.cls}, expected nn.Sequential")
    namer = _Namer()
    stage = 0
    stem = {"conv": 0, "bn": 0}
    for child in root.children:
        if child.cls == "Sequential" and child.children and all(
                _is_block(b) for b in child.children):
            stage += 1
            for i, blk in enumerate(child.children):
                _name_block(namer, blk, f"layer{stage}.{i}")
        elif _is_block(child):
            raise ConversionError(f"{path}: {child.path}: residual block outside a stage")
        elif child.cls in CONV and stage == 0 and stem["conv"] == 0:
            stem["conv"] += 1
            namer.conv(child, "conv1")
        elif child.cls in BN and stage == 0 and stem["bn"] == 0:
            stem["bn"] += 1
            namer.bn(child, "bn1")
        elif child.cls == "Linear" and stage > 0 and "fc.weight" not in namer.tensors:
            namer.linear(child, "fc")
        elif child.cls == "SpatialMaxPooling" and stage == 0 and "maxpool" not in namer.pools:
            namer.pool(child, "maxpool")
        elif child.cls == "SpatialAveragePooling" and stage > 0 and "avgpool" not in namer.pools:
            namer.pool(child, "avgpool")
        elif child.cls in PARAM_FREE:
            continue
        else:
            raise ConversionError(f"{path}: {child.path}: unexpected {child.package}.{child.cls}"
                                  f" in a ResNet-shaped model")
    if stage == 0 or "fc.weight" not in namer.tensors:
        raise ConversionError(f"{path}: not an fb.resnet.torch-style model (found {stage} "
                              f"stages{'' if 'fc.weight' in namer.tensors else ', no Linear'})")
    return Checkpoint(str(path), "lua", namer.tensors, namer.eps, namer.pools, naming=naming)


def read_checkpoint(path: str | Path, naming: ParamNaming) -> tuple[Checkpoint, LuaModule]:
    root = read_t7(path)
    return resnet_state_dict(root, naming, str(path)), root


# ---------------------------------------------------------------------------------------------
# running a Lua tree in PyTorch


Recorder = Callable[[LuaModule, Any, Any], None]


class LuaNet:
    """Runs a Lua module tree with PyTorch ops; `record(module, input, output)` is called for
    every parametrised module (after `resnet_state_dict` gave it its key)."""

    def __init__(self, root: LuaModule) -> None:
        self.root = root

    def __call__(self, x, record: Recorder | None = None):
        from caffezoo.frameworks import import_torch

        torch = import_torch()
        with torch.no_grad():
            return _run(self.root, x, record)


_RUNNERS: dict[str, Callable[[LuaModule, Any, Recorder | None], Any]] = {}


def runner(*classes: str):
    def register(fn):
        for cls in classes:
            _RUNNERS[cls] = fn
        return fn
    return register


def _run(m: LuaModule, x, record: Recorder | None):
    fn = _RUNNERS.get(m.cls)
    if fn is None:
        raise ConversionError(f"{m.path}: {m.package}.{m.cls} is not supported")
    y = fn(m, x, record)
    if record is not None and m.key is not None:
        record(m, x, y)
    return y


@runner("Sequential")
def _sequential(m, x, record):
    for c in m.children:
        x = _run(c, x, record)
    return x


@runner("ConcatTable")
def _concat_table(m, x, record):
    return [_run(c, x, record) for c in m.children]


@runner("CAddTable")
def _cadd(m, xs, record):
    out = xs[0]
    for t in xs[1:]:
        out = out + t
    return out


@runner("Identity", "Dropout")
def _identity(m, x, record):
    return x  # Dropout is the identity at inference (Torch scales while training)


@runner("ReLU")
def _relu(m, x, record):
    return import_torch().relu(x)


@runner(*CONV)
def _conv(m, x, record):
    torch = import_torch()
    w = torch.from_numpy(conv_weight(m))
    b = m.array("bias")
    return torch.nn.functional.conv2d(
        x, w, None if b is None else torch.from_numpy(b),
        stride=(int(m.field("dH", 1)), int(m.field("dW", 1))),
        padding=(int(m.field("padH", 0)), int(m.field("padW", 0))),
        groups=int(m.field("groups", 1) or 1))


@runner(*BN)
def _bn(m, x, record):
    torch = import_torch()
    t = {k: torch.from_numpy(v) for k, v in bn_tensors(m).items()}
    return torch.nn.functional.batch_norm(x, t["running_mean"], t["running_var"], t["weight"],
                                          t["bias"], False, 0.0, float(m.field("eps", 1e-5)))


def _pool_args(m):
    return dict(kernel_size=(int(m.field("kH")), int(m.field("kW"))),
                stride=(int(m.field("dH", 1)), int(m.field("dW", 1))),
                padding=(int(m.field("padH", 0)), int(m.field("padW", 0))),
                ceil_mode=bool(m.field("ceil_mode", False)))


@runner("SpatialMaxPooling")
def _maxpool(m, x, record):
    return import_torch().nn.functional.max_pool2d(x, **_pool_args(m))


@runner("SpatialAveragePooling")
def _avgpool(m, x, record):
    return import_torch().nn.functional.avg_pool2d(
        x, count_include_pad=bool(m.field("count_include_pad", True)), **_pool_args(m))


@runner("View", "Reshape")
def _view(m, x, record):
    size = m.field("size")
    dims = [int(v) for v in np.asarray(size).reshape(-1)] if size is not None else [-1]
    return x.reshape(x.shape[0], *dims)


@runner("Linear")
def _linear(m, x, record):
    torch = import_torch()
    b = m.array("bias")
    return torch.nn.functional.linear(x, torch.from_numpy(m.array("weight")),
                                      None if b is None else torch.from_numpy(b))


@runner("SoftMax")
def _softmax(m, x, record):
    return import_torch().softmax(x, dim=1)


@runner("LogSoftMax")
def _log_softmax(m, x, record):
    return import_torch().log_softmax(x, dim=1)
