"""The input contract on the conversion side, as a user meets it: `convert` writes
OUT.contract.json with the net (or nothing when it fails), graph conversions give BGR nets whose
first convolution takes the reversed channels, `validate` feeds each side in its own order,
`info` shows the contract and `export` carries it through ONNX and back (docs/contract.md)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from caffezoo import netio
from caffezoo.cli import main
from caffezoo.contract import InputContract, contract_path
from caffezoo.converters import registry

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.fixture
def test_kind(monkeypatch):
    kind = registry.SourceKind("testgraph", "graph_plugin", "NAME", "testgraph:tiny",
                               "a seeded test graph", card=False, graph=True)
    monkeypatch.setitem(registry.SOURCE_KINDS, "testgraph", kind)


def _contract(out) -> InputContract:
    return InputContract.read(contract_path(f"{out}.prototxt"))


def _conv_weight(out, layer: str) -> np.ndarray:
    return netio.read_weights(f"{out}.caffemodel")[layer][0]


# -- graph conversions: the contract, the channel order ------------------------------------


@pytest.mark.caffe
def test_graph_conversion_is_bgr_and_validates(test_kind, tmp_path, capsys):
    """No flags, a source that states nothing: the contract is the assumed ImageNet one, said
    so; the net is BGR: its first convolution is the RGB one with its input channels reversed
    (compared with the --channel-order rgb conversion of the same graph); validate feeds the
    source RGB and the net BGR and passes, value by value."""
    bgr, rgb = tmp_path / "bgr", tmp_path / "rgb"
    assert main(["convert", "--source", "testgraph:tiny", "-o", str(bgr)]) == 0
    out = capsys.readouterr().out
    assert "input channels: BGR (the default" in out and "the source takes RGB" in out
    assert "ASSUMED (the source states none" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "bgr.caffemodel", "bgr.contract.json", "bgr.prototxt"]
    c = _contract(bgr)
    assert c.channel_order == "BGR" and c.pixel_scale == 1.0
    assert c.mean == IMAGENET_MEAN[::-1] and c.std == IMAGENET_STD[::-1]
    assert c.input_size == (32, 32) and c.resize_size == math.floor(32 * 256 / 224)
    assert (c.num_classes, c.labels, c.output) == (10, None, "logits")  # 10 outputs: no set
    assert c.origin.startswith("assumed")

    assert main(["convert", "--source", "testgraph:tiny", "-o", str(rgb),
                 "--channel-order", "rgb"]) == 0
    assert "input channels: RGB" in capsys.readouterr().out
    assert _contract(rgb).channel_order == "RGB" and _contract(rgb).mean == IMAGENET_MEAN
    w_bgr, w_rgb = _conv_weight(bgr, "conv1"), _conv_weight(rgb, "conv1")
    assert np.array_equal(w_bgr, w_rgb[:, ::-1]) and not np.array_equal(w_bgr, w_rgb)

    for out in (bgr, rgb):
        assert main(["validate", "--source", "testgraph:tiny", "--weights",
                     f"{out}.caffemodel", "--random", "3", "--layers", "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["passed"] and report["max_rel"] < 1e-5
        assert report["net_channels"] == ("BGR" if out == bgr else "")


@pytest.mark.caffe
def test_bare_net_takes_channel_order_from_the_flag(test_kind, tmp_path, capsys):
    """Without its contract a BGR net is validated as today (the identical tensor on both
    sides), which fails: the channel order matters; `--channel-order bgr` says it."""
    out = tmp_path / "net"
    assert main(["convert", "--source", "testgraph:tiny", "-o", str(out)]) == 0
    contract_path(f"{out}.prototxt").unlink()
    capsys.readouterr()
    argv = ["validate", "--source", "testgraph:tiny", "--weights", f"{out}.caffemodel",
            "--random", "3"]
    assert main(argv) == 1
    assert "relative error" in capsys.readouterr().err
    assert main([*argv, "--channel-order", "bgr"]) == 0
    assert "channels reversed (BGR)" in capsys.readouterr().out


@pytest.mark.caffe
def test_validate_says_when_a_flag_overrides_the_contract(test_kind, tmp_path, capsys):
    out = tmp_path / "net"
    assert main(["convert", "--source", "testgraph:tiny", "-o", str(out)]) == 0
    capsys.readouterr()
    code = main(["validate", "--source", "testgraph:tiny", "--weights", f"{out}.caffemodel",
                 "--random", "2", "--channel-order", "rgb"])
    text = capsys.readouterr().out
    assert "channel_order: BGR -> RGB (given)" in text
    assert code == 1  # the net is BGR: told otherwise, the comparison fails


def test_flags_give_the_contract_and_the_summary_says_so(test_kind, tmp_path, capsys):
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"class {i}\n" for i in range(10)))
    out = tmp_path / "net"
    assert main(["convert", "--source", "testgraph:tiny", "-o", str(out), "--mean",
                 "0.5,0.4,0.3", "--std", "0.25", "--pixel-scale", "1", "--crop-pct", "0.9",
                 "--interpolation", "bicubic", "--resize", "pil", "--labels",
                 str(labels)]) == 0
    text = capsys.readouterr().out
    assert "input contract (net.contract.json): given by hand" in text
    assert "mean: 0.485,0.456,0.406 -> 0.5,0.4,0.3 (given)" in text
    c = _contract(out)
    # given in the source's (RGB) order, written in the net's (BGR)
    assert c.channel_order == "BGR" and c.mean == (0.3, 0.4, 0.5) and c.std == (0.25,) * 3
    assert c.resize_size == math.floor(32 / 0.9) == 35  # timm's rule, by hand
    assert (c.interpolation, c.resize) == ("bicubic", "pil")
    assert c.labels == tuple(f"class {i}" for i in range(10))
    assert "--mean" in c.origin and "given by hand" in c.origin


@pytest.mark.parametrize("argv, needle", [
    (["--source", "testgraph:unsupported"], "roi_align"),  # the emitter refuses a node
    (["--source", "testgraph:tiny", "--labels", "imagenet-1k"], "1000"),  # not 10 outputs
    (["--source", "testgraph:tiny", "--resize-size", "8"], "smaller than the 32 px crop"),
])
def test_failed_conversion_writes_no_contract(test_kind, tmp_path, capsys, argv, needle):
    """Nothing is written when a conversion fails, and a contract already there (from an
    earlier conversion) keeps its content."""
    old = tmp_path / "net.contract.json"
    old.write_text("an earlier run's")
    assert main(["convert", *argv, "-o", str(tmp_path / "net")]) != 0
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["net.contract.json"]
    assert old.read_text() == "an earlier run's"
    if needle != "1000":
        assert needle in err


@pytest.mark.torch
def test_card_conversion_writes_the_card_contract(tmp_path, capsys):
    from caffezoo import zoo

    out = tmp_path / "rx"
    argv = ["convert", "--source", f"torch:{tmp_path / 'rx.pth'}", "--random-init", "--model",
            "resnext50_32x4d", "--input-size", "64", "-o", str(out)]
    assert main([*argv, "--mean", "1,2,3"]) == 2  # the card's input is fixed
    assert "--mean: a conversion into --model resnext50_32x4d" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
    assert main([*argv, "--resize", "pil"]) == 0
    text = capsys.readouterr().out
    assert "input contract (rx.contract.json): the zoo card's (resnext50_32x4d)" in text
    assert "resize: opencv -> pil (given)" in text
    card = zoo.get_card("resnext50_32x4d")
    c = _contract(out)
    assert c == InputContract(
        channel_order="BGR", pixel_scale=255.0, mean=card.mean, std=card.std,
        input_size=(64, 64), resize_size=card.base_size(64), interpolation="bilinear",
        resize="pil", labels="imagenet-1k", num_classes=1000, output="probabilities",
        origin="zoo card resnext50_32x4d")
    assert card.base_size(64) == 73  # 64 * 256 / 224 = 73.1


# -- the sources' own contracts ---------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.torch
@pytest.mark.caffe
def test_torchvision_contract_comes_from_its_weights_transforms(tmp_path, capsys):
    """resnet18's IMAGENET1K_V1 transforms: resize 256, crop 224, bilinear, antialiased (PIL),
    ImageNet mean/std; seeded weights; the BGR net validates against the PyTorch model."""
    out = tmp_path / "r18"
    assert main(["convert", "--source", "torchvision:resnet18", "-o", str(out)]) == 0
    capsys.readouterr()
    c = _contract(out)
    assert (c.input_size, c.resize_size, c.interpolation, c.resize) == (
        (224, 224), 256, "bilinear", "pil")
    assert (c.channel_order, c.pixel_scale, c.mean, c.std) == (
        "BGR", 1.0, IMAGENET_MEAN[::-1], IMAGENET_STD[::-1])
    assert (c.labels, c.num_classes, c.output) == ("imagenet-1k", 1000, "logits")
    assert "ResNet18_Weights.IMAGENET1K_V1" in c.origin
    assert main(["validate", "--source", "torchvision:resnet18", "--weights",
                 f"{out}.caffemodel", "--random", "2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["passed"] and report["net_channels"] == "BGR"


@pytest.mark.slow
@pytest.mark.torch
def test_timm_contract_comes_from_its_pretrained_cfg(tmp_path, capsys):
    from caffezoo.frameworks import import_timm

    timm = import_timm()
    out = tmp_path / "r18"
    assert main(["convert", "--source", "timm:resnet18", "-o", str(out)]) == 0
    capsys.readouterr()
    cfg = timm.models.get_pretrained_cfg("resnet18")
    c = _contract(out)
    assert c.mean == tuple(cfg.mean)[::-1] and c.std == tuple(cfg.std)[::-1]
    assert cfg.crop_pct == 0.95 and c.resize_size == 235  # floor(224 / 0.95), timm's rule
    assert (c.interpolation, c.resize, c.channel_order) == (cfg.interpolation, "pil", "BGR")
    assert "timm pretrained_cfg of resnet18" in c.origin


@pytest.fixture
def small_onnx(tmp_path):
    """A small classifier exported to ONNX by torch, as users do: the file says nothing of
    its input."""
    from caffezoo.frameworks import import_torch

    torch = import_torch()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(),
                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                torch.nn.Linear(4, 5)).eval()
    path = tmp_path / "m.onnx"
    torch.onnx.export(model, (torch.zeros(1, 3, 48, 48),), str(path), dynamo=False,
                      input_names=["x"], output_names=["y"])
    return path


@pytest.mark.torch
@pytest.mark.caffe
def test_onnx_without_metadata_takes_the_contract_from_flags(small_onnx, tmp_path, capsys):
    path = small_onnx
    out = tmp_path / "net"
    assert main(["convert", "--source", f"onnx:{path}", "-o", str(out), "--mean", "0.5",
                 "--std", "0.5", "--pixel-scale", "1", "--resize-size", "54",
                 "--interpolation", "bicubic"]) == 0
    text = capsys.readouterr().out
    assert "given by hand" in text and "std: 0.229,0.224,0.225 -> 0.5,0.5,0.5 (given)" in text
    c = _contract(out)
    assert (c.mean, c.std, c.pixel_scale, c.resize_size, c.interpolation) == (
        (0.5,) * 3, (0.5,) * 3, 1.0, 54, "bicubic")
    assert (c.input_size, c.num_classes, c.labels) == ((48, 48), 5, None)
    assert main(["validate", "--source", f"onnx:{path}", "--weights", f"{out}.caffemodel",
                 "--random", "2"]) == 0


@pytest.mark.torch
@pytest.mark.caffe
def test_export_carries_the_contract_and_onnx_gives_it_back(small_onnx, tmp_path, capsys):
    """convert -> export (the contract into the ONNX metadata) -> convert --source onnx: the
    contract comes back, the ONNX input is already BGR so nothing is reversed again, and the
    round-trip net validates against the ONNX file."""
    onnx = pytest.importorskip("onnx")
    first = tmp_path / "first"
    assert main(["convert", "--source", f"onnx:{small_onnx}", "-o", str(first), "--mean",
                 "0.5", "--std", "0.25", "--pixel-scale", "1"]) == 0
    exported = tmp_path / "first.onnx"
    capsys.readouterr()
    assert main(["export", "--to", "onnx", "--prototxt", f"{first}.prototxt", "--weights",
                 f"{first}.caffemodel", "-o", str(exported)]) == 0
    assert "in the ONNX metadata (caffezoo.contract)" in capsys.readouterr().out
    props = {p.key: p.value for p in onnx.load(str(exported)).metadata_props}
    assert InputContract.from_dict(json.loads(props["caffezoo.contract"])) == _contract(first)
    from caffezoo.export.torch import load

    pt = tmp_path / "first.pt"
    assert main(["export", "--to", "torch", "--prototxt", f"{first}.prototxt", "--weights",
                 f"{first}.caffemodel", "-o", str(pt)]) == 0
    assert "in the torch file (caffezoo.contract)" in capsys.readouterr().out
    assert load(pt, device="cpu").contract == _contract(first)

    back = tmp_path / "back"
    assert main(["convert", "--source", f"onnx:{exported}", "-o", str(back)]) == 0
    text = capsys.readouterr().out
    assert "input channels: BGR (the source's order)" in text and "from the source" in text
    assert _contract(back) == _contract(first)
    conv = next(layer.name for layer in netio.read_prototxt(f"{first}.prototxt").layer
                if layer.type == "Convolution")
    assert np.array_equal(_conv_weight(back, conv), _conv_weight(first, conv))
    assert main(["validate", "--source", f"onnx:{exported}", "--weights",
                 f"{back}.caffemodel", "--random", "2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["passed"] and report["net_channels"] == ""


def test_info_shows_the_contract(test_kind, tmp_path, capsys):
    out = tmp_path / "net"
    assert main(["convert", "--source", "testgraph:tiny", "-o", str(out)]) == 0
    capsys.readouterr()
    assert main(["info", f"{out}.prototxt"]) == 0
    text = capsys.readouterr().out
    assert f"contract:   {out}.contract.json" in text
    assert "  input: BGR, pixels 0..1, mean 0.406,0.456,0.485, std 0.225,0.224,0.229" in text
    assert main(["info", f"{out}.prototxt", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["contract"]["channel_order"] == "BGR"
    assert data["contract"]["path"] == f"{out}.contract.json"
    contract_path(f"{out}.prototxt").unlink()
    assert main(["info", f"{out}.prototxt", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["contract"] is None


# -- a conversion that loses the channel order fails here --------------------------------------


@pytest.mark.slow
@pytest.mark.torch
@pytest.mark.caffe
def test_converted_net_on_a_bgr_image_gives_the_sources_logits_on_the_rgb_image(
        tmp_path, capsys, imagenet_samples):
    """A real photo, decoded twice: by OpenCV (BGR, as Caffe's users feed it) for the
    converted net, normalised by its contract; by PIL (RGB) for the PyTorch source, normalised
    by hand with torchvision's ImageNet constants. Same logits. Fed the other order, the
    logits are far off: the test sees a conversion that loses the channel order."""
    import cv2
    from PIL import Image

    from caffezoo.converters.traced import load
    from caffezoo.frameworks import import_torch
    from caffezoo.runtimes import open_runtime

    torch = import_torch()
    out = tmp_path / "r18"
    assert main(["convert", "--source", "torchvision:resnet18", "-o", str(out)]) == 0
    capsys.readouterr()
    contract = _contract(out)
    photo = sorted(imagenet_samples.glob("*.JPEG"))[0]
    bgr = cv2.imread(str(photo))
    rgb = np.asarray(Image.open(photo).convert("RGB"))
    h, w = bgr.shape[:2]
    top, left = (h - 224) // 2, (w - 224) // 2
    bgr = bgr[top:top + 224, left:left + 224].astype(np.float64)
    rgb = rgb[top:top + 224, left:left + 224].astype(np.float64)
    assert np.abs(bgr[..., ::-1] - rgb).max() <= 2  # two JPEG decoders, one image

    net_in = contract.apply(bgr.transpose(2, 0, 1)[None])
    rt = open_runtime("pycaffe", f"{out}.prototxt", f"{out}.caffemodel")
    caffe = rt.forward(net_in, ["logits"])["logits"]
    src_in = ((rgb / 255 - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)[None]
    model = load("torchvision", "resnet18").model
    with torch.no_grad():
        ref = model(torch.from_numpy(src_in.astype(np.float32))).numpy()
        swapped = model(torch.from_numpy(np.ascontiguousarray(
            net_in, dtype=np.float32))).numpy()
    scale = np.abs(ref).max()
    assert np.abs(caffe - ref).max() / scale < 2e-2  # decoder differences only
    assert np.abs(swapped - ref).max() / scale > 10 * np.abs(caffe - ref).max() / scale
