"""Runs a checkpoint in its PyTorch model (or a Lua tree), recording named modules: the source
side of validation."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from caffezoo.card_plan import Op
from caffezoo.converters.pytorch.cards import TorchPairing, pair_with_card
from caffezoo.converters.pytorch.reader import load_checkpoint
from caffezoo.errors import ConversionError
from caffezoo.frameworks import import_torch
from caffezoo.source_runner import SourceRun


class TorchSource:
    """A checkpoint loaded into its PyTorch model (or a Lua tree), ready to run; `plan` names
    its modules."""

    def __init__(self, pairing: TorchPairing, lua_root=None) -> None:
        self.ckpt = pairing.ckpt
        self.plan = pairing.plan
        self.model = pairing.model
        self.lua_root = lua_root
        self.input_norm, self.effective_norm = pairing.input_norm, pairing.effective_norm
        self.classifier = next(a.source for a in self.plan.assigns if a.op == Op.LINEAR)

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
    return TorchSource(pair_with_card(ckpt, card, net, layout), root)


def no_background(keep: bool) -> None:
    if keep:
        raise ConversionError("--keep-background: PyTorch and Lua models have no background "
                              "class")
