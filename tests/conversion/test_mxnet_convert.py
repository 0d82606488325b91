"""MXNet checkpoints converted freely (front end -> caffezoo.graph.emit -> .prototxt +
.caffemodel) and run in real Caffe and OpenCV DNN against real MXNet 1.9.1 on the same input:
every IR value MXNet also computes is compared, not only the output."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from caffezoo import netio
from caffezoo.converters import mxnet as cm

sys.path.insert(0, str(Path(__file__).parent))
from mxnet_nets import (  # noqa: E402
    every_op_symbol,
    random_params,
    residual_json_08,
    residual_symbol,
    save_checkpoint,
)

pytestmark = [pytest.mark.mxnet, pytest.mark.caffe]
TOLERANCE = 1e-4


def _emit_and_write(spec, shape, target, out: Path, dialect="ceil_mode"):
    from caffezoo.graph.emit import emit

    graph = cm.read_graph(spec, shape)
    emitted = emit(graph, target)
    netio.write_prototxt(emitted.net, out.with_suffix(".prototxt"), dialect=dialect)
    netio.write_caffemodel(emitted.net, out.with_suffix(".caffemodel"), dialect=dialect)
    return graph, emitted


def _compare(spec, shape, target, backend, tmp_path, dialect="ceil_mode", seed=0
             ) -> tuple[float, int]:
    """(worst relative error over every compared value, number of values compared)."""
    from caffezoo.runtimes import open_runtime

    out = tmp_path / f"{target}_{backend}"
    graph, emitted = _emit_and_write(spec, shape, target, out, dialect)
    runner = cm.open_graph_runner(spec, shape)
    x = np.random.default_rng(seed).normal(0, 1, shape).astype(np.float32)
    ref = runner.run(x, record=set(emitted.value_blobs))
    values = [v for v in ref if v in emitted.value_blobs and v != graph.inputs and
              v not in graph.inputs]
    rt = open_runtime(backend, out.with_suffix(".prototxt"), out.with_suffix(".caffemodel"))
    blobs = rt.forward(x, sorted({emitted.value_blobs[v] for v in values}))
    worst = 0.0
    for v in values:
        got = blobs[emitted.value_blobs[v]].reshape(ref[v].shape)
        rel = float(np.abs(got - ref[v]).max()) / max(float(np.abs(ref[v]).max()), 1e-6)
        assert rel < TOLERANCE, (v, rel)
        worst = max(worst, rel)
    assert set(graph.outputs) <= set(values)
    return worst, len(values)


@pytest.fixture(scope="module")
def every_op(tmp_path_factory):
    sym, text = every_op_symbol()
    prefix = tmp_path_factory.mktemp("everyop") / "everyop"
    return save_checkpoint(prefix, text, random_params(sym, (2, 3, 24, 24)))


@pytest.mark.opencv
@pytest.mark.parametrize("target, backend, dialect", [
    ("caffe", "pycaffe", "portable"), ("fork", "pycaffe", "ceil_mode"),
    ("opencv", "opencv", "ceil_mode"), ("opencv", "pycaffe", "ceil_mode")])
def test_every_handler_validates(every_op, tmp_path, target, backend, dialect):
    worst, count = _compare(every_op, (2, 3, 24, 24), target, backend, tmp_path, dialect)
    assert count >= 40


def test_08_and_current_json_give_the_same_caffe_net(tmp_path):
    from caffezoo.runtimes import open_runtime

    sym = residual_symbol()
    params = random_params(sym, (1, 3, 16, 16), seed=5)
    (tmp_path / "cur").mkdir()
    (tmp_path / "old").mkdir()
    current = save_checkpoint(tmp_path / "cur" / "res", sym.tojson(), params)
    old = save_checkpoint(tmp_path / "old" / "res", residual_json_08(sym), params)
    _, em_cur = _emit_and_write(current, (2, 3, 16, 16), "caffe", tmp_path / "a", "portable")
    _, em_old = _emit_and_write(old, (2, 3, 16, 16), "caffe", tmp_path / "b", "portable")
    assert (tmp_path / "a.prototxt").read_text() == (tmp_path / "b.prototxt").read_text()
    assert (tmp_path / "a.caffemodel").read_bytes() == (tmp_path / "b.caffemodel").read_bytes()
    x = np.random.default_rng(1).normal(0, 1, (2, 3, 16, 16)).astype(np.float32)
    out = em_old.output_blobs[next(iter(em_old.output_blobs))]
    caffe = open_runtime("pycaffe", tmp_path / "b.prototxt",
                         tmp_path / "b.caffemodel").forward(x, [out])[out]
    for spec in (old, current):  # MXNet itself runs both files
        runner = cm.open_graph_runner(spec, (2, 3, 16, 16))
        ref = runner.run(x)["softmax_output"]
        np.testing.assert_allclose(caffe.reshape(ref.shape), ref, atol=1e-6)
    worst, _ = _compare(old, (2, 3, 16, 16), "caffe", "pycaffe", tmp_path, "portable")
    assert worst < TOLERANCE


@pytest.mark.slow
@pytest.mark.opencv
@pytest.mark.parametrize("name, size", [("mobilenet1.0", 64), ("resnet50_v2", 64),
                                        ("squeezenet1.1", 224)])
def test_gluon_zoo_nets_convert_and_validate(tmp_path, name, size):
    from caffezoo.converters.mxnet.gluon import export_random_gluon

    prefix = export_random_gluon(name, tmp_path / name, size, seed=2)
    for target, backend in (("caffe", "pycaffe"), ("opencv", "opencv")):
        worst, count = _compare(prefix, (2, 3, size, size), target, backend, tmp_path,
                                "portable" if target == "caffe" else "ceil_mode")
        assert count > 50


# -- through the command line --------------------------------------------------------------------


@pytest.mark.opencv
def test_cli_convert_and_validate(every_op, tmp_path, capsys, imagenet_samples):
    import json

    from caffezoo.cli import main

    out = tmp_path / "cli"
    assert main(["convert", "--source", f"mxnet:{every_op}", "-o", str(out),
                 "--input-shape", "1,3,24,24", "--target", "opencv"]) == 0
    text = capsys.readouterr().out
    assert "the net scales its own input: (x - 113.75) / 62.5" in text
    assert "fix_gamma=True" in text and "(current format)" in text
    for backend, inputs in (("pycaffe", ["--random", "3"]),
                            ("opencv", ["--images", str(imagenet_samples), "--limit", "2"])):
        assert main(["validate", "--source", f"mxnet:{every_op}", "--weights",
                     f"{out}.caffemodel", "--backend", backend, "--layers", "--json",
                     *inputs]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["passed"] and report["first_divergence"] is None
        assert report["max_rel"] < 1e-5 and len(report["layers"]) > 35


def test_cli_bad_checkpoints_write_nothing(tmp_path, capsys):
    from caffezoo.cli import main
    from caffezoo.errors import EXIT_BAD_INPUT

    sym = residual_symbol()
    prefix = save_checkpoint(tmp_path / "res", sym.tojson(), random_params(sym, (1, 3, 16, 16)))
    params = Path(f"{prefix}-0000.params")
    data = params.read_bytes()
    params.write_bytes(data[: len(data) // 2])  # truncated
    out = tmp_path / "never"
    assert main(["convert", "--source", f"mxnet:{prefix}", "-o", str(out)]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "res-0000.params: not a valid MXNet NDArray file (truncated" in err[0]
    params.write_bytes(data)
    doc = Path(f"{prefix}-symbol.json").read_text().replace('"Pooling"', '"UpSampling"')
    Path(f"{prefix}-symbol.json").write_text(doc)
    assert main(["convert", "--source", f"mxnet:{prefix}", "-o", str(out)]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "node 'pool0': op 'UpSampling' has no translation" in err[0]
    assert not list(tmp_path.glob("never*"))
