"""The `caffezoo` command. Each subcommand lives in caffezoo/commands/<name>.py and provides
`add_arguments(parser)` and `run(args) -> int`; they are imported only when used, so a light
command never pays for a heavy framework import."""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import os
import sys

from caffezoo import __version__
from caffezoo.errors import (
    EXIT_BAD_INPUT,
    EXIT_BROKEN_PIPE,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    CaffezooError,
)

# OS errors that a user's system or paths cause, reported as bad input (3), not as a bug.
USER_ERRNOS = frozenset({
    errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EACCES, errno.EPERM, errno.EROFS,
    errno.ENAMETOOLONG, errno.ELOOP, errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EEXIST,
    errno.ENXIO, errno.ETXTBSY})

DESCRIPTION = """\
Generate, convert and verify Caffe image classifiers: the deploy prototxts of a model zoo,
weights ported from PyTorch, TensorFlow, MXNet and ONNX, validation against the source,
ImageNet accuracy and speed. `caffezoo COMMAND --help` shows a command's options and examples."""

# name -> one-line help; the module caffezoo.commands.<name with - as _> implements it.
COMMANDS = {
    "demo": "the whole pipeline on a built-in default model",
    "doctor": "which components (Caffe, OpenCV, torch, tensorflow, mxnet) are usable",
    "info": "layers, output shapes, parameters and MACs of a prototxt",
    "generate": "write zoo deploy prototxts",
    "zoo": "list the model zoo",
    "convert": "port source-framework weights into a .caffemodel",
    "validate": "compare a converted model with its source",
    "export": "a Caffe net as ONNX or a PyTorch module, Caffe's semantics exactly",
    "eval": "ImageNet-style accuracy (1/10/12/144-crop)",
    "table": "the zoo's accuracy table: several models at several crop schemes",
    "time": "speed: `caffe time` and per-backend forward timing",
}


# name -> examples shown at the end of `caffezoo NAME --help` (tests/cli/test_cli.py parses each
# one with the real parser, so they cannot go stale).
EXAMPLES = {
    "demo": """\
  caffezoo demo                                   # ResNeXt-50 at a small size, random weights
  caffezoo demo --source torch:rx50.pth --images val_images/""",
    "doctor": """\
  caffezoo doctor
  caffezoo doctor --json""",
    "info": """\
  caffezoo info prototxt/resnext50_32x4d.prototxt
  caffezoo info deploy.prototxt --weights w.caffemodel --input-shape 1,3,320,320 --json""",
    "generate": """\
  caffezoo generate resnext50_32x4d                 # -> ./resnext50_32x4d.prototxt
  caffezoo generate resnext50_32x4d --input-size 320 --dialect portable -o out/
  caffezoo generate --all -o prototxt""",
    "zoo": """\
  caffezoo zoo
  caffezoo zoo resnext50_32x4d wrn50_2 --json
  caffezoo zoo --write-docs""",
    "convert": """\
  caffezoo convert --source torch:resnext50_32x4d.pth --model resnext50_32x4d -o out/rx50
  caffezoo convert --source torch:r.t7 --model resnext101_64x4d --layout lua -o out/""",
    "validate": """\
  caffezoo validate --source torch:rx50.pth --model resnext50_32x4d --weights out/rx50.caffemodel
  caffezoo validate --source torch:rx50.pth --model resnext50_32x4d \\
      --weights out/rx50.caffemodel --images val_images/ --layers""",
    "eval": """\
  caffezoo eval --model resnext50_32x4d --weights rx50.caffemodel \\
      --val-list ILSVRC2012_val.txt --data-root ~/ILSVRC2012 --crop-num 12
  caffezoo eval --prototxt deploy.prototxt --weights w.caffemodel --val-list val.txt \\
      --mean 104,117,123 --base-size 256 --crop-size 227 --json r.json
  caffezoo eval --model resnext50_32x4d --weights rx50.caffemodel --data-dir ~/imagenet/val \\
      --results-csv rx50.csv
  caffezoo eval --model resnext50_32x4d --weights rx50.caffemodel --data-dir ~/imagenet/val \\
      --crop-num 12 --record rx50.rec --executor ray --ray-address auto   # later: --resume""",
    "table": """\
  caffezoo table resnext50_32x4d:rx50.caffemodel wrn50_2:wrn50_2.caffemodel \\
      --val-list ILSVRC2012_val.txt --data-root ~/ILSVRC2012 -o zoo-table/
  caffezoo table deploy.prototxt:net.caffemodel --crops 1 --sizes first --val-list val.txt \\
      -o table/ --executor ray --ray-address auto   # an interrupted table: add --resume""",
    "export": """\
  caffezoo export --to onnx --prototxt deploy.prototxt --weights w.caffemodel -o net.onnx
  caffezoo export --to torch --model resnext50_32x4d --weights rx50.caffemodel -o rx50.pt""",
    "time": """\
  caffezoo time --model resnext50_32x4d                      # random weights
  caffezoo time --prototxt deploy.prototxt --weights w.caffemodel -b 1,8 --json speed.json""",
}


EXIT_STATUS = """\
exit status:
  0  success             1  a check failed (validate over its tolerance)
  2  usage error         3  bad input (missing, malformed or unfitting file)
  4  missing framework   70  internal error (a bug; --debug shows it)
  130  interrupted (143 SIGTERM, 129 SIGHUP)   141  output pipe closed"""


def _command_module(name: str):
    return importlib.import_module(f"caffezoo.commands.{name.replace('-', '_')}")


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="caffezoo", description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXIT_STATUS)
    parser.add_argument("--version", action="version", version=f"caffezoo {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    # Only the module of the chosen command is imported (it adds its own options).
    chosen = next((a for a in argv if a in COMMANDS), None)
    for name, help_text in COMMANDS.items():
        examples = EXAMPLES.get(name)
        p = sub.add_parser(name, help=help_text, description=help_text,
                           formatter_class=argparse.RawDescriptionHelpFormatter,
                           epilog=f"examples:\n{examples}" if examples else None)
        if name == chosen:
            _command_module(name).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    from caffezoo.cliargs import STDOUT, split_json_argument
    from caffezoo.outputs import check_target, install_signal_handlers

    argv = split_json_argument(sys.argv[1:] if argv is None else list(argv))
    for stream in (sys.stdout, sys.stderr):
        # file names are any bytes (Python holds the non-UTF-8 ones as surrogates): print
        # them as they are rather than fail on them
        if getattr(stream, "errors", None) == "strict":
            with contextlib.suppress(AttributeError, ValueError, OSError):
                stream.reconfigure(errors="surrogateescape")
    args = build_parser(argv).parse_args(argv)
    install_signal_handlers()  # SIGTERM/SIGHUP unwind like Ctrl-C: staged files are removed
    try:
        json_file = getattr(args, "json", None)
        if json_file is not None and json_file != STDOUT:
            check_target(json_file)  # every command's --json FILE, before any work
        return _command_module(args.command).run(args) or 0
    except CaffezooError as err:
        if args.debug:
            raise
        print(f"caffezoo {args.command}: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader of our output went away (`caffezoo info X --json | head -1`): stop
        # quietly, and keep Python from complaining again when it flushes stdout at exit.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except OSError as err:
        # what the user's system refuses (a full disk, a name too long, no permission) is a
        # bad input; anything else falls through to the internal error below
        if args.debug or err.errno not in USER_ERRNOS:
            return _internal_error(args, err)
        where = f"{os.fsdecode(err.filename)}: " if err.filename is not None else ""
        print(f"caffezoo {args.command}: error: {where}{err.strerror or err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except MemoryError:
        if args.debug:
            raise
        print(f"caffezoo {args.command}: error: out of memory", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as err:  # a bug: say so in one line, not a traceback
        return _internal_error(args, err)


def _internal_error(args: argparse.Namespace, err: Exception) -> int:
    if args.debug:
        raise err
    where = ""
    tb = err.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is not None:
        where = f" at {os.path.basename(tb.tb_frame.f_code.co_filename)}:{tb.tb_lineno}"
    text = (str(err).splitlines() or [""])[0]
    print(f"caffezoo {args.command}: internal error: {type(err).__name__}: {text}{where} "
          "(a bug; run with --debug for the traceback)", file=sys.stderr)
    return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
