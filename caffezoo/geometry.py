"""The windows of convolution and pooling layers: Caffe's rules, and the source frameworks'
beside them, each written once.

A Caffe layer's window is read from its LayerParameter here only, with Caffe's field rules
(base_conv_layer.cpp, pooling_layer.cpp): `kernel_h`/`kernel_w` (likewise stride, pad) are
given together and replace `kernel_size`, which is otherwise repeated per spatial axis; a
field's presence (HasField), not its value, decides which is read. Analysis, the graph
emitter, matching, the converters' checks and both exporters use:

- `conv_window`, `conv_out`, `deconv_out`: a Convolution's kernel/stride/pad/dilation and the
  output size (Caffe rounds down);
- `pool_window`, `caffe_pooled`: a Pooling's window and Caffe's output size (rounding up by
  default, `ceil_mode: false` down; with any padding, a last window that would start inside the
  padding is dropped, on both axes);
- `source_pooled` (PyTorch, ONNX: a ceil-mode last window starting in the end padding is
  dropped) and `full_pooled` (MXNet's 'full'/'valid', nothing dropped);
- `same_padding` and `tf_padding`: TensorFlow's SAME (ONNX SAME_UPPER/LOWER) and VALID;
- `window_sizes`, `caffe_divisors`, `exclude_pad_factors`: how many elements an average divides
  by per output position: Caffe's (padding counted, up to the padded border) and the real
  pixels only (count_include_pad=False).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


class GeometryError(ValueError):
    """A window Caffe refuses; the message names the fields, the caller names the layer."""


# ---------------------------------------------------------------------------------------------
# convolution


@dataclass(frozen=True)
class ConvWindow:
    """A Convolution's (or Deconvolution's) window, one value per spatial axis."""

    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    pad: tuple[int, ...]
    dilation: tuple[int, ...]


def conv_window(p, n: int = 2) -> ConvWindow:
    """The window of ConvolutionParameter `p` over `n` spatial axes, read as Caffe does."""
    def repeated(values, default: int | None, what: str) -> list[int]:
        values = list(values)
        if not values:
            if default is None:
                raise GeometryError(f"no {what} given")
            return [default] * n
        if len(values) == 1:
            return values * n
        if len(values) != n:
            raise GeometryError(f"{len(values)} {what} values for {n} spatial axes")
        return values

    def pair(h: str, w: str, single, default: int | None, what: str) -> list[int]:
        if p.HasField(h) or p.HasField(w):
            if n != 2 or len(single):
                raise GeometryError(f"{what} is {what} OR {h} and {w} (2-D only)")
            if not (p.HasField(h) and p.HasField(w)):
                raise GeometryError(f"{h} and {w} must be given together")
            return [getattr(p, h), getattr(p, w)]
        return repeated(single, default, what)

    kernel = pair("kernel_h", "kernel_w", p.kernel_size, None, "kernel_size")
    stride = pair("stride_h", "stride_w", p.stride, 1, "stride")
    pad = pair("pad_h", "pad_w", p.pad, 0, "pad")
    dilation = repeated(p.dilation, 1, "dilation")
    if min(kernel) <= 0 or min(stride) <= 0 or min(dilation) <= 0:
        raise GeometryError("kernel, stride and dilation must be positive")
    return ConvWindow(tuple(kernel), tuple(stride), tuple(pad), tuple(dilation))


def conv_out(n: int, k: int, s: int = 1, pad: int = 0, dilation: int = 1) -> int:
    """Output size of a convolution on one axis (Caffe, PyTorch, ONNX: rounded down)."""
    return (n + 2 * pad - (dilation * (k - 1) + 1)) // s + 1


def deconv_out(n: int, k: int, s: int = 1, pad: int = 0, dilation: int = 1) -> int:
    """Output size of Caffe's Deconvolution on one axis."""
    return s * (n - 1) + dilation * (k - 1) + 1 - 2 * pad


# ---------------------------------------------------------------------------------------------
# pooling


@dataclass(frozen=True)
class PoolWindow:
    """A Pooling's window (h, w); a global pooling's kernel is its input's size."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    pad: tuple[int, int]
    ceil: bool  # Caffe's default rounds the output size up; ceil_mode: false rounds down
    global_pooling: bool


def pool_window(p, in_hw: Sequence[int]) -> PoolWindow:
    """The window of PoolingParameter `p` on an input of spatial size `in_hw`, read and checked
    as Caffe's PoolingLayer::LayerSetUp does."""
    has_kernel = p.HasField("kernel_size") or p.HasField("kernel_h") or p.HasField("kernel_w")
    if p.global_pooling:
        if has_kernel:
            raise GeometryError("global pooling takes no kernel size")
        kernel = (int(in_hw[0]), int(in_hw[1]))
    elif p.HasField("kernel_h") or p.HasField("kernel_w"):
        if p.HasField("kernel_size") or not (p.HasField("kernel_h") and p.HasField("kernel_w")):
            raise GeometryError("kernel is kernel_size OR kernel_h and kernel_w")
        kernel = (p.kernel_h, p.kernel_w)
    elif p.HasField("kernel_size"):
        kernel = (p.kernel_size, p.kernel_size)
    else:
        raise GeometryError("no kernel size (and not global pooling)")
    pad = (p.pad_h, p.pad_w) if p.HasField("pad_h") or p.HasField("pad_w") else (p.pad, p.pad)
    if p.HasField("stride_h") or p.HasField("stride_w"):
        stride = (p.stride_h, p.stride_w)
    else:
        stride = (p.stride, p.stride)
    if min(kernel) <= 0 or min(stride) <= 0:
        raise GeometryError("kernel and stride must be positive")
    if p.global_pooling and (any(pad) or stride != (1, 1)):
        raise GeometryError("global pooling needs pad 0 and stride 1")
    if pad[0] >= kernel[0] or pad[1] >= kernel[1]:
        raise GeometryError(f"pad ({pad[0]}, {pad[1]}) must be smaller than the kernel "
                            f"({kernel[0]}, {kernel[1]})")
    ceil = p.ceil_mode if p.HasField("ceil_mode") else True
    return PoolWindow(kernel, stride, pad, bool(ceil), bool(p.global_pooling))


def full_pooled(n: int, k: int, s: int, lo: int, hi: int, ceil: bool) -> int:
    """floor or ceil of (n + lo + hi - k) / s, plus one: MXNet's 'valid' and 'full'
    conventions, which keep every window."""
    span = n + lo + hi - k
    return (-(-span // s) if ceil else span // s) + 1


def source_pooled(n: int, k: int, s: int, lo: int, hi: int, ceil: bool) -> int:
    """Output size of a PyTorch or ONNX pooling (the graph IR's semantics): in ceil mode a last
    window that would start in the end padding is dropped."""
    out = full_pooled(n, k, s, lo, hi, ceil)
    if ceil and (out - 1) * s >= n + lo:
        out -= 1
    return out


def caffe_pooled(n: int, k: int, s: int = 1, pad: int = 0, ceil: bool = True,
                 any_pad: bool | None = None) -> int:
    """Output size of Caffe's Pooling on one axis: with any pad on either axis (`any_pad`,
    default: this axis's), a last window that would start in the padding is dropped, in ceil
    and floor mode alike (pooling_layer.cpp tests pad_h || pad_w)."""
    out = full_pooled(n, k, s, pad, pad, ceil)
    if (bool(pad) if any_pad is None else any_pad) and (out - 1) * s >= n + pad:
        out -= 1
    return out


def caffe_pooled_hw(w: PoolWindow, in_hw: Sequence[int]) -> tuple[int, int]:
    """Caffe's output size (h, w) of pooling window `w` on `in_hw`."""
    if w.global_pooling:
        return 1, 1
    any_pad = bool(w.pad[0] or w.pad[1])
    return (caffe_pooled(in_hw[0], w.kernel[0], w.stride[0], w.pad[0], w.ceil, any_pad),
            caffe_pooled(in_hw[1], w.kernel[1], w.stride[1], w.pad[1], w.ceil, any_pad))


def same_padding(n: int, k: int, s: int, dilation: int = 1) -> tuple[int, int]:
    """(pad before, pad after) of TensorFlow's SAME (ONNX SAME_UPPER): the output is
    ceil(n / s), and an odd total pad puts its extra pixel at the end."""
    total = max((math.ceil(n / s) - 1) * s + (k - 1) * dilation + 1 - n, 0)
    return total // 2, total - total // 2


def tf_padding(n: int, k: int, s: int, padding: str, pad: int = 0) -> tuple[int, int, int]:
    """(pad before, pad after, output size) of TensorFlow's SAME or VALID (or `pad` pixels on
    each side, then VALID: "EXPLICIT") on one axis."""
    if padding in ("VALID", "EXPLICIT"):
        p = pad if padding == "EXPLICIT" else 0
        return p, p, conv_out(n, k, s, p)
    if padding != "SAME":
        raise GeometryError(f"unknown TF padding {padding!r}")
    before, after = same_padding(n, k, s)
    return before, after, -(-n // s)


def window_sizes(n_out: int, k: int, s: int, start_pad: int, end: int,
                 lo: int | None = None) -> np.ndarray:
    """Per output position on one axis, the size of the window (starting at i * s - start_pad)
    clipped to [lo, end); lo None: not clipped at the start."""
    start = np.arange(n_out) * s - start_pad
    stop = np.minimum(start + k, end)
    return stop - (start if lo is None else np.maximum(start, lo))


def caffe_divisors(n: int, n_out: int, k: int, s: int, pad: int) -> np.ndarray:
    """What Caffe's AVE pooling divides each output by on one axis: the window counted padding
    included, but stopped at the padded border (hend = min(hstart + k, n + pad))."""
    return window_sizes(n_out, k, s, pad, n + pad)


def exclude_pad_factors(w: PoolWindow, in_hw: Sequence[int], out_hw: Sequence[int]
                        ) -> np.ndarray:
    """kernel_area / real pixels for every output position of Caffe pooling window `w`: the
    Scale blob that turns Caffe's padding-included average into the padding-excluded one."""
    (kh, kw), (sh, sw), (ph, pw) = w.kernel, w.stride, w.pad
    ch = window_sizes(out_hw[0], kh, sh, ph, in_hw[0], 0)
    cw = window_sizes(out_hw[1], kw, sw, pw, in_hw[1], 0)
    return (kh * kw / np.outer(ch, cw)).astype(np.float32)
