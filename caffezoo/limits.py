"""Bounds that keep a bad number or a hostile file from hanging the machine or exhausting its
memory, each checked before the work it guards (docs/reliability.md lists them all; memory
estimates of nets and batches live in caffezoo.memory).

- Parallelism: `--threads` and `-j/--workers` at most THREADS_PER_CPU per CPU this process may
  run on. More threads than CPUs only contend; 100000 of them hang a run for minutes.
- Images: at most MAX_IMAGE_PIXELS pixels, read from the file's header before it is decoded (a
  30000 x 30000 PNG is 875 KB on disk and 2.7 GB decoded).
- Source graphs: at most MAX_GRAPH_NODES nodes (the largest ImageNet classifiers have a few
  thousand).
"""

from __future__ import annotations

import os

from caffezoo.errors import InputFileError, UsageError

THREADS_PER_CPU = 4
# 2^27 = 134 million pixels (e.g. 11585 x 11585; 384 MiB as 8-bit BGR): a 50-megapixel
# photograph has 50 million
MAX_IMAGE_PIXELS = 1 << 27
MAX_GRAPH_NODES = 50_000


def cpus() -> int:
    """The CPUs this process may run on (its affinity mask, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def max_parallel() -> int:
    return THREADS_PER_CPU * cpus()


def check_parallel(option: str, value: int | None) -> None:
    """Refuses (UsageError) a thread or worker count above `max_parallel()`."""
    limit = max_parallel()
    if value is not None and value > limit:
        raise UsageError(f"{option} {value}: at most {limit} on this machine "
                         f"({THREADS_PER_CPU} per CPU, {cpus()} CPUs available)")


def image_too_large(data: bytes) -> str | None:
    """Why the encoded image `data` is refused (more than MAX_IMAGE_PIXELS pixels, read from
    its header without decoding it), or None. Formats Pillow does not read pass (OpenCV's
    decoder then applies its own limit of 2^30 pixels)."""
    import io
    import re
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's own decompression-bomb warning
            with Image.open(io.BytesIO(data)) as im:
                width, height = im.size
        pixels, size = width * height, f"{width} x {height} pixels"
    except Image.DecompressionBombError as err:  # over twice Pillow's limit: over ours too
        found = re.search(r"\((\d+) pixels\)", str(err))
        pixels = int(found.group(1)) if found else MAX_IMAGE_PIXELS + 1
        size = f"{pixels:,} pixels"
    except Exception:  # not an image Pillow reads: the decoder says what it is
        return None
    if pixels <= MAX_IMAGE_PIXELS:
        return None
    return (f"image of {size}; refused above {MAX_IMAGE_PIXELS:,} pixels (it would take "
            f"{pixels * 3 / 2**30:.1f} GiB decoded)")


def check_graph_nodes(path, count: int, what: str = "nodes") -> None:
    """Refuses (InputFileError) a source graph of more than MAX_GRAPH_NODES nodes."""
    if count > MAX_GRAPH_NODES:
        raise InputFileError(f"{path}: {count:,} {what}; refused above {MAX_GRAPH_NODES:,} "
                             "(the largest ImageNet classifiers have a few thousand)")
