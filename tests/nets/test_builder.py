"""NetBuilder: the text it produces parses back (with protobuf's own text parser) into the fields
asked for, only non-default fields are written, and bad calls fail naming the layer. That real
Caffe accepts and shapes builder nets is checked in test_analysis.py."""

from __future__ import annotations

import pytest
from google.protobuf import text_format

from caffezoo.builder import NetBuilder
from caffezoo.errors import NetDefinitionError
from caffezoo.proto import caffe_pb2


def build_all() -> NetBuilder:
    b = NetBuilder("every_method")
    x = b.input("data", (2, 3, 31, 29))
    x = b.conv(x, "conv1", num_output=8, kernel=7, stride=2, pad=3, bias=False)
    x = b.batch_norm(x, "conv1_bn")
    x = b.scale(x, "conv1_scale")
    x = b.relu(x, "conv1_relu")
    p = b.pool(x, "pool1", "max", kernel=3, stride=2, ceil=False)
    c = b.conv(p, "conv2", num_output=8, kernel=(1, 3), stride=(1, 2), pad=(0, 2), group=4,
               dilation=2)
    c = b.batch_norm(c, "conv2_bn", eps=1e-3, top="conv2_bn")
    c = b.scale(c, "conv2_scale", bias=False, top="conv2_scaled")
    d = b.pool(p, "pool2", "ave", kernel=(1, 3), stride=(1, 2), pad=(0, 1))
    s = b.eltwise([c, d], "add", op="sum", coeff=[1.0, 0.17])
    m = b.eltwise([c, d], "mul", op="prod")
    cat = b.concat([s, m], "cat")
    cat2 = b.concat([s, m], "cat_h", axis=2)
    halves = b.slice(cat2, "halves", ["h0", "h1"], axis=2, slice_points=[4])
    b.silence(halves[1], "drop_h1")
    cropped = b.crop(cat, halves[0], "crop", axis=2, offset=[1, 0])
    g = b.pool(cropped, "gpool", "ave", global_pooling=True)
    f = b.flatten(g, "flat")
    f = b.dropout(f, "drop", ratio=0.2)
    f = b.inner_product(f, "fc", num_output=10)
    b.softmax(f, "prob")
    return b


def layer(net: caffe_pb2.NetParameter, name: str) -> caffe_pb2.LayerParameter:
    return next(lay for lay in net.layer if lay.name == name)


def test_text_parses_back_with_the_fields_asked_for():
    text = text_format.MessageToString(build_all().net)
    net = text_format.Parse(text, caffe_pb2.NetParameter())
    assert net.name == "every_method"
    assert [lay.type for lay in net.layer] == [
        "Input", "Convolution", "BatchNorm", "Scale", "ReLU", "Pooling", "Convolution",
        "BatchNorm", "Scale", "Pooling", "Eltwise", "Eltwise", "Concat", "Concat", "Slice",
        "Silence", "Crop", "Pooling", "Flatten", "Dropout", "InnerProduct", "Softmax"]

    assert list(layer(net, "data").input_param.shape[0].dim) == [2, 3, 31, 29]
    assert list(layer(net, "data").top) == ["data"]

    c1 = layer(net, "conv1").convolution_param
    assert (c1.num_output, list(c1.kernel_size), list(c1.stride), list(c1.pad)) == (
        8, [7], [2], [3])
    assert c1.HasField("bias_term") and c1.bias_term is False
    assert not c1.HasField("group") and not c1.dilation

    c2 = layer(net, "conv2").convolution_param
    assert (c2.kernel_h, c2.kernel_w, c2.stride_h, c2.stride_w, c2.pad_h, c2.pad_w) == (
        1, 3, 1, 2, 0, 2)
    assert not c2.kernel_size and not c2.stride and not c2.pad
    assert c2.group == 4 and list(c2.dilation) == [2]
    assert not c2.HasField("bias_term")  # Caffe's default (true) is not written

    # In-place by default; top= moves the output to a new blob.
    assert list(layer(net, "conv1_bn").top) == ["conv1"] == list(layer(net, "conv1_relu").top)
    assert list(layer(net, "conv2_scale").top) == ["conv2_scaled"]
    bn1, bn2 = layer(net, "conv1_bn").batch_norm_param, layer(net, "conv2_bn").batch_norm_param
    assert bn1.use_global_stats and bn2.use_global_stats
    assert not bn1.HasField("eps")  # 1e-5 is Caffe's default
    assert bn2.eps == pytest.approx(1e-3)
    assert layer(net, "conv1_scale").scale_param.bias_term is True
    sc2 = layer(net, "conv2_scale").scale_param
    assert sc2.HasField("bias_term") and sc2.bias_term is False

    p1 = layer(net, "pool1").pooling_param
    assert (p1.pool, p1.kernel_size, p1.stride) == (caffe_pb2.PoolingParameter.MAX, 3, 2)
    assert p1.HasField("ceil_mode") and p1.ceil_mode is False
    p2 = layer(net, "pool2").pooling_param
    assert p2.pool == caffe_pb2.PoolingParameter.AVE
    assert (p2.kernel_h, p2.kernel_w, p2.stride_h, p2.stride_w, p2.pad_h, p2.pad_w) == (
        1, 3, 1, 2, 0, 1)
    assert not p2.HasField("ceil_mode")  # ceil is Caffe's default
    gp = layer(net, "gpool").pooling_param
    assert gp.global_pooling and not gp.HasField("kernel_size") and not gp.HasField("ceil_mode")

    add = layer(net, "add").eltwise_param
    assert add.operation == caffe_pb2.EltwiseParameter.SUM
    assert list(add.coeff) == pytest.approx([1.0, 0.17])
    assert layer(net, "mul").eltwise_param.operation == caffe_pb2.EltwiseParameter.PROD
    assert list(layer(net, "add").bottom) == ["conv2_scaled", "pool2"]

    assert not layer(net, "cat").concat_param.HasField("axis")
    assert layer(net, "cat_h").concat_param.axis == 2
    sl = layer(net, "halves")
    assert list(sl.top) == ["h0", "h1"] and list(sl.slice_param.slice_point) == [4]
    assert sl.slice_param.axis == 2
    assert list(layer(net, "drop_h1").bottom) == ["h1"] and not layer(net, "drop_h1").top
    crop = layer(net, "crop")
    assert list(crop.bottom) == ["cat", "h0"]
    assert list(crop.crop_param.offset) == [1, 0] and not crop.crop_param.HasField("axis")
    assert layer(net, "drop").dropout_param.dropout_ratio == pytest.approx(0.2)
    assert list(layer(net, "drop").top) == ["flat"]
    assert layer(net, "fc").inner_product_param.num_output == 10
    assert list(layer(net, "prob").top) == ["prob"]


def test_text_reads_like_caffe_deploy_files():
    text = text_format.MessageToString(build_all().net)
    assert "bias_term: false" in text
    assert "group: 1\n" not in text
    assert "ceil_mode: true" not in text
    assert "dilation: 1\n" not in text
    assert "pool: MAX" in text and "operation: SUM" in text
    assert "eps: 1e-05" not in text


def test_same_calls_give_byte_identical_text():
    first = text_format.MessageToString(build_all().net).encode()
    second = text_format.MessageToString(build_all().net).encode()
    assert first == second
    assert build_all().net.SerializeToString(deterministic=True) == build_all().net \
        .SerializeToString(deterministic=True)


def test_net_is_a_snapshot():
    b = NetBuilder("snap")
    b.input("data", (1, 3, 8, 8))
    net = b.net
    net.layer[0].name = "changed"
    b.relu("data", "relu")
    assert [lay.name for lay in b.net.layer] == ["data", "relu"]
    assert len(net.layer) == 1


def test_non_square_dilation_writes_one_value_per_axis():
    b = NetBuilder("dil")
    x = b.input("data", (1, 4, 16, 16))
    b.conv(x, "c", num_output=4, kernel=3, dilation=(2, 3))
    assert list(b.net.layer[1].convolution_param.dilation) == [2, 3]


def test_generic_layer_for_other_types():
    b = NetBuilder("generic")
    x = b.input("data", (1, 4, 8, 8))
    lrn = b.layer("LRN", "norm", [x], ["norm"])
    lrn.lrn_param.local_size = 5
    assert b.net.layer[1].lrn_param.local_size == 5
    assert "norm" in b.blobs


@pytest.mark.parametrize("make, message", [
    (lambda b: b.conv("nope", "c", num_output=4, kernel=3),
     "layer 'c': unknown bottom blob 'nope'"),
    (lambda b: b.relu("data", "data"), "layer 'data': duplicate layer name"),
    (lambda b: b.conv("data", "c", num_output=4, kernel=0), "layer 'c': kernel must be >= 1"),
    (lambda b: b.conv("data", "c", num_output=4, kernel=(3, 3, 3)), "layer 'c': kernel must be"),
    (lambda b: b.conv("data", "c", num_output=6, kernel=1, group=4), "layer 'c': num_output 6"),
    (lambda b: b.conv("data", "c", num_output=0, kernel=1), "layer 'c': num_output"),
    (lambda b: b.pool("data", "p", "max"), "layer 'p': pooling needs a kernel"),
    (lambda b: b.pool("data", "p", "median", kernel=2), "layer 'p': unknown pooling method"),
    (lambda b: b.pool("data", "p", "ave", kernel=3, global_pooling=True), "layer 'p': global"),
    (lambda b: b.eltwise(["data", "data"], "e", coeff=[1.0]), "layer 'e': 1 coeff for 2"),
    (lambda b: b.eltwise(["data", "data"], "e", op="prod", coeff=[1, 2]), "layer 'e': coeff"),
    (lambda b: b.eltwise(["data"], "e"), "layer 'e': Eltwise needs at least two"),
    (lambda b: b.slice("data", "s", ["a", "b"], slice_points=[1, 2]), "layer 's': 2 slice"),
    (lambda b: b.slice("data", "s", ["a", "b", "c"], slice_points=[2, 1]), "layer 's': slice"),
    (lambda b: b.dropout("data", "d", ratio=1.0), "layer 'd': dropout ratio"),
    (lambda b: b.concat(["data", "x"], "cat"), "layer 'cat': unknown bottom blob 'x'"),
    (lambda b: b.input("in2", (1, 0, 4, 4)), "layer 'in2': input shape"),
])
def test_bad_calls_name_the_layer(make, message):
    b = NetBuilder("bad")
    b.input("data", (1, 4, 8, 8))
    with pytest.raises(NetDefinitionError, match="^" + message.replace("(", r"\(")):
        make(b)
    # A failed call adds nothing.
    assert [lay.name for lay in b.net.layer] == ["data"]
