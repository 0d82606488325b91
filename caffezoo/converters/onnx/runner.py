"""Running an ONNX graph with onnxruntime, for validation: the graph's outputs and, on request,
any intermediate value (added to a copy of the graph as extra outputs, one session per set).

The runner takes NCHW batches, as the Caffe net does; for a graph whose input is NHWC (a
TensorFlow export whose leading Transpose the converter absorbed) it transposes them back. A
graph with a fixed batch size runs the batch in pieces of that size.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from caffezoo.contract import InputContract
from caffezoo.converters.onnx.reader import first_line
from caffezoo.errors import ConversionError
from caffezoo.frameworks import import_onnxruntime


@dataclass
class OnnxRunner:
    """`run(x, record)` -> {value name: array} for the graph outputs and the recorded values
    the graph computes (names it does not know are left out)."""

    model: object  # onnx.ModelProto, input batch dimension as in the file
    input_name: str
    input_shape: tuple[int, ...]  # NCHW, what the Caffe net takes
    nhwc: bool = False
    input_norm: InputContract | None = None  # an ONNX file does not say how it was trained
    label: str = "onnx"
    _sessions: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        graph = self.model.graph
        self.outputs = [o.name for o in graph.output]
        self.values = {o for n in graph.node for o in n.output if o}
        vi = next(v for v in graph.input if v.name == self.input_name)
        dim0 = vi.type.tensor_type.shape.dim[0]
        self.fixed_batch = dim0.dim_value if dim0.HasField("dim_value") else 0

    def _session(self, extra: tuple[str, ...]):
        session = self._sessions.get(extra)
        if session is None:
            from onnx import TensorProto, helper

            model = self.model
            if extra:
                model = type(self.model)()
                model.CopyFrom(self.model)
                model.graph.output.extend(
                    helper.make_tensor_value_info(name, TensorProto.FLOAT, None)
                    for name in extra)
            ort = import_onnxruntime()
            options = ort.SessionOptions()
            options.log_severity_level = 4  # its errors become our one line, not its log
            try:
                session = ort.InferenceSession(model.SerializeToString(), options,
                                               providers=["CPUExecutionProvider"])
            except Exception as err:
                raise ConversionError(f"{self.label}: onnxruntime cannot run the graph "
                                      f"({first_line(err)})") from None
            self._sessions[extra] = session
        return session

    def run(self, x: np.ndarray, record: set[str] | None = None) -> dict[str, np.ndarray]:
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 4 or tuple(x.shape[1:]) != tuple(self.input_shape[1:]):
            raise ConversionError(f"{self.label}: input of shape {x.shape}, the graph takes "
                                  f"{self.input_shape}")
        extra = tuple(sorted(n for n in (record or ()) if n in self.values
                             and n not in self.outputs))
        names = self.outputs + list(extra)
        session = self._session(extra)
        feed = x.transpose(0, 2, 3, 1) if self.nhwc else x
        step = self.fixed_batch or len(feed)
        if len(feed) % step:
            raise ConversionError(f"{self.label}: the graph fixes the batch to {step}; "
                                  f"{len(feed)} inputs do not split into such batches")
        try:
            parts = [session.run(names, {self.input_name: np.ascontiguousarray(feed[i:i + step])})
                     for i in range(0, len(feed), step)]
        except Exception as err:  # a graph the checker passes can still fail in a kernel
            raise ConversionError(f"{self.label}: onnxruntime failed running the graph "
                                  f"({first_line(err)})") from None
        return {name: np.concatenate([p[k] for p in parts]) for k, name in enumerate(names)}
