"""Shape inference, parameter and MAC counts.

The expectation for shapes and blob sizes is real Caffe: every net here is loaded with pycaffe and
every blob shape and every parameter blob shape must equal Caffe's. MACs are checked against hand
computation, and the real SqueezeNet against the sizes stored in its .caffemodel and its published
parameter count."""

from __future__ import annotations

import importlib
import math

import numpy as np
import pytest
from google.protobuf import text_format

from caffezoo import netio
from caffezoo.analysis import analyze, check_weights, input_names
from caffezoo.builder import NetBuilder
from caffezoo.errors import NetDefinitionError, WeightMismatchError
from caffezoo.proto import caffe_pb2


@pytest.fixture(scope="module")
def caffe():
    from caffezoo.frameworks import import_caffe

    return import_caffe()


def caffe_net(caffe, net, tmp_path, weights=None):
    path = tmp_path / f"{net.name}.prototxt"
    path.write_text(text_format.MessageToString(net))
    if weights is None:
        return caffe.Net(str(path), caffe.TEST)
    return caffe.Net(str(path), str(weights), caffe.TEST)


def assert_matches_caffe(analysis, cnet):
    """Every blob and every parameter blob shape as Caffe has them; the learnable count and the
    BatchNorm statistics as the sums of Caffe's blob sizes."""
    caffe_blobs = {name: tuple(blob.data.shape) for name, blob in cnet.blobs.items()}
    ours = analysis.blob_shapes
    assert set(ours) <= set(caffe_blobs)
    assert {name: caffe_blobs[name] for name in ours} == ours
    # Caffe adds Split layers where a blob feeds several layers; we do not list those.
    assert all("_split_" in name for name in set(caffe_blobs) - set(ours))

    caffe_params = {name: [tuple(b.data.shape) for b in blobs]
                    for name, blobs in cnet.params.items()}
    assert caffe_params == {s.name: s.param_shapes for s in analysis.layers if s.param_shapes}
    types = {name: cnet.layer_dict[name].type for name in cnet.params}
    learnable = sum(b.data.size for name, blobs in cnet.params.items() for b in blobs
                    if types[name] != "BatchNorm")
    stats = sum(b.data.size for name, blobs in cnet.params.items() for b in blobs
                if types[name] == "BatchNorm")
    assert (analysis.total_params, analysis.total_stats) == (learnable, stats)


# -- nets that cover every layer type --------------------------------------------------------

POOL_INPUTS = {"in_5x8": (1, 2, 5, 8), "in_6x7": (1, 2, 6, 7), "in_7x10": (1, 2, 7, 10),
               "in_9x4": (1, 2, 9, 4), "in_11x13": (1, 2, 11, 13)}


def pooling_net():
    """Every (kernel, stride, pad) with pad < kernel <= 4, stride <= 3, max and ave, ceil and
    floor, on inputs of odd and even sizes; plus non-square and global pooling."""
    b = NetBuilder("pooling")
    for name, shape in POOL_INPUTS.items():
        b.input(name, shape)
        for k in (2, 3, 4):
            for s in (1, 2, 3):
                for p in range(min(k, 3)):
                    for ceil in (True, False):
                        method = "max" if (k + s + p) % 2 else "ave"
                        b.pool(name, f"{name}_k{k}s{s}p{p}{'c' if ceil else 'f'}", method,
                               kernel=k, stride=s, pad=p, ceil=ceil)
        b.pool(name, f"{name}_rect_c", "max", kernel=(3, 2), stride=(2, 3), pad=(1, 0))
        b.pool(name, f"{name}_rect_f", "ave", kernel=(2, 3), stride=(3, 2), pad=(1, 2),
               ceil=False)
        b.pool(name, f"{name}_gmax", "max", global_pooling=True)
        b.pool(name, f"{name}_gave", "ave", global_pooling=True)
    return b.net


def naive_pool(size, k, s, p, ceil):
    """The output size without Caffe's pad edge rule."""
    span = size + 2 * p - k
    return (math.ceil(span / s) if ceil else span // s) + 1


def conv_net():
    b = NetBuilder("convolutions")
    x = b.input("data", (2, 6, 17, 19))
    b.conv(x, "c_k3s2p1", num_output=8, kernel=3, stride=2, pad=1)
    b.conv(x, "c_rect", num_output=4, kernel=(3, 5), stride=(2, 1), pad=(1, 2), group=2,
           dilation=(2, 1), bias=False)
    b.conv(x, "c_dil", num_output=6, kernel=3, dilation=3, group=6)  # depthwise
    b.conv(x, "c_big", num_output=3, kernel=(17, 19))  # to 1x1
    b.conv(x, "c_1x1", num_output=5, kernel=1, stride=3)
    b.deconv(x, "d_k4s2p1", num_output=4, kernel=4, stride=2, pad=1, group=2)
    b.deconv(x, "d_rect", num_output=3, kernel=(3, 2), stride=(3, 1), pad=(0, 1), bias=False)
    b.inner_product(x, "ip", num_output=7)
    b.inner_product(x, "ip_axis2", num_output=5, axis=2, bias=False)
    ip = b.layer("InnerProduct", "ip_t", [x], ["ip_t"]).inner_product_param
    ip.num_output, ip.transpose = 3, True
    return b.net


def layers_net():
    b = NetBuilder("layers")
    x = b.input("data", (2, 6, 9, 11))
    x = b.conv(x, "conv", num_output=8, kernel=3, pad=1)
    bn = b.batch_norm(x, "bn", top="bn")
    b.scale(bn, "bn_scale")
    b.batch_norm(x, "bn_eps", eps=1e-3, top="bn_eps")
    b.scale(x, "sc_hw", bias=False, axis=2, num_axes=2, top="sc_hw")
    b.scale(x, "sc_all", num_axes=-1, top="sc_all")
    b.scale(x, "sc_scalar", num_axes=0, bias=False, top="sc_scalar")
    b.layer("Bias", "bias", [x], ["bias"])
    b.layer("Bias", "bias_w", [x], ["bias_w"]).bias_param.axis = -1
    b.layer("ReLU6", "relu6", ["bias"], ["relu6"])
    b.relu(x, "leaky", negative_slope=0.1, top="leaky")
    b.layer("PReLU", "prelu", [x], ["prelu"])
    b.layer("PReLU", "prelu_shared", [x], ["prelu_shared"]).prelu_param.channel_shared = True
    b.layer("Sigmoid", "sigmoid", [x], ["sigmoid"])
    b.layer("TanH", "tanh", [x], ["tanh"])
    pw = b.layer("Power", "power", [x], ["power"]).power_param
    pw.power, pw.scale, pw.shift = 2.0, 0.5, 1.0
    b.layer("LRN", "lrn", [x], ["lrn"]).lrn_param.local_size = 5
    lrn = b.layer("LRN", "lrn_within", [x], ["lrn_within"]).lrn_param
    lrn.local_size, lrn.norm_region = 3, caffe_pb2.LRNParameter.WITHIN_CHANNEL
    b.eltwise(["sigmoid", "tanh", "power"], "sum3", coeff=[1, -1, 0.5])
    b.eltwise(["sigmoid", "tanh"], "prod", op="prod")
    b.eltwise(["sigmoid", "tanh"], "max", op="max")
    # second-bottom Scale and Bias: factors of shape (N, C) from a global pooling
    g = b.pool(x, "gpool", "ave", global_pooling=True)
    r = b.layer("Reshape", "g_nc", [g], ["g_nc"]).reshape_param
    r.shape.dim.extend([0, 0])
    b.scale([x, "g_nc"], "sc_2b", axis=0, top="sc_2b")
    b.layer("Bias", "bias_2b", [x, "g_nc"], ["bias_2b"]).bias_param.axis = 0
    b.concat([x, "prelu"], "cat_c")
    b.concat([x, "sigmoid", "tanh"], "cat_w", axis=3)
    legacy = b.layer("Concat", "cat_dim", [x, "tanh"], ["cat_dim"])
    legacy.concat_param.concat_dim = 2
    b.slice("cat_c", "halves", ["half0", "half1"])
    b.slice("cat_w", "thirds", ["w0", "w1", "w2"], axis=-1, slice_points=[3, 5])
    b.layer("Slice", "cut_h", [x], ["h0", "h1"]).slice_param.slice_point.append(4)
    b.layer("Split", "split", [x], ["split0", "split1"])
    b.flatten(x, "flat")
    b.flatten(x, "flat_hw", axis=2, end_axis=3)
    b.flatten(x, "flat_ch", axis=1, end_axis=-2)
    r = b.layer("Reshape", "reshape", [x], ["reshape"]).reshape_param
    r.shape.dim.extend([0, -1, 3])
    r = b.layer("Reshape", "reshape_mid", [x], ["reshape_mid"]).reshape_param
    r.shape.dim.extend([4, -1])
    r.axis, r.num_axes = 1, 2
    r = b.layer("Reshape", "reshape_tail", [x], ["reshape_tail"]).reshape_param
    r.shape.dim.extend([1, 1])
    r.axis = -1
    small = b.pool(x, "small", "max", kernel=3, stride=2)
    b.crop(x, small, "crop", offset=[2, 1])
    b.crop(x, small, "crop_one_offset", offset=3)
    b.crop(x, "h0", "crop_c", axis=1, offset=[2, 0, 0])
    b.dropout(x, "drop", ratio=0.3, top="drop")
    b.softmax(x, "softmax")
    b.softmax(x, "softmax_w", axis=-1)
    b.silence(["h1", "split1"], "silence")
    return b.net


@pytest.mark.caffe
@pytest.mark.parametrize("make", [pooling_net, conv_net, layers_net])
def test_shapes_and_params_match_real_caffe(make, caffe, tmp_path):
    net = make()
    assert_matches_caffe(analyze(net), caffe_net(caffe, net, tmp_path))


@pytest.mark.caffe
def test_builder_reference_net_matches_real_caffe(caffe, tmp_path):
    from test_builder import build_all

    net = build_all().net
    assert_matches_caffe(analyze(net), caffe_net(caffe, net, tmp_path))


def test_pooling_net_exercises_the_pad_edge_rule():
    """The sweep above is only a check of the rule if the rule changes some sizes."""
    analysis = analyze(pooling_net())
    changed = 0
    for name, shape in POOL_INPUTS.items():
        for k in (2, 3, 4):
            for s in (1, 2, 3):
                for p in range(min(k, 3)):
                    for ceil in (True, False):
                        out = analysis.blob_shapes[f"{name}_k{k}s{s}p{p}{'c' if ceil else 'f'}"]
                        naive = (naive_pool(shape[2], k, s, p, ceil),
                                 naive_pool(shape[3], k, s, p, ceil))
                        changed += out[2:] != naive
                        assert out[2] in (naive[0], naive[0] - 1)
    assert changed >= 5


def test_pad_edge_rule_by_hand():
    b = NetBuilder("edge")
    x = b.input("data", (1, 1, 5, 5))
    # ceil((5 + 2 - 2) / 2) + 1 = 4 windows, but the 4th would start at row 6 >= 5 + 1: dropped
    b.pool(x, "p_edge", "max", kernel=2, stride=2, pad=1)
    b.pool(x, "p_floor", "max", kernel=2, stride=2, pad=1, ceil=False)  # floor(5/2) + 1 = 3
    b.pool(x, "p_ceil", "max", kernel=2, stride=2)  # ceil(3/2) + 1 = 3
    b.pool(x, "p_floor0", "max", kernel=2, stride=2, ceil=False)  # floor(3/2) + 1 = 2
    shapes = analyze(b.net).blob_shapes
    assert [shapes[n][2:] for n in ("p_edge", "p_floor", "p_ceil", "p_floor0")] == [
        (3, 3), (3, 3), (3, 3), (2, 2)]


def test_macs_and_params_by_hand():
    b = NetBuilder("tiny")
    x = b.input("data", (2, 3, 8, 8))
    c1 = b.conv(x, "conv1", num_output=4, kernel=3, pad=1)  # -> 2x4x8x8
    c2 = b.conv(c1, "conv2", num_output=6, kernel=3, stride=2, group=2, bias=False)  # 2x6x3x3
    d = b.deconv(c2, "deconv", num_output=2, kernel=2, stride=2)  # -> 2x2x6x6
    b.batch_norm(d, "bn")
    b.scale(d, "scale")
    p = b.pool(d, "pool", "max", kernel=2, stride=2)  # -> 2x2x3x3
    f = b.inner_product(p, "fc", num_output=10)
    b.softmax(f, "prob")
    a = analyze(b.net)
    macs = {s.name: s.macs for s in a.layers}
    params = {s.name: s.params for s in a.layers}
    # out elements x (Cin / group) x kh x kw
    assert macs["conv1"] == (2 * 4 * 8 * 8) * 3 * 9
    assert macs["conv2"] == (2 * 6 * 3 * 3) * (4 // 2) * 9
    # deconv: input elements x (Cout / group) x kh x kw
    assert macs["deconv"] == (2 * 6 * 3 * 3) * 2 * 4
    assert macs["fc"] == 2 * (2 * 3 * 3) * 10
    assert macs["bn"] == macs["scale"] == macs["pool"] == macs["prob"] == 0
    assert a.total_macs == 13824 + 1944 + 864 + 360
    assert params == {"data": 0, "conv1": 4 * 3 * 9 + 4, "conv2": 6 * 2 * 9,
                      "deconv": 6 * 2 * 4 + 2, "bn": 0, "scale": 2 + 2, "pool": 0,
                      "fc": 18 * 10 + 10, "prob": 0}
    assert a.layer("bn").stats == 2 + 2 + 1 and a.total_stats == 5
    assert a.total_params == 112 + 108 + 50 + 4 + 190
    assert a.outputs == ["prob"] and a.inputs == {"data": (2, 3, 8, 8)}


def test_input_shape_override_and_legacy_inputs():
    net = caffe_pb2.NetParameter(name="legacy")
    net.input.append("data")
    net.input_dim.extend([1, 3, 10, 10])
    conv = net.layer.add(name="conv", type="Convolution", bottom=["data"], top=["conv"])
    conv.convolution_param.num_output = 2
    conv.convolution_param.kernel_size.append(3)
    assert input_names(net) == ["data"]
    assert analyze(net).blob_shapes["conv"] == (1, 2, 8, 8)
    assert analyze(net, {"data": (4, 3, 20, 12)}).blob_shapes["conv"] == (4, 2, 18, 10)
    with pytest.raises(NetDefinitionError, match="no input blob named image"):
        analyze(net, {"image": (1, 3, 8, 8)})


def test_train_only_layers_are_skipped():
    b = NetBuilder("phases")
    x = b.input("data", (1, 3, 8, 8))
    b.layer("Accuracy", "accuracy", [x], ["acc"]).include.add(phase=caffe_pb2.TRAIN)
    b.relu(x, "relu")
    assert [s.name for s in analyze(b.net).layers] == ["data", "relu"]


# -- errors name the layer --------------------------------------------------------------------

def _net_with(add):
    b = NetBuilder("bad")
    b.input("data", (1, 4, 6, 6))
    b.input("other", (1, 4, 5, 6))
    add(b)
    return b.net


def _lrn(b, local_size):
    b.layer("LRN", "lrn", ["data"], ["lrn"]).lrn_param.local_size = local_size


@pytest.mark.parametrize("add, message", [
    (lambda b: b.layer("Frobnicate", "frob", ["data"], ["frob"]),
     "layer 'frob': unsupported layer type 'Frobnicate'"),
    (lambda b: b.concat(["data", "other"], "cat"),
     r"layer 'cat' \(Concat\): bottom 'other' has shape \(1, 4, 5, 6\)"),
    (lambda b: b.eltwise(["data", "other"], "add"),
     r"layer 'add' \(Eltwise\): bottom 'other' has shape \(1, 4, 5, 6\)"),
    (lambda b: b.conv("data", "conv", num_output=2, kernel=7),
     r"layer 'conv' \(Convolution\): kernel extent 7 is larger than the padded input 6"),
    (lambda b: b.conv("data", "conv", num_output=2, kernel=3, dilation=4),
     r"layer 'conv' \(Convolution\): kernel extent 9"),
    (lambda b: b.conv("data", "conv", num_output=3, kernel=1, group=3),
     r"layer 'conv' \(Convolution\): group 3 must divide input channels 4"),
    (lambda b: b.pool("data", "pool", kernel=7),
     r"layer 'pool' \(Pooling\): kernel 7 does not fit"),
    (lambda b: b.pool("data", "pool", kernel=2, pad=2),
     r"layer 'pool' \(Pooling\): pad \(2, 2\) must be smaller than the kernel"),
    (lambda b: b.crop("data", "other", "crop", axis=1, offset=1),
     r"layer 'crop' \(Crop\): crop of size 4 at offset 1 does not fit axis 1"),
    (lambda b: b.slice("data", "slice", ["a", "b", "c"]),
     r"layer 'slice' \(Slice\): axis 1 of size 4 does not split into 3"),
    (lambda b: b.slice("data", "slice", ["a", "b"], slice_points=[4]),
     r"layer 'slice' \(Slice\): slice points \[4\]"),
    (lambda b: b.scale(["data", "other"], "scale", axis=0),
     r"layer 'scale' \(Scale\): second bottom \(1, 4, 5, 6\) does not match"),
    (lambda b: b.softmax("data", "softmax", axis=4),
     r"layer 'softmax' \(Softmax\): axis 4 is out of range for a 4-D blob"),
    (lambda b: b.layer("Reshape", "rs", ["data"], ["rs"]).reshape_param.shape.dim.extend([5, -1]),
     r"layer 'rs' \(Reshape\): cannot reshape"),
    (lambda b: _lrn(b, local_size=4), r"layer 'lrn' \(LRN\): local_size must be odd"),
    (lambda b: b.layer("ReLU", "relu2", ["data", "other"], ["r1", "r2"]),
     r"layer 'relu2' \(ReLU\): takes 1 bottom blob\(s\), got 2"),
    (lambda b: b.layer("ReLU", "dup", ["data"], ["other"]),
     r"layer 'dup' \(ReLU\): top blob 'other' is already produced"),
])
def test_bad_nets_name_the_layer(add, message):
    with pytest.raises(NetDefinitionError, match="^" + message):
        analyze(_net_with(add))


def test_unknown_bottom_and_duplicate_name_in_a_raw_net():
    net = caffe_pb2.NetParameter(name="raw")
    net.layer.add(name="data", type="Input", top=["data"]).input_param.shape.add(dim=[1, 3])
    net.layer.add(name="relu", type="ReLU", bottom=["nope"], top=["relu"])
    with pytest.raises(NetDefinitionError, match=r"^layer 'relu' \(ReLU\): unknown bottom blob"):
        analyze(net)
    net.layer[1].bottom[0] = "data"
    net.layer.add(name="relu", type="ReLU", bottom=["data"], top=["relu2"])
    with pytest.raises(NetDefinitionError, match="^layer 'relu': duplicate layer name"):
        analyze(net)


# -- weights ------------------------------------------------------------------------------------

def test_check_weights():
    b = NetBuilder("w")
    x = b.input("data", (1, 3, 8, 8))
    x = b.conv(x, "conv", num_output=4, kernel=3)
    b.batch_norm(x, "bn")
    b.scale(x, "scale")
    x = b.inner_product(x, "fc", num_output=5)
    a = analyze(b.net)
    good = {"conv": [np.zeros((4, 3, 3, 3)), np.zeros(4)],
            "bn": [np.zeros(4), np.zeros(4), np.ones(1)],
            "fc": [np.zeros((1, 1, 5, 144)), np.zeros((1, 1, 1, 5))],  # legacy 4-D blobs
            "aux_head": [np.zeros(3)]}
    report = check_weights(a, good)
    assert report.ok and report.matched == ["conv", "bn", "fc"]
    assert report.missing == ["scale"] and report.unused == ["aux_head"]
    report.raise_for_mismatch()  # nothing to raise

    bad = {"conv": [np.zeros((4, 3, 5, 5)), np.zeros(4)], "bn": [np.zeros(4), np.zeros(4)],
           "fc": [np.zeros((5, 144)), np.zeros(5), np.zeros(5)]}
    report = check_weights(a, bad)
    assert [(m.layer, m.index, m.expected, m.actual) for m in report.mismatches] == [
        ("conv", 0, (4, 3, 3, 3), (4, 3, 5, 5)), ("bn", 2, (1,), None), ("fc", 2, None, (5,))]
    with pytest.raises(WeightMismatchError, match=r"^m.caffemodel: layer 'conv': blob 0 has "
                       r"shape \(4, 3, 5, 5\) but the prototxt implies \(4, 3, 3, 3\) "
                       r"\(and 2 more mismatched blobs\)$"):
        report.raise_for_mismatch("m.caffemodel")


# -- the real SqueezeNet -------------------------------------------------------------------------

SQUEEZENET_V1_0_PARAMS = 1_248_424  # published (torchvision's squeezenet1_0 has the same net)


@pytest.mark.shared
def test_squeezenet_params_match_the_caffemodel(squeezenet_dir):
    net = netio.read_prototxt(squeezenet_dir / "deploy.prototxt")
    a = analyze(net)
    assert a.inputs == {"data": (1, 3, 227, 227)}
    # An independent count: every value stored in the .caffemodel (no BatchNorm in SqueezeNet).
    stored = caffe_pb2.NetParameter.FromString(
        (squeezenet_dir / "squeezenet_v1.0_dc.caffemodel").read_bytes())
    layers = stored.layer or stored.layers
    assert a.total_params == sum(len(blob.data) for layer in layers for blob in layer.blobs)
    assert a.total_params == SQUEEZENET_V1_0_PARAMS
    report = check_weights(a, netio.read_weights(squeezenet_dir / "squeezenet_v1.0_dc.caffemodel"))
    assert report.ok and not report.missing and len(report.matched) == 26
    assert a.blob_shapes["pool_final"] == (1, 1000, 1, 1)


@pytest.mark.caffe
@pytest.mark.shared
def test_squeezenet_shapes_match_real_caffe(squeezenet_dir, caffe):
    prototxt = squeezenet_dir / "deploy.prototxt"
    cnet = caffe.Net(str(prototxt), str(squeezenet_dir / "squeezenet_v1.0_dc.caffemodel"),
                     caffe.TEST)
    net = netio.read_prototxt(prototxt)  # old input_dim format, upgraded by netio
    assert_matches_caffe(analyze(net), cnet)
    # Another input size: Caffe reshapes the whole net, we infer it.
    cnet.blobs["data"].reshape(2, 3, 251, 240)
    cnet.reshape()
    assert_matches_caffe(analyze(net, {"data": (2, 3, 251, 240)}), cnet)


# -- published figures ------------------------------------------------------------------------

def _conv_bn(b, x, name, n, k, stride=1, pad=0, group=1, relu=True):
    x = b.conv(x, name, num_output=n, kernel=k, stride=stride, pad=pad, group=group, bias=False)
    x = b.batch_norm(x, f"{name}_bn")
    x = b.scale(x, f"{name}_scale")
    return b.relu(x, f"{name}_relu") if relu else x


def resnet50():
    """torchvision's ResNet-50 (stride in the 3x3 convolution), written with the builder."""
    b = NetBuilder("resnet50")
    x = b.input("data", (1, 3, 224, 224))
    x = _conv_bn(b, x, "conv1", 64, 7, stride=2, pad=3)
    x = b.pool(x, "pool1", "max", kernel=3, stride=2, pad=1, ceil=False)
    for stage, (blocks, width) in enumerate([(3, 64), (4, 128), (6, 256), (3, 512)], start=2):
        for i in range(blocks):
            stride = 2 if i == 0 and stage > 2 else 1
            name = f"res{stage}_{i}"
            y = _conv_bn(b, x, f"{name}_a", width, 1)
            y = _conv_bn(b, y, f"{name}_b", width, 3, stride=stride, pad=1)
            y = _conv_bn(b, y, f"{name}_c", width * 4, 1, relu=False)
            if i == 0:
                x = _conv_bn(b, x, f"{name}_proj", width * 4, 1, stride=stride, relu=False)
            x = b.relu(b.eltwise([x, y], f"{name}_add"), f"{name}_relu")
    x = b.pool(x, "pool5", "ave", global_pooling=True)
    b.inner_product(x, "fc", num_output=1000)
    return b.net


def mobilenet_v1():
    """MobileNet-v1 1.0-224 (Howard et al. 2017, Table 1), written with the builder."""
    b = NetBuilder("mobilenet_v1")
    x = b.input("data", (1, 3, 224, 224))
    x = _conv_bn(b, x, "conv1", 32, 3, stride=2, pad=1)
    channels = 32
    cfg = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), *[(512, 1)] * 5,
           (1024, 2), (1024, 1)]
    for i, (n, stride) in enumerate(cfg, start=2):
        x = _conv_bn(b, x, f"conv{i}_dw", channels, 3, stride=stride, pad=1, group=channels)
        x = _conv_bn(b, x, f"conv{i}_pw", n, 1)
        channels = n
    x = b.pool(x, "pool6", "ave", global_pooling=True)
    b.inner_product(x, "fc", num_output=1000)
    return b.net


def test_resnet50_matches_published_figures():
    a = analyze(resnet50())
    assert a.blob_shapes["fc"] == (1, 1000)
    assert a.total_params == 25_557_032  # torchvision's ResNet-50 parameter count
    assert round(a.total_macs / 1e9, 2) == 4.09  # torchvision's figure (FACTS §5)


def test_mobilenet_v1_matches_published_figures():
    a = analyze(mobilenet_v1())
    assert a.blob_shapes["pool6"] == (1, 1024, 1, 1)
    assert round(a.total_params / 1e6, 1) == 4.2  # the paper's 4.2 million
    assert round(a.total_macs / 1e6) == 569  # the paper's 569 million mult-adds


# Published parameter counts in millions (FACTS §5), against the zoo's own generators.
ZOO_PUBLISHED = [
    ("resnet_v2", {"variant": "resnet101_v2"}, 224, 44.5),
    ("resnet_v2", {"variant": "resnet152_v2"}, 224, 60.2),
    ("resnext", {"variant": "resnext50_32x4d"}, 224, 25.0),
    ("resnext", {"variant": "resnext101_32x4d"}, 224, 44.2),
    ("resnext", {"variant": "resnext101_64x4d"}, 224, 83.5),
    ("wrn", {"variant": "wrn50_2"}, 224, 68.9),
    ("inception_v3", {}, 299, 23.8),
    ("inception_v4", {}, 299, 42.7),
    ("inception_resnet_v2", {}, 299, 55.8),
]


@pytest.mark.parametrize("module, kwargs, size, millions", ZOO_PUBLISHED,
                         ids=[f"{m}-{k.get('variant', m)}" for m, k, _, _ in ZOO_PUBLISHED])
def test_zoo_parameter_counts_match_published_figures(module, kwargs, size, millions):
    build = importlib.import_module(f"caffezoo.generators.{module}").build
    assert round(analyze(build(size, **kwargs)).total_params / 1e6, 1) == millions


def test_unupgraded_v1_net_is_refused():
    net = caffe_pb2.NetParameter(name="v1")
    net.layers.add(name="conv", bottom=["data"], top=["conv"])
    with pytest.raises(NetDefinitionError, match="^net 'v1': old V1 'layers'"):
        analyze(net)
