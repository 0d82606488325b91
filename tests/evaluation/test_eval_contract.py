"""`caffezoo eval` reads the input contract beside a net; flags override it visibly; a bare
prototxt keeps the original's defaults; ImageFolder wnid folders map onto the 1000-class synset
order whatever subset is present, and a class count that does not fit the net is an error.

Expectations: the real SqueezeNet's published 61/82 of 100 (FACTS §6) for the real-data tests;
for the tiny net, a second net with its input channels reversed by hand."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from test_eval import CLASSES, CROP, TINY, images, tiny  # noqa: F401 (fixtures)

from caffezoo import cli, netio
from caffezoo.contract import InputContract

pytestmark = pytest.mark.opencv

SQUEEZENET = InputContract(
    channel_order="BGR", mean=(104.0, 117.0, 123.0), std=(1.0, 1.0, 1.0),
    input_size=(227, 227), resize_size=256, output="logits", origin="FACTS §6")
SQUEEZENET_FLAGS = ["--mean", "104,117,123", "--std", "1", "--base-size", "256",
                    "--crop-size", "227"]


def squeezenet_pair(squeezenet_dir: Path, folder: Path, contract: InputContract | None):
    """(prototxt, weights) links in `folder`, with `contract` beside them when given."""
    prototxt, weights = folder / "sq.prototxt", folder / "sq.caffemodel"
    prototxt.symlink_to(squeezenet_dir / "deploy.prototxt")
    weights.symlink_to(squeezenet_dir / "squeezenet_v1.0_dc.caffemodel")
    if contract is not None:
        (folder / "sq.contract.json").write_text(contract.to_json())
    return prototxt, weights


def partial_image_folder(imagenet_samples: Path, root: Path, named_by_wnid: bool = True) -> Path:
    """The 100 shared images (one per tenth class) as an ImageFolder of 100 class folders:
    n01440764/, n01530575/, ... (or class_000/ ... when not `named_by_wnid`)."""
    for i, line in enumerate(sorted((imagenet_samples / "val.txt").read_text().split("\n"))):
        if not line.strip():
            continue
        name = line.rsplit(" ", 1)[0]
        folder = root / (name.split("_", 1)[0] if named_by_wnid else f"class_{i:03d}")
        folder.mkdir(parents=True)
        (folder / name).symlink_to(imagenet_samples / name)
    return root


def _counts(path: Path) -> tuple[int, int]:
    data = json.loads(path.read_text())
    return data["correct"]["top1"], data["correct"]["top5"]


# -- real data ----------------------------------------------------------------------------


@pytest.mark.shared
@pytest.mark.slow
def test_partial_wnid_folder_evaluates_at_the_real_accuracy(squeezenet_dir, imagenet_samples,
                                                            tmp_path, capsys):
    """100 of the 1000 wnid folders: the labels are synset indices (0, 10, 20, ...), not
    0..99, so the real SqueezeNet scores its real 61/82, not 1 %."""
    tree = partial_image_folder(imagenet_samples, tmp_path / "val")
    prototxt, weights = squeezenet_pair(squeezenet_dir, tmp_path, SQUEEZENET)
    out = tmp_path / "r.json"
    assert cli.main(["eval", "--prototxt", str(prototxt), "--weights", str(weights),
                     "--data-dir", str(tree), "--backend", "onnxruntime",
                     "--json", str(out)]) == 0
    assert _counts(out) == (61, 82)
    err = capsys.readouterr().err
    assert "100 ImageNet wnid class folders, labels in the 1000-class synset order" in err

    # the same folders named otherwise: sorted-index labels 0..99 do not fit 1000 outputs
    plain = partial_image_folder(imagenet_samples, tmp_path / "plain", named_by_wnid=False)
    assert cli.main(["eval", "--prototxt", str(prototxt), "--weights", str(weights),
                     "--data-dir", str(plain), "--backend", "onnxruntime"]) == 3
    err = capsys.readouterr().err
    assert f"{plain}: 100 class folders" in err and "do not fit the net's 1000 classes" in err
    assert "--class-map" in err


@pytest.mark.shared
@pytest.mark.slow
def test_the_contract_beside_the_net_is_the_default_and_flags_override_it(
        squeezenet_dir, imagenet_samples, tmp_path, capsys):
    data = ["--val-list", str(imagenet_samples / "val.txt"), "--data-root",
            str(imagenet_samples), "--backend", "onnxruntime", "--limit", "20"]
    (tmp_path / "bare").mkdir()
    (tmp_path / "c").mkdir()
    bare = squeezenet_pair(squeezenet_dir, tmp_path / "bare", None)
    with_contract = squeezenet_pair(squeezenet_dir, tmp_path / "c", SQUEEZENET)

    def run(pair, *flags) -> tuple[dict, str]:
        out = tmp_path / "r.json"
        assert cli.main(["eval", "--prototxt", str(pair[0]), "--weights", str(pair[1]), *data,
                         "--json", str(out), *flags]) == 0
        return json.loads(out.read_text()), capsys.readouterr().err

    # no flags: the contract's values, said; the same counts as the bare net with the flags
    by_contract, err = run(with_contract)
    assert f"input contract: {tmp_path / 'c' / 'sq.contract.json'}" in err
    assert "flags override" not in err
    by_flags, err = run(bare, *SQUEEZENET_FLAGS)
    assert "input contract" not in err
    assert by_contract["correct"] == by_flags["correct"]
    assert by_contract["contract_source"] == str(tmp_path / "c" / "sq.contract.json")
    assert by_contract["contract"]["mean"] == [104.0, 117.0, 123.0]
    assert by_flags["contract_source"] is None
    # a flag that changes the contract: one line saying what, recorded in the results
    changed, err = run(with_contract, "--mean", "0,0,0", "--base-size", "256")
    (line,) = [x for x in err.splitlines() if x.startswith("flags override the contract: ")]
    assert line == "flags override the contract: mean: 104,117,123 -> 0,0,0 (given)"
    assert changed["contract_overrides"] == ["mean: 104,117,123 -> 0,0,0 (given)"]
    assert changed["contract"]["mean"] == [0, 0, 0]


# -- the tiny net ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_rgb(tiny, tmp_path_factory):  # noqa: F811
    """The tiny net with its input channels reversed: fed RGB, it computes what the tiny net
    computes fed BGR."""
    _, _, w, b = tiny
    d = tmp_path_factory.mktemp("tiny_rgb")
    net = netio.parse_prototxt(TINY)
    netio.write_prototxt(net, d / "tiny.prototxt")
    reversed_w = np.ascontiguousarray(w[:, ::-1])
    netio.write_caffemodel(netio.attach_weights(net, {"fc": [reversed_w, b]}),
                           d / "tiny.caffemodel")
    return d / "tiny.prototxt", d / "tiny.caffemodel"


def _predictions(path: Path) -> list[list[str]]:
    return [line.split(",")[:3 + 5] for line in path.read_text().splitlines()[1:]]


def _tiny_eval(pair, images, out: Path, *flags) -> int:  # noqa: F811
    return cli.main(["eval", "--prototxt", str(pair[0]), "--weights", str(pair[1]),
                     "--val-list", str(images / "val.txt"), "--data-root", str(images),
                     "--mean", "100,110,120", "--std", "50,60,70", "--base-size", "10",
                     "--crop-size", str(CROP), "--backend", "opencv", "--top-k", "1,5",
                     "--predictions", str(out), *flags])


def test_channel_order_rgb_feeds_the_planes_reversed(tiny, tiny_rgb, images, tmp_path):  # noqa: F811
    bgr, rgb, wrong = tmp_path / "bgr.csv", tmp_path / "rgb.csv", tmp_path / "wrong.csv"
    assert _tiny_eval(tiny[:2], images, bgr) == 0
    assert _tiny_eval(tiny_rgb, images, rgb, "--channel-order", "rgb") == 0
    assert _tiny_eval(tiny_rgb, images, wrong) == 0  # BGR into an RGB net
    assert _predictions(rgb) == _predictions(bgr)
    assert _predictions(wrong) != _predictions(bgr)


def test_a_contract_on_a_tiny_net_and_the_pil_pipeline(tiny, images, tmp_path, capsys):  # noqa: F811
    prototxt, weights, _, _ = tiny
    folder = tmp_path / "net"
    folder.mkdir()
    shutil.copy(prototxt, folder / "t.prototxt")
    shutil.copy(weights, folder / "t.caffemodel")
    contract = InputContract(channel_order="RGB", pixel_scale=1.0, mean=(0.5,) * 3,
                             std=(0.25,) * 3, input_size=(CROP, CROP), resize_size=10,
                             interpolation="bicubic", resize="pil", labels=None,
                             num_classes=CLASSES, origin="test")
    (folder / "t.contract.json").write_text(contract.to_json())
    data = ["--val-list", str(images / "val.txt"), "--data-root", str(images), "--backend",
            "opencv"]
    out = tmp_path / "r.json"
    assert cli.main(["eval", "--prototxt", str(folder / "t.prototxt"), "--weights",
                     str(folder / "t.caffemodel"), *data, "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["contract"]["resize"] == "pil" and result["images"]["evaluated"] == 9
    csv_row = (tmp_path / "r.csv").read_text().splitlines()[1].split(",")
    assert csv_row[-7:] == ["1", "opencv", "pil", "RGB", "127.5 127.5 127.5",
                            "63.75 63.75 63.75", str(folder / "t.contract.json")]
    assert csv_row[8] == "bicubic"  # timm's interpolation column
    # the crops are the pil pipeline's: the scores equal the tiny net's numpy version on them
    from test_eval import expected_scores

    from caffezoo.evaluation.preprocess import Pipeline

    _, _, w, b = tiny
    pipeline = Pipeline(contract)
    pred = tmp_path / "p.csv"
    assert cli.main(["eval", "--prototxt", str(folder / "t.prototxt"), "--weights",
                     str(folder / "t.caffemodel"), *data, "--predictions", str(pred)]) == 0
    for line in pred.read_text().splitlines()[1:]:
        fields = line.split(",")
        scores = expected_scores(pipeline.load(str(images / fields[1])), w, b)
        assert int(fields[3]) == int(np.argmax(scores))
        assert float(fields[3 + 5]) == pytest.approx(scores.max(), rel=1e-5)
    # 12 crops are the original's OpenCV scheme: refused by name; --resize opencv allows them
    capsys.readouterr()
    assert cli.main(["eval", "--prototxt", str(folder / "t.prototxt"), "--weights",
                     str(folder / "t.caffemodel"), *data, "--crop-num", "12"]) != 0
    assert "12-crop is the original's OpenCV scheme" in capsys.readouterr().err
    assert cli.main(["eval", "--prototxt", str(folder / "t.prototxt"), "--weights",
                     str(folder / "t.caffemodel"), *data, "--crop-num", "12",
                     "--resize", "opencv"]) == 0
    assert "flags override the contract: resize: pil -> opencv (given)" in \
        capsys.readouterr().err


def test_wnid_folders_that_do_not_fit_the_net_are_refused(tiny, images, tmp_path, capsys):  # noqa: F811
    prototxt, weights, _, _ = tiny
    for wnid in ("n01440764", "n01443537"):
        (tmp_path / "val" / wnid).mkdir(parents=True)
        shutil.copy(images / "img 0.png", tmp_path / "val" / wnid / "a.png")
    assert cli.main(["eval", "--prototxt", str(prototxt), "--weights", str(weights),
                     "--data-dir", str(tmp_path / "val"), "--backend", "opencv"]) == 3
    err = capsys.readouterr().err
    assert "its 2 class folders are ImageNet wnids" in err and f"has {CLASSES} classes" in err


def test_wnid_labels_are_synset_indices():
    from caffezoo import labels
    from caffezoo.evaluation import dataset

    wnids = labels.imagenet_1k_wnids()
    assert len(wnids) == 1000 and list(wnids) == sorted(wnids)
    assert (wnids["n01440764"], wnids["n15075141"]) == (0, 999)
    names = labels.class_names("imagenet-1k", 1001, label_offset=1)
    assert names[:3] == ["background", "tench", "goldfish"] and names[1000] == "toilet tissue"
    assert dataset.ImageFolder("x", [], ["n01440764"], "wnid").describe().startswith("1 ImageNet")


@pytest.mark.shared
def test_the_label_list_is_the_shared_synset_words(imagenet_samples):
    from caffezoo import labels

    shared = [line.split(" ", 1) for line in
              (imagenet_samples / "synset_words.txt").read_text().splitlines()]
    assert [(w, n) for w, n in shared] == list(labels.imagenet_1k())


def test_the_table_uses_a_pil_contract_and_skips_the_originals_multi_crop(tiny, images,  # noqa: F811
                                                                          tmp_path, capsys):
    import csv

    prototxt, weights, _, _ = tiny
    folder = tmp_path / "net"
    folder.mkdir()
    shutil.copy(prototxt, folder / "t.prototxt")
    shutil.copy(weights, folder / "t.caffemodel")
    contract = InputContract(channel_order="RGB", pixel_scale=1.0, mean=(0.5,) * 3,
                             std=(0.25,) * 3, input_size=(CROP, CROP), resize_size=10,
                             interpolation="bicubic", resize="pil", labels=None,
                             num_classes=CLASSES, origin="test")
    (folder / "t.contract.json").write_text(contract.to_json())
    out = tmp_path / "table"
    assert cli.main(["table", f"{folder / 't.prototxt'}:{folder / 't.caffemodel'}",
                     "--val-list", str(images / "val.txt"), "--data-root", str(images),
                     "--backend", "opencv", "--crops", "1,12", "-o", str(out)]) == 0
    assert "t, 8 12-crop: skipped: 12-crop is the original's OpenCV scheme" in \
        capsys.readouterr().err
    (row,) = list(csv.DictReader((out / "table.csv").open()))
    # the one cell is eval's run of the same net with its contract: the same counts
    result = tmp_path / "r.json"
    assert cli.main(["eval", "--prototxt", str(folder / "t.prototxt"), "--weights",
                     str(folder / "t.caffemodel"), "--val-list", str(images / "val.txt"),
                     "--data-root", str(images), "--backend", "opencv",
                     "--json", str(result)]) == 0
    top1 = round(100 * json.loads(result.read_text())["accuracy"]["top1"], 4)
    assert (row["crop_num"], float(row["top1"])) == ("1", top1)
