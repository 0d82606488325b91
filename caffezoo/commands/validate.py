"""`caffezoo validate --source KIND:SPEC --model ZOO_NAME --weights OUT.caffemodel`:
run the source model and the converted Caffe model on the same images and compare them
(caffezoo/validation/, docs/conversion.md). Exit status 1 when the relative error of the logits
exceeds the tolerance (default 1e-4) or, with --layers, any compared layer does.

Without --model, a graph source (converted freely by `caffezoo convert --source KIND:SPEC -o
OUT`) is validated value by value (caffezoo/validation/graph.py): both sides get the identical
input tensor, the source's graph runner at the prototxt's input shape."""

from __future__ import annotations

import argparse
from pathlib import Path

from caffezoo.cliargs import (
    add_batch_size,
    add_channel_order,
    add_input_size,
    add_json,
    add_source_channel_order,
    json_to_stdout,
    source_channel_order,
    write_json,
)
from caffezoo.converters.registry import open_card_source
from caffezoo.errors import UsageError, ValidationFailed
from caffezoo.validation.report import DEFAULT_TOLERANCE


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from caffezoo.converters.registry import all_layouts, known

    parser.add_argument("--source", required=True, metavar="KIND:SPEC",
                        help=f"the source that was converted; kinds: {known()}")
    parser.add_argument("--model", default=None, metavar="ZOO_NAME",
                        help="the zoo model it was converted into (card sources; a graph "
                        "source converted without a card takes none)")
    parser.add_argument("--weights", required=True, metavar="W",
                        help="the converted .caffemodel")
    parser.add_argument("--prototxt", default=None, metavar="P",
                        help="the net to run (default: the .prototxt beside --weights, else "
                        "the zoo net at --input-size)")
    add_input_size(parser, help="input size when no prototxt is found (default: the card's)")
    inputs = parser.add_mutually_exclusive_group()
    inputs.add_argument("--images", metavar="DIR",
                        help="a folder of images (prepared as `caffezoo eval` prepares them "
                        "for the net's contract: its resize, one centre crop)")
    inputs.add_argument("--random", type=int, metavar="N", default=None,
                        help="N seeded random images (default when --images is not given: 4)")
    parser.add_argument("--limit", type=int, default=None, metavar="N",
                        help="use at most N images")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="seed of --random")
    parser.add_argument("--backend",
                        choices=("pycaffe", "opencv", "onnxruntime", "openvino", "torch", "auto"),
                        default="pycaffe")
    parser.add_argument("--layout", choices=all_layouts(), default=None,
                        help="the checkpoint's naming scheme (default: recognised)")
    parser.add_argument("--keep-background", action="store_true",
                        help="the conversion kept a TF-slim background class (1001 outputs)")
    parser.add_argument("--layers", nargs="?", const="worst", choices=("worst", "all"),
                        default=None, metavar="all",
                        help="compare every mapped layer (first batch): the report names the "
                        "first that diverges and lists the worst; `--layers all` lists every "
                        "one (the JSON report always does)")
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE, metavar="T",
                        help=f"largest accepted relative error (default {DEFAULT_TOLERANCE:g})")
    add_batch_size(parser, default=4, help="inputs per forward (default 4)", old=("--batch",))
    add_channel_order(parser, help="graph sources: the net's input channel order, for a net "
                      "without its OUT.contract.json (the contract's otherwise; given, it "
                      "overrides the contract and the report says so)")
    add_source_channel_order(parser, help="graph sources: the order the source takes its "
                             "input channels in, as given to convert for a file that does "
                             "not say (default rgb); the source is fed in it")
    add_json(parser, "the report")


def run(args: argparse.Namespace) -> int:
    import math
    import tempfile

    for flag in ("random", "limit", "batch_size", "input_size"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise UsageError(f"--{flag.replace('_', '-')} must be at least 1, got {value}")
    if args.seed < 0:
        raise UsageError(f"--seed must be at least 0, got {args.seed}")
    if not math.isfinite(args.tolerance) or args.tolerance < 0:
        raise UsageError(f"--tolerance must be a finite number >= 0, got {args.tolerance}")
    with tempfile.TemporaryDirectory(prefix="caffezoo-validate-") as tmp:
        return _run(args, tmp)


def _run(args: argparse.Namespace, tmp: str) -> int:
    from caffezoo import netio, zoo
    from caffezoo.contract import find_contract
    from caffezoo.converters.registry import parse_source
    from caffezoo.validation import card as card_side
    from caffezoo.validation.engine import open_caffe
    from caffezoo.validation.inputs import make_inputs

    if args.model is None:
        source = parse_source(args.source)
        if source.kind.graph:
            return run_graph(args, source)
        raise UsageError(f"--source {source}: give --model ZOO_NAME, the zoo model it was "
                             "converted into")
    if args.channel_order is not None or args.source_channel_order is not None:
        flag = "--channel-order" if args.channel_order is not None \
            else "--source-channel-order"
        raise UsageError(f"{flag} belongs to graph sources; a net converted into "
                         f"--model {args.model} takes the card's BGR input")
    card = zoo.get_card(args.model)
    prototxt = args.prototxt or default_prototxt(args.weights)
    if prototxt is None:
        net = card.build(args.input_size)
        prototxt = Path(tmp) / f"{card.name}.prototxt"
        netio.write_prototxt(net, prototxt)
    size = int(_nchw_input(prototxt)[-1])
    zoo_net = card.build(size)
    # the contract first: one that contradicts the net is named before the source opens
    found = find_contract(prototxt, args.weights)
    contract = card_side.net_contract(card, size, found[0] if found is not None else None)
    source = open_card_source(args.source, card, zoo_net, args.layout,
                                  args.keep_background)
    inputs = make_inputs((3, size, size), contract, source.input_norm, args.images,
                         args.random, args.seed, args.limit)
    with open_caffe(prototxt, args.weights, args.backend, bool(args.layers)) as caffe:
        report = card_side.validate(source, card, zoo_net, caffe, inputs, contract,
                                    args.source, args.tolerance, bool(args.layers),
                                    max(1, args.batch_size))
    return print_report(args, report)


def default_prototxt(weights) -> Path | None:
    """OUT.prototxt beside OUT.caffemodel, as `caffezoo convert` writes them."""
    p = Path(weights).with_suffix(".prototxt")
    return p if p.exists() else None


def print_report(args: argparse.Namespace, report) -> int:
    """The report as text or JSON; ValidationFailed (status 1) naming the first divergent
    layer when it did not pass."""
    from caffezoo.validation.report import failure_line

    write_json(args.json, report.to_dict())
    if not json_to_stdout(args):
        print("\n".join(report.lines(all_layers=args.layers == "all")))
    if not report.passed:
        raise ValidationFailed(failure_line(args.weights, report))
    return 0


def _nchw_input(prototxt) -> tuple[int, ...]:
    from caffezoo import analysis, netio

    return analysis.nchw_input(netio.read_prototxt(prototxt), prototxt)


def run_graph(args: argparse.Namespace, source) -> int:
    from caffezoo.contract import source_input
    from caffezoo.errors import InputFileError, UsageError
    from caffezoo.validation import graph as graph_side
    from caffezoo.validation.engine import open_caffe

    if args.layout is not None or args.input_size is not None:
        raise UsageError("--layout and --input-size belong to validations against a zoo "
                             "card (--model); a graph source runs at the prototxt's input shape")
    given_order = source_channel_order(args)
    prototxt = args.prototxt or default_prototxt(args.weights)
    if prototxt is None:
        raise InputFileError(f"{args.weights}: no prototxt beside it; give --prototxt")
    shape = _nchw_input(prototxt)
    # the contract first: one that contradicts the net is named before the source complains
    contract, net_order, said = graph_net_contract(args, prototxt)
    plugin = source.kind.plugin()
    runner = plugin.open_graph_runner(source.spec, shape)
    # with --layers, the graph's value names find their blobs (named after them)
    graph = plugin.read_graph(source.spec, shape) if args.layers else None
    # the source's order: --source-channel-order, else what it states, else RGB (as convert
    # took it)
    source_norm, source_order, order_said = source_input(
        runner.input_norm, given_order, source.contract_record())
    said = said + order_said
    if net_order is None or shape[1] != 3:
        net_order = source_order
    pre = contract.in_order(source_order) if contract is not None else None
    reverse = net_order != source_order
    inputs = graph_side.graph_inputs(runner, args.images, args.random, args.seed, args.limit,
                                     pre or source_norm, reverse)
    with open_caffe(prototxt, args.weights, args.backend, bool(args.layers)) as caffe:
        report = graph_side.validate(runner, caffe, inputs, str(source), args.tolerance,
                                     bool(args.layers), max(1, args.batch_size), graph,
                                     net_order if reverse else "")
    if not report.passed and runner.input_norm is None and given_order is None \
            and shape[1] == 3:
        said.append("note: the source states no channel order and was fed RGB; one that "
                    "takes BGR needs --source-channel-order bgr, as given to convert")
    if not json_to_stdout(args):
        for line in said:
            print(line)
    return print_report(args, report)


def graph_net_contract(args: argparse.Namespace, prototxt):
    """(the contract beside the net or None, the net's channel order or None when nothing
    says it, lines saying what --channel-order changed)."""
    from caffezoo.contract import find_contract

    found = find_contract(prototxt, args.weights)
    if found is None:
        return None, args.channel_order, []
    contract, path = found
    contract, said = contract.overridden(channel_order=args.channel_order)
    lines = [f"input contract: {path}"] + [f"  {line}" for line in said]
    return contract, contract.channel_order, lines
