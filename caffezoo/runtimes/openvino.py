"""The OpenVINO backend: the net exported to ONNX in memory (runtimes/exported.py: the fused
export for the net's outputs, the one that keeps every blob name for other blobs), read by
OpenVINO's ONNX front end and compiled for its CPU plugin, or for its GPU plugin when OpenVINO
sees a GPU (that path is not measured here: no GPU was available, docs/benchmarks.md).

- Precision: float32, always. OpenVINO's CPU plugin otherwise computes in bfloat16 on CPUs that
  have it (AVX512_BF16 or AMX, this project's machines among them: 3.7 % relative error on
  EfficientNet-Lite0's logits, measured), and its GPU plugin in float16.
- One compiled model per batch size (static shapes compile to faster code; OpenVINO reshapes
  the dynamic-batch model for each).
- Threads: `threads=` sets INFERENCE_NUM_THREADS; one stream, the LATENCY hint (one request
  at a time, as every caffezoo loop runs).
- OpenVINO is the optional extra `openvino` (installed by scripts/setup.sh); without it,
  `--backend openvino` exits 4 naming the extra.
"""

from __future__ import annotations

import numpy as np

from caffezoo import frameworks
from caffezoo.errors import NetDefinitionError
from caffezoo.runtimes import CheckedNet, Runtime
from caffezoo.runtimes.exported import ExportedNets


def device(core) -> str:
    """The device a net is compiled for: the GPU plugin when OpenVINO sees a GPU, else the
    CPU."""
    return "GPU" if any(d.startswith("GPU") for d in core.available_devices) else "CPU"


class OpenVINORuntime(Runtime):
    backend = "openvino"

    def __init__(self, checked: CheckedNet, threads: int | None = None) -> None:
        super().__init__(checked, threads)
        self._ov = frameworks.import_openvino()
        self._core = self._ov.Core()
        self.device = device(self._core)
        self._nets = ExportedNets(checked)
        self._requests: dict[tuple, object] = {}

    def _config(self) -> dict:
        config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
        if self.device == "CPU":
            config["NUM_STREAMS"] = 1
            if self.threads is not None:
                config["INFERENCE_NUM_THREADS"] = int(self.threads)
        return config

    def _request(self, n: int, names: tuple[str, ...]):
        cached = self._requests.get((n, names))
        if cached is not None:
            return cached
        _, _, model, values = self._nets.onnx_for(names, n)
        try:
            ov_model = self._core.read_model(model.SerializeToString())
            ov_model.reshape({self.input_name: [n, *self.input_shape[1:]]})
            compiled = self._core.compile_model(ov_model, self.device, self._config())
        except Exception as err:  # OpenVINO raises RuntimeError subclasses of its own
            raise NetDefinitionError(f"{self.checked.prototxt}: OpenVINO cannot load the "
                                     f"exported net: {_first_line(err)}") from None
        request = (compiled.create_infer_request(), [compiled.output(v) for v in values])
        self._requests[(n, names)] = request
        return request

    def _forward(self, batch: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
        blobs = tuple(dict.fromkeys(b for b in names if b != self.input_name))
        result = {}
        if blobs:
            request, outputs = self._request(batch.shape[0], blobs)
            try:
                got = request.infer({self.input_name: batch})
            except Exception as err:
                raise NetDefinitionError(f"{self.checked.prototxt}: OpenVINO forward failed: "
                                         f"{_first_line(err)}") from None
            result = {b: got[o] for b, o in zip(blobs, outputs, strict=True)}
        if self.input_name in names:
            result[self.input_name] = batch
        return result


def _first_line(err: Exception) -> str:
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    return lines[0][:300] if lines else type(err).__name__
