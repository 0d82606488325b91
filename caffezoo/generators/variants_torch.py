"""Zoo variants for PyTorch sources whose computation differs from the zoo's originals.

Caffe matches weights by layer name, so a variant keeps every name of the original net and
changes only what the source computes differently; converting such a source into the original
net would be approximate, and the converter refuses it (converters/torch.py).

- `inception_v3_tv`: torchvision's Inception3 (TensorFlow's model ported to PyTorch). Against
  the zoo's MXNet-derived `inception_v3`: the second 8x8 block (`inception_c2_pool`) averages
  instead of taking the max, and every pooling rounds down (`ceil_mode: false`), so any input
  size from 75 up works (the original needs sizes where rounding up and down agree).
- `inception_v4_timm`, `inception_resnet_v2_timm`: timm's ports of the TF-slim models. Their
  3x3 stride-1 average poolings exclude the padding from the average (count_include_pad=False,
  as TF's SAME pooling), which Caffe's AVE pooling does not: each such pooling is followed by a
  `<pool>_exclude_pad` Scale layer (axis 2, two axes, no bias) whose (H, W) blob multiplies each
  output by kernel_area / real_pixels_in_window; it works in place and is exact. Pooling rounds
  down, as PyTorch does.

Each variant is the original generator's net, re-played layer by layer through a NetBuilder with
those changes, then given the requested input size and shape-checked.
"""

from __future__ import annotations

from caffezoo.generators.common import pooling_variant
from caffezoo.proto import caffe_pb2


def inception_v3_tv(input_size: int = 299) -> caffe_pb2.NetParameter:
    """torchvision's Inception-v3 (see the module docstring)."""
    from caffezoo.generators import inception_v3

    return pooling_variant(inception_v3.build, "inception_v3_tv", input_size,
                    pool_methods={"inception_c2_pool": "AVE"})


def inception_v4_timm(input_size: int = 299) -> caffe_pb2.NetParameter:
    """timm's Inception-v4 (see the module docstring)."""
    from caffezoo.generators import inception_v4

    return pooling_variant(inception_v4.build, "inception_v4_timm", input_size, exclude_pad=True)


def inception_resnet_v2_timm(input_size: int = 299) -> caffe_pb2.NetParameter:
    """timm's Inception-ResNet-v2 (see the module docstring)."""
    from caffezoo.generators import inception_resnet_v2

    return pooling_variant(inception_resnet_v2.build, "inception_resnet_v2_timm", input_size,
                    exclude_pad=True)
