"""The PyTorch model definitions that run (and randomly initialise) each checkpoint layout, and
the input normalisation each expects."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from caffezoo.contract import IMAGENET, InputContract
from caffezoo.errors import ConversionError

# torchvision's and timm's normalisations, stated (as they are) on RGB pixels 0..1: IMAGENET
# (caffezoo.contract) and Inception's
INCEPTION = InputContract(channel_order="RGB", pixel_scale=1.0, mean=(0.5, 0.5, 0.5),
                          std=(0.5, 0.5, 0.5))


@dataclass(frozen=True)
class SourceArch:
    """A PyTorch model definition that runs a checkpoint of a layout, for validation and for
    seeded random checkpoints."""

    factory: str  # "torchvision:<fn>" or "timm:<name>"
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    # what the model's forward() expects, and what its first convolution sees (differs when
    # the model transforms its input itself: torchvision Inception3's transform_input)
    input_norm: InputContract = IMAGENET
    effective_norm: InputContract = IMAGENET
    calib_size: int = 128  # input size for the statistics of random checkpoints

    def build(self):
        from caffezoo.frameworks import import_timm, import_torchvision

        lib, _, name = self.factory.partition(":")
        if lib == "torchvision":
            return getattr(import_torchvision().models, name)(weights=None, **self.kwargs)
        return import_timm().create_model(name, pretrained=False, **self.kwargs)


_TV_INCEPTION = SourceArch("torchvision:inception_v3",
                           {"aux_logits": True, "transform_input": True, "init_weights": True},
                           input_norm=IMAGENET, effective_norm=INCEPTION, calib_size=299)
# (zoo card, layout) -> the source architecture
SOURCE_ARCHS: dict[tuple[str, str], SourceArch] = {
    ("resnext50_32x4d", "torchvision"): SourceArch("torchvision:resnext50_32x4d"),
    ("resnext50_32x4d", "timm"): SourceArch("timm:resnext50_32x4d"),
    ("resnext101_32x4d", "timm"): SourceArch("timm:resnext101_32x4d"),
    ("resnext101_64x4d", "torchvision"): SourceArch("torchvision:resnext101_64x4d"),
    ("resnext101_64x4d", "timm"): SourceArch("timm:resnext101_64x4d"),
    ("wrn50_2", "torchvision"): SourceArch("torchvision:wide_resnet50_2"),
    ("wrn50_2", "timm"): SourceArch("timm:wide_resnet50_2"),
    ("inception_v3_tv", "torchvision"): _TV_INCEPTION,
    ("inception_v4_timm", "timm"): SourceArch("timm:inception_v4", input_norm=INCEPTION,
                                              effective_norm=INCEPTION, calib_size=139),
    ("inception_resnet_v2_timm", "timm"): SourceArch(
        "timm:inception_resnet_v2", input_norm=INCEPTION, effective_norm=INCEPTION,
        calib_size=139),
}


def source_arch(card_name: str, layout: str) -> SourceArch:
    arch = SOURCE_ARCHS.get((card_name, layout))
    if arch is None:
        known = ", ".join(f"{c} ({lay})" for c, lay in SOURCE_ARCHS)
        raise ConversionError(f"no {layout} model definition for {card_name!r} (known: {known})")
    return arch


def default_layout(card_name: str) -> str:
    """The first layout with a model definition for the card (for random checkpoints)."""
    for card, layout in SOURCE_ARCHS:
        if card == card_name:
            return layout
    raise ConversionError(f"no PyTorch model definition converts into {card_name!r}")


def source_normalization(card_name: str, layout: str) -> tuple[InputContract, InputContract]:
    """(input normalisation, effective normalisation) of a source; Lua models were trained
    with fb.resnet.torch's ImageNet mean/std on RGB."""
    if layout == "lua":
        return IMAGENET, IMAGENET
    arch = source_arch(card_name, layout)
    return arch.input_norm, arch.effective_norm
