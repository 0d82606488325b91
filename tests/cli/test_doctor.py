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

REPO = Path(__file__).resolve().parents[2]


def doctor(python: str, *args: str, path: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO)
    if path is not None:
        env["PATH"] = path
    return subprocess.run([python, "-m", "caffezoo", "doctor", *args], capture_output=True,
                          text=True, env=env, cwd=REPO, timeout=600)


def doctor_on_a_terminal(*args: str) -> tuple[int, str, str]:
    """doctor with its stderr on a pseudo-terminal, as a user at a terminal runs it (a bar
    draws only there): (status, stdout, what the terminal showed)."""
    import fcntl
    import struct
    import termios
    import threading

    master, slave = os.openpty()
    # a terminal of 24 x 120 (a new pseudo-terminal has no size, and tqdm draws 0 columns)
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "caffezoo", "doctor", *args],
                            stdout=subprocess.PIPE, stderr=slave, cwd=REPO,
                            env=dict(os.environ, PYTHONPATH=str(REPO)))
    os.close(slave)
    shown = bytearray()

    def read() -> None:
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO: the child closed the terminal
                return
            if not data:
                return
            shown.extend(data)

    reader = threading.Thread(target=read)
    reader.start()
    out = proc.communicate(timeout=600)[0].decode()
    reader.join(timeout=60)
    os.close(master)
    return proc.returncode, out, shown.decode(errors="replace")


@pytest.mark.caffe
@pytest.mark.opencv
@pytest.mark.torch
@pytest.mark.tensorflow
@pytest.mark.mxnet
def test_doctor_in_the_full_environment():
    code, out, terminal = doctor_on_a_terminal("--json")
    assert code == 0, out + terminal
    # half a minute of checks shows a bar (it said nothing before)
    assert "doctor:" in terminal and f"{len(COMPONENTS)}/{len(COMPONENTS)}" in terminal
    report = json.loads(out)
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
