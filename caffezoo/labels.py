"""Class labels of the label sets a contract can name (caffezoo/contract.py LABEL_SETS).

`imagenet-1k`: the 1000 ILSVRC2012 classes in sorted-wnid order, the order of ILSVRC2012_val.txt
and of an ImageNet ImageFolder tree with all 1000 folders; `caffezoo/data/imagenet_1k.txt` holds
them (wnid and WordNet lemmas, the list Caffe's `synset_words.txt` and timm's ImageNet info
files carry).
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

IMAGENET_1K_FILE = Path(__file__).resolve().parent / "data" / "imagenet_1k.txt"
WNID = re.compile(r"n\d{8}")


@lru_cache(maxsize=1)
def imagenet_1k() -> tuple[tuple[str, str], ...]:
    """(wnid, lemmas) of the 1000 classes, index = class index."""
    rows = []
    for line in IMAGENET_1K_FILE.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            wnid, _, lemmas = line.partition("\t")
            rows.append((wnid, lemmas))
    return tuple(rows)


def imagenet_1k_wnids() -> dict[str, int]:
    """wnid -> class index (0..999)."""
    return {wnid: i for i, (wnid, _) in enumerate(imagenet_1k())}


def class_names(labels, num_classes: int, label_offset: int = 0) -> list[str]:
    """A short name per output index: the first lemma of a known label set, the given names,
    else the index itself ("class 17"); an offset's leading indices are "background"."""
    names: list[str] = []
    if labels == "imagenet-1k":
        names = [lemmas.split(",")[0] for _, lemmas in imagenet_1k()]
    elif isinstance(labels, tuple | list):
        return [str(n) for n in labels]
    out = ["background"] * label_offset + names
    return [out[i] if i < len(out) else f"class {i}" for i in range(num_classes)]
