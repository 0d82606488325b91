"""`torchvision:NAME[=CKPT]` and `timm:NAME[=CKPT]` sources: build the named PyTorch model, trace
it into ONNX, and convert it through the ONNX front end (converters/onnx).

- Weights: a checkpoint (`=CKPT`, a state_dict read with `torch.load(weights_only=True)`, loaded
  strictly), or else seeded random weights with randomised BatchNorm statistics
  (pytorch.random_init.randomize_batch_norm, seed 0, statistics from 128 px images, so the
  same model comes out at every input size and in every process), announced in the graph's
  notes and by the CLI as NOT trained.
- Tracing: `torch.onnx.export(dynamo=False)` at the input shape (default 1x3x224x224), opset 17,
  into a temporary file that the ONNX front end then reads like any ONNX file. Why ONNX and not
  torch.fx: the exporter lowers every way a model can call an op (modules, functional calls,
  tensor methods, timm's own layers such as Conv2dSame and BatchNormAct2d) into ONNX's small
  standard op set, with static shapes folded at the trace size, so one front end and one op
  table serve ONNX files and PyTorch models alike; fx would hand us torch-level calls that need
  a second table, and fails on models with data-dependent Python control flow. The exporter
  folds a BatchNorm that follows a convolution into that convolution (fp32 noise, measured in
  docs/conversion.md); other BatchNorms stay standalone.
- The kinds' plug-in modules (converters/registry.py) are traced/torchvision.py and
  traced/timm.py.
- Validation runner: the real PyTorch model gives the final outputs; intermediate values come
  from onnxruntime on the traced graph (the converted net's value names are the traced
  graph's, which a PyTorch hook could not name).
"""

from __future__ import annotations

import difflib
import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

import numpy as np

from caffezoo.contract import IMAGENET, IMAGENET_MEAN, IMAGENET_STD, InputContract
from caffezoo.converters.pytorch.models import (
    OUTPUT_NAME,
    TRACE_OPSET,
    first_line,
)
from caffezoo.errors import ConversionError
from caffezoo.frameworks import import_torch

KINDS = ("torchvision", "timm")
DEFAULT_INPUT_SHAPE = (1, 3, 224, 224)
SEED = 0
CALIB_SIZE = 128


@dataclass
class TorchModel:
    kind: str
    name: str
    checkpoint: str | None
    model: object  # torch.nn.Module in eval mode
    contract_at: Callable[[int], InputContract]  # its library's input contract at a crop size
    notes: list[str] = field(default_factory=list)

    @property
    def input_norm(self) -> InputContract:
        """How images become its input (the normalisation; sizes at its default crop)."""
        return self.contract_at(DEFAULT_INPUT_SHAPE[-1])

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.name}"


def parse_spec(kind: str, spec: str) -> tuple[str, str | None]:
    name, sep, ckpt = spec.partition("=")
    if not name or (sep and not ckpt):
        raise ConversionError(f"{kind} source {spec!r}: expected {kind}:NAME or "
                              f"{kind}:NAME=CHECKPOINT")
    return name, ckpt or None


def _builder(kind: str, name: str):
    """(a function building the model without weights, its input contract at a crop size)."""
    from caffezoo.converters.pytorch.models import build_model
    from caffezoo.frameworks import import_timm, import_torchvision

    if kind == "torchvision":
        tv = import_torchvision()
        known = tv.models.list_models(module=tv.models)
        if name not in known:
            raise _unknown(kind, name, known)
        return (lambda: build_model(f"torchvision:{name}")), _torchvision_contract(tv, name)
    if kind == "timm":
        timm = import_timm()
        known = timm.list_models()
        if name not in known:
            raise _unknown(kind, name, known)
        return (lambda: build_model(f"timm:{name}")), _timm_contract(timm, name)
    raise ConversionError(f"unknown traced source kind {kind!r} (known: {', '.join(KINDS)})")


def _interpolation(name: str) -> str:
    from caffezoo.contract import INTERPOLATIONS

    return name if name in INTERPOLATIONS else "bilinear"


def _labels(num_classes: int | None, offset: int = 0) -> str | None:
    return "imagenet-1k" if num_classes is not None and num_classes - offset == 1000 else None


def _torchvision_contract(tv, name: str) -> Callable[[int], InputContract]:
    """The transforms of the model's default weights (torchvision's own evaluation: resize
    the short side antialiased to resize_size, centre crop, ImageNet mean/std on RGB 0..1),
    whatever weights are loaded: the architecture was trained that way. Another crop keeps
    the ratio."""

    try:
        weights = tv.models.get_model_weights(name).DEFAULT
    except (ValueError, KeyError, AttributeError):
        weights = None
    if weights is None:  # no published weights: the ImageNet convention every one follows
        base = replace(IMAGENET, resize_size=256, resize="pil", origin=f"torchvision:{name} "
                       "lists no weights: torchvision's ImageNet convention")
    else:
        t = weights.transforms()
        categories = len(weights.meta.get("categories") or ()) or None
        crop, resize = int(t.crop_size[0]), int(t.resize_size[0])
        base = InputContract(
            channel_order="RGB", pixel_scale=1.0, mean=tuple(float(v) for v in t.mean),
            std=tuple(float(v) for v in t.std), input_size=(crop, crop), resize_size=resize,
            interpolation=_interpolation(t.interpolation.value), resize="pil",
            labels=_labels(categories), num_classes=categories, output="logits",
            origin=f"torchvision {weights.__class__.__name__}.{weights.name} transforms")
    return lambda size: base if size == base.crop_size else base.at_crop(size)


def _timm_contract(timm, name: str) -> Callable[[int], InputContract]:
    """timm's pretrained_cfg: mean/std, input_size, crop_pct (resize to floor(size /
    crop_pct), timm's rule at every size), interpolation, num_classes, label_offset."""
    cfg = timm.models.get_pretrained_cfg(name)
    mean = getattr(cfg, "mean", None) or IMAGENET_MEAN
    std = getattr(cfg, "std", None) or IMAGENET_STD
    crop_pct = getattr(cfg, "crop_pct", None) or 0.875
    num_classes = getattr(cfg, "num_classes", None) or None
    offset = getattr(cfg, "label_offset", None) or 0
    origin = f"timm pretrained_cfg of {name}"
    if getattr(cfg, "crop_mode", "center") not in (None, "center"):
        origin += f" (its crop_mode {cfg.crop_mode!r} stated as a centre crop)"

    def at(size: int) -> InputContract:
        return InputContract(
            channel_order="RGB", pixel_scale=1.0, mean=tuple(float(v) for v in mean),
            std=tuple(float(v) for v in std), input_size=(size, size),
            resize_size=max(size, math.floor(size / crop_pct)),
            interpolation=_interpolation(getattr(cfg, "interpolation", None) or "bilinear"),
            resize="pil", labels=_labels(num_classes, offset), label_offset=offset,
            num_classes=num_classes, output="logits", origin=origin)
    return at


def _unknown(kind: str, name: str, known: list[str]) -> ConversionError:
    close = difflib.get_close_matches(name, known, n=4)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return ConversionError(f"{kind}: no model named {name!r}{hint}")


@lru_cache(maxsize=2)
def load(kind: str, spec: str) -> TorchModel:
    """The named model with the checkpoint's weights, or seeded random ones (cached: convert
    and validate in one process build it once)."""
    torch = import_torch()
    name, ckpt = parse_spec(kind, spec)
    build, contract_at = _builder(kind, name)
    torch.manual_seed(SEED)
    model = build()
    notes = []
    if ckpt is not None:
        from caffezoo.converters.pytorch.models import load_weights
        from caffezoo.converters.pytorch.reader import load_pytorch

        load_weights(model, load_pytorch(ckpt).tensors, ckpt, f"{kind}:{name}")
        notes.append(f"weights from {ckpt}")
    else:
        from caffezoo.converters.pytorch.random_init import randomize_batch_norm

        try:
            randomize_batch_norm(model, SEED, CALIB_SIZE)
        except Exception as err:  # the model's own checks (timm asserts its input size)
            raise ConversionError(f"{kind}:{name}: does not run on {CALIB_SIZE}x{CALIB_SIZE} "
                                  f"images to calibrate its random BatchNorm statistics "
                                  f"({first_line(err)})") from None
        notes.append(f"RANDOM weights (seed {SEED}, randomised BatchNorm statistics): no "
                     f"checkpoint given, NOT a trained model")
    model.eval()
    return TorchModel(kind, name, ckpt, model, contract_at, notes)


def trace(tm: TorchModel, input_shape: tuple[int, ...], path: Path) -> None:
    """Exports the model at `input_shape` to the ONNX file `path`."""
    from caffezoo.converters.pytorch.models import trace_onnx

    trace_onnx(tm.model, input_shape, path, tm.label)


def _shape(input_shape) -> tuple[int, ...]:
    shape = tuple(int(s) for s in (input_shape or DEFAULT_INPUT_SHAPE))
    if len(shape) != 4 or shape[1] != 3 or min(shape) < 1:
        raise ConversionError(f"--input-shape {','.join(map(str, shape))}: expected N,3,H,W")
    return shape


def check_trace_size(tm: TorchModel, input_shape: tuple[int, ...]) -> None:
    """Refuses, before tracing, a trace that would not fit: a traced forward keeps every value
    it computes (and the converted Caffe net allocates a blob for each), so the sum of the
    leaf modules' outputs on one CALIB_SIZE image, scaled by batch and area, estimates the
    memory it needs; the largest output, scaled alike, must stay within Caffe's 2^31 values per
    blob. A model that cannot run at CALIB_SIZE is not estimated (its trace says why)."""
    from caffezoo import memory

    torch = import_torch()
    n, c, h, w = input_shape
    ph, pw = min(h, CALIB_SIZE), min(w, CALIB_SIZE)
    scale = n * h * w / (ph * pw)
    if scale <= 1:
        return
    counts: list[int] = []

    def record(_module, _inputs, output) -> None:
        for t in output if isinstance(output, tuple | list) else (output,):
            if torch.is_tensor(t):
                counts.append(t.numel())

    leaves = [m for m in tm.model.modules() if not any(True for _ in m.children())]
    hooks = [m.register_forward_hook(record) for m in leaves]
    try:
        with torch.no_grad():
            tm.model(torch.zeros(1, c, ph, pw))
    except Exception:
        return
    finally:
        for hook in hooks:
            hook.remove()
    shape = "x".join(map(str, input_shape))
    largest = max(counts, default=0) * scale
    if largest >= 2**31:
        raise ConversionError(f"{tm.label} at {shape}: its largest value would hold about "
                              f"{largest:.2g} numbers; Caffe's limit is 2^31 - 1 per blob "
                              "(give a smaller --input-shape)")
    memory.check(int(4 * sum(counts) * scale),
                 f"tracing {tm.label} at {shape} (every value of its forward pass, estimated "
                 f"from one at 1x{c}x{ph}x{pw})")


@lru_cache(maxsize=2)
def _prepared(kind: str, spec: str, input_shape: tuple[int, ...]):
    from caffezoo.converters.onnx.reader import prepare

    tm = load(kind, spec)
    check_trace_size(tm, input_shape)
    with tempfile.TemporaryDirectory(prefix="caffezoo-trace-") as tmp:
        path = Path(tmp) / f"{tm.name}.onnx"
        trace(tm, input_shape, path)
        prep = prepare(path, input_shape)
    prep.path = tm.label
    return tm, prep


def read_graph(kind: str, spec: str, input_shape: tuple[int, ...] | None = None):
    """The canonical graph of the traced model."""
    from caffezoo.converters.onnx.ops import translate

    torch = import_torch()
    tm, prep = _prepared(kind, spec, _shape(input_shape))
    graph = translate(prep, tm.name)
    notes = [f"traced with torch.onnx.export (opset {TRACE_OPSET}) at "
             f"{'x'.join(map(str, prep.input_shape))}"]
    bns = sum(isinstance(m, torch.nn.BatchNorm2d) for m in tm.model.modules())
    kept = sum(n.op == "batch_norm" for n in graph.nodes)
    if bns > kept:
        notes.append(f"{bns - kept} of {bns} BatchNorms folded into the convolution before them "
                     f"by the exporter (fp32 rounding); {kept} standalone")
    graph.notes[:0] = tm.notes + notes
    graph.contract = tm.contract_at(prep.input_shape[-1])
    return graph


@dataclass
class TracedRunner:
    """Final outputs from the PyTorch model, intermediate values from onnxruntime on the
    traced graph."""

    tm: TorchModel
    onnx_runner: object  # converters.onnx.runner.OnnxRunner of the traced graph
    input_shape: tuple[int, ...]

    @property
    def input_norm(self) -> InputContract:
        return self.tm.contract_at(self.input_shape[-1])

    def run(self, x: np.ndarray, record: set[str] | None = None) -> dict[str, np.ndarray]:
        torch = import_torch()
        x = np.ascontiguousarray(x, dtype=np.float32)
        with torch.no_grad():
            y = self.tm.model(torch.from_numpy(x))
        out = {OUTPUT_NAME: y.numpy().copy()}
        extra = set(record or ()) - {OUTPUT_NAME}
        if extra:
            found = self.onnx_runner.run(x, extra)
            out.update((k, v) for k, v in found.items() if k != OUTPUT_NAME)
        return out


def open_graph_runner(kind: str, spec: str, input_shape: tuple[int, ...] | None = None
                      ) -> TracedRunner:
    from caffezoo.converters.onnx.runner import OnnxRunner

    shape = _shape(input_shape)
    tm, prep = _prepared(kind, spec, shape)
    return TracedRunner(tm, OnnxRunner(prep.model, prep.input_name, shape, False,
                                       tm.contract_at(shape[-1]),
                                       tm.label), shape)
