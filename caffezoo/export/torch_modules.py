"""The torch side of the PyTorch export (caffezoo/export/torch.py): one `nn.Module` per Caffe
layer rule and `CaffeNet`, the net they make. Importing this module imports torch, so
export/torch.py imports it on first use only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from caffezoo import frameworks, geometry, netio
from caffezoo.errors import NetDefinitionError
from caffezoo.export import export_net
from caffezoo.export.export_net import FLT_MAX, ExportNet

torch = frameworks.import_torch()
nn = torch.nn
F = torch.nn.functional


def tensor(a) -> torch.Tensor:
    return torch.from_numpy(np.array(a, dtype=np.float32, order="C"))


class Layer(nn.Module):
    """One Caffe layer: forward(*bottoms) -> list of tops."""

    def __init__(self, layer, stats, shapes, blobs) -> None:
        super().__init__()
        self.caffe_name = layer.name
        self.caffe_type = layer.type

    def extra_repr(self) -> str:
        return f"'{self.caffe_name}' ({self.caffe_type})"


class Conv(Layer):
    def __init__(self, layer, stats, shapes, blobs, fused: bool = False) -> None:
        super().__init__(layer, stats, shapes, blobs)
        n = len(shapes[0]) - 2
        w = geometry.conv_window(layer.convolution_param, n)
        self.stride, self.padding, self.dilation = w.stride, w.pad, w.dilation
        self.groups = layer.convolution_param.group
        weight = blobs[0]
        self.explicit = None  # F.pad's (left, right, top, bottom, ...) when asymmetric
        if fused and layer.type == "Convolution":
            weight, begin, end = export_net.trim_zero_taps(
                weight, self.padding, self.stride, self.dilation, shapes[0][2:],
                stats.out_shapes[0][2:])
            if begin == end:
                self.padding = begin
            else:
                self.padding = (0,) * n
                self.explicit = tuple(p for b, e in zip(begin[::-1], end[::-1], strict=True)
                                      for p in (b, e))
        self.weight = nn.Parameter(tensor(weight), requires_grad=False)
        self.bias = (nn.Parameter(tensor(blobs[1]), requires_grad=False)
                     if layer.convolution_param.bias_term else None)
        transposed = layer.type == "Deconvolution"
        self.fn = ({1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}
                   if transposed else {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}).get(n)
        if self.fn is None:
            raise export_net.conversion_error("torch export", layer,
                                        f"{n} spatial axes (1 to 3 supported)")
        self.transposed = transposed

    def forward(self, x):
        if self.transposed:
            return [self.fn(x, self.weight, self.bias, self.stride, self.padding, 0,
                            self.groups, self.dilation)]
        if self.explicit is not None:
            x = F.pad(x, self.explicit)
        return [self.fn(x, self.weight, self.bias, self.stride, self.padding,
                        self.dilation, self.groups)]


class Pool(Layer):
    def __init__(self, layer, stats, shapes, blobs) -> None:
        super().__init__(layer, stats, shapes, blobs)
        p = layer.pooling_param
        self.ave = p.pool == 1
        self.global_pool = p.global_pooling
        self.scaled = False
        if self.global_pool:
            return
        g = export_net.pool_geometry(layer, shapes[0], stats.out_shapes[0])
        self.kernel, self.stride = g.kernel, g.stride
        symmetric = g.pad_begin == g.pad_end and all(
            pd <= k // 2 for pd, k in zip(g.pad_begin, g.kernel, strict=True))
        # torch pads symmetrically, at most half the kernel: else pad explicitly
        self.padding = g.pad_begin if symmetric else (0, 0)
        self.explicit = None if symmetric else (g.pad_begin[1], g.pad_end[1],
                                                g.pad_begin[0], g.pad_end[0])
        self.empty = g.empty and not self.ave
        if self.ave and g.factor is not None:
            self.scaled = True
            self.register_buffer("factor", tensor(g.factor), persistent=False)

    def forward(self, x):
        if self.global_pool:
            return [x.mean((2, 3), keepdim=True) if self.ave else
                    x.amax((2, 3), keepdim=True)]
        if self.explicit is not None:
            x = F.pad(x, self.explicit, value=0.0 if self.ave else -math.inf)
        if self.ave:
            y = F.avg_pool2d(x, self.kernel, self.stride, self.padding,
                             count_include_pad=True)
            if self.scaled:
                y = y * self.factor
        else:
            y = F.max_pool2d(x, self.kernel, self.stride, self.padding)
            if self.empty:
                y = y.clamp(min=-FLT_MAX)
        return [y]


class InnerProduct(Layer):
    def __init__(self, layer, stats, shapes, blobs) -> None:
        super().__init__(layer, stats, shapes, blobs)
        p = layer.inner_product_param
        self.axis = export_net.canonical_axis(p.axis, len(shapes[0]))
        w = blobs[0].T if p.transpose else blobs[0]
        self.weight = nn.Parameter(tensor(w), requires_grad=False)
        self.bias = nn.Parameter(tensor(blobs[1]), requires_grad=False) \
            if p.bias_term else None

    def forward(self, x):
        x = x.reshape(tuple(x.shape[:self.axis]) + (-1,))
        return [F.linear(x, self.weight, self.bias)]


class BatchNorm(Layer):
    def __init__(self, layer, stats, shapes, blobs) -> None:
        super().__init__(layer, stats, shapes, blobs)
        p = layer.batch_norm_param
        self.eps = float(np.float32(p.eps))
        self.batch_stats = p.HasField("use_global_stats") and not p.use_global_stats
        mean, var = export_net.caffe_batch_norm_stats(blobs)
        self.register_buffer("mean", tensor(mean))
        self.register_buffer("var", tensor(var))

    def forward(self, x):
        if self.batch_stats:
            axes = [0] + list(range(2, x.dim()))
            centred = x - x.mean(axes, keepdim=True)
            var = (centred * centred).mean(axes, keepdim=True)
            return [centred / torch.sqrt(var + self.eps)]
        if x.dim() == 1:
            return [(x - self.mean) / torch.sqrt(self.var + self.eps)]
        return [F.batch_norm(x, self.mean, self.var, None, None, False, 0.0, self.eps)]


class Affine(Layer):
    """Scale (multiply) or Bias (add), blob or second bottom broadcast from axis."""

    def __init__(self, layer, stats, shapes, blobs) -> None:
        super().__init__(layer, stats, shapes, blobs)
        self.scale = layer.type == "Scale"
        param = layer.scale_param if self.scale else layer.bias_param
        shape = shapes[0]
        self.two = len(layer.bottom) == 2
        bias_term = self.scale and param.bias_term
        self.bias = None
        if self.two:
            self.other_shape = export_net.affine_blob_shape(shape, param.axis, shapes[1]) \
                if shapes[1] else ()
            if bias_term:
                self.bias = nn.Parameter(tensor(blobs[0].reshape(
                    export_net.affine_blob_shape(shape, param.axis, blobs[0].shape))),
                    requires_grad=False)
            return
        self.weight = nn.Parameter(tensor(blobs[0].reshape(
            export_net.affine_blob_shape(shape, param.axis, blobs[0].shape))),
            requires_grad=False)
        if bias_term:
            self.bias = nn.Parameter(tensor(blobs[1].reshape(
                export_net.affine_blob_shape(shape, param.axis, blobs[1].shape))),
                requires_grad=False)

    def forward(self, x, other=None):
        factor = self.weight if other is None else (
            other.reshape(tuple(other.shape) + (1,) * (len(self.other_shape)
                                                      - other.dim()))
            if self.other_shape else other)
        y = x * factor if self.scale else x + factor
        if self.bias is not None:
            y = y + self.bias
        return [y]


class Eltwise(Layer):
    def __init__(self, layer, stats, shapes, blobs) -> None:
        super().__init__(layer, stats, shapes, blobs)
        p = layer.eltwise_param
        self.op = p.operation
        self.coeff = list(p.coeff) or [1.0] * len(layer.bottom)

    def forward(self, *xs):
        if self.op == 0:
            y = xs[0]
            for x in xs[1:]:
                y = y * x
        elif self.op == 2:
            y = xs[0]
            for x in xs[1:]:
                y = torch.maximum(y, x)
        else:
            y = xs[0] if self.coeff[0] == 1 else xs[0] * self.coeff[0]
            for x, c in zip(xs[1:], self.coeff[1:], strict=True):
                y = y + x if c == 1 else y + x * c
        return [y]


class Concat(Layer):
    def __init__(self, layer, stats, shapes, blobs) -> None:
        super().__init__(layer, stats, shapes, blobs)
        p = layer.concat_param
        axis = p.concat_dim if p.HasField("concat_dim") else p.axis
        self.axis = export_net.canonical_axis(axis, len(shapes[0]))

    def forward(self, *xs):
        return [torch.cat(xs, self.axis)]


class Slice(Layer):
    def __init__(self, layer, stats, shapes, blobs) -> None:
        super().__init__(layer, stats, shapes, blobs)
        p = layer.slice_param
        self.axis = export_net.canonical_axis(p.slice_dim if p.HasField("slice_dim") else p.axis,
                                        len(shapes[0]))
        self.sizes = [s[self.axis] for s in stats.out_shapes]

    def forward(self, x):
        return list(torch.split(x, self.sizes, self.axis))


class Identity(Layer):
    def __init__(self, layer, stats, shapes, blobs) -> None:
        super().__init__(layer, stats, shapes, blobs)
        self.n = len(layer.top)

    def forward(self, x):
        return [x] * self.n


class Flatten(Layer):
    def __init__(self, layer, stats, shapes, blobs) -> None:
        super().__init__(layer, stats, shapes, blobs)
        p = layer.flatten_param
        n = len(shapes[0])
        self.start = export_net.canonical_axis(p.axis, n)
        self.end = export_net.canonical_axis(p.end_axis, n)

    def forward(self, x):
        return [x.flatten(self.start, self.end)]


class Reshape(Layer):
    def __init__(self, layer, stats, shapes, blobs) -> None:
        super().__init__(layer, stats, shapes, blobs)
        self.param = layer.reshape_param
        self.layer = layer

    def forward(self, x):
        return [x.reshape(caffe_reshape(self.layer, tuple(x.shape)))]


class Softmax(Layer):
    def __init__(self, layer, stats, shapes, blobs) -> None:
        super().__init__(layer, stats, shapes, blobs)
        self.axis = export_net.canonical_axis(layer.softmax_param.axis, len(shapes[0]))

    def forward(self, x):
        return [torch.softmax(x, self.axis)]


class PReLU(Layer):
    def __init__(self, layer, stats, shapes, blobs) -> None:
        super().__init__(layer, stats, shapes, blobs)
        self.weight = nn.Parameter(tensor(blobs[0].reshape(-1)), requires_grad=False)

    def forward(self, x):
        return [F.prelu(x, self.weight)]


class LRN(Layer):
    def __init__(self, layer, stats, shapes, blobs) -> None:
        super().__init__(layer, stats, shapes, blobs)
        self.p = layer.lrn_param

    def forward(self, x):
        p = self.p
        if p.norm_region == 0:
            return [F.local_response_norm(x, p.local_size, p.alpha, p.beta, p.k)]
        pad = (p.local_size - 1) // 2
        avg = F.avg_pool2d(x * x, p.local_size, 1, pad, count_include_pad=True)
        return [x * torch.pow(1.0 + p.alpha * avg, -p.beta)]


class Elementwise(Layer):
    """The one-input, same-shape layers."""

    def __init__(self, layer, stats, shapes, blobs) -> None:
        super().__init__(layer, stats, shapes, blobs)
        self.layer = layer

    def forward(self, x):
        return [elementwise(self.layer, x)]


class Crop(Layer):
    def __init__(self, layer, stats, shapes, blobs) -> None:
        super().__init__(layer, stats, shapes, blobs)
        p = layer.crop_param
        shape, out = shapes[0], stats.out_shapes[0]
        start = export_net.canonical_axis(p.axis, len(shape))
        offsets = list(p.offset)
        self.cuts = []
        for i in range(start, len(shape)):
            off = 0 if not offsets else offsets[0] if len(offsets) == 1 \
                else offsets[i - start]
            if off or out[i] != shape[i]:
                self.cuts.append((i, off, out[i]))

    def forward(self, x, ref):
        for axis, off, size in self.cuts:
            x = x.narrow(axis, off, size)
        return [x]


class Permute(Layer):
    def __init__(self, layer, stats, shapes, blobs) -> None:
        super().__init__(layer, stats, shapes, blobs)
        order = list(layer.permute_param.order)
        self.order = order + [a for a in range(len(shapes[0])) if a not in order]

    def forward(self, x):
        return [x.permute(self.order)]


class MVN(Layer):
    def __init__(self, layer, stats, shapes, blobs) -> None:
        super().__init__(layer, stats, shapes, blobs)
        self.p = layer.mvn_param

    def forward(self, x):
        axes = list(range(1 if self.p.across_channels else 2, x.dim()))
        y = x - x.mean(axes, keepdim=True)
        if self.p.normalize_variance:
            std = torch.sqrt((y * y).mean(axes, keepdim=True))
            y = y / (std + self.p.eps)
        return [y]


def elementwise(layer, x):
    t = layer.type
    if t == "ReLU":
        s = layer.relu_param.negative_slope
        return F.relu(x) if s == 0 else F.leaky_relu(x, s)
    if t == "ReLU6":
        p = layer.relu6_param
        if p.negative_slope == 0:
            return F.hardtanh(x, 0.0, p.threshold)
        return torch.clamp(F.leaky_relu(x, p.negative_slope), max=p.threshold)
    if t == "Clip":
        return torch.clamp(x, layer.clip_param.min, layer.clip_param.max)
    if t == "Swish":
        beta = layer.swish_param.beta
        return F.silu(x) if beta == 1 else x * torch.sigmoid(x * beta)
    if t == "Sigmoid":
        return torch.sigmoid(x)
    if t == "HardSigmoid":  # the fork's: max(0, min(1, alpha x + beta))
        p = layer.hardsigmoid_param
        if p.alpha == np.float32(1 / 6) and p.beta == 0.5:
            return F.hardsigmoid(x)  # the same formula in one kernel
        return torch.clamp(x * p.alpha + p.beta, 0.0, 1.0)
    if t == "HardSwish":  # the fork's: x * max(0, min(1, x / 6 + 0.5)), torch's hardswish
        return F.hardswish(x)
    if t == "TanH":
        return torch.tanh(x)
    if t == "AbsVal":
        return torch.abs(x)
    if t == "BNLL":
        return torch.where(x > 0, x + torch.log1p(torch.exp(-x)),
                           torch.log1p(torch.exp(x)))
    if t == "ELU":
        return F.elu(x, layer.elu_param.alpha)
    if t == "Threshold":
        return (x > layer.threshold_param.threshold).to(x.dtype)
    if t == "Power":
        p = layer.power_param
        if p.scale * p.power == 0:
            value = 1.0 if p.power == 0 else float(np.float32(p.shift) ** p.power)
            return torch.full_like(x, value)
        y = x * p.scale if p.scale != 1 else x
        y = y + p.shift if p.shift != 0 else y
        return torch.pow(y, p.power) if p.power != 1 else y
    if t == "Exp":
        p = layer.exp_param
        log_base = 1.0 if p.base == -1 else math.log(p.base)
        inner = float(np.float32(log_base * p.scale))
        outer = 1.0 if p.shift == 0 else (math.e ** p.shift if p.base == -1
                                          else p.base ** p.shift)
        y = torch.exp(x * inner if inner != 1 else x)
        return y * float(np.float32(outer)) if np.float32(outer) != 1 else y
    if t == "Log":
        p = layer.log_param
        y = x * p.scale if p.scale != 1 else x
        y = torch.log(y + p.shift if p.shift != 0 else y)
        base_scale = np.float32(1.0 if p.base == -1 else 1.0 / math.log(p.base))
        return y * float(base_scale) if base_scale != 1 else y
    raise NetDefinitionError(f"layer '{layer.name}': no torch rule for type '{t}'")


LAYER_CLASSES = {
    "Convolution": Conv, "Deconvolution": Conv, "Pooling": Pool,
    "InnerProduct": InnerProduct, "BatchNorm": BatchNorm, "Scale": Affine, "Bias": Affine,
    "Eltwise": Eltwise, "Concat": Concat, "Slice": Slice, "Split": Identity,
    "Dropout": Identity, "Flatten": Flatten, "Reshape": Reshape, "Softmax": Softmax,
    "PReLU": PReLU, "LRN": LRN, "Crop": Crop, "MVN": MVN, "Permute": Permute,
    **dict.fromkeys(("ReLU", "ReLU6", "Clip", "Swish", "Sigmoid", "TanH", "AbsVal", "BNLL",
                     "ELU", "Threshold", "Power", "Exp", "Log", "HardSigmoid", "HardSwish"),
                    Elementwise),
}


class CaffeNet(nn.Module):
    """A Caffe net as a module. `forward(*inputs)` takes the net's inputs in order and
    returns its output blob (a dict blob -> tensor when it has several); `blobs(...)`
    returns any blobs by Caffe name, with Caffe's meaning (the value after the whole
    pass, so a blob rewritten in place holds the last writer's output)."""

    def __init__(self, ex: ExportNet) -> None:
        super().__init__()
        self.prototxt = netio.format_prototxt(ex.net)
        self.source = ex.source
        self.input_names = list(ex.inputs)
        self.input_shapes = {k: tuple(v) for k, v in ex.inputs.items()}
        self.output_names = list(ex.outputs)
        self.layers = nn.ModuleDict()
        self.steps: list[tuple[str, list[str], list[str]]] = []
        self.blob_order: list[str] = list(self.input_names)
        for layer, stats, shapes in ex.steps():
            if layer.type in ("Input", "Silence"):
                continue
            cls = LAYER_CLASSES.get(layer.type)
            if cls is None:
                raise ex.fail(layer, "layer type not supported for export")
            key = _module_key(layer.name, self.layers)
            extra = {"fused": ex.fused} if cls is Conv else {}
            self.layers[key] = cls(layer, stats, shapes, ex.weights.get(layer.name, []),
                                   **extra)
            self.steps.append((key, list(layer.bottom), list(layer.top)))
            self.blob_order += [t for t in layer.top if t not in self.blob_order]
        # after step i, blobs read for the last time there can be freed
        last: dict[str, int] = {}
        for i, (_, bottoms, _tops) in enumerate(self.steps):
            for b in bottoms:
                last[b] = i
        self._free_after: list[list[str]] = [[] for _ in self.steps]
        for blob, i in last.items():
            self._free_after[i].append(blob)
        self.eval()

    def blobs(self, *inputs, names: Sequence[str] | None = None) -> dict:
        """Runs the net; returns the blobs `names` (default: the outputs)."""
        if len(inputs) != len(self.input_names):
            raise NetDefinitionError(f"{self.source}: {len(self.input_names)} input(s) "
                                     f"({', '.join(self.input_names)}), got {len(inputs)}")
        want = set(self.output_names if names is None else names)
        env = {}
        for name, x in zip(self.input_names, inputs, strict=True):
            declared = self.input_shapes[name]
            if tuple(x.shape[1:]) != declared[1:]:
                raise NetDefinitionError(
                    f"{self.source}: input '{name}' of shape {tuple(x.shape)}; the net "
                    f"was exported for (N, {', '.join(map(str, declared[1:]))})")
            env[name] = x
        kept = {n: env[n] for n in want if n in env}
        for i, (key, bottoms, tops) in enumerate(self.steps):
            outs = self.layers[key](*[env[b] for b in bottoms])
            for top, value in zip(tops, outs, strict=True):
                env[top] = value
                if top in want:
                    kept[top] = value
            for blob in self._free_after[i]:
                env.pop(blob, None)
        missing = [n for n in want if n not in kept]
        if missing:
            raise NetDefinitionError(f"{self.source}: no blob named '{missing[0]}'")
        return kept

    def forward(self, *inputs):
        out = self.blobs(*inputs)
        if len(self.output_names) == 1:
            return out[self.output_names[0]]
        return {k: out[k] for k in self.output_names}


def _module_key(name: str, existing) -> str:
    """A ModuleDict key for a layer name (no '.', unique)."""
    key = name.replace(".", "_") or "layer"
    base, i = key, 1
    while key in existing:
        key, i = f"{base}_{i}", i + 1
    return key


def caffe_reshape(layer, shape: tuple[int, ...]) -> tuple[int, ...]:
    """Caffe's Reshape of `shape` (0 copies the input axis, one -1 is inferred)."""
    p = layer.reshape_param
    ndim = len(shape)
    start = p.axis if p.axis >= 0 else ndim + p.axis + 1
    end = ndim if p.num_axes == -1 else start + p.num_axes
    new = [shape[start + i] if d == 0 else d for i, d in enumerate(p.shape.dim)]
    out = list(shape[:start]) + new + list(shape[end:])
    if -1 in out:
        known = math.prod(d for d in out if d != -1)
        out[out.index(-1)] = math.prod(shape) // known
    return tuple(out)
