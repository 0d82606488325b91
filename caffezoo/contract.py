"""The input contract: what a classifier expects at its input and gives at its output.

One type, `InputContract`, says it for zoo cards, converters, validate, eval, time, demo,
export and the zoo table. A converted net carries it beside its prototxt and caffemodel as
`<stem>.contract.json`, in the same output set (docs/contract.md):

    {"format": "caffezoo-input-contract", "version": 1,
     "channel_order": "BGR", "pixel_scale": 255.0,
     "mean": [103.53, 116.28, 123.675], "std": [57.375, 57.12, 58.395],
     "input_size": [224, 224], "resize_size": 256, "interpolation": "bilinear",
     "resize": "opencv", "crop": "center",
     "labels": "imagenet-1k", "label_offset": 0, "num_classes": 1000,
     "output": "logits", "origin": "zoo card resnext50_32x4d"}

For a decoded 8-bit pixel p (0..255) of channel c, in `channel_order`, the net's input is
(p * pixel_scale / 255 - mean[c]) / std[c]; `normalization_255` states the same on 0..255.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np

from caffezoo.errors import CaffezooError, InputFileError, UsageError

FORMAT = "caffezoo-input-contract"
VERSION = 1
SUFFIX = ".contract.json"
# the fields that say how an image becomes the net's input: a file must state them all
REQUIRED = ("channel_order", "pixel_scale", "mean", "std", "input_size", "resize_size",
            "interpolation", "resize")
# the ONNX metadata_props key under which `caffezoo export` stores a net's contract and
# `caffezoo convert --source onnx:` takes it back
ONNX_METADATA_KEY = "caffezoo.contract"

CHANNEL_ORDERS = ("BGR", "RGB")
# How the short side is resized before the crop:
#   opencv: the original evaluation_cls.py: cv2.imread (BGR), cv2.resize of the uint8 image
#           (no antialiasing), long side floored (long * size // short), crop offsets (H - c) // 2
#   pil:    torchvision / timm: PIL decode (RGB), antialiased PIL resize, long side
#           int(size * long / short), centre crop offsets round((H - c) / 2)
RESIZE_KINDS = ("opencv", "pil")
INTERPOLATIONS = ("bilinear", "bicubic", "nearest", "area", "lanczos")
CROPS = ("center",)
OUTPUTS = ("logits", "probabilities")
# Label sets known by name: the 1000 ILSVRC2012 classes in sorted-wnid order (the usual one), and
# in the ILSVRC2015 devkit order (MXNet's Inception-v3).
LABEL_SETS = ("imagenet-1k", "imagenet-1k-devkit")


@dataclass(frozen=True)
class InputContract:
    """What a net expects and gives. Every field has a meaning a user can check by eye."""

    channel_order: str = "BGR"      # of the net's input channels
    pixel_scale: float = 255.0      # mean/std are stated on pixels 0..pixel_scale (255 or 1)
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)  # per input channel, in channel_order
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    input_size: tuple[int, int] = (224, 224)   # (H, W) the net is fed: the crop
    resize_size: int = 256           # short side before the centre crop
    interpolation: str = "bilinear"
    resize: str = "opencv"           # RESIZE_KINDS
    crop: str = "center"
    labels: str | tuple[str, ...] | None = "imagenet-1k"  # a LABEL_SETS name, names, or None
    label_offset: int = 0            # output index of dataset class 0 (1: TF-slim's background)
    num_classes: int | None = 1000   # outputs of the net, when known
    output: str = "logits"           # OUTPUTS
    origin: str = ""                 # where these values came from, in words

    def __post_init__(self) -> None:
        problems = _problems(self)
        if problems:
            raise CaffezooError("input contract: " + "; ".join(problems))

    # -- derived views -------------------------------------------------------------------

    @property
    def crop_size(self) -> int:
        """The square crop's side (input_size is square for every crop scheme here)."""
        return self.input_size[0]

    @property
    def crop_pct(self) -> float:
        """crop / resize, as timm states it (0.875 for 224 of 256)."""
        return self.crop_size / self.resize_size

    def normalization_255(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """(mean, std) on 0..255 pixels, in the net's channel order:
        input = (pixel_255 - mean) / std."""
        k = 255.0 / self.pixel_scale
        return tuple(m * k for m in self.mean), tuple(s * k for s in self.std)

    def bgr_normalization_255(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """(mean, std) on 0..255 pixels in BGR order, as the original evaluation states them."""
        mean, std = self.normalization_255()
        if self.channel_order == "RGB":
            return mean[::-1], std[::-1]
        return mean, std

    def apply(self, pixels_bgr: np.ndarray) -> np.ndarray:
        """(N, 3, H, W) float pixels 0..255 in BGR order -> the net's input (float32): the
        channels put in `channel_order`, then (pixel - mean) / std on the 0..255 scale."""
        mean, std = self.normalization_255()
        x = pixels_bgr if self.channel_order == "BGR" else pixels_bgr[:, ::-1]
        m = np.asarray(mean, np.float64).reshape(1, 3, 1, 1)
        s = np.asarray(std, np.float64).reshape(1, 3, 1, 1)
        return ((x.astype(np.float64) - m) / s).astype(np.float32)

    def describe_normalization(self) -> str:
        """The normalisation in one phrase, on 0..255 pixels: "RGB mean [123.675, ...] std
        [58.395, ...]"."""
        mean, std = self.normalization_255()
        return (f"{self.channel_order} mean [{', '.join(f'{v:g}' for v in mean)}] "
                f"std [{', '.join(f'{v:g}' for v in std)}]")

    def in_order(self, channel_order: str) -> InputContract:
        """The same contract for a net taking its channels in `channel_order`: mean and std
        reversed when the order changes (a conversion that reverses the input channels)."""
        if channel_order == self.channel_order:
            return self
        return replace(self, channel_order=channel_order, mean=self.mean[::-1],
                       std=self.std[::-1])

    def normalized_as(self, other: InputContract) -> InputContract:
        """This contract's way to the crop (sizes, resize, interpolation) with `other`'s
        channel order and normalisation: what a source fed the same images gets (validate)."""
        return replace(self, channel_order=other.channel_order,
                       pixel_scale=other.pixel_scale, mean=other.mean, std=other.std)

    def at_crop(self, crop_size: int) -> InputContract:
        """The same contract for another crop size, the resize keeping crop_pct."""
        resize = max(crop_size, math.floor(crop_size / self.crop_pct + 1e-9))
        return replace(self, input_size=(crop_size, crop_size), resize_size=resize)

    def overridden(self, **values) -> tuple[InputContract, list[str]]:
        """A copy with the non-None `values` set, and one line per value that changed
        ("mean: 0.485,0.456,0.406 -> 104,117,123 (given)"), for the run to say so."""
        changes = {k: v for k, v in values.items() if v is not None}
        new = replace(self, **changes) if changes else self
        said = [f"{k}: {_show(getattr(self, k))} -> {_show(getattr(new, k))} (given)"
                for k in changes if getattr(self, k) != getattr(new, k)]
        return new, said

    def describe(self) -> list[str]:
        """The contract as lines for a summary or `caffezoo info`."""
        mean = ",".join(f"{v:g}" for v in self.mean)
        std = ",".join(f"{v:g}" for v in self.std)
        labels = (self.labels if isinstance(self.labels, str) or self.labels is None
                  else f"{len(self.labels)} names")
        h, w = self.input_size
        lines = [
            f"input: {self.channel_order}, pixels 0..{self.pixel_scale:g}, mean {mean}, "
            f"std {std}",
            f"size: short side {self.resize_size} ({self.interpolation}, {self.resize}), "
            f"{self.crop} crop {h}x{w} (crop_pct {self.crop_pct:.4g})",
            f"output: {self.output} over {self.num_classes or '?'} classes"
            + (f" (labels {labels})" if labels else "")
            + (f", class 0 at index {self.label_offset}" if self.label_offset else ""),
        ]
        if self.origin:
            lines.append(f"from: {self.origin}")
        return lines

    # -- the file ------------------------------------------------------------------------

    def to_dict(self) -> dict:
        d = {"format": FORMAT, "version": VERSION}
        for k, v in asdict(self).items():
            d[k] = list(v) if isinstance(v, tuple) else v
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1) + "\n"

    @classmethod
    def from_dict(cls, d: Mapping, where: str = "contract") -> InputContract:
        if not isinstance(d, Mapping):
            raise InputFileError(f"{where}: not a JSON object")
        if d.get("format") != FORMAT:
            raise InputFileError(f"{where}: not a caffezoo input contract (format "
                                 f"{d.get('format')!r}, expected {FORMAT!r})")
        if d.get("version") != VERSION:
            raise InputFileError(f"{where}: contract version {d.get('version')!r} is not "
                                 f"{VERSION} (written by another caffezoo?)")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known - {"format", "version"})
        if unknown:
            raise InputFileError(f"{where}: unknown field(s) {', '.join(unknown)}")
        values = {}
        for k in known & set(d):
            v = d[k]
            values[k] = tuple(v) if isinstance(v, list) else v
        try:
            contract = cls(**values)
        except (CaffezooError, TypeError, ValueError) as e:
            raise InputFileError(f"{where}: {e}") from None
        # a default would be a silent guess at what the net expects
        missing = [k for k in REQUIRED if k not in d]
        if missing:
            raise InputFileError(f"{where}: input contract: missing field(s) "
                                 f"{', '.join(missing)}")
        return contract

    @classmethod
    def read(cls, path: str | Path) -> InputContract:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise InputFileError(f"{path}: no such file") from None
        except (OSError, UnicodeDecodeError) as e:
            raise InputFileError(f"{path}: cannot read the contract ({e})") from None
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as e:
            raise InputFileError(f"{path}: not JSON ({e})") from None
        return cls.from_dict(data, str(path))


def read_labels(text: str) -> str | tuple[str, ...] | None:
    """A --labels value: a label-set name (LABEL_SETS), `none`, or a text file with one class
    name per line."""
    if text in LABEL_SETS:
        return text
    if text.lower() == "none":
        return None
    path = Path(text)
    try:
        names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    except FileNotFoundError:
        raise InputFileError(f"--labels {text}: neither a label set ({', '.join(LABEL_SETS)}, "
                             "none) nor a file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputFileError(f"{path}: cannot read the labels ({e})") from None
    names = [n for n in names if n]
    if not names:
        raise InputFileError(f"{path}: no class names (one per line)")
    return tuple(names)


def contract_path(net_path: str | Path) -> Path:
    """Where the contract of `X.prototxt` / `X.caffemodel` (or `X.onnx`, `X.pt`) lies:
    `X.contract.json` beside it."""
    p = Path(net_path)
    return p.with_name(p.stem + SUFFIX)


def find_contract(*net_paths: str | Path | None) -> tuple[InputContract, Path] | None:
    """The contract beside the first of `net_paths` that has one, with its path; None for a
    bare net (the commands then use the original evaluation_cls.py's defaults). When the
    first path is a prototxt, the contract must fit it (check_fits_net)."""
    given = [p for p in net_paths if p is not None]
    for net_path in given:
        path = contract_path(net_path)
        if path.is_file():
            contract = InputContract.read(path)
            if Path(given[0]).suffix == ".prototxt":
                # beside the weights, it may serve that net at another size (`generate
                # --input-size`): only the class count must fit then
                check_fits_net(contract, path, given[0],
                               size=path == contract_path(given[0]))
            return contract, path
    return None


def check_fits_net(contract: InputContract, path: str | Path, prototxt: str | Path,
                   size: bool = True, shown: str | None = None) -> None:
    """Refuses a contract that contradicts its net: another input size than the prototxt
    declares, or another class count than its outputs (a contract left beside a net that a
    later conversion replaced, or edited by hand). A net whose shapes cannot be inferred
    here is left to the command to refuse. `shown`: how the message names the net (a card
    built in a scratch folder), by default the prototxt's path."""
    from caffezoo import netio
    from caffezoo.analysis import analyze

    try:
        a = analyze(netio.read_prototxt(prototxt))
    except (CaffezooError, OSError):
        return
    shapes = list(a.inputs.values())
    if size and len(shapes) == 1 and len(shapes[0]) == 4 \
            and tuple(shapes[0][2:]) != tuple(contract.input_size):
        h, w = contract.input_size
        raise InputFileError(
            f"{path}: input contract: input_size {h}x{w}, but {shown or prototxt} takes "
            f"{shapes[0][2]}x{shapes[0][3]} (a contract of another net?)")
    counts = [math.prod(a.blob_shapes[b][1:]) for b in a.outputs]
    n = contract.num_classes
    if n is not None and counts and n not in counts:
        raise InputFileError(
            f"{path}: input contract: num_classes {n}, but {shown or prototxt} has "
            f"{' / '.join(map(str, counts))} outputs (a contract of another net?)")


# -- checks ------------------------------------------------------------------------------


def _show(v) -> str:
    if isinstance(v, tuple):
        return ",".join(f"{x:g}" if isinstance(x, float) else str(x) for x in v)
    return str(v)


def _finite_triple(name: str, v, positive: bool) -> str | None:
    if not isinstance(v, tuple) or len(v) != 3:
        return f"{name} needs three values, got {v!r}"
    for x in v:
        if isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x):
            return f"{name} needs finite numbers, got {v!r}"
        if positive and x <= 0:
            return f"{name} needs positive numbers, got {v!r}"
    return None


def _problems(c: InputContract) -> list[str]:
    out = []

    def one_of(name: str, value, allowed) -> None:
        if value not in allowed:
            out.append(f"{name} {value!r} is not one of {', '.join(allowed)}")

    one_of("channel_order", c.channel_order, CHANNEL_ORDERS)
    if (isinstance(c.pixel_scale, bool) or not isinstance(c.pixel_scale, int | float)
            or not math.isfinite(c.pixel_scale) or c.pixel_scale <= 0):
        out.append(f"pixel_scale needs a positive number, got {c.pixel_scale!r}")
    for name, positive in (("mean", False), ("std", True)):
        problem = _finite_triple(name, getattr(c, name), positive)
        if problem:
            out.append(problem)
    size = c.input_size
    if (not isinstance(size, tuple) or len(size) != 2
            or not all(isinstance(x, int) and not isinstance(x, bool) and 1 <= x <= 65536
                       for x in size)):
        out.append(f"input_size needs two integers 1..65536 (H, W), got {size!r}")
    elif size[0] != size[1]:
        out.append(f"input_size {size[0]}x{size[1]} is not square (every crop scheme here is)")
    if (not isinstance(c.resize_size, int) or isinstance(c.resize_size, bool)
            or not 1 <= c.resize_size <= 65536):
        out.append(f"resize_size needs an integer 1..65536, got {c.resize_size!r}")
    elif isinstance(size, tuple) and len(size) == 2 and isinstance(size[0], int) \
            and c.resize_size < size[0]:
        out.append(f"resize_size {c.resize_size} is smaller than the crop {size[0]}")
    one_of("interpolation", c.interpolation, INTERPOLATIONS)
    one_of("resize", c.resize, RESIZE_KINDS)
    one_of("crop", c.crop, CROPS)
    one_of("output", c.output, OUTPUTS)
    labels = c.labels
    if isinstance(labels, str):
        one_of("labels", labels, LABEL_SETS)
    elif labels is not None and not (isinstance(labels, tuple)
                                     and all(isinstance(x, str) for x in labels)):
        out.append("labels needs a label-set name, a list of names or null")
    if not isinstance(c.label_offset, int) or isinstance(c.label_offset, bool) \
            or not 0 <= c.label_offset <= 1_000_000:
        out.append(f"label_offset needs an integer >= 0, got {c.label_offset!r}")
    n = c.num_classes
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
        out.append(f"num_classes needs a positive integer or null, got {n!r}")
    if isinstance(labels, tuple) and isinstance(n, int) and len(labels) != n:
        out.append(f"{len(labels)} label names for {n} classes")
    if labels in LABEL_SETS and isinstance(n, int) and isinstance(c.label_offset, int) \
            and n - c.label_offset != 1000:
        out.append(f"labels {labels} name 1000 classes, num_classes is {n}"
                   + (f" from index {c.label_offset}" if c.label_offset else ""))
    if not isinstance(c.origin, str):
        out.append("origin needs a string")
    return out


# The ImageNet statistics torchvision, timm and the Gluon model zoo normalise by, stated (as
# they are) on RGB pixels 0..1; every other module imports them from here.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGENET = InputContract(channel_order="RGB", pixel_scale=1.0, mean=IMAGENET_MEAN,
                         std=IMAGENET_STD)
# The same on BGR pixels 0..255, as the original evaluation_cls.py states them for the PyTorch
# families (it wrote 103.52, a typo for 0.406 * 255 = 103.53; converted PyTorch/Lua weights are
# exact only with the true value, docs/conversion.md). Written out, not computed: in floating
# point 0.224 * 255 is 57.120000000000005, and the zoo cards carry 57.12.
IMAGENET_BGR_MEAN_255 = (103.53, 116.28, 123.675)
IMAGENET_BGR_STD_255 = (57.375, 57.12, 58.395)

# What a graph conversion assumes when neither its source nor the user says anything: the
# ImageNet convention of torchvision and most ONNX classifiers (RGB 0..1, its mean/std,
# short side 256 for a 224 crop, antialiased PIL bilinear). The convert summary says so.
ASSUMED = replace(IMAGENET, resize_size=256, resize="pil",
                  origin="assumed (the source states none): torchvision's ImageNet convention")


def source_input(stated: InputContract | None, given: str | None, recorded: str | None
                 ) -> tuple[InputContract | None, str, list[str]]:
    """A graph source's input: (what it states, in the channel order it takes, or None; that
    order; the lines saying what `given` changed). `given`: --source-channel-order (BGR, RGB
    or None).

    The order is `given`, else what the source states, else RGB (the convention of every
    library that states none). `recorded` names the record a statement comes from when it is
    one (an ONNX file's metadata, written by `caffezoo export` from these very weights): a
    `given` order contradicting it is refused, as a mistake the file itself disproves. A
    library's convention (torchvision, timm, the Gluon zoo) is overridden like the other
    contract flags override it, and said; its mean/std stay with their colours (ImageNet's red
    mean is red's in either order)."""
    current = stated.channel_order if stated is not None else "RGB"
    if given is None or given == current:
        return stated, current, []
    if stated is not None and recorded is not None:
        raise UsageError(f"--source-channel-order {given.lower()}: {recorded} states "
                         f"{current}; the file's record stands (drop the flag)")
    said = [f"source channel order: {current} -> {given} (given)"
            + ("; mean/std kept per colour" if stated is not None else "")]
    return (stated.in_order(given) if stated is not None else None), given, said


def input_affine(source: InputContract, card_mean_bgr, card_std_bgr
                 ) -> tuple[np.ndarray, np.ndarray] | None:
    """Per input channel (BGR) (a, b) with source_input = a * card_input + b, or None when the
    card's normalisation is the source's (to float32 precision)."""
    src_mean, src_std = source.bgr_normalization_255()
    card_mean = np.asarray(card_mean_bgr, np.float64)
    card_std = np.asarray(card_std_bgr, np.float64)
    a = card_std / np.asarray(src_std, np.float64)
    b = (card_mean - np.asarray(src_mean, np.float64)) / np.asarray(src_std, np.float64)
    if np.allclose(a, 1.0, rtol=1e-6, atol=0) and np.allclose(b, 0.0, atol=1e-6):
        return None
    return a, b
