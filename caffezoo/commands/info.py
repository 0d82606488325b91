"""`caffezoo info NET.prototxt [--weights W] [--json [FILE]] [--input-shape N,C,H,W]`: the
layers of a net with their output shapes, parameters and MACs, and totals; with --weights,
whether every blob of the .caffemodel fits the prototxt; the input contract beside the net
(`NET.contract.json`, docs/contract.md) when there is one. See docs/info.md."""

from __future__ import annotations

import argparse
import sys

from caffezoo.analysis import (
    NetAnalysis,
    WeightReport,
    analyze,
    check_weights,
    format_shape,
    input_names,
)
from caffezoo.cliargs import add_json, json_to_stdout, write_json
from caffezoo.errors import CaffezooError
from caffezoo.table import format_table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prototxt", help="the net (.prototxt; legacy formats are upgraded)")
    parser.add_argument("--weights", metavar="W",
                        help="a .caffemodel whose blob shapes are checked against the net")
    add_json(parser, "the layers, totals and weight check")
    parser.add_argument("--input-shape", action="append", default=[], metavar="[NAME=]N,C,H,W",
                        help="replace the declared input shape (NAME= is needed only when the "
                        "net has several inputs); may be repeated")


def parse_input_shapes(specs: list[str], inputs: list[str]) -> dict[str, tuple[int, ...]]:
    """`N,C,H,W` or `NAME=N,C,H,W` strings as {input name: shape}."""
    shapes: dict[str, tuple[int, ...]] = {}
    for spec in specs:
        name, _, dims = spec.rpartition("=")
        if not name:
            if len(inputs) != 1:
                raise CaffezooError(f"--input-shape {spec}: the net has {len(inputs)} inputs "
                                    f"({', '.join(inputs)}); write NAME=N,C,H,W")
            name = inputs[0]
        try:
            shape = tuple(int(d) for d in dims.replace("x", ",").split(","))
        except ValueError:
            shape = ()
        if not shape or any(d <= 0 for d in shape):
            raise CaffezooError(f"--input-shape {spec}: expected positive integers like "
                                "1,3,224,224")
        shapes[name] = shape
    return shapes


def run(args: argparse.Namespace) -> int:
    from caffezoo import netio
    from caffezoo.contract import find_contract

    net = netio.read_prototxt(args.prototxt)
    contract = find_contract(args.prototxt, args.weights)
    analysis = analyze(net, parse_input_shapes(args.input_shape, input_names(net)))
    report = None
    if args.weights:
        report = check_weights(analysis, netio.read_weights(args.weights))

    if args.json:
        data = analysis.to_dict()
        if report is not None:
            data["weights"] = {"path": str(args.weights), **report.to_dict()}
        data["contract"] = (None if contract is None
                            else {"path": str(contract[1]), **contract[0].to_dict()})
        write_json(args.json, data)
    if not json_to_stdout(args):
        print(layer_table(analysis))
        print(format_contract(contract))
        if report is not None:
            print(format_weight_report(report, str(args.weights)))
    sys.stdout.flush()
    if report is not None:
        report.raise_for_mismatch(str(args.weights))
    return 0


def layer_table(analysis: NetAnalysis) -> str:
    """The per-layer table and the totals, as text."""
    header = ("layer", "type", "output shape", "params", "MACs")
    rows = []
    for s in analysis.layers:
        out = ", ".join(format_shape(shape) for shape in s.out_shapes) or "-"
        rows.append((s.name, s.type, out, f"{s.params:,}", f"{s.macs:,}"))
    inputs = ", ".join(f"{k} {format_shape(v)}" for k, v in analysis.inputs.items())
    outputs = ", ".join(f"{k} {format_shape(analysis.blob_shapes[k])}" for k in analysis.outputs)
    lines = [format_table(header, rows, align="lllrr"), ""]
    lines.append(f"net:        {analysis.name or '(unnamed)'}, {len(analysis.layers)} layers")
    lines.append(f"inputs:     {inputs or 'none'}")
    silenced = ", ".join(f"{k} {format_shape(analysis.blob_shapes[k])}"
                         for k in analysis.silenced)
    lines.append(f"outputs:    {outputs or 'none'}"
                 + (f" (read only by Silence: {silenced}; export and the runtimes return them)"
                    if silenced else ""))
    lines.append(f"parameters: {analysis.total_params:,} ({analysis.total_params / 1e6:.2f} M, "
                 "learnable weights)")
    if analysis.total_stats:
        lines.append(f"BN stats:   {analysis.total_stats:,} (BatchNorm mean/variance/factor, not "
                     "counted as parameters)")
    lines.append(f"MACs:       {analysis.total_macs:,} ({analysis.total_macs / 1e9:.3f} GMACs, "
                 "Convolution/Deconvolution/InnerProduct at this input size)")
    return "\n".join(lines)


def format_contract(found) -> str:
    """The input contract beside the net, or how a bare net is evaluated."""
    if found is None:
        return ("contract:   none beside the net (eval and validate use the original "
                "evaluation's defaults or their flags; docs/contract.md)")
    contract, path = found
    return "\n".join([f"contract:   {path}", *(f"  {line}" for line in contract.describe())])


def format_weight_report(report: WeightReport, path: str) -> str:
    lines = ["", f"weights:    {path}",
             f"  layers that fit: {len(report.matched)}"]
    if report.mismatches:
        lines.append(f"  MISMATCHES ({len(report.mismatches)}):")
        lines += [f"    {m.describe()}" for m in report.mismatches]
    if report.missing:
        lines.append(f"  layers without weights ({len(report.missing)}; Caffe keeps their "
                     f"initial values): {_first_names(report.missing)}")
    else:
        lines.append("  layers without weights: none")
    if report.unused:
        lines.append(f"  weights for layers not in the net ({len(report.unused)}; Caffe ignores "
                     f"them): {_first_names(report.unused)}")
    return "\n".join(lines)


def _first_names(names: list[str], shown: int = 8) -> str:
    """The first names of a long list (--json lists them all)."""
    rest = len(names) - shown
    return ", ".join(names[:shown]) + (f", ... ({rest} more; --json lists all)" if rest > 0
                                        else "")
