"""Zoo variants for TF-slim checkpoints, whose nets compute differently from the zoo's originals.

Like generators/variants_torch.py, a variant keeps the original's layer names where a layer
exists in both (Caffe matches weights by name) and changes only what the source computes
differently; converting a TF-slim checkpoint into the original refuses, naming the variant.

- `inception_v3_tfslim`: TF-slim's Inception-v3 against the zoo's MXNet-derived net: both 8x8
  blocks average in their pool branch (`inception_c2_pool` is MAX in the original), the 3x3
  stride-1 average poolings exclude the padding (TF SAME), and pooling rounds down (VALID).
- `inception_v4_tfslim`, `inception_resnet_v2_tfslim`: the originals were converted from these
  very checkpoints, but their Caffe averages include the padding, which TF's SAME pooling
  excludes; each such pooling is followed by an exact `<pool>_exclude_pad` Scale (the `_timm`
  variants' form), and pooling rounds down.
- `resnet101_v2_tfslim`, `resnet152_v2_tfslim`: TF-slim's ResNet-v2 has little in common with
  the zoo's CUHK-trained nets beyond the names: `conv1` has a bias and no batch norm; every unit
  (the first included) starts with its pre-activation `res<k>_bn`/`_scale`/`_relu` (unit 1's,
  after `pool1`, keeps the original's `conv1_bn`/`_scale`/`_relu`, the batch norm that
  normalises conv1's output for the first block there); a block
  downsamples in its *last* unit, on the 3x3 `conv2`, whose shortcut is a 1x1 stride-2 MAX
  pooling `res<k>_match_pool` of the unit's input; a block's first unit projects its
  pre-activated input by `res<k>_match_conv` (stride 1, with bias); `conv3` has a bias; after the
  last unit a post-norm `res<L>_eletwise_bn`/`_scale`/`_relu`. `pool1` is TF's SAME 3x3/2 MAX
  pooling: on an even map TF pads only bottom/right, which Caffe's ceil rounding without padding
  reproduces exactly (the last window is clipped); on an odd map it pads one pixel each side.
  BatchNorm eps 1e-5 with gamma.
"""

from __future__ import annotations

from dataclasses import dataclass

from caffezoo.builder import NetBuilder
from caffezoo.generators.common import (
    bn_scale,
    check_input_size,
    classifier_head,
    conv_bn,
    pooling_variant,
)
from caffezoo.geometry import conv_out, same_padding
from caffezoo.proto import caffe_pb2

RESNET_BN_EPS = 1e-5


def inception_v3_tfslim(input_size: int = 299) -> caffe_pb2.NetParameter:
    from caffezoo.generators import inception_v3

    return pooling_variant(inception_v3.build, "inception_v3_tfslim", input_size,
                    pool_methods={"inception_c2_pool": "AVE"}, exclude_pad=True)


def inception_v4_tfslim(input_size: int = 299) -> caffe_pb2.NetParameter:
    from caffezoo.generators import inception_v4

    return pooling_variant(inception_v4.build, "inception_v4_tfslim", input_size, exclude_pad=True)


def inception_resnet_v2_tfslim(input_size: int = 299) -> caffe_pb2.NetParameter:
    from caffezoo.generators import inception_resnet_v2

    return pooling_variant(inception_resnet_v2.build, "inception_resnet_v2_tfslim", input_size,
                    exclude_pad=True)


@dataclass(frozen=True)
class SlimResNet:
    name: str
    units: tuple[int, ...]  # units per block
    widths: tuple[int, ...] = (64, 128, 256, 512)
    strides: tuple[int, ...] = (2, 2, 2, 1)  # in the last unit of each block


RESNETS = {s.name: s for s in (SlimResNet("resnet101_v2_tfslim", (3, 4, 23, 3)),
                               SlimResNet("resnet152_v2_tfslim", (3, 8, 36, 3)))}
MIN_RESNET_SIZE = 33  # the smallest input that leaves block4 a map of at least 1x1


def resnet_v2_tfslim(input_size: int = 224, variant: str = "resnet101_v2_tfslim",
                     num_classes: int = 1000) -> caffe_pb2.NetParameter:
    spec = RESNETS[variant]
    check_input_size(input_size, MIN_RESNET_SIZE, spec.name)
    b = NetBuilder(spec.name)
    x = b.input("data", (1, 3, input_size, input_size))
    x = b.conv(x, "conv1", num_output=64, kernel=7, stride=2, pad=3, bias=True)
    before, after = same_padding(conv_out(input_size, 7, 2, 3), 3, 2)
    # even map: TF pads (0, 1) -> Caffe ceil rounding, no pad; odd: (1, 1) -> pad 1, floor
    x = b.pool(x, "pool1", "max", kernel=3, stride=2, pad=before, ceil=after > before)
    k = 0
    depth_in = 64
    for units, width, stride in zip(spec.units, spec.widths, spec.strides, strict=True):
        for i in range(units):
            k += 1
            s = stride if i == units - 1 else 1
            x = _unit(b, x, k, width, 4 * width, s, project=depth_in != 4 * width)
            depth_in = 4 * width
    x = bn_scale(b, x, f"res{k}_eletwise", eps=RESNET_BN_EPS, top=f"res{k}_eletwise_bn")
    classifier_head(b, x, "pool5", num_classes=num_classes)
    return b.net


def _unit(b: NetBuilder, x: str, k: int, width: int, out: int, stride: int,
          project: bool) -> str:
    p = f"res{k}"
    # unit 1's pre-activation normalises conv1's (pooled) output: it takes the name the
    # original gives conv1's batch norm, which plays that role there
    prefix = "conv1" if k == 1 else p
    pre = bn_scale(b, x, prefix, eps=RESNET_BN_EPS, top=f"{p}_bn")
    if project:
        shortcut = b.conv(pre, f"{p}_match_conv", num_output=out, kernel=1, bias=True)
    elif stride > 1:
        shortcut = b.pool(x, f"{p}_match_pool", "max", kernel=1, stride=stride, ceil=False)
    else:
        shortcut = x
    y = conv_bn(b, pre, f"{p}_conv1", width, kernel=1, eps=RESNET_BN_EPS)
    y = conv_bn(b, y, f"{p}_conv2", width, kernel=3, stride=stride, pad=1, eps=RESNET_BN_EPS)
    y = b.conv(y, f"{p}_conv3", num_output=out, kernel=1, bias=True)
    return b.eltwise([shortcut, y], f"{p}_eletwise", op="sum")


def resnet101_v2_tfslim(input_size: int = 224) -> caffe_pb2.NetParameter:
    return resnet_v2_tfslim(input_size, "resnet101_v2_tfslim")


def resnet152_v2_tfslim(input_size: int = 224) -> caffe_pb2.NetParameter:
    return resnet_v2_tfslim(input_size, "resnet152_v2_tfslim")
