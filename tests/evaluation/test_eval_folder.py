"""`caffezoo eval --data-dir` (an ImageFolder tree) and the results CSV with timm's columns.

The tree holds the same images as test_eval's val list, so both ways of naming the data must
give the same per-image predictions; torchvision's ImageFolder is the second implementation of
the folder convention (sorted class folders, label = index)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from test_eval import CLASSES, CROP, images, tiny  # noqa: F401 (fixtures)

from caffezoo import cli
from caffezoo.evaluation import dataset, report


@pytest.fixture(scope="module")
def tree(images, tmp_path_factory):  # noqa: F811
    """test_eval's nine images as an ImageFolder tree: class folder n0000000<label>, one image
    one level deeper, plus files and folders that are not images or not classes."""
    root = tmp_path_factory.mktemp("tree")
    for line in (images / "val.txt").read_text().splitlines():
        name, label = line.rsplit(" ", 1)
        folder = root / f"n{int(label):08d}"
        if name == "img 4.png":
            folder = folder / "deeper"
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(images / name, folder / name)
    (root / "n00000000" / "notes.txt").write_text("not an image")
    (root / ".cache").mkdir()
    (root / "README").write_text("not a class folder")
    return root


def _common(tiny_files) -> list[str]:
    prototxt, weights, _, _ = tiny_files
    return ["eval", "--prototxt", str(prototxt), "--weights", str(weights),
            "--mean", "100,110,120", "--std", "50,60,70", "--base-size", "10",
            "--crop-size", str(CROP)]


def test_folder_samples_sorted_classes_and_labels(tree, images):  # noqa: F811
    folder = dataset.read_image_folder(tree)
    samples, classes = folder.samples, folder.classes
    assert folder.mapping == "sorted"  # n0000000X are not ImageNet wnids
    assert classes == [f"n{i:08d}" for i in range(CLASSES)]
    listed = {Path(s.name).name: s.label for s in dataset.read_val_list(images / "val.txt")}
    assert {Path(s.path).name: s.label for s in samples} == listed
    assert "n00000004/deeper/img 4.png" in [s.name for s in samples]
    assert [s.line for s in samples] == list(range(1, 10))
    assert len(dataset.read_image_folder(tree, limit=3).samples) == 3


@pytest.mark.slow
@pytest.mark.torch
def test_folder_convention_equals_torchvisions_imagefolder(tree, tmp_path):
    from caffezoo.frameworks import import_torchvision

    tv = import_torchvision()
    # torchvision takes hidden folders for classes too; caffezoo skips them (a stray
    # .ipynb_checkpoints would shift every label), so compare on the tree without one.
    plain = tmp_path / "plain"
    shutil.copytree(tree, plain, ignore=shutil.ignore_patterns(".cache"))
    theirs = tv.datasets.ImageFolder(str(plain))
    folder = dataset.read_image_folder(plain)
    assert folder.classes == theirs.classes
    assert sorted((s.path, s.label) for s in folder.samples) == sorted(theirs.samples)


def test_data_dir_gives_the_val_lists_predictions_and_a_timm_csv(tiny, images, tree,  # noqa: F811
                                                                  tmp_path):
    by_list, by_dir = tmp_path / "list.json", tmp_path / "dir.json"
    assert cli.main([*_common(tiny), "--val-list", str(images / "val.txt"),
                     "--data-root", str(images), "--json", str(by_list)]) == 0
    assert cli.main([*_common(tiny), "--data-dir", str(tree), "--json", str(by_dir)]) == 0
    a, b = json.loads(by_list.read_text()), json.loads(by_dir.read_text())
    assert a["correct"] == b["correct"] and b["images"]["evaluated"] == 9
    assert b["data_dir"] == str(tree)

    # --json r.json also writes r.csv: one row, timm's columns then crop_num, backend and the
    # input contract used, values from the JSON
    rows = list(csv.DictReader((tmp_path / "dir.csv").open()))
    assert list(rows[0]) == list(report.RESULTS_COLUMNS) == [
        "model", "top1", "top1_err", "top5", "top5_err", "param_count", "img_size", "crop_pct",
        "interpolation", "crop_num", "backend", "resize", "channel_order", "mean", "std",
        "contract"]
    assert (rows[0]["resize"], rows[0]["channel_order"], rows[0]["mean"], rows[0]["std"]) == (
        "opencv", "BGR", "100 110 120", "50 60 70")
    assert rows[0]["contract"] == "none (the original's defaults)"
    assert b["contract"]["mean"] == [100, 110, 120] and b["contract"]["resize"] == "opencv"
    assert b["contract_source"] is None and b["contract_overrides"] == []
    assert (rows[0]["crop_num"], rows[0]["backend"]) == ("1", b["settings"]["backend"])
    (row,) = rows
    top1 = round(100 * b["correct"]["top1"] / 9, 4)
    assert (row["model"], float(row["top1"]), float(row["top1_err"])) == (
        "tiny", top1, round(100 - top1, 4))
    assert float(row["top5"]) == round(100 * b["correct"]["top5"] / 9, 4)
    # 6 x 3 weights + 6 biases = 24 parameters = 0.0 M; crop 8 of 10
    assert (row["param_count"], row["img_size"], row["crop_pct"], row["interpolation"]) == (
        "0.0", "8", "0.8", "bilinear")


def test_explicit_csv_and_a_sweep_gives_a_row_per_crop(tiny, tree, tmp_path):  # noqa: F811
    out = tmp_path / "sweep.csv"
    assert cli.main([*_common(tiny)[:-2], "--data-dir", str(tree), "--crop-sizes", "6,8",
                     "--results-csv", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert [(r["img_size"], r["crop_pct"]) for r in rows] == [("6", "0.6"), ("8", "0.8")]
    assert not (tmp_path / "sweep.json").exists()


def test_crop_num_and_backend_tell_rows_apart_and_a_sweep_prints_one_table(
        tiny, tree, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "sweep.csv"
    common = [*_common(tiny)[:-2], "--data-dir", str(tree), "--results-csv", str(out)]
    rows = []
    for crop_num, backend in (("1", "opencv"), ("12", "opencv"), ("1", "onnxruntime")):
        assert cli.main([*common, "--crop-num", crop_num, "--backend", backend]) == 0
        rows += [(r["img_size"], r["crop_num"], r["backend"]) for r in csv.DictReader(out.open())]
    assert rows == [("8", "1", "opencv"), ("8", "12", "opencv"), ("8", "1", "onnxruntime")]
    capsys.readouterr()
    assert cli.main([*common, "--crop-sizes", "6,7,8"]) == 0
    printed = capsys.readouterr().out
    assert "Evaluation process ends" not in printed  # not three summaries: one table
    lines = printed.splitlines()
    header = lines[1].split()
    assert header[:3] == ["crop", "base", "crops"] and "img/s" in header
    table = {int(line.split()[0]): line.split() for line in lines[3:] if line.strip()}
    assert sorted(table) == [6, 7, 8]
    for crop, cells in table.items():  # each row's numbers are that crop's CSV row
        (row,) = [r for r in csv.DictReader(out.open()) if r["img_size"] == str(crop)]
        assert float(cells[3]) == round(float(row["top1"]), 2)
        assert cells[2] == row["crop_num"] == "1" and cells[-1] == row["backend"]


def test_timm_row_figures():
    from caffezoo.commands.eval import results_csv_path

    assert results_csv_path(None, "out/r.json") == "out/r.csv"
    assert results_csv_path(None, "out/r.csv") == "out/r.csv.csv"  # never the JSON itself
    assert results_csv_path("x.csv", "r.json") == "x.csv"
    assert results_csv_path(None, None) is None


def test_bad_data_dirs(tmp_path, tiny, capsys):  # noqa: F811
    common = _common(tiny)
    assert cli.main([*common, "--data-dir", str(tmp_path / "none")]) == 3
    assert "not a folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert cli.main([*common, "--data-dir", str(tmp_path / "empty")]) == 3
    assert "no class folders" in capsys.readouterr().err
    (tmp_path / "empty" / "n01").mkdir()
    (tmp_path / "empty" / "n01" / "a.txt").write_text("x")
    assert cli.main([*common, "--data-dir", str(tmp_path / "empty")]) == 3
    assert "no images in its 1 class folders" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        cli.main([*common, "--data-dir", str(tmp_path), "--val-list", "v.txt"])
    assert exit_.value.code == 2


def test_json_on_stdout_sends_the_summary_to_stderr(tiny, tree, capsys):  # noqa: F811
    assert cli.main([*_common(tiny), "--data-dir", str(tree), "--json", "-b", "4", "-j", "1"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)  # nothing but the JSON on stdout
    assert result["images"]["evaluated"] == 9 and result["settings"]["batch_size"] == 4
    assert result["settings"]["workers"] == 1
    assert "Accuracy of top_1 is: " in captured.err
