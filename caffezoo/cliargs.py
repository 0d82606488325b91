"""One spelling per idea across the `caffezoo` commands (docs/cli.md):

    -o/--output PATH      where a command writes its main output
    -b/--batch-size N     inputs per forward pass
    -j/--workers N        parallel workers (decoders, probes)
    --input-size N        the net's square input size
    --json [FILE]         the report as JSON: to FILE (ending in .json), or to stdout

Commands add these through the helpers below so the names, metavars and help agree. Old
spellings stay as hidden aliases that still work and print a deprecation note on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

JSON_SUFFIX = ".json"
STDOUT = "-"


class _Deprecated(argparse.Action):
    """A hidden old spelling: stores into the new option's dest and says so on stderr."""

    def __init__(self, option_strings, dest, new: str = "", **kwargs):
        self.new = new
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"caffezoo: note: {option_string} is deprecated; use {self.new}", file=sys.stderr)
        setattr(namespace, self.dest, True if self.nargs == 0 else values)


def deprecated(parser: argparse.ArgumentParser | Any, old: str, dest: str, new: str,
               **kwargs) -> None:
    """`old` as a hidden alias of the option `new` (whose dest is `dest`)."""
    parser.add_argument(old, dest=dest, action=_Deprecated, new=new, help=argparse.SUPPRESS,
                        default=argparse.SUPPRESS, **kwargs)


def add_json(parser, what: str = "the report", stdout_note: str = "") -> None:
    parser.add_argument("--json", nargs="?", const=STDOUT, default=None, metavar="FILE",
                        help=f"{what} as JSON: to FILE (ending in {JSON_SUFFIX}), or to stdout "
                             f"without FILE{stdout_note}")


def add_output(parser, *, metavar: str, help: str, required: bool = False,
               default: str | None = None, old: tuple[str, ...] = ()) -> None:
    target = parser.add_mutually_exclusive_group(required=True) if required else parser
    target.add_argument("-o", "--output", metavar=metavar, default=default, help=help)
    for spelling in old:
        deprecated(target, spelling, "output", "-o/--output")


def add_batch_size(parser, *, default: Any, help: str, type=int, metavar: str = "N",
                   old: tuple[str, ...] = ()) -> None:
    parser.add_argument("-b", "--batch-size", type=type, default=default, metavar=metavar,
                        help=help)
    for spelling in old:
        deprecated(parser, spelling, "batch_size", "-b/--batch-size", type=type)


def add_workers(parser, *, default: int, help: str, old: tuple[str, ...] = ()) -> None:
    parser.add_argument("-j", "--workers", type=int, default=default, metavar="N", help=help)
    for spelling in old:
        deprecated(parser, spelling, "workers", "-j/--workers", type=int)


def add_input_size(parser, *, help: str, default: int | None = None,
                   old: tuple[str, ...] = ()) -> None:
    parser.add_argument("--input-size", type=int, default=default, metavar="N", help=help)
    for spelling in old:
        deprecated(parser, spelling, "input_size", "--input-size", type=int)


def add_channel_order(parser, *, help: str) -> None:
    """--channel-order bgr|rgb (either case), stored upper-case as the contract states it."""
    parser.add_argument("--channel-order", type=str.upper, choices=("BGR", "RGB"),
                        default=None, metavar="bgr|rgb", help=help)


def add_source_channel_order(parser, *, help: str) -> None:
    """--source-channel-order bgr|rgb: checked by source_channel_order() (a bad value is one
    line, exit status 2)."""
    parser.add_argument("--source-channel-order", default=None, metavar="bgr|rgb", help=help)


def source_channel_order(args: argparse.Namespace) -> str | None:
    """--source-channel-order upper-cased as the contract states orders; None when absent."""
    from caffezoo.errors import UsageError

    text = args.source_channel_order
    if text is None:
        return None
    if text.upper() not in ("BGR", "RGB"):
        raise UsageError(f"--source-channel-order {text!r}: expected bgr or rgb")
    return text.upper()


def split_json_argument(argv: list[str]) -> list[str]:
    """`--json X` where X is not a .json path (nor `-`) means JSON on stdout followed by the
    positional or option X: argparse alone would take X for the file."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        out.append(token)
        if token == "--":
            out.extend(argv[i + 1:])
            break
        if token == "--json" and i + 1 < len(argv):
            nxt = argv[i + 1]
            if nxt != STDOUT and not nxt.startswith("-") and \
                    not nxt.lower().endswith(JSON_SUFFIX):
                out[-1] = f"--json={STDOUT}"
        i += 1
    return out


def write_json(dest: str | None, payload: Any) -> None:
    """The report as JSON to stdout (`-`) or atomically to a file; nothing when `dest` is None.
    """
    if dest is None:
        return
    text = json.dumps(payload, indent=2) + "\n"
    if dest == STDOUT:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    from caffezoo import netio

    netio.atomic_write(dest, text)


def json_to_stdout(args: argparse.Namespace) -> bool:
    """Whether stdout carries the JSON (so human-readable text should go elsewhere or not at
    all)."""
    return getattr(args, "json", None) == STDOUT
