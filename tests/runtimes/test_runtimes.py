"""The two runtimes (real Caffe through pycaffe, OpenCV DNN) against a hand-written numpy
implementation of a tiny net, against each other on the real SqueezeNet, and on bad input.

Caffe aborts the whole process on a malformed file (glog CHECK), so every bad-input test here
would kill pytest if a user's file reached Caffe unchecked."""

from __future__ import annotations

import ctypes
import json
import os
from pathlib import Path

import numpy as np
import pytest

from caffezoo import netio
from caffezoo.analysis import analyze
from caffezoo.builder import NetBuilder
from caffezoo.errors import FormatError, InputFileError, NetDefinitionError, WeightMismatchError
from caffezoo.runtimes import BACKENDS, open_runtime

BN_EPS = 1e-5
BOTH = pytest.mark.parametrize("backend", [
    pytest.param("pycaffe", marks=pytest.mark.caffe),
    pytest.param("opencv", marks=pytest.mark.opencv),
])


@pytest.fixture(autouse=True)
def _restore_thread_settings():
    """`threads=` is process-wide (OpenBLAS, OpenCV, the environment): undo it after each test
    so that tests do not depend on their order."""
    import sys

    env = os.environ.get("OPENBLAS_NUM_THREADS")
    cv2 = sys.modules.get("cv2")
    cv_threads = cv2.getNumThreads() if cv2 else None
    blas = blas_threads = None
    if "caffe" in sys.modules:
        blas = ctypes.CDLL("libopenblas.so.0")
        blas_threads = blas.openblas_get_num_threads()
    yield
    if env is None:
        os.environ.pop("OPENBLAS_NUM_THREADS", None)
    else:
        os.environ["OPENBLAS_NUM_THREADS"] = env
    if cv_threads is not None:
        cv2.setNumThreads(cv_threads)
    if blas is not None:
        blas.openblas_set_num_threads(blas_threads)


# -- a tiny net and its numpy reference -----------------------------------------------------

def tiny_net(size: int = 8):
    """conv3x3 -> BatchNorm -> Scale -> ReLU (all in place on 'conv1') -> floor max pool ->
    Slice into two tops -> Concat swapped -> InnerProduct -> Softmax."""
    b = NetBuilder("tiny")
    x = b.input("data", (2, 3, size, size))
    x = b.conv(x, "conv1", num_output=4, kernel=3, pad=1)
    x = b.batch_norm(x, "conv1_bn")
    x = b.scale(x, "conv1_scale")
    x = b.relu(x, "conv1_relu")
    x = b.pool(x, "pool1", "max", kernel=3, stride=2, ceil=False)
    a, c = b.slice(x, "split_ch", ["part_a", "part_b"], slice_points=[1])
    x = b.concat([c, a], "swapped")
    x = b.inner_product(x, "fc", num_output=5)
    b.softmax(x, "prob")
    return b.net


def tiny_weights(seed: int = 0) -> dict[str, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    f32 = np.float32
    fc_in = 4 * 3 * 3  # 4 channels, 8x8 -> floor pool 3x3
    return {
        "conv1": [rng.normal(0, 0.3, (4, 3, 3, 3)).astype(f32), rng.normal(0, 0.1, 4).astype(f32)],
        "conv1_bn": [rng.normal(0, 0.2, 4).astype(f32), rng.uniform(0.5, 2, 4).astype(f32),
                     np.ones(1, f32)],
        "conv1_scale": [rng.uniform(0.5, 1.5, 4).astype(f32), rng.normal(0, 0.2, 4).astype(f32)],
        "fc": [rng.normal(0, 0.3, (5, fc_in)).astype(f32), rng.normal(0, 0.1, 5).astype(f32)],
    }


def reference(x: np.ndarray, w: dict[str, list[np.ndarray]]) -> dict[str, np.ndarray]:
    """The tiny net written out with numpy, in float64, straight from Caffe's definitions."""
    x = x.astype(np.float64)
    n, _, h, wd = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    k, bias = w["conv1"]
    conv = np.zeros((n, 4, h, wd))
    for i in range(h):
        for j in range(wd):
            patch = xp[:, :, i:i + 3, j:j + 3]
            conv[:, :, i, j] = np.einsum("nchw,ochw->no", patch, k) + bias
    mean, var, factor = w["conv1_bn"]
    conv = (conv - (mean / factor[0])[:, None, None]) / np.sqrt(var / factor[0] + BN_EPS)[:, None,
                                                                                             None]
    gamma, beta = w["conv1_scale"]
    conv = np.maximum(conv * gamma[:, None, None] + beta[:, None, None], 0)
    out = (h - 3) // 2 + 1  # floor rounding
    pool = np.zeros((n, 4, out, out))
    for i in range(out):
        for j in range(out):
            pool[:, :, i, j] = conv[:, :, 2 * i:2 * i + 3, 2 * j:2 * j + 3].max(axis=(2, 3))
    part_a, part_b = pool[:, :1], pool[:, 1:]
    swapped = np.concatenate([part_b, part_a], axis=1)
    fw, fb = w["fc"]
    fc = swapped.reshape(n, -1) @ fw.T + fb
    e = np.exp(fc - fc.max(axis=1, keepdims=True))
    return {"conv1": conv, "pool1": pool, "part_a": part_a, "part_b": part_b,
            "swapped": swapped, "fc": fc, "prob": e / e.sum(axis=1, keepdims=True)}


@pytest.fixture
def tiny_files(tmp_path: Path) -> tuple[Path, Path]:
    net = tiny_net()
    proto, model = tmp_path / "tiny.prototxt", tmp_path / "tiny.caffemodel"
    netio.write_prototxt(net, proto)
    netio.write_caffemodel(netio.attach_weights(net, tiny_weights()), model)
    return proto, model


# -- behaviour ----------------------------------------------------------------------------

@BOTH
def test_every_blob_matches_numpy(backend, tiny_files):
    proto, model = tiny_files
    rt = open_runtime(backend, proto, model, threads=1)
    assert rt.input_name == "data" and rt.input_shape == (2, 3, 8, 8)
    assert rt.output_names == ["prob"]
    assert rt.blob_names() == ["data", "conv1", "pool1", "part_a", "part_b", "swapped", "fc",
                               "prob"]
    x = np.random.default_rng(1).normal(0, 1, (3, 3, 8, 8)).astype(np.float32)  # batch 3 != 2
    want = reference(x, tiny_weights())
    names = [n for n in rt.blob_names() if n != "data"]
    got = rt.forward(x, names + ["data"])
    np.testing.assert_array_equal(got["data"], x)
    for name in names:
        assert got[name].dtype == np.float32
        assert got[name].shape[0] == 3
        np.testing.assert_allclose(got[name].reshape(want[name].shape), want[name], rtol=1e-5,
                                   atol=1e-5, err_msg=f"{backend} blob {name}")
    # Default outputs, and one blob asked for alone: OpenCV may fuse conv+BN+Scale+ReLU when
    # nothing in between is asked for; 'conv1' must still be the value after the last in-place
    # layer (ReLU), as in Caffe.
    np.testing.assert_allclose(rt.forward(x)["prob"], want["prob"], atol=1e-6)
    alone = rt.forward(x, ["conv1"])
    assert set(alone) == {"conv1"}
    assert alone["conv1"].min() >= 0
    np.testing.assert_allclose(alone["conv1"], want["conv1"], rtol=1e-5, atol=1e-5)


@BOTH
def test_batch_sizes_and_returned_arrays_are_copies(backend, tiny_files):
    proto, model = tiny_files
    rt = open_runtime(backend, proto, model)
    x = np.random.default_rng(2).normal(0, 1, (4, 3, 8, 8))  # float64 in, float32 out
    one_by_one = np.concatenate([rt.forward(x[i:i + 1])["prob"] for i in range(4)])
    first = rt.forward(x)
    assert first["prob"].shape == (4, 5) and first["prob"].dtype == np.float32
    np.testing.assert_allclose(first["prob"], one_by_one, atol=1e-6)
    kept = first["prob"].copy()
    rt.forward(x[:2] * 3)  # a later forward must not change arrays already returned
    np.testing.assert_array_equal(first["prob"], kept)


@pytest.mark.caffe
@pytest.mark.opencv
def test_runtimes_read_caffes_own_upgrade_of_a_legacy_file(tmp_path, tiny_files):
    """A legacy file (net-level input_dim) runs in both runtimes like its modern form."""
    from google.protobuf import text_format

    _, model = tiny_files
    net = tiny_net()
    assert net.layer[0].type == "Input"
    del net.layer[0]
    net.input.append("data")
    net.input_dim.extend([2, 3, 8, 8])
    legacy = text_format.MessageToString(net)
    assert "input_dim" in legacy and "Input" not in legacy
    (tmp_path / "legacy.prototxt").write_text(legacy)
    x = np.random.default_rng(3).normal(0, 1, (2, 3, 8, 8)).astype(np.float32)
    want = reference(x, tiny_weights())["prob"]
    for backend in BACKENDS:
        rt = open_runtime(backend, tmp_path / "legacy.prototxt", model)
        np.testing.assert_allclose(rt.forward(x)["prob"], want, atol=1e-6)


@pytest.mark.caffe
def test_pycaffe_threads_reach_openblas(tiny_files):
    """Caffe runs in a child process: `threads` sets the OpenBLAS of that child (as the child
    reports it) and leaves this process's settings alone."""
    proto, model = tiny_files
    before = os.environ.get("OPENBLAS_NUM_THREADS")
    assert open_runtime("pycaffe", proto, model, threads=1).blas_threads == 1
    assert open_runtime("pycaffe", proto, model, threads=2).blas_threads == 2
    assert os.environ.get("OPENBLAS_NUM_THREADS") == before


@pytest.mark.opencv
def test_opencv_threads(tiny_files):
    import cv2

    open_runtime("opencv", *tiny_files, threads=1)
    assert cv2.getNumThreads() == 1


# -- bad input: our one-line errors, never a Caffe abort ---------------------------------------

@BOTH
def test_missing_and_malformed_files(backend, tmp_path, tiny_files):
    proto, model = tiny_files
    with pytest.raises(InputFileError, match="nope.prototxt: prototxt not found"):
        open_runtime(backend, tmp_path / "nope.prototxt", model)
    with pytest.raises(InputFileError, match="nope.caffemodel"):
        open_runtime(backend, proto, tmp_path / "nope.caffemodel")
    bad = tmp_path / "bad.prototxt"
    bad.write_text('name: "x"\nlayer {\n  name: "data"\n  type: "Input"\n  top: "data"\n'
                   '  bogus_field: 3\n}\n')
    with pytest.raises(FormatError, match=r"bad.prototxt:6:\d+"):
        open_runtime(backend, bad, model)
    truncated = tmp_path / "truncated.caffemodel"
    truncated.write_bytes(model.read_bytes()[:-17])
    with pytest.raises(FormatError, match="truncated.caffemodel"):
        open_runtime(backend, proto, truncated)


@BOTH
def test_weights_that_do_not_fit(backend, tmp_path, tiny_files):
    proto, _ = tiny_files
    w = tiny_weights()
    w["conv1"][0] = np.zeros((6, 3, 3, 3), np.float32)  # 6 filters, the prototxt says 4
    b = NetBuilder("tiny")  # the same layer names, conv1 with 6 outputs
    x = b.input("data", (2, 3, 8, 8))
    b.conv(x, "conv1", num_output=6, kernel=3, pad=1)
    other = tmp_path / "other.caffemodel"
    netio.write_caffemodel(netio.attach_weights(b.net, {"conv1": w["conv1"]}), other)
    with pytest.raises(WeightMismatchError, match=r"conv1.*\(6, 3, 3, 3\).*\(4, 3, 3, 3\)"):
        open_runtime(backend, proto, other)
    # Weights for only some layers: Caffe would keep random fillers, OpenCV would fail.
    partial = tmp_path / "partial.caffemodel"
    keep = {k: v for k, v in tiny_weights().items() if k != "fc"}
    netio.write_caffemodel(netio.attach_weights(tiny_net(), keep), partial)
    with pytest.raises(WeightMismatchError, match="no weights for layer.*fc"):
        open_runtime(backend, proto, partial)


@BOTH
def test_bad_requests(backend, tiny_files):
    rt = open_runtime(backend, *tiny_files)
    with pytest.raises(NetDefinitionError, match="no blob named 'nope'"):
        rt.forward(np.zeros((1, 3, 8, 8), np.float32), ["nope"])
    with pytest.raises(NetDefinitionError, match=r"shape \(1, 3, 9, 8\) does not fit"):
        rt.forward(np.zeros((1, 3, 9, 8), np.float32))
    with pytest.raises(ValueError, match="unknown runtime"):
        open_runtime("tensorrt", *tiny_files)


@pytest.mark.caffe
def test_layer_type_missing_from_this_caffe_is_refused(tmp_path):
    """`Clip` is a layer type caffezoo can analyse but the brocolli Caffe build lacks: Caffe's
    layer registry would abort the process."""
    b = NetBuilder("clip")
    x = b.input("data", (1, 3, 4, 4))
    b.layer("Clip", "clip1", [x], ["clipped"])
    proto = tmp_path / "clip.prototxt"
    netio.write_prototxt(b.net, proto)
    analyze(netio.read_prototxt(proto))  # caffezoo itself knows the type
    with pytest.raises(NetDefinitionError, match="'clip1'.*'Clip' is not in this Caffe build"):
        open_runtime("pycaffe", proto)


@pytest.mark.caffe
def test_reshape_with_fixed_batch_is_refused_at_other_batch_sizes(tmp_path):
    """A Reshape to a fixed batch of 1 works at batch 1; at batch 2 Caffe would abort on its
    CHECK; the runtime says which layer instead."""
    b = NetBuilder("fixed")
    x = b.input("data", (1, 2, 3, 3))
    layer = b.layer("Reshape", "flat", [x], ["flat"])
    layer.reshape_param.shape.dim.extend([1, 18])
    proto = tmp_path / "fixed.prototxt"
    netio.write_prototxt(b.net, proto)
    rt = open_runtime("pycaffe", proto)
    x1 = np.arange(18, dtype=np.float32).reshape(1, 2, 3, 3)
    np.testing.assert_array_equal(rt.forward(x1)["flat"], x1.reshape(1, 18))
    with pytest.raises(NetDefinitionError, match="batch size 2.*'flat'"):
        rt.forward(np.zeros((2, 2, 3, 3), np.float32))


@pytest.mark.opencv
def test_opencv_needs_weights_for_learnable_layers(tiny_files):
    with pytest.raises(NetDefinitionError, match="OpenCV DNN needs weights.*'conv1'"):
        open_runtime("opencv", tiny_files[0])


# -- the proof on real data ----------------------------------------------------------------

SQUEEZENET_MEAN = np.array([104.0, 117.0, 123.0], np.float32)  # BGR (FACTS §6)


def preprocess(path: Path, base: int = 256, crop: int = 227) -> np.ndarray:
    """The original evaluation_cls.py's 1-crop: BGR, short side to `base` (bilinear, long side
    rounded down), minus the mean, centre crop; CHW float32."""
    import cv2

    img = cv2.imread(str(path))
    assert img is not None, path
    h, w = img.shape[:2]
    if h < w:
        size = (int(w * base / h), base)
    else:
        size = (base, int(h * base / w))
    img = cv2.resize(img, size).astype(np.float32) - SQUEEZENET_MEAN
    h, w = img.shape[:2]
    top, left = (h - crop) // 2, (w - crop) // 2
    return img[top:top + crop, left:left + crop].transpose(2, 0, 1)


# fp32 noise bounds. Measured here (2 threads, AVX-512): max |prob difference| 6.6e-6, max
# |logit difference| 5.0e-5 on logits up to 39.6. The bounds leave an order of magnitude
# for other BLAS kernels and thread counts; a real disagreement (a wrong layer, rounding mode or
# weight) moves logits by far more than 1e-3.
PROB_BOUND = 1e-4
LOGIT_BOUND = 1e-3


@pytest.mark.caffe
@pytest.mark.opencv
@pytest.mark.shared
def test_squeezenet_runtimes_agree_on_100_imagenet_images(squeezenet_dir, imagenet_samples):
    lines = (imagenet_samples / "val.txt").read_text().split("\n")
    items = [(imagenet_samples / name, int(label)) for name, label in
             (ln.split() for ln in lines if ln.strip())]
    assert len(items) == 100
    images = np.stack([preprocess(p) for p, _ in items])
    labels = np.array([lab for _, lab in items])
    proto = squeezenet_dir / "deploy.prototxt"  # old format: net-level input_dim
    model = squeezenet_dir / "squeezenet_v1.0_dc.caffemodel"
    logits = {}
    for backend in BACKENDS:
        rt = open_runtime(backend, proto, model, threads=2)
        assert rt.output_names == ["pool_final"]  # this deploy file has no softmax
        logits[backend] = np.concatenate([rt.forward(images[i:i + 25])["pool_final"]
                                          for i in range(0, 100, 25)]).reshape(100, 1000)

    def softmax(z):
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    prob = {k: softmax(v.astype(np.float64)) for k, v in logits.items()}
    err = float(np.abs(prob["pycaffe"] - prob["opencv"]).max())
    logit_err = float(np.abs(logits["pycaffe"] - logits["opencv"]).max())
    print(f"SqueezeNet, 100 images: max |prob diff| {err:.3g}, max |logit diff| {logit_err:.3g}"
          f" (max |logit| {float(np.abs(logits['pycaffe']).max()):.3g})")
    assert err < PROB_BOUND
    assert logit_err < LOGIT_BOUND
    top1 = {k: np.argmax(v, axis=1) for k, v in prob.items()}
    np.testing.assert_array_equal(top1["pycaffe"], top1["opencv"])
    for backend in BACKENDS:
        ranked = np.argsort(-prob[backend], axis=1)
        assert int(np.sum(ranked[:, 0] == labels)) == 61, backend  # FACTS §6
        assert int(np.sum((ranked[:, :5] == labels[:, None]).any(axis=1))) == 82, backend


# -- the demo --------------------------------------------------------------------------------

@pytest.mark.caffe
@pytest.mark.opencv
def test_demo_writes_a_valid_model_and_both_runtimes_agree(tmp_path, capsys):
    from caffezoo.cli import main

    out = tmp_path / "demo"
    report = tmp_path / "demo.json"
    assert main(["demo", "--model", "resnext50_32x4d", "--input-size", "64", "-b", "2",
                 "--repeat", "1", "-o", str(out), "--json", str(report)]) == 0
    text = capsys.readouterr().out
    summary = json.loads(report.read_text())
    assert summary["validated"] and summary["runtimes_agree"] and summary["input_size"] == 64
    assert [s["step"] for s in summary["steps"]][0] == "generate"
    assert "SEEDED RANDOM weights" in text
    assert "same top-1 for 2/2 inputs; agree" in text
    proto, model = out / "resnext50_32x4d_64.prototxt", out / "resnext50_32x4d_64.caffemodel"
    stats = analyze(netio.read_prototxt(proto))
    # ResNeXt-50 32x4d has 25.0 M parameters (published) at any input size
    assert round(stats.total_params / 1e6, 1) == 25.0
    assert "25,028,904" in text
    # the saved weights are the announced seeded PyTorch checkpoint, converted (first
    # convolution's input channels reversed for BGR input) and validated against it
    assert "validate" in text and "PASS" in text
    import torch

    source = torch.load(out / "resnext50_32x4d_source_seed0.pth", weights_only=True)
    saved = netio.read_weights(model)
    np.testing.assert_array_equal(saved["conv1"][0], source["conv1.weight"].numpy()[:, ::-1])
    np.testing.assert_array_equal(saved["classifier"][0], source["fc.weight"].numpy())
    np.testing.assert_array_equal(saved["resx16_conv3_bn"][1],
                                  source["layer4.2.bn3.running_var"].numpy())
    assert saved.keys() == {s.name for s in stats.layers if s.param_shapes}
    assert not list(out.glob(".*.tmp"))  # atomic writes left no temporary files
