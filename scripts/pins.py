"""Prints the requirements scripts/setup.sh installs, from pyproject.toml's extras: `deps`
(installed with their dependencies), `no-deps` (installed without), or, with no argument, both
(for hashing). The versions come from scripts/constraints.txt, which pip is given beside them."""

import sys
import tomllib

with open(sys.argv[1], "rb") as f:
    project = tomllib.load(f)
extras = project["project"]["optional-dependencies"]
setup = project["tool"]["caffezoo"]
groups = {
    "deps": project["project"]["dependencies"]
    + [req for name in setup["setup-extras"] for req in extras[name]],
    "no-deps": [req for name in setup["no-deps"] for req in extras[name]],
}
wanted = sys.argv[2:] or list(groups)
print(" ".join(req for name in wanted for req in groups[name]))
