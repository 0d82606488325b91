"""`caffezoo convert --source KIND:SPEC --model ZOO_NAME [-o OUT]`: port a source's weights into
a zoo net, writing OUT.caffemodel and the matching OUT.prototxt (docs/conversion.md).

The source kinds are registered in caffezoo/converters/registry.py (`caffezoo convert --help`
lists them). A card source (e.g. `torch:` PyTorch .pth / Lua .t7) fills the zoo card named by
--model; its naming scheme (torchvision, timm, lua) is recognised from the tensor names, or named
with --layout. Nothing is written unless every tensor finds its place: a mismatch stops with the
full list of missing, unexpected and wrong-shaped tensors. `--random-init` first writes a seeded
random checkpoint to the source path (not trained weights; for trying the pipeline and for
tests). --input-shape and --target belong to free (graph) conversions without a zoo card.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from caffezoo.errors import InputFileError

TARGETS = ("caffe", "fork", "opencv")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from caffezoo.converters.registry import all_layouts, known
    from caffezoo.netio import DIALECTS

    parser.add_argument("--source", required=True, metavar="KIND:SPEC",
                        help=f"the source; kinds: {known()}")
    parser.add_argument("--model", default=None,
                        help="zoo model to fill (see `caffezoo zoo`); required for card sources")
    parser.add_argument("-o", "--out", required=True, metavar="OUT",
                        help="output path without suffix: OUT.caffemodel and OUT.prototxt")
    parser.add_argument("--input-size", type=int, default=None,
                        help="input size of the written prototxt (default: the card's)")
    parser.add_argument("--dialect", choices=DIALECTS, default="ceil_mode",
                        help="how floor pooling is written (default ceil_mode; docs/formats.md)")
    parser.add_argument("--layout", choices=all_layouts(), default=None,
                        help="the checkpoint's naming scheme (default: recognised)")
    parser.add_argument("--random-init", action="store_true",
                        help="first write seeded random weights to the source path")
    parser.add_argument("--seed", type=int, default=0, help="seed for --random-init")
    free = parser.add_argument_group("free conversions (graph sources, without --model)")
    free.add_argument("--input-shape", default=None, metavar="N,C,H,W",
                      help="input shape of the converted graph (default: the source's)")
    free.add_argument("--target", choices=TARGETS, default=None,
                      help="runtime the net must load in: stock caffe, the fork the set-up "
                      "builds, or OpenCV's importer")


def out_paths(out: str) -> tuple[Path, Path]:
    base = Path(out)
    if base.suffix in (".caffemodel", ".prototxt"):
        base = base.with_suffix("")
    return base.with_name(base.name + ".caffemodel"), base.with_name(base.name + ".prototxt")


def parse_input_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(v) for v in text.split(","))
    except ValueError:
        shape = ()
    if len(shape) != 4 or min(shape) < 1:
        raise InputFileError(f"--input-shape {text!r}: expected N,C,H,W with positive integers")
    return shape


def run(args: argparse.Namespace) -> int:
    from caffezoo.converters.registry import SOURCE_KINDS, parse_source

    source = parse_source(args.source)
    if args.input_shape is not None:
        parse_input_shape(args.input_shape)
    if args.model is None:
        graph = [k.name for k in SOURCE_KINDS.values() if k.graph]
        raise InputFileError(
            f"--source {source}: give --model ZOO_NAME; a {source.kind.name} source converts "
            f"into zoo cards" + (f" (kinds that convert without a card: {', '.join(graph)})"
                                 if graph else ""))
    if not source.kind.card:
        raise InputFileError(f"--source {source}: a {source.kind.name} source converts without "
                             f"a zoo card; drop --model")
    given = [opt for opt, value in (("--input-shape", args.input_shape),
                                    ("--target", args.target)) if value is not None]
    if given:
        verb = "belongs" if len(given) == 1 else "belong"
        raise InputFileError(f"{' and '.join(given)} {verb} to free (graph) conversions; a "
                             f"conversion into --model {args.model} takes --input-size and "
                             "--dialect")
    return convert_into_card(args, source)


def convert_into_card(args: argparse.Namespace, source) -> int:
    from caffezoo import netio, zoo
    from caffezoo.converters.common import Op

    plugin = source.kind.plugin()
    card = zoo.get_card(args.model)
    if args.random_init:
        what = plugin.random_checkpoint(card.name, source.spec, args.layout, args.seed)
        print(f"{source.spec}: seeded random weights (seed {args.seed}) in {what}, NOT trained "
              "weights")
    result = plugin.convert(source.spec, card, args.input_size, args.layout, None)
    caffemodel, prototxt = out_paths(args.out)
    caffemodel.parent.mkdir(parents=True, exist_ok=True)
    netio.write_caffemodel(result.net, caffemodel, dialect=args.dialect)
    netio.write_prototxt(result.net, prototxt, dialect=args.dialect)
    converted = sum(1 for a in result.plan.assigns if a.op in Op.WEIGHTED)
    print(f"{source.spec} -> {card.name} ({result.plan.layout} layout): {converted} modules "
          "converted")
    for prefix, count in result.ignored.items():
        print(f"  ignored {count} tensors under {prefix} ({result.plan.ignored[prefix]})")
    for note in result.notes:
        print(f"  {note}")
    print(f"wrote {caffemodel} ({caffemodel.stat().st_size:,} bytes) and {prototxt} "
          f"(pooling dialect {args.dialect})")
    return 0
