"""Chains of commands as a user runs them, across the seams between the parts: convert ->
info -> validate -> eval -> export -> convert again, evaluation_cls.py, table, resume, and bad
contract files beside a net. Each test goes through the CLI (`caffezoo.cli.main`) on small
nets; the expectations come from the source framework or from a second command."""

from __future__ import annotations

import json

import pytest

from caffezoo.cli import main


@pytest.fixture
def relu6_onnx(tmp_path):
    """A small classifier with ReLU6 (timm's EfficientNet-Lite activation) exported by torch:
    caffezoo writes its clip as Eltwise MAX layers, which `export --to onnx` writes as Max."""
    from caffezoo.frameworks import import_torch

    torch = import_torch()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8),
                                torch.nn.ReLU6(), torch.nn.Conv2d(8, 8, 1), torch.nn.ReLU6(),
                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                torch.nn.Linear(8, 5)).eval()
    with torch.no_grad():  # batch-norm statistics that move the values past 0 and 6
        model[1].running_mean.uniform_(-1, 1)
        model[1].weight.uniform_(2, 8)
    path = tmp_path / "relu6.onnx"
    torch.onnx.export(model, (torch.zeros(1, 3, 32, 32),), str(path), dynamo=False,
                      input_names=["x"], output_names=["y"])
    return path


@pytest.mark.torch
@pytest.mark.caffe
def test_exported_clip_converts_back_and_validates_against_the_first_source(
        relu6_onnx, tmp_path, capsys):
    """convert (RGB source -> BGR net) -> export --to onnx -> convert --source onnx: of that
    export: the ReLU6 written as Max against a constant converts back (it was refused as an
    unsupported Max), the contract comes back, and the round-trip net still matches the first
    torch-exported source with the channels reversed once."""
    first, exported, back = tmp_path / "first", tmp_path / "first.onnx", tmp_path / "back"
    assert main(["convert", "--source", f"onnx:{relu6_onnx}", "-o", str(first)]) == 0
    assert main(["export", "--to", "onnx", "--prototxt", f"{first}.prototxt", "--weights",
                 f"{first}.caffemodel", "-o", str(exported)]) == 0
    capsys.readouterr()
    assert main(["convert", "--source", f"onnx:{exported}", "-o", str(back)]) == 0
    assert "input channels: BGR (the source's order)" in capsys.readouterr().out
    assert (json.loads((tmp_path / "back.contract.json").read_text())
            == json.loads((tmp_path / "first.contract.json").read_text()))
    for source in (exported, relu6_onnx):  # the export (BGR) and the first source (RGB)
        assert main(["validate", "--source", f"onnx:{source}", "--weights",
                     f"{back}.caffemodel", "--random", "2", "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["passed"]
        assert report["max_rel"] < 1e-5
