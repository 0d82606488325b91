"""The `caffezoo` command. Each subcommand lives in caffezoo/commands/<name>.py and provides
`add_arguments(parser)` and `run(args) -> int`; they are imported only when used, so a light
command never pays for a heavy framework import."""

from __future__ import annotations

import argparse
import importlib
import sys

from caffezoo.errors import CaffezooError

# name -> one-line help; the module caffezoo.commands.<name with - as _> implements it.
COMMANDS = {
    "demo": "the whole pipeline on a built-in default model",
    "doctor": "which components (Caffe, OpenCV, torch, tensorflow, mxnet) are usable",
    "info": "layers, output shapes, parameters and MACs of a prototxt",
    "generate": "write zoo deploy prototxts",
    "zoo": "list the model zoo",
    "convert": "port source-framework weights into a .caffemodel",
    "validate": "compare a converted model with its source",
    "eval": "ImageNet-style accuracy (1/10/12/144-crop)",
    "time": "speed: `caffe time` and per-backend forward timing",
}


def _command_module(name: str):
    return importlib.import_module(f"caffezoo.commands.{name.replace('-', '_')}")


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="caffezoo", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    # Only the module of the chosen command is imported (it adds its own options).
    chosen = next((a for a in argv if a in COMMANDS), None)
    for name, help_text in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            _command_module(name).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
    try:
        return _command_module(args.command).run(args) or 0
    except CaffezooError as err:
        if args.debug:
            raise
        print(f"caffezoo {args.command}: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
