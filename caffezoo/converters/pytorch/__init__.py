"""The `torch` source kind: PyTorch state_dicts (.pth/.pt/.bin) and Lua Torch .t7 models, into
zoo cards (ResNeXt, WRN, and the torchvision/timm Inception variants).

- reader.py: files -> Checkpoint (the file's tensors, TORCH_NAMING); lua.py reads .t7 trees;
- plans.py: the four family plans, layouts and their recognition from tensor names;
- models.py: the PyTorch model definition and input normalisation of each (card, layout);
- runner.py: runs a checkpoint for validate; random_init.py: seeded random checkpoints.

This module is the plug-in face the source registry (converters/registry.py) calls.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from caffezoo.contract import input_affine
from caffezoo.converters.common import Checkpoint, Conversion, ConvertOptions, apply_plan
from caffezoo.converters.pytorch.models import (
    IMAGENET,
    INCEPTION,
    SOURCE_ARCHS,
    SourceArch,
    default_layout,
    source_arch,
    source_normalization,
)
from caffezoo.converters.pytorch.plans import LAYOUTS, detect_layout, family_of
from caffezoo.converters.pytorch.random_init import random_model, save_random_checkpoint
from caffezoo.converters.pytorch.reader import is_lua, load_checkpoint, load_pytorch
from caffezoo.converters.pytorch.runner import TorchSource, no_background, open_source
from caffezoo.errors import InputFileError

__all__ = ["IMAGENET", "INCEPTION", "LAYOUTS", "RANDOM_SUFFIX", "SOURCE_ARCHS",
           "SourceArch", "TorchSource", "convert", "convert_checkpoint", "default_layout",
           "detect_layout", "family_of", "has_random", "is_lua", "load_checkpoint",
           "load_pytorch", "open_source", "random_checkpoint", "random_checkpoint_files",
           "random_model", "save_random_checkpoint", "source_arch", "source_normalization"]

RANDOM_SUFFIX = ".pth"


def has_random(card_name: str) -> bool:
    return any(name == card_name for name, _ in SOURCE_ARCHS)


def random_checkpoint(card_name: str, path: str | Path, layout: str | None = None,
                      seed: int = 0) -> str:
    """Write a seeded random checkpoint for the card; returns what it is."""
    if is_lua(path):
        raise InputFileError(f"{path}: random checkpoints are PyTorch files; make .t7 fixtures "
                             "with tests/helpers/t7writer.py")
    layout = layout or default_layout(card_name)
    save_random_checkpoint(card_name, layout, path, seed)
    return f"a {layout} checkpoint"


def random_checkpoint_files(path: str | Path) -> list[Path]:
    return [Path(path)]


def convert(path: str | Path, card, input_size: int | None = None, layout: str | None = None,
            options: ConvertOptions | None = None) -> Conversion:
    """The zoo net of `card` at `input_size`, carrying the checkpoint's weights (nothing is
    written: `caffezoo convert` writes the result atomically)."""
    ckpt, _ = load_checkpoint(path)
    return convert_checkpoint(ckpt, card, input_size, layout, options)


def convert_checkpoint(ckpt: Checkpoint, card, input_size: int | None = None,
                       layout: str | None = None,
                       options: ConvertOptions | None = None) -> Conversion:
    """`convert` for a checkpoint already read."""
    options = options or ConvertOptions()
    no_background(options.keep_background)
    net = card.build(input_size)
    plan = detect_layout(net, card, ckpt, layout)
    _, effective = source_normalization(card.name, plan.layout)
    if options.affine is None:
        options = replace(options, affine=input_affine(effective, card.mean, card.std))
    result = apply_plan(net, ckpt, plan, options)
    fmt = ", ".join
    mean, std = effective.bgr_normalization_255()
    note = (f"input mapping: the source's {effective.describe_normalization()} is BGR mean "
            f"[{fmt(f'{v:g}' for v in mean)}] std [{fmt(f'{v:g}' for v in std)}]")
    if options.affine is None:
        note += " = the card's"
    else:
        note += (f"; the card's mean [{fmt(f'{v:g}' for v in card.mean)}] std "
                 f"[{fmt(f'{v:g}' for v in card.std)}] differ: folded into the first convolution")
    result.notes.insert(0, note)
    return result
