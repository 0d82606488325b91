"""The source-faithful pipeline (`resize: pil`) against torchvision's own transforms, the
second implementation: PIL decode, Resize(int) (antialiased), CenterCrop / TenCrop, ToTensor,
Normalize. Pixel-exact (np.array_equal) on generated images of awkward sizes and on the shared
ImageNet samples; plus the geometry by hand on coordinate images."""

from __future__ import annotations

import numpy as np
import pytest

from caffezoo.contract import InputContract
from caffezoo.errors import CaffezooError
from caffezoo.evaluation import preprocess as pp
from caffezoo.evaluation.preprocess import Pipeline

TV_MEAN, TV_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def pil_contract(crop: int = 224, resize: int = 256, interpolation: str = "bilinear",
                 order: str = "RGB", mean=TV_MEAN, std=TV_STD, scale: float = 1.0):
    return InputContract(channel_order=order, pixel_scale=scale, mean=mean, std=std,
                         input_size=(crop, crop), resize_size=resize,
                         interpolation=interpolation, resize="pil")


def torchvision_crops(path, contract: InputContract, crop_num: int) -> np.ndarray:
    """torchvision's evaluation transform, as timm's and torchvision's docs write it."""
    from PIL import Image

    from caffezoo.frameworks import import_torchvision

    tv = import_torchvision()
    import torch

    t = tv.transforms
    interp = {"bilinear": t.InterpolationMode.BILINEAR,
              "bicubic": t.InterpolationMode.BICUBIC}[contract.interpolation]
    tail = t.Compose([t.ToTensor(), t.Normalize(contract.mean, contract.std)])
    resize = t.Resize(contract.resize_size, interpolation=interp)
    with open(path, "rb") as f:
        image = Image.open(f).convert("RGB")
    resized = resize(image)
    if crop_num == 1:
        crops = [t.CenterCrop(contract.crop_size)(resized)]
    else:
        crops = list(t.TenCrop(contract.crop_size)(resized))
    return torch.stack([tail(c) for c in crops]).numpy()


def _write_images(folder, sizes, seed=0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    paths = []
    for i, (h, w) in enumerate(sizes):
        # smooth fields plus noise: resampling filters have something to do
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack([(yy * 3 + xx) % 256, (xx * 5) % 256, (yy * 7) % 256], axis=-1)
        img = np.clip(base + rng.integers(-40, 40, (h, w, 3)), 0, 255).astype(np.uint8)
        path = folder / f"img{i}.png"
        Image.fromarray(img).save(path)
        paths.append(path)
    return paths


@pytest.mark.torch
@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
@pytest.mark.parametrize("crop_num", [1, 10])
def test_equals_torchvision_on_awkward_sizes(tmp_path, interpolation, crop_num):
    # odd margins (round half to even in CenterCrop), portrait and landscape, an image already
    # at the resize size, upsampling and downsampling
    sizes = [(37, 53), (53, 37), (40, 40), (61, 90), (120, 71), (33, 34)]
    contract = pil_contract(crop=29, resize=33, interpolation=interpolation)
    pipeline = Pipeline(contract, crop_num)
    for path in _write_images(tmp_path, sizes):
        ours = pipeline.load(str(path))
        theirs = torchvision_crops(path, contract, crop_num)
        assert ours.shape == theirs.shape == (crop_num, 3, 29, 29)
        assert np.array_equal(ours, theirs), path


@pytest.mark.torch
@pytest.mark.shared
@pytest.mark.slow
def test_equals_torchvision_on_the_shared_images(imagenet_samples):
    """timm's EfficientNet-Lite0 eval transform (bicubic, 256 -> 224, mean/std 0.5) and
    torchvision's ImageNet one (bilinear, ImageNet mean/std): every pixel of every image."""
    paths = sorted(imagenet_samples.glob("*.JPEG"))
    assert len(paths) == 100
    for contract in (pil_contract(224, 256, "bicubic", mean=(0.5,) * 3, std=(0.5,) * 3),
                     pil_contract(224, 256, "bilinear")):
        pipeline = Pipeline(contract)
        for path in paths:
            assert np.array_equal(pipeline.load(str(path)),
                                  torchvision_crops(path, contract, 1)), path


@pytest.mark.torch
def test_bgr_net_gets_the_same_values_channels_reversed(tmp_path):
    (path,) = _write_images(tmp_path, [(45, 60)])
    rgb = pil_contract(crop=32, resize=40)
    bgr = pil_contract(crop=32, resize=40, order="BGR", mean=TV_MEAN[::-1], std=TV_STD[::-1])
    a, b = Pipeline(rgb).load(str(path)), Pipeline(bgr).load(str(path))
    assert np.array_equal(a[:, ::-1], b)
    assert np.array_equal(a, torchvision_crops(path, rgb, 1))


def test_pixel_scale_255_means_mean_and_std_on_0_255():
    img = np.full((8, 8, 3), 200, dtype=np.uint8)
    img[..., 0] = 100  # R
    contract = pil_contract(crop=4, resize=8, mean=(50, 60, 70), std=(10, 20, 40), scale=255)
    out = Pipeline(contract)(img)
    assert out.dtype == np.float32 and out.shape == (1, 3, 4, 4)
    assert np.all(out[0, 0] == 5.0) and np.all(out[0, 1] == 7.0) and np.all(out[0, 2] == 3.25)


def coord_image(h: int, w: int) -> np.ndarray:
    img = np.zeros((h, w, 3), dtype=np.uint8)
    img[:, :, 0] = (10 * np.arange(h))[:, None]
    img[:, :, 1] = (10 * np.arange(w))[None, :]
    return img


def test_center_crop_rounds_half_to_even_as_torchvision():
    # H - c = 5: round(2.5) = 2 (the original's floor gives 2 too); W - c = 3: round(1.5) = 2
    # (the original's floor gives 1)
    crop = pp.pil_center_crop(coord_image(9, 7), 4)
    assert list(crop[:, 0, 0] // 10) == [2, 3, 4, 5]
    assert list(crop[0, :, 1] // 10) == [2, 3, 4, 5]
    assert list(pp.center_crop(coord_image(9, 7), 4)[0, :, 1] // 10) == [1, 2, 3, 4]


def test_ten_crop_is_torchvisions_order():
    # TenCrop: TL, TR, BL, BR, centre, then the same five of the mirrored image (its TL is the
    # mirror of the original's TR)
    img = coord_image(6, 9)
    crops = pp.ten_crop(img, 4)
    cols = [list(c[0, :, 1] // 10) for c in crops]
    rows = [list(c[:, 0, 0] // 10) for c in crops]
    assert cols[:5] == [[0, 1, 2, 3], [5, 6, 7, 8], [0, 1, 2, 3], [5, 6, 7, 8], [2, 3, 4, 5]]
    assert rows[:5] == [[0, 1, 2, 3], [0, 1, 2, 3], [2, 3, 4, 5], [2, 3, 4, 5], [1, 2, 3, 4]]
    # mirrored: TL of the flip = columns 8..5; its centre: round(5 / 2) = 2 in the flip = 6..3
    assert cols[5:] == [[8, 7, 6, 5], [3, 2, 1, 0], [8, 7, 6, 5], [3, 2, 1, 0], [6, 5, 4, 3]]


def test_resize_keeps_an_image_already_at_size_and_computes_the_long_side_as_torchvision():
    img = coord_image(8, 13)
    assert pp.pil_resize_short_side(img, 8, "bilinear") is img
    for h, w, size in [(8, 13, 5), (13, 8, 5), (375, 500, 256), (500, 333, 256), (7, 7, 3)]:
        out = pp.pil_resize_short_side(np.zeros((h, w, 3), np.uint8), size, "bicubic")
        short, long = min(h, w), max(h, w)
        want_long = int(size * long / short)  # torchvision's _compute_resized_output_size
        assert out.shape[:2] == ((size, want_long) if h <= w else (want_long, size))


@pytest.mark.parametrize("crop_num", [12, 144])
def test_multi_crop_schemes_of_the_original_are_refused_by_name(crop_num):
    with pytest.raises(CaffezooError, match=f"{crop_num}-crop is the original's OpenCV scheme"):
        Pipeline(pil_contract(), crop_num)


def test_pil_decode_errors_name_the_file(tmp_path):
    from caffezoo.evaluation.dataset import ImageError

    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"junk" * 10)
    with pytest.raises(ImageError, match="bad.png"):
        Pipeline(pil_contract()).load(str(bad))
    with pytest.raises(ImageError, match="missing file"):
        Pipeline(pil_contract()).load(str(tmp_path / "none.jpg"))
