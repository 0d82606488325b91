"""The set-up as a user meets it (scripts/run, scripts/setup.sh): a second clone gets a `.venv` of
its own that runs its own code, its `caffezoo` command is a real console script (so decoder
processes spawned by `eval --worker-kind process` do not run the CLI again), and a changed
CAFFEZOO_CACHE reuses the complete venv the checkout is wired to instead of rebuilding it."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from caffezoo import netio
from caffezoo.random_weights import random_weights

REPO = Path(__file__).resolve().parents[2]

NET = """
layer { name: "data" type: "Input" top: "data"
  input_param { shape { dim: 1 dim: 3 dim: 16 dim: 16 } } }
layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc"
  inner_product_param { num_output: 4 } }
layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }
"""


def _checkout_files() -> list[str]:
    proc = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO,
                          capture_output=True, text=True)
    if proc.returncode == 0 and proc.stdout.strip():
        return [f for f in proc.stdout.splitlines() if (REPO / f).is_file()]
    return [str(p.relative_to(REPO)) for p in REPO.rglob("*") if p.is_file()
            and not {".venv", ".git", "__pycache__"} & set(p.relative_to(REPO).parts)]


def _clone(folder: Path) -> Path:
    """A copy of this checkout's files (what a second clone holds), without its .venv."""
    for name in _checkout_files():
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, target)
    return folder


def _tiny_eval_files(folder: Path) -> list[str]:
    import cv2

    net = netio.parse_prototxt(NET)
    netio.write_prototxt(net, folder / "tiny.prototxt")
    netio.write_caffemodel(netio.attach_weights(net, random_weights(net)),
                           folder / "tiny.caffemodel")
    rng = np.random.default_rng(0)
    for i in range(4):
        cv2.imwrite(str(folder / f"im{i}.png"), rng.integers(0, 255, (20, 24, 3), np.uint8))
    (folder / "val.txt").write_text("".join(f"im{i}.png {i}\n" for i in range(4)))
    return ["--prototxt", str(folder / "tiny.prototxt"), "--weights",
            str(folder / "tiny.caffemodel"), "--val-list", str(folder / "val.txt"),
            "--data-root", str(folder), "--base-size", "16", "--mean", "0", "--top-k", "1"]


@pytest.mark.slow
def test_a_second_clone_runs_its_own_code_and_a_new_cache_rebuilds_nothing(tmp_path):
    clone = _clone(tmp_path / "clone")
    (clone / "caffezoo" / "__init__.py").write_text(
        (clone / "caffezoo" / "__init__.py").read_text() + '\nCLONE_MARK = "second clone"\n')
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    where = ("import caffezoo, sys; print(caffezoo.__file__, "
             "getattr(caffezoo, 'CLONE_MARK', 'first'), sys.prefix, sep='|')")
    run = subprocess.run([str(clone / "scripts" / "run"), "python", "-c", where], env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    path, mark, prefix = run.stdout.strip().split("|")
    assert Path(path).is_relative_to(clone) and mark == "second clone"
    assert prefix == str(clone / ".venv")
    # this checkout's venv still runs this checkout's code
    own = subprocess.run([str(REPO / ".venv" / "bin" / "python"), "-c", where], env=env,
                         capture_output=True, text=True, timeout=120)
    path, mark, _ = own.stdout.strip().split("|")
    assert Path(path).is_relative_to(REPO) and mark == "first"

    # the installed command is a console script: process decoders do not re-run the CLI
    argv = _tiny_eval_files(tmp_path)
    proc = subprocess.run([str(clone / ".venv" / "bin" / "caffezoo"), "eval", *argv,
                           "--worker-kind", "process", "-j", "2", "--backend", "opencv"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "4 images has been tested" in proc.stdout and "(process)" in proc.stdout

    # another CAFFEZOO_CACHE: the complete venv the clone is wired to is kept, nothing built
    other = tmp_path / "other-cache"
    again = subprocess.run([str(clone / "scripts" / "run"), "python", "-c", where],
                           env=dict(env, CAFFEZOO_CACHE=str(other)), capture_output=True,
                           text=True, timeout=120)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "set up under another CAFFEZOO_CACHE" in again.stderr
    assert "creating venv" not in again.stderr and "building real Caffe" not in again.stderr
    assert not list(other.glob("venv-*")) and not list(other.glob("caffe-*"))
    assert again.stdout == run.stdout

