"""caffezoo.geometry: each window rule against the framework that defines it: PyTorch's pooled
size and averages, TensorFlow's SAME/VALID, real Caffe's pooled size and its field rules."""

from __future__ import annotations

import numpy as np
import pytest

from caffezoo import geometry
from caffezoo.geometry import GeometryError
from caffezoo.proto import caffe_pb2

CASES = [(35, 3, 1, 1), (8, 3, 2, 1), (9, 2, 2, 0), (17, 5, 3, 2), (5, 7, 1, 3),
         # stride beyond the kernel without padding: PyTorch drops a ceil-mode last window
         # that starts past the input (a rule only the padded case used to follow here)
         (10, 1, 3, 0), (9, 2, 4, 0)]


@pytest.mark.torch
@pytest.mark.parametrize(("n", "k", "s", "pad"), CASES)
def test_source_pooled_and_exclude_pad_factors_match_torch(n, k, s, pad):
    torch = pytest.importorskip("torch")
    x = torch.ones(1, 1, n, n)
    for ceil in (False, True):
        want = torch.nn.functional.max_pool2d(x, k, s, pad, ceil_mode=ceil).shape[-1]
        assert geometry.source_pooled(n, k, s, pad, pad, ceil) == want
    p = caffe_pb2.PoolingParameter(kernel_size=k, stride=s, pad=pad)
    out = geometry.source_pooled(n, k, s, pad, pad, ceil=False)
    factors = geometry.exclude_pad_factors(geometry.pool_window(p, (n, n)), (n, n), (out, out))
    # torch averages ones including the padding as count/area: its inverse is the factor
    included = torch.nn.functional.avg_pool2d(x, k, s, pad, count_include_pad=True)[0, 0]
    np.testing.assert_allclose(factors, 1.0 / included.numpy(), rtol=1e-6)


@pytest.mark.tensorflow
def test_tf_padding_matches_tensorflow():
    from caffezoo.frameworks import import_tensorflow

    tf = import_tensorflow()
    for n in (7, 8, 9, 10):
        for k, s in ((3, 1), (3, 2), (1, 2), (7, 2)):
            for padding in ("SAME", "VALID"):
                if padding == "VALID" and n < k:
                    continue
                before, after, out = geometry.tf_padding(n, k, s, padding)
                x = tf.ones((1, n, 1, 1))
                got = tf.nn.conv2d(x, tf.ones((k, 1, 1, 1)), s, padding).numpy()[0, :, 0, 0]
                assert len(got) == out
                # the first window covers k - before real pixels, the last the rest
                assert got[0] == min(k - before, n)
                if padding == "SAME":
                    assert before + after == max((out - 1) * s + k - n, 0)


@pytest.mark.caffe
def test_caffe_pooled_size_is_real_caffes(tmp_path):
    """The output sizes Caffe's own Pooling layer gives, floor and ceil, with and without
    padding on one axis only (the drop rule looks at both axes)."""
    from caffezoo import netio
    from caffezoo.builder import NetBuilder
    from caffezoo.runtimes import open_runtime

    configs = [(9, 3, 2, (0, 0)), (8, 3, 2, (1, 0)), (10, 2, 3, (1, 1)), (7, 3, 3, (0, 1)),
               (13, 3, 2, (1, 1)), (6, 4, 4, (2, 0))]
    for i, (n, k, s, pad) in enumerate(configs):
        for ceil in (False, True):
            b = NetBuilder("pool")
            x = b.input("data", (1, 1, n, n))
            b.pool(x, "pool", "max", kernel=k, stride=s, pad=pad, ceil=ceil)
            path = tmp_path / f"pool{i}{ceil}.prototxt"
            netio.write_prototxt(b.net, path)
            got = open_runtime("pycaffe", path).forward(
                np.zeros((1, 1, n, n), np.float32), ["pool"])["pool"].shape[2:]
            w = geometry.pool_window(b.net.layer[-1].pooling_param, (n, n))
            assert geometry.caffe_pooled_hw(w, (n, n)) == tuple(got), (n, k, s, pad, ceil)


def test_conv_window_reads_fields_as_caffe_does():
    p = caffe_pb2.ConvolutionParameter(kernel_size=[3], stride=[2], pad=[1])
    assert geometry.conv_window(p) == geometry.ConvWindow((3, 3), (2, 2), (1, 1), (1, 1))
    # pad_h/pad_w replace pad when given, even as 0 (a value-based `or` reads pad 1 here)
    p = caffe_pb2.ConvolutionParameter(kernel_h=1, kernel_w=7, pad_h=0, pad_w=3)
    w = geometry.conv_window(p)
    assert (w.kernel, w.stride, w.pad) == ((1, 7), (1, 1), (0, 3))
    with pytest.raises(GeometryError, match="must be given together"):
        geometry.conv_window(caffe_pb2.ConvolutionParameter(kernel_h=3))
    with pytest.raises(GeometryError, match="no kernel_size given"):
        geometry.conv_window(caffe_pb2.ConvolutionParameter())
    with pytest.raises(GeometryError, match="2 kernel_size values for 3 spatial axes"):
        geometry.conv_window(caffe_pb2.ConvolutionParameter(kernel_size=[3, 3]), 3)
    assert geometry.conv_out(224, 7, 2, 3) == 112 and geometry.conv_out(7, 3, 1, 0, 2) == 3
    assert geometry.deconv_out(4, 4, 2, 1) == 8


def test_pool_window_reads_fields_as_caffe_does():
    p = caffe_pb2.PoolingParameter(kernel_size=3, stride=2, pad=2, pad_h=0, pad_w=1)
    w = geometry.pool_window(p, (9, 9))
    assert (w.kernel, w.stride, w.pad, w.ceil) == ((3, 3), (2, 2), (0, 1), True)
    g = geometry.pool_window(caffe_pb2.PoolingParameter(global_pooling=True), (7, 5))
    assert g.kernel == (7, 5) and geometry.caffe_pooled_hw(g, (7, 5)) == (1, 1)
    with pytest.raises(GeometryError, match="global pooling takes no kernel size"):
        geometry.pool_window(caffe_pb2.PoolingParameter(global_pooling=True, kernel_size=3),
                             (7, 7))
    with pytest.raises(GeometryError, match=r"pad \(3, 3\) must be smaller"):
        geometry.pool_window(caffe_pb2.PoolingParameter(kernel_size=3, pad=3), (7, 7))
    assert not geometry.pool_window(caffe_pb2.PoolingParameter(kernel_size=2, ceil_mode=False),
                                    (7, 7)).ceil


def test_same_padding_odd_pixel_at_the_end():
    # 8 pixels, 3x3 stride 2: output 4, total pad 1 -> (0, 1); dilation 2 widens the kernel to 5
    assert geometry.same_padding(8, 3, 2) == (0, 1)
    assert geometry.same_padding(8, 3, 2, dilation=2) == (1, 2)
    assert geometry.same_padding(9, 3, 2) == (1, 1)
