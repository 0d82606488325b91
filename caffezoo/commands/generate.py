"""`caffezoo generate MODEL [--input-size N] [--dialect D] [-o DIR]` and `caffezoo generate
--all`: write zoo deploy prototxts. See docs/zoo.md."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from caffezoo.errors import CaffezooError, InputFileError, UsageError

DIALECTS = ("ceil_mode", "round_mode", "portable")  # netio.DIALECTS, without importing netio


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", nargs="?", help="a zoo model (see `caffezoo zoo`)")
    parser.add_argument("--all", action="store_true", help="every model of the zoo")
    parser.add_argument("--input-size", type=int, metavar="N",
                        help="square input size (default: the model's, 224 or 299)")
    parser.add_argument("--dialect", choices=DIALECTS, default="ceil_mode",
                        help="how floor pooling is written: `ceil_mode: false` (default, "
                        "OpenCV and PR-3057 Caffe forks), `round_mode: FLOOR` (BVLC master), "
                        "or portable stock layers")
    parser.add_argument("-o", "--output", default=".", metavar="DIR",
                        help="output folder (default: the current one); for one model also "
                        "FILE.prototxt, or `-` to print it to stdout")


def run(args: argparse.Namespace) -> int:
    from caffezoo import netio, zoo
    from caffezoo.outputs import OutputSet

    if args.all == bool(args.model):
        raise CaffezooError("give either a MODEL or --all")
    if args.input_size is not None and args.input_size < 1:
        raise UsageError(f"--input-size must be at least 1, got {args.input_size}")
    cards = zoo.all_cards() if args.all else [zoo.get_card(args.model)]
    if args.output == "-":
        if len(cards) != 1:
            raise CaffezooError("-o - prints a single model; give a folder with --all")
        net = _checked_net(cards[0], args.input_size)
        sys.stdout.write(netio.format_prototxt(net, args.dialect))
        return 0

    out_dir = Path(args.output).expanduser()
    one_file = out_dir.suffix == ".prototxt" and not out_dir.is_dir()
    if one_file and len(cards) != 1:
        raise CaffezooError(f"-o {args.output}: a file holds a single model; give a folder "
                            "with --all")
    if out_dir.exists() and not out_dir.is_dir() and not one_file:
        raise InputFileError(f"{out_dir}: not a folder (-o names a folder, or FILE.prototxt "
                             "for one model)")
    if not one_file:
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise InputFileError(f"{out_dir}: cannot create the folder: "
                                 f"{err.strerror or err}") from None
    failed = 0
    written = []
    with OutputSet() as outputs:  # all prototxts of the run land together
        for card in cards:
            try:
                net = _checked_net(card, args.input_size)
            except CaffezooError as err:
                if not args.all:
                    raise
                print(f"{card.name}: error: {err}", file=sys.stderr)
                failed += 1
                continue
            path = out_dir if one_file else \
                out_dir / zoo.output_filename(card, args.input_size, args.dialect)
            netio.write_prototxt(net, outputs.stage(path), args.dialect)
            size = args.input_size or card.input_size
            stats = zoo.compute_stats(net, size)
            written.append(f"{path}  ({len(net.layer)} layers, input {size}x{size}, "
                           f"{stats.params / 1e6:.2f} M params, {stats.gmacs:.2f} GMACs)")
        outputs.commit()
    if written:
        print("\n".join(written))
    return 1 if failed else 0


def _checked_net(card, input_size: int | None):
    """The card's net; shape inference first, so no invalid net is ever written."""
    from caffezoo.analysis import analyze

    net = card.build(input_size)
    analyze(net)  # raises NetDefinitionError naming the layer that does not fit
    return net
