"""A PyTorch checkpoint or a Lua tree into a zoo card, through the graph path every card source
with a graph front end takes (converters/graph_cards.py).

The checkpoint is loaded strictly into the PyTorch model it is for (models.SOURCE_ARCHS: the
card's own, or for a zoo original the one of its variant, so that a torchvision Inception-v3
checkpoint meets the original inception_v3 and is refused naming the first difference). A Lua
tree (lua.py names its tensors as torchvision does) is loaded into the card's PyTorch model
with its own BatchNorm eps and its max pooling as the tree states it (kernel, stride, padding,
ceil rounding); its fixed-window average pooling goes into the plan, checked at the card's size
by apply_plan. The model is traced to ONNX with its BatchNorms kept (models.trace_onnx), read
by the ONNX front end, given the card's input convention (graph_cards.fold_input), paired with
the card's net (graph/match.py) and the pairing applied as a Plan whose sources are the model's
module names (the ONNX exporter names a node after its module's scope), which validate's
runner records with hooks (or LuaNet by the same names).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from caffezoo.card_plan import Op, Plan
from caffezoo.contract import IMAGENET, InputContract, input_affine
from caffezoo.converters.common import Checkpoint
from caffezoo.converters.pytorch.models import (
    SOURCE_ARCHS,
    SourceArch,
    load_weights,
    trace_onnx,
)
from caffezoo.errors import ConversionError


@dataclass
class TorchPairing:
    plan: Plan  # sources: module names
    ckpt: Checkpoint  # the paired nodes' tensors, input convention folded in
    model: object  # the checkpoint's PyTorch model (eval), taking `input_norm`
    input_norm: InputContract  # what the model takes
    effective_norm: InputContract  # what its first convolution sees
    notes: list[str]
    ignored: dict[str, int]  # checkpoint prefix -> tensors the inference graph does not use


def source_model(card, layout: str | None, ckpt: Checkpoint) -> tuple[str, SourceArch]:
    """(layout, model definition) for a checkpoint into `card`: the named layout, else the
    first the card has (a Lua tree: the card's first definition, named like torchvision)."""
    if ckpt.format == "lua":
        if layout not in (None, "lua"):
            raise ConversionError(f"{ckpt.path}: a .t7 file has the lua layout, not {layout!r}")
    elif layout == "lua":
        raise ConversionError(f"{ckpt.path}: the lua layout is for .t7 files")
    own = [(lay, arch) for (name, lay), arch in SOURCE_ARCHS.items() if name == card.name]
    # a zoo original: the models of its variants (which the original may refuse)
    own = own or [(lay, arch) for (name, lay), arch in SOURCE_ARCHS.items()
                  if _variant_of(name) == card.name]
    if not own:
        raise ConversionError(f"model {card.name!r}: no PyTorch/Lua source converts into it "
                              f"(models: {', '.join(sorted({n for n, _ in SOURCE_ARCHS}))})")
    if ckpt.format == "lua":
        return "lua", own[0][1]
    for lay, arch in own:
        if layout in (None, lay):
            return lay, arch
    raise ConversionError(f"no {layout!r} layout for {card.name} (layouts: "
                          f"{', '.join(lay for lay, _ in own)})")


def _variant_of(card_name: str) -> str | None:
    from caffezoo import zoo

    return zoo.get_card(card_name).variant_of


def load_model(ckpt: Checkpoint, arch: SourceArch, lua_tree: bool):
    """The model definition with the checkpoint's weights, in eval mode."""
    from caffezoo.frameworks import import_torch

    torch = import_torch()
    kwargs = {}
    if "aux_logits" in arch.kwargs:  # the auxiliary head only when the checkpoint has it
        kwargs["aux_logits"] = any(k.startswith("AuxLogits.") for k in ckpt.tensors)
    with torch.device("meta"):  # no initial weights: the checkpoint's arrays become its own
        model = arch.build(**kwargs)
    load_weights(model, ckpt.tensors, ckpt.path, arch.factory, assign=True)
    if lua_tree:
        _as_lua_tree(model, ckpt)
    return model.eval()


def _as_lua_tree(model, ckpt: Checkpoint) -> None:
    """The model computing what the Lua tree does: its BatchNorm eps, its max pooling. (Its
    average pooling has a fixed window, 7x7 for 224 px, that a trace at a small size cannot
    run: the plan carries it instead, and apply_plan checks it at the card's size.)"""
    from caffezoo.frameworks import import_torch

    nn = import_torch().nn
    modules = dict(model.named_modules())
    for key, eps in ckpt.eps.items():
        modules[key].eps = eps
    spec = ckpt.pools.get("maxpool")
    if spec is not None:
        model.maxpool = nn.MaxPool2d(spec.kernel, spec.stride, spec.pad, ceil_mode=spec.ceil)


def _with_lua_pools(plan: Plan, ckpt: Checkpoint) -> None:
    """The plan's poolings as the Lua tree states them (its final average: the model's
    `avgpool`, timm's `global_pool`), named as LuaNet records them."""
    for i, a in enumerate(plan.assigns):
        key = "avgpool" if a.source == "global_pool" else a.source
        if a.op == Op.POOL and key in ckpt.pools:
            plan.assigns[i] = replace(a, source=key, pool=ckpt.pools[key])


def read_traced(model, trace_size: int, size: int, label: str, tensors: dict[str, np.ndarray]):
    """The canonical graph of `model` at 1x3xSIZExSIZE with the checkpoint's `tensors` (the
    state_dict the model holds). Traced at `trace_size` (at most `size`: a forward pass at the
    card's size would cost a conversion its time) without its parameters; the ONNX reader then
    infers every shape at the card's size, so the geometry matching sees is the card's."""
    import io

    from caffezoo.converters.onnx.ops import translate
    from caffezoo.converters.onnx.reader import prepare_model
    from caffezoo.frameworks import import_onnx

    buf = io.BytesIO()
    trace_onnx(model, (1, 3, trace_size, trace_size), buf, label, keep_batch_norm=True)
    proto = import_onnx().load_from_string(buf.getvalue())
    weights = {v.name: tensors[v.name] for v in proto.graph.input if v.name in tensors}
    prep = prepare_model(proto, label, (1, 3, size, size), weights)
    return translate(prep, label)


def module_names(model, graph) -> dict[str, str]:
    """IR node -> the module it computes (the exporter names a node after its module's scopes:
    `/layer1/layer1.0/downsample/downsample.0/Conv` computes `layer1.0.downsample.0`); "" where
    it is no module of its own (a functional pooling)."""
    from caffezoo.frameworks import import_torch

    nn = import_torch().nn
    modules = dict(model.named_modules())
    pools = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
    out = {}
    for node in graph.nodes:
        path: list[str] = []  # a child of a Sequential is scoped "<its name>.<index>"
        for part in node.name.strip("/").split("/")[:-1]:
            if path and part.startswith(f"{path[-1]}."):
                path[-1] = part
            else:
                path.append(part)
        name = ".".join(path)
        module = modules.get(name)
        if node.op in ("conv", "batch_norm", "linear"):
            out[node.name] = name if module is not None else node.name
        elif module is not None and (isinstance(module, pools) or
                                     type(module).__name__ == "SelectAdaptivePool2d"):
            out[node.name] = name
        else:
            out[node.name] = ""
    return out


def pair_with_card(ckpt: Checkpoint, card, net, layout: str | None, bgr: bool = True
                   ) -> TorchPairing:
    """Load, trace, fold the card's input convention in, pair with the card's net."""
    from caffezoo.analysis import analyze
    from caffezoo.converters import graph_cards

    layout, arch = source_model(card, layout, ckpt)
    model = load_model(ckpt, arch, layout == "lua")
    input_norm, effective = (IMAGENET, IMAGENET) if layout == "lua" else \
        (arch.input_norm, arch.effective_norm)
    (shape,) = analyze(net).inputs.values()
    size = int(shape[-1])
    transform = getattr(model, "transform_input", False)
    if transform:  # Inception3 normalises its own input: trace what its first layer sees
        model.transform_input = False
    try:
        graph = read_traced(model, min(size, arch.trace_size), size,
                            f"{arch.factory} ({ckpt.path})", ckpt.tensors)
    finally:
        if transform:
            model.transform_input = True
    notes, _ = graph_cards.fold_input(graph, effective, card, bgr)
    m = graph_cards.match_card(graph, net)
    if m.mismatch is not None:
        raise graph_cards.refuse(graph, card, ckpt.path, m.mismatch, size)
    names = module_names(model, graph)
    plan, tensors = graph_cards.plan_from_match(graph, net, m.pairs, layout, ckpt.path,
                                                ckpt.format, names.__getitem__)
    used = {a.source for a in plan.assigns if a.source}
    ignored: dict[str, int] = {}
    for key in ckpt.tensors:
        module = key.rpartition(".")[0]
        if module not in used and not key.endswith(".num_batches_tracked"):
            prefix = key.partition(".")[0] + "."
            ignored[prefix] = ignored.get(prefix, 0) + 1
    plan.ignored = {p: "not computed at inference (an auxiliary head)" for p in ignored}
    if layout == "lua":
        _with_lua_pools(plan, ckpt)
    return TorchPairing(plan, tensors, model, input_norm, effective, notes, ignored)


def input_note(effective: InputContract, card) -> str:
    fmt = ", ".join
    mean, std = effective.bgr_normalization_255()
    note = (f"input mapping: the source's {effective.describe_normalization()} is BGR mean "
            f"[{fmt(f'{v:g}' for v in mean)}] std [{fmt(f'{v:g}' for v in std)}]")
    if input_affine(effective, card.mean, card.std) is None:
        return note + " = the card's"
    return note + (f"; the card's mean [{fmt(f'{v:g}' for v in card.mean)}] std "
                   f"[{fmt(f'{v:g}' for v in card.std)}] differ: folded into the first layers")
