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

from collections.abc import Callable, Mapping

from caffezoo.analysis import analyze
from caffezoo.builder import NetBuilder
from caffezoo.errors import NetDefinitionError
from caffezoo.generators.common import check_input_size
from caffezoo.proto import caffe_pb2

MIN_INCEPTION_SIZE = 75  # the smallest size all three Inception nets reduce to 1x1 at


def _variant(base: Callable[..., caffe_pb2.NetParameter], name: str, input_size: int,
             *, pool_methods: Mapping[str, str] | None = None,
             exclude_pad: bool = False) -> caffe_pb2.NetParameter:
    """`base()` (at its own default size) with floor pooling, the given pooling methods, and
    (with `exclude_pad`) an exclude-pad Scale after every padded AVE pooling, at `input_size`."""
    check_input_size(input_size, MIN_INCEPTION_SIZE, name)
    methods = dict(pool_methods or {})
    src = base()
    b = NetBuilder(name)
    for layer in src.layer:
        if layer.type == "Input":
            shape = list(layer.input_param.shape[0].dim)
            b.input(layer.top[0], (shape[0], shape[1], input_size, input_size))
            continue
        new = b.layer(layer.type, layer.name, list(layer.bottom), list(layer.top))
        new.CopyFrom(layer)
        if layer.type != "Pooling":
            continue
        p = new.pooling_param
        if layer.name in methods:
            p.pool = caffe_pb2.PoolingParameter.PoolMethod.Value(methods.pop(layer.name))
        if not p.global_pooling:
            p.ceil_mode = False
        if exclude_pad and p.pool == caffe_pb2.PoolingParameter.AVE and (
                p.pad or p.pad_h or p.pad_w):
            b.scale(layer.top[0], f"{layer.name}_exclude_pad", bias=False, axis=2, num_axes=2)
    if methods:
        raise NetDefinitionError(f"{name}: no pooling layer(s) {', '.join(methods)} in the base")
    net = b.net
    try:
        analyze(net)
    except NetDefinitionError as err:
        raise NetDefinitionError(f"{name}: input size {input_size} does not work: {err}") from None
    return net


def inception_v3_tv(input_size: int = 299) -> caffe_pb2.NetParameter:
    """torchvision's Inception-v3 (see the module docstring)."""
    from caffezoo.generators import inception_v3

    return _variant(inception_v3.build, "inception_v3_tv", input_size,
                    pool_methods={"inception_c2_pool": "AVE"})


def inception_v4_timm(input_size: int = 299) -> caffe_pb2.NetParameter:
    """timm's Inception-v4 (see the module docstring)."""
    from caffezoo.generators import inception_v4

    return _variant(inception_v4.build, "inception_v4_timm", input_size, exclude_pad=True)


def inception_resnet_v2_timm(input_size: int = 299) -> caffe_pb2.NetParameter:
    """timm's Inception-ResNet-v2 (see the module docstring)."""
    from caffezoo.generators import inception_resnet_v2

    return _variant(inception_resnet_v2.build, "inception_resnet_v2_timm", input_size,
                    exclude_pad=True)
