"""ResNeXt (Xie et al. 2017) as the original zoo laid it out: the Facebook Lua Torch models
converted to Caffe, post-activation bottlenecks with a grouped 3x3 convolution.

Structure of every block `<p><k>` (k counts blocks over the whole net, from 1):

    <p>k_conv1  1x1 -> width          + _bn, _scale, _relu
    <p>k_conv2  3x3 grouped, stride s + _bn, _scale, _relu
    <p>k_conv3  1x1 -> out            + _bn, _scale
    <p>k_match_conv 1x1 stride s      + _bn, _scale   (first block of a stage only)
    <p>k_elewise = shortcut + conv3 (Eltwise SUM), then <p>k_elewise_relu in place

The released files list the sum's bottoms as (match_conv, conv3), except in the first block of
stage 3 (`resx8_elewise`, `res8_elewise` in WRN), which lists (conv3, match_conv); the generator
keeps that order (`conv3_first_stages`). A sum does not depend on it, but a byte-identical file
does.

The stem is a 7x7/2 convolution and a 3x3/2 max pooling with pad 1 rounded down
(`ceil_mode: false`, as Torch rounds); the head is a global average pooling `pool_ave`, the
`classifier` InnerProduct and the `prob` Softmax. Wide ResNets share this layout (see wrn.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from caffezoo.builder import NetBuilder
from caffezoo.errors import NetDefinitionError
from caffezoo.generators.common import check_input_size, classifier_head, conv_bn
from caffezoo.proto import caffe_pb2

DEFAULT_INPUT_SIZE = 224
MIN_INPUT_SIZE = 1  # padded stages rounding down: any size leaves at least 1x1


@dataclass(frozen=True)
class BottleneckNet:
    """A post-activation bottleneck ResNet: what differs between ResNeXt and WRN variants."""

    name: str
    blocks: tuple[int, ...]   # blocks per stage
    widths: tuple[int, ...]   # channels of conv1/conv2 per stage
    groups: int               # cardinality of the 3x3 convolution (1: plain ResNet/WRN)
    prefix: str               # block name prefix: "resx" (ResNeXt) or "res" (WRN)
    expansion_out: tuple[int, ...] = (256, 512, 1024, 2048)  # conv3 channels per stage
    # stages (from 0) whose first block lists its Eltwise bottoms as (conv3, match_conv)
    conv3_first_stages: tuple[int, ...] = (2,)


def resnext_spec(depth: int, cardinality: int, base_width: int) -> BottleneckNet:
    """ResNeXt-`depth` (50 or 101) `cardinality`x`base_width`d: the grouped width doubles per
    stage from cardinality * base_width."""
    blocks = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}[depth]
    first = cardinality * base_width
    return BottleneckNet(name=f"resnext{depth}_{cardinality}x{base_width}d", blocks=blocks,
                         widths=tuple(first * 2**i for i in range(4)), groups=cardinality,
                         prefix="resx")


VARIANTS: dict[str, BottleneckNet] = {
    spec.name: spec
    for spec in (resnext_spec(50, 32, 4), resnext_spec(101, 32, 4), resnext_spec(101, 64, 4))
}


def build_bottleneck_net(spec: BottleneckNet, input_size: int,
                         num_classes: int = 1000) -> caffe_pb2.NetParameter:
    """The deploy net of `spec` for square inputs of `input_size` pixels."""
    check_input_size(input_size, MIN_INPUT_SIZE, spec.name)
    b = NetBuilder(spec.name)
    x = b.input("data", (1, 3, input_size, input_size))
    x = conv_bn(b, x, "conv1", 64, kernel=7, stride=2, pad=3)
    x = b.pool(x, "pool1", "max", kernel=3, stride=2, pad=1, ceil=False)
    k = 0
    for stage, (count, width, out) in enumerate(
            zip(spec.blocks, spec.widths, spec.expansion_out, strict=True)):
        for i in range(count):
            k += 1
            stride = 2 if (i == 0 and stage > 0) else 1
            x = _block(b, x, f"{spec.prefix}{k}", width, out, stride, spec.groups,
                       project=(i == 0),
                       conv3_first=(i == 0 and stage in spec.conv3_first_stages))
    classifier_head(b, x, "pool_ave", num_classes=num_classes)
    return b.net


def _block(b: NetBuilder, x: str, p: str, width: int, out: int, stride: int, groups: int,
           project: bool, conv3_first: bool = False) -> str:
    y = conv_bn(b, x, f"{p}_conv1", width, kernel=1)
    y = conv_bn(b, y, f"{p}_conv2", width, kernel=3, stride=stride, pad=1, group=groups)
    y = conv_bn(b, y, f"{p}_conv3", out, kernel=1, relu=False)
    shortcut = x
    if project:
        shortcut = conv_bn(b, x, f"{p}_match_conv", out, kernel=1, stride=stride, relu=False)
    # The original's name is "elewise" (sic); weights are matched by name, so it stays.
    bottoms = [y, shortcut] if conv3_first else [shortcut, y]
    y = b.eltwise(bottoms, f"{p}_elewise", op="sum")
    return b.relu(y, f"{p}_elewise_relu")


def build(input_size: int = DEFAULT_INPUT_SIZE, variant: str = "resnext50_32x4d",
          num_classes: int = 1000) -> caffe_pb2.NetParameter:
    """ResNeXt deploy net; `variant` is one of VARIANTS."""
    return build_bottleneck_net(variant_spec(VARIANTS, variant), input_size, num_classes)


def variant_spec(variants: Mapping[str, BottleneckNet], variant: str) -> BottleneckNet:
    """The spec called `variant`, or NetDefinitionError listing the known ones."""
    try:
        return variants[variant]
    except KeyError:
        raise NetDefinitionError(f"unknown variant '{variant}' (known: "
                                 f"{', '.join(sorted(variants))})") from None
