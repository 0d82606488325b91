"""The input contract type and its file: values checked, round trip exact, bad files refused
with one line naming the file."""

from __future__ import annotations

import json

import pytest

from caffezoo.contract import (
    SUFFIX,
    InputContract,
    contract_path,
    find_contract,
)
from caffezoo.errors import CaffezooError, InputFileError

TIMM_LIKE = InputContract(channel_order="RGB", pixel_scale=1.0, mean=(0.485, 0.456, 0.406),
                          std=(0.229, 0.224, 0.225), input_size=(224, 224), resize_size=256,
                          interpolation="bicubic", resize="pil", origin="timm pretrained_cfg")


def test_round_trip_through_the_file(tmp_path):
    path = tmp_path / ("net" + SUFFIX)
    path.write_text(TIMM_LIKE.to_json())
    assert InputContract.read(path) == TIMM_LIKE
    data = json.loads(path.read_text())
    assert data["format"] == "caffezoo-input-contract" and data["version"] == 1
    assert data["mean"] == [0.485, 0.456, 0.406]


def test_normalization_on_255_pixels_and_in_bgr():
    mean, std = TIMM_LIKE.normalization_255()
    # hand-computed: 0.485 * 255 = 123.675, 0.229 * 255 = 58.395
    assert mean == pytest.approx((123.675, 116.28, 103.53))
    assert std == pytest.approx((58.395, 57.12, 57.375))
    bmean, bstd = TIMM_LIKE.bgr_normalization_255()
    assert bmean == pytest.approx((103.53, 116.28, 123.675))
    assert bstd == pytest.approx((57.375, 57.12, 58.395))
    caffe = InputContract(mean=(104.0, 117.0, 123.0))
    assert caffe.bgr_normalization_255() == ((104.0, 117.0, 123.0), (1.0, 1.0, 1.0))


def test_crop_pct_and_other_crop_sizes():
    assert TIMM_LIKE.crop_pct == 0.875
    at320 = TIMM_LIKE.at_crop(320)
    # timm's rule: floor(320 / 0.875) = 365
    assert at320.input_size == (320, 320) and at320.resize_size == 365
    assert TIMM_LIKE.at_crop(224) == TIMM_LIKE


def test_overrides_are_reported():
    new, said = TIMM_LIKE.overridden(mean=(0.5, 0.5, 0.5), std=None, resize="pil")
    assert new.mean == (0.5, 0.5, 0.5) and new.std == TIMM_LIKE.std
    assert said == ["mean: 0.485,0.456,0.406 -> 0.5,0.5,0.5 (given)"]


@pytest.mark.parametrize("values, needle", [
    ({"channel_order": "GBR"}, "channel_order"),
    ({"std": (1.0, 0.0, 1.0)}, "std needs positive"),
    ({"mean": (1.0, 2.0)}, "mean needs three"),
    ({"mean": (1.0, float("nan"), 2.0)}, "finite"),
    ({"input_size": (224, 200)}, "not square"),
    ({"resize_size": 100}, "smaller than the crop"),
    ({"resize": "skimage"}, "resize"),
    ({"output": "scores"}, "output"),
    ({"labels": "imagenet-21k"}, "labels"),
    ({"labels": ("a", "b"), "num_classes": 3}, "2 label names for 3 classes"),
    ({"pixel_scale": 0}, "pixel_scale"),
])
def test_bad_values_refused(values, needle):
    with pytest.raises(CaffezooError, match=needle):
        InputContract(**values)


@pytest.mark.parametrize("text, needle", [
    ("{", "not JSON"),
    ("[]", "not a JSON object"),
    ('{"format": "other", "version": 1}', "not a caffezoo input contract"),
    ('{"format": "caffezoo-input-contract", "version": 9}', "version 9"),
    ('{"format": "caffezoo-input-contract", "version": 1, "colour": 1}', "unknown field"),
    ('{"format": "caffezoo-input-contract", "version": 1, "mean": "x"}', "mean"),
    ('{"format": "caffezoo-input-contract", "version": 1, "input_size": [1e9, 3]}',
     "input_size"),
    # a hand-written file without its mean took 0,0,0 silently
    ('{"format": "caffezoo-input-contract", "version": 1, "channel_order": "BGR", '
     '"pixel_scale": 255, "std": [1, 1, 1], "input_size": [227, 227], "resize_size": 256, '
     '"interpolation": "bilinear", "resize": "opencv"}', "missing field.s. mean$"),
])
def test_bad_files_name_the_file(tmp_path, text, needle):
    path = tmp_path / "m.contract.json"
    path.write_text(text)
    with pytest.raises(InputFileError, match=needle) as info:
        InputContract.read(path)
    assert str(path) in str(info.value)


def test_found_beside_the_net(tmp_path):
    proto = tmp_path / "rx50.prototxt"
    assert contract_path(proto) == tmp_path / "rx50.contract.json"
    assert contract_path(tmp_path / "rx50.caffemodel") == tmp_path / "rx50.contract.json"
    assert find_contract(proto, None) is None
    (tmp_path / "rx50.contract.json").write_text(TIMM_LIKE.to_json())
    found, where = find_contract(None, proto)
    assert found == TIMM_LIKE and where == tmp_path / "rx50.contract.json"
