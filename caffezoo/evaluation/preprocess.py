"""From an image file to the crops fed to the net: the net's input contract
(caffezoo/contract.py) and a crop scheme. docs/evaluation.md draws the crops.

Two pipelines, chosen by the contract's `resize`:

    opencv (the original evaluation_cls.py, the default for the zoo and bare prototxts):
        cv2 decode, BGR uint8 -> cv2.resize of the short side to resize_size (no antialiasing,
        long side floored: long * size // short) -> (x - mean) / std per channel in float64
        -> crops (centre offsets (H - c) // 2) -> float32, NCHW, in the contract's channel order
    pil (torchvision / timm, source-faithful):
        PIL decode, .convert("RGB") -> antialiased PIL resize of the short side to resize_size
        (long side int(size * long / short), torchvision's Resize(int)) -> crops (centre offsets
        int(round((H - c) / 2)), torchvision's CenterCrop) -> x / 255 (ToTensor), (x - mean) /
        std in float32 (Normalize) -> NCHW, in the contract's channel order

Crop schemes, in the original's order:

- 1:   the centre crop.
- 10:  opencv: Caffe's `oversample` (four corners and the centre, then each of those five
       mirrored left-right); pil: torchvision's TenCrop (four corners and the centre, then the
       same five of the mirrored image).
- 12:  (opencv only) the resized image squashed again to base x base; six crops of that square
       (top-left, bottom-right, top-right, bottom-left, centre, the whole square resized to
       c x c), then the same six from its mirror image.
- 144: (opencv only) for each scale s of a list (256, 288, 320, 352 for crop 224), the
       normalised image resized so that its short side is s; three s x s squares along the long
       side (start, centre, 2 * centre offset); each square and its mirror give six crops each
       (as in 12-crop).

12 and 144 crops resize the normalised float image, which only the original's OpenCV pipeline
defines; a pil contract refuses them by name.

The opencv arithmetic follows the original bit for bit: normalisation in float64 on the resized
uint8 image, the 12/144-crop resizes on that float64 image, the float32 cast last. For 1- and
10-crop only the cropped pixels are normalised, which gives the same numbers with less work. The
pil arithmetic is torchvision's: the same float32 operations in the same order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from caffezoo.contract import InputContract
from caffezoo.errors import CaffezooError

CROP_NUMS = (1, 10, 12, 144)
PIL_CROP_NUMS = (1, 10)  # 12 and 144 are the original's OpenCV schemes

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
class Pipeline:
    """What turns one image file into the crops fed to the net: its input contract and the
    crop scheme."""

    contract: InputContract
    crop_num: int = 1
    scales: tuple[int, ...] = ()  # 144-crop only; empty = the original's list for crop_size

    def __post_init__(self) -> None:
        if self.crop_num not in CROP_NUMS:
            raise CaffezooError(f"crop number {self.crop_num} is not one of {CROP_NUMS}")
        if self.contract.resize == "pil" and self.crop_num not in PIL_CROP_NUMS:
            raise CaffezooError(
                f"{self.crop_num}-crop is the original's OpenCV scheme (it resizes the "
                "normalised image); the pil pipeline (torchvision's) does 1 and 10 crops "
                "(--resize opencv evaluates this net the original's way)")
        if self.crop_num == 144:
            for s in self.multi_scales:
                if s < self.crop_size:
                    raise CaffezooError(f"144-crop scale {s} is smaller than crop size "
                                        f"{self.crop_size}")

    @property
    def crop_size(self) -> int:
        return self.contract.crop_size

    @property
    def base_size(self) -> int:
        """The short side after the first resize (the contract's resize_size)."""
        return self.contract.resize_size

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

    def load(self, path: str) -> np.ndarray:
        """All crops of the image file `path` as an (N, 3, c, c) float32 array (ImageError
        naming the file when it cannot be used)."""
        return self(self.decode(path))

    def decode(self, path: str) -> np.ndarray:
        """The image file decoded as this pipeline decodes it: uint8 HWC, BGR by OpenCV
        (opencv) or RGB by PIL (pil)."""
        from caffezoo.evaluation.dataset import load_image, load_image_pil

        if self.contract.resize == "pil":
            return load_image_pil(path)
        return load_image(path)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """All crops of one decoded uint8 HWC image, in the pipeline's decode order (BGR for
        opencv, as cv2 decodes; RGB for pil, as PIL does), as (N, 3, c, c) float32."""
        if image.ndim != 3 or image.shape[2] != 3:
            raise CaffezooError(f"expected a 3-channel image, got shape {image.shape}")
        if self.contract.resize == "pil":
            return _pil_crops(image, self)
        return _opencv_crops(image, self)


def original(mean: Sequence[float], std: Sequence[float], base_size: int, crop_size: int,
             crop_num: int = 1, scales: Sequence[int] = ()) -> Pipeline:
    """The original evaluation_cls.py's pipeline with these settings: a contract of BGR pixels
    0..255, (x - mean) / std with B,G,R mean and std, OpenCV bilinear resize of the short side
    to `base_size`, centre crop `crop_size`."""
    contract = InputContract(
        channel_order="BGR", pixel_scale=255.0, mean=tuple(float(v) for v in mean),
        std=tuple(float(v) for v in std), input_size=(crop_size, crop_size),
        resize_size=base_size, interpolation="bilinear", resize="opencv", labels=None,
        num_classes=None, origin="the original evaluation_cls.py's pipeline")
    return Pipeline(contract, crop_num, tuple(scales))


# -- the opencv steps (the original's) -------------------------------------------------------

_CV2_FLAGS = {"bilinear": "INTER_LINEAR", "bicubic": "INTER_CUBIC", "nearest": "INTER_NEAREST",
              "area": "INTER_AREA", "lanczos": "INTER_LANCZOS4"}


def _cv2_flag(interpolation: str) -> int:
    return getattr(_cv2(), _CV2_FLAGS[interpolation])


def resize_short_side(image: np.ndarray, size: int, interpolation: str = "bilinear"
                      ) -> np.ndarray:
    """cv2.resize so the short side becomes `size`; the long side is floored (the original's
    integer arithmetic: long * size // short). Bilinear is the original's (cv2's default)."""
    h, w = image.shape[:2]
    short = min(h, w)
    return _cv2().resize(image, (w * size // short, h * size // short),
                         interpolation=_cv2_flag(interpolation))


def normalize(image: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """(x - mean) / std per channel, in float64 as the original computed it.

    Channel by channel (long strided loops) rather than broadcasting over the last axis of
    length 3, which numpy runs five times slower; the IEEE operations are the same."""
    out = np.empty(image.shape, dtype=np.float64)
    for ch in range(3):
        plane = out[..., ch]
        np.subtract(image[..., ch], float(mean[ch]), out=plane, dtype=np.float64)
        np.divide(plane, float(std[ch]), out=plane)
    return out


def center_crop(image: np.ndarray, c: int) -> np.ndarray:
    """The original's centre crop: offsets floored."""
    h, w = image.shape[:2]
    y, x = (h - c) // 2, (w - c) // 2
    return image[y:y + c, x:x + c]


def oversample10(image: np.ndarray, c: int) -> list[np.ndarray]:
    """Caffe's `caffe.io.oversample`: corners (TL, TR, BL, BR), centre, then each mirrored."""
    h, w = image.shape[:2]
    origins = [(0, 0), (0, w - c), (h - c, 0), (h - c, w - c), ((h - c) // 2, (w - c) // 2)]
    crops = [image[y:y + c, x:x + c] for y, x in origins]
    return crops + [crop[:, ::-1] for crop in crops]


def six_crops(square: np.ndarray, c: int, flag: int | None = None) -> list[np.ndarray]:
    """The original's `over_sample`: TL, BR, TR, BL, centre, and the whole square resized."""
    flag = _cv2_flag("bilinear") if flag is None else flag
    return [square[:c, :c], square[-c:, -c:], square[:c, -c:], square[-c:, :c],
            center_crop(square, c),
            _cv2().resize(np.ascontiguousarray(square), (c, c), interpolation=flag)]


def _square_and_mirror(square: np.ndarray, c: int, flag: int) -> list[np.ndarray]:
    mirror = np.ascontiguousarray(square[:, ::-1])
    return six_crops(square, c, flag) + six_crops(mirror, c, flag)


def mirror_crops12(image: np.ndarray, base: int, c: int, interpolation: str = "bilinear"
                   ) -> list[np.ndarray]:
    """12-crop: squash to base x base, six crops of it and six of its mirror."""
    flag = _cv2_flag(interpolation)
    square = _cv2().resize(image, (base, base), interpolation=flag)
    return _square_and_mirror(square, c, flag)


def multi_crops144(image: np.ndarray, c: int, scales: Sequence[int],
                   interpolation: str = "bilinear") -> list[np.ndarray]:
    """144-crop: per scale, three squares along the long side, each with its 12 crops."""
    flag = _cv2_flag(interpolation)
    h, w = image.shape[:2]
    short = min(h, w)
    crops: list[np.ndarray] = []
    for s in scales:
        scaled = _cv2().resize(image, (w * s // short, h * s // short), interpolation=flag)
        yy = (scaled.shape[0] - s) // 2
        xx = (scaled.shape[1] - s) // 2
        # j = 0, 1, 2: start, centre, and 2 * the centre offset (the far end, or one pixel short
        # of it when the long side minus s is odd: the original's geometry, kept).
        for j in range(3):
            crops.extend(_square_and_mirror(scaled[yy * j:yy * j + s, xx * j:xx * j + s], c,
                                            flag))
    return crops


def _planes(contract: InputContract) -> tuple[int, int, int]:
    """Where each channel of a BGR-decoded crop goes in the net's input."""
    return (0, 1, 2) if contract.channel_order == "BGR" else (2, 1, 0)


def _to_nchw(crops: list[np.ndarray], planes: Sequence[int]) -> np.ndarray:
    """(N, 3, c, c) float32 from HWC float64 crops (the original's final float32 cast)."""
    c = crops[0].shape[0]
    out = np.empty((len(crops), 3, c, c), dtype=np.float32)
    for i, crop in enumerate(crops):
        for ch in range(3):
            out[i, planes[ch]] = crop[:, :, ch]
    return out


def _normalized_nchw(crops: list[np.ndarray], mean, std, planes: Sequence[int]) -> np.ndarray:
    """Normalise uint8 HWC crops straight into (N, 3, c, c) float32: the same float64
    arithmetic per pixel as normalising the whole image first."""
    c = crops[0].shape[0]
    out = np.empty((len(crops), 3, c, c), dtype=np.float32)
    plane = np.empty((c, c), dtype=np.float64)
    for i, crop in enumerate(crops):
        for ch in range(3):
            np.subtract(crop[:, :, ch], float(mean[ch]), out=plane, dtype=np.float64)
            np.divide(plane, float(std[ch]), out=plane)
            out[i, planes[ch]] = plane
    return out


def _opencv_crops(image: np.ndarray, p: Pipeline) -> np.ndarray:
    """All crops of one BGR uint8 image, the original's way."""
    contract = p.contract
    mean, std = contract.bgr_normalization_255()
    planes = _planes(contract)
    interpolation = contract.interpolation
    resized = resize_short_side(image, p.base_size, interpolation)
    c = p.crop_size
    # 1 and 10 crops are plain windows (and flips) of the resized image: normalising only the
    # cropped pixels is the same per-pixel arithmetic with less work.
    if p.crop_num == 1:
        return _normalized_nchw([center_crop(resized, c)], mean, std, planes)
    if p.crop_num == 10:
        return _normalized_nchw(oversample10(resized, c), mean, std, planes)
    # 12 and 144 crops resize the normalised (float64) image, as the original did.
    normalized = normalize(resized, mean, std)
    if p.crop_num == 12:
        return _to_nchw(mirror_crops12(normalized, p.base_size, c, interpolation), planes)
    return _to_nchw(multi_crops144(normalized, c, p.multi_scales, interpolation), planes)


# -- the pil steps (torchvision's) ----------------------------------------------------------

_PIL_FILTERS = {"bilinear": "BILINEAR", "bicubic": "BICUBIC", "nearest": "NEAREST",
                "area": "BOX", "lanczos": "LANCZOS"}


def pil_resize_short_side(image: np.ndarray, size: int, interpolation: str) -> np.ndarray:
    """torchvision's Resize(size) of a PIL image: the short side becomes `size`, the long
    side int(size * long / short); PIL's resize (antialiased) with the named filter; an image
    already that size is kept as it is (torchvision returns it unchanged)."""
    from PIL import Image

    h, w = image.shape[:2]
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    if (new_h, new_w) == (h, w):
        return image
    resample = getattr(Image.Resampling, _PIL_FILTERS[interpolation])
    return np.asarray(Image.fromarray(image).resize((new_w, new_h), resample))


def pil_center_crop(image: np.ndarray, c: int) -> np.ndarray:
    """torchvision's CenterCrop: offsets int(round((H - c) / 2)) (Python's round: half to
    even)."""
    h, w = image.shape[:2]
    top, left = int(round((h - c) / 2.0)), int(round((w - c) / 2.0))
    return image[top:top + c, left:left + c]


def five_crop(image: np.ndarray, c: int) -> list[np.ndarray]:
    """torchvision's five_crop: TL, TR, BL, BR, then the centre (torchvision's rounding)."""
    h, w = image.shape[:2]
    return [image[:c, :c], image[:c, w - c:], image[h - c:, :c], image[h - c:, w - c:],
            pil_center_crop(image, c)]


def ten_crop(image: np.ndarray, c: int) -> list[np.ndarray]:
    """torchvision's TenCrop: the five crops, then the five of the mirrored image."""
    return five_crop(image, c) + five_crop(image[:, ::-1], c)


def _pil_crops(image: np.ndarray, p: Pipeline) -> np.ndarray:
    """All crops of one RGB uint8 image, torchvision's way."""
    contract = p.contract
    resized = pil_resize_short_side(image, p.base_size, contract.interpolation)
    c = p.crop_size
    crops = [pil_center_crop(resized, c)] if p.crop_num == 1 else ten_crop(resized, c)
    rgb_net = contract.channel_order == "RGB"
    mean = np.asarray(contract.mean if rgb_net else contract.mean[::-1], dtype=np.float32)
    std = np.asarray(contract.std if rgb_net else contract.std[::-1], dtype=np.float32)
    # ToTensor divides by 255 (pixels 0..1); a contract on 0..255 pixels keeps them
    divisor = np.float32(255.0 / contract.pixel_scale)
    planes = (0, 1, 2) if rgb_net else (2, 1, 0)
    out = np.empty((len(crops), 3, c, c), dtype=np.float32)
    for i, crop in enumerate(crops):
        for ch in range(3):
            x = crop[:, :, ch].astype(np.float32)
            if contract.pixel_scale != 255:
                x = x / divisor
            out[i, planes[ch]] = (x - mean[ch]) / std[ch]
    return out
