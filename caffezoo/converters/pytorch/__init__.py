"""The `torch` source kind: PyTorch state_dicts (.pth/.pt/.bin) and Lua Torch .t7 models, into
zoo cards (ResNeXt, WRN, and the torchvision/timm Inception variants).

- reader.py: files -> Checkpoint (the file's tensors, TORCH_NAMING); lua.py reads .t7 trees;
- models.py: the PyTorch model definition and input normalisation of each (card, layout), the
  one model builder and state_dict loader, the ONNX trace;
- cards.py: checkpoint -> its model -> traced graph -> paired with the card's net -> Plan;
- runner.py: runs a checkpoint for validate; random_init.py: seeded random checkpoints.

This module is the plug-in face the source registry (converters/registry.py) calls.
"""

from __future__ import annotations

from pathlib import Path

from caffezoo.converters.common import Checkpoint, Conversion, ConvertOptions, apply_plan
from caffezoo.converters.pytorch.cards import input_note, pair_with_card
from caffezoo.converters.pytorch.models import (
    IMAGENET,
    INCEPTION,
    SOURCE_ARCHS,
    SourceArch,
    build_model,
    default_layout,
    load_weights,
    source_arch,
)
from caffezoo.converters.pytorch.random_init import random_model, save_random_checkpoint
from caffezoo.converters.pytorch.reader import is_lua, load_checkpoint, load_pytorch
from caffezoo.converters.pytorch.runner import TorchSource, no_background, open_source
from caffezoo.errors import InputFileError

__all__ = ["IMAGENET", "INCEPTION", "RANDOM_SUFFIX", "SOURCE_ARCHS",
           "SourceArch", "TorchSource", "build_model", "convert", "convert_checkpoint",
           "default_layout", "has_random", "is_lua", "load_checkpoint", "load_pytorch",
           "load_weights", "open_source", "random_checkpoint", "random_checkpoint_files",
           "random_model", "save_random_checkpoint", "source_arch"]

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
    pairing = pair_with_card(ckpt, card, net, layout, options.bgr)
    # the input convention is already folded into the tensors
    result = apply_plan(net, pairing.ckpt, pairing.plan,
                        ConvertOptions(bgr=False, ceil_pooling=options.ceil_pooling))
    result.ignored = pairing.ignored
    result.notes[:0] = [input_note(pairing.effective_norm, card), *pairing.notes]
    return result
