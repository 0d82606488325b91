"""`caffezoo table`: the zoo's accuracy table from one command, on the real SqueezeNet (with an
input contract written beside it) and a zoo card (ResNeXt-50 with seeded random weights): the
counts are eval's (61 and 82 of the 100 shared images at 1-crop, FACTS §6), the sizes the
analysis', the brackets the original README's figures; cells resume from their records. The
same table on Ray is in tests/evaluation/test_eval_ray.py."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from caffezoo import cli, netio, zoo
from caffezoo.contract import InputContract

pytestmark = [pytest.mark.opencv, pytest.mark.slow]

SQUEEZENET_CONTRACT = InputContract(
    channel_order="BGR", mean=(104.0, 117.0, 123.0), std=(1.0, 1.0, 1.0),
    input_size=(227, 227), resize_size=256, output="logits", origin="FACTS §6")


def _data(imagenet_samples: Path) -> list[str]:
    # a named backend: --backend auto would probe every backend on each new net first
    return ["--val-list", str(imagenet_samples / "val.txt"), "--data-root", str(imagenet_samples),
            "--backend", "onnxruntime"]


def squeezenet_with_contract(squeezenet_dir: Path, folder: Path) -> str:
    """MODEL spec of the shared SqueezeNet, with its contract beside a link to the prototxt."""
    prototxt = folder / "squeezenet.prototxt"
    prototxt.symlink_to(squeezenet_dir / "deploy.prototxt")
    (folder / "squeezenet.contract.json").write_text(SQUEEZENET_CONTRACT.to_json())
    return f"{prototxt}:{squeezenet_dir / 'squeezenet_v1.0_dc.caffemodel'}"


@pytest.mark.shared
def test_a_contract_net_gets_evals_counts_and_the_analysis_sizes(squeezenet_dir,
                                                                imagenet_samples, tmp_path):
    spec = squeezenet_with_contract(squeezenet_dir, tmp_path)
    out = tmp_path / "table"
    assert cli.main(["table", spec, *_data(imagenet_samples), "--crops", "1", "-o",
                     str(out)]) == 0
    (row,) = list(csv.DictReader((out / "table.csv").open()))
    assert (row["model"], row["scheme"], row["crop_num"], row["images"]) == (
        "squeezenet_v1.0_dc", "227 1-crop", "1", "100")
    assert (float(row["top1_err"]), float(row["top5_err"])) == (39.0, 18.0)  # 61, 82 of 100
    from caffezoo import analysis

    stats = analysis.analyze(netio.read_prototxt(squeezenet_dir / "deploy.prototxt"))
    assert float(row["param_count"]) == round(stats.total_params / 1e6, 2)
    assert float(row["gmacs"]) == round(stats.total_macs / 1e9, 3)
    md = (out / "table.md").read_text()
    assert "| squeezenet_v1.0_dc |   227 |" in md and "39.00/18.00 |" in md
    data = json.loads((out / "table.json").read_text())
    assert data["columns"] == ["227 1-crop"] and data["images"] == 100
    assert data["models"][0]["cells"][0]["top1"] == 61.0
    assert (out / "table.png").read_bytes()[:4] == b"\x89PNG"
    assert [p.name for p in (out / "records").iterdir()] == ["squeezenet_v1.0_dc_227_1crop.rec"]


def test_a_zoo_card_row_with_the_readmes_figures_and_cells_that_resume(imagenet_samples,
                                                                       tmp_path, capsys):
    from caffezoo.random_weights import random_weights

    card = zoo.get_card("resnext50_32x4d")
    net = card.build()
    weights = tmp_path / "rx50.caffemodel"
    netio.write_caffemodel(netio.attach_weights(net, random_weights(net, seed=1)), weights)
    argv = ["table", f"resnext50_32x4d:{weights}", *_data(imagenet_samples), "--limit", "2",
            "--sizes", "first", "-o", str(tmp_path / "t")]
    assert cli.main(argv) == 0
    md = (tmp_path / "t" / "table.md").read_text()
    stats = card.stats()
    assert (stats.params, round(stats.gmacs, 2)) == (25_028_904, 4.23)  # torchvision's count
    assert "| resnext50_32x4d |   224 |       25.0 |  4.23 |" in md
    # the original README's ResNeXt-50 at 224: 77.63/93.69 at 1-crop, 79.47/94.65 at 12-crop
    assert "(22.37/6.31)" in md and "(20.53/5.35)" in md
    rows = list(csv.DictReader((tmp_path / "t" / "table.csv").open()))
    assert [(r["scheme"], r["crop_num"], r["reference_top1"]) for r in rows] == [
        ("224 1-crop", "1", "77.63"), ("224 12-crop", "12", "79.47")]
    records = sorted((tmp_path / "t" / "records").iterdir())
    before = [r.read_bytes() for r in records]
    # again: refused without --resume; with it, every cell comes from its record
    assert cli.main(argv) == 2
    assert "add --resume" in capsys.readouterr().err
    assert cli.main([*argv, "--resume"]) == 0
    assert [r.read_bytes() for r in records] == before  # nothing evaluated twice
    again = list(csv.DictReader((tmp_path / "t" / "table.csv").open()))
    keep = [k for k in rows[0] if k != "images_per_s"]
    assert [[r[k] for k in keep] for r in again] == [[r[k] for k in keep] for r in rows]


def test_models_the_table_cannot_read_are_refused_before_any_work(squeezenet_dir, tmp_path,
                                                                  capsys):
    weights = squeezenet_dir / "squeezenet_v1.0_dc.caffemodel"
    bare = f"{squeezenet_dir / 'deploy.prototxt'}:{weights}"
    common = ["--val-list", "val.txt", "-o", str(tmp_path / "t")]
    assert cli.main(["table", bare, *common]) == 3
    assert "deploy.contract.json" in capsys.readouterr().err  # where the contract is looked for
    assert cli.main(["table", "no_such_model:" + str(tmp_path), *common]) == 3
    assert cli.main(["table", "resnext50_32x4d", *common]) == 2
    assert "ZOO_NAME:WEIGHTS" in capsys.readouterr().err
    assert not (tmp_path / "t").exists()
