"""The ResNet-family generators (ResNet-v2, ResNeXt, WRN) against the original zoo's structure.

The expectations are encoded here from facts recorded while reading the released deploy files
(soeaver/caffe-model `cls/` at the pinned revision 27d644d): per model the blocks per stage,
channel widths, grouping, where a stage downsamples, the order of each sum's bottoms, the
stem's pooling, the names of the layers, blobs and their order, and hand-counted layer totals
per type. They are written independently of the generators: a block is
spelled out layer by layer below, not produced by calling generator code.

Real Caffe and OpenCV run the generated files with seeded random weights (no trained weights
are needed to prove the files run; the two runtimes must agree with each other); loading at the
default size with blob shapes equal to `caffezoo.analysis` is tests/nets/test_prototxt_current.py.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import pytest

from caffezoo import netio
from caffezoo.analysis import analyze
from caffezoo.errors import NetDefinitionError
from caffezoo.generators import resnet_v2, resnext, wrn
from caffezoo.zoo import get_card


@dataclass(frozen=True)
class Original:
    """What the released deploy file looks like (facts, see the module docstring)."""

    stage_blocks: tuple[int, int, int, int]
    widths: tuple[int, int, int, int]   # num_output of conv1/conv2 per stage
    group: int                          # group of conv2
    preact: bool                        # ResNet-v2 layout (else post-activation)
    stride_on: str                      # conv of a stage's first block with stride 2
    layer_counts: dict[str, int]        # hand-counted from the block layout


POST = dict(prefix_sum="elewise")
OUTS = (256, 512, 1024, 2048)

ORIGINALS = {
    # ResNeXt-50: 16 blocks, 4 projections. Conv 1+3*16+4, ReLU 1+3*16 (two in the branch and
    # one after each sum), BN/Scale after every convolution.
    "resnext50_32x4d": Original((3, 4, 6, 3), (128, 256, 512, 1024), 32, False, "conv2",
                                {"Input": 1, "Convolution": 53, "BatchNorm": 53, "Scale": 53,
                                 "ReLU": 49, "Pooling": 2, "Eltwise": 16, "InnerProduct": 1,
                                 "Softmax": 1}),
    "resnext101_32x4d": Original((3, 4, 23, 3), (128, 256, 512, 1024), 32, False, "conv2",
                                 {"Input": 1, "Convolution": 104, "BatchNorm": 104,
                                  "Scale": 104, "ReLU": 100, "Pooling": 2, "Eltwise": 33,
                                  "InnerProduct": 1, "Softmax": 1}),
    "resnext101_64x4d": Original((3, 4, 23, 3), (256, 512, 1024, 2048), 64, False, "conv2",
                                 {"Input": 1, "Convolution": 104, "BatchNorm": 104,
                                  "Scale": 104, "ReLU": 100, "Pooling": 2, "Eltwise": 33,
                                  "InnerProduct": 1, "Softmax": 1}),
    "wrn50_2": Original((3, 4, 6, 3), (128, 256, 512, 1024), 1, False, "conv2",
                        {"Input": 1, "Convolution": 53, "BatchNorm": 53, "Scale": 53,
                         "ReLU": 49, "Pooling": 2, "Eltwise": 16, "InnerProduct": 1,
                         "Softmax": 1}),
    # ResNet-v2: BN/Scale/ReLU after conv1, conv1 and conv2 of each block, before every block
    # but the first, and once after the last sum; conv3 and match_conv have none.
    # 101: 33 blocks -> BN 1 + 2*33 + 32 + 1 = 100.
    "resnet101_v2": Original((3, 4, 23, 3), (64, 128, 256, 512), 1, True, "conv2",
                             {"Input": 1, "Convolution": 104, "BatchNorm": 100, "Scale": 100,
                              "ReLU": 100, "Pooling": 2, "Eltwise": 33, "InnerProduct": 1,
                              "Softmax": 1}),
    # 152: 50 blocks -> BN 1 + 100 + 49 + 1 = 151; at 27d644d the stride sits on the 3x3
    # (res4_conv2 stride 2, res4_conv1 stride 1), as in 101 and 269.
    "resnet152_v2": Original((3, 8, 36, 3), (64, 128, 256, 512), 1, True, "conv2",
                             {"Input": 1, "Convolution": 155, "BatchNorm": 151, "Scale": 151,
                              "ReLU": 151, "Pooling": 2, "Eltwise": 50, "InnerProduct": 1,
                              "Softmax": 1}),
    # 269: 89 blocks -> BN 1 + 178 + 88 + 1 = 268.
    "resnet269_v2": Original((3, 30, 48, 8), (64, 128, 256, 512), 1, True, "conv2",
                             {"Input": 1, "Convolution": 272, "BatchNorm": 268, "Scale": 268,
                              "ReLU": 268, "Pooling": 2, "Eltwise": 89, "InnerProduct": 1,
                              "Softmax": 1}),
}
# Block numbers (counted over the whole net from 1) that open a stage and carry a match_conv.
PROJECTION_BLOCKS = {
    "resnext50_32x4d": [1, 4, 8, 14], "wrn50_2": [1, 4, 8, 14],
    "resnext101_32x4d": [1, 4, 8, 31], "resnext101_64x4d": [1, 4, 8, 31],
    "resnet101_v2": [1, 4, 8, 31], "resnet152_v2": [1, 4, 12, 48],
    "resnet269_v2": [1, 4, 34, 82],
}
# Post-activation files list a sum's bottoms as (match_conv, conv3), except the first block of
# stage 3 (`resx8_elewise`, `res8_elewise`), which lists (conv3, match_conv).
CONV3_FIRST_BLOCK = 8
MODELS = list(ORIGINALS)


def _layers(name: str, size: int | None = None):
    return list(get_card(name).build(size).layer)


def _post_act_block(p: str, x: str, project: bool,
                    conv3_first: bool) -> list[tuple[str, str, list[str], str]]:
    """(name, type, bottoms, top) of a ResNeXt/WRN block `p` reading blob `x`."""
    rows = []
    for conv in ("conv1", "conv2", "conv3"):
        src = x if conv == "conv1" else f"{p}_conv{int(conv[-1]) - 1}"
        rows += [(f"{p}_{conv}", "Convolution", [src], f"{p}_{conv}"),
                 (f"{p}_{conv}_bn", "BatchNorm", [f"{p}_{conv}"], f"{p}_{conv}"),
                 (f"{p}_{conv}_scale", "Scale", [f"{p}_{conv}"], f"{p}_{conv}")]
        if conv != "conv3":
            rows.append((f"{p}_{conv}_relu", "ReLU", [f"{p}_{conv}"], f"{p}_{conv}"))
    shortcut = x
    if project:
        rows += [(f"{p}_match_conv", "Convolution", [x], f"{p}_match_conv"),
                 (f"{p}_match_conv_bn", "BatchNorm", [f"{p}_match_conv"], f"{p}_match_conv"),
                 (f"{p}_match_conv_scale", "Scale", [f"{p}_match_conv"], f"{p}_match_conv")]
        shortcut = f"{p}_match_conv"
    bottoms = [f"{p}_conv3", shortcut] if conv3_first else [shortcut, f"{p}_conv3"]
    rows += [(f"{p}_elewise", "Eltwise", bottoms, f"{p}_elewise"),
             (f"{p}_elewise_relu", "ReLU", [f"{p}_elewise"], f"{p}_elewise")]
    return rows


def _pre_act_block(k: int, x: str, project: bool) -> list[tuple[str, str, list[str], str]]:
    """(name, type, bottoms, top) of ResNet-v2 block `res<k>` reading the sum `x`."""
    p = f"res{k}"
    rows = []
    pre = x
    if k > 1:
        rows += [(f"{p}_bn", "BatchNorm", [x], f"{p}_bn"),
                 (f"{p}_scale", "Scale", [f"{p}_bn"], f"{p}_bn"),
                 (f"{p}_relu", "ReLU", [f"{p}_bn"], f"{p}_bn")]
        pre = f"{p}_bn"
    for conv, src in (("conv1", pre), ("conv2", f"{p}_conv1")):
        rows += [(f"{p}_{conv}", "Convolution", [src], f"{p}_{conv}"),
                 (f"{p}_{conv}_bn", "BatchNorm", [f"{p}_{conv}"], f"{p}_{conv}"),
                 (f"{p}_{conv}_scale", "Scale", [f"{p}_{conv}"], f"{p}_{conv}"),
                 (f"{p}_{conv}_relu", "ReLU", [f"{p}_{conv}"], f"{p}_{conv}")]
    rows.append((f"{p}_conv3", "Convolution", [f"{p}_conv2"], f"{p}_conv3"))
    shortcut = x
    if project:
        rows.append((f"{p}_match_conv", "Convolution", [pre], f"{p}_match_conv"))
        shortcut = f"{p}_match_conv"
    rows.append((f"{p}_eletwise", "Eltwise", [shortcut, f"{p}_conv3"], f"{p}_eletwise"))
    return rows


def _expected_graph(name: str) -> list[tuple[str, str, list[str], str]]:
    orig = ORIGINALS[name]
    rows = [("data", "Input", [], "data"),
            ("conv1", "Convolution", ["data"], "conv1"),
            ("conv1_bn", "BatchNorm", ["conv1"], "conv1"),
            ("conv1_scale", "Scale", ["conv1"], "conv1"),
            ("conv1_relu", "ReLU", ["conv1"], "conv1"),
            ("pool1", "Pooling", ["conv1"], "pool1")]
    x, k = "pool1", 0
    starts = PROJECTION_BLOCKS[name]
    for count in orig.stage_blocks:
        for _ in range(count):
            k += 1
            if orig.preact:
                rows += _pre_act_block(k, x, k in starts)
                x = f"res{k}_eletwise"
            else:
                p = ("resx" if name.startswith("resnext") else "res") + str(k)
                rows += _post_act_block(p, x, k in starts, k == CONV3_FIRST_BLOCK)
                x = f"{p}_elewise"
    if orig.preact:
        rows += [(f"res{k}_eletwise_bn", "BatchNorm", [x], f"res{k}_eletwise_bn"),
                 (f"res{k}_eletwise_scale", "Scale", [f"res{k}_eletwise_bn"],
                  f"res{k}_eletwise_bn"),
                 (f"res{k}_eletwise_relu", "ReLU", [f"res{k}_eletwise_bn"],
                  f"res{k}_eletwise_bn")]
        x, pool = f"res{k}_eletwise_bn", "pool5"
    else:
        pool = "pool_ave"
    rows += [(pool, "Pooling", [x], pool),
             ("classifier", "InnerProduct", [pool], "classifier"),
             ("prob", "Softmax", ["classifier"], "prob")]
    return rows


# -- structure ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", MODELS)
def test_layer_counts_per_type(name):
    counts = Counter(layer.type for layer in _layers(name))
    assert dict(counts) == ORIGINALS[name].layer_counts


def _graph_differences(name: str, layers) -> list[str]:
    """Where (name, type, bottoms, top) of `layers` differ from the original's, in order."""
    got = [(lay.name, lay.type, list(lay.bottom), list(lay.top)[0] if lay.top else None)
           for lay in layers]
    expected = _expected_graph(name)
    problems = [f"{len(got)} layers, expected {len(expected)}"] if len(got) != len(expected) else []
    return problems + [f"{g} != {e}" for g, e in zip(got, expected, strict=False) if g != e]


def _conv(layer):
    p = layer.convolution_param
    return (p.num_output, p.kernel_size[0], p.stride[0] if p.stride else 1,
            p.pad[0] if p.pad else 0, p.group, p.bias_term)


def _convolution_differences(name: str, layers) -> list[str]:
    """Convolutions of `layers` whose (outputs, kernel, stride, pad, group, bias) differ from
    the original's."""
    orig = ORIGINALS[name]
    convs = {lay.name: _conv(lay) for lay in layers if lay.type == "Convolution"}
    expected = {"conv1": (64, 7, 2, 3, 1, False)}
    prefix = "res" if (orig.preact or name.startswith("wrn")) else "resx"
    k = 0
    for stage, count in enumerate(orig.stage_blocks):
        width, out = orig.widths[stage], OUTS[stage]
        for i in range(count):
            k += 1
            p = f"{prefix}{k}"
            s = 2 if (stage > 0 and i == 0) else 1
            s1, s2 = (s, 1) if orig.stride_on == "conv1" else (1, s)
            expected[f"{p}_conv1"] = (width, 1, s1, 0, 1, False)
            expected[f"{p}_conv2"] = (width, 3, s2, 1, orig.group, False)
            expected[f"{p}_conv3"] = (out, 1, 1, 0, 1, False)
            if i == 0:
                expected[f"{p}_match_conv"] = (out, 1, s, 0, 1, False)
    return [f"{n}: {convs.get(n)} != {e}" for n, e in expected.items() if convs.get(n) != e] + [
        f"{n}: unexpected" for n in convs if n not in expected]


@pytest.mark.parametrize("name", MODELS)
def test_names_order_tops_and_bottoms_match_the_original(name):
    assert _graph_differences(name, _layers(name)) == []


@pytest.mark.parametrize("name", MODELS)
def test_convolution_parameters(name):
    assert _convolution_differences(name, _layers(name)) == []


def test_the_two_pinned_revision_facts_are_checked():
    """The structure checks above fail for the layouts the generators followed before 27d644d:
    ResNet-152 v2 with the stride on the first 1x1, and ResNeXt/WRN with every sum listed as
    (match_conv, conv3)."""
    import dataclasses

    early = dataclasses.replace(resnet_v2.VARIANTS["resnet152_v2"], stride_on="conv1")
    original = resnet_v2.VARIANTS["resnet152_v2"]
    try:
        resnet_v2.VARIANTS["resnet152_v2"] = early
        layers = list(resnet_v2.build(224, variant="resnet152_v2").layer)
    finally:
        resnet_v2.VARIANTS["resnet152_v2"] = original
    problems = _convolution_differences("resnet152_v2", layers)
    assert sorted(p.split(":")[0] for p in problems) == [
        "res12_conv1", "res12_conv2", "res48_conv1", "res48_conv2", "res4_conv1", "res4_conv2"]
    assert _graph_differences("resnet152_v2", layers) == []  # names and wiring are unchanged

    for name, module in (("resnext50_32x4d", resnext), ("resnext101_64x4d", resnext),
                         ("wrn50_2", wrn)):
        spec = dataclasses.replace(module.VARIANTS[name], conv3_first_stages=())
        layers = list(resnext.build_bottleneck_net(spec, 224).layer)
        problems = _graph_differences(name, layers)
        assert len(problems) == 1 and "_elewise'" in problems[0], problems
        assert problems[0].startswith(f"('{'resx' if 'resnext' in name else 'res'}8_elewise'")
        assert _convolution_differences(name, layers) == []


@pytest.mark.parametrize("name", MODELS)
def test_pooling_rounding_eltwise_and_head(name):
    orig = ORIGINALS[name]
    layers = _layers(name)
    pools = [lay for lay in layers if lay.type == "Pooling"]
    pool1, head = pools
    P = type(pool1.pooling_param)
    assert pool1.name == "pool1" and pool1.pooling_param.pool == P.MAX
    assert (pool1.pooling_param.kernel_size, pool1.pooling_param.stride) == (3, 2)
    if orig.preact:
        # Trained in Caffe: no padding, Caffe's default ceil rounding, no ceil_mode written.
        assert pool1.pooling_param.pad == 0
        assert not pool1.pooling_param.HasField("ceil_mode")
    else:
        # Converted from Torch: pad 1 and `ceil_mode: false`.
        assert pool1.pooling_param.pad == 1
        assert pool1.pooling_param.HasField("ceil_mode")
        assert pool1.pooling_param.ceil_mode is False
    assert head.name == ("pool5" if orig.preact else "pool_ave")
    assert head.pooling_param.pool == P.AVE and head.pooling_param.global_pooling
    assert not head.pooling_param.HasField("ceil_mode")
    for lay in layers:
        if lay.type == "Eltwise":
            E = type(lay.eltwise_param)
            assert lay.eltwise_param.operation == E.SUM and list(lay.eltwise_param.coeff) == []
        if lay.type == "BatchNorm":
            # The originals never set eps: Caffe's default 1e-5.
            assert lay.batch_norm_param.use_global_stats
            assert not lay.batch_norm_param.HasField("eps")
        if lay.type == "Scale":
            assert lay.scale_param.bias_term
    fc = layers[-2]
    assert fc.inner_product_param.num_output == 1000 and fc.inner_product_param.bias_term


@pytest.mark.parametrize("name, size, final", [
    # conv1 then pool1, three stride-2 stages: 224 -> 112 -> 56 -> 28 -> 14 -> 7.
    ("resnext50_32x4d", 224, 7), ("resnext50_32x4d", 320, 10), ("wrn50_2", 97, 4),
    # ResNet-v2 pool1 rounds up without padding: 320 -> 160 -> ceil(157/2)+1 = 80 -> ... 10;
    # 97 -> 49 -> ceil(46/2)+1 = 24 -> 12 -> 6 -> 3.
    ("resnet101_v2", 224, 7), ("resnet101_v2", 320, 10), ("resnet152_v2", 97, 3),
    ("resnet269_v2", 64, 2),
])
def test_any_input_size(name, size, final):
    net = get_card(name).build(size)
    result = analyze(net)
    last_sum = [lay for lay in net.layer if lay.type == "Eltwise"][-1].top[0]
    assert result.blob_shapes[last_sum] == (1, 2048, final, final)
    assert result.blob_shapes["prob"] == (1, 1000)
    # The parameter count does not depend on the input size (global pooling).
    assert result.total_params == get_card(name).stats().params


@pytest.mark.parametrize("module, variant, minimum", [
    (resnext, "resnext50_32x4d", resnext.MIN_INPUT_SIZE),
    (wrn, "wrn50_2", resnext.MIN_INPUT_SIZE),
    (resnet_v2, "resnet101_v2", resnet_v2.MIN_INPUT_SIZE),
])
def test_smallest_input_size(module, variant, minimum):
    assert analyze(module.build(minimum, variant=variant)).blob_shapes["prob"] == (1, 1000)
    with pytest.raises(NetDefinitionError, match="too small"):
        module.build(minimum - 1, variant=variant)
    with pytest.raises(NetDefinitionError, match="must be an int"):
        module.build(224.0, variant=variant)


def test_unknown_variant_lists_the_known_ones():
    with pytest.raises(NetDefinitionError, match="resnext101_64x4d"):
        resnext.build(224, variant="resnext50_64x4d")
    with pytest.raises(NetDefinitionError, match="resnet269_v2"):
        resnet_v2.build(224, variant="resnet50_v2")


def test_variants_are_data_not_copies():
    # One function builds every depth/width; changing the data changes the net.
    spec = resnext.resnext_spec(50, 16, 8)
    net = resnext.build_bottleneck_net(spec, 64)
    conv2 = next(lay for lay in net.layer if lay.name == "resx1_conv2")
    assert (conv2.convolution_param.group, conv2.convolution_param.num_output) == (16, 128)


# -- real Caffe and OpenCV ------------------------------------------------------------------

def _random_weights(net, seed: int) -> None:
    """Seeded random values for every blob of a pycaffe net. The last convolution of each
    residual branch is scaled down so that 89 summed blocks stay in a sane range."""
    rng = np.random.default_rng(seed)
    types = dict(zip(net._layer_names, (layer.type for layer in net.layers), strict=True))
    for name, blobs in net.params.items():
        kind = types[name]
        if kind == "BatchNorm":
            c = blobs[0].data.shape[0]
            blobs[0].data[...] = rng.normal(0.0, 0.05, c)
            blobs[1].data[...] = rng.uniform(0.8, 1.2, c)
            blobs[2].data[...] = 1.0
        elif kind == "Scale":
            c = blobs[0].data.shape[0]
            gain = 0.3 if name.endswith("conv3_scale") else 1.0
            blobs[0].data[...] = gain * rng.uniform(0.8, 1.2, c)
            blobs[1].data[...] = rng.normal(0.0, 0.05, c)
        else:
            w = blobs[0].data
            gain = 0.3 if name.endswith("conv3") else 1.0
            w[...] = rng.normal(0.0, gain / np.sqrt(np.prod(w.shape[1:])), w.shape)
            if len(blobs) > 1:
                blobs[1].data[...] = rng.normal(0.0, 0.05, blobs[1].data.shape)


@pytest.mark.caffe
@pytest.mark.opencv
@pytest.mark.parametrize("name", MODELS)
def test_random_weights_forward_in_caffe_and_opencv(name, tmp_path):
    """Two images at 64x64: finite (2, 1000) probabilities in real Caffe, and OpenCV DNN,
    reading the same file and the weights Caffe saved, computes the same logits."""
    from caffezoo.frameworks import import_caffe, import_cv2

    caffe, cv2 = import_caffe(), import_cv2()
    size = 64
    path = tmp_path / f"{name}_{size}.prototxt"
    netio.write_prototxt(get_card(name).build(size), path)
    net = caffe.Net(str(path), caffe.TEST)
    net.blobs["data"].reshape(2, 3, size, size)
    _random_weights(net, seed=sum(map(ord, name)))
    x = np.random.default_rng(1).normal(0.0, 1.0, (2, 3, size, size)).astype(np.float32)
    net.blobs["data"].data[...] = x
    net.forward()
    logits = net.blobs["classifier"].data.copy()
    prob = net.blobs["prob"].data.copy()
    assert prob.shape == (2, 1000) and np.isfinite(prob).all()
    np.testing.assert_allclose(prob.sum(axis=1), 1.0, rtol=1e-5)
    assert np.abs(logits[0] - logits[1]).max() > 1e-3  # the two images are told apart

    weights = tmp_path / f"{name}.caffemodel"
    net.save(str(weights))
    del net
    cv_net = cv2.dnn.readNetFromCaffe(str(path), str(weights))
    cv_net.setInput(x)
    cv_logits = cv_net.forward("classifier")
    assert cv_logits.shape == (2, 1000)
    scale = np.abs(logits).max()
    assert np.abs(cv_logits - logits).max() <= 1e-4 * scale


@pytest.mark.caffe
def test_portable_dialect_computes_the_same_in_caffe(tmp_path):
    """resnext50 has a floor-rounded pool1; its portable rewrite (ceil pooling + Slice) must
    give the same logits in real Caffe at a size where the rounding differs (64: 32 -> 16 by
    floor, 17 by ceil)."""
    from caffezoo.frameworks import import_caffe

    caffe = import_caffe()
    net = get_card("resnext50_32x4d").build(64)
    nets = {}
    for dialect in ("ceil_mode", "portable"):
        path = tmp_path / f"{dialect}.prototxt"
        netio.write_prototxt(net, path, dialect)
        nets[dialect] = caffe.Net(str(path), caffe.TEST)
    a, b = nets["ceil_mode"], nets["portable"]
    _random_weights(a, seed=3)
    for layer, blobs in a.params.items():
        for src, dst in zip(blobs, b.params[layer], strict=True):
            dst.data[...] = src.data
    x = np.random.default_rng(2).normal(0.0, 1.0, (1, 3, 64, 64)).astype(np.float32)
    for n in (a, b):
        n.blobs["data"].data[...] = x
        n.forward()
    assert a.blobs["pool1"].data.shape == (1, 64, 16, 16)
    assert b.blobs["pool1"].data.shape == (1, 64, 16, 16)
    np.testing.assert_array_equal(a.blobs["pool1"].data, b.blobs["pool1"].data)
    np.testing.assert_allclose(b.blobs["classifier"].data, a.blobs["classifier"].data,
                               rtol=0, atol=1e-5 * np.abs(a.blobs["classifier"].data).max())


# -- a second implementation: torchvision -------------------------------------------------

@pytest.mark.torch
@pytest.mark.parametrize("name, ctor", [
    ("resnext50_32x4d", lambda tv: tv.models.resnext50_32x4d()),
    ("resnext101_64x4d", lambda tv: tv.models.resnext101_64x4d()),
    ("wrn50_2", lambda tv: tv.models.wide_resnet50_2()),
    ("resnext101_32x4d", lambda tv: tv.models.resnet.ResNet(
        tv.models.resnet.Bottleneck, [3, 4, 23, 3], groups=32, width_per_group=4)),
])
def test_learned_parameters_equal_torchvision(name, ctor):
    """torchvision builds the same architectures: its parameters (BatchNorm running statistics
    are buffers, not parameters) must equal our Convolution + Scale + InnerProduct count, and
    its per-layer weight shapes ours."""
    from caffezoo.frameworks import import_torchvision

    tv = import_torchvision()
    model = ctor(tv)
    assert sum(p.numel() for p in model.parameters()) == get_card(name).stats().params
    ours = sorted(tuple(s) for lay in analyze(get_card(name).build()).layers
                  if lay.type in ("Convolution", "InnerProduct") for s in lay.param_shapes[:1])
    theirs = sorted(tuple(m.weight.shape) for m in model.modules()
                    if isinstance(m, (tv.models.resnet.nn.Conv2d, tv.models.resnet.nn.Linear)))
    assert ours == theirs
