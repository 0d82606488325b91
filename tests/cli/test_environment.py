"""The three statements of what caffezoo installs agree: pyproject.toml's extras (ranges, as
library metadata), scripts/constraints.txt (the exact versions the set-up installs) and
environment.yml (those exact versions for conda users)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def exact_pins(requirements: list[str]) -> dict[str, str]:
    """name -> version of `name==version` requirements (canonical names)."""
    out = {}
    for text in requirements:
        req = Requirement(text)
        (spec,) = req.specifier  # every pin is exactly one ==
        assert spec.operator == "==", text
        out[canonicalize_name(req.name)] = spec.version
    return out


def constraints() -> dict[str, str]:
    lines = (REPO / "scripts" / "constraints.txt").read_text().splitlines()
    return exact_pins([ln for ln in lines if ln.strip() and not ln.startswith("#")])


def setup_requirements() -> tuple[list[Requirement], list[Requirement]]:
    """What scripts/pins.py hands the set-up: (with dependencies, without)."""
    project = pyproject()
    extras = project["project"]["optional-dependencies"]
    setup = project["tool"]["caffezoo"]
    deps = project["project"]["dependencies"] + [
        r for name in setup["setup-extras"] for r in extras[name]]
    no_deps = [r for name in setup["no-deps"] for r in extras[name]]
    return [Requirement(r) for r in deps], [Requirement(r) for r in no_deps]


def environment() -> dict:
    return yaml.safe_load((REPO / "environment.yml").read_text())


def test_extras_state_ranges_and_constraints_pin_each_inside_its_range():
    pinned = constraints()
    deps, no_deps = setup_requirements()
    for req in deps + no_deps:
        assert not any(s.operator == "==" for s in req.specifier), f"{req}: a range, not a pin"
        version = pinned.get(canonicalize_name(req.name))
        assert version is not None, f"{req.name} has no exact version in constraints.txt"
        assert Version(version) in req.specifier, f"{req.name}=={version} outside {req}"


def test_every_extra_is_installed_by_the_setup():
    project = pyproject()
    setup = project["tool"]["caffezoo"]
    named = set(setup["setup-extras"]) | set(setup["no-deps"])
    assert named == set(project["project"]["optional-dependencies"])


def test_environment_yml_pins_what_the_setup_installs():
    pinned = constraints()
    deps, _ = setup_requirements()
    want = {canonicalize_name(r.name): pinned[canonicalize_name(r.name)] for r in deps}
    env_deps = environment()["dependencies"]
    pip_lists = [d["pip"] for d in env_deps if isinstance(d, dict) and "pip" in d]
    assert len(pip_lists) == 1
    assert exact_pins([r for r in pip_lists[0] if not r.startswith("-")]) == want
    assert "-e ." in pip_lists[0]  # caffezoo itself
    assert "pip" in env_deps


def test_environment_yml_states_the_no_deps_step():
    pinned = constraints()
    _, no_deps = setup_requirements()
    line = " ".join(f"{r.name}=={pinned[canonicalize_name(r.name)]}" for r in no_deps)
    text = (REPO / "environment.yml").read_text()
    assert re.search(r"pip install --no-deps " + re.escape(line) + r"\s*$", text, re.MULTILINE)


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


def test_build_system_admits_the_license_fields():
    """An SPDX `license` string and `license-files` need setuptools 77 (70 refuses the string)."""
    project = pyproject()
    (req,) = [Requirement(r) for r in project["build-system"]["requires"]]
    assert req.name == "setuptools"
    assert Version("76.9") not in req.specifier and Version("77.0") in req.specifier
    for name in project["project"]["license-files"]:
        assert (REPO / name).is_file()
