"""The `tf-slim` source kind: TF-slim checkpoints (Inception-v3/v4, Inception-ResNet-v2,
ResNet-v2-101/152) into the zoo's `_tfslim` variant cards.

- reader.py: checkpoint prefix or folder -> Checkpoint (slim names, HWIO -> OIHW);
- nets.py: the slim nets, the variants they fill, their batch-norm settings;
- plans.py: scopes -> zoo layer names, with TF's padding checked window by window;
- runner.py: TensorFlow graph mode with the checkpoint restored, for validate;
- random_init.py: seeded random checkpoints.

This module is the plug-in face the source registry (converters/registry.py) calls.
"""

from __future__ import annotations

import glob
from pathlib import Path

from caffezoo.contract import input_affine
from caffezoo.converters.common import Checkpoint, Conversion, ConvertOptions, apply_plan
from caffezoo.converters.tfslim import nets
from caffezoo.converters.tfslim.plans import plan_for
from caffezoo.converters.tfslim.reader import read_checkpoint, top_scope, with_naming
from caffezoo.converters.tfslim.runner import TF_INPUT, SlimSource
from caffezoo.errors import ConversionError

__all__ = ["RANDOM_SUFFIX", "convert", "convert_checkpoint", "has_random",
           "open_source", "random_checkpoint", "random_checkpoint_files", "read_checkpoint"]

RANDOM_SUFFIX = ".ckpt"


def has_random(card_name: str) -> bool:
    return card_name in nets.BY_CARD


def random_checkpoint(card_name: str, path: str | Path, layout: str | None = None,
                      seed: int = 0) -> str:
    from caffezoo.converters.tfslim.random_init import save_random_checkpoint

    _no_layout(layout)
    net = nets.for_card(card_name)
    save_random_checkpoint(net, path, seed)
    return f"a TF-slim {net.scope} checkpoint"


def random_checkpoint_files(path: str | Path) -> list[Path]:
    """The index and the data shard(s) of the checkpoint PREFIX."""
    prefix = Path(path)
    shards = sorted(prefix.parent.glob(f"{glob.escape(prefix.name)}.data-*"))
    return [prefix.with_name(prefix.name + ".index"),
            *(shards or [prefix.with_name(prefix.name + ".data-00000-of-00001")])]


def _no_layout(layout: str | None) -> None:
    if layout is not None:
        raise ConversionError(f"--layout {layout}: TF-slim checkpoints have one naming scheme "
                              "(no --layout)")


def _zoo_net(card, input_size: int | None, keep_background: bool):
    """The card's net; with the background class kept, its classifier has 1001 outputs."""
    net = card.build(input_size)
    if keep_background:
        for layer in net.layer:
            if layer.type == "InnerProduct":
                layer.inner_product_param.num_output += nets.BACKGROUND_CLASSES
    return net


def _prepare(ckpt: Checkpoint, card) -> tuple[Checkpoint, nets.SlimNet]:
    net = nets.for_card(card.name)
    scope = top_scope(ckpt)
    if scope != net.scope:
        held = nets.BY_SCOPE.get(scope)
        raise ConversionError(f"{ckpt.path}: holds {scope}"
                              + (f" (convert it into --model {held.card})" if held else "")
                              + f", not {net.scope} for {card.name}")
    return with_naming(ckpt, net.has_gamma), net


def convert(spec: str | Path, card, input_size: int | None = None, layout: str | None = None,
            options: ConvertOptions | None = None) -> Conversion:
    """The card's net at `input_size` carrying the checkpoint's weights (nothing written)."""
    _no_layout(layout)
    nets.for_card(card.name)  # refuse an unsuitable card before reading a large file
    return convert_checkpoint(read_checkpoint(spec), card, input_size, options)


def convert_checkpoint(ckpt: Checkpoint, card, input_size: int | None = None,
                       options: ConvertOptions | None = None) -> Conversion:
    options = options or ConvertOptions()
    ckpt, net = _prepare(ckpt, card)
    size = input_size or card.input_size
    if net.max_size is not None and size > net.max_size:
        raise ConversionError(f"{card.name} at {size} px: TF-slim's {net.scope} averages 8x8 "
                              f"windows, not the whole map, above {net.max_size} px; no exact "
                              f"conversion (use --input-size {net.max_size} or less)")
    zoo_net = _zoo_net(card, input_size, options.keep_background)
    plan = plan_for(net, options.keep_background)
    if options.affine is None:
        from dataclasses import replace

        options = replace(options, affine=input_affine(TF_INPUT, card.mean, card.std))
    result = apply_plan(zoo_net, ckpt, plan, options)
    fmt = ", ".join
    mean, std = TF_INPUT.bgr_normalization_255()
    note = (f"input mapping: TF's x / 127.5 - 1 on RGB is BGR mean "
            f"[{fmt(f'{v:g}' for v in mean)}] std [{fmt(f'{v:g}' for v in std)}]")
    note += " = the card's" if options.affine is None else (
        f"; the card's mean [{fmt(f'{v:g}' for v in card.mean)}] std "
        f"[{fmt(f'{v:g}' for v in card.std)}] differ: folded into the first convolution")
    result.notes.insert(0, note)
    result.notes.append("background class (slim output 0) "
                        + ("kept: 1001 outputs" if options.keep_background
                           else "dropped: 1000 outputs, class i is slim's i + 1"))
    return result


def open_source(spec: str | Path, card, net, layout: str | None = None,
                keep_background: bool = False) -> SlimSource:
    """The checkpoint restored into its slim net at the input size of `net` (the zoo net)."""
    _no_layout(layout)
    ckpt, slim_net = _prepare(read_checkpoint(spec), card)
    size = int(next(layer for layer in net.layer if layer.type == "Input"
                    ).input_param.shape[0].dim[-1])
    return SlimSource(ckpt, plan_for(slim_net, keep_background), slim_net, size)
