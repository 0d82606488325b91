"""The graph emitter (caffezoo.graph.emit): hand-built IR graphs covering every handler, emitted
for each target, run in real Caffe (pycaffe) and OpenCV DNN, every IR value compared with an
independent numpy implementation (tests/helpers/graph_reference.py); refusals by name."""

from __future__ import annotations

import math

import graph_reference
import numpy as np
import pytest

from caffezoo import netio
from caffezoo.errors import ConversionError
from caffezoo.graph.emit import check_graph, emit
from caffezoo.graph.ir import OPS, Graph, Node

RNG = np.random.default_rng(7)
TOL = 1e-5  # relative to the largest |value| of each compared tensor

# (target, runtime): stock Caffe nets run in real Caffe (portable pooling dialect) and OpenCV
RUNS = [
    pytest.param("caffe", "pycaffe", marks=pytest.mark.caffe, id="caffe-pycaffe"),
    pytest.param("caffe", "opencv", marks=pytest.mark.opencv, id="caffe-opencv"),
    pytest.param("fork", "pycaffe", marks=pytest.mark.caffe, id="fork-pycaffe"),
    pytest.param("opencv", "opencv", marks=pytest.mark.opencv, id="opencv-opencv"),
]
DIALECT = {"caffe": "portable", "fork": "ceil_mode", "opencv": "ceil_mode"}


def w(*shape, scale=0.5):
    return (RNG.normal(size=shape) * scale).astype(np.float32)


def graph(nodes, shape=(2, 3, 9, 10), constants=None, outputs=None, name="g") -> Graph:
    return Graph(name, {"x": shape}, outputs or [nodes[-1].outputs[0]], nodes,
                 constants=constants or {})


def N(name, op, inputs, attrs=None, params=None, out=None):  # noqa: N802 - reads like a table
    return Node(name, op, list(inputs), [out or name], attrs or {}, params or {},
                source_op=f"Src{op.title()}")


# -- the graphs ----------------------------------------------------------------------------------


def g_conv():
    return graph([
        N("c_plain", "conv", ["x"], {"pads": (1, 1, 1, 1)}, {"weight": w(4, 3, 3, 3),
                                                               "bias": w(4)}),
        N("c_group", "conv", ["c_plain"], {"group": 2, "stride": (2, 1), "pads": (0, 1, 0, 1)},
          {"weight": w(6, 2, 3, 2)}),
        N("c_dw", "conv", ["c_group"], {"group": 6, "dilation": (2, 2), "pads": (2, 2, 2, 2)},
          {"weight": w(6, 1, 3, 3), "bias": w(6)}),
        N("c_same", "conv", ["c_dw"], {"stride": (2, 2), "pads": (0, 0, 1, 1)},
          {"weight": w(5, 6, 3, 3)}),  # TF SAME, stride 2: extra pad bottom/right only
        N("c_tl", "conv", ["c_same"], {"pads": (2, 1, 0, 0), "dilation": (2, 1)},
          {"weight": w(4, 5, 2, 2), "bias": w(4)}),  # extra pad top/left, dilated
        N("bn", "batch_norm", ["c_tl"], {"eps": 1e-3},
          {"mean": w(4), "var": np.abs(w(4)) + 0.1, "gamma": w(4), "beta": w(4)}),
        N("bn2", "batch_norm", ["bn"], {"eps": 2e-5}, {"mean": w(4), "var": np.abs(w(4))}),
        N("relu", "relu", ["bn2"]),
    ], shape=(2, 3, 12, 11))


def g_pool():
    return graph([
        N("mp_floor", "max_pool", ["x"], {"kernel": (3, 3), "stride": (2, 2)}),
        N("mp_ceil", "max_pool", ["x"], {"kernel": (3, 3), "stride": (2, 2), "ceil": True}),
        N("mp_same", "max_pool", ["x"], {"kernel": (3, 3), "stride": (2, 2),
                                         "pads": (0, 0, 1, 1)}),
        N("mp_pad", "max_pool", ["x"], {"kernel": (3, 2), "stride": (2, 2),
                                        "pads": (1, 1, 1, 1), "ceil": True}),
        N("mp_big_tl", "max_pool", ["x"], {"kernel": (3, 3), "stride": (1, 2),
                                           "pads": (2, 1, 0, 0)}),
        N("ap_incl", "avg_pool", ["x"], {"kernel": (3, 3), "stride": (2, 2), "pads": (1, 1, 1, 1),
                                         "count_include_pad": True}),
        N("ap_excl", "avg_pool", ["x"], {"kernel": (3, 3), "stride": (1, 1), "pads": (1, 1, 1, 1),
                                         "count_include_pad": False}),
        N("ap_ceil", "avg_pool", ["x"], {"kernel": (3, 3), "stride": (2, 2), "pads": (1, 1, 1, 1),
                                         "ceil": True, "count_include_pad": True}),
        N("ap_same", "avg_pool", ["x"], {"kernel": (3, 3), "stride": (2, 2), "pads": (0, 0, 1, 1),
                                         "count_include_pad": False}),
        N("ap_ceil_ex", "avg_pool", ["x"], {"kernel": (3, 2), "stride": (2, 3),
                                            "pads": (1, 0, 1, 0), "ceil": True}),
        N("ap_nopad", "avg_pool", ["x"], {"kernel": (2, 3), "stride": (2, 3)}),
        N("gap", "global_avg_pool", ["x"]),
        N("gmp", "global_max_pool", ["x"]),
        N("pad0", "pad", ["x"], {"pads": (1, 0, 2, 1), "value": 0.0}),
        N("ap_padded", "avg_pool", ["pad0"], {"kernel": (3, 3), "stride": (2, 2),
                                              "pads": (0, 1, 0, 0)}),
        N("padinf", "pad", ["x"], {"pads": (0, 0, 1, 1), "value": -math.inf}),
        N("mp_padded", "max_pool", ["padinf"], {"kernel": (3, 3), "stride": (2, 2)}),
        N("pad_c", "pad", ["x"], {"pads": (1, 2, 0, 1)}),
        N("c_padded", "conv", ["pad_c"], {"stride": (2, 2)}, {"weight": w(2, 3, 3, 3)}),
    ], shape=(2, 3, 10, 11), outputs=["mp_floor", "mp_ceil", "mp_same", "mp_pad", "mp_big_tl",
                                      "ap_incl", "ap_excl", "ap_ceil", "ap_same", "ap_ceil_ex",
                                      "ap_nopad", "gap", "gmp", "ap_padded", "mp_padded",
                                      "c_padded"])


def g_act():
    nodes = [
        N("leaky", "leaky_relu", ["x"], {"alpha": 0.1}),
        N("prelu_c", "prelu", ["x"], params={"slope": w(3)}),
        N("prelu_1", "prelu", ["x"], params={"slope": np.array([0.25], np.float32)}),
        N("elu", "elu", ["x"], {"alpha": 0.7}),
        N("relu6", "clip", ["x"], {"min": 0.0, "max": 6.0}),
        N("clip_any", "clip", ["x"], {"min": -1.0, "max": 2.5}),
        N("clip_lo", "clip", ["x"], {"min": -0.5, "max": math.inf}),
        N("clip_hi", "clip", ["x"], {"min": -math.inf, "max": 1.5}),
        N("clip_0_4", "clip", ["x"], {"min": 0.0, "max": 4.0}),
        N("sig", "sigmoid", ["x"]),
        N("tanh", "tanh", ["x"]),
        N("softplus", "softplus", ["x"]),
        N("hsig", "hard_sigmoid", ["x"], {"alpha": 1 / 6, "beta": 0.5}),
        N("hswish", "hard_swish", ["x"]),
        N("silu", "silu", ["x"]),
    ]
    return graph(nodes, shape=(2, 3, 5, 6), outputs=[n.outputs[0] for n in nodes])


def g_arith():
    consts = {"k_scalar": np.array(1.5, np.float32), "k_c": w(3, 1, 1),
              "k_hw": w(1, 1, 5, 6), "k_chw": w(1, 3, 5, 6), "k_4": np.array([4.0], np.float32),
              "k_3": np.array(3.0, np.float32)}
    nodes = [
        N("conv", "conv", ["x"], {"pads": (1, 1, 1, 1)}, {"weight": w(3, 3, 3, 3)}),
        N("add", "add", ["x", "conv"]),
        N("add3", "add", ["x", "conv", "add"]),
        N("sub", "sub", ["x", "conv"]),
        N("max", "max", ["x", "conv"]),
        N("mul", "mul", ["x", "conv"]),
        N("gap", "global_avg_pool", ["conv"]),
        N("se", "sigmoid", ["gap"]),
        N("se_mul", "mul", ["x", "se"]),
        N("se_mul_rev", "mul", ["se", "conv"]),
        N("se_div", "div", ["x", "se"]),
        N("div", "div", ["x", "se_mul"]),
        N("s_add", "add", ["x", "k_scalar"]),
        N("s_sub", "sub", ["x", "k_scalar"]),
        N("s_rsub", "sub", ["k_scalar", "x"]),
        N("s_mul", "mul", ["k_scalar", "x"]),
        N("s_div4", "div", ["x", "k_4"]),
        N("s_div3", "div", ["x", "k_3"]),
        N("s_rdiv", "div", ["k_scalar", "se"]),
        N("c_mul", "mul", ["x", "k_c"]),
        N("c_add", "add", ["k_c", "x"]),
        N("c_sub", "sub", ["x", "k_c"]),
        N("c_rsub", "sub", ["k_c", "x"]),
        N("hw_mul", "mul", ["x", "k_hw"]),
        N("chw_add", "add", ["x", "k_chw"]),
        N("c_div", "div", ["x", "k_c"]),
    ]
    return graph(nodes, shape=(2, 3, 5, 6), constants=consts,
                 outputs=[n.outputs[0] for n in nodes])


def g_shape():
    c, groups = 6, 3
    nodes = [
        N("conv", "conv", ["x"], {}, {"weight": w(c, 3, 1, 1), "bias": w(c)}),
        N("shuf_a", "reshape", ["conv"], {"shape": (2, groups, c // groups, 4, 5)}),
        N("shuf_t", "transpose", ["shuf_a"], {"perm": (0, 2, 1, 3, 4)}),
        N("shuf_b", "reshape", ["shuf_t"], {"shape": (2, c, 4, 5)}),
        N("cat", "concat", ["x", "shuf_b", "conv"], {"axis": 1}),
        N("cat_h", "concat", ["x", "x"], {"axis": -2}),
        N("ident", "identity", ["cat"]),
        N("noperm", "transpose", ["ident"], {"perm": (0, 1, 2, 3)}),
        N("pad_relu", "pad", ["noperm"], {"pads": (0, 2, 1, 0)}),
        N("padv", "pad", ["conv"], {"pads": (1, 1, 0, 2), "value": 1.5}),
        N("relu", "relu", ["pad_relu"]),
        N("pool", "max_pool", ["relu"], {"kernel": (2, 2), "stride": (2, 2)}),
        N("resh", "reshape", ["pool"], {"shape": (2, 15, 6)}),
        N("sm_mid", "softmax", ["resh"], {"axis": 1}),
        N("flat", "flatten", ["pool"], {"axis": 1}),
        N("fc", "linear", ["flat"], {}, {"weight": w(7, 15 * 6), "bias": w(7)}),
        N("fc4d", "linear", ["pool"], {}, {"weight": w(5, 15 * 6)}),
        N("sm", "softmax", ["fc"], {"axis": -1}),
        N("mid", "slice", ["conv"], {"axis": 1, "start": 2, "end": 5}),
        N("head", "slice", ["cat"], {"axis": 1, "start": 0, "end": 4}),
        N("tail", "slice", ["cat"], {"axis": 3, "start": 1, "end": 5}),
    ]
    return graph(nodes, shape=(2, 3, 4, 5), outputs=["sm", "sm_mid", "fc4d", "cat_h", "padv",
                                                     "mid", "head", "tail"])


def g_bias():
    """Broadcast sums of two values: Caffe's Bias layer, or (target opencv, which lacks it) the
    small value spread by a Scale of ones and an Eltwise sum."""
    nodes = [
        N("gap", "global_avg_pool", ["x"]),
        N("se_add", "add", ["gap", "x"]),
        N("se_sub", "sub", ["x", "gap"]),
        N("se_rsub", "sub", ["gap", "x"]),
        N("se_rdiv", "div", ["gap", "se_add"]),
    ]
    return graph(nodes, shape=(2, 3, 5, 6), outputs=["se_add", "se_sub", "se_rsub", "se_rdiv"])


def g_permute():
    """General transposes: Permute on the fork and OpenCV, refused on stock Caffe."""
    nodes = [
        N("nhwc", "transpose", ["x"], {"perm": (0, 2, 3, 1)}),
        N("relu", "relu", ["nhwc"]),
        N("back", "transpose", ["relu"], {"perm": (0, 3, 1, 2)}),
        N("hw", "transpose", ["back"], {"perm": (0, 1, 3, 2)}),
        N("flat", "flatten", ["nhwc"], {"axis": 1}),
        N("fc", "linear", ["flat"], {}, {"weight": w(4, 3 * 5 * 6)}),
    ]
    return graph(nodes, shape=(2, 3, 5, 6), outputs=["hw", "fc"])


GRAPHS = {"conv": g_conv, "pool": g_pool, "act": g_act, "arith": g_arith, "shape": g_shape,
          "bias": g_bias, "permute": g_permute}
OPENCV_CANNOT = {"bias"}
STOCK_CANNOT = {"permute"}


# -- running ------------------------------------------------------------------------------------


def run_emitted(emitted, runtime, x, tmp_path):
    from caffezoo.runtimes import open_runtime

    dialect = DIALECT[emitted.target]
    proto, model = tmp_path / "net.prototxt", tmp_path / "net.caffemodel"
    netio.write_prototxt(emitted.net, proto, dialect=dialect)
    netio.write_caffemodel(emitted.net, model, dialect=dialect)
    rt = open_runtime(runtime, proto, model)
    blobs = sorted(set(emitted.value_blobs.values()) - {emitted.input_blob})
    return rt.forward(x, blobs)


@pytest.mark.parametrize("name", sorted(GRAPHS))
@pytest.mark.parametrize(("target", "runtime"), RUNS)
def test_every_value_matches_numpy(name, target, runtime, tmp_path):
    g = GRAPHS[name]()
    if name in OPENCV_CANNOT and runtime == "opencv" and target != "opencv":
        return  # stock Caffe's Bias layer: not an OpenCV net
    if name in STOCK_CANNOT and target == "caffe":
        with pytest.raises(ConversionError, match=r"node 'nhwc' \(SrcTranspose\).*Permute"):
            emit(g, target)
        return
    x = (np.random.default_rng(1).normal(size=g.inputs["x"]) * 3).astype(np.float32)
    ref = graph_reference.run(g, x)
    emitted = emit(g, target)
    got = run_emitted(emitted, runtime, x, tmp_path)
    checked = 0
    for value, blob in emitted.value_blobs.items():
        if blob == emitted.input_blob:
            continue
        want, have = ref[value], got[blob]
        assert have.shape == want.shape, (value, have.shape, want.shape)
        scale = max(float(np.abs(want).max()), 1e-6)
        err = float(np.abs(have - want).max()) / scale
        assert err <= TOL, f"{value}: relative error {err:.3g} ({target} in {runtime})"
        checked += 1
    # every computed value of the graph has a blob, except Pads folded into their consumer and
    # the inside of a channel shuffle
    folded = {v for v in ref if v not in emitted.value_blobs}
    assert folded <= {"pad0", "padinf", "pad_c", "shuf_a", "shuf_t"} | set(g.constants)
    if name == "bias":
        assert ("Bias" in _types(emitted)) == (target != "opencv")
    assert checked >= len(g.nodes) - len(folded)


@pytest.mark.opencv
def test_opencv_fused_chains_stay_exact(tmp_path):
    """Final outputs only, so OpenCV fuses (Convolution + BatchNorm + Scale + activation): the
    stock clip/hard_swish forms read the convolution's output twice and must not be fused away."""
    from caffezoo.runtimes import open_runtime

    for act in (N("a", "clip", ["bn"], {"min": -1.0, "max": 2.5}),
                N("a", "hard_swish", ["bn"])):
        g = graph([N("c", "conv", ["x"], {"pads": (1, 1, 1, 1)}, {"weight": w(4, 3, 3, 3)}),
                   N("bn", "batch_norm", ["c"], {}, {"mean": w(4), "var": np.abs(w(4)) + 0.1}),
                   act, N("c2", "conv", ["a"], {}, {"weight": w(4, 4, 1, 1)})])
        x = (np.random.default_rng(1).normal(size=g.inputs["x"]) * 3).astype(np.float32)
        emitted = emit(g, "caffe")
        netio.write_prototxt(emitted.net, tmp_path / "n.prototxt", dialect="portable")
        netio.write_caffemodel(emitted.net, tmp_path / "n.caffemodel", dialect="portable")
        got = open_runtime("opencv", tmp_path / "n.prototxt", tmp_path / "n.caffemodel").forward(x)
        want = graph_reference.run(g, x)["c2"]
        assert np.abs(got["c2"] - want).max() <= TOL * np.abs(want).max()


def test_every_canonical_op_is_covered():
    used = {n.op for make in GRAPHS.values() for n in make().nodes}
    assert used == set(OPS)


# -- what each target gets ---------------------------------------------------------------------


def _types(emitted) -> list[str]:
    return [layer.type for layer in emitted.net.layer]


def test_targets_choose_their_layers():
    g = g_act()
    stock = _types(emit(g, "caffe"))
    assert not {"ReLU6", "HardSwish", "Swish", "Clip"} & set(stock)
    fork = emit(g, "fork")
    assert {"ReLU6", "HardSwish", "HardSigmoid"} <= set(_types(fork))
    clip4 = next(layer for layer in fork.net.layer if layer.name == "clip_0_4")
    assert clip4.type == "ReLU6" and clip4.relu6_param.threshold == 4.0
    opencv = _types(emit(g, "opencv"))
    assert "HardSwish" in opencv and "ReLU6" in opencv


def test_no_layer_works_in_place_and_names_follow_the_graph():
    for make in GRAPHS.values():
        g = make()
        emitted = emit(g, "fork")
        tops = [t for layer in emitted.net.layer for t in layer.top]
        assert len(tops) == len(set(tops))
        for layer in emitted.net.layer:
            assert not set(layer.top) & set(layer.bottom)
        for node in g.nodes:
            if node.outputs[0] in emitted.value_blobs and node.name not in ("ident", "noperm"):
                assert emitted.value_blobs[node.outputs[0]] == node.outputs[0]


def test_portable_dialect_has_no_ceil_mode_field():
    text = netio.format_prototxt(emit(g_pool(), "caffe").net, dialect="portable")
    assert "ceil_mode" not in text and "Silence" in text


def test_an_aliased_graph_output_gets_its_own_blob():
    g = graph([N("fc", "linear", ["x"], {}, {"weight": w(4, 3 * 2 * 2)}),
               N("drop", "identity", ["fc"])], shape=(1, 3, 2, 2))
    emitted = emit(g, "caffe")
    assert emitted.output_blobs == {"drop": "drop"}
    split = emitted.net.layer[-1]
    assert (split.type, list(split.bottom), list(split.top)) == ("Split", ["fc"], ["drop"])


def test_names_are_sanitised():
    g = Graph("odd name", {"input:0": (1, 2, 3, 3)}, ["out put"], [
        N("relu#1", "relu", ["input:0"], out="out put")])
    emitted = emit(g, "caffe")
    assert emitted.value_blobs == {"input:0": "input_0", "out put": "out_put"}
    assert [layer.name for layer in emitted.net.layer] == ["input_0", "relu_1"]


def test_helper_names_never_take_a_value_or_node_name():
    """bn's helper layer and blob would be 'bn_bn'; a later node and value of that name keep
    theirs, and a node named like the input gets a layer of its own."""
    g = graph([N("bn", "batch_norm", ["x"], {}, {"mean": w(3), "var": np.abs(w(3)) + 0.1}),
               N("bn_bn", "relu", ["bn"]), N("x", "sigmoid", ["bn_bn"], out="y")])
    emitted = emit(g, "caffe")
    assert emitted.value_blobs["bn_bn"] == "bn_bn"
    layer = next(la for la in emitted.net.layer if la.type == "ReLU")
    assert (layer.name, list(layer.top)) == ("bn_bn", ["bn_bn"])
    assert [la.name for la in emitted.net.layer if la.type == "Sigmoid"] == ["x_1"]


def test_shapes_are_checked_against_the_front_end():
    g = g_conv()
    g.shapes["c_same"] = (2, 5, 3, 6)
    with pytest.raises(ConversionError, match=r"node 'c_same' \(SrcConv\): Caffe computes "
                                              r"shape \(2, 5, 2, 6\).*says \(2, 5, 3, 6\)"):
        emit(g, "caffe")


# -- refusals ------------------------------------------------------------------------------------


def test_unknown_op_is_refused_by_name():
    g = graph([N("weird", "relu", ["x"])])
    g.nodes[0].op, g.nodes[0].source_op = "lrn", "LRN"
    with pytest.raises(ConversionError, match=r"node 'weird' \(LRN\): unknown op 'lrn'"):
        emit(g, "caffe")


def test_undefined_input_is_one_clear_error():
    g = graph([N("a", "relu", ["x"]), N("b", "add", ["a", "nowhere"])])
    with pytest.raises(ConversionError, match=r"node 'b' \(SrcAdd\): input 'nowhere' is not "
                                              "defined"):
        check_graph(g)


@pytest.mark.parametrize(("graph_", "message"), [
    (Graph("g", {"x": (1, 3, -1, 4)}, ["y"], [N("y", "relu", ["x"])]), "static NCHW shape"),
    (Graph("g", {"x": (1, 3, 4, 4), "z": (1, 3, 4, 4)}, ["y"], [N("y", "relu", ["x"])]),
     "exactly one input"),
    (Graph("g", {"x": (1, 3, 4, 4)}, ["y"], [N("y", "relu", ["x"]), N("y", "relu", ["x"])]),
     "duplicate node name"),
    (Graph("g", {"x": (1, 3, 4, 4)}, ["q"], [N("y", "relu", ["x"])]), "output 'q' is not"),
    (Graph("g", {"x": (1, 3, 4, 4)}, ["y"], [N("y", "relu", [])]),
     r"node 'y' \(SrcRelu\): relu takes 1 input\(s\), got 0"),
    (Graph("g", {"x": (1, 3, 4, 4)}, ["y"], [N("y", "mul", ["x"])]), "mul takes 2 input"),
    (Graph("g", {"x": (1, 3, 4, 4)}, ["y"], [N("y", "max_pool", ["x"], {"kernel": (2, 2),
                                                                       "pads": (1, 1)})]),
     r"node 'y' \(SrcMax_Pool\): malformed attributes"),
])
def test_malformed_graphs(graph_, message):
    with pytest.raises(ConversionError, match=message):
        emit(graph_, "caffe")


@pytest.mark.parametrize(("node", "message"), [
    (N("t", "transpose", ["x"], {"perm": (0, 2, 3, 1)}), r"node 't' \(SrcTranspose\): "
     "transpose"),
    (N("c", "conv", ["x"], {"pads": (0, 0, 1, 0), "dilation": (2, 2)},
       {"weight": w(2, 3, 3, 3)}), r"node 'c' \(SrcConv\): asymmetric pads"),
    (N("c", "conv", ["x"], {}, {"weight": w(2, 4, 3, 3)}), r"node 'c'.*does not fit"),
    (N("p", "max_pool", ["x"], {"kernel": (2, 2), "pads": (2, 0, 0, 0)}),
     r"node 'p'.*not smaller than the kernel"),
    (N("p", "pad", ["x"], {"pads": (0, -1, 0, 0)}), r"node 'p'.*negative pads"),
])
def test_inexpressible_nodes_are_refused_by_name(node, message):
    with pytest.raises(ConversionError, match=message):
        emit(graph([node], shape=(1, 3, 6, 6)), "caffe")


def test_unknown_target():
    with pytest.raises(ValueError, match="unknown target"):
        emit(g_act(), "tensorrt")


def test_identical_notes_are_listed_once_with_their_nodes():
    """A MobileNetV3-like chain: three hard_swish nodes and two squeeze-excitation products
    of different shapes give one note each (with the count and the first node names), and a
    note only one node has keeps its node's name in front."""
    nodes = [N("hs1", "hard_swish", ["x"]), N("hs2", "hard_swish", ["hs1"]),
             N("hs3", "hard_swish", ["hs2"]), N("pool", "global_avg_pool", ["hs3"],
                                                {"keepdims": True}),
             N("se", "mul", ["hs3", "pool"]), N("hsig", "hard_sigmoid", ["se"],
                                                 {"alpha": 0.2, "beta": 0.5})]
    notes = emit(graph(nodes), "caffe").notes
    assert [n for n in notes if "hard_swish" in n] == [
        "hard_swish as x * clip(x + 3, 0, 6) * (1/6) in stock layers: on 3 nodes (hs1, hs2, ...)"]
    assert "se: broadcast product over the last 2 axes as Scale with two bottoms" in notes
    assert any(n.startswith("hsig: hard_sigmoid as Power") for n in notes)
    assert len(notes) == len(set(notes))


def test_node_notes_order_and_names():
    from caffezoo.graph.ir import NodeNotes

    notes = NodeNotes()
    for node, text in [("a", "x"), ("b", "y"), ("c", "x"), ("d", "x"), ("e", "y")]:
        notes.add(node, text)
    notes.add("f", "z")
    assert notes.lines() == ["x: on 3 nodes (a, c, ...)", "y: on 2 nodes (b, e)", "f: z"]
