"""`caffezoo validate`: it passes an exact conversion, catches deliberately broken ones (pooling
left rounding up, the BGR swap skipped) and names the layer where they start to differ; the
three pooling dialects give identical outputs in real Caffe; the helpers it relies on are
checked against independent computations."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from caffezoo import cli, netio, zoo
from caffezoo.converters import common
from caffezoo.converters import pytorch as ct
from caffezoo.converters.registry import open_card_source
from caffezoo.out_of_place import out_of_place
from caffezoo.validation import card as card_side
from caffezoo.validation import inputs as vinputs
from caffezoo.validation.engine import open_caffe

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

SIZE = 64
MODEL = "resnext50_32x4d"


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A seeded random torchvision ResNeXt-50 checkpoint and its read-in form."""
    path = tmp_path_factory.mktemp("validate") / "resnext50.pth"
    ct.save_random_checkpoint(MODEL, "torchvision", path, seed=7)
    return path, ct.load_pytorch(path)


def _convert(source, folder, name: str, dialect: str = "ceil_mode", **options):
    """Convert with ConvertOptions(**options) and write NAME.caffemodel/.prototxt."""
    path, ckpt = source
    card = zoo.get_card(MODEL)
    result = ct.convert_checkpoint(ckpt, card, SIZE, options=common.ConvertOptions(**options))
    out = folder / name
    netio.write_caffemodel(result.net, f"{out}.caffemodel", dialect=dialect)
    netio.write_prototxt(result.net, f"{out}.prototxt", dialect=dialect)
    return out


def _validate(source, out, layers=True, backend="pycaffe"):
    path, _ = source
    card = zoo.get_card(MODEL)
    zoo_net = card.build(SIZE)
    src = open_card_source(f"torch:{path}", card, zoo_net)
    contract = card.contract(SIZE)
    x = vinputs.from_pixels(vinputs.random_pixels(2, SIZE, seed=3), contract, src.input_norm,
                            "random")
    with open_caffe(f"{out}.prototxt", f"{out}.caffemodel", backend, layers) as caffe:
        return card_side.validate(src, card, zoo_net, caffe, x, contract, str(path),
                                  layers=layers)


# -- broken conversions are caught ---------------------------------------------------------------


@pytest.mark.caffe
def test_exact_conversion_passes_layer_by_layer(source, tmp_path):
    report = _validate(source, _convert(source, tmp_path, "ok"))
    assert report.passed and report.first_divergence is None
    assert report.max_rel < 1e-5  # fp32 noise, far inside the 1e-4 tolerance
    # every convolution, batch norm, pooling and the classifier was compared
    compared = {d.layer for d in report.layers}
    net = zoo.get_card(MODEL).build(SIZE)
    assert {la.name for la in net.layer if la.type == "Convolution"} <= compared
    assert {la.name for la in net.layer if la.type == "Scale"} <= compared
    assert {"pool1", "pool_ave", "classifier"} <= compared


@pytest.mark.caffe
def test_pooling_left_in_ceil_mode_is_caught_at_pool1(source, tmp_path):
    report = _validate(source, _convert(source, tmp_path, "ceil", ceil_pooling=True))
    assert not report.passed
    assert report.first_divergence == "pool1"
    first_bad = next(d for d in report.layers if not d.ok)
    # ceil rounding makes a 17x17 map where Torch pools to 16x16
    assert first_bad.caffe_shape[2:] == [17, 17] and first_bad.source_shape[2:] == [16, 16]
    assert all(d.ok for d in report.layers[:report.layers.index(first_bad)])


@pytest.mark.caffe
def test_skipped_bgr_swap_is_caught_at_conv1(source, tmp_path):
    report = _validate(source, _convert(source, tmp_path, "rgb", bgr=False))
    assert not report.passed
    assert report.first_divergence == "conv1"
    assert report.max_rel > 1e-2  # far from rounding noise
    assert report.layers[0].layer == "conv1" and not report.layers[0].ok


@pytest.mark.caffe
def test_cli_exit_status_json_and_layer_report(source, tmp_path, capsys):
    path, _ = source
    bad = _convert(source, tmp_path, "rgb", bgr=False)
    good = _convert(source, tmp_path, "good")
    args = ["validate", "--source", f"torch:{path}", "--model", MODEL, "--random", "2"]
    assert cli.main([*args, "--weights", f"{good}.caffemodel"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].endswith("(torchvision layout): PASS")  # the verdict first
    assert "tolerance: relative error <= 0.0001: pass" in out

    code = cli.main([*args, "--weights", f"{bad}.caffemodel", "--layers", "--json"])
    captured = capsys.readouterr()
    assert code == 1
    report = json.loads(captured.out)
    assert report["passed"] is False and report["first_divergence"] == "conv1"
    assert "first divergence at layer 'conv1'" in captured.err
    assert len(captured.err.strip().splitlines()) == 1


@pytest.mark.caffe
@pytest.mark.opencv
def test_opencv_backend_agrees_too(source, tmp_path):
    report = _validate(source, _convert(source, tmp_path, "cv"), layers=False, backend="opencv")
    assert report.passed, report.lines()


# -- dialects ------------------------------------------------------------------------------------


# pycaffe fed straight from a prototxt and caffemodel, in a fresh interpreter: the suite's own
# process may hold another OpenBLAS (MXNet's wheel bundles a libopenblas.so.0 that then serves
# Caffe's GEMM too, differing from Debian's in the last bits), and the guarded runtime always
# runs Caffe in a fresh process, so the fair comparison is fresh against fresh.
_DIRECT_PYCAFFE = """
import sys, numpy as np
from caffezoo.frameworks import import_caffe
caffe = import_caffe()
prototxt, caffemodel, x_path, out_path = sys.argv[1:]
x = np.load(x_path)
net = caffe.Net(prototxt, caffe.TEST, weights=caffemodel)
net.blobs["data"].reshape(*x.shape)
net.blobs["data"].data[...] = x
np.save(out_path, net.forward()["prob"])
"""


def _direct_pycaffe(out, x: np.ndarray, folder) -> np.ndarray:
    np.save(folder / "x.npy", x)
    subprocess.run([sys.executable, "-c", _DIRECT_PYCAFFE, f"{out}.prototxt", f"{out}.caffemodel",
                    str(folder / "x.npy"), str(folder / "prob.npy")], check=True, timeout=600)
    return np.load(folder / "prob.npy")


@pytest.mark.caffe
def test_three_dialects_give_identical_outputs_in_caffe(source, tmp_path):
    """At 64 px pool1 rounds differently up and down (16 vs 17), so the floor rounding must
    really come from each dialect. ceil_mode and portable files also go straight to pycaffe,
    without caffezoo reading them first; round_mode (BVLC master's field) is not known to this
    Caffe build and is run through caffezoo's reader."""
    from caffezoo.runtimes import open_runtime

    x = zoo.get_card(MODEL).contract(SIZE).apply(vinputs.random_pixels(1, SIZE, seed=9))
    outputs = {}
    for dialect in netio.DIALECTS:
        out = _convert(source, tmp_path, dialect, dialect=dialect)
        text = (tmp_path / f"{dialect}.prototxt").read_text()
        assert {"ceil_mode": "ceil_mode: false", "round_mode": "round_mode: FLOOR",
                "portable": "Silence"}[dialect] in text
        rt = open_runtime("pycaffe", f"{out}.prototxt", f"{out}.caffemodel")
        outputs[dialect] = rt.forward(x, ["classifier"])["classifier"]
        if dialect != "round_mode":
            direct = _direct_pycaffe(out, x, tmp_path)
            via = rt.forward(x, ["prob"])["prob"]
            np.testing.assert_array_equal(direct, via)
    np.testing.assert_array_equal(outputs["ceil_mode"], outputs["portable"])
    np.testing.assert_array_equal(outputs["ceil_mode"], outputs["round_mode"])


# -- helpers against independent computations ----------------------------------------------------


def test_out_of_place_gives_every_layer_its_own_blob():
    net = zoo.get_card(MODEL).build(SIZE)
    oop = out_of_place(net)
    tops = [t for layer in oop.net.layer for t in layer.top]
    assert len(tops) == len(set(tops))
    # conv1 -> conv1_bn -> conv1_scale -> conv1_relu were in place on "conv1"
    assert oop.bottoms["conv1_scale"] == oop.tops["conv1_bn"]
    assert oop.bottoms["pool1"] == oop.tops["conv1_relu"]
    assert oop.consumed("pool1", "pool1") == "pool1"


@pytest.mark.caffe
def test_out_of_place_net_computes_the_same(source, tmp_path):
    from caffezoo.runtimes import open_runtime

    out = _convert(source, tmp_path, "same")
    oop = out_of_place(netio.read_prototxt(f"{out}.prototxt"))
    netio.write_prototxt(oop.net, tmp_path / "oop.prototxt")
    x = np.random.default_rng(0).normal(size=(1, 3, SIZE, SIZE)).astype(np.float32)
    a = open_runtime("pycaffe", f"{out}.prototxt", f"{out}.caffemodel").forward(x, ["prob"])
    b = open_runtime("pycaffe", tmp_path / "oop.prototxt", f"{out}.caffemodel").forward(
        x, ["prob"])
    np.testing.assert_array_equal(a["prob"], b["prob"])


def test_input_helpers(tmp_path):
    a = vinputs.random_pixels(2, 16, seed=1)
    assert a.shape == (2, 3, 16, 16) and a.min() >= 0 and a.max() <= 255
    np.testing.assert_array_equal(a, vinputs.random_pixels(2, 16, seed=1))
    # the resize before the crop: the card's contract (its 256 for 224, else its ratio)
    assert card_side.net_contract(zoo.get_card(MODEL), 224, None).resize_size == 256
    assert card_side.net_contract(zoo.get_card("inception_v4_timm"), 299, None).resize_size \
        == 320
    assert card_side.net_contract(zoo.get_card(MODEL), 64, None).resize_size == 73
    from caffezoo.errors import InputFileError

    with pytest.raises(InputFileError, match="no images"):
        vinputs.image_files(tmp_path)
    with pytest.raises(InputFileError, match="FRAMEWORK:PATH"):
        open_card_source("resnext.pth", None, None)


@pytest.mark.opencv
def test_image_inputs_are_centre_crops(tmp_path):
    import cv2

    from caffezoo.contract import InputContract

    img = np.zeros((40, 60, 3), np.uint8)
    img[:, :, 0] = np.arange(60, dtype=np.uint8)[None, :]  # blue ramps left to right
    img[:, :, 2] = 200
    cv2.imwrite(str(tmp_path / "a.png"), img)
    # raw BGR pixels for the net, RGB pixels minus 100 for the source
    net = InputContract(input_size=(20, 20), resize_size=40)  # 40x60 stays, rows 10..29
    source = InputContract(channel_order="RGB", mean=(100.0, 100.0, 100.0))
    x = vinputs.image_inputs(tmp_path, net, source)
    assert x.what.startswith("1 images from") and x.caffe.shape == (1, 3, 20, 20)
    np.testing.assert_array_equal(x.caffe[0, 0, 0], np.arange(20, 40))  # columns 20..39
    assert (x.caffe[0, 2] == 200).all()
    np.testing.assert_array_equal(x.source[0, ::-1], x.caffe[0] - 100)


@pytest.mark.caffe
def test_images_for_a_pil_contract_are_eval_s(source, tmp_path, monkeypatch, imagenet_samples):
    """A net whose contract says resize: pil (torchvision's way) gets from `validate --images`
    exactly the tensor `caffezoo eval` feeds it (its Pipeline for that contract), and the
    source gets torchvision's own transform of the same file (Resize, CenterCrop, ToTensor,
    Normalize with ImageNet's mean/std): both sides decoded and cropped by PIL."""
    import argparse
    from dataclasses import replace

    from caffezoo.commands import eval as eval_cmd
    from caffezoo.contract import contract_path
    from caffezoo.evaluation.preprocess import Pipeline
    from caffezoo.frameworks import import_torchvision

    path, _ = source
    out = _convert(source, tmp_path, "pil")
    contract = replace(zoo.get_card(MODEL).contract(SIZE), resize="pil")
    netio.atomic_write(contract_path(f"{out}.prototxt"), contract.to_json())
    seen = {}
    real = card_side.validate

    def spy(runner, card, zoo_net, caffe, inputs, *rest, **kw):
        seen["inputs"] = inputs
        return real(runner, card, zoo_net, caffe, inputs, *rest, **kw)

    monkeypatch.setattr(card_side, "validate", spy)
    assert cli.main(["validate", "--source", f"torch:{path}", "--model", MODEL, "--weights",
                     f"{out}.caffemodel", "--images", str(imagenet_samples),
                     "--limit", "2"]) == 0
    x = seen["inputs"]
    files = vinputs.image_files(imagenet_samples, 2)
    assert "(pil, bilinear)" in x.what and len(x.caffe) == 2
    # eval's own resolution of the same net: the contract beside it, its Pipeline
    parser = argparse.ArgumentParser()
    eval_cmd.add_arguments(parser)
    args = parser.parse_args(["--val-list", "v.txt", "--prototxt", f"{out}.prototxt",
                              "--weights", f"{out}.caffemodel"])
    pipeline, resolved = eval_cmd.resolve_pipeline(args, eval_cmd.resolve_model(args))
    assert resolved.contract == contract and pipeline.contract.resize == "pil"
    eval_input = np.concatenate([pipeline.load(str(f)) for f in files])
    np.testing.assert_array_equal(x.caffe, eval_input)
    # the opencv resize validate used before for every net gives other pixels
    opencv = Pipeline(replace(contract, resize="opencv")).load(str(files[0]))
    assert not np.array_equal(x.caffe[:1], opencv)

    from PIL import Image

    t = import_torchvision().transforms
    tv = t.Compose([t.Resize(contract.resize_size), t.CenterCrop(SIZE), t.ToTensor(),
                    t.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    for i, f in enumerate(files):
        with Image.open(f) as im:
            expected = tv(im.convert("RGB")).numpy()
        np.testing.assert_array_equal(x.source[i], expected)
