"""Inception-v3 (Szegedy et al. 2016) as the original zoo laid it out: the MXNet model-gallery
network converted to Caffe (1000 classes, ILSVRC2015 class order, no auxiliary head).

Every convolution is `conv_bn`: no bias, then `<name>_bn` (eps 0.001), `<name>_scale`,
`<name>_relu`, all in place. The stages (block counts are data, see `STAGES`):

    stem        conv1_3x3_s2, conv2_3x3_s1, conv3_3x3_s1, pool1_3x3_s2 (MAX),
                conv4_3x3_reduce, conv4_3x3, pool2_3x3_s2 (MAX)
    inception_a1..a3   35x35: 1x1 | 5x5_reduce-5x5 | 3x3_reduce-3x3_1-3x3_2 | pool-pool_proj
    reduction_a        3x3/2 | 3x3_2_reduce-3x3_2-3x3_3/2 | MAX pool/2
    inception_b1..b4   17x17, factorised 7x7 with 1x7/7x1 convolutions
    reduction_b        3x3_reduce-3x3/2 | 1x7_reduce-1x7-7x1-3x3_2/2 | MAX pool/2
    inception_c1..c2   8x8, split 1x3/3x1 branches; c1 pools by AVE, c2 by MAX (as MXNet)
    head        pool_8x8_s1 (global AVE), pool_8x8_s1_drop (Dropout 0.2), classifier, prob

Pooling keeps Caffe's default rounding (up), as the original does: the net is valid where every
3x3/2 reduction sees an odd map, so the convolution (rounding down) and the MAX pooling (rounding
up) beside it agree; 299 and 395 are such sizes. `valid_input_sizes` lists them.

The module also holds the size arithmetic the three Inception generators share.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from caffezoo.builder import NetBuilder, Size
from caffezoo.errors import NetDefinitionError
from caffezoo.generators.common import check_input_size, conv_bn
from caffezoo.geometry import caffe_pooled, conv_out
from caffezoo.proto import caffe_pb2

NAME = "inception_v3"
DEFAULT_INPUT_SIZE = 299
NUM_CLASSES = 1000
BN_EPS = 1e-3  # the original writes eps: 0.001 (MXNet's default) on every BatchNorm
DROPOUT = 0.2


@dataclass(frozen=True)
class Stages:
    """What varies between the blocks of a stage: one entry per block."""

    a_pool_proj: tuple[int, ...] = (32, 64, 64)  # 35x35 blocks: width of the pool projection
    b_channels_7x7: tuple[int, ...] = (128, 160, 160, 192)  # 17x17 blocks: 7x7 branch width
    c_pool: tuple[str, ...] = ("ave", "max")  # 8x8 blocks: pooling of the pool branch


STAGES = Stages()


# -- input sizes the Inception generators accept ----------------------------------------------


def valid_sizes(reductions: Callable[[int], Sequence[tuple[str, int]]], low: int,
                high: int) -> list[int]:
    """The input sizes in [low, high] at which every 3x3/2 reduction sees an odd map of at
    least 3x3 (`reductions(n)` lists (concat layer, map size) pairs)."""
    return [n for n in range(low, high + 1)
            if all(size >= 3 and size % 2 for _, size in reductions(n))]


def check_reductions(model: str, input_size: int, minimum: int,
                     reductions: Callable[[int], Sequence[tuple[str, int]]]) -> int:
    """`input_size`, or NetDefinitionError naming the first reduction whose convolution and
    ceil-rounded MAX pooling would produce different map sizes (Concat cannot join them)."""
    check_input_size(input_size, minimum, model)
    for layer, size in reductions(input_size):
        if size < 3 or size % 2 == 0:
            near = valid_sizes(reductions, max(minimum, input_size - 64), input_size + 64)
            below = [n for n in near if n < input_size][-1:]
            above = [n for n in near if n > input_size][:1]
            hint = " or ".join(str(n) for n in below + above)
            raise NetDefinitionError(
                f"{model}: input size {input_size} gives a {size}x{size} map at '{layer}', "
                f"where the 3x3/2 convolution rounds down and the MAX pooling rounds up, so "
                f"their outputs cannot be concatenated; use an input size such as {hint}")
    return input_size


def unit(b: NetBuilder, bottom: str, name: str, num_output: int, kernel: Size,
         stride: int = 1, pad: Size = 0, relu_name: str | None = None) -> str:
    """One Inception convolution: no bias, BatchNorm (eps 0.001), Scale, ReLU, in place."""
    return conv_bn(b, bottom, name, num_output, kernel, stride=stride, pad=pad, eps=BN_EPS,
                   relu_name=relu_name)


def factorised(b: NetBuilder, bottom: str, name: str, num_output: int, k: int,
               horizontal: bool) -> str:
    """A 1xk (`horizontal`) or kx1 `unit` with the 'same' padding."""
    if horizontal:
        return unit(b, bottom, name, num_output, (1, k), pad=(0, k // 2))
    return unit(b, bottom, name, num_output, (k, 1), pad=(k // 2, 0))


def head(b: NetBuilder, bottom: str, num_classes: int) -> str:
    """The original's tail: global AVE pooling named pool_8x8_s1 (whatever the map size),
    Dropout 0.2 into its own top pool_8x8_s1_drop, the classifier and the prob Softmax."""
    x = b.pool(bottom, "pool_8x8_s1", "ave", global_pooling=True)
    x = b.dropout(x, "pool_8x8_s1_drop", ratio=DROPOUT, top="pool_8x8_s1_drop")
    x = b.inner_product(x, "classifier", num_output=num_classes)
    return b.softmax(x, "prob")


# -- Inception-v3 --------------------------------------------------------------------------


def reductions(n: int) -> list[tuple[str, int]]:
    """(concat layer, input map size) of the two reductions for an n x n input."""
    n = conv_out(n, 3, 2)  # conv1_3x3_s2
    n = conv_out(n, 3)  # conv2_3x3_s1 (conv3_3x3_s1 keeps the size)
    n = caffe_pooled(n, 3, 2)  # pool1_3x3_s2
    n = conv_out(n, 3)  # conv4_3x3
    n = caffe_pooled(n, 3, 2)  # pool2_3x3_s2: the 35x35 stage
    red_a = n
    red_b = conv_out(n, 3, 2)  # the 17x17 stage
    return [("reduction_a_concat", red_a), ("reduction_b_concat", red_b)]


MIN_INPUT_SIZE = valid_sizes(reductions, 1, 200)[0]


def valid_input_sizes(low: int = MIN_INPUT_SIZE, high: int = 512) -> list[int]:
    """Input sizes in [low, high] that give a valid net."""
    return valid_sizes(reductions, low, high)


def build(input_size: int = DEFAULT_INPUT_SIZE, num_classes: int = NUM_CLASSES,
          stages: Stages = STAGES) -> caffe_pb2.NetParameter:
    """The deploy net for square inputs of `input_size` pixels (NetDefinitionError when that
    size cannot work, see the module docstring)."""
    check_reductions(NAME, input_size, MIN_INPUT_SIZE, reductions)
    b = NetBuilder(NAME)
    x = b.input("data", (1, 3, input_size, input_size))
    x = _stem(b, x)
    for i, proj in enumerate(stages.a_pool_proj, start=1):
        x = _block_a(b, x, f"inception_a{i}", proj)
    x = _reduction_a(b, x)
    for i, c7 in enumerate(stages.b_channels_7x7, start=1):
        x = _block_b(b, x, f"inception_b{i}", c7)
    x = _reduction_b(b, x)
    for i, pool in enumerate(stages.c_pool, start=1):
        x = _block_c(b, x, f"inception_c{i}", pool)
    head(b, x, num_classes)
    return b.net


def _stem(b: NetBuilder, x: str) -> str:
    # The stem's ReLU names do not follow <conv>_relu; kept as the original has them.
    x = unit(b, x, "conv1_3x3_s2", 32, 3, stride=2, relu_name="conv1_3x3_relu")
    x = unit(b, x, "conv2_3x3_s1", 32, 3, relu_name="conv2_3x3_relu")
    x = unit(b, x, "conv3_3x3_s1", 64, 3, pad=1, relu_name="conv3_3x3_relu")
    x = b.pool(x, "pool1_3x3_s2", "max", kernel=3, stride=2)
    x = unit(b, x, "conv4_3x3_reduce", 80, 1, relu_name="conv4_relu_3x3_reduce")
    x = unit(b, x, "conv4_3x3", 192, 3, relu_name="conv4_relu_3x3")
    return b.pool(x, "pool2_3x3_s2", "max", kernel=3, stride=2)


def _block_a(b: NetBuilder, x: str, p: str, pool_proj: int) -> str:
    b1 = unit(b, x, f"{p}_1x1", 64, 1)
    b2 = unit(b, x, f"{p}_5x5_reduce", 48, 1)
    b2 = unit(b, b2, f"{p}_5x5", 64, 5, pad=2)
    b3 = unit(b, x, f"{p}_3x3_reduce", 64, 1)
    b3 = unit(b, b3, f"{p}_3x3_1", 96, 3, pad=1)
    b3 = unit(b, b3, f"{p}_3x3_2", 96, 3, pad=1)
    b4 = b.pool(x, f"{p}_pool", "ave", kernel=3, stride=1, pad=1)
    b4 = unit(b, b4, f"{p}_pool_proj", pool_proj, 1)
    return b.concat([b1, b2, b3, b4], f"{p}_output")


def _reduction_a(b: NetBuilder, x: str) -> str:
    b1 = unit(b, x, "reduction_a_3x3", 384, 3, stride=2)
    b2 = unit(b, x, "reduction_a_3x3_2_reduce", 64, 1)
    b2 = unit(b, b2, "reduction_a_3x3_2", 96, 3, pad=1)
    b2 = unit(b, b2, "reduction_a_3x3_3", 96, 3, stride=2)
    b3 = b.pool(x, "reduction_a_pool", "max", kernel=3, stride=2)
    return b.concat([b1, b2, b3], "reduction_a_concat")


def _block_b(b: NetBuilder, x: str, p: str, c7: int) -> str:
    b1 = unit(b, x, f"{p}_1x1_2", 192, 1)
    b2 = unit(b, x, f"{p}_1x7_reduce", c7, 1)
    b2 = factorised(b, b2, f"{p}_1x7", c7, 7, horizontal=True)
    b2 = factorised(b, b2, f"{p}_7x1", 192, 7, horizontal=False)
    b3 = unit(b, x, f"{p}_7x1_reduce", c7, 1)
    b3 = factorised(b, b3, f"{p}_7x1_2", c7, 7, horizontal=False)
    b3 = factorised(b, b3, f"{p}_1x7_2", c7, 7, horizontal=True)
    b3 = factorised(b, b3, f"{p}_7x1_3", c7, 7, horizontal=False)
    b3 = factorised(b, b3, f"{p}_1x7_3", 192, 7, horizontal=True)
    b4 = b.pool(x, f"{p}_pool_ave", "ave", kernel=3, stride=1, pad=1)
    b4 = unit(b, b4, f"{p}_1x1", 192, 1)
    return b.concat([b1, b2, b3, b4], f"{p}_concat")


def _reduction_b(b: NetBuilder, x: str) -> str:
    b1 = unit(b, x, "reduction_b_3x3_reduce", 192, 1)
    b1 = unit(b, b1, "reduction_b_3x3", 320, 3, stride=2)
    b2 = unit(b, x, "reduction_b_1x7_reduce", 192, 1)
    b2 = factorised(b, b2, "reduction_b_1x7", 192, 7, horizontal=True)
    b2 = factorised(b, b2, "reduction_b_7x1", 192, 7, horizontal=False)
    b2 = unit(b, b2, "reduction_b_3x3_2", 192, 3, stride=2)
    b3 = b.pool(x, "reduction_b_pool", "max", kernel=3, stride=2)
    return b.concat([b1, b2, b3], "reduction_b_concat")


def _block_c(b: NetBuilder, x: str, p: str, pool: str) -> str:
    b1 = unit(b, x, f"{p}_1x1_2", 320, 1)
    b2 = unit(b, x, f"{p}_1x3_reduce", 384, 1)
    b2a = factorised(b, b2, f"{p}_1x3", 384, 3, horizontal=True)
    b2b = factorised(b, b2, f"{p}_3x1", 384, 3, horizontal=False)
    b3 = unit(b, x, f"{p}_3x3_reduce", 448, 1)
    b3 = unit(b, b3, f"{p}_3x3", 384, 3, pad=1)
    b3a = factorised(b, b3, f"{p}_1x3_2", 384, 3, horizontal=True)
    b3b = factorised(b, b3, f"{p}_3x1_2", 384, 3, horizontal=False)
    b4 = b.pool(x, f"{p}_pool", pool, kernel=3, stride=1, pad=1)
    b4 = unit(b, b4, f"{p}_1x1", 192, 1)
    return b.concat([b1, b2a, b2b, b3a, b3b, b4], f"{p}_concat")
