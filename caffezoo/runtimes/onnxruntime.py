"""The ONNX Runtime backend: the net exported to ONNX in memory (caffezoo.export.onnx, Caffe's
semantics exactly), run by an `onnxruntime.InferenceSession` with all graph optimisations.

- The net's outputs come from the fused export (runtimes/exported.py: decompositions rewritten
  into the ops they stand for, BatchNorm folded, onnxslim's clean-up); other blobs from the
  export that keeps every blob name, made graph outputs on demand (one session per set of
  requested blobs, cached).
- The model takes any batch size (a dynamic batch axis); a net whose layers fix the batch
  (a Reshape to a fixed leading size) gets one exported model per batch size instead.
- Threads: `threads=` sets the session's intra-op threads (default: one per core). The CUDA
  execution provider is used when this onnxruntime build has it (it does not here: CPU only).
"""

from __future__ import annotations

import numpy as np

from caffezoo import frameworks
from caffezoo.errors import NetDefinitionError
from caffezoo.runtimes import CheckedNet, Runtime
from caffezoo.runtimes.exported import ExportedNets


class OnnxRuntimeRuntime(Runtime):
    backend = "onnxruntime"

    def __init__(self, checked: CheckedNet, threads: int | None = None) -> None:
        super().__init__(checked, threads)
        self._ort = frameworks.import_onnxruntime()
        self._nets = ExportedNets(checked)
        self._sessions: dict[tuple, object] = {}
        providers = self._ort.get_available_providers()
        self._providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider")
                           if p in providers]

    def _session(self, n: int, names: tuple[str, ...]):
        fused = self._nets.pick(names).fused
        for key in (None, n):  # the dynamic-batch model's session, or this batch size's
            if (fused, key, names) in self._sessions:
                return self._sessions[(fused, key, names)]
        fused, key, model, values = self._nets.onnx_for(names, n)
        opts = self._ort.SessionOptions()
        opts.graph_optimization_level = self._ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        if self.threads is not None:
            opts.intra_op_num_threads = int(self.threads)
            opts.inter_op_num_threads = 1
        # Idle worker threads sleep instead of spinning: they share the cores with the
        # decoding threads of `eval` and with other processes (ResNeXt-50 batch 8, interleaved
        # on a loaded 2-core machine: 14.2 img/s against 12.5 with spinning)
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            session = self._ort.InferenceSession(model.SerializeToString(), opts,
                                                 providers=self._providers)
        except Exception as err:
            raise NetDefinitionError(f"{self.checked.prototxt}: ONNX Runtime cannot load the "
                                     f"exported net: {str(err).splitlines()[0]}") from None
        # Memory: ONNX Runtime's Python session keeps the serialised model (its bytes, the
        # size of the weights) for as long as it lives, to re-create itself should its
        # providers change, which caffezoo never asks; and the fused dynamic-batch model
        # serves every batch size from this one session. Both copies go (VGG-16: 553 MB each;
        # 3.5 GB resident after a first forward at batch 8 before, 3.0 after).
        if hasattr(session, "_model_bytes"):
            session._model_bytes = None
        if fused and key is None:
            self._nets.forget_onnx(fused, key)
        self._sessions[(fused, key, names)] = (session, values)
        return session, values

    def _forward(self, batch: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
        n = batch.shape[0]  # checked by Runtime.forward (shapes, memory)
        blobs = tuple(dict.fromkeys(b for b in names if b != self.input_name))
        result = {}
        if blobs:
            session, values = self._session(n, blobs)
            outs = session.run(values, {self.input_name: batch})
            result = dict(zip(blobs, outs, strict=True))
        if self.input_name in names:
            result[self.input_name] = batch
        return result
