"""`caffezoo doctor` in the real environment (everything usable) and in an empty one (a fresh
venv without any package: everything missing, each with its fix)."""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from caffezoo.frameworks import COMPONENTS

REPO = Path(__file__).resolve().parents[1]


def doctor(python: str, *args: str, path: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO)
    if path is not None:
        env["PATH"] = path
    return subprocess.run([python, "-m", "caffezoo", "doctor", *args], capture_output=True,
                          text=True, env=env, cwd=REPO, timeout=600)


@pytest.mark.caffe
@pytest.mark.opencv
@pytest.mark.torch
@pytest.mark.tensorflow
@pytest.mark.mxnet
def test_doctor_in_the_full_environment():
    proc = doctor(sys.executable, "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    rows = {r["name"]: r for r in report["components"]}
    assert list(rows) == ["caffe tool", *COMPONENTS]
    assert report["core_ok"] is True
    bad = {n: r["detail"] for n, r in rows.items() if not r["ok"]}
    assert not bad
    # versions as the package metadata of this interpreter says (read independently here)
    for name, dist in [("numpy", "numpy"), ("protobuf", "protobuf"),
                       ("opencv", "opencv-python-headless"), ("torch", "torch"),
                       ("torchvision", "torchvision"), ("tensorflow", "tensorflow-cpu"),
                       ("tf_slim", "tf_slim"), ("mxnet", "mxnet"), ("timm", "timm")]:
        assert rows[name]["version"] == md.version(dist), name
    assert {n for n, r in rows.items() if r["core"]} == {
        "caffe tool", "numpy", "protobuf", "pycaffe", "opencv"}
    import caffe

    assert rows["pycaffe"]["version"] == caffe.__version__


@pytest.fixture(scope="module")
def empty_venv(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("empty-venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True,
                   timeout=120)
    return str(folder / "bin" / "python")


def test_doctor_in_an_empty_environment(empty_venv):
    # PATH without any venv: the caffe tool must not be found either
    text = doctor(empty_venv, path="/usr/bin:/bin")
    assert text.returncode == 1, text.stdout + text.stderr
    assert "Traceback" not in text.stderr
    for name in ["caffe tool", *COMPONENTS]:
        line = next(ln for ln in text.stdout.splitlines() if ln.strip().startswith(name + " "))
        assert "MISSING" in line or "missing" in line, line
        assert "scripts/setup.sh" in line, line
    assert "core components missing: caffe tool, numpy, protobuf, pycaffe, opencv" in text.stdout

    proc = doctor(empty_venv, "--json", path="/usr/bin:/bin")
    assert proc.returncode == 1
    report = json.loads(proc.stdout)
    assert report["core_ok"] is False
    rows = {r["name"]: r for r in report["components"]}
    assert not any(r["ok"] for r in rows.values())
    assert "No module named 'numpy'" in rows["numpy"]["detail"]
    assert "No module named 'cv2'" in rows["opencv"]["detail"]
    assert rows["caffe tool"]["detail"].startswith("the caffe tool was not found")
