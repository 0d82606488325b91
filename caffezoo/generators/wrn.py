"""Wide ResNet-50-2 (Zagoruyko & Komodakis 2016) as the original zoo laid it out: the
bottleneck ResNet-50 with twice the channels in conv1/conv2 of every block, converted from
PyTorch/Lua Torch. Same post-activation layout and names as ResNeXt (see resnext.py) except the
block prefix `res` and no grouping.
"""

from __future__ import annotations

from caffezoo.generators.resnext import (
    DEFAULT_INPUT_SIZE,
    BottleneckNet,
    build_bottleneck_net,
    variant_spec,
)
from caffezoo.proto import caffe_pb2


def wrn_spec(depth: int, widen: int) -> BottleneckNet:
    """WRN-`depth`-`widen`: ResNet-`depth` bottlenecks with conv1/conv2 widened `widen` times."""
    blocks = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}[depth]
    return BottleneckNet(name=f"wrn{depth}_{widen}", blocks=blocks,
                         widths=tuple(64 * widen * 2**i for i in range(4)), groups=1,
                         prefix="res")


VARIANTS: dict[str, BottleneckNet] = {spec.name: spec for spec in (wrn_spec(50, 2),)}


def build(input_size: int = DEFAULT_INPUT_SIZE, variant: str = "wrn50_2",
          num_classes: int = 1000) -> caffe_pb2.NetParameter:
    """Wide ResNet deploy net; `variant` is one of VARIANTS."""
    return build_bottleneck_net(variant_spec(VARIANTS, variant), input_size, num_classes)
