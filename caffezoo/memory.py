"""Memory a net or a batch will need, estimated before anything is allocated, and the refusal
when it is more than the machine has available (docs/reliability.md).

The estimates follow what real Caffe allocates in a TEST-phase forward (blob data is allocated
on first use; diffs never are): every distinct blob (in-place layers share one), the weights
(in caffezoo and in Caffe while loading), each convolution's own im2col buffer (one image), the
statistics buffers of BatchNorm (two copies of its input), an in-place Scale's copy of its
input, and the index map of MAX pooling. OpenCV reuses its buffers, so for it only a lower
bound is used: the weights, and the largest layer's inputs and outputs at once.
"""

from __future__ import annotations

import os
from pathlib import Path

from caffezoo.errors import ResourceError

FLOAT = 4


def available_bytes() -> int | None:
    """Memory this process can still get: MemAvailable, capped by a cgroup limit when one is
    set. None where neither can be read (then nothing is refused)."""
    found = [v for v in [environment_override()] if v is not None]
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            limit = Path(limit_file).read_text().strip()
            usage = int(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 2**60:
            found.append(max(0, int(limit) - usage))
    return min(found) if found else None


def net_bytes(analysis, backend: str = "pycaffe") -> int:
    """Estimated bytes to run `analysis`'s net at the batch size it was analysed at."""
    weights = sum(_count(s) for layer in analysis.layers for s in layer.param_shapes)
    if backend != "pycaffe":
        largest = max((sum(_count(analysis.blob_shapes[b]) for b in layer.bottoms) +
                       sum(_count(s) for s in layer.out_shapes) for layer in analysis.layers),
                      default=0)
        return FLOAT * (2 * weights + largest)
    values = 2 * weights + sum(_count(s) for s in analysis.blob_shapes.values())
    for layer in analysis.layers:
        bottom = _count(analysis.blob_shapes[layer.bottoms[0]]) if layer.bottoms else 0
        if layer.type in ("Convolution", "Deconvolution"):
            values += _col_buffer(layer, analysis)
        elif layer.type == "BatchNorm":
            values += 2 * bottom
        elif layer.type == "Scale" and layer.tops and layer.tops[0] in layer.bottoms:
            values += bottom
        elif layer.type in ("Pooling", "LRN", "Eltwise"):
            values += _count(layer.out_shapes[0]) if layer.out_shapes else 0
    for shape in analysis.inputs.values():  # the batch as sent and as received
        values += 2 * _count(shape)
    return FLOAT * values


def _col_buffer(layer, analysis) -> int:
    # kernel_dim * group rows for one image, one column per output (input, for Deconvolution)
    # pixel; a 1x1 stride-1 convolution needs none. Derived from the weight shape.
    if not layer.param_shapes:
        return 0
    weight = layer.param_shapes[0]
    kernel = _count(weight[2:])
    out = layer.out_shapes[0]
    bottom = analysis.blob_shapes[layer.bottoms[0]]
    if layer.type == "Deconvolution":
        return out[1] * kernel * _count(bottom[2:]) if kernel > 1 else 0
    group = bottom[1] // weight[1] if weight[1] else 1
    if kernel == 1 and out[2:] == bottom[2:]:
        return 0
    return weight[1] * group * kernel * _count(out[2:])


def check(needed: int, what: str) -> None:
    """Refuses (ResourceError, one line) when `needed` bytes exceed what is available."""
    free = available_bytes()
    if free is not None and needed > free:
        raise ResourceError(f"{what} needs about {_size(needed)} of memory, this machine has "
                            f"{_size(free)} available")


def _count(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def _size(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def environment_override() -> int | None:
    """CAFFEZOO_MEMORY_LIMIT (bytes) caps what counts as available: for tests and for users
    who share a machine."""
    value = os.environ.get("CAFFEZOO_MEMORY_LIMIT")
    return int(value) if value and value.isdigit() else None
