"""Small building blocks shared by the zoo generators.

Caffe splits a batch norm into a `BatchNorm` layer (statistics) and a `Scale` layer (the affine
part); the original zoo names them `<conv>_bn` and `<conv>_scale`, and the activation
`<conv>_relu`, all in place on the convolution's top. These helpers write that pattern so the
generators stay short. Every name can be overridden because not every original follows it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from caffezoo.analysis import analyze
from caffezoo.builder import NetBuilder, Size
from caffezoo.errors import NetDefinitionError
from caffezoo.proto import caffe_pb2

BN_EPS = 1e-5  # Caffe's BatchNorm default; the ResNet-family originals never set eps


def check_input_size(input_size: int, minimum: int, model: str) -> int:
    """The input size as an int, or NetDefinitionError when it is not a usable size."""
    if isinstance(input_size, bool) or not isinstance(input_size, int):
        raise NetDefinitionError(f"{model}: input size must be an int, got {input_size!r}")
    if input_size < minimum:
        raise NetDefinitionError(
            f"{model}: input size {input_size} is too small (the smallest valid size is "
            f"{minimum})")
    return input_size


def bn_scale(b: NetBuilder, bottom: str, prefix: str, *, eps: float = BN_EPS,
             relu: bool = True, top: str | None = None, bn_name: str | None = None,
             scale_name: str | None = None, relu_name: str | None = None) -> str:
    """`<prefix>_bn` (BatchNorm), `<prefix>_scale` (Scale with bias) and, when `relu`,
    `<prefix>_relu`. The BatchNorm writes `top` (in place on `bottom` by default); Scale and ReLU
    then work in place on that top."""
    x = b.batch_norm(bottom, bn_name or f"{prefix}_bn", eps=eps, top=top)
    x = b.scale(x, scale_name or f"{prefix}_scale", bias=True)
    if relu:
        x = b.relu(x, relu_name or f"{prefix}_relu")
    return x


def conv_bn(b: NetBuilder, bottom: str, name: str, num_output: int, kernel: Size,
            stride: Size = 1, pad: Size = 0, group: int = 1, *, bias: bool = False,
            eps: float = BN_EPS, relu: bool = True, top: str | None = None,
            bn_name: str | None = None, scale_name: str | None = None,
            relu_name: str | None = None) -> str:
    """Convolution `name` (no bias by default), then `<name>_bn`, `<name>_scale` and, when
    `relu`, `<name>_relu`, all in place on the convolution's top (`top`, default `name`)."""
    x = b.conv(bottom, name, num_output=num_output, kernel=kernel, stride=stride, pad=pad,
               group=group, bias=bias, top=top)
    return bn_scale(b, x, name, eps=eps, relu=relu, bn_name=bn_name, scale_name=scale_name,
                    relu_name=relu_name)


def classifier_head(b: NetBuilder, bottom: str, pool_name: str, *, num_classes: int = 1000,
                    dropout: float | None = None, dropout_name: str = "drop",
                    fc_name: str = "classifier", prob_name: str = "prob") -> str:
    """Global average pooling (so one prototxt serves every input size), optional Dropout, the
    `classifier` InnerProduct and the `prob` Softmax. Returns the `prob` top."""
    x = b.pool(bottom, pool_name, "ave", global_pooling=True)
    if dropout is not None:
        x = b.dropout(x, dropout_name, ratio=dropout)
    x = b.inner_product(x, fc_name, num_output=num_classes)
    return b.softmax(x, prob_name)


# -- variants: an original re-played with other poolings ---------------------------------------

MIN_INCEPTION_SIZE = 75  # the smallest size all three Inception nets reduce to 1x1 at


def pooling_variant(base: Callable[..., caffe_pb2.NetParameter], name: str, input_size: int,
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
