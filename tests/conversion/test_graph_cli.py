"""`caffezoo convert` / `validate` for graph sources (no --model), through a test plug-in
(tests/helpers/graph_plugin.py: a seeded graph whose runner is the numpy reference), in real
Caffe and OpenCV; and caffezoo.validation.graph on a net written in place by another tool."""

from __future__ import annotations

import json

import graph_plugin
import numpy as np
import pytest

from caffezoo import netio
from caffezoo.cli import main
from caffezoo.converters import registry
from caffezoo.errors import EXIT_BAD_INPUT, EXIT_USAGE
from caffezoo.graph.emit import emit
from caffezoo.validation import graph as graph_side
from caffezoo.validation.engine import open_caffe
from caffezoo.validation.inputs import Inputs


@pytest.fixture(autouse=True)
def test_kind(monkeypatch):
    kind = registry.SourceKind("testgraph", "graph_plugin", "NAME", "testgraph:tiny",
                               "a seeded test graph", card=False, graph=True)
    monkeypatch.setitem(registry.SOURCE_KINDS, "testgraph", kind)


def _convert(tmp_path, *extra):
    return main(["convert", "--source", "testgraph:tiny", "-o", str(tmp_path / "out"), *extra])


@pytest.mark.caffe
def test_convert_then_validate_by_value(tmp_path, capsys):
    assert _convert(tmp_path) == 0
    out = capsys.readouterr().out
    assert "target caffe" in out and "pooling dialect portable" in out
    assert "conv1: asymmetric pads" in out and "test front end: nothing folded" in out
    text = (tmp_path / "out.prototxt").read_text()
    assert "ceil_mode" not in text and "HardSwish" not in text  # stock Caffe
    assert main(["validate", "--source", "testgraph:tiny", "--weights",
                 str(tmp_path / "out.caffemodel"), "--random", "3", "--layers", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["passed"] and report["first_divergence"] is None
    assert report["outputs"][0]["source"] == "logits" and report["max_rel"] < 1e-5
    compared = {d["source"]: d["blob"] for d in report["layers"]}
    assert compared["conv1:0"] == "conv1_0" and "logits" in compared and len(compared) == 7


@pytest.mark.opencv
def test_validate_images_in_opencv(tmp_path, capsys):
    import cv2

    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        cv2.imwrite(str(images / f"{i}.png"), rng.integers(0, 255, (40, 50, 3), np.uint8))
    assert _convert(tmp_path, "--target", "opencv", "--input-shape", "1,3,28,28") == 0
    assert "HardSwish" in (tmp_path / "out.prototxt").read_text()
    capsys.readouterr()
    assert main(["validate", "--source", "testgraph:tiny", "--weights",
                 str(tmp_path / "out.caffemodel"), "--images", str(images), "--backend",
                 "opencv"]) == 0
    out = capsys.readouterr().out
    assert "3 images from" in out and "PASS" in out and "28x28" in out


@pytest.mark.caffe
def test_validate_names_the_first_divergent_value(tmp_path, capsys):
    assert _convert(tmp_path) == 0
    weights = netio.read_weights(tmp_path / "out.caffemodel")
    weights["bn1"][1] = weights["bn1"][1] + 0.5  # a wrong shift after the batch norm
    net = netio.attach_weights(netio.read_prototxt(tmp_path / "out.prototxt"), weights)
    netio.write_caffemodel(net, tmp_path / "out.caffemodel")
    capsys.readouterr()
    code = main(["validate", "--source", "testgraph:tiny", "--weights",
                 str(tmp_path / "out.caffemodel"), "--layers", "all"])
    captured = capsys.readouterr()
    assert code == 1
    assert "first divergence at layer 'bn1' (source bn1:0, value)" in captured.err
    assert "conv1:0" in captured.out  # compared, and fine


class SpyProgress:
    """Records what a progress bar was told (a real bar draws only on a terminal)."""

    made: list = []

    def __init__(self, total=None, label="", unit="img", **_):
        self.total, self.label, self.unit, self.done, self.notes = total, label, unit, 0, []
        SpyProgress.made.append(self)

    def update(self, n=1, note=None):
        self.done += n

    def note(self, text):
        self.notes.append(text)

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


@pytest.mark.caffe
@pytest.mark.opencv
def test_validate_shows_progress(tmp_path, capsys, monkeypatch):
    """validate ran up to four minutes without a word: a bar over the images read, the inputs
    run on both sides and the value-by-value pass."""
    import cv2

    images = tmp_path / "images"
    images.mkdir()
    for i in range(5):
        cv2.imwrite(str(images / f"{i}.png"), np.full((30, 40, 3), 40 * i, np.uint8))
    assert _convert(tmp_path, "--input-shape", "1,3,28,28") == 0
    monkeypatch.setattr("caffezoo.progress.Progress", SpyProgress)
    SpyProgress.made = []
    assert main(["validate", "--source", "testgraph:tiny", "--weights",
                 str(tmp_path / "out.caffemodel"), "--images", str(images), "-b", "2",
                 "--layers"]) == 0
    bars = {bar.label: bar for bar in SpyProgress.made}
    assert bars["reading images"].total == bars["reading images"].done == 5
    assert bars["validate"].total == bars["validate"].done == 5
    assert bars["validate"].notes == ["layer by layer"]


def test_unsupported_op_writes_nothing(tmp_path, capsys):
    code = main(["convert", "--source", "testgraph:unsupported", "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == EXIT_BAD_INPUT and len(err.splitlines()) == 1
    assert "node 'roi' (RoiAlign): unknown op 'roi_align'" in err
    assert list(tmp_path.iterdir()) == []


def test_card_options_are_refused_for_graph_sources(tmp_path, capsys):
    assert main(["convert", "--source", "testgraph:tiny", "-o", str(tmp_path / "o"),
                 "--input-size", "64"]) == EXIT_USAGE
    assert "--input-size" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.caffe
def test_validate_a_net_written_in_place(tmp_path):
    """A prototxt from another tool (BatchNorm/Scale/ReLU in place): rewritten out of place,
    the blobs named after layers still meet the values named after nodes."""
    g = graph_plugin.read_graph("tiny")
    g.nodes[2].op = "relu"
    emitted = emit(g, "caffe")
    net = emitted.net
    for layer in net.layer:  # rewrite the relu in place, as Caffe's own files do
        if layer.type == "ReLU":
            old = layer.top[0]
            layer.top[0] = layer.bottom[0]
            for later in net.layer:
                for i, b in enumerate(later.bottom):
                    if b == old:
                        later.bottom[i] = layer.bottom[0]
            layer.name = "act1_0"
    netio.write_prototxt(net, tmp_path / "n.prototxt", dialect="portable")
    netio.write_caffemodel(net, tmp_path / "n.caffemodel", dialect="portable")
    runner = graph_plugin.Runner("tiny", None)
    runner.graph = g
    x = np.random.default_rng(0).normal(size=(2, 3, 32, 32)).astype(np.float32)
    inputs = Inputs(x, x, "2 normal tensors", "as given", "as given")
    with open_caffe(tmp_path / "n.prototxt", tmp_path / "n.caffemodel", layers=True) as caffe:
        assert caffe.rewritten  # one blob per layer output
        report = graph_side.validate(runner, caffe, inputs, "testgraph:tiny", layers=True,
                                     graph=g)
    assert report.passed, "\n".join(report.lines())
    assert "act1:0" in {d.source for d in report.layers}


@pytest.mark.caffe
def test_validate_refuses_inputs_and_batches_beyond_memory(tmp_path, capsys, monkeypatch):
    """--random N beyond the memory available is refused before the inputs are made; a batch
    the runtime would refuse is refused before the source runs it (the source's memory is of
    the same order as Caffe's, which is what is estimated)."""
    from caffezoo import memory
    from caffezoo.errors import ResourceError
    from caffezoo.validation.graph import graph_inputs

    assert _convert(tmp_path) == 0
    capsys.readouterr()
    argv = ["validate", "--source", "testgraph:tiny", "--weights",
            str(tmp_path / "out.caffemodel")]
    assert main([*argv, "--random", "100000000000"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "100000000000 inputs of 3x" in err and "of memory" in err
    runner = graph_plugin.open_graph_runner("tiny", None)
    c, h, w = runner.input_shape[1:]
    n = 64
    inputs = 3 * 4 * n * c * h * w  # what input_memory counts
    monkeypatch.setenv("CAFFEZOO_MEMORY_LIMIT", str(inputs + 1))
    assert len(graph_inputs(runner, None, n, 0, None).source) == n  # the inputs fit
    ran = []
    monkeypatch.setattr(type(runner), "run", lambda self, x, record=None: ran.append(x))
    with pytest.raises(ResourceError):  # the net at batch 64 does not
        memory.check(memory.net_bytes(_analysis_at(tmp_path / "out.prototxt", n)), "net")
    assert main([*argv, "--random", str(n), "--batch-size", str(n)]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "of memory" in err and ran == []


def _analysis_at(prototxt, n):
    from caffezoo import analysis

    net = netio.read_prototxt(prototxt)
    (name, shape), = analysis.analyze(net).inputs.items()
    return analysis.analyze(net, {name: (n, *shape[1:])})
