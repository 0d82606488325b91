"""`caffezoo convert --source torch:CHECKPOINT --model ZOO_NAME [-o OUT]`: port a source
framework's weights into a zoo net, writing OUT.caffemodel and the matching OUT.prototxt
(docs/conversion.md).

CHECKPOINT is a PyTorch state_dict (.pth/.pt/.bin, read with weights_only=True; a `state_dict`
or `model` entry is unwrapped) or a Lua Torch .t7 model. Its naming scheme (torchvision, timm,
lua) is recognised from the tensor names, or named with --layout. Nothing is written unless every
tensor finds its place: a mismatch stops with the full list of missing, unexpected and
wrong-shaped tensors. `--random-init` first writes a seeded random checkpoint to CHECKPOINT (not
trained weights; for trying the pipeline and for tests).
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

from caffezoo.errors import InputFileError

# framework prefix of --source -> "module:function" with the signature of
# caffezoo.converters.torch.convert
CONVERTERS = {"torch": "caffezoo.converters.torch:convert"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from caffezoo.netio import DIALECTS

    parser.add_argument("--source", required=True, metavar="FRAMEWORK:CHECKPOINT",
                        help="e.g. torch:resnext50_32x4d.pth or torch:resnext_50_32x4d.t7")
    parser.add_argument("--model", required=True, help="zoo model to fill (see `caffezoo zoo`)")
    parser.add_argument("-o", "--out", required=True, metavar="OUT",
                        help="output path without suffix: OUT.caffemodel and OUT.prototxt")
    parser.add_argument("--input-size", type=int, default=None,
                        help="input size of the written prototxt (default: the card's)")
    parser.add_argument("--dialect", choices=DIALECTS, default="ceil_mode",
                        help="how floor pooling is written (default ceil_mode; docs/formats.md)")
    parser.add_argument("--layout", choices=("torchvision", "timm", "lua"), default=None,
                        help="the checkpoint's naming scheme (default: recognised)")
    parser.add_argument("--random-init", action="store_true",
                        help="first write seeded random weights to CHECKPOINT (PyTorch only)")
    parser.add_argument("--seed", type=int, default=0, help="seed for --random-init")


def out_paths(out: str) -> tuple[Path, Path]:
    base = Path(out)
    if base.suffix in (".caffemodel", ".prototxt"):
        base = base.with_suffix("")
    return base.with_name(base.name + ".caffemodel"), base.with_name(base.name + ".prototxt")


def split_source(spec: str) -> tuple[str, str]:
    framework, sep, path = spec.partition(":")
    if not sep or not path:
        raise InputFileError(f"--source {spec!r}: expected FRAMEWORK:PATH, e.g. torch:model.pth")
    if framework not in CONVERTERS:
        raise InputFileError(f"--source {spec!r}: unknown framework {framework!r} (known: "
                             f"{', '.join(CONVERTERS)})")
    return framework, path


def run(args: argparse.Namespace) -> int:
    from caffezoo import netio, zoo

    framework, path = split_source(args.source)
    card = zoo.get_card(args.model)
    if args.random_init:
        from caffezoo.converters.torch import default_layout, is_lua, save_random_checkpoint

        if is_lua(path):
            raise InputFileError(f"{path}: --random-init writes PyTorch files; make .t7 "
                                 "fixtures with tests/t7writer.py")
        save_random_checkpoint(card.name, args.layout or default_layout(card.name), path,
                               args.seed)
        print(f"{path}: seeded random weights (seed {args.seed}), NOT trained weights")
    module, _, func = CONVERTERS[framework].partition(":")
    convert = getattr(importlib.import_module(module), func)
    result = convert(path, card, args.input_size, args.layout)
    caffemodel, prototxt = out_paths(args.out)
    caffemodel.parent.mkdir(parents=True, exist_ok=True)
    netio.write_caffemodel(result.net, caffemodel, dialect=args.dialect)
    netio.write_prototxt(result.net, prototxt, dialect=args.dialect)
    converted = sum(1 for a in result.plan.assigns if a.op in ("conv", "bn", "linear"))
    print(f"{path} -> {card.name} ({result.plan.layout} layout): {converted} modules converted")
    for prefix, count in result.ignored.items():
        print(f"  ignored {count} tensors under {prefix} ({result.plan.ignored[prefix]})")
    for note in result.notes:
        print(f"  {note}")
    print(f"wrote {caffemodel} ({caffemodel.stat().st_size:,} bytes) and {prototxt} "
          f"(pooling dialect {args.dialect})")
    return 0
