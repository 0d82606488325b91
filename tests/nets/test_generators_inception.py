"""The Inception generators reproduce the original zoo's deploy nets.

The expectations below are a description of each architecture written down from facts (the
papers, the TF-slim / MXNet layouts the originals were converted from, and the original zoo's
naming scheme): the sequence of convolution / pooling / concat / eltwise layers block by block,
the stride-2 and unpadded convolutions, the MAX pools, the residual scales, the channel widths of
every stage, and the published parameter and MAC counts. None of it is read from the generators.
Real Caffe and OpenCV then load the generated nets, run them with random weights and agree.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from types import ModuleType

import numpy as np
import pytest

from caffezoo import netio
from caffezoo.analysis import analyze
from caffezoo.errors import NetDefinitionError
from caffezoo.generators import inception_resnet_v2, inception_v3, inception_v4

# -- the description ------------------------------------------------------------------------


@dataclass(frozen=True)
class Arch:
    module: ModuleType
    sequence: list[str]  # every layer except BatchNorm/Scale/ReLU, in order
    counts: dict[str, int]  # layers per type
    stride2: set[str]  # convolutions with stride 2
    unpadded: set[str]  # stride-1 convolutions without padding ("VALID")
    max_pools: list[tuple[str, int, int, int]]  # (name, kernel, stride, pad) in order
    widths: dict[str, int]  # channels of stage outputs
    grids: dict[str, int]  # blob -> spatial size at 299 (35x35, 17x17, 8x8 grids)
    published_params_m: float  # FACTS §5
    published_gmacs: float  # at 299, the usual figures (torchvision / timm model cards)
    # Concat layers: (name pattern, bottoms in order); "{p}" is the pattern's group p
    concats: list[tuple[str, list[str]]] = field(default_factory=list)
    relu_names: dict[str, str] = field(default_factory=dict)  # convs whose ReLU is not <conv>_relu


def blocks(prefix: str, count: int, layers: list[str]) -> list[str]:
    return [f"{prefix}{i}_{s}" for i in range(1, count + 1) for s in layers]


TAIL = ["pool_8x8_s1", "pool_8x8_s1_drop", "classifier", "prob"]

V3 = Arch(
    module=inception_v3,
    sequence=["data", "conv1_3x3_s2", "conv2_3x3_s1", "conv3_3x3_s1", "pool1_3x3_s2",
              "conv4_3x3_reduce", "conv4_3x3", "pool2_3x3_s2"]
    + blocks("inception_a", 3, ["1x1", "5x5_reduce", "5x5", "3x3_reduce", "3x3_1", "3x3_2",
                                "pool", "pool_proj", "output"])
    + ["reduction_a_3x3", "reduction_a_3x3_2_reduce", "reduction_a_3x3_2", "reduction_a_3x3_3",
       "reduction_a_pool", "reduction_a_concat"]
    + blocks("inception_b", 4, ["1x1_2", "1x7_reduce", "1x7", "7x1", "7x1_reduce", "7x1_2",
                                "1x7_2", "7x1_3", "1x7_3", "pool_ave", "1x1", "concat"])
    + ["reduction_b_3x3_reduce", "reduction_b_3x3", "reduction_b_1x7_reduce", "reduction_b_1x7",
       "reduction_b_7x1", "reduction_b_3x3_2", "reduction_b_pool", "reduction_b_concat"]
    + blocks("inception_c", 2, ["1x1_2", "1x3_reduce", "1x3", "3x1", "3x3_reduce", "3x3",
                                "1x3_2", "3x1_2", "pool", "1x1", "concat"])
    + TAIL,
    # convolutions: stem 5, A 7 x 3, reduction A 4, B 10 x 4, reduction B 6, C 9 x 2
    counts={"Input": 1, "Convolution": 5 + 21 + 4 + 40 + 6 + 18, "Pooling": 2 + 3 + 1 + 4 + 1
            + 2 + 1, "Concat": 3 + 1 + 4 + 1 + 2, "Dropout": 1, "InnerProduct": 1,
            "Softmax": 1},
    stride2={"conv1_3x3_s2", "reduction_a_3x3", "reduction_a_3x3_3", "reduction_b_3x3",
             "reduction_b_3x3_2"},
    unpadded={"conv2_3x3_s1", "conv4_3x3"},
    max_pools=[("pool1_3x3_s2", 3, 2, 0), ("pool2_3x3_s2", 3, 2, 0),
               ("reduction_a_pool", 3, 2, 0), ("reduction_b_pool", 3, 2, 0),
               ("inception_c2_pool", 3, 1, 1)],  # MXNet's last block pools by MAX
    widths={"pool2_3x3_s2": 192, "inception_a1_output": 256, "inception_a2_output": 288,
            "inception_a3_output": 288, "reduction_a_concat": 768, "inception_b4_concat": 768,
            "reduction_b_concat": 1280, "inception_c1_concat": 2048,
            "inception_c2_concat": 2048},
    grids={"inception_a3_output": 35, "inception_b4_concat": 17, "inception_c2_concat": 8},
    published_params_m=23.8, published_gmacs=5.7,
    concats=[(r"(?P<p>inception_a\d)_output", ["{p}_1x1", "{p}_5x5", "{p}_3x3_2", "{p}_pool_proj"]),
             (r"(?P<p>reduction_a)_concat", ["{p}_3x3", "{p}_3x3_3", "{p}_pool"]),
             (r"(?P<p>inception_b\d)_concat", ["{p}_1x1_2", "{p}_7x1", "{p}_1x7_3", "{p}_1x1"]),
             (r"(?P<p>reduction_b)_concat", ["{p}_3x3", "{p}_3x3_2", "{p}_pool"]),
             (r"(?P<p>inception_c\d)_concat", ["{p}_1x1_2", "{p}_1x3", "{p}_3x1", "{p}_1x3_2",
                                               "{p}_3x1_2", "{p}_1x1"])],
    relu_names={"conv1_3x3_s2": "conv1_3x3_relu", "conv2_3x3_s1": "conv2_3x3_relu",
                "conv3_3x3_s1": "conv3_3x3_relu", "conv4_3x3_reduce": "conv4_relu_3x3_reduce",
                "conv4_3x3": "conv4_relu_3x3"},
)

V4 = Arch(
    module=inception_v4,
    sequence=["data", "conv1_3x3_s2", "conv2_3x3_s1", "conv3_3x3_s1",
              "inception_stem1_3x3_s2", "inception_stem1_pool", "inception_stem1",
              "inception_stem2_3x3_reduce", "inception_stem2_3x3", "inception_stem2_1x7_reduce",
              "inception_stem2_1x7", "inception_stem2_7x1", "inception_stem2_3x3_2",
              "inception_stem2", "inception_stem3_3x3_s2", "inception_stem3_pool",
              "inception_stem3"]
    + blocks("inception_a", 4, ["1x1_2", "3x3_reduce", "3x3", "3x3_2_reduce", "3x3_2", "3x3_3",
                                "pool_ave", "1x1", "concat"])
    + ["reduction_a_3x3", "reduction_a_3x3_2_reduce", "reduction_a_3x3_2", "reduction_a_3x3_3",
       "reduction_a_pool", "reduction_a_concat"]
    + blocks("inception_b", 7, ["1x1_2", "1x7_reduce", "1x7", "7x1", "7x1_2_reduce", "7x1_2",
                                "1x7_2", "7x1_3", "1x7_3", "pool_ave", "1x1", "concat"])
    + ["reduction_b_3x3_reduce", "reduction_b_3x3", "reduction_b_1x7_reduce", "reduction_b_1x7",
       "reduction_b_7x1", "reduction_b_3x3_2", "reduction_b_pool", "reduction_b_concat"]
    + blocks("inception_c", 3, ["1x1_2", "1x1_3", "1x3", "3x1", "1x1_4", "3x1_2", "1x3_2",
                                "1x3_3", "3x1_3", "pool_ave", "1x1", "concat"])
    + TAIL,
    # convolutions: stem 3 + 1 + 6 + 1, A 7 x 4, reduction A 4, B 10 x 7, reduction B 6, C 10 x 3
    counts={"Input": 1, "Convolution": 11 + 28 + 4 + 70 + 6 + 30, "Pooling": 2 + 4 + 1 + 7 + 1
            + 3 + 1, "Concat": 3 + 4 + 1 + 7 + 1 + 3, "Dropout": 1, "InnerProduct": 1,
            "Softmax": 1},
    stride2={"conv1_3x3_s2", "inception_stem1_3x3_s2", "inception_stem3_3x3_s2",
             "reduction_a_3x3", "reduction_a_3x3_3", "reduction_b_3x3", "reduction_b_3x3_2"},
    unpadded={"conv2_3x3_s1", "inception_stem2_3x3", "inception_stem2_3x3_2"},
    max_pools=[("inception_stem1_pool", 3, 2, 0), ("inception_stem3_pool", 3, 2, 0),
               ("reduction_a_pool", 3, 2, 0), ("reduction_b_pool", 3, 2, 0)],
    widths={"inception_stem1": 160, "inception_stem2": 192, "inception_stem3": 384,
            "inception_a4_concat": 384, "reduction_a_concat": 1024,
            "inception_b7_concat": 1024, "reduction_b_concat": 1536,
            "inception_c3_concat": 1536},
    grids={"inception_a4_concat": 35, "inception_b7_concat": 17, "inception_c3_concat": 8},
    published_params_m=42.7, published_gmacs=12.3,
    # TF-slim's Mixed_3a puts the pool branch first, Mixed_5a last
    concats=[(r"(?P<p>inception_stem1)", ["{p}_pool", "{p}_3x3_s2"]),
             (r"(?P<p>inception_stem2)", ["{p}_3x3", "{p}_3x3_2"]),
             (r"(?P<p>inception_stem3)", ["{p}_3x3_s2", "{p}_pool"]),
             (r"(?P<p>inception_a\d)_concat", ["{p}_1x1_2", "{p}_3x3", "{p}_3x3_3", "{p}_1x1"]),
             (r"(?P<p>reduction_a)_concat", ["{p}_3x3", "{p}_3x3_3", "{p}_pool"]),
             (r"(?P<p>inception_b\d)_concat", ["{p}_1x1_2", "{p}_7x1", "{p}_1x7_3", "{p}_1x1"]),
             (r"(?P<p>reduction_b)_concat", ["{p}_3x3", "{p}_3x3_2", "{p}_pool"]),
             (r"(?P<p>inception_c\d)_concat", ["{p}_1x1_2", "{p}_1x3", "{p}_3x1", "{p}_1x3_3",
                                               "{p}_3x1_3", "{p}_1x1"])],
)

_IR = "inception_resnet_v2_"
IRV2 = Arch(
    module=inception_resnet_v2,
    sequence=["data", "conv1_3x3_s2", "conv2_3x3_s1", "conv3_3x3_s1", "pool1_3x3_s2",
              "conv4_3x3_reduce", "conv4_3x3", "pool2_3x3_s2", "conv5_1x1", "conv5_5x5_reduce",
              "conv5_5x5", "conv5_3x3_reduce", "conv5_3x3", "conv5_3x3_2", "ave_pool",
              "conv5_1x1_ave", "stem_concat"]
    + blocks(_IR + "a", 10, ["1x1", "3x3_reduce", "3x3", "3x3_2_reduce", "3x3_2", "3x3_3",
                             "concat", "up", "residual_eltwise"])
    + ["reduction_a_3x3", "reduction_a_3x3_2_reduce", "reduction_a_3x3_2", "reduction_a_3x3_3",
       "reduction_a_pool", "reduction_a_concat"]
    + blocks(_IR + "b", 20, ["1x1", "1x7_reduce", "1x7", "7x1", "concat", "up",
                             "residual_eltwise"])
    + ["reduction_b_3x3_reduce", "reduction_b_3x3", "reduction_b_3x3_2_reduce",
       "reduction_b_3x3_2", "reduction_b_3x3_3_reduce", "reduction_b_3x3_3",
       "reduction_b_3x3_4", "reduction_b_pool", "reduction_b_concat"]
    + blocks(_IR + "c", 10, ["1x1", "1x3_reduce", "1x3", "3x1", "concat", "up",
                             "residual_eltwise"])
    + ["conv6_1x1"] + TAIL,
    # convolutions with BN: stem 12, A 6 x 10, red. A 4, B 4 x 20, red. B 7, C 4 x 10, conv6;
    # plus one `up` projection per residual block (10 + 20 + 10)
    counts={"Input": 1, "Convolution": 204 + 40, "BatchNorm": 204, "Scale": 204,
            "ReLU": 204 + 39, "Eltwise": 40, "Pooling": 6, "Concat": 1 + 10 + 1 + 20 + 1 + 10,
            "Dropout": 1, "InnerProduct": 1, "Softmax": 1},
    stride2={"conv1_3x3_s2", "reduction_a_3x3", "reduction_a_3x3_3", "reduction_b_3x3",
             "reduction_b_3x3_2", "reduction_b_3x3_4"},
    unpadded={"conv2_3x3_s1", "conv4_3x3"},
    max_pools=[("pool1_3x3_s2", 3, 2, 0), ("pool2_3x3_s2", 3, 2, 0),
               ("reduction_a_pool", 3, 2, 0), ("reduction_b_pool", 3, 2, 0)],
    widths={"stem_concat": 320, _IR + "a10_residual_eltwise": 320, "reduction_a_concat": 1088,
            _IR + "b20_residual_eltwise": 1088, "reduction_b_concat": 2080,
            _IR + "c10_residual_eltwise": 2080, "conv6_1x1": 1536},
    grids={"stem_concat": 35, _IR + "b20_residual_eltwise": 17, "conv6_1x1": 8},
    published_params_m=55.8, published_gmacs=13.2,
    concats=[("stem_concat", ["conv5_1x1", "conv5_5x5", "conv5_3x3_2", "conv5_1x1_ave"]),
             (r"(?P<p>inception_resnet_v2_a\d+)_concat", ["{p}_1x1", "{p}_3x3", "{p}_3x3_3"]),
             (r"(?P<p>reduction_a)_concat", ["{p}_3x3", "{p}_3x3_3", "{p}_pool"]),
             (r"(?P<p>inception_resnet_v2_b\d+)_concat", ["{p}_1x1", "{p}_7x1"]),
             (r"(?P<p>inception_resnet_v2_c\d+)_concat", ["{p}_1x1", "{p}_3x1"]),
             (r"(?P<p>reduction_b)_concat", ["{p}_3x3", "{p}_3x3_2", "{p}_3x3_4", "{p}_pool"])],
    relu_names={"conv1_3x3_s2": "conv1_3x3_relu", "conv2_3x3_s1": "conv2_3x3_relu",
                "conv3_3x3_s1": "conv3_3x3_relu", "conv4_3x3": "conv4_relu_3x3"},
)

ARCHS = {"inception_v3": V3, "inception_v4": V4, "inception_resnet_v2": IRV2}
# each model's residual blocks: (Eltwise coeff, ReLU after it); Inception-v3/v4 have none
RESIDUAL = {"inception_v3": [], "inception_v4": [],
            "inception_resnet_v2": [((1.0, 0.17), True)] * 10 + [((1.0, 0.1), True)] * 20
            + [((1.0, 0.2), True)] * 9 + [((), False)]}
# the original's torchvision / timm counterparts (same layers, 1000 classes)
TORCH_MODELS = {"inception_v3": ("torchvision", "inception_v3"),
                "inception_v4": ("timm", "inception_v4"),
                "inception_resnet_v2": ("timm", "inception_resnet_v2")}

params = pytest.mark.parametrize("name", list(ARCHS))


@pytest.fixture(scope="module")
def nets():
    return {name: arch.module.build(299) for name, arch in ARCHS.items()}


def kernel_from_name(name: str) -> tuple[int, int]:
    """The original names say each kernel: the last AxB in the name, 1x1 for the `_reduce`,
    `_up` and `pool_proj` projections."""
    if name.endswith(("_reduce", "_up", "_pool_proj")):
        return 1, 1
    h, w = re.findall(r"(\d)x(\d)", name)[-1]
    return int(h), int(w)


def conv_geometry(layer) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    p = layer.convolution_param
    kernel = (p.kernel_h, p.kernel_w) if p.HasField("kernel_h") else (p.kernel_size[0],) * 2
    stride = tuple(p.stride) * 2 if p.stride else (1, 1)
    if p.HasField("pad_h"):
        pad = (p.pad_h, p.pad_w)
    else:
        pad = (p.pad[0],) * 2 if p.pad else (0, 0)
    return kernel, stride, pad


# -- structure ------------------------------------------------------------------------------


@params
def test_layer_sequence_and_counts(nets, name):
    arch, net = ARCHS[name], nets[name]
    main = [layer.name for layer in net.layer
            if layer.type not in ("BatchNorm", "Scale", "ReLU")]
    assert main == arch.sequence
    counts = Counter(layer.type for layer in net.layer)
    bn = arch.counts.get("BatchNorm", arch.counts["Convolution"])
    expected = {"BatchNorm": bn, "Scale": bn, "ReLU": bn, **arch.counts}
    assert dict(counts) == expected


@params
def test_block_counts(nets, name):
    found: dict[str, set[int]] = {}
    for layer in nets[name].layer:
        m = re.match(r"(inception_(?:resnet_v2_)?[abc])(\d+)_", layer.name)
        if m:
            found.setdefault(m.group(1), set()).add(int(m.group(2)))
    want = {"inception_v3": {"inception_a": 3, "inception_b": 4, "inception_c": 2},
            "inception_v4": {"inception_a": 4, "inception_b": 7, "inception_c": 3},
            "inception_resnet_v2": {_IR + "a": 10, _IR + "b": 20, _IR + "c": 10}}[name]
    assert {k: sorted(v) for k, v in found.items()} == {
        k: list(range(1, n + 1)) for k, n in want.items()}


@params
def test_convolutions_and_their_batch_norms(nets, name):
    arch, layers = ARCHS[name], list(nets[name].layer)
    checked = 0
    for i, layer in enumerate(layers):
        if layer.type != "Convolution":
            continue
        checked += 1
        kernel, stride, pad = conv_geometry(layer)
        assert kernel == kernel_from_name(layer.name), layer.name
        assert stride == ((2, 2) if layer.name in arch.stride2 else (1, 1)), layer.name
        if layer.name in arch.stride2 or layer.name in arch.unpadded:
            assert pad == (0, 0), layer.name
        else:  # "SAME": the map keeps its size
            assert pad == (kernel[0] // 2, kernel[1] // 2), layer.name
        assert list(layer.top) == [layer.name]
        if layer.name.endswith("_up"):  # residual projections: bias, no batch norm
            assert layer.convolution_param.bias_term
            assert layers[i + 1].type != "BatchNorm"
            continue
        assert not layer.convolution_param.bias_term, layer.name
        bn, scale, relu = layers[i + 1: i + 4]
        assert (bn.type, bn.name) == ("BatchNorm", layer.name + "_bn")
        assert bn.batch_norm_param.use_global_stats
        assert bn.batch_norm_param.eps == pytest.approx(1e-3)
        assert (scale.type, scale.name) == ("Scale", layer.name + "_scale")
        assert scale.scale_param.bias_term
        assert relu.type == "ReLU"
        assert relu.name == arch.relu_names.get(layer.name, layer.name + "_relu")
        for in_place in (bn, scale, relu):
            assert list(in_place.bottom) == list(in_place.top) == [layer.name]
    assert checked == arch.counts["Convolution"]


@params
def test_pooling_kinds_and_rounding(nets, name):
    arch, net = ARCHS[name], nets[name]
    pools = [layer for layer in net.layer if layer.type == "Pooling"]
    maxes = [(p.name, p.pooling_param.kernel_size, p.pooling_param.stride, p.pooling_param.pad)
             for p in pools if p.pooling_param.pool == p.pooling_param.MAX]
    assert maxes == arch.max_pools
    aves = [p for p in pools if p.pooling_param.pool == p.pooling_param.AVE]
    assert len(aves) + len(maxes) == len(pools)
    *local, last = aves
    assert last.name == "pool_8x8_s1" and last.pooling_param.global_pooling
    assert pools[-1] is last  # global pooling before the classifier: any input size
    for p in local:
        pp = p.pooling_param
        assert (pp.kernel_size, pp.stride, pp.pad, pp.global_pooling) == (3, 1, 1, False)
    # The originals leave every pooling at Caffe's default rounding (no ceil_mode written).
    assert not any(p.pooling_param.HasField("ceil_mode") for p in pools)
    assert "ceil_mode" not in netio.format_prototxt(net)


@params
def test_concat_orders(nets, name):
    concats = [layer for layer in nets[name].layer if layer.type == "Concat"]
    for layer in concats:
        matches = [(m, bottoms) for pattern, bottoms in ARCHS[name].concats
                   if (m := re.fullmatch(pattern, layer.name))]
        assert len(matches) == 1, layer.name
        m, bottoms = matches[0]
        p = m.groupdict().get("p", "")
        assert list(layer.bottom) == [b.format(p=p) for b in bottoms], layer.name
    assert len(concats) == ARCHS[name].counts["Concat"]


@params
def test_residual_scaling(nets, name):
    layers = list(nets[name].layer)
    eltwise = [(i, x) for i, x in enumerate(layers) if x.type == "Eltwise"]
    assert len(eltwise) == len(RESIDUAL[name])
    previous = {"a": "stem_concat", "b": "reduction_a_concat", "c": "reduction_b_concat"}
    for (i, layer), (coeff, relu) in zip(eltwise, RESIDUAL[name], strict=True):
        p = layer.name.removesuffix("_residual_eltwise")
        stage = p[len(_IR)]
        assert list(layer.bottom) == [previous[stage], p + "_up"]
        assert layer.eltwise_param.operation == layer.eltwise_param.SUM
        assert tuple(layer.eltwise_param.coeff) == pytest.approx(coeff, rel=1e-6)
        after = layers[i + 1]
        assert (after.type == "ReLU") == relu
        if relu:
            assert after.name == layer.name + "_relu"
            assert list(after.bottom) == list(after.top) == [layer.name]
        previous[stage] = layer.name


@params
def test_widths_grids_and_head(name):
    arch = ARCHS[name]
    for size, grid in ((299, {35: 35, 17: 17, 8: 8}), (395, {35: 47, 17: 23, 8: 11})):
        a = analyze(arch.module.build(size))
        for blob, channels in arch.widths.items():
            assert a.blob_shapes[blob][:2] == (1, channels), blob
        for blob, g in arch.grids.items():
            assert a.blob_shapes[blob][2:] == (grid[g], grid[g]), (size, blob)
        assert a.blob_shapes["pool_8x8_s1"] == (1, a.blob_shapes["pool_8x8_s1"][1], 1, 1)
        assert a.blob_shapes["prob"] == (1, 1000)
        assert a.outputs == ["prob"]
    net = arch.module.build(299, num_classes=1001)
    assert analyze(net).blob_shapes["prob"] == (1, 1001)


@params
def test_params_and_macs_vs_published(name):
    arch = ARCHS[name]
    a = analyze(arch.module.build(299))
    assert a.total_params == pytest.approx(arch.published_params_m * 1e6, rel=0.005)
    assert a.total_macs == pytest.approx(arch.published_gmacs * 1e9, rel=0.01)
    # more pixels, same weights: MACs of the convolutions grow with the map area
    b = analyze(arch.module.build(395))
    assert b.total_params == a.total_params
    assert b.total_macs > 1.7 * a.total_macs


@params
def test_valid_input_sizes_agree_with_shape_inference(name):
    module = ARCHS[name].module
    reference = module.build(299)
    for size in range(module.MIN_INPUT_SIZE - 4, module.MIN_INPUT_SIZE + 40):
        try:
            analyze(reference, {"data": (1, 3, size, size)})
            infers = True
        except NetDefinitionError:
            infers = False
        try:
            module.build(size)
            builds = True
        except NetDefinitionError as err:
            builds = False
            assert "\n" not in str(err) and name in str(err)
        assert builds == infers, size
    assert {299, 395} <= set(module.valid_input_sizes(200, 400))


def test_invalid_size_names_the_layer():
    with pytest.raises(NetDefinitionError, match=r"320 .*'reduction_a_concat'.* 325"):
        inception_v3.build(320)
    with pytest.raises(NetDefinitionError, match=r"'inception_stem3'"):
        inception_v4.build(320)
    with pytest.raises(NetDefinitionError, match="must be an int"):
        inception_resnet_v2.build("299")


@params
def test_build_is_deterministic(nets, name):
    assert ARCHS[name].module.build(299).SerializeToString() == nets[name].SerializeToString()


@pytest.mark.torch
@params
def test_param_count_equals_pytorch_counterpart(name):
    from caffezoo import frameworks

    library, model = TORCH_MODELS[name]
    if library == "torchvision":
        net = frameworks.import_torchvision().models.inception_v3(
            weights=None, aux_logits=False, init_weights=False)
    else:
        net = frameworks.import_timm().create_model(model, pretrained=False)
    expected = sum(p.numel() for p in net.parameters())
    assert analyze(ARCHS[name].module.build(299)).total_params == expected


# -- real Caffe and OpenCV ------------------------------------------------------------------


def random_weights(net, seed: int) -> dict[str, list[np.ndarray]]:
    """He-scaled convolutions, BatchNorm statistics with positive variance (scale factor 1),
    Scale near identity: activations stay in range through 40 residual blocks."""
    rng = np.random.default_rng(seed)
    weights = {}
    for s in analyze(net).layers:
        if not s.param_shapes:
            continue
        c = s.param_shapes[0][0]
        if s.type == "BatchNorm":
            weights[s.name] = [rng.normal(0, 0.1, c), rng.uniform(0.5, 1.5, c), np.ones(1)]
        elif s.type == "Scale":
            weights[s.name] = [rng.uniform(0.8, 1.2, c), rng.normal(0, 0.1, c)]
        else:
            shape = s.param_shapes[0]
            blobs = [rng.standard_normal(shape, np.float32) * np.sqrt(2 / np.prod(shape[1:]))]
            if len(s.param_shapes) > 1:  # bias
                blobs.append(rng.normal(0, 0.1, s.param_shapes[1]))
            weights[s.name] = blobs
    return {k: [np.asarray(b, np.float32) for b in v] for k, v in weights.items()}


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    """Per model: prototxts at its smallest size, 299 and 395, and random weights."""
    made = {}

    def files(name: str) -> dict:
        if name not in made:
            module = ARCHS[name].module
            d = tmp_path_factory.mktemp(name)
            out = {"weights": d / "random.caffemodel"}
            for size in (module.MIN_INPUT_SIZE, 299, 395):
                out[size] = d / f"deploy_{size}.prototxt"
                netio.write_prototxt(module.build(size), out[size])
            net = module.build(299)
            netio.write_caffemodel(netio.attach_weights(net, random_weights(net, 0)),
                                   out["weights"])
            made[name] = out
        return made[name]

    yield files
    for out in made.values():  # up to 223 MB each: do not leave them in pytest's kept tmp dirs
        out["weights"].unlink(missing_ok=True)


@pytest.mark.caffe
@params
@pytest.mark.parametrize("size", [299, 395])
def test_caffe_blob_shapes_equal_shape_inference(model_files, name, size):
    from caffezoo import frameworks

    caffe = frameworks.import_caffe()
    path = model_files(name)[size]
    net = caffe.Net(str(path), caffe.TEST)
    a = analyze(netio.read_prototxt(path))
    shapes = {k: tuple(v.data.shape) for k, v in net.blobs.items()}
    # Caffe adds a Split copy of every blob that several layers read: <blob>_<layer>_<i>_split_<k>
    splits = {k: v for k, v in shapes.items() if re.search(r"_split_\d+$", k)}
    assert {k: v for k, v in shapes.items() if k not in splits} == a.blob_shapes
    for split, shape in splits.items():
        source = max((b for b in a.blob_shapes if split.startswith(b + "_")), key=len)
        assert shape == a.blob_shapes[source], split
    caffe_params = {k: [tuple(b.data.shape) for b in v] for k, v in net.params.items()}
    assert caffe_params == {s.name: s.param_shapes for s in a.layers if s.param_shapes}


@pytest.mark.caffe
@pytest.mark.opencv
@params
@pytest.mark.parametrize("which", ["min", 299])
def test_random_weights_caffe_and_opencv_agree(model_files, name, which):
    from caffezoo import frameworks

    caffe, cv2 = frameworks.import_caffe(), frameworks.import_cv2()
    files = model_files(name)
    size = ARCHS[name].module.MIN_INPUT_SIZE if which == "min" else which
    n = 2 if which == "min" else 1
    x = np.random.default_rng(1).standard_normal((n, 3, size, size)).astype(np.float32)
    net = caffe.Net(str(files[size]), str(files["weights"]), caffe.TEST)
    net.blobs["data"].reshape(*x.shape)
    net.blobs["data"].data[...] = x
    net.forward()
    prob, logits = net.blobs["prob"].data.copy(), net.blobs["classifier"].data.copy()
    assert prob.shape == (n, 1000) and np.isfinite(prob).all() and np.isfinite(logits).all()
    np.testing.assert_allclose(prob.sum(axis=1), 1.0, rtol=1e-5)
    assert np.ptp(logits) > 1.0  # random weights: a real spread, not a constant output
    if n == 2:
        assert not np.allclose(logits[0], logits[1])
    ocv = cv2.dnn.readNetFromCaffe(str(files[size]), str(files["weights"]))
    ocv.setInput(x)
    ocv_logits = ocv.forward("classifier")
    np.testing.assert_allclose(ocv_logits, logits, rtol=0, atol=1e-4 * np.abs(logits).max())


@pytest.mark.opencv
@params
def test_opencv_runs_at_395(model_files, name):
    from caffezoo import frameworks

    cv2 = frameworks.import_cv2()
    files = model_files(name)
    ocv = cv2.dnn.readNetFromCaffe(str(files[395]), str(files["weights"]))
    ocv.setInput(np.random.default_rng(2).standard_normal((1, 3, 395, 395)).astype(np.float32))
    prob = ocv.forward("prob")
    assert prob.shape == (1, 1000) and np.isfinite(prob).all()
    assert prob.sum() == pytest.approx(1.0, rel=1e-5)
