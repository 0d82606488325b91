"""The package as users install it: a wheel built from the checkout holds the CLI entry point,
`evaluation_cls.py`, the schema, the licence, and states ranges (not pins) in its metadata."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_wheel_contents_and_metadata(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(tmp_path), str(REPO)], capture_output=True, text=True, timeout=300,
        cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = tmp_path.glob("caffezoo-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        meta_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        meta = Parser().parsestr(zf.read(meta_name).decode())
        entry_points = zf.read(meta_name.replace("METADATA", "entry_points.txt")).decode()
    assert "evaluation_cls.py" in names
    assert "caffezoo/cli.py" in names and "caffezoo/proto/caffe.proto" in names
    assert "caffezoo/data/imagenet_1k.txt" in names  # the labels of caffezoo/labels.py
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert "caffezoo = caffezoo.cli:main" in entry_points
    assert meta["License-Expression"] == "BSD-2-Clause"
    requires = [Requirement(r) for r in meta.get_all("Requires-Dist")]
    extras = {m for r in requires for m in [r.marker] if m for m in [str(m)]}
    assert any("extra == \"mxnet\"" in e for e in extras)
    pinned = [str(r) for r in requires if any(s.operator == "==" for s in r.specifier)]
    assert not pinned, f"exact pins in library metadata: {pinned}"
