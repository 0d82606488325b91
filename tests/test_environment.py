"""environment.yml (conda) says what pyproject.toml says: the same Python, the same pinned
packages, the same no-deps step; and scripts/constraints.txt agrees with every pin."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def pins(requirements: list[str]) -> dict[str, str]:
    """name -> the exact version of `name==version` requirements (canonical names)."""
    out = {}
    for text in requirements:
        req = Requirement(text)
        (spec,) = req.specifier  # every pin is exactly one ==
        assert spec.operator == "==", text
        out[canonicalize_name(req.name)] = spec.version
    return out


def environment() -> dict:
    return yaml.safe_load((REPO / "environment.yml").read_text())


def test_environment_yml_pins_equal_pyproject_extras():
    project = pyproject()["project"]
    extras = project["optional-dependencies"]
    want = pins(extras["frameworks"] + extras["test"])
    deps = environment()["dependencies"]
    pip_lists = [d["pip"] for d in deps if isinstance(d, dict) and "pip" in d]
    assert len(pip_lists) == 1
    pip_reqs = [r for r in pip_lists[0] if not r.startswith("-")]
    assert pins(pip_reqs) == want
    assert "-e ." in pip_lists[0]  # caffezoo itself
    assert "pip" in deps


def test_environment_yml_python_satisfies_requires_python():
    deps = environment()["dependencies"]
    pythons = [d for d in deps if isinstance(d, str) and d.startswith("python")]
    assert len(pythons) == 1
    version = pythons[0].split("=", 1)[1]
    requires = Requirement("python" + pyproject()["project"]["requires-python"]).specifier
    assert Version(version) in requires
    # the set-up uses the same interpreter version
    setup = (REPO / "scripts" / "setup.sh").read_text()
    assert f"python{version}" in setup


def test_environment_yml_states_the_no_deps_step():
    no_deps = pyproject()["tool"]["caffezoo"]["no-deps"]
    text = (REPO / "environment.yml").read_text()
    assert re.search(r"pip install --no-deps " + re.escape(" ".join(no_deps)) + r"\s*$", text,
                     re.MULTILINE)
    # and nothing installed without dependencies is in the pip list (it would pull numpy<2)
    pip_list = next(d["pip"] for d in environment()["dependencies"] if isinstance(d, dict))
    assert not set(pins([r for r in pip_list if not r.startswith("-")])) & set(pins(no_deps))


def test_constraints_agree_with_every_pin():
    project = pyproject()
    extras = project["project"]["optional-dependencies"]
    every = pins(extras["frameworks"] + extras["test"] + project["tool"]["caffezoo"]["no-deps"])
    constraints = pins([ln for ln in (REPO / "scripts" / "constraints.txt").read_text()
                        .splitlines() if ln.strip() and not ln.startswith("#")])
    mismatched = {name: (version, constraints.get(name)) for name, version in every.items()
                  if constraints.get(name) != version}
    assert not mismatched
    # the open range of the base dependencies admits the pins (OpenCV < 5 above all)
    for text in project["project"]["dependencies"]:
        req = Requirement(text)
        assert Version(every[canonicalize_name(req.name)]) in req.specifier, text
