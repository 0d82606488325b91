"""Caffe -> ONNX / PyTorch export against real Caffe (pycaffe), the independent reference: hand
made nets for each edge case of Caffe's semantics, run through the onnxruntime, openvino and
torch backends (which export in memory) and compared blob by blob with Caffe's own forward pass
(the export that keeps every blob), and output by output (the fused export).

Clip and Swish are BVLC-master layers that the Caffe fork built here does not have: those two
are checked against numpy formulas instead."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from caffezoo import netio
from caffezoo.errors import ConversionError
from caffezoo.export import export_net
from caffezoo.random_weights import random_weights
from caffezoo.runtimes import open_runtime

EXPORTED = ("onnxruntime", "openvino", "torch")
TOL = 2e-5  # relative to the blob's largest magnitude: float32 noise


def rel_error(got: np.ndarray, want: np.ndarray) -> float:
    """max |got - want| / max |want|, NaN positions required to agree."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, (got.shape, want.shape)
    nan = np.isnan(want)
    assert np.array_equal(np.isnan(got), nan), "NaN positions differ"
    if nan.all():
        return 0.0
    g, w = got[~nan], want[~nan]
    return float(np.abs(g - w).max() / max(np.abs(w).max(), 1e-12))


def files(tmp_path: Path, text: str, weights=None, seed: int = 0, edit=None):
    net = netio.parse_prototxt(text)
    blobs = random_weights(net, seed) if weights is None else weights
    if edit:
        edit(blobs)
    proto, model = tmp_path / "net.prototxt", tmp_path / "net.caffemodel"
    netio.write_prototxt(net, proto)
    netio.write_caffemodel(netio.attach_weights(net, blobs), model)
    return proto, model


def compare_with_caffe(proto, model, x, backends=EXPORTED, tol=TOL) -> dict[str, float]:
    """Every blob of every exported backend against pycaffe; returns the worst error per
    backend."""
    caffe = open_runtime("pycaffe", proto, model)
    names = [n for n in caffe.checked.blob_names() if n != caffe.input_name]
    want = caffe.forward(x, names)
    worst = {}
    for backend in backends:
        rt = open_runtime(backend, proto, model)
        got = rt.forward(x, names)  # every blob: the export that keeps every name
        errors = {n: rel_error(got[n], want[n]) for n in names}
        # the outputs alone: the fused export (export/fuse.py)
        errors.update({f"{n} (fused)": rel_error(v, want[n]) for n, v in rt.forward(x).items()})
        bad = {n: e for n, e in errors.items() if e > tol}
        assert not bad, f"{backend}: blobs beyond {tol}: {bad}"
        worst[backend] = max(errors.values())
    return worst


def header(shape) -> str:
    dims = " ".join(f"dim: {d}" for d in shape)
    return f'name: "t"\nlayer {{ name: "data" type: "Input" top: "data" ' \
           f'input_param {{ shape {{ {dims} }} }} }}\n'


def data(shape, seed=0, low=-2.0, high=2.0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(low, high, shape).astype(np.float32)


# -- pooling ----------------------------------------------------------------------------------

POOLS = [
    # (method, size, kernel, stride, pad, ceil): why
    ("MAX", 5, 2, 2, 1, True),    # Caffe drops the last window (it would start in the padding)
    ("AVE", 5, 2, 2, 1, True),
    ("AVE", 8, 3, 2, 0, True),    # ceil mode's extra window: divisor clipped at the border
    ("AVE", 7, 3, 2, 1, True),    # divisor counts the padding
    ("AVE", 9, 3, 2, 1, False),   # floor mode with padding
    ("MAX", 9, 3, 2, 1, False),
    ("AVE", 10, 3, 3, 1, True),
    ("MAX", 6, 1, 2, 0, True),    # a window past the input: Caffe's -FLT_MAX
    ("AVE", 6, 1, 2, 0, True),    # ... and its 0/0 = NaN
    ("AVE", 13, 5, 3, 2, True),
    ("MAX", 13, 5, 3, 2, True),
]


@pytest.mark.caffe
@pytest.mark.torch
@pytest.mark.parametrize("method,size,k,s,p,ceil", POOLS)
def test_pooling_matches_caffe(tmp_path, method, size, k, s, p, ceil):
    text = header((2, 3, size, size)) + f'''
layer {{ name: "pool" type: "Pooling" bottom: "data" top: "pool"
  pooling_param {{ pool: {method} kernel_size: {k} stride: {s} pad: {p}
                  ceil_mode: {str(ceil).lower()} }} }}'''
    proto, model = files(tmp_path, text)
    compare_with_caffe(proto, model, data((2, 3, size, size)))


@pytest.mark.caffe
@pytest.mark.torch
def test_rectangular_and_global_pooling(tmp_path):
    # p3/p4: padding on one axis only drops the other axis' last window too (Caffe tests
    # pad_h || pad_w): 8 wide, kernel 1, stride 2 -> 5 windows in ceil mode, 4 here
    text = header((2, 3, 11, 8)) + '''
layer { name: "p1" type: "Pooling" bottom: "data" top: "p1"
  pooling_param { pool: AVE kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 3 pad_h: 1 pad_w: 1 } }
layer { name: "p2" type: "Pooling" bottom: "data" top: "p2"
  pooling_param { pool: MAX kernel_h: 2 kernel_w: 3 stride_h: 3 stride_w: 2 pad_h: 1 pad_w: 0 } }
layer { name: "p3" type: "Pooling" bottom: "data" top: "p3"
  pooling_param { pool: AVE kernel_h: 2 kernel_w: 1 stride: 2 pad_h: 1 pad_w: 0 } }
layer { name: "p4" type: "Pooling" bottom: "data" top: "p4"
  pooling_param { pool: MAX kernel_h: 2 kernel_w: 1 stride: 2 pad_h: 1 pad_w: 0 } }
layer { name: "g1" type: "Pooling" bottom: "p1" top: "g1"
  pooling_param { pool: AVE global_pooling: true } }
layer { name: "g2" type: "Pooling" bottom: "p2" top: "g2"
  pooling_param { pool: MAX global_pooling: true } }'''
    proto, model = files(tmp_path, text)
    compare_with_caffe(proto, model, data((2, 3, 11, 8)))


# -- layers -----------------------------------------------------------------------------------


@pytest.mark.caffe
@pytest.mark.torch
def test_conv_inner_product_and_shape_layers(tmp_path):
    text = header((2, 4, 9, 9)) + '''
layer { name: "c1" type: "Convolution" bottom: "data" top: "c1"
  convolution_param { num_output: 6 kernel_h: 3 kernel_w: 2 stride: 2 pad_h: 1 pad_w: 0
                      group: 2 dilation: 1 bias_term: false } }
layer { name: "c2" type: "Convolution" bottom: "c1" top: "c2"
  convolution_param { num_output: 4 kernel_size: 3 dilation: 2 pad: 2 } }
layer { name: "d1" type: "Deconvolution" bottom: "c2" top: "d1"
  convolution_param { num_output: 6 kernel_size: 3 stride: 2 pad: 1 group: 2 } }
layer { name: "sl" type: "Slice" bottom: "d1" top: "s1" top: "s2" top: "s3"
  slice_param { axis: 1 slice_point: 2 slice_point: 4 } }
layer { name: "sp" type: "Split" bottom: "s2" top: "s2a" top: "s2b" }
layer { name: "cat" type: "Concat" bottom: "s3" bottom: "s1" bottom: "s2a" top: "cat"
  concat_param { axis: 2 } }
layer { name: "halves" type: "Slice" bottom: "s2b" top: "h1" top: "h2" slice_param { axis: 1 } }
layer { name: "sil" type: "Silence" bottom: "h2" }
layer { name: "fl" type: "Flatten" bottom: "cat" top: "fl" flatten_param { axis: 2 } }
layer { name: "ip2" type: "InnerProduct" bottom: "fl" top: "ip2"
  inner_product_param { num_output: 5 axis: 2 } }
layer { name: "ip1" type: "InnerProduct" bottom: "h1" top: "ip1"
  inner_product_param { num_output: 7 transpose: true } }
layer { name: "rs" type: "Reshape" bottom: "ip1" top: "rs"
  reshape_param { shape { dim: 0 dim: -1 dim: 7 } } }
layer { name: "sm" type: "Softmax" bottom: "rs" top: "sm" softmax_param { axis: 2 } }
layer { name: "sm2" type: "Softmax" bottom: "ip2" top: "sm2" softmax_param { axis: 1 } }
layer { name: "drop" type: "Dropout" bottom: "sm2" top: "sm2"
  dropout_param { dropout_ratio: 0.3 } }'''
    proto, model = files(tmp_path, text)
    compare_with_caffe(proto, model, data((3, 4, 9, 9)))  # batch 3, declared 2


@pytest.mark.caffe
@pytest.mark.torch
def test_scale_bias_broadcasting(tmp_path):
    text = header((2, 3, 5, 4)) + '''
layer { name: "s1" type: "Scale" bottom: "data" top: "s1" scale_param { bias_term: true } }
layer { name: "s2" type: "Scale" bottom: "s1" top: "s2" scale_param { axis: 2 num_axes: 2 } }
layer { name: "s3" type: "Scale" bottom: "s2" top: "s3"
  scale_param { axis: 1 num_axes: -1 bias_term: true } }
layer { name: "s4" type: "Scale" bottom: "s3" top: "s4" scale_param { num_axes: 0 } }
layer { name: "b1" type: "Bias" bottom: "s4" top: "b1" bias_param { axis: -2 num_axes: 1 } }
layer { name: "gp" type: "Pooling" bottom: "b1" top: "gp" pooling_param { pool: AVE
  global_pooling: true } }
layer { name: "gpf" type: "Flatten" bottom: "gp" top: "gpf" }
layer { name: "se" type: "Scale" bottom: "b1" bottom: "gpf" top: "se" scale_param { axis: 0 } }
layer { name: "row" type: "Pooling" bottom: "se" top: "row" pooling_param { pool: MAX
  kernel_h: 1 kernel_w: 4 } }
layer { name: "rowf" type: "Flatten" bottom: "row" top: "rowf" flatten_param { axis: 2 } }
layer { name: "sb" type: "Scale" bottom: "se" bottom: "rowf" top: "sb"
  scale_param { axis: 0 } }
layer { name: "bb" type: "Bias" bottom: "sb" bottom: "rowf" top: "bb" bias_param { axis: 0 } }'''
    proto, model = files(tmp_path, text)
    compare_with_caffe(proto, model, data((2, 3, 5, 4)))
    # The second bottoms span the batch axis, so the ONNX model has a fixed batch: the
    # onnxruntime backend exports one model per batch size.
    compare_with_caffe(proto, model, data((4, 3, 5, 4), seed=1))


@pytest.mark.caffe
@pytest.mark.torch
def test_eltwise_prelu_batchnorm_lrn(tmp_path):
    text = header((2, 4, 6, 6)) + '''
layer { name: "a" type: "PReLU" bottom: "data" top: "a" }
layer { name: "b" type: "PReLU" bottom: "data" top: "b" prelu_param { channel_shared: true } }
layer { name: "sum" type: "Eltwise" bottom: "a" bottom: "b" bottom: "data" top: "sum"
  eltwise_param { operation: SUM coeff: 1 coeff: -0.5 coeff: 0.17 } }
layer { name: "prod" type: "Eltwise" bottom: "a" bottom: "b" top: "prod"
  eltwise_param { operation: PROD } }
layer { name: "max" type: "Eltwise" bottom: "sum" bottom: "prod" bottom: "a" top: "max"
  eltwise_param { operation: MAX } }
layer { name: "bn" type: "BatchNorm" bottom: "max" top: "bn" batch_norm_param { eps: 0.001 } }
layer { name: "bn_batch" type: "BatchNorm" bottom: "max" top: "bn_batch"
  batch_norm_param { use_global_stats: false } }
layer { name: "lrn1" type: "LRN" bottom: "bn" top: "lrn1"
  lrn_param { local_size: 3 alpha: 0.5 beta: 0.75 k: 2 } }
layer { name: "lrn2" type: "LRN" bottom: "bn" top: "lrn2"
  lrn_param { local_size: 5 alpha: 0.3 beta: 0.6 norm_region: WITHIN_CHANNEL k: 7 } }
layer { name: "mvn1" type: "MVN" bottom: "lrn1" top: "mvn1" }
layer { name: "mvn2" type: "MVN" bottom: "lrn2" top: "mvn2"
  mvn_param { across_channels: true eps: 0.01 } }
layer { name: "mvn3" type: "MVN" bottom: "bn_batch" top: "mvn3"
  mvn_param { normalize_variance: false } }'''

    def edit(blobs):
        mean, var, _ = blobs["bn"]
        blobs["bn"] = [mean * 7.5, var * 7.5, np.array([7.5], np.float32)]
        blobs["bn_batch"] = [b * 0 for b in blobs["bn_batch"]]

    proto, model = files(tmp_path, text, edit=edit)
    compare_with_caffe(proto, model, data((2, 4, 6, 6)))


@pytest.mark.caffe
@pytest.mark.torch
def test_neurons_and_crop(tmp_path):
    text = header((2, 3, 6, 7)) + '''
layer { name: "relu" type: "ReLU" bottom: "data" top: "relu" relu_param { negative_slope: 0.1 } }
layer { name: "relu6" type: "ReLU6" bottom: "data" top: "relu6"
  relu6_param { negative_slope: 0.2 threshold: 1.5 } }
layer { name: "relu6b" type: "ReLU6" bottom: "data" top: "relu6b" }
layer { name: "elu" type: "ELU" bottom: "data" top: "elu" elu_param { alpha: 0.7 } }
layer { name: "sig" type: "Sigmoid" bottom: "data" top: "sig" }
layer { name: "tanh" type: "TanH" bottom: "data" top: "tanh" }
layer { name: "abs" type: "AbsVal" bottom: "data" top: "abs" }
layer { name: "bnll" type: "BNLL" bottom: "data" top: "bnll" }
layer { name: "exp" type: "Exp" bottom: "data" top: "exp" exp_param { base: 2 scale: 0.5
  shift: 0.3 } }
layer { name: "exp2" type: "Exp" bottom: "data" top: "exp2" }
layer { name: "log" type: "Log" bottom: "abs" top: "log" log_param { base: 10 scale: 2
  shift: 0.5 } }
layer { name: "log2" type: "Log" bottom: "sig" top: "log2" }
layer { name: "thr" type: "Threshold" bottom: "data" top: "thr" threshold_param {
  threshold: 0.25 } }
layer { name: "pow" type: "Power" bottom: "abs" top: "pow" power_param { power: 1.5 scale: 2
  shift: 0.1 } }
layer { name: "pow0" type: "Power" bottom: "data" top: "pow0" power_param { power: 2
  scale: 0 shift: 3 } }
layer { name: "crop" type: "Crop" bottom: "pow" bottom: "pow0" top: "crop" }
layer { name: "small" type: "Pooling" bottom: "data" top: "small" pooling_param { pool: MAX
  kernel_size: 2 stride: 2 } }
layer { name: "crop2" type: "Crop" bottom: "exp" bottom: "small" top: "crop2"
  crop_param { axis: 2 offset: 1 offset: 2 } }
layer { name: "crop3" type: "Crop" bottom: "elu" bottom: "small" top: "crop3"
  crop_param { axis: 3 offset: 3 } }
layer { name: "inplace" type: "ReLU" bottom: "exp2" top: "exp2" }
layer { name: "hsig" type: "HardSigmoid" bottom: "data" top: "hsig" }
layer { name: "hsig2" type: "HardSigmoid" bottom: "data" top: "hsig2"
  hardsigmoid_param { alpha: 0.3 beta: 0.4 } }
layer { name: "perm" type: "Permute" bottom: "data" top: "perm" permute_param { order: 0
  order: 2 order: 3 order: 1 } }
layer { name: "perm2" type: "Permute" bottom: "perm" top: "perm2" permute_param { order: 0
  order: 3 } }
layer { name: "hswish" type: "HardSwish" bottom: "data" top: "hswish" }'''
    proto, model = files(tmp_path, text)
    compare_with_caffe(proto, model, data((2, 3, 6, 7), low=-3, high=3))


@pytest.mark.torch
def test_clip_and_swish_against_numpy(tmp_path):
    """BVLC-master layers missing from the Caffe fork: checked against their definitions."""
    text = header((2, 3, 4, 4)) + '''
layer { name: "clip" type: "Clip" bottom: "data" top: "clip" clip_param { min: -0.5 max: 1.25 } }
layer { name: "sw" type: "Swish" bottom: "data" top: "sw" swish_param { beta: 1.7 } }
layer { name: "sw1" type: "Swish" bottom: "data" top: "sw1" }'''
    proto, model = files(tmp_path, text)
    x = data((2, 3, 4, 4), low=-3, high=3).astype(np.float64)
    want = {"clip": np.clip(x, -0.5, 1.25), "sw": x / (1 + np.exp(-1.7 * x)),
            "sw1": x / (1 + np.exp(-x))}
    for backend in EXPORTED:
        got = open_runtime(backend, proto, model).forward(x, list(want))
        for name, value in want.items():
            assert rel_error(got[name], value) < 1e-6, (backend, name)


# -- legacy files and pooling dialects ----------------------------------------------------------

LEGACY = '''name: "legacy"
input: "data"
input_dim: 2 input_dim: 3 input_dim: 9 input_dim: 9
layers { name: "conv" type: CONVOLUTION bottom: "data" top: "conv"
  convolution_param { num_output: 4 kernel_size: 3 } }
layers { name: "relu" type: RELU bottom: "conv" top: "conv" }
layers { name: "pool" type: POOLING bottom: "conv" top: "pool"
  pooling_param { pool: AVE kernel_size: 3 stride: 2 } }
layers { name: "fc" type: INNER_PRODUCT bottom: "pool" top: "fc"
  inner_product_param { num_output: 3 } }
layers { name: "prob" type: SOFTMAX bottom: "fc" top: "prob" }
'''


@pytest.mark.caffe
@pytest.mark.torch
def test_legacy_v1_input_dim_file(tmp_path):
    proto, model = files(tmp_path, LEGACY)
    (tmp_path / "legacy.prototxt").write_text(LEGACY)  # the file as written, not upgraded
    worst = compare_with_caffe(tmp_path / "legacy.prototxt", model, data((2, 3, 9, 9)))
    assert worst


@pytest.mark.caffe
@pytest.mark.torch
@pytest.mark.parametrize("dialect", netio.DIALECTS)
def test_every_pooling_dialect_reads_back_exactly(tmp_path, dialect):
    text = header((1, 2, 8, 8)) + '''
layer { name: "pool" type: "Pooling" bottom: "data" top: "pool"
  pooling_param { pool: MAX kernel_size: 3 stride: 2 ceil_mode: false } }
layer { name: "pool2" type: "Pooling" bottom: "pool" top: "pool2"
  pooling_param { pool: AVE kernel_size: 2 stride: 2 ceil_mode: false } }'''
    net = netio.parse_prototxt(text)
    (tmp_path / "d.prototxt").write_text(netio.format_prototxt(net, dialect))
    if dialect == "round_mode":
        assert "round_mode: FLOOR" in (tmp_path / "d.prototxt").read_text()
    reread = netio.read_prototxt(tmp_path / "d.prototxt")
    ex = export_net.prepare(reread, {})
    assert ex.analysis.blob_shapes["pool2"] == (1, 2, 1, 1)  # floor: 8 -> 3 -> 1 (ceil: 2)
    x = data((1, 2, 8, 8))
    caffe = open_runtime("pycaffe", tmp_path / "d.prototxt").forward(x)
    for backend in EXPORTED:
        got = open_runtime(backend, tmp_path / "d.prototxt").forward(x)
        assert rel_error(got["pool2"], caffe["pool2"]) < 1e-6


# -- the ONNX file itself ---------------------------------------------------------------------


def small_net_files(tmp_path):
    text = header((1, 3, 8, 8)) + '''
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 4 kernel_size: 3 pad: 1 bias_term: false } }
layer { name: "conv1/bn" type: "BatchNorm" bottom: "conv1" top: "conv1" }
layer { name: "conv1/scale" type: "Scale" bottom: "conv1" top: "conv1"
  scale_param { bias_term: true } }
layer { name: "conv1/relu" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
  pooling_param { pool: AVE kernel_size: 3 stride: 2 } }
layer { name: "fc" type: "InnerProduct" bottom: "pool1" top: "fc"
  inner_product_param { num_output: 5 } }
layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }'''
    return files(tmp_path, text)


def test_onnx_names_opsets_and_checks(tmp_path):
    import onnx
    import onnxruntime as ort

    from caffezoo.export import onnx as export_onnx

    proto, model = small_net_files(tmp_path)
    ex = export_net.from_files(proto, model)
    x = data((2, 3, 8, 8))
    outs = []
    for opset in (13, export_onnx.DEFAULT_OPSET, 21):
        m = export_onnx.to_onnx(ex, opset=opset, dynamic_batch=True)
        onnx.checker.check_model(m, full_check=True)
        assert m.opset_import[0].version == opset
        nodes = {n.name: n for n in m.graph.node}
        # layer names on nodes; a blob's final value carries its name, earlier ones blob@layer
        assert {"conv1", "conv1/bn", "conv1/scale", "conv1/relu", "pool1", "fc", "prob"} <= \
            set(nodes)
        assert nodes["conv1"].output == ["conv1@conv1"]
        assert nodes["conv1/relu"].output == ["conv1"]
        assert [o.name for o in m.graph.output] == ["prob"]
        assert m.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"
        inferred = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim][1:]
                    for v in m.graph.value_info}
        assert inferred["pool1"] == list(ex.analysis.blob_shapes["pool1"][1:])  # ceil: 4x4
        s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        outs.append(s.run(None, {"data": x})[0])
    assert all(rel_error(o, outs[0]) < 1e-6 for o in outs)


@pytest.mark.caffe
def test_fold_bn_is_exact_to_float32_noise(tmp_path):
    import onnxruntime as ort

    from caffezoo.export import onnx as export_onnx

    proto, model = small_net_files(tmp_path)
    folded = export_net.from_files(proto, model, fold_bn=True)
    assert folded.folded == ["conv1/bn", "conv1/scale"]
    assert [la.type for la in folded.net.layer] == ["Input", "Convolution", "ReLU", "Pooling",
                                                    "InnerProduct", "Softmax"]
    m = export_onnx.to_onnx(folded)
    s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    x = data((1, 3, 8, 8))
    caffe = open_runtime("pycaffe", proto, model).forward(x, ["prob", "pool1"])
    got = dict(zip(["prob"], s.run(None, {"data": x}), strict=True))
    assert rel_error(got["prob"], caffe["prob"]) < TOL


def test_every_type_info_understands_has_both_rules():
    from caffezoo.analysis import SUPPORTED_TYPES
    from caffezoo.export import onnx as export_onnx
    from caffezoo.export import torch as export_torch

    wanted = set(SUPPORTED_TYPES) - {"Input", "Silence"}
    assert wanted == set(export_onnx._HANDLERS)
    assert wanted == export_torch.TYPES


def test_unsupported_layer_and_bad_options_name_the_layer(tmp_path):
    from caffezoo.export import onnx as export_onnx

    text = header((1, 3, 8, 8)) + '''
layer { name: "weird" type: "Upsample" bottom: "data" top: "up" }'''
    with pytest.raises(ConversionError, match=r"layer 'weird' \(Upsample\)"):
        export_net.prepare(netio.parse_prototxt(text), {})
    text = header((1, 3, 8, 8)) + '''
layer { name: "sto" type: "Pooling" bottom: "data" top: "p"
  pooling_param { pool: STOCHASTIC kernel_size: 2 stride: 2 } }'''
    with pytest.raises(ConversionError, match=r"layer 'sto' \(Pooling\): STOCHASTIC"):
        export_net.prepare(netio.parse_prototxt(text), {})
    text = header((2, 6)) + '''
layer { name: "r" type: "Reshape" bottom: "data" top: "r"
  reshape_param { shape { dim: 4 dim: 3 } } }'''
    ex = export_net.prepare(netio.parse_prototxt(text), {})
    export_onnx.to_onnx(ex)  # a fixed batch is fine
    with pytest.raises(ConversionError, match=r"layer 'r' \(Reshape\).*dynamic batch"):
        export_onnx.to_onnx(ex, dynamic_batch=True)
    with pytest.raises(ConversionError, match="opset 12"):
        export_onnx.to_onnx(ex, opset=12)


# -- the command and the files it writes ------------------------------------------------------


@pytest.mark.torch
def test_export_command_writes_files_that_load(tmp_path, capsys):
    import onnxruntime as ort
    import torch

    from caffezoo import cli
    from caffezoo.export.torch import load

    proto, model = small_net_files(tmp_path)
    x = data((3, 3, 8, 8))
    want = open_runtime("onnxruntime", proto, model).forward(x)["prob"]
    onnx_path, pt_path = tmp_path / "n.onnx", tmp_path / "n.pt"
    assert cli.main(["export", "--to", "onnx", "--prototxt", str(proto), "--weights",
                     str(model), "-o", str(onnx_path), "--dynamic-batch", "--fold-bn",
                     "--opset", "13"]) == 0
    assert "2 BatchNorm/Scale layers folded" in capsys.readouterr().out
    s = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    assert rel_error(s.run(["prob"], {"data": x})[0], want) < TOL
    assert cli.main(["export", "--to", "torch", "--prototxt", str(proto), "--weights",
                     str(model), "-o", str(pt_path)]) == 0
    module = load(pt_path, device="cpu")
    with torch.inference_mode():
        got = module(torch.from_numpy(x)).numpy()
    assert rel_error(got, want) < TOL
    assert "layers.conv1/bn.mean" in module.state_dict()
    assert module.contract is None  # a bare prototxt has none
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporary files


def test_export_command_errors_are_one_line_and_write_nothing(tmp_path, capsys):
    from caffezoo import cli

    proto, model = small_net_files(tmp_path)
    out = tmp_path / "n.onnx"
    assert cli.main(["export", "--to", "onnx", "--prototxt", str(proto), "--weights",
                     str(tmp_path / "missing.caffemodel"), "-o", str(out)]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "missing.caffemodel" in err
    bad = tmp_path / "bad.prototxt"
    bad.write_text(proto.read_text() + '\nlayer { name: "up" type: "Upsample" bottom: "prob" '
                   'top: "up" }\n')
    assert cli.main(["export", "--to", "onnx", "--prototxt", str(bad), "--weights",
                     str(model), "-o", str(out)]) != 0
    assert "layer 'up' (Upsample)" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.torch
def test_torch_load_refuses_other_files(tmp_path):
    import torch

    from caffezoo.errors import FormatError
    from caffezoo.export.torch import load

    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(FormatError, match="not a caffezoo torch file"):
        load(tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a zip")
    with pytest.raises(FormatError, match="junk.pt"):
        load(tmp_path / "junk.pt")


def test_export_input_size_below_one_is_a_usage_error(tmp_path, capsys):
    """It used to be ignored silently (0 read as "not given")."""
    from caffezoo import cli

    proto, model = small_net_files(tmp_path)
    for source in (["--prototxt", str(proto)], ["--model", "wrn50_2"]):
        for size in ("0", "-3"):
            assert cli.main(["export", "--to", "onnx", *source, "--weights", str(model),
                             "--input-size", size, "-o", str(tmp_path / "n.onnx")]) == 2
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and f"--input-size must be at least 1, got {size}" in err
    assert not (tmp_path / "n.onnx").exists()


# Rich Zhang's colorization deploy prototxt ends so: its result, class8_ab, is read only by a
# Silence layer (Caffe then counts no output at all).
SILENCED = header((1, 1, 8, 8)) + '''
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "class8_ab" type: "Convolution" bottom: "conv1" top: "class8_ab"
  convolution_param { num_output: 2 kernel_size: 1 } }
layer { name: "Silence" type: "Silence" bottom: "class8_ab" }'''


@pytest.mark.caffe
@pytest.mark.torch
def test_a_net_ending_in_silence_exports_what_silence_reads(tmp_path, capsys):
    """It used to export an ONNX graph without outputs and a torch module returning {}."""
    import onnx
    import onnxruntime as ort
    import torch

    from caffezoo import cli
    from caffezoo.export.torch import load

    proto, model = files(tmp_path, SILENCED)
    x = data((2, 1, 8, 8))
    want = open_runtime("pycaffe", proto, model).forward(x, ["class8_ab"])["class8_ab"]
    assert cli.main(["export", "--to", "onnx", "--prototxt", str(proto), "--weights",
                     str(model), "-o", str(tmp_path / "n.onnx"), "--dynamic-batch"]) == 0
    assert "outputs class8_ab" in capsys.readouterr().out
    graph = onnx.load(tmp_path / "n.onnx").graph
    assert [o.name for o in graph.output] == ["class8_ab"]
    s = ort.InferenceSession(str(tmp_path / "n.onnx"), providers=["CPUExecutionProvider"])
    assert rel_error(s.run(None, {"data": x})[0], want) < TOL
    assert cli.main(["export", "--to", "torch", "--prototxt", str(proto), "--weights",
                     str(model), "-o", str(tmp_path / "n.pt")]) == 0
    with torch.inference_mode():
        got = load(tmp_path / "n.pt", device="cpu")(torch.from_numpy(x)).numpy()
    assert rel_error(got, want) < TOL
    for backend in EXPORTED:  # and the runtimes built on the exports return it by default
        assert rel_error(open_runtime(backend, proto, model).forward(x)["class8_ab"],
                         want) < TOL
    assert cli.main(["info", str(proto)]) == 0
    assert "outputs:    none (read only by Silence: class8_ab 1x2x8x8" in \
        capsys.readouterr().out


def _squeezenet() -> tuple[Path, Path] | None:
    folder = Path(__file__).resolve().parents[3] / "shared" / "data" / "squeezenet_v1.0_dc"
    models = sorted(folder.glob("*.caffemodel"))
    return (folder / "deploy.prototxt", models[0]) if models else None


@pytest.mark.caffe
@pytest.mark.parametrize("net", ["in_place", "squeezenet"])
def test_an_export_validates_against_its_own_caffe_net_layer_by_layer(tmp_path, capsys, net):
    """export --to onnx, then validate --source onnx:THAT --layers against the same prototxt
    and caffemodel: every value compared passes, those an in-place layer overwrites included
    (the export names them BLOB@LAYER; BLOB is the blob's final value, as in Caffe). It used to
    report 26 of 37 SqueezeNet values as differing, and a FAIL whose error line gave the outputs'
    passing error."""
    import json

    from caffezoo import cli

    if net == "squeezenet":
        found = _squeezenet()
        if found is None:
            pytest.skip("shared SqueezeNet not found beside the checkout")
        proto, model = found
    else:
        proto, model = small_net_files(tmp_path)
    onnx_path = tmp_path / "exported.onnx"
    assert cli.main(["export", "--to", "onnx", "--prototxt", str(proto), "--weights",
                     str(model), "-o", str(onnx_path)]) == 0
    capsys.readouterr()
    code = cli.main(["validate", "--source", f"onnx:{onnx_path}", "--prototxt", str(proto),
                     "--weights", str(model), "--layers", "--random", "2", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["passed"] and report["first_divergence"] is None
    values = {d["source"]: d for d in report["layers"]}
    assert all(d["ok"] for d in values.values())
    in_place = "conv1@conv1" if net == "in_place" else "fire2/conv1x1_1@fire2/conv1x1_1"
    final = in_place.split("@")[0]
    # the convolution's own output, and the blob's final value after the ReLU
    assert values[in_place]["layer"] != values[final]["layer"]
    assert len(values) >= (37 if net == "squeezenet" else 5)


@pytest.mark.caffe
def test_validate_layers_leads_with_the_verdict_and_the_worst(tmp_path, capsys):
    """`--layers` prints the verdict first and the five worst values, `--layers all` every
    value (the JSON always has them all)."""
    from caffezoo import cli

    proto, model = small_net_files(tmp_path)
    onnx_path = tmp_path / "exported.onnx"
    assert cli.main(["export", "--to", "onnx", "--prototxt", str(proto), "--weights",
                     str(model), "-o", str(onnx_path)]) == 0
    argv = ["validate", "--source", f"onnx:{onnx_path}", "--prototxt", str(proto),
            "--weights", str(model), "--random", "2", "--layers"]
    capsys.readouterr()
    rows = {}
    for extra in ([], ["all"]):
        assert cli.main([*argv, *extra]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[0].endswith(": PASS")
        table = lines[lines.index(next(ln for ln in lines if ln.startswith("    ---"))) + 1:]
        rows[bool(extra)] = table
    compared = int(next(ln for ln in lines if "compared" in ln).split(":")[1].split()[0])
    assert compared > 5 and len(rows[False]) == 5 and len(rows[True]) == compared


def test_the_failure_line_agrees_with_the_verdict():
    from caffezoo.validation.report import Diff, Report, failure_line

    def output(max_abs, max_rel, ok):
        return Diff("y", "output", "fc", "y", [2, 3], [2, 3], max_abs, max_rel, ok,
                    max_source=1.0, min_cosine=1.0, top1_agree=2, top5_agree=2)

    bad = Diff("conv1:0", "value", "conv1", "conv1", [1], [1], 8.5, 0.96, False)
    report = Report("onnx:x.onnx", "pycaffe", "n.prototxt", "n.caffemodel", "2", 2, [3, 4, 4],
                    "", "", "", [output(1e-6, 1e-6, True)], 1e-4, False, layers=[bad],
                    first_divergence="conv1")
    line = failure_line("n.caffemodel", report)
    assert line == ("n.caffemodel: the outputs agree (relative error 1e-06, tolerance 0.0001) "
                    "but layer 'conv1' (source conv1:0, value) does not (relative error 0.96)")
    assert report.lines()[0].endswith(
        "FAIL (the outputs agree, layer 'conv1' (source conv1:0, value) does not)")
    report.outputs[0] = output(0.5, 0.2, False)
    assert failure_line("n.caffemodel", report) == (
        "n.caffemodel: relative error 0.2 of the outputs (tolerance 0.0001); first divergence "
        "at layer 'conv1' (source conv1:0, value)")
