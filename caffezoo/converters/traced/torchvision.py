"""The `torchvision:NAME[=CKPT]` source kind (converters/registry.py): a torchvision model, traced
into ONNX and converted through the ONNX front end (see caffezoo.converters.traced)."""

from __future__ import annotations

from caffezoo.converters import traced


def read_graph(spec: str, input_shape: tuple[int, ...] | None = None):
    return traced.read_graph("torchvision", spec, input_shape)


def open_graph_runner(spec: str, input_shape: tuple[int, ...] | None = None):
    return traced.open_graph_runner("torchvision", spec, input_shape)
