"""One rule for a card's preprocessing (ModelCard.contract): eval, validate and demo take
mean, std and the resize-before-crop size from the same place, so they agree at every crop."""

from __future__ import annotations

import argparse

import pytest

from caffezoo import zoo
from caffezoo.commands import eval as eval_cmd
from caffezoo.validation.card import net_contract


def _eval_preprocessing(model: str, crop: int | None):
    parser = argparse.ArgumentParser()
    eval_cmd.add_arguments(parser)
    argv = ["--val-list", "v.txt", "--weights", "w", "--model", model]
    if crop is not None:
        argv += ["--crop-size", str(crop)]
    args = parser.parse_args(argv)
    return eval_cmd.resolve_pipeline(args, eval_cmd.resolve_model(args))[0]


@pytest.mark.parametrize("model, crop, base", [
    # the card's own settings (the original evaluation_cls.py's table)
    ("resnext50_32x4d", 224, 256), ("resnext50_32x4d", 320, 320),
    ("inception_v4", 299, 320), ("inception_v4", 395, 395),
    # other crops: the first setting's ratio, rounded: 112 * 256 / 224 = 128,
    # 160 * 320 / 299 = 171.2 -> 171, 64 * 256 / 224 = 73.1 -> 73
    ("resnext50_32x4d", 112, 128), ("wrn50_2", 64, 73), ("inception_v3_tv", 160, 171),
    # never below the crop: 330 * 256 / 224 = 377 (ratio), but 320 of 320 is a setting
    ("resnet101_v2", 330, 377),
])
def test_eval_validate_and_the_card_agree(model, crop, base):
    card = zoo.get_card(model)
    assert card.base_size(crop) == base
    assert card.contract(crop).resize_size == base
    assert net_contract(card, crop, None).resize_size == base  # validate's
    pre = _eval_preprocessing(model, crop)
    assert (pre.base_size, pre.crop_size) == (base, crop)
    assert pre.contract.mean == card.mean and pre.contract.std == card.std


def test_default_crop_is_the_first_setting():
    for card in zoo.all_cards(variants=True):
        got = card.contract()
        first = card.eval_settings[0]
        assert (got.crop_size, got.resize_size) == (first.crop_size, first.base_size)
        pre = _eval_preprocessing(card.name, None)
        assert (pre.crop_size, pre.base_size) == (got.crop_size, got.resize_size)


def test_crop_pct_as_timm_reports_it():
    assert zoo.get_card("resnext50_32x4d").contract(224).crop_pct == 0.875
    assert zoo.get_card("resnext50_32x4d").contract(320).crop_pct == 1.0
    assert zoo.get_card("inception_v3").contract().crop_pct == pytest.approx(299 / 320)


def test_crop_sweep_uses_the_rule_for_each_crop():
    parser = argparse.ArgumentParser()
    eval_cmd.add_arguments(parser)
    args = parser.parse_args(["--val-list", "v.txt", "--weights", "w", "--model",
                              "resnext50_32x4d", "--crop-sizes", "112,224,320"])
    source = eval_cmd.resolve_model(args)
    pre, resolved = eval_cmd.resolve_pipeline(args, source)
    settings = eval_cmd.sweep_settings(args, pre, source.card, resolved)
    assert [(p.crop_size, p.base_size) for p in settings] == [(112, 128), (224, 256), (320, 320)]


@pytest.mark.parametrize("model, labels", [("resnext50_32x4d", "imagenet-1k"),
                                           ("inception_v3", "imagenet-1k-devkit"),
                                           ("inception_v3_tfslim", "imagenet-1k")])
def test_card_contract_says_what_the_generated_net_is(model, labels):
    """The card's contract: BGR 0..255 with the card's mean/std, the original's OpenCV resize,
    and an output that is what the generated net ends in (Softmax `prob` over num_classes)."""
    card = zoo.get_card(model)
    c = card.contract()
    assert (c.channel_order, c.pixel_scale, c.resize, c.interpolation) == (
        "BGR", 255.0, "opencv", "bilinear")
    assert (c.mean, c.std) == (card.mean, card.std)
    assert c.bgr_normalization_255() == (card.mean, card.std)
    assert c.labels == labels and c.label_offset == 0
    net = card.build(c.crop_size)
    last = net.layer[-1]
    assert (last.type, last.top[0]) == ("Softmax", "prob") and c.output == "probabilities"
    fc = next(layer for layer in net.layer if layer.name == last.bottom[0]
              or last.bottom[0] in layer.top)
    assert fc.inner_product_param.num_output == c.num_classes == card.num_classes
    dims = net.layer[0].input_param.shape[0].dim
    assert list(dims)[2:] == list(c.input_size)
