"""Plans: how each TF-slim net's scopes map onto the zoo's layer names.

Every convolution carries its TF padding (`ConvSpec`), every pooling its TF window (`PoolSpec`
with `padding`), so the handlers check window by window that the Caffe net computes exactly
what TensorFlow does at the input size converted at, and refuse with the layer named otherwise.
The classifier leaves out slim's background output unless it is kept.
"""

from __future__ import annotations

from caffezoo.card_plan import Assign, ConvSpec, Op, Plan, PoolSpec
from caffezoo.converters.tfslim.nets import BACKGROUND_CLASSES, SlimNet

SAME, VALID = "SAME", "VALID"
LAYOUT = "tf-slim"


class _Plan:
    """Collects assignments under the net's scope."""

    def __init__(self, net: SlimNet) -> None:
        self.net = net
        self.scope = net.scope
        self.assigns: list[Assign] = []

    def cbs(self, src: str, dst: str, padding: str = SAME, pad: int = 0) -> None:
        """slim.conv2d with batch norm: conv `dst`, batch norm `dst_bn` + `dst_scale`."""
        src = f"{self.scope}/{src}"
        self.assigns += [Assign(Op.CONV, src, (dst,), conv=ConvSpec(padding, pad)),
                         Assign(Op.BN, f"{src}/BatchNorm", (f"{dst}_bn", f"{dst}_scale"),
                                eps=self.net.bn_eps)]

    def conv(self, src: str, dst: str, padding: str = SAME, pad: int = 0) -> None:
        """slim.conv2d without batch norm (with bias)."""
        self.assigns.append(Assign(Op.CONV, f"{self.scope}/{src}", (dst,),
                                   conv=ConvSpec(padding, pad)))

    def bn(self, src: str, prefix: str) -> None:
        self.assigns.append(Assign(Op.BN, f"{self.scope}/{src}",
                                   (f"{prefix}_bn", f"{prefix}_scale"), eps=self.net.bn_eps))

    def pool(self, src: str, dst: str, method: str, kernel: int, stride: int,
             padding: str) -> None:
        self.assigns.append(Assign(Op.POOL, f"{self.scope}/{src}", (dst,),
                                   pool=PoolSpec(method, kernel, stride, padding=padding)))

    def head(self, logits: str, classifier: str, pool: str, keep_background: bool) -> Plan:
        self.assigns.append(Assign(Op.POOL, "", (pool,), pool=PoolSpec("ave",
                                                                       global_pool=True)))
        self.assigns.append(Assign(Op.LINEAR, f"{self.scope}/{logits}", (classifier,),
                                   skip_rows=0 if keep_background else BACKGROUND_CLASSES))
        ignored = {}
        if self.net.aux_scope:
            ignored[f"{self.scope}/{self.net.aux_scope}/"] = ("the auxiliary classifier "
                                                              "(training only)")
        return Plan(LAYOUT, self.assigns, ignored=ignored,
                    hint=f"convert TF-slim's {self.scope} into --model {self.net.card}")


def _branches(p: _Plan, block: str, dst: str, table: dict[str, str]) -> None:
    for src, name in table.items():
        p.cbs(f"{block}/{src}", f"{dst}_{name}")


# -- Inception-v3 (tf_slim.nets.inception_v3) onto generators/inception_v3.py names ------------

_V3_A = {"Branch_0/Conv2d_0a_1x1": "1x1", "Branch_2/Conv2d_0a_1x1": "3x3_reduce",
         "Branch_2/Conv2d_0b_3x3": "3x3_1", "Branch_2/Conv2d_0c_3x3": "3x3_2",
         "Branch_3/Conv2d_0b_1x1": "pool_proj"}
# slim's names for the 5x5 branch differ per block (as in the released checkpoint)
_V3_A_5X5 = {"Mixed_5b": ("Conv2d_0a_1x1", "Conv2d_0b_5x5"),
             "Mixed_5c": ("Conv2d_0b_1x1", "Conv_1_0c_5x5"),
             "Mixed_5d": ("Conv2d_0a_1x1", "Conv2d_0b_5x5")}
_V3_B = {"Branch_0/Conv2d_0a_1x1": "1x1_2", "Branch_1/Conv2d_0a_1x1": "1x7_reduce",
         "Branch_1/Conv2d_0b_1x7": "1x7", "Branch_1/Conv2d_0c_7x1": "7x1",
         "Branch_2/Conv2d_0a_1x1": "7x1_reduce", "Branch_2/Conv2d_0b_7x1": "7x1_2",
         "Branch_2/Conv2d_0c_1x7": "1x7_2", "Branch_2/Conv2d_0d_7x1": "7x1_3",
         "Branch_2/Conv2d_0e_1x7": "1x7_3", "Branch_3/Conv2d_0b_1x1": "1x1"}
_V3_C = {"Branch_0/Conv2d_0a_1x1": "1x1_2", "Branch_1/Conv2d_0a_1x1": "1x3_reduce",
         "Branch_1/Conv2d_0b_1x3": "1x3", "Branch_2/Conv2d_0a_1x1": "3x3_reduce",
         "Branch_2/Conv2d_0b_3x3": "3x3", "Branch_2/Conv2d_0c_1x3": "1x3_2",
         "Branch_2/Conv2d_0d_3x1": "3x1_2", "Branch_3/Conv2d_0b_1x1": "1x1"}
_V3_C_3X1 = {"Mixed_7b": "Conv2d_0b_3x1", "Mixed_7c": "Conv2d_0c_3x1"}


def _first_convs(p: _Plan) -> None:
    """The three convolutions every slim Inception starts with."""
    p.cbs("Conv2d_1a_3x3", "conv1_3x3_s2", VALID)
    p.cbs("Conv2d_2a_3x3", "conv2_3x3_s1", VALID)
    p.cbs("Conv2d_2b_3x3", "conv3_3x3_s1")


def _stem(p: _Plan) -> None:
    """The stem Inception-v3 and Inception-ResNet-v2 share (Inception-v4 branches after the
    first three convolutions)."""
    _first_convs(p)
    p.pool("MaxPool_3a_3x3", "pool1_3x3_s2", "max", 3, 2, VALID)
    p.cbs("Conv2d_3b_1x1", "conv4_3x3_reduce", VALID)
    p.cbs("Conv2d_4a_3x3", "conv4_3x3", VALID)
    p.pool("MaxPool_5a_3x3", "pool2_3x3_s2", "max", 3, 2, VALID)


def inception_v3(net: SlimNet, keep_background: bool = False) -> Plan:
    p = _Plan(net)
    _stem(p)
    for i, block in enumerate(("Mixed_5b", "Mixed_5c", "Mixed_5d"), start=1):
        dst = f"inception_a{i}"
        first, second = _V3_A_5X5[block]
        _branches(p, block, dst, {**_V3_A, f"Branch_1/{first}": "5x5_reduce",
                                  f"Branch_1/{second}": "5x5"})
        p.pool(f"{block}/Branch_3/AvgPool_0a_3x3", f"{dst}_pool", "ave", 3, 1, SAME)
    p.cbs("Mixed_6a/Branch_0/Conv2d_1a_1x1", "reduction_a_3x3", VALID)
    p.cbs("Mixed_6a/Branch_1/Conv2d_0a_1x1", "reduction_a_3x3_2_reduce")
    p.cbs("Mixed_6a/Branch_1/Conv2d_0b_3x3", "reduction_a_3x3_2")
    p.cbs("Mixed_6a/Branch_1/Conv2d_1a_1x1", "reduction_a_3x3_3", VALID)
    p.pool("Mixed_6a/Branch_2/MaxPool_1a_3x3", "reduction_a_pool", "max", 3, 2, VALID)
    for i, block in enumerate(("Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"), start=1):
        _branches(p, block, f"inception_b{i}", _V3_B)
        p.pool(f"{block}/Branch_3/AvgPool_0a_3x3", f"inception_b{i}_pool_ave", "ave", 3, 1,
               SAME)
    p.cbs("Mixed_7a/Branch_0/Conv2d_0a_1x1", "reduction_b_3x3_reduce")
    p.cbs("Mixed_7a/Branch_0/Conv2d_1a_3x3", "reduction_b_3x3", VALID)
    p.cbs("Mixed_7a/Branch_1/Conv2d_0a_1x1", "reduction_b_1x7_reduce")
    p.cbs("Mixed_7a/Branch_1/Conv2d_0b_1x7", "reduction_b_1x7")
    p.cbs("Mixed_7a/Branch_1/Conv2d_0c_7x1", "reduction_b_7x1")
    p.cbs("Mixed_7a/Branch_1/Conv2d_1a_3x3", "reduction_b_3x3_2", VALID)
    p.pool("Mixed_7a/Branch_2/MaxPool_1a_3x3", "reduction_b_pool", "max", 3, 2, VALID)
    for i, block in enumerate(("Mixed_7b", "Mixed_7c"), start=1):
        _branches(p, block, f"inception_c{i}",
                  {**_V3_C, f"Branch_1/{_V3_C_3X1[block]}": "3x1"})
        p.pool(f"{block}/Branch_3/AvgPool_0a_3x3", f"inception_c{i}_pool", "ave", 3, 1, SAME)
    return p.head("Logits/Conv2d_1c_1x1", "classifier", "pool_8x8_s1", keep_background)


# -- Inception-v4 (caffezoo/model_defs/inception_v4.py) onto generators/inception_v4.py names ---

_V4_A = {"Branch_0/Conv2d_0a_1x1": "1x1_2", "Branch_1/Conv2d_0a_1x1": "3x3_reduce",
         "Branch_1/Conv2d_0b_3x3": "3x3", "Branch_2/Conv2d_0a_1x1": "3x3_2_reduce",
         "Branch_2/Conv2d_0b_3x3": "3x3_2", "Branch_2/Conv2d_0c_3x3": "3x3_3",
         "Branch_3/Conv2d_0b_1x1": "1x1"}
_V4_B = {"Branch_0/Conv2d_0a_1x1": "1x1_2", "Branch_1/Conv2d_0a_1x1": "1x7_reduce",
         "Branch_1/Conv2d_0b_1x7": "1x7", "Branch_1/Conv2d_0c_7x1": "7x1",
         "Branch_2/Conv2d_0a_1x1": "7x1_2_reduce", "Branch_2/Conv2d_0b_7x1": "7x1_2",
         "Branch_2/Conv2d_0c_1x7": "1x7_2", "Branch_2/Conv2d_0d_7x1": "7x1_3",
         "Branch_2/Conv2d_0e_1x7": "1x7_3", "Branch_3/Conv2d_0b_1x1": "1x1"}
_V4_C = {"Branch_0/Conv2d_0a_1x1": "1x1_2", "Branch_1/Conv2d_0a_1x1": "1x1_3",
         "Branch_1/Conv2d_0b_1x3": "1x3", "Branch_1/Conv2d_0c_3x1": "3x1",
         "Branch_2/Conv2d_0a_1x1": "1x1_4", "Branch_2/Conv2d_0b_3x1": "3x1_2",
         "Branch_2/Conv2d_0c_1x3": "1x3_2", "Branch_2/Conv2d_0d_1x3": "1x3_3",
         "Branch_2/Conv2d_0e_3x1": "3x1_3", "Branch_3/Conv2d_0b_1x1": "1x1"}


def inception_v4(net: SlimNet, keep_background: bool = False) -> Plan:
    p = _Plan(net)
    _first_convs(p)
    p.pool("Mixed_3a/Branch_0/MaxPool_0a_3x3", "inception_stem1_pool", "max", 3, 2, VALID)
    p.cbs("Mixed_3a/Branch_1/Conv2d_0a_3x3", "inception_stem1_3x3_s2", VALID)
    p.cbs("Mixed_4a/Branch_0/Conv2d_0a_1x1", "inception_stem2_3x3_reduce")
    p.cbs("Mixed_4a/Branch_0/Conv2d_1a_3x3", "inception_stem2_3x3", VALID)
    p.cbs("Mixed_4a/Branch_1/Conv2d_0a_1x1", "inception_stem2_1x7_reduce")
    p.cbs("Mixed_4a/Branch_1/Conv2d_0b_1x7", "inception_stem2_1x7")
    p.cbs("Mixed_4a/Branch_1/Conv2d_0c_7x1", "inception_stem2_7x1")
    p.cbs("Mixed_4a/Branch_1/Conv2d_1a_3x3", "inception_stem2_3x3_2", VALID)
    p.cbs("Mixed_5a/Branch_0/Conv2d_1a_3x3", "inception_stem3_3x3_s2", VALID)
    p.pool("Mixed_5a/Branch_1/MaxPool_1a_3x3", "inception_stem3_pool", "max", 3, 2, VALID)
    for letter, table, blocks in (("a", _V4_A, "bcde"), ("b", _V4_B, "bcdefgh"),
                                  ("c", _V4_C, "bcd")):
        stage = {"a": "Mixed_5", "b": "Mixed_6", "c": "Mixed_7"}[letter]
        for i, c in enumerate(blocks, start=1):
            block, dst = f"{stage}{c}", f"inception_{letter}{i}"
            _branches(p, block, dst, table)
            p.pool(f"{block}/Branch_3/AvgPool_0a_3x3", f"{dst}_pool_ave", "ave", 3, 1, SAME)
        if letter == "a":
            p.cbs("Mixed_6a/Branch_0/Conv2d_1a_3x3", "reduction_a_3x3", VALID)
            p.cbs("Mixed_6a/Branch_1/Conv2d_0a_1x1", "reduction_a_3x3_2_reduce")
            p.cbs("Mixed_6a/Branch_1/Conv2d_0b_3x3", "reduction_a_3x3_2")
            p.cbs("Mixed_6a/Branch_1/Conv2d_1a_3x3", "reduction_a_3x3_3", VALID)
            p.pool("Mixed_6a/Branch_2/MaxPool_1a_3x3", "reduction_a_pool", "max", 3, 2, VALID)
        elif letter == "b":
            p.cbs("Mixed_7a/Branch_0/Conv2d_0a_1x1", "reduction_b_3x3_reduce")
            p.cbs("Mixed_7a/Branch_0/Conv2d_1a_3x3", "reduction_b_3x3", VALID)
            p.cbs("Mixed_7a/Branch_1/Conv2d_0a_1x1", "reduction_b_1x7_reduce")
            p.cbs("Mixed_7a/Branch_1/Conv2d_0b_1x7", "reduction_b_1x7")
            p.cbs("Mixed_7a/Branch_1/Conv2d_0c_7x1", "reduction_b_7x1")
            p.cbs("Mixed_7a/Branch_1/Conv2d_1a_3x3", "reduction_b_3x3_2", VALID)
            p.pool("Mixed_7a/Branch_2/MaxPool_1a_3x3", "reduction_b_pool", "max", 3, 2, VALID)
    return p.head("Logits/Logits", "classifier", "pool_8x8_s1", keep_background)


# -- Inception-ResNet-v2 (caffezoo/model_defs/inception_resnet_v2.py) --------------------------

_IRV2 = {
    "a": {"Branch_0/Conv2d_1x1": "1x1", "Branch_1/Conv2d_0a_1x1": "3x3_reduce",
          "Branch_1/Conv2d_0b_3x3": "3x3", "Branch_2/Conv2d_0a_1x1": "3x3_2_reduce",
          "Branch_2/Conv2d_0b_3x3": "3x3_2", "Branch_2/Conv2d_0c_3x3": "3x3_3"},
    "b": {"Branch_0/Conv2d_1x1": "1x1", "Branch_1/Conv2d_0a_1x1": "1x7_reduce",
          "Branch_1/Conv2d_0b_1x7": "1x7", "Branch_1/Conv2d_0c_7x1": "7x1"},
    "c": {"Branch_0/Conv2d_1x1": "1x1", "Branch_1/Conv2d_0a_1x1": "1x3_reduce",
          "Branch_1/Conv2d_0b_1x3": "1x3", "Branch_1/Conv2d_0c_3x1": "3x1"},
}


def inception_resnet_v2(net: SlimNet, keep_background: bool = False) -> Plan:
    from caffezoo.model_defs.inception_resnet_v2 import BLOCKS

    p = _Plan(net)
    _stem(p)
    _branches(p, "Mixed_5b", "conv5", {"Branch_0/Conv2d_1x1": "1x1",
                                       "Branch_1/Conv2d_0a_1x1": "5x5_reduce",
                                       "Branch_1/Conv2d_0b_5x5": "5x5",
                                       "Branch_2/Conv2d_0a_1x1": "3x3_reduce",
                                       "Branch_2/Conv2d_0b_3x3": "3x3",
                                       "Branch_2/Conv2d_0c_3x3": "3x3_2",
                                       "Branch_3/Conv2d_0b_1x1": "1x1_ave"})
    p.pool("Mixed_5b/Branch_3/AvgPool_0a_3x3", "ave_pool", "ave", 3, 1, SAME)
    blocks = [(letter, f"{repeat}/{name}_{i}", scale)
              for letter, (repeat, name, count, scale) in zip("abc", BLOCKS, strict=True)
              for i in range(1, count + 1)]
    blocks.append(("c", "Block8", 1.0))
    counters = {"a": 0, "b": 0, "c": 0}
    for letter, block, scale in blocks:
        counters[letter] += 1
        dst = f"inception_resnet_v2_{letter}{counters[letter]}"
        _branches(p, block, dst, _IRV2[letter])
        p.conv(f"{block}/Conv2d_1x1", f"{dst}_up")
        p.assigns.append(Assign(Op.ELTWISE, f"{net.scope}/{block}",
                                (f"{dst}_residual_eltwise",), coeff=(1.0, scale)))
        if letter == "a" and counters["a"] == BLOCKS[0][2]:
            p.cbs("Mixed_6a/Branch_0/Conv2d_1a_3x3", "reduction_a_3x3", VALID)
            p.cbs("Mixed_6a/Branch_1/Conv2d_0a_1x1", "reduction_a_3x3_2_reduce")
            p.cbs("Mixed_6a/Branch_1/Conv2d_0b_3x3", "reduction_a_3x3_2")
            p.cbs("Mixed_6a/Branch_1/Conv2d_1a_3x3", "reduction_a_3x3_3", VALID)
            p.pool("Mixed_6a/Branch_2/MaxPool_1a_3x3", "reduction_a_pool", "max", 3, 2, VALID)
        if letter == "b" and counters["b"] == BLOCKS[1][2]:
            p.cbs("Mixed_7a/Branch_0/Conv2d_0a_1x1", "reduction_b_3x3_reduce")
            p.cbs("Mixed_7a/Branch_0/Conv2d_1a_3x3", "reduction_b_3x3", VALID)
            p.cbs("Mixed_7a/Branch_1/Conv2d_0a_1x1", "reduction_b_3x3_2_reduce")
            p.cbs("Mixed_7a/Branch_1/Conv2d_1a_3x3", "reduction_b_3x3_2", VALID)
            p.cbs("Mixed_7a/Branch_2/Conv2d_0a_1x1", "reduction_b_3x3_3_reduce")
            p.cbs("Mixed_7a/Branch_2/Conv2d_0b_3x3", "reduction_b_3x3_3")
            p.cbs("Mixed_7a/Branch_2/Conv2d_1a_3x3", "reduction_b_3x3_4", VALID)
            p.pool("Mixed_7a/Branch_3/MaxPool_1a_3x3", "reduction_b_pool", "max", 3, 2, VALID)
    p.cbs("Conv2d_7b_1x1", "conv6_1x1")
    return p.head("Logits/Logits", "classifier", "pool_8x8_s1", keep_background)


# -- ResNet-v2 (tf_slim.nets.resnet_v2) onto generators/variants_tfslim.py names -------------


def resnet_v2(net: SlimNet, keep_background: bool = False) -> Plan:
    from caffezoo.generators.variants_tfslim import RESNETS

    spec = RESNETS[net.card]
    p = _Plan(net)
    p.conv("conv1", "conv1", "EXPLICIT", 3)  # conv2d_same: 3 pixels each side, then VALID
    p.pool("pool1", "pool1", "max", 3, 2, SAME)
    k, depth_in = 0, 64
    for b, (units, width, stride) in enumerate(zip(spec.units, spec.widths, spec.strides,
                                                   strict=True), start=1):
        for u in range(1, units + 1):
            k += 1
            src, dst = f"block{b}/unit_{u}/bottleneck_v2", f"res{k}"
            s = stride if u == units else 1
            p.bn(f"{src}/preact", "conv1" if k == 1 else dst)
            if depth_in != 4 * width:
                p.conv(f"{src}/shortcut", f"{dst}_match_conv")
            elif s > 1:
                p.pool(f"{src}/shortcut", f"{dst}_match_pool", "max", 1, s, SAME)
            p.cbs(f"{src}/conv1", f"{dst}_conv1")
            if s > 1:
                p.cbs(f"{src}/conv2", f"{dst}_conv2", "EXPLICIT", 1)
            else:
                p.cbs(f"{src}/conv2", f"{dst}_conv2")
            p.conv(f"{src}/conv3", f"{dst}_conv3")
            p.assigns.append(Assign(Op.ELTWISE, f"{net.scope}/{src}", (f"{dst}_eletwise",)))
            depth_in = 4 * width
    p.bn("postnorm", f"res{k}_eletwise")
    return p.head("logits", "classifier", "pool5", keep_background)


PLANS = {"InceptionV3": inception_v3, "InceptionV4": inception_v4,
         "InceptionResnetV2": inception_resnet_v2, "resnet_v2_101": resnet_v2,
         "resnet_v2_152": resnet_v2}


def plan_for(net: SlimNet, keep_background: bool = False) -> Plan:
    return PLANS[net.scope](net, keep_background)
