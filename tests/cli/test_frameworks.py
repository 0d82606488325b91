"""caffezoo.frameworks: each importer gives a working framework (checked against an independent
computation or a published figure), its patch is needed and sufficient, and a missing framework
gives one DependencyError line that says how to fix it.

Tests that depend on what a *fresh* interpreter does (a patch applied before the first import,
glog's settings read once) run a small script in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import numpy as np
import pytest

from caffezoo import frameworks
from caffezoo.errors import DependencyError

REPO = Path(__file__).resolve().parents[2]


def run_python(code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get(
        "PYTHONPATH")]))
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env=full_env, timeout=300)


def conv2d_nchw(x: np.ndarray, w: np.ndarray, pad: int) -> np.ndarray:
    """Cross-correlation, stride 1, the reference for the framework checks below."""
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    kh, kw = w.shape[2:]
    out = np.zeros((x.shape[0], w.shape[0], xp.shape[2] - kh + 1, xp.shape[3] - kw + 1))
    for i in range(out.shape[2]):
        for j in range(out.shape[3]):
            out[:, :, i, j] = np.einsum("nchw,ochw->no", xp[:, :, i:i + kh, j:j + kw], w)
    return out


# -- missing or wrong frameworks ------------------------------------------------------------

@pytest.mark.parametrize("module, importer", [
    ("torchfile", frameworks.import_torchfile),
    ("torch", frameworks.import_torch),
    ("cv2", frameworks.import_cv2),
    ("caffe", frameworks.import_caffe),
    ("tensorflow", frameworks.import_tensorflow),
    ("openvino", frameworks.import_openvino),
])
def test_missing_framework_is_one_line_with_the_fix(monkeypatch, module, importer):
    # sys.modules[name] = None makes `import name` raise ImportError: the framework is absent
    # for this test as it would be on a machine without it.
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(DependencyError) as info:
        importer()
    message = str(info.value)
    assert "\n" not in message
    assert "is not usable" in message and "scripts/setup.sh" in message


def test_opencv_5_is_refused(monkeypatch):
    # A stand-in module: OpenCV 5 (which dropped the Caffe importer) cannot be installed beside
    # the pinned 4.x here, so its two relevant attributes are imitated.
    fake = types.SimpleNamespace(__version__="5.0.0", dnn=types.SimpleNamespace())
    monkeypatch.setitem(sys.modules, "cv2", fake)
    with pytest.raises(DependencyError, match="OpenCV 5.0.0 is not usable.*no Caffe importer"):
        frameworks.import_cv2()


# -- caffe ------------------------------------------------------------------------------

CAFFE_NET = """
    import os, tempfile
    {before}
    from caffezoo.frameworks import import_caffe
    caffe = import_caffe()
    print("GLOG_minloglevel=" + os.environ.get("GLOG_minloglevel", ""))
    path = os.path.join(tempfile.mkdtemp(), "n.prototxt")
    # a legacy net-level input: Caffe upgrades it and logs a WARNING about that
    open(path, "w").write('input: "data" input_dim: 1 input_dim: 2 input_dim: 3 input_dim: 3')
    net = caffe.Net(path, caffe.TEST)
    print("blobs", list(net.blobs))
"""


@pytest.mark.caffe
def test_import_caffe_is_quiet_unless_asked():
    env = {"GLOG_logtostderr": "1"}
    quiet = run_python(CAFFE_NET.format(before='os.environ.pop("GLOG_minloglevel", None)'), env)
    assert quiet.returncode == 0, quiet.stderr
    assert "GLOG_minloglevel=2" in quiet.stdout and "blobs ['data']" in quiet.stdout
    assert "future Caffe releases" not in quiet.stderr
    # The user's own setting wins: with level 0 Caffe's warning appears.
    loud = run_python(CAFFE_NET.format(before='os.environ["GLOG_minloglevel"] = "0"'), env)
    assert loud.returncode == 0, loud.stderr
    assert "GLOG_minloglevel=0" in loud.stdout
    assert "future Caffe releases" in loud.stderr


@pytest.mark.caffe
def test_caffe_tool_is_found_without_path(monkeypatch):
    tool = frameworks.caffe_tool()
    assert os.access(tool, os.X_OK)
    monkeypatch.setenv("PATH", "/nonexistent")
    found = frameworks.caffe_tool()  # next to the interpreter or in pycaffe's build tree
    assert Path(found).resolve() == Path(tool).resolve()
    out = subprocess.run([found, "--version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    assert "caffe version" in (out.stdout + out.stderr).lower()


@pytest.mark.caffe
def test_caffe_cpu_forward_matches_numpy():
    import tempfile

    caffe = frameworks.import_caffe()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "conv.prototxt"
        path.write_text('layer { name: "data" type: "Input" top: "data" input_param { shape {'
                        ' dim: 1 dim: 2 dim: 5 dim: 5 } } }\nlayer { name: "c" type: '
                        '"Convolution" bottom: "data" top: "c" convolution_param { num_output: 3'
                        ' kernel_size: 3 pad: 1 bias_term: false } }')
        net = caffe.Net(str(path), caffe.TEST)
    rng = np.random.default_rng(0)
    w = rng.normal(size=(3, 2, 3, 3)).astype(np.float32)
    x = rng.normal(size=(1, 2, 5, 5)).astype(np.float32)
    net.params["c"][0].data[...] = w
    net.blobs["data"].data[...] = x
    net.forward()
    np.testing.assert_allclose(net.blobs["c"].data, conv2d_nchw(x, w, 1), atol=1e-5)


# -- opencv -------------------------------------------------------------------------------

@pytest.mark.opencv
def test_import_cv2_has_the_caffe_importer():
    cv2 = frameworks.import_cv2()
    assert int(cv2.__version__.split(".")[0]) == 4
    assert callable(cv2.dnn.readNetFromCaffe)


# -- torch family ----------------------------------------------------------------------------

@pytest.mark.torch
def test_torchvision_needs_and_gets_the_two_operator_stubs():
    plain = run_python("import torchvision")
    assert plain.returncode != 0
    assert "operator torchvision::nms does not exist" in plain.stderr
    patched = run_python("""
        from caffezoo import frameworks
        tv = frameworks.import_torchvision()
        timm = frameworks.import_timm()
        import torch
        print("stubs", frameworks.TORCHVISION_STUB_OPS)
        stubs = frameworks.TORCHVISION_STUB_OPS
        print("ops", all(hasattr(torch.ops.torchvision, op) for op in stubs))
        m = tv.models.resnet18(weights=None)
        print("tv", sum(p.numel() for p in m.parameters()))
        t = timm.create_model("resnet18", pretrained=False)
        print("timm", sum(p.numel() for p in t.parameters()))
        x = torch.arange(12.0).reshape(1, 1, 3, 4)
        print("flip", bool((tv.transforms.functional.hflip(x) == x.flip(-1)).all()))
        try:
            tv.ops.nms(torch.zeros(2, 4), torch.zeros(2), 0.5)
            print("nms ran")
        except Exception:
            print("nms refused")
    """)
    assert patched.returncode == 0, patched.stderr
    out = patched.stdout
    assert "stubs ('nms', 'qnms')" in out and "ops True" in out
    # ResNet-18's published parameter count (torchvision's model card), from two implementations
    assert "tv 11689512" in out and "timm 11689512" in out
    assert "flip True" in out
    assert "nms refused" in out  # a stub has no kernel: detection ops fail loudly, not wrongly


# -- tensorflow ----------------------------------------------------------------------------

@pytest.mark.tensorflow
def test_tf_slim_imports_and_computes_a_convolution():
    slim = frameworks.import_tf_slim()
    import tensorflow as tf
    from tensorflow.python.framework import ops

    assert ops.Tensor is tf.Tensor
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1, 5, 5, 2)).astype(np.float32)  # NHWC
    w = rng.normal(size=(3, 3, 2, 4)).astype(np.float32)  # HWIO
    with tf.Graph().as_default():
        y = slim.conv2d(tf.constant(x), 4, [3, 3], padding="SAME", activation_fn=None,
                        weights_initializer=tf.constant_initializer(w),
                        biases_initializer=tf.zeros_initializer())
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            got = sess.run(y)
    want = conv2d_nchw(x.transpose(0, 3, 1, 2), w.transpose(3, 2, 0, 1), 1).transpose(0, 2, 3, 1)
    np.testing.assert_allclose(got, want, atol=1e-4)
    from tf_slim.nets import inception_v3  # the nets the converters use are importable

    assert callable(inception_v3.inception_v3)


# -- mxnet --------------------------------------------------------------------------------

@pytest.mark.mxnet
def test_mxnet_needs_and_gets_the_numpy_aliases():
    plain = run_python("import mxnet")
    assert plain.returncode != 0 and "was removed in the NumPy 2.0 release" in plain.stderr
    patched = run_python("""
        import numpy as np
        original_bool = np.bool
        from caffezoo import frameworks
        restored = frameworks.restore_numpy_aliases()
        print("restored", sorted(restored))
        print("again", frameworks.restore_numpy_aliases())
        print("bool kept", np.bool is original_bool)
        mx = frameworks.import_mxnet()
        print("version", mx.__version__)
    """)
    assert patched.returncode == 0, patched.stderr
    expected = sorted(n for n in frameworks.MXNET_NUMPY_ALIASES if n != "bool")
    assert f"restored {expected}" in patched.stdout  # numpy 2 lacks all of them but np.bool
    assert "again []" in patched.stdout  # set only when missing
    assert "bool kept True" in patched.stdout and "version 1.9.1" in patched.stdout


@pytest.mark.mxnet
def test_mxnet_symbol_forward_and_params_round_trip(tmp_path):
    mx = frameworks.import_mxnet()
    assert list(np.in1d([1, 2, 3, 2], [2])) == [False, True, False, True]
    assert np.PZERO == 0.0 and np.isnan(np.NAN) and np.NINF == -np.inf
    rng = np.random.default_rng(2)
    w = rng.normal(size=(3, 2, 3, 3)).astype(np.float32)
    x = rng.normal(size=(2, 2, 5, 5)).astype(np.float32)
    sym = mx.sym.Convolution(mx.sym.Variable("data"), num_filter=3, kernel=(3, 3), pad=(1, 1),
                             no_bias=True, name="c")
    path = str(tmp_path / "m.params")
    mx.nd.save(path, {"arg:c_weight": mx.nd.array(w)})
    loaded = {k.split(":", 1)[1]: v for k, v in mx.nd.load(path).items()}
    exe = sym.bind(mx.cpu(), {"data": mx.nd.array(x), **loaded})
    exe.forward(is_train=False)
    np.testing.assert_allclose(exe.outputs[0].asnumpy(), conv2d_nchw(x, w, 1), atol=1e-4)


# -- the doctor's rows ------------------------------------------------------------------------

@pytest.mark.caffe
@pytest.mark.opencv
def test_components_in_process_report_versions():
    import importlib.metadata as md

    core = ["numpy", "protobuf", "opencv", "pycaffe"]
    rows = {r.name: r for r in frameworks.components(core, isolated=False)}
    assert list(rows) == ["caffe tool", *core]
    for name, dist in [("numpy", "numpy"), ("protobuf", "protobuf"),
                       ("opencv", "opencv-python-headless")]:
        assert rows[name].ok and rows[name].core and rows[name].version == md.version(dist)
    assert rows["pycaffe"].ok and rows["caffe tool"].ok
    assert rows["caffe tool"].version == rows["pycaffe"].version  # one build, one version
