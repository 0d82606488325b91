"""Prints pyproject.toml's pinned requirements: `deps` (frameworks + test extras),
`no-deps` (installed without dependencies), or, with no argument, both (for hashing)."""

import sys
import tomllib

with open(sys.argv[1], "rb") as f:
    project = tomllib.load(f)
extras = project["project"]["optional-dependencies"]
groups = {
    "deps": extras["frameworks"] + extras["test"],
    "no-deps": project["tool"]["caffezoo"]["no-deps"],
}
wanted = sys.argv[2:] or list(groups)
print(" ".join(req for name in wanted for req in groups[name]))
