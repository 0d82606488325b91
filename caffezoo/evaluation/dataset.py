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


def read_image_folder(data_dir: str | os.PathLike,
                      limit: int | None = None) -> tuple[list[Sample], list[str]]:
    """An ImageFolder tree: one sub-folder per class, classes in sorted folder-name order (for
    ImageNet's wnid folders that is the synset order of ILSVRC2012_val.txt), label = the class's
    index. Images are the files with an image extension anywhere below a class folder, sorted by
    path; `line` is the image's 1-based position. Returns (samples, class names)."""
    root = Path(_expand(data_dir))
    if not root.is_dir():
        raise InputFileError(f"{root}: not a folder (--data-dir expects one sub-folder per "
                             "class)")
    classes = sorted(entry.name for entry in os.scandir(root)
                     if entry.is_dir() and not entry.name.startswith("."))
    if not classes:
        raise InputFileError(f"{root}: no class folders (--data-dir expects one sub-folder per "
                             "class, e.g. n01440764/)")
    samples: list[Sample] = []
    for label, name in enumerate(classes):
        files = sorted(path for path in (root / name).rglob("*")
                       if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file())
        for path in files:
            samples.append(Sample(name=path.relative_to(root).as_posix(), path=str(path),
                                  label=label, line=len(samples) + 1))
            if limit is not None and len(samples) >= limit:
                return samples, classes
    if not samples:
        raise InputFileError(f"{root}: no images in its {len(classes)} class folders "
                             f"(extensions: {', '.join(IMAGE_EXTENSIONS)})")
    return samples, classes


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


def load_image(path: str) -> np.ndarray:
    """Decode an image as BGR uint8 (greyscale expanded, alpha dropped: cv2.IMREAD_COLOR,
    what the original's cv2.imread did). Raises ImageError naming the file."""
    from caffezoo.frameworks import import_cv2

    cv2 = import_cv2()
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
    try:
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    except cv2.error:
        image = None
    if image is None or image.size == 0:
        raise ImageError(f"{path}: not a decodable image")
    return image

