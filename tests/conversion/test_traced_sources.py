"""torchvision:NAME / timm:NAME sources (caffezoo.converters.traced): a representative subset of
the proof models (docs/conversion.md has the full sweep, benchmarks/graph_sources.py), at 64 px,
from seeded random weights with randomised BatchNorm statistics, traced, converted for a target,
run in real Caffe and OpenCV DNN and compared with the PyTorch model itself."""

from __future__ import annotations

import numpy as np
import pytest

from caffezoo import netio
from caffezoo.errors import ConversionError

pytestmark = [pytest.mark.torch]
pytest.importorskip("onnxruntime")

SHAPE = (1, 3, 64, 64)
TOL = 1e-4  # relative to the largest |logit|, as `caffezoo validate`


def run_caffe(graph, target, runtime, x, tmp_path, dialect):
    from caffezoo.graph.emit import emit
    from caffezoo.runtimes import open_runtime

    emitted = emit(graph, target)
    proto, model = tmp_path / "net.prototxt", tmp_path / "net.caffemodel"
    netio.write_prototxt(emitted.net, proto, dialect=dialect)
    netio.write_caffemodel(emitted.net, model, dialect=dialect)
    rt = open_runtime(runtime, proto, model)
    blob = emitted.output_blobs[graph.outputs[0]]
    return emitted, np.concatenate([rt.forward(x[i:i + 1], [blob])[blob] for i in range(len(x))])


CASES = [
    # what each one covers that the others do not
    pytest.param("torchvision:squeezenet1_1", "caffe", "pycaffe", "portable",
                 marks=pytest.mark.caffe, id="squeezenet-ceil-pooling-caffe"),
    pytest.param("torchvision:shufflenet_v2_x1_0", "opencv", "opencv", "ceil_mode",
                 marks=pytest.mark.opencv, id="shufflenet-slice-shuffle-opencv"),
    pytest.param("torchvision:mobilenet_v3_small", "fork", "pycaffe", "ceil_mode",
                 marks=pytest.mark.caffe, id="mobilenet_v3-hardswish-se-fork"),
    pytest.param("timm:tf_efficientnet_lite0", "caffe", "opencv", "portable",
                 marks=pytest.mark.opencv, id="tf_efficientnet_lite0-same-pads-caffe"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("spec", "target", "runtime", "dialect"), CASES)
def test_traced_model_converts_exactly(spec, target, runtime, dialect, tmp_path):
    from caffezoo.converters.registry import parse_source
    from caffezoo.validation.inputs import random_pixels

    source = parse_source(spec)
    plugin = source.kind.plugin()
    graph = plugin.read_graph(source.spec, SHAPE)
    runner = plugin.open_graph_runner(source.spec, SHAPE)
    assert any("RANDOM weights" in note for note in graph.notes)
    if "squeezenet" not in spec:  # the exporter folds each BatchNorm into the conv before it
        assert any("BatchNorms folded" in note for note in graph.notes)
    x = runner.input_norm.apply(random_pixels(3, SHAPE[-1], seed=2))
    want = runner.run(x)[graph.outputs[0]]
    emitted, got = run_caffe(graph, target, runtime, x, tmp_path, dialect)
    rel = float(np.abs(got.reshape(want.shape) - want).max() / np.abs(want).max())
    assert rel < TOL, f"{spec} ({target} in {runtime}): relative error {rel:.3g}"
    assert (got.argmax(1) == want.argmax(1)).all()
    if spec.startswith("timm:tf_"):  # TF SAME padding: asymmetric pads, resolved exactly
        assert any(n.op == "conv" and n.attrs["pads"][:2] != n.attrs["pads"][2:]
                   for n in graph.nodes)
    if "shufflenet" in spec:
        assert {"slice", "transpose"} <= {n.op for n in graph.nodes}


@pytest.mark.slow
def test_runner_records_traced_values():
    from caffezoo.converters.traced import torchvision

    graph = torchvision.read_graph("squeezenet1_1", SHAPE)
    runner = torchvision.open_graph_runner("squeezenet1_1", SHAPE)
    assert runner.input_shape == SHAPE
    assert runner.input_norm.channel_order == "RGB"
    assert runner.input_norm.normalization_255()[0][0] == pytest.approx(0.485 * 255)
    conv = graph.nodes[0]
    x = np.random.default_rng(0).normal(size=(2, *SHAPE[1:])).astype(np.float32)
    out = runner.run(x, {conv.outputs[0], "not-a-value"})
    assert set(out) == {"logits", conv.outputs[0]}
    assert out[conv.outputs[0]].shape == (2, *graph.shapes[conv.outputs[0]][1:])
    # the same model in a second build: seeded, so the weights are the same
    again = torchvision.read_graph("squeezenet1_1", (1, 3, 96, 96))
    np.testing.assert_array_equal(again.nodes[0].params["weight"], conv.params["weight"])


def test_unknown_model_names_suggestions():
    from caffezoo.converters.traced import timm, torchvision

    with pytest.raises(ConversionError, match=r"torchvision: no model named 'mobilenet_v9'; "
                       r"did you mean mobilenet_v"):
        torchvision.read_graph("mobilenet_v9")
    with pytest.raises(ConversionError, match=r"timm source 'resnet18=': expected "
                       r"timm:NAME or timm:NAME=CHECKPOINT"):
        timm.read_graph("resnet18=")


def test_checkpoint_of_another_model_is_refused(tmp_path):
    import torch

    from caffezoo.converters.traced import torchvision

    path = tmp_path / "wrong.pth"
    torch.save({"conv.weight": torch.zeros(2, 3, 1, 1)}, path)
    with pytest.raises(ConversionError, match=r"wrong.pth: its tensor names \(conv.weight, "
                       r"\.\.\.\) are none of torchvision:squeezenet1_1's \(features.0.weight, "):
        torchvision.read_graph(f"squeezenet1_1={path}", SHAPE)
    # one tensor of the model, in the wrong shape; the others missing
    torch.save({"features.0.weight": torch.zeros(2, 3, 1, 1)}, path)
    with pytest.raises(ConversionError, match=r"wrong.pth: does not load into "
                       r"torchvision:squeezenet1_1: \d+ problem\(s\): missing tensor "
                       r"'features.0.bias'; .*tensor 'features.0.weight' has shape \[2, 3, 1, 1\], "
                       r"torchvision:squeezenet1_1 needs \[64, 3, 3, 3\]"):
        torchvision.read_graph(f"squeezenet1_1={path}", SHAPE)


def test_a_trace_that_cannot_fit_is_refused_before_tracing(tmp_path, capsys, monkeypatch):
    """resnet18 at 1x3x20000x20000 traced for 159 s at 9.8 GB before torch refused: the size of
    every value is estimated from a 128 px forward and refused up front, naming the shape (here
    SqueezeNet 1.1, quicker to build)."""
    from caffezoo import cli

    out = tmp_path / "out"
    argv = ["convert", "--source", "torchvision:squeezenet1_1", "-o", f"{out}/sq"]
    # its first convolution alone: 64 x 9999 x 9999 values, over Caffe's 2^31 per blob;
    # estimated from 64 x 63 x 63 at 128 px, scaled by the area
    assert cli.main([*argv, "--input-shape", "1,3,20000,20000"]) == 3
    err = capsys.readouterr().err
    estimate = 64 * 63 * 63 * (20000 / 128) ** 2
    assert err.count("\n") == 1 and ("torchvision:squeezenet1_1 at 1x3x20000x20000: its "
                                     f"largest value would hold about {estimate:.2g} "
                                     "numbers") in err
    # within Caffe's limit but not the memory available (1 GiB here)
    monkeypatch.setenv("CAFFEZOO_MEMORY_LIMIT", str(2**30))
    assert cli.main([*argv, "--input-shape", "1,3,2000,2000"]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and ("tracing torchvision:squeezenet1_1 at 1x3x2000x2000 "
                                     "(every value of its forward pass") in err
    assert "1.0 GiB available" in err
    assert not out.exists() or not any(out.iterdir())


def test_a_vision_transformer_is_refused_by_name(tmp_path, capsys):
    """timm's ViT asserts its input size, and the random BatchNorm calibration ran it at 128 px:
    an AssertionError, exit 70. It has no BatchNorm to calibrate; its ops have no Caffe layer."""
    from caffezoo import cli

    pytest.importorskip("timm")
    assert cli.main(["convert", "--source", "timm:vit_tiny_patch16_224", "-o",
                     str(tmp_path / "vit")]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "(LayerNormalization) has no Caffe translation" in err
