"""`caffezoo info`: the table, --json, --input-shape and --weights, through the real command line
entry point (cli.main in-process, and once as a subprocess). Expected numbers are computed by hand
for a tiny net."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from caffezoo import cli, netio
from caffezoo.builder import NetBuilder
from caffezoo.proto import caffe_pb2

# conv1: 3 -> 8, 3x3, pad 1 on 16x16: 8*3*9 + 8 weights, 16*16*8 outputs x 3*9 MACs each
CONV1_PARAMS, CONV1_MACS = 8 * 3 * 9 + 8, 16 * 16 * 8 * 27
# fc: 8*8*8 -> 10 after a 2x2 stride-2 max pooling
FC_PARAMS, FC_MACS = 512 * 10 + 10, 512 * 10
SCALE_PARAMS, BN_STATS = 8 + 8, 8 + 8 + 1


def tiny_net():
    b = NetBuilder("tiny")
    x = b.input("data", (1, 3, 16, 16))
    x = b.conv(x, "conv1", num_output=8, kernel=3, pad=1)
    x = b.batch_norm(x, "bn1")
    x = b.scale(x, "scale1")
    x = b.relu(x, "relu1")
    x = b.pool(x, "pool1", "max", kernel=2, stride=2)
    x = b.inner_product(x, "fc", num_output=10)
    b.softmax(x, "prob")
    return b.net


@pytest.fixture
def prototxt(tmp_path):
    path = tmp_path / "tiny.prototxt"
    netio.write_prototxt(tiny_net(), path)
    return path


def write_caffemodel(path, blobs):
    """A .caffemodel written directly with protobuf (independent of netio's writer)."""
    net = caffe_pb2.NetParameter(name="tiny")
    for name, arrays in blobs.items():
        layer = net.layer.add(name=name)
        for arr in arrays:
            blob = layer.blobs.add()
            blob.shape.dim.extend(arr.shape)
            blob.data.extend(np.asarray(arr, np.float32).ravel().tolist())
    path.write_bytes(net.SerializeToString())
    return path


def good_blobs():
    return {"conv1": [np.ones((8, 3, 3, 3)), np.zeros(8)],
            "bn1": [np.zeros(8), np.ones(8), np.ones(1)],
            "scale1": [np.ones(8), np.zeros(8)],
            "fc": [np.ones((10, 512)), np.zeros(10)]}


def run_cli(capsys, *args):
    code = cli.main(["info", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_table(prototxt, capsys):
    code, out, err = run_cli(capsys, prototxt)
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].split() == ["layer", "type", "output", "shape", "params", "MACs"]
    rows = {line.split()[0]: line.split() for line in lines[2:10]}
    assert rows["data"] == ["data", "Input", "1x3x16x16", "0", "0"]
    assert rows["conv1"] == ["conv1", "Convolution", "1x8x16x16", f"{CONV1_PARAMS:,}",
                             f"{CONV1_MACS:,}"]
    assert rows["bn1"] == ["bn1", "BatchNorm", "1x8x16x16", "0", "0"]
    assert rows["scale1"][3] == str(SCALE_PARAMS)
    assert rows["pool1"][2] == "1x8x8x8"
    assert rows["fc"] == ["fc", "InnerProduct", "1x10", f"{FC_PARAMS:,}", f"{FC_MACS:,}"]
    total = CONV1_PARAMS + SCALE_PARAMS + FC_PARAMS
    assert f"parameters: {total:,} " in out
    assert f"BN stats:   {BN_STATS} " in out
    assert f"MACs:       {CONV1_MACS + FC_MACS:,} ({(CONV1_MACS + FC_MACS) / 1e9:.3f} GMACs" in out
    assert "inputs:     data 1x3x16x16" in out and "outputs:    prob 1x10" in out


def test_json_and_input_shape(prototxt, capsys):
    code, out, _ = run_cli(capsys, prototxt, "--json", "--input-shape", "2,3,32,32")
    assert code == 0
    data = json.loads(out)
    layers = {layer["name"]: layer for layer in data["layers"]}
    assert data["inputs"] == {"data": [2, 3, 32, 32]}
    assert layers["conv1"]["out_shapes"] == [[2, 8, 32, 32]]
    assert layers["conv1"]["param_shapes"] == [[8, 3, 3, 3], [8]]
    assert layers["conv1"]["macs"] == 2 * 4 * CONV1_MACS  # twice the batch, 4x the pixels
    # fc now sees 8*16*16 inputs per image
    assert layers["fc"]["params"] == 8 * 16 * 16 * 10 + 10
    assert data["total_params"] == CONV1_PARAMS + SCALE_PARAMS + 8 * 16 * 16 * 10 + 10
    assert data["total_stats"] == BN_STATS
    assert data["outputs"] == {"prob": [2, 10]}


def test_weights_that_fit(prototxt, tmp_path, capsys):
    blobs = good_blobs()
    del blobs["scale1"]
    model = write_caffemodel(tmp_path / "ok.caffemodel", blobs)
    code, out, err = run_cli(capsys, prototxt, "--weights", model)
    assert code == 0 and err == ""
    assert "layers that fit: 3" in out
    assert "layers without weights (1; Caffe keeps their initial values): scale1" in out

    code, out, _ = run_cli(capsys, prototxt, "--weights", model, "--json")
    report = json.loads(out)["weights"]
    assert code == 0 and report["ok"] and report["missing"] == ["scale1"]


def test_weights_mismatch_is_an_error_naming_layer_and_shapes(prototxt, tmp_path, capsys):
    blobs = good_blobs()
    blobs["conv1"][0] = np.ones((8, 3, 5, 5))
    blobs["fc"][1] = np.zeros(11)
    model = write_caffemodel(tmp_path / "bad.caffemodel", blobs)
    code, out, err = run_cli(capsys, prototxt, "--weights", model)
    assert code == 3  # bad input (docs/cli.md)
    assert err.count("\n") == 1  # one line, no traceback
    assert "layer 'conv1': blob 0 has shape (8, 3, 5, 5) but the prototxt implies (8, 3, 3, 3)" \
        in err
    assert "(and 1 more mismatched blob)" in err and str(model) in err
    # The full report is printed too.
    assert "MISMATCHES (2):" in out
    assert "layer 'fc': blob 1 has shape (11,) but the prototxt implies (10,)" in out

    code, out, _ = run_cli(capsys, prototxt, "--weights", model, "--json")
    assert code == 3
    mismatches = json.loads(out)["weights"]["mismatches"]
    assert [(m["layer"], m["expected"], m["actual"]) for m in mismatches] == [
        ("conv1", [8, 3, 3, 3], [8, 3, 5, 5]), ("fc", [10], [11])]


def test_bad_input_gives_one_line_errors(tmp_path, capsys):
    code, _, err = run_cli(capsys, tmp_path / "missing.prototxt")
    assert code != 0 and "missing.prototxt" in err and err.count("\n") == 1

    net = tiny_net()
    net.layer[2].type = "Frobnicate"
    path = tmp_path / "unknown.prototxt"
    netio.write_prototxt(net, path)
    code, _, err = run_cli(capsys, path)
    assert code == 3 and "layer 'bn1': unsupported layer type 'Frobnicate'" in err


def test_bad_input_shape(prototxt, capsys):
    for spec in ("1,3,0,16", "1,3,x,16", ""):
        code, _, err = run_cli(capsys, prototxt, "--input-shape", spec)
        assert code == 2 and f"--input-shape {spec}: expected positive integers" in err
    code, _, err = run_cli(capsys, prototxt, "--input-shape", "image=1,3,16,16")
    assert code == 3 and "no input blob named image" in err  # the net does not fit the option


def test_as_a_process(prototxt):
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {**os.environ, "PYTHONPATH": repo}
    proc = subprocess.run([sys.executable, "-m", "caffezoo", "info", str(prototxt), "--json"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["total_macs"] == CONV1_MACS + FC_MACS
    # Without weights the command must not import a framework (it starts fast, works anywhere).
    probe = ("import sys; from caffezoo import cli; cli.main(['info', sys.argv[1]]); "
             "print(sorted(m for m in ('caffe', 'torch', 'tensorflow', 'mxnet', 'cv2') "
             "if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", probe, str(prototxt)], capture_output=True,
                          text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.caffe
def test_weights_saved_by_real_caffe_fit(prototxt, tmp_path, capsys):
    from caffezoo.frameworks import import_caffe

    caffe = import_caffe()
    model = tmp_path / "caffe.caffemodel"
    caffe.Net(str(prototxt), caffe.TEST).save(str(model))
    code, out, _ = run_cli(capsys, prototxt, "--weights", model)
    assert code == 0
    assert "layers that fit: 4" in out and "layers without weights: none" in out


@pytest.mark.shared
def test_real_squeezenet(squeezenet_dir, capsys):
    code, out, _ = run_cli(capsys, squeezenet_dir / "deploy.prototxt", "--weights",
                           squeezenet_dir / "squeezenet_v1.0_dc.caffemodel")
    assert code == 0
    assert "parameters: 1,248,424 " in out  # the published SqueezeNet v1.0 count
    assert "layers that fit: 26" in out and "layers without weights: none" in out
