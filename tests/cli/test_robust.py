"""Issue 9's crashes and wrong answers, each kept as a regression case: what real Caffe does on
the net (reproduced in a separate process, since it aborts), and what caffezoo does instead (one
line naming the layer, before Caffe sees the net). Also the guard around real Caffe, memory
refusals and the small CLI cases."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from caffezoo import cli, netio
from caffezoo.errors import (
    EXIT_BAD_INPUT,
    EXIT_BROKEN_PIPE,
    EXIT_INTERNAL,
    EXIT_USAGE,
    BackendCrash,
    NetDefinitionError,
    ResourceError,
)
from caffezoo.random_weights import random_weights
from caffezoo.runtimes import check_net, open_runtime

HEAD = 'layer { name: "data" type: "Input" top: "data" input_param { shape { dim: %s } } }\n'
SMALL = "1 dim: 3 dim: 8 dim: 8"
RELU = 'layer { name: "r" type: "ReLU" bottom: "data" top: "r" }\n'

# name -> (prototxt, what real Caffe says when it aborts, what caffezoo says)
ABORTS = {
    "cudnn_engine_is_rewritten": None,  # see test_cudnn_engine_runs_on_the_cpu_build
    "inplace_split": (
        HEAD % SMALL + 'layer { name: "sp" type: "Split" bottom: "data" top: "data" }\n',
        "Split Layer does not allow in-place computation",
        r"layer 'sp' \(Split\) runs in place on 'data'"),
    "split_without_top": (
        HEAD % SMALL + 'layer { name: "sp" type: "Split" bottom: "data" }\n' + RELU,
        "Split Layer produces at least 1 top blob",
        r"layer 'sp' \(Split\): takes at least 1 top blob\(s\), got 0"),
    "input_over_int32": (
        HEAD % "1 dim: 3 dim: 100000 dim: 100000" + RELU,
        "blob size exceeds INT_MAX",
        r"layer 'data' \(Input\): top blob 'data' of shape \(1, 3, 100000, 100000\) has "
        r"30,000,000,000 values"),
    "im2col_buffer_over_int32": (
        HEAD % "1 dim: 512 dim: 1000 dim: 1000" + 'layer { name: "conv" type: "Convolution" '
        'bottom: "data" top: "conv" convolution_param { num_output: 1 kernel_size: 11 pad: 5 } }',
        "blob size exceeds INT_MAX",
        r"layer 'conv' \(Convolution\): its work buffer .* has 61,952,000,000 values"),
    "33_axes": (
        HEAD % " dim: ".join(["1"] * 33) + RELU,
        "kMaxBlobAxes",
        r"layer 'data' \(Input\): top blob 'data' has 33 axes"),
    "ave_pooling_with_mask_top": (
        HEAD % SMALL + 'layer { name: "pool" type: "Pooling" bottom: "data" top: "p" top: "m" '
        "pooling_param { pool: AVE kernel_size: 2 stride: 2 } }",
        "Pooling Layer produces at most 1 top blob",
        r"layer 'pool' \(Pooling\): takes 1 top blob\(s\), got 2"),
    "same_top_twice": (
        HEAD % "1 dim: 4 dim: 8 dim: 8" + 'layer { name: "sl" type: "Slice" bottom: "data" '
        'top: "a" top: "a" slice_param { axis: 1 } }',
        "produced by multiple sources",
        r"layer 'sl' \(Slice\): names a top blob twice"),
    "param_without_blob": (
        HEAD % SMALL + 'layer { name: "r" type: "ReLU" bottom: "data" top: "r" '
        "param { lr_mult: 1 } }",
        "Too many params specified for layer r",
        r"layer 'r' \(ReLU\): 1 param entries for 0 blob\(s\)"),
    "loss_weight_count": (
        HEAD % SMALL + 'layer { name: "r" type: "ReLU" bottom: "data" top: "r" '
        "loss_weight: 1 loss_weight: 2 }",
        "loss_weight must be unspecified or specified once per top blob",
        r"layer 'r' \(ReLU\): 2 loss_weight values for 1 top\(s\)"),
    "shared_param_shape": (
        HEAD % SMALL + 'layer { name: "c1" type: "Convolution" bottom: "data" top: "c1" '
        'param { name: "w" } convolution_param { num_output: 3 kernel_size: 3 bias_term: false } }'
        '\nlayer { name: "c2" type: "Convolution" bottom: "c1" top: "c2" param { name: "w" } '
        "convolution_param { num_output: 3 kernel_size: 1 bias_term: false } }",
        "Cannot share param 'w'",
        r"layer 'c2' \(Convolution\): shares param 'w' of layer 'c1'"),
}
ABORTS.pop("cudnn_engine_is_rewritten")

# Accepted by real Caffe, but computed wrongly: (net, the same net with its own top, ours)
WRONG = {
    "inplace_pooling": (
        HEAD % SMALL + 'layer { name: "pool" type: "Pooling" bottom: "data" top: "data" '
        "pooling_param { pool: MAX kernel_size: 2 stride: 2 } }\n" + RELU,
        HEAD % SMALL + 'layer { name: "pool" type: "Pooling" bottom: "data" top: "pool" '
        "pooling_param { pool: MAX kernel_size: 2 stride: 2 } }\n" + RELU.replace(
            'bottom: "data"', 'bottom: "pool"'),
        r"layer 'pool' \(Pooling\) runs in place on 'data' but changes its shape "
        r"\(1, 3, 8, 8\) -> \(1, 3, 4, 4\)"),
    "inplace_eltwise": (
        HEAD % SMALL + RELU + 'layer { name: "e" type: "Eltwise" bottom: "r" bottom: "data" '
        'top: "r" }',
        HEAD % SMALL + RELU + 'layer { name: "e" type: "Eltwise" bottom: "r" bottom: "data" '
        'top: "e" }',
        r"layer 'e' \(Eltwise\) runs in place on 'r', which Caffe's Eltwise cannot"),
}

_RAW_CAFFE = """
import os, sys
os.environ["GLOG_minloglevel"] = "2"
import numpy as np, caffe
caffe.set_mode_cpu()
net = caffe.Net(sys.argv[1], caffe.TEST)
net.blobs["data"].data[...] = np.random.default_rng(0).normal(size=net.blobs["data"].shape)
for blobs in net.params.values():
    for b in blobs:
        b.data[...] = 0.1
out = net.forward()
np.save(sys.argv[2], out[list(out)[-1]])
"""


def _raw_caffe(prototxt: Path, tmp: Path) -> subprocess.CompletedProcess:
    """Real pycaffe on the file as written, unguarded, in its own process."""
    return subprocess.run([sys.executable, "-c", _RAW_CAFFE, str(prototxt), str(tmp / "out.npy")],
                          capture_output=True, text=True, timeout=120)


def _write(tmp: Path, text: str, name: str = "net.prototxt") -> Path:
    path = tmp / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("name", sorted(ABORTS))
def test_caffe_checks_are_refused_first_with_the_layer_named(name, tmp_path):
    text, _, ours = ABORTS[name]
    path = _write(tmp_path, text)
    with pytest.raises(NetDefinitionError, match=ours):
        check_net(path)
    assert cli.main(["info", str(path)]) == EXIT_BAD_INPUT


@pytest.mark.caffe
@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(ABORTS))
def test_real_caffe_aborts_on_these_nets(name, tmp_path):
    """The reproduction: unguarded, real Caffe dies by SIGABRT with this message."""
    text, theirs, _ = ABORTS[name]
    proc = _raw_caffe(_write(tmp_path, text), tmp_path)
    assert proc.returncode == -6, proc.stderr[-500:]
    assert theirs in proc.stderr


@pytest.mark.caffe
@pytest.mark.parametrize("name", sorted(WRONG))
def test_inplace_layers_that_caffe_computes_wrongly_are_refused(name, tmp_path):
    text, fixed, ours = WRONG[name]
    path = _write(tmp_path, text)
    with pytest.raises(NetDefinitionError, match=ours):
        check_net(path)
    check_net(_write(tmp_path, fixed, "fixed.prototxt"))  # with its own top it is fine
    # The reproduction: real Caffe runs both, and the in-place one gives other numbers.
    wrong = _raw_caffe(tmp_path / "net.prototxt", tmp_path)
    assert wrong.returncode == 0, wrong.stderr[-300:]
    got = np.load(tmp_path / "out.npy")
    right = _raw_caffe(tmp_path / "fixed.prototxt", tmp_path)
    assert right.returncode == 0, right.stderr[-300:]
    want = np.load(tmp_path / "out.npy")
    assert got.shape != want.shape or not np.allclose(got, want)


@pytest.mark.caffe
def test_stochastic_pooling_is_refused_for_caffe(tmp_path):
    path = _write(tmp_path, HEAD % SMALL + 'layer { name: "pool" type: "Pooling" bottom: "data" '
                  'top: "pool" pooling_param { pool: STOCHASTIC kernel_size: 2 stride: 2 } }')
    with pytest.raises(NetDefinitionError, match="layer 'pool': STOCHASTIC pooling has no CPU"):
        open_runtime("pycaffe", path)
    assert cli.main(["time", "--prototxt", str(path), "--no-peak", "--iterations", "1",
                     "--backends", "pycaffe"]) == EXIT_BAD_INPUT


@pytest.mark.caffe
def test_cudnn_engine_runs_on_the_cpu_build(tmp_path):
    """`engine: CUDNN` aborts a CPU build ("unknown engine"); the engine does not change the
    result, so caffezoo gives Caffe the net without it and gets the default engine's numbers."""
    conv = ('layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" '
            "convolution_param { num_output: 2 kernel_size: 3 %s} }")
    plain = _write(tmp_path, HEAD % SMALL + conv % "", "plain.prototxt")
    cudnn = _write(tmp_path, HEAD % SMALL + conv % "engine: CUDNN ", "cudnn.prototxt")
    raw = _raw_caffe(cudnn, tmp_path)
    assert raw.returncode == -6 and "has unknown engine" in raw.stderr
    weights = tmp_path / "w.caffemodel"
    net = netio.read_prototxt(plain)
    netio.write_caffemodel(netio.attach_weights(net, random_weights(net)), weights)
    x = np.random.default_rng(1).normal(size=(1, 3, 8, 8)).astype(np.float32)
    got = open_runtime("pycaffe", cudnn, weights).forward(x)["conv"]
    want = open_runtime("pycaffe", plain, weights).forward(x)["conv"]
    np.testing.assert_array_equal(got, want)


# -- the guard: what the checks miss ends only the child -------------------------------------

@pytest.mark.caffe
def test_a_caffe_abort_while_loading_is_one_error_naming_the_layer(tmp_path):
    from caffezoo.runtimes.pycaffe import PyCaffeRuntime

    checked = check_net(_write(tmp_path, HEAD % SMALL + RELU))
    # Pretend the checks missed something: hand Caffe a net it aborts on.
    text, theirs, _ = ABORTS["split_without_top"]
    checked.net = netio.parse_prototxt(text)
    with pytest.raises(BackendCrash) as info:
        PyCaffeRuntime(checked)
    message = str(info.value)
    assert "Caffe died from SIGABRT in layer 'sp' while loading the net" in message
    assert theirs in message and "\n" not in message


@pytest.mark.caffe
def test_a_caffe_abort_in_forward_names_the_layer(tmp_path, monkeypatch):
    from caffezoo.runtimes import pycaffe

    path = _write(tmp_path, HEAD % SMALL + 'layer { name: "pool" type: "Pooling" '
                  'bottom: "data" top: "pool" pooling_param { pool: STOCHASTIC kernel_size: 2 '
                  "stride: 2 } }")
    monkeypatch.setattr(pycaffe, "check_for_caffe", lambda checked: None)
    rt = open_runtime("pycaffe", path)
    with pytest.raises(BackendCrash, match=r"SIGABRT in layer 'pool' while running a batch of "
                                           r"1: Not Implemented Yet \(pooling_layer.cpp"):
        rt.forward(np.zeros((1, 3, 8, 8), np.float32))


# -- memory -----------------------------------------------------------------------------------

def test_memory_needs_are_refused_before_allocating(tmp_path, monkeypatch):
    path = _write(tmp_path, HEAD % "1 dim: 3 dim: 20000 dim: 20000" + RELU)
    checked = check_net(path)  # 1.2 G values per blob: under Caffe's limit
    monkeypatch.setenv("CAFFEZOO_MEMORY_LIMIT", str(2**30))
    with pytest.raises(ResourceError, match=r"net.prototxt on pycaffe at batch size 1 needs "
                                            r"about 17.9 GiB of memory, this machine has"):
        checked.check_memory()


@pytest.mark.opencv
def test_a_huge_batch_size_allocates_for_the_crops_there_are(tmp_path, monkeypatch):
    """--batch-size 100000 for 3 images used to pre-allocate 57 GiB; now 3 crops' worth."""
    from caffezoo.evaluation import classify
    from caffezoo.evaluation.dataset import Sample
    from caffezoo.evaluation.preprocess import original

    fc = ('layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" '
          "inner_product_param { num_output: 10 } }")
    path = _write(tmp_path, HEAD % "1 dim: 3 dim: 224 dim: 224" + fc)
    net = netio.read_prototxt(path)
    weights = tmp_path / "w.caffemodel"
    netio.write_caffemodel(netio.attach_weights(net, random_weights(net)), weights)
    import cv2

    samples = []
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((240, 250, 3), 40 * i, np.uint8))
        samples.append(Sample(f"{i}.png", str(tmp_path / f"{i}.png"), i, i + 1))
    pre = original(mean=(0, 0, 0), std=(1, 1, 1), base_size=224, crop_size=224)
    config = classify.EvalConfig(pipeline=pre, output_blob="fc", num_classes=10,
                                 batch_size=100000, workers=0)
    monkeypatch.setenv("CAFFEZOO_MEMORY_LIMIT", str(64 * 2**20))  # far below 57 GiB
    result = classify.evaluate(open_runtime("opencv", path, weights), samples, config)
    assert result.evaluated == 3 and result.forward_calls == 1 and result.crops == 3


def test_prelu_channel_shared_weights_have_the_scalar_shape(tmp_path):
    path = _write(tmp_path, HEAD % SMALL + 'layer { name: "p" type: "PReLU" bottom: "data" '
                  'top: "p" prelu_param { channel_shared: true } }')
    net = netio.read_prototxt(path)
    weights = tmp_path / "w.caffemodel"
    netio.write_caffemodel(netio.attach_weights(net, random_weights(net)), weights)
    assert netio.read_weights(weights)["p"][0].shape == ()
    assert check_net(path, weights).weights["p"][0].shape == ()


@pytest.mark.caffe
def test_prelu_channel_shared_can_be_timed(tmp_path, capsys):
    path = _write(tmp_path, HEAD % SMALL + 'layer { name: "p" type: "PReLU" bottom: "data" '
                  'top: "p" prelu_param { channel_shared: true } }')
    assert cli.main(["time", "--prototxt", str(path), "--no-peak", "--iterations", "1",
                     "--no-caffe-time"]) == 0
    assert "pycaffe" in capsys.readouterr().out


# -- small CLI cases: one line, never a traceback --------------------------------------------

@pytest.fixture
def tiny(tmp_path):
    fc = ('layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" '
          "inner_product_param { num_output: 4 } }\n"
          'layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }')
    path = _write(tmp_path, HEAD % "1 dim: 3 dim: 16 dim: 16" + fc, "tiny.prototxt")
    net = netio.read_prototxt(path)
    weights = tmp_path / "tiny.caffemodel"
    netio.write_caffemodel(netio.attach_weights(net, random_weights(net)), weights)
    import cv2

    for i in range(2):
        cv2.imwrite(str(tmp_path / f"im{i}.png"), np.full((20, 24, 3), 90 * i, np.uint8))
    (tmp_path / "val.txt").write_text("im0.png 1\nim1.png 2\n")
    return tmp_path, path, weights


def _eval(tiny, *extra: str) -> list[str]:
    folder, path, weights = tiny
    return ["eval", "--prototxt", str(path), "--weights", str(weights), "--val-list",
            str(folder / "val.txt"), "--data-root", str(folder), "--base-size", "16",
            "--workers", "0", *extra]


@pytest.mark.parametrize("extra, code, message", [
    (("--limit", "0"), EXIT_USAGE, "--limit must be at least 1, got 0"),
    (("--limit", "-1"), EXIT_USAGE, "--limit must be at least 1, got -1"),
    (("--threads", "0"), EXIT_USAGE, "--threads must be at least 1, got 0"),
    # 100000 threads hung past 300 s at 3.5 GB
    (("--threads", "100000"), EXIT_USAGE, r"--threads 100000: at most \d+ on this machine"),
    (("--workers", "100000"), EXIT_USAGE, r"--workers 100000: at most \d+ on this machine"),
    (("--base-size", "0"), EXIT_USAGE, "--base-size must be at least 1, got 0"),
    (("--batch-size", "0"), EXIT_USAGE, "--batch-size must be at least 1, got 0"),
    (("--json", "FOLDER.json"), EXIT_BAD_INPUT, "is a folder, expected an output file name"),
    (("--log", "FOLDER"), EXIT_BAD_INPUT, "is a folder, expected an output file name"),
    (("--predictions", "val.txt/p.csv"), EXIT_BAD_INPUT,
     "output folder .*val.txt is not a folder"),
])
def test_eval_refuses_bad_numbers_and_outputs_before_evaluating(tiny, capsys, extra, code,
                                                                message):
    folder = tiny[0]
    (folder / "FOLDER").mkdir(exist_ok=True)
    (folder / "FOLDER.json").mkdir(exist_ok=True)
    extra = tuple(str(folder / e) if "/" in e or e.startswith("FOLDER") else e for e in extra)
    assert cli.main(_eval(tiny, *extra)) == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.search(message, err), err


@pytest.mark.opencv
def test_eval_mean_must_be_finite(tiny, capsys):
    with pytest.raises(SystemExit):
        cli.main(_eval(tiny, "--mean", "nan"))
    assert "expected finite numbers" in capsys.readouterr().err


@pytest.mark.opencv
def test_val_list_with_a_bom_reads_its_first_path(tiny, capsys):
    folder = tiny[0]
    (folder / "val.txt").write_bytes(b"\xef\xbb\xbfim0.png 1\nim1.png 2\n")
    results = folder / "r.json"
    assert cli.main(_eval(tiny, "--json", str(results), "--top-k", "1")) == 0
    assert '"evaluated": 2' in results.read_text()


def test_latin1_prototxt_is_named_as_not_utf8(tmp_path, capsys):
    path = tmp_path / "latin1.prototxt"
    path.write_bytes(b'name: "caf\xe9"\n' + (HEAD % SMALL).encode())
    assert cli.main(["info", str(path)]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "latin1.prototxt:1: not UTF-8 text (byte 10: 0xe9)" in err


@pytest.mark.parametrize("argv, message", [
    (["time", "--model", "resnext50_32x4d", "--iterations", "0"],
     "--iterations must be at least 1, got 0"),
    (["validate", "--source", "torch:x.pth", "--model", "resnext50_32x4d", "--weights",
      "w.caffemodel", "--random", "0"], "--random must be at least 1, got 0"),
    (["generate", "resnext50_32x4d", "--input-size", "0"], "--input-size must be at least 1"),
    (["demo", "--input-size", "0"], "must be at least 1"),
])
def test_zero_counts_are_one_line_errors(argv, message, capsys):
    assert cli.main(argv) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


@pytest.mark.parametrize("argv", [
    ["time", "--model", "resnext50_32x4d", "--threads", "1,100000"],
    ["demo", "--threads", "100000"],
    ["doctor", "-j", "100000"],
    ["validate", "--source", "torch:x.pth", "--model", "resnext50_32x4d", "--weights",
     "w.caffemodel", "--seed", "-1"],  # numpy's ValueError was exit 70
    ["convert", "--source", "torch:x.pth", "--model", "resnext50_32x4d", "--random-init",
     "--seed", "-1", "-o", "out"],
    ["demo", "--seed", "-1"],
])
def test_counts_beyond_the_machine_and_negative_seeds_are_usage_errors(argv, capsys):
    from caffezoo.limits import max_parallel

    assert cli.main(argv) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert (f"at most {max_parallel()} on this machine" in err
            or "--seed must be at least 0, got -1" in err), err


def test_the_runtime_bounds_threads_too(tmp_path):
    from caffezoo.errors import UsageError

    path = _write(tmp_path, HEAD % SMALL + RELU)
    with pytest.raises(UsageError, match="threads 100000: at most"):
        open_runtime("opencv", path, threads=100000)


def test_names_over_the_system_limits_are_bad_input(tmp_path, capsys):
    """A path component over 255 bytes, or a path over 4096 (ENAMETOOLONG), as an input or an
    output: one line, exit 3 (was 70)."""
    long_name = tmp_path / ("a" * 300 + ".prototxt")
    long_path = Path("/".join([str(tmp_path)] + ["b" * 200] * 25) + ".prototxt")
    net = _write(tmp_path, HEAD % SMALL + RELU)
    for argv in (["info", str(long_name)], ["info", str(long_path)],
                 ["info", str(net), f"--json={long_name}.json"],
                 ["info", str(net), f"--json={long_path}.json"],
                 ["generate", "wrn50_2", "-o", str(long_name)],
                 ["export", "--to", "onnx", "--prototxt", str(net), "--weights",
                  str(tmp_path / "w.caffemodel"), "-o", str(long_path)]):
        assert cli.main(argv) == EXIT_BAD_INPUT, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "too long" in err, err


def test_a_closed_stdout_pipe_ends_quietly(tmp_path):
    path = _write(tmp_path, HEAD % SMALL + RELU * 1)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    proc = subprocess.Popen([sys.executable, "-m", "caffezoo", "info", str(path), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    proc.stdout.readline()  # `| head -1`
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) in (0, EXIT_BROKEN_PIPE) and err == "", err


def test_an_unexpected_exception_is_one_line_unless_debug(monkeypatch, capsys):
    from caffezoo.commands import zoo

    def boom(args):
        raise RuntimeError("something broke\nsecond line")

    monkeypatch.setattr(zoo, "run", boom)
    assert cli.main(["zoo"]) == EXIT_INTERNAL
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error: RuntimeError: something broke at" in err
    with pytest.raises(RuntimeError):
        cli.main(["--debug", "zoo"])


def test_convert_into_an_existing_folder_writes_inside_it(tmp_path):
    from caffezoo.commands.convert import out_paths

    (tmp_path / "out").mkdir()
    assert out_paths(str(tmp_path / "out"), "rx50") == (tmp_path / "out" / "rx50.caffemodel",
                                                        tmp_path / "out" / "rx50.prototxt")
    assert out_paths(str(tmp_path / "new") + "/", "rx50")[1] == tmp_path / "new" / "rx50.prototxt"
    assert out_paths(str(tmp_path / "a.caffemodel"))[1] == tmp_path / "a.prototxt"


@pytest.mark.opencv
@pytest.mark.parametrize("on_error, code", [("fail", EXIT_BAD_INPUT), ("skip", 0)])
def test_a_nul_byte_in_a_listed_path_is_a_bad_image(tiny, capsys, on_error, code):
    """Found by fuzzing val lists: open() raises ValueError (not OSError) for such a path."""
    folder = tiny[0]
    (folder / "val.txt").write_bytes(b"im0.png 1\nim\x001.png 2\n")
    assert cli.main(_eval(tiny, "--top-k", "1", "--on-error", on_error)) == code
    err = capsys.readouterr().err
    assert "internal error" not in err
    if code:
        assert err.count("\n") == 1


def _png_of_zeros(path: Path, width: int, height: int, rows: int | None = None) -> Path:
    """A greyscale PNG of zeros written row by row, never held whole in memory (12000 x 12000:
    140 KB on disk, 144 MB decoded); with `rows`, only that many rows of data follow the
    header (a file whose header is all a reader sees before refusing it)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    z = zlib.compressobj(9)
    row = bytes(width + 1)  # filter byte 0, then the pixels
    idat = b"".join(z.compress(row) for _ in range(height if rows is None else rows))
    idat += z.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n"
                     + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


@pytest.mark.opencv
@pytest.mark.parametrize("on_error, code", [("fail", EXIT_BAD_INPUT), ("skip", 0)])
def test_an_image_over_the_pixel_cap_is_refused_before_decoding(tiny, capsys, on_error, code):
    """A 30000 x 30000 PNG (875 KB) decoded to 5.4 GB per worker: the size is read from the
    header and the image refused (or skipped) by name before anything is decoded."""
    from caffezoo.evaluation.dataset import ImageError, load_image
    from caffezoo.limits import MAX_IMAGE_PIXELS

    folder = tiny[0]
    big = _png_of_zeros(folder / "big.png", 12000, 12000)
    assert 12000 * 12000 > MAX_IMAGE_PIXELS
    with pytest.raises(ImageError, match=r"big.png: image of 12000 x 12000 pixels; refused "
                                         r"above 134,217,728 pixels"):
        load_image(str(big))
    (folder / "val.txt").write_text("im0.png 1\nbig.png 2\n")
    results = folder / "r.json"
    assert cli.main(_eval(tiny, "--top-k", "1", "--on-error", on_error, "--json",
                          str(results))) == code
    err = capsys.readouterr().err
    if code:
        assert err.count("\n") == 1 and "big.png: image of 12000 x 12000 pixels" in err, err
    else:
        failures = json.loads(results.read_text())["failures"]
        assert [Path(f["path"]).name for f in failures] == ["big.png"]
        assert "refused above" in failures[0]["reason"]
    # a header over Pillow's own decompression-bomb limit (the 30000 x 30000)
    huge = _png_of_zeros(folder / "huge.png", 30000, 30000, rows=1)
    with pytest.raises(ImageError, match="huge.png: image of 900,000,000 pixels"):
        load_image(str(huge))


@pytest.mark.opencv
def test_eval_hints_at_the_data_root_and_at_0_1_means(tiny, capsys):
    folder, path, weights = tiny
    argv = ["eval", "--prototxt", str(path), "--weights", str(weights), "--val-list",
            str(folder / "val.txt"), "--base-size", "16", "--workers", "0"]
    assert cli.main(argv) == EXIT_BAD_INPUT  # every listed image missing: no --data-root
    err = capsys.readouterr().err
    assert "2 of 2 listed images are missing; --data-root DIR names the folder" in err
    assert cli.main([*argv, "--data-root", str(folder), "--mean", "0.485,0.456,0.406",
                     "--top-k", "1"]) == 0
    err = capsys.readouterr().err
    assert ("note: --mean 0.485,0.456,0.406 looks like one for 0-1 pixels; eval's pixels are "
            "0-255 (times 255: 123.675,116.28,103.53)") in err


def test_a_layer_name_that_is_not_utf8_is_named_not_a_crash(tmp_path, capsys):
    """protobuf hands such a name out as bytes: info's table and JSON failed on it (exit 70)."""
    path = _write(tmp_path, HEAD % SMALL + 'layer { name: "conv" type: "Convolution" '
                  'bottom: "data" top: "conv" convolution_param { num_output: 2 kernel_size: 1 '
                  '} }')
    net = netio.read_prototxt(path)
    data = netio.attach_weights(net, random_weights(net)).SerializeToString()
    bad = tmp_path / "bad.caffemodel"
    bad.write_bytes(data.replace(b"conv", b"c\xffnv"))
    for extra in ([], ["--json"]):
        assert cli.main(["info", str(path), "--weights", str(bad), *extra]) == EXIT_BAD_INPUT
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        assert "bad.caffemodel: layer 1: name b'c\\xffnv' is not UTF-8 text" in err, err
