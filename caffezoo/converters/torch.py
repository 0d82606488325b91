"""PyTorch (and, through lua_torch, Lua Torch) checkpoints -> zoo .caffemodel files.

A checkpoint is read into named numpy arrays (`torch.load(..., weights_only=True)`, so a file can
never run code; a `state_dict`/`model` entry and DataParallel's `module.` prefix are unwrapped; a
`.t7` file goes through lua_torch). Its *layout* (the naming scheme of one source family) is
recognised from the key names, or named with `layout=`. A layout's plan maps each source module
onto the zoo net's layers, by name, with one handler per op (converters.common).

Source families and the zoo cards they fill (docs/conversion.md):

- torchvision / timm ResNets (conv1, layer1.0.conv1, ..., fc), and Lua fb.resnet.torch trees
  named like them: resnext50_32x4d, resnext101_32x4d, resnext101_64x4d, wrn50_2;
- torchvision Inception3 (Conv2d_1a_3x3, Mixed_5b, ..., fc): inception_v3_tv;
- timm InceptionV4 (features.N, last_linear): inception_v4_timm;
- timm InceptionResnetV2 (conv2d_1a, repeat.N, block8, classif): inception_resnet_v2_timm.

The `_tv`/`_timm` inception cards are variants of the zoo's nets (generators/variants_torch.py):
the sources pool differently from the zoo's originals (MXNet, TF-slim), so converting them into
the original nets would not be exact, and the plans' structural checks refuse it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from caffezoo.converters.common import (
    Assign,
    Checkpoint,
    Conversion,
    ConvertOptions,
    Normalization,
    Plan,
    PoolSpec,
    apply_plan,
    input_affine,
)
from caffezoo.errors import ConversionError, InputFileError

IMAGENET = Normalization.from_unit((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
INCEPTION = Normalization.from_unit((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
TORCH_BN_EPS = 1e-5  # torch.nn.BatchNorm2d's default (torchvision, timm ResNets)
INCEPTION_BN_EPS = 1e-3  # torchvision Inception3 and timm's TF ports set 0.001
STATE_DICT_KEYS = ("state_dict", "model", "model_state_dict")


# ---------------------------------------------------------------------------------------------
# reading checkpoints


def _torch():
    from caffezoo.frameworks import import_torch

    return import_torch()


def load_pytorch(path: str | Path) -> Checkpoint:
    """A PyTorch state_dict file as float32 arrays (integer buffers kept as they are)."""
    torch = _torch()
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: no such file")
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:  # UnpicklingError for non-weights content, RuntimeError for junk
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputFileError(f"{path}: not a weights-only PyTorch checkpoint ({first[:200]})"
                             ) from None
    seen = 0
    while isinstance(obj, Mapping) and seen < 3:
        inner = next((obj[k] for k in STATE_DICT_KEYS
                      if k in obj and isinstance(obj[k], Mapping)), None)
        if inner is None:
            break
        obj, seen = inner, seen + 1
    if not isinstance(obj, Mapping):
        raise InputFileError(f"{path}: holds a {type(obj).__name__}, not a state_dict")
    tensors: dict[str, np.ndarray] = {}
    for key, value in obj.items():
        if isinstance(value, torch.Tensor):
            arr = value.detach().cpu()
            arr = arr.float() if arr.is_floating_point() else arr
            tensors[str(key)] = arr.numpy()
    if not tensors:
        raise InputFileError(f"{path}: no tensors in the checkpoint")
    if all(k.startswith("module.") for k in tensors):  # saved from DataParallel
        tensors = {k[len("module."):]: v for k, v in tensors.items()}
    return Checkpoint(str(path), "pytorch", tensors)


def is_lua(path: str | Path) -> bool:
    return str(path).lower().endswith(".t7")


def load_checkpoint(path: str | Path) -> tuple[Checkpoint, Any]:
    """(checkpoint, Lua module tree or None) for a .pth/.pt/.bin or a .t7 file."""
    if is_lua(path):
        from caffezoo.converters import lua_torch

        return lua_torch.read_checkpoint(path)
    return load_pytorch(path), None


# ---------------------------------------------------------------------------------------------
# plans: one per source family, all by name onto the zoo's layer names


def _cbs(src: str, layer: str, eps: float, fused: bool = False) -> list[Assign]:
    """A conv + batch norm pair: `<src>.conv`/`<src>.bn` -> layer, layer_bn/layer_scale."""
    return [Assign("conv", f"{src}.conv", (layer,)),
            Assign("bn", f"{src}.bn", (f"{layer}_bn", f"{layer}_scale"), eps=eps,
                   fused_act=fused)]


def _classifier(net) -> str:
    ips = [layer.name for layer in net.layer if layer.type == "InnerProduct"]
    if len(ips) != 1:
        raise ConversionError(f"{net.name}: expected one InnerProduct layer, found {len(ips)}")
    return ips[0]


def _pool_layer(net, name: str) -> str | None:
    return name if any(layer.name == name for layer in net.layer) else None


def resnet_plan(net, layout: str) -> Plan:
    """torchvision/timm ResNet keys -> the ResNeXt/WRN zoo layout (generators/resnext.py).

    Blocks are numbered over the whole net in the zoo (`resx7`); the stage and the index in the
    stage come from the target net itself: a block with `_match_conv` starts a stage."""
    names = {layer.name for layer in net.layer}
    prefix = "resx" if "resx1_conv1" in names else "res"
    assigns = [Assign("conv", "conv1", ("conv1",)),
               Assign("bn", "bn1", ("conv1_bn", "conv1_scale"), eps=TORCH_BN_EPS),
               Assign("pool", "maxpool", ("pool1",), pool=PoolSpec("max", 3, 2, 1))]
    stage = index = 0
    k = 1
    while f"{prefix}{k}_conv1" in names:
        if f"{prefix}{k}_match_conv" in names or stage == 0:
            stage, index = stage + 1, 0
        else:
            index += 1
        src, dst = f"layer{stage}.{index}", f"{prefix}{k}"
        for j in (1, 2, 3):
            assigns += [Assign("conv", f"{src}.conv{j}", (f"{dst}_conv{j}",)),
                        Assign("bn", f"{src}.bn{j}", (f"{dst}_conv{j}_bn", f"{dst}_conv{j}_scale"),
                               eps=TORCH_BN_EPS)]
        if f"{dst}_match_conv" in names:
            assigns += [Assign("conv", f"{src}.downsample.0", (f"{dst}_match_conv",)),
                        Assign("bn", f"{src}.downsample.1",
                               (f"{dst}_match_conv_bn", f"{dst}_match_conv_scale"),
                               eps=TORCH_BN_EPS)]
        k += 1
    if _pool_layer(net, "pool_ave"):
        assigns.append(Assign("pool", "avgpool", ("pool_ave",),
                              pool=PoolSpec("ave", global_pool=True)))
    assigns.append(Assign("linear", "fc", (_classifier(net),)))
    return Plan(layout, assigns)


# torchvision Inception3 module -> zoo layer (generators/inception_v3.py names)
_TV_V3_STEM = {"Conv2d_1a_3x3": "conv1_3x3_s2", "Conv2d_2a_3x3": "conv2_3x3_s1",
               "Conv2d_2b_3x3": "conv3_3x3_s1", "Conv2d_3b_1x1": "conv4_3x3_reduce",
               "Conv2d_4a_3x3": "conv4_3x3"}
_TV_V3_A = {"branch1x1": "1x1", "branch5x5_1": "5x5_reduce", "branch5x5_2": "5x5",
            "branch3x3dbl_1": "3x3_reduce", "branch3x3dbl_2": "3x3_1",
            "branch3x3dbl_3": "3x3_2", "branch_pool": "pool_proj"}
_TV_V3_RED_A = {"branch3x3": "3x3", "branch3x3dbl_1": "3x3_2_reduce",
                "branch3x3dbl_2": "3x3_2", "branch3x3dbl_3": "3x3_3"}
_TV_V3_B = {"branch1x1": "1x1_2", "branch7x7_1": "1x7_reduce", "branch7x7_2": "1x7",
            "branch7x7_3": "7x1", "branch7x7dbl_1": "7x1_reduce", "branch7x7dbl_2": "7x1_2",
            "branch7x7dbl_3": "1x7_2", "branch7x7dbl_4": "7x1_3", "branch7x7dbl_5": "1x7_3",
            "branch_pool": "1x1"}
_TV_V3_RED_B = {"branch3x3_1": "3x3_reduce", "branch3x3_2": "3x3",
                "branch7x7x3_1": "1x7_reduce", "branch7x7x3_2": "1x7",
                "branch7x7x3_3": "7x1", "branch7x7x3_4": "3x3_2"}
_TV_V3_C = {"branch1x1": "1x1_2", "branch3x3_1": "1x3_reduce", "branch3x3_2a": "1x3",
            "branch3x3_2b": "3x1", "branch3x3dbl_1": "3x3_reduce", "branch3x3dbl_2": "3x3",
            "branch3x3dbl_3a": "1x3_2", "branch3x3dbl_3b": "3x1_2", "branch_pool": "1x1"}


def inception_v3_plan(net, layout: str) -> Plan:
    """torchvision Inception3 -> the zoo's Inception-v3 names. Its blocks pool with
    F.max_pool2d / F.avg_pool2d (padding counted), all rounding down; both 8x8 blocks average
    in the pool branch (the zoo's MXNet original takes the max in the second)."""
    eps = INCEPTION_BN_EPS
    a: list[Assign] = []
    for src, dst in _TV_V3_STEM.items():
        a += _cbs(src, dst, eps)
    a += [Assign("pool", "maxpool1", ("pool1_3x3_s2",), pool=PoolSpec("max", 3, 2)),
          Assign("pool", "maxpool2", ("pool2_3x3_s2",), pool=PoolSpec("max", 3, 2))]
    blocks = [("Mixed_5b", "inception_a1", _TV_V3_A, "pool", "ave"),
              ("Mixed_5c", "inception_a2", _TV_V3_A, "pool", "ave"),
              ("Mixed_5d", "inception_a3", _TV_V3_A, "pool", "ave"),
              ("Mixed_6a", "reduction_a", _TV_V3_RED_A, "pool", "max"),
              *[(f"Mixed_6{c}", f"inception_b{i}", _TV_V3_B, "pool_ave", "ave")
                for i, c in enumerate("bcde", start=1)],
              ("Mixed_7a", "reduction_b", _TV_V3_RED_B, "pool", "max"),
              ("Mixed_7b", "inception_c1", _TV_V3_C, "pool", "ave"),
              ("Mixed_7c", "inception_c2", _TV_V3_C, "pool", "ave")]
    for src, dst, table, pool, method in blocks:
        for s, d in table.items():
            a += _cbs(f"{src}.{s}", f"{dst}_{d}", eps)
        spec = PoolSpec(method, 3, 1, 1) if method == "ave" else PoolSpec("max", 3, 2)
        a.append(Assign("pool", "", (f"{dst}_{pool}",), pool=spec))
    a.append(Assign("pool", "avgpool", ("pool_8x8_s1",), pool=PoolSpec("ave", global_pool=True)))
    a.append(Assign("linear", "fc", (_classifier(net),)))
    return Plan(layout, a, ignored={"AuxLogits.": "the auxiliary classifier (training only)"},
                hint="convert torchvision's Inception-v3 into --model inception_v3_tv")


_TIMM_V4_A = {"branch0": "1x1_2", "branch1.0": "3x3_reduce", "branch1.1": "3x3",
              "branch2.0": "3x3_2_reduce", "branch2.1": "3x3_2", "branch2.2": "3x3_3",
              "branch3.1": "1x1"}
_TIMM_V4_B = {"branch0": "1x1_2", "branch1.0": "1x7_reduce", "branch1.1": "1x7",
              "branch1.2": "7x1", "branch2.0": "7x1_2_reduce", "branch2.1": "7x1_2",
              "branch2.2": "1x7_2", "branch2.3": "7x1_3", "branch2.4": "1x7_3",
              "branch3.1": "1x1"}
_TIMM_V4_C = {"branch0": "1x1_2", "branch1_0": "1x1_3", "branch1_1a": "1x3",
              "branch1_1b": "3x1", "branch2_0": "1x1_4", "branch2_1": "3x1_2",
              "branch2_2": "1x3_2", "branch2_3a": "1x3_3", "branch2_3b": "3x1_3",
              "branch3.1": "1x1"}


def inception_v4_plan(net, layout: str) -> Plan:
    """timm InceptionV4 (features.0 ... features.21, last_linear) -> the zoo's Inception-v4
    names. timm averages without the padding (count_include_pad=False) and rounds down."""
    eps = INCEPTION_BN_EPS
    a: list[Assign] = []

    def cbs(src: str, dst: str) -> None:
        a.extend(_cbs(src, dst, eps, fused=True))

    for i, dst in enumerate(("conv1_3x3_s2", "conv2_3x3_s1", "conv3_3x3_s1")):
        cbs(f"features.{i}", dst)
    a.append(Assign("pool", "features.3.maxpool", ("inception_stem1_pool",),
                    pool=PoolSpec("max", 3, 2)))
    cbs("features.3.conv", "inception_stem1_3x3_s2")
    for s, d in {"branch0.0": "3x3_reduce", "branch0.1": "3x3", "branch1.0": "1x7_reduce",
                 "branch1.1": "1x7", "branch1.2": "7x1", "branch1.3": "3x3_2"}.items():
        cbs(f"features.4.{s}", f"inception_stem2_{d}")
    cbs("features.5.conv", "inception_stem3_3x3_s2")
    a.append(Assign("pool", "features.5.maxpool", ("inception_stem3_pool",),
                    pool=PoolSpec("max", 3, 2)))
    ave = PoolSpec("ave", 3, 1, 1, exclude_pad=True)
    for n, (first, table, letter) in enumerate([(6, _TIMM_V4_A, "a"), (11, _TIMM_V4_B, "b"),
                                                (19, _TIMM_V4_C, "c")]):
        count = (4, 7, 3)[n]
        for i in range(count):
            src, dst = f"features.{first + i}", f"inception_{letter}{i + 1}"
            for s, d in table.items():
                cbs(f"{src}.{s}", f"{dst}_{d}")
            a.append(Assign("pool", f"{src}.branch3.0", (f"{dst}_pool_ave",), pool=ave))
    for s, d in {"branch0": "3x3", "branch1.0": "3x3_2_reduce", "branch1.1": "3x3_2",
                 "branch1.2": "3x3_3"}.items():
        cbs(f"features.10.{s}", f"reduction_a_{d}")
    a.append(Assign("pool", "features.10.branch2", ("reduction_a_pool",),
                    pool=PoolSpec("max", 3, 2)))
    for s, d in {"branch0.0": "3x3_reduce", "branch0.1": "3x3", "branch1.0": "1x7_reduce",
                 "branch1.1": "1x7", "branch1.2": "7x1", "branch1.3": "3x3_2"}.items():
        cbs(f"features.18.{s}", f"reduction_b_{d}")
    a.append(Assign("pool", "features.18.branch2", ("reduction_b_pool",),
                    pool=PoolSpec("max", 3, 2)))
    a.append(Assign("pool", "global_pool", ("pool_8x8_s1",),
                    pool=PoolSpec("ave", global_pool=True)))
    a.append(Assign("linear", "last_linear", (_classifier(net),)))
    return Plan(layout, a, hint="convert timm's Inception-v4 into --model inception_v4_timm")


def inception_resnet_v2_plan(net, layout: str) -> Plan:
    """timm InceptionResnetV2 -> the zoo's Inception-ResNet-v2 names (residual scales 0.17,
    0.1, 0.2; the last Block8 unscaled, without ReLU)."""
    eps = INCEPTION_BN_EPS
    a: list[Assign] = []
    p = "inception_resnet_v2"

    def cbs(src: str, dst: str) -> None:
        a.extend(_cbs(src, dst, eps, fused=True))

    for s, d in {"conv2d_1a": "conv1_3x3_s2", "conv2d_2a": "conv2_3x3_s1",
                 "conv2d_2b": "conv3_3x3_s1", "conv2d_3b": "conv4_3x3_reduce",
                 "conv2d_4a": "conv4_3x3"}.items():
        cbs(s, d)
    a += [Assign("pool", "maxpool_3a", ("pool1_3x3_s2",), pool=PoolSpec("max", 3, 2)),
          Assign("pool", "maxpool_5a", ("pool2_3x3_s2",), pool=PoolSpec("max", 3, 2))]
    for s, d in {"branch0": "conv5_1x1", "branch1.0": "conv5_5x5_reduce",
                 "branch1.1": "conv5_5x5", "branch2.0": "conv5_3x3_reduce",
                 "branch2.1": "conv5_3x3", "branch2.2": "conv5_3x3_2",
                 "branch3.1": "conv5_1x1_ave"}.items():
        cbs(f"mixed_5b.{s}", d)
    a.append(Assign("pool", "mixed_5b.branch3.0", ("ave_pool",),
                    pool=PoolSpec("ave", 3, 1, 1, exclude_pad=True)))
    stages = [("repeat", "a", 0.17, {"branch0": "1x1", "branch1.0": "3x3_reduce",
                                     "branch1.1": "3x3", "branch2.0": "3x3_2_reduce",
                                     "branch2.1": "3x3_2", "branch2.2": "3x3_3"}),
              ("repeat_1", "b", 0.1, {"branch0": "1x1", "branch1.0": "1x7_reduce",
                                      "branch1.1": "1x7", "branch1.2": "7x1"}),
              ("repeat_2", "c", 0.2, {"branch0": "1x1", "branch1.0": "1x3_reduce",
                                      "branch1.1": "1x3", "branch1.2": "3x1"})]
    names = {layer.name for layer in net.layer}
    for src_stage, letter, scale, table in stages:
        i = 1
        while f"{p}_{letter}{i}_up" in names:
            src = f"{src_stage}.{i - 1}"
            last = letter == "c" and f"{p}_c{i + 1}_up" not in names
            if last:
                src = "block8"  # timm keeps the final Block8 outside repeat_2
            dst = f"{p}_{letter}{i}"
            for s, d in table.items():
                cbs(f"{src}.{s}", f"{dst}_{d}")
            a.append(Assign("conv", f"{src}.conv2d", (f"{dst}_up",)))
            a.append(Assign("eltwise", src, (f"{dst}_residual_eltwise",),
                            coeff=(1.0, 1.0 if last else scale)))
            i += 1
    for s, d in {"branch0": "3x3", "branch1.0": "3x3_2_reduce", "branch1.1": "3x3_2",
                 "branch1.2": "3x3_3"}.items():
        cbs(f"mixed_6a.{s}", f"reduction_a_{d}")
    a.append(Assign("pool", "mixed_6a.branch2", ("reduction_a_pool",), pool=PoolSpec("max", 3, 2)))
    for s, d in {"branch0.0": "3x3_reduce", "branch0.1": "3x3", "branch1.0": "3x3_2_reduce",
                 "branch1.1": "3x3_2", "branch2.0": "3x3_3_reduce", "branch2.1": "3x3_3",
                 "branch2.2": "3x3_4"}.items():
        cbs(f"mixed_7a.{s}", f"reduction_b_{d}")
    a.append(Assign("pool", "mixed_7a.branch3", ("reduction_b_pool",), pool=PoolSpec("max", 3, 2)))
    cbs("conv2d_7b", "conv6_1x1")
    a.append(Assign("pool", "global_pool", ("pool_8x8_s1",),
                    pool=PoolSpec("ave", global_pool=True)))
    a.append(Assign("linear", "classif", (_classifier(net),)))
    return Plan(layout, a,
                hint="convert timm's Inception-ResNet-v2 into --model inception_resnet_v2_timm")


# ---------------------------------------------------------------------------------------------
# layouts and source architectures


@dataclass(frozen=True)
class Layout:
    name: str
    family: str
    plan: Callable[[Any, str], Plan]
    description: str


LAYOUTS: tuple[Layout, ...] = (
    Layout("torchvision", "resnet", resnet_plan, "torchvision ResNet/ResNeXt/Wide ResNet keys"),
    Layout("timm", "resnet", resnet_plan, "timm ResNet keys (the same names as torchvision)"),
    Layout("lua", "resnet", resnet_plan, "fb.resnet.torch .t7 tree, named like torchvision"),
    Layout("torchvision", "inception_v3", inception_v3_plan, "torchvision Inception3 keys"),
    Layout("timm", "inception_v4", inception_v4_plan, "timm InceptionV4 keys"),
    Layout("timm", "inception_resnet_v2", inception_resnet_v2_plan,
           "timm InceptionResnetV2 keys"),
)
LAYOUT_NAMES = ("torchvision", "timm", "lua")


def family_of(card) -> str:
    """The source family whose plans can fill a zoo card's net."""
    if card.family in ("resnext", "wrn"):
        return "resnet"
    for family in ("inception_resnet_v2", "inception_v4", "inception_v3"):
        if card.name.startswith(family):
            return family
    raise ConversionError(f"model {card.name!r}: no PyTorch/Lua source family converts into "
                          f"it (families: ResNeXt, WRN, Inception-v3/v4/ResNet-v2)")


@dataclass(frozen=True)
class SourceArch:
    """A PyTorch model definition that runs a checkpoint of a layout, for validation and for
    seeded random checkpoints."""

    factory: str  # "torchvision:<fn>" or "timm:<name>"
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    # what the model's forward() expects, and what its first convolution sees (differs when
    # the model transforms its input itself: torchvision Inception3's transform_input)
    input_norm: Normalization = IMAGENET
    effective_norm: Normalization = IMAGENET
    calib_size: int = 128  # input size for the statistics of random checkpoints

    def build(self):
        from caffezoo.frameworks import import_timm, import_torchvision

        lib, _, name = self.factory.partition(":")
        if lib == "torchvision":
            return getattr(import_torchvision().models, name)(weights=None, **self.kwargs)
        return import_timm().create_model(name, pretrained=False, **self.kwargs)


_TV_INCEPTION = SourceArch("torchvision:inception_v3",
                           {"aux_logits": True, "transform_input": True, "init_weights": True},
                           input_norm=IMAGENET, effective_norm=INCEPTION, calib_size=299)
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
                                              effective_norm=INCEPTION, calib_size=139),
    ("inception_resnet_v2_timm", "timm"): SourceArch(
        "timm:inception_resnet_v2", input_norm=INCEPTION, effective_norm=INCEPTION,
        calib_size=139),
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


def source_normalization(card_name: str, layout: str) -> tuple[Normalization, Normalization]:
    """(input normalisation, effective normalisation) of a source; Lua models were trained
    with fb.resnet.torch's ImageNet mean/std on RGB."""
    if layout == "lua":
        return IMAGENET, IMAGENET
    arch = source_arch(card_name, layout)
    return arch.input_norm, arch.effective_norm


def detect_layout(net, card, ckpt: Checkpoint, layout: str | None = None) -> Plan:
    """The plan of the named layout, or of the layout whose names the checkpoint matches best
    (ties go to one with a model definition for the card, then to the first listed)."""
    family = family_of(card)
    if ckpt.format == "lua":
        if layout not in (None, "lua"):
            raise ConversionError(f"{ckpt.path}: a .t7 file has the lua layout, not {layout!r}")
        layout = "lua"
    candidates = [lay for lay in LAYOUTS if lay.family == family
                  and (lay.name == layout if layout else lay.name != "lua")]
    if not candidates:
        names = sorted({lay.name for lay in LAYOUTS if lay.family == family})
        raise ConversionError(f"no {layout!r} layout for {card.name} (layouts: "
                              f"{', '.join(names)})")
    best, best_score = None, (-1.0, False)
    for lay in candidates:
        plan = lay.plan(net, lay.name)
        plan.assigns = [replace(a, pool=ckpt.pools[a.source]) if a.op == "pool"
                        and a.source in ckpt.pools else a for a in plan.assigns]
        wanted = _wanted_keys(plan)
        # equal names (torchvision and timm ResNets): prefer a layout that has a model
        # definition for this card, so the checkpoint can also be validated
        score = (len(wanted & set(ckpt.tensors)) / max(1, len(wanted)),
                 lay.name == "lua" or (card.name, lay.name) in SOURCE_ARCHS)
        if score > best_score:
            best, best_score = plan, score
    if best_score[0] == 0.0:
        sample = ", ".join(list(ckpt.tensors)[:4])
        raise ConversionError(f"{ckpt.path}: its tensor names ({sample}, ...) match no "
                              f"{family} layout ({', '.join(c.name for c in candidates)}); "
                              f"is --model right?")
    return best


def _wanted_keys(plan: Plan) -> set[str]:
    keys = set()
    for a in plan.assigns:
        if a.op in ("conv", "linear"):
            keys.add(f"{a.source}.weight")
        elif a.op == "bn":
            keys.add(f"{a.source}.running_mean")
    return keys


# ---------------------------------------------------------------------------------------------
# seeded random checkpoints


def random_model(card_name: str, layout: str, seed: int = 0):
    """A source model with seeded random weights and non-trivial BatchNorm statistics.

    Gammas (0.5-1.5) and betas (around 0) are drawn first, then the statistics are measured on
    a random batch (so activations keep a sane scale through a deep net) and perturbed per
    channel: means shifted, variances scaled by 0.5-2. A conversion that swapped mean and
    variance, ignored eps or gamma, or reordered channels cannot pass validation on such a
    model."""
    torch = _torch()
    arch = source_arch(card_name, "torchvision" if layout == "lua" else layout)
    torch.manual_seed(seed)
    model = arch.build()
    gen = torch.Generator().manual_seed(seed + 1)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        for m in bns:
            n = m.num_features
            m.weight.copy_(torch.empty(n).uniform_(0.5, 1.5, generator=gen))
            m.bias.copy_(0.2 * torch.randn(n, generator=gen))
            m.momentum = None  # cumulative average: one batch sets the statistics
            m.reset_running_stats()
        model.train()
        x = torch.randn(2, 3, arch.calib_size, arch.calib_size, generator=gen)
        model(x)
        model.eval()
        for m in bns:
            n = m.num_features
            std = m.running_var.clamp_min(1e-6).sqrt()
            m.running_mean += 0.2 * std * torch.randn(n, generator=gen)
            m.running_var *= torch.empty(n).uniform_(0.5, 2.0, generator=gen)
            m.momentum = 0.1
    return model


def save_random_checkpoint(card_name: str, layout: str, path: str | Path, seed: int = 0) -> None:
    """Write a seeded random state_dict (atomically) that `load_pytorch` reads back."""
    import io

    from caffezoo.netio import atomic_write

    torch = _torch()
    model = random_model(card_name, layout, seed)
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    atomic_write(path, buf.getvalue())


# ---------------------------------------------------------------------------------------------
# running a checkpoint (validation's source side)


@dataclass
class SourceRun:
    logits: np.ndarray
    records: dict[str, tuple[np.ndarray, np.ndarray]]  # module -> (input, output)


class TorchSource:
    """A checkpoint loaded into its PyTorch model (or a Lua tree), ready to run."""

    def __init__(self, ckpt: Checkpoint, plan: Plan, card_name: str, lua_root=None) -> None:
        self.ckpt = ckpt
        self.plan = plan
        self.lua_root = lua_root
        self.input_norm, self.effective_norm = source_normalization(card_name, plan.layout)
        self.classifier = next(a.source for a in plan.assigns if a.op == "linear")
        if lua_root is None:
            self.model = self._load_model(card_name)

    def _load_model(self, card_name: str):
        torch = _torch()
        arch = source_arch(card_name, self.plan.layout)
        kwargs = dict(arch.kwargs)
        if "aux_logits" in kwargs:  # only when the checkpoint has the head
            kwargs["aux_logits"] = any(k.startswith("AuxLogits.") for k in self.ckpt.tensors)
        torch.manual_seed(0)
        model = SourceArch(arch.factory, kwargs).build()
        state = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in self.ckpt.tensors.items()}
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise ConversionError(f"{self.ckpt.path}: does not load into {arch.factory}: "
                                  f"{' '.join(str(err).split())[:300]}") from None
        return model.eval()

    def run(self, x: np.ndarray, record: set[str] | None = None) -> SourceRun:
        """Logits (the classifier's output) and the (input, output) of the modules in
        `record` (a BatchNorm that applies its activation itself is recorded before it)."""
        torch = _torch()
        want = set(record or ()) | {self.classifier}
        records: dict[str, tuple[np.ndarray, np.ndarray]] = {}

        def keep(name: str, inp, out) -> None:
            first = inp[0] if isinstance(inp, tuple | list) else inp
            records[name] = (first.detach().numpy().copy(), out.detach().numpy().copy())

        xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        if self.lua_root is not None:
            from caffezoo.converters.lua_torch import LuaNet

            LuaNet(self.lua_root)(xt, lambda m, i, o: keep(m.key, i, o) if m.key in want
                                  else None)
        else:
            handles = []
            modules = dict(self.model.named_modules())
            for name in want:
                module = modules.get(name)
                if module is None:
                    continue
                # timm's BatchNormAct2d: norm -> drop (Identity) -> act; record before act
                target = module.drop if hasattr(module, "drop") and hasattr(module, "act") \
                    else module
                handles.append(target.register_forward_hook(
                    lambda _m, i, o, name=name: keep(name, i, o)))
            try:
                with torch.no_grad():
                    self.model(xt)
            finally:
                for h in handles:
                    h.remove()
        if self.classifier not in records:
            raise ConversionError(f"{self.ckpt.path}: the classifier {self.classifier!r} did "
                                  f"not run")
        return SourceRun(records[self.classifier][1], records)


def open_source(path: str | Path, card, net, layout: str | None = None) -> TorchSource:
    ckpt, root = load_checkpoint(path)
    plan = detect_layout(net, card, ckpt, layout)
    return TorchSource(ckpt, plan, card.name, root)


# ---------------------------------------------------------------------------------------------
# the conversion


def convert(path: str | Path, card, input_size: int | None = None, layout: str | None = None,
            options: ConvertOptions | None = None) -> Conversion:
    """The zoo net of `card` at `input_size`, carrying the checkpoint's weights (nothing is
    written: `caffezoo convert` writes the result atomically)."""
    ckpt, _ = load_checkpoint(path)
    return convert_checkpoint(ckpt, card, input_size, layout, options)


def convert_checkpoint(ckpt: Checkpoint, card, input_size: int | None = None,
                       layout: str | None = None,
                       options: ConvertOptions | None = None) -> Conversion:
    """`convert` for a checkpoint already read."""
    net = card.build(input_size)
    plan = detect_layout(net, card, ckpt, layout)
    options = options or ConvertOptions()
    _, effective = source_normalization(card.name, plan.layout)
    if options.affine is None:
        options = replace(options, affine=input_affine(effective, card.mean, card.std))
    result = apply_plan(net, ckpt, plan, options)
    fmt = ", ".join
    mean, std = effective.bgr()
    note = (f"input mapping: the source's {effective.describe()} is BGR mean "
            f"[{fmt(f'{v:g}' for v in mean)}] std [{fmt(f'{v:g}' for v in std)}]")
    if options.affine is None:
        note += " = the card's"
    else:
        note += (f"; the card's mean [{fmt(f'{v:g}' for v in card.mean)}] std "
                 f"[{fmt(f'{v:g}' for v in card.std)}] differ: folded into the first convolution")
    result.notes.insert(0, note)
    return result
