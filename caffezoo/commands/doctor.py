"""`caffezoo doctor`: which components are usable, with versions, and how to fix the others.

Each framework is imported through caffezoo.frameworks (patches included) in its own interpreter,
so the table says what a real command would get. Exit status 0 when every core component (what
the runtimes need: numpy, protobuf, pycaffe, the caffe tool, OpenCV with its Caffe importer) is
usable, 1 otherwise; the source frameworks (torch, tensorflow, mxnet, ...) are reported but only
needed by `convert`/`validate` for that framework.
"""

from __future__ import annotations

import argparse
import platform
import sys

from caffezoo import __version__, frameworks
from caffezoo.cliargs import add_json, add_workers, json_to_stdout, write_json
from caffezoo.errors import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_json(parser, "the table")
    add_workers(parser, default=2, help="check N components at a time (default 2)",
                old=("--jobs",))


def run(args: argparse.Namespace) -> int:
    from caffezoo.limits import check_parallel

    if args.workers < 1:
        raise UsageError(f"--workers must be at least 1, got {args.workers}")
    check_parallel("--workers", args.workers)
    from caffezoo.progress import Progress

    # each framework is imported in a process of its own: seconds each, half a minute in all
    with Progress(len(frameworks.COMPONENTS), label="doctor", unit="component",
                  delay=1.0) as bar:
        rows = frameworks.components(
            isolated=True, jobs=args.workers,
            on_checked=lambda done: bar.update(len(done), ", ".join(r.name for r in done)))
    core_ok = all(r.ok for r in rows if r.core)
    if args.json:
        write_json(args.json, {
            "caffezoo": __version__,
            "python": platform.python_version(),
            "executable": sys.executable,
            "core_ok": core_ok,
            "components": [
                {"name": r.name, "version": r.version, "ok": r.ok, "core": r.core,
                 "detail": r.detail} for r in rows],
        })
    if json_to_stdout(args):
        return 0 if core_ok else 1

    print(f"caffezoo {__version__}, Python {platform.python_version()} ({sys.executable})")
    from caffezoo.table import format_table

    print(format_table(
        ("component", "version", "kind", "status", "detail"),
        [(r.name, r.version or "-", "core" if r.core else "",
          "ok" if r.ok else ("MISSING" if r.core else "missing"), r.detail) for r in rows],
        indent="  "))
    if core_ok:
        bad = [r.name for r in rows if not r.ok]
        tail = f" ({', '.join(bad)} not usable: see above)" if bad else ""
        print(f"core components usable{tail}")
        return 0
    print("core components missing: " + ", ".join(r.name for r in rows if r.core and not r.ok)
          + f"; {frameworks.FIX}")
    return 1
