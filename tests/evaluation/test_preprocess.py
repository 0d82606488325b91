"""Crop schemes on small synthetic images whose crops are known by hand.

Pixels encode their own coordinates (B = 10 * row, G = 10 * column, R = 7), mean 0 and std 1,
so every crop can be read back as the rows and columns it came from."""

from __future__ import annotations

import numpy as np
import pytest

from caffezoo.errors import CaffezooError
from caffezoo.evaluation import preprocess as pp
from caffezoo.evaluation.preprocess import original

pytestmark = pytest.mark.opencv

ZERO = (0.0, 0.0, 0.0)
ONE = (1.0, 1.0, 1.0)


def coord_image(h: int, w: int) -> np.ndarray:
    img = np.zeros((h, w, 3), dtype=np.uint8)
    img[:, :, 0] = (10 * np.arange(h))[:, None]
    img[:, :, 1] = (10 * np.arange(w))[None, :]
    img[:, :, 2] = 7
    return img


def rows_cols(crop_nchw: np.ndarray) -> tuple[list[float], list[float]]:
    """(rows, columns) a CHW crop came from, read from its B and G planes."""
    b, g, r = crop_nchw
    assert np.all(r == 7)
    # B is constant along a row and G along a column for every crop of a coordinate image.
    assert np.all(b == b[:, :1]) and np.all(g == g[:1, :])
    return list(b[:, 0] / 10), list(g[0, :] / 10)


def test_resize_short_side_floors_the_long_side():
    assert pp.resize_short_side(coord_image(5, 7), 3).shape == (3, 4, 3)  # 7 * 3 // 5 = 4
    assert pp.resize_short_side(coord_image(7, 5), 3).shape == (4, 3, 3)
    assert pp.resize_short_side(coord_image(6, 6), 4).shape == (4, 4, 3)


def test_normalize_per_bgr_channel():
    img = np.full((2, 2, 3), 200, dtype=np.uint8)
    out = pp.normalize(img, (100, 150, 0), (50, 25, 200))
    assert out.dtype == np.float64
    assert np.array_equal(out[0, 0], [2.0, 2.0, 1.0])


def test_one_crop_is_the_centre_with_floored_offsets():
    # 6 x 9, short side 6 = base (no resize), crop 4: rows 1..4, columns (9 - 4) // 2 = 2..5.
    p = original(ZERO, ONE, base_size=6, crop_size=4, crop_num=1)
    out = p(coord_image(6, 9))
    assert out.shape == (1, 3, 4, 4) and out.dtype == np.float32
    assert rows_cols(out[0]) == ([1, 2, 3, 4], [2, 3, 4, 5])


def test_one_crop_mean_std_and_channel_order():
    img = coord_image(4, 4)
    p = original((5.0, 10.0, 1.0), (2.0, 5.0, 3.0), base_size=4, crop_size=2, crop_num=1)
    out = p(img)[0]
    # centre 2x2 at (1, 1): B = 10 * row, G = 10 * col, R = 7
    assert np.allclose(out[0], [[(10 - 5) / 2] * 2, [(20 - 5) / 2] * 2])
    assert np.allclose(out[1], [[(10 - 10) / 5, (20 - 10) / 5]] * 2)
    assert np.allclose(out[2], (7 - 1) / 3)


def test_ten_crop_is_caffe_oversample_of_the_resized_image():
    # 6 x 8, crop 4: corners TL, TR, BL, BR, centre (1, 2), then each crop mirrored.
    p = original(ZERO, ONE, base_size=6, crop_size=4, crop_num=10)
    out = p(coord_image(6, 8))
    assert out.shape == (10, 3, 4, 4)
    expected = [([0, 1, 2, 3], [0, 1, 2, 3]), ([0, 1, 2, 3], [4, 5, 6, 7]),
                ([2, 3, 4, 5], [0, 1, 2, 3]), ([2, 3, 4, 5], [4, 5, 6, 7]),
                ([1, 2, 3, 4], [2, 3, 4, 5])]
    for i, (rows, cols) in enumerate(expected):
        assert rows_cols(out[i]) == (rows, cols), i
        assert rows_cols(out[5 + i]) == (rows, cols[::-1]), i  # the same crop, mirrored


def test_ten_crop_odd_margin_centre():
    # 7 x 7, crop 4: centre offset (7 - 4) // 2 = 1 in both directions.
    out = original(ZERO, ONE, 7, 4, 10)(coord_image(7, 7))
    assert rows_cols(out[4]) == ([1, 2, 3, 4], [1, 2, 3, 4])
    assert rows_cols(out[9]) == ([1, 2, 3, 4], [4, 3, 2, 1])


def test_twelve_crop_squashes_then_six_crops_and_mirror():
    # 4 x 8, base 4: the first resize keeps it; the squash to 4 x 4 halves the width, so the
    # bilinear sample of column x lands at 2x + 0.5: columns 0.5, 2.5, 4.5, 6.5; rows stay.
    p = original(ZERO, ONE, base_size=4, crop_size=2, crop_num=12)
    out = p(coord_image(4, 8))
    assert out.shape == (12, 3, 2, 2)
    cols = [0.5, 2.5, 4.5, 6.5]
    mirror = cols[::-1]
    expected = [
        ([0, 1], cols[:2]), ([2, 3], cols[2:]), ([0, 1], cols[2:]), ([2, 3], cols[:2]),
        ([1, 2], cols[1:3]),
        ([0.5, 2.5], [1.5, 5.5]),  # the whole square resized to 2 x 2: mean of pairs
        ([0, 1], mirror[:2]), ([2, 3], mirror[2:]), ([0, 1], mirror[2:]), ([2, 3], mirror[:2]),
        ([1, 2], mirror[1:3]),
        ([0.5, 2.5], [5.5, 1.5]),
    ]
    for i, (r, c) in enumerate(expected):
        rows, got_cols = rows_cols(out[i])
        assert np.allclose(rows, r) and np.allclose(got_cols, c), (i, rows, got_cols)


def test_144_crop_squares_along_the_long_side():
    # 4 x 9, base 4, scales (4, 8), crop 2. At scale 4 the image is unchanged; the three 4 x 4
    # squares start at columns 0, (9 - 4) // 2 = 2 and 2 * 2 = 4 (the original's "end" square,
    # one column short of the edge because 9 - 4 is odd).
    p = original(ZERO, ONE, base_size=4, crop_size=2, crop_num=144, scales=(4, 8))
    out = p(coord_image(4, 9))
    assert out.shape == (2 * 3 * 12, 3, 2, 2)
    for j, start in enumerate((0, 2, 4)):
        sq = list(range(start, start + 4))
        block = out[12 * j:12 * (j + 1)]
        assert rows_cols(block[0]) == ([0, 1], sq[:2])  # top-left
        assert rows_cols(block[1]) == ([2, 3], sq[2:])  # bottom-right
        assert rows_cols(block[2]) == ([0, 1], sq[2:])  # top-right
        assert rows_cols(block[3]) == ([2, 3], sq[:2])  # bottom-left
        assert rows_cols(block[4]) == ([1, 2], sq[1:3])  # centre
        rows, cols = rows_cols(block[5])  # the square resized to 2 x 2
        assert rows == [0.5, 2.5] and cols == [start + 0.5, start + 2.5]
        assert rows_cols(block[6]) == ([0, 1], sq[::-1][:2])  # mirror's top-left
        assert rows_cols(block[10]) == ([1, 2], sq[::-1][1:3])  # mirror's centre
    # Scale 8: the image is 8 x 18 (18 = 9 * 8 // 4); squares start at columns 0, 5, 10 of it.
    scaled = out[36:]
    assert scaled.shape[0] == 36
    assert np.all(np.isfinite(scaled))


def test_144_crop_portrait_squares_go_down():
    p = original(ZERO, ONE, base_size=4, crop_size=2, crop_num=144, scales=(4,))
    out = p(coord_image(8, 4))  # 8 tall: squares at rows 0, 2, 4
    for j, start in enumerate((0, 2, 4)):
        assert rows_cols(out[12 * j])[0] == [start, start + 1]


def test_144_crop_default_scale_lists():
    assert original(ZERO, ONE, 256, 224, 144).multi_scales == (256, 288, 320, 352)
    assert original(ZERO, ONE, 320, 299, 144).multi_scales == (320, 352, 384, 416)
    with pytest.raises(CaffezooError, match="--scales"):
        original(ZERO, ONE, 256, 227, 144)


@pytest.mark.parametrize("kwargs, message", [
    (dict(base_size=200, crop_size=224, crop_num=1), "smaller than the crop"),
    (dict(base_size=256, crop_size=224, crop_num=5), "not one of"),
    (dict(base_size=256, crop_size=224, crop_num=144, scales=(200, 256)), "scale 200"),
])
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(CaffezooError, match=message):
        original(ZERO, ONE, **kwargs)


def test_zero_std_refused():
    with pytest.raises(CaffezooError, match="std needs positive numbers"):
        original(ZERO, (1.0, 0.0, 1.0), 256, 224)


def test_a_real_resize_matches_direct_arithmetic():
    # 2 x 4 image resized to short side 4 (8 wide): upsampling by 2 puts destination x at
    # source (x + 0.5) / 2 - 0.5; the first column clamps to 0, then 0.25, 0.75, ...
    img = coord_image(2, 4)
    out = pp.resize_short_side(img, 4)
    assert out.shape == (4, 8, 3)
    src = np.clip((np.arange(8) + 0.5) / 2 - 0.5, 0, 3)
    assert np.allclose(out[0, :, 1], 10 * src, atol=0.51)  # uint8 rounding
