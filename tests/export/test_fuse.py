"""Fusions of the exported backends (caffezoo.export.fuse and the exporters' fused mode): the
stock-layer forms the graph emitter writes for ops Caffe lacks (clip/ReLU6, HardSigmoid,
HardSwish, SiLU, broadcast arithmetic, channel shuffle, TF SAME padding as a grown kernel,
BatchNorm + Scale) are emitted for every target, run through onnxruntime, openvino and torch
on their fused export, and compared with the target's own runtime (real Caffe; OpenCV for the
opencv target). The fused ONNX graph must hold the ops they stand for and none of the pieces."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from caffezoo import netio
from caffezoo.export import export_net, fuse
from caffezoo.export import onnx as export_onnx
from caffezoo.frameworks import import_onnx
from caffezoo.graph.emit import emit
from caffezoo.graph.ir import Graph, Node
from caffezoo.runtimes import open_runtime

RNG = np.random.default_rng(11)
TOL = 2e-5  # relative to the largest |output|: float32 noise
EXPORTED = ("onnxruntime", "openvino", "torch")
# target -> (pooling dialect written, the runtime that is its reference)
TARGETS = {
    "caffe": ("portable", pytest.param("caffe", marks=pytest.mark.caffe, id="caffe")),
    "fork": ("ceil_mode", pytest.param("fork", marks=pytest.mark.caffe, id="fork")),
    "opencv": ("ceil_mode", pytest.param("opencv", marks=pytest.mark.opencv, id="opencv")),
}
REFERENCE = {"caffe": "pycaffe", "fork": "pycaffe", "opencv": "opencv"}


def w(*shape, scale=0.5):
    return (RNG.normal(size=shape) * scale).astype(np.float32)


def N(name, op, inputs, attrs=None, params=None):  # noqa: N802 - reads like a table
    return Node(name, op, list(inputs), [name], attrs or {}, params or {}, source_op=op)


def fusable_graph() -> Graph:
    """Every pattern once, in a small net (2, 3, 10, 10) -> 7 logits."""
    c = 8
    nodes = [
        # TF SAME, stride 2 on an even input: a 4x4 kernel with a zero first row and column
        N("stem", "conv", ["x"], {"stride": (2, 2), "pads": (0, 0, 1, 1)},
          {"weight": w(c, 3, 3, 3), "bias": w(c)}),
        N("bn", "batch_norm", ["stem"], {"eps": 1e-3},
          {"mean": w(c), "var": np.abs(w(c)) + 0.5, "gamma": w(c), "beta": w(c)}),
        N("relu6", "clip", ["bn"], {"min": 0.0, "max": 6.0}),
        N("dw", "conv", ["relu6"], {"group": c, "pads": (1, 1, 1, 1)}, {"weight": w(c, 1, 3, 3)}),
        N("clipg", "clip", ["dw"], {"min": -1.0, "max": 2.5}),
        N("hsig", "hard_sigmoid", ["clipg"], {"alpha": 0.2, "beta": 0.5}),
        N("prod", "mul", ["clipg", "hsig"]),
        N("hswish", "hard_swish", ["prod"]),
        N("silu", "silu", ["hswish"]),
        N("gap", "global_avg_pool", ["silu"]),
        N("fc1", "conv", ["gap"], {}, {"weight": w(c, c, 1, 1), "bias": w(c)}),
        N("gate", "sigmoid", ["fc1"]),
        N("se", "mul", ["silu", "gate"]),  # (N, C, H, W) * (N, C, 1, 1)
        N("gap2", "global_avg_pool", ["se"]),
        N("badd", "add", ["se", "gap2"]),
        N("bsub", "sub", ["gap2", "badd"]),
        N("shuf_a", "reshape", ["bsub"], {"shape": (2, 2, c // 2, 5, 5)}),
        N("shuf_t", "transpose", ["shuf_a"], {"perm": (0, 2, 1, 3, 4)}),
        N("shuf_b", "reshape", ["shuf_t"], {"shape": (2, c, 5, 5)}),
        N("bn2", "batch_norm", ["shuf_b"], {"eps": 1e-5},  # not after a convolution
          {"mean": w(c), "var": np.abs(w(c)) + 0.5, "gamma": w(c), "beta": w(c)}),
        N("gap3", "global_avg_pool", ["bn2"]),
        N("flat", "flatten", ["gap3"], {"axis": 1}),
        N("fc", "linear", ["flat"], {}, {"weight": w(7, c), "bias": w(7)}),
    ]
    return Graph("fusable", {"x": (2, 3, 10, 10)}, ["fc"], nodes)


def write(emitted, dialect, tmp_path):
    proto, model = tmp_path / "net.prototxt", tmp_path / "net.caffemodel"
    netio.write_prototxt(emitted.net, proto, dialect=dialect)
    netio.write_caffemodel(emitted.net, model, dialect=dialect)
    return proto, model


def fused_onnx(proto, model):
    ex = export_net.from_files(proto, model)
    fx = fuse.fuse(ex)
    return fx, export_onnx.optimise(export_onnx.to_onnx(fx, dynamic_batch=True))


@pytest.mark.torch
@pytest.mark.parametrize("target", [p for _, p in TARGETS.values()])
def test_every_decomposition_runs_as_its_op_and_stays_exact(target, tmp_path):
    dialect, _ = TARGETS[target]
    emitted = emit(fusable_graph(), target)
    proto, model = write(emitted, dialect, tmp_path)
    stock = collections.Counter(la.type for la in emitted.net.layer)

    fx, model_onnx = fused_onnx(proto, model)
    ops = collections.Counter(n.op_type for n in model_onnx.graph.node)
    # the pieces are gone ...
    for piece in ("Max", "Min", "Pow", "ConstantOfShape", "Unsqueeze"):
        assert ops[piece] == 0, (piece, ops)
    # the standalone BatchNorm: one per-channel x * a + b, as one BatchNormalization (mean 0,
    # variance 1, epsilon 0), not a Mul and an Add; the stem's BatchNorm is in its Conv
    (bn,) = [n for n in model_onnx.graph.node if n.op_type == "BatchNormalization"]
    inits = {i.name: import_onnx().numpy_helper.to_array(i)
             for i in model_onnx.graph.initializer}
    assert [a.f for a in bn.attribute if a.name == "epsilon"] == [0.0]
    assert np.all(inits[bn.input[3]] == 0) and np.all(inits[bn.input[4]] == 1)
    assert inits[bn.input[1]].shape == (8,)
    # ... and the ops stand in their place
    assert ops["Clip"] == 2 and ops["HardSigmoid"] == 1 and ops["HardSwish"] == 1
    assert ops["Sigmoid"] == 2 and ops["Transpose"] == 1 and ops["Conv"] == 3  # no shuffle conv
    stem = next(n for n in model_onnx.graph.node if n.op_type == "Conv")
    attrs = {a.name: list(a.ints) for a in stem.attribute}
    assert attrs["kernel_shape"] == [3, 3] and attrs["pads"] == [0, 0, 1, 1]
    assert stock["Convolution"] == 4  # the emitted net: the shuffle is a permutation conv
    assert fx.fusions["channel shuffle -> Reshape/Permute/Reshape"] == 1
    assert fx.fusions["BatchNorm (+ Scale) -> Scale"] == 1
    assert len(fx.net.layer) < len(emitted.net.layer)

    # exact: the fused outputs of every exported backend against the target's own runtime,
    # at the emitted batch and another one (the fused SE net takes a dynamic batch)
    ref = open_runtime(REFERENCE[target], proto, model)
    for n in (2, 3):
        x = np.random.default_rng(n).normal(0, 1, (n, 3, 10, 10)).astype(np.float32)
        want = ref.forward(x)["fc"]
        scale = float(np.abs(want).max())
        for backend in EXPORTED:
            got = open_runtime(backend, proto, model).forward(x)["fc"]
            err = float(np.abs(got - want).max()) / scale
            assert err < TOL, f"{backend} at batch {n}: relative error {err:.2e}"


def test_trim_zero_taps_hand_computed():
    # TF SAME k3 s2 on 8 pixels as Caffe writes it: 4 taps, the first zero, pad 1 each side
    w4 = np.zeros((2, 1, 4, 4), np.float32)
    w4[:, :, 1:, 1:] = 1.0
    out = (8 + 2 - 4) // 2 + 1  # 4
    trimmed, begin, end = export_net.trim_zero_taps(w4, (1, 1), (2, 2), (1, 1), (8, 8), (out, out))
    assert trimmed.shape == (2, 1, 3, 3) and np.all(trimmed == 1)
    # windows start at 2i (no pad before), the last one reads rows 6..8: one pad after
    assert begin == (0, 0) and end == (1, 1)
    # a leading zero tap with no padding to give back stays; so do live border taps
    w3 = np.ones((1, 1, 3, 3), np.float32)
    w3[:, :, 0, :] = 0
    same, begin, end = export_net.trim_zero_taps(w3, (0, 0), (1, 1), (1, 1), (5, 5), (3, 3))
    assert same.shape == (1, 1, 3, 3) and begin == end == (0, 0)
    # trailing zero taps on the second axis, dilation 2: each one gives back 2 pixels of pad
    w5 = np.ones((1, 1, 3, 3), np.float32)
    w5[:, :, :, 2] = 0
    t, begin, end = export_net.trim_zero_taps(w5, (2, 2), (1, 1), (2, 2), (6, 6), (6, 6))
    assert t.shape == (1, 1, 3, 2) and begin == (2, 2) and end == (2, 0)
    x = np.random.default_rng(0).normal(size=(6, 6))
    xp = np.pad(x, 2)  # the convolution as written ...
    want = np.array([[sum(w5[0, 0, a, b] * xp[i + 2 * a, j + 2 * b] for a in range(3)
                          for b in range(3)) for j in range(6)] for i in range(6)])
    xq = np.pad(x, ((2, 2), (2, 0)))  # ... and trimmed, with its asymmetric padding
    got = np.array([[sum(t[0, 0, a, b] * xq[i + 2 * a, j + 2 * b] for a in range(3)
                         for b in range(2)) for j in range(6)] for i in range(6)])
    np.testing.assert_allclose(got, want, rtol=1e-12)


CHAIN = """
name: "chain"
layer { name: "data" type: "Input" top: "data"
        input_param { shape { dim: 2 dim: 4 dim: 5 dim: 5 } } }
layer { name: "relu" type: "ReLU" bottom: "data" top: "r" }
layer { name: "neg" type: "Power" bottom: "r" top: "n" power_param { scale: -1 } }
layer { name: "c6" type: "Power" bottom: "n" top: "c6" power_param { scale: 0 shift: -6 } }
layer { name: "max" type: "Eltwise" bottom: "n" bottom: "c6" top: "m"
        eltwise_param { operation: MAX } }
layer { name: "out" type: "Power" bottom: "m" top: "relu6" power_param { scale: -1 } }
layer { name: "twice" type: "Power" bottom: "r" top: "r2" power_param { scale: 2 } }
layer { name: "pool" type: "Pooling" bottom: "data" top: "p"
        pooling_param { pool: AVE kernel_size: 1 } }
layer { name: "p_bn" type: "BatchNorm" bottom: "p" top: "p" }
layer { name: "p_sc" type: "Scale" bottom: "p" top: "p" scale_param { bias_term: true } }
layer { name: "p_relu" type: "ReLU" bottom: "p" top: "p" }
"""


@pytest.mark.caffe
@pytest.mark.torch
def test_fusion_keeps_values_others_read_and_in_place_chains(tmp_path):
    """A chain's piece that another layer also reads (`r`) is kept: the clip fuses only from
    there. In-place BatchNorm + Scale + ReLU on a pooled blob (Caffe authors' style) become
    one Scale and the ReLU."""
    from caffezoo.random_weights import random_weights

    net = netio.parse_prototxt(CHAIN)
    proto, model = tmp_path / "chain.prototxt", tmp_path / "chain.caffemodel"
    netio.write_prototxt(net, proto)
    netio.write_caffemodel(netio.attach_weights(net, random_weights(net, 3)), model)
    fx = fuse.fuse(export_net.from_files(proto, model))
    types = [(la.type, list(la.bottom), list(la.top)) for la in fx.net.layer]
    assert ("ReLU", ["data"], ["r"]) in types  # read twice: kept
    assert ("Clip", ["r"], ["relu6"]) in types  # -max(-r, -6) = min(r, 6)
    assert [t for t, _, _ in types].count("Power") == 1  # r2
    assert ("Scale", ["p"], ["p"]) in types and ("BatchNorm", ["p"], ["p"]) not in types
    x = np.random.default_rng(4).normal(0, 4, (2, 4, 5, 5)).astype(np.float32)
    want = open_runtime("pycaffe", proto, model).forward(x)
    for backend in EXPORTED:
        got = open_runtime(backend, proto, model).forward(x)
        assert set(got) == {"r2", "relu6", "p"}
        for name, ref in want.items():
            err = float(np.abs(got[name] - ref).max() / np.abs(ref).max())
            assert err < TOL, (backend, name, err)
