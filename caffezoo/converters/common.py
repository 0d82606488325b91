"""What every card converter shares: a checkpoint as named arrays, a mapping plan onto the target
net's layers, one handler per source op that turns canonical tensors into Caffe blobs, and the
input conventions (BGR order, mean/std) that connect a source to a zoo card.

A plan is a list of `Assign`s: "the source module `layer1.0.conv1` becomes the Caffe layer
`resx1_conv1` by the `conv` handler". Handlers are registered by op name (`Op`) in `HANDLERS`;
an assignment whose op has no handler fails with the op's name.

Handlers ask for *canonical* parameters of a module (`Part`: a convolution's weight OIHW and
bias; a batch norm's mean, var, gamma, beta; a linear layer's weight (out, in) and bias). The
checkpoint's `ParamNaming`, supplied by the reader of its format, says under which name the file
keeps each of them and how its array becomes canonical (TF-slim: HWIO -> OIHW, no gamma = 1), so
no handler knows any framework's naming, and messages name the file's own tensors.

`apply_plan` runs every handler, collects every problem (missing, unexpected, wrong-shape
tensors, target layers left without weights) and raises one `WeightMismatchError` listing all of
them, so no partial file is ever written.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from caffezoo.card_plan import Assign, Op, Plan, PoolSpec
from caffezoo.errors import ConversionError, WeightMismatchError
from caffezoo.geometry import (
    conv_out,
    conv_window,
    exclude_pad_factors,
    pool_window,
    source_pooled,
    tf_padding,
)


class Part:
    """Canonical parameter names: what a handler asks a checkpoint for."""

    WEIGHT = "weight"  # conv: (O, I/groups, kH, kW); linear: (O, I) (a 1x1 conv's is accepted)
    BIAS = "bias"  # conv, linear: (O,)
    MEAN = "mean"  # batch norm, per channel
    VAR = "var"
    GAMMA = "gamma"
    BETA = "beta"


def _as_is(part: str, arr: np.ndarray) -> np.ndarray:
    return arr


@dataclass(frozen=True)
class ParamNaming:
    """How one checkpoint format names the canonical parameters of a module (`keys`: part ->
    template with `{m}` for the module path), turns its arrays into canonical ones, fills parts
    it may leave out (`defaults`: part -> constant), and which of its tensors no inference net
    needs (`ignored_suffixes`)."""

    keys: Mapping[str, str]
    to_canonical: Callable[[str, np.ndarray], np.ndarray] = _as_is
    defaults: Mapping[str, float] = field(default_factory=dict)
    ignored_suffixes: tuple[str, ...] = ()

    def key(self, module: str, part: str) -> str:
        return self.keys[part].format(m=module)


@dataclass
class Checkpoint:
    """Source weights as float32 numpy arrays under the file's own names, and the naming that
    finds a module's canonical parameters among them."""

    path: str
    format: str  # a checkpoint format a source kind declares ("pytorch", "lua", "tf-slim")
    tensors: dict[str, np.ndarray]
    # BatchNorm eps by module prefix, where the file records it (Lua modules do; a PyTorch
    # state_dict does not, the layout supplies it).
    eps: dict[str, float] = field(default_factory=dict)
    # pooling modules the file describes itself (Lua), by module path; override a plan's
    pools: dict[str, PoolSpec] = field(default_factory=dict)
    # where a module's canonical parameters are among `tensors`: the reader's naming
    naming: ParamNaming = field(kw_only=True)

    def key(self, module: str, part: str) -> str:
        return self.naming.key(module, part)


@dataclass
class ConvertOptions:
    """Choices of a conversion. `bgr=False` keeps the source's RGB channel order in the first
    convolution and `ceil_pooling=True` leaves Caffe's default rounding: both are wrong for
    every source here and exist so tests can prove that validation catches them."""

    bgr: bool = True
    ceil_pooling: bool = False
    # per-channel (a, b), BGR, folded into the first convolution(s): source = a * card + b
    affine: tuple[np.ndarray, np.ndarray] | None = None
    # keep a source's background class (TF-slim's 1001 outputs) instead of dropping it
    keep_background: bool = False


# ---------------------------------------------------------------------------------------------
# the context handlers work in


class MapContext:
    """State shared by the handlers while one plan is applied."""

    def __init__(self, net, analysis, ckpt: Checkpoint, options: ConvertOptions) -> None:
        self.net = net
        self.analysis = analysis
        self.ckpt = ckpt
        self.options = options
        self.layers = {layer.name: layer for layer in net.layer}
        self.stats = {s.name: s for s in analysis.layers}
        self.consumed: set[str] = set()
        self.problems: list[str] = []  # tensors: missing, wrong shape, no place
        self.structure: list[str] = []  # the target computes something else than the source
        self.weights: dict[str, list[np.ndarray]] = {}
        self.bn_eps: dict[str, float] = {}  # BatchNorm layer -> eps to write

    def layer(self, name: str, types: tuple[str, ...]):
        """The target layer `name` when it exists and has one of `types`, else None (and a
        problem recorded)."""
        layer = self.layers.get(name)
        if layer is None:
            self.problems.append(f"target layer {name!r} not in the net")
            return None
        if layer.type not in types:
            self.problems.append(f"target layer {name!r} is a {layer.type}, expected "
                                 f"{'/'.join(types)}")
            return None
        return layer

    def has(self, module: str, part: str) -> bool:
        return self.ckpt.key(module, part) in self.ckpt.tensors

    def take(self, module: str, part: str, shape: tuple[int, ...], layer: str,
             flatten: bool = False) -> np.ndarray | None:
        """The canonical `part` of `module` (float32) checked against `shape`, or None with the
        problem recorded (naming the file's tensor). `flatten`: a (O, I, 1, 1) array is
        accepted as (O, I) (logits computed by a 1x1 convolution)."""
        naming = self.ckpt.naming
        key = naming.key(module, part)
        arr = self.ckpt.tensors.get(key)
        self.consumed.add(key)
        if arr is None:
            if part in naming.defaults:
                return np.full(shape, naming.defaults[part], np.float32)
            self.problems.append(f"missing tensor {key!r} (for layer {layer!r})")
            return None
        value = naming.to_canonical(part, np.asarray(arr))
        if flatten and value.ndim == 4 and value.shape[2:] == (1, 1):
            value = value.reshape(value.shape[:2])
        if tuple(value.shape) != tuple(shape):
            stored = "" if value.shape == arr.shape else f" (stored as {list(arr.shape)})"
            self.problems.append(f"tensor {key!r} has shape {list(value.shape)}{stored}, layer "
                                 f"{layer!r} needs {list(shape)}")
            return None
        return np.ascontiguousarray(value, dtype=np.float32)

    def expected(self, layer: str) -> list[tuple[int, ...]]:
        return [tuple(s) for s in self.stats[layer].param_shapes]


Handler = Callable[[MapContext, Assign], None]
HANDLERS: dict[str, Handler] = {}


def handler(op: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        HANDLERS[op] = fn
        return fn
    return register


def _weight_and_bias(ctx: MapContext, a: Assign, name: str, flatten: bool = False
                     ) -> list[np.ndarray] | None:
    """[weight] or [weight, bias] as the target layer wants them; a source bias without a place
    is a problem."""
    shapes = ctx.expected(name)
    w = ctx.take(a.source, Part.WEIGHT, shapes[0], name, flatten)
    bias = None
    if len(shapes) > 1:
        bias = ctx.take(a.source, Part.BIAS, shapes[1], name)
    elif ctx.has(a.source, Part.BIAS):
        key = ctx.ckpt.key(a.source, Part.BIAS)
        ctx.consumed.add(key)
        ctx.problems.append(f"tensor {key!r} has no place: layer {name!r} has no bias")
    if w is None or (len(shapes) > 1 and bias is None):
        return None
    return [w] if bias is None else [w, bias]


@handler(Op.CONV)
def _conv(ctx: MapContext, a: Assign) -> None:
    (name,) = a.layers
    layer = ctx.layer(name, ("Convolution",))
    if layer is None:
        return
    blobs = _weight_and_bias(ctx, a, name)
    if blobs is not None:
        ctx.weights[name] = blobs
    if a.conv is not None:
        _check_conv_windows(ctx, a, layer)


def _check_conv_windows(ctx: MapContext, a: Assign, layer) -> None:
    """The target convolution's windows (start, count per axis) must be the source's."""
    window = conv_window(layer.convolution_param)
    kernel, stride, pad = window.kernel, window.stride, window.pad
    in_hw = ctx.analysis.blob_shapes_at[(layer.name, 0)][2:]
    for axis, n in enumerate(in_hw):
        k, s, caffe_pad = kernel[axis], stride[axis], pad[axis]
        before, after, out = tf_padding(n, k, s, a.conv.padding, a.conv.pad)
        caffe_out = conv_out(n, k, s, caffe_pad)
        if (caffe_pad, caffe_out) != (before, out):
            how = (f"pads {before} before and {after} after" if before != after
                   else f"pads {before}")
            ctx.structure.append(
                f"layer {layer.name!r} pads {caffe_pad} on each side of its {n}-pixel axis, "
                f"the source ({a.source}, TF {a.conv.padding}, kernel {k}, stride {s}) {how}: "
                + ("no symmetric Caffe padding is the same" if before != after
                   else "the windows differ"))
            return


@handler(Op.BN)
def _bn(ctx: MapContext, a: Assign) -> None:
    bn_name, scale_name = a.layers
    bn = ctx.layer(bn_name, ("BatchNorm",))
    scale = ctx.layer(scale_name, ("Scale",))
    if bn is None or scale is None:
        return
    channels = ctx.expected(scale_name)[0]
    got = {part: ctx.take(a.source, part, channels, bn_name)
           for part in (Part.MEAN, Part.VAR, Part.GAMMA, Part.BETA)}
    if any(v is None for v in got.values()):
        return
    eps = ctx.ckpt.eps.get(a.source, a.eps)
    if eps is None:
        ctx.problems.append(f"no eps known for {a.source!r} (layer {bn_name!r})")
        return
    if np.any(got[Part.VAR] < 0):
        ctx.problems.append(f"tensor {ctx.ckpt.key(a.source, Part.VAR)!r} has negative values")
        return
    # Caffe's BatchNorm stores [mean * s, var * s, s]; with s = 1 it uses them as they are.
    ctx.weights[bn_name] = [got[Part.MEAN], got[Part.VAR], np.ones((1,), np.float32)]
    ctx.weights[scale_name] = [got[Part.GAMMA], got[Part.BETA]]
    ctx.bn_eps[bn_name] = float(eps)


@handler(Op.LINEAR)
def _linear(ctx: MapContext, a: Assign) -> None:
    """InnerProduct from a linear layer (or a 1x1 convolution on a 1x1 map); `skip_rows`
    leading outputs of the source (a background class) are left out."""
    (name,) = a.layers
    if ctx.layer(name, ("InnerProduct",)) is None:
        return
    if a.skip_rows:
        shapes = ctx.expected(name)
        wanted = [(shapes[0][0] + a.skip_rows, *shapes[0][1:])]
        w = ctx.take(a.source, Part.WEIGHT, wanted[0], name, flatten=True)
        b = ctx.take(a.source, Part.BIAS, (wanted[0][0],), name) if len(shapes) > 1 else None
        if w is None or (len(shapes) > 1 and b is None):
            return
        ctx.weights[name] = [w[a.skip_rows:]] + ([] if b is None else [b[a.skip_rows:]])
        return
    blobs = _weight_and_bias(ctx, a, name, flatten=True)
    if blobs is not None:
        ctx.weights[name] = blobs


@handler(Op.POOL)
def _pool(ctx: MapContext, a: Assign) -> None:
    """Checks that the target pooling computes what the source's does (method, window, rounding,
    padding in averages) and fills the weights of an exclude-pad Scale after it."""
    (name,) = a.layers
    layer = ctx.layer(name, ("Pooling",))
    spec = a.pool
    if layer is None or spec is None:
        return
    p = layer.pooling_param
    src = f"the source ({a.source or 'functional'})"
    method = {0: "max", 1: "ave"}.get(p.pool, "stochastic")
    if method != spec.method:
        ctx.structure.append(f"layer {name!r} pools by {method.upper()}, {src} by "
                             f"{spec.method.upper()}")
        return
    in_shape = ctx.analysis.blob_shapes_at[(name, 0)]
    out_shape = tuple(ctx.stats[name].out_shapes[0])
    covers = spec.global_pool or (spec.pad == 0 and spec.kernel == in_shape[2] == in_shape[3])
    if p.global_pooling or spec.global_pool:
        if not (p.global_pooling and covers):
            ctx.structure.append(f"layer {name!r} and {src} do not both pool over the whole "
                                 f"{in_shape[2]}x{in_shape[3]} map")
        return
    window = pool_window(p, in_shape[2:])
    k, s, pad = window.kernel, window.stride, window.pad
    if spec.padding:
        _check_tf_pool(ctx, a, layer, in_shape[2:], out_shape[2:])
        return
    if (k, s, pad) != ((spec.kernel,) * 2, (spec.stride,) * 2, (spec.pad,) * 2):
        ctx.structure.append(f"layer {name!r} has kernel/stride/pad {k}/{s}/{pad}, {src} "
                             f"{spec.kernel}/{spec.stride}/{spec.pad}")
        return
    want = tuple(source_pooled(n, spec.kernel, spec.stride, spec.pad, spec.pad, spec.ceil)
                 for n in in_shape[2:])
    if out_shape[2:] != want:
        rounding = "up" if p.ceil_mode else "down"
        ctx.structure.append(f"layer {name!r} rounds {rounding} to {out_shape[2]}x{out_shape[3]}"
                             f" where {src} gives {want[0]}x{want[1]}")
        return
    fix = exclude_pad_scale(ctx.net, name)
    needs_fix = spec.method == "ave" and spec.exclude_pad and spec.pad > 0
    if needs_fix and fix is None:
        ctx.structure.append(f"layer {name!r} averages over the padding, {src} over real pixels "
                             f"only (no exclude-pad Scale follows it)")
    elif fix is not None and not needs_fix:
        ctx.structure.append(f"layer {fix!r} rescales the border of {name!r}, {src} does not")
    elif fix is not None:
        ctx.weights[fix] = [exclude_pad_factors(window, in_shape[2:], out_shape[2:])]


def _caffe_windows(n: int, n_out: int, k: int, s: int, pad: int) -> list[tuple[int, int]]:
    """The real pixels [lo, hi) each of a Caffe pooling's outputs covers on one axis."""
    return [(max(i * s - pad, 0), min(i * s - pad + k, n)) for i in range(n_out)]


def _check_tf_pool(ctx: MapContext, a: Assign, layer, in_hw, out_hw) -> None:
    """A TF SAME/VALID pooling: the target must cover the same real pixels per output (MAX
    ignores padding on both sides), and an average over windows that reach into the padding
    needs the exclude-pad Scale (TF excludes the padding)."""
    spec, name = a.pool, layer.name
    window = pool_window(layer.pooling_param, in_hw)
    k, s, pad = window.kernel, window.stride, window.pad
    src = f"the source ({a.source}, TF {spec.padding})"
    clipped = False
    for axis in range(2):
        before, _, out = tf_padding(in_hw[axis], spec.kernel, spec.stride, spec.padding)
        want = [(max(i * spec.stride - before, 0),
                 min(i * spec.stride - before + spec.kernel, in_hw[axis])) for i in range(out)]
        got = _caffe_windows(in_hw[axis], out_hw[axis], k[axis], s[axis], pad[axis])
        if got != want:
            ctx.structure.append(f"layer {name!r} covers other pixels than {src}: output "
                                 f"{out_hw[axis]} vs {out} on a {in_hw[axis]}-pixel axis "
                                 f"(kernel/stride/pad {k[axis]}/{s[axis]}/{pad[axis]})")
            return
        clipped = clipped or any(hi - lo < spec.kernel for lo, hi in want)
    fix = exclude_pad_scale(ctx.net, name)
    needs_fix = spec.method == "ave" and clipped
    if needs_fix and fix is None:
        ctx.structure.append(f"layer {name!r} averages over the padding, {src} over real pixels "
                             f"only (no exclude-pad Scale follows it)")
    elif fix is not None and not needs_fix:
        ctx.structure.append(f"layer {fix!r} rescales the border of {name!r}, {src} does not")
    elif fix is not None:
        ctx.weights[fix] = [exclude_pad_factors(window, in_hw, out_hw)]


@handler(Op.ELTWISE)
def _eltwise(ctx: MapContext, a: Assign) -> None:
    """Checks a residual sum's coefficients (e.g. Inception-ResNet's scaled branches)."""
    (name,) = a.layers
    layer = ctx.layer(name, ("Eltwise",))
    if layer is None:
        return
    e = layer.eltwise_param
    want = a.coeff or (1.0,) * len(layer.bottom)
    got = tuple(e.coeff) or (1.0,) * len(layer.bottom)
    if e.operation != 1 or len(got) != len(want) or any(
            np.float32(x) != np.float32(y) for x, y in zip(got, want, strict=True)):
        ctx.structure.append(f"layer {name!r} sums with coefficients {list(got)}, the source "
                             f"({a.source}) with {list(want)}")


def exclude_pad_scale(net, pool: str) -> str | None:
    """The Scale layer (axis 2, 2 axes, no bias) that works in place on `pool`'s top right after
    it: the stock-layer form of an average that excludes padding."""
    layers = list(net.layer)
    for i, layer in enumerate(layers):
        if layer.name == pool and i + 1 < len(layers):
            nxt = layers[i + 1]
            sp = nxt.scale_param
            if (nxt.type == "Scale" and list(nxt.bottom) == [layer.top[0]]
                    and sp.axis == 2 and sp.num_axes == 2 and not sp.bias_term
                    and len(nxt.bottom) == 1):
                return nxt.name
    return None


# ---------------------------------------------------------------------------------------------
# applying a plan


@dataclass
class Conversion:
    """The outcome of `apply_plan`: the target net carrying the weights, and what was done."""

    net: object  # NetParameter with blobs, BatchNorm eps set to the source's
    plan: Plan
    notes: list[str]
    ignored: dict[str, int]  # ignored prefix -> tensors skipped
    first_convs: list[str]


class _Analysis:
    """analyze() plus the shape of each layer's bottoms at the point it runs (in-place blobs
    change shape along the net only in theory, but the lookup stays honest)."""

    def __init__(self, net) -> None:
        from caffezoo.analysis import analyze

        result = analyze(net)
        self.layers = result.layers
        self.blob_shapes = result.blob_shapes
        self.inputs = result.inputs
        current: dict[str, tuple[int, ...]] = dict(result.inputs)
        self.blob_shapes_at: dict[tuple[str, int], tuple[int, ...]] = {}
        for stats in result.layers:
            for i, bottom in enumerate(stats.bottoms):
                self.blob_shapes_at[(stats.name, i)] = current.get(bottom, ())
            for top, shape in zip(stats.tops, stats.out_shapes, strict=False):
                current[top] = tuple(shape)


def first_convolutions(net) -> list[str]:
    """Convolution layers that read the net's input image directly."""
    from caffezoo.analysis import input_names

    inputs = set(input_names(net))
    return [layer.name for layer in net.layer
            if layer.type == "Convolution" and set(layer.bottom) & inputs]


def apply_plan(net, ckpt: Checkpoint, plan: Plan, options: ConvertOptions) -> Conversion:
    """Run the plan's handlers; return the net with weights, or raise WeightMismatchError
    listing every problem."""
    from caffezoo import netio

    analysis = _Analysis(net)
    ctx = MapContext(net, analysis, ckpt, options)
    for a in plan.assigns:
        fn = HANDLERS.get(a.op)
        if fn is None:
            raise ConversionError(f"no handler for source op {a.op!r} (module {a.source!r})")
        fn(ctx, a)

    ignored_count: dict[str, int] = {}
    unexpected = []
    for key in ckpt.tensors:
        if key in ctx.consumed or (ckpt.naming.ignored_suffixes
                                   and key.endswith(ckpt.naming.ignored_suffixes)):
            continue
        prefix = next((p for p in plan.ignored if key.startswith(p)), None)
        if prefix is not None:
            ignored_count[prefix] = ignored_count.get(prefix, 0) + 1
            continue
        unexpected.append(key)
    problems = list(ctx.problems)
    if problems and ctx.structure:
        problems += ctx.structure
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected tensor(s): {', '.join(unexpected)}")
    assigned = set(plan.by_layer()) | set(ctx.weights)
    unfilled = [s.name for s in analysis.layers if s.param_shapes and s.name not in assigned]
    if unfilled:
        problems.append(f"{len(unfilled)} target layer(s) without a source: "
                        f"{', '.join(unfilled)}")
    if problems:
        raise WeightMismatchError(f"{ckpt.path} does not fit {net.name} ({plan.layout} "
                                  f"layout): {len(problems)} problem(s): " + "; ".join(problems))
    if ctx.structure:
        raise ConversionError(f"{net.name} cannot hold {ckpt.path} exactly "
                              f"({plan.layout} layout): " + "; ".join(ctx.structure)
                              + (f"; {plan.hint}" if plan.hint else ""))

    notes: list[str] = []
    firsts = first_convolutions(net)
    if options.affine is not None:
        notes += _fold_input_affine(net, ctx, firsts, *options.affine)
    if options.bgr:
        for name in firsts:
            w = ctx.weights[name][0]
            ctx.weights[name][0] = np.ascontiguousarray(w[:, ::-1])
        notes.append(f"input channels of {', '.join(firsts)} reversed (RGB source, BGR input)")

    out = netio.attach_weights(net, ctx.weights, check=True)
    changed = []
    for layer in out.layer:
        if layer.type == "BatchNorm" and layer.name in ctx.bn_eps:
            eps = ctx.bn_eps[layer.name]
            if np.float32(layer.batch_norm_param.eps) != np.float32(eps):
                changed.append(layer.name)
                layer.batch_norm_param.eps = eps
        if layer.type == "Pooling" and options.ceil_pooling:
            layer.pooling_param.ClearField("ceil_mode")
    if changed:
        notes.append(f"BatchNorm eps set to the source's on {len(changed)} layer(s)")
    return Conversion(out, plan, notes, ignored_count, firsts)


def _fold_input_affine(net, ctx: MapContext, firsts: list[str], a: np.ndarray,
                       b: np.ndarray) -> list[str]:
    """Fold source_input = a * card_input + b (per BGR channel) into the first convolutions of
    a plan's weights (TF-slim's; graph sources fold on the graph, graph_cards.fold_input). The
    constant part goes into the convolution's bias or, when it has none, into the running mean
    of the BatchNorm right after it."""
    notes = []
    for name in firsts:
        p = ctx.layers[name].convolution_param
        blobs = ctx.weights[name]
        # a, b are in BGR order; the weights are still in the source's channel order here
        a_src, b_src = (a[::-1], b[::-1]) if ctx.options.bgr else (a, b)
        blobs[0], shift = fold_affine_into_conv(
            blobs[0], list(p.pad) + [p.pad_h, p.pad_w], a_src, b_src,
            f"layer {name!r}: the card's mean/std differ from the source's")
        if len(blobs) > 1:
            blobs[1] = (blobs[1].astype(np.float64) + shift).astype(np.float32)
        else:
            bn = _next_batchnorm(net, name)
            if bn is None:
                raise ConversionError(
                    f"layer {name!r}: no bias and no BatchNorm after it to take the mean shift")
            mean = ctx.weights[bn][0].astype(np.float64)
            ctx.weights[bn][0] = (mean - shift).astype(np.float32)
        notes.append(f"mean/std difference folded into {name}")
    return notes


def fold_affine_into_conv(weight: np.ndarray, pads, a: np.ndarray, b: np.ndarray, what: str
                          ) -> tuple[np.ndarray, np.ndarray]:
    """(weight', shift) with conv(weight, a * x + b) = conv(weight', x) + shift, for a
    convolution reading the input (a, b per input channel, in the weight's order): the one
    fold of a card's mean/std into a source's first layer. Exact only without padding: a
    padded border would be zero in the card's units, which is not zero in the source's
    (refused, `what` saying where)."""
    if any(pads):
        raise ConversionError(f"{what} and this first convolution pads its input, so the "
                              "difference cannot be folded in exactly")
    w = weight.astype(np.float64)
    shift = (w * b.reshape(1, -1, 1, 1)).sum(axis=(1, 2, 3))
    return (w * a.reshape(1, -1, 1, 1)).astype(np.float32), shift


def _next_batchnorm(net, conv: str) -> str | None:
    layers = list(net.layer)
    for i, layer in enumerate(layers):
        if layer.name == conv:
            top = layer.top[0]
            for nxt in layers[i + 1:]:
                if top in nxt.bottom:
                    return nxt.name if nxt.type == "BatchNorm" else None
    return None
