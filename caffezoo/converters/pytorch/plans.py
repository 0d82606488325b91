"""Plans: how each PyTorch/Lua source family maps onto the zoo's layer names.

A checkpoint's *layout* (the naming scheme of one source family) is recognised from its tensor
names, or named with `layout=`. Source families and the zoo cards they fill
(docs/conversion.md):

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

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from caffezoo.card_plan import Assign, Op, Plan, PoolSpec
from caffezoo.converters.common import Checkpoint, Part
from caffezoo.converters.pytorch.models import SOURCE_ARCHS
from caffezoo.errors import ConversionError

TORCH_BN_EPS = 1e-5  # torch.nn.BatchNorm2d's default (torchvision, timm ResNets)
INCEPTION_BN_EPS = 1e-3  # torchvision Inception3 and timm's TF ports set 0.001


def _cbs(src: str, layer: str, eps: float) -> list[Assign]:
    """A conv + batch norm pair: `<src>.conv`/`<src>.bn` -> layer, layer_bn/layer_scale."""
    return [Assign(Op.CONV, f"{src}.conv", (layer,)),
            Assign(Op.BN, f"{src}.bn", (f"{layer}_bn", f"{layer}_scale"), eps=eps)]


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
    assigns = [Assign(Op.CONV, "conv1", ("conv1",)),
               Assign(Op.BN, "bn1", ("conv1_bn", "conv1_scale"), eps=TORCH_BN_EPS),
               Assign(Op.POOL, "maxpool", ("pool1",), pool=PoolSpec("max", 3, 2, 1))]
    stage = index = 0
    k = 1
    while f"{prefix}{k}_conv1" in names:
        if f"{prefix}{k}_match_conv" in names or stage == 0:
            stage, index = stage + 1, 0
        else:
            index += 1
        src, dst = f"layer{stage}.{index}", f"{prefix}{k}"
        for j in (1, 2, 3):
            assigns += [Assign(Op.CONV, f"{src}.conv{j}", (f"{dst}_conv{j}",)),
                        Assign(Op.BN, f"{src}.bn{j}", (f"{dst}_conv{j}_bn", f"{dst}_conv{j}_scale"),
                               eps=TORCH_BN_EPS)]
        if f"{dst}_match_conv" in names:
            assigns += [Assign(Op.CONV, f"{src}.downsample.0", (f"{dst}_match_conv",)),
                        Assign(Op.BN, f"{src}.downsample.1",
                               (f"{dst}_match_conv_bn", f"{dst}_match_conv_scale"),
                               eps=TORCH_BN_EPS)]
        k += 1
    if _pool_layer(net, "pool_ave"):
        assigns.append(Assign(Op.POOL, "avgpool", ("pool_ave",),
                              pool=PoolSpec("ave", global_pool=True)))
    assigns.append(Assign(Op.LINEAR, "fc", (_classifier(net),)))
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
    a += [Assign(Op.POOL, "maxpool1", ("pool1_3x3_s2",), pool=PoolSpec("max", 3, 2)),
          Assign(Op.POOL, "maxpool2", ("pool2_3x3_s2",), pool=PoolSpec("max", 3, 2))]
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
        a.append(Assign(Op.POOL, "", (f"{dst}_{pool}",), pool=spec))
    a.append(Assign(Op.POOL, "avgpool", ("pool_8x8_s1",), pool=PoolSpec("ave", global_pool=True)))
    a.append(Assign(Op.LINEAR, "fc", (_classifier(net),)))
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
        a.extend(_cbs(src, dst, eps))

    for i, dst in enumerate(("conv1_3x3_s2", "conv2_3x3_s1", "conv3_3x3_s1")):
        cbs(f"features.{i}", dst)
    a.append(Assign(Op.POOL, "features.3.maxpool", ("inception_stem1_pool",),
                    pool=PoolSpec("max", 3, 2)))
    cbs("features.3.conv", "inception_stem1_3x3_s2")
    for s, d in {"branch0.0": "3x3_reduce", "branch0.1": "3x3", "branch1.0": "1x7_reduce",
                 "branch1.1": "1x7", "branch1.2": "7x1", "branch1.3": "3x3_2"}.items():
        cbs(f"features.4.{s}", f"inception_stem2_{d}")
    cbs("features.5.conv", "inception_stem3_3x3_s2")
    a.append(Assign(Op.POOL, "features.5.maxpool", ("inception_stem3_pool",),
                    pool=PoolSpec("max", 3, 2)))
    ave = PoolSpec("ave", 3, 1, 1, exclude_pad=True)
    for n, (first, table, letter) in enumerate([(6, _TIMM_V4_A, "a"), (11, _TIMM_V4_B, "b"),
                                                (19, _TIMM_V4_C, "c")]):
        count = (4, 7, 3)[n]
        for i in range(count):
            src, dst = f"features.{first + i}", f"inception_{letter}{i + 1}"
            for s, d in table.items():
                cbs(f"{src}.{s}", f"{dst}_{d}")
            a.append(Assign(Op.POOL, f"{src}.branch3.0", (f"{dst}_pool_ave",), pool=ave))
    for s, d in {"branch0": "3x3", "branch1.0": "3x3_2_reduce", "branch1.1": "3x3_2",
                 "branch1.2": "3x3_3"}.items():
        cbs(f"features.10.{s}", f"reduction_a_{d}")
    a.append(Assign(Op.POOL, "features.10.branch2", ("reduction_a_pool",),
                    pool=PoolSpec("max", 3, 2)))
    for s, d in {"branch0.0": "3x3_reduce", "branch0.1": "3x3", "branch1.0": "1x7_reduce",
                 "branch1.1": "1x7", "branch1.2": "7x1", "branch1.3": "3x3_2"}.items():
        cbs(f"features.18.{s}", f"reduction_b_{d}")
    a.append(Assign(Op.POOL, "features.18.branch2", ("reduction_b_pool",),
                    pool=PoolSpec("max", 3, 2)))
    a.append(Assign(Op.POOL, "global_pool", ("pool_8x8_s1",),
                    pool=PoolSpec("ave", global_pool=True)))
    a.append(Assign(Op.LINEAR, "last_linear", (_classifier(net),)))
    return Plan(layout, a, hint="convert timm's Inception-v4 into --model inception_v4_timm")


def inception_resnet_v2_plan(net, layout: str) -> Plan:
    """timm InceptionResnetV2 -> the zoo's Inception-ResNet-v2 names (residual scales 0.17,
    0.1, 0.2; the last Block8 unscaled, without ReLU)."""
    eps = INCEPTION_BN_EPS
    a: list[Assign] = []
    p = "inception_resnet_v2"

    def cbs(src: str, dst: str) -> None:
        a.extend(_cbs(src, dst, eps))

    for s, d in {"conv2d_1a": "conv1_3x3_s2", "conv2d_2a": "conv2_3x3_s1",
                 "conv2d_2b": "conv3_3x3_s1", "conv2d_3b": "conv4_3x3_reduce",
                 "conv2d_4a": "conv4_3x3"}.items():
        cbs(s, d)
    a += [Assign(Op.POOL, "maxpool_3a", ("pool1_3x3_s2",), pool=PoolSpec("max", 3, 2)),
          Assign(Op.POOL, "maxpool_5a", ("pool2_3x3_s2",), pool=PoolSpec("max", 3, 2))]
    for s, d in {"branch0": "conv5_1x1", "branch1.0": "conv5_5x5_reduce",
                 "branch1.1": "conv5_5x5", "branch2.0": "conv5_3x3_reduce",
                 "branch2.1": "conv5_3x3", "branch2.2": "conv5_3x3_2",
                 "branch3.1": "conv5_1x1_ave"}.items():
        cbs(f"mixed_5b.{s}", d)
    a.append(Assign(Op.POOL, "mixed_5b.branch3.0", ("ave_pool",),
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
            a.append(Assign(Op.CONV, f"{src}.conv2d", (f"{dst}_up",)))
            a.append(Assign(Op.ELTWISE, src, (f"{dst}_residual_eltwise",),
                            coeff=(1.0, 1.0 if last else scale)))
            i += 1
    for s, d in {"branch0": "3x3", "branch1.0": "3x3_2_reduce", "branch1.1": "3x3_2",
                 "branch1.2": "3x3_3"}.items():
        cbs(f"mixed_6a.{s}", f"reduction_a_{d}")
    a.append(Assign(Op.POOL, "mixed_6a.branch2", ("reduction_a_pool",), pool=PoolSpec("max", 3, 2)))
    for s, d in {"branch0.0": "3x3_reduce", "branch0.1": "3x3", "branch1.0": "3x3_2_reduce",
                 "branch1.1": "3x3_2", "branch2.0": "3x3_3_reduce", "branch2.1": "3x3_3",
                 "branch2.2": "3x3_4"}.items():
        cbs(f"mixed_7a.{s}", f"reduction_b_{d}")
    a.append(Assign(Op.POOL, "mixed_7a.branch3", ("reduction_b_pool",), pool=PoolSpec("max", 3, 2)))
    cbs("conv2d_7b", "conv6_1x1")
    a.append(Assign(Op.POOL, "global_pool", ("pool_8x8_s1",),
                    pool=PoolSpec("ave", global_pool=True)))
    a.append(Assign(Op.LINEAR, "classif", (_classifier(net),)))
    return Plan(layout, a,
                hint="convert timm's Inception-ResNet-v2 into --model inception_resnet_v2_timm")


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
        plan.assigns = [replace(a, pool=ckpt.pools[a.source]) if a.op == Op.POOL
                        and a.source in ckpt.pools else a for a in plan.assigns]
        wanted = _wanted_keys(plan, ckpt)
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


def _wanted_keys(plan: Plan, ckpt: Checkpoint) -> set[str]:
    """One tensor name per weighted module of the plan, in the checkpoint's naming."""
    keys = set()
    for a in plan.assigns:
        if a.op in (Op.CONV, Op.LINEAR):
            keys.add(ckpt.key(a.source, Part.WEIGHT))
        elif a.op == Op.BN:
            keys.add(ckpt.key(a.source, Part.MEAN))
    return keys
