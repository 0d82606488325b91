"""The one input maker of validation: the same images, prepared for each side by its contract.

The net gets what `caffezoo eval` feeds it: each image file goes through eval's pipeline
(caffezoo.evaluation.preprocess.Pipeline) for the net's InputContract, OpenCV or PIL resize and
crop as the contract says. The source gets the same resize and crop with its own channel order
and normalisation (`InputContract.normalized_as`). Seeded random images are BGR pixels 0..255
that each side normalises by its contract (`InputContract.apply`); a source that states no
normalisation gets seeded standard normal tensors, the net the same tensors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from caffezoo.contract import InputContract
from caffezoo.errors import InputFileError


@dataclass
class Inputs:
    """What both sides run: the same N inputs, each made the side's way."""

    source: np.ndarray  # (N, C, H, W) the source's input
    caffe: np.ndarray  # (N, C, H, W) the net's input
    what: str  # the inputs in words
    source_input: str  # how each side's input is made, in words
    caffe_input: str


def input_memory(n: int, shape: tuple[int, ...]) -> None:
    """Refuses `n` inputs of `shape` that would not fit in memory: they are held as float32
    three times over (as made, and once for each side)."""
    from caffezoo import memory

    memory.check(3 * 4 * n * math.prod(shape),
                 f"{n} inputs of {'x'.join(map(str, shape))} (--random, --images)")


def random_pixels(n: int, size: int, seed: int = 0) -> np.ndarray:
    """`n` seeded random images (N, 3, size, size), BGR 0..255: smooth colour gradients with
    noise, so that both borders and interiors carry signal."""
    input_memory(n, (3, size, size))
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / max(1, size - 1)
    out = np.empty((n, 3, size, size), np.float32)
    for i in range(n):
        for c in range(3):
            a, b, base = rng.uniform(-120, 120, 3)
            field = 127.5 + base * 0.5 + a * (xx - 0.5) + b * (yy - 0.5)
            out[i, c] = np.clip(field + rng.normal(0, 40, (size, size)), 0, 255)
    return out


def from_pixels(pixels: np.ndarray, net: InputContract, source: InputContract,
                what: str) -> Inputs:
    """BGR pixels 0..255 (N, 3, H, W), normalised for each side by its contract."""
    return Inputs(source.apply(pixels), net.apply(pixels), what,
                  source.describe_normalization(), net.describe_normalization())


def random_inputs(n: int, net: InputContract, source: InputContract, seed: int = 0) -> Inputs:
    """`n` seeded random images (random_pixels) at the net's crop size."""
    return from_pixels(random_pixels(n, net.crop_size, seed), net, source,
                       f"{n} seeded random images (seed {seed})")


def normal_inputs(n: int, shape: tuple[int, ...], reverse: bool, seed: int = 0) -> Inputs:
    """`n` seeded standard normal tensors of `shape` (C, H, W) for a source that states no
    normalisation; the net gets them with the channels reversed when `reverse`."""
    input_memory(n, shape)
    x = np.random.default_rng(seed).standard_normal((n, *shape)).astype(np.float32)
    caffe = np.ascontiguousarray(x[:, ::-1]) if reverse else x
    return Inputs(x, caffe, f"{n} seeded standard normal tensors (seed {seed})",
                  "none (normal tensors)", "none (normal tensors)")


def image_files(folder: str | Path, limit: int | None = None) -> list[Path]:
    """The images of `folder` (the file types eval reads), sorted by name, at most `limit`."""
    from caffezoo.evaluation.dataset import IMAGE_EXTENSIONS

    folder = Path(folder)
    if not folder.is_dir():
        raise InputFileError(f"{folder}: not a folder of images")
    files = sorted(p for p in folder.iterdir()
                   if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if limit is not None:
        files = files[:limit]
    if not files:
        raise InputFileError(f"{folder}: no images ({', '.join(IMAGE_EXTENSIONS)})")
    return files


def image_inputs(folder: str | Path, net: InputContract, source: InputContract,
                 limit: int | None = None) -> Inputs:
    """The images of `folder` (sorted by name), each decoded once and cropped as eval does for
    the net's contract (one centre crop), normalised for each side by its contract."""
    from caffezoo.evaluation.preprocess import Pipeline
    from caffezoo.progress import steps

    files = image_files(folder, limit)
    size = net.crop_size
    input_memory(len(files), (3, size, size))
    to_net, to_source = Pipeline(net), Pipeline(net.normalized_as(source))
    caffe, src = [], []
    for f in steps(files, label="reading images", unit="img", delay=1.0):
        image = to_net.decode(str(f))
        caffe.append(to_net(image))
        src.append(to_source(image))
    what = (f"{len(files)} images from {folder} (resized to {net.resize_size} ({net.resize}, "
            f"{net.interpolation}), centre {size}x{size})")
    return Inputs(np.concatenate(src), np.concatenate(caffe), what,
                  source.describe_normalization(), net.describe_normalization())


def make_inputs(shape: tuple[int, ...], net: InputContract | None,
                source: InputContract | None, images: str | Path | None = None,
                random: int | None = None, seed: int = 0, limit: int | None = None,
                reverse: bool = False) -> Inputs:
    """What `validate` runs, for a net taking (C, H, W) `shape`: the images of the folder
    `images`, else `random` (default 4) seeded random images, at most `limit`; standard normal
    tensors where the source states no normalisation (`source` None; `reverse`: the net takes
    their channels reversed)."""
    c, h, w = shape
    if images is not None:
        if net is None or source is None:
            raise InputFileError(f"{images}: the source states no input normalisation, so "
                                 "images cannot be fed to it; use --random")
        if h != w or c != 3:
            raise InputFileError(f"{images}: images need a square 3-channel input, the net "
                                 f"takes {c}x{h}x{w}; use --random")
        return image_inputs(images, net, source, limit)
    n = 4 if random is None else random
    if limit is not None:
        n = min(n, limit)
    if n < 1:
        raise InputFileError(f"--random {n}: need at least one input")
    if net is not None and source is not None and c == 3 and h == w:
        return random_inputs(n, net, source, seed)
    return normal_inputs(n, shape, reverse, seed)
