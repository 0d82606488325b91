"""Pre-activation ResNet (He et al. 2016, "Identity Mappings") as the original zoo laid it out:
the CUHK craftGBD models trained in a Caffe fork.

Every block `res<k>` (k counts blocks over the whole net, from 1) first normalises its input,
except block 1 whose input (pool1) already passed conv1's BatchNorm and ReLU:

    res<k>_bn / _scale / _relu   on the previous sum, top res<k>_bn (block 1: none)
    res<k>_conv1  1x1 -> width   + _bn, _scale, _relu
    res<k>_conv2  3x3 -> width   + _bn, _scale, _relu
    res<k>_conv3  1x1 -> out     (no BatchNorm: the next block normalises the sum)
    res<k>_match_conv 1x1        (first block of a stage only, on the normalised input)
    res<k>_eletwise = shortcut + conv3 (Eltwise SUM)

The downsampling stride of a stage's first block sits on conv2 (the 3x3) in all three depths,
as in the released files at the pinned revision 27d644d of the original zoo (`stride_on` keeps
the other placement expressible as data). After the last block come res<L>_eletwise_bn /
_scale / _relu, the global average pooling `pool5`, `classifier` and `prob`. The stem's max
pooling has no padding and keeps Caffe's default ceil rounding (the models were trained in
Caffe).
"""

from __future__ import annotations

from dataclasses import dataclass

from caffezoo.builder import NetBuilder
from caffezoo.generators.common import bn_scale, check_input_size, classifier_head, conv_bn
from caffezoo.generators.resnext import variant_spec
from caffezoo.proto import caffe_pb2

DEFAULT_INPUT_SIZE = 224
MIN_INPUT_SIZE = 3  # below, conv1 leaves a 1x1 map that pool1 (3x3, no pad) cannot take


@dataclass(frozen=True)
class PreActNet:
    name: str
    blocks: tuple[int, ...]          # blocks per stage
    stride_on: str = "conv2"         # which conv of a stage's first block downsamples
    widths: tuple[int, ...] = (64, 128, 256, 512)
    outs: tuple[int, ...] = (256, 512, 1024, 2048)
    # Gluon's ResNetV2 (the `_gluon` variants): a BatchNorm on the input (`data_bn`/`data_scale`),
    # pool1 padded by 1 and rounding down, and block 1 normalising its input like the others
    gluon: bool = False


VARIANTS: dict[str, PreActNet] = {
    spec.name: spec
    for spec in (
        PreActNet("resnet101_v2", (3, 4, 23, 3)),
        PreActNet("resnet152_v2", (3, 8, 36, 3)),
        PreActNet("resnet269_v2", (3, 30, 48, 8)),
        PreActNet("resnet101_v2_gluon", (3, 4, 23, 3), gluon=True),
        PreActNet("resnet152_v2_gluon", (3, 8, 36, 3), gluon=True),
    )
}


def build(input_size: int = DEFAULT_INPUT_SIZE, variant: str = "resnet101_v2",
          num_classes: int = 1000) -> caffe_pb2.NetParameter:
    """Pre-activation ResNet deploy net; `variant` is one of VARIANTS."""
    spec = variant_spec(VARIANTS, variant)
    check_input_size(input_size, MIN_INPUT_SIZE, spec.name)
    b = NetBuilder(spec.name)
    x = b.input("data", (1, 3, input_size, input_size))
    if spec.gluon:
        x = bn_scale(b, x, "data", relu=False, top="data_bn")
    x = conv_bn(b, x, "conv1", 64, kernel=7, stride=2, pad=3)
    if spec.gluon:
        x = b.pool(x, "pool1", "max", kernel=3, stride=2, pad=1, ceil=False)
    else:
        x = b.pool(x, "pool1", "max", kernel=3, stride=2)
    k = 0
    for stage, (count, width, out) in enumerate(
            zip(spec.blocks, spec.widths, spec.outs, strict=True)):
        for i in range(count):
            k += 1
            stride = 2 if (i == 0 and stage > 0) else 1
            x = _block(b, x, k, width, out, stride, spec.stride_on, project=(i == 0),
                       pre_bn=k > 1 or spec.gluon)
    x = bn_scale(b, x, f"res{k}_eletwise", top=f"res{k}_eletwise_bn")
    classifier_head(b, x, "pool5", num_classes=num_classes)
    return b.net


def _block(b: NetBuilder, x: str, k: int, width: int, out: int, stride: int, stride_on: str,
           project: bool, pre_bn: bool) -> str:
    p = f"res{k}"
    # Block 1's input is pool1, already normalised by conv1_bn/conv1_relu (not in Gluon's).
    pre = bn_scale(b, x, p, top=f"{p}_bn") if pre_bn else x
    s1, s2 = (stride, 1) if stride_on == "conv1" else (1, stride)
    y = conv_bn(b, pre, f"{p}_conv1", width, kernel=1, stride=s1)
    y = conv_bn(b, y, f"{p}_conv2", width, kernel=3, stride=s2, pad=1)
    y = b.conv(y, f"{p}_conv3", num_output=out, kernel=1, bias=False)
    shortcut = x
    if project:
        shortcut = b.conv(pre, f"{p}_match_conv", num_output=out, kernel=1, stride=stride,
                          bias=False)
    # The original's name is "eletwise" (sic); weights are matched by name, so it stays.
    return b.eltwise([shortcut, y], f"{p}_eletwise", op="sum")
