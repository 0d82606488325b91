"""`caffezoo export --to onnx|torch (--prototxt P | --model ZOO_NAME [--input-size N])
--weights W -o OUT [--opset N] [--dynamic-batch] [--fold-bn]`: a Caffe net as an ONNX file or a
PyTorch module file, with Caffe's semantics exactly (docs/export.md).

    caffezoo export --to onnx --prototxt deploy.prototxt --weights w.caffemodel -o net.onnx
    caffezoo export --to torch --model resnext50_32x4d --weights r50.caffemodel -o r50.pt

A torch file loads with `caffezoo.export.torch.load("r50.pt")` (weights_only, no pickled code).
"""

from __future__ import annotations

import argparse

from caffezoo.errors import CaffezooError, UsageError
from caffezoo.progress import Progress


def add_arguments(p: argparse.ArgumentParser) -> None:
    from caffezoo.export.onnx import DEFAULT_OPSET, MIN_OPSET

    p.add_argument("--to", required=True, choices=("onnx", "torch"), help="the output format")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--prototxt", metavar="P", help="deploy prototxt (any legacy form)")
    src.add_argument("--model", metavar="ZOO_NAME", help="a zoo model (prototxt generated)")
    p.add_argument("--input-size", type=int, metavar="N",
                   help="square input size (default: the zoo model's or the prototxt's)")
    p.add_argument("--weights", required=True, metavar="W", help=".caffemodel")
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="the file to write (.onnx, or .pt for --to torch)")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, metavar="N",
                   help=f"ONNX opset ({MIN_OPSET} or later; default {DEFAULT_OPSET})")
    p.add_argument("--dynamic-batch", action="store_true",
                   help="ONNX: a symbolic batch axis 'N' (torch files take any batch anyway)")
    p.add_argument("--fold-bn", action="store_true",
                   help="fold BatchNorm and the Scale after it into the convolution before "
                        "them (float32 rounding differences only; docs/export.md)")


def run(args) -> int:
    from caffezoo import netio
    from caffezoo.analysis import analyze, input_names
    from caffezoo.export import export_net
    from caffezoo.outputs import OutputSet

    if args.input_size is not None and args.input_size < 1:
        raise UsageError(f"--input-size must be at least 1, got {args.input_size}")
    # checked before the weights are read: a usable file path, not one of the inputs
    outputs = OutputSet({"-o": args.output},
                        inputs={"--weights": args.weights, "--prototxt": args.prototxt})
    contract = None
    if args.model:
        from caffezoo.zoo import get_card

        card = get_card(args.model)
        net = card.build(args.input_size)
        source = f"zoo model {args.model}"
        shapes = None
        contract = card.contract(args.input_size or card.input_size)
        contract_from = f"the zoo card {card.name}"
    else:
        net = netio.read_prototxt(args.prototxt)
        source = args.prototxt
        shapes = None
        if args.input_size is not None:
            names = input_names(net)
            stats = analyze(net)
            if len(names) != 1 or len(stats.inputs[names[0]]) != 4:
                raise CaffezooError(f"{args.prototxt}: --input-size needs one NCHW input")
            n, c = stats.inputs[names[0]][:2]
            shapes = {names[0]: (n, c, args.input_size, args.input_size)}
        from caffezoo.contract import find_contract

        found = find_contract(args.prototxt, args.weights)
        if found is not None:
            contract, path = found
            contract_from = str(path)
            if args.input_size is not None and args.input_size != contract.crop_size:
                contract = contract.at_crop(args.input_size)
    # a bar only when the export takes more than a second (large nets), on a terminal
    with Progress(2, label="export", unit="step", delay=1.0) as bar, outputs:
        bar.note("reading the weights")
        ex = export_net.prepare(net, netio.read_weights(args.weights), source, shapes, args.fold_bn)
        bar.update(1, f"writing {args.output}")
        if args.to == "onnx":
            from caffezoo.export.onnx import write_onnx

            write_onnx(ex, outputs.stage(args.output), args.opset, args.dynamic_batch, contract)
        else:
            from caffezoo.export import torch as export_torch

            export_torch.save(export_torch.to_torch(ex), outputs.stage(args.output), contract)
        outputs.commit()
        bar.update(1)
    inputs = ", ".join(f"{k} {'x'.join(map(str, v))}" for k, v in ex.inputs.items())
    folded = f", {len(ex.folded)} BatchNorm/Scale layers folded" if ex.folded else ""
    print(f"{args.output}: {args.to} export of {source} ({len(ex.net.layer)} layers, input "
          f"{inputs}, outputs {', '.join(ex.outputs)}{folded})")
    if contract is None:
        print("  input contract: none beside the net (a bare prototxt)")
    else:
        where = "the ONNX metadata" if args.to == "onnx" else "the torch file"
        print(f"  input contract: from {contract_from}, in {where} (caffezoo.contract)")
    return 0
