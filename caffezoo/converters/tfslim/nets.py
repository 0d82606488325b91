"""The TF-slim nets the `tf-slim` source kind knows: which zoo variant each fills, how to build
it in TensorFlow (tf_slim.nets for Inception-v3 and ResNet-v2, caffezoo/model_defs for
Inception-v4 and Inception-ResNet-v2), and its batch-norm settings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from caffezoo.errors import ConversionError

BACKGROUND_CLASSES = 1  # slim's 1001 outputs: index 0 is "background"
NUM_CLASSES = 1001


@dataclass(frozen=True)
class SlimNet:
    scope: str  # the model's variable scope in the checkpoint
    card: str  # the zoo variant it converts into
    original: str  # the zoo original it differs from
    builder: str  # "module:function"
    scope_fn: str  # "module:function" of the argument scope
    has_gamma: bool
    bn_eps: float
    aux_scope: str = "AuxLogits"  # auxiliary head (training only); "" when none
    default_size: int = 299
    global_pool_kw: bool = False  # the builder takes global_pool= (tf_slim.nets)
    # the plan also maps onto the original's layers (whose checks then refuse what differs)
    maps_onto_original: bool = True
    # above this input size the slim net's final pooling is not global (tf_slim's
    # Inception-v3 averages 8x8 windows VALID), so no exact conversion exists
    max_size: int | None = None

    def build(self, inputs, is_training: bool = False, aux: bool = False,
              bn_decay: float | None = None):
        """(logits (N, 1001), end_points), the net built in the current graph."""
        fn = _resolve(self.builder)
        scope_fn = _resolve(self.scope_fn)
        kwargs = {"num_classes": NUM_CLASSES, "is_training": is_training}
        if self.global_pool_kw:
            kwargs["global_pool"] = True  # any input size pools the whole map
        if self.aux_scope:
            kwargs["create_aux_logits"] = aux
        with scope_fn(**({} if bn_decay is None else {"bn_decay": bn_decay})):
            logits, ends = fn(inputs, **kwargs)
        return logits, ends


def _resolve(target: str) -> Callable:
    import importlib

    module, _, name = target.partition(":")
    if module.startswith("tf_slim"):
        from caffezoo.frameworks import import_tf_slim

        import_tf_slim()  # patched before tf_slim.nets is imported
    return getattr(importlib.import_module(module), name)


_SCOPES = "caffezoo.model_defs.slim_scopes"
NETS: tuple[SlimNet, ...] = (
    SlimNet("InceptionV3", "inception_v3_tfslim", "inception_v3",
            "tf_slim.nets.inception_v3:inception_v3", f"{_SCOPES}:inception_scope",
            has_gamma=False, bn_eps=0.001, max_size=299),
    SlimNet("InceptionV4", "inception_v4_tfslim", "inception_v4",
            "caffezoo.model_defs.inception_v4:inception_v4", f"{_SCOPES}:inception_scope",
            has_gamma=False, bn_eps=0.001),
    SlimNet("InceptionResnetV2", "inception_resnet_v2_tfslim", "inception_resnet_v2",
            "caffezoo.model_defs.inception_resnet_v2:inception_resnet_v2",
            f"{_SCOPES}:inception_scope", has_gamma=False, bn_eps=0.001),
    SlimNet("resnet_v2_101", "resnet101_v2_tfslim", "resnet101_v2",
            "tf_slim.nets.resnet_v2:resnet_v2_101", f"{_SCOPES}:resnet_scope",
            has_gamma=True, bn_eps=1e-5, aux_scope="", default_size=224, global_pool_kw=True,
            maps_onto_original=False),
    SlimNet("resnet_v2_152", "resnet152_v2_tfslim", "resnet152_v2",
            "tf_slim.nets.resnet_v2:resnet_v2_152", f"{_SCOPES}:resnet_scope",
            has_gamma=True, bn_eps=1e-5, aux_scope="", default_size=224, global_pool_kw=True,
            maps_onto_original=False),
)
BY_CARD = {net.card: net for net in NETS}
BY_SCOPE = {net.scope: net for net in NETS}


def for_card(card_name: str) -> SlimNet:
    """The slim net that fills a card (an Inception original too: its plan's checks then say
    what differs and name the variant), or ConversionError naming the variant to use."""
    net = BY_CARD.get(card_name)
    if net is not None:
        return net
    for net in NETS:
        if net.original == card_name and net.maps_onto_original:
            return net
        if net.original == card_name:
            raise ConversionError(
                f"model {card_name!r}: TF-slim's {net.scope} computes differently from the "
                f"zoo's {card_name} (docs/conversion.md); convert it into --model {net.card}")
    raise ConversionError(f"model {card_name!r}: no TF-slim net converts into it (TF-slim "
                          f"cards: {', '.join(BY_CARD)})")
