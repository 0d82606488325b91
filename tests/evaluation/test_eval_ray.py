"""`caffezoo eval --executor ray` on a real Ray cluster of two nodes (one worker CPU each, started
once for this module by Ray's own `cluster_utils.Cluster`), the real SqueezeNet v1.0 and the 100
shared ImageNet images (../shared/data):

- Ray gives the single-process run's counts (1-crop: 61 and 82 of 100, FACTS §6) and its
  predictions file byte for byte, at 1-crop and at 12-crop;
- a worker killed with SIGKILL mid-run is restarted by Ray and changes nothing;
- a run killed with SIGKILL and resumed (on Ray) writes the files of an uninterrupted run;
- a resume with other weights refuses, naming them.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import IMAGENET_SAMPLES, SQUEEZENET_DIR

from caffezoo import cli

ray = pytest.importorskip("ray")

pytestmark = [pytest.mark.shared, pytest.mark.slow]

MEAN, BASE, CROP = (104.0, 117.0, 123.0), 256, 227
SETTINGS = {1: ("100", "16"), 12: ("20", "4")}  # crop_num -> (--limit, --unit-size)


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        c.add_node(num_cpus=1)
        c.wait_for_nodes()
        yield c.address
    finally:
        c.shutdown()


def _argv(squeezenet_dir, imagenet_samples, out: Path, crop_num: int, *extra: str) -> list[str]:
    limit, unit = SETTINGS[crop_num]
    return ["eval", "--prototxt", str(squeezenet_dir / "deploy.prototxt"),
            "--weights", str(squeezenet_dir / "squeezenet_v1.0_dc.caffemodel"),
            "--val-list", str(imagenet_samples / "val.txt"), "--data-root", str(imagenet_samples),
            "--mean", "104,117,123", "--std", "1", "--base-size", str(BASE),
            "--crop-size", str(CROP), "--crop-num", str(crop_num), "--limit", limit,
            "--unit-size", unit, "--backend", "onnxruntime", "--threads", "1",
            "--predictions", str(out / "p.csv"), "--json", str(out / "r.json"), *extra]


@pytest.fixture(scope="module")
def single_process(tmp_path_factory):
    """crop_num -> the folder of the in-process run's files (made once)."""
    if not (SQUEEZENET_DIR / "deploy.prototxt").exists() or not IMAGENET_SAMPLES.exists():
        pytest.skip(f"shared SqueezeNet and images not found in {SQUEEZENET_DIR.parent}")
    runs = {}
    for crop_num in SETTINGS:
        out = tmp_path_factory.mktemp(f"local{crop_num}")
        assert cli.main(_argv(SQUEEZENET_DIR, IMAGENET_SAMPLES, out, crop_num,
                              "--record", str(out / "run.rec"))) == 0
        runs[crop_num] = out
    return runs


def _summary(out: Path) -> dict:
    return json.loads((out / "r.json").read_text())


@pytest.mark.parametrize("crop_num", [1, 12])
def test_ray_gives_the_single_process_counts_and_files(cluster, single_process, squeezenet_dir,
                                                       imagenet_samples, tmp_path, crop_num):
    argv = _argv(squeezenet_dir, imagenet_samples, tmp_path, crop_num,
                 "--executor", "ray", "--ray-address", cluster)
    assert cli.main(argv) == 0
    local, on_ray = _summary(single_process[crop_num]), _summary(tmp_path)
    if crop_num == 1:
        assert local["correct"] == {"top1": 61, "top5": 82}  # FACTS §6
    assert on_ray["correct"] == local["correct"]
    assert on_ray["images"] == local["images"] == {
        "listed": int(SETTINGS[crop_num][0]), "evaluated": int(SETTINGS[crop_num][0]),
        "failed": 0}
    assert (tmp_path / "p.csv").read_bytes() == (single_process[crop_num] / "p.csv").read_bytes()
    assert (tmp_path / "r.csv").read_bytes() == (single_process[crop_num] / "r.csv").read_bytes()
    workers = on_ray["executor"]["workers"]
    assert on_ray["executor"]["kind"] == "ray" and len(workers) == 2
    assert sum(w["images"] for w in workers) == int(SETTINGS[crop_num][0])


def test_a_worker_killed_mid_run_changes_nothing(cluster, single_process, squeezenet_dir,
                                                imagenet_samples):
    """The executor's own API, so that the test can kill a worker process it knows."""
    from caffezoo.evaluation import dataset, executors, report
    from caffezoo.evaluation.classify import EvalConfig
    from caffezoo.evaluation.preprocess import original
    from caffezoo.evaluation.ray_executor import RayOptions, run_ray
    from caffezoo.evaluation.record import Record

    limit, unit = (int(v) for v in SETTINGS[12])
    samples = dataset.read_val_list(imagenet_samples / "val.txt", imagenet_samples, limit)
    pre = original(MEAN, (1.0, 1.0, 1.0), BASE, CROP, crop_num=12)
    config = EvalConfig(pre, "pool_final", 1000, softmax=True)  # eval's choices for SqueezeNet
    job = executors.EvalJob(squeezenet_dir / "deploy.prototxt",
                            squeezenet_dir / "squeezenet_v1.0_dc.caffemodel", "onnxruntime", 1,
                            config, samples, unit)
    killed = []

    def kill_w0_once(states) -> None:
        # called after a unit is recorded; w0 has then been handed its next unit already
        pid = states["w0"].pid
        if pid is not None and not killed:
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    record = Record.open(None, {}, len(samples))
    session = run_ray(job, record, RayOptions(address=cluster), lambda entries: None,
                      kill_w0_once)
    w0 = next(w for w in session.workers if w.name == "w0")
    assert killed and w0.restarts >= 1 and w0.pid != killed[0]  # it died, Ray restarted it
    assert sorted(record.entries) == list(range(limit))  # every image once
    tally = executors.Tally(job, record)
    predictions = report.predictions_csv(tally.final(record, session))
    assert predictions == (single_process[12] / "p.csv").read_text()


def test_a_run_killed_with_sigkill_resumes_to_the_same_files(cluster, single_process,
                                                            squeezenet_dir, imagenet_samples,
                                                            tmp_path):
    record = tmp_path / "run.rec"
    argv = _argv(squeezenet_dir, imagenet_samples, tmp_path, 12, "--record", str(record))
    proc = subprocess.Popen([sys.executable, "-m", "caffezoo", *argv],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if record.exists() and record.read_bytes().count(b'{"i":') >= 8:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    done = record.read_bytes().count(b'{"i":')
    assert 8 <= done < 20 and not (tmp_path / "p.csv").exists()
    # resumed on Ray: the record is the same whichever executor writes it
    assert cli.main([*argv, "--resume", "--executor", "ray", "--ray-address", cluster]) == 0
    baseline = single_process[12]
    for name in ("p.csv", "r.csv"):
        assert (tmp_path / name).read_bytes() == (baseline / name).read_bytes()
    resumed, local = _summary(tmp_path), _summary(baseline)
    assert resumed["correct"] == local["correct"] and resumed["images"] == local["images"]
    assert resumed["record"]["resumed_images"] == done and resumed["record"]["sessions"] == 2
    rows = list(csv.DictReader((tmp_path / "r.csv").open()))
    assert [(r["crop_num"], r["backend"]) for r in rows] == [("12", "onnxruntime")]


def test_a_resume_with_another_model_refuses(single_process, squeezenet_dir, imagenet_samples,
                                             tmp_path, capsys):
    weights = tmp_path / "other.caffemodel"
    data = bytearray((squeezenet_dir / "squeezenet_v1.0_dc.caffemodel").read_bytes())
    data[-8] ^= 0x01  # one bit of the last layer's biases: a valid, different model
    weights.write_bytes(bytes(data))
    record = single_process[1] / "run.rec"
    before = record.read_bytes()
    argv = _argv(squeezenet_dir, imagenet_samples, tmp_path, 1, "--record", str(record),
                 "--resume", "--executor", "ray")
    argv[argv.index("--weights") + 1] = str(weights)
    assert cli.main(argv) == 3
    err = capsys.readouterr().err
    assert "cannot resume" in err and "model weights (sha256:" in err
    assert "model prototxt" not in err and "val list" not in err
    assert record.read_bytes() == before and not (tmp_path / "r.json").exists()


def test_the_zoo_table_on_ray_records_what_eval_records(cluster, single_process, squeezenet_dir,
                                                        imagenet_samples, tmp_path):
    from test_zoo_table import squeezenet_with_contract

    from caffezoo.evaluation.record import decode_line

    spec = squeezenet_with_contract(squeezenet_dir, tmp_path)
    out = tmp_path / "table"
    assert cli.main(["table", spec, "--val-list", str(imagenet_samples / "val.txt"),
                     "--data-root", str(imagenet_samples), "--crops", "1", "--threads", "1",
                     "--backend", "onnxruntime", "--unit-size", SETTINGS[1][1], "-o", str(out),
                     "--executor", "ray", "--ray-address", cluster]) == 0
    (row,) = list(csv.DictReader((out / "table.csv").open()))
    assert (row["top1_err"], row["top5_err"], row["executor"]) == ("39.0", "18.0", "ray")

    def results(path: Path) -> tuple[dict, dict]:
        lines = [decode_line(x) for x in path.read_bytes().splitlines()]
        return lines[0]["fingerprint"], {o["i"]: (o["top"], o["scores"]) for o in lines
                                         if "i" in o}

    # the cell's record (Ray, the contract's preprocessing) and eval's in-process one: the same
    # fingerprint and the same results, score for score
    table_cell = results(out / "records" / "squeezenet_v1.0_dc_227_1crop.rec")
    assert table_cell == results(single_process[1] / "run.rec")


def test_ctrl_c_on_ray_stops_at_once_and_leaves_stdout_to_caffezoo(squeezenet_dir,
                                                                 imagenet_samples, tmp_path):
    """On a local Ray the command starts itself (no --ray-address). Ray prints cluster events
    (the tasks of the workers stopped) on stdout, some as Ray shuts down; with the JSON there,
    none may get through. The child gets SIGINT's default action (a background shell ignores
    it)."""
    record = tmp_path / "run.rec"
    argv = _argv(squeezenet_dir, imagenet_samples, tmp_path, 12, "--record", str(record),
                 "--executor", "ray")
    argv[argv.index("--json") + 1] = "-"  # the JSON on stdout
    proc = subprocess.Popen([sys.executable, "-m", "caffezoo", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if record.exists() and record.read_bytes().count(b'{"i":') >= 4:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be interrupted"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert out == "" and err == "interrupted\n"
    from caffezoo.evaluation.record import decode_line

    lines = record.read_bytes().splitlines()
    assert all(decode_line(line) for line in lines)  # whole lines only
    assert 4 <= sum(b'"i":' in line for line in lines) < 20
