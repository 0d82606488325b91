"""The validation list (`path label` lines), label mapping, and image decoding.

Differences from the original evaluation_cls.py, all deliberate:
- `~` is expanded in the list path, the data root and every image path (the original passed
  them to cv2.imread unexpanded, so `~/Database/...` never resolved);
- the image path is joined to the data root as a path (the original concatenated strings, so the
  root needed a trailing slash), and the label is the last field of the line, so file names may
  contain spaces;
- labels are checked against the net's class count before any image is read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from caffezoo import limits
from caffezoo.errors import InputFileError, UsageError


@dataclass(frozen=True)
class Sample:
    name: str  # the path as written in the list
    path: str  # resolved path of the image file
    label: int  # class index in the net's output (after offset / class map)
    line: int  # 1-based line number in the list


def _expand(path: str | os.PathLike) -> str:
    return os.path.expanduser(os.fspath(path))


def read_val_list(val_list: str | os.PathLike, data_root: str | os.PathLike = "",
                  limit: int | None = None) -> list[Sample]:
    """Parse `path label` lines; blank lines are skipped. Labels are as written."""
    list_path = _expand(val_list)
    if limit is not None and limit < 1:
        raise UsageError(f"--limit must be at least 1, got {limit}")
    root = _expand(data_root) if data_root else ""
    try:
        text = Path(list_path).read_text(encoding="utf-8-sig")  # a BOM is not part of a path
    except (OSError, UnicodeDecodeError) as err:
        raise InputFileError(f"{list_path}: cannot read the val list ({err})") from None
    samples: list[Sample] = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped:
            continue
        parts = stripped.rsplit(None, 1)
        if len(parts) != 2:
            raise InputFileError(f"{list_path}:{number}: expected 'path label', got {stripped!r}")
        name, label_text = parts
        try:
            label = int(label_text)
        except ValueError:
            raise InputFileError(f"{list_path}:{number}: label {label_text!r} is not an "
                                 "integer") from None
        path = _expand(name)
        if root and not os.path.isabs(path):
            path = os.path.join(root, path)
        samples.append(Sample(name=name, path=path, label=label, line=number))
        if limit is not None and len(samples) >= limit:
            break
    if not samples:
        raise InputFileError(f"{list_path}: the val list has no entries")
    return samples


# What timm's and torchvision's ImageFolder accept as images (compared case-insensitively).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class ImageFolder:
    """An ImageFolder tree as read: its images with their labels, its class folders, and which
    label rule applied (`wnid`: ImageNet wnid folders onto the 1000-class synset order;
    `sorted`: the index of the folder in sorted order)."""

    root: str
    samples: list[Sample]
    classes: list[str]
    mapping: str  # "wnid" | "sorted"

    def describe(self) -> str:
        if self.mapping == "wnid":
            return (f"{len(self.classes)} ImageNet wnid class folders, labels in the 1000-class "
                    "synset order (ILSVRC2012_val.txt's)")
        return (f"{len(self.classes)} class folders, labels 0..{len(self.classes) - 1} in "
                "sorted folder-name order")

    def check_fits(self, num_classes: int, label_offset: int, blob: str,
                   labels: object = None) -> None:
        """A class count that does not fit the net's outputs is an error, not a silent wrong
        result (a net of 1000 outputs scored against labels 0..99 of 100 folders); so are wnid
        folders for a net whose contract orders the classes otherwise (`labels`)."""
        if self.mapping == "wnid":
            if labels == "imagenet-1k-devkit":
                raise InputFileError(
                    f"{self.root}: wnid class folders give labels in the synset order, but the "
                    "net's contract orders its classes as the ILSVRC2015 devkit "
                    "(imagenet-1k-devkit); give --class-map to map them")
            if 1000 + label_offset != num_classes:
                raise InputFileError(
                    f"{self.root}: its {len(self.classes)} class folders are ImageNet wnids "
                    f"(labels in the 1000-class synset order{_plus(label_offset)}), but the "
                    f"net's '{blob}' has {num_classes} classes; give --class-map (and "
                    "--label-offset) to map them")
            return
        if len(self.classes) + label_offset != num_classes:
            raise InputFileError(
                f"{self.root}: {len(self.classes)} class folders (labels 0.."
                f"{len(self.classes) - 1} in sorted folder-name order{_plus(label_offset)}) do "
                f"not fit the net's {num_classes} classes of '{blob}'; give --class-map to map "
                "them (or name the folders by ImageNet wnid, n01440764 ...)")


def _plus(offset: int) -> str:
    return f", plus --label-offset {offset}" if offset else ""


def read_image_folder(data_dir: str | os.PathLike, limit: int | None = None) -> ImageFolder:
    """An ImageFolder tree: one sub-folder per class. When every folder name is an ImageNet-1k
    wnid (n01440764 ...) the label is the class's index in the 1000-class synset order, whatever
    subset of folders is present; otherwise classes are in sorted folder-name order and the
    label is the class's index (timm's and torchvision's rule). Images are the files with an
    image extension anywhere below a class folder, sorted by path; `line` is the image's
    1-based position."""
    from caffezoo.labels import imagenet_1k_wnids

    root = Path(_expand(data_dir))
    if not root.is_dir():
        raise InputFileError(f"{root}: not a folder (--data-dir expects one sub-folder per "
                             "class)")
    classes = sorted(entry.name for entry in os.scandir(root)
                     if entry.is_dir() and not entry.name.startswith("."))
    if not classes:
        raise InputFileError(f"{root}: no class folders (--data-dir expects one sub-folder per "
                             "class, e.g. n01440764/)")
    synsets = imagenet_1k_wnids()
    if all(name in synsets for name in classes):
        mapping, labels = "wnid", [synsets[name] for name in classes]
    else:
        mapping, labels = "sorted", list(range(len(classes)))
    samples: list[Sample] = []
    for label, name in zip(labels, classes, strict=True):
        files = sorted(path for path in (root / name).rglob("*")
                       if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file())
        for path in files:
            samples.append(Sample(name=path.relative_to(root).as_posix(), path=str(path),
                                  label=label, line=len(samples) + 1))
            if limit is not None and len(samples) >= limit:
                return ImageFolder(str(root), samples, classes, mapping)
    if not samples:
        raise InputFileError(f"{root}: no images in its {len(classes)} class folders "
                             f"(extensions: {', '.join(IMAGE_EXTENSIONS)})")
    return ImageFolder(str(root), samples, classes, mapping)


def read_class_map(path: str | os.PathLike) -> dict[int, int]:
    """A class map: either one integer per line (line i, counting from 0, holds the net's index
    for dataset label i) or `dataset_label net_index` pairs."""
    map_path = _expand(path)
    try:
        lines = Path(map_path).read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise InputFileError(f"{map_path}: cannot read the class map ({err})") from None
    mapping: dict[int, int] = {}
    index = 0
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields:
            continue
        try:
            values = [int(f) for f in fields]
        except ValueError:
            raise InputFileError(f"{map_path}:{number}: expected integers, got "
                                 f"{line.strip()!r}") from None
        if len(values) == 1:
            mapping[index] = values[0]
        elif len(values) == 2:
            mapping[values[0]] = values[1]
        else:
            raise InputFileError(f"{map_path}:{number}: expected 'net_index' or "
                                 "'dataset_label net_index'")
        index += 1
    if not mapping:
        raise InputFileError(f"{map_path}: the class map is empty")
    return mapping


def map_labels(samples: list[Sample], offset: int = 0,
               class_map: dict[int, int] | None = None,
               source: str = "val list") -> list[Sample]:
    """Labels as net indices: through the class map (if any), then plus the offset (e.g. +1
    for a 1001-class head whose index 0 is 'background')."""
    out = []
    for s in samples:
        label = s.label
        if class_map is not None:
            if label not in class_map:
                raise InputFileError(f"{source}:{s.line}: label {label} is not in the class map")
            label = class_map[label]
        out.append(Sample(s.name, s.path, label + offset, s.line))
    return out


def check_labels(samples: list[Sample], num_classes: int, source: str = "val list") -> None:
    """Every label must index the net's output; the first bad one is reported."""
    for s in samples:
        if not 0 <= s.label < num_classes:
            raise InputFileError(
                f"{source}:{s.line}: label {s.label} (after offset/class map) is out of range "
                f"for the net's {num_classes} classes; use --label-offset or --class-map")


def check_files_exist(samples: list[Sample]) -> list[tuple[Sample, str]]:
    """(sample, reason) for every listed image that does not exist; cheap, done up front."""
    return [(s, "missing file") for s in samples if not os.path.isfile(s.path)]


class ImageError(InputFileError):
    """One image that cannot be used: missing, unreadable, not an image, truncated."""


def _jpeg_truncated(data: bytes) -> bool:
    # A JPEG ends with the EOI marker FF D9. Inside entropy-coded data FF is always followed by
    # 00 or a restart marker, so a missing FF D9 near the end means the file was cut short
    # (libjpeg then fills the rest with grey and only prints a warning). Some writers pad after
    # EOI, hence the search in the tail rather than at the last two bytes.
    return data[:2] == b"\xff\xd8" and b"\xff\xd9" not in data[-4096:]


def read_image_data(path: str) -> bytes:
    """The encoded bytes of an image file, checked before decoding: present, readable, not
    empty, not a truncated JPEG, not too many pixels. Raises ImageError naming the file."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise ImageError(f"{path}: missing file") from None
    except (OSError, ValueError) as err:  # ValueError: a NUL byte in the listed path
        raise ImageError(f"{path!r}: cannot read ({getattr(err, 'strerror', None) or err})"
                         ) from None
    if not data:
        raise ImageError(f"{path}: empty file")
    if _jpeg_truncated(data):
        raise ImageError(f"{path}: truncated JPEG (no end-of-image marker)")
    too_large = limits.image_too_large(data)  # from the header, before decoding
    if too_large:
        raise ImageError(f"{path}: {too_large}")
    return data


def load_image(path: str) -> np.ndarray:
    """Decode an image as BGR uint8 (greyscale expanded, alpha dropped: cv2.IMREAD_COLOR,
    what the original's cv2.imread did). Raises ImageError naming the file."""
    from caffezoo.frameworks import import_cv2

    cv2 = import_cv2()
    data = read_image_data(path)
    try:
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    except cv2.error:
        image = None
    if image is None or image.size == 0:
        raise ImageError(f"{path}: not a decodable image")
    return image


def load_image_pil(path: str) -> np.ndarray:
    """Decode an image as RGB uint8 the way torchvision's and timm's ImageFolder do
    (`PIL.Image.open(f).convert("RGB")`). Raises ImageError naming the file."""
    import io
    import warnings

    from PIL import Image

    data = read_image_data(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's bomb warning: limits checked above
            with Image.open(io.BytesIO(data)) as im:
                image = np.asarray(im.convert("RGB"))
    except Exception as err:  # Pillow raises many kinds for a file it cannot decode
        raise ImageError(f"{path}: not a decodable image ({type(err).__name__})") from None
    if image.size == 0:
        raise ImageError(f"{path}: not a decodable image")
    return image
