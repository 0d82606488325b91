"""Image preprocessing and the crop schemes of the original evaluation_cls.py.

The pipeline (docs/evaluation.md draws the crops):

    BGR uint8 image -> resize the short side to base_size (bilinear, long side floored)
        -> (x - mean) / std per channel -> crops -> (N, 3, crop, crop) float32, NCHW

Crop schemes, in the original's order:

- 1:   the centre crop, offsets ((H - c) // 2, (W - c) // 2).
- 10:  Caffe's `oversample`: four corners and the centre of the short-side-resized image, then
       each of those five crops mirrored (left-right).
- 12:  the resized image squashed again to base x base; six crops of that square (top-left,
       bottom-right, top-right, bottom-left, centre, the whole square resized to c x c), then the
       same six from its mirror image.
- 144: for each scale s of a list (256, 288, 320, 352 for crop 224), the normalised image resized
       so that its short side is s; three s x s squares along the long side (start, centre,
       2 * centre offset); each square and its mirror give six crops each (as in 12-crop).

The arithmetic follows the original bit for bit: normalisation in float64 on the resized uint8
image, the 12/144-crop resizes on that float64 image, the float32 cast last. For 1- and 10-crop
only the cropped pixels are normalised, which gives the same numbers with less work.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from caffezoo.errors import CaffezooError

CROP_NUMS = (1, 10, 12, 144)

# The original's 144-crop scale lists, by crop size (the one in use for 224, the others listed
# beside it in a comment).
MULTI_CROP_SCALES: dict[int, tuple[int, ...]] = {
    224: (256, 288, 320, 352),
    235: (270, 300, 330, 360),
    299: (320, 352, 384, 416),
    320: (352, 384, 416, 448),
}


def _cv2():
    from caffezoo.frameworks import import_cv2

    return import_cv2()


@dataclass(frozen=True)
class Preprocessing:
    """What turns one decoded image into the crops fed to the net."""

    mean: tuple[float, float, float]  # BGR
    std: tuple[float, float, float]  # BGR
    base_size: int  # short side after the first resize
    crop_size: int
    crop_num: int = 1
    scales: tuple[int, ...] = ()  # 144-crop only; empty = the original's list for crop_size

    def __post_init__(self) -> None:
        if self.crop_num not in CROP_NUMS:
            raise CaffezooError(f"crop number {self.crop_num} is not one of {CROP_NUMS}")
        if len(self.mean) != 3 or len(self.std) != 3:
            raise CaffezooError("mean and std need three values (B,G,R)")
        if any(s == 0 for s in self.std):
            raise CaffezooError(f"std {self.std} has a zero")
        if self.crop_size < 1 or self.base_size < 1:
            raise CaffezooError("base size and crop size must be positive")
        # The original returned None from its crop functions when the image was smaller than the
        # crop and then failed much later; we refuse such settings up front.
        if self.crop_num != 144 and self.base_size < self.crop_size:
            raise CaffezooError(
                f"base size {self.base_size} is smaller than crop size {self.crop_size}")
        if self.crop_num == 144:
            for s in self.multi_scales:
                if s < self.crop_size:
                    raise CaffezooError(f"144-crop scale {s} is smaller than crop size "
                                        f"{self.crop_size}")

    @property
    def multi_scales(self) -> tuple[int, ...]:
        if self.scales:
            return tuple(self.scales)
        try:
            return MULTI_CROP_SCALES[self.crop_size]
        except KeyError:
            known = ", ".join(str(k) for k in MULTI_CROP_SCALES)
            raise CaffezooError(
                f"no 144-crop scale list for crop size {self.crop_size} (the original has "
                f"lists for {known}); give one with --scales") from None

    @property
    def crops_per_image(self) -> int:
        return self.crop_num

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """All crops of one BGR uint8 image as an (N, 3, c, c) float32 array."""
        return preprocess(image, self)


# -- the steps -------------------------------------------------------------------------------


def resize_short_side(image: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize so the short side becomes `size`; the long side is floored
    (the original's integer arithmetic: long * size // short)."""
    h, w = image.shape[:2]
    short = min(h, w)
    return _cv2().resize(image, (w * size // short, h * size // short))


def normalize(image: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """(x - mean) / std per BGR channel, in float64 as the original computed it.

    Channel by channel (long strided loops) rather than broadcasting over the last axis of
    length 3, which numpy runs five times slower; the IEEE operations are the same."""
    out = np.empty(image.shape, dtype=np.float64)
    for ch in range(3):
        plane = out[..., ch]
        np.subtract(image[..., ch], float(mean[ch]), out=plane, dtype=np.float64)
        np.divide(plane, float(std[ch]), out=plane)
    return out


def center_crop(image: np.ndarray, c: int) -> np.ndarray:
    h, w = image.shape[:2]
    y, x = (h - c) // 2, (w - c) // 2
    return image[y:y + c, x:x + c]


def oversample10(image: np.ndarray, c: int) -> list[np.ndarray]:
    """Caffe's `caffe.io.oversample`: corners (TL, TR, BL, BR), centre, then each mirrored."""
    h, w = image.shape[:2]
    origins = [(0, 0), (0, w - c), (h - c, 0), (h - c, w - c), ((h - c) // 2, (w - c) // 2)]
    crops = [image[y:y + c, x:x + c] for y, x in origins]
    return crops + [crop[:, ::-1] for crop in crops]


def six_crops(square: np.ndarray, c: int) -> list[np.ndarray]:
    """The original's `over_sample`: TL, BR, TR, BL, centre, and the whole square resized."""
    return [square[:c, :c], square[-c:, -c:], square[:c, -c:], square[-c:, :c],
            center_crop(square, c), _cv2().resize(np.ascontiguousarray(square), (c, c))]


def _square_and_mirror(square: np.ndarray, c: int) -> list[np.ndarray]:
    mirror = np.ascontiguousarray(square[:, ::-1])
    return six_crops(square, c) + six_crops(mirror, c)


def mirror_crops12(image: np.ndarray, base: int, c: int) -> list[np.ndarray]:
    """12-crop: squash to base x base, six crops of it and six of its mirror."""
    square = _cv2().resize(image, (base, base))
    return _square_and_mirror(square, c)


def multi_crops144(image: np.ndarray, c: int, scales: Sequence[int]) -> list[np.ndarray]:
    """144-crop: per scale, three squares along the long side, each with its 12 crops."""
    h, w = image.shape[:2]
    short = min(h, w)
    crops: list[np.ndarray] = []
    for s in scales:
        scaled = _cv2().resize(image, (w * s // short, h * s // short))
        yy = (scaled.shape[0] - s) // 2
        xx = (scaled.shape[1] - s) // 2
        # j = 0, 1, 2: start, centre, and 2 * the centre offset (the far end, or one pixel short
        # of it when the long side minus s is odd: the original's geometry, kept).
        for j in range(3):
            crops.extend(_square_and_mirror(scaled[yy * j:yy * j + s, xx * j:xx * j + s], c))
    return crops


def _to_nchw(crops: list[np.ndarray]) -> np.ndarray:
    """(N, 3, c, c) float32 from HWC float64 crops (the original's final float32 cast)."""
    c = crops[0].shape[0]
    out = np.empty((len(crops), 3, c, c), dtype=np.float32)
    for i, crop in enumerate(crops):
        for ch in range(3):
            out[i, ch] = crop[:, :, ch]
    return out


def _normalized_nchw(crops: list[np.ndarray], mean, std) -> np.ndarray:
    """Normalise uint8 HWC crops straight into (N, 3, c, c) float32: the same float64
    arithmetic per pixel as normalising the whole image first."""
    c = crops[0].shape[0]
    out = np.empty((len(crops), 3, c, c), dtype=np.float32)
    plane = np.empty((c, c), dtype=np.float64)
    for i, crop in enumerate(crops):
        for ch in range(3):
            np.subtract(crop[:, :, ch], float(mean[ch]), out=plane, dtype=np.float64)
            np.divide(plane, float(std[ch]), out=plane)
            out[i, ch] = plane
    return out


def preprocess(image: np.ndarray, p: Preprocessing) -> np.ndarray:
    """All crops of one decoded BGR uint8 image, (N, 3, c, c) float32."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise CaffezooError(f"expected a 3-channel BGR image, got shape {image.shape}")
    resized = resize_short_side(image, p.base_size)
    c = p.crop_size
    # 1 and 10 crops are plain windows (and flips) of the resized image: normalising only the
    # cropped pixels is the same per-pixel arithmetic with less work.
    if p.crop_num == 1:
        return _normalized_nchw([center_crop(resized, c)], p.mean, p.std)
    if p.crop_num == 10:
        return _normalized_nchw(oversample10(resized, c), p.mean, p.std)
    # 12 and 144 crops resize the normalised (float64) image, as the original did.
    normalized = normalize(resized, p.mean, p.std)
    if p.crop_num == 12:
        return _to_nchw(mirror_crops12(normalized, p.base_size, c))
    return _to_nchw(multi_crops144(normalized, c, p.multi_scales))
