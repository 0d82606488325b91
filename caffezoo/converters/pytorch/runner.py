"""Runs a checkpoint in its PyTorch model (or a Lua tree), recording named modules: the source
side of validation."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from caffezoo.card_plan import Op, Plan
from caffezoo.converters.common import Checkpoint
from caffezoo.converters.pytorch.models import SourceArch, source_arch, source_normalization
from caffezoo.converters.pytorch.plans import detect_layout
from caffezoo.converters.pytorch.reader import load_checkpoint
from caffezoo.errors import ConversionError
from caffezoo.frameworks import import_torch
from caffezoo.source_runner import SourceRun


class TorchSource:
    """A checkpoint loaded into its PyTorch model (or a Lua tree), ready to run."""

    def __init__(self, ckpt: Checkpoint, plan: Plan, card_name: str, lua_root=None) -> None:
        self.ckpt = ckpt
        self.plan = plan
        self.lua_root = lua_root
        self.input_norm, self.effective_norm = source_normalization(card_name, plan.layout)
        self.classifier = next(a.source for a in plan.assigns if a.op == Op.LINEAR)
        if lua_root is None:
            self.model = self._load_model(card_name)

    def _load_model(self, card_name: str):
        torch = import_torch()
        arch = source_arch(card_name, self.plan.layout)
        kwargs = dict(arch.kwargs)
        if "aux_logits" in kwargs:  # only when the checkpoint has the head
            kwargs["aux_logits"] = any(k.startswith("AuxLogits.") for k in self.ckpt.tensors)
        torch.manual_seed(0)
        model = SourceArch(arch.factory, kwargs).build()
        state = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in self.ckpt.tensors.items()}
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise ConversionError(f"{self.ckpt.path}: does not load into {arch.factory}: "
                                  f"{' '.join(str(err).split())[:300]}") from None
        return model.eval()

    def run(self, x: np.ndarray, record: set[str] | None = None) -> SourceRun:
        """Logits (the classifier's output) and the (input, output) of the modules in
        `record` (a BatchNorm that applies its activation itself is recorded before it)."""
        torch = import_torch()
        want = set(record or ()) | {self.classifier}
        records: dict[str, tuple[np.ndarray, np.ndarray]] = {}

        def keep(name: str, inp, out) -> None:
            first = inp[0] if isinstance(inp, tuple | list) else inp
            records[name] = (first.detach().numpy().copy(), out.detach().numpy().copy())

        xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        if self.lua_root is not None:
            from caffezoo.converters.pytorch.lua import LuaNet

            LuaNet(self.lua_root)(xt, lambda m, i, o: keep(m.key, i, o) if m.key in want
                                  else None)
        else:
            handles = []
            modules = dict(self.model.named_modules())
            for name in want:
                module = modules.get(name)
                if module is None:
                    continue
                # timm's BatchNormAct2d: norm -> drop (Identity) -> act; record before act
                target = module.drop if hasattr(module, "drop") and hasattr(module, "act") \
                    else module
                handles.append(target.register_forward_hook(
                    lambda _m, i, o, name=name: keep(name, i, o)))
            try:
                with torch.no_grad():
                    self.model(xt)
            finally:
                for h in handles:
                    h.remove()
        if self.classifier not in records:
            raise ConversionError(f"{self.ckpt.path}: the classifier {self.classifier!r} did "
                                  f"not run")
        return SourceRun(records[self.classifier][1], records)


def open_source(path: str | Path, card, net, layout: str | None = None,
                keep_background: bool = False) -> TorchSource:
    no_background(keep_background)
    ckpt, root = load_checkpoint(path)
    plan = detect_layout(net, card, ckpt, layout)
    return TorchSource(ckpt, plan, card.name, root)


def no_background(keep: bool) -> None:
    if keep:
        raise ConversionError("--keep-background: PyTorch and Lua models have no background "
                              "class")
