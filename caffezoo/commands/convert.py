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
import math
import os
from pathlib import Path

from caffezoo.cliargs import add_input_size, add_output
from caffezoo.errors import InputFileError, UsageError
from caffezoo.progress import Progress

TARGETS = ("caffe", "fork", "opencv")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from caffezoo.converters.registry import all_layouts, known
    from caffezoo.netio import DIALECTS

    parser.add_argument("--source", required=True, metavar="KIND:SPEC",
                        help=f"the source; kinds: {known()}")
    parser.add_argument("--model", default=None, metavar="ZOO_NAME",
                        help="zoo model to fill (see `caffezoo zoo`); required for card sources")
    add_output(parser, metavar="OUT", required=True, old=("--out",),
               help="output path without suffix: OUT.caffemodel and OUT.prototxt")
    add_input_size(parser, help="input size of the written prototxt (default: the card's)")
    parser.add_argument("--dialect", choices=DIALECTS, default=None,
                        help="how floor pooling is written (default ceil_mode; portable for a "
                        "free conversion with --target caffe; docs/formats.md)")
    parser.add_argument("--layout", choices=all_layouts(), default=None,
                        help="the checkpoint's naming scheme (default: recognised)")
    parser.add_argument("--keep-background", action="store_true",
                        help="keep a TF-slim checkpoint's background class (1001 outputs; "
                        "default: dropped, 1000 outputs)")
    parser.add_argument("--random-init", action="store_true",
                        help="first write seeded random weights to the source path (refused "
                        "when a file is there, unless --overwrite-source)")
    parser.add_argument("--overwrite-source", action="store_true",
                        help="with --random-init: replace the checkpoint at the source path")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="seed for --random-init")
    free = parser.add_argument_group("free conversions (graph sources, without --model)")
    free.add_argument("--input-shape", default=None, metavar="N,C,H,W",
                      help="input shape of the converted graph (default: the source's)")
    free.add_argument("--target", choices=TARGETS, default=None,
                      help="runtime the net must load in: stock caffe (default), the fork the "
                      "set-up builds, or OpenCV's importer (docs/conversion.md)")


def out_paths(out: str, name: str = "model") -> tuple[Path, Path]:
    """OUT.caffemodel and OUT.prototxt; inside OUT, named `name`, when OUT is a folder (an
    existing one, or any path written with a trailing slash)."""
    base = Path(out).expanduser()
    if out.endswith(("/", os.sep)) or base.is_dir():
        base = base / name
    elif base.suffix in (".caffemodel", ".prototxt"):
        base = base.with_suffix("")
    return base.with_name(base.name + ".caffemodel"), base.with_name(base.name + ".prototxt")


def checked_outputs(out: str, name: str):
    """The output pair and its OutputSet, checked (and the folder created) before any work."""
    from caffezoo.outputs import OutputSet

    caffemodel, prototxt = out_paths(out, name)
    return caffemodel, prototxt, OutputSet([caffemodel, prototxt], create_dirs=True)


def parse_input_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(v) for v in text.split(","))
    except ValueError:
        shape = ()
    if len(shape) != 4 or min(shape) < 1:
        raise InputFileError(f"--input-shape {text!r}: expected N,C,H,W with positive integers")
    if math.prod(shape) >= 1 << 31:  # what Caffe's CHECK on a blob's count allows
        raise InputFileError(f"--input-shape {text!r}: {math.prod(shape):,} values; Caffe's "
                             "limit is 2^31 - 1 per blob")
    return shape


def run(args: argparse.Namespace) -> int:
    from caffezoo.converters.registry import SOURCE_KINDS, parse_source

    source = parse_source(args.source)
    if args.seed < 0:
        raise UsageError(f"--seed must be at least 0, got {args.seed}")
    if args.input_shape is not None:
        parse_input_shape(args.input_shape)
    if args.model is None and source.kind.graph:
        return convert_graph(args, source)
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
    from caffezoo import zoo
    from caffezoo.converters.common import ConvertOptions, Op
    from caffezoo.converters.registry import check_background

    plugin = source.kind.plugin()
    if args.keep_background:
        check_background(source)
    card = zoo.get_card(args.model)
    if args.input_size is not None and args.input_size < 1:
        raise UsageError(f"--input-size must be at least 1, got {args.input_size}")
    if args.random_init:
        check_random_init_target(plugin, source, args.overwrite_source)
    elif args.overwrite_source:
        raise UsageError("--overwrite-source goes with --random-init")
    caffemodel, prototxt, outputs = checked_outputs(args.output, card.name)
    # a bar over the phases when they take more than a second (large nets), on a terminal
    with Progress(2 + bool(args.random_init), label="convert", unit="step", delay=1.0) as bar:
        if args.random_init:
            bar.note("writing a seeded random checkpoint")
            what = plugin.random_checkpoint(card.name, source.spec, args.layout, args.seed)
            bar.update(1)
        bar.note(f"reading and mapping {source.spec}")
        options = ConvertOptions(keep_background=args.keep_background)
        result = plugin.convert(source.spec, card, args.input_size, args.layout, options)
        bar.update(1, f"writing {caffemodel.name}")
        dialect = args.dialect or "ceil_mode"
        write_pair(result.net, outputs, caffemodel, prototxt, dialect)
        bar.update(1)
    if args.random_init:
        print(f"{source.spec}: seeded random weights (seed {args.seed}) in {what}, NOT trained "
              "weights")
    converted = sum(1 for a in result.plan.assigns if a.op in Op.WEIGHTED)
    print(f"{source.spec} -> {card.name} ({result.plan.layout} layout): {converted} modules "
          "converted")
    for prefix, count in result.ignored.items():
        print(f"  ignored {count} tensors under {prefix} ({result.plan.ignored[prefix]})")
    for note in result.notes:
        print(f"  {note}")
    print(f"wrote {caffemodel} ({caffemodel.stat().st_size:,} bytes) and {prototxt} "
          f"(pooling dialect {dialect})")
    return 0


def check_random_init_target(plugin, source, overwrite: bool) -> None:
    """--random-init writes to the source path: never over a checkpoint that is already there
    (it may be trained weights) unless --overwrite-source says so."""
    from caffezoo.outputs import check_target

    for path in plugin.random_checkpoint_files(source.spec):
        if os.path.lexists(path) and not overwrite:
            raise InputFileError(f"{path}: exists; --random-init would replace it with random "
                                 "weights (add --overwrite-source to replace it, or give "
                                 "another path)")
        check_target(path, create_dirs=True)


def convert_graph(args: argparse.Namespace, source) -> int:
    """A free conversion: the source's graph -> the emitter -> OUT.caffemodel + OUT.prototxt."""
    from caffezoo.errors import UsageError
    from caffezoo.graph.emit import emit

    card_only = [opt for opt, value in (("--input-size", args.input_size),
                                        ("--layout", args.layout),
                                        ("--random-init", args.random_init or None),
                                        ("--overwrite-source", args.overwrite_source or None))
                 if value is not None]
    if card_only:
        raise UsageError(f"{' and '.join(card_only)}: only for conversions into a zoo card "
                             "(--model); a free conversion takes --input-shape")
    shape = parse_input_shape(args.input_shape) if args.input_shape is not None else None
    caffemodel, prototxt, outputs = checked_outputs(args.output,
                                                    Path(source.spec).stem or "model")
    target = args.target or "caffe"
    dialect = args.dialect or ("portable" if target == "caffe" else "ceil_mode")
    with Progress(3, label="convert", unit="step", delay=1.0) as bar:
        bar.note(f"reading {source}")
        graph = source.kind.plugin().read_graph(source.spec, shape)
        bar.update(1, f"emitting for {target}")
        emitted = emit(graph, target)
        bar.update(1, f"writing {caffemodel.name}")
        write_pair(emitted.net, outputs, caffemodel, prototxt, dialect)
        bar.update(1)
    (in_shape,) = graph.inputs.values()
    types: dict[str, int] = {}
    for layer in emitted.net.layer:
        types[layer.type] = types.get(layer.type, 0) + 1
    print(f"{source} -> {prototxt.name} (target {target}): {len(graph.nodes)} graph nodes, "
          f"{len(emitted.net.layer)} Caffe layers, input {emitted.input_blob} "
          f"{'x'.join(map(str, in_shape))}, outputs {', '.join(emitted.output_blobs.values())}")
    print("  layers: " + ", ".join(f"{t} {n}" for t, n in sorted(types.items())))
    for note in [*graph.notes, *emitted.notes]:
        print(f"  {note}")
    print(f"wrote {caffemodel} ({caffemodel.stat().st_size:,} bytes) and {prototxt} "
          f"(pooling dialect {dialect})")
    return 0


def write_pair(net, outputs, caffemodel: Path, prototxt: Path, dialect: str) -> None:
    """Write both files or neither (caffezoo/outputs.py: staged, then renamed together)."""
    from caffezoo import netio

    with outputs:
        netio.write_caffemodel(net, outputs.stage(caffemodel), dialect=dialect)
        netio.write_prototxt(net, outputs.stage(prototxt), dialect=dialect)
        outputs.commit()
