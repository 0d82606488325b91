"""The per-image record of `caffezoo eval --record` and `--resume`, on the tiny real net of
test_eval.py (OpenCV DNN): a resumed run gives the files of an uninterrupted one, a line cut
short is never counted, a changed setting refuses by name, and work units fix the batches.
The same record through Ray, on the real SqueezeNet, is tests/evaluation/test_eval_ray.py."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from test_eval import CLASSES, CROP, MEAN, STD, images, tiny  # noqa: F401 (fixtures)

from caffezoo import cli
from caffezoo.evaluation import dataset
from caffezoo.evaluation.classify import EvalConfig, evaluate
from caffezoo.evaluation.preprocess import original
from caffezoo.evaluation.record import decode_line
from caffezoo.runtimes import open_runtime

pytestmark = pytest.mark.opencv


def _argv(tiny, images, out: Path, *extra: str) -> list[str]:  # noqa: F811
    prototxt, weights, _, _ = tiny
    return ["eval", "--prototxt", str(prototxt), "--weights", str(weights),
            "--val-list", str(images / "val.txt"), "--data-root", str(images),
            "--mean", ",".join(map(str, MEAN)), "--std", ",".join(map(str, STD)),
            "--base-size", "10", "--crop-size", str(CROP), "--backend", "opencv",
            "--unit-size", "2", "--predictions", str(out / "p.csv"),
            "--json", str(out / "r.json"), *extra]


def _lines(record: Path) -> list[dict]:
    return [decode_line(line) for line in record.read_bytes().splitlines()]


def _same_results(a: Path, b: Path) -> None:
    """The files of two runs agree but for the clock and how they were run."""
    assert (a / "p.csv").read_bytes() == (b / "p.csv").read_bytes()
    assert (a / "r.csv").read_bytes() == (b / "r.csv").read_bytes()
    ja, jb = (json.loads((d / "r.json").read_text()) for d in (a, b))
    for key in ("images", "accuracy", "correct", "failures"):
        assert ja[key] == jb[key]


def test_units_fix_the_batches(tiny, images):  # noqa: F811
    prototxt, weights, _, _ = tiny
    rt = open_runtime("opencv", prototxt, weights)
    samples = dataset.read_val_list(images / "val.txt", images)
    pre = original(MEAN, STD, base_size=10, crop_size=CROP)
    config = EvalConfig(pipeline=pre, output_blob="prob", num_classes=CLASSES,
                        batch_size=4, keep_scores=True)
    plain = evaluate(rt, samples, config)
    units = evaluate(rt, samples, config, unit_starts=[0, 2, 4, 6, 8])
    # 9 crops in batches of 4 that span images: 3 forward passes; units of 2 images: every
    # unit is its own batch of 2 (the last of 1), 5 passes, the same scores
    assert (plain.forward_calls, units.forward_calls) == (3, 5)
    assert units.crops == plain.crops == 9
    np.testing.assert_allclose(units.scores, plain.scores, rtol=1e-6)


def test_a_cut_short_line_is_dropped_and_the_resumed_run_is_the_uninterrupted_one(
        tiny, images, tmp_path):  # noqa: F811
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    full.mkdir(), resumed.mkdir()
    assert cli.main(_argv(tiny, images, full, "--record", str(full / "run.rec"))) == 0
    lines = (full / "run.rec").read_bytes().splitlines(keepends=True)
    assert len(lines) == 2 + 9  # header, session, one line per image
    # what a power loss can leave: five images, then half of a sixth line
    record = resumed / "run.rec"
    record.write_bytes(b"".join(lines[:7]) + lines[7][:25])
    assert cli.main(_argv(tiny, images, resumed, "--record", str(record), "--resume")) == 0
    _same_results(full, resumed)
    objs = _lines(record)
    assert all(objs)  # the cut line was truncated away before appending
    images_done = [o["i"] for o in objs if "i" in o]
    assert sorted(images_done) == list(range(9))  # each image once
    assert [o["session"] for o in objs if "session" in o] == [1, 2]
    # the second run redid the unit of images 4-5 (it had only 4) and kept image 4's record
    assert images_done[5:] == [5, 6, 7, 8]
    summary = json.loads((resumed / "r.json").read_text())
    assert summary["record"] == {"path": str(record), "sessions": 2, "resumed_images": 5}


def test_a_run_stopped_by_a_bad_image_resumes_where_it_stopped(tiny, images,  # noqa: F811
                                                               tmp_path):
    data = tmp_path / "images"
    shutil.copytree(images, data)
    good = (data / "img 5.png").read_bytes()
    (data / "img 5.png").write_bytes(good[:40])  # cut short: not decodable
    out, clean = tmp_path / "out", tmp_path / "clean"
    out.mkdir(), clean.mkdir()
    record = out / "run.rec"
    assert cli.main(_argv(tiny, data, out, "--record", str(record))) == 3
    # image 4 shares its unit (and so its batch) with image 5: not scored yet when 5 failed
    assert sorted(o["i"] for o in _lines(record) if "i" in o) == [0, 1, 2, 3]
    (data / "img 5.png").write_bytes(good)  # the user replaces the file
    assert cli.main(_argv(tiny, data, out, "--record", str(record), "--resume")) == 0
    assert cli.main(_argv(tiny, data, clean)) == 0
    _same_results(clean, out)
    second = [o["i"] for o in _lines(record)[2 + 4 + 1:]]
    assert second == [4, 5, 6, 7, 8]  # only what the first run had not recorded


def test_backend_auto_resumes_with_the_records_backend(tiny, images, tmp_path,  # noqa: F811
                                                       capsys):
    record = tmp_path / "run.rec"
    lines = _argv(tiny, images, tmp_path, "--record", str(record))
    assert cli.main(lines) == 0  # made with --backend opencv
    record.write_bytes(b"".join(record.read_bytes().splitlines(keepends=True)[:5]))
    auto = [*lines, "--resume"]
    auto[auto.index("--backend") + 1] = "auto"  # the default; a probe might pick another
    capsys.readouterr()
    assert cli.main(auto) == 0
    err = capsys.readouterr().err
    assert "--backend auto: opencv, the record's" in err
    assert json.loads((tmp_path / "r.json").read_text())["settings"]["backend"] == "opencv"


def test_resume_refuses_a_changed_setting_by_name(tiny, images, tmp_path, capsys):  # noqa: F811
    record = tmp_path / "run.rec"
    assert cli.main(_argv(tiny, images, tmp_path, "--record", str(record))) == 0
    before = record.read_bytes()
    capsys.readouterr()
    argv = _argv(tiny, images, tmp_path, "--record", str(record), "--resume")
    assert cli.main([*argv, "--crop-num", "12", "-b", "4"]) == 3
    err = capsys.readouterr().err
    assert "cannot resume" in err and "preprocessing: crop_num 1 in the record, 12 now" in err
    assert "batch size (16 in the record, 4 now)" in err and "model weights" not in err
    assert cli.main([*argv, "--limit", "3"]) == 3
    assert "val list" in capsys.readouterr().err
    assert record.read_bytes() == before


def test_a_record_is_never_replaced_or_mixed_up(tiny, images, tmp_path, capsys):  # noqa: F811
    record = tmp_path / "run.rec"
    assert cli.main(_argv(tiny, images, tmp_path, "--record", str(record))) == 0
    before = record.read_bytes()
    # there already: --resume or remove it (usage, 2)
    assert cli.main(_argv(tiny, images, tmp_path, "--record", str(record))) == 2
    assert "add --resume" in capsys.readouterr().err
    # a line damaged inside the file: refused, not repaired
    lines = before.splitlines(keepends=True)
    damaged = tmp_path / "damaged.rec"
    damaged.write_bytes(b"".join(lines[:4]) + lines[4].replace(b'"t"', b'"T"') + lines[5])
    argv = _argv(tiny, images, tmp_path, "--resume", "--record")
    assert cli.main([*argv, str(damaged)]) == 3
    assert "damaged.rec:5: damaged line inside the record" in capsys.readouterr().err
    # a file that is not a record (a results CSV given by mistake) is left as it was
    other = tmp_path / "r.csv"
    assert cli.main([*argv, str(other)]) == 2  # also the --json's CSV: the same path
    assert "--record and an output file are the same path" in capsys.readouterr().err
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    assert cli.main([*argv, str(notes)]) == 3
    assert "not a caffezoo evaluation record" in capsys.readouterr().err
    assert notes.read_text() == "my notes\n" and record.read_bytes() == before
    assert cli.main(_argv(tiny, images, tmp_path, "--resume")) == 2  # no --record


def test_the_ray_executor_without_ray_exits_4_with_the_install_hint(tiny, images,  # noqa: F811
                                                                    tmp_path, monkeypatch,
                                                                    capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # what an install without the extra has
    assert cli.main(_argv(tiny, images, tmp_path, "--executor", "ray")) == 4
    err = capsys.readouterr().err
    assert "pip install caffezoo[ray]" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r.json").exists()
    assert cli.main(_argv(tiny, images, tmp_path, "--ray-workers", "2")) == 2
    assert "--ray-workers goes with --executor ray" in capsys.readouterr().err


def test_a_ray_address_nothing_answers_at_is_refused_before_any_work(tiny, images,  # noqa: F811
                                                                     tmp_path, capsys):
    import socket

    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    argv = _argv(tiny, images, tmp_path, "--executor", "ray", "--ray-address")
    assert cli.main([*argv, f"127.0.0.1:{port}"]) == 2
    assert f"nothing answers at --ray-address 127.0.0.1:{port}" in capsys.readouterr().err
    assert cli.main([*argv, "my-cluster"]) == 2
    assert "expected auto, HOST:PORT or ray://HOST:PORT" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()
