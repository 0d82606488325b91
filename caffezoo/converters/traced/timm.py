"""The `timm:NAME[=CKPT]` source kind (converters/registry.py): a timm model, traced
into ONNX and converted through the ONNX front end (see caffezoo.converters.traced)."""

from __future__ import annotations

from caffezoo.converters import traced


def read_graph(spec: str, input_shape: tuple[int, ...] | None = None):
    return traced.read_graph("timm", spec, input_shape)


def open_graph_runner(spec: str, input_shape: tuple[int, ...] | None = None):
    return traced.open_graph_runner("timm", spec, input_shape)
