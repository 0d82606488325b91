"""`--source-channel-order`: a graph source whose file does not say which order it takes its
input channels in (an ONNX file without caffezoo metadata, e.g. a Caffe or OpenCV model
exported by another tool) converts and validates with its true order (docs/contract.md).

The source here is a small classifier exported by torch.onnx.export that takes BGR by
construction: an RGB model with its first convolution's input channels reversed, so that fed a
BGR image it computes what the RGB model computes on the RGB image."""

from __future__ import annotations

import json

import numpy as np
import pytest

from caffezoo import netio
from caffezoo.cli import main
from caffezoo.contract import InputContract, contract_path

pytestmark = [pytest.mark.torch, pytest.mark.caffe,
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]  # torch's ONNX exporter

SIZE, RESIZE = 64, 73
# a Caffe-style contract for the BGR source, in its (BGR) order, on 0..255 pixels
BGR_MEAN = (104.0, 117.0, 123.0)
CONTRACT_FLAGS = ["--mean", ",".join(map(str, BGR_MEAN)), "--std", "58", "--pixel-scale", "255",
                  "--resize", "opencv", "--interpolation", "bilinear", "--resize-size",
                  str(RESIZE)]


@pytest.fixture
def bgr_onnx(tmp_path):
    """(the ONNX file, its first convolution's weight): 1000 classes, no metadata."""
    from caffezoo.frameworks import import_torch

    torch = import_torch()
    torch.manual_seed(0)
    nn = torch.nn
    model = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
                          nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 1000)).eval()
    with torch.no_grad():
        rgb_weight = model[0].weight.clone()
        model[0].weight.copy_(rgb_weight.flip(1))  # channel 0 now reads blue
    path = tmp_path / "bgr.onnx"
    torch.onnx.export(model, (torch.zeros(1, 3, SIZE, SIZE),), str(path), dynamo=False,
                      input_names=["x"], output_names=["logits"])
    return path, model[0].weight.detach().numpy().copy()


def _contract(out) -> InputContract:
    return InputContract.read(contract_path(f"{out}.prototxt"))


def _first_conv(out) -> np.ndarray:
    net = netio.read_prototxt(f"{out}.prototxt")
    conv = next(layer.name for layer in net.layer if layer.type == "Convolution")
    return netio.read_weights(f"{out}.caffemodel")[conv][0]


def _validate(onnx, out, capsys, *flags) -> tuple[int, dict]:
    capsys.readouterr()
    code = main(["validate", "--source", f"onnx:{onnx}", "--weights", f"{out}.caffemodel",
                 "--random", "3", "--layers", "--json", *flags])
    return code, json.loads(capsys.readouterr().out)


def test_bgr_source_converts_without_reversal_and_validates(bgr_onnx, tmp_path, capsys):
    """The default net is BGR: nothing to reverse, the first convolution is the file's. The
    contract says BGR with the mean given in the source's order. validate feeds the source
    BGR and passes; told nothing, it feeds RGB and fails (the flag matters)."""
    onnx, weight = bgr_onnx
    out = tmp_path / "net"
    assert main(["convert", "--source", f"onnx:{onnx}", "-o", str(out),
                 "--source-channel-order", "bgr", *CONTRACT_FLAGS]) == 0
    text = capsys.readouterr().out
    assert "input channels: BGR (the source's order, --source-channel-order bgr)" in text
    assert "source channel order: RGB -> BGR (given)" in text
    assert "reversed" not in text
    c = _contract(out)
    assert (c.channel_order, c.mean, c.std, c.pixel_scale) == ("BGR", BGR_MEAN, (58.0,) * 3,
                                                               255.0)
    assert (c.resize, c.resize_size, c.input_size) == ("opencv", RESIZE, (SIZE, SIZE))
    assert "--source-channel-order" in c.origin and "given by hand" in c.origin
    assert np.array_equal(_first_conv(out), weight)

    code, report = _validate(onnx, out, capsys, "--source-channel-order", "bgr")
    assert code == 0 and report["passed"] and report["max_rel"] < 1e-5
    assert report["net_channels"] == ""  # both sides fed the identical BGR tensor
    code, report = _validate(onnx, out, capsys)
    assert code == 1 and not report["passed"]
    assert main(["validate", "--source", f"onnx:{onnx}", "--weights", f"{out}.caffemodel",
                 "--random", "2"]) == 1
    assert "needs --source-channel-order bgr, as given to convert" in capsys.readouterr().out


def test_bgr_source_to_an_rgb_net_reverses(bgr_onnx, tmp_path, capsys):
    onnx, weight = bgr_onnx
    out = tmp_path / "net"
    assert main(["convert", "--source", f"onnx:{onnx}", "-o", str(out),
                 "--source-channel-order", "bgr", "--channel-order", "rgb",
                 *CONTRACT_FLAGS]) == 0
    text = capsys.readouterr().out
    assert "input channels: RGB (--channel-order): the source takes BGR" in text
    c = _contract(out)
    assert c.channel_order == "RGB" and c.mean == BGR_MEAN[::-1]
    assert np.array_equal(_first_conv(out), weight[:, ::-1])
    assert not np.array_equal(weight, weight[:, ::-1])
    code, report = _validate(onnx, out, capsys, "--source-channel-order", "bgr")
    assert code == 0 and report["passed"] and report["max_rel"] < 1e-5
    assert report["net_channels"] == "RGB"


def test_without_contract_flags_the_assumed_normalisation_keeps_its_colours(
        bgr_onnx, tmp_path, capsys):
    """Only the order given: the assumed ImageNet mean/std are per colour (red's 0.485 stays
    red's), so in the BGR source's order they read blue first."""
    onnx, _ = bgr_onnx
    out = tmp_path / "net"
    assert main(["convert", "--source", f"onnx:{onnx}", "-o", str(out),
                 "--source-channel-order", "BGR"]) == 0
    assert "given by hand" in capsys.readouterr().out
    c = _contract(out)
    assert c.channel_order == "BGR" and c.mean == (0.406, 0.456, 0.485)
    assert c.std == (0.225, 0.224, 0.229)


def test_a_flag_contradicting_the_files_metadata_is_refused(bgr_onnx, tmp_path, capsys):
    """A caffezoo export records the net's order in the ONNX metadata: a flag that agrees is
    taken; one that contradicts it is refused naming the file, for convert and validate."""
    onnx, _ = bgr_onnx
    first, back = tmp_path / "first", tmp_path / "back"
    assert main(["convert", "--source", f"onnx:{onnx}", "-o", str(first),
                 "--source-channel-order", "bgr", *CONTRACT_FLAGS]) == 0
    exported = tmp_path / "exported.onnx"
    assert main(["export", "--to", "onnx", "--prototxt", f"{first}.prototxt", "--weights",
                 f"{first}.caffemodel", "-o", str(exported)]) == 0
    capsys.readouterr()
    argv = ["convert", "--source", f"onnx:{exported}", "-o", str(back)]
    assert main([*argv, "--source-channel-order", "rgb"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"caffezoo convert: error: --source-channel-order rgb: {exported} (metadata "
                   "caffezoo.contract) states BGR; the file's record stands (drop the flag)")
    assert not (tmp_path / "back.prototxt").exists()
    assert main([*argv, "--source-channel-order", "bgr"]) == 0
    assert _contract(back) == _contract(first)
    assert main(["validate", "--source", f"onnx:{exported}", "--weights",
                 f"{back}.caffemodel", "--random", "2", "--source-channel-order", "rgb"]) == 2
    assert "states BGR" in capsys.readouterr().err


def test_a_bad_value_is_a_usage_error_in_one_line(bgr_onnx, tmp_path, capsys):
    onnx, _ = bgr_onnx
    for command in (["convert", "-o", str(tmp_path / "net")],
                    ["validate", "--weights", str(tmp_path / "net.caffemodel")]):
        assert main([command[0], "--source", f"onnx:{onnx}", *command[1:],
                     "--source-channel-order", "bgra"]) == 2
        err = capsys.readouterr().err
        assert err == (f"caffezoo {command[0]}: error: --source-channel-order 'bgra': "
                       "expected bgr or rgb\n")
    assert list(tmp_path.glob("net.*")) == []


def test_a_card_conversion_refuses_it_by_name(tmp_path, capsys):
    assert main(["convert", "--source", "torch:x.pth", "--model", "resnext50_32x4d", "-o",
                 str(tmp_path / "x"), "--source-channel-order", "bgr"]) == 2
    assert "--source-channel-order: a conversion into --model resnext50_32x4d" in \
        capsys.readouterr().err


@pytest.mark.slow
def test_a_library_convention_is_overridden_and_said(tmp_path, capsys):
    """torchvision states RGB by convention; a checkpoint trained on BGR images is stated so
    by the flag, like --mean overrides a library's mean: said in the summary, nothing
    reversed, the ImageNet mean/std kept per colour; validate with the flag passes."""
    out = tmp_path / "r18"
    spec = "torchvision:resnet18"
    assert main(["convert", "--source", spec, "-o", str(out), "--input-shape", "1,3,64,64",
                 "--source-channel-order", "bgr"]) == 0
    text = capsys.readouterr().out
    assert "source channel order: RGB -> BGR (given); mean/std kept per colour" in text
    assert "from the source, --source-channel-order given by hand" in text
    assert "reversed" not in text
    c = _contract(out)
    assert c.channel_order == "BGR" and c.mean == (0.406, 0.456, 0.485)
    assert main(["validate", "--source", spec, "--weights", f"{out}.caffemodel", "--random",
                 "2", "--source-channel-order", "bgr", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["passed"] and report["net_channels"] == ""


# -- the seam: convert -> eval on real photos == the ONNX file in onnxruntime ---------------


@pytest.mark.opencv
@pytest.mark.shared
@pytest.mark.parametrize("net_order", ["bgr", "rgb"])
def test_eval_gives_the_onnx_files_own_predictions(bgr_onnx, tmp_path, capsys,
                                                    imagenet_samples, net_order):
    """A BGR ONNX file without metadata, converted with its order and contract given (into a
    BGR net, and reversed into an RGB one): `eval` with no preprocessing flags gives, image for
    image, the top-5 of onnxruntime running the file on the same photos prepared independently
    here (cv2 BGR decode, cv2 bilinear resize of the short side, centre crop, the contract's
    mean/std). The file fed RGB would predict otherwise: the test sees a conversion that gets
    the order wrong."""
    import csv

    import cv2
    import onnxruntime as ort

    from caffezoo.runtimes import open_runtime

    onnx, _ = bgr_onnx
    out = tmp_path / "net"
    assert main(["convert", "--source", f"onnx:{onnx}", "-o", str(out),
                 "--source-channel-order", "bgr", "--channel-order", net_order,
                 *CONTRACT_FLAGS]) == 0
    lines = (imagenet_samples / "val.txt").read_text().splitlines()[:12]
    val = tmp_path / "val.txt"
    val.write_text("\n".join(lines) + "\n")
    pred = tmp_path / "pred.csv"
    assert main(["eval", "--prototxt", f"{out}.prototxt", "--weights", f"{out}.caffemodel",
                 "--val-list", str(val), "--data-root", str(imagenet_samples),
                 "--backend", "pycaffe", "--predictions", str(pred)]) == 0
    rows = sorted(csv.DictReader(pred.open()), key=lambda r: int(r["line"]))
    ours = np.array([[int(r[f"pred{k}"]) for k in range(1, 6)] for r in rows])

    batch = []
    for line in lines:
        image = cv2.imread(str(imagenet_samples / line.rsplit(" ", 1)[0]))  # BGR
        h, w = image.shape[:2]
        short = min(h, w)
        image = cv2.resize(image, (w * RESIZE // short, h * RESIZE // short),
                           interpolation=cv2.INTER_LINEAR)
        top, left = (image.shape[0] - SIZE) // 2, (image.shape[1] - SIZE) // 2
        crop = image[top:top + SIZE, left:left + SIZE].astype(np.float64)
        batch.append(((crop - BGR_MEAN) / 58.0).transpose(2, 0, 1))
    x = np.stack(batch).astype(np.float32)
    session = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
    theirs = np.concatenate([session.run(None, {"x": x[i:i + 1]})[0] for i in range(len(x))])
    assert np.array_equal(ours, np.argsort(-theirs, axis=1)[:, :5])
    swapped = np.concatenate([session.run(None, {"x": np.ascontiguousarray(x[i:i + 1, ::-1])})[0]
                              for i in range(len(x))])
    assert (swapped.argmax(1) != theirs.argmax(1)).any()

    # the logits themselves, the converted net on the very same tensor (in its own order)
    rt = open_runtime("pycaffe", f"{out}.prototxt", f"{out}.caffemodel")
    net_in = x if net_order == "bgr" else np.ascontiguousarray(x[:, ::-1])
    logits = rt.forward(net_in, ["logits"])["logits"]
    rel = np.abs(logits - theirs).max() / np.abs(theirs).max()
    print(f"{net_order} net: max relative error of the logits, pycaffe vs onnxruntime: "
          f"{rel:.2g}")
    assert rel < 1e-5
