"""What the exported backends (onnxruntime, openvino, torch) run: a Caffe net exported in
memory by caffezoo.export, in two forms.

- `fused`: BatchNorm/Scale folded and the decompositions of ops stock Caffe lacks rewritten
  into those ops (export/fuse.py); blob names inside a fused chain are gone. Used whenever only
  the net's outputs are asked for: every `eval` and `time` pass.
- `full`: every blob keeps its Caffe name and value (in-place BatchNorm/Scale folded, which
  keeps names); used when other blobs are asked for (`validate --layers`).

Both are within fp32 noise of Caffe (docs/export.md states the measured differences). A net
whose layers fix the batch size (a Reshape to a fixed leading size) cannot take a dynamic batch
axis: it gets one ONNX model per batch size instead.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from caffezoo.errors import ConversionError
from caffezoo.export import export_net, fuse
from caffezoo.export.export_net import ExportNet
from caffezoo.runtimes import CheckedNet


class ExportedNets:
    def __init__(self, checked: CheckedNet) -> None:
        self.input_name = checked.input_name
        self.input_shape = checked.input_shape
        self.full = export_net.prepare(checked.net, checked.weights, str(checked.prototxt),
                                 fold_bn=True, keep_blobs=True)
        checked.weights = None  # the export nets hold them now
        self.fused = fuse.fuse(self.full)
        self.outputs = frozenset(self.full.outputs)
        self._onnx: dict[tuple[bool, int | None], object] = {}

    def pick(self, names: Iterable[str]) -> ExportNet:
        """The fused net when `names` are all outputs of the net, else the full one."""
        return self.fused if set(names) <= self.outputs else self.full

    def at_batch(self, ex: ExportNet, n: int) -> ExportNet:
        """`ex` re-shaped for a batch of n (for nets that cannot take a dynamic batch)."""
        if n == self.input_shape[0]:
            return ex
        again = export_net.prepare(ex.net, ex.weights, ex.source,
                             {self.input_name: (n, *self.input_shape[1:])})
        return dataclasses.replace(again, fused=ex.fused, fusions=ex.fusions,
                                   folded=ex.folded)

    def onnx_model(self, ex: ExportNet, n: int):
        """(key, ONNX model) of `ex` for a batch of n: key None for the one dynamic-batch
        model, else n. The fused model is optimised by onnxslim (export.onnx.optimise)."""
        from caffezoo.export import onnx as export_onnx

        for key in (None, n):
            if (ex.fused, key) in self._onnx:
                return key, self._onnx[(ex.fused, key)]
        try:
            key, model = None, export_onnx.to_onnx(ex, dynamic_batch=True, check=False)
        except ConversionError:  # the batch size is fixed by a layer: one model per size
            key, model = n, export_onnx.to_onnx(self.at_batch(ex, n), check=False)
        if ex.fused:
            model = export_onnx.optimise(model)
        self._onnx[(ex.fused, key)] = model
        return key, model

    def forget_onnx(self, fused: bool, key: int | None) -> None:
        """Drops a model the caller has built what it needs from (a weights-sized copy that
        another request would build again)."""
        self._onnx.pop((fused, key), None)

    def onnx_for(self, names: tuple[str, ...], n: int):
        """(fused?, key, model, output values) that compute the blobs `names` for a batch of
        n: the fused model for the net's outputs, else the full one with those blobs made its
        graph outputs (the model's own outputs when they are the same)."""
        from caffezoo.export import onnx as export_onnx

        ex = self.pick(names)
        key, model = self.onnx_model(ex, n)
        values = list(names) if ex.fused else [export_onnx.blob_value_names(model)[b]
                                                for b in names]
        if tuple(o.name for o in model.graph.output) != tuple(values):
            from caffezoo.frameworks import import_onnx

            onnx = import_onnx()
            edited = onnx.ModelProto()
            edited.CopyFrom(model)
            del edited.graph.output[:]
            edited.graph.output.extend(
                onnx.helper.make_empty_tensor_value_info(v) for v in values)
            model = edited
        return ex.fused, key, model, values
