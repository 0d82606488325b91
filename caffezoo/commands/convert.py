"""`caffezoo convert --source KIND:SPEC --model ZOO_NAME [-o OUT]`: port a source's weights into
a zoo net, writing OUT.caffemodel and the matching OUT.prototxt (docs/conversion.md).

The source kinds are registered in caffezoo/converters/registry.py (`caffezoo convert --help`
lists them). A card source (e.g. `torch:` PyTorch .pth / Lua .t7) fills the zoo card named by
--model; its naming scheme (torchvision, timm, lua) is recognised from the tensor names, or named
with --layout. Nothing is written unless every tensor finds its place: a mismatch stops with the
full list of missing, unexpected and wrong-shaped tensors. `--random-init` first writes a seeded
random checkpoint to the source path (not trained weights; for trying the pipeline and for
tests). --input-shape and --target belong to free (graph) conversions without a zoo card.

Every conversion also writes OUT.contract.json, the net's input contract (docs/contract.md):
the card's, or what a graph source states (timm's pretrained_cfg, torchvision's weights
transforms, the Gluon convention, a caffezoo export's ONNX metadata), else the contract flags,
else an assumed default that the summary names as such. Graph conversions give BGR-input nets
(the input channels of the convolutions reading the input reversed when the source takes RGB)
unless --channel-order rgb; --source-channel-order states the order of a source whose file does
not (contract.source_input).
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

from caffezoo.cliargs import (
    add_channel_order,
    add_input_size,
    add_output,
    add_source_channel_order,
    source_channel_order,
)
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
    add_contract_arguments(parser)


def _triple(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}"
                                         ) from None
    if len(values) == 1:
        values = values * 3
    if len(values) != 3 or not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"expected 1 or 3 finite numbers, got {text!r}")
    return values


def add_contract_arguments(parser: argparse.ArgumentParser) -> None:
    from caffezoo.contract import INTERPOLATIONS, LABEL_SETS, RESIZE_KINDS

    c = parser.add_argument_group(
        "input contract (written beside the net as OUT.contract.json; docs/contract.md); "
        "flags override what the source states, and the summary says so")
    add_channel_order(c, help="the converted net's input channel order (graph sources; default "
                      "bgr); when it differs from the source's, the input channels of the "
                      "convolutions reading the input are reversed")
    add_source_channel_order(c, help="the order the source takes its input channels in, for "
                             "a graph source whose file does not say (an ONNX file without "
                             "caffezoo metadata, e.g. a Caffe or OpenCV model exported by "
                             "another tool; default rgb); refused where the file's caffezoo "
                             "metadata states the other; for torchvision/timm/mxnet it "
                             "overrides their RGB convention, and the summary says so")
    c.add_argument("--mean", type=_triple, metavar="M1,M2,M3",
                   help="the source's per-channel mean, in the source's channel order (RGB "
                   "unless it or --source-channel-order says otherwise), on pixels "
                   "0..--pixel-scale (graph sources)")
    c.add_argument("--std", type=_triple, metavar="S1,S2,S3",
                   help="the source's per-channel std, as --mean (graph sources)")
    c.add_argument("--pixel-scale", type=float, default=None, metavar="1|255",
                   help="the pixel range --mean/--std are stated on: 1 (0..1, as PyTorch "
                   "states them) or 255 (graph sources)")
    size = c.add_mutually_exclusive_group()
    size.add_argument("--resize-size", type=int, default=None, metavar="S",
                      help="short side the image is resized to before the centre crop")
    size.add_argument("--crop-pct", type=float, default=None, metavar="P",
                      help="crop / resize as timm states it: resize to floor(crop / P)")
    c.add_argument("--interpolation", choices=INTERPOLATIONS, default=None,
                   help="the resize's interpolation")
    c.add_argument("--resize", choices=RESIZE_KINDS, default=None,
                   help="opencv: the original evaluation's cv2.resize (no antialiasing); pil: "
                   "torchvision/timm's antialiased PIL resize")
    c.add_argument("--labels", default=None, metavar="SET|FILE",
                   help=f"class names: {', '.join(LABEL_SETS)}, none, or a text file with one "
                   "name per line")


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
    """The output pair and its OutputSet (with the contract beside them), checked (and the
    folder created) before any work."""
    from caffezoo.contract import contract_path
    from caffezoo.outputs import OutputSet

    caffemodel, prototxt = out_paths(out, name)
    return caffemodel, prototxt, OutputSet([caffemodel, prototxt, contract_path(prototxt)],
                                           create_dirs=True)


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
    from caffezoo.card_plan import Op
    from caffezoo.converters.common import ConvertOptions
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
    contract, given = card_contract(args, card)
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
        write_pair(result.net, outputs, caffemodel, prototxt, dialect, contract)
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
    print_contract(contract, f"the zoo card's ({card.name})", given, prototxt)
    print(f"wrote {caffemodel} ({caffemodel.stat().st_size:,} bytes) and {prototxt} "
          f"(pooling dialect {dialect})")
    return 0


# -- the input contract ----------------------------------------------------------------------


def given_contract_values(args: argparse.Namespace, crop: int) -> dict:
    """The contract fields the flags give (None where a flag is absent), checked."""
    from caffezoo.contract import read_labels

    if args.pixel_scale is not None and not (math.isfinite(args.pixel_scale)
                                             and args.pixel_scale > 0):
        raise UsageError(f"--pixel-scale must be a positive number, got {args.pixel_scale:g}")
    resize = args.resize_size
    if resize is not None and resize < crop:
        raise UsageError(f"--resize-size {resize} is smaller than the {crop} px crop")
    if args.crop_pct is not None:
        if not (math.isfinite(args.crop_pct) and 0 < args.crop_pct <= 1):
            raise UsageError(f"--crop-pct must be in (0, 1], got {args.crop_pct:g}")
        resize = max(crop, math.floor(crop / args.crop_pct + 1e-9))
    return {"mean": args.mean, "std": args.std, "pixel_scale": args.pixel_scale,
            "resize_size": resize, "interpolation": args.interpolation, "resize": args.resize,
            "labels": None if args.labels is None else read_labels(args.labels)}


def _flags_given(args: argparse.Namespace, names: tuple[str, ...]) -> list[str]:
    return [f"--{n.replace('_', '-')}" for n in names if getattr(args, n) is not None]


def card_contract(args: argparse.Namespace, card):
    """The card's contract at the converted size (a kept background class adds output 0), with
    the flags that may change it: how images are resized, and the labels. The input itself
    (BGR, the card's mean/std) is what the conversion folds into the weights."""
    from dataclasses import replace

    fixed = _flags_given(args, ("mean", "std", "pixel_scale", "channel_order",
                                "source_channel_order"))
    if fixed:
        raise UsageError(f"{', '.join(fixed)}: a conversion into --model {card.name} gives the "
                         "card's input (BGR, its mean/std, folded into the weights); these "
                         "flags belong to free (graph) conversions")
    size = args.input_size or card.input_size
    contract = card.contract(size)
    if args.keep_background:
        contract = replace(contract, num_classes=contract.num_classes + 1, label_offset=1)
    return _override(contract, given_contract_values(args, size))


def _override(contract, values: dict):
    from caffezoo.errors import CaffezooError

    try:
        return contract.overridden(**values)
    except CaffezooError as err:  # e.g. a labels file that does not fit the outputs
        raise UsageError(f"the contract flags: {err}") from None


def graph_contract(args: argparse.Namespace, graph, emitted, order: str, source_order: str,
                   order_said: list[str]):
    """(contract or None, where it comes from, the lines saying what flags changed) for a
    free conversion whose net takes its channels in `order`, its source in `source_order`
    (`order_said`: what --source-channel-order changed, source_input)."""
    from dataclasses import replace

    from caffezoo.contract import ASSUMED

    (shape,) = graph.inputs.values()
    if len(shape) != 4 or shape[1] != 3 or shape[2] != shape[3]:
        return None, (f"none: the input {'x'.join(map(str, shape))} is not a square 3-channel "
                      "image"), []
    size = int(shape[2])
    known = graph.contract
    base = known or ASSUMED.in_order(source_order)
    if base.crop_size != size:
        base = base.at_crop(size)
    out = graph.outputs[0]
    out_shape = emitted.shapes.get(emitted.output_blobs.get(out, ""))
    classes = math.prod(out_shape[1:]) if out_shape else base.num_classes
    if classes != base.num_classes:
        base = replace(base, num_classes=classes, label_offset=int(classes == 1001),
                       labels="imagenet-1k" if classes in (1000, 1001) else None)
    producer = next((n for n in graph.nodes if out in n.outputs), None)
    base = replace(base, output="probabilities" if producer is not None
                   and producer.op == "softmax" else "logits")
    contract, said = _override(base, given_contract_values(args, size))
    flags = _flags_given(args, ("mean", "std", "pixel_scale", "resize_size", "crop_pct",
                                "interpolation", "resize", "labels"))
    if args.source_channel_order is not None and (known is None or order_said):
        flags.insert(0, "--source-channel-order")
    said = order_said + said
    if known is None and not flags:
        how = "ASSUMED (the source states none; give the contract flags if it differs)"
    elif known is None:
        how = "given by hand"
        contract = replace(contract, origin=f"given by hand ({', '.join(flags)}); the rest "
                           "assumed: torchvision's ImageNet convention")
    else:
        how = "from the source" + (f", {', '.join(flags)} given by hand" if flags
                                          else "")
        if flags:
            contract = replace(contract, origin=f"{known.origin}; {', '.join(flags)} given "
                               "by hand")
    return contract.in_order(order), how, said


def print_contract(contract, how: str, given: list[str], prototxt: Path) -> None:
    from caffezoo.contract import contract_path

    if contract is None:
        print(f"  input contract: {how}")
        return
    print(f"  input contract ({contract_path(prototxt).name}): {how}")
    for line in contract.describe():
        print(f"    {line}")
    for line in given:
        print(f"    {line}")


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
    from caffezoo.contract import source_input
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
    given_contract_values(args, 1)  # bad flag values refused before the work
    given_order = source_channel_order(args)
    with Progress(3, label="convert", unit="step", delay=1.0) as bar:
        bar.note(f"reading {source}")
        graph = source.kind.plugin().read_graph(source.spec, shape)
        graph.contract, source_order, order_said = source_input(
            graph.contract, given_order, source.contract_record())
        order, channel_note = channel_order(args, graph, source_order)
        bar.update(1, f"emitting for {target}")
        emitted = emit(graph, target)
        contract, how, given = graph_contract(args, graph, emitted, order, source_order,
                                              order_said)
        bar.update(1, f"writing {caffemodel.name}")
        write_pair(emitted.net, outputs, caffemodel, prototxt, dialect, contract)
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
    print(f"  {channel_note}")
    print_contract(contract, how, given, prototxt)
    print(f"wrote {caffemodel} ({caffemodel.stat().st_size:,} bytes) and {prototxt} "
          f"(pooling dialect {dialect})")
    return 0


def channel_order(args: argparse.Namespace, graph, source: str) -> tuple[str, str]:
    """The converted net's input channel order, and a line saying it. `source`: the source's
    order (source_input); the net's is --channel-order, default BGR."""
    (shape,) = graph.inputs.values()
    if len(shape) != 4 or shape[1] != 3:
        given = _flags_given(args, ("channel_order", "source_channel_order"))
        if given:
            raise UsageError(f"{', '.join(given)}: the input {'x'.join(map(str, shape))} has "
                             "no 3 colour channels")
        return source, "input channels: as the source's (not a 3-channel image)"
    order = args.channel_order or "BGR"
    if order == source:
        why = [] if args.channel_order else ["the source's order"]
        if args.source_channel_order is not None:
            why.append(f"--source-channel-order {source.lower()}")
        keep = f" ({', '.join(why)})" if why else ""
        return order, f"input channels: {order}{keep}"
    from caffezoo.graph.channels import reverse_input_channels

    notes = reverse_input_channels(graph)
    how = "--channel-order" if args.channel_order else "the default; --channel-order rgb keeps " \
        "the source's"
    return order, (f"input channels: {order} ({how}): the source takes {source}, "
                   + "; ".join(notes))


def write_pair(net, outputs, caffemodel: Path, prototxt: Path, dialect: str,
               contract=None) -> None:
    """Write the files or none (caffezoo/outputs.py: staged, then renamed together): the
    caffemodel, the prototxt and, when there is one, the input contract beside them."""
    from caffezoo import netio
    from caffezoo.contract import contract_path

    with outputs:
        netio.write_caffemodel(net, outputs.stage(caffemodel), dialect=dialect)
        netio.write_prototxt(net, outputs.stage(prototxt), dialect=dialect)
        if contract is not None:
            outputs.write(contract_path(prototxt), contract.to_json())
        outputs.commit()
    if contract is None:  # a contract left by an earlier conversion would be wrong now
        contract_path(prototxt).unlink(missing_ok=True)
