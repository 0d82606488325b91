"""The PyTorch model definitions that run (and randomly initialise) each checkpoint layout, and
the input normalisation each expects; `build_model` and `load_weights`, the one place a
torchvision/timm model is made and given a state_dict (the `torch` card kind, the traced
`torchvision:`/`timm:` kinds and random checkpoints all use them)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from caffezoo.contract import IMAGENET, InputContract
from caffezoo.errors import ConversionError

TRACE_OPSET = 17
INPUT_NAME, OUTPUT_NAME = "data", "logits"

# torchvision's and timm's normalisations, stated (as they are) on RGB pixels 0..1: IMAGENET
# (caffezoo.contract) and Inception's
INCEPTION = InputContract(channel_order="RGB", pixel_scale=1.0, mean=(0.5, 0.5, 0.5),
                          std=(0.5, 0.5, 0.5))


@dataclass(frozen=True)
class SourceArch:
    """A PyTorch model definition that runs a checkpoint of a layout, for validation and for
    seeded random checkpoints."""

    factory: str  # "torchvision:<fn>" or "timm:<name>"
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    # what the model's forward() expects, and what its first convolution sees (differs when
    # the model transforms its input itself: torchvision Inception3's transform_input)
    input_norm: InputContract = IMAGENET
    effective_norm: InputContract = IMAGENET
    calib_size: int = 128  # input size for the statistics of random checkpoints
    # a size the model runs at, to trace it for a card (shapes are then inferred at the card's)
    trace_size: int = 64

    def build(self, **kwargs):
        return build_model(self.factory, **{**self.kwargs, **kwargs})


def build_model(factory: str, **kwargs):
    """A torchvision or timm model ("torchvision:<name>" / "timm:<name>") with its library's
    initial weights (none downloaded)."""
    from caffezoo.frameworks import import_timm, import_torchvision

    lib, _, name = factory.partition(":")
    if lib == "torchvision":
        return import_torchvision().models.get_model(name, weights=None, **kwargs)
    return import_timm().create_model(name, pretrained=False, **kwargs)


def load_weights(model, tensors: Mapping[str, np.ndarray], path: str, label: str,
                 assign: bool = False) -> None:
    """Loads a state_dict into `model` strictly (`num_batches_tracked` counters excepted: no
    inference needs them); a mismatch is one ConversionError line naming the tensors. `assign`: the
    model's tensors become the arrays themselves (no copy; a model built on the meta device)."""
    from caffezoo.frameworks import import_torch

    torch = import_torch()
    want = model.state_dict()
    counter = ".num_batches_tracked"
    if not want.keys() & tensors.keys():
        theirs, ours = (", ".join(list(names)[:3]) for names in (tensors, want))
        raise ConversionError(f"{path}: its tensor names ({theirs}, ...) are none of "
                              f"{label}'s ({ours}, ...); is --model right?")
    missing = [k for k in want if k not in tensors and not k.endswith(counter)]
    unexpected = [k for k in tensors if k not in want and not k.endswith(counter)]
    shapes = [f"tensor {k!r} has shape {list(v.shape)}, {label} needs {list(want[k].shape)}"
              for k, v in tensors.items() if k in want and tuple(v.shape) != tuple(want[k].shape)]
    problems = [f"missing tensor {k!r}" for k in missing] + shapes
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected tensor(s): {', '.join(unexpected)}")
    if problems:
        raise ConversionError(f"{path}: does not load into {label}: {len(problems)} "
                              f"problem(s): " + "; ".join(problems))
    state = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in tensors.items()}
    for k in want.keys() - state.keys():  # the counters
        state[k] = torch.zeros_like(want[k], device="cpu")
    model.load_state_dict(state, strict=False, assign=assign)


_TV_INCEPTION = SourceArch("torchvision:inception_v3",
                           {"aux_logits": True, "transform_input": True, "init_weights": True},
                           input_norm=IMAGENET, effective_norm=INCEPTION, calib_size=299,
                           trace_size=107)
# (zoo card, layout) -> the source architecture
SOURCE_ARCHS: dict[tuple[str, str], SourceArch] = {
    ("resnext50_32x4d", "torchvision"): SourceArch("torchvision:resnext50_32x4d"),
    ("resnext50_32x4d", "timm"): SourceArch("timm:resnext50_32x4d"),
    ("resnext101_32x4d", "timm"): SourceArch("timm:resnext101_32x4d"),
    ("resnext101_64x4d", "torchvision"): SourceArch("torchvision:resnext101_64x4d"),
    ("resnext101_64x4d", "timm"): SourceArch("timm:resnext101_64x4d"),
    ("wrn50_2", "torchvision"): SourceArch("torchvision:wide_resnet50_2"),
    ("wrn50_2", "timm"): SourceArch("timm:wide_resnet50_2"),
    ("inception_v3_tv", "torchvision"): _TV_INCEPTION,
    ("inception_v4_timm", "timm"): SourceArch("timm:inception_v4", input_norm=INCEPTION,
                                              effective_norm=INCEPTION, calib_size=139,
                                              trace_size=107),
    ("inception_resnet_v2_timm", "timm"): SourceArch(
        "timm:inception_resnet_v2", input_norm=INCEPTION, effective_norm=INCEPTION,
        calib_size=139, trace_size=107),
}


def source_arch(card_name: str, layout: str) -> SourceArch:
    arch = SOURCE_ARCHS.get((card_name, layout))
    if arch is None:
        known = ", ".join(f"{c} ({lay})" for c, lay in SOURCE_ARCHS)
        raise ConversionError(f"no {layout} model definition for {card_name!r} (known: {known})")
    return arch


def default_layout(card_name: str) -> str:
    """The first layout with a model definition for the card (for random checkpoints)."""
    for card, layout in SOURCE_ARCHS:
        if card == card_name:
            return layout
    raise ConversionError(f"no PyTorch model definition converts into {card_name!r}")


def trace_onnx(model, input_shape: tuple[int, ...], path, label: str,
               keep_batch_norm: bool = False) -> None:
    """Exports `model` (eval mode) at `input_shape` to the ONNX file `path` (or a binary
    buffer) with torch's TorchScript exporter (`torch.onnx.export(dynamo=False)`), which folds
    a BatchNorm that follows a convolution into it (fp32 rounding).

    `keep_batch_norm` (a card's BatchNorm + Scale layers need the BatchNorms) keeps every
    BatchNorm a BatchNormalization node (TrainingMode.PRESERVE on an eval model: no folding
    pass runs), leaves the parameters out of the file (graph inputs named as in the
    state_dict: the caller has them) and the input's height and width open, and skips the
    exporter's own shape inference (0.6 of the 0.9 s a ResNeXt-101 64x4d trace takes; the
    ONNX reader infers every shape at the size it is given)."""
    import contextlib
    import io
    import warnings

    from caffezoo.frameworks import import_torch

    torch = import_torch()
    x = torch.zeros(tuple(input_shape))
    target = path if hasattr(path, "write") else str(path)
    common = dict(opset_version=TRACE_OPSET, input_names=[INPUT_NAME],
                  output_names=[OUTPUT_NAME], do_constant_folding=True)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            if keep_batch_norm:
                from torch.onnx._internal.torchscript_exporter.utils import _export

                _export(model, (x,), target, training=torch.onnx.TrainingMode.PRESERVE,
                        export_params=False, onnx_shape_inference=False,
                        dynamic_axes={INPUT_NAME: {2: "height", 3: "width"}}, **common)
            else:
                torch.onnx.export(model, (x,), target, dynamo=False, **common)
    except Exception as err:
        raise ConversionError(f"{label}: torch.onnx.export failed ({first_line(err)})"
                              ) from None


def first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:300] if text else type(err).__name__
