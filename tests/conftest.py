"""Shared fixtures. Tests that need a framework or ../shared data skip with a reason when it is
absent; CI installs every framework, so there only ../shared can be missing."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# tests/helpers (fixture writers, reference implementations) and each group of tests, whose
# modules some tests import fixtures from, on the import path of every test
for _folder in sorted(Path(__file__).parent.iterdir()):
    if _folder.is_dir() and not _folder.name.startswith(("_", ".")):
        sys.path.insert(0, str(_folder))
SHARED_DATA = REPO.parent / "shared" / "data"
SQUEEZENET_DIR = SHARED_DATA / "squeezenet_v1.0_dc"
IMAGENET_SAMPLES = SHARED_DATA / "imagenet_samples"


def _have(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


@pytest.fixture
def squeezenet_dir() -> Path:
    if not (SQUEEZENET_DIR / "deploy.prototxt").exists():
        pytest.skip(f"shared SqueezeNet not found at {SQUEEZENET_DIR}")
    return SQUEEZENET_DIR


@pytest.fixture
def imagenet_samples() -> Path:
    if not (IMAGENET_SAMPLES / "val.txt").exists():
        pytest.skip(f"shared ImageNet samples not found at {IMAGENET_SAMPLES}")
    return IMAGENET_SAMPLES


@pytest.fixture(autouse=True, scope="session")
def _probe_cache(tmp_path_factory):
    """`--backend auto` caches its probes (runtimes/auto.py): in the session's own folder, never
    in the user's cache, and inherited by the CLI run in child processes."""
    import os

    folder = tmp_path_factory.mktemp("backend-probe")
    old = os.environ.get("CAFFEZOO_PROBE_CACHE")
    os.environ["CAFFEZOO_PROBE_CACHE"] = str(folder)
    yield folder
    if old is None:
        os.environ.pop("CAFFEZOO_PROBE_CACHE", None)
    else:
        os.environ["CAFFEZOO_PROBE_CACHE"] = old


def pytest_collection_modifyitems(config, items):
    # marker -> module whose absence skips the test
    needs = {"caffe": "caffe", "opencv": "cv2", "torch": "torch", "tensorflow": "tf_slim",
             "mxnet": "mxnet"}
    for item in items:
        for marker, module in needs.items():
            if item.get_closest_marker(marker) and not _have(module):
                item.add_marker(pytest.mark.skip(reason=f"{module} is not installed "
                                                 "(scripts/setup.sh installs it)"))
