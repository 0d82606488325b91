"""Inception-ResNet-v2 (Szegedy et al. 2017) as the original zoo laid it out: the TF-slim
network converted to Caffe, with the background class dropped (1000 outputs), no auxiliary head.

Convolutions are no-bias `unit`s (BatchNorm eps 0.001, Scale, ReLU in place) except each
residual block's `_up` projection, a plain 1x1 convolution with bias. A residual block adds its
projection scaled by s to its input in one Eltwise SUM with coeff [1, s], then a ReLU in place:

    stem        conv1_3x3_s2, conv2_3x3_s1, conv3_3x3_s1, pool1_3x3_s2 (MAX), conv4_3x3_reduce,
                conv4_3x3, pool2_3x3_s2 (MAX), stem_concat = concat(conv5_1x1,
                conv5_5x5_reduce-conv5_5x5, conv5_3x3_reduce-conv5_3x3-conv5_3x3_2,
                ave_pool-conv5_1x1_ave)
    inception_resnet_v2_a1..a10  35x35: 1x1 | 3x3_reduce-3x3 | 3x3_2_reduce-3x3_2-3x3_3
                                 -> concat -> up (320), s = 0.17
    reduction_a     3x3/2 | 3x3_2_reduce-3x3_2-3x3_3/2 | MAX pool/2
    inception_resnet_v2_b1..b20  17x17: 1x1 | 1x7_reduce-1x7-7x1 -> concat -> up (1088), s = 0.1
    reduction_b     3x3_reduce-3x3/2 | 3x3_2_reduce-3x3_2/2 | 3x3_3_reduce-3x3_3-3x3_4/2
                    | MAX pool/2
    inception_resnet_v2_c1..c10  8x8: 1x1 | 1x3_reduce-1x3-3x1 -> concat -> up (2080), s = 0.2;
                                 the last block adds unscaled (no coeff) and has no ReLU
    conv6_1x1 (1536), then the head: pool_8x8_s1 (global AVE), pool_8x8_s1_drop (Dropout 0.2),
    classifier, prob

Pooling keeps Caffe's default rounding (up), as the original: valid input sizes are those where
both reductions see odd maps (299, 395, ...).
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

NAME = "inception_resnet_v2"
DEFAULT_INPUT_SIZE = 299
PREFIX = "inception_resnet_v2"


@dataclass(frozen=True)
class Stage:
    """A stage of residual blocks: how many, their residual scale and projection width."""

    letter: str
    blocks: int
    scale: float
    up: int


@dataclass(frozen=True)
class Stages:
    a: Stage = Stage("a", 10, 0.17, 320)
    b: Stage = Stage("b", 20, 0.1, 1088)
    c: Stage = Stage("c", 10, 0.2, 2080)  # the last block: scale 1, no ReLU


STAGES = Stages()


def reductions(n: int) -> list[tuple[str, int]]:
    """(concat layer, input map size) of the two reductions for an n x n input."""
    n = conv_out(n, 3, 2)  # conv1_3x3_s2
    n = conv_out(n, 3)  # conv2_3x3_s1 (conv3_3x3_s1 keeps the size)
    n = caffe_pooled(n, 3, 2)  # pool1_3x3_s2
    n = conv_out(n, 3)  # conv4_3x3
    n = caffe_pooled(n, 3, 2)  # pool2_3x3_s2: the 35x35 grid
    return [("reduction_a_concat", n), ("reduction_b_concat", conv_out(n, 3, 2))]


MIN_INPUT_SIZE = valid_sizes(reductions, 1, 200)[0]


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
    for i in range(1, stages.a.blocks + 1):
        x = _residual(b, x, stages.a, i, _branches_a)
    x = _reduction_a(b, x)
    for i in range(1, stages.b.blocks + 1):
        x = _residual(b, x, stages.b, i, _branches_b)
    x = _reduction_b(b, x)
    for i in range(1, stages.c.blocks + 1):
        x = _residual(b, x, stages.c, i, _branches_c, last=i == stages.c.blocks)
    x = unit(b, x, "conv6_1x1", 1536, 1)
    head(b, x, num_classes)
    return b.net


def _stem(b: NetBuilder, x: str) -> str:
    # The stem's ReLU names do not all follow <conv>_relu; kept as the original has them.
    x = unit(b, x, "conv1_3x3_s2", 32, 3, stride=2, relu_name="conv1_3x3_relu")
    x = unit(b, x, "conv2_3x3_s1", 32, 3, relu_name="conv2_3x3_relu")
    x = unit(b, x, "conv3_3x3_s1", 64, 3, pad=1, relu_name="conv3_3x3_relu")
    x = b.pool(x, "pool1_3x3_s2", "max", kernel=3, stride=2)
    x = unit(b, x, "conv4_3x3_reduce", 80, 1)
    x = unit(b, x, "conv4_3x3", 192, 3, relu_name="conv4_relu_3x3")
    x = b.pool(x, "pool2_3x3_s2", "max", kernel=3, stride=2)
    b1 = unit(b, x, "conv5_1x1", 96, 1)
    b2 = unit(b, x, "conv5_5x5_reduce", 48, 1)
    b2 = unit(b, b2, "conv5_5x5", 64, 5, pad=2)
    b3 = unit(b, x, "conv5_3x3_reduce", 64, 1)
    b3 = unit(b, b3, "conv5_3x3", 96, 3, pad=1)
    b3 = unit(b, b3, "conv5_3x3_2", 96, 3, pad=1)
    b4 = b.pool(x, "ave_pool", "ave", kernel=3, stride=1, pad=1)
    b4 = unit(b, b4, "conv5_1x1_ave", 64, 1)
    return b.concat([b1, b2, b3, b4], "stem_concat")


def _branches_a(b: NetBuilder, x: str, p: str) -> list[str]:
    b1 = unit(b, x, f"{p}_1x1", 32, 1)
    b2 = unit(b, x, f"{p}_3x3_reduce", 32, 1)
    b2 = unit(b, b2, f"{p}_3x3", 32, 3, pad=1)
    b3 = unit(b, x, f"{p}_3x3_2_reduce", 32, 1)
    b3 = unit(b, b3, f"{p}_3x3_2", 48, 3, pad=1)
    b3 = unit(b, b3, f"{p}_3x3_3", 64, 3, pad=1)
    return [b1, b2, b3]


def _branches_b(b: NetBuilder, x: str, p: str) -> list[str]:
    b1 = unit(b, x, f"{p}_1x1", 192, 1)
    b2 = unit(b, x, f"{p}_1x7_reduce", 128, 1)
    b2 = factorised(b, b2, f"{p}_1x7", 160, 7, horizontal=True)
    b2 = factorised(b, b2, f"{p}_7x1", 192, 7, horizontal=False)
    return [b1, b2]


def _branches_c(b: NetBuilder, x: str, p: str) -> list[str]:
    b1 = unit(b, x, f"{p}_1x1", 192, 1)
    b2 = unit(b, x, f"{p}_1x3_reduce", 192, 1)
    b2 = factorised(b, b2, f"{p}_1x3", 224, 3, horizontal=True)
    b2 = factorised(b, b2, f"{p}_3x1", 256, 3, horizontal=False)
    return [b1, b2]


def _residual(b: NetBuilder, x: str, stage: Stage, i: int, branches, last: bool = False) -> str:
    p = f"{PREFIX}_{stage.letter}{i}"
    cat = b.concat(branches(b, x, p), f"{p}_concat")
    up = b.conv(cat, f"{p}_up", num_output=stage.up, kernel=1)  # with bias, no BatchNorm
    name = f"{p}_residual_eltwise"
    if last:  # TF-slim's final Block8: scale 1.0 and no activation
        return b.eltwise([x, up], name, op="sum")
    y = b.eltwise([x, up], name, op="sum", coeff=[1.0, stage.scale])
    return b.relu(y, f"{name}_relu")


def _reduction_a(b: NetBuilder, x: str) -> str:
    b1 = unit(b, x, "reduction_a_3x3", 384, 3, stride=2)
    b2 = unit(b, x, "reduction_a_3x3_2_reduce", 256, 1)
    b2 = unit(b, b2, "reduction_a_3x3_2", 256, 3, pad=1)
    b2 = unit(b, b2, "reduction_a_3x3_3", 384, 3, stride=2)
    b3 = b.pool(x, "reduction_a_pool", "max", kernel=3, stride=2)
    return b.concat([b1, b2, b3], "reduction_a_concat")


def _reduction_b(b: NetBuilder, x: str) -> str:
    b1 = unit(b, x, "reduction_b_3x3_reduce", 256, 1)
    b1 = unit(b, b1, "reduction_b_3x3", 384, 3, stride=2)
    b2 = unit(b, x, "reduction_b_3x3_2_reduce", 256, 1)
    b2 = unit(b, b2, "reduction_b_3x3_2", 288, 3, stride=2)
    b3 = unit(b, x, "reduction_b_3x3_3_reduce", 256, 1)
    b3 = unit(b, b3, "reduction_b_3x3_3", 288, 3, pad=1)
    b3 = unit(b, b3, "reduction_b_3x3_4", 320, 3, stride=2)
    b4 = b.pool(x, "reduction_b_pool", "max", kernel=3, stride=2)
    return b.concat([b1, b2, b3, b4], "reduction_b_concat")
