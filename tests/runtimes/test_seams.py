"""Chains of commands as a user runs them, across the seams between the parts: convert ->
info -> validate -> eval -> export -> convert again, evaluation_cls.py, table, resume, and bad
contract files beside a net. Each test goes through the CLI (`caffezoo.cli.main`) on small
nets; the expectations come from the source framework or from a second command."""

from __future__ import annotations

import json

import pytest

from caffezoo.cli import main


def _relu6_onnx(path, size: int = 32):
    """A small classifier with ReLU6 (timm's EfficientNet-Lite activation) exported by torch
    at size x size: caffezoo writes its clip as Eltwise MAX layers, which `export --to onnx`
    writes as Max."""
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
    torch.onnx.export(model, (torch.zeros(1, 3, size, size),), str(path), dynamo=False,
                      input_names=["x"], output_names=["y"])
    return path


@pytest.fixture
def relu6_onnx(tmp_path):
    return _relu6_onnx(tmp_path / "relu6.onnx")


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


@pytest.mark.torch
@pytest.mark.caffe
@pytest.mark.parametrize("stale", ["input size", "class count"])
def test_a_contract_that_contradicts_its_net_is_refused_by_every_command(
        relu6_onnx, imagenet_samples, tmp_path, capsys, stale):
    """A contract left beside a net that another conversion replaced (another input size), or
    edited to another class count: every command that reads it refuses it in one line naming
    the file, with the bad-input status, instead of feeding the net the wrong crop or labels
    (eval, validate, time, table and export used to take it silently)."""
    net = tmp_path / "net"
    assert main(["convert", "--source", f"onnx:{relu6_onnx}", "-o", str(net)]) == 0
    contract = tmp_path / "net.contract.json"
    if stale == "input size":  # the net replaced by a conversion at 40x40, its contract kept
        other = tmp_path / "other"
        source = _relu6_onnx(tmp_path / "relu6_40.onnx", 40)
        assert main(["convert", "--source", f"onnx:{source}", "-o", str(other)]) == 0
        (tmp_path / "net.prototxt").write_text((tmp_path / "other.prototxt").read_text())
        needle = "input_size 32x32, but"
    else:
        data = json.loads(contract.read_text())
        contract.write_text(json.dumps({**data, "num_classes": 7}))
        needle = "num_classes 7, but"
    proto, weights = f"{net}.prototxt", f"{net}.caffemodel"
    data = ["--val-list", str(imagenet_samples / "val.txt"), "--data-root",
            str(imagenet_samples), "--limit", "1"]
    commands = [
        ["info", proto],
        ["eval", "--prototxt", proto, "--weights", weights, "--backend", "onnxruntime", *data],
        ["validate", "--source", f"onnx:{relu6_onnx}", "--weights", weights, "--random", "1"],
        ["time", "--prototxt", proto, "--weights", weights, "--iterations", "1", "--no-limit",
         "--no-caffe-time", "--backends", "onnxruntime"],
        ["table", f"{proto}:{weights}", "-o", str(tmp_path / "table"), "--crops", "1", *data],
        ["export", "--to", "onnx", "--prototxt", proto, "--weights", weights, "-o",
         str(tmp_path / "x.onnx")],
    ]
    capsys.readouterr()
    for argv in commands:
        assert main(argv) == 3, argv[0]
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and str(contract) in err[0] and needle in err[0], (argv[0], err)
    assert not (tmp_path / "x.onnx").exists() and not (tmp_path / "table").exists()


@pytest.mark.torch
def test_channel_order_on_a_card_validation_is_a_usage_error(tmp_path, capsys):
    """validate --model CARD --channel-order: the card's input is BGR; said as a usage error
    (it crashed with an internal error, UnboundLocalError)."""
    assert main(["validate", "--source", f"torch:{tmp_path / 'r.pth'}", "--model",
                 "resnet18", "--weights", str(tmp_path / "r.caffemodel"),
                 "--channel-order", "rgb"]) == 2
    assert "--channel-order belongs to graph sources" in capsys.readouterr().err


@pytest.mark.torch
@pytest.mark.caffe
def test_resume_holds_the_contract_and_names_the_field_that_changed(
        relu6_onnx, imagenet_samples, tmp_path, capsys):
    """eval --record on a converted net with its contract (PIL resize): the record's
    fingerprint holds the contract, a resume gives the same counts, and a resume after the
    contract changed is refused naming the changed field (it printed both whole contracts)."""
    net = tmp_path / "net"
    assert main(["convert", "--source", f"onnx:{relu6_onnx}", "-o", str(net)]) == 0
    record, val = tmp_path / "run.jsonl", tmp_path / "val.txt"
    lines = (imagenet_samples / "val.txt").read_text().splitlines()[:3]
    val.write_text("".join(f"{line.split()[0]} {i}\n" for i, line in enumerate(lines)))
    argv = ["eval", "--prototxt", f"{net}.prototxt", "--weights", f"{net}.caffemodel",
            "--val-list", str(val), "--data-root", str(imagenet_samples), "--backend",
            "onnxruntime", "--record", str(record)]
    assert main([*argv, "--json", str(tmp_path / "first.json")]) == 0
    header = json.loads(record.read_text().splitlines()[0].split("\t")[0])
    contract = json.loads((tmp_path / "net.contract.json").read_text())
    assert header["fingerprint"]["preprocessing"]["contract"]["resize"] == "pil"
    assert main([*argv, "--resume", "--json", str(tmp_path / "again.json")]) == 0
    first, again = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("first", "again"))
    assert first["accuracy"] == again["accuracy"] and again["record"]["resumed_images"] == 3
    # the resume had nothing left to do: one earlier run wrote the record, this one is the 2nd
    assert again["record"]["sessions"] == 2
    assert "3 images were recorded by 1 earlier run(s)" in capsys.readouterr().out
    (tmp_path / "net.contract.json").write_text(
        json.dumps({**contract, "interpolation": "bicubic"}))
    capsys.readouterr()
    assert main([*argv, "--resume"]) == 3
    err = capsys.readouterr().err
    assert ("preprocessing: contract interpolation bilinear in the record, bicubic now" in err
            and "channel_order" not in err)


@pytest.mark.torch
@pytest.mark.caffe
def test_time_runs_a_prototxt_at_its_own_size_with_the_weights_contract(
        relu6_onnx, tmp_path, capsys):
    """README's session: `generate --input-size 320`, then `time --prototxt THAT --weights
    CONVERTED.caffemodel`: the contract beside the weights is of the 224 net, the prototxt
    given is timed at its own size (it was timed at the contract's); --input-size still wins
    and says so. The prototxt's own contract must fit it (refused otherwise, test above)."""
    net, other = tmp_path / "net", tmp_path / "other"
    assert main(["convert", "--source", f"onnx:{relu6_onnx}", "-o", str(net)]) == 0
    source40 = _relu6_onnx(tmp_path / "relu6_40.onnx", 40)
    assert main(["convert", "--source", f"onnx:{source40}", "-o", str(other)]) == 0
    at40 = tmp_path / "at40.prototxt"  # the same net at 40x40, no contract of its own
    at40.write_text((tmp_path / "other.prototxt").read_text())
    base = ["time", "--prototxt", str(at40), "--weights", f"{net}.caffemodel", "--iterations",
            "1", "--warmup", "0", "--no-caffe-time", "--no-limit", "--backends", "onnxruntime",
            "--json"]
    capsys.readouterr()
    for extra, size, said in (([], 40, []), (["--input-size", "36"], 36,
                                             ["input_size: 32,32 -> 36,36 (given)"])):
        assert main([*base, *extra]) == 0
        captured = capsys.readouterr()
        report = json.loads(captured.out)
        assert report["contract"]["input_size"] == [size, size], extra
        assert report["contract"]["overrides"] == said
        assert f"{tmp_path / 'net.contract.json'}" in captured.err


@pytest.mark.torch
@pytest.mark.caffe
def test_mean_flags_equal_to_the_contract_on_0_255_override_nothing(
        relu6_onnx, imagenet_samples, tmp_path, capsys):
    """--mean/--std are B,G,R on 0..255 pixels; a contract on 0..1 pixels (torchvision's ImageNet
    mean/std, BGR after the conversion) given again that way is no override (it said
    pixel_scale, mean and std were overridden), and a changed mean says only the mean."""
    net = tmp_path / "net"
    assert main(["convert", "--source", f"onnx:{relu6_onnx}", "-o", str(net)]) == 0
    val = tmp_path / "val.txt"
    lines = (imagenet_samples / "val.txt").read_text().splitlines()[:2]
    val.write_text("".join(f"{line.split()[0]} {i}\n" for i, line in enumerate(lines)))
    argv = ["eval", "--prototxt", f"{net}.prototxt", "--weights", f"{net}.caffemodel",
            "--val-list", str(val), "--data-root", str(imagenet_samples), "--backend",
            "onnxruntime", "--json", str(tmp_path / "r.json")]
    bgr_mean = ",".join(f"{v * 255:.6g}" for v in (0.406, 0.456, 0.485))  # 103.53,116.28,...
    bgr_std = ",".join(f"{v * 255:.6g}" for v in (0.225, 0.224, 0.229))
    assert main([*argv, "--mean", bgr_mean, "--std", bgr_std]) == 0
    assert "flags override" not in capsys.readouterr().err
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["contract_overrides"] == [] and report["contract"]["pixel_scale"] == 1.0
    assert main([*argv, "--mean", "100,110,120"]) == 0
    err = capsys.readouterr().err
    said = [line for line in err.splitlines() if line.startswith("flags override")]
    assert said == ["flags override the contract: mean: 103.53,116.28,123.675 -> 100,110,120 "
                    "(given)"]
