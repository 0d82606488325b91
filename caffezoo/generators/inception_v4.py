"""Inception-v4 (Szegedy et al. 2017) as the original zoo laid it out: the TF-slim network
converted to Caffe, with the background class dropped (1000 outputs) and no auxiliary head.

Every convolution is a no-bias `unit` with BatchNorm eps 0.001, Scale and ReLU in place, named
`<conv>_bn`, `<conv>_scale`, `<conv>_relu`. The stages (block counts are data, `STAGES`):

    stem        conv1_3x3_s2, conv2_3x3_s1, conv3_3x3_s1
                inception_stem1 = concat(MAX pool/2, 3x3_s2)
                inception_stem2 = concat(3x3_reduce-3x3, 1x7_reduce-1x7-7x1-3x3_2), unpadded
                inception_stem3 = concat(3x3_s2, MAX pool/2)
    inception_a1..a4   35x35: 1x1_2 | 3x3_reduce-3x3 | 3x3_2_reduce-3x3_2-3x3_3 | pool_ave-1x1
    reduction_a        3x3/2 | 3x3_2_reduce-3x3_2-3x3_3/2 | MAX pool/2
    inception_b1..b7   17x17: 1x1_2 | 1x7_reduce-1x7-7x1 | 7x1_2_reduce-7x1_2-1x7_2-7x1_3-1x7_3
                       | pool_ave-1x1
    reduction_b        3x3_reduce-3x3/2 | 1x7_reduce-1x7-7x1-3x3_2/2 | MAX pool/2
    inception_c1..c3   8x8: 1x1_2 | 1x1_3-(1x3, 3x1) | 1x1_4-3x1_2-1x3_2-(1x3_3, 3x1_3)
                       | pool_ave-1x1
    head        pool_8x8_s1 (global AVE), pool_8x8_s1_drop (Dropout 0.2), classifier, prob

Pooling keeps Caffe's default rounding (up), as the original: valid input sizes are those where
the four places a 3x3/2 convolution meets a 3x3/2 MAX pooling see odd maps (299, 395, ...).
"""

from __future__ import annotations

from dataclasses import dataclass

from caffezoo.builder import NetBuilder
from caffezoo.generators.inception_v3 import (
    NUM_CLASSES,
    check_reductions,
    factorised,
    head,
    unit,
    valid_sizes,
)
from caffezoo.geometry import caffe_pooled, conv_out
from caffezoo.proto import caffe_pb2

NAME = "inception_v4"
DEFAULT_INPUT_SIZE = 299


@dataclass(frozen=True)
class Stages:
    """Blocks per stage of the 35x35, 17x17 and 8x8 grids."""

    a: int = 4
    b: int = 7
    c: int = 3


STAGES = Stages()


def reductions(n: int) -> list[tuple[str, int]]:
    """(concat layer, input map size) where a 3x3/2 convolution meets a 3x3/2 MAX pooling."""
    n = conv_out(n, 3, 2)  # conv1_3x3_s2
    n = conv_out(n, 3)  # conv2_3x3_s1 (conv3_3x3_s1 keeps the size)
    stem1 = n
    n = caffe_pooled(n, 3, 2)  # inception_stem1
    n = conv_out(n, 3)  # inception_stem2: both branches end in an unpadded 3x3
    stem3 = n
    n = caffe_pooled(n, 3, 2)  # inception_stem3: the 35x35 grid
    red_a = n
    red_b = conv_out(n, 3, 2)  # the 17x17 grid
    return [("inception_stem1", stem1), ("inception_stem3", stem3),
            ("reduction_a_concat", red_a), ("reduction_b_concat", red_b)]


MIN_INPUT_SIZE = valid_sizes(reductions, 1, 300)[0]


def valid_input_sizes(low: int = MIN_INPUT_SIZE, high: int = 512) -> list[int]:
    """Input sizes in [low, high] that give a valid net."""
    return valid_sizes(reductions, low, high)


def build(input_size: int = DEFAULT_INPUT_SIZE, num_classes: int = NUM_CLASSES,
          stages: Stages = STAGES) -> caffe_pb2.NetParameter:
    """The deploy net for square inputs of `input_size` pixels (NetDefinitionError when that
    size cannot work)."""
    check_reductions(NAME, input_size, MIN_INPUT_SIZE, reductions)
    b = NetBuilder(NAME)
    x = b.input("data", (1, 3, input_size, input_size))
    x = _stem(b, x)
    for i in range(1, stages.a + 1):
        x = _block_a(b, x, f"inception_a{i}")
    x = _reduction_a(b, x)
    for i in range(1, stages.b + 1):
        x = _block_b(b, x, f"inception_b{i}")
    x = _reduction_b(b, x)
    for i in range(1, stages.c + 1):
        x = _block_c(b, x, f"inception_c{i}")
    head(b, x, num_classes)
    return b.net


def _stem(b: NetBuilder, x: str) -> str:
    x = unit(b, x, "conv1_3x3_s2", 32, 3, stride=2)
    x = unit(b, x, "conv2_3x3_s1", 32, 3)
    x = unit(b, x, "conv3_3x3_s1", 64, 3, pad=1)
    conv = unit(b, x, "inception_stem1_3x3_s2", 96, 3, stride=2)
    pool = b.pool(x, "inception_stem1_pool", "max", kernel=3, stride=2)
    x = b.concat([pool, conv], "inception_stem1")  # pool first, as TF-slim's Mixed_3a
    b1 = unit(b, x, "inception_stem2_3x3_reduce", 64, 1)
    b1 = unit(b, b1, "inception_stem2_3x3", 96, 3)
    b2 = unit(b, x, "inception_stem2_1x7_reduce", 64, 1)
    b2 = factorised(b, b2, "inception_stem2_1x7", 64, 7, horizontal=True)
    b2 = factorised(b, b2, "inception_stem2_7x1", 64, 7, horizontal=False)
    b2 = unit(b, b2, "inception_stem2_3x3_2", 96, 3)
    x = b.concat([b1, b2], "inception_stem2")
    conv = unit(b, x, "inception_stem3_3x3_s2", 192, 3, stride=2)
    pool = b.pool(x, "inception_stem3_pool", "max", kernel=3, stride=2)
    return b.concat([conv, pool], "inception_stem3")


def _block_a(b: NetBuilder, x: str, p: str) -> str:
    b1 = unit(b, x, f"{p}_1x1_2", 96, 1)
    b2 = unit(b, x, f"{p}_3x3_reduce", 64, 1)
    b2 = unit(b, b2, f"{p}_3x3", 96, 3, pad=1)
    b3 = unit(b, x, f"{p}_3x3_2_reduce", 64, 1)
    b3 = unit(b, b3, f"{p}_3x3_2", 96, 3, pad=1)
    b3 = unit(b, b3, f"{p}_3x3_3", 96, 3, pad=1)
    b4 = b.pool(x, f"{p}_pool_ave", "ave", kernel=3, stride=1, pad=1)
    b4 = unit(b, b4, f"{p}_1x1", 96, 1)
    return b.concat([b1, b2, b3, b4], f"{p}_concat")


def _reduction_a(b: NetBuilder, x: str) -> str:
    b1 = unit(b, x, "reduction_a_3x3", 384, 3, stride=2)
    b2 = unit(b, x, "reduction_a_3x3_2_reduce", 192, 1)
    b2 = unit(b, b2, "reduction_a_3x3_2", 224, 3, pad=1)
    b2 = unit(b, b2, "reduction_a_3x3_3", 256, 3, stride=2)
    b3 = b.pool(x, "reduction_a_pool", "max", kernel=3, stride=2)
    return b.concat([b1, b2, b3], "reduction_a_concat")


def _block_b(b: NetBuilder, x: str, p: str) -> str:
    b1 = unit(b, x, f"{p}_1x1_2", 384, 1)
    b2 = unit(b, x, f"{p}_1x7_reduce", 192, 1)
    b2 = factorised(b, b2, f"{p}_1x7", 224, 7, horizontal=True)
    b2 = factorised(b, b2, f"{p}_7x1", 256, 7, horizontal=False)
    b3 = unit(b, x, f"{p}_7x1_2_reduce", 192, 1)
    b3 = factorised(b, b3, f"{p}_7x1_2", 192, 7, horizontal=False)
    b3 = factorised(b, b3, f"{p}_1x7_2", 224, 7, horizontal=True)
    b3 = factorised(b, b3, f"{p}_7x1_3", 224, 7, horizontal=False)
    b3 = factorised(b, b3, f"{p}_1x7_3", 256, 7, horizontal=True)
    b4 = b.pool(x, f"{p}_pool_ave", "ave", kernel=3, stride=1, pad=1)
    b4 = unit(b, b4, f"{p}_1x1", 128, 1)
    return b.concat([b1, b2, b3, b4], f"{p}_concat")


def _reduction_b(b: NetBuilder, x: str) -> str:
    b1 = unit(b, x, "reduction_b_3x3_reduce", 192, 1)
    b1 = unit(b, b1, "reduction_b_3x3", 192, 3, stride=2)
    b2 = unit(b, x, "reduction_b_1x7_reduce", 256, 1)
    b2 = factorised(b, b2, "reduction_b_1x7", 256, 7, horizontal=True)
    b2 = factorised(b, b2, "reduction_b_7x1", 320, 7, horizontal=False)
    b2 = unit(b, b2, "reduction_b_3x3_2", 320, 3, stride=2)
    b3 = b.pool(x, "reduction_b_pool", "max", kernel=3, stride=2)
    return b.concat([b1, b2, b3], "reduction_b_concat")


def _block_c(b: NetBuilder, x: str, p: str) -> str:
    b1 = unit(b, x, f"{p}_1x1_2", 256, 1)
    b2 = unit(b, x, f"{p}_1x1_3", 384, 1)
    b2a = factorised(b, b2, f"{p}_1x3", 256, 3, horizontal=True)
    b2b = factorised(b, b2, f"{p}_3x1", 256, 3, horizontal=False)
    b3 = unit(b, x, f"{p}_1x1_4", 384, 1)
    b3 = factorised(b, b3, f"{p}_3x1_2", 448, 3, horizontal=False)
    b3 = factorised(b, b3, f"{p}_1x3_2", 512, 3, horizontal=True)
    b3a = factorised(b, b3, f"{p}_1x3_3", 256, 3, horizontal=True)
    b3b = factorised(b, b3, f"{p}_3x1_3", 256, 3, horizontal=False)
    b4 = b.pool(x, f"{p}_pool_ave", "ave", kernel=3, stride=1, pad=1)
    b4 = unit(b, b4, f"{p}_1x1", 256, 1)
    return b.concat([b1, b2a, b2b, b3a, b3b, b4], f"{p}_concat")
