"""The evaluation loop, the val list, and `caffezoo eval` on a tiny real net.

The net (global average pooling -> InnerProduct -> Softmax, seeded weights) runs in real OpenCV
DNN (and real Caffe where marked); the expected scores are computed here with numpy from the
crops, so the loop, the batching and the averaging are checked against a second implementation.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest

from caffezoo import cli, netio
from caffezoo.errors import CaffezooError, InputFileError
from caffezoo.evaluation import dataset
from caffezoo.evaluation.classify import EvalConfig, evaluate, probe_classes
from caffezoo.evaluation.preprocess import Pipeline, original
from caffezoo.progress import Progress
from caffezoo.runtimes import open_runtime

pytestmark = pytest.mark.opencv

CLASSES = 6
CROP = 8
MEAN = (100.0, 110.0, 120.0)
STD = (50.0, 60.0, 70.0)

TINY = f"""
name: "tiny"
layer {{ name: "data" type: "Input" top: "data"
        input_param {{ shape {{ dim: 1 dim: 3 dim: {CROP} dim: {CROP} }} }} }}
layer {{ name: "gap" type: "Pooling" bottom: "data" top: "gap"
        pooling_param {{ pool: AVE global_pooling: true }} }}
layer {{ name: "fc" type: "InnerProduct" bottom: "gap" top: "fc"
        inner_product_param {{ num_output: {CLASSES} }} }}
layer {{ name: "prob" type: "Softmax" bottom: "fc" top: "prob" }}
"""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(prototxt, caffemodel, W, b) of the tiny net."""
    d = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(7)
    w = rng.normal(0, 1.0, (CLASSES, 3)).astype(np.float32)
    b = rng.normal(0, 0.5, CLASSES).astype(np.float32)
    net = netio.parse_prototxt(TINY)
    netio.write_prototxt(net, d / "tiny.prototxt")
    netio.write_caffemodel(netio.attach_weights(net, {"fc": [w, b]}), d / "tiny.caffemodel")
    return d / "tiny.prototxt", d / "tiny.caffemodel", w, b


def expected_scores(crops: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The tiny net in numpy, averaged over crops: mean of softmax(W @ channel means + b)."""
    x = crops.astype(np.float64).mean(axis=(2, 3))  # (N, 3)
    logits = x @ w.T.astype(np.float64) + b
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).mean(axis=0)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Nine PNG images of different sizes and colours, and a val list with labels 0..5."""
    from caffezoo.frameworks import import_cv2

    cv2 = import_cv2()
    d = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(3)
    lines = []
    for i in range(9):
        h, w = int(rng.integers(10, 20)), int(rng.integers(10, 20))
        img = rng.integers(0, 256, (h, w, 3)).astype(np.uint8)
        img[..., i % 3] //= 3  # vary the colour balance so the classes differ
        cv2.imwrite(str(d / f"img {i}.png"), img)  # a space in the name, on purpose
        lines.append(f"img {i}.png {i % CLASSES}")
    (d / "val.txt").write_text("\n".join(lines) + "\n")
    return d


def _samples(images: Path) -> list[dataset.Sample]:
    return dataset.read_val_list(images / "val.txt", images)


def _config(pre: Pipeline, **kw) -> EvalConfig:
    return EvalConfig(pipeline=pre, output_blob="prob", num_classes=CLASSES, keep_scores=True,
                      **kw)


@pytest.mark.parametrize("crop_num, base", [(1, 10), (10, 11), (12, 10)])
def test_scores_match_numpy_and_do_not_depend_on_batching(tiny, images, crop_num, base):
    prototxt, weights, w, b = tiny
    rt = open_runtime("opencv", prototxt, weights)
    samples = _samples(images)
    pre = original(MEAN, STD, base_size=base, crop_size=CROP, crop_num=crop_num)
    from caffezoo.frameworks import import_cv2

    cv2 = import_cv2()
    want = np.stack([expected_scores(pre(cv2.imread(s.path)), w, b) for s in samples])
    results = [evaluate(rt, samples, _config(pre, batch_size=bs, workers=wk))
               for bs, wk in [(1, 0), (4, 1), (7, 3), (200, 2)]]
    for r in results:
        assert r.evaluated == len(samples) and not r.failures
        assert r.crops == crop_num * len(samples)  # every crop scored, none dropped
        np.testing.assert_allclose(r.scores, want, rtol=1e-5, atol=1e-7)
        assert [p.top for p in r.predictions] == [p.top for p in results[0].predictions]
        assert r.correct == results[0].correct
        np.testing.assert_allclose(r.scores, results[0].scores, rtol=1e-6, atol=1e-9)
    # top-k from the numpy scores
    for p, s in zip(results[0].predictions, want, strict=True):
        assert p.top[0] == int(np.argmax(s))


def test_leftover_crops_are_scored(tiny, images):
    # 10 crops per image in batches of 4: the original ran 10 // 4 = 2 batches per image and
    # dropped crops 9 and 10. Here the batches span images: ceil(90 / 4) = 23 forward passes.
    prototxt, weights, w, b = tiny
    rt = open_runtime("opencv", prototxt, weights)
    samples = _samples(images)
    pre = original(MEAN, STD, 11, CROP, 10)
    r = evaluate(rt, samples, _config(pre, batch_size=4, workers=1))
    assert r.forward_calls == 23 and r.crops == 90
    from caffezoo.frameworks import import_cv2

    crops = pre(import_cv2().imread(samples[0].path))
    np.testing.assert_allclose(r.scores[0], expected_scores(crops, w, b), rtol=1e-5)
    dropped = expected_scores(crops[:8], w, b)
    assert not np.allclose(r.scores[0], dropped, rtol=1e-5)


def test_process_workers_give_the_same_result(tiny, images):
    prototxt, weights, _, _ = tiny
    rt = open_runtime("opencv", prototxt, weights)
    pre = original(MEAN, STD, 10, CROP, 12)
    a = evaluate(rt, _samples(images), _config(pre, batch_size=5, workers=2,
                                               worker_kind="process"))
    b = evaluate(rt, _samples(images), _config(pre, batch_size=16, workers=0))
    np.testing.assert_array_equal(a.scores, b.scores)


@pytest.mark.caffe
def test_pycaffe_and_opencv_agree(tiny, images):
    prototxt, weights, _, _ = tiny
    pre = original(MEAN, STD, 10, CROP, 10)
    results = [evaluate(open_runtime(be, prototxt, weights), _samples(images),
                        _config(pre, batch_size=6, workers=2)) for be in ("pycaffe", "opencv")]
    np.testing.assert_allclose(results[0].scores, results[1].scores, rtol=1e-5, atol=1e-7)
    assert results[0].correct == results[1].correct


def test_probe_classes(tiny):
    prototxt, weights, _, _ = tiny
    assert probe_classes(open_runtime("opencv", prototxt, weights), CROP, "prob") == CLASSES


# -- bad images ------------------------------------------------------------------------------


@pytest.fixture
def broken(images, tmp_path):
    """The good images plus an empty file, a truncated JPEG, a text file and a missing file."""
    from caffezoo.frameworks import import_cv2

    cv2 = import_cv2()
    ok, jpeg = cv2.imencode(".jpg", np.full((40, 40, 3), 90, np.uint8))
    assert ok
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "cut.jpg").write_bytes(jpeg.tobytes()[: len(jpeg) // 2])
    (tmp_path / "text.jpg").write_text("not an image")
    good = (images / "val.txt").read_text().splitlines()
    lines = [f"{images}/{ln}" for ln in good[:3]]
    lines += ["empty.jpg 1", "cut.jpg 2", f"{images}/{good[3]}", "text.jpg 3", "gone.jpg 4"]
    (tmp_path / "val.txt").write_text("\n".join(lines) + "\n")
    return tmp_path


@pytest.mark.parametrize("kind", ["thread", "process"])
def test_bad_images_are_counted_and_listed(tiny, broken, kind):
    prototxt, weights, _, _ = tiny
    rt = open_runtime("opencv", prototxt, weights)
    samples = dataset.read_val_list(broken / "val.txt", broken)
    pre = original(MEAN, STD, 10, CROP, 1)
    r = evaluate(rt, samples, _config(pre, on_error="skip", workers=2, batch_size=3,
                                      worker_kind=kind))
    assert r.evaluated == 4 and r.listed == 8
    reasons = {Path(f.sample.path).name: f.reason for f in r.failures}
    assert set(reasons) == {"empty.jpg", "cut.jpg", "text.jpg", "gone.jpg"}
    assert "empty file" in reasons["empty.jpg"]
    assert "truncated" in reasons["cut.jpg"]
    assert "not a decodable image" in reasons["text.jpg"]
    assert "missing" in reasons["gone.jpg"]
    with pytest.raises(dataset.ImageError, match="empty.jpg: empty file"):
        evaluate(rt, samples, _config(pre, on_error="fail", worker_kind=kind))


def test_cli_skip_lists_failures_and_fail_stops_before_work(tiny, broken, capsys):
    prototxt, weights, _, _ = tiny
    base = ["eval", "--prototxt", str(prototxt), "--weights", str(weights),
            "--val-list", str(broken / "val.txt"), "--data-root", str(broken),
            "--mean", "100,110,120", "--std", "50,60,70", "--base-size", "10",
            "--crop-size", str(CROP)]
    out = broken / "r.json"
    assert cli.main([*base, "--on-error", "skip", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["images"] == {"listed": 8, "evaluated": 4, "failed": 4}
    assert sorted(Path(f["path"]).name for f in res["failures"]) == [
        "cut.jpg", "empty.jpg", "gone.jpg", "text.jpg"]
    assert "4 of 8 images could not be used" in capsys.readouterr().out
    # fail (the default): the missing file is found before any image is decoded (bad input: 3)
    assert cli.main(base) == 3
    err = capsys.readouterr().err
    assert "gone.jpg: missing file" in err and "1 of 8 listed images are missing" in err


# -- the val list and labels -----------------------------------------------------------------


def test_val_list_parsing(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "v.txt").write_text("a b.jpg 3\n\n  /abs/c.jpg 7  \nsub/d.jpg 0\n")
    s = dataset.read_val_list("~/v.txt", "~/root")  # `~` expanded (the original did not)
    assert [(x.name, x.label, x.line) for x in s] == [
        ("a b.jpg", 3, 1), ("/abs/c.jpg", 7, 3), ("sub/d.jpg", 0, 4)]
    assert s[0].path == os.path.join(str(tmp_path), "root", "a b.jpg")
    assert s[1].path == "/abs/c.jpg"
    assert len(dataset.read_val_list(tmp_path / "v.txt", limit=2)) == 2
    (tmp_path / "bad.txt").write_text("x.jpg 1\ny.jpg one\n")
    with pytest.raises(InputFileError, match=r"bad.txt:2: label 'one'"):
        dataset.read_val_list(tmp_path / "bad.txt")
    (tmp_path / "bad2.txt").write_text("justaname\n")
    with pytest.raises(InputFileError, match=r"bad2.txt:1: expected 'path label'"):
        dataset.read_val_list(tmp_path / "bad2.txt")


def test_label_offset_and_class_map(tmp_path):
    samples = [dataset.Sample("a", "a", 0, 1), dataset.Sample("b", "b", 999, 2)]
    shifted = dataset.map_labels(samples, offset=1)
    assert [s.label for s in shifted] == [1, 1000]
    dataset.check_labels(shifted, 1001)
    with pytest.raises(InputFileError, match=r"val:2: label 1000 .* 1000 classes"):
        dataset.check_labels(shifted, 1000, "val")
    (tmp_path / "one.txt").write_text("5\n3\n")
    (tmp_path / "two.txt").write_text("0 5\n999 3\n")
    for name in ("one.txt", "two.txt"):
        cmap = dataset.read_class_map(tmp_path / name)
        if name == "one.txt":
            assert cmap == {0: 5, 1: 3}
        else:
            assert [s.label for s in dataset.map_labels(samples, 0, cmap)] == [5, 3]
    with pytest.raises(InputFileError, match="not in the class map"):
        dataset.map_labels(samples, 0, {0: 1})


def test_out_of_range_label_is_an_error_before_any_image_is_read(tiny, tmp_path, capsys):
    prototxt, weights, _, _ = tiny
    # No image exists: had anything been decoded, the error would be about a missing file.
    (tmp_path / "val.txt").write_text(f"x.png 0\ny.png {CLASSES}\n")
    argv = ["eval", "--prototxt", str(prototxt), "--weights", str(weights),
            "--val-list", str(tmp_path / "val.txt"), "--base-size", "10"]
    assert cli.main(argv) == 3
    err = capsys.readouterr().err
    assert f"val.txt:2: label {CLASSES}" in err and "--label-offset" in err
    # an offset of -1 makes label 6 fit, and label 0 not
    assert cli.main([*argv, "--label-offset", "-1"]) == 3
    assert "val.txt:1: label -1" in capsys.readouterr().err


# -- the command's outputs -------------------------------------------------------------------


def test_cli_outputs(tiny, images, tmp_path, capsys):
    prototxt, weights, w, b = tiny
    res, log, csv = tmp_path / "r.json", tmp_path / "r.log", tmp_path / "p.csv"
    argv = ["eval", "--prototxt", str(prototxt), "--weights", str(weights),
            "--val-list", str(images / "val.txt"), "--data-root", str(images),
            "--mean", "100,110,120", "--std", "50,60,70", "--base-size", "11",
            "--crop-size", str(CROP), "--crop-num", "10", "--top-k", "1,2,5",
            "--batch-size", "7", "--json", str(res), "--log", str(log),
            "--predictions", str(csv), "--verbose"]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    r = json.loads(res.read_text())
    assert r["images"]["evaluated"] == 9 and r["settings"]["crop_num"] == 10
    assert r["settings"]["softmax"] is False  # the output blob is a Softmax already
    text = log.read_text()
    assert text.startswith("Evaluation process ends at: ")
    assert "9 images has been tested, crop_num is: 10, base_size is: 11, crop_size is: 8." in text
    assert "The mean value is: (100.0, 110.0, 120.0)." in text
    # the counts in the log, the JSON and the CSV agree with each other
    rows = csv.read_text().splitlines()
    assert rows[0].startswith("line,path,label,pred1,")
    assert len(rows) == 10
    for k in (1, 2, 5):
        n = r["correct"][f"top{k}"]
        assert f"Accuracy of top_{k} is: {n / 9}; correct num is {n}." in text
        col = rows[0].split(",").index(f"top{k}")
        assert sum(int(row.split(",")[col]) for row in rows[1:]) == n
    assert printed.count("Testing image: ") == 9
    assert "Testing image: 9/9  " in printed


def test_cli_sweep_and_plot(tiny, images, tmp_path):
    prototxt, weights, _, _ = tiny
    res, png = tmp_path / "s.json", tmp_path / "acc.png"
    argv = ["eval", "--prototxt", str(prototxt), "--weights", str(weights),
            "--val-list", str(images / "val.txt"), "--data-root", str(images),
            "--mean", "100,110,120", "--std", "50,60,70", "--base-size", "10",
            "--crop-sizes", "6,8,10", "--json", str(res), "--plot", str(png)]
    assert cli.main(argv) == 0
    sweep = json.loads(res.read_text())["sweep"]
    assert [(s["settings"]["crop_size"], s["settings"]["base_size"]) for s in sweep] == [
        (6, 10), (8, 10), (10, 10)]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_settings_errors(tiny, images):
    prototxt, weights, _, _ = tiny
    common = ["eval", "--val-list", str(images / "val.txt")]
    with pytest.raises(CaffezooError, match="--weights is required"):
        cli.main(["--debug", *common, "--prototxt", str(prototxt)])
    assert cli.main([*common, "--prototxt", str(prototxt), "--weights", str(weights),
                     "--crop-num", "144", "--base-size", "10"]) == 2  # no scale list for 8


def test_progress_only_on_a_terminal():
    quiet = io.StringIO()
    p = Progress(10, stream=quiet)
    p.update(3, "top-1 50.0%")
    p.close()
    assert quiet.getvalue() == ""

    class Tty(io.StringIO):
        def isatty(self):
            return True

    tty = Tty()
    p = Progress(10, stream=tty, min_interval=0)
    p.update(4, "top-1 50.0%")
    p.close()
    line = tty.getvalue().strip().split("\r")[-1]
    assert " 4/10 " in line and "img/s" in line and "top-1 50.0%" in line and "40%" in line


def test_zoo_defaults_and_overrides(tmp_path):
    import argparse

    from caffezoo.commands import eval as eval_cmd

    parser = argparse.ArgumentParser()
    eval_cmd.add_arguments(parser)

    def pre_for(*argv):
        args = parser.parse_args(["--val-list", "v.txt", "--weights", "w", *argv])
        return eval_cmd.resolve_pipeline(args, eval_cmd.resolve_model(args))[0]

    # FACTS §4: resnext mean/std, 256/224; 320 -> base 320; inception 128/128, 320/299
    p = pre_for("--model", "resnext50_32x4d")
    assert (p.base_size, p.crop_size) == (256, 224)
    assert p.contract.std == (57.375, 57.12, 58.395)
    p = pre_for("--model", "resnext50_32x4d", "--crop-size", "320")
    assert (p.base_size, p.crop_size) == (320, 320)
    p = pre_for("--model", "inception_v3")
    assert (p.base_size, p.crop_size, p.contract.mean, p.contract.std) == (
        320, 299, (128.0,) * 3, (128.0,) * 3)
    p = pre_for("--model", "resnet101_v2", "--mean", "1,2,3", "--base-size", "300",
                "--crop-num", "12")
    assert (p.contract.mean, p.contract.std, p.base_size, p.crop_num) == (
        (1.0, 2.0, 3.0), (1.0,) * 3, 300, 12)


def test_evaluation_cls_script_is_caffezoo_eval(tiny, images, tmp_path):
    import subprocess
    import sys

    prototxt, weights, _, _ = tiny
    common = ["--prototxt", str(prototxt), "--weights", str(weights),
              "--val-list", str(images / "val.txt"), "--data-root", str(images),
              "--mean", "100,110,120", "--std", "50,60,70", "--base-size", "10",
              "--crop-size", str(CROP), "--crop-num", "12"]
    repo = Path(__file__).resolve().parents[2]
    a, b = tmp_path / "script.json", tmp_path / "cli.json"
    proc = subprocess.run([sys.executable, str(repo / "evaluation_cls.py"), *common,
                           "--json", str(a)], capture_output=True, text=True, cwd=repo)
    assert proc.returncode == 0, proc.stderr
    assert "Accuracy of top_1 is: " in proc.stdout
    assert cli.main(["eval", *common, "--json", str(b)]) == 0
    ra, rb = json.loads(a.read_text()), json.loads(b.read_text())
    assert ra["correct"] == rb["correct"] and ra["settings"] == rb["settings"]
    bad = subprocess.run([sys.executable, str(repo / "evaluation_cls.py"), *common[:4],
                          "--val-list", str(tmp_path / "nope.txt")],
                         capture_output=True, text=True, cwd=repo)
    assert bad.returncode == 3 and "nope.txt: cannot read the val list" in bad.stderr
    assert "Traceback" not in bad.stderr
