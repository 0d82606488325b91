"""Runs an MXNet checkpoint with real MXNet 1.9.1 (the validation side of the MXNet source).

MXNet reads the symbol file itself (it upgrades 0.8 and 0.9-era JSON on load) and its own
parameter file (`mx.nd.load`), so the runner shares nothing with the converter's readers but
the file names: a disagreement between the two is a converter bug, not a shared one. The symbol
is bound for inference (`is_train=False`: BatchNorm uses the moving statistics, Dropout passes
through) on the CPU; intermediate values are exposed with `get_internals` under the names the
front end gives them (`<node>_output`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from caffezoo.contract import InputContract
from caffezoo.errors import ConversionError, InputFileError
from caffezoo.frameworks import native_stderr_silenced


@dataclass
class MXNetRunner:
    symbol_path: str
    params_path: str
    input_name: str
    input_shape: tuple[int, ...]
    outputs: list[str]  # the graph's output values, in order
    input_norm: InputContract | None = None  # the files do not say; None: feed the net's input
    _mx: Any = None
    _sym: Any = None
    _args: dict = field(default_factory=dict)
    _aux: dict = field(default_factory=dict)
    _internal_names: list[str] = field(default_factory=list)
    _executors: dict = field(default_factory=dict)

    def available(self) -> set[str]:
        """Value names this runner can record."""
        return set(self._internal_names)

    def _executor(self, names: tuple[str, ...], shape: tuple[int, ...]):
        key = (names, shape)
        exe = self._executors.get(key)
        if exe is not None:
            return exe
        mx = self._mx
        internals = self._sym.get_internals()
        group = mx.sym.Group([internals[name] for name in names])
        shapes = {self.input_name: shape}
        arg_shapes, _, aux_shapes = group.infer_shape_partial(**shapes)
        args = {}
        for name, s in zip(group.list_arguments(), arg_shapes, strict=True):
            if name == self.input_name:
                args[name] = mx.nd.zeros(shape)
            elif name in self._args:
                args[name] = self._args[name]
            else:  # a label: not used at inference
                args[name] = mx.nd.zeros(s if s else (shape[0],))
        aux = {name: self._aux[name] for name in group.list_auxiliary_states()}
        with native_stderr_silenced():
            exe = group.bind(mx.cpu(), args=args, aux_states=aux, grad_req="null")
        self._executors = {key: exe}  # keep one: binding again is cheaper than holding many
        return exe

    def run(self, x: np.ndarray, record: set[str] | None = None) -> dict[str, np.ndarray]:
        """Forward `x` (N, C, H, W) for inference; the graph's outputs plus the recorded values
        MXNet has (values the front end introduced, such as a flatten before a
        FullyConnected, are not MXNet values and are left out)."""
        want = list(self.outputs)
        for name in sorted(record or ()):
            if name in self.available() and name not in want:
                want.append(name)
        x = np.ascontiguousarray(x, dtype=np.float32)
        try:
            exe = self._executor(tuple(want), tuple(x.shape))
            exe.arg_dict[self.input_name][:] = x
            outs = exe.forward(is_train=False)
            return {name: out.asnumpy() for name, out in zip(want, outs, strict=True)}
        except Exception as err:  # MXNetError: a graph our reader accepts, MXNet cannot run
            raise ConversionError(f"{self.symbol_path}: MXNet cannot run it ({_first(err)})"
                                  ) from None


def open_runner(symbol_path: str, params_path: str, input_name: str,
                input_shape: tuple[int, ...], outputs: list[str]) -> MXNetRunner:
    from caffezoo.frameworks import import_mxnet

    # MXNet's MKLDNN pass fuses Convolution + BatchNorm + ReLU and then reports the fused
    # result for each of them: intermediate values need the plain graph
    os.environ["MXNET_SUBGRAPH_BACKEND"] = "NONE"
    mx = import_mxnet()
    try:
        with native_stderr_silenced():  # it logs upgrading older eras' JSON
            sym = mx.sym.load(symbol_path)
    except Exception as err:  # MXNetError
        raise InputFileError(f"{symbol_path}: MXNet cannot load it ({_first(err)})") from None
    try:
        loaded = mx.nd.load(params_path)
    except Exception as err:
        raise InputFileError(f"{params_path}: MXNet cannot load it ({_first(err)})") from None
    args, aux = {}, {}
    for key, value in loaded.items():
        kind, sep, name = key.partition(":")
        if sep and kind == "aux":
            aux[name] = value
        else:
            args[name if sep and kind == "arg" else key] = value
    # parameter files without prefixes: auxiliary states are what the symbol lists as such
    for name in sym.list_auxiliary_states():
        if name not in aux and name in args:
            aux[name] = args.pop(name)
    missing = [n for n in sym.list_auxiliary_states() if n not in aux]
    if missing:
        raise ConversionError(f"{params_path}: MXNet finds no auxiliary state(s) "
                              f"{', '.join(missing[:5])}")
    internal_names = list(sym.get_internals().list_outputs())
    names = set(internal_names)
    for out in outputs:
        if out not in names:
            raise ConversionError(f"{symbol_path}: MXNet has no value {out!r}")
    return MXNetRunner(symbol_path, params_path, input_name, tuple(input_shape), list(outputs),
                       None, mx, sym, args, aux, internal_names)


def _first(err: BaseException) -> str:
    text = str(err).strip()
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("Stack")]
    return (lines[0] if lines else type(err).__name__)[:200]
